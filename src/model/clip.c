/* clip: CLIP text encoder (HF CLIPTextModel) — config, weight binding, forward.
 * See clip.h for the architecture and the pooling rule. */
#include "model/clip.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- configuration ------------------------------------------------------ */

#define FK_CLIP_LEGACY_EOS 2

bool fk_clip_preset(const char *name, fk_clip_config *cfg) {
    if (!name || !cfg) return false;
    fk_clip_config c = {
        .vocab_size = 49408,
        .max_positions = 77,
        .width = 768,
        .layers = 12,
        .heads = 12,
        .mlp_hidden = 3072,
        .eps = 1e-5f,
        .eos_token_id = FK_CLIP_LEGACY_EOS,
        .act = FK_CLIP_ACT_QUICK_GELU,
    };
    if (!strcmp(name, "clip-l")) {
        *cfg = c;
        return true;
    }
    if (!strcmp(name, "tiny-clip")) {
        c.vocab_size = 1000;
        c.width = 64;
        c.layers = 3;
        c.heads = 4;
        c.mlp_hidden = 256;
        *cfg = c;
        return true;
    }
    return false;
}

const char *fk_clip_preset_list(void) { return "clip-l, tiny-clip"; }

const char *fk_clip_config_name(const fk_clip_config *cfg) {
    static const char *names[] = {"clip-l", "tiny-clip"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        fk_clip_config p;
        fk_clip_preset(names[i], &p);
        if (p.vocab_size == cfg->vocab_size && p.max_positions == cfg->max_positions &&
            p.width == cfg->width && p.layers == cfg->layers && p.heads == cfg->heads &&
            p.mlp_hidden == cfg->mlp_hidden)
            return names[i];
    }
    return "custom";
}

int64_t fk_clip_param_count(const fk_clip_config *cfg) {
    int64_t W = cfg->width, I = cfg->mlp_hidden;
    int64_t per_layer = 4 * (W * W + W) + (I * W + I) + (W * I + W) + 4 * W;
    return (int64_t)cfg->vocab_size * W + (int64_t)cfg->max_positions * W +
           cfg->layers * per_layer + 2 * W;
}

void fk_clip_enum_params(const fk_clip_config *cfg, fk_param_fn fn, void *user) {
    char name[160];
    int64_t W = cfg->width, I = cfg->mlp_hidden;
    int64_t s[2];
#define FK_CLIP_P1(kind, fan, d0)                                                            \
    do {                                                                                     \
        s[0] = (d0);                                                                         \
        fn(user, name, 1, s, kind, fan);                                                     \
    } while (0)
#define FK_CLIP_P2(kind, fan, d0, d1)                                                        \
    do {                                                                                     \
        s[0] = (d0);                                                                         \
        s[1] = (d1);                                                                         \
        fn(user, name, 2, s, kind, fan);                                                     \
    } while (0)
    snprintf(name, sizeof(name), "text_model.embeddings.token_embedding.weight");
    FK_CLIP_P2(FK_PARAM_EMBEDDING, W, cfg->vocab_size, W);
    snprintf(name, sizeof(name), "text_model.embeddings.position_embedding.weight");
    FK_CLIP_P2(FK_PARAM_EMBEDDING, W, cfg->max_positions, W);
    static const char *proj[] = {"k_proj", "v_proj", "q_proj", "out_proj"};
    for (int l = 0; l < cfg->layers; l++) {
        for (int p = 0; p < 4; p++) {
            snprintf(name, sizeof(name), "text_model.encoder.layers.%d.self_attn.%s.weight", l, proj[p]);
            FK_CLIP_P2(FK_PARAM_WEIGHT, W, W, W);
            snprintf(name, sizeof(name), "text_model.encoder.layers.%d.self_attn.%s.bias", l, proj[p]);
            FK_CLIP_P1(FK_PARAM_BIAS, W, W);
        }
        snprintf(name, sizeof(name), "text_model.encoder.layers.%d.layer_norm1.weight", l);
        FK_CLIP_P1(FK_PARAM_NORM_SCALE, W, W);
        snprintf(name, sizeof(name), "text_model.encoder.layers.%d.layer_norm1.bias", l);
        FK_CLIP_P1(FK_PARAM_NORM_BIAS, W, W);
        snprintf(name, sizeof(name), "text_model.encoder.layers.%d.mlp.fc1.weight", l);
        FK_CLIP_P2(FK_PARAM_WEIGHT, W, I, W);
        snprintf(name, sizeof(name), "text_model.encoder.layers.%d.mlp.fc1.bias", l);
        FK_CLIP_P1(FK_PARAM_BIAS, W, I);
        snprintf(name, sizeof(name), "text_model.encoder.layers.%d.mlp.fc2.weight", l);
        FK_CLIP_P2(FK_PARAM_WEIGHT, I, W, I);
        snprintf(name, sizeof(name), "text_model.encoder.layers.%d.mlp.fc2.bias", l);
        FK_CLIP_P1(FK_PARAM_BIAS, I, W);
        snprintf(name, sizeof(name), "text_model.encoder.layers.%d.layer_norm2.weight", l);
        FK_CLIP_P1(FK_PARAM_NORM_SCALE, W, W);
        snprintf(name, sizeof(name), "text_model.encoder.layers.%d.layer_norm2.bias", l);
        FK_CLIP_P1(FK_PARAM_NORM_BIAS, W, W);
    }
    snprintf(name, sizeof(name), "text_model.final_layer_norm.weight");
    FK_CLIP_P1(FK_PARAM_NORM_SCALE, W, W);
    snprintf(name, sizeof(name), "text_model.final_layer_norm.bias");
    FK_CLIP_P1(FK_PARAM_NORM_BIAS, W, W);
#undef FK_CLIP_P1
#undef FK_CLIP_P2
}

