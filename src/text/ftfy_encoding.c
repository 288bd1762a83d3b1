/* text/ftfy_encoding: ftfy 6.3.1's fix_encoding (mojibake detection and
 * repair), a port of ftfy/__init__.py (_fix_encoding_one_step_and_explain),
 * ftfy/fixes.py (restore_byte_a0, replace_lossy_sequences,
 * decode_inconsistent_utf8, fix_c1_controls), ftfy/badness.py (is_bad) and the
 * utf-8-variants codec. The regular expressions are hand-written matchers; the
 * character classes and code pages come from text_tables.c (generated from the
 * installed ftfy by tools/gen_text_tables.py).
 *
 * fix_encoding(text): repeat one step until the text no longer changes. One step:
 *   - nothing to do for empty or ASCII text, or when is_bad(text) is false;
 *   - for each code page that can encode the text (in ftfy's order): encode,
 *     restore_byte_a0 (not for macroman), replace_lossy_sequences (sloppy-*
 *     pages), decode as UTF-8 (utf-8-variants when bytes ED or C0 occur); the
 *     first decode that succeeds is the result;
 *   - else decode_inconsistent_utf8 if it changes something;
 *   - else, when the text is Latin-1, re-read it as strict Windows-1252;
 *   - else fix_c1_controls when C1 controls remain. */
#include "text/ftfy.h"

#include "text/text_tables.h"

#include <stdlib.h>
#include <string.h>

#define FK_FTFY_MAX_DEPTH 32 /* nesting of decode_inconsistent_utf8 -> fix_encoding (guard) */

/* ---- badness (ftfy.badness.is_bad) ------------------------------------------ */

static bool fk_bad_in_set(const fk_ftfy_bad_set *s, uint32_t c) {
    bool in = fk_uc_in_ranges(c, fk_ftfy_bad_ranges + s->first, s->count);
    if (!in && (s->flags & 1)) in = fk_uc_is_py_space(c);
    if (!in && (s->flags & 2)) in = c == '_' || fk_uc_is_letter(c) || fk_uc_is_number(c);
    return (s->flags & 4) ? !in : in;
}

/* Match elements [e, end) of an alternative at text position i (backtracking
 * over optional elements, greedy first as Python's re). */
static bool fk_bad_match(const uint32_t *t, size_t n, size_t i, int e, int end) {
    for (; e < end; e++) {
        const fk_ftfy_bad_elem *el = &fk_ftfy_bad_elems[e];
        switch (el->kind) {
        case 2: /* ^ */
            if (i != 0) return false;
            break;
        case 1: /* . */
            if (i >= n || t[i] == '\n') return false;
            i++;
            break;
        case 4: /* optional */
            if (i < n && fk_bad_in_set(&fk_ftfy_bad_sets[el->set], t[i]) && fk_bad_match(t, n, i + 1, e + 1, end))
                return true;
            break;
        default:
            if (i >= n || !fk_bad_in_set(&fk_ftfy_bad_sets[el->set], t[i])) return false;
            i++;
        }
    }
    return true;
}

static bool fk_ftfy_is_bad(const uint32_t *t, size_t n) {
    for (size_t i = 0; i < n; i++) {
        for (int a = 0; a < fk_ftfy_bad_alts_count; a++) {
            const fk_ftfy_bad_alt *alt = &fk_ftfy_bad_alts[a];
            if (fk_bad_match(t, n, i, alt->first, alt->first + alt->count)) return true;
        }
    }
    return false;
}

/* ---- code pages ------------------------------------------------------------------ */

/* The byte that code page `cm` maps to c, or -1 (ftfy's possible_encoding:
 * ASCII but 0x1A, or the meaning of a byte 0x80-0xFF or 0x1A). */
static int fk_cm_encode(int cm, uint32_t c) {
    if (c < 0x80 && c != 0x1A) return (int)c;
    const fk_cp_bits *inv = fk_ftfy_charmap_inv[cm];
    int lo = 0, hi = 128;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (c < inv[mid].cp) hi = mid - 1;
        else if (c > inv[mid].cp) lo = mid + 1;
        else return (int)inv[mid].bits;
    }
    return -1;
}

