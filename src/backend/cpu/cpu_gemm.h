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

/* Blocking (floats) of fk_gemm_block's users (attention). KC: reduction
 * block; NC: columns of B per packed block. MR_MAX / NR_MAX bound every
 * kernel's tile. */
#define FK_GEMM_KC 256
#define FK_GEMM_NC 512
#define FK_GEMM_MR_MAX 16
#define FK_GEMM_NR_MAX 32

/* Blocking of the linear driver (fk_cpu_gemm, cpu_linear.c): KC of the
 * reduction per pass over C, NC columns of B per packed block at most (a
 * multiple of every driver kernel's NR; fewer when half the L2 cache is
 * smaller); the B block (LIN_KC × nc floats) lives in L2, the A micro-panel
 * (LIN_KC × MR) in L1. Measured on Sapphire Rapids (2 MiB L2, 48 KiB L1d):
 * KC = 192, 320, 384 or 512 (with NC filling the same scratch) are no
 * faster; C reloads and A repacking balance. */
#define FK_GEMM_LIN_KC 256
#define FK_GEMM_LIN_NC 960

/* One MR×NR tile: c (MR, NR) with row stride ldc  =  (c if accumulate else 0)
 *   + ap (kc, MR) packed · bp (kc, NR) with row stride ldb (NR when packed). */
typedef void (*fk_gemm_kernel_fn)(int64_t kc, const float *ap, const float *bp, int64_t ldb,
                                  float *c, int64_t ldc, bool accumulate);

typedef struct fk_gemm_kernel {
    int mr, nr;
    fk_gemm_kernel_fn fn;
} fk_gemm_kernel;

/* ---- the linear driver (fk_cpu_gemm) ----
 * Its own per-ISA pieces: a micro-kernel (which may differ from
 * fk_gemm_kernel_for's, e.g. MR = 14 where attention needs MR | 192) and the
 * packing of one micro-panel of A and of B, in registers where the ISA has a
 * transpose. Packing moves and widens values exactly, so it never changes a
 * result. See cpu_linear.c for the blocking. */

/* One A micro-panel: ap (kc, mr) with ap[k·mr + i] = a[i·lda + k] for
 * i < rows (<= mr), 0 for rows <= i < mr. */
typedef void (*fk_gemm_pack_a_fn)(float *ap, const float *a, int64_t lda, int64_t rows,
                                  int64_t kc);
/* One B micro-panel: bp (kc, nr) with bp[k·nr + j] = f32(b[j·ldb + k]) (b of
 * dtype bdt, ldb in elements) for j < cols (<= nr), 0 for cols <= j < nr.
 * `tmp` holds nr·kc floats (dtypes converted through memory first). `next`:
 * the next panel the caller will pack (nr full rows, or NULL), prefetched. */
typedef void (*fk_gemm_pack_b_fn)(float *bp, const void *b, fk_dtype bdt, int64_t ldb,
                                  int64_t cols, int64_t kc, float *tmp, const void *next);

typedef struct fk_gemm_driver {
    fk_gemm_kernel kern;
    fk_gemm_pack_a_fn pack_a;
    fk_gemm_pack_b_fn pack_b;
} fk_gemm_driver;

/* The driver pieces of an ISA (portable if the ISA was not compiled in). */
const fk_gemm_driver *fk_gemm_driver_for(fk_cpu_isa isa);
/* x86 (cpu_kernels_x86.c); NULL on other architectures. */
const fk_gemm_driver *fk_gemm_driver_avx2(void);
const fk_gemm_driver *fk_gemm_driver_avx512(void);

/* Portable micro-panel packing (any mr, nr <= FK_GEMM_NR_MAX): the
 * fk_gemm_pack_a_fn / fk_gemm_pack_b_fn contracts with explicit mr, nr. */
void fk_gemm_pack_a_panel(float *ap, const float *a, int64_t lda, int64_t rows, int64_t kc, int mr);
void fk_gemm_pack_b_panel(float *bp, const void *b, fk_dtype bdt, int64_t ldb, int64_t cols,
                          int64_t kc, int nr, float *tmp);

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
