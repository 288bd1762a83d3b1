/* dtype: element types and exact conversions to and from f32.
 *
 * Semantics (chosen to match PyTorch's c10 conversions, checked against
 * c10/util/{BFloat16,Half,Float8_e4m3fn,Float8_e5m2}.h):
 * - f32 → bf16 / f16 / e4m3fn / e5m2 round to nearest, ties to even, on the
 *   exact f32 value (no double rounding), subnormals included.
 * - Overflow: bf16, f16 and e5m2 give ±Inf once the value rounds past the
 *   largest finite value (f16: |x| >= 65520, e5m2: |x| >= 61440). e4m3fn has
 *   no Inf: like torch, anything that rounds past 448 (|x| > 464, and ±Inf)
 *   becomes NaN (0x7f / 0xff, sign kept); fk_f32_to_e4m3_sat clamps such
 *   values (and ±Inf) to ±448 instead (NaN stays NaN).
 * - NaN in: bf16 → 0x7fc0 (torch's canonical NaN, sign dropped);
 *   f16 → sign|0x7e00; e4m3fn → sign|0x7f; e5m2 → sign|0x7f.
 * - X → f32 is exact. NaN keeps its sign and payload; f16 / fp8 NaNs come out
 *   quiet (the quiet bit set), as the x86 F16C instruction does.
 * - Integers: to f32 by value (C conversion, RNE for |i64| > 2^24); from f32
 *   by truncation toward zero, NaN → 0, out of range clamped to the type's
 *   range. BOOL: to f32 0/1 (any non-zero byte is true); from f32 x != 0
 *   (NaN is true, as in torch).
 */
#include "core/dtype.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#if defined(__x86_64__)
#define FK_DTYPE_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

static const struct {
    const char *name;
    size_t size;
} fk_dtype_info[FK_DTYPE_COUNT] = {
    [FK_F64] = {"F64", 8},     [FK_F32] = {"F32", 4},         [FK_F16] = {"F16", 2},
    [FK_BF16] = {"BF16", 2},   [FK_F8_E4M3] = {"F8_E4M3", 1}, [FK_F8_E5M2] = {"F8_E5M2", 1},
    [FK_I64] = {"I64", 8},     [FK_I32] = {"I32", 4},         [FK_I16] = {"I16", 2},
    [FK_I8] = {"I8", 1},       [FK_U8] = {"U8", 1},           [FK_BOOL] = {"BOOL", 1},
};

size_t fk_dtype_size(fk_dtype t) {
    return (unsigned)t < FK_DTYPE_COUNT ? fk_dtype_info[t].size : 0;
}

const char *fk_dtype_name(fk_dtype t) {
    return (unsigned)t < FK_DTYPE_COUNT ? fk_dtype_info[t].name : "?";
}

bool fk_dtype_parse(const char *name, fk_dtype *out) {
    if (!name) return false;
    for (int i = 0; i < FK_DTYPE_COUNT; i++) {
        if (strcmp(name, fk_dtype_info[i].name) == 0) {
            if (out) *out = (fk_dtype)i;
            return true;
        }
    }
    return false;
}

bool fk_dtype_is_float(fk_dtype t) {
    return t == FK_F64 || t == FK_F32 || t == FK_F16 || t == FK_BF16 || t == FK_F8_E4M3 ||
           t == FK_F8_E5M2;
}

/* ---- bit helpers ---- */

static inline uint32_t fk_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float fk_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Round a finite, non-negative f32 (bits `a`) to a small binary format with
 * `mbits` mantissa bits and exponent bias `bias`, ties to even. Returns the
 * format's (exponent << mbits | mantissa) code, which may run past the largest
 * finite code: the caller applies the overflow rule. */
static inline uint32_t fk_round_small(uint32_t a, int mbits, int bias) {
    int e = (int)(a >> 23); /* biased f32 exponent */
    if (e == 0) return 0;   /* f32 subnormals are far below every target's quantum */
    int ue = e - 127;
    int emin = 1 - bias; /* unbiased exponent of the target's smallest normal */
    if (ue >= emin) {
        int shift = 23 - mbits;
        uint32_t r = a - ((uint32_t)(127 - bias) << 23); /* rebias the exponent */
        r += ((uint32_t)1 << (shift - 1)) - 1 + ((r >> shift) & 1);
        return r >> shift;
    }
    /* Target subnormal: count quanta of 2^(emin - mbits). */
    uint32_t m = (a & 0x7fffffu) | 0x800000u;
    int shift = 23 - mbits + emin - ue; /* > 23 - mbits */
    if (shift > 24) return 0;           /* below half a quantum */
    uint32_t q = m >> shift;
    uint32_t rem = m & (((uint32_t)1 << shift) - 1);
    uint32_t half = (uint32_t)1 << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return q;
}

/* Decode a small binary format code (no sign) with Inf/NaN handled by the
 * caller: value = 2^(e - bias) · (1 + m / 2^mbits), subnormal m · 2^(1-bias-mbits). */
