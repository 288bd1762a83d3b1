/* CPU reference ops other than linear and attention (those have their own
 * files): each against a naive double-precision implementation written here,
 * analytic checks, odd sizes, every parameter dtype, bitwise equality across
 * kernel paths and thread counts, supports() and the memory functions.
 * u = 2^-24 is the f32 unit roundoff; each tolerance counts the f32 roundings
 * of the op (see the comment at each check). */
#include "cpu_ops_util.h"

#define N_BE tu_n_backends

/* Run `call` on every backend with output `y` (n floats) and require the
 * bits of backend 0; `prep` restores inputs for in-place ops. */
#define CROSS_CHECK(name, y, n, prep, call)                                                   \
    do {                                                                                      \
        float *ref_bits_ = tu_alloc(n);                                                       \
        for (int bi_ = 0; bi_ < N_BE; bi_++) {                                                \
            fk_backend *be = tu_backends[bi_];                                                \
            prep;                                                                             \
            call;                                                                             \
            if (bi_ == 0) {                                                                   \
                memcpy(ref_bits_, y, (size_t)(n) * 4);                                        \
            } else {                                                                          \
                char d_[64];                                                                  \
                CHECKF(tu_same_bits(ref_bits_, y, (size_t)(n) * 4), "%s: %s differs bitwise", \
                       name, tu_backend_desc(be, d_, 64));                                    \
            }                                                                                 \
        }                                                                                     \
        memcpy(y, ref_bits_, (size_t)(n) * 4);                                                \
        fk_free(ref_bits_);                                                                   \
    } while (0)

static const fk_dtype PDTYPES[] = {FK_F32, FK_BF16, FK_F16, FK_F8_E4M3};

/* A parameter vector of dtype dt (raw) and its decoded values. */
static void *make_param(fk_dtype dt, int64_t n, float lo, float hi, float *dec) {
    float *tmp = tu_alloc(n);
    tu_fill(tmp, n, lo, hi);
    void *p = fk_alloc((size_t)n * fk_dtype_size(dt));
    fk_convert_from_f32(p, dt, tmp, (size_t)n);
    fk_convert_to_f32(dec, p, dt, (size_t)n);
    fk_free(tmp);
    return p;
}

/* ---- layernorm ---- */

static void test_layernorm(int64_t M, int64_t C, int affine, fk_dtype pdt) {
    float *x = tu_alloc(M * C), *y = tu_alloc(M * C), *wd = tu_alloc(C), *bd = tu_alloc(C);
    tu_fill(x, M * C, -2, 3);
    void *w = affine ? make_param(pdt, C, 0.5f, 1.5f, wd) : NULL;
    void *b = affine == 2 ? make_param(pdt, C, -1, 1, bd) : NULL;
    fk_tensor tx = fk_view2(FK_F32, x, M, C), ty = fk_view2(FK_F32, y, M, C);
    fk_tensor tw = fk_view1(pdt, w, C), tb = fk_view1(pdt, b, C);
    const float eps = 1e-6f;
    CROSS_CHECK("layernorm", y, M * C, (void)0,
                be->layernorm(be, &ty, &tx, w ? &tw : NULL, b ? &tb : NULL, eps));
    int bad = 0;
    for (int64_t m = 0; m < M; m++) {
        double mean = 0, var = 0;
        for (int64_t c = 0; c < C; c++) mean += x[m * C + c];
        mean /= (double)C;
        for (int64_t c = 0; c < C; c++) var += (x[m * C + c] - mean) * (x[m * C + c] - mean);
        var /= (double)C;
        for (int64_t c = 0; c < C; c++) {
            double n = (x[m * C + c] - mean) / sqrt(var + (double)eps);
            double wv = w ? wd[c] : 1.0, bv = b ? bd[c] : 0.0;
            double ref = n * wv + bv;
            /* statistics in double (negligible), then up to three f32
             * roundings: the normalized value, ·w, +b */
            double tol = 3 * EPS32 * (fabs(n * wv) + fabs(bv)) + 1e-30;
            if (!(fabs(y[m * C + c] - ref) <= tol)) bad++;
        }
    }
    CHECKF(bad == 0, "layernorm M=%lld C=%lld affine=%d %s: %d off", (long long)M, (long long)C,
           affine, fk_dtype_name(pdt), bad);
    /* in place gives the same bits */
    float *x2 = tu_alloc(M * C);
    memcpy(x2, x, (size_t)(M * C) * 4);
    fk_tensor tx2 = fk_view2(FK_F32, x2, M, C);
    tu_backends[0]->layernorm(tu_backends[0], &tx2, &tx2, w ? &tw : NULL, b ? &tb : NULL, eps);
    CHECK(tu_same_bits(x2, y, (size_t)(M * C) * 4));
    fk_free(x);
    fk_free(x2);
    fk_free(y);
    fk_free(wd);
    fk_free(bd);
    fk_free(w);
    fk_free(b);
}

