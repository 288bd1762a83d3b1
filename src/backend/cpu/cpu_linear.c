/* cpu_linear: blocked GEMM driver (packing, blocking, threading), the
 * portable micro-kernel, and the linear op. See cpu_gemm.h. */
#include "backend/cpu/cpu_gemm.h"

#include <math.h>
#include <string.h>

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

/* ---- packing ---- */

void fk_gemm_pack_a(float *ap, const float *a, int64_t lda, int64_t mc, int64_t kc, int mr) {
    for (int64_t p = 0; p * mr < mc; p++) {
        float *dst = ap + p * kc * mr; /* (kc, mr) */
        int64_t rows = mc - p * mr < mr ? mc - p * mr : mr;
        for (int64_t i = 0; i < rows; i++) {
            const float *src = a + (p * mr + i) * lda;
            for (int64_t k = 0; k < kc; k++) dst[k * mr + i] = src[k];
        }
        for (int64_t i = rows; i < mr; i++)
            for (int64_t k = 0; k < kc; k++) dst[k * mr + i] = 0.0f;
    }
}

void fk_gemm_pack_b(float *bp, const void *b, fk_dtype bdt, int64_t ldb, int64_t nc, int64_t kc,
                    int nr, float *tmp) {
    size_t esz = fk_dtype_size(bdt);
    for (int64_t p = 0; p * nr < nc; p++) {
        float *dst = bp + p * kc * nr; /* (kc, nr) */
        int64_t cols = nc - p * nr < nr ? nc - p * nr : nr;
        /* rows of this panel as f32: tmp (cols, kc) */
        const float *rows = tmp; /* (cols, kc), row stride ld */
        int64_t ld = kc;
        if (bdt == FK_F32) {
            rows = (const float *)b + p * nr * ldb;
            ld = ldb;
        } else {
            for (int64_t j = 0; j < cols; j++) {
                const char *src = (const char *)b + (size_t)((p * nr + j) * ldb) * esz;
                fk_convert_to_f32(tmp + j * kc, src, bdt, (size_t)kc);
            }
        }
        for (int64_t k = 0; k < kc; k++) {
            float *d = dst + k * nr;
            for (int64_t j = 0; j < cols; j++) d[j] = rows[j * ld + k];
            for (int64_t j = cols; j < nr; j++) d[j] = 0.0f;
        }
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

/* ---- driver ---- */

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
} fk_gemm_args;

/* Rows [m0, m1) × columns [n0, n1) of c, with one thread's scratch. */
static void fk_gemm_task(const fk_gemm_kernel *kern, float *scratch, const fk_gemm_args *g,
                         int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    float *bp = scratch;                        /* (KC, NC) packed B block */
    float *ap = bp + FK_GEMM_KC * FK_GEMM_NC;   /* (MC, KC) packed A block */
    float *tmp = ap + FK_GEMM_MC * FK_GEMM_KC;  /* (NR, KC) rows of B as f32 */
    float *bb = tmp + FK_GEMM_NR_MAX * FK_GEMM_KC; /* (NC) bias as f32 */
    size_t esz = fk_dtype_size(g->bdt);
    for (int64_t jc = n0; jc < n1; jc += FK_GEMM_NC) {
        int64_t nc = n1 - jc < FK_GEMM_NC ? n1 - jc : FK_GEMM_NC;
        if (g->K == 0)
            for (int64_t m = m0; m < m1; m++) memset(g->c + m * g->ldc + jc, 0, (size_t)nc * 4);
        for (int64_t pc = 0; pc < g->K; pc += FK_GEMM_KC) {
            int64_t kc = g->K - pc < FK_GEMM_KC ? g->K - pc : FK_GEMM_KC;
            fk_gemm_pack_b(bp, (const char *)g->b + (size_t)(jc * g->ldb + pc) * esz, g->bdt, g->ldb,
                           nc, kc, kern->nr, tmp);
            for (int64_t ic = m0; ic < m1; ic += FK_GEMM_MC) {
                int64_t mc = m1 - ic < FK_GEMM_MC ? m1 - ic : FK_GEMM_MC;
                fk_gemm_pack_a(ap, g->a + ic * g->lda + pc, g->lda, mc, kc, kern->mr);
                fk_gemm_block(kern, mc, nc, kc, ap, bp, g->c + ic * g->ldc + jc, g->ldc, pc > 0);
            }
        }
        if (g->bias) {
            fk_convert_to_f32(bb, (const char *)g->bias + (size_t)jc * fk_dtype_size(g->bias_dt),
                              g->bias_dt, (size_t)nc);
            for (int64_t m = m0; m < m1; m++) {
                float *cr = g->c + m * g->ldc + jc;
                for (int64_t n = 0; n < nc; n++) cr[n] += bb[n];
            }
        }
    }
}

void fk_cpu_gemm(const fk_backend *be, int64_t M, int64_t N, int64_t K, const float *a,
                 int64_t lda, const void *b, fk_dtype bdt, int64_t ldb, const void *bias,
                 fk_dtype bias_dt, float *c, int64_t ldc) {
    _Static_assert(FK_GEMM_KC * FK_GEMM_NC + FK_GEMM_MC * FK_GEMM_KC + FK_GEMM_NR_MAX * FK_GEMM_KC +
                           FK_GEMM_NC <= FK_CPU_SCRATCH_FLOATS,
                   "GEMM scratch exceeds the per-thread scratch");
    if (M <= 0 || N <= 0) return;
    /* few rows: weights read in place, same bits (cpu_gemv.c) */
    if (M <= FK_CPU_GEMV_MAX_M &&
        fk_cpu_gemv(be, M, N, K, a, lda, b, bdt, ldb, bias, bias_dt, c, ldc))
        return;
    fk_cpu_not_nested();
    const fk_cpu_impl *impl = fk_cpu_impl_of(be);
    const fk_gemm_kernel *kern = fk_gemm_kernel_for(impl->isa);
    FK_ASSERT(FK_GEMM_MC % kern->mr == 0 && FK_GEMM_NC % kern->nr == 0);
    fk_gemm_args g = {M, N, K, a, lda, b, bdt, ldb, bias, bias_dt, c, ldc};

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
            fk_gemm_task(kern, fk_cpu_scratch(be, fk_cpu_thread_id()), &g, m0, m1, n0, n1);
    }
}

