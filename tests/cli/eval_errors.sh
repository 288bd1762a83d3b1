#!/bin/bash
# eval_errors.sh FLUXKIT: `fluxkit eval` fails cleanly: usage errors exit 2,
# runtime errors exit 1 with one "fluxkit: error: ..." line naming the file,
# and no output file is created when the run fails.
FK="$1"
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
[ -x "$FK" ] || { echo "usage: $0 FLUXKIT_BINARY" >&2; exit 2; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
W=tests/data/flux/tiny-dev.weights.f32.safetensors
IN=tests/data/flux/tiny-dev.io.f32.safetensors

ev() { "$FK" eval "$@" >/dev/null 2>"$TMP/err"; }
no_files() { [ -z "$(ls -A "$TMP/out")" ] && ok || bad "$1: left files: $(ls -A "$TMP/out")"; rm -f "$TMP/out/"* "$TMP/out/".??*; }
mkdir -p "$TMP/out"

# missing inputs file -> 1, message names it, no output (nor temporary) file
ev flux --weights "$W" --inputs "$TMP/missing.safetensors" --out "$TMP/out/o.safetensors"; rc=$?
[ $rc = 1 ] && ok || bad "missing inputs: exit $rc, expected 1"
grep -q "^fluxkit: error: .*missing.safetensors" "$TMP/err" && ok || bad "message: $(cat "$TMP/err")"
[ "$(wc -l < "$TMP/err")" = 1 ] && ok || bad "error not one line"
no_files "missing inputs"

# missing weights file -> 1, no output
ev flux --weights "$TMP/nope.safetensors" --inputs "$IN" --out "$TMP/out/o.safetensors"; rc=$?
[ $rc = 1 ] && ok || bad "missing weights: exit $rc, expected 1"
grep -q "nope.safetensors" "$TMP/err" && ok || bad "weights message: $(cat "$TMP/err")"
no_files "missing weights"

# inputs that are not a safetensors file -> 1, no output
printf 'garbage' > "$TMP/junk.safetensors"
ev flux --weights "$W" --inputs "$TMP/junk.safetensors" --out "$TMP/out/o.safetensors"; rc=$?
[ $rc = 1 ] && ok || bad "junk inputs: exit $rc, expected 1"
no_files "junk inputs"

# inputs without the tensors flux needs (the autoencoder's io file) -> 1, no output
ev flux --weights "$W" --inputs tests/data/ae/ae-tiny.io.f32.safetensors --out "$TMP/out/o.safetensors"; rc=$?
[ $rc = 1 ] && ok || bad "wrong inputs: exit $rc, expected 1"
no_files "wrong inputs"

# output into a folder that does not exist -> 1
ev flux --weights "$W" --inputs "$TMP/missing.safetensors" --out "$TMP/no/dir/o.safetensors"; rc=$?
[ $rc = 1 ] && ok || bad "bad out dir: exit $rc, expected 1"

# usage errors -> 2
ev no-such-component --weights "$W" --inputs "$IN" --out "$TMP/out/o.safetensors"; rc=$?
[ $rc = 2 ] && ok || bad "unknown component: exit $rc, expected 2"
grep -q "no-such-component" "$TMP/err" && grep -q "flux" "$TMP/err" && ok || bad "component message: $(cat "$TMP/err")"
ev --weights "$W" --inputs "$IN" --out "$TMP/out/o.safetensors"; rc=$?
[ $rc = 2 ] && ok || bad "no component: exit $rc, expected 2"
ev flux --inputs "$IN" --out "$TMP/out/o.safetensors"; rc=$?
[ $rc = 2 ] && ok || bad "missing --weights: exit $rc, expected 2"
grep -q -- "--weights" "$TMP/err" && ok || bad "missing --weights not named"
ev flux --weights "$W" --out "$TMP/out/o.safetensors"; rc=$?
[ $rc = 2 ] && ok || bad "missing --inputs: exit $rc, expected 2"
grep -q -- "--inputs" "$TMP/err" && ok || bad "missing --inputs not named"
ev flux --weights "$W" --inputs "$IN"; rc=$?
[ $rc = 2 ] && ok || bad "missing --out: exit $rc, expected 2"
grep -q -- "--out" "$TMP/err" && ok || bad "missing --out not named"
ev flux --weights "$W" --inputs "$IN" --out "$TMP/out/o.safetensors" --threads -3; rc=$?
[ $rc = 2 ] && ok || bad "--threads -3: exit $rc, expected 2"
no_files "usage errors"

echo "eval_errors.sh: $pass passed, $fail failed"
[ "$fail" = 0 ]
