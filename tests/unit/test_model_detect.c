/* test_model_detect: classify checkpoints by key names and shapes.
 * References: the fixtures' __metadata__ configs (tiny-dev, tiny-schnell,
 * ae-tiny) and synthetic headers built here with the official key layouts of
 * HF T5EncoderModel, HF CLIPTextModel, diffusers AutoencoderKL and the
 * ComfyUI all-in-one prefixes, whose configurations are known by
 * construction. Only headers matter (tensor data is zeros). */
#include "model/model_detect.h"
#include "test.h"

#include <stdarg.h>
#include <unistd.h>

/* ---- a list of tensor specs written as a zero-filled safetensors file ---- */

typedef struct spec_list {
    fk_st_spec s[512];
    char names[512][160];
    int n;
} spec_list;

static void add(spec_list *l, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void add(spec_list *l, int ndim, const int64_t *shape, const char *fmt, ...) {
    if (l->n >= 512) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->names[l->n], sizeof(l->names[0]), fmt, ap);
    va_end(ap);
    fk_st_spec *s = &l->s[l->n];
    memset(s, 0, sizeof(*s));
    s->name = l->names[l->n];
    s->dtype = FK_BF16;
    s->ndim = ndim;
    for (int d = 0; d < ndim; d++) s->shape[d] = shape[d];
    l->n++;
}
#define ADD2(l, a, b, ...) add(l, 2, (const int64_t[]){a, b}, __VA_ARGS__)
#define ADD1(l, a, ...) add(l, 1, (const int64_t[]){a}, __VA_ARGS__)
#define ADD4(l, a, b, c, d, ...) add(l, 4, (const int64_t[]){a, b, c, d}, __VA_ARGS__)

static fk_status zero_fill(void *user, int index, void *buf, size_t nbytes) {
    (void)user;
    (void)index;
    memset(buf, 0, nbytes);
    return FK_OK;
}

typedef struct flux_collect {
    spec_list *l;
    const char *prefix;
} flux_collect;
static void flux_param(void *user, const char *name, int ndim, const int64_t *shape, fk_param_kind kind,
                       int64_t fan_in) {
    (void)kind;
    (void)fan_in;
    flux_collect *c = user;
    add(c->l, ndim, shape, "%s%s", c->prefix, name);
}

static void t5(spec_list *l, const char *p, int d_model, int layers, int heads, int d_kv, int d_ff, int vocab) {
    ADD2(l, vocab, d_model, "%sshared.weight", p);
    for (int i = 0; i < layers; i++) {
        const char *qkvo[] = {"q", "k", "v"};
        for (int k = 0; k < 3; k++)
            ADD2(l, heads * d_kv, d_model, "%sencoder.block.%d.layer.0.SelfAttention.%s.weight", p, i, qkvo[k]);
        ADD2(l, d_model, heads * d_kv, "%sencoder.block.%d.layer.0.SelfAttention.o.weight", p, i);
        if (i == 0) ADD2(l, 32, heads, "%sencoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", p);
        ADD1(l, d_model, "%sencoder.block.%d.layer.0.layer_norm.weight", p, i);
        ADD2(l, d_ff, d_model, "%sencoder.block.%d.layer.1.DenseReluDense.wi_0.weight", p, i);
        ADD2(l, d_ff, d_model, "%sencoder.block.%d.layer.1.DenseReluDense.wi_1.weight", p, i);
        ADD2(l, d_model, d_ff, "%sencoder.block.%d.layer.1.DenseReluDense.wo.weight", p, i);
        ADD1(l, d_model, "%sencoder.block.%d.layer.1.layer_norm.weight", p, i);
    }
    ADD1(l, d_model, "%sencoder.final_layer_norm.weight", p);
}

static void clip(spec_list *l, const char *p, int width, int layers, int mlp, int vocab, int pos) {
    ADD2(l, vocab, width, "%stext_model.embeddings.token_embedding.weight", p);
    ADD2(l, pos, width, "%stext_model.embeddings.position_embedding.weight", p);
    for (int i = 0; i < layers; i++) {
        const char *proj[] = {"q_proj", "k_proj", "v_proj", "out_proj"};
        for (int k = 0; k < 4; k++) {
            ADD2(l, width, width, "%stext_model.encoder.layers.%d.self_attn.%s.weight", p, i, proj[k]);
            ADD1(l, width, "%stext_model.encoder.layers.%d.self_attn.%s.bias", p, i, proj[k]);
        }
        ADD2(l, mlp, width, "%stext_model.encoder.layers.%d.mlp.fc1.weight", p, i);
        ADD2(l, width, mlp, "%stext_model.encoder.layers.%d.mlp.fc2.weight", p, i);
    }
    ADD1(l, width, "%stext_model.final_layer_norm.weight", p);
}

/* diffusers AutoencoderKL: encoder.down_blocks.i.resnets.j, decoder.up_blocks
 * numbered from the lowest resolution. */
