/* cpu_conv_amx: conv2d in the bf16 precision mode (FK_PREC_BF16) on AMX
 * tiles: y = conv(bf16(x), bf16(w)) with products accumulated in f32, + bias
 * in f32. fk_cpu_conv2d calls it when the backend's bf16 kernel is AMX; it
 * returns false (nothing written) when it cannot run, and the f32 reference
 * runs instead.
 *
 * Formulation: an implicit GEMM with the pixels as the rows (tile A), the
 * output channels as the columns (tile B) and K = (channel block, tap) as
 * the reduction, A read IN PLACE from a packed copy of the input:
 *   y[co, p] = Σ_cb Σ_tap Σ_{c<32} x̃[32cb + c, p + off(tap)] · w̃[co, 32cb + c, tap]
 * - Input: a band of output rows at a time; the input rows it reads,
 *   rounded to bf16 and packed channel-blocked: plane (cb, phase) holds pixel
 *   after pixel, each pixel 32 channels (64 bytes), zero padded (the conv
 *   padding, channels past Ci, slack). The A tile of 16 consecutive pixels
 *   and one channel block is then 1 KB contiguous, and a tap is an offset:
 *   output pixel (oy, ox) of the band is the "virtual" pixel
 *   q = (oy − oy0)·Wq + ox, and tap (ky, kx) reads packed pixel
 *   q + (ky/s)·Wq + kx/s of phase plane (ky mod s, kx mod s), where the plane
 *   of phase (py, px) holds padded input pixel (r·s + py, c·s + px) at
 *   r·Wq + c. Stride 1 has one phase (the plane is the padded band); stride
 *   s splits the input into s² phase images so that every tap reads a
 *   stride-1 window. Virtual pixels with ox >= Wo ((kw − 1)/s extra columns
 *   a row) are computed and dropped.
 * - Weights: converted to f32 from any float dtype, rounded to bf16 and
 *   packed once per call into VNNI B tiles (16 output channels × 16 channel
 *   pairs), strip of 16 output channels after strip, tile kt = cb·ntap + tap
 *   at kt·512 (the layout of the bf16 linear's B panels, cpu_amx.c).
 * - Micro-kernel: a block of 32 pixels × 32 output channels (2 × 2 tiles of
 *   16 × 16 f32) accumulated over ALL of K in the tile registers (2 A + 2 B
 *   tile loads per 4 tdpbf16ps), stored once, pixel-major, into a chunk
 *   buffer. The cpu_amx.c micro-kernel does not fit: it reads A tiles at
 *   fixed 1 KB steps of packed panels, here they sit at tap offsets.
 * - Output: a chunk (whole band rows, or a piece of a long row, ~256 KB of
 *   f32 outputs) is written to y 16 pixels × 16 channels at a time:
 *   transposed in registers, + bias, streaming (non-temporal) stores; the
 *   writing of a chunk runs in small pieces between the micro-kernel calls
 *   of the next chunk.
 * - Blocking and threads: a task is (image, band of R output rows, group of
 *   output channels; groups only when there are fewer bands than threads).
 *   Bands are as tall as FK_C16_BAND_MAX allows, at least one per thread
 *   (the weights stream from memory once per band). Per task, for each block
 *   of mc output channels (their packed weights, ~1.25 MB, stay in L2): for
 *   each chunk: pack the band rows the chunk reads (first block only: just
 *   in time, so they are still in L2), for each 32-pixel block, for each
 *   32-channel strip: the micro-kernel, which also prefetches the next
 *   block's band lines and, late in the sweep, the next weight block. A
 *   thread's next band takes the overlapping input rows of its last one by a
 *   copy. Tasks write disjoint outputs.
 *
 * Numerics: x and w are rounded to bf16 by vcvtne2ps2bf16 (nearest-even;
 * denormal inputs read as zero), exactly as the bf16 linear rounds them
 * (bf16 and fp8 weights pass exactly, f16/f32 weights are rounded). Every
 * output element is the same fixed chain of tile products over K (channel
 * block, then tap, in increasing order) from +0, whatever its band, block,
 * chunk or thread, then + bias: results are bitwise identical for any thread
 * count (and band size). Relative L2 error against the exact conv of the
 * unrounded operands: 2^-7/sqrt(28) = 0.0015 per rounded operand for random
 * data, as for the linear (tests/unit/test_conv_bf16.c derives and checks it).
 *
 * Memory: the backend's bf16 workspace (cpu_amx.c, kept between calls):
 * packed weights round32(Co)·round32(Ci)·kh·kw·2 bytes (4.7 MB for a
 * 512 → 512 3×3 conv), and per thread a band (<= FK_C16_BAND_MAX unless one
 * row is larger) and two chunk buffers (2 × ~256 KB). Out of memory → false.
 * Speed (docs/PERF.md): 1.7–2.4 TFLOP/s on 2 cores on the autoencoder's
 * 3×3 convs, ×6.6–9 the f32 path. */