/* ---- rmsnorm ---- */

static void test_rmsnorm(int64_t M, int64_t C, fk_dtype pdt) {
    float *x = tu_alloc(M * C), *y = tu_alloc(M * C), *sd = tu_alloc(C);
    tu_fill(x, M * C, -2, 2);
    void *s = make_param(pdt, C, 0.7f, 1.3f, sd);
    fk_tensor tx = fk_view2(FK_F32, x, M, C), ty = fk_view2(FK_F32, y, M, C), ts = fk_view1(pdt, s, C);
    const float eps = 1e-6f;
    CROSS_CHECK("rmsnorm", y, M * C, (void)0, be->rmsnorm(be, &ty, &tx, &ts, eps));
    int bad = 0;
    for (int64_t m = 0; m < M; m++) {
        double ss = 0;
        for (int64_t c = 0; c < C; c++) ss += (double)x[m * C + c] * x[m * C + c];
        double r = 1.0 / sqrt(ss / (double)C + (double)eps);
        for (int64_t c = 0; c < C; c++) {
            double ref = x[m * C + c] * r * sd[c];
            /* two f32 roundings: x·rrms, then ·scale */
            if (!(fabs(y[m * C + c] - ref) <= 2 * EPS32 * fabs(ref) + 1e-30)) bad++;
        }
    }
    CHECKF(bad == 0, "rmsnorm M=%lld C=%lld %s: %d off", (long long)M, (long long)C,
           fk_dtype_name(pdt), bad);
    fk_free(x);
    fk_free(y);
    fk_free(sd);
    fk_free(s);
}

/* ---- softmax ---- */

static void test_softmax(int64_t M, int64_t C) {
    float *x = tu_alloc(M * C), *y = tu_alloc(M * C);
    tu_fill(x, M * C, -20, 20);
    /* stability: exp(x) overflows f32 beyond 88.7, so these rows need the
     * max subtracted: one large value in row 1, all of row 2 large */
    if (M > 2) {
        x[C + 1] = 100.0f;
        for (int64_t c = 0; c < C; c++) x[2 * C + c] += 95.0f;
    }
    fk_tensor tx = fk_view2(FK_F32, x, M, C), ty = fk_view2(FK_F32, y, M, C);
    CROSS_CHECK("softmax", y, M * C, (void)0, be->softmax(be, &ty, &tx));
    int bad = 0, badsum = 0;
    for (int64_t m = 0; m < M; m++) {
        double mx = -INFINITY, sum = 0, ysum = 0;
        for (int64_t c = 0; c < C; c++) mx = fmax(mx, x[m * C + c]);
        for (int64_t c = 0; c < C; c++) sum += exp((double)x[m * C + c] - mx);
        for (int64_t c = 0; c < C; c++) {
            double d = (double)x[m * C + c] - mx;
            double ref = exp(d) / sum;
            /* f32 x − max (relative u on the argument: u·|d| on the result),
             * expf within 1 ulp, one rounding of the quotient */
            double tol = (4 + fabs(d)) * EPS32 * ref + 1e-38;
            if (!(fabs(y[m * C + c] - ref) <= tol)) bad++;
            ysum += y[m * C + c];
        }
        /* analytic: rows sum to 1 within the per-element bound (4 + 40)·u·Σ y
         * (|x − max| <= 40 for the random part of the rows) */
        if (!(fabs(ysum - 1.0) <= 44 * EPS32 + (double)C * 1e-38)) badsum++;
    }
    CHECKF(bad == 0 && badsum == 0, "softmax M=%lld C=%lld: %d off, %d row sums off", (long long)M,
           (long long)C, bad, badsum);
    fk_free(x);
    fk_free(y);
}

