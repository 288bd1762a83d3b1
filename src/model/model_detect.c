/* model_detect: classify a checkpoint by tensor names and shapes. See
 * model_detect.h. Only headers are looked at, so this is fast on any size. */
#include "model/model_detect.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *fk_model_kind_name(fk_model_kind k) {
    switch (k) {
    case FK_MODEL_FLUX: return "flux";
    case FK_MODEL_T5: return "t5";
    case FK_MODEL_CLIP: return "clip";
    case FK_MODEL_AE: return "ae";
    case FK_MODEL_UNKNOWN: break;
    }
    return "unknown";
}

/* ---- known configurations, one line each (add new presets here) --------- */

typedef struct fk_t5_known {
    const char *name;
    int d_model, num_layers, num_heads, d_ff;
} fk_t5_known;
static const fk_t5_known fk_t5_known_list[] = {
    {"t5-xxl", 4096, 24, 64, 10240}, /* T5 v1.1 XXL encoder (FLUX text_encoder_2) */
    {"t5-xl", 2048, 24, 32, 5120},
    {"t5-large", 1024, 24, 16, 2816},
    /* tiny-t5: added with the T5 preset */
};

typedef struct fk_clip_known {
    const char *name;
    int width, layers, mlp;
} fk_clip_known;
static const fk_clip_known fk_clip_known_list[] = {
    {"clip-l", 768, 12, 3072},  /* CLIP ViT-L/14 text encoder (FLUX text_encoder) */
    {"clip-g", 1280, 32, 5120}, /* OpenCLIP bigG text encoder */
    {"clip-b", 512, 12, 2048},
    /* tiny-clip: added with the CLIP preset */
};

typedef struct fk_ae_known {
    const char *name;
    int ch, n_levels, ch_mult[FK_AE_MAX_LEVELS], num_res_blocks, z_channels;
} fk_ae_known;
static const fk_ae_known fk_ae_known_list[] = {
    {"flux-ae", 128, 4, {1, 2, 4, 4}, 2, 16}, /* FLUX.1 ae.safetensors */
    {"sd-vae", 128, 4, {1, 2, 4, 4}, 2, 4},   /* Stable Diffusion 1.x/2.x/XL VAE */
    /* tiny-ae: added with the autoencoder preset */
};

/* ---- helpers -------------------------------------------------------------- */

/* Tensor named prefix + printf(fmt, ...), or NULL. */
static const fk_st_tensor *fk_md_find(const fk_st_model *m, const char *prefix, const char *fmt,
                                      ...) __attribute__((format(printf, 3, 4)));
static const fk_st_tensor *fk_md_find(const fk_st_model *m, const char *prefix, const char *fmt,
                                      ...) {
    char name[512];
    int n = snprintf(name, sizeof(name), "%s", prefix);
    if (n < 0 || (size_t)n >= sizeof(name)) return NULL;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(name + n, sizeof(name) - (size_t)n, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= sizeof(name) - (size_t)n) return NULL;
    return fk_st_model_find(m, name);
}

/* Dim d of a tensor when it has exactly `ndim` dims and the dim fits an int,
 * else 0. */
static int fk_md_dim(const fk_st_tensor *t, int ndim, int d) {
    if (!t || t->ndim != ndim || d < 0 || d >= ndim) return 0;
    if (t->shape[d] <= 0 || t->shape[d] > (1 << 30)) return 0;
    return (int)t->shape[d];
}

/* Find the first tensor whose name ends with `suffix` at a '.'-boundary and
 * return its prefix (the part before the suffix) in out. */
static bool fk_md_find_suffix(const fk_st_model *m, const char *suffix, char *out, size_t n) {
    size_t sl = strlen(suffix);
    int count = fk_st_model_count(m);
    for (int i = 0; i < count; i++) {
        const char *name = fk_st_model_get(m, i)->name;
        size_t nl = strlen(name);
        if (nl < sl || strcmp(name + nl - sl, suffix) != 0) continue;
        size_t pl = nl - sl;
        if (pl > 0 && name[pl - 1] != '.') continue;
        if (pl >= n) continue;
        memcpy(out, name, pl);
        out[pl] = '\0';
        return true;
    }
    return false;
}

/* Count i = 0, 1, ... while the tensor prefix + fmt(i) exists (fmt has one %d). */
static int fk_md_count(const fk_st_model *m, const char *prefix, const char *fmt) {
    int i = 0;
    for (;; i++) {
        char name[512];
        int k = snprintf(name, sizeof(name), fmt, i);
        if (k < 0 || (size_t)k >= sizeof(name)) break;
        if (!fk_md_find(m, prefix, "%s", name)) break;
        if (i > 100000) break;
    }
    return i;
}

