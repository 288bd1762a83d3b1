/* cuda_internal: private header of the CUDA backend (CUDA C++, included by
 * the .cu files of this folder only).
 *
 * Layout of the backend:
 *   cuda_backend.cu     create / destroy, memory, supports(), the weight cache,
 *                       the scratch buffers, the op table, the queries
 *   cuda_linear.cu      the cuBLASLt product (plan cache, epilogues), dtype
 *                       conversion kernels, linear / linear_act / linear_cat
 *   cuda_attention.cu   attention: a flash kernel on bf16 tensor cores (mma.sync
 *                       m16n8k16) for D in {64, 128}, and a chunked
 *                       two-product path (cuBLASLt + a row softmax) for every
 *                       other D and for f32 mode
 *   cuda_elementwise.cu activations, add / mul, modulate, gated_add, rope,
 *                       layernorm, rmsnorm, softmax and the fused norms,
 *                       row / column copies
 *   cuda_conv.cu        conv2d (chunked im2col + cuBLASLt), group_norm,
 *                       upsample_nearest2x
 *
 * Conventions: see backend_cuda.h (device activations, host weights cached).
 * Every op runs on the backend's stream (impl->stream); kernels are checked
 * with FK_CU_LAUNCH() right after the launch; a failed CUDA or cuBLASLt call
 * aborts with file:line (fk_cuda_fail). Ops never allocate except the first
 * time something new is seen: a scratch buffer grows (fk_cuda_scratch), a
 * host weight is cached, a product shape is planned (cuBLASLt descriptors and
 * its heuristic, host memory). Later calls with the same shapes allocate
 * nothing and only queue work on the stream.
 */
#ifndef FK_CUDA_INTERNAL_H
#define FK_CUDA_INTERNAL_H

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "core/core.h"
#include "backend/backend.h"
}
#include "backend/backend_cuda.h"

/* the CUDA architectures this build has code for (set by CMake) */
#ifndef FK_CUDA_ARCHS
#define FK_CUDA_ARCHS "?"
#endif

/* ---- error checks ---- */

/* Prints "fluxkit: CUDA error at file:line: what: name (description)" to
 * stderr and aborts: a failed call inside an op is a bug or a lost device. */
[[noreturn]] void fk_cuda_fail(const char *file, int line, const char *what, const char *name,
                               const char *desc);

static inline void fk_cuda_check_rt(cudaError_t e, const char *what, const char *file, int line) {
    if (e != cudaSuccess) fk_cuda_fail(file, line, what, cudaGetErrorName(e), cudaGetErrorString(e));
}
static inline void fk_cuda_check_lt(cublasStatus_t s, const char *what, const char *file, int line) {
    if (s != CUBLAS_STATUS_SUCCESS)
        fk_cuda_fail(file, line, what, cublasLtGetStatusName(s), cublasLtGetStatusString(s));
}
#define FK_CU(call) fk_cuda_check_rt((call), #call, __FILE__, __LINE__)
#define FK_LT(call) fk_cuda_check_lt((call), #call, __FILE__, __LINE__)

/* FK_CUDA_SYNC=1 in the environment (read at create): every kernel launch and
 * product is followed by a device synchronize, so a kernel that faults is
 * reported at its own file:line rather than at a later call (debugging). */
extern int fk_cuda_sync_debug;
static inline void fk_cuda_after_launch(const char *file, int line) {
    fk_cuda_check_rt(cudaGetLastError(), "kernel launch", file, line);
    if (fk_cuda_sync_debug)
        fk_cuda_check_rt(cudaDeviceSynchronize(), "kernel execution (FK_CUDA_SYNC)", file, line);
}
/* after every kernel launch: launch-configuration errors surface here */
#define FK_CU_LAUNCH() fk_cuda_after_launch(__FILE__, __LINE__)

/* ---- backend state ---- */

/* Scratch slots (device buffers grown on demand, contents not kept between
 * ops). Each op documents which slots it uses; one op never uses a slot for
 * two purposes at once. */
