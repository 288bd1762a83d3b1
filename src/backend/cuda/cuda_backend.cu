/* cuda_backend: the CUDA op table, supports(), memory functions, the weight
 * cache, the scratch buffers, fk_backend_cuda_create and the queries of
 * backend_cuda.h. */
#include "backend/cuda/cuda_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int fk_cuda_sync_debug = 0;

void fk_cuda_fail(const char *file, int line, const char *what, const char *name,
                  const char *desc) {
    fprintf(stderr, "fluxkit: CUDA error at %s:%d: %s: %s (%s)\n", file, line, what,
            name ? name : "?", desc ? desc : "?");
    abort();
}

/* ---- queries ---- */

int fk_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError(); /* no driver / no device: not an error here */
        return 0;
    }
    return n > 0 ? n : 0;
}

bool fk_backend_cuda_available(void) { return true; }

const char *fk_cuda_device_describe(int device, char *buf, size_t n) {
    if (!buf || !n) return buf;
    int count = fk_cuda_device_count();
    if (device < 0 || device >= count) {
        snprintf(buf, n, "cuda:%d: no such device (%d found)", device, count);
        return buf;
    }
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, device) != cudaSuccess) {
        (void)cudaGetLastError();
        snprintf(buf, n, "cuda:%d: cannot read the device properties", device);
        return buf;
    }
    snprintf(buf, n, "%.96s (sm_%d%d, %d SMs, %.1f GiB)", p.name, p.major, p.minor,
             p.multiProcessorCount, (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    return buf;
}

static void fk_cuda_destroy(fk_backend *be);

/* The impl of a CUDA backend, NULL for any other backend. */
static fk_cuda_impl *fk_cuda_impl_checked(const fk_backend *be) {
    if (!be || be->destroy != fk_cuda_destroy) return NULL;
    return fk_cuda_impl_of(be);
}

void fk_backend_cuda_set_precision(fk_backend *be, int bf16) {
    fk_cuda_impl *im = fk_cuda_impl_checked(be);
    if (im) im->bf16 = bf16 != 0;
}

uint64_t fk_backend_cuda_naive_gemm_count(const fk_backend *be) {
    fk_cuda_impl *im = fk_cuda_impl_checked(be);
    return im ? im->n_naive_gemm : 0;
}

void fk_backend_cuda_set_test_hooks(fk_backend *be, size_t chunk_bytes, unsigned flags) {
    fk_cuda_impl *im = fk_cuda_impl_checked(be);
    if (!im) return;
    im->hook_chunk_bytes = chunk_bytes;
    im->hooks = flags & (FK_CUDA_HOOK_STAGE_WEIGHTS | FK_CUDA_HOOK_NAIVE_GEMM);
}

size_t fk_backend_cuda_weight_bytes(const fk_backend *be) {
    fk_cuda_impl *im = fk_cuda_impl_checked(be);
    return im ? im->wc_bytes : 0;
}

size_t fk_backend_cuda_scratch_bytes(const fk_backend *be) {
    fk_cuda_impl *im = fk_cuda_impl_checked(be);
    if (!im) return 0;
    size_t s = im->lt_ws ? FK_CU_LT_WORKSPACE : 0;
    for (int i = 0; i < FK_CU_SCR_COUNT; i++) s += im->scr_bytes[i];
    return s;
}

int fk_backend_cuda_device_index(const fk_backend *be) {
    fk_cuda_impl *im = fk_cuda_impl_checked(be);
    return im ? im->device : -1;
}

bool fk_backend_cuda_is_bf16(const fk_backend *be) {
    fk_cuda_impl *im = fk_cuda_impl_checked(be);
    return im && im->bf16;
}

static uint64_t fk_cuda_mem_now(const fk_backend *be) {
    fk_cuda_impl *im = fk_cuda_impl_of(be);
    return (uint64_t)im->wc_bytes + fk_backend_cuda_scratch_bytes(be) + im->alloc_bytes;
}

void fk_backend_cuda_memory(const fk_backend *be, uint64_t *now, uint64_t *peak) {
    fk_cuda_impl *im = fk_cuda_impl_checked(be);
    uint64_t n = im ? fk_cuda_mem_now(be) : 0;
    if (now) *now = n;
    if (peak) *peak = im ? (im->peak_bytes > n ? im->peak_bytes : n) : 0;
}

void fk_cuda_note_mem(fk_cuda_impl *im) {
    uint64_t n = (uint64_t)im->wc_bytes + im->alloc_bytes + (im->lt_ws ? FK_CU_LT_WORKSPACE : 0);
    for (int i = 0; i < FK_CU_SCR_COUNT; i++) n += im->scr_bytes[i];
    if (n > im->peak_bytes) im->peak_bytes = n;
}

/* ---- device, scratch ---- */

fk_cuda_impl *fk_cuda_enter(fk_backend *be) {
    fk_cuda_impl *im = fk_cuda_impl_of(be);
    int cur = -1;
    if (cudaGetDevice(&cur) != cudaSuccess || cur != im->device) FK_CU(cudaSetDevice(im->device));
    return im;
}

void *fk_cuda_scratch(fk_cuda_impl *im, int slot, size_t bytes) {
    FK_ASSERT(slot >= 0 && slot < FK_CU_SCR_COUNT);
    if (bytes <= im->scr_bytes[slot] && im->scr[slot]) return im->scr[slot];
    const size_t gran = (size_t)2 << 20;
    size_t nb = (bytes + gran - 1) / gran * gran;
    if (nb == 0) nb = gran;
    if (im->scr[slot]) {
        /* queued kernels may still read the old buffer */
        FK_CU(cudaStreamSynchronize(im->stream));
        FK_CU(cudaFree(im->scr[slot]));
        im->scr[slot] = NULL;
        im->scr_bytes[slot] = 0;
    }
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, nb);
    if (e != cudaSuccess) {
        char what[96];
        snprintf(what, sizeof(what), "growing scratch slot %d to %zu bytes", slot, nb);
        fk_cuda_fail(__FILE__, __LINE__, what, cudaGetErrorName(e), cudaGetErrorString(e));
    }
    im->scr[slot] = p;
    im->scr_bytes[slot] = nb;
    fk_cuda_note_mem(im);
    return p;
}

