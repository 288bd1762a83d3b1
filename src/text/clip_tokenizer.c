/* text/clip_tokenizer: CLIP byte-level BPE (see clip_tokenizer.h). */
#include "text/clip_tokenizer.h"

#include "io/st_private.h" /* fk_st_printable */

#include "text/ftfy.h"
#include "text/unicode.h"
#include "text/vocab_data.h"

#include <cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FK_CLIP_MAX_MERGES (49152 - 256 - 2) /* the reference reads merges.txt lines [1, 48895) */
#define FK_CLIP_MAX_VOCAB (1 << 24)

struct fk_clip_tokenizer {
    int32_t n_vocab;      /* max id + 1 */
    uint32_t *tok_off;    /* (n_vocab) offset of the id's string in tok_chars, UINT32_MAX if none */
    char *tok_chars;      /* NUL-separated vocabulary strings */
    int32_t byte_id[256];     /* id of the byte's symbol */
    int32_t byte_end_id[256]; /* id of the byte's symbol + "</w>" */
    int32_t bos_id, eos_id, pad_id;
    /* merge table: open addressing on (left id, right id) */
    uint64_t *m_key;  /* (m_cap) (left << 32) | right, UINT64_MAX = empty */
    int32_t *m_rank;  /* (m_cap) rank = line index in merges.txt minus one */
    int32_t *m_res;   /* (m_cap) id of the merged symbol */
    size_t m_cap;
    bool well_formed; /* every merge's operands are created at lower ranks */
    bool naive;       /* testing hook: always use the reference loop */
};

/* ---- GPT-2 byte alphabet ------------------------------------------------- */

static uint32_t fk_clip_byte_cp(int b) {
    /* printable Latin-1 bytes map to themselves, the rest to U+0100.. in order */
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return (uint32_t)b;
    int n = 0;
    for (int c = 0; c < b; c++)
        if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF))) n++;
    return 256u + (uint32_t)n;
}

/* ---- string -> id map used while loading ---------------------------------- */

typedef struct fk_strmap {
    const char **key; /* (cap) NUL-terminated, NULL = empty */
    uint64_t *hash;   /* (cap) hash of the key */
    int32_t *val;
    size_t cap;
} fk_strmap;

static uint64_t fk_hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static bool fk_strmap_init(fk_strmap *m, size_t count) {
    m->cap = 16;
    while (m->cap < count * 2 + 16) m->cap *= 2;
    m->key = calloc(m->cap, sizeof *m->key);
    m->hash = calloc(m->cap, sizeof *m->hash);
    m->val = calloc(m->cap, sizeof *m->val);
    return m->key && m->hash && m->val;
}

static void fk_strmap_free(fk_strmap *m) {
    free(m->key);
    free(m->hash);
    free(m->val);
}

/* Insert or overwrite (a later duplicate key wins, as in a Python dict). */
static void fk_strmap_put(fk_strmap *m, const char *k, int32_t v) {
    uint64_t h = fk_hash_bytes(k, strlen(k));
    size_t i = h & (m->cap - 1);
    while (m->key[i] && (m->hash[i] != h || strcmp(m->key[i], k) != 0)) i = (i + 1) & (m->cap - 1);
    m->key[i] = k;
    m->hash[i] = h;
    m->val[i] = v;
}

static int32_t fk_strmap_get(const fk_strmap *m, const char *k, size_t n) {
    uint64_t h = fk_hash_bytes(k, n);
    size_t i = h & (m->cap - 1);
    while (m->key[i]) {
        if (m->hash[i] == h && strncmp(m->key[i], k, n) == 0 && m->key[i][n] == '\0') return m->val[i];
        i = (i + 1) & (m->cap - 1);
    }
    return -1;
}

/* ---- merge table ---------------------------------------------------------- */

static uint64_t fk_pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

static size_t fk_pair_slot(uint64_t key, size_t cap) {
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 17) & (cap - 1);
}

/* Slot of pair (a, b) or the empty slot where it would go. */
static size_t fk_merge_find(const fk_clip_tokenizer *t, int32_t a, int32_t b) {
    uint64_t key = fk_pair_key(a, b);
    size_t i = fk_pair_slot(key, t->m_cap);
    while (t->m_key[i] != UINT64_MAX && t->m_key[i] != key) i = (i + 1) & (t->m_cap - 1);
    return i;
}

