/* CLIP text encoder against Hugging Face transformers' CLIPTextModel
 * (tools/gen_text_encoder_fixtures.py: tiny random config of the real
 * architecture, 3 layers, width 64, 4 heads, 77 positions, legacy eos 2).
 *
 * Tolerance: relative L2 1e-5 against the float64 reference outputs. fluxkit
 * computes in f32 with f32 accumulation (fma chains of up to 256 terms per
 * matmul element, double for norm statistics), so each op adds a relative
 * error of order √K·2⁻²⁴ ≈ 1e-6 and three residual layers plus the final norm
 * compound it to a few 1e-6; the reference's own f32 run lands at 3.6e-7 from
 * float64. A wrong activation, scale, mask or pooling position gives errors of
 * order 1e-1. Pooling is checked exactly (it is a row copy). */
#include "model/clip.h"
#include "test.h"

#include <unistd.h>

#define W_F32 "tests/data/clip/tiny-clip.weights.f32.safetensors"
#define W_HF "tests/data/clip/tiny-clip-hf"
#define IO_F64 "tests/data/clip/tiny-clip.io.f64.safetensors"

static fk_context *ctx;

typedef struct io_case {
    fk_st_file *f;
    int B, L, W;
    int64_t *ids;          /* (B, L) */
    const double *hidden;  /* (B, L, W) */
    const double *pooled;  /* (B, W) */
} io_case;

static bool io_open(io_case *io, const char *path) {
    memset(io, 0, sizeof(*io));
    if (fk_st_open(ctx, path, &io->f) != FK_OK) {
        fprintf(stderr, "%s\n", fk_context_error(ctx));
        return false;
    }
    const fk_st_tensor *ids = fk_st_find(io->f, "input_ids");
    const fk_st_tensor *h = fk_st_find(io->f, "last_hidden_state");
    const fk_st_tensor *p = fk_st_find(io->f, "pooler_output");
    if (!ids || !h || !p || ids->dtype != FK_I64 || h->dtype != FK_F64 || p->dtype != FK_F64 || ids->ndim != 2 ||
        h->ndim != 3)
        return false;
    io->B = (int)ids->shape[0];
    io->L = (int)ids->shape[1];
    io->W = (int)h->shape[2];
    io->ids = malloc(sizeof(int64_t) * (size_t)(io->B * io->L));
    memcpy(io->ids, ids->data, sizeof(int64_t) * (size_t)(io->B * io->L));
    io->hidden = h->data;
    io->pooled = p->data;
    return true;
}

static void io_close(io_case *io) {
    free(io->ids);
    fk_st_close(io->f);
}

/* Encode every row of io with model c and compare with the f64 reference. */
static void check_against_reference(fk_clip *c, const io_case *io, const char *label) {
    size_t LW = (size_t)io->L * (size_t)io->W;
    float *hid = malloc(sizeof(float) * LW), *pool = malloc(sizeof(float) * (size_t)io->W);
    for (int b = 0; b < io->B; b++) {
        fk_tensor th = fk_view2(FK_F32, hid, io->L, io->W), tp = fk_view1(FK_F32, pool, io->W);
        fk_status st = fk_clip_encode(ctx, c, io->ids + (size_t)b * (size_t)io->L, io->L, &th, &tp);
        CHECKF(st == FK_OK, "%s row %d: %s", label, b, fk_context_error(ctx));
        if (st != FK_OK) continue;
        double e_h = fk_test_rel_l2_f64(hid, io->hidden + (size_t)b * LW, LW);
        double e_p = fk_test_rel_l2_f64(pool, io->pooled + (size_t)b * (size_t)io->W, (size_t)io->W);
        CHECKF(e_h < 1e-5, "%s row %d: last_hidden_state rel L2 %.3g", label, b, e_h);
        CHECKF(e_p < 1e-5, "%s row %d: pooler_output rel L2 %.3g", label, b, e_p);
        printf("%s row %d: last_hidden_state rel L2 %.3g, pooler_output %.3g\n", label, b, e_h, e_p);
        /* pooled is exactly the hidden row at the pooling position */
        int pi = fk_clip_pool_index(fk_clip_get_config(c), io->ids + (size_t)b * (size_t)io->L, io->L);
        CHECK(memcmp(pool, hid + (size_t)pi * (size_t)io->W, sizeof(float) * (size_t)io->W) == 0);
    }
    free(hid);
    free(pool);
}