/* fk_cpu_exp: within 2 ulp of exp wherever exp(x) is a normal float
 * (a sample of every 1021st f32 pattern, plus the range ends), 0 below,
 * NaN kept. */
static void test_exp(void) {
    const float lo = -87.33654f, hi = 88.37626f;
    double worst = 0;
    int bad = 0;
    for (uint64_t u = 0; u <= 0xffffffffull; u += 1021) {
        uint32_t b = (uint32_t)u;
        float x;
        memcpy(&x, &b, 4);
        float y = fk_cpu_exp(x);
        if (isnan(x)) {
            if (!isnan(y)) bad++;
        } else if (x < lo) {
            if (y != 0.0f) bad++;
        } else if (x > hi) {
            if (y != INFINITY) bad++;
        } else {
            double e = exp((double)x);
            int ex;
            frexp(e, &ex);
            double ulps = fabs((double)y - e) / ldexp(1.0, ex - 24);
            if (ulps > worst) worst = ulps;
            if (!(ulps <= 2.0)) bad++;
        }
    }
    float ends[4] = {lo, hi, 0.0f, -0.0f};
    for (int i = 0; i < 4; i++) {
        double e = exp((double)ends[i]);
        if (!(fabs(fk_cpu_exp(ends[i]) - e) <= 2 * 2 * EPS32 * e)) bad++;
    }
    CHECK(fk_cpu_exp(-INFINITY) == 0.0f && fk_cpu_exp(INFINITY) == INFINITY);
    CHECKF(bad == 0, "fk_cpu_exp: %d values off (worst %.3f ulp)", bad, worst);
}

/* ---- activations ---- */

/* The activations in double, from their textbook definitions, with the
 * op's constants as f32 (√(2/π), 0.044715 and 1.702 rounded). z: the
 * argument of the sigmoid that the op evaluates (for the tolerance). */
static double ref_silu(double x, double *z) {
    *z = x;
    return x / (1 + exp(-x));
}
static double ref_gelu_tanh(double x, double *z) {
    const double beta = (double)0.7978845608028654f, kappa = (double)0.044715f;
    double inner = beta * (x + kappa * x * x * x);
    *z = 2 * inner;
    /* 1 + tanh(u) cancels even in double for u << 0: there use the identity
     * 1 + tanh(u) = 2·e^(2u) / (1 + e^(2u)) */
    if (inner > -5) return 0.5 * x * (1 + tanh(inner));
    return x * exp(2 * inner) / (1 + exp(2 * inner));
}
static double ref_gelu_quick(double x, double *z) {
    *z = (double)1.702f * x;
    return x / (1 + exp(-*z));
}

static void test_activations(int64_t n) {
    float *x = tu_alloc(n), *y = tu_alloc(n);
    tu_fill(x, n, -12, 12);
    x[0] = 0.0f;
    x[1] = -100.0f;
    x[2] = 100.0f;
    fk_tensor tx = fk_view1(FK_F32, x, n), ty = fk_view1(FK_F32, y, n);
    const char *names[3] = {"silu", "gelu_tanh", "gelu_quick"};
    for (int a = 0; a < 3; a++) {
        CROSS_CHECK(names[a], y, n, (void)0,
                    (a == 0 ? be->silu : a == 1 ? be->gelu_tanh : be->gelu_quick)(be, &ty, &tx));
        int bad = 0;
        for (int64_t i = 0; i < n; i++) {
            double xv = x[i], z;
            double ref = a == 0 ? ref_silu(xv, &z) : a == 1 ? ref_gelu_tanh(xv, &z) : ref_gelu_quick(xv, &z);
            /* y = x / (1 + e^(−z)): the f32 argument z carries a relative
             * error of up to 6u (gelu_tanh: x³, the products and the sum;
             * silu: exact; gelu_quick: one product), which e^ turns into a
             * relative error 6u·|z|; exp itself 2 ulp (4u), 1 + e and the
             * quotient 2u more. Where e^(−z) overflows (z < −88.4) the op
             * returns ±0 against |ref| < |x|·e^−88: absolute 1e-36. */
            double tol = (8 + 6 * fabs(z)) * EPS32 * fabs(ref) + 1e-36;
            if (!(fabs(y[i] - ref) <= tol)) {
                if (bad < 3) fprintf(stderr, "  %s(%.9g) = %.9g ref %.9g\n", names[a], xv, y[i], ref);
                bad++;
            }
        }
        CHECKF(bad == 0, "%s n=%lld: %d off", names[a], (long long)n, bad);
        CHECK(y[0] == 0.0f);
        /* in place */
        float *x2 = tu_alloc(n);
        memcpy(x2, x, (size_t)n * 4);
        fk_tensor tx2 = fk_view1(FK_F32, x2, n);
        fk_backend *be = tu_backends[0];
        (a == 0 ? be->silu : a == 1 ? be->gelu_tanh : be->gelu_quick)(be, &tx2, &tx2);
        CHECK(tu_same_bits(x2, y, (size_t)n * 4));
        fk_free(x2);
    }
    fk_free(x);
    fk_free(y);
}