/* Rank and merged id of the pair, or false when the pair is not a merge. */
static inline bool fk_merge_get(const fk_clip_tokenizer *t, int32_t a, int32_t b, int32_t *rank, int32_t *res) {
    size_t i = fk_merge_find(t, a, b);
    if (t->m_key[i] == UINT64_MAX) return false;
    *rank = t->m_rank[i];
    *res = t->m_res[i];
    return true;
}

/* ---- loading -------------------------------------------------------------- */

void fk_clip_tokenizer_free(fk_clip_tokenizer *tok) {
    if (!tok) return;
    free(tok->tok_off);
    free(tok->tok_chars);
    free(tok->m_key);
    free(tok->m_rank);
    free(tok->m_res);
    free(tok);
}

static fk_status fk_clip_parse_vocab(fk_context *ctx, fk_clip_tokenizer *t, const char *json, size_t len,
                                     const char *name, cJSON **root_out, fk_strmap *map) {
    if (!fk_utf8_valid(json, len, NULL)) {
        size_t off = 0;
        fk_utf8_valid(json, len, &off);
        return fk_error(ctx, FK_ERR_FORMAT, "%s: not valid UTF-8 at byte %zu", name, off);
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, false);
    if (!root) {
        size_t off = end && end >= json && end <= json + len ? (size_t)(end - json) : 0;
        return fk_error(ctx, FK_ERR_FORMAT, "%s: not valid JSON (error near byte %zu)", name, off);
    }
    *root_out = root;
    if (!cJSON_IsObject(root))
        return fk_error(ctx, FK_ERR_FORMAT, "%s: expected a JSON object mapping token strings to ids", name);
    size_t count = 0, chars = 0;
    int32_t max_id = -1;
    for (cJSON *e = root->child; e; e = e->next) {
        if (!e->string) return fk_error(ctx, FK_ERR_FORMAT, "%s: entry without a key", name);
        char shown[64]; /* escaped: keys may hold control characters (one-line messages) */
        if (!cJSON_IsNumber(e))
            return fk_error(ctx, FK_ERR_FORMAT, "%s: token \"%s\" has a non-numeric id", name,
                            fk_st_printable(e->string, shown, sizeof(shown)));
        double v = e->valuedouble;
        if (!(v >= 0 && v < FK_CLIP_MAX_VOCAB) || v != floor(v))
            return fk_error(ctx, FK_ERR_FORMAT, "%s: token \"%s\" has id %g, expected an integer in [0, %d)", name,
                            fk_st_printable(e->string, shown, sizeof(shown)), v, FK_CLIP_MAX_VOCAB);
        if ((int32_t)v > max_id) max_id = (int32_t)v;
        count++;
        chars += strlen(e->string) + 1;
    }
    if (count == 0) return fk_error(ctx, FK_ERR_FORMAT, "%s: empty vocabulary", name);
    if (chars > UINT32_MAX - 1) return fk_error(ctx, FK_ERR_FORMAT, "%s: vocabulary strings too large", name);
    t->n_vocab = max_id + 1;
    t->tok_off = malloc((size_t)t->n_vocab * sizeof *t->tok_off);
    t->tok_chars = malloc(chars);
    if (!t->tok_off || !t->tok_chars || !fk_strmap_init(map, count))
        return fk_error(ctx, FK_ERR_NOMEM, "%s: out of memory", name);
    for (int32_t i = 0; i < t->n_vocab; i++) t->tok_off[i] = UINT32_MAX;
    size_t pos = 0;
    for (cJSON *e = root->child; e; e = e->next) {
        int32_t id = (int32_t)e->valuedouble;
        size_t n = strlen(e->string) + 1;
        memcpy(t->tok_chars + pos, e->string, n);
        if (t->tok_off[id] == UINT32_MAX) t->tok_off[id] = (uint32_t)pos;
        pos += n;
        fk_strmap_put(map, e->string, id);
    }
    return FK_OK;
}

/* Split one merges.txt line into its whitespace-separated fields (Python's
 * str.split()). Returns the number of fields found (up to 3 are recorded). */
