/* backend: the op table. One table per device; every model is written once
 * against it. The CPU backend (src/backend/cpu/) is the fp32 reference and the
 * specification for every other backend; the conformance tests compare each
 * backend with it.
 *
 * Conventions
 * - Activations are f32; weights (w, b, scale) may be f32, bf16, f16 or fp8
 *   (e4m3fn / e5m2) and are read in place, accumulation in f32.
 * - bf16 activations, the one exception: the y and x of linear and
 *   linear_act, the y[i] and x of linear_multi, the y, x1 and x2 of
 *   linear_cat may be FK_BF16 where supports() says so for those operands
 *   (for linear_multi: linear_act's answer for each product). A backend says
 *   so only where its product rounds that operand to bf16 nearest-even
 *   anyway (CPU: bf16 mode with a bf16 kernel, at least FK_CPU_BF16_MIN_M
 *   rows), so that a bf16 y holds exactly what the consumer would have made
 *   of the f32 y: the same bits downstream, half the bytes. The y of
 *   layernorm_modulate and the out of attention may be FK_BF16 on the same
 *   terms: the f32 result rounded to bf16 nearest-even, for a product's x (a
 *   backend says so where its products would take that x in bf16). So may
 *   the q, k and v of attention, where the attention rounds them to bf16
 *   nearest-even anyway (read in place), and the y of rmsnorm_rope, its f32
 *   result rounded, for attention's q and k. Models ask supports() for the
 *   producer and every consumer and keep f32 otherwise (FLUX: the MLP
 *   hidden state, the modulated LayerNorm outputs, the attention output,
 *   q, k and v).
 * - Tiled bf16 activations: a bf16 activation handed from a product (the y
 *   of linear, linear_act, linear_multi, linear_cat) to products (the x of
 *   linear and linear_act, the x2 of linear_cat after an x1 of a multiple of
 *   FK_TILE_KC columns) may be in the tile layout (tensor.h's
 *   FK_LAYOUT_TILES: the CPU AMX products' packed operand) where supports()
 *   says so for that operand: the same values, no repacking by the
 *   consumer. No other op takes a tiled tensor; fk_tensor_nbytes counts its
 *   padding. FLUX: the MLP hidden state. The x of linear_rmsnorm_rope is a
 *   product's x in both respects, its y (M, N) one of rmsnorm_rope.
 * - Tensors are contiguous row-major; "rows" = product of leading dims.
 * - Ops do not allocate and do not fail on valid input: callers check shapes
 *   at load time; ops FK_ASSERT their preconditions (a failed assert is a bug).
 * - Unless stated, y may alias x (in-place) for elementwise ops, never for
 *   linear, attention, conv2d or transpose.
 * - Operand roles: the weight operands are w and b of linear, linear_act,
 *   linear_cat and conv2d; w and b of layernorm and group_norm; scale of
 *   rmsnorm and rmsnorm_rope; s of scale_cols. Every other tensor operand is
 *   an activation. On a device backend activations are device memory, while
 *   a weight operand may be either device memory or a host tensor
 *   (FK_DEVICE_CPU) whose contents never change, which the backend may copy
 *   to the device once and cache by pointer (devsim.h checks both rules).
 * - Determinism: the CPU reference parallelizes only over independent outputs,
 *   so results are bitwise identical for any thread count.
 * - Backward ops (training) will be added beside each forward op with the same
 *   naming (linear_backward: dx, dw, db from dy, x, w; parameter grads +=,
 *   activation grads =), see docs/NOTES.md.
 */
#ifndef FK_BACKEND_H
#define FK_BACKEND_H

#include "core/tensor.h"

typedef enum fk_op {
    FK_OP_LINEAR = 0,
    FK_OP_LAYERNORM,
    FK_OP_RMSNORM,
    FK_OP_SILU,
    FK_OP_GELU_TANH,
    FK_OP_GELU_QUICK,
    FK_OP_SOFTMAX,
    FK_OP_ATTENTION,
    FK_OP_ROPE,
    FK_OP_ADD,
    FK_OP_MUL,
    FK_OP_MODULATE,
    FK_OP_GATED_ADD,
    FK_OP_CONCAT_ROWS,
    FK_OP_SPLIT_ROWS,
    FK_OP_COPY_COLS,
    FK_OP_CONV2D,
    FK_OP_GROUP_NORM,
    FK_OP_UPSAMPLE_NEAREST2X,
    FK_OP_LINEAR_ACT,
    FK_OP_LAYERNORM_MODULATE,
    FK_OP_RMSNORM_ROPE,
    FK_OP_LINEAR_CAT,
    FK_OP_TRANSPOSE,
    FK_OP_SCALE_COLS,
    FK_OP_LINEAR_RMSNORM_ROPE,
    FK_OP_COUNT
} fk_op;

