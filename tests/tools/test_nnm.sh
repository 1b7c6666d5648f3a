#!/bin/sh
# tests/tools/test_nnm.sh - end-to-end tests of the nnm command-line tool.
#
# usage: test_nnm.sh NNM FIXTURE SOURCE_DIR WORK_DIR
#
# Runs bin/nnm the way a user does and asserts on its exit status, stdout and
# stderr: every command's --help, usage errors (exit 2, "try 'nnm CMD --help'"),
# `weights inspect/diff` on files written by nnm_fixture and on the PyTorch
# golden files of tests/golden/state, and validate/convert/inspect/--dot/run
# on examples/manifests/*.json and on broken manifests. Any sanitizer report
# on stderr fails the test. Plain POSIX sh. Exits 0 when every check passed.
set -u

if [ $# -ne 4 ]; then
    echo "usage: $0 NNM FIXTURE SOURCE_DIR WORK_DIR" >&2
    exit 2
fi
NNM=$1
FIX=$2
SRC=$3
WORK=$4
M=$SRC/examples/manifests
G=$SRC/tests/golden/state

rm -rf "$WORK" || exit 1
mkdir -p "$WORK" || exit 1
OUT=$WORK/stdout
ERR=$WORK/stderr
# A sanitizer's own exit status must not pass for an expected 1.
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}exitcode=99"
export ASAN_OPTIONS

n_checks=0
n_failed=0
LAST=""

fail() {
    echo "FAIL: $LAST: $*" >&2
    n_failed=$((n_failed + 1))
}

show() {
    {
        echo "  --- stdout:"
        sed 's/^/  | /' "$OUT"
        echo "  --- stderr:"
        sed 's/^/  | /' "$ERR"
    } >&2
}

# expect RC ARGS...: runs `nnm ARGS...`, stdout to $OUT and stderr to $ERR,
# and checks the exit status.
expect() {
    want=$1
    shift
    LAST="nnm $*"
    n_checks=$((n_checks + 1))
    "$NNM" "$@" >"$OUT" 2>"$ERR"
    rc=$?
    if [ "$rc" -ne "$want" ]; then
        fail "exit status $rc, expected $want"
        show
    fi
    if grep -q -e 'Sanitizer' -e 'runtime error:' "$ERR"; then
        fail "sanitizer report"
        show
    fi
}

out_has() {
    n_checks=$((n_checks + 1))
    grep -F -q -e "$1" "$OUT" || { fail "stdout lacks '$1'"; show; }
}
out_lacks() {
    n_checks=$((n_checks + 1))
    if grep -F -q -e "$1" "$OUT"; then fail "stdout has '$1'"; show; fi
}
err_has() {
    n_checks=$((n_checks + 1))
    grep -F -q -e "$1" "$ERR" || { fail "stderr lacks '$1'"; show; }
}
out_empty() {
    n_checks=$((n_checks + 1))
    [ ! -s "$OUT" ] || { fail "stdout is not empty"; show; }
}
err_empty() {
    n_checks=$((n_checks + 1))
    [ ! -s "$ERR" ] || { fail "stderr is not empty"; show; }
}
# The one-line message, then the hint; nothing on stdout.
usage_error() {
    cmd=$1
    shift
    expect 2 "$@"
    out_empty
    err_has "try 'nnm${cmd:+ $cmd} --help'"
    n_checks=$((n_checks + 1))
    [ "$(wc -l <"$ERR")" -eq 2 ] || { fail "usage error is not 2 lines"; show; }
}
check() { # check DESCRIPTION COMMAND...: a shell check of its own
    what=$1
    shift
    n_checks=$((n_checks + 1))
    "$@" || fail "$what"
}

# ---------------------------------------------------------------------------
# Help, version
# ---------------------------------------------------------------------------
expect 0 --help
out_has "usage: nnm"
out_has "weights diff A B"
err_empty
expect 0 -h
out_has "usage: nnm"
expect 0 help
out_has "usage: nnm"
expect 0 --version
out_has "libnnmod"
out_has "plugin ABI"
err_empty

for c in validate convert inspect run plugins weights "weights inspect" "weights diff"; do
    # shellcheck disable=SC2086 # word splitting of "weights diff" is meant
    expect 0 $c --help
    out_has "usage: nnm $c"
    out_has "-h, --help"
    err_empty
    cp "$OUT" "$WORK/help1"
    # shellcheck disable=SC2086
    expect 0 help $c
    check "'nnm help $c' differs from 'nnm $c --help'" cmp -s "$OUT" "$WORK/help1"
done
expect 0 run -h
out_has "usage: nnm run"

