/* cuda_elementwise: activations, add / mul, adaLN modulation, gated residual,
 * RoPE, layernorm, rmsnorm, softmax, the fused layernorm_modulate and
 * rmsnorm_rope, and the row / column copies.
 *
 * Elementwise ops run grid-stride loops, four floats per thread (float4)
 * when every pointer is 16-byte aligned and the length divides; y may alias
 * x (no __restrict__ on those). Row reductions (the norms, softmax) run one
 * block per row: partial sums per thread (double for the norms, as the
 * reference's statistics; f32 for softmax's Σ e^(x−max) of terms <= 1)
 * combined in double by a fixed warp-shuffle tree (deterministic), two
 * passes for the LayerNorm variance as the reference does (mean, then
 * Σ(x − mean)²); rmsnorm_rope runs one warp per (l, h) row of D elements.
 * The FLUX shapes (layernorm_modulate with C = 3072, rmsnorm_rope with
 * D = 128) take variants that hold a row in registers as float4: x read
 * once, 16-byte accesses (_v4 kernels). The y of both fused norms may be
 * bf16 (backend.h's bf16 activations): the f32 result rounded to
 * nearest-even.
 * The formulas are the reference's (cpu_ew.h, cpu_norm.c); results agree
 * with it to f32 rounding (expf is not the CPU's polynomial: ~1 ulp), not
 * bitwise. */
#include "backend/cuda/cuda_internal.h"

#include <string.h>

#define FK_EW_THREADS 256

static bool fk_al16(const void *p) { return ((uintptr_t)p & 15) == 0; }

static unsigned fk_ew_grid(const fk_cuda_impl *im, int64_t n) {
    return fk_cuda_blocks(n, FK_EW_THREADS, (int64_t)im->sm_count * 8);
}

/* threads of a one-block-per-row kernel for rows of C elements */
static unsigned fk_row_threads(int64_t C) {
    if (C >= 256) return 256;
    unsigned t = (unsigned)((C + 31) / 32 * 32);
    return t < 32 ? 32 : t;
}

/* ---- activations, add, mul ---- */

template <bool V4> __global__ void fk_k_act(float *y, const float *x, int64_t n, fk_act act) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (V4) {
        for (; i < n / 4; i += stride) {
            float4 v = reinterpret_cast<const float4 *>(x)[i];
            v.x = fk_dev_act(act, v.x), v.y = fk_dev_act(act, v.y);
            v.z = fk_dev_act(act, v.z), v.w = fk_dev_act(act, v.w);
            reinterpret_cast<float4 *>(y)[i] = v;
        }
    } else {
        for (; i < n; i += stride) y[i] = fk_dev_act(act, x[i]);
    }
}

static void fk_cuda_act(fk_backend *be, fk_tensor *y, const fk_tensor *x, fk_act act) {
    fk_cuda_impl *im = fk_cuda_enter(be);
    fk_cuda_assert_act(y);
    fk_cuda_assert_act(x);
    FK_ASSERT(x->dtype == FK_F32 && y->dtype == FK_F32);
    const int64_t n = fk_tensor_numel(x);
    FK_ASSERT(fk_tensor_numel(y) == n);
    if (n == 0) return;
    if (n % 4 == 0 && fk_al16(x->data) && fk_al16(y->data))
        fk_k_act<true><<<fk_ew_grid(im, n / 4), FK_EW_THREADS, 0, im->stream>>>(
            (float *)y->data, (const float *)x->data, n, act);
    else
        fk_k_act<false><<<fk_ew_grid(im, n), FK_EW_THREADS, 0, im->stream>>>(
            (float *)y->data, (const float *)x->data, n, act);
    FK_CU_LAUNCH();
}

extern "C" void fk_cuda_silu(fk_backend *be, fk_tensor *y, const fk_tensor *x) {
    fk_cuda_act(be, y, x, FK_ACT_SILU);
}
extern "C" void fk_cuda_gelu_tanh(fk_backend *be, fk_tensor *y, const fk_tensor *x) {
    fk_cuda_act(be, y, x, FK_ACT_GELU_TANH);
}
extern "C" void fk_cuda_gelu_quick(fk_backend *be, fk_tensor *y, const fk_tensor *x) {
    fk_cuda_act(be, y, x, FK_ACT_GELU_QUICK);
}

template <bool V4, bool MUL>
__global__ void fk_k_binary(float *y, const float *a, const float *b, int64_t n) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (V4) {
        for (; i < n / 4; i += stride) {
            float4 u = reinterpret_cast<const float4 *>(a)[i];
            float4 v = reinterpret_cast<const float4 *>(b)[i];
            float4 r;
            r.x = MUL ? u.x * v.x : u.x + v.x;
            r.y = MUL ? u.y * v.y : u.y + v.y;
            r.z = MUL ? u.z * v.z : u.z + v.z;
            r.w = MUL ? u.w * v.w : u.w + v.w;
            reinterpret_cast<float4 *>(y)[i] = r;
        }
    } else {
        for (; i < n; i += stride) y[i] = MUL ? a[i] * b[i] : a[i] + b[i];
    }
}

template <bool MUL>
static void fk_cuda_binary(fk_backend *be, fk_tensor *y, const fk_tensor *a, const fk_tensor *b) {
    fk_cuda_impl *im = fk_cuda_enter(be);
    fk_cuda_assert_act(y);
    fk_cuda_assert_act(a);
    fk_cuda_assert_act(b);
    FK_ASSERT(y->dtype == FK_F32 && a->dtype == FK_F32 && b->dtype == FK_F32);
    const int64_t n = fk_tensor_numel(a);
    FK_ASSERT(fk_tensor_numel(b) == n && fk_tensor_numel(y) == n);
    if (n == 0) return;
    float *yd = (float *)y->data;
    const float *ad = (const float *)a->data, *bd = (const float *)b->data;
    if (n % 4 == 0 && fk_al16(yd) && fk_al16(ad) && fk_al16(bd))
        fk_k_binary<true, MUL><<<fk_ew_grid(im, n / 4), FK_EW_THREADS, 0, im->stream>>>(yd, ad, bd, n);
    else
        fk_k_binary<false, MUL><<<fk_ew_grid(im, n), FK_EW_THREADS, 0, im->stream>>>(yd, ad, bd, n);
    FK_CU_LAUNCH();
}

