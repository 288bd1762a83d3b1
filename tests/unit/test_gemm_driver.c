/* The blocked f32 GEMM driver (fk_cpu_gemm, cpu_linear.c) and its per-ISA
 * pieces (cpu_kernels_x86.c): packing in registers, the linear micro-kernels
 * (AVX-512 14 × 32, AVX2 6 × 16), blocking over KC / NC with tails in every
 * dimension, the accumulate passes through C, bias, strides, threads.
 *
 * Reference: the numerics contract itself (cpu.h), computed here with scalar
 * code: every c element is ONE chain acc = fmaf(a[m, k], w[n, k], acc) over
 * k = 0..K-1 from +0, then acc + bias[n] in f32, where w and bias are the
 * weights decoded by fk_convert_to_f32. fmaf is correctly rounded, so the
 * expected result is exact and every backend (portable, AVX2, AVX-512, 1-3
 * threads) must match it bit for bit; tolerance 0. The chain itself is
 * checked once against a double-precision dot product with the bound
 * (K + 1)·u·Σ|x·w| + u·(|y| + |b|), u = 2^-24 (the classical γ_K bound).
 *
 * Sizes are chosen around the blocking: K around FK_GEMM_LIN_KC (256) and
 * its multiples, N past FK_GEMM_LIN_NC (960) with a last block narrower
 * than a panel, M and N not multiples of any MR / NR (14, 6, 4 / 32, 16),
 * small M with the small-M path turned off. */
#include "backend/cpu/cpu_gemm.h"
#include "cpu_ops_util.h"

static const fk_dtype WDT[] = {FK_F32, FK_BF16, FK_F16, FK_F8_E4M3, FK_F8_E5M2, FK_F64};
#define N_WDT 6

/* Weights of dtype dt with values in [-s, s): raw buffer (caller frees),
 * decoded values in dec. */
static void *make_w(fk_dtype dt, int64_t n, float s, float *dec) {
    float *tmp = tu_alloc(n);
    tu_fill(tmp, n, -s, s);
    void *w = fk_alloc((size_t)(n > 0 ? n : 1) * fk_dtype_size(dt));
    fk_convert_from_f32(w, dt, tmp, (size_t)n);
    fk_convert_to_f32(dec, w, dt, (size_t)n);
    fk_free(tmp);
    return w;
}

/* The contract, scalar: c (M, N) row stride ldc. */
static void spec_gemm(int64_t M, int64_t N, int64_t K, const float *a, int64_t lda,
                      const float *wd, int64_t ldw, const float *bd, float *c, int64_t ldc) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            float acc = 0.0f;
            for (int64_t k = 0; k < K; k++) acc = fmaf(a[m * lda + k], wd[n * ldw + k], acc);
            c[m * ldc + n] = bd ? acc + bd[n] : acc;
        }
}

/* The spec against a double dot product (a few rows): violations. */
static int spec_vs_double(int64_t M, int64_t N, int64_t K, const float *a, int64_t lda,
                          const float *wd, int64_t ldw, const float *bd, const float *c,
                          int64_t ldc) {
    int bad = 0;
    for (int64_t m = 0; m < M; m += 7)
        for (int64_t n = 0; n < N; n++) {
            double s = 0, sa = 0;
            for (int64_t k = 0; k < K; k++) {
                double t = (double)a[m * lda + k] * (double)wd[n * ldw + k];
                s += t;
                sa += fabs(t);
            }
            double b = bd ? (double)bd[n] : 0.0, ref = s + b;
            double tol = (double)(K + 1) * EPS32 * sa + EPS32 * (fabs(ref) + fabs(b)) + 1e-37;
            if (!(fabs((double)c[m * ldc + n] - ref) <= tol)) bad++;
        }
    return bad;
}

/* Index of the first differing float, -1 if none. */
static int64_t first_diff(const float *x, const float *y, int64_t M, int64_t N, int64_t ldc) {
    for (int64_t m = 0; m < M; m++)
        if (!tu_same_bits(x + m * ldc, y + m * ldc, (size_t)N * 4))
            for (int64_t n = 0; n < N; n++)
                if (!tu_same_bits(x + m * ldc + n, y + m * ldc + n, 4)) return m * ldc + n;
    return -1;
}

/* One product on every backend (small-M path off, so every M takes the
 * blocked driver), with strides lda = K + pa, ldw = K + pw, ldc = N + pc
 * (c written at column offset 3 of a wider buffer: the rest must stay). */