const char *fk_op_name(fk_op op);

/* Activation fused into linear_act (the same functions as the activation ops). */
typedef enum fk_act {
    FK_ACT_NONE = 0,
    FK_ACT_GELU_TANH,
    FK_ACT_SILU,
    FK_ACT_GELU_QUICK,
    FK_ACT_COUNT
} fk_act;

typedef struct fk_backend fk_backend;

struct fk_backend {
    const char *name;   /* "cpu", "cuda" */
    fk_device device;
    int n_threads;
    void *impl;         /* backend-private state */

    /* True when the backend implements `op` for these operand dtypes/shapes
     * (srcs as in the op's argument order, NULL entries allowed). */
    bool (*supports)(const fk_backend *be, fk_op op, const fk_tensor *const *srcs, int n_srcs);

    void (*destroy)(fk_backend *be);

    /* ---- memory (device buffers; CPU: fk_alloc) ---- */
    void *(*alloc)(fk_backend *be, size_t bytes);
    void (*free)(fk_backend *be, void *p);
    /* host → device / device → host / device → device copies of nbytes */
    void (*upload)(fk_backend *be, void *dst, const void *src, size_t nbytes);
    void (*download)(fk_backend *be, void *dst, const void *src, size_t nbytes);
    void (*synchronize)(fk_backend *be);

    /* ---- weight cache ----
     * cache_weight: keep a copy of weight w (N, K) in the layout this
     * backend's products read fastest (CPU in bf16 mode: pre-packed AMX
     * tiles; a GPU: device memory) and use it in every later linear /
     * linear_act whose weight has the same data pointer, dtype and shape.
     * Returns the bytes held for w; 0 when w is not cached (nothing to gain
     * here, or no memory: the ops then read w itself). w must not change
     * while cached. uncache_weights drops every copy. */
    size_t (*cache_weight)(fk_backend *be, const fk_tensor *w);
    void (*uncache_weights)(fk_backend *be);
    /* Optional (NULL: nothing to release): free the working memory the
     * backend keeps between ops (scratch buffers grown on demand: converted
     * operands, attention scores, im2col chunks); the next op that needs it
     * allocates again, with the same results. Cached weights and tensors
     * from alloc stay. Callers use it between phases that need different
     * scratch (text encoders, transformer, autoencoder), so the peak is the
     * largest phase's, not their sum. */
    void (*release_scratch)(fk_backend *be);

    /* ---- ops ---- */

    /* y = x·wᵀ + b.  y (M, N) f32, x (M, K) f32, w (N, K) any float dtype,
     * b (N) any float dtype or NULL. */
    void (*linear)(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                   const fk_tensor *b);

    /* y = act(x·wᵀ + b): the bits of linear followed by the activation op
     * (backends fuse the activation into the product's output stage, which
     * saves a pass over y). Operands as for linear. */
    void (*linear_act)(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                       const fk_tensor *b, fk_act act);

    /* Several products of the same x: y[i] = act[i](x·w[i]ᵀ + b[i]) for
     * i < n, each with the bits of linear_act(y[i], x, w[i], b[i], act[i])
     * (b[i] may be NULL). A backend may prepare x once for all of them (CPU
     * bf16: its tiles packed once; FLUX: q, k, v and the MLP of a block read
     * the same x). y[i] must not overlap x. Optional: NULL here, and callers
     * go through fk_backend_linear_multi, which then calls linear_act. */
    void (*linear_multi)(fk_backend *be, int n, fk_tensor *const *y, const fk_tensor *x,
                         const fk_tensor *const *w, const fk_tensor *const *b,
                         const fk_act *act);

    /* y = [x1 | x2]·wᵀ + b, the rows of x1 (M, K1) and x2 (M, K2) joined:
     * w (N, K1 + K2). The bits of linear on the concatenation; backends that
     * can read the two parts in place do not write it (FLUX single blocks:
     * [attention | MLP] · linear2ᵀ), the others join the rows in tmp
     * (M, K1 + K2) f32, which the caller provides (planned memory). */
    void (*linear_cat)(fk_backend *be, fk_tensor *y, const fk_tensor *x1, const fk_tensor *x2,
                       const fk_tensor *w, const fk_tensor *b, fk_tensor *tmp);

    /* LayerNorm over the last dim. y, x (M, C); w, b (C) or NULL (no affine). */
    void (*layernorm)(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                      const fk_tensor *b, float eps);

    /* RMSNorm over the last dim: y = x / sqrt(mean(x²) + eps) · scale.
     * y, x (M, C); scale (C). */
    void (*rmsnorm)(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *scale,
                    float eps);

