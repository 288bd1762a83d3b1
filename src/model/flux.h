/* flux: the FLUX.1 MMDiT transformer (double-stream + single-stream blocks).
 * Configuration, the official (BFL) weight layout, loading from BFL single
 * files / all-in-one files / diffusers folders, and the forward pass written
 * against the op table (src/backend/backend.h). */
#ifndef FK_FLUX_H
#define FK_FLUX_H

#include "backend/backend.h"
#include "io/safetensors.h"

typedef struct fk_flux_config {
    int hidden;         /* 3072 */
    int num_heads;      /* 24 */
    int head_dim;       /* hidden / num_heads = 128 */
    int depth_double;   /* 19 (dev/schnell), 5 (mini) */
    int depth_single;   /* 38 (dev/schnell), 10 (mini) */
    int in_channels;    /* 64 = 16 latent channels · 2·2 patch */
    int out_channels;   /* 64 */
    int context_dim;    /* 4096 (T5-XXL) */
    int vec_dim;        /* 768 (CLIP-L pooled) */
    int mlp_hidden;     /* 4 · hidden */
    bool guidance_embed;/* dev, mini: true; schnell: false */
    bool qkv_bias;      /* true */
    int axes_dim[3];    /* 16, 56, 56 (sum = head_dim) */
    float theta;        /* 10000 */
} fk_flux_config;

/* Presets: "flux-mini", "flux-dev", "flux-schnell", "tiny-flux".
 * Returns false for an unknown name. */
bool fk_flux_preset(const char *name, fk_flux_config *cfg);
/* Comma-separated list of preset names (static string). */
const char *fk_flux_preset_list(void);
/* Which known model a config is: "flux-mini", "flux-dev", "flux-schnell",
 * "tiny-flux" or "custom". Static string. */
const char *fk_flux_config_name(const fk_flux_config *cfg);
/* Number of parameters of a config. */
int64_t fk_flux_param_count(const fk_flux_config *cfg);

/* Kind of a parameter tensor, so initializers can pick a distribution. */
typedef enum fk_param_kind {
    FK_PARAM_WEIGHT = 0, /* matrix of a linear layer (out, in) / conv kernel */
    FK_PARAM_BIAS,
    FK_PARAM_NORM_SCALE, /* RMSNorm / LayerNorm scale (around 1) */
    FK_PARAM_NORM_BIAS,
    FK_PARAM_EMBEDDING,
} fk_param_kind;

/* Called once per tensor of the official BFL layout, in a fixed order.
 * fan_in is the input size of the layer (for initializer scaling). */
typedef void (*fk_param_fn)(void *user, const char *name, int ndim, const int64_t *shape,
                            fk_param_kind kind, int64_t fan_in);
void fk_flux_enum_params(const fk_flux_config *cfg, fk_param_fn fn, void *user);

/* Recognize a FLUX transformer in a checkpoint and infer its configuration
 * from tensor shapes and counts. Accepts BFL keys, the same under the
 * "model.diffusion_model." prefix, and diffusers keys. *format_out (may be
 * NULL) gets "bfl", "bfl-prefixed" or "diffusers". Returns FK_ERR_FORMAT with a
 * message naming the missing/odd tensor when it is not a FLUX transformer. */
fk_status fk_flux_config_infer(fk_context *ctx, const fk_st_model *m, fk_flux_config *cfg,
                               const char **format_out);

#endif /* FK_FLUX_H */
