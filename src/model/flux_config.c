/* flux_config: FLUX transformer presets, the official (BFL) parameter layout,
 * parameter counts, and configuration inference from a checkpoint's tensor
 * shapes (BFL, prefixed BFL, diffusers). See flux.h. */
#include "model/flux.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- presets ---------------------------------------------------------------- */

typedef struct fk_flux_preset_def {
    const char *name;
    fk_flux_config cfg;
} fk_flux_preset_def;

#define FK_FLUX_BIG(dd, ds, guid)                                                          \
    {.hidden = 3072, .num_heads = 24, .head_dim = 128, .depth_double = (dd),               \
     .depth_single = (ds), .in_channels = 64, .out_channels = 64, .context_dim = 4096,     \
     .vec_dim = 768, .mlp_hidden = 12288, .guidance_embed = (guid), .qkv_bias = true,      \
     .axes_dim = {16, 56, 56}, .theta = 10000.0f}

static const fk_flux_preset_def fk_flux_presets[] = {
    {"flux-mini", FK_FLUX_BIG(5, 10, true)},     /* TencentARC Flux-mini, 3.2 B */
    {"flux-dev", FK_FLUX_BIG(19, 38, true)},     /* FLUX.1-dev, 11.9 B */
    {"flux-schnell", FK_FLUX_BIG(19, 38, false)}, /* FLUX.1-schnell, no guidance_in */
    /* the tiny-dev fixture's shape (tests/data/flux/tiny-dev.*) */
    {"tiny-flux",
     {.hidden = 96, .num_heads = 3, .head_dim = 32, .depth_double = 2, .depth_single = 2,
      .in_channels = 64, .out_channels = 64, .context_dim = 32, .vec_dim = 24, .mlp_hidden = 384,
      .guidance_embed = true, .qkv_bias = true, .axes_dim = {8, 12, 12}, .theta = 10000.0f}},
};
#define FK_FLUX_N_PRESETS ((int)(sizeof(fk_flux_presets) / sizeof(fk_flux_presets[0])))

bool fk_flux_preset(const char *name, fk_flux_config *cfg) {
    if (!name) return false;
    for (int i = 0; i < FK_FLUX_N_PRESETS; i++) {
        if (!strcmp(name, fk_flux_presets[i].name)) {
            if (cfg) *cfg = fk_flux_presets[i].cfg;
            return true;
        }
    }
    return false;
}

const char *fk_flux_preset_list(void) { return "flux-mini, flux-dev, flux-schnell, tiny-flux"; }

static bool fk_flux_config_equal(const fk_flux_config *a, const fk_flux_config *b) {
    return a->hidden == b->hidden && a->num_heads == b->num_heads && a->head_dim == b->head_dim &&
           a->depth_double == b->depth_double && a->depth_single == b->depth_single &&
           a->in_channels == b->in_channels && a->out_channels == b->out_channels &&
           a->context_dim == b->context_dim && a->vec_dim == b->vec_dim &&
           a->mlp_hidden == b->mlp_hidden && a->guidance_embed == b->guidance_embed &&
           a->qkv_bias == b->qkv_bias && a->axes_dim[0] == b->axes_dim[0] &&
           a->axes_dim[1] == b->axes_dim[1] && a->axes_dim[2] == b->axes_dim[2] &&
           a->theta == b->theta;
}

const char *fk_flux_config_name(const fk_flux_config *cfg) {
    for (int i = 0; i < FK_FLUX_N_PRESETS; i++)
        if (fk_flux_config_equal(cfg, &fk_flux_presets[i].cfg)) return fk_flux_presets[i].name;
    return "custom";
}

void fk_flux_default_axes(int head_dim, int axes_dim[3]) {
    int a = 2 * ((7 * head_dim) / 32);
    axes_dim[1] = a;
    axes_dim[2] = a;
    axes_dim[0] = head_dim - 2 * a;
}

