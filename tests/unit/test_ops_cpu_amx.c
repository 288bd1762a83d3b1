/* CPU linear in bf16 mode (cpu_amx.c: AMX tiles, AVX512-BF16) against
 * double-precision references, for every bf16 kernel this machine can run,
 * every weight dtype, odd and blocked sizes, with and without bias; bitwise
 * agreement across thread counts; the f32 fallback (forced) and the small-M
 * path give the bits of the f32 reference.
 *
 * Two references, two tolerances:
 * 1. Element-wise, against the exact product of the bf16-ROUNDED operands
 *    (x rounded to nearest-even by fk_f32_to_bf16, w decoded then rounded the
 *    same way). A product of two bf16 (8-bit significands) is exact in f32,
 *    so the only errors are the f32 additions of the accumulation, in any
 *    order: |y - ref| <= (K + 1)·u·Σ_k |x̃_k·w̃_k| + u·(|ref| + |b|), u = 2^-24
 *    (the classical γ bound plus one rounding for the bias). This checks the
 *    rounding rule of the packing exactly (a truncating or f32 path fails).
 * 2. Statistically, the relative L2 error against the exact product of the
 *    UNROUNDED operands (what the f32 reference approximates). For x uniform
 *    in (-a, a), a a power of two, RNE to bf16 (8 significant bits) leaves an
 *    absolute error uniform in ±ulp/2 with ulp = 2^(e-7) in binade
 *    [2^e, 2^(e+1)), which holds mass 2^e/a; so E[ε²] = Σ_e (2^e/a)·2^(2e-14)/12
 *    = a²·2^-14/84 and E[ε²]/E[x²] = 2^-14/28. For y = Σ x_k·w_k with
 *    independent zero-mean operands, E[(ỹ - y)²]/E[y²] = E[εx²]/E[x²] +
 *    E[εw²]/E[w²] (products of the two errors are second order), so
 *      relative L2 ≈ 2^-7/sqrt(28) = 0.00148 when only x is rounded (bf16 and
 *      fp8 weights are exact in bf16), 2^-7·sqrt(2/28) = 0.00209 when w is
 *      rounded too (f32 weights).
 *    With ~10^5 independent rounding errors the measured ratio is within a
 *    few percent of this; the test accepts [0.85, 1.15] × the prediction. */
#include "cpu_ops_util.h"

static const fk_dtype WDTYPES[] = {FK_F32, FK_BF16, FK_F16, FK_F8_E4M3, FK_F8_E5M2};
#define N_WDTYPES 5

static fk_backend *bf16_backend(int threads, fk_cpu_bf16_kernel k) {
    fk_backend *be = fk_backend_cpu_create(threads);
    if (!be || !fk_backend_cpu_set_bf16_kernel(be, k)) {
        fprintf(stderr, "cannot create a CPU backend with bf16 kernel %s\n",
                fk_cpu_bf16_kernel_name(k));
        exit(2);
    }
    return be;
}

/* Random weights of dtype dt: returns the raw buffer, fills `dec` with the
 * decoded f32 values. */
static void *make_weights(fk_dtype dt, int64_t n, float scale, float *dec) {
    float *tmp = tu_alloc(n);
    tu_fill(tmp, n, -scale, scale);
    void *w = fk_alloc((size_t)(n > 0 ? n : 1) * fk_dtype_size(dt));
    fk_convert_from_f32(w, dt, tmp, (size_t)n);
    fk_convert_to_f32(dec, w, dt, (size_t)n);
    fk_free(tmp);
    return w;
}

static float round_bf16(float v) { return fk_bf16_to_f32(fk_f32_to_bf16(v)); }

/* Element-wise check of y (M, N), row stride ldy, against the product of the
 * bf16-rounded operands (reference 1 above); returns the number of misses. */
