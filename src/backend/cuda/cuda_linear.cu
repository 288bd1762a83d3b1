/* cuda_linear: the cuBLASLt product shared by linear, attention and conv2d
 * (fk_cuda_gemm: plans cached per problem), the dtype conversion kernels,
 * and the ops linear, linear_act, linear_cat.
 *
 * linear in row-major terms is y (M, N) = x (M, K) · w (N, K)ᵀ + b. cuBLASLt
 * is column-major: a row-major (R, C) matrix is a column-major (C, R) one, so
 * the product is yᶜ (N, M) = wᶜᵀ · xᶜ with A = w (stored K × N, transposed),
 * B = x (K × M), D = y (N × M, ld N): the "TN" layout, m = N, n = M, k = K.
 * The bias has one entry per row of D (per output feature): cuBLASLt's BIAS
 * epilogue.
 *
 * bf16 mode: x is rounded to bf16 into scratch A (x1 and x2 of linear_cat
 * land side by side, so the join is never written in f32), the weight is read
 * as bf16 (converted into scratch W when its dtype is another), compute and
 * output f32; bias and GELU(tanh) fused in the epilogue when an algorithm
 * offers them. f32 mode: f32 operands, CUBLAS_COMPUTE_32F (IEEE, no TF32),
 * activations by the reference formula after the product. A problem that
 * cuBLASLt has no algorithm for (heuristic empty) runs on a simple kernel
 * instead of failing (fk_backend_cuda_naive_gemm_count counts them). */
#include "backend/cuda/cuda_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- conversion kernels ---- */

template <typename T> static __device__ __forceinline__ T fk_dev_from_f32(float v);
template <> __device__ __forceinline__ float fk_dev_from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 fk_dev_from_f32<__nv_bfloat16>(float v) {
    return __float2bfloat16_rn(v);
}

/* dst (n) = src (n) of dtype DT; grid-stride */
template <typename TO, int DT>
__global__ void fk_k_convert(TO *__restrict__ dst, const void *__restrict__ src, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = fk_dev_from_f32<TO>(fk_dev_load_f32(src, (fk_dtype)DT, i));
}

template <typename TO>
static void fk_cuda_convert_to(fk_cuda_impl *im, TO *dst, const void *src, fk_dtype dt, int64_t n) {
    const unsigned blocks = fk_cuda_blocks(n, 256, (int64_t)im->sm_count * 16);
    switch (dt) {
    case FK_F32: fk_k_convert<TO, FK_F32><<<blocks, 256, 0, im->stream>>>(dst, src, n); break;
    case FK_BF16: fk_k_convert<TO, FK_BF16><<<blocks, 256, 0, im->stream>>>(dst, src, n); break;
    case FK_F16: fk_k_convert<TO, FK_F16><<<blocks, 256, 0, im->stream>>>(dst, src, n); break;
    case FK_F8_E4M3: fk_k_convert<TO, FK_F8_E4M3><<<blocks, 256, 0, im->stream>>>(dst, src, n); break;
    case FK_F8_E5M2: fk_k_convert<TO, FK_F8_E5M2><<<blocks, 256, 0, im->stream>>>(dst, src, n); break;
    case FK_F64: fk_k_convert<TO, FK_F64><<<blocks, 256, 0, im->stream>>>(dst, src, n); break;
    default: FK_ASSERT(!"fk_cuda_convert: not a float dtype");
    }
    FK_CU_LAUNCH();
}

void fk_cuda_convert(fk_cuda_impl *im, void *dst, fk_dtype dst_dt, const void *src,
                     fk_dtype src_dt, int64_t n) {
    if (n <= 0) return;
    if (dst_dt == FK_F32)
        fk_cuda_convert_to(im, (float *)dst, src, src_dt, n);
    else if (dst_dt == FK_BF16)
        fk_cuda_convert_to(im, (__nv_bfloat16 *)dst, src, src_dt, n);
    else
        FK_ASSERT(!"fk_cuda_convert: destination must be f32 or bf16");
}

