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
 * - Transfers, exact counts derived from the runner: the only host ↔ device
 *   copies are the runner's input (one upload per image or tile) and
 *   output (one download per image or tile), plus one download per dbg
 *   tensor that lives on the device (every dbg tensor but
 *   dbg.dec.z_unscaled, which the runner hands over from host memory);
 *   bytes likewise; no device-to-device copies. The mid-block attention's
 *   (C, L) ↔ (L, C) transposes stay on the device (the transpose op: two
 *   per attention block, one block per encoder / decoder run).
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

/* The simulator's counters over one call. */
typedef struct xfer {
    int64_t uploads, downloads, transposes;
    uint64_t up_bytes, down_bytes, d2d_bytes;
} xfer;

typedef struct vae_out {
    fk_tensor z, dec, zt, dect;
    dbg_set dbg;
    int dbg_after_encode;      /* dbg tensors from the untiled encode */
    xfer x[4];                 /* encode, decode, tiled encode, tiled decode (devsim only) */
} vae_out;

static void vae_out_free(vae_out *o) {
    fk_tensor_free(&o->z);
    fk_tensor_free(&o->dec);
    fk_tensor_free(&o->zt);
    fk_tensor_free(&o->dect);
    dbg_free(&o->dbg);
}

static xfer xfer_now(const fk_backend *be) {
    fk_devsim_stats s;
    fk_backend_devsim_stats(be, &s); /* zeros for the plain CPU backend */
    return (xfer){s.uploads, s.downloads, s.op_calls[FK_OP_TRANSPOSE], s.bytes_uploaded,
                  s.bytes_downloaded, s.bytes_d2d};
}

static xfer xfer_diff(xfer a, xfer b) {
    return (xfer){b.uploads - a.uploads, b.downloads - a.downloads, b.transposes - a.transposes,
                  b.up_bytes - a.up_bytes, b.down_bytes - a.down_bytes, b.d2d_bytes - a.d2d_bytes};
}

#define TILE 16
#define OVERLAP 4

static void run(fk_backend *be, const fk_vae *v, const fk_tensor *img, const fk_tensor *lat,
                vae_out *o) {
    memset(o, 0, sizeof(*o));
    fk_vae_opts opt;
    fk_vae_opts_init(&opt);
    opt.dbg = dbg_fn;
    opt.dbg_user = &o->dbg;
    xfer t0 = xfer_now(be), t1;
    CHECKF(fk_vae_encode(ctx, be, v, img, &o->z, &opt) == FK_OK, "%s", fk_context_error(ctx));
    o->dbg_after_encode = o->dbg.count;
    o->x[0] = xfer_diff(t0, t1 = xfer_now(be));
    CHECKF(fk_vae_decode(ctx, be, v, lat, &o->dec, &opt) == FK_OK, "%s", fk_context_error(ctx));
    o->x[1] = xfer_diff(t1, t0 = xfer_now(be));
    opt.dbg = NULL;
    opt.tile = TILE;
    opt.overlap = OVERLAP;
    CHECKF(fk_vae_encode(ctx, be, v, img, &o->zt, &opt) == FK_OK, "%s", fk_context_error(ctx));
    o->x[2] = xfer_diff(t0, t1 = xfer_now(be));
    CHECKF(fk_vae_decode(ctx, be, v, lat, &o->dect, &opt) == FK_OK, "%s", fk_context_error(ctx));
    o->x[3] = xfer_diff(t1, xfer_now(be));
}

/* The transfers of one call against the derived counts. */
static void check_xfer(const char *what, const xfer *x, int64_t up, uint64_t up_bytes, int64_t down,
                       uint64_t down_bytes, int64_t transposes) {
    CHECKF(x->uploads == up && x->up_bytes == up_bytes, "%s: %lld uploads (%llu bytes), derived %lld (%llu)",
           what, (long long)x->uploads, (unsigned long long)x->up_bytes, (long long)up,
           (unsigned long long)up_bytes);
    CHECKF(x->downloads == down && x->down_bytes == down_bytes,
           "%s: %lld downloads (%llu bytes), derived %lld (%llu)", what, (long long)x->downloads,
           (unsigned long long)x->down_bytes, (long long)down, (unsigned long long)down_bytes);
    CHECKF(x->d2d_bytes == 0, "%s: %llu bytes copied device to device", what, (unsigned long long)x->d2d_bytes);
    CHECKF(x->transposes == transposes, "%s: %lld transposes, derived %lld", what, (long long)x->transposes,
           (long long)transposes);
}

