/* conv2d, group_norm and upsample_nearest2x of the CPU backend against naive
 * double-precision loops; every ISA path and thread count gives the same bits.
 *
 * Tolerances (u = 2⁻²⁴, the f32 unit roundoff):
 * - conv2d: each output is a chain of K fused multiply-adds in f32 plus a
 *   bias add, so |y − y_exact| <= (K + 1)·u·(Σ_k |w_k·x_k| + |b|) (the
 *   classic γ_K bound of a recursive sum). Weights of other dtypes are
 *   compared with the exact function of the dequantized weights, so the
 *   bound is the same.
 * - group_norm: statistics in double (exact to ~1e-16), then
 *   y = (x − m)·s + b in f32 with m, s rounded once: a few roundings of
 *   |x|, |m| and |y| scaled by |s|: |err| <= 8u·(|x| + |m|)·|s| + 2u·|y|.
 * - upsample: a copy, exact.
 */
#include "backend/cpu/cpu.h"
#include "core/rng.h"
#include "test.h"

#define U32 (1.0 / 16777216.0)

static fk_backend *mk(int nt, fk_cpu_isa isa) {
    fk_backend *be = fk_backend_cpu_create_isa(nt, isa);
    return be;
}

static void fill(float *x, int64_t n, uint64_t stream, float lo, float hi) {
    fk_rng_fill_uniform(1234, stream, 0, x, (size_t)n, lo, hi);
}

typedef struct conv_case {
    int64_t B, Ci, H, W, Co, kh, kw;
    int stride;
    int pad[4];
} conv_case;

/* Naive conv in double; also Σ|w·x| + |b| per output for the bound. */
static void conv_ref(const conv_case *c, const float *x, const float *wf, const float *b, double *y,
                     double *mag, int64_t Ho, int64_t Wo) {
    for (int64_t bi = 0; bi < c->B; bi++)
        for (int64_t co = 0; co < c->Co; co++)
            for (int64_t oy = 0; oy < Ho; oy++)
                for (int64_t ox = 0; ox < Wo; ox++) {
                    double s = 0, m = 0;
                    for (int64_t ci = 0; ci < c->Ci; ci++)
                        for (int64_t ky = 0; ky < c->kh; ky++)
                            for (int64_t kx = 0; kx < c->kw; kx++) {
                                int64_t iy = oy * c->stride + ky - c->pad[0];
                                int64_t ix = ox * c->stride + kx - c->pad[1];
                                if (iy < 0 || iy >= c->H || ix < 0 || ix >= c->W) continue;
                                double p = (double)wf[((co * c->Ci + ci) * c->kh + ky) * c->kw + kx] *
                                           (double)x[((bi * c->Ci + ci) * c->H + iy) * c->W + ix];
                                s += p;
                                m += fabs(p);
                            }
                    if (b) {
                        s += b[co];
                        m += fabs(b[co]);
                    }
                    int64_t o = ((bi * c->Co + co) * Ho + oy) * Wo + ox;
                    y[o] = s;
                    mag[o] = m;
                }
}

static void test_conv_case(const conv_case *c, fk_dtype wdt, bool with_bias) {
    const int64_t Ho = (c->H + c->pad[0] + c->pad[2] - c->kh) / c->stride + 1;
    const int64_t Wo = (c->W + c->pad[1] + c->pad[3] - c->kw) / c->stride + 1;
    const int64_t nx = c->B * c->Ci * c->H * c->W, nw = c->Co * c->Ci * c->kh * c->kw;
    const int64_t ny = c->B * c->Co * Ho * Wo, K = c->Ci * c->kh * c->kw;
    float *x = malloc(sizeof(float) * nx), *wf = malloc(sizeof(float) * nw);
    float *bf = malloc(sizeof(float) * c->Co);
    void *wq = malloc(fk_dtype_size(wdt) * nw);
    double *ref = malloc(sizeof(double) * ny), *mag = malloc(sizeof(double) * ny);
    float *y = malloc(sizeof(float) * ny), *y0 = malloc(sizeof(float) * ny);
    fill(x, nx, 1, -1.0f, 1.0f);
    fill(wf, nw, 2, -0.5f, 0.5f);
    fill(bf, c->Co, 3, -0.2f, 0.2f);
    /* quantize the weights to the dtype; the reference uses the dequantized values */
    fk_convert_from_f32(wq, wdt, wf, nw);
    fk_convert_to_f32(wf, wq, wdt, nw);
    conv_ref(c, x, wf, with_bias ? bf : NULL, ref, mag, Ho, Wo);

    fk_tensor tx = fk_view4(FK_F32, x, c->B, c->Ci, c->H, c->W);
    fk_tensor tw = fk_view4(wdt, wq, c->Co, c->Ci, c->kh, c->kw);
    fk_tensor tb = fk_view1(FK_F32, bf, c->Co);
    fk_tensor ty = fk_view4(FK_F32, y, c->B, c->Co, Ho, Wo);
    bool first = true;
    for (int isa = 0; isa < FK_CPU_ISA_COUNT; isa++) {
        if (!fk_cpu_isa_available((fk_cpu_isa)isa)) continue;
        for (int nt = 1; nt <= 3; nt++) {
            fk_backend *be = mk(nt, (fk_cpu_isa)isa);
            CHECK(be != NULL);
            if (!be) continue;
            memset(y, 0xff, sizeof(float) * ny); /* NaN: every output must be written */
            fk_cpu_conv2d(be, &ty, &tx, &tw, with_bias ? &tb : NULL, c->stride, c->pad);
            be->destroy(be);
            if (first) {
                double worst = 0;
                int64_t bad = 0;
                for (int64_t i = 0; i < ny; i++) {
                    double err = fabs((double)y[i] - ref[i]);
                    double tol = (double)(K + 1) * U32 * mag[i] + 1e-30;
                    if (!(err <= tol)) bad++;
                    if (err / tol > worst) worst = err / tol;
                }
                CHECKF(bad == 0,
                       "conv %lldx%lldx%lldx%lld -> %lld k%lldx%lld s%d pad %d,%d,%d,%d w %s: %lld outputs "
                       "beyond the bound (worst err/bound %.3g)",
                       (long long)c->B, (long long)c->Ci, (long long)c->H, (long long)c->W,
                       (long long)c->Co, (long long)c->kh, (long long)c->kw, c->stride, c->pad[0],
                       c->pad[1], c->pad[2], c->pad[3], fk_dtype_name(wdt), (long long)bad, worst);
                memcpy(y0, y, sizeof(float) * ny);
                first = false;
            } else {
                CHECKF(memcmp(y0, y, sizeof(float) * ny) == 0,
                       "conv isa %s threads %d differs bitwise from the first run (Co %lld, K %lld)",
                       fk_cpu_isa_name((fk_cpu_isa)isa), nt, (long long)c->Co, (long long)K);
            }
        }
    }
    free(x), free(wf), free(bf), free(wq), free(ref), free(mag), free(y), free(y0);
}

