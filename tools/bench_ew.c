/* bench_ew: timing of the CPU backend's elementwise and normalization ops
 * (not a test), the portable (scalar) path beside the SIMD one.
 *
 * Build against a built library, e.g.
 *   cc -O2 -fopenmp -DFK_HAVE_OPENMP=1 -Iinclude -Isrc tools/bench_ew.c \
 *      build/libfluxkit.a -lcjson -lutf8proc -lpng -ljpeg -lm -o build/bench_ew
 * Run:
 *   build/bench_ew [THREADS] [REPS] [ISA] [OP]
 * THREADS: 0 (default) runs 1 and 2 threads; ISA: the fast path to compare
 * with the portable one (portable, avx2, avx512; default: the best one);
 * OP: only the ops whose name contains OP.
 * Shapes: the Flux-mini transformer at 512² (L = 1536 tokens, C = 3072,
 * M = 4·C = 12288 for the MLP activation, H = 24 heads of D = 128):
 *   gelu_tanh   (L, M), y != x
 *   silu        (L, C), y != x
 *   add, mul    (L, C)
 *   modulate    (1, L, C), shift and scale (1, C)
 *   gated_add   (L, C) += gate (1, C) · y (L, C)
 *   rope        (L, H, D) in place, pe (L, D/2, 2, 2)
 *   layernorm   (L, C) without affine (FLUX), eps 1e-6
 *   rmsnorm     (L·H, D), BF16 scale (the QK norm)
 *   softmax     (L, L)
 *   ln+mod      layernorm then modulate (the two ops), (L, C)
 *   ln_mod      layernorm_modulate (fused), (L, C)
 *   rms+rope    rmsnorm then rope (the two ops), (L, H, D), BF16 scale
 *   rms_rope    rmsnorm_rope (fused)
 * Each backend gets one untimed call, then REPS (default 5) timed calls
 * alternating portable and fast; the best wall time of each is printed,
 * with GB/s counting the op's minimal memory traffic (every f32 input read
 * once, every output written once; the separate pairs are charged the bytes
 * of the fused op, so their GB/s compares directly). Other processes on the machine only slow runs down:
 * take the best of several runs and compare within one run. */
#include "backend/cpu/cpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { L_TOK = 1536, C_DIM = 3072, M_MLP = 12288, H_HEADS = 24, D_HEAD = 128 };

typedef struct bench_data {
    float *x;           /* (L, M) the largest input */
    float *y;           /* (L, M) */
    float *b;           /* (L, C) second operand */
    float *shift;       /* (C) */
    float *scale;       /* (C) */
    float *pe;          /* (L, D/2, 2, 2) */
    uint16_t *qk_scale; /* (D) bf16 */
} bench_data;

typedef enum bench_op {
    OP_GELU_TANH,
    OP_SILU,
    OP_ADD,
    OP_MUL,
    OP_MODULATE,
    OP_GATED_ADD,
    OP_ROPE,
    OP_LAYERNORM,
    OP_RMSNORM,
    OP_SOFTMAX,
    OP_LN_THEN_MOD,
    OP_LN_MOD,
    OP_RMS_THEN_ROPE,
    OP_RMS_ROPE,
    OP_COUNT
} bench_op;

static const char *OP_NAMES[OP_COUNT] = {"gelu_tanh", "silu",   "add",       "mul",     "modulate",
                                         "gated_add", "rope",   "layernorm", "rmsnorm", "softmax",
                                         "ln+mod",    "ln_mod", "rms+rope",  "rms_rope"};

static float frand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
}

/* Minimal memory traffic of one call (bytes). */
static double op_bytes(bench_op op) {
    const double n = (double)L_TOK * C_DIM, nq = (double)L_TOK * H_HEADS * D_HEAD;
    switch (op) {
    case OP_GELU_TANH: return 2.0 * 4 * L_TOK * (double)M_MLP;
    case OP_SILU: return 2 * 4 * n;
    case OP_ADD:
    case OP_MUL: return 3 * 4 * n;
    case OP_MODULATE: return 2 * 4 * n;
    case OP_GATED_ADD: return 3 * 4 * n;
    case OP_ROPE: return 2 * 4 * nq + 4.0 * L_TOK * D_HEAD * 2;
    case OP_LAYERNORM: return 2 * 4 * n;
    case OP_RMSNORM: return 2 * 4 * nq;
    case OP_SOFTMAX: return 2.0 * 4 * L_TOK * (double)L_TOK;
    case OP_LN_THEN_MOD:
    case OP_LN_MOD: return 2 * 4 * n;
    case OP_RMS_THEN_ROPE:
    case OP_RMS_ROPE: return 2 * 4 * nq + 4.0 * L_TOK * D_HEAD * 2;
    case OP_COUNT: break;
    }
    return 0;
}