static int fk_clip_split_fields(const char *s, size_t n, size_t fo[3], size_t fl[3]) {
    int nf = 0;
    size_t i = 0;
    while (i < n) {
        uint32_t cp = 0;
        size_t k = fk_utf8_decode1((const uint8_t *)s + i, n - i, &cp);
        if (k == 0) k = 1; /* cannot happen: validated before */
        if (fk_uc_is_py_space(cp)) {
            i += k;
            continue;
        }
        size_t start = i;
        while (i < n) {
            k = fk_utf8_decode1((const uint8_t *)s + i, n - i, &cp);
            if (k == 0) k = 1;
            if (fk_uc_is_py_space(cp)) break;
            i += k;
        }
        if (nf < 3) {
            fo[nf] = start;
            fl[nf] = i - start;
        }
        nf++;
    }
    return nf;
}

static fk_status fk_clip_parse_merges(fk_context *ctx, fk_clip_tokenizer *t, const char *txt, size_t len,
                                      const char *name, const fk_strmap *vocab) {
    size_t bad = 0;
    if (!fk_utf8_valid(txt, len, &bad))
        return fk_error(ctx, FK_ERR_FORMAT, "%s: not valid UTF-8 at byte %zu", name, bad);
    /* The reference: read().strip().split("\n")[1:48895]. */
    size_t b = 0, e = len;
    while (b < e && ((unsigned char)txt[b] <= ' ' && fk_uc_is_py_space((unsigned char)txt[b]))) b++;
    while (e > b && ((unsigned char)txt[e - 1] <= ' ' && fk_uc_is_py_space((unsigned char)txt[e - 1]))) e--;
    size_t n_lines = 0;
    for (size_t i = b; i < e; i++) n_lines += txt[i] == '\n';
    n_lines++;
    size_t n_merges = n_lines > 1 ? n_lines - 1 : 0;
    if (n_merges > FK_CLIP_MAX_MERGES) n_merges = FK_CLIP_MAX_MERGES;
    t->m_cap = 16;
    while (t->m_cap < n_merges * 2 + 16) t->m_cap *= 2;
    t->m_key = malloc(t->m_cap * sizeof *t->m_key);
    t->m_rank = malloc(t->m_cap * sizeof *t->m_rank);
    t->m_res = malloc(t->m_cap * sizeof *t->m_res);
    if (!t->m_key || !t->m_rank || !t->m_res) return fk_error(ctx, FK_ERR_NOMEM, "%s: out of memory", name);
    for (size_t i = 0; i < t->m_cap; i++) t->m_key[i] = UINT64_MAX;

    char sym[3][512];
    size_t pos = b, line = 0;
    while (pos <= e && line <= n_merges) {
        size_t eol = pos;
        while (eol < e && txt[eol] != '\n') eol++;
        if (line >= 1) {
            size_t fo[3], fl[3];
            int nf = fk_clip_split_fields(txt + pos, eol - pos, fo, fl);
            if (nf != 2)
                return fk_error(ctx, FK_ERR_FORMAT, "%s: line %zu: expected two symbols separated by a space, found %d",
                                name, line + 1, nf);
            if (fl[0] + fl[1] >= sizeof sym[0])
                return fk_error(ctx, FK_ERR_FORMAT, "%s: line %zu: symbols longer than %zu bytes", name, line + 1,
                                sizeof sym[0] - 1);
            memcpy(sym[0], txt + pos + fo[0], fl[0]);
            sym[0][fl[0]] = '\0';
            memcpy(sym[1], txt + pos + fo[1], fl[1]);
            sym[1][fl[1]] = '\0';
            memcpy(sym[2], sym[0], fl[0]);
            memcpy(sym[2] + fl[0], sym[1], fl[1] + 1);
            int32_t ia = fk_strmap_get(vocab, sym[0], fl[0]);
            int32_t ib = fk_strmap_get(vocab, sym[1], fl[1]);
            int32_t ir = fk_strmap_get(vocab, sym[2], fl[0] + fl[1]);
            for (int q = 0; q < 3; q++) {
                int32_t id = q == 0 ? ia : q == 1 ? ib : ir;
                char shown[80];
                if (id < 0)
                    return fk_error(ctx, FK_ERR_FORMAT, "%s: line %zu: symbol \"%s\" is not in vocab.json", name,
                                    line + 1, fk_st_printable(sym[q], shown, sizeof(shown)));
            }
            size_t slot = fk_merge_find(t, ia, ib);
            t->m_key[slot] = fk_pair_key(ia, ib); /* a repeated pair keeps its last rank, like dict() */
            t->m_rank[slot] = (int32_t)(line - 1);
            t->m_res[slot] = ir;
        }
        line++;
        pos = eol + 1;
    }
    /* Well-formedness: a merge may only use symbols created at lower ranks;
     * then merging the lowest (rank, position) first with a heap equals the
     * reference's "merge all occurrences of the best pair" rounds. */
    int32_t *created = malloc((size_t)t->n_vocab * sizeof *created);
    if (!created) return fk_error(ctx, FK_ERR_NOMEM, "%s: out of memory", name);
    for (int32_t i = 0; i < t->n_vocab; i++) created[i] = -1;
    for (size_t i = 0; i < t->m_cap; i++)
        if (t->m_key[i] != UINT64_MAX && t->m_rank[i] > created[t->m_res[i]]) created[t->m_res[i]] = t->m_rank[i];
    t->well_formed = true;
    for (size_t i = 0; i < t->m_cap && t->well_formed; i++) {
        if (t->m_key[i] == UINT64_MAX) continue;
        int32_t a = (int32_t)(t->m_key[i] >> 32), bb = (int32_t)(t->m_key[i] & 0xFFFFFFFFu);
        if (created[a] >= t->m_rank[i] || created[bb] >= t->m_rank[i]) t->well_formed = false;
    }
    free(created);
    return FK_OK;
}

