/* backend_cuda: the CUDA backend (src/backend/cuda/), creation and queries.
 *
 * Every function here exists in every build: without the CUDA toolkit
 * (FK_HAVE_CUDA undefined) cuda_stub.c provides them, reporting no device,
 * so callers need no #ifdef.
 *
 * Operand rule (what the op table's tensors mean on this backend)
 * - Activations (x, y, q, k, v, out, shift, scale of modulate, gate, pe,
 *   attention bias, every output) are f32 device tensors: tensor.device ==
 *   FK_DEVICE_CUDA, memory from be->alloc (cudaMalloc), filled with
 *   be->upload and read back with be->download (which waits for the op
 *   queue). Ops are queued on the backend's stream and return at once;
 *   be->synchronize waits for them. copy_cols / concat_rows / split_rows take
 *   device tensors of any dtype. In bf16 mode the products' y and x (x1, x2
 *   of linear_cat) may also be bf16 device tensors (backend.h's bf16
 *   activations; supports() says so): a bf16 x is read as the operand, a
 *   bf16 y is the f32 result rounded to nearest-even by cuBLASLt's output
 *   stage when it fuses the whole epilogue, else by a kernel after an f32
 *   product in scratch.
 * - Weight slots (linear / linear_act / linear_cat w and b, layernorm w and b,
 *   rmsnorm and rmsnorm_rope scale, conv2d w and b, group_norm w and b,
 *   scale_cols s: the operand roles of backend.h) take a
 *   host tensor (device FK_DEVICE_CPU) of any float dtype (f32, bf16, f16, fp8
 *   e4m3fn / e5m2, f64) or a device tensor. A host tensor is a constant weight:
 *   the backend keeps one device copy per (host pointer, dtype, shape), made by
 *   be->cache_weight or on the first op that reads it (counted the same way),
 *   in the file's dtype (fp8 stays 1 byte per element on the device), and
 *   reuses it until be->uncache_weights; the host data must not change
 *   meanwhile. When a copy cannot be allocated, the op uploads the weight to a
 *   staging buffer on every call instead (slow, correct).
 * - Precision (fk_backend_cuda_set_precision): bf16 (default) runs linear,
 *   linear_act, linear_cat, conv2d and attention with bf16 operands (x
 *   rounded to nearest-even, weights converted from their dtype) and f32
 *   accumulation, like the CPU backend's FK_PREC_BF16; every other op is f32.
 *   f32 mode runs everything in IEEE f32 (no TF32): the mode the conformance
 *   suite compares with the CPU reference at ~1e-5.
 * - Ops abort with file:line and the CUDA error on a failed CUDA call (a bug
 *   or a lost device: ops cannot return errors). Kernels run asynchronously,
 *   so a kernel that faults is reported by a later call; FK_CUDA_SYNC=1 in the
 *   environment (read by fk_backend_cuda_create) synchronizes after every
 *   kernel and product to name the one that failed. Scratch buffers grow on
 *   the first call that needs more; later calls of the same shapes allocate
 *   nothing.
 * - A/B switches, read from the environment (defaults are the measured
 *   fastest, docs/PERF.md): FK_CUDA_FA=1 runs attention on the 64-row flash
 *   kernel, FK_CUDA_FA=2 on the 128-row mma.sync one, FK_CUDA_FA=3 on the
 *   warpgroup-MMA one (Hopper) with 64-key tiles, instead of the default
 *   (the warpgroup-MMA kernel with 128-key tiles where it applies: compute
 *   capability 9.0, D = 128, no bias or mask; the 128-row one elsewhere);
 *   FK_CUDA_BF16_IO=0 makes the products
 *   decline bf16 activations (the runners then keep them f32);
 *   FK_CUDA_PINNED=0 uploads host weights from pageable memory as they are
 *   instead of through two pinned staging buffers.
 */
#ifndef FK_BACKEND_CUDA_H
#define FK_BACKEND_CUDA_H

