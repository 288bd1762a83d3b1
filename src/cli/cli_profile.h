/* cli_profile: printing the op profile of a wrapped backend (backend/profile.h). */
#ifndef FK_CLI_PROFILE_H
#define FK_CLI_PROFILE_H

#include "backend/profile.h"

#include <stdio.h>

/* Op class of a profile row: "matmul" (linear with many rows), "gemv"
 * (linear with few rows), "attention", "conv", or "other". */
const char *fk_cli_profile_class(fk_op op, int small);

/* The table: one row per op (and small-M linears apart), per `per` runs
 * (e.g. steps): calls, ms, share of `wall` seconds (the measured time of
 * those runs; 0: share of the ops' total), TFLOP/s for the products, GB/s
 * for the rest; then a row per class. */
void fk_cli_profile_print(FILE *f, const fk_backend *prof, double per, double wall);

/* The same as one JSON object member: "profile": {"ops": [...], "classes": [...]}. */
void fk_cli_profile_json(FILE *f, const fk_backend *prof, double per);

#endif /* FK_CLI_PROFILE_H */
