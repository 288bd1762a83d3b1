/* conv2d in the bf16 precision mode (cpu_conv_amx.c: AMX tiles) against
 * double-precision references: odd sizes, strides 1, 2 and 3, symmetric and
 * asymmetric padding (the downsampler's right/bottom pad), 1×1, 3×3 and other
 * kernels, channel counts around the 32-channel blocks, every weight dtype,
 * with and without bias; bitwise agreement across 1, 2 and 3 threads; the
 * f32 mode (and bf16 mode without AMX) keeps the f32 reference's bits.
 * Skipped (passes) on machines without AMX.
 *
 * Two references, two tolerances (as tests/unit/test_ops_cpu_amx.c derives
 * them for the linear):
 * 1. Element-wise, against the exact conv of the bf16-ROUNDED operands (x
 *    rounded to nearest-even by fk_f32_to_bf16, w decoded to f32 then
 *    rounded the same way). A product of two bf16 is exact in f32, so the
 *    only errors are the f32 additions of the accumulation, in any order:
 *    |y − ref| <= (K + 1)·u·Σ|x̃·w̃| + u·(|ref| + |b|), u = 2^-24, K = Ci·kh·kw
 *    (zero padding adds exact zeros). This pins the rounding rule and every
 *    index of the packing (a wrong tap, channel or phase is O(1) off).
 * 2. Statistically, the relative L2 error against the exact conv of the
 *    UNROUNDED operands. RNE to 8 significant bits of x uniform in (−a, a)
 *    (a a power of two) leaves E[ε²]/E[x²] = 2^-14/28; with independent
 *    zero-mean operands the relative errors of x and w add in quadrature:
 *    rel L2 ≈ 2^-7/sqrt(28) = 0.00148 when only x is rounded (bf16 and fp8
 *    weights are exact in bf16), 2^-7·sqrt(2/28) = 0.00209 when w is rounded
 *    too (f32 weights). With ~10^5 independent roundings the measured value
 *    is within a few percent; accepted: [0.85, 1.15] × the prediction. */
#include "cpu_ops_util.h"

static const fk_dtype WDTYPES[] = {FK_F32, FK_BF16, FK_F16, FK_F8_E4M3, FK_F8_E5M2, FK_F64};
#define N_WDTYPES 6

typedef struct conv_case {
    int64_t B, Ci, H, W, Co, kh, kw;
    int stride;
    int pad[4]; /* top, left, bottom, right */
} conv_case;

static int64_t out_h(const conv_case *c) {
    return (c->H + c->pad[0] + c->pad[2] - c->kh) / c->stride + 1;
}
static int64_t out_w(const conv_case *c) {
    return (c->W + c->pad[1] + c->pad[3] - c->kw) / c->stride + 1;
}

/* band_bytes > 0: cap the bf16 conv's input bands (cpu_conv_amx.c) at that
 * many bytes, so that small images run as many bands (one output row each),
 * each taking the overlapping input rows from the band before it. */
static fk_backend *amx_backend(int threads, int64_t band_bytes) {
    fk_backend *be = fk_backend_cpu_create(threads);
    if (!be || !fk_backend_cpu_set_bf16_kernel(be, FK_CPU_BF16_AMX)) {
        fprintf(stderr, "cannot create a CPU backend with the AMX kernel\n");
        exit(2);
    }
    fk_cpu_impl_of(be)->conv16_band_bytes = band_bytes;
    return be;
}

static float round_bf16(float v) { return fk_bf16_to_f32(fk_f32_to_bf16(v)); }

/* Exact conv of x, w (already the values to use) in double: y, and Σ|x·w|
 * per output in mag (if not NULL). */
