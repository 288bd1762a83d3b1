/* cpu_linear: blocked GEMM driver (packing, blocking, threading), the
 * portable micro-kernel, and the linear op. See cpu_gemm.h. */
#include "backend/cpu/cpu_gemm.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

/* ---- portable micro-kernel ----
 * fmaf() is the same correctly rounded fused multiply-add the SIMD kernels
 * use, so this kernel gives the same bits (it is slow without hardware FMA). */

#define FK_PORT_MR 4
#define FK_PORT_NR 16

static void fk_gemm_kernel_portable_fn(int64_t kc, const float *ap, const float *bp, int64_t ldb,
                                       float *c, int64_t ldc, bool accumulate) {
    float acc[FK_PORT_MR][FK_PORT_NR]; /* (MR, NR) */
    for (int i = 0; i < FK_PORT_MR; i++)
        for (int j = 0; j < FK_PORT_NR; j++) acc[i][j] = accumulate ? c[i * ldc + j] : 0.0f;
    for (int64_t k = 0; k < kc; k++) {
        const float *a = ap + k * FK_PORT_MR; /* (MR) */
        const float *b = bp + k * ldb; /* (NR) */
        for (int i = 0; i < FK_PORT_MR; i++) {
            float ai = a[i];
            for (int j = 0; j < FK_PORT_NR; j++) acc[i][j] = fmaf(ai, b[j], acc[i][j]);
        }
    }
    for (int i = 0; i < FK_PORT_MR; i++)
        for (int j = 0; j < FK_PORT_NR; j++) c[i * ldc + j] = acc[i][j];
}

static const fk_gemm_kernel fk_gemm_portable = {FK_PORT_MR, FK_PORT_NR, fk_gemm_kernel_portable_fn};

const fk_gemm_kernel *fk_gemm_kernel_for(fk_cpu_isa isa) {
    const fk_gemm_kernel *k = NULL;
    if (isa == FK_CPU_ISA_AVX512) k = fk_gemm_kernel_avx512();
    else if (isa == FK_CPU_ISA_AVX2) k = fk_gemm_kernel_avx2();
    return k ? k : &fk_gemm_portable;
}

static void fk_gemm_pack_a_portable(float *ap, const float *a, int64_t lda, int64_t rows,
                                    int64_t kc) {
    fk_gemm_pack_a_panel(ap, a, lda, rows, kc, FK_PORT_MR);
}

static void fk_gemm_pack_b_portable(float *bp, const void *b, fk_dtype bdt, int64_t ldb,
                                    int64_t cols, int64_t kc, float *tmp, const void *next) {
    (void)next;
    fk_gemm_pack_b_panel(bp, b, bdt, ldb, cols, kc, FK_PORT_NR, tmp);
}

static const fk_gemm_driver fk_gemm_driver_portable = {
    {FK_PORT_MR, FK_PORT_NR, fk_gemm_kernel_portable_fn}, fk_gemm_pack_a_portable,
    fk_gemm_pack_b_portable};

const fk_gemm_driver *fk_gemm_driver_for(fk_cpu_isa isa) {
    const fk_gemm_driver *d = NULL;
    if (isa == FK_CPU_ISA_AVX512) d = fk_gemm_driver_avx512();
    else if (isa == FK_CPU_ISA_AVX2) d = fk_gemm_driver_avx2();
    return d ? d : &fk_gemm_driver_portable;
}

/* ---- packing ---- */

void fk_gemm_pack_a_panel(float *ap, const float *a, int64_t lda, int64_t rows, int64_t kc, int mr) {
    for (int64_t i = 0; i < rows; i++) {
        const float *src = a + i * lda;
        for (int64_t k = 0; k < kc; k++) ap[k * mr + i] = src[k];
    }
    for (int64_t i = rows; i < mr; i++)
        for (int64_t k = 0; k < kc; k++) ap[k * mr + i] = 0.0f;
}

void fk_gemm_pack_b_panel(float *bp, const void *b, fk_dtype bdt, int64_t ldb, int64_t cols,
                          int64_t kc, int nr, float *tmp) {
    /* rows of this panel as f32: (cols, kc) with row stride ld */
    const float *rows = (const float *)b;
    int64_t ld = ldb;
    if (bdt != FK_F32) {
        size_t esz = fk_dtype_size(bdt);
        for (int64_t j = 0; j < cols; j++)
            fk_convert_to_f32(tmp + j * kc, (const char *)b + (size_t)(j * ldb) * esz, bdt,
                              (size_t)kc);
        rows = tmp;
        ld = kc;
    }
    for (int64_t k = 0; k < kc; k++) {
        float *d = bp + k * nr;
        for (int64_t j = 0; j < cols; j++) d[j] = rows[j * ld + k];
        for (int64_t j = cols; j < nr; j++) d[j] = 0.0f;
    }
}

