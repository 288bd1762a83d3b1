/* The SIMD paths of the elementwise and normalization ops (cpu_ew_x86.c):
 * for every ISA this machine runs and 1, 2 and 3 threads, each op gives
 * exactly the bits of the portable backend (1 thread), on awkward sizes
 * (columns not a multiple of 8 or 16, one row, more rows than threads, row
 * counts not a multiple of the 4-row blocks), in place where the op allows
 * it, with f32 and bf16 (f16) parameters, and without writing past its
 * output. The fused layernorm_modulate and rmsnorm_rope give the bits of
 * the two ops they replace. fk_cpu_act_row equals the activation ops on
 * every path, gives the scalar code's bits on special values (±0, ±inf,
 * NaN, subnormals, the ends of the exp range, a sample of every f32 bit
 * pattern), and stays within a derived bound of the formula evaluated in
 * double. The portable path itself is checked against double references in
 * test_ops_cpu.c. u = 2^-24 (EPS32) is the f32 unit roundoff. */
#include "backend/cpu/cpu_ew.h"
#include "cpu_ops_util.h"

#include <float.h>

static fk_backend *ref_be; /* portable, 1 thread: the bits every path must give */

/* Values of both signs over a wide range of magnitudes (uniform mantissa
 * times 2^k, k in [-24, 24]): their f64 row sums round, so a partial sum
 * taken in another order shows in the bits. */
static void fill_wide(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = ldexpf(tu_uniform(-2, 2), (int)(tu_next() % 49) - 24);
}

/* A parameter vector of dtype dt (raw bytes) with values in [lo, hi). */
static void *make_param(fk_dtype dt, int64_t n, float lo, float hi) {
    float *tmp = tu_alloc(n);
    tu_fill(tmp, n, lo, hi);
    void *p = fk_alloc((size_t)(n > 0 ? n : 1) * fk_dtype_size(dt));
    fk_convert_from_f32(p, dt, tmp, (size_t)n);
    fk_free(tmp);
    return p;
}

/* ---- activations ---- */

static const fk_act ACTS[3] = {FK_ACT_GELU_TANH, FK_ACT_SILU, FK_ACT_GELU_QUICK};
static const char *ACT_NAMES[FK_ACT_COUNT] = {"none", "gelu_tanh", "silu", "gelu_quick"};

static float bits_f(uint32_t b) {
    float f;
    memcpy(&f, &b, 4);
    return f;
}

/* Special inputs: signed zeros, infinities, NaNs (quiet, negative, with
 * payload), subnormals, huge values, and the ends of fk_cpu_exp's range for
 * the argument −z of each activation (z = x, 1.702·x, ≈ 1.596·x + ...). */
static int special_values(float *v) {
    int n = 0;
    const uint32_t bits[] = {0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u,
                             0xffc00000u, 0x7fc12345u, 0xffd54321u, 0x00000001u, 0x80000001u,
                             0x007fffffu, 0x807fffffu, 0x00800000u, 0x80800000u, 0x7f7fffffu,
                             0xff7fffffu, 0xc2aeac50u, 0x42aeac50u, 0xc2b0c0a5u, 0x42b0c0a5u,
                             0xc2aeac51u, 0x42aeac4fu, 0xc2b0c0a6u, 0x42b0c0a4u};
    for (size_t i = 0; i < sizeof(bits) / 4; i++) v[n++] = bits_f(bits[i]);
    const float more[] = {100.0f, -100.0f, 1e30f,  -1e30f, 88.0f,  -88.0f, 89.0f,   -89.0f, 51.3f,
                          -51.3f, 52.0f,   -52.0f, 10.0f,  -10.0f, 1e-30f, -1e-30f, 3.0f,   -3.0f,
                          0.5f,   -0.5f,   1e-7f,  -1e-7f, 20.0f,  -20.0f, 40.0f,   -40.0f};
    for (size_t i = 0; i < sizeof(more) / 4; i++) v[n++] = more[i];
    /* x where z = 1.702·x or the gelu_tanh argument crosses the exp range ends */
    for (int s = -1; s <= 1; s += 2) {
        float e = s * 87.33654f / 1.702f;
        v[n++] = e;
        v[n++] = nextafterf(e, 0.0f);
        v[n++] = nextafterf(e, (float)s * INFINITY);
    }
    return n;
}

