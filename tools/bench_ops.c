/* bench_ops: timing of the CPU backend's linear and attention (not a test).
 *
 * Build against a built library, e.g.
 *   cc -O2 -fopenmp -DFK_HAVE_OPENMP=1 -Iinclude -Isrc tools/bench_ops.c \
 *      build/libfluxkit.a -lcjson -lutf8proc -lpng -lm -o build/bench_ops
 * Run:
 *   build/bench_ops linear M K N WDTYPE THREADS [KERNEL] [REPS]
 *   build/bench_ops attention L H D THREADS [KERNEL] [REPS]
 *   build/bench_ops dit [THREADS] [REPS]
 * WDTYPE: F32, BF16, F16, F8_E4M3, F8_E5M2; ISA: portable, avx2, avx512
 * (default: the best one); KERNEL: an ISA (f32 reference) or a bf16 kernel,
 * amx or avx512bf16 (precision mode FK_PREC_BF16). `dit`: the Flux-mini
 * linears at 512² (bf16 weights) and the joint attention, f32 reference vs
 * the best bf16 kernel, with THREADS threads (default: 1 and 2). Prints the
 * best of REPS runs (default 3; the f32 reference: at most 2): other
 * processes on the machine only slow runs down. */
#include "backend/cpu/cpu.h"

#include <math.h>
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

/* A kernel name: an ISA (f32 reference) or a bf16 kernel ("amx", "avx512bf16"). */
static bool parse_kernel(const char *s, fk_cpu_isa *isa, fk_cpu_bf16_kernel *bk) {
    *isa = fk_cpu_isa_detect();
    *bk = FK_CPU_BF16_NONE;
    for (int i = 1; i < FK_CPU_BF16_COUNT; i++)
        if (strcmp(s, fk_cpu_bf16_kernel_name((fk_cpu_bf16_kernel)i)) == 0) {
            *bk = (fk_cpu_bf16_kernel)i;
            return true;
        }
    *isa = parse_isa(s);
    return true;
}

/* GFLOP/s of one linear (best of reps); 0 when the backend cannot be made. */
static double run_linear(int64_t M, int64_t K, int64_t N, fk_dtype wdt, int threads,
                         fk_cpu_isa isa, fk_cpu_bf16_kernel bk, int reps, bool quiet) {
    fk_backend *be = fk_backend_cpu_create_isa(threads, isa);
    if (!be || (bk != FK_CPU_BF16_NONE && !fk_backend_cpu_set_bf16_kernel(be, bk))) {
        fprintf(stderr, "cannot create backend (isa %s, bf16 kernel %s)\n", fk_cpu_isa_name(isa),
                fk_cpu_bf16_kernel_name(bk));
        if (be) be->destroy(be);
        return 0;
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
    fk_free(wf);
    wf = NULL;
    /* bf16: one untimed call grows the workspace (first-touch page faults) */
    if (bk != FK_CPU_BF16_NONE) be->linear(be, &ty, &tx, &tw, NULL);
    double best = 1e30, best_cpu = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = fk_time(), c0 = cpu_seconds();
        be->linear(be, &ty, &tx, &tw, NULL);
        double dt = fk_time() - t0, dc = cpu_seconds() - c0;
        if (dt < best) best = dt;
        if (dc < best_cpu) best_cpu = dc;
    }
    double gf = 2.0 * (double)M * (double)N * (double)K * 1e-9;
    if (!quiet)
        printf("linear M=%lld K=%lld N=%lld w=%s threads=%d kernel=%s: %.4f s, %.1f GFLOP/s "
               "(%.1f GFLOP per CPU-second)\n",
               (long long)M, (long long)K, (long long)N, fk_dtype_name(wdt), be->n_threads,
               bk != FK_CPU_BF16_NONE ? fk_cpu_bf16_kernel_name(bk) : fk_cpu_isa_name(isa), best,
               gf / best, gf / best_cpu);
    fk_free(x);
    fk_free(y);
    fk_free(wf);
    fk_free(w);
    be->destroy(be);
    return gf / best;
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
    fk_cpu_isa isa;
    fk_cpu_bf16_kernel bk;
    if (argc > 7) parse_kernel(argv[7], &isa, &bk);
    else isa = fk_cpu_isa_detect(), bk = FK_CPU_BF16_NONE;
    int reps = argc > 8 ? atoi(argv[8]) : 3;
    return run_linear(M, K, N, wdt, threads, isa, bk, reps, false) > 0 ? 0 : 1;
}

/* GFLOP/s (QK + PV) of one attention (best of reps); 0 when the backend
 * cannot be made. */
