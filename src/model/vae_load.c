/* vae_load: autoencoder configuration (presets, inference from a checkpoint),
 * the BFL tensor layout, key mapping to diffusers AutoencoderKL names,
 * loading with shape checks, and random initialization. */
#include "model/vae_internal.h"

#include "core/rng.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* snprintf into a fixed buffer (names are short; a cut name only makes a
 * lookup fail). */
static void fk_vae_sfmt(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fk_vae_sfmt(char *out, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, n, fmt, ap);
    va_end(ap);
}

/* ---- presets ---------------------------------------------------------- */

static void fk_vae_config_base(fk_vae_config *c) {
    memset(c, 0, sizeof(*c));
    c->in_channels = 3;
    c->out_ch = 3;
    c->groups = 32;
    c->eps = 1e-6f;
    c->scale_factor = FK_VAE_FLUX_SCALE;
    c->shift_factor = FK_VAE_FLUX_SHIFT;
    c->has_encoder = true;
    c->has_decoder = true;
    c->z_channels = 16;
}

bool fk_vae_preset(const char *name, fk_vae_config *cfg) {
    if (!name || !cfg) return false;
    fk_vae_config c;
    fk_vae_config_base(&c);
    if (!strcmp(name, "ae")) {
        c.ch = 128;
        c.n_levels = 4;
        c.ch_mult[0] = 1;
        c.ch_mult[1] = 2;
        c.ch_mult[2] = 4;
        c.ch_mult[3] = 4;
        c.num_res_blocks = 2;
    } else if (!strcmp(name, "tiny-ae")) {
        c.ch = 32;
        c.n_levels = 2;
        c.ch_mult[0] = 1;
        c.ch_mult[1] = 2;
        c.num_res_blocks = 1;
    } else {
        return false;
    }
    *cfg = c;
    return true;
}

const char *fk_vae_preset_list(void) { return "ae, tiny-ae"; }

static bool fk_vae_same_arch(const fk_vae_config *a, const fk_vae_config *b) {
    if (a->ch != b->ch || a->n_levels != b->n_levels || a->num_res_blocks != b->num_res_blocks ||
        a->z_channels != b->z_channels || a->in_channels != b->in_channels || a->out_ch != b->out_ch)
        return false;
    for (int i = 0; i < a->n_levels; i++)
        if (a->ch_mult[i] != b->ch_mult[i]) return false;
    return true;
}

const char *fk_vae_config_name(const fk_vae_config *cfg) {
    static const char *names[] = {"ae", "tiny-ae"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        fk_vae_config p;
        fk_vae_preset(names[i], &p);
        /* a file with only one half has in_channels or out_ch 0 */
        fk_vae_config c = *cfg;
        if (!c.has_encoder) c.in_channels = p.in_channels;
        if (!c.has_decoder) c.out_ch = p.out_ch;
        if (fk_vae_same_arch(&c, &p)) return names[i];
    }
    return "custom";
}

int fk_vae_downscale(const fk_vae_config *cfg) {
    return cfg->n_levels >= 1 ? 1 << (cfg->n_levels - 1) : 1;
}

static void fk_vae_count_fn(void *user, const char *name, int ndim, const int64_t *shape,
                            fk_param_kind kind, int64_t fan_in, fk_tensor *slot) {
    (void)name, (void)kind, (void)fan_in, (void)slot;
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    *(int64_t *)user += n;
}

int64_t fk_vae_param_count(const fk_vae_config *cfg) {
    int64_t n = 0;
    fk_vae_walk(cfg, NULL, fk_vae_count_fn, &n);
    return n;
}

/* A float as the shortest decimal that reads back to it (0.3611, not
 * 0.36109998822212219), for JSON. */
static double fk_vae_json_float(float f) {
    char b[32];
    for (int p = 6; p <= 9; p++) {
        snprintf(b, sizeof(b), "%.*g", p, (double)f);
        if (strtof(b, NULL) == f) break;
    }
    return strtod(b, NULL);
}

char *fk_vae_config_json(const fk_vae_config *cfg) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    int mult[FK_VAE_MAX_LEVELS];
    for (int i = 0; i < cfg->n_levels; i++) mult[i] = cfg->ch_mult[i];
    bool ok = cJSON_AddNumberToObject(o, "ch", cfg->ch) &&
              cJSON_AddItemToObject(o, "ch_mult", cJSON_CreateIntArray(mult, cfg->n_levels)) &&
              cJSON_AddNumberToObject(o, "in_channels", cfg->in_channels) &&
              cJSON_AddNumberToObject(o, "num_res_blocks", cfg->num_res_blocks) &&
              cJSON_AddNumberToObject(o, "out_ch", cfg->out_ch) &&
              cJSON_AddNumberToObject(o, "resolution", 256) &&
              cJSON_AddNumberToObject(o, "scale_factor", fk_vae_json_float(cfg->scale_factor)) &&
              cJSON_AddNumberToObject(o, "shift_factor", fk_vae_json_float(cfg->shift_factor)) &&
              cJSON_AddNumberToObject(o, "z_channels", cfg->z_channels);
    char *s = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

/* ---- the BFL layout ---------------------------------------------------- */

typedef struct fk_vae_walker {
    fk_vae_visit_fn fn;
    void *user;
} fk_vae_walker;

#define FK_VAE_NAME 192