/* ---- weight cache ----
 * Key: (host pointer, dtype, shape). Open addressing with linear probing on
 * the pointer's hash; the table only grows (uncache_weights empties it). */

struct fk_cu_wentry {
    const void *host; /* NULL: empty slot */
    fk_dtype dt;
    int ndim;
    int64_t shape[FK_MAX_DIMS];
    void *dev;
    size_t bytes;
};

static size_t fk_cu_whash(const void *p) {
    uint64_t h = (uint64_t)(uintptr_t)p;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return (size_t)h;
}

static bool fk_cu_wmatch(const fk_cu_wentry *e, const fk_tensor *t) {
    if (e->host != t->data || e->dt != t->dtype || e->ndim != t->ndim) return false;
    for (int i = 0; i < t->ndim; i++)
        if (e->shape[i] != t->shape[i]) return false;
    return true;
}

static fk_cu_wentry *fk_cu_wfind(fk_cuda_impl *im, const fk_tensor *t) {
    if (!im->wc_cap) return NULL;
    size_t mask = im->wc_cap - 1;
    for (size_t i = fk_cu_whash(t->data) & mask;; i = (i + 1) & mask) {
        fk_cu_wentry *e = &im->wc[i];
        if (!e->host) return NULL;
        if (fk_cu_wmatch(e, t)) return e;
    }
}

