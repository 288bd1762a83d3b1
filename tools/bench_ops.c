/* bench_ops: timing of the CPU backend's linear and attention (not a test).
 *
 * Built with the project (build/bench_ops; CMake option FK_BUILD_TOOLS), or by
 * hand against a built library, e.g.
 *   cc -O2 -fopenmp -DFK_HAVE_OPENMP=1 -Iinclude -Isrc tools/bench_ops.c \
 *      build/libfluxkit.a -lcjson -lutf8proc -lpng -lm -o build/bench_ops
 * Run:
 *   build/bench_ops linear M K N WDTYPE THREADS [KERNEL] [REPS]
 *   build/bench_ops attention L H D THREADS [KERNEL] [REPS]
 *   build/bench_ops dit [THREADS] [REPS]
 *   build/bench_ops gemv [WDTYPE] [THREADS] [REPS]
 *   build/bench_ops conv B CI H W CO KSIZE STRIDE THREADS [KERNEL] [REPS]
 *   build/bench_ops vaeconv [RES] [THREADS] [REPS]
 *   build/bench_ops blas [THREADS] [REPS] [ISA|all]   (needs -DFK_BENCH_OPENBLAS, below)
 * WDTYPE: F32, BF16, F16, F8_E4M3, F8_E5M2; ISA: portable, avx2, avx512
 * (default: the best one); KERNEL: an ISA (f32 reference) or a bf16 kernel,
 * amx or avx512bf16 (precision mode FK_PREC_BF16). `dit`: the Flux-mini
 * linears at 512² (bf16 weights) and the joint attention, f32 reference vs
 * the best bf16 kernel, with THREADS threads (default: 1 and 2). Prints the
 * best of REPS runs (default 3; the f32 reference: at most 2): other
 * processes on the machine only slow runs down.
 * `linear` environment: FK_BENCH_COPIES=n times each call on the next of n
 * copies of the weight and input (n · their bytes above the last-level cache:
 * read from DRAM, as in a denoising step); FK_BENCH_WCACHE=1 pre-packs the
 * weight(s) (be->cache_weight); FK_BENCH_TRACE=1 prints each call's GFLOP/s
 * to stderr. Besides the best run it prints the mean of all runs: on a shared
 * machine single calls vary, and the mean is what a step sees.
 * `gemv`: the small-M path (cpu_gemv.c) against the blocked GEMM it replaces
 * (fk_backend_cpu_set_gemv off) on the FLUX modulation / embedder shapes, M =
 * 1, 2 (and 4, 8, 16 on the largest), WDTYPE weights (default BF16), THREADS
 * threads (default 1 and 2), best of REPS (default 5). Each timed call reads
 * a different copy of the weights (>= 1 GB in all), so they come from DRAM as
 * in a denoising step, not from the last-level cache. GB/s counts weight
 * bytes.
 * `conv`: one conv2d, BF16 weights, pad KSIZE/2 (stride 2: the downsampler's
 * right/bottom pad). `vaeconv`: every conv shape of the FLUX autoencoder's
 * decoder at RES² (default 512), f32 reference vs AMX bf16, GFLOP/s and the
 * decoder's total conv time (each shape's best time × its count).
 *
 * `blas [THREADS] [REPS] [ISA]`: the f32 GEMM (fk_cpu_gemm through the linear
 * op, f32 reference, no bf16 mode) against OpenBLAS cblas_sgemm on the DiT
 * linear shapes, side by side in one run, interleaved rep by rep: OpenBLAS
 * with f32 weights (row-major, B transposed, openblas_set_num_threads(THREADS)),
 * fluxkit with f32 weights and with bf16 weights (widened while packed), on
 * the ISA path(s) ISA: avx512, avx2, or all (default: the class of the core
 * OpenBLAS chose at load, avx2 for Haswell/Zen kernels, else avx512).
 * GFLOP/s, best of REPS (default 3), THREADS default 2, and the ratio to
 * OpenBLAS. OpenBLAS picks its core type when loaded; compare each ISA class
 * against the same class by running the tool twice:
 *   OMP_WAIT_POLICY=PASSIVE build/bench_ops blas 2 3            (AVX-512 kernels)
 *   OMP_WAIT_POLICY=PASSIVE OPENBLAS_CORETYPE=Haswell build/bench_ops blas 2 3  (AVX2)
 * (PASSIVE: idle OpenMP threads do not spin beside OpenBLAS's threads; and
 * after each OpenBLAS call the tool sleeps 0.2 s, as OpenBLAS's idle threads
 * spin for ~0.1 s, which would take a core from fluxkit.) Only this mode
 * needs OpenBLAS; build with it:
 *   cc -O2 -fopenmp -DFK_HAVE_OPENMP=1 -DFK_BENCH_OPENBLAS $(pkg-config --cflags openblas) \
 *      -Iinclude -Isrc tools/bench_ops.c build/libfluxkit.a -lcjson -lutf8proc -lpng -ljpeg \
 *      $(pkg-config --libs openblas) -lm -o build/bench_ops
 * The load average is printed before and after (the machine may be shared). */
