/* flux: the FLUX.1 transformer forward pass, written once against the op
 * table (backend.h). Follows black-forest-labs/flux src/flux/model.py and
 * modules/layers.py; see flux.h for the API and the fixtures' README for the
 * reference behaviours reproduced here.
 *
 * Layout of one step (C hidden, H heads, D head_dim, M mlp_hidden,
 * Lt text tokens, Li image tokens, L = Lt + Li):
 *   x     (L, C)   the joint residual stream, text rows [0, Lt) then image
 *                  rows [Lt, L), for the whole forward (no concatenation)
 *   q,k,v (L, H, D) written per stream into their row ranges by row views of
 *                  the q/k/v projection weights
 *   attn  (L, C)   attention output; xmod (L, C) modulated input and
 *                  projection output; mlp (L, M); cat (L, C+M) = [attn | mlp]
 *                  for backends that join them, and before that (free then)
 *                  q and k in bf16, L·C of each, where the attention takes
 *                  them so (v in bf16 then stays in the first half of v)
 * Glue that is not an op (timestep embedding, RoPE table) is O(L·D) plain C
 * on the host, uploaded into runner memory; runner memory (one be->alloc
 * block) is never touched by host code, so the runner works on any backend
 * device (proven on the simulated device, tests/unit/test_flux_devsim.c). */
#include "model/flux.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FK_FLUX_EPS 1e-6f /* LayerNorm and QK RMSNorm */
#define FK_FLUX_MAX_HALF (FK_FLUX_MAX_HEAD_DIM / 2)
/* Conditioning rows per precomputed modulation product: small enough that a
 * backend's matrix-vector path computes them (on the CPU, fewer than
 * FK_CPU_BF16_MIN_M rows stay on the exact f32 path in either precision), so
 * the precomputed vectors are the bits of the per-step products. */
#define FK_FLUX_PRE_ROWS 8

struct fk_flux_runner {
    const fk_flux_model *m;
    fk_backend *be;
    fk_flux_plan plan;
    int64_t Lt, Li, L;
    /* runner memory on the backend's device: one be->alloc for everything
     * below (views of it carry .device = be->device) */
    void *mem;
    float *x;         /* (L, C) */
    float *xmod;      /* (L, C) */
    float *q, *k, *v; /* (L, H, D) each */
    float *attn;      /* (L, C) */
    float *mlp;       /* (L, M) */
    float *cat;       /* (L, C + M) */
    float *pe;        /* (L, D/2, 2, 2) */
    float *emb;       /* (256) sinusoidal embedding */
    float *hid;       /* (C) embedder hidden */
    float *tin, *gin, *vin; /* (C) time_in, guidance_in, vector_in outputs */
    float *vec;       /* (C) conditioning vector */
    float *svec;      /* (C) SiLU(vec), the input of every modulation */
    float *mod_img, *mod_txt; /* (6C) */
    /* device backends only (NULL on the CPU, where inputs and outputs are
     * used in place): staging for host inputs and the host output */
    float *io_img;    /* (Li, in_channels) */
    float *io_txt;    /* (Lt, context_dim) */
    float *io_y;      /* (vec_dim) */
    float *io_out;    /* (Li, out_channels) */
    /* host memory: the glue computed on the host. On the CPU pe_host and
     * emb_host are pe and emb themselves (nothing is copied). */
    void *host;       /* one allocation for ids, ids_in (and pe_host, emb_host) */
    float *ids;       /* (L, 3) the ids pe was computed for */
    float *ids_in;    /* (L, 3) device ids inputs downloaded */
    float *pe_host;   /* (L, D/2, 2, 2) */
    float *emb_host;  /* (256) */
    bool pe_valid;
    fk_flux_hook_fn hook;
    unsigned hook_flags;
    void *hook_user;
    /* modulation vectors precomputed for a list of timesteps
     * (fk_flux_runner_precompute): (n_pre, pre_stride) in runner memory,
     * pre_ts (n_pre) on the host */
    float *pre, *pre_ts;
    int n_pre;
    int64_t pre_stride;
    float pre_g;
    const void *pre_y;
    const float *cur; /* this step's row of pre, or NULL: computed per step */
};

/* ---- device helpers ------------------------------------------------------------------------
 * Runner memory lives on the backend's device; host code never reads or
 * writes it. On the CPU backend host and device are one memory: the host
 * buffers alias the device ones and every transfer below is skipped, so the
 * CPU path does exactly what it did before. */

static bool fk_flux_on_host(const fk_flux_runner *r) { return r->be->device == FK_DEVICE_CPU; }

/* host → runner memory; nothing to do when src already is dst (the CPU). */
static void fk_flux_put(fk_flux_runner *r, void *dst, const void *src, size_t bytes) {
    if (dst != src) r->be->upload(r->be, dst, src, bytes);
}

/* ---- small glue ------------------------------------------------------------------ */

void fk_flux_timestep_embedding(float t, float out[256]) {
    /* timestep_embedding(t, 256, max_period=10000, time_factor=1000) */
    const int half = 128;
    const double tt = 1000.0 * (double)t;
    for (int i = 0; i < half; i++) {
        double freq = exp(-log(10000.0) * (double)i / (double)half);
        double arg = tt * freq;
        out[i] = (float)cos(arg);
        out[half + i] = (float)sin(arg);
    }
}

void fk_flux_rope_table(const fk_flux_config *cfg, const float *ids, int64_t L, float *pe) {
    const int half = cfg->head_dim / 2;
    /* ω of each rotated pair, axes concatenated in id-column order */
    double omega[FK_FLUX_MAX_HALF];
    int axis[FK_FLUX_MAX_HALF];
    int p = 0;
    for (int a = 0; a < 3; a++) {
        const int d = cfg->axes_dim[a];
        for (int j = 0; j < d / 2 && p < FK_FLUX_MAX_HALF; j++, p++) {
            omega[p] = 1.0 / pow((double)cfg->theta, (double)(2 * j) / (double)d);
            axis[p] = a;
        }
    }
    FK_ASSERT(p == half);
    for (int64_t l = 0; l < L; l++) {
        float *row = pe + l * half * 4; /* (D/2, 2, 2) */
        for (int j = 0; j < half; j++) {
            double ang = (double)ids[l * 3 + axis[j]] * omega[j];
            float c = (float)cos(ang), s = (float)sin(ang);
            row[j * 4 + 0] = c;
            row[j * 4 + 1] = -s;
            row[j * 4 + 2] = s;
            row[j * 4 + 3] = c;
        }
    }
}

/* ---- plan ---------------------------------------------------------------------------- */

void fk_flux_plan_compute(const fk_flux_config *cfg, int64_t n_img, int64_t n_txt,
                          fk_flux_plan *plan) {
    const uint64_t C = (uint64_t)cfg->hidden, M = (uint64_t)cfg->mlp_hidden;
    const uint64_t L = (uint64_t)(n_img + n_txt), D = (uint64_t)cfg->head_dim;
    memset(plan, 0, sizeof(*plan));
    plan->n_img = n_img;
    plan->n_txt = n_txt;
    /* x (L, C), pe (L, D/2·4), ids (L, 3), emb 256, 6 vectors of C, 2 mods of 6C */
    plan->act_bytes = 4 * (L * C + L * D * 2 + L * 3 + 256 + 6 * C + 12 * C);
    /* xmod, q, k, v, attn (L, C) each, mlp (L, M), cat (L, C + M) */
    plan->scratch_bytes = 4 * (5 * L * C + L * M + L * (C + M));
}

double fk_flux_flops(const fk_flux_config *c, int64_t n_img, int64_t n_txt) {
    const double C = c->hidden, M = c->mlp_hidden, Li = (double)n_img, Lt = (double)n_txt;
    const double L = Li + Lt;
    double f = 0;
    f += 2 * Li * c->in_channels * C + 2 * Lt * c->context_dim * C;  /* img_in, txt_in */
    f += 2 * (256 * C + C * C) * (c->guidance_embed ? 2 : 1);        /* time/guidance_in */
    f += 2 * (c->vec_dim * C + C * C);                               /* vector_in */
    double dbl = 2 * 2 * C * 6 * C                                   /* modulations */
                 + 2 * L * C * 3 * C + 2 * L * C * C                 /* qkv, proj */
                 + 2 * 2 * L * C * M                                 /* mlp */
                 + 4 * L * L * C;                                    /* QKᵀ, PV */
    double sgl = 2 * C * 3 * C + 2 * L * C * (3 * C + M) + 2 * L * (C + M) * C + 4 * L * L * C;
    f += c->depth_double * dbl + c->depth_single * sgl;
    f += 2 * C * 2 * C + 2 * Li * C * c->out_channels;               /* final layer */
    return f;
}

