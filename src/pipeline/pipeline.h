/* pipeline: FLUX text-to-image and image-to-image, as the reference
 * (black-forest-labs/flux sampling.py + cli.py) runs it, with memory staging:
 *
 *   tokenize (CLIP 77, T5 512 / 256)
 *   T5 encoder  → txt (L, context_dim)     → T5 released (fk_t5_free)
 *   CLIP        → vec (vec_dim)            → CLIP released (fk_clip_free)
 *   [img2img: autoencoder encode of the init image → z; AE released]
 *   noise = torch.randn((1,16,2⌈H/16⌉,2⌈W/16⌉), bf16, CPU generator seeded)
 *   pack 2×2 patches → (n_img, 64); ids (0, row, col); text ids 0
 *   timesteps = get_schedule(steps, n_img, shift)
 *   [img2img: start at index t_start = int(max(n − min(n·strength, n), 0)),
 *             x = t·noise + (1 − t)·z with t = timesteps[t_start]]
 *   transformer working memory allocated only now; per step:
 *     v = DiT(x, txt, vec, t, guidance)                       (guidance embedding)
 *     [true CFG: v = v_neg + cfg·(v − v_neg), a second pass on the negative prompt]
 *     x += (t_next − t)·v
 *   transformer released → unpack → autoencoder decode (tiled when large)
 *   image = (uint8)(127.5·(clamp(x, −1, 1) + 1))  (truncated, as the reference's .byte())
 *
 * Reference details kept on purpose: the text embeddings are rounded to
 * bf16 (BFL's HFEmbedder returns .bfloat16()), the start noise is bf16, the
 * transformer and autoencoder run in f32 on the op table. The init image is
 * normalized as BFL normalizes conditioning images, u8 / 127.5 − 1, and
 * encoded with the posterior mean (no sampling).
 *
 * Weights are memory-mapped; each model is opened when its phase starts and
 * closed when it ends, so the peak is one model's weights plus its working
 * memory, not the sum of all models. */
#ifndef FK_PIPELINE_H
#define FK_PIPELINE_H

#include "io/image.h"
#include "model/flux.h"

/* ---- model files -------------------------------------------------------------- */

typedef struct fk_pipeline_files {
    char *model;          /* transformer: file, index file or diffusers folder */
    char *ae;             /* autoencoder */
    char *clip;           /* CLIP-L text encoder */
    char *t5;             /* T5-XXL encoder */
    char *clip_tokenizer; /* folder with vocab.json + merges.txt, or NULL: embedded */
    char *t5_tokenizer;   /* folder with spiece.model, or NULL: embedded */
} fk_pipeline_files;

/* Fill files from explicit paths (NULL or "" = not given) and, for those not
 * given, from a models folder (models_dir may be NULL):
 *   - a diffusers pipeline folder (model_index.json or transformer/):
 *     transformer/, vae/, text_encoder/, text_encoder_2/, tokenizer/, tokenizer_2/;
 *   - else BFL / ComfyUI file names in the folder or its usual subfolders
 *     (diffusion_models/, unet/, checkpoints/, vae/, text_encoders/, clip/):
 *     flux-mini / flux1-dev / flux1-schnell / flux-dev / flux-schnell .safetensors,
 *     ae.safetensors, clip_l.safetensors, t5xxl_fp16 / t5xxl_fp8_e4m3fn /
 *     t5xxl_fp8_e4m3fn_scaled / t5xxl .safetensors.
 * Every path must exist. A missing one is FK_ERR_IO with a message naming the
 * role, the usual file name and the option that sets it. Caller frees with
 * fk_pipeline_files_free. */
fk_status fk_pipeline_files_resolve(fk_context *ctx, const char *models_dir, const char *model, const char *ae,
                                    const char *clip, const char *t5, fk_pipeline_files *out);
void fk_pipeline_files_free(fk_pipeline_files *f);

/* Short identifier of a checkpoint without reading its weights: FNV-1a 64 over
 * the safetensors headers (length word + JSON) of its files in order and their
 * sizes; hex[13] gets the first 12 hex digits. */
fk_status fk_pipeline_model_hash(fk_context *ctx, const char *path, char hex[13]);

/* What a transformer checkpoint is and its defaults (from its config; the
 * weights are not read): name "flux-dev", "flux-schnell", "flux-mini",
 * "tiny-flux" or "custom"; guidance-distilled models (guidance embedding:
 * dev, mini) 50 steps, shifted schedule, T5 length 512; others (schnell) 4
 * steps, no shift, T5 length 256. Guidance default 3.5. */
