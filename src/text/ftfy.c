/* text/ftfy: ftfy 6.3.1 fix_text and Python's html.unescape, on code-point
 * buffers (fix_encoding is in ftfy_encoding.c). See ftfy.h. */
#include "text/ftfy.h"

#include "text/text_tables.h"

#include <stdlib.h>
#include <string.h>

/* ---- entity tables ------------------------------------------------------- */

/* Binary search of an entity table sorted bytewise by name. */
static const char *fk_entity_find(const fk_html_entity *tab, int count, const char *name) {
    int lo = 0, hi = count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        int c = strcmp(name, tab[mid].name);
        if (c == 0) return tab[mid].value;
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

/* Look up text[0..len) (code points) in the HTML5 table; only ASCII names exist. */
static const char *fk_html5_find_cps(const uint32_t *text, size_t len) {
    char name[40];
    if (len >= sizeof name) return NULL;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == 0 || text[i] >= 0x80) return NULL;
        name[i] = (char)text[i];
    }
    name[len] = '\0';
    return fk_entity_find(fk_html5_entities, fk_html5_entities_count, name);
}

static bool fk_push_utf8_str(fk_cpbuf *out, const char *s) {
    size_t n = strlen(s);
    return fk_utf8_to_cps(s, n, out);
}

static bool fk_is_ascii_digit(uint32_t c) { return c >= '0' && c <= '9'; }
static bool fk_is_ascii_hex(uint32_t c) {
    return fk_is_ascii_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}
static bool fk_is_ascii_alnum(uint32_t c) {
    return fk_is_ascii_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}

/* ---- Python html.unescape ------------------------------------------------ */

/* Python html._replace_charref for a numeric reference with value num
 * (saturated at 0x110000). */
static bool fk_html_numeric(uint32_t num, fk_cpbuf *out) {
    if (num == 0) return fk_cpbuf_push(out, 0xFFFD);
    if (num == 0x0D) return fk_cpbuf_push(out, 0x0D);
    if (num >= 0x80 && num <= 0x9F) return fk_cpbuf_push(out, fk_cp1252_c1[num - 0x80]);
    if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) return fk_cpbuf_push(out, 0xFFFD);
    if (fk_uc_in_ranges(num, fk_html_invalid_codepoints, fk_html_invalid_codepoints_count)) return true;
    return fk_cpbuf_push(out, num);
}

/* Try to match Python's _charref regex at text[i] == '&':
 *   &(#[0-9]+;? | #[xX][0-9a-fA-F]+;? | [^\t\n\f <&#;]{1,32};?)
 * On a match, append the replacement and return the match length (> 0);
 * return 0 when nothing matches; -1 when out of memory. */
