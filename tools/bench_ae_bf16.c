/* bench_ae_bf16: the full-size FLUX autoencoder decode (random "ae" preset
 * weights, f32 in memory; an N(0, 1) latent), untiled, in the f32 reference
 * mode and in the bf16 precision mode (AMX conv2d, linear, attention where
 * they apply), with the time spent in each kind of op, and the relative L2
 * difference of the bf16 image from the f32 one (not a test).
 *
 * Build against a built library, e.g.
 *   cc -O2 -fopenmp -DFK_HAVE_OPENMP=1 -Iinclude -Isrc tools/bench_ae_bf16.c \
 *      build/libfluxkit.a -lcjson -lutf8proc -lpng -ljpeg -lm -o build/bench_ae_bf16
 * Run:
 *   build/bench_ae_bf16 [RES] [THREADS] [REPS] [f32|bf16|both] [thp|heap]
 * RES: image side (default 512; a multiple of 8); THREADS (default 2); REPS:
 * decodes per mode, the best one is reported (default 1); thp: activations
 * in 2 MB pages (mmap + MADV_HUGEPAGE) instead of fk_alloc's 4 KB pages;
 * heap: glibc keeps freed activations for reuse (mallopt: no mmap per
 * buffer, no trimming), so they are not faulted in afresh every time.
 * Since the runner keeps all activations of a run in one arena (one
 * be->alloc per decode, see src/model/vae.c), thp puts that arena in 2 MB
 * pages, and heap only matters across decodes (the arena of the next
 * decode reuses the freed one instead of faulting it in again). The
 * backend allocations are counted and printed. */
#include "backend/cpu/cpu.h"
#include "core/rng.h"
#include "model/vae.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>
#include <sys/mman.h>

/* Seconds per op kind, accumulated by wrappers around the backend's ops
 * (each op runs its own parallel region from this thread). */
enum { OP_CONV, OP_LINEAR, OP_ATTN, OP_NORM, OP_COUNT };
static const char *const op_names[OP_COUNT] = {"conv2d", "linear", "attention", "group_norm"};
static double op_sec[OP_COUNT];
static fk_backend saved;

static void w_conv(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                   const fk_tensor *b, int stride, const int pad[4]) {
    double t = fk_time();
    saved.conv2d(be, y, x, w, b, stride, pad);
    op_sec[OP_CONV] += fk_time() - t;
}
static void w_linear(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *w,
                     const fk_tensor *b) {
    double t = fk_time();
    saved.linear(be, y, x, w, b);
    op_sec[OP_LINEAR] += fk_time() - t;
}
static void w_attn(fk_backend *be, fk_tensor *out, const fk_tensor *q, const fk_tensor *k,
                   const fk_tensor *v, const fk_tensor *bias, float scale, bool causal) {
    double t = fk_time();
    saved.attention(be, out, q, k, v, bias, scale, causal);
    op_sec[OP_ATTN] += fk_time() - t;
}
static void w_norm(fk_backend *be, fk_tensor *y, const fk_tensor *x, int groups, const fk_tensor *w,
                   const fk_tensor *b, float eps) {
    double t = fk_time();
    saved.group_norm(be, y, x, groups, w, b, eps);
    op_sec[OP_NORM] += fk_time() - t;
}

/* --thp: activation buffers from mmap in 2 MB transparent huge pages (a
 * 64-byte header keeps the length), to measure what first-touch page faults
 * of fresh 4 KB pages cost the decode. */
static bool use_thp;
static int n_allocs;
static void *thp_alloc(fk_backend *be, size_t bytes) {
    (void)be;
    size_t len = (bytes + 64 + ((size_t)2 << 20) - 1) & ~(((size_t)2 << 20) - 1);
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    madvise(p, len, MADV_HUGEPAGE);
    memcpy(p, &len, sizeof(len));
    return p + 64;
}
static void thp_free(fk_backend *be, void *q) {
    (void)be;
    if (!q) return;
    char *p = (char *)q - 64;
    size_t len;
    memcpy(&len, p, sizeof(len));
    munmap(p, len);
}

/* Every backend allocation goes through here (counted). */
static void *w_alloc(fk_backend *be, size_t bytes) {
    n_allocs++;
    return use_thp ? thp_alloc(be, bytes) : saved.alloc(be, bytes);
}
static void w_free(fk_backend *be, void *p) {
    if (use_thp) thp_free(be, p);
    else saved.free(be, p);
}

