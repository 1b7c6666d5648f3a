#!/usr/bin/env bash
# scripts/setup.sh - install the Debian packages nnmod needs, and only those
# that are missing. Safe to run again; non-interactive (no stdin needed).
#
#   scripts/setup.sh            check, then install what is missing
#   NNM_SKIP_SETUP=1 ...        do nothing (for machines you manage yourself)
#
# As root it calls apt-get directly; otherwise through sudo when there is one.
set -euo pipefail

[ "${NNM_SKIP_SETUP:-0}" = 1 ] && exit 0

# Build tools, the CPU backend's BLAS, the test framework, the manifest formats,
# and clang with its runtimes (second compiler for the header compile tests,
# and libFuzzer for the fuzz smoke runs), graphviz (the test renders `nnm inspect --dot`),
# and what the data pipeline, distributed training and the bindings need.
# PyTorch (python3-torch) is NOT installed here: only the golden-vector
# generators under tests/golden/ and the bench/*_torch.py comparisons use it.
packages=(
  build-essential gcc g++ cmake pkg-config
  libopenblas-dev libcunit1-dev libmsgpack-dev libjansson-dev
  clang libclang-rt-14-dev
  graphviz
  # data: zlib for gzipped IDX files, and the Fashion-MNIST dataset (nnm train)
  zlib1g-dev dataset-fashion-mnist
  # distributed training: OpenMPI (the comm_mpi plugin and its tests)
  libopenmpi-dev openmpi-bin
  # bindings: Python (numpy, cffi, pytest) and Go; Rust uses the image's cargo
  python3 python3-numpy python3-cffi python3-pytest golang-go
  # `pip install ./bindings/python` (no index): pip, setuptools, venv
  python3-pip python3-setuptools python3-venv
  # bindings/rust: bindgen regenerates nnmod-sys and checks it (rust_sys_drift)
  bindgen
)

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "setup: not a Debian-based system; install these yourself: ${packages[*]}" >&2
  exit 0
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo -n)
else
  echo "setup: missing packages (${missing[*]}) and not root; run: apt-get install ${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt_get() { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q "$@" </dev/null; }
# One retry: a mirror hiccup should not fail a fresh machine's first build.
apt_get update || { sleep 5; apt_get update; }
apt_get install --no-install-recommends "${missing[@]}" ||
  { sleep 5; apt_get update; apt_get install --no-install-recommends "${missing[@]}"; }
echo "setup: done"
