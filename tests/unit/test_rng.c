/* test_rng: the Philox4x32-10 generator (core/rng.h).
 *
 * References:
 *  - Known-answer vectors of Philox4x32-10 from Random123 (tests/kat_vectors,
 *    D. E. Shaw Research), columns ctr[4] key[2] -> out[4].
 *  - Statistical checks with bounds derived from the estimator's standard
 *    deviation: for N independent samples the sample mean of N(0,1) has sd
 *    1/√N, the sample variance sd √(2/N), the sample fourth moment sd
 *    √((E z⁸ − (E z⁴)²)/N) = √(96/N); a uniform mean has sd √(1/(12N)). Every
 *    check allows 5 sd (a false failure has probability < 6e-7 per check), and
 *    since the generator is deterministic a passing seed keeps passing.
 *  - Exact identities: slices of a stream equal the whole stream; the
 *    sequential cursor equals the bulk fills. */
#include "core/rng.h"
#include "test.h"

#include <stdint.h>

#define N_STAT (1 << 20)

static void test_kat(void) {
    static const uint32_t kat[3][10] = {
        {0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x6627e8d5, 0xe169c58d,
         0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d, 0x41c83b0e,
         0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb,
         0x5001e420, 0x24126ea1},
    };
    for (int v = 0; v < 3; v++) {
        uint32_t out[4];
        fk_rng_philox4x32(kat[v], kat[v] + 4, out);
        for (int k = 0; k < 4; k++) CHECKF(out[k] == kat[v][6 + k], "kat %d word %d: %08x != %08x", v, k, out[k], kat[v][6 + k]);
    }
    /* The stream layout: word i of (seed, stream) is word i%4 of block
     * ctr = (i/4 low, i/4 high, stream low, stream high), key = seed. */
    uint32_t w[4];
    fk_rng_fill_u32(0, 0, 0, w, 4);
    CHECK(w[0] == 0x6627e8d5 && w[1] == 0xe169c58d && w[2] == 0xbc57ac4c && w[3] == 0x9b00dbd8);
    uint64_t seed = 0x299f31d0a4093822ull, stream = 0x0370734413198a2eull, block = 0x1234567890abull;
    const uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)stream, (uint32_t)(stream >> 32)};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t ref[4];
    fk_rng_philox4x32(ctr, key, ref);
    fk_rng_fill_u32(seed, stream, block * 4, w, 4);
    CHECK(memcmp(w, ref, sizeof(w)) == 0);
}

