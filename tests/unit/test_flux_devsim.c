/* The FLUX runner on a (simulated) device backend, and the simulator itself.
 *
 * fk_backend_devsim_wrap(cpu) is a backend with device FK_DEVICE_CUDA whose
 * memory faults when host code touches it and whose ops check that every
 * activation is device memory and every host "weight" is constant (see
 * src/backend/devsim.h). A runner that completes on it keeps its activations
 * on the device, moves host data only through upload/download, and passes
 * only constant host tensors as weights: what a GPU backend needs.
 *
 * References:
 * - Bit identity with the plain CPU backend: the simulator runs the same CPU
 *   ops on the same data in the same order, so every output, every hooked
 *   intermediate (block outputs and the dbg.* tensors), every step of an
 *   Euler loop with changing timesteps, the steps with precomputed
 *   modulations (fk_flux_runner_precompute) and a step the precomputation
 *   does not cover must match bit for bit — with host inputs/outputs (the
 *   runner uploads/downloads them) and with device inputs/outputs; in f32
 *   and, where the CPU has bf16 kernels, in bf16 precision with the weight
 *   cache on. Tiny-dev (guidance) and tiny-schnell, bf16 and f32 weights.
 * - Anchor: the simulated output against the f64 reference fixture, within
 *   relative L2 5e-5 (the bound of test_flux.c, derived there).
 * - The simulator catches what it is for (each in a forked child, which
 *   must die): a host read and a host write of device memory (SIGSEGV), a
 *   host weight whose contents change between ops, an activation tagged as
 *   host memory, and a view running past its allocation (SIGABRT with a
 *   message naming the op and the operand).
 */
#include "test.h"
#include "hook_collect.h"

#include "backend/backend.h"
#include "backend/cpu/cpu.h"
#include "backend/devsim.h"
#include "io/safetensors.h"
#include "model/flux.h"
#include "pipeline/sampling.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define TOL_F64 5e-5

/* ---- forked negative tests ------------------------------------------------------------- */

typedef void (*child_fn)(void);

/* Run fn in a child with its stderr captured into msg; returns the wait status. */
static int run_child(child_fn fn, char *msg, size_t cap) {
    int fds[2];
    msg[0] = 0;
    if (pipe(fds) != 0) return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        signal(SIGSEGV, SIG_DFL); /* a sanitizer's handler would turn the signal into exit(1) */
        signal(SIGBUS, SIG_DFL);
        fn();
        _exit(0); /* survived: the simulator missed it */
    }
    close(fds[1]);
    size_t n = 0;
    ssize_t k;
    while (n + 1 < cap && (k = read(fds[0], msg + n, cap - 1 - n)) > 0) n += (size_t)k;
    msg[n] = 0;
    char sink[256];
    while (read(fds[0], sink, sizeof(sink)) > 0) {}
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

static bool died_of_segv(int status, const char *msg) {
    if (WIFSIGNALED(status) && (WTERMSIG(status) == SIGSEGV || WTERMSIG(status) == SIGBUS)) return true;
    /* under a sanitizer that keeps its own SEGV handler: its report, then
     * exit != 0 or abort (abort_on_error) */
    return strstr(msg, "SEGV") && ((WIFEXITED(status) && WEXITSTATUS(status) != 0) ||
                                   (WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT));
}

static bool died_of_abort(int status) { return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT; }

static fk_backend *child_backend(fk_backend **cpu) {
    *cpu = fk_backend_cpu_create(1);
    return fk_backend_devsim_wrap(*cpu);
}

static void child_host_write(void) {
    fk_backend *cpu, *be = child_backend(&cpu);
    float *p = be->alloc(be, 1000 * sizeof(float));
    volatile float *vp = p;
    vp[10] = 1.0f; /* host code writing device memory */
}

static void child_host_read(void) {
    fk_backend *cpu, *be = child_backend(&cpu);
    float *p = be->alloc(be, 1000 * sizeof(float));
    float h[4] = {1, 2, 3, 4};
    be->upload(be, p, h, sizeof(h));
    volatile float *vp = p;
    float v = vp[2]; /* host code reading device memory */
    fprintf(stderr, "read %g\n", (double)v);
}

/* y (2, 4) = x (2, 3) · wᵀ with w (4, 3) a host weight; optionally changed
 * between two calls, or an operand mislabelled / out of bounds. */
