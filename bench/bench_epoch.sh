#!/bin/sh
# bench/bench_epoch.sh [EPOCHS] - one epoch (or EPOCHS) of each Fashion-MNIST
# model with `nnm train` and with PyTorch (bench/train_torch.py: the same model,
# data order, batch size, optimizer and normalisation, a plain DataLoader
# loop), at each thread count of NNM_BENCH_THREADS (default "1 2": nnm train
# --threads N, torch.set_num_threads(N)), in one run. Prints one JSON object
# per line:
#   epoch_<model>_<side>_t<N>   samples/s of that side at N threads: the median
#                               of NNM_BENCH_ROUNDS runs (default 3), all runs
#                               listed, and samples per CPU second
#   epoch_<model>_ratio_t<N>    nnmod over PyTorch at N threads (medians)
#   epoch_<model>_scaling_t<N>  each side at N threads over itself at 1 thread
#   epoch_load                  the 1-minute load average before and after
# Rounds interleave every (side, threads) run, so machine load spreads over
# them alike.
#
# Needs a build (build/bin/nnm, or NNM_BUILD_DIR) and Debian's python3-torch.
# NNM_BENCH_LIMIT=N trains on the first N samples only (both sides), for a
# shorter run; NNM_BENCH_MODELS (default "mlp cnn") picks the models.
# Training throughput includes data loading and excludes evaluation on both
# sides. On a shared machine the figures are noisy, and the N-thread ones are
# pessimistic while the load average exceeds the cores less N: quote the
# ratios of one run with its load.
#
# Boost: each timed run (both sides alike) starts in a session of its own
# whose scheduler autogroup gets nice -20 (`setsid sh -c 'echo -20 >
# /proc/self/autogroup; exec ...'`), where the kernel has autogroups and
# permits it: with autogroups every session shares the cores as one unit and a
# plain `nice` acts only inside one's own, so without this a 2-thread run gets
# about one core's share on a loaded machine. The epoch_load line says
# whether the runs were boosted ("boost"); NNM_BENCH_BOOST=0 runs them plain
# (what a user on a loaded machine gets).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
nnm=${NNM_BUILD_DIR:-$root/build}/bin/nnm
epochs=${1:-1}
py=/usr/bin/python3
threads_list=${NNM_BENCH_THREADS:-1 2}
rounds=${NNM_BENCH_ROUNDS:-3}
models=${NNM_BENCH_MODELS:-mlp cnn}
limit=${NNM_BENCH_LIMIT:-0}
limit_arg=
[ "$limit" -gt 0 ] && limit_arg="--limit $limit"
samples=60000
[ "$limit" -gt 0 ] && samples=$limit
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
load() { cut -d' ' -f1 /proc/loadavg; }
load0=$(load)

boost="none: NNM_BENCH_BOOST=0"
if [ "${NNM_BENCH_BOOST:-1}" != 0 ]; then
  if [ "$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null)" != 1 ]; then
    boost="none: no scheduler autogroups"
  elif setsid -w sh -c 'echo -20 > /proc/self/autogroup' 2>/dev/null; then
    boost="autogroup nice -20"
  else
    boost="none: not permitted to set an autogroup's nice to -20"
  fi
fi
# runs "$@" boosted where it could be, else as it is
run() {
  if [ "$boost" = "autogroup nice -20" ]; then
    setsid -w sh -c 'echo -20 > /proc/self/autogroup && exec "$@"' sh "$@"
  else
    "$@"
  fi
}

# median of the numbers on stdin
med() { sort -n | awk '{v[NR] = $1} END {if (NR) print v[int((NR + 1) / 2)]; else print 0}'; }

