/* dtype conversions: exhaustive over every bf16 / f16 / fp8 pattern.
 * The reference is an independent decoder written here (sign · 2^(e-bias) ·
 * (1 + m/2^M) in double, subnormals m · 2^(1-bias-M)) and an independent
 * nearest-value search over the sorted table of representable values.
 * Conversions are exact, so every comparison is bitwise (tolerance 0). */
#include "core/dtype.h"
#include "test.h"

#include <float.h>
#include <stdint.h>

/* ---- independent description of the small formats ---- */

typedef struct fmt {
    const char *name;
    int bits;  /* 16 or 8 */
    int ebits; /* exponent bits */
    int mbits; /* mantissa bits */
    int bias;
    int kind; /* 0: IEEE-like (Inf at e=max, m=0; NaN e=max, m!=0); 1: e4m3fn */
} fmt;

static const fmt FMT_BF16 = {"bf16", 16, 8, 7, 127, 0};
static const fmt FMT_F16 = {"f16", 16, 5, 10, 15, 0};
static const fmt FMT_E4M3 = {"e4m3", 8, 4, 3, 7, 1};
static const fmt FMT_E5M2 = {"e5m2", 8, 5, 2, 15, 0};

/* Value of a pattern in double; *isnan_out set for NaN patterns. */
static double ref_decode(const fmt *f, uint32_t p, int *isnan_out) {
    uint32_t sign = p >> (f->bits - 1);
    uint32_t e = (p >> f->mbits) & ((1u << f->ebits) - 1);
    uint32_t m = p & ((1u << f->mbits) - 1);
    uint32_t emax = (1u << f->ebits) - 1;
    double s = sign ? -1.0 : 1.0;
    *isnan_out = 0;
    if (f->kind == 0 && e == emax) {
        if (m == 0) return s * INFINITY;
        *isnan_out = 1;
        return NAN;
    }
    if (f->kind == 1 && e == emax && m == (1u << f->mbits) - 1) {
        *isnan_out = 1;
        return NAN;
    }
    if (e == 0) return s * ldexp((double)m, 1 - f->bias - f->mbits);
    return s * ldexp(1.0 + (double)m / (double)(1u << f->mbits), (int)e - f->bias);
}

static float to_f32(const fmt *f, uint32_t p) {
    if (f == &FMT_BF16) return fk_bf16_to_f32((uint16_t)p);
    if (f == &FMT_F16) return fk_f16_to_f32((uint16_t)p);
    if (f == &FMT_E4M3) return fk_e4m3_to_f32((uint8_t)p);
    return fk_e5m2_to_f32((uint8_t)p);
}

static uint32_t from_f32(const fmt *f, float x) {
    if (f == &FMT_BF16) return fk_f32_to_bf16(x);
    if (f == &FMT_F16) return fk_f32_to_f16(x);
    if (f == &FMT_E4M3) return fk_f32_to_e4m3(x);
    return fk_f32_to_e5m2(x);
}

