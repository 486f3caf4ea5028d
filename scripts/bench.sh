#!/usr/bin/env bash
# Builds and runs soma's side-by-side benchmarks (not part of the tests):
# installs the peers from Debian (libtorch-dev), configures build-bench/
# with SOMA_BUILD_BENCH=ON and prints the tables.
#   scripts/bench.sh [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! dpkg -s libtorch-dev >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libtorch-dev
fi
cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DSOMA_BUILD_BENCH=ON >/dev/null
cmake --build build-bench --target memory_soma memory_torch
echo "== peak resident memory of training steps (bench/run_memory.sh) =="
bench/run_memory.sh build-bench "${1:-2}"
