#!/usr/bin/env bash
# The GPU check of the CUDA backend, in ONE call on a machine with an NVIDIA
# GPU (H100 / H200, CUDA 13): build, conformance suite, compute-sanitizer,
# product timings, then a summary table. Exits non-zero when any step failed.
#
#   bash tools/gpu_check.sh            # from the repository root
#
# Steps (each time-boxed, logs under $OUT when it is set, else build-gpu/):
#   1. configure + build build-gpu (Release, CMAKE_CUDA_ARCHITECTURES=90, -j16):
#      the library, the CLI and test_backend_conformance. When the configure
#      step fails (the image lacks the Debian -dev packages: libcjson, utf8proc,
#      libpng, libjpeg), the conformance test alone is compiled directly with
#      gcc + nvcc (it needs only src/core and src/backend).
#   2. nvidia-smi -L and the device as the backend sees it
#   3. test_backend_conformance: every op on every CUDA device, bf16 and f32
#      mode, against the CPU f32 reference (and the CPU bf16 backend)
#   4. compute-sanitizer memcheck over the same suite (out-of-bounds, misaligned
#      and uninitialized accesses in every kernel), run last (after step 6)
#      (a CUDA error reruns it once with FK_CUDA_SYNC=1: a synchronize after
#      every kernel names the one that faulted)
#   5. test_backend_conformance --bench: linear on the Flux-mini shapes (M =
#      1536 / 4608 tokens, bf16), FLUX / VAE attention, a VAE conv, in TFLOP/s
#   6. the CLI on the GPU (needs the fluxkit binary: built in step 1, or
#      prebuilt by tools/gpu_prepare.sh and carried as gpu-bin/):
#      eval flux / ae / clip / t5 --device "$dev" on the tiny fixtures against
#      the f64 references (f32 and bf16 tolerances of tests/cli/eval_*.sh),
#      generate on the tiny pipeline; then full-size random weights
#      (init-random flux-mini bf16, ae, clip-l, t5-xxl fp8), bench flux
#      --check (one 512² step against the CPU f32 reference), bench flux at
#      512² / 1024² and bench image (the seed's table: s/img and peak device
#      memory, 50 steps, every stage)
# Prebuilt binaries: with gpu-bin/ present (tools/gpu_prepare.sh, run on the
# development machine, no GPU needed), step 1 only checks that they load.
# Environment: FK_GPU_ARCH (default 90), FK_GPU_JOBS (default 16),
# FK_GPU_DEADLINE (default 500 s: no step starts after it),
# FK_GPU_DEVICE (default cuda; devsim dry-runs step 6 on a machine without a
# GPU), FK_GPU_FULL=0 to skip the full-size part of step 6, FK_GPU_F32=1 to
# add the f32 image bench, FK_GPU_VARIANTS="VAR=VALUE ..." to rerun the
# conformance suite and the benches under each environment setting,
# FK_GPU_SKIP_SANITIZER=1 to skip step 4, FK_GPU_DIRECT=1 to take the direct
# build (no CMake) in step 1.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
arch=${FK_GPU_ARCH:-90}
jobs=${FK_GPU_JOBS:-16}
build=$root/build-gpu
logdir=${OUT:-$build}
mkdir -p "$build" "$logdir"
log=$logdir/gpu_check.log
: >"$log"

declare -a steps=() status=() secs=() notes=()
failed=0
record() { # name status seconds note
    steps+=("$1"); status+=("$2"); secs+=("$3"); notes+=("$4")
    [ "$2" = ok ] || [ "$2" = skipped ] || failed=1
}
say() { echo "$*" | tee -a "$log"; }

# The whole script stops starting steps after FK_GPU_DEADLINE seconds (default
# 500: the device tool's per-call limit is 600 s) and caps each step at the time
# left, so the summary always prints.
t_start=$(date +%s)
deadline=${FK_GPU_DEADLINE:-500}

# run NAME LIMIT LOGFILE CMD...: time-boxed step, output to LOGFILE and the main log
run_step() {
    local name=$1 limit=$2 out=$3
    shift 3
    local t0 rc left
    t0=$(date +%s)
    left=$((deadline - (t0 - t_start)))
    if [ "$left" -le 5 ]; then
        say "== $name: skipped (the ${deadline}s deadline is reached)"
        record "$name" skipped 0 "deadline"
        return 0
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    say "== $name (limit ${limit}s): $*"
    set +e
    timeout --kill-after=10 "$limit" "$@" >"$out" 2>&1
    rc=$?
    set -e
    tail -n 40 "$out" | tee -a "$log" >/dev/null
    local dt=$(($(date +%s) - t0))
    if [ $rc -eq 0 ]; then
        record "$name" ok "$dt" ""
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        record "$name" TIMEOUT "$dt" "after ${limit}s"
    else
        record "$name" FAIL "$dt" "exit $rc (see $(basename "$out"))"
    fi
    return 0
}

