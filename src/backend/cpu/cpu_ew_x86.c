/* cpu_ew_x86: AVX-512 and AVX2 row kernels of the elementwise and
 * normalization ops (the fk_ew_kernels tables of cpu_ew.h), compiled with
 * target attributes (the build never needs -march) and chosen at run time
 * from the backend's ISA.
 *
 * Every kernel gives the bits of the portable loop it replaces: each lane
 * does the same f32 / f64 operations as the scalar code in the same order
 * (separate multiply and add: the library is built with -ffp-contract=off,
 * so the compiler fuses nothing), conversions f32 ↔ f64 round to nearest as
 * the scalar casts do, division is the IEEE quotient in SIMD too, and the f64
 * row sums keep the eight partial sums of the reference (element c in
 * partial c mod 8) in one zmm (two ymm), combined in the reference order.
 * Tails run the scalar formula (or a masked vector, same lanes). */
#include "backend/cpu/cpu_ew.h"

#if defined(__x86_64__)
#include <immintrin.h>

/* fk_cpu_exp's constants (cpu.h), spelled the same way */
#define FK_EW_LOG2E 1.44269504088896341f
#define FK_EW_SHIFTER 12582912.0f /* 1.5·2^23: adding it rounds to an integer */
#define FK_EW_LN2_HI 0.693145751953125f
#define FK_EW_LN2_LO 1.428606765330187045e-06f
#define FK_EW_EXP_LO 0xc2aeac50u /* -87.33654f: exp() < FLT_MIN below */
#define FK_EW_EXP_HI 0x42b0c0a5u /* 88.37626f: exp() > FLT_MAX above */
/* (utm − 0x4b400000 + 127) mod 2^32 as one addend */
#define FK_EW_EXP_BIAS ((int)(127u - 0x4b400000u))

/* The 8 partial sums in the reference order. */
static inline double fk_ew_combine8(const double s[8]) {
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* ==================================================================== */
/* AVX-512F                                                             */
/* ==================================================================== */

#define FK_T512 __attribute__((target("avx512f")))

/* fk_cpu_exp on 16 lanes. The selects of the scalar code as float
 * compares: (ux > lo bits, unsigned) is x < lo for every non-NaN x
 * (negative floats order by magnitude as unsigned), (ux > hi bits and sign
 * clear) is x > hi; NaN lanes get x back last, as in the scalar code. */
FK_T512 static inline __m512 fk_ew_exp512(__m512 x) {
    const __m512 shifter = _mm512_set1_ps(FK_EW_SHIFTER);
    __m512 tm = _mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(FK_EW_LOG2E)), shifter);
    __m512 nf = _mm512_sub_ps(tm, shifter);
    __m512i two_n = _mm512_slli_epi32(
        _mm512_add_epi32(_mm512_castps_si512(tm), _mm512_set1_epi32(FK_EW_EXP_BIAS)), 23);
    __m512 r = _mm512_sub_ps(_mm512_sub_ps(x, _mm512_mul_ps(nf, _mm512_set1_ps(FK_EW_LN2_HI))),
                             _mm512_mul_ps(nf, _mm512_set1_ps(FK_EW_LN2_LO)));
    __m512 q = _mm512_set1_ps(1.0f / 5040.0f);
    q = _mm512_add_ps(_mm512_mul_ps(q, r), _mm512_set1_ps(1.0f / 720.0f));
    q = _mm512_add_ps(_mm512_mul_ps(q, r), _mm512_set1_ps(1.0f / 120.0f));
    q = _mm512_add_ps(_mm512_mul_ps(q, r), _mm512_set1_ps(1.0f / 24.0f));
    q = _mm512_add_ps(_mm512_mul_ps(q, r), _mm512_set1_ps(1.0f / 6.0f));
    q = _mm512_add_ps(_mm512_mul_ps(q, r), _mm512_set1_ps(0.5f));
    __m512 er = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(r, r), q), r),
                              _mm512_set1_ps(1.0f));
    __m512 y = _mm512_mul_ps(er, _mm512_castsi512_ps(two_n));
    const __m512 lo = _mm512_castsi512_ps(_mm512_set1_epi32((int)FK_EW_EXP_LO));
    const __m512 hi = _mm512_castsi512_ps(_mm512_set1_epi32((int)FK_EW_EXP_HI));
    __mmask16 below = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    __mmask16 above = _mm512_cmp_ps_mask(x, hi, _CMP_GT_OQ);
    __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    y = _mm512_mask_mov_ps(y, below, _mm512_setzero_ps());
    y = _mm512_mask_mov_ps(y, above, _mm512_castsi512_ps(_mm512_set1_epi32(0x7f800000)));
    return _mm512_mask_mov_ps(y, nan, x);
}

