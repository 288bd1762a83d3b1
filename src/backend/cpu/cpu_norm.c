/* cpu_norm: layernorm, rmsnorm and softmax over the last dim (fp32
 * reference), and the fused layernorm_modulate and rmsnorm_rope. Row
 * statistics accumulate in double with eight partial sums (element c goes
 * to sum c mod 8, the partials are added in a fixed order), so a row's
 * result depends only on the row. Rows are independent: parallel over
 * blocks of rows (the SIMD statistics interleave a block's rows).
 * The loops here are the portable path; with the AVX2 / AVX-512 ISA the
 * rows run the kernels of cpu_ew_x86.c (same bits, see cpu_ew.h). */
#include "backend/cpu/cpu_ew.h"

#include <math.h>

#define FK_NORM_CHUNK 1024 /* columns of a converted w/b chunk */

/* Threads for `rows` rows of `cols` elements: 1 when the work is tiny. */
static int fk_norm_threads(const fk_backend *be, int64_t rows, int64_t cols) {
    if (rows < 2 || rows * cols < 32768) return 1;
    return be->n_threads;
}

/* Rows per parallel block: FK_EW_STAT_ROWS when there are enough blocks for
 * every thread, else 1. Any value gives the same bits. */
static int64_t fk_norm_block_rows(int64_t rows, int nt) {
    return rows >= (int64_t)nt * FK_EW_STAT_ROWS * 4 ? FK_EW_STAT_ROWS : 1;
}

/* ---- row statistics (portable) ---- */

