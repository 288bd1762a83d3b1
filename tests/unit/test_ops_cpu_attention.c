/* CPU attention against a naive double-precision reference (full score row,
 * softmax in double), with and without bias, causal and not, Lq != Lk, head
 * dims above the GEMM blocking; analytic checks (one key returns v exactly,
 * uniform scores average v); bitwise agreement of every kernel path and
 * thread count.
 *
 * Tolerance, per output row (h, l): the f32 score s_j = fl(fl(scale·q·k_j) + b)
 * has absolute error δs <= (D + 2)·u·scale·Σ_d|q_d k_jd| + 2u·|s_j|
 * (fma chain of D steps, the scale product and the bias sum; u = 2^-24).
 * exp turns δs into a relative error of p_j of δs + 4u (fk_cpu_exp is
 * within 2 ulp, checked in test_ops_cpu), normalization adds a few u, so
 * Σ_j |p̂_j − p_j| <= 2·(δs_max + 8u) and
 * |out − ref| <= max_j|v_j|·(2·δs_max + (Lk + 4·n_blocks + 16)·u),
 * the Lk term for the f32 fma chain Σ p_j v_j and 4u per online-softmax block
 * for the rescaling. */
#include "cpu_ops_util.h"

typedef struct att_case {
    int64_t Lq, Lk, H, D;
    bool causal, bias;
} att_case;

/* Reference and tolerance for one (h, l) row; returns violations. */
static int check_row(const att_case *c, const float *q, const float *k, const float *v,
                     const float *bias, float scale, const float *out, int64_t h, int64_t l,
                     double *scores /* (Lk) */) {
    const int64_t H = c->H, D = c->D, HD = H * D, Lk = c->Lk;
    double mx = -INFINITY, ds_max = 0;
    for (int64_t j = 0; j < Lk; j++) {
        double dot = 0, dabs = 0;
        for (int64_t d = 0; d < D; d++) {
            double t = (double)q[l * HD + h * D + d] * (double)k[j * HD + h * D + d];
            dot += t;
            dabs += fabs(t);
        }
        double s = (double)scale * dot + (bias ? (double)bias[(h * c->Lq + l) * Lk + j] : 0.0);
        double ds = (double)(D + 2) * EPS32 * fabs((double)scale) * dabs + 2 * EPS32 * fabs(s);
        if (c->causal && j > l) s = -INFINITY;
        else if (ds > ds_max) ds_max = ds;
        scores[j] = s;
        if (s > mx) mx = s;
    }
    double sum = 0;
    for (int64_t j = 0; j < Lk; j++) {
        scores[j] = scores[j] == -INFINITY ? 0.0 : exp(scores[j] - mx);
        sum += scores[j];
    }
    double vmax = 0;
    for (int64_t j = 0; j < Lk; j++)
        for (int64_t d = 0; d < D; d++) vmax = fmax(vmax, fabs((double)v[j * HD + h * D + d]));
    int64_t nblocks = (Lk + 127) / 128;
    double tol = vmax * (2 * ds_max + (double)(Lk + 4 * nblocks + 16) * EPS32) + 1e-30;
    int bad = 0;
    for (int64_t d = 0; d < D; d++) {
        double ref = 0;
        for (int64_t j = 0; j < Lk; j++) ref += scores[j] / sum * (double)v[j * HD + h * D + d];
        double err = fabs((double)out[l * HD + h * D + d] - ref);
        if (!(err <= tol)) {
            if (bad < 2)
                fprintf(stderr, "  out[%lld, h%lld, d%lld] = %.9g ref %.9g err %.3g tol %.3g\n",
                        (long long)l, (long long)h, (long long)d, (double)out[l * HD + h * D + d],
                        ref, err, tol);
            bad++;
        }
    }
    return bad;
}