/* act_row on every ISA: the bits of the portable act_row (and of the
 * activation op on a backend of that ISA), for every length 0..70 (all
 * tails) and in place, and nothing written past n. */
static void test_act_row_bits(void) {
    const int64_t N = 4096;
    float *x = tu_galloc(N), *y = tu_galloc(N), *yr = tu_galloc(N), *yo = tu_galloc(N);
    tu_fill(x, N, -12, 12);
    int ns = special_values(x + 100);
    (void)ns;
    for (int isa = 0; isa < FK_CPU_ISA_COUNT; isa++) {
        if (!fk_cpu_isa_available((fk_cpu_isa)isa)) continue;
        for (int a = 0; a < 3; a++) {
            fk_act act = ACTS[a];
            int bad = 0, badg = 0;
            for (int64_t n = 0; n <= 70; n++) {
                for (int64_t off = 0; off < 3; off++) { /* unaligned starts */
                    fk_cpu_act_row(FK_CPU_ISA_PORTABLE, act, yr, x + 100 + off, n);
                    for (int64_t i = 0; i < N; i++) y[i] = -7.0f;
                    fk_cpu_act_row((fk_cpu_isa)isa, act, y, x + 100 + off, n);
                    if (!tu_same_bits(y, yr, (size_t)n * 4)) bad++;
                    if (y[n] != -7.0f || !tu_guard_ok(y, N)) badg++;
                }
            }
            /* a long row, out of place and in place */
            fk_cpu_act_row(FK_CPU_ISA_PORTABLE, act, yr, x, N);
            fk_cpu_act_row((fk_cpu_isa)isa, act, y, x, N);
            if (!tu_same_bits(y, yr, (size_t)N * 4)) bad++;
            memcpy(y, x, (size_t)N * 4);
            fk_cpu_act_row((fk_cpu_isa)isa, act, y, y, N);
            if (!tu_same_bits(y, yr, (size_t)N * 4) || !tu_guard_ok(y, N)) bad++;
            /* the activation op on a backend of this ISA (2 threads) */
            fk_backend *be = fk_backend_cpu_create_isa(2, (fk_cpu_isa)isa);
            fk_tensor tx = fk_view1(FK_F32, x, N), to = fk_view1(FK_F32, yo, N);
            (act == FK_ACT_SILU        ? be->silu
             : act == FK_ACT_GELU_TANH ? be->gelu_tanh
                                       : be->gelu_quick)(be, &to, &tx);
            if (!tu_same_bits(yo, yr, (size_t)N * 4)) bad++;
            be->destroy(be);
            CHECKF(bad == 0 && badg == 0, "act_row %s %s: %d differ from portable, %d wrote past n",
                   fk_cpu_isa_name((fk_cpu_isa)isa), ACT_NAMES[act], bad, badg);
        }
        /* FK_ACT_NONE: a copy, in place a no-op */
        fk_cpu_act_row((fk_cpu_isa)isa, FK_ACT_NONE, y, x, 37);
        CHECK(tu_same_bits(y, x, 37 * 4));
        fk_cpu_act_row((fk_cpu_isa)isa, FK_ACT_NONE, y, y, 37);
        CHECK(tu_same_bits(y, x, 37 * 4));
    }
    fk_free(x);
    fk_free(y);
    fk_free(yr);
    fk_free(yo);
}

/* Every 4099th f32 bit pattern (1.05 M values: every exponent, both signs,
 * NaNs and infinities; every pattern was checked once offline): the SIMD act_row gives the bits of the scalar one. */