static int check_bf16_ref(const float *y, int64_t ldy, const float *x, int64_t ldx, const float *wd,
                          int64_t ldw, const float *bd, int64_t M, int64_t N, int64_t K) {
    float *xr = tu_alloc(K), *wr = tu_alloc(N * K);
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++) wr[n * K + k] = round_bf16(wd[n * ldw + k]);
    int bad = 0;
    for (int64_t m = 0; m < M; m++) {
        for (int64_t k = 0; k < K; k++) xr[k] = round_bf16(x[m * ldx + k]);
        for (int64_t n = 0; n < N; n++) {
            double s = 0, sa = 0;
            for (int64_t k = 0; k < K; k++) {
                double t = (double)xr[k] * (double)wr[n * K + k];
                s += t;
                sa += fabs(t);
            }
            double bias = bd ? (double)bd[n] : 0.0;
            double ref = s + bias;
            double tol = (double)(K + 1) * EPS32 * sa + EPS32 * (fabs(ref) + fabs(bias)) + 1e-37;
            double err = fabs((double)y[m * ldy + n] - ref);
            if (!(err <= tol)) {
                if (bad < 3)
                    fprintf(stderr, "  y[%lld,%lld] = %.9g, bf16 ref %.9g, err %.3g > tol %.3g\n",
                            (long long)m, (long long)n, (double)y[m * ldy + n], ref, err, tol);
                bad++;
            }
        }
    }
    fk_free(xr);
    fk_free(wr);
    return bad;
}

/* One case on the bf16 kernel k: element-wise against reference 1, and the
 * same bits with 1, 2 and 3 threads. */
static void test_case(fk_cpu_bf16_kernel k, int64_t M, int64_t K, int64_t N, fk_dtype wdt,
                      fk_dtype bdt) {
    float *x = tu_alloc(M * K), *wd = tu_alloc(N * K), *bd = tu_alloc(N);
    float *y0 = tu_alloc(M * N), *y1 = tu_alloc(M * N);
    tu_fill(x, M * K, -1.0f, 1.0f);
    void *w = make_weights(wdt, N * K, wdt == FK_F8_E4M3 || wdt == FK_F8_E5M2 ? 2.0f : 0.5f, wd);
    void *b = bdt != FK_DTYPE_COUNT ? make_weights(bdt, N, 1.0f, bd) : NULL;
    fk_tensor tx = fk_view2(FK_F32, x, M, K), tw = fk_view2(wdt, w, N, K);
    fk_tensor tb = fk_view1(bdt != FK_DTYPE_COUNT ? bdt : FK_F32, b, N);
    fk_tensor ty0 = fk_view2(FK_F32, y0, M, N), ty1 = fk_view2(FK_F32, y1, M, N);
    for (int64_t i = 0; i < M * N; i++) y0[i] = NAN; /* every element must be written */
    fk_backend *be = bf16_backend(1, k);
    be->linear(be, &ty0, &tx, &tw, b ? &tb : NULL);
    int bad = check_bf16_ref(y0, N, x, K, wd, K, b ? bd : NULL, M, N, K);
    CHECKF(bad == 0, "%s linear M=%lld K=%lld N=%lld w=%s b=%s: %d outputs off the bf16 reference",
           fk_cpu_bf16_kernel_name(k), (long long)M, (long long)K, (long long)N, fk_dtype_name(wdt),
           b ? fk_dtype_name(bdt) : "none", bad);
    uint64_t need = (uint64_t)((M + 31) / 32 * 32) * (uint64_t)((K + 31) / 32 * 32) * 2u;
    CHECK(fk_backend_cpu_workspace_bytes(be) >= need);
    be->destroy(be);
    for (int nt = 2; nt <= 3; nt++) {
        fk_backend *bt = bf16_backend(nt, k);
        for (int64_t i = 0; i < M * N; i++) y1[i] = NAN;
        bt->linear(bt, &ty1, &tx, &tw, b ? &tb : NULL);
        CHECKF(tu_same_bits(y0, y1, (size_t)(M * N) * 4),
               "%s linear M=%lld K=%lld N=%lld w=%s: %d threads differ bitwise from 1",
               fk_cpu_bf16_kernel_name(k), (long long)M, (long long)K, (long long)N,
               fk_dtype_name(wdt), nt);
        bt->destroy(bt);
    }
    fk_free(x);
    fk_free(wd);
    fk_free(bd);
    fk_free(y0);
    fk_free(y1);
    fk_free(w);
    fk_free(b);
}

