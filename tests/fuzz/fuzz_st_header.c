/* libFuzzer target for the safetensors reader (fk_st_open_memory).
 *
 *   tools/run_fuzz.sh 300        # build with clang in build-fuzz, fuzz for 5 minutes
 *
 * Every input either fails with a one-line message naming the label, or opens
 * into a table whose invariants are checked here (any violation aborts, which
 * libFuzzer reports as a crash): tensors contiguous from 0 and inside the buffer,
 * every name found by fk_st_find, every metadata key by fk_st_meta. Reading the
 * first and last byte of each tensor lets ASan catch a view past the buffer. */
#include "io/safetensors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_REQUIRE(cond)                                                                     \
    do {                                                                                       \
        if (!(cond)) abort();                                                                  \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static fk_context *ctx = NULL;
    if (!ctx) ctx = fk_context_create(1);
    fk_st_file *f = NULL;
    fk_status st = fk_st_open_memory(ctx, "fuzz", data, size, &f);
    if (st != FK_OK) {
        const char *msg = fk_context_error(ctx);
        FUZZ_REQUIRE(f == NULL);
        FUZZ_REQUIRE(strncmp(msg, "fuzz: ", 6) == 0);
        FUZZ_REQUIRE(strchr(msg, '\n') == NULL);
        return 0;
    }
    volatile uint8_t sink = 0;
    uint64_t expect = 0;
    int n = fk_st_count(f);
    for (int i = 0; i < n; i++) {
        const fk_st_tensor *t = fk_st_get(f, i);
        FUZZ_REQUIRE(t != NULL && t->name != NULL);
        FUZZ_REQUIRE(t->offset == expect);
        FUZZ_REQUIRE(t->ndim >= 0 && t->ndim <= FK_MAX_DIMS);
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            FUZZ_REQUIRE(t->shape[d] >= 0);
            numel *= (uint64_t)t->shape[d];
        }
        FUZZ_REQUIRE(numel * fk_dtype_size(t->dtype) == t->nbytes);
        FUZZ_REQUIRE(t->nbytes <= size);
        expect += t->nbytes;
        if (t->nbytes > 0) {
            const uint8_t *p = t->data;
            sink ^= p[0];
            sink ^= p[t->nbytes - 1];
        }
        FUZZ_REQUIRE(fk_st_find(f, t->name) == t);
        fk_tensor v = fk_st_view(t);
        FUZZ_REQUIRE(v.data == t->data && v.ndim == t->ndim);
    }
    FUZZ_REQUIRE(expect <= size);
    FUZZ_REQUIRE(fk_st_get(f, n) == NULL);
    for (int i = 0; i < fk_st_meta_count(f); i++) {
        const char *k = NULL, *v = NULL;
        fk_st_meta_get(f, i, &k, &v);
        FUZZ_REQUIRE(k != NULL && v != NULL);
        FUZZ_REQUIRE(fk_st_meta(f, k) == v);
    }
    FUZZ_REQUIRE(fk_st_file_size(f) == size);
    (void)sink;
    fk_st_close(f);
    return 0;
}
