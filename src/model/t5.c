/* t5: T5 v1.1 encoder (HF T5EncoderModel) — config, weight binding, forward.
 * See t5.h for the architecture and the bucket rule. */
#include "model/t5.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- configuration ------------------------------------------------------ */

bool fk_t5_preset(const char *name, fk_t5_config *cfg) {
    if (!name || !cfg) return false;
    fk_t5_config c = {
        .vocab_size = 32128,
        .d_model = 4096,
        .layers = 24,
        .heads = 64,
        .d_kv = 64,
        .d_ff = 10240,
        .num_buckets = 32,
        .max_distance = 128,
        .eps = 1e-6f,
    };
    if (!strcmp(name, "t5-xxl")) {
        *cfg = c;
        return true;
    }
    if (!strcmp(name, "tiny-t5")) {
        c.vocab_size = 320;
        c.d_model = 64;
        c.layers = 3;
        c.heads = 4;
        c.d_kv = 16;
        c.d_ff = 160;
        *cfg = c;
        return true;
    }
    return false;
}

const char *fk_t5_preset_list(void) { return "t5-xxl, tiny-t5"; }

const char *fk_t5_config_name(const fk_t5_config *cfg) {
    static const char *names[] = {"t5-xxl", "tiny-t5"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        fk_t5_config p;
        fk_t5_preset(names[i], &p);
        if (p.vocab_size == cfg->vocab_size && p.d_model == cfg->d_model && p.layers == cfg->layers &&
            p.heads == cfg->heads && p.d_kv == cfg->d_kv && p.d_ff == cfg->d_ff &&
            p.num_buckets == cfg->num_buckets)
            return names[i];
    }
    return "custom";
}

int64_t fk_t5_param_count(const fk_t5_config *cfg) {
    int64_t d = cfg->d_model, inner = (int64_t)cfg->heads * cfg->d_kv, ff = cfg->d_ff;
    int64_t per_layer = 4 * d * inner + 3 * d * ff + 2 * d;
    return (int64_t)cfg->vocab_size * d + cfg->layers * per_layer + (int64_t)cfg->num_buckets * cfg->heads + d;
}

void fk_t5_enum_params(const fk_t5_config *cfg, fk_param_fn fn, void *user) {
    char name[160];
    int64_t d = cfg->d_model, inner = (int64_t)cfg->heads * cfg->d_kv, ff = cfg->d_ff;
    int64_t s[2];
    s[0] = cfg->vocab_size;
    s[1] = d;
    fn(user, "shared.weight", 2, s, FK_PARAM_EMBEDDING, d);
    static const char *qkvo[] = {"q", "k", "v", "o"};
    for (int l = 0; l < cfg->layers; l++) {
        for (int p = 0; p < 4; p++) {
            snprintf(name, sizeof(name), "encoder.block.%d.layer.0.SelfAttention.%s.weight", l, qkvo[p]);
            s[0] = p < 3 ? inner : d;
            s[1] = p < 3 ? d : inner;
            fn(user, name, 2, s, FK_PARAM_WEIGHT, s[1]);
        }
        if (l == 0) {
            s[0] = cfg->num_buckets;
            s[1] = cfg->heads;
            fn(user, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", 2, s,
               FK_PARAM_EMBEDDING, cfg->heads);
        }
        snprintf(name, sizeof(name), "encoder.block.%d.layer.0.layer_norm.weight", l);
        s[0] = d;
        fn(user, name, 1, s, FK_PARAM_NORM_SCALE, d);
        static const char *ffn[] = {"wi_0", "wi_1", "wo"};
        for (int p = 0; p < 3; p++) {
            snprintf(name, sizeof(name), "encoder.block.%d.layer.1.DenseReluDense.%s.weight", l, ffn[p]);
            s[0] = p < 2 ? ff : d;
            s[1] = p < 2 ? d : ff;
            fn(user, name, 2, s, FK_PARAM_WEIGHT, s[1]);
        }
        snprintf(name, sizeof(name), "encoder.block.%d.layer.1.layer_norm.weight", l);
        s[0] = d;
        fn(user, name, 1, s, FK_PARAM_NORM_SCALE, d);
    }
    s[0] = d;
    fn(user, "encoder.final_layer_norm.weight", 1, s, FK_PARAM_NORM_SCALE, d);
}

char *fk_t5_config_json(const fk_t5_config *cfg) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "model_type", "t5");
    cJSON_AddNumberToObject(o, "vocab_size", cfg->vocab_size);
    cJSON_AddNumberToObject(o, "d_model", cfg->d_model);
    cJSON_AddNumberToObject(o, "num_layers", cfg->layers);
    cJSON_AddNumberToObject(o, "num_heads", cfg->heads);
    cJSON_AddNumberToObject(o, "d_kv", cfg->d_kv);
    cJSON_AddNumberToObject(o, "d_ff", cfg->d_ff);
    cJSON_AddNumberToObject(o, "relative_attention_num_buckets", cfg->num_buckets);
    cJSON_AddNumberToObject(o, "relative_attention_max_distance", cfg->max_distance);
    char eps[32]; /* 6 significant digits: 1e-06, not 9.99999997475243e-07 */
    snprintf(eps, sizeof(eps), "%g", (double)cfg->eps);
    cJSON_AddNumberToObject(o, "layer_norm_epsilon", strtod(eps, NULL));
    cJSON_AddStringToObject(o, "feed_forward_proj", "gated-gelu");
    cJSON_AddStringToObject(o, "dense_act_fn", "gelu_new");
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