/* Room for one more entry (load factor <= 1/2). False when out of memory. */
static bool fk_cu_wreserve(fk_cuda_impl *im) {
    if ((im->wc_n + 1) * 2 <= im->wc_cap) return true;
    size_t cap = im->wc_cap ? im->wc_cap * 2 : 256;
    fk_cu_wentry *nt = (fk_cu_wentry *)calloc(cap, sizeof(*nt));
    if (!nt) return false;
    for (size_t i = 0; i < im->wc_cap; i++) {
        fk_cu_wentry *e = &im->wc[i];
        if (!e->host) continue;
        size_t j = fk_cu_whash(e->host) & (cap - 1);
        while (nt[j].host) j = (j + 1) & (cap - 1);
        nt[j] = *e;
    }
    free(im->wc);
    im->wc = nt;
    im->wc_cap = cap;
    return true;
}

/* bytes of host memory src to device memory dst, on the stream. Large
 * uploads (weights) go through two pinned buffers in turn: a chunk is
 * copied into one by all host threads (fk_copy_parallel) while the DMA of
 * the chunk before it runs from the other, so the copy runs at the pinned
 * rate instead of the driver's staging of pageable memory (~8-10 GB/s from
 * an mmapped file on an H100 host). Returns once src may change (as a
 * pageable cudaMemcpyAsync does). */
static void fk_cuda_h2d(fk_cuda_impl *im, void *dst, const void *src, size_t bytes) {
    if (bytes >= FK_CU_PIN_MIN && !im->pin_off && !im->pin[0]) {
        bool ok = true;
        for (int i = 0; i < 2 && ok; i++)
            ok = cudaMallocHost(&im->pin[i], FK_CU_PIN_BYTES) == cudaSuccess &&
                 cudaEventCreateWithFlags(&im->pin_ev[i], cudaEventDisableTiming) == cudaSuccess;
        if (!ok) { /* no pinned memory: the driver's staging */
            (void)cudaGetLastError();
            for (int i = 0; i < 2; i++) {
                if (im->pin[i]) (void)cudaFreeHost(im->pin[i]);
                if (im->pin_ev[i]) (void)cudaEventDestroy(im->pin_ev[i]);
                im->pin[i] = NULL, im->pin_ev[i] = NULL;
            }
            im->pin_off = true;
        }
    }
    if (bytes < FK_CU_PIN_MIN || im->pin_off) {
        FK_CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, im->stream));
        return;
    }
    for (size_t off = 0, k = 0; off < bytes; off += FK_CU_PIN_BYTES, k++) {
        const int b = (int)(k & 1);
        const size_t n = bytes - off < FK_CU_PIN_BYTES ? bytes - off : FK_CU_PIN_BYTES;
        FK_CU(cudaEventSynchronize(im->pin_ev[b])); /* its previous DMA is done */
        fk_copy_parallel(im->pin[b], (const char *)src + off, n);
        FK_CU(cudaMemcpyAsync((char *)dst + off, im->pin[b], n, cudaMemcpyHostToDevice,
                              im->stream));
        FK_CU(cudaEventRecord(im->pin_ev[b], im->stream));
    }
}

/* The cached copy of host tensor t, made now if new; NULL when it cannot be
 * allocated (the caller stages instead). */
static fk_cu_wentry *fk_cu_wget(fk_cuda_impl *im, const fk_tensor *t) {
    fk_cu_wentry *e = fk_cu_wfind(im, t);
    if (e) return e;
    FK_ASSERT(t->ndim >= 0 && t->ndim <= FK_MAX_DIMS);
    size_t bytes = fk_tensor_nbytes(t);
    if (!fk_cu_wreserve(im)) return NULL;
    void *dev = NULL;
    if (cudaMalloc(&dev, bytes ? bytes : 256) != cudaSuccess) {
        (void)cudaGetLastError(); /* out of memory is not sticky */
        return NULL;
    }
    /* returns once the data is staged (the host weight is constant by
     * contract, so a pinned source needs no wait either) */
    if (bytes) fk_cuda_h2d(im, dev, t->data, bytes);
    size_t mask = im->wc_cap - 1;
    size_t i = fk_cu_whash(t->data) & mask;
    while (im->wc[i].host) i = (i + 1) & mask;
    e = &im->wc[i];
    e->host = t->data;
    e->dt = t->dtype;
    e->ndim = t->ndim;
    memset(e->shape, 0, sizeof(e->shape));
    for (int d = 0; d < t->ndim; d++) e->shape[d] = t->shape[d];
    e->dev = dev;
    e->bytes = bytes;
    im->wc_n++;
    im->wc_bytes += bytes;
    fk_cuda_note_mem(im);
    return e;
}

