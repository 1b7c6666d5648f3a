#!/bin/sh
# bench_ddp.sh BUILD_DIR [STEPS [ROUNDS]]: nnmod DDP (mpi) with 1 and 2 ranks
# and PyTorch DDP (gloo) with 1 and 2 ranks, ROUNDS times interleaved (so the
# load of a shared machine weighs on both alike), one BLAS thread per rank.
# Prints every run as a JSON line, then the medians over the rounds: each
# side's rate, the 2-rank rate of nnmod over PyTorch's, each side's scaling
# (2 ranks over 1), nnmod's all-reduce alone, exposed and hidden share, and
# the load average before and after.
#
# bench_ddp.sh BUILD_DIR STEPS ROUNDS sweep: nnmod alone on 2 ranks over the
# bucket caps of NNM_BENCH_SWEEP (default "0:0 1:0.0625 8:1 8:0.0625
# 64:64 0:0:0"; BUCKET_MB:FIRST_BUCKET_MB[:EARLY], 0 = default caps; EARLY=0
# sets NNM_DDP_EARLY_PARTS=0: a large gradient's blocks start with their
# bucket instead of as they are written) with the tuned MPI and the untuned
# one (NNM_MPI_NO_TUNING=1) at the defaults.
set -eu
build=${1:-build} steps=${2:-4} rounds=${3:-3} mode=${4:-}
here=$(dirname "$0")
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
out=$(mktemp)
load() { echo "{\"bench\": \"load\", \"when\": \"$1\", \"loadavg\": \"$(cut -d' ' -f1-3 /proc/loadavg)\", \"cores\": $(getconf _NPROCESSORS_ONLN)}" | tee -a "$out"; }
nnm() { # RANKS LABEL BUCKET_MB FIRST_BUCKET_MB NNM_MPI_NO_TUNING [EARLY]
    NNM_MPI_NO_TUNING=$5 NNM_DDP_EARLY_PARTS=${6:-1} mpirun -np "$1" --bind-to none -x OPENBLAS_NUM_THREADS \
        -x NNM_MPI_NO_TUNING -x NNM_DDP_EARLY_PARTS \
        "$build/bin/bench_ddp" "$steps" "$3" "$4" | sed "s/^{/{\"label\": \"$2\", /" | tee -a "$out"
}
load start
r=1
while [ "$r" -le "$rounds" ]; do
    if [ "$mode" = sweep ]; then
        for cfg in ${NNM_BENCH_SWEEP:-0:0 1:0.0625 8:1 8:0.0625 64:64 0:0:0}; do
            b=${cfg%%:*} rest=${cfg#*:}
            f=${rest%%:*} early=1
            [ "$rest" != "$f" ] && early=${rest#*:}
            nnm 2 "nnmod b=$cfg" "$b" "$f" 0 "$early"
        done
        nnm 2 "nnmod untuned" 0 0 1
    else
        nnm 1 nnmod 0 0 0
        nnm 2 nnmod 0 0 0
        /usr/bin/python3 "$here/bench_ddp_torch.py" "$steps" | sed 's/^{/{"label": "torch", /' | tee -a "$out"
    fi
    r=$((r + 1))
done
load end
/usr/bin/python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
med = statistics.median
def runs(label, ranks):
    return [r for r in rows if r.get("label") == label and r.get("ranks") == ranks]
def out(d):
    print(json.dumps(d))
labels = sorted({r["label"] for r in rows if "label" in r}, key=lambda s: (s != "nnmod", s))
for label in labels:
    for ranks in (1, 2):
        rs = runs(label, ranks)
        if not rs:
            continue
        d = {"bench": "ddp_median", "label": label, "ranks": ranks, "rounds": len(rs),
             "samples_per_s": round(med([r["value"] for r in rs]), 1)}
        if ranks > 1 and "hidden" in rs[0]:
            for k in ("buckets", "allreduce_alone_ms", "allreduce_alone_cpu_ms", "memcpy_ms", "allreduce_gbps",
                      "memcpy_gbps", "exposed_ms", "hidden"):
                if k in rs[0]:
                    d[k] = round(med([r[k] for r in rs]), 2)
        out(d)
for label in labels:
    r1, r2 = runs(label, 1), runs(label, 2)
    if r1 and r2:
        out({"bench": "ddp_scaling_2_over_1", "label": label,
             "value": round(med([b["value"] for b in r2]) / med([a["value"] for a in r1]), 3), "unit": "x"})
n1, n2, t1, t2 = runs("nnmod", 1), runs("nnmod", 2), runs("torch", 1), runs("torch", 2)
# The issue's targets, each per round (same load), then the median over the rounds.
def target(name, ratios, goal, unit="x"):
    v = med(ratios)
    out({"bench": name, "value": round(v, 3), "unit": unit, "target": goal, "met": v >= goal,
         "per_round": [round(x, 3) for x in ratios]})
if n2 and t2:
    target("ddp_2ranks_nnmod_over_torch", [a["value"] / b["value"] for a, b in zip(n2, t2)], 1.15)
if n1 and n2 and t1 and t2:
    target("ddp_scaling_nnmod_over_torch",
           [(a2["value"] / a1["value"]) / (b2["value"] / b1["value"]) for a1, a2, b1, b2 in zip(n1, n2, t1, t2)],
           1.0)
if n2 and "hidden" in n2[0]:
    target("ddp_hidden_share", [r["hidden"] for r in n2], 0.8, "share")
    if "memcpy_ms" in n2[0]:
        out({"bench": "ddp_allreduce_over_memcpy", "value": round(med([r["allreduce_alone_ms"] / r["memcpy_ms"]
                                                                          for r in n2 if r["memcpy_ms"] > 0]), 2),
             "unit": "x", "note": "wall time of the 2-rank all-reduce alone over one core's memcpy of the same bytes"})
PY
rm -f "$out"
