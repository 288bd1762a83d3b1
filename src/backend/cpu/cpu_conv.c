/* cpu_conv: 2-D convolution, group normalization and nearest ×2 upsampling
 * for the CPU backend (the autoencoder's ops).
 *
 * conv2d is an implicit-im2col GEMM:
 *   y[b, co, p] = Σ_k w[co, k] · col[b, k, p] (+ bias[co]),
 *   k = (ci, ky, kx) flattened (K = Ci·kh·kw), p = (oy, ox) flattened (N = Ho·Wo),
 *   col[b, k, p] = x[b, ci, oy·s + ky − top, ox·s + kx − left] (0 outside).
 * The column matrix is never built whole: each task (batch b, a block of NC
 * output pixels, a range of output channels) packs one KC-deep slice of it
 * at a time into its thread's scratch (the backend's per-thread buffer) and
 * runs a register-blocked micro-kernel (MR channels × NR pixels) over it
 * and the packed weights (converted to f32 from any float dtype, packed
 * once per call when several tasks share them, else per task). Stride-1
 * panels of NR pixels that touch no padding are not packed at all: the
 * micro-kernel reads them in place through a table of tap offsets (a
 * direct convolution), which is most of a large image.
 *
 * Numerics (the CPU reference convention, see cpu.h): every output element
 * is one chain of fused multiply-adds over k = 0..K-1 in increasing order,
 * starting from +0, then + bias. The chain is carried across KC slices
 * through the output (stored and reloaded exactly in f32), so the result
 * depends neither on the blocking nor on the thread count nor on the ISA
 * path (portable fmaf, AVX2+FMA, AVX-512 all give the same bits).
 *
 * In the bf16 precision mode with AMX, conv2d runs fk_cpu_conv2d_bf16
 * (cpu_conv_amx.c: bf16-rounded operands on AMX tiles) instead; this f32
 * path is unchanged and runs in every other case.
 *
 * group_norm: statistics in double (two passes: mean, then Σ(x − mean)²),
 * eight independent partial sums per pass in a fixed order; parallel over
 * (batch, group). upsample_nearest2x: a copy, parallel over planes.
 */
#include "backend/cpu/cpu.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#define FK_CONV_X86 1
#include <immintrin.h>
#endif

/* Blocking. Per-thread scratch use: NC·KC (columns) + MC·KC (weights) + KC
 * (one converted weight row) floats; must fit FK_CPU_SCRATCH_FLOATS. MC is a
 * multiple of every MR (4, 6, 12). */
#define FK_CONV_KC 256
#define FK_CONV_NC 384
#define FK_CONV_MC 480
#define FK_CONV_MAXMR 12
#define FK_CONV_MAXNR 32

_Static_assert((size_t)FK_CONV_NC * FK_CONV_KC + (size_t)FK_CONV_MC * FK_CONV_KC + FK_CONV_KC <=
                   FK_CPU_SCRATCH_FLOATS,
               "conv2d blocking must fit the per-thread scratch");

/* Micro-kernel: c(mr, nr) ⟵ chain over kc of a(kc, MR) × b(kc, NR).
 * a: packed weights [kc][MR]. b: packed columns [kc][NR] when koff is NULL;
 * else the input itself, row kk of the column slice being the NR floats at
 * b + koff[kk] (stride-1 panels away from the borders need no packing).
 * c row stride ldc. first: start the chain from +0 (else continue it from
 * the values in c). bias: non-NULL on the last slice: add bias[r] at the end. */
typedef void (*fk_conv_ukr_fn)(int64_t kc, const float *a, const float *b, const int64_t *koff,
                               float *c, int64_t ldc, int mr, int nr, bool first, const float *bias);

/* ---- portable micro-kernel (4 × 16) ---------------------------------- */

#define FK_CONV_P_MR 4
#define FK_CONV_P_NR 16

