/* cpu_elementwise: activations, add/mul, adaLN modulation, gated residual,
 * RoPE and row/column copies (fp32 reference). Each output element is a
 * function of its inputs only, computed in f32 in the order the reference
 * writes it; parallel over independent chunks. */
#include "backend/cpu/cpu.h"

#include <math.h>
#include <string.h>

#define FK_EW_CHUNK 16384 /* elements per parallel chunk */

static int fk_ew_threads(const fk_backend *be, int64_t n) {
    return n < 2 * FK_EW_CHUNK ? 1 : be->n_threads;
}

/* ---- activations: y = f(x), any shape, y may alias x ----
 * All three are x·σ(z) = x / (1 + e^(−z)) with e^ from fk_cpu_exp (branch
 * free: the loops vectorize), z = x (silu), 1.702·x (gelu_quick) and
 * 2·√(2/π)·(x + 0.044715·x³) (gelu_tanh: 0.5·(1 + tanh(u)) = σ(2u) exactly,
 * and the σ form does not cancel for x << 0 as 1 + tanh does). */

static inline float fk_sigmoid_mul(float x, float z) { return x / (1.0f + fk_cpu_exp(-z)); }

static inline float fk_silu1(float x) { return fk_sigmoid_mul(x, x); }

static inline float fk_gelu_tanh1(float x) {
    const float two_beta = 1.5957691216057308f; /* 2·√(2/π) */
    const float kappa = 0.044715f;
    return fk_sigmoid_mul(x, two_beta * (x + kappa * (x * x * x)));
}

static inline float fk_gelu_quick1(float x) { return fk_sigmoid_mul(x, 1.702f * x); }

#define FK_DEFINE_ACTIVATION(opname, fn)                                                      \
    void opname(fk_backend *be, fk_tensor *y, const fk_tensor *x) {                           \
        FK_ASSERT(x->dtype == FK_F32 && y->dtype == FK_F32);                                  \
        int64_t n = fk_tensor_numel(x);                                                       \
        FK_ASSERT(fk_tensor_numel(y) == n);                                                   \
        const float *xd = x->data;                                                            \
        float *yd = y->data;                                                                  \
        int64_t nchunks = (n + FK_EW_CHUNK - 1) / FK_EW_CHUNK;                                \
        int nt = fk_ew_threads(be, n);                                                        \
        (void)nt;                                                                             \
        FK_CPU_PARALLEL_FOR(nt)                                                               \
        for (int64_t ch = 0; ch < nchunks; ch++) {                                            \
            int64_t i0 = ch * FK_EW_CHUNK, i1 = i0 + FK_EW_CHUNK < n ? i0 + FK_EW_CHUNK : n;  \
            for (int64_t i = i0; i < i1; i++) yd[i] = fn(xd[i]);                              \
        }                                                                                     \
    }

FK_DEFINE_ACTIVATION(fk_cpu_silu, fk_silu1)
FK_DEFINE_ACTIVATION(fk_cpu_gelu_tanh, fk_gelu_tanh1)
FK_DEFINE_ACTIVATION(fk_cpu_gelu_quick, fk_gelu_quick1)

/* ---- binary elementwise ---- */

void fk_cpu_add(fk_backend *be, fk_tensor *y, const fk_tensor *a, const fk_tensor *b) {
    FK_ASSERT(y->dtype == FK_F32 && a->dtype == FK_F32 && b->dtype == FK_F32);
    int64_t n = fk_tensor_numel(a);
    FK_ASSERT(fk_tensor_numel(b) == n && fk_tensor_numel(y) == n);
    const float *ad = a->data, *bd = b->data;
    float *yd = y->data;
    int64_t nchunks = (n + FK_EW_CHUNK - 1) / FK_EW_CHUNK;
    int nt = fk_ew_threads(be, n);
    (void)nt;
    FK_CPU_PARALLEL_FOR(nt)
    for (int64_t ch = 0; ch < nchunks; ch++) {
        int64_t i0 = ch * FK_EW_CHUNK, i1 = i0 + FK_EW_CHUNK < n ? i0 + FK_EW_CHUNK : n;
        for (int64_t i = i0; i < i1; i++) yd[i] = ad[i] + bd[i];
    }
}

