/* vae: the autoencoder's forward passes (encoder, decoder), untiled and
 * tiled, written against the op table. One image of the batch at a time.
 *
 * Activations live on the backend, shaped (1, C, H, W), in one block (the
 * activation arena) that a run allocates once and reuses for every layer,
 * image and tile, so a decode touches fresh memory only once instead of op
 * by op (fresh pages cost ~1 GB/s to fault in on the CPU). The arena is two
 * stacks, one growing from each end: each buffer goes on the end opposite
 * to the buffer its op reads (conv input, norm input, ...), and the runner
 * frees in the reverse order of allocation on each end, so a stack never
 * has holes and the arena needs exactly the largest sum of live buffers
 * (a ResNet block: input, normalized input, first conv — ~3 full-size
 * buffers; see fk_vae_resblock_fwd). Its size comes from a dry run of the
 * same code on a backend whose ops do nothing (no memory, shapes only),
 * which also raises the shape errors before anything is allocated. Frees
 * out of order stay correct (the block is popped when it reaches the top)
 * and only make the dry run ask for more.
 *
 * The latent scaling (z = scale·(mean − shift), z/scale + shift) and the
 * tile blending run on the host, on latent- or image-sized buffers.
 *
 * The attention block needs token-major (L, C) activations for the linear
 * and attention ops; the transposes (C, L) ↔ (L, C) are the backend's
 * transpose op, so activations never leave the backend between a run's
 * input upload and its output download.
 */
#include "model/vae_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- activation arena ------------------------------------------------- */

#define FK_VAE_STACK_MAX 32 /* live buffers per end (the runner needs <= 4) */
#define FK_VAE_ALIGN 64     /* bytes: every buffer starts on a cache line */
/* The dry run's stand-in addresses (never dereferenced): offset + this. */
#define FK_VAE_PLAN_BASE ((uintptr_t)1 << 20)
#define FK_VAE_PLAN_CAP                                                                            \
    ((uint64_t)(UINTPTR_MAX >> 2) < ((uint64_t)1 << 46) ? (uint64_t)(UINTPTR_MAX >> 2) : ((uint64_t)1 << 46))

typedef struct fk_vae_stack {
    uint64_t off[FK_VAE_STACK_MAX];  /* start of each buffer, bottom to top */
    uint64_t size[FK_VAE_STACK_MAX]; /* bytes, rounded to FK_VAE_ALIGN */
    bool dead[FK_VAE_STACK_MAX];     /* freed, not yet popped (freed out of order) */
    int n;
    uint64_t used; /* bytes from this end to the top of the stack */
} fk_vae_stack;

typedef struct fk_vae_arena {
    char *mem;     /* the block (be->alloc); NULL in the dry run */
    uint64_t cap;  /* its bytes (dry run: FK_VAE_PLAN_CAP) */
    fk_vae_stack lo, hi; /* lo grows up from 0, hi down from cap */
    uint64_t need; /* the largest lo.used + hi.used so far: the size a run needs */
} fk_vae_arena;

static void *fk_vae_arena_ptr(const fk_vae_arena *a, uint64_t off) {
    return a->mem ? (void *)(a->mem + off) : (void *)(FK_VAE_PLAN_BASE + (uintptr_t)off);
}

/* Offset of a buffer of the arena from its start. */
static uint64_t fk_vae_arena_off(const fk_vae_arena *a, const void *p) {
    return a->mem ? (uint64_t)((const char *)p - a->mem) : (uint64_t)((uintptr_t)p - FK_VAE_PLAN_BASE);
}

/* The stack holding buffer p (NULL: none). */
static fk_vae_stack *fk_vae_arena_stack_of(fk_vae_arena *a, const void *p) {
    if (!p) return NULL;
    const uint64_t off = fk_vae_arena_off(a, p);
    if (off < a->lo.used) return &a->lo;
    if (off < a->cap && off >= a->cap - a->hi.used) return &a->hi;
    return NULL;
}

/* bytes (rounded) on the end opposite to the one holding `away` (lo when
 * away is NULL or not in the arena). NULL when the arena is full or the
 * stack too deep. */
static void *fk_vae_arena_push(fk_vae_arena *a, uint64_t bytes, const void *away) {
    fk_vae_stack *s = fk_vae_arena_stack_of(a, away) == &a->lo ? &a->hi : &a->lo;
    if (s->n == FK_VAE_STACK_MAX || bytes > a->cap - a->lo.used - a->hi.used) return NULL;
    const uint64_t off = s == &a->lo ? a->lo.used : a->cap - a->hi.used - bytes;
    s->off[s->n] = off;
    s->size[s->n] = bytes;
    s->dead[s->n] = false;
    s->n++;
    s->used += bytes;
    if (a->lo.used + a->hi.used > a->need) a->need = a->lo.used + a->hi.used;
    return fk_vae_arena_ptr(a, off);
}

/* Free buffer p; returns its bytes (0 when p is not a live buffer). */
static uint64_t fk_vae_arena_pop(fk_vae_arena *a, const void *p) {
    fk_vae_stack *s = fk_vae_arena_stack_of(a, p);
    if (!s) return 0;
    const uint64_t off = fk_vae_arena_off(a, p);
    int i = s->n - 1;
    while (i >= 0 && (s->off[i] != off || s->dead[i])) i--;
    if (i < 0) return 0;
    s->dead[i] = true;
    while (s->n > 0 && s->dead[s->n - 1]) s->used -= s->size[--s->n];
    return s->size[i];
}

/* ---- run state and activation buffers --------------------------------- */

typedef struct fk_vae_run {
    fk_context *ctx;
    fk_backend *be;
    const fk_vae *v;
    uint64_t cur, peak; /* bytes held: the arena and host scratch buffers */
    fk_vae_dbg_fn dbg;  /* NULL in tiled runs and in the dry run */
    void *dbg_user;
    int b;     /* batch index, for dbg */
    bool plan; /* the dry run: be is fk_vae_plan_backend's, nothing is computed */
    fk_vae_arena ar;
} fk_vae_run;