/* ---- runner ---------------------------------------------------------------------------- */

static bool fk_flux_be_supports(fk_backend *be, fk_op op, const fk_tensor *const *srcs, int n) {
    return !be->supports || be->supports(be, op, srcs, n);
}

/* Every weight dtype must be readable by the backend's linear and rmsnorm. */
static fk_status fk_flux_check_backend(fk_context *ctx, const fk_flux_model *m, fk_backend *be) {
    const fk_flux_weights *w = &m->w;
    float dummy = 0;
    fk_tensor x = fk_view2(FK_F32, &dummy, 1, 1); /* an activation: on the backend's device */
    x.device = be->device;
    const fk_flux_linear *lin[8] = {&w->img_in, &w->txt_in, &w->final_linear, &w->final_shift,
                                    &w->time_in.in_layer, &w->vector_in.out_layer, NULL, NULL};
    int nl = 6;
    if (m->cfg.depth_double) {
        lin[nl++] = &w->dbl[0].img.q;
        lin[nl++] = &w->dbl[0].txt.mlp2;
    } else {
        lin[nl++] = &w->sgl[0].q;
        lin[nl++] = &w->sgl[0].linear2;
    }
    for (int i = 0; i < nl; i++) {
        const fk_tensor *srcs[4] = {&x, &x, &lin[i]->w, lin[i]->b.data ? &lin[i]->b : NULL};
        if (!fk_flux_be_supports(be, FK_OP_LINEAR, srcs, 4)) /* y, x, w, b */
            return fk_error(ctx, FK_ERR_UNSUPPORTED,
                            "backend %s: linear with %s weights is not supported", be->name,
                            fk_dtype_name(lin[i]->w.dtype));
    }
    const fk_tensor *scale = m->cfg.depth_double ? &w->dbl[0].img.q_scale : &w->sgl[0].q_scale;
    const fk_tensor *srcs[3] = {&x, &x, scale};
    if (!fk_flux_be_supports(be, FK_OP_RMSNORM, srcs, 3)) /* y, x, scale */
        return fk_error(ctx, FK_ERR_UNSUPPORTED, "backend %s: rmsnorm with %s scales is not supported",
                        be->name, fk_dtype_name(scale->dtype));
    return FK_OK;
}

/* Carve n buffers of sizes[i] floats, each 64-byte aligned, from base (NULL:
 * only count). Returns the total bytes. */
static size_t fk_flux_carve(char *base, const size_t *sizes, float **const *ptrs, int n) {
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        if (base) *ptrs[i] = sizes[i] ? (float *)(base + off) : NULL;
        off += (sizes[i] * sizeof(float) + 63) & ~(size_t)63;
    }
    return off;
}

fk_status fk_flux_runner_create(fk_context *ctx, const fk_flux_model *m, fk_backend *be,
                                int64_t n_img, int64_t n_txt, fk_flux_runner **out) {
    if (!m || !be || !out) return fk_error(ctx, FK_ERR_ARG, "fk_flux_runner_create: NULL argument");
    *out = NULL;
    if (n_img < 1 || n_txt < 0 || n_img > (1 << 22) || n_txt > (1 << 22))
        return fk_error(ctx, FK_ERR_ARG,
                        "flux: %lld image and %lld text tokens, expected 1..%d and 0..%d",
                        (long long)n_img, (long long)n_txt, 1 << 22, 1 << 22);
    if (!be->alloc || !be->free || !be->upload || !be->download)
        return fk_error(ctx, FK_ERR_ARG, "flux: backend %s has no memory functions", be->name);
    if (fk_flux_check_backend(ctx, m, be) != FK_OK) return FK_ERR_UNSUPPORTED;
    const fk_flux_config *c = &m->cfg;
    fk_flux_runner *r = calloc(1, sizeof(*r));
    if (!r) return fk_error(ctx, FK_ERR_NOMEM, "out of memory (flux runner)");
    r->m = m;
    r->be = be;
    r->Lt = n_txt;
    r->Li = n_img;
    r->L = n_txt + n_img;
    fk_flux_plan_compute(c, n_img, n_txt, &r->plan);
    r->plan.weight_bytes = m->mapped_bytes + m->copied_bytes;
    const size_t C = (size_t)c->hidden, M = (size_t)c->mlp_hidden, D = (size_t)c->head_dim;
    const size_t L = (size_t)r->L, Li = (size_t)n_img, Lt = (size_t)n_txt;
    const bool host = be->device == FK_DEVICE_CPU;
    /* runner memory on the device, each buffer 64-byte aligned; the staging
     * of host inputs/outputs only on a device */
    const size_t sizes[] = {L * C, L * C, L * C, L * C, L * C, L * C, L * M, L * (C + M), L * D * 2,
                            256, C, C, C, C, C, C, 6 * C, 6 * C,
                            host ? 0 : Li * (size_t)c->in_channels,
                            host ? 0 : Lt * (size_t)c->context_dim, host ? 0 : (size_t)c->vec_dim,
                            host ? 0 : Li * (size_t)c->out_channels};
    float **const ptrs[] = {&r->x, &r->xmod, &r->q, &r->k, &r->v, &r->attn, &r->mlp, &r->cat,
                            &r->pe, &r->emb, &r->hid, &r->tin, &r->gin, &r->vin, &r->vec,
                            &r->svec, &r->mod_img, &r->mod_txt, &r->io_img, &r->io_txt, &r->io_y,
                            &r->io_out};
    const int nb = (int)(sizeof(sizes) / sizeof(sizes[0]));
    const size_t total = fk_flux_carve(NULL, sizes, ptrs, nb);
    /* host memory: ids (and on a device the host copies of pe and emb) */
    const size_t hsizes[] = {L * 3, L * 3, host ? 0 : L * D * 2, host ? 0 : 256};
    float **const hptrs[] = {&r->ids, &r->ids_in, &r->pe_host, &r->emb_host};
    const size_t htotal = fk_flux_carve(NULL, hsizes, hptrs, 4);
    r->plan.io_bytes = total - fk_flux_carve(NULL, sizes, ptrs, nb - 4);
    r->mem = be->alloc(be, total);
    r->host = fk_calloc(htotal);
    if (!r->mem || !r->host) {
        if (r->mem) be->free(be, r->mem);
        fk_free(r->host);
        free(r);
        return fk_error(ctx, FK_ERR_NOMEM,
                        "out of memory: flux buffers for %lld tokens need %zu bytes on %s",
                        (long long)L, total, be->name);
    }
    /* not zeroed: every buffer is written before it is read (the devsim
     * test runs on NaN-filled memory and gets the CPU's bits) */
    fk_flux_carve(r->mem, sizes, ptrs, nb);
    fk_flux_carve(r->host, hsizes, hptrs, 4);
    if (host) {
        r->pe_host = r->pe;
        r->emb_host = r->emb;
    }
    *out = r;
    return FK_OK;
}

void fk_flux_runner_free(fk_flux_runner *r) {
    if (!r) return;
    if (r->pre) r->be->free(r->be, r->pre);
    free(r->pre_ts);
    r->be->free(r->be, r->mem);
    fk_free(r->host);
    free(r);
}

const fk_flux_plan *fk_flux_runner_plan(const fk_flux_runner *r) { return &r->plan; }

static uint64_t fk_flux_cache_one(fk_flux_runner *r, const fk_flux_linear *l, bool release) {
    fk_backend *be = r->be;
    size_t n = be->cache_weight(be, &l->w);
    if (n && release && r->m->st) fk_st_model_release(r->m->st, l->w.data, fk_tensor_nbytes(&l->w));
    return n;
}