#include "backend/cpu/cpu.h"

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#include "backend/cpu/cpu_x86_simd.h"

#define FK_C16_BF16 "avx512f,avx512bw,avx512vl,avx512bf16"
#define FK_C16_AMX "avx512f,avx512bw,avx512vl,avx512bf16,amx-tile,amx-bf16,prfchw"

/* Blocking (bytes). BAND_MAX: largest packed input band per thread (it
 * streams through the caches once per weight block). WBLK: packed weights of
 * one block of output channels (stays in the 2 MB L2 during its sweep).
 * OBUF: f32 outputs of one chunk (one block of channels). A first version
 * with L2-sized bands (~512 KB: one output row of a 512-channel conv at
 * 128²) read the 4.7 MB of weights from memory for every row and ran that
 * conv at 1.4 TFLOP/s on 2 cores; with tall bands 2.4 (docs/PERF.md). */
#define FK_C16_BAND_MAX ((int64_t)8 << 20)
#define FK_C16_WBLK_BYTES ((int64_t)1280 << 10)
#define FK_C16_OBUF_BYTES ((int64_t)256 << 10)

typedef struct fk_c16_geom {
    int64_t B, Ci, H, W;  /* input (B, Ci, H, W) */
    int64_t Co, kh, kw;   /* weights (Co, Ci, kh, kw) */
    int64_t Ho, Wo;       /* output (B, Co, Ho, Wo) */
    int64_t s, top, left; /* stride, top / left padding */
    int64_t ncb;          /* channel blocks of 32 */
    int64_t ntap;         /* kh·kw */
    int64_t kt;           /* K tiles: ncb·ntap */
    int64_t sy, sx;       /* phases: min(s, kh) × min(s, kw) */
    int64_t Wq;           /* virtual row: Wo + (kw − 1)/s pixels */
    int64_t rx;           /* phase rows beyond the band: (kh − 1)/s */
    int64_t R;            /* output rows per band */
    int64_t NQ;           /* bound of the virtual pixels computed per band: R·Wq + 32 */
    int64_t P;            /* pixels per phase plane: NQ + rx·Wq + (kw − 1)/s */
    int64_t cbstr;        /* elements between channel blocks: sy·sx·P·32 */
    int64_t cop;          /* output channels rounded up to 32 */
    int64_t mc;           /* output channels per weight block (multiple of 32) */
} fk_c16_geom;

/* ---- conversions and transposes ---- */

/* 32 f32 → 32 bf16, nearest-even (lo → the first 16). */
__attribute__((target(FK_C16_BF16))) static inline __m512i fk_c16_cvt(__m512 lo, __m512 hi) {
    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

/* ---- weights ---- */

/* Pack strip j (output channels 16j .. 16j+15) of the weights into VNNI B
 * tiles: wp[j·kt·512 + kt'·512 + r·32 + n·2 + e] = bf16(w[16j + n, 32cb + 2r + e,
 * tap]) for kt' = cb·ntap + tap; zero past Co and Ci. tmp: 16·32·ntap floats. */
__attribute__((target(FK_C16_BF16))) static void fk_c16_pack_w(const fk_c16_geom *g,
                                                               const fk_tensor *w, int64_t j,
                                                               uint16_t *wp, float *tmp) {
    uint16_t *strip = wp + j * g->kt * 512;
    const int64_t nt = g->ntap;
    const __m512i idx =
        _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                           _mm512_set1_epi32((int)nt)); /* channel c at c·ntap */
    for (int64_t cb = 0; cb < g->ncb; cb++) {
        const int64_t nch = g->Ci - 32 * cb < 32 ? g->Ci - 32 * cb : 32;
        /* tmp[n]: w[16j + n, 32cb .. 32cb + 31, :] in f32, (32, ntap), zero past Co, Ci */
        for (int64_t n = 0; n < 16; n++) {
            float *rn = tmp + n * 32 * nt;
            const int64_t co = 16 * j + n;
            if (co < g->Co) fk_cpu_load_f32(rn, w, (co * g->Ci + 32 * cb) * nt, nch * nt);
            const int64_t from = co < g->Co ? nch * nt : 0;
            memset(rn + from, 0, (size_t)(32 * nt - from) * sizeof(float));
        }
        for (int64_t t = 0; t < nt; t++) {
            __m512i r[16]; /* r[n]: the 16 channel pairs of tap t, output channel 16j + n */
            for (int64_t n = 0; n < 16; n++) {
                const float *rn = tmp + n * 32 * nt + t;
                r[n] = fk_c16_cvt(_mm512_i32gather_ps(idx, rn, 4),
                                  _mm512_i32gather_ps(idx, rn + 16 * nt, 4));
            }
            fk_x86_tr16_epi32(r); /* r[p]: channel pair p of the 16 output channels */
            uint16_t *tile = strip + (cb * nt + t) * 512;
            for (int p = 0; p < 16; p++) _mm512_storeu_si512(tile + p * 32, r[p]);
        }
    }
}

