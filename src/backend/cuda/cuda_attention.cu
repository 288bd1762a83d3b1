/* cuda_attention: multi-head scaled-dot-product attention, token-major
 * layout: out (Lq, H·D) f32; q (Lq, H, D), k, v (Lk, H, D) f32 or bf16;
 * bias (H, Lq, Lk) f32 or NULL; causal masks keys j > l (as the CPU
 * reference). In bf16 mode out may be bf16 (backend.h's bf16 activations):
 * the f32 result rounded to nearest-even, in the flash kernels' store, else
 * through an f32 out in scratch (FK_CU_SCR_Y) and a rounding pass. So may
 * each of q, k and v: in bf16 mode both paths round them to bf16
 * nearest-even anyway, so a bf16 operand is read in place (the values that
 * rounding gives, hence the same bits out) and only the f32 ones are
 * rounded (fk_attn_bf16_operands); f32 mode takes f32 only.
 *
 * Two paths:
 * - flash (bf16 mode, D = 64 or 128: FLUX, T5, CLIP): q, k, v in bf16 (the
 *   f32 ones rounded into scratch A/B/C), then one CTA per (64 query rows,
 *   head), four warps of 16 rows each. K/V tiles of 64 keys stream through
 *   shared memory (cp.async, two buffers); S = Q·Kᵀ and O += P·V on the
 *   tensor cores (mma.sync m16n8k16, bf16 operands, f32 accumulators in
 *   registers); an online softmax in f32 in the log2 domain (x·log2 e,
 *   exp2) keeps the running max and sum per row, so no Lq×Lk matrix exists.
 *   P is rounded to bf16 for the second product; the row sum uses the
 *   unrounded values.
 * - two products (f32 mode, every other D — the autoencoder's single head
 *   with D = 512 —, misaligned output): for chunks of query rows, S (H, lc,
 *   Lk) = scale·Q·Kᵀ by cuBLASLt (batched over heads), a row softmax (bias,
 *   causal mask, f32) writes P (f32, or bf16 in bf16 mode), then O = P·V by
 *   cuBLASLt straight into out. The chunk keeps S at or under
 *   fk_cuda_chunk_bytes (32 MiB). In bf16 mode q, k, v are bf16 as in the
 *   flash path; in f32 mode they are f32 and both products are IEEE f32
 *   (no TF32).
 * Rows whose keys are all masked give 0, as in the reference.
 *
 * The flash kernel by default: on Hopper (compute capability 9.0) for D =
 * 128 without bias or causal mask (FLUX), fk_k_flash3 on the warpgroup MMA
 * (sm90/flash3.cu, built for sm_90a: 31% faster than fk_k_flash2 at the
 * FLUX shapes on an H100, docs/PERF.md); everywhere else fk_k_flash2, two
 * m-tiles per warp (128 query rows per CTA; 11-14% faster than fk_k_flash
 * on an H100); fk_k_flash (64 rows per CTA) where fk_k_flash2's shared
 * memory does not fit. FK_CUDA_FA in the environment picks one for A/B
 * measurements (1: fk_k_flash, 2: fk_k_flash2, 3: fk_k_flash3 with 64-key
 * tiles), and the FLASH1 / FLASH2 test hooks force the older two. Same
 * inputs and results up to float rounding order. */
#include "backend/cuda/cuda_internal.h"
#include "backend/cuda/flash_common.cuh"
#include "backend/cuda/sm90/flash3.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FK_FA_BQ 64      /* query rows per CTA (4 warps × 16) */
#define FK_FA_BK 64      /* keys per tile */
#define FK_FA_THREADS 128

/* Shared memory of the flash kernel for head dim D, in bf16 elements: rows
 * padded by 8 elements (16 bytes) so the 8 row addresses of one ldmatrix hit
 * 8 different 16-byte bank groups. Q (BQ rows), K and V (two buffers each). */
template <int D> struct fk_fa_cfg {
    static constexpr int PITCH = D + 8;
    static constexpr int Q_ELEMS = FK_FA_BQ * PITCH;
    static constexpr int KV_ELEMS = FK_FA_BK * PITCH;
    static constexpr size_t SMEM_BYTES = (size_t)(Q_ELEMS + 4 * KV_ELEMS) * 2;
};

typedef struct fk_fa_args {
    const __nv_bfloat16 *q, *k, *v; /* q (Lq, H, D), k, v (Lk, H, D) */
    const float *bias;              /* (H, Lq, Lk) or NULL */
    float *out;                     /* (Lq, H·D) */
    __nv_bfloat16 *outb;            /* a bf16 out instead (out NULL), or NULL */
    int Lq, Lk, H;
    float scale_log2; /* scale · log2(e) */
    int causal;
} fk_fa_args;

/* out[off], out[off + 1] = x, y: f32, or rounded to bf16 nearest-even */
static __device__ __forceinline__ void fk_fa_store2(const fk_fa_args &a, int64_t off, float x,
                                                    float y) {
    if (a.outb)
        *reinterpret_cast<__nv_bfloat162 *>(a.outb + off) = __floats2bfloat162_rn(x, y);
    else
        *reinterpret_cast<float2 *>(a.out + off) = make_float2(x, y);
}

/* ---- PTX wrappers (sm_80+) ----
 * The _s forms take a 32-bit shared-window address (fk_k_flash2 computes
 * those itself), the others a generic pointer into shared memory. */

static __device__ __forceinline__ void fk_cp_async16_s(uint32_t s, const void *gmem, bool valid) {
    int n = valid ? 16 : 0; /* 0: zero-fill, nothing read */
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n)
                 : "memory");
}
static __device__ __forceinline__ void fk_cp_async16(void *smem, const void *gmem, bool valid) {
    fk_cp_async16_s((uint32_t)__cvta_generic_to_shared(smem), gmem, valid);
}
static __device__ __forceinline__ void fk_cp_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N> static __device__ __forceinline__ void fk_cp_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
static __device__ __forceinline__ void fk_ldsm_x4_s(uint32_t (&r)[4], uint32_t s) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s));
}
static __device__ __forceinline__ void fk_ldsm_x4_t_s(uint32_t (&r)[4], uint32_t s) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s));
}
static __device__ __forceinline__ void fk_ldsm_x4(uint32_t (&r)[4], const void *p) {
    fk_ldsm_x4_s(r, (uint32_t)__cvta_generic_to_shared(p));
}
static __device__ __forceinline__ void fk_ldsm_x4_t(uint32_t (&r)[4], const void *p) {
    fk_ldsm_x4_t_s(r, (uint32_t)__cvta_generic_to_shared(p));
}
/* c (16×8 f32) += a (16×16 bf16, row) · b (16×8 bf16, col) */
static __device__ __forceinline__ void fk_mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                                   uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
static __device__ __forceinline__ uint32_t fk_pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi); /* .x (low half) = lo */
    return *reinterpret_cast<uint32_t *>(&v);
}

/* Rows [r0, r0 + R) of head h of x (L, H, D) bf16 into s (R, PITCH) with
 * cp.async, 16 bytes per copy; rows at or past L are zero-filled. */
