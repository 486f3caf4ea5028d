#!/usr/bin/env bash
# Resident memory of training steps, soma vs libtorch, side by side (Adam,
# softmax cross-entropy, the same models and batches). Each contender runs
# in its own process and reports its resident size (VmRSS) before the
# model is built and its peak (VmHWM, reset after 2 warm-up steps) during
# 10 steps; freed memory is returned to the system (malloc_trim) first.
# soma runs three times per model:
#   first run: the JIT compiles, in its worker process (soma-jit-worker,
#            the default); "worker" is that process's own peak (it has
#            exited before the steps);
#   in-process compile: the same with SOMA_JIT_WORKER=0 (and no cache):
#            what the compiler leaves resident when it runs in the process;
#   cached run: the compiled-object cache, filled by the first run, serves
#            the code: the compiler does not run at all.
# For each, "peak-base" is everything the process added for training, and
# "whole" the peak itself (the libraries' touched pages, anything the
# compiler left, and the step), both against libtorch's. "step" is soma's
# own buffers (workspace arena + parameters + optimizer state, exact),
# against libtorch's peak - base (parameters, gradients, optimizer state,
# activations). "+rc": soma with activation checkpointing (--recompute).
#   bench/run_memory.sh BUILD_DIR [THREADS]
set -euo pipefail
build=${1:?usage: run_memory.sh BUILD_DIR [THREADS]}
threads=${2:-2}
export OMP_NUM_THREADS=$threads
# A fresh compiled-object cache: the first run of each model compiles and
# stores; the cached run is served from it, as a second run would be.
cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT
export SOMA_CACHE_DIR=$cache
printf '%-10s %5s | %-37s | %-27s | %-27s | %-17s | %s\n' "" "" "first run (compiles in a worker)" "in-process compile" "cached run" "step" "libtorch, MiB"
printf '%-10s %5s | %9s %6s %7s %6s %6s | %9s %6s %7s %6s | %9s %6s %7s %6s | %9s %6s | %9s %7s\n' model batch \
  peak-base ratio whole ratio worker peak-base ratio whole ratio peak-base ratio whole ratio MiB ratio peak-base whole
for spec in "mlp 64" "mlp 256" "lenet5 64" "lenet5 64 recompute" "resnet8 32" "resnet8 32 recompute"; do
  set -- $spec
  read -r ib _ ip _ _ _ _ < <(SOMA_CACHE=0 SOMA_JIT_WORKER=0 "$build/bench/memory_soma" $spec)
  read -r sb _ sp arena params states worker < <("$build/bench/memory_soma" $spec)
  read -r cb _ cp _ _ _ _ < <("$build/bench/memory_soma" $spec)
  read -r tb tp < <("$build/bench/memory_torch" "$1" "$2" "$threads")
  name=$1; [ $# -eq 3 ] && name="$1+rc"
  awk -v m="$name" -v b="$2" -v sb="$sb" -v sp="$sp" -v ib="$ib" -v ip="$ip" -v cb="$cb" -v cp="$cp" \
      -v tb="$tb" -v tp="$tp" -v w="$worker" -v a="$arena" -v p="$params" -v s="$states" 'BEGIN {
    torch = (tp - tb) / 1024; whole = tp / 1024; own = (a + p + s) / 1048576;
    first = (sp - sb) / 1024; inproc = (ip - ib) / 1024; cached = (cp - cb) / 1024;
    printf "%-10s %5d | %9.1f %6.2f %7.1f %6.2f %6.1f | %9.1f %6.2f %7.1f %6.2f | %9.1f %6.2f %7.1f %6.2f | %9.1f %6.2f | %9.1f %7.1f\n",
           m, b, first, first / torch, sp / 1024, sp / tp, w / 1024, inproc, inproc / torch, ip / 1024, ip / tp,
           cached, cached / torch, cp / 1024, cp / tp, own, own / torch, torch, whole }'
done
