/* The FLUX runner keeps the MLP hidden state in bf16 between its GELU
 * product and the product that reads it (mlp.0 → mlp.2 of each double-block
 * stream, the MLP part of linear1 → linear2 of each single block), the
 * modulated LayerNorm outputs in bf16 for the products that read them (q, k,
 * v and mlp.0 of each double-block stream, linear1 of each single block),
 * the attention output for the products that read it (the proj of both
 * double-block streams, linear2 of each single block), and q, k, v for the
 * attention (q and k from linear_rmsnorm_rope, v from its product), where the backend
 * takes bf16 activations (bf16 mode): the velocity is
 * bitwise the one with f32 activations (fk_backend_cpu_set_bf16_io off), and
 * the bf16 paths are really taken (counted by a wrapper of the op table) —
 * for every stream with at least FK_CPU_BF16_MIN_M rows, f32 for a shorter
 * text stream, never in f32 mode. Tiny-dev weights, random inputs, 1 and 2
 * threads. Tolerance: bitwise (the same sums; a bf16 y holds exactly what
 * the consumer's packing would have made of the f32 y). q and k come out of
 * their products normed and rotated (linear_rmsnorm_rope, every stream, every
 * mode) and the velocity is bitwise the one of a table without that op
 * (linear, then rmsnorm_rope). */
#include "backend/cpu/cpu.h"
#include "core/rng.h"
#include "model/flux.h"
#include "test.h"

#include <string.h>

static fk_backend spy_inner; /* the CPU backend's table, before the wrapper */
static int n_bf16_y, n_bf16_x, n_bf16_norm, n_bf16_attn, n_bf16_rope, n_bf16_qkv, n_tiles_y,
    n_tiles_x, n_tiles_norm, n_tiles_attn, n_qk_fused, n_qk_tiles_x;
static bool no_fused; /* run without linear_rmsnorm_rope in the table */

static void count(const fk_tensor *y, const fk_tensor *x1, const fk_tensor *x2) {
    if (y && y->dtype == FK_BF16) n_bf16_y++;
    if ((x1 && x1->dtype == FK_BF16) || (x2 && x2->dtype == FK_BF16)) n_bf16_x++;
    if (y && y->layout == FK_LAYOUT_TILES) n_tiles_y++;
    if ((x1 && x1->layout == FK_LAYOUT_TILES) || (x2 && x2->layout == FK_LAYOUT_TILES))
        n_tiles_x++;
}

static void spy_linear(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                       const fk_tensor *b) {
    count(y, x, NULL);
    spy_inner.linear(be, y, x, w, b);
}

static void spy_linear_act(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                           const fk_tensor *b, fk_act act) {
    count(y, x, NULL);
    spy_inner.linear_act(be, y, x, w, b, act);
}

static void spy_linear_multi(fk_backend *be, int n, fk_tensor *const *y, const fk_tensor *x,
                             const fk_tensor *const *w, const fk_tensor *const *b,
                             const fk_act *act) {
    for (int i = 0; i < n; i++) count(y[i], i == 0 ? x : NULL, NULL);
    spy_inner.linear_multi(be, n, y, x, w, b, act);
}

static void spy_linear_cat(fk_backend *be, fk_tensor *y, const fk_tensor *x1, const fk_tensor *x2,
                           const fk_tensor *w, const fk_tensor *b, fk_tensor *tmp) {
    count(y, x1, x2);
    spy_inner.linear_cat(be, y, x1, x2, w, b, tmp);
}

static void spy_layernorm_modulate(fk_backend *be, fk_tensor *y, const fk_tensor *x,
                                   const fk_tensor *shift, const fk_tensor *scale, float eps) {
    if (y->dtype == FK_BF16) n_bf16_norm++;
    if (y->layout == FK_LAYOUT_TILES) n_tiles_norm++;
    spy_inner.layernorm_modulate(be, y, x, shift, scale, eps);
}

static void spy_rmsnorm_rope(fk_backend *be, fk_tensor *y, const fk_tensor *x,
                             const fk_tensor *scale, const fk_tensor *pe, float eps) {
    if (y->dtype == FK_BF16) n_bf16_rope++;
    spy_inner.rmsnorm_rope(be, y, x, scale, pe, eps);
}