# ---------------------------------------------------------------------------
# Usage errors: exit 2, one line + the hint, nothing on stdout
# ---------------------------------------------------------------------------
usage_error "" ; err_has "no command given"
usage_error "" frobnicate; err_has "unknown command 'frobnicate'"
usage_error "" --frob validate; err_has "unknown option '--frob'"
usage_error "" --plugins; err_has "'--plugins' needs a value"
usage_error "" help frobnicate
usage_error validate validate; err_has "missing FILE"
usage_error validate validate --frob "$M/mlp.json"; err_has "unknown option '--frob'"
usage_error validate validate --weights=yes "$M/mlp.json"; err_has "takes no value"
usage_error convert convert "$M/mlp.json"; err_has "expected IN and OUT"
usage_error convert convert "$M/mlp.json" a.json b.json
usage_error convert convert --to yaml "$M/mlp.json" "$WORK/x.yaml"; err_has "json or msgpack"
usage_error convert convert "$M/mlp.json" "$WORK/x.json" --to
usage_error inspect inspect
usage_error inspect inspect "$M/mlp.json" "$M/nested.json"
usage_error run run; err_has "missing FILE"
usage_error run run "$M/mlp.json"; err_has "no input"
usage_error run run "$M/mlp.json" --input 0x4; err_has "bad shape '0x4'"
usage_error run run "$M/mlp.json" --input 1x; err_has "bad shape"
usage_error run run "$M/mlp.json" --input 1x2x3x4x5x6x7x8x9; err_has "bad shape"
usage_error run run "$M/mlp.json" --input 4000000000x4; err_has "over 2^28 elements"
usage_error run run "$M/mlp.json" --input 2x4 --seed -1; err_has "--seed"
usage_error run run "$M/mlp.json" --input 2x4 --outputs 0; err_has "--outputs"
usage_error run run "$M/mlp.json" --input; err_has "'--input' needs a value"
usage_error weights weights; err_has "missing command"
usage_error weights weights frob; err_has "unknown command 'frob'"
usage_error "weights inspect" weights inspect
usage_error "weights inspect" weights inspect a b
usage_error "weights diff" weights diff a
usage_error "weights diff" weights diff --atol -1 a b; err_has "--atol"
usage_error "weights diff" weights diff --atol abc a b
usage_error plugins plugins extra

# ---------------------------------------------------------------------------
# weights inspect / diff
# ---------------------------------------------------------------------------
LAST="nnm_fixture weights"
check "nnm_fixture weights failed" "$FIX" weights "$WORK"
W=$WORK

expect 0 weights inspect "$W/a.safetensors"
out_has "$W/a.safetensors"
out_has "NAME"
out_has "F32"
out_has "[2, 3]"
out_has "I64"
out_has "total: 3 tensors, 10 elements, 44 bytes"
out_has "owner: test"
out_has "nnmod_version:"
err_empty
expect 0 weights inspect --json "$W/a.safetensors"
out_has '"name": "w", "dtype": "F32", "shape": [2, 3], "bytes": 24'
out_has '"total_tensors": 3'
out_has '"owner": "test"'
if command -v python3 >/dev/null 2>&1; then
    LAST="weights inspect --json | python3 -m json.tool"
    check "not valid JSON" python3 -m json.tool "$OUT" >/dev/null
fi
expect 0 weights inspect "$G/mlp_mixed.safetensors"
out_has "BF16"
out_has "F16"
out_has "F64"
expect 1 weights inspect "$W/missing.safetensors"
out_empty
err_has "nnm weights inspect: "
err_has "missing.safetensors"
printf 'not a safetensors file' >"$W/junk.safetensors"
expect 1 weights inspect "$W/junk.safetensors"
err_has "junk.safetensors"

expect 0 weights diff "$W/a.safetensors" "$W/a_copy.safetensors"
out_has "identical (3 tensors)"
err_empty
expect 1 weights diff --metadata "$W/a.safetensors" "$W/a_copy.safetensors"
out_has "metadata differs: owner: 'test' vs 'someone else'"
expect 1 weights diff "$W/a.safetensors" "$W/a_close.safetensors"
out_has "values differ: w: max abs diff 1"
out_has "2 identical"
expect 0 weights diff --atol 1e-4 "$W/a.safetensors" "$W/a_close.safetensors"
out_has "within tolerance: w"
expect 1 weights diff --atol=1e-4 "$W/a.safetensors" "$W/a_far.safetensors"
out_has "values differ: w: max abs diff 0.5"
expect 1 weights diff "$W/a.safetensors" "$W/a_extra.safetensors"
out_has "only in B: c"
out_lacks "only in A:"
expect 1 weights diff "$W/a_extra.safetensors" "$W/a.safetensors"
out_has "only in A: c"
expect 1 weights diff "$W/a.safetensors" "$W/a_shape.safetensors"
out_has "shape differs: w: [2, 3] vs [3, 2]"
expect 1 weights diff "$W/a.safetensors" "$W/a_int.safetensors"
out_has "values differ: steps: max abs diff 1"
expect 1 weights diff "$W/a.safetensors" "$W/a_nan.safetensors"
out_has "values differ: w: max abs diff nan"
expect 0 weights diff "$W/a_nan.safetensors" "$W/a_nan.safetensors"
out_has "identical"
expect 1 weights diff -q "$W/a.safetensors" "$W/a_far.safetensors"
out_empty
err_empty
expect 0 weights diff --quiet "$W/a.safetensors" "$W/a_copy.safetensors"
out_empty
expect 2 weights diff "$W/a.safetensors" "$W/missing.safetensors"
err_has "nnm weights diff: "
err_has "missing.safetensors"
expect 2 weights diff "$W/junk.safetensors" "$W/a.safetensors"
expect 0 weights diff "$G/mlp.safetensors" "$G/mlp.safetensors"
expect 1 weights diff "$G/mlp.safetensors" "$G/mlp_mixed.safetensors"
out_has "dtype differs: 0.weight: F32 vs F16 (max abs diff"
out_has "dtype differs: 0.bias: F32 vs BF16"