#include "backend/cpu/cpu.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#ifdef FK_BENCH_OPENBLAS
#include <cblas.h>
/* OpenBLAS extensions (declared in its cblas.h; repeated for other cblas.h) */
void openblas_set_num_threads(int num_threads);
char *openblas_get_corename(void);
#endif

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
    /* FK_BENCH_COPIES=n (default 1): n copies of the weight and the input,
     * each timed call on the next one, so with n · (weight + input bytes)
     * well above the last-level cache every call reads them from DRAM, as in
     * a denoising step (where each linear's weights are read once per step) */
    int copies = getenv("FK_BENCH_COPIES") ? atoi(getenv("FK_BENCH_COPIES")) : 1;
    if (copies < 1 || copies > 256) copies = 1;
    float *x = fk_alloc((size_t)(M * K) * 4 * (size_t)copies), *y = fk_alloc((size_t)(M * N) * 4);
    float *wf = fk_alloc((size_t)(N * K) * 4);
    const size_t wbytes = (size_t)(N * K) * fk_dtype_size(wdt);
    char *w = fk_alloc(wbytes * (size_t)copies);
    uint64_t s = 1;
    for (int64_t i = 0; i < M * K * copies; i++) x[i] = frand(&s);
    for (int64_t i = 0; i < N * K; i++) wf[i] = frand(&s) * 0.05f;
    fk_convert_from_f32(w, wdt, wf, (size_t)(N * K));
    for (int c = 1; c < copies; c++) memcpy(w + (size_t)c * wbytes, w, wbytes);
    fk_tensor tx = fk_view2(FK_F32, x, M, K), ty = fk_view2(FK_F32, y, M, N);
    fk_tensor tw = fk_view2(wdt, w, N, K);
    fk_free(wf);
    wf = NULL;
    if (copies > 1) reps = reps > copies ? reps : copies;
    /* FK_BENCH_WCACHE=1: the weight pre-packed once (be->cache_weight), as
     * with `--weight-cache on` */
    if (getenv("FK_BENCH_WCACHE") && atoi(getenv("FK_BENCH_WCACHE")) > 0)
        for (int c = 0; c < copies; c++) { /* every copy */
            fk_tensor tc = fk_view2(wdt, w + (size_t)c * wbytes, N, K);
            (void)be->cache_weight(be, &tc);
        }
    /* bf16: one untimed call grows the workspace (first-touch page faults) */
    if (bk != FK_CPU_BF16_NONE) be->linear(be, &ty, &tx, &tw, NULL);
    double best = 1e30, best_cpu = 1e30, sum = 0;
    const bool trace = getenv("FK_BENCH_TRACE") != NULL;
    for (int r = 0; r < reps; r++) {
        if (copies > 1) {
            tx.data = x + (size_t)((r + 1) % copies) * (size_t)(M * K);
            tw.data = w + (size_t)((r + 1) % copies) * wbytes;
        }
        double t0 = fk_time(), c0 = cpu_seconds();
        be->linear(be, &ty, &tx, &tw, NULL);
        double dt = fk_time() - t0, dc = cpu_seconds() - c0;
        sum += dt;
        if (trace) fprintf(stderr, "%.1f ", 2e-9 * (double)M * (double)N * (double)K / dt);
        if (dt < best) best = dt;
        if (dc < best_cpu) best_cpu = dc;
    }
    double gf = 2.0 * (double)M * (double)N * (double)K * 1e-9;
    if (!quiet)
        printf("linear M=%lld K=%lld N=%lld w=%s threads=%d kernel=%s: %.4f s, %.1f GFLOP/s "
               "(%.1f GFLOP per CPU-second; mean of %d: %.1f GFLOP/s)\n",
               (long long)M, (long long)K, (long long)N, fk_dtype_name(wdt), be->n_threads,
               bk != FK_CPU_BF16_NONE ? fk_cpu_bf16_kernel_name(bk) : fk_cpu_isa_name(isa), best,
               gf / best, gf / best_cpu, reps, gf * reps / sum);
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
    /* FK_BENCH_BF16=1: q, k, v and out in bf16, as FLUX hands them over (bf16 mode) */
    const char *bfe = getenv("FK_BENCH_BF16");
    if (bfe && atoi(bfe) && bk != FK_CPU_BF16_NONE) {
        fk_tensor *ts[4] = {&tq, &tk, &tv, &to};
        for (int i = 0; i < 4; i++) {
            if (i < 3) fk_convert_from_f32(ts[i]->data, FK_BF16, ts[i]->data, n);
            ts[i]->dtype = FK_BF16; /* converted in place (the first half of each buffer) */
        }
    }
    float scale = 1.0f / sqrtf((float)D);
    if (bk != FK_CPU_BF16_NONE) be->attention(be, &to, &tq, &tk, &tv, NULL, scale, false);
    double best = 1e30, best_cpu = 1e30, sum = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = fk_time(), c0 = cpu_seconds();
        be->attention(be, &to, &tq, &tk, &tv, NULL, scale, false);
        double dt = fk_time() - t0, dc = cpu_seconds() - c0;
        sum += dt;
        if (dt < best) best = dt;
        if (dc < best_cpu) best_cpu = dc;
    }
    double gf = 4.0 * (double)L * (double)L * (double)(H * D) * 1e-9;
    if (!quiet)
        printf("attention L=%lld H=%lld D=%lld threads=%d kernel=%s: %.4f s, %.1f GFLOP/s (QK+PV; "
               "%.1f GFLOP per CPU-second; mean of %d: %.1f GFLOP/s)\n",
               (long long)L, (long long)H, (long long)D, be->n_threads,
               bk != FK_CPU_BF16_NONE ? fk_cpu_bf16_kernel_name(bk) : fk_cpu_isa_name(isa), best,
               gf / best, gf / best_cpu, reps, gf * reps / sum);
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