static void test_determinism_and_slices(void) {
    enum { N = 1003 };
    static float a[N], b[N], c[N];
    fk_rng_fill_normal(42, 7, 5, a, N, 0.0f, 1.0f);
    fk_rng_fill_normal(42, 7, 5, b, N, 0.0f, 1.0f);
    CHECK(memcmp(a, b, sizeof(a)) == 0);
    /* any split, including splits inside a block and inside a Box–Muller pair */
    const size_t cuts[] = {1, 2, 3, 4, 5, 333, 1000, 1002};
    for (size_t k = 0; k < sizeof(cuts) / sizeof(cuts[0]); k++) {
        size_t cut = cuts[k];
        fk_rng_fill_normal(42, 7, 5, c, cut, 0.0f, 1.0f);
        fk_rng_fill_normal(42, 7, 5 + cut, c + cut, N - cut, 0.0f, 1.0f);
        CHECKF(memcmp(a, c, sizeof(a)) == 0, "normal split at %zu", cut);
    }
    static uint32_t u[N], v[N];
    fk_rng_fill_u32(9, 1, 0, u, N);
    fk_rng_fill_u32(9, 1, 3, v, N - 3);
    CHECK(memcmp(u + 3, v, sizeof(uint32_t) * (N - 3)) == 0);
    static float fu[N], fv[N];
    fk_rng_fill_uniform(9, 1, 0, fu, N, 0.0f, 1.0f);
    for (size_t i = 0; i < N; i++) fv[i] = (float)(u[i] >> 8) * (1.0f / 16777216.0f);
    CHECK(memcmp(fu, fv, sizeof(fu)) == 0);

    /* the cursor equals the fills */
    fk_rng r;
    fk_rng_init(&r, 42, 7);
    fk_rng_seek(&r, 5);
    int same = 1;
    for (int i = 0; i < N; i++) same &= fk_rng_normal(&r) == a[i];
    CHECK(same);
    CHECK(r.offset == 5 + N);
    fk_rng_init(&r, 9, 1);
    same = 1;
    for (int i = 0; i < 100; i++) same &= fk_rng_u32(&r) == u[i];
    CHECK(same);
    uint64_t w64 = fk_rng_u64(&r);
    CHECK(w64 == ((uint64_t)u[100] | ((uint64_t)u[101] << 32)));
    fk_rng_seek(&r, 0);
    CHECK(fk_rng_uniform(&r) == fu[0]);
    double d = fk_rng_uniform_f64(&r);
    CHECK(d >= 0.0 && d < 1.0);

    /* mean/std parameters: value = mean + std·z, computed in double and rounded once */
    fk_rng_fill_normal(42, 7, 5, c, N, 1.0f, 0.1f);
    int ok = 1;
    /* a[i] is z rounded to float, so allow a few float ulps of 1 + 0.1·|z| <= 1.7 */
    for (int i = 0; i < N; i++) ok &= fabsf(c[i] - (1.0f + 0.1f * a[i])) <= 1e-6f;
    CHECK(ok);
}

/* sample moments of n values */
static void moments(const float *x, size_t n, double *mean, double *var, double *m4) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += x[i];
    *mean = s / (double)n;
    double s2 = 0, s4 = 0;
    for (size_t i = 0; i < n; i++) {
        double d = x[i] - *mean;
        s2 += d * d;
        s4 += d * d * d * d;
    }
    *var = s2 / (double)(n - 1);
    *m4 = s4 / (double)n;
}

static void test_normal_stats(void) {
    float *x = malloc(sizeof(float) * N_STAT);
    float *y = malloc(sizeof(float) * N_STAT);
    const double n = N_STAT;
    const uint64_t seeds[] = {0, 1, 0xdeadbeefcafef00dull};
    for (size_t k = 0; k < 3; k++) {
        fk_rng_fill_normal(seeds[k], 3, 0, x, N_STAT, 0.0f, 1.0f);
        double mean, var, m4;
        moments(x, N_STAT, &mean, &var, &m4);
        CHECKF(fabs(mean) < 5.0 / sqrt(n), "seed %zu: mean %g, bound %g", k, mean, 5.0 / sqrt(n));
        CHECKF(fabs(var - 1.0) < 5.0 * sqrt(2.0 / n), "seed %zu: variance %g", k, var);
        CHECKF(fabs(m4 - 3.0) < 5.0 * sqrt(96.0 / n), "seed %zu: fourth moment %g", k, m4);
        /* even and odd offsets (cos and sin halves of Box–Muller) separately */
        double se = 0, so = 0, see = 0, soo = 0, seo = 0;
        for (size_t i = 0; i + 1 < N_STAT; i += 2) {
            se += x[i];
            so += x[i + 1];
            see += (double)x[i] * x[i];
            soo += (double)x[i + 1] * x[i + 1];
            seo += (double)x[i] * x[i + 1];
        }
        double h = n / 2;
        CHECKF(fabs(se / h) < 5.0 / sqrt(h) && fabs(so / h) < 5.0 / sqrt(h), "seed %zu: even/odd means", k);
        CHECKF(fabs(see / h - 1) < 5.0 * sqrt(2.0 / h) && fabs(soo / h - 1) < 5.0 * sqrt(2.0 / h),
               "seed %zu: even/odd variances", k);
        /* the two values of a pair are uncorrelated: sd of the sample correlation ≈ 1/√h */
        CHECKF(fabs(seo / h) < 5.0 / sqrt(h), "seed %zu: pair correlation %g", k, seo / h);
        int finite = 1;
        for (size_t i = 0; i < N_STAT; i++) finite &= isfinite(x[i]) && fabsf(x[i]) < 7.0f;
        CHECK(finite);
    }
    /* independence of streams and of seeds: sample correlation sd 1/√N */
    fk_rng_fill_normal(1, 3, 0, x, N_STAT, 0.0f, 1.0f);
    const struct { uint64_t seed, stream; } other[] = {{1, 4}, {2, 3}, {1, 3ull << 32}, {1ull << 32, 3}};
    for (size_t k = 0; k < sizeof(other) / sizeof(other[0]); k++) {
        fk_rng_fill_normal(other[k].seed, other[k].stream, 0, y, N_STAT, 0.0f, 1.0f);
        double sxy = 0;
        int differ = 0;
        for (size_t i = 0; i < N_STAT; i++) {
            sxy += (double)x[i] * y[i];
            differ += x[i] != y[i];
        }
        CHECKF(fabs(sxy / n) < 5.0 / sqrt(n), "other %zu: correlation %g", k, sxy / n);
        CHECKF(differ > N_STAT - 16, "other %zu: %d equal values", k, N_STAT - differ);
    }
    /* consecutive-value correlation within a stream (lag 1 and lag 4) */
    double l1 = 0, l4 = 0;
    for (size_t i = 0; i + 4 < N_STAT; i++) {
        l1 += (double)x[i] * x[i + 1];
        l4 += (double)x[i] * x[i + 4];
    }
    CHECKF(fabs(l1 / n) < 5.0 / sqrt(n) && fabs(l4 / n) < 5.0 / sqrt(n), "lag correlations %g %g", l1 / n, l4 / n);
    free(x);
    free(y);
}

