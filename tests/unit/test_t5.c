/* T5 v1.1 encoder against Hugging Face transformers' T5EncoderModel
 * (tools/gen_text_encoder_fixtures.py: tiny random config of the real
 * architecture — 3 layers, d_model 64, 4 heads × 16, gated-GELU d_ff 160,
 * 32 relative-position buckets, max distance 128 — over 136 tokens, so exact
 * buckets, log buckets and the capped last bucket all occur).
 *
 * Tolerance: relative L2 1e-5 against the float64 reference outputs. fluxkit
 * computes in f32 with f32 accumulation (fma chains of up to 160 terms, double
 * for norm statistics); each op adds a relative error of order √K·2⁻²⁴ ≈ 1e-6,
 * compounded over three residual layers and the final norm; the reference's
 * own f32 run is 1.4e-6 from float64. A wrong bucket, activation, norm or a
 * forgotten scale gives errors of order 1e-2 or more. Buckets are integers and
 * are compared exactly with the reference's for every relative position a
 * 512-token prompt has (−600…600). */
#include "model/t5.h"
#include "test.h"

#include <unistd.h>

#define W_F32 "tests/data/t5/tiny-t5.weights.f32.safetensors"
#define W_HF "tests/data/t5/tiny-t5-hf"
#define W_HF_INDEX "tests/data/t5/tiny-t5-hf/model.safetensors.index.json"
#define W_F8 "tests/data/t5/tiny-t5.weights.f8_scaled.safetensors"
#define IO_F64 "tests/data/t5/tiny-t5.io.f64.safetensors"
#define IO_F8_F64 "tests/data/t5/tiny-t5-f8.io.f64.safetensors"

static fk_context *ctx;

typedef struct io_case {
    fk_st_file *f;
    int B, L, D;
    const int64_t *ids;    /* (B, L) */
    const double *hidden;  /* (B, L, D) */
} io_case;

static bool io_open(io_case *io, const char *path) {
    memset(io, 0, sizeof(*io));
    if (fk_st_open(ctx, path, &io->f) != FK_OK) {
        fprintf(stderr, "%s\n", fk_context_error(ctx));
        return false;
    }
    const fk_st_tensor *ids = fk_st_find(io->f, "input_ids");
    const fk_st_tensor *h = fk_st_find(io->f, "last_hidden_state");
    if (!ids || !h || ids->dtype != FK_I64 || h->dtype != FK_F64 || ids->ndim != 2 || h->ndim != 3) return false;
    io->B = (int)ids->shape[0];
    io->L = (int)ids->shape[1];
    io->D = (int)h->shape[2];
    io->ids = ids->data;
    io->hidden = h->data;
    return true;
}

static void check_against_reference(fk_t5 *t, const io_case *io, const char *label) {
    size_t LD = (size_t)io->L * (size_t)io->D;
    float *out = malloc(sizeof(float) * LD);
    for (int b = 0; b < io->B; b++) {
        fk_tensor y = fk_view3(FK_F32, out, 1, io->L, io->D);
        fk_status st = fk_t5_encode(ctx, t, io->ids + (size_t)b * (size_t)io->L, io->L, &y);
        CHECKF(st == FK_OK, "%s row %d: %s", label, b, fk_context_error(ctx));
        if (st != FK_OK) continue;
        double e = fk_test_rel_l2_f64(out, io->hidden + (size_t)b * LD, LD);
        CHECKF(e < 1e-5, "%s row %d: last_hidden_state rel L2 %.3g", label, b, e);
        printf("%s row %d: last_hidden_state rel L2 %.3g\n", label, b, e);
    }
    free(out);
}

