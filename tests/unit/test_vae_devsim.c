/* The autoencoder on the simulated device backend (src/backend/devsim.h):
 * device memory that faults when host code touches it, ops that check every
 * activation is device memory and every host weight constant.
 *
 * References:
 * - Bit identity with the plain CPU backend (the simulator runs the CPU ops
 *   on the same data in the same order): encode and decode of ae-tiny,
 *   untiled with every dbg intermediate, and tiled (16 × 16 latent tiles,
 *   overlap 4: host cropping and blending around device tiles), f32 and
 *   bf16 weight files, batch of 2 images.
 * - Anchor: the simulated encode.z and decode.output against the f64
 *   fixture within relative L2 1e-5 (the bound of test_vae.c, derived
 *   there).
 * - No device memory left allocated after each call.
 * The mid-block attention's (C, L) ↔ (L, C) transposes run as a host round
 * trip on a device backend (a stopgap until the op table has a transpose
 * op): this test proves that path too.
 */
#include "backend/backend.h"
#include "backend/devsim.h"
#include "io/safetensors.h"
#include "model/vae.h"
#include "test.h"

#define TINY_F32 "tests/data/ae/ae-tiny.weights.f32.safetensors"
#define TINY_BF16 "tests/data/ae/ae-tiny.weights.bf16.safetensors"
#define TINY_IO "tests/data/ae/ae-tiny.io.f64.safetensors"
#define TOL 1e-5

static fk_context *ctx;

/* Collected dbg tensors. */
typedef struct dbg_set {
    char name[40][48];
    float *data[40];
    int64_t n[40];
    int count;
} dbg_set;

static void dbg_fn(void *user, const char *name, int b, const fk_tensor *t) {
    dbg_set *d = user;
    CHECK(t->device == FK_DEVICE_CPU);
    if (d->count == 40) return;
    int i = d->count++;
    snprintf(d->name[i], sizeof(d->name[i]), "%d:%s", b, name);
    d->n[i] = fk_tensor_numel(t);
    d->data[i] = malloc(fk_tensor_nbytes(t));
    memcpy(d->data[i], t->data, fk_tensor_nbytes(t));
}

static void dbg_free(dbg_set *d) {
    for (int i = 0; i < d->count; i++) free(d->data[i]);
    d->count = 0;
}

/* f64 fixture tensor → f32 host tensor, repeated `batch` times along dim 0. */
static fk_tensor io_f32(const fk_st_file *io, const char *name, int batch) {
    fk_tensor out = {0};
    const fk_st_tensor *t = fk_st_find(io, name);
    if (!t || t->ndim != 4 || t->shape[0] != 1) return out;
    int64_t sh[4] = {batch, t->shape[1], t->shape[2], t->shape[3]};
    if (fk_tensor_new(ctx, &out, FK_F32, 4, sh, name) != FK_OK) return out;
    const int64_t n = fk_tensor_numel(&out) / batch;
    for (int b = 0; b < batch; b++) {
        float *dst = (float *)out.data + b * n;
        fk_convert_to_f32(dst, t->data, t->dtype, (size_t)n);
        for (int64_t i = 0; i < n && b; i++) dst[i] = -dst[i]; /* a different second image */
    }
    return out;
}

typedef struct vae_out {
    fk_tensor z, dec, zt, dect;
    dbg_set dbg;
} vae_out;

static void vae_out_free(vae_out *o) {
    fk_tensor_free(&o->z);
    fk_tensor_free(&o->dec);
    fk_tensor_free(&o->zt);
    fk_tensor_free(&o->dect);
    dbg_free(&o->dbg);
}

static void run(fk_backend *be, const fk_vae *v, const fk_tensor *img, const fk_tensor *lat,
                vae_out *o) {
    memset(o, 0, sizeof(*o));
    fk_vae_opts opt;
    fk_vae_opts_init(&opt);
    opt.dbg = dbg_fn;
    opt.dbg_user = &o->dbg;
    CHECKF(fk_vae_encode(ctx, be, v, img, &o->z, &opt) == FK_OK, "%s", fk_context_error(ctx));
    CHECKF(fk_vae_decode(ctx, be, v, lat, &o->dec, &opt) == FK_OK, "%s", fk_context_error(ctx));
    opt.dbg = NULL;
    opt.tile = 16;
    opt.overlap = 4;
    CHECKF(fk_vae_encode(ctx, be, v, img, &o->zt, &opt) == FK_OK, "%s", fk_context_error(ctx));
    CHECKF(fk_vae_decode(ctx, be, v, lat, &o->dect, &opt) == FK_OK, "%s", fk_context_error(ctx));
}

