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

/* Largest head_dim accepted (the RoPE table is built per pair). */
#define FK_FLUX_MAX_HEAD_DIM 8192

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

/* Default RoPE axes when a checkpoint does not say (see fk_flux_config_infer):
 * head_dim 128 → [16, 56, 56] (every released FLUX.1 model); otherwise the
 * same proportions, axes[1] = axes[2] = 2·⌊7·head_dim/32⌋, axes[0] = the rest
 * (head_dim 16 → [4, 6, 6], head_dim 32 → [4, 14, 14]). */
void fk_flux_default_axes(int head_dim, int axes_dim[3]);

/* Check a config for internal consistency (positive sizes, hidden =
 * heads·head_dim, even head_dim, axes even and summing to head_dim).
 * FK_ERR_ARG with a message naming the field. */
fk_status fk_flux_config_check(fk_context *ctx, const fk_flux_config *cfg);

/* ---- a loaded transformer ------------------------------------------------
 * Weights are views (fk_st_view) into the mapped checkpoint, in the file's
 * dtype (f32, bf16, f16, fp8 e4m3fn / e5m2); the op table reads them in place.
 * A tensor whose data is NULL is absent (a bias of a layer without one).
 * The fused BFL tensors are kept as row views of their parts, so BFL files
 * and diffusers folders (which store q, k, v, mlp as separate tensors) load
 * with no copy at all:
 *   qkv (3C, C)        → q, k, v = rows [0,C), [C,2C), [2C,3C)
 *   linear1 (3C+M, C)  → q, k, v, mlp rows
 *   final adaLN (2C,C) → shift = rows [0,C), scale = rows [C,2C) (BFL order;
 *                        diffusers norm_out.linear stores [scale | shift]).
 * Shapes below: C hidden, D head_dim, M mlp_hidden. */

typedef struct fk_flux_linear {
    fk_tensor w; /* (out, in) */
    fk_tensor b; /* (out) or absent */
} fk_flux_linear;

/* MLPEmbedder: out_layer(SiLU(in_layer(x))). */
typedef struct fk_flux_embedder {
    fk_flux_linear in_layer;  /* (C, d_in) */
    fk_flux_linear out_layer; /* (C, C) */
} fk_flux_embedder;

/* One stream (img or txt) of a double block. */
typedef struct fk_flux_stream {
    fk_flux_linear mod;             /* (6C, C): shift1 scale1 gate1 shift2 scale2 gate2 */
    fk_flux_linear q, k, v;         /* (C, C) each */
    fk_tensor q_scale, k_scale;     /* (D) QK RMSNorm scales */
    fk_flux_linear proj;            /* (C, C) */
    fk_flux_linear mlp0, mlp2;      /* (M, C), (C, M) */
} fk_flux_stream;

typedef struct fk_flux_double {
    fk_flux_stream img, txt;
} fk_flux_double;

typedef struct fk_flux_single {
    fk_flux_linear mod;         /* (3C, C): shift scale gate */
    fk_flux_linear q, k, v;     /* (C, C) each, rows of linear1 */
    fk_flux_linear mlp;         /* (M, C), rows [3C, 3C+M) of linear1 */
    fk_tensor q_scale, k_scale; /* (D) */
    fk_flux_linear linear2;     /* (C, C+M) */
} fk_flux_single;

typedef struct fk_flux_weights {
    fk_flux_linear img_in;          /* (C, in_channels) */
    fk_flux_linear txt_in;          /* (C, context_dim) */
    fk_flux_embedder time_in;       /* d_in 256 */
    fk_flux_embedder vector_in;     /* d_in vec_dim */
    fk_flux_embedder guidance_in;   /* d_in 256; absent without guidance_embed */
    fk_flux_double *dbl;            /* [depth_double] */
    fk_flux_single *sgl;            /* [depth_single] */
    fk_flux_linear final_shift;     /* (C, C) rows of final_layer.adaLN_modulation.1 */
    fk_flux_linear final_scale;     /* (C, C) */
    fk_flux_linear final_linear;    /* (out_channels, C) */
} fk_flux_weights;

typedef struct fk_flux_model {
    fk_flux_config cfg;
    const char *format;       /* "bfl", "bfl-prefixed", "diffusers", "memory" */
    fk_flux_weights w;
    fk_st_model *st;          /* the checkpoint (NULL for in-memory weights) */
    bool owns_st;             /* st closed by fk_flux_free */
    void *owned;              /* in-memory weights (fk_flux_create_random), or NULL */
    uint64_t mapped_bytes;    /* weight bytes used in place from the mapping */
    uint64_t copied_bytes;    /* bytes of weights held in memory (copies, random init) */
    int64_t n_params;
    fk_dtype dtype;           /* dtype of the linear weights (first one seen) */
    bool mixed_dtypes;        /* weights of more than one dtype */
} fk_flux_model;

