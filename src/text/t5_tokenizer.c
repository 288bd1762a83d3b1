/* text/t5_tokenizer: SentencePiece unigram tokenizer (see t5_tokenizer.h). */
#include "text/t5_tokenizer.h"

#include "io/st_private.h" /* fk_st_printable_n */

#include "text/unicode.h"
#include "text/vocab_data.h"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { /* ModelProto.SentencePiece.Type */
    FK_SP_NORMAL = 1,
    FK_SP_UNKNOWN = 2,
    FK_SP_CONTROL = 3,
    FK_SP_USER_DEFINED = 4,
    FK_SP_UNUSED = 5,
    FK_SP_BYTE = 6,
};

#define FK_T5_MAX_PIECES (1 << 22)
#define FK_T5_TRIE_RESULTS 32 /* Normalizer::kMaxTrieResultsSize */
#define FK_T5_UNK_PENALTY 10.0f /* unigram kUnkPenalty */

struct fk_t5_tokenizer {
    int32_t n_pieces;
    uint32_t *piece_off; /* (n_pieces) offset of the piece in chars */
    uint32_t *piece_len; /* (n_pieces) bytes */
    float *score;        /* (n_pieces) */
    uint8_t *type;       /* (n_pieces) FK_SP_* */
    char *chars;         /* piece bytes, each followed by a NUL */
    /* byte trie of the NORMAL and USER_DEFINED pieces (the lattice): node 0 is
     * the root; a node's children are edges [edge_start[n], edge_start[n+1])
     * sorted by label */
    int32_t n_nodes;
    int32_t *node_piece;  /* (n_nodes) piece id ending at the node, -1 if none */
    int32_t *edge_start;  /* (n_nodes + 1) */
    uint8_t *edge_label;  /* (n_edges) */
    int32_t *edge_child;  /* (n_edges) */
    int32_t root_child[256];
    bool has_user_defined;
    float min_score, max_score; /* over NORMAL pieces */
    int32_t unk_id, eos_id, pad_id;
    /* normalizer */
    bool add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces, ws_as_suffix;
    uint32_t *cm_units; /* (cm_n) Darts double-array units, NULL = identity */
    size_t cm_n;
    char *cm_norm; /* (cm_norm_len) NUL-separated replacement strings */
    size_t cm_norm_len;
    char name[256];
};

/* ---- protobuf reader ------------------------------------------------------ */

typedef struct fk_pb {
    const uint8_t *p, *end;
} fk_pb;

static bool fk_pb_varint(fk_pb *r, uint64_t *v) {
    uint64_t x = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (r->p >= r->end) return false;
        uint8_t b = *r->p++;
        if (shift == 63 && b > 1) return false;
        x |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return true;
        }
    }
    return false;
}

/* Read a field's key; false at the end of the message or on error (*err). */
static bool fk_pb_key(fk_pb *r, uint32_t *field, int *wt, bool *err) {
    if (r->p >= r->end) return false;
    uint64_t k;
    if (!fk_pb_varint(r, &k) || (k >> 3) == 0 || (k >> 3) > 0x1FFFFFFF) {
        *err = true;
        return false;
    }
    *field = (uint32_t)(k >> 3);
    *wt = (int)(k & 7);
    return true;
}

static bool fk_pb_bytes(fk_pb *r, fk_pb *sub) {
    uint64_t n;
    if (!fk_pb_varint(r, &n) || n > (uint64_t)(r->end - r->p)) return false;
    sub->p = r->p;
    sub->end = r->p + n;
    r->p += n;
    return true;
}

static bool fk_pb_skip(fk_pb *r, int wt) {
    uint64_t v;
    fk_pb sub;
    switch (wt) {
    case 0: return fk_pb_varint(r, &v);
    case 1:
        if (r->end - r->p < 8) return false;
        r->p += 8;
        return true;
    case 2: return fk_pb_bytes(r, &sub);
    case 5:
        if (r->end - r->p < 4) return false;
        r->p += 4;
        return true;
    default: return false; /* groups (3, 4) and invalid types */
    }
}

static bool fk_pb_fixed32(fk_pb *r, uint32_t *v) {
    if (r->end - r->p < 4) return false;
    *v = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 | (uint32_t)r->p[3] << 24;
    r->p += 4;
    return true;
}

/* ---- model parsing ---------------------------------------------------------- */

typedef struct fk_t5_parse {
    fk_context *ctx;
    const char *name;
    /* growable piece arrays */
    int32_t n, cap;
    uint32_t *off, *len;
    float *score;
    uint8_t *type;
    char *chars;
    size_t nchars, chars_cap;
    /* trainer_spec */
    int64_t model_type, eos_id, pad_id;
    bool byte_fallback, ws_as_suffix;
    /* normalizer_spec */
    fk_pb charsmap;
    bool has_charsmap, add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces;
} fk_t5_parse;

static fk_status fk_t5_bad(fk_t5_parse *ps, const char *what) {
    return fk_error(ps->ctx, FK_ERR_FORMAT, "%s: malformed SentencePiece model: %s", ps->name, what);
}

static fk_status fk_t5_wire(fk_t5_parse *ps, const char *msg, uint32_t field, int wt, int expect) {
    return fk_error(ps->ctx, FK_ERR_FORMAT,
                    "%s: malformed SentencePiece model: %s field %u has wire type %d, expected %d", ps->name, msg,
                    field, wt, expect);
}