enum {
    FK_CU_SCR_A = 0,  /* linear: x as bf16 (or x1|x2 joined); attention: q bf16; conv: im2col */
    FK_CU_SCR_B,      /* attention: k bf16 */
    FK_CU_SCR_C,      /* attention: v bf16 */
    FK_CU_SCR_W,      /* weight converted for the product (bf16 or f32) */
    FK_CU_SCR_BIAS,   /* bias converted to f32 */
    FK_CU_SCR_S,      /* attention scores (f32) */
    FK_CU_SCR_P,      /* attention probabilities (bf16 or f32); group_norm partial sums */
    FK_CU_SCR_STAGE0, /* per-call upload of an uncached host weight (w) */
    FK_CU_SCR_STAGE1, /* per-call upload of an uncached host weight (b) */
    FK_CU_SCR_Y,      /* the f32 result of a bf16 y / out rounded by a kernel: linear (an
                       * epilogue cuBLASLt cannot fuse), attention (the two-product path) */
    FK_CU_SCR_COUNT
};

/* cuBLASLt workspace (the size NVIDIA recommends for Hopper) */
#define FK_CU_LT_WORKSPACE ((size_t)32 << 20)

/* Scratch bound for the chunked paths (im2col, attention scores): a chunk's
 * buffer stays at or under this many bytes (the default of
 * fk_cuda_chunk_bytes; fk_backend_cuda_set_test_hooks lowers it). 32 MiB
 * still makes products of 14 k rows for the autoencoder's widest im2col
 * (K = 1152) and keeps the decode's scratch small next to its activations:
 * the pipeline's peak device memory is at the decode (docs/NOTES.md). */
#define FK_CU_CHUNK_BYTES ((size_t)32 << 20)

/* n rounded up to a multiple of 8 elements: the row stride of the bf16 / f32
 * operands this backend writes for the products (x as bf16, the im2col
 * matrix, attention scores and probabilities), so every row starts 16-byte
 * aligned whatever the shape and cuBLASLt keeps to its aligned kernels. */
static inline int64_t fk_cuda_ld8(int64_t n) { return (n + 7) / 8 * 8; }

typedef struct fk_cu_wentry fk_cu_wentry; /* weight cache entry (cuda_backend.cu) */
typedef struct fk_cu_plan fk_cu_plan;     /* cuBLASLt plan (cuda_linear.cu) */
typedef struct fk_cu_alloc {              /* a tensor from be->alloc */
    void *p;
    size_t bytes;
} fk_cu_alloc;

typedef struct fk_cuda_impl {
    int device;
    cudaStream_t stream;
    cublasLtHandle_t lt;
    bool bf16; /* precision: bf16 operands for the products (default) or f32 */
    bool bf16_io; /* bf16 mode takes bf16 activations in the products (FK_CUDA_BF16_IO=0: no) */
    int sm_count;
    int cc_major, cc_minor; /* compute capability */
    bool flash3; /* the warpgroup-MMA attention runs here (fk_cuda_attention_setup) */
    size_t smem_optin; /* max dynamic shared memory per block */
    char desc[160];    /* fk_cuda_device_describe */

    void *lt_ws; /* FK_CU_LT_WORKSPACE bytes */
    void *scr[FK_CU_SCR_COUNT];
    size_t scr_bytes[FK_CU_SCR_COUNT];

    /* weight cache: open addressing on the host pointer, cap a power of 2 */
    fk_cu_wentry *wc;
    size_t wc_cap, wc_n, wc_bytes;

    /* cuBLASLt plans (descriptors + heuristic algorithm) by problem key */
    fk_cu_plan *plans;
    int n_plans, cap_plans;

    /* tensors from be->alloc: pointer and size, for fk_backend_cuda_memory */
    fk_cu_alloc *allocs;
    size_t n_allocs, cap_allocs, alloc_bytes;
    uint64_t peak_bytes; /* largest weights + scratch + allocs so far */

    /* fk_backend_cuda_set_test_hooks: chunk bound (0: FK_CU_CHUNK_BYTES) and
     * FK_CUDA_HOOK_* flags */
    size_t hook_chunk_bytes;
    unsigned hooks;
    /* products that ran on the fallback kernel because cuBLASLt had no
     * algorithm (fk_backend_cuda_naive_gemm_count) */
    uint64_t n_naive_gemm;
    /* host → device uploads of weights through two pinned buffers of
     * FK_CU_PIN_BYTES (fk_cuda_h2d), allocated at the first large upload;
     * pin_off: none (FK_CUDA_PINNED=0, or they could not be had) */
    void *pin[2];
    cudaEvent_t pin_ev[2];
    bool pin_off;
} fk_cuda_impl;