void fk_gemm_pack_a(float *ap, const float *a, int64_t lda, int64_t mc, int64_t kc, int mr) {
    for (int64_t p = 0; p * mr < mc; p++) {
        int64_t rows = mc - p * mr < mr ? mc - p * mr : mr;
        fk_gemm_pack_a_panel(ap + p * kc * mr, a + p * mr * lda, lda, rows, kc, mr);
    }
}

void fk_gemm_pack_b(float *bp, const void *b, fk_dtype bdt, int64_t ldb, int64_t nc, int64_t kc,
                    int nr, float *tmp) {
    size_t esz = fk_dtype_size(bdt);
    for (int64_t p = 0; p * nr < nc; p++) {
        int64_t cols = nc - p * nr < nr ? nc - p * nr : nr;
        fk_gemm_pack_b_panel(bp + p * kc * nr, (const char *)b + (size_t)(p * nr * ldb) * esz, bdt,
                             ldb, cols, kc, nr, tmp);
    }
}

void fk_gemm_pack_bt(float *bp, const float *v, int64_t ldv, int64_t nc, int64_t kc, int nr) {
    for (int64_t p = 0; p * nr < nc; p++) {
        float *dst = bp + p * kc * nr; /* (kc, nr) */
        int64_t cols = nc - p * nr < nr ? nc - p * nr : nr;
        for (int64_t k = 0; k < kc; k++) {
            const float *src = v + k * ldv + p * nr;
            float *d = dst + k * nr;
            for (int64_t j = 0; j < cols; j++) d[j] = src[j]; /* short rows: no memcpy call */
            for (int64_t j = cols; j < nr; j++) d[j] = 0.0f;
        }
    }
}

/* ---- macro-kernel ---- */

/* Shared by both block variants: panel p of B at b + p·pstride, rows ldb apart. */
static void fk_gemm_block_impl(const fk_gemm_kernel *kern, int64_t mc, int64_t nc, int64_t kc,
                               const float *ap, const float *b, int64_t pstride, int64_t ldb,
                               float *c, int64_t ldc, bool accumulate) {
    const int mr = kern->mr, nr = kern->nr;
    float tile[FK_GEMM_MR_MAX * FK_GEMM_NR_MAX] __attribute__((aligned(64))); /* (mr, nr) */
    for (int64_t jr = 0; jr < nc; jr += nr) {
        int64_t nb = nc - jr < nr ? nc - jr : nr;
        const float *bpp = b + (jr / nr) * pstride; /* (kc, nr), row stride ldb */
        for (int64_t ir = 0; ir < mc; ir += mr) {
            int64_t mb = mc - ir < mr ? mc - ir : mr;
            const float *app = ap + ir * kc; /* panel ir / mr: (kc, mr) */
            float *cc = c + ir * ldc + jr;
            if (mb == mr && nb == nr) {
                kern->fn(kc, app, bpp, ldb, cc, ldc, accumulate);
                continue;
            }
            if (accumulate)
                for (int64_t i = 0; i < mb; i++) memcpy(tile + i * nr, cc + i * ldc, (size_t)nb * 4);
            kern->fn(kc, app, bpp, ldb, tile, nr, accumulate);
            for (int64_t i = 0; i < mb; i++) memcpy(cc + i * ldc, tile + i * nr, (size_t)nb * 4);
        }
    }
}

void fk_gemm_block(const fk_gemm_kernel *kern, int64_t mc, int64_t nc, int64_t kc,
                   const float *ap, const float *bp, float *c, int64_t ldc, bool accumulate) {
    fk_gemm_block_impl(kern, mc, nc, kc, ap, bp, kc * kern->nr, kern->nr, c, ldc, accumulate);
}

void fk_gemm_block_kmajor_b(const fk_gemm_kernel *kern, int64_t mc, int64_t nc, int64_t kc,
                            const float *ap, const float *b, int64_t ldb, float *c, int64_t ldc,
                            bool accumulate) {
    FK_ASSERT(nc % kern->nr == 0);
    fk_gemm_block_impl(kern, mc, nc, kc, ap, b, kern->nr, ldb, c, ldc, accumulate);
}

