#!/usr/bin/env bash
# scripts/gpu-check.sh - ONE run that proves nnmod's CUDA path on a lent GPU
# machine (the device tool: a bare image with nvcc, CMake, ninja and PyTorch
# with CUDA, cuDNN and NCCL as Python wheels, no Debian packages of ours and
# no network). docs/gpu.md says how to call it and how to read what it leaves.
#
#   bash scripts/gpu-check.sh [options]
#
#   --dry-run      no GPU needed: run every stage that needs none against this
#                  machine (unpack the .debs into the prefix, configure, build,
#                  the no-device paths, bench_gpu and nnm train on the CPU), to
#                  prove the script's logic before a GPU session spends time
#   --debs DIR     the carried Debian packages (default .debs; scripts/gpu-debs.sh
#                  downloads them)
#   --out DIR      where the summary and logs go (default $OUT, else
#                  /tmp/nnm-gpu-check/out)
#   --build DIR    the build directory (default build-gpu, git-ignored)
#   --budget S     the whole run's wall-clock budget in seconds (default 540 on
#                  a GPU: the device tool stops a command at 600; 7200 dry)
#   --jobs N       parallel build and test jobs (default: the cores)
#   --full         in --dry-run, also run the whole ctest suite (slow here)
#   --no-suite     leave out the last two stages (build-all and the whole
#                  ctest suite, which CI runs on CPUs too): the run ends after
#                  the benches, leaving the session time for a second call
#
# Stages, in this order (the GPU's own first, so a short budget still proves
# the most), each under `timeout` with the smaller of its cap and what is left
# of the budget; one failing stage does not stop the next:
#   env         the GPU (nvidia-smi: name, compute capability, driver), nvcc,
#               cmake, ninja, gcc, python3/torch; no GPU and no --dry-run:
#               the run stops here, failing, and says so
#   deps        dpkg -x every carried .deb into a private prefix (never /),
#               absolute symlinks and .pc files pointed into it, a pkg-config
#               that reads only its .pc files; cuDNN and NCCL found in the
#               Python wheels (nvidia.* packages) and made visible (include and
#               library dirs, LD_LIBRARY_PATH); writes env.sh for the stages
#   configure   cmake -G Ninja with CUDA for the card found
#               (NNM_CUDA_ARCHITECTURES=<cc>-real), the prefix's libraries
#   build-core  nnm, bench_gpu and every test the GPU stages run
#   cuda-tests  ctest: test_cuda, test_tensor_to, the comm_nccl tests and every
#               test labelled cuda (the golden suites' *_cuda twins, which set
#               NNM_TEST_DEVICE=cuda, and test_nnm_device). On a GPU a test
#               that skips ("SKIPPED: no CUDA device") fails the stage
#   train       nnm train examples/manifests/fashion_cnn.json --device cuda,
#               one epoch of Fashion-MNIST (the carried dataset): the
#               "test accuracy" line (>= 80% passes)
#   bench       bench/bench_gpu.sh: bench_gpu and its PyTorch twin on the same
#               GPU, JSON lines with ratio_vs_torch (bench.jsonl)
#   build-all   everything else (ninja -k 0: one broken target stops no other)
#   suite       the whole ctest suite (CPU and GPU tests) in what time is left
#
# In $OUT (at most 8 files come back from the device machine): summary.txt
# (one line per stage: PASS / FAIL / TIMEOUT / SKIP, seconds, a note; the
# train line; the bench summary lines), bench.jsonl, logs.tar.gz (every
# stage's full log, rewritten after each stage so a killed run still leaves
# them). The same summary is printed last. Exit status: 0 every stage passed,
# 1 some stage did not, 2 no GPU without --dry-run (or a usage error).
set -uo pipefail

self=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
root=$(cd "$(dirname "$self")/.." && pwd)