/* dst (M, ldd) bf16 columns [0, K) = src (M, lds) f32 columns [0, K): one
 * block row per grid row, rows strided by gridDim.y. V4: 4 columns per
 * thread (K, lds, ldd multiples of 4, src 16- and dst 8-byte aligned). */
template <bool V4>
__global__ void fk_k_rows_to_bf16(__nv_bfloat16 *__restrict__ dst, int64_t ldd,
                                  const float *__restrict__ src, int64_t lds, int64_t M,
                                  int64_t K) {
    const int64_t kv = V4 ? K / 4 : K;
    for (int64_t r = blockIdx.y; r < M; r += gridDim.y) {
        const float *s = src + r * lds;
        __nv_bfloat16 *d = dst + r * ldd;
        for (int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; c < kv;
             c += (int64_t)gridDim.x * blockDim.x) {
            if (V4) {
                float4 v = reinterpret_cast<const float4 *>(s)[c];
                __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y);
                __nv_bfloat162 hi = __floats2bfloat162_rn(v.z, v.w);
                uint2 u;
                u.x = *reinterpret_cast<uint32_t *>(&lo);
                u.y = *reinterpret_cast<uint32_t *>(&hi);
                reinterpret_cast<uint2 *>(d)[c] = u;
            } else {
                d[c] = __float2bfloat16_rn(s[c]);
            }
        }
    }
}

void fk_cuda_rows_to_bf16(fk_cuda_impl *im, __nv_bfloat16 *dst, int64_t ldd, int64_t c0,
                          const float *src, int64_t lds, int64_t M, int64_t K) {
    if (M <= 0 || K <= 0) return;
    __nv_bfloat16 *d = dst + c0;
    const bool v4 = K % 4 == 0 && lds % 4 == 0 && ldd % 4 == 0 && ((uintptr_t)src & 15) == 0 &&
                    ((uintptr_t)d & 7) == 0;
    const int64_t kv = v4 ? K / 4 : K;
    dim3 grid(fk_cuda_blocks(kv, 256, 64), (unsigned)(M < 65535 ? M : 65535));
    if (v4)
        fk_k_rows_to_bf16<true><<<grid, 256, 0, im->stream>>>(d, ldd, src, lds, M, K);
    else
        fk_k_rows_to_bf16<false><<<grid, 256, 0, im->stream>>>(d, ldd, src, lds, M, K);
    FK_CU_LAUNCH();
}

const void *fk_cuda_weight_as(fk_backend *be, const fk_tensor *t, fk_dtype want, int stage_slot,
                              int conv_slot) {
    fk_cuda_impl *im = fk_cuda_impl_of(be);
    fk_cu_wptr w = fk_cuda_weight(be, t, stage_slot);
    if (w.dt == want) return w.p;
    int64_t n = fk_tensor_numel(t);
    void *dst = fk_cuda_scratch(im, conv_slot, (size_t)(n > 0 ? n : 1) * fk_dtype_size(want));
    fk_cuda_convert(im, dst, want, w.p, w.dt, n);
    return dst;
}

/* ---- bias + activation over rows (the epilogue when cuBLASLt has none) ---- */

__global__ void fk_k_bias_act_rows(float *__restrict__ y, int64_t rows, int64_t cols, int64_t ld,
                                   const float *__restrict__ bias, fk_act act) {
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
        float *yr = y + r * ld;
        for (int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; c < cols;
             c += (int64_t)gridDim.x * blockDim.x) {
            float v = yr[c];
            if (bias) v = v + bias[c];
            yr[c] = fk_dev_act(act, v);
        }
    }
}

void fk_cuda_bias_act_rows(fk_cuda_impl *im, float *y, int64_t rows, int64_t cols, int64_t ld,
                           const float *bias, fk_act act) {
    if (rows <= 0 || cols <= 0 || (!bias && act == FK_ACT_NONE)) return;
    dim3 grid(fk_cuda_blocks(cols, 256, 64), (unsigned)(rows < 65535 ? rows : 65535));
    fk_k_bias_act_rows<<<grid, 256, 0, im->stream>>>(y, rows, cols, ld, bias, act);
    FK_CU_LAUNCH();
}

