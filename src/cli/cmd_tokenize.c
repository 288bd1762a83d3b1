/* fluxkit tokenize: prompts -> token ids with the CLIP or T5 tokenizer, as
 * FLUX frames them (CLIP 77, T5 512 for dev / 256 for schnell). */
#include "cli/cli_util.h"
#include "text/clip_tokenizer.h"
#include "text/t5_tokenizer.h"
#include "text/unicode.h"

#include <cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static void fk_tokenize_usage(FILE *f) {
    fprintf(f,
            "usage: fluxkit tokenize --tokenizer clip|t5 [OPTIONS] [FILE]\n"
            "\n"
            "Tokenize prompts exactly as FLUX's reference tokenizers do (CLIP: openai\n"
            "simple_tokenizer with ftfy, framed [49406] + content[:75] + [49407], padded with\n"
            "49407; T5: SentencePiece + </s>, padded with 0). The vocabularies are built in.\n"
            "\n"
            "Input (FILE, or stdin when FILE is absent or '-'): one prompt per line (a\n"
            "trailing \\r is dropped). A line starting with '{' that parses as a JSON object\n"
            "with a string field \"text\" is read as that text; a string field\n"
            "\"text_utf8_hex\", when present, gives the exact UTF-8 bytes instead (use it for\n"
            "texts holding U+0000 or newlines). Input must be valid UTF-8.\n"
            "Output (stdout): one JSON object per prompt, {\"ids\": [...]}, plus\n"
            "\"tokens\": [...] (vocabulary strings) with --tokens.\n"
            "\n"
            "options:\n"
            "  --tokenizer clip|t5  which tokenizer (required)\n"
            "  --max-length N       positions (default: clip 77, t5 512; FLUX.1-schnell uses 256)\n"
            "  --unpadded           every id, no truncation or padding (clip: bos + content + eos,\n"
            "                       t5: content + </s>)\n"
            "  --tokenizer-dir DIR  read vocab.json + merges.txt (clip) or spiece.model (t5) from\n"
            "                       DIR (or DIR/tokenizer, DIR/tokenizer_2) instead\n"
            "  --tokens             also write the token strings\n"
            "  -h, --help           this message\n");
}

typedef struct fk_tokenize_opts {
    bool t5, unpadded, tokens;
    long max_length; /* 0 = default */
    const char *dir, *file;
} fk_tokenize_opts;

typedef struct fk_tokenizers {
    fk_clip_tokenizer *clip;
    fk_t5_tokenizer *t5;
} fk_tokenizers;

/* JSON string of UTF-8 bytes s[0..n) onto out. */
static bool fk_json_str(fk_bytebuf *out, const char *s, size_t n) {
    bool ok = fk_bytebuf_push(out, '"');
    for (size_t i = 0; ok && i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') ok = fk_bytebuf_push(out, '\\') && fk_bytebuf_push(out, (char)c);
        else if (c < 0x20) ok = fk_bytebuf_printf(out, "\\u%04x", c);
        else ok = fk_bytebuf_push(out, (char)c);
    }
    return ok && fk_bytebuf_push(out, '"');
}

/* Decode a hex string into bytes; false when malformed. */
static bool fk_hex_bytes(const char *hex, fk_bytebuf *out) {
    size_t n = strlen(hex);
    if (n % 2) return false;
    out->n = 0;
    if (!fk_bytebuf_reserve(out, n / 2)) return false;
    for (size_t i = 0; i < n; i += 2) {
        int v = 0;
        for (int k = 0; k < 2; k++) {
            char c = hex[i + (size_t)k];
            int d = c >= '0' && c <= '9' ? c - '0' : (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10 : -1;
            if (d < 0) return false;
            v = v * 16 + d;
        }
        out->v[out->n++] = (char)v;
    }
    out->v[out->n] = '\0';
    return true;
}

/* The prompt of one input line: the line itself, or the JSON object's text. */
static bool fk_tokenize_line_text(char *line, size_t len, fk_bytebuf *hexbuf, const char **text, size_t *tlen,
                                  cJSON **json) {
    *text = line;
    *tlen = len;
    *json = NULL;
    if (len == 0 || line[0] != '{') return true;
    cJSON *o = cJSON_ParseWithLength(line, len);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return true;
    }
    const cJSON *hex = cJSON_GetObjectItemCaseSensitive(o, "text_utf8_hex");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "text");
    if (cJSON_IsString(hex) && fk_hex_bytes(hex->valuestring, hexbuf)) {
        *text = hexbuf->v;
        *tlen = hexbuf->n;
    } else if (cJSON_IsString(t)) {
        *text = t->valuestring;
        *tlen = strlen(t->valuestring);
    } else {
        cJSON_Delete(o);
        return true;
    }
    *json = o;
    return true;
}

