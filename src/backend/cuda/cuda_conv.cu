/* cuda_conv: conv2d, group_norm and upsample_nearest2x (the autoencoder's
 * ops) for the CUDA backend.
 *
 * conv2d is im2col + cuBLASLt, chunked over output pixels:
 *   y[b, co, p] = Σ_k w[co, k] · col[k, p] (+ bias[co]),
 *   k = (ci, ky, kx) flattened (K = Ci·kh·kw), p = (oy, ox) flattened,
 *   col[k, p] = x[b, ci, oy·s + ky − top, ox·s + kx − left] (0 outside).
 * A chunk of Nc pixels has its column matrix (K, Nc) written into scratch A
 * at row stride ldc = Nc rounded up to 8 (bf16 in bf16 mode, f32 in f32
 * mode), at most fk_cuda_chunk_bytes (32 MiB), then one product writes
 * y[b, :, p0 : p0+Nc]: column-major D (Nc, Co) with ld N is the NCHW output
 * block, A = col (Nc, K) with ld ldc, B = w (K, Co). The bias runs per
 * output channel, i.e. per column of D, which the cuBLASLt bias epilogue
 * (per row) cannot do: one pass over y after the products adds it. A 1×1,
 * stride-1, unpadded convolution in f32 mode reads x in place (x_b is its
 * own column matrix). cuDNN was the alternative; im2col + cuBLASLt keeps to
 * the library already linked, gives predictable memory (the chunk bound) and
 * the same numerics as linear; its cost is writing and reading the column
 * matrix (K/Ci times the input), acceptable for a first version.
 *
 * group_norm: statistics in two passes (mean, then Σ(x − mean)²) as the
 * reference, each split over many blocks per (batch, group) span (its
 * elements are contiguous in NCHW); per-thread and per-block partial sums in
 * double (the reference's statistics are double), added in a fixed order by
 * a finalize kernel: deterministic. */
#include "backend/cuda/cuda_internal.h"

#include <string.h>

/* ---- conv2d ---- */

typedef struct fk_cu_conv_geom {
    int Ci, H, W, kh, kw, s, top, left, Ho, Wo;
} fk_cu_conv_geom;

/* col (K, nc) row-major at row stride ldc, pixels [p0, p0 + nc) of one image
 * x (Ci, H, W) */
template <typename T>
__global__ void fk_k_im2col(T *__restrict__ col, int64_t ldc, const float *__restrict__ x,
                            fk_cu_conv_geom g, int64_t p0, int64_t nc, int64_t K) {
    for (int64_t k = blockIdx.y; k < K; k += gridDim.y) {
        const int kx = (int)(k % g.kw), ky = (int)((k / g.kw) % g.kh), ci = (int)(k / (g.kw * g.kh));
        const float *xc = x + (int64_t)ci * g.H * g.W;
        T *ck = col + k * ldc;
        for (int64_t pp = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; pp < nc;
             pp += (int64_t)gridDim.x * blockDim.x) {
            const uint32_t p = (uint32_t)(p0 + pp); /* < Ho·Wo <= INT32_MAX: 32-bit division */
            const int oy = (int)(p / (uint32_t)g.Wo), ox = (int)(p % (uint32_t)g.Wo);
            const int iy = oy * g.s + ky - g.top, ix = ox * g.s + kx - g.left;
            float v = 0.0f;
            if (iy >= 0 && iy < g.H && ix >= 0 && ix < g.W) v = xc[(int64_t)iy * g.W + ix];
            ck[pp] = (T)v;
        }
    }
}

/* y (rows, cols) with row stride ld: y[r, :] += bias[r % C] */
__global__ void fk_k_bias_channels(float *__restrict__ y, int64_t rows, int64_t cols,
                                   const float *__restrict__ bias, int64_t C) {
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
        const float bv = bias[r % C];
        float *yr = y + r * cols;
        for (int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; c < cols;
             c += (int64_t)gridDim.x * blockDim.x)
            yr[c] = yr[c] + bv;
    }
}