static void fk_conv_ukr_portable(int64_t kc, const float *a, const float *b, const int64_t *koff,
                                 float *c, int64_t ldc, int mr, int nr, bool first, const float *bias) {
    float acc[FK_CONV_P_MR][FK_CONV_P_NR];
    for (int r = 0; r < FK_CONV_P_MR; r++)
        for (int j = 0; j < FK_CONV_P_NR; j++)
            acc[r][j] = (first || r >= mr || j >= nr) ? 0.0f : c[r * ldc + j];
    for (int64_t k = 0; k < kc; k++) {
        const float *ak = a + k * FK_CONV_P_MR;
        const float *bk = koff ? b + koff[k] : b + k * FK_CONV_P_NR;
        for (int r = 0; r < FK_CONV_P_MR; r++)
            for (int j = 0; j < FK_CONV_P_NR; j++) acc[r][j] = fmaf(ak[r], bk[j], acc[r][j]);
    }
    for (int r = 0; r < mr; r++) {
        float bv = bias ? bias[r] : 0.0f;
        for (int j = 0; j < nr; j++) c[r * ldc + j] = bias ? acc[r][j] + bv : acc[r][j];
    }
}

#ifdef FK_CONV_X86

/* ---- AVX2 + FMA micro-kernel (6 × 16): 12 accumulators --------------- */

#define FK_CONV_A2_MR 6
#define FK_CONV_A2_NR 16

__attribute__((target("avx2,fma"))) static void
fk_conv_ukr_avx2(int64_t kc, const float *a, const float *b, const int64_t *koff, float *c,
                 int64_t ldc, int mr, int nr, bool first, const float *bias) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr), lane);
    const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr - 8), lane);
    __m256 c0[FK_CONV_A2_MR], c1[FK_CONV_A2_MR];
#pragma GCC unroll 6
    for (int r = 0; r < FK_CONV_A2_MR; r++) {
        if (first || r >= mr) {
            c0[r] = _mm256_setzero_ps();
            c1[r] = _mm256_setzero_ps();
        } else {
            c0[r] = _mm256_maskload_ps(c + r * ldc, m0);
            c1[r] = _mm256_maskload_ps(c + r * ldc + 8, m1);
        }
    }
#define FK_CONV_A2_STEP(bk)                                                                        \
    do {                                                                                           \
        __m256 b0 = _mm256_loadu_ps(bk);                                                           \
        __m256 b1 = _mm256_loadu_ps((bk) + 8);                                                     \
        _Pragma("GCC unroll 6") for (int r = 0; r < FK_CONV_A2_MR; r++) {                          \
            __m256 av = _mm256_broadcast_ss(a + r);                                                \
            c0[r] = _mm256_fmadd_ps(av, b0, c0[r]);                                                \
            c1[r] = _mm256_fmadd_ps(av, b1, c1[r]);                                                \
        }                                                                                          \
        a += FK_CONV_A2_MR;                                                                        \
    } while (0)
    if (koff) {
        for (int64_t k = 0; k < kc; k++) FK_CONV_A2_STEP(b + koff[k]);
    } else {
        for (int64_t k = 0; k < kc; k++, b += FK_CONV_A2_NR) FK_CONV_A2_STEP(b);
    }
#undef FK_CONV_A2_STEP
#pragma GCC unroll 6
    for (int r = 0; r < FK_CONV_A2_MR; r++) {
        if (r >= mr) break;
        __m256 v0 = c0[r], v1 = c1[r];
        if (bias) {
            __m256 bv = _mm256_set1_ps(bias[r]);
            v0 = _mm256_add_ps(v0, bv);
            v1 = _mm256_add_ps(v1, bv);
        }
        _mm256_maskstore_ps(c + r * ldc, m0, v0);
        _mm256_maskstore_ps(c + r * ldc + 8, m1, v1);
    }
}

/* ---- AVX-512 micro-kernel (12 × 32): 24 accumulators ----------------- */

#define FK_CONV_A5_MR 12
#define FK_CONV_A5_NR 32

__attribute__((target("avx512f"))) static void
fk_conv_ukr_avx512(int64_t kc, const float *a, const float *b, const int64_t *koff, float *c,
                   int64_t ldc, int mr, int nr, bool first, const float *bias) {
    const __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1u);
    const __mmask16 m1 = nr >= 32   ? (__mmask16)0xFFFF
                         : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1u)
                                   : (__mmask16)0;
    __m512 c0[FK_CONV_A5_MR], c1[FK_CONV_A5_MR];
#pragma GCC unroll 12
    for (int r = 0; r < FK_CONV_A5_MR; r++) {
        if (first || r >= mr) {
            c0[r] = _mm512_setzero_ps();
            c1[r] = _mm512_setzero_ps();
        } else {
            c0[r] = _mm512_maskz_loadu_ps(m0, c + r * ldc);
            c1[r] = _mm512_maskz_loadu_ps(m1, c + r * ldc + 16);
        }
    }