static int fk_tokenize_run(const fk_tokenize_opts *o, FILE *in, const char *in_name) {
    fk_context *ctx = fk_context_create(1);
    if (!ctx) {
        fk_cli_error("out of memory");
        return FK_EXIT_ERROR;
    }
    fk_tokenizers tk = {0};
    fk_status st;
    if (o->t5)
        st = o->dir ? fk_t5_tokenizer_load_dir(ctx, o->dir, &tk.t5) : fk_t5_tokenizer_load_default(ctx, &tk.t5);
    else
        st = o->dir ? fk_clip_tokenizer_load_dir(ctx, o->dir, &tk.clip) : fk_clip_tokenizer_load_default(ctx, &tk.clip);
    if (st != FK_OK) {
        int rc = fk_cli_fail(ctx);
        fk_context_free(ctx);
        return rc;
    }
    long max_length = o->max_length ? o->max_length : o->t5 ? FK_T5_MAX_LENGTH_DEV : FK_CLIP_MAX_LENGTH;
    int64_t *framed = o->unpadded ? NULL : malloc((size_t)max_length * sizeof *framed);
    char *line = NULL;
    size_t cap = 0;
    fk_bytebuf out = {0}, hexbuf = {0};
    int rc = FK_EXIT_OK;
    long lineno = 0;
    if (!o->unpadded && !framed) {
        fk_cli_error("out of memory");
        rc = FK_EXIT_ERROR;
    }
    for (;;) {
        if (rc != FK_EXIT_OK) break;
        errno = 0;
        ssize_t got = getline(&line, &cap, in);
        if (got < 0) {
            if (ferror(in)) {
                fk_cli_error("%s: read error: %s", in_name, strerror(errno));
                rc = FK_EXIT_ERROR;
            }
            break;
        }
        lineno++;
        size_t len = (size_t)got;
        if (len && line[len - 1] == '\n') len--;
        if (len && line[len - 1] == '\r') len--;
        const char *text;
        size_t tlen;
        cJSON *json = NULL;
        fk_tokenize_line_text(line, len, &hexbuf, &text, &tlen, &json);
        size_t bad = 0;
        if (!fk_utf8_valid(text, tlen, &bad)) {
            fk_cli_error("%s: line %ld: text is not valid UTF-8 (byte %zu of the %s)", in_name, lineno, bad,
                         json ? "JSON text" : "line");
            cJSON_Delete(json);
            rc = FK_EXIT_ERROR;
            break;
        }
        int64_t *ids = framed, *unpadded = NULL;
        size_t n = 0;
        if (o->unpadded) {
            st = o->t5 ? fk_t5_tokenizer_encode_unpadded(ctx, tk.t5, text, tlen, &unpadded, &n)
                       : fk_clip_tokenizer_encode_unpadded(ctx, tk.clip, text, tlen, &unpadded, &n);
            ids = unpadded;
        } else {
            st = o->t5 ? fk_t5_tokenizer_encode(ctx, tk.t5, text, tlen, (int)max_length, framed, NULL)
                       : fk_clip_tokenizer_encode(ctx, tk.clip, text, tlen, (int)max_length, framed, NULL);
            n = (size_t)max_length;
        }
        cJSON_Delete(json);
        if (st != FK_OK) {
            fk_cli_error("%s: line %ld: %s", in_name, lineno, fk_context_error(ctx));
            rc = FK_EXIT_ERROR;
            free(unpadded);
            break;
        }
        out.n = 0;
        bool ok = fk_bytebuf_append(&out, "{\"ids\": [", 9);
        for (size_t i = 0; ok && i < n; i++) ok = fk_bytebuf_printf(&out, i ? ", %lld" : "%lld", (long long)ids[i]);
        ok = ok && fk_bytebuf_append(&out, "]", 1);
        if (ok && o->tokens) {
            ok = fk_bytebuf_append(&out, ", \"tokens\": [", 13);
            for (size_t i = 0; ok && i < n; i++) {
                const char *s = o->t5 ? fk_t5_tokenizer_piece(tk.t5, ids[i]) : fk_clip_tokenizer_token(tk.clip, ids[i]);
                if (!s) s = "";
                ok = (!i || fk_bytebuf_append(&out, ", ", 2)) && fk_json_str(&out, s, strlen(s));
            }
            ok = ok && fk_bytebuf_append(&out, "]", 1);
        }
        ok = ok && fk_bytebuf_append(&out, "}\n", 2);
        free(unpadded);
        if (!ok) {
            fk_cli_error("out of memory");
            rc = FK_EXIT_ERROR;
            break;
        }
        if (fwrite(out.v, 1, out.n, stdout) != out.n) {
            fk_cli_error("writing the output: %s", strerror(errno));
            rc = FK_EXIT_ERROR;
            break;
        }
    }
    if (rc == FK_EXIT_OK && fflush(stdout) != 0) {
        fk_cli_error("writing the output: %s", strerror(errno));
        rc = FK_EXIT_ERROR;
    }
    free(line);
    free(framed);
    fk_bytebuf_free(&out);
    fk_bytebuf_free(&hexbuf);
    fk_clip_tokenizer_free(tk.clip);
    fk_t5_tokenizer_free(tk.t5);
    fk_context_free(ctx);
    return rc;
}