void fk_t5_enum_preset(const char *preset, fk_param_fn fn, void *user) {
    fk_t5_config c;
    if (fk_t5_preset(preset, &c)) fk_t5_enum_params(&c, fn, user);
}

char *fk_t5_preset_config_json(const char *preset) {
    fk_t5_config c;
    return fk_t5_preset(preset, &c) ? fk_t5_config_json(&c) : NULL;
}

int fk_t5_relative_bucket(int64_t rel, bool bidirectional, int num_buckets, int max_distance) {
    int bucket = 0;
    int64_t n;
    if (bidirectional) {
        num_buckets /= 2;
        if (rel > 0) bucket += num_buckets;
        n = rel < 0 ? -rel : rel;
    } else {
        n = rel < 0 ? -rel : 0;
    }
    int max_exact = num_buckets / 2;
    if (n < max_exact) return bucket + (int)n;
    /* float32 throughout, like the reference (positions .float(); the double
     * log(max_distance / max_exact) enters as a float32 scalar) */
    float ratio = (float)n / (float)max_exact;
    float v = logf(ratio) / (float)log((double)max_distance / (double)max_exact) * (float)(num_buckets - max_exact);
    int64_t large = max_exact + (int64_t)v;
    if (large > num_buckets - 1) large = num_buckets - 1;
    return bucket + (int)large;
}

/* ---- config JSON: __metadata__["config"] or config.json beside the weights ---- */

static char *fk_t5_read_small_file(const char *path) {
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

/* A config object with model_type "t5" (one without model_type is not taken:
 * a FLUX config in an all-in-one file's metadata also has num_heads). */
static cJSON *fk_t5_parse_config(const char *text) {
    cJSON *root = cJSON_Parse(text);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return NULL;
    }
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (cJSON_IsString(mt) && !strcmp(mt->valuestring, "t5")) return root;
    cJSON_Delete(root);
    return NULL;
}

static cJSON *fk_t5_find_config(const fk_st_model *m, char *src, size_t n) {
    const char *meta = fk_st_model_meta(m, "config");
    if (meta) {
        cJSON *r = fk_t5_parse_config(meta);
        if (r) {
            snprintf(src, n, "%s: __metadata__ config", fk_st_model_path(m));
            return r;
        }
    }
    const char *path = fk_st_model_path(m);
    if (!path) return NULL;
    char dir[4096];
    struct stat st;
    snprintf(dir, sizeof(dir), "%s", path);
    if (!(stat(path, &st) == 0 && S_ISDIR(st.st_mode))) {
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = 0;
        else
            snprintf(dir, sizeof(dir), ".");
    }
    char cfgpath[4200];
    snprintf(cfgpath, sizeof(cfgpath), "%s/config.json", dir);
    char *text = fk_t5_read_small_file(cfgpath);
    if (!text) return NULL;
    cJSON *r = fk_t5_parse_config(text);
    free(text);
    if (r) snprintf(src, n, "%s", cfgpath);
    return r;
}

static bool fk_t5_json_int(const cJSON *o, const char *key, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 1e9)
        return false;
    *out = (int)v->valuedouble;
    return true;
}

/* ---- inference from the tensors -------------------------------------------- */

static const char *const FK_T5_Q0_SUFFIX = "block.0.layer.0.SelfAttention.q.weight";

static const fk_st_tensor *fk_t5_find(const fk_st_model *m, const char *prefix, const char *fmt, int l) {
    char suffix[160], name[320];
    snprintf(suffix, sizeof(suffix), fmt, l);
    snprintf(name, sizeof(name), "%s%s", prefix, suffix);
    return fk_st_model_find(m, name);
}

/* The embedding: <prefix>embed_tokens.weight, else shared.weight beside the
 * encoder (prefix minus "encoder."), else a top-level shared.weight. */
static const fk_st_tensor *fk_t5_find_embedding(const fk_st_model *m, const char *prefix) {
    const fk_st_tensor *t = fk_t5_find(m, prefix, "embed_tokens.weight", 0);
    if (t) return t;
    char outer[160];
    snprintf(outer, sizeof(outer), "%s", prefix);
    size_t len = strlen(outer), el = strlen("encoder.");
    if (len >= el && !strcmp(outer + len - el, "encoder.")) outer[len - el] = 0;
    t = fk_t5_find(m, outer, "shared.weight", 0);
    if (t) return t;
    return fk_st_model_find(m, "shared.weight");
}

