/* cpu_amx: the bf16 fast paths of the CPU backend (precision mode
 * FK_PREC_BF16): the linear here, and attention further down ("attention
 * (AMX)"). Linear: c (M, N) f32 = bf16(a) (M, K) · bf16(b) (N, K)ᵀ (+ bias),
 * products of bf16 operands accumulated in f32, on AMX tiles (tdpbf16ps);
 * an AVX512-BF16 (vdpbf16ps) micro-kernel on the same packed operands is
 * kept for machines without AMX (forced only, see fk_cpu_bf16_kernel_detect).
 * Chosen at run time; the build needs no -march (target attributes).
 *
 * Numerics
 * - a (f32 activations) is rounded to bf16, nearest-even, by vcvtne2ps2bf16;
 *   a bf16 a (bf16 activations, backend.h) is copied, and a bf16 c is the f32
 *   result rounded by the same instruction: a product that writes bf16 and
 *   one that reads it give the bits of the f32 hand-over;
 *   b (any float dtype) is decoded to f32 (exact) and rounded the same way
 *   (bf16 weights pass unchanged, fp8 weights are exact in bf16, f16 and f32
 *   weights are rounded). The conversion and the dot products treat denormal
 *   inputs as zero (|x| < 2^-126, far below anything a network produces).
 * - Each c element accumulates in f32 over k in blocks of FK_BF16_KC, each
 *   block one fixed chain of tile / vector dot products (the running sum
 *   goes through the f32 C panel between blocks, exactly); the bias is added
 *   last, in f32. The chain is the same whatever the thread count or the
 *   position of the element in the output, so results are bitwise identical
 *   for any thread count. AMX and AVX512-BF16 round their internal sums
 *   differently: the two kernels agree to f32 accumulation error, not in bits.
 * - Relative error against the exact product of the unrounded operands:
 *   2^-7/sqrt(28) = 0.0015 per rounded operand in relative L2 for operands
 *   uniform in a symmetric interval (derived and checked in
 *   tests/unit/test_ops_cpu_amx.c).
 *
 * Layouts (bf16 = uint16_t, zero padded to multiples of 32 in M, N and K)
 * - Packed A (the activations), packed once per call into the backend's
 *   workspace, shared by all threads: K in blocks of kcp = min(KC, Kp − pc)
 *   columns; block pc at element offset pc·Mp; inside it, strips of 16 rows
 *   (strip s at s·16·kcp), each a run of kcp/32 tiles of 16 rows × 32 k
 *   (row-major, 64 bytes a row, tile t at t·512): exactly an AMX A tile.
 * - Packed B panel (the weights, NC output columns × all of K), per thread:
 *   the same block/strip/tile arrangement over 16 output columns, each tile
 *   in the VNNI layout of an AMX B tile: row r (k pair 2r, 2r+1), 16 columns
 *   × 2 bf16: tile[r][n][e] = b[n][32t + 2r + e]. Producing it from the
 *   (N, K) row-major weight is a 16×16 transpose of 32-bit pairs.
 * - C panel (MC × NC f32), per thread: blocks of 32 × 32 contiguous (4 KB),
 *   so the micro-kernel's C tiles never alias in L1 whatever ldc is.
 * - The micro-kernel computes a 32 × 32 block (2 × 2 tiles of 16 × 16 f32)
 *   from two A strips and two B strips: 4 tdpbf16ps per 4 tile loads.
 *
 * Blocking and threading: threads split the output columns (rows when there
 * are few columns) in units of 32. Per thread, for each NC-column panel: for
 * each MC-row block: for each K block: the 32-row strips (the A micro-panel,
 * 32 × KC, stays in L1) × the 32-column strips of B (the B block, NC × KC,
 * in L2), accumulating into the C panel (in L2); then the C panel goes to c
 * (+ bias). The next step's A and B blocks are prefetched into L2 during the
 * micro-kernel calls; B panels and C panels are double-buffered, and the
 * packing of the next B panel (weights from DRAM) and the store of the
 * previous C panel run in small pieces between the micro-kernel calls, so
 * their memory traffic overlaps the tile arithmetic. On the development
 * machine (2 cores, ~12 GB/s DRAM) that overlap and the contiguous C panel
 * are what lift the product from ~0.7 to ~1.1+ TFLOP/s per core; the
 * 2 × 2 micro-kernel itself is bound by the L2 → L1 tile traffic (B tiles
 * and C reloads), ~1.9 TFLOP/s per core with everything in L2 (docs/PERF.md).
 *
 * Memory: the workspace (fk_backend_cpu_workspace_bytes) holds packed A,
 * Mp·Kp·2 bytes, plus per thread two B panels (2·NC·Kp·2 bytes) and two C
 * panels (2·MC·NC·4 bytes): for Flux-mini at 512² (M = 1536, K ≤ 15360,
 * 2 threads) 47 + 31 + 1 MB at most; attention needs, per thread, one
 * head's packed K and V, round128(Lk)·D·4 bytes (Flux-mini at 1024², L =
 * 4608: 2.4 MB; the same workspace, they never run at once). It is grown on demand, kept, and
 * allocated in 2 MB pages where Linux allows (madvise). Weights are packed
 * on the fly from the mmapped file on every call, unless be->cache_weight
 * keeps a packed copy ("weight cache" below: the FLUX runner caches its large
 * weights and releases the mapped pages, so the copy costs no memory). */
#include "backend/cpu/cpu_ew.h"
#include "backend/cpu/cpu_gemm.h"
#include "core/cpu_features.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Blocking (elements; measured best of 128..512 on the DiT shapes). KC:
 * reduction block; NC: columns of a B panel and of a C panel; MC: rows of a
 * C panel. */
#ifndef FK_BF16_KC /* (overridable for blocking experiments only) */
#define FK_BF16_KC 256
#endif
#ifndef FK_BF16_NC
#define FK_BF16_NC 256
#endif
#ifndef FK_BF16_MC
#define FK_BF16_MC 256
#endif
_Static_assert(FK_BF16_KC % 32 == 0 && FK_BF16_NC % 32 == 0 && FK_BF16_MC % 32 == 0,
               "bf16 GEMM blocks must be multiples of 32");
_Static_assert(FK_BF16_KC == FK_TILE_KC && FK_BF16_NC % FK_TILE_KC == 0,
               "packed A is tensor.h's tile layout, and a C panel fills whole K blocks of it");
_Static_assert(FK_BF16_NC == FK_CPU_ROPE_POST_NC,
               "a fused QK norm needs whole heads in every output panel");

static inline int64_t fk_bf16_round32(int64_t v) { return (v + 31) & ~(int64_t)31; }
static inline int64_t fk_bf16_min(int64_t a, int64_t b) { return a < b ? a : b; }

const char *fk_cpu_bf16_kernel_name(fk_cpu_bf16_kernel k) {
    switch (k) {
    case FK_CPU_BF16_NONE: return "f32";
    case FK_CPU_BF16_AVX512: return "avx512bf16";
    case FK_CPU_BF16_AMX: return "amx";
    case FK_CPU_BF16_COUNT: break;
    }
    return "?";
}

/* The workspace: on Linux in 2 MB pages where the kernel allows it (the
 * micro-kernels sweep megabytes of packed operands: 4 KB pages would keep
 * the TLB missing). */
#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#define FK_BF16_HUGE ((size_t)2 << 20)
static void *fk_bf16_ws_alloc(size_t bytes) {
    size_t len = (bytes + FK_BF16_HUGE - 1) & ~(FK_BF16_HUGE - 1);
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, len, MADV_HUGEPAGE); /* a hint: failure is harmless */
#endif
    return p;
}
static void fk_bf16_ws_free(void *p, size_t bytes) {
    munmap(p, (bytes + FK_BF16_HUGE - 1) & ~(FK_BF16_HUGE - 1));
}
#else
static void *fk_bf16_ws_alloc(size_t bytes) { return fk_alloc(bytes); }
static void fk_bf16_ws_free(void *p, size_t bytes) {
    (void)bytes;
    fk_free(p);
}
#endif

/* Grow the workspace to `need` bytes (contents not kept); also used by the
 * bf16 conv2d (cpu_conv_amx.c). */
bool fk_cpu_bf16_ws_reserve(fk_cpu_impl *impl, uint64_t need) {
    if (impl->bf16_ws_max && need > impl->bf16_ws_max) return false;
    if (need <= impl->bf16_ws_bytes) return true;
    if (need > SIZE_MAX) return false;
    fk_cpu_bf16_release(impl);
    impl->bf16_ws = fk_bf16_ws_alloc((size_t)need);
    if (!impl->bf16_ws) return false;
    impl->bf16_ws_bytes = (size_t)need;
    return true;
}

/* ---- weight cache (be->cache_weight) ----
 * Pre-packed copies of weights in the layout of the B panels (VNNI tiles,
 * see the header), for all N columns at once: K block pc at pc·Np, in it the
 * 16-column strips one after the other (column jc at jc·kcp), so any 32-column
 * range of any K block is a valid B block for the micro-kernels and the
 * product skips its packing step. Keyed by (data pointer, dtype, N, K): a
 * linear whose weight matches reads the copy. One 2 MB-aligned mapping per
 * weight. */
typedef struct fk_bf16_wc_entry {
    const void *data;
    fk_dtype dt;
    int64_t N, K;
    uint16_t *pk; /* (Kp / KC blocks, Np, kcp) bf16 */
    size_t bytes;
} fk_bf16_wc_entry;

typedef struct fk_bf16_wcache {
    fk_bf16_wc_entry *e;
    int n, cap;
    size_t bytes;
} fk_bf16_wcache;

static const uint16_t *fk_bf16_wcache_find(const fk_cpu_impl *impl, const void *data, fk_dtype dt,
                                           int64_t N, int64_t K) {
    const fk_bf16_wcache *wc = impl->wcache;
    if (!wc) return NULL;
    for (int i = 0; i < wc->n; i++) {
        const fk_bf16_wc_entry *e = &wc->e[i];
        if (e->data == data && e->dt == dt && e->N == N && e->K == K) return e->pk;
    }
    return NULL;
}

void fk_cpu_wcache_free(fk_cpu_impl *impl) {
    fk_bf16_wcache *wc = impl->wcache;
    if (!wc) return;
    for (int i = 0; i < wc->n; i++) fk_bf16_ws_free(wc->e[i].pk, wc->e[i].bytes);
    free(wc->e);
    free(wc);
    impl->wcache = NULL;
}

size_t fk_cpu_wcache_bytes(const fk_backend *be) {
    const fk_bf16_wcache *wc = fk_cpu_impl_of(be)->wcache;
    return wc ? wc->bytes : 0;
}

void fk_cpu_uncache_weights(fk_backend *be) { fk_cpu_wcache_free(fk_cpu_impl_of(be)); }

#if defined(__x86_64__)
#include <immintrin.h>
#include "backend/cpu/cpu_x86_simd.h"

#define FK_BF16_TARGET "avx512f,avx512bw,avx512vl,avx512bf16"
#define FK_AMX_TARGET "avx512f,avx512bw,avx512vl,avx512bf16,amx-tile,amx-bf16"

bool fk_cpu_bf16_kernel_available(fk_cpu_bf16_kernel k) {
    static int amx_ok = -1; /* the permission request is per process: ask once */
    fk_cpu_features f;
    switch (k) {
    case FK_CPU_BF16_NONE: return true;
    case FK_CPU_BF16_AVX512:
        f = fk_cpu_features_detect();
        return f.avx512f && f.avx512bw && f.avx512vl && f.avx512_bf16;
    case FK_CPU_BF16_AMX:
        f = fk_cpu_features_detect();
        if (!(f.avx512f && f.avx512bw && f.avx512vl && f.avx512_bf16 && f.amx_tile && f.amx_bf16))
            return false;
        if (amx_ok < 0) amx_ok = fk_cpu_request_amx() ? 1 : 0;
        return amx_ok == 1;
    case FK_CPU_BF16_COUNT: break;
    }
    return false;
}

/* ---- packing ---- */

/* 32 f32 (n of them valid, the rest read as 0) → 32 bf16, nearest-even. */
__attribute__((target(FK_BF16_TARGET))) static inline __m512i fk_bf16_cvt32(const float *src,
                                                                            int64_t n) {
    __m512 lo, hi;
    if (n >= 32) {
        lo = _mm512_loadu_ps(src);
        hi = _mm512_loadu_ps(src + 16);
    } else {
        int64_t nl = n < 0 ? 0 : n > 16 ? 16 : n, nh = n > 16 ? n - 16 : 0;
        lo = _mm512_maskz_loadu_ps((__mmask16)((1u << nl) - 1u), src);
        hi = _mm512_maskz_loadu_ps((__mmask16)((1u << nh) - 1u), src + 16);
    }
    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo); /* hi → upper 16 bf16 */
}

/* The rounding of the bf16 products' packing, for a producer of bf16
 * activations outside the products (cpu.h). */
__attribute__((target(FK_BF16_TARGET))) void fk_cpu_bf16_round_row(uint16_t *dst,
                                                                   const float *src, int64_t n) {
    for (int64_t j0 = 0; j0 < n; j0 += 32) {
        const int64_t w = fk_bf16_min(32, n - j0);
        _mm512_mask_storeu_epi16(dst + j0, (__mmask32)((1ull << w) - 1u),
                                 fk_bf16_cvt32(src + j0, w));
    }
}

