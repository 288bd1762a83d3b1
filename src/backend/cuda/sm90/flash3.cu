/* flash3: multi-head attention on Hopper's warpgroup MMA (wgmma.mma_async),
 * D = 128, bf16 q, k, v, no bias, no causal mask (FLUX's joint attention).
 * Built for sm_90a only (wgmma is an arch-specific instruction): its own
 * object library in CMakeLists.txt; cuda_attention.cu sets it up on devices
 * of compute capability 9.0 and launches it there by default (see there).
 *
 * The algorithm and the numerics are fk_k_flash2's (cuda_attention.cu):
 * scores in the log2 domain, the running max and sum per row, exp2f, P
 * rounded to bf16 for the second product while the row sums take the
 * unrounded values, out = O / l. What differs is where the products run:
 * - A CTA is two warpgroups (256 threads), each owning 64 query rows
 *   (BQ = 128 per CTA); keys come in tiles of BK = 128 (64 as an A/B
 *   variant), double-buffered in shared memory by cp.async (all 256
 *   threads copy).
 * - S (64 × BK per warpgroup) = Q·Kᵀ: 8 wgmma m64nBKk16, Q and K both
 *   read from shared memory through matrix descriptors (K-major).
 * - O (64 × 128) += P·V: BK / 16 wgmma m64n128k16 with P in registers (the
 *   accumulator layout of S is the register layout of an A operand, so P
 *   needs no shuffle) and V from shared memory, N-major (V is stored as it
 *   comes, keys × d, and the instruction transposes).
 * Shared memory: every operand is stored in 128-byte swizzled rows (the
 *   layout the descriptors name: 64 bf16 per 128-byte row, 16-byte chunk c
 *   of row r at chunk c ^ (r mod 8), 8 rows = one 1024-byte atom, atoms
 *   1024-byte aligned), D = 128 split in two 64-column halves, each half
 *   its own block of rows:
 *     Q: 2 halves × 128 rows × 128 B = 32 KiB
 *     K, V: 2 buffers × 2 halves × BK rows × 128 B = 64 KiB each (BK 128)
 *   160 KiB (+1 KiB for alignment; 96 KiB at BK 64): one CTA per SM
 *   (registers, BK 128: O 64, S 64, P 32 per thread; 209 in all, no
 *   spills with nvcc 13.0).
 * Measured on an H100 (docs/PERF.md, session 9): 196 / 335 TFLOP/s at L =
 * 1536 / 4608 against fk_k_flash2's 149 / 256 in the same call; BK 64:
 * 191 / 316; issuing the next tile's Q·Kᵀ before the softmax (a second S in
 * registers) ran slower (156 / 246) and was dropped.
 * Descriptors (PTX "matrix descriptor"): start address / 16, leading and
 *   stride byte offsets / 16, swizzle mode 1 (128 B) in bits 62-63.
 *   K-major (Q, K): stride offset 1024 B (from one 8-row atom to the next),
 *   leading offset unused (1); the k-th 16-element slice of a half starts
 *   32·k bytes in. N-major (V): stride offset 1024 B (the next 8 keys),
 *   leading offset = one half's bytes (from d 0-63 to d 64-127); the k-th
 *   slice of 16 keys starts 16·128·k bytes in.
 * Fences: cp.async writes reach the wgmma (async proxy) through
 *   fence.proxy.async after they land; wgmma.fence before the products
 *   that read registers written by plain code (O rescaled, P); the
 *   accumulators are pinned (an empty asm on each register) after each
 *   wait, so that no read of them is moved above it. */
#include "backend/cuda/sm90/flash3.h"
#include "backend/cuda/flash_common.cuh"

#include <math.h>

#define FK_FA3_D 128
#define FK_FA3_BQ 128 /* query rows per CTA: 2 warpgroups × 64 */
#define FK_FA3_THREADS 256

/* shared memory layout (bytes from the 1024-aligned base) for BK keys per
 * tile: Q's two halves, then two K tiles, then two V tiles */
template <int BK> struct fk_fa3_cfg {
    static constexpr int QHALF = FK_FA3_BQ * 128; /* one 64-column half of Q */
    static constexpr int KVHALF = BK * 128;       /* one half of a K or V tile */
    static constexpr int KV = 2 * KVHALF;         /* one K or V tile */
    static constexpr int OFF_K = 2 * QHALF;
    static constexpr int OFF_V = OFF_K + 2 * KV;
    static constexpr int SMEM = OFF_V + 2 * KV + 1024;
    static constexpr int NS = BK / 2; /* S accumulators per thread (64 × BK / 128) */
};