fk_status fk_flux_runner_cache_weights(fk_context *ctx, fk_flux_runner *r, bool release,
                                       uint64_t *bytes) {
    (void)ctx;
    uint64_t total = 0;
    if (bytes) *bytes = 0;
    if (!r->be->cache_weight) return FK_OK;
    const fk_flux_config *c = &r->m->cfg;
    const fk_flux_weights *w = &r->m->w;
    const bool txt = r->Lt >= 32, img = r->Li >= 32, all = r->L >= 32;
    if (txt) total += fk_flux_cache_one(r, &w->txt_in, release);
    for (int i = 0; i < c->depth_double; i++) {
        const fk_flux_stream *S[2] = {&w->dbl[i].txt, &w->dbl[i].img};
        const bool on[2] = {txt, img};
        for (int s = 0; s < 2; s++) {
            if (!on[s]) continue;
            const fk_flux_linear *ls[6] = {&S[s]->q,    &S[s]->k,    &S[s]->v,
                                           &S[s]->proj, &S[s]->mlp0, &S[s]->mlp2};
            for (int j = 0; j < 6; j++) total += fk_flux_cache_one(r, ls[j], release);
        }
    }
    for (int i = 0; i < c->depth_single && all; i++) {
        const fk_flux_single *S = &w->sgl[i];
        const fk_flux_linear *ls[5] = {&S->q, &S->k, &S->v, &S->mlp, &S->linear2};
        for (int j = 0; j < 5; j++) total += fk_flux_cache_one(r, ls[j], release);
    }
    if (bytes) *bytes = total;
    return FK_OK;
}

void fk_flux_runner_set_hook(fk_flux_runner *r, fk_flux_hook_fn fn, unsigned flags, void *user) {
    r->hook = fn;
    r->hook_flags = fn ? flags : 0;
    r->hook_user = user;
}

/* ---- hooks ------------------------------------------------------------------------------- */

static bool fk_flux_want(const fk_flux_runner *r, unsigned flag) {
    return r->hook && (r->hook_flags & flag);
}

/* Report rows of runner memory under `name`, as a host tensor of shape
 * (ndim, shape): downloaded into a temporary on a device, in place on the
 * CPU. */
static void fk_flux_emit_shape(fk_flux_runner *r, const char *name, const float *data, int ndim,
                               const int64_t *shape) {
    fk_tensor t = fk_tensor_view(FK_F32, (void *)data, ndim, shape);
    float *tmp = NULL;
    if (!fk_flux_on_host(r)) {
        const size_t nb = fk_tensor_nbytes(&t);
        tmp = malloc(nb ? nb : 1);
        if (!tmp) return; /* debug output only */
        r->be->download(r->be, tmp, data, nb);
        t.data = tmp;
    }
    r->hook(r->hook_user, name, &t);
    free(tmp);
}

/* Report (1, n) or (1, rows, cols) in the reference's batch-1 shapes. */
static void fk_flux_emit(fk_flux_runner *r, const char *name, const float *data, int64_t rows,
                         int64_t cols, bool tokens) {
    const int64_t sh3[3] = {1, rows, cols}, sh2[2] = {1, cols};
    fk_flux_emit_shape(r, name, data, tokens ? 3 : 2, tokens ? sh3 : sh2);
}

static void fk_flux_emit_block(fk_flux_runner *r, const char *kind, int i) {
    if (!fk_flux_want(r, FK_FLUX_HOOK_BLOCKS)) return;
    const int64_t C = r->m->cfg.hidden;
    char name[64];
    snprintf(name, sizeof(name), "%s.%d.img", kind, i);
    fk_flux_emit(r, name, r->x + r->Lt * C, r->Li, C, true);
    snprintf(name, sizeof(name), "%s.%d.txt", kind, i);
    fk_flux_emit(r, name, r->x, r->Lt, C, true);
}

/* Debug only: [q | k | v (| mlp)] rows r0..r0+n before the QK norm, as the
 * reference's fused projection output. Allocated on demand (runner memory). */
static void fk_flux_emit_fused(fk_flux_runner *r, const char *name, int64_t r0, int64_t n,
                               bool with_mlp) {
    const int64_t C = r->m->cfg.hidden, M = r->m->cfg.mlp_hidden;
    const int64_t W = 3 * C + (with_mlp ? M : 0);
    fk_backend *be = r->be;
    float *buf = be->alloc(be, (size_t)(n * W) * sizeof(float));
    if (!buf) return; /* debug output only */
    fk_tensor dst = fk_be_view2(be, buf, n, W);
    const float *parts[4] = {r->q, r->k, r->v, r->mlp};
    for (int p = 0; p < (with_mlp ? 4 : 3); p++) {
        int64_t w = p < 3 ? C : M;
        fk_tensor src = fk_be_view2(be, parts[p] + r0 * w, n, w);
        be->copy_cols(be, &dst, p * C, &src, 0, w);
    }
    fk_flux_emit(r, name, buf, n, W, true);
    be->free(be, buf);
}

/* ---- building blocks ---------------------------------------------------------------------- */

static const fk_tensor *fk_flux_bias(const fk_flux_linear *l) { return l->b.data ? &l->b : NULL; }

/* The MLP hidden state in the tile layout of the backend's products
 * (backend.h's tiled bf16 activations): a dtype value of this file only,
 * which fk_flux_view2 turns into bf16 with FK_LAYOUT_TILES. */
#define FK_FLUX_TILES ((fk_dtype)(FK_DTYPE_COUNT + 1))

/* fk_be_view2_as, FK_FLUX_TILES included */
static fk_tensor fk_flux_view2(const fk_backend *be, fk_dtype dt, const void *p, int64_t d0,
                               int64_t d1) {
    fk_tensor t = fk_be_view2_as(be, dt == FK_FLUX_TILES ? FK_BF16 : dt, p, d0, d1);
    if (dt == FK_FLUX_TILES) t.layout = FK_LAYOUT_TILES;
    return t;
}

/* y (rows, out) = x (rows, in) · wᵀ + b */
static void fk_flux_linear_rows(fk_backend *be, float *y, const float *x, int64_t rows,
                                const fk_flux_linear *l) {
    const int64_t out = l->w.shape[0], in = l->w.shape[1];
    fk_tensor ty = fk_be_view2(be, y, rows, out);
    fk_tensor tx = fk_be_view2(be, x, rows, in);
    be->linear(be, &ty, &tx, &l->w, fk_flux_bias(l));
}

/* Whether the backend runs product l on `rows` rows with an x of dtype xdt
 * and a y of dtype ydt — linear (act none) or linear_act, or with cat,
 * linear_cat on [x (C columns) | x2 (the MLP hidden state) of dtype x2dt]
 * into an f32 y — asked with views of the shapes (supports() reads no data).
 * Asked for bf16 operands, which a backend takes only where the product
 * would round them to bf16 anyway (backend.h, "bf16 activations": the same
 * bits, half the bytes); false for a backend without supports(). */
static bool fk_flux_product_ok(const fk_flux_runner *r, int64_t rows, const fk_flux_linear *l,
                               fk_act act, fk_dtype xdt, fk_dtype ydt, bool cat, fk_dtype x2dt) {
    fk_backend *be = r->be;
    if (!be->supports) return false;
    const int64_t C = r->m->cfg.hidden;
    fk_tensor ty = fk_flux_view2(be, ydt, NULL, rows, l->w.shape[0]);
    fk_tensor tx = fk_flux_view2(be, xdt, NULL, rows, cat ? C : l->w.shape[1]);
    if (cat) {
        fk_tensor tx2 = fk_flux_view2(be, x2dt, NULL, rows, l->w.shape[1] - C);
        const fk_tensor *p[5] = {&ty, &tx, &tx2, &l->w, fk_flux_bias(l)};
        return be->supports(be, FK_OP_LINEAR_CAT, p, 5);
    }
    const fk_tensor *p[4] = {&ty, &tx, &l->w, fk_flux_bias(l)};
    return be->supports(be, act == FK_ACT_NONE ? FK_OP_LINEAR : FK_OP_LINEAR_ACT, p, 4);
}

