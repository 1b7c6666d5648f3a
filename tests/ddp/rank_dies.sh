#!/bin/sh
# rank_dies.sh MPIEXEC WORKER PROBE SCRATCH: 3 ranks; rank 1 exits in the
# middle of step 2. Ranks 0 and 2 must fail their all-reduce with
# NNM_E_TIMEOUT naming rank 1 within NNM_COMM_TIMEOUT (20 s; the probe adds
# at most 5) and say so in SCRATCH/died_ok.<rank>. mpirun's own exit status
# is not ours to judge (it reports the rank that exited without finalising).
set -u
mpiexec=$1 worker=$2 probe=$3 scratch=$4
rm -f "$scratch"/died_ok.*
NNM_COMM_TIMEOUT=20 "$mpiexec" -np 3 --enable-recovery \
    "$worker" "$probe" "$scratch" die
echo "mpirun exited with $?"
fail=0
for r in 0 2; do
    if [ -f "$scratch/died_ok.$r" ]; then
        echo "rank $r: $(cat "$scratch/died_ok.$r")"
    else
        echo "rank $r did not report the death of rank 1"
        fail=1
    fi
done
exit $fail