typedef struct fk_pipeline_model_info {
    fk_flux_config cfg;
    const char *name;
    int default_steps;
    bool default_shift;
    int default_t5_len;
    float default_guidance;
} fk_pipeline_model_info;

fk_status fk_pipeline_model_info_get(fk_context *ctx, const char *model_path, fk_pipeline_model_info *info);

/* ---- running -------------------------------------------------------------------- */

/* Progress: phase "text", "encode", "denoise", "decode"; done of total units
 * (denoise: steps). Called at the start (done 0) and after each unit. */
typedef void (*fk_pipeline_progress_fn)(void *user, const char *phase, int done, int total);
/* Intermediate tensors (valid during the call; copy what you keep): "clip_ids",
 * "t5_ids" (I64), "vec", "txt", "neg_vec", "neg_txt", "init_z", "noise" (BF16,
 * unpacked), "timesteps" (the full schedule), "x0" (packed start), "final"
 * (packed end), "latent" (unpacked end), "decode.output" (f32, unclamped). */
typedef void (*fk_pipeline_dbg_fn)(void *user, const char *name, const fk_tensor *t);

typedef struct fk_pipeline_params {
    const char *prompt;          /* UTF-8, required */
    const char *negative_prompt; /* true CFG only; NULL = "" */
    int width, height;           /* pixels, multiples of 16; 0 = 1024, or the init image's size */
    int steps;                   /* 0 = model default */
    float guidance;              /* guidance embedding value; NaN = model default (3.5) */
    float cfg_scale;             /* true classifier-free guidance when > 1 (two passes a step) */
    uint64_t seed;
    int t5_len;                  /* T5 positions; 0 = model default (512 / 256) */
    int shift;                   /* −1 = model default, 0 = off, 1 = on */
    const fk_image *init_image;  /* img2img when not NULL */
    double strength;             /* img2img: (0, 1]; 1 = start from pure noise (a double,
                                    as diffusers computes the start index in Python floats) */
    int vae_tile;                /* latent tile side for decoding; −1 = auto (tile above
                                    128×128 latents, i.e. 1024×1024 pixels), 0 = never */
    bool bf16_text;              /* round text embeddings to bf16 like the reference (default on) */
    int precision;               /* matmuls: FK_PREC_F32 (default, the reference) or
                                    FK_PREC_BF16 (CPU: AMX tiles, see backend/cpu/cpu.h;
                                    CUDA: bf16 tensor cores) */
    const char *device;          /* "cpu" (NULL), "cuda", "cuda:N" or "devsim"
                                    (backend/backend_open.h) */
    int weight_cache;            /* transformer weights pre-packed for the backend's products
                                    (fk_flux_runner_cache_weights, the same bits): 1 on, 0 off,
                                    −1 auto = on from FK_PIPELINE_WCACHE_MIN_STEPS steps
                                    (Flux-mini bf16 on AMX: 4.6 GB packed in ~1 s, up to
                                    ~11 s where the OS must first back fresh pages, for
                                    6–10% less per step; no extra memory: the packed copy
                                    replaces the mapped pages; docs/PERF.md) */
    fk_pipeline_progress_fn progress;
    void *progress_user;
    fk_pipeline_dbg_fn dbg;
    void *dbg_user;
} fk_pipeline_params;

/* Defaults: sizes 0, steps 0, guidance NaN, cfg 1, seed 0, t5_len 0, shift −1,
 * strength 0.75, vae_tile −1, bf16_text true. */
void fk_pipeline_params_init(fk_pipeline_params *p);

#define FK_PIPELINE_MAX_STEPS 1000
#define FK_PIPELINE_WCACHE_MIN_STEPS 10 /* auto: see weight_cache */

