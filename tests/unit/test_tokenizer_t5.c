/* T5 tokenizer: exact agreement with SentencePiece 0.1.97 + `</s>` on the 988
 * prompts of tests/data/tokenizers/public.jsonl (t5_ids: 512 positions,
 * t5_ids_unpadded; and the FLUX.1-schnell framing to 256 derived from the
 * unpadded ids as content[:255] + [1] + [0]*), the folder loaders, and
 * malformed / unsupported models built here with a small protobuf writer.
 * Token ids are integers: every comparison is exact (tolerance 0). */
#include "text/t5_tokenizer.h"
#include "test.h"
#include "text/vocab_data.h"

#include <cJSON.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define JSONL "tests/data/tokenizers/public.jsonl"

/* ---- helpers ---------------------------------------------------------------- */

static char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[sz] = '\0';
    *n = (size_t)sz;
    return b;
}

static char *hex_decode(const char *hex, size_t *n) {
    size_t len = strlen(hex) / 2;
    char *out = malloc(len + 1);
    for (size_t i = 0; i < len; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (char)v;
    }
    out[len] = '\0';
    *n = len;
    return out;
}

static bool ids_equal(const cJSON *arr, const int64_t *ids, size_t n) {
    if (!cJSON_IsArray(arr) || (size_t)cJSON_GetArraySize(arr) != n) return false;
    size_t i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++)
        if ((int64_t)e->valuedouble != ids[i]) return false;
    return true;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- the public corpus -------------------------------------------------------- */

static void test_corpus(fk_context *ctx, const fk_t5_tokenizer *tok, const fk_t5_tokenizer *tok_dir) {
    size_t n = 0;
    char *data = read_all(JSONL, &n);
    CHECKF(data != NULL, "cannot read %s (run from the repository root)", JSONL);
    if (!data) return;
    int records = 0, ok_unpadded = 0, ok_512 = 0, ok_256 = 0, ok_dir = 0, printed = 0;
    double t_encode = 0;
    int64_t ids512[512], ids256[256];
    for (char *line = data; *line;) {
        char *eol = strchr(line, '\n');
        if (eol) *eol = '\0';
        cJSON *rec = cJSON_Parse(line);
        line = eol ? eol + 1 : line + strlen(line);
        if (!rec) continue;
        records++;
        const char *id = cJSON_GetObjectItem(rec, "id")->valuestring;
        size_t tl = 0;
        char *text = hex_decode(cJSON_GetObjectItem(rec, "text_utf8_hex")->valuestring, &tl);
        const cJSON *exp_unpadded = cJSON_GetObjectItem(rec, "t5_ids_unpadded");
        const cJSON *exp_512 = cJSON_GetObjectItem(rec, "t5_ids");

        int64_t *ids = NULL;
        size_t nids = 0;
        double t0 = now_s();
        fk_status st = fk_t5_tokenizer_encode_unpadded(ctx, tok, text, tl, &ids, &nids);
        t_encode += now_s() - t0;
        bool good = st == FK_OK && ids_equal(exp_unpadded, ids, nids);
        ok_unpadded += good;
        if (!good && printed++ < 10) {
            fprintf(stderr, "MISMATCH %s (unpadded): got", id);
            for (size_t i = 0; i < nids && i < 40; i++) fprintf(stderr, " %lld", (long long)ids[i]);
            fprintf(stderr, "\n");
        }
        int used = 0;
        st = fk_t5_tokenizer_encode(ctx, tok, text, tl, 512, ids512, &used);
        ok_512 += st == FK_OK && ids_equal(exp_512, ids512, 512) && ids512[used - 1] == 1 &&
                  (used == 512 || ids512[used] == 0);

        /* 256 (schnell): content[:255] + [1] + [0]* from the unpadded ids */
        int64_t want256[256];
        size_t ncontent = (size_t)cJSON_GetArraySize(exp_unpadded) - 1, keep = ncontent < 255 ? ncontent : 255;
        for (size_t i = 0; i < 256; i++)
            want256[i] = i < keep ? (int64_t)cJSON_GetArrayItem(exp_unpadded, (int)i)->valuedouble : i == keep ? 1 : 0;
        st = fk_t5_tokenizer_encode(ctx, tok, text, tl, 256, ids256, NULL);
        ok_256 += st == FK_OK && memcmp(want256, ids256, sizeof want256) == 0;

        if (tok_dir) {
            int64_t *ids2 = NULL;
            size_t n2 = 0;
            st = fk_t5_tokenizer_encode_unpadded(ctx, tok_dir, text, tl, &ids2, &n2);
            ok_dir += st == FK_OK && n2 == nids && memcmp(ids, ids2, n2 * sizeof *ids) == 0;
            free(ids2);
        }
        free(ids);
        free(text);
        cJSON_Delete(rec);
    }
    free(data);
    printf("t5: %d records: unpadded %d, 512 %d, 256 %d, folder-loaded %d agree; encode %.1f ms total\n", records,
           ok_unpadded, ok_512, ok_256, ok_dir, 1e3 * t_encode);
    CHECKF(records == 988, "%d records", records);
    CHECKF(ok_unpadded == records, "t5_ids_unpadded: %d of %d", ok_unpadded, records);
    CHECKF(ok_512 == records, "t5_ids (512): %d of %d", ok_512, records);
    CHECKF(ok_256 == records, "256 framing: %d of %d", ok_256, records);
    if (tok_dir) CHECKF(ok_dir == records, "folder-loaded tokenizer: %d of %d", ok_dir, records);
}

