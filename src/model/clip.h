/* clip: the CLIP text encoder (Hugging Face CLIPTextModel), as FLUX uses
 * openai/clip-vit-large-patch14 for its pooled conditioning vector (768).
 *
 * Architecture (pre-LN transformer, causal):
 *   x = token_embedding[ids] + position_embedding[0..L)            // (L, W)
 *   per layer: x += out_proj(attn(layer_norm1(x)))  q/k/v/out with biases,
 *                   scale 1/√head_dim, causal mask;
 *              x += fc2(quick_gelu(fc1(layer_norm2(x))))            // fc1 (I, W)
 *   last_hidden_state = final_layer_norm(x)                         // (L, W)
 *   pooler_output     = last_hidden_state[pool]                     // (W)
 * with pool = argmax(ids) (first maximal id) when the config's eos_token_id is
 * 2 — the legacy value in CLIP-L's config, which transformers keeps for
 * compatibility; the end-of-text token 49407 is the highest id, so it is the
 * first end-of-text position — else the first position holding eos_token_id
 * (0 when none does, like torch's argmax of an all-false mask).
 *
 * Weights are views into the memory-mapped checkpoint, read in place by the
 * op table (f32, bf16, f16, fp8). Keys: HF / ComfyUI `text_model.embeddings...`,
 * `text_model.encoder.layers.N...`, `text_model.final_layer_norm...`, also
 * without the `text_model.` prefix or under any other prefix (e.g.
 * `cond_stage_model.transformer.text_model.`); extra tensors (text_projection,
 * position_ids) are ignored. */
#ifndef FK_CLIP_H
#define FK_CLIP_H

#include "backend/backend.h"
#include "io/safetensors.h"
#include "model/flux.h" /* fk_param_fn, fk_param_kind */

typedef enum fk_clip_act {
    FK_CLIP_ACT_QUICK_GELU = 0, /* x·σ(1.702x): CLIP-L ("quick_gelu") */
} fk_clip_act;

typedef struct fk_clip_config {
    int vocab_size;    /* 49408 */
    int max_positions; /* 77 */
    int width;         /* 768 (hidden_size) */
    int layers;        /* 12 */
    int heads;         /* 12: not in the weights; config JSON, else width / 64 */
    int mlp_hidden;    /* 3072 (intermediate_size) */
    float eps;         /* 1e-5 (layer_norm_eps) */
    int eos_token_id;  /* 2 (legacy: pool at argmax id); else pool at first eos */
    fk_clip_act act;
} fk_clip_config;

/* Presets: "clip-l" (openai/clip-vit-large-patch14 text model), "tiny-clip"
 * (the test fixture: vocab 1000, width 64, 3 layers, 4 heads, mlp 256).
 * Returns false for an unknown name. */
bool fk_clip_preset(const char *name, fk_clip_config *cfg);
const char *fk_clip_preset_list(void); /* "clip-l, tiny-clip" */
/* "clip-l", "tiny-clip" or "custom". Static string. */
const char *fk_clip_config_name(const fk_clip_config *cfg);
int64_t fk_clip_param_count(const fk_clip_config *cfg);
/* Every tensor of the HF layout (with the "text_model." prefix), in a fixed
 * order: embeddings, layers, final_layer_norm. */
void fk_clip_enum_params(const fk_clip_config *cfg, fk_param_fn fn, void *user);
/* The config as an HF CLIPTextConfig JSON object string (for __metadata__
 * "config" or a config.json). Caller frees with free(). NULL when out of memory. */
char *fk_clip_config_json(const fk_clip_config *cfg);
/* The same two by preset name (for preset tables): nothing / NULL for an
 * unknown name. */
void fk_clip_enum_preset(const char *preset, fk_param_fn fn, void *user);
char *fk_clip_preset_config_json(const char *preset);

/* Recognize a CLIP text model in a checkpoint: find the key prefix (written to
 * prefix, size n; "text_model." for HF / ComfyUI files), infer sizes from the
 * tensor shapes and counts, and take heads / eps / eos_token_id / activation
 * from, in order: the __metadata__ "config" JSON, a config.json beside the
 * weights (a folder's or an index file's directory) whose model_type is
 * "clip_text_model" or "clip" (its text_config), the CLIP-L defaults
 * (heads = width / 64, eps 1e-5, eos 2, quick_gelu). FK_ERR_FORMAT naming the
 * missing or odd tensor when it is not a CLIP text model. */
fk_status fk_clip_config_infer(fk_context *ctx, const fk_st_model *m, fk_clip_config *cfg,
                               char *prefix, size_t n);

/* ---- the loaded model ---------------------------------------------------- */

typedef struct fk_clip fk_clip;

/* Open weights (a .safetensors file, an index file or a folder, see
 * fk_st_model_open), infer the config, check every tensor's shape and dtype,
 * and bind views. The model owns the mapping; caller frees with fk_clip_free.
 * Any backend (activations in be->alloc memory; the embedding rows are
 * gathered on the host and uploaded). be must outlive the model. */
fk_status fk_clip_load(fk_context *ctx, fk_backend *be, const char *path, fk_clip **out);
/* Same from an opened checkpoint; with take_ownership the model closes m in
 * fk_clip_free (also on failure), else m must outlive the model. */
fk_status fk_clip_load_model(fk_context *ctx, fk_backend *be, fk_st_model *m, bool take_ownership,
                             fk_clip **out);

const fk_clip_config *fk_clip_get_config(const fk_clip *c);
/* Bytes of the weights (in their stored dtypes) and of the activation
 * buffers currently held. */
uint64_t fk_clip_weight_bytes(const fk_clip *c);
uint64_t fk_clip_buffer_bytes(const fk_clip *c);
/* Stored dtype of the linear weights (layer 0's q_proj). */
fk_dtype fk_clip_linear_dtype(const fk_clip *c);
/* Position pooler_output takes for these ids (rule in the header comment). */
int fk_clip_pool_index(const fk_clip_config *cfg, const int64_t *ids, int n);

/* Encode one sequence: ids (n), 1 <= n <= max_positions, each in [0, vocab).
 * hidden (n, width) f32 tensor, caller-allocated, gets last_hidden_state;
 * pooled (width) f32 or NULL gets pooler_output; each in host memory or on
 * the backend's device (host outputs are downloaded). Activation buffers are
 * allocated on first use (sized for n, grown when needed) and kept until
 * fk_clip_release_buffers / fk_clip_free. Errors name the bad id / length. */
fk_status fk_clip_encode(fk_context *ctx, fk_clip *c, const int64_t *ids, int n, fk_tensor *hidden,
                         fk_tensor *pooled);

/* Free the activation buffers (the weights stay mapped). */
void fk_clip_release_buffers(fk_clip *c);
/* Free everything: buffers, views and — when owned — the mapping. NULL ok. */
void fk_clip_free(fk_clip *c);

#endif /* FK_CLIP_H */