/* The A operand: columns [0, k1) from a (row stride lda), columns [k1, K)
 * from a2 (row stride lda2; a2 == NULL: k1 == K, everything from a); each
 * part f32 (rounded here) or bf16 (abf / a2bf: its values are copied). */
typedef struct fk_bf16_asrc {
    const void *a, *a2;
    int64_t lda, lda2, k1;
    bool abf, a2bf;
} fk_bf16_asrc;

/* 32 bf16 values at src (n of them valid, the rest read as 0) as they are. */
__attribute__((target(FK_BF16_TARGET))) static inline __m512i fk_bf16_load32(const uint16_t *src,
                                                                             int64_t n) {
    if (n >= 32) return _mm512_loadu_si512(src);
    int64_t v = n < 0 ? 0 : n;
    return _mm512_maskz_loadu_epi16((__mmask32)((1ull << v) - 1u), src);
}

/* 32 values of one A part from element offset k of row r (n valid): f32
 * rounded to bf16 nearest-even, or bf16 copied; the same bf16 either way
 * when the bf16 values are the rounded f32 ones. */
__attribute__((target(FK_BF16_TARGET))) static inline __m512i
fk_bf16_arow32(const void *base, bool bf, int64_t off, int64_t n) {
    return bf ? fk_bf16_load32((const uint16_t *)base + off, n)
              : fk_bf16_cvt32((const float *)base + off, n);
}

/* Rows [s·16, s·16 + 16) of A (f32 (M, K), see fk_bf16_asrc) into packed A
 * strip s of every K block (see the header). */
__attribute__((target(FK_BF16_TARGET))) static void
fk_bf16_pack_a_strip(uint16_t *ap, const fk_bf16_asrc *src, int64_t M, int64_t K, int64_t Mp,
                     int64_t Kp, int64_t s) {
    const int64_t k1 = src->k1;
    for (int64_t pc = 0; pc < Kp; pc += FK_BF16_KC) {
        int64_t kcp = fk_bf16_min(FK_BF16_KC, Kp - pc);
        uint16_t *strip = ap + pc * Mp + s * 16 * kcp; /* (kcp / 32, 16, 32) */
        for (int64_t i = 0; i < 16; i++) {
            int64_t m = s * 16 + i;
            const int64_t o1 = m * src->lda, o2 = m * src->lda2; /* row m of each part */
            for (int64_t t = 0; t < kcp / 32; t++) {
                int64_t k0 = pc + 32 * t;
                __m512i v;
                if (m >= M) {
                    v = _mm512_setzero_si512();
                } else if (k0 + 32 <= k1) {
                    v = fk_bf16_arow32(src->a, src->abf, o1 + k0, 32);
                } else if (k0 >= k1) {
                    v = fk_bf16_arow32(src->a2, src->a2bf, o2 + (k0 - k1), K - k0);
                } else { /* a chunk across the two sources: as f32 (bf16 widen exactly) */
                    float tmp[32];
                    for (int64_t j = 0; j < 32; j++) {
                        const int64_t k = k0 + j;
                        const bool one = k < k1, bf = one ? src->abf : src->a2bf;
                        const void *base = one ? src->a : src->a2;
                        const int64_t off = one ? o1 + k : o2 + (k - k1);
                        tmp[j] = k >= K ? 0.0f
                                 : bf   ? fk_bf16_to_f32(((const uint16_t *)base)[off])
                                        : ((const float *)base)[off];
                    }
                    v = fk_bf16_cvt32(tmp, 32);
                }
                _mm512_storeu_si512(strip + t * 512 + i * 32, v);
            }
        }
    }
}

/* 16 fp8 e4m3 values → f32, exactly: normal values by moving the exponent
 * (bias 7 → 127) in integer arithmetic, subnormals (exponent 0) as m·2^-9
 * (no f32 denormal ever enters an arithmetic instruction: they would cost
 * microcode assists), NaN (S.1111.111) → NaN. */
__attribute__((target(FK_BF16_TARGET))) static inline __m512 fk_bf16_e4m3x16(__m128i b) {
    __m512i x = _mm512_cvtepu8_epi32(b);
    __m512i mag = _mm512_and_si512(x, _mm512_set1_epi32(0x7f));
    __m512 vn = _mm512_castsi512_ps(
        _mm512_add_epi32(_mm512_slli_epi32(mag, 20), _mm512_set1_epi32(120 << 23)));
    __m512 vs = _mm512_mul_ps(_mm512_cvtepi32_ps(mag), _mm512_set1_ps(0x1p-9f));
    __m512 v = _mm512_mask_mov_ps(vn, _mm512_cmplt_epu32_mask(mag, _mm512_set1_epi32(8)), vs);
    __m512i sign = _mm512_slli_epi32(_mm512_and_si512(x, _mm512_set1_epi32(0x80)), 24);
    v = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(v), sign));
    return _mm512_mask_mov_ps(v, _mm512_cmpeq_epi32_mask(mag, _mm512_set1_epi32(0x7f)),
                              _mm512_set1_ps(__builtin_nanf("")));
}

/* 32 weights of dtype dt at src (kn of them valid, the rest read as 0) →
 * 32 bf16, for the fp8 and f16 dtypes: decoded exactly to f32 in registers,
 * then rounded to bf16 (exact for fp8). e5m2 is the upper byte of an f16. */
__attribute__((target(FK_BF16_TARGET))) static inline __m512i
fk_bf16_cvt32_narrow(const char *src, fk_dtype dt, __mmask32 km) {
    __m512 lo, hi;
    if (dt == FK_F16) {
        __m512i h = _mm512_maskz_loadu_epi16(km, src);
        lo = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
        hi = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1));
    } else {
        __m256i b = _mm256_maskz_loadu_epi8(km, src);
        if (dt == FK_F8_E4M3) {
            lo = fk_bf16_e4m3x16(_mm256_castsi256_si128(b));
            hi = fk_bf16_e4m3x16(_mm256_extracti128_si256(b, 1));
        } else { /* FK_F8_E5M2 */
            __m512i h = _mm512_slli_epi16(_mm512_cvtepu8_epi16(b), 8);
            lo = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
            hi = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1));
        }
    }
    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

/* Packing a B panel, one VNNI tile (a "unit") at a time, so the work can be
 * spread between micro-kernel calls (see fk_bf16_task). The panel: rows
 * [0, nc) of b (dtype bdt, row stride ldb elements, b already offset to the
 * panel's first row), all K columns; K block pc (kcp = min(KC, Kp − pc)
 * columns) at pc·ncp, in it strip j (16 rows of b) at j·16·kcp, VNNI tile t
 * at t·512; zero past nc and K. Units go strip by strip, front to back along
 * the rows of b, which are ldb apart and usually come from DRAM: the rows
 * are prefetched a few tiles ahead. */
typedef struct fk_bf16_bpack {
    uint16_t *bp;  /* the panel */
    const char *b; /* (nc, K) dtype bdt, row stride ldb */
    fk_dtype bdt;
    int64_t ldb, nc, K, Kp, ncp;
    int64_t unit, units; /* next unit, total (ncp / 16 strips × Kp / 32 tiles) */
} fk_bf16_bpack;

#define FK_BF16_PF_TILES 6

static void fk_bf16_bpack_init(fk_bf16_bpack *st, uint16_t *bp, const void *b, fk_dtype bdt,
                               int64_t ldb, int64_t nc, int64_t K, int64_t Kp) {
    st->bp = bp;
    st->b = b;
    st->bdt = bdt;
    st->ldb = ldb;
    st->nc = nc;
    st->K = K;
    st->Kp = Kp;
    st->ncp = fk_bf16_round32(nc);
    st->unit = 0;
    st->units = (st->ncp / 16) * (Kp / 32);
}

/* Pack the next `count` units (fewer at the end). rows: 16 × 32 floats. */
__attribute__((target(FK_BF16_TARGET))) static void fk_bf16_bpack_run(fk_bf16_bpack *st,
                                                                      int64_t count, float *rows) {
    size_t esz = fk_dtype_size(st->bdt);
    int64_t kts = st->Kp / 32; /* k tiles per strip */
    for (; count > 0 && st->unit < st->units; count--, st->unit++) {
        int64_t j = st->unit / kts, kt = st->unit % kts;
        int64_t pc = (kt * 32) / FK_BF16_KC * FK_BF16_KC,
                kcp = fk_bf16_min(FK_BF16_KC, st->Kp - pc);
        uint16_t *dst =
            st->bp + pc * st->ncp + j * 16 * kcp + (kt * 32 - pc) * 16; /* (16, 16, 2) */
        int64_t cols = fk_bf16_min(16, st->nc - j * 16); /* valid rows of b in this strip */
        int64_t k0 = kt * 32, kn = st->K - k0;           /* valid k in this tile */
        __mmask32 km = kn >= 32 ? 0xffffffffu : kn <= 0 ? 0u : (__mmask32)((1u << kn) - 1u);
        const char *b0 = st->b + (size_t)(j * 16 * st->ldb + k0) * esz; /* (16, 32) */
        /* near the end of a strip, prefetch the start of the next one */
        if (kt + FK_BF16_PF_TILES >= kts && (j + 1) * 16 < st->nc) {
            const char *nx =
                st->b +
                (size_t)(((j + 1) * 16) * st->ldb + (kt + FK_BF16_PF_TILES - kts) * 32) * esz;
            for (int64_t i = 0; i < 16 && (j + 1) * 16 + i < st->nc; i++)
                _mm_prefetch(nx + (size_t)(i * st->ldb) * esz, _MM_HINT_T0);
        }
        const bool narrow = st->bdt == FK_F16 || st->bdt == FK_F8_E4M3 || st->bdt == FK_F8_E5M2;
        if (st->bdt != FK_BF16 && st->bdt != FK_F32 && !narrow)
            for (int64_t i = 0; i < cols && kn > 0; i++)
                fk_convert_to_f32(rows + i * 32, b0 + (size_t)(i * st->ldb) * esz, st->bdt,
                                  (size_t)fk_bf16_min(32, kn));
        __m512i r[16];
        for (int64_t i = 0; i < 16; i++) {
            const char *src = b0 + (size_t)(i * st->ldb) * esz;
            if (i >= cols || kn <= 0) {
                r[i] = _mm512_setzero_si512();
            } else if (st->bdt == FK_BF16) {
                _mm_prefetch(src + FK_BF16_PF_TILES * 64, _MM_HINT_T0);
                r[i] = _mm512_maskz_loadu_epi16(km, src);
            } else if (st->bdt == FK_F32) {
                _mm_prefetch(src + FK_BF16_PF_TILES * 128, _MM_HINT_T0);
                _mm_prefetch(src + FK_BF16_PF_TILES * 128 + 64, _MM_HINT_T0);
                r[i] = fk_bf16_cvt32((const float *)src, kn);
            } else if (narrow) {
                _mm_prefetch(src + FK_BF16_PF_TILES * 32 * (int64_t)esz, _MM_HINT_T0);
                r[i] = fk_bf16_cvt32_narrow(src, st->bdt, km);
            } else {
                r[i] = fk_bf16_cvt32(rows + i * 32, kn);
            }
        }
        fk_x86_tr16_epi32(r); /* r[p] = k pair p of the 16 columns */
        for (int p = 0; p < 16; p++) _mm512_storeu_si512(dst + p * 32, r[p]);
    }
}

/* Storing a C panel into c, a few rows at a time: c[0 .. mc, 0 .. nc] =
 * panel (+ bias bb (nc), f32). The panel holds (mcp / 32) × (ncp / 32)
 * blocks of 32 × 32 f32, row-major, block (i, j) at (i·ncp/32 + j)·1024.
 * Streaming (non-temporal) stores where c is 64-byte aligned: the product is
 * usually larger than the caches and read once by the next op. */
typedef struct fk_bf16_cstore {
    const float *cp; /* the panel */
    void *c;         /* (mc, nc), row stride ldc elements: f32, or bf16 when cbf */
    int64_t ldc, mc, nc, ncp;
    const float *bb; /* (nc) or NULL */
    int64_t row;     /* next row; == mc when done */
    fk_act act;      /* applied after the bias (fk_cpu_act_row: the bits of the op) */
    bool cbf;        /* c is bf16: each f32 result rounded to nearest-even */
    /* c tiled (cbf; tensor.h's FK_LAYOUT_TILES): c is the whole (Mp, Np)
     * tensor and the panel's first element is (r0, c0) */
    bool tiled;
    int64_t r0, c0, Mp, Np;
    /* or NULL: the QK norm and RoPE of each row's heads (after the bias and
     * the activation), row r0 + i of the product rotated by its pe row */
    const fk_cpu_rope_post *post;
} fk_bf16_cstore;

/* One row of a C panel as bf16: the f32 values of the row (with bias and
 * activation applied, in `row`) rounded to nearest-even, 32 at a time (one
 * 64-byte line: streaming when aligned). */