/* Reference 2: relative L2 against the unrounded operands (see the header). */
static void test_rel_error(fk_cpu_bf16_kernel k, fk_dtype wdt, double predicted) {
    const int64_t M = 64, K = 1024, N = 128;
    float *x = tu_alloc(M * K), *wd = tu_alloc(N * K), *y = tu_alloc(M * N);
    tu_fill(x, M * K, -1.0f, 1.0f);
    void *w = make_weights(wdt, N * K, 0.5f, wd);
    fk_tensor tx = fk_view2(FK_F32, x, M, K), tw = fk_view2(wdt, w, N, K);
    fk_tensor ty = fk_view2(FK_F32, y, M, N);
    fk_backend *be = bf16_backend(2, k);
    be->linear(be, &ty, &tx, &tw, NULL);
    double num = 0, den = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = 0;
            for (int64_t kk = 0; kk < K; kk++) s += (double)x[m * K + kk] * (double)wd[n * K + kk];
            double d = (double)y[m * N + n] - s;
            num += d * d;
            den += s * s;
        }
    double rel = sqrt(num / den);
    printf("  %s, w %s: relative L2 error vs the f32 operands %.5f (predicted %.5f, ratio %.3f)\n",
           fk_cpu_bf16_kernel_name(k), fk_dtype_name(wdt), rel, predicted, rel / predicted);
    CHECKF(rel >= 0.85 * predicted && rel <= 1.15 * predicted,
           "%s w %s: relative L2 %.5f outside [0.85, 1.15] x %.5f", fk_cpu_bf16_kernel_name(k),
           fk_dtype_name(wdt), rel, predicted);
    be->destroy(be);
    fk_free(x);
    fk_free(wd);
    fk_free(y);
    fk_free(w);
}

/* fk_cpu_gemm_bf16 with row strides: c is a column block of a wider matrix;
 * columns outside the block stay untouched. */
static void test_strides(fk_cpu_bf16_kernel k) {
    const int64_t M = 45, N = 70, K = 77, lda = 80, ldb = 90, ldc = 75;
    float *a = tu_alloc(M * lda), *bd = tu_alloc(N * ldb), *c = tu_alloc(M * ldc);
    uint16_t *b = fk_alloc((size_t)(N * ldb) * 2);
    tu_fill(a, M * lda, -1, 1);
    tu_fill(bd, N * ldb, -1, 1);
    fk_convert_from_f32(b, FK_BF16, bd, (size_t)(N * ldb));
    fk_convert_to_f32(bd, b, FK_BF16, (size_t)(N * ldb));
    for (int nt = 1; nt <= 2; nt++) {
        fk_backend *be = bf16_backend(nt, k);
        for (int64_t j = 0; j < M * ldc; j++) c[j] = -7.0f;
        bool ran =
            fk_cpu_gemm_bf16(be, M, N - 5, K, a, lda, b, FK_BF16, ldb, NULL, FK_F32, c + 3, ldc);
        int bad = ran ? check_bf16_ref(c + 3, ldc, a, lda, bd, ldb, NULL, M, N - 5, K) : -1;
        int touched = 0;
        for (int64_t m = 0; m < M; m++)
            for (int64_t j = 0; j < ldc; j++)
                if ((j < 3 || j >= 3 + N - 5) && c[m * ldc + j] != -7.0f) touched++;
        CHECKF(bad == 0 && touched == 0,
               "%s gemm with strides, %d threads: %d off, %d outside touched",
               fk_cpu_bf16_kernel_name(k), nt, bad, touched);
        be->destroy(be);
    }
    fk_free(a);
    fk_free(bd);
    fk_free(c);
    fk_free(b);
}

/* Paths that must give the f32 reference bits: bf16 mode with fewer than
 * FK_CPU_BF16_MIN_M rows, and the forced "no bf16 hardware" fallback. */