static void test_uniform_stats(void) {
    float *x = malloc(sizeof(float) * N_STAT);
    const double n = N_STAT;
    fk_rng_fill_uniform(77, 0, 0, x, N_STAT, 0.0f, 1.0f);
    double s = 0;
    int in_range = 1;
    enum { BINS = 64 };
    double count[BINS] = {0};
    for (size_t i = 0; i < N_STAT; i++) {
        s += x[i];
        in_range &= x[i] >= 0.0f && x[i] < 1.0f;
        int b = (int)(x[i] * BINS);
        if (b >= 0 && b < BINS) count[b]++;
    }
    CHECK(in_range);
    CHECKF(fabs(s / n - 0.5) < 5.0 * sqrt(1.0 / (12.0 * n)), "uniform mean %g", s / n);
    /* chi-square with 63 degrees of freedom: mean 63, sd √126 */
    double chi2 = 0, e = n / BINS;
    for (int b = 0; b < BINS; b++) chi2 += (count[b] - e) * (count[b] - e) / e;
    CHECKF(chi2 < 63 + 5 * sqrt(126.0), "chi2 %g", chi2);
    /* [lo, hi) scaling */
    fk_rng_fill_uniform(77, 0, 0, x, 1000, -2.0f, 3.0f);
    int ok = 1;
    for (int i = 0; i < 1000; i++) ok &= x[i] >= -2.0f && x[i] < 3.0f;
    CHECK(ok);
    free(x);
}

static void test_stream_from_name(void) {
    /* FNV-1a 64 of "" and "a" (published test values) */
    CHECK(fk_rng_stream_from_name("") == 0xcbf29ce484222325ull);
    CHECK(fk_rng_stream_from_name("a") == 0xaf63dc4c8601ec8cull);
    CHECK(fk_rng_stream_from_name("img_in.weight") != fk_rng_stream_from_name("img_in.bias"));
}

int main(void) {
    test_kat();
    test_determinism_and_slices();
    test_normal_stats();
    test_uniform_stats();
    test_stream_from_name();
    return fk_test_finish("test_rng");
}