__attribute__((target(FK_BF16_TARGET))) static void fk_bf16_store_row_bf16(uint16_t *cr,
                                                                           const float *row,
                                                                           int64_t nc) {
    for (int64_t j0 = 0; j0 < nc; j0 += 32) {
        const int64_t w = fk_bf16_min(32, nc - j0);
        const __m512i v = fk_bf16_cvt32(row + j0, w);
        if (w == 32 && ((uintptr_t)(cr + j0) & 63) == 0)
            _mm512_stream_si512((__m512i *)(void *)(cr + j0), v);
        else
            _mm512_mask_storeu_epi16(cr + j0, (__mmask32)((1ull << w) - 1u), v);
    }
}

/* fk_ew_rope_ab with AVX-512 (D a multiple of 32): the first row of ab
 * is the even elements of the pe row (p0, p2 of each pair), the second the
 * odd ones (p1, p3). A permutation: the same values. Built for every row of
 * a fused QK norm, not once per position for all heads as rmsnorm_rope
 * does, so it has to be cheap. */
__attribute__((target(FK_BF16_TARGET))) static void fk_bf16_rope_ab(const float *pe, int64_t D,
                                                                    float *ab) {
    if (D % 32) {
        fk_ew_rope_ab(pe, D, ab);
        return;
    }
    const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
    for (int64_t i = 0; i < 2 * D; i += 32) { /* 32 values of pe: 16 of each row of ab */
        const __m512 a = _mm512_loadu_ps(pe + i), b = _mm512_loadu_ps(pe + i + 16);
        _mm512_storeu_ps(ab + i / 2, _mm512_permutex2var_ps(a, ev, b));
        _mm512_storeu_ps(ab + D + i / 2, _mm512_permutex2var_ps(a, od, b));
    }
}

__attribute__((target(FK_BF16_TARGET))) static void fk_bf16_cstore_run(fk_bf16_cstore *st,
                                                                       int64_t count) {
    for (; count > 0 && st->row < st->mc; count--, st->row++) {
        int64_t i = st->row;
        const float *pr = st->cp + (i / 32) * (st->ncp / 32) * 1024 + (i % 32) * 32;
        float row[FK_BF16_NC]; /* the row with bias, for the activation / norm / bf16 */
        const bool rowed = st->act != FK_ACT_NONE || st->post; /* f32 values changed in row */
        if (rowed || st->cbf) {
            for (int64_t j0 = 0; j0 < st->nc; j0 += 16) {
                __m512 v = _mm512_loadu_ps(pr + (j0 / 32) * 1024 + (j0 % 32));
                if (st->bb) {
                    __mmask16 mk = (__mmask16)((1u << fk_bf16_min(16, st->nc - j0)) - 1u);
                    v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, st->bb + j0));
                }
                _mm512_storeu_ps(row + j0, v);
            }
            if (st->act != FK_ACT_NONE)
                fk_cpu_act_row(FK_CPU_ISA_AVX512, st->act, row, row, st->nc);
            if (st->post) { /* the heads of the row, FK_EW_STAT_ROWS at a time */
                const fk_cpu_rope_post *q = st->post;
                float ab[2 * FK_CPU_ROPE_POST_NC]; /* this row's rotation (2, D) */
                fk_bf16_rope_ab(q->pe + (st->r0 + i) * 2 * q->D, q->D, ab);
                for (int64_t h0 = 0; h0 < st->nc; h0 += FK_EW_STAT_ROWS * q->D) {
                    const int64_t nh = fk_bf16_min(FK_EW_STAT_ROWS, (st->nc - h0) / q->D);
                    fk_cpu_rmsnorm_rope_heads(q->k, row + h0, row + h0, (int)nh, q->D, q->eps,
                                              q->scale, ab);
                }
            }
        }
        if (st->tiled) { /* 32 columns at a time, one line of a tile, zeros past nc */
            for (int64_t j0 = 0; j0 < st->nc; j0 += 32) {
                uint16_t *d = (uint16_t *)st->c +
                              fk_tensor_tile_offset(st->r0 + i, st->c0 + j0, st->Mp, st->Np);
                const __m512i v = fk_bf16_cvt32(row + j0, fk_bf16_min(32, st->nc - j0));
                _mm512_storeu_si512(d, v);
            }
            continue;
        }
        if (st->cbf) {
            fk_bf16_store_row_bf16((uint16_t *)st->c + i * st->ldc, row, st->nc);
            continue;
        }
        float *cr = (float *)st->c + i * st->ldc; /* (nc) */
        for (int64_t j0 = 0; j0 < st->nc; j0 += 16) {
            const float *src = pr + (j0 / 32) * 1024 + (j0 % 32);
            int64_t w = fk_bf16_min(16, st->nc - j0);
            __mmask16 mk = (__mmask16)((1u << w) - 1u);
            __m512 v;
            if (rowed) {
                v = _mm512_loadu_ps(row + j0);
            } else {
                v = _mm512_loadu_ps(src);
                if (st->bb) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, st->bb + j0));
            }
            if (w == 16 && ((uintptr_t)(cr + j0) & 63) == 0)
                _mm512_stream_ps(cr + j0, v);
            else
                _mm512_mask_storeu_ps(cr + j0, mk, v);
        }
    }
}

/* ---- micro-kernels: c (32, 32) (+)= A strips a, a + astr · B strips b, b + bstr ---- */

typedef void (*fk_bf16_micro_fn)(int64_t nt, const uint16_t *a, int64_t astr, const uint16_t *b,
                                 int64_t bstr, float *c, int64_t ldc, bool acc, const char *pf,
                                 int64_t pfn);

/* AMX: tiles 0..3 = c (0,0) (0,1) (1,0) (1,1); 4, 5 = A strips; 6, 7 = B strips.
 * gcc's _tile_loadd/_tile_stored are asm statements without memory operands:
 * this function must stay out of line (it is called through a pointer), so
 * the call orders its memory accesses with the caller's. */
__attribute__((target(FK_AMX_TARGET))) static void
fk_bf16_micro_amx(int64_t nt, const uint16_t *a, int64_t astr, const uint16_t *b, int64_t bstr,
                  float *c, int64_t ldc, bool acc, const char *pf, int64_t pfn) {
    const size_t cs = (size_t)ldc * 4;
    if (acc) {
        _tile_loadd(0, c, cs);
        _tile_loadd(1, c + 16, cs);
        _tile_loadd(2, c + 16 * ldc, cs);
        _tile_loadd(3, c + 16 * ldc + 16, cs);
    } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    }
    const uint16_t *a1 = a + astr, *b1 = b + bstr;
    for (int64_t t = 0; t < nt; t++) {
        _tile_loadd(4, a + t * 512, 64);
        _tile_loadd(6, b + t * 512, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_loadd(7, b1 + t * 512, 64);
        _tile_dpbf16ps(1, 4, 7);
        _tile_loadd(5, a1 + t * 512, 64);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
        for (int64_t q = 0; q < pfn; q++) _mm_prefetch(pf + (t * pfn + q) * 64, _MM_HINT_T1);
    }
    _tile_stored(0, c, cs);
    _tile_stored(1, c + 16, cs);
    _tile_stored(2, c + 16 * ldc, cs);
    _tile_stored(3, c + 16 * ldc + 16, cs);
}

typedef struct fk_amx_tilecfg {
    uint8_t palette_id;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} fk_amx_tilecfg;

/* Eight 16 × 64-byte tiles for this thread. */
__attribute__((target(FK_AMX_TARGET))) static void fk_bf16_amx_begin(void) {
    fk_amx_tilecfg cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.palette_id = 1;
    for (int i = 0; i < 8; i++) {
        cfg.colsb[i] = 64;
        cfg.rows[i] = 16;
    }
    /* not _tile_loadconfig: gcc 12 does not see that it reads cfg and drops
     * the stores that fill it (then the first tile instruction faults) */
    __asm__ volatile("ldtilecfg %0" : : "m"(cfg) : "memory");
}

__attribute__((target(FK_AMX_TARGET))) static void fk_bf16_amx_end(void) { _tile_release(); }

/* AVX512-BF16: the same packed operands, 8 rows × 32 columns at a time
 * (16 zmm accumulators), each a vdpbf16ps chain over k pairs. */
__attribute__((target(FK_BF16_TARGET))) static void
fk_bf16_micro_avx512(int64_t nt, const uint16_t *a, int64_t astr, const uint16_t *b, int64_t bstr,
                     float *c, int64_t ldc, bool acc, const char *pf, int64_t pfn) {
    (void)pf, (void)pfn; /* slower kernel: the hardware prefetchers keep up */
    for (int h = 0; h < 4; h++) {
        const uint16_t *as = a + (h >> 1) * astr + (h & 1) * 8 * 32; /* rows 8h .. 8h+7 */
        float *cr = c + (int64_t)h * 8 * ldc;
        __m512 c0[8], c1[8];
        for (int i = 0; i < 8; i++) {
            c0[i] = acc ? _mm512_loadu_ps(cr + i * ldc) : _mm512_setzero_ps();
            c1[i] = acc ? _mm512_loadu_ps(cr + i * ldc + 16) : _mm512_setzero_ps();
        }
        for (int64_t t = 0; t < nt; t++) {
            const uint16_t *at = as + t * 512, *b0 = b + t * 512, *b1 = b + bstr + t * 512;
            for (int r = 0; r < 16; r++) {
                __m512bh w0 = (__m512bh)_mm512_loadu_si512(b0 + r * 32);
                __m512bh w1 = (__m512bh)_mm512_loadu_si512(b1 + r * 32);
                for (int i = 0; i < 8; i++) {
                    uint32_t pair;
                    memcpy(&pair, at + i * 32 + 2 * r, 4);
                    __m512bh x = (__m512bh)_mm512_set1_epi32((int)pair);
                    c0[i] = _mm512_dpbf16_ps(c0[i], x, w0);
                    c1[i] = _mm512_dpbf16_ps(c1[i], x, w1);
                }
            }
        }
        for (int i = 0; i < 8; i++) {
            _mm512_storeu_ps(cr + i * ldc, c0[i]);
            _mm512_storeu_ps(cr + i * ldc + 16, c1[i]);
        }
    }
}

/* ---- driver ---- */

typedef struct fk_bf16_args {
    int64_t M, N, K, Mp, Kp;
    const uint16_t *ap; /* packed A (see the header): K blocks [0, kb) */
    const uint16_t *ap2; /* K blocks [kb, Kp), as their own packed A (a tiled a2) */
    int64_t kb;
    const void *b;      /* (N, K) dtype bdt, row stride ldb */
    fk_dtype bdt;
    int64_t ldb;
    const void *bias; /* (N) dtype bias_dt, or NULL */
    fk_dtype bias_dt;
    void *c; /* (M, N), row stride ldc: f32, or bf16 when cbf */
    int64_t ldc;
    bool cbf;
    bool ctiled; /* c tiled (cbf too): tensor.h's FK_LAYOUT_TILES, Mp × Np */
    fk_bf16_micro_fn micro;
    fk_act act; /* applied to c as it is stored */
    const fk_cpu_rope_post *post; /* then this, or NULL (fk_bf16_cstore) */
    const uint16_t *bpk; /* b pre-packed (weight cache), or NULL: packed per panel */
    int64_t Np;          /* bpk: round32(N); K block pc at pc·Np, column jc at jc·kcp in it */
} fk_bf16_args;

/* K block pc of packed A (Mp × its kcp columns) */
static const uint16_t *fk_bf16_ablock(const fk_bf16_args *g, int64_t pc) {
    return pc < g->kb ? g->ap + pc * g->Mp : g->ap2 + (pc - g->kb) * g->Mp;
}

/* Rows [m0, m1) × columns [n0, n1) of c (m0, n0 multiples of 32), in panels
 * of NC columns × MC rows. wp[2]: B panels (NC × Kp), cp[2]: C panels
 * (MC × NC), both double-buffered: while the micro-kernels compute C panel
 * (ic, jc), the previous C panel is stored into c and the B panel of the
 * next jc is packed, in small pieces between the micro-kernel calls, so the
 * memory traffic of both overlaps the tile arithmetic instead of following
 * it. rows: 16 × 32 floats of scratch. */
/* The next panel (index into the NC-column panels of [n0, n1)) of a task:
 * from the shared counter `claim` when there is one (panels handed out in
 * order to whichever thread asks first), else the one after `cur`; −1 when
 * none is left. */
static int64_t fk_bf16_next_panel(int64_t *claim, int64_t cur, int64_t npan) {
    int64_t p = claim ? __atomic_fetch_add(claim, 1, __ATOMIC_RELAXED) : cur + 1;
    return p < npan ? p : -1;
}