fk_status fk_clip_tokenizer_load_memory(fk_context *ctx, const char *vocab_json, size_t vocab_len,
                                        const char *vocab_name, const char *merges_txt, size_t merges_len,
                                        const char *merges_name, fk_clip_tokenizer **out) {
    *out = NULL;
    if (!vocab_json || !merges_txt) return fk_error(ctx, FK_ERR_ARG, "clip tokenizer: missing vocab or merges data");
    if (!vocab_name) vocab_name = "vocab.json";
    if (!merges_name) merges_name = "merges.txt";
    fk_clip_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return fk_error(ctx, FK_ERR_NOMEM, "clip tokenizer: out of memory");
    cJSON *root = NULL;
    fk_strmap map = {0};
    fk_status st = fk_clip_parse_vocab(ctx, t, vocab_json, vocab_len, vocab_name, &root, &map);
    for (int b = 0; st == FK_OK && b < 256; b++) {
        uint8_t u[8];
        size_t k = fk_utf8_encode1(fk_clip_byte_cp(b), u);
        char s[16];
        memcpy(s, u, k);
        memcpy(s + k, "</w>", 5);
        t->byte_id[b] = fk_strmap_get(&map, s, k);
        t->byte_end_id[b] = fk_strmap_get(&map, s, k + 4);
        if (t->byte_id[b] < 0 || t->byte_end_id[b] < 0) {
            s[k] = '\0';
            st = fk_error(ctx, FK_ERR_FORMAT, "%s: the symbol \"%s\" of byte 0x%02X (or \"%s</w>\") is missing",
                          vocab_name, s, b, s);
        }
    }
    if (st == FK_OK) {
        t->bos_id = fk_strmap_get(&map, "<|startoftext|>", 15);
        t->eos_id = fk_strmap_get(&map, "<|endoftext|>", 13);
        t->pad_id = t->eos_id;
        if (t->bos_id < 0 || t->eos_id < 0)
            st = fk_error(ctx, FK_ERR_FORMAT, "%s: special tokens <|startoftext|> and <|endoftext|> are required",
                          vocab_name);
    }
    if (st == FK_OK) st = fk_clip_parse_merges(ctx, t, merges_txt, merges_len, merges_name, &map);
    fk_strmap_free(&map);
    cJSON_Delete(root);
    if (st != FK_OK) {
        fk_clip_tokenizer_free(t);
        return st;
    }
    *out = t;
    return FK_OK;
}

fk_status fk_clip_tokenizer_load_default(fk_context *ctx, fk_clip_tokenizer **out) {
    *out = NULL;
    fk_vocab_blob v = fk_vocab_data_get(FK_VOCAB_CLIP_VOCAB_JSON);
    fk_vocab_blob m = fk_vocab_data_get(FK_VOCAB_CLIP_MERGES_TXT);
    if (!v.data || !m.data)
        return fk_error(ctx, FK_ERR_UNSUPPORTED,
                        "clip tokenizer: this build has no embedded vocabulary (FK_EMBED_VOCAB=OFF); "
                        "pass a tokenizer folder with vocab.json and merges.txt");
    return fk_clip_tokenizer_load_memory(ctx, (const char *)v.data, v.size, v.name, (const char *)m.data, m.size,
                                         m.name, out);
}