/* ---- add, mul: one rounding each, exactly the f32 result of the double op ---- */

static void test_add_mul(int64_t n) {
    float *a = tu_alloc(n), *b = tu_alloc(n), *y = tu_alloc(n);
    tu_fill(a, n, -4, 4);
    tu_fill(b, n, -4, 4);
    fk_tensor ta = fk_view2(FK_F32, a, 1, n), tb = fk_view2(FK_F32, b, 1, n), ty = fk_view2(FK_F32, y, 1, n);
    CROSS_CHECK("add", y, n, (void)0, be->add(be, &ty, &ta, &tb));
    int bad = 0;
    for (int64_t i = 0; i < n; i++)
        if (y[i] != (float)((double)a[i] + (double)b[i])) bad++; /* exact in double, rounded once */
    CHECKF(bad == 0, "add: %d off", bad);
    CROSS_CHECK("mul", y, n, (void)0, be->mul(be, &ty, &ta, &tb));
    bad = 0;
    for (int64_t i = 0; i < n; i++)
        if (y[i] != (float)((double)a[i] * (double)b[i])) bad++; /* 48-bit product, exact in double */
    CHECKF(bad == 0, "mul: %d off", bad);
    /* aliasing: y = a + a in place */
    memcpy(y, a, (size_t)n * 4);
    tu_backends[0]->add(tu_backends[0], &ty, &ty, &ty);
    bad = 0;
    for (int64_t i = 0; i < n; i++)
        if (y[i] != 2 * a[i]) bad++;
    CHECKF(bad == 0, "add in place: %d off", bad);
    fk_free(a);
    fk_free(b);
    fk_free(y);
}

/* ---- modulate and gated_add ---- */

static void test_modulate(int64_t B, int64_t T, int64_t C) {
    const int64_t R = B * T;
    float *x = tu_alloc(R * C), *y = tu_alloc(R * C), *sh = tu_alloc(B * C), *sc = tu_alloc(B * C);
    tu_fill(x, R * C, -3, 3);
    tu_fill(sh, B * C, -1, 1);
    tu_fill(sc, B * C, -1, 1);
    fk_tensor tx = fk_view3(FK_F32, x, B, T, C), ty = fk_view2(FK_F32, y, R, C);
    fk_tensor tsh = fk_view2(FK_F32, sh, B, C), tsc = fk_view2(FK_F32, sc, B, C);
    CROSS_CHECK("modulate", y, R * C, (void)0, be->modulate(be, &ty, &tx, &tsh, &tsc));
    int bad = 0;
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++) {
            int64_t b = r / T;
            double s1 = 1.0 + sc[b * C + c], prod = s1 * x[r * C + c];
            double ref = prod + sh[b * C + c];
            /* three roundings: 1 + scale, ·x, + shift */
            double tol = 3 * EPS32 * (fabs(prod) + fabs(ref)) + 1e-37;
            if (!(fabs(y[r * C + c] - ref) <= tol)) bad++;
        }
    CHECKF(bad == 0, "modulate B=%lld T=%lld C=%lld: %d off", (long long)B, (long long)T, (long long)C, bad);
    /* analytic: zero shift and scale is the identity, bit for bit, in place */
    memset(sh, 0, (size_t)(B * C) * 4);
    memset(sc, 0, (size_t)(B * C) * 4);
    memcpy(y, x, (size_t)(R * C) * 4);
    tu_backends[0]->modulate(tu_backends[0], &ty, &ty, &tsh, &tsc);
    CHECK(tu_same_bits(y, x, (size_t)(R * C) * 4));

    /* gated_add: x += gate·y, two roundings */
    float *g = tu_alloc(B * C), *xa = tu_alloc(R * C);
    tu_fill(g, B * C, -2, 2);
    tu_fill(y, R * C, -3, 3);
    fk_tensor tg = fk_view2(FK_F32, g, B, C), txa = fk_view2(FK_F32, xa, R, C);
    CROSS_CHECK("gated_add", xa, R * C, memcpy(xa, x, (size_t)(R * C) * 4), be->gated_add(be, &txa, &ty, &tg));
    bad = 0;
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++) {
            double gy = (double)g[(r / T) * C + c] * y[r * C + c], ref = x[r * C + c] + gy;
            if (!(fabs(xa[r * C + c] - ref) <= 2 * EPS32 * (fabs(gy) + fabs(ref)) + 1e-37)) bad++;
        }
    CHECKF(bad == 0, "gated_add B=%lld T=%lld C=%lld: %d off", (long long)B, (long long)T, (long long)C, bad);
    fk_free(x);
    fk_free(y);
    fk_free(sh);
    fk_free(sc);
    fk_free(g);
    fk_free(xa);
}