static void test_act_row_all_patterns(void) {
    const int64_t N = 65536;
    float *x = tu_alloc(N), *y = tu_alloc(N), *yr = tu_alloc(N);
    for (int isa = 1; isa < FK_CPU_ISA_COUNT; isa++) {
        if (!fk_cpu_isa_available((fk_cpu_isa)isa)) continue;
        int64_t bad[3] = {0, 0, 0};
        uint64_t u = 0;
        while (u <= 0xffffffffull) {
            int64_t n = 0;
            for (; n < N && u <= 0xffffffffull; n++, u += 4099) x[n] = bits_f((uint32_t)u);
            for (int a = 0; a < 3; a++) {
                fk_cpu_act_row(FK_CPU_ISA_PORTABLE, ACTS[a], yr, x, n);
                fk_cpu_act_row((fk_cpu_isa)isa, ACTS[a], y, x, n);
                if (!tu_same_bits(y, yr, (size_t)n * 4))
                    for (int64_t i = 0; i < n; i++)
                        if (memcmp(&y[i], &yr[i], 4) != 0) {
                            if (bad[a] < 3)
                                fprintf(stderr, "  %s %s(%a): %a, scalar %a\n",
                                        fk_cpu_isa_name((fk_cpu_isa)isa), ACT_NAMES[ACTS[a]],
                                        (double)x[i], (double)y[i], (double)yr[i]);
                            bad[a]++;
                        }
            }
        }
        CHECKF(bad[0] + bad[1] + bad[2] == 0, "act_row %s over f32 patterns: %lld %lld %lld differ",
               fk_cpu_isa_name((fk_cpu_isa)isa), (long long)bad[0], (long long)bad[1],
               (long long)bad[2]);
    }
    /* the scalar code on special values, every path (bitwise equal above):
     * act(±0) = ±0, act(+inf) = +inf, act(NaN) is NaN, act(−inf) = (−inf)/inf
     * = NaN, act(x) = −0 for x < 0 where e^(−z) overflows */
    for (int a = 0; a < 3; a++) {
        float in[6] = {0.0f, -0.0f, INFINITY, NAN, -INFINITY, -1e30f}, out[6];
        fk_cpu_act_row(fk_cpu_isa_detect(), ACTS[a], out, in, 6);
        CHECK(out[0] == 0.0f && !signbit(out[0]) && out[1] == 0.0f && signbit(out[1]));
        CHECK(out[2] == INFINITY && isnan(out[3]) && isnan(out[4]));
        CHECK(out[5] == 0.0f && signbit(out[5]));
    }
    fk_free(x);
    fk_free(y);
    fk_free(yr);
}

/* The activations in double from their textbook definitions, with the op's
 * constants as f32 (2·√(2/π), 0.044715, 1.702 rounded: the op cannot do
 * better), and z, the argument of the sigmoid the op evaluates. */
static double ref_act(fk_act act, double x, double *z) {
    if (act == FK_ACT_SILU) {
        *z = x;
        return x / (1 + exp(-x));
    }
    if (act == FK_ACT_GELU_QUICK) {
        *z = (double)FK_EW_GELU_QUICK_K * x;
        return x / (1 + exp(-*z));
    }
    double inner = 0.5 * (double)FK_EW_GELU_TWO_BETA * (x + (double)FK_EW_GELU_KAPPA * x * x * x);
    *z = 2 * inner;
    /* 1 + tanh(u) cancels even in double for u << 0: there the identity
     * 1 + tanh(u) = 2·e^(2u) / (1 + e^(2u)) */
    if (inner > -5) return 0.5 * x * (1 + tanh(inner));
    return x * exp(2 * inner) / (1 + exp(2 * inner));
}

/* act_row against the double formula. Bound, relative to |y| (derivation):
 * y = x / (1 + e), e = e^(−z). The f32 argument z carries a relative error
 * δz <= 5u + O(u²) < 6u (gelu_tanh: x·x, ·x, κ·, x +, 2β·: five roundings,
 * and the sum does not cancel as x and κx³ share their sign; silu: exact;
 * gelu_quick: one rounding), which e^ turns into a relative error |z|·δz
 * of e; fk_cpu_exp adds <= 2 ulp (<= 4u relative). σ = 1/(1 + e) has
 * relative sensitivity e/(1 + e) to the relative error of e; 1 + e and the
 * quotient add one rounding each. So
 *   |y − ref| <= ((e/(1 + e))·(4 + 6|z|) + 2)·u·|ref|.
 * For x >= 0 (then z >= 0) the product (e/(1+e))·(4+6z) peaks near 2.73 at
 * z ≈ 0.75: the bound is < 5u·|ref| (< 5 ulp). It grows like 6|z|·u only
 * where x << 0 and y → 0 (the f32 rounding of z amplified by e^: the
 * conditioning of e^(−z), not the kernel). Where e^(−z) overflows f32
 * (−z > 88.376) the op returns x/inf = −0 while |ref| < |x|·e^−88.376 <
 * |x|·2^−127; subnormal results lose relative precision: an absolute
 * |x|·2^−126 + 2^−146 covers both. */