static void fk_vae_visit(const fk_vae_walker *w, const char *name, int ndim, const int64_t *shape,
                         fk_param_kind kind, int64_t fan_in, fk_tensor *slot) {
    w->fn(w->user, name, ndim, shape, kind, fan_in, slot);
}

static void fk_vae_walk_conv(const fk_vae_walker *w, const char *base, int co, int ci, int k,
                             fk_vae_conv *slot) {
    char name[FK_VAE_NAME];
    int64_t ws[4] = {co, ci, k, k}, bs[1] = {co};
    fk_vae_sfmt(name, sizeof(name), "%s.weight", base);
    fk_vae_visit(w, name, 4, ws, FK_PARAM_WEIGHT, (int64_t)ci * k * k, slot ? &slot->w : NULL);
    fk_vae_sfmt(name, sizeof(name), "%s.bias", base);
    fk_vae_visit(w, name, 1, bs, FK_PARAM_BIAS, (int64_t)ci * k * k, slot ? &slot->b : NULL);
}

static void fk_vae_walk_norm(const fk_vae_walker *w, const char *base, int c, fk_vae_norm *slot) {
    char name[FK_VAE_NAME];
    int64_t s[1] = {c};
    fk_vae_sfmt(name, sizeof(name), "%s.weight", base);
    fk_vae_visit(w, name, 1, s, FK_PARAM_NORM_SCALE, c, slot ? &slot->w : NULL);
    fk_vae_sfmt(name, sizeof(name), "%s.bias", base);
    fk_vae_visit(w, name, 1, s, FK_PARAM_NORM_BIAS, c, slot ? &slot->b : NULL);
}

static void fk_vae_walk_resblock(const fk_vae_walker *w, const char *base, int cin, int cout,
                                 fk_vae_resblock *rb) {
    char name[FK_VAE_NAME];
    if (rb) {
        rb->cin = cin;
        rb->cout = cout;
        rb->has_nin = cin != cout;
    }
    fk_vae_sfmt(name, sizeof(name), "%s.norm1", base);
    fk_vae_walk_norm(w, name, cin, rb ? &rb->norm1 : NULL);
    fk_vae_sfmt(name, sizeof(name), "%s.conv1", base);
    fk_vae_walk_conv(w, name, cout, cin, 3, rb ? &rb->conv1 : NULL);
    fk_vae_sfmt(name, sizeof(name), "%s.norm2", base);
    fk_vae_walk_norm(w, name, cout, rb ? &rb->norm2 : NULL);
    fk_vae_sfmt(name, sizeof(name), "%s.conv2", base);
    fk_vae_walk_conv(w, name, cout, cout, 3, rb ? &rb->conv2 : NULL);
    if (cin != cout) {
        fk_vae_sfmt(name, sizeof(name), "%s.nin_shortcut", base);
        fk_vae_walk_conv(w, name, cout, cin, 1, rb ? &rb->nin : NULL);
    }
}

static void fk_vae_walk_attn(const fk_vae_walker *w, const char *base, int c, fk_vae_attn *a) {
    char name[FK_VAE_NAME];
    if (a) a->c = c;
    fk_vae_sfmt(name, sizeof(name), "%s.norm", base);
    fk_vae_walk_norm(w, name, c, a ? &a->norm : NULL);
    fk_vae_sfmt(name, sizeof(name), "%s.q", base);
    fk_vae_walk_conv(w, name, c, c, 1, a ? &a->q : NULL);
    fk_vae_sfmt(name, sizeof(name), "%s.k", base);
    fk_vae_walk_conv(w, name, c, c, 1, a ? &a->k : NULL);
    fk_vae_sfmt(name, sizeof(name), "%s.v", base);
    fk_vae_walk_conv(w, name, c, c, 1, a ? &a->v : NULL);
    fk_vae_sfmt(name, sizeof(name), "%s.proj_out", base);
    fk_vae_walk_conv(w, name, c, c, 1, a ? &a->proj : NULL);
}

static void fk_vae_walk_mid(const fk_vae_walker *w, const char *half, int c, fk_vae_half *h) {
    char name[FK_VAE_NAME];
    fk_vae_sfmt(name, sizeof(name), "%s.mid.block_1", half);
    fk_vae_walk_resblock(w, name, c, c, h ? &h->mid1 : NULL);
    fk_vae_sfmt(name, sizeof(name), "%s.mid.attn_1", half);
    fk_vae_walk_attn(w, name, c, h ? &h->attn : NULL);
    fk_vae_sfmt(name, sizeof(name), "%s.mid.block_2", half);
    fk_vae_walk_resblock(w, name, c, c, h ? &h->mid2 : NULL);
}

