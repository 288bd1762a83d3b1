#!/usr/bin/env bash
# Install the Debian packages fluxkit needs to build and test, if missing.
# Usage: tools/install-deps.sh [--ci]   (--ci adds clang + its fuzzer runtime)
set -euo pipefail
pkgs=(gcc make cmake pkg-config libcjson-dev libutf8proc-dev libpng-dev libjpeg62-turbo-dev)
if [ "${1:-}" = "--ci" ]; then
  pkgs+=(clang libclang-rt-14-dev)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "fluxkit: installing missing packages: ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "fluxkit: not root: run  apt-get install ${missing[*]}" >&2; exit 1; fi
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