    /* Elementwise activations, any shape, y may alias x.
     * silu: x·σ(x); gelu_tanh: 0.5x(1+tanh(√(2/π)(x+0.044715x³)));
     * gelu_quick: x·σ(1.702x) (CLIP). */
    void (*silu)(fk_backend *be, fk_tensor *y, const fk_tensor *x);
    void (*gelu_tanh)(fk_backend *be, fk_tensor *y, const fk_tensor *x);
    void (*gelu_quick)(fk_backend *be, fk_tensor *y, const fk_tensor *x);

    /* Softmax over the last dim. y, x (M, C). */
    void (*softmax)(fk_backend *be, fk_tensor *y, const fk_tensor *x);

    /* Multi-head scaled-dot-product attention, token-major layout.
     * out (Lq, H·D); q (Lq, H, D); k, v (Lk, H, D); all f32 (bf16 where
     * supports() says so: bf16 activations above).
     * out[l, h·D + d] = Σ_j softmax_j(scale·q[l,h]·k[j,h] + bias[h,l,j]) v[j,h,d]
     * bias (H, Lq, Lk) f32 or NULL; causal masks j > l. */
    void (*attention)(fk_backend *be, fk_tensor *out, const fk_tensor *q, const fk_tensor *k,
                      const fk_tensor *v, const fk_tensor *bias, float scale, bool causal);

    /* FLUX RoPE on adjacent pairs, in place. x (L, H, D) f32; pe (L, D/2, 2, 2) f32:
     * (x[2j], x[2j+1]) ← (pe[l,j,0,0]·x0 + pe[l,j,0,1]·x1, pe[l,j,1,0]·x0 + pe[l,j,1,1]·x1). */
    void (*rope)(fk_backend *be, fk_tensor *x, const fk_tensor *pe);

    /* y = a + b, y = a · b (same shapes; y may alias a or b). */
    void (*add)(fk_backend *be, fk_tensor *y, const fk_tensor *a, const fk_tensor *b);
    void (*mul)(fk_backend *be, fk_tensor *y, const fk_tensor *a, const fk_tensor *b);

    /* adaLN modulation: y[b,t,:] = (1 + scale[b,:])·x[b,t,:] + shift[b,:].
     * x, y (B·T, C) seen as (B, T, C); shift, scale (B, C) f32. y may alias x. */
    void (*modulate)(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *shift,
                     const fk_tensor *scale);

    /* adaLN: y = (1 + scale)·LayerNorm(x) + shift (LayerNorm without affine),
     * rows seen as (B, T, C) as in modulate: the bits of layernorm (w = b =
     * NULL) followed by modulate, in one pass. y may alias x. */
    void (*layernorm_modulate)(fk_backend *be, fk_tensor *y, const fk_tensor *x,
                               const fk_tensor *shift, const fk_tensor *scale, float eps);

    /* FLUX QK norm + RoPE: y, x (L, H, D) f32; every (l, h) row of x is
     * RMS-normalized with scale (D) (any float dtype), then rotated by pe
     * (L, D/2, 2, 2) as in rope: the bits of rmsnorm then rope, in one pass.
     * y may alias x; y may be bf16 where supports() says so (bf16
     * activations above: attention's q and k). */
    void (*rmsnorm_rope)(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *scale,
                         const fk_tensor *pe, float eps);

    /* FLUX's q or k projection with its QK norm and RoPE: y = rmsnorm_rope of
     * (x·wᵀ + b) seen as (M, N / D, D), D = numel(scale): the bits of linear
     * into an f32 y followed by rmsnorm_rope(y, y, scale, pe, eps), in one
     * op (backends apply the norm and the rotation to each output panel
     * while it is stored: no f32 y to write and read again). y (M, N) f32,
     * or bf16 on the terms of rmsnorm_rope's y (attention's q or k); x, w,
     * b as for linear (x bf16 or tiled where supports() says so); scale (D)
     * any float dtype; pe (M, D/2, 2, 2) f32. Optional: NULL here, and
     * callers run linear and rmsnorm_rope (supports() says no then). */
    void (*linear_rmsnorm_rope)(fk_backend *be, fk_tensor *y, const fk_tensor *x,
                                const fk_tensor *w, const fk_tensor *b, const fk_tensor *scale,
                                const fk_tensor *pe, float eps);

    /* Gated residual: x[b,t,:] += gate[b,:]·y[b,t,:].  x, y (B·T, C); gate (B, C). */
    void (*gated_add)(fk_backend *be, fk_tensor *x, const fk_tensor *y, const fk_tensor *gate);

