/* amx_ceiling: what the AMX bf16 micro-kernel of cpu_amx.c can reach on one
 * core when the memory system is out of the way, step by step (not a test;
 * the numbers behind the "ceiling" entries of docs/PERF.md).
 *
 * Every mode runs the same 2 × 2-tile micro-kernel as cpu_amx.c (C 32 × 32
 * in tiles 0..3, two A strips and two B strips loaded per k step of 32) on
 * operands that are already packed, so no conversion, no packing and no
 * output store is timed: only tile arithmetic and the caches feeding it.
 *
 *   amx_ceiling peak
 *       tdpbf16ps on resident tiles (no loads): the unit's peak.
 *   amx_ceiling l1
 *       the micro-kernel on one 32 × 256 A pair and one B pair, over and
 *       over: every tile load hits L1.
 *   amx_ceiling resident MC NC KC
 *       the driver's inner loops (for each 32-row A pair: for each 32-column
 *       B pair: micro-kernel over KC, accumulating into a C panel MC × NC
 *       through memory) on one A block (MC × KC) and one B block (NC × KC)
 *       that stay in L2: the kernel fed from L2.
 *   amx_ceiling stream M K MC NC KC [PF]
 *       the whole driver order (B panels of NC columns × all K; for each
 *       MC-row block, for each KC block: the inner loops above) over a
 *       packed A of M × K: A and B blocks come from L3 / DRAM; PF = 1
 *       (default) prefetches the next step's blocks into L2 as cpu_amx.c
 *       does, PF = 0 relies on the hardware prefetchers.
 * Prints TFLOP/s, best of 5 runs, one thread (run it on a quiet machine;
 * two copies at once show the two-core figures).
 *
 * Build (x86-64 Linux with AMX; gcc >= 11):
 *   cc -O2 -mamx-tile -mamx-bf16 -mavx512f tools/amx_ceiling.c -o build/amx_ceiling */
#define _GNU_SOURCE
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Zeroed memory in 2 MB pages where the kernel allows (as the workspace). */
static void *huge_alloc(size_t n) {
    n = (n + ((size_t)2 << 20) - 1) & ~(((size_t)2 << 20) - 1);
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    madvise(p, n, MADV_HUGEPAGE);
    return p;
}

/* bf16 values of moderate size (never zero: zeros can run faster). */
static void fill_bf16(uint16_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = (uint16_t)(0x3f80u ^ (i * 2654435761u >> 25 & 0x7fu));
}

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tilecfg;

static void tiles_on(void) {
    tilecfg c;
    memset(&c, 0, sizeof(c));
    c.palette = 1;
    for (int i = 0; i < 8; i++) c.colsb[i] = 64, c.rows[i] = 16;
    __asm__ volatile("ldtilecfg %0" : : "m"(c) : "memory");
}

/* c (32 × 32 f32, row stride ldc) (+)= A strips a, a + astr × B strips b,
 * b + bstr over nt k steps; pf: lines prefetched into L2, npf per k step. */
__attribute__((noinline)) static void micro(int64_t nt, const uint16_t *a, int64_t astr,
                                            const uint16_t *b, int64_t bstr, float *c,
                                            int64_t ldc, int acc, const char *pf, int npf) {
    const size_t cs = (size_t)ldc * 4;
    if (acc) {
        _tile_loadd(0, c, cs);
        _tile_loadd(1, c + 16, cs);
        _tile_loadd(2, c + 16 * ldc, cs);
        _tile_loadd(3, c + 16 * ldc + 16, cs);
    } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    }
    const uint16_t *a1 = a + astr, *b1 = b + bstr;
    for (int64_t t = 0; t < nt; t++) {
        _tile_loadd(4, a + t * 512, 64);
        _tile_loadd(6, b + t * 512, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_loadd(7, b1 + t * 512, 64);
        _tile_dpbf16ps(1, 4, 7);
        _tile_loadd(5, a1 + t * 512, 64);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
        for (int q = 0; q < npf; q++) _mm_prefetch(pf + (t * npf + q) * 64, _MM_HINT_T1);
    }
    _tile_stored(0, c, cs);
    _tile_stored(1, c + 16, cs);
    _tile_stored(2, c + 16 * ldc, cs);
    _tile_stored(3, c + 16 * ldc + 16, cs);
}