/* ---- rope ---- */

static void test_rope(int64_t L, int64_t H, int64_t D) {
    const int64_t n = L * H * D;
    float *x = tu_alloc(n), *x0 = tu_alloc(n), *pe = tu_alloc(L * D * 2);
    tu_fill(x0, n, -2, 2);
    /* rotation tables as FLUX builds them: [[cos, −sin], [sin, cos]] */
    for (int64_t l = 0; l < L; l++)
        for (int64_t j = 0; j < D / 2; j++) {
            double ang = (double)l * pow(10000.0, -2.0 * (double)j / (double)D) + 0.1 * (double)j;
            float* p = pe + (l * D / 2 + j) * 4;
            p[0] = (float)cos(ang);
            p[1] = (float)-sin(ang);
            p[2] = (float)sin(ang);
            p[3] = (float)cos(ang);
        }
    fk_tensor tx = fk_view3(FK_F32, x, L, H, D);
    int64_t pshape[6] = {1, 1, L, D / 2, 2, 2};
    fk_tensor tpe = fk_tensor_view(FK_F32, pe, 6, pshape);
    CROSS_CHECK("rope", x, n, memcpy(x, x0, (size_t)n * 4), be->rope(be, &tx, &tpe));
    int bad = 0, badnorm = 0;
    for (int64_t l = 0; l < L; l++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t j = 0; j < D / 2; j++) {
                const float *p = pe + (l * D / 2 + j) * 4;
                int64_t i = (l * H + h) * D + 2 * j;
                double a = x0[i], b = x0[i + 1];
                double r0 = p[0] * a + p[1] * b, r1 = p[2] * a + p[3] * b;
                /* two products and a sum in f32: 2u·(|p0 a| + |p1 b|) */
                if (!(fabs(x[i] - r0) <= 2 * EPS32 * (fabs(p[0] * a) + fabs(p[1] * b)) + 1e-37)) bad++;
                if (!(fabs(x[i + 1] - r1) <= 2 * EPS32 * (fabs(p[2] * a) + fabs(p[3] * b)) + 1e-37)) bad++;
                /* analytic: a rotation keeps the pair's norm (f32 cos/sin are a
                 * rotation up to u; plus the roundings above): 8u relative */
                double n0 = a * a + b * b, n1 = (double)x[i] * x[i] + (double)x[i + 1] * x[i + 1];
                if (!(fabs(n1 - n0) <= 8 * EPS32 * n0 + 1e-37)) badnorm++;
            }
    CHECKF(bad == 0 && badnorm == 0, "rope L=%lld H=%lld D=%lld: %d off, %d norms off", (long long)L,
           (long long)H, (long long)D, bad, badnorm);
    /* analytic: zero angles (identity matrices) leave x unchanged, bit for bit */
    for (int64_t i = 0; i < L * D / 2; i++) {
        pe[4 * i] = 1.0f;
        pe[4 * i + 1] = 0.0f;
        pe[4 * i + 2] = 0.0f;
        pe[4 * i + 3] = 1.0f;
    }
    memcpy(x, x0, (size_t)n * 4);
    fk_tensor tpe4 = fk_view4(FK_F32, pe, L, D / 2, 2, 2);
    tu_backends[0]->rope(tu_backends[0], &tx, &tpe4);
    CHECK(tu_same_bits(x, x0, (size_t)n * 4));
    fk_free(x);
    fk_free(x0);
    fk_free(pe);
}

