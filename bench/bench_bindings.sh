#!/usr/bin/env bash
# bench/bench_bindings.sh - one small module call (ReLU, and Linear(16, 16), on
# a [4, 16] input, grad mode off, output released) from C, Rust and Go, in one
# run.
#
#   bench/bench_bindings.sh [build-dir]      (default: build; built already)
#
# Builds the Rust (cargo --release) and Go twins against the build tree, then
# runs ROUNDS rounds (NNM_BENCH_ROUNDS, default 5) of C, Rust, Go one after
# the other, so that load from elsewhere on the machine hits all three alike.
# Times are process CPU time per call ("value"; the process is often
# descheduled on a loaded machine, and CPU time does not count that) with the
# wall time beside it ("wall"). Prints JSON lines: each program's line per
# round, then per module and language the median over rounds, and the
# comparisons (on CPU time) with their targets:
#   bindings_call_rust_vs_c   Rust / C          (target <= 1.05)
#   bindings_call_go_minus_c  Go - C, in ns     (target <= 150), for
#   bindings_call_go_into_minus_c   Module.Forward and Module.ForwardInto
# The Python twin (PyTorch comparison) is bindings/python's.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
rounds=${NNM_BENCH_ROUNDS:-5}
iters=${NNM_BENCH_ITERS:-20000}
reps=${NNM_BENCH_REPS:-15}

export PKG_CONFIG_PATH="$build/lib/pkgconfig" LD_LIBRARY_PATH="$build/lib"
# one BLAS thread: its spinning helpers would count as CPU time of the call
export OPENBLAS_NUM_THREADS=1
export GOPATH="$build/go/path" GOCACHE="$build/go/cache" GOPROXY=off GOFLAGS=-mod=mod GOTOOLCHAIN=local
c_bin="$build/bin/bench_bindings_c"
[ -x "$c_bin" ] || { echo "bench_bindings: build $c_bin first (cmake --build $build)" >&2; exit 1; }
CARGO_TARGET_DIR="$build/bench/bindings-rust" cargo build --offline --release --quiet \
  --manifest-path "$root/bench/bindings/rust/Cargo.toml" >&2
rust_bin="$build/bench/bindings-rust/release/bench_bindings_rust"
(cd "$root/bench/bindings/go" && go build -o "$build/bench/bench_bindings_go" .) >&2
go_bin="$build/bench/bench_bindings_go"

out=$(mktemp)
trap 'rm -f "$out"' EXIT
for _ in $(seq "$rounds"); do
  for module in relu linear; do
    for b in "$c_bin" "$rust_bin" "$go_bin"; do
      "$b" "$module" "$iters" "$reps" | tee -a "$out"
    done
  done
done
python3 - "$out" "$(nproc)" "$(cut -d' ' -f1 /proc/loadavg)" <<'PY'
import json, statistics, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by, wall = {}, {}
for l in lines:
    by.setdefault((l["module"], l["lang"]), []).append(l["value"])
    wall.setdefault((l["module"], l["lang"]), []).append(l["wall"])
for module in ("relu", "linear"):
    langs = ("c", "rust", "go", "go_into")
    med = {lang: statistics.median(by[(module, lang)]) for lang in langs}
    wmed = {lang: statistics.median(wall[(module, lang)]) for lang in langs}
    extra = {"module": module, "rounds": len(by[(module, "c")]), "cpus": int(sys.argv[2]),
             "loadavg_1m": float(sys.argv[3])}
    for k in langs:
        print(json.dumps({"bench": "bindings_call_median", "lang": k, "value": round(med[k], 1),
                          "unit": "ns", "clock": "process_cpu", "wall": round(wmed[k], 1), **extra}))
    print(json.dumps({"bench": "bindings_call_rust_vs_c", "value": round(med["rust"] / med["c"], 3),
                      "unit": "ratio", "target": "<= 1.05", **extra}))
    for k in ("go", "go_into"):
        print(json.dumps({"bench": "bindings_call_%s_minus_c" % k, "value": round(med[k] - med["c"], 1),
                          "unit": "ns", "target": "<= 150", **extra}))
PY
