#!/bin/sh
# tests/docs/test_doc_pages.sh - the documentation's commands, programs and
# outputs, extracted from the pages (extract_snippets) and run as a stranger
# runs them: from a scratch directory that holds `examples/` and `tests/` of
# the source tree, with `nnm` (and `build/bin/nnm`) being the built tool.
#
# usage: test_doc_pages.sh MODE EXTRACT SOURCE_DIR NNM LIBDIR WORK_DIR [TOOL]
#
#   MODE cli   docs/nnm.md's transcripts (```console blocks: each "$ " line is
#              run and its output compared with the lines under it, numbers
#              within a relative 1e-5, everything else exactly), README.md's
#              nnm commands (each must exit 0) and, when TOOL (a Python with
#              NumPy) is given, docs/bindings.md's first Python program and
#              docs/training.md's "Your own data" (save a dataset with the
#              binding, `nnm train` on it) and docs/writing-a-plugin.md's
#              gradient check (on that page's doc_cube plugin, $NNM_DOC_CUBE);
#   MODE rust  docs/bindings.md's first Rust program and its Rust plugin
#              (built with TOOL = cargo, offline, the plugin then run by nnm
#              from a manifest that names its qualified layer);
#   MODE go    docs/bindings.md's first Go program (TOOL = go, GOPROXY=off).
#
# Environment: PKG_CONFIG_PATH (the build tree's nnmod.pc), NNM_TEST_PRELOAD
# (sanitizer runtimes for programs not built with them). Plain POSIX sh.
set -u

if [ $# -lt 6 ]; then
    echo "usage: $0 cli|rust|go EXTRACT SOURCE_DIR NNM LIBDIR WORK_DIR [TOOL]" >&2
    exit 2
fi
MODE=$1
EXTRACT=$2
SRC=$3
NNM=$4
LIBDIR=$5
WORK=$6
TOOL=${7:-}
PRELOAD=${NNM_TEST_PRELOAD:-}
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}exitcode=99:detect_leaks=0"
export ASAN_OPTIONS

n_failed=0
fail() {
    echo "FAIL: $*" >&2
    n_failed=$((n_failed + 1))
}

# A scratch directory that looks like a checkout after the build.
rm -rf "$WORK" || exit 1
mkdir -p "$WORK/bin" "$WORK/build/bin" "$WORK/snip" "$WORK/tmp" || exit 1
ln -s "$SRC/examples" "$WORK/examples" || exit 1
ln -s "$SRC/tests" "$WORK/tests" || exit 1
for w in "$WORK/bin/nnm" "$WORK/build/bin/nnm"; do
    printf '#!/bin/sh\nexec "%s" "$@"\n' "$NNM" >"$w" && chmod +x "$w" || exit 1
done
PATH=$WORK/bin:$PATH
export PATH
S=$WORK/snip

# extract PAGE NAME...: the page's snippets into $S (every snippet the page
# marks must be named: none drops out of the tests unnoticed)
BINDINGS_SNIPPETS="py_first rs_first rs_plugin go_first"
extract() {
    page=$1
    shift
    "$EXTRACT" "$SRC/$page" "$S" "$@" || fail "extracting $* from $page"
}

# same_text EXPECTED ACTUAL: line by line, field by field; numeric fields
# within 1e-5 relative (another CPU's BLAS may round the last digit another
# way), other fields exactly.
same_text() {
    awk -v exp_file="$1" '
        function isnum(s) { return s ~ /^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$/ }
        function abs(v) { return v < 0 ? -v : v }
        {
            if ((getline e < exp_file) <= 0) { print "extra line: " $0; bad = 1; exit }
            n = split($0, a, /[ \t]+/); m = split(e, b, /[ \t]+/)
            if (n != m) { print "got:  " $0; print "want: " e; bad = 1; next }
            for (i = 1; i <= n; i++) {
                if (a[i] == b[i]) continue
                if (isnum(a[i]) && isnum(b[i]) &&
                    abs(a[i] - b[i]) <= 1e-5 * (abs(a[i]) > abs(b[i]) ? abs(a[i]) : abs(b[i])) + 1e-30)
                    continue
                print "got:  " $0; print "want: " e; bad = 1; break
            }
        }
        END {
            if (!bad && (getline e < exp_file) > 0) { print "missing line: " e; bad = 1 }
            exit bad
        }' "$2"
}

