/* model_detect: classify a checkpoint with the model modules' own
 * configuration inference. See model_detect.h. Only headers (and small
 * config JSON files) are read, so this is fast on any size.
 *
 * What is left here is what the infer functions cannot tell: where in the key
 * set a component's anchor tensor sits (to note "looks like a T5 encoder
 * but: <why the infer function refused it>", and components of a kind beyond
 * the one described), the outer key prefix of CLIP / T5, and two facts of
 * the file outside the configurations (CLIP text_projection, T5 decoder). */
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

/* ---- anchors: the key prefixes at which a kind's marker tensors sit -------- */

#define FK_MD_PREFIX 128
#define FK_MD_MAX_ANCHORS 16

typedef struct fk_md_anchors {
    int n;     /* distinct prefixes stored in prefix[] */
    bool more; /* more than FK_MD_MAX_ANCHORS were found */
    char prefix[FK_MD_MAX_ANCHORS][FK_MD_PREFIX];
} fk_md_anchors;

static bool fk_md_ends_with(const char *s, size_t len, const char *tail) {
    size_t tl = strlen(tail);
    return len >= tl && !memcmp(s + len - tl, tail, tl);
}

/* Every distinct prefix p such that a tensor is named p + suffix[i] (p empty
 * or ending in '.'), skipping prefixes that end with skip_tail (may be NULL),
 * in name order. */
static void fk_md_find_anchors(const fk_st_model *m, const char *const *suffix, int nsuffix,
                               const char *skip_tail, fk_md_anchors *a) {
    memset(a, 0, sizeof(*a));
    int count = fk_st_model_count(m);
    for (int i = 0; i < count; i++) {
        const char *name = fk_st_model_get(m, i)->name;
        size_t nl = strlen(name);
        for (int s = 0; s < nsuffix; s++) {
            if (!fk_md_ends_with(name, nl, suffix[s])) continue;
            size_t pl = nl - strlen(suffix[s]);
            if (pl > 0 && name[pl - 1] != '.') continue;
            if (pl >= FK_MD_PREFIX) continue;
            if (skip_tail && fk_md_ends_with(name, pl, skip_tail)) continue;
            bool seen = false;
            for (int k = 0; k < a->n && !seen; k++)
                seen = strlen(a->prefix[k]) == pl && !memcmp(a->prefix[k], name, pl);
            if (seen) continue;
            if (a->n == FK_MD_MAX_ANCHORS) {
                a->more = true;
                continue;
            }
            memcpy(a->prefix[a->n], name, pl);
            a->prefix[a->n][pl] = '\0';
            a->n++;
        }
    }
}

/* `raw` without its trailing `tail` (when it ends with it; tail may be NULL) into out. */
static void fk_md_strip_tail(const char *raw, const char *tail, char *out, size_t n) {
    size_t rl = strlen(raw);
    if (tail && fk_md_ends_with(raw, rl, tail)) rl -= strlen(tail);
    snprintf(out, n, "%.*s", (int)rl, raw);
}

/* ---- notes ------------------------------------------------------------------- */

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

/* The context's error without the leading "<checkpoint path>: " (the note is
 * printed next to the path already). */
static const char *fk_md_reason(fk_context *ctx, const fk_st_model *m) {
    const char *msg = fk_context_error(ctx);
    const char *path = fk_st_model_path(m);
    if (!msg) return "unknown reason";
    size_t pl = path ? strlen(path) : 0;
    if (pl && !strncmp(msg, path, pl) && msg[pl] == ':' && msg[pl + 1] == ' ') return msg + pl + 2;
    return msg;
}

/* A kind's infer function refused the checkpoint: say so when its anchor
 * tensors are there (otherwise the file simply is not that kind). Prefixes
 * are shown without `tail` (the layout's own "text_model." / "encoder."). */
static void fk_md_rejected(fk_context *ctx, const fk_st_model *m, fk_model_info *info, const char *label,
                           const fk_md_anchors *a, const char *tail) {
    if (a->n == 0) return;
    char outer[FK_MD_PREFIX];
    fk_md_strip_tail(a->prefix[0], tail, outer, sizeof(outer));
    if (outer[0])
        fk_md_note(info, "looks like %s (key prefix '%s') but: %s", label, outer, fk_md_reason(ctx, m));
    else
        fk_md_note(info, "looks like %s but: %s", label, fk_md_reason(ctx, m));
}