#define FK_CONV_A5_STEP(bk)                                                                        \
    do {                                                                                           \
        __m512 b0 = _mm512_loadu_ps(bk);                                                           \
        __m512 b1 = _mm512_loadu_ps((bk) + 16);                                                    \
        _Pragma("GCC unroll 12") for (int r = 0; r < FK_CONV_A5_MR; r++) {                         \
            __m512 av = _mm512_set1_ps(a[r]);                                                      \
            c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);                                                \
            c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);                                                \
        }                                                                                          \
        a += FK_CONV_A5_MR;                                                                        \
    } while (0)
    if (koff) {
        for (int64_t k = 0; k < kc; k++) FK_CONV_A5_STEP(b + koff[k]);
    } else {
        for (int64_t k = 0; k < kc; k++, b += FK_CONV_A5_NR) FK_CONV_A5_STEP(b);
    }
#undef FK_CONV_A5_STEP
#pragma GCC unroll 12
    for (int r = 0; r < FK_CONV_A5_MR; r++) {
        if (r >= mr) break;
        __m512 v0 = c0[r], v1 = c1[r];
        if (bias) {
            __m512 bv = _mm512_set1_ps(bias[r]);
            v0 = _mm512_add_ps(v0, bv);
            v1 = _mm512_add_ps(v1, bv);
        }
        _mm512_mask_storeu_ps(c + r * ldc, m0, v0);
        _mm512_mask_storeu_ps(c + r * ldc + 16, m1, v1);
    }
}

#endif /* FK_CONV_X86 */

typedef struct fk_conv_kernel {
    int mr, nr;
    fk_conv_ukr_fn ukr;
} fk_conv_kernel;

static fk_conv_kernel fk_conv_kernel_for(fk_cpu_isa isa) {
    fk_conv_kernel k = {FK_CONV_P_MR, FK_CONV_P_NR, fk_conv_ukr_portable};
#ifdef FK_CONV_X86
    if (isa == FK_CPU_ISA_AVX512) {
        k.mr = FK_CONV_A5_MR;
        k.nr = FK_CONV_A5_NR;
        k.ukr = fk_conv_ukr_avx512;
    } else if (isa == FK_CPU_ISA_AVX2) {
        k.mr = FK_CONV_A2_MR;
        k.nr = FK_CONV_A2_NR;
        k.ukr = fk_conv_ukr_avx2;
    }
#else
    (void)isa;
#endif
    return k;
}

/* ---- geometry and packing --------------------------------------------- */

typedef struct fk_conv_geom {
    int64_t B, Ci, H, W;  /* input (B, Ci, H, W) */
    int64_t Co, kh, kw;   /* weights (Co, Ci, kh, kw) */
    int64_t Ho, Wo;       /* output (B, Co, Ho, Wo) */
    int64_t s, top, left; /* stride, padding (bottom/right only shape Ho/Wo) */
    int64_t K, N;         /* K = Ci·kh·kw, N = Ho·Wo */
} fk_conv_geom;

/* Pack weight rows [m0, m0 + mc) × columns [k0, k0 + kc) into panels of MR
 * rows: ap[panel][kk][r] (rows beyond Co are zero). tmp: KC floats. */
static void fk_conv_pack_a(const fk_conv_geom *g, const fk_tensor *w, int mr_, int64_t m0,
                           int64_t mc, int64_t k0, int64_t kc, float *ap, float *tmp) {
    int64_t npanel = (mc + mr_ - 1) / mr_;
    for (int64_t pnl = 0; pnl < npanel; pnl++) {
        float *dst = ap + pnl * kc * mr_;
        for (int r = 0; r < mr_; r++) {
            int64_t m = m0 + pnl * mr_ + r;
            if (m >= m0 + mc || m >= g->Co) {
                for (int64_t kk = 0; kk < kc; kk++) dst[kk * mr_ + r] = 0.0f;
                continue;
            }
            /* converted in chunks of at most KC (tmp holds KC floats) */
            for (int64_t c0 = 0; c0 < kc; c0 += FK_CONV_KC) {
                const int64_t cn = kc - c0 < FK_CONV_KC ? kc - c0 : FK_CONV_KC;
                const float *src;
                if (w->dtype == FK_F32) {
                    src = (const float *)w->data + m * g->K + k0 + c0;
                } else {
                    fk_cpu_load_f32(tmp, w, m * g->K + k0 + c0, cn);
                    src = tmp;
                }
                for (int64_t kk = 0; kk < cn; kk++) dst[(c0 + kk) * mr_ + r] = src[kk];
            }
        }
    }
}