/* ---- driver ----
 *
 * Each thread owns a rectangle of C (rows [m0, m1) × columns [n0, n1); for
 * the large products all rows and a slice of the columns, so it converts and
 * packs only its own weights) and walks it as
 *
 *   for jc (nc <= LIN_NC columns):  for pc (kc <= LIN_KC of the reduction):
 *     pack the B block (nc × kc) into micro-panels of NR, widening the dtype
 *     for ir (MR rows):
 *       pack the A micro-panel (MR × kc)                     -> stays in L1
 *       for jr (NR columns): the MR × NR tile; its B micro-panel streams
 *         from L2, where the B block stays
 *
 * Consecutive tiles walk along rows of C. C is reloaded once per KC block:
 * the chain of each element continues through memory in k order, which is
 * what makes every blocking (and every thread split) give the same bits.
 * Bias is added to a tile right after its last KC block, while it is in L1.
 * A is repacked once per NC block of columns, B packed once in all.
 *
 * Memory latency is hidden by software prefetch (measured on Sapphire
 * Rapids, M = 1024, K = N = 3072, one thread): the next A micro-panel's rows
 * are fetched a few lines per tile during the current row of tiles (A
 * packing 3.6% -> 1.6% of the time; issuing a whole panel's prefetches at
 * once stalls on the fill buffers instead), C two tiles ahead (0-3%), the
 * next B micro-panel's rows while one is packed. */

typedef struct fk_gemm_args {
    int64_t M, N, K;
    const float *a; /* (M, K), row stride lda */
    int64_t lda;
    const void *b; /* (N, K) dtype bdt, row stride ldb */
    fk_dtype bdt;
    int64_t ldb;
    const void *bias; /* (N) dtype bias_dt, or NULL */
    fk_dtype bias_dt;
    float *c; /* (M, N), row stride ldc */
    int64_t ldc;
    int64_t nc_max; /* columns per B block (a multiple of NR, <= FK_GEMM_LIN_NC) */
} fk_gemm_args;

/* Rows of A (row stride ld floats, kc floats each) fetched towards L2 a
 * few lines per step, spread evenly over `steps` steps (prefetcht1: 4% faster
 * than prefetcht0, which competes with the kernel for L1 fill buffers). */
typedef struct fk_gemm_pf {
    const float *base;
    int64_t ld, lpr, lines, done, per_step;
} fk_gemm_pf;

static inline void fk_gemm_pf_init(fk_gemm_pf *p, const float *base, int64_t rows, int64_t ld,
                                   int64_t kc, int64_t steps) {
    p->base = base;
    p->ld = ld;
    p->lpr = (kc + 15) / 16; /* 64-byte lines per row */
    p->lines = base ? rows * p->lpr : 0;
    p->done = 0;
    p->per_step = steps > 0 ? (p->lines + steps - 1) / steps : p->lines;
}

static inline void fk_gemm_pf_step(fk_gemm_pf *p) {
    for (int64_t q = 0; q < p->per_step && p->done < p->lines; q++, p->done++)
        __builtin_prefetch(p->base + (p->done / p->lpr) * p->ld + (p->done % p->lpr) * 16, 0, 2);
}

/* One MR × NR tile of c (rows × cols of it valid) = (accumulate ? c : 0) +
 * ap · bp, then + bias when bias != NULL (the last KC block). Partial tiles
 * go through `tile` (MR × NR). */
static inline void fk_gemm_tile(const fk_gemm_kernel *kern, int64_t kc, const float *ap,
                                const float *bp, float *cc, int64_t ldc, int64_t rows,
                                int64_t cols, bool acc, const float *bias, float *tile) {
    const int mr = kern->mr, nr = kern->nr;
    float *ct = cc;
    int64_t ldt = ldc;
    if (rows < mr || cols < nr) {
        ct = tile, ldt = nr;
        if (acc)
            for (int64_t i = 0; i < rows; i++) memcpy(tile + i * nr, cc + i * ldc, (size_t)cols * 4);
    }
    kern->fn(kc, ap, bp, nr, ct, ldt, acc);
    if (bias)
        for (int64_t i = 0; i < rows; i++)
            for (int64_t n = 0; n < cols; n++) ct[i * ldt + n] += bias[n];
    if (ct == tile)
        for (int64_t i = 0; i < rows; i++) memcpy(cc + i * ldc, tile + i * nr, (size_t)cols * 4);
}