static long fk_html_charref(const uint32_t *t, size_t n, size_t i, fk_cpbuf *out) {
    size_t j = i + 1;
    if (j < n && t[j] == '#') {
        size_t k = j + 1;
        int base = 10;
        if (k < n && fk_is_ascii_digit(t[k])) {
            base = 10;
        } else if (k + 1 < n && (t[k] == 'x' || t[k] == 'X') && fk_is_ascii_hex(t[k + 1])) {
            base = 16;
            k++;
        } else {
            return 0;
        }
        uint32_t num = 0;
        while (k < n && (base == 10 ? fk_is_ascii_digit(t[k]) : fk_is_ascii_hex(t[k]))) {
            uint32_t d = fk_is_ascii_digit(t[k]) ? t[k] - '0' : (t[k] | 0x20) - 'a' + 10;
            if (num < 0x110000) num = num * (uint32_t)base + d;
            if (num > 0x110000) num = 0x110000;
            k++;
        }
        if (k < n && t[k] == ';') k++;
        if (!fk_html_numeric(num, out)) return -1;
        return (long)(k - i);
    }
    /* named: up to 32 characters outside [\t\n\f <&#;], then an optional ';' */
    size_t k = j;
    while (k < n && k - j < 32) {
        uint32_t c = t[k];
        if (c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' || c == '#' || c == ';')
            break;
        k++;
    }
    if (k == j) return 0;
    if (k < n && t[k] == ';') k++;
    const uint32_t *s = t + j; /* the group: name plus optional ';' */
    size_t len = k - j;
    const char *v = fk_html5_find_cps(s, len);
    if (v) {
        if (!fk_push_utf8_str(out, v)) return -1;
        return (long)(k - i);
    }
    /* longest prefix of length >= 2 that is an entity (those without ';') */
    for (size_t x = len - 1; x >= 2 && len >= 3; x--) {
        v = fk_html5_find_cps(s, x);
        if (v) {
            if (!fk_push_utf8_str(out, v) || !fk_cpbuf_append(out, s + x, len - x)) return -1;
            return (long)(k - i);
        }
    }
    if (!fk_cpbuf_push(out, '&') || !fk_cpbuf_append(out, s, len)) return -1;
    return (long)(k - i);
}

bool fk_html_unescape(const uint32_t *t, size_t n, fk_cpbuf *out) {
    if (!fk_cpbuf_reserve(out, out->n + n)) return false;
    size_t i = 0;
    while (i < n) {
        if (t[i] == '&') {
            long m = fk_html_charref(t, n, i, out);
            if (m < 0) return false;
            if (m > 0) {
                i += (size_t)m;
                continue;
            }
        }
        if (!fk_cpbuf_push(out, t[i])) return false;
        i++;
    }
    return true;
}

/* ---- ftfy fixers ----------------------------------------------------------- */

/* ftfy.fixes.unescape_html: matches of &#?[0-9A-Za-z]{1,24}; replaced when the
 * name is an HTML5 entity ending in ';' (or one of ftfy's all-caps variants),
 * numeric references decoded by html.unescape unless a ';' would remain. */
static bool fk_ftfy_unescape_html(const uint32_t *t, size_t n, fk_cpbuf *out) {
    size_t i = 0;
    while (i < n) {
        if (t[i] == '&') {
            size_t j = i + 1;
            bool hash = j < n && t[j] == '#';
            if (hash) j++;
            size_t k = j;
            while (k < n && k - j < 25 && fk_is_ascii_alnum(t[k])) k++;
            size_t run = k - j;
            if (run >= 1 && run <= 24 && k < n && t[k] == ';') {
                size_t end = k + 1; /* match = t[i..end) */
                bool done = false;
                if (!hash) {
                    char name[32];
                    for (size_t q = 0; q < run; q++) name[q] = (char)t[j + q];
                    name[run] = ';';
                    name[run + 1] = '\0';
                    const char *v = fk_entity_find(fk_html5_entities, fk_html5_entities_count, name);
                    if (!v) v = fk_entity_find(fk_ftfy_upper_entities, fk_ftfy_upper_entities_count, name);
                    if (v) {
                        if (!fk_push_utf8_str(out, v)) return false;
                        done = true;
                    }
                } else {
                    fk_cpbuf tmp = {0};
                    if (!fk_html_unescape(t + i, end - i, &tmp)) {
                        fk_cpbuf_free(&tmp);
                        return false;
                    }
                    bool has_semicolon = false;
                    for (size_t q = 0; q < tmp.n; q++) has_semicolon |= tmp.v[q] == ';';
                    if (!has_semicolon) {
                        if (!fk_cpbuf_append(out, tmp.v, tmp.n)) {
                            fk_cpbuf_free(&tmp);
                            return false;
                        }
                        done = true;
                    }
                    fk_cpbuf_free(&tmp);
                }
                if (!done && !fk_cpbuf_append(out, t + i, end - i)) return false;
                i = end;
                continue;
            }
        }
        if (!fk_cpbuf_push(out, t[i])) return false;
        i++;
    }
    return true;
}

static const struct {
    uint32_t from;
    uint32_t to[3];
} fk_ftfy_ligatures[] = {
    {0x0132, {'I', 'J', 0}},     {0x0133, {'i', 'j', 0}},     {0x0149, {0x2BC, 'n', 0}},
    {0x01C4, {'D', 0x17D, 0}},   {0x01C5, {'D', 0x17E, 0}},   {0x01C6, {'d', 0x17E, 0}},
    {0x01C7, {'L', 'J', 0}},     {0x01C8, {'L', 'j', 0}},     {0x01C9, {'l', 'j', 0}},
    {0x01CA, {'N', 'J', 0}},     {0x01CB, {'N', 'j', 0}},     {0x01CC, {'n', 'j', 0}},
    {0x01F1, {'D', 'Z', 0}},     {0x01F2, {'D', 'z', 0}},     {0x01F3, {'d', 'z', 0}},
    {0xFB00, {'f', 'f', 0}},     {0xFB01, {'f', 'i', 0}},     {0xFB02, {'f', 'l', 0}},
    {0xFB03, {'f', 'f', 'i'}},   {0xFB04, {'f', 'f', 'l'}},   {0xFB05, {0x17F, 't', 0}},
    {0xFB06, {'s', 't', 0}},
};

static const fk_width_entry *fk_width_find(uint32_t cp) {
    int lo = 0, hi = fk_ftfy_width_map_count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < fk_ftfy_width_map[mid].from) hi = mid - 1;
        else if (cp > fk_ftfy_width_map[mid].from) lo = mid + 1;
        else return &fk_ftfy_width_map[mid];
    }
    return NULL;
}

