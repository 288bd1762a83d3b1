/* CLIP tokenizer: exact agreement with openai CLIP's simple_tokenizer (ftfy
 * 6.3.1) on tests/data/tokenizers/public.jsonl — clip_ids (77 positions) and
 * clip_ids_unpadded on every record, those whose text ftfy changes (counted
 * and printed separately) included. Also: the cleaning steps against strings
 * computed with ftfy 6.3.1 + Python 3.11 (html.unescape, regex, str.lower),
 * hand-picked and in tests/data/tokenizers/clip_clean.jsonl, the heap merge
 * loop against the reference loop, the folder loader, and malformed
 * vocab.json / merges.txt.
 * Token ids are integers: every comparison is exact (tolerance 0). */
#include "text/clip_tokenizer.h"
#include "test.h"
#include "text/vocab_data.h"

#include <cJSON.h>
#include <stdint.h>
#include <time.h>

#define JSONL "tests/data/tokenizers/public.jsonl"

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

/* ---- the public corpus ---------------------------------------------------------- */

static void test_corpus(fk_context *ctx, fk_clip_tokenizer *tok, const fk_clip_tokenizer *tok_dir) {
    size_t n = 0;
    char *data = read_all(JSONL, &n);
    CHECKF(data != NULL, "cannot read %s (run from the repository root)", JSONL);
    if (!data) return;
    int plain = 0, plain_ok = 0, plain_ok77 = 0, ftfy_n = 0, ftfy_ok = 0, ftfy_ok77 = 0, naive_ok = 0, dir_ok = 0;
    int records = 0;
    double t_encode = 0;
    for (char *line = data; *line;) {
        char *eol = strchr(line, '\n');
        if (eol) *eol = '\0';
        cJSON *rec = cJSON_Parse(line);
        line = eol ? eol + 1 : line + strlen(line);
        if (!rec) continue;
        records++;
        const char *id = cJSON_GetObjectItem(rec, "id")->valuestring;
        const char *tag = cJSON_GetObjectItem(rec, "tag")->valuestring;
        bool ftfy = cJSON_IsTrue(cJSON_GetObjectItem(rec, "ftfy_changes_text"));
        size_t tl = 0;
        char *text = hex_decode(cJSON_GetObjectItem(rec, "text_utf8_hex")->valuestring, &tl);

        int64_t *ids = NULL;
        size_t nids = 0;
        double t0 = now_s();
        fk_status st = fk_clip_tokenizer_encode_unpadded(ctx, tok, text, tl, &ids, &nids);
        t_encode += now_s() - t0;
        bool good = st == FK_OK && ids_equal(cJSON_GetObjectItem(rec, "clip_ids_unpadded"), ids, nids);
        int64_t ids77[77];
        int used = 0;
        st = fk_clip_tokenizer_encode(ctx, tok, text, tl, 77, ids77, &used);
        bool good77 = st == FK_OK && ids_equal(cJSON_GetObjectItem(rec, "clip_ids"), ids77, 77) &&
                      ids77[used - 1] == 49407;
        if (ftfy) {
            ftfy_n++;
            ftfy_ok += good;
            ftfy_ok77 += good77;
            if (!good) printf("  ftfy record %s (%s) differs\n", id, tag);
        } else {
            plain++;
            plain_ok += good;
            plain_ok77 += good77;
            if (!good) {
                fprintf(stderr, "MISMATCH %s (%s): got", id, tag);
                for (size_t i = 0; i < nids && i < 30; i++) fprintf(stderr, " %lld", (long long)ids[i]);
                fprintf(stderr, "\n");
            }
        }
        /* the reference merge loop gives the same ids */
        int64_t *ids2 = NULL;
        size_t n2 = 0;
        fk_clip_tokenizer_set_naive_bpe(tok, true);
        st = fk_clip_tokenizer_encode_unpadded(ctx, tok, text, tl, &ids2, &n2);
        fk_clip_tokenizer_set_naive_bpe(tok, false);
        naive_ok += st == FK_OK && n2 == nids && memcmp(ids, ids2, n2 * sizeof *ids) == 0;
        free(ids2);
        if (tok_dir) {
            st = fk_clip_tokenizer_encode_unpadded(ctx, tok_dir, text, tl, &ids2, &n2);
            dir_ok += st == FK_OK && n2 == nids && memcmp(ids, ids2, n2 * sizeof *ids) == 0;
            free(ids2);
        }
        free(ids);
        free(text);
        cJSON_Delete(rec);
    }
    free(data);
    printf("clip: %d records; ftfy-unchanged: %d/%d unpadded, %d/%d clip_ids; ftfy-changed: %d/%d unpadded, "
           "%d/%d clip_ids; reference merge loop agrees on %d, folder-loaded on %d; encode %.1f ms total\n",
           records, plain_ok, plain, plain_ok77, plain, ftfy_ok, ftfy_n, ftfy_ok77, ftfy_n, naive_ok, dir_ok,
           1e3 * t_encode);
    CHECKF(records == 988, "%d records", records);
    CHECKF(plain_ok == plain && plain_ok77 == plain, "ftfy-unchanged records: %d and %d of %d", plain_ok, plain_ok77,
           plain);
    CHECKF(naive_ok == records, "heap vs reference merge loop: %d of %d", naive_ok, records);
    if (tok_dir) CHECKF(dir_ok == records, "folder-loaded: %d of %d", dir_ok, records);
    CHECKF(ftfy_ok == ftfy_n && ftfy_ok77 == ftfy_n, "ftfy-changed records: %d and %d of %d", ftfy_ok, ftfy_ok77,
           ftfy_n);
}

