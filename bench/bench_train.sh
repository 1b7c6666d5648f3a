#!/bin/sh
# bench/bench_train.sh [STEPS [ROUNDS]] - bench_train's MLP training step
# (784-256-10, batch 64, cross-entropy, backward, SGD with momentum) on
# nnmod, PyTorch (bench/bench_train_torch.py) and libtorch (bench_libtorch
# train, where it was built), one thread each, ROUNDS times interleaved
# (default 3) so the machine's load falls on every side alike. Prints every
# run's JSON line, then:
#   train_step_median_<side>  the median samples/s of the rounds (all runs listed)
#   train_step_ratio          nnmod over PyTorch (value) and over libtorch
#                             (libtorch), medians; above 1: nnmod is faster
#   train_step_load           the 1-minute load average before and after
# Needs a build with benches (build/bin/bench_train, or NNM_BUILD_DIR); the
# PyTorch side is skipped where /usr/bin/python3 has no torch, the libtorch
# side where bench_libtorch was not built.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${NNM_BUILD_DIR:-$root/build}
py=/usr/bin/python3
steps=${1:-200}
rounds=${2:-3}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
load() { cut -d' ' -f1 /proc/loadavg; }
load0=$(load)
have_torch=0
"$py" -c 'import torch' 2>/dev/null && have_torch=1
[ -x "$build/bin/bench_libtorch" ] ||
  echo '{"bench": "libtorch_train_step", "skipped": "no bench_libtorch in the build (libtorch not found when configured)"}'
# the samples/s of the line named $1 on stdin
rate() { sed -n "s/.*\"bench\": \"$1\", \"value\": \([0-9.]*\),.*/\1/p"; }
r=0
while [ "$r" -lt "$rounds" ]; do
  r=$((r + 1))
  line=$("$build/bin/bench_train" "$steps")
  echo "$line"
  echo "$line" | rate train_step_mlp784_256_10 >>"$tmp/nnmod"
  if [ "$have_torch" = 1 ]; then
    line=$("$py" "$root/bench/bench_train_torch.py")
    echo "$line"
    echo "$line" | rate torch_train_step_mlp784_256_10 >>"$tmp/torch"
  fi
  if [ -x "$build/bin/bench_libtorch" ]; then
    line=$("$build/bin/bench_libtorch" 1 train)
    echo "$line"
    echo "$line" | rate libtorch_train_step_mlp784_256_10 >>"$tmp/libtorch"
  fi
done
med() { [ -s "$1" ] && sort -n "$1" | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}' || echo 0; }
for side in nnmod torch libtorch; do
  [ -s "$tmp/$side" ] || continue
  echo "{\"bench\": \"train_step_median_$side\", \"value\": $(med "$tmp/$side"), \"unit\": \"samples/s\", \"runs\": [$(paste -sd, "$tmp/$side")]}"
done
awk -v a="$(med "$tmp/nnmod")" -v b="$(med "$tmp/torch")" -v l="$(med "$tmp/libtorch")" -v n="$rounds" 'BEGIN { printf "{\"bench\": \"train_step_ratio\", \"value\": %.3f, \"unit\": \"x\", \"libtorch\": %.3f, \"rounds\": %d, \"note\": \"nnmod samples/s over PyTorch (value) and over libtorch, medians of interleaved rounds; 0: that side missing\"}\n", (b > 0 ? a / b : 0), (l > 0 ? a / l : 0), n }'
echo "{\"bench\": \"train_step_load\", \"loadavg_before\": $load0, \"loadavg_after\": $(load), \"cores\": $(getconf _NPROCESSORS_ONLN)}"
