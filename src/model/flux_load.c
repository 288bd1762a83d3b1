/* flux_load: FLUX transformer weights from BFL single files (plain or under a
 * key prefix such as "model.diffusion_model."), diffusers transformer/
 * folders (sharded or not), or random weights in memory. Every tensor is
 * checked for presence, shape and dtype; the weights stay in the mapped file
 * in their own dtype. See flux.h for the layout of fk_flux_weights. */
#include "model/flux.h"

#include "core/rng.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- checked tensor lookup -------------------------------------------------- */

typedef struct fk_flux_loader {
    fk_context *ctx;
    const fk_st_model *st;
    const char *path;   /* for messages */
    char prefix[256];   /* key prefix ("" for plain files) */
    fk_flux_model *model;
} fk_flux_loader;

static bool fk_fl_dtype_ok(fk_dtype t) {
    return t == FK_F32 || t == FK_BF16 || t == FK_F16 || t == FK_F8_E4M3 || t == FK_F8_E5M2 ||
           t == FK_F64;
}

static void fk_fl_note_dtype(fk_flux_model *m, fk_dtype t, int ndim) {
    if (ndim != 2) return; /* the linear weights decide the model's dtype */
    if (m->dtype == FK_DTYPE_COUNT)
        m->dtype = t;
    else if (m->dtype != t)
        m->mixed_dtypes = true;
}

/* Look up prefix + name (printf-style) and check it has exactly the shape
 * (d0) or (d0, d1) and a float dtype. *out becomes a view of the mapping.
 * Missing and optional: *out zeroed (absent), FK_OK. */
static fk_status fk_fl_get(fk_flux_loader *ld, fk_tensor *out, bool optional, int ndim, int64_t d0,
                           int64_t d1, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static fk_status fk_fl_get(fk_flux_loader *ld, fk_tensor *out, bool optional, int ndim, int64_t d0,
                           int64_t d1, const char *fmt, ...) {
    char name[512];
    int n = snprintf(name, sizeof(name), "%s", ld->prefix);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name + n, sizeof(name) - (size_t)n, fmt, ap);
    va_end(ap);
    char want[64];
    if (ndim == 1)
        snprintf(want, sizeof(want), "[%lld]", (long long)d0);
    else
        snprintf(want, sizeof(want), "[%lld, %lld]", (long long)d0, (long long)d1);
    memset(out, 0, sizeof(*out));
    const fk_st_tensor *t = fk_st_model_find(ld->st, name);
    if (!t) {
        if (optional) return FK_OK;
        return fk_error(ld->ctx, FK_ERR_SHAPE, "%s: missing tensor %s (expected shape %s)",
                        ld->path, name, want);
    }
    bool shape_ok = t->ndim == ndim && t->shape[0] == d0 && (ndim == 1 || t->shape[1] == d1);
    if (!shape_ok) {
        fk_tensor v = fk_st_view(t);
        char got[160];
        fk_shape_str(&v, got, sizeof(got));
        return fk_error(ld->ctx, FK_ERR_SHAPE, "%s: tensor %s has shape %s, expected %s", ld->path,
                        name, got, want);
    }
    if (!fk_fl_dtype_ok(t->dtype))
        return fk_error(ld->ctx, FK_ERR_SHAPE,
                        "%s: tensor %s has dtype %s, expected a float type (F32, BF16, F16, "
                        "F8_E4M3, F8_E5M2)", ld->path, name, fk_dtype_name(t->dtype));
    *out = fk_st_view(t);
    ld->model->mapped_bytes += t->nbytes;
    fk_fl_note_dtype(ld->model, t->dtype, ndim);
    return FK_OK;
}

/* Rows [r0, r0 + n) of a 1-D or 2-D tensor (a view; absent stays absent). */
static fk_tensor fk_fl_rows(const fk_tensor *t, int64_t r0, int64_t n) {
    if (!t->data) return *t;
    if (t->ndim == 1)
        return fk_view1(t->dtype, (char *)t->data + (size_t)r0 * fk_dtype_size(t->dtype), n);
    return fk_tensor_rows_view(t, r0, n);
}