static bool fk_cm_is_sloppy(int cm) { return strncmp(fk_ftfy_charmap_names[cm], "sloppy", 6) == 0; }
static bool fk_cm_is_macroman(int cm) { return strcmp(fk_ftfy_charmap_names[cm], "macroman") == 0; }

/* ---- byte-level fixes -------------------------------------------------------------- */

typedef struct fk_bytes {
    uint8_t *v;
    size_t n, cap;
} fk_bytes;

static bool fk_bytes_push(fk_bytes *b, uint8_t c) {
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 64;
        uint8_t *v = realloc(b->v, nc);
        if (!v) return false;
        b->v = v;
        b->cap = nc;
    }
    b->v[b->n++] = c;
    return true;
}

static bool fk_in(uint8_t c, uint8_t lo, uint8_t hi) { return c >= lo && c <= hi; }
/* [\x80-\x84\x86-\x9f\xa1-\xbf]: a continuation byte but 0x85 and 0xA0 */
static bool fk_cont_a0(uint8_t c) { return fk_in(c, 0x80, 0xBF) && c != 0x85 && c != 0xA0; }

/* ALTERED_UTF8_RE at position i: length of the match, 0 if none. */
static size_t fk_altered_at(const uint8_t *b, size_t n, size_t i) {
    size_t r = n - i;
    uint8_t c = b[i];
    if (r >= 2 && (c == 0xC2 || c == 0xC3 || c == 0xC5 || c == 0xCE || c == 0xD0 || c == 0xD9) && b[i + 1] == ' ')
        return 2;
    if (r >= 3 && (c == 0xE2 || c == 0xE3) && b[i + 1] == ' ' && fk_cont_a0(b[i + 2])) return 3;
    if (r >= 3 && fk_in(c, 0xE0, 0xE3) && fk_cont_a0(b[i + 1]) && b[i + 2] == ' ') return 3;
    if (r >= 4 && c == 0xF0) {
        uint8_t x = b[i + 1], y = b[i + 2], z = b[i + 3];
        if (x == ' ' && fk_in(y, 0x80, 0xBF) && fk_in(z, 0x80, 0xBF)) return 4;
        if (fk_in(x, 0x80, 0xBF) && y == ' ' && fk_in(z, 0x80, 0xBF)) return 4;
        if (fk_in(x, 0x80, 0xBF) && fk_in(y, 0x80, 0xBF) && z == ' ') return 4;
    }
    return 0;
}

static bool fk_altered_search(const fk_bytes *b) {
    for (size_t i = 0; i < b->n; i++)
        if (fk_altered_at(b->v, b->n, i)) return true;
    return false;
}

static bool fk_starts(const uint8_t *b, size_t n, size_t i, const char *lit) {
    size_t k = strlen(lit);
    return n - i >= k && memcmp(b + i, lit, k) == 0;
}

/* fixes.restore_byte_a0: A_GRAVE_WORD_RE (C3 20 not before " ", "quele",
 * "quela", "quilo", "s ") -> C3 A0 20, then spaces inside ALTERED_UTF8_RE
 * matches -> A0. */
static bool fk_restore_byte_a0(const fk_bytes *in, fk_bytes *out) {
    fk_bytes mid = {0};
    bool ok = true;
    const uint8_t *b = in->v;
    size_t n = in->n;
    for (size_t i = 0; ok && i < n; i++) {
        if (b[i] == 0xC3 && i + 1 < n && b[i + 1] == ' ' && !fk_starts(b, n, i + 2, " ") &&
            !fk_starts(b, n, i + 2, "quele") && !fk_starts(b, n, i + 2, "quela") &&
            !fk_starts(b, n, i + 2, "quilo") && !fk_starts(b, n, i + 2, "s ")) {
            ok = fk_bytes_push(&mid, 0xC3) && fk_bytes_push(&mid, 0xA0) && fk_bytes_push(&mid, ' ');
            i++;
            continue;
        }
        ok = fk_bytes_push(&mid, b[i]);
    }
    for (size_t i = 0; ok && i < mid.n;) {
        size_t k = fk_altered_at(mid.v, mid.n, i);
        if (k) {
            for (size_t q = 0; ok && q < k; q++) ok = fk_bytes_push(out, mid.v[i + q] == ' ' ? 0xA0 : mid.v[i + q]);
            i += k;
        } else {
            ok = fk_bytes_push(out, mid.v[i++]);
        }
    }
    free(mid.v);
    return ok;
}

