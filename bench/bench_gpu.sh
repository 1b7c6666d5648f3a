#!/usr/bin/env bash
# bench/bench_gpu.sh - nnmod (bench_gpu) and PyTorch (bench_gpu_torch.py) on
# the same GPU in one run: per-module call overhead, ResNet-50 forward +
# backward at batch 64, a transformer encoder layer (bench/bench_gpu.c says
# what each case is).
#
#   bench/bench_gpu.sh [BUILD_DIR] [ARGS...]    (default build; ARGS go to both
#                                                programs: --device, --reps, ...)
#
# Prints every line of both programs, then one summary line per bench:
#   {"bench": NAME, "value": nnmod's, "unit": ..., "torch": PyTorch's,
#    "ratio_vs_torch": nnmod / PyTorch (lower is better), "target": ...}
# Targets (issue 22): under 3 us per module call on the GPU; ResNet-50 and the
# encoder layer within 1.2x of PyTorch eager. Without a GPU both programs
# print a skip line and this exits 0. NNM_TORCH_PYTHON picks the Python that
# has torch (default python3); NNM_BENCH_ROUNDS (default 1) alternates the two
# programs that many times and takes the medians.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
[ $# -gt 0 ] && shift
py=${NNM_TORCH_PYTHON:-python3}
rounds=${NNM_BENCH_ROUNDS:-1}
bin=$build/bin/bench_gpu
[ -x "$bin" ] || { echo "bench_gpu.sh: build $bin first (cmake --build $build --target bench_gpu)" >&2; exit 1; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# case by case, both sides before the next case: a run cut short still has
# pairs to compare
for _ in $(seq "$rounds"); do
  for case in call transformer resnet; do
    "$bin" --only "$case" "$@" | tee -a "$out"
    # torch needs no nnmod library path: keep the prefix's libraries away from it
    env -u LD_LIBRARY_PATH "$py" "$root/bench/bench_gpu_torch.py" --only "$case" "$@" | tee -a "$out"
  done
done
"$py" - "$out" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    line = line.strip()
    if not line.startswith("{"):
        continue
    d = json.loads(line)
    if "value" in d:
        rows.setdefault(d["bench"], []).append(d)
targets = {"gpu_call_seq50_no_grad": "3 us/module", "gpu_call_seq50_grad": "3 us/module",
           "gpu_resnet50_fwd_bwd": "ratio 1.2", "gpu_resnet50_fwd": "ratio 1.2",
           "gpu_transformer_encoder_layer_fwd_bwd": "ratio 1.2",
           "gpu_transformer_encoder_layer_fwd": "ratio 1.2"}
for name, rs in rows.items():
    if name.endswith("_torch") or name not in targets:
        continue
    v = statistics.median(r["value"] for r in rs)
    t = rows.get(name + "_torch")
    d = {"bench": name, "value": v, "unit": rs[0]["unit"], "device": rs[0].get("device")}
    if t:
        tv = statistics.median(r["value"] for r in t)
        d["torch"] = tv
        d["ratio_vs_torch"] = round(v / tv, 3) if tv > 0 else None
    else:
        d["torch"] = None
        d["ratio_vs_torch"] = None
    d["target"] = targets[name]
    print(json.dumps(d))
PY
