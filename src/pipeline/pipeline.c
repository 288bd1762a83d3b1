/* pipeline: text-to-image / image-to-image orchestration with memory staging.
 * See pipeline.h for the data flow and the reference behaviours kept. */
#include "pipeline/pipeline.h"
#include "backend/backend_open.h"
#include "backend/cpu/cpu.h"

#include "core/torch_rng.h"
#include "model/clip.h"
#include "model/t5.h"
#include "model/vae.h"
#include "pipeline/sampling.h"
#include "text/clip_tokenizer.h"
#include "text/t5_tokenizer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- small helpers -------------------------------------------------------------- */

static bool fk_pl_exists(const char *path) {
    struct stat sb;
    return path && stat(path, &sb) == 0;
}

static bool fk_pl_is_dir(const char *path) {
    struct stat sb;
    return path && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* "<a>/<b>/<c>" (empty parts skipped), malloc'ed. */
static char *fk_pl_join(const char *a, const char *b, const char *c) {
    size_t n = strlen(a) + (b ? strlen(b) : 0) + (c ? strlen(c) : 0) + 3;
    char *p = malloc(n);
    if (!p) return NULL;
    snprintf(p, n, "%s%s%s%s%s", a, b && b[0] ? "/" : "", b && b[0] ? b : "", c && c[0] ? "/" : "",
             c && c[0] ? c : "");
    return p;
}

static bool fk_pl_exists_join(const char *dir, const char *name) {
    char *p = fk_pl_join(dir, name, NULL);
    bool ok = p && fk_pl_exists(p);
    free(p);
    return ok;
}

static bool fk_pl_is_dir_join(const char *dir, const char *name) {
    char *p = fk_pl_join(dir, name, NULL);
    bool ok = p && fk_pl_is_dir(p);
    free(p);
    return ok;
}

/* Re-prefix the context's error message: "<prefix><old message><suffix>". */
static fk_status fk_pl_wrap(fk_context *ctx, fk_status st, const char *prefix, const char *suffix) {
    char old[FK_ERRMSG_MAX];
    snprintf(old, sizeof(old), "%s", fk_context_error(ctx));
    return fk_error(ctx, st, "%s%s%s", prefix ? prefix : "", old, suffix ? suffix : "");
}

/* Bytes of the files at path: a file's size, or the sum of the *.safetensors
 * in a folder. */
static uint64_t fk_pl_path_bytes(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) return 0;
    if (!S_ISDIR(sb.st_mode)) return (uint64_t)sb.st_size;
    uint64_t total = 0;
    DIR *d = opendir(path);
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 12 || strcmp(e->d_name + l - 12, ".safetensors")) continue;
        char *p = fk_pl_join(path, e->d_name, NULL);
        if (p && stat(p, &sb) == 0) total += (uint64_t)sb.st_size;
        free(p);
    }
    closedir(d);
    return total;
}

/* ---- model files ----------------------------------------------------------------- */

typedef struct fk_pl_role {
    const char *what;          /* "FLUX transformer" */
    const char *option;        /* "--model" */
    const char *usual;         /* usual file names, for messages */
    const char *const *names;  /* file names to look for */
    const char *const *subdirs;
    bool unique;               /* several matches is an error */
} fk_pl_role;

static const char *const fk_pl_flux_names[] = {
    "flux-mini.safetensors", "flux1-dev.safetensors", "flux1-schnell.safetensors", "flux-dev.safetensors",
    "flux-schnell.safetensors", "flux1-krea-dev.safetensors", "flux1-dev-fp8.safetensors",
    "flux1-schnell-fp8.safetensors", NULL};
static const char *const fk_pl_flux_dirs[] = {"", "diffusion_models", "unet", "checkpoints", NULL};
static const char *const fk_pl_ae_names[] = {"ae.safetensors", "flux-ae.safetensors", "flux_ae.safetensors",
                                             "flux1-ae.safetensors", NULL};
static const char *const fk_pl_ae_dirs[] = {"", "vae", NULL};
static const char *const fk_pl_clip_names[] = {"clip_l.safetensors", "clip-l.safetensors", "clip_l_fp16.safetensors",
                                               NULL};
static const char *const fk_pl_t5_names[] = {"t5xxl_fp16.safetensors", "t5xxl_fp8_e4m3fn.safetensors",
                                             "t5xxl_fp8_e4m3fn_scaled.safetensors", "t5xxl_fp32.safetensors",
                                             "t5xxl.safetensors", NULL};
static const char *const fk_pl_text_dirs[] = {"", "text_encoders", "clip", NULL};

static const fk_pl_role fk_pl_roles[4] = {
    {"FLUX transformer", "--model",
     "flux-mini.safetensors, flux1-dev.safetensors or flux1-schnell.safetensors, or a diffusers folder with "
     "transformer/",
     fk_pl_flux_names, fk_pl_flux_dirs, true},
    {"autoencoder", "--ae", "ae.safetensors (the FLUX.1 autoencoder, in the black-forest-labs/FLUX.1-schnell repository)",
     fk_pl_ae_names, fk_pl_ae_dirs, false},
    {"CLIP-L text encoder", "--clip", "clip_l.safetensors (openai/clip-vit-large-patch14's text model, ComfyUI name)",
     fk_pl_clip_names, fk_pl_text_dirs, false},
    {"T5-XXL text encoder", "--t5",
     "t5xxl_fp16.safetensors or t5xxl_fp8_e4m3fn.safetensors (google/t5-v1_1-xxl's encoder, ComfyUI names)",
     fk_pl_t5_names, fk_pl_text_dirs, false},
};

/* Search dir for role r; *out malloc'ed path or NULL. FK_ERR_ARG when a unique
 * role is ambiguous. */
static fk_status fk_pl_search(fk_context *ctx, const char *dir, const fk_pl_role *r, char **out) {
    *out = NULL;
    for (int s = 0; r->subdirs[s]; s++) {
        for (int i = 0; r->names[i]; i++) {
            char *p = fk_pl_join(dir, r->subdirs[s], r->names[i]);
            if (!p) return fk_error(ctx, FK_ERR_NOMEM, "out of memory");
            if (!fk_pl_exists(p)) {
                free(p);
                continue;
            }
            if (!*out) {
                *out = p;
                if (!r->unique) return FK_OK;
            } else {
                fk_status st = fk_error(ctx, FK_ERR_ARG,
                                        "%s: several %ss (%s and %s): choose one with %s FILE", dir, r->what, *out,
                                        p, r->option);
                free(p);
                free(*out);
                *out = NULL;
                return st;
            }
        }
    }
    return FK_OK;
}

void fk_pipeline_files_free(fk_pipeline_files *f) {
    if (!f) return;
    free(f->model);
    free(f->ae);
    free(f->clip);
    free(f->t5);
    free(f->clip_tokenizer);
    free(f->t5_tokenizer);
    memset(f, 0, sizeof(*f));
}

