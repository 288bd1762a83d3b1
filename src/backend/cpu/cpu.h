/* cpu: internal header of the CPU backend, the fp32 reference.
 *
 * Layout of the backend:
 *   cpu_backend.c     the op table, supports(), memory functions, ISA detection,
 *                     fk_backend_cpu_create
 *   cpu_gemm.h        blocked GEMM internals (packing, micro-kernel interface)
 *   cpu_linear.c      GEMM driver (packing, blocking, threading), portable
 *                     kernel, linear
 *   cpu_gemv.c        small-M path of the GEMM (M <= 32): weights read in
 *                     place, transposed in registers (AVX-512, AVX2)
 *   cpu_kernels_x86.c AVX2+FMA and AVX-512 micro-kernels (selected at run time)
 *   cpu_amx.c         bf16 linear and attention (precision mode FK_PREC_BF16)
 *                     on AMX tiles, chosen at run time; the weight cache
 *   cpu_fused.c       linear_act, linear_cat (fused output stage / joined input)
 *   cpu_attention.c   multi-head attention (blocked online softmax)
 *   cpu_norm.c        layernorm, rmsnorm, softmax, and the fused
 *                     layernorm_modulate, rmsnorm_rope
 *   cpu_elementwise.c activations, add/mul, modulate, gated_add, rope, row/column copies
 *   cpu_ew.h, cpu_ew_x86.c  AVX2 / AVX-512 row kernels of the elementwise and
 *                     norm ops (the bits of the portable code)
 *   cpu_conv.c        conv2d, group_norm, upsample_nearest2x
 *   cpu_conv_amx.c    bf16 conv2d on AMX tiles (precision mode FK_PREC_BF16)
 *   cpu_layout.c      transpose (blocked, register tiles) and scale_cols
 *
 * Threading: `FK_CPU_PARALLEL_FOR(nt)` before a `for` loop whose iterations
 * write disjoint outputs; every output element is computed by one thread in a
 * fixed order, so results are bitwise identical for any thread count. Ops
 * open their own parallel regions and index the per-thread scratch by
 * omp_get_thread_num(): never call them from inside a parallel region
 * (fk_cpu_not_nested asserts it).
 *
 * Numerics of the reference (every path, portable or SIMD, gives the same bits):
 * - A dot product / matrix product element is ONE sequential chain of fused
 *   multiply-adds over the reduction index in increasing order, starting
 *   from +0: acc = fma(a[k], b[k], acc). Bias (if any) is added afterwards.
 * - Row statistics (norms, softmax sums) accumulate in double.
 */
#ifndef FK_CPU_H
#define FK_CPU_H

#include "backend/backend.h"

#include <math.h>
#include <string.h>

#ifdef FK_HAVE_OPENMP
#include <omp.h>
#define FK_CPU_PRAGMA_(x) _Pragma(#x)
#define FK_CPU_PARALLEL_FOR(nt) FK_CPU_PRAGMA_(omp parallel for num_threads(nt) schedule(static))
static inline int fk_cpu_thread_id(void) { return omp_get_thread_num(); }
static inline void fk_cpu_not_nested(void) { FK_ASSERT(!omp_in_parallel()); }
#else
/* serial: still "uses" nt so a thread-count variable never goes unused */
#define FK_CPU_PARALLEL_FOR(nt) (void)(nt);
static inline int fk_cpu_thread_id(void) { return 0; }
static inline void fk_cpu_not_nested(void) {}
#endif

/* Instruction-set path of the compute kernels, chosen at run time. */
typedef enum fk_cpu_isa {
    FK_CPU_ISA_PORTABLE = 0, /* plain C (fmaf) */
    FK_CPU_ISA_AVX2,         /* AVX2 + FMA + F16C */
    FK_CPU_ISA_AVX512,       /* AVX-512F */
    FK_CPU_ISA_COUNT
} fk_cpu_isa;

/* Best ISA this machine supports. */
fk_cpu_isa fk_cpu_isa_detect(void);
/* True when `isa` can run on this machine. */
bool fk_cpu_isa_available(fk_cpu_isa isa);
/* "portable", "avx2", "avx512". */
const char *fk_cpu_isa_name(fk_cpu_isa isa);

