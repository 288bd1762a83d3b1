#!/usr/bin/env bash
# Side-by-side benchmark of one FLUX transformer step: fluxkit against PyTorch
# (bf16, tools/bench_vs_torch.py: diffusers' FluxTransformer2DModel or the
# self-contained BFL-layout forward tools/torch_flux_ref.py), with one or more
# Python interpreters (e.g. torch 2.x and torch 1.13 side by side) and, when
# given, another engine — in one run, back to back, on the same weights file,
# the same token counts and the same thread count. Prints a table with the
# ratios to each PyTorch and the conditions (machine, threads, dtype,
# resolution, steps, load) and one JSON line.
#
#   bash tools/bench_compare.sh [--res 256,512] [--steps 1] [--threads 2]
#        [--weights FILE] [--fluxkit BIN] [--precision bf16,f32] [--repeat 1]
#        [--txt-len 512] [--engines fluxkit,torch,other] [--wait-load CORES] [--out DIR]
#   bash tools/bench_compare.sh --report DIR    # re-print the table of the run kept in DIR
#
# Two PyTorch versions in one run (torch 2.x with diffusers, torch 1.13 with the
# BFL-layout forward; /work/tmp/venv113 holds torch 1.13.1):
#   TORCH_PYTHONS="python3 /work/tmp/venv113/bin/python" bash tools/bench_compare.sh --res 256,512
# The same forward code on both (TORCH_IMPL=bfl; torch 1.13 has no
# scaled_dot_product_attention, so TORCH_ATTN=explicit gives both the same attention):
#   TORCH_PYTHONS="python3 /work/tmp/venv113/bin/python" TORCH_IMPL=bfl TORCH_ATTN=explicit \
#       bash tools/bench_compare.sh --res 256,512 --precision bf16 --repeat 2 --wait-load 0.1
#
# Each engine runs one warm-up step (not timed; it also pages the mapped
# weights in) and then --steps timed steps per resolution; the best of
# --repeat repetitions is reported. Ratio = torch s/step ÷ engine s/step, so
# "4.00x" means four times faster than PyTorch's bf16 CPU path in the same run.
# --wait-load CORES: before each engine, wait (at most 10 min) until the rest of
# the machine uses at most CORES cores (a 3-second /proc/stat sample); the
# table reports, per run, the load average and the cores others used meanwhile.
#
# Environment:
#   FLUXKIT        fluxkit binary (default: build/fluxkit, else the newest Release build*/fluxkit)
#   FLUXKIT_OPTS   extra options for `fluxkit bench flux` (word-split), e.g. "--precision bf16"
#   FK_BENCH_WEIGHTS  the checkpoint (default /work/tmp/flux-mini.safetensors); make one with
#                  fluxkit init-random --preset flux-mini --dtype bf16 --seed 1 -o FILE
#   PYTHON         python for the report (default python3), and the torch default below
#   TORCH_PYTHONS  the Python interpreters that run the PyTorch side, space-separated, each
#                  with torch + safetensors (+ diffusers for TORCH_IMPL=diffusers); one
#                  torch run per word, each in its own table row and ratio column
#                  (default: $PYTHON). A word PYTHON:IMPL[:ATTN] sets that run's
#                  implementation (and attention), e.g. "python3:diffusers python3:bfl
#                  /work/tmp/venv113/bin/python:bfl"
#   TORCH_IMPL     bench_vs_torch.py --impl for every interpreter: diffusers | bfl | auto
#                  (default: auto = diffusers on torch >= 2 with diffusers, else bfl)
#   TORCH_ATTN     bench_vs_torch.py --attn for --impl bfl: sdpa | explicit | auto (default auto:
#                  F.scaled_dot_product_attention where torch has it, else softmax(q·kᵀ/√d)·v);
#                  sdpa or explicit with TORCH_IMPL unset or auto means bfl
#   TORCH_ENV      VAR=VALUE words set for the torch runs after the unsetting below, e.g.
#                  "ATEN_CPU_CAPABILITY=avx512" (torch 1.13 picks AVX2 kernels on this CPU)
#   MACHINE        machine name for the report (default: hostname)
#   OTHER_NAME / OTHER_CMD  another engine: OTHER_CMD is run through bash with RES, STEPS,
#                  THREADS, TXT_LEN and WEIGHTS set, once per resolution, and must print
#                  one JSON object with at least "s_per_step" (optional "s_first_step",
#                  "peak_rss_bytes", "note") as its last stdout line. stable-diffusion.cpp
#                  (ggml): OTHER_NAME=sd.cpp OTHER_CMD='bash tools/sdcpp_step.sh' (how to
#                  build it, and what its s/step covers, in that script's header; it needs
#                  ae / clip_l / t5xxl files next to the weights, e.g.
#                  FK_BENCH_WEIGHTS=/work/tmp/full/flux-mini.safetensors).
#
# PyTorch runs with the BLAS/oneDNN dispatch variables of the environment unset
# (OPENBLAS_*, GOTO*, NVPL_*, MKL_*, ONEDNN_*, DNNL_*, KMP_*, OMP_*, ATEN_CPU_CAPABILITY),
# OMP_NUM_THREADS=--threads and torch.set_num_threads(--threads); the report names
# what was unset (and TORCH_ENV's settings). fluxkit runs with the environment as it is.
set -u -o pipefail

