#!/usr/bin/env bash
# Installs every package soma needs on Debian 12 (bookworm). Idempotent: when
# everything is present it prints one line and returns in about a second.
set -euo pipefail

PKGS=(
  cmake ninja-build g++ python3 ccache
  llvm-19-dev llvm-19-tools libmlir-19-dev mlir-19-tools clang-19 libomp-19-dev
  libfmt-dev nlohmann-json3-dev libgtest-dev libgmock-dev libbenchmark-dev zlib1g-dev
  dataset-fashion-mnist
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PKGS[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
echo "setup: done"