static void child_linear(int variant) {
    fk_backend *cpu, *be = child_backend(&cpu);
    float *dx = be->alloc(be, 6 * sizeof(float)), *dy = be->alloc(be, 8 * sizeof(float));
    float hx[6] = {1, 2, 3, 4, 5, 6}, hw[12] = {1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1};
    be->upload(be, dx, hx, sizeof(hx));
    fk_tensor x = fk_view2(FK_F32, dx, 2, 3), y = fk_view2(FK_F32, dy, 2, 4);
    fk_tensor w = fk_view2(FK_F32, hw, 4, 3);
    x.device = y.device = FK_DEVICE_CUDA;
    be->linear(be, &y, &x, &w, NULL);
    if (variant == 0) hw[4] = 2.0f; /* a per-step vector passed as a weight */
    if (variant == 1) y = fk_view2(FK_F32, hx, 2, 3), y.device = FK_DEVICE_CPU; /* host output */
    if (variant == 2) x = fk_view2(FK_F32, dx + 1, 2, 3), x.device = FK_DEVICE_CUDA; /* past the end */
    be->linear(be, &y, &x, &w, NULL);
}
static void child_weight_changed(void) { child_linear(0); }
static void child_host_output(void) { child_linear(1); }
static void child_out_of_bounds(void) { child_linear(2); }
static void child_clean(void) { child_linear(3); }

static void test_devsim_catches(void) {
    char msg[4096];
    int st = run_child(child_host_write, msg, sizeof(msg));
    CHECKF(died_of_segv(st, msg), "host write of device memory not caught (status %#x): %s", st, msg);
    st = run_child(child_host_read, msg, sizeof(msg));
    CHECKF(died_of_segv(st, msg), "host read of device memory not caught (status %#x): %s", st, msg);
    st = run_child(child_weight_changed, msg, sizeof(msg));
    CHECKF(died_of_abort(st) && strstr(msg, "linear") && strstr(msg, "operand w") &&
               strstr(msg, "changed"),
           "changed host weight not caught (status %#x): %s", st, msg);
    st = run_child(child_host_output, msg, sizeof(msg));
    CHECKF(died_of_abort(st) && strstr(msg, "operand y") && strstr(msg, "device tensors"),
           "host activation not caught (status %#x): %s", st, msg);
    st = run_child(child_out_of_bounds, msg, sizeof(msg));
    CHECKF(died_of_abort(st) && strstr(msg, "operand x") && strstr(msg, "past its allocation"),
           "out-of-bounds view not caught (status %#x): %s", st, msg);
    st = run_child(child_clean, msg, sizeof(msg));
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0 && msg[0] == 0,
           "a clean sequence aborted (status %#x): %s", st, msg);
}

/* upload / download round trip, stats, the same linear as the CPU. */
static void test_devsim_basics(void) {
    fk_backend *cpu = fk_backend_cpu_create(1), *be = fk_backend_devsim_wrap(cpu);
    CHECK(be && be->device == FK_DEVICE_CUDA && fk_backend_is_devsim(be) &&
          fk_backend_devsim_inner(be) == cpu && !fk_backend_is_devsim(cpu));
    float hx[6] = {1, 2, 3, 4, 5, 6}, hw[12] = {1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1};
    float hb[4] = {0.5f, -1, 0, 2}, got[8], ref[8], back[6];
    float *dx = be->alloc(be, sizeof(hx)), *dy = be->alloc(be, sizeof(got));
    be->upload(be, dx, hx, sizeof(hx));
    be->download(be, back, dx, sizeof(back));
    CHECK(!memcmp(back, hx, sizeof(hx)));
    fk_tensor x = fk_view2(FK_F32, dx, 2, 3), y = fk_view2(FK_F32, dy, 2, 4);
    fk_tensor w = fk_view2(FK_F32, hw, 4, 3), b = fk_view1(FK_F32, hb, 4);
    x.device = y.device = FK_DEVICE_CUDA;
    const fk_tensor *srcs[4] = {&y, &x, &w, &b};
    CHECK(be->supports(be, FK_OP_LINEAR, srcs, 4));
    be->linear(be, &y, &x, &w, &b);
    be->linear(be, &y, &x, &w, &b); /* the same weight again: fine */
    be->download(be, got, dy, sizeof(got));
    fk_tensor hx_t = fk_view2(FK_F32, hx, 2, 3), hy_t = fk_view2(FK_F32, ref, 2, 4);
    cpu->linear(cpu, &hy_t, &hx_t, &w, &b);
    CHECK(!memcmp(got, ref, sizeof(ref)));
    fk_devsim_stats s;
    fk_backend_devsim_stats(be, &s);
    CHECK(s.ops == 2 && s.op_calls[FK_OP_LINEAR] == 2 && s.uploads == 1 && s.downloads == 2);
    CHECK(s.bytes_uploaded == sizeof(hx) && s.bytes_downloaded == sizeof(back) + sizeof(got));
    CHECK(s.live_allocs == 2 && s.device_bytes == sizeof(hx) + sizeof(got) &&
          s.peak_device_bytes == s.device_bytes && s.weights_seen == 2);
    /* after uncache_weights a host weight may change (its model was freed) */
    be->uncache_weights(be);
    hw[0] = 2.0f;
    be->linear(be, &y, &x, &w, &b);
    be->download(be, got, dy, sizeof(got));
    cpu->linear(cpu, &hy_t, &hx_t, &w, &b);
    CHECK(!memcmp(got, ref, sizeof(ref)) && got[0] == 2.5f);
    be->free(be, dx);
    be->free(be, dy);
    fk_backend_devsim_stats(be, &s);
    CHECK(s.live_allocs == 0 && s.device_bytes == 0 && s.peak_device_bytes == sizeof(hx) + sizeof(got));
    be->destroy(be);
    cpu->destroy(cpu);
}

