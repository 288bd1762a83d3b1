/* bf16 activations of the CPU products (backend.h, "bf16 activations"):
 * in bf16 mode a bf16 x (x1, x2) and a bf16 y of linear, linear_act,
 * linear_multi and linear_cat give exactly what the f32 operands give —
 * - a bf16 x holding the bf16 rounding of an f32 x: the bits of the product
 *   on that f32 x (the product rounds it to the same bf16 while packing);
 * - a bf16 y: the f32 y (after bias and activation) rounded to nearest-even;
 * for tails in M, N and K (not multiples of 16 / 32, a 32-column chunk
 * across the x1 | x2 boundary, bf16 and f32 parts mixed), 1 and 2 threads,
 * and in the path taken when the bf16 workspace cannot be had (the f32
 * product on widened copies, compared with the f32 path itself);
 * - supports() admits them exactly where the ops take them: bf16 mode, a
 *   bf16 kernel, at least FK_CPU_BF16_MIN_M rows, not switched off.
 * Tolerance: bitwise (the same sums in the same order). Skipped where the
 * machine has no bf16 kernel (nothing takes bf16 activations there; the
 * supports() answers are still checked). */
#include "cpu_ops_util.h"

#include <string.h>

static uint16_t *to_bf16(const float *x, int64_t n) {
    uint16_t *b = fk_alloc((size_t)n * 2);
    fk_convert_from_f32(b, FK_BF16, x, (size_t)n);
    return b;
}

/* x rounded to bf16 in place (f32 values that bf16 holds exactly). */
static void round_bf16(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = fk_bf16_to_f32(fk_f32_to_bf16(x[i]));
}

static bool same_as_rounded(const uint16_t *yb, const float *yf, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (yb[i] != fk_f32_to_bf16(yf[i])) return false;
    return true;
}