FK_T512 static inline __m512 fk_ew_neg512(__m512 z) {
    return _mm512_castsi512_ps(
        _mm512_xor_si512(_mm512_castps_si512(z), _mm512_set1_epi32((int)0x80000000u)));
}

/* x / (1 + e^(−z)) */
FK_T512 static inline __m512 fk_ew_sigmoid_mul512(__m512 x, __m512 z) {
    return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), fk_ew_exp512(fk_ew_neg512(z))));
}

FK_T512 static inline __m512 fk_ew_silu512(__m512 x) { return fk_ew_sigmoid_mul512(x, x); }

FK_T512 static inline __m512 fk_ew_gelu_tanh512(__m512 x) {
    __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
    __m512 inner = _mm512_add_ps(x, _mm512_mul_ps(_mm512_set1_ps(FK_EW_GELU_KAPPA), x3));
    return fk_ew_sigmoid_mul512(x, _mm512_mul_ps(_mm512_set1_ps(FK_EW_GELU_TWO_BETA), inner));
}

FK_T512 static inline __m512 fk_ew_gelu_quick512(__m512 x) {
    return fk_ew_sigmoid_mul512(x, _mm512_mul_ps(_mm512_set1_ps(FK_EW_GELU_QUICK_K), x));
}

FK_T512 static inline __mmask16 fk_ew_mask16(int64_t n) { return (__mmask16)((1u << n) - 1u); }

#define FK_EW_ACT_LOOP512(fn)                                                                      \
    do {                                                                                           \
        int64_t i = 0;                                                                             \
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, fn(_mm512_loadu_ps(x + i)));          \
        if (i < n) {                                                                               \
            __mmask16 mk = fk_ew_mask16(n - i);                                                    \
            _mm512_mask_storeu_ps(y + i, mk, fn(_mm512_maskz_loadu_ps(mk, x + i)));                \
        }                                                                                          \
    } while (0)

FK_T512 static void fk_ew_act512(fk_act act, float *y, const float *x, int64_t n) {
    switch (act) {
    case FK_ACT_GELU_TANH: FK_EW_ACT_LOOP512(fk_ew_gelu_tanh512); return;
    case FK_ACT_SILU: FK_EW_ACT_LOOP512(fk_ew_silu512); return;
    case FK_ACT_GELU_QUICK: FK_EW_ACT_LOOP512(fk_ew_gelu_quick512); return;
    case FK_ACT_NONE:
    case FK_ACT_COUNT: break;
    }
    FK_ASSERT(!"fk_ew_act512: not an activation");
}

/* ---- binary and modulation ---- */

FK_T512 static void fk_ew_add512(float *y, const float *a, const float *b, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_add_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i)));
    if (i < n) {
        __mmask16 mk = fk_ew_mask16(n - i);
        _mm512_mask_storeu_ps(
            y + i, mk,
            _mm512_add_ps(_mm512_maskz_loadu_ps(mk, a + i), _mm512_maskz_loadu_ps(mk, b + i)));
    }
}

FK_T512 static void fk_ew_mul512(float *y, const float *a, const float *b, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i)));
    if (i < n) {
        __mmask16 mk = fk_ew_mask16(n - i);
        _mm512_mask_storeu_ps(
            y + i, mk,
            _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, a + i), _mm512_maskz_loadu_ps(mk, b + i)));
    }
}

/* (1 + scale)·v + shift */
FK_T512 static inline __m512 fk_ew_mod512(__m512 v, __m512 shift, __m512 scale) {
    return _mm512_add_ps(_mm512_mul_ps(_mm512_add_ps(_mm512_set1_ps(1.0f), scale), v), shift);
}

FK_T512 static void fk_ew_modulate512(float *y, const float *x, const float *shift,
                                      const float *scale, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, fk_ew_mod512(_mm512_loadu_ps(x + i), _mm512_loadu_ps(shift + i),
                                             _mm512_loadu_ps(scale + i)));
    if (i < n) {
        __mmask16 mk = fk_ew_mask16(n - i);
        _mm512_mask_storeu_ps(y + i, mk,
                              fk_ew_mod512(_mm512_maskz_loadu_ps(mk, x + i),
                                           _mm512_maskz_loadu_ps(mk, shift + i),
                                           _mm512_maskz_loadu_ps(mk, scale + i)));
    }
}

