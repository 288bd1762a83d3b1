/* text/unicode: UTF-8 coding, buffers and Unicode properties (see unicode.h). */
#include "text/unicode.h"

#include "text/text_tables.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---- buffers ------------------------------------------------------------- */

bool fk_cpbuf_reserve(fk_cpbuf *b, size_t cap) {
    if (cap <= b->cap) return true;
    size_t nc = b->cap ? b->cap : 16;
    while (nc < cap) {
        if (nc > SIZE_MAX / 2 / sizeof(uint32_t)) return false;
        nc *= 2;
    }
    uint32_t *v = realloc(b->v, nc * sizeof(uint32_t));
    if (!v) return false;
    b->v = v;
    b->cap = nc;
    return true;
}

bool fk_cpbuf_push(fk_cpbuf *b, uint32_t cp) {
    if (b->n == b->cap && !fk_cpbuf_reserve(b, b->n + 1)) return false;
    b->v[b->n++] = cp;
    return true;
}

bool fk_cpbuf_append(fk_cpbuf *b, const uint32_t *cp, size_t n) {
    if (n == 0) return true;
    if (b->n + n < b->n || !fk_cpbuf_reserve(b, b->n + n)) return false;
    memcpy(b->v + b->n, cp, n * sizeof(uint32_t));
    b->n += n;
    return true;
}

void fk_cpbuf_free(fk_cpbuf *b) {
    free(b->v);
    b->v = NULL;
    b->n = b->cap = 0;
}

bool fk_cpbuf_equal(const fk_cpbuf *a, const fk_cpbuf *b) {
    return a->n == b->n && (a->n == 0 || memcmp(a->v, b->v, a->n * sizeof(uint32_t)) == 0);
}

void fk_cpbuf_swap(fk_cpbuf *a, fk_cpbuf *b) {
    fk_cpbuf t = *a;
    *a = *b;
    *b = t;
}

bool fk_bytebuf_reserve(fk_bytebuf *b, size_t cap) {
    if (cap + 1 <= b->cap) return true;
    size_t nc = b->cap ? b->cap : 64;
    while (nc < cap + 1) {
        if (nc > SIZE_MAX / 2) return false;
        nc *= 2;
    }
    char *v = realloc(b->v, nc);
    if (!v) return false;
    if (!b->v) v[0] = '\0';
    b->v = v;
    b->cap = nc;
    return true;
}

bool fk_bytebuf_append(fk_bytebuf *b, const void *data, size_t n) {
    if (b->n + n < b->n || !fk_bytebuf_reserve(b, b->n + n)) return false;
    if (n) memcpy(b->v + b->n, data, n);
    b->n += n;
    b->v[b->n] = '\0';
    return true;
}

bool fk_bytebuf_push(fk_bytebuf *b, char c) { return fk_bytebuf_append(b, &c, 1); }

bool fk_idbuf_push(fk_idbuf *b, int64_t id) {
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 64;
        int64_t *v = realloc(b->v, nc * sizeof *v);
        if (!v) return false;
        b->v = v;
        b->cap = nc;
    }
    b->v[b->n++] = id;
    return true;
}

bool fk_bytebuf_printf(fk_bytebuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0) return false;
    if ((size_t)k < sizeof tmp) return fk_bytebuf_append(b, tmp, (size_t)k);
    if (!fk_bytebuf_reserve(b, b->n + (size_t)k)) return false;
    va_start(ap, fmt);
    vsnprintf(b->v + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
    return true;
}

void fk_bytebuf_free(fk_bytebuf *b) {
    free(b->v);
    b->v = NULL;
    b->n = b->cap = 0;
}

/* ---- UTF-8 --------------------------------------------------------------- */

size_t fk_utf8_decode1(const uint8_t *s, size_t n, uint32_t *cp) {
    if (n == 0) return 0;
    uint8_t c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2, v = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, v = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

size_t fk_utf8_encode1(uint32_t cp, uint8_t out[4]) {
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

bool fk_utf8_valid(const char *s, size_t n, size_t *bad_offset) {
    const uint8_t *u = (const uint8_t *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t k = fk_utf8_decode1(u + i, n - i, &cp);
        if (k == 0) {
            if (bad_offset) *bad_offset = i;
            return false;
        }
        i += k;
    }
    return true;
}

bool fk_utf8_to_cps(const char *s, size_t n, fk_cpbuf *out) {
    const uint8_t *u = (const uint8_t *)s;
    if (!fk_cpbuf_reserve(out, out->n + n)) return false;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = fk_utf8_decode1(u + i, n - i, &cp);
        if (k == 0) return false;
        out->v[out->n++] = cp;
        i += k;
    }
    return true;
}

bool fk_cps_to_utf8(const uint32_t *cps, size_t n, fk_bytebuf *out) {
    if (n > SIZE_MAX / 4 || !fk_bytebuf_reserve(out, out->n + 4 * n)) return false;
    for (size_t i = 0; i < n; i++) {
        if (cps[i] >= 0x110000) return false;
        out->n += fk_utf8_encode1(cps[i], (uint8_t *)out->v + out->n);
    }
    out->v[out->n] = '\0';
    return true;
}

/* ---- properties ---------------------------------------------------------- */

static utf8proc_category_t fk_uc_cat(uint32_t cp) {
    return cp < 0x110000 ? utf8proc_category((utf8proc_int32_t)cp) : UTF8PROC_CATEGORY_CN;
}

bool fk_uc_is_letter(uint32_t cp) {
    if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
    utf8proc_category_t c = fk_uc_cat(cp);
    return c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO;
}

bool fk_uc_is_number(uint32_t cp) {
    if (cp < 0x80) return cp >= '0' && cp <= '9';
    utf8proc_category_t c = fk_uc_cat(cp);
    return c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO;
}

bool fk_uc_is_decimal(uint32_t cp) {
    if (cp < 0x80) return cp >= '0' && cp <= '9';
    return fk_uc_cat(cp) == UTF8PROC_CATEGORY_ND;
}

bool fk_uc_is_white_space(uint32_t cp) {
    switch (cp) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20: case 0x85: case 0xA0:
    case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
        return true;
    default:
        return cp >= 0x2000 && cp <= 0x200A;
    }
}

