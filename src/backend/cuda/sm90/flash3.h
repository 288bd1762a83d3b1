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

/* Queue the kernel on stream s; false (nothing queued) where it cannot run:
 * not built (FK_HAVE_SM90A unset), or its shared memory cannot be had. The
 * caller checks the device (compute capability 9.0) and the operands.
 * bk: keys per tile, 128 (the default) or 64. */
bool fk_cuda_flash3_launch(const fk_fa3_args *a, int bk, cudaStream_t s);

#endif /* FK_CUDA_FLASH3_H */
