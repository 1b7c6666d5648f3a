#!/bin/sh
# bench/bench_memory.sh [STEPS] [RESNET_STEPS] - peak resident memory of a
# training step (Adam, cross-entropy), nnmod (bench_memory) and PyTorch
# (bench_memory_torch.py) in one run, one thread each:
#   - the Fashion-MNIST CNN at batch 64 (STEPS steps, default 20);
#   - torchvision's resnet18 exported by nnmod.torch.export, at batch 32,
#     3 x 224 x 224 (RESNET_STEPS steps, default 3; 0 skips it). Skipped with
#     a line saying why where torch or torchvision is missing.
# Prints both sides' JSON lines and, per model, the ratio of the training
# deltas (peak resident memory while training less the resident memory
# before the first step) and of the process peaks. Resident memory does not
# depend on the machine's load.
#
# Needs a build with benches (build/bin/bench_memory, or NNM_BUILD_DIR) and
# Debian's python3-torch (and python3-torchvision for resnet18).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${NNM_BUILD_DIR:-$root/build}/bin/bench_memory
py=/usr/bin/python3
steps=${1:-20}
rsteps=${2:-3}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1

ratio() { # model, our lines, their lines
  a=$(echo "$2" | sed -n 's/.*"bench": "memory_train_step_rss_delta", "value": \([0-9.]*\),.*/\1/p')
  b=$(echo "$3" | sed -n 's/.*"bench": "memory_train_step_rss_delta_torch", "value": \([0-9.]*\),.*/\1/p')
  c=$(echo "$2" | sed -n 's/.*"bench": "memory_train_step_rss_peak", "value": \([0-9.]*\),.*/\1/p')
  d=$(echo "$3" | sed -n 's/.*"bench": "memory_train_step_rss_peak_torch", "value": \([0-9.]*\),.*/\1/p')
  suffix=
  [ "$1" = fashion_cnn ] || suffix="_$1"
  awk -v a="$a" -v b="$b" -v c="$c" -v d="$d" -v m="$1" -v s="$suffix" 'BEGIN { printf "{\"bench\": \"memory_train_step_ratio%s\", \"value\": %.2f, \"unit\": \"x\", \"rss_peak_ratio\": %.2f, \"model\": \"%s\", \"note\": \"nnmod over PyTorch: the training step'"'"'s resident memory delta, and the process peaks; lower is better\"}\n", s, (b > 0 ? a / b : 0), (d > 0 ? c / d : 0), m }'
}

ours=$("$bin" "$root/examples/manifests/fashion_cnn.json" "$steps")
echo "$ours"
theirs=$("$py" "$root/bench/bench_memory_torch.py" "$steps")
echo "$theirs"
ratio fashion_cnn "$ours" "$theirs"

[ "$rsteps" -gt 0 ] || exit 0
if ! "$py" -c 'import torch, torchvision' 2>/dev/null; then
  echo '{"bench": "memory_train_step_resnet18", "skipped": "no torch/torchvision for /usr/bin/python3"}'
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! "$py" - "$root/bindings/python" "$tmp/resnet18.json" >"$tmp/export.log" 2>&1 <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import torch, torchvision, nnmod.torch
torch.manual_seed(0)
nnmod.torch.export(torchvision.models.resnet18(), sys.argv[2], torch.randn(1, 3, 224, 224))
EOF
then
  why=$(tail -n 1 "$tmp/export.log" | tr -d '"\\' | cut -c1-200)
  echo "{\"bench\": \"memory_train_step_resnet18\", \"skipped\": \"export failed: $why\"}"
  exit 0
fi
ours=$("$bin" "$tmp/resnet18.json" "$rsteps" 32 3 224 224 1000 resnet18)
echo "$ours"
theirs=$("$py" "$root/bench/bench_memory_torch.py" "$rsteps" resnet18)
echo "$theirs"
ratio resnet18 "$ours" "$theirs"
