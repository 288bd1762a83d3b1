/* cpu_gemv: the small-M path of fk_cpu_gemm (matrix-vector and a few rows),
 * e.g. FLUX's modulation linears Linear(SiLU(vec)) with M = 1.
 *
 * The blocked GEMM converts and repacks every weight panel (in registers,
 * 0.3–0.6 ns per weight from DRAM) whatever M is: fine when the panel is
 * reused by hundreds of rows, wasteful for M = 1, where the product itself
 * is one read of the weight. Here the weight (N, K) is read in place,
 * row-major, and each SIMD lane runs the chain of one output column:
 *
 *   a panel of NR = 16 (AVX-512) or 8 (AVX2) weight rows n0..n0+NR-1 is read
 *   in chunks of 64 bytes per row; each chunk is transposed in registers and
 *   converted to f32 so that vector k holds w[n0..n0+NR-1, k]; then
 *   acc[m] = fma(x[m, k], w[:, k], acc[m]) for k in increasing order.
 *
 * So every output is exactly the reference chain (cpu.h): fma over k = 0..K-1
 * in increasing order starting from +0, then + bias in f32 — the same bits as
 * the GEMM path on any ISA and any thread count (threads split the output
 * into independent (panel, row group) tasks).
 *
 * Conversions (exact, the bits of fk_convert_to_f32):
 *   bf16: the 16-bit pairs are transposed as 32-bit units, then the low half
 *         is shifted up 16 bits and the high half masked (no shuffle per k);
 *   f16:  vcvtph2ps (what fk_convert_to_f32 uses with F16C; NaN payloads
 *         keep the quiet bit set, as in dtype.c);
 *   e5m2: the byte is the high byte of an f16: (b << 8), vcvtph2ps;
 *   e4m3: f16 bits sign | (b & 0x7f) << 7 are the value · 2^-8 (subnormals
 *         included), vcvtph2ps, · 256 (exact); code 0x7f (|value| would be
 *         480 > 448) becomes sign | 0x7fc00000, the NaN of fk_e4m3_to_f32.
 *
 * Tails: K is padded to a multiple of 64 elements. The packed activations
 * are padded with -0 and the weight tail copied into a zeroed buffer (+0):
 * fma(-0, +0, acc) = acc + (-0) = acc exactly for every acc, ±0 and NaN
 * included, so padded steps never change a chain. Panels past N read the
 * last valid row (never out of bounds) and store only valid columns.
 *
 * The activations of the M rows are packed once into thread 0's scratch,
 * group by group: xp[k·mg + m] for a group of mg rows (k-major, so every
 * broadcast is one base pointer plus a constant). Groups of at most 8 rows
 * (AVX-512) / 4 (AVX2) keep the accumulators in registers; larger M runs
 * several groups over a panel, which then comes from L2.
 */
#include "backend/cpu/cpu_gemm.h"

#include <string.h>

/* Elements per row of the padded K (every chunk size divides it). */
#define FK_GEMV_KPAD 64
/* Bytes of one weight row per chunk. */
#define FK_GEMV_CHUNK 64
/* Prefetch distance (bytes ahead in each of the panel's rows, into L1):
 * measured on 2 cores, M = 1, (18432, 3072) bf16 from DRAM: 256-512 bytes
 * best (14-15 GB/s per core), 1024: 12, 2048 or to L2 only: 10-12, none: 13.6. */
#define FK_GEMV_PREFETCH 512

/* One panel: out (mg, nr) = the reference chains of rows xp (group, packed)
 * against the nr weight rows rows[0..nr-1] over K. */
typedef void (*fk_gemv_panel_fn)(int64_t K, const char *const *rows, const float *xp, float *out);

/* Index of a weight dtype in the kernel tables, -1 when unsupported. */
static int fk_gemv_dtype_index(fk_dtype t) {
    switch (t) {
    case FK_F32: return 0;
    case FK_BF16: return 1;
    case FK_F16: return 2;
    case FK_F8_E4M3: return 3;
    case FK_F8_E5M2: return 4;
    default: return -1;
    }
}
#define FK_GEMV_NDT 5

