/* vae_internal: the autoencoder's weight layout, shared by vae_load.c
 * (configuration, key mapping, loading, random init) and vae.c (forward).
 * Not a public interface. */
#ifndef FK_VAE_INTERNAL_H
#define FK_VAE_INTERNAL_H

#include "model/vae.h"

typedef struct fk_vae_conv {
    fk_tensor w; /* (Co, Ci, kh, kw) any float dtype */
    fk_tensor b; /* (Co) */
} fk_vae_conv;

typedef struct fk_vae_norm {
    fk_tensor w; /* (C) GroupNorm scale */
    fk_tensor b; /* (C) */
} fk_vae_norm;

typedef struct fk_vae_resblock {
    int cin, cout;
    bool has_nin; /* 1×1 nin_shortcut when cin != cout */
    fk_vae_norm norm1, norm2;
    fk_vae_conv conv1, conv2, nin;
} fk_vae_resblock;

typedef struct fk_vae_attn {
    int c;
    fk_vae_norm norm;
    fk_vae_conv q, k, v, proj; /* (C, C, 1, 1); diffusers files store (C, C) */
} fk_vae_attn;

typedef struct fk_vae_level {
    int n_blocks; /* encoder: num_res_blocks, decoder: num_res_blocks + 1 */
    fk_vae_resblock block[FK_VAE_MAX_RES_BLOCKS + 1];
    bool has_resample; /* encoder: downsample (all but the last level); decoder: upsample (i > 0) */
    fk_vae_conv resample;
} fk_vae_level;

/* One half: the encoder or the decoder. */
typedef struct fk_vae_half {
    fk_vae_conv conv_in;
    fk_vae_level level[FK_VAE_MAX_LEVELS];
    fk_vae_resblock mid1, mid2;
    fk_vae_attn attn;
    fk_vae_norm norm_out;
    fk_vae_conv conv_out;
} fk_vae_half;

struct fk_vae {
    fk_vae_config cfg;
    fk_vae_half enc, dec;
    fk_vae_conv quant, post_quant; /* when cfg.quant_conv / cfg.post_quant_conv */
    const char *format;            /* "bfl", "bfl-prefixed", "diffusers", "random" */
    fk_st_model *owned_model;      /* fk_vae_open */
    float *owned_data;             /* fk_vae_create_random */
};

/* Visit every tensor of the BFL layout of cfg with its name, shape, kind and
 * fan_in, and (when v is not NULL) the slot of v that holds it. The fixed
 * order of fk_vae_enum_params. Also fills v's structural fields (channel
 * counts, block counts, flags) when v is not NULL. */
typedef void (*fk_vae_visit_fn)(void *user, const char *name, int ndim, const int64_t *shape,
                                fk_param_kind kind, int64_t fan_in, fk_tensor *slot);
void fk_vae_walk(const fk_vae_config *cfg, fk_vae *v, fk_vae_visit_fn fn, void *user);

/* Tiled processing (exposed for tests). fn maps one input tile (cin,
 * th·ui, tw·ui) to one output tile (cout, th·uo, tw·uo). The grid is in
 * latent units over (lh, lw): tile side t, overlap o (fk_vae_tile_starts);
 * input / output have ui / uo pixels per latent pixel. Outputs are blended
 * with separable linear ramps across each overlap (weights > 0 everywhere)
 * and normalized by the summed weights, so where one tile covers a pixel it
 * is that tile's value and an identity fn reproduces the input. */
typedef fk_status (*fk_vae_tile_cb)(void *user, const float *in, int64_t ih, int64_t iw, float *out);
fk_status fk_vae_tiled(fk_context *ctx, fk_vae_tile_cb fn, void *user, const float *in, int64_t cin,
                       int64_t ui, float *out, int64_t cout, int64_t uo, int64_t lh, int64_t lw,
                       int64_t t, int64_t o);
/* Bytes of host scratch fk_vae_tiled allocates for these arguments. */
uint64_t fk_vae_tiled_scratch(int64_t cin, int64_t ui, int64_t cout, int64_t uo, int64_t lh, int64_t lw,
                              int64_t t);

#endif /* FK_VAE_INTERNAL_H */