#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

static __device__ __forceinline__ void fk_fa3_cp16(uint32_t s, const void *g, bool valid) {
    const int n = valid ? 16 : 0; /* 0: zero-fill, nothing read */
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(g), "r"(n)
                 : "memory");
}
static __device__ __forceinline__ void fk_fa3_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}
static __device__ __forceinline__ void fk_fa3_wait_all() {
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}
static __device__ __forceinline__ void fk_fa3_fence_async() {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
static __device__ __forceinline__ void fk_wg_fence() {
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
static __device__ __forceinline__ void fk_wg_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
static __device__ __forceinline__ void fk_wg_wait0() {
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
}
/* keep reads and writes of r on their side of the fences around it */
template <int N> static __device__ __forceinline__ void fk_wg_pin(float (&r)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+f"(r[i])::"memory");
}

/* the descriptors (see the header) */
static __device__ __forceinline__ uint64_t fk_fa3_desc_k(uint32_t addr) {
    return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)1 << 16) |
           ((uint64_t)(1024 >> 4) << 32) | ((uint64_t)1 << 62);
}
static __device__ __forceinline__ uint64_t fk_fa3_desc_n(uint32_t addr, uint32_t lead) {
    return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)(lead >> 4) << 16) |
           ((uint64_t)(1024 >> 4) << 32) | ((uint64_t)1 << 62);
}

/* d (64 × 64 f32) (+)= A (64 × 16, shared memory, descriptor da) · B (16 × 64,
 * descriptor db); scale_d 0: d = A·B */
static __device__ __forceinline__ void fk_wgmma_s(float (&d)[32], uint64_t da, uint64_t db,
                                                  int scale_d) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, "
                 "%11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, "
                 "%22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
                 "}, %32, %33, p, 1, 1, 0, 0;\n}\n"
                 :
                 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),
                 "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),
                 "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]),
                 "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                 "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]),
                 "+f"(d[30]), "+f"(d[31])
                 : "l"(da), "l"(db), "r"(scale_d));
}

/* the 64 accumulator operands of an m64n128 wgmma: their placeholders and
 * their constraints (d: a float[64]) */
#define FK_WG_R64                                                                                \
    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, "     \
    "%19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, "     \
    "%36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, "     \
    "%53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define FK_WG_OUT16(d, i)                                                                        \
    "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), \
        "+f"(d[i + 6]), "+f"(d[i + 7]), "+f"(d[i + 8]), "+f"(d[i + 9]), "+f"(d[i + 10]),         \
        "+f"(d[i + 11]), "+f"(d[i + 12]), "+f"(d[i + 13]), "+f"(d[i + 14]), "+f"(d[i + 15])
#define FK_WG_OUT64(d) FK_WG_OUT16(d, 0), FK_WG_OUT16(d, 16), FK_WG_OUT16(d, 32), FK_WG_OUT16(d, 48)

/* d (64 × 128 f32) (+)= A (64 × 16, shared memory, descriptor da) · B (16 × 128,
 * descriptor db); scale_d 0: d = A·B */
static __device__ __forceinline__ void fk_wgmma_s(float (&d)[64], uint64_t da, uint64_t db,
                                                  int scale_d) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {" FK_WG_R64
                 "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
                 : FK_WG_OUT64(d)
                 : "l"(da), "l"(db), "r"(scale_d));
}

/* d (64 × 128 f32) += A (64 × 16 bf16, registers a: the accumulator layout's
 * rows and columns, pairs packed) · B (16 × 128, shared memory, N-major,
 * descriptor db) */
static __device__ __forceinline__ void fk_wgmma_o(float (&d)[64], const uint32_t (&a)[4],
                                                  uint64_t db) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {" FK_WG_R64
                 "}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
                 : FK_WG_OUT64(d)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}

static __device__ __forceinline__ uint32_t fk_fa3_pack(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi); /* .x (low half) = lo */
    return *reinterpret_cast<uint32_t *>(&v);
}

/* Rows [r0, r0 + R) of head h of x (L, H, 128) bf16 into the swizzled
 * halves at s (each R rows × 128 B); rows at or past L zero-filled. The
 * CTA's threads take consecutive 16-byte chunks (16 per row). */