void fk_vae_walk(const fk_vae_config *cfg, fk_vae *v, fk_vae_visit_fn fn, void *user) {
    const fk_vae_walker w = {fn, user};
    char name[FK_VAE_NAME];
    const int L = cfg->n_levels, ch = cfg->ch, nrb = cfg->num_res_blocks;
    if (cfg->has_encoder) {
        fk_vae_half *e = v ? &v->enc : NULL;
        fk_vae_walk_conv(&w, "encoder.conv_in", ch, cfg->in_channels, 3, e ? &e->conv_in : NULL);
        int block_in = ch;
        for (int i = 0; i < L; i++) {
            const int block_out = ch * cfg->ch_mult[i];
            fk_vae_level *lv = e ? &e->level[i] : NULL;
            if (lv) lv->n_blocks = nrb;
            for (int j = 0; j < nrb; j++) {
                fk_vae_sfmt(name, sizeof(name), "encoder.down.%d.block.%d", i, j);
                fk_vae_walk_resblock(&w, name, block_in, block_out, lv ? &lv->block[j] : NULL);
                block_in = block_out;
            }
            if (lv) lv->has_resample = i != L - 1;
            if (i != L - 1) {
                fk_vae_sfmt(name, sizeof(name), "encoder.down.%d.downsample.conv", i);
                fk_vae_walk_conv(&w, name, block_in, block_in, 3, lv ? &lv->resample : NULL);
            }
        }
        fk_vae_walk_mid(&w, "encoder", block_in, e);
        fk_vae_walk_norm(&w, "encoder.norm_out", block_in, e ? &e->norm_out : NULL);
        fk_vae_walk_conv(&w, "encoder.conv_out", 2 * cfg->z_channels, block_in, 3,
                         e ? &e->conv_out : NULL);
        if (cfg->quant_conv)
            fk_vae_walk_conv(&w, "quant_conv", 2 * cfg->z_channels, 2 * cfg->z_channels, 1,
                             v ? &v->quant : NULL);
    }
    if (cfg->has_decoder) {
        fk_vae_half *d = v ? &v->dec : NULL;
        if (cfg->post_quant_conv)
            fk_vae_walk_conv(&w, "post_quant_conv", cfg->z_channels, cfg->z_channels, 1,
                             v ? &v->post_quant : NULL);
        int block_in = ch * cfg->ch_mult[L - 1];
        fk_vae_walk_conv(&w, "decoder.conv_in", block_in, cfg->z_channels, 3,
                         d ? &d->conv_in : NULL);
        fk_vae_walk_mid(&w, "decoder", block_in, d);
        for (int i = L - 1; i >= 0; i--) {
            const int block_out = ch * cfg->ch_mult[i];
            fk_vae_level *lv = d ? &d->level[i] : NULL;
            if (lv) lv->n_blocks = nrb + 1;
            for (int j = 0; j < nrb + 1; j++) {
                fk_vae_sfmt(name, sizeof(name), "decoder.up.%d.block.%d", i, j);
                fk_vae_walk_resblock(&w, name, block_in, block_out, lv ? &lv->block[j] : NULL);
                block_in = block_out;
            }
            if (lv) lv->has_resample = i != 0;
            if (i != 0) {
                fk_vae_sfmt(name, sizeof(name), "decoder.up.%d.upsample.conv", i);
                fk_vae_walk_conv(&w, name, block_in, block_in, 3, lv ? &lv->resample : NULL);
            }
        }
        fk_vae_walk_norm(&w, "decoder.norm_out", block_in, d ? &d->norm_out : NULL);
        fk_vae_walk_conv(&w, "decoder.conv_out", cfg->out_ch, block_in, 3, d ? &d->conv_out : NULL);
    }
}

typedef struct fk_vae_enum_ctx {
    fk_param_fn fn;
    void *user;
} fk_vae_enum_ctx;

static void fk_vae_enum_fn(void *user, const char *name, int ndim, const int64_t *shape,
                           fk_param_kind kind, int64_t fan_in, fk_tensor *slot) {
    (void)slot;
    fk_vae_enum_ctx *e = user;
    e->fn(e->user, name, ndim, shape, kind, fan_in);
}

void fk_vae_enum_params(const fk_vae_config *cfg, fk_param_fn fn, void *user) {
    fk_vae_enum_ctx e = {fn, user};
    fk_vae_walk(cfg, NULL, fk_vae_enum_fn, &e);
}

void fk_vae_enum_preset(const char *preset, fk_param_fn fn, void *user) {
    fk_vae_config cfg;
    if (fk_vae_preset(preset, &cfg)) fk_vae_enum_params(&cfg, fn, user);
}

char *fk_vae_preset_config_json(const char *preset) {
    fk_vae_config cfg;
    return fk_vae_preset(preset, &cfg) ? fk_vae_config_json(&cfg) : NULL;
}

/* ---- key mapping --------------------------------------------------------- */

typedef enum fk_vae_fmt { FK_VAE_FMT_BFL = 0, FK_VAE_FMT_DIFFUSERS } fk_vae_fmt;

/* Prefixes tried for BFL-style keys in combined checkpoints. */
static const char *const fk_vae_prefixes[] = {"", "first_stage_model.", "vae.", "ae."};

/* diffusers names of the attention tensors: current (to_q, ...) and the
 * deprecated ones of older AutoencoderKL files (query, ...). */
static const char *fk_vae_attn_map[2][5][2] = {
    {{"norm.", "group_norm."},
     {"q.", "to_q."},
     {"k.", "to_k."},
     {"v.", "to_v."},
     {"proj_out.", "to_out.0."}},
    {{"norm.", "group_norm."},
     {"q.", "query."},
     {"k.", "key."},
     {"v.", "value."},
     {"proj_out.", "proj_attn."}},
};

/* "…block.J.X" tail of a ResNet block in diffusers form ("resnets.J.X",
 * nin_shortcut → conv_shortcut) into out. */
