#!/usr/bin/env bash
# The main job on a bundled default. Until the full text-to-image pipeline
# lands, this is a smoke run of the transformer on the bundled TINY
# RANDOM-WEIGHT model (tests/data/flux/tiny-dev: 2 double + 2 single blocks,
# hidden 96 — it draws nothing meaningful): describe it, run its 4-step Euler
# denoising loop, and compare with the Python reference's result.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target fluxkit_cli >/dev/null
bin=build/fluxkit
out=${FK_OUT:-out}
mkdir -p "$out"
echo "== fluxkit info (bundled tiny random-weight FLUX transformer) =="
"$bin" info --no-tensors tests/data/flux/tiny-dev.weights.bf16.safetensors
echo
echo "== fluxkit eval flux --denoise (4 Euler steps, bf16 weights, f32 compute) =="
"$bin" eval flux --denoise --weights tests/data/flux/tiny-dev.weights.bf16.safetensors \
  --inputs tests/data/flux/tiny-dev.io.f32.safetensors --out "$out/tiny-dev.eval.safetensors" --force
"$bin" info --no-tensors "$out/tiny-dev.eval.safetensors" | head -n 5
echo "wrote $out/tiny-dev.eval.safetensors"
