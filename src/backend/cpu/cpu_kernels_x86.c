/* cpu_kernels_x86: AVX2+FMA and AVX-512 GEMM micro-kernels, compiled with
 * target attributes (the build never needs -march) and selected at run time
 * from cpuid (fk_cpu_isa_detect). Each computes one MR×NR tile as
 * independent fma chains over k, lane by lane, so it gives exactly the bits
 * of the portable kernel (see cpu_gemm.h). Only fma, load, store and
 * broadcast are used: no separate multiply and add that the compiler could
 * contract differently. */
#include "backend/cpu/cpu_gemm.h"

#if defined(__x86_64__)
#include <immintrin.h>

/* ---- AVX-512: 12 × 32 (24 zmm accumulators) ---- */

#define FK_A512_MR 12
#define FK_A512_NR 32

__attribute__((target("avx512f"))) static void
fk_gemm_kernel_avx512_fn(int64_t kc, const float *ap, const float *bp, int64_t ldb, float *c,
                         int64_t ldc, bool accumulate) {
    __m512 c0a, c0b, c1a, c1b, c2a, c2b, c3a, c3b, c4a, c4b, c5a, c5b;
    __m512 c6a, c6b, c7a, c7b, c8a, c8b, c9a, c9b, c10a, c10b, c11a, c11b;
#define FK_LD(i)                                                                              \
    do {                                                                                      \
        if (accumulate) {                                                                     \
            c##i##a = _mm512_loadu_ps(c + (i) * ldc);                                         \
            c##i##b = _mm512_loadu_ps(c + (i) * ldc + 16);                                    \
        } else {                                                                              \
            c##i##a = _mm512_setzero_ps();                                                    \
            c##i##b = _mm512_setzero_ps();                                                    \
        }                                                                                     \
    } while (0)
    FK_LD(0); FK_LD(1); FK_LD(2); FK_LD(3); FK_LD(4); FK_LD(5);
    FK_LD(6); FK_LD(7); FK_LD(8); FK_LD(9); FK_LD(10); FK_LD(11);
#undef FK_LD
    for (int64_t k = 0; k < kc; k++) {
        __m512 b0 = _mm512_loadu_ps(bp);
        __m512 b1 = _mm512_loadu_ps(bp + 16);
        __m512 a;
#define FK_FMA(i)                                                                             \
    a = _mm512_set1_ps(ap[i]);                                                                \
    c##i##a = _mm512_fmadd_ps(a, b0, c##i##a);                                                \
    c##i##b = _mm512_fmadd_ps(a, b1, c##i##b)
        FK_FMA(0); FK_FMA(1); FK_FMA(2); FK_FMA(3); FK_FMA(4); FK_FMA(5);
        FK_FMA(6); FK_FMA(7); FK_FMA(8); FK_FMA(9); FK_FMA(10); FK_FMA(11);
#undef FK_FMA
        ap += FK_A512_MR;
        bp += ldb;
    }
#define FK_ST(i)                                                                              \
    _mm512_storeu_ps(c + (i) * ldc, c##i##a);                                                 \
    _mm512_storeu_ps(c + (i) * ldc + 16, c##i##b)
    FK_ST(0); FK_ST(1); FK_ST(2); FK_ST(3); FK_ST(4); FK_ST(5);
    FK_ST(6); FK_ST(7); FK_ST(8); FK_ST(9); FK_ST(10); FK_ST(11);
#undef FK_ST
}

/* ---- AVX2 + FMA: 6 × 16 (12 ymm accumulators) ---- */

#define FK_A2_MR 6
#define FK_A2_NR 16

__attribute__((target("avx2,fma"))) static void
fk_gemm_kernel_avx2_fn(int64_t kc, const float *ap, const float *bp, int64_t ldb, float *c,
                       int64_t ldc, bool accumulate) {
    __m256 c0a, c0b, c1a, c1b, c2a, c2b, c3a, c3b, c4a, c4b, c5a, c5b;
#define FK_LD(i)                                                                              \
    do {                                                                                      \
        if (accumulate) {                                                                     \
            c##i##a = _mm256_loadu_ps(c + (i) * ldc);                                         \
            c##i##b = _mm256_loadu_ps(c + (i) * ldc + 8);                                     \
        } else {                                                                              \
            c##i##a = _mm256_setzero_ps();                                                    \
            c##i##b = _mm256_setzero_ps();                                                    \
        }                                                                                     \
    } while (0)
    FK_LD(0); FK_LD(1); FK_LD(2); FK_LD(3); FK_LD(4); FK_LD(5);
#undef FK_LD
    for (int64_t k = 0; k < kc; k++) {
        __m256 b0 = _mm256_loadu_ps(bp);
        __m256 b1 = _mm256_loadu_ps(bp + 8);
        __m256 a;
#define FK_FMA(i)                                                                             \
    a = _mm256_broadcast_ss(ap + (i));                                                        \
    c##i##a = _mm256_fmadd_ps(a, b0, c##i##a);                                                \
    c##i##b = _mm256_fmadd_ps(a, b1, c##i##b)
        FK_FMA(0); FK_FMA(1); FK_FMA(2); FK_FMA(3); FK_FMA(4); FK_FMA(5);
#undef FK_FMA
        ap += FK_A2_MR;
        bp += ldb;
    }
#define FK_ST(i)                                                                              \
    _mm256_storeu_ps(c + (i) * ldc, c##i##a);                                                 \
    _mm256_storeu_ps(c + (i) * ldc + 8, c##i##b)
    FK_ST(0); FK_ST(1); FK_ST(2); FK_ST(3); FK_ST(4); FK_ST(5);
#undef FK_ST
}

static const fk_gemm_kernel fk_gemm_avx512 = {FK_A512_MR, FK_A512_NR, fk_gemm_kernel_avx512_fn};
static const fk_gemm_kernel fk_gemm_avx2 = {FK_A2_MR, FK_A2_NR, fk_gemm_kernel_avx2_fn};

const fk_gemm_kernel *fk_gemm_kernel_avx512(void) { return &fk_gemm_avx512; }
const fk_gemm_kernel *fk_gemm_kernel_avx2(void) { return &fk_gemm_avx2; }

#else /* not x86-64 */

const fk_gemm_kernel *fk_gemm_kernel_avx512(void) { return NULL; }
const fk_gemm_kernel *fk_gemm_kernel_avx2(void) { return NULL; }

#endif
