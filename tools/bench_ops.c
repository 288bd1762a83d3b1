/* bench_ops: timing of the CPU backend's linear and attention (not a test).
 *
 * Build against a built library, e.g.
 *   cc -O2 -fopenmp -DFK_HAVE_OPENMP=1 -Iinclude -Isrc tools/bench_ops.c \
 *      build/libfluxkit.a -lcjson -lutf8proc -lpng -lm -o build/bench_ops
 * Run:
 *   build/bench_ops linear M K N WDTYPE THREADS [ISA] [REPS]
 *   build/bench_ops attention L H D THREADS [ISA] [REPS]
 * WDTYPE: F32, BF16, F16, F8_E4M3, F8_E5M2; ISA: portable, avx2, avx512
 * (default: the best one). Prints the best of REPS runs (default 3). */
#include "backend/cpu/cpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

/* CPU seconds used by the process (all threads): with other processes on
 * the machine, wall time overstates; GFLOP per CPU-second shows the kernel. */
static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
           (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

static fk_cpu_isa parse_isa(const char *s) {
    for (int i = 0; i < FK_CPU_ISA_COUNT; i++)
        if (strcmp(s, fk_cpu_isa_name((fk_cpu_isa)i)) == 0) return (fk_cpu_isa)i;
    fprintf(stderr, "unknown ISA %s\n", s);
    exit(2);
}

static float frand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
}

static int bench_linear(int argc, char **argv) {
    if (argc < 7) return 2;
    int64_t M = atoll(argv[2]), K = atoll(argv[3]), N = atoll(argv[4]);
    fk_dtype wdt;
    if (!fk_dtype_parse(argv[5], &wdt) || !fk_dtype_is_float(wdt)) {
        fprintf(stderr, "bad dtype %s\n", argv[5]);
        return 2;
    }
    int threads = atoi(argv[6]);
    fk_cpu_isa isa = argc > 7 ? parse_isa(argv[7]) : fk_cpu_isa_detect();
    int reps = argc > 8 ? atoi(argv[8]) : 3;
    fk_backend *be = fk_backend_cpu_create_isa(threads, isa);
    if (!be) {
        fprintf(stderr, "cannot create backend (isa %s)\n", fk_cpu_isa_name(isa));
        return 1;
    }
    float *x = fk_alloc((size_t)(M * K) * 4), *y = fk_alloc((size_t)(M * N) * 4);
    float *wf = fk_alloc((size_t)(N * K) * 4);
    void *w = fk_alloc((size_t)(N * K) * fk_dtype_size(wdt));
    uint64_t s = 1;
    for (int64_t i = 0; i < M * K; i++) x[i] = frand(&s);
    for (int64_t i = 0; i < N * K; i++) wf[i] = frand(&s) * 0.05f;
    fk_convert_from_f32(w, wdt, wf, (size_t)(N * K));
    fk_tensor tx = fk_view2(FK_F32, x, M, K), ty = fk_view2(FK_F32, y, M, N);
    fk_tensor tw = fk_view2(wdt, w, N, K);
    double best = 1e30, best_cpu = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = fk_time(), c0 = cpu_seconds();
        be->linear(be, &ty, &tx, &tw, NULL);
        double dt = fk_time() - t0, dc = cpu_seconds() - c0;
        if (dt < best) best = dt;
        if (dc < best_cpu) best_cpu = dc;
    }
    double gf = 2.0 * (double)M * (double)N * (double)K * 1e-9;
    printf("linear M=%lld K=%lld N=%lld w=%s threads=%d isa=%s: %.4f s, %.1f GFLOP/s "
           "(%.1f GFLOP per CPU-second)\n",
           (long long)M, (long long)K, (long long)N, fk_dtype_name(wdt), be->n_threads,
           fk_cpu_isa_name(isa), best, gf / best, gf / best_cpu);
    fk_free(x);
    fk_free(y);
    fk_free(wf);
    fk_free(w);
    be->destroy(be);
    return 0;
}

static int bench_attention(int argc, char **argv) {
    if (argc < 6) return 2;
    int64_t L = atoll(argv[2]), H = atoll(argv[3]), D = atoll(argv[4]);
    int threads = atoi(argv[5]);
    fk_cpu_isa isa = argc > 6 ? parse_isa(argv[6]) : fk_cpu_isa_detect();
    int reps = argc > 7 ? atoi(argv[7]) : 3;
    fk_backend *be = fk_backend_cpu_create_isa(threads, isa);
    if (!be) return 1;
    size_t n = (size_t)(L * H * D);
    float *q = fk_alloc(n * 4), *k = fk_alloc(n * 4), *v = fk_alloc(n * 4), *o = fk_alloc(n * 4);
    uint64_t s = 7;
    for (size_t i = 0; i < n; i++) {
        q[i] = frand(&s);
        k[i] = frand(&s);
        v[i] = frand(&s);
    }
    fk_tensor tq = fk_view3(FK_F32, q, L, H, D), tk = fk_view3(FK_F32, k, L, H, D);
    fk_tensor tv = fk_view3(FK_F32, v, L, H, D), to = fk_view2(FK_F32, o, L, H * D);
    double best = 1e30, best_cpu = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = fk_time(), c0 = cpu_seconds();
        be->attention(be, &to, &tq, &tk, &tv, NULL, 0.125f, false);
        double dt = fk_time() - t0, dc = cpu_seconds() - c0;
        if (dt < best) best = dt;
        if (dc < best_cpu) best_cpu = dc;
    }
    double gf = 4.0 * (double)L * (double)L * (double)(H * D) * 1e-9;
    printf("attention L=%lld H=%lld D=%lld threads=%d isa=%s: %.4f s, %.1f GFLOP/s (QK+PV; "
           "%.1f GFLOP per CPU-second)\n",
           (long long)L, (long long)H, (long long)D, be->n_threads, fk_cpu_isa_name(isa), best,
           gf / best, gf / best_cpu);
    fk_free(q);
    fk_free(k);
    fk_free(v);
    fk_free(o);
    be->destroy(be);
    return 0;
}

int main(int argc, char **argv) {
    int rc = 2;
    if (argc > 1 && strcmp(argv[1], "linear") == 0) rc = bench_linear(argc, argv);
    else if (argc > 1 && strcmp(argv[1], "attention") == 0) rc = bench_attention(argc, argv);
    if (rc == 2)
        fprintf(stderr, "usage: bench_ops linear M K N WDTYPE THREADS [ISA] [REPS]\n"
                        "       bench_ops attention L H D THREADS [ISA] [REPS]\n");
    return rc;
}
