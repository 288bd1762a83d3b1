/* test_torch_rng: PyTorch's CPU generator and torch.randn, bit-exact.
 * Reference: tests/data/noise/noise.safetensors, written by PyTorch itself
 * (tools/gen_noise_fixtures.py). Tolerance: none — every value must have the
 * same bits (the noise fixes the image a seed makes). Also the C++ standard's
 * check value of mt19937 (the 10000th draw from seed 5489 is 4123659995). */
#include "core/torch_rng.h"
#include "io/safetensors.h"
#include "test.h"

#include <inttypes.h>

#define NOISE_FILE "tests/data/noise/noise.safetensors"

static void test_mt19937(void) {
    fk_torch_gen g;
    fk_torch_gen_init(&g, 5489);
    uint32_t v = 0;
    for (int i = 0; i < 10000; i++) v = fk_torch_gen_u32(&g);
    CHECKF(v == 4123659995u, "mt19937 10000th draw %u", v);
    /* only the low 32 bits of the seed matter */
    fk_torch_gen a, b;
    fk_torch_gen_init(&a, 7);
    fk_torch_gen_init(&b, (UINT64_C(1) << 32) + 7);
    bool same = true;
    for (int i = 0; i < 2000; i++) same &= fk_torch_gen_u32(&a) == fk_torch_gen_u32(&b);
    CHECK(same);
    /* uniforms: 24 / 53 bits in [0, 1) */
    fk_torch_gen_init(&g, 1);
    bool in_range = true;
    for (int i = 0; i < 10000; i++) {
        float u = fk_torch_uniform_f32(&g);
        double d = fk_torch_uniform_f64(&g);
        in_range &= u >= 0.0f && u < 1.0f && d >= 0.0 && d < 1.0 && u * 16777216.0f == floorf(u * 16777216.0f);
    }
    CHECK(in_range);
}

static int count_mismatch(const void *a, const void *b, size_t n, size_t esize, size_t *first) {
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        if (memcmp((const char *)a + i * esize, (const char *)b + i * esize, esize)) {
            if (!bad) *first = i;
            bad++;
        }
    return bad;
}

static void test_fixtures(fk_context *ctx) {
    fk_st_file *f = NULL;
    if (fk_st_open(ctx, NOISE_FILE, &f) != FK_OK) {
        CHECKF(0, "%s", fk_context_error(ctx));
        return;
    }
    int n_noise = 0, n_randn = 0;
    for (int i = 0; i < fk_st_count(f); i++) {
        const fk_st_tensor *t = fk_st_get(f, i);
        size_t numel = (size_t)(t->nbytes / fk_dtype_size(t->dtype));
        void *mine = NULL;
        fk_tensor owned;
        memset(&owned, 0, sizeof(owned));
        uint64_t seed;
        long long h, w, n;
        char dt[8];
        if (sscanf(t->name, "noise.s%" SCNu64 ".h%lld.w%lld", &seed, &h, &w) == 3) {
            fk_status st = fk_torch_noise(ctx, seed, h, w, FK_BF16, &owned);
            CHECKF(st == FK_OK, "%s: %s", t->name, fk_context_error(ctx));
            if (st != FK_OK) continue;
            CHECKF(owned.ndim == t->ndim && !memcmp(owned.shape, t->shape, sizeof(int64_t) * 4),
                   "%s: shape", t->name);
            CHECK(t->dtype == FK_BF16);
            mine = owned.data;
            n_noise++;
        } else if (sscanf(t->name, "randn.%7[^.].s%" SCNu64 ".n%lld", dt, &seed, &n) == 3) {
            fk_dtype d = !strcmp(dt, "f32") ? FK_F32 : !strcmp(dt, "bf16") ? FK_BF16 : FK_F16;
            CHECKF(d == t->dtype && (size_t)n == numel, "%s: dtype/size", t->name);
            mine = malloc(numel * fk_dtype_size(d));
            fk_torch_gen g;
            fk_torch_gen_init(&g, seed);
            CHECK(fk_torch_randn(ctx, &g, d, mine, numel) == FK_OK);
            n_randn++;
        } else if (sscanf(t->name, "randn2.f32.s%" SCNu64, &seed) == 1) {
            /* two randn(3) calls: the second starts with the cached sin value */
            mine = malloc(6 * sizeof(float));
            fk_torch_gen g;
            fk_torch_gen_init(&g, seed);
            CHECK(fk_torch_randn(ctx, &g, FK_F32, mine, 3) == FK_OK);
            CHECK(fk_torch_randn(ctx, &g, FK_F32, (float *)mine + 3, 3) == FK_OK);
            CHECK(numel == 6);
            n_randn++;
        } else {
            CHECKF(0, "unexpected tensor %s", t->name);
            continue;
        }
        size_t first = 0;
        int bad = count_mismatch(mine, t->data, numel, fk_dtype_size(t->dtype), &first);
        CHECKF(bad == 0, "%s: %d of %zu values differ (first at %zu)", t->name, bad, numel, first);
        if (owned.data)
            fk_tensor_free(&owned);
        else
            free(mine);
    }
    CHECKF(n_noise >= 30 && n_randn >= 60, "fixture counts %d %d", n_noise, n_randn);
    fk_st_close(f);
}

/* bf16 noise = RNE(f32 randn) when 16 divides n (same uniforms, same math) */
static void test_bf16_is_rounded_f32(fk_context *ctx) {
    fk_tensor a, b;
    CHECK(fk_torch_noise(ctx, 99, 128, 96, FK_F32, &a) == FK_OK);
    CHECK(fk_torch_noise(ctx, 99, 128, 96, FK_BF16, &b) == FK_OK);
    const float *fa = a.data;
    const uint16_t *hb = b.data;
    int bad = 0;
    for (int64_t i = 0; i < fk_tensor_numel(&a); i++) bad += fk_f32_to_bf16(fa[i]) != hb[i];
    CHECK(bad == 0);
    /* sanity of the distribution: mean ≈ 0, variance ≈ 1 (n = 12288: 5σ bounds) */
    double s = 0, s2 = 0;
    int64_t n = fk_tensor_numel(&a);
    for (int64_t i = 0; i < n; i++) {
        s += fa[i];
        s2 += (double)fa[i] * fa[i];
    }
    double mean = s / (double)n, var = s2 / (double)n - mean * mean;
    CHECKF(fabs(mean) < 5.0 / sqrt((double)n) && fabs(var - 1.0) < 5.0 * sqrt(2.0 / (double)n),
           "mean %g var %g", mean, var);
    fk_tensor_free(&a);
    fk_tensor_free(&b);
    /* bad arguments */
    fk_tensor t;
    CHECK(fk_torch_noise(ctx, 1, 0, 16, FK_BF16, &t) == FK_ERR_ARG);
    CHECK(fk_torch_noise(ctx, 1, 16, 16, FK_I32, &t) == FK_ERR_UNSUPPORTED);
}

int main(void) {
    fk_context *ctx = fk_context_create(1);
    test_mt19937();
    test_fixtures(ctx);
    test_bf16_is_rounded_f32(ctx);
    fk_context_free(ctx);
    return fk_test_finish("test_torch_rng");
}
