/* The small-M path of the CPU GEMM (cpu_gemv.c): for M = 1..FK_CPU_GEMV_MAX_M,
 * every weight dtype, odd N and K, with and without bias, strided operands,
 * 1/2/3 threads, its output must be BITWISE equal to the portable reference
 * path (blocked GEMM, fmaf chains) and to the blocked SIMD GEMM of the same
 * ISA, and within a derived bound of a double-precision naive product.
 *
 * Tolerance against the double reference: each output is one f32 fma chain
 * of K steps (one rounding per step) plus one rounding for the bias, so
 *   |y - y_exact| <= (K + 1)·u·Σ_k |x_k·w_k| + u·(|y_exact| + |b|),  u = 2^-24
 * (γ_K·Σ|terms|, γ_K <= (K+1)u for K·u << 1). The weights are exact after
 * decoding, so the dtype enters only through the decoded values.
 *
 * The weight conversions are checked exhaustively (every bf16 / f16 / fp8
 * code, NaN, Inf, subnormals, -0) through the kernel itself: a one-hot
 * product y = fma(1, w, +0) must give the bits fmaf gives on the decoded
 * value, at every position in a chunk and in the K tail. */
#include "backend/cpu/cpu_gemm.h"
#include "cpu_ops_util.h"

/* Unoptimized or sanitized builds (CI's ASan+UBSan run) are ~30× slower:
 * there the M sweep takes the group-size edges only and the FLUX shape is
 * cut to N = 2304 (the same kernels, fewer panels). */
#if defined(__SANITIZE_ADDRESS__) || !defined(__OPTIMIZE__)
#define SLOW_BUILD 1
#else
#define SLOW_BUILD 0
#endif

static const fk_dtype WDTYPES[] = {FK_F32, FK_BF16, FK_F16, FK_F8_E4M3, FK_F8_E5M2};
#define N_WDTYPES 5

/* Backends: [0] the portable reference (1 thread, never takes the small-M
 * path), then for each SIMD ISA here: 1, 2, 3 threads, and 1 thread with the
 * small-M path off (its blocked GEMM). */
#define MAX_BE 16
static fk_backend *be_list[MAX_BE];
static bool be_gemv[MAX_BE]; /* small-M path on */
static int n_be = 0;

static void backends_init(void) {
    be_list[n_be] = fk_backend_cpu_create_isa(1, FK_CPU_ISA_PORTABLE);
    be_gemv[n_be++] = false;
    for (int isa = FK_CPU_ISA_COUNT - 1; isa > FK_CPU_ISA_PORTABLE; isa--) {
        if (!fk_cpu_isa_available((fk_cpu_isa)isa)) continue;
        for (int nt = 1; nt <= 4; nt++) {
            be_list[n_be] = fk_backend_cpu_create_isa(nt <= 3 ? nt : 1, (fk_cpu_isa)isa);
            if (!be_list[n_be]) {
                fprintf(stderr, "cannot create the CPU backend\n");
                exit(2);
            }
            be_gemv[n_be] = nt <= 3;
            fk_backend_cpu_set_gemv(be_list[n_be], be_gemv[n_be]);
            n_be++;
        }
    }
    if (!be_list[0]) exit(2);
    printf("small-M path: %d backend configurations (best ISA %s), FK_CPU_GEMV_MAX_M = %d\n", n_be,
           fk_cpu_isa_name(fk_cpu_isa_detect()), FK_CPU_GEMV_MAX_M);
}

static const char *be_desc(int i, char *buf, size_t n) {
    snprintf(buf, n, "%s/%d threads/%s", fk_cpu_isa_name(fk_cpu_impl_of(be_list[i])->isa),
             be_list[i]->n_threads, be_gemv[i] ? "gemv" : "gemm");
    return buf;
}

/* Random weights of dtype dt: returns the raw buffer, fills dec with the
 * decoded values. */
static void *make_weights(fk_dtype dt, int64_t n, float scale, float *dec) {
    float *tmp = tu_alloc(n);
    tu_fill(tmp, n, -scale, scale);
    void *w = fk_alloc((size_t)(n > 0 ? n : 1) * fk_dtype_size(dt));
    fk_convert_from_f32(w, dt, tmp, (size_t)n);
    fk_convert_to_f32(dec, w, dt, (size_t)n);
    fk_free(tmp);
    return w;
}

