/* vae: the FLUX autoencoder (BFL flux `autoencoder.py`, the `ae.safetensors`
 * of FLUX.1): configuration, loading (BFL keys, the same under a prefix, or
 * diffusers AutoencoderKL keys), random initialization, and the encoder and
 * decoder written against the op table (src/backend/backend.h), untiled
 * (equal to the reference) or tiled with overlap and linear blending
 * (bounded memory for any image size).
 *
 * Architecture (ch 128, ch_mult [1,2,4,4], 2 ResNet blocks per level, z 16):
 *   ResNet block  h = conv1(swish(norm1(x))); h = conv2(swish(norm2(h)));
 *                 out = shortcut(x) + h, shortcut = 1×1 nin_shortcut when
 *                 channels change, else identity.
 *   GroupNorm     32 groups, eps 1e-6, affine.  swish(x) = x·σ(x).
 *   attention     mid block only: one head over C channels, scale 1/√C,
 *                 q/k/v/proj_out are 1×1 convs; out = x + proj_out(attn).
 *   encoder       conv_in 3×3 → for each level i: num_res_blocks blocks, then
 *                 (not on the last level) downsample = zero-pad right and
 *                 bottom by 1, 3×3 conv stride 2 pad 0 → mid (block_1, attn_1,
 *                 block_2) → norm_out, swish, conv_out 3×3 → 2·z channels
 *                 (mean | logvar); the latent is the mean (no sampling):
 *                 z = scale·(mean − shift).
 *   decoder       x = z/scale + shift → conv_in → mid → for i = levels−1 .. 0:
 *                 num_res_blocks+1 blocks at ch·ch_mult[i], then (i > 0)
 *                 upsample = nearest ×2, 3×3 conv → norm_out, swish, conv_out.
 *                 `up.{i}` is numbered by resolution level (0 = full size)
 *                 but runs from the highest index down.
 */
#ifndef FK_VAE_H
#define FK_VAE_H

#include "backend/backend.h"
#include "io/safetensors.h"
#include "model/flux.h" /* fk_param_fn, fk_param_kind */

#define FK_VAE_MAX_LEVELS 8
#define FK_VAE_MAX_RES_BLOCKS 7 /* per level; decoder levels hold one more */

#define FK_VAE_FLUX_SCALE 0.3611f
#define FK_VAE_FLUX_SHIFT 0.1159f

typedef struct fk_vae_config {
    int in_channels;    /* 3: image channels into the encoder */
    int out_ch;         /* 3: image channels out of the decoder */
    int ch;             /* 128: channels of level 0 */
    int n_levels;       /* len(ch_mult) = 4 */
    int ch_mult[FK_VAE_MAX_LEVELS]; /* 1, 2, 4, 4 */
    int num_res_blocks; /* 2 */
    int z_channels;     /* 16 */
    int groups;         /* 32 (GroupNorm) */
    float eps;          /* 1e-6 (GroupNorm) */
    float scale_factor; /* 0.3611 */
    float shift_factor; /* 0.1159 */
    bool has_encoder;   /* encoder.* present (a file may hold only one half) */
    bool has_decoder;
    bool quant_conv;      /* diffusers/SD-style 1×1 quant_conv (2z → 2z); FLUX: false */
    bool post_quant_conv; /* 1×1 post_quant_conv (z → z); FLUX: false */
} fk_vae_config;

/* Presets: "ae" (FLUX.1 ae.safetensors) and "tiny-ae" (ch 32, ch_mult [1,2],
 * 1 res block, z 16: the test fixture). Both halves, scale/shift of FLUX.
 * Returns false for an unknown name. */
