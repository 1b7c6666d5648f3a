#!/bin/sh
# tests/tools/test_gpu_check.sh SOURCE_DIR WORK_DIR - scripts/gpu-check.sh on
# a machine without a GPU (CI, the development machines): it must stop after
# its first stage with exit 2, say so on stderr, and leave summary.txt and
# logs.tar.gz in its --out folder with "env FAIL" and "no NVIDIA GPU found".
# Skipped (passes) where nvidia-smi reports a GPU: there the script's real run
# is the test (docs/gpu.md). Plain POSIX sh; a few seconds.
set -u
src=$1
work=$2
rm -rf "$work"
mkdir -p "$work"
if command -v nvidia-smi >/dev/null 2>&1 &&
  nvidia-smi --query-gpu=compute_cap --format=csv,noheader >/dev/null 2>&1; then
  echo "SKIPPED: this machine has a GPU (run scripts/gpu-check.sh itself)"
  exit 0
fi
fails=0
bad() { echo "FAIL: $1"; fails=$((fails + 1)); }
bash -n "$src/scripts/gpu-check.sh" || bad "gpu-check.sh: syntax"
bash -n "$src/scripts/gpu-debs.sh" || bad "gpu-debs.sh: syntax"
NNM_GC_WORK=$work/w bash "$src/scripts/gpu-check.sh" --out "$work/out" --debs "$work/none" >"$work/stdout" 2>"$work/stderr"
rc=$?
[ $rc = 2 ] || bad "exit $rc without a GPU, want 2"
grep -q "NO GPU" "$work/stderr" || bad "stderr does not say NO GPU: $(cat "$work/stderr")"
grep -q "^env  *FAIL .*no NVIDIA GPU found" "$work/out/summary.txt" 2>/dev/null || bad "summary: $(cat "$work/out/summary.txt" 2>&1)"
grep -q "^RESULT: FAIL (env)" "$work/out/summary.txt" 2>/dev/null || bad "no RESULT line"
[ -s "$work/out/logs.tar.gz" ] || bad "no logs.tar.gz"
[ ! -e "$work/w/prefix" ] || bad "went past the env stage"
bash "$src/scripts/gpu-check.sh" --bogus >/dev/null 2>&1
[ $? = 2 ] || bad "an unknown option is no usage error"
echo "$fails failure(s)"
[ $fails = 0 ]