/* ---- a small protobuf writer for synthetic models --------------------------------- */

typedef struct pbw {
    uint8_t *v;
    size_t n, cap;
} pbw;

static void pbw_put(pbw *w, const void *p, size_t n) {
    if (w->n + n > w->cap) {
        w->cap = (w->n + n) * 2 + 64;
        w->v = realloc(w->v, w->cap);
    }
    memcpy(w->v + w->n, p, n);
    w->n += n;
}
static void pbw_varint(pbw *w, uint64_t x) {
    do {
        uint8_t b = (uint8_t)(x & 0x7F);
        x >>= 7;
        if (x) b |= 0x80;
        pbw_put(w, &b, 1);
    } while (x);
}
static void pbw_key(pbw *w, uint32_t field, int wt) { pbw_varint(w, ((uint64_t)field << 3) | (uint64_t)wt); }
static void pbw_bytes(pbw *w, uint32_t field, const void *p, size_t n) {
    pbw_key(w, field, 2);
    pbw_varint(w, n);
    pbw_put(w, p, n);
}
static void pbw_float(pbw *w, uint32_t field, float f) {
    uint8_t b[4];
    uint32_t u;
    memcpy(&u, &f, 4);
    for (int i = 0; i < 4; i++) b[i] = (uint8_t)(u >> (8 * i));
    pbw_key(w, field, 5);
    pbw_put(w, b, 4);
}
static void pbw_piece(pbw *w, const char *piece, float score, int type) {
    pbw p = {0};
    pbw_bytes(&p, 1, piece, strlen(piece));
    pbw_float(&p, 2, score);
    if (type != 1) {
        pbw_key(&p, 3, 0);
        pbw_varint(&p, (uint64_t)type);
    }
    pbw_bytes(w, 1, p.v, p.n);
    free(p.v);
}

#define SP "\xE2\x96\x81" /* U+2581 */

/* <pad> </s> <unk> ▁ a b ▁a ab, identity normalizer (no charsmap). */
static pbw tiny_model(void) {
    pbw w = {0};
    pbw_piece(&w, "<pad>", 0, 3);
    pbw_piece(&w, "</s>", 0, 3);
    pbw_piece(&w, "<unk>", 0, 2);
    pbw_piece(&w, SP, -1.0f, 1);
    pbw_piece(&w, "a", -2.0f, 1);
    pbw_piece(&w, "b", -2.0f, 1);
    pbw_piece(&w, SP "a", -1.5f, 1);
    pbw_piece(&w, "ab", -1.0f, 1);
    return w;
}