static bool fk_vae_map_block_tail(const char *tail, char *out, size_t n) {
    int j, used = 0;
    if (sscanf(tail, "block.%d.%n", &j, &used) != 1 || used == 0) return false;
    const char *x = tail + used;
    if (!strncmp(x, "nin_shortcut.", 13))
        fk_vae_sfmt(out, n, "resnets.%d.conv_shortcut.%s", j, x + 13);
    else
        fk_vae_sfmt(out, n, "resnets.%d.%s", j, x);
    return true;
}

/* BFL name → diffusers AutoencoderKL name (alt: deprecated attention names).
 * Same mapping as diffusers' convert_ldm_vae_checkpoint: down.{i} →
 * down_blocks.{i}, up.{i} → up_blocks.{L−1−i}, block → resnets,
 * downsample.conv → downsamplers.0.conv, upsample.conv → upsamplers.0.conv,
 * mid.block_{1,2} → mid_block.resnets.{0,1}, mid.attn_1 → mid_block.attentions.0,
 * norm_out → conv_norm_out. */
static bool fk_vae_map_diffusers(const char *bfl, int n_levels, int alt, char *out, size_t n) {
    char tail[FK_VAE_NAME];
    if (strncmp(bfl, "encoder.", 8) && strncmp(bfl, "decoder.", 8)) {
        fk_vae_sfmt(out, n, "%s", bfl); /* quant_conv, post_quant_conv */
        return true;
    }
    const char *half = bfl[0] == 'e' ? "encoder" : "decoder";
    const char *r = bfl + 8;
    int i, used = 0;
    if (sscanf(r, "down.%d.%n", &i, &used) == 1 && used > 0) {
        const char *t = r + used;
        if (!strncmp(t, "downsample.conv.", 16))
            fk_vae_sfmt(out, n, "%s.down_blocks.%d.downsamplers.0.conv.%s", half, i, t + 16);
        else if (fk_vae_map_block_tail(t, tail, sizeof(tail)))
            fk_vae_sfmt(out, n, "%s.down_blocks.%d.%s", half, i, tail);
        else
            return false;
        return true;
    }
    used = 0;
    if (sscanf(r, "up.%d.%n", &i, &used) == 1 && used > 0) {
        const char *t = r + used;
        int d = n_levels - 1 - i;
        if (!strncmp(t, "upsample.conv.", 14))
            fk_vae_sfmt(out, n, "%s.up_blocks.%d.upsamplers.0.conv.%s", half, d, t + 14);
        else if (fk_vae_map_block_tail(t, tail, sizeof(tail)))
            fk_vae_sfmt(out, n, "%s.up_blocks.%d.%s", half, d, tail);
        else
            return false;
        return true;
    }
    used = 0;
    if (sscanf(r, "mid.block_%d.%n", &i, &used) == 1 && used > 0) {
        fk_vae_sfmt(out, n, "%s.mid_block.resnets.%d.%s", half, i - 1, r + used);
        return true;
    }
    if (!strncmp(r, "mid.attn_1.", 11)) {
        const char *t = r + 11;
        for (int k = 0; k < 5; k++) {
            const char *from = fk_vae_attn_map[alt][k][0], *to = fk_vae_attn_map[alt][k][1];
            size_t fl = strlen(from);
            if (!strncmp(t, from, fl)) {
                fk_vae_sfmt(out, n, "%s.mid_block.attentions.0.%s%s", half, to, t + fl);
                return true;
            }
        }
        return false;
    }
    if (!strncmp(r, "norm_out.", 9)) {
        fk_vae_sfmt(out, n, "%s.conv_norm_out.%s", half, r + 9);
        return true;
    }
    fk_vae_sfmt(out, n, "%s", bfl);
    return true;
}

typedef struct fk_vae_keys {
    const fk_st_model *m;
    fk_vae_fmt fmt;
    char prefix[32];
    int n_levels; /* for diffusers up_blocks numbering */
} fk_vae_keys;

/* The checkpoint's tensor for a BFL name, or NULL. key_out (may be NULL)
 * gets the key looked up (the current diffusers name when absent). */
static const fk_st_tensor *fk_vae_find(const fk_vae_keys *k, const char *bfl, char *key_out,
                                       size_t n) {
    char mapped[FK_VAE_NAME], key[FK_VAE_NAME + 32];
    for (int alt = 0; alt < (k->fmt == FK_VAE_FMT_DIFFUSERS ? 2 : 1); alt++) {
        if (k->fmt == FK_VAE_FMT_DIFFUSERS) {
            if (!fk_vae_map_diffusers(bfl, k->n_levels, alt, mapped, sizeof(mapped))) return NULL;
        } else {
            fk_vae_sfmt(mapped, sizeof(mapped), "%s", bfl);
        }
        fk_vae_sfmt(key, sizeof(key), "%s%s", k->prefix, mapped);
        if (alt == 0 && key_out) fk_vae_sfmt(key_out, n, "%s", key);
        const fk_st_tensor *t = fk_st_model_find(k->m, key);
        if (t) {
            if (key_out) fk_vae_sfmt(key_out, n, "%s", key);
            return t;
        }
    }
    return NULL;
}

/* ---- configuration inference ---------------------------------------------- */

static const char *fk_vae_shape_s(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, n - o, "[");
    for (int d = 0; d < ndim && o < n; d++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (o < n) snprintf(buf + o, n - o, "]");
    return buf;
}