#define FK_TRY(expr)                                                                       \
    do {                                                                                   \
        fk_status fk_try_s_ = (expr);                                                      \
        if (fk_try_s_ != FK_OK) return fk_try_s_;                                          \
    } while (0)

/* A linear layer "<name>.weight" (out, in) + "<name>.bias" (out). */
static fk_status fk_fl_linear(fk_flux_loader *ld, fk_flux_linear *l, int64_t out, int64_t in,
                              bool bias, const char *name) {
    FK_TRY(fk_fl_get(ld, &l->w, false, 2, out, in, "%s.weight", name));
    memset(&l->b, 0, sizeof(l->b));
    if (bias) FK_TRY(fk_fl_get(ld, &l->b, false, 1, out, 0, "%s.bias", name));
    return FK_OK;
}

/* Split a fused linear (rows) into n parts of the given sizes. */
static void fk_fl_split(const fk_flux_linear *fused, fk_flux_linear **parts, const int64_t *sizes,
                        int n) {
    int64_t r = 0;
    for (int i = 0; i < n; i++) {
        parts[i]->w = fk_fl_rows(&fused->w, r, sizes[i]);
        parts[i]->b = fk_fl_rows(&fused->b, r, sizes[i]);
        r += sizes[i];
    }
}

/* ---- BFL layout ---------------------------------------------------------------- */

static fk_status fk_fl_bfl_embedder(fk_flux_loader *ld, fk_flux_embedder *e, int64_t in,
                                    const char *name) {
    const int64_t C = ld->model->cfg.hidden;
    char n[128];
    snprintf(n, sizeof(n), "%s.in_layer", name);
    FK_TRY(fk_fl_linear(ld, &e->in_layer, C, in, true, n));
    snprintf(n, sizeof(n), "%s.out_layer", name);
    return fk_fl_linear(ld, &e->out_layer, C, C, true, n);
}

