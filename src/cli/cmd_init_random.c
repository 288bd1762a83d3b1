/* fluxkit init-random: write a random-weight checkpoint of a preset, with the
 * official key names and shapes, streamed one tensor at a time (a 24 GB
 * flux-dev is never held in memory) and written atomically.
 *
 * Initialization (the same rules as the reference fixtures, whose
 * __metadata__ "init" says gain 1.0, bias_std 0.02, norm_std 0.1):
 *   weight (linear / conv kernel)  N(0, 1/fan_in), i.e. std = 1/√fan_in: a
 *                                  layer maps unit-variance inputs to
 *                                  unit-variance outputs. Every FLUX block
 *                                  normalizes its input (LayerNorm before the
 *                                  modulation), so block inputs stay O(1); the
 *                                  residual stream grows only like √(blocks),
 *                                  and the final LayerNorm brings the output
 *                                  back to O(1). Same for T5/CLIP (pre-norm).
 *   bias                           N(0, 0.02²)
 *   norm scale                     1 + N(0, 0.1²) (not ones: a forgotten scale
 *                                  then changes results)
 *   norm bias                      N(0, 0.02²)
 *   embedding table                N(0, 1)
 * Values come from the Philox generator (core/rng.h) with key = seed and
 * stream = FNV-1a-64(tensor name), element i at offset i: any tensor (and any
 * slice of it) can be generated independently and in parallel, and a tensor's
 * values do not depend on the other tensors of the preset. They are computed
 * in f32 (double Box–Muller, rounded once) and then rounded (RNE) to the
 * output dtype; --round-bf16 makes f32 files hold bf16-representable values,
 * so the f32 and bf16 files of one seed hold the same numbers. */
#include "cli/cli_util.h"
#include "core/rng.h"
#include "model/clip.h"
#include "model/flux.h"
#include "model/t5.h"
#include "model/vae.h"

#include <cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef FK_HAVE_OPENMP
#include <omp.h>
#endif

#define FK_INIT_BIAS_STD 0.02f
#define FK_INIT_NORM_STD 0.1f
#define FK_INIT_EMBED_STD 1.0f

/* ---- preset table ----------------------------------------------------------
 * One line per preset: name, description, a function that enumerates the
 * preset's tensors (official names and shapes, with kind and fan_in) through
 * fk_param_fn, and one that returns the config JSON stored in __metadata__
 * "config" (malloc'd string, caller frees; NULL when out of memory).
 * Both receive the preset name, so one family serves several presets. */
typedef struct fk_init_preset {
    const char *name;
    const char *description;
    void (*enum_params)(const char *preset, fk_param_fn fn, void *user);
    char *(*config_json)(const char *preset);
} fk_init_preset;

static void fk_init_flux_enum(const char *preset, fk_param_fn fn, void *user) {
    fk_flux_config cfg;
    if (fk_flux_preset(preset, &cfg)) fk_flux_enum_params(&cfg, fn, user);
}