/* ---- input bands ---- */

/* Pack phase rows [j0, j1) of the band of output rows starting at oy0 (see
 * the header) from xb (Ci, H, W) of one image. */
__attribute__((target(FK_C16_BF16))) static void fk_c16_pack_rows(const fk_c16_geom *g,
                                                                  const float *xb, uint16_t *band,
                                                                  int64_t oy0, int64_t j0,
                                                                  int64_t j1) {
    const int64_t H = g->H, W = g->W, s = g->s, Wq = g->Wq, HW = g->H * g->W;
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    /* words (a0 .. a15, b0 .. b15) → pairs (a0, b0), (a1, b1), .. */
    const __m512i inter =
        _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                         21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    for (int64_t cb = 0; cb < g->ncb; cb++) {
        const int64_t nch = g->Ci - 32 * cb < 32 ? g->Ci - 32 * cb : 32; /* real channels */
        for (int64_t py = 0; py < g->sy; py++)
            for (int64_t px = 0; px < g->sx; px++) {
                uint16_t *plane = band + cb * g->cbstr + (py * g->sx + px) * g->P * 32;
                for (int64_t j = j0; j < j1; j++) {
                    uint16_t *dst = plane + j * Wq * 32;
                    const int64_t iy = (oy0 + j) * s + py - g->top;
                    if (iy < 0 || iy >= H) {
                        memset(dst, 0, (size_t)(Wq * 64));
                        continue;
                    }
                    const float *row = xb + 32 * cb * HW + iy * W; /* channel 32cb */
                    for (int64_t c0 = 0; c0 < Wq; c0 += 16) {
                        const int64_t n = Wq - c0 < 16 ? Wq - c0 : 16;
                        /* lanes l in [lo, hi) read x at ix0 + l·s, the rest are padding */
                        const int64_t ix0 = c0 * s + px - g->left;
                        int64_t lo = ix0 >= 0 ? 0 : (-ix0 + s - 1) / s;
                        int64_t hi = ix0 > W - 1 ? 0 : (W - 1 - ix0) / s + 1;
                        if (hi > n) hi = n;
                        if (lo > hi) lo = hi;
                        const __mmask16 m = (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
                        const bool full = s == 1 && lo == 0 && hi == 16;
                        const __m512i gidx = _mm512_mullo_epi32(
                            _mm512_sub_epi32(iota, _mm512_set1_epi32((int)lo)),
                            _mm512_set1_epi32((int)s));
                        __m512 v[32]; /* channel c, pixels c0 .. c0 + 15 */
                        for (int64_t c = 0; c < 32; c++) {
                            if (c >= nch || hi == lo) {
                                v[c] = _mm512_setzero_ps();
                                continue;
                            }
                            const float *src = row + c * HW;
                            if (full)
                                v[c] = _mm512_loadu_ps(src + ix0);
                            else if (s == 1)
                                v[c] = _mm512_maskz_expandloadu_ps(m, src + ix0 + lo);
                            else
                                v[c] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, gidx,
                                                                src + ix0 + lo * s, 4);
                        }
                        /* r[i]: channels (2i, 2i + 1) of each pixel as one 32-bit pair,
                         * then transposed: r[l] = the 16 pairs of pixel c0 + l */
                        __m512i r[16];
                        for (int i = 0; i < 16; i++)
                            r[i] = _mm512_permutexvar_epi16(inter,
                                                            fk_c16_cvt(v[2 * i], v[2 * i + 1]));
                        fk_x86_tr16_epi32(r);
                        for (int l = 0; l < 16; l++) /* masked: no call to memcpy for n < 16 */
                            _mm512_mask_storeu_epi32(dst + (c0 + l) * 32,
                                                     (__mmask16)(l < n ? 0xffffu : 0u), r[l]);
                    }
                }
            }
    }
}

/* ---- tiles ---- */

typedef struct fk_c16_tilecfg {
    uint8_t palette_id;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} fk_c16_tilecfg;

/* Eight 16 × 64-byte tiles for this thread (the bf16 linear's configuration). */
__attribute__((target(FK_C16_AMX))) static void fk_c16_amx_begin(void) {
    fk_c16_tilecfg cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.palette_id = 1;
    for (int i = 0; i < 8; i++) {
        cfg.colsb[i] = 64;
        cfg.rows[i] = 16;
    }
    /* inline asm: gcc 12's _tile_loadconfig does not see that it reads cfg */
    __asm__ volatile("ldtilecfg %0" : : "m"(cfg) : "memory");
}

