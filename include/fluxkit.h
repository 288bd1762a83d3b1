/* fluxkit — a C engine for the FLUX.1 family of text-to-image models.
 *
 * Public API. All state lives in an opaque context; functions return an
 * fk_status and keep a human-readable message in the context
 * (fk_context_error). Nothing here prints or exits.
 */
#ifndef FLUXKIT_H
#define FLUXKIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum fk_status {
    FK_OK = 0,
    FK_ERR_ARG,         /* invalid argument or option */
    FK_ERR_IO,          /* file could not be opened, read, written */
    FK_ERR_FORMAT,      /* file content malformed */
    FK_ERR_SHAPE,       /* tensor missing or of the wrong shape/dtype */
    FK_ERR_NOMEM,       /* allocation failed */
    FK_ERR_UNSUPPORTED, /* valid but not implemented (dtype, op, backend) */
    FK_ERR_INTERNAL,
} fk_status;

typedef enum fk_log_level {
    FK_LOG_ERROR = 0,
    FK_LOG_WARN,
    FK_LOG_INFO,
    FK_LOG_DEBUG,
} fk_log_level;

typedef void (*fk_log_fn)(fk_log_level level, const char *msg, void *user);

typedef struct fk_context fk_context;

/* Library version, e.g. "0.1.0". Static string. */
const char *fk_version(void);
/* Name of a status code, e.g. "FK_ERR_FORMAT". Static string. */
const char *fk_status_name(fk_status s);

/* Create a context. Caller frees with fk_context_free. Returns NULL only when
 * out of memory. n_threads <= 0 picks the number of online CPUs. */
fk_context *fk_context_create(int n_threads);
void fk_context_free(fk_context *ctx);

/* Last error message of this context ("" if none). Owned by the context,
 * valid until the next failing call on it. */
const char *fk_context_error(const fk_context *ctx);

int fk_context_threads(const fk_context *ctx);
void fk_context_set_threads(fk_context *ctx, int n_threads);

/* Log callback (default: messages at or below FK_LOG_WARN go to stderr). */
void fk_context_set_log(fk_context *ctx, fk_log_level max_level, fk_log_fn fn, void *user);

#ifdef __cplusplus
}
#endif
#endif /* FLUXKIT_H */