static char *fk_init_flux_config(const char *preset) {
    fk_flux_config cfg;
    if (!fk_flux_preset(preset, &cfg)) return NULL;
    cJSON *o = fk_cli_flux_config_json(&cfg);
    if (!o) return NULL;
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static const fk_init_preset fk_init_presets[] = {
    /* FLUX transformers (model/flux.h) */
    {"flux-mini", "Flux-mini transformer: 5 double + 10 single blocks, hidden 3072", fk_init_flux_enum,
     fk_init_flux_config},
    {"flux-dev", "FLUX.1-dev transformer: 19 double + 38 single blocks, guidance embedding",
     fk_init_flux_enum, fk_init_flux_config},
    {"flux-schnell", "FLUX.1-schnell transformer: 19 + 38 blocks, no guidance embedding",
     fk_init_flux_enum, fk_init_flux_config},
    {"tiny-flux", "tiny FLUX transformer for tests", fk_init_flux_enum, fk_init_flux_config},
    /* autoencoders (model/vae.h) */
    {"ae", "FLUX.1 autoencoder (ae.safetensors): ch 128, ch_mult 1,2,4,4, z 16", fk_vae_enum_preset,
     fk_vae_preset_config_json},
    {"tiny-ae", "tiny autoencoder for tests: ch 32, ch_mult 1,2, z 16", fk_vae_enum_preset,
     fk_vae_preset_config_json},
    /* text encoders (model/clip.h, model/t5.h) */
    {"clip-l", "CLIP-L text encoder (openai/clip-vit-large-patch14 text model)", fk_clip_enum_preset,
     fk_clip_preset_config_json},
    {"tiny-clip", "tiny CLIP text encoder for tests", fk_clip_enum_preset, fk_clip_preset_config_json},
    {"t5-xxl", "T5-v1.1-XXL encoder (google/t5-v1_1-xxl)", fk_t5_enum_preset, fk_t5_preset_config_json},
    {"tiny-t5", "tiny T5 v1.1 encoder for tests", fk_t5_enum_preset, fk_t5_preset_config_json},
};
#define FK_INIT_N_PRESETS ((int)(sizeof(fk_init_presets) / sizeof(fk_init_presets[0])))

static const fk_init_preset *fk_init_find_preset(const char *name) {
    for (int i = 0; i < FK_INIT_N_PRESETS; i++)
        if (!strcmp(fk_init_presets[i].name, name)) return &fk_init_presets[i];
    return NULL;
}

/* ---- collected tensor list ---------------------------------------------- */

typedef struct fk_init_param {
    fk_param_kind kind;
    int64_t fan_in;
    int64_t numel;
} fk_init_param;

typedef struct fk_init_list {
    fk_st_spec *specs;
    fk_init_param *params;
    char **names;
    int n, cap;
    bool oom;
    bool bad; /* a shape that does not fit a spec */
    fk_dtype dtype;
    int64_t total_params;
    uint64_t total_bytes;
} fk_init_list;

static void fk_init_collect(void *user, const char *name, int ndim, const int64_t *shape,
                            fk_param_kind kind, int64_t fan_in) {
    fk_init_list *l = user;
    if (l->oom || l->bad) return;
    if (ndim < 0 || ndim > FK_MAX_DIMS) {
        l->bad = true;
        return;
    }
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 256;
        fk_st_spec *s = realloc(l->specs, sizeof(*s) * (size_t)cap);
        if (s) l->specs = s;
        fk_init_param *p = realloc(l->params, sizeof(*p) * (size_t)cap);
        if (p) l->params = p;
        char **nm = realloc(l->names, sizeof(*nm) * (size_t)cap);
        if (nm) l->names = nm;
        if (!s || !p || !nm) {
            l->oom = true;
            return;
        }
        l->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy) {
        l->oom = true;
        return;
    }
    fk_st_spec *sp = &l->specs[l->n];
    memset(sp, 0, sizeof(*sp));
    sp->name = copy;
    /* f8_e4m3: only linear weights in fp8, embeddings / norms / biases in bf16 */
    sp->dtype = l->dtype == FK_F8_E4M3 && kind != FK_PARAM_WEIGHT ? FK_BF16 : l->dtype;
    sp->ndim = ndim;
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        sp->shape[d] = shape[d];
        numel *= shape[d];
    }
    l->names[l->n] = copy;
    l->params[l->n] = (fk_init_param){.kind = kind, .fan_in = fan_in, .numel = numel};
    l->total_params += numel;
    l->total_bytes += (uint64_t)numel * fk_dtype_size(sp->dtype);
    l->n++;
}

static void fk_init_list_free(fk_init_list *l) {
    for (int i = 0; i < l->n; i++) free(l->names[i]);
    free(l->names);
    free(l->specs);
    free(l->params);
    memset(l, 0, sizeof(*l));
}

/* ---- tensor generation ------------------------------------------------------- */