static void test_case(fk_backend *be, int64_t M, int64_t K1, int64_t K2, int64_t N, fk_act act,
                      const char *what) {
    const int64_t K = K1 + K2;
    float *xd = tu_alloc(M * K), *wd = tu_alloc(N * K), *bd = tu_alloc(N);
    tu_fill(xd, M * K, -1.0f, 1.0f);
    tu_fill(wd, N * K, -0.1f, 0.1f);
    tu_fill(bd, N, -0.5f, 0.5f);
    round_bf16(xd, M * K);
    uint16_t *wb = to_bf16(wd, N * K);
    fk_tensor w = fk_view2(FK_BF16, wb, N, K), b = fk_view1(FK_F32, bd, N);
    /* x as f32 and as bf16, whole and split in two parts (row-major each) */
    float *x1f = tu_alloc(M * K1), *x2f = tu_alloc(M * K2);
    for (int64_t m = 0; m < M; m++) {
        memcpy(x1f + m * K1, xd + m * K, (size_t)K1 * 4);
        memcpy(x2f + m * K2, xd + m * K + K1, (size_t)K2 * 4);
    }
    uint16_t *xb = to_bf16(xd, M * K), *x1b = to_bf16(x1f, M * K1), *x2b = to_bf16(x2f, M * K2);
    fk_tensor txf = fk_view2(FK_F32, xd, M, K), txb = fk_view2(FK_BF16, xb, M, K);
    float *yref = tu_alloc(M * N), *yf = tu_alloc(M * N);
    uint16_t *yb = fk_alloc((size_t)(M * N) * 2);
    fk_tensor tyref = fk_view2(FK_F32, yref, M, N), tyf = fk_view2(FK_F32, yf, M, N);
    fk_tensor tyb = fk_view2(FK_BF16, yb, M, N);

    /* linear_act (and linear when act is none) on f32 operands: the reference */
    be->linear_act(be, &tyref, &txf, &w, &b, act);
    be->linear_act(be, &tyf, &txb, &w, &b, act);
    CHECKF(tu_same_bits(yf, yref, (size_t)(M * N) * 4), "%s: linear_act, bf16 x", what);
    be->linear_act(be, &tyb, &txf, &w, &b, act);
    CHECKF(same_as_rounded(yb, yref, M * N), "%s: linear_act, bf16 y", what);
    memset(yb, 0, (size_t)(M * N) * 2);
    be->linear_act(be, &tyb, &txb, &w, &b, act);
    CHECKF(same_as_rounded(yb, yref, M * N), "%s: linear_act, bf16 x and y", what);
    if (act == FK_ACT_NONE) {
        be->linear(be, &tyf, &txb, &w, &b);
        CHECKF(tu_same_bits(yf, yref, (size_t)(M * N) * 4), "%s: linear, bf16 x", what);
        be->linear(be, &tyb, &txb, &w, NULL);
        be->linear(be, &tyf, &txf, &w, NULL);
        CHECKF(same_as_rounded(yb, yf, M * N), "%s: linear, bf16 x and y, no bias", what);
    }

    /* linear_cat: every mix of f32 and bf16 parts, y f32 and bf16 (act none) */
    fk_tensor tref0 = fk_view2(FK_F32, yref, M, N);
    be->linear(be, &tref0, &txf, &w, &b);
    float *tmp = tu_alloc(M * K);
    fk_tensor ttmp = fk_view2(FK_F32, tmp, M, K);
    for (int mix = 0; mix < 4; mix++) {
        fk_tensor t1 = mix & 1 ? fk_view2(FK_BF16, x1b, M, K1) : fk_view2(FK_F32, x1f, M, K1);
        fk_tensor t2 = mix & 2 ? fk_view2(FK_BF16, x2b, M, K2) : fk_view2(FK_F32, x2f, M, K2);
        be->linear_cat(be, &tyf, &t1, &t2, &w, &b, &ttmp);
        CHECKF(tu_same_bits(yf, yref, (size_t)(M * N) * 4), "%s: linear_cat, parts %d", what, mix);
        be->linear_cat(be, &tyb, &t1, &t2, &w, &b, &ttmp);
        CHECKF(same_as_rounded(yb, yref, M * N), "%s: linear_cat, parts %d, bf16 y", what, mix);
    }

    /* linear_multi: a bf16 x, products with f32 and bf16 y (w and a row view of it) */
    {
        const int64_t N2 = N / 2 > 0 ? N / 2 : 1;
        fk_tensor w2 = fk_view2(FK_BF16, wb + (N - N2) * K, N2, K);
        float *y2ref = tu_alloc(M * N2);
        uint16_t *y2b = fk_alloc((size_t)(M * N2) * 2);
        fk_tensor ty2ref = fk_view2(FK_F32, y2ref, M, N2), ty2b = fk_view2(FK_BF16, y2b, M, N2);
        be->linear_act(be, &ty2ref, &txf, &w2, NULL, FK_ACT_GELU_TANH);
        be->linear_act(be, &tyref, &txf, &w, &b, act);
        fk_tensor *ys[2] = {&tyf, &ty2b};
        const fk_tensor *ws[2] = {&w, &w2}, *bs[2] = {&b, NULL};
        const fk_act acts[2] = {act, FK_ACT_GELU_TANH};
        memset(yf, 0, (size_t)(M * N) * 4);
        be->linear_multi(be, 2, ys, &txb, ws, bs, acts);
        CHECKF(tu_same_bits(yf, yref, (size_t)(M * N) * 4), "%s: linear_multi, f32 y", what);
        CHECKF(same_as_rounded(y2b, y2ref, M * N2), "%s: linear_multi, bf16 y", what);
        fk_free(y2ref);
        fk_free(y2b);
    }
    fk_free(xd), fk_free(wd), fk_free(bd), fk_free(wb), fk_free(x1f), fk_free(x2f);
    fk_free(xb), fk_free(x1b), fk_free(x2b), fk_free(yref), fk_free(yf), fk_free(yb);
    fk_free(tmp);
}

/* The bf16 workspace cannot be had: the f32 product on the widened bf16 x,
 * bf16 y its rounding — compared with the f32 path on the same values. */