fk_status fk_pipeline_files_resolve(fk_context *ctx, const char *models_dir, const char *model, const char *ae,
                                    const char *clip, const char *t5, fk_pipeline_files *out) {
    memset(out, 0, sizeof(*out));
    const char *given[4] = {model, ae, clip, t5};
    char **slot[4] = {&out->model, &out->ae, &out->clip, &out->t5};
    if (models_dir && models_dir[0] && !fk_pl_is_dir(models_dir))
        return fk_error(ctx, FK_ERR_IO, "--models %s: not a folder", models_dir);
    bool diffusers = models_dir && models_dir[0] &&
                     (fk_pl_exists_join(models_dir, "model_index.json") ||
                      fk_pl_is_dir_join(models_dir, "transformer"));
    static const char *const diff_sub[4] = {"transformer", "vae", "text_encoder", "text_encoder_2"};
    fk_status st = FK_OK;
    for (int r = 0; r < 4 && st == FK_OK; r++) {
        const fk_pl_role *role = &fk_pl_roles[r];
        if (given[r] && given[r][0]) {
            if (!fk_pl_exists(given[r])) {
                st = fk_error(ctx, FK_ERR_IO, "%s %s: no such file or folder (expected the %s, usually %s)",
                              role->option, given[r], role->what, role->usual);
                break;
            }
            *slot[r] = strdup(given[r]);
        } else if (models_dir && models_dir[0] && diffusers) {
            char *p = fk_pl_join(models_dir, diff_sub[r], NULL);
            if (p && !fk_pl_is_dir(p)) {
                st = fk_error(ctx, FK_ERR_IO, "%s: diffusers folder without %s/ (the %s; or pass %s FILE, usually %s)",
                              models_dir, diff_sub[r], role->what, role->option, role->usual);
                free(p);
                break;
            }
            *slot[r] = p;
        } else if (models_dir && models_dir[0]) {
            st = fk_pl_search(ctx, models_dir, role, slot[r]);
            if (st == FK_OK && !*slot[r])
                st = fk_error(ctx, FK_ERR_IO, "%s: no %s found: expected %s; or pass %s FILE", models_dir, role->what,
                              role->usual, role->option);
            if (st != FK_OK) break;
        } else {
            st = fk_error(ctx, FK_ERR_ARG, "missing the %s: pass %s FILE (usually %s) or --models DIR", role->what,
                          role->option, role->usual);
            break;
        }
        if (!*slot[r]) st = fk_error(ctx, FK_ERR_NOMEM, "out of memory");
    }
    if (st == FK_OK && diffusers) {
        char *ct = fk_pl_join(models_dir, "tokenizer", "vocab.json");
        char *tt = fk_pl_join(models_dir, "tokenizer_2", "spiece.model");
        if (ct && fk_pl_exists(ct)) out->clip_tokenizer = fk_pl_join(models_dir, "tokenizer", NULL);
        if (tt && fk_pl_exists(tt)) out->t5_tokenizer = fk_pl_join(models_dir, "tokenizer_2", NULL);
        free(ct);
        free(tt);
    }
    if (st != FK_OK) fk_pipeline_files_free(out);
    return st;
}

/* ---- model identity ----------------------------------------------------------------- */

#define FK_FNV_OFFSET UINT64_C(0xcbf29ce484222325)
#define FK_FNV_PRIME UINT64_C(0x100000001b3)

static uint64_t fk_pl_fnv1a(uint64_t h, const void *data, size_t n) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= FK_FNV_PRIME;
    }
    return h;
}

/* Hash one safetensors file's header (8-byte length + JSON) and size into h. */
static fk_status fk_pl_hash_file(fk_context *ctx, const char *path, uint64_t *h) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fk_error(ctx, FK_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    uint8_t len8[8];
    fk_status st = FK_OK;
    if (fstat(fd, &sb) != 0 || pread(fd, len8, 8, 0) != 8) {
        close(fd);
        return fk_error(ctx, FK_ERR_IO, "%s: cannot read the safetensors header", path);
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | len8[i];
    if (n > FK_ST_MAX_HEADER || n + 8 > (uint64_t)sb.st_size) {
        close(fd);
        return fk_error(ctx, FK_ERR_FORMAT, "%s: bad safetensors header length", path);
    }
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        close(fd);
        return fk_error(ctx, FK_ERR_NOMEM, "%s: out of memory hashing the header", path);
    }
    if (pread(fd, buf, n, 8) != (ssize_t)n) st = fk_error(ctx, FK_ERR_IO, "%s: short read of the header", path);
    if (st == FK_OK) {
        uint64_t size = (uint64_t)sb.st_size;
        *h = fk_pl_fnv1a(*h, len8, 8);
        *h = fk_pl_fnv1a(*h, buf, n);
        *h = fk_pl_fnv1a(*h, &size, sizeof(size));
    }
    free(buf);
    close(fd);
    return st;
}

fk_status fk_pipeline_model_hash(fk_context *ctx, const char *path, char hex[13]) {
    hex[0] = '\0';
    fk_st_model *m = NULL;
    fk_status st = fk_st_model_open(ctx, path, &m);
    if (st != FK_OK) return st;
    uint64_t h = FK_FNV_OFFSET;
    for (int i = 0; i < fk_st_model_nfiles(m) && st == FK_OK; i++)
        st = fk_pl_hash_file(ctx, fk_st_path(fk_st_model_file(m, i)), &h);
    fk_st_model_close(m);
    if (st == FK_OK) snprintf(hex, 13, "%012llx", (unsigned long long)(h >> 16));
    return st;
}

fk_status fk_pipeline_model_info_get(fk_context *ctx, const char *model_path, fk_pipeline_model_info *info) {
    memset(info, 0, sizeof(*info));
    fk_st_model *m = NULL;
    fk_status st = fk_st_model_open(ctx, model_path, &m);
    if (st != FK_OK) return fk_pl_wrap(ctx, st, "--model: ", " (expected a FLUX transformer, e.g. flux1-dev.safetensors)");
    st = fk_flux_config_infer(ctx, m, &info->cfg, NULL);
    fk_st_model_close(m);
    if (st != FK_OK)
        return fk_pl_wrap(ctx, st, "--model: ",
                          " (expected a FLUX transformer such as flux-mini.safetensors, flux1-dev.safetensors or "
                          "flux1-schnell.safetensors)");
    info->name = fk_flux_config_name(&info->cfg);
    const bool distilled = info->cfg.guidance_embed; /* dev, mini: guidance embedding */
    info->default_steps = distilled ? 50 : 4;
    info->default_shift = distilled;
    info->default_t5_len = distilled ? FK_T5_MAX_LENGTH_DEV : FK_T5_MAX_LENGTH_SCHNELL;
    info->default_guidance = 3.5f;
    return FK_OK;
}

