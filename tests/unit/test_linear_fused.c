/* The CPU weight cache (be->cache_weight: pre-packed AMX B tiles) and the
 * fused linears (linear_act, linear_cat), in bf16 mode with every bf16 kernel this machine runs:
 * - a linear reading a cached weight gives exactly the bits of the same
 *   linear packing its panels per call (the packed tiles are the same
 *   numbers, in the same order), for tails in N and K (not multiples of 32
 *   or of the 256-wide blocks), every weight dtype, 1/2/3 threads, row
 *   views of a larger tensor (the FLUX q/k/v views), with and without bias;
 * - a weight that is not cached (other pointer, other shape) still gives
 *   its own product (the cache is keyed by pointer, dtype and shape);
 * - linear_act equals linear followed by the activation op bit for bit
 *   (bf16 mode: the activation applied in the output stage; f32 mode: after
 *   the product), for each activation;
 * - linear_multi (several products of one x, x packed once) equals linear /
 *   linear_act on each bit for bit, and so does the generic fallback;
 * - linear_cat ([x1 | x2]·wᵀ) equals linear on the joined rows bit for bit
 *   (bf16 mode: A packed from both sources, including a 32-column chunk
 *   across the boundary; f32 mode: joined in the caller's tmp);
 * - linear_rmsnorm_rope equals linear then rmsnorm_rope (in place) bit for
 *   bit (bf16 mode: the norm and the rotation in the output stage, whole
 *   heads per panel whatever the split between threads; with a cached
 *   weight; f32 y and the bf16 y rmsnorm_rope writes from the same f32 y);
 * - f32 mode caches nothing; uncache_weights empties the cache.
 * Bitwise equality is the tolerance: the paths compute the same sums. */
#include "cpu_ops_util.h"

#include <string.h>

static const fk_dtype WDT[] = {FK_BF16, FK_F32, FK_F8_E4M3};

static fk_backend *mk(int threads, fk_cpu_bf16_kernel k) {
    fk_backend *be = fk_backend_cpu_create(threads);
    if (!be || !fk_backend_cpu_set_bf16_kernel(be, k)) {
        fprintf(stderr, "cannot create a CPU backend with kernel %s\n", fk_cpu_bf16_kernel_name(k));
        exit(2);
    }
    return be;
}

static void *mkw(fk_dtype dt, int64_t n) {
    float *tmp = tu_alloc(n);
    tu_fill(tmp, n, -0.05f, 0.05f);
    void *w = fk_alloc((size_t)n * fk_dtype_size(dt));
    fk_convert_from_f32(w, dt, tmp, (size_t)n);
    fk_free(tmp);
    return w;
}