res=256,512 steps=1 threads=2 txt_len=512 repeat=1 precisions="" engines="fluxkit,torch"
wait_load="" out="" report=""
weights=${FK_BENCH_WEIGHTS:-/work/tmp/flux-mini.safetensors}
fk=${FLUXKIT:-}
py=${PYTHON:-python3}
torch_pys=${TORCH_PYTHONS:-$py} torch_impl=${TORCH_IMPL:-} torch_attn=${TORCH_ATTN:-} torch_set=${TORCH_ENV:-}
here=$(cd "$(dirname "$0")" && pwd)

usage() { sed -n '2,/^set -u/p' "$0" | sed 's/^# \{0,1\}//; /^set -u/d'; }
die() { echo "bench_compare: $*" >&2; exit 2; }
need() { [ $# -ge 2 ] || die "$1: missing value"; }

while [ $# -gt 0 ]; do
    case $1 in
    --res) need "$@"; res=$2; shift 2 ;;
    --steps) need "$@"; steps=$2; shift 2 ;;
    --threads) need "$@"; threads=$2; shift 2 ;;
    --txt-len) need "$@"; txt_len=$2; shift 2 ;;
    --weights) need "$@"; weights=$2; shift 2 ;;
    --fluxkit) need "$@"; fk=$2; shift 2 ;;
    --precision) need "$@"; precisions=$2; shift 2 ;;
    --repeat) need "$@"; repeat=$2; shift 2 ;;
    --engines) need "$@"; engines=$2; shift 2 ;;
    --wait-load) need "$@"; wait_load=$2; shift 2 ;;
    --out) need "$@"; out=$2; shift 2 ;;
    --report) need "$@"; report=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done

if [ -n "$report" ]; then # re-print the table of an earlier run from its --out folder
    [ -f "$report/params" ] && [ -f "$report/manifest.tsv" ] || die "--report: '$report' has no params/manifest.tsv"
    # shellcheck disable=SC1091
    . "$report/params"
fi

