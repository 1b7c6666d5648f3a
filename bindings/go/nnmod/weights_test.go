package nnmod

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func seeded(t *testing.T, seed uint64) *Context {
	t.Helper()
	ctx, err := NewContextWithOptions(Options{Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctx.Close() })
	return ctx
}

func input(t *testing.T, ctx *Context) *Tensor {
	data := make([]float32, 16)
	for i := range data {
		data[i] = float32(i-8) / 8
	}
	x := must(ctx.Tensor([]int64{4, 4}, data))
	t.Cleanup(func() { x.Close() })
	return x
}

// trainStep runs loss = mean(m(x)^2), backward and opt.Step; returns the loss.
func trainStep(t *testing.T, m *Module, opt *Optimizer, x *Tensor) float32 {
	t.Helper()
	if err := opt.ZeroGrad(); err != nil {
		t.Fatal(err)
	}
	y := must(m.Forward(x))
	defer y.Close()
	sq := must(y.Mul(y))
	defer sq.Close()
	loss := must(sq.Mean())
	defer loss.Close()
	if err := loss.Backward(); err != nil {
		t.Fatal(err)
	}
	if err := opt.Step(); err != nil {
		t.Fatal(err)
	}
	return must(loss.Item())
}

// params are the parameters' values as bits (exact comparison).
func params(m *Module) map[string][]uint32 {
	out := map[string][]uint32{}
	for _, p := range must(m.NamedParameters()) {
		out[p.Name] = bits(must(p.Tensor.Data()))
		p.Tensor.Close()
	}
	return out
}

func bits(v []float32) []uint32 {
	b := make([]uint32, len(v))
	for i, f := range v {
		b[i] = math.Float32bits(f)
	}
	return b
}

func output(m *Module, x *Tensor) []uint32 {
	y := must(m.Forward(x))
	defer y.Close()
	return bits(must(y.Data()))
}

// part is Sequential(fc1=Linear(in, 8)), from a manifest: a file with
// fc1's keys only. Returns the module and its fc1.
func part(t *testing.T, ctx *Context, in int) (*Module, *Module) {
	path := filepath.Join(t.TempDir(), "part.json")
	mf := fmt.Sprintf(`{"format": "nnmod.manifest", "version": 1,
  "plugins": {"sequential": "^1.0", "linear": "^1.0"},
  "root": {"type": "sequential", "children": [
    {"name": "fc1", "type": "linear", "config": {"in_features": %d, "out_features": 8}}]}}`, in)
	if err := os.WriteFile(path, []byte(mf), 0o600); err != nil {
		t.Fatal(err)
	}
	seq := must(ctx.LoadManifest(path))
	t.Cleanup(func() { seq.Close() })
	fc1 := seq.Get("fc1")
	t.Cleanup(func() { fc1.Close() })
	return seq, fc1
}

func TestAdamOptionsAndLR(t *testing.T) {
	ctx := newCtx(t)
	m := load(t, ctx)
	x := input(t, ctx)
	for _, o := range []AdamOptions{NewAdamOptions(1e-2),
		{LR: 1e-2, Beta1: 0.9, Beta2: 0.99, Eps: 1e-6, WeightDecay: 0.1, AMSGrad: true, Decoupled: true}} {
		opt := must(Adam(m, o))
		var losses []float32
		for i := 0; i < 5; i++ {
			losses = append(losses, trainStep(t, m, opt, x))
		}
		if !(losses[4] < losses[0]) {
			t.Errorf("%+v: loss did not go down: %v", o, losses)
		}
		if opt.LR(0) != 1e-2 {
			t.Errorf("lr %v", opt.LR(0))
		}
		if err := opt.SetLR(0, 1e-3); err != nil || opt.LR(0) != 1e-3 {
			t.Errorf("SetLR: %v %v", err, opt.LR(0))
		}
		opt.Close()
		if err := opt.Step(); !errors.Is(err, &Error{Status: EState}) {
			t.Errorf("step after close: %v", err)
		}
		opt.Close()
	}
	// invalid options are the library's NNM_E_INVALID, with its message
	_, err := Adam(m, AdamOptions{LR: 1e-3, Beta1: 1.5, Beta2: 0.999, Eps: 1e-8})
	var e *Error
	if !errors.As(err, &e) || e.Status != EInvalid || e.Message == "" {
		t.Errorf("bad betas: %v", err)
	}
}