/* ---- cleaning ---------------------------------------------------------------------- */

/* Expected strings: ftfy.fix_text, html.unescape x2, strip, regex \s+ -> ' ',
 * strip, lower(), computed with ftfy 6.3.1 / Python 3.11. */
static void test_clean(fk_context *ctx) {
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"\xCE\x9F\xCE\x94\xCE\x9F\xCE\xA3 \xCE\xA3\xCE\x9F\xCE\xA6\xCE\x99\xCE\x91\xCE\xA3",
         "\xCE\xBF\xCE\xB4\xCE\xBF\xCF\x82 \xCF\x83\xCE\xBF\xCF\x86\xCE\xB9\xCE\xB1\xCF\x82"}, /* final sigma */
        {"\xC4\xB0stanbul", "i\xCC\x87stanbul"},                                            /* İ -> i̇ */
        {"\xCE\xA3", "\xCF\x83"},
        {"a\xCE\xA3 b", "a\xCF\x82 b"},
        {"\xEF\xAC\x81ne \xEF\xAC\x82ower", "fine flower"},
        {"\xEF\xBC\xA6\xEF\xBC\xB5\xEF\xBC\xAC\xEF\xBC\xAC\xE3\x80\x80\xEF\xBD\x97\xEF\xBD\x89\xEF\xBD\x84\xEF\xBD\x94"
         "\xEF\xBD\x88",
         "full width"},
        {"\xE2\x80\x9Cquoted\xE2\x80\x9D it\xE2\x80\x99s", "\"quoted\" it's"},
        {"&amp;amp; &lt &#12345 &unknown; &ampfoo &#x110000; &#128; &#0;",
         "& < \xE3\x80\xB9 &unknown; &foo \xEF\xBF\xBD \xE2\x82\xAC \xEF\xBF\xBD"},
        {"<b>&amp;</b>", "<b>&</b>"},
        {"a&amp;\n<x>&amp;", "a& <x>&"},
        {"line\r\nbreak\xE2\x80\xA8x\xC2\x85y", "line break x\xE2\x80\xA6y"},
        {"\x1b[31mred\x1b[0m \x01\x7f\xEF\xBB\xBF", "red"},
        {"\xEF\xBD\xB6\xEF\xBE\x80\xEF\xBD\xB6\xEF\xBE\x85", "\xE3\x82\xAB\xE3\x82\xBF\xE3\x82\xAB\xE3\x83\x8A"},
        {"&NTILDE; &AMP; &#x41; &#65", "\xC3\xB1 & a a"},
        {"a\xCD\x85" "b", "a\xCD\x85" "b"},
        {"\xC2\xA0 x \xE3\x80\x80", "x"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out = NULL;
        size_t n = 0;
        fk_status st = fk_clip_tokenizer_clean_text(ctx, cases[i].in, strlen(cases[i].in), &out, &n);
        CHECKF(st == FK_OK && out && n == strlen(cases[i].want) && !memcmp(out, cases[i].want, n),
               "clean case %zu: got '%s', want '%s'", i, out ? out : "(null)", cases[i].want);
        free(out);
    }
}