fk_cu_wptr fk_cuda_weight(fk_backend *be, const fk_tensor *t, int stage_slot) {
    fk_cuda_impl *im = fk_cuda_impl_of(be);
    FK_ASSERT(t && fk_dtype_is_float(t->dtype));
    fk_cu_wptr r = {t->data, t->dtype};
    if (t->device == FK_DEVICE_CUDA) return r;
    FK_ASSERT(t->device == FK_DEVICE_CPU);
    const bool stage = (im->hooks & FK_CUDA_HOOK_STAGE_WEIGHTS) != 0; /* test hook */
    fk_cu_wentry *e = t->data && !stage ? fk_cu_wget(im, t) : NULL;
    if (e) {
        r.p = e->dev;
        return r;
    }
    /* no room for a copy: upload to a staging buffer for this call */
    size_t bytes = fk_tensor_nbytes(t);
    void *p = fk_cuda_scratch(im, stage_slot, bytes);
    if (bytes) fk_cuda_h2d(im, p, t->data, bytes);
    r.p = p;
    return r;
}

static size_t fk_cuda_cache_weight(fk_backend *be, const fk_tensor *w) {
    fk_cuda_impl *im = fk_cuda_enter(be);
    if (!w || !w->data || w->device != FK_DEVICE_CPU || !fk_dtype_is_float(w->dtype)) return 0;
    fk_cu_wentry *e = fk_cu_wget(im, w);
    return e ? e->bytes : 0;
}

static void fk_cuda_uncache_weights(fk_backend *be) {
    fk_cuda_impl *im = fk_cuda_enter(be);
    if (!im->wc_n) return;
    FK_CU(cudaStreamSynchronize(im->stream));
    for (size_t i = 0; i < im->wc_cap; i++) {
        fk_cu_wentry *e = &im->wc[i];
        if (!e->host) continue;
        FK_CU(cudaFree(e->dev));
        memset(e, 0, sizeof(*e));
    }
    im->wc_n = 0;
    im->wc_bytes = 0;
}

/* The scratch slots freed (they grow again on the next op that needs them);
 * the cuBLASLt workspace stays: every product needs it. */
static void fk_cuda_release_scratch(fk_backend *be) {
    fk_cuda_impl *im = fk_cuda_enter(be);
    FK_CU(cudaStreamSynchronize(im->stream)); /* queued kernels may still read them */
    for (int i = 0; i < FK_CU_SCR_COUNT; i++) {
        if (im->scr[i]) FK_CU(cudaFree(im->scr[i]));
        im->scr[i] = NULL;
        im->scr_bytes[i] = 0;
    }
}

/* ---- memory ---- */

static void *fk_cuda_alloc(fk_backend *be, size_t bytes) {
    fk_cuda_impl *im = fk_cuda_enter(be);
    if (im->n_allocs == im->cap_allocs) { /* room to record it first */
        size_t cap = im->cap_allocs ? im->cap_allocs * 2 : 64;
        void *na = realloc(im->allocs, cap * sizeof(*im->allocs));
        if (!na) return NULL;
        im->allocs = (fk_cu_alloc *)na;
        im->cap_allocs = cap;
    }
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 256) != cudaSuccess) {
        (void)cudaGetLastError();
        return NULL;
    }
    im->allocs[im->n_allocs].p = p;
    im->allocs[im->n_allocs].bytes = bytes;
    im->n_allocs++;
    im->alloc_bytes += bytes;
    fk_cuda_note_mem(im);
    return p;
}