static bool fk_ftfy_is_control(uint32_t c) {
    return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F || (c >= 0x206A && c <= 0x206F) ||
           c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
}

/* The character-wise fixers, in ftfy's order: fix_c1_controls,
 * fix_latin_ligatures, fix_character_width, uncurl_quotes. Each is a
 * str.translate over the whole text; chaining them per code point (the output
 * of one fed to the next) gives the same result. */
static bool fk_ftfy_charwise(const uint32_t *t, size_t n, fk_cpbuf *out) {
    for (size_t i = 0; i < n; i++) {
        uint32_t c = t[i];
        uint32_t seq[4];
        int ns = 0;
        if (c >= 0x80 && c <= 0x9F) c = fk_cp1252_c1[c - 0x80]; /* fix_c1_controls */
        bool lig = false;
        if ((c >= 0x132 && c <= 0x1F3) || (c >= 0xFB00 && c <= 0xFB06)) {
            for (size_t q = 0; q < sizeof fk_ftfy_ligatures / sizeof fk_ftfy_ligatures[0]; q++) {
                if (fk_ftfy_ligatures[q].from == c) {
                    for (int r = 0; r < 3 && fk_ftfy_ligatures[q].to[r]; r++) seq[ns++] = fk_ftfy_ligatures[q].to[r];
                    lig = true;
                    break;
                }
            }
        }
        if (!lig) seq[ns++] = c;
        for (int s = 0; s < ns; s++) {
            uint32_t d = seq[s];
            uint32_t w[2];
            int nw = 0;
            if (d == 0x3000) {
                w[nw++] = ' ';
            } else if (d >= 0xFF01 && d <= 0xFFEF) {
                const fk_width_entry *e = fk_width_find(d);
                if (e) {
                    w[nw++] = e->to[0];
                    if (e->to[1]) w[nw++] = e->to[1];
                } else {
                    w[nw++] = d;
                }
            } else {
                w[nw++] = d;
            }
            for (int q = 0; q < nw; q++) {
                uint32_t e = w[q];
                if (e == 0x2BC || (e >= 0x2018 && e <= 0x201B)) e = '\'';
                else if (e >= 0x201C && e <= 0x201F) e = '"';
                if (!fk_cpbuf_push(out, e)) return false;
            }
        }
    }
    return true;
}

/* fix_line_breaks: \r\n, \r, U+2028, U+2029, U+0085 -> \n. */
static bool fk_ftfy_line_breaks(const uint32_t *t, size_t n, fk_cpbuf *out) {
    for (size_t i = 0; i < n; i++) {
        uint32_t c = t[i];
        if (c == '\r' && i + 1 < n && t[i + 1] == '\n') continue;
        if (c == '\r' || c == 0x2028 || c == 0x2029 || c == 0x85) c = '\n';
        if (!fk_cpbuf_push(out, c)) return false;
    }
    return true;
}