static void fk_bf16_task(const fk_bf16_args *g, float *rows, uint16_t *const wp[2],
                         float *const cp[2], float *bb, int64_t m0, int64_t m1, int64_t n0,
                         int64_t n1, int64_t *claim) {
    size_t esz = fk_dtype_size(g->bdt);
    int64_t m1p = fk_bf16_round32(m1);
    int64_t nkb = (g->Kp + FK_BF16_KC - 1) / FK_BF16_KC; /* K blocks */
    const int64_t npan = (n1 - n0 + FK_BF16_NC - 1) / FK_BF16_NC;
    fk_bf16_bpack pk;
    fk_bf16_cstore cs = {0};
    int pw = 0, pcb = 0; /* current B panel, current C panel */
    int64_t pan = fk_bf16_next_panel(claim, -1, npan);
    if (g->bpk || pan < 0) {
        pk.units = pk.unit = 0; /* nothing to pack */
    } else {
        int64_t j0 = n0 + pan * FK_BF16_NC;
        fk_bf16_bpack_init(&pk, wp[0], (const char *)g->b + (size_t)(j0 * g->ldb) * esz, g->bdt,
                           g->ldb, fk_bf16_min(FK_BF16_NC, n1 - j0), g->K, g->Kp);
        fk_bf16_bpack_run(&pk, pk.units, rows); /* the first panel up front */
    }
    for (int64_t nxt; pan >= 0; pan = nxt) {
        int64_t jc = n0 + pan * FK_BF16_NC;
        int64_t nc = fk_bf16_min(FK_BF16_NC, n1 - jc), ncp = fk_bf16_round32(nc);
        const uint16_t *wcur = wp[pw];
        float *bias = g->bias ? bb + (jc - n0) : NULL; /* bb holds the bias of [n0, n1) */
        /* the next panel, claimed now and packed in the background */
        nxt = fk_bf16_next_panel(claim, pan, npan);
        if (nxt >= 0 && !g->bpk) {
            int64_t j2 = n0 + nxt * FK_BF16_NC;
            fk_bf16_bpack_init(&pk, wp[pw ^ 1], (const char *)g->b + (size_t)(j2 * g->ldb) * esz,
                               g->bdt, g->ldb, fk_bf16_min(FK_BF16_NC, n1 - j2), g->K, g->Kp);
        } else {
            pk.units = pk.unit = 0;
        }
        int64_t calls_total = ((m1p - m0) / 32) * (ncp / 32) * nkb, calls = 0;
        for (int64_t ic = m0; ic < m1p; ic += FK_BF16_MC) {
            int64_t mcp = fk_bf16_min(FK_BF16_MC, m1p - ic);
            float *ccur = cp[pcb];
            int64_t calls_blk = (mcp / 32) * (ncp / 32) * nkb, calls_b = 0;
            int64_t store_rows0 = cs.mc - cs.row; /* rows of the previous panel left */
            for (int64_t pc = 0; pc < g->Kp; pc += FK_BF16_KC) {
                int64_t kcp = fk_bf16_min(FK_BF16_KC, g->Kp - pc), str = 16 * kcp;
                const uint16_t *ablk = fk_bf16_ablock(g, pc) + (ic / 16) * str; /* (mcp × kcp) */
                const uint16_t *bblk = g->bpk ? g->bpk + pc * g->Np + jc * kcp
                                              : wcur + pc * ncp; /* (ncp × kcp) */
                /* prefetch (to L2) the blocks of the next step, spread over this
                 * step's micro-kernel calls: first packed A, then packed B */
                const char *pxa = NULL, *pxb = NULL;
                int64_t xa = 0, xb = 0; /* bytes */
                if (pc + FK_BF16_KC < g->Kp) {
                    int64_t k2 = fk_bf16_min(FK_BF16_KC, g->Kp - pc - FK_BF16_KC);
                    pxa = (const char *)(fk_bf16_ablock(g, pc + FK_BF16_KC) + (ic / 16) * 16 * k2);
                    xa = mcp * k2 * 2;
                    pxb = g->bpk ? (const char *)(g->bpk + (pc + FK_BF16_KC) * g->Np + jc * k2)
                                 : (const char *)(wcur + (pc + FK_BF16_KC) * ncp);
                    xb = ncp * k2 * 2;
                } else if (ic + FK_BF16_MC < m1p) {
                    int64_t k2 = fk_bf16_min(FK_BF16_KC, g->Kp);
                    pxa = (const char *)(fk_bf16_ablock(g, 0) + ((ic + FK_BF16_MC) / 16) * 16 * k2);
                    xa = fk_bf16_min(FK_BF16_MC, m1p - ic - FK_BF16_MC) * k2 * 2;
                    pxb = g->bpk ? (const char *)(g->bpk + jc * k2) : (const char *)wcur;
                    xb = ncp * k2 * 2;
                }
                int64_t ncall = (mcp / 32) * (ncp / 32), steps = kcp / 32;
                int64_t ca = xa + xb > 0 ? (ncall * xa + (xa + xb) / 2) / (xa + xb) : 0;
                if (ca < 1 && xa > 0) ca = 1;
                if (ca > ncall - 1 && xb > 0) ca = ncall - 1;
                int64_t la = ca > 0 ? (xa / 64 + ca - 1) / ca : 0; /* lines per call */
                int64_t lb = ncall > ca ? (xb / 64 + ncall - ca - 1) / (ncall - ca) : 0;
                int64_t pfa = (la + steps - 1) / steps, pfb = (lb + steps - 1) / steps;
                int64_t q = 0;
                for (int64_t ir = 0; ir < mcp; ir += 32)
                    for (int64_t jr = 0; jr < ncp; jr += 32, q++) {
                        int64_t pfn = q < ca ? pfa : pfb;
                        const char *pf = pfn == 0 ? NULL
                                         : q < ca ? pxa + q * pfa * steps * 64
                                                  : pxb + (q - ca) * pfb * steps * 64;
                        g->micro(steps, ablk + (ir / 16) * str, str, bblk + (jr / 16) * str, str,
                                 ccur + ((ir / 32) * (ncp / 32) + jr / 32) * 1024, 32, pc > 0, pf,
                                 pfn);
                        /* background work, in proportion to the calls done */
                        calls++;
                        calls_b++;
                        fk_bf16_bpack_run(&pk, pk.units * calls / calls_total - pk.unit, rows);
                        fk_bf16_cstore_run(&cs, store_rows0 * calls_b / calls_blk -
                                                    (store_rows0 - (cs.mc - cs.row)));
                    }
            }
            fk_bf16_cstore_run(&cs, cs.mc - cs.row); /* the rest of the previous panel */
            const size_t coff = g->ctiled ? 0 : (size_t)(ic * g->ldc + jc) * (g->cbf ? 2u : 4u);
            fk_bf16_cstore c2 = {.cp = ccur,
                                 .c = (char *)g->c + coff,
                                 .ldc = g->ldc,
                                 .mc = fk_bf16_min(mcp, g->M - ic),
                                 .nc = nc,
                                 .ncp = ncp,
                                 .bb = bias,
                                 .row = 0,
                                 .act = g->act,
                                 .cbf = g->cbf,
                                 .tiled = g->ctiled,
                                 .r0 = ic,
                                 .c0 = jc,
                                 .Mp = g->Mp,
                                 .Np = g->Np,
                                 .post = g->post};
            cs = c2; /* stored during the next block */
            pcb ^= 1;
        }
        fk_bf16_bpack_run(&pk, pk.units - pk.unit, rows); /* the rest of the next panel */
        pw ^= 1;
    }
    fk_bf16_cstore_run(&cs, cs.mc - cs.row);
}

/* Map the pages of a new cache entry and of its source in one system call
 * each (Linux >= 5.14; a hint, ignored elsewhere): page faults one 4 KB
 * page at a time made packing several times slower than the copy itself. */
static void fk_bf16_prefault(int nt, void *dst, size_t dbytes, const void *src, size_t sbytes) {
#if defined(__linux__) && defined(MADV_POPULATE_WRITE) && defined(MADV_POPULATE_READ)
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0) return;
    uintptr_t a = (uintptr_t)src & ~((uintptr_t)pg - 1);
    uintptr_t e = ((uintptr_t)src + sbytes + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
    (void)madvise((void *)a, e - a, MADV_POPULATE_READ);
    /* the new pages in one piece per thread, in 2 MB units: zeroing fresh
     * pages is most of the cost (on a VM it includes the host backing them),
     * and it runs in parallel */
    const size_t units = (dbytes + FK_BF16_HUGE - 1) / FK_BF16_HUGE;
    (void)nt;
    FK_CPU_PARALLEL_FOR(nt)
    for (int t = 0; t < nt; t++) {
        size_t u0 = units * (size_t)t / (size_t)nt, u1 = units * (size_t)(t + 1) / (size_t)nt;
        if (u1 > u0)
            (void)madvise((char *)dst + u0 * FK_BF16_HUGE, (u1 - u0) * FK_BF16_HUGE,
                          MADV_POPULATE_WRITE);
    }
#else
    (void)nt, (void)dst, (void)dbytes, (void)src, (void)sbytes;
#endif
}

/* Pack all of w (N, K) into the cache layout (pk, Np·Kp bf16), strips in parallel. */
static void fk_bf16_pack_weight(const fk_backend *be, uint16_t *pk, const void *w, fk_dtype dt,
                                int64_t N, int64_t K) {
    int64_t Kp = fk_bf16_round32(K), Np = fk_bf16_round32(N);
    int64_t strips = Np / 16, kts = Kp / 32;
    int nt = fk_cpu_impl_of(be)->n_threads;
    (void)nt;
    FK_CPU_PARALLEL_FOR(nt)
    for (int64_t j = 0; j < strips; j++) {
        fk_bf16_bpack st;
        fk_bf16_bpack_init(&st, pk, w, dt, K, N, K, Kp);
        st.unit = j * kts;
        fk_bf16_bpack_run(&st, kts, fk_cpu_scratch(be, fk_cpu_thread_id()));
    }
}

size_t fk_cpu_cache_weight(fk_backend *be, const fk_tensor *w) {
    fk_cpu_impl *impl = fk_cpu_impl_of(be);
    if (impl->precision != FK_PREC_BF16 || impl->bf16_kernel == FK_CPU_BF16_NONE) return 0;
    if (!w || w->ndim != 2 || w->device != FK_DEVICE_CPU || !fk_cpu_weight_dtype_ok(w->dtype) ||
        w->dtype == FK_F64)
        return 0;
    int64_t N = w->shape[0], K = w->shape[1];
    if (N < 32 || K < 32 || (double)N * (double)K < 65536.0) return 0; /* not worth a mapping */
    fk_bf16_wcache *wc = impl->wcache;
    if (!wc) {
        wc = calloc(1, sizeof(*wc));
        if (!wc) return 0;
        impl->wcache = wc;
    }
    for (int i = 0; i < wc->n; i++)
        if (wc->e[i].data == w->data && wc->e[i].dt == w->dtype && wc->e[i].N == N &&
            wc->e[i].K == K)
            return wc->e[i].bytes;
    if (wc->n == wc->cap) {
        int cap = wc->cap ? 2 * wc->cap : 64;
        fk_bf16_wc_entry *e = realloc(wc->e, (size_t)cap * sizeof(*e));
        if (!e) return 0;
        wc->e = e;
        wc->cap = cap;
    }
    size_t bytes = (size_t)fk_bf16_round32(N) * (size_t)fk_bf16_round32(K) * 2;
    uint16_t *pk = fk_bf16_ws_alloc(bytes);
    if (!pk) return 0;
    fk_cpu_not_nested();
    fk_bf16_prefault(impl->n_threads, pk, bytes, w->data, (size_t)(N * K) * fk_dtype_size(w->dtype));
    fk_bf16_pack_weight(be, pk, w->data, w->dtype, N, K);
    wc->e[wc->n++] = (fk_bf16_wc_entry){w->data, w->dtype, N, K, pk, bytes};
    wc->bytes += bytes;
    return bytes;
}

static void fk_bf16_pack_a_all(const fk_backend *be, const fk_bf16_asrc *src, int64_t M,
                               int64_t K, int64_t Mp, int64_t Kp, uint16_t *ap) {
    int nt = fk_cpu_impl_of(be)->n_threads;
    int64_t ns = Mp / 16;
    if ((double)Mp * (double)Kp < 65536.0) nt = 1;
    (void)nt;
    FK_CPU_PARALLEL_FOR(nt)
    for (int64_t s = 0; s < ns; s++) fk_bf16_pack_a_strip(ap, src, M, K, Mp, Kp, s);
}

bool fk_cpu_gemm_bf16(fk_backend *be, int64_t M, int64_t N, int64_t K, const float *a, int64_t lda,
                      const void *b, fk_dtype bdt, int64_t ldb, const void *bias, fk_dtype bias_dt,
                      float *c, int64_t ldc) {
    return fk_cpu_gemm_bf16_act(be, M, N, K, a, lda, b, bdt, ldb, bias, bias_dt, c, ldc,
                                FK_ACT_NONE);
}

bool fk_cpu_gemm_bf16_act(fk_backend *be, int64_t M, int64_t N, int64_t K, const float *a,
                          int64_t lda, const void *b, fk_dtype bdt, int64_t ldb, const void *bias,
                          fk_dtype bias_dt, float *c, int64_t ldc, fk_act act) {
    return fk_cpu_gemm_bf16_cat(be, M, N, K, a, FK_F32, lda, NULL, FK_F32, 0, K, b, bdt, ldb,
                                bias, bias_dt, c, FK_F32, ldc, act);
}

/* The workspace of products of M rows, K columns of A and at most Nmax
 * columns (bf16 elements): packed A (Mp × Kp), then per thread two B panels
 * (NC × Kp each), two C panels (MC × NC f32 each) and the bias (Nmax f32):
 * *a_el, *b_el, *t_el. False when it cannot be had (the caller falls back to
 * the f32 path). */
