/* Internal helpers shared by safetensors.c (reader), st_model.c (several files
 * as one namespace) and st_write.c (writer). Not part of any public API. */
#ifndef FK_ST_PRIVATE_H
#define FK_ST_PRIVATE_H

#include "io/safetensors.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Copy s into buf (size n) for an error message: control characters, '"' and
 * '\\' become escapes, non-UTF-8 bytes \xNN, and long strings are cut with
 * "..." so that a message stays one line. Returns buf. */
const char *fk_st_printable(const char *s, char *buf, size_t n);
/* Same for a byte range that is not NUL-terminated. */
const char *fk_st_printable_n(const char *s, size_t len, char *buf, size_t n);

/* Strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF),
 * like Rust's str::from_utf8. On failure *bad_at is the offset of the first
 * invalid byte. */
bool fk_st_utf8_valid(const uint8_t *s, size_t n, size_t *bad_at);

/* Mark every tensor of f as belonging to file `index` of a model. */
void fk_st_set_file_index(fk_st_file *f, int index);

/* Room for one printable name in a message. */
#define FK_ST_NAMEBUF 200

#endif /* FK_ST_PRIVATE_H */
