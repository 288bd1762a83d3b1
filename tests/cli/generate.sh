#!/bin/bash
# generate.sh FLUXKIT: `fluxkit generate` end to end on the bundled tiny
# random-weight models (tests/data/pipeline): PNG with metadata, seeds that
# reproduce, img2img, --json, and clean failures (usage errors exit 2, runtime
# errors exit 1, one "fluxkit: error:" line, no output or temporary file left).
FK="$1"
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
[ -x "$FK" ] || { echo "usage: $0 FLUXKIT_BINARY" >&2; exit 2; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
OUT="$TMP/out"
mkdir -p "$OUT"
M=(--model tests/data/flux/tiny-dev.weights.bf16.safetensors --ae tests/data/ae/ae-tiny.weights.f32.safetensors
   --clip tests/data/pipeline/tiny-clip-l.safetensors --t5 tests/data/pipeline/tiny-t5xxl.safetensors)
S=(--model tests/data/flux/tiny-schnell.weights.f32.safetensors --ae tests/data/ae/ae-tiny.weights.f32.safetensors
   --clip tests/data/pipeline/tiny-clip-l.safetensors --t5 tests/data/pipeline/tiny-t5xxl.safetensors)
gen() { "$FK" generate -t 1 "$@" >"$TMP/stdout" 2>"$TMP/err"; }
no_files() { [ -z "$(ls -A "$OUT")" ] && ok || bad "$1: left files: $(ls -A "$OUT")"; rm -f "$OUT/"* "$OUT/".??* 2>/dev/null; }
one_error() { [ "$(grep -c '^fluxkit: error:' "$TMP/err")" = 1 ] && ok || bad "$1: error output: $(cat "$TMP/err")"; }

# ---- success: PNG, metadata, summary -----------------------------------------------
gen -p "a lighthouse at dawn" -o "$OUT/a.png" "${M[@]}" -W 64 -H 48 -s 3 -S 42; rc=$?
[ $rc = 0 ] && ok || bad "basic run: exit $rc: $(cat "$TMP/err")"
[ -s "$OUT/a.png" ] && ok || bad "no output file"
head -c 8 "$OUT/a.png" | od -An -tx1 | grep -q "89 50 4e 47 0d 0a 1a 0a" && ok || bad "not a PNG"
for k in prompt seed steps guidance width height model model_hash Software t5_length shift; do
  grep -aq "$k" "$OUT/a.png" && ok || bad "metadata key $k missing"
done
grep -aq "a lighthouse at dawn" "$OUT/a.png" && ok || bad "prompt not stored"
grep -aq "fluxkit " "$OUT/a.png" && ok || bad "version not stored"
grep -q "seed 42" "$TMP/stdout" && ok || bad "summary: $(cat "$TMP/stdout")"
[ "$(ls -A "$OUT")" = "a.png" ] && ok || bad "temporary files left: $(ls -A "$OUT")"

# same seed → byte-identical file; other seed → different image
gen -p "a lighthouse at dawn" -o "$OUT/b.png" "${M[@]}" -W 64 -H 48 -s 3 -S 42
cmp -s "$OUT/a.png" "$OUT/b.png" && ok || bad "same seed gave different files"
gen -p "a lighthouse at dawn" -o "$OUT/c.png" "${M[@]}" -W 64 -H 48 -s 3 -S 43
cmp -s "$OUT/a.png" "$OUT/c.png" && bad "different seeds gave the same file" || ok

# refuse to overwrite; --force replaces
gen -p "x" -o "$OUT/a.png" "${M[@]}" -W 64 -H 48 -s 1 -S 1; rc=$?
[ $rc = 1 ] && ok || bad "overwrite: exit $rc, expected 1"
grep -q "exists" "$TMP/err" && ok || bad "overwrite message: $(cat "$TMP/err")"
cmp -s "$OUT/a.png" "$OUT/b.png" && ok || bad "existing file was changed"
gen -p "x" -o "$OUT/a.png" "${M[@]}" -W 64 -H 48 -s 1 -S 1 --force; rc=$?
[ $rc = 0 ] && ok || bad "--force: exit $rc"
cmp -s "$OUT/a.png" "$OUT/b.png" && bad "--force did not replace the file" || ok
rm -f "$OUT/"*

# random seed: printed, stored
gen -p "random" -o "$OUT/r.png" "${S[@]}" -W 32 -H 32 -s 1; rc=$?
[ $rc = 0 ] && ok || bad "random seed run: exit $rc"
seed=$(sed -n 's/.*seed \([0-9]*\) (random).*/\1/p' "$TMP/err")
[ -n "$seed" ] && ok || bad "random seed not printed: $(cat "$TMP/err")"
[ -n "$seed" ] && grep -aq "$seed" "$OUT/r.png" && ok || bad "random seed not stored"
rm -f "$OUT/"*

# --json, --prompt-file, schnell defaults (no guidance, 4 steps)
printf 'a prompt from a file\n' > "$TMP/prompt.txt"
gen --prompt-file "$TMP/prompt.txt" -o "$OUT/j.png" "${S[@]}" -W 32 -H 32 -S 7 --json; rc=$?
[ $rc = 0 ] && ok || bad "--json run: exit $rc: $(cat "$TMP/err")"
grep -q '"seed":"7"' "$TMP/stdout" && grep -q '"steps":4' "$TMP/stdout" && grep -q '"prompt":"a prompt from a file"' "$TMP/stdout" \
  && ok || bad "--json: $(cat "$TMP/stdout")"
[ "$(wc -l < "$TMP/stdout")" = 1 ] && ok || bad "--json printed more than one line"

# true CFG, img2img from PNG and JPEG, ppm output
gen -p "ramen" -n "blurry" --cfg-scale 2 -o "$OUT/cfg.png" "${M[@]}" -W 48 -H 48 -s 2 -S 3; rc=$?
[ $rc = 0 ] && ok || bad "cfg run: exit $rc: $(cat "$TMP/err")"
grep -aq "negative_prompt" "$OUT/cfg.png" && ok || bad "negative prompt not stored"
gen -p "harbour" -i tests/data/pipeline/init-24x32.png --strength 0.6 -o "$OUT/i.png" "${M[@]}" -s 4 -S 11 --json; rc=$?
[ $rc = 0 ] && ok || bad "img2img run: exit $rc: $(cat "$TMP/err")"
grep -q '"t_start":1' "$TMP/stdout" && grep -q '"width":32' "$TMP/stdout" && ok || bad "img2img json: $(cat "$TMP/stdout")"
gen -p "photo" -i tests/data/pipeline/images/photo.jpg -o "$OUT/i.ppm" "${M[@]}" -W 64 -H 64 -s 2 -S 1; rc=$?
[ $rc = 0 ] && ok || bad "img2img jpeg/ppm run: exit $rc: $(cat "$TMP/err")"
head -c 2 "$OUT/i.ppm" | grep -q P6 && ok || bad "not a PPM"
rm -f "$OUT/"*

# --models folder with BFL / ComfyUI names
mkdir -p "$TMP/models/text_encoders"
ln -s "$PWD/tests/data/flux/tiny-dev.weights.f32.safetensors" "$TMP/models/flux1-dev.safetensors"
ln -s "$PWD/tests/data/ae/ae-tiny.weights.f32.safetensors" "$TMP/models/ae.safetensors"
ln -s "$PWD/tests/data/pipeline/tiny-clip-l.safetensors" "$TMP/models/text_encoders/clip_l.safetensors"
gen -p "folder" -o "$OUT/m.png" --models "$TMP/models" -W 32 -H 32 -s 1 -S 1; rc=$?
[ $rc = 1 ] && ok || bad "missing t5 in --models: exit $rc, expected 1"
grep -q "t5xxl_fp16.safetensors" "$TMP/err" && grep -q -- "--t5" "$TMP/err" && ok || bad "t5 message: $(cat "$TMP/err")"
one_error "missing t5"
no_files "missing t5"
ln -s "$PWD/tests/data/pipeline/tiny-t5xxl.safetensors" "$TMP/models/text_encoders/t5xxl_fp8_e4m3fn.safetensors"
gen -p "folder" -o "$OUT/m.png" --models "$TMP/models" -W 32 -H 32 -s 1 -S 1; rc=$?
[ $rc = 0 ] && ok || bad "--models run: exit $rc: $(cat "$TMP/err")"
rm -f "$OUT/"*

# a diffusers pipeline folder holding the same tiny weights (converted by diffusers) gives
# the same pixels as the BFL single files (ppm: pixels only, no metadata)
D="$TMP/diffusers"
mkdir -p "$D/text_encoder" "$D/text_encoder_2"
echo '{"_class_name": "FluxPipeline"}' > "$D/model_index.json"
ln -s "$PWD/tests/data/flux-diffusers/tiny-dev" "$D/transformer"
ln -s "$PWD/tests/data/ae-diffusers/vae" "$D/vae"
ln -s "$PWD/tests/data/pipeline/tiny-clip-l.safetensors" "$D/text_encoder/model.safetensors"
ln -s "$PWD/tests/data/pipeline/tiny-t5xxl.safetensors" "$D/text_encoder_2/model.safetensors"
gen -p "folder" -o "$OUT/d.ppm" --models "$D" -W 32 -H 48 -s 2 -S 5; rc=$?
[ $rc = 0 ] && ok || bad "diffusers folder run: exit $rc: $(cat "$TMP/err")"
gen -p "folder" -o "$OUT/b.ppm" --model tests/data/flux/tiny-dev.weights.f32.safetensors \
  --ae tests/data/ae/ae-tiny.weights.f32.safetensors --clip tests/data/pipeline/tiny-clip-l.safetensors \
  --t5 tests/data/pipeline/tiny-t5xxl.safetensors -W 32 -H 48 -s 2 -S 5; rc=$?
[ $rc = 0 ] && ok || bad "BFL files run: exit $rc"
cmp -s "$OUT/d.ppm" "$OUT/b.ppm" && ok || bad "diffusers folder and BFL files gave different pixels"
rm -f "$OUT/"*

# ---- failures: exit code, one message, no output -----------------------------------------
gen -p "x" -o "$OUT/f.png" "${M[@]}" -W 100 -H 64; rc=$?
[ $rc = 2 ] && ok || bad "width 100: exit $rc, expected 2"
grep -q "multiple of 16" "$TMP/err" && ok || bad "width message: $(cat "$TMP/err")"
no_files "width"
gen -p "x" -o "$OUT/f.png" "${M[@]}" -H 20; rc=$?
[ $rc = 2 ] && ok || bad "height 20: exit $rc, expected 2"
no_files "height"
gen -o "$OUT/f.png" "${M[@]}"; rc=$?
[ $rc = 2 ] && ok || bad "no prompt: exit $rc, expected 2"
gen -p "x" "${M[@]}"; rc=$?
[ $rc = 2 ] && ok || bad "no output: exit $rc, expected 2"
gen -p "x" -o "$OUT/f.png" "${M[@]}" --strength 1.5; rc=$?
[ $rc = 2 ] && ok || bad "strength 1.5: exit $rc, expected 2"
gen -p "x" -o "$OUT/f.png" "${M[@]}" --seed -3; rc=$?
[ $rc = 2 ] && ok || bad "seed -3: exit $rc, expected 2"
no_files "usage errors"

printf 'caf\xe9 au lait\n' > "$TMP/latin1.txt"
gen --prompt-file "$TMP/latin1.txt" -o "$OUT/f.png" "${M[@]}" -W 32 -H 32; rc=$?
[ $rc = 1 ] && ok || bad "non-UTF-8 prompt file: exit $rc, expected 1"
grep -q "UTF-8" "$TMP/err" && ok || bad "utf-8 message: $(cat "$TMP/err")"
one_error "prompt file"
no_files "prompt file"
gen --prompt-file "$TMP/none.txt" -o "$OUT/f.png" "${M[@]}" -W 32 -H 32; rc=$?
[ $rc = 1 ] && ok || bad "missing prompt file: exit $rc, expected 1"
no_files "missing prompt file"

gen -p "x" -i tests/data/pipeline/images/truncated.jpg -o "$OUT/f.png" "${M[@]}" -s 1; rc=$?
[ $rc = 1 ] && ok || bad "truncated init image: exit $rc, expected 1"
grep -q "truncated.jpg" "$TMP/err" && ok || bad "init image message: $(cat "$TMP/err")"
one_error "init image"
no_files "init image"
gen -p "x" -i "$TMP/nope.png" -o "$OUT/f.png" "${M[@]}" -s 1; rc=$?
[ $rc = 1 ] && ok || bad "missing init image: exit $rc, expected 1"
no_files "missing init image"

gen -p "x" -o "$OUT/f.png" --model "$TMP/nope.safetensors" --ae tests/data/ae/ae-tiny.weights.f32.safetensors \
  --clip tests/data/pipeline/tiny-clip-l.safetensors --t5 tests/data/pipeline/tiny-t5xxl.safetensors -W 32 -H 32; rc=$?
[ $rc = 1 ] && ok || bad "missing model: exit $rc, expected 1"
grep -q "nope.safetensors" "$TMP/err" && grep -q "flux1-dev.safetensors" "$TMP/err" && ok || bad "model message: $(cat "$TMP/err")"
one_error "missing model"
no_files "missing model"
gen -p "x" -o "$OUT/f.png" --model tests/data/flux/tiny-dev.weights.f32.safetensors --ae tests/data/ae/ae-tiny.weights.f32.safetensors \
  --clip tests/data/pipeline/tiny-t5xxl.safetensors --t5 tests/data/pipeline/tiny-t5xxl.safetensors -W 32 -H 32 -s 1; rc=$?
[ $rc = 1 ] && ok || bad "T5 given as --clip: exit $rc, expected 1"
grep -q "clip_l.safetensors" "$TMP/err" && ok || bad "wrong clip message: $(cat "$TMP/err")"
one_error "wrong clip"
no_files "wrong clip"
gen -p "x" -o "$OUT/f.png" --models "$TMP/empty" -W 32 -H 32; rc=$?
[ $rc = 1 ] && ok || bad "missing --models folder: exit $rc, expected 1"
no_files "missing models folder"
gen -p "x" -o "$TMP/no/such/dir/f.png" "${M[@]}" -W 32 -H 32; rc=$?
[ $rc = 1 ] && ok || bad "missing output folder: exit $rc, expected 1"

# ---- eval noise ------------------------------------------------------------------------------
"$FK" eval noise --seed 42 --height 64 --width 48 --out "$OUT/noise.safetensors" >/dev/null 2>"$TMP/err"; rc=$?
[ $rc = 0 ] && ok || bad "eval noise: exit $rc: $(cat "$TMP/err")"
"$FK" info "$OUT/noise.safetensors" 2>&1 | grep -q "noise.*BF16.*\[1, 16, 8, 6\]" && ok || bad "eval noise output: $("$FK" info "$OUT/noise.safetensors" 2>&1)"
"$FK" eval noise --seed 42 --out "$OUT/n2.safetensors" >/dev/null 2>"$TMP/err"; rc=$?
[ $rc = 1 ] && ok || bad "eval noise without size: exit $rc, expected 1"
[ ! -e "$OUT/n2.safetensors" ] && ok || bad "eval noise left an output"

echo "generate.sh: $pass passed, $fail failed"
[ $fail = 0 ]