template <int R>
static __device__ __forceinline__ void fk_fa3_load(uint32_t s, const __nv_bfloat16 *x, int r0,
                                                   int L, int h, int64_t HD) {
    static_assert((R * 16) % FK_FA3_THREADS == 0, "rows");
#pragma unroll
    for (int it = 0; it < R * 16 / FK_FA3_THREADS; it++) {
        const int id = it * FK_FA3_THREADS + (int)threadIdx.x, r = id >> 4, c = id & 15;
        const bool valid = r0 + r < L;
        const __nv_bfloat16 *src = x + (int64_t)(valid ? r0 + r : 0) * HD + h * FK_FA3_D + c * 8;
        const uint32_t dst = s + (uint32_t)((c >> 3) * (R * 128) + r * 128 +
                                            (((c & 7) ^ (r & 7)) << 4));
        fk_fa3_cp16(dst, src, valid);
    }
}

static __device__ __forceinline__ void fk_fa3_store2(const fk_fa3_args &a, int64_t off, float x,
                                                     float y) {
    if (a.outb)
        *reinterpret_cast<__nv_bfloat162 *>(a.outb + off) = __floats2bfloat162_rn(x, y);
    else
        *reinterpret_cast<float2 *>(a.out + off) = make_float2(x, y);
}

#endif /* __CUDA_ARCH_FEAT_SM90_ALL */

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
/* s (S of one tile, BK keys) = Q·Kᵀ over d (half kk / 4, slice kk % 4):
 * issued and committed, not waited for */
template <int BK>
static __device__ __forceinline__ void fk_fa3_qk(float (&s)[BK / 2], uint32_t qbase,
                                                 uint32_t kbase) {
#pragma unroll
    for (int i = 0; i < BK / 2; i++) s[i] = 0.0f;
    fk_wg_pin(s);
    fk_wg_fence();
#pragma unroll
    for (int kk = 0; kk < FK_FA3_D / 16; kk++)
        fk_wgmma_s(s, fk_fa3_desc_k(qbase + (kk >> 2) * fk_fa3_cfg<BK>::QHALF + (kk & 3) * 32),
                   fk_fa3_desc_k(kbase + (kk >> 2) * fk_fa3_cfg<BK>::KVHALF + (kk & 3) * 32), kk);
    fk_wg_commit();
}
#endif

/* BK: keys per tile (128, the default, or 64) */
template <int BK>
__global__ void __launch_bounds__(FK_FA3_THREADS, 1) fk_k_flash3(const fk_fa3_args a) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using C = fk_fa3_cfg<BK>;
    constexpr int NS = C::NS;
    extern __shared__ __align__(16) unsigned char fk_fa3_smem[];
    const uint32_t s0 = ((uint32_t)__cvta_generic_to_shared(fk_fa3_smem) + 1023u) & ~1023u;
    const uint32_t sq = s0, sk = s0 + C::OFF_K, sv = s0 + C::OFF_V;
    const int tid = (int)threadIdx.x, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31;
    const int c4 = lane & 3; /* the accumulator's column pair */
    const int h = blockIdx.y, q0 = blockIdx.x * FK_FA3_BQ;
    const int64_t HD = (int64_t)a.H * FK_FA3_D;
    const int ntiles = (a.Lk + BK - 1) / BK;
    /* this thread's rows: row0 and row0 + 8 */
    const int row0 = q0 + wg * 64 + warp * 16 + (lane >> 2);
    const uint32_t qw = sq + wg * 64 * 128; /* this warpgroup's rows of Q */

    fk_fa3_load<FK_FA3_BQ>(sq, a.q, q0, a.Lq, h, HD);
    fk_fa3_load<BK>(sk, a.k, 0, a.Lk, h, HD);
    fk_fa3_load<BK>(sv, a.v, 0, a.Lk, h, HD);
    fk_fa3_commit();

    float o[64];
