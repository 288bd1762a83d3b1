#!/usr/bin/env bash
# Every file in tests/data/malformed/ is a broken safetensors file (one defect
# each, made by tools/gen_st_fixtures.py). `fluxkit info FILE` must refuse it
# cleanly: exit status exactly 1 (not a signal, not a crash), exactly one line
# on stderr, naming the file.
#   usage: tests/cli/malformed.sh path/to/fluxkit      (run from the repository root)
set -u
BIN="${1:?usage: malformed.sh path/to/fluxkit}"
DIR="tests/data/malformed"
ERR="$(mktemp)"
trap 'rm -f "$ERR"' EXIT

pass=0
fail=0
count=0
for f in "$DIR"/*.safetensors; do
  [ -e "$f" ] || continue
  count=$((count + 1))
  "$BIN" info "$f" > /dev/null 2> "$ERR"
  rc=$?
  lines=$(wc -l < "$ERR")
  # a last line without a newline still counts as a line
  if [ -s "$ERR" ] && [ -n "$(tail -c 1 "$ERR")" ]; then lines=$((lines + 1)); fi
  why=""
  if [ "$rc" -ge 128 ]; then
    why="killed by signal $((rc - 128))"
  elif [ "$rc" -ne 1 ]; then
    why="exit status $rc, expected 1"
  elif [ "$lines" -ne 1 ]; then
    why="$lines lines on stderr, expected 1"
  elif ! grep -qF "$(basename "$f")" "$ERR"; then
    why="message does not name the file"
  fi
  if [ -z "$why" ]; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL $f: $why" >&2
    sed 's/^/    stderr: /' "$ERR" | head -5 >&2
  fi
done
if [ "$count" -lt 16 ]; then
  echo "FAIL only $count files in $DIR" >&2
  fail=$((fail + 1))
fi
echo "cli_malformed: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
