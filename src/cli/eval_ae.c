/* fluxkit eval ae: the autoencoder on inputs from a safetensors file.
 *
 * Inputs (any present; at least one):   outputs:
 *   encode.input (B, 3, H, W) in [−1, 1]  encode.z (B, 16, H/8, W/8) = scale·(mean − shift)
 *   decode.input (B, 16, h, w)            decode.output (B, 3, 8h, 8w), unclamped
 *   decode_random.input                   decode_random.output
 * The dbg.enc.* (dbg.dec.*) intermediates of batch item 0 are written too when
 * the inputs file holds dbg.enc.conv_in (dbg.dec.conv_in), as the reference
 * fixtures do; dbg.dec.* belong to decode.input. Untiled: the reference
 * computation. */
#include "cli/cli_util.h"
#include "backend/backend_open.h"
#include "model/vae.h"

#include <string.h>

typedef struct fk_eval_ae_dbg {
    fk_context *ctx;
    fk_eval_out *out;
    fk_status status;
} fk_eval_ae_dbg;

static void fk_eval_ae_collect(void *user, const char *name, int b, const fk_tensor *t) {
    fk_eval_ae_dbg *d = user;
    if (b != 0 || d->status != FK_OK) return;
    d->status = fk_eval_out_add(d->ctx, d->out, name, t);
}

/* One encode or decode of input `iname` into output `oname`. */
static fk_status fk_eval_ae_run(fk_context *ctx, const fk_eval_opts *o, const fk_st_file *in,
                                fk_eval_out *out, fk_backend *be, const fk_vae *v, bool encode,
                                const char *iname, const char *oname, const char *dbg_probe) {
    fk_tensor x = {0}, y = {0};
    fk_status st = fk_eval_input_f32(ctx, in, iname, 4, &x);
    if (st) return st;
    fk_eval_ae_dbg d = {ctx, out, FK_OK};
    fk_vae_opts opts;
    fk_vae_opts_init(&opts);
    uint64_t peak = 0;
    opts.peak_act_bytes = &peak;
    if (dbg_probe && fk_st_find(in, dbg_probe)) {
        opts.dbg = fk_eval_ae_collect;
        opts.dbg_user = &d;
    }
    double t0 = fk_time();
    st = encode ? fk_vae_encode(ctx, be, v, &x, &y, &opts) : fk_vae_decode(ctx, be, v, &x, &y, &opts);
    double dt = fk_time() - t0;
    if (st == FK_OK) st = d.status;
    if (st == FK_OK) st = fk_eval_out_add(ctx, out, oname, &y);
    if (st == FK_OK && o->verbose) {
        char xb[64], yb[64], ab[32];
        fprintf(stderr, "ae: %s %s → %s %s in %.3f s (activations peak %s)\n", iname,
                fk_shape_str(&x, xb, sizeof(xb)), oname, fk_shape_str(&y, yb, sizeof(yb)), dt,
                fk_cli_fmt_bytes(peak, ab, sizeof(ab)));
    }
    fk_tensor_free(&x);
    fk_tensor_free(&y);
    return st;
}

fk_status fk_eval_ae(fk_context *ctx, const fk_eval_opts *o, const fk_st_file *in, fk_eval_out *out) {
    if (!in) return fk_error(ctx, FK_ERR_ARG, "eval ae: needs --inputs");
    const bool has_enc = fk_st_find(in, "encode.input") != NULL;
    const bool has_dec = fk_st_find(in, "decode.input") != NULL;
    const bool has_rand = fk_st_find(in, "decode_random.input") != NULL;
    if (!has_enc && !has_dec && !has_rand)
        return fk_error(ctx, FK_ERR_SHAPE,
                        "%s: no autoencoder input: expected encode.input, decode.input and/or "
                        "decode_random.input",
                        fk_st_path(in));
    fk_vae *v = NULL;
    fk_status st = fk_vae_open(ctx, o->weights, &v);
    if (st) return st;
    fk_backend *be = NULL;
    if ((st = fk_eval_backend(ctx, o, &be))) {
        fk_vae_free(v);
        return st;
    }
    if (o->verbose) {
        const fk_vae_config *c = fk_vae_get_config(v);
        fprintf(stderr, "ae: %s (%s), ch %d, %d levels, %d res blocks, z %d, scale %g, shift %g, "
                "%d threads\n",
                fk_vae_config_name(c), fk_vae_format(v), c->ch, c->n_levels, c->num_res_blocks, c->z_channels,
                (double)c->scale_factor, (double)c->shift_factor, be->n_threads);
    }
    if (has_enc)
        st = fk_eval_ae_run(ctx, o, in, out, be, v, true, "encode.input", "encode.z", "dbg.enc.conv_in");
    if (st == FK_OK && has_dec)
        st = fk_eval_ae_run(ctx, o, in, out, be, v, false, "decode.input", "decode.output",
                            "dbg.dec.conv_in");
    if (st == FK_OK && has_rand)
        st = fk_eval_ae_run(ctx, o, in, out, be, v, false, "decode_random.input", "decode_random.output",
                            NULL);
    fk_backend_close(be);
    fk_vae_free(v);
    return st;
}
