#!/usr/bin/env bash
# Fuzz the parsers of untrusted input with libFuzzer.
#
#   tools/run_fuzz.sh [SECONDS] [TARGET]   default: 60 seconds shared by every target
#
# Targets (tests/fuzz/TARGET.c): fuzz_st_header (safetensors header), fuzz_tokenize
# (prompts through both tokenizers), fuzz_t5_model (spiece.model), fuzz_clip_vocab
# (vocab.json + merges.txt), fuzz_image (PNG/JPEG decoders). Without TARGET, the first gets half the time and the
# others share the rest. Each target is built with clang in build-fuzz (-DFK_FUZZ=ON:
# the library is instrumented and built with ASan+UBSan); its seed corpus
# tests/fuzz/corpus/TARGET/ is copied to tests/fuzz/corpus-run/TARGET/ (git-ignored;
# new inputs go there), and it runs for its share of SECONDS. Exits non-zero when the fuzzer finds a crash, leak, timeout or
# sanitizer report; the input that triggered it is written to build-fuzz/artifacts/.
# Reproduce one with: build-fuzz/tests/TARGET build-fuzz/artifacts/crash-...
# Environment: CC_FUZZ (default clang), FUZZ_BUILD_DIR (default build-fuzz).
set -euo pipefail

SECONDS_TO_RUN="${1:-60}"
TARGET="${2:-all}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"
CC_BIN="${CC_FUZZ:-clang}"

if ! command -v "$CC_BIN" > /dev/null; then
  echo "run_fuzz.sh: $CC_BIN not found (install clang and libclang-rt-dev)" >&2
  exit 2
fi

mkdir -p "$BUILD"
CC="$CC_BIN" cmake -S "$ROOT" -B "$BUILD" -DFK_FUZZ=ON -DBUILD_TESTING=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFK_WERROR=OFF > "$BUILD/configure.log" 2>&1 ||
  { cat "$BUILD/configure.log" >&2; exit 2; }
TARGETS=(fuzz_st_header fuzz_tokenize fuzz_t5_model fuzz_clip_vocab fuzz_image)
[ "$TARGET" = all ] || TARGETS=("$TARGET")
cmake --build "$BUILD" --target "${TARGETS[@]}" -j2 > "$BUILD/build.log" 2>&1 ||
  { tail -50 "$BUILD/build.log" >&2; exit 2; }

run_one() {
  local target=$1 secs=$2
  local corpus="$ROOT/tests/fuzz/corpus-run/$target"
  mkdir -p "$corpus" "$BUILD/artifacts"
  cp -n "$ROOT/tests/fuzz/corpus/$target"/* "$corpus"/ 2> /dev/null || true
  local dict=()
  if [ -f "$ROOT/tests/fuzz/$target.dict" ]; then dict=(-dict="$ROOT/tests/fuzz/$target.dict"); fi
  echo "run_fuzz.sh: $target for $secs s, corpus $corpus"
  set +e
  "$BUILD/tests/$target" "$corpus" "${dict[@]}" \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
    -artifact_prefix="$BUILD/artifacts/$target-" -print_final_stats=1
  local rc=$?
  set -e
  if [ $rc -ne 0 ]; then
    echo "run_fuzz.sh: $target FAILED (exit $rc); see $BUILD/artifacts/" >&2
    return 1
  fi
  echo "run_fuzz.sh: $target ran $secs s without a crash"
}

if [ ${#TARGETS[@]} -eq 1 ]; then
  run_one "${TARGETS[0]}" "$SECONDS_TO_RUN"
else
  half=$(( SECONDS_TO_RUN / 2 )); [ $half -ge 1 ] || half=1
  rest=$(( (SECONDS_TO_RUN - half) / (${#TARGETS[@]} - 1) )); [ $rest -ge 1 ] || rest=1
  run_one "${TARGETS[0]}" "$half"
  for t in "${TARGETS[@]:1}"; do run_one "$t" "$rest"; done
fi
