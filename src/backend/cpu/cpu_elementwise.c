/* cpu_elementwise: activations, add/mul, adaLN modulation, gated residual,
 * RoPE and row/column copies (fp32 reference). Each output element is a
 * function of its inputs only, computed in f32 in the order the reference
 * writes it; parallel over independent chunks or rows. The loops here are
 * the portable path; with the AVX2 / AVX-512 ISA the same rows run the
 * kernels of cpu_ew_x86.c (same bits). The fused norms (layernorm_modulate,
 * rmsnorm_rope) are in cpu_norm.c. */
#include "backend/cpu/cpu_ew.h"

#include <math.h>
#include <string.h>

#define FK_EW_CHUNK 16384 /* elements per parallel chunk */

static int fk_ew_threads(const fk_backend *be, int64_t n) {
    return n < 2 * FK_EW_CHUNK ? 1 : be->n_threads;
}

/* ---- activations: y = f(x), any shape, y may alias x ----
 * The formulas are in cpu_ew.h (fk_ew_silu1, fk_ew_gelu_tanh1,
 * fk_ew_gelu_quick1); the ops run fk_cpu_act_row over chunks. */

void fk_cpu_act_row(fk_cpu_isa isa, fk_act act, float *y, const float *x, int64_t n) {
    FK_ASSERT((unsigned)act < FK_ACT_COUNT && n >= 0);
    if (act == FK_ACT_NONE) {
        if (y != x && n) memmove(y, x, (size_t)n * sizeof(float));
        return;
    }
    const fk_ew_kernels *k = fk_ew_kernels_of(isa);
    if (k) {
        k->act(act, y, x, n);
        return;
    }
    switch (act) {
    case FK_ACT_GELU_TANH:
        for (int64_t i = 0; i < n; i++) y[i] = fk_ew_gelu_tanh1(x[i]);
        return;
    case FK_ACT_SILU:
        for (int64_t i = 0; i < n; i++) y[i] = fk_ew_silu1(x[i]);
        return;
    case FK_ACT_GELU_QUICK:
        for (int64_t i = 0; i < n; i++) y[i] = fk_ew_gelu_quick1(x[i]);
        return;
    case FK_ACT_NONE:
    case FK_ACT_COUNT: break;
    }
}

static void fk_ew_activation(fk_backend *be, fk_tensor *y, const fk_tensor *x, fk_act act) {
    FK_ASSERT(x->dtype == FK_F32 && y->dtype == FK_F32);
    int64_t n = fk_tensor_numel(x);
    FK_ASSERT(fk_tensor_numel(y) == n);
    const float *xd = x->data;
    float *yd = y->data;
    fk_cpu_isa isa = fk_cpu_impl_of(be)->isa;
    int64_t nchunks = (n + FK_EW_CHUNK - 1) / FK_EW_CHUNK;
    int nt = fk_ew_threads(be, n);
    (void)nt;
    FK_CPU_PARALLEL_FOR(nt)
    for (int64_t ch = 0; ch < nchunks; ch++) {
        int64_t i0 = ch * FK_EW_CHUNK, i1 = i0 + FK_EW_CHUNK < n ? i0 + FK_EW_CHUNK : n;
        fk_cpu_act_row(isa, act, yd + i0, xd + i0, i1 - i0);
    }
}

void fk_cpu_silu(fk_backend *be, fk_tensor *y, const fk_tensor *x) {
    fk_ew_activation(be, y, x, FK_ACT_SILU);
}

void fk_cpu_gelu_tanh(fk_backend *be, fk_tensor *y, const fk_tensor *x) {
    fk_ew_activation(be, y, x, FK_ACT_GELU_TANH);
}

void fk_cpu_gelu_quick(fk_backend *be, fk_tensor *y, const fk_tensor *x) {
    fk_ew_activation(be, y, x, FK_ACT_GELU_QUICK);
}

/* ---- binary elementwise ---- */

static void fk_ew_binary(fk_backend *be, fk_tensor *y, const fk_tensor *a, const fk_tensor *b,
                         bool is_mul) {
    FK_ASSERT(y->dtype == FK_F32 && a->dtype == FK_F32 && b->dtype == FK_F32);
    int64_t n = fk_tensor_numel(a);
    FK_ASSERT(fk_tensor_numel(b) == n && fk_tensor_numel(y) == n);
    const float *ad = a->data, *bd = b->data;
    float *yd = y->data;
    const fk_ew_kernels *k = fk_ew_kernels_of(fk_cpu_impl_of(be)->isa);
    int64_t nchunks = (n + FK_EW_CHUNK - 1) / FK_EW_CHUNK;
    int nt = fk_ew_threads(be, n);
    (void)nt;
    FK_CPU_PARALLEL_FOR(nt)
    for (int64_t ch = 0; ch < nchunks; ch++) {
        int64_t i0 = ch * FK_EW_CHUNK, i1 = i0 + FK_EW_CHUNK < n ? i0 + FK_EW_CHUNK : n;
        if (k)
            (is_mul ? k->mul : k->add)(yd + i0, ad + i0, bd + i0, i1 - i0);
        else if (is_mul)
            for (int64_t i = i0; i < i1; i++) yd[i] = ad[i] * bd[i];
        else
            for (int64_t i = i0; i < i1; i++) yd[i] = ad[i] + bd[i];
    }
}