/* ---- tensors and images ---------------------------------------------------------------- */

void fk_pipeline_pack(const float *latent, int64_t c, int64_t h, int64_t w, float *tokens) {
    const int64_t hh = h / 2, ww = w / 2, f = c * 4;
    for (int64_t i = 0; i < hh; i++)
        for (int64_t j = 0; j < ww; j++) {
            float *t = tokens + (i * ww + j) * f; /* (f) */
            for (int64_t ch = 0; ch < c; ch++)
                for (int64_t ph = 0; ph < 2; ph++)
                    for (int64_t pw = 0; pw < 2; pw++)
                        t[ch * 4 + ph * 2 + pw] = latent[(ch * h + 2 * i + ph) * w + 2 * j + pw];
        }
}

void fk_pipeline_unpack(const float *tokens, int64_t c, int64_t h, int64_t w, float *latent) {
    const int64_t hh = h / 2, ww = w / 2, f = c * 4;
    for (int64_t i = 0; i < hh; i++)
        for (int64_t j = 0; j < ww; j++) {
            const float *t = tokens + (i * ww + j) * f;
            for (int64_t ch = 0; ch < c; ch++)
                for (int64_t ph = 0; ph < 2; ph++)
                    for (int64_t pw = 0; pw < 2; pw++)
                        latent[(ch * h + 2 * i + ph) * w + 2 * j + pw] = t[ch * 4 + ph * 2 + pw];
        }
}

void fk_pipeline_img_ids(int64_t h, int64_t w, float *ids) {
    const int64_t hh = h / 2, ww = w / 2;
    for (int64_t i = 0; i < hh; i++)
        for (int64_t j = 0; j < ww; j++) {
            float *r = ids + (i * ww + j) * 3;
            r[0] = 0.0f;
            r[1] = (float)i;
            r[2] = (float)j;
        }
}

int fk_pipeline_img2img_start(int steps, double strength) {
    /* diffusers get_timesteps, in Python floats: init = min(n·strength, n),
     * t_start = int(max(n − init, 0)) (truncation) */
    double init = (double)steps * strength;
    if (init > steps) init = steps;
    double rest = (double)steps - init;
    if (rest < 0) rest = 0;
    return (int)rest;
}

fk_status fk_pipeline_to_image(fk_context *ctx, const fk_tensor *x, fk_image *out) {
    memset(out, 0, sizeof(*out));
    if (x->dtype != FK_F32 || x->ndim != 4 || x->shape[0] != 1 || x->shape[1] != 3)
        return fk_error(ctx, FK_ERR_SHAPE, "decoded image: expected an f32 (1, 3, H, W) tensor");
    const int64_t H = x->shape[2], W = x->shape[3];
    fk_status st = fk_image_alloc(ctx, out, (int)W, (int)H);
    if (st != FK_OK) return st;
    const float *p = x->data; /* (3, H, W) */
    for (int64_t c = 0; c < 3; c++)
        for (int64_t i = 0; i < H * W; i++) {
            float v = p[c * H * W + i];
            uint8_t u = 0;
            if (v == v) { /* NaN → 0 */
                v = v < -1.0f ? -1.0f : v > 1.0f ? 1.0f : v;
                float s = 127.5f * (v + 1.0f); /* f32: (x + 1.0) then ·127.5 */
                u = (uint8_t)s;                 /* truncation, s in [0, 255] */
            }
            out->data[i * 3 + c] = u;
        }
    return FK_OK;
}

fk_status fk_pipeline_from_image(fk_context *ctx, const fk_image *img, fk_tensor *out) {
    int64_t shape[4] = {1, 3, img->height, img->width};
    fk_status st = fk_tensor_new(ctx, out, FK_F32, 4, shape, "init image");
    if (st != FK_OK) return st;
    float *p = out->data;
    const int64_t HW = (int64_t)img->height * img->width;
    for (int64_t i = 0; i < HW; i++)
        for (int c = 0; c < 3; c++) p[c * HW + i] = (float)img->data[i * 3 + c] / 127.5f - 1.0f;
    return FK_OK;
}

void fk_pipeline_params_init(fk_pipeline_params *p) {
    memset(p, 0, sizeof(*p));
    p->guidance = NAN;
    p->cfg_scale = 1.0f;
    p->shift = -1;
    p->strength = 0.75;
    p->vae_tile = -1;
    p->bf16_text = true;
    p->precision = FK_PREC_F32;
    p->weight_cache = -1;
}

/* ---- session ------------------------------------------------------------------------ */

struct fk_pipeline_session {
    const fk_pipeline_files *files;
    fk_backend *be;
    bool keep; /* models (and a device backend's weight copies) kept between phases and runs */
    fk_t5_tokenizer *t5tok;
    fk_clip_tokenizer *cliptok;
    fk_t5 *t5;
    fk_clip *clip;
    fk_flux_model *flux;
    fk_vae *vae;
};

fk_status fk_pipeline_session_open(fk_context *ctx, const fk_pipeline_files *files, const char *device,
                                   int precision, bool keep_models, fk_pipeline_session **out) {
    *out = NULL;
    if (!files || !files->model || !files->ae || !files->clip || !files->t5)
        return fk_error(ctx, FK_ERR_ARG, "pipeline: model files not resolved");
    fk_pipeline_session *s = calloc(1, sizeof(*s));
    if (!s) return fk_error(ctx, FK_ERR_NOMEM, "out of memory");
    s->files = files;
    s->keep = keep_models;
    fk_status st = fk_backend_open(ctx, device, fk_context_threads(ctx),
                                   precision == FK_PREC_BF16 ? FK_PREC_BF16 : FK_PREC_F32, &s->be);
    if (st != FK_OK) {
        free(s);
        return st;
    }
    *out = s;
    return FK_OK;
}

void fk_pipeline_session_free(fk_pipeline_session *s) {
    if (!s) return;
    fk_t5_tokenizer_free(s->t5tok);
    fk_clip_tokenizer_free(s->cliptok);
    fk_t5_free(s->t5);
    fk_clip_free(s->clip);
    fk_flux_free(s->flux);
    fk_vae_free(s->vae);
    if (s->be->uncache_weights) s->be->uncache_weights(s->be);
    fk_backend_close(s->be);
    free(s);
}

const fk_backend *fk_pipeline_session_backend(const fk_pipeline_session *s) { return s->be; }

/* ---- one run ------------------------------------------------------------------------ */

typedef struct fk_pl_run {
    fk_context *ctx;
    const fk_pipeline_files *files;
    const fk_pipeline_params *p;
    fk_pipeline_report *rep;
    fk_pipeline_session *sess;
    fk_backend *be;
    bool true_cfg;
    int64_t lh, lw;          /* latent size */
    int64_t n_img, n_txt;
    fk_tensor txt, vec;      /* (n_txt, context_dim), (vec_dim) */
    fk_tensor neg_txt, neg_vec;
    fk_tensor z;             /* img2img: encoded init image (1, 16, lh, lw) */
    fk_tensor latent;        /* final (1, 16, lh, lw) */
    float *ts;               /* (steps + 1) */
} fk_pl_run;