static fk_status fk_vae_need(fk_context *ctx, const fk_vae_keys *k, const char *bfl, int ndim,
                             const fk_st_tensor **out) {
    char key[FK_VAE_NAME + 32], sb[96];
    const fk_st_tensor *t = fk_vae_find(k, bfl, key, sizeof(key));
    if (!t)
        return fk_error(ctx, FK_ERR_FORMAT, "%s: autoencoder tensor %s is missing",
                        fk_st_model_path(k->m), key);
    if (t->ndim != ndim && !(ndim == 4 && t->ndim == 2 && k->fmt == FK_VAE_FMT_DIFFUSERS))
        return fk_error(ctx, FK_ERR_SHAPE, "%s: tensor %s has shape %s, expected %d dimensions",
                        fk_st_model_path(k->m), key, fk_vae_shape_s(t->ndim, t->shape, sb, sizeof(sb)),
                        ndim);
    *out = t;
    return FK_OK;
}

/* Count indices i = 0, 1, ... for which fmt(i) names a tensor. */
static int fk_vae_count(const fk_vae_keys *k, const char *fmt, int fixed, bool fixed_first) {
    char name[FK_VAE_NAME];
    int n = 0;
    for (; n < 64; n++) {
        if (fixed_first)
            fk_vae_sfmt(name, sizeof(name), fmt, fixed, n);
        else
            fk_vae_sfmt(name, sizeof(name), fmt, n);
        if (!fk_vae_find(k, name, NULL, 0)) break;
    }
    return n;
}

static fk_status fk_vae_detect_keys(fk_context *ctx, const fk_st_model *m, fk_vae_keys *k) {
    memset(k, 0, sizeof(*k));
    k->m = m;
    char key[FK_VAE_NAME];
    for (size_t p = 0; p < sizeof(fk_vae_prefixes) / sizeof(fk_vae_prefixes[0]); p++) {
        const char *pre = fk_vae_prefixes[p];
        fk_vae_sfmt(key, sizeof(key), "%sencoder.conv_in.weight", pre);
        bool enc = fk_st_model_find(m, key) != NULL;
        fk_vae_sfmt(key, sizeof(key), "%sdecoder.conv_in.weight", pre);
        bool dec = fk_st_model_find(m, key) != NULL;
        if (!enc && !dec) continue;
        fk_vae_sfmt(k->prefix, sizeof(k->prefix), "%s", pre);
        fk_vae_sfmt(key, sizeof(key), "%sencoder.down_blocks.0.resnets.0.conv1.weight", pre);
        bool dif = fk_st_model_find(m, key) != NULL;
        fk_vae_sfmt(key, sizeof(key), "%sdecoder.up_blocks.0.resnets.0.conv1.weight", pre);
        dif = dif || fk_st_model_find(m, key) != NULL;
        k->fmt = dif ? FK_VAE_FMT_DIFFUSERS : FK_VAE_FMT_BFL;
        return FK_OK;
    }
    return fk_error(ctx, FK_ERR_FORMAT,
                    "%s: not an autoencoder: no tensor encoder.conv_in.weight or decoder.conv_in.weight "
                    "(also tried the prefixes first_stage_model., vae., ae.)",
                    fk_st_model_path(m));
}

/* scale_factor / shift_factor from a JSON object text (BFL names in the
 * fixtures' "config" metadata, diffusers names in config.json). */
static void fk_vae_scale_from_json(const char *json, fk_vae_config *cfg) {
    if (!json) return;
    cJSON *o = cJSON_Parse(json);
    if (!o) return;
    const char *sk[] = {"scale_factor", "scaling_factor"}, *hk[] = {"shift_factor"};
    for (int i = 0; i < 2; i++) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, sk[i]);
        if (cJSON_IsNumber(s) && s->valuedouble > 0) cfg->scale_factor = (float)s->valuedouble;
    }
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(o, hk[0]);
    if (cJSON_IsNumber(h)) cfg->shift_factor = (float)h->valuedouble;
    else if (cJSON_IsNull(h)) cfg->shift_factor = 0.0f;
    cJSON_Delete(o);
}