/* Seconds of one conv2d (best of reps; bf16 weights); < 0 when the backend
 * or the buffers cannot be made. */
static double run_conv(int64_t B, int64_t Ci, int64_t H, int64_t W, int64_t Co, int64_t k,
                       int stride, int threads, fk_cpu_isa isa, fk_cpu_bf16_kernel bk, int reps) {
    fk_backend *be = fk_backend_cpu_create_isa(threads, isa);
    if (!be || (bk != FK_CPU_BF16_NONE && !fk_backend_cpu_set_bf16_kernel(be, bk))) {
        if (be) be->destroy(be);
        return -1;
    }
    int pad[4] = {(int)k / 2, (int)k / 2, (int)k / 2, (int)k / 2};
    if (stride == 2) pad[0] = pad[1] = 0, pad[2] = pad[3] = 1;
    const int64_t Ho = (H + pad[0] + pad[2] - k) / stride + 1;
    const int64_t Wo = (W + pad[1] + pad[3] - k) / stride + 1;
    const int64_t nx = B * Ci * H * W, nw = Co * Ci * k * k, ny = B * Co * Ho * Wo;
    float *x = fk_alloc((size_t)nx * 4), *y = fk_alloc((size_t)ny * 4);
    float *wf = fk_alloc((size_t)nw * 4);
    uint16_t *w = fk_alloc((size_t)nw * 2);
    float *bias = fk_alloc((size_t)Co * 4);
    double best = -1;
    if (x && y && wf && w && bias) {
        uint64_t s = 5;
        for (int64_t i = 0; i < nx; i++) x[i] = frand(&s);
        for (int64_t i = 0; i < nw; i++) wf[i] = frand(&s) * 0.05f;
        for (int64_t i = 0; i < Co; i++) bias[i] = frand(&s) * 0.1f;
        fk_convert_from_f32(w, FK_BF16, wf, (size_t)nw);
        fk_tensor tx = fk_view4(FK_F32, x, B, Ci, H, W), ty = fk_view4(FK_F32, y, B, Co, Ho, Wo);
        fk_tensor tw = fk_view4(FK_BF16, w, Co, Ci, k, k), tb = fk_view1(FK_F32, bias, Co);
        be->conv2d(be, &ty, &tx, &tw, &tb, stride, pad); /* warm-up (first-touch) */
        best = 1e30;
        for (int r = 0; r < reps; r++) {
            double t0 = fk_time();
            be->conv2d(be, &ty, &tx, &tw, &tb, stride, pad);
            double dt = fk_time() - t0;
            if (dt < best) best = dt;
        }
    }
    fk_free(x), fk_free(y), fk_free(wf), fk_free(w), fk_free(bias);
    be->destroy(be);
    return best;
}