/* ---- the FLUX runner: devsim against the CPU --------------------------------------------- */

/* got_collect, checking that hooks get host tensors on a device backend too */
static void got_collect_host(void *user, const char *name, const fk_tensor *t) {
    CHECK(t->device == FK_DEVICE_CPU);
    got_collect(user, name, t);
}

static fk_tensor io_tensor(const fk_st_file *io, const char *name) {
    const fk_st_tensor *t = fk_st_find(io, name);
    fk_tensor out;
    memset(&out, 0, sizeof(out));
    if (!t) return out;
    fk_tensor_new(NULL, &out, FK_F32, t->ndim, t->shape, name);
    fk_convert_to_f32(out.data, t->data, t->dtype, (size_t)fk_tensor_numel(&out));
    return out;
}

enum { IN_IMG, IN_IDS, IN_TXT, IN_TIDS, IN_Y, IN_X0, IN_N };

typedef struct fixture {
    fk_tensor t[IN_N];
    float ts[8];
    int nt;        /* denoise timesteps (steps + 1) */
    float t0, guidance;
} fixture;

/* Everything a run produces, host copies. */
typedef struct run_out {
    got_set got;     /* hooked tensors of the first forward */
    float *out;      /* (Li·out) first forward */
    float *vel;      /* (steps, Li·out) per-step velocities, conditioning computed per step */
    float *vel_pre;  /* the same with precomputed modulations */
    float *extra;    /* (Li·out) a timestep outside the precomputed list */
    int64_t n;       /* Li·out */
    fk_devsim_stats st;
} run_out;

static void run_out_free(run_out *o) {
    got_free(&o->got);
    free(o->out);
    free(o->vel);
    free(o->vel_pre);
    free(o->extra);
    memset(o, 0, sizeof(*o));
}

/* A tensor for the runner: the host tensor itself, or (dev) a device copy
 * in memory from be->alloc (recorded in allocs). */
static fk_tensor place(fk_backend *be, const fk_tensor *h, bool dev, void **allocs, int *na) {
    fk_tensor t = *h;
    t.owns = false;
    if (!dev) return t;
    t.data = be->alloc(be, fk_tensor_nbytes(h));
    allocs[(*na)++] = t.data;
    be->upload(be, t.data, h->data, fk_tensor_nbytes(h));
    t.device = be->device;
    return t;
}

/* Read the runner output o (host or device) into dst. */
static void fetch(fk_backend *be, float *dst, const fk_tensor *o) {
    if (o->device == FK_DEVICE_CPU) memcpy(dst, o->data, fk_tensor_nbytes(o));
    else be->download(be, dst, o->data, fk_tensor_nbytes(o));
}