/* the pinned staging buffers' size, and the uploads that go through them */
#define FK_CU_PIN_BYTES ((size_t)32 << 20)
#define FK_CU_PIN_MIN ((size_t)4 << 20)

/* the chunked paths' scratch bound in bytes */
static inline size_t fk_cuda_chunk_bytes(const fk_cuda_impl *im) {
    return im->hook_chunk_bytes ? im->hook_chunk_bytes : FK_CU_CHUNK_BYTES;
}

static inline fk_cuda_impl *fk_cuda_impl_of(const fk_backend *be) {
    return (fk_cuda_impl *)be->impl;
}

/* Make the backend's device current for this thread (ops may be called from
 * a thread that used another device); returns the impl. */
fk_cuda_impl *fk_cuda_enter(fk_backend *be);

/* Update the peak of device bytes held (after any growth). */
void fk_cuda_note_mem(fk_cuda_impl *im);

/* Device scratch `slot` of at least `bytes` bytes (256-byte aligned); grows
 * (after a stream synchronize, freeing the old buffer) when too small. */
void *fk_cuda_scratch(fk_cuda_impl *im, int slot, size_t bytes);

/* A weight-slot operand as a device pointer: the data itself for a device
 * tensor, the cached copy for a host tensor (cached now if new), or, when no
 * copy can be allocated, the host data uploaded to scratch `stage_slot`. */
typedef struct fk_cu_wptr {
    const void *p; /* device memory, dtype dt, numel elements */
    fk_dtype dt;
} fk_cu_wptr;
fk_cu_wptr fk_cuda_weight(fk_backend *be, const fk_tensor *t, int stage_slot);

/* An activation operand: asserts it lives on the device (backend_cuda.h). */
static inline void fk_cuda_assert_act(const fk_tensor *t) {
    FK_ASSERT(t && t->device == FK_DEVICE_CUDA);
}

/* Blocks for n items of `per` items each, at most `cap` (grid-stride loops). */
static inline unsigned fk_cuda_blocks(int64_t n, int64_t per, int64_t cap) {
    int64_t b = (n + per - 1) / per;
    if (b < 1) b = 1;
    if (b > cap) b = cap;
    return (unsigned)b;
}

/* ---- dtype conversion (cuda_linear.cu) ---- */

/* dst (n) of dtype dst_dt (FK_BF16 or FK_F32) = src (n) of float dtype
 * src_dt, on the stream (f32 → bf16 rounds to nearest-even). */
void fk_cuda_convert(fk_cuda_impl *im, void *dst, fk_dtype dst_dt, const void *src,
                     fk_dtype src_dt, int64_t n);
/* dst (M, ldd) bf16, columns [c0, c0 + K) = src (M, lds) f32 columns [0, K). */
void fk_cuda_rows_to_bf16(fk_cuda_impl *im, __nv_bfloat16 *dst, int64_t ldd, int64_t c0,
                          const float *src, int64_t lds, int64_t M, int64_t K);
/* A weight operand as dtype want (FK_BF16 or FK_F32) on the device: the
 * resolved pointer itself when it already has that dtype, else converted
 * into scratch `conv_slot`. */
const void *fk_cuda_weight_as(fk_backend *be, const fk_tensor *t, fk_dtype want, int stage_slot,
                              int conv_slot);

/* ---- the product (cuda_linear.cu) ---- */

/* D = alpha·op(A)·op(B) + beta·D (+ bias, then act), column-major
 * (cuBLASLt's convention): op(A) (m, k), op(B) (k, n), D (m, n) f32 with
 * leading dimension ldd; `batch` products at strides sa, sb, sd (elements).
 * d_bf16: D is bf16 instead (bf16 operands, one product, beta 0): the f32
 * result after bias and act, rounded to nearest-even — fused in cuBLASLt's
 * output stage when an algorithm offers the whole epilogue, else computed
 * in f32 scratch (FK_CU_SCR_Y) with every fallback of the f32 path and
 * rounded by a kernel: the bits an f32 D would give its bf16 consumer.
 * A, B: bf16 (compute f32) or f32 (IEEE f32, no TF32), same dtype both.
 * bias (m) f32 or NULL, added per row of D; act FK_ACT_NONE / GELU_TANH /
 * SILU / GELU_QUICK applied after the bias. The bias and GELU go through the
 * cuBLASLt epilogue when an algorithm offers it (bf16 mode; f32 mode applies
 * the activation with the reference formula, see cuda_linear.cu), the rest
 * by a kernel over D. When cuBLASLt has no algorithm for the problem, a
 * simple kernel (one thread per output) computes it: slow, never a failure. */
