/* devsim: a simulated device backend, for tests and debugging of the model
 * runners' device hygiene without a GPU.
 *
 * fk_backend_devsim_wrap(cpu) returns a backend whose device is
 * FK_DEVICE_CUDA (runners treat it exactly as a GPU) and whose ops run the
 * wrapped CPU backend's ops. Its memory is "device memory" that host code
 * cannot touch:
 * - alloc returns page-aligned mmap'd regions filled with a NaN pattern
 *   (device memory is not zeroed) and kept PROT_NONE except while one of the
 *   simulator's own entries (an op, upload, download) runs, so any access from
 *   host code (memcpy, a loop, a hook reading a device pointer) faults.
 * - Every op checks its operands: outputs and activation inputs must be
 *   tagged FK_DEVICE_CUDA and lie entirely inside a live allocation; the
 *   weight operands (linear/linear_act/linear_cat w and b, norm scales and
 *   affines, conv2d w and b, scale_cols s: the list in backend.h) may
 *   instead be host tensors (FK_DEVICE_CPU), which must be constant: the
 *   first time a host (pointer, size, dtype) is seen its contents are
 *   hashed (FNV-1a; for tensors over 256 KB the first and last 4 KB plus 64
 *   spread samples), and a later call that finds other contents aborts. That catches a runner passing a changing host buffer (a
 *   per-step vector) as a "weight", which a GPU backend would upload once
 *   and cache.
 * - upload / download check that the device side lies in a live allocation
 *   and the host side does not (a device-to-device copy is allowed and
 *   counted apart).
 * A violation prints the op and the operand to stderr and aborts: this is a
 * test tool, the only library code that prints and exits.
 *
 * The ops receive copies of the operand tensors with device FK_DEVICE_CPU.
 * supports() answers what the inner backend answers for the same dtypes and
 * shapes. cache_weight / uncache_weights / synchronize forward to the inner
 * backend; uncache_weights also forgets the recorded weight hashes (a
 * freed model's addresses may then hold another model's weights). Not
 * thread-safe (one runner at a time, as a device stream). The
 * wrapper does not own inner: destroy the wrapper (which frees any
 * allocation still live and reports it), then inner. */
#ifndef FK_BACKEND_DEVSIM_H
#define FK_BACKEND_DEVSIM_H

#include "backend/backend.h"

typedef struct fk_devsim_stats {
    int64_t ops;                  /* op calls */
    int64_t op_calls[FK_OP_COUNT];
    int64_t uploads, downloads;   /* calls */
    uint64_t bytes_uploaded;      /* host → device */
    uint64_t bytes_downloaded;    /* device → host */
    uint64_t bytes_d2d;           /* device → device through upload/download */
    uint64_t device_bytes;        /* live now (requested sizes) */
    uint64_t peak_device_bytes;
    int64_t live_allocs;
    int64_t weights_seen;         /* distinct host weights hashed */
} fk_devsim_stats;

/* NULL when out of memory. */
fk_backend *fk_backend_devsim_wrap(fk_backend *inner);
/* The wrapped backend. */
fk_backend *fk_backend_devsim_inner(fk_backend *sim);
/* True when be was made by fk_backend_devsim_wrap. */
bool fk_backend_is_devsim(const fk_backend *be);
void fk_backend_devsim_stats(const fk_backend *sim, fk_devsim_stats *out);
/* Forget the recorded weight hashes (a test that legitimately rewrites a
 * host weight between runs calls this in between). */
void fk_backend_devsim_forget_weights(fk_backend *sim);

#endif /* FK_BACKEND_DEVSIM_H */
