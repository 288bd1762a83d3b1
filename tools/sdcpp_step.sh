#!/usr/bin/env bash
# Seconds per denoising step of the FLUX transformer in stable-diffusion.cpp
# (ggml, CPU), for tools/bench_compare.sh as its "other" engine:
#
#   OTHER_NAME=sd.cpp OTHER_CMD='bash tools/sdcpp_step.sh' \
#       FK_BENCH_WEIGHTS=/work/tmp/full/flux-mini.safetensors \
#       bash tools/bench_compare.sh --engines other --res 256,512 --steps 1
#
# Input (environment, as bench_compare.sh sets it): RES (square image side in
# pixels), STEPS (timed steps, default 1), THREADS (default 2), TXT_LEN (text
# tokens wanted, default 512), WEIGHTS (the BFL single-file transformer).
#   SDCPP         the sd.cpp CLI (default /work/tmp/sdcpp/build/bin/sd-cli, else .../sd)
#   SDCPP_VAE     BFL autoencoder         (default: ae.safetensors next to $WEIGHTS)
#   SDCPP_CLIP_L  ComfyUI clip_l          (default: clip_l.safetensors next to $WEIGHTS)
#   SDCPP_T5XXL   ComfyUI T5-XXL          (default: t5xxl_fp8_e4m3fn.safetensors next to $WEIGHTS)
#   SDCPP_TYPE    weight type for the transformer only, e.g. q8_0 (sd.cpp converts at load
#                 time through --tensor-type-rules; the text encoders and VAE keep theirs).
#                 Default: the file's own type (bf16).
#   SDCPP_OPTS    extra sd-cli options, word-split (e.g. "--diffusion-fa")
#   SDCPP_KEEP    directory to keep sd-cli's log in (default: a temporary one, removed)
# Output: one JSON line on stdout: s_per_step, s_first_step, steps, step_times,
# sampling_s, peak_rss_bytes (when /usr/bin/time exists), txt_tokens, weight_type,
# transformer_weights_mb (sd.cpp's buffer for them), note. Diagnostics go to stderr.
#
# What is measured. One sd-cli txt2img run: euler, --cfg-scale 1.0 (one
# transformer evaluation per step, no unconditional pass), STEPS+1 steps, -v.
# sd.cpp prints, after each sampling step, the wall time since the previous
# step finished ("k/N - X.XXs/it", or "it/s" below one second; 2 decimals).
# Step 1 is the warm-up: it also includes sd.cpp's lazy loading of the
# transformer weights and graph allocation, and is reported as s_first_step.
# s_per_step is the mean of steps 2..STEPS+1, so text encoding (CLIP-L + T5),
# weight loading and VAE decoding are all outside it. peak_rss_bytes is the
# whole process (T5-XXL converted to 16-bit ≈ 9.3 GB, the transformer, the VAE).
#
# Text tokens. sd.cpp's Flux conditioner (FluxCLIPEmbedder, chunk_len 256) pads
# the T5 tokens to 256; a longer prompt is split into 255-token pieces, each
# padded to 256 and encoded separately, and the pieces are concatenated. The
# transformer therefore sees 256 x ceil(n/255) text tokens; there is no option
# to set the count. This script writes a prompt long enough for
# ceil(TXT_LEN/256) chunks (512 tokens for TXT_LEN=512) and reads the count
# actually used back from the log (one "computing condition graph" line per chunk).
#
# Building sd.cpp from the local mirrors (CPU only, Release, -march=native,
# OpenMP, ggml's llamafile tinyBLAS on; the WebP/WebM/server-frontend submodules
# are not mirrored and are turned off). GGML_LLAMAFILE is OFF by default in the
# ggml that sd.cpp builds; turning it on halves the bf16 step time here (its
# AVX512-BF16 GEMM). ggml's AMX kernels are not used by sd.cpp (they sit in an
# "extra" buffer type sd.cpp does not allocate weights in). The mirror also
# lacks sd.cpp's big tokenizer-vocabulary headers (src/tokenizers/vocab/
# {t5,umt5,gemma*,gpt_oss*,mistral*,qwen*}.hpp); `--write-vocab DIR` below
# regenerates them: t5.hpp from this repository's data/tokenizers/t5/spiece.model
# (T5's sentencepiece vocabulary, as the JSON sd.cpp's Unigram tokenizer reads),
# the others as small placeholders (not used by Flux).
#   S=/work/.mirror/leejet+stable-diffusion.cpp/repo  # HEAD 97d2990
#   mkdir -p /work/tmp/sdcpp/src/ggml && cd /work/tmp/sdcpp
#   git --git-dir=$S ls-tree -r HEAD | awk '$2 == "blob" { print $4 }' | grep -v '^assets/' |
#       grep -Ev 'vocab/(t5|umt5|gemma|gpt_oss|mistral|qwen)' >keep.txt
#   git --git-dir=$S archive HEAD $(cat keep.txt) | tar -x -C src   # (its "invalid object ... assets/" message is harmless)
#   git --git-dir=/work/.mirror/ggml-org+ggml/repo archive \
#       8e800cef2948046cc47f9db6090491c6128ca42c | tar -x -C src/ggml   # sd.cpp's ggml submodule commit
#   bash /work/main/tools/sdcpp_step.sh --write-vocab src/src/tokenizers/vocab
#   cmake -S src -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_OPENMP=ON \
#       -DGGML_LLAMAFILE=ON -DSD_WEBP=OFF -DSD_WEBM=OFF -DSD_SERVER_BUILD_FRONTEND=OFF -DGGML_CCACHE=OFF
#   nice -n 10 cmake --build build --target sd-cli -j2      # -> build/bin/sd-cli (about 4 min on 2 cores)
# sd-cli -v then prints "System Info: ... AVX512 = 1 | AVX512_BF16 = 1 | AMX_INT8 = 1 | OPENMP = 1 ...".
set -u -o pipefail