static int bench_conv(int argc, char **argv) {
    if (argc < 10) return 2;
    int64_t B = atoll(argv[2]), Ci = atoll(argv[3]), H = atoll(argv[4]), W = atoll(argv[5]);
    int64_t Co = atoll(argv[6]), k = atoll(argv[7]);
    int stride = atoi(argv[8]), threads = atoi(argv[9]);
    fk_cpu_isa isa = fk_cpu_isa_detect();
    fk_cpu_bf16_kernel bk = FK_CPU_BF16_NONE;
    if (argc > 10) parse_kernel(argv[10], &isa, &bk);
    int reps = argc > 11 ? atoi(argv[11]) : 3;
    double t = run_conv(B, Ci, H, W, Co, k, stride, threads, isa, bk, reps);
    if (t < 0) return 1;
    const int64_t Ho = stride == 2 ? H / 2 : H, Wo = stride == 2 ? W / 2 : W;
    double gf = 2.0 * (double)(B * Co * Ho * Wo) * (double)(Ci * k * k) * 1e-9;
    printf("conv B=%lld %lld->%lld %lldx%lld k%lld s%d threads=%d kernel=%s: %.4f s, %.1f GFLOP/s\n",
           (long long)B, (long long)Ci, (long long)Co, (long long)H, (long long)W, (long long)k,
           stride, threads,
           bk != FK_CPU_BF16_NONE ? fk_cpu_bf16_kernel_name(bk) : fk_cpu_isa_name(isa), t, gf / t);
    return 0;
}