static void fk_vae_track(fk_vae_run *r, int64_t delta) {
    r->cur = (uint64_t)((int64_t)r->cur + delta);
    if (r->cur > r->peak) r->peak = r->cur;
}

/* A backend activation buffer (1, C, H, W) f32 from the arena, on the end
 * opposite to `away` (the buffer the op that writes t reads; NULL: lo). */
static fk_status fk_vae_act(fk_vae_run *r, fk_tensor *t, int64_t c, int64_t h, int64_t w, const char *what,
                            const fk_tensor *away) {
    int64_t shape[4] = {1, c, h, w};
    *t = fk_tensor_view(FK_F32, NULL, 4, shape);
    uint64_t n;
    if (!fk_mul_ok((uint64_t)c * (uint64_t)h, (uint64_t)w * sizeof(float), &n) || n > (uint64_t)SIZE_MAX ||
        n > FK_VAE_PLAN_CAP)
        return fk_error(r->ctx, FK_ERR_NOMEM, "autoencoder: %s (%lld × %lld × %lld) is too large",
                        what, (long long)c, (long long)h, (long long)w);
    n = (n + FK_VAE_ALIGN - 1) & ~(uint64_t)(FK_VAE_ALIGN - 1);
    t->data = fk_vae_arena_push(&r->ar, n, away ? away->data : NULL);
    if (!t->data && r->plan)
        return fk_error(r->ctx, FK_ERR_NOMEM, "autoencoder: the activations for %s (%lld × %lld × %lld) "
                        "are too large", what, (long long)c, (long long)h, (long long)w);
    if (!t->data) /* the dry run sized the arena for this very sequence: a bug */
        return fk_error(r->ctx, FK_ERR_INTERNAL,
                        "autoencoder: %s (%lld × %lld × %lld) does not fit the planned activation "
                        "memory (%.1f MiB)",
                        what, (long long)c, (long long)h, (long long)w, (double)r->ar.cap / 1048576.0);
    t->device = r->be->device;
    return FK_OK;
}

static void fk_vae_act_free(fk_vae_run *r, fk_tensor *t) {
    if (t->data) fk_vae_arena_pop(&r->ar, t->data);
    t->data = NULL;
}

/* Host scratch, counted with the activations. */
static float *fk_vae_host(fk_vae_run *r, int64_t n, const char *what) {
    float *p = fk_alloc((size_t)n * sizeof(float));
    if (!p) {
        fk_error(r->ctx, FK_ERR_NOMEM, "autoencoder: out of memory for %s (%.1f MiB)", what,
                 (double)n * 4.0 / 1048576.0);
        return NULL;
    }
    fk_vae_track(r, n * (int64_t)sizeof(float));
    return p;
}

static void fk_vae_host_free(fk_vae_run *r, float *p, int64_t n) {
    if (!p) return;
    fk_vae_track(r, -n * (int64_t)sizeof(float));
    fk_free(p);
}

static bool fk_vae_on_host(const fk_vae_run *r) { return r->be->device == FK_DEVICE_CPU; }

/* Hand an activation to the debug callback (a host view or copy). */
static void fk_vae_dbg(fk_vae_run *r, const char *name, const fk_tensor *t) {
    if (!r->dbg) return;
    if (fk_vae_on_host(r)) {
        r->dbg(r->dbg_user, name, r->b, t);
        return;
    }
    fk_tensor h;
    if (fk_tensor_new(r->ctx, &h, FK_F32, t->ndim, t->shape, name) != FK_OK) return;
    r->be->download(r->be, h.data, t->data, fk_tensor_nbytes(t));
    r->dbg(r->dbg_user, name, r->b, &h);
    fk_tensor_free(&h);
}

/* ---- the dry run's backend: the ops the runner calls do nothing --------- */

static void fk_vae_nop_copy(fk_backend *be, void *d, const void *s, size_t n) {
    (void)be, (void)d, (void)s, (void)n;
}
static void fk_vae_nop_unary(fk_backend *be, fk_tensor *y, const fk_tensor *x) { (void)be, (void)y, (void)x; }
static void fk_vae_nop_binary(fk_backend *be, fk_tensor *y, const fk_tensor *a, const fk_tensor *b) {
    (void)be, (void)y, (void)a, (void)b;
}
static void fk_vae_nop_linear(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                              const fk_tensor *b) {
    (void)be, (void)y, (void)x, (void)w, (void)b;
}
static void fk_vae_nop_attention(fk_backend *be, fk_tensor *o, const fk_tensor *q, const fk_tensor *k,
                                 const fk_tensor *v, const fk_tensor *bias, float scale, bool causal) {
    (void)be, (void)o, (void)q, (void)k, (void)v, (void)bias, (void)scale, (void)causal;
}
static void fk_vae_nop_conv2d(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                              const fk_tensor *b, int stride, const int pad[4]) {
    (void)be, (void)y, (void)x, (void)w, (void)b, (void)stride, (void)pad;
}
static void fk_vae_nop_group_norm(fk_backend *be, fk_tensor *y, const fk_tensor *x, int groups,
                                  const fk_tensor *w, const fk_tensor *b, float eps) {
    (void)be, (void)y, (void)x, (void)groups, (void)w, (void)b, (void)eps;
}
static void *fk_vae_nop_alloc(fk_backend *be, size_t n) {
    (void)be, (void)n;
    return NULL;
}
static void fk_vae_nop_free(fk_backend *be, void *p) { (void)be, (void)p; }

/* be with every op and copy the runner uses replaced by one that does
 * nothing (and alloc failing: the dry run must not allocate). */
static fk_backend fk_vae_plan_backend(const fk_backend *be) {
    fk_backend p = *be;
    p.alloc = fk_vae_nop_alloc;
    p.free = fk_vae_nop_free;
    p.upload = fk_vae_nop_copy;
    p.download = fk_vae_nop_copy;
    p.conv2d = fk_vae_nop_conv2d;
    p.group_norm = fk_vae_nop_group_norm;
    p.silu = fk_vae_nop_unary;
    p.upsample_nearest2x = fk_vae_nop_unary;
    p.transpose = fk_vae_nop_unary;
    p.add = fk_vae_nop_binary;
    p.linear = fk_vae_nop_linear;
    p.attention = fk_vae_nop_attention;
    return p;
}