typedef struct fk_cu_gemm {
    bool ta, tb;
    int64_t m, n, k;
    const void *a;
    int64_t lda, sa;
    const void *b;
    int64_t ldb, sb;
    void *d; /* f32, or bf16 when d_bf16 */
    int64_t ldd, sd;
    int batch;
    fk_dtype ab_dt; /* FK_BF16 or FK_F32 */
    bool d_bf16;
    const void *bias_d; /* d_bf16, optional: bias stored as bf16 (its exact values), read by
                           the product stage in D's dtype, cuBLASLt's default bias type */
    float alpha, beta;
    const float *bias;
    fk_act act;
} fk_cu_gemm;
void fk_cuda_gemm(fk_backend *be, const fk_cu_gemm *g);
/* Free the plan cache (destroy). */
void fk_cuda_plans_free(fk_cuda_impl *im);

/* y (rows, cols) row-major, row stride ld: y = act(y (+ bias[col])) (bias f32
 * or NULL), in place on the stream. */
void fk_cuda_bias_act_rows(fk_cuda_impl *im, float *y, int64_t rows, int64_t cols, int64_t ld,
                           const float *bias, fk_act act);

/* ---- ops (the table entries) ---- */

extern "C" {
void fk_cuda_linear(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                    const fk_tensor *b);
void fk_cuda_linear_act(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                        const fk_tensor *b, fk_act act);
void fk_cuda_linear_cat(fk_backend *be, fk_tensor *y, const fk_tensor *x1, const fk_tensor *x2,
                        const fk_tensor *w, const fk_tensor *b, fk_tensor *tmp);
void fk_cuda_attention(fk_backend *be, fk_tensor *out, const fk_tensor *q, const fk_tensor *k,
                       const fk_tensor *v, const fk_tensor *bias, float scale, bool causal);
void fk_cuda_layernorm(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                       const fk_tensor *b, float eps);
void fk_cuda_rmsnorm(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *scale,
                     float eps);
void fk_cuda_layernorm_modulate(fk_backend *be, fk_tensor *y, const fk_tensor *x,
                                const fk_tensor *shift, const fk_tensor *scale, float eps);
void fk_cuda_rmsnorm_rope(fk_backend *be, fk_tensor *y, const fk_tensor *x,
                          const fk_tensor *scale, const fk_tensor *pe, float eps);
void fk_cuda_softmax(fk_backend *be, fk_tensor *y, const fk_tensor *x);
void fk_cuda_silu(fk_backend *be, fk_tensor *y, const fk_tensor *x);
void fk_cuda_gelu_tanh(fk_backend *be, fk_tensor *y, const fk_tensor *x);
void fk_cuda_gelu_quick(fk_backend *be, fk_tensor *y, const fk_tensor *x);
void fk_cuda_rope(fk_backend *be, fk_tensor *x, const fk_tensor *pe);
void fk_cuda_add(fk_backend *be, fk_tensor *y, const fk_tensor *a, const fk_tensor *b);
void fk_cuda_mul(fk_backend *be, fk_tensor *y, const fk_tensor *a, const fk_tensor *b);
void fk_cuda_modulate(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *shift,
                      const fk_tensor *scale);
void fk_cuda_gated_add(fk_backend *be, fk_tensor *x, const fk_tensor *y, const fk_tensor *gate);
void fk_cuda_concat_rows(fk_backend *be, fk_tensor *out, const fk_tensor *a, const fk_tensor *b);
void fk_cuda_split_rows(fk_backend *be, fk_tensor *a, fk_tensor *b, const fk_tensor *in);
void fk_cuda_copy_cols(fk_backend *be, fk_tensor *dst, int64_t dc0, const fk_tensor *src,
                       int64_t sc0, int64_t n);
void fk_cuda_conv2d(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                    const fk_tensor *b, int stride, const int pad[4]);
void fk_cuda_group_norm(fk_backend *be, fk_tensor *y, const fk_tensor *x, int groups,
                        const fk_tensor *w, const fk_tensor *b, float eps);
void fk_cuda_upsample_nearest2x(fk_backend *be, fk_tensor *y, const fk_tensor *x);
void fk_cuda_transpose(fk_backend *be, fk_tensor *y, const fk_tensor *x);
void fk_cuda_scale_cols(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *s);
}