FK_T512 static void fk_ew_gated_add512(float *x, const float *y, const float *gate, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(
            x + i, _mm512_add_ps(_mm512_loadu_ps(x + i),
                                 _mm512_mul_ps(_mm512_loadu_ps(gate + i), _mm512_loadu_ps(y + i))));
    if (i < n) {
        __mmask16 mk = fk_ew_mask16(n - i);
        _mm512_mask_storeu_ps(x + i, mk,
                              _mm512_add_ps(_mm512_maskz_loadu_ps(mk, x + i),
                                            _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, gate + i),
                                                          _mm512_maskz_loadu_ps(mk, y + i))));
    }
}

/* ---- RoPE ----
 * 16 floats of x are 8 pairs (x0, x1): out = a·(x0, x0) + b·(x1, x1) with
 * a = ab[i..], b = ab[D + i..] (fk_ew_rope_ab): (p0·x0 + p1·x1, p2·x0 + p3·x1). */
FK_T512 static inline __m512 fk_ew_rot512(__m512 v, const float *a, const float *b) {
    return _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(a), _mm512_moveldup_ps(v)),
                         _mm512_mul_ps(_mm512_loadu_ps(b), _mm512_movehdup_ps(v)));
}

/* scalar pairs [j0, D/2) of a row, the same products and sum */
static inline void fk_ew_rot_pairs(float *x, const float *ab, int64_t D, int64_t j0) {
    for (int64_t j = j0; j < D / 2; j++) {
        float x0 = x[2 * j], x1 = x[2 * j + 1];
        x[2 * j] = ab[2 * j] * x0 + ab[D + 2 * j] * x1;
        x[2 * j + 1] = ab[2 * j + 1] * x0 + ab[D + 2 * j + 1] * x1;
    }
}

FK_T512 static void fk_ew_rope512(float *x, const float *ab, int64_t D) {
    int64_t i = 0;
    for (; i + 16 <= D; i += 16)
        _mm512_storeu_ps(x + i, fk_ew_rot512(_mm512_loadu_ps(x + i), ab + i, ab + D + i));
    fk_ew_rot_pairs(x, ab, D, i / 2);
}

/* ---- f64 row statistics ---- */

/* The scalar tail of one row's statistic: columns [i, n) into the partials
 * s (element i0 + j in partial j, i0 a multiple of 8), then the combine. */
static inline double fk_ew_stat_tail(fk_ew_stat kind, const float *x, int64_t i, int64_t n,
                                     double mean, double s[8]) {
    for (int j = 0; i < n; i++, j++) {
        if (kind == FK_EW_SUM) {
            s[j] += (double)x[i];
        } else if (kind == FK_EW_SQDEV) {
            double d = (double)x[i] - mean;
            s[j] += d * d;
        } else {
            s[j] += (double)x[i] * (double)x[i];
        }
    }
    return fk_ew_combine8(s);
}

/* NR rows at once, one zmm of 8 partials per row (kind, NR constant after
 * inlining) */
FK_T512 static inline __attribute__((always_inline)) void
fk_ew_stats512_t(fk_ew_stat kind, const int NR, const float *x, int64_t ld, int64_t n,
                 const double *mean, double *out) {
    __m512d acc[FK_EW_STAT_ROWS], mv[FK_EW_STAT_ROWS];
    for (int r = 0; r < NR; r++) {
        acc[r] = _mm512_setzero_pd();
        mv[r] = _mm512_set1_pd(kind == FK_EW_SQDEV ? mean[r] : 0.0);
    }
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int r = 0; r < NR; r++) {
            __m512d v = _mm512_cvtps_pd(_mm256_loadu_ps(x + r * ld + i));
            if (kind == FK_EW_SQDEV) v = _mm512_sub_pd(v, mv[r]);
            if (kind != FK_EW_SUM) v = _mm512_mul_pd(v, v);
            acc[r] = _mm512_add_pd(acc[r], v);
        }
    for (int r = 0; r < NR; r++) {
        double s[8];
        _mm512_storeu_pd(s, acc[r]);
        out[r] = fk_ew_stat_tail(kind, x + r * ld, i, n, kind == FK_EW_SQDEV ? mean[r] : 0.0, s);
    }
}