fk_status fk_flux_config_check(fk_context *ctx, const fk_flux_config *c) {
#define FK_FC_POS(field)                                                                   \
    if (c->field <= 0 || c->field > (1 << 24))                                             \
        return fk_error(ctx, FK_ERR_ARG, "flux config: " #field " = %d, expected 1..%d",   \
                        c->field, 1 << 24);
    FK_FC_POS(hidden)
    FK_FC_POS(num_heads)
    FK_FC_POS(head_dim)
    FK_FC_POS(in_channels)
    FK_FC_POS(out_channels)
    FK_FC_POS(context_dim)
    FK_FC_POS(vec_dim)
    FK_FC_POS(mlp_hidden)
#undef FK_FC_POS
    if (c->depth_double < 0 || c->depth_single < 0 || c->depth_double > 4096 ||
        c->depth_single > 4096 || c->depth_double + c->depth_single == 0)
        return fk_error(ctx, FK_ERR_ARG, "flux config: depths %d double + %d single, expected "
                        "0..4096 each and at least one block", c->depth_double, c->depth_single);
    if ((int64_t)c->num_heads * c->head_dim != c->hidden)
        return fk_error(ctx, FK_ERR_ARG, "flux config: hidden %d != num_heads %d * head_dim %d",
                        c->hidden, c->num_heads, c->head_dim);
    if (c->head_dim > FK_FLUX_MAX_HEAD_DIM)
        return fk_error(ctx, FK_ERR_ARG, "flux config: head_dim %d, at most %d supported",
                        c->head_dim, FK_FLUX_MAX_HEAD_DIM);
    if (c->head_dim % 2)
        return fk_error(ctx, FK_ERR_ARG, "flux config: head_dim %d must be even (RoPE pairs)",
                        c->head_dim);
    int sum = 0;
    for (int i = 0; i < 3; i++) {
        if (c->axes_dim[i] < 0 || c->axes_dim[i] % 2)
            return fk_error(ctx, FK_ERR_ARG, "flux config: axes_dim[%d] = %d, expected even >= 0",
                            i, c->axes_dim[i]);
        sum += c->axes_dim[i];
    }
    if (sum != c->head_dim)
        return fk_error(ctx, FK_ERR_ARG,
                        "flux config: axes_dim [%d, %d, %d] sum to %d, expected head_dim %d",
                        c->axes_dim[0], c->axes_dim[1], c->axes_dim[2], sum, c->head_dim);
    if (!(c->theta > 0))
        return fk_error(ctx, FK_ERR_ARG, "flux config: theta must be positive");
    return FK_OK;
}

/* ---- the official parameter layout ---------------------------------------------
 * In the order of the BFL state dict: img_in, time_in, vector_in, guidance_in,
 * txt_in, double_blocks.*, single_blocks.*, final_layer. */

static void fk_fp_emit(fk_param_fn fn, void *user, const char *name, int ndim, int64_t d0,
                       int64_t d1, fk_param_kind kind, int64_t fan_in) {
    int64_t shape[2] = {d0, d1};
    fn(user, name, ndim, shape, kind, fan_in);
}

/* "<prefix>.weight" (out, in) and, if bias, "<prefix>.bias" (out). */
static void fk_fp_linear(fk_param_fn fn, void *user, const char *prefix, int64_t out, int64_t in,
                         bool bias) {
    char name[256];
    snprintf(name, sizeof(name), "%s.weight", prefix);
    fk_fp_emit(fn, user, name, 2, out, in, FK_PARAM_WEIGHT, in);
    if (bias) {
        snprintf(name, sizeof(name), "%s.bias", prefix);
        fk_fp_emit(fn, user, name, 1, out, 0, FK_PARAM_BIAS, in);
    }
}

static void fk_fp_embedder(fk_param_fn fn, void *user, const char *prefix, int64_t in, int64_t C) {
    char name[160];
    snprintf(name, sizeof(name), "%s.in_layer", prefix);
    fk_fp_linear(fn, user, name, C, in, true);
    snprintf(name, sizeof(name), "%s.out_layer", prefix);
    fk_fp_linear(fn, user, name, C, C, true);
}