static void test_act_row_accuracy(void) {
    const int64_t N = 20000;
    float *x = tu_alloc(N), *y = tu_alloc(N);
    tu_fill(x, N, -12, 12);
    tu_fill(x, 2000, -1, 1);
    tu_fill(x + 2000, 2000, -60, 60);
    for (int isa = 0; isa < FK_CPU_ISA_COUNT; isa++) {
        if (!fk_cpu_isa_available((fk_cpu_isa)isa)) continue;
        for (int a = 0; a < 3; a++) {
            fk_cpu_act_row((fk_cpu_isa)isa, ACTS[a], y, x, N);
            int bad = 0;
            double worst_pos = 0; /* ulps for x >= 0 */
            for (int64_t i = 0; i < N; i++) {
                double z, ref = ref_act(ACTS[a], x[i], &z);
                double e = exp(-z), se = isinf(e) ? 1.0 : e / (1 + e);
                double tol = (se * (4 + 6 * fabs(z)) + 2) * EPS32 * fabs(ref) +
                             fabs(x[i]) * 0x1p-126 + 0x1p-146;
                double err = fabs((double)y[i] - ref);
                if (!(err <= tol)) {
                    if (bad < 3)
                        fprintf(stderr, "  %s %s(%.9g) = %.9g ref %.9g\n",
                                fk_cpu_isa_name((fk_cpu_isa)isa), ACT_NAMES[ACTS[a]], x[i], y[i],
                                ref);
                    bad++;
                }
                if (x[i] >= 0 && ref > 0) {
                    int ex;
                    frexp(ref, &ex);
                    double ulps = err / ldexp(1.0, ex - 24);
                    if (ulps > worst_pos) worst_pos = ulps;
                }
            }
            CHECKF(bad == 0, "act_row %s %s: %d outside the bound",
                   fk_cpu_isa_name((fk_cpu_isa)isa), ACT_NAMES[ACTS[a]], bad);
            /* x >= 0: the bound is < 5u·|ref| < 5 ulp of ref */
            CHECKF(worst_pos < 5, "act_row %s %s: %.2f ulp for x >= 0 (bound 5)",
                   fk_cpu_isa_name((fk_cpu_isa)isa), ACT_NAMES[ACTS[a]], worst_pos);
            if (isa == FK_CPU_ISA_PORTABLE)
                printf("  %s: worst %.2f ulp for x >= 0\n", ACT_NAMES[ACTS[a]], worst_pos);
        }
    }
    fk_free(x);
    fk_free(y);
}

/* ---- every backend against the portable one ----
 * RUN_ALL: run `call` (using `be`) on the reference backend, keep the n
 * floats of `out`, then on every backend and require the same bits and an
 * intact guard; `prep` restores the inputs before each call. */
#define RUN_ALL(name, out, n, prep, call)                                                          \
    do {                                                                                           \
        float *want_ = tu_alloc(n);                                                                \
        {                                                                                          \
            fk_backend *be = ref_be;                                                               \
            prep;                                                                                  \
            call;                                                                                  \
        }                                                                                          \
        memcpy(want_, out, (size_t)(n)*4);                                                         \
        for (int bi_ = 0; bi_ < tu_n_backends; bi_++) {                                            \
            fk_backend *be = tu_backends[bi_];                                                     \
            prep;                                                                                  \
            call;                                                                                  \
            CHECKF(tu_same_bits(want_, out, (size_t)(n)*4) && tu_guard_ok(out, n),                    \
                   "%s: %s differs from portable (or wrote past its output)", name, tu_bdesc(be));    \
        }                                                                                          \
        fk_free(want_);                                                                            \
    } while (0)

