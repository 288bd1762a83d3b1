/* The layout ops of the op table (src/backend/cpu/cpu_layout.c): transpose
 * and scale_cols, on every CPU kernel path this machine runs with 1, 2 and
 * 3 threads, through the simulated device backend (devsim.h) and the
 * profiling wrapper (profile.h).
 *
 * References (all bit-exact, tolerance 0):
 * - transpose is pure data movement: y[b, c, r] must hold the bits of
 *   x[b, r, c] for a naive index loop, with x filled with random 32-bit
 *   patterns (NaNs with payloads, infinities, subnormals, −0 included: a
 *   path that went through arithmetic would change some of them); odd
 *   shapes: B = 1..3 (also as two leading dims, and 2-D), R and C not
 *   multiples of 8 or 16, 1 × N, N × 1, sizes above the threading
 *   threshold; nothing written past y, x unchanged.
 * - scale_cols is one f32 multiply per element: the reference is
 *   (float)((double)x · (double)s[j]), exact in double (two 24-bit
 *   significands) and then rounded once, which is the IEEE f32 product;
 *   s[j] decoded by an independent bit-field decoder (bf16, f16, e4m3fn,
 *   e5m2) or a cast (f64), from random bit patterns (finite), x over a wide
 *   range of magnitudes (products overflow and go subnormal); out of place
 *   and in place (y = x), shapes 1 × 1, 1 × N, N × 1, odd M × N, more than
 *   the per-thread scratch in columns (s decoded in chunks).
 * - supports(): f32 activations, any float dtype for s.
 */
#include "backend/devsim.h"
#include "backend/profile.h"
#include "cpu_ops_util.h"

static void fill_bits(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)tu_next();
        memcpy(&x[i], &u, 4);
    }
}

/* ---- transpose ---- */

/* x (lead..., R, C) → y (lead..., C, R) on be against the index loop. */
static void check_transpose(fk_backend *be, int nlead, const int64_t *lead, int64_t R, int64_t C) {
    int64_t B = 1;
    int64_t xs[FK_MAX_DIMS], ys[FK_MAX_DIMS];
    for (int i = 0; i < nlead; i++) {
        xs[i] = ys[i] = lead[i];
        B *= lead[i];
    }
    xs[nlead] = R, xs[nlead + 1] = C;
    ys[nlead] = C, ys[nlead + 1] = R;
    const int64_t n = B * R * C;
    float *x = tu_alloc(n), *x0 = tu_alloc(n), *y = tu_galloc(n), *ref = tu_alloc(n);
    fill_bits(x, n);
    memcpy(x0, x, (size_t)n * 4);
    fill_bits(y, n); /* stale contents: every element must be written */
    for (int64_t b = 0; b < B; b++)
        for (int64_t r = 0; r < R; r++)
            for (int64_t c = 0; c < C; c++) memcpy(&ref[(b * C + c) * R + r], &x[(b * R + r) * C + c], 4);
    fk_tensor tx = fk_tensor_view(FK_F32, x, nlead + 2, xs), ty = fk_tensor_view(FK_F32, y, nlead + 2, ys);
    be->transpose(be, &ty, &tx);
    CHECKF(tu_same_bits(y, ref, (size_t)n * 4), "transpose %s: B %lld (ndim %d), R %lld, C %lld: wrong bits",
           tu_bdesc(be), (long long)B, nlead + 2, (long long)R, (long long)C);
    CHECKF(tu_guard_ok(y, n), "transpose %s: R %lld, C %lld wrote past y", tu_bdesc(be), (long long)R, (long long)C);
    CHECKF(tu_same_bits(x, x0, (size_t)n * 4), "transpose %s: x changed", tu_bdesc(be));
    fk_free(x), fk_free(x0), fk_free(y), fk_free(ref);
}

static void test_transpose(void) {
    static const int64_t shapes[][2] = {{1, 1},   {1, 37},  {37, 1},  {1, 16},   {16, 1},   {15, 17},
                                        {16, 16}, {17, 33}, {8, 24},  {31, 64},  {64, 65},  {100, 3},
                                        {3, 100}, {129, 67}, {65, 129}, {200, 300}, {300, 131}};
    const int ns = (int)(sizeof(shapes) / sizeof(shapes[0]));
    for (int i = 0; i < tu_n_backends; i++) {
        fk_backend *be = tu_backends[i];
        for (int s = 0; s < ns; s++)
            for (int64_t B = 1; B <= 3; B++) check_transpose(be, 1, &B, shapes[s][0], shapes[s][1]);
        /* 2-D (B = 1) and two leading dims (B = 6) */
        check_transpose(be, 0, NULL, 33, 47);
        check_transpose(be, 0, NULL, 1, 5);
        const int64_t lead[2] = {2, 3};
        check_transpose(be, 2, lead, 19, 70);
        check_transpose(be, 2, lead, 64, 16);
    }
}