static void fk_cuda_free(fk_backend *be, void *p) {
    if (!p) return;
    fk_cuda_impl *im = fk_cuda_enter(be);
    FK_CU(cudaStreamSynchronize(im->stream)); /* queued ops may still use p */
    FK_CU(cudaFree(p));
    for (size_t i = im->n_allocs; i-- > 0;) /* most recent first */
        if (im->allocs[i].p == p) {
            im->alloc_bytes -= im->allocs[i].bytes;
            im->allocs[i] = im->allocs[--im->n_allocs];
            break;
        }
}

/* host → device (or device → device): queued on the stream. A pageable
 * source is staged before cudaMemcpyAsync returns; a page-locked one is
 * read asynchronously, so wait for it: the caller may reuse it at once. */
static void fk_cuda_upload(fk_backend *be, void *dst, const void *src, size_t nbytes) {
    fk_cuda_impl *im = fk_cuda_enter(be);
    if (!nbytes || dst == src) return;
    FK_CU(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDefault, im->stream));
    cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, src) != cudaSuccess) {
        (void)cudaGetLastError();
        return;
    }
    if (a.type == cudaMemoryTypeHost) FK_CU(cudaStreamSynchronize(im->stream));
}

/* device → host: waits for every queued op, then for the copy */
static void fk_cuda_download(fk_backend *be, void *dst, const void *src, size_t nbytes) {
    fk_cuda_impl *im = fk_cuda_enter(be);
    if (!nbytes || dst == src) return;
    FK_CU(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDefault, im->stream));
    FK_CU(cudaStreamSynchronize(im->stream));
}

static void fk_cuda_synchronize(fk_backend *be) {
    fk_cuda_impl *im = fk_cuda_enter(be);
    FK_CU(cudaStreamSynchronize(im->stream));
}

/* ---- supports ---- */

static const fk_tensor *fk_cu_src(const fk_tensor *const *srcs, int n, int i) {
    return (srcs && i < n) ? srcs[i] : NULL;
}

/* operand i absent, or an f32 device tensor */
static bool fk_cu_act_ok(const fk_tensor *const *srcs, int n, int i) {
    const fk_tensor *t = fk_cu_src(srcs, n, i);
    return !t || (t->device == FK_DEVICE_CUDA && t->dtype == FK_F32);
}

/* operands [first, end) each absent or an f32 device tensor */
static bool fk_cu_acts_from(const fk_tensor *const *srcs, int n, int first, int end) {
    for (int i = first; i < end; i++)
        if (!fk_cu_act_ok(srcs, n, i)) return false;
    return true;
}

static bool fk_cu_acts_ok(const fk_tensor *const *srcs, int n, int count) {
    return fk_cu_acts_from(srcs, n, 0, count);
}

/* the first `count` operands of a product (y, x or y, x1, x2), the output
 * of an op that feeds a product's x (layernorm_modulate's y, attention's
 * out), attention's q, k, v (its products take them in bf16) and the output
 * that feeds them (rmsnorm_rope's y): absent, f32 device tensors, or — in
 * bf16 mode, where the consumer rounds its operand to bf16 nearest-even and
 * a bf16 output is the f32 result rounded the same way (backend.h's bf16
 * activations) — bf16 device tensors */
static bool fk_cu_product_acts_ok(const fk_backend *be, const fk_tensor *const *srcs, int n,
                                  int count) {
    const bool bf16 = fk_cuda_impl_of(be)->bf16 && fk_cuda_impl_of(be)->bf16_io;
    for (int i = 0; i < count; i++) {
        const fk_tensor *t = fk_cu_src(srcs, n, i);
        if (!t || fk_cu_act_ok(srcs, n, i)) continue;
        if (!(bf16 && t->device == FK_DEVICE_CUDA && t->dtype == FK_BF16)) return false;
    }
    return true;
}

/* operand i absent, or a float tensor on the host or the device */
static bool fk_cu_weight_ok(const fk_tensor *const *srcs, int n, int i) {
    const fk_tensor *t = fk_cu_src(srcs, n, i);
    return !t || ((t->device == FK_DEVICE_CPU || t->device == FK_DEVICE_CUDA) &&
                  fk_dtype_is_float(t->dtype));
}