#define FK_EW_STATS_SWITCH(tmpl)                                                                   \
    switch (kind * 8 + nr) {                                                                       \
    case FK_EW_SUM * 8 + 1: tmpl(FK_EW_SUM, 1, x, ld, n, mean, out); return;                       \
    case FK_EW_SUM * 8 + 2: tmpl(FK_EW_SUM, 2, x, ld, n, mean, out); return;                       \
    case FK_EW_SUM * 8 + 3: tmpl(FK_EW_SUM, 3, x, ld, n, mean, out); return;                       \
    case FK_EW_SUM * 8 + 4: tmpl(FK_EW_SUM, 4, x, ld, n, mean, out); return;                       \
    case FK_EW_SQDEV * 8 + 1: tmpl(FK_EW_SQDEV, 1, x, ld, n, mean, out); return;                   \
    case FK_EW_SQDEV * 8 + 2: tmpl(FK_EW_SQDEV, 2, x, ld, n, mean, out); return;                   \
    case FK_EW_SQDEV * 8 + 3: tmpl(FK_EW_SQDEV, 3, x, ld, n, mean, out); return;                   \
    case FK_EW_SQDEV * 8 + 4: tmpl(FK_EW_SQDEV, 4, x, ld, n, mean, out); return;                   \
    case FK_EW_SUMSQ * 8 + 1: tmpl(FK_EW_SUMSQ, 1, x, ld, n, mean, out); return;                   \
    case FK_EW_SUMSQ * 8 + 2: tmpl(FK_EW_SUMSQ, 2, x, ld, n, mean, out); return;                   \
    case FK_EW_SUMSQ * 8 + 3: tmpl(FK_EW_SUMSQ, 3, x, ld, n, mean, out); return;                   \
    case FK_EW_SUMSQ * 8 + 4: tmpl(FK_EW_SUMSQ, 4, x, ld, n, mean, out); return;                   \
    }                                                                                              \
    FK_ASSERT(!"fk_ew stats: bad kind or row count")

FK_T512 static void fk_ew_stats512(fk_ew_stat kind, const float *x, int64_t ld, int nr, int64_t n,
                                   const double *mean, double *out) {
    FK_EW_STATS_SWITCH(fk_ew_stats512_t);
}

/* ---- normalized outputs ---- */

/* (float)((x − mean)·rstd) of x[0..16) (two 8-lane halves: 256-bit loads
 * feed the f64 conversions without a lane extract) */
FK_T512 static inline __m512 fk_ew_norm512(const float *x, __m512d mean, __m512d rstd) {
    __m512d lo = _mm512_cvtps_pd(_mm256_loadu_ps(x));
    __m512d hi = _mm512_cvtps_pd(_mm256_loadu_ps(x + 8));
    __m256 flo = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_sub_pd(lo, mean), rstd));
    __m256 fhi = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_sub_pd(hi, mean), rstd));
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(flo)),
                                               _mm256_castps_pd(fhi), 1));
}

/* (float)(x·r) of x[0..16) */
FK_T512 static inline __m512 fk_ew_scale512(const float *x, __m512d r) {
    __m256 flo = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x)), r));
    __m256 fhi = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + 8)), r));
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(flo)),
                                               _mm256_castps_pd(fhi), 1));
}

FK_T512 static void fk_ew_ln_out512(float *y, const float *x, int64_t n, double mean, double rstd,
                                    const float *w, const float *b) {
    __m512d mv = _mm512_set1_pd(mean), rv = _mm512_set1_pd(rstd);
    int64_t i = 0;
    if (!w && !b) /* 8 lanes at a time: no lane insert */
        for (; i + 8 <= n; i += 8) {
            __m512d d = _mm512_cvtps_pd(_mm256_loadu_ps(x + i));
            _mm256_storeu_ps(y + i, _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_sub_pd(d, mv), rv)));
        }
    for (; i + 16 <= n; i += 16) {
        __m512 v = fk_ew_norm512(x + i, mv, rv);
        if (w) v = _mm512_mul_ps(v, _mm512_loadu_ps(w + i));
        if (b) v = _mm512_add_ps(v, _mm512_loadu_ps(b + i));
        _mm512_storeu_ps(y + i, v);
    }
    for (; i < n; i++) {
        float v = (float)(((double)x[i] - mean) * rstd);
        if (w) v = v * w[i];
        if (b) v = v + b[i];
        y[i] = v;
    }
}

