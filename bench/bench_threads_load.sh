#!/bin/sh
# bench/bench_threads_load.sh [LIMIT [ROUNDS [BUSY]]] - the 2-thread path
# when a core is not ours: `nnm train` on the Fashion CNN (LIMIT samples,
# default 6400) at --threads 1 and 2 while BUSY (default 1) busy loops run
# beside it, each in a session of its own (another user's job: with
# scheduler autogroups each session gets an equal share of the cores, so
# nnmod's two threads get about one core between them), as it is (fixed)
# and with the cpu backend's contention windows on (adaptive:
# NNM_CPU_THREADS_ADAPT=1), ROUNDS times interleaved (default 3). nnm runs
# unboosted, as a user's would. Prints every run, then per mode:
#   threads_busy_<mode>   median samples/s at 1 and 2 threads and their ratio
#                         (value: 2 threads over 1; the goal is never much below 1)
# BUSY 0: no busy loops (the machine's own load only).
#   threads_busy_load     the 1-minute load average before and after
# Needs a build (build/bin/nnm, or NNM_BUILD_DIR) and the Fashion-MNIST data.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
nnm=${NNM_BUILD_DIR:-$root/build}/bin/nnm
limit=${1:-6400}
rounds=${2:-3}
busy=${3:-1}
manifest=$root/examples/manifests/fashion_cnn.json
tmp=$(mktemp -d)
pids=
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
load() { cut -d' ' -f1 /proc/loadavg; }
load0=$(load)
i=0
while [ "$i" -lt "$busy" ]; do
  setsid sh -c 'while :; do :; done' &
  pids="$pids $!"
  i=$((i + 1))
done
sleep 1
r=0
while [ "$r" -lt "$rounds" ]; do
  r=$((r + 1))
  for adapt in 1 0; do
    for t in 1 2; do
      out=$(NNM_CPU_THREADS_ADAPT=$adapt OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t \
        "$nnm" train "$manifest" --epochs 1 --limit "$limit" --test-limit 100 --threads "$t" 2>&1) || {
        echo "$out" >&2
        exit 1
      }
      v=$(echo "$out" | sed -n 's/^epoch .* \([0-9][0-9]*\) samples\/s.*/\1/p')
      c=$(echo "$out" | sed -n 's/^epoch .* samples\/s, [0-9.]* s (cpu \([0-9.]*\) s).*/\1/p')
      echo "{\"bench\": \"threads_busy_run\", \"adapt\": $adapt, \"threads\": $t, \"value\": ${v:-0}, \"unit\": \"samples/s\", \"cpu_s\": ${c:-0}, \"round\": $r}"
      echo "${v:-0}" >>"$tmp/a${adapt}_t$t"
    done
  done
done
med() { sort -n "$1" | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
for adapt in 1 0; do
  a=$(med "$tmp/a${adapt}_t1") b=$(med "$tmp/a${adapt}_t2")
  mode=adaptive
  [ "$adapt" = 0 ] && mode=fixed
  awk -v a="$a" -v b="$b" -v m="$mode" -v n="$busy" -v r1="$(paste -sd, "$tmp/a${adapt}_t1")" -v r2="$(paste -sd, "$tmp/a${adapt}_t2")" 'BEGIN { printf "{\"bench\": \"threads_busy_%s\", \"value\": %.3f, \"unit\": \"x\", \"t1\": %d, \"t2\": %d, \"t1_runs\": [%s], \"t2_runs\": [%s], \"busy_loops\": %d, \"note\": \"nnm train fashion_cnn at 2 threads over 1 thread, medians, beside busy loops in sessions of their own (%s: NNM_CPU_THREADS_ADAPT=%s)\"}\n", m, (a > 0 ? b / a : 0), a, b, r1, r2, n, m, (m == "fixed" ? "0" : "1") }'
done
echo "{\"bench\": \"threads_busy_load\", \"loadavg_before\": $load0, \"loadavg_after\": $(load), \"cores\": $(getconf _NPROCESSORS_ONLN), \"note\": \"1-minute load average, the busy loops included\"}"
