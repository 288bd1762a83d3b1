/* backend_open: a backend from a device name, for the pipeline and the
 * command line (--device).
 *
 *   "cpu"        the CPU backend (n_threads threads; <= 0: all online CPUs)
 *   "cuda"       the CUDA backend on device 0 (= "cuda:0")
 *   "cuda:N"     the CUDA backend on device N
 *   "devsim"     the CPU backend behind the simulated device (devsim.h):
 *                device memory the host cannot touch, constant-weight
 *                checks; the CPU's bits at a fraction of its speed (tests,
 *                and checking a pipeline's device hygiene without a GPU)
 *
 * Precision: FK_PREC_BF16 selects each backend's bf16 mode (CPU: AMX tiles
 * where the machine has them; CUDA: bf16 tensor-core products), FK_PREC_F32
 * the f32 path. */
#ifndef FK_BACKEND_OPEN_H
#define FK_BACKEND_OPEN_H

#include "backend/backend.h"
#include "backend/cpu/cpu.h"

/* Open the backend named `device` (NULL: "cpu"). Errors name the option
 * (--device) and what was expected: FK_ERR_ARG for a malformed name,
 * FK_ERR_UNSUPPORTED when the build or the machine lacks the device,
 * FK_ERR_NOMEM. Close with fk_backend_close. */
fk_status fk_backend_open(fk_context *ctx, const char *device, int n_threads, fk_precision prec,
                          fk_backend **out);

/* True when `device` is a name fk_backend_open understands (cpu, cuda,
 * cuda:N, devsim), whether or not this build or machine has the device. */
bool fk_backend_device_name_ok(const char *device);

/* Destroy a backend from fk_backend_open (a devsim wrapper and its CPU
 * backend together). NULL is allowed. */
void fk_backend_close(fk_backend *be);

/* One line about the backend, e.g. "cpu, bf16 (amx), 2 threads",
 * "cuda:0 NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.1 GiB), bf16",
 * "devsim over cpu, f32 (avx512), 2 threads". Returns buf. */
const char *fk_backend_describe(const fk_backend *be, char *buf, size_t n);

/* The kernel path of a backend, short: "amx", "avx512", "avx2", "portable",
 * "cuda". */
const char *fk_backend_kernel_name(const fk_backend *be);

/* Bytes of device memory a non-CPU backend holds now and at most so far
 * (cached weights, scratch and the tensors it allocated); 0 for the CPU
 * backend, whose memory is counted in the process's RSS. */
uint64_t fk_backend_device_bytes(const fk_backend *be);
uint64_t fk_backend_device_peak_bytes(const fk_backend *be);

#endif /* FK_BACKEND_OPEN_H */