static fk_status fk_t5_parse_piece(fk_t5_parse *ps, fk_pb *r) {
    if (ps->n >= FK_T5_MAX_PIECES) return fk_t5_bad(ps, "more than 4194304 pieces");
    if (ps->n == ps->cap) {
        int32_t nc = ps->cap ? ps->cap * 2 : 1024;
        uint32_t *o = realloc(ps->off, (size_t)nc * sizeof *o);
        if (o) ps->off = o;
        uint32_t *l = realloc(ps->len, (size_t)nc * sizeof *l);
        if (l) ps->len = l;
        float *s = realloc(ps->score, (size_t)nc * sizeof *s);
        if (s) ps->score = s;
        uint8_t *t = realloc(ps->type, (size_t)nc * sizeof *t);
        if (t) ps->type = t;
        if (!o || !l || !s || !t) return fk_error(ps->ctx, FK_ERR_NOMEM, "%s: out of memory", ps->name);
        ps->cap = nc;
    }
    fk_pb str = {0};
    bool has_piece = false;
    float score = 0.0f;
    uint64_t type = FK_SP_NORMAL;
    uint32_t field;
    int wt;
    bool err = false;
    while (fk_pb_key(r, &field, &wt, &err)) {
        if (field == 1) {
            if (wt != 2) return fk_t5_wire(ps, "piece", field, wt, 2);
            if (!fk_pb_bytes(r, &str)) return fk_t5_bad(ps, "truncated piece string");
            has_piece = true;
        } else if (field == 2) {
            if (wt != 5) return fk_t5_wire(ps, "piece", field, wt, 5);
            uint32_t bits;
            if (!fk_pb_fixed32(r, &bits)) return fk_t5_bad(ps, "truncated piece score");
            memcpy(&score, &bits, sizeof score);
        } else if (field == 3) {
            if (wt != 0) return fk_t5_wire(ps, "piece", field, wt, 0);
            if (!fk_pb_varint(r, &type)) return fk_t5_bad(ps, "truncated piece type");
        } else if (!fk_pb_skip(r, wt)) {
            return fk_t5_bad(ps, "truncated field in a piece");
        }
    }
    if (err) return fk_t5_bad(ps, "invalid field key in a piece");
    size_t n = has_piece ? (size_t)(str.end - str.p) : 0;
    if (n == 0)
        return fk_error(ps->ctx, FK_ERR_FORMAT, "%s: malformed SentencePiece model: piece %d is empty", ps->name,
                        ps->n);
    if (type < FK_SP_NORMAL || type > FK_SP_BYTE)
        return fk_error(ps->ctx, FK_ERR_FORMAT, "%s: malformed SentencePiece model: piece %d has unknown type %llu",
                        ps->name, ps->n, (unsigned long long)type);
    if (!fk_utf8_valid((const char *)str.p, n, NULL))
        return fk_error(ps->ctx, FK_ERR_FORMAT, "%s: malformed SentencePiece model: piece %d is not valid UTF-8",
                        ps->name, ps->n);
    if (ps->nchars + n + 1 > UINT32_MAX) return fk_t5_bad(ps, "pieces too large");
    if (ps->nchars + n + 1 > ps->chars_cap) {
        size_t nc = ps->chars_cap ? ps->chars_cap : 1 << 16;
        while (nc < ps->nchars + n + 1) nc *= 2;
        char *c = realloc(ps->chars, nc);
        if (!c) return fk_error(ps->ctx, FK_ERR_NOMEM, "%s: out of memory", ps->name);
        ps->chars = c;
        ps->chars_cap = nc;
    }
    memcpy(ps->chars + ps->nchars, str.p, n);
    ps->chars[ps->nchars + n] = '\0';
    ps->off[ps->n] = (uint32_t)ps->nchars;
    ps->len[ps->n] = (uint32_t)n;
    ps->score[ps->n] = score;
    ps->type[ps->n] = (uint8_t)type;
    ps->nchars += n + 1;
    ps->n++;
    return FK_OK;
}

static fk_status fk_t5_parse_bool_or_int(fk_t5_parse *ps, fk_pb *r, const char *msg, uint32_t field, int wt,
                                         uint64_t *v) {
    if (wt != 0) return fk_t5_wire(ps, msg, field, wt, 0);
    if (!fk_pb_varint(r, v)) return fk_t5_bad(ps, "truncated varint");
    return FK_OK;
}

static fk_status fk_t5_parse_trainer(fk_t5_parse *ps, fk_pb *r) {
    uint32_t field;
    int wt;
    bool err = false;
    while (fk_pb_key(r, &field, &wt, &err)) {
        uint64_t v = 0;
        fk_status st = FK_OK;
        switch (field) {
        case 3: /* model_type */
        case 24: /* treat_whitespace_as_suffix */
        case 35: /* byte_fallback */
        case 42: /* eos_id */
        case 43: /* pad_id */
            st = fk_t5_parse_bool_or_int(ps, r, "trainer_spec", field, wt, &v);
            if (st != FK_OK) return st;
            if (field == 3) ps->model_type = (int64_t)v;
            if (field == 24) ps->ws_as_suffix = v != 0;
            if (field == 35) ps->byte_fallback = v != 0;
            if (field == 42) ps->eos_id = (int32_t)(int64_t)v;
            if (field == 43) ps->pad_id = (int32_t)(int64_t)v;
            break;
        default:
            if (!fk_pb_skip(r, wt)) return fk_t5_bad(ps, "truncated field in trainer_spec");
        }
    }
    if (err) return fk_t5_bad(ps, "invalid field key in trainer_spec");
    return FK_OK;
}