static void conv_ref(const conv_case *c, const float *x, const float *w, const float *b, double *y,
                     double *mag) {
    const int64_t Ho = out_h(c), Wo = out_w(c);
    for (int64_t bi = 0; bi < c->B; bi++)
        for (int64_t co = 0; co < c->Co; co++)
            for (int64_t oy = 0; oy < Ho; oy++)
                for (int64_t ox = 0; ox < Wo; ox++) {
                    double s = 0, m = 0;
                    for (int64_t ci = 0; ci < c->Ci; ci++)
                        for (int64_t ky = 0; ky < c->kh; ky++) {
                            const int64_t iy = oy * c->stride + ky - c->pad[0];
                            if (iy < 0 || iy >= c->H) continue;
                            for (int64_t kx = 0; kx < c->kw; kx++) {
                                const int64_t ix = ox * c->stride + kx - c->pad[1];
                                if (ix < 0 || ix >= c->W) continue;
                                const int64_t wi = ((co * c->Ci + ci) * c->kh + ky) * c->kw + kx;
                                const int64_t xi = ((bi * c->Ci + ci) * c->H + iy) * c->W + ix;
                                double p = (double)w[wi] * (double)x[xi];
                                s += p;
                                m += fabs(p);
                            }
                        }
                    const int64_t o = ((bi * c->Co + co) * Ho + oy) * Wo + ox;
                    y[o] = s + (b ? (double)b[co] : 0.0);
                    if (mag) mag[o] = m;
                }
}

/* Random weights of dtype dt in (−scale, scale): the raw buffer; `dec` gets
 * the decoded f32 values. */
static void *make_weights(fk_dtype dt, int64_t n, float scale, float *dec) {
    float *tmp = tu_alloc(n);
    tu_fill(tmp, n, -scale, scale);
    void *w = fk_alloc((size_t)(n > 0 ? n : 1) * fk_dtype_size(dt));
    fk_convert_from_f32(w, dt, tmp, (size_t)n);
    fk_convert_to_f32(dec, w, dt, (size_t)n);
    fk_free(tmp);
    return w;
}

static void desc(char *buf, size_t n, const conv_case *c, fk_dtype wdt, bool bias) {
    snprintf(buf, n, "conv B%lld Ci%lld %lldx%lld -> Co%lld k%lldx%lld s%d pad %d,%d,%d,%d w %s%s",
             (long long)c->B, (long long)c->Ci, (long long)c->H, (long long)c->W,
             (long long)c->Co, (long long)c->kh, (long long)c->kw, c->stride, c->pad[0],
             c->pad[1], c->pad[2], c->pad[3], fk_dtype_name(wdt), bias ? " +bias" : "");
}

/* One case: element-wise against reference 1 on 1 thread, then the same
 * bits with 2 and 3 threads, and with bands of one output row (1 and 3
 * threads). */
