#!/usr/bin/env bash
# bindings/rust/run_tests.sh - what ctest runs (rust_cargo_test): build the
# workspace (so the rms_norm cdylib its tests dlopen is current), check that
# the plugin exports nnm_plugin_entry and nothing else, then cargo test.
# Offline and std-only: no crates.io. The environment comes from ctest:
# PKG_CONFIG_PATH (the build tree's nnmod.pc), CARGO_TARGET_DIR,
# LD_LIBRARY_PATH (the build tree's libnnmod), NNM_TEST_PRELOAD (sanitizer
# runtimes to preload into the test programs, for a -DNNM_SANITIZE=ON build).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
target=${CARGO_TARGET_DIR:-target}
runner=()
# CI=true: warnings are errors here too, as for the C code
if [ "${CI:-}" = true ]; then export RUSTFLAGS="${RUSTFLAGS:-} -D warnings"; fi
if [ -n "${NNM_TEST_PRELOAD:-}" ]; then
  # cargo runs each test program through this runner; rustc itself is not preloaded
  runner=(--config "target.'cfg(all())'.runner = ['env', 'LD_PRELOAD=$NNM_TEST_PRELOAD']")
fi

cargo build --offline --workspace
so="$target/debug/librms_norm.so"
if command -v nm >/dev/null 2>&1; then
  exported=$(nm -D --defined-only --format=posix "$so" | awk '{print $1}' | grep -v -E '^(_init|_fini|_edata|_end|__bss_start|__.*)$' || true)
  if [ "$exported" != nnm_plugin_entry ]; then
    echo "run_tests: $so must export nnm_plugin_entry only, exports: $exported" >&2
    exit 1
  fi
  echo "run_tests: $so exports nnm_plugin_entry only"
fi
cargo test --offline --workspace "${runner[@]}"