/* q or k: a bf16 y counts as a bf16 rmsnorm_rope output */
static void spy_linear_rmsnorm_rope(fk_backend *be, fk_tensor *y, const fk_tensor *x,
                                    const fk_tensor *w, const fk_tensor *b,
                                    const fk_tensor *scale, const fk_tensor *pe, float eps) {
    n_qk_fused++;
    if (y->dtype == FK_BF16) n_bf16_rope++;
    if (x->layout == FK_LAYOUT_TILES) n_qk_tiles_x++;
    spy_inner.linear_rmsnorm_rope(be, y, x, w, b, scale, pe, eps);
}

static void spy_attention(fk_backend *be, fk_tensor *out, const fk_tensor *q, const fk_tensor *k,
                          const fk_tensor *v, const fk_tensor *bias, float scale, bool causal) {
    if (out->dtype == FK_BF16) n_bf16_attn++;
    if (out->layout == FK_LAYOUT_TILES) n_tiles_attn++;
    if (q->dtype == FK_BF16 && k->dtype == FK_BF16 && v->dtype == FK_BF16) n_bf16_qkv++;
    spy_inner.attention(be, out, q, k, v, bias, scale, causal);
}

/* Velocity of one step on backend be (wrapped) with bf16 activations on or off. */
static void run(fk_context *ctx, const fk_flux_model *m, fk_backend *cpu, bool io, int64_t Li,
                int64_t Lt, fk_tensor *out) {
    const fk_flux_config *c = &m->cfg;
    fk_tensor img, ids, txt, tids, y;
    CHECK(fk_tensor_new(ctx, &img, FK_F32, 2, (const int64_t[]){Li, c->in_channels}, "img") == FK_OK);
    CHECK(fk_tensor_new(ctx, &ids, FK_F32, 2, (const int64_t[]){Li, 3}, "ids") == FK_OK);
    CHECK(fk_tensor_new(ctx, &txt, FK_F32, 2, (const int64_t[]){Lt, c->context_dim}, "txt") == FK_OK);
    CHECK(fk_tensor_new(ctx, &tids, FK_F32, 2, (const int64_t[]){Lt, 3}, "tids") == FK_OK);
    CHECK(fk_tensor_new(ctx, &y, FK_F32, 2, (const int64_t[]){1, c->vec_dim}, "y") == FK_OK);
    fk_rng_fill_normal(11, 1, 0, img.data, (size_t)fk_tensor_numel(&img), 0.0f, 1.0f);
    fk_rng_fill_normal(11, 2, 0, txt.data, (size_t)fk_tensor_numel(&txt), 0.0f, 1.0f);
    fk_rng_fill_normal(11, 3, 0, y.data, (size_t)fk_tensor_numel(&y), 0.0f, 1.0f);
    float *id = ids.data;
    for (int64_t i = 0; i < Li; i++) id[i * 3] = 0, id[i * 3 + 1] = (float)(i / 8), id[i * 3 + 2] = (float)(i % 8);
    fk_backend_cpu_set_bf16_io(cpu, io);
    spy_inner = *cpu;
    fk_backend spy = *cpu;
    spy.linear = spy_linear;
    spy.linear_act = spy_linear_act;
    spy.linear_multi = spy_inner.linear_multi ? spy_linear_multi : NULL;
    spy.linear_cat = spy_linear_cat;
    spy.layernorm_modulate = spy_layernorm_modulate;
    spy.attention = spy_attention;
    spy.rmsnorm_rope = spy_rmsnorm_rope;
    spy.linear_rmsnorm_rope = no_fused ? NULL : spy_linear_rmsnorm_rope;
    fk_flux_runner *r = NULL;
    CHECK(fk_flux_runner_create(ctx, m, &spy, Li, Lt, &r) == FK_OK);
    fk_flux_inputs in = {.img = &img, .img_ids = &ids, .txt = &txt, .txt_ids = &tids, .y = &y,
                         .guidance = 3.5f, .timestep = 0.8f};
    n_bf16_x = n_bf16_y = n_bf16_norm = n_bf16_attn = n_bf16_rope = n_bf16_qkv = 0;
    n_tiles_y = n_tiles_x = n_tiles_norm = n_tiles_attn = n_qk_fused = n_qk_tiles_x = 0;
    CHECK(fk_tensor_new(ctx, out, FK_F32, 2, (const int64_t[]){Li, c->out_channels}, "out") == FK_OK);
    CHECK(fk_flux_forward(ctx, r, &in, out) == FK_OK);
    fk_flux_runner_free(r);
    fk_tensor *ts[5] = {&img, &ids, &txt, &tids, &y};
    for (int i = 0; i < 5; i++) fk_tensor_free(ts[i]);
}