__attribute__((noinline)) static void peak_loop(int64_t n) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_zero(4);
    _tile_zero(5);
    _tile_zero(6);
    _tile_zero(7);
    for (int64_t i = 0; i < n; i++) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
}

/* The driver's inner loops over one (MC × KC) A block and (NC × KC) B block
 * into the C panel (MC × NC, 32 × 32 blocks contiguous); prefetches the
 * bytes [pxa, pxa + xa) then [pxb, pxb + xb) spread over the calls. */
static void block_step(const uint16_t *ab, const uint16_t *bb, float *C, int MC, int NC, int KC,
                       int acc, const char *pxa, int64_t xa, const char *pxb, int64_t xb) {
    const int64_t nt = KC / 32, str = 16 * (int64_t)KC;
    const int64_t ncall = (int64_t)(MC / 32) * (NC / 32), lines = (xa + xb) / 64;
    const int per = (int)((lines + ncall * nt - 1) / (ncall * nt));
    int64_t q = 0;
    for (int ir = 0; ir < MC; ir += 32)
        for (int jr = 0; jr < NC; jr += 32, q++) {
            const int64_t off = q * per * nt * 64;
            const char *pf = NULL;
            if (off < xa) pf = pxa + off;
            else if (off < xa + xb) pf = pxb + (off - xa);
            micro(nt, ab + (ir / 16) * str, str, bb + (jr / 16) * str, str,
                  C + ((ir / 32) * (NC / 32) + jr / 32) * 1024, 32, acc, pf, pf ? per : 0);
        }
}

static void usage(void) {
    fprintf(stderr, "usage: amx_ceiling peak | l1 | resident MC NC KC | stream M K MC NC KC [PF]\n"
                    "       (MC, NC, KC, M, K multiples of 32; see the header)\n");
    exit(2);
}

static int arg_mult32(const char *s) {
    int v = atoi(s);
    if (v < 32 || v % 32 || v > (1 << 16)) usage();
    return v;
}

