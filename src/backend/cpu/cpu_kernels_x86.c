/* cpu_kernels_x86: AVX2+FMA and AVX-512 GEMM micro-kernels and the linear
 * driver's micro-panel packing, compiled with target attributes (the build
 * never needs -march) and selected at run time from cpuid
 * (fk_cpu_isa_detect). Each kernel computes one MR×NR tile as independent
 * fma chains over k, lane by lane, so it gives exactly the bits of the
 * portable kernel (see cpu_gemm.h). Only fma, load, store and broadcast are
 * used: no separate multiply and add that the compiler could contract
 * differently. Packing only moves values (16 × 16 / 8 × 8 transposes in
 * registers) and widens bf16 (a 16-bit shift) and f16 (vcvtph2ps, what
 * fk_convert_to_f32 uses) exactly; other dtypes go through
 * fk_convert_to_f32.
 *
 * Kernels: attention (fk_gemm_kernel_for) uses AVX-512 12 × 32 (its query
 * blocks of 192 need MR | 192) and AVX2 6 × 16; the linear driver
 * (fk_gemm_driver_for) uses AVX-512 14 × 32 and the same AVX2 6 × 16. */
#include "backend/cpu/cpu_gemm.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include "backend/cpu/cpu_x86_simd.h"

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
        /* B 8 rows ahead into L1 (+7-10% for the linear driver, whose B
         * micro-panels stream from L2; the L1 prefetchers fall behind) */
        _mm_prefetch((const char *)(bp + 8 * ldb), _MM_HINT_T0);
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

/* ---- the linear driver's AVX-512 kernel: 14 × 32 (28 zmm accumulators) ----
 * Measured on Sapphire Rapids with A and B in L1: 14 × 32 ~ 195 GFLOP/s per
 * core (88% of the FMA peak, 222), 12 × 32 ~ 185, 9 × 48 ~ 194, 8 × 48 ~ 188,
 * 6 × 64 ~ 182: the broadcast loads, not the FMAs, set the pace, and 14 rows
 * give the most FMAs per broadcast. 28 accumulators + 2 B vectors + the
 * broadcast use 31 of the 32 zmm registers. */

#define FK_L512_MR 14
#define FK_L512_NR 32

__attribute__((target("avx512f"))) static void
fk_gemm_lin_kernel_avx512_fn(int64_t kc, const float *ap, const float *bp, int64_t ldb, float *c,
                             int64_t ldc, bool accumulate) {
    __m512 c0a, c0b, c1a, c1b, c2a, c2b, c3a, c3b, c4a, c4b, c5a, c5b, c6a, c6b;
    __m512 c7a, c7b, c8a, c8b, c9a, c9b, c10a, c10b, c11a, c11b, c12a, c12b, c13a, c13b;
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
    FK_LD(0); FK_LD(1); FK_LD(2); FK_LD(3); FK_LD(4); FK_LD(5); FK_LD(6);
    FK_LD(7); FK_LD(8); FK_LD(9); FK_LD(10); FK_LD(11); FK_LD(12); FK_LD(13);
#undef FK_LD
    for (int64_t k = 0; k < kc; k++) {
        __m512 b0 = _mm512_loadu_ps(bp);
        __m512 b1 = _mm512_loadu_ps(bp + 16);
        __m512 a;
#define FK_FMA(i)                                                                             \
    a = _mm512_set1_ps(ap[i]);                                                                \
    c##i##a = _mm512_fmadd_ps(a, b0, c##i##a);                                                \
    c##i##b = _mm512_fmadd_ps(a, b1, c##i##b)
        FK_FMA(0); FK_FMA(1); FK_FMA(2); FK_FMA(3); FK_FMA(4); FK_FMA(5); FK_FMA(6);
        FK_FMA(7); FK_FMA(8); FK_FMA(9); FK_FMA(10); FK_FMA(11); FK_FMA(12); FK_FMA(13);
#undef FK_FMA
        ap += FK_L512_MR;
        bp += ldb;
    }
#define FK_ST(i)                                                                              \
    _mm512_storeu_ps(c + (i) * ldc, c##i##a);                                                 \
    _mm512_storeu_ps(c + (i) * ldc + 16, c##i##b)
    FK_ST(0); FK_ST(1); FK_ST(2); FK_ST(3); FK_ST(4); FK_ST(5); FK_ST(6);
    FK_ST(7); FK_ST(8); FK_ST(9); FK_ST(10); FK_ST(11); FK_ST(12); FK_ST(13);
#undef FK_ST
}

/* ---- AVX-512 packing: 16 × 16 blocks transposed in registers ---- */

/* 16 values of one B row from element k on, as f32 bits (F32, BF16, F16). */
__attribute__((target("avx512f"))) static inline __m512i fk_ld16_avx512(const void *row,
                                                                       fk_dtype dt, int64_t k) {
    if (dt == FK_BF16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)row + k));
        return _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16);
    }
    if (dt == FK_F16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)row + k));
        return _mm512_castps_si512(_mm512_cvtph_ps(h));
    }
    return _mm512_loadu_si512((const float *)row + k);
}

