/* eval flux: run the FLUX transformer on the inputs of a fixture-style
 * safetensors file (img, img_ids, txt, txt_ids, y, timesteps, guidance) and
 * collect `output` and every block's output (double.{i}.img|txt,
 * single.{i}.img|txt) plus the dbg.* intermediates under the fixtures' names.
 * With --denoise, also the reference Euler loop from denoise.x0 over
 * denoise.timesteps with denoise.guidance: denoise.step{k}, denoise.final. */
#include "cli/cli.h"
#include "backend/backend_open.h"
#include "model/flux.h"
#include "pipeline/sampling.h"

#include <stdio.h>
#include <string.h>

typedef struct fk_eval_flux_hook {
    fk_context *ctx;
    fk_eval_out *out;
    fk_status status; /* first failure while collecting */
} fk_eval_flux_hook;

static void fk_eval_flux_collect(void *user, const char *name, const fk_tensor *t) {
    fk_eval_flux_hook *h = user;
    if (h->status != FK_OK) return;
    h->status = fk_eval_out_add(h->ctx, h->out, name, t);
}

/* Batch-1 check: the leading dim of a (B, ...) input must be 1. */
static fk_status fk_eval_flux_batch1(fk_context *ctx, const char *name, const fk_tensor *t, int ndim) {
    if (t->ndim == ndim && t->shape[0] != 1)
        return fk_error(ctx, FK_ERR_UNSUPPORTED,
                        "eval flux: input %s has batch size %lld; only batch 1 is supported", name,
                        (long long)t->shape[0]);
    return FK_OK;
}

static fk_status fk_eval_flux_scalar(fk_context *ctx, const char *inputs, const fk_tensor *t,
                                     const char *name, float *v) {
    if (fk_tensor_numel(t) != 1)
        return fk_error(ctx, FK_ERR_SHAPE, "%s: input %s must hold one value (batch 1)", inputs, name);
    *v = ((const float *)t->data)[0];
    return FK_OK;
}