# transcript FILE.console: runs each "$ CMD" in $WORK, compares its stdout
transcript() {
    f=$1
    rm -f "$S"/t.cmd.* "$S"/t.exp.*
    awk -v base="$S/t" '
        /^\$ / { n++; print substr($0, 3) > (base ".cmd." n); printf "" > (base ".exp." n); next }
        n > 0 { print > (base ".exp." n) }' "$f"
    i=1
    while [ -f "$S/t.cmd.$i" ]; do
        cmd=$(cat "$S/t.cmd.$i")
        (cd "$WORK" && sh -c "$cmd") >"$S/t.out" 2>"$S/t.err"
        rc=$?
        if [ "$rc" -ne 0 ]; then
            fail "$(basename "$f"): '$cmd' exited $rc: $(cat "$S/t.err")"
        elif ! same_text "$S/t.exp.$i" "$S/t.out" >"$S/t.diff"; then
            fail "$(basename "$f"): '$cmd' does not print what the page says:"
            sed 's/^/  | /' "$S/t.diff" >&2
        fi
        i=$((i + 1))
    done
    [ "$i" -gt 1 ] || fail "$(basename "$f"): no '\$ ' command line"
}

# run_py FILE...: the files concatenated, run by the Python TOOL in $WORK
run_py() {
    cat "$@" >"$S/run.py" || return 1
    (cd "$WORK" && env PYTHONPATH="$SRC/bindings/python" PYTHONDONTWRITEBYTECODE=1 \
        NNMOD_LIBRARY="$LIBDIR/libnnmod.so" ${PRELOAD:+LD_PRELOAD=$PRELOAD} \
        "$TOOL" "$S/run.py")
}

# run_prog PROGRAM ARGS...: a program not built with the sanitizers
run_prog() {
    env ${PRELOAD:+LD_PRELOAD=$PRELOAD} LD_LIBRARY_PATH="$LIBDIR" "$@"
}

case "$MODE" in
cli)
    extract docs/nnm.md nnm_version nnm_validate nnm_inspect nnm_run nnm_weights_inspect
    for n in nnm_version nnm_validate nnm_inspect nnm_run nnm_weights_inspect; do
        [ -f "$S/$n.console" ] && transcript "$S/$n.console"
    done

    extract README.md readme_nnm
    if [ -f "$S/readme_nnm.sh" ]; then
        # the page writes to /tmp: keep it inside the scratch directory
        sed "s#/tmp/#$WORK/tmp/#g" "$S/readme_nnm.sh" >"$S/readme.sh"
        (cd "$WORK" && sh -e "$S/readme.sh") >"$S/readme.out" 2>&1 ||
            fail "README.md's nnm commands: $(cat "$S/readme.out")"
    fi

    if [ -z "$TOOL" ]; then
        echo "no Python with NumPy: the Python snippets are not run"
    else
        extract docs/bindings.md $BINDINGS_SNIPPETS
        run_py "$S/py_first.py" >"$S/py.out" 2>&1 || fail "bindings.md's first Python program: $(cat "$S/py.out")"
        grep -q '^Total params: 67$' "$S/py.out" || fail "bindings.md's first Python program printed: $(cat "$S/py.out")"

        # training.md, "Your own data": a dataset the page's way (X, y: what
        # the reader has; 4 u8 features, 3 classes), then `nnm train` on it
        extract docs/training.md train_own_data_py train_own_data
        cat >"$S/data_prelude.py" <<'EOF'
