/* cpu_ew: row kernels of the elementwise and normalization ops (private to
 * cpu_elementwise.c, cpu_norm.c and cpu_ew_x86.c).
 *
 * The portable kernels are the plain C loops in cpu_elementwise.c and
 * cpu_norm.c; cpu_ew_x86.c has AVX-512 and AVX2 versions with exactly the
 * same bits: the same f32 / f64 operations on each element in the same order
 * (separate multiply and add, never fma: the library is built with
 * -ffp-contract=off), the same integer selects, and for the f64 row sums the
 * same eight partial sums (element c goes to partial c mod 8: one zmm of
 * doubles or two ymm), combined as ((s0+s1)+(s2+s3))+((s4+s5)+(s6+s7)).
 * Every kernel is serial (callable from inside a parallel region). */
#ifndef FK_CPU_EW_H
#define FK_CPU_EW_H

#include "backend/cpu/cpu.h"

/* ---- the activations, one element (the reference formulas) ----
 * All three are x·σ(z) = x / (1 + e^(−z)) with e^ from fk_cpu_exp, z = x
 * (silu), 1.702·x (gelu_quick) and 2·√(2/π)·(x + 0.044715·x³) (gelu_tanh:
 * 0.5·(1 + tanh(u)) = σ(2u) exactly, and the σ form does not cancel for
 * x << 0 as 1 + tanh does). The SIMD versions repeat these constants. */

#define FK_EW_GELU_TWO_BETA 1.5957691216057308f /* 2·√(2/π) */
#define FK_EW_GELU_KAPPA 0.044715f
#define FK_EW_GELU_QUICK_K 1.702f

static inline float fk_ew_sigmoid_mul(float x, float z) { return x / (1.0f + fk_cpu_exp(-z)); }

static inline float fk_ew_silu1(float x) { return fk_ew_sigmoid_mul(x, x); }

static inline float fk_ew_gelu_tanh1(float x) {
    return fk_ew_sigmoid_mul(x, FK_EW_GELU_TWO_BETA * (x + FK_EW_GELU_KAPPA * (x * x * x)));
}

static inline float fk_ew_gelu_quick1(float x) {
    return fk_ew_sigmoid_mul(x, FK_EW_GELU_QUICK_K * x);
}

/* The reference RoPE of one (l, h) row x (D) by pe (D/2, 2, 2), in place
 * (cpu_elementwise.c). */
void fk_ew_rope_row(float *x, const float *pe, int64_t D);

/* The rotation of one pe row (D/2, 2, 2) as the two factor rows the SIMD
 * kernels use, ab (2, D): output i of pair j = i/2 is
 * ab[i]·x[2j] + ab[D + i]·x[2j + 1], i.e. (p0, p2) and (p1, p3) of the pair:
 * the reference's p0·x0 + p1·x1 and p2·x0 + p3·x1. Built once per l and
 * used for the H rows of that position. */
#define FK_EW_ROPE_MAX_D 1024 /* the ops keep ab on the stack up to this D */
static inline void fk_ew_rope_ab(const float *pe, int64_t D, float *ab) {
    for (int64_t j = 0; j < D / 2; j++) {
        const float *p = pe + j * 4;
        ab[2 * j] = p[0], ab[2 * j + 1] = p[2];
        ab[D + 2 * j] = p[1], ab[D + 2 * j + 1] = p[3];
    }
}

/* ---- SIMD row kernels (one table per ISA) ----
 * Shapes are of one row: n or D elements. */

/* The row statistics of the norms. */
typedef enum fk_ew_stat { FK_EW_SUM = 0, FK_EW_SQDEV, FK_EW_SUMSQ } fk_ew_stat;
#define FK_EW_STAT_ROWS 4 /* rows per fk_ew_kernels.stats call at most */

typedef struct fk_ew_kernels {
    /* y[i] = act(x[i]) (not FK_ACT_NONE); y may alias x */
    void (*act)(fk_act act, float *y, const float *x, int64_t n);
    /* y = a + b, y = a·b; y may alias a or b */
    void (*add)(float *y, const float *a, const float *b, int64_t n);
    void (*mul)(float *y, const float *a, const float *b, int64_t n);
    /* y = (1 + scale)·x + shift; y may alias x */
    void (*modulate)(float *y, const float *x, const float *shift, const float *scale, int64_t n);
    /* x = x + gate·y */
    void (*gated_add)(float *x, const float *y, const float *gate, int64_t n);
    /* one (l, h) row x (D) rotated in place by ab (2, D) (fk_ew_rope_ab); D even */
    void (*rope)(float *x, const float *ab, int64_t D);
    /* Row statistics in f64 with the eight partial sums, of nr rows
     * (1 <= nr <= FK_EW_STAT_ROWS) x (nr, ld), n columns each: out[r] =
     * Σ x (FK_EW_SUM), Σ (x − mean[r])² (FK_EW_SQDEV), Σ x² (FK_EW_SUMSQ).
     * Rows interleaved: each row's sums are one dependent chain per
     * partial, so several rows keep the adders busy. */
    void (*stats)(fk_ew_stat kind, const float *x, int64_t ld, int nr, int64_t n,
                  const double *mean, double *out);
    /* y = (float)((x − mean)·rstd), then ·w, then + b (w, b (n) or NULL);
     * y may alias x */
    void (*ln_out)(float *y, const float *x, int64_t n, double mean, double rstd, const float *w,
                   const float *b);
    /* y = (1 + scale)·(float)((x − mean)·rstd) + shift; y may alias x */
    void (*ln_mod_out)(float *y, const float *x, int64_t n, double mean, double rstd,
                       const float *shift, const float *scale);
    /* y = (float)(x·r)·scale; y may alias x */
    void (*rms_out)(float *y, const float *x, int64_t n, double r, const float *scale);
    /* y (D) = rms_out of x, then rope with ab (2, D); D even; y may alias x */
    void (*rms_rope)(float *y, const float *x, int64_t D, double r, const float *scale,
                     const float *ab);
    /* the running max m = x > m ? x : m from −inf (NaN never taken); where
     * the max is a zero of both signs either may come back, which softmax
     * cannot see (x − max and e^ are the same) */
    float (*max)(const float *x, int64_t n);
    /* y = (float)((double)y / sum) */
    void (*div)(float *y, int64_t n, double sum);
} fk_ew_kernels;

/* The kernels of `isa` (AVX2, AVX512) on this build; NULL for the portable
 * ISA and off x86-64: then the caller runs its plain C loops. */
const fk_ew_kernels *fk_ew_kernels_of(fk_cpu_isa isa);

/* rmsnorm_rope of nh (1 ..= FK_EW_STAT_ROWS) rows of one position, x (nh,
 * D) → y (nh, D) f32 (y may be x), D <= FK_EW_ROPE_MAX_D: each row's RMS,
 * then rms_rope with scale (D) f32 and that position's ab (fk_ew_rope_ab).
 * The rows of rmsnorm_rope on the SIMD path, and of the bf16 products'
 * fused store (linear_rmsnorm_rope): the same bits. */
void fk_cpu_rmsnorm_rope_heads(const fk_ew_kernels *k, float *y, const float *x, int nh,
                               int64_t D, float eps, const float *scale, const float *ab);

#endif /* FK_CPU_EW_H */
