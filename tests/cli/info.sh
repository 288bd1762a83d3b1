#!/bin/bash
# info.sh FLUXKIT: `fluxkit info` names what a checkpoint is. References: the
# fixtures' __metadata__ "config" / config.json (tests/data/flux/tiny-dev:
# hidden 96, 3 heads, 2 + 2 blocks, guidance; tests/data/ae/ae-tiny: ch 32,
# ch_mult [1, 2], z 16, 1 res block = the tiny-ae preset of src/model/vae.h;
# tests/data/clip/tiny-clip: width 64, 3 layers, 4 heads, mlp 256 = tiny-clip;
# tests/data/t5/tiny-t5: d_model 64, 3 layers, 4 heads x 16, d_ff 160 =
# tiny-t5; tests/data/pipeline/tiny-clip-l: width 24, 2 layers, 2 heads, mlp 48;
# tests/data/pipeline/tiny-t5xxl: d_model 32, 2 layers, 4 heads x 8, d_ff 48)
# and the tiny-flux preset written by init-random.
FK="$1"
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
has() { # has DESCRIPTION TEXT EXTENDED-REGEX
    if printf '%s\n' "$2" | grep -Eq -- "$3"; then ok; else bad "$1: no match for /$3/"; fi
}
[ -x "$FK" ] || { echo "usage: $0 FLUXKIT_BINARY" >&2; exit 2; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
DEV=tests/data/flux/tiny-dev.weights.f32.safetensors
SCHNELL=tests/data/flux/tiny-schnell.weights.bf16.safetensors
AE=tests/data/ae/ae-tiny.weights.f32.safetensors

# --- tiny-dev transformer, text
out=$("$FK" info "$DEV"); rc=$?
[ $rc = 0 ] && ok || bad "info $DEV exit $rc"
has "dev text" "$out" "FLUX transformer"
has "dev hidden" "$out" "hidden 96, 3 heads x head dim 32, depth 2 double \+ 2 single"
has "dev guidance" "$out" "guidance embedding yes"
has "dev dims" "$out" "in 64, out 64, context 32, vec 24"
has "dev axes" "$out" "axes_dim \[8, 12, 12\]"
has "dev format" "$out" "format bfl"
has "dev count" "$out" "^tensors: +84$"
has "dev params" "$out" "\(1,062,208\)"
has "dev tensor row" "$out" "double_blocks\.1\.img_attn\.qkv\.weight +F32 +\[288, 96\] "
has "dev metadata" "$out" "seed = 1234"
# natural order: double_blocks before final_layer, single_blocks.0 before single_blocks.1
first=$(printf '%s\n' "$out" | grep -n "single_blocks.0.linear1.weight" | cut -d: -f1)
second=$(printf '%s\n' "$out" | grep -n "single_blocks.1.linear1.weight" | cut -d: -f1)
[ -n "$first" ] && [ -n "$second" ] && [ "$first" -lt "$second" ] && ok || bad "tensor order"

# --no-tensors and --filter
out=$("$FK" info --no-tensors "$DEV")
if printf '%s\n' "$out" | grep -q "img_in.weight"; then bad "--no-tensors still lists tensors"; else ok; fi
out=$("$FK" info --filter query_norm "$DEV")
n=$(printf '%s\n' "$out" | grep -c "query_norm.scale ")
[ "$n" = 6 ] && ok || bad "--filter query_norm listed $n tensors, expected 6"

# --- JSON: one object; check specific fields (tabs or spaces after the colon)
js=$("$FK" info --json "$DEV"); rc=$?
[ $rc = 0 ] && ok || bad "info --json exit $rc"
has "json kind" "$js" '"kind":[[:space:]]*"flux"'
has "json hidden" "$js" '"hidden_size":[[:space:]]*96'
has "json heads" "$js" '"num_heads":[[:space:]]*3'
has "json depth" "$js" '"depth":[[:space:]]*2,'
has "json singles" "$js" '"depth_single_blocks":[[:space:]]*2'
has "json guidance" "$js" '"guidance_embed":[[:space:]]*true'
has "json tensor_count" "$js" '"tensor_count":[[:space:]]*84'
has "json parameters" "$js" '"parameters":[[:space:]]*1062208'
has "json format" "$js" '"format":[[:space:]]*"bfl"'
has "json tensor" "$js" '"name":[[:space:]]*"final_layer.adaLN_modulation.1.weight"'
# balanced braces and one top-level object
[ "$(printf '%s' "$js" | head -c1)" = "{" ] && [ "$(printf '%s' "$js" | tail -c1)" = "}" ] && ok || bad "json not one object"
o=$(printf '%s' "$js" | tr -cd '{' | wc -c); c=$(printf '%s' "$js" | tr -cd '}' | wc -c)
[ "$o" = "$c" ] && ok || bad "json braces $o vs $c"

# --- tiny-schnell: no guidance embedding
out=$("$FK" info --no-tensors "$SCHNELL")
has "schnell" "$out" "hidden 64, 4 heads x head dim 16"
has "schnell guidance" "$out" "guidance embedding no"
has "schnell dtype" "$out" "BF16 +80 tensors"

# --- autoencoder fixture
out=$("$FK" info --no-tensors "$AE"); rc=$?
[ $rc = 0 ] && ok || bad "info $AE exit $rc"
has "ae kind" "$out" "autoencoder"
has "ae config" "$out" "ch 32, ch_mult \[1, 2\], num_res_blocks 1, z_channels 16"
js=$("$FK" info --json --no-tensors "$AE")
has "ae json kind" "$js" '"kind":[[:space:]]*"ae"'
has "ae json z" "$js" '"z_channels":[[:space:]]*16'
has "ae json ch" "$js" '"ch":[[:space:]]*32'
# the name is fk_vae_config_name's: the fixture's config is the tiny-ae preset
has "ae name" "$out" "autoencoder: tiny-ae \(format bfl\)"
has "ae json name" "$js" '"name":[[:space:]]*"tiny-ae"'
has "ae scale" "$out" "scale_factor 0.3611, shift_factor 0.1159"

# --- CLIP text encoders: heads from the config, not width/64
CLIP=tests/data/clip/tiny-clip.weights.f32.safetensors
out=$("$FK" info --no-tensors "$CLIP"); rc=$?
[ $rc = 0 ] && ok || bad "info $CLIP exit $rc"
has "clip kind" "$out" "CLIP text encoder: tiny-clip \(format hf\)"
has "clip heads" "$out" "width 64, 3 layers, 4 heads x head dim 16, mlp 256"
js=$("$FK" info --json --no-tensors "$CLIP")
has "clip json kind" "$js" '"kind":[[:space:]]*"clip"'
has "clip json heads" "$js" '"num_attention_heads":[[:space:]]*4,'
has "clip json width" "$js" '"hidden_size":[[:space:]]*64,'
out=$("$FK" info --no-tensors tests/data/clip/tiny-clip-hf)
has "clip folder" "$out" "CLIP text encoder: tiny-clip \(format hf\)"
has "clip folder heads" "$out" "4 heads x head dim 16"
# width 24 (not a multiple of 64), bare keys (embeddings..., no text_model.)
out=$("$FK" info --no-tensors tests/data/pipeline/tiny-clip-l.safetensors); rc=$?
[ $rc = 0 ] && ok || bad "info tiny-clip-l exit $rc"
has "clip-l kind" "$out" "CLIP text encoder: custom \(format hf\)"
has "clip-l sizes" "$out" "width 24, 2 layers, 2 heads x head dim 12, mlp 48"
if printf '%s\n' "$out" | grep -q "^model: *unknown"; then bad "tiny-clip-l is unknown"; else ok; fi

# --- T5 encoders: every weights fixture of tests/data/t5 (the *.io.* files
# hold test inputs/outputs, not weights), the HF folder, the pipeline's
for f in tests/data/t5/*.weights.*.safetensors tests/data/t5/tiny-t5-hf; do
    out=$("$FK" info --no-tensors "$f"); rc=$?
    [ $rc = 0 ] && ok || bad "info $f exit $rc"
    has "t5 $f" "$out" "T5 encoder: tiny-t5 \(format hf\)"
    has "t5 $f sizes" "$out" "d_model 64, 3 layers, 4 heads x d_kv 16, d_ff 160 \(gated-gelu\), vocab 320"
done
out=$("$FK" info --no-tensors tests/data/pipeline/tiny-t5xxl.safetensors); rc=$?
[ $rc = 0 ] && ok || bad "info tiny-t5xxl exit $rc"
has "t5xxl kind" "$out" "T5 encoder: custom \(format hf\)"
has "t5xxl sizes" "$out" "d_model 32, 2 layers, 4 heads x d_kv 8, d_ff 48"
js=$("$FK" info --json --no-tensors tests/data/pipeline/tiny-t5xxl.safetensors)
has "t5xxl json kind" "$js" '"kind":[[:space:]]*"t5"'
has "t5xxl json d_kv" "$js" '"d_kv":[[:space:]]*8,'
has "t5xxl json layers" "$js" '"num_layers":[[:space:]]*2,'

# --- errors: nonexistent file, not a safetensors file, empty file
"$FK" info "$TMP/nope.safetensors" >/dev/null 2>"$TMP/err"; rc=$?
[ $rc = 1 ] && ok || bad "nonexistent file: exit $rc, expected 1"
grep -q "^fluxkit: error: .*nope.safetensors" "$TMP/err" && ok || bad "error does not name the file: $(cat "$TMP/err")"
[ "$(wc -l < "$TMP/err")" = 1 ] && ok || bad "error is not one line"
printf 'not a safetensors file at all' > "$TMP/junk.safetensors"
"$FK" info "$TMP/junk.safetensors" >/dev/null 2>&1; rc=$?
[ $rc = 1 ] && ok || bad "junk file: exit $rc, expected 1"
: > "$TMP/empty.safetensors"
"$FK" info "$TMP/empty.safetensors" >/dev/null 2>&1; rc=$?
[ $rc = 1 ] && ok || bad "empty file: exit $rc, expected 1"

# --- a folder with one checkpoint, and a tiny-flux written by init-random
mkdir -p "$TMP/folder"
"$FK" init-random --preset tiny-flux --seed 5 -o "$TMP/folder/model.safetensors" >/dev/null; rc=$?
[ $rc = 0 ] && ok || bad "init-random tiny-flux exit $rc"
out=$("$FK" info --no-tensors "$TMP/folder/model.safetensors")
has "init-random name" "$out" "FLUX transformer: tiny-flux"
has "init-random meta" "$out" "preset = tiny-flux"
out=$("$FK" info --no-tensors "$TMP/folder")
has "folder" "$out" "FLUX transformer: tiny-flux"

# --- a diffusers-style pipeline folder (model_index.json + weight sub-folders)
# (text encoders: HF folders with config.json, read by the infer functions)
mkdir -p "$TMP/pipe/transformer" "$TMP/pipe/vae" "$TMP/pipe/scheduler"
echo '{"_class_name": "FluxPipeline"}' > "$TMP/pipe/model_index.json"
cp "$TMP/folder/model.safetensors" "$TMP/pipe/transformer/"
cp "$AE" "$TMP/pipe/vae/diffusion_pytorch_model.safetensors"
cp -r tests/data/clip/tiny-clip-hf "$TMP/pipe/text_encoder"
cp -r tests/data/t5/tiny-t5-hf "$TMP/pipe/text_encoder_2"
out=$("$FK" info --no-tensors "$TMP/pipe"); rc=$?
[ $rc = 0 ] && ok || bad "pipeline folder: exit $rc"
has "pipeline transformer" "$out" "FLUX transformer: tiny-flux"
has "pipeline vae" "$out" "autoencoder: tiny-ae .*format bfl"
has "pipeline clip" "$out" "CLIP text encoder: tiny-clip"
has "pipeline t5" "$out" "T5 encoder: tiny-t5"
# the first model: line after a part's header
part_model() { printf '%s\n' "$1" | awk -v h="== $2 ==" '$0 == h {f = 1} f && /^model:/ {print; exit}'; }
has "pipeline text_encoder/" "$(part_model "$out" text_encoder)" "CLIP text encoder: tiny-clip"
has "pipeline text_encoder_2/" "$(part_model "$out" text_encoder_2)" "T5 encoder: tiny-t5"
js=$("$FK" info --json --no-tensors "$TMP/pipe")
has "pipeline json" "$js" '"vae":'
has "pipeline json t5" "$js" '"text_encoder_2":'

# --- --system
out=$("$FK" info --system)
has "system build" "$out" "^build: .*OpenMP (yes|no), BLAS (yes|no), utf8proc (yes|no), libpng (yes|no), CUDA (yes|no)"
has "system cpu" "$out" "AVX2 (yes|no), AVX-512F (yes|no), AVX512-BF16 (yes|no), AMX-BF16 (yes|no)"

echo "info.sh: $pass passed, $fail failed"
[ "$fail" = 0 ]