static void test_conv(void) {
    const conv_case cases[] = {
        {1, 3, 7, 9, 5, 3, 3, 1, {1, 1, 1, 1}},       /* conv_in-like, odd sizes */
        {2, 4, 8, 8, 6, 3, 3, 2, {0, 0, 1, 1}},       /* downsample: pad right/bottom, stride 2 */
        {1, 4, 9, 11, 6, 3, 3, 2, {0, 0, 1, 1}},      /* downsample, odd input */
        {1, 5, 11, 13, 7, 1, 1, 1, {0, 0, 0, 0}},     /* 1×1 (nin_shortcut, attention q/k/v) */
        {1, 16, 9, 10, 33, 3, 3, 1, {1, 1, 1, 1}},    /* Co not a multiple of any MR */
        {1, 3, 5, 6, 4, 3, 3, 2, {1, 2, 0, 1}},       /* asymmetric pads, stride 2 */
        {1, 40, 20, 25, 14, 3, 3, 1, {1, 1, 1, 1}},   /* K = 360 > KC, N = 500 > NC */
        {1, 6, 9, 2, 5, 3, 3, 1, {1, 1, 1, 1}},       /* Wo = 2 < NR: many runs per panel */
        {1, 7, 3, 1, 3, 3, 1, 1, {1, 0, 1, 0}},       /* 3×1 kernel, W = 1 */
        {3, 2, 4, 5, 70, 2, 3, 3, {2, 0, 0, 2}},      /* stride 3, 2×3 kernel, Co 70, batch 3 */
        {1, 32, 24, 40, 64, 3, 3, 1, {1, 1, 1, 1}},   /* fixture-sized */
        /* rows wider than a panel: interior panels are read in place */
        {1, 40, 6, 70, 13, 3, 3, 1, {1, 1, 1, 1}},    /* K = 360 > KC */
        {1, 20, 4, 64, 9, 1, 1, 1, {0, 0, 0, 0}},     /* 1×1: every full panel in place */
        {2, 3, 5, 100, 7, 3, 3, 1, {1, 1, 1, 1}},     /* batch 2, partial last panel */
        {1, 4, 7, 67, 5, 3, 3, 1, {0, 0, 0, 0}},      /* no padding, stride 1 */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        test_conv_case(&cases[i], FK_F32, i % 3 != 2);
    const fk_dtype dts[] = {FK_BF16, FK_F16, FK_F8_E4M3, FK_F8_E5M2, FK_F64};
    for (size_t d = 0; d < sizeof(dts) / sizeof(dts[0]); d++) {
        test_conv_case(&cases[0], dts[d], true);
        test_conv_case(&cases[6], dts[d], true);
        test_conv_case(&cases[11], dts[d], true);
    }
}

static void test_group_norm(void) {
    const int64_t B = 2, C = 64, H = 5, W = 7, G = 32, HW = H * W;
    const float eps = 1e-6f;
    const int64_t n = B * C * HW;
    float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n), *y0 = malloc(sizeof(float) * n);
    float *w = malloc(sizeof(float) * C), *b = malloc(sizeof(float) * C);
    uint16_t *wbf = malloc(2 * C), *bbf = malloc(2 * C);
    fill(x, n, 10, -2.0f, 3.0f);
    for (int64_t i = 0; i < n; i += 7) x[i] += 5.0f; /* a non-zero mean */
    fill(w, C, 11, 0.5f, 1.5f);
    fill(b, C, 12, -0.3f, 0.3f);
    fk_convert_from_f32(wbf, FK_BF16, w, C);
    fk_convert_from_f32(bbf, FK_BF16, b, C);
    fk_convert_to_f32(w, wbf, FK_BF16, C);
    fk_convert_to_f32(b, bbf, FK_BF16, C);
    fk_tensor tx = fk_view4(FK_F32, x, B, C, H, W), ty = fk_view4(FK_F32, y, B, C, H, W);
    fk_tensor tw = fk_view1(FK_F32, w, C), tb = fk_view1(FK_F32, b, C);
    fk_tensor twb = fk_view1(FK_BF16, wbf, C), tbb = fk_view1(FK_BF16, bbf, C);
    fk_backend *be = mk(2, fk_cpu_isa_detect());
    fk_cpu_group_norm(be, &ty, &tx, (int)G, &tw, &tb, eps);
    int64_t bad = 0;
    const int64_t cpg = C / G;
    for (int64_t bi = 0; bi < B; bi++)
        for (int64_t g = 0; g < G; g++) {
            const float *xg = x + (bi * C + g * cpg) * HW;
            double m = 0, v = 0;
            for (int64_t i = 0; i < cpg * HW; i++) m += xg[i];
            m /= (double)(cpg * HW);
            for (int64_t i = 0; i < cpg * HW; i++) v += (xg[i] - m) * (xg[i] - m);
            v /= (double)(cpg * HW);
            for (int64_t c = 0; c < cpg; c++) {
                int64_t ch = g * cpg + c;
                double s = w[ch] / sqrt(v + eps);
                for (int64_t p = 0; p < HW; p++) {
                    int64_t o = (bi * C + ch) * HW + p;
                    double ref = (x[o] - m) * s + b[ch];
                    double tol = 8 * U32 * (fabs(x[o]) + fabs(m)) * fabs(s) + 2 * U32 * fabs(ref);
                    if (!(fabs(y[o] - ref) <= tol)) bad++;
                }
            }
        }
    CHECKF(bad == 0, "group_norm: %lld outputs beyond the bound", (long long)bad);
    memcpy(y0, y, sizeof(float) * n);
    /* bf16 weights holding the same values: same bits */
    fk_cpu_group_norm(be, &ty, &tx, (int)G, &twb, &tbb, eps);
    CHECK(memcmp(y, y0, sizeof(float) * n) == 0);
    /* in place */
    memcpy(y, x, sizeof(float) * n);
    fk_cpu_group_norm(be, &ty, &ty, (int)G, &tw, &tb, eps);
    CHECK(memcmp(y, y0, sizeof(float) * n) == 0);
    be->destroy(be);
    /* 1 thread */
    be = mk(1, fk_cpu_isa_detect());
    fk_cpu_group_norm(be, &ty, &tx, (int)G, &tw, &tb, eps);
    CHECK(memcmp(y, y0, sizeof(float) * n) == 0);
    /* no affine: w = 1, b = 0 → mean 0, variance ~1 per group */
    fk_cpu_group_norm(be, &ty, &tx, (int)G, NULL, NULL, eps);
    double m = 0, v = 0;
    for (int64_t i = 0; i < cpg * HW; i++) m += y[i];
    m /= (double)(cpg * HW);
    for (int64_t i = 0; i < cpg * HW; i++) v += (y[i] - m) * (y[i] - m);
    v /= (double)(cpg * HW);
    CHECKF(fabs(m) < 1e-6 && fabs(v - 1.0) < 1e-4, "group_norm without affine: mean %g var %g", m, v);
    be->destroy(be);
    free(x), free(y), free(y0), free(w), free(b), free(wbf), free(bbf);
}