void fk_cpu_add(fk_backend *be, fk_tensor *y, const fk_tensor *a, const fk_tensor *b) {
    fk_ew_binary(be, y, a, b, false);
}

void fk_cpu_mul(fk_backend *be, fk_tensor *y, const fk_tensor *a, const fk_tensor *b) {
    fk_ew_binary(be, y, a, b, true);
}

/* ---- adaLN modulation and gated residual: rows seen as (B, T, C) ---- */

void fk_cpu_modulate(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *shift,
                     const fk_tensor *scale) {
    FK_ASSERT(y->dtype == FK_F32 && x->dtype == FK_F32 && shift->dtype == FK_F32 &&
              scale->dtype == FK_F32);
    int64_t R = fk_tensor_rows(x), C = fk_tensor_cols(x); /* x, y (B·T, C) */
    int64_t B = fk_tensor_rows(shift);                    /* shift, scale (B, C) */
    FK_ASSERT(fk_tensor_rows(y) == R && fk_tensor_cols(y) == C);
    FK_ASSERT(fk_tensor_cols(shift) == C && fk_tensor_rows(scale) == B &&
              fk_tensor_cols(scale) == C);
    FK_ASSERT(B > 0 && R % B == 0);
    int64_t T = R / B;
    const float *xd = x->data, *sh = shift->data, *sc = scale->data;
    float *yd = y->data;
    const fk_ew_kernels *k = fk_ew_kernels_of(fk_cpu_impl_of(be)->isa);
    int nt = fk_ew_threads(be, R * C);
    (void)nt;
    FK_CPU_PARALLEL_FOR(nt)
    for (int64_t r = 0; r < R; r++) {
        const float *shr = sh + (r / T) * C, *scr = sc + (r / T) * C; /* (C) */
        const float *xr = xd + r * C;
        float *yr = yd + r * C;
        if (k)
            k->modulate(yr, xr, shr, scr, C);
        else
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
    const fk_ew_kernels *k = fk_ew_kernels_of(fk_cpu_impl_of(be)->isa);
    int nt = fk_ew_threads(be, R * C);
    (void)nt;
    FK_CPU_PARALLEL_FOR(nt)
    for (int64_t r = 0; r < R; r++) {
        const float *gr = gd + (r / T) * C; /* (C) */
        float *xr = xd + r * C;
        const float *yr = yd + r * C;
        if (k)
            k->gated_add(xr, yr, gr, C);
        else
            for (int64_t c = 0; c < C; c++) xr[c] = xr[c] + gr[c] * yr[c];
    }
}

/* ---- RoPE on adjacent pairs ---- */

/* One (l, h) row x (D) rotated by pe (D/2, 2, 2): the reference loop. */
void fk_ew_rope_row(float *x, const float *pe, int64_t D) {
    for (int64_t j = 0; j < D / 2; j++) {
        const float *p = pe + j * 4;
        float x0 = x[2 * j], x1 = x[2 * j + 1];
        x[2 * j] = p[0] * x0 + p[1] * x1;
        x[2 * j + 1] = p[2] * x0 + p[3] * x1;
    }
}

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
    const fk_ew_kernels *k = fk_ew_kernels_of(fk_cpu_impl_of(be)->isa);
    int nt = fk_ew_threads(be, L * H * D);
    (void)nt;
    if (k && D <= FK_EW_ROPE_MAX_D) {
        FK_CPU_PARALLEL_FOR(nt)
        for (int64_t l = 0; l < L; l++) {
            float ab[2 * FK_EW_ROPE_MAX_D]; /* (2, D): the SIMD form of pe[l] */
            fk_ew_rope_ab(pd + l * D * 2, D, ab);
            for (int64_t h = 0; h < H; h++) k->rope(xd + (l * H + h) * D, ab, D);
        }
        return;
    }
    FK_CPU_PARALLEL_FOR(nt)
    for (int64_t l = 0; l < L; l++) {
        const float *pl = pd + l * D * 2; /* (D/2, 2, 2) */
        for (int64_t h = 0; h < H; h++) fk_ew_rope_row(xd + (l * H + h) * D, pl, D); /* (D) */
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
        memmove(dd + (size_t)(m * Nd + dc0) * esz, sd + (size_t)(m * Ns + sc0) * esz,
                (size_t)n * esz);
}
