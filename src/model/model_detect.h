/* model_detect: what a checkpoint is, from tensor names and shapes only (the
 * data is never read). Each component is recognized by its own module's
 * configuration inference, so `fluxkit info` reports exactly what the loaders
 * would use (sizes from the shapes, the rest from the __metadata__ "config" /
 * a config.json beside the weights, presets by the modules' names):
 *   - FLUX transformers    fk_flux_config_infer / fk_flux_config_name,
 *   - T5 encoders          fk_t5_config_infer   / fk_t5_config_name,
 *   - CLIP text encoders   fk_clip_config_infer / fk_clip_config_name,
 *   - autoencoders         fk_vae_config_infer  / fk_vae_config_name,
 * in BFL / ComfyUI single files (also all-in-one files holding several
 * components under prefixes such as "model.diffusion_model.", "vae.",
 * "text_encoders.clip_l.transformer.") and diffusers / Hugging Face folders.
 * At most one component of each kind is described (the one its infer
 * function picks); further ones of the same kind are named in the note. */
#ifndef FK_MODEL_DETECT_H
#define FK_MODEL_DETECT_H

#include "model/clip.h"
#include "model/flux.h"
#include "model/t5.h"
#include "model/vae.h"

typedef enum fk_model_kind {
    FK_MODEL_UNKNOWN = 0,
    FK_MODEL_FLUX,
    FK_MODEL_T5,
    FK_MODEL_CLIP,
    FK_MODEL_AE,
} fk_model_kind;

/* "unknown", "flux", "t5", "clip", "ae". Static string. */
const char *fk_model_kind_name(fk_model_kind k);

typedef struct fk_model_component {
    fk_model_kind kind;
    /* Key prefix of the component in the file, before its standard layout
     * ("" for plain files; "model.diffusion_model.", "vae.",
     * "text_encoders.clip_l.transformer." in all-in-one files). For CLIP and
     * T5 this is the infer function's prefix without its trailing
     * "text_model." / "encoder.". */
    char prefix[128];
    const char *format; /* "bfl", "bfl-prefixed", "diffusers", "hf", "hf-prefixed" */
    const char *name;   /* the module's preset name ("flux-dev", "t5-xxl", "clip-l", "ae",
                           "tiny-ae", ...) or "custom" */
    /* the inferred configuration of `kind` (the others are zero) */
    fk_flux_config flux;
    fk_t5_config t5;
    fk_clip_config clip;
    fk_vae_config ae;
    /* facts of the file that the configurations do not carry */
    int clip_projection; /* rows of <prefix>text_projection.weight, 0 when absent */
    bool t5_has_decoder; /* a full encoder–decoder T5 (the decoder is unused) */
} fk_model_component;

#define FK_MODEL_MAX_COMPONENTS 4
typedef struct fk_model_info {
    int n;                                      /* components found (0: unknown) */
    fk_model_component comp[FK_MODEL_MAX_COMPONENTS];
    /* why something that looked like a known model was rejected (the infer
     * function's message), and components not described; "" when none */
    char note[1024];
} fk_model_info;

/* Classify the checkpoint. Returns FK_OK also when nothing is recognized
 * (info->n == 0, info->note may say why); errors only on invalid arguments.
 * The context's error message is left as the last infer function set it. */
fk_status fk_model_detect(fk_context *ctx, const fk_st_model *m, fk_model_info *info);

#endif /* FK_MODEL_DETECT_H */