/* A micro-panel of 14 rows: rows 14, 15 of each 16 × 16 block are zero, the
 * transposed vectors are stored 14 lanes at a time. */
__attribute__((target("avx512f"))) static void fk_gemm_pack_a_avx512(float *ap, const float *a,
                                                                    int64_t lda, int64_t rows,
                                                                    int64_t kc) {
    const __mmask16 m14 = (__mmask16)((1u << FK_L512_MR) - 1);
    int64_t k0 = 0;
    for (; k0 + 16 <= kc; k0 += 16) {
        __m512i r[16];
        for (int i = 0; i < 16; i++)
            r[i] = i < rows ? _mm512_loadu_si512(a + i * lda + k0) : _mm512_setzero_si512();
        fk_x86_tr16_epi32(r);
        for (int kk = 0; kk < 16; kk++)
            _mm512_mask_storeu_ps(ap + (k0 + kk) * FK_L512_MR, m14, _mm512_castsi512_ps(r[kk]));
    }
    if (k0 < kc) fk_gemm_pack_a_panel(ap + k0 * FK_L512_MR, a + k0, lda, rows, kc - k0, FK_L512_MR);
}

/* Common start of the B packers: prefetch the next panel's nr rows towards
 * L2 (one prefetch per 64 bytes), and convert dtypes without an in-register
 * widening (fp8, f64) row by row into tmp, which then stands in for b. */
static void fk_gemm_pack_b_prologue(const void **b, fk_dtype *bdt, int64_t *ldb, int64_t cols,
                                    int64_t kc, float *tmp, const void *next, int64_t nr) {
    const size_t esz = fk_dtype_size(*bdt);
    if (next)
        for (int64_t j = 0; j < nr; j++)
            for (int64_t off = 0; off < kc * (int64_t)esz; off += 64)
                _mm_prefetch((const char *)next + (size_t)(j * *ldb) * esz + off, _MM_HINT_T1);
    if (*bdt != FK_F32 && *bdt != FK_BF16 && *bdt != FK_F16) {
        for (int64_t j = 0; j < cols; j++)
            fk_convert_to_f32(tmp + j * kc, (const char *)*b + (size_t)(j * *ldb) * esz, *bdt,
                              (size_t)kc);
        *b = tmp, *bdt = FK_F32, *ldb = kc;
    }
}

/* A B micro-panel of 32 columns: two 16 × 16 blocks per 16 k; F32, BF16 and
 * F16 are widened in registers, other dtypes converted row by row into tmp. */
__attribute__((target("avx512f"))) static void fk_gemm_pack_b_avx512(float *bp, const void *b,
                                                                    fk_dtype bdt, int64_t ldb,
                                                                    int64_t cols, int64_t kc,
                                                                    float *tmp, const void *next) {
    fk_gemm_pack_b_prologue(&b, &bdt, &ldb, cols, kc, tmp, next, FK_L512_NR);
    const size_t esz = fk_dtype_size(bdt);
    int64_t k0 = 0;
    for (; k0 + 16 <= kc; k0 += 16) {
        for (int h = 0; h < 2; h++) { /* columns 16h .. 16h+15 */
            __m512i r[16];
            for (int j = 0; j < 16; j++) {
                int64_t col = 16 * h + j;
                r[j] = col < cols ? fk_ld16_avx512((const char *)b + (size_t)(col * ldb) * esz, bdt, k0)
                                  : _mm512_setzero_si512();
            }
            fk_x86_tr16_epi32(r);
            for (int kk = 0; kk < 16; kk++)
                _mm512_storeu_si512(bp + (k0 + kk) * FK_L512_NR + 16 * h, r[kk]);
        }
    }
    if (k0 < kc)
        fk_gemm_pack_b_panel(bp + k0 * FK_L512_NR, (const char *)b + (size_t)k0 * esz, bdt, ldb,
                             cols, kc - k0, FK_L512_NR, tmp);
}

/* ---- AVX2 packing: 8 × 8 blocks transposed in registers ---- */