/* A run of consecutive output pixels on one output row. */
typedef struct fk_conv_run {
    int64_t oy, ox, off, len;
} fk_conv_run;

/* Pack col[b, k0 : k0+kc, p0 : p0+nc] into panels of NR pixels:
 * bp[panel][kk][j] (pixels beyond nc are zero), except the panels with
 * direct[panel] >= 0. xb: (Ci, H, W) of batch b. */
static void fk_conv_pack_b(const fk_conv_geom *g, const float *xb, int nr_, int64_t p0, int64_t nc,
                           int64_t k0, int64_t kc, const int64_t *direct, float *bp) {
    const int64_t khw = g->kh * g->kw, s = g->s, H = g->H, W = g->W;
    int64_t npanel = (nc + nr_ - 1) / nr_;
    for (int64_t pnl = 0; pnl < npanel; pnl++) {
        if (direct[pnl] >= 0) continue; /* read in place by the micro-kernel */
        float *dst0 = bp + pnl * kc * nr_;
        int64_t q0 = p0 + pnl * nr_;
        int64_t qn = p0 + nc - q0 < nr_ ? p0 + nc - q0 : nr_;
        fk_conv_run runs[FK_CONV_MAXNR];
        int nruns = 0;
        for (int64_t q = q0; q < q0 + qn;) {
            fk_conv_run r;
            r.oy = q / g->Wo;
            r.ox = q % g->Wo;
            r.off = q - q0;
            r.len = g->Wo - r.ox < q0 + qn - q ? g->Wo - r.ox : q0 + qn - q;
            runs[nruns++] = r;
            q += r.len;
        }
        int64_t ci = k0 / khw, rem = k0 % khw;
        int64_t ky = rem / g->kw, kx = rem % g->kw;
        for (int64_t kk = 0; kk < kc; kk++) {
            float *dst = dst0 + kk * nr_;
            const float *plane = xb + ci * H * W;
            for (int ri = 0; ri < nruns; ri++) {
                const fk_conv_run *r = &runs[ri];
                float *d = dst + r->off;
                int64_t iy = r->oy * s + ky - g->top;
                if (iy < 0 || iy >= H) {
                    for (int64_t t = 0; t < r->len; t++) d[t] = 0.0f;
                    continue;
                }
                const float *row = plane + iy * W;
                int64_t ix0 = r->ox * s + kx - g->left;
                /* valid t: 0 <= ix0 + t·s <= W − 1 */
                int64_t lo = ix0 >= 0 ? 0 : (-ix0 + s - 1) / s;
                int64_t hi = ix0 > W - 1 ? 0 : (W - 1 - ix0) / s + 1;
                if (lo > r->len) lo = r->len;
                if (hi > r->len) hi = r->len;
                if (hi < lo) hi = lo;
                for (int64_t t = 0; t < lo; t++) d[t] = 0.0f;
                if (s == 1) {
                    const float *src = row + ix0;
                    for (int64_t t = lo; t < hi; t++) d[t] = src[t];
                } else {
                    for (int64_t t = lo; t < hi; t++) d[t] = row[ix0 + t * s];
                }
                for (int64_t t = hi; t < r->len; t++) d[t] = 0.0f;
            }
            for (int64_t j = qn; j < nr_; j++) dst[j] = 0.0f;
            if (++kx == g->kw) {
                kx = 0;
                if (++ky == g->kh) {
                    ky = 0;
                    ci++;
                }
            }
        }
    }
}

/* Panels that the micro-kernel can read in place: stride 1, NR pixels on
 * one output row, every tap inside the input (no padding involved). Then
 * col[k, q0 + j] = xb[base + koff[k] + j] with base = (oy − top)·W + ox − left
 * and koff[k] = ci·H·W + ky·W + kx. Returns base, or −1 (pack the panel). */
static int64_t fk_conv_direct_base(const fk_conv_geom *g, int nr_, int64_t q0, int64_t q_end) {
    if (g->s != 1 || q0 + nr_ > q_end) return -1;
    const int64_t oy = q0 / g->Wo, ox = q0 % g->Wo;
    if (ox + nr_ > g->Wo) return -1;
    const int64_t iy = oy - g->top, ix = ox - g->left;
    if (iy < 0 || iy + g->kh > g->H || ix < 0 || ix + nr_ - 1 + g->kw > g->W) return -1;
    return iy * g->W + ix;
}

