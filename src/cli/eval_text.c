/* fluxkit eval clip | t5: run a text encoder on `input_ids` from a safetensors
 * file ((L) or (B, L), I64 or I32) and collect its outputs:
 *   clip: last_hidden_state (B, L, W), pooler_output (B, W)
 *   t5:   last_hidden_state (B, L, d_model)
 * (without the batch dim when input_ids is 1-D). Each row is encoded on its
 * own, without an attention mask, as FLUX runs the encoders. */
#include "cli/cli_util.h"
#include "backend/backend_open.h"
#include "model/clip.h"
#include "model/t5.h"

#include <stdlib.h>
#include <string.h>

/* input_ids as int64 (B, L); caller frees *ids. */
static fk_status fk_eval_text_ids(fk_context *ctx, const fk_st_file *in, int64_t **ids, int *B, int *L,
                                  bool *batched) {
    *ids = NULL;
    if (!in) return fk_error(ctx, FK_ERR_ARG, "eval: input_ids needed but no --inputs file");
    const fk_st_tensor *t = fk_st_find(in, "input_ids");
    if (!t) return fk_error(ctx, FK_ERR_SHAPE, "%s: input tensor input_ids not found", fk_st_path(in));
    if (t->dtype != FK_I64 && t->dtype != FK_I32)
        return fk_error(ctx, FK_ERR_SHAPE, "%s: input tensor input_ids has dtype %s, expected I64 or I32",
                        fk_st_path(in), fk_dtype_name(t->dtype));
    if (t->ndim != 1 && t->ndim != 2)
        return fk_error(ctx, FK_ERR_SHAPE, "%s: input tensor input_ids has %d dims, expected (L) or (B, L)",
                        fk_st_path(in), t->ndim);
    int64_t b = t->ndim == 2 ? t->shape[0] : 1, l = t->shape[t->ndim - 1];
    if (b < 1 || l < 1 || b > (1 << 16) || l > (1 << 16))
        return fk_error(ctx, FK_ERR_SHAPE, "%s: input tensor input_ids has an empty or too large shape",
                        fk_st_path(in));
    int64_t *v = malloc(sizeof(int64_t) * (size_t)(b * l));
    if (!v) return fk_error(ctx, FK_ERR_NOMEM, "eval: out of memory reading input_ids");
    for (int64_t i = 0; i < b * l; i++) {
        if (t->dtype == FK_I64) {
            int64_t x;
            memcpy(&x, (const char *)t->data + i * 8, 8);
            v[i] = x;
        } else {
            int32_t x;
            memcpy(&x, (const char *)t->data + i * 4, 4);
            v[i] = x;
        }
    }
    *ids = v;
    *B = (int)b;
    *L = (int)l;
    *batched = t->ndim == 2;
    return FK_OK;
}

fk_status fk_eval_clip(fk_context *ctx, const fk_eval_opts *o, const fk_st_file *in, fk_eval_out *out) {
    int64_t *ids = NULL;
    int B = 0, L = 0;
    bool batched = false;
    fk_status st = fk_eval_text_ids(ctx, in, &ids, &B, &L, &batched);
    if (st != FK_OK) return st;
    fk_backend *be = NULL;
    fk_clip *c = NULL;
    fk_tensor hidden = {0}, pooled = {0};
    st = fk_eval_backend(ctx, o, &be);
    if (st == FK_OK) st = fk_clip_load(ctx, be, o->weights, &c);
    if (st == FK_OK) {
        const fk_clip_config *g = fk_clip_get_config(c);
        if (o->verbose)
            fprintf(stderr, "clip: %s (width %d, %d layers, %d heads, mlp %d, vocab %d, %d positions), %d × %d tokens\n",
                    fk_clip_config_name(g), g->width, g->layers, g->heads, g->mlp_hidden, g->vocab_size,
                    g->max_positions, B, L);
        int64_t hs[3] = {B, L, g->width}, ps[2] = {B, g->width};
        st = fk_tensor_new(ctx, &hidden, FK_F32, batched ? 3 : 2, batched ? hs : hs + 1, "last_hidden_state");
        if (st == FK_OK)
            st = fk_tensor_new(ctx, &pooled, FK_F32, batched ? 2 : 1, batched ? ps : ps + 1, "pooler_output");
        for (int b = 0; b < B && st == FK_OK; b++) {
            fk_tensor h = fk_view2(FK_F32, (float *)hidden.data + (size_t)b * (size_t)L * (size_t)g->width, L,
                                   g->width);
            fk_tensor p = fk_view1(FK_F32, (float *)pooled.data + (size_t)b * (size_t)g->width, g->width);
            st = fk_clip_encode(ctx, c, ids + (size_t)b * (size_t)L, L, &h, &p);
        }
    }
    if (st == FK_OK) st = fk_eval_out_add(ctx, out, "last_hidden_state", &hidden);
    if (st == FK_OK) st = fk_eval_out_add(ctx, out, "pooler_output", &pooled);
    fk_tensor_free(&hidden);
    fk_tensor_free(&pooled);
    fk_clip_free(c);
    fk_backend_close(be);
    free(ids);
    return st;
}

fk_status fk_eval_t5(fk_context *ctx, const fk_eval_opts *o, const fk_st_file *in, fk_eval_out *out) {
    int64_t *ids = NULL;
    int B = 0, L = 0;
    bool batched = false;
    fk_status st = fk_eval_text_ids(ctx, in, &ids, &B, &L, &batched);
    if (st != FK_OK) return st;
    fk_backend *be = NULL;
    fk_t5 *t = NULL;
    fk_tensor hidden = {0};
    st = fk_eval_backend(ctx, o, &be);
    if (st == FK_OK) st = fk_t5_load(ctx, be, o->weights, &t);
    if (st == FK_OK) {
        const fk_t5_config *g = fk_t5_get_config(t);
        if (o->verbose)
            fprintf(stderr,
                    "t5: %s (d_model %d, %d layers, %d heads × %d, d_ff %d, vocab %d, %d buckets, max distance %d%s), "
                    "%d × %d tokens\n",
                    fk_t5_config_name(g), g->d_model, g->layers, g->heads, g->d_kv, g->d_ff, g->vocab_size,
                    g->num_buckets, g->max_distance, fk_t5_scaled_linears(t) ? ", scaled fp8" : "", B, L);
        int64_t hs[3] = {B, L, g->d_model};
        st = fk_tensor_new(ctx, &hidden, FK_F32, batched ? 3 : 2, batched ? hs : hs + 1, "last_hidden_state");
        for (int b = 0; b < B && st == FK_OK; b++) {
            fk_tensor h = fk_view2(FK_F32, (float *)hidden.data + (size_t)b * (size_t)L * (size_t)g->d_model, L,
                                   g->d_model);
            st = fk_t5_encode(ctx, t, ids + (size_t)b * (size_t)L, L, &h);
        }
    }
    if (st == FK_OK) st = fk_eval_out_add(ctx, out, "last_hidden_state", &hidden);
    fk_tensor_free(&hidden);
    fk_t5_free(t);
    fk_backend_close(be);
    free(ids);
    return st;
}