char *fk_clip_config_json(const fk_clip_config *cfg) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "model_type", "clip_text_model");
    cJSON_AddNumberToObject(o, "vocab_size", cfg->vocab_size);
    cJSON_AddNumberToObject(o, "max_position_embeddings", cfg->max_positions);
    cJSON_AddNumberToObject(o, "hidden_size", cfg->width);
    cJSON_AddNumberToObject(o, "num_hidden_layers", cfg->layers);
    cJSON_AddNumberToObject(o, "num_attention_heads", cfg->heads);
    cJSON_AddNumberToObject(o, "intermediate_size", cfg->mlp_hidden);
    char eps[32]; /* 6 significant digits: 1e-06, not 9.99999997475243e-07 */
    snprintf(eps, sizeof(eps), "%g", (double)cfg->eps);
    cJSON_AddNumberToObject(o, "layer_norm_eps", strtod(eps, NULL));
    cJSON_AddNumberToObject(o, "eos_token_id", cfg->eos_token_id);
    cJSON_AddStringToObject(o, "hidden_act", "quick_gelu");
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

void fk_clip_enum_preset(const char *preset, fk_param_fn fn, void *user) {
    fk_clip_config c;
    if (fk_clip_preset(preset, &c)) fk_clip_enum_params(&c, fn, user);
}

char *fk_clip_preset_config_json(const char *preset) {
    fk_clip_config c;
    return fk_clip_preset(preset, &c) ? fk_clip_config_json(&c) : NULL;
}

/* ---- config JSON: __metadata__["config"] or a config.json beside the weights ---- */

/* Read a small text file; NULL when absent or unreadable. Caller frees. */
static char *fk_clip_read_small_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n >= 0 && n < (1L << 20) && fseek(f, 0, SEEK_SET) == 0) {
            buf = malloc((size_t)n + 1);
            if (buf && fread(buf, 1, (size_t)n, f) == (size_t)n) {
                buf[n] = 0;
            } else {
                free(buf);
                buf = NULL;
            }
        }
    }
    fclose(f);
    return buf;
}

/* The CLIP text config object from JSON text: model_type "clip_text_model",
 * or "clip" → its text_config. A config without model_type is not taken (a
 * FLUX config in an all-in-one file's metadata also has a hidden_size). Returns a cJSON root to free and sets *cfg_obj. */