fk_status fk_t5_config_infer(fk_context *ctx, const fk_st_model *m, fk_t5_config *cfg, char *prefix,
                             size_t n) {
    if (!m || !cfg || !prefix || n == 0) return fk_error(ctx, FK_ERR_ARG, "fk_t5_config_infer: NULL argument");
    const char *path = fk_st_model_path(m);
    /* prefix of the encoder blocks; prefer "encoder." (HF / ComfyUI), skip decoders */
    const char *best = NULL;
    size_t best_len = 0;
    int best_rank = 3;
    size_t sl = strlen(FK_T5_Q0_SUFFIX);
    for (int i = 0; i < fk_st_model_count(m); i++) {
        const char *nm = fk_st_model_get(m, i)->name;
        size_t len = strlen(nm);
        if (len < sl || strcmp(nm + len - sl, FK_T5_Q0_SUFFIX)) continue;
        size_t pl = len - sl;
        if (pl >= strlen("decoder.") && !strncmp(nm + pl - strlen("decoder."), "decoder.", strlen("decoder.")))
            continue;
        int rank = (pl == strlen("encoder.") && !strncmp(nm, "encoder.", pl)) ? 0 : 1;
        if (rank < best_rank) {
            best = nm;
            best_len = pl;
            best_rank = rank;
        }
    }
    if (!best)
        return fk_error(ctx, FK_ERR_FORMAT,
                        "%s: not a T5 encoder (no tensor encoder.block.0.layer.0.SelfAttention.q.weight)", path);
    if (best_len + 1 > n || best_len >= 128)
        return fk_error(ctx, FK_ERR_FORMAT, "%s: T5 key prefix too long in %s", path, best);
    memcpy(prefix, best, best_len);
    prefix[best_len] = 0;

    fk_t5_config c;
    fk_t5_preset("t5-xxl", &c);
    const fk_st_tensor *emb = fk_t5_find_embedding(m, prefix);
    if (!emb)
        return fk_error(ctx, FK_ERR_FORMAT, "%s: T5 embedding missing (expected %sembed_tokens.weight or shared.weight)",
                        path, prefix);
    if (emb->ndim != 2 || emb->shape[0] < 1 || emb->shape[1] < 1 || emb->shape[0] > INT32_MAX ||
        emb->shape[1] > (1 << 20))
        return fk_error(ctx, FK_ERR_SHAPE, "%s: tensor %s has an invalid shape (expected [vocab, d_model])", path,
                        emb->name);
    c.vocab_size = (int)emb->shape[0];
    c.d_model = (int)emb->shape[1];
    const fk_st_tensor *rb = fk_t5_find(m, prefix, "block.0.layer.0.SelfAttention.relative_attention_bias.weight", 0);
    if (!rb)
        return fk_error(ctx, FK_ERR_FORMAT, "%s: tensor %sblock.0.layer.0.SelfAttention.relative_attention_bias.weight missing",
                        path, prefix);
    if (rb->ndim != 2 || rb->shape[0] < 2 || rb->shape[1] < 1 || rb->shape[0] > 4096 || rb->shape[1] > 4096)
        return fk_error(ctx, FK_ERR_SHAPE, "%s: tensor %s has an invalid shape (expected [num_buckets, heads])", path,
                        rb->name);
    c.num_buckets = (int)rb->shape[0];
    c.heads = (int)rb->shape[1];
    const fk_st_tensor *q = fk_t5_find(m, prefix, "block.0.layer.0.SelfAttention.q.weight", 0);
    if (q->ndim != 2 || q->shape[1] != c.d_model || q->shape[0] % c.heads != 0 || q->shape[0] < 1 ||
        q->shape[0] > (1 << 24))
        return fk_error(ctx, FK_ERR_SHAPE, "%s: tensor %s has an invalid shape (expected [%d·d_kv, %d])", path,
                        q->name, c.heads, c.d_model);
    c.d_kv = (int)(q->shape[0] / c.heads);
    const fk_st_tensor *wi0 = fk_t5_find(m, prefix, "block.0.layer.1.DenseReluDense.wi_0.weight", 0);
    if (!wi0) {
        if (fk_t5_find(m, prefix, "block.0.layer.1.DenseReluDense.wi.weight", 0))
            return fk_error(ctx, FK_ERR_UNSUPPORTED,
                            "%s: T5 v1.0 feed-forward (single wi, ReLU) is not supported; expected the v1.1 gated "
                            "wi_0 / wi_1",
                            path);
        return fk_error(ctx, FK_ERR_FORMAT, "%s: tensor %sblock.0.layer.1.DenseReluDense.wi_0.weight missing", path,
                        prefix);
    }
    if (wi0->ndim != 2 || wi0->shape[1] != c.d_model || wi0->shape[0] < 1 || wi0->shape[0] > (1 << 24))
        return fk_error(ctx, FK_ERR_SHAPE, "%s: tensor %s has an invalid shape (expected [d_ff, %d])", path,
                        wi0->name, c.d_model);
    c.d_ff = (int)wi0->shape[0];
    int layers = 0;
    while (layers < 4096 && fk_t5_find(m, prefix, "block.%d.layer.0.SelfAttention.q.weight", layers)) layers++;
    c.layers = layers;

    char src[4300] = "";
    cJSON *o = fk_t5_find_config(m, src, sizeof(src));
    if (o) {
        fk_status st = FK_OK;
        int v;
        struct {
            const char *key;
            int have;
        } checks[] = {{"d_model", c.d_model},
                      {"num_layers", c.layers},
                      {"num_heads", c.heads},
                      {"d_kv", c.d_kv},
                      {"d_ff", c.d_ff},
                      {"vocab_size", c.vocab_size},
                      {"relative_attention_num_buckets", c.num_buckets}};
        for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]) && st == FK_OK; i++)
            if (fk_t5_json_int(o, checks[i].key, &v) && v != checks[i].have)
                st = fk_error(ctx, FK_ERR_FORMAT, "%s: %s is %d but the weights have %d", src, checks[i].key, v,
                              checks[i].have);
        if (st == FK_OK && fk_t5_json_int(o, "relative_attention_max_distance", &v)) {
            if (v < 1 || v > (1 << 24))
                st = fk_error(ctx, FK_ERR_FORMAT, "%s: relative_attention_max_distance %d out of range", src, v);
            c.max_distance = v;
        }
        const cJSON *eps = cJSON_GetObjectItemCaseSensitive(o, "layer_norm_epsilon");
        if (st == FK_OK && cJSON_IsNumber(eps)) {
            if (!(eps->valuedouble > 0 && eps->valuedouble < 1))
                st = fk_error(ctx, FK_ERR_FORMAT, "%s: layer_norm_epsilon %g out of range (0, 1)", src,
                              eps->valuedouble);
            c.eps = (float)eps->valuedouble;
        }
        const cJSON *ffp = cJSON_GetObjectItemCaseSensitive(o, "feed_forward_proj");
        if (st == FK_OK && cJSON_IsString(ffp) && strcmp(ffp->valuestring, "gated-gelu"))
            st = fk_error(ctx, FK_ERR_UNSUPPORTED,
                          "%s: feed_forward_proj '%s' is not supported (T5 v1.1 uses gated-gelu)", src,
                          ffp->valuestring);
        const cJSON *act = cJSON_GetObjectItemCaseSensitive(o, "dense_act_fn");
        if (st == FK_OK && cJSON_IsString(act) && strcmp(act->valuestring, "gelu_new") &&
            strcmp(act->valuestring, "gelu_pytorch_tanh"))
            st = fk_error(ctx, FK_ERR_UNSUPPORTED,
                          "%s: dense_act_fn '%s' is not supported (T5 v1.1 uses gelu_new, the tanh approximation)",
                          src, act->valuestring);
        cJSON_Delete(o);
        if (st != FK_OK) return st;
    }
    if (c.num_buckets < 2) return fk_error(ctx, FK_ERR_FORMAT, "%s: num_buckets %d < 2", path, c.num_buckets);
    *cfg = c;
    return FK_OK;
}

