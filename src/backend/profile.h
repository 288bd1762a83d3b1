/* profile: a backend that wraps another one and times its ops.
 *
 * fk_backend_profile_wrap(inner) returns a backend with the same op table
 * semantics whose every op calls inner's, synchronizes, and adds the wall
 * time, the call count and the work (FLOPs for the matrix products, bytes of
 * the operands for the rest) to per-op counters. Linear products with few
 * rows (M <= 32: weight-bound matrix-vector work) are counted apart from
 * the large ones. The wrapper does not own inner: destroy the wrapper, then
 * inner. Backend-specific calls (fk_backend_cpu_set_precision, ...) go to
 * inner. Used by `fluxkit bench --profile`. */
#ifndef FK_BACKEND_PROFILE_H
#define FK_BACKEND_PROFILE_H

#include "backend/backend.h"

/* Rows at or below which a linear counts as small (matrix-vector). */
#define FK_PROFILE_SMALL_M 32

typedef struct fk_op_stats {
    int64_t calls;
    double seconds;
    double flops; /* linear, linear_act, attention, conv2d; else 0 */
    double bytes; /* operand bytes read + written (elementwise estimate) */
} fk_op_stats;

/* NULL when out of memory. */
fk_backend *fk_backend_profile_wrap(fk_backend *inner);
/* The wrapped backend. */
fk_backend *fk_backend_profile_inner(fk_backend *prof);
/* stats[op][0]: all calls of op except small linears; stats[op][1]: linear /
 * linear_act with M <= FK_PROFILE_SMALL_M. */
void fk_backend_profile_get(const fk_backend *prof, fk_op_stats stats[FK_OP_COUNT][2]);
void fk_backend_profile_reset(fk_backend *prof);

#endif /* FK_BACKEND_PROFILE_H */