/* tests/data/tokenizers/clip_clean.jsonl (tools/gen_clip_clean_fixture.py):
 * 1500 random strings aimed at every ftfy fixer, mojibake included, with the
 * reference's cleaned text. */
static void test_clean_fixture(fk_context *ctx) {
    size_t n = 0;
    char *data = read_all("tests/data/tokenizers/clip_clean.jsonl", &n);
    CHECKF(data != NULL, "cannot read tests/data/tokenizers/clip_clean.jsonl");
    if (!data) return;
    int cases = 0, ok = 0;
    for (char *line = data; *line;) {
        char *eol = strchr(line, '\n');
        if (eol) *eol = '\0';
        cJSON *rec = cJSON_Parse(line);
        line = eol ? eol + 1 : line + strlen(line);
        if (!rec) continue;
        size_t il = 0, wl = 0;
        char *in = hex_decode(cJSON_GetObjectItem(rec, "in")->valuestring, &il);
        char *want = hex_decode(cJSON_GetObjectItem(rec, "clean")->valuestring, &wl);
        char *out = NULL;
        size_t ol = 0;
        fk_status st = fk_clip_tokenizer_clean_text(ctx, in, il, &out, &ol);
        bool good = st == FK_OK && ol == wl && memcmp(out, want, wl) == 0;
        if (!good && cases - ok < 5) fprintf(stderr, "clean fixture %d differs: '%s' -> '%s', want '%s'\n", cases, in,
                                             out ? out : "(null)", want);
        ok += good;
        cases++;
        free(in);
        free(want);
        free(out);
        cJSON_Delete(rec);
    }
    free(data);
    printf("clip: cleaning agrees with ftfy 6.3.1 + html.unescape + lower() on %d of %d random strings\n", ok, cases);
    CHECKF(cases == 1500 && ok == cases, "clean fixture: %d of %d", ok, cases);
}

/* ---- synthetic vocabularies ----------------------------------------------------------- */

static uint32_t byte_cp(int b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return (uint32_t)b;
    int n = 0;
    for (int c = 0; c < b; c++)
        if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF))) n++;
    return 256u + (uint32_t)n;
}

static void utf8_cp(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp, out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | (cp >> 6)), out[1] = (char)(0x80 | (cp & 0x3F)), out[2] = 0;
    }
}

/* vocab: 256 byte symbols, 256 with </w>, extra tokens, the two specials. */
static char *make_vocab(const char *const *extra, int n_extra, bool specials, int skip_byte) {
    cJSON *o = cJSON_CreateObject();
    int id = 0;
    char s[16];
    for (int b = 0; b < 256; b++) {
        utf8_cp(byte_cp(b), s);
        if (b != skip_byte) cJSON_AddNumberToObject(o, s, id);
        id++;
    }
    for (int b = 0; b < 256; b++) {
        utf8_cp(byte_cp(b), s);
        strcat(s, "</w>");
        cJSON_AddNumberToObject(o, s, id++);
    }
    for (int i = 0; i < n_extra; i++) cJSON_AddNumberToObject(o, extra[i], id++);
    if (specials) {
        cJSON_AddNumberToObject(o, "<|startoftext|>", id++);
        cJSON_AddNumberToObject(o, "<|endoftext|>", id++);
    }
    char *js = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return js;
}