FK_T512 static void fk_ew_ln_mod_out512(float *y, const float *x, int64_t n, double mean,
                                        double rstd, const float *shift, const float *scale) {
    __m512d mv = _mm512_set1_pd(mean), rv = _mm512_set1_pd(rstd);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = fk_ew_norm512(x + i, mv, rv);
        _mm512_storeu_ps(y + i,
                         fk_ew_mod512(v, _mm512_loadu_ps(shift + i), _mm512_loadu_ps(scale + i)));
    }
    for (; i < n; i++) {
        float v = (float)(((double)x[i] - mean) * rstd);
        y[i] = (1.0f + scale[i]) * v + shift[i];
    }
}

FK_T512 static void fk_ew_rms_out512(float *y, const float *x, int64_t n, double r,
                                     const float *scale) {
    __m512d rv = _mm512_set1_pd(r);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i,
                         _mm512_mul_ps(fk_ew_scale512(x + i, rv), _mm512_loadu_ps(scale + i)));
    for (; i < n; i++) y[i] = (float)((double)x[i] * r) * scale[i];
}

FK_T512 static void fk_ew_rms_rope512(float *y, const float *x, int64_t D, double r,
                                      const float *scale, const float *ab) {
    __m512d rv = _mm512_set1_pd(r);
    int64_t i = 0;
    for (; i + 16 <= D; i += 16) {
        __m512 v = _mm512_mul_ps(fk_ew_scale512(x + i, rv), _mm512_loadu_ps(scale + i));
        _mm512_storeu_ps(y + i, fk_ew_rot512(v, ab + i, ab + D + i));
    }
    for (int64_t k = i; k < D; k++) y[k] = (float)((double)x[k] * r) * scale[k];
    fk_ew_rot_pairs(y, ab, D, i / 2);
}

/* ---- softmax pieces ---- */

FK_T512 static float fk_ew_max512(const float *x, int64_t n) {
    /* max_ps(a, b) = a > b ? a : b per lane: the scalar step with a = x */
    __m512 m = _mm512_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) m = _mm512_max_ps(_mm512_loadu_ps(x + i), m);
    float l[16];
    _mm512_storeu_ps(l, m);
    float mx = -INFINITY;
    for (int j = 0; j < 16; j++) mx = l[j] > mx ? l[j] : mx;
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    return mx;
}

FK_T512 static void fk_ew_div512(float *y, int64_t n, double sum) {
    __m512d sv = _mm512_set1_pd(sum);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(
            y + i, _mm512_cvtpd_ps(_mm512_div_pd(_mm512_cvtps_pd(_mm256_loadu_ps(y + i)), sv)));
    for (; i < n; i++) y[i] = (float)((double)y[i] / sum);
}

static const fk_ew_kernels fk_ew_avx512 = {
    .act = fk_ew_act512,
    .add = fk_ew_add512,
    .mul = fk_ew_mul512,
    .modulate = fk_ew_modulate512,
    .gated_add = fk_ew_gated_add512,
    .rope = fk_ew_rope512,
    .stats = fk_ew_stats512,
    .ln_out = fk_ew_ln_out512,
    .ln_mod_out = fk_ew_ln_mod_out512,
    .rms_out = fk_ew_rms_out512,
    .rms_rope = fk_ew_rms_rope512,
    .max = fk_ew_max512,
    .div = fk_ew_div512,
};

/* ==================================================================== */
/* AVX2                                                                 */
/* ==================================================================== */

#define FK_T256 __attribute__((target("avx2")))