# ---- one stage, run by the driver below as a child: `gpu-check.sh __stage NAME`
if [ "${1:-}" = __stage ]; then
  stage=$2
  # shellcheck disable=SC1091 # written by the deps stage
  [ -f "$NNM_GC_WORK/env.sh" ] && . "$NNM_GC_WORK/env.sh"
  cd "$root" || exit 1
  note() { echo "note: $*"; }
  build=$NNM_GC_BUILD
  jobs=$NNM_GC_JOBS
  dry=$NNM_GC_DRY

  # The tests the GPU stages run: labelled cuda, or named for the backend.
  gpu_tests() {
    { ctest --test-dir "$build" -N -L cuda; ctest --test-dir "$build" -N -R 'cuda|nccl|tensor_to'; } 2>/dev/null |
      sed -n 's/^ *Test *#[0-9]*: \([^ ]*\).*/\1/p' | sort -u
  }

  # The files those tests run (a twin such as test_conformance_cuda runs
  # test_conformance; a script test names bin/nnm, bin/train_fixture): the
  # basename of every word of their commands, for the build to intersect with
  # its targets.
  gpu_test_files() {
    ctest --test-dir "$build" --show-only=json-v1 2>/dev/null | python3 -c '
import json, os, sys
names = set(sys.argv[1].split())
for t in json.load(sys.stdin).get("tests", []):
    if t.get("name") in names:
        for w in t.get("command") or []:
            print(os.path.basename(w))
' "$(gpu_tests | tr '\n' ' ')" | sort -u
  }

  case $stage in
  env)
    date -u
    uname -a
    echo "cores: $(nproc)"
    free -g 2>/dev/null | head -2
    df -h /tmp . 2>/dev/null
    echo "--- gpu"
    if command -v nvidia-smi >/dev/null 2>&1; then
      nvidia-smi || true
      q=$(nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n 1)
    else
      echo "nvidia-smi: not found"
      q=
    fi
    cc=$(echo "$q" | cut -d, -f2 | tr -d ' ')
    name=$(echo "$q" | cut -d, -f1)
    echo "--- tools"
    nvcc=$(command -v nvcc || { [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda/bin/nvcc; } || true)
    echo "nvcc: ${nvcc:-not found}"
    [ -n "$nvcc" ] && "$nvcc" --version | tail -n 2
    cmake --version | head -n 1
    (ninja --version 2>/dev/null || echo "ninja: not found (make is used)") | sed 's/^/ninja: /'
    gcc --version | head -n 1
    command -v dpkg-deb >/dev/null && echo "dpkg-deb: yes" || echo "dpkg-deb: no (ar + tar unpack the .debs)"
    pkg-config --version >/dev/null 2>&1 && echo "pkg-config: system" || echo "pkg-config: none (the carried pkgconf is used)"
    python3 -c 'import sys, torch; print("python3", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1 | tail -n 1
    {
      echo "NNM_GC_NVCC=$nvcc"
      if [ -n "$cc" ]; then
        echo "NNM_GC_ARCH=${cc//./}"
        echo "NNM_GC_GPU=\"$name, compute capability $cc\""
      else
        echo "NNM_GC_ARCH=90" # dry run: compile as for an H100/H200
        echo "NNM_GC_GPU="
      fi
    } >"$NNM_GC_WORK/gpu.env"
    if [ -z "$cc" ] && [ "$dry" != 1 ]; then
      note "no NVIDIA GPU found (nvidia-smi gives no compute capability): run this on a lent GPU machine, or with --dry-run"
      exit 3
    fi
    [ -n "$nvcc" ] || { note "no nvcc: the CUDA toolkit is needed"; exit 1; }
    if [ -z "$cc" ]; then
      note "no GPU (dry run: building for compute capability 9.0)"
      exit 0
    fi
    note "$name, compute capability $cc, $(nproc) cores"
    ;;

  deps)
    prefix=$NNM_GC_WORK/prefix
    rm -rf "$prefix" "$NNM_GC_WORK/bin"
    mkdir -p "$prefix" "$NNM_GC_WORK/bin" "$prefix/rt" "$prefix/wheel-links"
    debs=$NNM_GC_DEBS
    n=0
    for f in "$debs"/*.deb; do
      [ -f "$f" ] || continue
      if command -v dpkg-deb >/dev/null 2>&1; then
        dpkg-deb -x "$f" "$prefix" || { echo "cannot unpack $f"; exit 1; }
      else # ar + tar: data.tar.{xz,zst,gz}
        member=$(ar t "$f" | grep '^data\.tar') || { echo "no data.tar in $f"; exit 1; }
        ar p "$f" "$member" | tar -xa -f - -C "$prefix" --no-same-owner 2>/dev/null ||
          ar p "$f" "$member" | xz -dc | tar -x -C "$prefix" || { echo "cannot unpack $f"; exit 1; }
      fi
      n=$((n + 1))
    done
    echo "unpacked $n .deb files from $debs into $prefix"
    [ "$n" -gt 0 ] || { note "no .deb files in $debs (scripts/gpu-debs.sh downloads them; carry the folder)"; exit 1; }
    # absolute symlinks (libz.so -> /lib/...) point into the prefix
    find "$prefix" -type l | while read -r l; do
      t=$(readlink "$l")
      case $t in /*) ln -sfn "$prefix$t" "$l" ;; esac
    done
    # pkg-config: the system's, or the carried pkgconf; either reads only our .pc files
    if pkg-config --version >/dev/null 2>&1; then
      pc=$(command -v pkg-config)
    else
      pc=$NNM_GC_WORK/bin/pkg-config
      printf '#!/bin/sh\nLD_LIBRARY_PATH=%s/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} exec %s/usr/bin/pkgconf "$@"\n' \
        "$prefix" "$prefix" >"$pc"
      chmod +x "$pc"
    fi
    # .pc files: every /usr path into the prefix
    pcdirs=
    for d in "$prefix"/usr/lib/x86_64-linux-gnu/pkgconfig "$prefix"/usr/lib/x86_64-linux-gnu/openblas-pthread/pkgconfig "$prefix"/usr/share/pkgconfig "$prefix"/usr/lib/pkgconfig; do
      [ -d "$d" ] || continue
      for pcf in "$d"/*.pc; do
        [ -f "$pcf" ] && sed -i -e "s#=/usr#=$prefix/usr#g" -e "s#-I/usr/#-I$prefix/usr/#g" -e "s#-L/usr/#-L$prefix/usr/#g" "$pcf"
      done
      pcdirs=${pcdirs:+$pcdirs:}$d
    done
    # a .pc whose libdir lacks its library (msgpack.pc says ${exec_prefix}/lib,
    # Debian puts it in lib/x86_64-linux-gnu, which the system linker would
    # search anyway but the prefix is not on it): point libdir where it is
    multi=$prefix/usr/lib/x86_64-linux-gnu
    for f in $(echo "$pcdirs" | tr ':' ' '); do
      for pcf in "$f"/*.pc; do
        [ -f "$pcf" ] || continue
        mod=$(basename "$pcf" .pc)
        ldir=$(PKG_CONFIG_LIBDIR=$pcdirs "$pc" --variable=libdir "$mod" 2>/dev/null)
        for l in $(PKG_CONFIG_LIBDIR=$pcdirs "$pc" --libs-only-l "$mod" 2>/dev/null); do
          lname=${l#-l}
          if [ ! -e "${ldir%/}/lib$lname.so" ] && [ -e "$multi/lib$lname.so" ]; then
            sed -i "s#^libdir=.*#libdir=$multi#" "$pcf"
            echo "$mod.pc: libdir $ldir -> $multi"
          fi
        done
      done
    done
    # libraries this machine lacks (by soname) go on LD_LIBRARY_PATH, through
    # one folder of links: the prefix never shadows a library the system has
    have=$( (ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null) | awk 'NR > 1 {print $1}')
    for d in "$prefix"/lib/x86_64-linux-gnu "$prefix"/usr/lib/x86_64-linux-gnu "$prefix"/usr/lib/x86_64-linux-gnu/openblas-pthread; do
      [ -d "$d" ] || continue
      for so in "$d"/lib*.so.*; do
        [ -e "$so" ] || continue
        b=$(basename "$so")
        case $b in *.so.*.*) continue ;; esac # sonames only (libz.so.1, not libz.so.1.2.13)
        if echo "$have" | grep -qxF "$b"; then continue; fi
        [ -e "$prefix/rt/$b" ] || ln -s "$so" "$prefix/rt/$b"
      done
    done
    echo "libraries the system lacks, on LD_LIBRARY_PATH: $(ls "$prefix/rt" | tr '\n' ' ')"
    # cuDNN and NCCL: the toolkit's, else the Python wheels' (nvidia.cudnn, nvidia.nccl)
    incs= libs=
    wheel_roots=$(python3 -c 'import nvidia, os; print("\n".join(os.path.abspath(p) for p in nvidia.__path__))' 2>/dev/null || true)
    for w in $wheel_roots; do
      for h in cudnn.h nccl.h; do
        for f in $(find "$w" -maxdepth 4 -name "$h" 2>/dev/null); do incs=${incs:+$incs:}$(dirname "$f"); done
      done
      for l in 'libcudnn.so*' 'libnccl.so*'; do
        for f in $(find "$w" -maxdepth 4 -name "$l" 2>/dev/null); do
          libs=${libs:+$libs:}$(dirname "$f")
          b=$(basename "$f")
          [ -e "$prefix/wheel-links/${b%%.so*}.so" ] || ln -s "$f" "$prefix/wheel-links/${b%%.so*}.so"
        done
      done
    done
    incs=$(echo "$incs" | tr ':' '\n' | awk 'NF && !s[$0]++' | paste -sd:)
    libs=$(echo "$libs" | tr ':' '\n' | awk 'NF && !s[$0]++' | paste -sd:)
    echo "cuDNN/NCCL from the wheels: include ${incs:-none}; lib ${libs:-none}"
    # shellcheck disable=SC1091
    . "$NNM_GC_WORK/gpu.env"
    nccl_inc=
    for d in $(echo "$incs" | tr ':' ' '); do [ -f "$d/nccl.h" ] && nccl_inc=$d; done
    cudnn_inc=
    for d in $(echo "$incs" | tr ':' ' '); do [ -f "$d/cudnn.h" ] && cudnn_inc=$d; done
    lib=$prefix/usr/lib/x86_64-linux-gnu
    data=/usr/share/datasets/fashion-mnist
    [ -d "$prefix/usr/share/datasets/fashion-mnist" ] && data=$prefix/usr/share/datasets/fashion-mnist
    args="-DCUNIT_LIBRARY=$lib/libcunit.so -DCUNIT_INCLUDE_DIR=$prefix/usr/include"
    args="$args -DZLIB_INCLUDE_DIR=$prefix/usr/include -DZLIB_LIBRARY=$lib/libz.so -DPKG_CONFIG_EXECUTABLE=$pc"
    [ -n "$nccl_inc" ] && args="$args -DNNM_NCCL_INCLUDE_DIR=$nccl_inc"
    [ -n "$cudnn_inc" ] && args="$args -DNNM_CUDNN_INCLUDE_DIR=$cudnn_inc"
    [ -n "$NNM_GC_NVCC" ] && args="$args -DCMAKE_CUDA_COMPILER=$NNM_GC_NVCC"
    cat >"$NNM_GC_WORK/env.sh" <<EOF
# written by scripts/gpu-check.sh (deps): what every later stage sources
export PATH="$NNM_GC_WORK/bin:\$PATH"
export LD_LIBRARY_PATH="$prefix/rt${libs:+:$libs}\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export PKG_CONFIG_LIBDIR="$pcdirs"
unset PKG_CONFIG_PATH
export CMAKE_INCLUDE_PATH="${incs}"
export CMAKE_LIBRARY_PATH="$prefix/wheel-links${libs:+:$libs}"
export CPATH="${incs}\${CPATH:+:\$CPATH}"
export NNM_GC_CMAKE_DEPS="$args"
export NNM_GC_DATA="$data"
$(cat "$NNM_GC_WORK/gpu.env" | sed 's/^/export /')
EOF
    cat "$NNM_GC_WORK/env.sh"
    # shellcheck disable=SC1091
    . "$NNM_GC_WORK/env.sh"
    echo "--- pkg-config (only the prefix's .pc files)"
    pkg-config --cflags --libs jansson msgpack openblas zlib || { note "pkg-config cannot read the prefix's .pc files"; exit 1; }
    for f in "$lib/libcunit.so" "$prefix/usr/include/CUnit/Basic.h" "$lib/libz.so" "$prefix/usr/include/zlib.h" "$data/train-images-idx3-ubyte.gz"; do
      [ -e "$f" ] || { note "missing after unpacking: $f"; exit 1; }
    done
    note "$n packages; $(ls "$prefix/rt" | wc -l) libraries the system lacked; cuDNN ${cudnn_inc:-from the toolkit}; NCCL ${nccl_inc:-from the toolkit}"
    ;;

  configure)
    gen=Ninja
    command -v ninja >/dev/null 2>&1 || gen="Unix Makefiles"
    # a cache from an earlier run holds that run's prefix paths: start afresh
    # (the objects stay, ninja rebuilds what changed)
    rm -f "$build/CMakeCache.txt"
    # shellcheck disable=SC2086 # word splitting of the argument strings is intended
    cmake -S "$root" -B "$build" -G "$gen" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      "-DNNM_CUDA_ARCHITECTURES=${NNM_GC_ARCH}-real" $NNM_GC_CMAKE_DEPS ${NNM_CMAKE_ARGS:-} 2>&1 | tee "$NNM_GC_WORK/configure.out"
    [ "${PIPESTATUS[0]}" = 0 ] || { note "cmake failed"; exit 1; }
    if grep -q "cuda backend: no CUDA toolkit" "$NNM_GC_WORK/configure.out"; then
      note "CMake found no CUDA toolkit: nnm_cuda.so is not built"
      exit 1
    fi
    missing=
    grep -q "comm_nccl: no nccl.h" "$NNM_GC_WORK/configure.out" && missing="nccl.h (comm_nccl not built)"
    grep -q "cudnn.h not found" "$NNM_GC_WORK/configure.out" && missing="${missing:+$missing, }cudnn.h (conv and batch norm without cuDNN)"
    # where each carried dependency was found: in the prefix, or (a machine
    # that has it) the system; a dry run must find every one in the prefix,
    # as the GPU machine, which has none of them, will
    echo "--- dependencies as CMake found them"
    grep -E '^(pkgcfg_lib_[A-Z_]+_[a-z]+|CUNIT_LIBRARY|CUNIT_INCLUDE_DIR|ZLIB_LIBRARY[A-Z_]*|ZLIB_INCLUDE_DIR|NNM_OPENBLAS_LIBRARY|NNM_CBLAS_INCLUDE_DIR):' "$build/CMakeCache.txt" | tee "$NNM_GC_WORK/deps.found"
    outside=$(grep -v "=$NNM_GC_WORK/prefix" "$NNM_GC_WORK/deps.found" | grep -v -e '-NOTFOUND' -e '=$' || true)
    if [ -n "$outside" ]; then
      echo "outside the prefix:"
      echo "$outside"
      [ "$dry" = 1 ] && { note "dry run: some dependencies were found outside the prefix (the GPU machine lacks them): $(echo "$outside" | cut -d: -f1 | paste -sd' ')"; exit 1; }
    fi
    if [ -n "$missing" ]; then
      echo "not found: $missing"
      [ "$dry" = 1 ] || { note "$gen, ${NNM_GC_ARCH}-real, but not found: $missing"; exit 1; }
    fi
    note "$gen, CUDA architectures ${NNM_GC_ARCH}-real${missing:+; not found: $missing}"
    ;;

  build-core)
    all=$(if [ -f "$build/build.ninja" ]; then ninja -C "$build" -t targets all 2>/dev/null | cut -d: -f1; fi)
    targets="nnm bench_gpu train_fixture"
    for t in $(gpu_tests) $(gpu_test_files) test_cuda test_tensor_to; do
      if [ -z "$all" ] || echo "$all" | grep -qx "$t"; then targets="$targets $t"; fi
    done
    targets=$(echo "$targets" | tr ' ' '\n' | awk 'NF && !s[$0]++' | tr '\n' ' ')
    echo "targets: $targets"
    # shellcheck disable=SC2086
    cmake --build "$build" -j "$jobs" --target $targets || { note "build failed (see the log)"; exit 1; }
    [ -f "$build/lib/nnmod/plugins/nnm_cuda.so" ] || { note "nnm_cuda.so was not built"; exit 1; }
    note "built: $targets"
    ;;

  cuda-tests)
    names=$(gpu_tests | paste -sd'|')
    [ -n "$names" ] || { note "no GPU tests registered"; exit 1; }
    echo "tests: $names"
    # -V: a passing test's output too, where a suite says it skipped
    ctest --test-dir "$build" -V -j "$jobs" --timeout 150 -R "^($names)\$" 2>&1 | tee "$NNM_GC_WORK/cuda-tests.out"
    rc=${PIPESTATUS[0]}
    summary=$(grep -E "tests passed|tests failed" "$NNM_GC_WORK/cuda-tests.out" | tail -n 1)
    skipped=$(grep -cE '\*\*\*Skipped|\*\*\*Not Run' "$NNM_GC_WORK/cuda-tests.out")
    nodev=$(grep -ci 'no CUDA device' "$NNM_GC_WORK/cuda-tests.out")
    echo "--- skips"
    grep -E 'SKIPPED|\*\*\*Skipped|\*\*\*Not Run' "$NNM_GC_WORK/cuda-tests.out" | head -n 40
    if [ "$dry" = 1 ]; then
      note "${summary:-no ctest summary}; $skipped skipped by ctest, $nodev 'no CUDA device' lines (no GPU: expected)"
      exit "$rc"
    fi
    if [ "$skipped" -gt 0 ] || [ "$nodev" -gt 0 ]; then
      note "${summary}; but $skipped test(s) skipped and $nodev 'no CUDA device' line(s) on a GPU machine: the GPU was not used"
      exit 1
    fi
    note "${summary:-no ctest summary}"
    exit "$rc"
    ;;

  train)
    nnm=$build/bin/nnm
    m=examples/manifests/fashion_cnn.json
    d=$NNM_GC_DATA
    data=(--train "$d/train-images-idx3-ubyte.gz,$d/train-labels-idx1-ubyte.gz"
          --test "$d/t10k-images-idx3-ubyte.gz,$d/t10k-labels-idx1-ubyte.gz")
    rm -rf "$NNM_GC_WORK/runs"
    py=python3
    python3 -c 'import torch' 2>/dev/null || py=/usr/bin/python3
    # PyTorch's epoch of the same model, data order, batch and optimizer
    # (bench/train_torch.py, as bench_epoch.sh runs it) on the same device
    torch_epoch() { # DEVICE [ARGS...]
      dv=$1
      shift
      env -u LD_LIBRARY_PATH "$py" bench/train_torch.py cnn --device "$dv" --data "$d" --threads 4 "$@" 2>&1 |
        tee "$NNM_GC_WORK/train_torch.out"
      t_sps=$(sed -n 's/.*"bench": "epoch_cnn_torch", "value": \([0-9.]*\),.*/\1/p' "$NNM_GC_WORK/train_torch.out")
      t_acc=$(sed -n 's/.*"bench": "epoch_cnn_torch_accuracy", "value": \([0-9.]*\),.*/\1/p' "$NNM_GC_WORK/train_torch.out")
    }
    if [ "$dry" = 1 ]; then
      # the no-device path, then the same command on the CPU on a slice
      "$nnm" train "$m" --device cuda --epochs 1 "${data[@]}" --out "$NNM_GC_WORK/runs/cnn_cuda"
      rc=$?
      [ $rc = 1 ] && [ ! -e "$NNM_GC_WORK/runs/cnn_cuda" ] || { note "--device cuda without a GPU: exit $rc (want 1, nothing written)"; exit 1; }
      "$nnm" train "$m" --device cpu --epochs 1 --limit 2048 --test-limit 1000 "${data[@]}" --out "$NNM_GC_WORK/runs/cnn" || exit 1
      t_sps= t_acc=
      "$py" -c 'import torch' 2>/dev/null && torch_epoch cpu --limit 512
      note "dry run: --device cuda failed cleanly; on the CPU (2048 samples): $("$nnm" eval "$m" --weights "$NNM_GC_WORK/runs/cnn/last.safetensors" --test "$d/t10k-images-idx3-ubyte.gz,$d/t10k-labels-idx1-ubyte.gz" --limit 1000 2>&1 | tail -n 1); PyTorch's twin (512 samples): ${t_acc:-?}%"
      exit 0
    fi
    "$nnm" train "$m" --device cuda --epochs 1 "${data[@]}" --out "$NNM_GC_WORK/runs/cnn" 2>&1 | tee "$NNM_GC_WORK/train.out"
    rc=${PIPESTATUS[0]}
    acc=$(sed -n 's/^test accuracy: \([0-9.]*\)%$/\1/p' "$NNM_GC_WORK/train.out")
    epoch=$(grep '^epoch 1/1' "$NNM_GC_WORK/train.out" | sed 's/.*test accuracy [0-9.]*%, //')
    [ $rc = 0 ] && [ -n "$acc" ] || { note "nnm train --device cuda failed (exit $rc)"; exit 1; }
    n_sps=$(grep '^epoch 1/1' "$NNM_GC_WORK/train.out" | sed -n 's/.*, \([0-9]*\) samples\/s.*/\1/p')
    t_sps= t_acc=
    torch_epoch cuda
    note "test accuracy: $acc% after one epoch on the GPU, ${n_sps:-?} samples/s ($epoch); PyTorch on the same GPU: ${t_acc:-?}%, ${t_sps:-?} samples/s"
    awk -v a="$acc" 'BEGIN { exit !(a >= 80) }' || { echo "under 80%: the GPU path computes something else"; exit 1; }
    ;;

  bench)
    py=python3
    python3 -c 'import torch' 2>/dev/null || py=/usr/bin/python3
    args=()
    [ "$dry" = 1 ] && args=(--device cpu --batch 1 --reps 1 --warmup 0)
    # every JSON line goes to bench.jsonl as it comes: a stage stopped at its
    # limit still leaves the pairs measured so far
    : >"$NNM_GC_OUT/bench.jsonl"
    NNM_TORCH_PYTHON=$py bash "$root/bench/bench_gpu.sh" "$build" "${args[@]}" 2>&1 |
      tee "$NNM_GC_WORK/bench.out" | while IFS= read -r line; do
        printf '%s\n' "$line"
        case $line in "{"*) printf '%s\n' "$line" >>"$NNM_GC_OUT/bench.jsonl" ;; esac
      done
    rc=${PIPESTATUS[0]}
    n=$(grep -c '"ratio_vs_torch"' "$NNM_GC_WORK/bench.out")
    if grep -q '"skipped"' "$NNM_GC_WORK/bench.out" && [ "$dry" != 1 ]; then
      note "a bench skipped on a GPU machine: $(grep '"skipped"' "$NNM_GC_WORK/bench.out" | head -n 1)"
      exit 1
    fi
    [ "$rc" = 0 ] && [ "$n" -gt 0 ] || { note "bench_gpu.sh failed (exit $rc, $n summary lines)"; exit 1; }
    note "$n benches with ratio_vs_torch (bench.jsonl)${args[*]:+ [dry run: ${args[*]}]}"
    ;;

  build-all)
    keep=()
    [ -f "$build/build.ninja" ] && keep=(-- -k 0)
    cmake --build "$build" -j "$jobs" "${keep[@]}" || { note "some targets failed to build (see the log)"; exit 1; }
    note "everything built"
    ;;

  suite)
    ctest --test-dir "$build" -j "$jobs" --timeout 170 --output-on-failure 2>&1 | tee "$NNM_GC_WORK/suite.out"
    rc=${PIPESTATUS[0]}
    summary=$(grep -E "tests passed|tests failed" "$NNM_GC_WORK/suite.out" | tail -n 1)
    failed=$(sed -n '/The following tests FAILED/,$p' "$NNM_GC_WORK/suite.out" | sed -n 's/^[[:space:]]*[0-9]* - \([^ ]*\).*/\1/p' | paste -sd' ')
    note "${summary:-no ctest summary}${failed:+; failed: $failed}"
    exit "$rc"
    ;;

  *)
    echo "unknown stage $stage"
    exit 2
    ;;
  esac
  exit 0