    /* Along tokens (rows): out (La+Lb, C) = [a (La, C); b (Lb, C)], and back. */
    void (*concat_rows)(fk_backend *be, fk_tensor *out, const fk_tensor *a, const fk_tensor *b);
    void (*split_rows)(fk_backend *be, fk_tensor *a, fk_tensor *b, const fk_tensor *in);

    /* Column block copy: dst[:, dc0 : dc0+n] = src[:, sc0 : sc0+n].
     * dst (M, Nd), src (M, Ns), same dtype. Splits qkv / joins [attn | mlp]. */
    void (*copy_cols)(fk_backend *be, fk_tensor *dst, int64_t dc0, const fk_tensor *src,
                      int64_t sc0, int64_t n);

    /* 2-D convolution (cross-correlation), NCHW.
     * y (B, Co, Ho, Wo); x (B, Ci, H, W) f32; w (Co, Ci, kh, kw) any float dtype;
     * b (Co) or NULL; pad = {top, left, bottom, right} zeros;
     * Ho = (H + top + bottom - kh) / stride + 1, likewise Wo. */
    void (*conv2d)(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                   const fk_tensor *b, int stride, const int pad[4]);

    /* GroupNorm: y, x (B, C, H, W); w, b (C) any float dtype; groups divides C. */
    void (*group_norm)(fk_backend *be, fk_tensor *y, const fk_tensor *x, int groups,
                       const fk_tensor *w, const fk_tensor *b, float eps);

    /* Nearest-neighbour ×2: y (B, C, 2H, 2W), x (B, C, H, W). */
    void (*upsample_nearest2x)(fk_backend *be, fk_tensor *y, const fk_tensor *x);

    /* Batched transpose of the last two dims, pure data movement (the bits
     * of x are copied): y[b, c, r] = x[b, r, c]. x (B, R, C) f32, y (B, C, R)
     * f32: the same ndim >= 2, the same leading dims (B = their product; 1
     * for ndim 2), the last two swapped. y never overlaps x. Channel-major ↔
     * token-major (the VAE attention block: (1, C, H·W) ↔ (1, H·W, C)). */
    void (*transpose)(fk_backend *be, fk_tensor *y, const fk_tensor *x);

    /* Column scale: y[i, j] = x[i, j] · s[j], one f32 multiply (round to
     * nearest) per element. y, x (M, N) f32 (rows = product of the leading
     * dims); s (N) a weight operand of any float dtype, decoded to f32 as
     * fk_convert_to_f32 does. y may alias x. (Scaled fp8 checkpoints: the
     * per-output-channel scale after the product.) */
    void (*scale_cols)(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *s);
};

/* Views of activation memory (the backend's memory), tagged with be's
 * device: how the runners hand activations to the ops (the operand rule).
 * fk_be_view2_as: of dtype dt (FK_BF16 for bf16 activations); the others f32. */
static inline fk_tensor fk_be_view2_as(const fk_backend *be, fk_dtype dt, const void *p,
                                       int64_t d0, int64_t d1) {
    fk_tensor t = fk_view2(dt, (void *)p, d0, d1);
    t.device = be->device;
    return t;
}

static inline fk_tensor fk_be_view2(const fk_backend *be, const void *p, int64_t d0, int64_t d1) {
    return fk_be_view2_as(be, FK_F32, p, d0, d1);
}

static inline fk_tensor fk_be_view3_as(const fk_backend *be, fk_dtype dt, const void *p,
                                       int64_t d0, int64_t d1, int64_t d2) {
    fk_tensor t = fk_view3(dt, (void *)p, d0, d1, d2);
    t.device = be->device;
    return t;
}

static inline fk_tensor fk_be_view3(const fk_backend *be, const void *p, int64_t d0, int64_t d1,
                                    int64_t d2) {
    return fk_be_view3_as(be, FK_F32, p, d0, d1, d2);
}

static inline fk_tensor fk_be_view4(const fk_backend *be, const void *p, int64_t d0, int64_t d1,
                                    int64_t d2, int64_t d3) {
    fk_tensor t = fk_view4(FK_F32, (void *)p, d0, d1, d2, d3);
    t.device = be->device;
    return t;
}

/* be->linear_multi when the backend has it, else linear (act[i] none) or
 * linear_act for each i. */
void fk_backend_linear_multi(fk_backend *be, int n, fk_tensor *const *y, const fk_tensor *x,
                             const fk_tensor *const *w, const fk_tensor *const *b,
                             const fk_act *act);

/* The CPU backend (fp32 reference). n_threads <= 0: all online CPUs.
 * Caller frees with be->destroy(be). NULL when out of memory. */
fk_backend *fk_backend_cpu_create(int n_threads);

#endif /* FK_BACKEND_H */