extern "C" void fk_cuda_add(fk_backend *be, fk_tensor *y, const fk_tensor *a, const fk_tensor *b) {
    fk_cuda_binary<false>(be, y, a, b);
}
extern "C" void fk_cuda_mul(fk_backend *be, fk_tensor *y, const fk_tensor *a, const fk_tensor *b) {
    fk_cuda_binary<true>(be, y, a, b);
}

/* ---- modulate, gated_add: rows (B·T, C), per-batch vectors (B, C) ---- */

/* GATED: x = x + g·y (x is `y` here, y is `x`); else y = (1 + sc)·x + sh.
 * Columns in units of 4 floats when V4. Rows strided by gridDim.y. */
template <bool V4, bool GATED>
__global__ void fk_k_rowvec(float *y, const float *x, const float *__restrict__ sh,
                            const float *__restrict__ sc, int64_t R, int64_t C, int64_t T) {
    const int64_t cv = V4 ? C / 4 : C;
    for (int64_t r = blockIdx.y; r < R; r += gridDim.y) {
        const int64_t bi = r / T;
        float *yr = y + r * C;
        const float *xr = x + r * C;
        const float *shr = sh ? sh + bi * C : NULL, *scr = sc + bi * C;
        for (int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; c < cv;
             c += (int64_t)gridDim.x * blockDim.x) {
            if (V4) {
                float4 xv = reinterpret_cast<const float4 *>(xr)[c];
                float4 s = reinterpret_cast<const float4 *>(scr)[c];
                float4 o;
                if (GATED) {
                    float4 yv = reinterpret_cast<const float4 *>(yr)[c];
                    o.x = yv.x + s.x * xv.x, o.y = yv.y + s.y * xv.y;
                    o.z = yv.z + s.z * xv.z, o.w = yv.w + s.w * xv.w;
                } else {
                    float4 t = reinterpret_cast<const float4 *>(shr)[c];
                    o.x = (1.0f + s.x) * xv.x + t.x, o.y = (1.0f + s.y) * xv.y + t.y;
                    o.z = (1.0f + s.z) * xv.z + t.z, o.w = (1.0f + s.w) * xv.w + t.w;
                }
                reinterpret_cast<float4 *>(yr)[c] = o;
            } else {
                yr[c] = GATED ? yr[c] + scr[c] * xr[c] : (1.0f + scr[c]) * xr[c] + shr[c];
            }
        }
    }
}

template <bool GATED>
static void fk_cuda_rowvec(fk_cuda_impl *im, float *y, const float *x, const float *sh,
                           const float *sc, int64_t R, int64_t C, int64_t T) {
    if (R == 0 || C == 0) return;
    const bool v4 = C % 4 == 0 && fk_al16(y) && fk_al16(x) && fk_al16(sc) && (!sh || fk_al16(sh));
    const int64_t cv = v4 ? C / 4 : C;
    dim3 grid(fk_cuda_blocks(cv, FK_EW_THREADS, 64), (unsigned)(R < 65535 ? R : 65535));
    if (v4)
        fk_k_rowvec<true, GATED><<<grid, FK_EW_THREADS, 0, im->stream>>>(y, x, sh, sc, R, C, T);
    else
        fk_k_rowvec<false, GATED><<<grid, FK_EW_THREADS, 0, im->stream>>>(y, x, sh, sc, R, C, T);
    FK_CU_LAUNCH();
}

extern "C" void fk_cuda_modulate(fk_backend *be, fk_tensor *y, const fk_tensor *x,
                                 const fk_tensor *shift, const fk_tensor *scale) {
    fk_cuda_impl *im = fk_cuda_enter(be);
    fk_cuda_assert_act(y);
    fk_cuda_assert_act(x);
    fk_cuda_assert_act(shift);
    fk_cuda_assert_act(scale);
    FK_ASSERT(y->dtype == FK_F32 && x->dtype == FK_F32 && shift->dtype == FK_F32 &&
              scale->dtype == FK_F32);
    const int64_t R = fk_tensor_rows(x), C = fk_tensor_cols(x); /* x, y (B·T, C) */
    const int64_t B = fk_tensor_rows(shift);                    /* shift, scale (B, C) */
    FK_ASSERT(fk_tensor_rows(y) == R && fk_tensor_cols(y) == C);
    FK_ASSERT(fk_tensor_cols(shift) == C && fk_tensor_rows(scale) == B &&
              fk_tensor_cols(scale) == C);
    FK_ASSERT(B > 0 && R % B == 0);
    fk_cuda_rowvec<false>(im, (float *)y->data, (const float *)x->data,
                          (const float *)shift->data, (const float *)scale->data, R, C, R / B);
}

extern "C" void fk_cuda_gated_add(fk_backend *be, fk_tensor *x, const fk_tensor *y,
                                  const fk_tensor *gate) {
    fk_cuda_impl *im = fk_cuda_enter(be);
    fk_cuda_assert_act(x);
    fk_cuda_assert_act(y);
    fk_cuda_assert_act(gate);
    FK_ASSERT(x->dtype == FK_F32 && y->dtype == FK_F32 && gate->dtype == FK_F32);
    const int64_t R = fk_tensor_rows(x), C = fk_tensor_cols(x); /* x, y (B·T, C) */
    const int64_t B = fk_tensor_rows(gate);                     /* gate (B, C) */
    FK_ASSERT(fk_tensor_rows(y) == R && fk_tensor_cols(y) == C && fk_tensor_cols(gate) == C);
    FK_ASSERT(B > 0 && R % B == 0);
    /* the kernel's output is its first argument: x += gate·y */
    fk_cuda_rowvec<true>(im, (float *)x->data, (const float *)y->data, NULL,
                         (const float *)gate->data, R, C, R / B);
}