static inline uint32_t fk_decode_small(uint32_t code, int mbits, int bias) {
    uint32_t e = code >> mbits;
    uint32_t m = code & (((uint32_t)1 << mbits) - 1);
    if (e == 0) {
        if (m == 0) return 0;
        /* Normalize: value = m · 2^(1 - bias - mbits). */
        int ex = 1 - bias; /* exponent of the leading bit position mbits */
        while (!(m & ((uint32_t)1 << mbits))) {
            m <<= 1;
            ex--;
        }
        m &= ((uint32_t)1 << mbits) - 1;
        return ((uint32_t)(ex + 127) << 23) | (m << (23 - mbits));
    }
    return ((e - (uint32_t)bias + 127) << 23) | (m << (23 - mbits));
}

/* ---- bf16 ---- */

float fk_bf16_to_f32(uint16_t h) { return fk_bits_f32((uint32_t)h << 16); }

uint16_t fk_f32_to_bf16(float f) {
    uint32_t u = fk_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

/* ---- f16 ---- */

float fk_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t code = h & 0x7fffu;
    if (code >= 0x7c00u) {
        uint32_t m = code & 0x3ffu;
        if (m == 0) return fk_bits_f32(sign | 0x7f800000u);
        return fk_bits_f32(sign | 0x7fc00000u | (m << 13));
    }
    return fk_bits_f32(sign | fk_decode_small(code, 10, 15));
}

uint16_t fk_f32_to_f16(float f) {
    uint32_t u = fk_f32_bits(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
    if (a == 0x7f800000u) return (uint16_t)(sign | 0x7c00u);
    uint32_t r = fk_round_small(a, 10, 15);
    if (r >= 0x7c00u) r = 0x7c00u;
    return (uint16_t)(sign | r);
}

/* ---- float8 e4m3fn ---- */

float fk_e4m3_to_f32(uint8_t b) {
    uint32_t sign = (uint32_t)(b & 0x80) << 24;
    uint32_t code = b & 0x7fu;
    if (code == 0x7f) return fk_bits_f32(sign | 0x7fc00000u);
    return fk_bits_f32(sign | fk_decode_small(code, 3, 7));
}

uint8_t fk_f32_to_e4m3(float f) {
    uint32_t u = fk_f32_bits(f);
    uint32_t sign = (u >> 24) & 0x80u;
    uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) return (uint8_t)(sign | 0x7fu); /* NaN, Inf */
    uint32_t r = fk_round_small(a, 3, 7);
    if (r > 0x7eu) r = 0x7fu; /* rounds past 448: NaN */
    return (uint8_t)(sign | r);
}

uint8_t fk_f32_to_e4m3_sat(float f) {
    uint32_t u = fk_f32_bits(f);
    uint32_t sign = (u >> 24) & 0x80u;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint8_t)(sign | 0x7fu);
    if (a == 0x7f800000u) return (uint8_t)(sign | 0x7eu);
    uint32_t r = fk_round_small(a, 3, 7);
    if (r > 0x7eu) r = 0x7eu;
    return (uint8_t)(sign | r);
}

/* ---- float8 e5m2 ---- */

float fk_e5m2_to_f32(uint8_t b) {
    uint32_t sign = (uint32_t)(b & 0x80) << 24;
    uint32_t code = b & 0x7fu;
    if (code >= 0x7cu) {
        uint32_t m = code & 3u;
        if (m == 0) return fk_bits_f32(sign | 0x7f800000u);
        return fk_bits_f32(sign | 0x7fc00000u | (m << 21));
    }
    return fk_bits_f32(sign | fk_decode_small(code, 2, 15));
}

uint8_t fk_f32_to_e5m2(float f) {
    uint32_t u = fk_f32_bits(f);
    uint32_t sign = (u >> 24) & 0x80u;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint8_t)(sign | 0x7fu);
    if (a == 0x7f800000u) return (uint8_t)(sign | 0x7cu);
    uint32_t r = fk_round_small(a, 2, 15);
    if (r >= 0x7cu) r = 0x7cu;
    return (uint8_t)(sign | r);
}

/* ---- tables for the row conversions ---- */

static float fk_e4m3_table[256], fk_e5m2_table[256];
static pthread_once_t fk_fp8_once = PTHREAD_ONCE_INIT;

static void fk_fp8_tables_init(void) {
    for (int i = 0; i < 256; i++) {
        fk_e4m3_table[i] = fk_e4m3_to_f32((uint8_t)i);
        fk_e5m2_table[i] = fk_e5m2_to_f32((uint8_t)i);
    }
}

static const float *fk_fp8_table(fk_dtype t) {
    pthread_once(&fk_fp8_once, fk_fp8_tables_init);
    return t == FK_F8_E4M3 ? fk_e4m3_table : fk_e5m2_table;
}

/* ---- f16 rows with F16C when the CPU has it ---- */

#ifdef FK_DTYPE_X86
__attribute__((target("avx,f16c"))) static void fk_f16_row_to_f32_f16c(float *dst,
                                                                        const uint16_t *src,
                                                                        size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(src + i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    for (; i < n; i++) dst[i] = fk_f16_to_f32(src[i]);
}

/* F16C and AVX state enabled by the OS (cpuid leaf 1 ECX: OSXSAVE 27, AVX 28,
 * F16C 29; XCR0 bits 1-2: SSE and AVX state). */
static int fk_detect_f16c(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (!(c & (1u << 27)) || !(c & (1u << 28)) || !(c & (1u << 29))) return 0;
    unsigned lo, hi;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 6u) == 6u;
}