/* ---- layers ------------------------------------------------------------- */

static const int fk_vae_pad1[4] = {1, 1, 1, 1};
static const int fk_vae_pad0[4] = {0, 0, 0, 0};
static const int fk_vae_pad_down[4] = {0, 0, 1, 1}; /* right and bottom by 1 */

/* y = conv(x) into a new activation (on the end opposite to x). */
static fk_status fk_vae_conv_fwd(fk_vae_run *r, const fk_vae_conv *cv, const fk_tensor *x,
                                 int stride, const int pad[4], fk_tensor *y, const char *what) {
    const int64_t kh = cv->w.shape[2], kw = cv->w.shape[3];
    const int64_t H = x->shape[2], W = x->shape[3];
    if (H + pad[0] + pad[2] < kh || W + pad[1] + pad[3] < kw)
        return fk_error(r->ctx, FK_ERR_ARG,
                        "autoencoder: %s: input %lld × %lld is too small for a %lld × %lld kernel",
                        what, (long long)H, (long long)W, (long long)kh, (long long)kw);
    const int64_t Ho = (H + pad[0] + pad[2] - kh) / stride + 1;
    const int64_t Wo = (W + pad[1] + pad[3] - kw) / stride + 1;
    fk_status st = fk_vae_act(r, y, cv->w.shape[0], Ho, Wo, what, x);
    if (st) return st;
    r->be->conv2d(r->be, y, x, &cv->w, &cv->b, stride, pad);
    return FK_OK;
}

/* Like fk_vae_conv_fwd, then frees x (also on failure). */
static fk_status fk_vae_conv_consume(fk_vae_run *r, const fk_vae_conv *cv, fk_tensor *x, int stride,
                                     const int pad[4], fk_tensor *y, const char *what) {
    fk_status st = fk_vae_conv_fwd(r, cv, x, stride, pad, y, what);
    fk_vae_act_free(r, x);
    return st;
}

/* y = swish(groupnorm(x)); y may be x. */
static void fk_vae_norm_swish(fk_vae_run *r, const fk_vae_norm *n, fk_tensor *y, const fk_tensor *x) {
    const fk_vae_config *c = &r->v->cfg;
    r->be->group_norm(r->be, y, x, c->groups, &n->w, &n->b, c->eps);
    r->be->silu(r->be, y, y);
}

/* out = shortcut(x) + conv2(swish(norm2(conv1(swish(norm1(x)))))). Consumes x.
 * Live buffers (x on arena end A): h on B, t on A, h freed, out on B, t
 * freed, the shortcut s on A, s and x freed: out is left alone on B; at
 * most cin + cout + max(cin, cout) channels live. When the shortcut has
 * fewer channels than x (the decoder's 512 → 256 and 256 → 128 blocks), s
 * is computed first (on B) and x normalized in place, which frees x before
 * out is allocated: at most cin + 2·cout (the 256 → 128 block at full size
 * was the decoder's peak: 640 → 512 channels). The ops and their inputs are
 * the same either way, so are the bits. */
static fk_status fk_vae_resblock_fwd(fk_vae_run *r, const fk_vae_resblock *rb, fk_tensor *x,
                                     fk_tensor *out) {
    fk_tensor h = {0}, t = {0}, s = {0};
    fk_status st;
    const int64_t H = x->shape[2], W = x->shape[3];
    const bool nin_first = rb->has_nin && rb->cout < rb->cin;
    fk_tensor *hn = &h; /* swish(norm1(x)) */
    if (nin_first) {
        if ((st = fk_vae_conv_fwd(r, &rb->nin, x, 1, fk_vae_pad0, &s, "ResNet block shortcut"))) goto done;
        hn = x;
    } else if ((st = fk_vae_act(r, &h, rb->cin, H, W, "ResNet block input", x))) {
        goto done;
    }
    fk_vae_norm_swish(r, &rb->norm1, hn, x);
    if ((st = fk_vae_conv_fwd(r, &rb->conv1, hn, 1, fk_vae_pad1, &t, "ResNet block conv1"))) goto done;
    fk_vae_act_free(r, hn);
    fk_vae_norm_swish(r, &rb->norm2, &t, &t);
    if ((st = fk_vae_conv_fwd(r, &rb->conv2, &t, 1, fk_vae_pad1, out, "ResNet block conv2"))) goto done;
    fk_vae_act_free(r, &t);
    if (rb->has_nin) {
        if (!nin_first &&
            (st = fk_vae_conv_fwd(r, &rb->nin, x, 1, fk_vae_pad0, &s, "ResNet block shortcut")))
            goto done;
        r->be->add(r->be, out, &s, out);
    } else {
        r->be->add(r->be, out, x, out);
    }
done:
    fk_vae_act_free(r, &s);
    fk_vae_act_free(r, &t);
    fk_vae_act_free(r, &h);
    fk_vae_act_free(r, x);
    if (st) fk_vae_act_free(r, out);
    return st;
}

/* dst (cols, rows) = src (rows, cols)ᵀ, both activations on the backend
 * (the transpose op on (1, rows, cols) views). */
static void fk_vae_transpose_act(fk_vae_run *r, fk_tensor *dst, const fk_tensor *src,
                                 int64_t rows, int64_t cols) {
    fk_tensor s3 = fk_be_view3(r->be, src->data, 1, rows, cols);
    fk_tensor d3 = fk_be_view3(r->be, dst->data, 1, cols, rows);
    r->be->transpose(r->be, &d3, &s3);
}

/* A (C, C) linear-weight view of a 1×1 conv (C, C, 1, 1). */
static fk_tensor fk_vae_lin_w(const fk_tensor *w) {
    fk_tensor v = *w;
    v.ndim = 2;
    return v;
}

/* out = x + proj_out(attention(norm(x))), one head over C channels.
 * Consumes x: the sum is written into x's buffer, which becomes *out.
 * Arena ends (x on A): h on B, the tokens ht on A, h freed, q k v on B, ht
 * freed, o on A, v k q freed, the projection p on B, o freed, p transposed
 * into pt on A, x += pt, pt and p freed: x is left where it was. */