/* ---- device helpers ---- */

#ifdef __CUDACC__

/* float8_e4m3fn: no Inf, NaN = S.1111.111, bias 7 (exact in f32) */
static __device__ __forceinline__ float fk_dev_e4m3_to_f32(uint8_t b) {
    uint32_t s = (uint32_t)(b & 0x80u) << 24, e = (b >> 3) & 0xfu, m = b & 7u;
    if (e == 15u && m == 7u) return __uint_as_float(s | 0x7fc00000u);
    if (e == 0u) {
        float v = (float)m * 0.001953125f; /* m · 2^-9 */
        return s ? -v : v;
    }
    return __uint_as_float(s | ((e + 120u) << 23) | (m << 20));
}

/* float8_e5m2: the upper byte of an IEEE half */
static __device__ __forceinline__ float fk_dev_e5m2_to_f32(uint8_t b) {
    return __half2float(__ushort_as_half((unsigned short)((unsigned)b << 8)));
}

/* Element i of a float array of dtype dt, as f32 (exact except f64, which
 * rounds to nearest like the host conversion). */
static __device__ __forceinline__ float fk_dev_load_f32(const void *p, fk_dtype dt, int64_t i) {
    switch (dt) {
    case FK_F32: return ((const float *)p)[i];
    case FK_BF16: return __uint_as_float((uint32_t)((const uint16_t *)p)[i] << 16);
    case FK_F16: return __half2float(__ushort_as_half(((const uint16_t *)p)[i]));
    case FK_F8_E4M3: return fk_dev_e4m3_to_f32(((const uint8_t *)p)[i]);
    case FK_F8_E5M2: return fk_dev_e5m2_to_f32(((const uint8_t *)p)[i]);
    case FK_F64: return (float)((const double *)p)[i];
    default: return __uint_as_float(0x7fc00000u); /* not a float dtype: NaN (asserted on the host) */
    }
}

/* The activations with the reference formula x·σ(z) = x / (1 + e^(−z))
 * (cpu_ew.h): z = x (silu), 1.702·x (gelu_quick), 2·√(2/π)·(x + 0.044715·x³)
 * (gelu_tanh). expf is the accurate libdevice exp (≤ 2 ulp). */
static __device__ __forceinline__ float fk_dev_act(fk_act act, float x) {
    float z;
    switch (act) {
    case FK_ACT_SILU: z = x; break;
    case FK_ACT_GELU_QUICK: z = 1.702f * x; break;
    case FK_ACT_GELU_TANH: z = 1.5957691216057308f * (x + 0.044715f * (x * x * x)); break;
    default: return x;
    }
    return x / (1.0f + expf(-z));
}

/* Warp and block sums (blockDim.x a multiple of 32, at most 1024; every
 * thread of the block must call fk_dev_block_sum; the result is returned to
 * all). Fixed reduction tree: deterministic. */
static __device__ __forceinline__ float fk_dev_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
static __device__ __forceinline__ double fk_dev_warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
static __device__ __forceinline__ float fk_dev_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
/* sh: __shared__ double[32] owned by the caller */
static __device__ __forceinline__ double fk_dev_block_sum_d(double v, double *sh) {
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = fk_dev_warp_sum_d(v);
    __syncthreads(); /* sh may still be read by a previous call */
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    double t = lane < nw ? sh[lane] : 0.0;
    return fk_dev_warp_sum_d(t);
}
/* sh: __shared__ float[32] owned by the caller */
static __device__ __forceinline__ float fk_dev_block_max(float v, float *sh) {
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = fk_dev_warp_max(v);
    __syncthreads();
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    float t = lane < nw ? sh[lane] : -INFINITY;
    return fk_dev_warp_max(t);
}

#endif /* __CUDACC__ */

#endif /* FK_CUDA_INTERNAL_H */
