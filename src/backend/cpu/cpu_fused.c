/* cpu_fused: linear with a fused activation (linear_act). In bf16 mode the
 * AMX product applies the activation to each output panel while it stores
 * it (fk_cpu_gemm_bf16_act); otherwise the f32 product is followed by the
 * activation over y. Either way the bits equal linear + the activation op. */
#include "backend/cpu/cpu_ew.h"

#include <string.h>

void fk_cpu_untile_f32(float *dst, int64_t ldd, const fk_tensor *t) {
    FK_ASSERT(t->layout == FK_LAYOUT_TILES && t->dtype == FK_BF16);
    const int64_t M = fk_tensor_rows(t), K = fk_tensor_cols(t);
    const int64_t Mp = fk_tile_pad(M), Kp = fk_tile_pad(K);
    const uint16_t *s = t->data;
    for (int64_t m = 0; m < M; m++)
        for (int64_t k = 0; k < K; k++)
            dst[m * ldd + k] = fk_bf16_to_f32(s[fk_tensor_tile_offset(m, k, Mp, Kp)]);
}

void fk_cpu_tile_from_f32(fk_tensor *t, const float *src) {
    const int64_t M = fk_tensor_rows(t), K = fk_tensor_cols(t);
    for (int64_t m = 0; m < M; m++) fk_cpu_tile_row(t, m, 0, src + m * K, K);
}

bool fk_cpu_tiles_ok(const fk_backend *be, fk_op op, const fk_tensor *const *srcs, int n, int i) {
    const fk_tensor *t = srcs && i < n ? srcs[i] : NULL;
    const fk_tensor *x1 = srcs && n > 1 ? srcs[1] : NULL;
    if (!t || t->dtype != FK_BF16 || fk_cpu_impl_of(be)->bf16_kernel == FK_CPU_BF16_NONE ||
        !fk_cpu_bf16_io_ok(be, fk_tensor_rows(t)))
        return false;
    switch (op) {
    case FK_OP_LINEAR:     /* y, x, w, b */
    case FK_OP_LINEAR_ACT: return i == 0 || i == 1;
    case FK_OP_LINEAR_RMSNORM_ROPE: return i == 1; /* y, x, w, b, scale, pe */
    case FK_OP_LINEAR_CAT: /* y, x1, x2, w, b: a tiled part starts or ends a K block */
        return i == 0 || ((i == 1 || i == 2) && x1 && fk_tensor_cols(x1) % FK_TILE_KC == 0);
    case FK_OP_LAYERNORM_MODULATE: return i == 0; /* y, x, shift, scale */
    case FK_OP_ATTENTION: /* out, q, k, v, bias: the AMX attention's store */
        return i == 0 && fk_cpu_bf16_attention_io_ok(be, t);
    default: return false;
    }
}

void fk_cpu_tile_row(fk_tensor *t, int64_t m, int64_t c0, const float *row, int64_t n) {
    FK_ASSERT(t->layout == FK_LAYOUT_TILES && t->dtype == FK_BF16);
    const int64_t Mp = fk_tile_pad(fk_tensor_rows(t)), K = fk_tensor_cols(t), Kp = fk_tile_pad(K);
    FK_ASSERT(c0 % 32 == 0 && c0 + n <= K && (n % 32 == 0 || c0 + n == K));
    uint16_t *d = t->data;
    for (int64_t k0 = c0; k0 < c0 + n; k0 += 32) {
        uint16_t *dst = d + fk_tensor_tile_offset(m, k0, Mp, Kp); /* one 32-column line */
        const int64_t w = c0 + n - k0 < 32 ? c0 + n - k0 : 32;
        if (w < 32) memset(dst + w, 0, (size_t)(32 - w) * 2); /* the padding columns */
        fk_cpu_bf16_round_row(dst, row + (k0 - c0), w);
    }
}

/* [x1 | x2] row by row into f32 (bf16 parts widened, exactly; tiled ones
 * untiled): (M, K1 + K2). */
static void fk_cpu_join_f32(float *dst, const fk_tensor *x1, const fk_tensor *x2) {
    const int64_t M = fk_tensor_rows(x1), K1 = fk_tensor_cols(x1);
    const int64_t K = K1 + (x2 ? fk_tensor_cols(x2) : 0);
    const fk_tensor *part[2] = {x1, x2};
    for (int p = 0; p < 2 && part[p]; p++) { /* each part into its columns */
        const fk_tensor *x = part[p];
        const int64_t Kq = fk_tensor_cols(x), c0 = p ? K1 : 0;
        if (x->layout == FK_LAYOUT_TILES) {
            fk_cpu_untile_f32(dst + c0, K, x);
            continue;
        }
        for (int64_t m = 0; m < M; m++)
            fk_convert_to_f32(dst + m * K + c0,
                              (const char *)x->data + (size_t)(m * Kq) * fk_dtype_size(x->dtype),
                              x->dtype, (size_t)Kq);
    }
}