static fk_status fk_t5_parse_normalizer(fk_t5_parse *ps, fk_pb *r) {
    uint32_t field;
    int wt;
    bool err = false;
    while (fk_pb_key(r, &field, &wt, &err)) {
        uint64_t v = 0;
        fk_status st;
        switch (field) {
        case 2: /* precompiled_charsmap */
            if (wt != 2) return fk_t5_wire(ps, "normalizer_spec", field, wt, 2);
            if (!fk_pb_bytes(r, &ps->charsmap)) return fk_t5_bad(ps, "truncated precompiled_charsmap");
            ps->has_charsmap = ps->charsmap.end > ps->charsmap.p;
            break;
        case 3: /* add_dummy_prefix */
        case 4: /* remove_extra_whitespaces */
        case 5: /* escape_whitespaces */
            st = fk_t5_parse_bool_or_int(ps, r, "normalizer_spec", field, wt, &v);
            if (st != FK_OK) return st;
            if (field == 3) ps->add_dummy_prefix = v != 0;
            if (field == 4) ps->remove_extra_whitespaces = v != 0;
            if (field == 5) ps->escape_whitespaces = v != 0;
            break;
        default: /* name (1), normalization_rule_tsv (6), ... */
            if (!fk_pb_skip(r, wt)) return fk_t5_bad(ps, "truncated field in normalizer_spec");
        }
    }
    if (err) return fk_t5_bad(ps, "invalid field key in normalizer_spec");
    return FK_OK;
}

static fk_status fk_t5_parse_model(fk_t5_parse *ps, const uint8_t *data, size_t size) {
    fk_pb r = {data, data + size};
    uint32_t field;
    int wt;
    bool err = false;
    while (fk_pb_key(&r, &field, &wt, &err)) {
        fk_pb sub;
        fk_status st = FK_OK;
        if (field >= 1 && field <= 3) {
            if (wt != 2) return fk_t5_wire(ps, "ModelProto", field, wt, 2);
            if (!fk_pb_bytes(&r, &sub)) return fk_t5_bad(ps, "truncated message");
            if (field == 1) st = fk_t5_parse_piece(ps, &sub);
            else if (field == 2) st = fk_t5_parse_trainer(ps, &sub);
            else st = fk_t5_parse_normalizer(ps, &sub);
            if (st != FK_OK) return st;
        } else if (!fk_pb_skip(&r, wt)) {
            return fk_t5_bad(ps, "truncated field in ModelProto");
        }
    }
    if (err) return fk_t5_bad(ps, "invalid field key (not a SentencePiece model?)");
    return FK_OK;
}

/* ---- the lattice trie -------------------------------------------------------------- */

typedef struct fk_piece_key {
    const char *p;
    uint32_t len;
    int32_t id;
} fk_piece_key;

static int fk_piece_key_cmp(const void *x, const void *y) {
    const fk_piece_key *a = x, *b = y;
    int c = memcmp(a->p, b->p, a->len < b->len ? a->len : b->len);
    if (c) return c;
    return a->len < b->len ? -1 : a->len > b->len ? 1 : 0;
}

/* Child of `node` along byte c, or -1. */
static inline int32_t fk_t5_child(const fk_t5_tokenizer *t, int32_t node, uint8_t c) {
    if (node == 0) return t->root_child[c];
    int32_t lo = t->edge_start[node], hi = t->edge_start[node + 1];
    while (lo < hi) {
        int32_t m = lo + (hi - lo) / 2;
        if (t->edge_label[m] < c) lo = m + 1;
        else hi = m;
    }
    return lo < t->edge_start[node + 1] && t->edge_label[lo] == c ? t->edge_child[lo] : -1;
}

/* Build the trie from pieces sorted bytewise (keys[0..n)), breadth first so
 * that each node's edges are contiguous. */