static cJSON *fk_clip_parse_config(const char *text, const cJSON **cfg_obj) {
    cJSON *root = cJSON_Parse(text);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return NULL;
    }
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    const char *type = cJSON_IsString(mt) ? mt->valuestring : NULL;
    if (type && !strcmp(type, "clip")) {
        const cJSON *tc = cJSON_GetObjectItemCaseSensitive(root, "text_config");
        if (cJSON_IsObject(tc)) {
            *cfg_obj = tc;
            return root;
        }
    } else if (type && !strcmp(type, "clip_text_model")) {
        *cfg_obj = root;
        return root;
    }
    cJSON_Delete(root);
    return NULL;
}

/* Find the config: returns a root to free (or NULL) and a description of where
 * it came from in `src` (for error messages). */
static cJSON *fk_clip_find_config(const fk_st_model *m, const cJSON **obj, char *src, size_t n) {
    const char *meta = fk_st_model_meta(m, "config");
    if (meta) {
        cJSON *r = fk_clip_parse_config(meta, obj);
        if (r) {
            snprintf(src, n, "%s: __metadata__ config", fk_st_model_path(m));
            return r;
        }
    }
    const char *path = fk_st_model_path(m);
    if (!path) return NULL;
    char dir[4096];
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(dir, sizeof(dir), "%s", path);
    } else {
        snprintf(dir, sizeof(dir), "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = 0;
        else
            snprintf(dir, sizeof(dir), ".");
    }
    char cfgpath[4200];
    snprintf(cfgpath, sizeof(cfgpath), "%s/config.json", dir);
    char *text = fk_clip_read_small_file(cfgpath);
    if (!text) return NULL;
    cJSON *r = fk_clip_parse_config(text, obj);
    free(text);
    if (r) snprintf(src, n, "%s", cfgpath);
    return r;
}

static bool fk_clip_json_int(const cJSON *o, const char *key, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 1e9)
        return false;
    *out = (int)v->valuedouble;
    return true;
}

/* ---- inference of the configuration from the tensors ---------------------- */

static const char *const FK_CLIP_TOK_SUFFIX = "embeddings.token_embedding.weight";

static const fk_st_tensor *fk_clip_find(const fk_st_model *m, const char *prefix, const char *fmt, int l) {
    char suffix[160], name[320];
    snprintf(suffix, sizeof(suffix), fmt, l);
    snprintf(name, sizeof(name), "%s%s", prefix, suffix);
    return fk_st_model_find(m, name);
}

