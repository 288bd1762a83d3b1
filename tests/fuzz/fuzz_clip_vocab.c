/* libFuzzer target: the CLIP vocab.json + merges.txt parsers (a user's
 * tokenizer/ folder is untrusted). Input = vocab.json bytes, a NUL byte,
 * merges.txt bytes. Valid pairs must then encode a fixed prompt. */
#include "text/clip_tokenizer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static fk_context *ctx;
    if (!ctx) ctx = fk_context_create(1);
    const uint8_t *sep = memchr(data, 0, size);
    size_t vlen = sep ? (size_t)(sep - data) : size;
    const char *merges = sep ? (const char *)sep + 1 : "";
    size_t mlen = sep ? size - vlen - 1 : 0;
    fk_clip_tokenizer *tok = NULL;
    if (fk_clip_tokenizer_load_memory(ctx, (const char *)data, vlen, "fuzz/vocab.json", merges, mlen,
                                      "fuzz/merges.txt", &tok) != FK_OK) {
        if (strchr(fk_context_error(ctx), '\n')) abort();
        return 0;
    }
    static const char prompt[] = "a cab, ABBA &amp; abc's";
    int64_t ids[77];
    int used = 0;
    (void)fk_clip_tokenizer_encode(ctx, tok, prompt, sizeof(prompt) - 1, 77, ids, &used);
    fk_clip_tokenizer_free(tok);
    return 0;
}
