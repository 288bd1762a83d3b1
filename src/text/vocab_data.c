/* text/vocab_data: embedded tokenizer files (see vocab_data.h).
 *
 * The files are pulled in by the assembler (.incbin), which keeps the build
 * fast (no multi-megabyte generated C arrays) and works with gcc and clang on
 * ELF and Mach-O targets. CMake passes FK_VOCAB_DIR (the absolute path of
 * data/tokenizers) and FK_EMBED_VOCAB=1, and lists the files in OBJECT_DEPENDS
 * so that editing one rebuilds this object. */
#include "text/vocab_data.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#if defined(FK_EMBED_VOCAB) && FK_EMBED_VOCAB && defined(FK_VOCAB_DIR) && (defined(__ELF__) || defined(__APPLE__))
#define FK_VOCAB_EMBEDDED 1

#if defined(__APPLE__)
#define FK_VD_SECTION ".const_data\n"
#define FK_VD_SYM(name) "_" name
#define FK_VD_HIDE(name) ".private_extern " FK_VD_SYM(name) "\n"
#define FK_VD_PREV ".text\n"
#else
#define FK_VD_SECTION ".section .rodata.fk_vocab,\"a\"\n"
#define FK_VD_SYM(name) name
#define FK_VD_HIDE(name) ".hidden " name "\n"
#define FK_VD_PREV ".previous\n"
#endif

/* One embedded file: symbol `name` (the bytes, plus a terminating NUL that is
 * not counted) and `name_size` (uint64_t). */
#define FK_VD_INCBIN(name, path)                                                \
    __asm__(FK_VD_SECTION ".balign 16\n"                                       \
            ".globl " FK_VD_SYM(name) "\n" FK_VD_HIDE(name)                    \
            FK_VD_SYM(name) ":\n"                                              \
            ".incbin \"" FK_VOCAB_DIR path "\"\n"                              \
            FK_VD_SYM(name) "_end:\n"                                          \
            ".byte 0\n"                                                        \
            ".balign 8\n"                                                      \
            ".globl " FK_VD_SYM(name) "_size\n" FK_VD_HIDE(name "_size")       \
            FK_VD_SYM(name) "_size:\n"                                         \
            ".quad " FK_VD_SYM(name) "_end - " FK_VD_SYM(name) "\n"             \
            FK_VD_PREV)

FK_VD_INCBIN("fk_vd_clip_vocab", "/clip/vocab.json");
FK_VD_INCBIN("fk_vd_clip_merges", "/clip/merges.txt");
FK_VD_INCBIN("fk_vd_t5_spiece", "/t5/spiece.model");

#define FK_VD_EXTERN __attribute__((visibility("hidden"))) extern
FK_VD_EXTERN const unsigned char fk_vd_clip_vocab[];
FK_VD_EXTERN const uint64_t fk_vd_clip_vocab_size;
FK_VD_EXTERN const unsigned char fk_vd_clip_merges[];
FK_VD_EXTERN const uint64_t fk_vd_clip_merges_size;
FK_VD_EXTERN const unsigned char fk_vd_t5_spiece[];
FK_VD_EXTERN const uint64_t fk_vd_t5_spiece_size;
#endif

bool fk_vocab_data_available(void) {
#ifdef FK_VOCAB_EMBEDDED
    return true;
#else
    return false;
#endif
}

fk_vocab_blob fk_vocab_data_get(fk_vocab_file which) {
    fk_vocab_blob b = {NULL, 0, ""};
#ifdef FK_VOCAB_EMBEDDED
    switch (which) {
    case FK_VOCAB_CLIP_VOCAB_JSON:
        b = (fk_vocab_blob){fk_vd_clip_vocab, (size_t)fk_vd_clip_vocab_size, "<embedded>/clip/vocab.json"};
        break;
    case FK_VOCAB_CLIP_MERGES_TXT:
        b = (fk_vocab_blob){fk_vd_clip_merges, (size_t)fk_vd_clip_merges_size, "<embedded>/clip/merges.txt"};
        break;
    case FK_VOCAB_T5_SPIECE_MODEL:
        b = (fk_vocab_blob){fk_vd_t5_spiece, (size_t)fk_vd_t5_spiece_size, "<embedded>/t5/spiece.model"};
        break;
    }
#else
    (void)which;
#endif
    return b;
}

bool fk_vocab_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

fk_status fk_vocab_read_file(fk_context *ctx, const char *path, char **data, size_t *size) {
    *data = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return fk_error(ctx, FK_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    const size_t limit = (size_t)1 << 30;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        return fk_error(ctx, FK_ERR_NOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (n == cap) {
            if (cap >= limit) {
                free(buf);
                fclose(f);
                return fk_error(ctx, FK_ERR_FORMAT, "%s: larger than 1 GiB, not a tokenizer file", path);
            }
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) {
                free(buf);
                fclose(f);
                return fk_error(ctx, FK_ERR_NOMEM, "%s: out of memory", path);
            }
            buf = nb;
            cap *= 2;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0) break;
    }
    bool err = ferror(f) != 0;
    fclose(f);
    if (err) {
        free(buf);
        return fk_error(ctx, FK_ERR_IO, "%s: read error", path);
    }
    buf[n] = '\0';
    *data = buf;
    *size = n;
    return FK_OK;
}