/* Elements of K per chunk: 64 bytes per row. */
static inline int64_t fk_gemv_chunk_elems(fk_dtype dt) {
    return (int64_t)(FK_GEMV_CHUNK / fk_dtype_size(dt));
}

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

/* F16C (cpuid leaf 1, ECX bit 29) and AVX2 usable: the f16 / fp8 conversions
 * need it and the ISA check of fk_cpu_isa_available does not ask (every AVX2
 * CPU has it). Cached: in a VM cpuid traps to the hypervisor. */
static bool fk_gemv_have_f16c_avx2(void) {
    static int cached = -1; /* every thread computes the same value */
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        unsigned a, b, c, d;
        __builtin_cpu_init();
        v = __get_cpuid(1, &a, &b, &c, &d) && ((c >> 29) & 1u) && __builtin_cpu_supports("avx2");
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v != 0;
}

/* ======================= AVX-512: panels of 16 columns ======================= */

#define FK_T512 "avx512f,avx2,fma,f16c"
#define FK_GEMV512_NR 16
#define FK_GEMV512_MG 8

/* In place: t[p] lane j = t_in[j] lane p (16×16 32-bit transpose, 64 shuffles). */
static inline __attribute__((always_inline, target(FK_T512))) void fk_tr16x16(__m512i *t) {
    __m512i a[16], b[16];
    for (int i = 0; i < 8; i++) {
        a[2 * i] = _mm512_unpacklo_epi32(t[2 * i], t[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_epi32(t[2 * i], t[2 * i + 1]);
    }
    /* b[4i + q], 128-bit lane L = rows 4i..4i+3 at column 4L + q */
    for (int i = 0; i < 4; i++) {
        b[4 * i + 0] = _mm512_unpacklo_epi64(a[4 * i], a[4 * i + 2]);
        b[4 * i + 1] = _mm512_unpackhi_epi64(a[4 * i], a[4 * i + 2]);
        b[4 * i + 2] = _mm512_unpacklo_epi64(a[4 * i + 1], a[4 * i + 3]);
        b[4 * i + 3] = _mm512_unpackhi_epi64(a[4 * i + 1], a[4 * i + 3]);
    }
    /* column 4L + q = lane L of b[q], b[4 + q], b[8 + q], b[12 + q] */
    for (int q = 0; q < 4; q++) {
        __m512i s0 = _mm512_shuffle_i32x4(b[q], b[4 + q], 0x88);
        __m512i s1 = _mm512_shuffle_i32x4(b[q], b[4 + q], 0xdd);
        __m512i s2 = _mm512_shuffle_i32x4(b[8 + q], b[12 + q], 0x88);
        __m512i s3 = _mm512_shuffle_i32x4(b[8 + q], b[12 + q], 0xdd);
        t[q] = _mm512_shuffle_i32x4(s0, s2, 0x88);
        t[4 + q] = _mm512_shuffle_i32x4(s1, s3, 0x88);
        t[8 + q] = _mm512_shuffle_i32x4(s0, s2, 0xdd);
        t[12 + q] = _mm512_shuffle_i32x4(s1, s3, 0xdd);
    }
}

/* 16 fp8 codes → f32 (bits of fk_e4m3_to_f32 / fk_e5m2_to_f32). */
static inline __attribute__((always_inline, target(FK_T512))) __m512i fk_e5m2x16(__m128i b) {
    __m256i h = _mm256_slli_epi16(_mm256_cvtepu8_epi16(b), 8);
    return _mm512_castps_si512(_mm512_cvtph_ps(h));
}

static inline __attribute__((always_inline, target(FK_T512))) __m512i fk_e4m3x16(__m128i b) {
    __m256i h = _mm256_cvtepu8_epi16(b);
    __m256i mag = _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi16(0x7f)), 7);
    __m256i sgn = _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi16(0x80)), 8);
    __m512 f = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_or_si256(mag, sgn)), _mm512_set1_ps(256.0f));
    __m512i fb = _mm512_castps_si512(f);
    __mmask16 nan = _mm512_cmpeq_epi32_mask(_mm512_and_epi32(fb, _mm512_set1_epi32(0x7fffffff)),
                                            _mm512_set1_epi32(0x43f00000)); /* 480.0f */
    return _mm512_mask_or_epi32(fb, nan, _mm512_and_epi32(fb, _mm512_set1_epi32((int)0x80000000u)),
                                _mm512_set1_epi32(0x7fc00000));
}