static bool fk_t5_build_trie(fk_t5_tokenizer *t, const fk_piece_key *keys, int32_t n) {
    size_t max_nodes = 1;
    for (int32_t i = 0; i < n; i++) max_nodes += keys[i].len;
    if (max_nodes > INT32_MAX / 2) return false;
    t->node_piece = malloc(max_nodes * sizeof *t->node_piece);
    t->edge_start = malloc((max_nodes + 1) * sizeof *t->edge_start);
    t->edge_label = malloc(max_nodes * sizeof *t->edge_label);
    t->edge_child = malloc(max_nodes * sizeof *t->edge_child);
    int32_t *q_lo = malloc(max_nodes * sizeof *q_lo), *q_hi = malloc(max_nodes * sizeof *q_hi);
    uint32_t *q_d = malloc(max_nodes * sizeof *q_d);
    bool ok = t->node_piece && t->edge_start && t->edge_label && t->edge_child && q_lo && q_hi && q_d;
    if (ok) {
        int32_t nn = 1, ne = 0;
        q_lo[0] = 0, q_hi[0] = n, q_d[0] = 0;
        for (int32_t node = 0; node < nn; node++) {
            int32_t lo = q_lo[node], hi = q_hi[node];
            uint32_t d = q_d[node];
            t->node_piece[node] = -1;
            t->edge_start[node] = ne;
            if (lo < hi && keys[lo].len == d) t->node_piece[node] = keys[lo++].id; /* a prefix sorts first */
            while (lo < hi) {
                uint8_t c = (uint8_t)keys[lo].p[d];
                int32_t e = lo + 1;
                while (e < hi && (uint8_t)keys[e].p[d] == c) e++;
                t->edge_label[ne] = c;
                t->edge_child[ne++] = nn;
                q_lo[nn] = lo, q_hi[nn] = e, q_d[nn] = d + 1;
                nn++;
                lo = e;
            }
        }
        t->edge_start[nn] = ne;
        t->n_nodes = nn;
        for (int c = 0; c < 256; c++) t->root_child[c] = -1;
        for (int32_t e = t->edge_start[0]; e < t->edge_start[1]; e++) t->root_child[t->edge_label[e]] = t->edge_child[e];
    }
    free(q_lo);
    free(q_hi);
    free(q_d);
    return ok;
}

/* ---- loading ------------------------------------------------------------------- */

void fk_t5_tokenizer_free(fk_t5_tokenizer *tok) {
    if (!tok) return;
    free(tok->piece_off);
    free(tok->piece_len);
    free(tok->score);
    free(tok->type);
    free(tok->chars);
    free(tok->node_piece);
    free(tok->edge_start);
    free(tok->edge_label);
    free(tok->edge_child);
    free(tok->cm_units);
    free(tok->cm_norm);
    free(tok);
}

static int32_t fk_t5_find_piece(const fk_t5_tokenizer *t, const char *s) {
    size_t n = strlen(s);
    for (int32_t i = 0; i < t->n_pieces; i++)
        if (t->piece_len[i] == n && memcmp(t->chars + t->piece_off[i], s, n) == 0) return i;
    return -1;
}

