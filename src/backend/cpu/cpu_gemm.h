/* cpu_gemm: the blocked matrix-product machinery shared by linear, attention
 * and conv (internal to the CPU backend).
 *
 * C (M, N) = A (M, K) · B (N, K)ᵀ is computed BLIS-style: B is packed into
 * column panels of NR (layout [k][NR], converted to f32), A into row panels of
 * MR (layout [k][MR]), and a register-blocked micro-kernel computes one MR×NR
 * tile. Every C element is one chain c = fma(a[k], b[k], c) over k in
 * increasing order, started from +0 (or from the value already in C when
 * accumulating), whatever the kernel, the blocking or the thread count: all
 * kernels give the same bits.
 */
#ifndef FK_CPU_GEMM_H
#define FK_CPU_GEMM_H

#include "backend/cpu/cpu.h"

/* Blocking (floats). KC: reduction block; NC: columns of B per packed block;
 * MC: rows of A per packed block (a multiple of every kernel's MR). */
#define FK_GEMM_KC 256
#define FK_GEMM_NC 512
#define FK_GEMM_MC 192
#define FK_GEMM_MR_MAX 16
#define FK_GEMM_NR_MAX 32

/* One MR×NR tile: c (MR, NR) with row stride ldc  =  (c if accumulate else 0)
 *   + ap (kc, MR) packed · bp (kc, NR) with row stride ldb (NR when packed). */
typedef void (*fk_gemm_kernel_fn)(int64_t kc, const float *ap, const float *bp, int64_t ldb,
                                  float *c, int64_t ldc, bool accumulate);

typedef struct fk_gemm_kernel {
    int mr, nr;
    fk_gemm_kernel_fn fn;
} fk_gemm_kernel;

/* The kernel of an ISA (the portable one if the ISA was not compiled in). */
const fk_gemm_kernel *fk_gemm_kernel_for(fk_cpu_isa isa);

/* x86 kernels (cpu_kernels_x86.c); NULL on other architectures. */
const fk_gemm_kernel *fk_gemm_kernel_avx2(void);
const fk_gemm_kernel *fk_gemm_kernel_avx512(void);

/* Pack rows [0, mc) × cols [0, kc) of a (row stride lda) into panels of mr
 * rows: ap[p·kc·mr + k·mr + i] = a[(p·mr + i)·lda + k], zero past mc. */
void fk_gemm_pack_a(float *ap, const float *a, int64_t lda, int64_t mc, int64_t kc, int mr);

/* Pack nc rows of b (dtype bdt, row stride ldb elements), kc columns each,
 * into panels of nr: bp[p·kc·nr + k·nr + j] = f32(b[(p·nr + j)·ldb + k]),
 * zero past nc. `tmp` holds nr·kc floats (unused, may be NULL, for F32). */
void fk_gemm_pack_b(float *bp, const void *b, fk_dtype bdt, int64_t ldb, int64_t nc, int64_t kc,
                    int nr, float *tmp);

/* Pack a k-major f32 matrix v (kc rows, row stride ldv; columns [0, nc)) into
 * panels of nr columns: bp[p·kc·nr + k·nr + j] = v[k·ldv + p·nr + j]. */
void fk_gemm_pack_bt(float *bp, const float *v, int64_t ldv, int64_t nc, int64_t kc, int nr);

/* c (mc, nc) (+)= packed A block (mc × kc) · packed B block (nc × kc)ᵀ. */
void fk_gemm_block(const fk_gemm_kernel *kern, int64_t mc, int64_t nc, int64_t kc,
                   const float *ap, const float *bp, float *c, int64_t ldc, bool accumulate);

/* The same with B read in place from a k-major f32 matrix b (kc rows, row
 * stride ldb, columns [0, nc)) instead of packed panels: nc must be a multiple
 * of the kernel's NR (no partial panel, so nothing past column nc is read). */
void fk_gemm_block_kmajor_b(const fk_gemm_kernel *kern, int64_t mc, int64_t nc, int64_t kc,
                            const float *ap, const float *b, int64_t ldb, float *c, int64_t ldc,
                            bool accumulate);

#endif /* FK_CPU_GEMM_H */
