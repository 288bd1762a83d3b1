/* flash3: the attention's flash kernel on Hopper's warpgroup MMA (wgmma),
 * built for sm_90a only (its own object library, CMakeLists.txt). Host side
 * shared with cuda_attention.cu. */
#ifndef FK_CUDA_FLASH3_H
#define FK_CUDA_FLASH3_H

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

/* q (Lq, H, 128), k, v (Lk, H, 128) bf16, 16-byte aligned; out (Lq, H·128)
 * f32 (out) or bf16 (outb, the f32 result rounded to nearest-even), pairs
 * 8- or 4-byte aligned; no bias, no causal mask. */
typedef struct fk_fa3_args {
    const __nv_bfloat16 *q, *k, *v;
    float *out;
    __nv_bfloat16 *outb;
    int Lq, Lk, H;
    float scale_log2; /* scale · log2(e) */
} fk_fa3_args;

/* On the current device (compute capability 9.0, smem_optin bytes of shared
 * memory per block): allow the kernels their shared memory. False where they
 * cannot run: not built (FK_HAVE_SM90A unset), or too little shared memory
 * (the error state is cleared). Once per device, by fk_cuda_attention_setup. */
bool fk_cuda_flash3_setup(size_t smem_optin);

/* Queue the kernel on stream s, on a device where fk_cuda_flash3_setup said
 * yes; the caller checks the operands. bk: keys per tile, 128 (the default)
 * or 64. */
void fk_cuda_flash3_launch(const fk_fa3_args *a, int bk, cudaStream_t s);

#endif /* FK_CUDA_FLASH3_H */
