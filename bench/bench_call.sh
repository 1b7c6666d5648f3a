#!/bin/sh
# bench/bench_call.sh [ITERS] - the small-model figures of issue 21 in one run:
# bench_call's 50-deep Sequential(Linear(16, 16), ReLU) at batch 1, with grad
# mode on and under no_grad, and PyTorch's (bench/bench_call_torch.py), one
# thread each. Prints both sides' JSON lines and, for each mode, the ratio of
# nnmod's time to PyTorch's and to the issue's target (10 us with grad, 5 us
# under no_grad), the latter also by thread CPU time (cpu_of_target). Wall-clock
# figures: on a loaded machine quote the ratios and the CPU-time figures.
#
# Needs a build with benches (build/bin/bench_call, or NNM_BUILD_DIR); the
# PyTorch side is skipped where /usr/bin/python3 has no torch.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${NNM_BUILD_DIR:-$root/build}/bin/bench_call
py=/usr/bin/python3
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
ours=$("$bin" "${1:-400000}" seq)
echo "$ours"
theirs=
if "$py" -c 'import torch' 2>/dev/null; then
  theirs=$("$py" "$root/bench/bench_call_torch.py")
  echo "$theirs"
fi
for mode in grad no_grad; do
  if [ "$mode" = grad ]; then a_name=seq50_linear16_relu b_name=torch_seq50_linear16_relu_grad target=10
  else a_name=seq50_linear16_relu_no_grad b_name=torch_seq50_linear16_relu target=5; fi
  a=$(echo "$ours" | sed -n "s/.*\"bench\": \"$a_name\", \"value\": \([0-9.]*\),.*/\1/p")
  c=$(echo "$ours" | sed -n "s/.*\"bench\": \"$a_name\", .*\"cpu_us\": \([0-9.]*\),.*/\1/p")
  b=$(echo "$theirs" | sed -n "s/.*\"bench\": \"$b_name\", \"value\": \([0-9.]*\),.*/\1/p")
  awk -v a="$a" -v c="${c:-0}" -v b="${b:-0}" -v t="$target" -v m="$mode" 'BEGIN { printf "{\"bench\": \"seq50_%s_ratio\", \"value\": %.3f, \"unit\": \"x\", \"of_target\": %.2f, \"cpu_of_target\": %.2f, \"target_us\": %s, \"note\": \"nnmod over PyTorch (0: no torch), nnmod over the target (wall, and thread CPU time)\"}\n", m, (b > 0 ? a / b : 0), a / t, c / t, t }'
done