static void test_f32_paths(void) {
    static const int64_t shapes[][3] = {
        {1, 300, 70}, {FK_CPU_BF16_MIN_M - 1, 70, 40}, {40, 130, 97}};
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        int64_t M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        float *x = tu_alloc(M * K), *wd = tu_alloc(N * K), *bd = tu_alloc(N);
        float *y0 = tu_alloc(M * N), *y1 = tu_alloc(M * N);
        tu_fill(x, M * K, -1, 1);
        void *w = make_weights(FK_BF16, N * K, 0.5f, wd);
        void *b = make_weights(FK_F32, N, 1.0f, bd);
        fk_tensor tx = fk_view2(FK_F32, x, M, K), tw = fk_view2(FK_BF16, w, N, K);
        fk_tensor tb = fk_view1(FK_F32, b, N);
        fk_tensor ty0 = fk_view2(FK_F32, y0, M, N), ty1 = fk_view2(FK_F32, y1, M, N);
        fk_backend *ref = fk_backend_cpu_create(2);
        ref->linear(ref, &ty0, &tx, &tw, &tb);
        fk_backend *be = fk_backend_cpu_create(2);
        bool forced = fk_backend_cpu_set_bf16_kernel(be, FK_CPU_BF16_NONE);
        CHECK(forced);
        be->linear(be, &ty1, &tx, &tw, &tb);
        CHECKF(tu_same_bits(y0, y1, (size_t)(M * N) * 4),
               "bf16 mode without a bf16 kernel, M=%lld: not the f32 reference bits", (long long)M);
        if (M < FK_CPU_BF16_MIN_M) {
            fk_cpu_bf16_kernel k = fk_backend_cpu_set_precision(be, FK_PREC_BF16);
            be->linear(be, &ty1, &tx, &tw, &tb);
            CHECKF(tu_same_bits(y0, y1, (size_t)(M * N) * 4),
                   "bf16 mode (%s), M=%lld < %d: not the f32 reference bits",
                   fk_cpu_bf16_kernel_name(k), (long long)M, FK_CPU_BF16_MIN_M);
        }
        /* back to f32 mode: the reference again */
        CHECK(fk_backend_cpu_set_precision(be, FK_PREC_F32) == FK_CPU_BF16_NONE);
        be->linear(be, &ty1, &tx, &tw, &tb);
        CHECK(tu_same_bits(y0, y1, (size_t)(M * N) * 4));
        ref->destroy(ref);
        be->destroy(be);
        fk_free(x);
        fk_free(wd);
        fk_free(bd);
        fk_free(y0);
        fk_free(y1);
        fk_free(w);
        fk_free(b);
    }
}

/* ---- attention ---- */

/* Double-precision attention of the given (f32) operands: out (Lq, H·D). */
static void attention_ref(double *out, const float *q, const float *k, const float *v, int64_t Lq,
                          int64_t Lk, int64_t H, int64_t D, double scale, const float *bias) {
    double *s = malloc((size_t)Lk * sizeof(double));
    for (int64_t h = 0; h < H; h++)
        for (int64_t l = 0; l < Lq; l++) {
            double mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j < Lk; j++) {
                double d = 0;
                for (int64_t e = 0; e < D; e++)
                    d += (double)q[(l * H + h) * D + e] * (double)k[(j * H + h) * D + e];
                s[j] = d * scale + (bias ? (double)bias[(h * Lq + l) * Lk + j] : 0.0);
                mx = s[j] > mx ? s[j] : mx;
            }
            for (int64_t j = 0; j < Lk; j++) sum += (s[j] = exp(s[j] - mx));
            for (int64_t e = 0; e < D; e++) {
                double o = 0;
                for (int64_t j = 0; j < Lk; j++) o += s[j] * (double)v[(j * H + h) * D + e];
                out[l * H * D + h * D + e] = o / sum;
            }
        }
    free(s);
}

/* A bf16 out (bf16 activations, cpu.h) on the AMX backend, 1 and 2 threads:
 * every value the f32 output o32 of the same call rounded to nearest-even,
 * bit for bit (the AMX kernel's store, or the f32 reference rounded where
 * that kernel does not apply). */