void fk_cpu_linear_io(fk_backend *be, fk_tensor *y, const fk_tensor *x1, const fk_tensor *x2,
                      const fk_tensor *w, const fk_tensor *b, fk_act act) {
    const int64_t M = fk_tensor_rows(x1), K1 = fk_tensor_cols(x1);
    const int64_t K2 = x2 ? fk_tensor_cols(x2) : 0, K = K1 + K2, N = w->shape[0];
    FK_ASSERT(fk_cpu_bf16_io_ok(be, M)); /* what supports() promised */
    FK_ASSERT(fk_cpu_act_dtype_ok(y->dtype) && fk_cpu_act_dtype_ok(x1->dtype) &&
              (!x2 || fk_cpu_act_dtype_ok(x2->dtype)));
    if (fk_cpu_gemm_bf16_cat(be, M, N, K, x1->data, fk_cpu_gemm_dt(x1), K1,
                             x2 ? x2->data : NULL, x2 ? fk_cpu_gemm_dt(x2) : FK_F32, K2, K1,
                             w->data, w->dtype, K, b ? b->data : NULL, b ? b->dtype : FK_F32,
                             y->data, fk_cpu_gemm_dt(y), N, act))
        return;
    /* The bf16 workspace could not be had (out of memory): as the f32
     * operands do then, the f32 path, here on widened copies (a last resort
     * that allocates; bf16 y: the f32 result rounded to nearest-even). */
    float *xf = fk_alloc((size_t)(M * K) * sizeof(float));
    float *yf = y->dtype == FK_F32 ? y->data : fk_alloc((size_t)(M * N) * sizeof(float));
    FK_ASSERT(xf && yf && "out of memory for a product with bf16 activations");
    fk_cpu_join_f32(xf, x1, x2);
    fk_tensor tx = fk_view2(FK_F32, xf, M, K), ty = fk_view2(FK_F32, yf, M, N);
    fk_cpu_linear_act(be, &ty, &tx, w, b, act);
    if (yf != y->data) {
        if (y->layout == FK_LAYOUT_TILES)
            fk_cpu_tile_from_f32(y, yf);
        else
            fk_convert_from_f32(y->data, FK_BF16, yf, (size_t)(M * N));
        fk_free(yf);
    }
    fk_free(xf);
}

void fk_cpu_linear_act(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                       const fk_tensor *b, fk_act act) {
    FK_ASSERT((unsigned)act < FK_ACT_COUNT);
    FK_ASSERT(fk_cpu_act_dtype_ok(y->dtype) && fk_cpu_act_dtype_ok(x->dtype));
    FK_ASSERT(w->ndim == 2 && fk_cpu_weight_dtype_ok(w->dtype));
    int64_t M = fk_tensor_rows(x), K = fk_tensor_cols(x), N = w->shape[0]; /* x (M, K), w (N, K) */
    FK_ASSERT(w->shape[1] == K);
    FK_ASSERT(fk_tensor_rows(y) == M && fk_tensor_cols(y) == N); /* y (M, N) */
    FK_ASSERT(y->data != x->data);
    if (b) FK_ASSERT(fk_tensor_numel(b) == N && fk_cpu_weight_dtype_ok(b->dtype)); /* b (N) */
    if (y->dtype != FK_F32 || x->dtype != FK_F32) {
        fk_cpu_linear_io(be, y, x, NULL, w, b, act);
        return;
    }
    fk_cpu_impl *impl = fk_cpu_impl_of(be);
    if (impl->precision == FK_PREC_BF16 && M >= FK_CPU_BF16_MIN_M &&
        fk_cpu_gemm_bf16_act(be, M, N, K, x->data, K, w->data, w->dtype, K, b ? b->data : NULL,
                             b ? b->dtype : FK_F32, y->data, N, act))
        return;
    fk_cpu_linear(be, y, x, w, b);
    if (act == FK_ACT_NONE) return;
    /* the activation over y, rows in parallel */
    float *yd = y->data;
    int nt = M * N < 32768 ? 1 : impl->n_threads;
    (void)nt;
    fk_cpu_isa isa = impl->isa;
    FK_CPU_PARALLEL_FOR(nt)
    for (int64_t m = 0; m < M; m++) fk_cpu_act_row(isa, act, yd + m * N, yd + m * N, N);
}

/* y[i] = act[i](x·w[i]ᵀ + b[i]): in bf16 mode one AMX product after another
 * on x packed once (fk_cpu_gemm_bf16_multi); otherwise (f32 mode, few rows,
 * no AMX, more than FK_CPU_MULTI_MAX products) linear_act for each: the
 * bits of linear_act either way. */
