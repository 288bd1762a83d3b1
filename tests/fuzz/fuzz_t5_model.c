/* libFuzzer target: the SentencePiece ModelProto parser (a user's
 * tokenizer_2/spiece.model is an untrusted file). Valid models must then
 * encode a fixed prompt without fault. */
#include "text/t5_tokenizer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static fk_context *ctx;
    if (!ctx) ctx = fk_context_create(1);
    fk_t5_tokenizer *tok = NULL;
    if (fk_t5_tokenizer_load_memory(ctx, data, size, "fuzz.model", &tok) != FK_OK) {
        if (strchr(fk_context_error(ctx), '\n')) abort();
        return 0;
    }
    static const char prompt[] = "A photo of a cat, 4k — café ①  ﬁne";
    int64_t ids[64];
    int used = 0;
    (void)fk_t5_tokenizer_encode(ctx, tok, prompt, sizeof(prompt) - 1, 64, ids, &used);
    fk_t5_tokenizer_free(tok);
    return 0;
}