template <int D, int R>
static __device__ __forceinline__ void fk_fa_load(__nv_bfloat16 *s, const __nv_bfloat16 *x, int r0,
                                                  int L, int h, int64_t HD) {
    constexpr int CPR = D / 8; /* 16-byte chunks per row */
    constexpr int PITCH = fk_fa_cfg<D>::PITCH;
#pragma unroll
    for (int it = 0; it < R * CPR / FK_FA_THREADS; it++) {
        const int c = it * FK_FA_THREADS + (int)threadIdx.x;
        const int row = c / CPR, col = (c % CPR) * 8;
        const int gr = r0 + row;
        const bool valid = gr < L;
        const __nv_bfloat16 *src = x + (int64_t)(valid ? gr : 0) * HD + (int64_t)h * D + col;
        fk_cp_async16(s + row * PITCH + col, src, valid);
    }
}

template <int D>
__global__ void __launch_bounds__(FK_FA_THREADS, 2) fk_k_flash(const fk_fa_args a) {
    static_assert(D % 32 == 0 && (FK_FA_BQ * (D / 8)) % FK_FA_THREADS == 0, "head dim");
    constexpr int PITCH = fk_fa_cfg<D>::PITCH;
    constexpr int NT = FK_FA_BK / 8; /* key n-tiles of a tile */
    constexpr int DT = D / 8;        /* output n-tiles */
    constexpr int KD = D / 16;       /* k-steps of Q·Kᵀ */
    extern __shared__ __align__(16) unsigned char fk_fa_smem[];
    __nv_bfloat16 *sq = reinterpret_cast<__nv_bfloat16 *>(fk_fa_smem); /* (BQ, PITCH) */
    __nv_bfloat16 *sk = sq + fk_fa_cfg<D>::Q_ELEMS;                     /* 2 × (BK, PITCH) */
    __nv_bfloat16 *sv = sk + 2 * fk_fa_cfg<D>::KV_ELEMS;                /* 2 × (BK, PITCH) */

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, c4 = lane & 3; /* mma fragment row group, column pair */
    const int h = blockIdx.y, q0 = blockIdx.x * FK_FA_BQ;
    const int64_t HD = (int64_t)a.H * D;
    const int kend = a.causal ? min(a.Lk, q0 + FK_FA_BQ) : a.Lk; /* keys past it all masked */
    const int ntiles = (kend + FK_FA_BK - 1) / FK_FA_BK;
    const int row0 = q0 + warp * 16 + g, row1 = row0 + 8; /* this thread's two query rows */

    fk_fa_load<D, FK_FA_BQ>(sq, a.q, q0, a.Lq, h, HD);
    if (ntiles > 0) {
        fk_fa_load<D, FK_FA_BK>(sk, a.k, 0, a.Lk, h, HD);
        fk_fa_load<D, FK_FA_BK>(sv, a.v, 0, a.Lk, h, HD);
    }
    fk_cp_commit();
    fk_cp_wait<0>();
    __syncthreads();

    /* this warp's 16 query rows as A fragments, for every k-step */
    uint32_t qf[KD][4];
#pragma unroll
    for (int kk = 0; kk < KD; kk++)
        fk_ldsm_x4(qf[kk], sq + (warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * PITCH + kk * 16 +
                               (lane >> 4) * 8);

    float o[DT][4];
#pragma unroll
    for (int i = 0; i < DT; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float m_run[2] = {-INFINITY, -INFINITY}; /* running max (log2 domain), rows row0, row1 */
    float l_run[2] = {0.0f, 0.0f};           /* this thread's part of the running sums */

    for (int t = 0; t < ntiles; t++) {
        const int buf = t & 1, k0 = t * FK_FA_BK;
        if (t + 1 < ntiles) { /* prefetch the next tile into the other buffer */
            fk_fa_load<D, FK_FA_BK>(sk + (buf ^ 1) * fk_fa_cfg<D>::KV_ELEMS, a.k, k0 + FK_FA_BK,
                                    a.Lk, h, HD);
            fk_fa_load<D, FK_FA_BK>(sv + (buf ^ 1) * fk_fa_cfg<D>::KV_ELEMS, a.v, k0 + FK_FA_BK,
                                    a.Lk, h, HD);
        }
        fk_cp_commit(); /* possibly empty: keeps the group count uniform */
        fk_cp_wait<1>(); /* tile t has landed (only the prefetch may be pending) */
        __syncthreads();
        const __nv_bfloat16 *kt = sk + buf * fk_fa_cfg<D>::KV_ELEMS; /* (BK, PITCH) */
        const __nv_bfloat16 *vt = sv + buf * fk_fa_cfg<D>::KV_ELEMS;

        /* S (16 × BK per warp) = Q · Kᵀ */
        float s[NT][4];
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
            for (int k2 = 0; k2 < KD / 2; k2++) {
                uint32_t b[4]; /* b0, b1 of k-step 2·k2, then of 2·k2 + 1 */
                fk_ldsm_x4(b, kt + (nt * 8 + (lane & 7)) * PITCH + k2 * 32 + (lane >> 3) * 8);
                fk_mma_bf16(s[nt], qf[2 * k2], b[0], b[1]);
                fk_mma_bf16(s[nt], qf[2 * k2 + 1], b[2], b[3]);
            }
        }

        /* scores in the log2 domain, masks, row maxima */
        float mt[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int j = k0 + nt * 8 + 2 * c4 + (e & 1);
                const int l = (e >> 1) ? row1 : row0;
                float x = s[nt][e] * a.scale_log2;
                if (a.bias && l < a.Lq && j < a.Lk)
                    x += a.bias[((int64_t)h * a.Lq + l) * a.Lk + j] * 1.4426950408889634f;
                if (j >= a.Lk || (a.causal && j > l)) x = -INFINITY;
                s[nt][e] = x;
                mt[e >> 1] = fmaxf(mt[e >> 1], x);
            }
        }
        float alpha[2], m_use[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            m_use[r] = fk_fa_row_step(mt[r], m_run[r], alpha[r]);
            l_run[r] *= alpha[r];
        }
#pragma unroll
        for (int i = 0; i < DT; i++) {
            o[i][0] *= alpha[0], o[i][1] *= alpha[0];
            o[i][2] *= alpha[1], o[i][3] *= alpha[1];
        }
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const float p = exp2f(s[nt][e] - m_use[e >> 1]);
                s[nt][e] = p;
                l_run[e >> 1] += p;
            }
        }

        /* O (16 × D per warp) += P · V: the S accumulators of key n-tiles
         * 2·kk and 2·kk+1 are the A fragment of k-step kk */
#pragma unroll
        for (int kk = 0; kk < FK_FA_BK / 16; kk++) {
            uint32_t pa[4];
            pa[0] = fk_pack_bf16(s[2 * kk][0], s[2 * kk][1]);
            pa[1] = fk_pack_bf16(s[2 * kk][2], s[2 * kk][3]);
            pa[2] = fk_pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            pa[3] = fk_pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
            for (int d2 = 0; d2 < D / 16; d2++) {
                uint32_t b[4]; /* b0, b1 of output n-tile 2·d2, then of 2·d2 + 1 */
                fk_ldsm_x4_t(b, vt + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * PITCH +
                                    d2 * 16 + (lane >> 4) * 8);
                fk_mma_bf16(o[2 * d2], pa, b[0], b[1]);
                fk_mma_bf16(o[2 * d2 + 1], pa, b[2], b[3]);
            }
        }
        __syncthreads(); /* every warp is done with this buffer before it is refilled */
    }

    /* out = O / l */
    float inv[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        float l = l_run[r];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        inv[r] = l > 0.0f ? 1.0f / l : 0.0f;
    }
    const int64_t o0 = (int64_t)row0 * HD + (int64_t)h * D + 2 * c4;
    const int64_t o1 = (int64_t)row1 * HD + (int64_t)h * D + 2 * c4;
