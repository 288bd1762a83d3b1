/* cuda_stub: the CUDA backend's entry points in a build without the CUDA
 * toolkit (compiled only when FK_HAVE_CUDA is off): no device, create()
 * says why. See backend_cuda.h. */
#include "backend/backend_cuda.h"

#include <stdio.h>

int fk_cuda_device_count(void) { return 0; }

bool fk_backend_cuda_available(void) { return false; }

fk_backend *fk_backend_cuda_create(int device, char *err, size_t errlen) {
    if (err && errlen)
        snprintf(err, errlen,
                 "cuda:%d: this fluxkit was built without the CUDA backend "
                 "(no CUDA toolkit found, or -DFK_CUDA=OFF)",
                 device);
    return NULL;
}

void fk_backend_cuda_set_precision(fk_backend *be, int bf16) {
    (void)be;
    (void)bf16;
}

const char *fk_cuda_device_describe(int device, char *buf, size_t n) {
    if (buf && n) snprintf(buf, n, "cuda:%d: CUDA backend not built", device);
    return buf;
}

int fk_backend_cuda_device_index(const fk_backend *be) {
    (void)be;
    return -1;
}

bool fk_backend_cuda_is_bf16(const fk_backend *be) {
    (void)be;
    return false;
}

void fk_backend_cuda_memory(const fk_backend *be, uint64_t *now, uint64_t *peak) {
    (void)be;
    if (now) *now = 0;
    if (peak) *peak = 0;
}

size_t fk_backend_cuda_weight_bytes(const fk_backend *be) {
    (void)be;
    return 0;
}

size_t fk_backend_cuda_scratch_bytes(const fk_backend *be) {
    (void)be;
    return 0;
}

void fk_backend_cuda_set_test_hooks(fk_backend *be, size_t chunk_bytes, unsigned flags) {
    (void)be;
    (void)chunk_bytes;
    (void)flags;
}

uint64_t fk_backend_cuda_naive_gemm_count(const fk_backend *be) {
    (void)be;
    return 0;
}
