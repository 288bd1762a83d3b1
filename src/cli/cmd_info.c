/* fluxkit info: describe a checkpoint (file, sharded index, folder, or a
 * diffusers pipeline folder) without reading its tensor data, or the build
 * and CPU (--system). */
#include "cli/cli_util.h"
#include "backend/backend_cuda.h"
#include "core/cpu_features.h"
#include "model/model_detect.h"

#include <cJSON.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static void fk_info_usage(FILE *f) {
    fprintf(f,
            "usage: fluxkit info [OPTIONS] PATH\n"
            "       fluxkit info --system [--json]\n"
            "\n"
            "Describe a safetensors checkpoint without reading its data: what model it is\n"
            "(FLUX transformer with its configuration, T5 or CLIP text encoder, autoencoder),\n"
            "totals by dtype, files, metadata and the list of tensors.\n"
            "PATH: a .safetensors file, a *.safetensors.index.json, a folder of .safetensors\n"
            "files, or a diffusers pipeline folder (with model_index.json).\n"
            "\n"
            "options:\n"
            "  --no-tensors     do not list the tensors (summary only)\n"
            "  --filter TEXT    list only tensors whose name contains TEXT\n"
            "  --json           print one JSON object with the same facts\n"
            "  --system         build features (OpenMP, BLAS, utf8proc, libpng, CUDA) and\n"
            "                   CPU features (AVX2, AVX-512, AVX512-BF16, AMX); no PATH\n"
            "  -h, --help       this message\n");
}

typedef struct fk_info_opts {
    bool json, tensors, system;
    const char *filter;
} fk_info_opts;

/* ---- natural order of tensor names (block.2 before block.10) ------------- */

static int fk_info_natcmp(const char *a, const char *b) {
    while (*a && *b) {
        if (*a >= '0' && *a <= '9' && *b >= '0' && *b <= '9') {
            const char *ea = a, *eb = b;
            while (*a == '0') a++;
            while (*b == '0') b++;
            const char *da = a, *db = b;
            while (*a >= '0' && *a <= '9') a++;
            while (*b >= '0' && *b <= '9') b++;
            size_t la = (size_t)(a - da), lb = (size_t)(b - db);
            if (la != lb) return la < lb ? -1 : 1;
            int c = strncmp(da, db, la);
            if (c) return c;
            size_t za = (size_t)(da - ea), zb = (size_t)(db - eb); /* more leading zeros last */
            if (za != zb) return za < zb ? -1 : 1;
        } else {
            if (*a != *b) return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
            a++;
            b++;
        }
    }
    return (unsigned char)*a - (unsigned char)*b;
}

static const fk_st_model *fk_info_sort_model;
static int fk_info_sort_cmp(const void *pa, const void *pb) {
    int ia = *(const int *)pa, ib = *(const int *)pb;
    return fk_info_natcmp(fk_st_model_get(fk_info_sort_model, ia)->name,
                          fk_st_model_get(fk_info_sort_model, ib)->name);
}

/* ---- totals --------------------------------------------------------------- */

typedef struct fk_info_sum {
    int64_t tensors, params;
    uint64_t bytes;
} fk_info_sum;

typedef struct fk_info_totals {
    fk_info_sum all;
    fk_info_sum by_dtype[FK_DTYPE_COUNT];
} fk_info_totals;

static int64_t fk_info_numel(const fk_st_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

static void fk_info_total(const fk_st_model *m, fk_info_totals *tot) {
    memset(tot, 0, sizeof(*tot));
    for (int i = 0; i < fk_st_model_count(m); i++) {
        const fk_st_tensor *t = fk_st_model_get(m, i);
        int64_t n = fk_info_numel(t);
        fk_info_sum *s[2] = {&tot->all, &tot->by_dtype[t->dtype]};
        for (int k = 0; k < 2; k++) {
            s[k]->tensors++;
            s[k]->params += n;
            s[k]->bytes += t->nbytes;
        }
    }
}

static const char *fk_info_shape(const fk_st_tensor *t, char *buf, size_t n) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, n - o, "[");
    for (int d = 0; d < t->ndim && o < n; d++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (o < n) snprintf(buf + o, n - o, "]");
    return buf;
}

/* ---- model description ---------------------------------------------------- */

