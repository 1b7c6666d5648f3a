#!/bin/sh
# tests/data/test_train.sh NNM FIXTURE WORKDIR - nnm train, eval and predict
# end to end on a small generated dataset (never the real one): a short run
# beats chance by a wide margin, eval reproduces train's accuracy, a resumed
# run equals an uninterrupted one bit for bit, the trace is valid JSON with
# one span per module call, and a manifest that does not fit the data fails
# before the first step, naming both sizes.
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

# 1. a short run on 1,000 samples: far above chance (10%); --out creates
# missing parents (mkdir -p), as the README's demo needs in a fresh clone
if "$nnm" train "$m" --out "$work/runs/mlp" --threads 1 >"$work/train.out" 2>"$work/train.err"; then
  acc=$(tail -n 1 "$work/train.out" | sed -n 's/^test accuracy: \([0-9.]*\)%$/\1/p')
  if [ -n "$acc" ] && [ "${acc%%.*}" -ge 60 ]; then ok "train: test accuracy $acc%"; else bad "train: last line '$(tail -n 1 "$work/train.out")'"; fi
  [ "$(grep -c '^epoch [0-9]/3: train loss' "$work/train.out")" = 3 ] && ok "train: a plain line per epoch" || bad "train: epoch lines"
  [ -f "$work/runs/mlp/last.safetensors" ] && [ -f "$work/runs/mlp/best.safetensors" ] && ok "train: best and last checkpoints" || bad "train: checkpoints"
else
  bad "train failed: $(cat "$work/train.err")"
fi

# 2. eval on the best checkpoint reproduces the best epoch's accuracy
best=$(sed -n 's/^epoch [0-9]\/3: .*test accuracy \([0-9.]*\)%.*/\1/p' "$work/train.out" | sort -n | tail -n 1)
if "$nnm" eval "$m" --weights "$work/runs/mlp/best.safetensors" >"$work/eval.out" 2>&1; then
  got=$(tail -n 1 "$work/eval.out")
  [ "$got" = "test accuracy: $best%" ] && ok "eval: $got" || bad "eval: '$got', train's best $best%"
  grep -q "^  9 c9 " "$work/eval.out" && ok "eval: confusion matrix with class names" || bad "eval: no class names"
else
  bad "eval failed: $(cat "$work/eval.out")"
fi

# 3. predict one IDX sample, and a safetensors input
if "$nnm" predict "$m" --weights "$work/runs/mlp/best.safetensors" --idx "$work/test-images.idx,$work/test-labels.idx" --index 3 --top 2 >"$work/pred.out" 2>&1; then
  [ "$(grep -c '%$' "$work/pred.out")" = 2 ] && grep -q "^sample 3 (true class" "$work/pred.out" && ok "predict: top 2" || bad "predict: $(cat "$work/pred.out")"
else
  bad "predict failed: $(cat "$work/pred.out")"
fi
if "$nnm" predict "$m" --weights "$work/runs/mlp/best.safetensors" --input-file "$work/train.safetensors:inputs" --top 1 >"$work/pred2.out" 2>&1; then
  [ "$(grep -c '^input [0-9]*:$' "$work/pred2.out")" = 1000 ] && ok "predict: a safetensors batch" || bad "predict --input-file: $(head -n 3 "$work/pred2.out")"
else
  bad "predict --input-file failed: $(cat "$work/pred2.out")"
fi

# 4. resume after epoch 1, then epoch 2 == epochs 1-2 in one go, bit for bit
# (with dropout: its masks replay too)
md=$work/mlp_dropout.json
"$nnm" train "$md" -q --epochs 2 --out "$work/a" --threads 1 >/dev/null 2>&1 &&
  "$nnm" train "$md" -q --epochs 1 --out "$work/b" --threads 1 >/dev/null 2>&1 &&
  "$nnm" train "$md" -q --epochs 2 --out "$work/b" --threads 1 --resume "$work/b/last.safetensors" >/dev/null 2>&1 ||
  bad "resume runs failed"
if "$nnm" weights diff "$work/a/last.safetensors" "$work/b/last.safetensors" >"$work/diff.out" 2>&1; then
  ok "resume: $(cat "$work/diff.out")"
else
  bad "resume differs: $(head -n 5 "$work/diff.out")"
fi

# 4b. a checkpoint of another manifest, or of another seed, is refused by
# name before anything trains (the model would silently change)
if "$nnm" train "$m" -q --epochs 2 --threads 1 --resume "$work/b/last.safetensors" >"$work/other.out" 2>&1; then
  bad "resume with another manifest was accepted"
elif grep -q "written by another manifest" "$work/other.out"; then
  ok "resume refuses another manifest's checkpoint"
else
  bad "resume with another manifest: $(cat "$work/other.out")"
fi
if "$nnm" train "$md" -q --epochs 2 --seed 12345 --threads 1 --resume "$work/b/last.safetensors" >"$work/seed.out" 2>&1; then
  bad "resume with another seed was accepted"
elif grep -q "pass --seed" "$work/seed.out"; then
  ok "resume refuses another seed"
else
  bad "resume with another seed: $(cat "$work/seed.out")"
fi

# 4c. batch norm cannot train on a last batch of one sample (as PyTorch):
# the error names the epoch, the step and the batch, and --drop-last (or
# "drop_last": true in the section) skips that batch
sed -e 's/"relu": "^1.0"}/"relu": "^1.0", "batch_norm1d": "^1.0"}/' \
    -e 's/{"name": "act", "type": "relu"}/{"name": "bn", "type": "batch_norm1d", "config": {"num_features": 32}}, {"name": "act", "type": "relu"}/' \
    "$m" >"$work/mlp_bn.json"
