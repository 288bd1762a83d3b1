/* The autoencoder runner's activation memory (src/model/vae.c): one arena
 * per run, sized by a dry run, reused by every layer, image and tile.
 *
 * References:
 * - peak_act_bytes against the largest sum of live buffers derived by hand
 *   from the architecture (the comments at each check), exactly: the arena
 *   is two stacks without holes, so it needs exactly that sum.
 * - backend allocations and convolutions counted by a wrapper backend: one
 *   allocation per run (the arena) and exactly the model's convolutions
 *   (the dry run calls no op of the real backend).
 * - bits: memory reuse must not change a result, so a batch of identical
 *   inputs (later images run on memory the earlier ones wrote) gives the
 *   same bits for every image and the bits of a run of one image, in the
 *   f32 and the bf16 precision modes.
 * - an allocation failure is an FK_ERR_NOMEM naming the activations.
 * - quant_conv / post_quant_conv (no fixture has them): the same bounds,
 *   and post_quant_conv against the model without it on a latent passed
 *   through the 1×1 conv in double.
 * The numerics themselves are checked against the float64 reference by
 * test_vae.c.
 */
#include "backend/cpu/cpu.h"
#include "model/vae_internal.h"
#include "test.h"

#define TINY_F32 "tests/data/ae/ae-tiny.weights.f32.safetensors"

static fk_context *ctx;

/* ---- a counting wrapper around the CPU backend -------------------------- */

static fk_backend inner; /* the wrapped backend's table */
static int n_alloc, n_free, n_conv;
static uint64_t alloc_bytes;
static bool fail_alloc;

static void *count_alloc(fk_backend *be, size_t n) {
    if (fail_alloc) return NULL;
    n_alloc++;
    alloc_bytes += n;
    return inner.alloc(be, n);
}

static void count_free(fk_backend *be, void *p) {
    n_free++;
    inner.free(be, p);
}

static void count_conv(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                       const fk_tensor *b, int stride, const int pad[4]) {
    n_conv++;
    inner.conv2d(be, y, x, w, b, stride, pad);
}

static fk_backend *counting(bool bf16) {
    fk_backend *be = fk_backend_cpu_create(2);
    FK_ASSERT(be);
    if (bf16) fk_backend_cpu_set_precision(be, FK_PREC_BF16);
    inner = *be;
    be->alloc = count_alloc;
    be->free = count_free;
    be->conv2d = count_conv;
    n_alloc = n_free = n_conv = 0;
    alloc_bytes = 0;
    return be;
}

static void fill(fk_tensor *t, uint32_t seed) {
    float *p = t->data;
    uint32_t s = seed * 2654435761u + 1;
    for (int64_t i = 0; i < fk_tensor_numel(t); i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)((double)(s >> 8) / 16777216.0 * 2.0 - 1.0);
    }
}

/* ---- peaks against the derivation --------------------------------------- */

/* tiny-ae: ch 32, ch_mult [1, 2], 1 res block, z 16 (channels 32 at full
 * size, 64 at the latent size). In floats, for a latent of N pixels:
 *   decoder input 16N (host unscaled copy 16N, freed before conv_in)
 *   mid ResNet blocks: input, normalized input, conv1 = 3 · 64N = 192N
 *   mid attention: x, tokens, q, k, v = 5 · 64N = 320N
 *   upsample conv: u and its output, 64 ch at 4N: 2 · 256N = 512N
 *   up.0 block 0 (64 → 32 ch at 4N): shortcut first (128N), the input
 *     (256N) normalized in place, conv1 (128N) = 512N (before the arena:
 *     input, normalized input, conv1 = 640N)
 *   up.0 block 1 (32 ch at 4N): 3 · 128N = 384N
 * The largest is 512N (twice), so is the arena. The decoder input is freed
 * after conv_in; the host copy of the latent (16N) lives while the arena
 * does: peak 528N floats (before the arena: 656N, input 16N + 640N).
 * Encoder, image of M pixels (even sides): conv_in output 32M (the input,
 * 3M, freed right after), level 0 block: x, h, t = 96M <- the largest;
 * level 1 (M/4 pixels, 64 ch = 16M): block 32 → 64 at most 40M, mid
 * attention 5 · 16M = 80M. Peak 96M floats (before: 99M, with the input). */
