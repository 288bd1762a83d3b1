/* profile: op timing by wrapping a backend (see profile.h). */
#include "backend/profile.h"

#include <stdlib.h>
#include <string.h>

typedef struct fk_prof {
    fk_backend *inner;
    fk_op_stats st[FK_OP_COUNT][2];
} fk_prof;

static fk_prof *fk_prof_of(const fk_backend *be) { return (fk_prof *)be->impl; }

static double fk_prof_nbytes(const fk_tensor *t) { return t ? (double)fk_tensor_nbytes(t) : 0.0; }

#define FK_PROF_BEGIN(be)                                                                     \
    fk_prof *p_ = fk_prof_of(be);                                                             \
    fk_backend *in_ = p_->inner;                                                              \
    double t0_ = fk_time()

#define FK_PROF_END(op, small, fl, by)                                                        \
    do {                                                                                      \
        if (in_->synchronize) in_->synchronize(in_);                                          \
        fk_op_stats *s_ = &p_->st[op][(small) ? 1 : 0];                                       \
        s_->seconds += fk_time() - t0_;                                                       \
        s_->calls++;                                                                          \
        s_->flops += (fl);                                                                    \
        s_->bytes += (by);                                                                    \
    } while (0)

/* ---- forwarding of the non-op entries ---- */

static bool fk_prof_supports(const fk_backend *be, fk_op op, const fk_tensor *const *srcs, int n) {
    fk_backend *in = fk_prof_of(be)->inner;
    return !in->supports || in->supports(in, op, srcs, n);
}
static void fk_prof_destroy(fk_backend *be) {
    if (!be) return;
    free(be->impl);
    free(be);
}
static void *fk_prof_alloc(fk_backend *be, size_t n) {
    fk_backend *in = fk_prof_of(be)->inner;
    return in->alloc(in, n);
}
static void fk_prof_free(fk_backend *be, void *ptr) {
    fk_backend *in = fk_prof_of(be)->inner;
    in->free(in, ptr);
}
static void fk_prof_upload(fk_backend *be, void *d, const void *s, size_t n) {
    fk_backend *in = fk_prof_of(be)->inner;
    in->upload(in, d, s, n);
}
static void fk_prof_download(fk_backend *be, void *d, const void *s, size_t n) {
    fk_backend *in = fk_prof_of(be)->inner;
    in->download(in, d, s, n);
}
static size_t fk_prof_cache_weight(fk_backend *be, const fk_tensor *w) {
    fk_backend *in = fk_prof_of(be)->inner;
    return in->cache_weight ? in->cache_weight(in, w) : 0;
}
static void fk_prof_uncache(fk_backend *be) {
    fk_backend *in = fk_prof_of(be)->inner;
    if (in->uncache_weights) in->uncache_weights(in);
}
static void fk_prof_release_scratch(fk_backend *be) {
    fk_backend *in = fk_prof_of(be)->inner;
    if (in->release_scratch) in->release_scratch(in);
}
static void fk_prof_sync(fk_backend *be) {
    fk_backend *in = fk_prof_of(be)->inner;
    if (in->synchronize) in->synchronize(in);
}

/* ---- ops ---- */

static double fk_prof_linear_flops(const fk_tensor *x, const fk_tensor *w) {
    return 2.0 * (double)fk_tensor_rows(x) * (double)fk_tensor_cols(x) * (double)w->shape[0];
}

static void fk_prof_linear(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                           const fk_tensor *b) {
    FK_PROF_BEGIN(be);
    in_->linear(in_, y, x, w, b);
    FK_PROF_END(FK_OP_LINEAR, fk_tensor_rows(x) <= FK_PROFILE_SMALL_M, fk_prof_linear_flops(x, w),
                fk_prof_nbytes(y) + fk_prof_nbytes(x) + fk_prof_nbytes(w));
}

static void fk_prof_linear_act(fk_backend *be, fk_tensor *y, const fk_tensor *x,
                               const fk_tensor *w, const fk_tensor *b, fk_act act) {
    FK_PROF_BEGIN(be);
    in_->linear_act(in_, y, x, w, b, act);
    FK_PROF_END(FK_OP_LINEAR_ACT, fk_tensor_rows(x) <= FK_PROFILE_SMALL_M,
                fk_prof_linear_flops(x, w), fk_prof_nbytes(y) + fk_prof_nbytes(x) + fk_prof_nbytes(w));
}

