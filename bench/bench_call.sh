#!/bin/sh
# bench/bench_call.sh [ITERS] [all] - the small-model figures of issue 21 in
# one run: bench_call's 50-deep Sequential(Linear(16, 16), ReLU) at batch 1,
# with grad mode on and under no_grad, PyTorch's (bench/bench_call_torch.py)
# and libtorch's (bench_libtorch, where it was built), one thread each. Prints
# every side's JSON lines and, for each mode, the ratio of nnmod's time to
# PyTorch's (value), to libtorch's (libtorch, and by thread CPU time
# libtorch_cpu) and to the issue's target (10 us with grad, 5 us under
# no_grad), the latter also by thread CPU time (cpu_of_target). With "all",
# also bench_call's call-path lines and call_path_ratio: an identity module
# through nnm_module_call over the same module through libtorch's AnyModule
# (the type-erased call Sequential makes; direct: over a plain C++ call of
# its forward). Wall-clock figures: on a loaded machine quote the ratios and
# the CPU-time figures.
#
# Needs a build with benches (build/bin/bench_call, or NNM_BUILD_DIR); the
# PyTorch side is skipped where /usr/bin/python3 has no torch, the libtorch
# side where bench_libtorch was not built (no libtorch when configured).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${NNM_BUILD_DIR:-$root/build}
bin=$build/bin/bench_call
py=/usr/bin/python3
iters=${1:-400000}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
if [ "${2:-}" = all ]; then ours=$("$bin" "$iters"); else ours=$("$bin" "$iters" seq); fi
echo "$ours"
theirs=
if "$py" -c 'import torch' 2>/dev/null; then
  theirs=$("$py" "$root/bench/bench_call_torch.py")
  echo "$theirs"
fi
libt=
if [ -x "$build/bin/bench_libtorch" ]; then
  libt=$("$build/bin/bench_libtorch" "$iters" call)
  echo "$libt"
else
  echo '{"bench": "libtorch_call", "skipped": "no bench_libtorch in the build (libtorch not found when configured)"}'
fi
# field F of the line named N in the lines L (empty where absent)
field() { echo "$3" | sed -n "s/.*\"bench\": \"$1\", .*\"$2\": \([0-9.]*\)[,}].*/\1/p"; }
for mode in grad no_grad; do
  if [ "$mode" = grad ]; then a_name=seq50_linear16_relu b_name=torch_seq50_linear16_relu_grad target=10
  else a_name=seq50_linear16_relu_no_grad b_name=torch_seq50_linear16_relu target=5; fi
  a=$(field "$a_name" value "$ours")
  c=$(field "$a_name" cpu_us "$ours")
  b=$(field "$b_name" value "$theirs")
  lt=$(field "libtorch_${b_name#torch_}" value "$libt")
  ltc=$(field "libtorch_${b_name#torch_}" cpu "$libt")
  awk -v a="$a" -v c="${c:-0}" -v b="${b:-0}" -v l="${lt:-0}" -v lc="${ltc:-0}" -v t="$target" -v m="$mode" 'BEGIN { printf "{\"bench\": \"seq50_%s_ratio\", \"value\": %.3f, \"unit\": \"x\", \"libtorch\": %.3f, \"libtorch_cpu\": %.3f, \"of_target\": %.2f, \"cpu_of_target\": %.2f, \"target_us\": %s, \"note\": \"nnmod over PyTorch, over libtorch (wall; thread CPU time) (0: that side missing), nnmod over the target (wall, and thread CPU time)\"}\n", m, (b > 0 ? a / b : 0), (l > 0 ? a / l : 0), (lc > 0 ? c / lc : 0), a / t, c / t, t }'
done
if [ "${2:-}" = all ]; then
  a=$(field call_no_hooks value "$ours")
  l=$(field libtorch_identity_anymodule value "$libt")
  d=$(field libtorch_identity_direct value "$libt")
  awk -v a="$a" -v l="${l:-0}" -v d="${d:-0}" 'BEGIN { printf "{\"bench\": \"call_path_ratio\", \"value\": %.3f, \"unit\": \"x\", \"nnmod_ns\": %.2f, \"libtorch_anymodule_ns\": %.2f, \"direct\": %.3f, \"libtorch_direct_ns\": %.2f, \"note\": \"an identity module: nnm_module_call over libtorch AnyModule::forward (value) and over a direct C++ forward call (direct); 0: no libtorch\"}\n", (l > 0 ? a / l : 0), a, l, (d > 0 ? a / d : 0), d }'
fi