/* c (M, N) with row stride ldc vs the double reference on a (M, K) stride
 * lda and decoded weights wd (N, K) stride ldw; returns the violations. */
static int check_ref(const float *c, int64_t ldc, const float *a, int64_t lda, const float *wd,
                     int64_t ldw, const float *bd, int64_t M, int64_t N, int64_t K) {
    int bad = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = 0, sa = 0;
            for (int64_t k = 0; k < K; k++) {
                double t = (double)a[m * lda + k] * (double)wd[n * ldw + k];
                s += t;
                sa += fabs(t);
            }
            double bias = bd ? (double)bd[n] : 0.0;
            double ref = s + bias;
            double tol = (double)(K + 1) * EPS32 * sa + EPS32 * (fabs(ref) + fabs(bias)) + 1e-37;
            double err = fabs((double)c[m * ldc + n] - ref);
            if (!(err <= tol)) {
                if (bad < 3)
                    fprintf(stderr, "  c[%lld,%lld] = %.9g, ref %.9g, err %.3g > tol %.3g\n",
                            (long long)m, (long long)n, (double)c[m * ldc + n], ref, err, tol);
                bad++;
            }
        }
    return bad;
}

/* One product through fk_cpu_gemm on every backend (and fk_cpu_gemv directly
 * where it applies), strides lda / ldb / ldc >= the row lengths; the columns
 * of c outside [0, N) must stay untouched. `check_double`: also against the
 * double reference (skipped for the largest shapes at M > 1). */
static void test_case(int64_t M, int64_t N, int64_t K, int64_t pad, fk_dtype wdt, fk_dtype bdt,
                      bool check_double) {
    const int64_t lda = K + pad, ldb = K + pad, ldc = N + pad;
    float *a = tu_alloc(M * lda), *wd = tu_alloc(N * ldb), *bd = tu_alloc(N);
    float *c0 = tu_alloc(M * ldc), *c1 = tu_alloc(M * ldc);
    tu_fill(a, M * lda, -1.0f, 1.0f);
    void *w = make_weights(wdt, N * ldb, wdt == FK_F8_E4M3 || wdt == FK_F8_E5M2 ? 2.0f : 0.5f, wd);
    void *b = bdt != FK_DTYPE_COUNT ? make_weights(bdt, N, 1.0f, bd) : NULL;
    char what[160];
    snprintf(what, sizeof(what), "M=%lld N=%lld K=%lld pad=%lld w=%s bias=%s", (long long)M,
             (long long)N, (long long)K, (long long)pad, fk_dtype_name(wdt),
             b ? fk_dtype_name(bdt) : "none");

    for (int64_t i = 0; i < M * ldc; i++) c0[i] = NAN;
    fk_cpu_gemm(be_list[0], M, N, K, a, lda, w, wdt, ldb, b, bdt, c0, ldc);
    if (check_double) {
        int bad = check_ref(c0, ldc, a, lda, wd, ldb, b ? bd : NULL, M, N, K);
        CHECKF(bad == 0, "%s: portable: %d outputs off the double reference", what, bad);
    }
    for (int i = 1; i < n_be; i++) {
        char desc[64];
        for (int64_t j = 0; j < M * ldc; j++) c1[j] = -7.0f;
        fk_backend *be = be_list[i];
        bool took = false;
        if (be_gemv[i] && fk_cpu_gemv_kernel_available(fk_cpu_impl_of(be)->isa, wdt)) {
            /* directly: the small-M path must take these (unless the packed
             * activations, M × K rounded up to 64, exceed the scratch) */
            bool fits = M * ((K + 63) / 64 * 64) <= (int64_t)FK_CPU_SCRATCH_FLOATS;
            took = fk_cpu_gemv(be, M, N, K, a, lda, w, wdt, ldb, b, bdt, c1, ldc);
            CHECKF(took == fits, "%s: fk_cpu_gemv took=%d on %s", what, took, be_desc(i, desc, 64));
        }
        if (!took) fk_cpu_gemm(be, M, N, K, a, lda, w, wdt, ldb, b, bdt, c1, ldc);
        int diff = 0, touched = 0;
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < ldc; n++) {
                uint32_t u0, u1;
                memcpy(&u0, &c0[m * ldc + n], 4);
                memcpy(&u1, &c1[m * ldc + n], 4);
                if (n < N) diff += u0 != u1;
                else touched += c1[m * ldc + n] != -7.0f;
            }
        CHECKF(diff == 0 && touched == 0, "%s: %s: %d outputs differ bitwise from portable, %d "
               "outside touched", what, be_desc(i, desc, 64), diff, touched);
    }
    fk_free(a);
    fk_free(wd);
    fk_free(bd);
    fk_free(c0);
    fk_free(c1);
    fk_free(w);
    fk_free(b);
}