/* The dtype of the MLP hidden state of `rows` rows between its producer
 * (the GELU product of `up`) and its consumer (the product of `down`, or
 * linear2 of a single block on [attn | mlp] when cat): FK_FLUX_TILES, else
 * bf16, where both take it (the same bits), else f32. */
static fk_dtype fk_flux_mlp_dt(const fk_flux_runner *r, int64_t rows, const fk_flux_linear *up,
                               const fk_flux_linear *down, bool cat) {
    static const fk_dtype cand[2] = {FK_FLUX_TILES, FK_BF16};
    for (int i = 0; i < 2; i++) {
        const fk_dtype h = cand[i];
        if (fk_flux_product_ok(r, rows, up, FK_ACT_GELU_TANH, FK_F32, h, false, FK_F32) &&
            (cat ? fk_flux_product_ok(r, rows, down, FK_ACT_NONE, FK_F32, FK_F32, true, h)
                 : fk_flux_product_ok(r, rows, down, FK_ACT_NONE, h, FK_F32, false, FK_F32)))
            return h;
    }
    return FK_F32;
}

/* The dtype of the modulated LayerNorm output in r->xmod (rows, C): the
 * tiles (FK_FLUX_TILES), else bf16, where the backend writes that y in
 * layernorm_modulate and takes that x in each product that reads it (l[i]
 * with act[i] into a y of dtype ydt[i]; ydt NULL: f32), else f32. */
static fk_dtype fk_flux_norm_dt(const fk_flux_runner *r, int64_t rows, int n,
                                const fk_flux_linear *const *l, const fk_act *act,
                                const fk_dtype *ydt) {
    fk_backend *be = r->be;
    if (!be->supports) return FK_F32;
    const int64_t C = r->m->cfg.hidden;
    static const fk_dtype cand[2] = {FK_FLUX_TILES, FK_BF16};
    for (int c = 0; c < 2; c++) {
        fk_tensor tn = fk_flux_view2(be, cand[c], NULL, rows, C);
        fk_tensor tx = fk_be_view2(be, NULL, rows, C), tm = fk_be_view2(be, NULL, 1, C);
        const fk_tensor *pn[4] = {&tn, &tx, &tm, &tm};
        bool ok = be->supports(be, FK_OP_LAYERNORM_MODULATE, pn, 4);
        for (int i = 0; ok && i < n; i++)
            ok = fk_flux_product_ok(r, rows, l[i], act[i], cand[c], ydt ? ydt[i] : FK_F32, false,
                                    FK_F32);
        if (ok) return cand[c];
    }
    return FK_F32;
}

/* y[i] (rows, out_i) = act[i](x (rows, in) · w_iᵀ + b_i), i < n ≤ 4: the
 * products of one x (of dtype xdt) in one call (fk_backend_linear_multi: a
 * backend may prepare x once; the bits of the separate products); y[i] of
 * dtype ydt[i] (ydt NULL: all f32) */
static void fk_flux_linear_multi_rows(fk_backend *be, int n, float *const *y, const void *x,
                                      fk_dtype xdt, int64_t rows, const fk_flux_linear *const *l,
                                      const fk_act *act, const fk_dtype *ydt) {
    fk_tensor ty[4], tx = fk_flux_view2(be, xdt, x, rows, l[0]->w.shape[1]);
    fk_tensor *yp[4];
    const fk_tensor *wp[4], *bp[4];
    for (int i = 0; i < n; i++) {
        ty[i] = fk_flux_view2(be, ydt ? ydt[i] : FK_F32, y[i], rows, l[i]->w.shape[0]);
        yp[i] = &ty[i];
        wp[i] = &l[i]->w;
        bp[i] = fk_flux_bias(l[i]);
    }
    fk_backend_linear_multi(be, n, yp, &tx, wp, bp, act);
}

/* out (C) = out_layer(SiLU(in_layer(x))) */
static void fk_flux_embedder_fwd(fk_flux_runner *r, const fk_flux_embedder *e, const float *x,
                                 float *out) {
    fk_backend *be = r->be;
    const int64_t C = r->m->cfg.hidden;
    fk_flux_linear_rows(be, r->hid, x, 1, &e->in_layer);
    fk_tensor h = fk_be_view2(be, r->hid, 1, C);
    be->silu(be, &h, &h);
    fk_flux_linear_rows(be, out, r->hid, 1, &e->out_layer);
}

/* y (n, C) of dtype ydt = (1 + scale)·LayerNorm(x) + shift, shift/scale (C) */
static void fk_flux_ln_modulate(fk_backend *be, void *y, fk_dtype ydt, const float *x, int64_t n,
                                int64_t C, const float *shift, const float *scale) {
    fk_tensor ty = fk_flux_view2(be, ydt, y, n, C), tx = fk_be_view2(be, x, n, C);
    fk_tensor tsh = fk_be_view2(be, shift, 1, C);
    fk_tensor tsc = fk_be_view2(be, scale, 1, C);
    be->layernorm_modulate(be, &ty, &tx, &tsh, &tsc, FK_FLUX_EPS);
}

/* x (n, C) += gate (C) · y (n, C) */
static void fk_flux_gated(fk_backend *be, float *x, const float *y, int64_t n, int64_t C,
                          const float *gate) {
    fk_tensor tx = fk_be_view2(be, x, n, C), ty = fk_be_view2(be, y, n, C);
    fk_tensor tg = fk_be_view2(be, gate, 1, C);
    be->gated_add(be, &tx, &ty, &tg);
}

/* The attention's q, k (normed and rotated) and v, each (L, H, D): f32 in
 * q, k, v, or with qb bf16 — q and k in cat (the first and the second L·C
 * values), v in the first half of v. Row r0's address in each. */
static void *fk_flux_qkv_at(const fk_flux_runner *r, int i, bool qb, int64_t r0) {
    const int64_t C = r->m->cfg.hidden;
    if (!qb) return (i == 0 ? r->q : i == 1 ? r->k : r->v) + r0 * C;
    return (uint16_t *)(i == 2 ? (void *)r->v : (void *)r->cat) + (i == 1 ? r->L * C : 0) + r0 * C;
}

/* The RoPE table's rows [r0, r0+n): pe (n, D/2, 2, 2) */
static fk_tensor fk_flux_pe_rows(const fk_flux_runner *r, int64_t r0, int64_t n) {
    const int64_t D = r->m->cfg.head_dim;
    return fk_be_view4(r->be, r->pe + r0 * D * 2, n, D / 2, 2, 2);
}

/* QK RMSNorm, then RoPE, of rows [r0, r0+n) of q and k, each (n, H, D), the
 * f32 products, into the attention's q and k (fk_flux_qkv_at): in place, or
 * rounded to bf16 with qb. */
static void fk_flux_qk_norm_rope(fk_flux_runner *r, int64_t r0, int64_t n,
                                 const fk_tensor *q_scale, const fk_tensor *k_scale, bool qb) {
    const fk_flux_config *c = &r->m->cfg;
    const int64_t C = c->hidden, H = c->num_heads, D = c->head_dim;
    fk_backend *be = r->be;
    const fk_dtype dt = qb ? FK_BF16 : FK_F32;
    fk_tensor tq = fk_be_view3(be, r->q + r0 * C, n, H, D);
    fk_tensor tk = fk_be_view3(be, r->k + r0 * C, n, H, D);
    fk_tensor yq = fk_be_view3_as(be, dt, fk_flux_qkv_at(r, 0, qb, r0), n, H, D);
    fk_tensor yk = fk_be_view3_as(be, dt, fk_flux_qkv_at(r, 1, qb, r0), n, H, D);
    fk_tensor pe = fk_flux_pe_rows(r, r0, n);
    be->rmsnorm_rope(be, &yq, &tq, q_scale, &pe, FK_FLUX_EPS);
    be->rmsnorm_rope(be, &yk, &tk, k_scale, &pe, FK_FLUX_EPS);
}

/* Whether q and k of `rows` rows can come normed and rotated out of their
 * products (linear_rmsnorm_rope, l[0] and l[1] with scale[0], scale[1]) on
 * an x of dtype xdt, into the attention's q and k (bf16 with qb). */