static bool same(const fk_tensor *a, const fk_tensor *b) {
    return a->data && b->data && fk_tensor_same_shape(a, b) &&
           !memcmp(a->data, b->data, fk_tensor_nbytes(a));
}

static double rel_l2_f64(const float *a, const fk_st_tensor *ref, int64_t n) {
    const double *b = ref->data;
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void test_weights(const char *weights) {
    fk_vae *v = NULL;
    fk_st_file *io = NULL;
    CHECKF(fk_vae_open(ctx, weights, &v) == FK_OK, "%s", fk_context_error(ctx));
    CHECK(fk_st_open(ctx, TINY_IO, &io) == FK_OK);
    fk_tensor img = io ? io_f32(io, "encode.input", 2) : (fk_tensor){0};
    fk_tensor lat = io ? io_f32(io, "decode.input", 2) : (fk_tensor){0};
    CHECK(img.data && lat.data);
    if (v && io && img.data && lat.data) {
        fk_backend *cpu = fk_backend_cpu_create(2);
        fk_backend *sim = fk_backend_devsim_wrap(cpu);
        vae_out ref, got;
        run(cpu, v, &img, &lat, &ref);
        run(sim, v, &img, &lat, &got);
        CHECKF(same(&ref.z, &got.z), "%s: encode differs", weights);
        CHECKF(same(&ref.dec, &got.dec), "%s: decode differs", weights);
        CHECKF(same(&ref.zt, &got.zt), "%s: tiled encode differs", weights);
        CHECKF(same(&ref.dect, &got.dect), "%s: tiled decode differs", weights);
        CHECKF(ref.dbg.count == got.dbg.count && ref.dbg.count == 2 * 17,
               "%s: %d / %d dbg tensors, expected 34", weights, ref.dbg.count, got.dbg.count);
        int bad = 0;
        for (int i = 0; i < ref.dbg.count && i < got.dbg.count; i++)
            if (strcmp(ref.dbg.name[i], got.dbg.name[i]) || ref.dbg.n[i] != got.dbg.n[i] ||
                memcmp(ref.dbg.data[i], got.dbg.data[i], sizeof(float) * (size_t)ref.dbg.n[i]))
                if (!bad++) fprintf(stderr, "  %s: dbg %s differs\n", weights, ref.dbg.name[i]);
        CHECKF(bad == 0, "%s: %d dbg tensors differ", weights, bad);
        /* anchor: image 0 against the f64 reference */
        const fk_st_tensor *rz = fk_st_find(io, "encode.z"), *rd = fk_st_find(io, "decode.output");
        double ez = rz ? rel_l2_f64(got.z.data, rz, fk_tensor_numel(&got.z) / 2) : 1;
        double ed = rd ? rel_l2_f64(got.dec.data, rd, fk_tensor_numel(&got.dec) / 2) : 1;
        CHECKF(ez <= TOL && ed <= TOL, "%s: devsim vs f64: z %.3g, decode %.3g", weights, ez, ed);
        fk_devsim_stats s;
        fk_backend_devsim_stats(sim, &s);
        CHECK(s.ops > 50 && s.op_calls[FK_OP_CONV2D] > 10 && s.op_calls[FK_OP_ATTENTION] > 0);
        CHECK(s.live_allocs == 0 && s.device_bytes == 0 && s.bytes_uploaded > 0 &&
              s.bytes_downloaded > 0);
        printf("  %s: devsim = cpu bit for bit (encode, decode, tiled, %d dbg); %lld ops, "
               "%.1f KB up, %.1f KB down, peak %.1f KB device; vs f64 z %.3g, decode %.3g\n",
               weights, got.dbg.count, (long long)s.ops, (double)s.bytes_uploaded / 1e3,
               (double)s.bytes_downloaded / 1e3, (double)s.peak_device_bytes / 1e3, ez, ed);
        vae_out_free(&ref);
        vae_out_free(&got);
        sim->destroy(sim);
        cpu->destroy(cpu);
    }
    fk_tensor_free(&img);
    fk_tensor_free(&lat);
    fk_st_close(io);
    fk_vae_free(v);
}

int main(void) {
    ctx = fk_context_create(2);
    test_weights(TINY_F32);
    test_weights(TINY_BF16);
    fk_context_free(ctx);
    return fk_test_finish("test_vae_devsim");
}