/* A module's config JSON text (fk_t5_config_json, ...) as an object; NULL
 * when out of memory. Takes ownership of text. */
static cJSON *fk_info_parse_owned(char *text) {
    if (!text) return NULL;
    cJSON *o = cJSON_Parse(text);
    free(text);
    if (o && !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        o = NULL;
    }
    return o;
}

static int64_t fk_info_component_params(const fk_model_component *c) {
    switch (c->kind) {
    case FK_MODEL_FLUX: return fk_flux_param_count(&c->flux);
    case FK_MODEL_T5: return fk_t5_param_count(&c->t5);
    case FK_MODEL_CLIP: return fk_clip_param_count(&c->clip);
    case FK_MODEL_AE: return fk_vae_param_count(&c->ae);
    case FK_MODEL_UNKNOWN: break;
    }
    return 0;
}

/* "config": the module's own config JSON (HF T5Config / CLIPTextConfig, BFL
 * AutoEncoderParams; FLUX as `fluxkit` writes it), plus facts of the file. */
static cJSON *fk_info_component_json(const fk_model_component *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "kind", fk_model_kind_name(c->kind));
    cJSON_AddStringToObject(o, "name", c->name ? c->name : "custom");
    cJSON_AddStringToObject(o, "format", c->format ? c->format : "");
    cJSON_AddStringToObject(o, "prefix", c->prefix);
    cJSON_AddNumberToObject(o, "parameters", (double)fk_info_component_params(c));
    cJSON *cfg = NULL;
    switch (c->kind) {
    case FK_MODEL_FLUX:
        cfg = fk_cli_flux_config_json(&c->flux);
        if (cfg) {
            cJSON_AddNumberToObject(cfg, "head_dim", c->flux.head_dim);
            cJSON_AddNumberToObject(cfg, "mlp_hidden", c->flux.mlp_hidden);
        }
        break;
    case FK_MODEL_T5:
        cfg = fk_info_parse_owned(fk_t5_config_json(&c->t5));
        if (cfg) cJSON_AddBoolToObject(cfg, "has_decoder", c->t5_has_decoder);
        break;
    case FK_MODEL_CLIP:
        cfg = fk_info_parse_owned(fk_clip_config_json(&c->clip));
        if (cfg && c->clip_projection) cJSON_AddNumberToObject(cfg, "projection_dim", c->clip_projection);
        break;
    case FK_MODEL_AE:
        cfg = fk_info_parse_owned(fk_vae_config_json(&c->ae));
        if (cfg) {
            cJSON_AddBoolToObject(cfg, "has_encoder", c->ae.has_encoder);
            cJSON_AddBoolToObject(cfg, "has_decoder", c->ae.has_decoder);
            cJSON_AddBoolToObject(cfg, "quant_conv", c->ae.quant_conv);
            cJSON_AddBoolToObject(cfg, "post_quant_conv", c->ae.post_quant_conv);
        }
        break;
    case FK_MODEL_UNKNOWN: break;
    }
    if (cfg) cJSON_AddItemToObject(o, "config", cfg);
    return o;
}