/* ---- the fallback product ----
 * D (m, n) = alpha·op(A)·op(B) + beta·D, column-major as fk_cu_gemm, batched
 * over blockIdx.y: one thread per output element, f32 accumulation in k
 * order. Runs when cuBLASLt has no algorithm for a problem (and under the
 * NAIVE_GEMM test hook): slow, correct for any shape, stride and alignment.
 * beta == 0 does not read D (it may hold NaN, as cuBLASLt allows). */
typedef struct fk_cu_naive_args {
    const void *a, *b;
    float *d;
    int64_t m, n, k, lda, ldb, ldd, sa, sb, sd;
    int batch, ta, tb;
    float alpha, beta;
} fk_cu_naive_args;

template <typename T> static __device__ __forceinline__ float fk_dev_to_f32(T v);
template <> __device__ __forceinline__ float fk_dev_to_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ float fk_dev_to_f32<__nv_bfloat16>(__nv_bfloat16 v) {
    return __bfloat162float(v);
}

template <typename T> __global__ void fk_k_gemm_naive(const fk_cu_naive_args g) {
    const int64_t mn = g.m * g.n, stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t bi = blockIdx.y; bi < g.batch; bi += gridDim.y) {
        const T *A = (const T *)g.a + bi * g.sa, *B = (const T *)g.b + bi * g.sb;
        float *D = g.d + bi * g.sd;
        for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < mn; idx += stride) {
            const int64_t i = idx % g.m, j = idx / g.m; /* D row i, column j */
            float acc = 0.0f;
            for (int64_t kk = 0; kk < g.k; kk++) {
                /* op(A)[i, kk]: A stored (k, m) when transposed, else (m, k) */
                const float av = fk_dev_to_f32<T>(g.ta ? A[kk + i * g.lda] : A[i + kk * g.lda]);
                /* op(B)[kk, j]: B stored (n, k) when transposed, else (k, n) */
                const float bv = fk_dev_to_f32<T>(g.tb ? B[j + kk * g.ldb] : B[kk + j * g.ldb]);
                acc = fmaf(av, bv, acc);
            }
            float *dp = D + j * g.ldd + i;
            *dp = g.beta != 0.0f ? g.alpha * acc + g.beta * *dp : g.alpha * acc;
        }
    }
}

static void fk_cuda_gemm_naive(fk_cuda_impl *im, const fk_cu_gemm *g) {
    fk_cu_naive_args a;
    FK_ASSERT(!g->d_bf16);
    a.a = g->a, a.b = g->b, a.d = (float *)g->d;
    a.m = g->m, a.n = g->n, a.k = g->k;
    a.lda = g->lda, a.ldb = g->ldb, a.ldd = g->ldd;
    a.sa = g->batch > 1 ? g->sa : 0, a.sb = g->batch > 1 ? g->sb : 0;
    a.sd = g->batch > 1 ? g->sd : 0;
    a.batch = g->batch, a.ta = g->ta, a.tb = g->tb;
    a.alpha = g->alpha, a.beta = g->beta;
    dim3 grid(fk_cuda_blocks(g->m * g->n, 256, (int64_t)im->sm_count * 8),
              (unsigned)(g->batch < 65535 ? g->batch : 65535));
    if (g->ab_dt == FK_BF16)
        fk_k_gemm_naive<__nv_bfloat16><<<grid, 256, 0, im->stream>>>(a);
    else
        fk_k_gemm_naive<float><<<grid, 256, 0, im->stream>>>(a);
    FK_CU_LAUNCH();
    if (g->bias || g->act != FK_ACT_NONE)
        for (int bi = 0; bi < g->batch; bi++)
            fk_cuda_bias_act_rows(im, (float *)g->d + (int64_t)bi * a.sd, g->n, g->m, g->ldd,
                                  g->bias, g->act);
}

/* ---- the cuBLASLt product ---- */