static fk_status fk_vae_attn_fwd(fk_vae_run *r, const fk_vae_attn *a, fk_tensor *x, fk_tensor *out) {
    const int64_t C = x->shape[1], H = x->shape[2], W = x->shape[3], L = H * W;
    fk_tensor h = {0}, ht = {0}, q = {0}, k = {0}, v = {0}, o = {0}, p = {0}, pt = {0};
    fk_status st;
    if ((st = fk_vae_act(r, &h, C, H, W, "attention input", x))) goto done;
    r->be->group_norm(r->be, &h, x, r->v->cfg.groups, &a->norm.w, &a->norm.b, r->v->cfg.eps);
    if ((st = fk_vae_act(r, &ht, 1, L, C, "attention tokens", &h))) goto done;
    fk_vae_transpose_act(r, &ht, &h, C, L);
    fk_vae_act_free(r, &h);
    if ((st = fk_vae_act(r, &q, 1, L, C, "attention q", &ht))) goto done;
    if ((st = fk_vae_act(r, &k, 1, L, C, "attention k", &ht))) goto done;
    if ((st = fk_vae_act(r, &v, 1, L, C, "attention v", &ht))) goto done;
    {
        fk_tensor x2 = fk_be_view2(r->be, ht.data, L, C);
        fk_tensor q2 = fk_be_view2(r->be, q.data, L, C), k2 = fk_be_view2(r->be, k.data, L, C),
                  v2 = fk_be_view2(r->be, v.data, L, C);
        fk_tensor wq = fk_vae_lin_w(&a->q.w), wk = fk_vae_lin_w(&a->k.w), wv = fk_vae_lin_w(&a->v.w);
        r->be->linear(r->be, &q2, &x2, &wq, &a->q.b);
        r->be->linear(r->be, &k2, &x2, &wk, &a->k.b);
        r->be->linear(r->be, &v2, &x2, &wv, &a->v.b);
    }
    fk_vae_act_free(r, &ht);
    if ((st = fk_vae_act(r, &o, 1, L, C, "attention output", &q))) goto done;
    {
        fk_tensor q3 = fk_be_view3(r->be, q.data, L, 1, C);
        fk_tensor k3 = fk_be_view3(r->be, k.data, L, 1, C);
        fk_tensor v3 = fk_be_view3(r->be, v.data, L, 1, C);
        fk_tensor o2 = fk_be_view2(r->be, o.data, L, C);
        r->be->attention(r->be, &o2, &q3, &k3, &v3, NULL, (float)(1.0 / sqrt((double)C)), false);
    }
    fk_vae_act_free(r, &v);
    fk_vae_act_free(r, &k);
    fk_vae_act_free(r, &q);
    if ((st = fk_vae_act(r, &p, 1, L, C, "attention projection", &o))) goto done;
    {
        fk_tensor o2 = fk_be_view2(r->be, o.data, L, C), p2 = fk_be_view2(r->be, p.data, L, C);
        fk_tensor wp = fk_vae_lin_w(&a->proj.w);
        r->be->linear(r->be, &p2, &o2, &wp, &a->proj.b);
    }
    fk_vae_act_free(r, &o);
    if ((st = fk_vae_act(r, &pt, C, H, W, "attention block output", &p))) goto done;
    fk_vae_transpose_act(r, &pt, &p, L, C);
    r->be->add(r->be, x, x, &pt);
    *out = *x;
    x->data = NULL;
done:
    fk_vae_act_free(r, &pt);
    fk_vae_act_free(r, &p);
    fk_vae_act_free(r, &o);
    fk_vae_act_free(r, &v);
    fk_vae_act_free(r, &k);
    fk_vae_act_free(r, &q);
    fk_vae_act_free(r, &ht);
    fk_vae_act_free(r, &h);
    fk_vae_act_free(r, x);
    return st;
}

/* Replace *h by f(*h): f consumes (frees) its input, also on failure. */
#define FK_VAE_STEP(call)                                                                          \
    do {                                                                                           \
        fk_tensor next_ = {0};                                                                     \
        st = (call);                                                                               \
        if (st) goto done;                                                                         \
        *h = next_;                                                                                \
    } while (0)

/* mid block: block_1, attn_1, block_2. Consumes and replaces *h. */
static fk_status fk_vae_mid_fwd(fk_vae_run *r, const fk_vae_half *hf, fk_tensor *h, const char *tag) {
    fk_status st;
    char name[64];
    FK_VAE_STEP(fk_vae_resblock_fwd(r, &hf->mid1, h, &next_));
    snprintf(name, sizeof(name), "dbg.%s.mid.block_1", tag);
    fk_vae_dbg(r, name, h);
    FK_VAE_STEP(fk_vae_attn_fwd(r, &hf->attn, h, &next_));
    snprintf(name, sizeof(name), "dbg.%s.mid.attn_1", tag);
    fk_vae_dbg(r, name, h);
    FK_VAE_STEP(fk_vae_resblock_fwd(r, &hf->mid2, h, &next_));
    snprintf(name, sizeof(name), "dbg.%s.mid.block_2", tag);
    fk_vae_dbg(r, name, h);
done:
    return st;
}

/* x (1, Cin, H, W) → moments (1, 2z, h, w) (after quant_conv if any).
 * Consumes x (freed after conv_in). */