/* LOSSY_UTF8_RE at position i: length of the match, 0 if none. */
static size_t fk_lossy_at(const uint8_t *b, size_t n, size_t i) {
    size_t r = n - i;
    uint8_t c = b[i];
#define SUB(x) ((x) == 0x1A)
#define SUBQ(x) ((x) == 0x1A || (x) == '?')
#define SUBC(x) ((x) == 0x1A || fk_in((x), 0x80, 0xBF))
#define SUBQC(x) ((x) == 0x1A || (x) == '?' || fk_in((x), 0x80, 0xBF))
    if (r >= 2 && fk_in(c, 0xC2, 0xDF) && SUB(b[i + 1])) return 2;
    if (r >= 2 && fk_in(c, 0xC2, 0xC3) && b[i + 1] == '?') return 2;
    if (r >= 6 && c == 0xED && fk_in(b[i + 1], 0xA0, 0xAF) && SUBQ(b[i + 2]) && b[i + 3] == 0xED &&
        fk_in(b[i + 4], 0xB0, 0xBF) && SUBQC(b[i + 5]))
        return 6;
    if (r >= 6 && c == 0xED && fk_in(b[i + 1], 0xA0, 0xAF) && SUBQC(b[i + 2]) && b[i + 3] == 0xED &&
        fk_in(b[i + 4], 0xB0, 0xBF) && SUBQ(b[i + 5]))
        return 6;
    if (r >= 3 && fk_in(c, 0xE0, 0xEF) && SUBQ(b[i + 1]) && SUBC(b[i + 2])) return 3;
    if (r >= 3 && fk_in(c, 0xE0, 0xEF) && SUBC(b[i + 1]) && SUBQ(b[i + 2])) return 3;
    if (r >= 4 && fk_in(c, 0xF0, 0xF4)) {
        if (SUBQ(b[i + 1]) && SUBC(b[i + 2]) && SUBC(b[i + 3])) return 4;
        if (SUBC(b[i + 1]) && SUBQ(b[i + 2]) && SUBC(b[i + 3])) return 4;
        if (SUBC(b[i + 1]) && SUBC(b[i + 2]) && SUBQ(b[i + 3])) return 4;
    }
    if (SUB(c)) return 1;
#undef SUB
#undef SUBQ
#undef SUBC
#undef SUBQC
    return 0;
}

/* fixes.replace_lossy_sequences: each match -> EF BF BD (U+FFFD). */
static bool fk_replace_lossy(const fk_bytes *in, fk_bytes *out) {
    bool ok = true;
    for (size_t i = 0; ok && i < in->n;) {
        size_t k = fk_lossy_at(in->v, in->n, i);
        if (k) {
            ok = fk_bytes_push(out, 0xEF) && fk_bytes_push(out, 0xBF) && fk_bytes_push(out, 0xBD);
            i += k;
        } else {
            ok = fk_bytes_push(out, in->v[i++]);
        }
    }
    return ok;
}

/* Strict UTF-8, or ftfy's utf-8-variants (also C0 80 -> U+0000 and CESU-8
 * surrogate pairs). Returns false when the bytes do not decode (*oom set when
 * out of memory). */
static bool fk_decode_utf8(const fk_bytes *b, bool variants, fk_cpbuf *out, bool *oom) {
    const uint8_t *s = b->v;
    size_t n = b->n;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = 0;
        if (variants && s[i] == 0xC0 && i + 1 < n && s[i + 1] == 0x80) {
            cp = 0, k = 2;
        } else if (variants && s[i] == 0xED && n - i >= 6 && fk_in(s[i + 1], 0xA0, 0xAF) && fk_in(s[i + 2], 0x80, 0xBF) &&
                   s[i + 3] == 0xED && fk_in(s[i + 4], 0xB0, 0xBF) && fk_in(s[i + 5], 0x80, 0xBF)) {
            cp = ((uint32_t)(s[i + 1] & 0x0F) << 16) + ((uint32_t)(s[i + 2] & 0x3F) << 10) +
                 ((uint32_t)(s[i + 4] & 0x0F) << 6) + (uint32_t)(s[i + 5] & 0x3F) + 0x10000;
            k = 6;
        } else {
            k = fk_utf8_decode1(s + i, n - i, &cp);
            if (k == 0) return false;
        }
        if (!fk_cpbuf_push(out, cp)) {
            *oom = true;
            return false;
        }
        i += k;
    }
    return true;
}

