#!/bin/sh
# bench_embedding_bag.sh BUILD_DIR [REPS] [ROUNDS]: nnmod's embedding_bag
# (bench_embedding_bag) and PyTorch's nn.EmbeddingBag
# (bench_embedding_bag_torch.py) in one run, one thread each, alternating
# ROUNDS times (default 3) so both sides see the same machine load; then, per
# benchmark, the median over the rounds of each side, of the wall time
# ("value") and of the process CPU time ("cpu_ms": a loaded machine
# deschedules the process, and CPU time does not count that), and the ratio
# nnmod / torch on CPU time ("value"; "wall_ratio" on wall time; below 1:
# nnmod is faster). JSON lines.
set -eu
build=${1:-build} reps=${2:-7} rounds=${3:-3}
here=$(dirname "$0")
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
out=$(mktemp)
i=0
while [ "$i" -lt "$rounds" ]; do
    "$build/bin/bench_embedding_bag" "$reps" >>"$out"
    /usr/bin/python3 "$here/bench_embedding_bag_torch.py" "$reps" >>"$out"
    i=$((i + 1))
done
/usr/bin/python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
runs = {}
for r in rows:
    runs.setdefault((r["bench"], r["impl"]), []).append((r["value"], r["cpu_ms"]))
med = {}
for (name, impl), v in sorted(runs.items()):
    med[(name, impl)] = (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
    print(json.dumps({"bench": name, "impl": impl, "value": round(med[(name, impl)][0], 3), "unit": "ms",
                      "cpu_ms": round(med[(name, impl)][1], 3), "rounds_cpu_ms": [round(x[1], 2) for x in v],
                      "num_embeddings": 100000, "dim": 64, "bags": 512, "mean_bag": 20, "threads": 1}))
for name in sorted({n for n, _ in med}):
    if (name, "nnmod") in med and (name, "torch") in med:
        a, b = med[(name, "nnmod")], med[(name, "torch")]
        print(json.dumps({"bench": name + "_nnmod_over_torch", "value": round(a[1] / b[1], 3),
                          "unit": "x (cpu time)", "wall_ratio": round(a[0] / b[0], 3), "target": "<= 1"}))
PY
rm -f "$out"