/* acc[m] += x[k, m] · w over one vector of 16 columns (mg FMAs). */
#define FK_GEMV512_FMA(w, xk)                                                                    \
    do {                                                                                         \
        _Pragma("GCC unroll 8") for (int m = 0; m < mg; m++) acc[m] =                            \
            _mm512_fmadd_ps(_mm512_set1_ps((xk)[m]), (w), acc[m]);                               \
    } while (0)

/* One chunk (64 bytes of each of the 16 rows at byte offset boff) of dtype dt.
 * x: packed activations of this chunk, x[k·mg + m]. */
static inline __attribute__((always_inline, target(FK_T512))) void
fk_gemv512_chunk(fk_dtype dt, int mg, const char *const *rows, size_t boff, const float *x,
                 __m512 *acc) {
    __m512i t[16];
    if (dt == FK_F32) { /* 16 k */
        for (int j = 0; j < 16; j++) t[j] = _mm512_loadu_si512(rows[j] + boff);
        fk_tr16x16(t);
        _Pragma("GCC unroll 16") for (int p = 0; p < 16; p++)
            FK_GEMV512_FMA(_mm512_castsi512_ps(t[p]), x + p * mg);
    } else if (dt == FK_BF16) { /* 32 k: pairs transposed as 32-bit units */
        for (int j = 0; j < 16; j++) t[j] = _mm512_loadu_si512(rows[j] + boff);
        fk_tr16x16(t);
        const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
        _Pragma("GCC unroll 16") for (int p = 0; p < 16; p++) {
            FK_GEMV512_FMA(_mm512_castsi512_ps(_mm512_slli_epi32(t[p], 16)), x + (2 * p) * mg);
            FK_GEMV512_FMA(_mm512_castsi512_ps(_mm512_and_si512(t[p], hi)), x + (2 * p + 1) * mg);
        }
    } else if (dt == FK_F16) { /* 2 × 16 k */
        _Pragma("GCC unroll 1") for (int h = 0; h < 2; h++) {
            for (int j = 0; j < 16; j++)
                t[j] = _mm512_castps_si512(_mm512_cvtph_ps(
                    _mm256_loadu_si256((const __m256i *)(rows[j] + boff + 32 * h))));
            fk_tr16x16(t);
            _Pragma("GCC unroll 16") for (int p = 0; p < 16; p++)
                FK_GEMV512_FMA(_mm512_castsi512_ps(t[p]), x + (16 * h + p) * mg);
        }
    } else { /* fp8: 4 × 16 k */
        _Pragma("GCC unroll 1") for (int h = 0; h < 4; h++) {
            for (int j = 0; j < 16; j++) {
                __m128i b = _mm_loadu_si128((const __m128i *)(rows[j] + boff + 16 * h));
                t[j] = dt == FK_F8_E4M3 ? fk_e4m3x16(b) : fk_e5m2x16(b);
            }
            fk_tr16x16(t);
            _Pragma("GCC unroll 16") for (int p = 0; p < 16; p++)
                FK_GEMV512_FMA(_mm512_castsi512_ps(t[p]), x + (16 * h + p) * mg);
        }
    }
}