static void fk_pl_progress(fk_pl_run *r, const char *phase, int done, int total) {
    if (r->p->progress) r->p->progress(r->p->progress_user, phase, done, total);
}

static void fk_pl_dbg(fk_pl_run *r, const char *name, const fk_tensor *t) {
    if (r->p->dbg) r->p->dbg(r->p->dbg_user, name, t);
}

static void fk_pl_round_bf16(fk_tensor *t) {
    float *x = t->data;
    for (int64_t i = 0; i < fk_tensor_numel(t); i++) x[i] = fk_bf16_to_f32(fk_f32_to_bf16(x[i]));
}

/* At the end of each phase: the backend's scratch goes too (a device
 * backend's converted operands, attention scores, im2col chunks), so the
 * device peak is the largest phase's working memory, not the sum of all. */
static void fk_pl_release_scratch(fk_pl_run *r) {
    if (r->be->release_scratch) r->be->release_scratch(r->be);
}

/* Text encoders: T5 then CLIP (as BFL's prepare), each released after use
 * (a keep_models session keeps their weights, not their activations). */
static fk_status fk_pl_text(fk_pl_run *r) {
    fk_context *ctx = r->ctx;
    const fk_pipeline_params *p = r->p;
    const fk_flux_config *cfg = &r->rep->model.cfg;
    const int L = r->rep->t5_len;
    const char *prompts[2] = {p->prompt, p->negative_prompt ? p->negative_prompt : ""};
    const int n_prompts = r->true_cfg ? 2 : 1;
    int64_t *t5_ids = calloc((size_t)L * 2, sizeof(int64_t));
    int64_t clip_ids[2][FK_CLIP_MAX_LENGTH];
    fk_t5_tokenizer *t5tok = NULL;
    fk_clip_tokenizer *cliptok = NULL;
    fk_t5 *t5 = NULL;
    fk_clip *clip = NULL;
    fk_tensor hidden = {0};
    fk_status st = FK_OK;
    double t0 = fk_time();
    if (!t5_ids) return fk_error(ctx, FK_ERR_NOMEM, "out of memory for token ids");
    fk_pl_progress(r, "text", 0, 2);

    /* tokenize both prompts with both tokenizers (kept by a keep_models session) */
    t5tok = r->sess->t5tok;
    cliptok = r->sess->cliptok;
    if (!t5tok)
        st = r->files->t5_tokenizer ? fk_t5_tokenizer_load_dir(ctx, r->files->t5_tokenizer, &t5tok)
                                    : fk_t5_tokenizer_load_default(ctx, &t5tok);
    if (st == FK_OK && !cliptok)
        st = r->files->clip_tokenizer ? fk_clip_tokenizer_load_dir(ctx, r->files->clip_tokenizer, &cliptok)
                                      : fk_clip_tokenizer_load_default(ctx, &cliptok);
    for (int i = 0; i < n_prompts && st == FK_OK; i++) {
        st = fk_t5_tokenizer_encode(ctx, t5tok, prompts[i], strlen(prompts[i]), L, t5_ids + (size_t)i * L, NULL);
        if (st == FK_OK)
            st = fk_clip_tokenizer_encode(ctx, cliptok, prompts[i], strlen(prompts[i]), FK_CLIP_MAX_LENGTH,
                                          clip_ids[i], NULL);
        if (st != FK_OK) st = fk_pl_wrap(ctx, st, i ? "negative prompt: " : "prompt: ", NULL);
    }
    if (r->sess->keep) {
        r->sess->t5tok = t5tok;
        r->sess->cliptok = cliptok;
    } else {
        fk_t5_tokenizer_free(t5tok);
        fk_clip_tokenizer_free(cliptok);
    }
    if (st == FK_OK) {
        fk_tensor ti = fk_view1(FK_I64, t5_ids, L), ci = fk_view1(FK_I64, clip_ids[0], FK_CLIP_MAX_LENGTH);
        fk_pl_dbg(r, "t5_ids", &ti);
        fk_pl_dbg(r, "clip_ids", &ci);
    }

    /* T5 → txt */
    t5 = r->sess->t5;
    if (st == FK_OK && !t5 && (st = fk_t5_load(ctx, r->be, r->files->t5, &t5)) != FK_OK)
        st = fk_pl_wrap(ctx, st, "--t5: ", " (expected the T5-XXL text encoder, usually t5xxl_fp16.safetensors)");
    if (st == FK_OK && fk_t5_get_config(t5)->d_model != cfg->context_dim)
        st = fk_error(ctx, FK_ERR_SHAPE, "--t5 %s: T5 width (d_model) %d does not match the transformer's context "
                      "width %d (a FLUX.1 transformer takes T5-XXL, d_model 4096)",
                      r->files->t5, fk_t5_get_config(t5)->d_model, cfg->context_dim);
    for (int i = 0; i < n_prompts && st == FK_OK; i++) {
        fk_tensor *dst = i ? &r->neg_txt : &r->txt;
        int64_t shape[2] = {L, cfg->context_dim};
        st = fk_tensor_new(ctx, dst, FK_F32, 2, shape, "T5 output");
        if (st == FK_OK) st = fk_t5_encode(ctx, t5, t5_ids + (size_t)i * L, L, dst);
        if (st == FK_OK && p->bf16_text) fk_pl_round_bf16(dst);
    }
    if (t5) {
        r->rep->t5_weight_bytes = fk_t5_weight_bytes(t5);
        r->rep->t5_buffer_bytes = fk_t5_buffer_bytes(t5);
        fk_log(ctx, FK_LOG_INFO, "T5: %d positions, weights %.1f MB (mapped), buffers %.1f MB; released", L,
               (double)r->rep->t5_weight_bytes / 1e6, (double)r->rep->t5_buffer_bytes / 1e6);
    }
    if (r->sess->keep && st == FK_OK) {
        r->sess->t5 = t5; /* weights kept, activations not (the bias is re-uploaded from a host copy) */
        fk_t5_release_buffers(t5);
    } else {
        if (t5 == r->sess->t5) r->sess->t5 = NULL;
        fk_t5_free(t5);
        /* device backends keep copies of the weights they read: drop T5's
         * before CLIP (and the transformer) load; a freed model's addresses
         * may be reused */
        if (r->be->uncache_weights) r->be->uncache_weights(r->be);
    }
    fk_pl_progress(r, "text", 1, 2);

    /* CLIP → vec (pooled) */
    clip = r->sess->clip;
    if (st == FK_OK && !clip && (st = fk_clip_load(ctx, r->be, r->files->clip, &clip)) != FK_OK)
        st = fk_pl_wrap(ctx, st, "--clip: ", " (expected the CLIP-L text encoder, usually clip_l.safetensors)");
    if (st == FK_OK) {
        const fk_clip_config *cc = fk_clip_get_config(clip);
        if (cc->width != cfg->vec_dim)
            st = fk_error(ctx, FK_ERR_SHAPE, "--clip %s: CLIP width %d does not match the transformer's vector width "
                          "%d (a FLUX.1 transformer takes CLIP-L, width 768)", r->files->clip, cc->width, cfg->vec_dim);
        else if (cc->max_positions < FK_CLIP_MAX_LENGTH)
            st = fk_error(ctx, FK_ERR_SHAPE, "--clip %s: CLIP has %d positions, FLUX needs %d", r->files->clip,
                          cc->max_positions, FK_CLIP_MAX_LENGTH);
    }
    if (st == FK_OK) {
        int64_t shape[2] = {FK_CLIP_MAX_LENGTH, cfg->vec_dim};
        st = fk_tensor_new(ctx, &hidden, FK_F32, 2, shape, "CLIP hidden states");
    }
    for (int i = 0; i < n_prompts && st == FK_OK; i++) {
        fk_tensor *dst = i ? &r->neg_vec : &r->vec;
        int64_t shape[1] = {cfg->vec_dim};
        st = fk_tensor_new(ctx, dst, FK_F32, 1, shape, "CLIP pooled output");
        if (st == FK_OK) st = fk_clip_encode(ctx, clip, clip_ids[i], FK_CLIP_MAX_LENGTH, &hidden, dst);
        if (st == FK_OK && p->bf16_text) fk_pl_round_bf16(dst);
    }
    if (clip) {
        r->rep->clip_weight_bytes = fk_clip_weight_bytes(clip);
        fk_log(ctx, FK_LOG_INFO, "CLIP: weights %.1f MB (mapped), buffers %.1f MB; released",
               (double)r->rep->clip_weight_bytes / 1e6, (double)fk_clip_buffer_bytes(clip) / 1e6);
    }
    if (r->sess->keep && st == FK_OK) {
        r->sess->clip = clip;
        fk_clip_release_buffers(clip);
    } else {
        if (clip == r->sess->clip) r->sess->clip = NULL;
        fk_clip_free(clip);
        if (r->be->uncache_weights) r->be->uncache_weights(r->be);
    }
    fk_tensor_free(&hidden);
    free(t5_ids);
    if (st == FK_OK) {
        fk_tensor v = fk_view2(FK_F32, r->vec.data, 1, cfg->vec_dim);
        fk_tensor t = fk_view3(FK_F32, r->txt.data, 1, L, cfg->context_dim);
        fk_pl_dbg(r, "vec", &v);
        fk_pl_dbg(r, "txt", &t);
        if (r->true_cfg) {
            v.data = r->neg_vec.data;
            t.data = r->neg_txt.data;
            fk_pl_dbg(r, "neg_vec", &v);
            fk_pl_dbg(r, "neg_txt", &t);
        }
    }
    fk_pl_release_scratch(r);
    fk_pl_progress(r, "text", 2, 2);
    r->rep->t_text = fk_time() - t0;
    r->rep->rss_after_text = fk_current_rss();
    r->rep->device_after_text = fk_backend_device_bytes(r->be);
    return st;
}

