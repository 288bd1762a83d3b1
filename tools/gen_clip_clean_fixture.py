#!/usr/bin/env python3
"""Generate tests/data/tokenizers/clip_clean.jsonl: CLIP's text cleaning on
random strings, as computed by the reference (openai CLIP simple_tokenizer's
basic_clean + whitespace_clean + lower: ftfy.fix_text, html.unescape twice,
strip, regex \\s+ -> ' ', strip, str.lower()).

The strings are built to hit every ftfy fixer: HTML entities (named, numeric,
all-caps, unterminated), C1 controls, ligatures, full/half width, curly quotes,
line breaks, terminal escapes, control characters, final sigma, and mojibake
(UTF-8 text decoded with each of ftfy's code pages, NBSP turned into spaces,
double mojibake, mixed encodings) so that fix_encoding's branches are covered.

One JSON object per line: {"in": hex of the UTF-8 input, "clean": hex of the
UTF-8 result}. Run from the repository root:
    python3 tools/gen_clip_clean_fixture.py
Needs: ftfy==6.3.1, regex.
"""
import html
import json
import random

import ftfy
import regex
from ftfy.chardata import CHARMAP_ENCODINGS

OUT = "tests/data/tokenizers/clip_clean.jsonl"

ALPHA = list("&&&#;;xX0129abcfABF amplquotNTILDEéz") + [
    "&amp;", "&lt", "&#", "&#x", "&NTILDE;", "&ntilde", "&ampfoo", "&#128;", "&#0;", "&#x110000;",
    "&#55296;", "&#12;", "&#x41;", "&hellip;", "&EACUTE;", "&SZLIG;", "\r", "\n", "\r\n", "\x1b[",
    "\x1b[31m", "\x1b", "<", ">", "\x85", "\x80", "\x9d", "\x93", "\u0081", "ﬁ", "ﬃ", "ǅ", "Ｈ", "ｶ",
    "ﾞ", "\u3000", "“", "’", "\u02bc", "\u2028", "\x00", "\x7f", "\ufeff", "\u206a", "\ufffc",
    "e\u0301", "Σ", "ΑΣ", "İ", "\u0345", "\t", "\x0b", "\u00a0", "\u200b", "\x1c", "½", "①", "𝐀",
    "'s", "'T", "<|endoftext|>", "Ã", "Â", "â€", "Ð", "Ñ", "Ø", "×", "\xad", "ſ",
]
WORDS = [
    "café", "naïve", "résumé", "façade", "Ñandú", "Straße", "Ελληνικά", "ΟΔΟΣ", "русский", "日本語",
    "😀", "👍🏽", "—", "–", "…", "€", "£", "©", "®", "™", "°", "½", "“quoted”", "‘s’", "à la", "às",
    "Ã", "Â", " ", "  ", "a", "the", "photo of", "cat", "\u00a0", "?", "\x1a", "\ufffd", "İstanbul",
]


def mojibake(rng: random.Random, s: str) -> str:
    enc = rng.choice(CHARMAP_ENCODINGS + ["windows-1252", "windows-1252", "latin-1"])
    b = s.encode("utf-8")
    if rng.random() < 0.3:
        b = b.replace(b"\xa0", b" ")
    return b.decode(enc, errors="replace")


def clean(t: str) -> str:
    t = ftfy.fix_text(t)
    t = html.unescape(html.unescape(t)).strip()
    t = regex.sub(r"\s+", " ", t).strip()
    return t.lower()


def main() -> None:
    assert ftfy.__version__ == "6.3.1"
    rng = random.Random(20240601)
    cases = []
    for i in range(1500):
        if i % 3 == 0:
            s = "".join(rng.choice(ALPHA) for _ in range(rng.randint(0, 16)))
        else:
            parts = [rng.choice(WORDS) for _ in range(rng.randint(1, 8))]
            s = " ".join(mojibake(rng, p) if rng.random() < 0.5 else p for p in parts)
            if rng.random() < 0.3:
                s = mojibake(rng, s)
            if rng.random() < 0.1:
                s = mojibake(rng, s)
        cases.append(s)
    with open(OUT, "w", encoding="ascii") as f:
        for s in cases:
            f.write(json.dumps({"in": s.encode("utf-8").hex(), "clean": clean(s).encode("utf-8").hex()}) + "\n")
    changed = sum(ftfy.fix_text(s) != ftfy.fix_text(s, fix_encoding=False) for s in cases)
    print(f"wrote {OUT}: {len(cases)} cases, {changed} where fix_encoding changes the text")


if __name__ == "__main__":
    main()