#pragma unroll
    for (int i = 0; i < DT; i++) {
        if (row0 < a.Lq) fk_fa_store2(a, o0 + i * 8, o[i][0] * inv[0], o[i][1] * inv[0]);
        if (row1 < a.Lq) fk_fa_store2(a, o1 + i * 8, o[i][2] * inv[1], o[i][3] * inv[1]);
    }
}

/* ---- the second flash variant (FK_CUDA_FA=2) ----
 * The algorithm and the numerics of fk_k_flash, rearranged so that each
 * warp owns two m-tiles (32 query rows) instead of one: every K or V
 * fragment that ldmatrix reads from shared memory then feeds the mma of
 * both m-tiles. A CTA is 4 warps × 32 = 128 query rows (FK_FA2_BQ).
 *
 * Shared-memory loads (ldmatrix.x4) per mma:
 *   fk_k_flash:  Q·Kᵀ 1/2 (Q in registers), P·V 1/2: 1/2 overall
 *   here:        P·V 1/4; Q·Kᵀ 1/4 with Q in registers, or with Q re-read
 *                for every k-step 2 + BK/16 loads per BK/4 mma (3/8 at
 *                BK = 64, 1/2 at BK = 32)
 * (and each K/V tile copied into shared memory serves 128 queries, not 64)
 * The second m-tile doubles the O accumulators (D/2 f32 per thread per
 * m-tile) and the S accumulators, so registers decide the rest (ptxas for
 * sm_90, at most 255 registers, no spills; fk_fa2_cfg):
 * - D = 64: BK = 64, Q in registers: 1/4 overall.
 * - D = 128: O alone takes 128 registers; Q in registers (64 more) spills
 *   with either key tile. BK = 64 with Q re-read from shared memory (5/16
 *   overall) fits with the register savings below; with a bias (its loads
 *   and their addresses) it does not, so BK = 32 there (3/8 overall; no
 *   FLUX model has a bias with D = 128).
 * Register savings (together, the ~10 registers that ptxas otherwise
 * spilled at D = 128, BK = 64; it is a close fit, so a change to this
 * kernel needs ptxas -v again):
 * - the running max and sum of a row live in one of the 4 threads that
 *   share it (lane c4 keeps row (m-tile c4 / 2, half c4 % 2)) and are
 *   broadcast by a shuffle when needed: 2 registers instead of 8. The sum
 *   of a tile is reduced over the 4 threads each tile (the same values in
 *   another summation order);
 * - K/V copies walk one global pointer per thread (fk_fa2_load), and the
 *   lane's shared-memory addresses are recomputed each tile from a
 *   volatile read of %tid.x (fk_tid_v, one read per address), so none of
 *   them stays live across the tile loop;
 * - with Q re-read, the Q·Kᵀ k-step loop is unrolled by 2, not fully:
 *   fully unrolled, ptxas hoists the ldmatrix of later k-steps and runs out
 *   of registers (the loop indexes only addresses, never register arrays,
 *   so nothing goes to local memory). */
#define FK_FA2_BQ 128 /* query rows per CTA (4 warps × 2 m-tiles × 16) */

template <int D, bool BIAS> struct fk_fa2_cfg;
template <bool BIAS> struct fk_fa2_cfg<64, BIAS> {
    static constexpr int BK = 64;       /* keys per tile */
    static constexpr bool QREG = true;  /* Q fragments in registers */
    static constexpr int QK_UNROLL = 4; /* k-steps of Q·Kᵀ unrolled (QREG: all) */
};
template <bool BIAS> struct fk_fa2_cfg<128, BIAS> {
    static constexpr int BK = BIAS ? 32 : 64;
    static constexpr bool QREG = false;
    static constexpr int QK_UNROLL = 2;
};
/* Shared memory of fk_k_flash2 in bytes: Q (BQ rows), K and V (two buffers
 * of BK rows each), rows padded as in fk_fa_cfg. D = 128, BK = 64: 102 KiB,
 * so 2 CTAs fit in the 228 KiB of an sm_90 SM. */
template <int D, bool BIAS> static constexpr size_t fk_fa2_smem_bytes() {
    return (size_t)(FK_FA2_BQ + 4 * fk_fa2_cfg<D, BIAS>::BK) * fk_fa_cfg<D>::PITCH * 2;
}

/* threadIdx.x read where it is used: a volatile asm is not hoisted out of
 * the tile loop, so what is computed from it is recomputed there instead
 * of being kept in a register for the whole loop */
static __device__ __forceinline__ uint32_t fk_tid_v() {
    uint32_t r;
    asm volatile("mov.u32 %0, %%tid.x;\n" : "=r"(r));
    return r;
}
/* the shared-window address of the dynamic shared memory */
static __device__ __forceinline__ uint32_t fk_fa2_smem() {
    extern __shared__ __align__(16) unsigned char fk_fa_smem[];
    return (uint32_t)__cvta_generic_to_shared(fk_fa_smem);
}
/* Thread tid's ldmatrix row address (each lane gives one row of one of the
 * 4 matrices of an x4) for k-step 0, with shared memory at s0 laid out as
 * Q (BQ, PITCH), K 2 × (BK, PITCH), V 2 × (BK, PITCH), buffer 0:
 * Q: the A fragment of the warp's m-tile 0: rows 0-7 / 8-15 × columns
 *    0-7 / 8-15 of the warp's 32 rows;
 * K: the B fragments of key n-tiles 0 and 1: keys 0-7 × columns 0-7 /
 *    8-15, then keys 8-15 × the same;
 * V (transposed): the B fragments of output n-tiles 0 and 1: keys 0-7 /
 *    8-15 × columns 0-7, then the same × columns 8-15. */
template <int D, int BK>
static __device__ __forceinline__ uint32_t fk_fa2_qaddr(uint32_t s0, uint32_t tid) {
    constexpr int PITCH = fk_fa_cfg<D>::PITCH;
    const int lane = tid & 31, warp = tid >> 5;
    return s0 + 2 * ((warp * 32 + (lane & 7) + ((lane >> 3) & 1) * 8) * PITCH + (lane >> 4) * 8);
}
template <int D, int BK>
static __device__ __forceinline__ uint32_t fk_fa2_kaddr(uint32_t s0, uint32_t tid) {
    constexpr int PITCH = fk_fa_cfg<D>::PITCH;
    const int lane = tid & 31;
    return s0 + 2 * (FK_FA2_BQ * PITCH + ((lane & 7) + (lane >> 4) * 8) * PITCH +
                     ((lane >> 3) & 1) * 8);
}
template <int D, int BK>
static __device__ __forceinline__ uint32_t fk_fa2_vaddr(uint32_t s0, uint32_t tid) {
    constexpr int PITCH = fk_fa_cfg<D>::PITCH;
    const int lane = tid & 31;
    return s0 + 2 * (FK_FA2_BQ * PITCH + 2 * BK * PITCH +
                     ((lane & 7) + ((lane >> 3) & 1) * 8) * PITCH + (lane >> 4) * 8);
}