static void run_op(fk_backend *be, bench_op op, bench_data *d) {
    const float eps = 1e-6f;
    fk_tensor xn = fk_view2(FK_F32, d->x, L_TOK, C_DIM), yn = fk_view2(FK_F32, d->y, L_TOK, C_DIM);
    fk_tensor bn = fk_view2(FK_F32, d->b, L_TOK, C_DIM);
    fk_tensor sh = fk_view2(FK_F32, d->shift, 1, C_DIM), sc = fk_view2(FK_F32, d->scale, 1, C_DIM);
    fk_tensor x3 = fk_view3(FK_F32, d->y, L_TOK, H_HEADS, D_HEAD);
    fk_tensor xq = fk_view2(FK_F32, d->y, (int64_t)L_TOK * H_HEADS, D_HEAD);
    fk_tensor pe = fk_view4(FK_F32, d->pe, L_TOK, D_HEAD / 2, 2, 2);
    fk_tensor qs = fk_view1(FK_BF16, d->qk_scale, D_HEAD);
    switch (op) {
    case OP_GELU_TANH: {
        fk_tensor x = fk_view2(FK_F32, d->x, L_TOK, M_MLP),
                  y = fk_view2(FK_F32, d->y, L_TOK, M_MLP);
        be->gelu_tanh(be, &y, &x);
        break;
    }
    case OP_SILU: be->silu(be, &yn, &xn); break;
    case OP_ADD: be->add(be, &yn, &xn, &bn); break;
    case OP_MUL: be->mul(be, &yn, &xn, &bn); break;
    case OP_MODULATE: be->modulate(be, &yn, &xn, &sh, &sc); break;
    case OP_GATED_ADD: be->gated_add(be, &yn, &bn, &sc); break;
    case OP_ROPE: be->rope(be, &x3, &pe); break;
    case OP_LAYERNORM: be->layernorm(be, &yn, &xn, NULL, NULL, eps); break;
    case OP_RMSNORM: be->rmsnorm(be, &xq, &xq, &qs, eps); break;
    case OP_SOFTMAX: {
        fk_tensor x = fk_view2(FK_F32, d->x, L_TOK, L_TOK),
                  y = fk_view2(FK_F32, d->y, L_TOK, L_TOK);
        be->softmax(be, &y, &x);
        break;
    }
    case OP_LN_THEN_MOD:
        be->layernorm(be, &yn, &xn, NULL, NULL, eps);
        be->modulate(be, &yn, &yn, &sh, &sc);
        break;
    case OP_LN_MOD: be->layernorm_modulate(be, &yn, &xn, &sh, &sc, eps); break;
    case OP_RMS_THEN_ROPE:
        be->rmsnorm(be, &xq, &xq, &qs, eps);
        be->rope(be, &x3, &pe);
        break;
    case OP_RMS_ROPE: be->rmsnorm_rope(be, &x3, &x3, &qs, &pe, eps); break;
    case OP_COUNT: break;
    }
}

/* Best wall times of reps calls on two backends, alternating a, b, a, b, ...
 * so that a burst of load from other processes hits both (seconds). */
