/* CPU linear / GEMM against a naive double-precision reference computed from
 * the decoded weights, for every weight dtype, odd and blocked sizes; and
 * bitwise agreement of every kernel path (portable, AVX2, AVX-512) and thread
 * count.
 *
 * Tolerance: each output is one f32 fma chain of K steps (one rounding per
 * step) plus one rounding for the bias, so
 *   |y - y_exact| <= (K + 1)·u·Σ_k |x_k·w_k| + u·(|y_exact| + |b|),  u = 2^-24,
 * the classical bound γ_K·Σ|terms| (γ_K <= (K+1)u for K·u << 1). The weights
 * are exact after decoding, so the dtype enters only through the reference. */
#include "backend/cpu/cpu_gemm.h"
#include "cpu_ops_util.h"

static const fk_dtype WDTYPES[] = {FK_F32, FK_BF16, FK_F16, FK_F8_E4M3, FK_F8_E5M2};
#define N_WDTYPES 5

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

/* y (M, N) vs the double reference; returns the number of violations. */
static int check_linear_ref(const float *y, const float *x, const float *wd, const float *bd,
                            int64_t M, int64_t N, int64_t K, int64_t ldy) {
    int bad = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = 0, sa = 0;
            for (int64_t k = 0; k < K; k++) {
                double t = (double)x[m * K + k] * (double)wd[n * K + k];
                s += t;
                sa += fabs(t);
            }
            double bias = bd ? (double)bd[n] : 0.0;
            double ref = s + bias;
            double tol = (double)(K + 1) * EPS32 * sa + EPS32 * (fabs(ref) + fabs(bias)) + 1e-37;
            double err = fabs((double)y[m * ldy + n] - ref);
            if (!(err <= tol)) {
                if (bad < 3)
                    fprintf(stderr, "  y[%lld,%lld] = %.9g, ref %.9g, err %.3g > tol %.3g\n",
                            (long long)m, (long long)n, (double)y[m * ldy + n], ref, err, tol);
                bad++;
            }
        }
    return bad;
}

/* One case: every backend configuration must give the bits of the first,
 * which must be within tolerance of the reference. */
static void test_linear_case(int64_t M, int64_t K, int64_t N, fk_dtype wdt, fk_dtype bdt,
                             int n_backends) {
    float *x = tu_alloc(M * K), *wd = tu_alloc(N * K), *bd = tu_alloc(N);
    float *y0 = tu_alloc(M * N), *y1 = tu_alloc(M * N);
    tu_fill(x, M * K, -1.0f, 1.0f);
    void *w = make_weights(wdt, N * K, wdt == FK_F8_E4M3 || wdt == FK_F8_E5M2 ? 2.0f : 0.5f, wd);
    void *b = bdt != FK_DTYPE_COUNT ? make_weights(bdt, N, 1.0f, bd) : NULL;
    fk_tensor tx = fk_view2(FK_F32, x, M, K), tw = fk_view2(wdt, w, N, K);
    fk_tensor tb = fk_view1(bdt != FK_DTYPE_COUNT ? bdt : FK_F32, b, N);
    fk_tensor ty0 = fk_view2(FK_F32, y0, M, N), ty1 = fk_view2(FK_F32, y1, M, N);

    /* NaN-fill the outputs: every element must be written */
    for (int64_t i = 0; i < M * N; i++) y0[i] = NAN;
    fk_backend *be0 = tu_backends[0];
    be0->linear(be0, &ty0, &tx, &tw, b ? &tb : NULL);
    int bad = check_linear_ref(y0, x, wd, b ? bd : NULL, M, N, K, N);
    CHECKF(bad == 0, "linear M=%lld K=%lld N=%lld w=%s b=%s: %d outputs off the reference",
           (long long)M, (long long)K, (long long)N, fk_dtype_name(wdt),
           b ? fk_dtype_name(bdt) : "none", bad);
    for (int i = 1; i < n_backends; i++) {
        char desc[64];
        for (int64_t j = 0; j < M * N; j++) y1[j] = NAN;
        tu_backends[i]->linear(tu_backends[i], &ty1, &tx, &tw, b ? &tb : NULL);
        CHECKF(tu_same_bits(y0, y1, (size_t)(M * N) * 4),
               "linear M=%lld K=%lld N=%lld w=%s: %s differs bitwise from %s", (long long)M,
               (long long)K, (long long)N, fk_dtype_name(wdt), tu_backend_desc(tu_backends[i], desc, 64),
               fk_cpu_isa_name(fk_cpu_impl_of(be0)->isa));
    }
    fk_free(x);
    fk_free(wd);
    fk_free(bd);
    fk_free(y0);
    fk_free(y1);
    fk_free(w);
    fk_free(b);
}

/* fk_cpu_gemm with row strides (as attention / conv use it): c is a column
 * block of a wider matrix; columns outside the block must stay untouched. */