#pragma unroll
    for (int i = 0; i < 64; i++) o[i] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    for (int t = 0; t < ntiles; t++) {
        const int buf = t & 1, k0 = t * BK;
        fk_fa3_wait_all(); /* tile t (and Q) landed: the only group in flight */
        fk_fa3_fence_async();
        __syncthreads(); /* every copy of tile t done; tile t - 1 read by everyone */
        if (t + 1 < ntiles) { /* the next tile into the other buffers */
            fk_fa3_load<BK>(sk + (buf ^ 1) * C::KV, a.k, k0 + BK, a.Lk, h, HD);
            fk_fa3_load<BK>(sv + (buf ^ 1) * C::KV, a.v, k0 + BK, a.Lk, h, HD);
        }
        fk_fa3_commit();
        float s[NS];
        fk_fa3_qk<BK>(s, qw, sk + buf * C::KV);
        fk_wg_wait0();
        fk_wg_pin(s);

        /* scores in the log2 domain, keys past Lk masked, row maxima:
         * s[4j + e] is row row0 + 8·(e / 2), key k0 + 8j + 2·c4 + e % 2 */
        float mt[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int j = 0; j < NS / 4; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float x = s[4 * j + e] * a.scale_log2;
                if (k0 + 8 * j + 2 * c4 + (e & 1) >= a.Lk) x = -INFINITY;
                s[4 * j + e] = x;
                mt[e >> 1] = fmaxf(mt[e >> 1], x);
            }
        float mu[2], alpha[2];
#pragma unroll
        for (int r = 0; r < 2; r++) mu[r] = fk_fa_row_step(mt[r], m[r], alpha[r]);
#pragma unroll
        for (int i = 0; i < 16; i++) {
            o[4 * i] *= alpha[0], o[4 * i + 1] *= alpha[0];
            o[4 * i + 2] *= alpha[1], o[4 * i + 3] *= alpha[1];
        }
        /* P = exp2(x − m), the A fragments of P·V: keys 16i .. 16i + 15 are
         * the accumulator's column blocks 2i and 2i + 1 */
        uint32_t pa[BK / 16][4];
        float ts[2] = {0.0f, 0.0f};
#pragma unroll
        for (int j = 0; j < NS / 4; j++) {
            const float p0 = exp2f(s[4 * j] - mu[0]), p1 = exp2f(s[4 * j + 1] - mu[0]);
            const float p2 = exp2f(s[4 * j + 2] - mu[1]), p3 = exp2f(s[4 * j + 3] - mu[1]);
            ts[0] += p0;
            ts[0] += p1;
            ts[1] += p2;
            ts[1] += p3;
            pa[j >> 1][(j & 1) * 2] = fk_fa3_pack(p0, p1);
            pa[j >> 1][(j & 1) * 2 + 1] = fk_fa3_pack(p2, p3);
        }
#pragma unroll
        for (int r = 0; r < 2; r++) {
            ts[r] += __shfl_xor_sync(0xffffffffu, ts[r], 1);
            ts[r] += __shfl_xor_sync(0xffffffffu, ts[r], 2);
            l[r] = l[r] * alpha[r] + ts[r];
        }

        /* O += P·V over the tile's keys, 16 at a time */
        fk_wg_pin(o);
        fk_wg_fence();
#pragma unroll
        for (int i = 0; i < BK / 16; i++)
            fk_wgmma_o(o, pa[i], fk_fa3_desc_n(sv + buf * C::KV + i * 16 * 128, C::KVHALF));
        fk_wg_commit();
        fk_wg_wait0();
        fk_wg_pin(o);
    }

    /* out = O / l: o[4i + e] is row row0 + 8·(e / 2), column 8i + 2·c4 + e % 2 */
    const float inv[2] = {l[0] > 0.0f ? 1.0f / l[0] : 0.0f, l[1] > 0.0f ? 1.0f / l[1] : 0.0f};
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int row = row0 + 8 * r;
        if (row >= a.Lq) continue;
        const int64_t base = (int64_t)row * HD + h * FK_FA3_D + 2 * c4;
#pragma unroll
        for (int i = 0; i < 16; i++)
            fk_fa3_store2(a, base + 8 * i, o[4 * i + 2 * r] * inv[r],
                          o[4 * i + 2 * r + 1] * inv[r]);
    }
#endif
}

template <int BK> static bool fk_fa3_setup(size_t smem_optin) {
    constexpr int smem = fk_fa3_cfg<BK>::SMEM;
    return smem_optin >= (size_t)smem &&
           cudaFuncSetAttribute(fk_k_flash3<BK>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                smem) == cudaSuccess;
}

bool fk_cuda_flash3_setup(size_t smem_optin) {
    const bool ok = fk_fa3_setup<128>(smem_optin) && fk_fa3_setup<64>(smem_optin);
    if (!ok) (void)cudaGetLastError(); /* not fatal: the other kernels run instead */
    return ok;
}

template <int BK> static void fk_fa3_run(const fk_fa3_args *a, cudaStream_t s) {
    const dim3 grid((unsigned)((a->Lq + FK_FA3_BQ - 1) / FK_FA3_BQ), (unsigned)a->H);
    fk_k_flash3<BK><<<grid, FK_FA3_THREADS, fk_fa3_cfg<BK>::SMEM, s>>>(*a);
}

void fk_cuda_flash3_launch(const fk_fa3_args *a, int bk, cudaStream_t s) {
    if (bk == 64)
        fk_fa3_run<64>(a, s);
    else
        fk_fa3_run<128>(a, s);
}