/* The FLUX autoencoder decoder's convolutions at res² (latent res/8). */
static int bench_vaeconv(int argc, char **argv) {
    const int64_t res = argc > 2 ? atoll(argv[2]) : 512, h = res / 8;
    const int threads = argc > 3 ? atoi(argv[3]) : 2, reps = argc > 4 ? atoi(argv[4]) : 2;
    const struct {
        int64_t ci, co, k, side, count;
    } sh[] = {
        {16, 512, 3, h, 1},       {512, 512, 3, h, 10},      {512, 512, 3, 2 * h, 7},
        {512, 512, 3, 4 * h, 1},  {512, 256, 3, 4 * h, 1},   {256, 256, 3, 4 * h, 5},
        {512, 256, 1, 4 * h, 1},  {256, 256, 3, 8 * h, 1},   {256, 128, 3, 8 * h, 1},
        {128, 128, 3, 8 * h, 5},  {256, 128, 1, 8 * h, 1},   {128, 3, 3, 8 * h, 1},
    };
    fk_cpu_isa isa = fk_cpu_isa_detect();
    printf("decoder convs at %lld², %d threads, best of %d (f32: 1); GFLOP/s\n", (long long)res,
           threads, reps);
    printf("%5s %5s %2s %5s %3s | %9s %9s | %8s %8s | %s\n", "Ci", "Co", "k", "side", "n", "f32",
           "amx", "f32 s", "amx s", "x");
    double tf = 0, tb = 0, gft = 0;
    for (size_t i = 0; i < sizeof(sh) / sizeof(sh[0]); i++) {
        double f = run_conv(1, sh[i].ci, sh[i].side, sh[i].side, sh[i].co, sh[i].k, 1, threads, isa,
                            FK_CPU_BF16_NONE, 1);
        double b = run_conv(1, sh[i].ci, sh[i].side, sh[i].side, sh[i].co, sh[i].k, 1, threads, isa,
                            FK_CPU_BF16_AMX, reps);
        if (f < 0 || b < 0) return 1;
        double gf = 2.0 * (double)(sh[i].co * sh[i].side * sh[i].side) *
                    (double)(sh[i].ci * sh[i].k * sh[i].k) * 1e-9;
        printf("%5lld %5lld %2lld %5lld %3lld | %9.1f %9.1f | %8.4f %8.4f | x%.1f\n",
               (long long)sh[i].ci, (long long)sh[i].co, (long long)sh[i].k, (long long)sh[i].side,
               (long long)sh[i].count, gf / f, gf / b, f, b, f / b);
        fflush(stdout);
        tf += f * (double)sh[i].count;
        tb += b * (double)sh[i].count;
        gft += gf * (double)sh[i].count;
    }
    printf("all decoder convs (%.0f GFLOP): f32 %.2f s (%.1f GFLOP/s), amx %.2f s (%.1f GFLOP/s), "
           "x%.1f\n",
           gft, tf, gft / tf, tb, gft / tb, tf / tb);
    return 0;
}

/* Seconds per call of y (M, N) = x (M, K) · w (N, K)ᵀ through fk_cpu_gemm,
 * small-M path on or off: mean over one pass through the ncopy weight
 * copies, best of reps passes. */
static double time_gemv(fk_backend *be, bool gemv, int64_t M, int64_t K, int64_t N, fk_dtype wdt,
                        void *const *w, int ncopy, const float *x, float *y, int reps) {
    fk_backend_cpu_set_gemv(be, gemv);
    fk_cpu_gemm(be, M, N, K, x, K, w[0], wdt, K, NULL, FK_F32, y, N); /* warm-up */
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = fk_time();
        for (int i = 0; i < ncopy; i++)
            fk_cpu_gemm(be, M, N, K, x, K, w[i], wdt, K, NULL, FK_F32, y, N);
        double dt = (fk_time() - t0) / ncopy;
        if (dt < best) best = dt;
    }
    return best;
}