/* ---- the model ------------------------------------------------------------ */

/* A linear weight (out, in) with an optional ComfyUI fp8 scale, applied to
 * the product's output columns by the scale_cols op (a weight operand). */
typedef struct fk_t5_linear {
    fk_tensor w;       /* (out, in) */
    fk_tensor s;       /* (out) the column scale when scaled: the checkpoint's
                        * per-row tensor in place (any float dtype), or s_own */
    float *s_own;      /* (out) a per-tensor scale repeated, f32; owned, or NULL */
    bool scaled;
} fk_t5_linear;

typedef struct fk_t5_layer {
    fk_tensor ln0;                  /* (d) */
    fk_t5_linear q, k, v;           /* (H·dkv, d) */
    fk_t5_linear o;                 /* (d, H·dkv) */
    fk_tensor ln1;                  /* (d) */
    fk_t5_linear wi0, wi1;          /* (ff, d) */
    fk_t5_linear wo;                /* (d, ff) */
} fk_t5_layer;

struct fk_t5 {
    fk_t5_config cfg;
    fk_backend *be;
    fk_st_model *m;
    bool owns_m;
    char prefix[128];
    fk_tensor emb;                  /* (V, d) */
    float *rel_bias;                /* (num_buckets, H) f32 copy; owned */
    fk_tensor lnf;                  /* (d) */
    fk_t5_layer *layers;
    uint64_t weight_bytes;
    int n_scaled;
    int buf_len;
    float *buf;
    uint64_t buf_bytes;
    int buf_bias_n;     /* n whose (H, n, n) position bias buf holds now (0: none) */
    float *bias_host;   /* device backends: that bias built on the host, for re-uploads */
    int bias_host_n;
};

const fk_t5_config *fk_t5_get_config(const fk_t5 *t) { return &t->cfg; }
uint64_t fk_t5_weight_bytes(const fk_t5 *t) { return t->weight_bytes; }
uint64_t fk_t5_buffer_bytes(const fk_t5 *t) { return t->buf_bytes; }
int fk_t5_scaled_linears(const fk_t5 *t) { return t->n_scaled; }
fk_dtype fk_t5_linear_dtype(const fk_t5 *t) { return t->layers[0].q.w.dtype; }
fk_dtype fk_t5_embedding_dtype(const fk_t5 *t) { return t->emb.dtype; }