/* Anchors other than the described component's (raw prefix `used`). */
static void fk_md_others(fk_model_info *info, const char *label, const fk_md_anchors *a, const char *used,
                         const char *tail) {
    for (int k = 0; k < a->n; k++) {
        if (!strcmp(a->prefix[k], used)) continue;
        char outer[FK_MD_PREFIX];
        fk_md_strip_tail(a->prefix[k], tail, outer, sizeof(outer));
        fk_md_note(info, "also %s under key prefix '%s' (not described: one component of each kind)", label,
                   outer);
    }
    if (a->more) fk_md_note(info, "and more key prefixes with %s", label);
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

/* ---- FLUX transformer ------------------------------------------------------- */

static void fk_md_flux(fk_context *ctx, const fk_st_model *m, fk_model_info *info) {
    static const char *const bfl_anchor[] = {"img_in.weight"};
    static const char *const dif_anchor[] = {"x_embedder.weight"};
    fk_md_anchors bfl, dif;
    fk_md_find_anchors(m, bfl_anchor, 1, NULL, &bfl);
    fk_md_find_anchors(m, dif_anchor, 1, NULL, &dif);
    const char *label = "a FLUX transformer";
    fk_flux_config cfg;
    const char *format = NULL;
    if (fk_flux_config_infer(ctx, m, &cfg, &format) != FK_OK) {
        fk_md_rejected(ctx, m, info, label, bfl.n ? &bfl : &dif, NULL);
        return;
    }
    /* the infer function takes BFL keys first, diffusers keys otherwise */
    const fk_md_anchors *a = format && !strcmp(format, "diffusers") ? &dif : &bfl;
    const char *prefix = a->n ? a->prefix[0] : "";
    fk_model_component *c = fk_md_add(info, FK_MODEL_FLUX, prefix);
    if (!c) return;
    c->flux = cfg;
    c->format = format ? format : "bfl";
    c->name = fk_flux_config_name(&cfg);
    fk_md_others(info, label, a, prefix, NULL);
}

/* ---- T5 encoder -------------------------------------------------------------- */

static void fk_md_t5(fk_context *ctx, const fk_st_model *m, fk_model_info *info) {
    /* the infer function's anchor; blocks under "decoder." are not an encoder */
    static const char *const anchor[] = {"block.0.layer.0.SelfAttention.q.weight"};
    fk_md_anchors a;
    fk_md_find_anchors(m, anchor, 1, "decoder.", &a);
    const char *label = "a T5 encoder";
    fk_t5_config cfg;
    char raw[FK_MD_PREFIX];
    if (fk_t5_config_infer(ctx, m, &cfg, raw, sizeof(raw)) != FK_OK) {
        fk_md_rejected(ctx, m, info, label, &a, "encoder.");
        return;
    }
    char outer[FK_MD_PREFIX];
    fk_md_strip_tail(raw, "encoder.", outer, sizeof(outer));
    fk_model_component *c = fk_md_add(info, FK_MODEL_T5, outer);
    if (!c) return;
    c->t5 = cfg;
    c->format = outer[0] ? "hf-prefixed" : "hf";
    c->name = fk_t5_config_name(&cfg);
    if (fk_md_ends_with(raw, strlen(raw), "encoder.")) {
        char key[FK_MD_PREFIX + 64];
        snprintf(key, sizeof(key), "%sdecoder.block.0.layer.0.SelfAttention.q.weight", outer);
        c->t5_has_decoder = fk_st_model_find(m, key) != NULL;
    }
    fk_md_others(info, label, &a, raw, "encoder.");
}

/* ---- CLIP text encoder ----------------------------------------------------- */

static void fk_md_clip(fk_context *ctx, const fk_st_model *m, fk_model_info *info) {
    static const char *const anchor[] = {"embeddings.token_embedding.weight"};
    fk_md_anchors a;
    fk_md_find_anchors(m, anchor, 1, NULL, &a);
    const char *label = "a CLIP text encoder";
    fk_clip_config cfg;
    char raw[FK_MD_PREFIX];
    if (fk_clip_config_infer(ctx, m, &cfg, raw, sizeof(raw)) != FK_OK) {
        fk_md_rejected(ctx, m, info, label, &a, "text_model.");
        return;
    }
    char outer[FK_MD_PREFIX];
    fk_md_strip_tail(raw, "text_model.", outer, sizeof(outer));
    fk_model_component *c = fk_md_add(info, FK_MODEL_CLIP, outer);
    if (!c) return;
    c->clip = cfg;
    c->format = outer[0] ? "hf-prefixed" : "hf";
    c->name = fk_clip_config_name(&cfg);
    char key[FK_MD_PREFIX + 32];
    snprintf(key, sizeof(key), "%stext_projection.weight", outer);
    const fk_st_tensor *proj = fk_st_model_find(m, key);
    if (proj && proj->ndim == 2 && proj->shape[0] > 0 && proj->shape[0] <= (1 << 24))
        c->clip_projection = (int)proj->shape[0];
    fk_md_others(info, label, &a, raw, "text_model.");
}

/* ---- autoencoder -------------------------------------------------------------- */

static void fk_md_ae(fk_context *ctx, const fk_st_model *m, fk_model_info *info) {
    static const char *const anchor[] = {"encoder.conv_in.weight", "decoder.conv_in.weight"};
    fk_md_anchors a;
    fk_md_find_anchors(m, anchor, 2, NULL, &a);
    const char *label = "an autoencoder";
    fk_vae_config cfg;
    const char *format = NULL;
    char prefix[FK_MD_PREFIX] = "";
    if (fk_vae_config_infer(ctx, m, &cfg, &format, prefix, sizeof(prefix)) != FK_OK) {
        fk_md_rejected(ctx, m, info, label, &a, NULL);
        return;
    }
    fk_model_component *c = fk_md_add(info, FK_MODEL_AE, prefix);
    if (!c) return;
    c->ae = cfg;
    c->format = format ? format : (prefix[0] ? "bfl-prefixed" : "bfl");
    c->name = fk_vae_config_name(&cfg);
    fk_md_others(info, label, &a, prefix, NULL);
}

/* ---- entry ------------------------------------------------------------------ */

fk_status fk_model_detect(fk_context *ctx, const fk_st_model *m, fk_model_info *info) {
    if (!info) return fk_error(ctx, FK_ERR_ARG, "fk_model_detect: info is NULL");
    memset(info, 0, sizeof(*info));
    if (!m) return fk_error(ctx, FK_ERR_ARG, "fk_model_detect: model is NULL");
    fk_md_flux(ctx, m, info);
    fk_md_t5(ctx, m, info);
    fk_md_clip(ctx, m, info);
    fk_md_ae(ctx, m, info);
    return FK_OK;
}