static void gemm_case(int64_t M, int64_t N, int64_t K, fk_dtype wdt, fk_dtype bdt, int64_t pa,
                      int64_t pw, int64_t pc) {
    const int64_t lda = K + pa, ldw = K + pw, ldc = N + pc + 3;
    float *a = tu_alloc(M * lda), *wd = tu_alloc(N * ldw), *bd = tu_alloc(N);
    float *ref = tu_alloc(M * ldc), *c = tu_alloc(M * ldc);
    tu_fill(a, M * lda, -1.0f, 1.0f);
    for (int64_t i = 0; i < M * lda; i += 11) a[i] = 0.0f; /* signed zeros in the chains */
    const float ws = wdt == FK_F8_E4M3 || wdt == FK_F8_E5M2 ? 2.0f : 0.5f;
    void *w = make_w(wdt, N * ldw, ws, wd);
    void *b = bdt != FK_DTYPE_COUNT ? make_w(bdt, N, 1.0f, bd) : NULL;
    if (b && N > 2) { /* ±0 biases */
        float z[2] = {0.0f, -0.0f};
        fk_convert_from_f32((char *)b + fk_dtype_size(bdt), bdt, z, 2);
        fk_convert_to_f32(bd + 1, (char *)b + fk_dtype_size(bdt), bdt, 2);
    }
    for (int64_t i = 0; i < M * ldc; i++) ref[i] = -7.0f;
    spec_gemm(M, N, K, a, lda, wd, ldw, b ? bd : NULL, ref + 3, ldc);
    int dbad = spec_vs_double(M, N, K, a, lda, wd, ldw, b ? bd : NULL, ref + 3, ldc);
    CHECKF(dbad == 0, "spec M=%lld N=%lld K=%lld w=%s: %d outputs off the double reference",
           (long long)M, (long long)N, (long long)K, fk_dtype_name(wdt), dbad);
    for (int i = 0; i < tu_n_backends; i++) {
        fk_backend *be = tu_backends[i];
        fk_backend_cpu_set_gemv(be, false);
        for (int64_t j = 0; j < M * ldc; j++) c[j] = -7.0f;
        fk_cpu_gemm(be, M, N, K, a, lda, w, wdt, ldw, b, b ? bdt : FK_F32, c + 3, ldc);
        fk_backend_cpu_set_gemv(be, true);
        int64_t d = first_diff(c, ref, M, ldc, ldc);
        char desc[64];
        CHECKF(d < 0,
               "gemm M=%lld N=%lld K=%lld w=%s b=%s lda+%lld ldw+%lld ldc+%lld on %s: c[%lld, "
               "%lld] = %.9g, the contract gives %.9g",
               (long long)M, (long long)N, (long long)K, fk_dtype_name(wdt),
               b ? fk_dtype_name(bdt) : "none", (long long)pa, (long long)pw, (long long)pc,
               tu_backend_desc(be, desc, sizeof(desc)), (long long)(d < 0 ? 0 : d / ldc),
               (long long)(d < 0 ? 0 : d % ldc - 3), d < 0 ? 0.0 : (double)c[d],
               d < 0 ? 0.0 : (double)ref[d]);
    }
    fk_free(a), fk_free(wd), fk_free(bd), fk_free(ref), fk_free(c), fk_free(w), fk_free(b);
}

/* The per-ISA micro-panel packers against the portable ones, bit for bit,
 * for every dtype, odd kc, partial panels, strides. */
static void test_packers(void) {
    static const int64_t kcs[] = {1, 5, 15, 16, 17, 33, 256};
    const int64_t ld = 300;
    for (int isa = 0; isa < FK_CPU_ISA_COUNT; isa++) {
        if (!fk_cpu_isa_available((fk_cpu_isa)isa)) continue;
        const fk_gemm_driver *drv = fk_gemm_driver_for((fk_cpu_isa)isa);
        const int mr = drv->kern.mr, nr = drv->kern.nr;
        CHECK(mr <= FK_GEMM_MR_MAX && nr <= FK_GEMM_NR_MAX && FK_GEMM_LIN_NC % nr == 0);
        float *a = tu_alloc(FK_GEMM_MR_MAX * ld), *wd = tu_alloc(FK_GEMM_NR_MAX * ld);
        float *p0 = tu_alloc(256 * FK_GEMM_NR_MAX), *p1 = tu_alloc(256 * FK_GEMM_NR_MAX);
        float *tmp = tu_alloc(256 * FK_GEMM_NR_MAX);
        tu_fill(a, FK_GEMM_MR_MAX * ld, -3.0f, 3.0f);
        for (size_t ki = 0; ki < sizeof(kcs) / sizeof(kcs[0]); ki++) {
            const int64_t kc = kcs[ki];
            const int rows_list[5] = {1, 2, 3, mr - 1, mr};
            for (int ri = 0; ri < 5; ri++) {
                const int rows = rows_list[ri];
                if (rows < 1 || (ri > 0 && rows <= rows_list[ri - 1])) continue;
                tu_fill(p0, kc * mr, 9, 9), tu_fill(p1, kc * mr, 9, 9);
                fk_gemm_pack_a_panel(p0, a + 3, ld, rows, kc, mr);
                drv->pack_a(p1, a + 3, ld, rows, kc);
                CHECKF(tu_same_bits(p0, p1, (size_t)(kc * mr) * 4),
                       "%s pack_a kc=%lld rows=%d differs from the portable packing",
                       fk_cpu_isa_name((fk_cpu_isa)isa), (long long)kc, rows);
            }
            for (int d = 0; d < N_WDT; d++) {
                void *w = make_w(WDT[d], FK_GEMM_NR_MAX * ld, 2.0f, wd);
                const char *w1 = (const char *)w + 5 * fk_dtype_size(WDT[d]);
                const int cols_list[6] = {1, 2, 3, nr / 2 + 1, nr - 1, nr};
                for (int ci = 0; ci < 6; ci++) {
                    const int cols = cols_list[ci];
                    if (cols < 1 || (ci > 0 && cols <= cols_list[ci - 1])) continue;
                    tu_fill(p0, kc * nr, 9, 9), tu_fill(p1, kc * nr, 9, 9);
                    fk_gemm_pack_b_panel(p0, w1, WDT[d], ld, cols, kc, nr, tmp);
                    drv->pack_b(p1, w1, WDT[d], ld, cols, kc, tmp, NULL);
                    CHECKF(tu_same_bits(p0, p1, (size_t)(kc * nr) * 4),
                           "%s pack_b w=%s kc=%lld cols=%d differs from the portable packing",
                           fk_cpu_isa_name((fk_cpu_isa)isa), fk_dtype_name(WDT[d]), (long long)kc,
                           cols);
                }
                fk_free(w);
            }
        }
        fk_free(a), fk_free(wd), fk_free(p0), fk_free(p1), fk_free(tmp);
    }
}