static bool fk_bf16_reserve(fk_cpu_impl *impl, int64_t Mp, int64_t Kp, int64_t Nmax,
                            uint64_t *a_el, uint64_t *b_el, uint64_t *t_el) {
    uint64_t need = 0;
    *t_el = (2 * (uint64_t)FK_BF16_MC * FK_BF16_NC * 2 + 2 * ((uint64_t)Nmax + 32) + 31) &
            ~(uint64_t)31;
    if (!fk_mul_ok((uint64_t)Mp, (uint64_t)Kp, a_el) ||
        !fk_mul_ok((uint64_t)FK_BF16_NC * 2u, (uint64_t)Kp, b_el) ||
        !fk_mul_ok(*a_el + (*b_el + *t_el) * (uint64_t)impl->n_threads, 2u, &need) ||
        need > SIZE_MAX)
        return false;
    return fk_cpu_bf16_ws_reserve(impl, need);
}

/* c (M, N) of dtype cdt (f32, bf16 or FK_CPU_TILES) = act(A · bᵀ + bias)
 * with A packed: K blocks [0, kb) at ap (at the start of the workspace,
 * fk_bf16_reserve and fk_bf16_pack_a_all, or a tiled a), the rest at ap2 (a
 * tiled a2). */
static void fk_bf16_product(fk_backend *be, const uint16_t *ap, const uint16_t *ap2, int64_t kb,
                            int64_t M, int64_t N, int64_t K, uint64_t a_el, uint64_t b_el,
                            uint64_t t_el, const void *b, fk_dtype bdt, int64_t ldb,
                            const void *bias, fk_dtype bias_dt, void *c, fk_dtype cdt,
                            int64_t ldc, fk_act act, const fk_cpu_rope_post *post) {
    fk_cpu_impl *impl = fk_cpu_impl_of(be);
    fk_cpu_bf16_kernel kern = impl->bf16_kernel;
    FK_ASSERT(!post || (cdt != FK_CPU_TILES && post->k && post->D > 0 && post->D % 2 == 0 &&
                        FK_BF16_NC % post->D == 0 && N % post->D == 0));
    int nt = impl->n_threads;
    int64_t Mp = fk_bf16_round32(M), Kp = fk_bf16_round32(K);
    uint16_t *wpanels = (uint16_t *)impl->bf16_ws + a_el;
    const bool cbf = cdt != FK_F32;
    fk_bf16_args g = {.M = M,
                      .N = N,
                      .K = K,
                      .Mp = Mp,
                      .Kp = Kp,
                      .ap = ap,
                      .ap2 = ap2,
                      .kb = kb,
                      .b = b,
                      .bdt = bdt,
                      .ldb = ldb,
                      .bias = bias,
                      .bias_dt = bias_dt,
                      .c = c,
                      .ldc = ldc,
                      .cbf = cbf,
                      .ctiled = cdt == FK_CPU_TILES,
                      .micro = kern == FK_CPU_BF16_AMX ? fk_bf16_micro_amx : fk_bf16_micro_avx512,
                      .act = act,
                      .post = post,
                      .bpk = NULL,
                      .Np = 0};
    if (ldb == K) g.bpk = fk_bf16_wcache_find(impl, b, bdt, N, K);
    g.Np = fk_bf16_round32(N);
    /* Split the output in units of 32: columns first (each thread then packs
     * a disjoint part of B), rows when there are too few column units. With
     * a post, columns in units of a whole panel (so every panel starts at a
     * head). */
    const int64_t cu = post ? FK_BF16_NC : 32; /* column unit */
    int64_t np = (N + cu - 1) / cu, mp = Mp / 32;
    int64_t gn = (np + 1) / 2 < nt ? (np + 1) / 2 : nt;
    int64_t gm = (nt + gn - 1) / gn < mp ? (nt + gn - 1) / gn : mp;
    if ((double)M * (double)N * (double)K < 1048576.0) gn = gm = 1; /* not worth a fork */
    int64_t ntasks = gn * gm;
    /* With at least two NC-column panels per thread, the panels are handed
     * out one at a time (a shared counter) instead of a fixed range per
     * thread: a thread that the OS or another process holds up no longer
     * holds up the whole product (on a shared 2-core machine single calls ran
     * at half speed now and then). Each element's chain is the same, so the
     * bits do not change. */
    int64_t claim = 0;
    const bool dyn = gm == 1 && gn > 1 && (N + FK_BF16_NC - 1) / FK_BF16_NC >= 2 * gn;
    int threads = ntasks < nt ? (int)ntasks : nt;
    (void)threads;
    bool amx = kern == FK_CPU_BF16_AMX;
    FK_CPU_PARALLEL_FOR(threads)
    for (int64_t t = 0; t < ntasks; t++) {
        int64_t tn = t % gn, tm = t / gn;
        int64_t n0 = np * tn / gn * cu, n1 = fk_bf16_min(np * (tn + 1) / gn * cu, N);
        int64_t m0 = mp * tm / gm * 32, m1 = fk_bf16_min(mp * (tm + 1) / gm * 32, M);
        if (dyn) n0 = 0, n1 = N; /* every task: panels of the whole of N, claimed */
        if (n0 >= n1 || m0 >= m1) continue;
        int tid = fk_cpu_thread_id();
        uint16_t *ws = wpanels + (int64_t)tid * (int64_t)(b_el + t_el); /* this thread's part */
        uint16_t *wp[2] = {ws, ws + FK_BF16_NC * Kp};
        float *cpn = (float *)(ws + 2 * FK_BF16_NC * Kp);
        float *cp[2] = {cpn, cpn + FK_BF16_MC * FK_BF16_NC};
        float *bb = cpn + 2 * FK_BF16_MC * FK_BF16_NC; /* (n1 - n0) */
        if (bias)
            fk_convert_to_f32(bb, (const char *)bias + (size_t)n0 * fk_dtype_size(bias_dt), bias_dt,
                              (size_t)(n1 - n0));
        if (amx) fk_bf16_amx_begin();
        fk_bf16_task(&g, fk_cpu_scratch(be, tid), wp, cp, bb, m0, m1, n0, n1,
                     dyn ? &claim : NULL);
        if (amx) fk_bf16_amx_end();
        _mm_sfence(); /* order the streaming stores of c before the join */
    }
}

/* fk_cpu_gemm_bf16_cat with the output stage's QK norm (post, or NULL) */
static bool fk_bf16_cat(fk_backend *be, int64_t M, int64_t N, int64_t K, const void *a,
                        fk_dtype adt, int64_t lda, const void *a2, fk_dtype a2dt, int64_t lda2,
                        int64_t k1, const void *b, fk_dtype bdt, int64_t ldb, const void *bias,
                        fk_dtype bias_dt, void *c, fk_dtype cdt, int64_t ldc, fk_act act,
                        const fk_cpu_rope_post *post) {
    fk_cpu_impl *impl = fk_cpu_impl_of(be);
    FK_ASSERT(fk_cpu_gemm_dtype_ok(adt) && fk_cpu_gemm_dtype_ok(a2dt) &&
              fk_cpu_gemm_dtype_ok(cdt));
    FK_ASSERT((adt != FK_CPU_TILES && a2dt != FK_CPU_TILES) || !a2 || k1 % FK_TILE_KC == 0);
    if (impl->bf16_kernel == FK_CPU_BF16_NONE || M <= 0 || N <= 0 || K <= 0) return false;
    fk_cpu_not_nested();
    int64_t Mp = fk_bf16_round32(M), Kp = fk_bf16_round32(K);
    uint64_t a_el, b_el, t_el;
    if (!fk_bf16_reserve(impl, Mp, Kp, N, &a_el, &b_el, &t_el)) return false;
    const uint16_t *ap = impl->bf16_ws, *ap2 = NULL;
    int64_t kb = Kp; /* K blocks from ap; the rest from ap2 */
    uint16_t *ws = impl->bf16_ws;
    if (!a2 || (adt != FK_CPU_TILES && a2dt != FK_CPU_TILES)) { /* nothing tiled but c */
        if (adt == FK_CPU_TILES) {
            ap = a;
        } else {
            fk_bf16_asrc asrc = {a, a2, lda, lda2, a2 ? k1 : K, adt == FK_BF16, a2dt == FK_BF16};
            fk_bf16_pack_a_all(be, &asrc, M, K, Mp, Kp, ws);
        }
    } else { /* two parts, one or both tiled: K blocks [0, k1) and the rest */
        kb = k1;
        if (adt == FK_CPU_TILES) {
            ap = a;
        } else {
            fk_bf16_asrc asrc = {a, NULL, lda, 0, k1, adt == FK_BF16, false};
            fk_bf16_pack_a_all(be, &asrc, M, k1, Mp, k1, ws);
        }
        if (a2dt == FK_CPU_TILES) {
            ap2 = a2;
        } else { /* after the first part's K blocks in the workspace, when it has them */
            uint16_t *w2 = adt == FK_CPU_TILES ? ws : ws + Mp * k1;
            fk_bf16_asrc asrc = {a2, NULL, lda2, 0, K - k1, a2dt == FK_BF16, false};
            fk_bf16_pack_a_all(be, &asrc, M, K - k1, Mp, Kp - k1, w2);
            ap2 = w2;
        }
    }
    fk_bf16_product(be, ap, ap2, kb, M, N, K, a_el, b_el, t_el, b, bdt, ldb, bias, bias_dt, c,
                    cdt, ldc, act, post);
    return true;
}

bool fk_cpu_gemm_bf16_cat(fk_backend *be, int64_t M, int64_t N, int64_t K, const void *a,
                          fk_dtype adt, int64_t lda, const void *a2, fk_dtype a2dt, int64_t lda2,
                          int64_t k1, const void *b, fk_dtype bdt, int64_t ldb, const void *bias,
                          fk_dtype bias_dt, void *c, fk_dtype cdt, int64_t ldc, fk_act act) {
    return fk_bf16_cat(be, M, N, K, a, adt, lda, a2, a2dt, lda2, k1, b, bdt, ldb, bias, bias_dt,
                       c, cdt, ldc, act, NULL);
}

bool fk_cpu_gemm_bf16_rope(fk_backend *be, int64_t M, int64_t N, int64_t K, const void *a,
                           fk_dtype adt, const void *b, fk_dtype bdt, const void *bias,
                           fk_dtype bias_dt, void *c, fk_dtype cdt,
                           const fk_cpu_rope_post *post) {
    FK_ASSERT(post);
    return fk_bf16_cat(be, M, N, K, a, adt, K, NULL, FK_F32, 0, K, b, bdt, K, bias, bias_dt, c,
                       cdt, N, FK_ACT_NONE, post);
}

bool fk_cpu_gemm_bf16_multi(fk_backend *be, int n, int64_t M, int64_t K, const void *a,
                            fk_dtype adt, int64_t lda, const int64_t *N, const void *const *b,
                            const fk_dtype *bdt, const void *const *bias,
                            const fk_dtype *bias_dt, void *const *c, const fk_dtype *cdt,
                            const fk_act *act) {
    fk_cpu_impl *impl = fk_cpu_impl_of(be);
    FK_ASSERT(fk_cpu_gemm_dtype_ok(adt));
    if (impl->bf16_kernel == FK_CPU_BF16_NONE || n <= 0 || M <= 0 || K <= 0) return false;
    int64_t Nmax = 0;
    for (int i = 0; i < n; i++) {
        FK_ASSERT(fk_cpu_gemm_dtype_ok(cdt[i]));
        if (N[i] <= 0) return false;
        if (N[i] > Nmax) Nmax = N[i];
    }
    fk_cpu_not_nested();
    int64_t Mp = fk_bf16_round32(M), Kp = fk_bf16_round32(K);
    uint64_t a_el, b_el, t_el;
    if (!fk_bf16_reserve(impl, Mp, Kp, Nmax, &a_el, &b_el, &t_el)) return false;
    const uint16_t *ap = a; /* a tiled a: already packed */
    if (adt != FK_CPU_TILES) {
        fk_bf16_asrc asrc = {a, NULL, lda, 0, K, adt == FK_BF16, false};
        fk_bf16_pack_a_all(be, &asrc, M, K, Mp, Kp, impl->bf16_ws); /* once for all */
        ap = impl->bf16_ws;
    }
    for (int i = 0; i < n; i++)
        fk_bf16_product(be, ap, NULL, Kp, M, N[i], K, a_el, b_el, t_el, b[i], bdt[i], K, bias[i],
                        bias_dt[i], c[i], cdt[i], N[i], act[i], NULL);
    return true;
}

