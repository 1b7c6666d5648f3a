#!/bin/sh
# tests/ddp/nnm_train_ddp.sh MPIEXEC NNM FIXTURE WORKDIR - `nnm train` on 2
# ranks (detected from mpirun's environment) against one process: rank 0
# alone prints (one line per epoch, one final line) and writes checkpoints,
# the output states the global batch, and 2 ranks x batch 16 end within
# 1e-6 of one process at batch 32 on the same data: the ranks' shards of a
# seeded epoch are, batch by batch, the single process's global batch.
set -u
mpiexec=$1 nnm=$2 fixture=$3 work=$4
rm -rf "$work"
mkdir -p "$work"
fails=0
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fails=$((fails + 1)); }

"$fixture" data "$work" || { echo "FAIL: fixtures"; exit 1; }
m=$work/mlp.json

if "$mpiexec" -np 2 "$nnm" train "$m" --epochs 2 --batch-size 16 --threads 1 --out "$work/ddp" \
     >"$work/ddp.out" 2>"$work/ddp.err"; then
  cat "$work/ddp.out"
  grep -q '^data parallel: 2 ranks over mpi, global batch 2 x 16 = 32 (batch 16 per rank)$' "$work/ddp.out" &&
    ok "the output states the global batch" || bad "no global batch line"
  [ "$(grep -c '^epoch [0-9]/2: train loss' "$work/ddp.out")" = 2 ] && ok "one line per epoch (rank 0 alone)" || bad "epoch lines"
  [ "$(grep -c '^test accuracy: ' "$work/ddp.out")" = 1 ] && ok "one final line" || bad "final lines"
  [ -f "$work/ddp/last.safetensors" ] && ok "rank 0 wrote the checkpoint" || bad "no checkpoint"
else
  bad "mpirun nnm train failed: $(cat "$work/ddp.err")"
fi

if "$nnm" train "$m" -q --epochs 2 --batch-size 32 --threads 1 --out "$work/one" >"$work/one.out" 2>&1; then
  if "$nnm" weights diff "$work/ddp/last.safetensors" "$work/one/last.safetensors" --atol 1e-6 >"$work/diff.out" 2>&1; then
    ok "2 ranks x 16 == 1 process x 32 within 1e-6: $(tail -n 1 "$work/diff.out")"
  else
    bad "2 ranks x 16 differ from 1 x 32: $(head -n 5 "$work/diff.out")"
  fi
else
  bad "single-process train failed: $(cat "$work/one.out")"
fi

# --ddp with a comm that is not there fails with a message, before training
"$nnm" train "$m" --epochs 1 --ddp nosuch >"$work/bad.out" 2>&1
rc=$?
[ $rc = 1 ] && grep -q "nnm_comm_nosuch.so" "$work/bad.out" && ok "--ddp nosuch: $(head -n 1 "$work/bad.out")" || bad "--ddp nosuch: rc $rc: $(cat "$work/bad.out")"

[ $fails = 0 ] && echo "all ok" || echo "$fails failed"
exit $fails
