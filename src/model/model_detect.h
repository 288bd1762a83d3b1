/* model_detect: what a checkpoint is, from tensor names and shapes only (the
 * data is never read). Recognizes, in BFL / ComfyUI single files (also with a
 * key prefix, e.g. all-in-one "model.diffusion_model." / "vae." files) and in
 * diffusers / Hugging Face folders:
 *   - FLUX transformers (via fk_flux_config_infer),
 *   - T5 encoders (HF T5EncoderModel keys: shared, encoder.block.N.layer...),
 *   - CLIP text encoders (HF CLIPTextModel keys: text_model....),
 *   - autoencoders (BFL ae.safetensors keys or diffusers AutoencoderKL keys).
 * A file may hold several components; each is reported. */
#ifndef FK_MODEL_DETECT_H
#define FK_MODEL_DETECT_H

#include "model/flux.h"

typedef enum fk_model_kind {
    FK_MODEL_UNKNOWN = 0,
    FK_MODEL_FLUX,
    FK_MODEL_T5,
    FK_MODEL_CLIP,
    FK_MODEL_AE,
} fk_model_kind;

/* "unknown", "flux", "t5", "clip", "ae". Static string. */
const char *fk_model_kind_name(fk_model_kind k);

typedef struct fk_t5_shape {
    int d_model;      /* 4096 (XXL) */
    int d_kv;         /* per-head dim, 64 */
    int d_ff;         /* 10240 */
    int num_layers;   /* 24 */
    int num_heads;    /* 64, from relative_attention_bias (buckets, heads) */
    int rel_buckets;  /* 32 */
    int vocab;        /* 32128 */
    bool gated;       /* T5 v1.1: wi_0 / wi_1 (gated-GELU) instead of wi */
    bool has_decoder; /* a full encoder–decoder checkpoint */
} fk_t5_shape;

typedef struct fk_clip_shape {
    int width;        /* 768 (CLIP-L) */
    int layers;       /* 12 */
    int heads;        /* not stored in the weights: width / 64 (CLIP's head dim) */
    int mlp;          /* 3072 */
    int vocab;        /* 49408 */
    int max_pos;      /* 77 */
    int proj_dim;     /* text_projection out dim, 0 when absent */
} fk_clip_shape;

#define FK_AE_MAX_LEVELS 8
typedef struct fk_ae_shape {
    int ch;           /* 128 (FLUX ae) */
    int n_levels;     /* len(ch_mult) */
    int ch_mult[FK_AE_MAX_LEVELS]; /* 1, 2, 4, 4 */
    int num_res_blocks;            /* 2 */
    int z_channels;   /* 16 */
    int in_channels;  /* 3 (0 when the encoder is absent) */
    int out_ch;       /* 3 (0 when the decoder is absent) */
    bool has_encoder, has_decoder;
} fk_ae_shape;

typedef struct fk_model_component {
    fk_model_kind kind;
    char prefix[128];   /* key prefix ("" for plain files) */
    const char *format; /* "bfl", "bfl-prefixed", "diffusers", "hf", "hf-prefixed" */
    const char *name;   /* "flux-dev", "t5-xxl", "clip-l", "flux-ae", ..., or "custom" */
    fk_flux_config flux;
    fk_t5_shape t5;
    fk_clip_shape clip;
    fk_ae_shape ae;
} fk_model_component;

#define FK_MODEL_MAX_COMPONENTS 6
typedef struct fk_model_info {
    int n;                                      /* components found (0: unknown) */
    fk_model_component comp[FK_MODEL_MAX_COMPONENTS];
    char note[512]; /* why something that looked like a known model was rejected */
} fk_model_info;

/* Classify the checkpoint. Returns FK_OK also when nothing is recognized
 * (info->n == 0, info->note may say why); errors only on invalid arguments. */
fk_status fk_model_detect(fk_context *ctx, const fk_st_model *m, fk_model_info *info);

#endif /* FK_MODEL_DETECT_H */