/* ---- decode_inconsistent_utf8 ------------------------------------------------------ */

static uint32_t fk_clue(uint32_t c) {
    int lo = 0, hi = fk_ftfy_utf8_clues_count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (c < fk_ftfy_utf8_clues[mid].cp) hi = mid - 1;
        else if (c > fk_ftfy_utf8_clues[mid].cp) lo = mid + 1;
        else return fk_ftfy_utf8_clues[mid].bits;
    }
    return 0;
}

/* UTF8_DETECTOR_RE match starting at i (lookbehind included): end, or i. */
static size_t fk_utf8_detector_at(const uint32_t *t, size_t n, size_t i) {
    if (i > 0 && (fk_clue(t[i - 1]) & 16)) return i;
    size_t j = i;
    for (;;) {
        uint32_t f = j < n ? fk_clue(t[j]) : 0;
        size_t k = 0;
        if ((f & 1) && j + 1 < n && (fk_clue(t[j + 1]) & 8)) k = 2;
        else if ((f & 2) && j + 2 < n && (fk_clue(t[j + 1]) & 8) && (fk_clue(t[j + 2]) & 8)) k = 3;
        else if ((f & 4) && j + 3 < n && (fk_clue(t[j + 1]) & 8) && (fk_clue(t[j + 2]) & 8) && (fk_clue(t[j + 3]) & 8))
            k = 4;
        if (!k) return j;
        j += k;
    }
}

static bool fk_fix_encoding_depth(const uint32_t *t, size_t n, fk_cpbuf *out, int depth);

/* fixes.decode_inconsistent_utf8: mojibake-looking runs that are shorter than
 * the text and is_bad get fix_encoding on their own. *changed reports a change. */
static bool fk_decode_inconsistent(const uint32_t *t, size_t n, fk_cpbuf *out, int depth) {
    for (size_t i = 0; i < n;) {
        size_t j = fk_utf8_detector_at(t, n, i);
        if (j > i) {
            bool ok = (j - i < n && fk_ftfy_is_bad(t + i, j - i)) ? fk_fix_encoding_depth(t + i, j - i, out, depth + 1)
                                                                   : fk_cpbuf_append(out, t + i, j - i);
            if (!ok) return false;
            i = j;
        } else {
            if (!fk_cpbuf_push(out, t[i])) return false;
            i++;
        }
    }
    return true;
}

static bool fk_has_utf8_detector(const uint32_t *t, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (fk_utf8_detector_at(t, n, i) > i) return true;
    return false;
}

/* ---- one step ------------------------------------------------------------------------ */

typedef enum { FK_STEP_SAME, FK_STEP_CHANGED, FK_STEP_OOM } fk_step;