bool fk_vae_preset(const char *name, fk_vae_config *cfg);
/* "ae, tiny-ae" (static string). */
const char *fk_vae_preset_list(void);
/* "ae", "tiny-ae" or "custom" (static string). */
const char *fk_vae_config_name(const fk_vae_config *cfg);
/* Image pixels per latent pixel along one axis: 2^(n_levels − 1) (8). */
int fk_vae_downscale(const fk_vae_config *cfg);
/* Number of parameters (both halves that the config has). */
int64_t fk_vae_param_count(const fk_vae_config *cfg);
/* The config as a JSON object in BFL AutoEncoderParams names (ch, ch_mult,
 * in_channels, num_res_blocks, out_ch, resolution, scale_factor,
 * shift_factor, z_channels), as in the fixtures' __metadata__ "config".
 * Caller frees with free(). NULL when out of memory. */
char *fk_vae_config_json(const fk_vae_config *cfg);

/* Every tensor of the BFL layout (encoder.*, decoder.*, in a fixed order)
 * with its shape, kind and fan_in; conv kernels (Co, Ci, kh, kw) are
 * FK_PARAM_WEIGHT with fan_in = Ci·kh·kw, GroupNorm weights NORM_SCALE. */
void fk_vae_enum_params(const fk_vae_config *cfg, fk_param_fn fn, void *user);

/* The same for a preset by name (nothing for an unknown name), and the
 * preset's config JSON (NULL for an unknown name; caller frees with free()):
 * the init-random preset table's entries. */
void fk_vae_enum_preset(const char *preset, fk_param_fn fn, void *user);
char *fk_vae_preset_config_json(const char *preset);

/* Recognize an autoencoder in a checkpoint and infer its configuration from
 * tensor shapes and counts: ch from conv_in, ch_mult from the blocks' channel
 * counts, num_res_blocks from the count, z from conv_out / conv_in. Keys may be
 * BFL (encoder.down.0.block.0.conv1.weight), BFL under a prefix
 * ("first_stage_model.", "vae.", "ae."), or diffusers AutoencoderKL
 * (encoder.down_blocks.0.resnets.0.conv1.weight). scale/shift: from the
 * __metadata__ "config" JSON (scale_factor / shift_factor) when present,
 * else FLUX's 0.3611 / 0.1159. *format_out (may be NULL): "bfl",
 * "bfl-prefixed" or "diffusers"; prefix_out (may be NULL, n >= 32 bytes)
 * gets the key prefix. FK_ERR_FORMAT naming the tensor when it is not one. */
fk_status fk_vae_config_infer(fk_context *ctx, const fk_st_model *m, fk_vae_config *cfg,
                              const char **format_out, char *prefix_out, size_t prefix_n);

typedef struct fk_vae fk_vae;

/* Load from an open checkpoint: every tensor checked for presence, float
 * dtype and shape ("<file>: tensor X has shape [..], expected [..]").
 * Weights are views into m's mapping (any float dtype, used in place):
 * m must outlive the model. Caller frees with fk_vae_free. */
fk_status fk_vae_load(fk_context *ctx, const fk_st_model *m, fk_vae **out);
/* Open `path` and load: a .safetensors file (ae.safetensors), a diffusers
 * `vae/` folder, or a diffusers pipeline folder (its vae/ is used). A
 * folder's config.json scaling_factor / shift_factor override the defaults.
 * The model owns the opened checkpoint. */
fk_status fk_vae_open(fk_context *ctx, const char *path, fk_vae **out);
/* A model with random weights held in memory (f32), drawn exactly like
 * `fluxkit init-random --preset ... --seed seed` (N(0, 1/fan_in) weights,
 * N(0, 0.02²) biases, 1 + N(0, 0.1²) norm scales; Philox, stream = name). */
fk_status fk_vae_create_random(fk_context *ctx, const fk_vae_config *cfg, uint64_t seed,
                               fk_vae **out);
void fk_vae_free(fk_vae *v);

const fk_vae_config *fk_vae_get_config(const fk_vae *v);
/* "bfl", "bfl-prefixed", "diffusers" or "random". */
const char *fk_vae_format(const fk_vae *v);

/* ---- running ---------------------------------------------------------- */

