/* torch_rng: PyTorch's CPU mt19937 generator and torch.randn, bit-exact.
 * See torch_rng.h for what is reproduced and why.
 *
 * All float arithmetic here is IEEE single precision without implicit
 * contraction (the library builds with -ffp-contract=off); every place where
 * PyTorch's compiled kernel fuses a multiply and an add is written as an
 * explicit fmaf(), so the result is the same with or without hardware FMA. */
#include "core/torch_rng.h"

#include <math.h>
#include <string.h>

/* ---- mt19937 (Matsumoto & Nishimura 1998), as at::mt19937 -------------------- */

#define FK_MT_M 397
#define FK_MT_MATRIX_A 0x9908b0dfu
#define FK_MT_UPPER 0x80000000u
#define FK_MT_LOWER 0x7fffffffu

void fk_torch_gen_init(fk_torch_gen *g, uint64_t seed) {
    g->seed = seed;
    g->state[0] = (uint32_t)(seed & 0xffffffffu);
    for (int i = 1; i < FK_TORCH_MT_N; i++)
        g->state[i] = 1812433253u * (g->state[i - 1] ^ (g->state[i - 1] >> 30)) + (uint32_t)i;
    g->next = FK_TORCH_MT_N;
    g->has_next_normal = false;
    g->next_normal = 0.0;
}

static void fk_torch_twist(fk_torch_gen *g) {
    uint32_t *s = g->state;
    for (int i = 0; i < FK_TORCH_MT_N; i++) {
        uint32_t y = (s[i] & FK_MT_UPPER) | (s[(i + 1) % FK_TORCH_MT_N] & FK_MT_LOWER);
        s[i] = s[(i + FK_MT_M) % FK_TORCH_MT_N] ^ (y >> 1) ^ ((y & 1u) ? FK_MT_MATRIX_A : 0u);
    }
    g->next = 0;
}

