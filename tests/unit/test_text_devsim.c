/* The text encoders (T5, CLIP) on the simulated device backend
 * (src/backend/devsim.h): device memory that faults when host code touches
 * it, ops that check every activation is device memory and every host
 * weight constant.
 *
 * References:
 * - Bit identity with the plain CPU backend (the simulator runs the CPU ops
 *   on the same data in the same order) for every row of the tiny
 *   fixtures: T5 with f32 weights and with ComfyUI scaled fp8 weights (the
 *   per-linear scale is the scale_cols op, its scale a host weight), CLIP
 *   last_hidden_state and pooler_output; outputs in host memory and on the
 *   device; the second row reuses the first row's device buffers.
 * - Per-output-row fp8 scales: a copy of the scaled fp8 file whose scalar
 *   scales (all exactly representable in bf16) become bf16 vectors of that
 *   value under the other key spelling (<linear>.weight_scale): the bits of
 *   the per-tensor file on the CPU, and of the CPU on the simulator (the
 *   checkpoint's bf16 vector is the scale_cols weight, read in place).
 * - Anchor: the simulated outputs against the f64 fixtures within relative
 *   L2 1e-5 (the bound of test_t5.c / test_clip.c, derived there).
 * - Transfers, exact counts derived from the runners, per encode call on
 *   the simulator: T5 uploads the embedding rows (L, d), the position
 *   bias (H, L, L) on the first encode of a length (again after
 *   fk_t5_release_buffers, with the same output bits), and downloads the
 *   output (L, d) only when it is in host memory; the scaled linears' scales never cross (one scale_cols op per
 *   scaled linear, no transfer). CLIP uploads the token and position rows
 *   (2 × (L, W)), downloads last_hidden_state when it is in host memory,
 *   and moves the pooled row (W) across only when exactly one of the two
 *   outputs is in host memory. No device-to-device copies.
 * - No device memory left after the model is freed.
 */
#include "backend/backend.h"
#include "backend/devsim.h"
#include "io/safetensors.h"
#include "model/clip.h"
#include "model/t5.h"
#include "test.h"

#include <unistd.h>

#define T5_F32 "tests/data/t5/tiny-t5.weights.f32.safetensors"
#define T5_F8 "tests/data/t5/tiny-t5.weights.f8_scaled.safetensors"
#define T5_IO "tests/data/t5/tiny-t5.io.f64.safetensors"
#define T5_F8_IO "tests/data/t5/tiny-t5-f8.io.f64.safetensors"
#define CLIP_F32 "tests/data/clip/tiny-clip.weights.f32.safetensors"
#define CLIP_IO "tests/data/clip/tiny-clip.io.f64.safetensors"
#define TOL 1e-5

static fk_context *ctx;

/* The fixture: ids (B, L) and the f64 outputs. */
typedef struct io_case {
    fk_st_file *f;
    int B, L, W;
    int64_t *ids;
    const double *hidden; /* (B, L, W) */
    const double *pooled; /* (B, W) or NULL */
} io_case;

static bool io_open(io_case *io, const char *path) {
    memset(io, 0, sizeof(*io));
    if (fk_st_open(ctx, path, &io->f) != FK_OK) return false;
    const fk_st_tensor *ids = fk_st_find(io->f, "input_ids");
    const fk_st_tensor *h = fk_st_find(io->f, "last_hidden_state");
    const fk_st_tensor *p = fk_st_find(io->f, "pooler_output");
    if (!ids || !h || ids->dtype != FK_I64 || h->dtype != FK_F64 || ids->ndim != 2 || h->ndim != 3)
        return false;
    io->B = (int)ids->shape[0];
    io->L = (int)ids->shape[1];
    io->W = (int)h->shape[2];
    io->ids = malloc(sizeof(int64_t) * (size_t)(io->B * io->L));
    memcpy(io->ids, ids->data, sizeof(int64_t) * (size_t)(io->B * io->L));
    io->hidden = h->data;
    io->pooled = p && p->dtype == FK_F64 ? p->data : NULL;
    return true;
}