import numpy as np
rng = np.random.default_rng(0)
X = rng.integers(0, 256, (96, 4)).astype("uint8")
y = (X[:, 0] // 86).astype("int64")
Xt = rng.integers(0, 256, (32, 4)).astype("uint8")
yt = (Xt[:, 0] // 86).astype("int64")
EOF
        cp "$SRC/examples/manifests/mlp.json" "$WORK/my_model.json"
        if ! run_py "$S/data_prelude.py" "$S/train_own_data_py.py" >"$S/data.out" 2>&1; then
            fail "training.md's dataset snippet: $(cat "$S/data.out")"
        elif ! (cd "$WORK" && sh -e "$S/train_own_data.sh") >"$S/train.out" 2>&1; then
            fail "training.md's nnm train on your own data: $(cat "$S/train.out")"
        elif [ ! -f "$WORK/runs/mine/best.safetensors" ] || [ ! -f "$WORK/runs/mine/last.safetensors" ] ||
            ! grep -q '^test accuracy: ' "$S/train.out"; then
            fail "training.md's nnm train on your own data wrote no checkpoints: $(cat "$S/train.out")"
        fi

        # writing-a-plugin.md, "Checking the gradient": the page's function on
        # the page's cube plugin, which it loads as ./doc_cube.so
        extract docs/writing-a-plugin.md doc_swish doc_cube doc_host doc_center doc_cxx py_gradcheck
        if [ -z "${NNM_DOC_CUBE:-}" ] || ! cp "$NNM_DOC_CUBE" "$WORK/doc_cube.so"; then
            fail "writing-a-plugin.md's gradient check: no doc_cube plugin (NNM_DOC_CUBE)"
        elif ! run_py "$S/py_gradcheck.py" >"$S/gc.out" 2>&1; then
            fail "writing-a-plugin.md's gradient check: $(cat "$S/gc.out")"
        fi
    fi

    # writing-a-plugin.md section 5: a plugin installed AND loaded from its
    # build directory is two files of one name and version; the request is
    # refused, and the pin the message suggests (a path, as both files have
    # the same name) must settle it
    if [ -n "${NNM_DOC_CUBE:-}" ]; then
        mkdir -p "$WORK/installed" "$WORK/builddir"
        cp "$NNM_DOC_CUBE" "$WORK/installed/doc_cube.so"
        cp "$NNM_DOC_CUBE" "$WORK/builddir/doc_cube.so"
        printf '%s\n' '{"format": "nnmod.manifest", "version": 1,' \
            ' "plugins": {"doc_cube.cube": "^1"}, "root": {"type": "doc_cube.cube"}}' >"$WORK/cube.json"
        (cd "$WORK" && nnm run --plugins installed --plugins builddir cube.json --input 3) >"$S/amb.out" 2>&1
        pin=$(sed -n "s/.*pin a provider ('doc_cube\.cube@1\.0\.0#\([^']*\)').*/\1/p" "$S/amb.out")
        case "$pin" in
        /*) ;;
        *) fail "two copies of one plugin: the message suggests no path pin: $(cat "$S/amb.out")" ;;
        esac
        grep -q "ask for a qualified name" "$S/amb.out" &&
            fail "a qualified request is told to ask for a qualified name: $(cat "$S/amb.out")"
        printf '%s\n' '{"format": "nnmod.manifest", "version": 1,' \
            " \"plugins\": {\"doc_cube.cube\": {\"version\": \"^1\", \"provider\": \"$pin\"}}," \
            ' "root": {"type": "doc_cube.cube"}}' >"$WORK/cube_pin.json"
        (cd "$WORK" && nnm run --plugins installed --plugins builddir cube_pin.json --input 3) >"$S/pin.out" 2>&1 ||
            fail "the suggested pin '$pin' does not settle it: $(cat "$S/pin.out")"
        # nnm.md: --plugins also takes one plugin file; one that does not
        # load is a warning naming it, and the model then lacks its layer
        (cd "$WORK" && nnm run --plugins builddir/doc_cube.so cube.json --input 3) >"$S/file.out" 2>&1 ||
            fail "nnm run --plugins FILE.so: $(cat "$S/file.out")"
        echo "not a plugin" >"$WORK/junk.so"
        (cd "$WORK" && nnm run --plugins junk.so cube.json --input 3) >"$S/junk.out" 2>&1 &&
            fail "nnm run --plugins junk.so succeeded"
        grep -q "warning: .*/junk.so: not a loadable shared object" "$S/junk.out" ||
            fail "nnm run --plugins junk.so does not say why: $(cat "$S/junk.out")"
    fi
    ;;
rust)
    extract docs/bindings.md $BINDINGS_SNIPPETS
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$WORK/target}"
    mkdir -p "$WORK/rs_first/src" "$WORK/rs_plugin/src"
    cat >"$WORK/rs_first/Cargo.toml" <<EOF
[package]
name = "doc_first"
version = "0.1.0"
edition = "2021"

[dependencies]
nnmod = { path = "$SRC/bindings/rust/nnmod" }
EOF
    cat >"$WORK/rs_plugin/Cargo.toml" <<EOF
[package]
name = "doc_double"
version = "0.1.0"
edition = "2021"

