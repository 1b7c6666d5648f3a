#!/bin/sh
# tests/hostile/test_hostile_cli.sh NNM FIXTURE WORKDIR [COMM_PLUGIN_DIR]
#
# Issue 19: the inputs of nnm train, eval and predict tried from outside. Each
# case is one class of the issue: a crash (the exit status is checked: 1, never
# a signal), memory before refusal (peak RSS of the command through wait4),
# counters from checkpoints, a comm plugin that never answers, silent garbage,
# terminal bytes, vague refusals. Every refusal must name the file (or the
# flag, or the manifest key) and the sample or tensor. No timing assertions.
set -u
nnm=$1
fx=$2
work=$3
comm_dir=${4:-}
rm -rf "$work"
mkdir -p "$work"
fails=0
ok() { echo "ok: $1"; }
bad() {
  echo "FAIL: $1"
  fails=$((fails + 1))
}
# expect_fail NAME NEEDLE... : the last command's status ($rc) is 1 and its
# stderr ($work/err) holds every NEEDLE (fixed strings)
expect_fail() {
  name=$1
  shift
  if [ "$rc" != 1 ]; then
    bad "$name: exit status $rc (want 1): $(head -c 600 "$work/err")"
    return
  fi
  for needle in "$@"; do
    if ! grep -qF -- "$needle" "$work/err"; then
      bad "$name: no '$needle' in: $(head -c 600 "$work/err")"
      return
    fi
  done
  ok "$name: $(head -n 1 "$work/err")"
}
run() {
  "$@" >"$work/out" 2>"$work/err"
  rc=$?
}

"$fx" data "$work" || { echo "FAIL: fixtures"; exit 1; }
m=$work/mlp.json
run "$nnm" train "$m" -q --epochs 1 --out "$work/run" --threads 1
[ $rc = 0 ] || { echo "FAIL: the baseline training run: $(cat "$work/err")"; exit 1; }
ck=$work/run/last.safetensors

# ---- crashes ------------------------------------------------------------------
# an input_shape whose product wraps to 0 (was SIGFPE in nnm predict)
run "$nnm" predict "$work/wrap.json" --weights "$ck" --idx "$work/test-images.idx" --index 0
expect_fail "input_shape wrapping to 0 (predict)" "wrap.json" "training.input_shape" "2^40"
run "$nnm" train "$m" --input-shape 4294967296x4294967296
[ $rc = 2 ] && grep -qF -- "--input-shape" "$work/err" && ok "--input-shape wrapping: usage error" ||
  bad "--input-shape wrapping: status $rc: $(cat "$work/err")"
# a target of 2^63 - 1 (was a signed overflow computing the class count)
run "$nnm" eval "$m" --weights "$ck" --test "$work/bad-label.safetensors"
expect_fail "huge i64 target" "bad-label.safetensors" "targets 'targets'" "sample 3" "9223372036854775807"

# ---- counters from checkpoints -------------------------------------------------
for e in 9223372036854775808 18446744073709551615 -1 1e3 ""; do
  "$fx" meta "$ck" "$work/ck.safetensors" "epoch=$e" || bad "meta"
  run "$nnm" train "$m" -q --epochs 2 --threads 1 --resume "$work/ck.safetensors"
  if [ -z "$e" ]; then
    expect_fail "resume without an epoch" "ck.safetensors" "no 'epoch'"
  else
    expect_fail "resume at epoch '$e'" "ck.safetensors" "metadata 'epoch'"
  fi