static void io_close(io_case *io) {
    free(io->ids);
    fk_st_close(io->f);
}

/* An output tensor (L, W): host memory, or (dev) device memory of be. */
static fk_tensor out_tensor(fk_backend *be, bool dev, int64_t L, int64_t W) {
    size_t bytes = sizeof(float) * (size_t)(L * W);
    fk_tensor t = fk_view2(FK_F32, dev ? be->alloc(be, bytes) : calloc(1, bytes), L, W);
    if (dev) t.device = be->device;
    return t;
}

static void out_read(fk_backend *be, const fk_tensor *t, float *dst) {
    if (t->device == FK_DEVICE_CPU) memcpy(dst, t->data, fk_tensor_nbytes(t));
    else be->download(be, dst, t->data, fk_tensor_nbytes(t));
}

static void out_free(fk_backend *be, fk_tensor *t) {
    if (t->device == FK_DEVICE_CPU) free(t->data);
    else be->free(be, t->data);
}

/* The simulator's counters over one encode call. */
typedef struct xfer {
    int64_t uploads, downloads, scale_cols;
    uint64_t up_bytes, down_bytes, d2d_bytes;
} xfer;

static xfer xfer_now(const fk_backend *be) {
    fk_devsim_stats s;
    fk_backend_devsim_stats(be, &s);
    return (xfer){s.uploads, s.downloads, s.op_calls[FK_OP_SCALE_COLS], s.bytes_uploaded, s.bytes_downloaded,
                  s.bytes_d2d};
}

/* The transfers between a and b (one encode) against the derived counts. */
static void check_xfer(const char *what, int row, xfer a, xfer b, int64_t up, uint64_t up_bytes, int64_t down,
                       uint64_t down_bytes, int64_t scale_cols) {
    CHECKF(b.uploads - a.uploads == up && b.up_bytes - a.up_bytes == up_bytes,
           "%s row %d: %lld uploads (%llu bytes), derived %lld (%llu)", what, row, (long long)(b.uploads - a.uploads),
           (unsigned long long)(b.up_bytes - a.up_bytes), (long long)up, (unsigned long long)up_bytes);
    CHECKF(b.downloads - a.downloads == down && b.down_bytes - a.down_bytes == down_bytes,
           "%s row %d: %lld downloads (%llu bytes), derived %lld (%llu)", what, row,
           (long long)(b.downloads - a.downloads), (unsigned long long)(b.down_bytes - a.down_bytes),
           (long long)down, (unsigned long long)down_bytes);
    CHECKF(b.d2d_bytes == a.d2d_bytes, "%s row %d: device-to-device copies", what, row);
    CHECKF(b.scale_cols - a.scale_cols == scale_cols, "%s row %d: %lld scale_cols, derived %lld", what, row,
           (long long)(b.scale_cols - a.scale_cols), (long long)scale_cols);
}

/* Every row of io through the model on be: hidden (B, L, W) and pooled (B, W). */
typedef struct text_out {
    float *hidden, *pooled;
} text_out;