fk_status fk_clip_config_infer(fk_context *ctx, const fk_st_model *m, fk_clip_config *cfg,
                               char *prefix, size_t n) {
    if (!m || !cfg || !prefix || n == 0) return fk_error(ctx, FK_ERR_ARG, "fk_clip_config_infer: NULL argument");
    const char *path = fk_st_model_path(m);
    /* the key prefix: where "embeddings.token_embedding.weight" sits; prefer the
     * HF / ComfyUI "text_model." and the bare layout over other prefixes */
    const char *best = NULL;
    size_t best_len = 0;
    int best_rank = 3;
    size_t sl = strlen(FK_CLIP_TOK_SUFFIX);
    for (int i = 0; i < fk_st_model_count(m); i++) {
        const char *nm = fk_st_model_get(m, i)->name;
        size_t len = strlen(nm);
        if (len < sl || strcmp(nm + len - sl, FK_CLIP_TOK_SUFFIX)) continue;
        size_t pl = len - sl;
        int rank = (pl == strlen("text_model.") && !strncmp(nm, "text_model.", pl)) ? 0 : pl == 0 ? 1 : 2;
        if (rank < best_rank) {
            best = nm;
            best_len = pl;
            best_rank = rank;
        }
    }
    if (!best)
        return fk_error(ctx, FK_ERR_FORMAT,
                        "%s: not a CLIP text model (no tensor text_model.embeddings.token_embedding.weight)",
                        path);
    if (best_len + 1 > n || best_len >= 128)
        return fk_error(ctx, FK_ERR_FORMAT, "%s: CLIP key prefix too long in %s", path, best);
    memcpy(prefix, best, best_len);
    prefix[best_len] = 0;

    const fk_st_tensor *tok = fk_clip_find(m, prefix, "embeddings.token_embedding.weight", 0);
    const fk_st_tensor *pos = fk_clip_find(m, prefix, "embeddings.position_embedding.weight", 0);
    if (tok->ndim != 2 || tok->shape[0] < 1 || tok->shape[1] < 1 || tok->shape[0] > INT32_MAX ||
        tok->shape[1] > (1 << 20))
        return fk_error(ctx, FK_ERR_SHAPE, "%s: tensor %s has an invalid shape (expected [vocab, width])",
                        path, tok->name);
    fk_clip_config c;
    fk_clip_preset("clip-l", &c);
    c.vocab_size = (int)tok->shape[0];
    c.width = (int)tok->shape[1];
    if (!pos)
        return fk_error(ctx, FK_ERR_FORMAT, "%s: tensor %sembeddings.position_embedding.weight missing", path,
                        prefix);
    if (pos->ndim != 2 || pos->shape[1] != c.width || pos->shape[0] < 1 || pos->shape[0] > (1 << 20))
        return fk_error(ctx, FK_ERR_SHAPE, "%s: tensor %s has an invalid shape (expected [max_positions, %d])",
                        path, pos->name, c.width);
    c.max_positions = (int)pos->shape[0];
    int layers = 0;
    while (layers < 4096 && fk_clip_find(m, prefix, "encoder.layers.%d.self_attn.q_proj.weight", layers)) layers++;
    if (layers == 0)
        return fk_error(ctx, FK_ERR_FORMAT, "%s: tensor %sencoder.layers.0.self_attn.q_proj.weight missing",
                        path, prefix);
    c.layers = layers;
    const fk_st_tensor *fc1 = fk_clip_find(m, prefix, "encoder.layers.%d.mlp.fc1.weight", 0);
    if (!fc1)
        return fk_error(ctx, FK_ERR_FORMAT, "%s: tensor %sencoder.layers.0.mlp.fc1.weight missing", path, prefix);
    if (fc1->ndim != 2 || fc1->shape[1] != c.width || fc1->shape[0] < 1 || fc1->shape[0] > (1 << 24))
        return fk_error(ctx, FK_ERR_SHAPE, "%s: tensor %s has an invalid shape (expected [mlp_hidden, %d])", path,
                        fc1->name, c.width);
    c.mlp_hidden = (int)fc1->shape[0];
    /* heads etc.: not in the weights. CLIP's head dim is 64 for every released size. */
    c.heads = c.width % 64 == 0 ? c.width / 64 : 1;

    const cJSON *o = NULL;
    char src[4300] = "";
    cJSON *root = fk_clip_find_config(m, &o, src, sizeof(src));
    if (root) {
        fk_status st = FK_OK;
        int v;
        struct {
            const char *key;
            int have;
        } checks[] = {{"hidden_size", c.width},         {"num_hidden_layers", c.layers},
                      {"intermediate_size", c.mlp_hidden}, {"vocab_size", c.vocab_size},
                      {"max_position_embeddings", c.max_positions}};
        for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]) && st == FK_OK; i++)
            if (fk_clip_json_int(o, checks[i].key, &v) && v != checks[i].have)
                st = fk_error(ctx, FK_ERR_FORMAT, "%s: %s is %d but the weights have %d", src, checks[i].key, v,
                              checks[i].have);
        if (st == FK_OK && fk_clip_json_int(o, "num_attention_heads", &v)) c.heads = v;
        if (st == FK_OK && fk_clip_json_int(o, "eos_token_id", &v)) c.eos_token_id = v;
        const cJSON *eps = cJSON_GetObjectItemCaseSensitive(o, "layer_norm_eps");
        if (st == FK_OK && cJSON_IsNumber(eps)) {
            if (!(eps->valuedouble > 0 && eps->valuedouble < 1))
                st = fk_error(ctx, FK_ERR_FORMAT, "%s: layer_norm_eps %g out of range (0, 1)", src, eps->valuedouble);
            c.eps = (float)eps->valuedouble;
        }
        const cJSON *act = cJSON_GetObjectItemCaseSensitive(o, "hidden_act");
        if (st == FK_OK && cJSON_IsString(act) && strcmp(act->valuestring, "quick_gelu"))
            st = fk_error(ctx, FK_ERR_UNSUPPORTED, "%s: hidden_act '%s' is not supported (CLIP-L uses quick_gelu)",
                          src, act->valuestring);
        cJSON_Delete(root);
        if (st != FK_OK) return st;
    } else {
        snprintf(src, sizeof(src), "%s", path);
    }
    if (c.heads < 1 || c.width % c.heads != 0)
        return fk_error(ctx, FK_ERR_FORMAT, "%s: num_attention_heads %d does not divide hidden_size %d", src,
                        c.heads, c.width);
    *cfg = c;
    return FK_OK;
}