static int bench_gemv(int argc, char **argv) {
    static const struct {
        const char *what;
        int64_t K, N;
    } shapes[] = {
        {"double mod (img/txt)", 3072, 18432}, {"single mod", 3072, 9216},
        {"final adaLN", 3072, 6144},            {"embedder 3072", 3072, 3072},
        {"embedder in 256", 256, 3072},
    };
    fk_dtype wdt = FK_BF16;
    if (argc > 2 && (!fk_dtype_parse(argv[2], &wdt) || !fk_dtype_is_float(wdt) || wdt == FK_F64)) {
        fprintf(stderr, "bad dtype %s\n", argv[2]);
        return 2;
    }
    int t_lo = 1, t_hi = 2;
    if (argc > 3) t_lo = t_hi = atoi(argv[3]);
    int reps = argc > 4 ? atoi(argv[4]) : 5;
    fk_cpu_isa isa = fk_cpu_isa_detect();
    size_t esz = fk_dtype_size(wdt);
    printf("gemv: isa %s, weights %s, GB/s of weight bytes, mean of a pass over >= 1 GB of "
           "weight copies, best of %d\n",
           fk_cpu_isa_name(isa), fk_dtype_name(wdt), reps);
    printf("%-20s %3s %6s %6s %3s | %9s %9s | %9s %9s | %7s %7s | %s\n", "linear", "M", "K", "N",
           "thr", "old ms", "new ms", "old GB/s", "new GB/s", "old GF/s", "new GF/s", "speed-up");
    for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++) {
        int64_t K = shapes[si].K, N = shapes[si].N;
        size_t bytes = (size_t)(N * K) * esz;
        int ncopy = (int)((((size_t)1 << 30) + bytes - 1) / bytes);
        if (ncopy > 64) ncopy = 64;
        void *w[64];
        float *wf = fk_alloc((size_t)(N * K) * 4);
        uint64_t s = 3;
        for (int64_t i = 0; i < N * K; i++) wf[i] = frand(&s) * 0.05f;
        for (int i = 0; i < ncopy; i++) {
            w[i] = fk_alloc(bytes);
            if (!w[i]) {
                fprintf(stderr, "out of memory\n");
                return 1;
            }
            if (i == 0) fk_convert_from_f32(w[0], wdt, wf, (size_t)(N * K));
            else memcpy(w[i], w[0], bytes);
        }
        fk_free(wf);
        static const int64_t ms_all[] = {1, 2, 4, 8, 16};
        int nm = si == 0 ? 5 : 2;
        float *x = fk_alloc((size_t)(16 * K) * 4), *y = fk_alloc((size_t)(16 * N) * 4);
        for (int64_t i = 0; i < 16 * K; i++) x[i] = frand(&s);
        for (int mi = 0; mi < nm; mi++)
            for (int t = t_lo; t <= t_hi; t++) {
                int64_t M = ms_all[mi];
                fk_backend *be = fk_backend_cpu_create_isa(t, isa);
                if (!be) return 1;
                double old =
                    time_gemv(be, false, M, K, N, wdt, w, ncopy, x, y, reps < 2 ? reps : 2);
                double neu = time_gemv(be, true, M, K, N, wdt, w, ncopy, x, y, reps);
                double gb = (double)bytes * 1e-9, gf = 2.0 * (double)(M * N * K) * 1e-9;
                printf("%-20s %3lld %6lld %6lld %3d | %9.3f %9.3f | %9.2f %9.2f | %7.1f %7.1f "
                       "| x%.1f\n",
                       shapes[si].what, (long long)M, (long long)K, (long long)N, be->n_threads,
                       old * 1e3, neu * 1e3, gb / old, gb / neu, gf / old, gf / neu, old / neu);
                fflush(stdout);
                be->destroy(be);
            }
        for (int i = 0; i < ncopy; i++) fk_free(w[i]);
        fk_free(x);
        fk_free(y);
    }
    return 0;
}

#ifdef FK_BENCH_OPENBLAS
/* The load averages (1, 5, 15 min) as text. */
static void load_avg(char *buf, size_t n) {
    snprintf(buf, n, "?");
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f) return;
    double a = 0, b = 0, c = 0;
    if (fscanf(f, "%lf %lf %lf", &a, &b, &c) == 3) snprintf(buf, n, "%.2f %.2f %.2f", a, b, c);
    fclose(f);
}

/* Busy CPU seconds of the whole machine so far (all processes, /proc/stat). */
static double machine_busy_seconds(void) {
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return 0;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 8) return 0;
    /* user nice system [idle iowait] irq softirq steal */
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