/* ---- attention (AMX) ----
 * Multi-head attention as in fk_cpu_attention (same layout and semantics),
 * flash style with both products on tiles, computed TRANSPOSED so that every
 * softmax step is a vertical SIMD operation on 16 queries at once (no
 * horizontal max / sum, one exp per 16 scores, α for 16 rows in one go).
 * One task = head h × FK_ATT16_BQ query rows; keys in blocks of FK_ATT16_BK:
 *   Sᵀ (bk, bq) = bf16(K_h) · bf16(Q_h)ᵀ    tdpbf16ps, f32 accumulation over d
 *   per query (in base 2, c = scale·log2 e), with a shift m: on the
 *              query's first block m = c·max_j s; later blocks keep m while
 *              c·s ≤ m + 8 (weights up to 2^8: one pass, no rescale), else
 *              m' = c·max_j s, α = 2^(m − m'), the block redone with m';
 *              p = 2^(s·c − m) (one fma);  l = l·α + Σ_j p (f32 per block, then
 *              double);  Oᵀ ← Oᵀ·α
 *   Oᵀ (D, bq) += bf16(V_h)ᵀ · bf16(P)ᵀ     tdpbf16ps, f32 accumulation over j
 *   out = (Oᵀ)ᵀ / l
 * Packed per head by each thread that has tasks of the head, into its part
 * of the workspace, right before them: K as A tiles (16 keys × 32 d),
 * Vᵀ as A tiles (16 d × 32 keys); per task Qᵀ as VNNI B tiles (over d
 * pairs, 16 queries); per block Pᵀ as VNNI B tiles (over key pairs).
 * Each task is independent and computed in a fixed order: bitwise identical
 * for any thread count. Handles non-causal attention with scale > 0, D a
 * multiple of 32 up to 512 (FLUX: D = 128, T5: 64, the autoencoder's mid
 * block: 512) and an optional f32 bias
 * (H, Lq, Lk) (T5's relative positions: each 16 × 16 block of it is
 * transposed into Sᵀ, St = s·scale + biasᵀ, before the max); anything else
 * goes to the f32 reference.
 * Error (tests/unit/test_ops_cpu_amx.c): q, k, v and p rounded to bf16,
 * about 0.25 % relative L2 on the output for random inputs. */

#define FK_ATT16_BQ 64  /* query rows per task (multiple of 32) */
#define FK_ATT16_BK 128 /* keys per softmax block (multiple of 32) */
#define FK_ATT16_DMAX 512

typedef struct fk_att16_args {
    int64_t Lq, Lk, Lkp, H, D;
    const void *q;           /* (Lq, H, D), f32 or bf16 (qdt) */
    fk_dtype qdt, kdt, vdt;  /* q, k, v: FK_F32, or FK_BF16 (read in place, the values the f32
                              * ones are rounded to) */
    void *out;               /* (Lq, H·D): f32, or bf16 when obf */
    float scale;
    const float *bias;       /* (H, Lq, Lk) added to the scaled scores, or NULL */
    bool obf;                /* out bf16: each value rounded as the products round x */
    bool otiled;             /* out bf16 tiled (tensor.h), rows padded to oMp */
    int64_t oMp;
} fk_att16_args;

/* 2^t for t <= 8 on 16 lanes (softmax weights, computed in base 2: the
 * scores are pre-multiplied by log2(e)): 2^n·p(f), n = round(t),
 * f = t − n in [-1/2, 1/2] (exact), p the degree-4 Taylor polynomial of
 * e^(f·ln 2) (truncation 0.347^5/5! = 4.2e-5 relative, ~50 times below
 * the bf16 rounding of p that follows, 2^-9 on average; degree 6 measured
 * 2-7% slower for no visible change in the attention's error). t is first
 * raised to −125 (2^−125·p(f) is still a normal float, ~1e-38, nothing
 * against weights near 1; no denormal ever reaches an add: they would cost
 * microcode assists), which also makes 2^−inf tiny instead of NaN; NaN
 * stays NaN (max returns its second operand). 8 instructions. */
__attribute__((target(FK_BF16_TARGET))) static inline __m512 fk_bf16_exp2_16(__m512 t) {
    t = _mm512_max_ps(_mm512_set1_ps(-125.0f), t);
    __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_sub_ps(t, n);
    __m512 q = _mm512_set1_ps(9.6181291076284772e-03f); /* ln2^4 / 4! */
    q = _mm512_fmadd_ps(q, f, _mm512_set1_ps(5.5504108664821580e-02f)); /* ln2^3 / 3! */
    q = _mm512_fmadd_ps(q, f, _mm512_set1_ps(2.4022650695910071e-01f)); /* ln2^2 / 2! */
    q = _mm512_fmadd_ps(q, f, _mm512_set1_ps(6.9314718055994531e-01f)); /* ln2 */
    q = _mm512_fmadd_ps(q, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(q, n);
}

/* 32 bf16 values of a row of k (f32, rounded as fk_bf16_cvt32; or bf16, read) */
__attribute__((target(FK_BF16_TARGET))) static inline __m512i fk_att16_row32(const void *p,
                                                                            fk_dtype dt) {
    return dt == FK_BF16 ? _mm512_loadu_si512(p) : fk_bf16_cvt32((const float *)p, 32);
}

/* 16 values of a row of v as f32 bits (f32, loaded; or bf16, widened exactly) */
__attribute__((target(FK_BF16_TARGET))) static inline __m512i fk_att16_row16(const void *p,
                                                                            fk_dtype dt) {
    if (dt != FK_BF16) return _mm512_loadu_si512(p);
    return _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16);
}

/* K and V of head h into the packed layouts, kh and vh (Lkp·D bf16 each):
 * K as A tiles (strip of 16 keys at s·16·D, tile t over d 32t .. 32t+31 at
 * t·512), Vᵀ as A tiles (strip of 16 d's at s·16·Lkp, tile t over keys
 * 32t .. 32t+31 at t·512); keys past Lk are zero. The rows of one head are
 * H·D floats apart (a few hundred bytes each): the hardware prefetchers do
 * not follow that stride, so the rows are prefetched ahead here. */
#define FK_ATT16_PF_ROWS 32
__attribute__((target(FK_BF16_TARGET))) static void fk_att16_pack_kv(const fk_att16_args *g,
                                                                     const void *k, const void *v,
                                                                     uint16_t *kh, uint16_t *vh,
                                                                     int64_t h) {
    const int64_t HD = g->H * g->D, D = g->D, Lk = g->Lk, Lkp = g->Lkp;
    const int64_t ks = (int64_t)fk_dtype_size(g->kdt), vs = (int64_t)fk_dtype_size(g->vdt);
    const char *kb = (const char *)k + h * D * ks, *vb = (const char *)v + h * D * vs;
    for (int64_t j = 0; j < Lkp; j++) {
        if (j + FK_ATT16_PF_ROWS < Lk)
            for (int64_t c = 0; c < D * ks; c += 64)
                _mm_prefetch(kb + (j + FK_ATT16_PF_ROWS) * HD * ks + c, _MM_HINT_T0);
        uint16_t *dst = kh + (j / 16) * 16 * D + (j % 16) * 32;
        for (int64_t t = 0; t < D / 32; t++)
            _mm512_storeu_si512(dst + t * 512, j < Lk
                                                   ? fk_att16_row32(kb + (j * HD + 32 * t) * ks,
                                                                    g->kdt)
                                                   : _mm512_setzero_si512());
    }
    for (int64_t t = 0; t < Lkp / 32; t++)     /* 32 keys */
        for (int64_t s = 0; s < D / 16; s++) { /* 16 d's */
            __m512i lo[16], hi[16]; /* rows: keys 32t + i and 32t + 16 + i, 16 d's as f32 bits */
            for (int64_t i = 0; i < 32; i++) /* line s of the next 32 keys' rows */
                if (32 * t + 32 + i < Lk)
                    _mm_prefetch(vb + ((32 * t + 32 + i) * HD + 16 * s) * vs, _MM_HINT_T0);
            for (int64_t i = 0; i < 16; i++) {
                int64_t j0 = 32 * t + i, j1 = j0 + 16;
                lo[i] = j0 < Lk ? fk_att16_row16(vb + (j0 * HD + 16 * s) * vs, g->vdt)
                                : _mm512_setzero_si512();
                hi[i] = j1 < Lk ? fk_att16_row16(vb + (j1 * HD + 16 * s) * vs, g->vdt)
                                : _mm512_setzero_si512();
            }
            fk_x86_tr16_epi32(lo); /* lo[d] = keys 32t .. 32t+15 of d */
            fk_x86_tr16_epi32(hi);
            uint16_t *dst = vh + s * 16 * Lkp + t * 512; /* (16 d, 32 keys) */
            for (int64_t d = 0; d < 16; d++)
                _mm512_storeu_si512(dst + d * 32,
                                    (__m512i)_mm512_cvtne2ps_pbh(_mm512_castsi512_ps(hi[d]),
                                                                 _mm512_castsi512_ps(lo[d])));
        }
}

/* One task: head h, query rows [l0, l0 + bq). Scratch (floats): Sᵀ (BK × BQ),
 * Oᵀ (DMAX × BQ), m, l (BQ), packed Qᵀ and Pᵀ, 16 × 32 floats for packing. */
/* The Sᵀ = K·Qᵀ tile products of one key block, issued a few at a time
 * (fk_att16_qk_run) so that they overlap the softmax of the previous
 * block: the tile unit works on them while the vector units compute
 * exponentials (out-of-order execution overlaps the two when they are
 * interleaved in the instruction stream, not when they come in phases). */
typedef struct fk_att16_qk {
    const uint16_t *kh, *Qb; /* packed K of the head, packed Qᵀ of the task */
    float *St;               /* (BK, BQ) destination */
    int64_t j0, bkp, bqp, D;
    int64_t call, calls; /* next (key strip, query strip) product, total */
} fk_att16_qk;

static void fk_att16_qk_init(fk_att16_qk *q, const uint16_t *kh, const uint16_t *Qb, float *St,
                             int64_t j0, int64_t bk, int64_t bqp, int64_t D) {
    q->kh = kh;
    q->Qb = Qb;
    q->St = St;
    q->j0 = j0;
    q->bkp = fk_bf16_round32(bk);
    q->bqp = bqp;
    q->D = D;
    q->call = 0;
    q->calls = bk > 0 ? (q->bkp / 32) * (bqp / 32) : 0;
}

/* Issue products until `upto` of them are done. Qᵀ is packed in blocks of
 * FK_BF16_KC d (block pc at pc·bqp, its strips 16·kc apart), K contiguously
 * over d. */
static void fk_att16_qk_run(fk_att16_qk *q, int64_t upto) {
    enum { BQ = FK_ATT16_BQ };
    for (; q->call < q->calls && q->call < upto; q->call++) {
        const int64_t jr = (q->call / (q->bqp / 32)) * 32, ir = (q->call % (q->bqp / 32)) * 32;
        for (int64_t pc = 0; pc < q->D; pc += FK_BF16_KC) {
            const int64_t kc = fk_bf16_min(FK_BF16_KC, q->D - pc);
            fk_bf16_micro_amx(kc / 32, q->kh + ((q->j0 + jr) / 16) * 16 * q->D + (pc / 32) * 512,
                              16 * q->D, q->Qb + pc * q->bqp + (ir / 16) * 16 * kc, 16 * kc,
                              q->St + jr * BQ + ir, BQ, pc > 0, NULL, 0);
        }
    }
}

/* Weights of one block (FK_ATT16_SLACK: how far above the shift m a score may
 * go before the block is redone with a new shift, in log2 units). */
#define FK_ATT16_SLACK 8.0f

/* Where the next block's QK products are issued from the softmax loop: two
 * slots per group of 16 queries (at its first and middle key pair). */
typedef struct fk_att16_slot {
    fk_att16_qk *qk;
    int64_t first, slots; /* this group's first slot, slots per block */
} fk_att16_slot;

/* p = 2^(s·c − m) for one group of 16 queries over the block's keys (Sᵀ
 * column scol, rows BQ apart; keys past bk read as 0), stored as Pᵀ VNNI B
 * tiles in pb; returns Σ_j p per query (f32). dead: queries whose weights are
 * forced to 0. mx (or NULL): also the max of s over the block. slot (or
 * NULL): issue the next block's QK products on the way. */
__attribute__((target(FK_BF16_TARGET))) static inline __m512
fk_att16_weights(const float *scol, uint16_t *pb, int64_t bk, int64_t bkp, __m512 c, __m512 m,
                 __mmask16 dead, __m512 *mx, const fk_att16_slot *slot) {
    enum { BQ = FK_ATT16_BQ };
    const __m512i inter =
        _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                         21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512 nm = _mm512_sub_ps(_mm512_setzero_ps(), m);
    const int64_t half = (bkp / 2 + 1) & ~(int64_t)1; /* even */
    __m512 sum = _mm512_setzero_ps(), vmax = _mm512_set1_ps(-INFINITY);
    for (int64_t j = 0; j < bkp; j += 2) {
        if (slot && (j == 0 || j == half)) /* the next block's products, spread over the slots */
            fk_att16_qk_run(slot->qk, slot->qk->calls * (slot->first + (j == 0 ? 1 : 2)) / slot->slots);
        const __m512 s0 = j < bk ? _mm512_loadu_ps(scol + j * BQ) : _mm512_set1_ps(-INFINITY);
        const __m512 s1 = j + 1 < bk ? _mm512_loadu_ps(scol + (j + 1) * BQ) : _mm512_set1_ps(-INFINITY);
        if (mx) vmax = _mm512_max_ps(vmax, _mm512_max_ps(s0, s1));
        /* p = 2^(s·c − m), one rounding for the argument (fma); keys past bk: 0 */
        __m512 p0 = j < bk ? fk_bf16_exp2_16(_mm512_fmadd_ps(s0, c, nm)) : _mm512_setzero_ps();
        __m512 p1 = j + 1 < bk ? fk_bf16_exp2_16(_mm512_fmadd_ps(s1, c, nm)) : _mm512_setzero_ps();
        if (dead) { /* rare: fully masked queries */
            p0 = _mm512_maskz_mov_ps((__mmask16)~dead, p0);
            p1 = _mm512_maskz_mov_ps((__mmask16)~dead, p1);
        }
        sum = _mm512_add_ps(sum, _mm512_add_ps(p0, p1));
        __m512i pp = (__m512i)_mm512_cvtne2ps_pbh(p1, p0);
        _mm512_storeu_si512(pb + (j / 32) * 512 + ((j % 32) / 2) * 32,
                            _mm512_permutexvar_epi16(inter, pp));
    }
    if (mx) *mx = vmax;
    return sum;
}

