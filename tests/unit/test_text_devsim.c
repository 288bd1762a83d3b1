/* The text encoders (T5, CLIP) on the simulated device backend
 * (src/backend/devsim.h): device memory that faults when host code touches
 * it, ops that check every activation is device memory and every host
 * weight constant.
 *
 * References:
 * - Bit identity with the plain CPU backend (the simulator runs the CPU ops
 *   on the same data in the same order) for every row of the tiny
 *   fixtures: T5 with f32 weights and with ComfyUI scaled fp8 weights (whose
 *   per-linear scale is a host round trip on a device: a stopgap until the
 *   op table has a column-scale op), CLIP last_hidden_state and
 *   pooler_output; outputs in host memory and on the device; the second
 *   row reuses the first row's device buffers.
 * - Anchor: the simulated outputs against the f64 fixtures within relative
 *   L2 1e-5 (the bound of test_t5.c / test_clip.c, derived there).
 * - No device memory left after the model is freed.
 */
#include "backend/backend.h"
#include "backend/devsim.h"
#include "io/safetensors.h"
#include "model/clip.h"
#include "model/t5.h"
#include "test.h"

#define T5_F32 "tests/data/t5/tiny-t5.weights.f32.safetensors"
#define T5_F8 "tests/data/t5/tiny-t5.weights.f8_scaled.safetensors"
#define T5_IO "tests/data/t5/tiny-t5.io.f64.safetensors"
#define T5_F8_IO "tests/data/t5/tiny-t5-f8.io.f64.safetensors"
#define CLIP_F32 "tests/data/clip/tiny-clip.weights.f32.safetensors"
#define CLIP_IO "tests/data/clip/tiny-clip.io.f64.safetensors"
#define TOL 1e-5

static fk_context *ctx;

static double rel_l2_f64(const float *a, const double *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

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
    for (int b = 0; b < io->B; b++) {
        st = fk_t5_encode(ctx, t, io->ids + (size_t)b * (size_t)io->L, io->L, &y);
        CHECKF(st == FK_OK, "%s row %d on %s: %s", weights, b, be->name, fk_context_error(ctx));
        ok &= st == FK_OK;
        out_read(be, &y, o->hidden + (size_t)b * LW);
    }
    out_free(be, &y);
    fk_t5_free(t);
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
    for (int b = 0; b < io->B; b++) {
        fk_tensor *hidden = dev && b == 1 ? &hh : &h;
        st = fk_clip_encode(ctx, c, io->ids + (size_t)b * (size_t)io->L, io->L, hidden, &p);
        CHECKF(st == FK_OK, "CLIP row %d on %s: %s", b, be->name, fk_context_error(ctx));
        ok &= st == FK_OK;
        out_read(be, hidden, o->hidden + (size_t)b * LW);
        out_read(be, &p, o->pooled + (size_t)b * (size_t)io->W);
    }
    out_free(be, &h);
    out_free(be, &p);
    out_free(be, &hh);
    fk_clip_free(c);
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
            double e = rel_l2_f64(host.hidden + (size_t)b * LW, io.hidden + (size_t)b * LW, LW);
            if (e > worst) worst = e;
            if (clip && io.pooled) {
                e = rel_l2_f64(host.pooled + (size_t)b * (size_t)io.W, io.pooled + (size_t)b * (size_t)io.W,
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

int main(void) {
    ctx = fk_context_create(2);
    test_model("tiny-t5 f32", T5_F32, T5_IO);
    test_model("tiny-t5 scaled fp8", T5_F8, T5_F8_IO);
    test_model("tiny-clip", NULL, CLIP_IO);
    fk_context_free(ctx);
    return fk_test_finish("test_text_devsim");
}