/* Rows [r0, r0 + R) of head h of x (L, H, D) bf16 into shared memory at
 * byte address s (rows of PITCH elements) with cp.async, 16 bytes per copy;
 * rows at or past L are zero-filled. As fk_fa_load, but each thread walks
 * its rows (RS apart) with one global pointer. */
template <int D, int R>
static __device__ __forceinline__ void fk_fa2_load(uint32_t s, const __nv_bfloat16 *x, int r0,
                                                   int L, int h, int64_t HD) {
    constexpr int CPR = D / 8;              /* 16-byte chunks per row */
    constexpr int RS = FK_FA_THREADS / CPR; /* rows per pass of the CTA */
    constexpr int PITCH = fk_fa_cfg<D>::PITCH;
    static_assert(R % RS == 0, "rows");
    const uint32_t tid = fk_tid_v();
    const int tr = (int)(tid / CPR), tc = (int)(tid % CPR) * 8; /* first row, column */
    const __nv_bfloat16 *p = x + (int64_t)(r0 + tr) * HD + (int64_t)h * D + tc;
    const uint32_t d = s + 2 * (tr * PITCH + tc);
    const int left = L - r0 - tr; /* rows of x from this thread's first one */
#pragma unroll
    for (int it = 0; it < R / RS; it++) {
        const bool valid = it * RS < left;
        fk_cp_async16_s(d + 2 * it * RS * PITCH, valid ? p : x, valid);
        p += RS * HD;
    }
}

template <int D, bool BIAS>
__global__ void __launch_bounds__(FK_FA_THREADS, 2) fk_k_flash2(const fk_fa_args a) {
    constexpr int BK = fk_fa2_cfg<D, BIAS>::BK;
    constexpr bool QREG = fk_fa2_cfg<D, BIAS>::QREG;
    static_assert(D % 32 == 0 && BK % 16 == 0 && (BK * (D / 8)) % FK_FA_THREADS == 0, "tile");
    static_assert(!QREG || fk_fa2_cfg<D, BIAS>::QK_UNROLL == D / 16,
                  "Q fragments in registers need the k-step loop fully unrolled");
    constexpr int PITCH = fk_fa_cfg<D>::PITCH;
    constexpr int KV_ELEMS = BK * PITCH; /* one K or V buffer */
    constexpr int NT = BK / 8;           /* key n-tiles of a tile */
    constexpr int DT = D / 8;            /* output n-tiles */
    constexpr int KD = D / 16;           /* k-steps of Q·Kᵀ */

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, c4 = lane & 3; /* mma fragment row group, column pair */
    const int h = blockIdx.y, q0 = blockIdx.x * FK_FA2_BQ;
    const int64_t HD = (int64_t)a.H * D;
    const int kend = a.causal ? min(a.Lk, q0 + FK_FA2_BQ) : a.Lk; /* keys past it all masked */
    const int ntiles = (kend + BK - 1) / BK;
    const int rw = q0 + warp * 32 + g; /* this thread's rows: rw + 16·mi + 8·r */
    /* shared memory (byte addresses): Q (BQ, PITCH), K 2 × (BK, PITCH),
     * V 2 × (BK, PITCH) */
    const uint32_t sq = fk_fa2_smem(), sk = sq + 2 * FK_FA2_BQ * PITCH, sv = sk + 4 * KV_ELEMS;

    fk_fa2_load<D, FK_FA2_BQ>(sq, a.q, q0, a.Lq, h, HD);
    if (ntiles > 0) {
        fk_fa2_load<D, BK>(sk, a.k, 0, a.Lk, h, HD);
        fk_fa2_load<D, BK>(sv, a.v, 0, a.Lk, h, HD);
    }
    fk_cp_commit();
    fk_cp_wait<0>();
    __syncthreads();

    /* QREG: both m-tiles' A fragments for every k-step, loaded once (one
     * unused element otherwise) */
    uint32_t qf[2][QREG ? KD : 1][4];
    if constexpr (QREG) {
        const uint32_t qaddr = fk_fa2_qaddr<D, BK>(sq, threadIdx.x);
#pragma unroll
        for (int mi = 0; mi < 2; mi++)
#pragma unroll
            for (int kk = 0; kk < KD; kk++)
                fk_ldsm_x4_s(qf[mi][kk], qaddr + 2 * (mi * 16 * PITCH + kk * 16));
    }

    float o[2][DT][4];
#pragma unroll
    for (int mi = 0; mi < 2; mi++)
#pragma unroll
        for (int i = 0; i < DT; i++) o[mi][i][0] = o[mi][i][1] = o[mi][i][2] = o[mi][i][3] = 0.0f;
    /* of row (m-tile c4 / 2, half c4 % 2) of this thread's row group: the
     * running max (log2 domain) and the running sum */
    float m_own = -INFINITY;
    float l_own = 0.0f;

    for (int t = 0; t < ntiles; t++) {
        const int buf = t & 1, k0 = t * BK;
        if (t + 1 < ntiles) { /* prefetch the next tile into the other buffer */
            const uint32_t sb = fk_fa2_smem();
            fk_fa2_load<D, BK>(sb + 2 * FK_FA2_BQ * PITCH + (buf ^ 1) * 2 * KV_ELEMS, a.k,
                               k0 + BK, a.Lk, h, HD);
            fk_fa2_load<D, BK>(sb + 2 * FK_FA2_BQ * PITCH + (2 + (buf ^ 1)) * 2 * KV_ELEMS, a.v,
                               k0 + BK, a.Lk, h, HD);
        }
        fk_cp_commit(); /* possibly empty: keeps the group count uniform */
        fk_cp_wait<1>(); /* tile t has landed (only the prefetch may be pending) */
        __syncthreads();
        const uint32_t kt = fk_fa2_kaddr<D, BK>(fk_fa2_smem(), fk_tid_v()) + buf * (2 * KV_ELEMS);
        const uint32_t vt = fk_fa2_vaddr<D, BK>(fk_fa2_smem(), fk_tid_v()) + buf * (2 * KV_ELEMS);
        const uint32_t qaddr = fk_fa2_qaddr<D, BK>(fk_fa2_smem(), fk_tid_v());

        /* S (32 × BK per warp) = Q · Kᵀ, one k-step at a time: the A
         * fragments of both m-tiles, then per pair of key n-tiles one
         * ldmatrix.x4 of K that feeds 4 mma */
        float s[2][NT][4];
#pragma unroll
        for (int mi = 0; mi < 2; mi++)
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
                s[mi][nt][0] = s[mi][nt][1] = s[mi][nt][2] = s[mi][nt][3] = 0.0f;
#pragma unroll fk_fa2_cfg<D, BIAS>::QK_UNROLL
        for (int kk = 0; kk < KD; kk++) {
            uint32_t qa[2][4];
#pragma unroll
            for (int mi = 0; mi < 2; mi++) {
                if constexpr (QREG) {
#pragma unroll
                    for (int e = 0; e < 4; e++) qa[mi][e] = qf[mi][kk][e];
                } else {
                    fk_ldsm_x4_s(qa[mi], qaddr + 2 * (mi * 16 * PITCH + kk * 16));
                }
            }
#pragma unroll
            for (int n2 = 0; n2 < NT / 2; n2++) {
                uint32_t b[4]; /* b0, b1 of key n-tile 2·n2, then of 2·n2 + 1 */
                fk_ldsm_x4_s(b, kt + 2 * (n2 * 16 * PITCH + kk * 16));
#pragma unroll
                for (int mi = 0; mi < 2; mi++) {
                    fk_mma_bf16(s[mi][2 * n2], qa[mi], b[0], b[1]);
                    fk_mma_bf16(s[mi][2 * n2 + 1], qa[mi], b[2], b[3]);
                }
            }
        }

        /* scores in the log2 domain, masks, row maxima (as fk_k_flash) */
        uint32_t pp[2][NT][2]; /* P, packed bf16 pairs */
        float mt[2][2] = {{-INFINITY, -INFINITY}, {-INFINITY, -INFINITY}};
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
#pragma unroll
            for (int mi = 0; mi < 2; mi++) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    float x = s[mi][nt][e] * a.scale_log2;
                    const int j = k0 + nt * 8 + 2 * c4 + (e & 1);
                    const int l = rw + mi * 16 + (e >> 1) * 8;
                    if (BIAS && l < a.Lq && j < a.Lk)
                        x += a.bias[((int64_t)h * a.Lq + l) * a.Lk + j] * 1.4426950408889634f;
                    if (j >= a.Lk || (a.causal && j > l)) x = -INFINITY;
                    s[mi][nt][e] = x;
                    mt[mi][e >> 1] = fmaxf(mt[mi][e >> 1], x);
                }
            }
        }
        /* per row: the new running max, the exponent base m_use and alpha,
         * the rescale of O and of the sum; the row's owner keeps the max
         * and the alpha of the sum */
        float m_use[2][2];
        float a_own = 0.0f;
        float m_nown = 0.0f;