static inline __attribute__((always_inline, target(FK_T512))) void
fk_gemv512_panel(fk_dtype dt, int mg, int64_t K, const char *const *rows, const float *xp,
                 float *out) {
    __m512 acc[FK_GEMV512_MG];
    for (int m = 0; m < mg; m++) acc[m] = _mm512_setzero_ps();
    const int64_t kb = fk_gemv_chunk_elems(dt);
    const int64_t nfull = K / kb, nchunks = (K + kb - 1) / kb;
    _Alignas(64) char buf[16][FK_GEMV_CHUNK]; /* zero-padded last partial chunk (see the top) */
    const char *brows[16];
    for (int64_t c = 0; c < nchunks; c++) {
        const char *const *r = rows;
        size_t boff = (size_t)c * FK_GEMV_CHUNK;
        if (c == nfull) { /* one chunk body in the code: the tail goes through it too */
            size_t nb = (size_t)(K - nfull * kb) * fk_dtype_size(dt);
            for (int j = 0; j < 16; j++) {
                memcpy(buf[j], rows[j] + boff, nb);
                memset(buf[j] + nb, 0, FK_GEMV_CHUNK - nb);
                brows[j] = buf[j];
            }
            r = brows;
            boff = 0;
        }
        for (int j = 0; j < 16; j++) _mm_prefetch(r[j] + boff + FK_GEMV_PREFETCH, _MM_HINT_T0);
        fk_gemv512_chunk(dt, mg, r, boff, xp + c * kb * mg, acc);
    }
    for (int m = 0; m < mg; m++) _mm512_storeu_ps(out + m * FK_GEMV512_NR, acc[m]);
}

#define FK_GEMV512_DEF(DT, NAME, MG)                                                             \
    __attribute__((target(FK_T512), noinline)) static void fk_gemv512_##NAME##_##MG(            \
        int64_t K, const char *const *rows, const float *xp, float *out) {                       \
        fk_gemv512_panel(DT, MG, K, rows, xp, out);                                              \
    }
#define FK_GEMV512_DEFS(DT, NAME)                                                                \
    FK_GEMV512_DEF(DT, NAME, 1)                                                                  \
    FK_GEMV512_DEF(DT, NAME, 2)                                                                  \
    FK_GEMV512_DEF(DT, NAME, 3)                                                                  \
    FK_GEMV512_DEF(DT, NAME, 4)                                                                  \
    FK_GEMV512_DEF(DT, NAME, 5)                                                                  \
    FK_GEMV512_DEF(DT, NAME, 6)                                                                  \
    FK_GEMV512_DEF(DT, NAME, 7)                                                                  \
    FK_GEMV512_DEF(DT, NAME, 8)