# ---------------------------------------------------------------------------
# plugins, --plugins
# ---------------------------------------------------------------------------
expect 0 plugins
out_has "linear"
out_has "sequential"
out_has " 0 failed"
mkdir -p "$WORK/empty_plugins"
expect 0 --plugins "$WORK/empty_plugins" plugins
expect 0 plugins --plugins="$WORK/empty_plugins"
expect 1 --plugins "$WORK/no_such_dir" plugins
err_has "nnm plugins: "
err_has "no_such_dir"
expect 1 validate --plugins "$WORK/no_such_dir" "$M/mlp.json"
err_has "no_such_dir"
# A broken plugin is reported (a warning, and a FAILED record) and never
# stops the others.
mkdir -p "$WORK/bad_plugins"
printf 'not an ELF file' >"$WORK/bad_plugins/nnm_junk.so"
expect 0 --plugins "$WORK/bad_plugins" plugins
out_has "FAILED"
out_has " 1 failed"
out_has "sequential"
err_has "nnm plugins: warning: "
err_has "nnm_junk.so"
expect 0 validate --plugins "$WORK/bad_plugins" "$M/mlp.json"
out_has "ok (4 modules, 67 parameters)"
err_has "nnm validate: warning: "

# ---------------------------------------------------------------------------
# Manifests: validate, convert, inspect, --dot, run
# ---------------------------------------------------------------------------
have_dot=0
if command -v dot >/dev/null 2>&1; then
    have_dot=1
else
    echo "note: Graphviz 'dot' is not installed; the --dot output is not rendered"
fi