/* ---- concat_rows, split_rows, copy_cols: exact copies, any dtype ---- */

static void test_copies(void) {
    const int64_t La = 5, Lb = 7, C = 11;
    uint16_t a[5 * 11], b[7 * 11], out[12 * 11], a2[5 * 11], b2[7 * 11];
    for (int i = 0; i < La * C; i++) a[i] = (uint16_t)tu_next();
    for (int i = 0; i < Lb * C; i++) b[i] = (uint16_t)tu_next();
    fk_tensor ta = fk_view2(FK_BF16, a, La, C), tb = fk_view2(FK_BF16, b, Lb, C);
    fk_tensor to = fk_view2(FK_BF16, out, La + Lb, C);
    fk_tensor ta2 = fk_view2(FK_BF16, a2, La, C), tb2 = fk_view2(FK_BF16, b2, Lb, C);
    for (int i = 0; i < N_BE; i++) {
        fk_backend *be = tu_backends[i];
        memset(out, 0xff, sizeof(out));
        be->concat_rows(be, &to, &ta, &tb);
        CHECK(memcmp(out, a, sizeof(a)) == 0 && memcmp(out + La * C, b, sizeof(b)) == 0);
        memset(a2, 0, sizeof(a2));
        memset(b2, 0, sizeof(b2));
        be->split_rows(be, &ta2, &tb2, &to);
        CHECK(memcmp(a2, a, sizeof(a)) == 0 && memcmp(b2, b, sizeof(b)) == 0);
    }
    /* copy_cols: dst[:, 3:3+n] = src[:, 4:4+n] */
    const int64_t M = 300, Nd = 40, Ns = 150, n = 120 - 95;
    float *src = tu_alloc(M * Ns), *dst = tu_alloc(M * Nd);
    tu_fill(src, M * Ns, -1, 1);
    fk_tensor tsrc = fk_view2(FK_F32, src, M, Ns), tdst = fk_view2(FK_F32, dst, M, Nd);
    for (int i = 0; i < N_BE; i++) {
        for (int64_t j = 0; j < M * Nd; j++) dst[j] = -9.0f;
        tu_backends[i]->copy_cols(tu_backends[i], &tdst, 3, &tsrc, 4, n);
        int bad = 0;
        for (int64_t m = 0; m < M; m++)
            for (int64_t c = 0; c < Nd; c++) {
                float want = (c >= 3 && c < 3 + n) ? src[m * Ns + 4 + c - 3] : -9.0f;
                if (memcmp(&dst[m * Nd + c], &want, 4) != 0) bad++;
            }
        CHECKF(bad == 0, "copy_cols: %d wrong", bad);
    }
    /* big concat (qkv-like) across threads */
    fk_free(src);
    fk_free(dst);
}

/* ---- supports(), memory functions, names ---- */

