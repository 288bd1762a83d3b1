/* Backend conformance: every op of every backend under test compared with the
 * CPU f32 reference backend (the specification), on fresh random non-zero
 * inputs per check, with the output poisoned with NaN before each run and
 * checked to be all written (finite) afterwards.
 *
 * Backends under test:
 * - the CPU backend in bf16 mode (FK_PREC_BF16: linear, attention, conv2d
 *   with bf16 operands on AMX where the machine has it) — always, so this
 *   test is never a no-op on a machine without a GPU;
 * - the same behind the simulated device (devsim.h), also always: it checks
 *   the suite's own device hygiene as a GPU would need it (activations in
 *   backend memory; host weights constant while cached: every check calls
 *   uncache_weights before it frees its host weights, whose addresses the
 *   next check's weights may reuse — a CUDA backend would otherwise compute
 *   with the previous check's cached copy);
 * - every CUDA device, in bf16 mode and in f32 mode, when fk_cuda_device_count()
 *   > 0 (otherwise "CUDA: no device, skipped" is printed); each mode also
 *   runs a subset of the checks under fk_backend_cuda_set_test_hooks (small
 *   chunks, staged weights, the fallback product: cf_suite_hooked), the
 *   paths real shapes reach only at full size or on a full device.
 * Activations go through be->alloc / upload / download with tensor.device =
 * be->device; weights are host tensors of several dtypes (f32, bf16, f16, fp8
 * e4m3 / e5m2), which the CUDA backend caches on the device.
 *
 * Error measure: relative L2, ‖y − ref‖ / ‖ref‖ over the op's whole output.
 * Tolerances (u = unit roundoff):
 * - TOL_EW = 2e-6, elementwise ops and norms in f32: each output is a few f32
 *   operations; the two sides differ in exp (CPU polynomial vs CUDA expf, each
 *   ≤ 2 ulp), in the order of row sums (double vs f32 partials combined in
 *   double) and in fma contraction: a few ulp per element at most, u = 2^-24 ≈
 *   6e-8, so ~5e-7 worst case per element and less in L2; ×4 margin.
 * - TOL_F32_PROD = 1e-5, products (linear, attention, conv2d) in f32 with a
 *   different summation order: the RMS error of a K-term f32 dot product of
 *   random-sign terms grows like √K·u relative to ‖terms‖, √4608·2^-24 ≈ 4e-6
 *   for the largest K here (the ratio ‖terms‖/|sum| is ~1 for zero-mean
 *   inputs); ×2.5 margin.
 * - TOL_BF16_PROD = 2^-7 ≈ 7.8e-3, products with bf16 operands: bf16 keeps 8
 *   significant bits, u = 2^-8; rounding errors are ~uniform with RMS ≈ 0.4·u
 *   ≈ 1.6e-3 per operand, so a product term carries ≈ √2·1.6e-3 = 2.3e-3 and
 *   the sum of K zero-mean terms the same relative RMS: 2.3e-3 expected, ×3.4
 *   margin. Attention rounds q, k, v and p (four operands: ≈ 3.2e-3 expected),
 *   TOL_BF16_ATT = 2^-6 ≈ 1.6e-2 leaves the same kind of margin for the
 *   softmax's amplification of score errors (scores up to ~±6 here).
 * Copies (concat_rows, split_rows, copy_cols) must be bitwise. The weight
 * cache must not change a single bit (cache_weight / uncache_weights).
 *
 * Modes: no argument: the conformance suite. --bench: time the CUDA backend's
 * products on the Flux-mini shapes (bf16) and print TFLOP/s (tools/gpu_check.sh).
 */
#include "backend/backend_cuda.h"
#include "backend/devsim.h"
#include "backend/cpu/cpu.h"
#include "core/dtype.h"
#include "test.h"

#include <float.h>
#include <stdint.h>

#if defined(__SANITIZE_ADDRESS__) && defined(FK_HAVE_CUDA)
/* ASan + the CUDA driver: the driver maps memory where ASan keeps its shadow
 * gap; without this the sanitizer build cannot open a GPU. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "protect_shadow_gap=0"; }
#endif

#define TOL_EW 2e-6
#define TOL_F32_PROD 1e-5
#define TOL_BF16_PROD 0x1p-7
#define TOL_BF16_ATT 0x1p-6

/* ---- random data ---- */

static uint64_t cf_rng = 0x9E3779B97F4A7C15ull;