/* The DiT linears of the `dit` mode, f32 GEMM vs OpenBLAS sgemm. */
static int bench_blas(int argc, char **argv) {
    static const struct {
        const char *what;
        int64_t M, K, N;
    } shapes[] = {
        {"double qkv (img)", 1024, 3072, 9216},  {"double qkv (txt)", 512, 3072, 9216},
        {"double proj (img)", 1024, 3072, 3072}, {"double mlp.0 (img)", 1024, 3072, 12288},
        {"double mlp.2 (img)", 1024, 12288, 3072}, {"single linear1", 1536, 3072, 21504},
        {"single linear2", 1536, 15360, 3072},
    };
    const int threads = argc > 2 ? atoi(argv[2]) : 2, reps = argc > 3 ? atoi(argv[3]) : 3;
    const char *core = openblas_get_corename();
    bool core_avx2 = core && (strstr(core, "aswell") || strstr(core, "Zen") || strstr(core, "ZEN"));
    fk_cpu_isa isas[2];
    int nisa = 0;
    if (argc > 4 && strcmp(argv[4], "all") == 0) {
        if (fk_cpu_isa_available(FK_CPU_ISA_AVX512)) isas[nisa++] = FK_CPU_ISA_AVX512;
        isas[nisa++] = FK_CPU_ISA_AVX2;
    } else if (argc > 4) {
        isas[nisa++] = parse_isa(argv[4]);
    } else {
        isas[nisa++] = core_avx2 || !fk_cpu_isa_available(FK_CPU_ISA_AVX512) ? FK_CPU_ISA_AVX2
                                                                             : FK_CPU_ISA_AVX512;
    }
    fk_backend *be[2] = {NULL, NULL};
    for (int i = 0; i < nisa; i++)
        if (!(be[i] = fk_backend_cpu_create_isa(threads, isas[i]))) {
            fprintf(stderr, "cannot create the backend (isa %s)\n", fk_cpu_isa_name(isas[i]));
            return 1;
        }
    openblas_set_num_threads(threads);
    char la[64];
    load_avg(la, sizeof(la));
    const double busy0 = machine_busy_seconds(), self0 = cpu_seconds(), wall0 = fk_time();
    printf("f32 GEMM vs OpenBLAS sgemm: OpenBLAS core %s, %d threads, best of %d, GFLOP/s "
           "(ratio to OpenBLAS); load average before: %s\n",
           core ? core : "?", threads, reps, la);
    printf("%-20s %5s %6s %6s | %8s", "linear", "M", "K", "N", "openblas");
    for (int i = 0; i < nisa; i++)
        printf(" | %6s f32 w  (ratio) %6s bf16 w (ratio)", fk_cpu_isa_name(isas[i]),
               fk_cpu_isa_name(isas[i]));
    printf("\n");
    double lsum[1 + 2 * 2] = {0}; /* log-ratio sums for the geometric means */
    const int nshape = (int)(sizeof(shapes) / sizeof(shapes[0]));
    for (int si = 0; si < nshape; si++) {
        const int64_t M = shapes[si].M, K = shapes[si].K, N = shapes[si].N;
        float *x = fk_alloc((size_t)(M * K) * 4), *w = fk_alloc((size_t)(N * K) * 4);
        uint16_t *wb = fk_alloc((size_t)(N * K) * 2);
        float *yb = fk_alloc((size_t)(M * N) * 4), *y = fk_alloc((size_t)(M * N) * 4);
        if (!x || !w || !wb || !yb || !y) {
            fprintf(stderr, "out of memory\n");
            return 1;
        }
        uint64_t s = 11;
        for (int64_t i = 0; i < M * K; i++) x[i] = frand(&s);
        for (int64_t i = 0; i < N * K; i++) w[i] = frand(&s) * 0.05f;
        /* bf16 weights; the f32 weights are their exact widening (same products) */
        fk_convert_from_f32(wb, FK_BF16, w, (size_t)(N * K));
        fk_convert_to_f32(w, wb, FK_BF16, (size_t)(N * K));
        fk_tensor tx = fk_view2(FK_F32, x, M, K), ty = fk_view2(FK_F32, y, M, N);
        fk_tensor tw = fk_view2(FK_F32, w, N, K), twb = fk_view2(FK_BF16, wb, N, K);
        /* warm-up (first touch of the outputs and the scratch) and a sanity check */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, 1.0f, x,
                    (int)K, w, (int)K, 0.0f, yb, (int)N);
        usleep(200000);
        double maxd = 0;
        for (int i = 0; i < nisa; i++) {
            be[i]->linear(be[i], &ty, &tx, &tw, NULL);
            for (int64_t j = 0; j < M * N; j++) {
                double d = fabs((double)y[j] - (double)yb[j]);
                if (d > maxd) maxd = d;
            }
        }
        double best[1 + 2 * 2];
        for (int j = 0; j < 1 + 2 * nisa; j++) best[j] = 1e30;
        for (int r = 0; r < reps; r++) { /* interleaved: load spikes hit every column alike */
            double t0 = fk_time();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, 1.0f, x,
                        (int)K, w, (int)K, 0.0f, yb, (int)N);
            double dt = fk_time() - t0;
            if (dt < best[0]) best[0] = dt;
            /* OpenBLAS's idle threads spin (sched_yield) ~100 ms after a call,
             * taking a core from whatever runs next: let them fall asleep */
            usleep(200000);
            for (int i = 0; i < nisa; i++)
                for (int b16 = 0; b16 < 2; b16++) {
                    t0 = fk_time();
                    be[i]->linear(be[i], &ty, &tx, b16 ? &twb : &tw, NULL);
                    dt = fk_time() - t0;
                    if (dt < best[1 + 2 * i + b16]) best[1 + 2 * i + b16] = dt;
                }
        }
        const double gf = 2.0 * (double)M * (double)N * (double)K * 1e-9;
        printf("%-20s %5lld %6lld %6lld | %8.1f", shapes[si].what, (long long)M, (long long)K,
               (long long)N, gf / best[0]);
        for (int j = 1; j < 1 + 2 * nisa; j++) {
            printf(" %s %12.1f (%5.2f)", j % 2 ? "|" : "", gf / best[j], best[0] / best[j]);
            lsum[j] += log(best[0] / best[j]);
        }
        if (maxd > 1e-3) printf("  (max |fluxkit - openblas| %.3g!)", maxd);
        printf("\n");
        fflush(stdout);
        fk_free(x), fk_free(w), fk_free(wb), fk_free(yb), fk_free(y);
    }
    printf("%-20s %5s %6s %6s | %8s", "geometric mean", "", "", "", "");
    for (int j = 1; j < 1 + 2 * nisa; j++)
        printf(" %s %12s (%5.2f)", j % 2 ? "|" : "", "", exp(lsum[j] / nshape));
    load_avg(la, sizeof(la));
    const double others = (machine_busy_seconds() - busy0) - (cpu_seconds() - self0);
    printf("\nload average after: %s; CPUs busy with other processes during the run: %.2f "
           "(of %ld)\n",
           la, others / (fk_time() - wall0), sysconf(_SC_NPROCESSORS_ONLN));
    for (int i = 0; i < nisa; i++) be[i]->destroy(be[i]);
    return 0;
}
#else
static int bench_blas(int argc, char **argv) {
    (void)argc, (void)argv;
    fprintf(stderr, "bench_ops was built without OpenBLAS (-DFK_BENCH_OPENBLAS): see the header\n");
    return 1;
}
#endif