#pragma unroll
        for (int mi = 0; mi < 2; mi++) {
            float alpha[2];
#pragma unroll
            for (int r = 0; r < 2; r++) {
                /* the 4 threads of a fragment row group share the row */
                mt[mi][r] = fmaxf(mt[mi][r], __shfl_xor_sync(0xffffffffu, mt[mi][r], 1));
                mt[mi][r] = fmaxf(mt[mi][r], __shfl_xor_sync(0xffffffffu, mt[mi][r], 2));
                const float m_old = __shfl_sync(0xffffffffu, m_own, (lane & ~3) | (mi * 2 + r));
                const float m_new = fmaxf(m_old, mt[mi][r]);
                m_use[mi][r] = m_new == -INFINITY ? 0.0f : m_new; /* all masked so far: p = 0 */
                alpha[r] = exp2f(m_old - m_use[mi][r]);            /* 0 on the first live tile */
                if (c4 == mi * 2 + r) m_nown = m_new;
                if (c4 == mi * 2 + r) a_own = alpha[r];
            }
#pragma unroll
            for (int i = 0; i < DT; i++) {
                o[mi][i][0] *= alpha[0], o[mi][i][1] *= alpha[0];
                o[mi][i][2] *= alpha[1], o[mi][i][3] *= alpha[1];
            }
        }
        m_own = m_nown;
        /* P = exp2(x - m_use), rounded to bf16 pairs (the A fragments of
         * P·V) as soon as computed; the row sums take the unrounded values */
        float ts[2][2] = {{0.0f, 0.0f}, {0.0f, 0.0f}}; /* this thread's part of the tile's sums */
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
#pragma unroll
            for (int mi = 0; mi < 2; mi++) {
#pragma unroll
                for (int e = 0; e < 4; e += 2) {
                    const float p0 = exp2f(s[mi][nt][e] - m_use[mi][e >> 1]);
                    const float p1 = exp2f(s[mi][nt][e + 1] - m_use[mi][e >> 1]);
                    ts[mi][e >> 1] += p0;
                    ts[mi][e >> 1] += p1;
                    pp[mi][nt][e >> 1] = fk_pack_bf16(p0, p1);
                }
            }
        }
        {
            float t_own = 0.0f;
#pragma unroll
            for (int mi = 0; mi < 2; mi++)
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    float x = ts[mi][r];
                    x += __shfl_xor_sync(0xffffffffu, x, 1);
                    x += __shfl_xor_sync(0xffffffffu, x, 2);
                    if (c4 == mi * 2 + r) t_own = x;
                }
            l_own = l_own * a_own + t_own;
        }

        /* O (32 × D per warp) += P · V: the packed P of key n-tiles 2·kk and
         * 2·kk+1 are the A fragment of k-step kk; one transposed
         * ldmatrix.x4 of V (output n-tiles 2·d2, 2·d2 + 1) feeds 4 mma */
#pragma unroll
        for (int kk = 0; kk < BK / 16; kk++) {
            uint32_t pa[2][4];
#pragma unroll
            for (int mi = 0; mi < 2; mi++) {
                pa[mi][0] = pp[mi][2 * kk][0];
                pa[mi][1] = pp[mi][2 * kk][1];
                pa[mi][2] = pp[mi][2 * kk + 1][0];
                pa[mi][3] = pp[mi][2 * kk + 1][1];
            }
#pragma unroll
            for (int d2 = 0; d2 < D / 16; d2++) {
                uint32_t b[4]; /* b0, b1 of output n-tile 2·d2, then of 2·d2 + 1 */
                fk_ldsm_x4_t_s(b, vt + 2 * (kk * 16 * PITCH + d2 * 16));
#pragma unroll
                for (int mi = 0; mi < 2; mi++) {
                    fk_mma_bf16(o[mi][2 * d2], pa[mi], b[0], b[1]);
                    fk_mma_bf16(o[mi][2 * d2 + 1], pa[mi], b[2], b[3]);
                }
            }
        }
        __syncthreads(); /* every warp is done with this buffer before it is refilled */
    }

    /* out = O / l; rows at or past Lq are not written */
#pragma unroll
    for (int mi = 0; mi < 2; mi++) {
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const float l = __shfl_sync(0xffffffffu, l_own, (lane & ~3) | (mi * 2 + r));
            const float inv = l > 0.0f ? 1.0f / l : 0.0f;
            const int row = rw + mi * 16 + r * 8;
            if (row >= a.Lq) continue;
            const int64_t orow = (int64_t)row * HD + (int64_t)h * D + 2 * c4;
#pragma unroll
            for (int i = 0; i < DT; i++)
                fk_fa_store2(a, orow + i * 8, o[mi][i][2 * r] * inv, o[mi][i][2 * r + 1] * inv);
        }
    }
}

/* ---- q, k, v to bf16 in one launch ----
 * Three f32 → bf16 conversions (the operands of both paths in bf16 mode) as
 * one kernel: blockIdx.y picks the tensor, each thread converts 4 elements
 * (float4 → 2 × bf16x2) per step of a grid-stride loop. Rounding to
 * nearest-even as fk_cuda_convert, so the bf16 values are the same. */
