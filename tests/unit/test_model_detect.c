/* test_model_detect: classify checkpoints with the modules' own config
 * inference (fk_flux/t5/clip/vae_config_infer) and report their configs.
 * References: the fixtures' __metadata__ "config" / config.json (tiny-dev,
 * tiny-schnell, ae-tiny, tiny-clip, tiny-t5, the pipeline's tiny-clip-l and
 * tiny-t5xxl), whose values are restated here, and synthetic headers built
 * with the official key layouts of HF T5EncoderModel, HF CLIPTextModel,
 * diffusers AutoencoderKL and the ComfyUI all-in-one prefixes, whose
 * configurations are known by construction. Only headers matter (tensor data
 * is zeros); all values compared are exact integers. */
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

/* collects a module's parameter list (fk_param_fn) under a key prefix */
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

/* HF T5EncoderModel keys (v1.1, gated); bias: with layer 0's
 * relative_attention_bias; v10: T5 v1.0's single DenseReluDense.wi */
static void t5_keys(spec_list *l, const char *p, int d_model, int layers, int heads, int d_kv, int d_ff, int vocab,
                    bool bias, bool v10) {
    ADD2(l, vocab, d_model, "%sshared.weight", p);
    for (int i = 0; i < layers; i++) {
        const char *qkvo[] = {"q", "k", "v"};
        for (int k = 0; k < 3; k++)
            ADD2(l, heads * d_kv, d_model, "%sencoder.block.%d.layer.0.SelfAttention.%s.weight", p, i, qkvo[k]);
        ADD2(l, d_model, heads * d_kv, "%sencoder.block.%d.layer.0.SelfAttention.o.weight", p, i);
        if (i == 0 && bias)
            ADD2(l, 32, heads, "%sencoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", p);
        ADD1(l, d_model, "%sencoder.block.%d.layer.0.layer_norm.weight", p, i);
        if (v10) {
            ADD2(l, d_ff, d_model, "%sencoder.block.%d.layer.1.DenseReluDense.wi.weight", p, i);
        } else {
            ADD2(l, d_ff, d_model, "%sencoder.block.%d.layer.1.DenseReluDense.wi_0.weight", p, i);
            ADD2(l, d_ff, d_model, "%sencoder.block.%d.layer.1.DenseReluDense.wi_1.weight", p, i);
        }
        ADD2(l, d_model, d_ff, "%sencoder.block.%d.layer.1.DenseReluDense.wo.weight", p, i);
        ADD1(l, d_model, "%sencoder.block.%d.layer.1.layer_norm.weight", p, i);
    }
    ADD1(l, d_model, "%sencoder.final_layer_norm.weight", p);
}
static void t5(spec_list *l, const char *p, int d_model, int layers, int heads, int d_kv, int d_ff, int vocab) {
    t5_keys(l, p, d_model, layers, heads, d_kv, d_ff, vocab, true, false);
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

/* write l (with __metadata__ "config" = config when not NULL) to a
 * temporary file, open it and detect */
static bool detect_meta(fk_context *ctx, spec_list *l, const char *config, fk_model_info *info) {
    snprintf(tmp_path, sizeof(tmp_path), "/tmp/fk_test_model_detect_%d.safetensors", (int)getpid());
    const char *meta[2] = {"config", config};
    if (fk_st_write(ctx, tmp_path, l->s, l->n, config ? meta : NULL, config ? 1 : 0, zero_fill, NULL) != FK_OK) {
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
static bool detect(fk_context *ctx, spec_list *l, fk_model_info *info) {
    return detect_meta(ctx, l, NULL, info);
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

/* A fixture's single component of kind k, or NULL (with the note printed). */
static const fk_model_component *only(const fk_model_info *info, fk_model_kind k) {
    if (info->n == 1 && info->comp[0].kind == k) return &info->comp[0];
    fprintf(stderr, "expected one %s component, got %d (note: %s)\n", fk_model_kind_name(k), info->n, info->note);
    return NULL;
}

int main(void) {
    fk_context *ctx = fk_context_create(1);
    fk_model_info info;
    static spec_list l;
    const fk_model_component *c;

    /* ---- FLUX fixtures (metadata: tiny-dev hidden 96, 3 heads, 2 + 2 blocks,
     * guidance, context 32, vec 24; tiny-schnell hidden 64, 4 heads) */
    CHECK(detect_file(ctx, "tests/data/flux/tiny-dev.weights.f32.safetensors", &info));
    c = only(&info, FK_MODEL_FLUX);
    CHECK(c && c->flux.hidden == 96 && c->flux.num_heads == 3 && c->flux.depth_double == 2 &&
          c->flux.depth_single == 2 && c->flux.guidance_embed && c->flux.context_dim == 32 &&
          c->flux.vec_dim == 24 && c->format && !strcmp(c->format, "bfl") && !strcmp(c->prefix, ""));
    CHECK(c && !strcmp(c->name, fk_flux_config_name(&c->flux)));
    CHECK(detect_file(ctx, "tests/data/flux/tiny-schnell.weights.bf16.safetensors", &info));
    c = only(&info, FK_MODEL_FLUX);
    CHECK(c && c->flux.hidden == 64 && c->flux.num_heads == 4 && !c->flux.guidance_embed);
    CHECK(detect_file(ctx, "tests/data/flux-diffusers/tiny-dev", &info));
    c = only(&info, FK_MODEL_FLUX);
    CHECK(c && c->flux.hidden == 96 && c->flux.depth_single == 2 && !strcmp(c->format, "diffusers"));

    /* ---- autoencoder fixtures (metadata: ch 32, ch_mult [1, 2], 1 res
     * block, z 16, scale 0.3611, shift 0.1159 = the tiny-ae preset, vae.h) */
    CHECK(detect_file(ctx, "tests/data/ae/ae-tiny.weights.f32.safetensors", &info));
    c = only(&info, FK_MODEL_AE);
    CHECK(c && c->ae.ch == 32 && c->ae.n_levels == 2 && c->ae.ch_mult[0] == 1 && c->ae.ch_mult[1] == 2 &&
          c->ae.num_res_blocks == 1 && c->ae.z_channels == 16 && c->ae.in_channels == 3 && c->ae.out_ch == 3 &&
          c->ae.has_encoder && c->ae.has_decoder && !strcmp(c->format, "bfl") && !strcmp(c->prefix, ""));
    CHECK(c && fabsf(c->ae.scale_factor - 0.3611f) < 1e-6f && fabsf(c->ae.shift_factor - 0.1159f) < 1e-6f);
    CHECKF(c && !strcmp(c->name, fk_vae_config_name(&c->ae)) && !strcmp(c->name, "tiny-ae"), "name %s",
           c ? c->name : "-");
    CHECK(detect_file(ctx, "tests/data/ae-diffusers/vae", &info));
    c = only(&info, FK_MODEL_AE);
    CHECK(c && c->ae.ch == 32 && c->ae.n_levels == 2 && c->ae.z_channels == 16 && !strcmp(c->format, "diffusers") &&
          !strcmp(c->name, "tiny-ae"));

    /* ---- CLIP fixtures. tiny-clip: metadata config vocab 1000, width 64,
     * 3 layers, 4 heads (not width/64 = 1), mlp 256, 77 positions. */
    const char *tiny_clip[] = {"tests/data/clip/tiny-clip.weights.f32.safetensors", "tests/data/clip/tiny-clip-hf"};
    for (int i = 0; i < 2; i++) {
        CHECK(detect_file(ctx, tiny_clip[i], &info));
        c = only(&info, FK_MODEL_CLIP);
        CHECKF(c && c->clip.heads == 4 && c->clip.width == 64 && c->clip.layers == 3 && c->clip.mlp_hidden == 256 &&
                   c->clip.vocab_size == 1000 && c->clip.max_positions == 77 && c->clip.eos_token_id == 2 &&
                   !strcmp(c->prefix, "") && !strcmp(c->format, "hf") && !strcmp(c->name, "tiny-clip"),
               "%s: heads %d name %s", tiny_clip[i], c ? c->clip.heads : -1, c ? c->name : "-");
    }
    /* the pipeline's tiny-clip-l: bare keys (embeddings..., no text_model.),
     * width 24 (not a multiple of 64), metadata: 2 heads, 2 layers, mlp 48 */
    CHECK(detect_file(ctx, "tests/data/pipeline/tiny-clip-l.safetensors", &info));
    c = only(&info, FK_MODEL_CLIP);
    CHECK(c && c->clip.width == 24 && c->clip.heads == 2 && c->clip.layers == 2 && c->clip.mlp_hidden == 48 &&
          c->clip.vocab_size == 49408 && !strcmp(c->prefix, "") && !strcmp(c->name, "custom"));

    /* ---- T5 fixtures. tiny-t5: metadata vocab 320, d_model 64, 3 layers,
     * 4 heads x 16, d_ff 160; also its fp8 file with scales and the HF folder */
    const char *tiny_t5[] = {"tests/data/t5/tiny-t5.weights.f32.safetensors",
                             "tests/data/t5/tiny-t5.weights.f8_scaled.safetensors", "tests/data/t5/tiny-t5-hf"};
    for (int i = 0; i < 3; i++) {
        CHECK(detect_file(ctx, tiny_t5[i], &info));
        c = only(&info, FK_MODEL_T5);
        CHECKF(c && c->t5.vocab_size == 320 && c->t5.d_model == 64 && c->t5.layers == 3 && c->t5.heads == 4 &&
                   c->t5.d_kv == 16 && c->t5.d_ff == 160 && c->t5.num_buckets == 32 && c->t5.max_distance == 128 &&
                   !c->t5_has_decoder && !strcmp(c->prefix, "") && !strcmp(c->format, "hf") &&
                   !strcmp(c->name, "tiny-t5"),
               "%s: %s", tiny_t5[i], c ? c->name : "-");
    }
    /* the pipeline's tiny-t5xxl: metadata d_model 32, 2 layers, 4 heads x 8, d_ff 48, vocab 32128 */
    CHECK(detect_file(ctx, "tests/data/pipeline/tiny-t5xxl.safetensors", &info));
    c = only(&info, FK_MODEL_T5);
    CHECK(c && c->t5.d_model == 32 && c->t5.layers == 2 && c->t5.heads == 4 && c->t5.d_kv == 8 && c->t5.d_ff == 48 &&
          c->t5.vocab_size == 32128 && !strcmp(c->name, "custom"));

    /* ---- synthetic HF T5 encoder header (no config: max_distance 128 default) */
    l.n = 0;
    t5(&l, "", 64, 3, 4, 16, 160, 100);
    CHECK(detect(ctx, &l, &info));
    c = only(&info, FK_MODEL_T5);
    CHECK(c && c->t5.d_model == 64 && c->t5.layers == 3 && c->t5.heads == 4 && c->t5.d_kv == 16 &&
          c->t5.d_ff == 160 && c->t5.vocab_size == 100 && c->t5.num_buckets == 32 && c->t5.max_distance == 128 &&
          !c->t5_has_decoder && !strcmp(c->name, "custom") && !strcmp(c->format, "hf") && !info.note[0]);
    /* ... with a decoder block: still the encoder, and the decoder is noted */
    ADD2(&l, 64, 64, "decoder.block.0.layer.0.SelfAttention.q.weight");
    CHECK(detect(ctx, &l, &info));
    c = only(&info, FK_MODEL_T5);
    CHECK(c && c->t5_has_decoder && c->t5.layers == 3 && !info.note[0]);

    /* ---- synthetic HF CLIP text encoder: no config, heads = width / 64 */
    l.n = 0;
    clip(&l, "", 128, 2, 512, 1000, 77);
    CHECK(detect(ctx, &l, &info));
    c = only(&info, FK_MODEL_CLIP);
    CHECK(c && c->clip.width == 128 && c->clip.layers == 2 && c->clip.heads == 2 && c->clip.mlp_hidden == 512 &&
          c->clip.vocab_size == 1000 && c->clip.max_positions == 77 && c->clip_projection == 0 &&
          !strcmp(c->format, "hf"));
    /* heads from the metadata config (8, not 2), and a text_projection */
    ADD2(&l, 256, 128, "text_projection.weight");
    CHECK(detect_meta(ctx, &l, "{\"model_type\": \"clip_text_model\", \"num_attention_heads\": 8}", &info));
    c = only(&info, FK_MODEL_CLIP);
    CHECK(c && c->clip.heads == 8 && c->clip_projection == 256);
    /* a config that contradicts the weights: not recognized, the note names the key */
    CHECK(detect_meta(ctx, &l, "{\"model_type\": \"clip_text_model\", \"hidden_size\": 768}", &info));
    CHECKF(info.n == 0 && strstr(info.note, "CLIP") && strstr(info.note, "hidden_size"), "n %d note %s", info.n,
           info.note);

    /* ---- diffusers autoencoder (ch 32: GroupNorm takes 32 groups), and its decoder alone */
    const int mult[3] = {1, 2, 2};
    l.n = 0;
    ae_diffusers(&l, 32, mult, 3, 2, 4, true);
    CHECK(detect(ctx, &l, &info));
    c = only(&info, FK_MODEL_AE);
    CHECK(c && c->ae.ch == 32 && c->ae.n_levels == 3 && c->ae.ch_mult[0] == 1 && c->ae.ch_mult[1] == 2 &&
          c->ae.ch_mult[2] == 2 && c->ae.num_res_blocks == 2 && c->ae.z_channels == 4 && c->ae.has_encoder &&
          c->ae.has_decoder && !strcmp(c->format, "diffusers") && !strcmp(c->name, "custom"));
    l.n = 0;
    ae_diffusers(&l, 32, mult, 3, 2, 4, false);
    CHECK(detect(ctx, &l, &info));
    c = only(&info, FK_MODEL_AE);
    CHECK(c && !c->ae.has_encoder && c->ae.has_decoder && c->ae.ch == 32 && c->ae.n_levels == 3 &&
          c->ae.ch_mult[1] == 2 && c->ae.num_res_blocks == 2 && c->ae.z_channels == 4 && c->ae.in_channels == 0);

    /* ---- all-in-one file: every kind under its ComfyUI / BFL prefix (no
     * metadata: the FLUX RoPE axes are the default ones, so its name may be
     * "custom" rather than tiny-flux) */
    l.n = 0;
    fk_flux_config cfg;
    CHECK(fk_flux_preset("tiny-flux", &cfg));
    flux_collect fc = {&l, "model.diffusion_model."};
    fk_flux_enum_params(&cfg, flux_param, &fc);
    fk_vae_config vcfg;
    CHECK(fk_vae_preset("tiny-ae", &vcfg));
    flux_collect vc = {&l, "vae."};
    fk_vae_enum_params(&vcfg, flux_param, &vc);
    clip(&l, "text_encoders.clip_l.transformer.", 64, 2, 256, 500, 77);
    t5(&l, "text_encoders.t5xxl.transformer.", 32, 2, 2, 16, 64, 50);
    CHECK(detect(ctx, &l, &info));
    CHECKF(info.n == 4 && !info.note[0], "n %d note %s", info.n, info.note);
    c = find(&info, FK_MODEL_FLUX);
    CHECKF(c && c->flux.hidden == cfg.hidden && c->flux.depth_double == cfg.depth_double &&
               !strcmp(c->prefix, "model.diffusion_model.") && !strcmp(c->format, "bfl-prefixed") &&
               !strcmp(c->name, fk_flux_config_name(&c->flux)),
           "%s %s %s", c ? c->prefix : "-", c ? c->name : "-", c ? c->format : "-");
    c = find(&info, FK_MODEL_CLIP);
    CHECK(c && c->clip.width == 64 && c->clip.layers == 2 && c->clip.heads == 1 &&
          !strcmp(c->prefix, "text_encoders.clip_l.transformer.") && !strcmp(c->format, "hf-prefixed"));
    c = find(&info, FK_MODEL_T5);
    CHECK(c && c->t5.d_model == 32 && c->t5.layers == 2 && c->t5.heads == 2 && c->t5.d_kv == 16 &&
          !strcmp(c->prefix, "text_encoders.t5xxl.transformer.") && !strcmp(c->format, "hf-prefixed"));
    c = find(&info, FK_MODEL_AE);
    CHECKF(c && c->ae.ch == vcfg.ch && c->ae.z_channels == vcfg.z_channels && !strcmp(c->prefix, "vae.") &&
               !strcmp(c->format, "bfl-prefixed") && !strcmp(c->name, "tiny-ae"),
           "%s %s %s", c ? c->prefix : "-", c ? c->name : "-", c ? c->format : "-");
    /* a second CLIP (SDXL / SD3 style): one is described, the other noted */
    clip(&l, "text_encoders.clip_g.transformer.", 128, 2, 512, 500, 77);
    CHECK(detect(ctx, &l, &info));
    c = find(&info, FK_MODEL_CLIP);
    CHECKF(info.n == 4 && c && strstr(info.note, "also a CLIP text encoder") &&
               strstr(info.note, c->prefix[20] == 'l' ? "clip_g" : "clip_l"),
           "n %d note %s", info.n, info.note);

    /* ---- not recognized */
    l.n = 0;
    ADD2(&l, 4, 4, "layer.0.weight");
    ADD2(&l, 4, 4, "conv_in.weight"); /* a UNet's conv_in: not an autoencoder */
    CHECK(detect(ctx, &l, &info));
    CHECK(info.n == 0 && !info.note[0]);
    /* anchors present but refused by the infer function: the note says why */
    l.n = 0;
    ADD1(&l, 4, "encoder.conv_in.weight"); /* 1-D conv kernel */
    CHECK(detect(ctx, &l, &info));
    CHECKF(info.n == 0 && strstr(info.note, "autoencoder") && strstr(info.note, "encoder.conv_in.weight"), "note %s",
           info.note);
    l.n = 0;
    t5_keys(&l, "", 64, 2, 4, 16, 160, 100, false, false); /* no relative_attention_bias */
    CHECK(detect(ctx, &l, &info));
    CHECKF(info.n == 0 && strstr(info.note, "T5") && strstr(info.note, "relative_attention_bias"), "note %s",
           info.note);
    CHECKF(strstr(info.note, tmp_path) == NULL, "the note repeats the path: %s", info.note);
    l.n = 0;
    t5_keys(&l, "", 64, 2, 4, 16, 160, 100, true, true); /* T5 v1.0: single wi */
    CHECK(detect(ctx, &l, &info));
    CHECKF(info.n == 0 && strstr(info.note, "T5") && strstr(info.note, "v1.0"), "note %s", info.note);

    /* a FLUX transformer without its final layer: not recognized, the note says why */
    l.n = 0;
    fc.prefix = "";
    fk_flux_enum_params(&cfg, flux_param, &fc);
    for (int i = 0; i < l.n; i++)
        if (!strcmp(l.names[i], "final_layer.linear.weight")) l.s[i] = l.s[--l.n];
    CHECK(detect(ctx, &l, &info));
    CHECKF(find(&info, FK_MODEL_FLUX) == NULL && strstr(info.note, "FLUX") && strstr(info.note, "final_layer"),
           "n %d note %s", info.n, info.note);

    CHECK(fk_model_detect(ctx, NULL, &info) == FK_ERR_ARG);
    CHECK(fk_model_detect(ctx, NULL, NULL) == FK_ERR_ARG);
    CHECK(!strcmp(fk_model_kind_name(FK_MODEL_AE), "ae") && !strcmp(fk_model_kind_name(FK_MODEL_UNKNOWN), "unknown"));
    fk_context_free(ctx);
    return fk_test_finish("test_model_detect");
}
