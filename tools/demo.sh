#!/usr/bin/env bash
# The main job on a bundled default: text-to-image with `fluxkit generate`.
#
# The bundled models are TINY RANDOM-WEIGHT stand-ins (tests/data): a FLUX
# transformer with 2 double + 2 single blocks (hidden 96), a 2-level
# autoencoder (2x upsampling instead of 8x), and tiny CLIP / T5 encoders with
# the real vocabularies. They exercise the whole pipeline — tokenizers, both
# text encoders, seeded reference noise, the shifted schedule, Euler steps,
# decoding, PNG with metadata — but draw nothing meaningful: the image is
# structured noise. The command for real Flux-mini weights is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target fluxkit_cli >/dev/null
bin=build/fluxkit
out=${FK_OUT:-out}
mkdir -p "$out"
echo "== fluxkit generate on the bundled TINY RANDOM-WEIGHT models (not a real model) =="
set -x
"$bin" generate -p "a lighthouse on a rocky coast at dawn, oil painting" \
  --model tests/data/flux/tiny-dev.weights.bf16.safetensors \
  --ae tests/data/ae/ae-tiny.weights.f32.safetensors \
  --clip tests/data/pipeline/tiny-clip-l.safetensors \
  --t5 tests/data/pipeline/tiny-t5xxl.safetensors \
  -W 512 -H 512 --steps 8 --seed 42 -o "$out/demo-tiny.png" --force --verbose
set +x
echo "wrote $out/demo-tiny.png (128x128: the tiny autoencoder upsamples 2x, not 8x)"
echo
cat <<'EOF'
With real weights (Flux-mini from TencentARC/flux-mini, ae.safetensors from
black-forest-labs/FLUX.1-schnell, clip_l.safetensors and t5xxl_fp16.safetensors or
t5xxl_fp8_e4m3fn.safetensors from comfyanonymous/flux_text_encoders) in one folder:

  build/fluxkit generate --models /path/to/models \
      -p "a lighthouse on a rocky coast at dawn, oil painting" \
      -W 1024 -H 1024 --seed 42 -o lighthouse.png --verbose

(defaults for Flux-mini: 50 steps, guidance 3.5, shifted schedule, T5 length 512;
a diffusers folder works too: --models /path/to/FLUX.1-schnell)
EOF
