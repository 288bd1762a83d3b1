/* torch_rng: PyTorch's CPU random generator and torch.randn, bit-exact, so a
 * seed gives the reference's starting noise:
 *
 *   torch.randn((1, 16, 2·⌈H/16⌉, 2·⌈W/16⌉), dtype=torch.bfloat16,
 *               generator=torch.Generator("cpu").manual_seed(seed))
 *
 * What PyTorch does (ATen CPUGeneratorImpl + native/cpu/DistributionTemplates.h,
 * checked bit for bit against torch 2.x on x86-64 for f32, bf16 and f16):
 *
 * - Generator: mt19937. manual_seed(s) initializes the 624-word state from the
 *   low 32 bits of s (state[0] = s, state[i] = 1812433253·(state[i−1] ^
 *   state[i−1] >> 30) + i) and clears the cached normal. random() is one
 *   32-bit draw, random64() two: (first << 32) | second.
 * - uniform_real_distribution<float>(0, 1): (random() & (2²⁴ − 1)) · 2⁻²⁴;
 *   <double>: (random64() & (2⁵³ − 1)) · 2⁻⁵³.
 * - randn of n >= 16 contiguous elements ("normal_fill"): uniforms in float,
 *   Box–Muller on blocks of 16: for j < 8, u1 = 1 − u[j], u2 = u[j+8],
 *   r = √(−2·log u1), θ = f32(2π)·u2, out[j] = r·cos θ, out[j+8] = r·sin θ.
 *   - float32: all n uniforms are drawn first into the output, then each
 *     complete block of 16 is transformed in place; when 16 ∤ n, 16 fresh
 *     uniforms overwrite the last 16 positions and are transformed again.
 *   - bfloat16 / float16: computed in float ("opmath") block by block — 16
 *     uniforms into a float buffer, transformed, rounded (RNE) to the output;
 *     when 16 ∤ n one more block of 16 fresh uniforms is written to the last
 *     16 positions. So the bf16 tensor is NOT the bf16 rounding of the f32
 *     tensor of the same seed when 16 ∤ n (the f32 path draws n + 16 uniforms,
 *     the bf16 path 16·⌈n/16⌉), but it is when 16 | n.
 *   - log, sin and cos are not libm's: x86 builds (AVX2 and AVX-512 dispatch
 *     alike) use the Cephes-style polynomials of avx_mathfun.h (log256_ps,
 *     sincos256_ps) compiled with FMA contraction; this file evaluates the same
 *     polynomials in the same order with the same fused multiply-adds. (A
 *     PyTorch forced to ATEN_CPU_CAPABILITY=default, or a non-x86 build, uses
 *     libm instead and differs in the last bit of a few values.)
 * - randn of n < 16 elements: normal_distribution<double> one value at a time:
 *   u1, u2 double uniforms, r = √(−2·log1p(−u2)), θ = 2π·u1, returns r·cos θ
 *   and caches r·sin θ for the next call (libm double functions, like
 *   PyTorch's; exact wherever both use the same libm).
 */
#ifndef FK_TORCH_RNG_H
#define FK_TORCH_RNG_H

#include "core/core.h"
#include "core/dtype.h"
#include "core/tensor.h"

#define FK_TORCH_MT_N 624

typedef struct fk_torch_gen {
    uint32_t state[FK_TORCH_MT_N];
    int next;                 /* next state word to temper; N: twist first */
    uint64_t seed;            /* as given to manual_seed */
    bool has_next_normal;     /* normal_distribution<double> cache */
    double next_normal;
} fk_torch_gen;

/* torch.Generator("cpu").manual_seed(seed). */
void fk_torch_gen_init(fk_torch_gen *g, uint64_t seed);
/* generator.random() / random64(). */
uint32_t fk_torch_gen_u32(fk_torch_gen *g);
uint64_t fk_torch_gen_u64(fk_torch_gen *g);
/* uniform_real_distribution<float|double>(0, 1). */
float fk_torch_uniform_f32(fk_torch_gen *g);
double fk_torch_uniform_f64(fk_torch_gen *g);
/* normal_distribution<double>(0, 1) with the generator's cache. */
double fk_torch_normal_f64(fk_torch_gen *g);

/* The float Box–Muller block of normal_fill, in place on 16 uniforms:
 * (exposed for tests). */
void fk_torch_normal_block16(float data[16]);

/* out (n) = torch.randn(n, dtype=dt, generator=g) for dt F32, BF16 or F16
 * (out points to n elements of that dtype); advances g like PyTorch does.
 * FK_ERR_UNSUPPORTED for other dtypes. */
fk_status fk_torch_randn(fk_context *ctx, fk_torch_gen *g, fk_dtype dt, void *out, size_t n);

/* Shape of the reference noise for an image of height × width pixels:
 * (1, 16, 2·⌈height/16⌉, 2·⌈width/16⌉). */
void fk_torch_noise_shape(int64_t height, int64_t width, int64_t shape[4]);

/* The reference starting noise for (seed, height, width): a new owning CPU
 * tensor of the shape above in dtype dt (BF16 as FLUX's reference; F32 or F16
 * give torch.randn of that dtype). height, width in [1, 65536]. Caller frees
 * with fk_tensor_free. */
fk_status fk_torch_noise(fk_context *ctx, uint64_t seed, int64_t height, int64_t width, fk_dtype dt,
                         fk_tensor *out);

#endif /* FK_TORCH_RNG_H */
