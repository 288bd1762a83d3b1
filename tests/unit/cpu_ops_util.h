/* Helpers shared by the CPU op tests (test_ops_cpu*.c): random data, the
 * set of backends to compare (every kernel path this machine can run × 1, 2
 * and 3 threads), bitwise comparison. */
#ifndef FK_TEST_CPU_OPS_UTIL_H
#define FK_TEST_CPU_OPS_UTIL_H

#include "backend/cpu/cpu.h"
#include "test.h"

#include <float.h>
#include <stdint.h>

/* f32 unit roundoff: |fl(a op b) - (a op b)| <= EPS32 · |a op b| */
#define EPS32 (0x1p-24)

static uint64_t tu_rng = 0x243F6A8885A308D3ull;

static inline uint64_t tu_next(void) {
    uint64_t z = (tu_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* uniform in [lo, hi) */
static inline float tu_uniform(float lo, float hi) {
    return lo + (hi - lo) * (float)((double)(tu_next() >> 11) * 0x1p-53);
}

static inline void tu_fill(float *x, int64_t n, float lo, float hi) {
    for (int64_t i = 0; i < n; i++) x[i] = tu_uniform(lo, hi);
}

static inline float *tu_alloc(int64_t n) {
    float *p = fk_alloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static inline bool tu_same_bits(const void *a, const void *b, size_t bytes) {
    return memcmp(a, b, bytes) == 0;
}

/* The backends to cross-check: every available ISA with 1, 2 and 3 threads.
 * tu_backends[0] is the default ISA with 1 thread. */
#define TU_MAX_BACKENDS (FK_CPU_ISA_COUNT * 3)
static fk_backend *tu_backends[TU_MAX_BACKENDS];
static int tu_n_backends = 0;

static inline void tu_backends_init(void) {
    fk_cpu_isa best = fk_cpu_isa_detect();
    tu_backends[tu_n_backends++] = fk_backend_cpu_create_isa(1, best);
    for (int isa = FK_CPU_ISA_COUNT - 1; isa >= 0; isa--) {
        if (!fk_cpu_isa_available((fk_cpu_isa)isa)) continue;
        for (int nt = 1; nt <= 3; nt++) {
            if ((fk_cpu_isa)isa == best && nt == 1) continue;
            tu_backends[tu_n_backends++] = fk_backend_cpu_create_isa(nt, (fk_cpu_isa)isa);
        }
    }
    for (int i = 0; i < tu_n_backends; i++)
        if (!tu_backends[i]) {
            fprintf(stderr, "cannot create the CPU backend\n");
            exit(2);
        }
    printf("CPU kernel path: %s; cross-checking %d backend configurations\n",
           fk_cpu_isa_name(best), tu_n_backends);
}

static inline void tu_backends_free(void) {
    for (int i = 0; i < tu_n_backends; i++) tu_backends[i]->destroy(tu_backends[i]);
    tu_n_backends = 0;
}

static inline const char *tu_backend_desc(const fk_backend *be, char *buf, size_t n) {
    snprintf(buf, n, "%s/%d threads", fk_cpu_isa_name(fk_cpu_impl_of(be)->isa), be->n_threads);
    return buf;
}

static inline const char *tu_bdesc(const fk_backend *be) {
    static char buf[64];
    return tu_backend_desc(be, buf, sizeof(buf));
}

/* Buffers with TU_GUARD floats of a NaN pattern after the data: an op that
 * writes past its output changes them (tu_guard_ok). */
#define TU_GUARD 40
#define TU_GUARD_BITS 0x7fa5a5a5u

static inline float *tu_galloc(int64_t n) {
    const uint32_t g = TU_GUARD_BITS;
    float *p = tu_alloc(n + TU_GUARD);
    for (int i = 0; i < TU_GUARD; i++) memcpy(p + n + i, &g, 4);
    return p;
}

static inline bool tu_guard_ok(const float *p, int64_t n) {
    const uint32_t g = TU_GUARD_BITS;
    for (int i = 0; i < TU_GUARD; i++)
        if (memcmp(p + n + i, &g, 4) != 0) return false;
    return true;
}

#endif