static void test_table(void) {
    fk_backend *be = tu_backends[0];
    CHECK(strcmp(be->name, "cpu") == 0 && be->device == FK_DEVICE_CPU);
    float f[4] = {1, 2, 3, 4};
    uint16_t h[4] = {0};
    int32_t iw[4] = {0};
    fk_tensor y = fk_view2(FK_F32, f, 2, 2), x = fk_view2(FK_F32, f, 2, 2);
    fk_tensor wb = fk_view2(FK_BF16, h, 2, 2), wi = fk_view2(FK_I32, iw, 2, 2);
    fk_tensor w8 = fk_view2(FK_F8_E5M2, h, 2, 2);
    const fk_tensor *lin_ok[4] = {&y, &x, &wb, NULL};
    const fk_tensor *lin_ok8[4] = {&y, &x, &w8, &wb};
    const fk_tensor *lin_bad_w[4] = {&y, &x, &wi, NULL};
    const fk_tensor *lin_bad_x[4] = {&y, &wb, &wb, NULL};
    CHECK(be->supports(be, FK_OP_LINEAR, lin_ok, 4));
    CHECK(be->supports(be, FK_OP_LINEAR, lin_ok8, 4));
    CHECK(!be->supports(be, FK_OP_LINEAR, lin_bad_w, 4));
    CHECK(!be->supports(be, FK_OP_LINEAR, lin_bad_x, 4));
    const fk_tensor *un[2] = {&y, &x};
    const fk_tensor *un_bad[2] = {&y, &wb};
    CHECK(be->supports(be, FK_OP_SILU, un, 2) && be->supports(be, FK_OP_SOFTMAX, un, 2));
    CHECK(!be->supports(be, FK_OP_GELU_TANH, un_bad, 2));
    const fk_tensor *rms[3] = {&y, &x, &wb};
    CHECK(be->supports(be, FK_OP_RMSNORM, rms, 3));
    const fk_tensor *cat_bf[3] = {&wb, &wb, &wb}, *cat_mix[3] = {&wb, &x, &wb};
    CHECK(be->supports(be, FK_OP_CONCAT_ROWS, cat_bf, 3) && !be->supports(be, FK_OP_CONCAT_ROWS, cat_mix, 3));
    fk_tensor ycuda = y;
    ycuda.device = FK_DEVICE_CUDA;
    const fk_tensor *cu[2] = {&ycuda, &x};
    CHECK(!be->supports(be, FK_OP_SILU, cu, 2));
    for (int op = 0; op < FK_OP_COUNT; op++) {
        /* every op the table implements is supported for plain f32 operands */
        const fk_tensor *all[5] = {&y, &x, &x, &x, &x};
        bool has = false;
        switch ((fk_op)op) {
        case FK_OP_CONV2D: has = be->conv2d != NULL; break;
        case FK_OP_GROUP_NORM: has = be->group_norm != NULL; break;
        case FK_OP_UPSAMPLE_NEAREST2X: has = be->upsample_nearest2x != NULL; break;
        default: has = true;
        }
        CHECKF(be->supports(be, (fk_op)op, all, 5) == has, "supports(%s) for f32", fk_op_name((fk_op)op));
        CHECK(strcmp(fk_op_name((fk_op)op), "unknown") != 0);
    }
    CHECK(strcmp(fk_op_name(FK_OP_COUNT), "unknown") == 0);
    CHECK(strcmp(fk_op_name(FK_OP_GELU_TANH), "gelu_tanh") == 0);
    /* memory */
    char *p = be->alloc(be, 1000);
    CHECK(p != NULL && ((uintptr_t)p & 63) == 0);
    char host[1000], back[1000];
    for (int i = 0; i < 1000; i++) host[i] = (char)i;
    be->upload(be, p, host, 1000);
    be->synchronize(be);
    be->download(be, back, p, 1000);
    CHECK(memcmp(host, back, 1000) == 0);
    be->free(be, p);
    /* the default constructor */
    fk_backend *d = fk_backend_cpu_create(0);
    CHECK(d != NULL && d->n_threads >= 1);
    if (d) d->destroy(d);
}

int main(void) {
    tu_backends_init();
    test_table();
    test_exp();
    for (size_t d = 0; d < sizeof(PDTYPES) / sizeof(PDTYPES[0]); d++) {
        test_layernorm(7, 13, 1, PDTYPES[d]);
        test_layernorm(7, 13, 2, PDTYPES[d]);
        test_rmsnorm(9, 17, PDTYPES[d]);
    }
    test_layernorm(67, 1000, 0, FK_F32);  /* FLUX: no affine, eps 1e-6 */
    test_layernorm(67, 3000, 2, FK_BF16); /* more than one parameter chunk */
    test_layernorm(1, 1, 2, FK_F32);
    test_rmsnorm(67, 1000, FK_BF16);
    test_rmsnorm(300, 32, FK_F32); /* QK norm shape: (L·H, head_dim) */
    test_softmax(7, 13);
    test_softmax(67, 1000);
    test_softmax(3, 1);
    test_activations(13);
    test_activations(70001);
    test_add_mul(13);
    test_add_mul(70001);
    test_modulate(1, 7, 13);
    test_modulate(2, 35, 1000);
    test_modulate(3, 1, 5);
    test_rope(7, 3, 16);
    test_rope(300, 3, 32);
    test_copies();
    tu_backends_free();
    return fk_test_finish("test_ops_cpu");
}