static void run_case(fk_context *ctx, const fk_flux_model *m, int threads, int64_t Li, int64_t Lt) {
    const fk_flux_config *c = &m->cfg;
    fk_backend *cpu = fk_backend_cpu_create(threads);
    fk_tensor o_f32, o_bf16, o_plain;
    /* q and k through linear_rmsnorm_rope in every stream with rows, every mode */
    const int dd = c->depth_double, ds = c->depth_single;
    const int want_fused = 2 * ((Li > 0) + (Lt > 0)) * dd + 2 * ds;
    /* f32 mode: nothing in bf16; the same velocity without the fused op */
    run(ctx, m, cpu, true, Li, Lt, &o_f32);
    CHECKF(n_bf16_x == 0 && n_bf16_y == 0 && n_bf16_norm == 0 && n_bf16_attn == 0 &&
               n_bf16_rope == 0 && n_bf16_qkv == 0 && n_tiles_y == 0 && n_tiles_x == 0 &&
               n_tiles_norm == 0 && n_tiles_attn == 0 && n_qk_tiles_x == 0,
           "f32 mode used bf16 activations");
    CHECKF(n_qk_fused == want_fused, "f32 mode: %d linear_rmsnorm_rope (expected %d)", n_qk_fused,
           want_fused);
    no_fused = true;
    run(ctx, m, cpu, true, Li, Lt, &o_plain);
    no_fused = false;
    CHECKF(n_qk_fused == 0 && !memcmp(o_f32.data, o_plain.data, fk_tensor_nbytes(&o_f32)),
           "Li %ld Lt %ld, %d threads, f32 mode: linear_rmsnorm_rope changes the velocity",
           (long)Li, (long)Lt, threads);
    fk_tensor_free(&o_f32);
    fk_tensor_free(&o_plain);
    if (fk_backend_cpu_set_precision(cpu, FK_PREC_BF16) != FK_CPU_BF16_NONE) {
        run(ctx, m, cpu, false, Li, Lt, &o_f32);
        CHECK(n_bf16_x == 0 && n_bf16_y == 0 && n_bf16_norm == 0 && n_bf16_attn == 0 &&
              n_bf16_rope == 0 && n_bf16_qkv == 0 && n_tiles_y == 0 && n_tiles_x == 0 &&
              n_tiles_norm == 0 && n_tiles_attn == 0);
        run(ctx, m, cpu, true, Li, Lt, &o_bf16);
        /* per double-block stream with enough rows: one bf16 hidden state
         * (mlp.0 → mlp.2) and two bf16 norms (→ q, k, v; → mlp.0), so three
         * products with a bf16 x, and when both streams have enough rows a
         * bf16 attention output (→ the proj of both: two more); per single
         * block: one hidden state, one norm (→ linear1), one attention output
         * (→ linear2), two products with a bf16 x (linear1, linear2). q, k, v
         * in bf16 where both streams have enough rows (v's product; in a
         * single block always): per such block one attention on them, two
         * rmsnorm_rope per stream and one more bf16 product output (v). The
         * hand-overs to products go tiled: the norm outputs (→ q, k, v and
         * mlp.0 of each stream with enough rows, → linear1), and the hidden
         * state (mlp.0 → mlp.2) — linear2's parts (attention output, hidden
         * state) only with whole FK_TILE_KC blocks before the second: not
         * with tiny-dev's 96 columns (the full-size step takes them: the
         * velocity check of tools/step_ab.c) */
        const int streams = (Li >= FK_CPU_BF16_MIN_M) + (Lt >= FK_CPU_BF16_MIN_M);
        const int both = streams == 2;
        const int want_y = streams * dd + ds + 2 * both * dd + ds,
                  want_norm = 2 * streams * dd + ds, want_attn = both * dd + ds,
                  want_x = 3 * streams * dd + 2 * both * dd + 2 * ds,
                  want_rope = 4 * both * dd + 2 * ds, want_qkv = both * dd + ds,
                  wide = c->hidden % FK_TILE_KC == 0, want_tiles_y = streams * dd + wide * ds,
                  want_tiles_x = 3 * streams * dd + ds + wide * ds,
                  want_tiles_norm = 2 * streams * dd + ds, want_tiles_attn = wide * ds,
                  want_qk_tiles_x = 2 * streams * dd + 2 * ds;
        CHECKF(n_bf16_y == want_y && n_bf16_norm == want_norm && n_bf16_attn == want_attn &&
                   n_bf16_x == want_x && n_bf16_rope == want_rope && n_bf16_qkv == want_qkv &&
                   n_tiles_y == want_tiles_y && n_tiles_x == want_tiles_x &&
                   n_tiles_norm == want_tiles_norm && n_tiles_attn == want_tiles_attn &&
                   n_qk_fused == want_fused && n_qk_tiles_x == want_qk_tiles_x,
               "Li %ld Lt %ld: %d bf16 product outputs (expected %d), %d bf16 norms (%d), "
               "%d bf16 attention outputs (%d), %d products with a bf16 x (%d), %d bf16 "
               "rmsnorm_rope outputs (%d), %d attentions on bf16 q, k, v (%d), tiled: %d y (%d), "
               "%d x (%d), %d norms (%d), %d attention outputs (%d); %d linear_rmsnorm_rope "
               "(%d), %d of them on a tiled x (%d)",
               (long)Li, (long)Lt, n_bf16_y, want_y, n_bf16_norm, want_norm, n_bf16_attn,
               want_attn, n_bf16_x, want_x, n_bf16_rope, want_rope, n_bf16_qkv, want_qkv,
               n_tiles_y, want_tiles_y, n_tiles_x, want_tiles_x, n_tiles_norm, want_tiles_norm,
               n_tiles_attn, want_tiles_attn, n_qk_fused, want_fused, n_qk_tiles_x,
               want_qk_tiles_x);
        CHECKF(!memcmp(o_f32.data, o_bf16.data, fk_tensor_nbytes(&o_f32)),
               "Li %ld Lt %ld, %d threads: bf16 activations change the velocity", (long)Li,
               (long)Lt, threads);
        no_fused = true; /* bf16 activations, q and k by linear and rmsnorm_rope */
        run(ctx, m, cpu, true, Li, Lt, &o_plain);
        no_fused = false;
        CHECKF(n_qk_fused == 0 && n_bf16_rope == want_rope &&
                   !memcmp(o_plain.data, o_bf16.data, fk_tensor_nbytes(&o_f32)),
               "Li %ld Lt %ld, %d threads: linear_rmsnorm_rope changes the velocity", (long)Li,
               (long)Lt, threads);
        fk_tensor_free(&o_plain);
        fk_tensor_free(&o_f32);
        fk_tensor_free(&o_bf16);
    } else {
        printf("no bf16 kernel on this machine: bf16 mode not run\n");
    }
    cpu->destroy(cpu);
}

int main(void) {
    fk_context *ctx = fk_context_create(2);
    fk_flux_model *m = NULL;
    CHECK(fk_flux_load(ctx, "tests/data/flux/tiny-dev.weights.bf16.safetensors", &m) == FK_OK);
    if (m) {
        run_case(ctx, m, 1, 64, 20);
        run_case(ctx, m, 2, 64, 20);
        run_case(ctx, m, 2, 48, 8); /* the text stream too short for the bf16 product */
    }
    fk_flux_free(m);
    fk_context_free(ctx);
    return fk_test_finish("test_flux_bf16_io");
}
