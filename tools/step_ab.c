/* step_ab: paired A/B of one CPU backend switch inside one process, step by
 * step (not a test). On a shared machine the host's slow periods last
 * seconds to minutes; two settings compared in separate processes (tools/ab.sh)
 * need many pairs to see a few percent. Here both settings run on the same
 * runner, weights, cache and inputs, alternating every step (A B, B A, ...),
 * so each pair sees the same host; it prints every pair's ratio, the ratio of
 * the means, the median pair ratio, and whether the two settings gave the
 * same velocity bit for bit.
 *
 *   step_ab WEIGHTS RES PAIRS SWITCH [TXT]
 *     SWITCH: bf16-io     bf16 activations: MLP hidden states, norm and attention
 *                         outputs, the attention's q, k, v, tiled where products read
 *                         them (off = A, on = B)
 *             attention   AMX attention in bf16 mode (off = A, on = B)
 *             gemv        the small-M matrix-vector path (off = A, on = B)
 *             qk-fused    q and k normed and rotated by their products
 *                         (linear_rmsnorm_rope; off = A: linear, then rmsnorm_rope)
 *     bf16 precision, 2 threads, weight cache on, TXT text tokens (512).
 *
 * Built with the project (build/step_ab; CMake option FK_BUILD_TOOLS), or by
 * hand against a built library:
 *   cc -O2 -fopenmp -DFK_HAVE_OPENMP=1 -Iinclude -Isrc tools/step_ab.c \
 *      build/libfluxkit.a -lcjson -lutf8proc -lpng -ljpeg -lm -o build/step_ab */
#include "backend/cpu/cpu.h"
#include "core/rng.h"
#include "model/flux.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void set_switch(fk_backend *be, const char *sw, bool on) {
    if (!strcmp(sw, "qk-fused")) be->linear_rmsnorm_rope = on ? fk_cpu_linear_rmsnorm_rope : NULL;
    else if (!strcmp(sw, "bf16-io")) fk_backend_cpu_set_bf16_io(be, on);
    else if (!strcmp(sw, "attention")) fk_backend_cpu_set_bf16_attention(be, on);
    else fk_backend_cpu_set_gemv(be, on);
}