__attribute__((target(FK_C16_AMX))) static void fk_c16_amx_end(void) { _tile_release(); }

/* Cache lines to prefetch during micro-kernel calls, a few per K step: a
 * walk over `rows` rows (address of row r: base + (r mod m)·s1 + (r div m)·s2
 * bytes), `lines` lines of 64 bytes each (the last one clamped to the row's
 * last byte, `last`). */
typedef struct fk_c16_walk {
    uintptr_t base;
    int64_t s1, s2, m, rows, lines, last;
    int64_t r, l;   /* next line */
    int64_t quota;  /* lines to issue in the next micro-kernel call */
} fk_c16_walk;

static inline uintptr_t fk_c16_walk_next(fk_c16_walk *w) {
    const int64_t byte = w->l * 64 < w->last ? w->l * 64 : w->last;
    const uintptr_t a = w->base + (uintptr_t)((w->r % w->m) * w->s1 + (w->r / w->m) * w->s2 + byte);
    if (++w->l == w->lines) {
        w->l = 0;
        w->r++;
    }
    return a;
}

static inline bool fk_c16_walk_done(const fk_c16_walk *w) { return w->r >= w->rows; }

/* The walks of a micro-kernel call: the next pixel block's band lines, the
 * next channel block's weights. (Not the input rows the next chunk packs:
 * the channel planes of x are usually a multiple of 128 KB apart, so the
 * same row of every channel falls into one L2 set, and prefetching a row of
 * all channels evicted itself, measured slower.) */
#define FK_C16_NWALK 2

/* c (32 pixels × 32 channels, row stride ldc) = A · B over all K tiles:
 * a: the band at the block's first virtual pixel; channel block cb, tap t
 * reads the two A tiles at a + cb·cbstr + aoff[t] and 512 further; b, b +
 * bstr: the two weight strips, tile kt at kt·512. Tiles: 0..3 = c, 4, 5 = A,
 * 6, 7 = B. Out of line (called per block): gcc's tile intrinsics are asm
 * statements without memory operands, the call orders them with the
 * caller's accesses to c. */
__attribute__((target(FK_C16_AMX), noinline)) static void
fk_c16_micro(const uint16_t *a, int64_t cbstr, int64_t ncb, const int64_t *aoff, int64_t ntap,
             const uint16_t *b, int64_t bstr, float *c, int64_t ldc, fk_c16_walk pf[FK_C16_NWALK]) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    const uint16_t *b1 = b + bstr;
    const int64_t steps = ncb * ntap;
    int64_t acc[FK_C16_NWALK] = {0}; /* prefetches spread evenly over the steps */
    for (int64_t cb = 0; cb < ncb; cb++) {
        const uint16_t *ac = a + cb * cbstr;
        for (int64_t t = 0; t < ntap; t++, b += 512, b1 += 512) {
            const uint16_t *at = ac + aoff[t];
            _tile_loadd(4, at, 64);
            _tile_loadd(6, b, 64);
            _tile_dpbf16ps(0, 4, 6);
            _tile_loadd(7, b1, 64);
            _tile_dpbf16ps(1, 4, 7);
            _tile_loadd(5, at + 512, 64);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
            for (int i = 0; i < FK_C16_NWALK; i++)
                for (acc[i] += pf[i].quota; acc[i] >= steps; acc[i] -= steps)
                    if (!fk_c16_walk_done(&pf[i]))
                        _mm_prefetch((const char *)fk_c16_walk_next(&pf[i]), _MM_HINT_T1);
        }
    }
    _tile_stored(0, c, ldc * 4);
    _tile_stored(1, c + 16, ldc * 4);
    _tile_stored(2, c + 16 * ldc, ldc * 4);
    _tile_stored(3, c + 16 * ldc + 16, ldc * 4);
}

/* ---- output ---- */

/* A chunk of a band: virtual pixels [c0, c1) (whole rows of the band, or a
 * piece of one row), computed for one block of output channels [m0, m1)
 * into ob (pixel-major: virtual pixel c0 + v, channel m0 + i at ob[v·ldo +
 * i]), then written to y ("flushed") 16 pixels × 16 channels at a time,
 * transposed in registers, + bias, with streaming stores: the flush of a
 * chunk runs in small pieces between the micro-kernel calls of the next one.
 * Unit u of the flush: row j = j0 + u / (ng·nx), 16-pixel group, 16-channel
 * group. */
typedef struct fk_c16_chunk {
    const float *ob;
    int64_t ldo, c0, c1;
    int64_t j0, j1, xa, xb; /* rows, and output columns [xa, xb) of each */
    int64_t m0, nco;        /* channels m0 .. m0 + nco − 1 (< Co) */
    int64_t nx, ng;         /* 16-pixel groups per row, 16-channel groups */
    int64_t units, u;       /* flush: total units, next unit */
} fk_c16_chunk;