static uint64_t cf_next(void) {
    uint64_t z = (cf_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* uniform in [lo, hi), never exactly 0 */
static float cf_uniform(float lo, float hi) {
    for (;;) {
        float v = lo + (hi - lo) * (float)((double)(cf_next() >> 11) * 0x1p-53);
        if (v != 0.0f) return v;
    }
}

static float *cf_alloc(int64_t n) {
    float *p = fk_alloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static float *cf_rand(int64_t n, float lo, float hi) {
    float *p = cf_alloc(n);
    for (int64_t i = 0; i < n; i++) p[i] = cf_uniform(lo, hi);
    return p;
}

/* ---- targets ---- */

typedef struct cf_target {
    fk_backend *be;
    char name[48];
    double tol_prod, tol_att; /* products, attention */
    int failed_before;        /* failures counted before this target started */
    /* a run of a subset of the ops (the CUDA test-hook runs): ops it does not
     * check are left out of the summary, not reported MISSING */
    bool partial;
} cf_target;

static fk_backend *cf_ref; /* CPU f32 reference */

/* per-op worst error / tolerance of the current target (summary table) */
static double cf_worst[FK_OP_COUNT];
static int cf_fails[FK_OP_COUNT];
static int cf_runs[FK_OP_COUNT];

/* ---- tensors of a target ---- */

/* A tensor of `dt` on the target's device with the given shape: uploaded
 * from host (nbytes of it) or, host NULL, poisoned (NaN for floats, 0xff
 * bytes otherwise). */
static fk_tensor cf_dev(const cf_target *tg, fk_dtype dt, const void *host, int ndim,
                        const int64_t *shape) {
    fk_tensor t = fk_tensor_view(dt, NULL, ndim, shape);
    size_t nb = fk_tensor_nbytes(&t);
    t.data = tg->be->alloc(tg->be, nb ? nb : 4);
    if (!t.data) {
        fprintf(stderr, "%s: out of memory (%zu bytes)\n", tg->name, nb);
        exit(2);
    }
    t.device = tg->be->device;
    if (host) {
        tg->be->upload(tg->be, t.data, host, nb);
    } else {
        unsigned char *p = fk_alloc(nb ? nb : 4);
        memset(p, 0xff, nb); /* 0xffffffff is a NaN in f32 */
        tg->be->upload(tg->be, t.data, p, nb);
        fk_free(p);
    }
    return t;
}

static fk_tensor cf_dev_f32(const cf_target *tg, const float *host, int ndim, const int64_t *shape) {
    return cf_dev(tg, FK_F32, host, ndim, shape);
}

static void cf_get(const cf_target *tg, void *host, const fk_tensor *t) {
    tg->be->download(tg->be, host, t->data, fk_tensor_nbytes(t));
}

static void cf_free(const cf_target *tg, fk_tensor *t) {
    tg->be->free(tg->be, t->data);
    t->data = NULL;
}

/* Before a check frees its host weights: a device backend caches a host
 * weight by its address, and the next check's weights may get the same
 * address (the devsim target aborts on that, a GPU would compute with the
 * stale copy). */
static void cf_uncache(const cf_target *tg) {
    if (tg->be->uncache_weights) tg->be->uncache_weights(tg->be);
}

/* A real CUDA backend (not the simulated device, which also says CUDA). */
static bool cf_real_cuda(const fk_backend *be) {
    return be->device == FK_DEVICE_CUDA && !fk_backend_is_devsim(be);
}

/* host tensor view */
static fk_tensor cf_host(fk_dtype dt, void *data, int ndim, const int64_t *shape) {
    return fk_tensor_view(dt, data, ndim, shape);
}

/* A host weight of dtype dt with n random values in [-s, s): raw buffer. */
static void *cf_weight(fk_dtype dt, int64_t n, float s) {
    float *v = cf_rand(n, -s, s);
    void *w = fk_alloc((size_t)(n > 0 ? n : 1) * fk_dtype_size(dt));
    if (!w) exit(2);
    fk_convert_from_f32(w, dt, v, (size_t)n);
    fk_free(v);
    return w;
}

/* ---- comparison ---- */

/* got (from the target) against ref: all finite, rel L2 <= tol. */
static void cf_compare(const cf_target *tg, fk_op op, const char *what, const float *got,
                       const float *ref, int64_t n, double tol) {
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(got[i]) && isfinite(ref[i])) bad++;
    double err = bad ? INFINITY : fk_test_rel_l2_f32(got, ref, (size_t)n);
    cf_runs[op]++;
    double r = err / tol;
    if (!(r <= cf_worst[op])) cf_worst[op] = r;
    bool ok = bad == 0 && err <= tol;
    if (!ok) cf_fails[op]++;
    CHECKF(ok, "%s %s: %s: %lld of %lld outputs not written/finite, rel L2 %.3g (tol %.3g)",
           tg->name, fk_op_name(op), what, (long long)bad, (long long)n, err, tol);
}

static void cf_compare_bits(const cf_target *tg, fk_op op, const char *what, const void *got,
                            const void *ref, size_t nbytes) {
    bool ok = memcmp(got, ref, nbytes) == 0;
    cf_runs[op]++;
    if (!ok) {
        cf_fails[op]++;
        cf_worst[op] = INFINITY;
    }
    CHECKF(ok, "%s %s: %s: not bitwise equal to the reference", tg->name, fk_op_name(op), what);
}

/* ---- products ---- */

static const fk_dtype CF_WDT[] = {FK_F32, FK_BF16, FK_F16, FK_F8_E4M3, FK_F8_E5M2};
#define CF_N_WDT 5

/* linear / linear_act with w (N, K) of dtype wdt, bias of dtype bdt (or none) */
static void cf_linear(const cf_target *tg, int64_t M, int64_t K, int64_t N, fk_dtype wdt,
                      bool has_bias, fk_dtype bdt, fk_act act, bool use_act_entry) {
    const fk_op op = use_act_entry ? FK_OP_LINEAR_ACT : FK_OP_LINEAR;
    float *x = cf_rand(M * K, -1, 1);
    void *w = cf_weight(wdt, N * K, 1.0f / sqrtf((float)K) * 2.0f);
    void *b = has_bias ? cf_weight(bdt, N, 0.5f) : NULL;
    float *ref = cf_alloc(M * N), *got = cf_alloc(M * N);
    int64_t sx[2] = {M, K}, sy[2] = {M, N}, sw[2] = {N, K}, sb[1] = {N};
    fk_tensor hx = cf_host(FK_F32, x, 2, sx), hy = cf_host(FK_F32, ref, 2, sy);
    fk_tensor tw = cf_host(wdt, w, 2, sw), tb = cf_host(bdt, b, 1, sb);
    if (use_act_entry)
        cf_ref->linear_act(cf_ref, &hy, &hx, &tw, has_bias ? &tb : NULL, act);
    else
        cf_ref->linear(cf_ref, &hy, &hx, &tw, has_bias ? &tb : NULL);
    fk_tensor dx = cf_dev_f32(tg, x, 2, sx), dy = cf_dev_f32(tg, NULL, 2, sy);
    if (use_act_entry)
        tg->be->linear_act(tg->be, &dy, &dx, &tw, has_bias ? &tb : NULL, act);
    else
        tg->be->linear(tg->be, &dy, &dx, &tw, has_bias ? &tb : NULL);
    cf_get(tg, got, &dy);
    char what[128];
    snprintf(what, sizeof(what), "M=%lld K=%lld N=%lld w %s, bias %s, act %d", (long long)M,
             (long long)K, (long long)N, fk_dtype_name(wdt), has_bias ? fk_dtype_name(bdt) : "-",
             (int)act);
    cf_compare(tg, op, what, got, ref, M * N, tg->tol_prod);
    cf_free(tg, &dx);
    cf_free(tg, &dy);
    cf_uncache(tg);
    fk_free(x);
    fk_free(w);
    fk_free(b);
    fk_free(ref);
    fk_free(got);
}

static void cf_linear_cat(const cf_target *tg, int64_t M, int64_t K1, int64_t K2, int64_t N,
                          fk_dtype wdt, bool has_bias) {
    const int64_t K = K1 + K2;
    float *x1 = cf_rand(M * K1, -1, 1), *x2 = cf_rand(M * K2, -1, 1);
    void *w = cf_weight(wdt, N * K, 2.0f / sqrtf((float)K));
    void *b = has_bias ? cf_weight(FK_BF16, N, 0.5f) : NULL;
    float *ref = cf_alloc(M * N), *got = cf_alloc(M * N), *tmp = cf_alloc(M * K);
    int64_t s1[2] = {M, K1}, s2[2] = {M, K2}, sy[2] = {M, N}, sw[2] = {N, K}, sb[1] = {N};
    int64_t st[2] = {M, K};
    fk_tensor h1 = cf_host(FK_F32, x1, 2, s1), h2 = cf_host(FK_F32, x2, 2, s2);
    fk_tensor hy = cf_host(FK_F32, ref, 2, sy), ht = cf_host(FK_F32, tmp, 2, st);
    fk_tensor tw = cf_host(wdt, w, 2, sw), tb = cf_host(FK_BF16, b, 1, sb);
    cf_ref->linear_cat(cf_ref, &hy, &h1, &h2, &tw, has_bias ? &tb : NULL, &ht);
    fk_tensor d1 = cf_dev_f32(tg, x1, 2, s1), d2 = cf_dev_f32(tg, x2, 2, s2);
    fk_tensor dy = cf_dev_f32(tg, NULL, 2, sy), dt = cf_dev_f32(tg, NULL, 2, st);
    tg->be->linear_cat(tg->be, &dy, &d1, &d2, &tw, has_bias ? &tb : NULL, &dt);
    cf_get(tg, got, &dy);
    char what[96];
    snprintf(what, sizeof(what), "M=%lld K1=%lld K2=%lld N=%lld w %s", (long long)M,
             (long long)K1, (long long)K2, (long long)N, fk_dtype_name(wdt));
    cf_compare(tg, FK_OP_LINEAR_CAT, what, got, ref, M * N, tg->tol_prod);
    cf_free(tg, &d1);
    cf_free(tg, &d2);
    cf_free(tg, &dy);
    cf_free(tg, &dt);
    cf_uncache(tg);
    fk_free(x1);
    fk_free(x2);
    fk_free(w);
    fk_free(b);
    fk_free(ref);
    fk_free(got);
    fk_free(tmp);
}

/* bf16 activations (backend.h), on a target whose supports() takes them for
 * these shapes (CPU in bf16 mode with a bf16 kernel, and devsim in front of
 * it; CUDA in bf16 mode; a backend may decline, then nothing runs):
 * linear_act (GELU, SiLU) writing a bf16 y, linear reading a bf16 x,
 * linear_cat reading a bf16 x2 (bias bdt: CUDA's product stage reads a
 * bf16 bias as it is, an f32 one as f32), each
 * against the f32 reference on the same values (the bf16 x holds the bf16
 * rounding of the reference's f32 x; the bf16 y is widened) within the
 * target's product tolerance (a bf16 y adds one rounding, RMS ≈ 0.4·2^-8 ≈
 * 1e-3, well inside TOL_BF16_PROD). Returns whether it ran. */
static bool cf_bf16_io(const cf_target *tg, int64_t M, int64_t K1, int64_t K2, int64_t N, fk_dtype bdt) {
    const int64_t K = K1 + K2;
    int64_t sx[2] = {M, K}, s1[2] = {M, K1}, s2[2] = {M, K2}, sy[2] = {M, N}, sw[2] = {N, K};
    int64_t sb[1] = {N};
    void *w = cf_weight(FK_BF16, N * K, 2.0f / sqrtf((float)K));
    void *b = cf_weight(bdt, N, 0.5f);
    fk_tensor tw = cf_host(FK_BF16, w, 2, sw), tb = cf_host(bdt, b, 1, sb);
    /* the shapes asked about (data not needed) */
    fk_tensor qyb = fk_tensor_view(FK_BF16, NULL, 2, sy), qx = fk_tensor_view(FK_F32, NULL, 2, sx);
    fk_tensor qxb = fk_tensor_view(FK_BF16, NULL, 2, sx), qy = fk_tensor_view(FK_F32, NULL, 2, sy);
    fk_tensor q1 = fk_tensor_view(FK_F32, NULL, 2, s1), q2b = fk_tensor_view(FK_BF16, NULL, 2, s2);
    qyb.device = qx.device = qxb.device = qy.device = q1.device = q2b.device = tg->be->device;
    const fk_tensor *a1[4] = {&qyb, &qx, &tw, &tb}, *a2[4] = {&qy, &qxb, &tw, &tb};
    const fk_tensor *a3[5] = {&qy, &q1, &q2b, &tw, &tb};
    const bool ok = tg->be->supports(tg->be, FK_OP_LINEAR_ACT, a1, 4) &&
                    tg->be->supports(tg->be, FK_OP_LINEAR, a2, 4) &&
                    tg->be->supports(tg->be, FK_OP_LINEAR_CAT, a3, 5);
    if (ok) {
        float *x = cf_rand(M * K, -1, 1), *ref = cf_alloc(M * N), *got = cf_alloc(M * N);
        uint16_t *xb = fk_alloc((size_t)(M * K) * 2), *yb = fk_alloc((size_t)(M * N) * 2);
        uint16_t *x2b = fk_alloc((size_t)(M * K2) * 2);
        float *x1 = cf_alloc(M * K1);
        for (int64_t i = 0; i < M * K; i++) { /* x: values bf16 holds exactly */
            xb[i] = fk_f32_to_bf16(x[i]);
            x[i] = fk_bf16_to_f32(xb[i]);
        }
        for (int64_t m = 0; m < M; m++) {
            memcpy(x1 + m * K1, x + m * K, (size_t)K1 * 4);
            memcpy(x2b + m * K2, xb + m * K + K1, (size_t)K2 * 2);
        }
        fk_tensor hx = cf_host(FK_F32, x, 2, sx), hy = cf_host(FK_F32, ref, 2, sy);
        char what[96];
        /* linear_act, bf16 y: GELU, then SiLU, which CUDA's product stage does
         * not fuse (there the f32 result is staged and rounded by a kernel) */
        fk_tensor dx = cf_dev_f32(tg, x, 2, sx), dyb = cf_dev(tg, FK_BF16, NULL, 2, sy);
        static const fk_act acts[2] = {FK_ACT_GELU_TANH, FK_ACT_SILU};
        for (int a = 0; a < 2; a++) {
            cf_ref->linear_act(cf_ref, &hy, &hx, &tw, &tb, acts[a]);
            tg->be->linear_act(tg->be, &dyb, &dx, &tw, &tb, acts[a]);
            cf_get(tg, yb, &dyb);
            for (int64_t i = 0; i < M * N; i++) got[i] = fk_bf16_to_f32(yb[i]);
            snprintf(what, sizeof(what), "bf16 y%s, M=%lld K=%lld N=%lld", a ? " (silu)" : "",
                     (long long)M, (long long)K, (long long)N);
            cf_compare(tg, FK_OP_LINEAR_ACT, what, got, ref, M * N, tg->tol_prod);
        }
        /* linear, bf16 x */
        cf_ref->linear(cf_ref, &hy, &hx, &tw, &tb);
        fk_tensor dxb = cf_dev(tg, FK_BF16, xb, 2, sx), dy = cf_dev_f32(tg, NULL, 2, sy);
        tg->be->linear(tg->be, &dy, &dxb, &tw, &tb);
        cf_get(tg, got, &dy);
        snprintf(what, sizeof(what), "bf16 x, M=%lld K=%lld N=%lld", (long long)M, (long long)K,
                 (long long)N);
        cf_compare(tg, FK_OP_LINEAR, what, got, ref, M * N, tg->tol_prod);
        /* linear_cat, f32 x1 | bf16 x2 (same reference) */
        fk_tensor d1 = cf_dev_f32(tg, x1, 2, s1), d2b = cf_dev(tg, FK_BF16, x2b, 2, s2);
        fk_tensor dt = cf_dev_f32(tg, NULL, 2, sx);
        tg->be->linear_cat(tg->be, &dy, &d1, &d2b, &tw, &tb, &dt);
        cf_get(tg, got, &dy);
        snprintf(what, sizeof(what), "bf16 x2, M=%lld K1=%lld K2=%lld N=%lld", (long long)M,
                 (long long)K1, (long long)K2, (long long)N);
        cf_compare(tg, FK_OP_LINEAR_CAT, what, got, ref, M * N, tg->tol_prod);
        fk_tensor *dev[6] = {&dx, &dyb, &dxb, &dy, &d1, &d2b};
        for (int i = 0; i < 6; i++) cf_free(tg, dev[i]);
        cf_free(tg, &dt);
        fk_free(x), fk_free(ref), fk_free(got), fk_free(xb), fk_free(yb), fk_free(x2b);
        fk_free(x1);
    }
    cf_uncache(tg);
    fk_free(w);
    fk_free(b);
    return ok;
}

/* A device tensor (M, N) bf16 in the tile layout (tensor.h), uninitialized. */
static fk_tensor cf_dev_tiles(const cf_target *tg, int64_t M, int64_t N) {
    int64_t s[2] = {M, N};
    fk_tensor t = fk_tensor_view(FK_BF16, NULL, 2, s);
    t.layout = FK_LAYOUT_TILES;
    t.device = tg->be->device;
    t.data = tg->be->alloc(tg->be, fk_tensor_nbytes(&t));
    if (!t.data) exit(2);
    return t;
}

/* Tiled bf16 activations (backend.h), on a target whose supports() takes
 * them (the CPU's bf16 AMX products, devsim in front of them): the MLP
 * hand-over of FLUX — linear_act (GELU) and linear_multi writing a tiled y,
 * linear reading a tiled x, linear_cat reading a tiled x2 after K1 columns —
 * against the same calls on row-major bf16, bit for bit (the tile layout is
 * what the products pack their operand into anyway: the same values, the
 * same sums). M, N1 not multiples of 32 put padding in the tiles (its
 * columns must be zeros). Returns whether the target took them. */
static bool cf_tiles(const cf_target *tg, int64_t M, int64_t K, int64_t N1, int64_t N2,
                     int64_t K1) {
    int64_t sx[2] = {M, K}, sh[2] = {M, N1}, so[2] = {M, N2}, s1[2] = {M, K1};
    int64_t sw1[2] = {N1, K}, sw2[2] = {N2, N1}, sw3[2] = {N2, K1 + N1}, sb1[1] = {N1};
    void *w1 = cf_weight(FK_BF16, N1 * K, 2.0f / sqrtf((float)K));
    void *b1 = cf_weight(FK_BF16, N1, 0.5f);
    void *w2 = cf_weight(FK_BF16, N2 * N1, 2.0f / sqrtf((float)N1));
    void *w3 = cf_weight(FK_BF16, N2 * (K1 + N1), 2.0f / sqrtf((float)(K1 + N1)));
    fk_tensor tw1 = cf_host(FK_BF16, w1, 2, sw1), tb1 = cf_host(FK_BF16, b1, 1, sb1);
    fk_tensor tw2 = cf_host(FK_BF16, w2, 2, sw2), tw3 = cf_host(FK_BF16, w3, 2, sw3);
    fk_tensor qt = fk_tensor_view(FK_BF16, NULL, 2, sh), qx = fk_tensor_view(FK_F32, NULL, 2, sx);
    fk_tensor qo = fk_tensor_view(FK_F32, NULL, 2, so), q1 = fk_tensor_view(FK_F32, NULL, 2, s1);
    qt.layout = FK_LAYOUT_TILES;
    qt.device = qx.device = qo.device = q1.device = tg->be->device;
    const fk_tensor *p1[4] = {&qt, &qx, &tw1, &tb1}, *p2[4] = {&qo, &qt, &tw2, NULL};
    const fk_tensor *p3[5] = {&qo, &q1, &qt, &tw3, NULL}, *pn[4] = {&qt, &qx, &qx, &qx};
    const bool ok = tg->be->supports(tg->be, FK_OP_LINEAR_ACT, p1, 4) &&
                    tg->be->supports(tg->be, FK_OP_LINEAR, p2, 4) &&
                    tg->be->supports(tg->be, FK_OP_LINEAR_CAT, p3, 5);
    /* no elementwise op takes a tiled tensor (rmsnorm_rope, gated_add), nor
     * linear_cat a tiled part that does not start or end a K block */
    const fk_tensor *p4[4] = {&qt, &qt, NULL, &qx}, *p5[3] = {&qt, &qt, &qx};
    CHECKF(!tg->be->supports(tg->be, FK_OP_RMSNORM_ROPE, p4, 4) &&
               !tg->be->supports(tg->be, FK_OP_GATED_ADD, p5, 3),
           "%s: a tiled elementwise operand", tg->name);
    int64_t s1o[2] = {M, K1 + 1};
    fk_tensor q1o = fk_tensor_view(FK_F32, NULL, 2, s1o);
    q1o.device = tg->be->device;
    const fk_tensor *p6[5] = {&qo, &q1o, &qt, &tw3, NULL};
    CHECKF(!tg->be->supports(tg->be, FK_OP_LINEAR_CAT, p6, 5), "%s: tiled x2 mid K block",
           tg->name);
    (void)pn;
    if (ok) {
        float *x = cf_rand(M * K, -1, 1), *x1 = cf_rand(M * K1, -1, 1);
        float *o_r = cf_alloc(M * N2), *o_t = cf_alloc(M * N2);
        uint16_t *h_r = fk_alloc((size_t)(M * N1) * 2);
        fk_tensor dx = cf_dev_f32(tg, x, 2, sx), d1 = cf_dev_f32(tg, x1, 2, s1);
        fk_tensor dhr = cf_dev(tg, FK_BF16, NULL, 2, sh), dht = cf_dev_tiles(tg, M, N1);
        fk_tensor dor = cf_dev_f32(tg, NULL, 2, so), dot = cf_dev_f32(tg, NULL, 2, so);
        const size_t tb = fk_tensor_nbytes(&dht);
        uint16_t *h_t = fk_alloc(tb);
        const int64_t Mp = (M + 31) / 32 * 32, Np = (N1 + 31) / 32 * 32;
        char what[96];
        snprintf(what, sizeof(what), "tiled, M=%lld K=%lld N1=%lld N2=%lld K1=%lld", (long long)M,
                 (long long)K, (long long)N1, (long long)N2, (long long)K1);
        for (int multi = 0; multi < 2; multi++) { /* the tiled y of linear_act, linear_multi */
            memset(h_t, 0xff, tb); /* NaN everywhere first: padding left unwritten shows */
            tg->be->upload(tg->be, dht.data, h_t, tb);
            if (multi) { /* the tiled and the row-major hidden state from one x */
                fk_tensor *ys[2] = {&dht, &dhr};
                const fk_tensor *ws[2] = {&tw1, &tw1}, *bs[2] = {&tb1, &tb1};
                const fk_act acts[2] = {FK_ACT_GELU_TANH, FK_ACT_GELU_TANH};
                fk_backend_linear_multi(tg->be, 2, ys, &dx, ws, bs, acts);
            } else {
                tg->be->linear_act(tg->be, &dhr, &dx, &tw1, &tb1, FK_ACT_GELU_TANH);
                tg->be->linear_act(tg->be, &dht, &dx, &tw1, &tb1, FK_ACT_GELU_TANH);
            }
            cf_get(tg, h_r, &dhr);
            cf_get(tg, h_t, &dht);
            bool same = true, pad0 = true;
            for (int64_t m = 0; m < Mp; m++)
                for (int64_t k = 0; k < Np; k++) {
                    const uint16_t v = h_t[fk_tensor_tile_offset(m, k, Mp, Np)];
                    if (m < M && k < N1) same = same && v == h_r[m * N1 + k];
                    else if (m < M) pad0 = pad0 && v == 0;
                }
            CHECKF(same && pad0, "%s: %s %s: the tiled y is not the row-major bf16 y%s",
                   tg->name, multi ? "linear_multi" : "linear_act", what,
                   pad0 ? "" : " (padding columns not zero)");
            cf_runs[FK_OP_LINEAR_ACT]++;
            if (!(same && pad0)) cf_fails[FK_OP_LINEAR_ACT]++;
        }
        /* the consumers: linear on x, linear_cat on [x1 | x2], tiled against rows */
        tg->be->linear(tg->be, &dor, &dhr, &tw2, NULL);
        tg->be->linear(tg->be, &dot, &dht, &tw2, NULL);
        cf_get(tg, o_r, &dor);
        cf_get(tg, o_t, &dot);
        cf_compare_bits(tg, FK_OP_LINEAR, what, o_t, o_r, (size_t)(M * N2) * 4);
        int64_t sj[2] = {M, K1 + N1};
        fk_tensor dj = cf_dev_f32(tg, NULL, 2, sj);
        tg->be->linear_cat(tg->be, &dor, &d1, &dhr, &tw3, NULL, &dj);
        tg->be->linear_cat(tg->be, &dot, &d1, &dht, &tw3, NULL, &dj);
        cf_get(tg, o_r, &dor);
        cf_get(tg, o_t, &dot);
        cf_compare_bits(tg, FK_OP_LINEAR_CAT, what, o_t, o_r, (size_t)(M * N2) * 4);
        fk_tensor *dev[7] = {&dx, &d1, &dhr, &dht, &dor, &dot, &dj};
        for (int i = 0; i < 7; i++) cf_free(tg, dev[i]);
        fk_free(x), fk_free(x1), fk_free(o_r), fk_free(o_t), fk_free(h_r), fk_free(h_t);
    }
    cf_uncache(tg);
    fk_free(w1), fk_free(b1), fk_free(w2), fk_free(w3);
    return ok;
}

/* Tiled against row-major on the host: t (tiled, M × N) holds r (M, N bf16)
 * and zeros in its padding columns (rows past M are not looked at). */
static bool cf_tiled_is(const uint16_t *t, const uint16_t *r, int64_t M, int64_t N) {
    const int64_t Mp = (M + 31) / 32 * 32, Np = (N + 31) / 32 * 32;
    bool ok = true;
    for (int64_t m = 0; m < M; m++)
        for (int64_t k = 0; k < Np; k++)
            ok = ok && t[fk_tensor_tile_offset(m, k, Mp, Np)] == (k < N ? r[m * N + k] : 0);
    return ok;
}

/* The other producers of tiled bf16 activations — layernorm_modulate's y
 * and attention's out — against the same calls writing row-major bf16, and
 * linear_cat on [attention out | norm out] and linear_multi on the norm out
 * with each part tiled or not: bit for bit (FLUX's single block). Returns
 * whether the target took them. */
static bool cf_tiles_producers(const cf_target *tg, int64_t M, int64_t C, int64_t H, int64_t D,
                               int64_t N) {
    const int64_t HD = H * D, K = HD + C;
    int64_t sa[2] = {M, HD}, sq[3] = {M, H, D}, sc[2] = {M, C}, sv[2] = {1, C}, so[2] = {M, N};
    int64_t sw[2] = {N, K}, sw2[2] = {N, C};
    fk_tensor qa = fk_tensor_view(FK_BF16, NULL, 2, sa), qn = fk_tensor_view(FK_BF16, NULL, 2, sc);
    fk_tensor qq = fk_tensor_view(FK_F32, NULL, 3, sq), qx = fk_tensor_view(FK_F32, NULL, 2, sc);
    fk_tensor qv = fk_tensor_view(FK_F32, NULL, 2, sv), qo = fk_tensor_view(FK_F32, NULL, 2, so);
    qa.layout = qn.layout = FK_LAYOUT_TILES;
    qa.device = qn.device = qq.device = qx.device = qv.device = qo.device = tg->be->device;
    void *w = cf_weight(FK_BF16, N * K, 2.0f / sqrtf((float)K));
    void *w2 = cf_weight(FK_BF16, N * C, 2.0f / sqrtf((float)C));
    fk_tensor tw = cf_host(FK_BF16, w, 2, sw), tw2 = cf_host(FK_BF16, w2, 2, sw2);
    const fk_tensor *pa[5] = {&qa, &qq, &qq, &qq, NULL}, *pn[4] = {&qn, &qx, &qv, &qv};
    const fk_tensor *pc[5] = {&qo, &qa, &qn, &tw, NULL}, *pl[4] = {&qo, &qn, &tw2, NULL};
    const bool ok = tg->be->supports(tg->be, FK_OP_ATTENTION, pa, 5) &&
                    tg->be->supports(tg->be, FK_OP_LAYERNORM_MODULATE, pn, 4) &&
                    tg->be->supports(tg->be, FK_OP_LINEAR_CAT, pc, 5) &&
                    tg->be->supports(tg->be, FK_OP_LINEAR_ACT, pl, 4);
    if (ok) {
        float *q = cf_rand(M * HD, -2, 2), *k = cf_rand(M * HD, -1, 1);
        float *v = cf_rand(M * HD, -1, 1), *x = cf_rand(M * C, -1, 3);
        float *sh = cf_rand(C, -1, 1), *scl = cf_rand(C, -1, 1);
        fk_tensor dq = cf_dev_f32(tg, q, 3, sq), dk = cf_dev_f32(tg, k, 3, sq);
        fk_tensor dv = cf_dev_f32(tg, v, 3, sq), dx = cf_dev_f32(tg, x, 2, sc);
        fk_tensor dsh = cf_dev_f32(tg, sh, 2, sv), dsc = cf_dev_f32(tg, scl, 2, sv);
        fk_tensor dar = cf_dev(tg, FK_BF16, NULL, 2, sa), dat = cf_dev_tiles(tg, M, HD);
        fk_tensor dnr = cf_dev(tg, FK_BF16, NULL, 2, sc), dnt = cf_dev_tiles(tg, M, C);
        const size_t at = fk_tensor_nbytes(&dat), nt = fk_tensor_nbytes(&dnt);
        const size_t tmax = at > nt ? at : nt;
        uint16_t *hr = fk_alloc((size_t)(M * (HD > C ? HD : C)) * 2), *ht = fk_alloc(tmax);
        char what[96];
        snprintf(what, sizeof(what), "tiled, M=%lld C=%lld H=%lld D=%lld N=%lld", (long long)M,
                 (long long)C, (long long)H, (long long)D, (long long)N);
        memset(ht, 0xff, tmax); /* NaN first: padding left unwritten shows */
        tg->be->upload(tg->be, dat.data, ht, at);
        tg->be->upload(tg->be, dnt.data, ht, nt);
        const float scale = 1.0f / sqrtf((float)D);
        tg->be->attention(tg->be, &dar, &dq, &dk, &dv, NULL, scale, false);
        tg->be->attention(tg->be, &dat, &dq, &dk, &dv, NULL, scale, false);
        cf_get(tg, hr, &dar);
        cf_get(tg, ht, &dat);
        CHECKF(cf_tiled_is(ht, hr, M, HD), "%s attention: %s: tiled out differs", tg->name, what);
        tg->be->layernorm_modulate(tg->be, &dnr, &dx, &dsh, &dsc, 1e-6f);
        tg->be->layernorm_modulate(tg->be, &dnt, &dx, &dsh, &dsc, 1e-6f);
        cf_get(tg, hr, &dnr);
        cf_get(tg, ht, &dnt);
        CHECKF(cf_tiled_is(ht, hr, M, C), "%s layernorm_modulate: %s: tiled y differs", tg->name,
               what);
        cf_runs[FK_OP_ATTENTION]++, cf_runs[FK_OP_LAYERNORM_MODULATE]++;
        /* consumers: each tiled / row-major combination against rows only */
        float *want = cf_alloc(M * N), *got = cf_alloc(M * N);
        int64_t sj[2] = {M, K};
        fk_tensor dy = cf_dev_f32(tg, NULL, 2, so), dy2 = cf_dev_f32(tg, NULL, 2, so);
        fk_tensor dj = cf_dev_f32(tg, NULL, 2, sj);
        tg->be->linear_cat(tg->be, &dy, &dar, &dnr, &tw, NULL, &dj);
        cf_get(tg, want, &dy);
        for (int c = 1; c < 4; c++) {
            tg->be->linear_cat(tg->be, &dy, c & 1 ? &dat : &dar, c & 2 ? &dnt : &dnr, &tw, NULL,
                               &dj);
            cf_get(tg, got, &dy);
            cf_compare_bits(tg, FK_OP_LINEAR_CAT, what, got, want, (size_t)(M * N) * 4);
        }
        /* linear_multi on the tiled norm output */
        fk_tensor *ys[2] = {&dy, &dy2};
        const fk_tensor *ws[2] = {&tw2, &tw2}, *bs[2] = {NULL, NULL};
        const fk_act acts[2] = {FK_ACT_NONE, FK_ACT_GELU_TANH};
        tg->be->linear(tg->be, &dy, &dnr, &tw2, NULL);
        cf_get(tg, want, &dy);
        fk_backend_linear_multi(tg->be, 2, ys, &dnt, ws, bs, acts);
        cf_get(tg, got, &dy);
        cf_compare_bits(tg, FK_OP_LINEAR, what, got, want, (size_t)(M * N) * 4);
        fk_tensor *dev[] = {&dq, &dk, &dv, &dx, &dsh, &dsc, &dar, &dat, &dnr, &dnt, &dy, &dy2, &dj};
        for (size_t i = 0; i < sizeof(dev) / sizeof(dev[0]); i++) cf_free(tg, dev[i]);
        fk_free(q), fk_free(k), fk_free(v), fk_free(x), fk_free(sh), fk_free(scl);
        fk_free(hr), fk_free(ht), fk_free(want), fk_free(got);
    }
    cf_uncache(tg);
    fk_free(w), fk_free(w2);
    return ok;
}

/* Weight cache: linear before caching, after cache_weight, after
 * uncache_weights, and (device backends) with the weight already on the
 * device, and after release_scratch: the same bits every time. */
static void cf_weight_cache(const cf_target *tg) {
    const int64_t M = 64, K = 256, N = 192;
    float *x = cf_rand(M * K, -1, 1);
    void *w = cf_weight(FK_BF16, N * K, 0.1f);
    float *y0 = cf_alloc(M * N), *y1 = cf_alloc(M * N);
    int64_t sx[2] = {M, K}, sy[2] = {M, N}, sw[2] = {N, K};
    fk_tensor tw = cf_host(FK_BF16, w, 2, sw);
    fk_tensor dx = cf_dev_f32(tg, x, 2, sx), dy = cf_dev_f32(tg, NULL, 2, sy);
    fk_backend *be = tg->be;
    be->uncache_weights(be);
    be->linear(be, &dy, &dx, &tw, NULL); /* CUDA: cached on first use */
    cf_get(tg, y0, &dy);
    size_t bytes = be->cache_weight(be, &tw);
    be->linear(be, &dy, &dx, &tw, NULL);
    cf_get(tg, y1, &dy);
    cf_compare_bits(tg, FK_OP_LINEAR, "after cache_weight", y1, y0, (size_t)(M * N) * 4);
    if (cf_real_cuda(be)) {
        CHECKF(bytes == (size_t)(N * K) * 2 && fk_backend_cuda_weight_bytes(be) >= bytes,
               "%s: cache_weight returned %zu bytes (expected %lld), backend holds %zu", tg->name,
               bytes, (long long)(N * K * 2), fk_backend_cuda_weight_bytes(be));
    }
    if (cf_real_cuda(be)) { /* memory accounting: x, y, the weight, scratch */
        uint64_t now = 0, peak = 0;
        fk_backend_cuda_memory(be, &now, &peak);
        const uint64_t least = (uint64_t)(M * K + M * N) * 4 + (uint64_t)bytes;
        CHECKF(now >= least && peak >= now && fk_backend_cuda_scratch_bytes(be) > 0,
               "%s: device memory now %llu, peak %llu, expected at least %llu", tg->name,
               (unsigned long long)now, (unsigned long long)peak, (unsigned long long)least);
    }
    if (be->release_scratch) { /* scratch freed between ops grows again: the same bits */
        const size_t before = fk_backend_cuda_scratch_bytes(be);
        be->release_scratch(be);
        if (cf_real_cuda(be))
            CHECKF(fk_backend_cuda_scratch_bytes(be) < before, "%s: scratch %zu bytes after release_scratch, %zu "
                   "before", tg->name, fk_backend_cuda_scratch_bytes(be), before);
        be->linear(be, &dy, &dx, &tw, NULL);
        cf_get(tg, y1, &dy);
        cf_compare_bits(tg, FK_OP_LINEAR, "after release_scratch", y1, y0, (size_t)(M * N) * 4);
    }
    be->uncache_weights(be);
    if (cf_real_cuda(be))
        CHECKF(fk_backend_cuda_weight_bytes(be) == 0, "%s: %zu weight bytes after uncache_weights",
               tg->name, fk_backend_cuda_weight_bytes(be));
    be->linear(be, &dy, &dx, &tw, NULL);
    cf_get(tg, y1, &dy);
    cf_compare_bits(tg, FK_OP_LINEAR, "after uncache_weights", y1, y0, (size_t)(M * N) * 4);
    if (be->device != FK_DEVICE_CPU) { /* the weight as a device tensor */
        fk_tensor dw = cf_dev(tg, FK_BF16, w, 2, sw);
        be->linear(be, &dy, &dx, &dw, NULL);
        cf_get(tg, y1, &dy);
        cf_compare_bits(tg, FK_OP_LINEAR, "device weight", y1, y0, (size_t)(M * N) * 4);
        cf_free(tg, &dw);
    }
    be->uncache_weights(be);
    cf_free(tg, &dx);
    cf_free(tg, &dy);
    fk_free(x);
    fk_free(w);
    fk_free(y0);
    fk_free(y1);
}

/* ---- attention ---- */

/* bias_mode: 0 none, 1 random, 2 random with row 0 of head 0 all -inf.
 * misalign: out starts 4 bytes into its buffer (CUDA: not 8-byte aligned, so
 * the flash kernel's float2 stores are ruled out and bf16 mode takes the
 * two-product path). */
static void cf_attention_at(const cf_target *tg, int64_t Lq, int64_t Lk, int64_t H, int64_t D,
                            int bias_mode, bool causal, bool misalign) {
    const float qs = 3.0f; /* scores of a few units: a non-flat softmax */
    float *q = cf_rand(Lq * H * D, -qs, qs), *k = cf_rand(Lk * H * D, -1, 1);
    float *v = cf_rand(Lk * H * D, -1, 1);
    float *bias = bias_mode ? cf_rand(H * Lq * Lk, -2, 2) : NULL;
    if (bias_mode == 2)
        for (int64_t j = 0; j < Lk; j++) bias[j] = -INFINITY;
    float *ref = cf_alloc(Lq * H * D), *got = cf_alloc(Lq * H * D);
    int64_t sq[3] = {Lq, H, D}, sk[3] = {Lk, H, D}, so[2] = {Lq, H * D}, sb[3] = {H, Lq, Lk};
    const float scale = 1.0f / sqrtf((float)D);
    fk_tensor hq = cf_host(FK_F32, q, 3, sq), hk = cf_host(FK_F32, k, 3, sk);
    fk_tensor hv = cf_host(FK_F32, v, 3, sk), ho = cf_host(FK_F32, ref, 2, so);
    fk_tensor hb = cf_host(FK_F32, bias, 3, sb);
    cf_ref->attention(cf_ref, &ho, &hq, &hk, &hv, bias ? &hb : NULL, scale, causal);
    fk_tensor dq = cf_dev_f32(tg, q, 3, sq), dk = cf_dev_f32(tg, k, 3, sk);
    fk_tensor dv = cf_dev_f32(tg, v, 3, sk);
    /* out: (Lq, H·D), one float further into a buffer one float longer when misaligned */
    int64_t so1[2] = {1, Lq * H * D + 1};
    fk_tensor dbuf = cf_dev_f32(tg, NULL, 2, so1), dout = dbuf;
    dout.ndim = 2, dout.shape[0] = so[0], dout.shape[1] = so[1];
    if (misalign) dout.data = (float *)dbuf.data + 1;
    fk_tensor db = bias ? cf_dev_f32(tg, bias, 3, sb) : hb;
    tg->be->attention(tg->be, &dout, &dq, &dk, &dv, bias ? &db : NULL, scale, causal);
    cf_get(tg, got, &dout);
    char what[112];
    snprintf(what, sizeof(what), "Lq=%lld Lk=%lld H=%lld D=%lld bias %d causal %d%s", (long long)Lq,
             (long long)Lk, (long long)H, (long long)D, bias_mode, (int)causal,
             misalign ? " out misaligned" : "");
    cf_compare(tg, FK_OP_ATTENTION, what, got, ref, Lq * H * D, tg->tol_att);
    if (bias_mode == 2) { /* the fully masked row: exact zeros */
        bool zero = true;
        for (int64_t d = 0; d < D; d++) zero = zero && got[d] == 0.0f;
        CHECKF(zero, "%s attention: %s: fully masked row is not 0", tg->name, what);
    }
    cf_free(tg, &dq);
    cf_free(tg, &dk);
    cf_free(tg, &dv);
    cf_free(tg, &dbuf);
    if (bias) cf_free(tg, &db);
    fk_free(q);
    fk_free(k);
    fk_free(v);
    fk_free(bias);
    fk_free(ref);
    fk_free(got);
}

static void cf_attention(const cf_target *tg, int64_t Lq, int64_t Lk, int64_t H, int64_t D,
                         int bias_mode, bool causal) {
    cf_attention_at(tg, Lq, Lk, H, D, bias_mode, causal, false);
}

/* ---- conv2d, group_norm, upsample ---- */

static void cf_conv2d(const cf_target *tg, int64_t B, int64_t Ci, int64_t H, int64_t W, int64_t Co,
                      int64_t kh, int64_t kw, int stride, const int pad[4], fk_dtype wdt,
                      bool has_bias) {
    const int64_t Ho = (H + pad[0] + pad[2] - kh) / stride + 1;
    const int64_t Wo = (W + pad[1] + pad[3] - kw) / stride + 1;
    const int64_t K = Ci * kh * kw;
    float *x = cf_rand(B * Ci * H * W, -1, 1);
    void *w = cf_weight(wdt, Co * K, 2.0f / sqrtf((float)K));
    void *b = has_bias ? cf_weight(FK_F32, Co, 0.5f) : NULL;
    float *ref = cf_alloc(B * Co * Ho * Wo), *got = cf_alloc(B * Co * Ho * Wo);
    int64_t sx[4] = {B, Ci, H, W}, sy[4] = {B, Co, Ho, Wo}, sw[4] = {Co, Ci, kh, kw}, sb[1] = {Co};
    fk_tensor hx = cf_host(FK_F32, x, 4, sx), hy = cf_host(FK_F32, ref, 4, sy);
    fk_tensor tw = cf_host(wdt, w, 4, sw), tb = cf_host(FK_F32, b, 1, sb);
    cf_ref->conv2d(cf_ref, &hy, &hx, &tw, has_bias ? &tb : NULL, stride, pad);
    fk_tensor dx = cf_dev_f32(tg, x, 4, sx), dy = cf_dev_f32(tg, NULL, 4, sy);
    tg->be->conv2d(tg->be, &dy, &dx, &tw, has_bias ? &tb : NULL, stride, pad);
    cf_get(tg, got, &dy);
    char what[128];
    snprintf(what, sizeof(what), "B=%lld Ci=%lld %lldx%lld Co=%lld k%lldx%lld s%d pad %d,%d,%d,%d %s",
             (long long)B, (long long)Ci, (long long)H, (long long)W, (long long)Co, (long long)kh,
             (long long)kw, stride, pad[0], pad[1], pad[2], pad[3], fk_dtype_name(wdt));
    cf_compare(tg, FK_OP_CONV2D, what, got, ref, B * Co * Ho * Wo, tg->tol_prod);
    cf_free(tg, &dx);
    cf_free(tg, &dy);
    cf_uncache(tg);
    fk_free(x);
    fk_free(w);
    fk_free(b);
    fk_free(ref);
    fk_free(got);
}

/* x in [off − 2, off + 3): a non-zero mean; off ≫ 1 makes |mean| ≫ std, where
 * statistics summed in f32 drift from the reference's double ones */
static void cf_group_norm(const cf_target *tg, int64_t B, int64_t C, int64_t H, int64_t W,
                          int groups, bool affine, float off) {
    const int64_t n = B * C * H * W;
    float *x = cf_rand(n, off - 2, off + 3);
    void *w = affine ? cf_weight(FK_BF16, C, 1.5f) : NULL;
    void *b = affine ? cf_weight(FK_F16, C, 0.5f) : NULL;
    float *ref = cf_alloc(n), *got = cf_alloc(n);
    int64_t sx[4] = {B, C, H, W}, sc[1] = {C};
    fk_tensor hx = cf_host(FK_F32, x, 4, sx), hy = cf_host(FK_F32, ref, 4, sx);
    fk_tensor tw = cf_host(FK_BF16, w, 1, sc), tb = cf_host(FK_F16, b, 1, sc);
    cf_ref->group_norm(cf_ref, &hy, &hx, groups, affine ? &tw : NULL, affine ? &tb : NULL, 1e-6f);
    fk_tensor dx = cf_dev_f32(tg, x, 4, sx), dy = cf_dev_f32(tg, NULL, 4, sx);
    tg->be->group_norm(tg->be, &dy, &dx, groups, affine ? &tw : NULL, affine ? &tb : NULL, 1e-6f);
    cf_get(tg, got, &dy);
    char what[96];
    snprintf(what, sizeof(what), "B=%lld C=%lld %lldx%lld groups %d affine %d offset %g",
             (long long)B, (long long)C, (long long)H, (long long)W, groups, (int)affine,
             (double)off);
    cf_compare(tg, FK_OP_GROUP_NORM, what, got, ref, n, TOL_EW);
    cf_free(tg, &dx);
    cf_free(tg, &dy);
    cf_uncache(tg);
    fk_free(x);
    fk_free(w);
    fk_free(b);
    fk_free(ref);
    fk_free(got);
}

static void cf_upsample(const cf_target *tg, int64_t B, int64_t C, int64_t H, int64_t W) {
    float *x = cf_rand(B * C * H * W, -1, 1);
    float *ref = cf_alloc(B * C * 4 * H * W), *got = cf_alloc(B * C * 4 * H * W);
    int64_t sx[4] = {B, C, H, W}, sy[4] = {B, C, 2 * H, 2 * W};
    fk_tensor hx = cf_host(FK_F32, x, 4, sx), hy = cf_host(FK_F32, ref, 4, sy);
    cf_ref->upsample_nearest2x(cf_ref, &hy, &hx);
    fk_tensor dx = cf_dev_f32(tg, x, 4, sx), dy = cf_dev_f32(tg, NULL, 4, sy);
    tg->be->upsample_nearest2x(tg->be, &dy, &dx);
    cf_get(tg, got, &dy);
    cf_compare_bits(tg, FK_OP_UPSAMPLE_NEAREST2X, "B=2 C=3 5x7", got, ref,
                    (size_t)(B * C * 4 * H * W) * 4);
    cf_free(tg, &dx);
    cf_free(tg, &dy);
    fk_free(x);
    fk_free(ref);
    fk_free(got);
}

/* ---- norms ---- */

/* x in [off − 1, off + 2): off = 1000 puts |mean| / std at ~3500 (an offset
 * row: the reference's double statistics and double (x − mean)·rstd matter) */
static void cf_layernorm(const cf_target *tg, int64_t M, int64_t C, bool affine, float off) {
    float *x = cf_rand(M * C, off - 1, off + 2);
    void *w = affine ? cf_weight(FK_BF16, C, 2.0f) : NULL;
    void *b = affine ? cf_weight(FK_F32, C, 1.0f) : NULL;
    float *ref = cf_alloc(M * C), *got = cf_alloc(M * C);
    int64_t s[2] = {M, C}, sc[1] = {C};
    fk_tensor hx = cf_host(FK_F32, x, 2, s), hy = cf_host(FK_F32, ref, 2, s);
    fk_tensor tw = cf_host(FK_BF16, w, 1, sc), tb = cf_host(FK_F32, b, 1, sc);
    cf_ref->layernorm(cf_ref, &hy, &hx, affine ? &tw : NULL, affine ? &tb : NULL, 1e-6f);
    fk_tensor dx = cf_dev_f32(tg, x, 2, s), dy = cf_dev_f32(tg, NULL, 2, s);
    tg->be->layernorm(tg->be, &dy, &dx, affine ? &tw : NULL, affine ? &tb : NULL, 1e-6f);
    cf_get(tg, got, &dy);
    char what[64];
    snprintf(what, sizeof(what), "M=%lld C=%lld affine %d offset %g", (long long)M, (long long)C,
             (int)affine, (double)off);
    cf_compare(tg, FK_OP_LAYERNORM, what, got, ref, M * C, TOL_EW);
    /* in place (y aliases x) */
    tg->be->layernorm(tg->be, &dx, &dx, affine ? &tw : NULL, affine ? &tb : NULL, 1e-6f);
    cf_get(tg, got, &dx);
    cf_compare(tg, FK_OP_LAYERNORM, "in place", got, ref, M * C, TOL_EW);
    cf_free(tg, &dx);
    cf_free(tg, &dy);
    cf_uncache(tg);
    fk_free(x);
    fk_free(w);
    fk_free(b);
    fk_free(ref);
    fk_free(got);
}

static void cf_rmsnorm(const cf_target *tg, int64_t M, int64_t C, fk_dtype sdt) {
    float *x = cf_rand(M * C, -2, 1);
    void *sc = cf_weight(sdt, C, 2.0f);
    float *ref = cf_alloc(M * C), *got = cf_alloc(M * C);
    int64_t s[2] = {M, C}, ss[1] = {C};
    fk_tensor hx = cf_host(FK_F32, x, 2, s), hy = cf_host(FK_F32, ref, 2, s);
    fk_tensor ts = cf_host(sdt, sc, 1, ss);
    cf_ref->rmsnorm(cf_ref, &hy, &hx, &ts, 1e-6f);
    fk_tensor dx = cf_dev_f32(tg, x, 2, s), dy = cf_dev_f32(tg, NULL, 2, s);
    tg->be->rmsnorm(tg->be, &dy, &dx, &ts, 1e-6f);
    cf_get(tg, got, &dy);
    char what[64];
    snprintf(what, sizeof(what), "M=%lld C=%lld scale %s", (long long)M, (long long)C,
             fk_dtype_name(sdt));
    cf_compare(tg, FK_OP_RMSNORM, what, got, ref, M * C, TOL_EW);
    cf_free(tg, &dx);
    cf_free(tg, &dy);
    cf_uncache(tg);
    fk_free(x);
    fk_free(sc);
    fk_free(ref);
    fk_free(got);
}

static void cf_layernorm_modulate(const cf_target *tg, int64_t B, int64_t T, int64_t C,
                                  float off) {
    const int64_t R = B * T;
    float *x = cf_rand(R * C, off - 1, off + 2), *sh = cf_rand(B * C, -1, 1);
    float *sc = cf_rand(B * C, -1, 1);
    float *ref = cf_alloc(R * C), *got = cf_alloc(R * C);
    int64_t s[2] = {R, C}, sv[2] = {B, C};
    fk_tensor hx = cf_host(FK_F32, x, 2, s), hy = cf_host(FK_F32, ref, 2, s);
    fk_tensor hsh = cf_host(FK_F32, sh, 2, sv), hsc = cf_host(FK_F32, sc, 2, sv);
    cf_ref->layernorm_modulate(cf_ref, &hy, &hx, &hsh, &hsc, 1e-6f);
    fk_tensor dx = cf_dev_f32(tg, x, 2, s), dy = cf_dev_f32(tg, NULL, 2, s);
    fk_tensor dsh = cf_dev_f32(tg, sh, 2, sv), dsc = cf_dev_f32(tg, sc, 2, sv);
    tg->be->layernorm_modulate(tg->be, &dy, &dx, &dsh, &dsc, 1e-6f);
    cf_get(tg, got, &dy);
    char what[64];
    snprintf(what, sizeof(what), "B=%lld T=%lld C=%lld offset %g", (long long)B, (long long)T,
             (long long)C, (double)off);
    cf_compare(tg, FK_OP_LAYERNORM_MODULATE, what, got, ref, R * C, TOL_EW);
    cf_free(tg, &dx);
    cf_free(tg, &dy);
    cf_free(tg, &dsh);
    cf_free(tg, &dsc);
    fk_free(x);
    fk_free(sh);
    fk_free(sc);
    fk_free(ref);
    fk_free(got);
}

/* A bf16 output yb (n) of op against its f32 reference ref: within one bf16
 * unit (rel L2 2^-8: a kernel may round its own f32 result, which differs
 * from the reference by f32 rounding); on the CPU targets bitwise the
 * reference rounded to nearest-even. */
static void cf_check_bf16_out(const cf_target *tg, fk_op op, const char *what, const uint16_t *yb,
                              const float *ref, int64_t n) {
    float *got = cf_alloc(n);
    uint16_t *rb = fk_alloc((size_t)(n > 0 ? n : 1) * 2);
    for (int64_t i = 0; i < n; i++) {
        got[i] = fk_bf16_to_f32(yb[i]);
        rb[i] = fk_f32_to_bf16(ref[i]);
    }
    cf_compare(tg, op, what, got, ref, n, 0x1p-8);
    if (!cf_real_cuda(tg->be)) cf_compare_bits(tg, op, what, yb, rb, (size_t)n * 2);
    fk_free(got);
    fk_free(rb);
}

/* layernorm_modulate with a bf16 y (bf16 activations, backend.h) where the
 * target says it takes one: the reference's f32 result rounded to bf16.
 * Tolerance: every value within one bf16 unit (2^-8 relative) of the
 * reference, so a rel L2 of 2^-8 (the rounding alone gives ~2^-9/√3); the
 * CPU code (CPU and devsim targets) rounds the same f32 values with the
 * products' instruction: bitwise the reference rounded to nearest-even.
 * Returns whether the target took it. */
static bool cf_layernorm_modulate_bf16(const cf_target *tg, int64_t B, int64_t T, int64_t C,
                                       float off) {
    const int64_t R = B * T;
    int64_t s[2] = {R, C}, sv[2] = {B, C};
    fk_tensor qy = fk_tensor_view(FK_BF16, NULL, 2, s), qx = fk_tensor_view(FK_F32, NULL, 2, s);
    fk_tensor qv = fk_tensor_view(FK_F32, NULL, 2, sv);
    qy.device = qx.device = qv.device = tg->be->device;
    const fk_tensor *q[4] = {&qy, &qx, &qv, &qv};
    if (!tg->be->supports(tg->be, FK_OP_LAYERNORM_MODULATE, q, 4)) return false;
    float *x = cf_rand(R * C, off - 1, off + 2), *sh = cf_rand(B * C, -1, 1);
    float *sc = cf_rand(B * C, -1, 1);
    float *ref = cf_alloc(R * C);
    uint16_t *yb = fk_alloc((size_t)(R * C) * 2);
    fk_tensor hx = cf_host(FK_F32, x, 2, s), hy = cf_host(FK_F32, ref, 2, s);
    fk_tensor hsh = cf_host(FK_F32, sh, 2, sv), hsc = cf_host(FK_F32, sc, 2, sv);
    cf_ref->layernorm_modulate(cf_ref, &hy, &hx, &hsh, &hsc, 1e-6f);
    fk_tensor dx = cf_dev_f32(tg, x, 2, s), dy = cf_dev(tg, FK_BF16, NULL, 2, s);
    fk_tensor dsh = cf_dev_f32(tg, sh, 2, sv), dsc = cf_dev_f32(tg, sc, 2, sv);
    tg->be->layernorm_modulate(tg->be, &dy, &dx, &dsh, &dsc, 1e-6f);
    cf_get(tg, yb, &dy);
    char what[80];
    snprintf(what, sizeof(what), "bf16 y, B=%lld T=%lld C=%lld offset %g", (long long)B,
             (long long)T, (long long)C, (double)off);
    cf_check_bf16_out(tg, FK_OP_LAYERNORM_MODULATE, what, yb, ref, R * C);
    fk_tensor *dev[4] = {&dx, &dy, &dsh, &dsc};
    for (int i = 0; i < 4; i++) cf_free(tg, dev[i]);
    fk_free(x), fk_free(sh), fk_free(sc), fk_free(ref), fk_free(yb);
    return true;
}

/* attention with a bf16 out (bf16 activations, backend.h) where the target
 * says it takes one: against the target's own f32 out (same call otherwise)
 * rounded to bf16, within one bf16 unit (rel L2 2^-8, as layernorm_modulate
 * above; a kernel that rounds its f32 accumulator directly may differ from
 * the f32 out by that unit); the CPU code bitwise. Returns whether the
 * target took it. */
static bool cf_attention_bf16_out(const cf_target *tg, int64_t L, int64_t H, int64_t D) {
    int64_t sq[3] = {L, H, D}, so[2] = {L, H * D};
    fk_tensor qo = fk_tensor_view(FK_BF16, NULL, 2, so), qq = fk_tensor_view(FK_F32, NULL, 3, sq);
    qo.device = qq.device = tg->be->device;
    const fk_tensor *qs[5] = {&qo, &qq, &qq, &qq, NULL};
    if (!tg->be->supports(tg->be, FK_OP_ATTENTION, qs, 5)) return false;
    const int64_t n = L * H * D;
    float *q = cf_rand(n, -3, 3), *k = cf_rand(n, -1, 1), *v = cf_rand(n, -1, 1);
    float *o32 = cf_alloc(n);
    uint16_t *ob = fk_alloc((size_t)n * 2);
    fk_tensor dq = cf_dev_f32(tg, q, 3, sq), dk = cf_dev_f32(tg, k, 3, sq);
    fk_tensor dv = cf_dev_f32(tg, v, 3, sq), df = cf_dev_f32(tg, NULL, 2, so);
    fk_tensor dbo = cf_dev(tg, FK_BF16, NULL, 2, so);
    const float scale = 1.0f / sqrtf((float)D);
    tg->be->attention(tg->be, &df, &dq, &dk, &dv, NULL, scale, false);
    tg->be->attention(tg->be, &dbo, &dq, &dk, &dv, NULL, scale, false);
    cf_get(tg, o32, &df);
    cf_get(tg, ob, &dbo);
    char what[80];
    snprintf(what, sizeof(what), "bf16 out, L=%lld H=%lld D=%lld", (long long)L, (long long)H,
             (long long)D);
    cf_check_bf16_out(tg, FK_OP_ATTENTION, what, ob, o32, n);
    fk_tensor *dev[5] = {&dq, &dk, &dv, &df, &dbo};
    for (int i = 0; i < 5; i++) cf_free(tg, dev[i]);
    fk_free(q), fk_free(k), fk_free(v), fk_free(o32), fk_free(ob);
    return true;
}

/* rmsnorm_rope with a bf16 y (bf16 activations: attention's q and k) where
 * the target takes one: against the f32 reference rounded, within one bf16
 * unit; the CPU code bitwise. Returns whether the target took it. */
static bool cf_rmsnorm_rope_bf16(const cf_target *tg, int64_t L, int64_t H, int64_t D) {
    const int64_t n = L * H * D;
    int64_t sx[3] = {L, H, D}, sp[4] = {L, D / 2, 2, 2}, ss[1] = {D};
    fk_tensor qy = fk_tensor_view(FK_BF16, NULL, 3, sx), qx = fk_tensor_view(FK_F32, NULL, 3, sx);
    fk_tensor qp = fk_tensor_view(FK_F32, NULL, 4, sp);
    qy.device = qx.device = qp.device = tg->be->device;
    const fk_tensor *q[4] = {&qy, &qx, NULL, &qp};
    if (!tg->be->supports(tg->be, FK_OP_RMSNORM_ROPE, q, 4)) return false;
    float *x = cf_rand(n, -2, 2), *pe = cf_rand(L * D * 2, -1, 1), *ref = cf_alloc(n);
    void *sc = cf_weight(FK_BF16, D, 2.0f);
    uint16_t *yb = fk_alloc((size_t)n * 2);
    fk_tensor hx = cf_host(FK_F32, x, 3, sx), hr = cf_host(FK_F32, ref, 3, sx);
    fk_tensor hp = cf_host(FK_F32, pe, 4, sp), ts = cf_host(FK_BF16, sc, 1, ss);
    cf_ref->rmsnorm_rope(cf_ref, &hr, &hx, &ts, &hp, 1e-6f);
    fk_tensor dx = cf_dev_f32(tg, x, 3, sx), dp = cf_dev_f32(tg, pe, 4, sp);
    fk_tensor dy = cf_dev(tg, FK_BF16, NULL, 3, sx);
    tg->be->rmsnorm_rope(tg->be, &dy, &dx, &ts, &dp, 1e-6f);
    cf_get(tg, yb, &dy);
    char what[64];
    snprintf(what, sizeof(what), "bf16 y, L=%lld H=%lld D=%lld", (long long)L, (long long)H,
             (long long)D);
    cf_check_bf16_out(tg, FK_OP_RMSNORM_ROPE, what, yb, ref, n);
    cf_free(tg, &dx), cf_free(tg, &dp), cf_free(tg, &dy);
    cf_uncache(tg);
    fk_free(x), fk_free(pe), fk_free(ref), fk_free(sc), fk_free(yb);
    return true;
}

/* attention on bf16 q, k, v (bf16 activations: the values it rounds its f32
 * q, k, v to) where the target takes them: bitwise the out of the same
 * call on the f32 q, k, v that round to them, on every target (a backend
 * that rounds nearest-even computes on the same operands). `mask`: which
 * of q, k, v (bits 0, 1, 2) go in bf16; obf: a bf16 out too. Returns whether
 * the target took it. */
static bool cf_attention_bf16_in(const cf_target *tg, int64_t L, int64_t H, int64_t D, int mask,
                                 bool obf) {
    const int64_t n = L * H * D;
    int64_t sq[3] = {L, H, D}, so[2] = {L, H * D};
    fk_tensor qo = fk_tensor_view(obf ? FK_BF16 : FK_F32, NULL, 2, so), qv[3];
    const fk_tensor *qs[5] = {&qo, &qv[0], &qv[1], &qv[2], NULL};
    for (int i = 0; i < 3; i++) {
        qv[i] = fk_tensor_view((mask >> i) & 1 ? FK_BF16 : FK_F32, NULL, 3, sq);
        qv[i].device = tg->be->device;
    }
    qo.device = tg->be->device;
    if (!tg->be->supports(tg->be, FK_OP_ATTENTION, qs, 5)) return false;
    float *h[3] = {cf_rand(n, -3, 3), cf_rand(n, -1, 1), cf_rand(n, -1, 1)};
    uint16_t *hb[3];
    fk_tensor d32[3], din[3];
    for (int i = 0; i < 3; i++) { /* f32 values that are exactly bf16, and their bf16 */
        hb[i] = fk_alloc((size_t)n * 2);
        fk_convert_from_f32(hb[i], FK_BF16, h[i], (size_t)n);
        fk_convert_to_f32(h[i], hb[i], FK_BF16, (size_t)n);
        d32[i] = cf_dev_f32(tg, h[i], 3, sq);
        din[i] = (mask >> i) & 1 ? cf_dev(tg, FK_BF16, hb[i], 3, sq) : d32[i];
    }
    const fk_dtype odt = obf ? FK_BF16 : FK_F32;
    fk_tensor dwant = cf_dev(tg, odt, NULL, 2, so), dgot = cf_dev(tg, odt, NULL, 2, so);
    const float scale = 1.0f / sqrtf((float)D);
    tg->be->attention(tg->be, &dwant, &d32[0], &d32[1], &d32[2], NULL, scale, false);
    tg->be->attention(tg->be, &dgot, &din[0], &din[1], &din[2], NULL, scale, false);
    const size_t nb = (size_t)n * fk_dtype_size(odt);
    void *want = fk_alloc(nb), *got = fk_alloc(nb);
    cf_get(tg, want, &dwant);
    cf_get(tg, got, &dgot);
    char what[96];
    snprintf(what, sizeof(what), "bf16 %s%s%s in%s, L=%lld H=%lld D=%lld", mask & 1 ? "q" : "",
             mask & 2 ? "k" : "", mask & 4 ? "v" : "", obf ? ", bf16 out" : "", (long long)L,
             (long long)H, (long long)D);
    cf_compare_bits(tg, FK_OP_ATTENTION, what, got, want, nb);
    for (int i = 0; i < 3; i++) {
        if ((mask >> i) & 1) cf_free(tg, &din[i]);
        cf_free(tg, &d32[i]);
        fk_free(h[i]), fk_free(hb[i]);
    }
    cf_free(tg, &dwant), cf_free(tg, &dgot);
    fk_free(want), fk_free(got);
    return true;
}

/* linear_rmsnorm_rope (FLUX's q and k projections): y (M, H·D) against the
 * reference's linear then rmsnorm_rope, within the product tolerance (the
 * norm and the rotation keep a row's relative error); on the CPU targets
 * bitwise the target's own linear then rmsnorm_rope (the op's contract).
 * Where the target takes them: a bf16 y (its f32 result rounded: within one
 * bf16 unit, the CPU bitwise) and a bf16 x (the CPU: bitwise the f32 x,
 * which its bf16 product rounds to the same values). The op is optional: a
 * target without it must decline it in supports(). Returns whether the
 * target has it. */
static bool cf_linear_rmsnorm_rope(const cf_target *tg, int64_t M, int64_t K, int64_t H,
                                   int64_t D, fk_dtype wdt, bool has_bias) {
    const fk_op op = FK_OP_LINEAR_RMSNORM_ROPE;
    const int64_t N = H * D;
    int64_t sx[2] = {M, K}, sy[2] = {M, N}, sw[2] = {N, K}, sb[1] = {N}, ss[1] = {D};
    int64_t sy3[3] = {M, H, D}, sp[4] = {M, D / 2, 2, 2};
    void *w = cf_weight(wdt, N * K, 2.0f / sqrtf((float)K)), *b = cf_weight(FK_BF16, N, 0.5f);
    void *sc = cf_weight(FK_BF16, D, 2.0f);
    fk_tensor tw = cf_host(wdt, w, 2, sw), tb = cf_host(FK_BF16, b, 1, sb);
    fk_tensor ts = cf_host(FK_BF16, sc, 1, ss);
    const fk_tensor *pb = has_bias ? &tb : NULL;
    fk_tensor qy = fk_tensor_view(FK_F32, NULL, 2, sy), qx = fk_tensor_view(FK_F32, NULL, 2, sx);
    fk_tensor qp = fk_tensor_view(FK_F32, NULL, 4, sp), qyb = qy, qxb = qx;
    qyb.dtype = qxb.dtype = FK_BF16;
    qy.device = qx.device = qp.device = qyb.device = qxb.device = tg->be->device;
    const fk_tensor *p[6] = {&qy, &qx, &tw, pb, &ts, &qp};
    const bool has = tg->be->linear_rmsnorm_rope != NULL, sup = tg->be->supports(tg->be, op, p, 6);
    char what[112];
    snprintf(what, sizeof(what), "M=%lld K=%lld H=%lld D=%lld w %s%s", (long long)M, (long long)K,
             (long long)H, (long long)D, fk_dtype_name(wdt), has_bias ? ", bias" : "");
    CHECKF(has == sup, "%s linear_rmsnorm_rope: %s: %s", tg->name, what,
           has ? "declined in supports()" : "supports() takes it but the table lacks it");
    if (has && sup) {
        const int64_t n = M * N;
        float *x = cf_rand(M * K, -1, 1), *pe = cf_rand(M * D * 2, -1, 1);
        float *ref = cf_alloc(n), *got = cf_alloc(n), *own = cf_alloc(n), *g2 = cf_alloc(n);
        uint16_t *xb = fk_alloc((size_t)(M * K) * 2), *yb = fk_alloc((size_t)n * 2);
        fk_tensor hx = cf_host(FK_F32, x, 2, sx), hy = cf_host(FK_F32, ref, 2, sy);
        fk_tensor hy3 = cf_host(FK_F32, ref, 3, sy3), hp = cf_host(FK_F32, pe, 4, sp);
        cf_ref->linear(cf_ref, &hy, &hx, &tw, pb);
        cf_ref->rmsnorm_rope(cf_ref, &hy3, &hy3, &ts, &hp, 1e-6f);
        fk_tensor dx = cf_dev_f32(tg, x, 2, sx), dp = cf_dev_f32(tg, pe, 4, sp);
        fk_tensor dy = cf_dev_f32(tg, NULL, 2, sy);
        tg->be->linear_rmsnorm_rope(tg->be, &dy, &dx, &tw, pb, &ts, &dp, 1e-6f);
        cf_get(tg, got, &dy);
        cf_compare(tg, op, what, got, ref, n, tg->tol_prod);
        if (!cf_real_cuda(tg->be)) { /* the target's own two ops */
            fk_tensor do_ = cf_dev_f32(tg, NULL, 2, sy), do3 = do_;
            do3.ndim = 3, do3.shape[0] = M, do3.shape[1] = H, do3.shape[2] = D;
            tg->be->linear(tg->be, &do_, &dx, &tw, pb);
            tg->be->rmsnorm_rope(tg->be, &do3, &do3, &ts, &dp, 1e-6f);
            cf_get(tg, own, &do_);
            cf_compare_bits(tg, op, what, got, own, (size_t)n * 4);
            cf_free(tg, &do_);
        }
        const fk_tensor *pyb[6] = {&qyb, &qx, &tw, pb, &ts, &qp};
        if (tg->be->supports(tg->be, op, pyb, 6)) { /* bf16 y: the f32 result rounded */
            fk_tensor dyb = cf_dev(tg, FK_BF16, NULL, 2, sy);
            tg->be->linear_rmsnorm_rope(tg->be, &dyb, &dx, &tw, pb, &ts, &dp, 1e-6f);
            cf_get(tg, yb, &dyb);
            char w2[140];
            snprintf(w2, sizeof(w2), "%s, bf16 y", what);
            cf_check_bf16_out(tg, op, w2, yb, got, n);
            cf_free(tg, &dyb);
        }
        const fk_tensor *pxb[6] = {&qy, &qxb, &tw, pb, &ts, &qp};
        if (tg->be->supports(tg->be, op, pxb, 6)) { /* bf16 x (x rounded) */
            for (int64_t i = 0; i < M * K; i++) xb[i] = fk_f32_to_bf16(x[i]);
            fk_tensor dxb = cf_dev(tg, FK_BF16, xb, 2, sx);
            tg->be->linear_rmsnorm_rope(tg->be, &dy, &dxb, &tw, pb, &ts, &dp, 1e-6f);
            cf_get(tg, g2, &dy);
            char w2[140];
            snprintf(w2, sizeof(w2), "%s, bf16 x", what);
            if (cf_real_cuda(tg->be))
                cf_compare(tg, op, w2, g2, ref, n, tg->tol_prod);
            else
                cf_compare_bits(tg, op, w2, g2, got, (size_t)n * 4);
            cf_free(tg, &dxb);
        }
        cf_free(tg, &dx), cf_free(tg, &dp), cf_free(tg, &dy);
        fk_free(x), fk_free(pe), fk_free(ref), fk_free(got), fk_free(own), fk_free(g2);
        fk_free(xb), fk_free(yb);
    }
    cf_uncache(tg);
    fk_free(w), fk_free(b), fk_free(sc);
    return has;
}

/* pe (L, D/2, 2, 2): random rotations-like entries (any 2×2 works) */
static void cf_rope_ops(const cf_target *tg, int64_t L, int64_t H, int64_t D, bool with_norm) {
    const fk_op op = with_norm ? FK_OP_RMSNORM_ROPE : FK_OP_ROPE;
    float *x = cf_rand(L * H * D, -2, 2), *pe = cf_rand(L * D * 2, -1, 1);
    void *sc = cf_weight(FK_BF16, D, 2.0f);
    float *ref = cf_alloc(L * H * D), *got = cf_alloc(L * H * D);
    memcpy(ref, x, (size_t)(L * H * D) * 4);
    int64_t sx[3] = {L, H, D}, sp[4] = {L, D / 2, 2, 2}, ss[1] = {D};
    fk_tensor hx = cf_host(FK_F32, ref, 3, sx), hp = cf_host(FK_F32, pe, 4, sp);
    fk_tensor ts = cf_host(FK_BF16, sc, 1, ss);
    if (with_norm)
        cf_ref->rmsnorm_rope(cf_ref, &hx, &hx, &ts, &hp, 1e-6f);
    else
        cf_ref->rope(cf_ref, &hx, &hp);
    fk_tensor dx = cf_dev_f32(tg, x, 3, sx), dp = cf_dev_f32(tg, pe, 4, sp);
    char what[64];
    snprintf(what, sizeof(what), "L=%lld H=%lld D=%lld", (long long)L, (long long)H, (long long)D);
    if (with_norm) { /* into a y of its own first (x unchanged), then in place */
        fk_tensor dy = cf_dev_f32(tg, NULL, 3, sx);
        tg->be->rmsnorm_rope(tg->be, &dy, &dx, &ts, &dp, 1e-6f);
        cf_get(tg, got, &dy);
        cf_free(tg, &dy);
        cf_compare(tg, op, what, got, ref, L * H * D, TOL_EW);
        cf_get(tg, got, &dx);
        CHECKF(memcmp(got, x, (size_t)(L * H * D) * 4) == 0, "%s rmsnorm_rope: %s: x changed",
               tg->name, what);
        tg->be->rmsnorm_rope(tg->be, &dx, &dx, &ts, &dp, 1e-6f);
    } else {
        tg->be->rope(tg->be, &dx, &dp);
    }
    cf_get(tg, got, &dx);
    cf_compare(tg, op, what, got, ref, L * H * D, TOL_EW);
    cf_free(tg, &dx);
    cf_free(tg, &dp);
    cf_uncache(tg);
    fk_free(x);
    fk_free(pe);
    fk_free(sc);
    fk_free(ref);
    fk_free(got);
}

static void cf_softmax(const cf_target *tg, int64_t M, int64_t C) {
    float *x = cf_rand(M * C, -8, 8);
    float *ref = cf_alloc(M * C), *got = cf_alloc(M * C);
    int64_t s[2] = {M, C};
    fk_tensor hx = cf_host(FK_F32, x, 2, s), hy = cf_host(FK_F32, ref, 2, s);
    cf_ref->softmax(cf_ref, &hy, &hx);
    fk_tensor dx = cf_dev_f32(tg, x, 2, s), dy = cf_dev_f32(tg, NULL, 2, s);
    tg->be->softmax(tg->be, &dy, &dx);
    cf_get(tg, got, &dy);
    char what[64];
    snprintf(what, sizeof(what), "M=%lld C=%lld", (long long)M, (long long)C);
    cf_compare(tg, FK_OP_SOFTMAX, what, got, ref, M * C, TOL_EW);
    cf_free(tg, &dx);
    cf_free(tg, &dy);
    fk_free(x);
    fk_free(ref);
    fk_free(got);
}

/* ---- elementwise ---- */

static void cf_activation(const cf_target *tg, fk_op op, int64_t n) {
    float *x = cf_rand(n, -8, 8);
    float *ref = cf_alloc(n), *got = cf_alloc(n);
    int64_t s[1] = {n};
    fk_tensor hx = cf_host(FK_F32, x, 1, s), hy = cf_host(FK_F32, ref, 1, s);
    fk_tensor dx = cf_dev_f32(tg, x, 1, s), dy = cf_dev_f32(tg, NULL, 1, s);
    fk_backend *be = tg->be;
    if (op == FK_OP_SILU) {
        cf_ref->silu(cf_ref, &hy, &hx);
        be->silu(be, &dy, &dx);
    } else if (op == FK_OP_GELU_TANH) {
        cf_ref->gelu_tanh(cf_ref, &hy, &hx);
        be->gelu_tanh(be, &dy, &dx);
    } else {
        cf_ref->gelu_quick(cf_ref, &hy, &hx);
        be->gelu_quick(be, &dy, &dx);
    }
    cf_get(tg, got, &dy);
    char what[32];
    snprintf(what, sizeof(what), "n=%lld", (long long)n);
    cf_compare(tg, op, what, got, ref, n, TOL_EW);
    cf_free(tg, &dx);
    cf_free(tg, &dy);
    fk_free(x);
    fk_free(ref);
    fk_free(got);
}

/* add / mul, out of place and in place (y aliases a) */
static void cf_binary(const cf_target *tg, bool mul, int64_t n) {
    const fk_op op = mul ? FK_OP_MUL : FK_OP_ADD;
    float *a = cf_rand(n, -4, 4), *b = cf_rand(n, -4, 4);
    float *ref = cf_alloc(n), *got = cf_alloc(n);
    int64_t s[2] = {1, n};
    fk_tensor ha = cf_host(FK_F32, a, 2, s), hb = cf_host(FK_F32, b, 2, s);
    fk_tensor hy = cf_host(FK_F32, ref, 2, s);
    (mul ? cf_ref->mul : cf_ref->add)(cf_ref, &hy, &ha, &hb);
    fk_tensor da = cf_dev_f32(tg, a, 2, s), db = cf_dev_f32(tg, b, 2, s);
    fk_tensor dy = cf_dev_f32(tg, NULL, 2, s);
    (mul ? tg->be->mul : tg->be->add)(tg->be, &dy, &da, &db);
    cf_get(tg, got, &dy);
    char what[32];
    snprintf(what, sizeof(what), "n=%lld", (long long)n);
    cf_compare(tg, op, what, got, ref, n, TOL_EW);
    (mul ? tg->be->mul : tg->be->add)(tg->be, &da, &da, &db);
    cf_get(tg, got, &da);
    cf_compare(tg, op, "in place", got, ref, n, TOL_EW);
    cf_free(tg, &da);
    cf_free(tg, &db);
    cf_free(tg, &dy);
    fk_free(a);
    fk_free(b);
    fk_free(ref);
    fk_free(got);
}

/* modulate (in place) and gated_add */
static void cf_rowvec(const cf_target *tg, bool gated, int64_t B, int64_t T, int64_t C) {
    const fk_op op = gated ? FK_OP_GATED_ADD : FK_OP_MODULATE;
    const int64_t R = B * T;
    float *x = cf_rand(R * C, -2, 2), *y = cf_rand(R * C, -2, 2);
    float *v1 = cf_rand(B * C, -1, 1), *v2 = cf_rand(B * C, -1, 1);
    float *ref = cf_alloc(R * C), *got = cf_alloc(R * C);
    memcpy(ref, x, (size_t)(R * C) * 4);
    int64_t s[2] = {R, C}, sv[2] = {B, C};
    fk_tensor hr = cf_host(FK_F32, ref, 2, s), hy = cf_host(FK_F32, y, 2, s);
    fk_tensor h1 = cf_host(FK_F32, v1, 2, sv), h2 = cf_host(FK_F32, v2, 2, sv);
    fk_tensor dx = cf_dev_f32(tg, x, 2, s), dy = cf_dev_f32(tg, y, 2, s);
    fk_tensor d1 = cf_dev_f32(tg, v1, 2, sv), d2 = cf_dev_f32(tg, v2, 2, sv);
    if (gated) {
        cf_ref->gated_add(cf_ref, &hr, &hy, &h1);
        tg->be->gated_add(tg->be, &dx, &dy, &d1);
    } else {
        cf_ref->modulate(cf_ref, &hr, &hr, &h1, &h2);
        tg->be->modulate(tg->be, &dx, &dx, &d1, &d2);
    }
    cf_get(tg, got, &dx);
    char what[64];
    snprintf(what, sizeof(what), "B=%lld T=%lld C=%lld", (long long)B, (long long)T, (long long)C);
    cf_compare(tg, op, what, got, ref, R * C, TOL_EW);
    cf_free(tg, &dx);
    cf_free(tg, &dy);
    cf_free(tg, &d1);
    cf_free(tg, &d2);
    fk_free(x);
    fk_free(y);
    fk_free(v1);
    fk_free(v2);
    fk_free(ref);
    fk_free(got);
}

/* concat_rows, split_rows, copy_cols (bitwise), f32 and bf16 */
static void cf_copies(const cf_target *tg, fk_dtype dt) {
    const int64_t La = 5, Lb = 9, C = 13;
    const size_t es = fk_dtype_size(dt);
    void *a = cf_weight(dt, La * C, 1), *b = cf_weight(dt, Lb * C, 1);
    unsigned char *ref = fk_alloc((size_t)((La + Lb) * C) * es);
    unsigned char *got = fk_alloc((size_t)((La + Lb) * C) * es);
    int64_t sa[2] = {La, C}, sb[2] = {Lb, C}, so[2] = {La + Lb, C};
    fk_tensor ha = cf_host(dt, a, 2, sa), hb = cf_host(dt, b, 2, sb), ho = cf_host(dt, ref, 2, so);
    cf_ref->concat_rows(cf_ref, &ho, &ha, &hb);
    fk_tensor da = cf_dev(tg, dt, a, 2, sa), db = cf_dev(tg, dt, b, 2, sb);
    fk_tensor dout = cf_dev(tg, dt, NULL, 2, so);
    tg->be->concat_rows(tg->be, &dout, &da, &db);
    cf_get(tg, got, &dout);
    cf_compare_bits(tg, FK_OP_CONCAT_ROWS, fk_dtype_name(dt), got, ref, (size_t)((La + Lb) * C) * es);
    /* split back into poisoned a, b */
    fk_tensor pa = cf_dev(tg, dt, NULL, 2, sa), pb = cf_dev(tg, dt, NULL, 2, sb);
    tg->be->split_rows(tg->be, &pa, &pb, &dout);
    cf_get(tg, got, &pa);
    cf_get(tg, got + (size_t)(La * C) * es, &pb);
    cf_compare_bits(tg, FK_OP_SPLIT_ROWS, fk_dtype_name(dt), got, ref, (size_t)((La + Lb) * C) * es);
    /* copy_cols: dst (M, 20) cols [3, 11) ← src (M, 15) cols [5, 13); then within one tensor */
    const int64_t M = 9, Nd = 20, Ns = 15;
    void *src = cf_weight(dt, M * Ns, 1), *dst = cf_weight(dt, M * Nd, 1);
    int64_t sd[2] = {M, Nd}, ssrc[2] = {M, Ns};
    unsigned char *r2 = fk_alloc((size_t)(M * Nd) * es), *g2 = fk_alloc((size_t)(M * Nd) * es);
    memcpy(r2, dst, (size_t)(M * Nd) * es);
    fk_tensor hd = cf_host(dt, r2, 2, sd), hs = cf_host(dt, src, 2, ssrc);
    fk_tensor dd = cf_dev(tg, dt, dst, 2, sd), ds = cf_dev(tg, dt, src, 2, ssrc);
    cf_ref->copy_cols(cf_ref, &hd, 3, &hs, 5, 8);
    tg->be->copy_cols(tg->be, &dd, 3, &ds, 5, 8);
    cf_ref->copy_cols(cf_ref, &hd, 0, &hd, 12, 6); /* same tensor, disjoint columns */
    tg->be->copy_cols(tg->be, &dd, 0, &dd, 12, 6);
    cf_get(tg, g2, &dd);
    cf_compare_bits(tg, FK_OP_COPY_COLS, fk_dtype_name(dt), g2, r2, (size_t)(M * Nd) * es);
    cf_free(tg, &da);
    cf_free(tg, &db);
    cf_free(tg, &dout);
    cf_free(tg, &pa);
    cf_free(tg, &pb);
    cf_free(tg, &dd);
    cf_free(tg, &ds);
    cf_uncache(tg);
    fk_free(a);
    fk_free(b);
    fk_free(ref);
    fk_free(got);
    fk_free(src);
    fk_free(dst);
    fk_free(r2);
    fk_free(g2);
}

/* ---- transpose, scale_cols ---- */

static void cf_transpose(const cf_target *tg, int64_t B, int64_t R, int64_t C) {
    float *x = cf_rand(B * R * C, -1, 1);
    float *ref = cf_alloc(B * R * C), *got = cf_alloc(B * R * C);
    int64_t sx[3] = {B, R, C}, sy[3] = {B, C, R};
    fk_tensor hx = cf_host(FK_F32, x, 3, sx), hy = cf_host(FK_F32, ref, 3, sy);
    cf_ref->transpose(cf_ref, &hy, &hx);
    fk_tensor dx = cf_dev_f32(tg, x, 3, sx), dy = cf_dev_f32(tg, NULL, 3, sy);
    tg->be->transpose(tg->be, &dy, &dx);
    cf_get(tg, got, &dy);
    char what[64];
    snprintf(what, sizeof(what), "B=%lld R=%lld C=%lld", (long long)B, (long long)R, (long long)C);
    cf_compare_bits(tg, FK_OP_TRANSPOSE, what, got, ref, (size_t)(B * R * C) * 4);
    cf_free(tg, &dx);
    cf_free(tg, &dy);
    fk_free(x);
    fk_free(ref);
    fk_free(got);
}

/* scale_cols, out of place and in place: one rounded multiply per element */
static void cf_scale_cols(const cf_target *tg, int64_t M, int64_t N, fk_dtype sdt) {
    float *x = cf_rand(M * N, -4, 4);
    void *sc = cf_weight(sdt, N, 2.0f);
    float *ref = cf_alloc(M * N), *got = cf_alloc(M * N);
    int64_t s[2] = {M, N}, ss[1] = {N};
    fk_tensor hx = cf_host(FK_F32, x, 2, s), hy = cf_host(FK_F32, ref, 2, s);
    fk_tensor ts = cf_host(sdt, sc, 1, ss);
    cf_ref->scale_cols(cf_ref, &hy, &hx, &ts);
    fk_tensor dx = cf_dev_f32(tg, x, 2, s), dy = cf_dev_f32(tg, NULL, 2, s);
    tg->be->scale_cols(tg->be, &dy, &dx, &ts);
    cf_get(tg, got, &dy);
    char what[64];
    snprintf(what, sizeof(what), "M=%lld N=%lld s %s", (long long)M, (long long)N,
             fk_dtype_name(sdt));
    cf_compare_bits(tg, FK_OP_SCALE_COLS, what, got, ref, (size_t)(M * N) * 4);
    tg->be->scale_cols(tg->be, &dx, &dx, &ts);
    cf_get(tg, got, &dx);
    cf_compare_bits(tg, FK_OP_SCALE_COLS, "in place", got, ref, (size_t)(M * N) * 4);
    cf_free(tg, &dx);
    cf_free(tg, &dy);
    cf_uncache(tg);
    fk_free(x);
    fk_free(sc);
    fk_free(ref);
    fk_free(got);
}

/* An op the reference backend implements: every table entry except those
 * added to backend.h before the CPU backend fills them. */
static bool cf_ref_has(fk_op op) {
    switch (op) {
    case FK_OP_TRANSPOSE: return cf_ref->transpose != NULL;
    case FK_OP_SCALE_COLS: return cf_ref->scale_cols != NULL;
    default: return true;
    }
}

/* A newer op: run `check` when the reference has it; the target must too. */
#define CF_NEWER_OP(tg, op, fn, ...)                                                               \
    do {                                                                                           \
        if (!cf_ref_has(op)) break;                                                                \
        if (!(tg)->be->fn) {                                                                       \
            CHECKF(false, "%s: %s missing from the op table", (tg)->name, fk_op_name(op));         \
            break;                                                                                 \
        }                                                                                          \
        __VA_ARGS__;                                                                               \
    } while (0)

/* ---- supports() ---- */

static void cf_supports(const cf_target *tg) {
    int64_t s[2] = {4, 8}, sw[2] = {3, 8};
    fk_tensor x = fk_tensor_view(FK_F32, NULL, 2, s), y = x;
    x.device = y.device = tg->be->device;
    fk_tensor w = fk_tensor_view(FK_F8_E4M3, NULL, 2, sw); /* host weight */
    const fk_tensor *srcs[4] = {&y, &x, &w, NULL};
    CHECKF(tg->be->supports(tg->be, FK_OP_LINEAR, srcs, 4), "%s: supports(linear) false",
           tg->name);
    if (cf_real_cuda(tg->be)) { /* a host activation is not supported (devsim: asks the CPU) */
        fk_tensor hx = fk_tensor_view(FK_F32, NULL, 2, s);
        const fk_tensor *bad[4] = {&y, &hx, &w, NULL};
        CHECKF(!tg->be->supports(tg->be, FK_OP_LINEAR, bad, 4),
               "%s: supports(linear) accepts a host activation", tg->name);
    }
}

/* ---- the suite for one target ---- */

/* every op, the shapes and branches of every backend */
/* The shapes of the flash path (bf16, D 64 / 128): partial tiles, causal
 * (CLIP), bias (T5) with a fully masked row, cross lengths, causal with fewer
 * queries than keys (the mask is j > l in absolute positions), bias and a
 * fully masked row at D = 128. Run by the full suite (the default kernel)
 * and under the FLASH1 and FLASH2 hooks (the 64-row and the 128-row
 * mma.sync kernels). */
static void cf_attention_flash_shapes(const cf_target *tg) {
    cf_attention(tg, 100, 100, 3, 64, 0, false);
    cf_attention(tg, 130, 130, 2, 128, 0, false);
    cf_attention(tg, 77, 77, 2, 64, 0, true);
    cf_attention(tg, 70, 70, 2, 64, 1, false);
    cf_attention(tg, 40, 40, 2, 64, 2, false);
    cf_attention(tg, 50, 90, 2, 128, 0, false);
    cf_attention(tg, 90, 50, 2, 128, 0, true);
    cf_attention(tg, 50, 130, 2, 64, 1, true);
    cf_attention(tg, 70, 130, 2, 128, 2, true);
}

static void cf_suite_full(cf_target *tg) {
    cf_supports(tg);
    /* linear: gemv-sized, odd, non-multiple-of-tile, every weight dtype */
    const int64_t lshapes[][3] = {{1, 64, 96}, {7, 80, 33}, {130, 256, 200}, {257, 320, 136},
                                  {64, 1024, 72}};
    for (int i = 0; i < 5; i++)
        for (int d = 0; d < CF_N_WDT; d++)
            cf_linear(tg, lshapes[i][0], lshapes[i][1], lshapes[i][2], CF_WDT[d], (d + i) % 2 == 0,
                      d % 2 ? FK_F32 : FK_BF16, FK_ACT_NONE, false);
    for (int a = 0; a < FK_ACT_COUNT; a++) {
        cf_linear(tg, 96, 192, 160, FK_BF16, true, FK_BF16, (fk_act)a, true);
        cf_linear(tg, 33, 128, 70, FK_F8_E4M3, false, FK_F32, (fk_act)a, true);
    }
    /* f64 weight and bias (a dtype the weight slots accept, read by no model) */
    cf_linear(tg, 7, 80, 33, FK_F64, true, FK_F64, FK_ACT_NONE, false);
    /* K = 0: y = b (CUDA: no product runs, D is cleared and the bias added) */
    cf_linear(tg, 3, 0, 5, FK_BF16, true, FK_F32, FK_ACT_NONE, false);
    cf_linear(tg, 3, 0, 5, FK_BF16, true, FK_F32, FK_ACT_SILU, true);
    cf_linear_cat(tg, 100, 96, 160, 128, FK_BF16, true);
    cf_linear_cat(tg, 40, 37, 61, 48, FK_F16, false); /* odd split: unaligned second part */
    cf_linear_cat(tg, 5, 64, 64, 32, FK_F32, true);
    cf_weight_cache(tg);
    /* bf16 activations where the target takes them (the CPU targets on a
     * machine with a bf16 kernel: then they must run) */
    const bool io1 = cf_bf16_io(tg, 100, 96, 384, 96, FK_F32), io2 = cf_bf16_io(tg, 37, 45, 61, 50, FK_F32);
    cf_bf16_io(tg, 100, 96, 384, 96, FK_BF16);
    const bool ln1 = cf_layernorm_modulate_bf16(tg, 2, 19, 160, 0.0f),
               ln2 = cf_layernorm_modulate_bf16(tg, 1, 40, 3072, 1000.0f);
    cf_layernorm_modulate_bf16(tg, 3, 7, 1100, 0.0f); /* a chunk tail (CPU: 1024 columns) */
    const bool at1 = cf_attention_bf16_out(tg, 100, 3, 128);
    cf_attention_bf16_out(tg, 20, 1, 32); /* small: the CPU's f32 reference, rounded */
    /* q, k, v in bf16: all three (out f32 and bf16), one at a time; D = 64
     * and 40 (CUDA: the flash kernel, the two-product path), tiny (the CPU's
     * widening fallback) */
    const bool rr1 = cf_rmsnorm_rope_bf16(tg, 37, 3, 128),
               ai1 = cf_attention_bf16_in(tg, 100, 3, 128, 7, false);
    cf_rmsnorm_rope_bf16(tg, 5, 2, 1100); /* chunks (CPU: 1024 columns), past the fused form */
    cf_attention_bf16_in(tg, 100, 3, 128, 7, true);
    for (int m = 1; m < 7; m <<= 1) cf_attention_bf16_in(tg, 70, 2, 64, m, false);
    cf_attention_bf16_in(tg, 50, 2, 40, 7, true);
    cf_attention_bf16_in(tg, 20, 1, 32, 7, true);
    /* tiled hand-overs: padding rows and columns, a linear_cat after two K blocks */
    const bool ti1 = cf_tiles(tg, 37, 96, 300, 70, 512);
    cf_tiles(tg, 64, 40, 256, 33, 256);
    const bool ti2 = cf_tiles_producers(tg, 45, 300, 2, 128, 40);
    if (!cf_real_cuda(tg->be) && fk_cpu_bf16_kernel_detect() == FK_CPU_BF16_AMX &&
        strstr(tg->name, "bf16"))
        CHECKF(at1 && rr1 && ai1 && ti1 && ti2, "%s: bf16 attention operands or tiles not taken",
               tg->name);
    if (!cf_real_cuda(tg->be) && fk_cpu_bf16_kernel_detect() != FK_CPU_BF16_NONE &&
        strstr(tg->name, "bf16"))
        CHECKF(io1 && io2 && ln1 && ln2, "%s: bf16 activations not taken", tg->name);
    const char *cuda_io = getenv("FK_CUDA_BF16_IO"); /* "0": the CUDA backend declines them */
    if (cf_real_cuda(tg->be) && strstr(tg->name, "bf16") && !(cuda_io && !strcmp(cuda_io, "0")))
        CHECKF(io1 && io2 && ln1 && ln2 && at1 && rr1 && ai1, "%s: bf16 activations not taken",
               tg->name);
    printf("%s: bf16 activations %s\n", tg->name, io1 ? "checked" : "not supported, skipped");

    /* attention: the flash shapes, then D = 512 (VAE) and an odd D */
    cf_attention_flash_shapes(tg);
    cf_attention(tg, 200, 200, 1, 512, 0, false);
    cf_attention(tg, 33, 47, 3, 40, 1, true);
    /* an output the flash kernel cannot store to: the two-product path */
    cf_attention_at(tg, 70, 90, 2, 64, 2, false, true);

    /* norms */
    cf_layernorm(tg, 37, 300, true, 0.0f);
    cf_layernorm(tg, 4, 3072, false, 0.0f);
    cf_layernorm(tg, 3, 20, true, 0.0f);
    cf_layernorm(tg, 5, 3072, true, 1000.0f);
    cf_rmsnorm(tg, 29, 200, FK_F16);
    cf_rmsnorm(tg, 6, 4096, FK_BF16);
    cf_layernorm_modulate(tg, 2, 19, 160, 0.0f);
    cf_layernorm_modulate(tg, 1, 7, 3072, 0.0f);
    cf_layernorm_modulate(tg, 2, 3, 3072, 1000.0f);
    cf_rope_ops(tg, 21, 3, 64, true);
    cf_rope_ops(tg, 9, 2, 128, true);
    cf_rope_ops(tg, 7, 2, 256, true);
    cf_rope_ops(tg, 17, 2, 48, false);
    /* the fused q / k projection: one panel, several (statically split: 3
     * panels, CPU), D = 32 .. 256, D = 48 and 512 (the CPU's two ops), few
     * rows (the same), every weight kind FLUX has */
    const bool lr = cf_linear_rmsnorm_rope(tg, 100, 96, 3, 64, FK_BF16, true);
    if (lr) {
        cf_linear_rmsnorm_rope(tg, 37, 130, 4, 128, FK_F8_E4M3, false);
        cf_linear_rmsnorm_rope(tg, 40, 64, 6, 128, FK_BF16, true);
        cf_linear_rmsnorm_rope(tg, 70, 64, 10, 32, FK_F32, true);
        cf_linear_rmsnorm_rope(tg, 33, 80, 3, 256, FK_BF16, false);
        cf_linear_rmsnorm_rope(tg, 45, 96, 5, 48, FK_BF16, true);
        cf_linear_rmsnorm_rope(tg, 20, 64, 2, 512, FK_BF16, true);
        cf_linear_rmsnorm_rope(tg, 9, 96, 2, 64, FK_BF16, true);
    }
    cf_rope_ops(tg, 5, 3, 128, false);
    cf_softmax(tg, 13, 1000);
    cf_softmax(tg, 5, 7);

    /* elementwise */
    cf_activation(tg, FK_OP_SILU, 1001);
    cf_activation(tg, FK_OP_SILU, 4096);
    cf_activation(tg, FK_OP_GELU_TANH, 1001);
    cf_activation(tg, FK_OP_GELU_TANH, 4096);
    cf_activation(tg, FK_OP_GELU_QUICK, 999);
    cf_activation(tg, FK_OP_GELU_QUICK, 2048);
    cf_binary(tg, false, 1003);
    cf_binary(tg, false, 2048);
    cf_binary(tg, true, 1003);
    cf_binary(tg, true, 2048);
    cf_rowvec(tg, false, 2, 33, 96);
    cf_rowvec(tg, false, 1, 5, 13);
    cf_rowvec(tg, true, 3, 10, 130);
    cf_rowvec(tg, true, 2, 4, 64);
    cf_copies(tg, FK_F32);
    cf_copies(tg, FK_BF16);

    /* autoencoder ops */
    const int p1[4] = {1, 1, 1, 1}, p0[4] = {0, 0, 0, 0}, pd[4] = {0, 0, 1, 1};
    cf_conv2d(tg, 1, 8, 13, 11, 12, 3, 3, 1, p1, FK_BF16, true);
    cf_conv2d(tg, 2, 16, 9, 10, 8, 1, 1, 1, p0, FK_F32, true);
    cf_conv2d(tg, 1, 12, 16, 15, 16, 3, 3, 2, pd, FK_F16, false); /* VAE downsample */
    cf_conv2d(tg, 1, 32, 24, 24, 48, 3, 3, 1, p1, FK_F32, true);
    cf_group_norm(tg, 2, 32, 9, 7, 8, true, 0.0f);
    cf_group_norm(tg, 1, 64, 48, 48, 4, true, 0.0f); /* 36864 per group: several chunks */
    cf_group_norm(tg, 1, 16, 5, 5, 16, false, 0.0f);
    cf_group_norm(tg, 1, 64, 48, 48, 4, true, 300.0f);
    cf_upsample(tg, 2, 3, 5, 7);
    CF_NEWER_OP(tg, FK_OP_TRANSPOSE, transpose, cf_transpose(tg, 1, 77, 45);
                cf_transpose(tg, 3, 64, 96); cf_transpose(tg, 2, 1, 33));
    CF_NEWER_OP(tg, FK_OP_SCALE_COLS, scale_cols, cf_scale_cols(tg, 37, 130, FK_F32);
                cf_scale_cols(tg, 5, 64, FK_BF16); cf_scale_cols(tg, 9, 33, FK_F8_E4M3));
}

/* The CUDA paths that real shapes reach only at full size or on a full
 * device, forced on small shapes by fk_backend_cuda_set_test_hooks: several
 * chunks of the attention two-product path (16 KiB of scores per chunk: 10,
 * 2 and 9 chunks below) and of conv2d's im2col (1 to 42 chunks, some not a
 * multiple of 64 pixels), host weights uploaded to the staging buffers on
 * every call (every weight slot: linear w / b, layernorm, rmsnorm,
 * rmsnorm_rope, group_norm, conv2d, scale_cols); then every product on the
 * fallback kernel that runs when cuBLASLt has no algorithm. */
static void cf_suite_hooked(cf_target *tg) {
    fk_backend *be = tg->be;
    const int p1[4] = {1, 1, 1, 1}, p0[4] = {0, 0, 0, 0}, pd[4] = {0, 0, 1, 1};
    fk_backend_cuda_set_test_hooks(be, 16384, FK_CUDA_HOOK_STAGE_WEIGHTS);
    cf_linear(tg, 7, 80, 33, FK_F8_E4M3, true, FK_BF16, FK_ACT_NONE, false);
    cf_linear(tg, 130, 256, 200, FK_BF16, true, FK_F32, FK_ACT_GELU_TANH, true);
    cf_linear(tg, 64, 1024, 72, FK_F32, false, FK_F32, FK_ACT_NONE, false);
    cf_linear_cat(tg, 40, 37, 61, 48, FK_F16, true);
    cf_attention(tg, 200, 200, 1, 512, 0, false);
    cf_attention(tg, 33, 47, 3, 40, 1, true);
    cf_attention_at(tg, 130, 130, 2, 128, 2, true, true);
    cf_conv2d(tg, 1, 8, 13, 11, 12, 3, 3, 1, p1, FK_BF16, true);
    cf_conv2d(tg, 2, 16, 9, 10, 8, 1, 1, 1, p0, FK_F32, true);
    cf_conv2d(tg, 1, 12, 16, 15, 16, 3, 3, 2, pd, FK_F16, false);
    cf_conv2d(tg, 1, 32, 24, 24, 48, 3, 3, 1, p1, FK_F32, true);
    cf_layernorm(tg, 37, 300, true, 0.0f);
    cf_rmsnorm(tg, 29, 200, FK_F16);
    cf_rope_ops(tg, 9, 2, 128, true);
    cf_group_norm(tg, 2, 32, 9, 7, 8, true, 0.0f);
    cf_scale_cols(tg, 9, 33, FK_F8_E4M3);
    cf_bf16_io(tg, 37, 45, 61, 50, FK_BF16);
    fk_backend_cuda_set_test_hooks(be, 0, FK_CUDA_HOOK_NAIVE_GEMM);
    cf_bf16_io(tg, 100, 96, 384, 96, FK_BF16); /* bf16 y through the staged f32 product */
    cf_linear(tg, 1, 64, 96, FK_F32, true, FK_BF16, FK_ACT_NONE, false);
    cf_linear(tg, 130, 256, 200, FK_F8_E5M2, true, FK_F32, FK_ACT_GELU_TANH, true);
    cf_linear(tg, 33, 128, 70, FK_F8_E4M3, false, FK_F32, FK_ACT_SILU, true);
    cf_linear_cat(tg, 100, 96, 160, 128, FK_BF16, true);
    cf_attention(tg, 33, 47, 3, 40, 1, true);
    cf_attention(tg, 200, 200, 1, 512, 0, false);
    cf_attention_at(tg, 70, 90, 2, 64, 2, false, true);
    cf_conv2d(tg, 1, 8, 13, 11, 12, 3, 3, 1, p1, FK_BF16, true);
    cf_conv2d(tg, 2, 16, 9, 10, 8, 1, 1, 1, p0, FK_F32, true);
    /* the 64-row flash kernel (the fallback of the default 128-row one) on
     * the flash shapes of cf_suite_full */
    fk_backend_cuda_set_test_hooks(be, 0, FK_CUDA_HOOK_FLASH1);
    cf_attention_flash_shapes(tg);
    /* the 128-row mma.sync kernel where the Hopper one runs by default */
    fk_backend_cuda_set_test_hooks(be, 0, FK_CUDA_HOOK_FLASH2);
    cf_attention_flash_shapes(tg);
    cf_attention_bf16_out(tg, 100, 3, 128);
    fk_backend_cuda_set_test_hooks(be, 0, 0);
}

static void cf_run_target(cf_target *tg, void (*suite)(cf_target *)) {
    for (int i = 0; i < FK_OP_COUNT; i++) cf_worst[i] = 0, cf_fails[i] = 0, cf_runs[i] = 0;
    tg->failed_before = fk_test_failed;
    const uint64_t naive0 = fk_backend_cuda_naive_gemm_count(tg->be);
    double t0 = fk_time();
    printf("== %s ==\n", tg->name);
    fflush(stdout);

    suite(tg);

    /* summary: worst error / tolerance per op */
    printf("  %-20s %6s %12s %s\n", "op", "checks", "worst/tol", "");
    for (int op = 0; op < FK_OP_COUNT; op++) {
        if (!cf_runs[op] && op == FK_OP_LINEAR_RMSNORM_ROPE && !tg->be->linear_rmsnorm_rope) {
            printf("  %-20s %6s %12s optional, not in this table (declined)\n",
                   fk_op_name((fk_op)op), "0", "-");
            continue;
        }
        if (!cf_runs[op] && !cf_ref_has((fk_op)op)) {
            printf("  %-20s %6s %12s not in the CPU reference yet\n", fk_op_name((fk_op)op), "0",
                   "-");
            continue;
        }
        if (!cf_runs[op] && tg->partial) continue;
        if (!cf_runs[op]) {
            printf("  %-20s %6s %12s MISSING\n", fk_op_name((fk_op)op), "0", "-");
            fk_test_failed++;
            continue;
        }
        printf("  %-20s %6d %12.3g %s\n", fk_op_name((fk_op)op), cf_runs[op], cf_worst[op],
               cf_fails[op] ? "FAIL" : "ok");
    }
    printf("  %s: %s in %.2f s\n", tg->name,
           fk_test_failed == tg->failed_before ? "all ops pass" : "FAILURES", fk_time() - t0);
    /* not a failure (the fallback is correct) but a performance bug to fix:
     * a product shape cuBLASLt had no algorithm for */
    const uint64_t naive = fk_backend_cuda_naive_gemm_count(tg->be) - naive0;
    if (naive && !tg->partial)
        printf("  note: %llu products ran on the fallback kernel (cuBLASLt had no algorithm)\n",
               (unsigned long long)naive);
    fflush(stdout);
}

/* ---- bench mode (CUDA) ---- */

static double cf_bench_time(fk_backend *be, void (*fn)(void *), void *arg, int iters) {
    fn(arg); /* warm-up (plans, caches) */
    fn(arg);
    be->synchronize(be);
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = fk_time();
        for (int i = 0; i < iters; i++) fn(arg);
        be->synchronize(be);
        double t = (fk_time() - t0) / iters;
        if (t < best) best = t;
    }
    return best;
}

typedef struct cf_bench_lin {
    fk_backend *be;
    fk_tensor *y, *x, *w;
} cf_bench_lin;
static void cf_bench_lin_fn(void *p) {
    cf_bench_lin *a = p;
    a->be->linear(a->be, a->y, a->x, a->w, NULL);
}

typedef struct cf_bench_att {
    fk_backend *be;
    fk_tensor *o, *q, *k, *v;
    float scale;
} cf_bench_att;
static void cf_bench_att_fn(void *p) {
    cf_bench_att *a = p;
    a->be->attention(a->be, a->o, a->q, a->k, a->v, NULL, a->scale, false);
}

typedef struct cf_bench_conv {
    fk_backend *be;
    fk_tensor *y, *x, *w;
} cf_bench_conv;
static void cf_bench_conv_fn(void *p) {
    cf_bench_conv *a = p;
    const int pad[4] = {1, 1, 1, 1};
    a->be->conv2d(a->be, a->y, a->x, a->w, NULL, 1, pad);
}

static int cf_bench(int device) {
    char err[256], desc[256];
    if (fk_cuda_device_count() <= device) {
        printf("bench: CUDA: no device %d, skipped\n", device);
        return 0;
    }
    fk_backend *be = fk_backend_cuda_create(device, err, sizeof(err));
    if (!be) {
        fprintf(stderr, "bench: %s\n", err);
        return 1;
    }
    printf("bench: cuda:%d %s, bf16 operands, f32 accumulation; best of 5 batches\n", device,
           fk_cuda_device_describe(device, desc, sizeof(desc)));
    cf_target tg = {be, "bench", 0, 0, 0, false};
    /* linear on the Flux-mini shapes: M tokens (512²: 1536, 1024²: 4608) */
    const int64_t Ms[2] = {1536, 4608};
    const int64_t KN[4][2] = {{3072, 9216}, {3072, 12288}, {15360, 3072}, {3072, 21504}};
    printf("  %-34s %10s %10s\n", "op", "ms", "TFLOP/s");
    for (int i = 0; i < 4; i++) {
        const int64_t K = KN[i][0], N = KN[i][1];
        void *w = cf_weight(FK_BF16, N * K, 0.02f);
        int64_t sw[2] = {N, K};
        fk_tensor tw = cf_host(FK_BF16, w, 2, sw);
        be->cache_weight(be, &tw);
        for (int mi = 0; mi < 2; mi++) {
            const int64_t M = Ms[mi];
            float *x = cf_rand(M * K, -1, 1);
            int64_t sx[2] = {M, K}, sy[2] = {M, N};
            fk_tensor dx = cf_dev_f32(&tg, x, 2, sx), dy = cf_dev_f32(&tg, NULL, 2, sy);
            cf_bench_lin a = {be, &dy, &dx, &tw};
            double t = cf_bench_time(be, cf_bench_lin_fn, &a, 10);
            char name[64];
            snprintf(name, sizeof(name), "linear M=%lld K=%lld N=%lld", (long long)M, (long long)K,
                     (long long)N);
            printf("  %-34s %10.3f %10.1f\n", name, t * 1e3, 2.0 * M * N * K / t * 1e-12);
            cf_free(&tg, &dx);
            cf_free(&tg, &dy);
            fk_free(x);
        }
        be->uncache_weights(be);
        fk_free(w);
    }
    /* attention: FLUX (H 24, D 128) at 512² and 1024²; VAE mid-block (H 1, D 512) */
    const int64_t att[3][3] = {{1536, 24, 128}, {4608, 24, 128}, {4096, 1, 512}};
    for (int i = 0; i < 3; i++) {
        const int64_t L = att[i][0], H = att[i][1], D = att[i][2];
        float *q = cf_rand(L * H * D, -1, 1);
        int64_t s3[3] = {L, H, D}, s2[2] = {L, H * D};
        fk_tensor dq = cf_dev_f32(&tg, q, 3, s3), dk = cf_dev_f32(&tg, q, 3, s3);
        fk_tensor dv = cf_dev_f32(&tg, q, 3, s3), dout = cf_dev_f32(&tg, NULL, 2, s2);
        cf_bench_att a = {be, &dout, &dq, &dk, &dv, 1.0f / sqrtf((float)D)};
        double t = cf_bench_time(be, cf_bench_att_fn, &a, 5);
        char name[64];
        snprintf(name, sizeof(name), "attention L=%lld H=%lld D=%lld", (long long)L, (long long)H,
                 (long long)D);
        printf("  %-34s %10.3f %10.1f\n", name, t * 1e3, 4.0 * L * L * H * D / t * 1e-12);
        cf_free(&tg, &dq);
        cf_free(&tg, &dk);
        cf_free(&tg, &dv);
        cf_free(&tg, &dout);
        fk_free(q);
    }
    /* conv2d: VAE 3×3, 512 → 512 channels at 128² (the 1024² decoder's first level) */
    {
        const int64_t C = 512, S = 128;
        float *x = cf_rand(C * S * S, -1, 1);
        void *w = cf_weight(FK_BF16, C * C * 9, 0.02f);
        int64_t sx[4] = {1, C, S, S}, sw[4] = {C, C, 3, 3};
        fk_tensor tw = cf_host(FK_BF16, w, 4, sw);
        fk_tensor dx = cf_dev_f32(&tg, x, 4, sx), dy = cf_dev_f32(&tg, NULL, 4, sx);
        cf_bench_conv a = {be, &dy, &dx, &tw};
        double t = cf_bench_time(be, cf_bench_conv_fn, &a, 5);
        printf("  %-34s %10.3f %10.1f\n", "conv2d 3x3 512->512 128x128", t * 1e3,
               2.0 * C * C * 9 * S * S / t * 1e-12);
        cf_free(&tg, &dx);
        cf_free(&tg, &dy);
        be->uncache_weights(be);
        fk_free(x);
        fk_free(w);
    }
    printf("  device memory held: weights %.1f MiB, scratch %.1f MiB\n",
           fk_backend_cuda_weight_bytes(be) / 1048576.0, fk_backend_cuda_scratch_bytes(be) / 1048576.0);
    be->destroy(be);
    return 0;
}

/* ---- main ---- */

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--bench")) return cf_bench(argc > 2 ? atoi(argv[2]) : 0);

    cf_ref = fk_backend_cpu_create(0);
    if (!cf_ref) return 2;

    /* the CPU backend in bf16 mode */
    cf_target cpu = {fk_backend_cpu_create(0), "cpu/bf16", TOL_BF16_PROD, TOL_BF16_ATT, 0, false};
    if (!cpu.be) return 2;
    fk_cpu_bf16_kernel kern = fk_backend_cpu_set_precision(cpu.be, FK_PREC_BF16);
    snprintf(cpu.name, sizeof(cpu.name), "cpu/bf16 (%s)", fk_cpu_bf16_kernel_name(kern));
    cf_run_target(&cpu, cf_suite_full);
    cpu.be->destroy(cpu.be);

    /* the same CPU backend behind the simulated device (devsim.h): the
     * suite's own device hygiene, on every machine — operands in backend
     * memory, host weights constant while cached (a check that let a freed
     * weight's address come back with other contents would abort here, as it
     * would compute with a stale copy on a GPU) */
    fk_backend *inner = fk_backend_cpu_create(0);
    if (!inner) return 2;
    fk_backend_cpu_set_precision(inner, FK_PREC_BF16);
    cf_target sim = {fk_backend_devsim_wrap(inner), "devsim (cpu/bf16)", TOL_BF16_PROD,
                     TOL_BF16_ATT, 0, false};
    if (!sim.be) return 2;
    cf_run_target(&sim, cf_suite_full);
    sim.be->destroy(sim.be);
    inner->destroy(inner);

    /* every CUDA device, bf16 and f32 */
    const int ndev = fk_cuda_device_count();
    if (!fk_backend_cuda_available())
        printf("CUDA: backend not built, skipped\n");
    else if (ndev == 0)
        printf("CUDA: no device, skipped\n");
    for (int d = 0; d < ndev; d++) {
        char err[256], desc[256];
        fk_backend *be = fk_backend_cuda_create(d, err, sizeof(err));
        CHECKF(be != NULL, "fk_backend_cuda_create(%d): %s", d, err);
        if (!be) continue;
        printf("cuda:%d: %s\n", d, fk_cuda_device_describe(d, desc, sizeof(desc)));
        cf_target bf = {be, "", TOL_BF16_PROD, TOL_BF16_ATT, 0, false};
        snprintf(bf.name, sizeof(bf.name), "cuda:%d/bf16", d);
        cf_run_target(&bf, cf_suite_full);
        snprintf(bf.name, sizeof(bf.name), "cuda:%d/bf16 test hooks", d);
        bf.partial = true;
        cf_run_target(&bf, cf_suite_hooked);
        fk_backend_cuda_set_precision(be, 0);
        cf_target f32 = {be, "", TOL_F32_PROD, TOL_F32_PROD, 0, false};
        snprintf(f32.name, sizeof(f32.name), "cuda:%d/f32", d);
        cf_run_target(&f32, cf_suite_full);
        snprintf(f32.name, sizeof(f32.name), "cuda:%d/f32 test hooks", d);
        f32.partial = true;
        cf_run_target(&f32, cf_suite_hooked);
        be->destroy(be);
    }
    /* creating a device that does not exist fails with a reason */
    {
        char err[256] = "";
        fk_backend *none = fk_backend_cuda_create(ndev, err, sizeof(err));
        CHECKF(none == NULL && err[0] != '\0', "fk_backend_cuda_create(%d) on %d devices", ndev, ndev);
        if (none) none->destroy(none);
        printf("%s\n", err);
    }
    cf_ref->destroy(cf_ref);
    return fk_test_finish("test_backend_conformance");
}