/* Load a transformer from a checkpoint: a BFL .safetensors file (plain or
 * with the "model.diffusion_model." prefix of all-in-one files), a diffusers
 * transformer/ folder (or a pipeline folder holding one), or its
 * *.safetensors.index.json. The configuration is
 * inferred (fk_flux_config_infer); every tensor's shape and dtype is checked,
 * and an error names the tensor and the expected shape. Caller frees with
 * fk_flux_free. */
fk_status fk_flux_load(fk_context *ctx, const char *path, fk_flux_model **out);
/* The same on an open checkpoint, which the caller keeps open for the
 * model's lifetime (the model borrows it). */
fk_status fk_flux_load_st(fk_context *ctx, const fk_st_model *m, fk_flux_model **out);
/* Random weights in memory (no file), dtype F32, BF16, F16 or F8_E4M3:
 * linear weights N(0, 1/fan_in), biases N(0, 0.02²), norm scales 1 + N(0, 0.1²),
 * deterministic in seed (Philox, stream per tensor name). For benchmarks. */
fk_status fk_flux_create_random(fk_context *ctx, const fk_flux_config *cfg, fk_dtype dtype,
                                uint64_t seed, fk_flux_model **out);
void fk_flux_free(fk_flux_model *m);

/* ---- forward ---------------------------------------------------------------
 * One sample (batch 1). Activations are f32; every heavy op goes through the
 * backend's op table. The joint sequence is kept in one (n_txt + n_img, C)
 * buffer, text rows first, for the whole forward: double blocks work on its
 * two row ranges, single blocks on all of it, so no concatenation is needed;
 * q/k/v are written straight into (L, H, D) row ranges by row views of the
 * projection weights. */

/* Memory plan for one step at (n_img, n_txt): all activation and scratch
 * buffers are allocated once by fk_flux_runner_create and reused. */
typedef struct fk_flux_plan {
    int64_t n_img, n_txt;
    uint64_t weight_bytes;  /* mapped + in-memory weights */
    uint64_t act_bytes;     /* residual stream (L, C), output, conditioning, RoPE table */
    uint64_t scratch_bytes; /* per-block temporaries: xmod, q, k, v, attn (L, C), mlp (L, M),
                               [attn | mlp] (L, C+M) */
    uint64_t io_bytes;      /* runners on a device backend: staging of host inputs and the
                               host output (img, txt, y, out) in device memory; 0 on the CPU
                               and from fk_flux_plan_compute */
} fk_flux_plan;

void fk_flux_plan_compute(const fk_flux_config *cfg, int64_t n_img, int64_t n_txt,
                          fk_flux_plan *plan);

/* Named intermediate tensors, reported through a hook while the forward runs.
 * The tensor is a host tensor (downloaded from a device backend's memory),
 * valid only during the call (copy what you keep). Names:
 *   FK_FLUX_HOOK_BLOCKS: "double.{i}.img", "double.{i}.txt", "single.{i}.img",
 *                        "single.{i}.txt" (each block's output, (n, C));
 *   FK_FLUX_HOOK_DEBUG:  "dbg.t_emb", "dbg.g_emb", "dbg.time_in", "dbg.guidance_in",
 *                        "dbg.vector_in", "dbg.vec", "dbg.img_in", "dbg.txt_in",
 *                        "dbg.pe" (L, D/2, 2, 2), "dbg.double0.{img,txt}_mod",
 *                        "dbg.double0.{img,txt}_qkv", "dbg.double0.{img,txt}_attn",
 *                        "dbg.single0.mod", "dbg.single0.linear1",
 *                        "dbg.single0.linear2_in", "dbg.final_in"
 *                        (the names of the fixtures, see tests/data/flux).
 * With no hook (or flags 0) nothing extra is computed or copied. */
#define FK_FLUX_HOOK_BLOCKS 1u
#define FK_FLUX_HOOK_DEBUG 2u
typedef void (*fk_flux_hook_fn)(void *user, const char *name, const fk_tensor *t);

/* Inputs (and the output of fk_flux_forward) may be in host memory
 * (device FK_DEVICE_CPU) or on the runner's backend device: host tensors
 * are uploaded into the runner's staging memory (img, txt, y) or read on the
 * host (the ids, for the RoPE table), the host output is downloaded. On the
 * CPU backend everything is used in place (no copy). */