static void ae_diffusers(spec_list *l, int ch, const int *mult, int levels, int nres, int z, bool encoder) {
    if (encoder) {
        ADD4(l, ch, 3, 3, 3, "encoder.conv_in.weight");
        int cin = ch;
        for (int i = 0; i < levels; i++) {
            int cout = ch * mult[i];
            for (int j = 0; j < nres; j++) {
                ADD4(l, cout, j ? cout : cin, 3, 3, "encoder.down_blocks.%d.resnets.%d.conv1.weight", i, j);
                ADD4(l, cout, cout, 3, 3, "encoder.down_blocks.%d.resnets.%d.conv2.weight", i, j);
            }
            cin = cout;
        }
        ADD4(l, 2 * z, cin, 3, 3, "encoder.conv_out.weight");
    }
    int top = ch * mult[levels - 1];
    ADD4(l, top, z, 3, 3, "decoder.conv_in.weight");
    int cin = top;
    for (int k = 0; k < levels; k++) {
        int lvl = levels - 1 - k;
        int cout = ch * mult[lvl];
        for (int j = 0; j < nres + 1; j++) {
            ADD4(l, cout, j ? cout : cin, 3, 3, "decoder.up_blocks.%d.resnets.%d.conv1.weight", k, j);
            ADD4(l, cout, cout, 3, 3, "decoder.up_blocks.%d.resnets.%d.conv2.weight", k, j);
        }
        cin = cout;
    }
    ADD4(l, 3, ch * mult[0], 3, 3, "decoder.conv_out.weight");
}

static char tmp_path[256];

/* write l to a temporary file, open it and detect */
static bool detect(fk_context *ctx, spec_list *l, fk_model_info *info) {
    snprintf(tmp_path, sizeof(tmp_path), "/tmp/fk_test_model_detect_%d.safetensors", (int)getpid());
    if (fk_st_write(ctx, tmp_path, l->s, l->n, NULL, 0, zero_fill, NULL) != FK_OK) {
        fprintf(stderr, "write: %s\n", fk_context_error(ctx));
        return false;
    }
    fk_st_model *m = NULL;
    bool ok = fk_st_model_open(ctx, tmp_path, &m) == FK_OK;
    if (!ok) fprintf(stderr, "open: %s\n", fk_context_error(ctx));
    ok = ok && fk_model_detect(ctx, m, info) == FK_OK;
    fk_st_model_close(m);
    unlink(tmp_path);
    return ok;
}

static bool detect_file(fk_context *ctx, const char *path, fk_model_info *info) {
    fk_st_model *m = NULL;
    if (fk_st_model_open(ctx, path, &m) != FK_OK) {
        fprintf(stderr, "open: %s\n", fk_context_error(ctx));
        return false;
    }
    bool ok = fk_model_detect(ctx, m, info) == FK_OK;
    fk_st_model_close(m);
    return ok;
}

static const fk_model_component *find(const fk_model_info *info, fk_model_kind k) {
    for (int i = 0; i < info->n; i++)
        if (info->comp[i].kind == k) return &info->comp[i];
    return NULL;
}