void fk_flux_enum_params(const fk_flux_config *cfg, fk_param_fn fn, void *user) {
    const int64_t C = cfg->hidden, D = cfg->head_dim, M = cfg->mlp_hidden;
    char name[160];
    fk_fp_linear(fn, user, "img_in", C, cfg->in_channels, true);
    fk_fp_embedder(fn, user, "time_in", 256, C);
    fk_fp_embedder(fn, user, "vector_in", cfg->vec_dim, C);
    if (cfg->guidance_embed) fk_fp_embedder(fn, user, "guidance_in", 256, C);
    fk_fp_linear(fn, user, "txt_in", C, cfg->context_dim, true);
    for (int i = 0; i < cfg->depth_double; i++) {
        static const char *const streams[2] = {"img", "txt"};
        for (int s = 0; s < 2; s++) {
            const char *st = streams[s];
            snprintf(name, sizeof(name), "double_blocks.%d.%s_mod.lin", i, st);
            fk_fp_linear(fn, user, name, 6 * C, C, true);
            snprintf(name, sizeof(name), "double_blocks.%d.%s_attn.qkv", i, st);
            fk_fp_linear(fn, user, name, 3 * C, C, cfg->qkv_bias);
            snprintf(name, sizeof(name), "double_blocks.%d.%s_attn.norm.query_norm.scale", i, st);
            fk_fp_emit(fn, user, name, 1, D, 0, FK_PARAM_NORM_SCALE, D);
            snprintf(name, sizeof(name), "double_blocks.%d.%s_attn.norm.key_norm.scale", i, st);
            fk_fp_emit(fn, user, name, 1, D, 0, FK_PARAM_NORM_SCALE, D);
            snprintf(name, sizeof(name), "double_blocks.%d.%s_attn.proj", i, st);
            fk_fp_linear(fn, user, name, C, C, true);
            snprintf(name, sizeof(name), "double_blocks.%d.%s_mlp.0", i, st);
            fk_fp_linear(fn, user, name, M, C, true);
            snprintf(name, sizeof(name), "double_blocks.%d.%s_mlp.2", i, st);
            fk_fp_linear(fn, user, name, C, M, true);
        }
    }
    for (int i = 0; i < cfg->depth_single; i++) {
        snprintf(name, sizeof(name), "single_blocks.%d.linear1", i);
        fk_fp_linear(fn, user, name, 3 * C + M, C, true);
        snprintf(name, sizeof(name), "single_blocks.%d.linear2", i);
        fk_fp_linear(fn, user, name, C, C + M, true);
        snprintf(name, sizeof(name), "single_blocks.%d.norm.query_norm.scale", i);
        fk_fp_emit(fn, user, name, 1, D, 0, FK_PARAM_NORM_SCALE, D);
        snprintf(name, sizeof(name), "single_blocks.%d.norm.key_norm.scale", i);
        fk_fp_emit(fn, user, name, 1, D, 0, FK_PARAM_NORM_SCALE, D);
        snprintf(name, sizeof(name), "single_blocks.%d.modulation.lin", i);
        fk_fp_linear(fn, user, name, 3 * C, C, true);
    }
    fk_fp_linear(fn, user, "final_layer.linear", cfg->out_channels, C, true);
    fk_fp_linear(fn, user, "final_layer.adaLN_modulation.1", 2 * C, C, true);
}

static void fk_fp_count(void *user, const char *name, int ndim, const int64_t *shape,
                        fk_param_kind kind, int64_t fan_in) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    *(int64_t *)user += n;
}

int64_t fk_flux_param_count(const fk_flux_config *cfg) {
    int64_t n = 0;
    fk_flux_enum_params(cfg, fk_fp_count, &n);
    return n;
}

/* ---- configuration inference ------------------------------------------------ */

/* Find "prefix" such that prefix + suffix is a tensor, the suffix starting
 * at a '.'-boundary (or the whole name). Shortest prefix wins. */
static bool fk_fc_find_prefix(const fk_st_model *m, const char *suffix, char *prefix, size_t n) {
    size_t ls = strlen(suffix);
    bool found = false;
    size_t best = 0;
    int cnt = fk_st_model_count(m);
    for (int i = 0; i < cnt; i++) {
        const char *name = fk_st_model_get(m, i)->name;
        size_t ln = strlen(name);
        if (ln < ls || strcmp(name + ln - ls, suffix)) continue;
        size_t lp = ln - ls;
        if (lp > 0 && name[lp - 1] != '.') continue;
        if (lp >= n) continue;
        if (!found || lp < best) {
            found = true;
            best = lp;
            memcpy(prefix, name, lp);
            prefix[lp] = '\0';
        }
    }
    return found;
}

static const fk_st_tensor *fk_fc_get(const fk_st_model *m, const char *prefix, const char *fmt,
                                     ...) __attribute__((format(printf, 3, 4)));