typedef struct fk_cu_plan_key {
    int64_t m, n, k, lda, ldb, ldd, sa, sb, sd;
    int32_t batch, epi;
    uint8_t ta, tb, f32, beta_nz, d_bf16, bias_bf16;
    uint16_t align_a, align_b, align_d, align_bias;
} fk_cu_plan_key;

struct fk_cu_plan {
    fk_cu_plan_key key;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatmulAlgo_t algo;
    bool ok; /* an algorithm was found */
};

/* Largest power of two (<= 256) dividing the address and every row / batch
 * offset of a matrix. */
static uint16_t fk_cu_align(const void *p, int64_t ld, int64_t stride, int batch, size_t es) {
    uint64_t v = (uint64_t)(uintptr_t)p | ((uint64_t)ld * es) | 256u;
    if (batch > 1) v |= (uint64_t)stride * es;
    return (uint16_t)(v & (~v + 1));
}

static cublasLtMatrixLayout_t fk_cu_layout(cudaDataType_t t, int64_t rows, int64_t cols, int64_t ld,
                                           int batch, int64_t stride) {
    cublasLtMatrixLayout_t l = NULL;
    FK_LT(cublasLtMatrixLayoutCreate(&l, t, (uint64_t)rows, (uint64_t)cols, ld));
    if (batch > 1) {
        int32_t bc = batch;
        FK_LT(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof(bc)));
        FK_LT(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                               &stride, sizeof(stride)));
    }
    return l;
}

static fk_cu_plan *fk_cu_plan_get(fk_cuda_impl *im, const fk_cu_plan_key *key) {
    for (int i = 0; i < im->n_plans; i++)
        if (!memcmp(&im->plans[i].key, key, sizeof(*key))) return &im->plans[i];
    if (im->n_plans == im->cap_plans) {
        int cap = im->cap_plans ? im->cap_plans * 2 : 64;
        fk_cu_plan *np = (fk_cu_plan *)realloc(im->plans, (size_t)cap * sizeof(*np));
        FK_ASSERT(np); /* host out of memory while planning a product */
        im->plans = np;
        im->cap_plans = cap;
    }
    fk_cu_plan *p = &im->plans[im->n_plans];
    memset(p, 0, sizeof(*p));
    p->key = *key;
    const cudaDataType_t abt = key->f32 ? CUDA_R_32F : CUDA_R_16BF;
    FK_LT(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    int32_t ta = key->ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb = key->tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    FK_LT(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    FK_LT(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    cublasLtEpilogue_t epi = (cublasLtEpilogue_t)key->epi;
    FK_LT(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
    if (key->d_bf16 && !key->bias_bf16 &&
        (epi == CUBLASLT_EPILOGUE_BIAS || epi == CUBLASLT_EPILOGUE_GELU_BIAS)) {
        /* an f32 bias stays f32 (the default type is D's): added before the rounding */
        int32_t bt = CUDA_R_32F;
        FK_LT(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt,
                                             sizeof(bt)));
    }
    /* stored shapes: A is (k, m) when transposed, B is (n, k) when transposed */
    p->la = fk_cu_layout(abt, key->ta ? key->k : key->m, key->ta ? key->m : key->k, key->lda,
                         key->batch, key->sa);
    p->lb = fk_cu_layout(abt, key->tb ? key->n : key->k, key->tb ? key->k : key->n, key->ldb,
                         key->batch, key->sb);
    p->ld = fk_cu_layout(key->d_bf16 ? CUDA_R_16BF : CUDA_R_32F, key->m, key->n, key->ldd,
                         key->batch, key->sd);

    cublasLtMatmulPreference_t pref = NULL;
    FK_LT(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = FK_CU_LT_WORKSPACE;
    FK_LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                               sizeof(ws)));
    uint32_t al[4] = {key->align_a, key->align_b, key->align_d, key->align_d};
    FK_LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                               &al[0], sizeof(al[0])));
    FK_LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                               &al[1], sizeof(al[1])));
    FK_LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                               &al[2], sizeof(al[2])));
    FK_LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                               &al[3], sizeof(al[3])));
    cublasLtMatmulHeuristicResult_t res;
    memset(&res, 0, sizeof(res));
    int nres = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(im->lt, p->op, p->la, p->lb, p->ld, p->ld,
                                                       pref, 1, &res, &nres);
    FK_LT(cublasLtMatmulPreferenceDestroy(pref));
    p->ok = st == CUBLAS_STATUS_SUCCESS && nres > 0 && res.state == CUBLAS_STATUS_SUCCESS;
    if (p->ok) p->algo = res.algo;
    im->n_plans++;
    return p;
}