static fk_status fk_vae_encoder(fk_vae_run *r, fk_tensor *x, fk_tensor *moments) {
    const fk_vae *v = r->v;
    const fk_vae_half *e = &v->enc;
    fk_tensor hh = {0}, *h = &hh;
    fk_status st;
    char name[64];
    if ((st = fk_vae_conv_consume(r, &e->conv_in, x, 1, fk_vae_pad1, h, "encoder conv_in"))) return st;
    fk_vae_dbg(r, "dbg.enc.conv_in", h);
    for (int i = 0; i < v->cfg.n_levels; i++) {
        const fk_vae_level *lv = &e->level[i];
        for (int j = 0; j < lv->n_blocks; j++) FK_VAE_STEP(fk_vae_resblock_fwd(r, &lv->block[j], h, &next_));
        snprintf(name, sizeof(name), "dbg.enc.down%d.block_last", i);
        fk_vae_dbg(r, name, h);
        if (lv->has_resample) {
            FK_VAE_STEP(fk_vae_conv_consume(r, &lv->resample, h, 2, fk_vae_pad_down, &next_,
                                            "encoder downsample"));
            snprintf(name, sizeof(name), "dbg.enc.down%d.downsample", i);
            fk_vae_dbg(r, name, h);
        }
    }
    if ((st = fk_vae_mid_fwd(r, e, h, "enc"))) goto done;
    fk_vae_norm_swish(r, &e->norm_out, h, h);
    if ((st = fk_vae_conv_consume(r, &e->conv_out, h, 1, fk_vae_pad1, moments, "encoder conv_out")))
        goto done;
    fk_vae_dbg(r, "dbg.enc.conv_out", moments);
    if (v->cfg.quant_conv) {
        fk_tensor q = {0};
        st = fk_vae_conv_consume(r, &v->quant, moments, 1, fk_vae_pad0, &q, "quant_conv");
        if (st) goto done;
        *moments = q;
    }
done:
    fk_vae_act_free(r, h);
    return st;
}

/* zin (1, z, h, w), already unscaled → image (1, out_ch, 8h, 8w). Consumes
 * zin (freed after post_quant_conv / conv_in). */
static fk_status fk_vae_decoder(fk_vae_run *r, fk_tensor *zin, fk_tensor *img) {
    const fk_vae *v = r->v;
    const fk_vae_half *d = &v->dec;
    fk_tensor hh = {0}, *h = &hh, pq = {0};
    fk_status st;
    char name[64];
    fk_tensor *z = zin;
    if (v->cfg.post_quant_conv) {
        if ((st = fk_vae_conv_consume(r, &v->post_quant, zin, 1, fk_vae_pad0, &pq, "post_quant_conv")))
            return st;
        z = &pq;
    }
    if ((st = fk_vae_conv_consume(r, &d->conv_in, z, 1, fk_vae_pad1, h, "decoder conv_in"))) return st;
    fk_vae_dbg(r, "dbg.dec.conv_in", h);
    if ((st = fk_vae_mid_fwd(r, d, h, "dec"))) return st;
    for (int i = v->cfg.n_levels - 1; i >= 0; i--) {
        const fk_vae_level *lv = &d->level[i];
        for (int j = 0; j < lv->n_blocks; j++) FK_VAE_STEP(fk_vae_resblock_fwd(r, &lv->block[j], h, &next_));
        snprintf(name, sizeof(name), "dbg.dec.up%d.block_last", i);
        fk_vae_dbg(r, name, h);
        if (lv->has_resample) {
            fk_tensor u = {0};
            const int64_t C = h->shape[1], H = h->shape[2], W = h->shape[3];
            if ((st = fk_vae_act(r, &u, C, 2 * H, 2 * W, "decoder upsample", h))) goto done;
            r->be->upsample_nearest2x(r->be, &u, h);
            fk_vae_act_free(r, h);
            *h = u;
            FK_VAE_STEP(fk_vae_conv_consume(r, &lv->resample, h, 1, fk_vae_pad1, &next_,
                                            "decoder upsample conv"));
            snprintf(name, sizeof(name), "dbg.dec.up%d.upsample", i);
            fk_vae_dbg(r, name, h);
        }
    }
    fk_vae_norm_swish(r, &d->norm_out, h, h);
    fk_vae_dbg(r, "dbg.dec.conv_out_in", h);
    st = fk_vae_conv_consume(r, &d->conv_out, h, 1, fk_vae_pad1, img, "decoder conv_out");
done:
    fk_vae_act_free(r, h);
    return st;
}

/* ---- one image, untiled ------------------------------------------------ */

/* Latent size of an image side: each downsample maps n to ⌊n/2⌋ (needs n >= 2). */
static bool fk_vae_latent_side(const fk_vae_config *c, int64_t n, int64_t *out) {
    for (int i = 0; i + 1 < c->n_levels; i++) {
        if (n < 2) return false;
        n /= 2;
    }
    *out = n;
    return true;
}

/* img (Cin, H, W) host → z (zc, h, w) host, scaled. (Dry run: img and z unused.) */
static fk_status fk_vae_encode_one(fk_vae_run *r, const float *img, int64_t H, int64_t W, float *z) {
    const fk_vae_config *c = &r->v->cfg;
    fk_tensor x = {0}, mom = {0};
    fk_status st = fk_vae_act(r, &x, c->in_channels, H, W, "encoder input", NULL);
    if (st) return st;
    r->be->upload(r->be, x.data, img, fk_tensor_nbytes(&x));
    if ((st = fk_vae_encoder(r, &x, &mom))) return st;
    const int64_t zc = c->z_channels, hw = mom.shape[2] * mom.shape[3];
    /* mean = the first z channels of the moments (contiguous) */
    r->be->download(r->be, z, mom.data, (size_t)(zc * hw) * sizeof(float));
    fk_vae_act_free(r, &mom);
    if (r->plan) return FK_OK;
    const float scale = c->scale_factor, shift = c->shift_factor;
    for (int64_t i = 0; i < zc * hw; i++) z[i] = scale * (z[i] - shift);
    return FK_OK;
}

/* z (zc, h, w) host, scaled → img (out_ch, f·h, f·w) host. (Dry run: z and
 * img unused.) */
