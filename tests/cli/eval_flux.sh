#!/usr/bin/env bash
# fluxkit eval flux (forward, every block, denoise loop) against the f64
# reference files, through the CLI, for both precision modes.
# f32: 5e-5 relative L2 (the bar; the f32 reference itself is at
#   3e-6..1.2e-5, fluxkit at ~5e-7 since it computes the sinusoidal embedding
#   and RoPE table in double).
# bf16 (AMX tiles, f32 accumulation): each matmul rounds both operands to bf16,
#   ~2^-7/sqrt(28) ≈ 1.5e-3 relative per product for random data; a few such
#   errors add in quadrature through the residual stream (measured 2.2e-3):
#   bound 5e-3. Without AMX the bf16 mode runs the f32 kernels and lands at 5e-7.
set -u
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
check() {
    local what=$1; shift
    if "$@" >"$tmp/log" 2>&1; then pass=$((pass + 1)); else
        fail=$((fail + 1)); echo "FAIL: $what"; cat "$tmp/log"; fi
}
d=tests/data/flux
for cfg in tiny-dev tiny-schnell; do
    for wd in f32 bf16; do
        w=$d/$cfg.weights.$wd.safetensors
        check "$cfg $wd f32 eval" "$bin" eval flux --denoise --precision f32 --weights $w \
            --inputs $d/$cfg.io.f64.safetensors --out "$tmp/o.safetensors"
        check "$cfg $wd f32 vs f64" "$bin" compare --tol 5e-5 --only output --only double. \
            --only single. --only denoise. "$tmp/o.safetensors" $d/$cfg.io.f64.safetensors
        check "$cfg $wd bf16 eval" "$bin" eval flux --denoise --precision bf16 --weights $w \
            --inputs $d/$cfg.io.f64.safetensors --out "$tmp/b.safetensors"
        check "$cfg $wd bf16 vs f64" "$bin" compare --tol 5e-3 --only output --only double. \
            --only single. --only denoise. "$tmp/b.safetensors" $d/$cfg.io.f64.safetensors
    done
done
# the diffusers folder (sharded, made by diffusers from tiny-dev) gives the BFL numbers
check "diffusers eval" "$bin" eval flux --weights tests/data/flux-diffusers/tiny-dev \
    --inputs $d/tiny-dev.io.f64.safetensors --out "$tmp/df.safetensors"
check "diffusers vs f64" "$bin" compare --tol 5e-5 --only output --only double. --only single. \
    "$tmp/df.safetensors" $d/tiny-dev.io.f64.safetensors
if "$bin" eval flux --precision f16 --weights $d/tiny-dev.weights.f32.safetensors \
    --inputs $d/tiny-dev.io.f64.safetensors --out "$tmp/x.safetensors" 2>/dev/null; then
    fail=$((fail + 1)); echo "FAIL: --precision f16 accepted"
elif [ $? -ne 2 ]; then fail=$((fail + 1)); echo "FAIL: --precision f16 not a usage error"
else pass=$((pass + 1)); fi
echo "eval_flux: $pass passed, $fail failed"
[ $fail -eq 0 ]