static void test_case(const att_case *c) {
    const int64_t nq = c->Lq * c->H * c->D, nk = c->Lk * c->H * c->D;
    float *q = tu_alloc(nq), *k = tu_alloc(nk), *v = tu_alloc(nk);
    float *bias = c->bias ? tu_alloc(c->H * c->Lq * c->Lk) : NULL;
    float *o0 = tu_alloc(nq), *o1 = tu_alloc(nq);
    double *scores = malloc((size_t)(c->Lk > 0 ? c->Lk : 1) * sizeof(double));
    tu_fill(q, nq, -1, 1);
    tu_fill(k, nk, -1, 1);
    tu_fill(v, nk, -2, 2);
    if (bias) tu_fill(bias, c->H * c->Lq * c->Lk, -3, 3);
    float scale = 1.0f / sqrtf((float)c->D) * 2.0f; /* sharper than usual */
    fk_tensor tq = fk_view3(FK_F32, q, c->Lq, c->H, c->D);
    fk_tensor tk = fk_view3(FK_F32, k, c->Lk, c->H, c->D), tv = fk_view3(FK_F32, v, c->Lk, c->H, c->D);
    fk_tensor tb = fk_view3(FK_F32, bias, c->H, c->Lq, c->Lk);
    fk_tensor to0 = fk_view2(FK_F32, o0, c->Lq, c->H * c->D), to1 = fk_view2(FK_F32, o1, c->Lq, c->H * c->D);
    for (int64_t i = 0; i < nq; i++) o0[i] = NAN;
    fk_backend *be0 = tu_backends[0];
    be0->attention(be0, &to0, &tq, &tk, &tv, bias ? &tb : NULL, scale, c->causal);
    int bad = 0;
    for (int64_t h = 0; h < c->H; h++)
        for (int64_t l = 0; l < c->Lq; l++) bad += check_row(c, q, k, v, bias, scale, o0, h, l, scores);
    CHECKF(bad == 0, "attention Lq=%lld Lk=%lld H=%lld D=%lld causal=%d bias=%d: %d outputs off",
           (long long)c->Lq, (long long)c->Lk, (long long)c->H, (long long)c->D, c->causal, c->bias,
           bad);
    for (int i = 1; i < tu_n_backends; i++) {
        char desc[64];
        for (int64_t j = 0; j < nq; j++) o1[j] = NAN;
        tu_backends[i]->attention(tu_backends[i], &to1, &tq, &tk, &tv, bias ? &tb : NULL, scale,
                                  c->causal);
        CHECKF(tu_same_bits(o0, o1, (size_t)nq * 4),
               "attention Lq=%lld Lk=%lld D=%lld causal=%d: %s differs bitwise", (long long)c->Lq,
               (long long)c->Lk, (long long)c->D, c->causal, tu_backend_desc(tu_backends[i], desc, 64));
    }
    fk_free(q);
    fk_free(k);
    fk_free(v);
    fk_free(bias);
    fk_free(o0);
    fk_free(o1);
    free(scores);
}

/* One key: softmax weight 1 exactly, so out = v bit for bit. Identical keys:
 * uniform weights, out = mean of v (within the chain tolerance). */
static void test_analytic(void) {
    const int64_t H = 3, D = 20, Lq = 5;
    float q[5 * 3 * 20], k1[3 * 20], v1[3 * 20], out[5 * 60];
    tu_fill(q, Lq * H * D, -3, 3);
    tu_fill(k1, H * D, -3, 3);
    tu_fill(v1, H * D, -5, 5);
    fk_tensor tq = fk_view3(FK_F32, q, Lq, H, D), tk = fk_view3(FK_F32, k1, 1, H, D);
    fk_tensor tv = fk_view3(FK_F32, v1, 1, H, D), to = fk_view2(FK_F32, out, Lq, H * D);
    for (int i = 0; i < tu_n_backends; i++) {
        for (int c = 0; c < 2; c++) {
            tu_backends[i]->attention(tu_backends[i], &to, &tq, &tk, &tv, NULL, 0.3f, c == 1);
            int bad = 0;
            for (int64_t l = 0; l < Lq; l++)
                if (memcmp(out + l * H * D, v1, sizeof(v1)) != 0) bad++;
            CHECKF(bad == 0, "attention with one key must return v exactly (causal=%d)", c);
        }
    }
    /* Lk identical keys (causal off): uniform weights → mean of v */
    const int64_t Lk = 300;
    float *kk = tu_alloc(Lk * H * D), *vv = tu_alloc(Lk * H * D);
    for (int64_t j = 0; j < Lk; j++) memcpy(kk + j * H * D, k1, sizeof(k1));
    tu_fill(vv, Lk * H * D, -1, 1);
    fk_tensor tk2 = fk_view3(FK_F32, kk, Lk, H, D), tv2 = fk_view3(FK_F32, vv, Lk, H, D);
    tu_backends[0]->attention(tu_backends[0], &to, &tq, &tk2, &tv2, NULL, 0.3f, false);
    int bad = 0;
    for (int64_t l = 0; l < Lq; l++)
        for (int64_t hd = 0; hd < H * D; hd++) {
            double mean = 0;
            for (int64_t j = 0; j < Lk; j++) mean += vv[j * H * D + hd];
            mean /= (double)Lk;
            /* chain of Lk fmas with |p·v| <= 1/Lk, plus rescaling: (Lk + 32)·u */
            if (fabs(out[l * H * D + hd] - mean) > (double)(Lk + 32) * EPS32) bad++;
        }
    CHECKF(bad == 0, "attention with identical keys must average v (%d off)", bad);
    fk_free(kk);
    fk_free(vv);
}

int main(void) {
    tu_backends_init();
    test_analytic();
    static const att_case cases[] = {
        {7, 7, 3, 16, false, false},   {7, 7, 3, 16, true, false},    {50, 37, 2, 32, false, true},
        {50, 50, 2, 32, true, true},   {130, 260, 3, 24, false, false}, {130, 260, 3, 24, true, false},
        {97, 300, 2, 8, false, true},  {5, 9, 1, 300, false, false},  {3, 5, 1, 520, true, true},
        {1, 129, 4, 64, false, false}, {60, 20, 1, 12, true, false},  {20, 60, 2, 12, true, true},
        {1, 1, 1, 1, false, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) test_case(&cases[i]);
    tu_backends_free();
    return fk_test_finish("test_ops_cpu_attention");
}
