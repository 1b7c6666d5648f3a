#!/usr/bin/env bash
# scripts/gpu-debs.sh - download (not install) the Debian packages that
# scripts/gpu-check.sh unpacks on a lent GPU machine, which has no Debian
# packages of nnmod's dependencies and no network. Run it on a development
# machine with apt (Debian 12, amd64 packages whatever this machine is), then
# name the folder in the device call's `carry` (docs/gpu.md).
#
#   scripts/gpu-debs.sh [DIR]     (default: .debs in the repository root)
#
# DIR is emptied of .deb files first, so it holds exactly one version of each
# package. .debs/ is git-ignored (.gitignore). The packages are the build's
# and the tests' dependencies the device image lacks (scripts/setup.sh's list,
# less what that image has: compilers, CMake, ninja, Python, CUDA):
#   OpenBLAS (and its Fortran runtime), msgpack-c, jansson, CUnit, zlib,
#   pkgconf (CMake's pkg_check_modules), and the Fashion-MNIST data
#   (dataset-fashion-mnist, 31 MB) for the training stage.
# What travels with a device call is at most 64 MiB (tree + carry): this
# prints the total and fails above 60 MiB.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${1:-$root/.debs}

packages=(
  libopenblas0-pthread libopenblas-pthread-dev libgfortran5 libquadmath0
  libmsgpackc2 libmsgpack-dev
  libjansson4 libjansson-dev
  libcunit1 libcunit1-dev
  zlib1g zlib1g-dev
  pkgconf-bin libpkgconf3
  dataset-fashion-mnist
)

command -v apt-get >/dev/null 2>&1 || { echo "gpu-debs: needs apt-get (Debian or Ubuntu)" >&2; exit 1; }
mkdir -p "$dir"
rm -f "$dir"/*.deb
dir=$(cd "$dir" && pwd)

# The device machine is x86-64. On another architecture, ask apt for amd64
# packages through a private list directory (as the device README shows).
apt_opts=()
if [ "$(dpkg --print-architecture 2>/dev/null || echo amd64)" != amd64 ]; then
  lists=$(mktemp -d)
  mkdir -p "$lists/partial"
  apt_opts=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$lists")
  apt-get "${apt_opts[@]}" update
fi

# apt-get download writes into the current directory; as root it warns that
# the _apt user cannot write there (harmless: the download is unsandboxed).
(cd "$dir" && apt-get "${apt_opts[@]}" download "${packages[@]}" 2>&1 |
  grep -v 'Download is performed unsandboxed' || true)

missing=()
for p in "${packages[@]}"; do
  compgen -G "$dir/${p}_*.deb" >/dev/null || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "gpu-debs: not downloaded: ${missing[*]}" >&2
  exit 1
fi

debs_kib=$(du -sk "$dir" | cut -f1)
tree_kib=$(cd "$root" && git ls-files -z --cached --others --exclude-standard |
  xargs -0 du -ck 2>/dev/null | tail -n 1 | cut -f1)
total_kib=$((debs_kib + tree_kib))
echo "gpu-debs: ${#packages[@]} packages in $dir ($((debs_kib / 1024)) MiB); with the working" \
  "tree ($((tree_kib / 1024)) MiB) a device call carries $((total_kib / 1024)) MiB of 64"
if [ "$total_kib" -gt $((60 * 1024)) ]; then
  echo "gpu-debs: over 60 MiB: the device call would be refused; make the tree smaller" >&2
  exit 1
fi
