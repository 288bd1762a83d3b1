/* cpu_x86_simd: small AVX-512 helpers shared by the CPU kernels (x86-64 only).
 * Internal header; include after <immintrin.h> inside an __x86_64__ guard.
 * Functions carry their own target attribute, so callers compiled for a
 * superset (e.g. avx512f,avx512bf16) inline them. */
#ifndef FK_CPU_X86_SIMD_H
#define FK_CPU_X86_SIMD_H

#if defined(__x86_64__)
#include <immintrin.h>

/* In-register transpose of a 16 × 16 matrix of 32-bit elements. */
__attribute__((target("avx512f"))) static inline void fk_x86_tr16_epi32(__m512i r[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        u[4 * i + 0] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    /* u[4i + j], 128-bit lane l: column 4l + j of rows 4i .. 4i+3 */
    for (int j = 0; j < 4; j++) {
        __m512i v0 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x88);
        __m512i v1 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xdd);
        __m512i w0 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x88);
        __m512i w1 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xdd);
        r[j] = _mm512_shuffle_i32x4(v0, w0, 0x88);
        r[8 + j] = _mm512_shuffle_i32x4(v0, w0, 0xdd);
        r[4 + j] = _mm512_shuffle_i32x4(v1, w1, 0x88);
        r[12 + j] = _mm512_shuffle_i32x4(v1, w1, 0xdd);
    }
}

#endif /* __x86_64__ */
#endif /* FK_CPU_X86_SIMD_H */
