#!/usr/bin/env bash
# fluxkit eval clip|t5 on the tiny transformers-generated fixtures, checked with
# fluxkit compare against the float64 reference outputs. Tolerance 1e-5 relative
# L2: f32 accumulation gives ~sqrt(K)·2^-24 ≈ 1e-6 per op, compounded over the
# layers (transformers' own f32 run is 4e-7 (CLIP) and 1.4e-6 (T5) away).
set -u
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
check() { # description, command...
    local what=$1; shift
    if "$@" >"$tmp/log" 2>&1; then pass=$((pass + 1)); else
        fail=$((fail + 1)); echo "FAIL: $what"; cat "$tmp/log"; fi
}
d=tests/data
check "clip f32 weights" "$bin" eval clip --weights $d/clip/tiny-clip.weights.f32.safetensors \
    --inputs $d/clip/tiny-clip.io.f64.safetensors --out "$tmp/clip.safetensors"
check "clip vs f64" "$bin" compare --tol 1e-5 --only last_hidden_state --only pooler_output \
    "$tmp/clip.safetensors" $d/clip/tiny-clip.io.f64.safetensors
check "clip HF folder (bf16)" "$bin" eval clip --weights $d/clip/tiny-clip-hf \
    --inputs $d/clip/tiny-clip.io.f64.safetensors --out "$tmp/clip-hf.safetensors"
check "clip HF folder vs f64" "$bin" compare --tol 1e-5 --only last_hidden_state --only pooler_output \
    "$tmp/clip-hf.safetensors" $d/clip/tiny-clip.io.f64.safetensors
check "t5 f32 weights" "$bin" eval t5 --weights $d/t5/tiny-t5.weights.f32.safetensors \
    --inputs $d/t5/tiny-t5.io.f64.safetensors --out "$tmp/t5.safetensors"
check "t5 vs f64" "$bin" compare --tol 1e-5 --only last_hidden_state \
    "$tmp/t5.safetensors" $d/t5/tiny-t5.io.f64.safetensors
check "t5 sharded HF folder" "$bin" eval t5 --weights $d/t5/tiny-t5-hf \
    --inputs $d/t5/tiny-t5.io.f64.safetensors --out "$tmp/t5-hf.safetensors"
check "t5 sharded vs f64" "$bin" compare --tol 1e-5 --only last_hidden_state \
    "$tmp/t5-hf.safetensors" $d/t5/tiny-t5.io.f64.safetensors
check "t5 scaled fp8" "$bin" eval t5 --weights $d/t5/tiny-t5.weights.f8_scaled.safetensors \
    --inputs $d/t5/tiny-t5-f8.io.f64.safetensors --out "$tmp/t5-f8.safetensors"
check "t5 fp8 vs f64" "$bin" compare --tol 1e-5 --only last_hidden_state \
    "$tmp/t5-f8.safetensors" $d/t5/tiny-t5-f8.io.f64.safetensors
# compare must fail when the tolerance is exceeded (it is a real check)
if "$bin" compare --tol 1e-12 --only last_hidden_state "$tmp/t5-f8.safetensors" \
    $d/t5/tiny-t5.io.f64.safetensors >/dev/null 2>&1; then
    fail=$((fail + 1)); echo "FAIL: compare accepted a mismatch"; else pass=$((pass + 1)); fi
check "info names the CLIP encoder" bash -c "'$bin' info --no-tensors $d/clip/tiny-clip-hf | grep -qi clip"
check "info names the T5 encoder" bash -c "'$bin' info --no-tensors $d/t5/tiny-t5-hf | grep -qi t5"
echo "eval_text: $pass passed, $fail failed"
[ $fail -eq 0 ]
