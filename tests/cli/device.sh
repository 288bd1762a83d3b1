#!/bin/bash
# device.sh FLUXKIT: --device on generate, eval and bench.
# - devsim (the CPU backend behind the simulated device: device memory the
#   host cannot touch, constant-weight checks) gives the CPU's bits: the
#   same PNG bytes from generate and the same tensors (relative L2 0) from
#   eval flux / ae / clip / t5, in both precisions; any host access to device
#   memory in the pipeline or a runner would crash these runs.
# - bench flux / ae / t5 / clip / image run on it and name it.
# - cuda: on a build or machine without a GPU, exit 1 with one error line that
#   names --device and nothing written; with a GPU, a PNG.
# - a malformed device name is a usage error (exit 2).
FK="$1"
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
[ -x "$FK" ] || { echo "usage: $0 FLUXKIT_BINARY" >&2; exit 2; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
M=(--model tests/data/flux/tiny-dev.weights.bf16.safetensors --ae tests/data/ae/ae-tiny.weights.f32.safetensors
   --clip tests/data/pipeline/tiny-clip-l.safetensors --t5 tests/data/pipeline/tiny-t5xxl.safetensors)

# ---- generate: devsim = cpu, byte for byte ----------------------------------------
for prec in bf16 f32; do
    for dev in cpu devsim; do
        "$FK" generate -t 2 -p "a lighthouse at dawn" -o "$TMP/$dev-$prec.png" "${M[@]}" -W 64 -H 48 -s 3 -S 7 \
            --precision $prec --device $dev >"$TMP/out" 2>"$TMP/err" && ok \
            || bad "generate --device $dev --precision $prec: $(cat "$TMP/err")"
    done
    cmp -s "$TMP/cpu-$prec.png" "$TMP/devsim-$prec.png" && ok || bad "generate $prec: devsim differs from cpu"
done
# img2img and true CFG through the simulated device too
for dev in cpu devsim; do
    "$FK" generate -t 2 -p "a boat" -n "fog" --cfg-scale 2 -i tests/data/pipeline/init-24x32.png --strength 0.6 \
        -o "$TMP/i-$dev.png" "${M[@]}" -s 4 -S 3 --device $dev >"$TMP/out" 2>"$TMP/err" && ok \
        || bad "img2img + CFG --device $dev: $(cat "$TMP/err")"
done
cmp -s "$TMP/i-cpu.png" "$TMP/i-devsim.png" && ok || bad "img2img + CFG: devsim differs from cpu"
# -v names the backend and the device memory
"$FK" generate -t 2 -p "x" -o "$TMP/v.png" "${M[@]}" -W 32 -H 32 -s 1 -S 1 --device devsim -v >"$TMP/out" 2>"$TMP/err"
grep -q "backend: devsim over cpu" "$TMP/err" && ok || bad "generate -v: no backend line: $(cat "$TMP/err")"
grep -q "device memory after text" "$TMP/err" && ok || bad "generate -v: no device memory line"
"$FK" generate -t 2 -p "x" -o "$TMP/j.png" "${M[@]}" -W 32 -H 32 -s 1 -S 1 --device devsim --json >"$TMP/out" 2>"$TMP/err"
grep -q '"device":"devsim"' "$TMP/out" && ok || bad "generate --json: no device: $(cat "$TMP/out")"

# ---- eval: devsim = cpu --------------------------------------------------------------
d=tests/data
ev() { # NAME ARGS... : eval on cpu and devsim, then compare with tolerance 0
    local name=$1; shift
    for dev in cpu devsim; do
        "$FK" eval "$@" --threads 2 --device $dev --out "$TMP/$name-$dev.safetensors" >/dev/null 2>"$TMP/err" \
            && ok || bad "eval $name --device $dev: $(cat "$TMP/err")"
    done
    out=$("$FK" compare --tol 0 "$TMP/$name-devsim.safetensors" "$TMP/$name-cpu.safetensors" 2>&1) && ok \
        || bad "eval $name: devsim differs from cpu: $out"
}
ev flux flux --denoise --weights $d/flux/tiny-dev.weights.bf16.safetensors --inputs $d/flux/tiny-dev.io.f64.safetensors
ev flux16 flux --precision bf16 --weights $d/flux/tiny-schnell.weights.f32.safetensors \
    --inputs $d/flux/tiny-schnell.io.f64.safetensors
ev ae ae --weights $d/ae/ae-tiny.weights.bf16.safetensors --inputs $d/ae/ae-tiny.io.f64.safetensors
ev clip clip --weights $d/clip/tiny-clip.weights.f32.safetensors --inputs $d/clip/tiny-clip.io.f64.safetensors
ev t5 t5 --weights $d/t5/tiny-t5.weights.f32.safetensors --inputs $d/t5/tiny-t5.io.f64.safetensors

# ---- bench on the simulated device -----------------------------------------------------
"$FK" bench flux --preset tiny-flux --res 32 --steps 2 --txt-len 16 --threads 2 --device devsim >"$TMP/out" 2>"$TMP/err" \
    && ok || bad "bench flux --device devsim: $(cat "$TMP/err")"
grep -q "devsim over cpu" "$TMP/out" && ok || bad "bench flux: backend not named: $(cat "$TMP/out")"
grep -q "peak device" "$TMP/out" && ok || bad "bench flux: no peak device column"
"$FK" bench ae --preset tiny-ae --res 32 --threads 2 --device devsim >"$TMP/out" 2>"$TMP/err" \
    && ok || bad "bench ae --device devsim: $(cat "$TMP/err")"
"$FK" bench clip --weights $d/clip/tiny-clip.weights.f32.safetensors --len 8 --threads 2 --device devsim \
    >"$TMP/out" 2>"$TMP/err" && ok || bad "bench clip --device devsim: $(cat "$TMP/err")"
"$FK" bench t5 --weights $d/t5/tiny-t5.weights.f32.safetensors --len 8 --threads 2 --device devsim \
    >"$TMP/out" 2>"$TMP/err" && ok || bad "bench t5 --device devsim: $(cat "$TMP/err")"
"$FK" bench image "${M[@]}" --res 32,48 --steps 2 --images 2 --threads 2 --device devsim --out "$TMP" \
    >"$TMP/out" 2>"$TMP/err" && ok || bad "bench image --device devsim: $(cat "$TMP/err")"
[ "$(grep -c '"component": "image"' "$TMP/out")" = 2 ] && ok || bad "bench image: JSON lines: $(cat "$TMP/out")"
grep -q '"device": "devsim"' "$TMP/out" && ok || bad "bench image: device not in JSON"
peak_kept=$(grep '"res": 48' "$TMP/out" | grep -o '"peak_device_bytes": [0-9]*' | grep -o '[0-9]*$')
mkdir -p "$TMP/off"
"$FK" bench image "${M[@]}" --res 48 --steps 2 --images 1 --threads 2 --device devsim --offload --out "$TMP/off" \
    >"$TMP/out" 2>"$TMP/err" && ok || bad "bench image --offload: $(cat "$TMP/err")"
grep -q '"offload": true' "$TMP/out" && ok || bad "bench image --offload: not in JSON"
# kept models keep weights, not activations: the simulator counts activations only, so
# the kept session's device peak is the staged one's (the text encoders' buffers are
# released after each encode, the decode does not sit on them)
peak_off=$(grep -o '"peak_device_bytes": [0-9]*' "$TMP/out" | grep -o '[0-9]*$')
[ -n "$peak_kept" ] && [ "$peak_kept" = "$peak_off" ] && ok ||
    bad "bench image: device peak with kept models $peak_kept, staged $peak_off"
cmp -s "$TMP/off/bench-48-1.ppm" "$TMP/bench-48-1.ppm" && ok || bad "bench image --offload differs from kept models"
# the kept-models session gives the images a one-shot generate gives (bench image
# uses this prompt, --vae-tile 0, and seeds 1..N)
P="a photograph of a lighthouse on a rocky coast at dawn, waves, seagulls, soft golden light, highly detailed"
"$FK" generate -t 2 -p "$P" -o "$TMP/g.ppm" "${M[@]}" -W 48 -H 48 -s 2 -S 2 --vae-tile 0 >/dev/null 2>"$TMP/err" \
    && ok || bad "generate: $(cat "$TMP/err")"
cmp -s "$TMP/g.ppm" "$TMP/bench-48-2.ppm" && ok || bad "bench image (kept models) differs from generate"

# ---- cuda: clean failure without a GPU ------------------------------------------------
"$FK" generate -t 2 -p "x" -o "$TMP/c.png" "${M[@]}" -W 32 -H 32 -s 1 -S 1 --device cuda >"$TMP/out" 2>"$TMP/err"; rc=$?
if [ $rc = 0 ]; then
    [ -s "$TMP/c.png" ] && ok || bad "--device cuda: exit 0 but no image"
else
    [ $rc = 1 ] && ok || bad "--device cuda without a GPU: exit $rc, expected 1"
    [ "$(grep -c '^fluxkit: error:' "$TMP/err")" = 1 ] && ok || bad "--device cuda: error output: $(cat "$TMP/err")"
    grep -q -- "--device cuda" "$TMP/err" && ok || bad "--device cuda: message does not name the option"
    [ ! -e "$TMP/c.png" ] && ok || bad "--device cuda: an output file was left"
fi
for cmd in "generate -p x -o $TMP/z.png ${M[*]}" "bench flux --preset tiny-flux" "eval t5 --weights x --inputs y --out z"; do
    $FK $cmd --device gpu >/dev/null 2>"$TMP/err"; rc=$?
    [ $rc = 2 ] && ok || bad "$cmd --device gpu: exit $rc, expected 2"
    grep -q "expected cpu, cuda, cuda:N" "$TMP/err" && ok || bad "$cmd --device gpu: $(cat "$TMP/err")"
done
"$FK" bench flux --preset tiny-flux --device cuda:x >/dev/null 2>&1; [ $? = 2 ] && ok || bad "--device cuda:x accepted"

echo "device: $pass passed, $fail failed"
[ $fail = 0 ]