say "fluxkit gpu_check: $(date -u +%FT%TZ), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"
say "nvcc: $(nvcc --version 2>/dev/null | tail -1 || echo 'not found')"

# ---- 1. build (or the prebuilt gpu-bin/) ----
conf=""
fk=""
bin=""
if [ -x "$root/gpu-bin/fluxkit" ] && [ -x "$root/gpu-bin/test_backend_conformance" ]; then
    for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
        [ -d "$d" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    done
    py_cublas=$(python3 -c 'import nvidia.cublas, os; print(list(nvidia.cublas.__path__)[0])' 2>/dev/null || true)
    [ -n "$py_cublas" ] && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$py_cublas/lib"
    export LD_LIBRARY_PATH="$root/gpu-bin/lib:$LD_LIBRARY_PATH"
    say "prebuilt gpu-bin/: $(tr '\n' ' ' <"$root/gpu-bin/manifest" 2>/dev/null)"
    missing=$(ldd "$root/gpu-bin/fluxkit" "$root/gpu-bin/test_backend_conformance" 2>&1 | grep "not found" | sort -u || true)
    want=$(bash "$root/tools/gpu_prepare.sh" --hash)
    have=$(sed -n 's/^sources //p' "$root/gpu-bin/manifest" 2>/dev/null)
    if [ "$want" != "$have" ] && [ "${FK_GPU_ALLOW_STALE:-0}" != 1 ]; then
        say "prebuilt gpu-bin/ is STALE (sources $have, tree $want): rerun tools/gpu_prepare.sh; building here instead"
        record prebuilt skipped 0 "stale (sources changed since gpu_prepare.sh)"
    elif [ -z "$missing" ]; then
        record prebuilt ok 0 "gpu-bin/ ($(sed -n 's/^commit \(.......\).*/\1/p' "$root/gpu-bin/manifest" 2>/dev/null))"
        conf=prebuilt
        fk=$root/gpu-bin/fluxkit
        bin=$root/gpu-bin/test_backend_conformance
    else
        say "prebuilt binaries miss libraries: $missing"
        record prebuilt skipped 0 "libraries missing: building"
    fi
fi
if [ -z "$conf" ] && [ "${FK_GPU_DIRECT:-0}" != 1 ] && command -v cmake >/dev/null 2>&1; then
    run_step configure 180 "$logdir/build.log" \
        cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DFK_CUDA=ON \
        -DCMAKE_CUDA_ARCHITECTURES="$arch" -DFK_WERROR=OFF
    if [ "${status[-1]}" = ok ] && grep -q "CUDA backend   : ON" "$logdir/build.log"; then
        conf=cmake
    elif [ "${status[-1]}" = ok ]; then
        status[-1]=FAIL
        notes[-1]="CUDA backend not enabled (see build.log)"
        failed=1
    fi
fi
if [ "$conf" = prebuilt ]; then
    :
elif [ "$conf" = cmake ]; then
    run_step build 420 "$logdir/build_make.log" \
        cmake --build "$build" -j"$jobs" --target fluxkit fluxkit_cli test_backend_conformance
    if [ "${status[-1]}" = ok ]; then
        bin=$build/tests/test_backend_conformance
        fk=$build/fluxkit
    fi
else
    # direct build: core + backend + the test, no external libraries
    if [ ${#steps[@]} -gt 0 ] && [ "${status[-1]}" != ok ]; then
        status[-1]=skipped # the configure failure is expected without the -dev packages
        notes[-1]="cmake configure failed: direct build instead"
    fi
    cat >"$build/direct_build.sh" <<'EOS'
#!/usr/bin/env bash
# direct build of test_backend_conformance: $1 root, $2 build dir, $3 arch
set -euo pipefail
root=$1; b=$2/direct; arch=$3
mkdir -p "$b"
rm -f "$b"/*.o
nvcc_bin=$(command -v nvcc)
cuda=$(dirname "$(dirname "$nvcc_bin")")
# cuBLASLt: the toolkit's, else a pip wheel's (nvidia-cublas)
inc=""; lib=""
for d in "$cuda/include" "$cuda/targets/x86_64-linux/include"; do
    if [ -f "$d/cublasLt.h" ]; then inc=$d; break; fi
done
for d in "$cuda/lib64" "$cuda/targets/x86_64-linux/lib" "$cuda/lib"; do
    if ls "$d"/libcublasLt.so* >/dev/null 2>&1; then lib=$d; break; fi
done
if [ -z "$inc" ] || [ -z "$lib" ]; then
    py=$(python3 -c 'import nvidia.cublas, os; print(list(nvidia.cublas.__path__)[0])' 2>/dev/null || true)
    if [ -n "$py" ] && [ -z "$inc" ] && [ -f "$py/include/cublasLt.h" ]; then inc=$py/include; fi
    if [ -n "$py" ] && [ -z "$lib" ] && ls "$py"/lib/libcublasLt.so* >/dev/null 2>&1; then lib=$py/lib; fi
fi
if [ -z "$inc" ] || [ -z "$lib" ]; then echo "cuBLASLt not found (toolkit: $cuda)"; exit 1; fi
echo "cuda $cuda, cublasLt include $inc, lib $lib"
echo "$lib" >"$b/libdir"
incs=(-I"$root/include" -I"$root/src" -I"$root/tests")
cflags=(-std=gnu11 -O2 -fopenmp -ffp-contract=off -DFK_VERSION_STRING="\"0.1.0\""
        -DFK_BUILD_TYPE="\"Release\"" -DFK_HAVE_OPENMP=1 -DFK_HAVE_CUDA=1 "${incs[@]}")
pids=()
for s in "$root"/src/core/*.c "$root"/src/backend/*.c "$root"/src/backend/cpu/*.c \
         "$root"/tests/unit/test_backend_conformance.c; do
    case $s in */cuda_stub.c) continue ;; esac
    gcc "${cflags[@]}" -c "$s" -o "$b/$(basename "$s").o" &
    pids+=($!)
done
for s in "$root"/src/backend/cuda/*.cu; do
    nvcc -std=c++17 -O3 -lineinfo -arch=sm_"$arch" -I"$inc" -DFK_HAVE_CUDA=1 \
        -DFK_CUDA_ARCHS="\"$arch\"" "${incs[@]}" -c "$s" -o "$b/$(basename "$s").o" &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
cublaslt=$(ls "$lib"/libcublasLt.so "$lib"/libcublasLt.so.* 2>/dev/null | head -1)
cudart=$(ls "$cuda"/lib64/libcudart.so "$cuda"/targets/x86_64-linux/lib/libcudart.so 2>/dev/null | head -1 || true)
[ -n "$cudart" ] || cudart=-lcudart
g++ -o "$b/test_backend_conformance" "$b"/*.o -fopenmp "$cudart" "$cublaslt" -Wl,-rpath,"$lib" -lm
echo "built $b/test_backend_conformance"
EOS
    run_step build-direct 420 "$logdir/build_make.log" bash "$build/direct_build.sh" "$root" "$build" "$arch"
    if [ "${status[-1]}" = ok ]; then
        bin=$build/direct/test_backend_conformance
        export LD_LIBRARY_PATH="$(cat "$build/direct/libdir")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
fi

# ---- 2. device ----
set +e
smi=$(timeout 30 nvidia-smi -L 2>&1)
set -e
say "nvidia-smi -L: $smi"

# ---- 3-5. conformance, sanitizer, bench ----
if [ -n "$bin" ]; then
    export OMP_WAIT_POLICY=PASSIVE
    run_step conformance 150 "$logdir/conformance.log" "$bin"
    if grep -q "CUDA error at" "$logdir/conformance.log"; then
        # a CUDA error surfaces at a later call: rerun with a synchronize after
        # every kernel to name the one that faulted
        say "conformance hit a CUDA error: rerunning with FK_CUDA_SYNC=1"
        set +e
        FK_CUDA_SYNC=1 timeout --kill-after=10 180 "$bin" >"$logdir/conformance_sync.log" 2>&1
        set -e
        grep -E "CUDA error at|FAIL|^== " "$logdir/conformance_sync.log" | head -20 | tee -a "$log" || true
    fi
    conf_line=$(grep -E "passed, [0-9]+ failed" "$logdir/conformance.log" | tail -1 || true)
    notes[-1]="${notes[-1]:+${notes[-1]}; }$conf_line"
    if ! grep -q "^== cuda:" "$logdir/conformance.log"; then
        status[-1]=FAIL
        notes[-1]="no CUDA device tested: ${notes[-1]}"
        failed=1
    fi
    run_step bench 90 "$logdir/bench.log" "$bin" --bench 0
    [ -f "$logdir/bench.log" ] && grep -E "^  (linear|attention|conv2d|device)|^bench:" "$logdir/bench.log" >"$logdir/bench_summary.txt" || true
else
    record conformance FAIL 0 "not built"
    record bench FAIL 0 "not built"
fi

# ---- 6. the CLI on the GPU ----
dev=${FK_GPU_DEVICE:-cuda}
if [ -n "$fk" ]; then
    export OMP_WAIT_POLICY=PASSIVE
    cli=$logdir/cli.log
    : >"$cli"
    d=$root/tests/data
    t=$build/cli-out
    mkdir -p "$t"
    # tolerances as tests/cli/eval_*.sh: f32 5e-5 (flux) / 1e-5 (ae, clip, t5); bf16 operands 5e-3 (flux),
    # 1e-2 for the bf16 ae (a few bf16 products in a row, f32 everything else) and 2e-2 for the bf16 T5:
    # a simulation of the tiny T5 with bf16 operands (linears and attention, f32 accumulation) gives
    # 1.06-1.13e-2 against the f64 reference, 1.00-1.22e-2 over equivalent rounding draws (its unscaled
    # attention logits amplify the rounding of q and k); 2e-2 is about twice that, and a one-bucket
    # error in the position bias gives 4e-2 (docs/NOTES.md "bf16 T5 on the tiny fixture")
    cli_eval() { # NAME TOL COMPARE-ONLY... -- EVAL-ARGS...
        local name=$1 tol=$2; shift 2
        local only=()
        while [ "$1" != -- ]; do only+=(--only "$1"); shift; done
        shift
        local ref=""
        for a in "$@"; do ref=$a; done # the last argument is the --inputs file (the reference)
        run_step "$name" 120 "$t/$name.log" "$fk" eval "$@" --device "$dev" --out "$t/$name.safetensors"
        [ "${status[-1]}" = ok ] || return 0
        run_step "$name-cmp" 30 "$t/$name-cmp.log" "$fk" compare --tol "$tol" "${only[@]}" "$t/$name.safetensors" "$ref"
        notes[-1]="$(grep -o 'worst relative L2 .*' "$t/$name-cmp.log" | head -1)"
    }
    # a first, quick proof that the CLI reaches the GPU; nothing else runs without it
    run_step cuda-smoke 60 "$t/smoke.log" "$fk" bench flux --preset tiny-flux --res 32 --steps 2 --txt-len 16 \
        --device "$dev"
    if [ "${status[-1]}" = ok ]; then
    cli_eval eval-flux-f32 5e-5 output double. single. denoise. -- flux --denoise --precision f32 \
        --weights "$d/flux/tiny-dev.weights.bf16.safetensors" --inputs "$d/flux/tiny-dev.io.f64.safetensors"
    cli_eval eval-flux-bf16 5e-3 output double. single. denoise. -- flux --denoise --precision bf16 \
        --weights "$d/flux/tiny-dev.weights.bf16.safetensors" --inputs "$d/flux/tiny-dev.io.f64.safetensors"
    cli_eval eval-schnell-bf16 5e-3 output double. single. -- flux --precision bf16 \
        --weights "$d/flux/tiny-schnell.weights.f32.safetensors" --inputs "$d/flux/tiny-schnell.io.f64.safetensors"
    cli_eval eval-ae-f32 1e-5 -- ae --precision f32 --weights "$d/ae/ae-tiny.weights.f32.safetensors" \
        --inputs "$d/ae/ae-tiny.io.f64.safetensors"
    cli_eval eval-ae-bf16 1e-2 -- ae --precision bf16 --weights "$d/ae/ae-tiny.weights.bf16.safetensors" \
        --inputs "$d/ae/ae-tiny.io.f64.safetensors"
    cli_eval eval-clip-f32 1e-5 last_hidden_state pooler_output -- clip --precision f32 \
        --weights "$d/clip/tiny-clip.weights.f32.safetensors" --inputs "$d/clip/tiny-clip.io.f64.safetensors"
    cli_eval eval-t5-f32 1e-5 last_hidden_state -- t5 --precision f32 \
        --weights "$d/t5/tiny-t5.weights.f32.safetensors" --inputs "$d/t5/tiny-t5.io.f64.safetensors"
    cli_eval eval-t5-bf16 2e-2 last_hidden_state -- t5 --precision bf16 \
        --weights "$d/t5/tiny-t5.weights.f32.safetensors" --inputs "$d/t5/tiny-t5.io.f64.safetensors"
    M=(--model "$d/flux/tiny-dev.weights.bf16.safetensors" --ae "$d/ae/ae-tiny.weights.f32.safetensors"
       --clip "$d/pipeline/tiny-clip-l.safetensors" --t5 "$d/pipeline/tiny-t5xxl.safetensors")
    run_step generate-tiny 60 "$t/gen.log" "$fk" generate -p "a lighthouse" -o "$t/tiny.png" --force "${M[@]}" \
        -W 64 -H 48 -s 4 -S 1 --device "$dev" -v
    # full-size random weights (real shapes and key names)
    m=${FK_GPU_MODELS:-/tmp/fk-models}
    mkdir -p "$m"
    if [ "${FK_GPU_FULL:-1}" != 0 ]; then
    run_step init-random 240 "$t/init.log" bash -c '
        set -e; fk=$1; m=$2
        [ -s $m/flux-mini.safetensors ] || $fk init-random --preset flux-mini --dtype bf16 --seed 1 -o $m/flux-mini.safetensors
        [ -s $m/ae.safetensors ] || $fk init-random --preset ae --dtype bf16 --seed 2 -o $m/ae.safetensors
        [ -s $m/clip_l.safetensors ] || $fk init-random --preset clip-l --dtype bf16 --seed 3 -o $m/clip_l.safetensors
        [ -s $m/t5xxl_fp8_e4m3fn.safetensors ] || $fk init-random --preset t5-xxl --dtype f8_e4m3 --seed 4 -o $m/t5xxl_fp8_e4m3fn.safetensors
        ls -la $m' _ "$fk" "$m"
    if [ "${status[-1]}" = ok ]; then
        run_step flux-check 240 "$t/flux_check.log" "$fk" bench flux --weights "$m/flux-mini.safetensors" \
            --res 512 --steps 2 --check --device "$dev"
        notes[-1]="$(grep -E "^ +512 " "$t/flux_check.log" | awk '{print "rel_l2_vs_f32 " $NF}')"
        run_step bench-flux 120 "$t/bench_flux.log" "$fk" bench flux --weights "$m/flux-mini.safetensors" \
            --res 512,1024 --steps 10 --device "$dev" --profile
        # nvidia-smi's view of the device memory (context and library pools included,
        # which the backend's own counters do not see), sampled every 200 ms
        smi_peak() { # start | stop FILE
            if [ "$1" = start ]; then
                command -v nvidia-smi >/dev/null 2>&1 || return 0
                nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$2" 2>/dev/null &
                smi_pid=$!
            else
                [ -n "${smi_pid:-}" ] && kill "$smi_pid" 2>/dev/null && wait "$smi_pid" 2>/dev/null
                smi_pid=""
                [ -s "$2" ] && notes[-1]="${notes[-1]:+${notes[-1]}; }nvidia-smi peak $(sort -n "$2" | tail -1) MiB"
            fi
            return 0
        }
        smi_peak start "$t/smi_image.txt"
        run_step bench-image 300 "$t/bench_image.log" "$fk" bench image --models "$m" --res 512,1024 \
            --steps 50 --images 2 --device "$dev"
        smi_peak stop "$t/smi_image.txt"
        smi_peak start "$t/smi_offload.txt"
        run_step bench-image-offload 300 "$t/bench_image_offload.log" "$fk" bench image --models "$m" --res 512 \
            --steps 50 --images 1 --device "$dev" --offload
        smi_peak stop "$t/smi_offload.txt"
        run_step bench-text 90 "$t/bench_text.log" bash -c '
            set -e; fk=$1; m=$2; dev=$3
            $fk bench t5 --weights $m/t5xxl_fp8_e4m3fn.safetensors --device $dev --repeat 3 --profile
            $fk bench clip --weights $m/clip_l.safetensors --device $dev --repeat 3
            $fk bench ae --weights $m/ae.safetensors --res 512 --tile 0 --device $dev --profile' _ "$fk" "$m" "$dev"
        # a baseline binary carried as gpu-bin/fluxkit-base (another commit; gzipped to
        # keep the carried tree under its limit): the same image bench on the same card,
        # for a side-by-side comparison
        if [ -f "$root/gpu-bin/fluxkit-base.gz" ] && [ ! -x "$root/gpu-bin/fluxkit-base" ]; then
            gzip -dc "$root/gpu-bin/fluxkit-base.gz" >"$root/gpu-bin/fluxkit-base" && chmod +x "$root/gpu-bin/fluxkit-base"
        fi
        if [ -x "$root/gpu-bin/fluxkit-base" ]; then
            run_step bench-image-base 120 "$t/bench_image_base.log" "$root/gpu-bin/fluxkit-base" bench image \
                --models "$m" --res 512 --steps 50 --images 2 --device "$dev"
        fi
        # run-time variants (FK_GPU_VARIANTS="NAME=VALUE ...", e.g. a kernel switch read
        # from the environment): the conformance suite, the op bench and the image
        # bench again under each, beside the default runs above
        for v in ${FK_GPU_VARIANTS:-}; do
            vn=$(echo "$v" | tr -c 'A-Za-z0-9_\n' '_')
            [ -n "$bin" ] && run_step "conf-$vn" 120 "$t/conformance_$vn.log" env "$v" "$bin"
            [ -n "$bin" ] && run_step "ops-$vn" 60 "$t/bench_ops_$vn.log" env "$v" "$bin" --bench 0
            run_step "image-$vn" 120 "$t/bench_image_$vn.log" env "$v" "$fk" bench image --models "$m" \
                --res 512,1024 --steps 50 --images 2 --device "$dev"
        done
        if [ "${FK_GPU_F32:-0}" = 1 ]; then
            run_step bench-image-f32 300 "$t/bench_image_f32.log" "$fk" bench image --models "$m" --res 512 \
                --steps 50 --images 1 --device "$dev" --precision f32
        fi
    fi
    fi # full size
    fi # cuda-smoke
    for f in "$t"/*.log; do echo "==== $(basename "$f")"; cat "$f"; done >>"$cli" 2>/dev/null || true
fi

# ---- 4. the sanitizer, last: it is the slowest step and the others matter more
# when the deadline cuts the run short ----
if [ -n "$bin" ]; then
    if [ "${FK_GPU_SKIP_SANITIZER:-0}" = 1 ]; then
        record sanitizer skipped 0 "FK_GPU_SKIP_SANITIZER=1"
    elif command -v compute-sanitizer >/dev/null 2>&1; then
        run_step sanitizer 240 "$logdir/sanitizer.log" \
            compute-sanitizer --tool memcheck --error-exitcode 3 --print-limit 20 "$bin"
        s_line=$(grep -E "ERROR SUMMARY" "$logdir/sanitizer.log" | tail -1 || true)
        notes[-1]="${notes[-1]:+${notes[-1]}; }$s_line"
    else
        record sanitizer skipped 0 "compute-sanitizer not on PATH"
    fi
fi

# ---- summary ----
say ""
say "== bench (bf16, cuda:0) =="
[ -f "$logdir/bench.log" ] && grep -E "^  (linear|attention|conv2d|device)|^bench:" "$logdir/bench.log" | tee -a "$log" || true
for f in "$build"/cli-out/bench_flux.log "$build"/cli-out/bench_image*.log "$build"/cli-out/bench_ops_*.log; do
    [ -f "$f" ] || continue
    say ""
    say "== $(basename "$f" .log) =="
    grep -vE '^\{' "$f" | tail -25 | tee -a "$log"
done
say ""
say "== conformance: worst error / tolerance per op (cuda targets) =="
[ -f "$logdir/conformance.log" ] && grep -E "^== |FAIL|MISSING|all ops pass|FAILURES" "$logdir/conformance.log" | head -60 | tee -a "$log" || true
say ""
say "== gpu_check summary ($(echo "$smi" | head -1)) =="
printf '%-20s %-8s %6s  %s\n' step status secs note | tee -a "$log"
failed=0
for i in "${!steps[@]}"; do
    case ${status[$i]} in ok | skipped) ;; *) failed=1 ;; esac
    printf '%-20s %-8s %6s  %s\n' "${steps[$i]}" "${status[$i]}" "${secs[$i]}" "${notes[$i]}" | tee -a "$log"
done
if [ $failed -ne 0 ]; then
    say "gpu_check: FAILED (logs in $logdir)"
    exit 1
fi
say "gpu_check: all steps passed (logs in $logdir)"