#define FK_CPU_MULTI_MAX 8
void fk_cpu_linear_multi(fk_backend *be, int n, fk_tensor *const *y, const fk_tensor *x,
                         const fk_tensor *const *w, const fk_tensor *const *b, const fk_act *act) {
    FK_ASSERT(n >= 0 && fk_cpu_act_dtype_ok(x->dtype));
    const int64_t M = fk_tensor_rows(x), K = fk_tensor_cols(x); /* x (M, K) */
    fk_cpu_impl *impl = fk_cpu_impl_of(be);
    bool fast = impl->precision == FK_PREC_BF16 && M >= FK_CPU_BF16_MIN_M && n > 0 &&
                n <= FK_CPU_MULTI_MAX;
    int64_t N[FK_CPU_MULTI_MAX];
    const void *bw[FK_CPU_MULTI_MAX], *bb[FK_CPU_MULTI_MAX];
    fk_dtype wdt[FK_CPU_MULTI_MAX], bdt[FK_CPU_MULTI_MAX], cdt[FK_CPU_MULTI_MAX];
    void *c[FK_CPU_MULTI_MAX];
    for (int i = 0; i < n; i++) { /* the checks of linear_act, every product */
        FK_ASSERT((unsigned)act[i] < FK_ACT_COUNT && fk_cpu_act_dtype_ok(y[i]->dtype));
        FK_ASSERT(w[i]->ndim == 2 && fk_cpu_weight_dtype_ok(w[i]->dtype) && w[i]->shape[1] == K);
        const int64_t Ni = w[i]->shape[0]; /* w (N, K) */
        FK_ASSERT(fk_tensor_rows(y[i]) == M && fk_tensor_cols(y[i]) == Ni); /* y (M, N) */
        FK_ASSERT(y[i]->data != x->data);
        if (b[i]) FK_ASSERT(fk_tensor_numel(b[i]) == Ni && fk_cpu_weight_dtype_ok(b[i]->dtype));
        if (i < FK_CPU_MULTI_MAX) {
            N[i] = Ni;
            bw[i] = w[i]->data, wdt[i] = w[i]->dtype;
            bb[i] = b[i] ? b[i]->data : NULL, bdt[i] = b[i] ? b[i]->dtype : FK_F32;
            c[i] = y[i]->data, cdt[i] = fk_cpu_gemm_dt(y[i]);
        }
        if (y[i]->dtype != FK_F32) FK_ASSERT(fk_cpu_bf16_io_ok(be, M));
    }
    if (x->dtype != FK_F32) FK_ASSERT(fk_cpu_bf16_io_ok(be, M));
    if (fast && fk_cpu_gemm_bf16_multi(be, n, M, K, x->data, fk_cpu_gemm_dt(x), K, N, bw, wdt, bb,
                                       bdt, c, cdt, act))
        return;
    for (int i = 0; i < n; i++) fk_cpu_linear_act(be, y[i], x, w[i], b[i], act[i]);
}

/* y = [x1 | x2]·wᵀ + b. bf16 mode: the product packs its A operand from the
 * two sources directly; otherwise the rows are joined in tmp and the f32
 * linear runs on it (the reference's bits either way). */
void fk_cpu_linear_cat(fk_backend *be, fk_tensor *y, const fk_tensor *x1, const fk_tensor *x2,
                       const fk_tensor *w, const fk_tensor *b, fk_tensor *tmp) {
    FK_ASSERT(fk_cpu_act_dtype_ok(y->dtype) && fk_cpu_act_dtype_ok(x1->dtype) &&
              fk_cpu_act_dtype_ok(x2->dtype));
    FK_ASSERT(w->ndim == 2 && fk_cpu_weight_dtype_ok(w->dtype));
    int64_t M = fk_tensor_rows(x1), K1 = fk_tensor_cols(x1), K2 = fk_tensor_cols(x2);
    int64_t K = K1 + K2, N = w->shape[0]; /* x1 (M, K1), x2 (M, K2), w (N, K) */
    FK_ASSERT(fk_tensor_rows(x2) == M && w->shape[1] == K);
    FK_ASSERT(fk_tensor_rows(y) == M && fk_tensor_cols(y) == N); /* y (M, N) */
    FK_ASSERT(y->data != x1->data && y->data != x2->data);
    if (b) FK_ASSERT(fk_tensor_numel(b) == N && fk_cpu_weight_dtype_ok(b->dtype)); /* b (N) */
    if (y->dtype != FK_F32 || x1->dtype != FK_F32 || x2->dtype != FK_F32) {
        fk_cpu_linear_io(be, y, x1, x2, w, b, FK_ACT_NONE); /* tmp not needed */
        return;
    }
    fk_cpu_impl *impl = fk_cpu_impl_of(be);
    if (impl->precision == FK_PREC_BF16 && M >= FK_CPU_BF16_MIN_M &&
        fk_cpu_gemm_bf16_cat(be, M, N, K, x1->data, FK_F32, K1, x2->data, FK_F32, K2, K1, w->data,
                             w->dtype, K, b ? b->data : NULL, b ? b->dtype : FK_F32, y->data,
                             FK_F32, N, FK_ACT_NONE))
        return;
    FK_ASSERT(tmp && tmp->dtype == FK_F32 && fk_tensor_numel(tmp) == M * K); /* tmp (M, K) */
    fk_tensor tc = fk_view2(FK_F32, tmp->data, M, K);
    fk_cpu_copy_cols(be, &tc, 0, x1, 0, K1);
    fk_cpu_copy_cols(be, &tc, K1, x2, 0, K2);
    fk_cpu_linear(be, y, &tc, w, b);
}