/* ---- conv2d ---------------------------------------------------------- */

void fk_cpu_conv2d(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                   const fk_tensor *b, int stride, const int pad[4]) {
    FK_ASSERT(y && x && w && pad);
    FK_ASSERT(x->ndim == 4 && y->ndim == 4 && w->ndim == 4);
    FK_ASSERT(x->dtype == FK_F32 && y->dtype == FK_F32 && fk_cpu_weight_dtype_ok(w->dtype));
    FK_ASSERT(stride >= 1 && pad[0] >= 0 && pad[1] >= 0 && pad[2] >= 0 && pad[3] >= 0);
    FK_ASSERT(y->data != x->data);
    fk_conv_geom g;
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
    FK_ASSERT(w->shape[1] == g.Ci && g.kh >= 1 && g.kw >= 1);
    FK_ASSERT(g.H + pad[0] + pad[2] >= g.kh && g.W + pad[1] + pad[3] >= g.kw);
    g.Ho = (g.H + pad[0] + pad[2] - g.kh) / stride + 1;
    g.Wo = (g.W + pad[1] + pad[3] - g.kw) / stride + 1;
    FK_ASSERT(y->shape[0] == g.B && y->shape[1] == g.Co && y->shape[2] == g.Ho &&
              y->shape[3] == g.Wo);
    FK_ASSERT(!b || (fk_cpu_weight_dtype_ok(b->dtype) && fk_tensor_numel(b) == g.Co));
    g.K = g.Ci * g.kh * g.kw;
    g.N = g.Ho * g.Wo;
    if (g.B == 0 || g.Co == 0 || g.N == 0) return;
    /* bf16 precision mode with AMX: cpu_conv_amx.c (else, or when it cannot
     * run, the f32 reference below) */
    if (fk_cpu_impl_of(be)->precision == FK_PREC_BF16 &&
        fk_cpu_impl_of(be)->bf16_kernel == FK_CPU_BF16_AMX && g.Ci > 0 &&
        fk_cpu_conv2d_bf16(be, y, x, w, b, stride, pad))
        return;

    const fk_conv_kernel kern = fk_conv_kernel_for(fk_cpu_impl_of(be)->isa);
    const int nt = be->n_threads > 0 ? be->n_threads : 1;
    const int64_t nc_blk = (FK_CONV_NC / kern.nr) * kern.nr;
    const int64_t mc_blk = (FK_CONV_MC / kern.mr) * kern.mr;
    const int64_t n_pblk = (g.N + nc_blk - 1) / nc_blk;
    const int64_t n_mpanel = (g.Co + kern.mr - 1) / kern.mr;
    /* Split the channels too when there are fewer pixel blocks than ~2 per
     * thread (small images): more tasks, each repacking its columns. */
    int64_t n_mgroup = 1;
    if (g.B * n_pblk < 2 * (int64_t)nt) {
        n_mgroup = (2 * (int64_t)nt + g.B * n_pblk - 1) / (g.B * n_pblk);
        if (n_mgroup > n_mpanel) n_mgroup = n_mpanel;
    }
    const int64_t n_task = g.B * n_pblk * n_mgroup;
    const float *xd = (const float *)x->data;
    float *yd = (float *)y->data;

    /* When several pixel blocks share the weights, they are packed once for
     * all tasks, [panel][K][MR] (f32). This is the op's only allocation
     * (Co·K floats, 9.4 MB for a 512 → 512 3×3 conv); without it (one pixel
     * block, or the allocation failed) every task packs its own slices into
     * its scratch instead: the same numbers, ~10% slower on large images. */
    float *apk = g.B * n_pblk > 1
                     ? fk_alloc((size_t)n_mpanel * (size_t)kern.mr * (size_t)g.K * sizeof(float))
                     : NULL;
    if (apk) {
        FK_CPU_PARALLEL_FOR(nt)
        for (int64_t pnl = 0; pnl < n_mpanel; pnl++) {
            float *tmp = fk_cpu_scratch(be, fk_cpu_thread_id());
            fk_conv_pack_a(&g, w, kern.mr, pnl * kern.mr, kern.mr, 0, g.K, apk + pnl * g.K * kern.mr, tmp);
        }
    }

    FK_CPU_PARALLEL_FOR(nt)
    for (int64_t task = 0; task < n_task; task++) {
        const int64_t mg = task % n_mgroup;
        const int64_t pb = (task / n_mgroup) % n_pblk;
        const int64_t bi = task / (n_mgroup * n_pblk);
        const int64_t p0 = pb * nc_blk;
        const int64_t nc = g.N - p0 < nc_blk ? g.N - p0 : nc_blk;
        /* this group's output channels: panels [pa, pz) */
        const int64_t pa = mg * n_mpanel / n_mgroup, pz = (mg + 1) * n_mpanel / n_mgroup;
        const int64_t m_lo = pa * kern.mr;
        const int64_t m_hi = pz * kern.mr < g.Co ? pz * kern.mr : g.Co;

        float *scr = fk_cpu_scratch(be, fk_cpu_thread_id());
        float *bp = scr;                                  /* (KC, NC) packed columns */
        float *ap = bp + (size_t)FK_CONV_NC * FK_CONV_KC; /* (MC, KC) packed weights */
        float *tmp = ap + (size_t)FK_CONV_MC * FK_CONV_KC; /* (KC) one weight row */
        const float *xb = xd + bi * g.Ci * g.H * g.W;
        float *yb = yd + bi * g.Co * g.N;

        int64_t direct[FK_CONV_NC / FK_CONV_P_NR];
        int64_t koff[FK_CONV_KC];
        const int64_t npanel = (nc + kern.nr - 1) / kern.nr;
        int64_t n_direct = 0;
        for (int64_t j = 0; j < npanel; j++) {
            direct[j] = fk_conv_direct_base(&g, kern.nr, p0 + j * kern.nr, p0 + nc);
            n_direct += direct[j] >= 0;
        }
        for (int64_t k0 = 0; k0 < g.K; k0 += FK_CONV_KC) {
            const int64_t kc = g.K - k0 < FK_CONV_KC ? g.K - k0 : FK_CONV_KC;
            const bool first = k0 == 0, last = k0 + kc == g.K;
            if (n_direct < npanel) fk_conv_pack_b(&g, xb, kern.nr, p0, nc, k0, kc, direct, bp);
            if (n_direct > 0) {
                /* koff[kk] = ci·H·W + ky·W + kx for k = k0 + kk = (ci, ky, kx) */
                const int64_t khw = g.kh * g.kw;
                int64_t ci = k0 / khw, ky = (k0 % khw) / g.kw, kx = k0 % g.kw;
                for (int64_t kk = 0; kk < kc; kk++) {
                    koff[kk] = ci * g.H * g.W + ky * g.W + kx;
                    if (++kx == g.kw) {
                        kx = 0;
                        if (++ky == g.kh) {
                            ky = 0;
                            ci++;
                        }
                    }
                }
            }
            for (int64_t m0 = m_lo; m0 < m_hi; m0 += mc_blk) {
                const int64_t mc = m_hi - m0 < mc_blk ? m_hi - m0 : mc_blk;
                if (!apk) fk_conv_pack_a(&g, w, kern.mr, m0, mc, k0, kc, ap, tmp);
                for (int64_t mi = 0; mi < mc; mi += kern.mr) {
                    const int mr = (int)(mc - mi < kern.mr ? mc - mi : kern.mr);
                    float biasv[FK_CONV_MAXMR];
                    const float *bias = NULL;
                    if (last && b) {
                        fk_cpu_load_f32(biasv, b, m0 + mi, mr);
                        bias = biasv;
                    }
                    const float *apn = apk ? apk + ((m0 + mi) / kern.mr) * g.K * kern.mr + k0 * kern.mr
                                           : ap + (mi / kern.mr) * kc * kern.mr;
                    for (int64_t j = 0; j < nc; j += kern.nr) {
                        const int nr = (int)(nc - j < kern.nr ? nc - j : kern.nr);
                        const int64_t jp = j / kern.nr;
                        float *cp = yb + (m0 + mi) * g.N + p0 + j;
                        if (direct[jp] >= 0)
                            kern.ukr(kc, apn, xb + direct[jp], koff, cp, g.N, mr, nr, first, bias);
                        else
                            kern.ukr(kc, apn, bp + jp * kc * kern.nr, NULL, cp, g.N, mr, nr, first, bias);
                    }
                }
            }
        }
    }
    fk_free(apk);
}