/* Transfers of the four runs of `run` on the simulator, derived. B images,
 * the image (B, 3, H, W) and the latent (B, zc, h, w). */
static void check_transfers(const char *weights, const vae_out *o, const fk_tensor *img, const fk_tensor *lat) {
    const int64_t B = img->shape[0], ci = img->shape[1], H = img->shape[2], W = img->shape[3];
    const int64_t zc = lat->shape[1], h = lat->shape[2], w = lat->shape[3], f = H / h;
    const uint64_t img_b = (uint64_t)(ci * H * W) * 4, lat_b = (uint64_t)(zc * h * w) * 4;
    char what[160];
    /* untiled encode: the image up, the mean (zc channels of the moments)
     * down, per image; one download per dbg tensor */
    uint64_t dbg_b = 0;
    for (int i = 0; i < o->dbg_after_encode; i++) dbg_b += (uint64_t)o->dbg.n[i] * 4;
    snprintf(what, sizeof(what), "%s: encode", weights);
    check_xfer(what, &o->x[0], B, B * img_b, B + o->dbg_after_encode, B * lat_b + dbg_b, 2 * B);
    /* untiled decode: the unscaled latent up, the image down; the dbg tensors
     * but dbg.dec.z_unscaled (host) */
    int dev_dbg = 0;
    dbg_b = 0;
    for (int i = o->dbg_after_encode; i < o->dbg.count; i++)
        if (!strstr(o->dbg.name[i], "z_unscaled")) dev_dbg++, dbg_b += (uint64_t)o->dbg.n[i] * 4;
    CHECK(dev_dbg == o->dbg.count - o->dbg_after_encode - B);
    snprintf(what, sizeof(what), "%s: decode", weights);
    check_xfer(what, &o->x[1], B, B * lat_b, B + dev_dbg, B * img_b + dbg_b, 2 * B);
    /* tiled: TILE × TILE latent tiles (overlap OVERLAP) over h × w: one
     * upload and one download per tile, no dbg */
    int64_t st[64];
    const int64_t ny = fk_vae_tile_starts(h, TILE, OVERLAP, st, 64), nx = fk_vae_tile_starts(w, TILE, OVERLAP, st, 64);
    const int64_t th = h < TILE ? h : TILE, tw = w < TILE ? w : TILE, nt = B * ny * nx;
    const uint64_t timg_b = (uint64_t)(ci * th * f * tw * f) * 4, tlat_b = (uint64_t)(zc * th * tw) * 4;
    snprintf(what, sizeof(what), "%s: tiled encode (%lld × %lld tiles)", weights, (long long)ny, (long long)nx);
    check_xfer(what, &o->x[2], nt, nt * timg_b, nt, nt * tlat_b, 2 * nt);
    snprintf(what, sizeof(what), "%s: tiled decode (%lld × %lld tiles)", weights, (long long)ny, (long long)nx);
    check_xfer(what, &o->x[3], nt, nt * tlat_b, nt, nt * timg_b, 2 * nt);
}

static bool same(const fk_tensor *a, const fk_tensor *b) {
    return a->data && b->data && fk_tensor_same_shape(a, b) &&
           !memcmp(a->data, b->data, fk_tensor_nbytes(a));
}

static double rel_l2_f64(const float *a, const fk_st_tensor *ref, int64_t n) {
    return fk_test_rel_l2_f64(a, ref->data, (size_t)n);
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
        /* the fixture: 2 images of 48 × 80 (latent 24 × 40: 2 × 3 tiles of 16
         * with overlap 4), 8 encoder and 9 decoder dbg tensors per image */
        CHECK(got.dbg_after_encode == 2 * 8 && lat.shape[2] == 24 && lat.shape[3] == 40);
        check_transfers(weights, &got, &img, &lat);
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
