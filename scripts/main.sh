#!/usr/bin/env bash
# The main job: installs what is missing (Debian 12), builds the soma CLI and
# trains the MLP 784-256-128-10 on Fashion-MNIST with a progress bar, then
# prints the test accuracy. Extra arguments go to `soma train`
# (e.g. --epochs 3 --optimizer sgd --lr 0.05).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target soma-cli
# No KMP_BLOCKTIME=0 here: training is the only job, and letting OpenMP
# workers spin briefly between the step's many small parallel loops is about
# twice as fast as putting them to sleep after each one.
exec build/compiler/tools/soma train mlp --dataset fashion-mnist --epochs 5 --batch 64 \
  --optimizer adam --lr 0.001 --schedule step:1874:0.5 "$@"
