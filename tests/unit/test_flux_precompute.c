/* fk_flux_runner_precompute: the modulation vectors computed for all steps
 * at once (products of a few rows) give exactly the per-step results — in
 * f32 and in bf16 precision (few-row products stay on the exact f32 path) —
 * and forward falls back to its own computation for a timestep, guidance or
 * pooled vector y the precomputation was not made for. Tolerance: bitwise
 * (the same sums in the same order). Tiny-dev weights, random inputs. */
#include "backend/cpu/cpu.h"
#include "core/rng.h"
#include "model/flux.h"
#include "test.h"

#include <string.h>

static void run_case(fk_context *ctx, const fk_flux_model *m, fk_precision prec) {
    const fk_flux_config *c = &m->cfg;
    const int64_t Li = 64, Lt = 20;
    fk_tensor img, ids, txt, tids, y, y2, out, ref;
    CHECK(fk_tensor_new(ctx, &img, FK_F32, 2, (const int64_t[]){Li, c->in_channels}, "img") == FK_OK);
    CHECK(fk_tensor_new(ctx, &ids, FK_F32, 2, (const int64_t[]){Li, 3}, "ids") == FK_OK);
    CHECK(fk_tensor_new(ctx, &txt, FK_F32, 2, (const int64_t[]){Lt, c->context_dim}, "txt") == FK_OK);
    CHECK(fk_tensor_new(ctx, &tids, FK_F32, 2, (const int64_t[]){Lt, 3}, "tids") == FK_OK);
    CHECK(fk_tensor_new(ctx, &y, FK_F32, 2, (const int64_t[]){1, c->vec_dim}, "y") == FK_OK);
    CHECK(fk_tensor_new(ctx, &y2, FK_F32, 2, (const int64_t[]){1, c->vec_dim}, "y2") == FK_OK);
    CHECK(fk_tensor_new(ctx, &out, FK_F32, 2, (const int64_t[]){Li, c->out_channels}, "out") == FK_OK);
    CHECK(fk_tensor_new(ctx, &ref, FK_F32, 2, (const int64_t[]){Li, c->out_channels}, "ref") == FK_OK);
    fk_rng_fill_normal(7, 1, 0, img.data, (size_t)fk_tensor_numel(&img), 0.0f, 1.0f);
    fk_rng_fill_normal(7, 2, 0, txt.data, (size_t)fk_tensor_numel(&txt), 0.0f, 0.5f);
    fk_rng_fill_normal(7, 3, 0, y.data, (size_t)fk_tensor_numel(&y), 0.0f, 0.5f);
    memcpy(y2.data, y.data, fk_tensor_nbytes(&y)); /* same values, another tensor */
    float *id = ids.data;
    for (int64_t i = 0; i < Li; i++) id[i * 3] = 0, id[i * 3 + 1] = (float)(i / 8), id[i * 3 + 2] = (float)(i % 8);
    fk_backend *be = fk_backend_cpu_create(2);
    if (prec == FK_PREC_BF16) fk_backend_cpu_set_precision(be, FK_PREC_BF16);
    fk_flux_runner *r = NULL;
    CHECK(fk_flux_runner_create(ctx, m, be, Li, Lt, &r) == FK_OK);
    const float ts[11] = {1.0f, 0.93f, 0.85f, 0.77f, 0.7f, 0.6f, 0.5f, 0.4f, 0.3f, 0.2f, 0.1f};
    const int n = 11; /* more than one product of FK_FLUX_PRE_ROWS rows */
    fk_flux_inputs in = {.img = &img, .img_ids = &ids, .txt = &txt, .txt_ids = &tids, .y = &y,
                         .guidance = 3.5f};
    float refs[3][4096];
    const int probe[3] = {0, 7, 10};
    for (int p = 0; p < 3; p++) { /* per-step results */
        in.timestep = ts[probe[p]];
        CHECK(fk_flux_forward(ctx, r, &in, &ref) == FK_OK);
        memcpy(refs[p], ref.data, fk_tensor_nbytes(&ref));
    }
    CHECK(fk_flux_runner_precompute(ctx, r, ts, n, 3.5f, &y) == FK_OK);
    for (int p = 0; p < 3; p++) {
        in.timestep = ts[probe[p]];
        CHECK(fk_flux_forward(ctx, r, &in, &out) == FK_OK);
        CHECKF(!memcmp(refs[p], out.data, fk_tensor_nbytes(&out)),
               "precision %d, step %d: precomputed modulations change the output", (int)prec, probe[p]);
    }
    /* not precomputed: another timestep, another guidance, another y tensor */
    in.timestep = 0.55f;
    CHECK(fk_flux_forward(ctx, r, &in, &out) == FK_OK);
    CHECK(fk_flux_runner_precompute(ctx, r, NULL, 0, 0.0f, NULL) == FK_OK); /* drop */
    CHECK(fk_flux_forward(ctx, r, &in, &ref) == FK_OK);
    CHECK(!memcmp(ref.data, out.data, fk_tensor_nbytes(&out)));
    CHECK(fk_flux_runner_precompute(ctx, r, ts, n, 3.5f, &y) == FK_OK);
    in.timestep = ts[0];
    in.guidance = 4.0f;
    CHECK(fk_flux_forward(ctx, r, &in, &out) == FK_OK);
    CHECK(memcmp(refs[0], out.data, fk_tensor_nbytes(&out)) != 0); /* guidance used */
    in.guidance = 3.5f;
    in.y = &y2;
    CHECK(fk_flux_forward(ctx, r, &in, &out) == FK_OK); /* computed itself, same values */
    CHECK(!memcmp(refs[0], out.data, fk_tensor_nbytes(&out)));
    /* bad input */
    const float bad[2] = {0.5f, NAN};
    CHECK(fk_flux_runner_precompute(ctx, r, bad, 2, 3.5f, &y) == FK_ERR_ARG);
    fk_flux_runner_free(r);
    be->destroy(be);
    fk_tensor *ts_[8] = {&img, &ids, &txt, &tids, &y, &y2, &out, &ref};
    for (int i = 0; i < 8; i++) fk_tensor_free(ts_[i]);
}

int main(void) {
    fk_context *ctx = fk_context_create(2);
    fk_flux_model *m = NULL;
    CHECK(fk_flux_load(ctx, "tests/data/flux/tiny-dev.weights.bf16.safetensors", &m) == FK_OK);
    if (m) {
        CHECK(m->cfg.out_channels * 64 <= 4096);
        run_case(ctx, m, FK_PREC_F32);
        if (fk_cpu_bf16_kernel_detect() != FK_CPU_BF16_NONE) run_case(ctx, m, FK_PREC_BF16);
    }
    fk_flux_free(m);
    fk_context_free(ctx);
    return fk_test_finish("test_flux_precompute");
}
