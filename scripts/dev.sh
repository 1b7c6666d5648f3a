#!/usr/bin/env bash
# scripts/dev.sh - the two commands of the README.
#
#   scripts/dev.sh demo   set up, build, train the Fashion-MNIST MLP with nnm train
#                         (examples/manifests/fashion_mlp.json), then nnm eval on the
#                         saved weights (the API demo: build/bin/nnm_demo)
#   scripts/dev.sh test   set up, build, run the whole test suite (ctest)
#
# Environment (all optional):
#   NNM_BUILD_DIR   build directory (default: build)
#   NNM_BUILD_TYPE  CMake build type (default: RelWithDebInfo)
#   NNM_CMAKE_ARGS  extra arguments for the CMake configure step
#   NNM_JOBS        parallel build/test jobs (default: number of cores)
#   NNM_SKIP_SETUP  1: do not check/install Debian packages
#   CI              true: warnings are errors (-DNNM_WERROR=ON)
set -euo pipefail

usage() {
  echo "usage: $0 demo|test" >&2
  exit 2
}
[ $# -eq 1 ] || usage
verb=$1
case "$verb" in demo | test) ;; *) usage ;; esac

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

build=${NNM_BUILD_DIR:-build}
jobs=${NNM_JOBS:-$(nproc 2>/dev/null || echo 2)}

"$root/scripts/setup.sh"

args=(-DCMAKE_BUILD_TYPE="${NNM_BUILD_TYPE:-RelWithDebInfo}")
if [ "${CI:-}" = true ]; then
  args+=(-DNNM_WERROR=ON)
fi
# shellcheck disable=SC2206 # word splitting of NNM_CMAKE_ARGS is intended
args+=(${NNM_CMAKE_ARGS:-})

cmake -S . -B "$build" "${args[@]}"
if [ "$verb" = demo ]; then
  cmake --build "$build" -j "$jobs" --target nnm nnm_demo  # nnm brings the plugins
else
  cmake --build "$build" -j "$jobs"
fi

case "$verb" in
demo)
  # Train on the full Fashion-MNIST data (Debian's dataset-fashion-mnist),
  # checkpoint to runs/fashion_mlp, then evaluate the best checkpoint: the
  # last lines of both agree.
  out=${NNM_DEMO_OUT:-runs/fashion_mlp}
  "$build/bin/nnm" train examples/manifests/fashion_mlp.json --out "$out"
  echo
  echo "\$ nnm eval examples/manifests/fashion_mlp.json --weights $out/best.safetensors"
  exec "$build/bin/nnm" eval examples/manifests/fashion_mlp.json --weights "$out/best.safetensors"
  ;;
test)
  exec ctest --test-dir "$build" --output-on-failure -j "$jobs"
  ;;
esac
