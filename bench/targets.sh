#!/bin/sh
# bench/targets.sh [BUILD_DIR] [--quick] - every target of issue 21 in one run,
# each against PyTorch 1.13 (and libtorch 1.13 where bench_libtorch was built)
# measured in the same run, by the benches that own them:
#   bench_call.sh ITERS all      seq50 with grad (10 us) and under no_grad (5 us);
#                                the call path against libtorch
#   bench_train.sh STEPS 3       the MLP training step against PyTorch and libtorch
#   bench_epoch.sh               `nnm train --threads 1/2` on the Fashion CNN
#                                (NNM_BENCH_MODELS=cnn, NNM_BENCH_LIMIT samples,
#                                3 interleaved rounds, boosted where permitted):
#                                2 threads at least 1.35x 1 thread, and ahead of
#                                PyTorch at 2 threads
#   bench_threads_load.sh LIMIT 3 1  the same at 1 and 2 threads, unboosted, beside a
#                                busy loop in a session of its own: 2 threads at
#                                least 0.9x 1 thread (never much slower)
#   bench_memory.sh STEPS RSTEPS peak resident memory of a training step, Fashion
#                                CNN and resnet18, at or below PyTorch's
#   bench_ddp.sh BUILD 4 3       DDP: 2-rank rate, scaling, hidden share
# Prints one JSON line per target:
#   {"bench": "target_<name>", "value": V, "unit": U, "target": T, "goal": "at least"|"at most",
#    "met": true|false, "vs": "torch 1.13"|"libtorch 1.13", "command": the sub-bench's command,
#    "load": [1-minute load average before, after that sub-bench], ...the figures behind V}
# then targets_summary: how many were met, the load average before and after
# the whole run, and the folder that keeps every sub-bench's own JSON lines
# (NNM_BENCH_LOG_DIR, default a new folder under /tmp). A sub-bench that fails
# or cannot run (no torch, no mpirun) gives its targets "met": null and a
# "skipped" reason. Seconds of wall time: --quick about 2-3 minutes (fewer
# samples and steps, the same rounds), the full run about 5-8 on 2 cores.
#
# Read the figures with the load: on a shared machine wall-clock times swing,
# the ratios (both sides measured in the same run, interleaved) and CPU-time
# figures much less; resident memory not at all. docs/performance.md says
# what each line means and quotes a run.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build
quick=0
for a in "$@"; do
  case $a in
  --quick) quick=1 ;;
  -h | --help)
    sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
  -*) echo "targets.sh: unknown option $a (usage: bench/targets.sh [BUILD_DIR] [--quick])" >&2; exit 2 ;;
  *) build=$a ;;
  esac
done
[ -x "$build/bin/nnm" ] || { echo "targets.sh: no $build/bin/nnm: build first (cmake --build $build)" >&2; exit 2; }
build=$(cd "$build" && pwd)
export NNM_BUILD_DIR="$build"
log=${NNM_BENCH_LOG_DIR:-$(mktemp -d /tmp/nnm-targets.XXXXXX)}
mkdir -p "$log"
load() { cut -d' ' -f1 /proc/loadavg; }
if [ "$quick" = 1 ]; then
  call_iters=100000 train_steps=100 epoch_limit=3200 busy_limit=3200 mem_steps=5 mem_rsteps=1 ddp_steps=2
else
  call_iters=400000 train_steps=200 epoch_limit=12800 busy_limit=6400 mem_steps=20 mem_rsteps=3 ddp_steps=4
fi
load_all0=$(load)

# sub NAME COMMAND...: runs one sub-bench from the source root, its JSON lines
# into $log/NAME.jsonl, its errors into NAME.err, the command and the load
# around it into NAME.meta
sub() {
  name=$1
  shift
  l0=$(load)
  rc=0
  (cd "$root" && "$@") >"$log/$name.jsonl" 2>"$log/$name.err" || rc=$?
  printf '%s\n%s %s\n%s\n' "$*" "$l0" "$(load)" "$rc" >"$log/$name.meta"
}
sub call sh bench/bench_call.sh "$call_iters" all
sub train sh bench/bench_train.sh "$train_steps" 3
sub epoch env NNM_BENCH_MODELS=cnn NNM_BENCH_LIMIT=$epoch_limit NNM_BENCH_ROUNDS=3 sh bench/bench_epoch.sh
sub busy sh bench/bench_threads_load.sh "$busy_limit" 3 1
sub memory sh bench/bench_memory.sh "$mem_steps" "$mem_rsteps"
if command -v mpirun >/dev/null 2>&1; then
  sub ddp sh bench/bench_ddp.sh "$build" "$ddp_steps" 3
