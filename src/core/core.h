/* core: context internals, errors, logging, allocation, timing.
 * Internal header; the public API is include/fluxkit.h. */
#ifndef FK_CORE_H
#define FK_CORE_H

#include "fluxkit.h"
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FK_ERRMSG_MAX 1024

struct fk_context {
    int n_threads;
    fk_log_level log_level;
    fk_log_fn log_fn;
    void *log_user;
    char err[FK_ERRMSG_MAX];
};

/* Set the context's error message (printf-style) and return `code`.
 * Typical use: return fk_error(ctx, FK_ERR_FORMAT, "%s: tensor %s ...", path, name);
 * ctx may be NULL (message dropped). */
fk_status fk_error(fk_context *ctx, fk_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Log through the context's callback. */
void fk_log(const fk_context *ctx, fk_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Aborts with file:line and message: for broken internal invariants only
 * (programming errors), never for bad user input. */
#define FK_ASSERT(cond)                                                        \
    do {                                                                       \
        if (!(cond)) fk_panic(__FILE__, __LINE__, #cond);                      \
    } while (0)
void fk_panic(const char *file, int line, const char *what) __attribute__((noreturn));

/* 64-byte aligned allocation; NULL on failure (or when bytes == 0 → a valid
 * minimal block). Free with fk_free. */
void *fk_alloc(size_t bytes);
void *fk_calloc(size_t bytes);
void fk_free(void *p);
/* memcpy of n bytes split over the OpenMP threads (pieces of 1 MiB): for
 * large host-to-host copies, e.g. into a pinned staging buffer. */
void fk_copy_parallel(void *dst, const void *src, size_t n);

/* Monotonic time in seconds. */
double fk_time(void);

/* Peak resident set size of the process in bytes (VmHWM), 0 if unknown. */
uint64_t fk_peak_rss(void);
/* Current resident set size in bytes (VmRSS), 0 if unknown. */
uint64_t fk_current_rss(void);

/* Number of online CPUs (>= 1). */
int fk_cpu_count(void);

/* Overflow-checked size arithmetic: return false on overflow. */
static inline bool fk_mul_ok(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool fk_add_ok(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

#endif /* FK_CORE_H */