static void test_config(void) {
    fk_t5_config c;
    CHECK(fk_t5_preset("t5-xxl", &c));
    CHECK(c.d_model == 4096 && c.heads == 64 && c.d_kv == 64 && c.d_ff == 10240 && c.layers == 24 &&
          c.vocab_size == 32128 && c.num_buckets == 32 && c.max_distance == 128);
    /* google/t5-v1_1-xxl encoder (T5EncoderModel): 4,762,310,656 parameters */
    CHECKF(fk_t5_param_count(&c) == 4762310656LL, "%lld", (long long)fk_t5_param_count(&c));
    CHECK(!strcmp(fk_t5_config_name(&c), "t5-xxl"));
    CHECK(fk_t5_preset("tiny-t5", &c) && !strcmp(fk_t5_config_name(&c), "tiny-t5"));
    CHECK(!fk_t5_preset("t5-small", &c));
}

static void test_buckets(void) {
    fk_st_file *f = NULL;
    CHECK(fk_st_open(ctx, IO_F64, &f) == FK_OK);
    if (!f) return;
    const fk_st_tensor *rb = fk_st_find(f, "dbg.relative_buckets");
    CHECK(rb && rb->dtype == FK_I64 && rb->ndim == 1 && rb->shape[0] == 1201);
    if (rb) {
        const int64_t *ref = rb->data;
        int bad = 0;
        for (int i = 0; i < 1201; i++) {
            int r = i - 600;
            int b = fk_t5_relative_bucket(r, true, 32, 128);
            if (b != ref[i]) {
                if (bad++ < 5) fprintf(stderr, "bucket(%d) = %d, reference %lld\n", r, b, (long long)ref[i]);
            }
        }
        CHECKF(bad == 0, "%d buckets differ", bad);
    }
    /* hand-checked values: exact below 8, log buckets, cap at 15 (+16 for keys after the query) */
    CHECK(fk_t5_relative_bucket(0, true, 32, 128) == 0);
    CHECK(fk_t5_relative_bucket(-7, true, 32, 128) == 7);
    CHECK(fk_t5_relative_bucket(7, true, 32, 128) == 23);
    CHECK(fk_t5_relative_bucket(-16, true, 32, 128) == 10); /* 8 + log(2)/log(16)·8 = 10 */
    CHECK(fk_t5_relative_bucket(-64, true, 32, 128) == 14);
    CHECK(fk_t5_relative_bucket(-127, true, 32, 128) == 15);
    CHECK(fk_t5_relative_bucket(100000, true, 32, 128) == 31);
    fk_st_close(f);
}

