#!/usr/bin/env bash
# Builds and runs soma's side-by-side benchmarks (not part of the tests):
# installs the peers from Debian (libtorch-dev, libopenblas-dev,
# libdnnl-dev), configures build-bench/ with SOMA_BUILD_BENCH=ON and prints
# the tables: speed (bench/run_speed.py, see bench/README.md) and the
# resident memory of training steps (bench/run_memory.sh).
#   scripts/bench.sh [--only gemm,conv,ops,models,compile,memory] [--threads 1,2]
#                    [--reps N] [--rounds R] [--budget S] [--csv FILE]
# Without --only every section runs (about half an hour on 2 cores); the
# memory table uses the last of --threads.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
missing=()
# ocl-icd-opencl-dev: dnnl-config.cmake looks for OpenCL (only a Recommends
# of libdnnl-dev, which --no-install-recommends leaves out).
for p in libtorch-dev libopenblas-dev libdnnl-dev ocl-icd-opencl-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi
cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DSOMA_BUILD_BENCH=ON >/dev/null
cmake --build build-bench --target memory_soma memory_torch speed_soma speed_peers speed_torch

only=gemm,conv,ops,models,compile,memory threads=1,2 speed_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --only) only=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --reps|--rounds|--budget|--csv) speed_args+=("$1" "$2"); shift 2 ;;
    *) echo "scripts/bench.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
speed_only=$(echo ",$only," | sed 's/,memory,/,/; s/^,//; s/,$//')
if [ -n "$speed_only" ]; then
  python3 bench/run_speed.py --build build-bench --only "$speed_only" --threads "$threads" "${speed_args[@]}"
fi
if [[ ",$only," == *,memory,* ]]; then
  echo
  echo "== peak resident memory of training steps (bench/run_memory.sh) =="
  bench/run_memory.sh build-bench "${threads##*,}"
fi