/* counted as linear (the products of one x, timed together) */
static void fk_prof_linear_multi(fk_backend *be, int n, fk_tensor *const *y, const fk_tensor *x,
                                 const fk_tensor *const *w, const fk_tensor *const *b,
                                 const fk_act *act) {
    FK_PROF_BEGIN(be);
    in_->linear_multi(in_, n, y, x, w, b, act);
    double fl = 0, by = (double)fk_prof_nbytes(x);
    for (int i = 0; i < n; i++) {
        fl += fk_prof_linear_flops(x, w[i]);
        by += (double)fk_prof_nbytes(y[i]) + (double)fk_prof_nbytes(w[i]);
    }
    FK_PROF_END(FK_OP_LINEAR, fk_tensor_rows(x) <= FK_PROFILE_SMALL_M, fl, by);
}

static void fk_prof_linear_cat(fk_backend *be, fk_tensor *y, const fk_tensor *x1,
                               const fk_tensor *x2, const fk_tensor *w, const fk_tensor *b,
                               fk_tensor *tmp) {
    FK_PROF_BEGIN(be);
    in_->linear_cat(in_, y, x1, x2, w, b, tmp);
    FK_PROF_END(FK_OP_LINEAR_CAT, fk_tensor_rows(x1) <= FK_PROFILE_SMALL_M,
                2.0 * (double)fk_tensor_rows(x1) * (double)w->shape[1] * (double)w->shape[0],
                fk_prof_nbytes(y) + fk_prof_nbytes(x1) + fk_prof_nbytes(x2) + fk_prof_nbytes(w));
}

static void fk_prof_layernorm(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                              const fk_tensor *b, float eps) {
    FK_PROF_BEGIN(be);
    in_->layernorm(in_, y, x, w, b, eps);
    FK_PROF_END(FK_OP_LAYERNORM, false, 0, fk_prof_nbytes(y) + fk_prof_nbytes(x));
}

static void fk_prof_layernorm_modulate(fk_backend *be, fk_tensor *y, const fk_tensor *x,
                                       const fk_tensor *shift, const fk_tensor *scale, float eps) {
    FK_PROF_BEGIN(be);
    in_->layernorm_modulate(in_, y, x, shift, scale, eps);
    FK_PROF_END(FK_OP_LAYERNORM_MODULATE, false, 0, fk_prof_nbytes(y) + fk_prof_nbytes(x));
}

static void fk_prof_rmsnorm(fk_backend *be, fk_tensor *y, const fk_tensor *x,
                            const fk_tensor *scale, float eps) {
    FK_PROF_BEGIN(be);
    in_->rmsnorm(in_, y, x, scale, eps);
    FK_PROF_END(FK_OP_RMSNORM, false, 0, fk_prof_nbytes(y) + fk_prof_nbytes(x));
}

static void fk_prof_rmsnorm_rope(fk_backend *be, fk_tensor *y, const fk_tensor *x,
                                 const fk_tensor *scale, const fk_tensor *pe, float eps) {
    FK_PROF_BEGIN(be);
    in_->rmsnorm_rope(in_, y, x, scale, pe, eps);
    FK_PROF_END(FK_OP_RMSNORM_ROPE, false, 0,
                fk_prof_nbytes(y) + fk_prof_nbytes(x) + fk_prof_nbytes(pe));
}

static void fk_prof_linear_rmsnorm_rope(fk_backend *be, fk_tensor *y, const fk_tensor *x,
                                        const fk_tensor *w, const fk_tensor *b,
                                        const fk_tensor *scale, const fk_tensor *pe, float eps) {
    FK_PROF_BEGIN(be);
    in_->linear_rmsnorm_rope(in_, y, x, w, b, scale, pe, eps);
    FK_PROF_END(FK_OP_LINEAR_RMSNORM_ROPE, fk_tensor_rows(x) <= FK_PROFILE_SMALL_M,
                fk_prof_linear_flops(x, w),
                fk_prof_nbytes(y) + fk_prof_nbytes(x) + fk_prof_nbytes(w) + fk_prof_nbytes(pe));
}

#define FK_PROF_UNARY(fname, field, op)                                                       \
    static void fname(fk_backend *be, fk_tensor *y, const fk_tensor *x) {                     \
        FK_PROF_BEGIN(be);                                                                    \
        in_->field(in_, y, x);                                                                \
        FK_PROF_END(op, false, 0, fk_prof_nbytes(y) + fk_prof_nbytes(x));                     \
    }
FK_PROF_UNARY(fk_prof_silu, silu, FK_OP_SILU)
FK_PROF_UNARY(fk_prof_gelu_tanh, gelu_tanh, FK_OP_GELU_TANH)
FK_PROF_UNARY(fk_prof_gelu_quick, gelu_quick, FK_OP_GELU_QUICK)
FK_PROF_UNARY(fk_prof_softmax, softmax, FK_OP_SOFTMAX)
FK_PROF_UNARY(fk_prof_upsample, upsample_nearest2x, FK_OP_UPSAMPLE_NEAREST2X)