die() { echo "sdcpp_step: $*" >&2; exit 2; }

# --write-vocab DIR [SPIECE]: write the tokenizer headers the mirror lacks (see above).
if [ "${1:-}" = --write-vocab ]; then
    [ -d "${2:-}" ] || die "--write-vocab DIR: no directory '${2:-}'"
    spiece=${3:-$(cd "$(dirname "$0")/.." && pwd)/data/tokenizers/t5/spiece.model}
    [ -f "$spiece" ] || die "--write-vocab: no sentencepiece model '$spiece'"
    exec "${PYTHON:-python3}" - "$2" "$spiece" <<'EOF'
import json, sys
import sentencepiece
out, model = sys.argv[1], sys.argv[2]
sp = sentencepiece.SentencePieceProcessor(model_file=model)
# sd.cpp's T5UniGramTokenizer reads model.vocab ([piece, float score] pairs, id = index),
# model.unk_id and pre_tokenizer.{replacement, add_prefix_space}; T5's 100 sentinels follow.
pieces = [[sp.id_to_piece(i), float(sp.get_score(i))] for i in range(sp.get_piece_size())]
pieces += [["<extra_id_%d>" % i, 0.0] for i in reversed(range(100))]
t5 = {"model": {"type": "Unigram", "unk_id": sp.unk_id(), "vocab": pieces},
      "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": True}}
headers = {"t5": ("t5_tokenizer_json_str", json.dumps(t5, ensure_ascii=False)),
           "umt5": ("umt5_tokenizer_json_str",
                    '{"model": {"vocab": []}, "pre_tokenizer": {"replacement": "\u2581", "add_prefix_space": true}}')}
for stem, sym in [("gemma2", "gemma2"), ("gemma", "gemma"), ("gpt_oss", "gpt_oss"), ("mistral", "mistral"),
                  ("qwen", "qwen2")]:
    headers[stem + "_merges"] = (sym + "_merges_utf8_c_str", "#version: 0.2\n")
    if stem != "qwen":
        headers[stem + "_vocab"] = (sym + "_vocab_json_utf8_c_str", "{}")