static void check_attention_bf16_out(const fk_tensor *tq, const fk_tensor *tk, const fk_tensor *tv,
                                     const fk_tensor *b, float scale, bool causal,
                                     const float *o32) {
    const int64_t Lq = tq->shape[0], HD = tq->shape[1] * tq->shape[2], n = Lq * HD;
    uint16_t *ob = fk_alloc((size_t)n * 2), *want = fk_alloc((size_t)n * 2);
    for (int64_t i = 0; i < n; i++) want[i] = fk_f32_to_bf16(o32[i]);
    fk_tensor to = fk_view2(FK_BF16, ob, Lq, HD);
    const fk_tensor *srcs[5] = {&to, tq, tk, tv, b};
    for (int nt = 1; nt <= 2; nt++) {
        fk_backend *be = bf16_backend(nt, FK_CPU_BF16_AMX);
        CHECKF(be->supports(be, FK_OP_ATTENTION, srcs, 5), "attention Lq=%lld: bf16 out refused",
               (long long)Lq);
        memset(ob, 0xff, (size_t)n * 2);
        be->attention(be, &to, tq, tk, tv, b, scale, causal);
        CHECKF(tu_same_bits(ob, want, (size_t)n * 2),
               "attention Lq=%lld HD=%lld%s, %d threads: bf16 out is not the f32 out rounded",
               (long long)Lq, (long long)HD, causal ? " causal" : "", nt);
        be->destroy(be);
    }
    fk_free(ob);
    fk_free(want);
}

/* bf16 q, k, v (bf16 activations, cpu.h) on the AMX backend, 1 and 2
 * threads, out f32 and bf16: bit for bit the out of the same call on the
 * f32 q, k, v that round to them (the AMX kernel reads the same operands;
 * where it does not apply, the f32 reference on the widened values). */
static void check_attention_bf16_in(const fk_tensor *tq, const fk_tensor *tk, const fk_tensor *tv,
                                    const fk_tensor *b, float scale, bool causal) {
    const fk_tensor *src[3] = {tq, tk, tv};
    fk_tensor t32[3], t16[3];
    float *r32[3];
    uint16_t *r16[3];
    for (int i = 0; i < 3; i++) {
        const int64_t n = fk_tensor_numel(src[i]);
        r32[i] = tu_alloc(n);
        r16[i] = fk_alloc((size_t)n * 2);
        fk_convert_from_f32(r16[i], FK_BF16, src[i]->data, (size_t)n);
        fk_convert_to_f32(r32[i], r16[i], FK_BF16, (size_t)n);
        t32[i] = *src[i], t32[i].data = r32[i];
        t16[i] = *src[i], t16[i].data = r16[i], t16[i].dtype = FK_BF16;
    }
    const int64_t Lq = tq->shape[0], HD = tq->shape[1] * tq->shape[2], n = Lq * HD;
    float *want = tu_alloc(n), *got = tu_alloc(n); /* room for either out dtype */
    for (int nt = 1; nt <= 2; nt++)
        for (int ob = 0; ob < 2; ob++) {
            fk_backend *be = bf16_backend(nt, FK_CPU_BF16_AMX);
            const fk_dtype odt = ob ? FK_BF16 : FK_F32;
            fk_tensor tw = fk_view2(odt, want, Lq, HD), tg = fk_view2(odt, got, Lq, HD);
            const fk_tensor *srcs[5] = {&tg, &t16[0], &t16[1], &t16[2], b};
            CHECKF(be->supports(be, FK_OP_ATTENTION, srcs, 5), "attention Lq=%lld: bf16 q refused",
                   (long long)Lq);
            memset(got, 0xff, (size_t)n * 4);
            be->attention(be, &tw, &t32[0], &t32[1], &t32[2], b, scale, causal);
            be->attention(be, &tg, &t16[0], &t16[1], &t16[2], b, scale, causal);
            CHECKF(tu_same_bits(got, want, (size_t)n * fk_dtype_size(odt)),
                   "attention Lq=%lld HD=%lld%s, %d threads, %s out: bf16 q, k, v differ from "
                   "their f32 values",
                   (long long)Lq, (long long)HD, causal ? " causal" : "", nt, fk_dtype_name(odt));
            be->destroy(be);
        }
    for (int i = 0; i < 3; i++) fk_free(r32[i]), fk_free(r16[i]);
    fk_free(want);
    fk_free(got);
}