static void fk_prof_attention(fk_backend *be, fk_tensor *out, const fk_tensor *q,
                              const fk_tensor *k, const fk_tensor *v, const fk_tensor *bias,
                              float scale, bool causal) {
    FK_PROF_BEGIN(be);
    in_->attention(in_, out, q, k, v, bias, scale, causal);
    /* q (Lq, H, D), k (Lk, H, D): QKᵀ and PV, 2 FLOPs per multiply-add each */
    double f = 4.0 * (double)q->shape[0] * (double)k->shape[0] * (double)q->shape[1] *
               (double)q->shape[2];
    FK_PROF_END(FK_OP_ATTENTION, false, causal ? f / 2 : f,
                fk_prof_nbytes(out) + fk_prof_nbytes(q) + fk_prof_nbytes(k) + fk_prof_nbytes(v));
}

static void fk_prof_rope(fk_backend *be, fk_tensor *x, const fk_tensor *pe) {
    FK_PROF_BEGIN(be);
    in_->rope(in_, x, pe);
    FK_PROF_END(FK_OP_ROPE, false, 0, 2 * fk_prof_nbytes(x) + fk_prof_nbytes(pe));
}

#define FK_PROF_BINARY(fname, field, op)                                                      \
    static void fname(fk_backend *be, fk_tensor *y, const fk_tensor *a, const fk_tensor *b) { \
        FK_PROF_BEGIN(be);                                                                    \
        in_->field(in_, y, a, b);                                                             \
        FK_PROF_END(op, false, 0, fk_prof_nbytes(y) + fk_prof_nbytes(a) + fk_prof_nbytes(b)); \
    }
FK_PROF_BINARY(fk_prof_add, add, FK_OP_ADD)
FK_PROF_BINARY(fk_prof_mul, mul, FK_OP_MUL)

static void fk_prof_modulate(fk_backend *be, fk_tensor *y, const fk_tensor *x,
                             const fk_tensor *shift, const fk_tensor *scale) {
    FK_PROF_BEGIN(be);
    in_->modulate(in_, y, x, shift, scale);
    FK_PROF_END(FK_OP_MODULATE, false, 0, fk_prof_nbytes(y) + fk_prof_nbytes(x));
}

static void fk_prof_gated_add(fk_backend *be, fk_tensor *x, const fk_tensor *y,
                              const fk_tensor *gate) {
    FK_PROF_BEGIN(be);
    in_->gated_add(in_, x, y, gate);
    FK_PROF_END(FK_OP_GATED_ADD, false, 0, 2 * fk_prof_nbytes(x) + fk_prof_nbytes(y));
}

static void fk_prof_concat_rows(fk_backend *be, fk_tensor *out, const fk_tensor *a,
                                const fk_tensor *b) {
    FK_PROF_BEGIN(be);
    in_->concat_rows(in_, out, a, b);
    FK_PROF_END(FK_OP_CONCAT_ROWS, false, 0, 2 * fk_prof_nbytes(out));
}

static void fk_prof_split_rows(fk_backend *be, fk_tensor *a, fk_tensor *b, const fk_tensor *in) {
    FK_PROF_BEGIN(be);
    in_->split_rows(in_, a, b, in);
    FK_PROF_END(FK_OP_SPLIT_ROWS, false, 0, 2 * fk_prof_nbytes(in));
}

static void fk_prof_copy_cols(fk_backend *be, fk_tensor *dst, int64_t dc0, const fk_tensor *src,
                              int64_t sc0, int64_t n) {
    FK_PROF_BEGIN(be);
    in_->copy_cols(in_, dst, dc0, src, sc0, n);
    FK_PROF_END(FK_OP_COPY_COLS, false, 0,
                2.0 * (double)fk_tensor_rows(src) * (double)n * (double)fk_dtype_size(src->dtype));
}

static void fk_prof_conv2d(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                           const fk_tensor *b, int stride, const int pad[4]) {
    FK_PROF_BEGIN(be);
    in_->conv2d(in_, y, x, w, b, stride, pad);
    /* y (B, Co, Ho, Wo), w (Co, Ci, kh, kw) */
    double f = 2.0 * (double)fk_tensor_numel(y) * (double)w->shape[1] * (double)w->shape[2] *
               (double)w->shape[3];
    FK_PROF_END(FK_OP_CONV2D, false, f, fk_prof_nbytes(y) + fk_prof_nbytes(x) + fk_prof_nbytes(w));
}