/* Autoencoder decode options: untiled up to 128×128 latents (1024² pixels:
 * the reference computation, 2.15 GB of activations, and twice as fast as
 * tiles of 64 since the decoder reuses one planned block), tiled above, or
 * as requested. */
#define FK_PL_VAE_UNTILED_MAX 128
static void fk_pl_vae_tiling(const fk_pipeline_params *p, int64_t lh, int64_t lw, fk_vae_opts *o) {
    fk_vae_opts_init(o);
    int tile = p->vae_tile;
    if (tile < 0)
        tile = (lh > FK_PL_VAE_UNTILED_MAX || lw > FK_PL_VAE_UNTILED_MAX) ? FK_VAE_DEFAULT_TILE : 0;
    o->tile = tile;
    o->overlap = tile >= 4 * FK_VAE_DEFAULT_OVERLAP ? FK_VAE_DEFAULT_OVERLAP : -1; /* −1: tile / 4 */
}

static fk_status fk_pl_open_vae(fk_pl_run *r, fk_vae **v) {
    fk_context *ctx = r->ctx;
    if (r->sess->vae) { /* checked when it was opened */
        *v = r->sess->vae;
        return FK_OK;
    }
    fk_status st = fk_vae_open(ctx, r->files->ae, v);
    if (st != FK_OK)
        return fk_pl_wrap(ctx, st, "--ae: ", " (expected the FLUX autoencoder, usually ae.safetensors)");
    const fk_vae_config *vc = fk_vae_get_config(*v);
    if (vc->z_channels * 4 != r->rep->model.cfg.in_channels) {
        st = fk_error(ctx, FK_ERR_SHAPE, "--ae %s: autoencoder has %d latent channels, the transformer takes %d "
                      "(= 4 x 16 for FLUX.1's ae.safetensors)", r->files->ae, vc->z_channels,
                      r->rep->model.cfg.in_channels);
        fk_vae_free(*v);
        *v = NULL;
    }
    if (st == FK_OK && r->sess->keep) r->sess->vae = *v;
    return st;
}

/* Release an autoencoder from fk_pl_open_vae (kept by a keep_models session). */
static void fk_pl_close_vae(fk_pl_run *r, fk_vae *v) {
    if (v && v != r->sess->vae) fk_vae_free(v);
}

/* img2img: encode the init image (resized to the latent size × downscale). */
static fk_status fk_pl_encode_init(fk_pl_run *r, fk_vae *v) {
    fk_context *ctx = r->ctx;
    const fk_vae_config *vc = fk_vae_get_config(v);
    double t0 = fk_time();
    if (!vc->has_encoder)
        return fk_error(ctx, FK_ERR_FORMAT, "--ae %s: the autoencoder has no encoder (needed for --init-image)",
                        r->files->ae);
    const int ds = fk_vae_downscale(vc);
    const int tw = (int)(r->lw * ds), th = (int)(r->lh * ds);
    const fk_image *src = r->p->init_image;
    fk_image resized = {0};
    fk_status st = FK_OK;
    fk_pl_progress(r, "encode", 0, 1);
    if (src->width != tw || src->height != th) {
        fk_log(ctx, FK_LOG_INFO, "init image %dx%d resized to %dx%d (Lanczos)", src->width, src->height, tw, th);
        st = fk_image_resize(ctx, src, tw, th, &resized);
        src = &resized;
    }
    fk_tensor x = {0};
    if (st == FK_OK) st = fk_pipeline_from_image(ctx, src, &x);
    fk_vae_opts o;
    fk_pl_vae_tiling(r->p, r->lh, r->lw, &o);
    if (st == FK_OK) st = fk_vae_encode(ctx, r->be, v, &x, &r->z, &o);
    if (st == FK_OK && (r->z.ndim != 4 || r->z.shape[2] != r->lh || r->z.shape[3] != r->lw))
        st = fk_error(ctx, FK_ERR_INTERNAL, "init image encoded to an unexpected latent size");
    if (st == FK_OK) fk_pl_dbg(r, "init_z", &r->z);
    fk_tensor_free(&x);
    fk_image_free(&resized);
    fk_pl_release_scratch(r);
    fk_pl_progress(r, "encode", 1, 1);
    r->rep->t_encode = fk_time() - t0;
    return st;
}