func TestTrainedWeightsRoundTripExactly(t *testing.T) {
	dir := t.TempDir()
	ctx := seeded(t, 7)
	m := load(t, ctx)
	x := input(t, ctx)
	sgd := must(SGD(m, 0.1, 0.9, 0, 0, false))
	defer sgd.Close()
	adam := must(Adam(m, NewAdamOptions(1e-2)))
	defer adam.Close()
	for i := 0; i < 3; i++ {
		trainStep(t, m, sgd, x)
		trainStep(t, m, adam, x)
	}
	path := filepath.Join(dir, "mlp.safetensors")
	if err := m.Save(path, map[string]string{"epoch": "3", "note": "trained"}); err != nil {
		t.Fatal(err)
	}
	meta := must(ctx.FileMetadata(path))
	if meta["epoch"] != "3" || meta["note"] != "trained" || meta["nnmod_version"] == "" {
		t.Errorf("metadata %v", meta)
	}

	// a fresh module of another seed (other initial weights) gets them all
	ctx2 := seeded(t, 8)
	fresh := load(t, ctx2)
	x2 := input(t, ctx2)
	want := output(m, x)
	if reflect.DeepEqual(output(fresh, x2), want) {
		t.Fatal("the fresh module already computes the same")
	}
	rep, err := fresh.Load(path, true)
	if err != nil || !rep.Empty() {
		t.Fatalf("load: %v %+v", err, rep)
	}
	if !reflect.DeepEqual(output(fresh, x2), want) {
		t.Error("outputs differ after load")
	}
	if p1, p2 := params(m), params(fresh); len(p1) != 4 || !reflect.DeepEqual(p1, p2) {
		t.Error("parameters differ after load")
	}
	if err := m.Save(path, map[string]string{"a\x00b": "v"}); !errors.Is(err, &Error{Status: EInvalid}) {
		t.Errorf("NUL in a key: %v", err)
	}
}

func TestMissingKeysAreReported(t *testing.T) {
	dir := t.TempDir()
	ctx := seeded(t, 7)
	m := load(t, ctx)
	seq, fc1 := part(t, ctx, 4)
	path := filepath.Join(dir, "fc1.safetensors")
	if err := seq.Save(path, nil); err != nil {
		t.Fatal(err)
	}
	before := params(m)
	rep, err := m.Load(path, true)
	if !errors.Is(err, &Error{Status: ENotFound}) {
		t.Fatalf("strict load of a partial file: %v", err)
	}
	if !reflect.DeepEqual(rep.Missing, []string{"fc2.weight", "fc2.bias"}) || rep.Unexpected != nil || rep.Mismatched != nil {
		t.Errorf("report %+v", rep)
	}
	if !reflect.DeepEqual(params(m), before) {
		t.Error("a refused load changed the module")
	}
	// not strict: fc1 loads, fc2 is reported
	rep, err = m.Load(path, false)
	if err != nil || !reflect.DeepEqual(rep.Missing, []string{"fc2.weight", "fc2.bias"}) {
		t.Fatalf("non-strict: %v %+v", err, rep)
	}
	after, want := params(m), params(fc1)
	if !reflect.DeepEqual(after["fc1.weight"], want["weight"]) || !reflect.DeepEqual(after["fc2.weight"], before["fc2.weight"]) {
		t.Error("non-strict load")
	}
	// a shape that does not fit is refused even when not strict
	seq2, _ := part(t, ctx, 5)
	if err := seq2.Save(path, nil); err != nil {
		t.Fatal(err)
	}
	rep, err = m.Load(path, false)
	if !errors.Is(err, &Error{Status: EShape}) || len(rep.Mismatched) != 1 {
		t.Errorf("mismatch: %v %+v", err, rep)
	}
}