static void test_cache_case(fk_cpu_bf16_kernel k, int threads, int64_t M, int64_t K, int64_t N,
                            fk_dtype dt, bool bias) {
    /* a (3N, K) tensor; the weight is its middle rows (a row view) */
    void *big = mkw(dt, 3 * N * K);
    size_t esz = fk_dtype_size(dt);
    fk_tensor w = fk_view2(dt, (char *)big + (size_t)(N * K) * esz, N, K);
    fk_tensor w0 = fk_view2(dt, big, N, K); /* another weight of the same shape */
    float *bd = tu_alloc(N);
    tu_fill(bd, N, -0.5f, 0.5f);
    fk_tensor b = fk_view1(FK_F32, bd, N);
    float *xd = tu_alloc(M * K);
    tu_fill(xd, M * K, -1.0f, 1.0f);
    fk_tensor x = fk_view2(FK_F32, xd, M, K);
    float *y_ref = tu_alloc(M * N), *y_c = tu_alloc(M * N), *y0 = tu_alloc(M * N),
          *y0c = tu_alloc(M * N);
    fk_tensor ty_ref = fk_view2(FK_F32, y_ref, M, N), ty_c = fk_view2(FK_F32, y_c, M, N);
    fk_tensor ty0 = fk_view2(FK_F32, y0, M, N), ty0c = fk_view2(FK_F32, y0c, M, N);

    fk_backend *ref = mk(threads, k), *be = mk(threads, k);
    ref->linear(ref, &ty_ref, &x, &w, bias ? &b : NULL);
    ref->linear(ref, &ty0, &x, &w0, bias ? &b : NULL);
    size_t n = be->cache_weight(be, &w);
    CHECKF(n == (size_t)((N + 31) / 32 * 32) * (size_t)((K + 31) / 32 * 32) * 2,
           "cache_weight(%lld x %lld %s) = %zu bytes", (long long)N, (long long)K,
           fk_dtype_name(dt), n);
    CHECK(be->cache_weight(be, &w) == n); /* a second call finds it */
    be->linear(be, &ty_c, &x, &w, bias ? &b : NULL);
    be->linear(be, &ty0c, &x, &w0, bias ? &b : NULL); /* not cached: packs per call */
    CHECKF(tu_same_bits(y_ref, y_c, (size_t)(M * N) * 4),
           "%s, %d threads, M %lld K %lld N %lld %s%s: cached weight changes the result",
           fk_cpu_bf16_kernel_name(k), threads, (long long)M, (long long)K, (long long)N,
           fk_dtype_name(dt), bias ? " +bias" : "");
    CHECK(tu_same_bits(y0, y0c, (size_t)(M * N) * 4));
    CHECK(!tu_same_bits(y_ref, y0, (size_t)(M * N) * 4)); /* the two weights differ */
    CHECK(fk_cpu_wcache_bytes(be) == n);
    be->uncache_weights(be);
    CHECK(fk_cpu_wcache_bytes(be) == 0);
    be->linear(be, &ty_c, &x, &w, bias ? &b : NULL);
    CHECK(tu_same_bits(y_ref, y_c, (size_t)(M * N) * 4));
    ref->destroy(ref);
    be->destroy(be);
    fk_free(big);
    fk_free(bd);
    fk_free(xd);
    fk_free(y_ref);
    fk_free(y_c);
    fk_free(y0);
    fk_free(y0c);
}

static void test_linear_act(fk_backend *be, int64_t M, int64_t K, int64_t N) {
    void *wd = mkw(FK_BF16, N * K);
    fk_tensor w = fk_view2(FK_BF16, wd, N, K);
    float *bd = tu_alloc(N), *xd = tu_alloc(M * K), *y1 = tu_alloc(M * N), *y2 = tu_alloc(M * N);
    tu_fill(bd, N, -0.5f, 0.5f);
    tu_fill(xd, M * K, -3.0f, 3.0f);
    fk_tensor b = fk_view1(FK_F32, bd, N), x = fk_view2(FK_F32, xd, M, K);
    fk_tensor t1 = fk_view2(FK_F32, y1, M, N), t2 = fk_view2(FK_F32, y2, M, N);
    for (int a = 0; a < FK_ACT_COUNT; a++) {
        be->linear(be, &t1, &x, &w, &b);
        switch ((fk_act)a) {
        case FK_ACT_GELU_TANH: be->gelu_tanh(be, &t1, &t1); break;
        case FK_ACT_SILU: be->silu(be, &t1, &t1); break;
        case FK_ACT_GELU_QUICK: be->gelu_quick(be, &t1, &t1); break;
        default: break;
        }
        be->linear_act(be, &t2, &x, &w, &b, (fk_act)a);
        CHECKF(tu_same_bits(y1, y2, (size_t)(M * N) * 4),
               "linear_act(act %d) M %lld K %lld N %lld differs from linear + activation", a,
               (long long)M, (long long)K, (long long)N);
    }
    fk_free(wd);
    fk_free(bd);
    fk_free(xd);
    fk_free(y1);
    fk_free(y2);
}

/* linear_multi (n products of one x) against linear / linear_act one by
 * one: bit for bit, each product with its own N, weight dtype, bias (or
 * none) and activation; x a row view with the products' outputs around it
 * left alone; n up to 9 (above FK_CPU_MULTI_MAX: one call each). Also
 * through fk_backend_linear_multi on a backend without the entry (the
 * generic fallback). */