static fk_status fk_t5_bind(fk_context *ctx, fk_t5 *t, fk_tensor *out, const char *fmt, int l, int ndim, int64_t d0,
                            int64_t d1, const fk_st_tensor **found) {
    char suffix[160], name[320];
    snprintf(suffix, sizeof(suffix), fmt, l);
    snprintf(name, sizeof(name), "%s%s", t->prefix, suffix);
    const fk_st_tensor *s = fk_st_model_find(t->m, name);
    char want[64];
    if (ndim == 1)
        snprintf(want, sizeof(want), "[%lld]", (long long)d0);
    else
        snprintf(want, sizeof(want), "[%lld, %lld]", (long long)d0, (long long)d1);
    if (!s)
        return fk_error(ctx, FK_ERR_SHAPE, "%s: tensor %s missing (expected shape %s)", fk_st_model_path(t->m), name,
                        want);
    fk_tensor v = fk_st_view(s);
    if (!(v.ndim == ndim && v.shape[0] == d0 && (ndim == 1 || v.shape[1] == d1))) {
        char have[96];
        return fk_error(ctx, FK_ERR_SHAPE, "%s: tensor %s has shape %s, expected %s", fk_st_model_path(t->m), name,
                        fk_shape_str(&v, have, sizeof(have)), want);
    }
    if (!fk_dtype_is_float(v.dtype))
        return fk_error(ctx, FK_ERR_SHAPE, "%s: tensor %s has dtype %s, expected a float type (F32, BF16, F16, F8)",
                        fk_st_model_path(t->m), name, fk_dtype_name(v.dtype));
    *out = v;
    t->weight_bytes += s->nbytes;
    if (found) *found = s;
    return FK_OK;
}

/* Bind a linear weight and its optional fp8 scale (<name>.scale_weight or
 * <name>.weight_scale: one value, or one per output row). */
static fk_status fk_t5_bind_linear(fk_context *ctx, fk_t5 *t, fk_t5_linear *lin, const char *fmt, int l,
                                   int64_t d0, int64_t d1) {
    const fk_st_tensor *w = NULL;
    fk_status st = fk_t5_bind(ctx, t, &lin->w, fmt, l, 2, d0, d1, &w);
    if (st != FK_OK) return st;
    char base[320], name[340];
    size_t bl = strlen(w->name);
    if (bl < strlen(".weight") || bl >= sizeof(base)) return FK_OK;
    memcpy(base, w->name, bl - strlen("weight"));
    base[bl - strlen("weight")] = 0; /* "...q." */
    static const char *keys[] = {"scale_weight", "weight_scale"};
    for (int i = 0; i < 2; i++) {
        snprintf(name, sizeof(name), "%s%s", base, keys[i]);
        const fk_st_tensor *s = fk_st_model_find(t->m, name);
        if (!s) continue;
        fk_tensor sv = fk_st_view(s);
        int64_t ne = fk_tensor_numel(&sv);
        if (!fk_dtype_is_float(sv.dtype) || (ne != 1 && ne != d0))
            return fk_error(ctx, FK_ERR_SHAPE, "%s: tensor %s has %lld %s elements, expected 1 or %lld floats",
                            fk_st_model_path(t->m), name, (long long)ne, fk_dtype_name(sv.dtype), (long long)d0);
        lin->scaled = true;
        t->n_scaled++;
        t->weight_bytes += s->nbytes;
        if (ne == d0) {
            lin->s = fk_view1(sv.dtype, sv.data, d0); /* (out), read in place */
        } else {
            float scale;
            fk_convert_to_f32(&scale, sv.data, sv.dtype, 1);
            lin->s_own = malloc((size_t)d0 * sizeof(float));
            if (!lin->s_own) return fk_error(ctx, FK_ERR_NOMEM, "out of memory reading %s", name);
            for (int64_t j = 0; j < d0; j++) lin->s_own[j] = scale;
            lin->s = fk_view1(FK_F32, lin->s_own, d0);
        }
        break;
    }
    return FK_OK;
}

static void fk_t5_free_linear(fk_t5_linear *lin) { free(lin->s_own); }

/* Scaled fp8 linears need the backend's scale_cols for their scales' dtype. */
static fk_status fk_t5_check_scales(fk_context *ctx, const fk_t5 *t) {
    fk_backend *be = t->be;
    float dummy = 0;
    fk_tensor y = fk_view2(FK_F32, &dummy, 1, 1); /* an activation: on the backend's device */
    y.device = be->device;
    for (int l = 0; l < t->cfg.layers; l++) {
        const fk_t5_layer *L = &t->layers[l];
        const fk_t5_linear *lins[] = {&L->q, &L->k, &L->v, &L->o, &L->wi0, &L->wi1, &L->wo};
        for (size_t i = 0; i < sizeof(lins) / sizeof(lins[0]); i++) {
            if (!lins[i]->scaled) continue;
            const fk_tensor *srcs[3] = {&y, &y, &lins[i]->s}; /* y, x, s */
            if (!be->scale_cols || (be->supports && !be->supports(be, FK_OP_SCALE_COLS, srcs, 3)))
                return fk_error(ctx, FK_ERR_UNSUPPORTED,
                                "T5 encoder: backend %s cannot apply the fp8 scales (scale_cols with %s "
                                "scales) of %s",
                                be->name, fk_dtype_name(lins[i]->s.dtype), fk_st_model_path(t->m));
        }
    }
    return FK_OK;
}