/* ---- the model ------------------------------------------------------------ */

typedef struct fk_clip_layer {
    fk_tensor ln1_w, ln1_b;     /* (W) */
    fk_tensor q_w, k_w, v_w;    /* (W, W) */
    fk_tensor q_b, k_b, v_b;    /* (W) */
    fk_tensor o_w, o_b;         /* (W, W), (W) */
    fk_tensor ln2_w, ln2_b;     /* (W) */
    fk_tensor fc1_w, fc1_b;     /* (I, W), (I) */
    fk_tensor fc2_w, fc2_b;     /* (W, I), (W) */
} fk_clip_layer;

struct fk_clip {
    fk_clip_config cfg;
    fk_backend *be;
    fk_st_model *m;
    bool owns_m;
    char prefix[128];
    fk_tensor tok_emb;          /* (V, W) */
    fk_tensor pos_emb;          /* (P, W) */
    fk_tensor lnf_w, lnf_b;     /* (W) */
    fk_clip_layer *layers;      /* (layers) */
    uint64_t weight_bytes;
    /* activation buffers for up to buf_len tokens, one allocation */
    int buf_len;
    float *buf;
    uint64_t buf_bytes;
};

const fk_clip_config *fk_clip_get_config(const fk_clip *c) { return &c->cfg; }
uint64_t fk_clip_weight_bytes(const fk_clip *c) { return c->weight_bytes; }
uint64_t fk_clip_buffer_bytes(const fk_clip *c) { return c->buf_bytes; }
fk_dtype fk_clip_linear_dtype(const fk_clip *c) { return c->layers[0].q_w.dtype; }

/* Bind prefix + name (printf with layer l) as a view of shape (d0[, d1]). */
static fk_status fk_clip_bind(fk_context *ctx, fk_clip *c, fk_tensor *out, const char *fmt, int l, int ndim,
                              int64_t d0, int64_t d1) {
    char suffix[160], name[320];
    snprintf(suffix, sizeof(suffix), fmt, l);
    snprintf(name, sizeof(name), "%s%s", c->prefix, suffix);
    const fk_st_tensor *t = fk_st_model_find(c->m, name);
    char want[64];
    if (ndim == 1)
        snprintf(want, sizeof(want), "[%lld]", (long long)d0);
    else
        snprintf(want, sizeof(want), "[%lld, %lld]", (long long)d0, (long long)d1);
    if (!t)
        return fk_error(ctx, FK_ERR_SHAPE, "%s: tensor %s missing (expected shape %s)", fk_st_model_path(c->m),
                        name, want);
    fk_tensor v = fk_st_view(t);
    bool ok = v.ndim == ndim && v.shape[0] == d0 && (ndim == 1 || v.shape[1] == d1);
    if (!ok) {
        char have[96];
        return fk_error(ctx, FK_ERR_SHAPE, "%s: tensor %s has shape %s, expected %s", fk_st_model_path(c->m),
                        name, fk_shape_str(&v, have, sizeof(have)), want);
    }
    if (!fk_dtype_is_float(v.dtype))
        return fk_error(ctx, FK_ERR_SHAPE, "%s: tensor %s has dtype %s, expected a float type (F32, BF16, F16, F8)",
                        fk_st_model_path(c->m), name, fk_dtype_name(v.dtype));
    *out = v;
    c->weight_bytes += t->nbytes;
    return FK_OK;
}