/* ---- output stores of the fused norms (layernorm_modulate, rmsnorm_rope) ---- */

/* stores of an f32 result into an f32 y, or into a bf16 y rounded to
 * nearest-even as the products round their x (backend.h's bf16 activations) */
static __device__ __forceinline__ void fk_dev_st(float *p, float v) { *p = v; }
static __device__ __forceinline__ void fk_dev_st(__nv_bfloat16 *p, float v) {
    *p = __float2bfloat16_rn(v);
}
static __device__ __forceinline__ void fk_dev_st4(float *p, float4 v) {
    *reinterpret_cast<float4 *>(p) = v;
}
static __device__ __forceinline__ void fk_dev_st4(__nv_bfloat16 *p, float4 v) {
    __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y), hi = __floats2bfloat162_rn(v.z, v.w);
    uint2 u;
    u.x = *reinterpret_cast<uint32_t *>(&lo);
    u.y = *reinterpret_cast<uint32_t *>(&hi);
    *reinterpret_cast<uint2 *>(p) = u;
}

/* ---- RoPE ---- */

/* pe rows may carry leading 1s: (1, 1, L, D/2, 2, 2) */
static void fk_cuda_check_pe(const fk_tensor *pe, int64_t L, int64_t D) {
    fk_cuda_assert_act(pe);
    FK_ASSERT(pe->dtype == FK_F32);
    FK_ASSERT(pe->ndim >= 3 && pe->shape[pe->ndim - 1] == 2 && pe->shape[pe->ndim - 2] == 2 &&
              pe->shape[pe->ndim - 3] == D / 2 && fk_tensor_numel(pe) == L * D * 2);
}

/* (x0, x1) ← (p0·x0 + p1·x1, p2·x0 + p3·x1), the reference expression */
static __device__ __forceinline__ float2 fk_dev_rot(float2 v, float4 p) {
    return make_float2(p.x * v.x + p.y * v.y, p.z * v.x + p.w * v.y);
}

/* x (L·H rows, D) in place; one thread per pair, rows strided by gridDim.y */
__global__ void fk_k_rope(float *__restrict__ x, const float *__restrict__ pe, int64_t rows,
                          int64_t H, int64_t D) {
    const int64_t np = D / 2;
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
        const float *pl = pe + (r / H) * D * 2; /* (D/2, 2, 2) of position l */
        float *xr = x + r * D;
        for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < np;
             j += (int64_t)gridDim.x * blockDim.x) {
            const float4 p = make_float4(pl[4 * j], pl[4 * j + 1], pl[4 * j + 2], pl[4 * j + 3]);
            const float2 v = make_float2(xr[2 * j], xr[2 * j + 1]);
            const float2 o = fk_dev_rot(v, p);
            xr[2 * j] = o.x, xr[2 * j + 1] = o.y;
        }
    }
}

extern "C" void fk_cuda_rope(fk_backend *be, fk_tensor *x, const fk_tensor *pe) {
    fk_cuda_impl *im = fk_cuda_enter(be);
    fk_cuda_assert_act(x);
    FK_ASSERT(x->dtype == FK_F32 && x->ndim == 3); /* x (L, H, D) */
    const int64_t L = x->shape[0], H = x->shape[1], D = x->shape[2];
    FK_ASSERT(D % 2 == 0);
    fk_cuda_check_pe(pe, L, D);
    const int64_t rows = L * H;
    if (rows == 0 || D == 0) return;
    dim3 grid(fk_cuda_blocks(D / 2, 128, 64), (unsigned)(rows < 65535 ? rows : 65535));
    fk_k_rope<<<grid, 128, 0, im->stream>>>((float *)x->data, (const float *)pe->data, rows, H, D);
    FK_CU_LAUNCH();
}

/* rmsnorm then RoPE of each (l, h) row of D elements: one warp per row,
 * lanes over the pairs. y = (x·r)·scale with r = 1/√(mean(x²) + eps),
 * rotated. TY float, or __nv_bfloat16 for a bf16 y (attention's q and k:
 * the f32 result rounded to nearest-even). An f32 y may alias x: the lane
 * that writes a pair has read it (and the whole row, for Σx², before the
 * warp's sum) first. */
template <typename TY>
__global__ void fk_k_rmsnorm_rope(TY *y, const float *x, const void *__restrict__ scale,
                                  fk_dtype sdt, const float *__restrict__ pe, int64_t rows,
                                  int64_t H, int64_t D, float eps) {
    const int lane = threadIdx.x & 31;
    const int64_t wpb = blockDim.x >> 5;
    const int64_t np = D / 2;
    for (int64_t r = (int64_t)blockIdx.x * wpb + (threadIdx.x >> 5); r < rows;
         r += (int64_t)gridDim.x * wpb) {
        const float *xr = x + r * D;
        TY *yr = y + r * D;
        const float *pl = pe + (r / H) * D * 2;
        double ss = 0.0;
        for (int64_t j = lane; j < np; j += 32) {
            const double a = xr[2 * j], b = xr[2 * j + 1];
            ss += a * a + b * b;
        }
        ss = fk_dev_warp_sum_d(ss);
        const double rinv = 1.0 / sqrt(ss / (double)D + (double)eps);
        /* rmsnorm's expression (float)(x·r)·scale, then the rotation; two
         * element stores (a bf16 y may be only 2-byte aligned here) */
        for (int64_t j = lane; j < np; j += 32) {
            const float a = (float)((double)xr[2 * j] * rinv) * fk_dev_load_f32(scale, sdt, 2 * j);
            const float b =
                (float)((double)xr[2 * j + 1] * rinv) * fk_dev_load_f32(scale, sdt, 2 * j + 1);
            const float4 p = make_float4(pl[4 * j], pl[4 * j + 1], pl[4 * j + 2], pl[4 * j + 3]);
            const float2 o = fk_dev_rot(make_float2(a, b), p);
            fk_dev_st(yr + 2 * j, o.x);
            fk_dev_st(yr + 2 * j + 1, o.y);
        }
    }
}