extern "C" void fk_cuda_conv2d(fk_backend *be, fk_tensor *y, const fk_tensor *x,
                               const fk_tensor *w, const fk_tensor *b, int stride,
                               const int pad[4]) {
    fk_cuda_impl *im = fk_cuda_enter(be);
    FK_ASSERT(y && x && w && pad);
    fk_cuda_assert_act(y);
    fk_cuda_assert_act(x);
    FK_ASSERT(x->ndim == 4 && y->ndim == 4 && w->ndim == 4);
    FK_ASSERT(x->dtype == FK_F32 && y->dtype == FK_F32 && fk_dtype_is_float(w->dtype));
    FK_ASSERT(stride >= 1 && pad[0] >= 0 && pad[1] >= 0 && pad[2] >= 0 && pad[3] >= 0);
    FK_ASSERT(y->data != x->data);
    const int64_t B = x->shape[0], Ci = x->shape[1], H = x->shape[2], W = x->shape[3];
    const int64_t Co = w->shape[0], kh = w->shape[2], kw = w->shape[3];
    FK_ASSERT(w->shape[1] == Ci && kh >= 1 && kw >= 1); /* w (Co, Ci, kh, kw) */
    FK_ASSERT(H + pad[0] + pad[2] >= kh && W + pad[1] + pad[3] >= kw);
    const int64_t Ho = (H + pad[0] + pad[2] - kh) / stride + 1;
    const int64_t Wo = (W + pad[1] + pad[3] - kw) / stride + 1;
    FK_ASSERT(y->shape[0] == B && y->shape[1] == Co && y->shape[2] == Ho && y->shape[3] == Wo);
    FK_ASSERT(!b || (fk_dtype_is_float(b->dtype) && fk_tensor_numel(b) == Co)); /* b (Co) */
    const int64_t K = Ci * kh * kw, N = Ho * Wo;
    if (B == 0 || Co == 0 || N == 0) return;
    FK_ASSERT(H <= INT32_MAX && W <= INT32_MAX && N <= INT32_MAX && Ci <= INT32_MAX);

    const bool bf16 = im->bf16;
    const fk_dtype ab = bf16 ? FK_BF16 : FK_F32;
    const size_t es = bf16 ? 2 : 4;
    const void *wp = K ? fk_cuda_weight_as(be, w, ab, FK_CU_SCR_STAGE0, FK_CU_SCR_W) : NULL;
    const float *bias =
        b ? (const float *)fk_cuda_weight_as(be, b, FK_F32, FK_CU_SCR_STAGE1, FK_CU_SCR_BIAS) : NULL;
    const bool direct = !bf16 && kh == 1 && kw == 1 && stride == 1 && !pad[0] && !pad[1] &&
                        !pad[2] && !pad[3];
    /* pixels per chunk: the column matrix within the bound, a multiple of 64 */
    int64_t nc = K ? (int64_t)(fk_cuda_chunk_bytes(im) / ((size_t)K * es)) : N;
    if (nc >= N || direct) nc = N;
    else nc = nc >= 64 ? nc / 64 * 64 : (nc > 0 ? nc : 1);
    void *col = (direct || !K) ? NULL
                               : fk_cuda_scratch(im, FK_CU_SCR_A, (size_t)(K * fk_cuda_ld8(nc)) * es);
    fk_cu_conv_geom g = {(int)Ci, (int)H, (int)W, (int)kh, (int)kw, stride, pad[0], pad[1],
                         (int)Ho, (int)Wo};
    for (int64_t bi = 0; bi < B; bi++) {
        const float *xb = (const float *)x->data + bi * Ci * H * W; /* (Ci, H, W) */
        float *yb = (float *)y->data + bi * Co * N;                  /* (Co, N) */
        for (int64_t p0 = 0; p0 < N; p0 += nc) {
            const int64_t n = N - p0 < nc ? N - p0 : nc;
            const void *a = xb; /* the direct case: x_b is (K = Ci, N) */
            int64_t lda = N;
            if (!direct && K) {
                const int64_t ldc = fk_cuda_ld8(n);
                dim3 grid(fk_cuda_blocks(n, 256, 256), (unsigned)(K < 65535 ? K : 65535));
                if (bf16)
                    fk_k_im2col<__nv_bfloat16><<<grid, 256, 0, im->stream>>>(
                        (__nv_bfloat16 *)col, ldc, xb, g, p0, n, K);
                else
                    fk_k_im2col<float><<<grid, 256, 0, im->stream>>>((float *)col, ldc, xb, g, p0,
                                                                      n, K);
                FK_CU_LAUNCH();
                a = col;
                lda = ldc;
            } else if (direct) {
                a = xb + p0;
            }
            fk_cu_gemm gm;
            memset(&gm, 0, sizeof(gm));
            gm.ta = false, gm.tb = false;
            gm.m = n, gm.n = Co, gm.k = K;
            gm.a = a, gm.lda = lda;
            gm.b = wp, gm.ldb = K;
            gm.d = yb + p0, gm.ldd = N;
            gm.batch = 1;
            gm.ab_dt = ab;
            gm.alpha = 1.0f, gm.beta = 0.0f;
            gm.act = FK_ACT_NONE;
            fk_cuda_gemm(be, &gm);
        }
    }
    if (bias) {
        const int64_t rows = B * Co;
        dim3 grid(fk_cuda_blocks(N, 256, 64), (unsigned)(rows < 65535 ? rows : 65535));
        fk_k_bias_channels<<<grid, 256, 0, im->stream>>>((float *)y->data, rows, N, bias, Co);
        FK_CU_LAUNCH();
    }
}