/* Called with intermediate activations (untiled runs only), named like the
 * fixtures' dbg tensors: "dbg.enc.conv_in", "dbg.enc.down{i}.block_last",
 * "dbg.enc.down{i}.downsample", "dbg.enc.mid.block_1", "dbg.enc.mid.attn_1",
 * "dbg.enc.mid.block_2", "dbg.enc.conv_out" (raw moments, 2·z channels),
 * "dbg.dec.z_unscaled", "dbg.dec.conv_in", "dbg.dec.mid.*",
 * "dbg.dec.up{i}.block_last", "dbg.dec.up{i}.upsample",
 * "dbg.dec.conv_out_in" (swish(norm_out(h))). t is a host (CPU) tensor
 * (1, C, H, W) valid during the call; batch index b. */
typedef void (*fk_vae_dbg_fn)(void *user, const char *name, int b, const fk_tensor *t);

typedef struct fk_vae_opts {
    /* Tiling, in latent pixels: tile side and overlap between neighbours.
     * tile 0: never tile. Images whose latent fits in one tile run untiled
     * (and then equal the reference). overlap < 0: tile / 4. */
    int tile;
    int overlap;
    fk_vae_dbg_fn dbg;
    void *dbg_user;
    /* out (may be NULL): the most memory the run held for activations, in
     * bytes: its activation arena — one backend allocation per run, reused
     * by every layer, image and tile, sized by a dry run to the largest sum
     * of live activation buffers of one image or tile — plus host scratch
     * (unscaled latent, tile buffers, blending weights); not the weights,
     * the input or the output. Peaks (FLUX ae, f32 activations): untiled
     * decode 537 MB at 512², 2.15 GB at 1024² (~2.05 kB per output pixel);
     * tiled decode with 64/16 tiles 541 MB for any size, plus 4 bytes per
     * output pixel of blending weights; untiled encode 403 MB at 512². */
    uint64_t *peak_act_bytes;
} fk_vae_opts;

/* tile 0 (untiled), overlap −1 (tile/4), no callback. */
void fk_vae_opts_init(fk_vae_opts *o);
/* Defaults for tiled runs: latent tiles of 64 (512 image pixels), overlap 16. */
#define FK_VAE_DEFAULT_TILE 64
#define FK_VAE_DEFAULT_OVERLAP 16

/* Image → latent. img (B, in_channels, H, W) f32 host tensor (values in
 * [−1, 1]); H, W >= 1 (tiled runs: multiples of the downscale factor).
 * z: a new owning host tensor (B, z_channels, h, w) with h = H / 8 (each
 * stride-2 level maps n to ⌊n/2⌋), = scale·(mean − shift). Caller frees
 * with fk_tensor_free. opts may be NULL (untiled). */
fk_status fk_vae_encode(fk_context *ctx, fk_backend *be, const fk_vae *v, const fk_tensor *img,
                        fk_tensor *z, const fk_vae_opts *opts);
/* Latent → image. z (B, z_channels, h, w) f32 host tensor; img: a new owning
 * host tensor (B, out_ch, 8h, 8w), unclamped. Tiled runs blend the tiles'
 * outputs with linear ramps across the overlaps; GroupNorm statistics and
 * the mid-block attention then see one tile, so the result differs from the
 * untiled one (relative L2 ~2% at 1024² with 64/16 tiles, random weights). */
fk_status fk_vae_decode(fk_context *ctx, fk_backend *be, const fk_vae *v, const fk_tensor *z,
                        fk_tensor *img, const fk_vae_opts *opts);

/* ---- tiling plan (exposed for tests) ------------------------------------ */

/* Tiles along one axis of length n with tile side t and overlap o: the
 * number of tiles k = 1 when n <= t, else ⌈(n − o) / (t − o)⌉, starts spread
 * evenly from 0 to n − t (so neighbours overlap by at least o). Writes up
 * to max starts; returns k (0 on invalid arguments: t < 1, o < 0, o >= t). */
int fk_vae_tile_starts(int64_t n, int64_t t, int64_t o, int64_t *starts, int max);

#endif /* FK_VAE_H */