/* fk_cpu_exp on 8 lanes (the selects as in fk_ew_exp512) */
FK_T256 static inline __m256 fk_ew_exp256(__m256 x) {
    const __m256 shifter = _mm256_set1_ps(FK_EW_SHIFTER);
    __m256 tm = _mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(FK_EW_LOG2E)), shifter);
    __m256 nf = _mm256_sub_ps(tm, shifter);
    __m256i two_n = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_castps_si256(tm), _mm256_set1_epi32(FK_EW_EXP_BIAS)), 23);
    __m256 r = _mm256_sub_ps(_mm256_sub_ps(x, _mm256_mul_ps(nf, _mm256_set1_ps(FK_EW_LN2_HI))),
                             _mm256_mul_ps(nf, _mm256_set1_ps(FK_EW_LN2_LO)));
    __m256 q = _mm256_set1_ps(1.0f / 5040.0f);
    q = _mm256_add_ps(_mm256_mul_ps(q, r), _mm256_set1_ps(1.0f / 720.0f));
    q = _mm256_add_ps(_mm256_mul_ps(q, r), _mm256_set1_ps(1.0f / 120.0f));
    q = _mm256_add_ps(_mm256_mul_ps(q, r), _mm256_set1_ps(1.0f / 24.0f));
    q = _mm256_add_ps(_mm256_mul_ps(q, r), _mm256_set1_ps(1.0f / 6.0f));
    q = _mm256_add_ps(_mm256_mul_ps(q, r), _mm256_set1_ps(0.5f));
    __m256 er = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(r, r), q), r),
                              _mm256_set1_ps(1.0f));
    __m256 y = _mm256_mul_ps(er, _mm256_castsi256_ps(two_n));
    const __m256 lo = _mm256_castsi256_ps(_mm256_set1_epi32((int)FK_EW_EXP_LO));
    const __m256 hi = _mm256_castsi256_ps(_mm256_set1_epi32((int)FK_EW_EXP_HI));
    __m256 below = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    __m256 above = _mm256_cmp_ps(x, hi, _CMP_GT_OQ);
    __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    y = _mm256_blendv_ps(y, _mm256_setzero_ps(), below);
    y = _mm256_blendv_ps(y, _mm256_castsi256_ps(_mm256_set1_epi32(0x7f800000)), above);
    return _mm256_blendv_ps(y, x, nan);
}

FK_T256 static inline __m256 fk_ew_neg256(__m256 z) {
    return _mm256_xor_ps(z, _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000u)));
}

FK_T256 static inline __m256 fk_ew_sigmoid_mul256(__m256 x, __m256 z) {
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), fk_ew_exp256(fk_ew_neg256(z))));
}

FK_T256 static inline __m256 fk_ew_silu256(__m256 x) { return fk_ew_sigmoid_mul256(x, x); }

FK_T256 static inline __m256 fk_ew_gelu_tanh256(__m256 x) {
    __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
    __m256 inner = _mm256_add_ps(x, _mm256_mul_ps(_mm256_set1_ps(FK_EW_GELU_KAPPA), x3));
    return fk_ew_sigmoid_mul256(x, _mm256_mul_ps(_mm256_set1_ps(FK_EW_GELU_TWO_BETA), inner));
}

FK_T256 static inline __m256 fk_ew_gelu_quick256(__m256 x) {
    return fk_ew_sigmoid_mul256(x, _mm256_mul_ps(_mm256_set1_ps(FK_EW_GELU_QUICK_K), x));
}

/* the tail goes through a zero-padded 8-float buffer */
#define FK_EW_ACT_LOOP256(fn)                                                                      \
    do {                                                                                           \
        int64_t i = 0;                                                                             \
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, fn(_mm256_loadu_ps(x + i)));            \
        if (i < n) {                                                                               \
            float t[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                 \
            memcpy(t, x + i, (size_t)(n - i) * sizeof(float));                                     \
            _mm256_storeu_ps(t, fn(_mm256_loadu_ps(t)));                                           \
            memcpy(y + i, t, (size_t)(n - i) * sizeof(float));                                     \
        }                                                                                          \
    } while (0)

FK_T256 static void fk_ew_act256(fk_act act, float *y, const float *x, int64_t n) {
    switch (act) {
    case FK_ACT_GELU_TANH: FK_EW_ACT_LOOP256(fk_ew_gelu_tanh256); return;
    case FK_ACT_SILU: FK_EW_ACT_LOOP256(fk_ew_silu256); return;
    case FK_ACT_GELU_QUICK: FK_EW_ACT_LOOP256(fk_ew_gelu_quick256); return;
    case FK_ACT_NONE:
    case FK_ACT_COUNT: break;
    }
    FK_ASSERT(!"fk_ew_act256: not an activation");
}

FK_T256 static void fk_ew_add256(float *y, const float *a, const float *b, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    for (; i < n; i++) y[i] = a[i] + b[i];
}

FK_T256 static void fk_ew_mul256(float *y, const float *a, const float *b, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    for (; i < n; i++) y[i] = a[i] * b[i];
}

FK_T256 static inline __m256 fk_ew_mod256(__m256 v, __m256 shift, __m256 scale) {
    return _mm256_add_ps(_mm256_mul_ps(_mm256_add_ps(_mm256_set1_ps(1.0f), scale), v), shift);
}