uint32_t fk_torch_gen_u32(fk_torch_gen *g) {
    if (g->next >= FK_TORCH_MT_N) fk_torch_twist(g);
    uint32_t y = g->state[g->next++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

uint64_t fk_torch_gen_u64(fk_torch_gen *g) {
    uint64_t hi = fk_torch_gen_u32(g);
    uint64_t lo = fk_torch_gen_u32(g);
    return (hi << 32) | lo;
}

float fk_torch_uniform_f32(fk_torch_gen *g) {
    /* 24-bit integer · 2⁻²⁴: exact in float; (to − from)·x + from = x for (0, 1). */
    return (float)(fk_torch_gen_u32(g) & 0xffffffu) * (1.0f / 16777216.0f);
}

double fk_torch_uniform_f64(fk_torch_gen *g) {
    return (double)(fk_torch_gen_u64(g) & ((UINT64_C(1) << 53) - 1)) * (1.0 / 9007199254740992.0);
}

double fk_torch_normal_f64(fk_torch_gen *g) {
    if (g->has_next_normal) {
        g->has_next_normal = false;
        return g->next_normal; /* ·std + mean with std 1, mean 0 */
    }
    const double pi = 3.14159265358979323846;
    double u1 = fk_torch_uniform_f64(g);
    double u2 = fk_torch_uniform_f64(g);
    double r = sqrt(-2.0 * log1p(-u2));
    double theta = 2.0 * pi * u1;
    g->next_normal = r * sin(theta);
    g->has_next_normal = true;
    return r * cos(theta);
}

/* ---- the float Box–Muller block ------------------------------------------------
 * log and sincos: the Cephes single-precision polynomials as evaluated by
 * PyTorch's AVX kernels (Pommier / Garberoglio avx_mathfun), with the
 * multiply-adds its compiler fuses written as fmaf. */

static inline uint32_t fk_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}
static inline float fk_f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

/* log(x) for x > 0 (x <= 0 or NaN → NaN). */
static float fk_torch_logf(float x) {
    const bool invalid = !(x > 0.0f);
    const float min_norm = fk_f32_from_bits(0x00800000u);
    if (x < min_norm) x = min_norm; /* no subnormals */
    /* x = m·2^k with m in [0.5, 1): e = k = biased exponent − 126 */
    int32_t expo = (int32_t)(fk_f32_bits(x) >> 23) - 0x7f;
    x = fk_f32_from_bits((fk_f32_bits(x) & ~0x7f800000u) | fk_f32_bits(0.5f));
    float e = (float)expo + 1.0f;
    /* m < √½: e −= 1, x = 2m − 1, computed as (m − 1) + m; else x = m − 1 */
    const bool below = x < 0.707106781186547524f;
    const float add = below ? x : 0.0f;
    x = x - 1.0f;
    e = e - (below ? 1.0f : 0.0f);
    x = x + add;
    const float z = x * x;
    float y = 7.0376836292e-2f;
    y = fmaf(y, x, -1.1514610310e-1f);
    y = fmaf(y, x, 1.1676998740e-1f);
    y = fmaf(y, x, -1.2420140846e-1f);
    y = fmaf(y, x, 1.4249322787e-1f);
    y = fmaf(y, x, -1.6668057665e-1f);
    y = fmaf(y, x, 2.0000714765e-1f);
    y = fmaf(y, x, -2.4999993993e-1f);
    y = fmaf(y, x, 3.3333331174e-1f);
    y = y * x;
    y = fmaf(y, z, e * -2.12194440e-4f); /* y·z + e·q1 */
    y = fmaf(-z, 0.5f, y);               /* y − z/2 */
    x = x + y;
    x = fmaf(e, 0.693359375f, x); /* + e·q2 */
    return invalid ? NAN : x;
}

/* sin and cos of x together (|x| < 8192 for full precision). */
static void fk_torch_sincosf(float xin, float *s, float *c) {
    uint32_t sign_sin = fk_f32_bits(xin) & 0x80000000u;
    float x = fk_f32_from_bits(fk_f32_bits(xin) & 0x7fffffffu);
    /* octant j = (trunc(x·4/π) + 1) & ~1 */
    float y = x * 1.27323954473516f;
    int32_t j = (int32_t)y;
    j = (j + 1) & ~1;
    y = (float)j;
    const uint32_t swap_sign_sin = ((uint32_t)j & 4u) << 29;
    const bool poly_sin_first = (j & 2) == 0;
    const uint32_t sign_cos = ((uint32_t)(~(j - 2)) & 4u) << 29;
    sign_sin ^= swap_sign_sin;
    /* extended-precision reduction x − j·π/4, π/4 = DP1 + DP2 + DP3 */
    x = fmaf(y, -0.78515625f, x);
    x = fmaf(y, -2.4187564849853515625e-4f, x);
    x = fmaf(y, -3.77489497744594108e-8f, x);
    const float z = x * x;
    /* cosine polynomial on [−π/4, π/4] */
    float yc = 2.443315711809948e-5f;
    yc = fmaf(yc, z, -1.388731625493765e-3f);
    yc = fmaf(yc, z, 4.166664568298827e-2f);
    yc = yc * z;
    yc = fmaf(yc, z, -(z * 0.5f)); /* yc·z − z/2 */
    yc = yc + 1.0f;
    /* sine polynomial */
    float ys = -1.9515295891e-4f;
    ys = fmaf(ys, z, 8.3321608736e-3f);
    ys = fmaf(ys, z, -1.6666654611e-1f);
    ys = ys * z;
    ys = fmaf(ys, x, x);
    /* select by octant; the additions of +0 mirror the kernel (they turn −0
     * into +0) */
    const float sin_a = poly_sin_first ? ys : 0.0f, sin_b = poly_sin_first ? 0.0f : yc;
    const float cos_a = yc - sin_b, cos_b = ys - sin_a;
    const float sv = sin_b + sin_a, cv = cos_a + cos_b;
    *s = fk_f32_from_bits(fk_f32_bits(sv) ^ sign_sin);
    *c = fk_f32_from_bits(fk_f32_bits(cv) ^ sign_cos);
}

void fk_torch_normal_block16(float data[16]) {
    const float two_pi = (float)(2.0f * 3.14159265358979323846); /* double product → f32 */
    const float mean = 0.0f, std = 1.0f;
    for (int j = 0; j < 8; j++) {
        const float u1 = 1.0f - data[j]; /* [0, 1) → (0, 1] */
        const float u2 = data[j + 8];
        const float radius = sqrtf(-2.0f * fk_torch_logf(u1));
        const float theta = two_pi * u2;
        float sn, cs;
        fk_torch_sincosf(theta, &sn, &cs);
        data[j] = fmaf(radius * cs, std, mean);
        data[j + 8] = fmaf(radius * sn, std, mean);
    }
}

/* ---- randn ---------------------------------------------------------------------- */

static void fk_torch_store(void *out, fk_dtype dt, size_t at, const float *src, size_t n) {
    switch (dt) {
    case FK_F32: memcpy((float *)out + at, src, n * sizeof(float)); break;
    case FK_BF16:
        for (size_t i = 0; i < n; i++) ((uint16_t *)out)[at + i] = fk_f32_to_bf16(src[i]);
        break;
    case FK_F16:
        for (size_t i = 0; i < n; i++) ((uint16_t *)out)[at + i] = fk_f32_to_f16(src[i]);
        break;
    default: FK_ASSERT(0);
    }
}

fk_status fk_torch_randn(fk_context *ctx, fk_torch_gen *g, fk_dtype dt, void *out, size_t n) {
    if (dt != FK_F32 && dt != FK_BF16 && dt != FK_F16)
        return fk_error(ctx, FK_ERR_UNSUPPORTED, "torch_rng: randn in dtype %s (supported: F32, BF16, F16)",
                        fk_dtype_name(dt));
    if (n == 0) return FK_OK;
    if (n < 16) {
        for (size_t i = 0; i < n; i++) {
            float v = (float)fk_torch_normal_f64(g);
            fk_torch_store(out, dt, i, &v, 1);
        }
        return FK_OK;
    }
    if (dt == FK_F32) {
        float *d = out;
        for (size_t i = 0; i < n; i++) d[i] = fk_torch_uniform_f32(g);
        for (size_t i = 0; i + 16 <= n; i += 16) fk_torch_normal_block16(d + i);
        if (n % 16) {
            float *tail = d + n - 16;
            for (int i = 0; i < 16; i++) tail[i] = fk_torch_uniform_f32(g);
            fk_torch_normal_block16(tail);
        }
        return FK_OK;
    }
    float buf[16];
    for (size_t i = 0; i + 16 <= n; i += 16) {
        for (int j = 0; j < 16; j++) buf[j] = fk_torch_uniform_f32(g);
        fk_torch_normal_block16(buf);
        fk_torch_store(out, dt, i, buf, 16);
    }
    if (n % 16) {
        for (int j = 0; j < 16; j++) buf[j] = fk_torch_uniform_f32(g);
        fk_torch_normal_block16(buf);
        fk_torch_store(out, dt, n - 16, buf, 16);
    }
    return FK_OK;
}

void fk_torch_noise_shape(int64_t height, int64_t width, int64_t shape[4]) {
    shape[0] = 1;
    shape[1] = 16;
    shape[2] = 2 * ((height + 15) / 16);
    shape[3] = 2 * ((width + 15) / 16);
}

fk_status fk_torch_noise(fk_context *ctx, uint64_t seed, int64_t height, int64_t width, fk_dtype dt,
                         fk_tensor *out) {
    memset(out, 0, sizeof(*out));
    if (height < 1 || height > 65536 || width < 1 || width > 65536)
        return fk_error(ctx, FK_ERR_ARG, "noise: image size %lldx%lld out of range (1 to 65536 pixels)",
                        (long long)width, (long long)height);
    if (dt != FK_F32 && dt != FK_BF16 && dt != FK_F16)
        return fk_error(ctx, FK_ERR_UNSUPPORTED, "noise: dtype %s (supported: F32, BF16, F16)",
                        fk_dtype_name(dt));
    int64_t shape[4];
    fk_torch_noise_shape(height, width, shape);
    fk_status st = fk_tensor_new(ctx, out, dt, 4, shape, "noise");
    if (st != FK_OK) return st;
    fk_torch_gen g;
    fk_torch_gen_init(&g, seed);
    return fk_torch_randn(ctx, &g, dt, out->data, (size_t)fk_tensor_numel(out));
}