static bool fk_flux_qk_fused_ok(const fk_flux_runner *r, int64_t rows, fk_dtype xdt, bool qb,
                                const fk_flux_linear *const *l, const fk_tensor *const *scale) {
    fk_backend *be = r->be;
    if (!be->linear_rmsnorm_rope || !be->supports) return false;
    const int64_t C = r->m->cfg.hidden;
    fk_tensor ty = fk_flux_view2(be, qb ? FK_BF16 : FK_F32, NULL, rows, C);
    fk_tensor tx = fk_flux_view2(be, xdt, NULL, rows, l[0]->w.shape[1]);
    fk_tensor tpe = fk_flux_pe_rows(r, 0, rows);
    for (int i = 0; i < 2; i++) {
        const fk_tensor *p[6] = {&ty, &tx, &l[i]->w, fk_flux_bias(l[i]), scale[i], &tpe};
        if (!be->supports(be, FK_OP_LINEAR_RMSNORM_ROPE, p, 6)) return false;
    }
    return true;
}

/* q or k (i = 0, 1) of rows [r0, r0+n) from x (n, in) of dtype xdt: the
 * product of l, normed with scale and rotated, in one op
 * (linear_rmsnorm_rope), into the attention's q or k (fk_flux_qkv_at). */
static void fk_flux_linear_qk(fk_flux_runner *r, int i, int64_t r0, int64_t n, const void *x,
                              fk_dtype xdt, const fk_flux_linear *l, const fk_tensor *scale,
                              bool qb) {
    const int64_t C = r->m->cfg.hidden;
    fk_backend *be = r->be;
    fk_tensor ty = fk_flux_view2(be, qb ? FK_BF16 : FK_F32, fk_flux_qkv_at(r, i, qb, r0), n, C);
    fk_tensor tx = fk_flux_view2(be, xdt, x, n, l->w.shape[1]);
    fk_tensor pe = fk_flux_pe_rows(r, r0, n);
    be->linear_rmsnorm_rope(be, &ty, &tx, &l->w, fk_flux_bias(l), scale, &pe, FK_FLUX_EPS);
}

/* attn (L, C), of dtype adt, = softmax(q·kᵀ/√D)·v over the joint sequence (q, k
 * normed and rotated; bf16 with qb). */
static void fk_flux_attention(fk_flux_runner *r, fk_dtype adt, bool qb) {
    const fk_flux_config *c = &r->m->cfg;
    const int64_t L = r->L, H = c->num_heads, D = c->head_dim, C = c->hidden;
    fk_backend *be = r->be;
    const fk_dtype dt = qb ? FK_BF16 : FK_F32;
    fk_tensor tq = fk_be_view3_as(be, dt, fk_flux_qkv_at(r, 0, qb, 0), L, H, D);
    fk_tensor tk = fk_be_view3_as(be, dt, fk_flux_qkv_at(r, 1, qb, 0), L, H, D);
    fk_tensor tv = fk_be_view3_as(be, dt, fk_flux_qkv_at(r, 2, qb, 0), L, H, D);
    fk_tensor ta = fk_flux_view2(be, adt, r->attn, L, C);
    be->attention(be, &ta, &tq, &tk, &tv, NULL, (float)(1.0 / sqrt((double)D)), false);
}

/* Whether the backend runs the attention with an out of dtype odt and q, k,
 * v of dtype idt (consumers and producers are asked apart). */
static bool fk_flux_attn_ok(const fk_flux_runner *r, fk_dtype odt, fk_dtype idt) {
    fk_backend *be = r->be;
    if (!be->supports) return false;
    const fk_flux_config *c = &r->m->cfg;
    fk_tensor tq = fk_be_view3_as(be, idt, NULL, r->L, c->num_heads, c->head_dim);
    fk_tensor ta = fk_flux_view2(be, odt, NULL, r->L, c->hidden);
    const fk_tensor *pa[5] = {&ta, &tq, &tq, &tq, NULL};
    return be->supports(be, FK_OP_ATTENTION, pa, 5);
}

/* Whether q, k and v reach the attention in bf16 (backend.h's bf16
 * activations: the values it would round them to): the attention takes
 * them, rmsnorm_rope writes q and k of each stream's rows (rows[s], s < ns)
 * and v's product (v[s], on an f32 x; fk_flux_norm_dt asks again for a
 * bf16 x) writes a bf16 y. */
static bool fk_flux_qkv_bf16(const fk_flux_runner *r, int ns, const int64_t *rows,
                             const fk_flux_linear *const *v) {
    fk_backend *be = r->be;
    if (!fk_flux_attn_ok(r, FK_F32, FK_BF16)) return false;
    const fk_flux_config *c = &r->m->cfg;
    const int64_t H = c->num_heads, D = c->head_dim;
    for (int s = 0; s < ns; s++) {
        if (rows[s] == 0) continue;
        fk_tensor ty = fk_be_view3_as(be, FK_BF16, NULL, rows[s], H, D);
        fk_tensor tx = fk_be_view3(be, NULL, rows[s], H, D);
        fk_tensor tpe = fk_flux_pe_rows(r, 0, rows[s]);
        const fk_tensor *p[4] = {&ty, &tx, NULL, &tpe}; /* the scale: checked at load */
        if (!be->supports(be, FK_OP_RMSNORM_ROPE, p, 4) ||
            !fk_flux_product_ok(r, rows[s], v[s], FK_ACT_NONE, FK_F32, FK_BF16, false, FK_F32))
            return false;
    }
    return true;
}

/* The modulation linears, numbered in "slots": double block bi stream s
 * (0 txt, 1 img) is slot 2·bi + s (6C outputs), single block bi is slot
 * 2·depth_double + bi (3C), then the final layer's shift and scale (C each).
 * A precomputed row holds their outputs in slot order. */
static int fk_flux_mod_slots(const fk_flux_config *c) {
    return 2 * c->depth_double + c->depth_single + 2;
}

static const fk_flux_linear *fk_flux_mod_linear(const fk_flux_model *m, int slot) {
    const int nd = m->cfg.depth_double, ns = m->cfg.depth_single;
    if (slot < 2 * nd) return slot % 2 ? &m->w.dbl[slot / 2].img.mod : &m->w.dbl[slot / 2].txt.mod;
    if (slot < 2 * nd + ns) return &m->w.sgl[slot - 2 * nd].mod;
    return slot == 2 * nd + ns ? &m->w.final_shift : &m->w.final_scale;
}

/* Offset of a slot in a precomputed row (floats); slot = number of slots:
 * the row's length. */
static int64_t fk_flux_mod_offset(const fk_flux_config *c, int slot) {
    const int64_t C = c->hidden;
    const int nd = c->depth_double, ns = c->depth_single;
    if (slot <= 2 * nd) return 6 * C * slot;
    if (slot <= 2 * nd + ns) return 12 * C * nd + 3 * C * (slot - 2 * nd);
    return 12 * C * nd + 3 * C * ns + C * (slot - 2 * nd - ns);
}

/* The modulation of one slot for this step: the precomputed row when there
 * is one, else its linear on SiLU(vec) into dst. */
static const float *fk_flux_mod(fk_flux_runner *r, float *dst, int slot) {
    if (r->cur) return r->cur + fk_flux_mod_offset(&r->m->cfg, slot);
    fk_flux_linear_rows(r->be, dst, r->svec, 1, fk_flux_mod_linear(r->m, slot));
    return dst;
}