static void test_tiny(fk_backend *be) {
    io_case io;
    CHECK(io_open(&io, IO_F64));
    if (!io.f) return;

    fk_t5 *t = NULL;
    fk_status st = fk_t5_load(ctx, be, W_F32, &t);
    CHECKF(st == FK_OK, "%s", fk_context_error(ctx));
    if (st == FK_OK) {
        const fk_t5_config *g = fk_t5_get_config(t);
        CHECK(g->d_model == 64 && g->heads == 4 && g->d_kv == 16 && g->d_ff == 160 && g->layers == 3 &&
              g->vocab_size == 320 && g->num_buckets == 32 && g->max_distance == 128 && g->eps == 1e-6f);
        CHECK(!strcmp(fk_t5_config_name(g), "tiny-t5"));
        CHECK(fk_t5_weight_bytes(t) == (uint64_t)fk_t5_param_count(g) * 4);
        CHECK(fk_t5_scaled_linears(t) == 0);
        check_against_reference(t, &io, "tiny-t5 f32 file");

        /* bad input */
        float buf[4 * 64];
        fk_tensor y = fk_view2(FK_F32, buf, 2, 64);
        int64_t bad[2] = {5, 320};
        CHECK(fk_t5_encode(ctx, t, bad, 2, &y) == FK_ERR_ARG);
        CHECK(strstr(fk_context_error(ctx), "320") && strstr(fk_context_error(ctx), "position 1"));
        CHECK(fk_t5_encode(ctx, t, bad, 0, &y) == FK_ERR_ARG);
        CHECK(fk_t5_encode(ctx, t, bad, 1, &y) == FK_ERR_ARG); /* output has 2 rows */
        /* one token: no attention partner but itself */
        fk_tensor y1 = fk_view2(FK_F32, buf, 1, 64);
        CHECK(fk_t5_encode(ctx, t, bad, 1, &y1) == FK_OK);
        CHECK(fk_t5_buffer_bytes(t) == fk_t5_buffer_bytes_for(g, io.L));
        fk_t5_release_buffers(t);
        CHECK(fk_t5_buffer_bytes(t) == 0);
        fk_t5_free(t);
    }

    /* HF folder (2 bf16 shards + index + config.json), the folder and the index file */
    const char *hf[] = {W_HF, W_HF_INDEX};
    for (int i = 0; i < 2; i++) {
        t = NULL;
        st = fk_t5_load(ctx, be, hf[i], &t);
        CHECKF(st == FK_OK, "%s: %s", hf[i], fk_context_error(ctx));
        if (st != FK_OK) continue;
        CHECK(fk_t5_get_config(t)->heads == 4 && fk_t5_get_config(t)->max_distance == 128);
        CHECK(fk_t5_weight_bytes(t) == (uint64_t)fk_t5_param_count(fk_t5_get_config(t)) * 2);
        check_against_reference(t, &io, i ? "tiny-t5 HF index (bf16)" : "tiny-t5 HF folder (bf16)");
        fk_t5_free(t);
    }
    fk_st_close(io.f);

    /* ComfyUI scaled fp8: F8_E4M3 linears with scale_weight, F16 others, no config */
    CHECK(io_open(&io, IO_F8_F64));
    if (!io.f) return;
    t = NULL;
    st = fk_t5_load(ctx, be, W_F8, &t);
    CHECKF(st == FK_OK, "%s", fk_context_error(ctx));
    if (st == FK_OK) {
        CHECK(fk_t5_get_config(t)->heads == 4); /* from relative_attention_bias (32, 4) */
        CHECK(fk_t5_scaled_linears(t) == 3 * 7);
        check_against_reference(t, &io, "tiny-t5 scaled fp8");
        fk_t5_free(t);
    }
    fk_st_close(io.f);
}

/* ---- malformed checkpoints: copies of the tiny file with one defect ---- */

typedef struct copy_ctx {
    const fk_st_tensor **from;
} copy_ctx;

static fk_status copy_fill(void *user, int index, void *buf, size_t nbytes) {
    copy_ctx *cc = user;
    memcpy(buf, cc->from[index]->data, nbytes);
    return FK_OK;
}

/* skip: tensor left out; reshape: written with its last dim - 1; rename:
 * "old=new" renames one tensor. */
static const char *variant_prefix = "";  /* prepended to every name */
static const char *variant_meta = NULL;  /* __metadata__ "config" */

static bool write_variant(const char *path, const char *skip, const char *reshape, const char *rename_from,
                          const char *rename_to) {
    fk_st_model *m = NULL;
    if (fk_st_model_open(ctx, W_F32, &m) != FK_OK) return false;
    int n = fk_st_model_count(m);
    fk_st_spec *specs = calloc((size_t)n, sizeof(fk_st_spec));
    copy_ctx cc = {calloc((size_t)n, sizeof(void *))};
    char **names = calloc((size_t)n, sizeof(char *));
    int k = 0;
    for (int i = 0; i < n; i++) {
        const fk_st_tensor *t = fk_st_model_get(m, i);
        if (skip && !strcmp(t->name, skip)) continue;
        fk_st_spec *s = &specs[k];
        const char *nm = (rename_from && !strcmp(t->name, rename_from)) ? rename_to : t->name;
        names[k] = malloc(strlen(variant_prefix) + strlen(nm) + 1);
        sprintf(names[k], "%s%s", variant_prefix, nm);
        s->name = names[k];
        s->dtype = t->dtype;
        s->ndim = t->ndim;
        memcpy(s->shape, t->shape, sizeof(t->shape));
        if (reshape && !strcmp(t->name, reshape)) s->shape[s->ndim - 1] -= 1;
        cc.from[k++] = t;
    }
    const char *meta[] = {"config", variant_meta};
    fk_status st = fk_st_write(ctx, path, specs, k, meta, variant_meta ? 1 : 0, copy_fill, &cc);
    for (int i = 0; i < k; i++) free(names[i]);
    free(names);
    free(specs);
    free(cc.from);
    fk_st_model_close(m);
    return st == FK_OK;
}