static void test_binary(int64_t n) {
    float *a = tu_galloc(n), *b = tu_galloc(n), *y = tu_galloc(n), *a0 = tu_alloc(n);
    tu_fill(a0, n, -4, 4);
    tu_fill(b, n, -4, 4);
    fk_tensor ta = fk_view1(FK_F32, a, n), tb = fk_view1(FK_F32, b, n), ty = fk_view1(FK_F32, y, n);
    memcpy(a, a0, (size_t)n * 4);
    RUN_ALL("add", y, n, (void)0, be->add(be, &ty, &ta, &tb));
    RUN_ALL("mul", y, n, (void)0, be->mul(be, &ty, &ta, &tb));
    /* in place: y = a + b into a, y = a·a into a */
    RUN_ALL("add in place", a, n, memcpy(a, a0, (size_t)n * 4), be->add(be, &ta, &ta, &tb));
    RUN_ALL("mul in place", a, n, memcpy(a, a0, (size_t)n * 4), be->mul(be, &ta, &ta, &ta));
    fk_free(a);
    fk_free(b);
    fk_free(y);
    fk_free(a0);
}

static void test_modulate_gated(int64_t B, int64_t T, int64_t C) {
    const int64_t R = B * T, n = R * C;
    float *x = tu_galloc(n), *x0 = tu_alloc(n), *y = tu_galloc(n), *sh = tu_alloc(B * C),
          *sc = tu_alloc(B * C);
    tu_fill(x0, n, -3, 3);
    tu_fill(y, n, -3, 3);
    tu_fill(sh, B * C, -1, 1);
    tu_fill(sc, B * C, -1, 1);
    fk_tensor tx = fk_view3(FK_F32, x, B, T, C), ty = fk_view2(FK_F32, y, R, C);
    fk_tensor tsh = fk_view2(FK_F32, sh, B, C), tsc = fk_view2(FK_F32, sc, B, C);
    memcpy(x, x0, (size_t)n * 4);
    RUN_ALL("modulate", y, n, (void)0, be->modulate(be, &ty, &tx, &tsh, &tsc));
    RUN_ALL("modulate in place", x, n, memcpy(x, x0, (size_t)n * 4),
            be->modulate(be, &tx, &tx, &tsh, &tsc));
    RUN_ALL("gated_add", x, n, memcpy(x, x0, (size_t)n * 4), be->gated_add(be, &tx, &ty, &tsc));
    fk_free(x);
    fk_free(x0);
    fk_free(y);
    fk_free(sh);
    fk_free(sc);
}

/* pe (L, D/2, 2, 2) as FLUX builds it: [[cos, −sin], [sin, cos]] */
static float *make_pe(int64_t L, int64_t D) {
    float *pe = tu_alloc(L * D * 2);
    for (int64_t l = 0; l < L; l++)
        for (int64_t j = 0; j < D / 2; j++) {
            double ang = (double)l * pow(10000.0, -2.0 * (double)j / (double)D) + 0.1 * (double)j;
            float *p = pe + (l * D / 2 + j) * 4;
            p[0] = (float)cos(ang), p[1] = (float)-sin(ang), p[2] = (float)sin(ang),
            p[3] = (float)cos(ang);
        }
    return pe;
}

static void test_rope(int64_t L, int64_t H, int64_t D) {
    const int64_t n = L * H * D;
    float *x = tu_galloc(n), *x0 = tu_alloc(n), *pe = make_pe(L, D);
    tu_fill(x0, n, -2, 2);
    fk_tensor tx = fk_view3(FK_F32, x, L, H, D);
    int64_t pshape[6] = {1, 1, L, D / 2, 2, 2};
    fk_tensor tpe = fk_tensor_view(FK_F32, pe, 6, pshape);
    RUN_ALL("rope", x, n, memcpy(x, x0, (size_t)n * 4), be->rope(be, &tx, &tpe));
    fk_free(x);
    fk_free(x0);
    fk_free(pe);
}

/* layernorm with affine 0 (none), 1 (w), 2 (w and b) of dtype pdt; then
 * layernorm_modulate (B batches) against layernorm + modulate. */