void fk_cpu_mul(fk_backend *be, fk_tensor *y, const fk_tensor *a, const fk_tensor *b) {
    FK_ASSERT(y->dtype == FK_F32 && a->dtype == FK_F32 && b->dtype == FK_F32);
    int64_t n = fk_tensor_numel(a);
    FK_ASSERT(fk_tensor_numel(b) == n && fk_tensor_numel(y) == n);
    const float *ad = a->data, *bd = b->data;
    float *yd = y->data;
    int64_t nchunks = (n + FK_EW_CHUNK - 1) / FK_EW_CHUNK;
    int nt = fk_ew_threads(be, n);
    (void)nt;
    FK_CPU_PARALLEL_FOR(nt)
    for (int64_t ch = 0; ch < nchunks; ch++) {
        int64_t i0 = ch * FK_EW_CHUNK, i1 = i0 + FK_EW_CHUNK < n ? i0 + FK_EW_CHUNK : n;
        for (int64_t i = i0; i < i1; i++) yd[i] = ad[i] * bd[i];
    }
}

/* ---- adaLN modulation and gated residual: rows seen as (B, T, C) ---- */

void fk_cpu_modulate(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *shift,
                     const fk_tensor *scale) {
    FK_ASSERT(y->dtype == FK_F32 && x->dtype == FK_F32 && shift->dtype == FK_F32 &&
              scale->dtype == FK_F32);
    int64_t R = fk_tensor_rows(x), C = fk_tensor_cols(x); /* x, y (B·T, C) */
    int64_t B = fk_tensor_rows(shift);                    /* shift, scale (B, C) */
    FK_ASSERT(fk_tensor_rows(y) == R && fk_tensor_cols(y) == C);
    FK_ASSERT(fk_tensor_cols(shift) == C && fk_tensor_rows(scale) == B && fk_tensor_cols(scale) == C);
    FK_ASSERT(B > 0 && R % B == 0);
    int64_t T = R / B;
    const float *xd = x->data, *sh = shift->data, *sc = scale->data;
    float *yd = y->data;
    int nt = fk_ew_threads(be, R * C);
    (void)nt;
    FK_CPU_PARALLEL_FOR(nt)
    for (int64_t r = 0; r < R; r++) {
        const float *shr = sh + (r / T) * C, *scr = sc + (r / T) * C; /* (C) */
        const float *xr = xd + r * C;
        float *yr = yd + r * C;
        for (int64_t c = 0; c < C; c++) yr[c] = (1.0f + scr[c]) * xr[c] + shr[c];
    }
}

void fk_cpu_gated_add(fk_backend *be, fk_tensor *x, const fk_tensor *y, const fk_tensor *gate) {
    FK_ASSERT(x->dtype == FK_F32 && y->dtype == FK_F32 && gate->dtype == FK_F32);
    int64_t R = fk_tensor_rows(x), C = fk_tensor_cols(x); /* x, y (B·T, C) */
    int64_t B = fk_tensor_rows(gate);                     /* gate (B, C) */
    FK_ASSERT(fk_tensor_rows(y) == R && fk_tensor_cols(y) == C && fk_tensor_cols(gate) == C);
    FK_ASSERT(B > 0 && R % B == 0);
    int64_t T = R / B;
    float *xd = x->data;
    const float *yd = y->data, *gd = gate->data;
    int nt = fk_ew_threads(be, R * C);
    (void)nt;
    FK_CPU_PARALLEL_FOR(nt)
    for (int64_t r = 0; r < R; r++) {
        const float *gr = gd + (r / T) * C; /* (C) */
        float *xr = xd + r * C;
        const float *yr = yd + r * C;
        for (int64_t c = 0; c < C; c++) xr[c] = xr[c] + gr[c] * yr[c];
    }
}

/* ---- RoPE on adjacent pairs ---- */