if "$nnm" train "$work/mlp_bn.json" -q --epochs 1 --limit 97 --batch-size 32 --threads 1 >"$work/bn1.out" 2>&1; then
  bad "a last batch of one sample trained through batch norm"
elif grep -q "step 4/4 (a batch of 1, the last partial one; --drop-last skips it)" "$work/bn1.out"; then
  ok "a failed step names its batch"
else
  bad "failed step: $(cat "$work/bn1.out")"
fi
"$nnm" train "$work/mlp_bn.json" -q --epochs 1 --limit 97 --batch-size 32 --drop-last --threads 1 >"$work/bn2.out" 2>&1 &&
  grep -q '^test accuracy: ' "$work/bn2.out" && ok "--drop-last skips the last partial batch" || bad "--drop-last: $(cat "$work/bn2.out")"

# 5. the same data as safetensors trains too (flags override the section)
"$nnm" train "$m" -q --epochs 1 --train "$work/train.safetensors" --threads 1 >"$work/st.out" 2>&1 &&
  grep -q '^test accuracy: ' "$work/st.out" && ok "train on safetensors data" || bad "safetensors data: $(cat "$work/st.out")"

# 5b. a tiny epoch prints no samples/s it cannot time: 3 samples take well
# under 50 ms here, and a rate, where one is shown (a slow sanitizer build),
# is at most the samples over 50 ms
if "$nnm" train "$m" --epochs 1 --limit 3 --threads 1 >"$work/tiny.out" 2>&1; then
  line=$(grep '^epoch 1/1: ' "$work/tiny.out")
  rate=$(echo "$line" | sed -n 's/.*, \([0-9][0-9]*\) samples\/s,.*/\1/p')
  if echo "$line" | grep -q ', 3 samples (too few to time), '; then
    ok "tiny epoch: no rate ($line)"
  elif [ -n "$rate" ] && [ "$rate" -le 60 ]; then
    ok "tiny epoch: rate $rate samples/s over at least 50 ms"
  else
    bad "tiny epoch: '$line'"
  fi
else
  bad "tiny epoch failed: $(cat "$work/tiny.out")"
fi

# 6. the trace: 200 samples at batch 32 -> 7 steps; 200 test samples -> 7 batches
if "$nnm" train "$md" -q --epochs 1 --limit 200 --trace "$work/trace.json" --threads 1 >/dev/null 2>"$work/trace.err"; then
  "$fixture" trace "$work/trace.json" 7 7 && ok "trace" || bad "trace check"
else
  bad "trace run failed: $(cat "$work/trace.err")"
fi

# 7. misfits fail before the first step, naming both sizes
"$nnm" train "$work/wrong_out.json" --out "$work/w" >"$work/w.out" 2>"$work/w.err"
rc=$?
if [ $rc = 1 ] && grep -q "shape \[5\] per sample" "$work/w.err" && grep -q "(10 classes)" "$work/w.err" &&
  ! grep -q "^epoch" "$work/w.out" && [ ! -e "$work/w/last.safetensors" ]; then
  ok "misfit output: $(cat "$work/w.err")"
else
  bad "misfit output (rc $rc): $(cat "$work/w.err")"
fi
"$nnm" train "$work/wrong_loss.json" >"$work/l.out" 2>"$work/l.err"
rc=$?
if [ $rc = 1 ] && grep -q "mse_loss needs f32 targets" "$work/l.err" && grep -q "(10 classes)" "$work/l.err" &&
  ! grep -q "^epoch" "$work/l.out"; then
  ok "misfit loss: $(cat "$work/l.err")"
else
  bad "misfit loss (rc $rc): $(cat "$work/l.err")"
fi
# the regression losses of issue 18 take f32 targets too; an unknown loss is named
"$nnm" train "$work/wrong_loss.json" --loss huber_loss >"$work/h.out" 2>"$work/h.err"
rc=$?
if [ $rc = 1 ] && grep -q "huber_loss needs f32 targets" "$work/h.err" && ! grep -q "^epoch" "$work/h.out"; then
  ok "misfit huber_loss: $(cat "$work/h.err")"
else
  bad "misfit huber_loss (rc $rc): $(cat "$work/h.err")"
fi
"$nnm" train "$work/wrong_loss.json" --loss kl_div >"$work/h.out" 2>"$work/h.err"
rc=$?
if [ $rc = 2 ] && grep -q '"smooth_l1_loss", "huber_loss" or "bce_with_logits", got .kl_div.' "$work/h.err"; then
  ok "unknown --loss: $(head -1 "$work/h.err")"
else
  bad "unknown --loss (rc $rc): $(cat "$work/h.err")"
fi
"$nnm" train "$m" --input-shape 65 >"$work/s.out" 2>"$work/s.err"
[ $? = 1 ] && grep -q "cannot be viewed as \[65\]" "$work/s.err" && ok "misfit input shape" || bad "input shape: $(cat "$work/s.err")"
"$nnm" train "$m" --epochs 0 >/dev/null 2>&1
[ $? = 2 ] && ok "usage error" || bad "--epochs 0 is no usage error"

echo "$fails failure(s)"
[ $fails = 0 ]
