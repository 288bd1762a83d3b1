#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *fk_version(void) { return FK_VERSION_STRING; }

const char *fk_status_name(fk_status s) {
    switch (s) {
    case FK_OK: return "FK_OK";
    case FK_ERR_ARG: return "FK_ERR_ARG";
    case FK_ERR_IO: return "FK_ERR_IO";
    case FK_ERR_FORMAT: return "FK_ERR_FORMAT";
    case FK_ERR_SHAPE: return "FK_ERR_SHAPE";
    case FK_ERR_NOMEM: return "FK_ERR_NOMEM";
    case FK_ERR_UNSUPPORTED: return "FK_ERR_UNSUPPORTED";
    case FK_ERR_INTERNAL: return "FK_ERR_INTERNAL";
    }
    return "FK_ERR_UNKNOWN";
}

int fk_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

fk_context *fk_context_create(int n_threads) {
    fk_context *ctx = calloc(1, sizeof(*ctx));
    if (!ctx) return NULL;
    ctx->n_threads = n_threads > 0 ? n_threads : fk_cpu_count();
    ctx->log_level = FK_LOG_WARN;
    return ctx;
}

void fk_context_free(fk_context *ctx) { free(ctx); }

const char *fk_context_error(const fk_context *ctx) { return ctx ? ctx->err : ""; }

int fk_context_threads(const fk_context *ctx) { return ctx->n_threads; }

void fk_context_set_threads(fk_context *ctx, int n_threads) {
    ctx->n_threads = n_threads > 0 ? n_threads : fk_cpu_count();
}

void fk_context_set_log(fk_context *ctx, fk_log_level max_level, fk_log_fn fn, void *user) {
    ctx->log_level = max_level;
    ctx->log_fn = fn;
    ctx->log_user = user;
}

fk_status fk_error(fk_context *ctx, fk_status code, const char *fmt, ...) {
    if (ctx) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->err, sizeof(ctx->err), fmt, ap);
        va_end(ap);
    }
    return code;
}

void fk_log(const fk_context *ctx, fk_log_level level, const char *fmt, ...) {
    fk_log_level max = ctx ? ctx->log_level : FK_LOG_WARN;
    if (level > max) return;
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (ctx && ctx->log_fn) {
        ctx->log_fn(level, buf, ctx->log_user);
    } else {
        static const char *names[] = {"error", "warning", "info", "debug"};
        fprintf(stderr, "fluxkit: %s: %s\n", names[level], buf);
    }
}

void fk_panic(const char *file, int line, const char *what) {
    fprintf(stderr, "fluxkit: internal error at %s:%d: assertion failed: %s\n", file, line, what);
    abort();
}

void *fk_alloc(size_t bytes) {
    void *p = NULL;
    if (bytes == 0) bytes = 64;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded < bytes) return NULL;
    if (posix_memalign(&p, 64, rounded) != 0) return NULL;
    return p;
}

void *fk_calloc(size_t bytes) {
    void *p = fk_alloc(bytes);
    if (p) memset(p, 0, bytes ? bytes : 64);
    return p;
}

void fk_free(void *p) { free(p); }

double fk_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t fk_status_field_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    uint64_t kb = 0;
    size_t klen = strlen(key);
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, key, klen) == 0) {
            kb = strtoull(line + klen, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb * 1024;
}

uint64_t fk_peak_rss(void) { return fk_status_field_kb("VmHWM:"); }
uint64_t fk_current_rss(void) { return fk_status_field_kb("VmRSS:"); }

void fk_copy_parallel(void *dst, const void *src, size_t n) {
    const size_t piece = (size_t)1 << 20;
    const long np = (long)((n + piece - 1) / piece);
#if defined(FK_HAVE_OPENMP)
#pragma omp parallel for schedule(static) if (np > 1)
#endif
    for (long i = 0; i < np; i++) {
        const size_t o = (size_t)i * piece, m = n - o < piece ? n - o : piece;
        memcpy((char *)dst + o, (const char *)src + o, m);
    }
}