static void fk_flux_double_block(fk_flux_runner *r, int bi) {
    const fk_flux_config *c = &r->m->cfg;
    const fk_flux_double *B = &r->m->w.dbl[bi];
    fk_backend *be = r->be;
    const int64_t C = c->hidden, M = c->mlp_hidden;
    const bool dbg = bi == 0 && fk_flux_want(r, FK_FLUX_HOOK_DEBUG);
    /* stream 0 = txt rows [0, Lt), stream 1 = img rows [Lt, L) */
    const fk_flux_stream *S[2] = {&B->txt, &B->img};
    const float *mod[2];
    float *mbuf[2] = {r->mod_txt, r->mod_img};
    const int64_t r0[2] = {0, r->Lt}, n[2] = {r->Lt, r->Li};
    static const char *const sname[2] = {"txt", "img"};
    char name[64];

    for (int s = 1; s >= 0; s--) {
        mod[s] = fk_flux_mod(r, mbuf[s], 2 * bi + s); /* (6C) */
        if (dbg) {
            snprintf(name, sizeof(name), "dbg.double0.%s_mod", sname[s]);
            fk_flux_emit(r, name, mod[s], 1, 6 * C, false);
        }
    }
    /* q, k, v into the attention in bf16 where it takes them (not in the
     * debug path, which reads them in f32) */
    const fk_flux_linear *const vs[2] = {&S[0]->v, &S[1]->v};
    const bool qb = !dbg && fk_flux_qkv_bf16(r, 2, n, vs);
    for (int s = 0; s < 2; s++) {
        if (n[s] == 0) continue;
        const float *xs = r->x + r0[s] * C;
        float *xm = r->xmod + r0[s] * C; /* f32 rows: room for the bf16 ones */
        { /* the modulated LayerNorm in bf16 where q, k and v take it */
            float *const ys[3] = {r->q + r0[s] * C, r->k + r0[s] * C,
                                  fk_flux_qkv_at(r, 2, qb, r0[s])};
            const fk_flux_linear *const ls[3] = {&S[s]->q, &S[s]->k, &S[s]->v};
            const fk_act acts[3] = {FK_ACT_NONE, FK_ACT_NONE, FK_ACT_NONE};
            const fk_dtype ydt[3] = {FK_F32, FK_F32, qb ? FK_BF16 : FK_F32};
            const fk_dtype nd = fk_flux_norm_dt(r, n[s], 3, ls, acts, ydt);
            fk_flux_ln_modulate(be, xm, nd, xs, n[s], C, mod[s], mod[s] + C); /* shift1, scale1 */
            /* q and k normed and rotated by their products where the backend
             * does that (not in the debug path, which reads the raw products) */
            const fk_tensor *const sc[2] = {&S[s]->q_scale, &S[s]->k_scale};
            if (!dbg && fk_flux_qk_fused_ok(r, n[s], nd, qb, ls, sc)) {
                for (int i = 0; i < 2; i++)
                    fk_flux_linear_qk(r, i, r0[s], n[s], xm, nd, ls[i], sc[i], qb);
                fk_flux_linear_multi_rows(be, 1, ys + 2, xm, nd, n[s], ls + 2, acts + 2, ydt + 2);
                continue;
            }
            fk_flux_linear_multi_rows(be, 3, ys, xm, nd, n[s], ls, acts, ydt);
        }
        if (dbg) {
            snprintf(name, sizeof(name), "dbg.double0.%s_qkv", sname[s]);
            fk_flux_emit_fused(r, name, r0[s], n[s], false);
        }
        fk_flux_qk_norm_rope(r, r0[s], n[s], &S[s]->q_scale, &S[s]->k_scale, qb);
    }
    /* the attention output in bf16 where both projections take it (not in
     * the debug path, which reads it in f32) */
    bool abf = !dbg && fk_flux_attn_ok(r, FK_BF16, qb ? FK_BF16 : FK_F32);
    for (int s = 0; s < 2; s++)
        abf = abf && (n[s] == 0 || fk_flux_product_ok(r, n[s], &S[s]->proj, FK_ACT_NONE, FK_BF16,
                                                      FK_F32, false, FK_F32));
    const fk_dtype adt = abf ? FK_BF16 : FK_F32;
    fk_flux_attention(r, adt, qb);
    for (int s = 0; s < 2; s++) {
        if (n[s] == 0) continue;
        float *xs = r->x + r0[s] * C, *xm = r->xmod + r0[s] * C, *ml = r->mlp + r0[s] * M;
        const void *as = (const char *)r->attn + (size_t)(r0[s] * C) * fk_dtype_size(adt);
        if (dbg) {
            snprintf(name, sizeof(name), "dbg.double0.%s_attn", sname[s]);
            fk_flux_emit(r, name, as, n[s], C, true);
        }
        {
            fk_tensor ty = fk_be_view2(be, xm, n[s], C), ta = fk_flux_view2(be, adt, as, n[s], C);
            be->linear(be, &ty, &ta, &S[s]->proj.w, fk_flux_bias(&S[s]->proj));
        }
        fk_flux_gated(be, xs, xm, n[s], C, mod[s] + 2 * C); /* gate1 */
        { /* the MLP, its input and hidden state in bf16 where the backend takes them
           * (the hidden state tiled in its f32 rows: the padding fits from 16 rows) */
            const fk_dtype hdt = fk_flux_mlp_dt(r, n[s], &S[s]->mlp0, &S[s]->mlp2, false);
            const fk_flux_linear *const ls[1] = {&S[s]->mlp0};
            const fk_act acts[1] = {FK_ACT_GELU_TANH};
            const fk_dtype nd = fk_flux_norm_dt(r, n[s], 1, ls, acts, &hdt);
            fk_flux_ln_modulate(be, xm, nd, xs, n[s], C, mod[s] + 3 * C, mod[s] + 4 * C);
            fk_tensor th = fk_flux_view2(be, hdt, ml, n[s], M);
            FK_ASSERT(fk_tensor_nbytes(&th) <= (size_t)(n[s] * M) * 4);
            fk_tensor tn = fk_flux_view2(be, nd, xm, n[s], C), txm = fk_be_view2(be, xm, n[s], C);
            be->linear_act(be, &th, &tn, &S[s]->mlp0.w, fk_flux_bias(&S[s]->mlp0),
                           FK_ACT_GELU_TANH);
            be->linear(be, &txm, &th, &S[s]->mlp2.w, fk_flux_bias(&S[s]->mlp2));
        }
        fk_flux_gated(be, xs, xm, n[s], C, mod[s] + 5 * C); /* gate2 */
    }
    fk_flux_emit_block(r, "double", bi);
}

