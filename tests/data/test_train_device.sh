#!/bin/sh
# tests/data/test_train_device.sh NNM FIXTURE WORKDIR - the --device option of
# nnm train, eval, run and predict, and the "device" key of the training
# section (docs/training.md, docs/gpu.md), on the small generated dataset of
# test_train.sh:
#   - parsing: cpu, cpu:0, cuda, cuda:N are accepted; anything else is a usage
#     error (exit 2) naming the value, and a bad "device" in the section is
#     refused by its key (exit 1);
#   - --device cpu (flag or key) trains exactly as no flag: the same last line;
#   - cuda: on a machine without a CUDA device (or without the cuda plugin),
#     every command fails with exit 1 and "nnm CMD: --device cuda:N: <the
#     backend's message>", prints no epoch and writes nothing (no --out
#     directory, no --output file). Where a GPU exists (scripts/gpu-check.sh)
#     the same runs must succeed instead: train's accuracy within 5 points of
#     the CPU run's, eval reproducing train's best accuracy, and run's outputs
#     written.
set -u
nnm=$1
fixture=$2
work=$3
rm -rf "$work"
mkdir -p "$work"
fails=0
ok() { echo "ok: $1"; }
bad() {
  echo "FAIL: $1"
  fails=$((fails + 1))
}

"$fixture" data "$work" || { echo "FAIL: fixtures"; exit 1; }
m=$work/mlp.json
# the same manifest with a "device" key in its training section
with_device() { # VALUE FILE: VALUE is JSON ("\"cuda\"", 3)
  sed "s/\"seed\": 5}}/\"seed\": 5, \"device\": $1}}/" "$m" >"$2"
  grep -q '"device"' "$2" || { echo "FAIL: could not add a device key to $m"; exit 1; }
}
# expect_usage WHAT ARGS...: exit 2 and stderr naming the bad value
expect_usage() {
  what=$1
  shift
  "$nnm" "$@" >"$work/u.out" 2>"$work/u.err"
  rc=$?
  if [ $rc = 2 ] && grep -q "expected cpu, cuda or cuda:N\|expected \"cpu\", \"cuda\" or \"cuda:N\"" "$work/u.err" &&
    grep -q "$what" "$work/u.err"; then
    ok "usage error: $(head -n 1 "$work/u.err")"
  else
    bad "nnm $* (rc $rc, want 2): $(cat "$work/u.err")"
  fi
}

# 1. parsing
for v in gpu cuda: cuda:x cuda:-1 cuda:1024 CUDA cpu:1 "cuda 0" ""; do
  expect_usage "'$v'" train "$m" --device "$v" --limit 64
done
expect_usage "'mps'" eval "$m" --weights "$work/train.safetensors" --device mps
expect_usage "'tpu'" run "$m" --input 1x64 --device tpu
with_device '"tpu"' "$work/bad_key.json"
"$nnm" train "$work/bad_key.json" --out "$work/bk" >"$work/bk.out" 2>"$work/bk.err"
rc=$?
if [ $rc = 1 ] && grep -q 'training.device: expected "cpu", "cuda" or "cuda:N"' "$work/bk.err" && [ ! -e "$work/bk" ]; then
  ok "a bad device key: $(cat "$work/bk.err")"
else
  bad "device key \"tpu\" (rc $rc): $(cat "$work/bk.err")"
fi
with_device 3 "$work/bad_type.json"
"$nnm" train "$work/bad_type.json" >"$work/bt.out" 2>"$work/bt.err"
rc=$?
if [ $rc = 1 ] && grep -q 'training.device: expected a string' "$work/bt.err"; then
  ok "a device key that is no string: $(cat "$work/bt.err")"
else
  bad "device key 3 (rc $rc): $(cat "$work/bt.err")"
fi
"$nnm" train --help | grep -q -- "--device DEV" && ok "train --help lists --device" || bad "train --help lacks --device"
"$nnm" run --help | grep -q -- "--device DEV" && ok "run --help lists --device" || bad "run --help lacks --device"

# 2. cpu, by flag or key, is the default's run exactly
"$nnm" train "$m" -q --epochs 1 --limit 256 --threads 1 >"$work/c0.out" 2>&1 || bad "train (no device): $(cat "$work/c0.out")"
"$nnm" train "$m" -q --epochs 1 --limit 256 --threads 1 --device cpu >"$work/c1.out" 2>&1 || bad "train --device cpu: $(cat "$work/c1.out")"
with_device '"cpu:0"' "$work/cpu_key.json"
"$nnm" train "$work/cpu_key.json" -q --epochs 1 --limit 256 --threads 1 >"$work/c2.out" 2>&1 || bad "train with \"device\": \"cpu:0\": $(cat "$work/c2.out")"
if grep -q '^test accuracy: ' "$work/c0.out" && cmp -s "$work/c0.out" "$work/c1.out" && cmp -s "$work/c0.out" "$work/c2.out"; then
  ok "--device cpu and \"device\": \"cpu:0\" train as the default: $(cat "$work/c0.out")"