/* Decode z with the given precision; best of reps; the image into *img. */
static int decode(fk_context *ctx, const fk_vae *v, const fk_tensor *z, int threads, bool bf16,
                  int reps, fk_tensor *img) {
    fk_backend *be = fk_backend_cpu_create(threads);
    if (!be) return 1;
    const char *kern = "f32";
    if (bf16) kern = fk_cpu_bf16_kernel_name(fk_backend_cpu_set_precision(be, FK_PREC_BF16));
    saved = *be;
    be->conv2d = w_conv;
    be->linear = w_linear;
    be->attention = w_attn;
    be->group_norm = w_norm;
    be->alloc = w_alloc;
    be->free = w_free;
    n_allocs = 0;
    double best = 1e30, best_ops[OP_COUNT] = {0};
    for (int r = 0; r < reps; r++) {
        fk_tensor out = {0};
        memset(op_sec, 0, sizeof(op_sec));
        double t0 = fk_time();
        fk_status st = fk_vae_decode(ctx, be, v, z, &out, NULL);
        double dt = fk_time() - t0;
        if (st != FK_OK) {
            fprintf(stderr, "decode failed: %s\n", fk_context_error(ctx));
            be->destroy(be);
            return 1;
        }
        if (dt < best) {
            best = dt;
            memcpy(best_ops, op_sec, sizeof(op_sec));
            fk_tensor_free(img);
            *img = out;
        } else {
            fk_tensor_free(&out);
        }
    }
    double sum = 0;
    printf("%-5s (%s, %d threads): %7.2f s |", bf16 ? "bf16" : "f32", kern, be->n_threads, best);
    for (int i = 0; i < OP_COUNT; i++) {
        printf(" %s %.2f s", op_names[i], best_ops[i]);
        sum += best_ops[i];
    }
    printf(" | rest %.2f s | %.1f backend allocations per decode\n", best - sum, (double)n_allocs / reps);
    fflush(stdout);
    be->destroy(be);
    return 0;
}

int main(int argc, char **argv) {
    const int64_t res = argc > 1 ? atoll(argv[1]) : 512;
    const int threads = argc > 2 ? atoi(argv[2]) : 2, reps = argc > 3 ? atoi(argv[3]) : 1;
    const char *mode = argc > 4 ? argv[4] : "both";
    use_thp = argc > 5 && strcmp(argv[5], "thp") == 0;
    if (argc > 5 && strcmp(argv[5], "heap") == 0) {
        /* freed activations stay in the heap and are reused: no fresh pages */
        mallopt(M_MMAP_THRESHOLD, 1 << 30);
        mallopt(M_TRIM_THRESHOLD, 1 << 30);
    }
    if (res <= 0 || res % 8 || reps < 1) {
        fprintf(stderr, "usage: bench_ae_bf16 [RES] [THREADS] [REPS] [f32|bf16|both] [thp|heap]\n");
        return 2;
    }
    fk_context *ctx = fk_context_create(threads);
    fk_vae_config cfg;
    fk_vae *v = NULL;
    if (!ctx || !fk_vae_preset("ae", &cfg) || fk_vae_create_random(ctx, &cfg, 0, &v) != FK_OK) {
        fprintf(stderr, "cannot create the autoencoder\n");
        return 1;
    }
    const int64_t h = res / 8, shape[4] = {1, cfg.z_channels, h, h};
    fk_tensor z = {0};
    if (fk_tensor_new(ctx, &z, FK_F32, 4, shape, "latent") != FK_OK) return 1;
    fk_rng_fill_normal(0, 1, 0, z.data, (size_t)fk_tensor_numel(&z), 0.0f, 1.0f);
    printf("FLUX ae decode, random weights (f32), %lld² image, untiled\n", (long long)res);
    fk_tensor a = {0}, b = {0};
    int rc = 0;
    if (strcmp(mode, "bf16") != 0) rc |= decode(ctx, v, &z, threads, false, reps, &a);
    if (strcmp(mode, "f32") != 0) rc |= decode(ctx, v, &z, threads, true, reps, &b);
    if (!rc && a.data && b.data) {
        const float *p = a.data, *q = b.data;
        double num = 0, den = 0, mx = 0;
        for (int64_t i = 0; i < fk_tensor_numel(&a); i++) {
            double d = (double)q[i] - (double)p[i];
            num += d * d;
            den += (double)p[i] * (double)p[i];
            mx = fabs(d) > mx ? fabs(d) : mx;
        }
        printf("bf16 image vs f32 image: relative L2 %.5f, max |diff| %.4g (image RMS %.4g)\n",
               sqrt(num / den), mx, sqrt(den / (double)fk_tensor_numel(&a)));
    }
    fk_tensor_free(&a);
    fk_tensor_free(&b);
    fk_tensor_free(&z);
    fk_vae_free(v);
    fk_context_free(ctx);
    return rc;
}