int main(void) {
    fk_context *ctx = fk_context_create(1);
    fk_model_info info;
    static spec_list l;

    /* fixtures */
    CHECK(detect_file(ctx, "tests/data/flux/tiny-dev.weights.f32.safetensors", &info));
    CHECK(info.n == 1 && info.comp[0].kind == FK_MODEL_FLUX);
    const fk_model_component *c = find(&info, FK_MODEL_FLUX);
    CHECK(c && c->flux.hidden == 96 && c->flux.num_heads == 3 && c->flux.depth_double == 2 &&
          c->flux.depth_single == 2 && c->flux.guidance_embed && c->flux.context_dim == 32 &&
          c->flux.vec_dim == 24 && c->format && !strcmp(c->format, "bfl"));
    CHECK(detect_file(ctx, "tests/data/flux/tiny-schnell.weights.bf16.safetensors", &info));
    c = find(&info, FK_MODEL_FLUX);
    CHECK(c && c->flux.hidden == 64 && c->flux.num_heads == 4 && !c->flux.guidance_embed);

    CHECK(detect_file(ctx, "tests/data/ae/ae-tiny.weights.f32.safetensors", &info));
    CHECK(info.n == 1);
    c = find(&info, FK_MODEL_AE);
    CHECK(c && c->ae.ch == 32 && c->ae.n_levels == 2 && c->ae.ch_mult[0] == 1 && c->ae.ch_mult[1] == 2 &&
          c->ae.num_res_blocks == 1 && c->ae.z_channels == 16 && c->ae.in_channels == 3 &&
          c->ae.out_ch == 3 && c->ae.has_encoder && c->ae.has_decoder && !strcmp(c->format, "bfl"));

    /* T5-XXL-shaped header (shapes only; zero data of 4.8 GB would be too
     * big, so a tiny T5 with the same layout, then a naming check by shape) */
    l.n = 0;
    t5(&l, "", 64, 3, 4, 16, 160, 100);
    CHECK(detect(ctx, &l, &info));
    c = find(&info, FK_MODEL_T5);
    CHECK(info.n == 1 && c);
    CHECK(c && c->t5.d_model == 64 && c->t5.num_layers == 3 && c->t5.num_heads == 4 && c->t5.d_kv == 16 &&
          c->t5.d_ff == 160 && c->t5.vocab == 100 && c->t5.gated && c->t5.rel_buckets == 32 &&
          !c->t5.has_decoder && !strcmp(c->name, "custom") && !strcmp(c->format, "hf"));

    /* CLIP text encoder */
    l.n = 0;
    clip(&l, "", 128, 2, 512, 1000, 77);
    CHECK(detect(ctx, &l, &info));
    c = find(&info, FK_MODEL_CLIP);
    CHECK(info.n == 1 && c && c->clip.width == 128 && c->clip.layers == 2 && c->clip.heads == 2 &&
          c->clip.mlp == 512 && c->clip.vocab == 1000 && c->clip.max_pos == 77 && c->clip.proj_dim == 0);

    /* diffusers autoencoder, and its decoder alone */
    const int mult[3] = {1, 2, 2};
    l.n = 0;
    ae_diffusers(&l, 16, mult, 3, 2, 4, true);
    CHECK(detect(ctx, &l, &info));
    c = find(&info, FK_MODEL_AE);
    CHECK(info.n == 1 && c && c->ae.ch == 16 && c->ae.n_levels == 3 && c->ae.ch_mult[0] == 1 &&
          c->ae.ch_mult[1] == 2 && c->ae.ch_mult[2] == 2 && c->ae.num_res_blocks == 2 &&
          c->ae.z_channels == 4 && !strcmp(c->format, "diffusers"));
    l.n = 0;
    ae_diffusers(&l, 16, mult, 3, 2, 4, false);
    CHECK(detect(ctx, &l, &info));
    c = find(&info, FK_MODEL_AE);
    CHECK(c && !c->ae.has_encoder && c->ae.has_decoder && c->ae.ch == 16 && c->ae.n_levels == 3 &&
          c->ae.ch_mult[1] == 2 && c->ae.num_res_blocks == 2 && c->ae.z_channels == 4);

    /* all-in-one file: prefixed transformer + text encoders */
    l.n = 0;
    fk_flux_config cfg;
    CHECK(fk_flux_preset("tiny-flux", &cfg));
    flux_collect fc = {&l, "model.diffusion_model."};
    fk_flux_enum_params(&cfg, flux_param, &fc);
    clip(&l, "text_encoders.clip_l.transformer.", 64, 2, 256, 500, 77);
    t5(&l, "text_encoders.t5xxl.transformer.", 32, 2, 2, 16, 64, 50);
    CHECK(detect(ctx, &l, &info));
    CHECKF(info.n == 3, "n %d note %s", info.n, info.note);
    c = find(&info, FK_MODEL_FLUX);
    CHECKF(c && c->flux.hidden == cfg.hidden && c->flux.depth_double == cfg.depth_double &&
           !strcmp(c->prefix, "model.diffusion_model.") &&
           !strcmp(c->format, "bfl-prefixed"),
           "%s %s %s", c ? c->prefix : "-", c ? c->name : "-", c ? c->format : "-");
    c = find(&info, FK_MODEL_CLIP);
    CHECK(c && c->clip.width == 64 && !strcmp(c->prefix, "text_encoders.clip_l.transformer.") &&
          !strcmp(c->format, "hf-prefixed"));
    c = find(&info, FK_MODEL_T5);
    CHECK(c && c->t5.d_model == 32 && c->t5.num_layers == 2 && !strcmp(c->prefix, "text_encoders.t5xxl.transformer."));

    /* unknown: unrelated names; and a T5 whose attention bias is missing */
    l.n = 0;
    ADD2(&l, 4, 4, "layer.0.weight");
    ADD1(&l, 4, "encoder.conv_in.weight"); /* conv_in alone, 1-D: not an autoencoder */
    CHECK(detect(ctx, &l, &info));
    CHECK(info.n == 0);
    l.n = 0;
    ADD2(&l, 64, 64, "encoder.block.0.layer.0.SelfAttention.q.weight");
    CHECK(detect(ctx, &l, &info));
    CHECK(info.n == 0 && strstr(info.note, "T5") != NULL);

    /* a FLUX transformer without its final layer: not recognized, the note says why */
    l.n = 0;
    fc.prefix = "";
    fk_flux_enum_params(&cfg, flux_param, &fc);
    for (int i = 0; i < l.n; i++)
        if (!strcmp(l.names[i], "final_layer.linear.weight")) l.s[i] = l.s[--l.n];
    CHECK(detect(ctx, &l, &info));
    CHECKF(find(&info, FK_MODEL_FLUX) == NULL && strstr(info.note, "FLUX") != NULL, "n %d note %s", info.n, info.note);

    CHECK(fk_model_detect(ctx, NULL, &info) == FK_ERR_ARG);
    CHECK(!strcmp(fk_model_kind_name(FK_MODEL_AE), "ae") && !strcmp(fk_model_kind_name(FK_MODEL_UNKNOWN), "unknown"));
    fk_context_free(ctx);
    return fk_test_finish("test_model_detect");
}