static void test_peaks(void) {
    fk_vae *v = NULL;
    CHECKF(fk_vae_open(ctx, TINY_F32, &v) == FK_OK, "%s", fk_context_error(ctx));
    if (!v) return;
    fk_backend *be = counting(false);
    const int64_t lh = 12, lw = 20, N = lh * lw, M = 4 * N;
    int64_t zs[4] = {1, 16, lh, lw}, xs[4] = {1, 3, 2 * lh, 2 * lw};
    fk_tensor z = {0}, x = {0}, out = {0};
    CHECK(fk_tensor_new(ctx, &z, FK_F32, 4, zs, "z") == FK_OK &&
          fk_tensor_new(ctx, &x, FK_F32, 4, xs, "x") == FK_OK);
    fill(&z, 1);
    fill(&x, 2);
    fk_vae_opts o;
    fk_vae_opts_init(&o);
    uint64_t peak = 0;
    o.peak_act_bytes = &peak;

    CHECK(fk_vae_decode(ctx, be, v, &z, &out, &o) == FK_OK);
    CHECKF(peak == (uint64_t)(528 * N * 4), "untiled decode peak %llu, derived %llu",
           (unsigned long long)peak, (unsigned long long)(528 * N * 4));
    /* one allocation (the arena: 512N floats), freed; 16 convolutions:
     * conv_in, mid 2 × 2, up.1 2 × 2 + upsample, up.0 2 × 2 + shortcut, conv_out */
    CHECKF(n_alloc == 1 && n_free == 1 && alloc_bytes == (uint64_t)(512 * N * 4) && n_conv == 16,
           "decode: %d allocations (%llu bytes), %d frees, %d convs", n_alloc,
           (unsigned long long)alloc_bytes, n_free, n_conv);
    fk_tensor_free(&out);

    /* tiled, 8/2: 2 × 3 tiles of 8 × 8 latents, each decoded in the one
     * arena (512 · 64 floats) with the host latent copy (16 · 64) and the
     * tiler's scratch (fk_vae_tiled_scratch) */
    n_alloc = n_free = n_conv = 0;
    alloc_bytes = 0;
    o.tile = 8;
    o.overlap = 2;
    CHECK(fk_vae_decode(ctx, be, v, &z, &out, &o) == FK_OK);
    const uint64_t tiled = (uint64_t)(528 * 64 * 4) + fk_vae_tiled_scratch(16, 1, 3, 2, lh, lw, 8);
    CHECKF(peak == tiled, "tiled decode peak %llu, derived %llu", (unsigned long long)peak,
           (unsigned long long)tiled);
    CHECKF(n_alloc == 1 && alloc_bytes == 512 * 64 * 4 && n_conv == 6 * 16,
           "tiled decode: %d allocations (%llu bytes), %d convs", n_alloc, (unsigned long long)alloc_bytes,
           n_conv);
    fk_tensor_free(&out);

    /* encode */
    n_alloc = n_free = n_conv = 0;
    o.tile = 0;
    CHECK(fk_vae_encode(ctx, be, v, &x, &out, &o) == FK_OK);
    CHECKF(peak == (uint64_t)(96 * M * 4), "encode peak %llu, derived %llu", (unsigned long long)peak,
           (unsigned long long)(96 * M * 4));
    /* conv_in, down.0 block (2), downsample, down.1 block (2 + shortcut), mid 2 × 2, conv_out */
    CHECKF(n_alloc == 1 && n_free == 1 && n_conv == 12, "encode: %d allocations, %d frees, %d convs", n_alloc,
           n_free, n_conv);
    fk_tensor_free(&out);

    /* a batch of 3 images: still one allocation */
    int64_t zb[4] = {3, 16, 8, 12};
    fk_tensor z3 = {0};
    CHECK(fk_tensor_new(ctx, &z3, FK_F32, 4, zb, "z3") == FK_OK);
    fill(&z3, 3);
    n_alloc = n_conv = 0;
    CHECK(fk_vae_decode(ctx, be, v, &z3, &out, &o) == FK_OK);
    CHECKF(n_alloc == 1 && n_conv == 3 * 16, "batch decode: %d allocations, %d convs", n_alloc, n_conv);
    CHECKF(peak == (uint64_t)(528 * 96 * 4), "batch decode peak %llu", (unsigned long long)peak);
    fk_tensor_free(&out);
    fk_tensor_free(&z3);

    /* the allocation fails: FK_ERR_NOMEM naming the activations, no image */
    fail_alloc = true;
    fk_status st = fk_vae_decode(ctx, be, v, &z, &out, &o);
    CHECKF(st == FK_ERR_NOMEM && !out.data && strstr(fk_context_error(ctx), "activations"), "%d: %s", (int)st,
           fk_context_error(ctx));
    st = fk_vae_encode(ctx, be, v, &x, &out, &o);
    CHECKF(st == FK_ERR_NOMEM && !out.data && strstr(fk_context_error(ctx), "activations"), "%d: %s", (int)st,
           fk_context_error(ctx));
    fail_alloc = false;
    /* shape errors come from the dry run, before any allocation */
    n_alloc = 0;
    fk_tensor tiny = fk_view4(FK_F32, x.data, 1, 3, 1, 1);
    CHECK(fk_vae_encode(ctx, be, v, &tiny, &out, &o) == FK_ERR_SHAPE && !out.data && n_alloc == 0);

    fk_tensor_free(&z);
    fk_tensor_free(&x);
    be->destroy(be);
    fk_vae_free(v);
}