/* A device copy of host tensor t on a device backend (freed with
 * fk_pl_dev_free); on the CPU, t itself. The text embeddings are read by
 * every step: uploaded once instead of by each forward. */
static fk_status fk_pl_dev_copy(fk_pl_run *r, const fk_tensor *t, fk_tensor *out) {
    *out = *t;
    out->owns = false;
    if (r->be->device == FK_DEVICE_CPU || !t->data) return FK_OK;
    size_t bytes = fk_tensor_nbytes(t);
    out->data = r->be->alloc(r->be, bytes ? bytes : 1);
    if (!out->data)
        return fk_error(r->ctx, FK_ERR_NOMEM, "out of %s memory for the text embeddings (%.1f MB)",
                        r->be->name, (double)bytes / 1e6);
    out->device = r->be->device;
    r->be->upload(r->be, out->data, t->data, bytes);
    return FK_OK;
}

static void fk_pl_dev_free(fk_pl_run *r, fk_tensor *t) {
    if (t->data && t->device != FK_DEVICE_CPU) r->be->free(r->be, t->data);
    memset(t, 0, sizeof(*t));
}

/* The denoising loop: transformer loaded, working memory allocated, released. */
static fk_status fk_pl_denoise(fk_pl_run *r) {
    fk_context *ctx = r->ctx;
    fk_pipeline_report *rep = r->rep;
    const fk_pipeline_params *p = r->p;
    const int64_t n_img = r->n_img, n_txt = r->n_txt;
    fk_flux_model *m = NULL;
    fk_flux_runner *run = NULL;
    fk_tensor noise = {0}, x = {0}, v = {0}, vn = {0}, ids = {0}, txt_ids = {0};
    fk_tensor dtxt = {0}, dneg = {0}; /* r->txt, r->neg_txt where the backend computes */
    double t0 = fk_time();
    fk_status st = FK_OK;
    m = r->sess->flux;
    if (!m && (st = fk_flux_load(ctx, r->files->model, &m)) != FK_OK)
        return fk_pl_wrap(ctx, st, "--model: ", " (expected a FLUX transformer, e.g. flux1-dev.safetensors)");
    if (r->sess->keep) r->sess->flux = m;
    const int64_t C = m->cfg.in_channels; /* 64 */
    int64_t tok_shape[2] = {n_img, C}, ids_shape[2] = {n_img, 3}, tids_shape[2] = {n_txt, 3};
    if ((st = fk_tensor_new(ctx, &x, FK_F32, 2, tok_shape, "latent tokens")) ||
        (st = fk_tensor_new(ctx, &v, FK_F32, 2, tok_shape, "velocity")) ||
        (r->true_cfg && (st = fk_tensor_new(ctx, &vn, FK_F32, 2, tok_shape, "negative velocity"))) ||
        (st = fk_tensor_new(ctx, &ids, FK_F32, 2, ids_shape, "image ids")) ||
        (st = fk_tensor_new(ctx, &txt_ids, FK_F32, 2, tids_shape, "text ids")))
        goto done;

    /* noise, packed; img2img start point */
    if ((st = fk_torch_noise(ctx, p->seed, (int64_t)r->rep->height, (int64_t)r->rep->width, FK_BF16, &noise)))
        goto done;
    fk_pl_dbg(r, "noise", &noise);
    {
        const int64_t nl = fk_tensor_numel(&noise);
        float *nf = malloc(sizeof(float) * (size_t)nl);
        if (!nf) {
            st = fk_error(ctx, FK_ERR_NOMEM, "out of memory for the noise");
            goto done;
        }
        fk_convert_to_f32(nf, noise.data, FK_BF16, (size_t)nl);
        fk_pipeline_pack(nf, 16, r->lh, r->lw, x.data);
        free(nf);
    }
    fk_pipeline_img_ids(r->lh, r->lw, ids.data);
    {
        fk_tensor tsv = fk_view1(FK_F32, r->ts, rep->steps + 1);
        fk_pl_dbg(r, "timesteps", &tsv);
    }
    if (p->init_image) {
        float *zp = malloc(sizeof(float) * (size_t)fk_tensor_numel(&x));
        if (!zp) {
            st = fk_error(ctx, FK_ERR_NOMEM, "out of memory for the init latent");
            goto done;
        }
        fk_pipeline_pack(r->z.data, 16, r->lh, r->lw, zp);
        const float t = r->ts[rep->t_start];
        float *xs = x.data;
        for (int64_t i = 0; i < fk_tensor_numel(&x); i++) {
            float a = t * xs[i];            /* sigma · noise */
            float b = (1.0f - t) * zp[i];   /* (1 − sigma) · latent */
            xs[i] = a + b;
        }
        free(zp);
    }
    {
        fk_tensor x3 = fk_view3(FK_F32, x.data, 1, n_img, C);
        fk_pl_dbg(r, "x0", &x3);
    }

    /* working memory */
    if ((st = fk_flux_runner_create(ctx, m, r->be, n_img, n_txt, &run))) goto done;
    if (p->weight_cache > 0 ||
        (p->weight_cache < 0 && rep->steps - rep->t_start >= FK_PIPELINE_WCACHE_MIN_STEPS)) {
        double tc = fk_time();
        /* the packed copies replace the mapped pages of the weights they copy */
        if ((st = fk_flux_runner_cache_weights(ctx, run, true, &rep->wcache_bytes))) goto done;
        rep->t_wcache = fk_time() - tc;
        if (rep->wcache_bytes)
            fk_log(ctx, FK_LOG_INFO, "transformer weights pre-packed: %.1f MB in %.2f s",
                   (double)rep->wcache_bytes / 1e6, rep->t_wcache);
    }
    /* every step's modulation vectors in a few products (bitwise the per-step ones) */
    if ((st = fk_flux_runner_precompute(ctx, run, r->ts + rep->t_start, rep->steps - rep->t_start,
                                        rep->guidance, &r->vec)))
        goto done;
    const fk_flux_plan *plan = fk_flux_runner_plan(run);
    rep->flux_weight_bytes = plan->weight_bytes;
    rep->flux_act_bytes = plan->act_bytes;
    rep->flux_scratch_bytes = plan->scratch_bytes;
    fk_log(ctx, FK_LOG_INFO, "transformer %s: %lld image + %lld text tokens, weights %.1f MB, activations %.1f MB, "
           "scratch %.1f MB", rep->model.name, (long long)n_img, (long long)n_txt, (double)plan->weight_bytes / 1e6,
           (double)plan->act_bytes / 1e6, (double)plan->scratch_bytes / 1e6);

    if ((st = fk_pl_dev_copy(r, &r->txt, &dtxt))) goto done;
    if (r->true_cfg && (st = fk_pl_dev_copy(r, &r->neg_txt, &dneg))) goto done;
    fk_flux_inputs in = {.img = &x, .img_ids = &ids, .txt = &dtxt, .txt_ids = &txt_ids, .y = &r->vec,
                         .guidance = rep->guidance};
    fk_flux_inputs in_neg = in;
    in_neg.txt = &dneg;
    in_neg.y = &r->neg_vec;
    const int n_run = rep->steps - rep->t_start;
    fk_pl_progress(r, "denoise", 0, n_run);
    for (int k = rep->t_start; k < rep->steps; k++) {
        in.timestep = in_neg.timestep = r->ts[k];
        if ((st = fk_flux_forward(ctx, run, &in, &v))) goto done;
        if (r->true_cfg) {
            if ((st = fk_flux_forward(ctx, run, &in_neg, &vn))) goto done;
            float *vp = v.data;
            const float *vq = vn.data, cfg = rep->cfg_scale;
            for (int64_t i = 0; i < fk_tensor_numel(&v); i++) {
                float d = vp[i] - vq[i];
                float s = cfg * d;
                vp[i] = vq[i] + s; /* v_neg + cfg·(v_pos − v_neg) */
            }
        }
        fk_sampling_euler_step(x.data, v.data, (size_t)fk_tensor_numel(&x), r->ts[k], r->ts[k + 1]);
        fk_pl_progress(r, "denoise", k - rep->t_start + 1, n_run);
    }
    {
        fk_tensor x3 = fk_view3(FK_F32, x.data, 1, n_img, C);
        fk_pl_dbg(r, "final", &x3);
    }
    int64_t lshape[4] = {1, 16, r->lh, r->lw};
    if ((st = fk_tensor_new(ctx, &r->latent, FK_F32, 4, lshape, "latent"))) goto done;
    fk_pipeline_unpack(x.data, 16, r->lh, r->lw, r->latent.data);
    fk_pl_dbg(r, "latent", &r->latent);
done:
    fk_pl_dev_free(r, &dtxt);
    fk_pl_dev_free(r, &dneg);
    fk_flux_runner_free(run);
    if (!r->sess->keep) {
        if (r->be->uncache_weights) r->be->uncache_weights(r->be); /* before the decoder runs */
        fk_flux_free(m);
    }
    fk_tensor_free(&noise);
    fk_tensor_free(&x);
    fk_tensor_free(&v);
    fk_tensor_free(&vn);
    fk_tensor_free(&ids);
    fk_tensor_free(&txt_ids);
    fk_pl_release_scratch(r);
    rep->t_denoise = fk_time() - t0;
    rep->rss_after_denoise = fk_current_rss();
    rep->device_after_denoise = fk_backend_device_bytes(r->be);
    return st;
}