/* ---- group_norm ------------------------------------------------------ */

void fk_cpu_group_norm(fk_backend *be, fk_tensor *y, const fk_tensor *x, int groups,
                       const fk_tensor *w, const fk_tensor *b, float eps) {
    FK_ASSERT(y && x && x->ndim >= 2 && x->dtype == FK_F32 && y->dtype == FK_F32);
    FK_ASSERT(fk_tensor_same_shape(x, y));
    const int64_t B = x->shape[0], C = x->shape[1];
    FK_ASSERT(groups >= 1 && C % groups == 0);
    FK_ASSERT(!w || (fk_cpu_weight_dtype_ok(w->dtype) && fk_tensor_numel(w) == C));
    FK_ASSERT(!b || (fk_cpu_weight_dtype_ok(b->dtype) && fk_tensor_numel(b) == C));
    int64_t HW = 1;
    for (int i = 2; i < x->ndim; i++) HW *= x->shape[i];
    const int64_t cpg = C / groups, n = cpg * HW;
    const int64_t n_task = B * groups;
    const int nt = be->n_threads > 0 ? be->n_threads : 1;
    const float *xd = (const float *)x->data;
    float *yd = (float *)y->data;

    FK_CPU_PARALLEL_FOR(nt)
    for (int64_t task = 0; task < n_task; task++) {
        const int64_t gi = task % groups;
        const float *xg = xd + task * n; /* (cpg, HW), contiguous in NCHW */
        float *yg = yd + task * n;
        double part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        int64_t i = 0;
        for (; i + 8 <= n; i += 8)
            for (int l = 0; l < 8; l++) part[l] += (double)xg[i + l];
        double sum = 0;
        for (; i < n; i++) sum += (double)xg[i];
        for (int l = 0; l < 8; l++) sum += part[l];
        const double mean = n > 0 ? sum / (double)n : 0.0;
        for (int l = 0; l < 8; l++) part[l] = 0;
        for (i = 0; i + 8 <= n; i += 8)
            for (int l = 0; l < 8; l++) {
                double d = (double)xg[i + l] - mean;
                part[l] += d * d;
            }
        double ss = 0;
        for (; i < n; i++) {
            double d = (double)xg[i] - mean;
            ss += d * d;
        }
        for (int l = 0; l < 8; l++) ss += part[l];
        const double var = n > 0 ? ss / (double)n : 0.0;
        const double rstd = 1.0 / sqrt(var + (double)eps);
        for (int64_t c = 0; c < cpg; c++) {
            const int64_t ch = gi * cpg + c;
            float wv = 1.0f, bv = 0.0f;
            if (w) fk_cpu_load_f32(&wv, w, ch, 1);
            if (b) fk_cpu_load_f32(&bv, b, ch, 1);
            const float m = (float)mean;
            const float sc = (float)(rstd * (double)wv);
            const float *xc = xg + c * HW;
            float *yc = yg + c * HW;
            for (int64_t p = 0; p < HW; p++) yc[p] = (xc[p] - m) * sc + bv;
        }
    }
}

