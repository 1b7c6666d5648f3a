#!/usr/bin/env bash
# bench/bench_transformer.sh - transformer_encoder_layer (d_model 256, nhead 8,
# seq 128, batch 8; forward in eval under no_grad, forward + backward in train
# mode) in nnmod and in PyTorch 1.13, one thread each, in one run.
#
#   bench/bench_transformer.sh [build-dir] [reps]   (default: build, 7; built already)
#
# Runs ROUNDS rounds (NNM_BENCH_ROUNDS, default 3) of the C bench then the
# PyTorch twin, so that load from elsewhere on the machine hits both alike,
# and prints every program's lines, then per bench the median over rounds of
# the wall time ("value", ms) and of the process CPU time ("cpu_ms": a loaded
# machine deschedules the process, and CPU time does not count that), and
# the ratios nnmod / PyTorch on CPU time (target <= 1):
#   transformer_encoder_layer_fwd_vs_torch           vs 1.13's math path
#   transformer_encoder_layer_fwd_bwd_vs_torch
#   transformer_encoder_layer_fwd_causal_vs_torch    a causal mask, vs the math path
#   transformer_encoder_layer_fwd_vs_torch_fastpath  vs its fused eval fast
#                                                    path (batch_first=True)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
reps=${2:-7}
rounds=${NNM_BENCH_ROUNDS:-3}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
bin="$build/bin/bench_transformer"
[ -x "$bin" ] || { echo "bench_transformer: build $bin first (cmake --build $build --target bench_transformer)" >&2; exit 1; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for _ in $(seq "$rounds"); do
  "$bin" "$reps" | tee -a "$out"
  /usr/bin/python3 "$root/bench/bench_transformer_torch.py" "$reps" | tee -a "$out"
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    rows.setdefault(d["bench"], []).append(d)
med = {}
for name, rs in rows.items():
    med[name] = (statistics.median(r["value"] for r in rs), statistics.median(r["cpu_ms"] for r in rs))
    print(json.dumps({"bench": name + "_median", "value": round(med[name][0], 3), "unit": "ms",
                      "cpu_ms": round(med[name][1], 3), "rounds": len(rs), "threads": 1}))
for mine, theirs, label in (("fwd", "fwd", "fwd_vs_torch"), ("fwd_bwd", "fwd_bwd", "fwd_bwd_vs_torch"),
                            ("fwd_causal", "fwd_causal", "fwd_causal_vs_torch"),
                            ("fwd", "fwd_fastpath", "fwd_vs_torch_fastpath")):
    a, b = med.get("transformer_encoder_layer_" + mine), med.get("torch_transformer_encoder_layer_" + theirs)
    if a and b:
        print(json.dumps({"bench": "transformer_encoder_layer_" + label, "value": round(a[1] / b[1], 3),
                          "unit": "ratio (cpu time)", "wall_ratio": round(a[0] / b[0], 3), "target": "<= 1"}))
PY
