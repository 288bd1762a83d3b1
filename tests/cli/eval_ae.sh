#!/bin/bash
# eval_ae.sh FLUXKIT: `fluxkit eval ae` against the reference fixtures, the
# init-random ae presets and `fluxkit bench ae`. References: the BFL
# autoencoder's float64 outputs (tests/data/ae, relative L2 <= 1e-5, an f32
# implementation lands at ~1e-6), diffusers AutoencoderKL's (tests/data/ae-diffusers),
# the fixture's tensor names and shapes for the tiny-ae preset.
FK="$1"
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
[ -x "$FK" ] || { echo "usage: $0 FLUXKIT_BINARY" >&2; exit 2; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

IO=tests/data/ae/ae-tiny.io.f64.safetensors
for w in f32 bf16; do
    "$FK" eval ae --weights tests/data/ae/ae-tiny.weights.$w.safetensors --inputs $IO \
        --out "$TMP/$w.safetensors" --threads 2 >/dev/null 2>"$TMP/err" \
        && ok || bad "eval ae ($w weights): $(cat "$TMP/err")"
    out=$("$FK" compare --tol 1e-5 "$TMP/$w.safetensors" $IO 2>&1) && ok || bad "ae $w outside 1e-5: $out"
    # every expected output and intermediate was written
    for name in encode.z decode.output decode_random.output dbg.enc.conv_out dbg.dec.conv_out_in; do
        echo "$out" | grep -q "^$name " && ok || bad "ae $w: $name not compared"
    done
done

DIO=tests/data/ae-diffusers/ae-tiny-diffusers.io.f64.safetensors
"$FK" eval ae --weights tests/data/ae-diffusers --inputs $DIO --out "$TMP/d.safetensors" >/dev/null 2>"$TMP/err" \
    && ok || bad "eval ae (diffusers folder): $(cat "$TMP/err")"
out=$("$FK" compare --tol 1e-5 "$TMP/d.safetensors" $DIO 2>&1) && ok || bad "diffusers outside 1e-5: $out"

# inputs without any autoencoder tensor: exit 1 and say what is expected
"$FK" eval ae --weights tests/data/ae/ae-tiny.weights.f32.safetensors \
    --inputs tests/data/flux/tiny-dev.io.f32.safetensors --out "$TMP/x.safetensors" >/dev/null 2>"$TMP/err"
rc=$?
[ $rc = 1 ] && grep -q "encode.input" "$TMP/err" && ok || bad "no-input case: exit $rc: $(cat "$TMP/err")"
[ -e "$TMP/x.safetensors" ] && bad "output written on failure" || ok
# weights that are not an autoencoder
"$FK" eval ae --weights tests/data/flux/tiny-dev.weights.f32.safetensors --inputs $IO \
    --out "$TMP/x.safetensors" >/dev/null 2>"$TMP/err"
rc=$?
[ $rc = 1 ] && grep -q "not an autoencoder" "$TMP/err" && ok || bad "non-ae weights: exit $rc: $(cat "$TMP/err")"

# init-random tiny-ae: the fixture's names and shapes; it runs
"$FK" init-random --preset tiny-ae --seed 5 -o "$TMP/r.safetensors" >/dev/null 2>"$TMP/err" \
    && ok || bad "init-random tiny-ae: $(cat "$TMP/err")"
"$FK" info "$TMP/r.safetensors" | sed -n '/^  NAME/,$p' | awk '{print $1, $2, $3, $4, $5}' > "$TMP/list_a"
"$FK" info tests/data/ae/ae-tiny.weights.f32.safetensors | sed -n '/^  NAME/,$p' | awk '{print $1, $2, $3, $4, $5}' > "$TMP/list_ref"
[ -s "$TMP/list_ref" ] && cmp -s "$TMP/list_a" "$TMP/list_ref" && ok \
    || bad "tiny-ae tensors differ from the fixture: $(diff "$TMP/list_a" "$TMP/list_ref" | head -5)"
"$FK" eval ae --weights "$TMP/r.safetensors" --inputs $IO --out "$TMP/r_out.safetensors" >/dev/null 2>"$TMP/err" \
    && ok || bad "eval ae on random tiny-ae: $(cat "$TMP/err")"
"$FK" init-random --help | grep -q "^  ae " && ok || bad "init-random lists no ae preset"

# bench: a JSON line with the tiled difference
out=$("$FK" bench ae --preset tiny-ae --res 64 --tile 16 --overlap 4 --json --threads 2 2>&1)
rc=$?
[ $rc = 0 ] && echo "$out" | grep -q '"rel_l2_vs_untiled"' && ok || bad "bench ae: exit $rc: $out"
"$FK" bench ae --preset nope >/dev/null 2>&1
[ $? = 2 ] && ok || bad "bench ae with an unknown preset is not a usage error"

echo "eval_ae.sh: $pass passed, $fail failed"
[ $fail = 0 ]
