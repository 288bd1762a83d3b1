#!/usr/bin/env bash
# Fuzz the safetensors header parser with libFuzzer.
#
#   tools/run_fuzz.sh [SECONDS] [TARGET]     default: 60 seconds, fuzz_st_header
#
# Builds TARGET (tests/fuzz/TARGET.c) with clang in build-fuzz (-DFK_FUZZ=ON: the
# library is instrumented and built with ASan+UBSan), copies the seed corpus
# tests/fuzz/corpus/ to tests/fuzz/corpus-run/ (git-ignored; new inputs go there), and
# runs for SECONDS. Exits non-zero when the fuzzer finds a crash, leak, timeout or
# sanitizer report; the input that triggered it is written to build-fuzz/artifacts/.
# Reproduce one with: build-fuzz/tests/TARGET build-fuzz/artifacts/crash-...
# Environment: CC_FUZZ (default clang), FUZZ_BUILD_DIR (default build-fuzz).
set -euo pipefail

SECONDS_TO_RUN="${1:-60}"
TARGET="${2:-fuzz_st_header}"
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
cmake --build "$BUILD" --target "$TARGET" -j2 > "$BUILD/build.log" 2>&1 ||
  { tail -50 "$BUILD/build.log" >&2; exit 2; }

RUN_CORPUS="$ROOT/tests/fuzz/corpus-run"
mkdir -p "$RUN_CORPUS" "$BUILD/artifacts"
cp -n "$ROOT"/tests/fuzz/corpus/* "$RUN_CORPUS"/ 2> /dev/null || true

DICT=()
if [ -f "$ROOT/tests/fuzz/$TARGET.dict" ]; then
  DICT=(-dict="$ROOT/tests/fuzz/$TARGET.dict")
fi

echo "run_fuzz.sh: $TARGET for $SECONDS_TO_RUN s, corpus $RUN_CORPUS"
set +e
"$BUILD/tests/$TARGET" "$RUN_CORPUS" "${DICT[@]}" \
  -max_total_time="$SECONDS_TO_RUN" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
  -artifact_prefix="$BUILD/artifacts/" -print_final_stats=1
rc=$?
set -e
if [ $rc -ne 0 ]; then
  echo "run_fuzz.sh: $TARGET FAILED (exit $rc); see $BUILD/artifacts/" >&2
  exit 1
fi
echo "run_fuzz.sh: $TARGET ran $SECONDS_TO_RUN s without a crash"
