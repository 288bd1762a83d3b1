/* cpu_attention: multi-head scaled-dot-product attention, token-major
 * layout (fp32 reference).
 *
 * One task = one head h and a block of FK_ATT_BQ query rows. Keys are taken
 * in fixed blocks of FK_ATT_BK with an online softmax, so no Lq×Lk matrix is
 * ever stored:
 *   S (bq, bk) = Q_h · K_hᵀ            GEMM micro-kernels (fma chains over d)
 *   s = S·scale (+ bias), causal: s = -inf for j > l
 *   m' = max(m, max_j s);  α = exp(m − m');  p = exp(s − m')  (fk_cpu_exp)
 *   l = l·α + Σ p (double);  O = O·α;  O += P · V_h    (fma chains over j)
 *   out = O / l
 * The block sizes are constants (not tied to the thread count or the ISA), so
 * the result is bitwise the same for any number of threads and any kernel.
 * Masked keys contribute exact zeros. The accumulator O lives in `out`. */
#include "backend/cpu/cpu_gemm.h"

#include <math.h>
#include <string.h>

#define FK_ATT_BQ 192 /* query rows per task (a multiple of every kernel's MR) */
#define FK_ATT_BK 128 /* keys per online-softmax block */

typedef struct fk_att_args {
    int64_t Lq, Lk, H, D;
    const float *q, *k, *v; /* q (Lq, H, D); k, v (Lk, H, D) */
    const float *bias;      /* (H, Lq, Lk) or NULL */
    float *out;             /* (Lq, H·D) */
    float scale;
    bool causal;
} fk_att_args;

/* s ← s·scale (+ bias); keys from `valid` on are masked (-inf). */
static void fk_att_scores(float *s, int64_t bk, float scale, const float *bias, int64_t valid) {
    for (int64_t j = 0; j < bk; j++) s[j] = s[j] * scale;
    if (bias)
        for (int64_t j = 0; j < bk; j++) s[j] = s[j] + bias[j];
    for (int64_t j = valid < 0 ? 0 : valid; j < bk; j++) s[j] = -INFINITY;
}

/* max of s (8 partial maxima: the result does not depend on the order). */
static float fk_att_max(const float *s, int64_t n) {
    float m[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY,
                  -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) m[k] = s[j + k] > m[k] ? s[j + k] : m[k];
    for (; j < n; j++) m[0] = s[j] > m[0] ? s[j] : m[0];
    for (int k = 1; k < 8; k++) m[0] = m[k] > m[0] ? m[k] : m[0];
    return m[0];
}

/* s ← exp(s − m); returns Σ s in double (four partial sums, fixed order). */
static double fk_att_exp_sum(float *s, int64_t n, float m) {
    for (int64_t j = 0; j < n; j++) s[j] = fk_cpu_exp(s[j] - m);
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
        a0 += (double)s[j];
        a1 += (double)s[j + 1];
        a2 += (double)s[j + 2];
        a3 += (double)s[j + 3];
    }
    for (; j < n; j++) a0 += (double)s[j];
    return (a0 + a1) + (a2 + a3);
}