int main(int argc, char **argv) {
    if (argc < 5 || (strcmp(argv[4], "bf16-io") && strcmp(argv[4], "attention") &&
                     strcmp(argv[4], "gemv") && strcmp(argv[4], "qk-fused"))) {
        fprintf(stderr,
                "usage: step_ab WEIGHTS RES PAIRS bf16-io|attention|gemv|qk-fused [TXT]\n");
        return 2;
    }
    const char *sw = argv[4];
    const int res = atoi(argv[2]), pairs = atoi(argv[3]);
    const int64_t Lt = argc > 5 ? atoi(argv[5]) : 512;
    if (res < 16 || res % 16 || pairs < 1 || Lt < 1) {
        fprintf(stderr, "step_ab: RES a multiple of 16, PAIRS and TXT at least 1\n");
        return 2;
    }
    fk_context *ctx = fk_context_create(2);
    fk_flux_model *m = NULL;
    if (fk_flux_load(ctx, argv[1], &m) != FK_OK) {
        fprintf(stderr, "step_ab: %s\n", fk_context_error(ctx));
        return 1;
    }
    const fk_flux_config *c = &m->cfg;
    const int64_t hp = res / 16, Li = hp * hp;
    fk_tensor img, ids, txt, tids, y, v[2];
    if (fk_tensor_new(ctx, &img, FK_F32, 2, (const int64_t[]){Li, c->in_channels}, "img") ||
        fk_tensor_new(ctx, &ids, FK_F32, 2, (const int64_t[]){Li, 3}, "ids") ||
        fk_tensor_new(ctx, &txt, FK_F32, 2, (const int64_t[]){Lt, c->context_dim}, "txt") ||
        fk_tensor_new(ctx, &tids, FK_F32, 2, (const int64_t[]){Lt, 3}, "tids") ||
        fk_tensor_new(ctx, &y, FK_F32, 2, (const int64_t[]){1, c->vec_dim}, "y") ||
        fk_tensor_new(ctx, &v[0], FK_F32, 2, (const int64_t[]){Li, c->out_channels}, "v0") ||
        fk_tensor_new(ctx, &v[1], FK_F32, 2, (const int64_t[]){Li, c->out_channels}, "v1")) {
        fprintf(stderr, "step_ab: %s\n", fk_context_error(ctx));
        return 1;
    }
    fk_rng_fill_normal(1, 1, 0, img.data, (size_t)fk_tensor_numel(&img), 0.0f, 1.0f);
    fk_rng_fill_normal(1, 2, 0, txt.data, (size_t)fk_tensor_numel(&txt), 0.0f, 0.5f);
    fk_rng_fill_normal(1, 3, 0, y.data, (size_t)fk_tensor_numel(&y), 0.0f, 0.5f);
    float *id = ids.data;
    for (int64_t i = 0; i < Li; i++)
        id[i * 3] = 0.0f, id[i * 3 + 1] = (float)(i / hp), id[i * 3 + 2] = (float)(i % hp);
    fk_backend *be = fk_backend_cpu_create(2);
    if (!be || fk_backend_cpu_set_precision(be, FK_PREC_BF16) == FK_CPU_BF16_NONE)
        fprintf(stderr, "step_ab: no bf16 kernel here: both sides run the f32 path\n");
    fk_flux_runner *r = NULL;
    size_t cached = 0;
    if (fk_flux_runner_create(ctx, m, be, Li, Lt, &r) != FK_OK ||
        fk_flux_runner_cache_weights(ctx, r, true, &cached) != FK_OK) {
        fprintf(stderr, "step_ab: %s\n", fk_context_error(ctx));
        return 1;
    }
    fk_flux_inputs in = {.img = &img, .img_ids = &ids, .txt = &txt, .txt_ids = &tids, .y = &y,
                         .guidance = 3.5f, .timestep = 0.7f};
    set_switch(be, sw, true);
    if (fk_flux_forward(ctx, r, &in, &v[1]) != FK_OK) { /* warm-up */
        fprintf(stderr, "step_ab: %s\n", fk_context_error(ctx));
        return 1;
    }
    double *ratio = malloc(sizeof(double) * (size_t)pairs), sum[2] = {0, 0};
    bool same = true;
    printf("step_ab: %s, %d px, %ld text tokens, %d pairs (A: off, B: on)\n", sw, res, (long)Lt,
           pairs);
    for (int p = 0; p < pairs; p++) {
        double t[2];
        for (int q = 0; q < 2; q++) {
            const int on = (p + q) & 1; /* A B, then B A, ... */
            set_switch(be, sw, on);
            double t0 = now();
            if (fk_flux_forward(ctx, r, &in, &v[on]) != FK_OK) {
                fprintf(stderr, "step_ab: %s\n", fk_context_error(ctx));
                return 1;
            }
            t[on] = now() - t0;
        }
        same = same && !memcmp(v[0].data, v[1].data, fk_tensor_nbytes(&v[0]));
        ratio[p] = t[1] / t[0];
        sum[0] += t[0], sum[1] += t[1];
        printf("pair %2d: A %.3f s  B %.3f s  B/A %.3f\n", p + 1, t[0], t[1], ratio[p]);
        fflush(stdout);
    }
    qsort(ratio, (size_t)pairs, sizeof(double), cmp_double);
    printf("A mean %.4f s, B mean %.4f s: B/A %.4f (means), %.4f (median pair); velocity %s\n",
           sum[0] / pairs, sum[1] / pairs, sum[1] / sum[0], ratio[pairs / 2],
           same ? "bitwise the same" : "differs");
    free(ratio);
    fk_flux_runner_free(r);
    be->destroy(be);
    fk_tensor *ts[7] = {&img, &ids, &txt, &tids, &y, &v[0], &v[1]};
    for (int i = 0; i < 7; i++) fk_tensor_free(ts[i]);
    fk_flux_free(m);
    fk_context_free(ctx);
    return 0;
}