/* y = rmsnorm_rope(x·wᵀ + b). bf16 mode (a bf16 kernel, enough rows, the
 * SIMD row kernels, D dividing an output panel): one bf16 product whose
 * store normalizes and rotates each row's heads (fk_cpu_rope_post) before
 * it writes them, f32 or rounded to bf16; otherwise linear into y (or into
 * an f32 copy for a bf16 y, a last resort that allocates) and rmsnorm_rope.
 * The bits of linear then rmsnorm_rope either way: the same f32 row values,
 * then the same row kernels (fk_cpu_rmsnorm_rope_heads). */
void fk_cpu_linear_rmsnorm_rope(fk_backend *be, fk_tensor *y, const fk_tensor *x,
                                const fk_tensor *w, const fk_tensor *b, const fk_tensor *scale,
                                const fk_tensor *pe, float eps) {
    FK_ASSERT(fk_cpu_act_dtype_ok(y->dtype) && fk_cpu_act_dtype_ok(x->dtype));
    FK_ASSERT(w->ndim == 2 && fk_cpu_weight_dtype_ok(w->dtype));
    const int64_t M = fk_tensor_rows(x), K = fk_tensor_cols(x), N = w->shape[0];
    FK_ASSERT(w->shape[1] == K && y->ndim == 2 && y->shape[0] == M && y->shape[1] == N);
    FK_ASSERT(y->data != x->data && y->layout == FK_LAYOUT_ROWS);
    if (b) FK_ASSERT(fk_tensor_numel(b) == N && fk_cpu_weight_dtype_ok(b->dtype));
    FK_ASSERT(scale && fk_cpu_weight_dtype_ok(scale->dtype));
    const int64_t D = fk_tensor_numel(scale);
    FK_ASSERT(D > 0 && D % 2 == 0 && N % D == 0 && pe->dtype == FK_F32 &&
              fk_tensor_numel(pe) == M * D * 2); /* pe (M, D/2, 2, 2) */
    if (x->dtype != FK_F32) FK_ASSERT(fk_cpu_bf16_io_ok(be, M));
    fk_tensor y3 = fk_view3(y->dtype, y->data, M, N / D, D);
    if (y->dtype != FK_F32) FK_ASSERT(fk_cpu_bf16_attention_io_ok(be, &y3));
    fk_cpu_impl *impl = fk_cpu_impl_of(be);
    const fk_ew_kernels *k = fk_ew_kernels_of(impl->isa);
    if (impl->precision == FK_PREC_BF16 && M >= FK_CPU_BF16_MIN_M && k &&
        FK_CPU_ROPE_POST_NC % D == 0) {
        float sc[FK_CPU_ROPE_POST_NC];
        fk_convert_to_f32(sc, scale->data, scale->dtype, (size_t)D);
        const fk_cpu_rope_post post = {k, sc, pe->data, D, eps};
        if (fk_cpu_gemm_bf16_rope(be, M, N, K, x->data, fk_cpu_gemm_dt(x), w->data, w->dtype,
                                  b ? b->data : NULL, b ? b->dtype : FK_F32, y->data, y->dtype,
                                  &post))
            return;
    }
    float *yf = y->dtype == FK_F32 ? y->data : fk_alloc((size_t)(M * N) * sizeof(float));
    FK_ASSERT(yf && "out of memory for linear_rmsnorm_rope with a bf16 y");
    fk_tensor ty = fk_view2(FK_F32, yf, M, N), tf = fk_view3(FK_F32, yf, M, N / D, D);
    fk_cpu_linear_act(be, &ty, x, w, b, FK_ACT_NONE);
    fk_cpu_rmsnorm_rope(be, &y3, &tf, scale, pe, eps);
    if (yf != y->data) fk_free(yf);
}