FK_GEMV512_DEFS(FK_F32, f32)
FK_GEMV512_DEFS(FK_BF16, bf16)
FK_GEMV512_DEFS(FK_F16, f16)
FK_GEMV512_DEFS(FK_F8_E4M3, e4m3)
FK_GEMV512_DEFS(FK_F8_E5M2, e5m2)
#define FK_GEMV512_ROW(NAME)                                                                     \
    {fk_gemv512_##NAME##_1, fk_gemv512_##NAME##_2, fk_gemv512_##NAME##_3, fk_gemv512_##NAME##_4, \
     fk_gemv512_##NAME##_5, fk_gemv512_##NAME##_6, fk_gemv512_##NAME##_7, fk_gemv512_##NAME##_8}
static const fk_gemv_panel_fn fk_gemv512_tab[FK_GEMV_NDT][FK_GEMV512_MG] = {
    FK_GEMV512_ROW(f32), FK_GEMV512_ROW(bf16), FK_GEMV512_ROW(f16), FK_GEMV512_ROW(e4m3),
    FK_GEMV512_ROW(e5m2)};

/* ========================= AVX2: panels of 8 columns ========================= */

#define FK_T2 "avx2,fma,f16c"
#define FK_GEMV2_NR 8
#define FK_GEMV2_MG 4

/* In place: t[p] lane j = t_in[j] lane p (8×8 32-bit transpose, 24 shuffles). */
static inline __attribute__((always_inline, target(FK_T2))) void fk_tr8x8(__m256 *t) {
    __m256 a[8], b[8];
    for (int i = 0; i < 4; i++) {
        a[2 * i] = _mm256_unpacklo_ps(t[2 * i], t[2 * i + 1]);
        a[2 * i + 1] = _mm256_unpackhi_ps(t[2 * i], t[2 * i + 1]);
    }
    /* b[4i + q], 128-bit lane L = rows 4i..4i+3 at column 4L + q */
    for (int i = 0; i < 2; i++) {
        __m256d a0 = _mm256_castps_pd(a[4 * i]), a1 = _mm256_castps_pd(a[4 * i + 1]);
        __m256d a2 = _mm256_castps_pd(a[4 * i + 2]), a3 = _mm256_castps_pd(a[4 * i + 3]);
        b[4 * i + 0] = _mm256_castpd_ps(_mm256_unpacklo_pd(a0, a2));
        b[4 * i + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(a0, a2));
        b[4 * i + 2] = _mm256_castpd_ps(_mm256_unpacklo_pd(a1, a3));
        b[4 * i + 3] = _mm256_castpd_ps(_mm256_unpackhi_pd(a1, a3));
    }
    for (int q = 0; q < 4; q++) {
        t[q] = _mm256_permute2f128_ps(b[q], b[4 + q], 0x20);
        t[4 + q] = _mm256_permute2f128_ps(b[q], b[4 + q], 0x31);
    }
}

static inline __attribute__((always_inline, target(FK_T2))) __m256 fk_e5m2x8(__m128i b) {
    return _mm256_cvtph_ps(_mm_slli_epi16(_mm_cvtepu8_epi16(b), 8));
}

static inline __attribute__((always_inline, target(FK_T2))) __m256 fk_e4m3x8(__m128i b) {
    __m128i h = _mm_cvtepu8_epi16(b);
    __m128i mag = _mm_slli_epi16(_mm_and_si128(h, _mm_set1_epi16(0x7f)), 7);
    __m128i sgn = _mm_slli_epi16(_mm_and_si128(h, _mm_set1_epi16(0x80)), 8);
    __m256 f = _mm256_mul_ps(_mm256_cvtph_ps(_mm_or_si128(mag, sgn)), _mm256_set1_ps(256.0f));
    __m256i fb = _mm256_castps_si256(f);
    __m256i nan = _mm256_cmpeq_epi32(_mm256_and_si256(fb, _mm256_set1_epi32(0x7fffffff)),
                                     _mm256_set1_epi32(0x43f00000)); /* 480.0f */
    __m256i nv = _mm256_or_si256(_mm256_and_si256(fb, _mm256_set1_epi32((int)0x80000000u)),
                                 _mm256_set1_epi32(0x7fc00000));
    return _mm256_castsi256_ps(_mm256_blendv_epi8(fb, nv, nan));
}

#define FK_GEMV2_FMA(w, xk)                                                                      \
    do {                                                                                         \
        _Pragma("GCC unroll 4") for (int m = 0; m < mg; m++) acc[m] =                            \
            _mm256_fmadd_ps(_mm256_broadcast_ss((xk) + m), (w), acc[m]);                         \
    } while (0)

/* One chunk (64 bytes of each of the 8 rows) of dtype dt, in pieces of 8 columns' worth. */
static inline __attribute__((always_inline, target(FK_T2))) void
fk_gemv2_chunk(fk_dtype dt, int mg, const char *const *rows, size_t boff, const float *x,
               __m256 *acc) {
    __m256 t[8];
    if (dt == FK_F32) { /* 2 × 8 k */
        _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
            for (int j = 0; j < 8; j++)
                t[j] = _mm256_loadu_ps((const float *)(rows[j] + boff + 32 * h));
            fk_tr8x8(t);
            _Pragma("GCC unroll 8") for (int p = 0; p < 8; p++)
                FK_GEMV2_FMA(t[p], x + (8 * h + p) * mg);
        }
    } else if (dt == FK_BF16) { /* 2 × 16 k, pairs as 32-bit units */
        const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
        _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
            for (int j = 0; j < 8; j++)
                t[j] = _mm256_loadu_ps((const float *)(rows[j] + boff + 32 * h));
            fk_tr8x8(t);
            _Pragma("GCC unroll 8") for (int p = 0; p < 8; p++) {
                __m256i u = _mm256_castps_si256(t[p]);
                FK_GEMV2_FMA(_mm256_castsi256_ps(_mm256_slli_epi32(u, 16)),
                             x + (16 * h + 2 * p) * mg);
                FK_GEMV2_FMA(_mm256_castsi256_ps(_mm256_and_si256(u, hi)),
                             x + (16 * h + 2 * p + 1) * mg);
            }
        }
    } else if (dt == FK_F16) { /* 4 × 8 k */
        _Pragma("GCC unroll 1") for (int h = 0; h < 4; h++) {
            for (int j = 0; j < 8; j++)
                t[j] = _mm256_cvtph_ps(
                    _mm_loadu_si128((const __m128i *)(rows[j] + boff + 16 * h)));
            fk_tr8x8(t);
            _Pragma("GCC unroll 8") for (int p = 0; p < 8; p++)
                FK_GEMV2_FMA(t[p], x + (8 * h + p) * mg);
        }
    } else { /* fp8: 8 × 8 k */
        _Pragma("GCC unroll 1") for (int h = 0; h < 8; h++) {
            for (int j = 0; j < 8; j++) {
                __m128i b = _mm_loadl_epi64((const __m128i *)(rows[j] + boff + 8 * h));
                t[j] = dt == FK_F8_E4M3 ? fk_e4m3x8(b) : fk_e5m2x8(b);
            }
            fk_tr8x8(t);
            _Pragma("GCC unroll 8") for (int p = 0; p < 8; p++)
                FK_GEMV2_FMA(t[p], x + (8 * h + p) * mg);
        }
    }
}