static bool run_t5(const char *weights, const io_case *io, fk_backend *be, bool dev, text_out *o) {
    fk_t5 *t = NULL;
    fk_status st = fk_t5_load(ctx, be, weights, &t);
    CHECKF(st == FK_OK, "%s on %s: %s", weights, be->name, fk_context_error(ctx));
    if (st != FK_OK) return false;
    const size_t LW = (size_t)io->L * (size_t)io->W;
    o->hidden = calloc(LW * (size_t)io->B, sizeof(float));
    o->pooled = NULL;
    fk_tensor y = out_tensor(be, dev, io->L, io->W);
    bool ok = true;
    /* per row: x (L, d) up, and the bias (H, L, L) on the first encode of
     * this length only; y (L, d) down when on the host */
    const uint64_t L = (uint64_t)io->L, H = (uint64_t)fk_t5_get_config(t)->heads, yb = L * (uint64_t)io->W * 4;
    for (int b = 0; b < io->B; b++) {
        xfer x0 = xfer_now(be);
        st = fk_t5_encode(ctx, t, io->ids + (size_t)b * (size_t)io->L, io->L, &y);
        CHECKF(st == FK_OK, "%s row %d on %s: %s", weights, b, be->name, fk_context_error(ctx));
        ok &= st == FK_OK;
        if (fk_backend_is_devsim(be))
            check_xfer(weights, b, x0, xfer_now(be), b ? 1 : 2, yb + (b ? 0 : H * L * L * 4), dev ? 0 : 1,
                       dev ? 0 : yb, fk_t5_scaled_linears(t));
        out_read(be, &y, o->hidden + (size_t)b * LW);
    }
    /* released buffers: the next encode rebuilds (CPU) or re-uploads
     * (device) the bias, with the same result */
    fk_t5_release_buffers(t);
    CHECK(fk_t5_buffer_bytes(t) == 0);
    float *again = malloc(LW * sizeof(float));
    xfer x0 = xfer_now(be);
    st = fk_t5_encode(ctx, t, io->ids, io->L, &y);
    CHECKF(st == FK_OK, "%s row 0 after release on %s: %s", weights, be->name, fk_context_error(ctx));
    if (fk_backend_is_devsim(be))
        check_xfer(weights, 0, x0, xfer_now(be), 2, yb + H * L * L * 4, dev ? 0 : 1, dev ? 0 : yb,
                   fk_t5_scaled_linears(t));
    out_read(be, &y, again);
    CHECKF(memcmp(again, o->hidden, LW * sizeof(float)) == 0, "%s row 0 after release on %s: not bit for bit",
           weights, be->name);
    free(again);
    out_free(be, &y);
    fk_t5_free(t);
    /* as the pipeline does after freeing a model: the next one may reuse its
     * host weights' addresses (the per-tensor fp8 scales are malloc'd) */
    if (be->uncache_weights) be->uncache_weights(be);
    return ok;
}

static bool run_clip(const io_case *io, fk_backend *be, bool dev, text_out *o) {
    fk_clip *c = NULL;
    fk_status st = fk_clip_load(ctx, be, CLIP_F32, &c);
    CHECKF(st == FK_OK, "CLIP on %s: %s", be->name, fk_context_error(ctx));
    if (st != FK_OK) return false;
    const size_t LW = (size_t)io->L * (size_t)io->W;
    o->hidden = calloc(LW * (size_t)io->B, sizeof(float));
    o->pooled = calloc((size_t)io->W * (size_t)io->B, sizeof(float));
    fk_tensor h = out_tensor(be, dev, io->L, io->W);
    /* pooled: on the device when dev, and then also the mixed case (host
     * hidden, device pooled) for the second row */
    fk_tensor p = out_tensor(be, dev, 1, io->W), hh = out_tensor(be, false, io->L, io->W);
    bool ok = true;
    const uint64_t yb = (uint64_t)io->L * (uint64_t)io->W * 4, pb = (uint64_t)io->W * 4;
    for (int b = 0; b < io->B; b++) {
        fk_tensor *hidden = dev && b == 1 ? &hh : &h;
        xfer x0 = xfer_now(be);
        st = fk_clip_encode(ctx, c, io->ids + (size_t)b * (size_t)io->L, io->L, hidden, &p);
        CHECKF(st == FK_OK, "CLIP row %d on %s: %s", b, be->name, fk_context_error(ctx));
        ok &= st == FK_OK;
        if (fk_backend_is_devsim(be)) {
            /* token and position rows up; hidden down when on the host; the
             * pooled row across when exactly one output is on the host
             * (host hidden → device pooled: an upload) */
            const bool hh_host = hidden->device == FK_DEVICE_CPU, p_host = p.device == FK_DEVICE_CPU;
            const int64_t pup = hh_host && !p_host, pdown = !hh_host && p_host;
            check_xfer("CLIP", b, x0, xfer_now(be), 2 + pup, 2 * yb + (uint64_t)pup * pb,
                       (hh_host ? 1 : 0) + pdown, (hh_host ? yb : 0) + (uint64_t)pdown * pb, 0);
        }
        out_read(be, hidden, o->hidden + (size_t)b * LW);
        out_read(be, &p, o->pooled + (size_t)b * (size_t)io->W);
    }
    out_free(be, &h);
    out_free(be, &p);
    out_free(be, &hh);
    fk_clip_free(c);
    if (be->uncache_weights) be->uncache_weights(be);
    return ok;
}