fi

# ---- the driver -------------------------------------------------------------
usage() {
  sed -n '2,/^set -uo/p' "$self" | sed '$d' | sed 's/^# \{0,1\}//'
  exit 2
}
dry=0 full=0 suite=1 budget= debs=$root/.debs out=${OUT:-} build=$root/build-gpu jobs=$(nproc 2>/dev/null || echo 4)
while [ $# -gt 0 ]; do
  case $1 in
  --dry-run) dry=1 ;;
  --full) full=1 ;;
  --no-suite) suite=0 ;;
  --debs) debs=$2; shift ;;
  --out) out=$2; shift ;;
  --build) build=$2; shift ;;
  --budget) budget=$2; shift ;;
  --jobs) jobs=$2; shift ;;
  -h | --help) usage ;;
  *) echo "gpu-check: unknown option $1" >&2; usage ;;
  esac
  shift
done
[ -n "$budget" ] || { [ $dry = 1 ] && budget=7200 || budget=540; }
work=${NNM_GC_WORK:-/tmp/nnm-gpu-check}
out=${out:-$work/out}
mkdir -p "$work/logs" "$out" || exit 2
rm -f "$work"/logs/*.log "$work/results" "$work/env.sh" "$work/gpu.env"
case $debs in /*) ;; *) debs=$root/$debs ;; esac
case $build in /*) ;; *) build=$root/$build ;; esac
export NNM_GC_WORK=$work NNM_GC_OUT=$out NNM_GC_BUILD=$build NNM_GC_JOBS=$jobs NNM_GC_DRY=$dry NNM_GC_DEBS=$debs
t0=$(date +%s)
reserve=15 # seconds kept for the summary and the tarball
n_stage=0
failed=()

left() { echo $((t0 + budget - reserve - $(date +%s))); }

pack() {
  tar -czf "$out/logs.tar.gz.tmp" -C "$work" logs 2>/dev/null && mv -f "$out/logs.tar.gz.tmp" "$out/logs.tar.gz"
}

write_summary() {
  {
    echo "gpu-check $( [ $dry = 1 ] && echo "(DRY RUN, no GPU) ")at $(date -u '+%Y-%m-%d %H:%M:%S') UTC, commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$root" status --porcelain 2>/dev/null | grep -q . && echo ' (+ local changes)')"
    gpu=$(sed -n 's/^NNM_GC_GPU=//p' "$work/gpu.env" 2>/dev/null | tr -d '"')
    echo "device: ${gpu:-no GPU}; budget ${budget} s, used $(($(date +%s) - t0)) s; logs: logs.tar.gz; benches: bench.jsonl"
    printf '%-11s %-8s %6s  %s\n' stage result seconds note
    [ -f "$work/results" ] && cat "$work/results"
    if [ -f "$out/bench.jsonl" ]; then
      echo "--- bench (nnmod / PyTorch on the same device; lower is better)"
      grep '"ratio_vs_torch"' "$out/bench.jsonl" || true
    fi
    if [ ${#failed[@]} -eq 0 ]; then
      echo "RESULT: PASS ($n_stage stages)"
    else
      echo "RESULT: FAIL (${failed[*]})"
    fi
  } >"$out/summary.txt"
}

# stage NAME CAP: runs `gpu-check.sh __stage NAME` under timeout; records it
stage() {
  local name=$1 cap=$2 t log start rc secs result noteline
  n_stage=$((n_stage + 1))
  log=$(printf '%s/logs/%02d-%s.log' "$work" "$n_stage" "$name")
  [ $dry = 1 ] && cap=$((cap * 10)) # a shared development machine builds slowly
  t=$(left)
  [ "$t" -gt "$cap" ] && t=$cap
  if [ "$t" -lt 10 ]; then
    printf '%-11s %-8s %6s  %s\n' "$name" SKIP 0 "no time left in the budget" | tee -a "$work/results"
    failed+=("$name")
    write_summary
    return 1
  fi
  echo "gpu-check: $name (up to $t s) ..."
  start=$(date +%s)
  timeout -k 10 "$t" bash "$self" __stage "$name" >"$log" 2>&1 </dev/null
  rc=$?
  secs=$(($(date +%s) - start))
  noteline=$(sed -n 's/^note: //p' "$log" | tail -n 1)
  case $rc in
  0) result=PASS ;;
  124 | 137) result=TIMEOUT; noteline="stopped after $t s${noteline:+; $noteline}" ;;
  *) result=FAIL; [ -n "$noteline" ] || noteline="exit $rc: $(tail -n 1 "$log" | cut -c1-160)" ;;
  esac
  printf '%-11s %-8s %6s  %s\n' "$name" "$result" "$secs" "$noteline" | tee -a "$work/results"
  [ $result = PASS ] || failed+=("$name")
  write_summary
  pack
  return $rc
}

trap 'write_summary; pack' EXIT
echo "gpu-check: budget $budget s, work $work, out $out$( [ $dry = 1 ] && echo ', DRY RUN')"
stage env 30
rc=$?
if [ $rc = 3 ]; then
  echo "gpu-check: NO GPU: this script proves the CUDA path on a lent GPU machine; without one use --dry-run" >&2
  write_summary
  cat "$out/summary.txt"
  exit 2
fi
stage deps 90
stage configure 120
stage build-core 300
stage cuda-tests 150
stage train 120
stage bench 150
if [ $suite = 1 ] || [ $dry = 1 ]; then
  stage build-all 240
else
  printf '%-11s %-8s %6s  %s\n' build-all SKIP 0 "--no-suite: only the suite needs it" | tee -a "$work/results"
fi
if [ $dry = 1 ] && [ $full = 0 ]; then
  printf '%-11s %-8s %6s  %s\n' suite SKIP 0 "dry run: the whole suite is CI's (--full runs it)" | tee -a "$work/results"
elif [ $suite = 0 ]; then
  printf '%-11s %-8s %6s  %s\n' suite SKIP 0 "--no-suite: the whole suite is CI's" | tee -a "$work/results"
else
  stage suite 100000
fi
write_summary
pack
echo
cat "$out/summary.txt"
[ ${#failed[@]} -eq 0 ]