static void test_upsample(void) {
    const int64_t B = 2, C = 3, H = 5, W = 7;
    float x[2 * 3 * 5 * 7], y[2 * 3 * 10 * 14];
    fill(x, B * C * H * W, 20, -1.0f, 1.0f);
    fk_tensor tx = fk_view4(FK_F32, x, B, C, H, W), ty = fk_view4(FK_F32, y, B, C, 2 * H, 2 * W);
    for (int nt = 1; nt <= 2; nt++) {
        fk_backend *be = mk(nt, fk_cpu_isa_detect());
        memset(y, 0xff, sizeof(y));
        fk_cpu_upsample_nearest2x(be, &ty, &tx);
        be->destroy(be);
        int64_t bad = 0;
        for (int64_t p = 0; p < B * C; p++)
            for (int64_t i = 0; i < 2 * H; i++)
                for (int64_t j = 0; j < 2 * W; j++)
                    if (memcmp(&y[(p * 2 * H + i) * 2 * W + j], &x[(p * H + i / 2) * W + j / 2], 4)) bad++;
        CHECKF(bad == 0, "upsample (%d threads): %lld wrong outputs", nt, (long long)bad);
    }
}

int main(void) {
    test_conv();
    test_group_norm();
    test_upsample();
    return fk_test_finish("test_conv");
}