typedef struct fk_init_job {
    fk_context *ctx;
    const fk_init_list *list;
    uint64_t seed;
    bool round_bf16;
    int threads;
    fk_cli_progress progress;
    uint64_t bytes_done;
} fk_init_job;

/* mean and std of a parameter kind */
static void fk_init_dist(const fk_init_param *p, float *mean, float *std) {
    *mean = 0.0f;
    switch (p->kind) {
    case FK_PARAM_WEIGHT: *std = p->fan_in > 0 ? (float)(1.0 / sqrt((double)p->fan_in)) : 1.0f; break;
    case FK_PARAM_BIAS: *std = FK_INIT_BIAS_STD; break;
    case FK_PARAM_NORM_SCALE:
        *mean = 1.0f;
        *std = FK_INIT_NORM_STD;
        break;
    case FK_PARAM_NORM_BIAS: *std = FK_INIT_BIAS_STD; break;
    case FK_PARAM_EMBEDDING: *std = FK_INIT_EMBED_STD; break;
    default: *std = FK_INIT_BIAS_STD; break;
    }
}

#define FK_INIT_CHUNK 16384 /* elements per generation chunk (64 KiB of f32) */

static fk_status fk_init_fill(void *user, int index, void *buf, size_t nbytes) {
    fk_init_job *job = user;
    const fk_init_list *l = job->list;
    if (index < 0 || index >= l->n) return fk_error(job->ctx, FK_ERR_INTERNAL, "init-random: bad tensor index %d", index);
    const fk_init_param *p = &l->params[index];
    const fk_st_spec *sp = &l->specs[index];
    size_t esz = fk_dtype_size(sp->dtype);
    if ((uint64_t)p->numel * esz != nbytes)
        return fk_error(job->ctx, FK_ERR_INTERNAL, "init-random: tensor %s: writer asked for %zu bytes, expected %lld",
                        sp->name, nbytes, (long long)p->numel * (long long)esz);
    float mean, std;
    fk_init_dist(p, &mean, &std);
    const uint64_t stream = fk_rng_stream_from_name(sp->name);
    const uint64_t seed = job->seed;
    const int64_t numel = p->numel;
    const int64_t nchunks = (numel + FK_INIT_CHUNK - 1) / FK_INIT_CHUNK;
    const fk_dtype dt = sp->dtype;
    const bool round_bf16 = job->round_bf16;
    unsigned char *out = buf;
#ifdef FK_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(job->threads) if (nchunks > 4)
#endif
    for (int64_t c = 0; c < nchunks; c++) {
        float tmp[FK_INIT_CHUNK];
        int64_t i0 = c * FK_INIT_CHUNK;
        size_t cnt = (size_t)(numel - i0 < FK_INIT_CHUNK ? numel - i0 : FK_INIT_CHUNK);
        float *dst = dt == FK_F32 ? (float *)(out + (size_t)i0 * esz) : tmp;
        fk_rng_fill_normal(seed, stream, (uint64_t)i0, dst, cnt, mean, std);
        if (round_bf16)
            for (size_t k = 0; k < cnt; k++) dst[k] = fk_bf16_to_f32(fk_f32_to_bf16(dst[k]));
        if (dt != FK_F32) fk_convert_from_f32(out + (size_t)i0 * esz, dt, dst, cnt);
    }
    job->bytes_done += nbytes;
    fk_cli_progress_update(&job->progress, job->bytes_done, sp->name);
    return FK_OK;
}

/* ---- usage ------------------------------------------------------------------- */