static fk_step fk_fix_encoding_step(const uint32_t *t, size_t n, fk_cpbuf *out, int depth) {
    if (n == 0) return FK_STEP_SAME;
    bool ascii = true;
    for (size_t i = 0; i < n && ascii; i++) ascii = t[i] < 0x80;
    if (ascii || !fk_ftfy_is_bad(t, n)) return FK_STEP_SAME;
    bool latin1_possible = false;
    fk_bytes enc = {0}, tmp = {0};
    for (int cm = 0; cm < fk_ftfy_charmap_count; cm++) {
        enc.n = 0;
        bool possible = true;
        for (size_t i = 0; i < n && possible; i++) {
            int b = fk_cm_encode(cm, t[i]);
            if (b < 0) possible = false;
            else if (!fk_bytes_push(&enc, (uint8_t)b)) goto oom;
        }
        if (!possible) continue;
        if (cm == 0) latin1_possible = true; /* "latin-1" is the first page */
        if (!fk_cm_is_macroman(cm) && fk_altered_search(&enc)) {
            tmp.n = 0;
            if (!fk_restore_byte_a0(&enc, &tmp)) goto oom;
            fk_bytes sw = enc;
            enc = tmp;
            tmp = sw;
        }
        if (fk_cm_is_sloppy(cm)) {
            tmp.n = 0;
            if (!fk_replace_lossy(&enc, &tmp)) goto oom;
            fk_bytes sw = enc;
            enc = tmp;
            tmp = sw;
        }
        bool variants = memchr(enc.v, 0xED, enc.n) != NULL || memchr(enc.v, 0xC0, enc.n) != NULL;
        size_t mark = out->n;
        bool oom = false;
        if (fk_decode_utf8(&enc, variants, out, &oom)) {
            free(enc.v);
            free(tmp.v);
            return FK_STEP_CHANGED; /* ftfy returns the decoded text even if equal */
        }
        if (oom) goto oom;
        out->n = mark;
    }
    free(enc.v);
    free(tmp.v);
    enc.v = tmp.v = NULL;
    size_t mark = out->n;
    if (fk_has_utf8_detector(t, n)) {
        if (!fk_decode_inconsistent(t, n, out, depth)) return FK_STEP_OOM;
        if (out->n - mark != n || memcmp(out->v + mark, t, n * sizeof *t) != 0) return FK_STEP_CHANGED;
        out->n = mark;
    }
    if (latin1_possible) { /* text.encode("latin-1").decode("windows-1252"), strict */
        bool strict_ok = true, changed = false;
        for (size_t i = 0; i < n && strict_ok; i++) {
            uint32_t c = t[i];
            if (c >= 0x80 && c <= 0x9F) {
                uint32_t d = fk_cp1252_c1[c - 0x80];
                if (d == c) strict_ok = false; /* 0x81 0x8D 0x8F 0x90 0x9D are undefined */
                changed = true;
            }
        }
        if (strict_ok && changed) {
            for (size_t i = 0; i < n; i++)
                if (!fk_cpbuf_push(out, t[i] >= 0x80 && t[i] <= 0x9F ? fk_cp1252_c1[t[i] - 0x80] : t[i]))
                    return FK_STEP_OOM;
            return FK_STEP_CHANGED;
        }
    }
    bool c1 = false;
    for (size_t i = 0; i < n && !c1; i++) c1 = t[i] >= 0x80 && t[i] <= 0x9F;
    if (c1) { /* fix_c1_controls */
        for (size_t i = 0; i < n; i++)
            if (!fk_cpbuf_push(out, t[i] >= 0x80 && t[i] <= 0x9F ? fk_cp1252_c1[t[i] - 0x80] : t[i]))
                return FK_STEP_OOM;
        return FK_STEP_CHANGED;
    }
    return FK_STEP_SAME;
oom:
    free(enc.v);
    free(tmp.v);
    return FK_STEP_OOM;
}

static bool fk_fix_encoding_depth(const uint32_t *t, size_t n, fk_cpbuf *out, int depth) {
    if (depth > FK_FTFY_MAX_DEPTH) return fk_cpbuf_append(out, t, n);
    fk_cpbuf cur = {0}, nxt = {0};
    bool ok = fk_cpbuf_append(&cur, t, n);
    for (int iter = 0; ok && iter < 256; iter++) { /* ftfy loops until stable; the bound only guards against a cycle */
        nxt.n = 0;
        fk_step st = fk_fix_encoding_step(cur.v, cur.n, &nxt, depth);
        if (st == FK_STEP_OOM) ok = false;
        if (st != FK_STEP_CHANGED || fk_cpbuf_equal(&cur, &nxt)) break;
        fk_cpbuf_swap(&cur, &nxt);
    }
    if (ok) ok = fk_cpbuf_append(out, cur.v, cur.n);
    fk_cpbuf_free(&cur);
    fk_cpbuf_free(&nxt);
    return ok;
}

bool fk_ftfy_fix_encoding(const uint32_t *t, size_t n, fk_cpbuf *out) { return fk_fix_encoding_depth(t, n, out, 0); }