/* Flush up to k units of chunk f into the image's output yb (Co, Ho, Wo). */
__attribute__((target(FK_C16_BF16))) static void
fk_c16_flush(const fk_c16_geom *g, fk_c16_chunk *f, int64_t k, float *yb, int64_t oy0,
             const float *bias) {
    const int64_t N = g->Ho * g->Wo;
    for (; k > 0 && f->u < f->units; k--, f->u++) {
        const int64_t cg = f->u % f->ng, xg = (f->u / f->ng) % f->nx;
        const int64_t j = f->j0 + f->u / (f->ng * f->nx);
        const int64_t ox = f->xa + 16 * xg, n = f->xb - ox < 16 ? f->xb - ox : 16;
        const int64_t c = 16 * cg, nc = f->nco - c < 16 ? f->nco - c : 16;
        const float *src = f->ob + (j * g->Wq + ox - f->c0) * f->ldo + c;
        __m512i r[16];
        for (int64_t i = 0; i < 16; i++)
            r[i] = i < n ? _mm512_loadu_si512(src + i * f->ldo) : _mm512_setzero_si512();
        fk_x86_tr16_epi32(r); /* r[i]: channel m0 + c + i, pixels ox .. ox + 15 */
        float *dst = yb + (f->m0 + c) * N + (oy0 + j) * g->Wo + ox;
        const bool nt = n == 16 && (((uintptr_t)dst | (uintptr_t)(N * 4)) & 63) == 0;
        const __mmask16 m = (__mmask16)((1u << n) - 1u);
        for (int64_t i = 0; i < nc; i++) {
            __m512 v = _mm512_castsi512_ps(r[i]);
            if (bias) v = _mm512_add_ps(v, _mm512_set1_ps(bias[f->m0 + c + i]));
            if (nt)
                _mm512_stream_ps(dst + i * N, v);
            else
                _mm512_mask_storeu_ps(dst + i * N, m, v);
        }
    }
}

/* ---- driver ---- */

/* What the tasks share (read only). */
typedef struct fk_c16_run {
    const fk_c16_geom *g;
    const float *x; /* (B, Ci, H, W) */
    float *y;       /* (B, Co, Ho, Wo) */
    const uint16_t *wp;
    const float *bias; /* (Co) or NULL */
    const int64_t *aoff;
    int64_t nband, ngrp, grp_str;
    int64_t rows_pc, cols_pc; /* chunk: rows of the band, or (rows_pc 0) columns of a row */
    int64_t ldo;
} fk_c16_run;

/* Chunk k of a band with rb rows (see fk_c16_chunk; ob, m0, nco set later). */
static void fk_c16_chunk_at(const fk_c16_geom *g, const fk_c16_run *r, int64_t rb, int64_t k,
                            fk_c16_chunk *f) {
    memset(f, 0, sizeof(*f));
    if (r->rows_pc > 0) { /* whole rows */
        f->j0 = k * r->rows_pc;
        f->j1 = f->j0 + r->rows_pc < rb ? f->j0 + r->rows_pc : rb;
        f->xa = 0;
        f->xb = g->Wo;
        f->c0 = f->j0 * g->Wq;
        f->c1 = f->j1 * g->Wq;
    } else { /* a piece of one row */
        const int64_t per = (g->Wq + r->cols_pc - 1) / r->cols_pc;
        f->j0 = k / per;
        f->j1 = f->j0 + 1;
        f->xa = (k % per) * r->cols_pc;
        f->xb = f->xa + r->cols_pc < g->Wq ? f->xa + r->cols_pc : g->Wq;
        f->c0 = f->j0 * g->Wq + f->xa;
        f->c1 = f->j0 * g->Wq + f->xb;
        if (f->xb > g->Wo) f->xb = g->Wo;
        if (f->xa > f->xb) f->xa = f->xb;
    }
    f->nx = (f->xb - f->xa + 15) / 16;
}

/* One task: image bi, band bandi, channel group grp. band: this thread's
 * band buffer, holding band *held (an index over all images; −1: none);
 * obuf: two chunk buffers. */