static fk_status load_syn(fk_context *ctx, const char *vocab, const char *merges, fk_clip_tokenizer **t) {
    return fk_clip_tokenizer_load_memory(ctx, vocab, strlen(vocab), "syn/vocab.json", merges, strlen(merges),
                                         "syn/merges.txt", t);
}

static bool enc_is(fk_context *ctx, const fk_clip_tokenizer *t, const char *text, const int64_t *want, size_t n) {
    int64_t *ids = NULL;
    size_t nids = 0;
    fk_status st = fk_clip_tokenizer_encode_unpadded(ctx, t, text, strlen(text), &ids, &nids);
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
    /* ids: byte b's symbol = b, with </w> = 256 + b; then the extras from 512
     * (ab 512, ab</w> 513, abc</w> 514, c</w> 515, aba 516); specials 517, 518 */
    const char *extra[] = {"ab", "ab</w>", "abc</w>", "c</w>", "aba"};
    char *vocab = make_vocab(extra, 5, true, -1);
    fk_clip_tokenizer *t = NULL;
    CHECK(load_syn(ctx, vocab, "#version: 0.2\na b\nab c</w>\n", &t) == FK_OK);
    if (t) {
        CHECK(fk_clip_tokenizer_bos_id(t) == 517 && fk_clip_tokenizer_eos_id(t) == 518);
        CHECK(enc_is(ctx, t, "abc", (const int64_t[]){517, 514, 518}, 3));
        CHECK(enc_is(ctx, t, "ABC abd", (const int64_t[]){517, 514, 512, 256 + 'd', 518}, 5));
        CHECK(enc_is(ctx, t, "", (const int64_t[]){517, 518}, 2));
        CHECK(enc_is(ctx, t, "<|endoftext|>", (const int64_t[]){517, 518, 518}, 3));
        int64_t ids[4];
        int used = 0;
        CHECK(fk_clip_tokenizer_encode(ctx, t, "abc abc abc", 11, 4, ids, &used) == FK_OK && ids[0] == 517 &&
              ids[1] == 514 && ids[2] == 514 && ids[3] == 518 && used == 4);
        CHECK(fk_clip_tokenizer_encode(ctx, t, "abc", 3, 1, ids, &used) == FK_ERR_ARG);
        CHECK(fk_clip_tokenizer_encode(ctx, t, "\xFF", 1, 4, ids, &used) == FK_ERR_ARG);
        CHECK(strstr(fk_context_error(ctx), "UTF-8") != NULL);
        CHECK(!strcmp(fk_clip_tokenizer_token(t, 514), "abc</w>") && fk_clip_tokenizer_token(t, 999) == NULL);
        fk_clip_tokenizer_free(t);
    }
    /* not well formed ("ab a" uses "ab", created by the later "a b"): the
     * reference loop merges every "a b" first -> ab ab a b</w> -> ab aba b</w>,
     * where a heap would give aba b a b</w>; the loader detects it */
    CHECK(load_syn(ctx, vocab, "#version: 0.2\nab a\na b\n", &t) == FK_OK);
    if (t) {
        CHECK(enc_is(ctx, t, "ababab", (const int64_t[]){517, 512, 516, 256 + 'b', 518}, 5));
        fk_clip_tokenizer_free(t);
    }
    /* the header line is skipped whatever it holds; an empty file = no merges */
    CHECK(load_syn(ctx, vocab, "a b\n", &t) == FK_OK);
    if (t) {
        CHECK(enc_is(ctx, t, "ab", (const int64_t[]){517, 'a', 256 + 'b', 518}, 4));
        fk_clip_tokenizer_free(t);
    }
    CHECK(load_syn(ctx, vocab, "", &t) == FK_OK);
    fk_clip_tokenizer_free(t);

    struct {
        const char *what, *vocab, *merges, *msg;
    } bad[] = {
        {"invalid json", "{\"a\": 1,", "#v\n", "not valid JSON"},
        {"not an object", "[1, 2]", "#v\n", "JSON object"},
        {"string id", "{\"a\": \"1\"}", "#v\n", "non-numeric"},
        {"fractional id", "{\"a\": 1.5}", "#v\n", "expected an integer"},
        {"negative id", "{\"a\": -1}", "#v\n", "expected an integer"},
        {"huge id", "{\"a\": 1e12}", "#v\n", "expected an integer"},
        {"empty", "{}", "#v\n", "empty vocabulary"},
        {"bad utf8 vocab", "{\"\xC3(\": 1}", "#v\n", "UTF-8"},
        {"three fields", NULL, "#v\na b c\n", "line 2: expected two symbols"},
        {"one field", NULL, "#v\na b\nab\n", "line 3: expected two symbols"},
        {"unknown symbol", NULL, "#v\nq z\n", "not in vocab.json"},
        {"bad utf8 merges", NULL, "#v\na \xFF\n", "UTF-8"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fk_clip_tokenizer *b = NULL;
        fk_status st = load_syn(ctx, bad[i].vocab ? bad[i].vocab : vocab, bad[i].merges, &b);
        CHECKF(st == FK_ERR_FORMAT && b == NULL && strstr(fk_context_error(ctx), bad[i].msg) &&
                   strstr(fk_context_error(ctx), "syn/"),
               "%s: %s '%s'", bad[i].what, fk_status_name(st), fk_context_error(ctx));
        fk_clip_tokenizer_free(b);
    }
    free(vocab);
    /* a missing byte symbol, missing specials */
    vocab = make_vocab(extra, 5, true, 'x');
    CHECK(load_syn(ctx, vocab, "#v\n", &t) == FK_ERR_FORMAT && strstr(fk_context_error(ctx), "byte 0x78"));
    free(vocab);
    vocab = make_vocab(extra, 5, false, -1);
    CHECK(load_syn(ctx, vocab, "#v\n", &t) == FK_ERR_FORMAT && strstr(fk_context_error(ctx), "<|startoftext|>"));
    free(vocab);
    CHECK(fk_clip_tokenizer_load_dir(ctx, "tests/data/no-such-folder", &t) == FK_ERR_IO && t == NULL);
}

/* Random corruption of a small vocab/merges pair: never a crash. */
static void test_fuzz(fk_context *ctx) {
    const char *extra[] = {"ab", "ab</w>", "abc</w>", "c</w>"};
    char *vocab = make_vocab(extra, 4, true, -1);
    const char *merges = "#version: 0.2\na b\nab c</w>\n";
    size_t vn = strlen(vocab), mn = strlen(merges);
    uint64_t s = 88172645463325252ull;
    int loaded = 0, rejected = 0;
    for (int it = 0; it < 400; it++) {
        char *v = malloc(vn + 1), *m = malloc(mn + 1);
        memcpy(v, vocab, vn + 1);
        memcpy(m, merges, mn + 1);
        for (int f = 0; f < 1 + it % 3; f++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            if (s & 1) v[(s >> 8) % vn] ^= (char)(s >> 40);
            else m[(s >> 8) % mn] ^= (char)(s >> 40);
        }
        fk_clip_tokenizer *t = NULL;
        if (fk_clip_tokenizer_load_memory(ctx, v, vn, "v", m, mn, "m", &t) == FK_OK) {
            loaded++;
            int64_t ids[16];
            fk_clip_tokenizer_encode(ctx, t, "abc ab <|endoftext|> x", 22, 16, ids, NULL);
            fk_clip_tokenizer_free(t);
        } else {
            rejected++;
        }
        free(v);
        free(m);
    }
    free(vocab);
    printf("clip fuzz: %d corrupted files loaded, %d rejected, no crash\n", loaded, rejected);

    /* random text (code points from the ranges the cleaner treats specially)
     * through the whole pipeline: no failure, valid UTF-8 out */
    static const uint32_t pool[] = {'&', '#', ';', 'x', '1', 'a', 'A', ' ', '\n', '\r', 0x1B, '[', 'm', '<', 0x80,
                                    0x85, 0x9D, 0xA0, 0xC2, 0xC3, 0xE2, 0xF0, 0x1A, '?', 0xFB01, 0xFF21, 0xFF76,
                                    0x3000, 0x201C, 0x2019, 0x3A3, 0x130, 0x345, 0x301, 0x20AC, 0x153, 0x152, 0xFFFD,
                                    0x10000, 0x1F600, 0x4E00, 0x17F, 0x2028, 0xFEFF, 0x0};
    int bad_out = 0;
    for (int it = 0; it < 3000; it++) {
        char text[256];
        size_t tl = 0;
        int len = (int)(s % 24);
        for (int k = 0; k < len; k++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            uint32_t cp = pool[(s >> 11) % (sizeof pool / sizeof pool[0])];
            if (cp < 0x80) text[tl++] = (char)cp;
            else if (cp < 0x800) text[tl++] = (char)(0xC0 | (cp >> 6)), text[tl++] = (char)(0x80 | (cp & 0x3F));
            else if (cp < 0x10000)
                text[tl++] = (char)(0xE0 | (cp >> 12)), text[tl++] = (char)(0x80 | ((cp >> 6) & 0x3F)),
                text[tl++] = (char)(0x80 | (cp & 0x3F));
            else
                text[tl++] = (char)(0xF0 | (cp >> 18)), text[tl++] = (char)(0x80 | ((cp >> 12) & 0x3F)),
                text[tl++] = (char)(0x80 | ((cp >> 6) & 0x3F)), text[tl++] = (char)(0x80 | (cp & 0x3F));
        }
        char *out = NULL;
        size_t ol = 0;
        if (fk_clip_tokenizer_clean_text(ctx, text, tl, &out, &ol) != FK_OK) bad_out++;
        else {
            /* valid UTF-8: every byte sequence decodes (checked by re-cleaning, which validates first) */
            char *again = NULL;
            size_t al = 0;
            if (fk_clip_tokenizer_clean_text(ctx, out, ol, &again, &al) != FK_OK) bad_out++;
            free(again);
        }
        free(out);
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    }
    CHECKF(bad_out == 0, "random text: %d failures", bad_out);
    CHECK(rejected > 0 && loaded > 0);
}

int main(void) {
    fk_context *ctx = fk_context_create(1);
    fk_clip_tokenizer *tok = NULL, *tok_dir = NULL;
    double t0 = now_s();
    /* the embedded vocabulary (or, in a build without it, the repository's copy) */
    fk_status st = fk_vocab_data_available() ? fk_clip_tokenizer_load_default(ctx, &tok)
                                             : fk_clip_tokenizer_load_dir(ctx, "data/tokenizers/clip", &tok);
    double t_load = now_s() - t0;
    CHECKF(st == FK_OK, "load_default: %s", fk_context_error(ctx));
    st = fk_clip_tokenizer_load_dir(ctx, "data/tokenizers/clip", &tok_dir);
    CHECKF(st == FK_OK, "load_dir: %s", fk_context_error(ctx));
    if (tok) {
        printf("clip: embedded vocabulary loaded in %.1f ms, %lld ids\n", 1e3 * t_load,
               (long long)fk_clip_tokenizer_vocab_size(tok));
        CHECK(fk_clip_tokenizer_vocab_size(tok) == 49408);
        CHECK(fk_clip_tokenizer_bos_id(tok) == 49406 && fk_clip_tokenizer_eos_id(tok) == 49407 &&
              fk_clip_tokenizer_pad_id(tok) == 49407);
        test_corpus(ctx, tok, tok_dir);
    }
    test_clean(ctx);
    test_clean_fixture(ctx);
    test_synthetic(ctx);
    test_fuzz(ctx);
    fk_clip_tokenizer_free(tok);
    fk_clip_tokenizer_free(tok_dir);
    fk_context_free(ctx);
    return fk_test_finish("test_tokenizer_clip");
}