/* ---- reused memory gives the same bits ------------------------------------ */

static bool same_bits(const float *a, const float *b, int64_t n) {
    return !memcmp(a, b, (size_t)n * sizeof(float));
}

static void check_batch(fk_vae *v, bool bf16, bool encode, int tile) {
    fk_backend *be = counting(bf16);
    const fk_vae_config *c = fk_vae_get_config(v);
    const int64_t lh = 8, lw = 12, B = 2;
    const int64_t C = encode ? c->in_channels : c->z_channels, H = encode ? 2 * lh : lh,
                  W = encode ? 2 * lw : lw;
    int64_t s1[4] = {1, C, H, W}, sb[4] = {B, C, H, W};
    fk_tensor one = {0}, batch = {0}, y1 = {0}, yb = {0};
    CHECK(fk_tensor_new(ctx, &one, FK_F32, 4, s1, "one") == FK_OK &&
          fk_tensor_new(ctx, &batch, FK_F32, 4, sb, "batch") == FK_OK);
    fill(&one, 5);
    fill(&batch, 9); /* image 0: another input, which leaves other values in the memory */
    const int64_t n = fk_tensor_numel(&one);
    for (int64_t b = 1; b < B; b++)
        memcpy((float *)batch.data + b * n, one.data, (size_t)n * sizeof(float));
    fk_vae_opts o;
    fk_vae_opts_init(&o);
    o.tile = tile;
    o.overlap = tile / 4;
    fk_status s_1 =
        encode ? fk_vae_encode(ctx, be, v, &one, &y1, &o) : fk_vae_decode(ctx, be, v, &one, &y1, &o);
    fk_status s_b =
        encode ? fk_vae_encode(ctx, be, v, &batch, &yb, &o) : fk_vae_decode(ctx, be, v, &batch, &yb, &o);
    CHECK(s_1 == FK_OK && s_b == FK_OK);
    if (y1.data && yb.data) {
        const int64_t m = fk_tensor_numel(&y1);
        /* image 1 equals `one`; image 0 differs and ran first, in the same memory */
        bool same = same_bits(y1.data, (float *)yb.data + m, m);
        bool differs = !same_bits(y1.data, yb.data, m);
        CHECKF(same && differs, "%s %s tile %d: batch images on reused memory differ from a single run",
               encode ? "encode" : "decode", bf16 ? "bf16" : "f32", tile);
    }
    fk_tensor_free(&one), fk_tensor_free(&batch), fk_tensor_free(&y1), fk_tensor_free(&yb);
    be->destroy(be);
}

static void test_reuse_bits(void) {
    fk_vae *v = NULL;
    CHECKF(fk_vae_open(ctx, TINY_F32, &v) == FK_OK, "%s", fk_context_error(ctx));
    if (!v) return;
    for (int bf16 = 0; bf16 < 2; bf16++)
        for (int encode = 0; encode < 2; encode++) {
            check_batch(v, bf16, encode, 0);
            check_batch(v, bf16, encode, 6);
        }
    fk_vae_free(v);
}

/* ---- quant_conv / post_quant_conv (SD-style files) ------------------------ */