/* The task of head h, query rows [l0, l0 + bq), with that head's packed K
 * and Vᵀ (kh, vh). nq, nbq: the next task's query rows (row i at nq +
 * i·H·D elements of q's dtype, i < nbq), prefetched into L2 a few per key
 * block (NULL: none). */
__attribute__((target(FK_BF16_TARGET))) static void
fk_att16_task(const fk_att16_args *g, float *scratch, int64_t h, int64_t l0, const uint16_t *kh,
              const uint16_t *vh, const char *nq, int64_t nbq) {
    enum { BQ = FK_ATT16_BQ, BK = FK_ATT16_BK, NG = FK_ATT16_BQ / 16 };
    const int64_t HD = g->H * g->D, D = g->D, Lk = g->Lk, Lkp = g->Lkp;
    const int64_t bq = fk_bf16_min(BQ, g->Lq - l0), bqp = fk_bf16_round32(bq);
    float *Stb[2] = {scratch, scratch + BK * BQ}; /* (BK, BQ) each: this block, the next */
    float *Ot = scratch + 2 * BK * BQ;           /* (D, BQ) */
    float *mrow = Ot + FK_ATT16_DMAX * BQ;       /* (BQ) */
    double *lrow = (double *)(mrow + BQ);        /* (BQ) */
    float *rows = (float *)(lrow + BQ);          /* (16, 32) */
    uint16_t *Qb = (uint16_t *)(rows + 16 * 32); /* (BQ / 16, D / 32, 512) */
    uint16_t *Pb = Qb + BQ * FK_ATT16_DMAX;      /* (BQ / 16, BK / 32, 512) */
    const int64_t nblk = (Lk + BK - 1) / BK, pf_rows = nq ? (nbq + nblk - 1) / nblk : 0;

    /* Qᵀ as VNNI B tiles: strip of 16 queries, tile over d pairs (zero past bq) */
    fk_bf16_bpack pk;
    const int64_t qs = (int64_t)fk_dtype_size(g->qdt);
    fk_bf16_bpack_init(&pk, Qb, (const char *)g->q + (l0 * HD + h * D) * qs, g->qdt, HD, bq, D,
                       D);
    fk_bf16_bpack_run(&pk, pk.units, rows);
    memset(Ot, 0, (size_t)(D * BQ) * 4);
    for (int64_t i = 0; i < BQ; i++) mrow[i] = -INFINITY, lrow[i] = 0.0;
    /* the softmax runs in base 2: p = 2^(s·scale·log2(e) − m), m (mrow) the
     * shift (within FK_ATT16_SLACK of the running max of s·scale·log2(e), see
     * below); with a bias, St becomes s·scale + biasᵀ first and is then
     * multiplied by log2(e) alone */
    const float log2e = 1.44269504088896341f;
    const __m512 scale = _mm512_set1_ps(g->bias ? log2e : g->scale * log2e);
    const __m512 bscale = _mm512_set1_ps(g->scale);
    /* Sᵀ of the first block up front; each later block's during the softmax
     * of the one before it */
    fk_att16_qk qk;
    fk_att16_qk_init(&qk, kh, Qb, Stb[0], 0, fk_bf16_min(BK, Lk), bqp, D);
    fk_att16_qk_run(&qk, qk.calls);
    int cur = 0;
    for (int64_t j0 = 0; j0 < Lk; j0 += BK, cur ^= 1) {
        const int64_t bk = fk_bf16_min(BK, Lk - j0), bkp = fk_bf16_round32(bk);
        float *St = Stb[cur];
        for (int64_t i = (j0 / BK) * pf_rows; i < fk_bf16_min(nbq, (j0 / BK + 1) * pf_rows); i++)
            for (int64_t c = 0; c < D * qs; c += 64)
                _mm_prefetch(nq + i * HD * qs + c, _MM_HINT_T1);
        fk_att16_qk_init(&qk, kh, Qb, Stb[cur ^ 1], j0 + BK,
                         j0 + BK < Lk ? fk_bf16_min(BK, Lk - j0 - BK) : 0, bqp, D);
        const int64_t ngroups = bqp / 16, slots = 2 * ngroups; /* two per group */
        /* online softmax on 16 queries at a time; Pᵀ as VNNI B tiles */
        for (int64_t g16 = 0; g16 < ngroups; g16++) {
            if (g->bias) { /* St ← St·scale + biasᵀ, 16 keys × 16 queries at a time */
                const float *bh = g->bias + (h * g->Lq + l0 + 16 * g16) * Lk + j0; /* (16, bk) */
                for (int64_t jb = 0; jb < bk; jb += 16) {
                    int64_t w = fk_bf16_min(16, bk - jb);
                    __mmask16 km = (__mmask16)((1u << w) - 1u);
                    __m512i r[16];
                    for (int i = 0; i < 16; i++)
                        r[i] = 16 * g16 + i < bq
                                   ? _mm512_castps_si512(_mm512_maskz_loadu_ps(km, bh + i * Lk + jb))
                                   : _mm512_setzero_si512();
                    fk_x86_tr16_epi32(r); /* r[jj] = key jb + jj over the 16 queries */
                    for (int64_t jj = 0; jj < w; jj++) {
                        float *sp = St + (jb + jj) * BQ + 16 * g16;
                        _mm512_storeu_ps(sp, _mm512_fmadd_ps(_mm512_loadu_ps(sp), bscale,
                                                             _mm512_castsi512_ps(r[jj])));
                    }
                }
            }
            /* mrow holds the shift of each query's weights, m: p = 2^(s·c − m).
             * A query's first block (m = −inf) takes the exact path: the block's
             * max first, m = that max. Later blocks keep m while the scores stay
             * below m + FK_ATT16_SLACK (weights up to 2^SLACK, exact in f32 and
             * as precise in bf16): one pass that also finds the block's max, and
             * no rescaling of Oᵀ and l; a block that exceeds it (rare once a
             * query has seen a few blocks) is redone with m = the new max. */
            const float *scol = St + 16 * g16;
            uint16_t *pb = Pb + g16 * 16 * BK; /* (bkp / 32, 16, 16, 2) */
            fk_att16_slot slot = {&qk, 2 * g16, slots};
            __m512 mold = _mm512_loadu_ps(mrow + 16 * g16);
            __m512 mnew = mold, alpha = _mm512_set1_ps(1.0f), sum;
            if (_mm512_cmp_ps_mask(mold, _mm512_set1_ps(-INFINITY), _CMP_EQ_OQ)) {
                __m512 mx = _mm512_set1_ps(-INFINITY); /* max of s; scale > 0: max(s)·scale */
                for (int64_t j = 0; j < bk; j++) mx = _mm512_max_ps(mx, _mm512_loadu_ps(scol + j * BQ));
                mnew = _mm512_max_ps(mold, _mm512_mul_ps(mx, scale));
                /* a query whose scores are all -inf so far (keys masked by a -inf
                 * bias) is shifted by 0 instead of -inf (−inf − −inf would be NaN)
                 * and its weights are set to 0 (exp2 clamps −inf to 2^-125): its
                 * output stays 0 (l = 0), as the reference's */
                const __mmask16 dead =
                    _mm512_cmp_ps_mask(mnew, _mm512_set1_ps(-INFINITY), _CMP_EQ_OQ);
                __m512 msafe = _mm512_mask_mov_ps(mnew, dead, _mm512_setzero_ps());
                alpha = fk_bf16_exp2_16(_mm512_sub_ps(mold, msafe)); /* ~0 where m was −inf */
                sum = fk_att16_weights(scol, pb, bk, bkp, scale, msafe, dead, NULL, &slot);
            } else {
                __m512 mx = _mm512_set1_ps(-INFINITY);
                sum = fk_att16_weights(scol, pb, bk, bkp, scale, mold, 0, &mx, &slot);
                __m512 mneed = _mm512_mul_ps(mx, scale);
                if (_mm512_cmp_ps_mask(mneed, _mm512_add_ps(mold, _mm512_set1_ps(FK_ATT16_SLACK)),
                                       _CMP_GT_OQ)) {
                    mnew = _mm512_max_ps(mold, mneed);
                    alpha = fk_bf16_exp2_16(_mm512_sub_ps(mold, mnew));
                    sum = fk_att16_weights(scol, pb, bk, bkp, scale, mnew, 0, NULL, NULL);
                }
            }
            _mm512_storeu_ps(mrow + 16 * g16, mnew);
            float a16[16], s16[16];
            _mm512_storeu_ps(a16, alpha);
            _mm512_storeu_ps(s16, sum);
            for (int i = 0; i < 16; i++)
                lrow[16 * g16 + i] = lrow[16 * g16 + i] * (double)a16[i] + (double)s16[i];
            if (_mm512_cmp_ps_mask(alpha, _mm512_set1_ps(1.0f), _CMP_NEQ_UQ)) /* rescale Oᵀ */
                for (int64_t d = 0; d < D; d++)
                    _mm512_storeu_ps(Ot + d * BQ + 16 * g16,
                                     _mm512_mul_ps(_mm512_loadu_ps(Ot + d * BQ + 16 * g16), alpha));
        }
        fk_att16_qk_run(&qk, qk.calls); /* any left (none when bqp / 16 groups ran) */
        /* Oᵀ += Vᵀ · Pᵀ */
        for (int64_t dr = 0; dr < D; dr += 32)
            for (int64_t ir = 0; ir < bqp; ir += 32)
                fk_bf16_micro_amx(bkp / 32, vh + (dr / 16) * 16 * Lkp + (j0 / 32) * 512, 16 * Lkp,
                                  Pb + (ir / 16) * 16 * BK, 16 * BK, Ot + dr * BQ + ir, BQ, true,
                                  NULL, 0);
    }
    /* out = (Oᵀ)ᵀ / l, 16 × 16 blocks */
    for (int64_t g16 = 0; g16 < bqp / 16; g16++) {
        float inv[16];
        for (int i = 0; i < 16; i++) {
            double l = lrow[16 * g16 + i];
            inv[i] = l > 0.0 ? (float)(1.0 / l) : 0.0f;
        }
        for (int64_t d0 = 0; d0 < D; d0 += 16) {
            __m512i r[16];
            for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_si512(Ot + (d0 + i) * BQ + 16 * g16);
            fk_x86_tr16_epi32(r); /* r[i] = d0 .. d0+15 of query 16·g16 + i */
            for (int i = 0; i < 16 && 16 * g16 + i < bq; i++) {
                const int64_t row = l0 + 16 * g16 + i;
                const int64_t o = g->otiled ? fk_tensor_tile_offset(row, h * D + d0, g->oMp, HD)
                                            : row * HD + h * D + d0;
                const __m512 v = _mm512_mul_ps(_mm512_castsi512_ps(r[i]), _mm512_set1_ps(inv[i]));
                if (g->obf) /* the rounding of fk_bf16_cvt32 (vcvtneps2bf16: the same) */
                    _mm256_storeu_si256((__m256i *)(void *)((uint16_t *)g->out + o),
                                        (__m256i)_mm512_cvtneps_pbh(v));
                else
                    _mm512_storeu_ps((float *)g->out + o, v);
            }
        }
    }
}

_Static_assert(2 * FK_ATT16_BK * FK_ATT16_BQ + FK_ATT16_DMAX * FK_ATT16_BQ + 3 * FK_ATT16_BQ + 16 * 32 +
                       (FK_ATT16_BQ * FK_ATT16_DMAX + FK_ATT16_BQ * FK_ATT16_BK) / 2 <=
                   FK_CPU_SCRATCH_FLOATS,
               "bf16 attention scratch exceeds the per-thread scratch");

/* The f32 reference on bf16 operands (a last resort that allocates, where
 * the AMX kernel does not apply): a bf16 q, k or v widened (exactly), a bf16
 * out the f32 out rounded as the products round x. */
static void fk_cpu_attention_widened(fk_backend *be, fk_tensor *out, const fk_tensor *q,
                                     const fk_tensor *k, const fk_tensor *v,
                                     const fk_tensor *bias, float scale, bool causal) {
    const fk_tensor *const src[4] = {out, q, k, v};
    fk_tensor t[4];
    float *buf[4] = {NULL, NULL, NULL, NULL};
    for (int i = 0; i < 4; i++) {
        t[i] = *src[i];
        if (src[i]->dtype != FK_BF16) continue;
        const int64_t n = fk_tensor_numel(src[i]);
        buf[i] = fk_alloc((size_t)(n > 0 ? n : 1) * sizeof(float));
        FK_ASSERT(buf[i] && "out of memory for an attention on bf16 operands");
        if (i > 0) fk_convert_to_f32(buf[i], src[i]->data, FK_BF16, (size_t)n);
        t[i].dtype = FK_F32;
        t[i].layout = FK_LAYOUT_ROWS; /* the f32 copy is row-major */
        t[i].data = buf[i];
    }
    fk_cpu_attention(be, &t[0], &t[1], &t[2], &t[3], bias, scale, causal);
    if (buf[0] && out->layout == FK_LAYOUT_TILES)
        fk_cpu_tile_from_f32(out, buf[0]);
    else if (buf[0])
        fk_cpu_bf16_round_row(out->data, buf[0], fk_tensor_numel(out));
    for (int i = 0; i < 4; i++) fk_free(buf[i]);
}