static int fk_have_f16c(void) {
    static int cached = -1; /* every thread computes the same value */
    int c = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (c < 0) {
        c = fk_detect_f16c();
        __atomic_store_n(&cached, c, __ATOMIC_RELAXED);
    }
    return c;
}
#endif

static void fk_f16_row_to_f32(float *dst, const uint16_t *src, size_t n) {
#ifdef FK_DTYPE_X86
    if (fk_have_f16c()) {
        fk_f16_row_to_f32_f16c(dst, src, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) dst[i] = fk_f16_to_f32(src[i]);
}

/* ---- f32 → integer by value ---- */

#define FK_F32_TO_INT(x, lo, hi, type)                                                       \
    ((x) != (x) ? (type)0 : (x) <= (float)(lo) ? (type)(lo) : (x) >= (float)(hi) ? (type)(hi) \
                                                                                  : (type)(x))

static inline int64_t fk_f32_to_i64(float x) {
    /* (float)INT64_MAX rounds up to 2^63, which is out of range: compare with 2^63. */
    if (x != x) return 0;
    if (x >= 9223372036854775808.0f) return INT64_MAX;
    if (x <= -9223372036854775808.0f) return INT64_MIN;
    return (int64_t)x;
}

static inline int32_t fk_f32_to_i32(float x) {
    if (x != x) return 0;
    if (x >= 2147483648.0f) return INT32_MAX;
    if (x <= -2147483648.0f) return INT32_MIN;
    return (int32_t)x;
}

/* ---- row conversions ---- */

void fk_convert_to_f32(float *dst, const void *src, fk_dtype t, size_t n) {
    switch (t) {
    case FK_F32:
        if ((const void *)dst != src) memmove(dst, src, n * sizeof(float));
        return;
    case FK_F64: {
        const double *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = (float)s[i];
        return;
    }
    case FK_BF16: {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) {
            uint32_t u = (uint32_t)s[i] << 16;
            memcpy(&dst[i], &u, 4);
        }
        return;
    }
    case FK_F16: fk_f16_row_to_f32(dst, src, n); return;
    case FK_F8_E4M3:
    case FK_F8_E5M2: {
        const float *tab = fk_fp8_table(t);
        const uint8_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = tab[s[i]];
        return;
    }
    case FK_I64: {
        const int64_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = (float)s[i];
        return;
    }
    case FK_I32: {
        const int32_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = (float)s[i];
        return;
    }
    case FK_I16: {
        const int16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = (float)s[i];
        return;
    }
    case FK_I8: {
        const int8_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = (float)s[i];
        return;
    }
    case FK_U8: {
        const uint8_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = (float)s[i];
        return;
    }
    case FK_BOOL: {
        const uint8_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = s[i] ? 1.0f : 0.0f;
        return;
    }
    case FK_DTYPE_COUNT: break;
    }
}

void fk_convert_from_f32(void *dst, fk_dtype t, const float *src, size_t n) {
    switch (t) {
    case FK_F32:
        if (dst != (const void *)src) memmove(dst, src, n * sizeof(float));
        return;
    case FK_F64: {
        double *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = (double)src[i];
        return;
    }
    case FK_BF16: {
        /* Branch-free form of fk_f32_to_bf16 so the compiler can vectorize it. */
        uint16_t *d = dst;
        for (size_t i = 0; i < n; i++) {
            uint32_t u;
            memcpy(&u, &src[i], 4);
            uint32_t r = (u + 0x7fffu + ((u >> 16) & 1)) >> 16;
            d[i] = (u & 0x7fffffffu) > 0x7f800000u ? (uint16_t)0x7fc0 : (uint16_t)r;
        }
        return;
    }
    case FK_F16: {
        uint16_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = fk_f32_to_f16(src[i]);
        return;
    }
    case FK_F8_E4M3: {
        uint8_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = fk_f32_to_e4m3(src[i]);
        return;
    }
    case FK_F8_E5M2: {
        uint8_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = fk_f32_to_e5m2(src[i]);
        return;
    }
    case FK_I64: {
        int64_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = fk_f32_to_i64(src[i]);
        return;
    }
    case FK_I32: {
        int32_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = fk_f32_to_i32(src[i]);
        return;
    }
    case FK_I16: {
        int16_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = FK_F32_TO_INT(src[i], INT16_MIN, INT16_MAX, int16_t);
        return;
    }
    case FK_I8: {
        int8_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = FK_F32_TO_INT(src[i], INT8_MIN, INT8_MAX, int8_t);
        return;
    }
    case FK_U8: {
        uint8_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = FK_F32_TO_INT(src[i], 0, UINT8_MAX, uint8_t);
        return;
    }
    case FK_BOOL: {
        uint8_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = src[i] != 0.0f ? 1 : 0;
        return;
    }
    case FK_DTYPE_COUNT: break;
    }
}