int fk_cmd_tokenize(int argc, char **argv) {
    static const struct option longopts[] = {
        {"tokenizer", required_argument, NULL, 't'},     {"max-length", required_argument, NULL, 'm'},
        {"tokenizer-dir", required_argument, NULL, 'd'}, {"unpadded", no_argument, NULL, 'u'},
        {"tokens", no_argument, NULL, 'k'},              {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    fk_tokenize_opts o = {0};
    const char *which = NULL;
    fk_cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 't': which = optarg; break;
        case 'm':
            if (!fk_cli_parse_int("--max-length", optarg, 1, 1 << 20, &o.max_length)) return FK_EXIT_USAGE;
            break;
        case 'd': o.dir = optarg; break;
        case 'u': o.unpadded = true; break;
        case 'k': o.tokens = true; break;
        case 'h': fk_tokenize_usage(stdout); return FK_EXIT_OK;
        default: return fk_cli_getopt_failure("tokenize", argv, c);
        }
    }
    if (!which) return fk_cli_usage("tokenize", "missing --tokenizer clip|t5");
    if (!strcmp(which, "t5")) o.t5 = true;
    else if (strcmp(which, "clip") != 0)
        return fk_cli_usage("tokenize", "--tokenizer: unknown tokenizer '%s' (expected clip or t5)", which);
    if (!o.t5 && o.max_length == 1)
        return fk_cli_usage("tokenize", "--max-length: clip needs at least 2 positions (bos and eos)");
    if (o.unpadded && o.max_length)
        return fk_cli_usage("tokenize", "--unpadded and --max-length exclude each other");
    int npos = argc - optind;
    if (npos > 1) return fk_cli_usage("tokenize", "expected at most one FILE, got %d ('%s' is extra)", npos,
                                      argv[optind + 1]);
    o.file = npos ? argv[optind] : "-";
    FILE *in = stdin;
    const char *in_name = "<stdin>";
    if (strcmp(o.file, "-") != 0) {
        in = fopen(o.file, "rb");
        if (!in) {
            fk_cli_error("%s: cannot open: %s", o.file, strerror(errno));
            return FK_EXIT_ERROR;
        }
        in_name = o.file;
    }
    int rc = fk_tokenize_run(&o, in, in_name);
    if (in != stdin) fclose(in);
    return rc;
}