/* Rows [m0, m1) × columns [n0, n1) of c, with one thread's scratch. */
static void fk_gemm_task(const fk_gemm_driver *drv, float *scratch, const fk_gemm_args *g,
                         int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    const fk_gemm_kernel *kern = &drv->kern;
    const int mr = kern->mr, nr = kern->nr;
    float *bp = scratch;                               /* B block: panels (kc, nr) */
    float *ap = bp + FK_GEMM_LIN_KC * FK_GEMM_LIN_NC;  /* (kc, mr) A micro-panel */
    float *tmp = ap + FK_GEMM_LIN_KC * FK_GEMM_MR_MAX; /* (nr, kc) rows of B as f32 */
    float *bb = tmp + FK_GEMM_LIN_KC * FK_GEMM_NR_MAX; /* (nc) bias as f32 */
    float tile[FK_GEMM_MR_MAX * FK_GEMM_NR_MAX] __attribute__((aligned(64))); /* (mr, nr) */
    const size_t esz = fk_dtype_size(g->bdt);
    const int64_t K = g->K, ldc = g->ldc, lda = g->lda, ldb = g->ldb;
    for (int64_t jc = n0; jc < n1; jc += g->nc_max) {
        const int64_t nc = n1 - jc < g->nc_max ? n1 - jc : g->nc_max;
        const int64_t ntile = (nc + nr - 1) / nr; /* tiles per row of tiles */
        if (g->bias)
            fk_convert_to_f32(bb, (const char *)g->bias + (size_t)jc * fk_dtype_size(g->bias_dt),
                              g->bias_dt, (size_t)nc);
        if (K == 0) { /* empty chains: +0, then the bias */
            for (int64_t m = m0; m < m1; m++) {
                float *cr = g->c + m * ldc + jc;
                for (int64_t n = 0; n < nc; n++) cr[n] = g->bias ? 0.0f + bb[n] : 0.0f;
            }
            continue;
        }
        for (int64_t pc = 0; pc < K; pc += FK_GEMM_LIN_KC) {
            const int64_t kc = K - pc < FK_GEMM_LIN_KC ? K - pc : FK_GEMM_LIN_KC;
            const bool acc = pc > 0;
            const float *bias = pc + kc == K && g->bias ? bb : NULL;
            for (int64_t jr = 0; jr < nc; jr += nr) {
                const int64_t cols = nc - jr < nr ? nc - jr : nr;
                const char *panel = (const char *)g->b + (size_t)((jc + jr) * ldb + pc) * esz;
                drv->pack_b(bp + jr * kc, panel, g->bdt, ldb, cols, kc, tmp,
                            jr + 2 * nr <= nc ? panel + (size_t)(nr * ldb) * esz : NULL);
            }
            for (int64_t ir = m0; ir < m1; ir += mr) {
                const int64_t rows = m1 - ir < mr ? m1 - ir : mr;
                drv->pack_a(ap, g->a + ir * lda + pc, lda, rows, kc);
                fk_gemm_pf apf; /* the next A micro-panel, over this row of tiles */
                const int64_t nrows = m1 - ir - mr < mr ? m1 - ir - mr : mr;
                fk_gemm_pf_init(&apf, nrows > 0 ? g->a + (ir + mr) * lda + pc : NULL, nrows, lda,
                                kc, ntile);
                float *crow = g->c + ir * ldc + jc; /* (rows, nc), row stride ldc */
                for (int64_t jr = 0; jr < nc; jr += nr) {
                    fk_gemm_pf_step(&apf);
                    if (jr + 3 * nr <= nc) /* C of the tile two ahead, towards L2 */
                        for (int64_t i = 0; i < rows; i++)
                            for (int64_t n = 0; n < nr; n += 16)
                                __builtin_prefetch(crow + i * ldc + jr + 2 * nr + n, 1, 2);
                    fk_gemm_tile(kern, kc, ap, bp + jr * kc, crow + jr, ldc, rows,
                                 nc - jr < nr ? nc - jr : nr, acc, bias ? bias + jr : NULL, tile);
                }
            }
        }
    }
}

/* Columns per B block: the block (kc × nc floats) takes at most half of
 * the L2 cache when its size is known (2 MiB per core on Sapphire Rapids:
 * the full FK_GEMM_LIN_NC), else FK_GEMM_LIN_NC. Never changes a result. */
static int64_t fk_gemm_nc_max(int nr) {
    int64_t nc = FK_GEMM_LIN_NC;
#ifdef _SC_LEVEL2_CACHE_SIZE
    long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    if (l2 > 0) {
        int64_t fit = (int64_t)l2 / 2 / (FK_GEMM_LIN_KC * 4) / nr * nr;
        if (fit < nc) nc = fit < 4 * nr ? 4 * nr : fit;
    }
#endif
    return nc;
}