static uint32_t f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng_next(void) {
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Largest finite positive pattern. */
static uint32_t max_finite(const fmt *f) {
    if (f->kind == 1) return (1u << (f->bits - 1)) - 2; /* 0x7e */
    return ((1u << f->ebits) - 1) << f->mbits;          /* Inf pattern */
}

/* Expected result of rounding a value past the largest finite value. */
static uint32_t overflow_code(const fmt *f, uint32_t sign) {
    uint32_t sbit = sign << (f->bits - 1);
    if (f->kind == 1) return sbit | 0x7f; /* NaN */
    return sbit | (((1u << f->ebits) - 1) << f->mbits);
}

/* 1. to-f32 against the independent decoder, every pattern. */
static void test_decode_exhaustive(const fmt *f) {
    uint32_t n = 1u << f->bits;
    int bad = 0;
    for (uint32_t p = 0; p < n; p++) {
        int isn;
        double ref = ref_decode(f, p, &isn);
        float got = to_f32(f, p);
        if (isn) {
            /* NaN: stays NaN with its sign; f16 / fp8 NaNs come out quiet
             * (bf16 is a bit shift: the payload, quiet bit included, is kept) */
            uint32_t g = f32_bits(got);
            int quiet_ok = f == &FMT_BF16 ? (g & 0xffffu) == 0 && (g >> 16) == p : (g & 0x400000u) != 0;
            if (!isnan(got) || (g >> 31) != (p >> (f->bits - 1)) || !quiet_ok) bad++;
        } else if (f32_bits(got) != f32_bits((float)ref) || (double)got != ref) {
            if (bad < 5) fprintf(stderr, "%s decode 0x%x: got %.9g ref %.17g\n", f->name, p, got, ref);
            bad++;
        }
    }
    CHECKF(bad == 0, "%s: %d patterns decode wrongly", f->name, bad);
}

/* 2. f32 → X → f32 identity for every non-NaN pattern (±0 and ±Inf included). */
static void test_roundtrip_exhaustive(const fmt *f) {
    uint32_t n = 1u << f->bits;
    int bad = 0;
    for (uint32_t p = 0; p < n; p++) {
        int isn;
        ref_decode(f, p, &isn);
        if (isn) continue;
        uint32_t back = from_f32(f, to_f32(f, p));
        if (back != p) {
            if (bad < 5) fprintf(stderr, "%s roundtrip 0x%x -> 0x%x\n", f->name, p, back);
            bad++;
        }
        if (f == &FMT_E4M3 && fk_f32_to_e4m3_sat(to_f32(f, p)) != p) bad++;
    }
    CHECKF(bad == 0, "%s: %d patterns do not round-trip", f->name, bad);
}

/* 3. Rounding at every midpoint between adjacent finite values (ties to even),
 *    one f32 ulp below and above each midpoint, for both signs; and the
 *    overflow boundary above the largest finite value. */
static void test_midpoints(const fmt *f) {
    uint32_t maxp = max_finite(f);
    if (f->kind == 0) maxp -= 1; /* the Inf pattern itself is not finite */
    int bad = 0;
    for (uint32_t sign = 0; sign < 2; sign++) {
        uint32_t sbit = sign << (f->bits - 1);
        double s = sign ? -1.0 : 1.0;
        for (uint32_t c = 0; c <= maxp; c++) {
            int isn;
            double lo = fabs(ref_decode(f, c, &isn));
            double hi;
            int top = (c == maxp);
            if (!top) {
                hi = fabs(ref_decode(f, c + 1, &isn));
            } else {
                /* the value the next code would have with an unbounded exponent */
                uint32_t nc = c + 1;
                uint32_t e = nc >> f->mbits, m = nc & ((1u << f->mbits) - 1);
                hi = ldexp(1.0 + (double)m / (double)(1u << f->mbits), (int)e - f->bias);
            }
            double mid = 0.5 * (lo + hi);
            float midf = (float)(s * mid);
            if ((double)midf != s * mid) {
                bad++;
                continue;
            }
            float below = nextafterf(midf, 0.0f);
            float above = nextafterf(midf, sign ? -INFINITY : INFINITY);
            uint32_t even = (c & 1) ? c + 1 : c;
            uint32_t exp_mid = (top && even == c + 1) ? overflow_code(f, sign) : (sbit | even);
            uint32_t exp_above = top ? overflow_code(f, sign) : (sbit | (c + 1));
            uint32_t got_mid = from_f32(f, midf), got_below = from_f32(f, below),
                     got_above = from_f32(f, above);
            if (got_mid != exp_mid || got_below != (sbit | c) || got_above != exp_above) {
                if (bad < 5)
                    fprintf(stderr, "%s code 0x%x: mid %.9g -> 0x%x (want 0x%x), below 0x%x, above 0x%x (want 0x%x)\n",
                            f->name, c, (double)midf, got_mid, exp_mid, got_below, got_above, exp_above);
                bad++;
            }
            if (f == &FMT_E4M3) {
                /* saturating variant: the same except past 448 */
                uint32_t want_mid = top ? (sbit | 0x7e) : exp_mid;
                uint32_t want_above = top ? (sbit | 0x7e) : exp_above;
                if (fk_f32_to_e4m3_sat(midf) != want_mid || fk_f32_to_e4m3_sat(below) != (sbit | c) ||
                    fk_f32_to_e4m3_sat(above) != want_above)
                    bad++;
            }
        }
    }
    CHECKF(bad == 0, "%s: %d midpoint roundings wrong", f->name, bad);
}

/* 4. Random f32 values against an independent nearest-value search. */
static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void test_random_nearest(const fmt *f, int count) {
    /* sorted non-negative finite values with their codes */
    uint32_t maxp = max_finite(f);
    if (f->kind == 0) maxp -= 1;
    size_t nv = maxp + 1;
    double *vals = malloc(nv * sizeof(double));
    for (uint32_t c = 0; c <= maxp; c++) {
        int isn;
        vals[c] = ref_decode(f, c, &isn);
    }
    qsort(vals, nv, sizeof(double), cmp_double); /* already sorted; proves monotonic codes */
    int bad = 0;
    for (int it = 0; it < count; it++) {
        uint32_t u = (uint32_t)rng_next();
        /* concentrate on the format's exponent range half of the time */
        if (it & 1) {
            int e = 127 - f->bias - f->mbits - 2 + (int)(rng_next() % (uint64_t)((1 << f->ebits) + f->mbits + 4));
            if (e < 0) e = 0;
            if (e > 254) e = 254;
            u = (u & 0x807fffffu) | ((uint32_t)e << 23);
        }
        float x = bits_f32(u);
        if (isnan(x)) continue;
        double a = fabs((double)x);
        uint32_t sbit = (u >> 31) << (f->bits - 1);
        uint32_t want;
        /* binary search: largest index with vals[i] <= a */
        size_t lo = 0, hi = nv;
        while (hi - lo > 1) {
            size_t m = (lo + hi) / 2;
            if (vals[m] <= a) lo = m;
            else hi = m;
        }
        if (lo == nv - 1) {
            /* at or above the largest finite value: compare with the overflow midpoint */
            uint32_t nc = (uint32_t)nv;
            uint32_t e = nc >> f->mbits, m = nc & ((1u << f->mbits) - 1);
            double next = ldexp(1.0 + (double)m / (double)(1u << f->mbits), (int)e - f->bias);
            double mid = 0.5 * (vals[lo] + next);
            int to_next = a > mid || (a == mid && (nc & 1) == 0);
            want = to_next ? overflow_code(f, u >> 31) : (sbit | (uint32_t)lo);
        } else {
            double dlo = a - vals[lo], dhi = vals[lo + 1] - a;
            size_t pick = dlo < dhi ? lo : dhi < dlo ? lo + 1 : ((lo & 1) ? lo + 1 : lo);
            want = sbit | (uint32_t)pick;
        }
        uint32_t got = from_f32(f, x);
        if (got != want) {
            if (bad < 5) fprintf(stderr, "%s: %.9g -> 0x%x want 0x%x\n", f->name, (double)x, got, want);
            bad++;
        }
    }
    free(vals);
    CHECKF(bad == 0, "%s: %d random values rounded wrongly", f->name, bad);
}

/* 5. Special values and overflow rules as documented in dtype.h / dtype.c. */
static void test_specials(void) {
    /* NaN in */
    CHECK(fk_f32_to_bf16(NAN) == 0x7fc0);
    CHECK(fk_f32_to_bf16(-NAN) == 0x7fc0);
    CHECK(fk_f32_to_f16(NAN) == 0x7e00);
    CHECK(fk_f32_to_f16(-NAN) == 0xfe00);
    CHECK(fk_f32_to_e4m3(NAN) == 0x7f);
    CHECK(fk_f32_to_e4m3(-NAN) == 0xff);
    CHECK(fk_f32_to_e4m3_sat(NAN) == 0x7f);
    CHECK(fk_f32_to_e5m2(NAN) == 0x7f);
    CHECK(fk_f32_to_e5m2(-NAN) == 0xff);
    /* Inf */
    CHECK(fk_f32_to_bf16(INFINITY) == 0x7f80);
    CHECK(fk_f32_to_bf16(-INFINITY) == 0xff80);
    CHECK(fk_f32_to_f16(INFINITY) == 0x7c00);
    CHECK(fk_f32_to_f16(-INFINITY) == 0xfc00);
    CHECK(fk_f32_to_e5m2(INFINITY) == 0x7c);
    CHECK(fk_f32_to_e5m2(-INFINITY) == 0xfc);
    CHECK(fk_f32_to_e4m3(INFINITY) == 0x7f); /* e4m3fn has no Inf */
    CHECK(fk_f32_to_e4m3(-INFINITY) == 0xff);
    CHECK(fk_f32_to_e4m3_sat(INFINITY) == 0x7e);
    CHECK(fk_f32_to_e4m3_sat(-INFINITY) == 0xfe);
    /* overflow thresholds */
    CHECK(fk_f32_to_f16(65504.0f) == 0x7bff);
    CHECK(fk_f32_to_f16(65519.99f) == 0x7bff);
    CHECK(fk_f32_to_f16(65520.0f) == 0x7c00);
    CHECK(fk_f32_to_f16(1e30f) == 0x7c00);
    CHECK(fk_f32_to_e5m2(57344.0f) == 0x7b);
    CHECK(fk_f32_to_e5m2(61439.0f) == 0x7b);
    CHECK(fk_f32_to_e5m2(61440.0f) == 0x7c);
    CHECK(fk_f32_to_e4m3(448.0f) == 0x7e);
    CHECK(fk_f32_to_e4m3(464.0f) == 0x7e);
    CHECK(fk_f32_to_e4m3(464.01f) == 0x7f);
    CHECK(fk_f32_to_e4m3(-1e6f) == 0xff);
    CHECK(fk_f32_to_e4m3_sat(1e6f) == 0x7e);
    CHECK(fk_f32_to_e4m3_sat(-500.0f) == 0xfe);
    CHECK(fk_f32_to_bf16(3.3895314e38f) == 0x7f7f); /* bf16 max */
    CHECK(fk_f32_to_bf16(FLT_MAX) == 0x7f80);       /* rounds past: Inf */
    /* decoded constants */
    CHECK(fk_e4m3_to_f32(0x7e) == 448.0f);
    CHECK(fk_e4m3_to_f32(0x01) == 0x1p-9f);
    CHECK(fk_e4m3_to_f32(0x08) == 0x1p-6f);
    CHECK(isnan(fk_e4m3_to_f32(0x7f)) && isnan(fk_e4m3_to_f32(0xff)));
    CHECK(fk_e5m2_to_f32(0x7b) == 57344.0f);
    CHECK(fk_e5m2_to_f32(0x01) == 0x1p-16f);
    CHECK(isinf(fk_e5m2_to_f32(0x7c)));
    CHECK(fk_f16_to_f32(0x0001) == 0x1p-24f);
    CHECK(fk_f16_to_f32(0x3c00) == 1.0f);
    CHECK(fk_bf16_to_f32(0x3f80) == 1.0f);
    /* signed zeros */
    CHECK(fk_f32_to_bf16(-0.0f) == 0x8000);
    CHECK(fk_f32_to_f16(-0.0f) == 0x8000);
    CHECK(fk_f32_to_e4m3(-0.0f) == 0x80);
    CHECK(fk_f32_to_e5m2(-0.0f) == 0x80);
    /* f32 subnormals: bf16 keeps them (RNE), the others flush to ±0 */
    CHECK(fk_f32_to_bf16(0x1p-149f) == 0x0000); /* below half a bf16 quantum 2^-133 */
    CHECK(fk_f32_to_bf16(0x1p-133f) == 0x0001);
    CHECK(fk_f32_to_bf16(0x3p-134f) == 0x0002); /* 1.5 quanta: tie to even 2 */
    CHECK(fk_f32_to_f16(-0x1p-130f) == 0x8000);
    CHECK(fk_f32_to_e4m3(0x1p-127f) == 0x00);
}

/* 6. Row conversions agree bit-for-bit with the scalar functions. */
static void test_rows(void) {
    static const size_t lens[] = {1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 65, 1023, 100003};
    size_t maxn = 100003;
    uint8_t *raw = malloc(maxn * 8);
    float *f = malloc(maxn * sizeof(float));
    float *g = malloc(maxn * sizeof(float));
    uint8_t *out = malloc(maxn * 8);
    int bad = 0;
    for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
        size_t n = lens[li];
        for (size_t i = 0; i < n * 8; i++) raw[i] = (uint8_t)rng_next();
        /* to f32, all float dtypes, random patterns (NaNs included) */
        const fk_dtype fts[] = {FK_BF16, FK_F16, FK_F8_E4M3, FK_F8_E5M2};
        for (int k = 0; k < 4; k++) {
            fk_convert_to_f32(f, raw, fts[k], n);
            for (size_t i = 0; i < n; i++) {
                float s;
                switch (fts[k]) {
                case FK_BF16: s = fk_bf16_to_f32(((const uint16_t *)raw)[i]); break;
                case FK_F16: s = fk_f16_to_f32(((const uint16_t *)raw)[i]); break;
                case FK_F8_E4M3: s = fk_e4m3_to_f32(raw[i]); break;
                default: s = fk_e5m2_to_f32(raw[i]); break;
                }
                if (f32_bits(s) != f32_bits(f[i])) bad++;
            }
        }
        /* from f32: random bit patterns (NaN, Inf, subnormals) and values in range */
        for (size_t i = 0; i < n; i++) {
            uint32_t u = (uint32_t)rng_next();
            if (i % 3 == 1) u = (u & 0x81ffffffu) | 0x3c000000u; /* |x| around 2^-7..2^8 */
            f[i] = bits_f32(u);
        }
        f[0] = NAN;
        if (n > 2) f[2] = -INFINITY;
        for (int k = 0; k < 4; k++) {
            fk_convert_from_f32(out, fts[k], f, n);
            for (size_t i = 0; i < n; i++) {
                uint32_t want, got;
                switch (fts[k]) {
                case FK_BF16: want = fk_f32_to_bf16(f[i]); got = ((uint16_t *)out)[i]; break;
                case FK_F16: want = fk_f32_to_f16(f[i]); got = ((uint16_t *)out)[i]; break;
                case FK_F8_E4M3: want = fk_f32_to_e4m3(f[i]); got = out[i]; break;
                default: want = fk_f32_to_e5m2(f[i]); got = out[i]; break;
                }
                if (want != got) bad++;
            }
        }
        /* F32 and F64 by value */
        fk_convert_from_f32(out, FK_F64, f, n);
        fk_convert_to_f32(g, out, FK_F64, n);
        for (size_t i = 0; i < n; i++) /* (double) quiets signaling NaNs: compare NaN-ness */
            if (isnan(f[i]) ? !isnan(g[i]) : f32_bits(g[i]) != f32_bits(f[i])) bad++;
        fk_convert_from_f32(out, FK_F32, f, n);
        fk_convert_to_f32(g, out, FK_F32, n);
        if (memcmp(g, f, n * 4) != 0) bad++;
    }
    CHECKF(bad == 0, "row conversions: %d mismatches with the scalar functions", bad);
    free(raw);
    free(f);
    free(g);
    free(out);
}