/* ---- scale_cols ---- */

/* Independent decoders of the weight dtypes: sign · significand · 2^e from
 * the bit fields (exact in double). */
static double dec_small(uint32_t bits, int ebits, int mbits, int bias) {
    const uint32_t sign = bits >> (ebits + mbits), e = (bits >> mbits) & ((1u << ebits) - 1),
                   m = bits & ((1u << mbits) - 1);
    double v = e ? ldexp(1.0 + ldexp((double)m, -mbits), (int)e - bias)
                 : ldexp((double)m, 1 - bias - mbits);
    return sign ? -v : v;
}

/* Element j of s (dtype dt) decoded, or NAN for a NaN / Inf pattern. */
static double ref_decode(fk_dtype dt, const void *s, int64_t j) {
    switch (dt) {
    case FK_F32: {
        float f;
        memcpy(&f, (const char *)s + 4 * j, 4);
        return isfinite(f) ? (double)f : NAN;
    }
    case FK_F64: {
        double d;
        memcpy(&d, (const char *)s + 8 * j, 8);
        return (double)(float)d; /* the f32 the op computes with */
    }
    case FK_BF16: {
        uint16_t h;
        memcpy(&h, (const char *)s + 2 * j, 2);
        return ((h >> 7) & 0xff) == 0xff ? NAN : dec_small(h, 8, 7, 127);
    }
    case FK_F16: {
        uint16_t h;
        memcpy(&h, (const char *)s + 2 * j, 2);
        return ((h >> 10) & 0x1f) == 0x1f ? NAN : dec_small(h, 5, 10, 15);
    }
    case FK_F8_E4M3: {
        uint8_t b = ((const uint8_t *)s)[j];
        return (b & 0x7f) == 0x7f ? NAN : dec_small(b, 4, 3, 7); /* e4m3fn: no Inf */
    }
    case FK_F8_E5M2: {
        uint8_t b = ((const uint8_t *)s)[j];
        return ((b >> 2) & 0x1f) == 0x1f ? NAN : dec_small(b, 5, 2, 15);
    }
    default: return NAN;
    }
}

/* n random finite elements of dtype dt (raw bytes). */
static void *make_scale(fk_dtype dt, int64_t n) {
    const size_t es = fk_dtype_size(dt);
    unsigned char *p = fk_alloc((size_t)(n > 0 ? n : 1) * es);
    for (int64_t j = 0; j < n; j++) {
        do {
            if (dt == FK_F64) {
                double d = (double)tu_uniform(-4, 4) * ldexp(1.0, (int)(tu_next() % 61) - 30);
                memcpy(p + (size_t)j * es, &d, 8);
            } else {
                uint64_t u = tu_next();
                memcpy(p + (size_t)j * es, &u, es);
            }
        } while (isnan(ref_decode(dt, p, j)));
    }
    return p;
}