static void fk_flux_single_block(fk_flux_runner *r, int bi) {
    const fk_flux_config *c = &r->m->cfg;
    const fk_flux_single *S = &r->m->w.sgl[bi];
    fk_backend *be = r->be;
    const int64_t C = c->hidden, M = c->mlp_hidden, L = r->L;
    const bool dbg = bi == 0 && fk_flux_want(r, FK_FLUX_HOOK_DEBUG);
    const float *mod = fk_flux_mod(r, r->mod_img, 2 * c->depth_double + bi); /* (3C): shift, scale, gate */
    if (dbg) fk_flux_emit(r, "dbg.single0.mod", mod, 1, 3 * C, false);
    /* the MLP hidden state and the modulated LayerNorm in bf16 where the
     * backend takes them (not in the debug path, which reads them in f32) */
    const fk_dtype hdt = dbg ? FK_F32 : fk_flux_mlp_dt(r, L, &S->mlp, &S->linear2, true);
    const fk_flux_linear *const vs[1] = {&S->v};
    const bool qb = !dbg && fk_flux_qkv_bf16(r, 1, &L, vs); /* q, k, v in bf16 */
    float *const ys[4] = {r->q, r->k, fk_flux_qkv_at(r, 2, qb, 0), r->mlp};
    const fk_flux_linear *const ls[4] = {&S->q, &S->k, &S->v, &S->mlp};
    const fk_act acts[4] = {FK_ACT_NONE, FK_ACT_NONE, FK_ACT_NONE, FK_ACT_GELU_TANH};
    const fk_dtype ydt[4] = {FK_F32, FK_F32, qb ? FK_BF16 : FK_F32, hdt};
    const fk_dtype nd = dbg ? FK_F32 : fk_flux_norm_dt(r, L, 4, ls, acts, ydt);
    fk_flux_ln_modulate(be, r->xmod, nd, r->x, L, C, mod, mod + C);
    fk_tensor tm = fk_flux_view2(be, hdt, r->mlp, L, M);
    FK_ASSERT(fk_tensor_nbytes(&tm) <= (size_t)(L * M) * 4); /* tiled: padding fits */
    if (dbg) { /* the reference's fused projection output, before the GELU */
        fk_flux_linear_rows(be, r->q, r->xmod, L, &S->q);
        fk_flux_linear_rows(be, r->k, r->xmod, L, &S->k);
        fk_flux_linear_rows(be, r->v, r->xmod, L, &S->v);
        fk_flux_linear_rows(be, r->mlp, r->xmod, L, &S->mlp);
        fk_flux_emit_fused(r, "dbg.single0.linear1", 0, L, true);
        be->gelu_tanh(be, &tm, &tm);
    } else { /* linear1: q, k, v and the MLP (GELU) of one x */
        const fk_tensor *const sc[2] = {&S->q_scale, &S->k_scale};
        if (fk_flux_qk_fused_ok(r, L, nd, qb, ls, sc)) { /* q and k normed and rotated */
            for (int i = 0; i < 2; i++)
                fk_flux_linear_qk(r, i, 0, L, r->xmod, nd, ls[i], sc[i], qb);
            fk_flux_linear_multi_rows(be, 2, ys + 2, r->xmod, nd, L, ls + 2, acts + 2, ydt + 2);
        } else {
            fk_flux_linear_multi_rows(be, 4, ys, r->xmod, nd, L, ls, acts, ydt);
            fk_flux_qk_norm_rope(r, 0, L, &S->q_scale, &S->k_scale, qb);
        }
    }
    if (dbg) fk_flux_qk_norm_rope(r, 0, L, &S->q_scale, &S->k_scale, qb);
    /* the attention output tiled, else bf16, where linear2 takes it beside
     * the hidden state (the debug path reads it in f32) */
    fk_dtype adt = FK_F32;
    for (int ci = 0; !dbg && ci < 2 && adt == FK_F32; ci++) {
        const fk_dtype a = ci ? FK_BF16 : FK_FLUX_TILES;
        if (fk_flux_attn_ok(r, a, qb ? FK_BF16 : FK_F32) &&
            fk_flux_product_ok(r, L, &S->linear2, FK_ACT_NONE, a, FK_F32, true, hdt))
            adt = a;
    }
    fk_flux_attention(r, adt, qb);
    fk_tensor tcat = fk_be_view2(be, r->cat, L, C + M);
    fk_tensor ta = fk_flux_view2(be, adt, r->attn, L, C);
    FK_ASSERT(fk_tensor_nbytes(&ta) <= (size_t)(L * C) * 4); /* tiled: padding fits */
    if (dbg) {
        be->copy_cols(be, &tcat, 0, &ta, 0, C);
        be->copy_cols(be, &tcat, C, &tm, 0, M);
        fk_flux_emit(r, "dbg.single0.linear2_in", r->cat, L, C + M, true);
    }
    /* linear2 on [attn | mlp], joined in cat only by backends that need it */
    fk_tensor txm = fk_be_view2(be, r->xmod, L, C);
    be->linear_cat(be, &txm, &ta, &tm, &S->linear2.w, fk_flux_bias(&S->linear2), &tcat);
    fk_flux_gated(be, r->x, r->xmod, L, C, mod + 2 * C);
    fk_flux_emit_block(r, "single", bi);
}

/* ---- forward ------------------------------------------------------------------------------ */

static fk_status fk_flux_check_input(fk_context *ctx, const fk_flux_runner *r, const char *what,
                                     const fk_tensor *t, int64_t rows, int64_t cols);

/* The data of input t in runner memory: t itself when it is on the
 * backend's device (always on the CPU), else uploaded into staging. */
static const float *fk_flux_in(fk_flux_runner *r, const fk_tensor *t, float *staging) {
    if (t->device == r->be->device) return t->data;
    r->be->upload(r->be, staging, t->data, fk_tensor_nbytes(t));
    return staging;
}

/* The data of ids input t on the host: t itself, or downloaded into buf. */
static const float *fk_flux_host_ids(fk_flux_runner *r, const fk_tensor *t, float *buf) {
    if (t->device == FK_DEVICE_CPU) return t->data;
    r->be->download(r->be, buf, t->data, fk_tensor_nbytes(t));
    return buf;
}

/* vec = time_in(emb(t)) [+ guidance_in(emb(g))] + vector_in(y),
 * svec (C) = SiLU(vec). y (vec_dim) in runner memory. */
static void fk_flux_cond(fk_flux_runner *r, float timestep, float guidance, const float *y,
                         float *svec, bool dbg) {
    const fk_flux_config *c = &r->m->cfg;
    const fk_flux_weights *w = &r->m->w;
    fk_backend *be = r->be;
    const int64_t C = c->hidden;
    const size_t eb = 256 * sizeof(float);
    /* the sinusoidal embeddings are computed on the host and uploaded */
    fk_flux_timestep_embedding(timestep, r->emb_host);
    fk_flux_put(r, r->emb, r->emb_host, eb);
    if (dbg) fk_flux_emit(r, "dbg.t_emb", r->emb, 1, 256, false);
    fk_flux_embedder_fwd(r, &w->time_in, r->emb, r->tin);
    if (dbg) fk_flux_emit(r, "dbg.time_in", r->tin, 1, C, false);
    fk_tensor tvec = fk_be_view2(be, r->vec, 1, C), ttin = fk_be_view2(be, r->tin, 1, C);
    fk_tensor tv = fk_be_view2(be, r->vin, 1, C);
    const fk_tensor *acc = &ttin; /* the sum so far: tin, then vec */
    if (c->guidance_embed) {
        fk_flux_timestep_embedding(guidance, r->emb_host);
        fk_flux_put(r, r->emb, r->emb_host, eb);
        if (dbg) fk_flux_emit(r, "dbg.g_emb", r->emb, 1, 256, false);
        fk_flux_embedder_fwd(r, &w->guidance_in, r->emb, r->gin);
        if (dbg) fk_flux_emit(r, "dbg.guidance_in", r->gin, 1, C, false);
        fk_tensor tg = fk_be_view2(be, r->gin, 1, C);
        be->add(be, &tvec, acc, &tg); /* vec = tin + gin */
        acc = &tvec;
    }
    fk_flux_embedder_fwd(r, &w->vector_in, y, r->vin);
    if (dbg) fk_flux_emit(r, "dbg.vector_in", r->vin, 1, C, false);
    be->add(be, &tvec, acc, &tv); /* vec (+)= vin */
    if (dbg) fk_flux_emit(r, "dbg.vec", r->vec, 1, C, false);
    fk_tensor tsv = fk_be_view2(be, svec, 1, C);
    be->silu(be, &tsv, &tvec);
}

/* Rows [k0, k0 + m) of every modulation linear for the conditioning rows
 * sv (m, C): written into pre (n_pre, stride) at each linear's column
 * offset. tmp (m, 6C) scratch; all runner memory. */
static void fk_flux_pre_rows(fk_flux_runner *r, const float *sv, int64_t m, int64_t k0, float *tmp) {
    const fk_flux_config *c = &r->m->cfg;
    fk_backend *be = r->be;
    const int64_t stride = r->pre_stride;
    fk_tensor dst = fk_be_view2(be, r->pre + k0 * stride, m, stride);
    for (int i = 0; i < fk_flux_mod_slots(c); i++) {
        const fk_flux_linear *lin = fk_flux_mod_linear(r->m, i);
        const int64_t off = fk_flux_mod_offset(c, i), n = lin->w.shape[0];
        fk_flux_linear_rows(be, tmp, sv, m, lin); /* (m, n) */
        fk_tensor src = fk_be_view2(be, tmp, m, n);
        be->copy_cols(be, &dst, off, &src, 0, n);
    }
}

static void fk_flux_pre_drop(fk_flux_runner *r) {
    if (r->pre) r->be->free(r->be, r->pre);
    free(r->pre_ts);
    r->pre = r->pre_ts = NULL;
    r->n_pre = 0;
    r->cur = NULL;
}