void fk_cuda_plans_free(fk_cuda_impl *im) {
    for (int i = 0; i < im->n_plans; i++) {
        fk_cu_plan *p = &im->plans[i];
        if (p->la) (void)cublasLtMatrixLayoutDestroy(p->la);
        if (p->lb) (void)cublasLtMatrixLayoutDestroy(p->lb);
        if (p->ld) (void)cublasLtMatrixLayoutDestroy(p->ld);
        if (p->op) (void)cublasLtMatmulDescDestroy(p->op);
    }
    free(im->plans);
    im->plans = NULL;
    im->n_plans = im->cap_plans = 0;
}

/* A bf16 D the fused path could not make: the f32 product (with every
 * fallback) in scratch Y, then rounded to bf16 nearest-even. */
static void fk_cuda_gemm_bf16_staged(fk_backend *be, const fk_cu_gemm *g) {
    fk_cuda_impl *im = fk_cuda_impl_of(be);
    float *t = (float *)fk_cuda_scratch(im, FK_CU_SCR_Y, (size_t)(g->m * g->n) * 4);
    fk_cu_gemm f = *g;
    f.d = t, f.ldd = g->m, f.d_bf16 = false;
    fk_cuda_gemm(be, &f);
    /* D (m, n) column-major = n rows of m elements */
    fk_cuda_rows_to_bf16(im, (__nv_bfloat16 *)g->d, g->ldd, 0, t, g->m, g->n, g->m);
}

