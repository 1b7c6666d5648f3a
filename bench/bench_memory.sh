#!/bin/sh
# bench/bench_memory.sh [STEPS] - peak resident memory of a training step of
# the Fashion-MNIST CNN at batch 64 (Adam, cross-entropy), nnmod (bench_memory)
# and PyTorch (bench_memory_torch.py) in one run, one thread each. Prints
# both sides' JSON lines and the ratio of the training deltas (peak resident
# memory while training less the resident memory before the first step).
#
# Needs a build with benches (build/bin/bench_memory, or NNM_BUILD_DIR) and
# Debian's python3-torch.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${NNM_BUILD_DIR:-$root/build}/bin/bench_memory
steps=${1:-20}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
ours=$("$bin" "$root/examples/manifests/fashion_cnn.json" "$steps")
echo "$ours"
theirs=$(/usr/bin/python3 "$root/bench/bench_memory_torch.py" "$steps")
echo "$theirs"
a=$(echo "$ours" | sed -n 's/.*"bench": "memory_train_step_rss_delta", "value": \([0-9.]*\),.*/\1/p')
b=$(echo "$theirs" | sed -n 's/.*"bench": "memory_train_step_rss_delta_torch", "value": \([0-9.]*\),.*/\1/p')
c=$(echo "$ours" | sed -n 's/.*"bench": "memory_train_step_rss_peak", "value": \([0-9.]*\),.*/\1/p')
d=$(echo "$theirs" | sed -n 's/.*"bench": "memory_train_step_rss_peak_torch", "value": \([0-9.]*\),.*/\1/p')
awk -v a="$a" -v b="$b" -v c="$c" -v d="$d" 'BEGIN { printf "{\"bench\": \"memory_train_step_ratio\", \"value\": %.2f, \"unit\": \"x\", \"rss_peak_ratio\": %.2f, \"note\": \"nnmod over PyTorch: the training step'"'"'s resident memory delta, and the process peaks; lower is better\"}\n", (b > 0 ? a / b : 0), (d > 0 ? c / d : 0) }'