static void fk_info_component_text(const fk_model_component *c) {
    char pre[160] = "", pc[32];
    if (c->prefix[0]) snprintf(pre, sizeof(pre), ", key prefix '%s'", c->prefix);
    const char *params = fk_cli_fmt_count(fk_info_component_params(c), pc, sizeof(pc));
    switch (c->kind) {
    case FK_MODEL_FLUX: {
        const fk_flux_config *f = &c->flux;
        printf("model:     FLUX transformer: %s (format %s%s), %s parameters\n", c->name, c->format,
               pre, params);
        printf("           hidden %d, %d heads x head dim %d, depth %d double + %d single, mlp %d\n",
               f->hidden, f->num_heads, f->head_dim, f->depth_double, f->depth_single, f->mlp_hidden);
        printf("           in %d, out %d, context %d, vec %d, guidance embedding %s, qkv bias %s,\n",
               f->in_channels, f->out_channels, f->context_dim, f->vec_dim,
               f->guidance_embed ? "yes" : "no", f->qkv_bias ? "yes" : "no");
        printf("           axes_dim [%d, %d, %d], theta %g\n", f->axes_dim[0], f->axes_dim[1],
               f->axes_dim[2], (double)f->theta);
        break;
    }
    case FK_MODEL_T5: {
        const fk_t5_config *t = &c->t5;
        printf("model:     T5 encoder: %s (format %s%s), %s parameters\n", c->name, c->format, pre, params);
        printf("           d_model %d, %d layers, %d heads x d_kv %d, d_ff %d (gated-gelu), vocab %d,\n",
               t->d_model, t->layers, t->heads, t->d_kv, t->d_ff, t->vocab_size);
        printf("           %d relative buckets, max distance %d, eps %g%s\n", t->num_buckets, t->max_distance,
               (double)t->eps, c->t5_has_decoder ? ", has a decoder (unused)" : "");
        break;
    }
    case FK_MODEL_CLIP: {
        const fk_clip_config *k = &c->clip;
        char proj[48] = "";
        if (c->clip_projection) snprintf(proj, sizeof(proj), ", projection %d", c->clip_projection);
        printf("model:     CLIP text encoder: %s (format %s%s), %s parameters\n", c->name, c->format, pre,
               params);
        printf("           width %d, %d layers, %d heads x head dim %d, mlp %d (quick_gelu), vocab %d,\n",
               k->width, k->layers, k->heads, k->heads > 0 ? k->width / k->heads : 0, k->mlp_hidden,
               k->vocab_size);
        printf("           %d positions, eps %g, eos_token_id %d%s\n", k->max_positions, (double)k->eps,
               k->eos_token_id, proj);
        break;
    }
    case FK_MODEL_AE: {
        const fk_vae_config *a = &c->ae;
        char mult[96] = "";
        size_t o = 0;
        for (int l = 0; l < a->n_levels && o < sizeof(mult); l++)
            o += (size_t)snprintf(mult + o, sizeof(mult) - o, "%s%d", l ? ", " : "", a->ch_mult[l]);
        printf("model:     autoencoder: %s (format %s%s), %s parameters\n", c->name, c->format, pre, params);
        printf("           ch %d, ch_mult [%s], num_res_blocks %d, z_channels %d, in %d, out %d,%s%s\n", a->ch,
               mult, a->num_res_blocks, a->z_channels, a->in_channels, a->out_ch,
               a->has_encoder ? " encoder" : "", a->has_decoder ? " decoder" : "");
        printf("           scale_factor %g, shift_factor %g%s%s\n", (double)a->scale_factor,
               (double)a->shift_factor, a->quant_conv ? ", quant_conv" : "",
               a->post_quant_conv ? ", post_quant_conv" : "");
        break;
    }
    case FK_MODEL_UNKNOWN: break;
    }
}

/* ---- one checkpoint --------------------------------------------------------- */

static bool fk_info_match(const fk_info_opts *o, const char *name) {
    return !o->filter || strstr(name, o->filter) != NULL;
}