typedef struct fk_pipeline_report {
    fk_pipeline_model_info model;
    int width, height;          /* requested size after defaults */
    int out_width, out_height;  /* decoded image (= width × height for 8× autoencoders) */
    int latent_h, latent_w;     /* (2⌈H/16⌉, 2⌈W/16⌉) */
    int steps, steps_run;       /* schedule length; steps actually run (img2img: fewer) */
    int t_start;                /* img2img start index (0 for txt2img) */
    float guidance, cfg_scale;
    bool true_cfg, shift;
    int t5_len;
    int64_t n_img, n_txt;
    int vae_tile;               /* tile side used for decoding (0: untiled) */
    /* seconds per phase */
    double t_text, t_encode, t_denoise, t_decode, t_total;
    double t_wcache;            /* part of t_denoise: packing the weight cache */
    uint64_t wcache_bytes;      /* transformer weights held pre-packed (0: not cached) */
    /* memory plan (bytes) */
    uint64_t t5_weight_bytes, t5_buffer_bytes, clip_weight_bytes;
    uint64_t flux_weight_bytes, flux_act_bytes, flux_scratch_bytes;
    uint64_t vae_weight_bytes, vae_peak_act_bytes;
    /* resident set size after each phase and the process peak at the end */
    uint64_t rss_after_text, rss_after_denoise, rss_after_decode, peak_rss;
    /* a device backend's memory (cached weights, scratch, tensors): the most
     * held at once over the run, and what each phase held at its end
     * (0 on the CPU, whose memory is the RSS above) */
    uint64_t device_peak_bytes;
    uint64_t device_after_text, device_after_denoise, device_after_decode;
    char backend_desc[256];     /* fk_backend_describe of the backend used */
} fk_pipeline_report;

/* Run the pipeline. out: a new RGB image (fk_image_free). rep may be NULL.
 * Errors: FK_ERR_ARG for bad parameters (naming the option), load errors
 * naming the file (and what was expected), FK_ERR_NOMEM. On error out is
 * empty. Uses ctx's thread count, p->device and p->precision; each model is
 * released after its phase (a session of its own, see below). */
fk_status fk_pipeline_generate(fk_context *ctx, const fk_pipeline_files *files, const fk_pipeline_params *p,
                               fk_image *out, fk_pipeline_report *rep);

/* A session: one backend (device, precision, ctx's threads) for several
 * images. keep_models = false stages memory as fk_pipeline_generate does
 * (each model opened for its phase, released after it, a device backend's
 * weight copies dropped with it); keep_models = true keeps the tokenizers,
 * the models and a device backend's copies of their weights from the first
 * image on (peak memory: all models at once), so later images pay no load
 * or upload: what `fluxkit bench image` times. files must outlive the
 * session. */
typedef struct fk_pipeline_session fk_pipeline_session;
fk_status fk_pipeline_session_open(fk_context *ctx, const fk_pipeline_files *files, const char *device,
                                   int precision, bool keep_models, fk_pipeline_session **out);
/* fk_pipeline_generate in the session (p->device and p->precision are the
 * session's, whatever p says). rep->device_peak_bytes: the session's peak so
 * far. */
fk_status fk_pipeline_session_generate(fk_context *ctx, fk_pipeline_session *s, const fk_pipeline_params *p,
                                       fk_image *out, fk_pipeline_report *rep);
/* The session's backend (to describe it, or read its memory counters). */
struct fk_backend;
const struct fk_backend *fk_pipeline_session_backend(const fk_pipeline_session *s);
void fk_pipeline_session_free(fk_pipeline_session *s);

/* ---- steps exposed for tests and tools -------------------------------------------- */

/* Pack latent (16, h, w) (h, w even) into tokens (h/2 · w/2, 64) with feature
 * c·4 + ph·2 + pw, and back; ids (h/2 · w/2, 3) = (0, row, col). */
void fk_pipeline_pack(const float *latent, int64_t c, int64_t h, int64_t w, float *tokens);
void fk_pipeline_unpack(const float *tokens, int64_t c, int64_t h, int64_t w, float *latent);
void fk_pipeline_img_ids(int64_t h, int64_t w, float *ids);
/* img2img start index for steps and strength (diffusers' get_timesteps). */
int fk_pipeline_img2img_start(int steps, double strength);
/* Decoded image (1, 3, H, W) f32 → RGB8: (uint8)(127.5·(clamp(x, −1, 1) + 1)), f32
 * arithmetic, truncated (NaN → 0). */
fk_status fk_pipeline_to_image(fk_context *ctx, const fk_tensor *x, fk_image *out);
/* RGB8 → (1, 3, H, W) f32 as u8 / 127.5 − 1 (new owning tensor). */
fk_status fk_pipeline_from_image(fk_context *ctx, const fk_image *img, fk_tensor *out);

#endif /* FK_PIPELINE_H */
