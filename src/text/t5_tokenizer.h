/* text/t5_tokenizer: the T5 v1.1 tokenizer (FLUX `tokenizer_2/`), SentencePiece
 * 0.1.97 unigram `encode` followed by `</s>`, exactly:
 *
 *   1. normalization with the model's precompiled charsmap (nmt_nfkc: a
 *      Darts double-array trie; at each position the longest rule applies,
 *      otherwise one UTF-8 character is copied),
 *   2. whitespace: leading spaces dropped, runs collapsed, a dummy-prefix
 *      space, ' ' -> U+2581, trailing U+2581 removed,
 *   3. Viterbi as unigram::Model::EncodeOptimized: candidate scores in double
 *      ((double)piece score + float best), stored as float, strict '>', the
 *      first start position keeps ties; characters without a single-character
 *      piece get an <unk> node scored min_score - 10 (float),
 *   4. consecutive <unk> merged into one, no byte fallback, `</s>` appended.
 *   Special-token strings in the text ("</s>", "<pad>") are plain text.
 *
 * The model comes from the library (embedded spiece.model) or a folder holding
 * spiece.model (Hugging Face `tokenizer_2/` layout). The protobuf reader
 * bounds-checks everything and rejects malformed or unsupported models (BPE,
 * byte fallback) with a message. A loaded tokenizer is immutable: encode may
 * run from several threads. */
#ifndef FK_TEXT_T5_TOKENIZER_H
#define FK_TEXT_T5_TOKENIZER_H

#include "core/core.h"

#define FK_T5_MAX_LENGTH_DEV 512     /* FLUX.1-dev */
#define FK_T5_MAX_LENGTH_SCHNELL 256 /* FLUX.1-schnell */

typedef struct fk_t5_tokenizer fk_t5_tokenizer;

/* The embedded spiece.model. Caller frees with fk_t5_tokenizer_free. */
fk_status fk_t5_tokenizer_load_default(fk_context *ctx, fk_t5_tokenizer **out);
/* From a folder holding spiece.model; a model folder whose tokenizer_2/
 * subfolder holds it is accepted too. */
fk_status fk_t5_tokenizer_load_dir(fk_context *ctx, const char *dir, fk_t5_tokenizer **out);
/* From a serialized ModelProto in memory (not kept); name is for messages. */
fk_status fk_t5_tokenizer_load_memory(fk_context *ctx, const void *data, size_t size, const char *name,
                                      fk_t5_tokenizer **out);
void fk_t5_tokenizer_free(fk_t5_tokenizer *tok);

/* Unpadded, untruncated ids: content + [eos]. text is UTF-8 of `len` bytes
 * (invalid UTF-8 -> FK_ERR_ARG naming the byte offset). *ids is allocated with
 * malloc; caller frees with free(). */
fk_status fk_t5_tokenizer_encode_unpadded(fk_context *ctx, const fk_t5_tokenizer *tok, const char *text, size_t len,
                                          int64_t **ids, size_t *n_ids);
/* Framed ids for max_length (>= 1) positions: ids (max_length) =
 * content[:max_length-1] + [eos] + [pad]*. *n_used (may be NULL) receives the
 * number of positions before the padding. */
fk_status fk_t5_tokenizer_encode(fk_context *ctx, const fk_t5_tokenizer *tok, const char *text, size_t len,
                                 int max_length, int64_t *ids, int *n_used);

/* The normalized text (after steps 1-2, U+2581 for spaces), malloc'ed and
 * NUL-terminated: for tests and debugging. */
fk_status fk_t5_tokenizer_normalize(fk_context *ctx, const fk_t5_tokenizer *tok, const char *text, size_t len,
                                    char **out, size_t *out_len);

/* The piece string of an id, or NULL. */
const char *fk_t5_tokenizer_piece(const fk_t5_tokenizer *tok, int64_t id);
int64_t fk_t5_tokenizer_vocab_size(const fk_t5_tokenizer *tok); /* pieces in the model (32000) */
int64_t fk_t5_tokenizer_eos_id(const fk_t5_tokenizer *tok);     /* </s> = 1 */
int64_t fk_t5_tokenizer_pad_id(const fk_t5_tokenizer *tok);     /* <pad> = 0 */
int64_t fk_t5_tokenizer_unk_id(const fk_t5_tokenizer *tok);     /* <unk> = 2 */

#endif /* FK_TEXT_T5_TOKENIZER_H */
