#!/bin/bash
# init_random.sh FLUXKIT: `fluxkit init-random` writes a loadable checkpoint of
# a preset. References: the tiny-flux preset's shapes (as recognized by info,
# which infers the config from the tensors alone), exact byte sizes
# (f32 = 4 bytes per parameter, bf16 = 2), and byte-identity for equal seeds.
FK="$1"
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
[ -x "$FK" ] || { echo "usage: $0 FLUXKIT_BINARY" >&2; exit 2; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

run() { "$FK" init-random "$@" >/dev/null 2>"$TMP/err"; }

run --preset tiny-flux --dtype f32 --seed 7 -o "$TMP/a.safetensors"; rc=$?
[ $rc = 0 ] && ok || bad "tiny-flux f32: exit $rc: $(cat "$TMP/err")"
[ -s "$TMP/a.safetensors" ] && ok || bad "no output file"
ls "$TMP" | grep -q tmp && bad "temporary file left behind" || ok

# info recognizes it, with the preset's configuration (tiny-flux = the
# tiny-dev fixture's shape: hidden 96, 3 heads, 2 + 2 blocks, guidance)
out=$("$FK" info --no-tensors "$TMP/a.safetensors")
echo "$out" | grep -q "FLUX transformer: tiny-flux (format bfl)" && ok || bad "info does not name tiny-flux"
echo "$out" | grep -q "hidden 96, 3 heads x head dim 32, depth 2 double + 2 single" && ok || bad "config"
echo "$out" | grep -q "preset = tiny-flux" && ok || bad "metadata preset"
echo "$out" | grep -q "seed = 7" && ok || bad "metadata seed"
echo "$out" | grep -q "generator = fluxkit init-random" && ok || bad "metadata generator"
echo "$out" | grep -q '^  config = {"axes_dim":\[8,12,12\]' && ok || bad "metadata config"
# same key names and shapes as the reference fixture (tensor list of both)
"$FK" info "$TMP/a.safetensors" | sed -n '/^  NAME/,$p' | awk '{print $1, $2, $3, $4, $5}' > "$TMP/list_a"
"$FK" info tests/data/flux/tiny-dev.weights.f32.safetensors | sed -n '/^  NAME/,$p' | awk '{print $1, $2, $3, $4, $5}' > "$TMP/list_ref"
cmp -s "$TMP/list_a" "$TMP/list_ref" && ok || bad "tensor names/shapes differ from tests/data/flux/tiny-dev: $(diff "$TMP/list_a" "$TMP/list_ref" | head -5)"

# determinism: same seed -> byte-identical, also with a different thread count
run --preset tiny-flux --dtype f32 --seed 7 --threads 1 -o "$TMP/b.safetensors"
cmp -s "$TMP/a.safetensors" "$TMP/b.safetensors" && ok || bad "same seed gives different files"
run --preset tiny-flux --dtype f32 --seed 8 -o "$TMP/c.safetensors"
cmp -s "$TMP/a.safetensors" "$TMP/c.safetensors" && bad "different seeds give the same file" || ok
[ "$(stat -c %s "$TMP/a.safetensors")" = "$(stat -c %s "$TMP/c.safetensors")" ] && ok || bad "sizes differ across seeds"

# refuses to overwrite without --force (exit 1, file untouched), overwrites with it
cp "$TMP/c.safetensors" "$TMP/c.orig"
run --preset tiny-flux --seed 7 -o "$TMP/c.safetensors"; rc=$?
[ $rc = 1 ] && ok || bad "overwrite without --force: exit $rc, expected 1"
grep -q "force" "$TMP/err" && ok || bad "message does not mention --force"
cmp -s "$TMP/c.safetensors" "$TMP/c.orig" && ok || bad "file changed without --force"
run --preset tiny-flux --seed 7 -o "$TMP/c.safetensors" --force; rc=$?
[ $rc = 0 ] && ok || bad "--force: exit $rc"
cmp -s "$TMP/a.safetensors" "$TMP/c.safetensors" && ok || bad "--force did not write the seed-7 file"

# usage errors
run --preset no-such-preset -o "$TMP/d.safetensors"; rc=$?
[ $rc = 2 ] && ok || bad "bad preset: exit $rc, expected 2"
grep -q "no-such-preset" "$TMP/err" && grep -q "tiny-flux" "$TMP/err" && ok || bad "bad preset message: $(cat "$TMP/err")"
[ -e "$TMP/d.safetensors" ] && bad "bad preset created a file" || ok
run --preset tiny-flux; rc=$?
[ $rc = 2 ] && ok || bad "missing -o: exit $rc, expected 2"
run -o "$TMP/d.safetensors"; rc=$?
[ $rc = 2 ] && ok || bad "missing --preset: exit $rc, expected 2"
run --preset tiny-flux -o "$TMP/no/such/dir/x.safetensors"; rc=$?
[ $rc = 1 ] && ok || bad "unwritable path: exit $rc, expected 1"
"$FK" init-random --help | grep -q "tiny-flux" && ok || bad "--help does not list presets"

# f32 vs bf16 sizes: data sections are exactly 4 and 2 bytes per parameter
run --preset tiny-flux --dtype bf16 --seed 7 -o "$TMP/h.safetensors"; rc=$?
[ $rc = 0 ] && ok || bad "bf16: exit $rc"
params=$("$FK" info --json --no-tensors "$TMP/a.safetensors" | grep -E '^\s*"parameters"' | tail -1 | grep -oE '[0-9]+')
hdr() { od -An -t u8 -N 8 "$1" | tr -d ' '; } # u64 little-endian header length
fsz=$(stat -c %s "$TMP/a.safetensors"); hsz=$(stat -c %s "$TMP/h.safetensors")
[ $((fsz - 8 - $(hdr "$TMP/a.safetensors"))) = $((4 * params)) ] && ok || bad "f32 data size != 4 x $params"
[ $((hsz - 8 - $(hdr "$TMP/h.safetensors"))) = $((2 * params)) ] && ok || bad "bf16 data size != 2 x $params"
"$FK" info --no-tensors "$TMP/h.safetensors" | grep -q "BF16 .* 84 tensors" && ok || bad "bf16 dtype"
# --round-bf16: the f32 file then holds the bf16 file's numbers; info shows
# the same parameter count either way
run --preset tiny-flux --dtype f32 --round-bf16 --seed 7 -o "$TMP/r.safetensors"; rc=$?
[ $rc = 0 ] && ok || bad "--round-bf16: exit $rc"

echo "init_random.sh: $pass passed, $fail failed"
[ "$fail" = 0 ]