/* The same for D = 128·NC with x and pe 16-byte aligned and y 16-byte (f32)
 * or 8-byte (bf16) aligned (FLUX: D = 128): lane i holds float4 chunks i,
 * i + 32, … of its row in registers (one read of x instead of two, 16-byte
 * accesses) and its scale values for every row; chunk c is pairs 2c and
 * 2c + 1, whose rotations are float4 2c and 2c + 1 of the position's pe
 * row. The expressions are the scalar kernel's; only Σx² adds in another
 * order (double, so results differ by at most a rounding of the final
 * float, rarely). Chunk c goes to y as 4 floats or 4 bf16 (fk_dev_st4); an
 * f32 y may alias x, since the row is in registers before the warp's sum. */
template <int NC, typename TY>
__global__ void fk_k_rmsnorm_rope_v4(TY *y, const float *x, const void *__restrict__ scale,
                                     fk_dtype sdt, const float *__restrict__ pe, int64_t rows,
                                     int64_t H, float eps) {
    constexpr int D = 128 * NC;
    const int lane = threadIdx.x & 31;
    const int64_t wpb = blockDim.x >> 5;
    float sc[NC][4];
#pragma unroll
    for (int c = 0; c < NC; c++)
#pragma unroll
        for (int e = 0; e < 4; e++) sc[c][e] = fk_dev_load_f32(scale, sdt, 4 * (lane + 32 * c) + e);
    for (int64_t r = (int64_t)blockIdx.x * wpb + (threadIdx.x >> 5); r < rows;
         r += (int64_t)gridDim.x * wpb) {
        const float4 *xr = reinterpret_cast<const float4 *>(x + r * D);
        TY *yr = y + r * D;
        const float4 *pl = reinterpret_cast<const float4 *>(pe + (r / H) * D * 2);
        float4 v[NC];
        double ss = 0.0;
#pragma unroll
        for (int c = 0; c < NC; c++) {
            v[c] = xr[lane + 32 * c];
            const double a = v[c].x, b = v[c].y, a2 = v[c].z, b2 = v[c].w;
            ss += a * a + b * b;
            ss += a2 * a2 + b2 * b2;
        }
        ss = fk_dev_warp_sum_d(ss);
        const double rinv = 1.0 / sqrt(ss / (double)D + (double)eps);
#pragma unroll
        for (int c = 0; c < NC; c++) {
            const int j = 2 * (lane + 32 * c); /* the chunk's first pair */
            const float a = (float)((double)v[c].x * rinv) * sc[c][0];
            const float b = (float)((double)v[c].y * rinv) * sc[c][1];
            const float a2 = (float)((double)v[c].z * rinv) * sc[c][2];
            const float b2 = (float)((double)v[c].w * rinv) * sc[c][3];
            const float2 o = fk_dev_rot(make_float2(a, b), pl[j]);
            const float2 o2 = fk_dev_rot(make_float2(a2, b2), pl[j + 1]);
            fk_dev_st4(yr + 4 * (lane + 32 * c), make_float4(o.x, o.y, o2.x, o2.y));
        }
    }
}

/* the launches of fk_cuda_rmsnorm_rope for a y of type TY; v4: x, pe and y
 * aligned for fk_k_rmsnorm_rope_v4 */
template <typename TY>
static void fk_rmsnorm_rope_launch(fk_cuda_impl *im, TY *y, const float *x, fk_cu_wptr s,
                                   const float *pe, int64_t rows, int64_t H, int64_t D, bool v4,
                                   float eps) {
    const int64_t wpb = 8; /* warps per block */
    const unsigned blocks = fk_cuda_blocks(rows, wpb, (int64_t)im->sm_count * 32);
    if (v4 && D == 128)
        fk_k_rmsnorm_rope_v4<1><<<blocks, 32 * wpb, 0, im->stream>>>(y, x, s.p, s.dt, pe, rows,
                                                                      H, eps);
    else if (v4 && D == 256)
        fk_k_rmsnorm_rope_v4<2><<<blocks, 32 * wpb, 0, im->stream>>>(y, x, s.p, s.dt, pe, rows,
                                                                      H, eps);
    else
        fk_k_rmsnorm_rope<<<blocks, 32 * wpb, 0, im->stream>>>(y, x, s.p, s.dt, pe, rows, H, D,
                                                               eps);
    FK_CU_LAUNCH();
}