fk_status fk_flux_runner_precompute(fk_context *ctx, fk_flux_runner *r, const float *timesteps,
                                    int n, float guidance, const fk_tensor *y) {
    if (!r || (n > 0 && !timesteps))
        return fk_error(ctx, FK_ERR_ARG, "fk_flux_runner_precompute: NULL argument");
    fk_flux_pre_drop(r);
    if (n <= 0) return FK_OK;
    const fk_flux_config *c = &r->m->cfg;
    fk_backend *be = r->be;
    fk_status st = fk_flux_check_input(ctx, r, "y", y, 1, c->vec_dim);
    if (st) return st;
    for (int k = 0; k < n; k++)
        if (!isfinite(timesteps[k]))
            return fk_error(ctx, FK_ERR_ARG, "flux precompute: timestep %d is not finite", k);
    if (!isfinite(guidance)) return fk_error(ctx, FK_ERR_ARG, "flux precompute: guidance must be finite");
    const int64_t C = c->hidden;
    r->pre_stride = fk_flux_mod_offset(c, fk_flux_mod_slots(c));
    int64_t nmax = 6 * C; /* widest modulation output */
    r->pre = be->alloc(be, sizeof(float) * (size_t)n * (size_t)r->pre_stride);
    r->pre_ts = malloc(sizeof(float) * (size_t)n);
    float *sv = be->alloc(be, sizeof(float) * (size_t)(FK_FLUX_PRE_ROWS * C));
    float *tmp = be->alloc(be, sizeof(float) * (size_t)(FK_FLUX_PRE_ROWS * nmax));
    if (!r->pre || !r->pre_ts || !sv || !tmp) {
        fk_flux_pre_drop(r);
        if (sv) be->free(be, sv);
        if (tmp) be->free(be, tmp);
        return fk_error(ctx, FK_ERR_NOMEM, "out of memory: flux modulations for %d steps on %s", n,
                        be->name);
    }
    memcpy(r->pre_ts, timesteps, sizeof(float) * (size_t)n);
    const float *yd = fk_flux_in(r, y, r->io_y);
    for (int k0 = 0; k0 < n; k0 += FK_FLUX_PRE_ROWS) {
        const int m = n - k0 < FK_FLUX_PRE_ROWS ? n - k0 : FK_FLUX_PRE_ROWS;
        for (int k = 0; k < m; k++) fk_flux_cond(r, timesteps[k0 + k], guidance, yd, sv + k * C, false);
        fk_flux_pre_rows(r, sv, m, k0, tmp);
    }
    be->free(be, sv);
    be->free(be, tmp);
    r->n_pre = n;
    r->pre_g = guidance;
    r->pre_y = y->data;
    return FK_OK;
}

/* An input or output tensor: f32 of (rows, cols), on the host or on the
 * runner's device. */
static fk_status fk_flux_check_input(fk_context *ctx, const fk_flux_runner *r, const char *what,
                                     const fk_tensor *t, int64_t rows, int64_t cols) {
    if (!t || !t->data)
        return fk_error(ctx, FK_ERR_ARG, "flux forward: input %s missing", what);
    char buf[128];
    if (t->dtype != FK_F32)
        return fk_error(ctx, FK_ERR_SHAPE, "flux forward: input %s must be f32, got %s", what,
                        fk_dtype_name(t->dtype));
    if (t->device != FK_DEVICE_CPU && t->device != r->be->device)
        return fk_error(ctx, FK_ERR_ARG,
                        "flux forward: input %s is on another device than the backend %s (expected "
                        "host memory or the backend's device)", what, r->be->name);
    if (fk_tensor_rows(t) != rows || fk_tensor_cols(t) != cols)
        return fk_error(ctx, FK_ERR_SHAPE, "flux forward: input %s has shape %s, expected (%lld, %lld)",
                        what, fk_shape_str(t, buf, sizeof(buf)), (long long)rows, (long long)cols);
    return FK_OK;
}

fk_status fk_flux_forward(fk_context *ctx, fk_flux_runner *r, const fk_flux_inputs *in,
                          fk_tensor *out) {
    if (!r || !in || !out) return fk_error(ctx, FK_ERR_ARG, "fk_flux_forward: NULL argument");
    const fk_flux_model *m = r->m;
    const fk_flux_config *c = &m->cfg;
    const fk_flux_weights *w = &m->w;
    fk_backend *be = r->be;
    const int64_t C = c->hidden, Lt = r->Lt, Li = r->Li, L = r->L, D = c->head_dim;
    fk_status st;
    if ((st = fk_flux_check_input(ctx, r, "img", in->img, Li, c->in_channels)) ||
        (st = fk_flux_check_input(ctx, r, "img_ids", in->img_ids, Li, 3)) ||
        (st = fk_flux_check_input(ctx, r, "txt", in->txt, Lt, c->context_dim)) ||
        (st = fk_flux_check_input(ctx, r, "txt_ids", in->txt_ids, Lt, 3)) ||
        (st = fk_flux_check_input(ctx, r, "y", in->y, 1, c->vec_dim)) ||
        (st = fk_flux_check_input(ctx, r, "output", out, Li, c->out_channels)))
        return st;
    if (!isfinite(in->timestep) || !isfinite(in->guidance))
        return fk_error(ctx, FK_ERR_ARG, "flux forward: timestep and guidance must be finite");

    /* RoPE table for ids = [txt_ids; img_ids], computed on the host and
     * uploaded only when the ids change */
    const size_t tb = (size_t)Lt * 3 * sizeof(float), ib = (size_t)Li * 3 * sizeof(float);
    const float *tid = fk_flux_host_ids(r, in->txt_ids, r->ids_in);
    const float *iid = fk_flux_host_ids(r, in->img_ids, r->ids_in + Lt * 3);
    if (!r->pe_valid || memcmp(r->ids, tid, tb) || memcmp(r->ids + Lt * 3, iid, ib)) {
        memcpy(r->ids, tid, tb);
        memcpy(r->ids + Lt * 3, iid, ib);
        fk_flux_rope_table(c, r->ids, L, r->pe_host);
        fk_flux_put(r, r->pe, r->pe_host, (size_t)(L * D * 2) * sizeof(float));
        r->pe_valid = true;
    }
    const bool dbg = fk_flux_want(r, FK_FLUX_HOOK_DEBUG);

    /* conditioning, or this step's precomputed modulations */
    r->cur = NULL;
    if (!dbg && r->pre && (const void *)in->y->data == r->pre_y &&
        !memcmp(&in->guidance, &r->pre_g, sizeof(float)))
        for (int k = 0; k < r->n_pre; k++)
            if (!memcmp(&r->pre_ts[k], &in->timestep, sizeof(float))) {
                r->cur = r->pre + (int64_t)k * r->pre_stride;
                break;
            }
    if (!r->cur)
        fk_flux_cond(r, in->timestep, in->guidance, fk_flux_in(r, in->y, r->io_y), r->svec, dbg);

    /* input projections into the joint stream: text rows, then image rows */
    fk_flux_linear_rows(be, r->x + Lt * C, fk_flux_in(r, in->img, r->io_img), Li, &w->img_in);
    if (Lt) fk_flux_linear_rows(be, r->x, fk_flux_in(r, in->txt, r->io_txt), Lt, &w->txt_in);
    if (dbg) {
        fk_flux_emit(r, "dbg.img_in", r->x + Lt * C, Li, C, true);
        fk_flux_emit(r, "dbg.txt_in", r->x, Lt, C, true);
        fk_flux_emit_shape(r, "dbg.pe", r->pe, 6, (const int64_t[]){1, 1, L, D / 2, 2, 2});
    }

    for (int i = 0; i < c->depth_double; i++) fk_flux_double_block(r, i);
    for (int i = 0; i < c->depth_single; i++) fk_flux_single_block(r, i);

    /* final layer on the image rows: shift, scale = adaLN(vec) */
    const float *ximg = r->x + Lt * C;
    if (dbg) fk_flux_emit(r, "dbg.final_in", ximg, Li, C, true);
    const int fs = fk_flux_mod_slots(c) - 2; /* the final layer's shift, then scale */
    const float *shift = fk_flux_mod(r, r->mod_img, fs);
    const float *scale = fk_flux_mod(r, r->mod_img + C, fs + 1);
    fk_flux_ln_modulate(be, r->xmod, FK_F32, ximg, Li, C, shift, scale);
    /* the output: written in place when it is on the device, else downloaded */
    float *o = out->device == be->device ? out->data : r->io_out;
    fk_flux_linear_rows(be, o, r->xmod, Li, &w->final_linear);
    if (o != out->data) be->download(be, out->data, o, fk_tensor_nbytes(out));
    return FK_OK;
}