static void test_layernorm(int64_t M, int64_t C, int affine, fk_dtype pdt, int64_t B) {
    const int64_t n = M * C;
    float *x = tu_galloc(n), *x0 = tu_alloc(n), *y = tu_galloc(n);
    fill_wide(x0, n);
    for (int64_t i = 0; i < n; i += 7) x0[i] += 40.0f; /* a mean far from 0 */
    void *w = affine ? make_param(pdt, C, 0.5f, 1.5f) : NULL;
    void *b = affine == 2 ? make_param(pdt, C, -1, 1) : NULL;
    fk_tensor tx = fk_view2(FK_F32, x, M, C), ty = fk_view2(FK_F32, y, M, C);
    fk_tensor tw = fk_view1(pdt, w, C), tb = fk_view1(pdt, b, C);
    const float eps = 1e-6f;
    char name[96];
    snprintf(name, sizeof(name), "layernorm M=%lld C=%lld affine=%d %s", (long long)M, (long long)C,
             affine, fk_dtype_name(pdt));
    memcpy(x, x0, (size_t)n * 4);
    RUN_ALL(name, y, n, (void)0, be->layernorm(be, &ty, &tx, w ? &tw : NULL, b ? &tb : NULL, eps));
    RUN_ALL(name, x, n, memcpy(x, x0, (size_t)n * 4),
            be->layernorm(be, &tx, &tx, w ? &tw : NULL, b ? &tb : NULL, eps));
    if (affine == 0 && M % B == 0) {
        /* the composition on the portable backend, then the fused op everywhere */
        float *sh = tu_alloc(B * C), *sc = tu_alloc(B * C), *want = tu_alloc(n);
        tu_fill(sh, B * C, -1, 1);
        tu_fill(sc, B * C, -1, 1);
        fk_tensor tsh = fk_view2(FK_F32, sh, B, C), tsc = fk_view2(FK_F32, sc, B, C);
        memcpy(x, x0, (size_t)n * 4);
        ref_be->layernorm(ref_be, &ty, &tx, NULL, NULL, eps);
        ref_be->modulate(ref_be, &ty, &ty, &tsh, &tsc);
        memcpy(want, y, (size_t)n * 4);
        snprintf(name, sizeof(name), "layernorm_modulate M=%lld C=%lld B=%lld", (long long)M,
                 (long long)C, (long long)B);
        RUN_ALL(name, y, n, (void)0, be->layernorm_modulate(be, &ty, &tx, &tsh, &tsc, eps));
        CHECKF(tu_same_bits(y, want, (size_t)n * 4), "%s: not layernorm + modulate", name);
        RUN_ALL(name, x, n, memcpy(x, x0, (size_t)n * 4),
                be->layernorm_modulate(be, &tx, &tx, &tsh, &tsc, eps));
        CHECKF(tu_same_bits(x, want, (size_t)n * 4), "%s in place: not layernorm + modulate", name);
        fk_free(sh);
        fk_free(sc);
        fk_free(want);
    }
    fk_free(x);
    fk_free(x0);
    fk_free(y);
    fk_free(w);
    fk_free(b);
}

static void test_rmsnorm(int64_t M, int64_t C, fk_dtype pdt) {
    const int64_t n = M * C;
    float *x = tu_galloc(n), *x0 = tu_alloc(n), *y = tu_galloc(n);
    fill_wide(x0, n);
    void *s = make_param(pdt, C, 0.7f, 1.3f);
    fk_tensor tx = fk_view2(FK_F32, x, M, C), ty = fk_view2(FK_F32, y, M, C),
              ts = fk_view1(pdt, s, C);
    char name[96];
    snprintf(name, sizeof(name), "rmsnorm M=%lld C=%lld %s", (long long)M, (long long)C,
             fk_dtype_name(pdt));
    memcpy(x, x0, (size_t)n * 4);
    RUN_ALL(name, y, n, (void)0, be->rmsnorm(be, &ty, &tx, &ts, 1e-6f));
    RUN_ALL(name, x, n, memcpy(x, x0, (size_t)n * 4), be->rmsnorm(be, &tx, &tx, &ts, 1e-6f));
    fk_free(x);
    fk_free(x0);
    fk_free(y);
    fk_free(s);
}