static void test_case(const conv_case *c, fk_dtype wdt, bool with_bias) {
    const int64_t Ho = out_h(c), Wo = out_w(c), K = c->Ci * c->kh * c->kw;
    const int64_t nx = c->B * c->Ci * c->H * c->W, nw = c->Co * K, ny = c->B * c->Co * Ho * Wo;
    float *x = tu_alloc(nx), *xr = tu_alloc(nx), *wd = tu_alloc(nw), *wr = tu_alloc(nw);
    float *bd = tu_alloc(c->Co), *y0 = tu_alloc(ny), *y1 = tu_alloc(ny);
    double *ref = malloc(sizeof(double) * (size_t)ny), *mag = malloc(sizeof(double) * (size_t)ny);
    tu_fill(x, nx, -1.0f, 1.0f);
    const float ws = wdt == FK_F8_E4M3 || wdt == FK_F8_E5M2 ? 2.0f : 0.5f;
    void *w = make_weights(wdt, nw, ws, wd);
    void *b = with_bias ? make_weights(FK_F32, c->Co, 1.0f, bd) : NULL;
    for (int64_t i = 0; i < nx; i++) xr[i] = round_bf16(x[i]);
    for (int64_t i = 0; i < nw; i++) wr[i] = round_bf16(wd[i]);
    conv_ref(c, xr, wr, b ? bd : NULL, ref, mag);

    fk_tensor tx = fk_view4(FK_F32, x, c->B, c->Ci, c->H, c->W);
    fk_tensor tw = fk_view4(wdt, w, c->Co, c->Ci, c->kh, c->kw);
    fk_tensor tb = fk_view1(FK_F32, b, c->Co);
    fk_tensor ty0 = fk_view4(FK_F32, y0, c->B, c->Co, Ho, Wo);
    fk_tensor ty1 = fk_view4(FK_F32, y1, c->B, c->Co, Ho, Wo);
    char name[200];
    desc(name, sizeof(name), c, wdt, with_bias);

    fk_backend *be = amx_backend(1, 0);
    for (int64_t i = 0; i < ny; i++) y0[i] = NAN; /* every output must be written */
    be->conv2d(be, &ty0, &tx, &tw, b ? &tb : NULL, c->stride, c->pad);
    be->destroy(be);
    int64_t bad = 0;
    double worst = 0;
    for (int64_t i = 0; i < ny; i++) {
        const double bias = b ? fabs((double)bd[(i / (Ho * Wo)) % c->Co]) : 0.0;
        const double tol = (double)(K + 1) * EPS32 * mag[i] + EPS32 * (fabs(ref[i]) + bias) + 1e-37;
        const double err = fabs((double)y0[i] - ref[i]);
        if (!(err <= tol)) {
            if (bad < 3)
                fprintf(stderr, "  %s: y[%lld] = %.9g, bf16 ref %.9g, err %.3g > tol %.3g\n", name,
                        (long long)i, (double)y0[i], ref[i], err, tol);
            bad++;
        }
        if (err / tol > worst) worst = err / tol;
    }
    CHECKF(bad == 0, "%s: %lld of %lld outputs off the bf16 reference (worst err/bound %.3g)", name,
           (long long)bad, (long long)ny, worst);
    static const struct {
        int threads;
        int64_t band_bytes;
    } runs[] = {{2, 0}, {3, 0}, {1, 1}, {3, 1}};
    for (size_t r = 0; r < sizeof(runs) / sizeof(runs[0]); r++) {
        fk_backend *bt = amx_backend(runs[r].threads, runs[r].band_bytes);
        for (int64_t i = 0; i < ny; i++) y1[i] = NAN;
        bt->conv2d(bt, &ty1, &tx, &tw, b ? &tb : NULL, c->stride, c->pad);
        CHECKF(tu_same_bits(y0, y1, (size_t)ny * 4),
               "%s: %d threads%s differ bitwise from 1 thread", name, runs[r].threads,
               runs[r].band_bytes ? " with one-row bands" : "");
        bt->destroy(bt);
    }
    fk_free(x), fk_free(xr), fk_free(wd), fk_free(wr), fk_free(bd), fk_free(y0), fk_free(y1);
    fk_free(w), fk_free(b);
    free(ref), free(mag);
}