bool fk_uc_is_py_space(uint32_t cp) {
    return fk_uc_is_white_space(cp) || (cp >= 0x1C && cp <= 0x1F);
}

bool fk_uc_in_ranges(uint32_t cp, const void *ranges, int count) {
    const fk_cp_range *r = ranges;
    int lo = 0, hi = count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < r[mid].lo) hi = mid - 1;
        else if (cp > r[mid].hi) lo = mid + 1;
        else return true;
    }
    return false;
}

bool fk_uc_is_cased(uint32_t cp) {
    utf8proc_category_t c = fk_uc_cat(cp);
    if (c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT) return true;
    return fk_uc_in_ranges(cp, fk_uc_other_lowercase, fk_uc_other_lowercase_count) ||
           fk_uc_in_ranges(cp, fk_uc_other_uppercase, fk_uc_other_uppercase_count);
}

bool fk_uc_is_case_ignorable(uint32_t cp) {
    switch (fk_uc_cat(cp)) {
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_SK:
        return true;
    default:
        return fk_uc_in_ranges(cp, fk_uc_wb_ignorable, fk_uc_wb_ignorable_count);
    }
}

/* Python's handle_capital_sigma (Objects/unicodeobject.c): U+03A3 lowercases to
 * final sigma when preceded by a cased letter (skipping case-ignorables) and
 * not followed by one (skipping case-ignorables). */
static uint32_t fk_uc_sigma(const uint32_t *t, size_t n, size_t i) {
    size_t j = i;
    uint32_t c = 0;
    bool found = false;
    while (j > 0) {
        c = t[--j];
        if (!fk_uc_is_case_ignorable(c)) {
            found = true;
            break;
        }
    }
    bool final_sigma = found && fk_uc_is_cased(c);
    if (final_sigma && i + 1 < n) {
        for (j = i + 1; j < n; j++) {
            c = t[j];
            if (!fk_uc_is_case_ignorable(c)) break;
        }
        final_sigma = j == n || !fk_uc_is_cased(c);
    }
    return final_sigma ? 0x3C2 : 0x3C3;
}

bool fk_uc_py_lower(const uint32_t *in, size_t n, fk_cpbuf *out) {
    if (!fk_cpbuf_reserve(out, out->n + n + 1)) return false;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = in[i];
        if (c < 0x80) {
            if (c >= 'A' && c <= 'Z') c += 32;
        } else if (c == 0x130) { /* SpecialCasing: İ -> i + COMBINING DOT ABOVE */
            if (!fk_cpbuf_push(out, 0x69) || !fk_cpbuf_push(out, 0x307)) return false;
            continue;
        } else if (c == 0x3A3) {
            c = fk_uc_sigma(in, n, i);
        } else if (c < 0x110000) {
            c = (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
        }
        if (!fk_cpbuf_push(out, c)) return false;
    }
    return true;
}

bool fk_uc_nfc(fk_cpbuf *b) {
    /* Code points below U+0300 are NFC-stable and never combine with each
     * other (combining marks start at U+0300): nothing to do. */
    size_t i = 0;
    while (i < b->n && b->v[i] < 0x300) i++;
    if (i == b->n) return true;
    fk_bytebuf u = {0};
    if (!fk_cps_to_utf8(b->v, b->n, &u)) {
        fk_bytebuf_free(&u);
        return false;
    }
    utf8proc_uint8_t *res = NULL;
    utf8proc_ssize_t k = utf8proc_map((const utf8proc_uint8_t *)u.v, (utf8proc_ssize_t)u.n, &res,
                                      (utf8proc_option_t)(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
    fk_bytebuf_free(&u);
    if (k < 0) return false;
    b->n = 0;
    bool ok = fk_utf8_to_cps((const char *)res, (size_t)k, b);
    free(res);
    return ok;
}