static double fk_sum_f64(const float *x, int64_t n) {
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) s[j] += (double)x[i + j];
    for (int j = 0; i < n; i++, j++) s[j] += (double)x[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* Σ (x - mean)² */
static double fk_sqdev_f64(const float *x, int64_t n, double mean) {
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) {
            double d = (double)x[i + j] - mean;
            s[j] += d * d;
        }
    for (int j = 0; i < n; i++, j++) {
        double d = (double)x[i] - mean;
        s[j] += d * d;
    }
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* Σ x² */
static double fk_sumsq_f64(const float *x, int64_t n) {
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) s[j] += (double)x[i + j] * (double)x[i + j];
    for (int j = 0; i < n; i++, j++) s[j] += (double)x[i] * (double)x[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* A statistic of nr rows x (nr, ld), n columns each (see fk_ew_kernels.stats). */
static void fk_norm_stats(const fk_ew_kernels *k, fk_ew_stat kind, const float *x, int64_t ld,
                          int nr, int64_t n, const double *mean, double *out) {
    if (k) {
        k->stats(kind, x, ld, nr, n, mean, out);
        return;
    }
    for (int r = 0; r < nr; r++) {
        const float *xr = x + r * ld;
        out[r] = kind == FK_EW_SUM     ? fk_sum_f64(xr, n)
                 : kind == FK_EW_SQDEV ? fk_sqdev_f64(xr, n, mean[r])
                                       : fk_sumsq_f64(xr, n);
    }
}

/* LayerNorm statistics of nr rows x (nr, C): mean and 1/√(var + eps). */
static void fk_ln_stats(const fk_ew_kernels *k, const float *x, int64_t C, int nr, float eps,
                        double *mean, double *rstd) {
    double s[FK_EW_STAT_ROWS] = {0}, v[FK_EW_STAT_ROWS] = {0};
    if (C) {
        fk_norm_stats(k, FK_EW_SUM, x, C, nr, C, NULL, s);
        for (int r = 0; r < nr; r++) mean[r] = s[r] / (double)C;
        fk_norm_stats(k, FK_EW_SQDEV, x, C, nr, C, mean, v);
    }
    for (int r = 0; r < nr; r++) {
        if (!C) mean[r] = 0.0;
        double var = C ? v[r] / (double)C : 0.0;
        rstd[r] = 1.0 / sqrt(var + (double)eps);
    }
}

/* 1 / rms of nr rows x (nr, C) (eps inside the root) */
static void fk_rms_stats(const fk_ew_kernels *k, const float *x, int64_t C, int nr, float eps,
                         double *rinv) {
    double ss[FK_EW_STAT_ROWS];
    fk_norm_stats(k, FK_EW_SUMSQ, x, C, nr, C, NULL, ss);
    for (int r = 0; r < nr; r++) rinv[r] = 1.0 / sqrt((C ? ss[r] / (double)C : 0.0) + (double)eps);
}

/* ---- parameters (w, b, scale) ---- */

/* Columns [c0, c0+n) of a 1-D parameter as f32: the data itself when it is
 * f32, else converted into buf (n <= FK_NORM_CHUNK). */
static const float *fk_param_chunk(const fk_tensor *t, int64_t c0, int64_t n, float *buf) {
    if (t->dtype == FK_F32) return (const float *)t->data + c0;
    fk_cpu_load_f32(buf, t, c0, n);
    return buf;
}

/* The parameters of one call (up to two, each (C) or NULL) as f32 for all
 * rows: the data itself when f32, else converted once into the scratch of
 * thread 0 (read-only during the parallel loop; the conversion is exact and
 * per element, so the values equal fk_param_chunk's). `whole` false when
 * they do not fit the scratch: then each row converts chunks of
 * FK_NORM_CHUNK columns with fk_param_chunk. */
typedef struct fk_norm_params {
    const float *p[2]; /* (C) each, or NULL */
    bool whole;
} fk_norm_params;

static fk_norm_params fk_norm_params_get(const fk_backend *be, int64_t C, const fk_tensor *t0,
                                         const fk_tensor *t1) {
    fk_norm_params r = {{NULL, NULL}, true};
    const fk_tensor *t[2] = {t0, t1};
    int64_t need = 0;
    for (int i = 0; i < 2; i++)
        if (t[i] && t[i]->dtype != FK_F32) need += C;
    if (need > (int64_t)FK_CPU_SCRATCH_FLOATS) {
        r.whole = false;
        return r;
    }
    float *buf = need ? fk_cpu_scratch(be, 0) : NULL;
    for (int i = 0; i < 2; i++) {
        if (!t[i]) continue;
        if (t[i]->dtype == FK_F32) {
            r.p[i] = t[i]->data;
        } else {
            fk_cpu_load_f32(buf, t[i], 0, C);
            r.p[i] = buf;
            buf += C;
        }
    }
    return r;
}

/* Columns [c0, c0+n) of parameter i (tensor t) of a call; NULL when absent. */
static const float *fk_norm_param_cols(const fk_norm_params *np, const fk_tensor *t, int i,
                                       int64_t c0, int64_t n, float *buf) {
    if (!t) return NULL;
    return np->whole ? np->p[i] + c0 : fk_param_chunk(t, c0, n, buf);
}

/* ---- layernorm ---- */

void fk_cpu_layernorm(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                      const fk_tensor *b, float eps) {
    FK_ASSERT(x->dtype == FK_F32 && y->dtype == FK_F32);
    int64_t M = fk_tensor_rows(x), C = fk_tensor_cols(x); /* x, y (M, C) */
    FK_ASSERT(fk_tensor_rows(y) == M && fk_tensor_cols(y) == C);
    if (w) FK_ASSERT(fk_tensor_numel(w) == C && fk_cpu_weight_dtype_ok(w->dtype)); /* w (C) */
    if (b) FK_ASSERT(fk_tensor_numel(b) == C && fk_cpu_weight_dtype_ok(b->dtype)); /* b (C) */
    const float *xd = x->data;
    float *yd = y->data;
    const fk_ew_kernels *k = fk_ew_kernels_of(fk_cpu_impl_of(be)->isa);
    fk_norm_params np = fk_norm_params_get(be, C, w, b);
    const int64_t chunk = np.whole ? (C > 0 ? C : 1) : FK_NORM_CHUNK;
    int nt = fk_norm_threads(be, M, C);
    const int64_t rb = fk_norm_block_rows(M, nt), nblk = (M + rb - 1) / rb;
    FK_CPU_PARALLEL_FOR(nt)
    for (int64_t blk = 0; blk < nblk; blk++) {
        int64_t m0 = blk * rb;
        int nr = (int)(M - m0 < rb ? M - m0 : rb);
        double mean[FK_EW_STAT_ROWS], rstd[FK_EW_STAT_ROWS];
        fk_ln_stats(k, xd + m0 * C, C, nr, eps, mean, rstd);
        for (int ri = 0; ri < nr; ri++) {
            const float *xr = xd + (m0 + ri) * C;
            float *yr = yd + (m0 + ri) * C;
            float wbuf[FK_NORM_CHUNK], bbuf[FK_NORM_CHUNK];
            for (int64_t c0 = 0; c0 < C; c0 += chunk) {
                int64_t n = C - c0 < chunk ? C - c0 : chunk;
                const float *wc = fk_norm_param_cols(&np, w, 0, c0, n, wbuf);
                const float *bc = fk_norm_param_cols(&np, b, 1, c0, n, bbuf);
                if (k) {
                    k->ln_out(yr + c0, xr + c0, n, mean[ri], rstd[ri], wc, bc);
                    continue;
                }
                for (int64_t i = 0; i < n; i++) {
                    float v = (float)(((double)xr[c0 + i] - mean[ri]) * rstd[ri]);
                    if (wc) v = v * wc[i];
                    if (bc) v = v + bc[i];
                    yr[c0 + i] = v;
                }
            }
        }
    }
}

/* One row of layernorm_modulate: y (n) = (1 + sc)·(float)((x − mean)·rstd) + sh. */
static void fk_ln_mod_row(const fk_ew_kernels *k, float *y, const float *x, int64_t n,
                          double mean, double rstd, const float *sh, const float *sc) {
    if (k) {
        k->ln_mod_out(y, x, n, mean, rstd, sh, sc);
        return;
    }
    for (int64_t c = 0; c < n; c++) {
        float v = (float)(((double)x[c] - mean) * rstd);
        y[c] = (1.0f + sc[c]) * v + sh[c];
    }
}

/* y = (1 + scale)·LayerNorm(x) + shift, one pass per row: the statistics
 * (as layernorm), then the normalized value (as layernorm without affine
 * writes it) modulated (as modulate computes it) and stored once. A bf16 y
 * (bf16 activations, fk_cpu_bf16_io_ok): the f32 row, FK_NORM_CHUNK columns
 * at a time, rounded as the bf16 products round their inputs. */
void fk_cpu_layernorm_modulate(fk_backend *be, fk_tensor *y, const fk_tensor *x,
                               const fk_tensor *shift, const fk_tensor *scale, float eps) {
    const bool ybf = y->dtype == FK_BF16;
    FK_ASSERT(x->dtype == FK_F32 && (y->dtype == FK_F32 || ybf) && shift->dtype == FK_F32 &&
              scale->dtype == FK_F32);
    if (ybf) FK_ASSERT(fk_cpu_bf16_io_ok(be, fk_tensor_rows(x))); /* what supports() promised */
    int64_t R = fk_tensor_rows(x), C = fk_tensor_cols(x); /* x, y (B·T, C) */
    int64_t B = fk_tensor_rows(shift);                    /* shift, scale (B, C) */
    FK_ASSERT(fk_tensor_rows(y) == R && fk_tensor_cols(y) == C);
    FK_ASSERT(fk_tensor_cols(shift) == C && fk_tensor_rows(scale) == B &&
              fk_tensor_cols(scale) == C);
    FK_ASSERT(B > 0 && R % B == 0);
    int64_t T = R / B;
    const float *xd = x->data, *sh = shift->data, *sc = scale->data;
    const fk_ew_kernels *k = fk_ew_kernels_of(fk_cpu_impl_of(be)->isa);
    int nt = fk_norm_threads(be, R, C);
    const int64_t rb = fk_norm_block_rows(R, nt), nblk = (R + rb - 1) / rb;
    FK_CPU_PARALLEL_FOR(nt)
    for (int64_t blk = 0; blk < nblk; blk++) {
        int64_t r0 = blk * rb;
        int nr = (int)(R - r0 < rb ? R - r0 : rb);
        double mean[FK_EW_STAT_ROWS], rstd[FK_EW_STAT_ROWS];
        fk_ln_stats(k, xd + r0 * C, C, nr, eps, mean, rstd);
        for (int ri = 0; ri < nr; ri++) {
            int64_t r = r0 + ri;
            const float *xr = xd + r * C;
            const float *shr = sh + (r / T) * C, *scr = sc + (r / T) * C; /* (C) */
            if (!ybf) {
                fk_ln_mod_row(k, (float *)y->data + r * C, xr, C, mean[ri], rstd[ri], shr, scr);
                continue;
            }
            uint16_t *yr = (uint16_t *)y->data + r * C;
            float buf[FK_NORM_CHUNK];
            for (int64_t c0 = 0; c0 < C; c0 += FK_NORM_CHUNK) {
                int64_t n = C - c0 < FK_NORM_CHUNK ? C - c0 : FK_NORM_CHUNK;
                fk_ln_mod_row(k, buf, xr + c0, n, mean[ri], rstd[ri], shr + c0, scr + c0);
                if (y->layout == FK_LAYOUT_TILES)
                    fk_cpu_tile_row(y, r, c0, buf, n);
                else
                    fk_cpu_bf16_round_row(yr + c0, buf, n);
            }
        }
    }
}

/* ---- rmsnorm ---- */

/* y = (float)(x·r)·scale over n columns: x·rrms rounded to f32, then times
 * the scale (the reference order) */
static void fk_rms_out(const fk_ew_kernels *k, float *y, const float *x, int64_t n, double r,
                       const float *sc) {
    if (k) {
        k->rms_out(y, x, n, r, sc);
        return;
    }
    for (int64_t i = 0; i < n; i++) y[i] = (float)((double)x[i] * r) * sc[i];
}

void fk_cpu_rmsnorm(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *scale,
                    float eps) {
    FK_ASSERT(x->dtype == FK_F32 && y->dtype == FK_F32);
    int64_t M = fk_tensor_rows(x), C = fk_tensor_cols(x); /* x, y (M, C) */
    FK_ASSERT(fk_tensor_rows(y) == M && fk_tensor_cols(y) == C);
    FK_ASSERT(scale && fk_tensor_numel(scale) == C &&
              fk_cpu_weight_dtype_ok(scale->dtype)); /* (C) */
    const float *xd = x->data;
    float *yd = y->data;
    const fk_ew_kernels *k = fk_ew_kernels_of(fk_cpu_impl_of(be)->isa);
    fk_norm_params np = fk_norm_params_get(be, C, scale, NULL);
    const int64_t chunk = np.whole ? (C > 0 ? C : 1) : FK_NORM_CHUNK;
    int nt = fk_norm_threads(be, M, C);
    const int64_t rb = fk_norm_block_rows(M, nt), nblk = (M + rb - 1) / rb;
    FK_CPU_PARALLEL_FOR(nt)
    for (int64_t blk = 0; blk < nblk; blk++) {
        int64_t m0 = blk * rb;
        int nr = (int)(M - m0 < rb ? M - m0 : rb);
        double rinv[FK_EW_STAT_ROWS];
        fk_rms_stats(k, xd + m0 * C, C, nr, eps, rinv);
        for (int ri = 0; ri < nr; ri++) {
            const float *xr = xd + (m0 + ri) * C;
            float *yr = yd + (m0 + ri) * C;
            float sbuf[FK_NORM_CHUNK];
            for (int64_t c0 = 0; c0 < C; c0 += chunk) {
                int64_t n = C - c0 < chunk ? C - c0 : chunk;
                fk_rms_out(k, yr + c0, xr + c0, n, rinv[ri],
                           fk_norm_param_cols(&np, scale, 0, c0, n, sbuf));
            }
        }
    }
}

void fk_cpu_rmsnorm_rope_heads(const fk_ew_kernels *k, float *y, const float *x, int nh,
                               int64_t D, float eps, const float *scale, const float *ab) {
    FK_ASSERT(k && nh >= 1 && nh <= FK_EW_STAT_ROWS && D <= FK_EW_ROPE_MAX_D);
    double rinv[FK_EW_STAT_ROWS];
    fk_rms_stats(k, x, D, nh, eps, rinv); /* every row's before any is written (y may be x) */
    for (int ri = 0; ri < nh; ri++) k->rms_rope(y + ri * D, x + ri * D, D, rinv[ri], scale, ab);
}

/* QK norm then RoPE, one pass per (l, h) row: the row's RMS (as rmsnorm),
 * the normalized and scaled values (as rmsnorm writes them) rotated in
 * registers (as rope computes it) and stored once. Parallel over positions
 * l (the H rows of one l share its rotation), statistics of up to
 * FK_EW_STAT_ROWS heads at once. y may alias x. A bf16 y (attention's q or
 * k, fk_cpu_bf16_attention_io_ok): each f32 row, or FK_NORM_CHUNK columns
 * of it, rounded as the attention rounds its f32 q and k. */
void fk_cpu_rmsnorm_rope(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *scale,
                         const fk_tensor *pe, float eps) {
    const bool ybf = y->dtype == FK_BF16;
    FK_ASSERT(x->dtype == FK_F32 && (y->dtype == FK_F32 || ybf) && pe->dtype == FK_F32);
    FK_ASSERT(x->ndim == 3 && fk_tensor_same_shape(x, y)); /* x, y (L, H, D) */
    if (ybf) FK_ASSERT(fk_cpu_bf16_attention_io_ok(be, y) && y->data != x->data);
    int64_t L = x->shape[0], H = x->shape[1], D = x->shape[2];
    FK_ASSERT(D % 2 == 0);
    FK_ASSERT(scale && fk_tensor_numel(scale) == D &&
              fk_cpu_weight_dtype_ok(scale->dtype)); /* (D) */
    /* pe (L, D/2, 2, 2), possibly with leading 1s: (1, 1, L, D/2, 2, 2) */
    FK_ASSERT(pe->ndim >= 3 && pe->shape[pe->ndim - 1] == 2 && pe->shape[pe->ndim - 2] == 2 &&
              pe->shape[pe->ndim - 3] == D / 2 && fk_tensor_numel(pe) == L * D * 2);
    const float *xd = x->data, *pd = pe->data;
    const fk_ew_kernels *k = fk_ew_kernels_of(fk_cpu_impl_of(be)->isa);
    fk_norm_params np = fk_norm_params_get(be, D, scale, NULL);
    const int64_t chunk = np.whole ? (D > 0 ? D : 1) : FK_NORM_CHUNK;
    /* the SIMD kernel rotates with the (2, D) form of pe[l], built once per l */
    const bool fused = k && np.whole && D <= FK_EW_ROPE_MAX_D;
    int nt = fk_norm_threads(be, L * H, D);
    (void)nt;
    FK_CPU_PARALLEL_FOR(nt)
    for (int64_t l = 0; l < L; l++) {
        const float *pl = pd + l * D * 2; /* (D/2, 2, 2) */
        float ab[2 * FK_EW_ROPE_MAX_D];   /* (2, D) */
        if (fused) fk_ew_rope_ab(pl, D, ab);
        for (int64_t h0 = 0; h0 < H; h0 += FK_EW_STAT_ROWS) {
            int nr = (int)(H - h0 < FK_EW_STAT_ROWS ? H - h0 : FK_EW_STAT_ROWS);
            const float *x0 = xd + (l * H + h0) * D; /* (nr, D) */
            if (fused) { /* the rows of the products' fused store (linear_rmsnorm_rope) */
                const int64_t o = (l * H + h0) * D;
                float hb[FK_EW_STAT_ROWS * FK_EW_ROPE_MAX_D];
                fk_cpu_rmsnorm_rope_heads(k, ybf ? hb : (float *)y->data + o, x0, nr, D, eps,
                                          np.p[0], ab);
                if (ybf) fk_cpu_bf16_round_row((uint16_t *)y->data + o, hb, nr * D);
                continue;
            }
            double rinv[FK_EW_STAT_ROWS];
            fk_rms_stats(k, x0, D, nr, eps, rinv);
            for (int ri = 0; ri < nr; ri++) {
                const int64_t o = (l * H + h0 + ri) * D;
                const float *xr = x0 + ri * D; /* (D) */
                float buf[FK_NORM_CHUNK];
                float sbuf[FK_NORM_CHUNK];
                /* chunks of even length (D even): each one's pairs rotated
                 * with their own rows of pe (4 floats per pair); a bf16 y
                 * goes through buf, FK_NORM_CHUNK columns at a time */
                const int64_t cn = ybf ? FK_NORM_CHUNK : chunk;
                for (int64_t c0 = 0; c0 < D; c0 += cn) {
                    int64_t n = D - c0 < cn ? D - c0 : cn;
                    float *yc = ybf ? buf : (float *)y->data + o + c0;
                    fk_rms_out(k, yc, xr + c0, n, rinv[ri],
                               fk_norm_param_cols(&np, scale, 0, c0, n, sbuf));
                    fk_ew_rope_row(yc, pl + 2 * c0, n);
                    if (ybf) fk_cpu_bf16_round_row((uint16_t *)y->data + o + c0, buf, n);
                }
            }
        }
    }
}

/* ---- softmax ---- */

void fk_cpu_softmax(fk_backend *be, fk_tensor *y, const fk_tensor *x) {
    FK_ASSERT(x->dtype == FK_F32 && y->dtype == FK_F32);
    int64_t M = fk_tensor_rows(x), C = fk_tensor_cols(x); /* x, y (M, C) */
    FK_ASSERT(fk_tensor_rows(y) == M && fk_tensor_cols(y) == C);
    const float *xd = x->data;
    float *yd = y->data;
    const fk_ew_kernels *k = fk_ew_kernels_of(fk_cpu_impl_of(be)->isa);
    int nt = fk_norm_threads(be, M, C);
    (void)nt;
    FK_CPU_PARALLEL_FOR(nt)
    for (int64_t m = 0; m < M; m++) {
        const float *xr = xd + m * C;
        float *yr = yd + m * C;
        float mx = -INFINITY;
        if (k)
            mx = k->max(xr, C);
        else
            for (int64_t i = 0; i < C; i++) mx = xr[i] > mx ? xr[i] : mx;
        /* libm expf (not fk_cpu_exp) on every path: its bits have no SIMD twin */
        for (int64_t i = 0; i < C; i++) yr[i] = expf(xr[i] - mx);
        double sum;
        fk_norm_stats(k, FK_EW_SUM, yr, C, 1, C, NULL, &sum);
        if (k)
            k->div(yr, C, sum);
        else
            for (int64_t i = 0; i < C; i++) yr[i] = (float)((double)yr[i] / sum);
    }
}