/* x (rows, N) seen as (M0, M1, N) when m1 > 0 · s → y, out of place and in place. */
static void check_scale_cols(fk_backend *be, int64_t M, int64_t N, fk_dtype dt, int64_t m1) {
    const int64_t n = M * N;
    float *x = tu_alloc(n), *x0 = tu_alloc(n), *y = tu_galloc(n), *ref = tu_alloc(n);
    for (int64_t i = 0; i < n; i++)
        x[i] = (i % 23 == 5) ? ((i & 1) ? -0.0f : 0.0f)
                             : ldexpf(tu_uniform(-2, 2), (int)(tu_next() % 121) - 60);
    memcpy(x0, x, (size_t)n * 4);
    void *s = make_scale(dt, N);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++)
            ref[i * N + j] = (float)((double)x[i * N + j] * ref_decode(dt, s, j));
    fk_tensor tx, ty;
    if (m1 > 0) {
        tx = fk_view3(FK_F32, x, M / m1, m1, N);
        ty = fk_view3(FK_F32, y, M / m1, m1, N);
    } else {
        tx = fk_view2(FK_F32, x, M, N);
        ty = fk_view2(FK_F32, y, M, N);
    }
    fk_tensor ts = fk_view1(dt, s, N);
    fill_bits(y, n);
    be->scale_cols(be, &ty, &tx, &ts);
    CHECKF(tu_same_bits(y, ref, (size_t)n * 4), "scale_cols %s: %lld × %lld, s %s: wrong bits", tu_bdesc(be),
           (long long)M, (long long)N, fk_dtype_name(dt));
    CHECKF(tu_guard_ok(y, n), "scale_cols %s: %lld × %lld wrote past y", tu_bdesc(be), (long long)M, (long long)N);
    CHECKF(tu_same_bits(x, x0, (size_t)n * 4), "scale_cols %s: x changed", tu_bdesc(be));
    /* in place: y = x */
    memcpy(y, x, (size_t)n * 4);
    fk_tensor tyy = ty;
    be->scale_cols(be, &tyy, &tyy, &ts);
    CHECKF(tu_same_bits(y, ref, (size_t)n * 4), "scale_cols %s in place: %lld × %lld, s %s: wrong bits",
           tu_bdesc(be), (long long)M, (long long)N, fk_dtype_name(dt));
    CHECKF(tu_guard_ok(y, n), "scale_cols %s in place wrote past y", tu_bdesc(be));
    fk_free(s), fk_free(x), fk_free(x0), fk_free(y), fk_free(ref);
}

static void test_scale_cols(void) {
    static const int64_t shapes[][2] = {{1, 1},  {1, 37}, {37, 1}, {3, 17},   {5, 33},
                                        {2, 16}, {7, 100}, {4, 64}, {300, 200}, {129, 301}};
    static const fk_dtype dts[] = {FK_F32, FK_BF16, FK_F16, FK_F8_E4M3, FK_F8_E5M2, FK_F64};
    const int ns = (int)(sizeof(shapes) / sizeof(shapes[0])), nd = (int)(sizeof(dts) / sizeof(dts[0]));
    for (int i = 0; i < tu_n_backends; i++) {
        fk_backend *be = tu_backends[i];
        for (int s = 0; s < ns; s++)
            for (int d = 0; d < nd; d++) check_scale_cols(be, shapes[s][0], shapes[s][1], dts[d], 0);
        check_scale_cols(be, 6, 45, FK_BF16, 3); /* 3-D x: rows = 2 · 3 */
    }
    /* more columns than the per-thread scratch: s decoded chunk by chunk */
    const int64_t wide = (int64_t)FK_CPU_SCRATCH_FLOATS + 37;
    check_scale_cols(tu_backends[0], 2, wide, FK_BF16, 0);
    check_scale_cols(tu_backends[0], 2, wide, FK_F32, 0);
    check_scale_cols(tu_backends[tu_n_backends - 1], 3, wide, FK_F8_E4M3, 0);
}

/* ---- supports ---- */

static void test_supports(void) {
    fk_backend *be = tu_backends[0];
    float d[4] = {0};
    fk_tensor f = fk_view2(FK_F32, d, 2, 2), h = fk_view2(FK_BF16, d, 2, 2), i32 = fk_view1(FK_I32, d, 2);
    const fk_tensor *t_ok[2] = {&f, &f}, *t_bad[2] = {&f, &h};
    CHECK(be->supports(be, FK_OP_TRANSPOSE, t_ok, 2) && !be->supports(be, FK_OP_TRANSPOSE, t_bad, 2));
    static const fk_dtype dts[] = {FK_F32, FK_BF16, FK_F16, FK_F8_E4M3, FK_F8_E5M2, FK_F64};
    for (size_t k = 0; k < sizeof(dts) / sizeof(dts[0]); k++) {
        fk_tensor s = fk_view1(dts[k], d, 2);
        const fk_tensor *srcs[3] = {&f, &f, &s};
        CHECKF(be->supports(be, FK_OP_SCALE_COLS, srcs, 3), "scale_cols with %s scales", fk_dtype_name(dts[k]));
    }
    const fk_tensor *s_int[3] = {&f, &f, &i32}, *y_bf[3] = {&h, &f, &f};
    CHECK(!be->supports(be, FK_OP_SCALE_COLS, s_int, 3) && !be->supports(be, FK_OP_SCALE_COLS, y_bf, 3));
    CHECK(strcmp(fk_op_name(FK_OP_TRANSPOSE), "transpose") == 0 &&
          strcmp(fk_op_name(FK_OP_SCALE_COLS), "scale_cols") == 0);
}