int main(int argc, char **argv) {
    if (argc < 2) usage();
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)) {
        perror("arch_prctl(ARCH_REQ_XCOMP_PERM): no AMX here");
        return 1;
    }
    tiles_on();
    const char *mode = argv[1];
    double best = 1e30, flops = 0;
    char what[160];
    if (strcmp(mode, "peak") == 0) {
        const int64_t n = 1 << 20;
        for (int r = 0; r < 5; r++) {
            double t0 = now();
            peak_loop(n);
            double dt = now() - t0;
            if (dt < best) best = dt;
        }
        flops = 4.0 * (double)n * 16 * 16 * 32 * 2;
        snprintf(what, sizeof(what), "peak (resident tiles)");
    } else if (strcmp(mode, "l1") == 0) {
        const int KC = 256;
        uint16_t *a = huge_alloc(32 * KC * 2), *b = huge_alloc(32 * KC * 2);
        float *c = huge_alloc(32 * 32 * 4);
        fill_bf16(a, 32 * KC);
        fill_bf16(b, 32 * KC);
        const int reps = 20000;
        for (int r = 0; r < 5; r++) {
            double t0 = now();
            for (int i = 0; i < reps; i++) micro(KC / 32, a, 16 * KC, b, 16 * KC, c, 32, i > 0, NULL, 0);
            double dt = now() - t0;
            if (dt < best) best = dt;
        }
        flops = (double)reps * 32 * 32 * KC * 2;
        snprintf(what, sizeof(what), "l1 (A and B pairs resident in L1, KC 256)");
    } else if (strcmp(mode, "resident") == 0) {
        if (argc < 5) usage();
        const int MC = arg_mult32(argv[2]), NC = arg_mult32(argv[3]), KC = arg_mult32(argv[4]);
        uint16_t *a = huge_alloc((size_t)MC * KC * 2), *b = huge_alloc((size_t)NC * KC * 2);
        float *C = huge_alloc((size_t)MC * NC * 4);
        fill_bf16(a, (size_t)MC * KC);
        fill_bf16(b, (size_t)NC * KC);
        const int steps = (int)(4e9 / (2.0 * MC * NC * KC)) + 1; /* ~4 GFLOP per run */
        for (int r = 0; r < 5; r++) {
            double t0 = now();
            for (int s = 0; s < steps; s++) block_step(a, b, C, MC, NC, KC, s > 0, NULL, 0, NULL, 0);
            double dt = now() - t0;
            if (dt < best) best = dt;
        }
        flops = (double)steps * MC * NC * KC * 2;
        snprintf(what, sizeof(what), "resident MC %d NC %d KC %d", MC, NC, KC);
    } else if (strcmp(mode, "stream") == 0) {
        if (argc < 7) usage();
        const int M = arg_mult32(argv[2]), K = arg_mult32(argv[3]);
        const int MC = arg_mult32(argv[4]), NC = arg_mult32(argv[5]), KC = arg_mult32(argv[6]);
        const int pfon = argc > 7 ? atoi(argv[7]) : 1;
        if (M % MC || K % KC) usage();
        const int panels = 8; /* B panels computed per run (two buffers, alternating) */
        uint16_t *A = huge_alloc((size_t)M * K * 2), *B = huge_alloc((size_t)2 * NC * K * 2);
        float *C = huge_alloc((size_t)MC * NC * 4);
        fill_bf16(A, (size_t)M * K);
        fill_bf16(B, (size_t)2 * NC * K);
        for (int r = 0; r < 5; r++) {
            double t0 = now();
            for (int jc = 0; jc < panels; jc++) {
                const uint16_t *Bp = B + (size_t)(jc & 1) * NC * K;
                for (int ic = 0; ic < M; ic += MC)
                    for (int pc = 0; pc < K; pc += KC) {
                        /* packed A: K block pc at pc·M, strips of 16 rows 16·KC apart */
                        const uint16_t *ab = A + (size_t)pc * M + (size_t)(ic / 16) * 16 * KC;
                        const uint16_t *bb = Bp + (size_t)pc * NC;
                        const char *pxa = NULL, *pxb = NULL;
                        int64_t xa = 0, xb = 0;
                        if (pfon && pc + KC < K) {
                            pxa = (const char *)(A + (size_t)(pc + KC) * M + (size_t)(ic / 16) * 16 * KC);
                            pxb = (const char *)(Bp + (size_t)(pc + KC) * NC);
                        } else if (pfon && ic + MC < M) {
                            pxa = (const char *)(A + (size_t)((ic + MC) / 16) * 16 * KC);
                            pxb = (const char *)Bp;
                        }
                        if (pxa) xa = (int64_t)MC * KC * 2, xb = (int64_t)NC * KC * 2;
                        block_step(ab, bb, C, MC, NC, KC, pc > 0, pxa, xa, pxb, xb);
                    }
            }
            double dt = now() - t0;
            if (dt < best) best = dt;
        }
        flops = 2.0 * M * (double)NC * panels * K;
        snprintf(what, sizeof(what), "stream M %d K %d MC %d NC %d KC %d prefetch %s", M, K, MC,
                 NC, KC, pfon ? "on" : "off");
    } else {
        usage();
    }
    _tile_release();
    printf("%-60s %.3f TFLOP/s (one core)\n", what, flops / best * 1e-12);
    return 0;
}