/* Describe an opened model: JSON into obj (when o->json) or text to stdout. */
static int fk_info_model(fk_context *ctx, const fk_st_model *m, const fk_info_opts *o, cJSON *obj) {
    fk_info_totals tot;
    fk_info_total(m, &tot);
    fk_model_info mi;
    if (fk_model_detect(ctx, m, &mi) != FK_OK) return fk_cli_fail(ctx);

    int n = fk_st_model_count(m);
    int *order = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    if (!order) {
        fk_cli_error("out of memory sorting %d tensor names", n);
        return FK_EXIT_ERROR;
    }
    for (int i = 0; i < n; i++) order[i] = i;
    fk_info_sort_model = m;
    qsort(order, (size_t)n, sizeof(int), fk_info_sort_cmp);
    char b1[48], b2[48], b3[48];

    if (o->json) {
        cJSON_AddStringToObject(obj, "path", fk_st_model_path(m));
        cJSON *files = cJSON_AddArrayToObject(obj, "files");
        for (int f = 0; f < fk_st_model_nfiles(m); f++) {
            const fk_st_file *sf = fk_st_model_file(m, f);
            cJSON *jf = cJSON_CreateObject();
            cJSON_AddStringToObject(jf, "path", fk_st_path(sf));
            cJSON_AddNumberToObject(jf, "size", (double)fk_st_file_size(sf));
            cJSON_AddNumberToObject(jf, "tensors", fk_st_count(sf));
            cJSON_AddItemToArray(files, jf);
        }
        const fk_model_component *first = mi.n ? &mi.comp[0] : NULL;
        cJSON_AddStringToObject(obj, "kind", first ? fk_model_kind_name(first->kind) : "unknown");
        cJSON_AddStringToObject(obj, "name", first && first->name ? first->name : "unknown");
        cJSON *comps = cJSON_AddArrayToObject(obj, "components");
        for (int c = 0; c < mi.n; c++) cJSON_AddItemToArray(comps, fk_info_component_json(&mi.comp[c]));
        if (mi.note[0]) cJSON_AddStringToObject(obj, "note", mi.note);
        cJSON_AddNumberToObject(obj, "tensor_count", (double)tot.all.tensors);
        cJSON_AddNumberToObject(obj, "parameters", (double)tot.all.params);
        cJSON_AddNumberToObject(obj, "bytes", (double)tot.all.bytes);
        cJSON *bd = cJSON_AddObjectToObject(obj, "by_dtype");
        for (int d = 0; d < FK_DTYPE_COUNT; d++) {
            if (!tot.by_dtype[d].tensors) continue;
            cJSON *jd = cJSON_AddObjectToObject(bd, fk_dtype_name((fk_dtype)d));
            cJSON_AddNumberToObject(jd, "tensors", (double)tot.by_dtype[d].tensors);
            cJSON_AddNumberToObject(jd, "parameters", (double)tot.by_dtype[d].params);
            cJSON_AddNumberToObject(jd, "bytes", (double)tot.by_dtype[d].bytes);
        }
        cJSON *meta = cJSON_AddObjectToObject(obj, "metadata");
        for (int f = 0; f < fk_st_model_nfiles(m); f++) {
            const fk_st_file *sf = fk_st_model_file(m, f);
            for (int k = 0; k < fk_st_meta_count(sf); k++) {
                const char *key, *val;
                fk_st_meta_get(sf, k, &key, &val);
                if (!cJSON_GetObjectItemCaseSensitive(meta, key)) cJSON_AddStringToObject(meta, key, val);
            }
        }
        if (o->tensors) {
            cJSON *arr = cJSON_AddArrayToObject(obj, "tensors");
            for (int k = 0; k < n; k++) {
                const fk_st_tensor *t = fk_st_model_get(m, order[k]);
                if (!fk_info_match(o, t->name)) continue;
                cJSON *jt = cJSON_CreateObject();
                cJSON_AddStringToObject(jt, "name", t->name);
                cJSON_AddStringToObject(jt, "dtype", fk_dtype_name(t->dtype));
                cJSON *js = cJSON_CreateArray();
                for (int d = 0; d < t->ndim; d++)
                    cJSON_AddItemToArray(js, cJSON_CreateNumber((double)t->shape[d]));
                cJSON_AddItemToObject(jt, "shape", js);
                cJSON_AddNumberToObject(jt, "bytes", (double)t->nbytes);
                if (fk_st_model_nfiles(m) > 1) cJSON_AddNumberToObject(jt, "file", t->file_index);
                cJSON_AddItemToArray(arr, jt);
            }
        }
        free(order);
        return FK_EXIT_OK;
    }

    /* ---- text ---- */
    uint64_t fsize = 0;
    for (int f = 0; f < fk_st_model_nfiles(m); f++) fsize += fk_st_file_size(fk_st_model_file(m, f));
    printf("path:      %s\n", fk_st_model_path(m));
    printf("files:     %d (%s)\n", fk_st_model_nfiles(m), fk_cli_fmt_bytes(fsize, b1, sizeof(b1)));
    if (fk_st_model_nfiles(m) > 1 || strcmp(fk_st_path(fk_st_model_file(m, 0)), fk_st_model_path(m)))
        for (int f = 0; f < fk_st_model_nfiles(m); f++) {
            const fk_st_file *sf = fk_st_model_file(m, f);
            printf("  [%d] %s  %d tensors, %s\n", f, fk_st_path(sf), fk_st_count(sf),
                   fk_cli_fmt_bytes(fk_st_file_size(sf), b1, sizeof(b1)));
        }
    if (mi.n == 0) printf("model:     unknown (not a FLUX transformer, T5, CLIP or autoencoder)\n");
    for (int c = 0; c < mi.n; c++) fk_info_component_text(&mi.comp[c]);
    if (mi.note[0]) printf("note:      %s\n", mi.note);
    printf("tensors:   %s\n", fk_cli_fmt_grouped(tot.all.tensors, b1, sizeof(b1)));
    printf("params:    %s (%s)\n", fk_cli_fmt_count(tot.all.params, b1, sizeof(b1)),
           fk_cli_fmt_grouped(tot.all.params, b2, sizeof(b2)));
    printf("bytes:     %s (%s)\n", fk_cli_fmt_bytes(tot.all.bytes, b1, sizeof(b1)),
           fk_cli_fmt_grouped((int64_t)tot.all.bytes, b2, sizeof(b2)));
    for (int d = 0; d < FK_DTYPE_COUNT; d++) {
        const fk_info_sum *s = &tot.by_dtype[d];
        if (!s->tensors) continue;
        printf("  %-8s %6lld tensors  %10s params  %10s\n", fk_dtype_name((fk_dtype)d),
               (long long)s->tensors, fk_cli_fmt_count(s->params, b1, sizeof(b1)),
               fk_cli_fmt_bytes(s->bytes, b2, sizeof(b2)));
    }
    int n_meta = 0;
    for (int f = 0; f < fk_st_model_nfiles(m); f++) n_meta += fk_st_meta_count(fk_st_model_file(m, f));
    printf("metadata:  %d key%s%s\n", n_meta, n_meta == 1 ? "" : "s", n_meta ? ":" : "");
    for (int f = 0; f < fk_st_model_nfiles(m); f++) {
        const fk_st_file *sf = fk_st_model_file(m, f);
        for (int k = 0; k < fk_st_meta_count(sf); k++) {
            const char *key, *val;
            fk_st_meta_get(sf, k, &key, &val);
            size_t len = strlen(val);
            const int max = 160; /* long values (configs) are cut; --json has them whole */
            if (len > (size_t)max)
                printf("  %s = %.*s... (%zu chars)\n", key, max, val, len);
            else
                printf("  %s = %s\n", key, val);
        }
    }
    if (o->tensors) {
        int w = 4;
        int shown = 0;
        for (int k = 0; k < n; k++) {
            const char *name = fk_st_model_get(m, order[k])->name;
            if (!fk_info_match(o, name)) continue;
            int l = (int)strlen(name);
            if (l > w) w = l;
            shown++;
        }
        if (o->filter)
            printf("tensors matching '%s': %d\n", o->filter, shown);
        printf("  %-*s  %-7s  %-22s  %s\n", w, "NAME", "DTYPE", "SHAPE", "BYTES");
        for (int k = 0; k < n; k++) {
            const fk_st_tensor *t = fk_st_model_get(m, order[k]);
            if (!fk_info_match(o, t->name)) continue;
            printf("  %-*s  %-7s  %-22s  %s\n", w, t->name, fk_dtype_name(t->dtype),
                   fk_info_shape(t, b3, sizeof(b3)), fk_cli_fmt_bytes(t->nbytes, b1, sizeof(b1)));
        }
    }
    free(order);
    return FK_EXIT_OK;
}