static fk_status fk_vae_decode_one(fk_vae_run *r, const float *z, int64_t h, int64_t w, float *img) {
    const fk_vae_config *c = &r->v->cfg;
    const int64_t n = (int64_t)c->z_channels * h * w;
    fk_tensor x = {0}, y = {0};
    fk_status st = fk_vae_act(r, &x, c->z_channels, h, w, "decoder input", NULL);
    if (st) return st;
    if (!r->plan) {
        float *zu = fk_vae_host(r, n, "unscaled latent");
        if (!zu) {
            fk_vae_act_free(r, &x);
            return FK_ERR_NOMEM;
        }
        const float scale = c->scale_factor, shift = c->shift_factor;
        for (int64_t i = 0; i < n; i++) zu[i] = z[i] / scale + shift;
        r->be->upload(r->be, x.data, zu, (size_t)n * sizeof(float));
        if (r->dbg) {
            fk_tensor zt = fk_view4(FK_F32, zu, 1, c->z_channels, h, w);
            r->dbg(r->dbg_user, "dbg.dec.z_unscaled", r->b, &zt);
        }
        fk_vae_host_free(r, zu, n);
    }
    if ((st = fk_vae_decoder(r, &x, &y))) return st;
    r->be->download(r->be, img, y.data, fk_tensor_nbytes(&y));
    fk_vae_act_free(r, &y);
    return FK_OK;
}

/* ---- activation memory of a run ------------------------------------------ */

/* Size the arena with a dry run of one image (or tile) of h × w (image
 * pixels when encoding, latent pixels when decoding), then allocate it.
 * Shape errors of the model surface here, before any allocation. */
static fk_status fk_vae_arena_begin(fk_vae_run *r, bool encode, int64_t h, int64_t w) {
    fk_backend nop = fk_vae_plan_backend(r->be);
    fk_vae_run p = *r;
    p.be = &nop;
    p.plan = true;
    p.dbg = NULL;
    memset(&p.ar, 0, sizeof(p.ar));
    p.ar.cap = FK_VAE_PLAN_CAP;
    fk_status st = encode ? fk_vae_encode_one(&p, NULL, h, w, NULL) : fk_vae_decode_one(&p, NULL, h, w, NULL);
    if (st) return st;
    memset(&r->ar, 0, sizeof(r->ar));
    const uint64_t need = p.ar.need;
    if (need > (uint64_t)SIZE_MAX)
        return fk_error(r->ctx, FK_ERR_NOMEM, "autoencoder: the activations (%.1f MiB) are too large",
                        (double)need / 1048576.0);
    r->ar.mem = r->be->alloc(r->be, (size_t)need);
    if (!r->ar.mem)
        return fk_error(r->ctx, FK_ERR_NOMEM, "autoencoder: out of memory for the activations (%.1f MiB)",
                        (double)need / 1048576.0);
    r->ar.cap = need;
    fk_vae_track(r, (int64_t)need);
    return FK_OK;
}

static void fk_vae_arena_end(fk_vae_run *r) {
    if (!r->ar.mem) return;
    r->be->free(r->be, r->ar.mem);
    fk_vae_track(r, -(int64_t)r->ar.cap);
    memset(&r->ar, 0, sizeof(r->ar));
}

/* ---- tiling ------------------------------------------------------------ */

int fk_vae_tile_starts(int64_t n, int64_t t, int64_t o, int64_t *starts, int max) {
    if (n < 1 || t < 1 || o < 0 || o >= t) return 0;
    int64_t k = 1;
    if (n > t) k = (n - o + (t - o) - 1) / (t - o);
    if (k < 2 && n > t) k = 2;
    if (k > 1 << 20) return 0;
    for (int64_t i = 0; i < k && i < max; i++)
        starts[i] = k == 1 ? 0 : (2 * i * (n - t) + (k - 1)) / (2 * (k - 1));
    return (int)k;
}

/* Blending weight along one axis of a tile: a linear ramp over the overlap
 * with the previous / next tile (in output units), 1 elsewhere. */
static float fk_vae_ramp(int64_t i, int64_t size, int64_t ov_lo, int64_t ov_hi) {
    float w = 1.0f;
    if (ov_lo > 0 && i < ov_lo) w *= (float)(((double)i + 0.5) / (double)ov_lo);
    if (ov_hi > 0 && i >= size - ov_hi) w *= (float)(((double)(size - i) - 0.5) / (double)ov_hi);
    return w;
}

/* Tile callbacks of the model: user is the fk_vae_run. */
static fk_status fk_vae_enc_tile(void *user, const float *in, int64_t ih, int64_t iw, float *out) {
    return fk_vae_encode_one(user, in, ih, iw, out);
}
static fk_status fk_vae_dec_tile(void *user, const float *in, int64_t ih, int64_t iw, float *out) {
    return fk_vae_decode_one(user, in, ih, iw, out);
}

#define FK_VAE_MAX_TILES 4096

/* Side of the tiles (the latent side when it is smaller). */
static int64_t fk_vae_tile_side(int64_t n, int64_t t) { return n < t ? n : t; }

uint64_t fk_vae_tiled_scratch(int64_t cin, int64_t ui, int64_t cout, int64_t uo, int64_t lh, int64_t lw,
                              int64_t t) {
    const int64_t th = fk_vae_tile_side(lh, t), tw = fk_vae_tile_side(lw, t);
    const int64_t n = cin * th * ui * tw * ui + cout * th * uo * tw * uo + lh * uo * lw * uo +
                      th * uo + tw * uo;
    return (uint64_t)n * sizeof(float);
}