static inline __attribute__((always_inline, target(FK_T2))) void
fk_gemv2_panel(fk_dtype dt, int mg, int64_t K, const char *const *rows, const float *xp,
               float *out) {
    __m256 acc[FK_GEMV2_MG];
    for (int m = 0; m < mg; m++) acc[m] = _mm256_setzero_ps();
    const int64_t kb = fk_gemv_chunk_elems(dt);
    const int64_t nfull = K / kb, nchunks = (K + kb - 1) / kb;
    _Alignas(32) char buf[8][FK_GEMV_CHUNK]; /* zero-padded last partial chunk */
    const char *brows[8];
    for (int64_t c = 0; c < nchunks; c++) {
        const char *const *r = rows;
        size_t boff = (size_t)c * FK_GEMV_CHUNK;
        if (c == nfull) {
            size_t nb = (size_t)(K - nfull * kb) * fk_dtype_size(dt);
            for (int j = 0; j < 8; j++) {
                memcpy(buf[j], rows[j] + boff, nb);
                memset(buf[j] + nb, 0, FK_GEMV_CHUNK - nb);
                brows[j] = buf[j];
            }
            r = brows;
            boff = 0;
        }
        for (int j = 0; j < 8; j++) _mm_prefetch(r[j] + boff + FK_GEMV_PREFETCH, _MM_HINT_T0);
        fk_gemv2_chunk(dt, mg, r, boff, xp + c * kb * mg, acc);
    }
    for (int m = 0; m < mg; m++) _mm256_storeu_ps(out + m * FK_GEMV2_NR, acc[m]);
}

#define FK_GEMV2_DEF(DT, NAME, MG)                                                               \
    __attribute__((target(FK_T2), noinline)) static void fk_gemv2_##NAME##_##MG(                \
        int64_t K, const char *const *rows, const float *xp, float *out) {                       \
        fk_gemv2_panel(DT, MG, K, rows, xp, out);                                                \
    }