/* remove_terminal_escapes: \x1b\[((?:\d|;)*)([a-zA-Z]) with Unicode \d. */
static bool fk_ftfy_terminal_escapes(const uint32_t *t, size_t n, fk_cpbuf *out) {
    for (size_t i = 0; i < n; i++) {
        if (t[i] == 0x1B && i + 1 < n && t[i + 1] == '[') {
            size_t k = i + 2;
            while (k < n && (t[k] == ';' || fk_uc_is_decimal(t[k]))) k++;
            if (k < n && t[k] < 0x80 && ((t[k] | 0x20) >= 'a' && (t[k] | 0x20) <= 'z')) {
                i = k;
                continue;
            }
        }
        if (!fk_cpbuf_push(out, t[i])) return false;
    }
    return true;
}

static bool fk_ftfy_control_chars(const uint32_t *t, size_t n, fk_cpbuf *out) {
    for (size_t i = 0; i < n; i++)
        if (!fk_ftfy_is_control(t[i]) && !fk_cpbuf_push(out, t[i])) return false;
    return true;
}

/* ftfy.fix_and_explain on one segment: apply the fixers until nothing changes. */
static bool fk_ftfy_segment(const uint32_t *t, size_t n, bool unescape, fk_cpbuf *out) {
    fk_cpbuf cur = {0}, nxt = {0}, orig = {0};
    bool ok = fk_cpbuf_append(&cur, t, n);
    for (int iter = 0; ok; iter++) {
        orig.n = 0;
        ok = fk_cpbuf_append(&orig, cur.v, cur.n);
        if (ok && unescape) {
            nxt.n = 0;
            ok = fk_ftfy_unescape_html(cur.v, cur.n, &nxt);
            fk_cpbuf_swap(&cur, &nxt);
        }
        if (ok) {
            nxt.n = 0;
            ok = fk_ftfy_fix_encoding(cur.v, cur.n, &nxt);
            fk_cpbuf_swap(&cur, &nxt);
        }
        if (ok) {
            nxt.n = 0;
            ok = fk_ftfy_charwise(cur.v, cur.n, &nxt);
            fk_cpbuf_swap(&cur, &nxt);
        }
        if (ok) {
            nxt.n = 0;
            ok = fk_ftfy_line_breaks(cur.v, cur.n, &nxt);
            fk_cpbuf_swap(&cur, &nxt);
        }
        if (ok) {
            nxt.n = 0;
            ok = fk_ftfy_terminal_escapes(cur.v, cur.n, &nxt);
            fk_cpbuf_swap(&cur, &nxt);
        }
        if (ok) {
            nxt.n = 0;
            ok = fk_ftfy_control_chars(cur.v, cur.n, &nxt);
            fk_cpbuf_swap(&cur, &nxt);
        }
        if (ok) ok = fk_uc_nfc(&cur);
        /* Each pass only shortens or rewrites entities/characters, so this
         * terminates; the bound guards against a pathological cycle. */
        if (!ok || fk_cpbuf_equal(&cur, &orig) || iter > 64) break;
    }
    if (ok) ok = fk_cpbuf_append(out, cur.v, cur.n);
    fk_cpbuf_free(&cur);
    fk_cpbuf_free(&nxt);
    fk_cpbuf_free(&orig);
    return ok;
}

bool fk_ftfy_fix_text(const uint32_t *t, size_t n, fk_cpbuf *out) {
    const size_t max_decode_length = 1000000; /* ftfy TextFixerConfig default */
    bool unescape = true;                      /* unescape_html="auto" */
    size_t pos = 0;
    while (pos < n) {
        size_t end = pos;
        while (end < n && t[end] != '\n') end++;
        end = end < n ? end + 1 : n;
        if (end - pos > max_decode_length) end = pos + max_decode_length;
        if (unescape) {
            for (size_t i = pos; i < end; i++) {
                if (t[i] == '<') {
                    unescape = false; /* sticky for the rest of the text */
                    break;
                }
            }
        }
        if (!fk_ftfy_segment(t + pos, end - pos, unescape, out)) return false;
        pos = end;
    }
    return true;
}