static bool run_all(fk_context *ctx, const fk_flux_model *m, fk_backend *be, const fixture *fx,
                    bool dev_io, bool cache, run_out *o) {
    memset(o, 0, sizeof(*o));
    const int64_t Li = fk_tensor_rows(&fx->t[IN_IMG]), Lt = fk_tensor_rows(&fx->t[IN_TXT]);
    const int64_t n = Li * m->cfg.out_channels;
    const int steps = fx->nt - 1;
    o->n = n;
    o->out = calloc((size_t)n, sizeof(float));
    o->extra = calloc((size_t)n, sizeof(float));
    o->vel = calloc((size_t)(n * steps), sizeof(float));
    o->vel_pre = calloc((size_t)(n * steps), sizeof(float));
    fk_flux_runner *r = NULL;
    fk_status s = fk_flux_runner_create(ctx, m, be, Li, Lt, &r);
    CHECKF(s == FK_OK, "%s: %s", be->name, fk_context_error(ctx));
    if (s != FK_OK) return false;
    if (cache) CHECK(fk_flux_runner_cache_weights(ctx, r, false, NULL) == FK_OK);

    void *allocs[16];
    int na = 0;
    fk_tensor img = place(be, &fx->t[IN_IMG], dev_io, allocs, &na);
    fk_tensor ids = place(be, &fx->t[IN_IDS], dev_io, allocs, &na);
    fk_tensor txt = place(be, &fx->t[IN_TXT], dev_io, allocs, &na);
    fk_tensor tids = place(be, &fx->t[IN_TIDS], dev_io, allocs, &na);
    fk_tensor y = place(be, &fx->t[IN_Y], dev_io, allocs, &na);
    fk_tensor xs; /* the Euler state's input to the runner (host; or copied to the device) */
    CHECK(fk_tensor_new(ctx, &xs, FK_F32, fx->t[IN_X0].ndim, fx->t[IN_X0].shape, "x") == FK_OK);
    fk_tensor x = place(be, &xs, dev_io, allocs, &na);
    float *obuf = calloc((size_t)n, sizeof(float)); /* the runner's host output */
    fk_tensor hout = fk_view2(FK_F32, obuf, Li, m->cfg.out_channels);
    fk_tensor out = place(be, &hout, dev_io, allocs, &na);
    float *xh = malloc(fk_tensor_nbytes(&x)), *vh = malloc(sizeof(float) * (size_t)n);

    /* one forward with every hook */
    fk_flux_runner_set_hook(r, got_collect_host, FK_FLUX_HOOK_BLOCKS | FK_FLUX_HOOK_DEBUG, &o->got);
    fk_flux_inputs in = {.img = &img, .img_ids = &ids, .txt = &txt, .txt_ids = &tids, .y = &y,
                         .timestep = fx->t0, .guidance = fx->guidance};
    CHECK(fk_flux_forward(ctx, r, &in, &out) == FK_OK);
    fetch(be, o->out, &out);
    fk_flux_runner_set_hook(r, NULL, 0, NULL);

    /* Euler loops: per-step conditioning, then precomputed modulations */
    in.img = &x;
    for (int pass = 0; pass < 2; pass++) {
        float *vel = pass ? o->vel_pre : o->vel;
        if (pass)
            CHECK(fk_flux_runner_precompute(ctx, r, fx->ts, steps, fx->guidance, &y) == FK_OK);
        memcpy(xh, fx->t[IN_X0].data, fk_tensor_nbytes(&x));
        for (int k = 0; k < steps; k++) {
            if (dev_io) be->upload(be, x.data, xh, fk_tensor_nbytes(&x));
            else memcpy(x.data, xh, fk_tensor_nbytes(&x));
            in.timestep = fx->ts[k];
            CHECK(fk_flux_forward(ctx, r, &in, &out) == FK_OK);
            fetch(be, vh, &out);
            memcpy(vel + (int64_t)k * n, vh, sizeof(float) * (size_t)n);
            fk_sampling_euler_step(xh, vh, (size_t)fk_tensor_numel(&x), fx->ts[k], fx->ts[k + 1]);
        }
    }
    in.timestep = 0.123f; /* not precomputed: the runner computes its own */
    CHECK(fk_flux_forward(ctx, r, &in, &out) == FK_OK);
    fetch(be, o->extra, &out);

    free(xh);
    free(vh);
    free(obuf);
    fk_tensor_free(&xs);
    for (int i = 0; i < na; i++) be->free(be, allocs[i]);
    fk_flux_runner_free(r);
    fk_backend_devsim_stats(be, &o->st);
    return true;
}