/* Reference 2: relative L2 against the unrounded operands (see the header). */
static void test_rel_error(fk_dtype wdt, double predicted) {
    const conv_case c = {1, 64, 24, 26, 64, 3, 3, 1, {1, 1, 1, 1}};
    const int64_t Ho = out_h(&c), Wo = out_w(&c), K = c.Ci * c.kh * c.kw;
    const int64_t nx = c.Ci * c.H * c.W, nw = c.Co * K, ny = c.Co * Ho * Wo;
    float *x = tu_alloc(nx), *wd = tu_alloc(nw), *y = tu_alloc(ny);
    double *ref = malloc(sizeof(double) * (size_t)ny);
    tu_fill(x, nx, -1.0f, 1.0f);
    void *w = make_weights(wdt, nw, 0.5f, wd);
    conv_ref(&c, x, wd, NULL, ref, NULL);
    fk_tensor tx = fk_view4(FK_F32, x, 1, c.Ci, c.H, c.W), tw = fk_view4(wdt, w, c.Co, c.Ci, 3, 3);
    fk_tensor ty = fk_view4(FK_F32, y, 1, c.Co, Ho, Wo);
    fk_backend *be = amx_backend(2, 0);
    be->conv2d(be, &ty, &tx, &tw, NULL, c.stride, c.pad);
    double num = 0, den = 0;
    for (int64_t i = 0; i < ny; i++) {
        const double d = (double)y[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    const double rel = sqrt(num / den);
    printf("  w %s: relative L2 error vs the f32 operands %.5f (predicted %.5f, ratio %.3f)\n",
           fk_dtype_name(wdt), rel, predicted, rel / predicted);
    CHECKF(rel >= 0.85 * predicted && rel <= 1.15 * predicted,
           "w %s: relative L2 %.5f outside [0.85, 1.15] x %.5f", fk_dtype_name(wdt), rel,
           predicted);
    be->destroy(be);
    fk_free(x), fk_free(wd), fk_free(y), fk_free(w);
    free(ref);
}

/* The f32 mode is the f32 reference, bit for bit, before and after a trip
 * through bf16 mode; bf16 mode without AMX (forced NONE, or AVX512-BF16)
 * keeps it too. */
static void test_f32_paths(void) {
    const conv_case c = {1, 20, 9, 13, 17, 3, 3, 1, {1, 1, 1, 1}};
    const int64_t Ho = out_h(&c), Wo = out_w(&c), K = c.Ci * 9;
    const int64_t nx = c.Ci * c.H * c.W, nw = c.Co * K, ny = c.Co * Ho * Wo;
    float *x = tu_alloc(nx), *wd = tu_alloc(nw), *bd = tu_alloc(c.Co);
    float *y0 = tu_alloc(ny), *y1 = tu_alloc(ny);
    tu_fill(x, nx, -1, 1);
    void *w = make_weights(FK_BF16, nw, 0.5f, wd);
    void *b = make_weights(FK_F32, c.Co, 1.0f, bd);
    fk_tensor tx = fk_view4(FK_F32, x, 1, c.Ci, c.H, c.W);
    fk_tensor tw = fk_view4(FK_BF16, w, c.Co, c.Ci, 3, 3);
    fk_tensor tb = fk_view1(FK_F32, b, c.Co);
    fk_tensor ty0 = fk_view4(FK_F32, y0, 1, c.Co, Ho, Wo);
    fk_tensor ty1 = fk_view4(FK_F32, y1, 1, c.Co, Ho, Wo);
    fk_backend *ref = fk_backend_cpu_create(2);
    ref->conv2d(ref, &ty0, &tx, &tw, &tb, 1, c.pad);
    fk_backend *be = fk_backend_cpu_create(2);
    CHECK(fk_backend_cpu_set_bf16_kernel(be, FK_CPU_BF16_NONE));
    be->conv2d(be, &ty1, &tx, &tw, &tb, 1, c.pad);
    CHECKF(tu_same_bits(y0, y1, (size_t)ny * 4),
           "bf16 mode without a bf16 kernel: not the f32 bits");
    if (fk_backend_cpu_set_bf16_kernel(be, FK_CPU_BF16_AVX512)) {
        be->conv2d(be, &ty1, &tx, &tw, &tb, 1, c.pad);
        CHECKF(tu_same_bits(y0, y1, (size_t)ny * 4),
               "bf16 mode, avx512bf16 kernel: not the f32 bits");
    }
    if (fk_backend_cpu_set_bf16_kernel(be, FK_CPU_BF16_AMX)) {
        be->conv2d(be, &ty1, &tx, &tw, &tb, 1, c.pad);
        CHECKF(!tu_same_bits(y0, y1, (size_t)ny * 4), "bf16 mode with AMX gave the f32 bits");
    }
    CHECK(fk_backend_cpu_set_precision(be, FK_PREC_F32) == FK_CPU_BF16_NONE);
    be->conv2d(be, &ty1, &tx, &tw, &tb, 1, c.pad);
    CHECKF(tu_same_bits(y0, y1, (size_t)ny * 4), "f32 mode after bf16 mode: not the f32 bits");
    ref->destroy(ref);
    be->destroy(be);
    fk_free(x), fk_free(wd), fk_free(bd), fk_free(y0), fk_free(y1), fk_free(w), fk_free(b);
}

int main(void) {
    test_f32_paths();
    if (!fk_cpu_bf16_kernel_available(FK_CPU_BF16_AMX)) {
        printf("AMX not available here: only the f32 paths were checked\n");
        printf("%d passed, %d failed\n", fk_test_passed, fk_test_failed);
        return fk_test_failed ? 1 : 0;
    }
    static const conv_case cases[] = {
        {1, 3, 7, 9, 5, 3, 3, 1, {1, 1, 1, 1}},      /* conv_in-like: 3 channels, odd sizes */
        {2, 4, 8, 8, 6, 3, 3, 2, {0, 0, 1, 1}},      /* downsampler: stride 2, pad right/bottom */
        {1, 33, 9, 11, 40, 3, 3, 2, {0, 0, 1, 1}},   /* the same, odd input, 2 channel blocks */
        {1, 37, 11, 13, 17, 1, 1, 1, {0, 0, 0, 0}},  /* 1×1 (nin_shortcut) */
        {2, 70, 5, 7, 33, 1, 1, 1, {0, 0, 0, 0}},    /* 1×1, batch 2, 3 channel blocks */
        {1, 3, 5, 6, 4, 3, 3, 2, {1, 2, 0, 1}},      /* asymmetric pads, stride 2 */
        {1, 16, 9, 10, 33, 3, 3, 1, {1, 1, 1, 1}},   /* Co past one 32-channel strip */
        {1, 6, 9, 2, 5, 3, 3, 1, {1, 1, 1, 1}},      /* Wo = 2: rows much shorter than a tile */
        {1, 7, 3, 1, 3, 3, 1, 1, {1, 0, 1, 0}},      /* 3×1 kernel, W = 1 */
        {3, 2, 4, 5, 70, 2, 3, 3, {2, 0, 0, 2}},     /* stride 3, 2×3 kernel, batch 3 */
        {1, 5, 9, 8, 9, 5, 5, 1, {2, 2, 2, 2}},      /* 5×5 */
        {1, 4, 2, 2, 70, 3, 3, 1, {1, 1, 1, 1}},     /* 2×2 image: channel groups (3 threads) */
        {1, 9, 12, 70, 20, 3, 3, 1, {0, 0, 0, 0}},   /* no padding, rows > 64 pixels */
    };
    const int n_cases = (int)(sizeof(cases) / sizeof(cases[0]));
    for (int i = 0; i < n_cases; i++) test_case(&cases[i], WDTYPES[i % N_WDTYPES], i % 3 != 2);
    for (int d = 0; d < N_WDTYPES; d++) {
        test_case(&cases[2], WDTYPES[d], d % 2 == 0);
        test_case(&cases[6], WDTYPES[d], d % 2 == 1);
    }
    /* larger: several weight blocks (K = 4608: 128 channels a block), several
     * output chunks per band (Co = 256: ~240 pixels a chunk; whole rows, or
     * pieces of rows longer than that), stride 2 */
    static const conv_case big[] = {
        {1, 512, 9, 8, 130, 3, 3, 1, {1, 1, 1, 1}},
        {1, 64, 40, 21, 48, 3, 3, 2, {0, 0, 1, 1}},
        {1, 32, 40, 6, 256, 3, 3, 1, {1, 1, 1, 1}},
        {1, 8, 3, 300, 250, 3, 3, 1, {1, 1, 1, 1}},
    };
    for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++)
        test_case(&big[i], i % 2 ? FK_F32 : FK_BF16, i != 1);
    test_rel_error(FK_F32, 0x1p-7 * sqrt(2.0 / 28.0));
    test_rel_error(FK_BF16, 0x1p-7 / sqrt(28.0));
    test_rel_error(FK_F8_E4M3, 0x1p-7 / sqrt(28.0));
    printf("%d passed, %d failed\n", fk_test_passed, fk_test_failed);
    return fk_test_failed ? 1 : 0;
}