static fk_status fk_vae_infer_keys(fk_context *ctx, const fk_vae_keys *k0, fk_vae_config *out) {
    fk_vae_keys k = *k0;
    const char *path = fk_st_model_path(k.m);
    fk_vae_config c;
    fk_vae_config_base(&c);
    const fk_st_tensor *t;
    fk_status st;
    char name[FK_VAE_NAME];
    c.has_encoder = fk_vae_find(&k, "encoder.conv_in.weight", NULL, 0) != NULL;
    c.has_decoder = fk_vae_find(&k, "decoder.conv_in.weight", NULL, 0) != NULL;
    fk_vae_config e = c, d = c;
    if (c.has_encoder) {
        if ((st = fk_vae_need(ctx, &k, "encoder.conv_in.weight", 4, &t))) return st;
        e.ch = (int)t->shape[0];
        e.in_channels = (int)t->shape[1];
        e.n_levels = fk_vae_count(&k, "encoder.down.%d.block.0.conv1.weight", 0, false);
        e.num_res_blocks = fk_vae_count(&k, "encoder.down.%d.block.%d.conv1.weight", 0, true);
        if (e.n_levels < 1 || e.n_levels > FK_VAE_MAX_LEVELS)
            return fk_error(ctx, FK_ERR_FORMAT,
                            "%s: autoencoder encoder has %d levels (encoder.down.N), expected 1 to %d",
                            path, e.n_levels, FK_VAE_MAX_LEVELS);
        if (e.num_res_blocks < 1 || e.num_res_blocks > FK_VAE_MAX_RES_BLOCKS)
            return fk_error(ctx, FK_ERR_FORMAT,
                            "%s: autoencoder encoder level 0 has %d ResNet blocks, expected 1 to %d",
                            path, e.num_res_blocks, FK_VAE_MAX_RES_BLOCKS);
        for (int i = 0; i < e.n_levels; i++) {
            fk_vae_sfmt(name, sizeof(name), "encoder.down.%d.block.0.conv1.weight", i);
            if ((st = fk_vae_need(ctx, &k, name, 4, &t))) return st;
            if (e.ch <= 0 || t->shape[0] % e.ch)
                return fk_error(ctx, FK_ERR_SHAPE,
                                "%s: %s has %lld output channels, not a multiple of ch = %d "
                                "(encoder.conv_in)",
                                path, name, (long long)t->shape[0], e.ch);
            e.ch_mult[i] = (int)(t->shape[0] / e.ch);
        }
        if ((st = fk_vae_need(ctx, &k, "encoder.conv_out.weight", 4, &t))) return st;
        if (t->shape[0] % 2)
            return fk_error(ctx, FK_ERR_SHAPE,
                            "%s: encoder.conv_out.weight has %lld output channels, expected 2·z_channels "
                            "(an even number)",
                            path, (long long)t->shape[0]);
        e.z_channels = (int)(t->shape[0] / 2);
    }
    if (c.has_decoder) {
        if ((st = fk_vae_need(ctx, &k, "decoder.conv_out.weight", 4, &t))) return st;
        d.out_ch = (int)t->shape[0];
        d.ch = (int)t->shape[1];
        if (k.fmt == FK_VAE_FMT_DIFFUSERS) {
            /* diffusers numbers up_blocks from the lowest resolution: the
             * mapping of up.{i} needs the level count, so count them first */
            int n = 0;
            char key[FK_VAE_NAME + 32];
            for (; n < 64; n++) {
                fk_vae_sfmt(key, sizeof(key), "%sdecoder.up_blocks.%d.resnets.0.conv2.weight", k.prefix, n);
                if (!fk_st_model_find(k.m, key)) break;
            }
            d.n_levels = n;
        } else {
            d.n_levels = fk_vae_count(&k, "decoder.up.%d.block.0.conv2.weight", 0, false);
        }
        k.n_levels = d.n_levels;
        if (d.n_levels < 1 || d.n_levels > FK_VAE_MAX_LEVELS)
            return fk_error(ctx, FK_ERR_FORMAT,
                            "%s: autoencoder decoder has %d levels (decoder.up.N), expected 1 to %d",
                            path, d.n_levels, FK_VAE_MAX_LEVELS);
        d.num_res_blocks = fk_vae_count(&k, "decoder.up.%d.block.%d.conv2.weight", 0, true) - 1;
        if (d.num_res_blocks < 1 || d.num_res_blocks > FK_VAE_MAX_RES_BLOCKS)
            return fk_error(ctx, FK_ERR_FORMAT,
                            "%s: autoencoder decoder level 0 has %d ResNet blocks, expected 2 to %d "
                            "(num_res_blocks + 1)",
                            path, d.num_res_blocks + 1, FK_VAE_MAX_RES_BLOCKS + 1);
        for (int i = 0; i < d.n_levels; i++) {
            fk_vae_sfmt(name, sizeof(name), "decoder.up.%d.block.0.conv2.weight", i);
            if ((st = fk_vae_need(ctx, &k, name, 4, &t))) return st;
            if (d.ch <= 0 || t->shape[0] % d.ch)
                return fk_error(ctx, FK_ERR_SHAPE,
                                "%s: %s has %lld output channels, not a multiple of ch = %d "
                                "(decoder.conv_out)",
                                path, name, (long long)t->shape[0], d.ch);
            d.ch_mult[i] = (int)(t->shape[0] / d.ch);
        }
        if ((st = fk_vae_need(ctx, &k, "decoder.conv_in.weight", 4, &t))) return st;
        d.z_channels = (int)t->shape[1];
    }
    if (c.has_encoder && c.has_decoder) {
        fk_vae_config a = e, b = d;
        a.out_ch = b.out_ch;
        b.in_channels = a.in_channels;
        if (!fk_vae_same_arch(&a, &b))
            return fk_error(ctx, FK_ERR_FORMAT,
                            "%s: the encoder (ch %d, %d levels, %d blocks, z %d) and the decoder (ch %d, "
                            "%d levels, %d blocks, z %d) of this autoencoder do not match",
                            path, e.ch, e.n_levels, e.num_res_blocks, e.z_channels, d.ch, d.n_levels,
                            d.num_res_blocks, d.z_channels);
    }
    c = c.has_encoder ? e : d;
    if (c.has_encoder && c.has_decoder) c.out_ch = d.out_ch;
    if (!c.has_encoder) c.in_channels = 0;
    if (!c.has_decoder) c.out_ch = 0;
    for (int i = 0; i < c.n_levels; i++)
        if (c.ch_mult[i] < 1 || (c.ch * c.ch_mult[i]) % c.groups)
            return fk_error(ctx, FK_ERR_FORMAT,
                            "%s: autoencoder level %d has %d channels, not a multiple of the %d GroupNorm "
                            "groups",
                            path, i, c.ch * c.ch_mult[i], c.groups);
    if (c.ch % c.groups)
        return fk_error(ctx, FK_ERR_FORMAT,
                        "%s: autoencoder ch %d is not a multiple of the %d GroupNorm groups", path, c.ch,
                        c.groups);
    c.quant_conv = c.has_encoder && fk_vae_find(&k, "quant_conv.weight", NULL, 0) != NULL;
    c.post_quant_conv = c.has_decoder && fk_vae_find(&k, "post_quant_conv.weight", NULL, 0) != NULL;
    fk_vae_scale_from_json(fk_st_model_meta(k.m, "config"), &c);
    *out = c;
    return FK_OK;
}