typedef struct fk_flux_inputs {
    const fk_tensor *img;     /* (n_img, in_channels) f32; leading dims of 1 allowed */
    const fk_tensor *img_ids; /* (n_img, 3) f32: (0, patch row, patch column) */
    const fk_tensor *txt;     /* (n_txt, context_dim) f32 */
    const fk_tensor *txt_ids; /* (n_txt, 3) f32 (zeros for T5 tokens) */
    const fk_tensor *y;       /* (vec_dim) f32, pooled CLIP */
    float timestep;           /* t in [0, 1] (the model multiplies by 1000) */
    float guidance;           /* ignored by models without guidance embedding */
} fk_flux_inputs;

typedef struct fk_flux_runner fk_flux_runner;

/* Allocate the buffers of the plan for (n_img, n_txt) on backend `be`
 * (borrowed; so is the model): one be->alloc block of device memory for the
 * activations (plus, on a device backend, io_bytes of input/output staging),
 * a small host block for the glue computed on the host (RoPE ids and table,
 * timestep embedding), which is uploaded. Any backend device. Checks that
 * the backend supports the weights' dtypes (weights stay host tensors: a
 * device backend uploads / caches them itself). Caller frees with
 * fk_flux_runner_free. */
fk_status fk_flux_runner_create(fk_context *ctx, const fk_flux_model *m, fk_backend *be,
                                int64_t n_img, int64_t n_txt, fk_flux_runner **out);
void fk_flux_runner_free(fk_flux_runner *r);
const fk_flux_plan *fk_flux_runner_plan(const fk_flux_runner *r);

/* Compute the modulation vectors (every block's adaLN shift/scale/gate and
 * the final layer's) for the steps at `timesteps` (n of them) with this
 * guidance and pooled vector y, in products of a few rows: the modulation
 * weights (0.87 G for Flux-mini) are then read n/8 times instead of n.
 * fk_flux_forward uses them when its timestep is one of these (bit for bit),
 * its guidance equals this one and its y is this same tensor (same data
 * pointer: do not change y's contents afterwards); any other call computes
 * its own. Results are bitwise those of the per-step computation. Memory:
 * n · (12·depth_double + 3·depth_single + 2) · hidden floats (1.1 MB per
 * step for Flux-mini) of backend memory. y in host memory or on the device.
 * n = 0 drops them. */
fk_status fk_flux_runner_precompute(fk_context *ctx, fk_flux_runner *r, const float *timesteps,
                                    int n, float guidance, const fk_tensor *y);

/* Ask the runner's backend to cache the weights of the large products (the
 * blocks' q/k/v/proj/MLP linears, and txt_in) in its preferred layout
 * (be->cache_weight; the CPU in bf16 mode keeps pre-packed AMX tiles, which
 * makes the products ~10% faster for a one-time packing pass). Only streams
 * with at least 32 rows at this runner's token counts are cached. With
 * `release`, the mapped file pages of each cached weight are dropped from
 * memory once copied (fk_st_model_release), so the copy replaces them
 * instead of doubling the resident weights. *bytes (may be NULL): bytes now
 * cached. Backends without a cache: FK_OK, 0 bytes. */
fk_status fk_flux_runner_cache_weights(fk_context *ctx, fk_flux_runner *r, bool release,
                                       uint64_t *bytes);

/* Set (or clear, fn = NULL) the hook for the next forward calls. */
void fk_flux_runner_set_hook(fk_flux_runner *r, fk_flux_hook_fn fn, unsigned flags, void *user);

/* velocity = model(img, txt, ...). out (n_img, out_channels) f32 (leading dims
 * of 1 allowed), host or device (see fk_flux_inputs); out must not alias the
 * inputs. Shapes are checked against the runner's (n_img, n_txt) and the
 * config: FK_ERR_SHAPE naming the input; a tensor on another device than the
 * host or the backend's: FK_ERR_ARG. */
fk_status fk_flux_forward(fk_context *ctx, fk_flux_runner *r, const fk_flux_inputs *in,
                          fk_tensor *out);

/* FLOPs of one forward at (n_img, n_txt): 2·M·N·K per matmul plus 4·L²·C for
 * attention (QKᵀ and PV), counted analytically. */
double fk_flux_flops(const fk_flux_config *cfg, int64_t n_img, int64_t n_txt);

/* 256-d sinusoidal embedding of t (the model's time and guidance input):
 * args = 1000·t·exp(−ln(10000)·i/128), out = [cos(args) | sin(args)].
 * Computed in double, rounded once to f32. */
void fk_flux_timestep_embedding(float t, float out[256]);

/* RoPE table (L, D/2, 2, 2) for ids (L, 3): angle = id[axis]·θ^(−2j/d_axis),
 * entries [[cos, −sin], [sin, cos]], computed in double, rounded to f32. */
void fk_flux_rope_table(const fk_flux_config *cfg, const float *ids, int64_t L, float *pe);

#endif /* FK_FLUX_H */