static fk_status load_pbw(fk_context *ctx, const pbw *w, fk_t5_tokenizer **t) {
    return fk_t5_tokenizer_load_memory(ctx, w->v, w->n, "synthetic.model", t);
}

static bool encode_is(fk_context *ctx, const fk_t5_tokenizer *t, const char *text, const int64_t *want, size_t n) {
    int64_t *ids = NULL;
    size_t nids = 0;
    fk_status st = fk_t5_tokenizer_encode_unpadded(ctx, t, text, strlen(text), &ids, &nids);
    bool ok = st == FK_OK && nids == n && memcmp(ids, want, n * sizeof *ids) == 0;
    if (!ok) {
        fprintf(stderr, "  '%s' -> (%s)", text, fk_status_name(st));
        for (size_t i = 0; i < nids; i++) fprintf(stderr, " %lld", (long long)ids[i]);
        fprintf(stderr, "\n");
    }
    free(ids);
    return ok;
}

static void test_synthetic(fk_context *ctx) {
    /* valid tiny model: scores chosen so the best paths are unambiguous
     * (hand-computed: "a b" = ▁a(-1.5) ▁(-1) b(-2); "ab c" = ▁ ab ▁ <unk>,
     * unk score = min(-2) - 10) */
    pbw w = tiny_model();
    fk_t5_tokenizer *t = NULL;
    CHECK(load_pbw(ctx, &w, &t) == FK_OK);
    if (t) {
        CHECK(fk_t5_tokenizer_eos_id(t) == 1 && fk_t5_tokenizer_pad_id(t) == 0 && fk_t5_tokenizer_unk_id(t) == 2);
        CHECK(encode_is(ctx, t, "a b", (const int64_t[]){6, 3, 5, 1}, 4));
        CHECK(encode_is(ctx, t, "  ab   c  ", (const int64_t[]){3, 7, 3, 2, 1}, 5));
        CHECK(encode_is(ctx, t, "ccc", (const int64_t[]){3, 2, 1}, 3));           /* one merged <unk> */
        CHECK(encode_is(ctx, t, "c\xC3\xA9" "c", (const int64_t[]){3, 2, 1}, 3)); /* multi-byte unknowns */
        CHECK(encode_is(ctx, t, "", (const int64_t[]){1}, 1));
        CHECK(encode_is(ctx, t, " \t ", (const int64_t[]){3, 2, 1}, 3)); /* identity: a tab is a character */
        CHECK(encode_is(ctx, t, "</s>", (const int64_t[]){3, 2, 1}, 3)); /* special strings are text */
        int64_t ids[3];
        int used = 0;
        CHECK(fk_t5_tokenizer_encode(ctx, t, "a b", 3, 3, ids, &used) == FK_OK && ids[0] == 6 && ids[1] == 3 &&
              ids[2] == 1 && used == 3);
        CHECK(fk_t5_tokenizer_encode(ctx, t, "a", 1, 1, ids, &used) == FK_OK && ids[0] == 1 && used == 1);
        CHECK(fk_t5_tokenizer_encode(ctx, t, "a", 1, 0, ids, &used) == FK_ERR_ARG);
        CHECK(fk_t5_tokenizer_encode_unpadded(ctx, t, "a\xC3", 2, &(int64_t *){NULL}, &(size_t){0}) == FK_ERR_ARG);
        CHECK(strstr(fk_context_error(ctx), "UTF-8") != NULL);
        CHECK(!strcmp(fk_t5_tokenizer_piece(t, 7), "ab") && fk_t5_tokenizer_piece(t, 8) == NULL);
        fk_t5_tokenizer_free(t);
    }
    free(w.v);

    /* a user-defined piece wins and bypasses normalization */
    w = tiny_model();
    pbw_piece(&w, "c<x>", 0.0f, 4);
    CHECK(load_pbw(ctx, &w, &t) == FK_OK);
    if (t) {
        CHECK(encode_is(ctx, t, "c<x>a", (const int64_t[]){3, 8, 4, 1}, 4));
        fk_t5_tokenizer_free(t);
    }
    free(w.v);

    struct {
        const char *what;
        fk_status want;
    } cases[] = {
        {"no pieces", FK_ERR_FORMAT},     {"no unk", FK_ERR_FORMAT},        {"two unk", FK_ERR_FORMAT},
        {"duplicate", FK_ERR_FORMAT},     {"empty piece", FK_ERR_FORMAT},   {"bad type", FK_ERR_FORMAT},
        {"wire type", FK_ERR_FORMAT},     {"truncated", FK_ERR_FORMAT},     {"bad varint", FK_ERR_FORMAT},
        {"bpe", FK_ERR_UNSUPPORTED},      {"byte fallback", FK_ERR_UNSUPPORTED}, {"byte piece", FK_ERR_FORMAT},
        {"charsmap size", FK_ERR_FORMAT}, {"group", FK_ERR_FORMAT},         {"bad utf8 piece", FK_ERR_FORMAT},
        {"no eos", FK_ERR_FORMAT},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const char *what = cases[c].what;
        pbw m = {0};
        if (strcmp(what, "no pieces") != 0 && strcmp(what, "no unk") != 0 && strcmp(what, "no eos") != 0)
            m = tiny_model();
        if (!strcmp(what, "no unk")) {
            pbw_piece(&m, "<pad>", 0, 3);
            pbw_piece(&m, "</s>", 0, 3);
            pbw_piece(&m, "a", -1, 1);
        } else if (!strcmp(what, "no eos")) {
            pbw_piece(&m, "<unk>", 0, 2);
            pbw_piece(&m, "a", -1, 1);
        } else if (!strcmp(what, "two unk")) {
            pbw_piece(&m, "<unk2>", 0, 2);
        } else if (!strcmp(what, "duplicate")) {
            pbw_piece(&m, "ab", -3, 1);
        } else if (!strcmp(what, "empty piece")) {
            pbw_piece(&m, "", -3, 1);
        } else if (!strcmp(what, "bad type")) {
            pbw_piece(&m, "zz", -3, 9);
        } else if (!strcmp(what, "wire type")) {
            pbw p = {0};
            pbw_bytes(&p, 1, "zz", 2);
            pbw_key(&p, 2, 0); /* score as a varint */
            pbw_varint(&p, 3);
            pbw_bytes(&m, 1, p.v, p.n);
            free(p.v);
        } else if (!strcmp(what, "truncated")) {
            m.n -= 3;
        } else if (!strcmp(what, "bad varint")) {
            static const uint8_t v[] = {0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01};
            pbw_put(&m, v, sizeof v);
        } else if (!strcmp(what, "bpe") || !strcmp(what, "byte fallback")) {
            pbw ts = {0};
            pbw_key(&ts, !strcmp(what, "bpe") ? 3 : 35, 0);
            pbw_varint(&ts, !strcmp(what, "bpe") ? 2 : 1);
            pbw_bytes(&m, 2, ts.v, ts.n);
            free(ts.v);
        } else if (!strcmp(what, "byte piece")) {
            pbw_piece(&m, "<0x41>", 0, 6);
        } else if (!strcmp(what, "charsmap size")) {
            pbw ns = {0};
            static const uint8_t cm[] = {0xFF, 0x00, 0x00, 0x00, 1, 2, 3, 4, 5, 6, 7, 8};
            pbw_bytes(&ns, 2, cm, sizeof cm);
            pbw_bytes(&m, 3, ns.v, ns.n);
            free(ns.v);
        } else if (!strcmp(what, "group")) {
            pbw_key(&m, 7, 3);
        } else if (!strcmp(what, "bad utf8 piece")) {
            pbw_piece(&m, "\xC3(", -3, 1);
        }
        fk_t5_tokenizer *bad = NULL;
        fk_status st = load_pbw(ctx, &m, &bad);
        CHECKF(st == cases[c].want && bad == NULL, "%s: got %s (%s)", what, fk_status_name(st), fk_context_error(ctx));
        if (st != FK_OK) CHECKF(strstr(fk_context_error(ctx), "synthetic.model") != NULL, "%s: message '%s'", what,
                                fk_context_error(ctx));
        fk_t5_tokenizer_free(bad);
        free(m.v);
    }

    /* a charsmap whose trie points outside its string table: loads (like
     * SentencePiece), and encoding reports the corruption instead of reading
     * out of bounds. Units: root offset 1 -> node 1^'a'; that unit has label
     * 'a', has_leaf, offset 0; the value unit there says 1000. */
    {
        uint32_t units[256] = {0};
        units[0] = 1u << 10; /* offset 1 */
        uint32_t node = 1 ^ 'a';
        units[node] = 'a' | (1u << 8) | ((node ^ 200u) << 10); /* leaf unit at node ^ offset = 200 */
        units[200] = 1000u | (1u << 31);
        pbw cmap = {0};
        uint8_t hdr[4] = {0, 4, 0, 0}; /* 1024 bytes of trie */
        pbw_put(&cmap, hdr, 4);
        for (int i = 0; i < 256; i++) {
            uint8_t b[4] = {(uint8_t)units[i], (uint8_t)(units[i] >> 8), (uint8_t)(units[i] >> 16),
                            (uint8_t)(units[i] >> 24)};
            pbw_put(&cmap, b, 4);
        }
        pbw_put(&cmap, "x\0", 2);
        pbw ns = {0};
        pbw_bytes(&ns, 2, cmap.v, cmap.n);
        pbw m = tiny_model();
        pbw_bytes(&m, 3, ns.v, ns.n);
        fk_t5_tokenizer *bad = NULL;
        CHECK(load_pbw(ctx, &m, &bad) == FK_OK);
        if (bad) {
            int64_t *ids = NULL;
            size_t nids = 0;
            CHECK(encode_is(ctx, bad, "b", (const int64_t[]){3, 5, 1}, 3)); /* no rule for 'b' */
            CHECK(fk_t5_tokenizer_encode_unpadded(ctx, bad, "a", 1, &ids, &nids) == FK_ERR_FORMAT);
            free(ids);
            fk_t5_tokenizer_free(bad);
        }
        free(cmap.v);
        free(ns.v);
        free(m.v);
    }
}