fk_status fk_clip_load_model(fk_context *ctx, fk_backend *be, fk_st_model *m, bool take_ownership,
                             fk_clip **out) {
    *out = NULL;
    if (!be || !m) {
        if (take_ownership) fk_st_model_close(m);
        return fk_error(ctx, FK_ERR_ARG, "fk_clip_load_model: NULL backend or checkpoint");
    }
    fk_clip *c = calloc(1, sizeof(*c));
    if (!c) {
        if (take_ownership) fk_st_model_close(m);
        return fk_error(ctx, FK_ERR_NOMEM, "out of memory loading the CLIP text model");
    }
    c->be = be;
    c->m = m;
    c->owns_m = take_ownership;
    fk_status st = FK_OK;
    if (!be->alloc || !be->free || !be->upload || !be->download)
        st = fk_error(ctx, FK_ERR_ARG, "CLIP text model: backend %s has no memory functions", be->name);
    if (st == FK_OK) st = fk_clip_config_infer(ctx, m, &c->cfg, c->prefix, sizeof(c->prefix));
    const fk_clip_config *g = &c->cfg;
    int64_t W = g->width, I = g->mlp_hidden;
    if (st == FK_OK) {
        c->layers = calloc((size_t)g->layers, sizeof(*c->layers));
        if (!c->layers) st = fk_error(ctx, FK_ERR_NOMEM, "out of memory loading the CLIP text model");
    }
    if (st == FK_OK) st = fk_clip_bind(ctx, c, &c->tok_emb, "embeddings.token_embedding.weight", 0, 2, g->vocab_size, W);
    if (st == FK_OK)
        st = fk_clip_bind(ctx, c, &c->pos_emb, "embeddings.position_embedding.weight", 0, 2, g->max_positions, W);
    for (int l = 0; l < g->layers && st == FK_OK; l++) {
        fk_clip_layer *L = &c->layers[l];
        struct {
            fk_tensor *t;
            const char *fmt;
            int ndim;
            int64_t d0, d1;
        } b[] = {
            {&L->ln1_w, "encoder.layers.%d.layer_norm1.weight", 1, W, 0},
            {&L->ln1_b, "encoder.layers.%d.layer_norm1.bias", 1, W, 0},
            {&L->q_w, "encoder.layers.%d.self_attn.q_proj.weight", 2, W, W},
            {&L->q_b, "encoder.layers.%d.self_attn.q_proj.bias", 1, W, 0},
            {&L->k_w, "encoder.layers.%d.self_attn.k_proj.weight", 2, W, W},
            {&L->k_b, "encoder.layers.%d.self_attn.k_proj.bias", 1, W, 0},
            {&L->v_w, "encoder.layers.%d.self_attn.v_proj.weight", 2, W, W},
            {&L->v_b, "encoder.layers.%d.self_attn.v_proj.bias", 1, W, 0},
            {&L->o_w, "encoder.layers.%d.self_attn.out_proj.weight", 2, W, W},
            {&L->o_b, "encoder.layers.%d.self_attn.out_proj.bias", 1, W, 0},
            {&L->ln2_w, "encoder.layers.%d.layer_norm2.weight", 1, W, 0},
            {&L->ln2_b, "encoder.layers.%d.layer_norm2.bias", 1, W, 0},
            {&L->fc1_w, "encoder.layers.%d.mlp.fc1.weight", 2, I, W},
            {&L->fc1_b, "encoder.layers.%d.mlp.fc1.bias", 1, I, 0},
            {&L->fc2_w, "encoder.layers.%d.mlp.fc2.weight", 2, W, I},
            {&L->fc2_b, "encoder.layers.%d.mlp.fc2.bias", 1, W, 0},
        };
        for (size_t i = 0; i < sizeof(b) / sizeof(b[0]) && st == FK_OK; i++)
            st = fk_clip_bind(ctx, c, b[i].t, b[i].fmt, l, b[i].ndim, b[i].d0, b[i].d1);
    }
    if (st == FK_OK) st = fk_clip_bind(ctx, c, &c->lnf_w, "final_layer_norm.weight", 0, 1, W, 0);
    if (st == FK_OK) st = fk_clip_bind(ctx, c, &c->lnf_b, "final_layer_norm.bias", 0, 1, W, 0);
    if (st != FK_OK) {
        fk_clip_free(c);
        return st;
    }
    *out = c;
    return FK_OK;
}

fk_status fk_clip_load(fk_context *ctx, fk_backend *be, const char *path, fk_clip **out) {
    *out = NULL;
    fk_st_model *m = NULL;
    fk_status st = fk_st_model_open(ctx, path, &m);
    if (st != FK_OK) return st;
    return fk_clip_load_model(ctx, be, m, true, out);
}

