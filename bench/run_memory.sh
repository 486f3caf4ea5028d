#!/usr/bin/env bash
# Resident memory of training steps, soma vs libtorch, side by side (Adam,
# softmax cross-entropy, the same models and batches). Each contender runs
# in its own process and reports its resident size (VmRSS) before the
# model is built and its peak (VmHWM, reset after 2 warm-up steps) during
# 10 steps; freed memory is returned to the system (malloc_trim) first.
#   process: peak - base, everything the process added for training,
#            including for soma what the JIT compiler leaves resident;
#   cached run: the same for a second run of the model, whose code the
#            compiled-object cache serves (the compiler does not run);
#   step:    for soma its own buffers (workspace arena + parameters +
#            optimizer state, exact), against libtorch's peak - base;
#   whole:   the peak itself (VmHWM during the steps: the libraries'
#            touched pages, the compiler's residue and the step), soma's
#            cached run against libtorch.
#            (parameters, gradients, optimizer state, activations).
# "+rc": soma with activation checkpointing (--recompute).
#   bench/run_memory.sh BUILD_DIR [THREADS]
set -euo pipefail
build=${1:?usage: run_memory.sh BUILD_DIR [THREADS]}
threads=${2:-2}
export OMP_NUM_THREADS=$threads
# A fresh compiled-object cache: the first run of each model compiles (with
# a report, so it only writes the cache); the "cached" run is served from
# it and never runs the compiler, as a second run of the same model would.
cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT
export SOMA_CACHE_DIR=$cache
printf '%-10s %5s | %-31s | %-16s | %9s | %-26s | %s\n' "" "" "process (peak - base), MiB" "cached run" "" "step, MiB" "whole process peak, MiB"
printf '%-10s %5s | %9s %10s %9s | %9s %6s | %9s | %9s %9s %6s | %9s %9s %6s\n' model batch soma "(compiler)" ratio soma ratio libtorch soma libtorch ratio "soma cached" libtorch ratio
for spec in "mlp 64" "mlp 256" "lenet5 64" "lenet5 64 recompute" "resnet8 32" "resnet8 32 recompute"; do
  set -- $spec
  read -r sb sc sp arena params states < <("$build/bench/memory_soma" $spec)
  read -r cb cc cp _ _ _ < <("$build/bench/memory_soma" $spec cached)
  read -r tb tp < <("$build/bench/memory_torch" "$1" "$2" "$threads")
  name=$1; [ $# -eq 3 ] && name="$1+rc"
  awk -v m="$name" -v b="$2" -v sb="$sb" -v sc="$sc" -v sp="$sp" -v tb="$tb" -v tp="$tp" \
      -v cb="$cb" -v cp="$cp" -v a="$arena" -v p="$params" -v s="$states" 'BEGIN {
    proc = (sp - sb) / 1024; comp = (sc - sb) / 1024; torch = (tp - tb) / 1024;
    cached = (cp - cb) / 1024; own = (a + p + s) / 1048576;
    printf "%-10s %5d | %9.1f %10.1f %9.2f | %9.1f %6.2f | %9.1f | %9.1f %9.1f %6.2f | %11.1f %9.1f %6.2f\n", m, b, proc, comp,
           proc / torch, cached, cached / torch, torch, own, torch, own / torch, cp / 1024, tp / 1024, cp / tp }'
done