typedef struct fk_qkv_cvt {
    const float4 *src[3];
    uint2 *dst[3];  /* 4 bf16 per element */
    int64_t n4[3];  /* elements / 4 */
} fk_qkv_cvt;

__global__ void fk_k_qkv_to_bf16(const fk_qkv_cvt c) {
    /* constant indices: a parameter indexed by a register would be copied
     * to local memory first */
    const int z = blockIdx.y;
    const float4 *__restrict__ src = z == 0 ? c.src[0] : z == 1 ? c.src[1] : c.src[2];
    uint2 *__restrict__ dst = z == 0 ? c.dst[0] : z == 1 ? c.dst[1] : c.dst[2];
    const int64_t n4 = z == 0 ? c.n4[0] : z == 1 ? c.n4[1] : c.n4[2];
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n4;
         i += (int64_t)gridDim.x * blockDim.x) {
        const float4 v = src[i];
        __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y); /* .x (low half) = v.x */
        __nv_bfloat162 hi = __floats2bfloat162_rn(v.z, v.w);
        uint2 u;
        u.x = *reinterpret_cast<uint32_t *>(&lo);
        u.y = *reinterpret_cast<uint32_t *>(&hi);
        dst[i] = u;
    }
}

/* qb (nq), kb, vb (nk each) bf16 = q, k, v f32: one launch when every count
 * is a multiple of 4, the sources 16- and the destinations 8-byte aligned,
 * else three fk_cuda_convert. */
static void fk_attn_qkv_to_bf16(fk_cuda_impl *im, void *qb, void *kb, void *vb, const void *q,
                                const void *k, const void *v, int64_t nq, int64_t nk) {
    const bool v4 = nq % 4 == 0 && nk % 4 == 0 &&
                    (((uintptr_t)q | (uintptr_t)k | (uintptr_t)v) & 15) == 0 &&
                    (((uintptr_t)qb | (uintptr_t)kb | (uintptr_t)vb) & 7) == 0;
    if (!v4) {
        fk_cuda_convert(im, qb, FK_BF16, q, FK_F32, nq);
        fk_cuda_convert(im, kb, FK_BF16, k, FK_F32, nk);
        fk_cuda_convert(im, vb, FK_BF16, v, FK_F32, nk);
        return;
    }
    if (nq <= 0 && nk <= 0) return;
    fk_qkv_cvt c;
    c.src[0] = (const float4 *)q, c.src[1] = (const float4 *)k, c.src[2] = (const float4 *)v;
    c.dst[0] = (uint2 *)qb, c.dst[1] = (uint2 *)kb, c.dst[2] = (uint2 *)vb;
    c.n4[0] = nq / 4, c.n4[1] = c.n4[2] = nk / 4;
    const int64_t n4 = nq > nk ? nq / 4 : nk / 4;
    dim3 grid(fk_cuda_blocks(n4, 256, (int64_t)im->sm_count * 8), 3);
    fk_k_qkv_to_bf16<<<grid, 256, 0, im->stream>>>(c);
    FK_CU_LAUNCH();
}

/* q, k, v (each f32 or bf16; bf16 mode) as the bf16 operands of both
 * paths, in *qa, *ka, *va. All three f32: rounded into scratch A, B, C by
 * fk_attn_qkv_to_bf16 (one launch). Otherwise a bf16 operand is read in
 * place where its address is a multiple of `align` bytes (the flash
 * kernels' 16-byte copies; the products: the alignment its scratch copy
 * would have, so cuBLASLt plans the same product), else copied into its
 * slot, and an f32 operand is rounded into its slot by fk_cuda_convert (the
 * same nearest-even values). Slots of operands read in place are not grown. */
static void fk_attn_bf16_operands(fk_cuda_impl *im, const fk_tensor *q, const fk_tensor *k,
                                  const fk_tensor *v, size_t align, const void **qa,
                                  const void **ka, const void **va) {
    const int64_t nq = fk_tensor_numel(q), nk = fk_tensor_numel(k);
    if (q->dtype == FK_F32 && k->dtype == FK_F32 && v->dtype == FK_F32) {
        void *qb = fk_cuda_scratch(im, FK_CU_SCR_A, (size_t)nq * 2);
        void *kb = fk_cuda_scratch(im, FK_CU_SCR_B, (size_t)nk * 2);
        void *vb = fk_cuda_scratch(im, FK_CU_SCR_C, (size_t)nk * 2);
        fk_attn_qkv_to_bf16(im, qb, kb, vb, q->data, k->data, v->data, nq, nk);
        *qa = qb, *ka = kb, *va = vb;
        return;
    }
    const fk_tensor *t[3] = {q, k, v};
    const void **res[3] = {qa, ka, va};
    const int slot[3] = {FK_CU_SCR_A, FK_CU_SCR_B, FK_CU_SCR_C};
    for (int i = 0; i < 3; i++) {
        const int64_t n = i == 0 ? nq : nk;
        if (t[i]->dtype == FK_BF16 && (uintptr_t)t[i]->data % align == 0) {
            *res[i] = t[i]->data;
            continue;
        }
        void *b = fk_cuda_scratch(im, slot[i], (size_t)n * 2);
        if (t[i]->dtype == FK_BF16)
            FK_CU(cudaMemcpyAsync(b, t[i]->data, (size_t)n * 2, cudaMemcpyDeviceToDevice,
                                  im->stream));
        else
            fk_cuda_convert(im, b, FK_BF16, t[i]->data, FK_F32, n);
        *res[i] = b;
    }
}

/* whether fk_k_flash2<D, BIAS> can run here: its shared memory per block */
template <int D, bool BIAS> static bool fk_fa2_fits(const fk_cuda_impl *im) {
    return im->smem_optin >= fk_fa2_smem_bytes<D, BIAS>();
}
template <int D, bool BIAS> static cudaError_t fk_fa2_setup(const fk_cuda_impl *im) {
    if (!fk_fa2_fits<D, BIAS>(im)) return cudaSuccess; /* fk_k_flash runs instead */
    return cudaFuncSetAttribute(fk_k_flash2<D, BIAS>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)fk_fa2_smem_bytes<D, BIAS>());
}

bool fk_cuda_attention_setup(fk_cuda_impl *im, char *err, size_t errlen) {
    const size_t need = fk_fa_cfg<128>::SMEM_BYTES;
    if (im->smem_optin < need) {
        if (err && errlen)
            snprintf(err, errlen,
                     "cuda:%d: %zu bytes of shared memory per block, the attention kernel needs %zu",
                     im->device, im->smem_optin, need);
        return false;
    }
    cudaError_t e = cudaFuncSetAttribute(fk_k_flash<128>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)fk_fa_cfg<128>::SMEM_BYTES);
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(fk_k_flash<64>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 (int)fk_fa_cfg<64>::SMEM_BYTES);
    /* the second variant where its shared memory fits (fk_fa2_fits) */
    if (e == cudaSuccess) e = fk_fa2_setup<128, false>(im);
    if (e == cudaSuccess) e = fk_fa2_setup<128, true>(im);
    if (e == cudaSuccess) e = fk_fa2_setup<64, false>(im);
    if (e == cudaSuccess) e = fk_fa2_setup<64, true>(im);
    /* the warpgroup-MMA kernel on Hopper (compute capability 9.0) */
    if (e == cudaSuccess)
        im->flash3 = im->cc_major == 9 && im->cc_minor == 0 && fk_cuda_flash3_setup(im->smem_optin);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        if (err && errlen)
            snprintf(err, errlen,
                     "cuda:%d: %s: this build has no kernels for the device (%s; built for CUDA "
                     "architectures %s)",
                     im->device, im->desc, cudaGetErrorString(e), FK_CUDA_ARCHS);
        return false;
    }
    return true;
}