/* AMX attention against the double reference (relative L2, bound derived in
 * the comment below) and the same bits for 1, 2 and 3 threads.
 *
 * Bound, for q, k, v uniform in (-1, 1) and scale = 1/sqrt(D) (logits of
 * standard deviation 1/3, so the weights p stay within a factor ~e of each
 * other and o = Σ p v / Σ p averages n ≈ Lk terms):
 * - v rounded to bf16: error Σ p εv / Σ p against o = Σ p v / Σ p, both
 *   sums of independent terms with the same weights: relative 2^-7/sqrt(28)
 *   = 0.00148, as for the linear;
 * - p rounded to bf16 (p = exp(s − m) in (e^-3, 1], significands spread
 *   over the binades): the same per-term relative error, at most 2^-8/sqrt(3)
 *   = 0.00226 (uniform relative error, the worst case of the distributions);
 * - q, k rounded: logit error scale·Σ_d (εq k + q εk), of standard deviation
 *   sqrt(2·D·(2^-14/84)·(1/3))/sqrt(D) = 2^-7·sqrt(2/252) = 0.0007, which
 *   perturbs the weights by that relative amount: below 0.0007 on o.
 * Independent, they add in quadrature: sqrt(0.00148² + 0.00226² + 0.0007²)
 * = 0.0028 at most; the test allows 1.5 × that (0.0042), far below what a
 * wrong tile layout or a softmax bug gives (O(1)).
 * With a bias (T5's relative positions; here uniform in (-1, 1), exact in
 * f32 and added before the max): the weights p spread over a few more
 * binades, the bound above (the worst case of the p distribution) still
 * holds; a transposed or misplaced bias changes o by O(1). */
