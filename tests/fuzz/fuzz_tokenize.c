/* libFuzzer target: arbitrary prompt bytes through both built-in tokenizers
 * (CLIP: ftfy fixes, HTML unescape, lower-casing, pre-tokenizer, BPE; T5:
 * nmt_nfkc charsmap, Viterbi). Prompts are untrusted input. Each call either
 * fails with a one-line message (invalid UTF-8) or returns ids in range with
 * the framing the reference uses. */
#include "text/clip_tokenizer.h"
#include "text/t5_tokenizer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_REQUIRE(cond)                                                                     \
    do {                                                                                       \
        if (!(cond)) abort();                                                                  \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static fk_context *ctx;
    static fk_clip_tokenizer *clip;
    static fk_t5_tokenizer *t5;
    if (!ctx) {
        ctx = fk_context_create(1);
        FUZZ_REQUIRE(fk_clip_tokenizer_load_default(ctx, &clip) == FK_OK);
        FUZZ_REQUIRE(fk_t5_tokenizer_load_default(ctx, &t5) == FK_OK);
    }
    int64_t ids[512];
    int used = 0;
    fk_status st = fk_clip_tokenizer_encode(ctx, clip, (const char *)data, size, 77, ids, &used);
    if (st == FK_OK) {
        FUZZ_REQUIRE(ids[0] == 49406);
        for (int i = 0; i < 77; i++) FUZZ_REQUIRE(ids[i] >= 0 && ids[i] < 49408);
        FUZZ_REQUIRE(used >= 2 && used <= 77 && ids[used - 1] == 49407);
    } else {
        FUZZ_REQUIRE(strchr(fk_context_error(ctx), '\n') == NULL);
    }
    st = fk_t5_tokenizer_encode(ctx, t5, (const char *)data, size, 512, ids, &used);
    if (st == FK_OK) {
        for (int i = 0; i < 512; i++) FUZZ_REQUIRE(ids[i] >= 0 && ids[i] < 32100);
        FUZZ_REQUIRE(used >= 1 && used <= 512 && ids[used - 1] == 1);
        for (int i = used; i < 512; i++) FUZZ_REQUIRE(ids[i] == 0);
    } else {
        FUZZ_REQUIRE(strchr(fk_context_error(ctx), '\n') == NULL);
    }
    return 0;
}