static void test_no_workspace(fk_cpu_bf16_kernel k) {
    const int64_t M = 40, K = 70, N = 50;
    fk_backend *be = fk_backend_cpu_create(2), *ref = fk_backend_cpu_create(2);
    CHECK(be && ref && fk_backend_cpu_set_bf16_kernel(be, k));
    fk_backend_cpu_set_bf16_ws_max(be, 4096);
    float *xd = tu_alloc(M * K), *wd = tu_alloc(N * K), *yref = tu_alloc(M * N), *y = tu_alloc(M * N);
    tu_fill(xd, M * K, -1.0f, 1.0f);
    tu_fill(wd, N * K, -0.1f, 0.1f);
    round_bf16(xd, M * K);
    uint16_t *xb = to_bf16(xd, M * K), *yb = fk_alloc((size_t)(M * N) * 2);
    fk_tensor w = fk_view2(FK_F32, wd, N, K), txf = fk_view2(FK_F32, xd, M, K);
    fk_tensor txb = fk_view2(FK_BF16, xb, M, K), tyref = fk_view2(FK_F32, yref, M, N);
    fk_tensor ty = fk_view2(FK_F32, y, M, N), tyb = fk_view2(FK_BF16, yb, M, N);
    ref->linear_act(ref, &tyref, &txf, &w, NULL, FK_ACT_SILU); /* f32 precision */
    be->linear_act(be, &ty, &txb, &w, NULL, FK_ACT_SILU);
    CHECKF(tu_same_bits(y, yref, (size_t)(M * N) * 4), "no workspace: bf16 x");
    be->linear_act(be, &tyb, &txb, &w, NULL, FK_ACT_SILU);
    CHECKF(same_as_rounded(yb, yref, M * N), "no workspace: bf16 x and y");
    { /* tiled x and y (tensor.h): untiled and tiled around the same f32 path */
        fk_tensor txt = fk_view2(FK_BF16, NULL, M, K), tyt = fk_view2(FK_BF16, NULL, M, N);
        txt.layout = tyt.layout = FK_LAYOUT_TILES;
        txt.data = fk_alloc(fk_tensor_nbytes(&txt));
        tyt.data = fk_alloc(fk_tensor_nbytes(&tyt));
        float *yu = tu_alloc(M * N);
        fk_cpu_tile_from_f32(&txt, xd);
        be->linear_act(be, &ty, &txt, &w, NULL, FK_ACT_SILU);
        CHECKF(tu_same_bits(y, yref, (size_t)(M * N) * 4), "no workspace: tiled x");
        memset(tyt.data, 0xff, fk_tensor_nbytes(&tyt));
        be->linear_act(be, &tyt, &txb, &w, NULL, FK_ACT_SILU);
        fk_cpu_untile_f32(yu, N, &tyt);
        bool same = true;
        for (int64_t i = 0; i < M * N; i++) same = same && yu[i] == fk_bf16_to_f32(yb[i]);
        CHECKF(same, "no workspace: tiled y");
        fk_free(txt.data), fk_free(tyt.data), fk_free(yu);
    }
    CHECK(fk_backend_cpu_workspace_bytes(be) == 0);
    fk_free(xd), fk_free(wd), fk_free(yref), fk_free(y), fk_free(xb), fk_free(yb);
    be->destroy(be);
    ref->destroy(ref);
}