static bool same_bits(const float *a, const float *b, int64_t n) {
    return !memcmp(a, b, sizeof(float) * (size_t)n);
}

static void compare_runs(const char *what, const run_out *ref, const run_out *got, int steps) {
    CHECKF(same_bits(ref->out, got->out, ref->n), "%s: output differs", what);
    CHECKF(same_bits(ref->vel, got->vel, ref->n * steps), "%s: Euler velocities differ", what);
    CHECKF(same_bits(ref->vel_pre, got->vel_pre, ref->n * steps),
           "%s: velocities with precomputed modulations differ", what);
    CHECKF(same_bits(ref->extra, got->extra, ref->n), "%s: non-precomputed step differs", what);
    CHECKF(ref->got.n == got->got.n && ref->got.n > 20, "%s: %d hooked tensors, expected %d", what,
           got->got.n, ref->got.n);
    int bad = 0;
    for (int i = 0; i < ref->got.n && i < got->got.n; i++) {
        const got_item *a = &ref->got.it[i], *b = &got->got.it[i];
        if (strcmp(a->name, b->name) || a->n != b->n || !same_bits(a->data, b->data, a->n)) {
            if (!bad++) fprintf(stderr, "  %s: hooked %s differs\n", what, a->name);
        }
    }
    CHECKF(bad == 0, "%s: %d hooked tensors differ", what, bad);
}

static void test_flux_fixture(const char *cfg_name, const char *wdtype) {
    char wpath[256], iopath[256];
    snprintf(wpath, sizeof(wpath), "tests/data/flux/%s.weights.%s.safetensors", cfg_name, wdtype);
    snprintf(iopath, sizeof(iopath), "tests/data/flux/%s.io.f64.safetensors", cfg_name);
    fk_context *ctx = fk_context_create(2);
    fk_st_file *io = NULL;
    fk_flux_model *m = NULL;
    CHECKF(fk_st_open(ctx, iopath, &io) == FK_OK, "%s", fk_context_error(ctx));
    CHECKF(fk_flux_load(ctx, wpath, &m) == FK_OK, "%s", fk_context_error(ctx));
    if (!io || !m) {
        fk_st_close(io);
        fk_flux_free(m);
        fk_context_free(ctx);
        return;
    }
    fixture fx;
    memset(&fx, 0, sizeof(fx));
    static const char *const names[IN_N] = {"img", "img_ids", "txt", "txt_ids", "y", "denoise.x0"};
    bool ok = true;
    for (int i = 0; i < IN_N; i++) {
        fx.t[i] = io_tensor(io, names[i]);
        ok &= fx.t[i].data != NULL;
    }
    fk_tensor ts = io_tensor(io, "denoise.timesteps"), t0 = io_tensor(io, "timesteps");
    fk_tensor g = io_tensor(io, "guidance");
    fx.nt = (int)fk_tensor_numel(&ts);
    ok &= fx.nt >= 2 && fx.nt <= 8 && t0.data && g.data;
    CHECKF(ok, "%s: fixture inputs missing", iopath);
    if (ok) {
        memcpy(fx.ts, ts.data, sizeof(float) * (size_t)fx.nt);
        fx.t0 = ((float *)t0.data)[0];
        fx.guidance = ((float *)g.data)[0];
        const int steps = fx.nt - 1;
        bool bf16 = fk_cpu_bf16_kernel_detect() != FK_CPU_BF16_NONE;
        for (int mode = 0; mode < (bf16 ? 2 : 1); mode++) {
            /* mode 0: f32; mode 1: bf16 products with the weight cache */
            fk_backend *cpu = fk_backend_cpu_create(2);
            if (mode) fk_backend_cpu_set_precision(cpu, FK_PREC_BF16);
            run_out ref, host_io, dev_io;
            run_all(ctx, m, cpu, &fx, false, mode == 1, &ref);
            if (cpu->uncache_weights) cpu->uncache_weights(cpu);
            fk_backend *sim = fk_backend_devsim_wrap(cpu);
            run_all(ctx, m, sim, &fx, false, mode == 1, &host_io);
            run_all(ctx, m, sim, &fx, true, mode == 1, &dev_io);
            char what[96];
            snprintf(what, sizeof(what), "%s/%s %s host io", cfg_name, wdtype, mode ? "bf16" : "f32");
            compare_runs(what, &ref, &host_io, steps);
            snprintf(what, sizeof(what), "%s/%s %s device io", cfg_name, wdtype, mode ? "bf16" : "f32");
            compare_runs(what, &ref, &dev_io, steps);
            /* the runner ran on the simulated device: ops, transfers, no leak */
            const fk_devsim_stats *s = &host_io.st;
            CHECK(s->ops > 100 && s->bytes_uploaded > 0 && s->bytes_downloaded > 0);
            CHECK(s->live_allocs == 0 && s->device_bytes == 0);
            CHECK(dev_io.st.live_allocs == 0 && dev_io.st.device_bytes == 0);
            CHECK(s->weights_seen > 10);
            if (mode == 0) {
                fk_tensor ref_out = io_tensor(io, "output");
                double e = fk_test_rel_l2_f32(host_io.out, ref_out.data, (size_t)host_io.n);
                CHECKF(e <= TOL_F64, "%s/%s devsim output vs f64: rel L2 %.3g", cfg_name, wdtype, e);
                fk_tensor_free(&ref_out);
                printf("  %s/%s: devsim = cpu bit for bit (%d hooked tensors, %d steps x2); "
                       "%lld ops, %.1f KB up, %.1f KB down, peak %.1f KB device; vs f64 %.3g\n",
                       cfg_name, wdtype, ref.got.n, steps, (long long)s->ops,
                       (double)s->bytes_uploaded / 1e3, (double)s->bytes_downloaded / 1e3,
                       (double)s->peak_device_bytes / 1e3, e);
            }
            run_out_free(&ref);
            run_out_free(&host_io);
            run_out_free(&dev_io);
            sim->destroy(sim);
            cpu->destroy(cpu);
        }
    }
    for (int i = 0; i < IN_N; i++) fk_tensor_free(&fx.t[i]);
    fk_tensor_free(&ts);
    fk_tensor_free(&t0);
    fk_tensor_free(&g);
    fk_flux_free(m);
    fk_st_close(io);
    fk_context_free(ctx);
}