/* rmsnorm_rope on x (L, H, D) against rmsnorm then rope (portable). */
static void test_rmsnorm_rope(int64_t L, int64_t H, int64_t D, fk_dtype pdt) {
    const int64_t n = L * H * D;
    float *x = tu_galloc(n), *x0 = tu_alloc(n), *want = tu_alloc(n), *pe = make_pe(L, D);
    fill_wide(x0, n);
    void *s = make_param(pdt, D, 0.7f, 1.3f);
    fk_tensor tx = fk_view3(FK_F32, x, L, H, D), ts = fk_view1(pdt, s, D);
    fk_tensor rows = fk_view2(FK_F32, x, L * H, D);
    int64_t pshape[6] = {1, 1, L, D / 2, 2, 2};
    fk_tensor tpe = fk_tensor_view(FK_F32, pe, 6, pshape);
    const float eps = 1e-6f;
    memcpy(x, x0, (size_t)n * 4);
    ref_be->rmsnorm(ref_be, &rows, &rows, &ts, eps);
    ref_be->rope(ref_be, &tx, &tpe);
    memcpy(want, x, (size_t)n * 4);
    char name[96];
    snprintf(name, sizeof(name), "rmsnorm_rope L=%lld H=%lld D=%lld %s", (long long)L, (long long)H,
             (long long)D, fk_dtype_name(pdt));
    RUN_ALL(name, x, n, memcpy(x, x0, (size_t)n * 4),
            be->rmsnorm_rope(be, &tx, &tx, &ts, &tpe, eps));
    CHECKF(tu_same_bits(x, want, (size_t)n * 4), "%s: not rmsnorm + rope", name);
    { /* into a y of its own: the same bits, x unchanged */
        float *y = tu_galloc(n);
        fk_tensor ty = fk_view3(FK_F32, y, L, H, D);
        memcpy(x, x0, (size_t)n * 4);
        RUN_ALL(name, y, n, memset(y, 0, (size_t)n * 4),
                be->rmsnorm_rope(be, &ty, &tx, &ts, &tpe, eps));
        CHECKF(tu_same_bits(y, want, (size_t)n * 4) && tu_same_bits(x, x0, (size_t)n * 4),
               "%s: out of place differs (or changed x)", name);
        fk_free(y);
    }
    /* the two separate ops on every path too */
    RUN_ALL(name, x, n, memcpy(x, x0, (size_t)n * 4),
            (be->rmsnorm(be, &rows, &rows, &ts, eps), be->rope(be, &tx, &tpe)));
    fk_free(x);
    fk_free(x0);
    fk_free(want);
    fk_free(pe);
    fk_free(s);
}

static void test_softmax(int64_t M, int64_t C) {
    const int64_t n = M * C;
    float *x = tu_alloc(n), *y = tu_galloc(n);
    tu_fill(x, n, -20, 20);
    x[0] = -INFINITY;
    if (M > 1) x[C + C / 2] = 100.0f;
    fk_tensor tx = fk_view2(FK_F32, x, M, C), ty = fk_view2(FK_F32, y, M, C);
    char name[64];
    snprintf(name, sizeof(name), "softmax M=%lld C=%lld", (long long)M, (long long)C);
    RUN_ALL(name, y, n, (void)0, be->softmax(be, &ty, &tx));
    fk_free(x);
    fk_free(y);
}

/* ---- the row statistics directly ----
 * The f64 statistics are 29 bits more precise than the f32 outputs, so an
 * addition order that differs from the reference rarely shows in the ops'
 * bits; here each kernel's doubles are compared with the reference rule
 * written out: element c into partial c mod 8, in increasing c, partials
 * combined as ((s0+s1)+(s2+s3))+((s4+s5)+(s6+s7)). */
static double ref_stat(fk_ew_stat kind, const float *x, int64_t n, double mean) {
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t c = 0; c < n; c++) {
        double v = (double)x[c];
        if (kind == FK_EW_SQDEV) v = v - mean;
        if (kind != FK_EW_SUM) v = v * v;
        s[c % 8] = s[c % 8] + v;
    }
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