static void test_linear_multi(fk_backend *be, int n, int64_t M, int64_t K) {
    enum { NMAX = 9 };
    static const int64_t Ns[NMAX] = {64, 70, 300, 33, 520, 32, 96, 257, 40};
    static const fk_act acts[NMAX] = {FK_ACT_NONE,      FK_ACT_GELU_TANH, FK_ACT_NONE,
                                      FK_ACT_SILU,      FK_ACT_GELU_TANH, FK_ACT_GELU_QUICK,
                                      FK_ACT_NONE,      FK_ACT_NONE,      FK_ACT_SILU};
    void *wd[NMAX];
    float *bd[NMAX], *y1[NMAX], *y2[NMAX];
    fk_tensor w[NMAX], b[NMAX], t1[NMAX], t2[NMAX];
    fk_tensor *yp[NMAX];
    const fk_tensor *wp[NMAX], *bp[NMAX];
    float *xd = tu_alloc((M + 2) * K); /* rows 1..M used: a view */
    tu_fill(xd, (M + 2) * K, -2.0f, 2.0f);
    fk_tensor x = fk_view2(FK_F32, xd + K, M, K);
    for (int i = 0; i < n; i++) {
        const fk_dtype dt = WDT[i % 3];
        wd[i] = mkw(dt, Ns[i] * K);
        w[i] = fk_view2(dt, wd[i], Ns[i], K);
        bd[i] = tu_alloc(Ns[i]);
        tu_fill(bd[i], Ns[i], -0.5f, 0.5f);
        b[i] = fk_view1(FK_F32, bd[i], Ns[i]);
        y1[i] = tu_alloc(M * Ns[i]);
        y2[i] = tu_alloc(M * Ns[i]);
        t1[i] = fk_view2(FK_F32, y1[i], M, Ns[i]);
        t2[i] = fk_view2(FK_F32, y2[i], M, Ns[i]);
        yp[i] = &t2[i];
        wp[i] = &w[i];
        bp[i] = i % 4 == 1 ? NULL : &b[i];
        if (acts[i] == FK_ACT_NONE) be->linear(be, &t1[i], &x, &w[i], bp[i]);
        else be->linear_act(be, &t1[i], &x, &w[i], bp[i], acts[i]);
        for (int64_t e = 0; e < M * Ns[i]; e++) y2[i][e] = NAN; /* every element written */
    }
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 0) {
            be->linear_multi(be, n, yp, &x, wp, bp, acts);
        } else { /* the generic fallback of a backend without the entry */
            fk_backend plain = *be;
            plain.linear_multi = NULL;
            for (int i = 0; i < n; i++)
                for (int64_t e = 0; e < M * Ns[i]; e++) y2[i][e] = NAN;
            fk_backend_linear_multi(&plain, n, yp, &x, wp, bp, acts);
        }
        int bad = 0;
        for (int i = 0; i < n; i++) bad += !tu_same_bits(y1[i], y2[i], (size_t)(M * Ns[i]) * 4);
        CHECKF(bad == 0, "linear_multi%s n %d M %lld K %lld: %d of the products differ from "
               "linear / linear_act", pass ? " (fallback)" : "", n, (long long)M, (long long)K,
               bad);
    }
    for (int i = 0; i < n; i++) {
        fk_free(wd[i]);
        fk_free(bd[i]);
        fk_free(y1[i]);
        fk_free(y2[i]);
    }
    fk_free(xd);
}