static void test_config(void) {
    fk_clip_config c;
    CHECK(fk_clip_preset("clip-l", &c));
    CHECK(c.width == 768 && c.heads == 12 && c.layers == 12 && c.mlp_hidden == 3072 && c.vocab_size == 49408 &&
          c.max_positions == 77 && c.eos_token_id == 2);
    /* openai/clip-vit-large-patch14 text model: 123,060,480 parameters */
    CHECKF(fk_clip_param_count(&c) == 123060480LL, "%lld", (long long)fk_clip_param_count(&c));
    CHECK(!strcmp(fk_clip_config_name(&c), "clip-l"));
    CHECK(fk_clip_preset("tiny-clip", &c) && !strcmp(fk_clip_config_name(&c), "tiny-clip"));
    CHECK(!fk_clip_preset("clip-xyz", &c));
}

static int64_t n_enum;
static int64_t numel_enum;
static void count_param(void *user, const char *name, int ndim, const int64_t *shape, fk_param_kind kind,
                        int64_t fan_in) {
    (void)user, (void)name, (void)kind, (void)fan_in;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    n_enum++;
    numel_enum += n;
}

static void test_tiny(fk_backend *be) {
    io_case io;
    CHECK(io_open(&io, IO_F64));
    if (!io.f) return;

    /* single file, config in __metadata__ */
    fk_clip *c = NULL;
    fk_status st = fk_clip_load(ctx, be, W_F32, &c);
    CHECKF(st == FK_OK, "%s", fk_context_error(ctx));
    if (st != FK_OK) return;
    const fk_clip_config *g = fk_clip_get_config(c);
    CHECK(g->width == 64 && g->heads == 4 && g->layers == 3 && g->mlp_hidden == 256 && g->vocab_size == 1000 &&
          g->max_positions == 77 && g->eos_token_id == 2 && fabsf(g->eps - 1e-5f) == 0);
    CHECK(!strcmp(fk_clip_config_name(g), "tiny-clip"));
    /* every tensor of the file is one fk_clip_enum_params names */
    n_enum = numel_enum = 0;
    fk_clip_enum_params(g, count_param, NULL);
    CHECK(numel_enum == fk_clip_param_count(g));
    CHECK(fk_clip_weight_bytes(c) == (uint64_t)numel_enum * 4);
    fk_st_model *m = NULL;
    CHECK(fk_st_model_open(ctx, W_F32, &m) == FK_OK);
    if (m) CHECK(fk_st_model_count(m) == n_enum);
    fk_st_model_close(m);

    check_against_reference(c, &io, "tiny-clip f32 file");

    /* pooling rule: legacy eos 2 → first maximal id (the first end-of-text) */
    CHECK(fk_clip_pool_index(g, io.ids, io.L) == 12);
    CHECK(fk_clip_pool_index(g, io.ids + io.L, io.L) == 76);
    fk_clip_config g2 = *g;
    g2.eos_token_id = 997; /* a non-legacy config pools at the first eos_token_id */
    CHECK(fk_clip_pool_index(&g2, io.ids, io.L) == 5);
    g2.eos_token_id = 999;
    CHECK(fk_clip_pool_index(&g2, io.ids, io.L) == 12);
    g2.eos_token_id = 555; /* absent → 0, like torch.argmax of an all-false mask */
    CHECK(fk_clip_pool_index(&g2, io.ids + io.L, io.L) == 0 || io.ids[io.L] == 555);

    /* a shorter sequence is a prefix computation (causal mask): hidden rows equal */
    {
        int n = 20;
        float *a = malloc(sizeof(float) * 77 * 64), *b = malloc(sizeof(float) * 20 * 64);
        fk_tensor ta = fk_view2(FK_F32, a, 77, 64), tb = fk_view2(FK_F32, b, n, 64);
        CHECK(fk_clip_encode(ctx, c, io.ids + io.L, 77, &ta, NULL) == FK_OK);
        CHECK(fk_clip_encode(ctx, c, io.ids + io.L, n, &tb, NULL) == FK_OK);
        double e = fk_test_rel_l2_f32(b, a, (size_t)n * 64);
        CHECKF(e < 1e-6, "causal prefix differs: %.3g", e);
        free(a);
        free(b);
    }

    /* bad input */
    {
        float buf[78 * 64];
        fk_tensor th = fk_view2(FK_F32, buf, 2, 64);
        int64_t bad[2] = {998, 1000};
        CHECK(fk_clip_encode(ctx, c, bad, 2, &th, NULL) == FK_ERR_ARG);
        CHECK(strstr(fk_context_error(ctx), "1000") && strstr(fk_context_error(ctx), "position 1"));
        int64_t neg[2] = {-1, 3};
        CHECK(fk_clip_encode(ctx, c, neg, 2, &th, NULL) == FK_ERR_ARG);
        int64_t many[78] = {0};
        fk_tensor t78 = fk_view2(FK_F32, buf, 78, 64);
        CHECK(fk_clip_encode(ctx, c, many, 78, &t78, NULL) == FK_ERR_ARG);
        CHECK(fk_clip_encode(ctx, c, many, 0, &th, NULL) == FK_ERR_ARG);
        fk_tensor wrong = fk_view2(FK_F32, buf, 3, 64);
        CHECK(fk_clip_encode(ctx, c, bad, 1, &wrong, NULL) == FK_ERR_ARG);
    }
    CHECK(fk_clip_buffer_bytes(c) > 0);
    fk_clip_release_buffers(c);
    CHECK(fk_clip_buffer_bytes(c) == 0);
    fk_clip_free(c);

    /* Hugging Face folder: bf16 model.safetensors + config.json (heads from it) */
    c = NULL;
    st = fk_clip_load(ctx, be, W_HF, &c);
    CHECKF(st == FK_OK, "%s", fk_context_error(ctx));
    if (st == FK_OK) {
        CHECK(fk_clip_get_config(c)->heads == 4);
        check_against_reference(c, &io, "tiny-clip HF folder (bf16)");
        fk_clip_free(c);
    }
    io_close(&io);
}