for model in $models; do
  manifest=$root/examples/manifests/fashion_$model.json
  [ -f "$manifest" ] || { echo "{\"bench\": \"epoch_$model\", \"skipped\": \"no $manifest\"}"; continue; }
  r=0
  while [ "$r" -lt "$rounds" ]; do
    r=$((r + 1))
    for t in $threads_list; do
      # shellcheck disable=SC2086
      out=$(run env OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t "$nnm" train "$manifest" --epochs "$epochs" --threads "$t" $limit_arg 2>&1) || {
        echo "$out" >&2
        exit 1
      }
      # the epochs' samples/s, averaged over the epochs by their lines
      echo "$out" | sed -n 's/^epoch .* \([0-9][0-9]*\) samples\/s.*/\1/p' |
        awk '{s += $1; n++} END {if (n) printf "%d\n", s / n}' >>"$tmp/nnmod_$t"
      echo "$out" | sed -n 's/^epoch .* samples\/s, [0-9.]* s (cpu \([0-9.]*\) s).*/\1/p' |
        awk -v n="$epochs" -v m="$samples" '{s += $1} END {if (s > 0) printf "%d\n", m * n / s}' >>"$tmp/nnmod_cpu_$t"
      echo "$out" | sed -n 's/^test accuracy: \([0-9.]*\)%$/\1/p' >"$tmp/nnmod_acc"
      # shellcheck disable=SC2086
      theirs=$(run env OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t "$py" "$root/bench/train_torch.py" "$model" --epochs "$epochs" --threads "$t" $limit_arg)
      echo "$theirs" | sed -n 's/.*"bench": "epoch_[a-z]*_torch", "value": \([0-9.]*\),.*/\1/p' >>"$tmp/torch_$t"
      echo "$theirs" | sed -n 's/.*"bench": "epoch_[a-z]*_torch", .*"per_cpu_second": \([0-9.]*\),.*/\1/p' >>"$tmp/torch_cpu_$t"
      echo "$theirs" | sed -n 's/.*"bench": "epoch_[a-z]*_torch_accuracy", "value": \([0-9.]*\),.*/\1/p' >"$tmp/torch_acc"
    done
  done
  t1=
  for t in $threads_list; do
    for side in nnmod torch; do
      m=$(med <"$tmp/${side}_$t")
      c=$(med <"$tmp/${side}_cpu_$t")
      all=$(paste -sd, "$tmp/${side}_$t")
      acc=$(cat "$tmp/${side}_acc")
      echo "{\"bench\": \"epoch_${model}_${side}_t$t\", \"value\": $m, \"unit\": \"samples/s\", \"runs\": [$all], \"per_cpu_second\": $c, \"threads\": $t, \"epochs\": $epochs, \"samples\": $samples, \"test_accuracy\": ${acc:-0}}"
      eval "${side}_m_$t=$m"
    done
    eval "a=\$nnmod_m_$t; b=\$torch_m_$t"
    awk -v a="$a" -v b="$b" -v m="$model" -v t="$t" 'BEGIN { printf "{\"bench\": \"epoch_%s_ratio_t%s\", \"value\": %.2f, \"unit\": \"x\", \"threads\": %s, \"note\": \"nnmod over PyTorch, median samples/s, the same thread count each\"}\n", m, t, (b > 0 ? a / b : 0), t }'
    if [ -z "$t1" ]; then
      t1=$t
    else
      eval "a1=\$nnmod_m_$t1; b1=\$torch_m_$t1"
      awk -v a="$a" -v b="$b" -v a1="$a1" -v b1="$b1" -v m="$model" -v t="$t" -v t1="$t1" 'BEGIN { printf "{\"bench\": \"epoch_%s_scaling_t%s\", \"value\": %.2f, \"unit\": \"x\", \"torch\": %.2f, \"threads\": %s, \"over_threads\": %s, \"note\": \"samples/s at %s threads over the same side at %s (nnmod: value; PyTorch: torch)\"}\n", m, t, (a1 > 0 ? a / a1 : 0), (b1 > 0 ? b / b1 : 0), t, t1, t, t1 }'
    fi
  done
  rm -f "$tmp"/nnmod_* "$tmp"/torch_*
done
echo "{\"bench\": \"epoch_load\", \"loadavg_before\": $load0, \"loadavg_after\": $(load), \"cores\": $(nproc), \"boost\": \"$boost\", \"note\": \"1-minute load average; above the cores less the threads asked for, the multi-thread figures are pessimistic (less so boosted)\"}"
