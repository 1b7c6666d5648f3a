#!/bin/sh
# bench_ddp.sh BUILD_DIR [STEPS]: nnmod DDP (mpi) with 1 and 2 ranks, then
# PyTorch DDP (gloo) the same, in one run; then the scaling ratios. One BLAS
# thread per rank. Prints JSON lines.
set -eu
build=${1:-build} steps=${2:-4}
here=$(dirname "$0")
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
out=$(mktemp)
for n in 1 2; do
    mpirun -np $n --bind-to none -x OPENBLAS_NUM_THREADS "$build/bin/bench_ddp" "$steps" | tee -a "$out"
done
/usr/bin/python3 "$here/bench_ddp_torch.py" "$steps" | tee -a "$out"
/usr/bin/python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def rate(name, ranks):
    return next(r["value"] for r in rows if r["bench"] == name and r["ranks"] == ranks)
for name, label in (("ddp_step_mlp784_2048_2048_10", "nnmod"), ("ddp_step_mlp784_2048_2048_10_torch", "torch")):
    print(json.dumps({"bench": "ddp_scaling_2_over_1_" + label, "value": round(rate(name, 2) / rate(name, 1), 3), "unit": "x"}))
print(json.dumps({"bench": "ddp_2ranks_nnmod_over_torch", "value": round(rate("ddp_step_mlp784_2048_2048_10", 2) / rate("ddp_step_mlp784_2048_2048_10_torch", 2), 3), "unit": "x"}))
PY
rm -f "$out"