void fk_cpu_attention_bf16(fk_backend *be, fk_tensor *out, const fk_tensor *q, const fk_tensor *k,
                           const fk_tensor *v, const fk_tensor *bias, float scale, bool causal) {
    fk_cpu_impl *impl = fk_cpu_impl_of(be);
    const int64_t Lq = q->ndim == 3 ? q->shape[0] : 0, H = q->ndim == 3 ? q->shape[1] : 0;
    const int64_t D = q->ndim == 3 ? q->shape[2] : 0, Lk = k->ndim == 3 ? k->shape[0] : 0;
    const int64_t Lkp = (Lk + FK_ATT16_BK - 1) / FK_ATT16_BK * FK_ATT16_BK;
    /* per thread: one head's packed K and V, bf16 */
    uint64_t need = (uint64_t)impl->n_threads * (uint64_t)Lkp * (uint64_t)D * 4u;
    const bool obf = out->dtype == FK_BF16;
    const fk_tensor *const io[4] = {out, q, k, v};
    bool ibf = false; /* a bf16 q, k or v */
    for (int i = 0; i < 4; i++) { /* f32, or bf16 where supports() promised it */
        FK_ASSERT(io[i]->dtype == FK_F32 || io[i]->dtype == FK_BF16);
        if (io[i]->dtype == FK_BF16) FK_ASSERT(fk_cpu_bf16_attention_io_ok(be, io[i]));
        ibf = ibf || (i > 0 && io[i]->dtype == FK_BF16);
    }
    bool ok = impl->bf16_kernel == FK_CPU_BF16_AMX && impl->bf16_attention && !causal &&
              (!bias || (bias->dtype == FK_F32 && fk_tensor_numel(bias) == H * Lq * Lk)) &&
              scale > 0.0f && scale < INFINITY && q->ndim == 3 && k->ndim == 3 &&
              fk_tensor_same_shape(k, v) && k->shape[1] == H && k->shape[2] == D && D % 32 == 0 &&
              D <= FK_ATT16_DMAX && Lq > 0 && Lk > 0 && H > 0 && fk_tensor_rows(out) == Lq &&
              fk_tensor_cols(out) == H * D && out->data != q->data && out->data != k->data &&
              out->data != v->data && (double)Lq * (double)Lk * (double)(H * D) >= 65536.0 &&
              fk_cpu_bf16_ws_reserve(impl, need);
    if (!ok && (obf || ibf)) {
        fk_cpu_attention_widened(be, out, q, k, v, bias, scale, causal);
        return;
    }
    if (!ok) { /* the f32 reference (which also asserts the preconditions) */
        fk_cpu_attention(be, out, q, k, v, bias, scale, causal);
        return;
    }
    fk_cpu_not_nested();
    fk_att16_args g = {Lq,       Lk,       Lkp,      H, D, q->data, q->dtype, k->dtype, v->dtype,
                       out->data, scale, bias ? (const float *)bias->data : NULL, obf,
                       out->layout == FK_LAYOUT_TILES, fk_bf16_round32(Lq)};
    const void *kd = k->data, *vd = v->data;
    const int64_t qs = (int64_t)fk_dtype_size(q->dtype);
    int nt = impl->n_threads;
    /* Tasks head-major, a contiguous range per thread, with stealing
     * (fk_cpu_ranges_next): each thread packs the K and V of a head into its
     * own buffers just before its first task on that head, so the tasks read
     * them from L2 (a head at 512²: 0.8 MB); a head split between two threads
     * is packed by both. The next task is claimed before the current one
     * runs, so that its queries can be prefetched. */
    const int64_t nqb = (Lq + FK_ATT16_BQ - 1) / FK_ATT16_BQ, ntasks = H * nqb;
    fk_cpu_ranges_init(impl, nt, ntasks);
    FK_CPU_PARALLEL_FOR(nt)
    for (int64_t th = 0; th < nt; th++) {
        const int tid = fk_cpu_thread_id();
        uint16_t *kb = (uint16_t *)impl->bf16_ws + (int64_t)tid * 2 * Lkp * D, *vb = kb + Lkp * D;
        float *scratch = fk_cpu_scratch(be, tid);
        int64_t hcur = -1, t = fk_cpu_ranges_next(impl, nt, tid);
        if (t >= 0) fk_bf16_amx_begin();
        for (int64_t tn; t >= 0; t = tn) {
            const int64_t h = t / nqb, l0 = (t % nqb) * FK_ATT16_BQ;
            if (h != hcur) fk_att16_pack_kv(&g, kd, vd, kb, vb, h), hcur = h;
            tn = fk_cpu_ranges_next(impl, nt, tid);
            const char *nq = NULL;
            int64_t nbq = 0;
            if (tn >= 0) {
                const int64_t hn = tn / nqb, ln = (tn % nqb) * FK_ATT16_BQ;
                nq = (const char *)g.q + (ln * H * D + hn * D) * qs;
                nbq = fk_bf16_min(FK_ATT16_BQ, Lq - ln);
            }
            fk_att16_task(&g, scratch, h, l0, kb, vb, nq, nbq);
        }
        if (hcur >= 0) fk_bf16_amx_end();
    }
}

#else /* not x86-64: no bf16 kernels, the linear stays on the f32 path */

bool fk_cpu_bf16_kernel_available(fk_cpu_bf16_kernel k) { return k == FK_CPU_BF16_NONE; }

void fk_cpu_bf16_round_row(uint16_t *dst, const float *src, int64_t n) {
    fk_convert_from_f32(dst, FK_BF16, src, (size_t)n); /* unreached: no bf16 kernel here */
}

bool fk_cpu_gemm_bf16(fk_backend *be, int64_t M, int64_t N, int64_t K, const float *a, int64_t lda,
                      const void *b, fk_dtype bdt, int64_t ldb, const void *bias, fk_dtype bias_dt,
                      float *c, int64_t ldc) {
    return fk_cpu_gemm_bf16_act(be, M, N, K, a, lda, b, bdt, ldb, bias, bias_dt, c, ldc,
                                FK_ACT_NONE);
}

bool fk_cpu_gemm_bf16_act(fk_backend *be, int64_t M, int64_t N, int64_t K, const float *a,
                          int64_t lda, const void *b, fk_dtype bdt, int64_t ldb, const void *bias,
                          fk_dtype bias_dt, float *c, int64_t ldc, fk_act act) {
    (void)be, (void)M, (void)N, (void)K, (void)a, (void)lda, (void)b, (void)bdt, (void)ldb;
    (void)bias, (void)bias_dt, (void)c, (void)ldc, (void)act;
    return false;
}

bool fk_cpu_gemm_bf16_cat(fk_backend *be, int64_t M, int64_t N, int64_t K, const void *a,
                          fk_dtype adt, int64_t lda, const void *a2, fk_dtype a2dt, int64_t lda2,
                          int64_t k1, const void *b, fk_dtype bdt, int64_t ldb, const void *bias,
                          fk_dtype bias_dt, void *c, fk_dtype cdt, int64_t ldc, fk_act act) {
    (void)be, (void)M, (void)N, (void)K, (void)a, (void)adt, (void)lda, (void)a2, (void)a2dt;
    (void)lda2, (void)k1, (void)b, (void)bdt, (void)ldb, (void)bias, (void)bias_dt, (void)c;
    (void)cdt, (void)ldc, (void)act;
    return false;
}

bool fk_cpu_gemm_bf16_multi(fk_backend *be, int n, int64_t M, int64_t K, const void *a,
                            fk_dtype adt, int64_t lda, const int64_t *N, const void *const *b,
                            const fk_dtype *bdt, const void *const *bias,
                            const fk_dtype *bias_dt, void *const *c, const fk_dtype *cdt,
                            const fk_act *act) {
    (void)be, (void)n, (void)M, (void)K, (void)a, (void)adt, (void)lda, (void)N, (void)b;
    (void)bdt, (void)bias, (void)bias_dt, (void)c, (void)cdt, (void)act;
    return false;
}

bool fk_cpu_gemm_bf16_rope(fk_backend *be, int64_t M, int64_t N, int64_t K, const void *a,
                           fk_dtype adt, const void *b, fk_dtype bdt, const void *bias,
                           fk_dtype bias_dt, void *c, fk_dtype cdt,
                           const fk_cpu_rope_post *post) {
    (void)be, (void)M, (void)N, (void)K, (void)a, (void)adt, (void)b, (void)bdt, (void)bias;
    (void)bias_dt, (void)c, (void)cdt, (void)post;
    return false;
}

void fk_cpu_attention_bf16(fk_backend *be, fk_tensor *out, const fk_tensor *q, const fk_tensor *k,
                           const fk_tensor *v, const fk_tensor *bias, float scale, bool causal) {
    fk_cpu_attention(be, out, q, k, v, bias, scale, causal);
}

size_t fk_cpu_cache_weight(fk_backend *be, const fk_tensor *w) {
    (void)be, (void)w;
    return 0;
}

#endif

/* ---- precision mode ---- */

/* AMX, else the f32 path. Not AVX512-BF16: on Sapphire Rapids vdpbf16ps
 * (zmm) issues once per cycle against two FMAs, so it multiplies no faster
 * than the f32 kernel (measured 102 vs 120 GFLOP/s per core) while it
 * rounds the operands; machines where it is faster (AMD Zen 4?) can force it
 * with fk_backend_cpu_set_bf16_kernel once measured. */
fk_cpu_bf16_kernel fk_cpu_bf16_kernel_detect(void) {
    if (fk_cpu_bf16_kernel_available(FK_CPU_BF16_AMX)) return FK_CPU_BF16_AMX;
    return FK_CPU_BF16_NONE;
}

/* The attention entry of the op table follows the mode: the AMX attention
 * when the kernel is AMX and bf16 attention is on. */
static void fk_bf16_update_table(fk_backend *be) {
    fk_cpu_impl *impl = fk_cpu_impl_of(be);
    bool amx_att = impl->precision == FK_PREC_BF16 && impl->bf16_kernel == FK_CPU_BF16_AMX &&
                   impl->bf16_attention;
    be->attention = amx_att ? fk_cpu_attention_bf16 : fk_cpu_attention;
}

fk_cpu_bf16_kernel fk_backend_cpu_set_precision(fk_backend *be, fk_precision prec) {
    fk_cpu_impl *impl = fk_cpu_impl_of(be);
    impl->precision = prec;
    impl->bf16_kernel = prec == FK_PREC_BF16 ? fk_cpu_bf16_kernel_detect() : FK_CPU_BF16_NONE;
    impl->bf16_attention = prec == FK_PREC_BF16;
    fk_bf16_update_table(be);
    return impl->bf16_kernel;
}

bool fk_backend_cpu_set_bf16_kernel(fk_backend *be, fk_cpu_bf16_kernel k) {
    if (!fk_cpu_bf16_kernel_available(k)) return false;
    fk_cpu_impl *impl = fk_cpu_impl_of(be);
    impl->precision = FK_PREC_BF16;
    impl->bf16_kernel = k;
    impl->bf16_attention = true;
    fk_bf16_update_table(be);
    return true;
}

bool fk_cpu_bf16_io_ok(const fk_backend *be, int64_t rows) {
    const fk_cpu_impl *impl = fk_cpu_impl_of(be);
    return impl->precision == FK_PREC_BF16 && impl->bf16_kernel != FK_CPU_BF16_NONE &&
           !impl->bf16_io_off && rows >= FK_CPU_BF16_MIN_M;
}

bool fk_cpu_bf16_attention_io_ok(const fk_backend *be, const fk_tensor *t) {
    const fk_cpu_impl *impl = fk_cpu_impl_of(be);
    return fk_cpu_bf16_io_ok(be, fk_tensor_rows(t)) && impl->bf16_kernel == FK_CPU_BF16_AMX &&
           impl->bf16_attention;
}

void fk_backend_cpu_set_bf16_io(fk_backend *be, bool on) { fk_cpu_impl_of(be)->bf16_io_off = !on; }

void fk_backend_cpu_set_bf16_ws_max(fk_backend *be, uint64_t bytes) {
    fk_cpu_impl_of(be)->bf16_ws_max = bytes;
}

void fk_backend_cpu_set_bf16_attention(fk_backend *be, bool on) {
    fk_cpu_impl_of(be)->bf16_attention = on;
    fk_bf16_update_table(be);
}

size_t fk_backend_cpu_workspace_bytes(const fk_backend *be) {
    return fk_cpu_impl_of(be)->bf16_ws_bytes;
}

void fk_cpu_bf16_release(fk_cpu_impl *impl) {
    if (impl->bf16_ws) fk_bf16_ws_free(impl->bf16_ws, impl->bf16_ws_bytes);
    impl->bf16_ws = NULL;
    impl->bf16_ws_bytes = 0;
}