extern "C" void fk_cuda_rmsnorm_rope(fk_backend *be, fk_tensor *y, const fk_tensor *x,
                                     const fk_tensor *scale, const fk_tensor *pe, float eps) {
    fk_cuda_impl *im = fk_cuda_enter(be);
    fk_cuda_assert_act(y);
    fk_cuda_assert_act(x);
    const bool ybf = y->dtype == FK_BF16; /* bf16 activations (supports(): bf16 mode) */
    FK_ASSERT(x->dtype == FK_F32 && x->ndim == 3); /* x (L, H, D) */
    FK_ASSERT(y->dtype == FK_F32 || (ybf && im->bf16));
    FK_ASSERT(fk_tensor_same_shape(y, x)); /* y (L, H, D) */
    FK_ASSERT(!ybf || y->data != x->data); /* a bf16 y cannot overlay its x */
    const int64_t L = x->shape[0], H = x->shape[1], D = x->shape[2];
    FK_ASSERT(D % 2 == 0);
    FK_ASSERT(scale && fk_tensor_numel(scale) == D && fk_dtype_is_float(scale->dtype)); /* (D) */
    fk_cuda_check_pe(pe, L, D);
    const int64_t rows = L * H;
    if (rows == 0 || D == 0) return;
    fk_cu_wptr s = fk_cuda_weight(be, scale, FK_CU_SCR_STAGE0);
    const float *xd = (const float *)x->data, *ped = (const float *)pe->data;
    /* the v4 kernels store 4 elements of y at once: 16 bytes f32, 8 bytes bf16 */
    const bool v4 = fk_al16(x->data) && fk_al16(pe->data) &&
                    ((uintptr_t)y->data & (ybf ? 7 : 15)) == 0;
    if (ybf)
        fk_rmsnorm_rope_launch(im, (__nv_bfloat16 *)y->data, xd, s, ped, rows, H, D, v4, eps);
    else
        fk_rmsnorm_rope_launch(im, (float *)y->data, xd, s, ped, rows, H, D, v4, eps);
}

/* ---- row norms and softmax: one block per row ---- */

/* mean and 1/√(var + eps) of row x (C), two passes in double as the
 * reference (cpu_norm.c): Σx, then Σ(x − mean)², per-thread partial sums
 * combined by the block tree. f32 partials are not enough: with |mean| ≫ std
 * (an offset row) their rounding moves the mean by a sizeable part of the
 * std, and the float-rounded mean alone moves x − mean by ulp(mean)/2. */
static __device__ __forceinline__ void fk_dev_ln_stats(const float *x, int64_t C, float eps,
                                                       double *sh, double *mean, double *rstd) {
    double s = 0.0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += (double)x[c];
    const double m = C ? fk_dev_block_sum_d(s, sh) / (double)C : 0.0;
    double q = 0.0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        const double d = (double)x[c] - m;
        q += d * d;
    }
    const double v = C ? fk_dev_block_sum_d(q, sh) / (double)C : 0.0;
    *mean = m;
    *rstd = 1.0 / sqrt(v + (double)eps);
}

/* y = (float)((x − mean)·rstd) (·w) (+ b), w and b of any float dtype or NULL:
 * the normalized value in double and rounded once, the reference expression */
__global__ void fk_k_layernorm(float *y, const float *x, const void *__restrict__ w, fk_dtype wdt,
                               const void *__restrict__ b, fk_dtype bdt, int64_t C, float eps) {
    __shared__ double sh[32];
    const int64_t r = blockIdx.x;
    const float *xr = x + r * C;
    float *yr = y + r * C;
    double mean, rstd;
    fk_dev_ln_stats(xr, C, eps, sh, &mean, &rstd);
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float v = (float)(((double)xr[c] - mean) * rstd);
        if (w) v = v * fk_dev_load_f32(w, wdt, c);
        if (b) v = v + fk_dev_load_f32(b, bdt, c);
        yr[c] = v;
    }
}

/* y = (1 + scale[b])·LayerNorm(x) + shift[b], rows (B·T, C), b = row / T;
 * TY float, or __nv_bfloat16 for a bf16 y */
template <typename TY>
__global__ void fk_k_layernorm_modulate(TY *y, const float *x, const float *__restrict__ shift,
                                        const float *__restrict__ scale, int64_t C, int64_t T,
                                        float eps) {
    __shared__ double sh[32];
    const int64_t r = blockIdx.x;
    const float *xr = x + r * C;
    TY *yr = y + r * C;
    const float *shr = shift + (r / T) * C, *scr = scale + (r / T) * C;
    double mean, rstd;
    fk_dev_ln_stats(xr, C, eps, sh, &mean, &rstd);
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        const float v = (float)(((double)xr[c] - mean) * rstd);
        fk_dev_st(yr + c, (1.0f + scr[c]) * v + shr[c]);
    }
}

/* The same with one float4 of the row per thread (C = 4·blockDim.x, x, y,
 * shift, scale 16-byte aligned; FLUX: C = 3072, 768 threads): x is read
 * once into registers instead of three times. The per-thread partial sums
 * take 4 consecutive elements instead of a strided set (double: the
 * statistics move by ~1e-16 relative, the outputs by at most a rounding,
 * rarely). An f32 y may alias x: every x is read before the block's first
 * sum. TY as above. */
template <typename TY>
__global__ void fk_k_layernorm_modulate_v4(TY *y, const float *x,
                                           const float *__restrict__ shift,
                                           const float *__restrict__ scale, int64_t C, int64_t T,
                                           float eps) {
    __shared__ double sh[32];
    const int64_t r = blockIdx.x;
    const int c4 = threadIdx.x;
    const float4 v = reinterpret_cast<const float4 *>(x + r * C)[c4];
    const double m = fk_dev_block_sum_d((double)v.x + (double)v.y + (double)v.z + (double)v.w, sh) /
                     (double)C;
    const double d0 = (double)v.x - m, d1 = (double)v.y - m, d2 = (double)v.z - m,
                 d3 = (double)v.w - m;
    const double var = fk_dev_block_sum_d(d0 * d0 + d1 * d1 + d2 * d2 + d3 * d3, sh) / (double)C;
    const double rstd = 1.0 / sqrt(var + (double)eps);
    const float4 sc = reinterpret_cast<const float4 *>(scale + (r / T) * C)[c4];
    const float4 shf = reinterpret_cast<const float4 *>(shift + (r / T) * C)[c4];
    float4 o;
    o.x = (1.0f + sc.x) * (float)(d0 * rstd) + shf.x;
    o.y = (1.0f + sc.y) * (float)(d1 * rstd) + shf.y;
    o.z = (1.0f + sc.z) * (float)(d2 * rstd) + shf.z;
    o.w = (1.0f + sc.w) * (float)(d3 * rstd) + shf.w;
    fk_dev_st4(y + r * C + 4 * c4, o);
}