func TestStateDicts(t *testing.T) {
	ctx := seeded(t, 7)
	m := load(t, ctx)
	sd := must(m.StateDict())
	defer sd.Close()
	if !reflect.DeepEqual(sd.Keys(), []string{"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}) || sd.Len() != 4 {
		t.Fatalf("keys %v", sd.Keys())
	}
	if sd.Get("nope") != nil || sd.Get("a\x00b") != nil {
		t.Error("Get of an absent key")
	}
	// the entries share the module's storage
	b := sd.Get("fc2.bias")
	if err := b.SetData([]float32{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if got := params(m)["fc2.bias"]; !reflect.DeepEqual(got, bits([]float32{1, 2, 3})) {
		t.Errorf("fc2.bias %v", got)
	}
	// into a fresh module: identical outputs
	fresh := load(t, ctx)
	x := input(t, ctx)
	if rep, err := fresh.LoadStateDict(sd, true); err != nil || !rep.Empty() {
		t.Fatalf("%v %+v", err, rep)
	}
	if !reflect.DeepEqual(output(fresh, x), output(m, x)) {
		t.Error("outputs differ")
	}
	// a hand-made dict with two keys and an extra one
	d := must(ctx.NewStateDict())
	defer d.Close()
	for i, e := range sd.Entries() {
		if i < 2 {
			if err := d.Set(e.Name, e.Tensor); err != nil {
				t.Fatal(err)
			}
		}
		e.Tensor.Close()
	}
	extra := must(ctx.Tensor([]int64{1}, []float32{0}))
	defer extra.Close()
	if err := d.Set("extra", extra); err != nil {
		t.Fatal(err)
	}
	rep, err := fresh.LoadStateDict(d, true)
	if !errors.Is(err, &Error{Status: ENotFound}) ||
		!reflect.DeepEqual(rep, LoadReport{Missing: []string{"fc2.weight", "fc2.bias"}, Unexpected: []string{"extra"}}) {
		t.Errorf("strict: %v %+v", err, rep)
	}
	if rep, err = fresh.LoadStateDict(d, false); err != nil || !reflect.DeepEqual(rep.Unexpected, []string{"extra"}) {
		t.Errorf("non-strict: %v %+v", err, rep)
	}
	// a tensor of another context, a closed dict: errors
	other := newCtx(t)
	ot := must(other.Tensor([]int64{1}, []float32{0}))
	defer ot.Close()
	if err := d.Set("x", ot); !errors.Is(err, &Error{Status: EInvalid}) {
		t.Errorf("another context's tensor: %v", err)
	}
	d.Close()
	if _, err := fresh.LoadStateDict(d, true); !errors.Is(err, &Error{Status: EState}) || d.Len() != 0 || d.Keys() != nil {
		t.Errorf("closed dict: %v", err)
	}
}

func TestCheckpointsResumeExactly(t *testing.T) {
	dir := t.TempDir()
	kinds := map[string]func(*Module) (*Optimizer, error){
		"sgd": func(m *Module) (*Optimizer, error) { return SGD(m, 0.05, 0.9, 0, 0, false) },
		"adam": func(m *Module) (*Optimizer, error) { // two groups: fc2 at its own rate
			o := must(Adam(m, NewAdamOptions(1e-2)))
			if g, err := o.AddGroup("fc2.", 1e-3, 0); err != nil || g != 1 {
				return nil, fmt.Errorf("AddGroup: %d %v", g, err)
			}
			return o, nil
		},
		"adamw": func(m *Module) (*Optimizer, error) {
			o := NewAdamOptions(1e-2)
			o.WeightDecay, o.Decoupled = 0.1, true
			return Adam(m, o)
		},
	}
	for kind, newOpt := range kinds {
		ctx := seeded(t, 7)
		m := load(t, ctx)
		x := input(t, ctx)
		opt := must(newOpt(m))
		defer opt.Close()
		for i := 0; i < 3; i++ {
			trainStep(t, m, opt, x)
		}
		path := filepath.Join(dir, kind+".ckpt")
		if err := SaveCheckpoint(path, m, opt, map[string]string{"epoch": "3"}); err != nil {
			t.Fatal(err)
		}
		loss4 := trainStep(t, m, opt, x)
		after4 := params(m)

		// resume with another context and seed
		ctx2 := seeded(t, 99)
		m2 := load(t, ctx2)
		x2 := input(t, ctx2)
		opt2 := must(newOpt(m2))
		defer opt2.Close()
		if err := LoadCheckpoint(path, m2, opt2); err != nil {
			t.Fatal(err)
		}
		if l := trainStep(t, m2, opt2, x2); math.Float32bits(l) != math.Float32bits(loss4) {
			t.Errorf("%s: next loss %v, want %v", kind, l, loss4)
		}
		if !reflect.DeepEqual(params(m2), after4) {
			t.Errorf("%s: parameters after the resumed step differ", kind)
		}
		if must(ctx2.FileMetadata(path))["epoch"] != "3" {
			t.Errorf("%s: metadata", kind)
		}
		if kind == "adam" {
			if opt2.Groups() != 2 || opt2.LR(1) != 1e-3 {
				t.Errorf("groups %d, lr %v", opt2.Groups(), opt2.LR(1))
			}
			// the same kind in other groups is refused
			one := must(Adam(m2, NewAdamOptions(1e-2)))
			if err := LoadCheckpoint(path, m2, one); !errors.Is(err, &Error{Status: EInvalid}) {
				t.Errorf("other groups: %v", err)
			}
			one.Close()
		}
		// another kind of optimizer is refused and nothing changes
		before := params(m2)
		var wrong *Optimizer
		if kind == "sgd" {
			wrong = must(Adam(m2, NewAdamOptions(1e-2)))
		} else {
			wrong = must(SGD(m2, 0.1, 0, 0, 0, false))
		}
		if err := LoadCheckpoint(path, m2, wrong); !errors.Is(err, &Error{Status: EInvalid}) {
			t.Errorf("%s: wrong optimizer: %v", kind, err)
		}
		wrong.Close()
		if !reflect.DeepEqual(params(m2), before) {
			t.Errorf("%s: a refused checkpoint changed the module", kind)
		}
		if err := LoadCheckpoint(path, m2, nil); err != nil {
			t.Errorf("%s: weights only: %v", kind, err)
		}
	}
	ctx := newCtx(t)
	m := load(t, ctx)
	if err := SaveCheckpoint(filepath.Join(dir, "x.ckpt"), m, nil, map[string]string{"nnmod_x": "1"}); !errors.Is(err, &Error{Status: EInvalid}) {
		t.Errorf("reserved key: %v", err)
	}
}

func TestCorruptFilesAreErrors(t *testing.T) {
	dir := t.TempDir()
	ctx := seeded(t, 7)
	m := load(t, ctx)
	opt := must(Adam(m, NewAdamOptions(1e-2)))
	defer opt.Close()
	good := filepath.Join(dir, "good.ckpt")
	if err := SaveCheckpoint(good, m, opt, nil); err != nil {
		t.Fatal(err)
	}
	data := must(os.ReadFile(good))
	hlen := int(binary.LittleEndian.Uint64(data[:8]))
	broken := append([]byte(nil), data...)
	broken[9] = '#'
	huge := append([]byte(nil), data...)
	binary.LittleEndian.PutUint64(huge[:8], math.MaxUint64)
	cases := [][]byte{{}, data[:5], data[:8+hlen/2], data[:len(data)-7], []byte("not a safetensors file at all"), broken, huge}
	before := params(m)
	bad := filepath.Join(dir, "bad.ckpt")
	for i, c := range cases {
		if err := os.WriteFile(bad, c, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Load(bad, true); err == nil {
			t.Errorf("case %d: strict load", i)
		}
		if _, err := m.Load(bad, false); err == nil {
			t.Errorf("case %d: load", i)
		}
		if err := LoadCheckpoint(bad, m, opt); err == nil {
			t.Errorf("case %d: checkpoint", i)
		}
		if _, err := ctx.FileMetadata(bad); err == nil {
			t.Errorf("case %d: metadata", i)
		}
		if !reflect.DeepEqual(params(m), before) {
			t.Errorf("case %d: the module changed", i)
		}
	}
	if _, err := m.Load(filepath.Join(dir, "absent"), true); !errors.Is(err, &Error{Status: EIO}) {
		t.Errorf("absent file: %v", err)
	}
	if _, err := m.Load("bad\x00path", true); !errors.Is(err, &Error{Status: EInvalid}) {
		t.Errorf("NUL in the path: %v", err)
	}
	m.Close()
	if _, err := m.Load(good, true); !errors.Is(err, &Error{Status: EState}) {
		t.Errorf("closed module: %v", err)
	}
}