[lib]
crate-type = ["cdylib"]

[dependencies]
nnmod-plugin = { path = "$SRC/bindings/rust/nnmod-plugin" }
EOF
    cp "$S/rs_first.rs" "$WORK/rs_first/src/main.rs"
    cp "$S/rs_plugin.rs" "$WORK/rs_plugin/src/lib.rs"
    if ! "$TOOL" build --offline --quiet --manifest-path "$WORK/rs_first/Cargo.toml" >"$S/b.out" 2>&1; then
        fail "bindings.md's first Rust program does not build: $(cat "$S/b.out")"
    elif ! (cd "$WORK" && run_prog "$CARGO_TARGET_DIR/debug/doc_first") >"$S/rs.out" 2>&1; then
        fail "bindings.md's first Rust program: $(cat "$S/rs.out")"
    else
        # println!("{model}") is print(model): the repr, then the hooks' lines
        sed -n '/^Total params: 67$/{n;p;}' "$S/rs.out" | grep -q '^fc1 -> \[2, 8\]$' ||
            fail "bindings.md's first Rust program printed: $(cat "$S/rs.out")"
    fi
    if ! "$TOOL" build --offline --quiet --manifest-path "$WORK/rs_plugin/Cargo.toml" >"$S/b.out" 2>&1; then
        fail "bindings.md's Rust plugin does not build: $(cat "$S/b.out")"
    else
        mkdir -p "$WORK/rsplug" && cp "$CARGO_TARGET_DIR/debug/libdoc_double.so" "$WORK/rsplug/"
        cat >"$WORK/double.json" <<'EOF'
{"format": "nnmod.manifest", "version": 1, "plugins": {"example.double": "^1"},
 "root": {"type": "example.double"}}
EOF
        if ! (cd "$WORK" && nnm run --plugins rsplug double.json --input 1x3) >"$S/d.out" 2>&1; then
            fail "bindings.md's Rust plugin as example.double: $(cat "$S/d.out")"
        else
            # output = 2 * input
            awk '/^input 0/ { getline; split($0, x) } /^output 0/ { getline; split($0, y) }
                 END { for (i = 1; i <= 3; i++) if ((y[i] - 2 * x[i]) ^ 2 > 1e-10) exit 1 }' "$S/d.out" ||
                fail "bindings.md's Rust plugin does not double: $(cat "$S/d.out")"
        fi
    fi
    ;;
go)
    extract docs/bindings.md $BINDINGS_SNIPPETS
    mkdir -p "$WORK/go_first"
    cat >"$WORK/go_first/go.mod" <<EOF
module docfirst

go 1.19

require nnmod.local/nnmod v0.0.0
replace nnmod.local/nnmod => $SRC/bindings/go/nnmod
EOF
    {
        printf 'package main\n\nimport (\n\t"fmt"\n\t"os"\n\n\t"nnmod.local/nnmod"\n)\n\nfunc run() error {\n'
        cat "$S/go_first.go"
        printf '}\n\nfunc main() {\n\tif err := run(); err != nil {\n\t\tfmt.Fprintln(os.Stderr, err)\n\t\tos.Exit(1)\n\t}\n}\n'
    } >"$WORK/go_first/main.go"
    if ! (cd "$WORK/go_first" && GOPROXY=off GOFLAGS=-mod=mod GOSUMDB=off GOTOOLCHAIN=local CGO_ENABLED=1 \
        "$TOOL" build -o "$WORK/doc_first" .) >"$S/b.out" 2>&1; then
        fail "bindings.md's first Go program does not build: $(cat "$S/b.out")"
    elif ! (cd "$WORK" && run_prog "$WORK/doc_first") >"$S/go.out" 2>&1; then
        fail "bindings.md's first Go program: $(cat "$S/go.out")"
    elif ! grep -q '^fc2 \[2 3\]$' "$S/go.out" || ! tail -n 1 "$S/go.out" | grep -q '^\[2 3\]$'; then
        fail "bindings.md's first Go program printed: $(cat "$S/go.out")"
    fi
    ;;
*)
    echo "$0: unknown mode '$MODE'" >&2
    exit 2
    ;;
esac

if [ "$n_failed" -ne 0 ]; then
    echo "test_doc_pages $MODE: $n_failed failed" >&2
    exit 1
fi
echo "test_doc_pages $MODE: ok"
exit 0