else
  bad "cpu runs differ: '$(cat "$work/c0.out")' '$(cat "$work/c1.out")' '$(cat "$work/c2.out")'"
fi

# 3. cuda: a clean failure without a device, a real run with one
"$nnm" train "$m" --device cuda --epochs 1 --limit 256 --out "$work/g" >"$work/g.out" 2>"$work/g.err"
rc=$?
if [ $rc = 1 ]; then
  # no GPU here: the backend's message, nothing trained, nothing written
  if grep -q "^nnm train: --device cuda:0: " "$work/g.err" && ! grep -q "^epoch" "$work/g.out" && [ ! -e "$work/g" ]; then
    ok "no CUDA device: $(cat "$work/g.err")"
  else
    bad "train --device cuda failed unclearly: $(cat "$work/g.err") / $(cat "$work/g.out")"
  fi
  with_device '"cuda:0"' "$work/cuda_key.json"
  "$nnm" train "$work/cuda_key.json" --epochs 1 --out "$work/gk" >"$work/gk.out" 2>"$work/gk.err"
  rc=$?
  [ $rc = 1 ] && grep -q "^nnm train: --device cuda:0: " "$work/gk.err" && [ ! -e "$work/gk" ] &&
    ok "\"device\": \"cuda:0\" fails the same way" || bad "device key cuda:0 (rc $rc): $(cat "$work/gk.err")"
  "$nnm" train "$m" --device cuda:3 --epochs 1 >"$work/g3.out" 2>"$work/g3.err"
  rc=$?
  [ $rc = 1 ] && grep -q "^nnm train: --device cuda:3: " "$work/g3.err" &&
    ok "cuda:3 is named: $(cat "$work/g3.err")" || bad "--device cuda:3 (rc $rc): $(cat "$work/g3.err")"
  "$nnm" run "$m" --input 2x64 --device cuda --output "$work/o.safetensors" >"$work/r.out" 2>"$work/r.err"
  rc=$?
  [ $rc = 1 ] && grep -q "^nnm run: --device cuda:0: " "$work/r.err" && [ ! -e "$work/o.safetensors" ] &&
    ! grep -q "^output" "$work/r.out" && ok "run --device cuda: $(cat "$work/r.err")" ||
    bad "run --device cuda (rc $rc): $(cat "$work/r.err")"
  "$nnm" train "$m" -q --epochs 1 --limit 256 --threads 1 --out "$work/cpu_run" >/dev/null 2>&1 &&
    "$nnm" eval "$m" --weights "$work/cpu_run/last.safetensors" --device cuda >"$work/e.out" 2>"$work/e.err"
  rc=$?
  [ $rc = 1 ] && grep -q "^nnm eval: --device cuda:0: " "$work/e.err" && ok "eval --device cuda: $(cat "$work/e.err")" ||
    bad "eval --device cuda (rc $rc): $(cat "$work/e.err")"
elif [ $rc = 0 ]; then
  # a GPU: the run trained there; its accuracy is the CPU run's within 5 points
  "$nnm" train "$m" --epochs 1 --limit 256 --threads 1 >"$work/gc.out" 2>&1
  a=$(sed -n 's/^test accuracy: \([0-9.]*\)%$/\1/p' "$work/g.out")
  b=$(sed -n 's/^test accuracy: \([0-9.]*\)%$/\1/p' "$work/gc.out")
  if [ -n "$a" ] && [ -n "$b" ] && awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; exit !(d < 5 && d > -5) }' &&
    grep -q "device cuda:0" "$work/g.out" && [ -f "$work/g/last.safetensors" ]; then
    ok "trained on cuda:0: $a% (cpu $b%)"
  else
    bad "cuda training: '$a' vs cpu '$b': $(cat "$work/g.out")"
  fi
  best=$(sed -n 's/^epoch 1\/1: .*test accuracy \([0-9.]*\)%.*/\1/p' "$work/g.out")
  "$nnm" eval "$m" --weights "$work/g/best.safetensors" --device cuda >"$work/e.out" 2>&1 &&
    [ "$(tail -n 1 "$work/e.out")" = "test accuracy: $best%" ] && ok "eval on cuda: $best%" ||
    bad "eval --device cuda: $(tail -n 3 "$work/e.out"), train's $best%"
  "$nnm" run "$m" --input 2x64 --device cuda --output "$work/o.safetensors" >"$work/r.out" 2>&1 &&
    [ -f "$work/o.safetensors" ] && grep -q "^output 0: shape \[2, 10\]" "$work/r.out" && ok "run on cuda" ||
    bad "run --device cuda: $(cat "$work/r.out")"
else
  bad "train --device cuda: exit $rc: $(cat "$work/g.err")"
fi

echo "$fails failure(s)"
[ $fails = 0 ]