/* the first `count` operands that are present: device tensors of one dtype */
static bool fk_cu_same_dtype_dev(const fk_tensor *const *srcs, int n, int count) {
    int first = -1;
    for (int i = 0; i < count; i++) {
        const fk_tensor *t = fk_cu_src(srcs, n, i);
        if (!t) continue;
        if (t->device != FK_DEVICE_CUDA) return false;
        if (first < 0) first = (int)t->dtype;
        else if ((int)t->dtype != first) return false;
    }
    return true;
}

static bool fk_cuda_supports(const fk_backend *be, fk_op op, const fk_tensor *const *srcs,
                             int n) {
    for (int i = 0; srcs && i < n; i++) /* no tiled bf16 activations here (row-major only) */
        if (srcs[i] && srcs[i]->layout != FK_LAYOUT_ROWS) return false;
    switch (op) {
    case FK_OP_LINEAR:     /* y, x, w, b */
    case FK_OP_LINEAR_ACT: /* y, x, w, b */
        return fk_cu_product_acts_ok(be, srcs, n, 2) && fk_cu_weight_ok(srcs, n, 2) &&
               fk_cu_weight_ok(srcs, n, 3);
    case FK_OP_LAYERNORM:  /* y, x, w, b */
    case FK_OP_CONV2D:     /* y, x, w, b */
    case FK_OP_GROUP_NORM: /* y, x, w, b */
        return fk_cu_acts_ok(srcs, n, 2) && fk_cu_weight_ok(srcs, n, 2) &&
               fk_cu_weight_ok(srcs, n, 3);
    case FK_OP_LINEAR_CAT: /* y, x1, x2, w, b */
        return fk_cu_product_acts_ok(be, srcs, n, 3) && fk_cu_weight_ok(srcs, n, 3) &&
               fk_cu_weight_ok(srcs, n, 4);
    case FK_OP_RMSNORM: /* y, x, scale */
        return fk_cu_acts_ok(srcs, n, 2) && fk_cu_weight_ok(srcs, n, 2);
    case FK_OP_RMSNORM_ROPE: /* y (bf16: attention's q, k), x, scale, pe */
        return fk_cu_product_acts_ok(be, srcs, n, 1) && fk_cu_act_ok(srcs, n, 1) &&
               fk_cu_weight_ok(srcs, n, 2) && fk_cu_act_ok(srcs, n, 3);
    case FK_OP_LAYERNORM_MODULATE: /* y (bf16: backend.h's bf16 activations), x, shift, scale */
        return fk_cu_product_acts_ok(be, srcs, n, 1) && fk_cu_acts_from(srcs, n, 1, 4);
    case FK_OP_MODULATE: /* y, x, shift, scale */
        return fk_cu_acts_ok(srcs, n, 4);
    case FK_OP_SILU:
    case FK_OP_GELU_TANH:
    case FK_OP_GELU_QUICK:
    case FK_OP_SOFTMAX:
    case FK_OP_ROPE:               /* x, pe */
    case FK_OP_UPSAMPLE_NEAREST2X: /* y, x */
        return fk_cu_acts_ok(srcs, n, 2);
    case FK_OP_ATTENTION: /* out, q, k, v (each bf16 as layernorm_modulate's y), bias */
        return fk_cu_product_acts_ok(be, srcs, n, 4) && fk_cu_acts_from(srcs, n, 4, 5);
    case FK_OP_ADD:
    case FK_OP_MUL:                                          /* y, a, b */
    case FK_OP_GATED_ADD: return fk_cu_acts_ok(srcs, n, 3); /* x, y, gate */
    case FK_OP_CONCAT_ROWS:                                  /* out, a, b */
    case FK_OP_SPLIT_ROWS: return fk_cu_same_dtype_dev(srcs, n, 3); /* a, b, in */
    case FK_OP_COPY_COLS: return fk_cu_same_dtype_dev(srcs, n, 2);  /* dst, src */
    case FK_OP_TRANSPOSE: return fk_cu_acts_ok(srcs, n, 2);           /* y, x */
    case FK_OP_SCALE_COLS:                                            /* y, x, s */
        return fk_cu_acts_ok(srcs, n, 2) && fk_cu_weight_ok(srcs, n, 2);
    case FK_OP_LINEAR_RMSNORM_ROPE: return false; /* not in the table: linear, rmsnorm_rope */
    case FK_OP_COUNT: break;
    }
    return false;
}

