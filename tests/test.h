/* Minimal test harness: CHECK macros that count, and a closing line
 * "N passed, N failed". A test binary exits non-zero when anything failed. */
#ifndef FK_TEST_H
#define FK_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fk_test_passed = 0, fk_test_failed = 0;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (cond) {                                                                    \
            fk_test_passed++;                                                          \
        } else {                                                                       \
            fk_test_failed++;                                                          \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);             \
        }                                                                              \
    } while (0)

#define CHECKF(cond, ...)                                                              \
    do {                                                                               \
        if (cond) {                                                                    \
            fk_test_passed++;                                                          \
        } else {                                                                       \
            fk_test_failed++;                                                          \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);             \
            fprintf(stderr, __VA_ARGS__);                                              \
            fprintf(stderr, "\n");                                                     \
        }                                                                              \
    } while (0)

/* Relative L2 error ||a - b|| / ||b|| in double. */
static inline double fk_test_rel_l2_f32(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Relative L2 error ||a - ref|| / ||ref|| of f32 results against an f64
 * reference (the fixtures' outputs), in double. */
static inline double fk_test_rel_l2_f64(const float *a, const double *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static inline int fk_test_finish(const char *name) {
    printf("%s: %d passed, %d failed\n", name, fk_test_passed, fk_test_failed);
    return fk_test_failed ? 1 : 0;
}

#endif