/* Every code of dtype dt (all 2^16 for 16-bit types, 256 for fp8, a sample
 * of specials for f32) as a one-hot row: w[n, n % K] = code n, 0 elsewhere,
 * x = 1: y[n] = fma(1, code, +0) with zero steps around it, which must be
 * fmaf(1, decoded, +0) bit for bit (NaN: the same NaN as the portable path). */
static void test_codes(fk_dtype dt, int64_t K) {
    int64_t N = dt == FK_F32 ? 16 : (int64_t)1 << (8 * fk_dtype_size(dt));
    size_t esz = fk_dtype_size(dt);
    char *w = fk_alloc((size_t)(N * K) * esz);
    memset(w, 0, (size_t)(N * K) * esz);
    float *dec = tu_alloc(N), *x = tu_alloc(K), *y = tu_alloc(N), *y0 = tu_alloc(N);
    static const uint32_t f32_specials[16] = {
        0x00000000u, 0x80000000u, 0x00000001u, 0x80000001u, 0x007fffffu, 0x00800000u,
        0x7f7fffffu, 0xff7fffffu, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00001u,
        0x7f800001u, 0x3f800000u, 0xbf800001u, 0x33800000u};
    for (int64_t n = 0; n < N; n++) {
        char *dst = w + (size_t)(n * K + n % K) * esz;
        if (dt == FK_F32) memcpy(dst, &f32_specials[n], 4);
        else if (esz == 2) {
            uint16_t h = (uint16_t)n;
            memcpy(dst, &h, 2);
        } else
            *(uint8_t *)dst = (uint8_t)n;
        fk_convert_to_f32(&dec[n], dst, dt, 1);
    }
    for (int64_t k = 0; k < K; k++) x[k] = 1.0f;
    fk_cpu_gemm(be_list[0], 1, N, K, x, K, w, dt, K, NULL, FK_F32, y0, N);
    int bad_ref = 0;
    for (int64_t n = 0; n < N; n++) {
        float e = fmaf(1.0f, dec[n], 0.0f);
        uint32_t ue, uy;
        memcpy(&ue, &e, 4);
        memcpy(&uy, &y0[n], 4);
        bool ok = isnan(e) ? isnan(y0[n]) && (ue >> 31) == (uy >> 31) : ue == uy;
        if (!ok && bad_ref++ < 3)
            fprintf(stderr, "  %s code %lld: portable %08x, expected %08x\n", fk_dtype_name(dt),
                    (long long)n, uy, ue);
    }
    CHECKF(bad_ref == 0, "codes of %s (K=%lld): %d portable outputs off fmaf(1, w, 0)",
           fk_dtype_name(dt), (long long)K, bad_ref);
    for (int i = 1; i < n_be; i++) {
        char desc[64];
        fk_cpu_gemm(be_list[i], 1, N, K, x, K, w, dt, K, NULL, FK_F32, y, N);
        int diff = 0;
        for (int64_t n = 0; n < N; n++) {
            uint32_t u0, u1;
            memcpy(&u0, &y0[n], 4);
            memcpy(&u1, &y[n], 4);
            if (u0 != u1 && diff++ < 3)
                fprintf(stderr, "  %s code %lld: %08x, portable %08x\n", fk_dtype_name(dt),
                        (long long)n, u1, u0);
        }
        CHECKF(diff == 0, "codes of %s (K=%lld) on %s: %d differ from portable", fk_dtype_name(dt),
               (long long)K, be_desc(i, desc, 64), diff);
    }
    fk_free(w);
    fk_free(dec);
    fk_free(x);
    fk_free(y);
    fk_free(y0);
}