fk_status fk_clip_tokenizer_load_dir(fk_context *ctx, const char *dir, fk_clip_tokenizer **out) {
    *out = NULL;
    if (!dir || !*dir) return fk_error(ctx, FK_ERR_ARG, "clip tokenizer: empty folder name");
    size_t dl = strlen(dir);
    char *vp = malloc(dl + 32), *mp = malloc(dl + 32);
    if (!vp || !mp) {
        free(vp);
        free(mp);
        return fk_error(ctx, FK_ERR_NOMEM, "clip tokenizer: out of memory");
    }
    snprintf(vp, dl + 32, "%s/vocab.json", dir);
    snprintf(mp, dl + 32, "%s/merges.txt", dir);
    if (!fk_vocab_file_exists(vp)) {
        snprintf(vp, dl + 32, "%s/tokenizer/vocab.json", dir);
        snprintf(mp, dl + 32, "%s/tokenizer/merges.txt", dir);
        if (!fk_vocab_file_exists(vp)) snprintf(vp, dl + 32, "%s/vocab.json", dir); /* name the expected file */
    }
    char *vd = NULL, *md = NULL;
    size_t vn = 0, mn = 0;
    fk_status st = fk_vocab_read_file(ctx, vp, &vd, &vn);
    if (st == FK_OK) st = fk_vocab_read_file(ctx, mp, &md, &mn);
    if (st == FK_OK) st = fk_clip_tokenizer_load_memory(ctx, vd, vn, vp, md, mn, mp, out);
    free(vd);
    free(md);
    free(vp);
    free(mp);
    return st;
}

/* ---- accessors -------------------------------------------------------------- */

const char *fk_clip_tokenizer_token(const fk_clip_tokenizer *tok, int64_t id) {
    if (!tok || id < 0 || id >= tok->n_vocab || tok->tok_off[id] == UINT32_MAX) return NULL;
    return tok->tok_chars + tok->tok_off[id];
}
int64_t fk_clip_tokenizer_vocab_size(const fk_clip_tokenizer *tok) { return tok->n_vocab; }
int64_t fk_clip_tokenizer_bos_id(const fk_clip_tokenizer *tok) { return tok->bos_id; }
int64_t fk_clip_tokenizer_eos_id(const fk_clip_tokenizer *tok) { return tok->eos_id; }
int64_t fk_clip_tokenizer_pad_id(const fk_clip_tokenizer *tok) { return tok->pad_id; }
void fk_clip_tokenizer_set_naive_bpe(fk_clip_tokenizer *tok, bool naive) { tok->naive = naive; }

/* ---- cleaning (steps 1-4) --------------------------------------------------- */

static void fk_strip_py(const fk_cpbuf *b, size_t *lo, size_t *hi) {
    size_t s = 0, e = b->n;
    while (s < e && fk_uc_is_py_space(b->v[s])) s++;
    while (e > s && fk_uc_is_py_space(b->v[e - 1])) e--;
    *lo = s;
    *hi = e;
}

/* Steps 1-4 on valid UTF-8 text; result in *out (code points). */
static bool fk_clip_clean(const char *text, size_t len, fk_cpbuf *out) {
    fk_cpbuf a = {0}, b = {0};
    bool ok = fk_utf8_to_cps(text, len, &a);
    if (ok) ok = fk_ftfy_fix_text(a.v, a.n, &b); /* 1. ftfy */
    if (ok) {
        a.n = 0;
        ok = fk_html_unescape(b.v, b.n, &a); /* 2. html.unescape(html.unescape(.)) */
    }
    if (ok) {
        b.n = 0;
        ok = fk_html_unescape(a.v, a.n, &b);
    }
    if (ok) { /* .strip(), then whitespace_clean: \s+ -> ' ', .strip() */
        size_t lo, hi;
        fk_strip_py(&b, &lo, &hi);
        a.n = 0;
        for (size_t i = lo; ok && i < hi; i++) {
            if (fk_uc_is_white_space(b.v[i])) {
                while (i + 1 < hi && fk_uc_is_white_space(b.v[i + 1])) i++;
                ok = fk_cpbuf_push(&a, ' ');
            } else {
                ok = fk_cpbuf_push(&a, b.v[i]);
            }
        }
        if (ok) {
            fk_strip_py(&a, &lo, &hi);
            ok = fk_uc_py_lower(a.v ? a.v + lo : a.v, hi - lo, out); /* 4. lower() */
        }
    }
    fk_cpbuf_free(&a);
    fk_cpbuf_free(&b);
    return ok;
}