fk_status fk_vae_tiled(fk_context *ctx, fk_vae_tile_cb fn, void *user, const float *in, int64_t cin,
                       int64_t ui, float *out, int64_t cout, int64_t uo, int64_t lh, int64_t lw,
                       int64_t t, int64_t o) {
    int64_t ys[FK_VAE_MAX_TILES], xs[FK_VAE_MAX_TILES];
    int ny = fk_vae_tile_starts(lh, t, o, ys, FK_VAE_MAX_TILES);
    int nx = fk_vae_tile_starts(lw, t, o, xs, FK_VAE_MAX_TILES);
    if (ny < 1 || nx < 1 || ny > FK_VAE_MAX_TILES || nx > FK_VAE_MAX_TILES)
        return fk_error(ctx, FK_ERR_ARG,
                        "autoencoder: bad tiling (tile %lld, overlap %lld) for a %lld × %lld latent",
                        (long long)t, (long long)o, (long long)lh, (long long)lw);
    const int64_t th = fk_vae_tile_side(lh, t), tw = fk_vae_tile_side(lw, t);
    const int64_t IH = lh * ui, IW = lw * ui, OH = lh * uo, OW = lw * uo;
    const int64_t tih = th * ui, tiw = tw * ui, toh = th * uo, tow = tw * uo;
    const int64_t n_in = cin * tih * tiw, n_out = cout * toh * tow, n_w = OH * OW;
    float *tin = fk_alloc((size_t)n_in * sizeof(float));
    float *tout = fk_alloc((size_t)n_out * sizeof(float));
    float *wsum = fk_alloc((size_t)n_w * sizeof(float));
    float *wy = fk_alloc((size_t)(toh + tow) * sizeof(float));
    fk_status st = FK_OK;
    if (!tin || !tout || !wsum || !wy) {
        st = fk_error(ctx, FK_ERR_NOMEM, "autoencoder: out of memory for the tile buffers (%.1f MiB)",
                      (double)(n_in + n_out + n_w) * 4.0 / 1048576.0);
    } else {
        memset(out, 0, (size_t)(cout * n_w) * sizeof(float));
        memset(wsum, 0, (size_t)n_w * sizeof(float));
    }
    float *wx = wy ? wy + toh : NULL;
    for (int ty = 0; st == FK_OK && ty < ny; ty++) {
        const int64_t y0 = ys[ty];
        const int64_t ov_top = ty > 0 ? (ys[ty - 1] + th - y0) * uo : 0;
        const int64_t ov_bot = ty + 1 < ny ? (y0 + th - ys[ty + 1]) * uo : 0;
        for (int64_t i = 0; i < toh; i++) wy[i] = fk_vae_ramp(i, toh, ov_top, ov_bot);
        for (int tx = 0; st == FK_OK && tx < nx; tx++) {
            const int64_t x0 = xs[tx];
            const int64_t ov_l = tx > 0 ? (xs[tx - 1] + tw - x0) * uo : 0;
            const int64_t ov_r = tx + 1 < nx ? (x0 + tw - xs[tx + 1]) * uo : 0;
            for (int64_t j = 0; j < tow; j++) wx[j] = fk_vae_ramp(j, tow, ov_l, ov_r);
            /* crop the input tile */
            for (int64_t c = 0; c < cin; c++)
                for (int64_t i = 0; i < tih; i++)
                    memcpy(tin + (c * tih + i) * tiw, in + (c * IH + y0 * ui + i) * IW + x0 * ui,
                           (size_t)tiw * sizeof(float));
            if ((st = fn(user, tin, tih, tiw, tout))) break;
            /* out += w·tile, wsum += w (w = wy[i]·wx[j]) */
            for (int64_t c = 0; c < cout; c++)
                for (int64_t i = 0; i < toh; i++) {
                    float *orow = out + (c * OH + y0 * uo + i) * OW + x0 * uo;
                    const float *trow = tout + (c * toh + i) * tow;
                    for (int64_t j = 0; j < tow; j++) orow[j] += wy[i] * wx[j] * trow[j];
                }
            for (int64_t i = 0; i < toh; i++) {
                float *wrow = wsum + (y0 * uo + i) * OW + x0 * uo;
                for (int64_t j = 0; j < tow; j++) wrow[j] += wy[i] * wx[j];
            }
        }
    }
    if (st == FK_OK)
        for (int64_t c = 0; c < cout; c++)
            for (int64_t p = 0; p < n_w; p++) out[c * n_w + p] /= wsum[p];
    fk_free(wy);
    fk_free(wsum);
    fk_free(tout);
    fk_free(tin);
    return st;
}

/* A tiled run of the model, its scratch counted with the activations. */
static fk_status fk_vae_tiled_model(fk_vae_run *r, bool encode, const float *in, int64_t cin, int64_t ui,
                                    float *out, int64_t cout, int64_t uo, int64_t lh, int64_t lw, int64_t t,
                                    int64_t o) {
    const uint64_t scratch = fk_vae_tiled_scratch(cin, ui, cout, uo, lh, lw, t);
    fk_vae_track(r, (int64_t)scratch);
    fk_status st = fk_vae_tiled(r->ctx, encode ? fk_vae_enc_tile : fk_vae_dec_tile, r, in, cin, ui, out, cout,
                                uo, lh, lw, t, o);
    fk_vae_track(r, -(int64_t)scratch);
    return st;
}

/* ---- public entry points ----------------------------------------------- */

void fk_vae_opts_init(fk_vae_opts *o) {
    memset(o, 0, sizeof(*o));
    o->overlap = -1;
}

static fk_status fk_vae_check_input(fk_context *ctx, const fk_tensor *x, int64_t channels,
                                    const char *what) {
    char sb[64];
    if (!x || !x->data || x->ndim != 4 || x->dtype != FK_F32 || x->device != FK_DEVICE_CPU)
        return fk_error(ctx, FK_ERR_ARG,
                        "autoencoder: the %s must be a 4-D f32 host tensor (B, C, H, W)", what);
    if (x->shape[1] != channels || x->shape[0] < 1 || x->shape[2] < 1 || x->shape[3] < 1)
        return fk_error(ctx, FK_ERR_SHAPE, "autoencoder: the %s has shape %s, expected [B, %lld, H, W]", what,
                        fk_shape_str(x, sb, sizeof(sb)), (long long)channels);
    return FK_OK;
}

/* The attention block's transposes need the backend's transpose op. */
static fk_status fk_vae_check_backend(fk_context *ctx, const fk_backend *be) {
    float dummy = 0;
    fk_tensor a = fk_view3(FK_F32, &dummy, 1, 1, 1); /* an activation: on the backend's device */
    a.device = be->device;
    const fk_tensor *srcs[2] = {&a, &a}; /* y, x */
    if (!be->transpose || (be->supports && !be->supports(be, FK_OP_TRANSPOSE, srcs, 2)))
        return fk_error(ctx, FK_ERR_UNSUPPORTED,
                        "autoencoder: backend %s has no f32 transpose op (the attention block needs it)",
                        be->name);
    return FK_OK;
}