fk_status fk_t5_load_model(fk_context *ctx, fk_backend *be, fk_st_model *m, bool take_ownership, fk_t5 **out) {
    *out = NULL;
    if (!be || !m) {
        if (take_ownership) fk_st_model_close(m);
        return fk_error(ctx, FK_ERR_ARG, "fk_t5_load_model: NULL backend or checkpoint");
    }
    fk_t5 *t = calloc(1, sizeof(*t));
    if (!t) {
        if (take_ownership) fk_st_model_close(m);
        return fk_error(ctx, FK_ERR_NOMEM, "out of memory loading the T5 encoder");
    }
    t->be = be;
    t->m = m;
    t->owns_m = take_ownership;
    fk_status st = FK_OK;
    if (!be->alloc || !be->free || !be->upload || !be->download)
        st = fk_error(ctx, FK_ERR_ARG, "T5 encoder: backend %s has no memory functions", be->name);
    if (st == FK_OK) st = fk_t5_config_infer(ctx, m, &t->cfg, t->prefix, sizeof(t->prefix));
    const fk_t5_config *g = &t->cfg;
    const int64_t d = g->d_model, inner = (int64_t)g->heads * g->d_kv, ff = g->d_ff;
    if (st == FK_OK) {
        t->layers = calloc((size_t)g->layers, sizeof(*t->layers));
        t->rel_bias = malloc((size_t)g->num_buckets * (size_t)g->heads * sizeof(float));
        if (!t->layers || !t->rel_bias) st = fk_error(ctx, FK_ERR_NOMEM, "out of memory loading the T5 encoder");
    }
    if (st == FK_OK) {
        const fk_st_tensor *e = fk_t5_find_embedding(m, t->prefix);
        t->emb = fk_st_view(e); /* shape checked by fk_t5_config_infer */
        if (!fk_dtype_is_float(t->emb.dtype))
            st = fk_error(ctx, FK_ERR_SHAPE, "%s: tensor %s has dtype %s, expected a float type",
                          fk_st_model_path(m), e->name, fk_dtype_name(t->emb.dtype));
        t->weight_bytes += e->nbytes;
    }
    if (st == FK_OK) {
        fk_tensor rb;
        st = fk_t5_bind(ctx, t, &rb, "block.0.layer.0.SelfAttention.relative_attention_bias.weight", 0, 2,
                        g->num_buckets, g->heads, NULL);
        if (st == FK_OK) fk_convert_to_f32(t->rel_bias, rb.data, rb.dtype, (size_t)g->num_buckets * (size_t)g->heads);
    }
    for (int l = 0; l < g->layers && st == FK_OK; l++) {
        fk_t5_layer *L = &t->layers[l];
        st = fk_t5_bind(ctx, t, &L->ln0, "block.%d.layer.0.layer_norm.weight", l, 1, d, 0, NULL);
        if (st == FK_OK) st = fk_t5_bind_linear(ctx, t, &L->q, "block.%d.layer.0.SelfAttention.q.weight", l, inner, d);
        if (st == FK_OK) st = fk_t5_bind_linear(ctx, t, &L->k, "block.%d.layer.0.SelfAttention.k.weight", l, inner, d);
        if (st == FK_OK) st = fk_t5_bind_linear(ctx, t, &L->v, "block.%d.layer.0.SelfAttention.v.weight", l, inner, d);
        if (st == FK_OK) st = fk_t5_bind_linear(ctx, t, &L->o, "block.%d.layer.0.SelfAttention.o.weight", l, d, inner);
        if (st == FK_OK) st = fk_t5_bind(ctx, t, &L->ln1, "block.%d.layer.1.layer_norm.weight", l, 1, d, 0, NULL);
        if (st == FK_OK)
            st = fk_t5_bind_linear(ctx, t, &L->wi0, "block.%d.layer.1.DenseReluDense.wi_0.weight", l, ff, d);
        if (st == FK_OK)
            st = fk_t5_bind_linear(ctx, t, &L->wi1, "block.%d.layer.1.DenseReluDense.wi_1.weight", l, ff, d);
        if (st == FK_OK) st = fk_t5_bind_linear(ctx, t, &L->wo, "block.%d.layer.1.DenseReluDense.wo.weight", l, d, ff);
    }
    if (st == FK_OK) st = fk_t5_bind(ctx, t, &t->lnf, "final_layer_norm.weight", 0, 1, d, 0, NULL);
    if (st == FK_OK) st = fk_t5_check_scales(ctx, t);
    if (st != FK_OK) {
        fk_t5_free(t);
        return st;
    }
    *out = t;
    return FK_OK;
}

fk_status fk_t5_load(fk_context *ctx, fk_backend *be, const char *path, fk_t5 **out) {
    *out = NULL;
    fk_st_model *m = NULL;
    fk_status st = fk_st_model_open(ctx, path, &m);
    if (st != FK_OK) return st;
    return fk_t5_load_model(ctx, be, m, true, out);
}