else
  printf 'sh bench/bench_ddp.sh %s %s 3\n%s %s\nno mpirun\n' "$build" "$ddp_steps" "$(load)" "$(load)" >"$log/ddp.meta"
  : >"$log/ddp.jsonl"
fi

/usr/bin/env python3 - "$log" "$load_all0" "$(load)" "$(getconf _NPROCESSORS_ONLN)" <<'PY'
import json, os, sys

log, load0, load1, cores = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
torch_v, libtorch_v = "torch 1.13", "libtorch 1.13"


def read(name):
    """The sub-bench's JSON lines by name, its command, load and status."""
    rows = {}
    path = os.path.join(log, name + ".jsonl")
    if os.path.exists(path):
        for line in open(path):
            if line.startswith("{"):
                try:
                    d = json.loads(line)
                except ValueError:
                    continue
                rows.setdefault(d.get("bench"), d)  # the first of a name (the medians come once)
    meta = open(os.path.join(log, name + ".meta")).read().split("\n")
    cmd, loads, rc = meta[0], [float(x) for x in meta[1].split()], meta[2]
    return rows, cmd, loads, rc, name


out = []


def target(name, sub, value, unit, goal, tgt, vs, **kw):
    rows, cmd, loads, rc, _ = sub
    d = {"bench": "target_" + name}
    why = kw.pop("why", None)
    if value is None:
        if rc not in ("0", ""):
            why = "the sub-bench failed (%s; see %s.err in the log folder)" % (rc, sub[4])
        d.update({"value": None, "unit": unit, "target": tgt, "goal": goal, "met": None,
                  "skipped": why or "no figure"})
    else:
        met = value >= tgt if goal == "at least" else value <= tgt
        d.update({"value": round(value, 3), "unit": unit, "target": tgt, "goal": goal, "met": met})
    d.update({"vs": vs, "command": cmd, "load": loads})
    d.update({k: (round(v, 3) if isinstance(v, float) else v) for k, v in kw.items() if v is not None})
    out.append(d)
    print(json.dumps(d))


def val(rows, name, key="value"):
    d = rows.get(name)
    return d.get(key) if d else None


def sides(*pairs):
    """The names of the sides that gave a figure."""
    return ", ".join(name for name, v in pairs if v is not None) or "nothing measured"


def div(a, b):
    return a / b if a is not None and b else None


# --- small models: seq50 with grad / no_grad, the call path
call = read("call")
r = call[0]
for mode, ours, theirs, goal_us in (("grad", "seq50_linear16_relu", "seq50_linear16_relu_grad", 10.0),
                                    ("no_grad", "seq50_linear16_relu_no_grad", "seq50_linear16_relu", 5.0)):
    wall, cpu = val(r, ours), val(r, ours, "cpu_us")
    tw, lw, lc = val(r, "torch_" + theirs), val(r, "libtorch_" + theirs), val(r, "libtorch_" + theirs, "cpu")
    target("seq50_%s_us" % mode, call, cpu, "us/forward (thread CPU time)", "at most", goal_us,
           sides((torch_v, tw), (libtorch_v, lw)), wall_us=wall, torch_us=tw, libtorch_us=lw, libtorch_cpu_us=lc,
           lead_torch=div(tw, wall), lead_libtorch=div(lw, wall), lead_libtorch_cpu=div(lc, cpu),
           note="50 x (Linear(16,16), ReLU) at batch 1, one thread; value: nnmod's thread CPU time per forward "
                "(wall_us: wall time, inflated by load); lead_*: the other side's time over nnmod's")
nn_ns, any_ns, dir_ns = val(r, "call_no_hooks"), val(r, "libtorch_identity_anymodule"), val(r, "libtorch_identity_direct")
target("call_path", call, div(any_ns, nn_ns), "x", "at least", 1.0, libtorch_v,
       why="no libtorch (bench_libtorch not built)" if nn_ns and not any_ns else None,
       nnmod_ns=nn_ns, libtorch_anymodule_ns=any_ns, libtorch_direct_ns=dir_ns,
       torch_python_ns=val(r, "torch_identity_module_call"),
       note="an identity module called through nnm_module_call (hooks checked, modes honoured) against "
            "libtorch's AnyModule::forward (the type-erased call Sequential makes); value: libtorch's ns "
            "over nnmod's. A direct C++ call of Identity::forward (libtorch_direct_ns) has no call path at all")

