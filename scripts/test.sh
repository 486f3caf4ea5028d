#!/usr/bin/env bash
# Builds soma and runs every test: installs what is missing (Debian 12),
# configures a Release build in build/, builds with Ninja and runs ctest.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
JOBS="${JOBS:-$(nproc)}"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$JOBS"
# One OpenMP runtime; workers must not spin after each parallel region on a
# shared 2-core machine.
export KMP_BLOCKTIME=0
ctest --test-dir build --output-on-failure -j "$JOBS"