static void fk_c16_task(const fk_c16_run *r, int64_t task, uint16_t *band, float *const obuf[2],
                        int64_t *held) {
    const fk_c16_geom *g = r->g;
    const int64_t grp = task % r->ngrp, bandi = (task / r->ngrp) % r->nband;
    const int64_t bi = task / (r->ngrp * r->nband), R = g->R, Rq = g->R + g->rx;
    const int64_t oy0 = bandi * R, rb = g->Ho - oy0 < R ? g->Ho - oy0 : R;
    const int64_t c_lo = grp * r->grp_str;
    const int64_t c_hi = c_lo + r->grp_str < g->cop ? c_lo + r->grp_str : g->cop;
    if (c_lo >= c_hi) return;
    const int64_t key = bi * r->nband + bandi;
    const float *xb = r->x + bi * g->Ci * g->H * g->W;
    float *yb = r->y + bi * g->Co * g->Ho * g->Wo;

    /* The band is packed just in time, the rows each chunk reads (so they
     * are still in L2 when the tiles read them): rows [0, ready) are in
     * place. The band after the one held takes its last rx rows by a copy. */
    int64_t ready = 0;
    if (*held == key) {
        ready = Rq;
    } else {
        if (*held == key - 1 && bandi > 0 && g->rx > 0) {
            for (int64_t pl = 0; pl < g->ncb * g->sy * g->sx; pl++) {
                uint16_t *plane = band + pl * g->P * 32;
                memmove(plane, plane + R * g->Wq * 32, (size_t)(g->rx * g->Wq * 64));
            }
            ready = g->rx;
        }
        if (*held < 0) /* a fresh buffer: zero the slack after the last row */
            for (int64_t pl = 0; pl < g->ncb * g->sy * g->sx; pl++)
                memset(band + (pl * g->P + Rq * g->Wq) * 32, 0, (size_t)((g->P - Rq * g->Wq) * 64));
    }
    *held = key;
    const int64_t reach = (g->kw - 1) / g->s; /* extra pixels a tap reads */
    const int64_t nchunk = r->rows_pc > 0 ? (rb + r->rows_pc - 1) / r->rows_pc
                                          : rb * ((g->Wq + r->cols_pc - 1) / r->cols_pc);
    fk_c16_chunk prev;
    memset(&prev, 0, sizeof(prev));
    int cur = 0;
    fk_c16_amx_begin();
    for (int64_t m0 = c_lo; m0 < c_hi; m0 += g->mc) {
        const int64_t m1 = m0 + g->mc < c_hi ? m0 + g->mc : c_hi, nstr = (m1 - m0) / 32;
        fk_c16_walk pf[FK_C16_NWALK];
        memset(pf, 0, sizeof(pf));
        pf[0].m = pf[1].m = 1;
        /* pf[1]: the next channel block's weights, prefetched during the
         * last quarter of this block's sweep */
        const int64_t nqall = (rb * g->Wq + 31) / 32 + nchunk; /* about the blocks of the sweep */
        const int64_t ncalls = nqall * nstr, pb_from = ncalls - (ncalls + 3) / 4;
        if (m1 < c_hi) {
            const int64_t n2 = (m1 + g->mc < c_hi ? m1 + g->mc : c_hi) - m1;
            pf[1].base = (uintptr_t)(r->wp + (m1 / 16) * g->kt * 512);
            pf[1].rows = 1;
            pf[1].lines = n2 * g->kt; /* n2/16 strips × kt tiles × 1 KB */
            pf[1].last = pf[1].lines * 64 - 1;
        }
        int64_t call = 0;
        for (int64_t k = 0; k < nchunk; k++) {
            fk_c16_chunk ch;
            fk_c16_chunk_at(g, r, rb, k, &ch);
            ch.ob = obuf[cur];
            ch.ldo = r->ldo;
            ch.m0 = m0;
            ch.nco = (m1 < g->Co ? m1 : g->Co) - m0;
            ch.ng = (ch.nco + 15) / 16;
            ch.units = (ch.j1 - ch.j0) * ch.nx * ch.ng;
            /* band rows this chunk reads */
            const int64_t nq = (ch.c1 - ch.c0 + 31) / 32;
            int64_t need = (ch.c0 + 32 * nq - 1 + reach) / g->Wq + g->rx + 1;
            need = need < Rq ? need : Rq;
            if (ready < need) {
                fk_c16_pack_rows(g, xb, band, oy0, ready, need);
                ready = need;
            }
            const int64_t chunk_calls = nq * nstr;
            const int64_t fl_per_call = (prev.units - prev.u + chunk_calls - 1) / chunk_calls;
            for (int64_t qi = 0; qi < nq; qi++) {
                const int64_t q = ch.c0 + 32 * qi;
                /* pf[0]: the next pixel block's newest band lines (once packed) */
                const int64_t qn = qi + 1 < nq ? q + 32 : q;
                pf[0].base = (uintptr_t)(band + (qn + g->rx * g->Wq) * 32);
                pf[0].s1 = g->P * 64;
                pf[0].m = g->ncb * g->sy * g->sx;
                pf[0].rows = pf[0].m;
                pf[0].lines = 32 + reach;
                pf[0].last = pf[0].lines * 64 - 1;
                pf[0].r = pf[0].l = 0;
                pf[0].quota = qi + 1 < nq ? (pf[0].rows * pf[0].lines + nstr - 1) / nstr : 0;
                for (int64_t co0 = m0; co0 < m1; co0 += 32, call++) {
                    pf[1].quota = 0;
                    if (call >= pb_from && pf[1].rows > 0) {
                        const int64_t left = ncalls - call > 1 ? ncalls - call : 1;
                        pf[1].quota = (pf[1].lines - pf[1].l + left - 1) / left;
                    }
                    fk_c16_micro(band + q * 32, g->cbstr, g->ncb, r->aoff, g->ntap,
                                 r->wp + (co0 / 16) * g->kt * 512, g->kt * 512,
                                 obuf[cur] + 32 * qi * r->ldo + (co0 - m0), r->ldo, pf);
                    /* the previous chunk to y, spread over this chunk's calls */
                    fk_c16_flush(g, &prev, fl_per_call, yb, oy0, r->bias);
                }
            }
            fk_c16_flush(g, &prev, prev.units, yb, oy0, r->bias);
            prev = ch;
            cur ^= 1;
        }
    }
    fk_c16_flush(g, &prev, prev.units, yb, oy0, r->bias);
    fk_c16_amx_end();
    _mm_sfence(); /* order the streaming stores before the join */
}