/* ---- through the wrappers: devsim (device memory, host weight s) and profile ---- */

static void test_wrappers(void) {
    fk_backend *cpu = tu_backends[0];
    fk_backend *sim = fk_backend_devsim_wrap(cpu);
    fk_backend *prof = fk_backend_profile_wrap(sim);
    CHECK(sim && prof);
    if (!sim || !prof) return;
    const int64_t R = 45, C = 77, n = R * C;
    float *x = tu_alloc(n), *y = tu_alloc(n), *ref = tu_alloc(n);
    fill_bits(x, n);
    void *s = make_scale(FK_BF16, R); /* for y (C, R): s (R) */
    /* the CPU result */
    fk_tensor hx = fk_view3(FK_F32, x, 1, R, C), hy = fk_view3(FK_F32, ref, 1, C, R), hs = fk_view1(FK_BF16, s, R);
    cpu->transpose(cpu, &hy, &hx);
    fk_tensor hy2 = fk_view2(FK_F32, ref, C, R);
    cpu->scale_cols(cpu, &hy2, &hy2, &hs);
    /* the same on the simulated device, through the profiler */
    float *dx = prof->alloc(prof, (size_t)n * 4), *dy = prof->alloc(prof, (size_t)n * 4);
    prof->upload(prof, dx, x, (size_t)n * 4);
    fk_tensor tx = fk_view3(FK_F32, dx, 1, R, C), ty = fk_view3(FK_F32, dy, 1, C, R);
    tx.device = ty.device = FK_DEVICE_CUDA;
    prof->transpose(prof, &ty, &tx);
    fk_tensor ty2 = fk_view2(FK_F32, dy, C, R);
    ty2.device = FK_DEVICE_CUDA;
    prof->scale_cols(prof, &ty2, &ty2, &hs); /* s: a host weight */
    prof->scale_cols(prof, &ty2, &ty2, &hs); /* twice: s seen once */
    prof->download(prof, y, dy, (size_t)n * 4);
    cpu->scale_cols(cpu, &hy2, &hy2, &hs);
    CHECK(tu_same_bits(y, ref, (size_t)n * 4));
    fk_devsim_stats st;
    fk_backend_devsim_stats(sim, &st);
    CHECK(st.op_calls[FK_OP_TRANSPOSE] == 1 && st.op_calls[FK_OP_SCALE_COLS] == 2 && st.ops == 3);
    CHECK(st.uploads == 1 && st.downloads == 1 && st.weights_seen == 1);
    fk_op_stats ps[FK_OP_COUNT][2];
    fk_backend_profile_get(prof, ps);
    /* bytes: y and x (transpose); y, x and s (scale_cols) */
    CHECK(ps[FK_OP_TRANSPOSE][0].calls == 1 && ps[FK_OP_TRANSPOSE][0].bytes == 2.0 * (double)n * 4);
    CHECK(ps[FK_OP_SCALE_COLS][0].calls == 2 &&
          ps[FK_OP_SCALE_COLS][0].bytes == 2 * (2.0 * (double)n * 4 + (double)R * 2));
    prof->free(prof, dx);
    prof->free(prof, dy);
    prof->destroy(prof);
    sim->destroy(sim);
    fk_free(x), fk_free(y), fk_free(ref), fk_free(s);
}

/* fk_copy_parallel (core.h) against memcpy: empty, under one piece, a
 * tail past whole 1 MiB pieces; nothing written past n. */
static void test_copy_parallel(void) {
    static const size_t sizes[] = {0, 1, 1000, ((size_t)1 << 20) + 3, ((size_t)5 << 20) - 7};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        const size_t n = sizes[i];
        unsigned char *src = fk_alloc(n + 16), *dst = fk_alloc(n + 16);
        for (size_t j = 0; j < n + 16; j++) src[j] = (unsigned char)(j * 131u + 7u), dst[j] = 0xa5;
        fk_copy_parallel(dst, src, n);
        bool ok = memcmp(dst, src, n) == 0;
        for (size_t j = n; j < n + 16; j++) ok = ok && dst[j] == 0xa5;
        CHECKF(ok, "fk_copy_parallel of %zu bytes", n);
        fk_free(src);
        fk_free(dst);
    }
}

int main(void) {
    tu_backends_init();
    test_copy_parallel();
    test_supports();
    test_transpose();
    test_scale_cols();
    test_wrappers();
    tu_backends_free();
    return fk_test_finish("test_ops_layout");
}