fk_status fk_eval_flux(fk_context *ctx, const fk_eval_opts *o, const fk_st_file *in,
                       fk_eval_out *out) {
    if (!o->weights) return fk_error(ctx, FK_ERR_ARG, "eval flux: --weights is required");
    if (!in) return fk_error(ctx, FK_ERR_ARG, "eval flux: --inputs is required");
    const char *inputs = fk_st_path(in);
    enum { N_IN = 7, N_DN = 3 };
    static const char *const names[N_IN] = {"img", "img_ids", "txt", "txt_ids", "y", "timesteps",
                                            "guidance"};
    static const char *const dn_names[N_DN] = {"denoise.x0", "denoise.timesteps",
                                               "denoise.guidance"};
    fk_tensor t[N_IN], dn[N_DN], vel, state;
    memset(t, 0, sizeof(t));
    memset(dn, 0, sizeof(dn));
    memset(&vel, 0, sizeof(vel));
    memset(&state, 0, sizeof(state));
    fk_flux_model *m = NULL;
    fk_backend *be = NULL;
    fk_flux_runner *r = NULL;
    fk_status st = FK_OK;

    for (int i = 0; i < N_IN && st == FK_OK; i++) {
        /* guidance is only read by models with a guidance embedding; tolerate absence */
        if (i == 6 && !fk_st_find(in, "guidance")) continue;
        st = fk_eval_input_f32(ctx, in, names[i], 0, &t[i]);
    }
    if (st != FK_OK) goto done;
    if ((st = fk_eval_flux_batch1(ctx, "img", &t[0], 3)) || (st = fk_eval_flux_batch1(ctx, "img_ids", &t[1], 3)) ||
        (st = fk_eval_flux_batch1(ctx, "txt", &t[2], 3)) || (st = fk_eval_flux_batch1(ctx, "txt_ids", &t[3], 3)) ||
        (st = fk_eval_flux_batch1(ctx, "y", &t[4], 2)))
        goto done;
    float timestep = 0, guidance = 0;
    if ((st = fk_eval_flux_scalar(ctx, inputs, &t[5], "timesteps", &timestep))) goto done;
    if (t[6].data && (st = fk_eval_flux_scalar(ctx, inputs, &t[6], "guidance", &guidance))) goto done;

    if ((st = fk_flux_load(ctx, o->weights, &m))) goto done;
    if (m->cfg.guidance_embed && !t[6].data) {
        st = fk_error(ctx, FK_ERR_ARG, "%s: input guidance missing (the model has a guidance "
                      "embedding)", inputs);
        goto done;
    }
    const int64_t n_img = fk_tensor_rows(&t[0]), n_txt = fk_tensor_rows(&t[2]);
    if ((st = fk_eval_backend(ctx, o, &be))) goto done;
    if ((st = fk_flux_runner_create(ctx, m, be, n_img, n_txt, &r))) goto done;
    if (o->verbose) {
        const fk_flux_plan *p = fk_flux_runner_plan(r);
        fprintf(stderr,
                "flux: %s (%s, %s weights), %lld image + %lld text tokens\n"
                "flux: memory plan: weights %llu bytes (%llu mapped, %llu in memory), "
                "activations %llu bytes, scratch %llu bytes\n",
                fk_flux_config_name(&m->cfg), m->format,
                m->mixed_dtypes ? "mixed" : fk_dtype_name(m->dtype), (long long)n_img,
                (long long)n_txt, (unsigned long long)p->weight_bytes,
                (unsigned long long)m->mapped_bytes, (unsigned long long)m->copied_bytes,
                (unsigned long long)p->act_bytes, (unsigned long long)p->scratch_bytes);
    }
    if ((st = fk_tensor_new(ctx, &vel, FK_F32, 3, (const int64_t[]){1, n_img, m->cfg.out_channels},
                            "flux output")))
        goto done;
    fk_eval_flux_hook h = {.ctx = ctx, .out = out, .status = FK_OK};
    fk_flux_runner_set_hook(r, fk_eval_flux_collect, FK_FLUX_HOOK_BLOCKS | FK_FLUX_HOOK_DEBUG, &h);
    fk_flux_inputs fi = {.img = &t[0], .img_ids = &t[1], .txt = &t[2], .txt_ids = &t[3],
                         .y = &t[4], .timestep = timestep, .guidance = guidance};
    if ((st = fk_flux_forward(ctx, r, &fi, &vel))) goto done;
    if ((st = h.status)) goto done;
    if ((st = fk_eval_out_add(ctx, out, "output", &vel))) goto done;
    fk_flux_runner_set_hook(r, NULL, 0, NULL);

    if (o->denoise) {
        for (int i = 0; i < N_DN && st == FK_OK; i++) {
            if (i == 2 && !fk_st_find(in, dn_names[i])) continue;
            st = fk_eval_input_f32(ctx, in, dn_names[i], 0, &dn[i]);
        }
        if (st != FK_OK) goto done;
        if (fk_tensor_numel(&dn[0]) != fk_tensor_numel(&t[0])) {
            st = fk_error(ctx, FK_ERR_SHAPE, "%s: denoise.x0 must have the shape of img", inputs);
            goto done;
        }
        int64_t nt = fk_tensor_numel(&dn[1]);
        if (nt < 2 || nt > 10001) {
            st = fk_error(ctx, FK_ERR_SHAPE, "%s: denoise.timesteps must hold 2..10001 values", inputs);
            goto done;
        }
        float dg = guidance;
        if (dn[2].data && (st = fk_eval_flux_scalar(ctx, inputs, &dn[2], "denoise.guidance", &dg)))
            goto done;
        if ((st = fk_tensor_new(ctx, &state, FK_F32, t[0].ndim, t[0].shape, "denoise state")))
            goto done;
        memcpy(state.data, dn[0].data, fk_tensor_nbytes(&state));
        const float *ts = dn[1].data;
        fi.img = &state;
        fi.guidance = dg;
        for (int64_t k = 0; k + 1 < nt; k++) {
            fi.timestep = ts[k];
            if ((st = fk_flux_forward(ctx, r, &fi, &vel))) goto done;
            fk_sampling_euler_step(state.data, vel.data, (size_t)fk_tensor_numel(&state), ts[k],
                                   ts[k + 1]);
            char name[48];
            snprintf(name, sizeof(name), "denoise.step%lld", (long long)k);
            if ((st = fk_eval_out_add(ctx, out, name, &state))) goto done;
        }
        if ((st = fk_eval_out_add(ctx, out, "denoise.final", &state))) goto done;
    }
    if (o->verbose)
        fprintf(stderr, "flux: peak resident memory %llu bytes\n",
                (unsigned long long)fk_peak_rss());
done:
    fk_tensor_free(&state);
    fk_tensor_free(&vel);
    for (int i = 0; i < N_DN; i++) fk_tensor_free(&dn[i]);
    for (int i = 0; i < N_IN; i++) fk_tensor_free(&t[i]);
    fk_flux_runner_free(r);
    fk_backend_close(be);
    fk_flux_free(m);
    return st;
}