/* ---- create / destroy ---- */

static void fk_cuda_impl_release(fk_cuda_impl *im) {
    if (!im) return;
    if (im->stream) (void)cudaStreamSynchronize(im->stream);
    for (size_t i = 0; i < im->wc_cap; i++)
        if (im->wc[i].host) (void)cudaFree(im->wc[i].dev);
    free(im->wc);
    free(im->allocs); /* the caller's tensors stay theirs (freed with be->free before) */
    for (int i = 0; i < FK_CU_SCR_COUNT; i++)
        if (im->scr[i]) (void)cudaFree(im->scr[i]);
    if (im->lt_ws) (void)cudaFree(im->lt_ws);
    fk_cuda_plans_free(im);
    if (im->lt) (void)cublasLtDestroy(im->lt);
    for (int i = 0; i < 2; i++) {
        if (im->pin[i]) (void)cudaFreeHost(im->pin[i]);
        if (im->pin_ev[i]) (void)cudaEventDestroy(im->pin_ev[i]);
    }
    if (im->stream) (void)cudaStreamDestroy(im->stream);
    (void)cudaGetLastError();
    free(im);
}

static void fk_cuda_destroy(fk_backend *be) {
    if (!be) return;
    fk_cuda_impl *im = fk_cuda_impl_of(be);
    if (im) {
        int cur = -1;
        if (cudaGetDevice(&cur) != cudaSuccess || cur != im->device) (void)cudaSetDevice(im->device);
        fk_cuda_impl_release(im);
    }
    free(be);
}

/* Set in cuda_attention.cu: raise the flash kernels' shared-memory limit and
 * check that this build has code for the device. */
bool fk_cuda_attention_setup(fk_cuda_impl *im, char *err, size_t errlen);

#define FK_CU_ERR(...)                                                                             \
    do {                                                                                           \
        if (err && errlen) snprintf(err, errlen, __VA_ARGS__);                                     \
    } while (0)