/* Inputs on another device than the runner's are refused with a message. */
static void test_flux_device_mismatch(void) {
    fk_context *ctx = fk_context_create(1);
    fk_flux_model *m = NULL;
    CHECK(fk_flux_load(ctx, "tests/data/flux/tiny-schnell.weights.f32.safetensors", &m) == FK_OK);
    fk_backend *be = fk_backend_cpu_create(1);
    fk_flux_runner *r = NULL;
    CHECK(m && fk_flux_runner_create(ctx, m, be, 48, 7, &r) == FK_OK);
    if (r) {
        float *buf = calloc(48 * 64 * 2 + 7 * 32 + 48 * 3 + 7 * 3 + 24, sizeof(float));
        fk_tensor img = fk_view2(FK_F32, buf, 48, 64), txt = fk_view2(FK_F32, buf, 7, 32);
        fk_tensor ids = fk_view2(FK_F32, buf, 48, 3), tids = fk_view2(FK_F32, buf, 7, 3);
        fk_tensor y = fk_view1(FK_F32, buf, 24), out = fk_view2(FK_F32, buf + 48 * 64, 48, 64);
        img.device = FK_DEVICE_CUDA; /* a device tensor given to a CPU runner */
        fk_flux_inputs in = {.img = &img, .img_ids = &ids, .txt = &txt, .txt_ids = &tids, .y = &y,
                             .timestep = 0.5f};
        CHECK(fk_flux_forward(ctx, r, &in, &out) == FK_ERR_ARG);
        CHECKF(strstr(fk_context_error(ctx), "img") && strstr(fk_context_error(ctx), "device"), "%s",
               fk_context_error(ctx));
        img.device = FK_DEVICE_CPU;
        CHECK(fk_flux_forward(ctx, r, &in, &out) == FK_OK);
        free(buf);
    }
    fk_flux_runner_free(r);
    be->destroy(be);
    fk_flux_free(m);
    fk_context_free(ctx);
}

int main(void) {
    test_devsim_catches(); /* first: forks before any thread pool exists */
    test_devsim_basics();
    test_flux_device_mismatch();
    test_flux_fixture("tiny-dev", "bf16");
    test_flux_fixture("tiny-schnell", "f32");
    return fk_test_finish("test_flux_devsim");
}