__global__ void fk_k_rmsnorm(float *y, const float *x, const void *__restrict__ scale,
                             fk_dtype sdt, int64_t C, float eps) {
    __shared__ double sh[32];
    const int64_t r = blockIdx.x;
    const float *xr = x + r * C;
    float *yr = y + r * C;
    double s = 0.0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += (double)xr[c] * (double)xr[c];
    const double ss = fk_dev_block_sum_d(s, sh);
    const double rinv = 1.0 / sqrt((C ? ss / (double)C : 0.0) + (double)eps);
    /* the reference expression: x·r in double rounded to f32, times the scale */
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
        yr[c] = (float)((double)xr[c] * rinv) * fk_dev_load_f32(scale, sdt, c);
}

__global__ void fk_k_softmax(float *y, const float *x, int64_t C) {
    __shared__ float shm[32];
    __shared__ double shd[32];
    const int64_t r = blockIdx.x;
    const float *xr = x + r * C;
    float *yr = y + r * C;
    float mx = -INFINITY;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) mx = fmaxf(mx, xr[c]);
    mx = fk_dev_block_max(mx, shm);
    float s = 0.0f;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += expf(xr[c] - mx);
    const double sum = fk_dev_block_sum_d((double)s, shd);
    const float inv = (float)(1.0 / sum);
    /* every thread has read its elements of x above; y may alias x because
     * each element is read and written by the same thread */
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) yr[c] = expf(xr[c] - mx) * inv;
}

/* rows of one-block-per-row kernels: grid.x <= 2^31 − 1 */
static unsigned fk_row_blocks(int64_t M) {
    FK_ASSERT(M >= 0 && M <= INT32_MAX);
    return (unsigned)M;
}

extern "C" void fk_cuda_layernorm(fk_backend *be, fk_tensor *y, const fk_tensor *x,
                                  const fk_tensor *w, const fk_tensor *b, float eps) {
    fk_cuda_impl *im = fk_cuda_enter(be);
    fk_cuda_assert_act(y);
    fk_cuda_assert_act(x);
    FK_ASSERT(x->dtype == FK_F32 && y->dtype == FK_F32);
    const int64_t M = fk_tensor_rows(x), C = fk_tensor_cols(x); /* x, y (M, C) */
    FK_ASSERT(fk_tensor_rows(y) == M && fk_tensor_cols(y) == C);
    if (w) FK_ASSERT(fk_tensor_numel(w) == C && fk_dtype_is_float(w->dtype)); /* w (C) */
    if (b) FK_ASSERT(fk_tensor_numel(b) == C && fk_dtype_is_float(b->dtype)); /* b (C) */
    if (M == 0) return;
    fk_cu_wptr wp = {NULL, FK_F32}, bp = {NULL, FK_F32};
    if (w) wp = fk_cuda_weight(be, w, FK_CU_SCR_STAGE0);
    if (b) bp = fk_cuda_weight(be, b, FK_CU_SCR_STAGE1);
    fk_k_layernorm<<<fk_row_blocks(M), fk_row_threads(C), 0, im->stream>>>(
        (float *)y->data, (const float *)x->data, wp.p, wp.dt, bp.p, bp.dt, C, eps);
    FK_CU_LAUNCH();
}

/* the launches of fk_cuda_layernorm_modulate for a y of type TY; v4: the
 * row fits fk_k_layernorm_modulate_v4 (C = 4·threads, 16-byte aligned) */
template <typename TY>
static void fk_ln_mod_launch(fk_cuda_impl *im, TY *y, const float *x, const float *sh,
                             const float *sc, int64_t R, int64_t C, int64_t T, bool v4,
                             float eps) {
    if (v4)
        fk_k_layernorm_modulate_v4<<<fk_row_blocks(R), (unsigned)(C / 4), 0, im->stream>>>(
            y, x, sh, sc, C, T, eps);
    else
        fk_k_layernorm_modulate<<<fk_row_blocks(R), fk_row_threads(C), 0, im->stream>>>(
            y, x, sh, sc, C, T, eps);
    FK_CU_LAUNCH();
}

extern "C" void fk_cuda_layernorm_modulate(fk_backend *be, fk_tensor *y, const fk_tensor *x,
                                           const fk_tensor *shift, const fk_tensor *scale,
                                           float eps) {
    fk_cuda_impl *im = fk_cuda_enter(be);
    fk_cuda_assert_act(y);
    fk_cuda_assert_act(x);
    fk_cuda_assert_act(shift);
    fk_cuda_assert_act(scale);
    const bool ybf = y->dtype == FK_BF16; /* bf16 activations (supports(): bf16 mode) */
    FK_ASSERT(x->dtype == FK_F32 && (y->dtype == FK_F32 || (ybf && im->bf16)) &&
              shift->dtype == FK_F32 && scale->dtype == FK_F32);
    FK_ASSERT(!ybf || y->data != x->data); /* a bf16 y cannot overlay its x */
    const int64_t R = fk_tensor_rows(x), C = fk_tensor_cols(x); /* x, y (B·T, C) */
    const int64_t B = fk_tensor_rows(shift);                    /* shift, scale (B, C) */
    FK_ASSERT(fk_tensor_rows(y) == R && fk_tensor_cols(y) == C);
    FK_ASSERT(fk_tensor_cols(shift) == C && fk_tensor_rows(scale) == B &&
              fk_tensor_cols(scale) == C);
    FK_ASSERT(B > 0 && R % B == 0);
    if (R == 0) return;
    const float *xd = (const float *)x->data, *sh = (const float *)shift->data,
                *sc = (const float *)scale->data;
    const bool v4 = C % 128 == 0 && C <= 4096 && fk_al16(x->data) && fk_al16(y->data) &&
                    fk_al16(shift->data) && fk_al16(scale->data);
    if (ybf)
        fk_ln_mod_launch(im, (__nv_bfloat16 *)y->data, xd, sh, sc, R, C, R / B, v4, eps);
    else
        fk_ln_mod_launch(im, (float *)y->data, xd, sh, sc, R, C, R / B, v4, eps);
}