for stem, (sym, text) in headers.items():
    data = text.encode("utf-8")
    with open("%s/%s.hpp" % (out, stem), "w") as f:
        f.write("static const unsigned char %s[] = {\n" % sym)
        for i in range(0, len(data), 24):
            f.write(",".join("0x%02x" % b for b in data[i:i + 24]) + ",\n")
        f.write("};\n")
    print("wrote %s/%s.hpp (%d bytes of data)" % (out, stem, len(data)), file=sys.stderr)
EOF
fi

res=${RES:-512}
steps=${STEPS:-1}
threads=${THREADS:-2}
txt_len=${TXT_LEN:-512}
weights=${WEIGHTS:-${FK_BENCH_WEIGHTS:-}}
py=${PYTHON:-python3}
[ -n "$weights" ] || die "WEIGHTS is not set (the FLUX transformer .safetensors)"
[ -f "$weights" ] || die "WEIGHTS: no file '$weights'"
[[ $res =~ ^[0-9]+$ && $steps =~ ^[0-9]+$ && $threads =~ ^[0-9]+$ && $txt_len =~ ^[0-9]+$ ]] ||
    die "RES, STEPS, THREADS and TXT_LEN must be whole numbers"
[ "$steps" -ge 1 ] || die "STEPS must be at least 1"

sd=${SDCPP:-}
if [ -z "$sd" ]; then
    for c in /work/tmp/sdcpp/build/bin/sd-cli /work/tmp/sdcpp/build/bin/sd; do
        [ -x "$c" ] && { sd=$c; break; }
    done
    [ -n "$sd" ] || die "no stable-diffusion.cpp binary at /work/tmp/sdcpp/build/bin/sd-cli (or .../sd);" \
        "build it (see the header of $0) or set SDCPP=/path/to/sd-cli"
fi
[ -f "$sd" ] || die "SDCPP: no file '$sd' (build stable-diffusion.cpp, see the header of $0)"
[ -x "$sd" ] || die "SDCPP: '$sd' is not executable"

wdir=$(dirname "$weights")
vae=${SDCPP_VAE:-$wdir/ae.safetensors}
clip_l=${SDCPP_CLIP_L:-$wdir/clip_l.safetensors}
t5=${SDCPP_T5XXL:-$wdir/t5xxl_fp8_e4m3fn.safetensors}
for f in "SDCPP_VAE=$vae" "SDCPP_CLIP_L=$clip_l" "SDCPP_T5XXL=$t5"; do
    [ -f "${f#*=}" ] || die "${f%%=*}: no file '${f#*=}' (set ${f%%=*}, or keep the file next to WEIGHTS)"
done
wtype=${SDCPP_TYPE:-}
type_opts=()
[ -n "$wtype" ] && type_opts=(--tensor-type-rules "^model\\.diffusion_model\\.=$wtype")
# shellcheck disable=SC2206
extra=(${SDCPP_OPTS:-})

# A prompt of ceil(TXT_LEN/256) T5 chunks: each "cat" is one T5 token ("▁cat"),
# a chunk holds 255 of them plus </s>.
chunks=$(( (txt_len + 255) / 256 )); [ "$chunks" -ge 1 ] || chunks=1
nwords=$(( chunks > 1 ? 255 * (chunks - 1) + 100 : 8 ))
prompt=$(printf 'cat %.0s' $(seq "$nwords")); prompt=${prompt% }

if [ -n "${SDCPP_KEEP:-}" ]; then tmp=$SDCPP_KEEP; mkdir -p "$tmp" || die "cannot create '$tmp'"
else tmp=$(mktemp -d "${TMPDIR:-/tmp}/sdcpp_step.XXXXXX") || die "mktemp failed"; trap 'rm -rf "$tmp"' EXIT; fi
log=$tmp/sd-$res.log
timer=()
[ -x /usr/bin/time ] && timer=(/usr/bin/time -v -o "$tmp/time-$res.txt")

cmd=("$sd" --diffusion-model "$weights" --vae "$vae" --clip_l "$clip_l" --t5xxl "$t5"
    -p "$prompt" --cfg-scale 1.0 --sampling-method euler -W "$res" -H "$res"
    --steps $((steps + 1)) -t "$threads" --seed 42 -v -o "$tmp/out-$res.png" "${type_opts[@]}" "${extra[@]}")
