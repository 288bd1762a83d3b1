/* text/ftfy: the text cleaning that openai CLIP's tokenizer applies before BPE:
 * ftfy 6.3.1 `fix_text` with default options, and Python's `html.unescape`.
 *
 * fk_ftfy_fix_text reproduces, per line segment and repeated until the text no
 * longer changes (as ftfy does), in this order:
 *   unescape_html (ftfy's own: entities ending in ';', all-caps variants,
 *     numeric references; skipped from the first line containing '<' on),
 *   fix_encoding (mojibake detection and repair, "cafÃ©" -> "café":
 *     ftfy_encoding.c),
 *   fix_c1_controls (U+0080..U+009F read as Windows-1252),
 *   fix_latin_ligatures, fix_character_width, uncurl_quotes, fix_line_breaks,
 *   remove_terminal_escapes, remove_control_chars, NFC.
 * Surrogate repair is not needed (the input is valid UTF-8).
 *
 * All functions append to `out` (code points) and return false only when out
 * of memory. */
#ifndef FK_TEXT_FTFY_H
#define FK_TEXT_FTFY_H

#include "text/unicode.h"

/* ftfy.fix_text(text). */
bool fk_ftfy_fix_text(const uint32_t *text, size_t n, fk_cpbuf *out);

/* ftfy's fix_encoding (mojibake repair, ftfy_encoding.c): "cafÃ©" -> "café". */
bool fk_ftfy_fix_encoding(const uint32_t *text, size_t n, fk_cpbuf *out);

/* Python's html.unescape (HTML5 named references, with and without ';',
 * longest-prefix rule, numeric references with the HTML5 replacement table). */
bool fk_html_unescape(const uint32_t *text, size_t n, fk_cpbuf *out);

#endif /* FK_TEXT_FTFY_H */