static const fk_st_tensor *fk_fc_get(const fk_st_model *m, const char *prefix, const char *fmt,
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

/* Highest N+1 over tensors named prefix + group + "N." ... (0 when none). */
static int fk_fc_count_blocks(const fk_st_model *m, const char *prefix, const char *group) {
    size_t lp = strlen(prefix), lg = strlen(group);
    int depth = 0, cnt = fk_st_model_count(m);
    for (int i = 0; i < cnt; i++) {
        const char *name = fk_st_model_get(m, i)->name;
        if (strncmp(name, prefix, lp) || strncmp(name + lp, group, lg)) continue;
        const char *p = name + lp + lg;
        if (*p < '0' || *p > '9') continue;
        char *end = NULL;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || *end != '.' || v < 0 || v >= 100000) continue;
        if ((int)v + 1 > depth) depth = (int)v + 1;
    }
    return depth;
}

/* Dim d of a tensor with exactly ndim dims (0 when absent or odd). */
static int fk_fc_dim(const fk_st_tensor *t, int ndim, int d) {
    if (!t || t->ndim != ndim || t->shape[d] <= 0 || t->shape[d] > (1 << 24)) return 0;
    return (int)t->shape[d];
}

/* axes_dim / theta from a JSON config object (BFL "axes_dim"/"theta" or
 * diffusers "axes_dims_rope"). Returns FK_OK when absent (nothing set). */
static fk_status fk_fc_axes_from_json(fk_context *ctx, const char *label, const char *text,
                                      fk_flux_config *cfg, bool *found) {
    cJSON *root = cJSON_Parse(text);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return fk_error(ctx, FK_ERR_FORMAT, "%s: config is not a JSON object", label);
    }
    fk_status st = FK_OK;
    const cJSON *axes = cJSON_GetObjectItemCaseSensitive(root, "axes_dim");
    if (!axes) axes = cJSON_GetObjectItemCaseSensitive(root, "axes_dims_rope");
    if (axes) {
        if (!cJSON_IsArray(axes) || cJSON_GetArraySize(axes) != 3) {
            st = fk_error(ctx, FK_ERR_FORMAT, "%s: axes_dim must be an array of 3 integers", label);
            goto done;
        }
        for (int i = 0; i < 3; i++) {
            const cJSON *v = cJSON_GetArrayItem(axes, i);
            if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 65536 ||
                v->valuedouble != (double)(int)v->valuedouble) {
                st = fk_error(ctx, FK_ERR_FORMAT, "%s: axes_dim[%d] is not a small integer", label, i);
                goto done;
            }
            cfg->axes_dim[i] = (int)v->valuedouble;
        }
        *found = true;
    }
    const cJSON *theta = cJSON_GetObjectItemCaseSensitive(root, "theta");
    if (theta) {
        if (!cJSON_IsNumber(theta) || !(theta->valuedouble > 0) || theta->valuedouble > 1e12) {
            st = fk_error(ctx, FK_ERR_FORMAT, "%s: theta must be a positive number", label);
            goto done;
        }
        cfg->theta = (float)theta->valuedouble;
    }
done:
    cJSON_Delete(root);
    return st;
}

/* Read a small text file (config.json) into a malloc'ed string; NULL if absent. */
static char *fk_fc_read_small(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n >= 0 && n < (1 << 20) && fseek(f, 0, SEEK_SET) == 0) {
            buf = malloc((size_t)n + 1);
            if (buf && fread(buf, 1, (size_t)n, f) == (size_t)n) {
                buf[n] = '\0';
            } else {
                free(buf);
                buf = NULL;
            }
        }
    }
    fclose(f);
    return buf;
}

/* The diffusers config.json next to the checkpoint (folder, index or shard). */
static char *fk_fc_diffusers_config(const fk_st_model *m, char *label, size_t nlabel) {
    const char *path = fk_st_model_path(m);
    if (!path) return NULL;
    char dir[4096];
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        snprintf(dir, sizeof(dir), "%s", path);
    } else {
        const char *slash = strrchr(path, '/');
        if (slash)
            snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
        else
            snprintf(dir, sizeof(dir), ".");
    }
    int k = snprintf(label, nlabel, "%s/config.json", dir);
    if (k < 0 || (size_t)k >= nlabel) return NULL;
    return fk_fc_read_small(label);
}