fk_status fk_clip_tokenizer_clean_text(fk_context *ctx, const char *text, size_t len, char **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    size_t bad = 0;
    if (!text && len) return fk_error(ctx, FK_ERR_ARG, "clip tokenizer: NULL text");
    if (!fk_utf8_valid(text, len, &bad))
        return fk_error(ctx, FK_ERR_ARG, "clip tokenizer: text is not valid UTF-8 (byte %zu)", bad);
    fk_cpbuf c = {0};
    fk_bytebuf u = {0};
    bool ok = fk_clip_clean(text, len, &c) && fk_cps_to_utf8(c.v, c.n, &u) && fk_bytebuf_reserve(&u, u.n);
    fk_cpbuf_free(&c);
    if (!ok) {
        fk_bytebuf_free(&u);
        return fk_error(ctx, FK_ERR_NOMEM, "clip tokenizer: out of memory");
    }
    *out = u.v;
    *out_len = u.n;
    return FK_OK;
}

/* ---- BPE -------------------------------------------------------------------- */

typedef struct fk_bpe_cand {
    int32_t rank, pos; /* heap order: lowest rank, then leftmost */
    int32_t a, b;      /* the pair's ids when pushed (stale check) */
} fk_bpe_cand;

/* Per-call scratch for the merge loop. */
typedef struct fk_bpe_work {
    int32_t *sym, *next, *prev; /* (cap) symbol ids and links; sym < 0 = merged away */
    fk_bpe_cand *heap;          /* (hcap) */
    size_t cap, hcap, hn;
} fk_bpe_work;

static void fk_bpe_work_free(fk_bpe_work *w) {
    free(w->sym);
    free(w->next);
    free(w->prev);
    free(w->heap);
}

static bool fk_bpe_reserve(fk_bpe_work *w, size_t n) {
    if (n <= w->cap) return true;
    size_t nc = w->cap ? w->cap : 64;
    while (nc < n) nc *= 2;
    int32_t *s = realloc(w->sym, nc * sizeof *s);
    if (s) w->sym = s;
    int32_t *x = realloc(w->next, nc * sizeof *x);
    if (x) w->next = x;
    int32_t *p = realloc(w->prev, nc * sizeof *p);
    if (p) w->prev = p;
    if (!s || !x || !p) return false;
    w->cap = nc;
    return true;
}

static bool fk_cand_less(const fk_bpe_cand *x, const fk_bpe_cand *y) {
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static bool fk_heap_push(fk_bpe_work *w, fk_bpe_cand c) {
    if (w->hn == w->hcap) {
        size_t nc = w->hcap ? w->hcap * 2 : 64;
        fk_bpe_cand *h = realloc(w->heap, nc * sizeof *h);
        if (!h) return false;
        w->heap = h;
        w->hcap = nc;
    }
    size_t i = w->hn++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!fk_cand_less(&c, &w->heap[p])) break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = c;
    return true;
}

static fk_bpe_cand fk_heap_pop(fk_bpe_work *w) {
    fk_bpe_cand top = w->heap[0], last = w->heap[--w->hn];
    if (w->hn == 0) return top;
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = l;
        if (l >= w->hn) break;
        if (r < w->hn && fk_cand_less(&w->heap[r], &w->heap[l])) m = r;
        if (!fk_cand_less(&w->heap[m], &last)) break;
        w->heap[i] = w->heap[m];
        i = m;
    }
    w->heap[i] = last;
    return top;
}

static bool fk_bpe_push_pair(const fk_clip_tokenizer *t, fk_bpe_work *w, int32_t pos) {
    if (pos < 0 || w->next[pos] < 0) return true;
    int32_t nx = w->next[pos];
    int32_t rank, res;
    if (!fk_merge_get(t, w->sym[pos], w->sym[nx], &rank, &res)) return true;
    fk_bpe_cand c = {rank, pos, w->sym[pos], w->sym[nx]};
    return fk_heap_push(w, c);
}