static fk_status fk_fl_bfl(fk_flux_loader *ld) {
    fk_flux_model *m = ld->model;
    const fk_flux_config *c = &m->cfg;
    const int64_t C = c->hidden, D = c->head_dim, M = c->mlp_hidden;
    fk_flux_weights *w = &m->w;
    char n[160];
    FK_TRY(fk_fl_linear(ld, &w->img_in, C, c->in_channels, true, "img_in"));
    FK_TRY(fk_fl_bfl_embedder(ld, &w->time_in, 256, "time_in"));
    FK_TRY(fk_fl_bfl_embedder(ld, &w->vector_in, c->vec_dim, "vector_in"));
    if (c->guidance_embed) FK_TRY(fk_fl_bfl_embedder(ld, &w->guidance_in, 256, "guidance_in"));
    FK_TRY(fk_fl_linear(ld, &w->txt_in, C, c->context_dim, true, "txt_in"));
    for (int i = 0; i < c->depth_double; i++) {
        static const char *const names[2] = {"img", "txt"};
        for (int s = 0; s < 2; s++) {
            fk_flux_stream *S = s ? &w->dbl[i].txt : &w->dbl[i].img;
            const char *sn = names[s];
            snprintf(n, sizeof(n), "double_blocks.%d.%s_mod.lin", i, sn);
            FK_TRY(fk_fl_linear(ld, &S->mod, 6 * C, C, true, n));
            fk_flux_linear qkv;
            snprintf(n, sizeof(n), "double_blocks.%d.%s_attn.qkv", i, sn);
            FK_TRY(fk_fl_linear(ld, &qkv, 3 * C, C, c->qkv_bias, n));
            fk_flux_linear *parts[3] = {&S->q, &S->k, &S->v};
            const int64_t sizes[3] = {C, C, C};
            fk_fl_split(&qkv, parts, sizes, 3);
            FK_TRY(fk_fl_get(ld, &S->q_scale, false, 1, D, 0,
                             "double_blocks.%d.%s_attn.norm.query_norm.scale", i, sn));
            FK_TRY(fk_fl_get(ld, &S->k_scale, false, 1, D, 0,
                             "double_blocks.%d.%s_attn.norm.key_norm.scale", i, sn));
            snprintf(n, sizeof(n), "double_blocks.%d.%s_attn.proj", i, sn);
            FK_TRY(fk_fl_linear(ld, &S->proj, C, C, true, n));
            snprintf(n, sizeof(n), "double_blocks.%d.%s_mlp.0", i, sn);
            FK_TRY(fk_fl_linear(ld, &S->mlp0, M, C, true, n));
            snprintf(n, sizeof(n), "double_blocks.%d.%s_mlp.2", i, sn);
            FK_TRY(fk_fl_linear(ld, &S->mlp2, C, M, true, n));
        }
    }
    for (int i = 0; i < c->depth_single; i++) {
        fk_flux_single *S = &w->sgl[i];
        fk_flux_linear l1;
        snprintf(n, sizeof(n), "single_blocks.%d.linear1", i);
        FK_TRY(fk_fl_linear(ld, &l1, 3 * C + M, C, true, n));
        fk_flux_linear *parts[4] = {&S->q, &S->k, &S->v, &S->mlp};
        const int64_t sizes[4] = {C, C, C, M};
        fk_fl_split(&l1, parts, sizes, 4);
        snprintf(n, sizeof(n), "single_blocks.%d.linear2", i);
        FK_TRY(fk_fl_linear(ld, &S->linear2, C, C + M, true, n));
        FK_TRY(fk_fl_get(ld, &S->q_scale, false, 1, D, 0, "single_blocks.%d.norm.query_norm.scale", i));
        FK_TRY(fk_fl_get(ld, &S->k_scale, false, 1, D, 0, "single_blocks.%d.norm.key_norm.scale", i));
        snprintf(n, sizeof(n), "single_blocks.%d.modulation.lin", i);
        FK_TRY(fk_fl_linear(ld, &S->mod, 3 * C, C, true, n));
    }
    FK_TRY(fk_fl_linear(ld, &w->final_linear, c->out_channels, C, true, "final_layer.linear"));
    fk_flux_linear ada;
    FK_TRY(fk_fl_linear(ld, &ada, 2 * C, C, true, "final_layer.adaLN_modulation.1"));
    fk_flux_linear *parts[2] = {&w->final_shift, &w->final_scale}; /* BFL: [shift | scale] */
    const int64_t sizes[2] = {C, C};
    fk_fl_split(&ada, parts, sizes, 2);
    return FK_OK;
}

/* ---- diffusers layout (FluxTransformer2DModel) ------------------------------------
 * q/k/v of both streams and the single blocks' q/k/v/proj_mlp are separate
 * tensors (the rows of BFL's qkv / linear1); norm_out.linear is [scale | shift]. */

static fk_status fk_fl_dif_embedder(fk_flux_loader *ld, fk_flux_embedder *e, int64_t in,
                                    const char *name) {
    const int64_t C = ld->model->cfg.hidden;
    char n[160];
    snprintf(n, sizeof(n), "time_text_embed.%s.linear_1", name);
    FK_TRY(fk_fl_linear(ld, &e->in_layer, C, in, true, n));
    snprintf(n, sizeof(n), "time_text_embed.%s.linear_2", name);
    return fk_fl_linear(ld, &e->out_layer, C, C, true, n);
}