void fk_clip_release_buffers(fk_clip *c) {
    if (!c) return;
    if (c->buf) c->be->free(c->be, c->buf);
    c->buf = NULL;
    c->buf_len = 0;
    c->buf_bytes = 0;
}

void fk_clip_free(fk_clip *c) {
    if (!c) return;
    fk_clip_release_buffers(c);
    free(c->layers);
    if (c->owns_m) fk_st_model_close(c->m);
    free(c);
}

int fk_clip_pool_index(const fk_clip_config *cfg, const int64_t *ids, int n) {
    int best = 0;
    if (cfg->eos_token_id == FK_CLIP_LEGACY_EOS) {
        for (int i = 1; i < n; i++)
            if (ids[i] > ids[best]) best = i; /* first maximal id, as torch.argmax */
        return best;
    }
    for (int i = 0; i < n; i++)
        if (ids[i] == cfg->eos_token_id) return i;
    return 0;
}

/* Activation buffer layout for n tokens: x, h, q, k, v, a (n, W) and f (n, I). */
static fk_status fk_clip_reserve(fk_context *ctx, fk_clip *c, int n) {
    if (n <= c->buf_len) return FK_OK;
    fk_clip_release_buffers(c);
    uint64_t floats = (uint64_t)n * (6 * (uint64_t)c->cfg.width + (uint64_t)c->cfg.mlp_hidden);
    c->buf = c->be->alloc(c->be, (size_t)(floats * sizeof(float)));
    if (!c->buf)
        return fk_error(ctx, FK_ERR_NOMEM, "out of memory allocating %llu bytes of CLIP activations",
                        (unsigned long long)(floats * sizeof(float)));
    c->buf_len = n;
    c->buf_bytes = floats * sizeof(float);
    return FK_OK;
}