/* Random corruption of the tiny model and truncations of the real one: the
 * loader must never crash; whatever loads must encode. */
static void test_fuzz(fk_context *ctx, const char *real, size_t real_n) {
    uint64_t s = 0x9E3779B97F4A7C15ull;
    pbw base = tiny_model();
    int loaded = 0, rejected = 0;
    for (int it = 0; it < 3000; it++) {
        uint8_t *buf = malloc(base.n);
        memcpy(buf, base.v, base.n);
        int flips = 1 + it % 4;
        for (int f = 0; f < flips; f++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            buf[s % base.n] ^= (uint8_t)(s >> 32);
        }
        fk_t5_tokenizer *t = NULL;
        if (fk_t5_tokenizer_load_memory(ctx, buf, base.n, "fuzz.model", &t) == FK_OK) {
            loaded++;
            int64_t ids[16];
            fk_t5_tokenizer_encode(ctx, t, "ab c a\xC3\xA9", 8, 16, ids, NULL);
            fk_t5_tokenizer_free(t);
        } else {
            rejected++;
        }
        free(buf);
    }
    free(base.v);
    for (size_t cut = 1; real && cut < real_n; cut = cut * 3 + 7) {
        fk_t5_tokenizer *t = NULL;
        if (fk_t5_tokenizer_load_memory(ctx, real, cut, "cut.model", &t) == FK_OK) {
            loaded++;
            int64_t ids[16];
            fk_t5_tokenizer_encode(ctx, t, "a photo of a cat", 16, 16, ids, NULL);
            fk_t5_tokenizer_free(t);
        } else {
            rejected++;
        }
    }
    printf("t5 fuzz: %d corrupted models loaded, %d rejected, no crash\n", loaded, rejected);
    CHECK(rejected > 0);
}