FK_T256 static void fk_ew_modulate256(float *y, const float *x, const float *shift,
                                      const float *scale, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, fk_ew_mod256(_mm256_loadu_ps(x + i), _mm256_loadu_ps(shift + i),
                                             _mm256_loadu_ps(scale + i)));
    for (; i < n; i++) y[i] = (1.0f + scale[i]) * x[i] + shift[i];
}

FK_T256 static void fk_ew_gated_add256(float *x, const float *y, const float *gate, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(
            x + i, _mm256_add_ps(_mm256_loadu_ps(x + i),
                                 _mm256_mul_ps(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(y + i))));
    for (; i < n; i++) x[i] = x[i] + gate[i] * y[i];
}

/* 8 floats of x are 4 pairs (see fk_ew_rot512) */
FK_T256 static inline __m256 fk_ew_rot256(__m256 v, const float *a, const float *b) {
    return _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(a), _mm256_moveldup_ps(v)),
                         _mm256_mul_ps(_mm256_loadu_ps(b), _mm256_movehdup_ps(v)));
}

FK_T256 static void fk_ew_rope256(float *x, const float *ab, int64_t D) {
    int64_t i = 0;
    for (; i + 8 <= D; i += 8)
        _mm256_storeu_ps(x + i, fk_ew_rot256(_mm256_loadu_ps(x + i), ab + i, ab + D + i));
    fk_ew_rot_pairs(x, ab, D, i / 2);
}

/* NR rows at once, two ymm per row: partials 0..3 and 4..7 */
FK_T256 static inline __attribute__((always_inline)) void
fk_ew_stats256_t(fk_ew_stat kind, const int NR, const float *x, int64_t ld, int64_t n,
                 const double *mean, double *out) {
    __m256d a0[FK_EW_STAT_ROWS], a1[FK_EW_STAT_ROWS], mv[FK_EW_STAT_ROWS];
    for (int r = 0; r < NR; r++) {
        a0[r] = _mm256_setzero_pd();
        a1[r] = _mm256_setzero_pd();
        mv[r] = _mm256_set1_pd(kind == FK_EW_SQDEV ? mean[r] : 0.0);
    }
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int r = 0; r < NR; r++) {
            __m256d v0 = _mm256_cvtps_pd(_mm_loadu_ps(x + r * ld + i));
            __m256d v1 = _mm256_cvtps_pd(_mm_loadu_ps(x + r * ld + i + 4));
            if (kind == FK_EW_SQDEV) {
                v0 = _mm256_sub_pd(v0, mv[r]);
                v1 = _mm256_sub_pd(v1, mv[r]);
            }
            if (kind != FK_EW_SUM) {
                v0 = _mm256_mul_pd(v0, v0);
                v1 = _mm256_mul_pd(v1, v1);
            }
            a0[r] = _mm256_add_pd(a0[r], v0);
            a1[r] = _mm256_add_pd(a1[r], v1);
        }
    for (int r = 0; r < NR; r++) {
        double s[8];
        _mm256_storeu_pd(s, a0[r]);
        _mm256_storeu_pd(s + 4, a1[r]);
        out[r] = fk_ew_stat_tail(kind, x + r * ld, i, n, kind == FK_EW_SQDEV ? mean[r] : 0.0, s);
    }
}

FK_T256 static void fk_ew_stats256(fk_ew_stat kind, const float *x, int64_t ld, int nr, int64_t n,
                                   const double *mean, double *out) {
    FK_EW_STATS_SWITCH(fk_ew_stats256_t);
}

/* (float)((x − mean)·rstd) on 8 lanes */
FK_T256 static inline __m256 fk_ew_norm256(__m256 v, __m256d mean, __m256d rstd) {
    __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
    __m128 flo = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_sub_pd(lo, mean), rstd));
    __m128 fhi = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_sub_pd(hi, mean), rstd));
    return _mm256_insertf128_ps(_mm256_castps128_ps256(flo), fhi, 1);
}

/* (float)(x·r) on 8 lanes */
FK_T256 static inline __m256 fk_ew_scale256(__m256 v, __m256d r) {
    __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
    __m128 flo = _mm256_cvtpd_ps(_mm256_mul_pd(lo, r));
    __m128 fhi = _mm256_cvtpd_ps(_mm256_mul_pd(hi, r));
    return _mm256_insertf128_ps(_mm256_castps128_ps256(flo), fhi, 1);
}