/* ---- group_norm ---- */

#define FK_GN_THREADS 256

/* part[row, ch] = Σ over chunk ch of row `row` (n elements) of x, or of
 * (x − mean[row])² when stats is not NULL (stats (rows, 2): mean, rstd) */
__global__ void fk_k_gn_partial(const float *__restrict__ x, int64_t n, int64_t len,
                                const double *__restrict__ stats, double *__restrict__ part) {
    __shared__ double sh[32];
    const int64_t row = blockIdx.y, ch = blockIdx.x, nch = gridDim.x;
    const float *xr = x + row * n;
    const int64_t i0 = ch * len, i1 = i0 + len < n ? i0 + len : n;
    /* in double as the reference's statistics (cpu_conv.c): f32 partials of
     * an offset group (|mean| ≫ std) drift from them by many f32 ulps */
    const double m = stats ? stats[2 * row] : 0.0;
    double s = 0.0;
    for (int64_t i = i0 + threadIdx.x; i < i1; i += blockDim.x) {
        const double v = stats ? (double)xr[i] - m : (double)xr[i];
        s += stats ? v * v : v;
    }
    const double t = fk_dev_block_sum_d(s, sh);
    if (threadIdx.x == 0) part[row * nch + ch] = t;
}

/* stats[row] from the partial sums of the row, added in order */
__global__ void fk_k_gn_finalize(const double *__restrict__ part, int64_t nch, int64_t rows,
                                 int64_t n, float eps, double *__restrict__ stats, int second) {
    const int64_t row = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= rows) return;
    double s = 0.0;
    for (int64_t c = 0; c < nch; c++) s += part[row * nch + c];
    const double v = n > 0 ? s / (double)n : 0.0;
    if (!second) stats[2 * row] = v;
    else stats[2 * row + 1] = 1.0 / sqrt(v + (double)eps);
}

/* y = (x − mean)·(rstd·w) + b per channel, the reference expression;
 * rows = B·C planes of HW */
__global__ void fk_k_gn_apply(float *y, const float *x, const double *__restrict__ stats,
                              const void *__restrict__ w, fk_dtype wdt, const void *__restrict__ b,
                              fk_dtype bdt, int64_t rows, int64_t C, int64_t cpg, int64_t HW) {
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
        const int64_t ch = r % C, grp = r / cpg; /* grp: (batch, group) index */
        const float m = (float)stats[2 * grp];
        const float wv = w ? fk_dev_load_f32(w, wdt, ch) : 1.0f;
        const float bv = b ? fk_dev_load_f32(b, bdt, ch) : 0.0f;
        const float sc = (float)(stats[2 * grp + 1] * (double)wv);
        const float *xr = x + r * HW;
        float *yr = y + r * HW;
        for (int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; p < HW;
             p += (int64_t)gridDim.x * blockDim.x)
            yr[p] = (xr[p] - m) * sc + bv;
    }
}

