/* devsim: a simulated device backend over the CPU ops (see devsim.h). */
#include "backend/devsim.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define FK_DS_POISON 0xFF          /* f32 NaN in every word of fresh device memory */
#define FK_DS_FULL_HASH (256u << 10) /* hash every byte of host weights up to this size */
#define FK_DS_MAX_SRCS 16

typedef struct fk_ds_region {
    char *base;
    size_t size;   /* requested bytes */
    size_t mapped; /* size rounded up to whole pages */
} fk_ds_region;

/* A host weight seen by an op: key (p, n, dtype), content hash h. */
typedef struct fk_ds_weight {
    const void *p;
    size_t n;
    int dtype;
    uint64_t h;
} fk_ds_weight;

typedef struct fk_ds {
    fk_backend *inner;
    fk_ds_region *reg;
    int n_reg, cap_reg;
    fk_ds_weight *wt; /* open addressing, power-of-two capacity */
    size_t wt_cap, wt_n;
    bool open;        /* regions readable/writable (inside one of our calls) */
    size_t page;
    fk_devsim_stats st;
} fk_ds;

static const char fk_ds_tag[] = "devsim";

static fk_ds *fk_ds_of(const fk_backend *be) { return (fk_ds *)be->impl; }

/* ---- violations ---- */

static void fk_ds_fail(const char *what, const char *operand, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));
static void fk_ds_fail(const char *what, const char *operand, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "devsim: %s: operand %s: ", what, operand);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
    abort();
}

static const char *fk_ds_dev_name(fk_device d) {
    return d == FK_DEVICE_CPU ? "cpu" : d == FK_DEVICE_CUDA ? "cuda" : "unknown";
}

/* ---- regions ---- */

static void fk_ds_protect(fk_ds *d, int prot) {
    for (int i = 0; i < d->n_reg; i++)
        if (mprotect(d->reg[i].base, d->reg[i].mapped, prot) != 0)
            fk_ds_fail("mprotect", "region", "failed on %p (%zu bytes)", (void *)d->reg[i].base,
                       d->reg[i].mapped);
}

static void fk_ds_enter(fk_ds *d, const char *what) {
    if (d->open) fk_ds_fail(what, "-", "re-entered while another simulator call runs");
    fk_ds_protect(d, PROT_READ | PROT_WRITE);
    d->open = true;
}

static void fk_ds_leave(fk_ds *d) {
    fk_ds_protect(d, PROT_NONE);
    d->open = false;
}

/* The region that overlaps [p, p + n) (n >= 1), or NULL. */
static const fk_ds_region *fk_ds_overlap(const fk_ds *d, const void *p, size_t n) {
    const char *a = p;
    for (int i = 0; i < d->n_reg; i++) {
        const fk_ds_region *r = &d->reg[i];
        if (a < r->base + r->mapped && a + n > r->base) return r;
    }
    return NULL;
}

/* [p, p + n) must lie inside one live allocation. */
static void fk_ds_check_device_range(const fk_ds *d, const char *what, const char *operand,
                                     const void *p, size_t n) {
    if (n == 0) return;
    if (!p) fk_ds_fail(what, operand, "NULL data on the device");
    const fk_ds_region *r = fk_ds_overlap(d, p, n);
    if (!r)
        fk_ds_fail(what, operand, "%p (%zu bytes) is not in any live device allocation", p, n);
    const char *a = p;
    if (a < r->base)
        fk_ds_fail(what, operand, "%p starts %zu bytes before its allocation %p", p,
                   (size_t)(r->base - a), (void *)r->base);
    if (a + n > r->base + r->size)
        fk_ds_fail(what, operand, "%p + %zu bytes ends %zu bytes past its allocation %p (%zu bytes)",
                   p, n, (size_t)(a + n - (r->base + r->size)), (void *)r->base, r->size);
}

/* ---- host weights: constant contents ---- */