static fk_status fk_fl_diffusers(fk_flux_loader *ld) {
    fk_flux_model *m = ld->model;
    const fk_flux_config *c = &m->cfg;
    const int64_t C = c->hidden, D = c->head_dim, M = c->mlp_hidden;
    fk_flux_weights *w = &m->w;
    char n[192];
    FK_TRY(fk_fl_linear(ld, &w->img_in, C, c->in_channels, true, "x_embedder"));
    FK_TRY(fk_fl_dif_embedder(ld, &w->time_in, 256, "timestep_embedder"));
    FK_TRY(fk_fl_dif_embedder(ld, &w->vector_in, c->vec_dim, "text_embedder"));
    if (c->guidance_embed) FK_TRY(fk_fl_dif_embedder(ld, &w->guidance_in, 256, "guidance_embedder"));
    FK_TRY(fk_fl_linear(ld, &w->txt_in, C, c->context_dim, true, "context_embedder"));
    for (int i = 0; i < c->depth_double; i++) {
        /* img stream: to_q/to_k/to_v, norm_q/norm_k, to_out.0, ff, norm1;
         * txt stream: add_{q,k,v}_proj, norm_added_{q,k}, to_add_out, ff_context, norm1_context */
        static const char *const mod[2] = {"norm1", "norm1_context"};
        static const char *const qkv[2][3] = {{"to_q", "to_k", "to_v"},
                                              {"add_q_proj", "add_k_proj", "add_v_proj"}};
        static const char *const qn[2][2] = {{"norm_q", "norm_k"}, {"norm_added_q", "norm_added_k"}};
        static const char *const proj[2] = {"to_out.0", "to_add_out"};
        static const char *const ff[2] = {"ff", "ff_context"};
        for (int s = 0; s < 2; s++) {
            fk_flux_stream *S = s ? &w->dbl[i].txt : &w->dbl[i].img;
            snprintf(n, sizeof(n), "transformer_blocks.%d.%s.linear", i, mod[s]);
            FK_TRY(fk_fl_linear(ld, &S->mod, 6 * C, C, true, n));
            fk_flux_linear *parts[3] = {&S->q, &S->k, &S->v};
            for (int j = 0; j < 3; j++) {
                snprintf(n, sizeof(n), "transformer_blocks.%d.attn.%s", i, qkv[s][j]);
                FK_TRY(fk_fl_linear(ld, parts[j], C, C, c->qkv_bias, n));
            }
            FK_TRY(fk_fl_get(ld, &S->q_scale, false, 1, D, 0, "transformer_blocks.%d.attn.%s.weight",
                             i, qn[s][0]));
            FK_TRY(fk_fl_get(ld, &S->k_scale, false, 1, D, 0, "transformer_blocks.%d.attn.%s.weight",
                             i, qn[s][1]));
            snprintf(n, sizeof(n), "transformer_blocks.%d.attn.%s", i, proj[s]);
            FK_TRY(fk_fl_linear(ld, &S->proj, C, C, true, n));
            snprintf(n, sizeof(n), "transformer_blocks.%d.%s.net.0.proj", i, ff[s]);
            FK_TRY(fk_fl_linear(ld, &S->mlp0, M, C, true, n));
            snprintf(n, sizeof(n), "transformer_blocks.%d.%s.net.2", i, ff[s]);
            FK_TRY(fk_fl_linear(ld, &S->mlp2, C, M, true, n));
        }
    }
    for (int i = 0; i < c->depth_single; i++) {
        fk_flux_single *S = &w->sgl[i];
        snprintf(n, sizeof(n), "single_transformer_blocks.%d.norm.linear", i);
        FK_TRY(fk_fl_linear(ld, &S->mod, 3 * C, C, true, n));
        static const char *const qkv[3] = {"to_q", "to_k", "to_v"};
        fk_flux_linear *parts[3] = {&S->q, &S->k, &S->v};
        for (int j = 0; j < 3; j++) {
            snprintf(n, sizeof(n), "single_transformer_blocks.%d.attn.%s", i, qkv[j]);
            FK_TRY(fk_fl_linear(ld, parts[j], C, C, true, n));
        }
        snprintf(n, sizeof(n), "single_transformer_blocks.%d.proj_mlp", i);
        FK_TRY(fk_fl_linear(ld, &S->mlp, M, C, true, n));
        FK_TRY(fk_fl_get(ld, &S->q_scale, false, 1, D, 0,
                         "single_transformer_blocks.%d.attn.norm_q.weight", i));
        FK_TRY(fk_fl_get(ld, &S->k_scale, false, 1, D, 0,
                         "single_transformer_blocks.%d.attn.norm_k.weight", i));
        snprintf(n, sizeof(n), "single_transformer_blocks.%d.proj_out", i);
        FK_TRY(fk_fl_linear(ld, &S->linear2, C, C + M, true, n));
    }
    FK_TRY(fk_fl_linear(ld, &w->final_linear, c->out_channels, C, true, "proj_out"));
    fk_flux_linear ada;
    FK_TRY(fk_fl_linear(ld, &ada, 2 * C, C, true, "norm_out.linear"));
    fk_flux_linear *parts[2] = {&w->final_scale, &w->final_shift}; /* diffusers: [scale | shift] */
    const int64_t sizes[2] = {C, C};
    fk_fl_split(&ada, parts, sizes, 2);
    return FK_OK;
}