/* The linear micro-kernels on one tile against the contract, both
 * accumulate modes, a C row stride that is a multiple of 4 KiB. */
static void test_kernels(void) {
    const int64_t kc = 45, ldc = 1024;
    for (int isa = 0; isa < FK_CPU_ISA_COUNT; isa++) {
        if (!fk_cpu_isa_available((fk_cpu_isa)isa)) continue;
        const fk_gemm_kernel *k = &fk_gemm_driver_for((fk_cpu_isa)isa)->kern;
        float *ap = tu_alloc(kc * k->mr), *bp = tu_alloc(kc * k->nr);
        float *c = tu_alloc(k->mr * ldc), *ref = tu_alloc(k->mr * ldc);
        tu_fill(ap, kc * k->mr, -1, 1);
        tu_fill(bp, kc * k->nr, -1, 1);
        for (int acc = 0; acc < 2; acc++) {
            tu_fill(c, k->mr * ldc, -1, 1);
            memcpy(ref, c, (size_t)(k->mr * ldc) * 4);
            for (int i = 0; i < k->mr; i++)
                for (int j = 0; j < k->nr; j++) {
                    float s = acc ? ref[i * ldc + j] : 0.0f;
                    for (int64_t q = 0; q < kc; q++) s = fmaf(ap[q * k->mr + i], bp[q * k->nr + j], s);
                    ref[i * ldc + j] = s;
                }
            k->fn(kc, ap, bp, k->nr, c, ldc, acc);
            CHECKF(tu_same_bits(c, ref, (size_t)(k->mr * ldc) * 4),
                   "%s linear micro-kernel (%dx%d, accumulate=%d) differs from the contract",
                   fk_cpu_isa_name((fk_cpu_isa)isa), k->mr, k->nr, acc);
        }
        fk_free(ap), fk_free(bp), fk_free(c), fk_free(ref);
    }
}

int main(void) {
    tu_backends_init();
    test_packers();
    test_kernels();

    /* tails everywhere, each weight dtype, with / without bias, strides */
    for (int d = 0; d < N_WDT; d++) {
        gemm_case(37, 45, 17, WDT[d], FK_DTYPE_COUNT, 0, 0, 0);
        gemm_case(47, 33, 259, WDT[d], d % 2 ? FK_F32 : FK_BF16, 5, 3, 2);
    }
    /* small M (blocked path forced), N = 1, K = 1, K = 0 */
    gemm_case(1, 70, 30, FK_F32, FK_F16, 0, 1, 0);
    gemm_case(5, 1, 300, FK_BF16, FK_F32, 2, 0, 1);
    gemm_case(20, 17, 1, FK_F16, FK_DTYPE_COUNT, 0, 0, 0);
    gemm_case(9, 40, 0, FK_F32, FK_BF16, 0, 0, 0);
    gemm_case(9, 40, 0, FK_BF16, FK_DTYPE_COUNT, 0, 0, 0);
    /* exact multiples of the tiles and of KC (no tail) */
    gemm_case(84, 64, 512, FK_F32, FK_F32, 0, 0, 0);
    /* past every block: several KC passes with a tail, N past LIN_NC with a
     * last block narrower than a panel, M past several A panels, thread
     * splits of rows and columns */
    gemm_case(16, 965, 260, FK_BF16, FK_F16, 0, 0, 0);
    gemm_case(45, 203, 777, FK_F32, FK_DTYPE_COUNT, 3, 1, 4);
    gemm_case(300, 20, 100, FK_F16, FK_F32, 1, 0, 0);

    tu_backends_free();
    return fk_test_finish("test_gemm_driver");
}
