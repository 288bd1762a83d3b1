/* t5: the T5 v1.1 encoder (Hugging Face T5EncoderModel), as FLUX uses
 * google/t5-v1_1-xxl for its text tokens (L × 4096).
 *
 * Architecture (pre-norm, no biases, no attention scaling):
 *   x = shared[ids]                                                   // (L, d_model)
 *   bias[h, i, j] = relative_attention_bias[bucket(j − i), h]         // (H, L, L)
 *       from layer 0's table only, reused by every layer
 *   per layer: x += o(attn(q, k, v of rms(x)·ln0; scale 1, + bias))   // q/k/v (L, H·d_kv)
 *              x += wo(gelu_tanh(wi_0(rms(x)·ln1)) ⊙ wi_1(rms(x)·ln1))  // gated-GELU, d_ff
 *   last_hidden_state = rms(x) · final_layer_norm                     // (L, d_model)
 * rms(x) = x / √(mean(x²) + eps) without mean subtraction (T5LayerNorm), eps 1e-6.
 * No attention mask: FLUX runs the encoder over the padded sequence.
 *
 * bucket(r) (bidirectional, num_buckets B = 32, max_distance M = 128): half the
 * buckets per direction (B' = 16; r > 0 adds 16), n = |r|; n < B'/2 → n;
 * else B'/2 + trunc(logf(n / (B'/2)) / log(M / (B'/2)) · (B' − B'/2)) capped at
 * B' − 1, computed in float32 as the reference does (its .float()).
 *
 * Weights are views into the memory-mapped checkpoint (f32, bf16, f16, fp8 read
 * in place). Keys: HF / ComfyUI `encoder.block.N.layer.0.SelfAttention.{q,k,v,o}`,
 * `...layer.0.layer_norm`, `...layer.1.DenseReluDense.{wi_0,wi_1,wo}`,
 * `...layer.1.layer_norm`, `encoder.final_layer_norm`, the embedding as
 * `encoder.embed_tokens.weight` or `shared.weight`; any key prefix (e.g.
 * `text_encoders.t5xxl.transformer.`). fp8 files with ComfyUI scales
 * (`<linear>.scale_weight` or `<linear>.weight_scale`, one value or one per
 * output row) compute y = scale · (x · w_fp8ᵀ). */
#ifndef FK_T5_H
#define FK_T5_H

#include "backend/backend.h"
#include "io/safetensors.h"
#include "model/flux.h" /* fk_param_fn, fk_param_kind */

typedef struct fk_t5_config {
    int vocab_size;   /* 32128 */
    int d_model;      /* 4096 */
    int layers;       /* 24 */
    int heads;        /* 64 (rows of relative_attention_bias: (buckets, heads)) */
    int d_kv;         /* 64 per head; H·d_kv need not equal d_model */
    int d_ff;         /* 10240 */
    int num_buckets;  /* 32 */
    int max_distance; /* 128 (not in the weights: config JSON, else 128) */
    float eps;        /* 1e-6 */
} fk_t5_config;

/* Presets: "t5-xxl" (google/t5-v1_1-xxl encoder), "tiny-t5" (the test fixture:
 * vocab 320, d_model 64, 3 layers, 4 heads × 16, d_ff 160). */
bool fk_t5_preset(const char *name, fk_t5_config *cfg);
const char *fk_t5_preset_list(void); /* "t5-xxl, tiny-t5" */
const char *fk_t5_config_name(const fk_t5_config *cfg); /* preset name or "custom" */
int64_t fk_t5_param_count(const fk_t5_config *cfg);
/* Every tensor of the HF layout in a fixed order: shared.weight (the
 * embedding, FK_PARAM_EMBEDDING), blocks, encoder.final_layer_norm.weight.
 * relative_attention_bias is reported as FK_PARAM_EMBEDDING. */
void fk_t5_enum_params(const fk_t5_config *cfg, fk_param_fn fn, void *user);
/* HF T5Config JSON (encoder only, gated-gelu). Caller frees with free(). */
char *fk_t5_config_json(const fk_t5_config *cfg);
/* The same two by preset name (for preset tables): nothing / NULL for an
 * unknown name. */