extern "C" void fk_cuda_group_norm(fk_backend *be, fk_tensor *y, const fk_tensor *x, int groups,
                                   const fk_tensor *w, const fk_tensor *b, float eps) {
    fk_cuda_impl *im = fk_cuda_enter(be);
    FK_ASSERT(y && x && x->ndim >= 2 && x->dtype == FK_F32 && y->dtype == FK_F32);
    fk_cuda_assert_act(y);
    fk_cuda_assert_act(x);
    FK_ASSERT(fk_tensor_same_shape(x, y));
    const int64_t B = x->shape[0], C = x->shape[1];
    FK_ASSERT(groups >= 1 && C % groups == 0);
    FK_ASSERT(!w || (fk_dtype_is_float(w->dtype) && fk_tensor_numel(w) == C));
    FK_ASSERT(!b || (fk_dtype_is_float(b->dtype) && fk_tensor_numel(b) == C));
    int64_t HW = 1;
    for (int i = 2; i < x->ndim; i++) HW *= x->shape[i];
    const int64_t cpg = C / groups, n = cpg * HW, rows = B * groups;
    if (rows == 0 || n == 0) return;
    FK_ASSERT(rows <= 65535);
    /* chunks per (batch, group): ~16K elements each, at most 1024 */
    int64_t nch = (n + 16383) / 16384;
    if (nch > 1024) nch = 1024;
    const int64_t len = (n + nch - 1) / nch;
    double *part = (double *)fk_cuda_scratch(im, FK_CU_SCR_P, (size_t)(rows * nch + 2 * rows) * 8);
    double *stats = part + rows * nch; /* (rows, 2): mean, rstd */
    const float *xd = (const float *)x->data;
    const unsigned fin_blocks = fk_cuda_blocks(rows, 128, 65535);
    dim3 pgrid((unsigned)nch, (unsigned)rows);
    fk_k_gn_partial<<<pgrid, FK_GN_THREADS, 0, im->stream>>>(xd, n, len, NULL, part);
    FK_CU_LAUNCH();
    fk_k_gn_finalize<<<fin_blocks, 128, 0, im->stream>>>(part, nch, rows, n, eps, stats, 0);
    FK_CU_LAUNCH();
    fk_k_gn_partial<<<pgrid, FK_GN_THREADS, 0, im->stream>>>(xd, n, len, stats, part);
    FK_CU_LAUNCH();
    fk_k_gn_finalize<<<fin_blocks, 128, 0, im->stream>>>(part, nch, rows, n, eps, stats, 1);
    FK_CU_LAUNCH();
    fk_cu_wptr wp = {NULL, FK_F32}, bp = {NULL, FK_F32};
    if (w) wp = fk_cuda_weight(be, w, FK_CU_SCR_STAGE0);
    if (b) bp = fk_cuda_weight(be, b, FK_CU_SCR_STAGE1);
    const int64_t planes = B * C;
    dim3 agrid(fk_cuda_blocks(HW, 256, 64), (unsigned)(planes < 65535 ? planes : 65535));
    fk_k_gn_apply<<<agrid, 256, 0, im->stream>>>((float *)y->data, xd, stats, wp.p, wp.dt, bp.p,
                                                 bp.dt, planes, C, cpg, HW);
    FK_CU_LAUNCH();
}

/* ---- upsample_nearest2x ---- */

/* x rows (B·C·H, W) → y rows (B·C·2H, 2W): input row r feeds output rows 2r
 * and 2r + 1 (y row r·4W), each element twice */
__global__ void fk_k_upsample2x(float *__restrict__ y, const float *__restrict__ x, int64_t rows,
                                int64_t W) {
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
        const float *xr = x + r * W;
        float *y0 = y + r * 4 * W, *y1 = y0 + 2 * W;
        for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < W;
             j += (int64_t)gridDim.x * blockDim.x) {
            const float v = xr[j];
            y0[2 * j] = v, y0[2 * j + 1] = v;
            y1[2 * j] = v, y1[2 * j + 1] = v;
        }
    }
}

extern "C" void fk_cuda_upsample_nearest2x(fk_backend *be, fk_tensor *y, const fk_tensor *x) {
    fk_cuda_impl *im = fk_cuda_enter(be);
    FK_ASSERT(y && x && x->ndim == 4 && y->ndim == 4);
    fk_cuda_assert_act(y);
    fk_cuda_assert_act(x);
    FK_ASSERT(x->dtype == FK_F32 && y->dtype == FK_F32 && y->data != x->data);
    const int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    FK_ASSERT(y->shape[0] == B && y->shape[1] == C && y->shape[2] == 2 * H && y->shape[3] == 2 * W);
    const int64_t rows = B * C * H;
    if (rows == 0 || W == 0) return;
    dim3 grid(fk_cuda_blocks(W, 256, 64), (unsigned)(rows < 65535 ? rows : 65535));
    fk_k_upsample2x<<<grid, 256, 0, im->stream>>>((float *)y->data, (const float *)x->data, rows, W);
    FK_CU_LAUNCH();
}