void fk_t5_release_buffers(fk_t5 *t) {
    if (!t) return;
    if (t->buf) t->be->free(t->be, t->buf);
    t->buf = NULL;
    t->buf_len = 0;
    t->buf_bytes = 0;
    t->buf_bias_n = 0;
}

void fk_t5_free(fk_t5 *t) {
    if (!t) return;
    fk_t5_release_buffers(t);
    if (t->layers) {
        for (int l = 0; l < t->cfg.layers; l++) {
            fk_t5_layer *L = &t->layers[l];
            fk_t5_linear *lins[] = {&L->q, &L->k, &L->v, &L->o, &L->wi0, &L->wi1, &L->wo};
            for (size_t i = 0; i < sizeof(lins) / sizeof(lins[0]); i++) fk_t5_free_linear(lins[i]);
        }
    }
    free(t->layers);
    free(t->rel_bias);
    free(t->bias_host);
    if (t->owns_m) fk_st_model_close(t->m);
    free(t);
}

/* Buffer layout for n tokens: x, h (n, d); q, k, v, a (n, inner); g, u (n, ff);
 * bias (H, n, n). */
static uint64_t fk_t5_buffer_floats(const fk_t5_config *g, int n) {
    uint64_t d = (uint64_t)g->d_model, inner = (uint64_t)g->heads * (uint64_t)g->d_kv, ff = (uint64_t)g->d_ff;
    return (uint64_t)n * (2 * d + 4 * inner + 2 * ff) + (uint64_t)g->heads * (uint64_t)n * (uint64_t)n;
}

uint64_t fk_t5_buffer_bytes_for(const fk_t5_config *cfg, int n) { return fk_t5_buffer_floats(cfg, n) * sizeof(float); }

static fk_status fk_t5_reserve(fk_context *ctx, fk_t5 *t, int n) {
    if (n <= t->buf_len) return FK_OK;
    fk_t5_release_buffers(t);
    uint64_t bytes = fk_t5_buffer_bytes_for(&t->cfg, n);
    t->buf = t->be->alloc(t->be, (size_t)bytes);
    if (!t->buf)
        return fk_error(ctx, FK_ERR_NOMEM, "out of memory allocating %llu bytes of T5 activations for %d tokens",
                        (unsigned long long)bytes, n);
    t->buf_len = n;
    t->buf_bytes = bytes;
    return FK_OK;
}

/* y = x·wᵀ, then the fp8 scale if any: y[:, j] *= s[j] in place on the
 * backend (scale_cols; s a host weight). y (M, N), x (M, K) activations. */
static void fk_t5_apply_linear(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_t5_linear *lin) {
    be->linear(be, y, x, &lin->w, NULL);
    if (lin->scaled) be->scale_cols(be, y, y, &lin->s);
}

/* bias (H, n, n) = layer 0's table at the bucket of j − i. Each head's
 * matrix is Toeplitz: row i is the window [n − 1 − i, 2n − 1 − i) of the
 * head's 2n − 1 diagonal values, so a row is one copy. */
static fk_status fk_t5_position_bias(fk_context *ctx, const fk_t5 *t, int n, float *bias) {
    const fk_t5_config *g = &t->cfg;
    const int64_t H = g->heads, nd = 2 * (int64_t)n - 1;
    float *diag = malloc((size_t)nd * sizeof(float));
    if (!diag) return fk_error(ctx, FK_ERR_NOMEM, "out of memory: T5 position bias for %d tokens", n);
    for (int64_t hh = 0; hh < H; hh++) {
        for (int64_t r = -(int64_t)(n - 1); r <= n - 1; r++) {
            int b = fk_t5_relative_bucket(r, true, g->num_buckets, g->max_distance);
            diag[r + n - 1] = t->rel_bias[(size_t)b * (size_t)H + (size_t)hh];
        }
        float *bh = bias + hh * (int64_t)n * n;
        for (int64_t i = 0; i < n; i++) memcpy(bh + i * n, diag + (n - 1 - i), (size_t)n * sizeof(float));
    }
    free(diag);
    return FK_OK;
}