static fk_status fk_vae_tiling(fk_context *ctx, const fk_vae_opts *o, int64_t lh, int64_t lw,
                               int64_t *t, int64_t *ov) {
    *t = o ? o->tile : 0;
    *ov = 0;
    if (*t <= 0 || (lh <= *t && lw <= *t)) {
        *t = 0;
        return FK_OK;
    }
    *ov = o->overlap < 0 ? *t / 4 : o->overlap;
    if (*t < 4 || *ov * 2 > *t)
        return fk_error(ctx, FK_ERR_ARG,
                        "autoencoder: tile %lld with overlap %lld: expected tile >= 4 and overlap <= tile/2",
                        (long long)*t, (long long)*ov);
    return FK_OK;
}

fk_status fk_vae_encode(fk_context *ctx, fk_backend *be, const fk_vae *v, const fk_tensor *img,
                        fk_tensor *z, const fk_vae_opts *opts) {
    if (!be || !v || !z) return fk_error(ctx, FK_ERR_ARG, "fk_vae_encode: NULL argument");
    memset(z, 0, sizeof(*z));
    const fk_vae_config *c = &v->cfg;
    if (!c->has_encoder)
        return fk_error(ctx, FK_ERR_UNSUPPORTED,
                        "autoencoder: this checkpoint has no encoder (encoder.* tensors)");
    fk_status st = fk_vae_check_input(ctx, img, c->in_channels, "image to encode");
    if (!st) st = fk_vae_check_backend(ctx, be);
    if (st) return st;
    const int64_t B = img->shape[0], H = img->shape[2], W = img->shape[3];
    const int64_t f = fk_vae_downscale(c);
    int64_t lh, lw;
    if (!fk_vae_latent_side(c, H, &lh) || !fk_vae_latent_side(c, W, &lw))
        return fk_error(ctx, FK_ERR_SHAPE,
                        "autoencoder: image %lld × %lld is too small to encode (at least %lld × %lld)",
                        (long long)H, (long long)W, (long long)f, (long long)f);
    int64_t t, ov;
    if ((st = fk_vae_tiling(ctx, opts, lh, lw, &t, &ov))) return st;
    if (t && (H % f || W % f))
        return fk_error(ctx, FK_ERR_SHAPE,
                        "autoencoder: tiled encoding needs the image sides (%lld × %lld) to be multiples "
                        "of %lld",
                        (long long)H, (long long)W, (long long)f);
    int64_t zs[4] = {B, c->z_channels, lh, lw};
    if ((st = fk_tensor_new(ctx, z, FK_F32, 4, zs, "latent"))) return st;
    fk_vae_run r = {ctx, be, v, 0, 0, t ? NULL : (opts ? opts->dbg : NULL), opts ? opts->dbg_user : NULL, 0,
                    false, {0}};
    /* one arena for every image and tile (all tiles have the same size) */
    if (t) st = fk_vae_arena_begin(&r, true, fk_vae_tile_side(lh, t) * f, fk_vae_tile_side(lw, t) * f);
    else st = fk_vae_arena_begin(&r, true, H, W);
    for (int64_t b = 0; b < B && st == FK_OK; b++) {
        r.b = (int)b;
        const float *xi = (const float *)img->data + b * c->in_channels * H * W;
        float *zo = (float *)z->data + b * c->z_channels * lh * lw;
        if (t)
            st = fk_vae_tiled_model(&r, true, xi, c->in_channels, f, zo, c->z_channels, 1, lh, lw, t, ov);
        else
            st = fk_vae_encode_one(&r, xi, H, W, zo);
    }
    fk_vae_arena_end(&r);
    if (opts && opts->peak_act_bytes) *opts->peak_act_bytes = r.peak;
    if (st) fk_tensor_free(z);
    return st;
}

fk_status fk_vae_decode(fk_context *ctx, fk_backend *be, const fk_vae *v, const fk_tensor *zin,
                        fk_tensor *img, const fk_vae_opts *opts) {
    if (!be || !v || !img) return fk_error(ctx, FK_ERR_ARG, "fk_vae_decode: NULL argument");
    memset(img, 0, sizeof(*img));
    const fk_vae_config *c = &v->cfg;
    if (!c->has_decoder)
        return fk_error(ctx, FK_ERR_UNSUPPORTED,
                        "autoencoder: this checkpoint has no decoder (decoder.* tensors)");
    fk_status st = fk_vae_check_input(ctx, zin, c->z_channels, "latent to decode");
    if (!st) st = fk_vae_check_backend(ctx, be);
    if (st) return st;
    const int64_t B = zin->shape[0], lh = zin->shape[2], lw = zin->shape[3];
    const int64_t f = fk_vae_downscale(c);
    int64_t t, ov;
    if ((st = fk_vae_tiling(ctx, opts, lh, lw, &t, &ov))) return st;
    int64_t is[4] = {B, c->out_ch, lh * f, lw * f};
    if ((st = fk_tensor_new(ctx, img, FK_F32, 4, is, "decoded image"))) return st;
    fk_vae_run r = {ctx, be, v, 0, 0, t ? NULL : (opts ? opts->dbg : NULL), opts ? opts->dbg_user : NULL, 0,
                    false, {0}};
    st = fk_vae_arena_begin(&r, false, t ? fk_vae_tile_side(lh, t) : lh, t ? fk_vae_tile_side(lw, t) : lw);
    for (int64_t b = 0; b < B && st == FK_OK; b++) {
        r.b = (int)b;
        const float *zi = (const float *)zin->data + b * c->z_channels * lh * lw;
        float *xo = (float *)img->data + b * c->out_ch * lh * f * lw * f;
        if (t)
            st = fk_vae_tiled_model(&r, false, zi, c->z_channels, 1, xo, c->out_ch, f, lh, lw, t, ov);
        else
            st = fk_vae_decode_one(&r, zi, lh, lw, xo);
    }
    fk_vae_arena_end(&r);
    if (opts && opts->peak_act_bytes) *opts->peak_act_bytes = r.peak;
    if (st) fk_tensor_free(img);
    return st;
}
