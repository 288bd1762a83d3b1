#!/bin/bash
# tokenize.sh FLUXKIT: `fluxkit tokenize` reproduces the reference ids of a few
# fixed records of tests/data/tokenizers/public.jsonl (clip_ids, t5_ids,
# *_unpadded; computed by openai CLIP + ftfy 6.3.1 and SentencePiece 0.1.97),
# fed as the records themselves (JSON lines) and as plain text lines; and fails
# cleanly on bad input (invalid UTF-8 -> exit 1 naming the line; usage -> 2).
FK="$1"
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
[ -x "$FK" ] || { echo "usage: $0 FLUXKIT_BINARY" >&2; exit 2; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
JSONL=tests/data/tokenizers/public.jsonl

# photo prompt, curly quotes (ftfy), HTML entities, Greek final sigma,
# a T5 equal-score run, CLIP truncation at 77, T5 truncation at 512
IDS="pub-gen-0001 pub-edge-0026 pub-edge-0070 pub-edge-0063 pub-edge-0116 pub-edge-0131 pub-edge-0134"
: > "$TMP/in.jsonl"
for id in $IDS; do grep "\"id\":\"$id\"" "$JSONL" >> "$TMP/in.jsonl"; done
n=$(wc -l < "$TMP/in.jsonl")
[ "$n" = 7 ] && ok || bad "found $n of 7 records in $JSONL"

# field FIELD < records: the integer array of FIELD per record, without spaces
field() { grep -o "\"$1\":\[[0-9,]*\]" | sed "s/^\"$1\"://"; }
ids() { sed 's/ //g' | grep -o '"ids":\[[0-9,]*\]' | sed 's/^"ids"://'; }
same() { # same DESCRIPTION EXPECTED-FILE GOT-FILE
    if cmp -s "$2" "$3" && [ -s "$2" ]; then ok; else bad "$1: ids differ"; diff "$2" "$3" | head -4 >&2; fi
}

field clip_ids < "$TMP/in.jsonl" > "$TMP/want_clip"
field clip_ids_unpadded < "$TMP/in.jsonl" > "$TMP/want_clip_u"
field t5_ids < "$TMP/in.jsonl" > "$TMP/want_t5"
field t5_ids_unpadded < "$TMP/in.jsonl" > "$TMP/want_t5_u"

"$FK" tokenize --tokenizer clip "$TMP/in.jsonl" > "$TMP/out" && ok || bad "clip: exit $?"
ids < "$TMP/out" > "$TMP/got"; same "clip 77" "$TMP/want_clip" "$TMP/got"
"$FK" tokenize --tokenizer clip --unpadded < "$TMP/in.jsonl" > "$TMP/out" && ok || bad "clip unpadded: exit $?"
ids < "$TMP/out" > "$TMP/got"; same "clip unpadded (stdin)" "$TMP/want_clip_u" "$TMP/got"
"$FK" tokenize --tokenizer t5 - < "$TMP/in.jsonl" > "$TMP/out" && ok || bad "t5: exit $?"
ids < "$TMP/out" > "$TMP/got"; same "t5 512" "$TMP/want_t5" "$TMP/got"
"$FK" tokenize --tokenizer t5 --unpadded --tokenizer-dir data/tokenizers/t5 "$TMP/in.jsonl" > "$TMP/out" &&
    ok || bad "t5 unpadded: exit $?"
ids < "$TMP/out" > "$TMP/got"; same "t5 unpadded (folder)" "$TMP/want_t5_u" "$TMP/got"
"$FK" tokenize --tokenizer clip --tokenizer-dir data/tokenizers/clip "$TMP/in.jsonl" > "$TMP/out" &&
    ok || bad "clip folder: exit $?"
ids < "$TMP/out" > "$TMP/got"; same "clip 77 (folder)" "$TMP/want_clip" "$TMP/got"

# schnell framing: 256 positions, the last content id before </s> is
# t5_ids_unpadded[254] for the 512-token record
"$FK" tokenize --tokenizer t5 --max-length 256 "$TMP/in.jsonl" > "$TMP/out" && ok || bad "t5 256: exit $?"
last=$(ids < "$TMP/out" | tail -1 | tr -d '[]' | tr ',' '\n')
[ "$(printf '%s\n' "$last" | wc -l)" = 256 ] && ok || bad "t5 256: not 256 ids"
[ "$(printf '%s\n' "$last" | sed -n 256p)" = 1 ] && ok || bad "t5 256: last id is not </s>"
want255=$(tail -1 "$TMP/want_t5_u" | tr -d '[]' | tr ',' '\n' | sed -n 255p)
[ "$(printf '%s\n' "$last" | sed -n 255p)" = "$want255" ] && ok || bad "t5 256: position 255"

# plain text lines (no JSON): the generated photo prompt and the sigma edge case
grep -o '"text":"[^"]*"' "$TMP/in.jsonl" | sed -n '1p;4p' | sed 's/^"text":"//; s/"$//' > "$TMP/plain.txt"
printf '%s\n%s\n' "$(sed -n 1p "$TMP/want_clip")" "$(sed -n 4p "$TMP/want_clip")" > "$TMP/want_plain"
"$FK" tokenize --tokenizer clip "$TMP/plain.txt" > "$TMP/out" && ok || bad "plain text: exit $?"
ids < "$TMP/out" > "$TMP/got"; same "plain text lines" "$TMP/want_plain" "$TMP/got"

# --tokens: the strings of the vocabulary
out=$(printf 'a photo of a cat\n' | "$FK" tokenize --tokenizer t5 --unpadded --tokens)
[ "$out" = '{"ids": [3, 9, 1202, 13, 3, 9, 1712, 1], "tokens": ["▁", "a", "▁photo", "▁of", "▁", "a", "▁cat", "</s>"]}' ] &&
    ok || bad "t5 --tokens: $out"

# invalid UTF-8 on line 2 -> exit 1, one error line naming the line
printf 'fine\nbad \xff byte\n' > "$TMP/bad.txt"
"$FK" tokenize --tokenizer clip "$TMP/bad.txt" > "$TMP/out" 2> "$TMP/err"; rc=$?
[ $rc = 1 ] && ok || bad "invalid UTF-8: exit $rc, expected 1"
grep -q "^fluxkit: error: .*bad.txt: line 2: .*UTF-8" "$TMP/err" && ok || bad "invalid UTF-8 message: $(cat "$TMP/err")"

# usage errors -> 2; missing folder -> 1
"$FK" tokenize < /dev/null > /dev/null 2>&1; rc=$?
[ $rc = 2 ] && ok || bad "no --tokenizer: exit $rc"
"$FK" tokenize --tokenizer gpt2 < /dev/null > /dev/null 2>&1; rc=$?
[ $rc = 2 ] && ok || bad "unknown tokenizer: exit $rc"
"$FK" tokenize --tokenizer clip --max-length 0 < /dev/null > /dev/null 2>&1; rc=$?
[ $rc = 2 ] && ok || bad "--max-length 0: exit $rc"
"$FK" tokenize --tokenizer t5 --tokenizer-dir "$TMP/none" < /dev/null > /dev/null 2> "$TMP/err"; rc=$?
[ $rc = 1 ] && grep -q "spiece.model" "$TMP/err" && ok || bad "missing folder: exit $rc: $(cat "$TMP/err")"
"$FK" tokenize --help | grep -q "^usage: fluxkit tokenize" && ok || bad "--help"

echo "tokenize.sh: $pass passed, $fail failed"
[ "$fail" = 0 ]