static void test_malformed(fk_backend *be) {
    char path[128];
    snprintf(path, sizeof(path), "/tmp/fk_test_t5_%d.safetensors", (int)getpid());
    fk_t5 *t = NULL;
    fk_status st;
    CHECK(write_variant(path, "encoder.block.2.layer.1.DenseReluDense.wo.weight", NULL, NULL, NULL));
    CHECK(fk_t5_load(ctx, be, path, &t) == FK_ERR_SHAPE && !t);
    CHECKF(strstr(fk_context_error(ctx), "encoder.block.2.layer.1.DenseReluDense.wo.weight missing (expected shape [64, 160])"),
           "%s", fk_context_error(ctx));
    CHECK(write_variant(path, NULL, "encoder.block.1.layer.0.SelfAttention.k.weight", NULL, NULL));
    CHECK(fk_t5_load(ctx, be, path, &t) == FK_ERR_SHAPE && !t);
    CHECKF(strstr(fk_context_error(ctx), "SelfAttention.k.weight has shape [64, 63], expected [64, 64]"), "%s",
           fk_context_error(ctx));
    CHECK(write_variant(path, "shared.weight", NULL, NULL, NULL));
    CHECK(fk_t5_load(ctx, be, path, &t) == FK_ERR_FORMAT && !t);
    CHECKF(strstr(fk_context_error(ctx), "embedding missing"), "%s", fk_context_error(ctx));
    /* the embedding under encoder.embed_tokens.weight (the other HF spelling) loads */
    CHECK(write_variant(path, NULL, NULL, "shared.weight", "encoder.embed_tokens.weight"));
    CHECK(fk_t5_load(ctx, be, path, &t) == FK_OK && t);
    fk_t5_free(t);
    t = NULL;
    /* T5 v1.0 (single wi) is named as unsupported */
    CHECK(write_variant(path, NULL, NULL, "encoder.block.0.layer.1.DenseReluDense.wi_0.weight",
                        "encoder.block.0.layer.1.DenseReluDense.wi.weight"));
    CHECK(fk_t5_load(ctx, be, path, &t) == FK_ERR_UNSUPPORTED && !t);
    /* a ComfyUI all-in-one layout: everything under text_encoders.t5xxl.transformer.,
     * with another model's config in __metadata__ (no model_type: not taken) */
    variant_prefix = "text_encoders.t5xxl.transformer.";
    variant_meta = "{\"hidden_size\": 3072, \"num_heads\": 24, \"d_model\": 3072}";
    CHECK(write_variant(path, NULL, NULL, NULL, NULL));
    variant_prefix = "";
    variant_meta = NULL;
    st = fk_t5_load(ctx, be, path, &t);
    CHECKF(st == FK_OK && t, "%s", fk_context_error(ctx));
    if (t) {
        CHECK(fk_t5_get_config(t)->heads == 4 && fk_t5_get_config(t)->d_model == 64);
        io_case io;
        if (io_open(&io, IO_F64)) check_against_reference(t, &io, "tiny-t5 prefixed");
        fk_st_close(io.f);
        fk_t5_free(t);
        t = NULL;
    }
    unlink(path);
    CHECK(fk_t5_load(ctx, be, "tests/data/clip/tiny-clip.weights.f32.safetensors", &t) == FK_ERR_FORMAT && !t);
}

int main(void) {
    ctx = fk_context_create(2);
    fk_backend *be = fk_backend_cpu_create(2);
    if (!ctx || !be) return 1;
    test_config();
    test_buckets();
    test_tiny(be);
    test_malformed(be);
    be->destroy(be);
    fk_context_free(ctx);
    return fk_test_finish("test_t5");
}