/* ---- upsample_nearest2x ---------------------------------------------- */

void fk_cpu_upsample_nearest2x(fk_backend *be, fk_tensor *y, const fk_tensor *x) {
    FK_ASSERT(y && x && x->ndim == 4 && y->ndim == 4);
    FK_ASSERT(x->dtype == FK_F32 && y->dtype == FK_F32 && y->data != x->data);
    const int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    FK_ASSERT(y->shape[0] == B && y->shape[1] == C && y->shape[2] == 2 * H &&
              y->shape[3] == 2 * W);
    const int64_t n_plane = B * C;
    const int nt = be->n_threads > 0 ? be->n_threads : 1;
    const float *xd = (const float *)x->data;
    float *yd = (float *)y->data;

    FK_CPU_PARALLEL_FOR(nt)
    for (int64_t pl = 0; pl < n_plane; pl++) {
        const float *xp = xd + pl * H * W;
        float *yp = yd + pl * 4 * H * W;
        for (int64_t i = 0; i < H; i++) {
            float *r0 = yp + (2 * i) * (2 * W);
            const float *xr = xp + i * W;
            for (int64_t j = 0; j < W; j++) {
                r0[2 * j] = xr[j];
                r0[2 * j + 1] = xr[j];
            }
            memcpy(r0 + 2 * W, r0, (size_t)(2 * W) * sizeof(float));
        }
    }
}