#define FK_GEMV2_DEFS(DT, NAME)                                                                  \
    FK_GEMV2_DEF(DT, NAME, 1)                                                                    \
    FK_GEMV2_DEF(DT, NAME, 2)                                                                    \
    FK_GEMV2_DEF(DT, NAME, 3)                                                                    \
    FK_GEMV2_DEF(DT, NAME, 4)
FK_GEMV2_DEFS(FK_F32, f32)
FK_GEMV2_DEFS(FK_BF16, bf16)
FK_GEMV2_DEFS(FK_F16, f16)
FK_GEMV2_DEFS(FK_F8_E4M3, e4m3)
FK_GEMV2_DEFS(FK_F8_E5M2, e5m2)
#define FK_GEMV2_ROW(NAME)                                                                       \
    {fk_gemv2_##NAME##_1, fk_gemv2_##NAME##_2, fk_gemv2_##NAME##_3, fk_gemv2_##NAME##_4}
static const fk_gemv_panel_fn fk_gemv2_tab[FK_GEMV_NDT][FK_GEMV2_MG] = {
    FK_GEMV2_ROW(f32), FK_GEMV2_ROW(bf16), FK_GEMV2_ROW(f16), FK_GEMV2_ROW(e4m3),
    FK_GEMV2_ROW(e5m2)};

#define FK_GEMV_HAVE_X86 1
#endif /* __x86_64__ */

/* ================================ driver ================================ */

typedef struct fk_gemv_plan {
    const fk_gemv_panel_fn *fns; /* (mgmax) kernels of the weight dtype, by group size - 1 */
    int nr, mgmax;               /* panel width, largest row group */
} fk_gemv_plan;

/* The kernels for isa and dtype; false when there are none. */
static bool fk_gemv_plan_for(fk_cpu_isa isa, fk_dtype bdt, fk_gemv_plan *p) {
    int di = fk_gemv_dtype_index(bdt);
    if (di < 0) return false;
#ifdef FK_GEMV_HAVE_X86
    /* the ISA itself was checked when the backend was created */
    bool f16c = fk_gemv_have_f16c_avx2();
    if (isa == FK_CPU_ISA_AVX512 && f16c) {
        *p = (fk_gemv_plan){fk_gemv512_tab[di], FK_GEMV512_NR, FK_GEMV512_MG};
        return true;
    }
    if (isa == FK_CPU_ISA_AVX2 && f16c) {
        *p = (fk_gemv_plan){fk_gemv2_tab[di], FK_GEMV2_NR, FK_GEMV2_MG};
        return true;
    }
#else
    (void)isa;
#endif
    return false;
}

/* Pack the M rows of a (M, K) into groups of at most mgmax rows:
 * group at rows m0..m0+mg-1 → xp + m0·Kp, element [k·mg + m], -0 past K. */
static void fk_gemv_pack_x(float *xp, const float *a, int64_t lda, int64_t M, int64_t K,
                           int64_t Kp, int mgmax) {
    for (int64_t m0 = 0; m0 < M; m0 += mgmax) {
        int64_t mg = M - m0 < mgmax ? M - m0 : mgmax;
        float *g = xp + m0 * Kp; /* (Kp, mg) */
        for (int64_t m = 0; m < mg; m++) {
            const float *src = a + (m0 + m) * lda;
            for (int64_t k = 0; k < K; k++) g[k * mg + m] = src[k];
            for (int64_t k = K; k < Kp; k++) g[k * mg + m] = -0.0f;
        }
    }
}

/* Tasks [t0, t1) of (panel of nr columns) × (group of <= mgmax rows), panel
 * by panel (task = panel · ngroups + group: a thread's groups of one panel
 * find its weights in L2). */
static void fk_gemv_tasks(const fk_gemv_plan *pl, int64_t t0, int64_t t1, int64_t M, int64_t N,
                          int64_t K, int64_t Kp, const float *xp, const char *b, size_t row_bytes,
                          const void *bias, fk_dtype bias_dt, float *c, int64_t ldc) {
    const int nr = pl->nr;
    const int64_t ng = (M + pl->mgmax - 1) / pl->mgmax;
    const char *rows[16];
    _Alignas(64) float out[16 * 8]; /* (mg, nr) */
    float bb[16];                   /* bias of the panel as f32 */
    size_t besz = bias ? fk_dtype_size(bias_dt) : 0;
    int64_t cur = -1; /* panel whose rows / bias are set up */
    for (int64_t t = t0; t < t1; t++) {
        int64_t p = t / ng, m0 = (t % ng) * pl->mgmax;
        int64_t n0 = p * nr, cols = N - n0 < nr ? N - n0 : nr;
        int64_t mg = M - m0 < pl->mgmax ? M - m0 : pl->mgmax;
        if (p != cur) {
            for (int j = 0; j < nr; j++) /* past N: the last row again, never stored */
                rows[j] = b + (size_t)(n0 + (j < cols ? j : cols - 1)) * row_bytes;
            if (bias)
                fk_convert_to_f32(bb, (const char *)bias + (size_t)n0 * besz, bias_dt,
                                  (size_t)cols);
            cur = p;
        }
        pl->fns[mg - 1](K, rows, xp + m0 * Kp, out);
        for (int64_t m = 0; m < mg; m++) {
            float *cr = c + (m0 + m) * ldc + n0;
            const float *o = out + m * nr;
            if (bias)
                for (int64_t j = 0; j < cols; j++) cr[j] = o[j] + bb[j];
            else
                for (int64_t j = 0; j < cols; j++) cr[j] = o[j];
        }
    }
}

bool fk_cpu_gemv(const fk_backend *be, int64_t M, int64_t N, int64_t K, const float *a,
                 int64_t lda, const void *b, fk_dtype bdt, int64_t ldb, const void *bias,
                 fk_dtype bias_dt, float *c, int64_t ldc) {
    const fk_cpu_impl *impl = fk_cpu_impl_of(be);
    if (impl->gemv_off || M < 1 || M > FK_CPU_GEMV_MAX_M || N < 1 || K < 0) return false;
    fk_gemv_plan pl;
    if (!fk_gemv_plan_for(impl->isa, bdt, &pl)) return false;
    int64_t Kp = (K + FK_GEMV_KPAD - 1) / FK_GEMV_KPAD * FK_GEMV_KPAD;
    if ((double)M * (double)Kp > (double)FK_CPU_SCRATCH_FLOATS) return false; /* huge K */
    fk_cpu_not_nested();
    float *xp = fk_cpu_scratch(be, 0); /* (M, Kp) packed by groups, read by every thread */
    fk_gemv_pack_x(xp, a, lda, M, K, Kp, pl.mgmax);

    /* every (panel, row group) is independent: any split gives the same bits */
    int64_t ntask = (N + pl.nr - 1) / pl.nr * ((M + pl.mgmax - 1) / pl.mgmax);
    int nt = impl->n_threads;
    if ((double)M * (double)N * (double)K < 65536.0) nt = 1; /* not worth a fork */
    if (ntask < nt) nt = (int)ntask;
    size_t row_bytes = (size_t)ldb * fk_dtype_size(bdt);
    FK_CPU_PARALLEL_FOR(nt)
    for (int t = 0; t < nt; t++)
        fk_gemv_tasks(&pl, ntask * t / nt, ntask * (t + 1) / nt, M, N, K, Kp, xp, b, row_bytes,
                      bias, bias_dt, c, ldc);
    return true;
}

bool fk_cpu_gemv_kernel_available(fk_cpu_isa isa, fk_dtype bdt) {
    fk_gemv_plan pl;
    return fk_cpu_isa_available(isa) && fk_gemv_plan_for(isa, bdt, &pl);
}

void fk_backend_cpu_set_gemv(fk_backend *be, bool on) { fk_cpu_impl_of(be)->gemv_off = !on; }