done
"$fx" meta "$ck" "$work/ck.safetensors" "epoch=1" "best_epoch=7"
run "$nnm" train "$m" -q --epochs 2 --threads 1 --resume "$work/ck.safetensors"
expect_fail "best_epoch after epoch" "ck.safetensors" "'best_epoch' 7"
"$fx" meta "$ck" "$work/ck.safetensors" "best_metric=nan"
run "$nnm" train "$m" -q --epochs 2 --threads 1 --resume "$work/ck.safetensors"
expect_fail "best_metric nan" "ck.safetensors" "'best_metric'"
"$fx" meta "$ck" "$work/ck.safetensors" "seed=5x"
run "$nnm" train "$m" -q --epochs 2 --threads 1 --resume "$work/ck.safetensors"
expect_fail "seed not a number" "ck.safetensors" "'seed'"
for kv in input_scale=-1 input_std=1e-300 input_std=0 input_mean=nan input_mean=1e300; do
  "$fx" meta "$ck" "$work/ck.safetensors" "$kv"
  run "$nnm" eval "$m" --weights "$work/ck.safetensors"
  expect_fail "checkpoint $kv (eval)" "ck.safetensors" "${kv%%=*}"
  run "$nnm" predict "$m" --weights "$work/ck.safetensors" --idx "$work/test-images.idx" --index 1
  expect_fail "checkpoint $kv (predict)" "ck.safetensors" "${kv%%=*}"
done
"$fx" meta "$ck" "$work/ck.safetensors" "input_std="
run "$nnm" eval "$m" --weights "$work/ck.safetensors"
expect_fail "checkpoint without input_std" "ck.safetensors" "no 'input_std'"

# ---- silent garbage ------------------------------------------------------------
run "$nnm" predict "$m" --weights "$ck" --input-file "$work/nan-input.safetensors:inputs"
expect_fail "predict on an infinite input" "nan-input.safetensors" "'inputs'" "sample 0" "infinity"
# ignored targets (-100): counted, said, and out of the accuracy
run "$nnm" eval "$m" --weights "$ck" --test "$work/ignored.safetensors"
if [ $rc = 0 ] && grep -q "^ignored: 25 samples have target -100" "$work/out" &&
  grep -q "^samples: 100$" "$work/out"; then
  ok "eval: ignored targets counted and said"
else
  bad "eval with ignored targets (rc $rc): $(cat "$work/out" "$work/err" | head -n 5)"
fi
# the accuracy is over the 75 samples that have a class: the confusion matrix sums to 75
sum=$(awk '/^ *[0-9]+ c[0-9]/ { for (i = 3; i <= NF; i++) s += $i } END { print s }' "$work/out")
[ "$sum" = 75 ] && ok "eval: the confusion matrix counts the 75 samples with a class" ||
  bad "eval: confusion matrix sums to '$sum', want 75"

# ---- terminal bytes ----------------------------------------------------------------
esc=$(printf '\033')
del=$(printf '\177')
c1=$(printf '\302\233')
raw_control() { LC_ALL=C grep -q -e "$esc" -e "$del" -e "$c1" "$@"; }
em="$work/esc${esc}[31mred.json"
cp "$m" "$em"
run "$nnm" train "$em" --epochs 1 --limit 64 --test-limit 32 --threads 1
if [ $rc = 0 ] && ! raw_control "$work/out" "$work/err" && grep -qF 'esc\x1b[31mred.json' "$work/out"; then
  ok "train: an ESC in the manifest path is escaped in the model line"
else
  bad "train with an ESC in the manifest path (rc $rc): $(head -n 2 "$work/out" | od -c | head -n 4)"
fi
run "$nnm" eval "$work/del_names.json" --weights "$ck"
if [ $rc = 0 ] && ! raw_control "$work/out" "$work/err" && grep -qF 'c0\x7f' "$work/out"; then
  ok "eval: DEL, C1 and ESC in class names are escaped"
else
  bad "eval with control bytes in class names (rc $rc): $(od -c "$work/out" | head -n 8)"
fi
run "$nnm" predict "$work/del_names.json" --weights "$ck" --idx "$work/test-images.idx" --index 0 --top 10
if [ $rc = 0 ] && ! raw_control "$work/out" "$work/err" && grep -qF 'c1\xc2\x9b31m' "$work/out"; then
  ok "predict: DEL, C1 and ESC in class names are escaped"
else
  bad "predict with control bytes in class names (rc $rc): $(od -c "$work/out" | head -n 8)"
fi
run "$nnm" validate "$em"
[ $rc = 0 ] && ! raw_control "$work/out" "$work/err" && ok "validate: the path is escaped" ||
  bad "validate with an ESC in the path (rc $rc)"
rm -f "$em"

echo "$fails failure(s)"
[ $fails = 0 ]