fk_status fk_t5_encode(fk_context *ctx, fk_t5 *t, const int64_t *ids, int n, fk_tensor *out) {
    const fk_t5_config *g = &t->cfg;
    const int64_t d = g->d_model, H = g->heads, Dk = g->d_kv, inner = H * Dk, ff = g->d_ff;
    if (n < 1 || n > (1 << 16))
        return fk_error(ctx, FK_ERR_ARG, "T5 encoder: %d tokens, expected 1 to 65536", n);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= g->vocab_size)
            return fk_error(ctx, FK_ERR_ARG, "T5 encoder: token id %lld at position %d outside [0, %d)",
                            (long long)ids[i], i, g->vocab_size);
    if (!out || out->dtype != FK_F32 || fk_tensor_numel(out) != (int64_t)n * d || !out->data)
        return fk_error(ctx, FK_ERR_ARG, "T5 encoder: output last_hidden_state must be f32 with %lld elements",
                        (long long)n * d);
    fk_backend *be = t->be;
    if (out->device != FK_DEVICE_CPU && out->device != be->device)
        return fk_error(ctx, FK_ERR_ARG, "T5 encoder: output last_hidden_state must be in host memory or on "
                        "the backend's device (%s)", be->name);
    fk_status st = fk_t5_reserve(ctx, t, n);
    if (st != FK_OK) return st;
    const bool on_host = be->device == FK_DEVICE_CPU;
    float *p = t->buf;
    fk_tensor x = fk_be_view2(be, p, n, d);                 /* (L, d) residual stream */
    fk_tensor h = fk_be_view2(be, p += n * d, n, d);        /* (L, d) normed / projections */
    fk_tensor q = fk_be_view2(be, p += n * d, n, inner);    /* (L, H·dkv) */
    fk_tensor k = fk_be_view2(be, p += n * inner, n, inner);
    fk_tensor v = fk_be_view2(be, p += n * inner, n, inner);
    fk_tensor a = fk_be_view2(be, p += n * inner, n, inner); /* attention output */
    fk_tensor gt = fk_be_view2(be, p += n * inner, n, ff);   /* (L, ff) gelu(wi_0 h) */
    fk_tensor u = fk_be_view2(be, p += n * ff, n, ff);       /* (L, ff) wi_1 h */
    float *bias_dev = p + n * ff;                         /* (H, L, L) */
    fk_tensor bias = fk_be_view3(be, bias_dev, H, n, n);
    fk_tensor q3 = fk_be_view3(be, q.data, n, H, Dk), k3 = fk_be_view3(be, k.data, n, H, Dk),
              v3 = fk_be_view3(be, v.data, n, H, Dk);

    /* The embedding rows are looked up on the host: in place on the CPU
     * backend, in host staging uploaded to a device. */
    float *xh = x.data;
    if (!on_host && !(xh = malloc((size_t)n * (size_t)d * sizeof(float))))
        return fk_error(ctx, FK_ERR_NOMEM, "out of memory: T5 host staging (%llu bytes) for %d tokens",
                        (unsigned long long)((uint64_t)n * (uint64_t)d * sizeof(float)), n);
    size_t es = fk_dtype_size(t->emb.dtype);
    for (int i = 0; i < n; i++)
        fk_convert_to_f32(xh + (int64_t)i * d, (const char *)t->emb.data + (size_t)ids[i] * (size_t)d * es,
                          t->emb.dtype, (size_t)d);
    if (!on_host) {
        be->upload(be, x.data, xh, fk_tensor_nbytes(&x));
        free(xh);
    }

    /* The position bias depends on n alone: built once while the buffers
     * stay (on a device backend from a host copy kept for re-uploads after
     * fk_t5_release_buffers). */
    if (t->buf_bias_n != n) {
        if (on_host) {
            if ((st = fk_t5_position_bias(ctx, t, n, bias_dev)) != FK_OK) return st;
        } else {
            if (t->bias_host_n != n) {
                free(t->bias_host);
                t->bias_host_n = 0;
                if (!(t->bias_host = malloc((size_t)fk_tensor_nbytes(&bias))))
                    return fk_error(ctx, FK_ERR_NOMEM, "out of memory: T5 position bias (%llu bytes) for %d "
                                    "tokens", (unsigned long long)fk_tensor_nbytes(&bias), n);
                if ((st = fk_t5_position_bias(ctx, t, n, t->bias_host)) != FK_OK) return st;
                t->bias_host_n = n;
            }
            be->upload(be, bias_dev, t->bias_host, fk_tensor_nbytes(&bias));
        }
        t->buf_bias_n = n;
    }

    for (int l = 0; l < g->layers; l++) {
        const fk_t5_layer *L = &t->layers[l];
        be->rmsnorm(be, &h, &x, &L->ln0, g->eps);
        fk_t5_apply_linear(be, &q, &h, &L->q);
        fk_t5_apply_linear(be, &k, &h, &L->k);
        fk_t5_apply_linear(be, &v, &h, &L->v);
        be->attention(be, &a, &q3, &k3, &v3, &bias, 1.0f, false); /* T5: no 1/√d scaling */
        fk_t5_apply_linear(be, &h, &a, &L->o);
        be->add(be, &x, &x, &h);
        be->rmsnorm(be, &h, &x, &L->ln1, g->eps);
        if (L->wi0.scaled) { /* the scale comes between the product and the activation */
            fk_t5_apply_linear(be, &gt, &h, &L->wi0);
            be->gelu_tanh(be, &gt, &gt);
        } else { /* the same bits, the activation in the product's output stage */
            be->linear_act(be, &gt, &h, &L->wi0.w, NULL, FK_ACT_GELU_TANH);
        }
        fk_t5_apply_linear(be, &u, &h, &L->wi1);
        be->mul(be, &gt, &gt, &u);
        fk_t5_apply_linear(be, &h, &gt, &L->wo);
        be->add(be, &x, &x, &h);
    }
    /* the output: written in place when it is on the device, else through h */
    fk_tensor y = out->device == be->device ? fk_be_view2(be, out->data, n, d) : h;
    be->rmsnorm(be, &y, &x, &t->lnf, g->eps);
    if (y.data != out->data) be->download(be, out->data, y.data, fk_tensor_nbytes(&y));
    return FK_OK;
}