static void test_dirs(fk_context *ctx, const char *real, size_t real_n) {
    fk_t5_tokenizer *t = NULL;
    CHECK(fk_t5_tokenizer_load_dir(ctx, "tests/data/no-such-folder", &t) == FK_ERR_IO && t == NULL);
    CHECK(strstr(fk_context_error(ctx), "no-such-folder/spiece.model") != NULL);
    /* a model folder with tokenizer_2/spiece.model */
    char tmpl[] = "/tmp/fk_t5tok_XXXXXX";
    char *dir = mkdtemp(tmpl);
    CHECK(dir != NULL);
    if (!dir || !real) return;
    char sub[512], path[600];
    snprintf(sub, sizeof sub, "%s/tokenizer_2", dir);
    mkdir(sub, 0700);
    snprintf(path, sizeof path, "%s/spiece.model", sub);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(real, 1, real_n, f);
        fclose(f);
    }
    CHECK(fk_t5_tokenizer_load_dir(ctx, dir, &t) == FK_OK);
    if (t) CHECK(encode_is(ctx, t, "a cat", (const int64_t[]){3, 9, 1712, 1}, 4));
    fk_t5_tokenizer_free(t);
    remove(path);
    rmdir(sub);
    rmdir(dir);
}

int main(void) {
    fk_context *ctx = fk_context_create(1);
    fk_t5_tokenizer *tok = NULL, *tok_dir = NULL;
    double t0 = now_s();
    /* the embedded model (or, in a build without it, the repository's copy) */
    fk_status st = fk_vocab_data_available() ? fk_t5_tokenizer_load_default(ctx, &tok)
                                             : fk_t5_tokenizer_load_dir(ctx, "data/tokenizers/t5", &tok);
    double t_load = now_s() - t0;
    CHECKF(st == FK_OK, "load_default: %s", fk_context_error(ctx));
    st = fk_t5_tokenizer_load_dir(ctx, "data/tokenizers/t5", &tok_dir);
    CHECKF(st == FK_OK, "load_dir: %s", fk_context_error(ctx));
    if (tok) {
        printf("t5: embedded model loaded in %.1f ms, %lld pieces\n", 1e3 * t_load,
               (long long)fk_t5_tokenizer_vocab_size(tok));
        CHECK(fk_t5_tokenizer_vocab_size(tok) == 32000);
        CHECK(fk_t5_tokenizer_eos_id(tok) == 1 && fk_t5_tokenizer_pad_id(tok) == 0 && fk_t5_tokenizer_unk_id(tok) == 2);
        char *norm = NULL;
        size_t nl = 0;
        /* README: "a▁b ▁" -> "▁a▁b"; full-width folding; ① -> 1 */
        CHECK(fk_t5_tokenizer_normalize(ctx, tok, "a" SP "b " SP, 9, &norm, &nl) == FK_OK && norm &&
              !strcmp(norm, SP "a" SP "b"));
        free(norm);
        CHECK(fk_t5_tokenizer_normalize(ctx, tok, "\xEF\xBC\xA1\xE2\x91\xA0", 6, &norm, &nl) == FK_OK && norm &&
              !strcmp(norm, SP "A1"));
        free(norm);
        test_corpus(ctx, tok, tok_dir);
    }
    size_t real_n = 0;
    char *real = read_all("data/tokenizers/t5/spiece.model", &real_n);
    test_synthetic(ctx);
    test_fuzz(ctx, real, real_n);
    test_dirs(ctx, real, real_n);
    free(real);
    fk_t5_tokenizer_free(tok);
    fk_t5_tokenizer_free(tok_dir);
    fk_context_free(ctx);
    return fk_test_finish("test_tokenizer_t5");
}