fk_backend *fk_backend_cuda_create(int device, char *err, size_t errlen) {
    const char *dbg = getenv("FK_CUDA_SYNC");
    fk_cuda_sync_debug = dbg && dbg[0] && strcmp(dbg, "0") != 0;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        FK_CU_ERR("cuda:%d: no usable CUDA device (%s: %s)", device, cudaGetErrorName(e),
                  cudaGetErrorString(e));
        return NULL;
    }
    if (device < 0 || device >= count) {
        FK_CU_ERR("cuda:%d: no such device (%d CUDA device%s found)", device, count,
                  count == 1 ? "" : "s");
        return NULL;
    }
    cudaDeviceProp prop;
    if ((e = cudaSetDevice(device)) != cudaSuccess ||
        (e = cudaGetDeviceProperties(&prop, device)) != cudaSuccess) {
        (void)cudaGetLastError();
        FK_CU_ERR("cuda:%d: cannot initialize the device (%s: %s)", device, cudaGetErrorName(e),
                  cudaGetErrorString(e));
        return NULL;
    }
    if (prop.major < 8) {
        FK_CU_ERR("cuda:%d: %s has compute capability %d.%d; the CUDA backend needs 8.0 or newer "
                  "(bf16 tensor cores)",
                  device, prop.name, prop.major, prop.minor);
        return NULL;
    }
    fk_backend *be = (fk_backend *)calloc(1, sizeof(*be));
    fk_cuda_impl *im = (fk_cuda_impl *)calloc(1, sizeof(*im));
    if (!be || !im) {
        free(be);
        free(im);
        FK_CU_ERR("cuda:%d: out of host memory", device);
        return NULL;
    }
    im->device = device;
    im->bf16 = true;
    /* FK_CUDA_BF16_IO=0: products take f32 activations only (A/B measurements) */
    const char *io = getenv("FK_CUDA_BF16_IO");
    im->bf16_io = !(io && strcmp(io, "0") == 0);
    /* FK_CUDA_PINNED=0: weights uploaded from pageable memory as they are */
    const char *pin = getenv("FK_CUDA_PINNED");
    im->pin_off = pin && strcmp(pin, "0") == 0;
    im->sm_count = prop.multiProcessorCount;
    im->cc_major = prop.major, im->cc_minor = prop.minor;
    im->smem_optin = prop.sharedMemPerBlockOptin;
    fk_cuda_device_describe(device, im->desc, sizeof(im->desc));
    cublasStatus_t ls = CUBLAS_STATUS_SUCCESS;
    if ((e = cudaStreamCreateWithFlags(&im->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        FK_CU_ERR("cuda:%d: cannot create a stream (%s)", device, cudaGetErrorString(e));
        goto fail;
    }
    if ((ls = cublasLtCreate(&im->lt)) != CUBLAS_STATUS_SUCCESS) {
        im->lt = NULL;
        FK_CU_ERR("cuda:%d: cuBLASLt initialization failed (%s)", device,
                  cublasLtGetStatusString(ls));
        goto fail;
    }
    if ((e = cudaMalloc(&im->lt_ws, FK_CU_LT_WORKSPACE)) != cudaSuccess) {
        im->lt_ws = NULL;
        FK_CU_ERR("cuda:%d: out of device memory (cuBLASLt workspace, %zu MiB)", device,
                  FK_CU_LT_WORKSPACE >> 20);
        goto fail;
    }
    if (!fk_cuda_attention_setup(im, err, errlen)) goto fail;

    be->name = "cuda";
    be->device = FK_DEVICE_CUDA;
    be->n_threads = 1;
    be->impl = im;
    be->supports = fk_cuda_supports;
    be->destroy = fk_cuda_destroy;
    be->alloc = fk_cuda_alloc;
    be->free = fk_cuda_free;
    be->upload = fk_cuda_upload;
    be->download = fk_cuda_download;
    be->synchronize = fk_cuda_synchronize;
    be->cache_weight = fk_cuda_cache_weight;
    be->uncache_weights = fk_cuda_uncache_weights;
    be->release_scratch = fk_cuda_release_scratch;

    be->linear = fk_cuda_linear; /* cuda_linear.cu */
    be->linear_act = fk_cuda_linear_act;
    be->linear_cat = fk_cuda_linear_cat;
    be->attention = fk_cuda_attention; /* cuda_attention.cu */
    be->layernorm = fk_cuda_layernorm; /* cuda_elementwise.cu */
    be->rmsnorm = fk_cuda_rmsnorm;
    be->layernorm_modulate = fk_cuda_layernorm_modulate;
    be->rmsnorm_rope = fk_cuda_rmsnorm_rope;
    be->softmax = fk_cuda_softmax;
    be->silu = fk_cuda_silu;
    be->gelu_tanh = fk_cuda_gelu_tanh;
    be->gelu_quick = fk_cuda_gelu_quick;
    be->rope = fk_cuda_rope;
    be->add = fk_cuda_add;
    be->mul = fk_cuda_mul;
    be->modulate = fk_cuda_modulate;
    be->gated_add = fk_cuda_gated_add;
    be->concat_rows = fk_cuda_concat_rows;
    be->split_rows = fk_cuda_split_rows;
    be->copy_cols = fk_cuda_copy_cols;
    be->conv2d = fk_cuda_conv2d; /* cuda_conv.cu */
    be->group_norm = fk_cuda_group_norm;
    be->upsample_nearest2x = fk_cuda_upsample_nearest2x;
    be->transpose = fk_cuda_transpose; /* cuda_elementwise.cu */
    be->scale_cols = fk_cuda_scale_cols;
    fk_cuda_note_mem(im);
    return be;

fail:
    fk_cuda_impl_release(im);
    free(be);
    return NULL;
}