n_manifests=0
for f in "$M"/*.json; do
    [ -e "$f" ] || continue
    n_manifests=$((n_manifests + 1))
    b=$(basename "$f" .json)
    expect 0 validate "$f"
    out_has "$f: ok ("
    err_empty
    ok_json=$(sed "s|^$f: ||" "$OUT")

    # JSON -> msgpack -> JSON -> msgpack -> JSON: fixed point from the first
    # conversion on, in both formats.
    expect 0 convert "$f" "$WORK/$b.1.msgpack"
    out_empty
    err_empty
    expect 0 convert "$WORK/$b.1.msgpack" "$WORK/$b.1.json"
    expect 0 convert "$WORK/$b.1.json" "$WORK/$b.2.msgpack"
    expect 0 convert "$WORK/$b.2.msgpack" "$WORK/$b.2.json"
    LAST="convert round trip of $b"
    check "$b: JSON differs after a second round trip" cmp "$WORK/$b.1.json" "$WORK/$b.2.json"
    check "$b: msgpack differs after a second round trip" cmp "$WORK/$b.1.msgpack" "$WORK/$b.2.msgpack"
    expect 0 convert --to json "$WORK/$b.1.msgpack" "$WORK/$b.forced.mp"
    check "$b: --to json did not give JSON" cmp "$WORK/$b.1.json" "$WORK/$b.forced.mp"
    expect 0 convert --to msgpack "$WORK/$b.1.json" "$WORK/$b.forced.json"
    check "$b: --to msgpack did not give msgpack" cmp "$WORK/$b.1.msgpack" "$WORK/$b.forced.json"
    expect 0 validate "$WORK/$b.1.msgpack"
    LAST="validate $b.1.msgpack"
    check "$b: msgpack validates differently from JSON" \
        [ "$(sed "s|^$WORK/$b.1.msgpack: ||" "$OUT")" = "$ok_json" ]

    expect 0 inspect "$f"
    out_has "$f"
    out_has "parameters: "
    out_has "plugins:"
    out_has " -> "
    out_has "weights: none"
    err_empty
    expect 0 inspect --dot "$f"
    out_has "digraph "
    out_lacks "(unknown)"   # every graph reference resolves (dotted ones too)
    err_empty
    if [ "$have_dot" -eq 1 ]; then
        LAST="inspect --dot $b | dot -Tsvg"
        check "$b: dot cannot render the --dot output" dot -Tsvg -o /dev/null "$OUT"
    fi
done
LAST="examples/manifests"
check "no manifests in $M" [ "$n_manifests" -gt 0 ]

# mlp: Sequential(Linear(4, 8), ReLU, Linear(8, 3))
if [ -e "$M/mlp.json" ]; then
    expect 0 validate "$M/mlp.json"
    out_has "ok (4 modules, 67 parameters)"
    expect 0 validate -q "$M/mlp.json"
    out_empty
    expect 0 inspect "$M/mlp.json"
    out_has "Sequential("
    out_has "(fc1): Linear(in_features=4, out_features=8"
    out_has "parameters: 67"
    out_has "linear"
    out_has "^1.0"
    out_has "-> 1."
    expect 0 inspect --dot "$M/mlp.json"
    out_has 'label="fc1\nlinear"'
    out_has 'label="act\nrelu"'
    out_has 'm1 -> m2'
    out_has 'm2 -> m3'
    expect 0 run "$M/mlp.json" --input 2x4
    out_has "input 0: shape [2, 4], f32, 8 values"
    out_has "output 0: shape [2, 3], f32, 6 values"
    err_empty
    cp "$OUT" "$WORK/run1"
    expect 0 run "$M/mlp.json" --input 2,4 --seed 0
    check "run: same seed, different output" cmp -s "$OUT" "$WORK/run1"
    expect 0 run "$M/mlp.json" --input '[2, 4]' --seed 7 --eval
    out_has "output 0: shape [2, 3]"
    LAST="run --seed 7"
    check "run: another seed gives the same output" sh -c '! cmp -s "$1" "$2"' sh "$OUT" "$WORK/run1"
    expect 0 run "$M/mlp.json" --input 40x4
    out_has "output 0: shape [40, 3], f32, 120 values"
    out_has "... (104 more)"
    expect 0 run "$M/mlp.json" --input-file "$W/one.safetensors"
    out_has "input 0: shape [2, 4], f32, 8 values"
    out_has "  0.1 -0.2 0.3 -0.4 0.5 -0.6 0.7 -0.8"
    expect 0 run "$M/mlp.json" --input-file "$W/one.safetensors:x"
    expect 1 run "$M/mlp.json" --input 2x5
    err_has "nnm run: "
    err_has "fc1 (linear)"
    err_has "[2, 5]"
    expect 1 run "$M/mlp.json" --input-file "$G/mlp_io.safetensors"
    err_has "holds 3 tensors"
    expect 1 run "$M/mlp.json" --input-file "$G/mlp_io.safetensors:nope"
    err_has "no tensor named 'nope'"
    expect 1 run "$M/mlp.json" --input-file "$W/missing.safetensors"
    err_has "missing.safetensors"
    expect 1 run "$M/mlp.json" --input 2x4 --input 2x4
    err_has "nnm run: "
fi

if [ -e "$M/nested.json" ]; then
    expect 0 validate "$M/nested.json"
    out_has "ok (9 modules, 80 parameters)"
    expect 0 inspect --dot "$M/nested.json"
    out_has "subgraph cluster_"
    out_has 'label="encoder\nsequential"'
fi

if [ -e "$M/residual_block.json" ]; then
    expect 0 inspect --dot "$M/residual_block.json"
    out_has 'label="model\ngraph"'
    out_has '[label="x", shape=ellipse]'
    out_has '[label="sum\nadd"]'
    out_has 'label="output 0"'
    # "sum: fc2, x": two edges into sum, one of them from the graph input x.
    LAST="inspect --dot residual_block.json"
    check "the residual edge x -> sum is missing" grep -q '^ *m0_in0 -> m4;$' "$OUT"
    check "the edge fc2 -> sum is missing" grep -q '^ *m3 -> m4;$' "$OUT"
    expect 0 run "$M/residual_block.json" --input 3x16 --eval
    out_has "output 0: shape [3, 16], f32, 48 values"
fi

# Two files at once: every file is checked, the status says one failed.
cat >"$WORK/bad.json" <<'EOF'
{"format": "nnmod.manifest", "version": 1, "plugins": {"linear": "^1.0"},
 "root": {"type": "linear", "config": {"in_features": "four", "out_features": 3}}}
EOF
expect 1 validate "$M/mlp.json" "$WORK/bad.json" "$M/nested.json"
out_has "$M/mlp.json: ok"
out_has "$M/nested.json: ok"
out_lacks "bad.json"
err_has "nnm validate: $WORK/bad.json: root.config.in_features: expected integer"

# ---------------------------------------------------------------------------
# Broken manifests: nonzero exit, the message names the file and the path in
# the document
# ---------------------------------------------------------------------------
expect 1 validate "$WORK/bad.json"
out_empty
err_has "$WORK/bad.json"
err_has "root.config.in_features"
expect 1 inspect "$WORK/bad.json"
err_has "root.config.in_features"
expect 1 inspect --dot "$WORK/bad.json"
out_empty
expect 1 run "$WORK/bad.json" --input 1x4
err_has "root.config.in_features"
expect 1 convert "$WORK/bad.json" "$WORK/bad_out.json"
err_has "root.config.in_features"
LAST="convert bad.json"
check "convert of an invalid manifest wrote its output" [ ! -e "$WORK/bad_out.json" ]

cat >"$WORK/unknown_plugin.json" <<'EOF'
{"format": "nnmod.manifest", "version": 1, "plugins": {"no_such_layer": "^1.0"},
 "root": {"type": "no_such_layer"}}
EOF
expect 1 validate "$WORK/unknown_plugin.json"
err_has "no_such_layer"

cat >"$WORK/bad_child.json" <<'EOF'
{"format": "nnmod.manifest", "version": 1,
 "plugins": {"sequential": "^1.0", "linear": "^1.0"},
 "root": {"type": "sequential", "children": [
   {"type": "linear", "config": {"in_features": 4, "out_features": 8}},
   {"type": "linear", "config": {"in_features": 8, "out_features": -3}}]}}
EOF
expect 1 validate "$WORK/bad_child.json"
err_has "$WORK/bad_child.json"
err_has "root.children[1]"

cat >"$WORK/bad_graph.json" <<'EOF'
{"format": "nnmod.manifest", "version": 1, "plugins": {"graph": "^1.0", "relu": "^1.0"},
 "root": {"type": "graph",
          "config": {"inputs": ["x"], "nodes": ["a: y"], "outputs": ["a"]},
          "children": [{"name": "a", "type": "relu"}]}}
EOF
expect 1 validate "$WORK/bad_graph.json"
err_has "$WORK/bad_graph.json"
err_has "root.config.nodes[0]"

printf '{"format": "nnmod.manifest", "version": 1, "plugins": {' >"$WORK/truncated.json"
expect 1 validate "$WORK/truncated.json"
err_has "truncated.json"
if [ -e "$WORK/mlp.1.msgpack" ]; then
    head -c 40 "$WORK/mlp.1.msgpack" >"$WORK/truncated.msgpack"
    expect 1 validate "$WORK/truncated.msgpack"
    err_has "truncated.msgpack"
    expect 1 convert "$WORK/truncated.msgpack" "$WORK/truncated_out.json"
fi
: >"$WORK/empty.json"
expect 1 validate "$WORK/empty.json"
err_has "empty.json"
expect 1 validate "$WORK/missing.json"
err_has "missing.json"
expect 1 validate "$WORK"
err_has "nnm validate: "

if [ -e "$M/nested.json" ]; then
    # A module_dict has no forward, like torch.nn.ModuleDict.
    expect 1 run "$M/nested.json" --input 1x6
    err_has "nnm run: "
fi

# ---------------------------------------------------------------------------
# Weights: a manifest naming the PyTorch golden state dict; nnm run's output
# must match PyTorch's
# ---------------------------------------------------------------------------
cp "$G/mlp.safetensors" "$WORK/mlp_weights.safetensors" || exit 1
mlp_manifest() { # mlp_manifest FILE WEIGHTS_JSON
    cat >"$1" <<EOF
{"format": "nnmod.manifest", "version": 1,
 "plugins": {"sequential": "^1.0", "linear": "^1.0", "relu": "^1.0"},
 "root": {"type": "sequential", "children": [
   {"type": "linear", "config": {"in_features": 4, "out_features": 8}},
   {"type": "relu"},
   {"type": "linear", "config": {"in_features": 8, "out_features": 3}}]},
 "weights": $2}
EOF
}
mlp_manifest "$WORK/mlp_w.json" '{"path": "mlp_weights.safetensors"}'
expect 0 validate --weights "$WORK/mlp_w.json"
out_has "ok (4 modules, 67 parameters)"
expect 0 inspect "$WORK/mlp_w.json"
out_has "weights: mlp_weights.safetensors"
expect 0 run "$WORK/mlp_w.json" --input-file "$G/mlp_io.safetensors:input"
out_has "output 0: shape [5, 3], f32, 15 values"
LAST="nnm run mlp_w.json | nnm_fixture check-run"
check "nnm run's output differs from PyTorch's" \
    "$FIX" check-run "$G/mlp_io.safetensors" output 0 <"$OUT"
# --output writes every output in full
expect 0 run "$WORK/mlp_w.json" --input-file "$G/mlp_io.safetensors:input" --output "$WORK/run_out.safetensors"
out_has "wrote 1 output to $WORK/run_out.safetensors"
LAST="nnm run --output | nnm_fixture check-file"
check "nnm run --output differs from PyTorch's" \
    "$FIX" check-file "$G/mlp_io.safetensors" output "$WORK/run_out.safetensors" output_0
expect 1 run "$WORK/mlp_w.json" --input-file "$G/mlp_io.safetensors:input" --output "$WORK/no/such/dir/o.safetensors"
err_has "nnm run: "
usage_error run run "$WORK/mlp_w.json" --input 2x4 --output ""; err_has "--output: empty file name"
expect 0 run "$WORK/mlp_w.json" --no-weights --input-file "$G/mlp_io.safetensors:input"
LAST="nnm run --no-weights | nnm_fixture check-run"
check "--no-weights still loaded the weights" \
    sh -c '! "$1" check-run "$2" output 0 <"$3" 2>/dev/null' sh "$FIX" "$G/mlp_io.safetensors" "$OUT"

mkdir -p "$WORK/elsewhere"
expect 0 convert "$WORK/mlp_w.json" "$WORK/elsewhere/mlp_w.msgpack"
err_has "warning"
err_has "mlp_weights.safetensors"
expect 0 convert "$WORK/mlp_w.json" "$WORK/mlp_w.msgpack"
err_empty
expect 0 run "$WORK/mlp_w.msgpack" --input-file "$G/mlp_io.safetensors:input"
LAST="nnm run mlp_w.msgpack | nnm_fixture check-run"
check "nnm run's output (msgpack manifest) differs from PyTorch's" \
    "$FIX" check-run "$G/mlp_io.safetensors" output 0 <"$OUT"

mlp_manifest "$WORK/mlp_missing.json" '{"path": "no_such_weights.safetensors"}'
expect 0 validate "$WORK/mlp_missing.json"
expect 1 validate --weights "$WORK/mlp_missing.json"
err_has "mlp_missing.json"
err_has "no_such_weights.safetensors"
expect 1 run "$WORK/mlp_missing.json" --input 1x4
err_has "no_such_weights.safetensors"
expect 0 run "$WORK/mlp_missing.json" --no-weights --input 1x4
out_has "output 0: shape [1, 3]"
# --weights: a state dict (PyTorch's) instead of the manifest's, as an
# outside tester runs `nnm run MANIFEST --weights W --input-file X`
expect 0 run "$WORK/mlp_missing.json" --weights "$G/mlp.safetensors" --input-file "$G/mlp_io.safetensors:input"
LAST="nnm run --weights | nnm_fixture check-run"
check "nnm run --weights's output differs from PyTorch's" \
    "$FIX" check-run "$G/mlp_io.safetensors" output 0 <"$OUT"
expect 1 run "$WORK/mlp_w.json" --weights "$G/mlp_io.safetensors" --input 1x4
err_has "mlp_io.safetensors"
err_has "missing key"
usage_error run run "$WORK/mlp_w.json" --weights "$G/mlp.safetensors" --no-weights --input 1x4
err_has "exclude each other"

zeros=0000000000000000000000000000000000000000000000000000000000000000
mlp_manifest "$WORK/mlp_badsha.json" "{\"path\": \"mlp_weights.safetensors\", \"sha256\": \"$zeros\"}"
expect 1 validate --weights "$WORK/mlp_badsha.json"
err_has "sha256"
if command -v sha256sum >/dev/null 2>&1; then
    sum=$(sha256sum "$WORK/mlp_weights.safetensors" | cut -d' ' -f1)
    mlp_manifest "$WORK/mlp_sha.json" "{\"path\": \"mlp_weights.safetensors\", \"sha256\": \"$sum\"}"
    expect 0 validate --weights "$WORK/mlp_sha.json"
    expect 0 inspect "$WORK/mlp_sha.json"
    out_has "weights: mlp_weights.safetensors (sha256 $sum)"
fi

# ---------------------------------------------------------------------------
# One set of checks for validate, inspect and run (issue 9 section 4): the
# same refusal, with the document path, from each; validate and inspect
# allocate no parameters (meta device), --max-param-bytes bounds a build
# ---------------------------------------------------------------------------
L=$(printf '%0250d' 0 | tr 0 a)
LONG=$WORK/long_names.json
{
    printf '{"format": "nnmod.manifest", "version": 1, "plugins": {"sequential": "^1.0", "linear": "^1.0"}, '
    printf '"root": {"type": "sequential", "children": ['
    for _ in 1 2 3 4 5; do printf '{"name": "%s", "type": "sequential", "children": [' "$L"; done
    printf '{"name": "fc", "type": "linear", "config": {"in_features": 1, "out_features": 1}}'
    printf ']}]}]}]}]}]}}\n'
} >"$LONG"
for cmd in validate inspect "run --input 1x1"; do
    # shellcheck disable=SC2086
    expect 1 $cmd "$LONG"
    err_has "root.children[0].children[0].children[0].children[0].children[0].name: the module's dotted name would be 1254 bytes, more than 1023"
done
for cmd in validate inspect "run --input 2x4"; do
    # shellcheck disable=SC2086
    expect 1 $cmd --max-param-bytes 267 "$M/mlp.json"
    err_has "mlp.json: root: the model's parameters and buffers would take 268 bytes, more than 267 (limits.max_param_bytes)"
    # shellcheck disable=SC2086
    expect 0 $cmd --max-param-bytes=268 "$M/mlp.json"
done
usage_error validate validate --max-param-bytes 0 "$M/mlp.json"
BIG=$WORK/big.json
{
    printf '{"format": "nnmod.manifest", "version": 1, "plugins": {"sequential": "^1.0", "linear": "^1.0"}, '
    printf '"root": {"type": "sequential", "children": ['
    for i in 1 2 3 4 5 6 7 8 9 10; do
        [ "$i" -gt 1 ] && printf ', '
        printf '{"type": "linear", "config": {"in_features": 83666, "out_features": 83666}}'
    done
    printf ']}}\n'
} >"$BIG"
# 70 billion parameters: validated (and inspected) without allocating them
expect 0 validate --max-param-bytes 300000000000 "$BIG"
out_has "ok (11 modules, 70000832220 parameters)"
expect 0 inspect --max-param-bytes 300000000000 "$BIG"
out_has "Total params: 70000832220"
expect 1 validate "$BIG"
err_has "would take 280003328880 bytes, more than 17179869184 (limits.max_param_bytes)"

# ---------------------------------------------------------------------------
# Untrusted text (weights files, manifests, plugin files) never reaches the
# terminal raw: control characters are escaped (\x1b), long texts are cut
# ---------------------------------------------------------------------------
ESC=$(printf '\033')
no_esc() { # no_esc FILE: the file has no ESC, BEL or CR byte
    n_checks=$((n_checks + 1))
    if LC_ALL=C grep -q "$(printf '[\033\007\r]')" "$1"; then
        fail "raw control characters in $1"
        show
    fi
}
# a safetensors file whose tensor name and metadata hold control sequences
HDR='{"__metadata__":{"k\u001b]0;owned\u0007":"v\u001b[2J"},"t\u001b[31mred":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
while [ $(( ${#HDR} % 8 )) -ne 0 ]; do HDR="$HDR "; done
{
    printf "\\$(printf %o ${#HDR})\\000\\000\\000\\000\\000\\000\\000"
    printf '%s' "$HDR"
    printf '\000\000\000\000'
} >"$WORK/esc.safetensors"
expect 0 weights inspect "$WORK/esc.safetensors"
out_has 't\x1b[31mred'
out_has 'k\x1b]0;owned\x07: v\x1b[2J'
no_esc "$OUT"
expect 0 weights inspect --json "$WORK/esc.safetensors"
out_has 't\u001b[31mred'
no_esc "$OUT"
expect 0 weights diff --metadata "$WORK/esc.safetensors" "$WORK/esc.safetensors"
no_esc "$OUT"
# a manifest key with a control sequence, named in the error message
printf '{"format": "nnmod.manifest", "version": 1, "plugins": {"linear": "^1.0"},\n "root": {"type": "linear", "config": {"in_features": 4, "out_features": 2, "x\\u001b[2Jy": 1}}}\n' >"$WORK/esc_key.json"
expect 1 validate "$WORK/esc_key.json"
err_has 'x\x1b[2Jy'
no_esc "$ERR"
# a plugin directory whose file names hold control sequences, and a very long one
PD="$WORK/plug${ESC}[31mins"
mkdir -p "$PD"
echo "not a shared object, long enough to hold an ELF header for the dynamic linker" >"$PD/bad${ESC}]0;x$(printf '\007').so"
expect 0 plugins --plugins "$PD"
out_has 'plug\x1b[31mins/bad\x1b]0;x\x07.so'
no_esc "$OUT"
# a metadata value of 3000 bytes is cut
LONG=$(printf '%03000d' 0)
HDR="{\"__metadata__\":{\"long\":\"$LONG\"},\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}"
while [ $(( ${#HDR} % 8 )) -ne 0 ]; do HDR="$HDR "; done
{
    printf "\\$(printf %o $(( ${#HDR} % 256 )))\\$(printf %o $(( ${#HDR} / 256 )))\\000\\000\\000\\000\\000\\000"
    printf '%s' "$HDR"
    printf '\000\000\000\000'
} >"$WORK/long.safetensors"
expect 0 weights inspect "$WORK/long.safetensors"
out_has '  long: 0000000000'
out_has '...'
check "a line of the output is longer than 1100 bytes" [ "$(awk 'length > 1100' "$OUT" | wc -l)" -eq 0 ]

# ---------------------------------------------------------------------------
# --input-file keeps a BOOL tensor bool: multihead_attention's key_padding_mask
# (tests/golden/make_nnm_run_golden.py), matched against PyTorch
# ---------------------------------------------------------------------------
R=$SRC/tests/golden/nnm_run
expect 0 run "$R/mha_kpm.manifest.json" --eval --outputs 2 --input-file "$R/mha_kpm_io.safetensors:query" \
    --input-file "$R/mha_kpm_io.safetensors:key" --input-file "$R/mha_kpm_io.safetensors:value" \
    --input-file "$R/mha_kpm_io.safetensors:mask"
out_has "input 3: shape [2, 3], bool, 6 values"
LAST="nnm run mha_kpm.manifest.json | nnm_fixture check-run"
check "nnm run's attention output differs from PyTorch's" \
    "$FIX" check-run "$R/mha_kpm_io.safetensors" output 0 <"$OUT"
check "nnm run's attention weights differ from PyTorch's" \
    "$FIX" check-run "$R/mha_kpm_io.safetensors" weights 1 <"$OUT"
# attn_mask alone (an absent key_padding_mask: a 0-element tensor), kdim/vdim,
# add_bias_kv, add_zero_attn, weights under PyTorch's names: what an outside
# tester compares through --output
expect 0 run "$R/mha_kv.manifest.json" --eval --outputs 2 --input-file "$R/mha_kv_io.safetensors:query" \
    --input-file "$R/mha_kv_io.safetensors:key" --input-file "$R/mha_kv_io.safetensors:value" \
    --input-file "$R/mha_kv_io.safetensors:none" --input-file "$R/mha_kv_io.safetensors:attn_mask" \
    --output "$WORK/mha_kv_out.safetensors"
out_has "input 3: shape [0], f32, 0 values"
LAST="nnm run mha_kv.manifest.json --output | nnm_fixture check-file"
check "nnm run's attention output (attn_mask, kdim, bias_kv) differs from PyTorch's" \
    "$FIX" check-file "$R/mha_kv_io.safetensors" output "$WORK/mha_kv_out.safetensors" output_0
check "nnm run's attention weights (attn_mask, kdim, bias_kv) differ from PyTorch's" \
    "$FIX" check-file "$R/mha_kv_io.safetensors" weights "$WORK/mha_kv_out.safetensors" output_1

# ---------------------------------------------------------------------------
# The graph language v2: a module called by two nodes, names PyTorch allows
# (in backticks), a parameter of the graph's own, named outputs (a dict)
# ---------------------------------------------------------------------------
cat >"$WORK/named.json" <<'EOF_NAMED'
{"format": "nnmod.manifest", "version": 1,
 "plugins": {"graph": "^1.1", "relu": "^1.0", "add": "^1.0", "module_dict": "^1.0"},
 "root": {"type": "graph", "config": {
   "parameters": ["shift: [3] ones"],
   "nodes": ["h = `block1-0`(x)", "s = add(h, shift)", "y = `my heads`.`cls:1`(s)",
             "z = `block1-0`(y)"],
   "outputs": ["z", "s"], "output_names": ["out", "aux"]},
  "children": [{"name": "block1-0", "type": "relu"}, {"name": "add", "type": "add"},
               {"name": "my heads", "type": "module_dict",
                "children": [{"name": "cls:1", "type": "relu"}]}]}}
EOF_NAMED
expect 0 validate "$WORK/named.json"
expect 0 inspect "$WORK/named.json"
out_has "(block1-0): ReLU"
out_has "(my heads): ModuleDict"
out_has "(cls:1): ReLU"
out_has "parameters: 3"
expect 0 inspect --dot "$WORK/named.json"
LAST="inspect --dot named.json"
check "the edge from the graph parameter into add is missing" grep -q '^ *m0_t0 -> m2;$' "$OUT"
check "the call of my heads.cls:1 on s is missing" grep -q '^ *m2 -> m4;$' "$OUT"
check "the second call of block1-0 is missing" grep -q '^ *m4 -> m1;$' "$OUT"
check "the output's name is missing" grep -q 'label="output 0 (out)"' "$OUT"
expect 0 run "$WORK/named.json" --input 2x3 --output "$WORK/named_out.safetensors"
out_has "output 0 (out): shape [2, 3], f32, 6 values"
out_has "output 1 (aux): shape [2, 3], f32, 6 values"
out_has "wrote 2 outputs to $WORK/named_out.safetensors"
expect 0 weights inspect "$WORK/named_out.safetensors"
out_has "out"
out_has "aux"
out_lacks "output_0"

# ---------------------------------------------------------------------------
# Output that cannot be written is a failure, never a silent success
# ---------------------------------------------------------------------------
if [ -w /dev/full ]; then
    LAST="nnm --help >/dev/full"
    "$NNM" --help >/dev/full 2>"$ERR"
    rc=$?
    check "exit status $rc, expected 1" [ $rc -eq 1 ]
    err_has "error writing to standard output"
    LAST="nnm weights diff A B >/dev/full"
    "$NNM" weights diff "$W/a.safetensors" "$W/a_far.safetensors" >/dev/full 2>"$ERR"
    rc=$?
    check "exit status $rc, expected 2 (trouble, not 'differ')" [ $rc -eq 2 ]
fi

# ---------------------------------------------------------------------------
echo "$n_checks checks, $n_failed failed"
[ "$n_failed" -eq 0 ]