static void fk_md_note(fk_model_info *info, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fk_md_note(fk_model_info *info, const char *fmt, ...) {
    size_t len = strlen(info->note);
    if (len + 3 >= sizeof(info->note)) return;
    if (len) {
        memcpy(info->note + len, "; ", 3);
        len += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(info->note + len, sizeof(info->note) - len, fmt, ap);
    va_end(ap);
}

static fk_model_component *fk_md_add(fk_model_info *info, fk_model_kind kind, const char *prefix) {
    if (info->n >= FK_MODEL_MAX_COMPONENTS) return NULL;
    fk_model_component *c = &info->comp[info->n++];
    memset(c, 0, sizeof(*c));
    c->kind = kind;
    snprintf(c->prefix, sizeof(c->prefix), "%s", prefix);
    c->name = "custom";
    return c;
}

/* ---- FLUX transformer ------------------------------------------------------ */

static void fk_md_flux(fk_context *ctx, const fk_st_model *m, fk_model_info *info) {
    char prefix[128];
    bool bfl = fk_md_find_suffix(m, "img_in.weight", prefix, sizeof(prefix)) &&
               (fk_md_find(m, prefix, "double_blocks.0.img_attn.qkv.weight") ||
                fk_md_find(m, prefix, "single_blocks.0.linear1.weight") ||
                fk_md_find(m, prefix, "txt_in.weight"));
    bool diffusers = !bfl && fk_md_find_suffix(m, "x_embedder.weight", prefix, sizeof(prefix)) &&
                     fk_md_find(m, prefix, "context_embedder.weight");
    if (!bfl && !diffusers) return;
    fk_flux_config cfg;
    const char *format = NULL;
    fk_status st = fk_flux_config_infer(ctx, m, &cfg, &format);
    if (st != FK_OK) {
        fk_md_note(info, "looks like a FLUX transformer (%s keys) but: %s", bfl ? "BFL" : "diffusers",
                   fk_context_error(ctx));
        return;
    }
    fk_model_component *c = fk_md_add(info, FK_MODEL_FLUX, prefix);
    if (!c) return;
    c->flux = cfg;
    c->format = format ? format : (bfl ? "bfl" : "diffusers");
    c->name = fk_flux_config_name(&cfg);
}

/* ---- T5 encoder (HF T5EncoderModel / ComfyUI t5xxl_*.safetensors) --------- */

static void fk_md_t5(const fk_st_model *m, fk_model_info *info) {
    char prefix[128];
    if (!fk_md_find_suffix(m, "encoder.block.0.layer.0.SelfAttention.q.weight", prefix, sizeof(prefix)))
        return;
    const fk_st_tensor *q = fk_md_find(m, prefix, "encoder.block.0.layer.0.SelfAttention.q.weight");
    const fk_st_tensor *rel =
        fk_md_find(m, prefix, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight");
    const fk_st_tensor *emb = fk_md_find(m, prefix, "shared.weight");
    if (!emb) emb = fk_md_find(m, prefix, "encoder.embed_tokens.weight");
    const fk_st_tensor *wi = fk_md_find(m, prefix, "encoder.block.0.layer.1.DenseReluDense.wi_0.weight");
    bool gated = wi != NULL;
    if (!wi) wi = fk_md_find(m, prefix, "encoder.block.0.layer.1.DenseReluDense.wi.weight");

    fk_t5_shape s;
    memset(&s, 0, sizeof(s));
    int inner = fk_md_dim(q, 2, 0);
    s.d_model = fk_md_dim(q, 2, 1);
    s.rel_buckets = fk_md_dim(rel, 2, 0);
    s.num_heads = fk_md_dim(rel, 2, 1);
    s.d_ff = fk_md_dim(wi, 2, 0);
    s.gated = gated;
    s.vocab = fk_md_dim(emb, 2, 0);
    s.num_layers = fk_md_count(m, prefix, "encoder.block.%d.layer.0.SelfAttention.q.weight");
    s.has_decoder = fk_md_find(m, prefix, "decoder.block.0.layer.0.SelfAttention.q.weight") != NULL;
    if (!inner || !s.d_model || !s.num_heads || !s.d_ff || inner % s.num_heads != 0) {
        fk_md_note(info, "looks like a T5 encoder (prefix '%s') but a tensor is missing or odd: "
                         "q %s, relative_attention_bias %s, DenseReluDense.wi %s",
                   prefix, q ? "ok" : "missing", rel ? "ok" : "missing", wi ? "ok" : "missing");
        return;
    }
    s.d_kv = inner / s.num_heads;
    fk_model_component *c = fk_md_add(info, FK_MODEL_T5, prefix);
    if (!c) return;
    c->t5 = s;
    c->format = prefix[0] ? "hf-prefixed" : "hf";
    for (size_t i = 0; i < sizeof(fk_t5_known_list) / sizeof(fk_t5_known_list[0]); i++) {
        const fk_t5_known *k = &fk_t5_known_list[i];
        if (k->d_model == s.d_model && k->num_layers == s.num_layers && k->num_heads == s.num_heads &&
            k->d_ff == s.d_ff)
            c->name = k->name;
    }
}

/* ---- CLIP text encoder (HF CLIPTextModel / ComfyUI clip_l.safetensors) ------ */

static void fk_md_clip(const fk_st_model *m, fk_model_info *info) {
    char prefix[128];
    if (!fk_md_find_suffix(m, "text_model.embeddings.token_embedding.weight", prefix, sizeof(prefix)))
        return;
    const fk_st_tensor *tok = fk_md_find(m, prefix, "text_model.embeddings.token_embedding.weight");
    const fk_st_tensor *pos = fk_md_find(m, prefix, "text_model.embeddings.position_embedding.weight");
    const fk_st_tensor *fc1 = fk_md_find(m, prefix, "text_model.encoder.layers.0.mlp.fc1.weight");
    const fk_st_tensor *proj = fk_md_find(m, prefix, "text_projection.weight");
    fk_clip_shape s;
    memset(&s, 0, sizeof(s));
    s.vocab = fk_md_dim(tok, 2, 0);
    s.width = fk_md_dim(tok, 2, 1);
    s.max_pos = fk_md_dim(pos, 2, 0);
    s.mlp = fk_md_dim(fc1, 2, 0);
    s.proj_dim = fk_md_dim(proj, 2, 0);
    s.layers = fk_md_count(m, prefix, "text_model.encoder.layers.%d.self_attn.q_proj.weight");
    if (!s.width || !s.layers || s.width % 64 != 0) {
        fk_md_note(info, "looks like a CLIP text encoder (prefix '%s') but token_embedding or "
                         "encoder.layers.0 is missing or odd", prefix);
        return;
    }
    s.heads = s.width / 64;
    fk_model_component *c = fk_md_add(info, FK_MODEL_CLIP, prefix);
    if (!c) return;
    c->clip = s;
    c->format = prefix[0] ? "hf-prefixed" : "hf";
    for (size_t i = 0; i < sizeof(fk_clip_known_list) / sizeof(fk_clip_known_list[0]); i++) {
        const fk_clip_known *k = &fk_clip_known_list[i];
        if (k->width == s.width && k->layers == s.layers && k->mlp == s.mlp) c->name = k->name;
    }
}

/* ---- autoencoder (BFL ae.safetensors / diffusers AutoencoderKL) ------------ */

/* Fill the per-level channel multipliers from `out channels of level i`
 * tensors; false when a level is missing or not a multiple of ch. */
static bool fk_md_ae_levels(const fk_st_model *m, const char *prefix, const char *fmt, int n_levels,
                            bool reversed, fk_ae_shape *s) {
    if (n_levels < 1 || n_levels > FK_AE_MAX_LEVELS || s->ch <= 0) return false;
    s->n_levels = n_levels;
    for (int i = 0; i < n_levels; i++) {
        char name[256];
        snprintf(name, sizeof(name), fmt, reversed ? n_levels - 1 - i : i);
        int out = fk_md_dim(fk_md_find(m, prefix, "%s", name), 4, 0);
        if (!out || out % s->ch != 0) return false;
        s->ch_mult[i] = out / s->ch;
    }
    return true;
}

static void fk_md_ae(const fk_st_model *m, fk_model_info *info) {
    char prefix[128];
    bool have_enc = fk_md_find_suffix(m, "encoder.conv_in.weight", prefix, sizeof(prefix));
    if (!have_enc && !fk_md_find_suffix(m, "decoder.conv_in.weight", prefix, sizeof(prefix))) return;
    const fk_st_tensor *enc_in = fk_md_find(m, prefix, "encoder.conv_in.weight");
    const fk_st_tensor *enc_out = fk_md_find(m, prefix, "encoder.conv_out.weight");
    const fk_st_tensor *dec_in = fk_md_find(m, prefix, "decoder.conv_in.weight");
    const fk_st_tensor *dec_out = fk_md_find(m, prefix, "decoder.conv_out.weight");
    bool diffusers = fk_md_find(m, prefix, "encoder.down_blocks.0.resnets.0.conv1.weight") ||
                     fk_md_find(m, prefix, "decoder.up_blocks.0.resnets.0.conv1.weight");
    bool bfl = fk_md_find(m, prefix, "encoder.down.0.block.0.conv1.weight") ||
               fk_md_find(m, prefix, "decoder.up.0.block.0.conv1.weight");
    if (!diffusers && !bfl) return; /* conv_in alone: some other conv net */

    fk_ae_shape s;
    memset(&s, 0, sizeof(s));
    s.has_encoder = enc_in && enc_out;
    s.has_decoder = dec_in && dec_out;
    bool ok = s.has_encoder || s.has_decoder;
    if (s.has_encoder) {
        s.ch = fk_md_dim(enc_in, 4, 0);
        s.in_channels = fk_md_dim(enc_in, 4, 1);
        int zz = fk_md_dim(enc_out, 4, 0); /* mean and log-variance: 2·z */
        s.z_channels = zz / 2;
        const char *lv = bfl ? "encoder.down.%d.block.0.conv1.weight"
                             : "encoder.down_blocks.%d.resnets.0.conv1.weight";
        int n_levels = fk_md_count(m, prefix, lv);
        ok = ok && zz > 0 && zz % 2 == 0 && fk_md_ae_levels(m, prefix, lv, n_levels, false, &s);
        s.num_res_blocks = bfl ? fk_md_count(m, prefix, "encoder.down.0.block.%d.conv1.weight")
                               : fk_md_count(m, prefix, "encoder.down_blocks.0.resnets.%d.conv1.weight");
    }
    if (ok && s.has_decoder) {
        int z = fk_md_dim(dec_in, 4, 1);
        s.out_ch = fk_md_dim(dec_out, 4, 0);
        if (!s.has_encoder) {
            /* decoder only: conv_out input = ch · ch_mult[0] = the level-0 width */
            s.z_channels = z;
            const char *lv = bfl ? "decoder.up.%d.block.0.conv1.weight"
                                 : "decoder.up_blocks.%d.resnets.0.conv1.weight";
            int n_levels = fk_md_count(m, prefix, lv);
            s.ch = fk_md_dim(dec_out, 4, 1); /* assumes ch_mult[0] = 1, true for all known AEs */
            ok = fk_md_ae_levels(m, prefix, lv, n_levels, !bfl, &s);
            int blocks = bfl ? fk_md_count(m, prefix, "decoder.up.0.block.%d.conv1.weight")
                             : fk_md_count(m, prefix, "decoder.up_blocks.0.resnets.%d.conv1.weight");
            s.num_res_blocks = blocks - 1; /* decoder levels have num_res_blocks + 1 blocks */
        } else if (z != s.z_channels) {
            ok = false;
        }
    }
    if (!ok || s.ch <= 0 || s.z_channels <= 0 || s.num_res_blocks <= 0) {
        fk_md_note(info, "looks like an autoencoder (prefix '%s') but conv_in/conv_out or the "
                         "level blocks are missing or of odd shape", prefix);
        return;
    }
    fk_model_component *c = fk_md_add(info, FK_MODEL_AE, prefix);
    if (!c) return;
    c->ae = s;
    c->format = diffusers ? "diffusers" : (prefix[0] ? "bfl-prefixed" : "bfl");
    for (size_t i = 0; i < sizeof(fk_ae_known_list) / sizeof(fk_ae_known_list[0]); i++) {
        const fk_ae_known *k = &fk_ae_known_list[i];
        bool same = k->ch == s.ch && k->n_levels == s.n_levels &&
                    k->num_res_blocks == s.num_res_blocks && k->z_channels == s.z_channels;
        for (int l = 0; same && l < s.n_levels; l++) same = k->ch_mult[l] == s.ch_mult[l];
        if (same) c->name = k->name;
    }
}

/* ---- entry ------------------------------------------------------------------ */

fk_status fk_model_detect(fk_context *ctx, const fk_st_model *m, fk_model_info *info) {
    if (!info) return fk_error(ctx, FK_ERR_ARG, "fk_model_detect: info is NULL");
    memset(info, 0, sizeof(*info));
    if (!m) return fk_error(ctx, FK_ERR_ARG, "fk_model_detect: model is NULL");
    fk_md_flux(ctx, m, info);
    fk_md_t5(m, info);
    fk_md_clip(m, info);
    fk_md_ae(m, info);
    return FK_OK;
}