fk_status fk_flux_config_infer(fk_context *ctx, const fk_st_model *m, fk_flux_config *cfg,
                               const char **format_out) {
    if (!m || !cfg) return fk_error(ctx, FK_ERR_ARG, "fk_flux_config_infer: NULL argument");
    const char *path = fk_st_model_path(m);
    if (!path) path = "checkpoint";
    char prefix[256];
    fk_flux_config c;
    memset(&c, 0, sizeof(c));
    c.theta = 10000.0f;
    const char *format;
    const fk_st_tensor *qn = NULL, *mlp0 = NULL, *out_w = NULL;

    if (fk_fc_find_prefix(m, "img_in.weight", prefix, sizeof(prefix))) {
        format = prefix[0] ? "bfl-prefixed" : "bfl";
        const fk_st_tensor *img_in = fk_fc_get(m, prefix, "img_in.weight");
        const fk_st_tensor *txt_in = fk_fc_get(m, prefix, "txt_in.weight");
        const fk_st_tensor *vec_in = fk_fc_get(m, prefix, "vector_in.in_layer.weight");
        if (!txt_in || !vec_in)
            return fk_error(ctx, FK_ERR_FORMAT, "%s: not a FLUX transformer: %s%s missing", path,
                            prefix, txt_in ? "vector_in.in_layer.weight" : "txt_in.weight");
        c.hidden = fk_fc_dim(img_in, 2, 0);
        c.in_channels = fk_fc_dim(img_in, 2, 1);
        c.context_dim = fk_fc_dim(txt_in, 2, 1);
        c.vec_dim = fk_fc_dim(vec_in, 2, 1);
        c.depth_double = fk_fc_count_blocks(m, prefix, "double_blocks.");
        c.depth_single = fk_fc_count_blocks(m, prefix, "single_blocks.");
        c.guidance_embed = fk_fc_get(m, prefix, "guidance_in.in_layer.weight") != NULL;
        if (c.depth_double > 0) {
            qn = fk_fc_get(m, prefix, "double_blocks.0.img_attn.norm.query_norm.scale");
            mlp0 = fk_fc_get(m, prefix, "double_blocks.0.img_mlp.0.weight");
            c.qkv_bias = fk_fc_get(m, prefix, "double_blocks.0.img_attn.qkv.bias") != NULL;
            if (!qn || !mlp0)
                return fk_error(ctx, FK_ERR_FORMAT, "%s: tensor %sdouble_blocks.0.%s missing",
                                path, prefix,
                                qn ? "img_mlp.0.weight" : "img_attn.norm.query_norm.scale");
        } else {
            c.qkv_bias = true;
            qn = fk_fc_get(m, prefix, "single_blocks.0.norm.query_norm.scale");
            if (!qn)
                return fk_error(ctx, FK_ERR_FORMAT,
                                "%s: tensor %ssingle_blocks.0.norm.query_norm.scale missing", path,
                                prefix);
        }
        out_w = fk_fc_get(m, prefix, "final_layer.linear.weight");
        if (!out_w)
            return fk_error(ctx, FK_ERR_FORMAT, "%s: tensor %sfinal_layer.linear.weight missing",
                            path, prefix);
        if (!mlp0 && c.depth_single > 0) {
            const fk_st_tensor *l1 = fk_fc_get(m, prefix, "single_blocks.0.linear1.weight");
            int rows = fk_fc_dim(l1, 2, 0);
            if (!l1 || rows <= 3 * c.hidden)
                return fk_error(ctx, FK_ERR_FORMAT,
                                "%s: tensor %ssingle_blocks.0.linear1.weight missing or smaller "
                                "than 3 * hidden", path, prefix);
            c.mlp_hidden = rows - 3 * c.hidden;
        }
    } else if (fk_fc_find_prefix(m, "x_embedder.weight", prefix, sizeof(prefix))) {
        format = "diffusers";
        const fk_st_tensor *img_in = fk_fc_get(m, prefix, "x_embedder.weight");
        const fk_st_tensor *txt_in = fk_fc_get(m, prefix, "context_embedder.weight");
        const fk_st_tensor *vec_in =
            fk_fc_get(m, prefix, "time_text_embed.text_embedder.linear_1.weight");
        if (!txt_in || !vec_in)
            return fk_error(ctx, FK_ERR_FORMAT, "%s: not a FLUX transformer: %s%s missing", path,
                            prefix,
                            txt_in ? "time_text_embed.text_embedder.linear_1.weight"
                                   : "context_embedder.weight");
        c.hidden = fk_fc_dim(img_in, 2, 0);
        c.in_channels = fk_fc_dim(img_in, 2, 1);
        c.context_dim = fk_fc_dim(txt_in, 2, 1);
        c.vec_dim = fk_fc_dim(vec_in, 2, 1);
        c.depth_double = fk_fc_count_blocks(m, prefix, "transformer_blocks.");
        c.depth_single = fk_fc_count_blocks(m, prefix, "single_transformer_blocks.");
        c.guidance_embed =
            fk_fc_get(m, prefix, "time_text_embed.guidance_embedder.linear_1.weight") != NULL;
        if (c.depth_double > 0) {
            qn = fk_fc_get(m, prefix, "transformer_blocks.0.attn.norm_q.weight");
            mlp0 = fk_fc_get(m, prefix, "transformer_blocks.0.ff.net.0.proj.weight");
            c.qkv_bias = fk_fc_get(m, prefix, "transformer_blocks.0.attn.to_q.bias") != NULL;
            if (!qn || !mlp0)
                return fk_error(ctx, FK_ERR_FORMAT, "%s: tensor %stransformer_blocks.0.%s missing",
                                path, prefix, qn ? "ff.net.0.proj.weight" : "attn.norm_q.weight");
        } else {
            c.qkv_bias = true;
            qn = fk_fc_get(m, prefix, "single_transformer_blocks.0.attn.norm_q.weight");
            mlp0 = fk_fc_get(m, prefix, "single_transformer_blocks.0.proj_mlp.weight");
            if (!qn || !mlp0)
                return fk_error(ctx, FK_ERR_FORMAT,
                                "%s: tensor %ssingle_transformer_blocks.0.%s missing", path, prefix,
                                qn ? "proj_mlp.weight" : "attn.norm_q.weight");
        }
        out_w = fk_fc_get(m, prefix, "proj_out.weight");
        if (!out_w)
            return fk_error(ctx, FK_ERR_FORMAT, "%s: tensor %sproj_out.weight missing", path,
                            prefix);
    } else {
        return fk_error(ctx, FK_ERR_FORMAT,
                        "%s: not a FLUX transformer (no img_in.weight or x_embedder.weight)", path);
    }

    c.head_dim = fk_fc_dim(qn, 1, 0);
    if (mlp0) c.mlp_hidden = fk_fc_dim(mlp0, 2, 0);
    c.out_channels = fk_fc_dim(out_w, 2, 0);
    if (!c.hidden || !c.in_channels || !c.context_dim || !c.vec_dim || !c.head_dim ||
        !c.mlp_hidden || !c.out_channels)
        return fk_error(ctx, FK_ERR_FORMAT,
                        "%s: FLUX transformer tensors have unexpected ranks (embedders must be 2-D, "
                        "QK-norm scales 1-D)", path);
    if (c.hidden % c.head_dim)
        return fk_error(ctx, FK_ERR_FORMAT,
                        "%s: hidden size %d (from the input embedding) is not a multiple of the "
                        "head dim %d (from the QK-norm scale length)", path, c.hidden, c.head_dim);
    c.num_heads = c.hidden / c.head_dim;
    if (c.depth_double + c.depth_single == 0)
        return fk_error(ctx, FK_ERR_FORMAT, "%s: FLUX transformer without blocks", path);

    /* RoPE axes: the checkpoint's config when it has one, else the default. */
    fk_flux_default_axes(c.head_dim, c.axes_dim);
    bool found = false;
    const char *meta = fk_st_model_meta(m, "config");
    if (meta) {
        char label[4200];
        snprintf(label, sizeof(label), "%s: __metadata__ \"config\"", path);
        fk_status st = fk_fc_axes_from_json(ctx, label, meta, &c, &found);
        if (st != FK_OK) return st;
    }
    if (!found && !strcmp(format, "diffusers")) {
        char label[4200];
        char *text = fk_fc_diffusers_config(m, label, sizeof(label));
        if (text) {
            fk_status st = fk_fc_axes_from_json(ctx, label, text, &c, &found);
            free(text);
            if (st != FK_OK) return st;
        }
    }
    fk_status st = fk_flux_config_check(ctx, &c);
    if (st != FK_OK) {
        char msg[FK_ERRMSG_MAX];
        snprintf(msg, sizeof(msg), "%s", fk_context_error(ctx));
        return fk_error(ctx, FK_ERR_FORMAT, "%s: inconsistent FLUX transformer: %s", path, msg);
    }
    *cfg = c;
    if (format_out) *format_out = format;
    return FK_OK;
}