extern "C" void fk_cuda_rmsnorm(fk_backend *be, fk_tensor *y, const fk_tensor *x,
                                const fk_tensor *scale, float eps) {
    fk_cuda_impl *im = fk_cuda_enter(be);
    fk_cuda_assert_act(y);
    fk_cuda_assert_act(x);
    FK_ASSERT(x->dtype == FK_F32 && y->dtype == FK_F32);
    const int64_t M = fk_tensor_rows(x), C = fk_tensor_cols(x); /* x, y (M, C) */
    FK_ASSERT(fk_tensor_rows(y) == M && fk_tensor_cols(y) == C);
    FK_ASSERT(scale && fk_tensor_numel(scale) == C && fk_dtype_is_float(scale->dtype)); /* (C) */
    if (M == 0) return;
    fk_cu_wptr s = fk_cuda_weight(be, scale, FK_CU_SCR_STAGE0);
    fk_k_rmsnorm<<<fk_row_blocks(M), fk_row_threads(C), 0, im->stream>>>(
        (float *)y->data, (const float *)x->data, s.p, s.dt, C, eps);
    FK_CU_LAUNCH();
}

extern "C" void fk_cuda_softmax(fk_backend *be, fk_tensor *y, const fk_tensor *x) {
    fk_cuda_impl *im = fk_cuda_enter(be);
    fk_cuda_assert_act(y);
    fk_cuda_assert_act(x);
    FK_ASSERT(x->dtype == FK_F32 && y->dtype == FK_F32);
    const int64_t M = fk_tensor_rows(x), C = fk_tensor_cols(x); /* x, y (M, C) */
    FK_ASSERT(fk_tensor_rows(y) == M && fk_tensor_cols(y) == C);
    if (M == 0 || C == 0) return;
    fk_k_softmax<<<fk_row_blocks(M), fk_row_threads(C), 0, im->stream>>>(
        (float *)y->data, (const float *)x->data, C);
    FK_CU_LAUNCH();
}

/* ---- row and column copies (any dtype, all operands the same) ---- */

extern "C" void fk_cuda_concat_rows(fk_backend *be, fk_tensor *out, const fk_tensor *a,
                                    const fk_tensor *b) {
    fk_cuda_impl *im = fk_cuda_enter(be);
    fk_cuda_assert_act(out);
    fk_cuda_assert_act(a);
    fk_cuda_assert_act(b);
    FK_ASSERT(out->dtype == a->dtype && out->dtype == b->dtype);
    const int64_t C = fk_tensor_cols(out); /* out (La+Lb, C), a (La, C), b (Lb, C) */
    FK_ASSERT(fk_tensor_cols(a) == C && fk_tensor_cols(b) == C);
    FK_ASSERT(fk_tensor_rows(a) + fk_tensor_rows(b) == fk_tensor_rows(out));
    FK_ASSERT(out->data != a->data && out->data != b->data);
    const size_t na = fk_tensor_nbytes(a), nb = fk_tensor_nbytes(b);
    if (na)
        FK_CU(cudaMemcpyAsync(out->data, a->data, na, cudaMemcpyDeviceToDevice, im->stream));
    if (nb)
        FK_CU(cudaMemcpyAsync((char *)out->data + na, b->data, nb, cudaMemcpyDeviceToDevice,
                              im->stream));
}

extern "C" void fk_cuda_split_rows(fk_backend *be, fk_tensor *a, fk_tensor *b,
                                   const fk_tensor *in) {
    fk_cuda_impl *im = fk_cuda_enter(be);
    fk_cuda_assert_act(a);
    fk_cuda_assert_act(b);
    fk_cuda_assert_act(in);
    FK_ASSERT(in->dtype == a->dtype && in->dtype == b->dtype);
    const int64_t C = fk_tensor_cols(in); /* in (La+Lb, C) → a (La, C), b (Lb, C) */
    FK_ASSERT(fk_tensor_cols(a) == C && fk_tensor_cols(b) == C);
    FK_ASSERT(fk_tensor_rows(a) + fk_tensor_rows(b) == fk_tensor_rows(in));
    FK_ASSERT(in->data != a->data && in->data != b->data);
    const size_t na = fk_tensor_nbytes(a), nb = fk_tensor_nbytes(b);
    if (na) FK_CU(cudaMemcpyAsync(a->data, in->data, na, cudaMemcpyDeviceToDevice, im->stream));
    if (nb)
        FK_CU(cudaMemcpyAsync(b->data, (const char *)in->data + na, nb, cudaMemcpyDeviceToDevice,
                              im->stream));
}