/* Per-thread scratch (floats), allocated once at create time. */
#define FK_CPU_SCRATCH_FLOATS ((size_t)1 << 18) /* 1 MiB per thread */

/* Precision mode of the backend (fk_backend_cpu_set_precision). */
typedef enum fk_precision {
    FK_PREC_F32 = 0, /* the fp32 reference (default) */
    FK_PREC_BF16,    /* linear, attention: bf16-rounded operands, f32 accumulation (cpu_amx.c) */
} fk_precision;

/* Kernel of the bf16 linear, chosen at run time. */
typedef enum fk_cpu_bf16_kernel {
    FK_CPU_BF16_NONE = 0, /* no bf16 hardware: the linear stays on the f32 path */
    FK_CPU_BF16_AVX512,   /* AVX512-BF16 vdpbf16ps */
    FK_CPU_BF16_AMX,      /* AMX-BF16 tiles (tdpbf16ps) */
    FK_CPU_BF16_COUNT
} fk_cpu_bf16_kernel;

typedef struct fk_cpu_impl {
    fk_cpu_isa isa;
    int n_threads;
    float *scratch; /* (n_threads, FK_CPU_SCRATCH_FLOATS), 64-byte aligned */
    fk_precision precision;          /* FK_PREC_F32 unless set */
    fk_cpu_bf16_kernel bf16_kernel;  /* used when precision is FK_PREC_BF16 */
    bool bf16_attention;             /* bf16 mode: attention on AMX too */
    void *bf16_ws;                   /* bf16 workspace (cpu_amx.c), grown on demand */
    size_t bf16_ws_bytes;
    bool gemv_off;                   /* small-M path (cpu_gemv.c) disabled: tests, benchmarks */
    bool bf16_io_off;                /* bf16 activations refused (fk_cpu_bf16_io_ok): tests, A/B */
    uint64_t bf16_ws_max;            /* bf16 workspace cap in bytes (tests: out of memory); 0: none */
    int64_t conv16_band_bytes;       /* bf16 conv2d: input band cap (tests); 0: the default */
    void *wcache;                    /* pre-packed weights (be->cache_weight, cpu_amx.c) */
    uint64_t *ranges; /* (n_threads, 8): task ranges with stealing (fk_cpu_ranges_*) */
} fk_cpu_impl;

static inline fk_cpu_impl *fk_cpu_impl_of(const fk_backend *be) { return (fk_cpu_impl *)be->impl; }

/* Scratch of thread `tid` (FK_CPU_SCRATCH_FLOATS floats). */
static inline float *fk_cpu_scratch(const fk_backend *be, int tid) {
    FK_ASSERT(tid >= 0 && tid < fk_cpu_impl_of(be)->n_threads);
    return fk_cpu_impl_of(be)->scratch + (size_t)tid * FK_CPU_SCRATCH_FLOATS;
}

/* Task ranges with stealing, for a parallel loop over tasks whose order
 * within a thread matters for locality (attention: the tasks of a head share
 * its packed K and V). Thread i owns [ntasks·i/nt, ntasks·(i+1)/nt) and takes
 * its tasks from the front; a thread whose range is empty takes the last task
 * of the range with the most left (one range per 64-byte line, `lo | hi <<
 * 32`, updated by compare-and-swap). When every thread runs at the same
 * speed each does its own range, as a static split would; when the OS or
 * another process holds one up, the others finish its range from the back.
 * Which thread runs a task never changes what the task computes.
 * fk_cpu_ranges_init before the parallel region (ntasks < 2^32), then
 * fk_cpu_ranges_next in it until it returns −1. */
static inline void fk_cpu_ranges_init(fk_cpu_impl *impl, int nt, int64_t ntasks) {
    FK_ASSERT(nt <= impl->n_threads && ntasks >= 0 && ntasks < ((int64_t)1 << 32));
    for (int i = 0; i < nt; i++) {
        uint64_t lo = (uint64_t)(ntasks * i / nt), hi = (uint64_t)(ntasks * (i + 1) / nt);
        __atomic_store_n(&impl->ranges[i * 8], lo | hi << 32, __ATOMIC_RELAXED);
    }
}