/* ---- model objects ----------------------------------------------------------------- */

static fk_status fk_fl_alloc_model(fk_context *ctx, const fk_flux_config *cfg, fk_flux_model **out) {
    fk_flux_model *m = calloc(1, sizeof(*m));
    if (!m) return fk_error(ctx, FK_ERR_NOMEM, "out of memory allocating the FLUX model");
    m->cfg = *cfg;
    m->dtype = FK_DTYPE_COUNT;
    m->n_params = fk_flux_param_count(cfg);
    m->w.dbl = calloc((size_t)(cfg->depth_double ? cfg->depth_double : 1), sizeof(fk_flux_double));
    m->w.sgl = calloc((size_t)(cfg->depth_single ? cfg->depth_single : 1), sizeof(fk_flux_single));
    if (!m->w.dbl || !m->w.sgl) {
        fk_flux_free(m);
        return fk_error(ctx, FK_ERR_NOMEM, "out of memory allocating the FLUX model");
    }
    *out = m;
    return FK_OK;
}

void fk_flux_free(fk_flux_model *m) {
    if (!m) return;
    free(m->w.dbl);
    free(m->w.sgl);
    fk_free(m->owned);
    if (m->owns_st) fk_st_model_close(m->st);
    free(m);
}

/* Scaled fp8 checkpoints carry a per-tensor scale the plain dtype path would
 * ignore: refuse them rather than compute garbage. */
static fk_status fk_fl_reject_scaled(fk_context *ctx, const fk_st_model *st, const char *path) {
    int n = fk_st_model_count(st);
    for (int i = 0; i < n; i++) {
        const char *name = fk_st_model_get(st, i)->name;
        size_t ln = strlen(name);
        if ((ln >= 13 && !strcmp(name + ln - 13, ".scale_weight")) ||
            (ln >= 11 && !strcmp(name + ln - 11, "scaled_fp8")))
            return fk_error(ctx, FK_ERR_UNSUPPORTED,
                            "%s: tensor %s: scaled-fp8 checkpoints are not supported (use a plain "
                            "fp8/bf16 file)", path, name);
    }
    return FK_OK;
}

fk_status fk_flux_load_st(fk_context *ctx, const fk_st_model *st, fk_flux_model **out) {
    if (!st || !out) return fk_error(ctx, FK_ERR_ARG, "fk_flux_load_st: NULL argument");
    *out = NULL;
    const char *path = fk_st_model_path(st);
    if (!path) path = "checkpoint";
    fk_flux_config cfg;
    const char *format = NULL;
    FK_TRY(fk_flux_config_infer(ctx, st, &cfg, &format));
    FK_TRY(fk_fl_reject_scaled(ctx, st, path));
    fk_flux_model *m = NULL;
    FK_TRY(fk_fl_alloc_model(ctx, &cfg, &m));
    m->format = format;
    m->st = (fk_st_model *)st;
    fk_flux_loader ld = {.ctx = ctx, .st = st, .path = path, .model = m};
    /* the prefix: the part before img_in.weight / x_embedder.weight */
    const char *anchor = strcmp(format, "diffusers") ? "img_in.weight" : "x_embedder.weight";
    size_t la = strlen(anchor);
    int cnt = fk_st_model_count(st);
    bool found = false;
    size_t best = 0;
    for (int i = 0; i < cnt; i++) {
        const char *name = fk_st_model_get(st, i)->name;
        size_t ln = strlen(name);
        if (ln < la || strcmp(name + ln - la, anchor)) continue;
        size_t lp = ln - la;
        if ((lp > 0 && name[lp - 1] != '.') || lp >= sizeof(ld.prefix)) continue;
        if (!found || lp < best) {
            found = true;
            best = lp;
            memcpy(ld.prefix, name, lp);
            ld.prefix[lp] = '\0';
        }
    }
    fk_status s = !strcmp(format, "diffusers") ? fk_fl_diffusers(&ld) : fk_fl_bfl(&ld);
    if (s != FK_OK) {
        m->owns_st = false;
        fk_flux_free(m);
        return s;
    }
    *out = m;
    return FK_OK;
}

