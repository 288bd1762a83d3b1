/* text/vocab_data: the tokenizer files embedded in the library at build time
 * (data/tokenizers/clip/{vocab.json,merges.txt}, data/tokenizers/t5/spiece.model,
 * included verbatim with the assembler's .incbin; see the "tokenizer
 * vocabularies" block in CMakeLists.txt). Users of single-file checkpoints
 * therefore need no tokenizer folder. */
#ifndef FK_TEXT_VOCAB_DATA_H
#define FK_TEXT_VOCAB_DATA_H

#include "core/core.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct fk_vocab_blob {
    const unsigned char *data; /* (size) bytes, static; NULL when not embedded */
    size_t size;
    const char *name; /* e.g. "<embedded>/clip/vocab.json", for messages */
} fk_vocab_blob;

typedef enum fk_vocab_file {
    FK_VOCAB_CLIP_VOCAB_JSON = 0,
    FK_VOCAB_CLIP_MERGES_TXT,
    FK_VOCAB_T5_SPIECE_MODEL,
} fk_vocab_file;

/* True when the build embedded the files (FK_EMBED_VOCAB, on by default). */
bool fk_vocab_data_available(void);
/* The embedded file; data == NULL when not available. */
fk_vocab_blob fk_vocab_data_get(fk_vocab_file which);

/* Read a whole tokenizer file (at most 1 GiB) into a malloc'ed buffer with a
 * terminating NUL (not counted in *size). Caller frees with free(). Errors
 * name the path. */
fk_status fk_vocab_read_file(fk_context *ctx, const char *path, char **data, size_t *size);
/* True when `path` names a regular file. */
bool fk_vocab_file_exists(const char *path);

#endif /* FK_TEXT_VOCAB_DATA_H */