/* ---- the two-product path ---- */

/* One row (h, i) of P per block: x = S[h, i, :] + bias[h, l, :] (l = l0 + i),
 * keys past l masked when causal, P = softmax(x) in f32 (bf16 if TP is).
 * S, P (H, lc, ld): rows of Lk keys at stride ld >= Lk. */
template <typename TP>
__global__ void fk_k_attn_softmax(const float *__restrict__ S, TP *__restrict__ P,
                                  const float *__restrict__ bias, int64_t Lq, int64_t Lk,
                                  int64_t ld, int64_t lc, int64_t l0, int causal) {
    __shared__ float shm[32];
    __shared__ double shd[32];
    const int64_t i = blockIdx.x, h = blockIdx.y, l = l0 + i;
    const float *s = S + (h * lc + i) * ld;
    TP *p = P + (h * lc + i) * ld;
    const float *br = bias ? bias + (h * Lq + l) * Lk : NULL;
    const int64_t jn = causal ? (l + 1 < Lk ? l + 1 : Lk) : Lk; /* live keys [0, jn) */
    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < jn; j += blockDim.x) {
        float x = s[j];
        if (br) x = x + br[j];
        mx = fmaxf(mx, x);
    }
    mx = fk_dev_block_max(mx, shm);
    if (mx == -INFINITY) { /* every key masked: zeros (the reference) */
        for (int64_t j = threadIdx.x; j < Lk; j += blockDim.x) p[j] = (TP)0.0f;
        return;
    }
    float sum = 0.0f;
    for (int64_t j = threadIdx.x; j < jn; j += blockDim.x) {
        float x = s[j];
        if (br) x = x + br[j];
        sum += expf(x - mx);
    }
    const float inv = (float)(1.0 / fk_dev_block_sum_d((double)sum, shd));
    for (int64_t j = threadIdx.x; j < Lk; j += blockDim.x) {
        float v = 0.0f;
        if (j < jn) {
            float x = s[j];
            if (br) x = x + br[j];
            v = expf(x - mx) * inv;
        }
        p[j] = (TP)v;
    }
}

static void fk_cuda_attention_gemm(fk_backend *be, float *out, const fk_tensor *q,
                                   const fk_tensor *k, const fk_tensor *v, const float *bias,
                                   int64_t Lq, int64_t Lk, int64_t H, int64_t D, float scale,
                                   bool causal) {
    fk_cuda_impl *im = fk_cuda_impl_of(be);
    const bool bf16 = im->bf16;
    const int64_t HD = H * D;
    const void *qa = q->data, *ka = k->data, *va = v->data;
    if (bf16) {
        /* the products' alignment of a scratch operand (256-byte aligned) at
         * row stride H·D and head stride D: the lowest set bit of 2·D, at
         * most 256 (fk_cu_align); a bf16 operand aligned so reads in place */
        const size_t al = (size_t)(2 * D) & (~(size_t)(2 * D) + 1);
        fk_attn_bf16_operands(im, q, k, v, al < 256 ? al : 256, &qa, &ka, &va);
    } else {
        FK_ASSERT(q->dtype == FK_F32 && k->dtype == FK_F32 && v->dtype == FK_F32);
    }
    /* S and P rows at stride ldk >= Lk (16-byte aligned rows) */
    const int64_t ldk = fk_cuda_ld8(Lk);
    int64_t lc = (int64_t)(fk_cuda_chunk_bytes(im) / ((size_t)H * (size_t)ldk * 4));
    if (lc < 1) lc = 1;
    if (lc > Lq) lc = Lq;
    float *S = (float *)fk_cuda_scratch(im, FK_CU_SCR_S, (size_t)(H * lc * ldk) * 4);
    void *P = fk_cuda_scratch(im, FK_CU_SCR_P, (size_t)(H * lc * ldk) * (bf16 ? 2 : 4));
    const size_t es = bf16 ? 2 : 4;
    for (int64_t l0 = 0; l0 < Lq; l0 += lc) {
        const int64_t n = Lq - l0 < lc ? Lq - l0 : lc;
        /* S_h (n, Lk) = scale · Q_h · K_hᵀ: column-major S_hᶜ (Lk, n) = K_hᶜᵀ · Q_hᶜ */
        fk_cu_gemm g1;
        memset(&g1, 0, sizeof(g1));
        g1.ta = true, g1.tb = false;
        g1.m = Lk, g1.n = n, g1.k = D;
        g1.a = ka, g1.lda = HD, g1.sa = D;
        g1.b = (const char *)qa + (size_t)(l0 * HD) * es, g1.ldb = HD, g1.sb = D;
        g1.d = S, g1.ldd = ldk, g1.sd = n * ldk;
        g1.batch = (int)H;
        g1.ab_dt = bf16 ? FK_BF16 : FK_F32;
        g1.alpha = scale, g1.beta = 0.0f;
        g1.act = FK_ACT_NONE;
        fk_cuda_gemm(be, &g1);
        dim3 grid((unsigned)n, (unsigned)H);
        if (bf16)
            fk_k_attn_softmax<__nv_bfloat16><<<grid, 256, 0, im->stream>>>(
                S, (__nv_bfloat16 *)P, bias, Lq, Lk, ldk, n, l0, causal ? 1 : 0);
        else
            fk_k_attn_softmax<float><<<grid, 256, 0, im->stream>>>(S, (float *)P, bias, Lq, Lk, ldk,
                                                                   n, l0, causal ? 1 : 0);
        FK_CU_LAUNCH();
        /* O_h (n, D) = P_h · V_h: column-major O_hᶜ (D, n) = V_hᶜ · P_hᶜ, into out */
        fk_cu_gemm g2;
        memset(&g2, 0, sizeof(g2));
        g2.ta = false, g2.tb = false;
        g2.m = D, g2.n = n, g2.k = Lk;
        g2.a = va, g2.lda = HD, g2.sa = D;
        g2.b = P, g2.ldb = ldk, g2.sb = n * ldk;
        g2.d = out + l0 * HD, g2.ldd = HD, g2.sd = D;
        g2.batch = (int)H;
        g2.ab_dt = bf16 ? FK_BF16 : FK_F32;
        g2.alpha = 1.0f, g2.beta = 0.0f;
        g2.act = FK_ACT_NONE;
        fk_cuda_gemm(be, &g2);
    }
}

/* fk_k_flash2<D, BIAS> on a: grid (⌈Lq / 128⌉, H); false (nothing queued)
 * where its shared memory does not fit */