void fk_cuda_gemm(fk_backend *be, const fk_cu_gemm *g) {
    fk_cuda_impl *im = fk_cuda_impl_of(be);
    FK_ASSERT(g->ab_dt == FK_BF16 || g->ab_dt == FK_F32);
    FK_ASSERT(g->batch >= 1 && g->m >= 0 && g->n >= 0 && g->k >= 0);
    const bool dbf = g->d_bf16;
    if (dbf) FK_ASSERT(g->ab_dt == FK_BF16 && g->batch == 1 && g->beta == 0.0f);
    if (g->m == 0 || g->n == 0) return;
    if (dbf && (g->k == 0 || (im->hooks & FK_CUDA_HOOK_NAIVE_GEMM))) {
        fk_cuda_gemm_bf16_staged(be, g);
        return;
    }
    if (g->k == 0) { /* D = beta·D (+ bias, act): no product to run */
        for (int bi = 0; bi < g->batch; bi++) {
            float *d = (float *)g->d + (int64_t)bi * g->sd;
            if (g->beta == 0.0f)
                FK_CU(cudaMemset2DAsync(d, (size_t)g->ldd * sizeof(float), 0,
                                        (size_t)g->m * sizeof(float), (size_t)g->n, im->stream));
            else
                FK_ASSERT(g->beta == 1.0f);
            fk_cuda_bias_act_rows(im, d, g->n, g->m, g->ldd, g->bias, g->act);
        }
        return;
    }
    if (im->hooks & FK_CUDA_HOOK_NAIVE_GEMM) { /* test hook */
        fk_cuda_gemm_naive(im, g);
        return;
    }
    const bool f32 = g->ab_dt == FK_F32;
    const size_t es = f32 ? 4 : 2;
    fk_cu_plan_key key;
    memset(&key, 0, sizeof(key));
    key.m = g->m, key.n = g->n, key.k = g->k;
    key.lda = g->lda, key.ldb = g->ldb, key.ldd = g->ldd;
    key.batch = g->batch;
    if (g->batch > 1) key.sa = g->sa, key.sb = g->sb, key.sd = g->sd;
    key.ta = g->ta, key.tb = g->tb, key.f32 = f32, key.beta_nz = g->beta != 0.0f;
    key.d_bf16 = dbf;
    key.align_a = fk_cu_align(g->a, g->lda, g->sa, g->batch, es);
    key.align_b = fk_cu_align(g->b, g->ldb, g->sb, g->batch, es);
    key.align_d = fk_cu_align(g->d, g->ldd, g->sd, g->batch, dbf ? 2 : 4);
    /* epilogue: bias (an exact f32 add) when the vector is 16-byte aligned:
     * cuBLASLt states no alignment for the bias pointer, and other projects
     * (Marian) found the bias epilogue failing on A100 below 16 bytes; ours
     * are 256-byte aligned unless the caller passes a device view into a
     * larger tensor, which then gets the bias from the kernel after the
     * product. GELU(tanh) in bf16 mode only (its own tanh is not the
     * reference formula; f32 mode must match to ~1e-5) */
    const void *bias_p = dbf && g->bias_d ? g->bias_d : (const void *)g->bias;
    const bool epi_bias = g->bias && g->batch == 1 && ((uintptr_t)bias_p & 15) == 0;
    const bool epi_gelu = g->act == FK_ACT_GELU_TANH && !f32 && g->batch == 1;
    int epi = CUBLASLT_EPILOGUE_DEFAULT;
    if (epi_bias && epi_gelu) epi = CUBLASLT_EPILOGUE_GELU_BIAS;
    else if (epi_bias) epi = CUBLASLT_EPILOGUE_BIAS;
    else if (epi_gelu) epi = CUBLASLT_EPILOGUE_GELU;
    key.epi = epi;
    key.bias_bf16 = epi_bias && bias_p != (const void *)g->bias;
    key.align_bias = epi_bias ? fk_cu_align(bias_p, 0, 0, 1, key.bias_bf16 ? 2 : 4) : 0;
    /* a bf16 D takes cuBLASLt's output stage only with the whole epilogue in it
     * (a bias or activation applied after the rounding would round twice) */
    const bool fused_all = (!g->bias || epi_bias) && (g->act == FK_ACT_NONE || epi_gelu);
    if (dbf && !fused_all) {
        fk_cuda_gemm_bf16_staged(be, g);
        return;
    }
    fk_cu_plan *p = fk_cu_plan_get(im, &key);
    if (!p->ok && dbf) {
        fk_cuda_gemm_bf16_staged(be, g);
        return;
    }
    if (!p->ok && epi != CUBLASLT_EPILOGUE_DEFAULT) { /* no fused algorithm: plain + kernel */
        key.epi = epi = CUBLASLT_EPILOGUE_DEFAULT;
        key.align_bias = 0;
        key.bias_bf16 = 0;
        p = fk_cu_plan_get(im, &key);
    }
    if (!p->ok) { /* no algorithm for this problem (shape, strides, alignment) */
        im->n_naive_gemm++;
        fk_cuda_gemm_naive(im, g);
        return;
    }
    const bool bias_done = epi == CUBLASLT_EPILOGUE_BIAS || epi == CUBLASLT_EPILOGUE_GELU_BIAS;
    const bool act_done = epi == CUBLASLT_EPILOGUE_GELU || epi == CUBLASLT_EPILOGUE_GELU_BIAS;
    if (bias_done) {
        const void *bp = bias_p;
        FK_LT(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bp,
                                             sizeof(bp)));
    }
    float alpha = g->alpha, beta = g->beta;
    const cublasStatus_t st =
        cublasLtMatmul(im->lt, p->op, &alpha, g->a, p->la, g->b, p->lb, &beta, g->d, p->ld, g->d,
                       p->ld, &p->algo, im->lt_ws, FK_CU_LT_WORKSPACE, im->stream);
    if (st == CUBLAS_STATUS_NOT_SUPPORTED) {
        /* the heuristic's algorithm refused the call (nothing was queued):
         * this plan is not used again (an epilogue plan falls back to the
         * plain one next time), this call runs on the fallback kernel (a
         * bf16 D: on the staged f32 path) */
        p->ok = false;
        if (dbf) {
            fk_cuda_gemm_bf16_staged(be, g);
            return;
        }
        im->n_naive_gemm++;
        fk_cuda_gemm_naive(im, g);
        return;
    }
    fk_cuda_check_lt(st, "cublasLtMatmul", __FILE__, __LINE__);
    FK_CU_LAUNCH();
    const float *rest_bias = bias_done ? NULL : g->bias;
    const fk_act rest_act = act_done ? FK_ACT_NONE : g->act;
    if (rest_bias || rest_act != FK_ACT_NONE)
        for (int bi = 0; bi < g->batch; bi++)
            fk_cuda_bias_act_rows(im, (float *)g->d + (int64_t)bi * g->sd, g->n, g->m, g->ldd,
                                  rest_bias, rest_act);
}