/* Signed zeros and underflow: products that round to -0 keep the chain at -0
 * (fma(a, b, +0) with a·b tiny and negative); the padded tail steps must not
 * turn it into +0 (they add -0, see cpu_gemv.c). x (1, K) = -2^-100,
 * w = 2^-100 (f32): every product underflows to -0. */
static void test_signed_zero(void) {
    for (int64_t K = 1; K <= 70; K += 23) {
        const int64_t N = 19;
        float *x = tu_alloc(K), *w = tu_alloc(N * K), *y0 = tu_alloc(N), *y = tu_alloc(N);
        for (int64_t k = 0; k < K; k++) x[k] = -0x1p-100f;
        for (int64_t i = 0; i < N * K; i++) w[i] = i % 3 ? 0x1p-100f : 0.0f;
        fk_cpu_gemm(be_list[0], 1, N, K, x, K, w, FK_F32, K, NULL, FK_F32, y0, N);
        for (int i = 1; i < n_be; i++) {
            char desc[64];
            fk_cpu_gemm(be_list[i], 1, N, K, x, K, w, FK_F32, K, NULL, FK_F32, y, N);
            CHECKF(tu_same_bits(y0, y, (size_t)N * 4), "signed zeros K=%lld on %s differ",
                   (long long)K, be_desc(i, desc, 64));
        }
        /* bias -0: -0 + -0 stays -0 */
        float *mz = tu_alloc(N);
        for (int64_t n = 0; n < N; n++) mz[n] = -0.0f;
        fk_cpu_gemm(be_list[0], 1, N, K, x, K, w, FK_F32, K, mz, FK_F32, y0, N);
        for (int i = 1; i < n_be; i++) {
            char desc[64];
            fk_cpu_gemm(be_list[i], 1, N, K, x, K, w, FK_F32, K, mz, FK_F32, y, N);
            CHECKF(tu_same_bits(y0, y, (size_t)N * 4),
                   "signed zeros + bias -0, K=%lld on %s differ", (long long)K, be_desc(i, desc, 64));
        }
        fk_free(mz);
        int negzero = 0;
        for (int64_t n = 0; n < N; n++) negzero += y0[n] == 0.0f && signbit(y0[n]);
        CHECK(negzero > 0); /* the case really has -0 chains */
        fk_free(x);
        fk_free(w);
        fk_free(y0);
        fk_free(y);
    }
}

/* Through the linear op: the f32 backend and bf16 precision mode (M < 16
 * stays on the f32 path there) give the portable bits; F64 weights fall
 * back to the blocked GEMM. */
static void test_linear_op(void) {
    const int64_t M = 2, N = 45, K = 77;
    float *x = tu_alloc(M * K), *wd = tu_alloc(N * K), *y0 = tu_alloc(M * N), *y1 = tu_alloc(M * N);
    tu_fill(x, M * K, -1, 1);
    void *w = make_weights(FK_BF16, N * K, 0.5f, wd);
    fk_tensor tx = fk_view2(FK_F32, x, M, K), tw = fk_view2(FK_BF16, w, N, K);
    fk_tensor ty0 = fk_view2(FK_F32, y0, M, N), ty1 = fk_view2(FK_F32, y1, M, N);
    be_list[0]->linear(be_list[0], &ty0, &tx, &tw, NULL);
    fk_backend *be = fk_backend_cpu_create(2);
    be->linear(be, &ty1, &tx, &tw, NULL);
    CHECK(tu_same_bits(y0, y1, (size_t)(M * N) * 4));
    fk_backend_cpu_set_precision(be, FK_PREC_BF16);
    memset(y1, 0, (size_t)(M * N) * 4);
    be->linear(be, &ty1, &tx, &tw, NULL);
    CHECKF(tu_same_bits(y0, y1, (size_t)(M * N) * 4), "bf16 precision mode, M = %lld",
           (long long)M);
    be->destroy(be);

    /* F64 weights: no small-M kernel, the blocked GEMM answers */
    double *w64 = fk_alloc((size_t)(N * K) * 8);
    for (int64_t i = 0; i < N * K; i++) w64[i] = (double)wd[i];
    for (int i = 1; i < n_be; i++) {
        CHECK(!fk_cpu_gemv(be_list[i], M, N, K, x, K, w64, FK_F64, K, NULL, FK_F32, y1, N));
        fk_cpu_gemm(be_list[i], M, N, K, x, K, w64, FK_F64, K, NULL, FK_F32, y1, N);
        CHECK(tu_same_bits(y0, y1, (size_t)(M * N) * 4));
    }
    /* the portable ISA and M past the threshold decline */
    CHECK(!fk_cpu_gemv(be_list[0], M, N, K, x, K, w, FK_BF16, K, NULL, FK_F32, y1, N));
    CHECK(!fk_cpu_gemv(be_list[1], FK_CPU_GEMV_MAX_M + 1, N, K, x, K, w, FK_BF16, K, NULL, FK_F32,
                       y1, N));
    fk_free(w64);
    fk_free(x);
    fk_free(wd);
    fk_free(y0);
    fk_free(y1);
    fk_free(w);
}