__attribute__((target("avx2,fma,f16c"))) static inline void fk_tr8_ps(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; i++) {
        u[4 * i + 0] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xee);
        u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xee);
    }
    /* u[j] (j < 4): column j of rows 0..3 (low lane: k 0..3 ... ) */
    for (int j = 0; j < 4; j++) {
        r[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
        r[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
    }
}

/* 8 values of one B row from element k on, as f32 (F32, BF16, F16). */
__attribute__((target("avx2,fma,f16c"))) static inline __m256 fk_ld8_avx2(const void *row,
                                                                          fk_dtype dt, int64_t k) {
    if (dt == FK_BF16) {
        __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)row + k));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    if (dt == FK_F16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + k)));
    return _mm256_loadu_ps((const float *)row + k);
}

/* A micro-panel of 6 rows (rows 6, 7 of each 8 × 8 block are zero). */
__attribute__((target("avx2,fma,f16c"))) static void fk_gemm_pack_a_avx2(float *ap, const float *a,
                                                                        int64_t lda, int64_t rows,
                                                                        int64_t kc) {
    const __m256i m6 = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
    int64_t k0 = 0;
    for (; k0 + 8 <= kc; k0 += 8) {
        __m256 r[8];
        for (int i = 0; i < 8; i++)
            r[i] = i < rows ? _mm256_loadu_ps(a + i * lda + k0) : _mm256_setzero_ps();
        fk_tr8_ps(r);
        for (int kk = 0; kk < 8; kk++) _mm256_maskstore_ps(ap + (k0 + kk) * FK_A2_MR, m6, r[kk]);
    }
    if (k0 < kc) fk_gemm_pack_a_panel(ap + k0 * FK_A2_MR, a + k0, lda, rows, kc - k0, FK_A2_MR);
}

/* A B micro-panel of 16 columns: two 8 × 8 blocks per 8 k. */
__attribute__((target("avx2,fma,f16c"))) static void fk_gemm_pack_b_avx2(float *bp, const void *b,
                                                                        fk_dtype bdt, int64_t ldb,
                                                                        int64_t cols, int64_t kc,
                                                                        float *tmp, const void *next) {
    fk_gemm_pack_b_prologue(&b, &bdt, &ldb, cols, kc, tmp, next, FK_A2_NR);
    const size_t esz = fk_dtype_size(bdt);
    int64_t k0 = 0;
    for (; k0 + 8 <= kc; k0 += 8) {
        for (int h = 0; h < 2; h++) { /* columns 8h .. 8h+7 */
            __m256 r[8];
            for (int j = 0; j < 8; j++) {
                int64_t col = 8 * h + j;
                r[j] = col < cols ? fk_ld8_avx2((const char *)b + (size_t)(col * ldb) * esz, bdt, k0)
                                  : _mm256_setzero_ps();
            }
            fk_tr8_ps(r);
            for (int kk = 0; kk < 8; kk++) _mm256_storeu_ps(bp + (k0 + kk) * FK_A2_NR + 8 * h, r[kk]);
        }
    }
    if (k0 < kc)
        fk_gemm_pack_b_panel(bp + k0 * FK_A2_NR, (const char *)b + (size_t)k0 * esz, bdt, ldb, cols,
                             kc - k0, FK_A2_NR, tmp);
}

static const fk_gemm_kernel fk_gemm_avx512 = {FK_A512_MR, FK_A512_NR, fk_gemm_kernel_avx512_fn};
static const fk_gemm_kernel fk_gemm_avx2 = {FK_A2_MR, FK_A2_NR, fk_gemm_kernel_avx2_fn};
static const fk_gemm_driver fk_gemm_driver_avx512_ = {
    {FK_L512_MR, FK_L512_NR, fk_gemm_lin_kernel_avx512_fn}, fk_gemm_pack_a_avx512,
    fk_gemm_pack_b_avx512};
static const fk_gemm_driver fk_gemm_driver_avx2_ = {
    {FK_A2_MR, FK_A2_NR, fk_gemm_kernel_avx2_fn}, fk_gemm_pack_a_avx2, fk_gemm_pack_b_avx2};

const fk_gemm_kernel *fk_gemm_kernel_avx512(void) { return &fk_gemm_avx512; }
const fk_gemm_kernel *fk_gemm_kernel_avx2(void) { return &fk_gemm_avx2; }
const fk_gemm_driver *fk_gemm_driver_avx512(void) { return &fk_gemm_driver_avx512_; }
const fk_gemm_driver *fk_gemm_driver_avx2(void) { return &fk_gemm_driver_avx2_; }

#else /* not x86-64 */

const fk_gemm_kernel *fk_gemm_kernel_avx512(void) { return NULL; }
const fk_gemm_kernel *fk_gemm_kernel_avx2(void) { return NULL; }
const fk_gemm_driver *fk_gemm_driver_avx512(void) { return NULL; }
const fk_gemm_driver *fk_gemm_driver_avx2(void) { return NULL; }

#endif