/* ---- linear, linear_act, linear_cat ---- */

/* Part [c0, c0 + K) of the bf16 join (M, ldd): an f32 part rounded to
 * nearest-even, a bf16 part copied. */
static void fk_cuda_join_part(fk_cuda_impl *im, __nv_bfloat16 *dst, int64_t ldd, int64_t c0,
                              const fk_tensor *x, int64_t M, int64_t K) {
    if (x->dtype == FK_F32) {
        fk_cuda_rows_to_bf16(im, dst, ldd, c0, (const float *)x->data, K, M, K);
    } else if (K > 0) {
        FK_CU(cudaMemcpy2DAsync(dst + c0, (size_t)ldd * 2, x->data, (size_t)K * 2, (size_t)K * 2,
                                (size_t)M, cudaMemcpyDeviceToDevice, im->stream));
    }
}

/* y (M, N) = act([x1 | x2] · wᵀ + b); x2 NULL: x1 alone. tmp: linear_cat's
 * join buffer (f32 mode) or NULL. bf16 mode: y, x1, x2 may each be bf16
 * (backend.h's bf16 activations; supports() says so in bf16 mode only): a
 * bf16 x is what the product would have rounded x to, read in place when it
 * is the whole operand; a bf16 y is the f32 result rounded (fk_cu_gemm). */