static void test_attention_case_slope(int64_t Lq, int64_t Lk, int64_t H, int64_t D, bool with_bias,
                                      float slope) {
    const int64_t nq = Lq * H * D, nk = Lk * H * D;
    float *q = tu_alloc(nq), *k = tu_alloc(nk), *v = tu_alloc(nk);
    float *o0 = tu_alloc(nq), *o1 = tu_alloc(nq), *bias = tu_alloc(H * Lq * Lk);
    double *ref = malloc((size_t)nq * sizeof(double));
    tu_fill(q, nq, -1, 1);
    tu_fill(k, nk, -1, 1);
    tu_fill(v, nk, -1, 1);
    tu_fill(bias, H * Lq * Lk, -1, 1);
    for (int64_t i = 0; i < H * Lq * Lk; i++) bias[i] += slope * (float)(i % Lk);
    fk_tensor tb = fk_view3(FK_F32, bias, H, Lq, Lk);
    const fk_tensor *b = with_bias ? &tb : NULL;
    const float scale = 1.0f / sqrtf((float)D);
    attention_ref(ref, q, k, v, Lq, Lk, H, D, (double)scale, with_bias ? bias : NULL);
    fk_tensor tq = fk_view3(FK_F32, q, Lq, H, D), tk = fk_view3(FK_F32, k, Lk, H, D);
    fk_tensor tv = fk_view3(FK_F32, v, Lk, H, D), to0 = fk_view2(FK_F32, o0, Lq, H * D);
    fk_tensor to1 = fk_view2(FK_F32, o1, Lq, H * D);
    fk_backend *be = bf16_backend(1, FK_CPU_BF16_AMX);
    CHECK(be->attention == fk_cpu_attention_bf16);
    for (int64_t i = 0; i < nq; i++) o0[i] = NAN;
    be->attention(be, &to0, &tq, &tk, &tv, b, scale, false);
    double num = 0, den = 0;
    for (int64_t i = 0; i < nq; i++) {
        double d = (double)o0[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    double rel = sqrt(num / den), bound = 1.5 * 0.0028;
    printf("  amx attention Lq=%lld Lk=%lld H=%lld D=%lld%s slope %g: relative L2 %.5f (bound %.4f)\n",
           (long long)Lq, (long long)Lk, (long long)H, (long long)D, with_bias ? " +bias" : "",
           (double)slope, rel, bound);
    CHECKF(rel <= bound, "amx attention Lq=%lld Lk=%lld H=%lld D=%lld%s: relative L2 %.5f > %.4f",
           (long long)Lq, (long long)Lk, (long long)H, (long long)D, with_bias ? " +bias" : "", rel,
           bound);
    be->destroy(be);
    for (int nt = 2; nt <= 3; nt++) {
        fk_backend *bt = bf16_backend(nt, FK_CPU_BF16_AMX);
        for (int64_t i = 0; i < nq; i++) o1[i] = NAN;
        bt->attention(bt, &to1, &tq, &tk, &tv, b, scale, false);
        CHECKF(tu_same_bits(o0, o1, (size_t)nq * 4),
               "amx attention Lq=%lld Lk=%lld: %d threads differ bitwise from 1", (long long)Lq,
               (long long)Lk, nt);
        bt->destroy(bt);
    }
    check_attention_bf16_out(&tq, &tk, &tv, b, scale, false, o0);
    check_attention_bf16_in(&tq, &tk, &tv, b, scale, false);
    fk_free(q);
    fk_free(k);
    fk_free(v);
    fk_free(o0);
    fk_free(o1);
    fk_free(bias);
    free(ref);
}

static void test_attention_case(int64_t Lq, int64_t Lk, int64_t H, int64_t D, bool with_bias) {
    test_attention_case_slope(Lq, Lk, H, D, with_bias, 0.0f);
}

/* Cases the AMX attention hands to the f32 reference (causal with a bias,
 * causal, D not a multiple of 32, attention switched off): the reference's bits. */
static void test_attention_fallbacks(void) {
    const int64_t Lq = 40, Lk = 50, H = 2;
    for (int c = 0; c < 4; c++) {
        int64_t D = c == 2 ? 24 : 64;
        const int64_t nq = Lq * H * D, nk = Lk * H * D;
        float *q = tu_alloc(nq), *k = tu_alloc(nk), *v = tu_alloc(nk),
              *bias = tu_alloc(H * Lq * Lk);
        float *o0 = tu_alloc(nq), *o1 = tu_alloc(nq);
        tu_fill(q, nq, -1, 1);
        tu_fill(k, nk, -1, 1);
        tu_fill(v, nk, -1, 1);
        tu_fill(bias, H * Lq * Lk, -1, 1);
        fk_tensor tq = fk_view3(FK_F32, q, Lq, H, D), tk = fk_view3(FK_F32, k, Lk, H, D);
        fk_tensor tv = fk_view3(FK_F32, v, Lk, H, D), tb = fk_view3(FK_F32, bias, H, Lq, Lk);
        fk_tensor to0 = fk_view2(FK_F32, o0, Lq, H * D), to1 = fk_view2(FK_F32, o1, Lq, H * D);
        const fk_tensor *b = c == 0 ? &tb : NULL;
        bool causal = c <= 1;
        fk_backend *ref = fk_backend_cpu_create(2), *be = bf16_backend(2, FK_CPU_BF16_AMX);
        if (c == 3) {
            fk_backend_cpu_set_bf16_attention(be, false);
            CHECK(be->attention == fk_cpu_attention);
        }
        ref->attention(ref, &to0, &tq, &tk, &tv, b, 0.125f, causal);
        be->attention(be, &to1, &tq, &tk, &tv, b, 0.125f, causal);
        CHECKF(tu_same_bits(o0, o1, (size_t)nq * 4),
               "attention case %d (causal+bias / causal / D=24 / off): not the f32 reference bits", c);
        if (c < 3) { /* a bf16 out there: the reference rounded; bf16 q, k, v widened */
            check_attention_bf16_out(&tq, &tk, &tv, b, 0.125f, causal, o0);
            check_attention_bf16_in(&tq, &tk, &tv, b, 0.125f, causal);
        } else { /* attention off: no bf16 out */
            fk_tensor tob = fk_view2(FK_BF16, o1, Lq, H * D), tqb = tq;
            tqb.dtype = FK_BF16;
            const fk_tensor *srcs[5] = {&tob, &tq, &tk, &tv, NULL};
            const fk_tensor *srcq[5] = {&to1, &tqb, &tk, &tv, NULL};
            CHECK(!be->supports(be, FK_OP_ATTENTION, srcs, 5));
            CHECK(!be->supports(be, FK_OP_ATTENTION, srcq, 5));
        }
        ref->destroy(ref);
        be->destroy(be);
        fk_free(q);
        fk_free(k);
        fk_free(v);
        fk_free(bias);
        fk_free(o0);
        fk_free(o1);
    }
}

int main(void) {
    fk_cpu_bf16_kernel best = fk_cpu_bf16_kernel_detect();
    printf("bf16 kernel of this machine: %s\n", fk_cpu_bf16_kernel_name(best));
    test_f32_paths();
    int n_kernels = 0;
    for (int ki = FK_CPU_BF16_COUNT - 1; ki > 0; ki--) {
        fk_cpu_bf16_kernel k = (fk_cpu_bf16_kernel)ki;
        if (!fk_cpu_bf16_kernel_available(k)) {
            printf("  %s: not available here, skipped\n", fk_cpu_bf16_kernel_name(k));
            continue;
        }
        n_kernels++;
        /* odd sizes, every weight dtype, with and without bias */
        static const int64_t small[][3] = {{32, 32, 32}, {33, 45, 17}, {70, 1, 33}, {47, 100, 70}};
        for (size_t s = 0; s < sizeof(small) / sizeof(small[0]); s++)
            for (int d = 0; d < N_WDTYPES; d++) {
                test_case(k, small[s][0], small[s][1], small[s][2], WDTYPES[d], FK_DTYPE_COUNT);
                test_case(k, small[s][0], small[s][1], small[s][2], WDTYPES[d],
                          d % 2 ? FK_BF16 : FK_F32);
            }
        /* larger than every block (MC = 256, KC = 512, NC = 512), with thread splits */
        test_case(k, 300, 1100, 530, FK_BF16, FK_F16);
        test_case(k, 64, 530, 1100, FK_F32, FK_DTYPE_COUNT);
        /* 7 NC-column panels, the last one partial: handed out one at a time
         * (a shared counter) with 2 and 3 threads */
        test_case(k, 40, 70, 1700, FK_BF16, FK_F32);
        test_strides(k);
        test_rel_error(k, FK_F32, 0x1p-7 * sqrt(2.0 / 28.0));
        test_rel_error(k, FK_BF16, 0x1p-7 / sqrt(28.0));
        test_rel_error(k, FK_F8_E4M3, 0x1p-7 / sqrt(28.0));
    }
    if (fk_cpu_bf16_kernel_available(FK_CPU_BF16_AMX)) {
        test_attention_fallbacks();
        test_attention_case(64, 64, 2, 128, false);  /* one block */
        test_attention_case(37, 45, 3, 32, false);   /* partial blocks everywhere */
        test_attention_case(150, 200, 2, 96, false); /* several query and key blocks */
        test_attention_case(129, 77, 1, 256, false);
        test_attention_case(100, 90, 1, 512, false); /* the largest D (the VAE's mid block) */
        test_attention_case(40, 50, 2, 320, true);   /* two d blocks of unequal width */
        test_attention_case(64, 64, 2, 64, true);    /* with a bias (T5) */
        test_attention_case(150, 200, 3, 64, true);  /* bias, partial blocks, tails */
        /* scores that grow along the keys (a bias ramp, in natural-log units
         * per key): 0.02 raises a query's max by ~3.7 (log2) per block of 128
         * keys, within the slack of the kept shift (weights up to 2^8, no
         * rescale); 0.15 by ~28 per block, so every block is redone with a new
         * shift; −0.1: the first block holds the max, later weights vanish */
        test_attention_case_slope(100, 600, 2, 64, true, 0.02f);
        test_attention_case_slope(100, 600, 2, 64, true, 0.15f);
        test_attention_case_slope(70, 600, 2, 128, true, -0.1f);
    }
    if (n_kernels == 0)
        printf("no bf16 kernel on this machine: only the f32 fallback was tested\n");
    return fk_test_finish("test_ops_cpu_amx");
}
