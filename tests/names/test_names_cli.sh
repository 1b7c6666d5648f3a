#!/usr/bin/env bash
# tests/names/test_names_cli.sh NNM FX_DIR FX_MORE_DIR - `nnm plugins` lists
# each layer with its qualified name, version and provider file, and says
# which plain name reaches it (issue 20). The old plugin (acme_old, ABI 1.2,
# gelu and layer_norm) loads beside nnmod's own gelu and layer_norm.
set -u
nnm=$1 fx=$2 more=$3
fail=0
check() { # check DESCRIPTION PATTERN (an extended regex over the output)
  if ! grep -Eq -- "$2" <<<"$out"; then
    echo "FAIL: $1: no line matching /$2/ in:" >&2
    echo "$out" >&2
    fail=1
  fi
}
out=$("$nnm" plugins --plugins "$fx" 2>&1) || { echo "FAIL: nnm plugins exited $?: $out" >&2; exit 1; }
check "the old plugin loads" "^acme_old +ABI 1\.2 +2 layers, 0 backends +.*/nnm_names_acme_old\.so$"
check "its gelu, by qualified name" "^    acme_old\.gelu +1\.0\.0 +no plain name: nnmod's library has gelu$"
check "its layer_norm" "^    acme_old\.layer_norm +1\.0\.0 +no plain name: nnmod's library has layer_norm$"
check "nnmod's gelu keeps the plain name" "^    nnmod\.gelu +1\.0\.0 +plain name: gelu$"
check "the qualified plugin" "^acme_layers +ABI 1\.[0-9]+ +3 layers"
check "acme.gelu 2.0.0" "^    acme\.gelu +2\.0\.0 +qualified only; not gelu$"
check "no failures" " 0 failed$"
# A name only an old plugin has keeps its plain name.
out=$("$nnm" plugins --plugins "$more" 2>&1)
check "plain name of an old plugin" "^    other_old\.old_only +1\.0\.0 +plain name \(no domain\): old_only$"
# The same plugin twice still loads; the ambiguity is reported when a layer
# is asked for, naming both files.
out=$("$nnm" plugins --plugins "$fx" --plugins "$more" 2>&1)
check "a copy loads too" "^acme_layers .*/nnm_names_acme_copy\.so$"
exit $fail