/* Determinism across thread counts: bitwise identical outputs. */
static void test_threads(void) {
    io_case io;
    if (!io_open(&io, IO_F64)) return;
    float *out[2];
    for (int r = 0; r < 2; r++) {
        fk_backend *be = fk_backend_cpu_create(r == 0 ? 1 : 3);
        fk_clip *c = NULL;
        out[r] = calloc(77 * 64, sizeof(float));
        if (be && fk_clip_load(ctx, be, W_F32, &c) == FK_OK) {
            fk_tensor t = fk_view2(FK_F32, out[r], 77, 64);
            CHECK(fk_clip_encode(ctx, c, io.ids, 77, &t, NULL) == FK_OK);
        }
        fk_clip_free(c);
        if (be) be->destroy(be);
    }
    CHECK(memcmp(out[0], out[1], 77 * 64 * sizeof(float)) == 0);
    free(out[0]);
    free(out[1]);
    io_close(&io);
}

/* ---- malformed checkpoints: copies of the tiny file with one defect ---- */

static const char *variant_prefix = "text_model."; /* replaces "text_model." */
static const char *variant_meta = NULL; /* __metadata__ "config" (NULL: the original's) */

typedef struct copy_ctx {
    const fk_st_model *src;
    const char *skip;      /* tensor left out */
    const char *reshape;   /* tensor written with its first dim - 1 */
    fk_st_spec *specs;
    const fk_st_tensor **from;
} copy_ctx;

static fk_status copy_fill(void *user, int index, void *buf, size_t nbytes) {
    copy_ctx *cc = user;
    memcpy(buf, cc->from[index]->data, nbytes);
    return FK_OK;
}

static bool write_variant(const char *path, const char *skip, const char *reshape) {
    fk_st_model *m = NULL;
    if (fk_st_model_open(ctx, W_F32, &m) != FK_OK) return false;
    int n = fk_st_model_count(m);
    copy_ctx cc = {m, skip, reshape, calloc((size_t)n, sizeof(fk_st_spec)), calloc((size_t)n, sizeof(void *))};
    char **names = calloc((size_t)n, sizeof(char *));
    int k = 0;
    for (int i = 0; i < n; i++) {
        const fk_st_tensor *t = fk_st_model_get(m, i);
        if (skip && !strcmp(t->name, skip)) continue;
        fk_st_spec *s = &cc.specs[k];
        const char *rest = !strncmp(t->name, "text_model.", 11) ? t->name + 11 : t->name;
        names[k] = malloc(strlen(variant_prefix) + strlen(rest) + 1);
        sprintf(names[k], "%s%s", variant_prefix, rest);
        s->name = names[k];
        s->dtype = t->dtype;
        s->ndim = t->ndim;
        memcpy(s->shape, t->shape, sizeof(t->shape));
        if (reshape && !strcmp(t->name, reshape)) s->shape[0] -= 1;
        cc.from[k++] = t;
    }
    const char *meta[] = {"config", variant_meta ? variant_meta : fk_st_model_meta(m, "config")};
    fk_status st = fk_st_write(ctx, path, cc.specs, k, meta, 1, copy_fill, &cc);
    for (int i = 0; i < k; i++) free(names[i]);
    free(names);
    free(cc.specs);
    free(cc.from);
    fk_st_model_close(m);
    return st == FK_OK;
}