/* Random tiny-ae weights with the 1×1 quant_conv and post_quant_conv (the
 * other tensors are drawn by name, so they equal those of the model without
 * them). The same arena bound holds (both convs work at the latent size,
 * far below the peak). Reference for post_quant_conv: the model without it
 * decoding z' = scale·(P(z/scale + shift) − shift), P computed in double
 * here: equal up to f32 rounding of the extra scale round trip and of the
 * 1×1 conv's sums (~1e-7 relative per element), so 1e-5. */
static void test_quant_convs(void) {
    fk_vae_config c;
    CHECK(fk_vae_preset("tiny-ae", &c));
    fk_vae *va = NULL, *vb = NULL;
    c.quant_conv = c.post_quant_conv = true;
    CHECK(fk_vae_create_random(ctx, &c, 11, &va) == FK_OK);
    c.quant_conv = c.post_quant_conv = false;
    CHECK(fk_vae_create_random(ctx, &c, 11, &vb) == FK_OK);
    if (!va || !vb) {
        fk_vae_free(va), fk_vae_free(vb);
        return;
    }
    fk_backend *be = counting(false);
    const int64_t lh = 6, lw = 10, N = lh * lw, M = 4 * N, zc = 16;
    int64_t zs[4] = {1, zc, lh, lw}, xs[4] = {1, 3, 2 * lh, 2 * lw};
    fk_tensor z = {0}, zb = {0}, x = {0}, ya = {0}, yb = {0}, za = {0};
    CHECK(fk_tensor_new(ctx, &z, FK_F32, 4, zs, "z") == FK_OK &&
          fk_tensor_new(ctx, &zb, FK_F32, 4, zs, "zb") == FK_OK &&
          fk_tensor_new(ctx, &x, FK_F32, 4, xs, "x") == FK_OK);
    fill(&z, 4);
    fill(&x, 6);
    fk_vae_opts o;
    fk_vae_opts_init(&o);
    uint64_t peak = 0;
    o.peak_act_bytes = &peak;
    CHECK(fk_vae_decode(ctx, be, va, &z, &ya, &o) == FK_OK);
    CHECKF(peak == (uint64_t)(528 * N * 4) && n_alloc == 1,
           "post_quant_conv decode: peak %llu, %d allocations", (unsigned long long)peak, n_alloc);
    n_alloc = 0;
    CHECK(fk_vae_encode(ctx, be, va, &x, &za, &o) == FK_OK);
    CHECKF(peak == (uint64_t)(96 * M * 4) && n_alloc == 1, "quant_conv encode: peak %llu, %d allocations",
           (unsigned long long)peak, n_alloc);
    /* z' from the post_quant_conv weights (f32 in a random model) */
    const float *w = va->post_quant.w.data, *bias = va->post_quant.b.data, *zi = z.data;
    float *zo = zb.data;
    const double scale = c.scale_factor, shift = c.shift_factor;
    for (int64_t co = 0; co < zc; co++)
        for (int64_t p = 0; p < N; p++) {
            double acc = bias[co];
            for (int64_t ci = 0; ci < zc; ci++)
                acc += (double)w[co * zc + ci] * ((double)zi[ci * N + p] / scale + shift);
            zo[co * N + p] = (float)(scale * (acc - shift));
        }
    CHECK(fk_vae_decode(ctx, be, vb, &zb, &yb, NULL) == FK_OK);
    double e = ya.data && yb.data ? fk_test_rel_l2_f32(ya.data, yb.data, (size_t)fk_tensor_numel(&ya)) : 1;
    CHECKF(e <= 1e-5, "post_quant_conv decode vs the composed reference: rel L2 %.3g", e);
    printf("  post_quant_conv decode vs the composed reference: rel L2 %.2e\n", e);
    fk_tensor_free(&z), fk_tensor_free(&zb), fk_tensor_free(&x), fk_tensor_free(&ya), fk_tensor_free(&yb);
    fk_tensor_free(&za);
    be->destroy(be);
    fk_vae_free(va);
    fk_vae_free(vb);
}

int main(void) {
    ctx = fk_context_create(2);
    test_peaks();
    test_reuse_bits();
    test_quant_convs();
    fk_context_free(ctx);
    return fk_test_finish("test_vae_mem");
}