static void text_out_free(text_out *o) {
    free(o->hidden);
    free(o->pooled);
}

/* CPU vs devsim with host outputs vs devsim with device outputs. */
static void test_model(const char *label, const char *weights, const char *iopath) {
    io_case io;
    bool ok = io_open(&io, iopath);
    CHECKF(ok, "%s: %s", iopath, fk_context_error(ctx));
    if (!ok) return;
    const bool clip = weights == NULL;
    const size_t LW = (size_t)io.L * (size_t)io.W, nh = LW * (size_t)io.B, np = (size_t)io.W * (size_t)io.B;
    fk_backend *cpu = fk_backend_cpu_create(2), *sim = fk_backend_devsim_wrap(cpu);
    text_out ref = {0}, host = {0}, dev = {0};
    ok = clip ? run_clip(&io, cpu, false, &ref) : run_t5(weights, &io, cpu, false, &ref);
    ok &= clip ? run_clip(&io, sim, false, &host) : run_t5(weights, &io, sim, false, &host);
    ok &= clip ? run_clip(&io, sim, true, &dev) : run_t5(weights, &io, sim, true, &dev);
    if (ok) {
        CHECKF(!memcmp(ref.hidden, host.hidden, nh * sizeof(float)), "%s: devsim (host out) differs", label);
        CHECKF(!memcmp(ref.hidden, dev.hidden, nh * sizeof(float)), "%s: devsim (device out) differs", label);
        if (clip) {
            CHECKF(!memcmp(ref.pooled, host.pooled, np * sizeof(float)), "%s: pooled (host) differs", label);
            CHECKF(!memcmp(ref.pooled, dev.pooled, np * sizeof(float)), "%s: pooled (device) differs", label);
        }
        double worst = 0;
        for (int b = 0; b < io.B; b++) {
            double e = fk_test_rel_l2_f64(host.hidden + (size_t)b * LW, io.hidden + (size_t)b * LW, LW);
            if (e > worst) worst = e;
            if (clip && io.pooled) {
                e = fk_test_rel_l2_f64(host.pooled + (size_t)b * (size_t)io.W, io.pooled + (size_t)b * (size_t)io.W,
                               (size_t)io.W);
                if (e > worst) worst = e;
            }
        }
        CHECKF(worst <= TOL, "%s: devsim vs f64 rel L2 %.3g", label, worst);
        fk_devsim_stats s;
        fk_backend_devsim_stats(sim, &s);
        CHECK(s.ops > 20 && s.op_calls[FK_OP_ATTENTION] > 0 && s.bytes_uploaded > 0 && s.bytes_downloaded > 0);
        CHECKF(s.live_allocs == 0 && s.device_bytes == 0, "%s: %lld device allocations left", label,
               (long long)s.live_allocs);
        printf("  %s: devsim = cpu bit for bit (%d rows, host and device outputs); %lld ops, %.1f KB up, "
               "%.1f KB down, peak %.1f KB device; vs f64 %.3g\n",
               label, io.B, (long long)s.ops, (double)s.bytes_uploaded / 1e3, (double)s.bytes_downloaded / 1e3,
               (double)s.peak_device_bytes / 1e3, worst);
    }
    text_out_free(&ref);
    text_out_free(&host);
    text_out_free(&dev);
    sim->destroy(sim);
    cpu->destroy(cpu);
    io_close(&io);
}

/* ---- per-output-row scales: a variant of the scaled fp8 file ---- */

typedef struct rows_ctx {
    const fk_st_tensor **from;
} rows_ctx;

