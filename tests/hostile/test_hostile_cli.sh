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

# non-finite data: refused by default, naming the file and the sample; the
# flag and the section key let it through
run "$nnm" train "$m" -q --epochs 1 --threads 1 --test "$work/nan-test.safetensors"
expect_fail "NaN in the test inputs" "nan-test.safetensors" "inputs 'inputs'" "sample 7 holds NaN" "--allow-nonfinite"
run "$nnm" eval "$m" --weights "$ck" --test "$work/nan-test.safetensors"
expect_fail "NaN in the test inputs (eval)" "nan-test.safetensors" "sample 7 holds NaN"
run "$nnm" eval "$m" --weights "$ck" --test "$work/nan-test.safetensors" --allow-nonfinite --mean 0 --std 1
[ $rc = 0 ] && ok "--allow-nonfinite lets NaN data through" || bad "--allow-nonfinite: $(cat "$work/err")"

# ---- memory before refusal -----------------------------------------------------------
# every case runs under "$fx" rss, which reads the command's peak resident
# memory from wait4; the bound is the same command's peak on good data plus
# 64 MiB (the bombs below would take gigabytes), so a loaded or slow machine
# cannot fail it
"$fx" rss "$work/rss" "$nnm" train "$m" -q --epochs 1 --limit 64 --test-limit 32 --threads 1
read -r base_rc base_kib <"$work/rss"
[ "$base_rc" = 0 ] || bad "the baseline run under rss failed ($base_rc)"
limit_kib=$((base_kib + 65536))
# peak NAME NEEDLE... : runs the last prepared command line ($cmd) under rss
peak() {
  name=$1
  shift
  # shellcheck disable=SC2086 # word splitting of $cmd is intended (no spaces in paths here)
  "$fx" rss "$work/rss" $cmd 2>"$work/err" >/dev/null
  read -r rc kib <"$work/rss"
  if [ "$kib" -gt "$limit_kib" ]; then
    bad "$name: peak $((kib / 1024)) MiB, over the $((limit_kib / 1024)) MiB bound"
    return
  fi
  expect_fail "$name (peak $((kib / 1024)) MiB, bound $((limit_kib / 1024)) MiB)" "$@"
}
# a 4.5 MB gzip that inflates to 4.8 GB, its header declaring 6000 28x28 images:
# the stream is read one byte past the declared 4.7 MB
"$fx" bomb "$work/bomb6000.idx.gz" 6000 4600 && "$fx" labels "$work/labels6000.idx" 6000 || bad "bomb fixtures"
cmd="$nnm train $m -q --epochs 1 --train $work/bomb6000.idx.gz,$work/labels6000.idx"
peak "gzip bomb past its header" "bomb6000.idx.gz" "trailing bytes"
# the same bomb declaring 6,100,000 images (4.8 GB): over the 4 GiB default,
# refused on the headers; and with a labels bomb of the same count
"$fx" bomb "$work/bomb6m.idx.gz" 6100000 4600 && "$fx" bomb "$work/labels6m.idx.gz" 6100000 6 labels || bad "bomb fixtures"
cmd="$nnm train $m -q --epochs 1 --train $work/bomb6m.idx.gz,$work/labels6m.idx.gz"
peak "gzip bomb over the limit" "bomb6m.idx.gz" "over the limit of 4294967296 bytes" "--max-data-bytes" "nothing was read"
# a labels bomb: 4e9 labels declared for 300 samples, refused on the headers
"$fx" bomb "$work/labels4g.idx.gz" 4000000000 4600 labels || bad "bomb fixtures"
cmd="$nnm train $m -q --epochs 1 --train $work/train-images.idx.gz,$work/labels4g.idx.gz"
peak "labels bomb" "train-images.idx.gz" "labels4g.idx.gz holds 4000000000 targets"
# the limit raised (flag), the header declaring 7,340,032 images (5.75 GB) but
# the stream holding 1 GiB: the stream is checked before any memory goes to it
"$fx" bomb "$work/cut.idx.gz" 7340032 1000 && "$fx" bomb "$work/labels7m.idx.gz" 7340032 7 labels || bad "bomb fixtures"
cmd="$nnm train $m -q --epochs 1 --max-data-bytes 100000000000 --train $work/cut.idx.gz,$work/labels7m.idx.gz"
peak "truncated stream under a raised limit" "cut.idx.gz" "truncated"
# 12 bytes declaring 10^8 samples of no values (with as many labels)
"$fx" bomb "$work/labels1e8.idx.gz" 100000000 96 labels || bad "bomb fixtures"
cmd="$nnm train $m -q --epochs 1 --max-data-bytes 100000000000 --train $work/zero-width.idx,$work/labels1e8.idx.gz"
peak "10^8 samples of width 0" "zero-width.idx" "samples of no values"
# the limit from the section, named in the refusal
sed 's/"seed": 5}/"seed": 5, "max_data_bytes": 1000}/' "$m" >"$work/small_limit.json"
run "$nnm" train "$work/small_limit.json" -q --epochs 1
expect_fail "training.max_data_bytes" "train-images.idx.gz" "over the limit of 1000 bytes"
run "$nnm" train "$m" -q --epochs 1 --max-data-bytes 0
[ $rc = 2 ] && grep -qF -- "--max-data-bytes" "$work/err" && ok "--max-data-bytes 0: usage error" ||
  bad "--max-data-bytes 0: status $rc"

# ---- a comm plugin that never answers --------------------------------------------------
if [ -n "$comm_dir" ]; then
  for c in hx_hang hx_hang_notest; do
    NNM_COMM_TIMEOUT=1 "$nnm" --plugins "$comm_dir" train "$m" -q --epochs 1 --threads 1 --ddp "$c" >"$work/out" 2>"$work/err"
    rc=$?
    expect_fail "nnm train --ddp $c (never completes), NNM_COMM_TIMEOUT=1" "comm '$c' rank 0 of 1" "timed out after 1 s" "NNM_COMM_TIMEOUT"
  done
fi

# ---- nnm run with hostile weights and input files (session 9) ------------------------
seeds=$(dirname "$0")/../fuzz/corpus_safetensors
for c in "dup_key:duplicate key '0.weight'" "truncated:run past the end of the data section" \
         "header_past_eof:runs past the end of the file" "overlap:overlap tensor 'weight'" \
         "huge_header:exceeds the limit"; do
  f=${c%%:*}
  run "$nnm" run "$m" --weights "$seeds/$f.safetensors" --input 1x64
  expect_fail "run --weights $f" "$f.safetensors" "${c#*:}"
  run "$nnm" run "$m" --no-weights --input-file "$seeds/$f.safetensors"
  expect_fail "run --input-file $f" "$f.safetensors" "${c#*:}"
done
run "$nnm" run "$m" --weights "$seeds/shape_mismatch.safetensors" --input 1x64
expect_fail "run --weights of another model" "shape_mismatch.safetensors" "missing key(s): 'fc1.weight'"
run "$nnm" run "$m" --no-weights --input-file "$seeds/all_dtypes.safetensors:i64"
expect_fail "run --input-file of i64 into linear" "fc1 (linear)"
run "$nnm" run "$m" --no-weights --input 9223372036854775807x64
[ $rc = 2 ] && grep -qF -- "over 2^28 elements" "$work/err" && ok "run --input of 2^63 rows: usage error" ||
  bad "run --input of 2^63 rows: status $rc: $(head -c 300 "$work/err")"

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