static void test_malformed(fk_backend *be) {
    char path[128];
    snprintf(path, sizeof(path), "/tmp/fk_test_clip_%d.safetensors", (int)getpid());
    fk_clip *c = NULL;
    if (write_variant(path, "text_model.encoder.layers.1.mlp.fc2.bias", NULL)) {
        CHECK(fk_clip_load(ctx, be, path, &c) == FK_ERR_SHAPE && !c);
        CHECKF(strstr(fk_context_error(ctx), "text_model.encoder.layers.1.mlp.fc2.bias") &&
                   strstr(fk_context_error(ctx), "missing"),
               "%s", fk_context_error(ctx));
    } else {
        CHECKF(false, "writing a variant: %s", fk_context_error(ctx));
    }
    if (write_variant(path, NULL, "text_model.encoder.layers.2.layer_norm2.weight")) {
        CHECK(fk_clip_load(ctx, be, path, &c) == FK_ERR_SHAPE && !c);
        CHECKF(strstr(fk_context_error(ctx), "layers.2.layer_norm2.weight has shape [63], expected [64]"), "%s",
               fk_context_error(ctx));
    }
    if (write_variant(path, "text_model.embeddings.token_embedding.weight", NULL)) {
        CHECK(fk_clip_load(ctx, be, path, &c) == FK_ERR_FORMAT && !c);
        CHECKF(strstr(fk_context_error(ctx), "not a CLIP text model"), "%s", fk_context_error(ctx));
    }
    /* an SD-style prefix, the config from a config.json-less file: heads then
     * default to width / 64 = 1 here, so give a CLIP config in the metadata;
     * another model's config (no model_type) must be ignored, not misread */
    variant_prefix = "cond_stage_model.transformer.text_model.";
    variant_meta = "{\"model_type\": \"clip_text_model\", \"num_attention_heads\": 4}";
    if (write_variant(path, NULL, NULL)) {
        fk_status st = fk_clip_load(ctx, be, path, &c);
        CHECKF(st == FK_OK, "%s", fk_context_error(ctx));
        if (st == FK_OK) {
            io_case io;
            if (io_open(&io, IO_F64)) check_against_reference(c, &io, "tiny-clip prefixed");
            io_close(&io);
            fk_clip_free(c);
            c = NULL;
        }
    }
    variant_prefix = "";
    variant_meta = "{\"hidden_size\": 3072, \"num_heads\": 24}";
    if (write_variant(path, NULL, NULL)) {
        fk_status st = fk_clip_load(ctx, be, path, &c);
        CHECKF(st == FK_OK, "%s", fk_context_error(ctx));
        if (st == FK_OK) CHECK(fk_clip_get_config(c)->heads == 1 && fk_clip_get_config(c)->width == 64);
        fk_clip_free(c);
        c = NULL;
    }
    variant_prefix = "text_model.";
    variant_meta = NULL;
    unlink(path);
    /* a T5 file is not a CLIP model */
    CHECK(fk_clip_load(ctx, be, "tests/data/t5/tiny-t5.weights.f32.safetensors", &c) == FK_ERR_FORMAT && !c);
    CHECK(fk_clip_load(ctx, be, "tests/data/clip/does-not-exist.safetensors", &c) != FK_OK && !c);
}

int main(void) {
    ctx = fk_context_create(2);
    fk_backend *be = fk_backend_cpu_create(2);
    if (!ctx || !be) return 1;
    test_config();
    test_tiny(be);
    test_threads();
    test_malformed(be);
    be->destroy(be);
    fk_context_free(ctx);
    return fk_test_finish("test_clip");
}