template <int D, bool BIAS>
static bool fk_fa2_launch(fk_cuda_impl *im, const fk_fa_args &a, int64_t Lq, int64_t H) {
    if (!fk_fa2_fits<D, BIAS>(im)) return false;
    const dim3 grid((unsigned)((Lq + FK_FA2_BQ - 1) / FK_FA2_BQ), (unsigned)H);
    fk_k_flash2<D, BIAS><<<grid, FK_FA_THREADS, fk_fa2_smem_bytes<D, BIAS>(), im->stream>>>(a);
    FK_CU_LAUNCH();
    return true;
}

/* FK_CUDA_FA in the environment, read once: "1" runs fk_k_flash, "2"
 * fk_k_flash2 (where its shared memory fits), "3" fk_k_flash3 with 64-key
 * tiles (where it applies); anything else or unset the default (0:
 * fk_k_flash3 with 128-key tiles where it applies, else fk_k_flash2). The
 * FLASH1 and FLASH2 test hooks of a backend force those kernels. */
static int fk_fa_variant_env(void) {
    const char *e = getenv("FK_CUDA_FA");
    const int v = e ? atoi(e) : 0;
    return v >= 1 && v <= 3 ? v : 0;
}

#ifndef FK_HAVE_SM90A /* not built (no sm_90 in the architectures): never taken */
bool fk_cuda_flash3_setup(size_t smem_optin) {
    (void)smem_optin;
    return false;
}
void fk_cuda_flash3_launch(const fk_fa3_args *a, int bk, cudaStream_t s) {
    (void)a, (void)bk, (void)s;
}
#endif
static int fk_fa_variant(const fk_cuda_impl *im) {
    static const int variant = fk_fa_variant_env(); /* thread-safe one-time init */
    return (im->hooks & FK_CUDA_HOOK_FLASH1)   ? 1
           : (im->hooks & FK_CUDA_HOOK_FLASH2) ? 2
                                               : variant;
}

extern "C" void fk_cuda_attention(fk_backend *be, fk_tensor *out, const fk_tensor *q,
                                  const fk_tensor *k, const fk_tensor *v, const fk_tensor *bias,
                                  float scale, bool causal) {
    fk_cuda_impl *im = fk_cuda_enter(be);
    fk_cuda_assert_act(out);
    fk_cuda_assert_act(q);
    fk_cuda_assert_act(k);
    fk_cuda_assert_act(v);
    /* bf16 activations (supports(): bf16 mode only): out, and each of q, k, v */
    const bool obf = out->dtype == FK_BF16;
    FK_ASSERT(out->dtype == FK_F32 || (obf && im->bf16));
    FK_ASSERT(q->dtype == FK_F32 || (q->dtype == FK_BF16 && im->bf16));
    FK_ASSERT(k->dtype == FK_F32 || (k->dtype == FK_BF16 && im->bf16));
    FK_ASSERT(v->dtype == FK_F32 || (v->dtype == FK_BF16 && im->bf16));
    FK_ASSERT(q->ndim == 3 && k->ndim == 3 && v->ndim == 3);
    const int64_t Lq = q->shape[0], H = q->shape[1], D = q->shape[2], Lk = k->shape[0];
    FK_ASSERT(k->shape[1] == H && k->shape[2] == D && fk_tensor_same_shape(k, v));
    FK_ASSERT(fk_tensor_rows(out) == Lq && fk_tensor_cols(out) == H * D); /* out (Lq, H·D) */
    FK_ASSERT(out->data != q->data && out->data != k->data && out->data != v->data);
    if (bias) {
        fk_cuda_assert_act(bias);
        FK_ASSERT(bias->dtype == FK_F32 && fk_tensor_numel(bias) == H * Lq * Lk); /* (H, Lq, Lk) */
    }
    if (Lq == 0 || H == 0 || D == 0) return;
    if (Lk == 0) { /* no keys: every row is all-masked → 0 */
        const size_t es = obf ? 2 : 4;
        FK_CU(cudaMemsetAsync(out->data, 0, (size_t)(Lq * H * D) * es, im->stream));
        return;
    }
    FK_ASSERT(Lq <= INT32_MAX && Lk <= INT32_MAX && H <= 65535);
    /* the flash kernels store float2 or bf16x2 pairs */
    const bool flash = im->bf16 && (D == 64 || D == 128) &&
                       ((uintptr_t)out->data & (obf ? 3 : 7)) == 0;
    if (!flash) { /* a bf16 out: the f32 out in scratch, then rounded */
        float *o32 = obf ? (float *)fk_cuda_scratch(im, FK_CU_SCR_Y, (size_t)(Lq * H * D) * 4)
                         : (float *)out->data;
        fk_cuda_attention_gemm(be, o32, q, k, v, bias ? (const float *)bias->data : NULL, Lq,
                               Lk, H, D, scale, causal);
        if (obf) fk_cuda_convert(im, out->data, FK_BF16, o32, FK_F32, Lq * H * D);
        return;
    }
    /* the flash kernels copy 16 bytes at a time (rows of H·D, heads of D
     * bf16: 16-byte multiples), so a bf16 operand reads in place from a
     * 16-byte aligned address */
    const void *qb, *kb, *vb;
    fk_attn_bf16_operands(im, q, k, v, 16, &qb, &kb, &vb);
    fk_fa_args a;
    a.q = (const __nv_bfloat16 *)qb, a.k = (const __nv_bfloat16 *)kb;
    a.v = (const __nv_bfloat16 *)vb;
    a.bias = bias ? (const float *)bias->data : NULL;
    a.out = obf ? NULL : (float *)out->data;
    a.outb = obf ? (__nv_bfloat16 *)out->data : NULL;
    a.Lq = (int)Lq, a.Lk = (int)Lk, a.H = (int)H;
    a.scale_log2 = scale * 1.4426950408889634f;
    a.causal = causal ? 1 : 0;
    const int variant = fk_fa_variant(im);
    if ((variant == 0 || variant == 3) && im->flash3 && D == 128 && !bias && !causal) {
        const fk_fa3_args a3 = {a.q, a.k, a.v, a.out, a.outb, a.Lq, a.Lk, a.H, a.scale_log2};
        fk_cuda_flash3_launch(&a3, variant == 3 ? 64 : 128, im->stream); /* Hopper's wgmma */
        FK_CU_LAUNCH();
        return;
    }
    if (variant != 1) { /* the two-m-tile kernel, where it fits */
        const bool b = bias != NULL;
        const bool ran = D == 128 ? (b ? fk_fa2_launch<128, true>(im, a, Lq, H)
                                       : fk_fa2_launch<128, false>(im, a, Lq, H))
                                  : (b ? fk_fa2_launch<64, true>(im, a, Lq, H)
                                       : fk_fa2_launch<64, false>(im, a, Lq, H));
        if (ran) return;
    }
    dim3 grid((unsigned)((Lq + FK_FA_BQ - 1) / FK_FA_BQ), (unsigned)H);
    if (D == 128)
        fk_k_flash<128><<<grid, FK_FA_THREADS, fk_fa_cfg<128>::SMEM_BYTES, im->stream>>>(a);
    else
        fk_k_flash<64><<<grid, FK_FA_THREADS, fk_fa_cfg<64>::SMEM_BYTES, im->stream>>>(a);
    FK_CU_LAUNCH();
}