static uint64_t fk_ds_fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static uint64_t fk_ds_content_hash(const void *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    if (n <= FK_DS_FULL_HASH) return fk_ds_fnv(h, p, n);
    const char *c = p;
    h = fk_ds_fnv(h, c, 4096);
    h = fk_ds_fnv(h, c + n - 4096, 4096);
    for (size_t i = 0; i < 64; i++) h = fk_ds_fnv(h, c + (n - 64) / 63 * i, 64);
    return fk_ds_fnv(h, &n, sizeof(n));
}

static size_t fk_ds_key_slot(const void *p, size_t n, int dtype, size_t cap) {
    uint64_t k = (uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ULL;
    k ^= (uint64_t)n * 0xC2B2AE3D27D4EB4FULL + (uint64_t)dtype;
    k ^= k >> 29;
    return (size_t)k & (cap - 1);
}

static bool fk_ds_wt_grow(fk_ds *d) {
    size_t cap = d->wt_cap ? d->wt_cap * 2 : 1024;
    fk_ds_weight *t = calloc(cap, sizeof(*t));
    if (!t) return false;
    for (size_t i = 0; i < d->wt_cap; i++) {
        const fk_ds_weight *e = &d->wt[i];
        if (!e->p) continue;
        size_t s = fk_ds_key_slot(e->p, e->n, e->dtype, cap);
        while (t[s].p) s = (s + 1) & (cap - 1);
        t[s] = *e;
    }
    free(d->wt);
    d->wt = t;
    d->wt_cap = cap;
    return true;
}

static void fk_ds_check_weight(fk_ds *d, const char *what, const char *operand, const fk_tensor *t) {
    const size_t n = fk_tensor_nbytes(t);
    if (n == 0) return;
    if (fk_ds_overlap(d, t->data, n))
        fk_ds_fail(what, operand, "tagged cpu (a host weight) but %p points into device memory",
                   t->data);
    const uint64_t h = fk_ds_content_hash(t->data, n);
    if ((d->wt_n + 1) * 2 > d->wt_cap && !fk_ds_wt_grow(d))
        fk_ds_fail(what, operand, "out of memory for the weight table");
    size_t s = fk_ds_key_slot(t->data, n, (int)t->dtype, d->wt_cap);
    for (;; s = (s + 1) & (d->wt_cap - 1)) {
        fk_ds_weight *e = &d->wt[s];
        if (!e->p) {
            *e = (fk_ds_weight){.p = t->data, .n = n, .dtype = (int)t->dtype, .h = h};
            d->wt_n++;
            d->st.weights_seen++;
            return;
        }
        if (e->p == t->data && e->n == n && e->dtype == (int)t->dtype) {
            if (e->h != h) {
                char shape[96];
                fk_ds_fail(what, operand,
                           "host weight %p %s %s changed since it was first used (a changing host "
                           "buffer passed as a weight: upload it to device memory instead; or the "
                           "model that held this address was freed without be->uncache_weights, "
                           "and a backend caching weights by pointer would now use a stale copy)",
                           t->data, fk_dtype_name(t->dtype), fk_shape_str(t, shape, sizeof(shape)));
            }
            return;
        }
    }
}

/* ---- operands ---- */

/* An activation operand (output or input): on the device, inside a live
 * allocation. Returns a copy tagged cpu for the inner op, or NULL for NULL. */
static fk_tensor *fk_ds_act(fk_ds *d, fk_op op, const char *operand, const fk_tensor *t,
                            fk_tensor *copy) {
    if (!t) return NULL;
    const char *what = fk_op_name(op);
    if (t->device != FK_DEVICE_CUDA) {
        char shape[96];
        fk_ds_fail(what, operand, "%s %s tensor %p tagged %s: activations must be device tensors",
                   fk_dtype_name(t->dtype), fk_shape_str(t, shape, sizeof(shape)), t->data,
                   fk_ds_dev_name(t->device));
    }
    fk_ds_check_device_range(d, what, operand, t->data, fk_tensor_nbytes(t));
    *copy = *t;
    copy->device = FK_DEVICE_CPU;
    return copy;
}

/* A weight operand: a device tensor (checked as an activation) or a constant
 * host tensor. */
static const fk_tensor *fk_ds_wgt(fk_ds *d, fk_op op, const char *operand, const fk_tensor *t,
                                  fk_tensor *copy) {
    if (!t) return NULL;
    if (t->device == FK_DEVICE_CUDA) return fk_ds_act(d, op, operand, t, copy);
    if (t->device != FK_DEVICE_CPU)
        fk_ds_fail(fk_op_name(op), operand, "unknown device %d", (int)t->device);
    if (t->data) fk_ds_check_weight(d, fk_op_name(op), operand, t);
    *copy = *t;
    return copy;
}

#define FK_DS_BEGIN(opv)                                                                      \
    fk_ds *d_ = fk_ds_of(be);                                                                 \
    fk_backend *in_ = d_->inner;                                                              \
    const fk_op op_ = (opv)
#define FK_DS_ACT(t) fk_ds_act(d_, op_, #t, (t), &c_##t)
#define FK_DS_WGT(t) fk_ds_wgt(d_, op_, #t, (t), &c_##t)
#define FK_DS_CALL(call)                                                                      \
    do {                                                                                      \
        fk_ds_enter(d_, fk_op_name(op_));                                                     \
        call;                                                                                 \
        fk_ds_leave(d_);                                                                      \
        d_->st.ops++;                                                                         \
        d_->st.op_calls[op_]++;                                                               \
    } while (0)

/* ---- ops ---- */

static void fk_ds_linear(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                         const fk_tensor *b) {
    FK_DS_BEGIN(FK_OP_LINEAR);
    fk_tensor c_y, c_x, c_w, c_b;
    fk_tensor *py = FK_DS_ACT(y);
    const fk_tensor *px = FK_DS_ACT(x), *pw = FK_DS_WGT(w), *pb = FK_DS_WGT(b);
    FK_DS_CALL(in_->linear(in_, py, px, pw, pb));
}

static void fk_ds_linear_act(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                             const fk_tensor *b, fk_act act) {
    FK_DS_BEGIN(FK_OP_LINEAR_ACT);
    fk_tensor c_y, c_x, c_w, c_b;
    fk_tensor *py = FK_DS_ACT(y);
    const fk_tensor *px = FK_DS_ACT(x), *pw = FK_DS_WGT(w), *pb = FK_DS_WGT(b);
    FK_DS_CALL(in_->linear_act(in_, py, px, pw, pb, act));
}

static void fk_ds_linear_cat(fk_backend *be, fk_tensor *y, const fk_tensor *x1,
                             const fk_tensor *x2, const fk_tensor *w, const fk_tensor *b,
                             fk_tensor *tmp) {
    FK_DS_BEGIN(FK_OP_LINEAR_CAT);
    fk_tensor c_y, c_x1, c_x2, c_w, c_b, c_tmp;
    fk_tensor *py = FK_DS_ACT(y), *ptmp = FK_DS_ACT(tmp);
    const fk_tensor *px1 = FK_DS_ACT(x1), *px2 = FK_DS_ACT(x2), *pw = FK_DS_WGT(w),
                    *pb = FK_DS_WGT(b);
    FK_DS_CALL(in_->linear_cat(in_, py, px1, px2, pw, pb, ptmp));
}

static void fk_ds_layernorm(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                            const fk_tensor *b, float eps) {
    FK_DS_BEGIN(FK_OP_LAYERNORM);
    fk_tensor c_y, c_x, c_w, c_b;
    fk_tensor *py = FK_DS_ACT(y);
    const fk_tensor *px = FK_DS_ACT(x), *pw = FK_DS_WGT(w), *pb = FK_DS_WGT(b);
    FK_DS_CALL(in_->layernorm(in_, py, px, pw, pb, eps));
}

static void fk_ds_rmsnorm(fk_backend *be, fk_tensor *y, const fk_tensor *x,
                          const fk_tensor *scale, float eps) {
    FK_DS_BEGIN(FK_OP_RMSNORM);
    fk_tensor c_y, c_x, c_scale;
    fk_tensor *py = FK_DS_ACT(y);
    const fk_tensor *px = FK_DS_ACT(x), *ps = FK_DS_WGT(scale);
    FK_DS_CALL(in_->rmsnorm(in_, py, px, ps, eps));
}

#define FK_DS_UNARY(fname, field, opv)                                                        \
    static void fname(fk_backend *be, fk_tensor *y, const fk_tensor *x) {                     \
        FK_DS_BEGIN(opv);                                                                     \
        fk_tensor c_y, c_x;                                                                   \
        fk_tensor *py = FK_DS_ACT(y);                                                         \
        const fk_tensor *px = FK_DS_ACT(x);                                                   \
        FK_DS_CALL(in_->field(in_, py, px));                                                  \
    }
FK_DS_UNARY(fk_ds_silu, silu, FK_OP_SILU)
FK_DS_UNARY(fk_ds_gelu_tanh, gelu_tanh, FK_OP_GELU_TANH)
FK_DS_UNARY(fk_ds_gelu_quick, gelu_quick, FK_OP_GELU_QUICK)
FK_DS_UNARY(fk_ds_softmax, softmax, FK_OP_SOFTMAX)
FK_DS_UNARY(fk_ds_upsample, upsample_nearest2x, FK_OP_UPSAMPLE_NEAREST2X)

static void fk_ds_attention(fk_backend *be, fk_tensor *out, const fk_tensor *q, const fk_tensor *k,
                            const fk_tensor *v, const fk_tensor *bias, float scale, bool causal) {
    FK_DS_BEGIN(FK_OP_ATTENTION);
    fk_tensor c_out, c_q, c_k, c_v, c_bias;
    fk_tensor *po = FK_DS_ACT(out);
    const fk_tensor *pq = FK_DS_ACT(q), *pk = FK_DS_ACT(k), *pv = FK_DS_ACT(v),
                    *pb = FK_DS_ACT(bias);
    FK_DS_CALL(in_->attention(in_, po, pq, pk, pv, pb, scale, causal));
}

static void fk_ds_rope(fk_backend *be, fk_tensor *x, const fk_tensor *pe) {
    FK_DS_BEGIN(FK_OP_ROPE);
    fk_tensor c_x, c_pe;
    fk_tensor *px = FK_DS_ACT(x);
    const fk_tensor *ppe = FK_DS_ACT(pe);
    FK_DS_CALL(in_->rope(in_, px, ppe));
}

#define FK_DS_BINARY(fname, field, opv)                                                       \
    static void fname(fk_backend *be, fk_tensor *y, const fk_tensor *a, const fk_tensor *b) { \
        FK_DS_BEGIN(opv);                                                                     \
        fk_tensor c_y, c_a, c_b;                                                              \
        fk_tensor *py = FK_DS_ACT(y);                                                         \
        const fk_tensor *pa = FK_DS_ACT(a), *pb = FK_DS_ACT(b);                               \
        FK_DS_CALL(in_->field(in_, py, pa, pb));                                              \
    }
FK_DS_BINARY(fk_ds_add, add, FK_OP_ADD)
FK_DS_BINARY(fk_ds_mul, mul, FK_OP_MUL)

static void fk_ds_modulate(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *shift,
                           const fk_tensor *scale) {
    FK_DS_BEGIN(FK_OP_MODULATE);
    fk_tensor c_y, c_x, c_shift, c_scale;
    fk_tensor *py = FK_DS_ACT(y);
    const fk_tensor *px = FK_DS_ACT(x), *psh = FK_DS_ACT(shift), *psc = FK_DS_ACT(scale);
    FK_DS_CALL(in_->modulate(in_, py, px, psh, psc));
}

static void fk_ds_layernorm_modulate(fk_backend *be, fk_tensor *y, const fk_tensor *x,
                                     const fk_tensor *shift, const fk_tensor *scale, float eps) {
    FK_DS_BEGIN(FK_OP_LAYERNORM_MODULATE);
    fk_tensor c_y, c_x, c_shift, c_scale;
    fk_tensor *py = FK_DS_ACT(y);
    const fk_tensor *px = FK_DS_ACT(x), *psh = FK_DS_ACT(shift), *psc = FK_DS_ACT(scale);
    FK_DS_CALL(in_->layernorm_modulate(in_, py, px, psh, psc, eps));
}

static void fk_ds_rmsnorm_rope(fk_backend *be, fk_tensor *y, const fk_tensor *x,
                               const fk_tensor *scale, const fk_tensor *pe, float eps) {
    FK_DS_BEGIN(FK_OP_RMSNORM_ROPE);
    fk_tensor c_y, c_x, c_scale, c_pe;
    fk_tensor *py = FK_DS_ACT(y);
    const fk_tensor *px = FK_DS_ACT(x), *ps = FK_DS_WGT(scale), *ppe = FK_DS_ACT(pe);
    FK_DS_CALL(in_->rmsnorm_rope(in_, py, px, ps, ppe, eps));
}

static void fk_ds_linear_rmsnorm_rope(fk_backend *be, fk_tensor *y, const fk_tensor *x,
                                      const fk_tensor *w, const fk_tensor *b,
                                      const fk_tensor *scale, const fk_tensor *pe, float eps) {
    FK_DS_BEGIN(FK_OP_LINEAR_RMSNORM_ROPE);
    fk_tensor c_y, c_x, c_w, c_b, c_scale, c_pe;
    fk_tensor *py = FK_DS_ACT(y);
    const fk_tensor *px = FK_DS_ACT(x), *pw = FK_DS_WGT(w), *pb = FK_DS_WGT(b);
    const fk_tensor *ps = FK_DS_WGT(scale), *ppe = FK_DS_ACT(pe);
    FK_DS_CALL(in_->linear_rmsnorm_rope(in_, py, px, pw, pb, ps, ppe, eps));
}

static void fk_ds_gated_add(fk_backend *be, fk_tensor *x, const fk_tensor *y,
                            const fk_tensor *gate) {
    FK_DS_BEGIN(FK_OP_GATED_ADD);
    fk_tensor c_x, c_y, c_gate;
    fk_tensor *px = FK_DS_ACT(x);
    const fk_tensor *py = FK_DS_ACT(y), *pg = FK_DS_ACT(gate);
    FK_DS_CALL(in_->gated_add(in_, px, py, pg));
}

static void fk_ds_concat_rows(fk_backend *be, fk_tensor *out, const fk_tensor *a,
                              const fk_tensor *b) {
    FK_DS_BEGIN(FK_OP_CONCAT_ROWS);
    fk_tensor c_out, c_a, c_b;
    fk_tensor *po = FK_DS_ACT(out);
    const fk_tensor *pa = FK_DS_ACT(a), *pb = FK_DS_ACT(b);
    FK_DS_CALL(in_->concat_rows(in_, po, pa, pb));
}

static void fk_ds_split_rows(fk_backend *be, fk_tensor *a, fk_tensor *b, const fk_tensor *in) {
    FK_DS_BEGIN(FK_OP_SPLIT_ROWS);
    fk_tensor c_a, c_b, c_in;
    fk_tensor *pa = FK_DS_ACT(a), *pb = FK_DS_ACT(b);
    const fk_tensor *pi = FK_DS_ACT(in);
    FK_DS_CALL(in_->split_rows(in_, pa, pb, pi));
}

static void fk_ds_copy_cols(fk_backend *be, fk_tensor *dst, int64_t dc0, const fk_tensor *src,
                            int64_t sc0, int64_t n) {
    FK_DS_BEGIN(FK_OP_COPY_COLS);
    fk_tensor c_dst, c_src;
    fk_tensor *pd = FK_DS_ACT(dst);
    const fk_tensor *ps = FK_DS_ACT(src);
    FK_DS_CALL(in_->copy_cols(in_, pd, dc0, ps, sc0, n));
}

static void fk_ds_conv2d(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                         const fk_tensor *b, int stride, const int pad[4]) {
    FK_DS_BEGIN(FK_OP_CONV2D);
    fk_tensor c_y, c_x, c_w, c_b;
    fk_tensor *py = FK_DS_ACT(y);
    const fk_tensor *px = FK_DS_ACT(x), *pw = FK_DS_WGT(w), *pb = FK_DS_WGT(b);
    FK_DS_CALL(in_->conv2d(in_, py, px, pw, pb, stride, pad));
}

static void fk_ds_group_norm(fk_backend *be, fk_tensor *y, const fk_tensor *x, int groups,
                             const fk_tensor *w, const fk_tensor *b, float eps) {
    FK_DS_BEGIN(FK_OP_GROUP_NORM);
    fk_tensor c_y, c_x, c_w, c_b;
    fk_tensor *py = FK_DS_ACT(y);
    const fk_tensor *px = FK_DS_ACT(x), *pw = FK_DS_WGT(w), *pb = FK_DS_WGT(b);
    FK_DS_CALL(in_->group_norm(in_, py, px, groups, pw, pb, eps));
}

static void fk_ds_transpose(fk_backend *be, fk_tensor *y, const fk_tensor *x) {
    FK_DS_BEGIN(FK_OP_TRANSPOSE);
    fk_tensor c_y, c_x;
    fk_tensor *py = FK_DS_ACT(y);
    const fk_tensor *px = FK_DS_ACT(x);
    FK_DS_CALL(in_->transpose(in_, py, px));
}

static void fk_ds_scale_cols(fk_backend *be, fk_tensor *y, const fk_tensor *x,
                             const fk_tensor *s) {
    FK_DS_BEGIN(FK_OP_SCALE_COLS);
    fk_tensor c_y, c_x, c_s;
    fk_tensor *py = FK_DS_ACT(y);
    const fk_tensor *px = FK_DS_ACT(x), *ps = FK_DS_WGT(s);
    FK_DS_CALL(in_->scale_cols(in_, py, px, ps));
}

/* ---- memory ---- */

static void *fk_ds_alloc(fk_backend *be, size_t bytes) {
    fk_ds *d = fk_ds_of(be);
    if (d->open) fk_ds_fail("alloc", "-", "called while another simulator call runs");
    const size_t mapped = ((bytes ? bytes : 1) + d->page - 1) / d->page * d->page;
    if (d->n_reg == d->cap_reg) {
        int cap = d->cap_reg ? 2 * d->cap_reg : 16;
        fk_ds_region *r = realloc(d->reg, sizeof(*r) * (size_t)cap);
        if (!r) return NULL;
        d->reg = r;
        d->cap_reg = cap;
    }
    void *p = mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    memset(p, FK_DS_POISON, mapped); /* device memory is not zeroed */
    if (mprotect(p, mapped, PROT_NONE) != 0) {
        munmap(p, mapped);
        return NULL;
    }
    d->reg[d->n_reg++] = (fk_ds_region){.base = p, .size = bytes, .mapped = mapped};
    d->st.live_allocs++;
    d->st.device_bytes += bytes;
    if (d->st.device_bytes > d->st.peak_device_bytes) d->st.peak_device_bytes = d->st.device_bytes;
    return p;
}

static void fk_ds_free(fk_backend *be, void *p) {
    fk_ds *d = fk_ds_of(be);
    if (!p) return;
    if (d->open) fk_ds_fail("free", "-", "called while another simulator call runs");
    for (int i = 0; i < d->n_reg; i++) {
        if (d->reg[i].base != (char *)p) continue;
        munmap(d->reg[i].base, d->reg[i].mapped);
        d->st.live_allocs--;
        d->st.device_bytes -= d->reg[i].size;
        d->reg[i] = d->reg[--d->n_reg];
        return;
    }
    fk_ds_fail("free", "p", "%p is not the start of a live device allocation", p);
}

static void fk_ds_upload(fk_backend *be, void *dst, const void *src, size_t n) {
    fk_ds *d = fk_ds_of(be);
    if (!n) return;
    fk_ds_check_device_range(d, "upload", "dst", dst, n);
    const bool d2d = src && fk_ds_overlap(d, src, n);
    if (d2d) fk_ds_check_device_range(d, "upload", "src", src, n);
    else if (!src) fk_ds_fail("upload", "src", "NULL host pointer");
    fk_ds_enter(d, "upload");
    memmove(dst, src, n);
    fk_ds_leave(d);
    d->st.uploads++;
    if (d2d) d->st.bytes_d2d += n;
    else d->st.bytes_uploaded += n;
}

static void fk_ds_download(fk_backend *be, void *dst, const void *src, size_t n) {
    fk_ds *d = fk_ds_of(be);
    if (!n) return;
    fk_ds_check_device_range(d, "download", "src", src, n);
    const bool d2d = dst && fk_ds_overlap(d, dst, n);
    if (d2d) fk_ds_check_device_range(d, "download", "dst", dst, n);
    else if (!dst) fk_ds_fail("download", "dst", "NULL host pointer");
    fk_ds_enter(d, "download");
    memmove(dst, src, n);
    fk_ds_leave(d);
    d->st.downloads++;
    if (d2d) d->st.bytes_d2d += n;
    else d->st.bytes_downloaded += n;
}

static void fk_ds_synchronize(fk_backend *be) {
    fk_backend *in = fk_ds_of(be)->inner;
    if (in->synchronize) in->synchronize(in);
}

/* ---- non-op entries ---- */

static bool fk_ds_supports(const fk_backend *be, fk_op op, const fk_tensor *const *srcs, int n) {
    fk_backend *in = fk_ds_of(be)->inner;
    if (!in->supports) return true;
    if (!srcs) return in->supports(in, op, srcs, n);
    if (n > FK_DS_MAX_SRCS) return false;
    fk_tensor c[FK_DS_MAX_SRCS];
    const fk_tensor *p[FK_DS_MAX_SRCS];
    for (int i = 0; i < n; i++) {
        p[i] = NULL;
        if (!srcs[i]) continue;
        c[i] = *srcs[i];
        c[i].device = FK_DEVICE_CPU;
        p[i] = &c[i];
    }
    return in->supports(in, op, p, n);
}

static size_t fk_ds_cache_weight(fk_backend *be, const fk_tensor *w) {
    fk_ds *d = fk_ds_of(be);
    fk_backend *in = d->inner;
    if (!in->cache_weight || !w) return 0;
    fk_tensor cw = *w;
    if (w->device == FK_DEVICE_CUDA) {
        fk_ds_check_device_range(d, "cache_weight", "w", w->data, fk_tensor_nbytes(w));
        cw.device = FK_DEVICE_CPU;
        fk_ds_enter(d, "cache_weight");
        size_t n = in->cache_weight(in, &cw);
        fk_ds_leave(d);
        return n;
    }
    if (w->data) fk_ds_check_weight(d, "cache_weight", "w", w);
    return in->cache_weight(in, &cw);
}

static void fk_ds_release_scratch(fk_backend *be) {
    fk_backend *in = fk_ds_of(be)->inner;
    if (in->release_scratch) in->release_scratch(in);
}

/* Dropping the cached weights also ends the promise that host weights stay
 * constant: the recorded hashes are forgotten. */
static void fk_ds_uncache(fk_backend *be) {
    fk_backend *in = fk_ds_of(be)->inner;
    if (in->uncache_weights) in->uncache_weights(in);
    fk_backend_devsim_forget_weights(be);
}

static void fk_ds_destroy(fk_backend *be) {
    if (!be) return;
    fk_ds *d = fk_ds_of(be);
    if (d->n_reg)
        fprintf(stderr, "devsim: %d device allocation(s), %llu bytes, still live at destroy\n",
                d->n_reg, (unsigned long long)d->st.device_bytes);
    for (int i = 0; i < d->n_reg; i++) munmap(d->reg[i].base, d->reg[i].mapped);
    free(d->reg);
    free(d->wt);
    free(d);
    free(be);
}

/* ---- public ---- */

fk_backend *fk_backend_devsim_wrap(fk_backend *inner) {
    if (!inner) return NULL;
    fk_backend *be = calloc(1, sizeof(*be));
    fk_ds *d = calloc(1, sizeof(*d));
    if (!be || !d) {
        free(be);
        free(d);
        return NULL;
    }
    long page = sysconf(_SC_PAGESIZE);
    d->page = page > 0 ? (size_t)page : 4096;
    d->inner = inner;
    be->name = fk_ds_tag;
    be->device = FK_DEVICE_CUDA;
    be->n_threads = inner->n_threads;
    be->impl = d;
    be->supports = fk_ds_supports;
    be->destroy = fk_ds_destroy;
    be->alloc = fk_ds_alloc;
    be->free = fk_ds_free;
    be->upload = fk_ds_upload;
    be->download = fk_ds_download;
    be->synchronize = fk_ds_synchronize;
    be->cache_weight = fk_ds_cache_weight;
    be->uncache_weights = fk_ds_uncache;
    be->release_scratch = fk_ds_release_scratch;
    be->linear = fk_ds_linear;
    be->linear_act = fk_ds_linear_act;
    be->linear_cat = fk_ds_linear_cat;
    be->layernorm = fk_ds_layernorm;
    be->rmsnorm = fk_ds_rmsnorm;
    be->silu = fk_ds_silu;
    be->gelu_tanh = fk_ds_gelu_tanh;
    be->gelu_quick = fk_ds_gelu_quick;
    be->softmax = fk_ds_softmax;
    be->attention = fk_ds_attention;
    be->rope = fk_ds_rope;
    be->add = fk_ds_add;
    be->mul = fk_ds_mul;
    be->modulate = fk_ds_modulate;
    be->layernorm_modulate = fk_ds_layernorm_modulate;
    be->rmsnorm_rope = fk_ds_rmsnorm_rope;
    be->linear_rmsnorm_rope = inner->linear_rmsnorm_rope ? fk_ds_linear_rmsnorm_rope : NULL;
    be->gated_add = fk_ds_gated_add;
    be->concat_rows = fk_ds_concat_rows;
    be->split_rows = fk_ds_split_rows;
    be->copy_cols = fk_ds_copy_cols;
    be->conv2d = fk_ds_conv2d;
    be->group_norm = fk_ds_group_norm;
    be->upsample_nearest2x = fk_ds_upsample;
    be->transpose = fk_ds_transpose;
    be->scale_cols = fk_ds_scale_cols;
    return be;
}

bool fk_backend_is_devsim(const fk_backend *be) { return be && be->name == fk_ds_tag; }

fk_backend *fk_backend_devsim_inner(fk_backend *sim) {
    return fk_backend_is_devsim(sim) ? fk_ds_of(sim)->inner : NULL;
}

void fk_backend_devsim_stats(const fk_backend *sim, fk_devsim_stats *out) {
    if (!out) return;
    if (!fk_backend_is_devsim(sim)) {
        memset(out, 0, sizeof(*out));
        return;
    }
    *out = fk_ds_of(sim)->st;
}

void fk_backend_devsim_forget_weights(fk_backend *sim) {
    if (!fk_backend_is_devsim(sim)) return;
    fk_ds *d = fk_ds_of(sim);
    if (d->wt) memset(d->wt, 0, sizeof(*d->wt) * d->wt_cap);
    d->wt_n = 0;
}