/* ---- --system --------------------------------------------------------------- */

static int fk_info_system(const fk_info_opts *o) {
#ifdef FK_HAVE_OPENMP
    const bool omp = true;
#else
    const bool omp = false;
#endif
#ifdef FK_HAVE_BLAS
    const bool blas = true;
#else
    const bool blas = false;
#endif
#ifdef FK_HAVE_UTF8PROC
    const bool utf8 = true;
#else
    const bool utf8 = false;
#endif
#ifdef FK_HAVE_PNG
    const bool png = true;
#else
    const bool png = false;
#endif
#ifdef FK_HAVE_CUDA
    const bool cuda = true;
#else
    const bool cuda = false;
#endif
    const int ndev = fk_cuda_device_count();
#ifdef FK_BUILD_TYPE
    const char *build_type = FK_BUILD_TYPE;
#else
    const char *build_type = "";
#endif
#if defined(__clang__)
    const char *cc = "clang " __clang_version__;
#elif defined(__GNUC__)
    const char *cc = "gcc " __VERSION__;
#else
    const char *cc = "unknown";
#endif
    fk_cpu_features f = fk_cpu_features_detect();
    char feats[512];
    fk_cpu_features_str(&f, feats, sizeof(feats));
    int ncpu = fk_cpu_count();
    if (o->json) {
        cJSON *obj = cJSON_CreateObject();
        cJSON_AddStringToObject(obj, "version", fk_version());
        cJSON_AddStringToObject(obj, "build_type", build_type);
        cJSON_AddStringToObject(obj, "compiler", cc);
        cJSON *b = cJSON_AddObjectToObject(obj, "build");
        cJSON_AddBoolToObject(b, "openmp", omp);
        cJSON_AddBoolToObject(b, "blas", blas);
        cJSON_AddBoolToObject(b, "utf8proc", utf8);
        cJSON_AddBoolToObject(b, "libpng", png);
        cJSON_AddBoolToObject(b, "cuda", cuda);
        cJSON *c = cJSON_AddObjectToObject(obj, "cpu");
        cJSON_AddStringToObject(c, "vendor", f.vendor);
        cJSON_AddStringToObject(c, "brand", f.brand);
        cJSON_AddNumberToObject(c, "online_cpus", ncpu);
        cJSON_AddBoolToObject(c, "x86", f.x86);
        cJSON_AddBoolToObject(c, "avx", f.avx);
        cJSON_AddBoolToObject(c, "fma", f.fma);
        cJSON_AddBoolToObject(c, "f16c", f.f16c);
        cJSON_AddBoolToObject(c, "avx2", f.avx2);
        cJSON_AddBoolToObject(c, "avx512f", f.avx512f);
        cJSON_AddBoolToObject(c, "avx512bw", f.avx512bw);
        cJSON_AddBoolToObject(c, "avx512vl", f.avx512vl);
        cJSON_AddBoolToObject(c, "avx512_vnni", f.avx512_vnni);
        cJSON_AddBoolToObject(c, "avx512_bf16", f.avx512_bf16);
        cJSON_AddBoolToObject(c, "avx512_fp16", f.avx512_fp16);
        cJSON_AddBoolToObject(c, "amx_tile", f.amx_tile);
        cJSON_AddBoolToObject(c, "amx_bf16", f.amx_bf16);
        cJSON_AddBoolToObject(c, "amx_int8", f.amx_int8);
        cJSON *devs = cJSON_AddArrayToObject(obj, "cuda_devices");
        for (int i = 0; devs && i < ndev; i++) {
            char d[256];
            cJSON_AddItemToArray(devs, cJSON_CreateString(fk_cuda_device_describe(i, d, sizeof(d))));
        }
        char *s = cJSON_Print(obj);
        cJSON_Delete(obj);
        if (!s) {
            fk_cli_error("out of memory printing JSON");
            return FK_EXIT_ERROR;
        }
        puts(s);
        free(s);
        return FK_EXIT_OK;
    }
    printf("fluxkit %s (%s), %s\n", fk_version(), build_type, cc);
    printf("build:     OpenMP %s, BLAS %s, utf8proc %s, libpng %s, CUDA %s\n", omp ? "yes" : "no",
           blas ? "yes" : "no", utf8 ? "yes" : "no", png ? "yes" : "no", cuda ? "yes" : "no");
    printf("cpu:       %s%s%s%s, %d online CPUs\n", f.brand[0] ? f.brand : "unknown CPU",
           f.vendor[0] ? " (" : "", f.vendor, f.vendor[0] ? ")" : "", ncpu);
    printf("kernels:   AVX2 %s, AVX-512F %s, AVX512-BF16 %s, AMX-BF16 %s\n", f.avx2 ? "yes" : "no",
           f.avx512f ? "yes" : "no", f.avx512_bf16 ? "yes" : "no", f.amx_bf16 ? "yes" : "no");
    printf("features:  %s\n", feats);
    if (!cuda) {
        printf("devices:   cpu (this build has no CUDA backend)\n");
    } else if (ndev == 0) {
        char d[256];
        printf("devices:   cpu; no CUDA device (%s)\n", fk_cuda_device_describe(0, d, sizeof(d)));
    } else {
        printf("devices:   cpu");
        for (int i = 0; i < ndev; i++) {
            char d[256];
            printf(", cuda:%d %s", i, fk_cuda_device_describe(i, d, sizeof(d)));
        }
        printf("\n");
    }
    return FK_EXIT_OK;
}