isint() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
isint "$steps" || die "--steps: expected a positive integer, got '$steps'"
isint "$threads" || die "--threads: expected a positive integer, got '$threads'"
isint "$txt_len" || die "--txt-len: expected a positive integer, got '$txt_len'"
isint "$repeat" || die "--repeat: expected a positive integer, got '$repeat'"
[[ $res =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--res: expected a comma-separated list of sizes, got '$res'"
[ -z "$torch_impl" ] || [[ $torch_impl =~ ^(auto|diffusers|bfl)$ ]] || die "TORCH_IMPL: expected auto, diffusers or bfl, got '$torch_impl'"
[ -z "$torch_attn" ] || [[ $torch_attn =~ ^(auto|sdpa|explicit)$ ]] || die "TORCH_ATTN: expected auto, sdpa or explicit, got '$torch_attn'"
read -r -a torch_words <<<"$torch_pys"
[ ${#torch_words[@]} -ge 1 ] || die "TORCH_PYTHONS: no interpreter named"
# each word: PYTHON[:IMPL[:ATTN]] -> the interpreter and its bench_vs_torch.py options
torch_py_list=() torch_opt_list=()
for w in "${torch_words[@]}"; do
    IFS=: read -r p wi wa extra <<<"$w"
    [ -z "${extra:-}" ] || die "TORCH_PYTHONS: '$w': expected PYTHON[:IMPL[:ATTN]]"
    wi=${wi:-$torch_impl} wa=${wa:-$torch_attn}
    [ -z "$wi" ] || [[ $wi =~ ^(auto|diffusers|bfl)$ ]] || die "TORCH_PYTHONS: '$w': IMPL must be auto, diffusers or bfl"
    [ -z "$wa" ] || [[ $wa =~ ^(auto|sdpa|explicit)$ ]] || die "TORCH_PYTHONS: '$w': ATTN must be auto, sdpa or explicit"
    torch_py_list+=("$p")
    torch_opt_list+=("${wi:+--impl $wi}${wi:+${wa:+ }}${wa:+--attn $wa}")
done
read -r -a torch_set_list <<<"$torch_set"
for kv in "${torch_set_list[@]}"; do
    [[ $kv =~ ^[A-Za-z_][A-Za-z0-9_]*=.*$ ]] || die "TORCH_ENV: expected VAR=VALUE words, got '$kv'"
done
[ -z "$wait_load" ] || [[ $wait_load =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--wait-load: expected a number of cores"
[ -n "$report" ] || [ -f "$weights" ] || die "weights file '$weights' not found (make one with: fluxkit init-random --preset flux-mini --dtype bf16 --seed 1 -o FILE)"

has_engine() { [[ ,$engines, == *,$1,* ]]; }
if [ -z "$report" ] && has_engine fluxkit; then
    if [ -z "$fk" ]; then # build/fluxkit, else the newest Release build*/fluxkit of the tree
        root=$(cd "$here/.." && pwd)
        if [ -x "$root/build/fluxkit" ]; then fk=$root/build/fluxkit
        else
            for f in $(ls -t "$root"/build*/fluxkit 2>/dev/null); do
                grep -q '^CMAKE_BUILD_TYPE:STRING=Release$' "$(dirname "$f")/CMakeCache.txt" 2>/dev/null &&
                    { fk=$f; break; }
            done
        fi
    fi
    [ -n "$fk" ] && [ -x "$fk" ] || die "no fluxkit binary (build it, or give --fluxkit BIN / FLUXKIT=BIN)"
    fk_help=$("$fk" bench flux --help 2>&1)
    # The precision modes (bf16: AMX / AVX512-BF16 linear and attention; f32: the
    # reference kernels): run both when the binary has the option, unless
    # --precision names some.
    # (FLUXKIT_OPTS naming --precision itself: one run with those options.)
    if [ -z "$precisions" ] && grep -q -- '--precision' <<<"$fk_help" &&
        [[ " ${FLUXKIT_OPTS:-} " != *" --precision"* ]]; then precisions=bf16,f32; fi
    if [ -n "$precisions" ] && ! grep -q -- '--precision' <<<"$fk_help"; then
        die "--precision: $fk bench flux has no --precision option"
    fi
fi
if [ -z "$report" ] && has_engine other; then
    [ -n "${OTHER_CMD:-}" ] || die "--engines other needs OTHER_CMD (see --help)"
fi
if [ -z "$report" ] && has_engine torch; then
    for p in "${torch_py_list[@]}"; do
        command -v "$p" >/dev/null || die "TORCH_PYTHONS: '$p' is not an executable"
        "$p" -c 'import torch, safetensors' 2>/dev/null || die "TORCH_PYTHONS: '$p' cannot import torch and safetensors"
    done
fi

if [ -n "$report" ]; then out=$report
elif [ -z "$out" ]; then out=$(mktemp -d "${TMPDIR:-/tmp}/bench_compare.XXXXXX") || die "mktemp failed"
else mkdir -p "$out" || die "cannot create '$out'"; fi
manifest=$out/manifest.tsv
[ -n "$report" ] || : >"$manifest"

loadavg() { cut -d' ' -f1 /proc/loadavg; }
ncpu=$(nproc)
# "BUSY TOTAL" jiffies of all CPUs so far (/proc/stat)
cpustat() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; exit }' /proc/stat; }
# busy cores between two cpustat samples
busy_cores() { awk -v a="$1" -v b="$2" -v n="$ncpu" 'BEGIN { split(a, x, " "); split(b, y, " ");
    t = y[2] - x[2]; printf "%.2f", (t > 0 ? (y[1] - x[1]) / t * n : 0) }'; }
# cores in use right now (a 3-second sample)
busy_now() { local a; a=$(cpustat); sleep 3; busy_cores "$a" "$(cpustat)"; }
# --wait-load X: wait (at most 10 minutes) until the other processes use at most X cores
wait_quiet() {
    [ -n "$wait_load" ] || return 0
    local t=0 b
    while b=$(busy_now); awk -v l="$b" -v m="$wait_load" 'BEGIN { exit !(l > m) }'; do
        [ $t -ge 600 ] && { echo "bench_compare: still $b cores busy after 10 min; going on" >&2; return 0; }
        [ $t -eq 0 ] && echo "bench_compare: $b cores busy; waiting until at most $wait_load" >&2
        sleep 12; t=$((t + 15))
    done
}

# run NAME PRECISION REP CMD...: time a command, keep its stdout/stderr, log a manifest row
# (load average before/after, wall/user/sys seconds, the machine's busy cores during the run).
run() {
    local name=$1 prec=$2 rep=$3
    shift 3
    local base=$out/$rep-$name${prec:+-$prec}
    wait_quiet
    local l0 l1 rc tm s0 s1
    l0=$(loadavg)
    echo "bench_compare: [$rep/$repeat] $name${prec:+ ($prec)}: $*" >&2
    s0=$(cpustat)
    tm=$( { TIMEFORMAT='%R %U %S'; time "$@" >"$base.out" 2>"$base.err"; } 2>&1 )
    rc=$?
    s1=$(cpustat)
    l1=$(loadavg)
    [ $rc -eq 0 ] || { echo "bench_compare: $name failed (exit $rc); see $base.err:" >&2; tail -n 5 "$base.err" >&2; }
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rep" "$name" "${prec:--}" "$base.out" "$l0" "$l1" \
        "$tm" "$rc" "$(busy_cores "$s0" "$s1")" >>"$manifest"
}

# PyTorch's environment: no dispatch overrides, the thread count pinned.
if [ -z "$report" ]; then
    torch_unset=()
    while IFS='=' read -r k _; do
        [[ $k =~ ^(OPENBLAS_|GOTO|NVPL_|MKL_|ONEDNN_|DNNL_|KMP_|OMP_|ATEN_CPU_CAPABILITY) ]] && torch_unset+=("$k")
    done < <(env)
fi
torch_env=(env)
for k in "${torch_unset[@]}"; do torch_env+=(-u "$k"); done
torch_env+=(OMP_NUM_THREADS="$threads" "${torch_set_list[@]}")

other_run() { # once per resolution; collect the last JSON line of each
    local r
    for r in ${res//,/ }; do
        RES=$r STEPS=$steps THREADS=$threads TXT_LEN=$txt_len WEIGHTS=$weights bash -c "$OTHER_CMD" |
            tail -n 1 | "$py" -c 'import json,sys; d=json.loads(sys.stdin.read()); d["res"]=int(sys.argv[1]); print(json.dumps(d))' "$r" ||
            return 1
    done
}

# shellcheck disable=SC2206
fk_opts=(${FLUXKIT_OPTS:-})
fk_run() { # fk_run REP [PRECISION]
    local rep=$1 p=${2:-}
    run fluxkit "$p" "$rep" "$fk" bench flux --weights "$weights" --res "$res" --steps $((steps + 1)) \
        --txt-len "$txt_len" --threads "$threads" --json ${p:+--precision "$p"} "${fk_opts[@]}"
}
if [ -z "$report" ]; then
    declare -p steps threads txt_len res repeat weights fk precisions torch_unset torch_pys torch_impl \
        torch_attn torch_set >"$out/params"
    printf 'FLUXKIT_OPTS=%q\n' "${FLUXKIT_OPTS:-}" >>"$out/params"
fi
# Per repetition: fluxkit in its first precision, PyTorch right after it, then
# fluxkit's other precisions and the other engine.
for ((rep = 1; rep <= repeat; rep++)); do
    [ -z "$report" ] || break
    read -r -a precs <<<"${precisions//,/ }"
    if has_engine fluxkit; then fk_run "$rep" "${precs[0]:-}"; fi
    if has_engine torch; then # one run per interpreter: engines torch-1, torch-2, ...
        probe=--no-probe
        [ "$rep" -eq 1 ] && probe=
        for i in "${!torch_py_list[@]}"; do
            # shellcheck disable=SC2086 # the options are words
            run "torch-$((i + 1))" bf16 "$rep" "${torch_env[@]}" "${torch_py_list[$i]}" "$here/bench_vs_torch.py" \
                --weights "$weights" --res "$res" --steps "$steps" --threads "$threads" --txt-len "$txt_len" \
                --json $probe ${torch_opt_list[$i]}
        done
    fi
    if has_engine fluxkit; then
        for p in "${precs[@]:1}"; do fk_run "$rep" "$p"; done
    fi
    if has_engine other; then
        run "${OTHER_NAME:-other}" "" "$rep" other_run
    fi
done

fk_version=""
[ -n "$fk" ] && [ -x "$fk" ] && fk_version=$("$fk" --version 2>/dev/null | head -n 1)
cpu_model=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)
isa=$(grep -o -w -E 'avx2|avx512f|avx512_bf16|amx_bf16|amx_tile' /proc/cpuinfo 2>/dev/null | sort -u | tr '\n' ' ')
mem_kb=$(sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' /proc/meminfo)

MANIFEST=$manifest MACHINE=${MACHINE:-$(hostname)} CPU_MODEL=$cpu_model ISA=$isa MEM_KB=${mem_kb:-0} \
NPROC=$(nproc) THREADS=$threads STEPS=$steps TXT_LEN=$txt_len RES=$res REPEAT=$repeat WEIGHTS=$weights \
FK_BIN=$fk FK_VERSION=$fk_version FK_OPTS=${FLUXKIT_OPTS:-} FK_PRECISIONS=$precisions TORCH_UNSET="${torch_unset[*]}" OUT=$out \
TORCH_SET="$torch_set" \
"$py" - <<'EOF'
import json, os, re, sys, time

E = os.environ
rows, infos, failed = [], {}, []


def is_torch(name):  # "torch" in runs before TORCH_PYTHONS, "torch-N" since
    return name == "torch" or re.match(r"^torch-[0-9]+$", name) is not None


def torch_index(name):
    return int(name.split("-")[1]) if "-" in name else 1


for line in open(E["MANIFEST"]):
    rep, name, prec, path, l0, l1, tm, rc, busy = line.rstrip("\n").split("\t")
    prec = "" if prec == "-" else prec
    real, user, sys_ = (float(x) for x in tm.split()[-3:]) if len(tm.split()) >= 3 else (0, 0, 0)
    cpu = (user + sys_) / real if real > 0 else 0.0
    others = max(0.0, float(busy) - cpu)  # cores the rest of the machine used meanwhile
    if rc != "0":
        failed.append("%s%s (rep %s)" % (name, " " + prec if prec else "", rep))
    for text in open(path, errors="replace"):
        text = text.strip()
        if not text.startswith("{"):
            continue
        try:
            d = json.loads(text)
        except ValueError:
            continue
        if d.get("kind") == "torch-info":
            if "kernels" in d or name not in infos:  # the first repetition probes the kernels
                infos[name] = d
            continue
        if "s_per_step" not in d or "res" not in d:
            continue
        rows.append(dict(engine=name, precision=prec or d.get("precision", ""), rep=int(rep),
                         res=int(d["res"]), n_img=d.get("n_img", (int(d["res"]) // 16) ** 2),
                         s_per_step=float(d["s_per_step"]), s_first_step=d.get("s_first_step"),
                         gflops=d.get("gflops"), peak_rss_bytes=d.get("peak_rss_bytes"),
                         finite=d.get("finite", True), load_before=float(l0), load_after=float(l1),
                         cpu_cores_used=round(cpu, 2), other_cores_used=round(others, 2),
                         kernels=d.get("kernels"), rel_l2_vs_f32=d.get("rel_l2_vs_f32"),
                         note=d.get("note") or ("kernels: %s" % d["kernels"] if d.get("kernels") else "")))

torches = sorted({r["engine"] for r in rows if is_torch(r["engine"])} | set(infos), key=torch_index)


def short_version(v):
    return (v or "?").split("+")[0]


def torch_label(name):
    """'torch 2.15.0 diffusers' / 'torch 1.13.1 bfl'; the engine name when its info is missing."""
    i = infos.get(name)
    if not i:
        return name
    impl = i.get("impl") or "diffusers"  # runs before --impl: diffusers
    if impl == "bfl" and i.get("attention") == "explicit":
        impl = "bfl/explicit"  # the explicit softmax attention (torch 1.13's, or TORCH_ATTN=explicit)
    return "torch %s %s" % (short_version(i.get("torch")), impl)


labels = {t: torch_label(t) for t in torches}
if len(set(labels.values())) < len(labels):  # the same torch twice: tell them apart
    labels = {t: "%s #%d" % (labels[t], torch_index(t)) for t in torches}

# best (lowest s/step) of the repetitions per engine, precision and resolution
best = {}
for r in rows:
    k = (r["engine"], r["precision"], r["res"])
    if k not in best or r["s_per_step"] < best[k]["s_per_step"]:
        best[k] = r
torch_best = {(k[0], k[2]): v for k, v in best.items() if is_torch(k[0])}


def order(r):
    e = r["engine"]
    return (r["res"], 0 if e == "fluxkit" else 2 + torch_index(e) if is_torch(e) else 1, r["precision"])


results = sorted(best.values(), key=order)
BUSY = 0.2  # cores used by other processes above which a run counts as contended
for r in results:
    r["label"] = labels[r["engine"]] if is_torch(r["engine"]) else r["engine"]
    r["speedup_vs"], r["contended_vs"] = {}, {}
    for t in torches:
        tb = torch_best.get((t, r["res"]))
        if tb is None or r["s_per_step"] <= 0:
            continue
        r["speedup_vs"][labels[t]] = round(tb["s_per_step"] / r["s_per_step"], 3)
        r["contended_vs"][labels[t]] = r["other_cores_used"] >= BUSY or tb["other_cores_used"] >= BUSY
    first = labels[torches[0]] if torches else None
    r["speedup_vs_torch"] = r["speedup_vs"].get(first)  # the first torch, as before TORCH_PYTHONS
    r["contended"] = r["other_cores_used"] >= BUSY or any(r["contended_vs"].values())


def gb(n):
    return "%.2f GB" % (n / 1e9) if n else "?"


info0 = infos.get(torches[0], {}) if torches else {}
print()
when = time.localtime(os.path.getmtime(E["MANIFEST"]))  # the end of the last run
print("== one FLUX transformer step: fluxkit vs PyTorch (%s) ==" % time.strftime("%Y-%m-%d %H:%M", when))
print("machine  %s: %s, %s cores, %s, %.1f GB RAM" % (E["MACHINE"], E["CPU_MODEL"] or "?", E["NPROC"],
      E["ISA"].strip() or "?", int(E["MEM_KB"]) / 1048576))
model = next((i.get("model") for i in infos.values() if i.get("model")), "?")
print("model    %s, weights %s (bf16), %s text tokens, batch 1" % (model, E["WEIGHTS"], E["TXT_LEN"]))
print("timing   threads %s; per resolution 1 warm-up step (not timed) + %s timed step(s); best of %s run(s)"
      % (E["THREADS"], E["STEPS"], E["REPEAT"]))
if E["FK_BIN"]:
    print("fluxkit  %s (%s), bf16 weights; compute: %s%s" % (
          E["FK_BIN"], E["FK_VERSION"] or "?",
          "--precision " + E["FK_PRECISIONS"] if E["FK_PRECISIONS"]
          else "f32 (this binary has no --precision option)",
          "; options: " + E["FK_OPTS"] if E["FK_OPTS"] else ""))
for t in torches:
    info = infos.get(t)
    if not info:
        print("%-8s %s: no torch-info record (failed run?)" % ("torch", t))
        continue
    kern = info.get("kernels", {})
    impl = info.get("impl") or "diffusers"
    what = ("diffusers %s FluxTransformer2DModel" % info.get("diffusers") if impl == "diffusers"
            else "tools/torch_flux_ref.py (BFL layout), attention %s" % (
                "F.scaled_dot_product_attention" if info.get("attention") == "sdpa"
                else "explicit softmax(q·kᵀ/√d)·v"))
    print("torch    %storch %s%s, %s; bf16 weights and activations; %s; cpu capability %s"
          % ("[%s] " % labels[t] if len(torches) > 1 else "", info.get("torch"),
             " (%s)" % info["python"] if info.get("python") else "",
             what, info.get("onednn") or "?", info.get("cpu_capability")))
    print("         linear: %s; attention: %s; oneDNN ISA: %s" % (
          "; ".join(kern.get("linear", ["?"])), "; ".join(kern.get("attention", kern.get("sdpa", ["?"]))),
          kern.get("onednn_isa", "?")))
if torches:
    print("         unset for the torch runs only: %s%s" % (
          E["TORCH_UNSET"] or "nothing", "; set: " + E["TORCH_SET"] if E["TORCH_SET"] else ""))
print()
ratio_cols = [labels[t] for t in torches]
heads = ["vs torch"] if len(ratio_cols) == 1 else ["vs " + l[len("torch "):] for l in ratio_cols]
widths = [max(8, len(h)) for h in heads]
namew = max([16] + [len(r["label"] + (" " + r["precision"] if r["precision"] and not is_torch(r["engine"]) else ""))
                    for r in results])
hdr = "%5s %6s  %-*s %9s %9s %9s %10s %11s %5s %6s  %s" % (
    "res", "n_img", namew, "engine", "s/step", "s(first)", "GFLOP/s", "peak RSS", "load 1 min", "cores",
    "others", " ".join("%-*s" % (w, h) for w, h in zip(widths, heads)))
print(hdr.rstrip())
print("-" * len(hdr.rstrip()))
for r in results:
    name = r["label"] + (" " + r["precision"] if r["precision"] and not is_torch(r["engine"]) else "")
    cells = []
    for w, l in zip(widths, ratio_cols):
        sp = r["speedup_vs"].get(l)
        cells.append("%-*s" % (w, ("%.2fx" % sp + ("!" if r["contended_vs"][l] else "")) if sp is not None else "-"))
    print(("%5d %6d  %-*s %9.3f %9s %9s %10s %5.2f→%-5.2f %5.2f %6.2f  %s" % (
        r["res"], r["n_img"], namew, name, r["s_per_step"],
        "%.3f" % r["s_first_step"] if r["s_first_step"] is not None else "?",
        "%.1f" % r["gflops"] if r["gflops"] else "?", gb(r["peak_rss_bytes"]),
        r["load_before"], r["load_after"], r["cpu_cores_used"], r["other_cores_used"],
        " ".join(cells))).rstrip() + ("" if r["finite"] else "  NOT FINITE")
        + ("  (%s)" % r["note"] if r["note"] else ""))
print()
print("vs torch = that torch's s/step ÷ the row's s/step (above 1: faster than that PyTorch bf16 CPU run). "
      "load: 1-minute load average before→after the engine's run; cores: the engine's (user+sys)/wall "
      "over its whole run (loading included); others: cores the rest of the machine used meanwhile "
      "(%s cores in all)." % E["NPROC"])
if any(any(r["contended_vs"].values()) for r in results):
    print("! contended: other processes used %.1f cores or more during this engine's run or that torch's; "
          "the ratio is not reliable (torch's OpenMP threads slow down far more than the CPU share "
          "they lose). Rerun on a quiet machine (--wait-load 0.1, --repeat 2)." % BUSY)
print("raw outputs: %s" % E["OUT"])
if failed:
    print("FAILED: %s" % ", ".join(failed))
summary = dict(kind="bench-compare", date=time.strftime("%Y-%m-%d", when), machine=E["MACHINE"],
               cpu=E["CPU_MODEL"], nproc=int(E["NPROC"]), threads=int(E["THREADS"]),
               weights=E["WEIGHTS"], weight_dtype="bf16", model=None if model == "?" else model,
               txt_len=int(E["TXT_LEN"]), warmup_steps=1, timed_steps=int(E["STEPS"]),
               repeat=int(E["REPEAT"]), fluxkit=E["FK_BIN"] or None, fluxkit_opts=E["FK_OPTS"],
               torch=info0.get("torch"), torch_kernels=info0.get("kernels", {}),
               torches=[dict(engine=t, label=labels[t], torch=infos.get(t, {}).get("torch"),
                             impl=infos.get(t, {}).get("impl") or ("diffusers" if t in infos else None),
                             attention=infos.get(t, {}).get("attention"),
                             python=infos.get(t, {}).get("python"),
                             cpu_capability=infos.get(t, {}).get("cpu_capability"),
                             kernels=infos.get(t, {}).get("kernels", {})) for t in torches],
               torch_unset=E["TORCH_UNSET"].split(), torch_set=E["TORCH_SET"].split(),
               results=results, failed=failed)
print(json.dumps(summary))
sys.exit(1 if failed or not results else 0)
EOF