/* Heap-based merging: pop the lowest (rank, position) pair still present. */
static bool fk_bpe_heap(const fk_clip_tokenizer *t, fk_bpe_work *w, int32_t n) {
    w->hn = 0;
    for (int32_t i = 0; i + 1 < n; i++)
        if (!fk_bpe_push_pair(t, w, i)) return false;
    while (w->hn) {
        fk_bpe_cand c = fk_heap_pop(w);
        int32_t i = c.pos, j = w->next[i];
        if (w->sym[i] != c.a || j < 0 || w->sym[j] != c.b) continue; /* stale */
        int32_t rank = 0, res = -1;
        if (!fk_merge_get(t, c.a, c.b, &rank, &res)) continue; /* cannot happen: pushed as a merge */
        w->sym[i] = res;
        w->sym[j] = -1;
        w->next[i] = w->next[j];
        if (w->next[j] >= 0) w->prev[w->next[j]] = i;
        if (w->prev[i] >= 0 && !fk_bpe_push_pair(t, w, w->prev[i])) return false;
        if (!fk_bpe_push_pair(t, w, i)) return false;
    }
    return true;
}

/* The reference loop: find the lowest-ranked adjacent pair, merge all of its
 * non-overlapping occurrences left to right, repeat. Symbols compacted in sym. */
static int32_t fk_bpe_naive(const fk_clip_tokenizer *t, fk_bpe_work *w, int32_t n) {
    while (n > 1) {
        int32_t best_rank = INT32_MAX, ba = -1, bb = -1, bres = -1;
        for (int32_t i = 0; i + 1 < n; i++) {
            int32_t rank, res;
            if (fk_merge_get(t, w->sym[i], w->sym[i + 1], &rank, &res) && rank < best_rank) {
                best_rank = rank, ba = w->sym[i], bb = w->sym[i + 1], bres = res;
            }
        }
        if (best_rank == INT32_MAX) break;
        int32_t o = 0;
        for (int32_t i = 0; i < n;) {
            if (i + 1 < n && w->sym[i] == ba && w->sym[i + 1] == bb) {
                w->sym[o++] = bres;
                i += 2;
            } else {
                w->sym[o++] = w->sym[i++];
            }
        }
        n = o;
    }
    return n;
}

/* BPE-encode one pre-token (code points) and append its ids. */
static bool fk_clip_bpe_word(const fk_clip_tokenizer *t, const uint32_t *cps, size_t ncp, fk_bpe_work *w,
                             fk_idbuf *out) {
    if (ncp > (size_t)INT32_MAX / 8) return false;
    if (!fk_bpe_reserve(w, ncp * 4)) return false;
    int32_t n = 0;
    for (size_t i = 0; i < ncp; i++) {
        uint8_t u[4];
        size_t k = fk_utf8_encode1(cps[i], u);
        for (size_t q = 0; q < k; q++) w->sym[n++] = t->byte_id[u[q]];
        if (i + 1 == ncp) w->sym[n - 1] = t->byte_end_id[u[k - 1]];
    }
    if (n == 0) return true;
    if (t->naive || !t->well_formed) {
        n = fk_bpe_naive(t, w, n);
        for (int32_t i = 0; i < n; i++)
            if (!fk_idbuf_push(out, w->sym[i])) return false;
        return true;
    }
    for (int32_t i = 0; i < n; i++) {
        w->next[i] = i + 1 < n ? i + 1 : -1;
        w->prev[i] = i - 1;
    }
    if (!fk_bpe_heap(t, w, n)) return false;
    for (int32_t i = 0; i >= 0; i = w->next[i])
        if (!fk_idbuf_push(out, w->sym[i])) return false;
    return true;
}

/* ---- pre-tokenizer (step 5) ------------------------------------------------- */

/* Literal match under IGNORECASE on lower-cased text: 's' also matches U+017F. */
static size_t fk_match_lit(const uint32_t *t, size_t n, size_t i, const char *lit, bool *exact) {
    size_t k = 0;
    for (; lit[k]; k++) {
        if (i + k >= n) return 0;
        uint32_t c = t[i + k];
        if (c == (uint32_t)(unsigned char)lit[k]) continue;
        if (lit[k] == 's' && c == 0x17F) {
            *exact = false;
            continue;
        }
        return 0;
    }
    return k;
}

static bool fk_clip_is_other(uint32_t c) {
    /* [^\s\p{L}\p{N}] under IGNORECASE: U+0345 (whose case variants are
     * letters) matches neither this class nor [\p{L}]. */
    return !fk_uc_is_white_space(c) && !fk_uc_is_letter(c) && !fk_uc_is_number(c) && c != 0x345;
}