fk_status fk_clip_encode(fk_context *ctx, fk_clip *c, const int64_t *ids, int n, fk_tensor *hidden,
                         fk_tensor *pooled) {
    const fk_clip_config *g = &c->cfg;
    const int64_t W = g->width, I = g->mlp_hidden, H = g->heads, D = W / H;
    if (n < 1 || n > g->max_positions)
        return fk_error(ctx, FK_ERR_ARG, "CLIP text model: %d tokens, expected 1 to %d (max_position_embeddings)", n,
                        g->max_positions);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= g->vocab_size)
            return fk_error(ctx, FK_ERR_ARG, "CLIP text model: token id %lld at position %d outside [0, %d)",
                            (long long)ids[i], i, g->vocab_size);
    if (!hidden || hidden->dtype != FK_F32 || fk_tensor_numel(hidden) != (int64_t)n * W || !hidden->data)
        return fk_error(ctx, FK_ERR_ARG, "CLIP text model: output last_hidden_state must be f32 with %lld elements",
                        (long long)n * W);
    if (pooled && (pooled->dtype != FK_F32 || fk_tensor_numel(pooled) != W || !pooled->data))
        return fk_error(ctx, FK_ERR_ARG, "CLIP text model: output pooler_output must be f32 with %lld elements",
                        (long long)W);
    fk_backend *be = c->be;
    if ((hidden->device != FK_DEVICE_CPU && hidden->device != be->device) ||
        (pooled && pooled->device != FK_DEVICE_CPU && pooled->device != be->device))
        return fk_error(ctx, FK_ERR_ARG, "CLIP text model: the outputs must be in host memory or on the "
                        "backend's device (%s)", be->name);
    fk_status st = fk_clip_reserve(ctx, c, n);
    if (st != FK_OK) return st;
    const bool on_host = be->device == FK_DEVICE_CPU;
    float *p = c->buf;
    fk_tensor x = fk_be_view2(be, p, n, W);         /* (L, W) residual stream */
    fk_tensor h = fk_be_view2(be, p += n * W, n, W); /* (L, W) normed */
    fk_tensor q = fk_be_view2(be, p += n * W, n, W); /* (L, H·D) */
    fk_tensor k = fk_be_view2(be, p += n * W, n, W);
    fk_tensor v = fk_be_view2(be, p += n * W, n, W);
    fk_tensor a = fk_be_view2(be, p += n * W, n, W); /* (L, W) attention out / projections */
    fk_tensor f = fk_be_view2(be, p += n * W, n, I); /* (L, I) MLP hidden */
    fk_tensor q3 = fk_be_view3(be, q.data, n, H, D), k3 = fk_be_view3(be, k.data, n, H, D),
              v3 = fk_be_view3(be, v.data, n, H, D);

    /* embeddings: x[i] = token_embedding[ids[i]] + position_embedding[i]; the
     * rows are gathered on the host (in place on the CPU backend, in host
     * staging uploaded to a device), the sum is an op */
    float *xh = x.data, *hh = h.data, *stage = NULL;
    if (!on_host) {
        stage = malloc(2 * fk_tensor_nbytes(&x));
        if (!stage)
            return fk_error(ctx, FK_ERR_NOMEM, "out of memory: CLIP host staging for %d tokens", n);
        xh = stage;
        hh = stage + (int64_t)n * W;
    }
    size_t es = fk_dtype_size(c->tok_emb.dtype), ps = fk_dtype_size(c->pos_emb.dtype);
    for (int i = 0; i < n; i++) {
        float *xi = xh + (int64_t)i * W, *hi = hh + (int64_t)i * W;
        fk_convert_to_f32(xi, (const char *)c->tok_emb.data + (size_t)ids[i] * (size_t)W * es, c->tok_emb.dtype,
                          (size_t)W);
        fk_convert_to_f32(hi, (const char *)c->pos_emb.data + (size_t)i * (size_t)W * ps, c->pos_emb.dtype,
                          (size_t)W);
    }
    if (stage) {
        be->upload(be, x.data, xh, fk_tensor_nbytes(&x));
        be->upload(be, h.data, hh, fk_tensor_nbytes(&h));
        free(stage);
    }
    be->add(be, &x, &x, &h);

    const float scale = (float)(1.0 / sqrt((double)D));
    for (int l = 0; l < g->layers; l++) {
        const fk_clip_layer *L = &c->layers[l];
        be->layernorm(be, &h, &x, &L->ln1_w, &L->ln1_b, g->eps);
        be->linear(be, &q, &h, &L->q_w, &L->q_b);
        be->linear(be, &k, &h, &L->k_w, &L->k_b);
        be->linear(be, &v, &h, &L->v_w, &L->v_b);
        be->attention(be, &a, &q3, &k3, &v3, NULL, scale, true);
        be->linear(be, &h, &a, &L->o_w, &L->o_b);
        be->add(be, &x, &x, &h);
        be->layernorm(be, &h, &x, &L->ln2_w, &L->ln2_b, g->eps);
        be->linear(be, &f, &h, &L->fc1_w, &L->fc1_b);
        be->gelu_quick(be, &f, &f);
        be->linear(be, &h, &f, &L->fc2_w, &L->fc2_b);
        be->add(be, &x, &x, &h);
    }
    /* last_hidden_state: in place when hidden is on the device, else through a */
    fk_tensor out = hidden->device == be->device ? fk_be_view2(be, hidden->data, n, W) : a;
    be->layernorm(be, &out, &x, &c->lnf_w, &c->lnf_b, g->eps);
    if (out.data != hidden->data) be->download(be, hidden->data, out.data, fk_tensor_nbytes(&out));
    if (pooled) {
        /* pooler_output = row pi of last_hidden_state, wherever each lives */
        const int pi = fk_clip_pool_index(g, ids, n);
        const size_t bytes = (size_t)W * sizeof(float);
        float *row = (float *)hidden->data + (int64_t)pi * W;
        if (pooled->device == FK_DEVICE_CPU && hidden->device == FK_DEVICE_CPU) {
            memcpy(pooled->data, row, bytes);
        } else if (pooled->device == FK_DEVICE_CPU) {
            be->download(be, pooled->data, row, bytes);
        } else if (hidden->device == FK_DEVICE_CPU) {
            be->upload(be, pooled->data, row, bytes);
        } else {
            fk_tensor dst = fk_be_view2(be, pooled->data, 1, W), src = fk_be_view2(be, row, 1, W);
            be->copy_cols(be, &dst, 0, &src, 0, W);
        }
    }
    return FK_OK;
}