void fk_cpu_rope(fk_backend *be, fk_tensor *x, const fk_tensor *pe) {
    FK_ASSERT(x->dtype == FK_F32 && pe->dtype == FK_F32);
    FK_ASSERT(x->ndim == 3); /* x (L, H, D) */
    int64_t L = x->shape[0], H = x->shape[1], D = x->shape[2];
    FK_ASSERT(D % 2 == 0);
    /* pe (L, D/2, 2, 2), possibly with leading 1s: (1, 1, L, D/2, 2, 2) */
    FK_ASSERT(pe->ndim >= 3 && pe->shape[pe->ndim - 1] == 2 && pe->shape[pe->ndim - 2] == 2 &&
              pe->shape[pe->ndim - 3] == D / 2 && fk_tensor_numel(pe) == L * D * 2);
    float *xd = x->data;
    const float *pd = pe->data;
    int nt = fk_ew_threads(be, L * H * D);
    (void)nt;
    FK_CPU_PARALLEL_FOR(nt)
    for (int64_t l = 0; l < L; l++) {
        const float *pl = pd + l * D * 2; /* (D/2, 2, 2) */
        for (int64_t h = 0; h < H; h++) {
            float *xr = xd + (l * H + h) * D; /* (D) */
            for (int64_t j = 0; j < D / 2; j++) {
                const float *p = pl + j * 4;
                float x0 = xr[2 * j], x1 = xr[2 * j + 1];
                xr[2 * j] = p[0] * x0 + p[1] * x1;
                xr[2 * j + 1] = p[2] * x0 + p[3] * x1;
            }
        }
    }
}

/* ---- row and column copies (any dtype, all operands the same) ---- */

void fk_cpu_concat_rows(fk_backend *be, fk_tensor *out, const fk_tensor *a, const fk_tensor *b) {
    (void)be;
    FK_ASSERT(out->dtype == a->dtype && out->dtype == b->dtype);
    int64_t C = fk_tensor_cols(out); /* out (La+Lb, C), a (La, C), b (Lb, C) */
    FK_ASSERT(fk_tensor_cols(a) == C && fk_tensor_cols(b) == C);
    FK_ASSERT(fk_tensor_rows(a) + fk_tensor_rows(b) == fk_tensor_rows(out));
    size_t na = fk_tensor_nbytes(a), nb = fk_tensor_nbytes(b);
    FK_ASSERT(out->data != a->data && out->data != b->data);
    if (na) memcpy(out->data, a->data, na);
    if (nb) memcpy((char *)out->data + na, b->data, nb);
}

void fk_cpu_split_rows(fk_backend *be, fk_tensor *a, fk_tensor *b, const fk_tensor *in) {
    (void)be;
    FK_ASSERT(in->dtype == a->dtype && in->dtype == b->dtype);
    int64_t C = fk_tensor_cols(in); /* in (La+Lb, C) → a (La, C), b (Lb, C) */
    FK_ASSERT(fk_tensor_cols(a) == C && fk_tensor_cols(b) == C);
    FK_ASSERT(fk_tensor_rows(a) + fk_tensor_rows(b) == fk_tensor_rows(in));
    size_t na = fk_tensor_nbytes(a), nb = fk_tensor_nbytes(b);
    FK_ASSERT(in->data != a->data && in->data != b->data);
    if (na) memcpy(a->data, in->data, na);
    if (nb) memcpy(b->data, (const char *)in->data + na, nb);
}

void fk_cpu_copy_cols(fk_backend *be, fk_tensor *dst, int64_t dc0, const fk_tensor *src,
                      int64_t sc0, int64_t n) {
    FK_ASSERT(dst->dtype == src->dtype);
    int64_t M = fk_tensor_rows(dst), Nd = fk_tensor_cols(dst), Ns = fk_tensor_cols(src);
    FK_ASSERT(fk_tensor_rows(src) == M); /* dst (M, Nd), src (M, Ns) */
    FK_ASSERT(n >= 0 && dc0 >= 0 && sc0 >= 0 && dc0 + n <= Nd && sc0 + n <= Ns);
    size_t esz = fk_dtype_size(dst->dtype);
    char *dd = dst->data;
    const char *sd = src->data;
    int nt = fk_ew_threads(be, M * n);
    (void)nt;
    FK_CPU_PARALLEL_FOR(nt)
    for (int64_t m = 0; m < M; m++)
        memmove(dd + (size_t)(m * Nd + dc0) * esz, sd + (size_t)(m * Ns + sc0) * esz, (size_t)n * esz);
}