void fk_t5_enum_preset(const char *preset, fk_param_fn fn, void *user);
char *fk_t5_preset_config_json(const char *preset);

/* Recognize a T5 encoder: the key prefix of the blocks (written to prefix,
 * size n; "encoder." for HF / ComfyUI files), sizes from shapes (heads and
 * buckets from relative_attention_bias), max_distance / eps from the
 * __metadata__ "config" JSON or a config.json beside the weights with
 * model_type "t5", else 128 / 1e-6. FK_ERR_FORMAT naming the missing tensor
 * when it is not a T5 v1.1 encoder (T5 v1.0's single `wi` is rejected). */
fk_status fk_t5_config_infer(fk_context *ctx, const fk_st_model *m, fk_t5_config *cfg, char *prefix,
                             size_t n);

/* The bucket of relative position rel = key − query (see above). */
int fk_t5_relative_bucket(int64_t rel, bool bidirectional, int num_buckets, int max_distance);

/* ---- the loaded model ---------------------------------------------------- */

typedef struct fk_t5 fk_t5;

/* Open weights (file, index file or folder), infer the config, check every
 * tensor's shape and dtype, bind views. The model owns the mapping; caller
 * frees with fk_t5_free. Any backend (activations in be->alloc memory, the
 * embedding rows and position bias built on the host and uploaded; the fp8
 * scale of "scaled" checkpoints is the scale_cols op, its scale a host
 * weight: the checkpoint's per-row tensor, or the single value repeated in a
 * buffer the model owns). FK_ERR_UNSUPPORTED when a scaled checkpoint meets
 * a backend without scale_cols for its scale dtype. be must outlive it. */
fk_status fk_t5_load(fk_context *ctx, fk_backend *be, const char *path, fk_t5 **out);
/* Same from an opened checkpoint (take_ownership: closed by fk_t5_free, also
 * on failure). */
fk_status fk_t5_load_model(fk_context *ctx, fk_backend *be, fk_st_model *m, bool take_ownership,
                           fk_t5 **out);

const fk_t5_config *fk_t5_get_config(const fk_t5 *t);
/* Bytes of the bound weights (stored dtypes) and of the buffers held now. */
uint64_t fk_t5_weight_bytes(const fk_t5 *t);
uint64_t fk_t5_buffer_bytes(const fk_t5 *t);
/* Bytes of activation buffers an n-token encode needs. */
uint64_t fk_t5_buffer_bytes_for(const fk_t5_config *cfg, int n);
/* Number of linear weights carrying an fp8 scale (0 for plain files). */
int fk_t5_scaled_linears(const fk_t5 *t);
/* Stored dtype of the linear weights (layer 0's q) and of the embedding. */
fk_dtype fk_t5_linear_dtype(const fk_t5 *t);
fk_dtype fk_t5_embedding_dtype(const fk_t5 *t);

/* Encode one sequence: ids (n), n >= 1, each in [0, vocab). out (n, d_model)
 * f32 tensor in host memory or on the backend's device (downloaded into a
 * host one), caller-allocated, gets last_hidden_state. Buffers (incl. the
 * (H, n, n) position bias) are allocated on first use and kept until
 * fk_t5_release_buffers / fk_t5_free; the bias is built once per n while
 * they stay (a device backend's host copy of it stays until fk_t5_free, so a
 * re-allocation only uploads it). */
fk_status fk_t5_encode(fk_context *ctx, fk_t5 *t, const int64_t *ids, int n, fk_tensor *out);

void fk_t5_release_buffers(fk_t5 *t);
/* Free everything: buffers, views and — when owned — the mapping. NULL ok.
 * A backend that keeps copies of host weights by address (be->cache_weight,
 * a device backend) must then get be->uncache_weights before another model
 * is loaded: that model's weights (or the scale buffers above) may reuse
 * the freed addresses. */
void fk_t5_free(fk_t5 *t);

#endif /* FK_T5_H */
