#!/usr/bin/env bash
# Resident memory of training steps, soma vs libtorch, side by side (Adam,
# softmax cross-entropy, the same models and batches). Each contender runs
# in its own process and reports its resident size (VmRSS) before the
# model is built and its peak (VmHWM, reset after 2 warm-up steps) during
# 10 steps; freed memory is returned to the system (malloc_trim) first.
#   process: peak - base, everything the process added for training,
#            including for soma what the JIT compiler leaves resident;
#   step:    for soma its own buffers (workspace arena + parameters +
#            optimizer state, exact), against libtorch's peak - base
#            (parameters, gradients, optimizer state, activations).
# "+rc": soma with activation checkpointing (--recompute).
#   bench/run_memory.sh BUILD_DIR [THREADS]
set -euo pipefail
build=${1:?usage: run_memory.sh BUILD_DIR [THREADS]}
threads=${2:-2}
export OMP_NUM_THREADS=$threads
printf '%-10s %5s | %-31s | %9s | %s\n' "" "" "process (peak - base), MiB" "" "step, MiB"
printf '%-10s %5s | %9s %10s %9s | %9s | %9s %9s %6s\n' model batch soma "(compiler)" ratio libtorch soma libtorch ratio
for spec in "mlp 64" "mlp 256" "lenet5 64" "lenet5 64 recompute" "resnet8 32" "resnet8 32 recompute"; do
  set -- $spec
  read -r sb sc sp arena params states < <("$build/bench/memory_soma" $spec)
  read -r tb tp < <("$build/bench/memory_torch" "$1" "$2" "$threads")
  name=$1; [ $# -eq 3 ] && name="$1+rc"
  awk -v m="$name" -v b="$2" -v sb="$sb" -v sc="$sc" -v sp="$sp" -v tb="$tb" -v tp="$tp" \
      -v a="$arena" -v p="$params" -v s="$states" 'BEGIN {
    proc = (sp - sb) / 1024; comp = (sc - sb) / 1024; torch = (tp - tb) / 1024;
    own = (a + p + s) / 1048576;
    printf "%-10s %5d | %9.1f %10.1f %9.2f | %9.1f | %9.1f %9.1f %6.2f\n", m, b, proc, comp, proc / torch,
           torch, own, torch, own / torch }'
done