fk_status fk_flux_load(fk_context *ctx, const char *path, fk_flux_model **out) {
    if (!path || !out) return fk_error(ctx, FK_ERR_ARG, "fk_flux_load: NULL argument");
    *out = NULL;
    /* a diffusers pipeline root: use its transformer/ folder */
    char sub[4096];
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        int k = snprintf(sub, sizeof(sub), "%s/transformer", path);
        if (k > 0 && (size_t)k < sizeof(sub) && stat(sub, &sb) == 0 && S_ISDIR(sb.st_mode))
            path = sub;
    }
    fk_st_model *st = NULL;
    FK_TRY(fk_st_model_open(ctx, path, &st));
    fk_flux_model *m = NULL;
    fk_status s = fk_flux_load_st(ctx, st, &m);
    if (s != FK_OK) {
        fk_st_model_close(st);
        return s;
    }
    m->owns_st = true;
    *out = m;
    return FK_OK;
}

/* ---- random weights in memory ------------------------------------------------------ */

typedef struct fk_fl_layout {
    int n;                  /* tensors */
    uint64_t bytes;         /* total, each tensor 64-byte aligned */
    size_t elsize;
    struct fk_fl_item {
        char name[96];
        int ndim;
        int64_t shape[2];
        fk_param_kind kind;
        int64_t fan_in;
        uint64_t offset;
    } *items;               /* NULL on the counting pass */
} fk_fl_layout;

static void fk_fl_layout_cb(void *user, const char *name, int ndim, const int64_t *shape,
                            fk_param_kind kind, int64_t fan_in) {
    fk_fl_layout *L = user;
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= (uint64_t)shape[i];
    if (L->items) {
        struct fk_fl_item *it = &L->items[L->n];
        snprintf(it->name, sizeof(it->name), "%s", name);
        it->ndim = ndim;
        it->shape[0] = shape[0];
        it->shape[1] = ndim > 1 ? shape[1] : 0;
        it->kind = kind;
        it->fan_in = fan_in;
        it->offset = L->bytes;
    }
    L->n++;
    L->bytes += (numel * L->elsize + 63) & ~(uint64_t)63;
}

/* The random model's tensors, found by their BFL name. */
typedef struct fk_fl_mem {
    fk_fl_layout *L;
    char *base;
    fk_dtype dtype;
} fk_fl_mem;

static const struct fk_fl_item *fk_fl_mem_find(const fk_fl_mem *mem, const char *name) {
    for (int i = 0; i < mem->L->n; i++)
        if (!strcmp(mem->L->items[i].name, name)) return &mem->L->items[i];
    return NULL;
}