/* 7. Integers by value, BOOL 0/1. */
static void test_integers(void) {
    int8_t i8[4] = {-128, -1, 0, 127};
    uint8_t u8[3] = {0, 7, 255};
    int16_t i16[2] = {-32768, 32767};
    int32_t i32[2] = {-16777216, 16777217}; /* 2^24 + 1 rounds to even 2^24 */
    int64_t i64[2] = {-5, (int64_t)1 << 40};
    uint8_t bo[3] = {0, 1, 2};
    float f[4];
    fk_convert_to_f32(f, i8, FK_I8, 4);
    CHECK(f[0] == -128 && f[1] == -1 && f[2] == 0 && f[3] == 127);
    fk_convert_to_f32(f, u8, FK_U8, 3);
    CHECK(f[0] == 0 && f[1] == 7 && f[2] == 255);
    fk_convert_to_f32(f, i16, FK_I16, 2);
    CHECK(f[0] == -32768 && f[1] == 32767);
    fk_convert_to_f32(f, i32, FK_I32, 2);
    CHECK(f[0] == -16777216.0f && f[1] == 16777216.0f);
    fk_convert_to_f32(f, i64, FK_I64, 2);
    CHECK(f[0] == -5 && f[1] == 1099511627776.0f);
    fk_convert_to_f32(f, bo, FK_BOOL, 3);
    CHECK(f[0] == 0 && f[1] == 1 && f[2] == 1);

    float src[8] = {3.7f, -3.7f, NAN, 1e10f, -1e10f, 0.0f, -0.5f, 255.9f};
    int8_t o8[8];
    uint8_t ou8[8], ob[8];
    int16_t o16[8];
    int32_t o32[8];
    int64_t o64[8];
    fk_convert_from_f32(o8, FK_I8, src, 8);
    CHECK(o8[0] == 3 && o8[1] == -3 && o8[2] == 0 && o8[3] == 127 && o8[4] == -128 && o8[5] == 0 &&
          o8[6] == 0 && o8[7] == 127);
    fk_convert_from_f32(ou8, FK_U8, src, 8);
    CHECK(ou8[0] == 3 && ou8[1] == 0 && ou8[2] == 0 && ou8[3] == 255 && ou8[4] == 0 && ou8[7] == 255);
    fk_convert_from_f32(o16, FK_I16, src, 8);
    CHECK(o16[0] == 3 && o16[1] == -3 && o16[3] == 32767 && o16[4] == -32768);
    fk_convert_from_f32(o32, FK_I32, src, 8);
    CHECK(o32[0] == 3 && o32[1] == -3 && o32[2] == 0 && o32[3] == INT32_MAX && o32[4] == INT32_MIN);
    fk_convert_from_f32(o64, FK_I64, src, 8);
    CHECK(o64[0] == 3 && o64[1] == -3 && o64[2] == 0 && o64[3] == 10000000000LL &&
          o64[4] == -10000000000LL);
    float huge[2] = {1e30f, -1e30f};
    fk_convert_from_f32(o64, FK_I64, huge, 2);
    CHECK(o64[0] == INT64_MAX && o64[1] == INT64_MIN);
    fk_convert_from_f32(ob, FK_BOOL, src, 8);
    CHECK(ob[0] == 1 && ob[1] == 1 && ob[2] == 1 && ob[5] == 0 && ob[6] == 1);
}