static fk_status fk_pl_decode(fk_pl_run *r, fk_image *out) {
    fk_context *ctx = r->ctx;
    double t0 = fk_time();
    fk_vae *v = NULL;
    fk_tensor img = {0};
    fk_pl_progress(r, "decode", 0, 1);
    fk_status st = fk_pl_open_vae(r, &v);
    if (st == FK_OK && !fk_vae_get_config(v)->has_decoder)
        st = fk_error(ctx, FK_ERR_FORMAT, "--ae %s: the autoencoder has no decoder", r->files->ae);
    fk_vae_opts o;
    fk_pl_vae_tiling(r->p, r->lh, r->lw, &o);
    uint64_t peak = 0;
    o.peak_act_bytes = &peak;
    r->rep->vae_tile = o.tile > 0 && (r->lh > o.tile || r->lw > o.tile) ? o.tile : 0;
    if (st == FK_OK) st = fk_vae_decode(ctx, r->be, v, &r->latent, &img, &o);
    if (st == FK_OK) {
        fk_pl_dbg(r, "decode.output", &img);
        st = fk_pipeline_to_image(ctx, &img, out);
    }
    r->rep->vae_weight_bytes = fk_pl_path_bytes(r->files->ae);
    r->rep->vae_peak_act_bytes = peak;
    fk_log(ctx, FK_LOG_INFO, "autoencoder: weights %.1f MB, activations peak %.1f MB, %s",
           (double)r->rep->vae_weight_bytes / 1e6, (double)peak / 1e6, r->rep->vae_tile ? "tiled" : "untiled");
    fk_tensor_free(&img);
    fk_pl_close_vae(r, v);
    fk_pl_release_scratch(r);
    fk_pl_progress(r, "decode", 1, 1);
    r->rep->t_decode = fk_time() - t0;
    r->rep->rss_after_decode = fk_current_rss();
    r->rep->device_after_decode = fk_backend_device_bytes(r->be);
    return st;
}

static fk_status fk_pl_check_size(fk_context *ctx, const char *opt, int v) {
    if (v < 16 || v > 16384 || v % 16 != 0)
        return fk_error(ctx, FK_ERR_ARG, "%s %d: must be a multiple of 16 from 16 to 16384", opt, v);
    return FK_OK;
}

fk_status fk_pipeline_generate(fk_context *ctx, const fk_pipeline_files *files, const fk_pipeline_params *p,
                               fk_image *out, fk_pipeline_report *rep_out) {
    memset(out, 0, sizeof(*out));
    if (rep_out) memset(rep_out, 0, sizeof(*rep_out));
    if (!p || !p->prompt) return fk_error(ctx, FK_ERR_ARG, "pipeline: no prompt");
    fk_pipeline_session *s = NULL;
    fk_status st = fk_pipeline_session_open(ctx, files, p->device, p->precision, false, &s);
    if (st != FK_OK) return st;
    st = fk_pipeline_session_generate(ctx, s, p, out, rep_out);
    fk_pipeline_session_free(s);
    return st;
}