static fk_status rows_fill(void *user, int index, void *buf, size_t nbytes) {
    const fk_st_tensor *t = ((rows_ctx *)user)->from[index];
    if (!strstr(t->name, "scale_weight")) {
        memcpy(buf, t->data, nbytes);
        return FK_OK;
    }
    float v;
    fk_convert_to_f32(&v, t->data, t->dtype, 1);
    const uint16_t h = fk_f32_to_bf16(v);
    CHECKF(fk_bf16_to_f32(h) == v, "%s = %g is not exact in bf16", t->name, (double)v);
    for (size_t i = 0; i < nbytes / 2; i++) memcpy((char *)buf + 2 * i, &h, 2);
    return FK_OK;
}

/* T5_F8 with every `<linear>.scale_weight` (a scalar) written as
 * `<linear>.weight_scale`, a bf16 vector (out) of that value. */
static bool write_rows_variant(const char *path) {
    fk_st_model *m = NULL;
    if (fk_st_model_open(ctx, T5_F8, &m) != FK_OK) return false;
    const int n = fk_st_model_count(m);
    fk_st_spec *specs = calloc((size_t)n, sizeof(*specs));
    rows_ctx rc = {calloc((size_t)n, sizeof(*rc.from))};
    char(*names)[320] = calloc((size_t)n, sizeof(*names));
    int k = 0, scaled = 0;
    for (int i = 0; i < n; i++) {
        const fk_st_tensor *t = fk_st_model_get(m, i);
        fk_st_spec *sp = &specs[k];
        snprintf(names[k], sizeof(names[k]), "%s", t->name);
        sp->dtype = t->dtype;
        sp->ndim = t->ndim;
        memcpy(sp->shape, t->shape, sizeof(t->shape));
        const char *suffix = strstr(t->name, "scale_weight");
        if (suffix) {
            char wname[320];
            const int base = (int)(suffix - t->name);
            snprintf(wname, sizeof(wname), "%.*sweight", base, t->name);
            const fk_st_tensor *w = fk_st_model_find(m, wname);
            if (!w) continue;
            snprintf(names[k], sizeof(names[k]), "%.*sweight_scale", base, t->name);
            sp->dtype = FK_BF16;
            sp->ndim = 1;
            sp->shape[0] = w->shape[0];
            scaled++;
        }
        sp->name = names[k];
        rc.from[k++] = t;
    }
    fk_status st = fk_st_write(ctx, path, specs, k, NULL, 0, rows_fill, &rc);
    CHECKF(st == FK_OK && scaled == 21, "%s: %d scales rewritten (21 expected): %s", path, scaled,
           fk_context_error(ctx));
    free(names);
    free(rc.from);
    free(specs);
    fk_st_model_close(m);
    return st == FK_OK;
}

static void test_row_scales(void) {
    char path[128];
    snprintf(path, sizeof(path), "/tmp/fk_test_text_devsim_%d.safetensors", (int)getpid());
    if (!write_rows_variant(path)) return;
    /* the CPU: the bits of the per-tensor file */
    io_case io;
    if (io_open(&io, T5_F8_IO)) {
        fk_backend *cpu = fk_backend_cpu_create(2);
        text_out a = {0}, b = {0};
        if (run_t5(T5_F8, &io, cpu, false, &a) && run_t5(path, &io, cpu, false, &b))
            CHECKF(!memcmp(a.hidden, b.hidden, sizeof(float) * (size_t)io.B * (size_t)io.L * (size_t)io.W),
                   "per-row bf16 scales differ from the per-tensor scales");
        text_out_free(&a);
        text_out_free(&b);
        cpu->destroy(cpu);
    }
    io_close(&io);
    /* devsim against the CPU, anchored to the fixture */
    test_model("tiny-t5 per-row bf16 scales", path, T5_F8_IO);
    unlink(path);
}

int main(void) {
    ctx = fk_context_create(2);
    test_model("tiny-t5 f32", T5_F32, T5_IO);
    test_model("tiny-t5 scaled fp8", T5_F8, T5_F8_IO);
    test_row_scales();
    test_model("tiny-clip", NULL, CLIP_IO);
    fk_context_free(ctx);
    return fk_test_finish("test_text_devsim");
}