static void test_names(void) {
    fk_dtype t;
    CHECK(fk_dtype_parse("BF16", &t) && t == FK_BF16);
    CHECK(fk_dtype_parse("F8_E4M3", &t) && t == FK_F8_E4M3);
    CHECK(fk_dtype_parse("F8_E5M2", &t) && t == FK_F8_E5M2);
    CHECK(fk_dtype_parse("BOOL", &t) && t == FK_BOOL);
    CHECK(!fk_dtype_parse("F8", &t));
    CHECK(!fk_dtype_parse("bf16", &t));
    CHECK(!fk_dtype_parse(NULL, &t));
    for (int i = 0; i < FK_DTYPE_COUNT; i++) {
        CHECK(fk_dtype_parse(fk_dtype_name((fk_dtype)i), &t) && t == (fk_dtype)i);
    }
    CHECK(fk_dtype_size(FK_F64) == 8 && fk_dtype_size(FK_F32) == 4 && fk_dtype_size(FK_BF16) == 2 &&
          fk_dtype_size(FK_F8_E5M2) == 1 && fk_dtype_size(FK_I64) == 8 && fk_dtype_size(FK_BOOL) == 1);
    CHECK(fk_dtype_size(FK_DTYPE_COUNT) == 0);
    CHECK(fk_dtype_is_float(FK_F8_E4M3) && fk_dtype_is_float(FK_F64) && !fk_dtype_is_float(FK_I8) &&
          !fk_dtype_is_float(FK_BOOL));
}

int main(void) {
    const fmt *fmts[4] = {&FMT_BF16, &FMT_F16, &FMT_E4M3, &FMT_E5M2};
    for (int i = 0; i < 4; i++) {
        test_decode_exhaustive(fmts[i]);
        test_roundtrip_exhaustive(fmts[i]);
        test_midpoints(fmts[i]);
        test_random_nearest(fmts[i], 400000);
    }
    test_specials();
    test_rows();
    test_integers();
    test_names();
    return fk_test_finish("test_dtype");
}