static void fk_init_usage(FILE *f) {
    fprintf(f,
            "usage: fluxkit init-random --preset NAME -o FILE [--dtype f32|bf16|f16|f8_e4m3]\n"
            "                           [--seed N] [--force] [--round-bf16] [--threads N]\n"
            "\n"
            "Write a checkpoint of random weights with the official key names and shapes of a\n"
            "preset, streamed one tensor at a time, atomically (FILE appears only when complete).\n"
            "Weights ~ N(0, 1/fan_in), biases ~ N(0, 0.02^2), norm scales ~ 1 + N(0, 0.1^2),\n"
            "embeddings ~ N(0, 1); deterministic per (seed, tensor name).\n"
            "\n"
            "options:\n"
            "  --preset NAME    which model (see below)\n"
            "  -o, --out FILE   output .safetensors file\n"
            "  --dtype T        f32 (default), bf16, f16 or f8_e4m3 (linear weights in fp8,\n"
            "                   everything else bf16, like t5xxl_fp8_e4m3fn.safetensors)\n"
            "  --seed N         random seed, 0 .. 2^64-1 (default 0)\n"
            "  --force          overwrite FILE if it exists\n"
            "  --round-bf16     make f32 values bf16-representable (same numbers as --dtype bf16)\n"
            "  --threads N      generation threads (default: all CPUs)\n"
            "  -h, --help       this message\n"
            "\n"
            "presets:\n");
    for (int i = 0; i < FK_INIT_N_PRESETS; i++) {
        fk_init_list l;
        memset(&l, 0, sizeof(l));
        l.dtype = FK_F32;
        fk_init_presets[i].enum_params(fk_init_presets[i].name, fk_init_collect, &l);
        char pc[32];
        fprintf(f, "  %-14s %s (%s params)\n", fk_init_presets[i].name, fk_init_presets[i].description,
                l.n ? fk_cli_fmt_count(l.total_params, pc, sizeof(pc)) : "?");
        fk_init_list_free(&l);
    }
}

static void fk_init_preset_names(char *buf, size_t n) {
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; i < FK_INIT_N_PRESETS && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%s", i ? ", " : "", fk_init_presets[i].name);
}

/* ---- entry -------------------------------------------------------------------- */