static double run_attention(int64_t L, int64_t H, int64_t D, int threads, fk_cpu_isa isa,
                            fk_cpu_bf16_kernel bk, int reps, bool quiet) {
    fk_backend *be = fk_backend_cpu_create_isa(threads, isa);
    if (!be || (bk != FK_CPU_BF16_NONE && !fk_backend_cpu_set_bf16_kernel(be, bk))) {
        fprintf(stderr, "cannot create backend (isa %s, bf16 kernel %s)\n", fk_cpu_isa_name(isa),
                fk_cpu_bf16_kernel_name(bk));
        if (be) be->destroy(be);
        return 0;
    }
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
    float scale = 1.0f / sqrtf((float)D);
    if (bk != FK_CPU_BF16_NONE) be->attention(be, &to, &tq, &tk, &tv, NULL, scale, false);
    double best = 1e30, best_cpu = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = fk_time(), c0 = cpu_seconds();
        be->attention(be, &to, &tq, &tk, &tv, NULL, scale, false);
        double dt = fk_time() - t0, dc = cpu_seconds() - c0;
        if (dt < best) best = dt;
        if (dc < best_cpu) best_cpu = dc;
    }
    double gf = 4.0 * (double)L * (double)L * (double)(H * D) * 1e-9;
    if (!quiet)
        printf("attention L=%lld H=%lld D=%lld threads=%d kernel=%s: %.4f s, %.1f GFLOP/s (QK+PV; "
               "%.1f GFLOP per CPU-second)\n",
               (long long)L, (long long)H, (long long)D, be->n_threads,
               bk != FK_CPU_BF16_NONE ? fk_cpu_bf16_kernel_name(bk) : fk_cpu_isa_name(isa), best,
               gf / best, gf / best_cpu);
    fk_free(q);
    fk_free(k);
    fk_free(v);
    fk_free(o);
    be->destroy(be);
    return gf / best;
}

static int bench_attention(int argc, char **argv) {
    if (argc < 6) return 2;
    int64_t L = atoll(argv[2]), H = atoll(argv[3]), D = atoll(argv[4]);
    int threads = atoi(argv[5]);
    fk_cpu_isa isa;
    fk_cpu_bf16_kernel bk;
    if (argc > 6) parse_kernel(argv[6], &isa, &bk);
    else isa = fk_cpu_isa_detect(), bk = FK_CPU_BF16_NONE;
    int reps = argc > 7 ? atoi(argv[7]) : 3;
    return run_attention(L, H, D, threads, isa, bk, reps, false) > 0 ? 0 : 1;
}

/* The Flux-mini linears at 512² (joint M = 1536, img 1024, txt 512). */
static int bench_dit(int argc, char **argv) {
    static const struct {
        const char *what;
        int64_t M, K, N;
    } shapes[] = {
        {"double qkv (img)", 1024, 3072, 9216},  {"double qkv (txt)", 512, 3072, 9216},
        {"double proj (img)", 1024, 3072, 3072}, {"double mlp.0 (img)", 1024, 3072, 12288},
        {"double mlp.2 (img)", 1024, 12288, 3072}, {"single linear1", 1536, 3072, 21504},
        {"single linear2", 1536, 15360, 3072},
    };
    int t_lo = 1, t_hi = 2;
    if (argc > 2) t_lo = t_hi = atoi(argv[2]);
    int reps = argc > 3 ? atoi(argv[3]) : 3;
    fk_cpu_bf16_kernel bk = fk_cpu_bf16_kernel_detect();
    if (bk == FK_CPU_BF16_NONE) {
        fprintf(stderr, "no bf16 kernel on this machine\n");
        return 1;
    }
    fk_cpu_isa isa = fk_cpu_isa_detect();
    printf("%-20s %5s %6s %6s %3s | %10s %10s | %s\n", "linear", "M", "K", "N", "thr",
           fk_cpu_isa_name(isa), fk_cpu_bf16_kernel_name(bk), "GFLOP/s, best of reps");
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
        for (int t = t_lo; t <= t_hi; t++) {
            double f32 = run_linear(shapes[i].M, shapes[i].K, shapes[i].N, FK_BF16, t, isa,
                                    FK_CPU_BF16_NONE, reps < 2 ? reps : 2, true);
            double b16 = run_linear(shapes[i].M, shapes[i].K, shapes[i].N, FK_BF16, t, isa, bk,
                                    reps, true);
            printf("%-20s %5lld %6lld %6lld %3d | %10.1f %10.1f | x%.1f\n", shapes[i].what,
                   (long long)shapes[i].M, (long long)shapes[i].K, (long long)shapes[i].N, t, f32,
                   b16, f32 > 0 ? b16 / f32 : 0.0);
            fflush(stdout);
        }
    /* joint attention at 512² (L = 1024 + 512 tokens, 24 heads of 128) */
    for (int t = t_lo; t <= t_hi; t++) {
        double f32 = run_attention(1536, 24, 128, t, isa, FK_CPU_BF16_NONE, 1, true);
        double b16 = run_attention(1536, 24, 128, t, isa, bk, reps, true);
        printf("%-20s %5d %6s %6s %3d | %10.1f %10.1f | x%.1f\n", "attention L H D", 1536, "24",
               "128", t, f32, b16, f32 > 0 ? b16 / f32 : 0.0);
        fflush(stdout);
    }
    return 0;
}

int main(int argc, char **argv) {
    int rc = 2;
    if (argc > 1 && strcmp(argv[1], "linear") == 0) rc = bench_linear(argc, argv);
    else if (argc > 1 && strcmp(argv[1], "attention") == 0) rc = bench_attention(argc, argv);
    else if (argc > 1 && strcmp(argv[1], "dit") == 0) rc = bench_dit(argc, argv);
    if (rc == 2)
        fprintf(stderr, "usage: bench_ops linear M K N WDTYPE THREADS [KERNEL] [REPS]\n"
                        "       bench_ops attention L H D THREADS [KERNEL] [REPS]\n"
                        "       bench_ops dit [THREADS] [REPS]\n");
    return rc;
}