#include "backend/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable CUDA devices: 0 when built without CUDA, without a driver
 * or without a device. Never fails. */
int fk_cuda_device_count(void);

/* True when this build has the CUDA backend (whether or not a device is
 * present: see fk_cuda_device_count). */
bool fk_backend_cuda_available(void);

/* The CUDA backend on device `device` (0-based), bf16 precision. NULL with a
 * one-line reason in err (if err is not NULL) when CUDA is not built in, the
 * device does not exist or cannot be initialized, or memory is short. Caller
 * frees with be->destroy(be) (which frees the cached weights and scratch,
 * not the tensors it allocated for the caller). */
fk_backend *fk_backend_cuda_create(int device, char *err, size_t errlen);

/* Precision mode: bf16 != 0 (default) or f32 (bf16 == 0; IEEE f32, TF32 off).
 * No effect on a backend that is not a CUDA backend. */
void fk_backend_cuda_set_precision(fk_backend *be, int bf16);

/* One line describing device `device`, e.g. "NVIDIA H100 80GB HBM3 (sm_90,
 * 132 SMs, 79.1 GiB)", or why there is none. Returns buf. */
const char *fk_cuda_device_describe(int device, char *buf, size_t n);

/* The device index of a CUDA backend; -1 for any other backend. */
int fk_backend_cuda_device_index(const fk_backend *be);

/* True when a CUDA backend is in bf16 mode (false for other backends). */
bool fk_backend_cuda_is_bf16(const fk_backend *be);

/* Device bytes a CUDA backend holds: cached weights; scratch (the cuBLASLt
 * workspace, conversion, attention and im2col buffers); both. 0 for other
 * backends. */
size_t fk_backend_cuda_weight_bytes(const fk_backend *be);
size_t fk_backend_cuda_scratch_bytes(const fk_backend *be);
/* now: cached weights + scratch + the live tensors from be->alloc; peak: the
 * largest `now` so far. Both 0 for other backends. */
void fk_backend_cuda_memory(const fk_backend *be, uint64_t *now, uint64_t *peak);

/* Products that ran on the fallback kernel because cuBLASLt offered no
 * algorithm for their shape / strides / alignment (correct, slow: a
 * performance bug to look at when not 0). 0 for other backends. */
uint64_t fk_backend_cuda_naive_gemm_count(const fk_backend *be);

/* Test hooks (the conformance suite): they make small shapes take the paths
 * that otherwise only full-size work or a full device reaches.
 * chunk_bytes > 0 bounds the chunked paths' scratch (conv2d's im2col column
 * matrix, the attention score block of the two-product path) instead of the
 * default 32 MiB, so a small shape runs several chunks; 0 restores the
 * default. flags (FK_CUDA_HOOK_*, 0 restores the defaults):
 * STAGE_WEIGHTS: host weights are uploaded to a staging buffer on every call
 * (the path taken when a cached copy cannot be allocated), the weight cache
 * is not read; NAIVE_GEMM: every product runs on the fallback kernel (one
 * thread per output, f32 accumulation) that stands in when cuBLASLt offers no
 * algorithm for a shape; FLASH1: attention's flash path runs the 64-row
 * kernel (fk_k_flash), which stands in for the 128-row one where that one's
 * shared memory does not fit; FLASH2: it runs the 128-row kernel
 * (fk_k_flash2) where the Hopper one would run by default. Results stay
 * within the op's tolerance, not bitwise equal to the default paths. No
 * effect on a backend that is not a CUDA backend. */
#define FK_CUDA_HOOK_STAGE_WEIGHTS 1u
#define FK_CUDA_HOOK_NAIVE_GEMM 2u
#define FK_CUDA_HOOK_FLASH1 4u
#define FK_CUDA_HOOK_FLASH2 8u
void fk_backend_cuda_set_test_hooks(fk_backend *be, size_t chunk_bytes, unsigned flags);

#ifdef __cplusplus
}
#endif

#endif /* FK_BACKEND_CUDA_H */