static void test_stats_kernels(void) {
    const int64_t ld = 1031, NMAX = 1031;
    float *x = tu_alloc(FK_EW_STAT_ROWS * ld);
    fill_wide(x, FK_EW_STAT_ROWS * ld);
    for (int isa = 1; isa < FK_CPU_ISA_COUNT; isa++) {
        const fk_ew_kernels *k = fk_ew_kernels_of((fk_cpu_isa)isa);
        if (!fk_cpu_isa_available((fk_cpu_isa)isa) || !k) continue;
        int bad = 0, badmax = 0;
        for (int64_t n = 0; n <= NMAX; n += n < 40 ? 1 : 331) {
            for (int kind = 0; kind < 3; kind++)
                for (int nr = 1; nr <= FK_EW_STAT_ROWS; nr++) {
                    double mean[FK_EW_STAT_ROWS], out[FK_EW_STAT_ROWS];
                    for (int r = 0; r < nr; r++) mean[r] = (double)x[r * ld] * 0.75 + 0.1 * r;
                    k->stats((fk_ew_stat)kind, x, ld, nr, n, mean, out);
                    for (int r = 0; r < nr; r++) {
                        double want = ref_stat((fk_ew_stat)kind, x + r * ld, n, mean[r]);
                        if (memcmp(&want, &out[r], 8) != 0) bad++;
                    }
                }
            /* the running max (first of equal values kept; no NaN here) */
            float mx = -INFINITY;
            for (int64_t c = 0; c < n; c++) mx = x[c] > mx ? x[c] : mx;
            if (k->max(x, n) != mx) badmax++;
        }
        CHECKF(bad == 0 && badmax == 0,
               "%s row statistics: %d sums, %d maxima differ from the rule",
               fk_cpu_isa_name((fk_cpu_isa)isa), bad, badmax);
    }
    fk_free(x);
}

int main(void) {
    tu_backends_init();
    ref_be = fk_backend_cpu_create_isa(1, FK_CPU_ISA_PORTABLE);
    if (!ref_be) return 2;

    test_act_row_bits();
    test_act_row_all_patterns();
    test_act_row_accuracy();
    test_stats_kernels();

    const int64_t sizes[] = {1, 7, 15, 16, 17, 33, 2 * 16384 + 5};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) test_binary(sizes[i]);
    test_modulate_gated(1, 1, 1);
    test_modulate_gated(1, 5, 13);
    test_modulate_gated(2, 3, 17);
    test_modulate_gated(3, 40, 1000);
    test_rope(1, 1, 2);
    test_rope(3, 2, 18);
    test_rope(5, 3, 34);
    test_rope(40, 3, 130);
    test_rope(2, 3, FK_EW_ROPE_MAX_D + 6); /* past the stack form of pe: the row loop */

    const fk_dtype pdts[] = {FK_F32, FK_BF16, FK_F16};
    for (size_t d = 0; d < 3; d++) {
        test_layernorm(3, 13, 1, pdts[d], 1);
        test_layernorm(9, 17, 2, pdts[d], 1);
        test_layernorm(67, 1000, 2, pdts[d], 1); /* threads, 4-row blocks, a 3-row block */
        test_rmsnorm(9, 17, pdts[d]);
        test_rmsnorm(301, 130, pdts[d]);
        test_rmsnorm_rope(7, 3, 34, pdts[d]);
        test_rmsnorm_rope(50, 7, 130, pdts[d]); /* threads, 4-row blocks */
    }
    test_layernorm(1, 1, 0, FK_F32, 1);
    test_layernorm(1, 7, 0, FK_F32, 1);
    test_layernorm(6, 19, 0, FK_F32, 3);
    test_layernorm(67, 1000, 0, FK_F32, 1);
    test_layernorm(100, 333, 0, FK_F32, 4);
    test_layernorm(5, 3000, 2, FK_BF16, 1);   /* several parameter chunks */
    /* parameters that do not fit the scratch (FK_CPU_SCRATCH_FLOATS): the per-chunk path */
    test_layernorm(1, FK_CPU_SCRATCH_FLOATS / 2 + 1, 2, FK_BF16, 1);
    test_rmsnorm(1, FK_CPU_SCRATCH_FLOATS + 1, FK_BF16);
    test_rmsnorm(7, 1, FK_F32);
    test_rmsnorm_rope(1, 1, 2, FK_F32);
    test_rmsnorm_rope(2, 1, 16, FK_BF16);
    test_rmsnorm_rope(40, 24, 128, FK_BF16);  /* FLUX heads */
    test_rmsnorm_rope(3, 2, FK_EW_ROPE_MAX_D + 2, FK_F32); /* past the stack form of pe */
    test_rmsnorm_rope(1, 1, FK_CPU_SCRATCH_FLOATS + 2, FK_BF16); /* scale past the scratch */
    test_softmax(1, 1);
    test_softmax(3, 13);
    test_softmax(67, 1000);
    test_softmax(40, 37);

    ref_be->destroy(ref_be);
    tu_backends_free();
    return fk_test_finish("test_ops_ew");
}