int main(void) {
    backends_init();

    for (int d = 0; d < N_WDTYPES; d++) {
        /* every conversion, at every position of a full chunk (64 bytes of
         * a row) and of the K tail */
        size_t esz = fk_dtype_size(WDTYPES[d]);
        test_codes(WDTYPES[d], (int64_t)(64 / esz + (esz == 1 ? 7 : 8)));
        /* every M up to the threshold, odd N and K, with and without bias */
        static const int64_t m_edges[] = {1, 2, 3, 5, 8, 9, 16, 17, 31, 32};
        int64_t n_m =
            SLOW_BUILD ? (int64_t)(sizeof(m_edges) / sizeof(m_edges[0])) : FK_CPU_GEMV_MAX_M;
        for (int64_t i = 0; i < n_m; i++) {
            int64_t M = SLOW_BUILD ? m_edges[i] : i + 1;
            if (M > FK_CPU_GEMV_MAX_M) continue;
            test_case(M, 37, 131, 0, WDTYPES[d], FK_DTYPE_COUNT, true);
            test_case(M, 37, 131, 0, WDTYPES[d], d % 2 ? FK_BF16 : FK_F32, true);
        }
        /* edges: one column, K below one chunk, K = 0 (bias only), exact panels */
        test_case(3, 1, 7, 0, WDTYPES[d], FK_F16, true);
        test_case(1, 16, 64, 0, WDTYPES[d], FK_DTYPE_COUNT, true);
        test_case(9, 33, 1, 0, WDTYPES[d], FK_F32, true);
        test_case(2, 17, 0, 0, WDTYPES[d], FK_BF16, true);
        test_case(1, 8, 0, 0, WDTYPES[d], FK_DTYPE_COUNT, true);
        /* strided a, b and c (as attention / conv call the GEMM) */
        test_case(5, 29, 45, 3, WDTYPES[d], FK_F32, true);
        test_case(16, 40, 200, 5, WDTYPES[d], FK_DTYPE_COUNT, true);
    }
    /* the FLUX modulation shape, and the bf16 mode threshold */
    const int64_t nbig = SLOW_BUILD ? 2304 : 18432;
    test_case(1, nbig, 3072, 0, FK_BF16, FK_BF16, true);
    test_case(2, nbig / 4, 3072, 0, FK_BF16, FK_DTYPE_COUNT, false);
    test_case(1, nbig / 8, 3072, 0, FK_F8_E4M3, FK_F32, false);
    test_case(15, 300, 1000, 0, FK_F16, FK_BF16, true);
    /* K past the scratch for M = 16: the blocked GEMM answers */
    test_case(16, 5, 20000, 0, FK_BF16, FK_DTYPE_COUNT, true);
    test_signed_zero();
    test_linear_op();

    for (int i = 0; i < n_be; i++) be_list[i]->destroy(be_list[i]);
    return fk_test_finish("test_ops_cpu_gemv");
}