/* ---- diffusers pipeline folder --------------------------------------------- */

/* Weight sub-folders of a diffusers pipeline, in the order shown. */
static const char *const fk_info_pipeline_parts[] = {
    "transformer", "text_encoder", "text_encoder_2", "vae",
};

static bool fk_info_is_pipeline(const char *path) {
    char p[4096];
    snprintf(p, sizeof(p), "%s/model_index.json", path);
    return fk_cli_is_dir(path) && fk_cli_path_exists(p);
}

/* ---- entry ---------------------------------------------------------------- */

int fk_cmd_info(int argc, char **argv) {
    static const struct option longopts[] = {
        {"no-tensors", no_argument, NULL, 'N'}, {"tensors", no_argument, NULL, 'T'},
        {"filter", required_argument, NULL, 'f'}, {"json", no_argument, NULL, 'j'},
        {"system", no_argument, NULL, 's'},    {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    fk_info_opts o = {.json = false, .tensors = true, .system = false, .filter = NULL};
    fk_cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'N': o.tensors = false; break;
        case 'T': o.tensors = true; break;
        case 'f': o.filter = optarg; break;
        case 'j': o.json = true; break;
        case 's': o.system = true; break;
        case 'h': fk_info_usage(stdout); return FK_EXIT_OK;
        default: return fk_cli_getopt_failure("info", argv, c);
        }
    }
    int npos = argc - optind;
    if (o.system) {
        if (npos > 0) return fk_cli_usage("info", "--system takes no PATH (got '%s')", argv[optind]);
        return fk_info_system(&o);
    }
    if (npos == 0) return fk_cli_usage("info", "missing PATH");
    if (npos > 1) return fk_cli_usage("info", "expected one PATH, got %d ('%s' is extra)", npos, argv[optind + 1]);
    const char *path = argv[optind];

    fk_context *ctx = fk_context_create(1);
    if (!ctx) {
        fk_cli_error("out of memory");
        return FK_EXIT_ERROR;
    }
    cJSON *root = o.json ? cJSON_CreateObject() : NULL;
    int rc = FK_EXIT_OK;
    if (fk_info_is_pipeline(path)) {
        cJSON *parts = root ? cJSON_AddObjectToObject(root, "pipeline") : NULL;
        if (root) cJSON_AddStringToObject(root, "path", path);
        if (!o.json) printf("diffusers pipeline: %s\n", path);
        int found = 0;
        for (size_t i = 0; i < sizeof(fk_info_pipeline_parts) / sizeof(fk_info_pipeline_parts[0]) && rc == FK_EXIT_OK; i++) {
            char sub[4096];
            snprintf(sub, sizeof(sub), "%s/%s", path, fk_info_pipeline_parts[i]);
            if (!fk_cli_is_dir(sub)) continue;
            found++;
            fk_st_model *m = NULL;
            if (fk_st_model_open(ctx, sub, &m) != FK_OK) {
                rc = fk_cli_fail(ctx);
                break;
            }
            if (!o.json) printf("\n== %s ==\n", fk_info_pipeline_parts[i]);
            cJSON *part = parts ? cJSON_AddObjectToObject(parts, fk_info_pipeline_parts[i]) : NULL;
            rc = fk_info_model(ctx, m, &o, part);
            fk_st_model_close(m);
        }
        if (rc == FK_EXIT_OK && !found) {
            fk_cli_error("%s: diffusers pipeline folder without transformer/, text_encoder/, "
                         "text_encoder_2/ or vae/ sub-folders",
                         path);
            rc = FK_EXIT_ERROR;
        }
    } else {
        fk_st_model *m = NULL;
        if (fk_st_model_open(ctx, path, &m) != FK_OK) {
            rc = fk_cli_fail(ctx);
        } else {
            rc = fk_info_model(ctx, m, &o, root);
            fk_st_model_close(m);
        }
    }
    if (root && rc == FK_EXIT_OK) {
        char *s = cJSON_Print(root);
        if (!s) {
            fk_cli_error("out of memory printing JSON");
            rc = FK_EXIT_ERROR;
        } else {
            puts(s);
            free(s);
        }
    }
    cJSON_Delete(root);
    fk_context_free(ctx);
    return rc;
}