# --- MLP train step
train = read("train")
r = train[0]
a, b, l = val(r, "train_step_median_nnmod"), val(r, "train_step_median_torch"), val(r, "train_step_median_libtorch")
lead_t, lead_l = div(a, b), div(a, l)
target("mlp_train_step", train, min(x for x in (lead_t, lead_l) if x is not None) if (lead_t or lead_l) else None,
       "x", "at least", 1.0, sides((torch_v, b), (libtorch_v, l)), lead_torch=lead_t, lead_libtorch=lead_l,
       nnmod_samples_s=a, torch_samples_s=b, libtorch_samples_s=l,
       note="MLP 784-256-10, batch 64, SGD momentum, one thread; value: the smaller of nnmod's samples/s "
            "over PyTorch's and over libtorch's (medians of 3 interleaved rounds)")

# --- threads: nnm train --threads 1/2 on the Fashion CNN
epoch = read("epoch")
r = epoch[0]
sc = r.get("epoch_cnn_scaling_t2", {})
target("threads_cnn_scaling", epoch, sc.get("value"), "x", "at least", 1.35, "nnmod at 1 thread",
       torch_scaling=sc.get("torch"), nnmod_t1=val(r, "epoch_cnn_nnmod_t1"), nnmod_t2=val(r, "epoch_cnn_nnmod_t2"),
       nnmod_t1_runs=val(r, "epoch_cnn_nnmod_t1", "runs"), nnmod_t2_runs=val(r, "epoch_cnn_nnmod_t2", "runs"),
       boost=val(r, "epoch_load", "boost"),
       note="nnm train on the Fashion CNN: median samples/s at 2 threads over 1 thread (3 interleaved rounds)")
target("threads_cnn_vs_torch_t2", epoch, val(r, "epoch_cnn_ratio_t2"), "x", "at least", 1.0, torch_v,
       nnmod_t2=val(r, "epoch_cnn_nnmod_t2"), torch_t2=val(r, "epoch_cnn_torch_t2"),
       ratio_t1=val(r, "epoch_cnn_ratio_t1"), boost=val(r, "epoch_load", "boost"),
       note="nnm train over bench/train_torch.py, the same model, data order and batch, both at 2 threads")

busy = read("busy")
r = busy[0]
d = r.get("threads_busy_fixed", {})
target("threads_cnn_busy_core", busy, d.get("value"), "x", "at least", 0.9, "nnmod at 1 thread",
       t1=d.get("t1"), t2=d.get("t2"), t1_runs=d.get("t1_runs"), t2_runs=d.get("t2_runs"),
       adaptive=val(r, "threads_busy_adaptive"),
       note="nnm train on the Fashion CNN, unboosted, beside a busy loop in its own session: median samples/s "
            "at 2 threads over 1 thread (adaptive: the same with the cpu backend's contention windows on, "
            "NNM_CPU_THREADS_ADAPT=1)")

# --- memory
mem = read("memory")
r = mem[0]
for model, key in (("fashion_cnn", "memory_train_step_ratio"), ("resnet18", "memory_train_step_ratio_resnet18")):
    d = r.get(key)
    skipped = (r.get("memory_train_step_" + model) or {}).get("skipped")
    v = d.get("value") if d else None
    peak = d.get("rss_peak_ratio") if d else None
    target("memory_%s" % model, mem, max(v, peak) if v is not None and peak is not None else None, "x", "at most",
           1.0, torch_v, why=skipped, delta_ratio=v, rss_peak_ratio=peak,
           note="peak resident memory of a training step, nnmod over PyTorch: the larger of the step's delta "
                "ratio and the process-peak ratio")

# --- DDP: bench_ddp.sh's own target lines
ddp = read("ddp")
r = ddp[0]
found = False
for name, d in r.items():
    if isinstance(d, dict) and "target" in d and "met" in d and name:
        found = True
        extra = {k: v for k, v in d.items() if k not in ("bench", "value", "unit", "target", "met")}
        target(name, ddp, d["value"], d.get("unit", "x"), "at least", d["target"],
               "torch 1.13 DDP (gloo)", **extra)
if not found:
    target("ddp", ddp, None, "x", "at least", None, "torch 1.13 DDP (gloo)",
           why=(ddp[3] if ddp[3] not in ("0", "") else "no target lines"))

met = sum(1 for d in out if d["met"] is True)
known = sum(1 for d in out if d["met"] is not None)
print(json.dumps({"bench": "targets_summary", "met": met, "measured": known, "targets": len(out),
                  "loadavg_before": load0, "loadavg_after": load1, "cores": cores, "log": log}))
PY