static void time_pair(fk_backend *ba, fk_backend *bb, bench_op op, bench_data *d, int reps,
                      double *ta, double *tb) {
    run_op(ba, op, d); /* untimed: page faults, caches */
    run_op(bb, op, d);
    *ta = *tb = 1e30;
    for (int r = 0; r < reps; r++)
        for (int w = 0; w < 2; w++) {
            fk_backend *be = w ? bb : ba;
            double t0 = fk_time();
            run_op(be, op, d);
            double dt = fk_time() - t0;
            double *best = w ? tb : ta;
            if (dt < *best) *best = dt;
        }
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 0;
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    fk_cpu_isa fast = fk_cpu_isa_detect();
    if (argc > 3) {
        int i = 0;
        for (; i < FK_CPU_ISA_COUNT; i++)
            if (strcmp(argv[3], fk_cpu_isa_name((fk_cpu_isa)i)) == 0) break;
        if (i == FK_CPU_ISA_COUNT || !fk_cpu_isa_available((fk_cpu_isa)i)) {
            fprintf(stderr, "ISA %s not available here\n", argv[3]);
            return 2;
        }
        fast = (fk_cpu_isa)i;
    }
    const char *only = argc > 4 ? argv[4] : NULL;
    if (reps < 1) reps = 1;

    bench_data d;
    size_t big = (size_t)L_TOK * M_MLP;
    d.x = fk_alloc(big * 4);
    d.y = fk_alloc(big * 4);
    d.b = fk_alloc((size_t)L_TOK * C_DIM * 4);
    d.shift = fk_alloc(C_DIM * 4);
    d.scale = fk_alloc(C_DIM * 4);
    d.pe = fk_alloc((size_t)L_TOK * D_HEAD * 2 * 4);
    d.qk_scale = fk_alloc(D_HEAD * 2);
    if (!d.x || !d.y || !d.b || !d.shift || !d.scale || !d.pe || !d.qk_scale) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    uint64_t s = 7;
    for (size_t i = 0; i < big; i++) d.x[i] = 3 * frand(&s);
    memcpy(d.y, d.x, big * 4);
    for (size_t i = 0; i < (size_t)L_TOK * C_DIM; i++) d.b[i] = frand(&s);
    for (int i = 0; i < C_DIM; i++) d.shift[i] = 0.1f * frand(&s), d.scale[i] = 0.1f * frand(&s);
    for (int64_t l = 0; l < L_TOK; l++)
        for (int j = 0; j < D_HEAD / 2; j++) {
            double a = (double)l * pow(10000.0, -2.0 * j / D_HEAD);
            float *p = d.pe + (l * D_HEAD / 2 + j) * 4;
            p[0] = (float)cos(a), p[1] = (float)-sin(a), p[2] = (float)sin(a), p[3] = (float)cos(a);
        }
    float qf[D_HEAD];
    for (int i = 0; i < D_HEAD; i++) qf[i] = 1 + 0.2f * frand(&s);
    fk_convert_from_f32(d.qk_scale, FK_BF16, qf, D_HEAD);

    printf("bench_ew: Flux-mini 512² shapes (L=%d C=%d M=%d H=%d D=%d), f32 activations, "
           "best of %d; portable vs %s\n",
           L_TOK, C_DIM, M_MLP, H_HEADS, D_HEAD, reps, fk_cpu_isa_name(fast));
    int tlist[2] = {1, 2}, nt_count = 2;
    if (threads > 0) tlist[0] = threads, nt_count = 1;
    for (int ti = 0; ti < nt_count; ti++) {
        fk_backend *bp = fk_backend_cpu_create_isa(tlist[ti], FK_CPU_ISA_PORTABLE);
        fk_backend *bf = fk_backend_cpu_create_isa(tlist[ti], fast);
        if (!bp || !bf) {
            fprintf(stderr, "cannot create the backends\n");
            return 1;
        }
        printf("threads=%d\n%-10s %12s %9s %12s %9s %8s\n", bp->n_threads, "op", "portable ms",
               "GB/s", "fast ms", "GB/s", "speedup");
        for (int op = 0; op < OP_COUNT; op++) {
            if (only && !strstr(OP_NAMES[op], only)) continue;
            double tp, tf;
            time_pair(bp, bf, (bench_op)op, &d, reps, &tp, &tf);
            double gb = op_bytes((bench_op)op) * 1e-9;
            printf("%-10s %12.3f %9.2f %12.3f %9.2f %7.2fx\n", OP_NAMES[op], tp * 1e3, gb / tp,
                   tf * 1e3, gb / tf, tp / tf);
            fflush(stdout);
        }
        bp->destroy(bp);
        bf->destroy(bf);
    }
    fk_free(d.x);
    fk_free(d.y);
    fk_free(d.b);
    fk_free(d.shift);
    fk_free(d.scale);
    fk_free(d.pe);
    fk_free(d.qk_scale);
    return 0;
}