static const char *fk_vae_fmt_name(const fk_vae_keys *k) {
    if (k->fmt == FK_VAE_FMT_DIFFUSERS) return "diffusers";
    return k->prefix[0] ? "bfl-prefixed" : "bfl";
}

fk_status fk_vae_config_infer(fk_context *ctx, const fk_st_model *m, fk_vae_config *cfg,
                              const char **format_out, char *prefix_out, size_t prefix_n) {
    if (!m || !cfg) return fk_error(ctx, FK_ERR_ARG, "fk_vae_config_infer: NULL argument");
    fk_vae_keys k;
    fk_status st = fk_vae_detect_keys(ctx, m, &k);
    if (st) return st;
    if ((st = fk_vae_infer_keys(ctx, &k, cfg))) return st;
    if (format_out) *format_out = fk_vae_fmt_name(&k);
    if (prefix_out && prefix_n) fk_vae_sfmt(prefix_out, prefix_n, "%s", k.prefix);
    return FK_OK;
}

/* ---- loading ----------------------------------------------------------------- */

typedef struct fk_vae_loader {
    fk_context *ctx;
    const fk_vae_keys *keys;
    fk_status st;
} fk_vae_loader;

static void fk_vae_load_fn(void *user, const char *name, int ndim, const int64_t *shape,
                           fk_param_kind kind, int64_t fan_in, fk_tensor *slot) {
    (void)kind, (void)fan_in;
    fk_vae_loader *l = user;
    if (l->st != FK_OK) return;
    char key[FK_VAE_NAME + 32], sb[96], eb[96];
    const char *path = fk_st_model_path(l->keys->m);
    const fk_st_tensor *t = fk_vae_find(l->keys, name, key, sizeof(key));
    if (!t) {
        l->st = fk_error(l->ctx, FK_ERR_SHAPE, "%s: autoencoder tensor %s is missing (expected shape %s)",
                                               path,
                         key, fk_vae_shape_s(ndim, shape, eb, sizeof(eb)));
        return;
    }
    bool ok = t->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++) ok = t->shape[d] == shape[d];
    /* diffusers stores the attention 1×1 convs as linear weights (C, C) */
    bool as_linear = !ok && l->keys->fmt == FK_VAE_FMT_DIFFUSERS && ndim == 4 && t->ndim == 2 &&
                     shape[2] == 1 && shape[3] == 1 && t->shape[0] == shape[0] &&
                     t->shape[1] == shape[1];
    if (!ok && !as_linear) {
        l->st = fk_error(l->ctx, FK_ERR_SHAPE, "%s: tensor %s has shape %s, expected %s", path, key,
                         fk_vae_shape_s(t->ndim, t->shape, sb, sizeof(sb)),
                         fk_vae_shape_s(ndim, shape, eb, sizeof(eb)));
        return;
    }
    if (!fk_dtype_is_float(t->dtype)) {
        l->st = fk_error(l->ctx, FK_ERR_SHAPE,
                         "%s: tensor %s has dtype %s, expected a float type (F32, BF16, F16, F8_*)",
                         path, key, fk_dtype_name(t->dtype));
        return;
    }
    fk_tensor v = fk_st_view(t);
    v.ndim = ndim;
    for (int d = 0; d < ndim; d++) v.shape[d] = shape[d];
    *slot = v;
}

static fk_status fk_vae_load_keys(fk_context *ctx, const fk_vae_keys *k, const fk_vae_config *cfg,
                                  fk_vae **out) {
    fk_vae *v = calloc(1, sizeof(*v));
    if (!v) return fk_error(ctx, FK_ERR_NOMEM, "autoencoder: out of memory");
    v->cfg = *cfg;
    v->format = fk_vae_fmt_name(k);
    fk_vae_loader l = {ctx, k, FK_OK};
    fk_vae_walk(cfg, v, fk_vae_load_fn, &l);
    if (l.st != FK_OK) {
        free(v);
        return l.st;
    }
    *out = v;
    return FK_OK;
}

fk_status fk_vae_load(fk_context *ctx, const fk_st_model *m, fk_vae **out) {
    if (!m || !out) return fk_error(ctx, FK_ERR_ARG, "fk_vae_load: NULL argument");
    *out = NULL;
    fk_vae_keys k;
    fk_status st = fk_vae_detect_keys(ctx, m, &k);
    if (st) return st;
    fk_vae_config cfg;
    if ((st = fk_vae_infer_keys(ctx, &k, &cfg))) return st;
    k.n_levels = cfg.n_levels;
    return fk_vae_load_keys(ctx, &k, &cfg, out);
}

