/* flash_common: device pieces shared by the flash attention kernels
 * (cuda_attention.cu, sm90/flash3.cu). */
#ifndef FK_CUDA_FLASH_COMMON_CUH
#define FK_CUDA_FLASH_COMMON_CUH

#include <math.h>

/* The online softmax's step for one row (log2 domain): mt is the maximum of
 * this thread's scores of the row in the tile; the row's maximum over the 4
 * threads that share it (one row group of an MMA accumulator), then the new
 * running maximum (into m_run) and alpha, the factor of the old O and sum
 * (0 on the row's first live tile). Returns the exponent base: the running
 * maximum, or 0 while every score so far is masked (then p = 2^-inf = 0). */
static __device__ __forceinline__ float fk_fa_row_step(float mt, float &m_run, float &alpha) {
    mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 1));
    mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 2));
    const float m_new = fmaxf(m_run, mt);
    const float m_use = m_new == -INFINITY ? 0.0f : m_new;
    alpha = exp2f(m_run - m_use);
    m_run = m_new;
    return m_use;
}

#endif /* FK_CUDA_FLASH_COMMON_CUH */