static fk_tensor fk_fl_mem_view(const fk_fl_mem *mem, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static fk_tensor fk_fl_mem_view(const fk_fl_mem *mem, const char *fmt, ...) {
    char name[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof(name), fmt, ap);
    va_end(ap);
    const struct fk_fl_item *it = fk_fl_mem_find(mem, name);
    FK_ASSERT(it != NULL);
    return fk_tensor_view(mem->dtype, mem->base + it->offset, it->ndim, it->shape);
}

static fk_flux_linear fk_fl_mem_linear(const fk_fl_mem *mem, const char *name, bool bias) {
    fk_flux_linear l;
    memset(&l, 0, sizeof(l));
    l.w = fk_fl_mem_view(mem, "%s.weight", name);
    if (bias) l.b = fk_fl_mem_view(mem, "%s.bias", name);
    return l;
}

static void fk_fl_mem_wire(fk_flux_model *m, const fk_fl_mem *mem) {
    const fk_flux_config *c = &m->cfg;
    const int64_t C = c->hidden, M = c->mlp_hidden;
    fk_flux_weights *w = &m->w;
    char n[160];
    w->img_in = fk_fl_mem_linear(mem, "img_in", true);
    w->txt_in = fk_fl_mem_linear(mem, "txt_in", true);
    w->time_in.in_layer = fk_fl_mem_linear(mem, "time_in.in_layer", true);
    w->time_in.out_layer = fk_fl_mem_linear(mem, "time_in.out_layer", true);
    w->vector_in.in_layer = fk_fl_mem_linear(mem, "vector_in.in_layer", true);
    w->vector_in.out_layer = fk_fl_mem_linear(mem, "vector_in.out_layer", true);
    if (c->guidance_embed) {
        w->guidance_in.in_layer = fk_fl_mem_linear(mem, "guidance_in.in_layer", true);
        w->guidance_in.out_layer = fk_fl_mem_linear(mem, "guidance_in.out_layer", true);
    }
    for (int i = 0; i < c->depth_double; i++) {
        static const char *const names[2] = {"img", "txt"};
        for (int s = 0; s < 2; s++) {
            fk_flux_stream *S = s ? &w->dbl[i].txt : &w->dbl[i].img;
            snprintf(n, sizeof(n), "double_blocks.%d.%s_mod.lin", i, names[s]);
            S->mod = fk_fl_mem_linear(mem, n, true);
            snprintf(n, sizeof(n), "double_blocks.%d.%s_attn.qkv", i, names[s]);
            fk_flux_linear qkv = fk_fl_mem_linear(mem, n, c->qkv_bias);
            fk_flux_linear *parts[3] = {&S->q, &S->k, &S->v};
            const int64_t sizes[3] = {C, C, C};
            fk_fl_split(&qkv, parts, sizes, 3);
            S->q_scale = fk_fl_mem_view(mem, "double_blocks.%d.%s_attn.norm.query_norm.scale", i,
                                        names[s]);
            S->k_scale = fk_fl_mem_view(mem, "double_blocks.%d.%s_attn.norm.key_norm.scale", i,
                                        names[s]);
            snprintf(n, sizeof(n), "double_blocks.%d.%s_attn.proj", i, names[s]);
            S->proj = fk_fl_mem_linear(mem, n, true);
            snprintf(n, sizeof(n), "double_blocks.%d.%s_mlp.0", i, names[s]);
            S->mlp0 = fk_fl_mem_linear(mem, n, true);
            snprintf(n, sizeof(n), "double_blocks.%d.%s_mlp.2", i, names[s]);
            S->mlp2 = fk_fl_mem_linear(mem, n, true);
        }
    }
    for (int i = 0; i < c->depth_single; i++) {
        fk_flux_single *S = &w->sgl[i];
        snprintf(n, sizeof(n), "single_blocks.%d.linear1", i);
        fk_flux_linear l1 = fk_fl_mem_linear(mem, n, true);
        fk_flux_linear *parts[4] = {&S->q, &S->k, &S->v, &S->mlp};
        const int64_t sizes[4] = {C, C, C, M};
        fk_fl_split(&l1, parts, sizes, 4);
        snprintf(n, sizeof(n), "single_blocks.%d.linear2", i);
        S->linear2 = fk_fl_mem_linear(mem, n, true);
        S->q_scale = fk_fl_mem_view(mem, "single_blocks.%d.norm.query_norm.scale", i);
        S->k_scale = fk_fl_mem_view(mem, "single_blocks.%d.norm.key_norm.scale", i);
        snprintf(n, sizeof(n), "single_blocks.%d.modulation.lin", i);
        S->mod = fk_fl_mem_linear(mem, n, true);
    }
    w->final_linear = fk_fl_mem_linear(mem, "final_layer.linear", true);
    fk_flux_linear ada = fk_fl_mem_linear(mem, "final_layer.adaLN_modulation.1", true);
    fk_flux_linear *parts[2] = {&w->final_shift, &w->final_scale};
    const int64_t sizes[2] = {C, C};
    fk_fl_split(&ada, parts, sizes, 2);
}

fk_status fk_flux_create_random(fk_context *ctx, const fk_flux_config *cfg, fk_dtype dtype,
                                uint64_t seed, fk_flux_model **out) {
    if (!cfg || !out) return fk_error(ctx, FK_ERR_ARG, "fk_flux_create_random: NULL argument");
    *out = NULL;
    FK_TRY(fk_flux_config_check(ctx, cfg));
    if (dtype != FK_F32 && dtype != FK_BF16 && dtype != FK_F16 && dtype != FK_F8_E4M3)
        return fk_error(ctx, FK_ERR_ARG, "random FLUX weights: dtype %s, expected F32, BF16, F16 "
                        "or F8_E4M3", fk_dtype_name(dtype));
    fk_fl_layout L = {.elsize = fk_dtype_size(dtype)};
    fk_flux_enum_params(cfg, fk_fl_layout_cb, &L);
    int n = L.n;
    L.items = calloc((size_t)n, sizeof(*L.items));
    if (!L.items) return fk_error(ctx, FK_ERR_NOMEM, "out of memory (random FLUX layout)");
    L.n = 0;
    L.bytes = 0;
    fk_flux_enum_params(cfg, fk_fl_layout_cb, &L);
    fk_flux_model *m = NULL;
    fk_status s = fk_fl_alloc_model(ctx, cfg, &m);
    if (s != FK_OK) {
        free(L.items);
        return s;
    }
    m->owned = fk_alloc((size_t)L.bytes);
    if (!m->owned || (uint64_t)(size_t)L.bytes != L.bytes) {
        free(L.items);
        fk_flux_free(m);
        return fk_error(ctx, FK_ERR_NOMEM, "out of memory: random FLUX weights need %llu bytes",
                        (unsigned long long)L.bytes);
    }
    m->format = "memory";
    m->copied_bytes = L.bytes;
    m->dtype = dtype;
    /* fill tensor by tensor, in parallel over chunks: a Philox stream per
     * tensor name, so values depend on neither the order nor the threads */
    for (int i = 0; i < n; i++) {
        const struct fk_fl_item *it = &L.items[i];
        int64_t numel = it->shape[0] * (it->ndim > 1 ? it->shape[1] : 1);
        float mean = 0.0f, std = 0.02f;
        if (it->kind == FK_PARAM_WEIGHT) std = (float)(1.0 / sqrt((double)it->fan_in));
        if (it->kind == FK_PARAM_NORM_SCALE) {
            mean = 1.0f;
            std = 0.1f;
        }
        uint64_t stream = fk_rng_stream_from_name(it->name);
        char *dst = (char *)m->owned + it->offset;
        enum { FK_FL_CHUNK = 4096 };
        int64_t nchunks = (numel + FK_FL_CHUNK - 1) / FK_FL_CHUNK;
        size_t elsize = L.elsize;
#ifdef FK_HAVE_OPENMP
#pragma omp parallel for num_threads(fk_context_threads(ctx)) schedule(static)
#endif
        for (int64_t ch = 0; ch < nchunks; ch++) {
            float buf[FK_FL_CHUNK];
            int64_t off = ch * FK_FL_CHUNK;
            size_t k = (size_t)(numel - off < FK_FL_CHUNK ? numel - off : FK_FL_CHUNK);
            fk_rng_fill_normal(seed, stream, (uint64_t)off, buf, k, mean, std);
            fk_convert_from_f32(dst + (size_t)off * elsize, dtype, buf, k);
        }
        /* zero the alignment padding so the buffer is fully defined */
        size_t used = (size_t)numel * elsize;
        memset(dst + used, 0, ((used + 63) & ~(size_t)63) - used);
    }
    fk_fl_mem mem = {.L = &L, .base = m->owned, .dtype = dtype};
    fk_fl_mem_wire(m, &mem);
    free(L.items);
    *out = m;
    return FK_OK;
}
