#!/usr/bin/env bash
# Build, on the development machine (no GPU needed: the CUDA toolkit is
# enough), what tools/gpu_check.sh runs on a lent GPU machine, so the lease's
# minutes go to running, not compiling:
#
#   bash tools/gpu_prepare.sh          # -> gpu-bin/ (ignored by git)
#   then, with the device tool: run(command="bash tools/gpu_check.sh", carry=["gpu-bin"])
#
# gpu-bin/ holds the fluxkit CLI and test_backend_conformance built for
# sm_${FK_GPU_ARCH:-90} (Release), plus the shared libraries they need that a
# CUDA image may lack (cJSON, utf8proc, libpng, libjpeg, zlib, the OpenMP
# runtime libgomp of this gcc; not the CUDA
# runtime, cuBLASLt or the C/C++ runtimes, which the GPU machine has), and a
# manifest (commit, uncommitted changes, arch). gpu_check.sh uses it when it
# is there and its libraries resolve (it prints the manifest), else it builds
# on the GPU machine: rerun this script after changing the code.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# --hash: one hash of the sources the binaries are built from (no git needed;
# gpu_check.sh compares it with the manifest's to refuse stale binaries)
if [ "${1:-}" = --hash ]; then
    find src include tests/unit/test_backend_conformance.c CMakeLists.txt -type f \
        \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name CMakeLists.txt \) -print0 |
        LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16
    exit 0
fi
arch=${FK_GPU_ARCH:-90}
build=$root/build-gpu-prep
out=$root/gpu-bin
mkdir -p "$build"
command -v nvcc >/dev/null || { echo "gpu_prepare: nvcc not on PATH (the CUDA toolkit is needed)" >&2; exit 1; }
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DFK_CUDA=ON -DFK_WERROR=ON \
    -DCMAKE_CUDA_ARCHITECTURES="$arch" -DBUILD_TESTING=ON >"$build/prepare.log" 2>&1 || {
    tail -20 "$build/prepare.log" >&2
    exit 1
}
grep -q "CUDA backend *: ON" "$build/prepare.log" || { grep -i cuda "$build/prepare.log" >&2; echo "gpu_prepare: CUDA backend not enabled" >&2; exit 1; }
cmake --build "$build" -j"$(nproc)" --target fluxkit_cli test_backend_conformance >>"$build/prepare.log" 2>&1 || {
    tail -30 "$build/prepare.log" >&2
    exit 1
}
rm -rf "$out"
mkdir -p "$out/lib"
cp "$build/fluxkit" "$build/tests/test_backend_conformance" "$out/"
# the non-CUDA, non-libc shared libraries the two binaries load
for b in "$out/fluxkit" "$out/test_backend_conformance"; do
    ldd "$b" | awk '/=> \// {print $3}' | while read -r lib; do
        case $(basename "$lib") in
        libcjson* | libutf8proc* | libpng* | libjpeg* | libz.so* | libgomp*) cp -L "$lib" "$out/lib/" ;;
        esac
    done
done
{
    echo "sources $(bash "$root/tools/gpu_prepare.sh" --hash)"
    echo "commit $(git rev-parse HEAD)"
    echo "dirty $(git status --porcelain --untracked-files=no | wc -l)"
    echo "arch $arch"
    echo "nvcc $(nvcc --version | tail -1)"
    echo "built $(date -u +%FT%TZ)"
} >"$out/manifest"
du -sh "$out"
cat "$out/manifest"
ls -la "$out" "$out/lib"
