/* sampling: rectified-flow schedules and the Euler sampler of the FLUX
 * reference (black-forest-labs/flux src/flux/sampling.py). */
#ifndef FK_SAMPLING_H
#define FK_SAMPLING_H

#include "core/core.h"

/* μ of the resolution-dependent shift: the line through (256, base_shift)
 * and (4096, max_shift) at image_seq_len (number of image tokens), in double
 * exactly as the reference's Python float math. Reference defaults: base 0.5,
 * max 1.15. */
double fk_sampling_mu(int64_t image_seq_len, double base_shift, double max_shift);

/* get_schedule(num_steps, image_seq_len, shift): num_steps + 1 timesteps from
 * 1 down to 0 into ts. Bit-exact with the reference run on PyTorch's CPU:
 *   t = linspace(1, 0, num_steps + 1) in float32, as PyTorch's AVX2 kernel
 *       computes it (8-lane vectors, two per loop iteration, the rest scalar;
 *       each half from its own end);
 *   if shift: t ← e^μ / (e^μ + (1/t − 1)) in float32 tensor ops, i.e.
 *       r = 1/t, a = r − 1, d = f32(e^μ) + a, t = (1/d)·f32(e^μ)  (t = 0 stays 0).
 * num_steps >= 1. Shift on for dev and mini, off for schnell. */
void fk_sampling_schedule(float *ts, int num_steps, int64_t image_seq_len, bool shift);
/* The same with explicit base/max shift. */
void fk_sampling_schedule_ex(float *ts, int num_steps, int64_t image_seq_len, bool shift,
                             double base_shift, double max_shift);

/* Default number of steps and whether to shift, by model: dev and mini 50
 * steps with shift, schnell 4 steps without. name: "flux-dev", "flux-mini",
 * "flux-schnell" (anything else: as dev). */
int fk_sampling_default_steps(const char *model_name);
bool fk_sampling_default_shift(const char *model_name);

/* One Euler step of the reference sampler, in place:
 * img[i] += (t_next − t_cur) · v[i], with the step size a float32 (the
 * reference multiplies the f32 tensor by the Python float t_prev − t_curr,
 * which PyTorch rounds to f32) and the update in f32. img, v (n). */
void fk_sampling_euler_step(float *img, const float *v, size_t n, float t_cur, float t_next);

#endif /* FK_SAMPLING_H */
