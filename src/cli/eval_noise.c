/* fluxkit eval noise: the reference start noise of FLUX's sampler,
 *   torch.randn((1, 16, 2·⌈H/16⌉, 2·⌈W/16⌉), dtype=bfloat16,
 *               generator=torch.Generator("cpu").manual_seed(seed)),
 * written as `noise` (BF16), bit-exact (src/core/torch_rng.h). No weights or
 * inputs: --seed, --height and --width (pixels) say which noise. */
#include "cli/cli_util.h"
#include "core/torch_rng.h"

fk_status fk_eval_noise(fk_context *ctx, const fk_eval_opts *o, const fk_st_file *in, fk_eval_out *out) {
    (void)in;
    if (o->height <= 0 || o->width <= 0)
        return fk_error(ctx, FK_ERR_ARG, "eval noise: needs --height and --width (image pixels) and --seed");
    fk_tensor noise;
    fk_status st = fk_torch_noise(ctx, (uint64_t)o->seed, o->height, o->width, FK_BF16, &noise);
    if (st != FK_OK) return st;
    st = fk_eval_out_add(ctx, out, "noise", &noise);
    fk_tensor_free(&noise);
    return st;
}