void fk_cpu_gemm(const fk_backend *be, int64_t M, int64_t N, int64_t K, const float *a,
                 int64_t lda, const void *b, fk_dtype bdt, int64_t ldb, const void *bias,
                 fk_dtype bias_dt, float *c, int64_t ldc) {
    _Static_assert(FK_GEMM_LIN_KC * FK_GEMM_LIN_NC + FK_GEMM_LIN_KC * FK_GEMM_MR_MAX +
                           FK_GEMM_LIN_KC * FK_GEMM_NR_MAX + FK_GEMM_LIN_NC <=
                       FK_CPU_SCRATCH_FLOATS,
                   "GEMM scratch exceeds the per-thread scratch");
    if (M <= 0 || N <= 0) return;
    /* few rows: weights read in place, same bits (cpu_gemv.c) */
    if (M <= FK_CPU_GEMV_MAX_M &&
        fk_cpu_gemv(be, M, N, K, a, lda, b, bdt, ldb, bias, bias_dt, c, ldc))
        return;
    fk_cpu_not_nested();
    const fk_cpu_impl *impl = fk_cpu_impl_of(be);
    const fk_gemm_driver *drv = fk_gemm_driver_for(impl->isa);
    const fk_gemm_kernel *kern = &drv->kern;
    FK_ASSERT(kern->mr <= FK_GEMM_MR_MAX && kern->nr <= FK_GEMM_NR_MAX &&
              FK_GEMM_LIN_NC % kern->nr == 0);
    fk_gemm_args g = {M, N, K, a, lda, b, bdt, ldb, bias, bias_dt, c, ldc,
                      fk_gemm_nc_max(kern->nr)};

    /* Split the output into gn column chunks (at least 4 panels each, so B is
     * converted once) × gm row chunks (when there are too few columns). The
     * split never changes a result: each element is computed the same way. */
    int nt = impl->n_threads;
    int64_t np = (N + kern->nr - 1) / kern->nr, mp = (M + kern->mr - 1) / kern->mr;
    int64_t gn = (np + 3) / 4 < nt ? (np + 3) / 4 : nt;
    int64_t gm = (nt + gn - 1) / gn < mp ? (nt + gn - 1) / gn : mp;
    if ((double)M * (double)N * (double)K < 65536.0) gn = gm = 1; /* not worth a fork */
    int64_t ntasks = gn * gm;
    int threads = ntasks < nt ? (int)ntasks : nt;
    (void)threads;
    FK_CPU_PARALLEL_FOR(threads)
    for (int64_t t = 0; t < ntasks; t++) {
        int64_t tn = t % gn, tm = t / gn;
        int64_t n0 = np * tn / gn * kern->nr, n1 = np * (tn + 1) / gn * kern->nr;
        int64_t m0 = mp * tm / gm * kern->mr, m1 = mp * (tm + 1) / gm * kern->mr;
        if (n1 > N) n1 = N;
        if (m1 > M) m1 = M;
        if (n0 < n1 && m0 < m1)
            fk_gemm_task(drv, fk_cpu_scratch(be, fk_cpu_thread_id()), &g, m0, m1, n0, n1);
    }
}

/* ---- linear ---- */

void fk_cpu_linear(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                   const fk_tensor *b) {
    FK_ASSERT(fk_cpu_act_dtype_ok(y->dtype) && fk_cpu_act_dtype_ok(x->dtype));
    FK_ASSERT(w->ndim == 2 && fk_cpu_weight_dtype_ok(w->dtype));
    int64_t M = fk_tensor_rows(x), K = fk_tensor_cols(x), N = w->shape[0]; /* x (M, K), w (N, K) */
    FK_ASSERT(w->shape[1] == K);
    FK_ASSERT(fk_tensor_rows(y) == M && fk_tensor_cols(y) == N); /* y (M, N) */
    FK_ASSERT(y->data != x->data);
    if (b) FK_ASSERT(fk_tensor_numel(b) == N && fk_cpu_weight_dtype_ok(b->dtype)); /* b (N) */
    if (y->dtype != FK_F32 || x->dtype != FK_F32) { /* bf16 activations */
        fk_cpu_linear_io(be, y, x, NULL, w, b, FK_ACT_NONE);
        return;
    }
    /* bf16 mode (cpu_amx.c): large enough products on bf16 hardware */
    if (fk_cpu_impl_of(be)->precision == FK_PREC_BF16 && M >= FK_CPU_BF16_MIN_M &&
        fk_cpu_gemm_bf16(be, M, N, K, x->data, K, w->data, w->dtype, K, b ? b->data : NULL,
                         b ? b->dtype : FK_F32, y->data, N))
        return;
    fk_cpu_gemm(be, M, N, K, x->data, K, w->data, w->dtype, K, b ? b->data : NULL,
                b ? b->dtype : FK_F32, y->data, N);
}
