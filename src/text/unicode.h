/* text/unicode: UTF-8 coding, growable code-point and byte buffers, and the
 * Unicode properties the tokenizers need (from utf8proc, Unicode 15.0, plus
 * the small property lists in text_tables.c).
 *
 * Checked against Python 3.11 (Unicode 14) on every code point assigned there:
 * fk_uc_py_lower (utf8proc's simple lowercase + U+0130 + final sigma) equals
 * str.lower() everywhere; \p{L} / \p{N} equal the categories; Cased and
 * Case_Ignorable equal the regex module's except U+0295 and U+1171E, which
 * Unicode 16 changed.
 *
 * Buffers use malloc/realloc; functions that allocate return false when out of
 * memory and leave the buffer valid (callers map that to FK_ERR_NOMEM). */
#ifndef FK_TEXT_UNICODE_H
#define FK_TEXT_UNICODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- growable buffers ---------------------------------------------------- */

typedef struct fk_cpbuf {
    uint32_t *v; /* (n) code points */
    size_t n, cap;
} fk_cpbuf;

typedef struct fk_bytebuf {
    char *v; /* (n) bytes, always NUL-terminated when v != NULL */
    size_t n, cap;
} fk_bytebuf;

typedef struct fk_idbuf {
    int64_t *v; /* (n) token ids */
    size_t n, cap;
} fk_idbuf;

bool fk_cpbuf_reserve(fk_cpbuf *b, size_t cap);
bool fk_cpbuf_push(fk_cpbuf *b, uint32_t cp);
bool fk_cpbuf_append(fk_cpbuf *b, const uint32_t *cp, size_t n);
void fk_cpbuf_free(fk_cpbuf *b);
/* a->n == b->n and the same code points. */
bool fk_cpbuf_equal(const fk_cpbuf *a, const fk_cpbuf *b);
/* Swap the contents of two buffers (no allocation). */
void fk_cpbuf_swap(fk_cpbuf *a, fk_cpbuf *b);

bool fk_bytebuf_reserve(fk_bytebuf *b, size_t cap);
bool fk_bytebuf_append(fk_bytebuf *b, const void *data, size_t n);
bool fk_bytebuf_push(fk_bytebuf *b, char c);
bool fk_bytebuf_printf(fk_bytebuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fk_bytebuf_free(fk_bytebuf *b);

/* Append one id (grows ×2 from 64); false when out of memory. Free v with free(). */
bool fk_idbuf_push(fk_idbuf *b, int64_t id);

/* ---- UTF-8 --------------------------------------------------------------- */

/* Decode one strict UTF-8 character (no overlong forms, no surrogates, at most
 * U+10FFFF) from s[0..n). Returns its length 1..4, or 0 when invalid/truncated. */
size_t fk_utf8_decode1(const uint8_t *s, size_t n, uint32_t *cp);
/* Encode cp (< 0x110000) into out; returns 1..4. */
size_t fk_utf8_encode1(uint32_t cp, uint8_t out[4]);
/* True when s[0..n) is strict UTF-8; otherwise *bad_offset (may be NULL) is
 * the byte offset of the first invalid sequence. */
bool fk_utf8_valid(const char *s, size_t n, size_t *bad_offset);
/* Append the code points of valid UTF-8 text to out. Returns false when out of
 * memory or when the text is not valid UTF-8. */
bool fk_utf8_to_cps(const char *s, size_t n, fk_cpbuf *out);
/* Append the UTF-8 encoding of cps to out. */
bool fk_cps_to_utf8(const uint32_t *cps, size_t n, fk_bytebuf *out);

/* ---- properties ---------------------------------------------------------- */

bool fk_uc_is_letter(uint32_t cp);      /* General_Category L* (\p{L}) */
bool fk_uc_is_number(uint32_t cp);      /* General_Category N* (\p{N}) */
bool fk_uc_is_decimal(uint32_t cp);     /* General_Category Nd (Python re's \d) */
bool fk_uc_is_white_space(uint32_t cp); /* White_Space property (regex module's \s) */
bool fk_uc_is_py_space(uint32_t cp);    /* Python str.isspace() (adds U+001C..U+001F) */
bool fk_uc_is_cased(uint32_t cp);       /* Cased (Lu, Ll, Lt, Other_Lowercase, Other_Uppercase) */
bool fk_uc_is_case_ignorable(uint32_t cp); /* Case_Ignorable (Mn Me Cf Lm Sk, WB MidLetter/MidNumLet/Single_Quote) */
bool fk_uc_in_ranges(uint32_t cp, const void *ranges /* fk_cp_range[] */, int count);

/* Python str.lower(): full lowercase mapping (U+0130 -> "i\u0307") and the
 * Final_Sigma rule for U+03A3, appended to out. */
bool fk_uc_py_lower(const uint32_t *in, size_t n, fk_cpbuf *out);

/* Unicode NFC of the buffer, in place (utf8proc). */
bool fk_uc_nfc(fk_cpbuf *b);

#endif /* FK_TEXT_UNICODE_H */