fk_status fk_pipeline_session_generate(fk_context *ctx, fk_pipeline_session *sess, const fk_pipeline_params *p,
                                       fk_image *out, fk_pipeline_report *rep_out) {
    memset(out, 0, sizeof(*out));
    const fk_pipeline_files *files = sess->files;
    fk_pipeline_report rep_local;
    fk_pipeline_report *rep = rep_out ? rep_out : &rep_local;
    memset(rep, 0, sizeof(*rep));
    double t_begin = fk_time();
    if (!p || !p->prompt) return fk_error(ctx, FK_ERR_ARG, "pipeline: no prompt");
    fk_status st; /* files were checked when the session was opened */
    if (p->width && (st = fk_pl_check_size(ctx, "--width", p->width))) return st;
    if (p->height && (st = fk_pl_check_size(ctx, "--height", p->height))) return st;
    if (p->steps < 0 || p->steps > FK_PIPELINE_MAX_STEPS)
        return fk_error(ctx, FK_ERR_ARG, "--steps %d: must be from 1 to %d", p->steps, FK_PIPELINE_MAX_STEPS);
    if (p->t5_len < 0 || p->t5_len > 4096)
        return fk_error(ctx, FK_ERR_ARG, "--t5-len %d: must be from 1 to 4096", p->t5_len);
    if (!isnan(p->guidance) && !(isfinite(p->guidance) && p->guidance >= 0 && p->guidance <= 100))
        return fk_error(ctx, FK_ERR_ARG, "--guidance %g: must be from 0 to 100", (double)p->guidance);
    if (!(isfinite(p->cfg_scale) && p->cfg_scale >= 1 && p->cfg_scale <= 100))
        return fk_error(ctx, FK_ERR_ARG, "--cfg-scale %g: must be from 1 (off) to 100", (double)p->cfg_scale);
    if (p->init_image && !(isfinite(p->strength) && p->strength > 0 && p->strength <= 1))
        return fk_error(ctx, FK_ERR_ARG, "--strength %g: must be in (0, 1]", (double)p->strength);

    if ((st = fk_pipeline_model_info_get(ctx, files->model, &rep->model))) return st;
    const fk_flux_config *cfg = &rep->model.cfg;
    if (cfg->in_channels != 64 || cfg->out_channels != 64)
        return fk_error(ctx, FK_ERR_UNSUPPORTED, "--model %s: in/out channels %d/%d; only text-to-image transformers "
                        "with 64 (16 latent channels x 2x2) are supported", files->model, cfg->in_channels,
                        cfg->out_channels);
    rep->steps = p->steps ? p->steps : rep->model.default_steps;
    rep->shift = p->shift < 0 ? rep->model.default_shift : p->shift != 0;
    rep->t5_len = p->t5_len ? p->t5_len : rep->model.default_t5_len;
    rep->guidance = isnan(p->guidance) ? rep->model.default_guidance : p->guidance;
    rep->cfg_scale = p->cfg_scale;
    rep->width = p->width;
    rep->height = p->height;

    fk_pl_run r;
    memset(&r, 0, sizeof(r));
    r.ctx = ctx;
    r.files = files;
    r.p = p;
    r.rep = rep;
    r.sess = sess;
    r.true_cfg = p->cfg_scale > 1.0f;
    rep->true_cfg = r.true_cfg;
    r.be = sess->be;
    fk_backend_describe(r.be, rep->backend_desc, sizeof(rep->backend_desc));
    fk_vae *v = NULL;

    /* img2img: the autoencoder first (small), which also fixes the default size */
    if (p->init_image) {
        if ((st = fk_pl_open_vae(&r, &v))) goto done;
        const int ds = fk_vae_downscale(fk_vae_get_config(v));
        if (!rep->width) rep->width = (p->init_image->width * 8 / ds) / 16 * 16;
        if (!rep->height) rep->height = (p->init_image->height * 8 / ds) / 16 * 16;
        if (rep->width < 16 || rep->height < 16) {
            st = fk_error(ctx, FK_ERR_ARG, "--init-image: %dx%d is too small (at least 16x16 pixels)",
                          p->init_image->width, p->init_image->height);
            goto done;
        }
    }
    if (!rep->width) rep->width = 1024;
    if (!rep->height) rep->height = 1024;
    r.lh = 2 * ((rep->height + 15) / 16);
    r.lw = 2 * ((rep->width + 15) / 16);
    rep->latent_h = (int)r.lh;
    rep->latent_w = (int)r.lw;
    r.n_img = (r.lh / 2) * (r.lw / 2);
    r.n_txt = rep->t5_len;
    rep->n_img = r.n_img;
    rep->n_txt = r.n_txt;

    /* schedule and start index */
    r.ts = malloc(sizeof(float) * (size_t)(rep->steps + 1));
    if (!r.ts) {
        st = fk_error(ctx, FK_ERR_NOMEM, "out of memory");
        goto done;
    }
    fk_sampling_schedule(r.ts, rep->steps, r.n_img, rep->shift);
    rep->t_start = p->init_image ? fk_pipeline_img2img_start(rep->steps, p->strength) : 0;
    rep->steps_run = rep->steps - rep->t_start;
    if (rep->steps_run < 1) {
        st = fk_error(ctx, FK_ERR_ARG, "--strength %g with %d steps runs no step (needs strength >= 1/steps)",
                      (double)p->strength, rep->steps);
        goto done;
    }
    fk_log(ctx, FK_LOG_INFO, "%s: %dx%d, latent %dx%d (%lld tokens), %d steps%s, shift %s, guidance %g%s, T5 %d",
           rep->model.name, rep->width, rep->height, rep->latent_w, rep->latent_h, (long long)r.n_img, rep->steps,
           p->init_image ? " (img2img)" : "", rep->shift ? "on" : "off", (double)rep->guidance,
           r.true_cfg ? " + true CFG" : "", rep->t5_len);

    if (p->init_image) {
        st = fk_pl_encode_init(&r, v);
        fk_pl_close_vae(&r, v);
        v = NULL;
        if (st != FK_OK) goto done;
    }
    if ((st = fk_pl_text(&r))) goto done;
    if ((st = fk_pl_denoise(&r))) goto done;
    /* text embeddings are no longer needed */
    fk_tensor_free(&r.txt);
    fk_tensor_free(&r.neg_txt);
    if ((st = fk_pl_decode(&r, out))) goto done;
    rep->out_width = out->width;
    rep->out_height = out->height;
done:
    fk_pl_close_vae(&r, v);
    fk_tensor_free(&r.txt);
    fk_tensor_free(&r.vec);
    fk_tensor_free(&r.neg_txt);
    fk_tensor_free(&r.neg_vec);
    fk_tensor_free(&r.z);
    fk_tensor_free(&r.latent);
    free(r.ts);
    rep->device_peak_bytes = fk_backend_device_peak_bytes(r.be);
    rep->t_total = fk_time() - t_begin;
    /* VmHWM is updated lazily by the kernel: take the largest value seen */
    rep->peak_rss = fk_peak_rss();
    if (rep->rss_after_text > rep->peak_rss) rep->peak_rss = rep->rss_after_text;
    if (rep->rss_after_denoise > rep->peak_rss) rep->peak_rss = rep->rss_after_denoise;
    if (rep->rss_after_decode > rep->peak_rss) rep->peak_rss = rep->rss_after_decode;
    if (st != FK_OK) fk_image_free(out);
    return st;
}