static inline int64_t fk_cpu_ranges_next(fk_cpu_impl *impl, int nt, int tid) {
    uint64_t *own = &impl->ranges[tid * 8];
    uint64_t r = __atomic_load_n(own, __ATOMIC_RELAXED);
    while ((uint32_t)r < (uint32_t)(r >> 32)) /* own range: the front */
        if (__atomic_compare_exchange_n(own, &r, r + 1, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            return (int64_t)(uint32_t)r;
    for (;;) { /* steal: the back of the range with the most left */
        int victim = -1;
        uint64_t best = 0, rv = 0;
        for (int i = 0; i < nt; i++) {
            uint64_t x = __atomic_load_n(&impl->ranges[i * 8], __ATOMIC_RELAXED);
            uint64_t left = (uint32_t)(x >> 32) > (uint32_t)x ? (x >> 32) - (uint32_t)x : 0;
            if (left > best) best = left, victim = i, rv = x;
        }
        if (victim < 0) return -1;
        uint64_t hi = (rv >> 32) - 1;
        if (__atomic_compare_exchange_n(&impl->ranges[victim * 8], &rv,
                                        (uint64_t)(uint32_t)rv | hi << 32, false,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            return (int64_t)hi;
    }
}

/* Like fk_backend_cpu_create, with an explicit kernel path (tests, benchmarks).
 * NULL when out of memory or when `isa` cannot run on this machine. */
fk_backend *fk_backend_cpu_create_isa(int n_threads, fk_cpu_isa isa);

/* ---- GEMM (shared by linear, attention, conv) ---- */

/* c(M, N) = a(M, K) · b(N, K)ᵀ (+ bias(N) if not NULL).
 * a f32 with row stride lda; b of float dtype `bdt` with row stride ldb
 * (elements), read in place and converted in panels (never a whole f32 copy);
 * c f32 with row stride ldc; bias of float dtype `bias_dt` or NULL.
 * Parallel over the output with be->n_threads threads: call it from outside
 * a parallel region (it uses the per-thread scratch). Every c element is the
 * reference fma chain over k = 0..K-1 starting from +0, then + bias, in f32.
 * See cpu_gemm.h for the blocking. */
void fk_cpu_gemm(const fk_backend *be, int64_t M, int64_t N, int64_t K, const float *a,
                 int64_t lda, const void *b, fk_dtype bdt, int64_t ldb, const void *bias,
                 fk_dtype bias_dt, float *c, int64_t ldc);

/* ---- small-M path (cpu_gemv.c) ---- */

/* fk_cpu_gemm with M <= FK_CPU_GEMV_MAX_M runs fk_cpu_gemv: the weight is read
 * in place (no packing) and transposed in registers, one SIMD lane per output
 * column, with the same bits as the blocked path. */
#define FK_CPU_GEMV_MAX_M 32

/* fk_cpu_gemm for small M (same arguments, same bits). False (c untouched)
 * when it does not apply: M outside 1..FK_CPU_GEMV_MAX_M, the portable ISA,
 * a weight dtype without kernel (F64), K too large for the scratch, or
 * disabled by fk_backend_cpu_set_gemv. */
bool fk_cpu_gemv(const fk_backend *be, int64_t M, int64_t N, int64_t K, const float *a,
                 int64_t lda, const void *b, fk_dtype bdt, int64_t ldb, const void *bias,
                 fk_dtype bias_dt, float *c, int64_t ldc);
/* True when fk_cpu_gemv has a kernel for isa and weight dtype bdt here. */
bool fk_cpu_gemv_kernel_available(fk_cpu_isa isa, fk_dtype bdt);
/* Enable (default) or disable the small-M path (tests, benchmarks). */
void fk_backend_cpu_set_gemv(fk_backend *be, bool on);

/* ---- bf16 fast path (cpu_amx.c) ---- */

/* Set the precision mode of a CPU backend. FK_PREC_BF16: linear with at least
 * FK_CPU_BF16_MIN_M rows rounds x and w to bf16 (nearest-even) and
 * accumulates in f32 on AMX when the machine has it (else it stays on the
 * f32 path), attention runs on AMX too (fk_cpu_attention_bf16; see
 * fk_backend_cpu_set_bf16_attention), and so does conv2d
 * (fk_cpu_conv2d_bf16, AMX only); smaller linears and every other op keep
 * the f32 reference. Returns the kernel the linear will use
 * (FK_CPU_BF16_NONE for FK_PREC_F32 or without AMX). Results stay bitwise
 * identical for any thread count. Call between ops, outside parallel
 * regions. Default: FK_PREC_F32. */
fk_cpu_bf16_kernel fk_backend_cpu_set_precision(fk_backend *be, fk_precision prec);
/* Force a bf16 kernel (tests, benchmarks): sets FK_PREC_BF16 with kernel k.
 * False (nothing changed) when k cannot run on this machine. */
bool fk_backend_cpu_set_bf16_kernel(fk_backend *be, fk_cpu_bf16_kernel k);
/* In bf16 mode, attention too runs on AMX (q, k, v, p rounded to bf16;
 * fk_cpu_attention_bf16) when the kernel is AMX: on by default with
 * FK_PREC_BF16; off keeps the f32 reference attention. Sets be->attention. */
void fk_backend_cpu_set_bf16_attention(fk_backend *be, bool on);
/* Bytes of the backend's bf16 workspace, grown by the largest bf16 op so far:
 * linear: packed activations round32(M)·round32(K)·2 plus, per thread, two
 * weight panels 2·256·round32(K)·2 and two f32 output panels 2·256·256·4;
 * attention: per thread one head's packed K and V, round128(Lk)·D·4 (cpu_amx.c); conv2d: packed
 * weights, and per thread an input band and two output chunks (cpu_conv_amx.c). */
size_t fk_backend_cpu_workspace_bytes(const fk_backend *be);

/* bf16 activations (the op table's exception to f32 activations, see
 * backend.h): linear / linear_act / linear_multi / linear_cat accept a bf16
 * x (x1, x2) and a bf16 y where the product runs on the bf16 kernel, i.e.
 * in bf16 mode with a bf16 kernel, at least FK_CPU_BF16_MIN_M rows, and not
 * switched off by fk_backend_cpu_set_bf16_io. There a bf16 operand gives
 * the bits of the f32 one it was rounded from (the product rounds f32
 * activations to bf16 nearest-even anyway), with half the bytes. supports()
 * answers with this; the ops assert it. */
bool fk_cpu_bf16_io_ok(const fk_backend *be, int64_t rows);
/* dst[i] = src[i] (i < n) rounded to bf16 nearest-even by the instruction
 * the bf16 products round their f32 activations with (the same bits): for
 * an op that writes a bf16 activation (layernorm_modulate, the attention's
 * f32 fallback) where fk_cpu_bf16_io_ok holds. */
void fk_cpu_bf16_round_row(uint16_t *dst, const float *src, int64_t n);
/* Tensor t, an operand of attention (out, q, k, v) or the y of rmsnorm_rope
 * (attention's q or k), may be bf16 (bf16 activations) where
 * fk_cpu_bf16_io_ok holds for its rows and attention runs on AMX
 * (fk_cpu_attention_bf16: its out rounded as the products round x; q, k, v
 * what it rounds them to; the f32 reference, widening q, k, v and rounding
 * out, where that kernel does not apply). */
bool fk_cpu_bf16_attention_io_ok(const fk_backend *be, const fk_tensor *t);
/* Allow (default) or refuse bf16 activations (tests, A/B comparisons). */
void fk_backend_cpu_set_bf16_io(fk_backend *be, bool on);
/* Tests: the bf16 workspace may not grow past `bytes` (0: no cap), so that
 * the paths taken when it cannot be had (out of memory) can be run. */
void fk_backend_cpu_set_bf16_ws_max(fk_backend *be, uint64_t bytes);
/* linear_act / linear_cat (x2 may be NULL) with a bf16 activation operand:
 * the bf16 product (fk_cpu_bf16_io_ok asserted). */
void fk_cpu_linear_io(fk_backend *be, fk_tensor *y, const fk_tensor *x1, const fk_tensor *x2,
                      const fk_tensor *w, const fk_tensor *b, fk_act act);
/* Activation dtypes of the bf16 products: f32, bf16. */
static inline bool fk_cpu_act_dtype_ok(fk_dtype t) { return t == FK_F32 || t == FK_BF16; }
/* What the bf16 products' dtype arguments (fk_cpu_gemm_bf16_cat, _multi)
 * say for a tiled bf16 tensor (tensor.h's FK_LAYOUT_TILES, backend.h's
 * "tiled bf16 activations"): a value no tensor has. */
#define FK_CPU_TILES ((fk_dtype)(FK_DTYPE_COUNT + 1))
static inline fk_dtype fk_cpu_gemm_dt(const fk_tensor *t) {
    return t->layout == FK_LAYOUT_TILES ? FK_CPU_TILES : t->dtype;
}
static inline bool fk_cpu_gemm_dtype_ok(fk_dtype t) {
    return fk_cpu_act_dtype_ok(t) || t == FK_CPU_TILES;
}
/* Whether operand i of op (srcs as in supports()) may be tiled: bf16 on a
 * bf16 kernel in bf16 mode (fk_cpu_bf16_io_ok); y or x of linear and
 * linear_act; y, x1 or x2 of linear_cat with an x1 of FK_TILE_KC-multiple
 * columns; y of layernorm_modulate; out of the AMX attention. */
bool fk_cpu_tiles_ok(const fk_backend *be, fk_op op, const fk_tensor *const *srcs, int n, int i);
/* A tiled bf16 tensor (rows, cols) from / to f32 rows (the widening and
 * rounding of the ops' last resort: exact / nearest-even; dst with row
 * stride ldd; the padding columns zeroed, the padding rows left as they
 * are). */
void fk_cpu_untile_f32(float *dst, int64_t ldd, const fk_tensor *t);
void fk_cpu_tile_from_f32(fk_tensor *t, const float *src);
/* Columns [c0, c0 + n) of row m of a tiled bf16 tensor from f32 row (n
 * values, rounded as the products round x; c0 a multiple of 32, n too
 * unless the part ends the row, whose padding columns become zeros). */
void fk_cpu_tile_row(fk_tensor *t, int64_t m, int64_t c0, const float *row, int64_t n);

/* Linears with fewer rows stay on the f32 path in bf16 mode (weight-bound:
 * packing the weights costs more than the bf16 product saves; measured
 * crossover at M ≈ 8 for K = N = 3072). */
#define FK_CPU_BF16_MIN_M 16

/* "f32", "avx512bf16", "amx". */
const char *fk_cpu_bf16_kernel_name(fk_cpu_bf16_kernel k);
/* True when k can run here (AMX: also asks Linux for the tile permission). */
bool fk_cpu_bf16_kernel_available(fk_cpu_bf16_kernel k);
/* The default kernel: AMX when available (and permitted), else NONE. */
fk_cpu_bf16_kernel fk_cpu_bf16_kernel_detect(void);

/* fk_cpu_gemm with bf16 operands on the backend's bf16 kernel. False (c
 * untouched) when there is no bf16 kernel, K == 0, or the workspace could
 * not grow: the caller then uses fk_cpu_gemm. */
bool fk_cpu_gemm_bf16(fk_backend *be, int64_t M, int64_t N, int64_t K, const float *a,
                      int64_t lda, const void *b, fk_dtype bdt, int64_t ldb, const void *bias,
                      fk_dtype bias_dt, float *c, int64_t ldc);
/* fk_cpu_gemm_bf16, then c = act(c) applied panel by panel as c is stored
 * (the bits of fk_cpu_gemm_bf16 followed by the activation op). */
bool fk_cpu_gemm_bf16_act(fk_backend *be, int64_t M, int64_t N, int64_t K, const float *a,
                          int64_t lda, const void *b, fk_dtype bdt, int64_t ldb, const void *bias,
                          fk_dtype bias_dt, float *c, int64_t ldc, fk_act act);
/* fk_cpu_gemm_bf16_act with A = [a | a2]: columns [0, k1) of each row from
 * a (row stride lda), columns [k1, K) from a2 (row stride lda2); a2 NULL:
 * all from a. The bits of the product on the concatenated rows. Activation
 * dtypes (fk_cpu_act_dtype_ok): a, a2 f32 (rounded to bf16 while packed) or
 * bf16 (copied: the same bits as f32 operands that round to those values);
 * c f32, or bf16 (each f32 result, after bias and act, rounded to
 * nearest-even: the bf16 rounding the next product would apply). FK_CPU_TILES
 * (fk_cpu_gemm_dt): c tiled; a, a2 or both tiled (with a2, k1 a multiple of
 * FK_TILE_KC): read as packed, only the other part packed. */
bool fk_cpu_gemm_bf16_cat(fk_backend *be, int64_t M, int64_t N, int64_t K, const void *a,
                          fk_dtype adt, int64_t lda, const void *a2, fk_dtype a2dt, int64_t lda2,
                          int64_t k1, const void *b, fk_dtype bdt, int64_t ldb, const void *bias,
                          fk_dtype bias_dt, void *c, fk_dtype cdt, int64_t ldc, fk_act act);
/* The QK norm and RoPE that a bf16 product applies to its output rows as
 * it stores them (linear_rmsnorm_rope): the heads (D columns each) of row m
 * go through fk_cpu_rmsnorm_rope_heads (cpu_ew.h) with the kernels k, scale
 * (D) f32 and the rotation of pe + m·2D ((D/2, 2, 2) f32), after the bias
 * and the activation. D even and dividing FK_CPU_ROPE_POST_NC (an output
 * panel then holds whole heads). */
#define FK_CPU_ROPE_POST_NC 256
typedef struct fk_cpu_rope_post {
    const struct fk_ew_kernels *k;
    const float *scale, *pe;
    int64_t D;
    float eps;
} fk_cpu_rope_post;
/* n products of the same a (M, K) of dtype adt, row stride lda: c[i]
 * (M, N[i]) of dtype cdt[i], contiguous, = act[i](a · b[i]ᵀ + bias[i]) with
 * b[i] (N[i], K) contiguous of dtype bdt[i], bias[i] (N[i]) or NULL: each
 * with the bits of fk_cpu_gemm_bf16_cat on it; a is packed once for all. */
bool fk_cpu_gemm_bf16_multi(fk_backend *be, int n, int64_t M, int64_t K, const void *a,
                            fk_dtype adt, int64_t lda, const int64_t *N, const void *const *b,
                            const fk_dtype *bdt, const void *const *bias,
                            const fk_dtype *bias_dt, void *const *c, const fk_dtype *cdt,
                            const fk_act *act);
/* c (M, N) row-major, f32 or bf16 (cdt) = a (M, K) · bᵀ + bias, the rows
 * then normed and rotated by post in the output stage (linear_rmsnorm_rope):
 * fk_cpu_gemm_bf16_cat on one contiguous a (adt: f32, bf16 or
 * FK_CPU_TILES), b (N, K) contiguous, N a multiple of post->D. */
bool fk_cpu_gemm_bf16_rope(fk_backend *be, int64_t M, int64_t N, int64_t K, const void *a,
                           fk_dtype adt, const void *b, fk_dtype bdt, const void *bias,
                           fk_dtype bias_dt, void *c, fk_dtype cdt,
                           const fk_cpu_rope_post *post);
/* be->attention in bf16 mode with AMX: flash attention on tiles for
 * non-causal attention, f32 bias or none, D a multiple of 32 up to 512; every other case
 * (and machines without AMX) runs fk_cpu_attention. */
void fk_cpu_attention_bf16(fk_backend *be, fk_tensor *out, const fk_tensor *q, const fk_tensor *k,
                           const fk_tensor *v, const fk_tensor *bias, float scale, bool causal);
/* conv2d (arguments validated by fk_cpu_conv2d) with x and w rounded to
 * bf16 and f32 accumulation on AMX tiles (cpu_conv_amx.c), bias in f32;
 * bitwise identical for any thread count. False (y untouched) when the
 * backend's bf16 kernel is not AMX or memory is short: the caller then runs
 * the f32 path. */
bool fk_cpu_conv2d_bf16(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                        const fk_tensor *b, int stride, const int pad[4]);
/* Grow the bf16 workspace (impl->bf16_ws) to at least `need` bytes; its
 * contents are not kept. False when out of memory (then it is empty). */
bool fk_cpu_bf16_ws_reserve(fk_cpu_impl *impl, uint64_t need);
/* be->cache_weight: in bf16 mode with a bf16 kernel, a pre-packed copy of
 * w (N, K) (round32(N)·round32(K) bf16, 2 MB-aligned) that every later bf16
 * linear with the same weight (pointer, dtype, shape) reads instead of
 * packing panels per call: the same bits, ~10% faster products. 0 when not
 * cached (f32 mode, no bf16 kernel, small w, out of memory). */
size_t fk_cpu_cache_weight(fk_backend *be, const fk_tensor *w);
/* be->uncache_weights: free every cached weight. */
void fk_cpu_uncache_weights(fk_backend *be);
/* Bytes held by the weight cache. */
size_t fk_cpu_wcache_bytes(const fk_backend *be);
/* Free the cache (destroy). */
void fk_cpu_wcache_free(fk_cpu_impl *impl);
/* Free the bf16 workspace (destroy). */
void fk_cpu_bf16_release(fk_cpu_impl *impl);

/* ---- helpers ---- */

/* n elements of tensor t starting at element `offset`, converted to f32. */
void fk_cpu_load_f32(float *dst, const fk_tensor *t, int64_t offset, int64_t n);
/* True for dtypes a weight / scale / bias may have (F64, F32, F16, BF16, F8_*). */
bool fk_cpu_weight_dtype_ok(fk_dtype t);

/* exp(x) in plain f32 arithmetic and integer selects, no branches (loops
 * over it vectorize), the same code on every kernel path: softmax weights in
 * attention (x = score − running max <= 0) and the sigmoid of the
 * activations. Error <= 2 ulp where the result is a normal float (measured
 * 1.02 ulp over every f32; test_ops_cpu checks a sample); below −87.33654
 * (e^x < FLT_MIN) it returns 0, above 88.37626 +Inf (the true value runs to
 * 88.72); NaN stays NaN.
 * exp(x) = 2^n·exp(r), n = round(x/ln 2) (by adding 1.5·2^23), r = x − n·ln 2
 * in two parts (the high part has 16 significant bits, so n·LN2_HI is exact),
 * exp(r) by its Taylor polynomial of degree 7 (|r| <= 0.347: truncation
 * below 0.1 ulp). */
static inline float fk_cpu_exp(float x) {
    const uint32_t ulo = 0xc2aeac50u; /* -87.33654f: exp() < FLT_MIN below */
    const uint32_t uhi = 0x42b0c0a5u; /* 88.37626f: exp() > FLT_MAX above */
    uint32_t ux;
    memcpy(&ux, &x, sizeof(ux));
    /* computed for every input (no data-dependent control flow); out-of-range
     * inputs are replaced by integer selects at the end */
    float xc = x;
    float tm = xc * 1.44269504088896341f + 12582912.0f;
    float nf = tm - 12582912.0f; /* x / ln 2 rounded to an integer */
    uint32_t utm;
    memcpy(&utm, &tm, sizeof(utm));
    uint32_t two_n_bits = (utm - 0x4b400000u + 127u) << 23; /* 2^n, n in [-126, 127] */
    float r = (xc - nf * 0.693145751953125f) - nf * 1.428606765330187045e-06f;
    float q = 1.0f / 5040.0f;
    q = q * r + 1.0f / 720.0f;
    q = q * r + 1.0f / 120.0f;
    q = q * r + 1.0f / 24.0f;
    q = q * r + 1.0f / 6.0f;
    q = q * r + 0.5f;
    float er = ((r * r) * q + r) + 1.0f;
    float two_n;
    memcpy(&two_n, &two_n_bits, sizeof(two_n));
    float y = er * two_n;
    uint32_t uy;
    memcpy(&uy, &y, sizeof(uy));
    /* selects as bit masks (negative floats order by magnitude as unsigned) */
    uint32_t below = 0u - (uint32_t)(ux > ulo);                        /* and -NaN */
    uint32_t above = 0u - (uint32_t)((ux > uhi) & (ux < 0x80000000u)); /* and +NaN */
    uint32_t nan = 0u - (uint32_t)((ux & 0x7fffffffu) > 0x7f800000u);
    uy = uy & ~(below | above);
    uy = uy | (above & 0x7f800000u);
    uy = (uy & ~nan) | (ux & nan);
    memcpy(&y, &uy, sizeof(y));
    return y;
}

/* ---- activation rows ---- */

/* y[i] = act(x[i]) for i < n (FK_ACT_NONE: a copy), with the bits of the
 * activation ops on every ISA path; y may alias x. Serial: callable from
 * inside a parallel region (the bf16 linear applies it to its output
 * panels). */
void fk_cpu_act_row(fk_cpu_isa isa, fk_act act, float *y, const float *x, int64_t n);

/* ---- ops (the table entries) ---- */

void fk_cpu_linear(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                   const fk_tensor *b);
void fk_cpu_layernorm(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                      const fk_tensor *b, float eps);
void fk_cpu_linear_act(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                       const fk_tensor *b, fk_act act);
void fk_cpu_linear_multi(fk_backend *be, int n, fk_tensor *const *y, const fk_tensor *x,
                         const fk_tensor *const *w, const fk_tensor *const *b, const fk_act *act);
void fk_cpu_linear_cat(fk_backend *be, fk_tensor *y, const fk_tensor *x1, const fk_tensor *x2,
                       const fk_tensor *w, const fk_tensor *b, fk_tensor *tmp);
void fk_cpu_layernorm_modulate(fk_backend *be, fk_tensor *y, const fk_tensor *x,
                               const fk_tensor *shift, const fk_tensor *scale, float eps);
void fk_cpu_rmsnorm_rope(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *scale,
                         const fk_tensor *pe, float eps);
void fk_cpu_linear_rmsnorm_rope(fk_backend *be, fk_tensor *y, const fk_tensor *x,
                                const fk_tensor *w, const fk_tensor *b, const fk_tensor *scale,
                                const fk_tensor *pe, float eps);
void fk_cpu_rmsnorm(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *scale,
                    float eps);
void fk_cpu_silu(fk_backend *be, fk_tensor *y, const fk_tensor *x);
void fk_cpu_gelu_tanh(fk_backend *be, fk_tensor *y, const fk_tensor *x);
void fk_cpu_gelu_quick(fk_backend *be, fk_tensor *y, const fk_tensor *x);
void fk_cpu_softmax(fk_backend *be, fk_tensor *y, const fk_tensor *x);
void fk_cpu_attention(fk_backend *be, fk_tensor *out, const fk_tensor *q, const fk_tensor *k,
                      const fk_tensor *v, const fk_tensor *bias, float scale, bool causal);
void fk_cpu_rope(fk_backend *be, fk_tensor *x, const fk_tensor *pe);
void fk_cpu_add(fk_backend *be, fk_tensor *y, const fk_tensor *a, const fk_tensor *b);
void fk_cpu_mul(fk_backend *be, fk_tensor *y, const fk_tensor *a, const fk_tensor *b);
void fk_cpu_modulate(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *shift,
                     const fk_tensor *scale);
void fk_cpu_gated_add(fk_backend *be, fk_tensor *x, const fk_tensor *y, const fk_tensor *gate);
void fk_cpu_concat_rows(fk_backend *be, fk_tensor *out, const fk_tensor *a, const fk_tensor *b);
void fk_cpu_split_rows(fk_backend *be, fk_tensor *a, fk_tensor *b, const fk_tensor *in);
void fk_cpu_copy_cols(fk_backend *be, fk_tensor *dst, int64_t dc0, const fk_tensor *src,
                      int64_t sc0, int64_t n);

/* Defined in cpu_conv.c (another file). */
void fk_cpu_conv2d(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                   const fk_tensor *b, int stride, const int pad[4]);
void fk_cpu_group_norm(fk_backend *be, fk_tensor *y, const fk_tensor *x, int groups,
                       const fk_tensor *w, const fk_tensor *b, float eps);
void fk_cpu_upsample_nearest2x(fk_backend *be, fk_tensor *y, const fk_tensor *x);

/* Defined in cpu_layout.c. */
void fk_cpu_transpose(fk_backend *be, fk_tensor *y, const fk_tensor *x);
void fk_cpu_scale_cols(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *s);

#endif /* FK_CPU_H */