static void fk_prof_group_norm(fk_backend *be, fk_tensor *y, const fk_tensor *x, int groups,
                               const fk_tensor *w, const fk_tensor *b, float eps) {
    FK_PROF_BEGIN(be);
    in_->group_norm(in_, y, x, groups, w, b, eps);
    FK_PROF_END(FK_OP_GROUP_NORM, false, 0, fk_prof_nbytes(y) + fk_prof_nbytes(x));
}

static void fk_prof_transpose(fk_backend *be, fk_tensor *y, const fk_tensor *x) {
    FK_PROF_BEGIN(be);
    in_->transpose(in_, y, x);
    FK_PROF_END(FK_OP_TRANSPOSE, false, 0, fk_prof_nbytes(y) + fk_prof_nbytes(x));
}

static void fk_prof_scale_cols(fk_backend *be, fk_tensor *y, const fk_tensor *x,
                               const fk_tensor *s) {
    FK_PROF_BEGIN(be);
    in_->scale_cols(in_, y, x, s);
    FK_PROF_END(FK_OP_SCALE_COLS, false, 0,
                fk_prof_nbytes(y) + fk_prof_nbytes(x) + fk_prof_nbytes(s));
}

/* ---- public ---- */

fk_backend *fk_backend_profile_wrap(fk_backend *inner) {
    if (!inner) return NULL;
    fk_backend *be = calloc(1, sizeof(*be));
    fk_prof *p = calloc(1, sizeof(*p));
    if (!be || !p) {
        free(be);
        free(p);
        return NULL;
    }
    p->inner = inner;
    be->name = inner->name;
    be->device = inner->device;
    be->n_threads = inner->n_threads;
    be->impl = p;
    be->supports = fk_prof_supports;
    be->destroy = fk_prof_destroy;
    be->alloc = fk_prof_alloc;
    be->free = fk_prof_free;
    be->upload = fk_prof_upload;
    be->download = fk_prof_download;
    be->synchronize = fk_prof_sync;
    be->cache_weight = fk_prof_cache_weight;
    be->uncache_weights = fk_prof_uncache;
    be->release_scratch = fk_prof_release_scratch;
    /* an op the inner backend lacks stays NULL here too */
#define FK_PROF_SET(field, fn) be->field = inner->field ? fn : NULL
    FK_PROF_SET(linear, fk_prof_linear);
    FK_PROF_SET(linear_act, fk_prof_linear_act);
    FK_PROF_SET(linear_multi, fk_prof_linear_multi);
    FK_PROF_SET(linear_cat, fk_prof_linear_cat);
    FK_PROF_SET(layernorm, fk_prof_layernorm);
    FK_PROF_SET(rmsnorm, fk_prof_rmsnorm);
    FK_PROF_SET(silu, fk_prof_silu);
    FK_PROF_SET(gelu_tanh, fk_prof_gelu_tanh);
    FK_PROF_SET(gelu_quick, fk_prof_gelu_quick);
    FK_PROF_SET(softmax, fk_prof_softmax);
    FK_PROF_SET(attention, fk_prof_attention);
    FK_PROF_SET(rope, fk_prof_rope);
    FK_PROF_SET(add, fk_prof_add);
    FK_PROF_SET(mul, fk_prof_mul);
    FK_PROF_SET(modulate, fk_prof_modulate);
    FK_PROF_SET(layernorm_modulate, fk_prof_layernorm_modulate);
    FK_PROF_SET(rmsnorm_rope, fk_prof_rmsnorm_rope);
    FK_PROF_SET(linear_rmsnorm_rope, fk_prof_linear_rmsnorm_rope);
    FK_PROF_SET(gated_add, fk_prof_gated_add);
    FK_PROF_SET(concat_rows, fk_prof_concat_rows);
    FK_PROF_SET(split_rows, fk_prof_split_rows);
    FK_PROF_SET(copy_cols, fk_prof_copy_cols);
    FK_PROF_SET(conv2d, fk_prof_conv2d);
    FK_PROF_SET(group_norm, fk_prof_group_norm);
    FK_PROF_SET(upsample_nearest2x, fk_prof_upsample);
    FK_PROF_SET(transpose, fk_prof_transpose);
    FK_PROF_SET(scale_cols, fk_prof_scale_cols);
#undef FK_PROF_SET
    return be;
}

fk_backend *fk_backend_profile_inner(fk_backend *prof) { return fk_prof_of(prof)->inner; }

void fk_backend_profile_get(const fk_backend *prof, fk_op_stats stats[FK_OP_COUNT][2]) {
    memcpy(stats, fk_prof_of(prof)->st, sizeof(fk_prof_of(prof)->st));
}

void fk_backend_profile_reset(fk_backend *prof) {
    memset(fk_prof_of(prof)->st, 0, sizeof(fk_prof_of(prof)->st));
}