static void fk_cuda_linear_any(fk_backend *be, fk_tensor *y, const fk_tensor *x1,
                               const fk_tensor *x2, const fk_tensor *w, const fk_tensor *b,
                               fk_act act, fk_tensor *tmp) {
    fk_cuda_impl *im = fk_cuda_enter(be);
    FK_ASSERT((unsigned)act < FK_ACT_COUNT);
    fk_cuda_assert_act(y);
    fk_cuda_assert_act(x1);
    const fk_dtype act_ok = im->bf16 ? FK_BF16 : FK_F32; /* the dtype besides f32 allowed */
    FK_ASSERT((y->dtype == FK_F32 || y->dtype == act_ok) &&
              (x1->dtype == FK_F32 || x1->dtype == act_ok));
    FK_ASSERT(w && w->ndim == 2 && fk_dtype_is_float(w->dtype));
    const int64_t M = fk_tensor_rows(x1), K1 = fk_tensor_cols(x1); /* x1 (M, K1) */
    int64_t K2 = 0;
    if (x2) {
        fk_cuda_assert_act(x2);
        FK_ASSERT((x2->dtype == FK_F32 || x2->dtype == act_ok) && fk_tensor_rows(x2) == M);
        K2 = fk_tensor_cols(x2);
        FK_ASSERT(y->data != x2->data);
    }
    const int64_t K = K1 + K2, N = w->shape[0]; /* w (N, K) */
    FK_ASSERT(w->shape[1] == K);
    FK_ASSERT(fk_tensor_rows(y) == M && fk_tensor_cols(y) == N); /* y (M, N) */
    FK_ASSERT(y->data != x1->data);
    if (b) FK_ASSERT(fk_tensor_numel(b) == N && fk_dtype_is_float(b->dtype)); /* b (N) */
    if (M == 0 || N == 0) return;

    const fk_dtype ab = im->bf16 ? FK_BF16 : FK_F32;
    const void *wp = fk_cuda_weight_as(be, w, ab, FK_CU_SCR_STAGE0, FK_CU_SCR_W);
    const float *bias = b ? (const float *)fk_cuda_weight_as(be, b, FK_F32, FK_CU_SCR_STAGE1,
                                                             FK_CU_SCR_BIAS)
                          : NULL;
    /* a bf16 y with a bf16 bias: the product stage reads the bias as stored
     * (exactly the values of the f32 copy above) */
    const void *bias_d = NULL;
    if (b && y->dtype == FK_BF16) {
        const fk_cu_wptr bw = fk_cuda_weight(be, b, FK_CU_SCR_STAGE1);
        if (bw.dt == FK_BF16) bias_d = bw.p;
    }
    const void *xa;
    int64_t ldx = K;
    if (im->bf16 && !x2 && x1->dtype == FK_BF16) { /* already the operand */
        xa = x1->data;
    } else if (im->bf16) { /* x → bf16 (M, ldx) in scratch A, the two parts side by side */
        ldx = fk_cuda_ld8(K);
        __nv_bfloat16 *xb = (__nv_bfloat16 *)fk_cuda_scratch(im, FK_CU_SCR_A,
                                                             (size_t)(M * ldx) * 2 + 16);
        fk_cuda_join_part(im, xb, ldx, 0, x1, M, K1);
        if (x2) fk_cuda_join_part(im, xb, ldx, K1, x2, M, K2);
        xa = xb;
    } else if (!x2) {
        xa = x1->data;
    } else { /* f32: join the rows (in tmp when the caller gave a device one) */
        float *xj;
        if (tmp && tmp->device == FK_DEVICE_CUDA && tmp->dtype == FK_F32 &&
            fk_tensor_numel(tmp) >= M * K)
            xj = (float *)tmp->data;
        else
            xj = (float *)fk_cuda_scratch(im, FK_CU_SCR_A, (size_t)(M * K) * 4);
        if (K1)
            FK_CU(cudaMemcpy2DAsync(xj, (size_t)K * 4, x1->data, (size_t)K1 * 4, (size_t)K1 * 4,
                                    (size_t)M, cudaMemcpyDeviceToDevice, im->stream));
        if (K2)
            FK_CU(cudaMemcpy2DAsync(xj + K1, (size_t)K * 4, x2->data, (size_t)K2 * 4,
                                    (size_t)K2 * 4, (size_t)M, cudaMemcpyDeviceToDevice,
                                    im->stream));
        xa = xj;
    }
    fk_cu_gemm g;
    memset(&g, 0, sizeof(g));
    g.ta = true, g.tb = false;
    g.m = N, g.n = M, g.k = K;
    g.a = wp, g.lda = K;
    g.b = xa, g.ldb = ldx;
    g.d = y->data, g.ldd = N;
    g.d_bf16 = y->dtype == FK_BF16;
    g.batch = 1;
    g.ab_dt = ab;
    g.alpha = 1.0f, g.beta = 0.0f;
    g.bias = bias;
    g.bias_d = bias_d;
    g.act = act;
    fk_cuda_gemm(be, &g);
}

extern "C" void fk_cuda_linear(fk_backend *be, fk_tensor *y, const fk_tensor *x,
                               const fk_tensor *w, const fk_tensor *b) {
    fk_cuda_linear_any(be, y, x, NULL, w, b, FK_ACT_NONE, NULL);
}

extern "C" void fk_cuda_linear_act(fk_backend *be, fk_tensor *y, const fk_tensor *x,
                                   const fk_tensor *w, const fk_tensor *b, fk_act act) {
    fk_cuda_linear_any(be, y, x, NULL, w, b, act, NULL);
}

extern "C" void fk_cuda_linear_cat(fk_backend *be, fk_tensor *y, const fk_tensor *x1,
                                   const fk_tensor *x2, const fk_tensor *w, const fk_tensor *b,
                                   fk_tensor *tmp) {
    fk_cuda_linear_any(be, y, x1, x2, w, b, FK_ACT_NONE, tmp);
}