static fk_status fk_t5_setup(fk_context *ctx, fk_t5_tokenizer *t, fk_t5_parse *ps) {
    const char *name = ps->name;
    if (ps->n == 0) return fk_error(ctx, FK_ERR_FORMAT, "%s: the SentencePiece model has no pieces", name);
    if (ps->model_type != 1)
        return fk_error(ctx, FK_ERR_UNSUPPORTED,
                        "%s: SentencePiece model type %lld is not supported (only unigram, as T5's)", name,
                        (long long)ps->model_type);
    if (ps->byte_fallback)
        return fk_error(ctx, FK_ERR_UNSUPPORTED, "%s: SentencePiece byte_fallback is not supported (T5 has none)",
                        name);
    t->n_pieces = ps->n;
    t->piece_off = ps->off, ps->off = NULL;
    t->piece_len = ps->len, ps->len = NULL;
    t->score = ps->score, ps->score = NULL;
    t->type = ps->type, ps->type = NULL;
    t->chars = ps->chars, ps->chars = NULL;
    t->add_dummy_prefix = ps->add_dummy_prefix;
    t->remove_extra_whitespaces = ps->remove_extra_whitespaces;
    t->escape_whitespaces = ps->escape_whitespaces;
    t->ws_as_suffix = ps->ws_as_suffix;

    t->unk_id = -1;
    t->min_score = FLT_MAX;
    t->max_score = FLT_MIN;
    for (int32_t i = 0; i < t->n_pieces; i++) {
        uint8_t ty = t->type[i];
        if (ty == FK_SP_UNKNOWN) {
            if (t->unk_id >= 0) return fk_error(ctx, FK_ERR_FORMAT, "%s: more than one <unk> piece", name);
            t->unk_id = i;
        }
        if (ty == FK_SP_BYTE)
            return fk_error(ctx, FK_ERR_FORMAT, "%s: byte piece %d found although byte_fallback is false", name, i);
        if (ty == FK_SP_USER_DEFINED) t->has_user_defined = true;
        if (ty == FK_SP_NORMAL) {
            if (t->score[i] < t->min_score) t->min_score = t->score[i];
            if (t->score[i] > t->max_score) t->max_score = t->score[i];
        }
    }
    if (t->unk_id < 0) return fk_error(ctx, FK_ERR_FORMAT, "%s: the model defines no unknown piece (<unk>)", name);

    /* sorted NORMAL/USER_DEFINED/UNUSED pieces, then the others; duplicates
     * within either group are an error (as in SentencePiece); UNUSED pieces are
     * dropped afterwards (the reference skips them in the lattice) */
    fk_piece_key *keys = malloc((size_t)t->n_pieces * sizeof *keys);
    if (!keys) return fk_error(ctx, FK_ERR_NOMEM, "%s: out of memory", name);
    int32_t na = 0, nk = 0;
    for (int32_t pass = 0; pass < 2; pass++) {
        for (int32_t i = 0; i < t->n_pieces; i++) {
            bool normal = t->type[i] == FK_SP_NORMAL || t->type[i] == FK_SP_USER_DEFINED || t->type[i] == FK_SP_UNUSED;
            if (normal == (pass == 0)) keys[nk++] = (fk_piece_key){t->chars + t->piece_off[i], t->piece_len[i], i};
        }
        if (pass == 0) na = nk;
    }
    qsort(keys, (size_t)na, sizeof *keys, fk_piece_key_cmp);
    qsort(keys + na, (size_t)(nk - na), sizeof *keys, fk_piece_key_cmp);
    for (int32_t i = 1; i < nk; i++) {
        if (i == na) continue; /* first of the second group */
        const fk_piece_key *x = &keys[i - 1], *y = &keys[i];
        if (x->len == y->len && memcmp(x->p, y->p, x->len) == 0) {
            int32_t lo = x->id < y->id ? x->id : y->id, hi = x->id < y->id ? y->id : x->id;
            free(keys);
            char shown[64]; /* escaped: a piece may hold control characters (one-line messages) */
            fk_st_printable_n(t->chars + t->piece_off[lo], (size_t)t->piece_len[lo], shown, sizeof(shown));
            return fk_error(ctx, FK_ERR_FORMAT, "%s: piece \"%s\" is defined twice (ids %d and %d)", name,
                            shown, lo, hi);
        }
    }
    int32_t nl = 0; /* the lattice skips UNUSED pieces */
    for (int32_t i = 0; i < na; i++)
        if (t->type[keys[i].id] != FK_SP_UNUSED) keys[nl++] = keys[i];
    bool built = fk_t5_build_trie(t, keys, nl);
    free(keys);
    if (!built) return fk_error(ctx, FK_ERR_NOMEM, "%s: out of memory", name);

    /* eos / pad as Hugging Face's T5Tokenizer: by piece name, else trainer_spec */
    t->eos_id = fk_t5_find_piece(t, "</s>");
    if (t->eos_id < 0 && ps->eos_id >= 0 && ps->eos_id < t->n_pieces) t->eos_id = (int32_t)ps->eos_id;
    t->pad_id = fk_t5_find_piece(t, "<pad>");
    if (t->pad_id < 0 && ps->pad_id >= 0 && ps->pad_id < t->n_pieces) t->pad_id = (int32_t)ps->pad_id;
    if (t->eos_id < 0 || t->pad_id < 0)
        return fk_error(ctx, FK_ERR_FORMAT, "%s: the model defines no %s piece", name, t->eos_id < 0 ? "</s>" : "<pad>");

    /* precompiled charsmap: <uint32 LE trie size><trie units><NUL-separated strings> */
    if (ps->has_charsmap) {
        const uint8_t *b = ps->charsmap.p;
        size_t n = (size_t)(ps->charsmap.end - ps->charsmap.p);
        uint32_t tsize = n > 4 ? ((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24) : 0;
        if (n <= 4 || tsize > n - 4 || tsize < 4)
            return fk_error(ctx, FK_ERR_FORMAT, "%s: normalizer precompiled_charsmap is broken (%zu bytes, trie %u)",
                            name, n, tsize);
        t->cm_n = tsize / 4;
        t->cm_units = malloc(t->cm_n * sizeof *t->cm_units);
        t->cm_norm_len = n - 4 - tsize;
        t->cm_norm = malloc(t->cm_norm_len + 1);
        if (!t->cm_units || !t->cm_norm) return fk_error(ctx, FK_ERR_NOMEM, "%s: out of memory", name);
        for (size_t i = 0; i < t->cm_n; i++) {
            const uint8_t *u = b + 4 + 4 * i;
            t->cm_units[i] = (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
        }
        memcpy(t->cm_norm, b + 4 + tsize, t->cm_norm_len);
        t->cm_norm[t->cm_norm_len] = '\0';
    }
    return FK_OK;
}

fk_status fk_t5_tokenizer_load_memory(fk_context *ctx, const void *data, size_t size, const char *name,
                                      fk_t5_tokenizer **out) {
    *out = NULL;
    if (!name) name = "spiece.model";
    if (!data && size) return fk_error(ctx, FK_ERR_ARG, "%s: NULL data", name);
    fk_t5_parse ps = {0};
    ps.ctx = ctx;
    ps.name = name;
    ps.model_type = 1;
    ps.eos_id = 2;
    ps.pad_id = -1;
    ps.add_dummy_prefix = ps.remove_extra_whitespaces = ps.escape_whitespaces = true;
    fk_t5_tokenizer *t = calloc(1, sizeof *t);
    fk_status st = t ? fk_t5_parse_model(&ps, data, size) : fk_error(ctx, FK_ERR_NOMEM, "%s: out of memory", name);
    if (st == FK_OK) {
        snprintf(t->name, sizeof t->name, "%s", name);
        st = fk_t5_setup(ctx, t, &ps);
    }
    free(ps.off);
    free(ps.len);
    free(ps.score);
    free(ps.type);
    free(ps.chars);
    if (st != FK_OK) {
        fk_t5_tokenizer_free(t);
        return st;
    }
    *out = t;
    return FK_OK;
}

fk_status fk_t5_tokenizer_load_default(fk_context *ctx, fk_t5_tokenizer **out) {
    *out = NULL;
    fk_vocab_blob b = fk_vocab_data_get(FK_VOCAB_T5_SPIECE_MODEL);
    if (!b.data)
        return fk_error(ctx, FK_ERR_UNSUPPORTED,
                        "t5 tokenizer: this build has no embedded vocabulary (FK_EMBED_VOCAB=OFF); "
                        "pass a tokenizer folder with spiece.model");
    return fk_t5_tokenizer_load_memory(ctx, b.data, b.size, b.name, out);
}

fk_status fk_t5_tokenizer_load_dir(fk_context *ctx, const char *dir, fk_t5_tokenizer **out) {
    *out = NULL;
    if (!dir || !*dir) return fk_error(ctx, FK_ERR_ARG, "t5 tokenizer: empty folder name");
    size_t dl = strlen(dir);
    char *path = malloc(dl + 32);
    if (!path) return fk_error(ctx, FK_ERR_NOMEM, "t5 tokenizer: out of memory");
    snprintf(path, dl + 32, "%s/spiece.model", dir);
    if (!fk_vocab_file_exists(path)) {
        snprintf(path, dl + 32, "%s/tokenizer_2/spiece.model", dir);
        if (!fk_vocab_file_exists(path)) snprintf(path, dl + 32, "%s/spiece.model", dir);
    }
    char *data = NULL;
    size_t size = 0;
    fk_status st = fk_vocab_read_file(ctx, path, &data, &size);
    if (st == FK_OK) st = fk_t5_tokenizer_load_memory(ctx, data, size, path, out);
    free(data);
    free(path);
    return st;
}

/* ---- accessors ----------------------------------------------------------------- */

const char *fk_t5_tokenizer_piece(const fk_t5_tokenizer *tok, int64_t id) {
    if (!tok || id < 0 || id >= tok->n_pieces) return NULL;
    return tok->chars + tok->piece_off[id];
}
int64_t fk_t5_tokenizer_vocab_size(const fk_t5_tokenizer *tok) { return tok->n_pieces; }
int64_t fk_t5_tokenizer_eos_id(const fk_t5_tokenizer *tok) { return tok->eos_id; }
int64_t fk_t5_tokenizer_pad_id(const fk_t5_tokenizer *tok) { return tok->pad_id; }
int64_t fk_t5_tokenizer_unk_id(const fk_t5_tokenizer *tok) { return tok->unk_id; }

/* ---- normalizer ---------------------------------------------------------------- */

/* Darts-clone commonPrefixSearch over the charsmap trie, keeping the longest
 * of the first 32 results (Normalizer::NormalizePrefix). Returns the matched
 * length (0 = no rule) and the replacement; -1 when the trie points outside
 * its string table. */
static long fk_t5_charsmap_match(const fk_t5_tokenizer *t, const uint8_t *s, size_t n, const char **rep,
                                 size_t *rep_len) {
    const uint32_t *a = t->cm_units;
    size_t nu = t->cm_n;
#define FK_DA_OFFSET(u) (((u) >> 10) << (((u) & (1u << 9)) >> 6))
#define FK_DA_LABEL(u) ((u) & ((1u << 31) | 0xFFu))
#define FK_DA_HAS_LEAF(u) (((u) >> 8) & 1u)
#define FK_DA_VALUE(u) ((u) & ((1u << 31) - 1))
    size_t node = FK_DA_OFFSET(a[0]);
    size_t best_len = 0;
    uint32_t best_val = 0;
    int found = 0;
    for (size_t i = 0; i < n; i++) {
        node ^= s[i];
        if (node >= nu) break;
        uint32_t u = a[node];
        if (FK_DA_LABEL(u) != s[i]) break;
        node ^= FK_DA_OFFSET(u);
        if (node >= nu) break;
        if (FK_DA_HAS_LEAF(u)) {
            if (found < FK_T5_TRIE_RESULTS && (best_len == 0 || i + 1 > best_len)) {
                best_len = i + 1;
                best_val = FK_DA_VALUE(a[node]);
            }
            found++;
        }
    }
#undef FK_DA_OFFSET
#undef FK_DA_LABEL
#undef FK_DA_HAS_LEAF
#undef FK_DA_VALUE
    if (best_len == 0) return 0;
    if (best_val >= t->cm_norm_len) return -1;
    *rep = t->cm_norm + best_val;
    *rep_len = strlen(*rep); /* cm_norm is NUL-terminated at cm_norm_len */
    return (long)best_len;
}

/* Longest USER_DEFINED piece that prefixes s (0 if none). */
static size_t fk_t5_user_prefix(const fk_t5_tokenizer *t, const uint8_t *s, size_t n) {
    int32_t node = 0;
    size_t best = 0;
    for (size_t d = 0; d < n; d++) {
        node = fk_t5_child(t, node, s[d]);
        if (node < 0) break;
        int32_t id = t->node_piece[node];
        if (id >= 0 && t->type[id] == FK_SP_USER_DEFINED) best = d + 1;
    }
    return best;
}

/* Normalizer::NormalizePrefix: the replacement for the longest rule at s
 * (rep, rep_len) and the number of input bytes consumed. */
static bool fk_t5_norm_prefix(const fk_t5_tokenizer *t, const uint8_t *s, size_t n, const char **rep,
                              size_t *rep_len, size_t *consumed) {
    if (t->has_user_defined) {
        size_t k = fk_t5_user_prefix(t, s, n);
        if (k) {
            *rep = (const char *)s;
            *rep_len = *consumed = k;
            return true;
        }
    }
    if (t->cm_units) {
        long k = fk_t5_charsmap_match(t, s, n, rep, rep_len);
        if (k < 0) return false;
        if (k > 0) {
            *consumed = (size_t)k;
            return true;
        }
    }
    uint32_t cp;
    size_t k = fk_utf8_decode1(s, n, &cp);
    if (k == 0) { /* malformed UTF-8: one byte becomes U+FFFD */
        *rep = "\xEF\xBF\xBD";
        *rep_len = 3;
        *consumed = 1;
    } else {
        *rep = (const char *)s;
        *rep_len = *consumed = k;
    }
    return true;
}

static const char fk_t5_space[] = "\xE2\x96\x81"; /* U+2581 */

/* Normalizer::Normalize. Returns FK_ERR_FORMAT when the charsmap is corrupt. */
static fk_status fk_t5_normalize(fk_context *ctx, const fk_t5_tokenizer *t, const char *text, size_t len,
                                 fk_bytebuf *out) {
    const uint8_t *s = (const uint8_t *)text;
    const char *rep = NULL;
    size_t rep_len = 0, used = 0;
    out->n = 0;
    if (!fk_bytebuf_reserve(out, len + 16)) return fk_error(ctx, FK_ERR_NOMEM, "t5 tokenizer: out of memory");
    out->v[0] = '\0';
    if (len == 0) return FK_OK;
    bool corrupt = false, ok = true;
    if (t->remove_extra_whitespaces) { /* ignore leading spaces */
        while (len > 0) {
            if (!fk_t5_norm_prefix(t, s, len, &rep, &rep_len, &used)) {
                corrupt = true;
                break;
            }
            if (!(rep_len == 1 && rep[0] == ' ')) break;
            s += used;
            len -= used;
        }
    }
    if (len == 0 || corrupt) goto done;
    const char *ws = t->escape_whitespaces ? fk_t5_space : " ";
    size_t ws_len = strlen(ws);
    if (!t->ws_as_suffix && t->add_dummy_prefix) ok = fk_bytebuf_append(out, ws, ws_len);
    bool prev_space = t->remove_extra_whitespaces;
    while (ok && len > 0) {
        if (!fk_t5_norm_prefix(t, s, len, &rep, &rep_len, &used)) {
            corrupt = true;
            break;
        }
        const char *p = rep;
        size_t pn = rep_len;
        while (prev_space && pn > 0 && p[0] == ' ') p++, pn--; /* drop spaces after a space */
        if (pn > 0) {
            for (size_t i = 0; ok && i < pn; i++) {
                if (t->escape_whitespaces && p[i] == ' ') ok = fk_bytebuf_append(out, fk_t5_space, 3);
                else ok = fk_bytebuf_push(out, p[i]);
            }
            prev_space = p[pn - 1] == ' ';
        }
        s += used;
        len -= used;
        if (!t->remove_extra_whitespaces) prev_space = false;
    }
    if (ok && !corrupt && t->remove_extra_whitespaces) { /* ignore trailing spaces */
        while (out->n >= ws_len && memcmp(out->v + out->n - ws_len, ws, ws_len) == 0) out->n -= ws_len;
        out->v[out->n] = '\0';
    }
    if (ok && !corrupt && t->ws_as_suffix && t->add_dummy_prefix) ok = fk_bytebuf_append(out, ws, ws_len);
done:
    if (corrupt)
        return fk_error(ctx, FK_ERR_FORMAT, "%s: normalizer charsmap points outside its string table", t->name);
    if (!ok) return fk_error(ctx, FK_ERR_NOMEM, "t5 tokenizer: out of memory");
    return FK_OK;
}

/* ---- Viterbi (unigram::Model::EncodeOptimized) ---------------------------------- */

static size_t fk_sp_one_char_len(uint8_t c) { return (size_t)"\1\1\1\1\1\1\1\1\1\1\1\1\2\2\3\4"[c >> 4]; }

static bool fk_t5_viterbi(const fk_t5_tokenizer *t, const uint8_t *s, size_t size, fk_idbuf *out) {
    if (size == 0) return true;
    if (size > (size_t)INT32_MAX - 1) return false;
    float *best = malloc((size + 1) * sizeof *best);          /* best path score ending at each byte */
    int32_t *start = malloc((size + 1) * sizeof *start);      /* where its last piece starts (-1: none) */
    int32_t *pid = malloc((size + 1) * sizeof *pid);          /* its last piece id */
    int32_t *rev = malloc((size + 1) * sizeof *rev);
    bool ok = best && start && pid && rev;
    if (ok) {
        for (size_t i = 0; i <= size; i++) {
            best[i] = 0.0f;
            start[i] = -1;
            pid[i] = -1;
        }
        const float unk_score = t->min_score - FK_T5_UNK_PENALTY;
        size_t pos = 0;
        while (pos < size) {
            const float here = best[pos];
            bool has_single = false;
            size_t mblen = fk_sp_one_char_len(s[pos]);
            if (mblen > size - pos) mblen = size - pos;
            int32_t node = 0;
            for (size_t k = pos; k < size; k++) {
                node = fk_t5_child(t, node, s[k]);
                if (node < 0) break;
                int32_t id = t->node_piece[node];
                if (id < 0) continue; /* prefix of longer pieces only */
                size_t end = k + 1, length = end - pos;
                /* the reference's `score` is double: the user-defined branch is a
                 * double expression, so the float score is promoted */
                double score = t->type[id] == FK_SP_USER_DEFINED ? (double)((float)length * t->max_score) - 0.1
                                                                 : (double)t->score[id];
                double cand = score + (double)here;
                if (start[end] == -1 || cand > (double)best[end]) {
                    best[end] = (float)cand;
                    start[end] = (int32_t)pos;
                    pid[end] = id;
                }
                if (!has_single && length == mblen) has_single = true;
            }
            if (!has_single) {
                size_t end = pos + mblen;
                float cand = unk_score + here; /* float arithmetic, as the reference */
                if (start[end] == -1 || cand > best[end]) {
                    best[end] = cand;
                    start[end] = (int32_t)pos;
                    pid[end] = t->unk_id;
                }
            }
            pos += mblen;
        }
        /* backtrack, then emit left to right merging runs of <unk> */
        size_t nr = 0;
        for (int32_t e = (int32_t)size; e > 0; e = start[e]) {
            if (start[e] < 0 || start[e] >= e) { /* cannot happen: every position is reached */
                ok = false;
                break;
            }
            rev[nr++] = pid[e];
        }
        bool prev_unk = false;
        for (size_t i = nr; ok && i-- > 0;) {
            bool unk = rev[i] == t->unk_id;
            if (!(unk && prev_unk)) ok = fk_idbuf_push(out, rev[i]);
            prev_unk = unk;
        }
    }
    free(best);
    free(start);
    free(pid);
    free(rev);
    return ok;
}

/* ---- encode ------------------------------------------------------------------------ */

static fk_status fk_t5_encode_ids(fk_context *ctx, const fk_t5_tokenizer *tok, const char *text, size_t len,
                                  fk_idbuf *ids) {
    if (!tok) return fk_error(ctx, FK_ERR_ARG, "t5 tokenizer: NULL tokenizer");
    if (!text && len) return fk_error(ctx, FK_ERR_ARG, "t5 tokenizer: NULL text");
    size_t bad = 0;
    if (!fk_utf8_valid(text, len, &bad))
        return fk_error(ctx, FK_ERR_ARG, "t5 tokenizer: text is not valid UTF-8 (byte %zu)", bad);
    fk_bytebuf norm = {0};
    fk_status st = fk_t5_normalize(ctx, tok, text ? text : "", len, &norm);
    if (st == FK_OK && (!fk_t5_viterbi(tok, (const uint8_t *)norm.v, norm.n, ids) || !fk_idbuf_push(ids, tok->eos_id)))
        st = fk_error(ctx, FK_ERR_NOMEM, "t5 tokenizer: out of memory (text of %zu bytes)", len);
    fk_bytebuf_free(&norm);
    return st;
}

fk_status fk_t5_tokenizer_encode_unpadded(fk_context *ctx, const fk_t5_tokenizer *tok, const char *text, size_t len,
                                          int64_t **ids, size_t *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    fk_idbuf d = {0};
    fk_status st = fk_t5_encode_ids(ctx, tok, text, len, &d);
    if (st != FK_OK) {
        free(d.v);
        return st;
    }
    *ids = d.v;
    *n_ids = d.n;
    return FK_OK;
}

fk_status fk_t5_tokenizer_encode(fk_context *ctx, const fk_t5_tokenizer *tok, const char *text, size_t len,
                                 int max_length, int64_t *ids, int *n_used) {
    if (max_length < 1)
        return fk_error(ctx, FK_ERR_ARG, "t5 tokenizer: max length %d, expected at least 1 (for </s>)", max_length);
    fk_idbuf d = {0};
    fk_status st = fk_t5_encode_ids(ctx, tok, text, len, &d);
    if (st != FK_OK) {
        free(d.v);
        return st;
    }
    /* d = content + [eos]: keep content[:max-1] + [eos] */
    size_t content = d.n - 1, keep = content < (size_t)max_length - 1 ? content : (size_t)max_length - 1;
    for (size_t i = 0; i < keep; i++) ids[i] = d.v[i];
    ids[keep] = tok->eos_id;
    for (size_t i = keep + 1; i < (size_t)max_length; i++) ids[i] = tok->pad_id;
    if (n_used) *n_used = (int)(keep + 1);
    free(d.v);
    return FK_OK;
}

fk_status fk_t5_tokenizer_normalize(fk_context *ctx, const fk_t5_tokenizer *tok, const char *text, size_t len,
                                    char **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    if (!tok) return fk_error(ctx, FK_ERR_ARG, "t5 tokenizer: NULL tokenizer");
    if (!text && len) return fk_error(ctx, FK_ERR_ARG, "t5 tokenizer: NULL text");
    size_t bad = 0;
    if (!fk_utf8_valid(text, len, &bad))
        return fk_error(ctx, FK_ERR_ARG, "t5 tokenizer: text is not valid UTF-8 (byte %zu)", bad);
    fk_bytebuf norm = {0};
    fk_status st = fk_t5_normalize(ctx, tok, text ? text : "", len, &norm);
    if (st != FK_OK) {
        fk_bytebuf_free(&norm);
        return st;
    }
    *out = norm.v;
    *out_len = norm.n;
    return FK_OK;
}
