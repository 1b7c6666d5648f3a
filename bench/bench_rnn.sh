#!/bin/sh
# bench_rnn.sh BUILD_DIR [REPS]: nnmod's lstm and gru (bench_rnn) and
# PyTorch's (bench_rnn_torch.py) in one run, one thread each, then the
# ratios nnmod / torch (below 1: nnmod is faster). Prints JSON lines.
set -eu
build=${1:-build} reps=${2:-7}
here=$(dirname "$0")
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
out=$(mktemp)
"$build/bin/bench_rnn" "$reps" | tee -a "$out"
/usr/bin/python3 "$here/bench_rnn_torch.py" "$reps" | tee -a "$out"
/usr/bin/python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
val = {(r["bench"], r["impl"]): r["value"] for r in rows}
for name in ("lstm_fwd", "lstm_fwd_bwd", "gru_fwd", "gru_fwd_bwd"):
    if (name, "nnmod") in val and (name, "torch") in val:
        print(json.dumps({"bench": name + "_nnmod_over_torch",
                          "value": round(val[(name, "nnmod")] / val[(name, "torch")], 3), "unit": "x"}))
PY
rm -f "$out"