/* supports(): bf16 activations exactly where the ops take them. */
static void test_supports(void) {
    fk_backend *be = fk_backend_cpu_create(1);
    const int64_t K = 64, N = 32;
    float *wd = tu_alloc(N * K);
    fk_tensor w = fk_view2(FK_F32, wd, N, K);
    for (int rows = 8; rows <= 32; rows += 24) {
        fk_tensor yb = fk_view2(FK_BF16, NULL, rows, N), yf = fk_view2(FK_F32, NULL, rows, N);
        fk_tensor xb = fk_view2(FK_BF16, NULL, rows, K), xf = fk_view2(FK_F32, NULL, rows, K);
        fk_tensor x1 = fk_view2(FK_F32, NULL, rows, K / 2), x2b = fk_view2(FK_BF16, NULL, rows, K / 2);
        fk_tensor yh = fk_view2(FK_F16, NULL, rows, N);
        const fk_tensor *s1[4] = {&yb, &xf, &w, NULL}, *s2[4] = {&yf, &xb, &w, NULL};
        const fk_tensor *s3[5] = {&yf, &x1, &x2b, &w, NULL}, *s4[4] = {&yh, &xf, &w, NULL};
        const fk_tensor *s5[4] = {&yf, &xf, &w, NULL};
        for (int mode = 0; mode < 3; mode++) { /* f32 mode; bf16 mode; bf16 mode, io off */
            if (mode == 1 && fk_backend_cpu_set_precision(be, FK_PREC_BF16) == FK_CPU_BF16_NONE)
                break;
            if (mode == 2) fk_backend_cpu_set_bf16_io(be, false);
            const bool want = mode == 1 && rows >= FK_CPU_BF16_MIN_M;
            CHECKF(be->supports(be, FK_OP_LINEAR_ACT, s1, 4) == want, "bf16 y, rows %d mode %d", rows, mode);
            CHECKF(be->supports(be, FK_OP_LINEAR, s2, 4) == want, "bf16 x, rows %d mode %d", rows, mode);
            CHECKF(be->supports(be, FK_OP_LINEAR_CAT, s3, 5) == want, "bf16 x2, rows %d mode %d", rows, mode);
            CHECK(!be->supports(be, FK_OP_LINEAR, s4, 4)); /* f16 activations: never */
            /* tiled (tensor.h): a product's y or x on the bf16 kernel; linear_cat's x2
             * only after whole FK_TILE_KC blocks (not K / 2 = 32 columns); the norm's y */
            fk_tensor yt = yb, xt = xb, x2t = x2b;
            yt.layout = xt.layout = x2t.layout = FK_LAYOUT_TILES;
            const fk_tensor *t1[4] = {&yt, &xf, &w, NULL}, *t2[4] = {&yf, &xt, &w, NULL};
            const fk_tensor *t3[5] = {&yf, &x1, &x2t, &w, NULL}, *t4[4] = {&yt, &xf, &xf, &xf};
            CHECKF(be->supports(be, FK_OP_LINEAR_ACT, t1, 4) == want, "tiled y, rows %d", rows);
            CHECKF(be->supports(be, FK_OP_LINEAR, t2, 4) == want, "tiled x, rows %d", rows);
            CHECK(!be->supports(be, FK_OP_LINEAR_CAT, t3, 5));
            CHECKF(be->supports(be, FK_OP_LAYERNORM_MODULATE, t4, 4) == want, "tiled norm y");
            CHECK(be->supports(be, FK_OP_LINEAR, s5, 4));  /* f32: always */
        }
        fk_backend_cpu_set_bf16_io(be, true);
        fk_backend_cpu_set_precision(be, FK_PREC_F32);
    }
    fk_free(wd);
    be->destroy(be);
}

int main(void) {
    test_supports();
    for (int k = FK_CPU_BF16_AVX512; k < FK_CPU_BF16_COUNT; k++) {
        if (!fk_cpu_bf16_kernel_available((fk_cpu_bf16_kernel)k)) {
            printf("bf16 kernel %s: not on this machine, skipped\n",
                   fk_cpu_bf16_kernel_name((fk_cpu_bf16_kernel)k));
            continue;
        }
        for (int threads = 1; threads <= 2; threads++) {
            fk_backend *be = fk_backend_cpu_create(threads);
            CHECK(be && fk_backend_cpu_set_bf16_kernel(be, (fk_cpu_bf16_kernel)k));
            char what[96];
            snprintf(what, sizeof(what), "%s, %d threads", fk_cpu_bf16_kernel_name((fk_cpu_bf16_kernel)k), threads);
            test_case(be, 37, 45, 55, 70, FK_ACT_NONE, what);           /* chunk across x1 | x2 */
            test_case(be, 16, 64, 300, 33, FK_ACT_GELU_TANH, what);     /* x1 | x2 on a 32 boundary */
            test_case(be, 70, 96, 384, 96, FK_ACT_GELU_TANH, what);     /* tiny FLUX MLP shapes */
            test_case(be, 300, 260, 20, 290, FK_ACT_SILU, what);        /* > one K and N block */
            be->destroy(be);
        }
        test_no_workspace((fk_cpu_bf16_kernel)k);
    }
    return fk_test_finish("test_linear_bf16_io");
}
