/* cpu_norm: layernorm, rmsnorm and softmax over the last dim (fp32 reference).
 * Row statistics accumulate in double with eight partial sums (element c goes
 * to sum c mod 8, the partials are added in a fixed order), so a row's result
 * depends only on the row. Rows are independent: parallel over rows. */
#include "backend/cpu/cpu.h"

#include <math.h>

#define FK_NORM_CHUNK 1024 /* columns of a converted w/b chunk */

/* Threads for `rows` rows of `cols` elements: 1 when the work is tiny. */
static int fk_norm_threads(const fk_backend *be, int64_t rows, int64_t cols) {
    if (rows < 2 || rows * cols < 32768) return 1;
    return be->n_threads;
}

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

/* Columns [c0, c0+n) of a 1-D parameter as f32: the data itself when it is
 * f32, else converted into buf (n <= FK_NORM_CHUNK). */
static const float *fk_param_chunk(const fk_tensor *t, int64_t c0, int64_t n, float *buf) {
    if (t->dtype == FK_F32) return (const float *)t->data + c0;
    fk_cpu_load_f32(buf, t, c0, n);
    return buf;
}

void fk_cpu_layernorm(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                      const fk_tensor *b, float eps) {
    FK_ASSERT(x->dtype == FK_F32 && y->dtype == FK_F32);
    int64_t M = fk_tensor_rows(x), C = fk_tensor_cols(x); /* x, y (M, C) */
    FK_ASSERT(fk_tensor_rows(y) == M && fk_tensor_cols(y) == C);
    if (w) FK_ASSERT(fk_tensor_numel(w) == C && fk_cpu_weight_dtype_ok(w->dtype)); /* w (C) */
    if (b) FK_ASSERT(fk_tensor_numel(b) == C && fk_cpu_weight_dtype_ok(b->dtype)); /* b (C) */
    const float *xd = x->data;
    float *yd = y->data;
    int nt = fk_norm_threads(be, M, C);
    (void)nt;
    FK_CPU_PARALLEL_FOR(nt)
    for (int64_t m = 0; m < M; m++) {
        const float *xr = xd + m * C;
        float *yr = yd + m * C;
        double mean = C ? fk_sum_f64(xr, C) / (double)C : 0.0;
        double var = C ? fk_sqdev_f64(xr, C, mean) / (double)C : 0.0;
        double rstd = 1.0 / sqrt(var + (double)eps);
        float wbuf[FK_NORM_CHUNK], bbuf[FK_NORM_CHUNK];
        for (int64_t c0 = 0; c0 < C; c0 += FK_NORM_CHUNK) {
            int64_t n = C - c0 < FK_NORM_CHUNK ? C - c0 : FK_NORM_CHUNK;
            const float *wc = w ? fk_param_chunk(w, c0, n, wbuf) : NULL;
            const float *bc = b ? fk_param_chunk(b, c0, n, bbuf) : NULL;
            for (int64_t i = 0; i < n; i++) {
                float v = (float)(((double)xr[c0 + i] - mean) * rstd);
                if (wc) v = v * wc[i];
                if (bc) v = v + bc[i];
                yr[c0 + i] = v;
            }
        }
    }
}

void fk_cpu_rmsnorm(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *scale,
                    float eps) {
    FK_ASSERT(x->dtype == FK_F32 && y->dtype == FK_F32);
    int64_t M = fk_tensor_rows(x), C = fk_tensor_cols(x); /* x, y (M, C) */
    FK_ASSERT(fk_tensor_rows(y) == M && fk_tensor_cols(y) == C);
    FK_ASSERT(scale && fk_tensor_numel(scale) == C && fk_cpu_weight_dtype_ok(scale->dtype)); /* (C) */
    const float *xd = x->data;
    float *yd = y->data;
    int nt = fk_norm_threads(be, M, C);
    (void)nt;
    FK_CPU_PARALLEL_FOR(nt)
    for (int64_t m = 0; m < M; m++) {
        const float *xr = xd + m * C;
        float *yr = yd + m * C;
        double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        int64_t i = 0;
        for (; i + 8 <= C; i += 8)
            for (int j = 0; j < 8; j++) s[j] += (double)xr[i + j] * (double)xr[i + j];
        for (int j = 0; i < C; i++, j++) s[j] += (double)xr[i] * (double)xr[i];
        double ss = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
        double r = 1.0 / sqrt((C ? ss / (double)C : 0.0) + (double)eps);
        float sbuf[FK_NORM_CHUNK];
        for (int64_t c0 = 0; c0 < C; c0 += FK_NORM_CHUNK) {
            int64_t n = C - c0 < FK_NORM_CHUNK ? C - c0 : FK_NORM_CHUNK;
            const float *sc = fk_param_chunk(scale, c0, n, sbuf);
            /* x·rrms rounded to f32, then times the scale (the reference order) */
            for (int64_t k = 0; k < n; k++) yr[c0 + k] = (float)((double)xr[c0 + k] * r) * sc[k];
        }
    }
}

void fk_cpu_softmax(fk_backend *be, fk_tensor *y, const fk_tensor *x) {
    FK_ASSERT(x->dtype == FK_F32 && y->dtype == FK_F32);
    int64_t M = fk_tensor_rows(x), C = fk_tensor_cols(x); /* x, y (M, C) */
    FK_ASSERT(fk_tensor_rows(y) == M && fk_tensor_cols(y) == C);
    const float *xd = x->data;
    float *yd = y->data;
    int nt = fk_norm_threads(be, M, C);
    (void)nt;
    FK_CPU_PARALLEL_FOR(nt)
    for (int64_t m = 0; m < M; m++) {
        const float *xr = xd + m * C;
        float *yr = yd + m * C;
        float mx = -INFINITY;
        for (int64_t i = 0; i < C; i++) mx = xr[i] > mx ? xr[i] : mx;
        for (int64_t i = 0; i < C; i++) yr[i] = expf(xr[i] - mx);
        double sum = fk_sum_f64(yr, C);
        for (int64_t i = 0; i < C; i++) yr[i] = (float)((double)yr[i] / sum);
    }
}
