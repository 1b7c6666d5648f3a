#!/bin/sh
# bench/bench_epoch.sh [EPOCHS] - one epoch (or EPOCHS) of each Fashion-MNIST
# model with `nnm train` and with PyTorch (bench/train_torch.py: the same model,
# data order, batch size, optimizer and normalisation, a plain DataLoader
# loop), both on one thread, in one run. Prints one JSON object per line:
# samples/s of each side, their ratio, and the test accuracies.
#
# Needs a build (build/bin/nnm, or NNM_BUILD_DIR) and Debian's python3-torch.
# NNM_BENCH_THREADS=N (default 1) runs both sides on N intra-op threads
# (nnm train --threads N, torch.set_num_threads(N)); NNM_BENCH_LIMIT=N trains
# on the first N samples only (both sides), for a shorter run.
# Training throughput includes data loading and excludes evaluation on both
# sides. On a shared machine the figures are noisy: quote ratios of one run.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
nnm=${NNM_BUILD_DIR:-$root/build}/bin/nnm
epochs=${1:-1}
py=/usr/bin/python3
threads=${NNM_BENCH_THREADS:-1}
limit=${NNM_BENCH_LIMIT:-0}
export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads
limit_arg=
[ "$limit" -gt 0 ] && limit_arg="--limit $limit"
samples=60000
[ "$limit" -gt 0 ] && samples=$limit

for model in mlp cnn; do
  manifest=$root/examples/manifests/fashion_$model.json
  [ -f "$manifest" ] || { echo "{\"bench\": \"epoch_$model\", \"skipped\": \"no $manifest\"}"; continue; }
  # shellcheck disable=SC2086
  out=$("$nnm" train "$manifest" --epochs "$epochs" --threads "$threads" $limit_arg 2>&1) || {
    echo "$out" >&2
    exit 1
  }
  # the epochs' samples/s, averaged over the epochs by their lines
  ours=$(echo "$out" | sed -n 's/^epoch .* \([0-9][0-9]*\) samples\/s.*/\1/p' | awk '{s += $1; n++} END {if (n) printf "%d", s / n}')
  ours_cpu=$(echo "$out" | sed -n 's/^epoch .* samples\/s, [0-9.]* s (cpu \([0-9.]*\) s).*/\1/p' | awk -v n="$epochs" -v m="$samples" '{s += $1} END {if (s > 0) printf "%d", m * n / s}')
  acc=$(echo "$out" | sed -n 's/^test accuracy: \([0-9.]*\)%$/\1/p')
  echo "{\"bench\": \"epoch_${model}_nnmod\", \"value\": $ours, \"unit\": \"samples/s\", \"per_cpu_second\": $ours_cpu, \"epochs\": $epochs, \"threads\": $threads}"
  echo "{\"bench\": \"epoch_${model}_nnmod_accuracy\", \"value\": $acc, \"unit\": \"%\", \"epochs\": $epochs}"
  # shellcheck disable=SC2086
  theirs_json=$("$py" "$root/bench/train_torch.py" "$model" --epochs "$epochs" --threads "$threads" $limit_arg)
  echo "$theirs_json"
  theirs=$(echo "$theirs_json" | sed -n 's/.*"bench": "epoch_[a-z]*_torch", "value": \([0-9.]*\),.*/\1/p')
  theirs_cpu=$(echo "$theirs_json" | sed -n 's/.*"bench": "epoch_[a-z]*_torch", .*"per_cpu_second": \([0-9.]*\),.*/\1/p')
  awk -v a="$ours" -v b="$theirs" -v c="$ours_cpu" -v d="$theirs_cpu" -v m="$model" \
    'BEGIN { printf "{\"bench\": \"epoch_%s_ratio\", \"value\": %.2f, \"unit\": \"x\", \"per_cpu_second\": %.2f, \"note\": \"nnmod over PyTorch, samples/s (wall clock) and samples per CPU second, the same thread count each\"}\n", m, a / b, c / d }'
done