static void test_linear_cat(fk_backend *be, int64_t M, int64_t K1, int64_t K2, int64_t N) {
    const int64_t K = K1 + K2;
    void *wd = mkw(FK_BF16, N * K);
    fk_tensor w = fk_view2(FK_BF16, wd, N, K);
    float *bd = tu_alloc(N), *x1 = tu_alloc(M * K1), *x2 = tu_alloc(M * K2), *xc = tu_alloc(M * K);
    float *tmp = tu_alloc(M * K), *y1 = tu_alloc(M * N), *y2 = tu_alloc(M * N);
    tu_fill(bd, N, -0.5f, 0.5f);
    tu_fill(x1, M * K1, -2.0f, 2.0f);
    tu_fill(x2, M * K2, -2.0f, 2.0f);
    for (int64_t m = 0; m < M; m++) {
        memcpy(xc + m * K, x1 + m * K1, (size_t)K1 * 4);
        memcpy(xc + m * K + K1, x2 + m * K2, (size_t)K2 * 4);
    }
    fk_tensor b = fk_view1(FK_F32, bd, N), t1 = fk_view2(FK_F32, x1, M, K1);
    fk_tensor t2 = fk_view2(FK_F32, x2, M, K2), tc = fk_view2(FK_F32, xc, M, K);
    fk_tensor tt = fk_view2(FK_F32, tmp, M, K);
    fk_tensor ty1 = fk_view2(FK_F32, y1, M, N), ty2 = fk_view2(FK_F32, y2, M, N);
    be->linear(be, &ty1, &tc, &w, &b);
    be->linear_cat(be, &ty2, &t1, &t2, &w, &b, &tt);
    CHECKF(tu_same_bits(y1, y2, (size_t)(M * N) * 4),
           "linear_cat M %lld K1 %lld K2 %lld N %lld differs from linear on the joined rows",
           (long long)M, (long long)K1, (long long)K2, (long long)N);
    fk_free(wd);
    fk_free(bd);
    fk_free(x1);
    fk_free(x2);
    fk_free(xc);
    fk_free(tmp);
    fk_free(y1);
    fk_free(y2);
}

/* linear_rmsnorm_rope against linear, then rmsnorm_rope in place (an f32 y,
 * and a bf16 y against rmsnorm_rope's bf16 y from that f32 one); the weight
 * cached first when `cache`. */
static void test_linear_rmsnorm_rope(fk_backend *be, int64_t M, int64_t K, int64_t H, int64_t D,
                                     bool cache) {
    const int64_t N = H * D;
    void *wd = mkw(FK_BF16, N * K), *sd = mkw(FK_BF16, D);
    fk_tensor w = fk_view2(FK_BF16, wd, N, K), sc = fk_view1(FK_BF16, sd, D);
    if (cache) be->cache_weight(be, &w);
    float *bd = tu_alloc(N), *xd = tu_alloc(M * K), *pd = tu_alloc(M * D * 2);
    float *y1 = tu_alloc(M * N), *y2 = tu_alloc(M * N);
    uint16_t *b1 = fk_alloc((size_t)(M * N) * 2), *b2 = fk_alloc((size_t)(M * N) * 2);
    tu_fill(bd, N, -0.5f, 0.5f);
    tu_fill(xd, M * K, -1.0f, 1.0f);
    tu_fill(pd, M * D * 2, -1.0f, 1.0f);
    fk_tensor b = fk_view1(FK_F32, bd, N), x = fk_view2(FK_F32, xd, M, K);
    fk_tensor pe = fk_view4(FK_F32, pd, M, D / 2, 2, 2);
    fk_tensor ty1 = fk_view2(FK_F32, y1, M, N), ty1h = fk_view3(FK_F32, y1, M, H, D);
    fk_tensor ty2 = fk_view2(FK_F32, y2, M, N);
    fk_tensor tb1 = fk_view3(FK_BF16, b1, M, H, D), tb2 = fk_view2(FK_BF16, b2, M, N);
    be->linear(be, &ty1, &x, &w, &b);
    const bool ybf = be->supports(be, FK_OP_RMSNORM_ROPE,
                                  (const fk_tensor *const[]){&tb1, &ty1h, &sc, &pe}, 4);
    if (ybf) be->rmsnorm_rope(be, &tb1, &ty1h, &sc, &pe, 1e-6f);
    be->rmsnorm_rope(be, &ty1h, &ty1h, &sc, &pe, 1e-6f);
    be->linear_rmsnorm_rope(be, &ty2, &x, &w, &b, &sc, &pe, 1e-6f);
    CHECKF(tu_same_bits(y1, y2, (size_t)(M * N) * 4),
           "linear_rmsnorm_rope M %lld K %lld H %lld D %lld%s, %d threads: not linear then "
           "rmsnorm_rope",
           (long long)M, (long long)K, (long long)H, (long long)D, cache ? " (cached)" : "",
           be->n_threads);
    if (ybf) {
        be->linear_rmsnorm_rope(be, &tb2, &x, &w, &b, &sc, &pe, 1e-6f);
        CHECKF(tu_same_bits(b1, b2, (size_t)(M * N) * 2),
               "linear_rmsnorm_rope M %lld K %lld H %lld D %lld, bf16 y: not rmsnorm_rope's",
               (long long)M, (long long)K, (long long)H, (long long)D);
    }
    if (cache) be->uncache_weights(be);
    fk_free(wd), fk_free(sd), fk_free(bd), fk_free(xd), fk_free(pd), fk_free(y1), fk_free(y2);
    fk_free(b1), fk_free(b2);
}