FK_T256 static void fk_ew_ln_out256(float *y, const float *x, int64_t n, double mean, double rstd,
                                    const float *w, const float *b) {
    __m256d mv = _mm256_set1_pd(mean), rv = _mm256_set1_pd(rstd);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = fk_ew_norm256(_mm256_loadu_ps(x + i), mv, rv);
        if (w) v = _mm256_mul_ps(v, _mm256_loadu_ps(w + i));
        if (b) v = _mm256_add_ps(v, _mm256_loadu_ps(b + i));
        _mm256_storeu_ps(y + i, v);
    }
    for (; i < n; i++) {
        float v = (float)(((double)x[i] - mean) * rstd);
        if (w) v = v * w[i];
        if (b) v = v + b[i];
        y[i] = v;
    }
}

FK_T256 static void fk_ew_ln_mod_out256(float *y, const float *x, int64_t n, double mean,
                                        double rstd, const float *shift, const float *scale) {
    __m256d mv = _mm256_set1_pd(mean), rv = _mm256_set1_pd(rstd);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = fk_ew_norm256(_mm256_loadu_ps(x + i), mv, rv);
        _mm256_storeu_ps(y + i,
                         fk_ew_mod256(v, _mm256_loadu_ps(shift + i), _mm256_loadu_ps(scale + i)));
    }
    for (; i < n; i++) {
        float v = (float)(((double)x[i] - mean) * rstd);
        y[i] = (1.0f + scale[i]) * v + shift[i];
    }
}

FK_T256 static void fk_ew_rms_out256(float *y, const float *x, int64_t n, double r,
                                     const float *scale) {
    __m256d rv = _mm256_set1_pd(r);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(fk_ew_scale256(_mm256_loadu_ps(x + i), rv),
                                              _mm256_loadu_ps(scale + i)));
    for (; i < n; i++) y[i] = (float)((double)x[i] * r) * scale[i];
}

FK_T256 static void fk_ew_rms_rope256(float *y, const float *x, int64_t D, double r,
                                      const float *scale, const float *ab) {
    __m256d rv = _mm256_set1_pd(r);
    int64_t i = 0;
    for (; i + 8 <= D; i += 8) {
        __m256 v =
            _mm256_mul_ps(fk_ew_scale256(_mm256_loadu_ps(x + i), rv), _mm256_loadu_ps(scale + i));
        _mm256_storeu_ps(y + i, fk_ew_rot256(v, ab + i, ab + D + i));
    }
    for (int64_t k = i; k < D; k++) y[k] = (float)((double)x[k] * r) * scale[k];
    fk_ew_rot_pairs(y, ab, D, i / 2);
}

FK_T256 static float fk_ew_max256(const float *x, int64_t n) {
    __m256 m = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) m = _mm256_max_ps(_mm256_loadu_ps(x + i), m);
    float l[8];
    _mm256_storeu_ps(l, m);
    float mx = -INFINITY;
    for (int j = 0; j < 8; j++) mx = l[j] > mx ? l[j] : mx;
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    return mx;
}

FK_T256 static void fk_ew_div256(float *y, int64_t n, double sum) {
    __m256d sv = _mm256_set1_pd(sum);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        _mm_storeu_ps(y + i,
                      _mm256_cvtpd_ps(_mm256_div_pd(_mm256_cvtps_pd(_mm_loadu_ps(y + i)), sv)));
    for (; i < n; i++) y[i] = (float)((double)y[i] / sum);
}

static const fk_ew_kernels fk_ew_avx2 = {
    .act = fk_ew_act256,
    .add = fk_ew_add256,
    .mul = fk_ew_mul256,
    .modulate = fk_ew_modulate256,
    .gated_add = fk_ew_gated_add256,
    .rope = fk_ew_rope256,
    .stats = fk_ew_stats256,
    .ln_out = fk_ew_ln_out256,
    .ln_mod_out = fk_ew_ln_mod_out256,
    .rms_out = fk_ew_rms_out256,
    .rms_rope = fk_ew_rms_rope256,
    .max = fk_ew_max256,
    .div = fk_ew_div256,
};

const fk_ew_kernels *fk_ew_kernels_of(fk_cpu_isa isa) {
    switch (isa) {
    case FK_CPU_ISA_AVX512: return &fk_ew_avx512;
    case FK_CPU_ISA_AVX2: return &fk_ew_avx2;
    default: return NULL;
    }
}

#else /* not x86-64 */

const fk_ew_kernels *fk_ew_kernels_of(fk_cpu_isa isa) {
    (void)isa;
    return NULL;
}

#endif