static bool fk_vae_is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Read a whole small text file (config.json); NULL when absent or too big. */
static char *fk_vae_read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n >= 0 && n < (1 << 20) && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1))) {
            if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
                free(buf);
                buf = NULL;
            } else {
                buf[n] = '\0';
            }
        }
    }
    fclose(f);
    return buf;
}

fk_status fk_vae_open(fk_context *ctx, const char *path, fk_vae **out) {
    if (!path || !out) return fk_error(ctx, FK_ERR_ARG, "fk_vae_open: NULL argument");
    *out = NULL;
    /* a pipeline folder → its vae/; a vae/ folder → its weights file (the
     * full-precision one when several precisions sit side by side) */
    char dir[4096], file[4200];
    const char *use = path, *open_path = path;
    if (fk_vae_is_dir(path)) {
        fk_vae_sfmt(dir, sizeof(dir), "%s/vae", path);
        if (fk_vae_is_dir(dir)) use = dir;
        open_path = use;
        static const char *const names[] = {"diffusion_pytorch_model.safetensors",
                                            "diffusion_pytorch_model.fp16.safetensors"};
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            fk_vae_sfmt(file, sizeof(file), "%s/%s", use, names[i]);
            struct stat sb;
            if (stat(file, &sb) == 0 && S_ISREG(sb.st_mode)) {
                open_path = file;
                break;
            }
        }
    }
    fk_st_model *m = NULL;
    fk_status st = fk_st_model_open(ctx, open_path, &m);
    if (st) return st;
    fk_vae *v = NULL;
    if ((st = fk_vae_load(ctx, m, &v))) {
        fk_st_model_close(m);
        return st;
    }
    v->owned_model = m;
    if (fk_vae_is_dir(use)) {
        char cj[4200];
        fk_vae_sfmt(cj, sizeof(cj), "%s/config.json", use);
        char *text = fk_vae_read_text(cj);
        fk_vae_scale_from_json(text, &v->cfg);
        free(text);
    }
    *out = v;
    return FK_OK;
}

/* ---- random initialization ------------------------------------------------ */

/* The distributions of `fluxkit init-random` (cmd_init_random.c). */
#define FK_VAE_INIT_BIAS_STD 0.02f
#define FK_VAE_INIT_NORM_STD 0.1f

typedef struct fk_vae_rand {
    uint64_t seed;
    float *data;
    int64_t used, total;
} fk_vae_rand;

static void fk_vae_rand_fn(void *user, const char *name, int ndim, const int64_t *shape,
                           fk_param_kind kind, int64_t fan_in, fk_tensor *slot) {
    fk_vae_rand *r = user;
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    float *dst = r->data + r->used;
    r->used += n;
    FK_ASSERT(r->used <= r->total);
    float mean = 0.0f, std = FK_VAE_INIT_BIAS_STD;
    if (kind == FK_PARAM_WEIGHT) std = fan_in > 0 ? (float)(1.0 / sqrt((double)fan_in)) : 1.0f;
    if (kind == FK_PARAM_NORM_SCALE) {
        mean = 1.0f;
        std = FK_VAE_INIT_NORM_STD;
    }
    fk_rng_fill_normal(r->seed, fk_rng_stream_from_name(name), 0, dst, (size_t)n, mean, std);
    *slot = fk_tensor_view(FK_F32, dst, ndim, shape);
}

fk_status fk_vae_create_random(fk_context *ctx, const fk_vae_config *cfg, uint64_t seed,
                               fk_vae **out) {
    if (!cfg || !out) return fk_error(ctx, FK_ERR_ARG, "fk_vae_create_random: NULL argument");
    *out = NULL;
    if (cfg->n_levels < 1 || cfg->n_levels > FK_VAE_MAX_LEVELS || cfg->num_res_blocks < 1 ||
        cfg->num_res_blocks > FK_VAE_MAX_RES_BLOCKS || cfg->ch < 1 || cfg->z_channels < 1)
        return fk_error(ctx, FK_ERR_ARG, "fk_vae_create_random: invalid config");
    int64_t total = fk_vae_param_count(cfg);
    fk_vae *v = calloc(1, sizeof(*v));
    float *data = fk_alloc((size_t)total * sizeof(float));
    if (!v || !data) {
        free(v);
        fk_free(data);
        return fk_error(ctx, FK_ERR_NOMEM, "autoencoder: out of memory for %lld random parameters",
                        (long long)total);
    }
    v->cfg = *cfg;
    v->format = "random";
    v->owned_data = data;
    fk_vae_rand r = {seed, data, 0, total};
    fk_vae_walk(cfg, v, fk_vae_rand_fn, &r);
    *out = v;
    return FK_OK;
}

void fk_vae_free(fk_vae *v) {
    if (!v) return;
    if (v->owned_model) fk_st_model_close(v->owned_model);
    fk_free(v->owned_data);
    free(v);
}

const fk_vae_config *fk_vae_get_config(const fk_vae *v) { return &v->cfg; }
const char *fk_vae_format(const fk_vae *v) { return v->format; }