bool fk_cpu_conv2d_bf16(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                        const fk_tensor *b, int stride, const int pad[4]) {
    fk_cpu_impl *impl = fk_cpu_impl_of(be);
    if (impl->bf16_kernel != FK_CPU_BF16_AMX) return false;
    fk_c16_geom g;
    g.B = x->shape[0];
    g.Ci = x->shape[1];
    g.H = x->shape[2];
    g.W = x->shape[3];
    g.Co = w->shape[0];
    g.kh = w->shape[2];
    g.kw = w->shape[3];
    g.s = stride;
    g.top = pad[0];
    g.left = pad[1];
    g.Ho = y->shape[2];
    g.Wo = y->shape[3];
    if (g.B <= 0 || g.Co <= 0 || g.Ho <= 0 || g.Wo <= 0 || g.Ci <= 0) return false;
    g.ncb = (g.Ci + 31) / 32;
    g.ntap = g.kh * g.kw;
    g.kt = g.ncb * g.ntap;
    g.sy = g.s < g.kh ? g.s : g.kh;
    g.sx = g.s < g.kw ? g.s : g.kw;
    g.Wq = g.Wo + (g.kw - 1) / g.s;
    g.rx = (g.kh - 1) / g.s;
    g.cop = (g.Co + 31) / 32 * 32;
    const int nt = impl->n_threads > 0 ? impl->n_threads : 1;
    /* tmp of fk_c16_pack_w: 512·ntap floats of the scratch (ntap <= 512) */
    if (g.ntap > (int64_t)(FK_CPU_SCRATCH_FLOATS / 512)) return false;

    /* Bands: as few as FK_C16_BAND_MAX bytes each allows (the weights are
     * read from memory once per band), at least one per thread, their count
     * over all images a multiple of the threads where possible (threads take
     * consecutive bands). */
    const int64_t row_bytes = g.ncb * g.sy * g.sx * g.Wq * 64;
    const int64_t band_max =
        impl->conv16_band_bytes > 0 ? impl->conv16_band_bytes : FK_C16_BAND_MAX;
    int64_t rmax = band_max / row_bytes - g.rx;
    if (rmax < 1) rmax = 1;
    int64_t nb = (g.Ho + rmax - 1) / rmax;
    if (nb < (nt + g.B - 1) / g.B) nb = (nt + g.B - 1) / g.B;
    while ((g.B * nb) % nt != 0 && nb < g.Ho) nb++;
    if (nb > g.Ho) nb = g.Ho;
    const int64_t R = (g.Ho + nb - 1) / nb;
    g.R = R;
    g.NQ = R * g.Wq + 32; /* blocks of 32 from any chunk start reach below this */
    g.P = g.NQ + g.rx * g.Wq + (g.kw - 1) / g.s;
    g.cbstr = g.sy * g.sx * g.P * 32;
    const int64_t nband = (g.Ho + R - 1) / R;
    /* channel block: its packed weights ~FK_C16_WBLK_BYTES (kept in L2 while
     * it sweeps the band) */
    g.mc = FK_C16_WBLK_BYTES / (g.kt * 2048) * 32;
    if (g.mc < 32) g.mc = 32;
    if (g.mc > g.cop) g.mc = g.cop;
    /* chunks of the band (swept per output flush): whole rows, or pieces of
     * a row, of about FK_C16_OBUF_BYTES of f32 outputs for one channel
     * block; rows of the chunk buffer padded by 64 bytes (tile stores of 16
     * rows then fall into different L1 sets) */
    const int64_t ldo = g.mc + 16;
    int64_t pq = FK_C16_OBUF_BYTES / (ldo * 4);
    if (pq < 32) pq = 32;
    const int64_t rows_pc = g.Wq <= pq ? pq / g.Wq : 0, cols_pc = rows_pc ? 0 : pq / 32 * 32;
    /* channel groups when there are fewer bands than threads */
    int64_t ngrp = 1;
    if (g.B * nband < nt) {
        ngrp = (nt + g.B * nband - 1) / (g.B * nband);
        if (ngrp > g.cop / 32) ngrp = g.cop / 32;
    }
    const int64_t ntask = g.B * nband * ngrp;

    /* workspace: packed weights, bias, tap offsets, per-thread state, then
     * per thread a band and two output buffers */
    uint64_t w_el, band_el, ob_el, th_b, wbytes, total;
    if (!fk_mul_ok((uint64_t)g.cop * 32u, (uint64_t)g.kt * 16u, &w_el) ||
        !fk_mul_ok((uint64_t)g.ncb, (uint64_t)g.cbstr, &band_el) ||
        !fk_mul_ok((uint64_t)ldo, (uint64_t)pq + 32u, &ob_el) || !fk_mul_ok(w_el, 2u, &wbytes) ||
        !fk_add_ok(band_el * 2u, ob_el * 8u + 63u, &th_b))
        return false;
    th_b &= ~(uint64_t)63; /* per thread, 64-byte multiple */
    const uint64_t wb = (wbytes + 63) & ~(uint64_t)63;
    const uint64_t bias_b = ((uint64_t)g.cop * 4u + 63) & ~(uint64_t)63;
    const uint64_t aoff_b = ((uint64_t)g.ntap * 8u + 63) & ~(uint64_t)63;
    const uint64_t held_b = ((uint64_t)nt * 8u + 63) & ~(uint64_t)63;
    if (!fk_mul_ok(th_b, (uint64_t)nt, &total) ||
        !fk_add_ok(total, wb + bias_b + aoff_b + held_b, &total) ||
        !fk_cpu_bf16_ws_reserve(impl, total))
        return false;
    char *mem = impl->bf16_ws;
    uint16_t *wp = (uint16_t *)mem;
    float *bias = b ? (float *)(mem + wb) : NULL;
    int64_t *aoff = (int64_t *)(mem + wb + bias_b);
    int64_t *held = (int64_t *)(mem + wb + bias_b + aoff_b); /* per thread: band held, or −1 */
    char *thr = mem + wb + bias_b + aoff_b + held_b;
    fk_cpu_not_nested();

    if (bias) fk_cpu_load_f32(bias, b, 0, g.Co);
    for (int64_t ky = 0; ky < g.kh; ky++)
        for (int64_t kx = 0; kx < g.kw; kx++)
            aoff[ky * g.kw + kx] =
                (((ky % g.s) * g.sx + kx % g.s) * g.P + (ky / g.s) * g.Wq + kx / g.s) * 32;
    for (int i = 0; i < nt; i++) held[i] = -1;
    {
        const int64_t nstrip = g.cop / 16;
        FK_CPU_PARALLEL_FOR(nt)
        for (int64_t j = 0; j < nstrip; j++)
            fk_c16_pack_w(&g, w, j, wp, fk_cpu_scratch(be, fk_cpu_thread_id()));
    }

    const int64_t grp_str = (g.cop / 32 + ngrp - 1) / ngrp * 32; /* channels per group */
    const fk_c16_run run = {&g,   x->data, y->data, wp,      bias,    aoff,
                            nband, ngrp,   grp_str, rows_pc, cols_pc, ldo};
    /* a contiguous range of tasks per thread (consecutive tasks reuse the
     * packed band), with stealing when a thread falls behind */
    fk_cpu_ranges_init(impl, nt, ntask);
    FK_CPU_PARALLEL_FOR(nt)
    for (int64_t th = 0; th < nt; th++) {
        const int tid = fk_cpu_thread_id();
        uint16_t *band = (uint16_t *)(thr + (uint64_t)tid * th_b);
        float *ob0 = (float *)((char *)band + band_el * 2u);
        float *const obuf[2] = {ob0, ob0 + ob_el};
        for (int64_t task; (task = fk_cpu_ranges_next(impl, nt, tid)) >= 0;)
            fk_c16_task(&run, task, band, obuf, &held[tid]);
    }
    return true;
}

#else /* not x86-64: no AMX, the f32 path runs */

bool fk_cpu_conv2d_bf16(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                        const fk_tensor *b, int stride, const int pad[4]) {
    (void)be, (void)y, (void)x, (void)w, (void)b, (void)stride, (void)pad;
    return false;
}

#endif