echo "sdcpp_step: ${res}x$res, $((steps + 1)) steps (1 warm-up), $threads threads, ${wtype:-as-stored} weights," \
    "$nwords-word prompt: $sd ..." >&2
"${timer[@]}" "${cmd[@]}" >"$log" 2>&1
rc=$?
if [ $rc -ne 0 ]; then
    echo "sdcpp_step: sd-cli failed (exit $rc); the end of its log:" >&2
    tr '\r' '\n' <"$log" | grep -v '^\s*$' | tail -n 15 >&2
    exit 1
fi

"$py" - "$log" "$tmp/time-$res.txt" "$steps" "$txt_len" "${wtype:-}" "$res" <<'EOF'
import json, os, re, sys
log, timef, steps, want_txt, wtype, res = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
text = open(log, encoding="utf-8", errors="replace").read().replace("\r", "\n")
text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
# only the sampling part: up to "sampling completed"
cut = text.find("sampling completed")
if cut < 0:
    sys.exit("sdcpp_step: no 'sampling completed' line in %s (keep it with SDCPP_KEEP=DIR)" % log)
samp = text[:cut]
per = {}
for m in re.finditer(r"\|[^|\n]*\|\s*(\d+)/(\d+) - ([0-9.]+)(s/it|it/s)", samp):
    k, n, v = int(m.group(1)), int(m.group(2)), float(m.group(3))
    if n == steps + 1:
        per[k] = v if m.group(4) == "s/it" else (1.0 / v if v > 0 else 0.0)
if sorted(per) != list(range(1, steps + 2)):
    sys.exit("sdcpp_step: found step times for steps %s, wanted 1..%d, in %s (keep it with SDCPP_KEEP=DIR)"
             % (sorted(per), steps + 1, log))
timed = [per[k] for k in range(2, steps + 2)]
chunks = samp.count("computing condition graph completed")
txt = 256 * chunks
m = re.search(r"sampling completed, taking ([0-9.]+)s", text)
w = re.search(r"Diffusion model weight type stat:\s*(.*)", text)
wstat = re.sub(r"\s+", " ", w.group(1)).strip() if w else "?"
# the transformer's weight buffer: the one sd.cpp allocates after "generating image" (lazy load)
gen = samp.find("generating image")
b = re.search(r"prepared params backend buffer \(\s*([0-9.]+) MB", samp[gen:]) if gen >= 0 else None
d = {"s_per_step": round(sum(timed) / len(timed), 4), "s_first_step": per[1], "steps": steps,
     "step_times": [per[k] for k in range(1, steps + 2)],
     "sampling_s": float(m.group(1)) if m else None, "txt_tokens": txt,
     "weight_type": (wtype + " (converted at load from " + wstat + " tensors)") if wtype else "as stored (" + wstat + " tensors)",
     "transformer_weights_mb": float(b.group(1)) if b else None}
try:
    for line in open(timef):
        if "Maximum resident set size" in line:
            d["peak_rss_bytes"] = int(line.split(":")[1]) * 1024
except OSError:
    pass
note = ("sd.cpp (ggml CPU) %sx%s: %d T5 text tokens (%d chunk%s of 256; sd.cpp pads/splits T5 to 256-token chunks)"
        ", transformer weights %s, %s MB; s_per_step = %s from sd.cpp's per-step wall times"
        " (step 1 = warm-up incl. lazy weight load); peak RSS = whole process incl. T5-XXL and VAE"
        % (res, res, txt, chunks, "" if chunks == 1 else "s", d["weight_type"], d["transformer_weights_mb"],
           "step 2" if steps == 1 else "mean of steps 2..%d" % (steps + 1)))
if txt != want_txt:
    note += "; NOTE: TXT_LEN=%d asked, sd.cpp used %d" % (want_txt, txt)
    print("sdcpp_step: TXT_LEN=%d asked, sd.cpp used %d text tokens" % (want_txt, txt), file=sys.stderr)
d["note"] = note
print(json.dumps(d))
EOF