int main(int argc, char **argv) {
    int rc = 2;
    if (argc > 1 && strcmp(argv[1], "linear") == 0) rc = bench_linear(argc, argv);
    else if (argc > 1 && strcmp(argv[1], "attention") == 0) rc = bench_attention(argc, argv);
    else if (argc > 1 && strcmp(argv[1], "dit") == 0) rc = bench_dit(argc, argv);
    else if (argc > 1 && strcmp(argv[1], "conv") == 0) rc = bench_conv(argc, argv);
    else if (argc > 1 && strcmp(argv[1], "vaeconv") == 0) rc = bench_vaeconv(argc, argv);
    else if (argc > 1 && strcmp(argv[1], "gemv") == 0) rc = bench_gemv(argc, argv);
    else if (argc > 1 && strcmp(argv[1], "blas") == 0) rc = bench_blas(argc, argv);
    if (rc == 2)
        fprintf(stderr, "usage: bench_ops linear M K N WDTYPE THREADS [KERNEL] [REPS]\n"
                        "       bench_ops attention L H D THREADS [KERNEL] [REPS]\n"
                        "       bench_ops dit [THREADS] [REPS]\n"
                        "       bench_ops gemv [WDTYPE] [THREADS] [REPS]\n"
                        "       bench_ops conv B CI H W CO KSIZE STRIDE THREADS [KERNEL] [REPS]\n"
                        "       bench_ops vaeconv [RES] [THREADS] [REPS]\n"
                        "       bench_ops blas [THREADS] [REPS] [ISA|all]\n");
    return rc;
}