int main(void) {
    fk_cpu_bf16_kernel kernels[2];
    int nk = 0;
    if (fk_cpu_bf16_kernel_available(FK_CPU_BF16_AMX)) kernels[nk++] = FK_CPU_BF16_AMX;
    if (fk_cpu_bf16_kernel_available(FK_CPU_BF16_AVX512)) kernels[nk++] = FK_CPU_BF16_AVX512;
    static const int64_t shapes[][3] = {
        {64, 288, 320},   /* M, K, N: one K block + a tail block of 32 */
        {40, 300, 270},   /* tails everywhere (K, N not multiples of 32) */
        {96, 520, 600},   /* three K blocks, three column panels (two threads split them) */
        {600, 300, 700},  /* three row blocks and three panels, tails in both: the cached
                             product's units (a C panel each) shared out between threads */
    };
    for (int ki = 0; ki < nk; ki++)
        for (int s = 0; s < 4; s++)
            for (int d = 0; d < 3; d++)
                test_cache_case(kernels[ki], 1 + (s + d) % 3, shapes[s][0], shapes[s][1],
                                shapes[s][2], WDT[d], (s + d) % 2 == 0);
    if (!nk) printf("no bf16 kernel on this machine: the cache tests are skipped\n");

    /* f32 mode: nothing is cached, the product reads the weight itself */
    fk_backend *f = fk_backend_cpu_create(2);
    void *wd = mkw(FK_BF16, 256 * 512);
    fk_tensor w = fk_view2(FK_BF16, wd, 256, 512);
    CHECK(f->cache_weight(f, &w) == 0);
    CHECK(fk_cpu_wcache_bytes(f) == 0);
    test_linear_act(f, 48, 100, 70); /* f32 mode */
    test_linear_cat(f, 40, 70, 90, 50);
    test_linear_multi(f, 4, 40, 100);
    test_linear_rmsnorm_rope(f, 40, 64, 3, 64, false);
    f->destroy(f);
    fk_free(wd);
    for (int ki = 0; ki < nk; ki++)
        for (int t = 1; t <= 3; t += 2) {
            fk_backend *be = mk(t, kernels[ki]);
            test_linear_act(be, 48, 100, 70);   /* bias, tails */
            test_linear_act(be, 300, 64, 520);  /* several panels and row blocks */
            test_linear_act(be, 8, 64, 64);     /* small M: the f32 path inside bf16 mode */
            test_linear_cat(be, 48, 64, 96, 70);   /* boundary on a 32-column chunk */
            test_linear_cat(be, 40, 70, 300, 90);  /* a chunk across the boundary, tails */
            test_linear_cat(be, 8, 70, 30, 40);    /* small M (f32 path) */
            test_linear_multi(be, 4, 300, 130);    /* FLUX-like: several panels, tails */
            test_linear_multi(be, 1, 64, 64);
            test_linear_multi(be, 9, 40, 96);      /* more than FK_CPU_MULTI_MAX */
            test_linear_multi(be, 3, 8, 64);       /* small M: the f32 path */
            test_linear_rmsnorm_rope(be, 300, 130, 10, 128, t == 3); /* 5 panels, 2 row blocks */
            test_linear_rmsnorm_rope(be, 70, 64, 3, 256, false);   /* 3 panels: split */
            test_linear_rmsnorm_rope(be, 40, 96, 7, 32, true);     /* a partial panel */
            test_linear_rmsnorm_rope(be, 40, 64, 3, 48, false);    /* D 48: the two ops */
            test_linear_rmsnorm_rope(be, 8, 64, 2, 64, false);     /* small M: the two ops */
            be->destroy(be);
        }
    return fk_test_finish("test_linear_fused");
}