int fk_cmd_init_random(int argc, char **argv) {
    static const struct option longopts[] = {
        {"preset", required_argument, NULL, 'p'}, {"dtype", required_argument, NULL, 'd'},
        {"seed", required_argument, NULL, 's'},   {"out", required_argument, NULL, 'o'},
        {"force", no_argument, NULL, 'F'},        {"round-bf16", no_argument, NULL, 'R'},
        {"threads", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *preset_name = NULL, *out = NULL, *dtype_name = "f32";
    uint64_t seed = 0;
    long threads = 0;
    bool force = false, round_bf16 = false;
    fk_cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":ho:", longopts, NULL)) != -1) {
        switch (c) {
        case 'p': preset_name = optarg; break;
        case 'd': dtype_name = optarg; break;
        case 's':
            if (!fk_cli_parse_u64("--seed", optarg, &seed)) return FK_EXIT_USAGE;
            break;
        case 'o': out = optarg; break;
        case 'F': force = true; break;
        case 'R': round_bf16 = true; break;
        case 't':
            if (!fk_cli_parse_int("--threads", optarg, 0, 4096, &threads)) return FK_EXIT_USAGE;
            break;
        case 'h': fk_init_usage(stdout); return FK_EXIT_OK;
        default: return fk_cli_getopt_failure("init-random", argv, c);
        }
    }
    if (optind < argc) return fk_cli_usage("init-random", "unexpected argument '%s'", argv[optind]);
    char names[512];
    fk_init_preset_names(names, sizeof(names));
    if (!preset_name) return fk_cli_usage("init-random", "missing --preset (one of: %s)", names);
    const fk_init_preset *preset = fk_init_find_preset(preset_name);
    if (!preset) return fk_cli_usage("init-random", "unknown --preset '%s' (one of: %s)", preset_name, names);
    if (!out || !out[0]) return fk_cli_usage("init-random", "missing -o/--out FILE");
    fk_dtype dtype;
    if (!strcmp(dtype_name, "f32") || !strcmp(dtype_name, "F32"))
        dtype = FK_F32;
    else if (!strcmp(dtype_name, "bf16") || !strcmp(dtype_name, "BF16"))
        dtype = FK_BF16;
    else if (!strcmp(dtype_name, "f16") || !strcmp(dtype_name, "F16"))
        dtype = FK_F16;
    else if (!strcmp(dtype_name, "f8_e4m3") || !strcmp(dtype_name, "F8_E4M3"))
        dtype = FK_F8_E4M3;
    else
        return fk_cli_usage("init-random", "--dtype '%s' is not one of f32, bf16, f16, f8_e4m3", dtype_name);

    if (!force && fk_cli_path_exists(out)) {
        fk_cli_error("%s already exists (use --force to overwrite)", out);
        return FK_EXIT_ERROR;
    }
    if (fk_cli_is_dir(out)) {
        fk_cli_error("%s is a directory, expected a file name for -o", out);
        return FK_EXIT_ERROR;
    }

    fk_init_list list;
    memset(&list, 0, sizeof(list));
    list.dtype = dtype;
    preset->enum_params(preset->name, fk_init_collect, &list);
    if (list.oom || list.bad || list.n == 0) {
        fk_cli_error("preset %s: %s", preset->name,
                     list.oom ? "out of memory listing its tensors"
                              : list.bad ? "a tensor has more than 8 dims" : "it has no tensors (not implemented yet?)");
        fk_init_list_free(&list);
        return FK_EXIT_ERROR;
    }

    char *config = preset->config_json(preset->name);
    char seed_s[32], dtype_s[16], gen_s[64], init_s[256];
    snprintf(seed_s, sizeof(seed_s), "%llu", (unsigned long long)seed);
    snprintf(dtype_s, sizeof(dtype_s), "%s", dtype == FK_F32 ? "f32" : dtype == FK_BF16 ? "bf16" : dtype == FK_F16 ? "f16" : "f8_e4m3");
    snprintf(gen_s, sizeof(gen_s), "fluxkit init-random %s", fk_version());
    snprintf(init_s, sizeof(init_s),
             "{\"weight_std\": \"1/sqrt(fan_in)\", \"bias_std\": %g, \"norm_std\": %g, "
             "\"embedding_std\": %g, \"round_bf16\": %s, \"rng\": \"philox4x32-10, "
             "stream = fnv1a64(name)\"}",
             (double)FK_INIT_BIAS_STD, (double)FK_INIT_NORM_STD, (double)FK_INIT_EMBED_STD,
             round_bf16 ? "true" : "false");
    const char *meta[] = {
        "format", "pt",  "preset", preset->name, "seed", seed_s, "dtype", dtype_s,
        "generator", gen_s, "init", init_s, "config", config ? config : "{}",
    };

    fk_context *ctx = fk_context_create((int)threads);
    if (!ctx) {
        free(config);
        fk_init_list_free(&list);
        fk_cli_error("out of memory");
        return FK_EXIT_ERROR;
    }
    fk_init_job job;
    memset(&job, 0, sizeof(job));
    job.ctx = ctx;
    job.list = &list;
    job.seed = seed;
    job.round_bf16 = round_bf16;
    job.threads = fk_context_threads(ctx);
    uint64_t total_bytes = list.total_bytes;
    fk_cli_progress_begin(&job.progress, "init-random", total_bytes);
    double t0 = fk_time();
    fk_status st = fk_st_write(ctx, out, list.specs, list.n, meta, (int)(sizeof(meta) / sizeof(meta[0]) / 2),
                               fk_init_fill, &job);
    double dt = fk_time() - t0;
    fk_cli_progress_end(&job.progress);
    int rc = FK_EXIT_OK;
    if (st != FK_OK) {
        rc = fk_cli_fail(ctx);
    } else {
        char pc[32], bc[32];
        printf("wrote %s: %s, %d tensors, %s parameters, %s %s, seed %s, %.1f s\n", out, preset->name,
               list.n, fk_cli_fmt_count(list.total_params, pc, sizeof(pc)),
               fk_cli_fmt_bytes(total_bytes, bc, sizeof(bc)), dtype_s, seed_s, dt);
    }
    fk_context_free(ctx);
    free(config);
    fk_init_list_free(&list);
    return rc;
}
