#!/bin/sh
# tests/ddp/ddp_nccl.sh WORKER SCRATCH - runs tests/ddp/ddp_nccl.c as one
# rank per GPU: NCCL refuses two ranks on one GPU ("Duplicate GPU
# detected"), so a machine with one GPU (or none: the worker then prints
# SKIPPED) runs one process, one with two or more runs two, rendezvousing
# through NNM_NCCL_ID_FILE. libnccl.so.2 must be findable by dlopen
# (LD_LIBRARY_PATH; scripts/gpu-check.sh points it at the nccl wheel).
set -u
worker=$1
scratch=$2
mkdir -p "$scratch" || exit 1
n=0
if command -v nvidia-smi >/dev/null 2>&1; then
  n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
fi
if [ "$n" -lt 2 ]; then
  exec "$worker" "$scratch"
fi
idf="$scratch/nccl_id.$$"
rm -f "$idf"
NNM_RANK=0 NNM_WORLD_SIZE=2 NNM_LOCAL_RANK=0 NNM_NCCL_ID_FILE="$idf" "$worker" "$scratch" &
p0=$!
NNM_RANK=1 NNM_WORLD_SIZE=2 NNM_LOCAL_RANK=1 NNM_NCCL_ID_FILE="$idf" "$worker" "$scratch" &
p1=$!
wait $p0
r0=$?
wait $p1
r1=$?
rm -f "$idf"
[ "$r0" -eq 0 ] && [ "$r1" -eq 0 ]