static void test_gemm_strides(void) {
    const int64_t M = 29, N = 37, K = 45, lda = 50, ldb = 47, ldc = 41;
    float *a = tu_alloc(M * lda), *bd = tu_alloc(N * ldb), *c = tu_alloc(M * ldc);
    float *ac = tu_alloc(M * K), *bc = tu_alloc(N * K);
    tu_fill(a, M * lda, -1, 1);
    uint16_t *b = fk_alloc((size_t)(N * ldb) * 2);
    float *tmp = tu_alloc(N * ldb);
    tu_fill(tmp, N * ldb, -1, 1);
    fk_convert_from_f32(b, FK_BF16, tmp, (size_t)(N * ldb));
    fk_convert_to_f32(bd, b, FK_BF16, (size_t)(N * ldb));
    for (int64_t m = 0; m < M; m++) memcpy(ac + m * K, a + m * lda, (size_t)K * 4);
    for (int64_t n = 0; n < N; n++) memcpy(bc + n * K, bd + n * ldb, (size_t)K * 4);
    for (int i = 0; i < tu_n_backends; i++) {
        for (int64_t j = 0; j < M * ldc; j++) c[j] = -7.0f;
        fk_cpu_gemm(tu_backends[i], M, N - 4, K, a, lda, b, FK_BF16, ldb, NULL, FK_F32, c + 2, ldc);
        int bad = check_linear_ref(c + 2, ac, bc, NULL, M, N - 4, K, ldc);
        int touched = 0;
        for (int64_t m = 0; m < M; m++)
            for (int64_t j = 0; j < ldc; j++)
                if ((j < 2 || j >= 2 + N - 4) && c[m * ldc + j] != -7.0f) touched++;
        char desc[64];
        CHECKF(bad == 0 && touched == 0, "gemm with strides on %s: %d off, %d outside touched",
               tu_backend_desc(tu_backends[i], desc, 64), bad, touched);
    }
    fk_free(a);
    fk_free(bd);
    fk_free(c);
    fk_free(ac);
    fk_free(bc);
    fk_free(b);
    fk_free(tmp);
}

/* The micro-kernels on one tile, directly: all paths give the same bits. */
static void test_kernels_agree(void) {
    const int64_t kc = 37;
    float ap[FK_GEMM_MR_MAX * 64], bp[FK_GEMM_NR_MAX * 64];
    float c0[FK_GEMM_MR_MAX * FK_GEMM_NR_MAX], c1[FK_GEMM_MR_MAX * FK_GEMM_NR_MAX];
    for (int isa = 1; isa < FK_CPU_ISA_COUNT; isa++) {
        if (!fk_cpu_isa_available((fk_cpu_isa)isa)) continue;
        const fk_gemm_kernel *k = fk_gemm_kernel_for((fk_cpu_isa)isa);
        const fk_gemm_kernel *p = fk_gemm_kernel_for(FK_CPU_ISA_PORTABLE);
        tu_fill(ap, k->mr * kc, -1, 1);
        tu_fill(bp, k->nr * kc, -1, 1);
        for (int acc = 0; acc < 2; acc++) {
            tu_fill(c0, k->mr * k->nr, -1, 1);
            memcpy(c1, c0, sizeof(c0));
            k->fn(kc, ap, bp, k->nr, c0, k->nr, acc);
            /* the portable kernel on the same tile, one (mr_p × nr_p) piece at a time */
            float apa[FK_GEMM_MR_MAX * 64], bpa[FK_GEMM_NR_MAX * 64];
            float tile[FK_GEMM_MR_MAX * FK_GEMM_NR_MAX];
            for (int i0 = 0; i0 < k->mr; i0 += p->mr)
                for (int j0 = 0; j0 < k->nr; j0 += p->nr) {
                    for (int64_t kk = 0; kk < kc; kk++) {
                        for (int i = 0; i < p->mr; i++)
                            apa[kk * p->mr + i] = i0 + i < k->mr ? ap[kk * k->mr + i0 + i] : 0.0f;
                        for (int j = 0; j < p->nr; j++)
                            bpa[kk * p->nr + j] = j0 + j < k->nr ? bp[kk * k->nr + j0 + j] : 0.0f;
                    }
                    for (int i = 0; i < p->mr; i++)
                        for (int j = 0; j < p->nr; j++)
                            tile[i * p->nr + j] = (i0 + i < k->mr && j0 + j < k->nr)
                                                      ? c1[(i0 + i) * k->nr + j0 + j]
                                                      : 0.0f;
                    p->fn(kc, apa, bpa, p->nr, tile, p->nr, acc);
                    for (int i = 0; i < p->mr && i0 + i < k->mr; i++)
                        for (int j = 0; j < p->nr && j0 + j < k->nr; j++)
                            c1[(i0 + i) * k->nr + j0 + j] = tile[i * p->nr + j];
                }
            CHECKF(tu_same_bits(c0, c1, (size_t)(k->mr * k->nr) * 4),
                   "%s micro-kernel (accumulate=%d) differs from the portable one",
                   fk_cpu_isa_name((fk_cpu_isa)isa), acc);
        }
    }
}

int main(void) {
    tu_backends_init();
    test_kernels_agree();
    test_gemm_strides();

    /* odd sizes and edge cases, every weight dtype, with and without bias */
    static const int64_t small[][3] = {{7, 13, 5}, {1, 300, 70}, {67, 130, 97}, {5, 0, 3}, {13, 1, 33}};
    for (size_t s = 0; s < sizeof(small) / sizeof(small[0]); s++)
        for (int d = 0; d < N_WDTYPES; d++) {
            test_linear_case(small[s][0], small[s][1], small[s][2], WDTYPES[d], FK_DTYPE_COUNT,
                             tu_n_backends);
            test_linear_case(small[s][0], small[s][1], small[s][2], WDTYPES[d],
                             d % 2 ? FK_BF16 : FK_F32, tu_n_backends);
        }
    /* larger than every block (MC=192, KC=256, NC=512) on every path */
    test_linear_case(197, 530, 517, FK_BF16, FK_F16, tu_n_backends);
    test_linear_case(197, 300, 1100, FK_F8_E4M3, FK_DTYPE_COUNT, tu_n_backends);

    tu_backends_free();
    return fk_test_finish("test_ops_cpu_linear");
}