extern "C" void fk_cuda_copy_cols(fk_backend *be, fk_tensor *dst, int64_t dc0,
                                  const fk_tensor *src, int64_t sc0, int64_t n) {
    fk_cuda_impl *im = fk_cuda_enter(be);
    fk_cuda_assert_act(dst);
    fk_cuda_assert_act(src);
    FK_ASSERT(dst->dtype == src->dtype);
    const int64_t M = fk_tensor_rows(dst), Nd = fk_tensor_cols(dst), Ns = fk_tensor_cols(src);
    FK_ASSERT(fk_tensor_rows(src) == M); /* dst (M, Nd), src (M, Ns) */
    FK_ASSERT(n >= 0 && dc0 >= 0 && sc0 >= 0 && dc0 + n <= Nd && sc0 + n <= Ns);
    if (M == 0 || n == 0) return;
    const size_t es = fk_dtype_size(dst->dtype);
    const char *s = (const char *)src->data + (size_t)sc0 * es;
    size_t spitch = (size_t)Ns * es;
    if (dst->data == src->data) { /* same buffer (regions may overlap): through scratch */
        char *t = (char *)fk_cuda_scratch(im, FK_CU_SCR_P, (size_t)(M * n) * es);
        FK_CU(cudaMemcpy2DAsync(t, (size_t)n * es, s, spitch, (size_t)n * es, (size_t)M,
                                cudaMemcpyDeviceToDevice, im->stream));
        s = t;
        spitch = (size_t)n * es;
    }
    FK_CU(cudaMemcpy2DAsync((char *)dst->data + (size_t)dc0 * es, (size_t)Nd * es, s, spitch,
                            (size_t)n * es, (size_t)M, cudaMemcpyDeviceToDevice, im->stream));
}

/* ---- transpose, scale_cols ---- */

/* y (B, C, R) = x (B, R, C) transposed per batch, through 32×32 tiles in
 * shared memory (padded to 33 columns: the column reads hit 32 banks).
 * Block (32, 8); the tile loops depend on block indices only, so every
 * thread of a block reaches the same barriers. */
__global__ void fk_k_transpose(float *__restrict__ y, const float *__restrict__ x, int64_t B,
                               int64_t R, int64_t C) {
    __shared__ float t[32][33];
    const int64_t nbr = (R + 31) / 32, nbc = (C + 31) / 32;
    const int tx = threadIdx.x, ty = threadIdx.y;
    for (int64_t b = blockIdx.z; b < B; b += gridDim.z)
        for (int64_t br = blockIdx.y; br < nbr; br += gridDim.y)
            for (int64_t bc = blockIdx.x; bc < nbc; bc += gridDim.x) {
                const float *xb = x + b * R * C;
                float *yb = y + b * R * C;
                const int64_t r0 = br * 32, c0 = bc * 32;
                for (int i = ty; i < 32; i += 8) {
                    const int64_t r = r0 + i, c = c0 + tx;
                    if (r < R && c < C) t[i][tx] = xb[r * C + c];
                }
                __syncthreads();
                for (int i = ty; i < 32; i += 8) {
                    const int64_t c = c0 + i, r = r0 + tx;
                    if (c < C && r < R) yb[c * R + r] = t[tx][i];
                }
                __syncthreads(); /* the tile is reused by the next iteration */
            }
}

extern "C" void fk_cuda_transpose(fk_backend *be, fk_tensor *y, const fk_tensor *x) {
    fk_cuda_impl *im = fk_cuda_enter(be);
    fk_cuda_assert_act(y);
    fk_cuda_assert_act(x);
    FK_ASSERT(x->dtype == FK_F32 && y->dtype == FK_F32 && x->ndim >= 2 && y->ndim >= 2);
    FK_ASSERT(y->data != x->data);
    const int64_t R = x->shape[x->ndim - 2], C = x->shape[x->ndim - 1]; /* x (B, R, C) */
    const int64_t n = fk_tensor_numel(x), B = (R && C) ? n / (R * C) : 0;
    FK_ASSERT(y->shape[y->ndim - 2] == C && y->shape[y->ndim - 1] == R && fk_tensor_numel(y) == n);
    if (n == 0) return;
    const int64_t nbr = (R + 31) / 32, nbc = (C + 31) / 32;
    dim3 grid((unsigned)(nbc < 65535 ? nbc : 65535), (unsigned)(nbr < 65535 ? nbr : 65535),
              (unsigned)(B < 65535 ? B : 65535));
    fk_k_transpose<<<grid, dim3(32, 8), 0, im->stream>>>((float *)y->data, (const float *)x->data,
                                                         B, R, C);
    FK_CU_LAUNCH();
}

/* y (M, N) = x · s[col], s of any float dtype; y may alias x */
__global__ void fk_k_scale_cols(float *y, const float *x, const void *__restrict__ s, fk_dtype sdt,
                                int64_t M, int64_t N) {
    for (int64_t r = blockIdx.y; r < M; r += gridDim.y)
        for (int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; c < N;
             c += (int64_t)gridDim.x * blockDim.x)
            y[r * N + c] = x[r * N + c] * fk_dev_load_f32(s, sdt, c);
}

extern "C" void fk_cuda_scale_cols(fk_backend *be, fk_tensor *y, const fk_tensor *x,
                                   const fk_tensor *s) {
    fk_cuda_impl *im = fk_cuda_enter(be);
    fk_cuda_assert_act(y);
    fk_cuda_assert_act(x);
    FK_ASSERT(x->dtype == FK_F32 && y->dtype == FK_F32);
    const int64_t M = fk_tensor_rows(x), N = fk_tensor_cols(x); /* x, y (M, N) */
    FK_ASSERT(fk_tensor_rows(y) == M && fk_tensor_cols(y) == N);
    FK_ASSERT(s && fk_tensor_numel(s) == N && fk_dtype_is_float(s->dtype)); /* s (N) */
    if (M == 0 || N == 0) return;
    fk_cu_wptr sp = fk_cuda_weight(be, s, FK_CU_SCR_STAGE0);
    dim3 grid(fk_cuda_blocks(N, FK_EW_THREADS, 64), (unsigned)(M < 65535 ? M : 65535));
    fk_k_scale_cols<<<grid, FK_EW_THREADS, 0, im->stream>>>((float *)y->data, (const float *)x->data,
                                                            sp.p, sp.dt, M, N);
    FK_CU_LAUNCH();
}