static void fk_att_task(const fk_gemm_kernel *kern, float *scratch, const fk_att_args *g, int64_t h,
                        int64_t l0) {
    const int64_t HD = g->H * g->D, D = g->D, Lk = g->Lk;
    const int64_t bq = g->Lq - l0 < FK_ATT_BQ ? g->Lq - l0 : FK_ATT_BQ;
    float *qp = scratch;                      /* (BQ, KC) packed Q chunk */
    float *kp = qp + FK_ATT_BQ * FK_GEMM_KC;  /* (BK, KC) packed K chunk */
    float *s = kp + FK_ATT_BK * FK_GEMM_KC;   /* (BQ, BK) scores, then probabilities */
    float *pp = s + FK_ATT_BQ * FK_ATT_BK;    /* (BQ, BK) packed probabilities */
    float *vp = pp + FK_ATT_BQ * FK_ATT_BK;   /* (BK, NC) packed V chunk */
    float *mrow = vp + FK_ATT_BK * FK_GEMM_NC; /* (BQ) running max */
    double *lrow = (double *)(mrow + FK_ATT_BQ); /* (BQ) running sum */

    const float *qh = g->q + l0 * HD + h * D; /* (bq, D), row stride HD */
    float *oh = g->out + l0 * HD + h * D;     /* (bq, D), row stride HD */
    for (int64_t i = 0; i < bq; i++) {
        memset(oh + i * HD, 0, (size_t)D * sizeof(float));
        mrow[i] = -INFINITY;
        lrow[i] = 0.0;
    }
    const bool q_once = D <= FK_GEMM_KC;
    if (q_once) fk_gemm_pack_a(qp, qh, HD, bq, D, kern->mr);
    /* causal: keys beyond the block's last row are masked for every row */
    const int64_t jend = g->causal && l0 + bq < Lk ? l0 + bq : Lk;

    for (int64_t j0 = 0; j0 < jend; j0 += FK_ATT_BK) {
        const int64_t bk = Lk - j0 < FK_ATT_BK ? Lk - j0 : FK_ATT_BK;
        /* S = Q · Kᵀ, reduction over d in chunks of KC */
        for (int64_t dc = 0; dc < D; dc += FK_GEMM_KC) {
            int64_t dch = D - dc < FK_GEMM_KC ? D - dc : FK_GEMM_KC;
            if (!q_once) fk_gemm_pack_a(qp, qh + dc, HD, bq, dch, kern->mr);
            fk_gemm_pack_b(kp, g->k + j0 * HD + h * D + dc, FK_F32, HD, bk, dch, kern->nr, NULL);
            fk_gemm_block(kern, bq, bk, dch, qp, kp, s, FK_ATT_BK, dc > 0);
        }
        /* online softmax, row by row */
        for (int64_t i = 0; i < bq; i++) {
            const int64_t l = l0 + i;
            float *sr = s + i * FK_ATT_BK; /* (bk) */
            fk_att_scores(sr, bk, g->scale,
                          g->bias ? g->bias + (h * g->Lq + l) * Lk + j0 : NULL,
                          g->causal ? l - j0 + 1 : bk);
            float mnew = fk_att_max(sr, bk);
            mnew = mnew > mrow[i] ? mnew : mrow[i];
            if (mnew == -INFINITY) { /* every key so far masked */
                for (int64_t jj = 0; jj < bk; jj++) sr[jj] = 0.0f;
                continue;
            }
            float alpha = fk_cpu_exp(mrow[i] - mnew); /* 0 on the first block */
            lrow[i] = lrow[i] * (double)alpha + fk_att_exp_sum(sr, bk, mnew);
            if (alpha != 1.0f) {
                float *orow = oh + i * HD;
                for (int64_t d = 0; d < D; d++) orow[d] *= alpha;
            }
            mrow[i] = mnew;
        }
        /* O += P · V, output columns in chunks of NC */
        fk_gemm_pack_a(pp, s, FK_ATT_BK, bq, bk, kern->mr);
        const float *vh = g->v + j0 * HD + h * D; /* (bk, D), row stride HD */
        if (D % kern->nr == 0) { /* V rows are already k-major panels */
            fk_gemm_block_kmajor_b(kern, bq, D, bk, pp, vh, HD, oh, HD, true);
        } else {
            for (int64_t dc = 0; dc < D; dc += FK_GEMM_NC) {
                int64_t dch = D - dc < FK_GEMM_NC ? D - dc : FK_GEMM_NC;
                fk_gemm_pack_bt(vp, vh + dc, HD, dch, bk, kern->nr);
                fk_gemm_block(kern, bq, dch, bk, pp, vp, oh + dc, HD, true);
            }
        }
    }
    for (int64_t i = 0; i < bq; i++) {
        float *orow = oh + i * HD;
        double l = lrow[i];
        for (int64_t d = 0; d < D; d++) orow[d] = l > 0.0 ? (float)((double)orow[d] / l) : 0.0f;
    }
}

void fk_cpu_attention(fk_backend *be, fk_tensor *out, const fk_tensor *q, const fk_tensor *k,
                      const fk_tensor *v, const fk_tensor *bias, float scale, bool causal) {
    _Static_assert(FK_ATT_BQ * FK_GEMM_KC + FK_ATT_BK * FK_GEMM_KC + 2 * FK_ATT_BQ * FK_ATT_BK +
                           FK_ATT_BK * FK_GEMM_NC + 3 * FK_ATT_BQ <= FK_CPU_SCRATCH_FLOATS,
                   "attention scratch exceeds the per-thread scratch");
    FK_ASSERT(out->dtype == FK_F32 && q->dtype == FK_F32 && k->dtype == FK_F32 && v->dtype == FK_F32);
    FK_ASSERT(q->ndim == 3 && k->ndim == 3 && v->ndim == 3);
    const int64_t Lq = q->shape[0], H = q->shape[1], D = q->shape[2], Lk = k->shape[0];
    FK_ASSERT(k->shape[1] == H && k->shape[2] == D && fk_tensor_same_shape(k, v));
    FK_ASSERT(fk_tensor_rows(out) == Lq && fk_tensor_cols(out) == H * D); /* out (Lq, H·D) */
    FK_ASSERT(out->data != q->data && out->data != k->data && out->data != v->data);
    if (bias) FK_ASSERT(bias->dtype == FK_F32 && fk_tensor_numel(bias) == H * Lq * Lk); /* (H, Lq, Lk) */
    if (Lq == 0 || H == 0 || D == 0) return;

    fk_cpu_not_nested();
    const fk_cpu_impl *impl = fk_cpu_impl_of(be);
    const fk_gemm_kernel *kern = fk_gemm_kernel_for(impl->isa);
    FK_ASSERT(FK_ATT_BQ % kern->mr == 0);
    fk_att_args g = {Lq, Lk, H, D, q->data, k->data, v->data, bias ? bias->data : NULL,
                     out->data, scale, causal};
    const int64_t nqb = (Lq + FK_ATT_BQ - 1) / FK_ATT_BQ;
    const int64_t ntasks = H * nqb;
    int nt = (double)Lq * (double)Lk * (double)(H * D) < 65536.0 || ntasks < 2 ? 1 : impl->n_threads;
    (void)nt;
    FK_CPU_PARALLEL_FOR(nt)
    for (int64_t t = 0; t < ntasks; t++) {
        int64_t h = t % H, qb = t / H;
        fk_att_task(kern, fk_cpu_scratch(be, fk_cpu_thread_id()), &g, h, qb * FK_ATT_BQ);
    }
}
