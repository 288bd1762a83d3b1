/* text/clip_tokenizer: the CLIP ViT-L/14 text tokenizer (FLUX `tokenizer/`),
 * byte-level BPE exactly as openai CLIP's simple_tokenizer.SimpleTokenizer:
 *
 *   1. ftfy 6.3.1 fix_text with its defaults, mojibake repair included (text/ftfy.h),
 *   2. html.unescape twice, strip,
 *   3. runs of White_Space -> one space, strip,
 *   4. Python str.lower() (full mapping, final sigma),
 *   5. the pre-tokenizer regex <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|
 *      [\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+ (IGNORECASE, so 's also matches 'ſ and
 *      U+0345 matches nothing), hand-written over Unicode categories,
 *   6. UTF-8 bytes -> GPT-2 byte alphabet, "</w>" on the last symbol, lowest-rank
 *      merges first (merges.txt), vocab.json ids; a literal <|startoftext|> /
 *      <|endoftext|> is its special id,
 *   7. framing for a max length L (77 in FLUX): [bos] + content[:L-2] + [eos],
 *      padded with the pad id (= <|endoftext|>, 49407, as FLUX's tokenizer).
 *
 * Unicode data (categories, case, NFC) come from utf8proc (Unicode 15.0); the
 * reference's Python/regex tables may differ only for characters assigned or
 * changed after that. This is openai CLIP's tokenizer, which the fixtures were
 * made with; Hugging Face's CLIPTokenizer paths differ on edge cases (no
 * html.unescape; without ftfy: BERT-style cleaning; the fast tokenizer: no ftfy
 * and per-character lower-casing) — see tests/data/tokenizers and the README of
 * the shared fixtures.
 *
 * Vocabulary: embedded in the library (text/vocab_data.h) or read from a folder
 * with vocab.json + merges.txt (Hugging Face `tokenizer/` layout). The loaders
 * reject malformed files with a message naming the file, line and problem.
 * A loaded tokenizer is immutable: encode may run from several threads. */
#ifndef FK_TEXT_CLIP_TOKENIZER_H
#define FK_TEXT_CLIP_TOKENIZER_H

#include "core/core.h"

#define FK_CLIP_MAX_LENGTH 77 /* FLUX / CLIP-L context length */

typedef struct fk_clip_tokenizer fk_clip_tokenizer;

/* The embedded vocabulary. Caller frees with fk_clip_tokenizer_free. */
fk_status fk_clip_tokenizer_load_default(fk_context *ctx, fk_clip_tokenizer **out);
/* From a folder holding vocab.json and merges.txt; a model folder whose
 * tokenizer/ subfolder holds them is accepted too. */
fk_status fk_clip_tokenizer_load_dir(fk_context *ctx, const char *dir, fk_clip_tokenizer **out);
/* From file contents in memory (the buffers are not kept). The names are used
 * in error messages. */
fk_status fk_clip_tokenizer_load_memory(fk_context *ctx, const char *vocab_json, size_t vocab_len,
                                        const char *vocab_name, const char *merges_txt, size_t merges_len,
                                        const char *merges_name, fk_clip_tokenizer **out);
void fk_clip_tokenizer_free(fk_clip_tokenizer *tok);

/* Unpadded, untruncated ids: [bos] + content + [eos]. text is UTF-8 of
 * `len` bytes (need not be NUL-terminated; invalid UTF-8 -> FK_ERR_ARG naming
 * the byte offset). *ids is allocated with malloc; caller frees with free(). */
fk_status fk_clip_tokenizer_encode_unpadded(fk_context *ctx, const fk_clip_tokenizer *tok, const char *text,
                                            size_t len, int64_t **ids, size_t *n_ids);
/* Framed ids for a context of max_length (>= 2): ids (max_length) =
 * [bos] + content[:max_length-2] + [eos] + [pad]*. *n_used (may be NULL)
 * receives the number of positions before the padding. */
fk_status fk_clip_tokenizer_encode(fk_context *ctx, const fk_clip_tokenizer *tok, const char *text, size_t len,
                                   int max_length, int64_t *ids, int *n_used);

/* The vocabulary string of an id (byte-level alphabet, "</w>" suffix), or NULL. */
const char *fk_clip_tokenizer_token(const fk_clip_tokenizer *tok, int64_t id);
int64_t fk_clip_tokenizer_vocab_size(const fk_clip_tokenizer *tok);
int64_t fk_clip_tokenizer_bos_id(const fk_clip_tokenizer *tok); /* <|startoftext|> 49406 */
int64_t fk_clip_tokenizer_eos_id(const fk_clip_tokenizer *tok); /* <|endoftext|> 49407 */
int64_t fk_clip_tokenizer_pad_id(const fk_clip_tokenizer *tok); /* = eos */

/* The text after steps 1-4 (cleaning and lower-casing), UTF-8, malloc'ed:
 * for tests and debugging. */
fk_status fk_clip_tokenizer_clean_text(fk_context *ctx, const char *text, size_t len, char **out, size_t *out_len);

/* Testing hook: use the reference's quadratic merge loop instead of the
 * heap-based one (they agree whenever merges.txt is well formed, which the
 * loader checks; otherwise the quadratic loop is always used). */
void fk_clip_tokenizer_set_naive_bpe(fk_clip_tokenizer *tok, bool naive);

#endif /* FK_TEXT_CLIP_TOKENIZER_H */