/* ---- linear ---- */

void fk_cpu_linear(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                   const fk_tensor *b) {
    FK_ASSERT(y->dtype == FK_F32 && x->dtype == FK_F32);
    FK_ASSERT(w->ndim == 2 && fk_cpu_weight_dtype_ok(w->dtype));
    int64_t M = fk_tensor_rows(x), K = fk_tensor_cols(x), N = w->shape[0]; /* x (M, K), w (N, K) */
    FK_ASSERT(w->shape[1] == K);
    FK_ASSERT(fk_tensor_rows(y) == M && fk_tensor_cols(y) == N); /* y (M, N) */
    FK_ASSERT(y->data != x->data);
    if (b) FK_ASSERT(fk_tensor_numel(b) == N && fk_cpu_weight_dtype_ok(b->dtype)); /* b (N) */
    /* bf16 mode (cpu_amx.c): large enough products on bf16 hardware */
    if (fk_cpu_impl_of(be)->precision == FK_PREC_BF16 && M >= FK_CPU_BF16_MIN_M &&
        fk_cpu_gemm_bf16(be, M, N, K, x->data, K, w->data, w->dtype, K, b ? b->data : NULL,
                         b ? b->dtype : FK_F32, y->data, N))
        return;
    fk_cpu_gemm(be, M, N, K, x->data, K, w->data, w->dtype, K, b ? b->data : NULL,
                b ? b->dtype : FK_F32, y->data, N);
}