static bool fk_clip_content(const fk_clip_tokenizer *t, const char *text, size_t len, fk_idbuf *out) {
    fk_cpbuf c = {0};
    fk_bpe_work w = {0};
    bool ok = fk_clip_clean(text, len, &c);
    static const char *const contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    size_t i = 0;
    while (ok && i < c.n) {
        uint32_t ch = c.v[i];
        size_t m = 0;
        bool exact = true;
        if (ch == '<') {
            if ((m = fk_match_lit(c.v, c.n, i, "<|startoftext|>", &exact)) > 0) {
                if (exact) {
                    ok = fk_idbuf_push(out, t->bos_id);
                    i += m;
                    continue;
                }
            } else if ((m = fk_match_lit(c.v, c.n, i, "<|endoftext|>", &exact)) > 0) {
                if (exact) {
                    ok = fk_idbuf_push(out, t->eos_id);
                    i += m;
                    continue;
                }
            }
        }
        if (m == 0 && ch == '\'') {
            for (size_t q = 0; q < sizeof contractions / sizeof contractions[0] && m == 0; q++)
                m = fk_match_lit(c.v, c.n, i, contractions[q], &exact);
        }
        if (m == 0) {
            if (fk_uc_is_letter(ch)) {
                m = 1;
                while (i + m < c.n && fk_uc_is_letter(c.v[i + m])) m++;
            } else if (fk_uc_is_number(ch)) {
                m = 1;
            } else if (fk_clip_is_other(ch)) {
                m = 1;
                while (i + m < c.n && fk_clip_is_other(c.v[i + m])) m++;
            } else {
                i++; /* whitespace (or U+0345): not part of any token */
                continue;
            }
        }
        ok = fk_clip_bpe_word(t, c.v + i, m, &w, out);
        i += m;
    }
    fk_cpbuf_free(&c);
    fk_bpe_work_free(&w);
    return ok;
}

/* ---- encode ------------------------------------------------------------------ */

static fk_status fk_clip_encode_ids(fk_context *ctx, const fk_clip_tokenizer *tok, const char *text, size_t len,
                                    fk_idbuf *ids) {
    if (!tok) return fk_error(ctx, FK_ERR_ARG, "clip tokenizer: NULL tokenizer");
    if (!text && len) return fk_error(ctx, FK_ERR_ARG, "clip tokenizer: NULL text");
    size_t bad = 0;
    if (!fk_utf8_valid(text, len, &bad))
        return fk_error(ctx, FK_ERR_ARG, "clip tokenizer: text is not valid UTF-8 (byte %zu)", bad);
    if (!fk_idbuf_push(ids, tok->bos_id) || !fk_clip_content(tok, text ? text : "", len, ids) ||
        !fk_idbuf_push(ids, tok->eos_id))
        return fk_error(ctx, FK_ERR_NOMEM, "clip tokenizer: out of memory (text of %zu bytes)", len);
    return FK_OK;
}

fk_status fk_clip_tokenizer_encode_unpadded(fk_context *ctx, const fk_clip_tokenizer *tok, const char *text,
                                            size_t len, int64_t **ids, size_t *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    fk_idbuf d = {0};
    fk_status st = fk_clip_encode_ids(ctx, tok, text, len, &d);
    if (st != FK_OK) {
        free(d.v);
        return st;
    }
    *ids = d.v;
    *n_ids = d.n;
    return FK_OK;
}

fk_status fk_clip_tokenizer_encode(fk_context *ctx, const fk_clip_tokenizer *tok, const char *text, size_t len,
                                   int max_length, int64_t *ids, int *n_used) {
    if (max_length < 2)
        return fk_error(ctx, FK_ERR_ARG, "clip tokenizer: max length %d, expected at least 2 (bos and eos)",
                        max_length);
    fk_idbuf d = {0};
    fk_status st = fk_clip_encode_ids(ctx, tok, text, len, &d);
    if (st != FK_OK) {
        free(d.v);
        return st;
    }
    /* d = [bos] + content + [eos]: keep [bos] + content[:max-2] + [eos] */
    size_t content = d.n - 2, keep = content < (size_t)max_length - 2 ? content : (size_t)max_length - 2;
    for (size_t i = 0; i < 1 + keep; i++) ids[i] = d.v[i];
    ids[1 + keep] = tok->eos_id;
    for (size_t i = keep + 2; i < (size_t)max_length; i++) ids[i] = tok->pad_id;
    if (n_used) *n_used = (int)(keep + 2);
    free(d.v);
    return FK_OK;
}
