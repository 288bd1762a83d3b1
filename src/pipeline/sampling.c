/* sampling: schedules and the Euler step, bit-exact with the reference. See
 * sampling.h.
 *
 * Float32 arithmetic without contraction: each f32 operation is written as
 * the double operation rounded to float. For +, −, ×, ÷ this gives exactly
 * the IEEE single-precision result (double has ≥ 2·24 + 2 bits, so the double
 * rounding is innocuous), and the cast between operations stops the compiler
 * from fusing a multiply and an add into an FMA under any -ffp-contract. */
#include "pipeline/sampling.h"

#include <math.h>
#include <string.h>

static inline float fk_f32_add(float a, float b) { return (float)((double)a + (double)b); }
static inline float fk_f32_sub(float a, float b) { return (float)((double)a - (double)b); }
static inline float fk_f32_mul(float a, float b) { return (float)((double)a * (double)b); }
static inline float fk_f32_div(float a, float b) { return (float)((double)a / (double)b); }

double fk_sampling_mu(int64_t image_seq_len, double base_shift, double max_shift) {
    /* get_lin_function(x1=256, y1=base, x2=4096, y2=max): m = (y2 − y1)/(x2 − x1),
     * b = y1 − m·x1, mu = m·x + b; volatile keeps each product rounded (no FMA). */
    volatile double m = (max_shift - base_shift) / (4096.0 - 256.0);
    volatile double mx1 = m * 256.0;
    volatile double b = base_shift - mx1;
    volatile double mx = m * (double)image_seq_len;
    return mx + b;
}

/* torch.linspace(1, 0, steps) in float32 (PyTorch's CPU kernel, AVX2 build):
 * step = (end − start)/(steps − 1) in f32; element i is start + step·i for
 * i < steps/2 and end − step·(steps − i − 1) otherwise — except that the
 * vectorized loop handles blocks of 2×8 elements, where each 8-lane vector is
 * base + k·step with base the scalar formula at its first index. */
static void fk_sampling_linspace_10(float *t, int64_t steps) {
    const float start = 1.0f, end = 0.0f;
    if (steps == 1) {
        t[0] = start;
        return;
    }
    const float step = fk_f32_div(fk_f32_sub(end, start), (float)(steps - 1));
    const int64_t half = steps / 2;
    const int64_t vec = 8, nvec = (steps / (2 * vec)) * (2 * vec);
    int64_t i = 0;
    for (; i < nvec; i += vec) {
        float base = i < half ? fk_f32_add(start, fk_f32_mul(step, (float)i))
                              : fk_f32_sub(end, fk_f32_mul(step, (float)(steps - i - 1)));
        t[i] = base;
        for (int64_t k = 1; k < vec; k++) t[i + k] = fk_f32_add(base, fk_f32_mul((float)k, step));
    }
    for (; i < steps; i++)
        t[i] = i < half ? fk_f32_add(start, fk_f32_mul(step, (float)i))
                        : fk_f32_sub(end, fk_f32_mul(step, (float)(steps - i - 1)));
}

void fk_sampling_schedule_ex(float *ts, int num_steps, int64_t image_seq_len, bool shift,
                             double base_shift, double max_shift) {
    FK_ASSERT(num_steps >= 1);
    fk_sampling_linspace_10(ts, (int64_t)num_steps + 1);
    if (!shift) return;
    double mu = fk_sampling_mu(image_seq_len, base_shift, max_shift);
    /* time_shift(mu, 1, t) = exp(mu) / (exp(mu) + (1/t − 1)**1) on a float32
     * tensor: the Python float exp(mu) is rounded to f32; scalar / tensor is
     * reciprocal(tensor) · scalar; ** 1.0 is the identity. */
    const float e = (float)exp(mu);
    for (int i = 0; i <= num_steps; i++) {
        float t = ts[i];
        if (t == 0.0f) continue; /* 1/0 = inf, 1/inf = 0: stays 0 */
        float a = fk_f32_sub(fk_f32_div(1.0f, t), 1.0f);
        float d = fk_f32_add(e, a);
        ts[i] = fk_f32_mul(fk_f32_div(1.0f, d), e);
    }
}

void fk_sampling_schedule(float *ts, int num_steps, int64_t image_seq_len, bool shift) {
    fk_sampling_schedule_ex(ts, num_steps, image_seq_len, shift, 0.5, 1.15);
}

int fk_sampling_default_steps(const char *model_name) {
    return model_name && !strcmp(model_name, "flux-schnell") ? 4 : 50;
}

bool fk_sampling_default_shift(const char *model_name) {
    return !(model_name && !strcmp(model_name, "flux-schnell"));
}

void fk_sampling_euler_step(float *img, const float *v, size_t n, float t_cur, float t_next) {
    const float dt = (float)((double)t_next - (double)t_cur);
    for (size_t i = 0; i < n; i++) img[i] = fk_f32_add(img[i], fk_f32_mul(dt, v[i]));
}
