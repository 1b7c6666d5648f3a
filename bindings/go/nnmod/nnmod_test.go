package nnmod

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

var mlp = filepath.Join("..", "..", "..", "examples", "manifests", "mlp.json")

func newCtx(t *testing.T) *Context {
	t.Helper()
	ctx, err := NewContext()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctx.Close() })
	return ctx
}

func load(t *testing.T, ctx *Context) *Module {
	t.Helper()
	m, err := ctx.LoadManifest(mlp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// must is for calls that only fail when something else is broken already:
// the test stops with the error (a panic fails the test, naming it).
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestConstantsMatchTheLibrary(t *testing.T) {
	for name, want := range map[string]int{"NNM_OK": OK, "NNM_E_SHAPE": EShape, "NNM_E_HOOK": EHook,
		"NNM_E_LIMIT": ELimit, "NNM_MAX_IO": maxIO, "NNM_MAX_DIMS": maxDims} {
		v, ok := Constant(name)
		if !ok || int(v) != want {
			t.Errorf("%s: library %d (%v), Go %d", name, v, ok, want)
		}
	}
	if _, ok := Constant("NNM_NOPE"); ok {
		t.Error("unknown constant found")
	}
	if StatusName(EShape) != "NNM_E_SHAPE" || Version() == "" {
		t.Error("names")
	}
}

func TestForwardAndStructure(t *testing.T) {
	ctx := newCtx(t)
	if err := ctx.Synchronize(); err != nil { // CPU only: nothing queued
		t.Fatal(err)
	}
	m := load(t, ctx)
	if m.Type() != "sequential" || m.Path() != "" || m.NumParams() != 67 {
		t.Fatalf("%s %q %d", m.Type(), m.Path(), m.NumParams())
	}
	mods := must(m.NamedModules())
	var names []string
	for _, nm := range mods {
		names = append(names, nm.Name)
		nm.Module.Close()
	}
	if strings.Join(names, ",") != ",fc1,act,fc2" {
		t.Errorf("named modules %v", names)
	}
	fc2 := m.Get("fc2")
	if fc2 == nil || fc2.Path() != "fc2" || fc2.Type() != "linear" {
		t.Fatal("Get(fc2)")
	}
	fc2.Close()
	if m.Get("nope") != nil {
		t.Error("Get(nope)")
	}
	if !strings.Contains(m.String(), "Linear") {
		t.Error(m.String())
	}
	x := must(ctx.Tensor([]int64{5, 4}, make([]float32, 20)))
	defer x.Close()
	y := must(m.Forward(x))
	defer y.Close()
	if s := y.Shape(); len(s) != 2 || s[0] != 5 || s[1] != 3 {
		t.Errorf("shape %v", s)
	}
	ys := must(m.Call([]*Tensor{x}, 1))
	a, b := must(ys[0].Data()), must(y.Data())
	for i := range a {
		if a[i] != b[i] {
			t.Fatal("Call and Forward differ")
		}
	}
	ys[0].Close()
}

func TestErrorsCarryStatusAndPath(t *testing.T) {
	ctx := newCtx(t)
	if _, err := ctx.LoadManifest("/nonexistent/m.json"); err == nil || !strings.Contains(err.Error(), "/nonexistent/m.json") {
		t.Errorf("missing manifest: %v", err)
	}
	m := load(t, ctx)
	bad := must(ctx.Tensor([]int64{2, 5}, nil))
	defer bad.Close()
	_, err := m.Forward(bad)
	var e *Error
	if !errors.As(err, &e) || e.Status != EShape || e.Name != "NNM_E_SHAPE" || !strings.Contains(e.Message, "fc1 (linear)") {
		t.Fatalf("wrong shape: %#v", err)
	}
	if !errors.Is(err, &Error{Status: EShape}) {
		t.Error("errors.Is by status")
	}
	if _, err := ctx.Tensor([]int64{2, 2}, []float32{1}); err == nil {
		t.Error("data of the wrong length accepted")
	}
	if _, err := ctx.CreateModule("no_such_layer", nil); err == nil || !strings.Contains(err.Error(), "no_such_layer") {
		t.Errorf("unknown layer: %v", err)
	}
	lin := must(ctx.CreateModule("linear", Config{"in_features": 2, "out_features": 3, "bias": false}))
	defer lin.Close()
	if ps := must(lin.NamedParameters()); len(ps) != 1 || ps[0].Name != "weight" {
		t.Errorf("linear without bias: %v", ps)
	}
	x := must(ctx.Tensor([]int64{1}, []float32{1}))
	x.Close()
	x.Close() // idempotent
	if _, err := m.Forward(x); err == nil {
		t.Error("a closed tensor was accepted")
	}
}

func TestHooksAreGoFuncs(t *testing.T) {
	ctx := newCtx(t)
	m := load(t, ctx)
	x := must(ctx.Tensor([]int64{1, 4}, []float32{1, -1, 0.5, 2}))
	defer x.Close()
	var seen []string
	h := must(ctx.RegisterForwardHook(func(c *ForwardHookCall) error {
		seen = append(seen, fmt.Sprintf("%s %v", c.Module.Path(), c.Outputs[0].Shape()))
		return nil
	}))
	y := must(m.Forward(x))
	y.Close()
	if got := strings.Join(seen, ";"); got != "fc1 [1 8];act [1 8];fc2 [1 3]; [1 3]" {
		t.Errorf("hook saw %q", got)
	}
	if !h.Live() || !h.Remove() || h.Remove() || h.Live() {
		t.Error("Remove: first true, then false")
	}
	h.Close()
	y = must(m.Forward(x))
	y.Close()
	if len(seen) != 4 {
		t.Error("a removed hook ran")
	}

	// replace the output; fail; panic
	fc2 := m.Get("fc2")
	defer fc2.Close()
	zeros := must(ctx.Tensor([]int64{1, 3}, nil))
	defer zeros.Close()
	h1 := must(fc2.RegisterForwardHook(func(c *ForwardHookCall) error { return c.SetOutput(0, zeros) }))
	y = must(m.Forward(x))
	if d := must(y.Data()); d[0] != 0 || d[1] != 0 || d[2] != 0 {
		t.Errorf("output not replaced: %v", d)
	}
	y.Close()
	h1.Remove()
	h2 := must(fc2.RegisterForwardHook(func(c *ForwardHookCall) error { return NewError(EInvalid, "fc2 says no") }))
	_, err := m.Forward(x)
	var e *Error
	if !errors.As(err, &e) || e.Status != EInvalid || !strings.Contains(e.Message, "fc2 says no") {
		t.Errorf("hook error: %v", err)
	}
	h2.Remove()
	h3 := must(fc2.RegisterForwardPreHook(func(c *ForwardPreHookCall) error { panic("boom in a Go hook") }))
	_, err = m.Forward(x)
	if !errors.As(err, &e) || e.Status != EHook || !strings.Contains(e.Message, "boom in a Go hook") {
		t.Errorf("hook panic: %v", err)
	}
	h3.Remove()
	y = must(m.Forward(x))
	y.Close()

	// prepend and always_call
	var order []string
	ha := must(fc2.RegisterForwardHook(func(*ForwardHookCall) error { order = append(order, "a"); return nil }))
	hb := must(fc2.RegisterForwardHookWith(HookOptions{Prepend: true}, func(*ForwardHookCall) error { order = append(order, "b"); return nil }))
	y = must(m.Forward(x))
	y.Close()
	if strings.Join(order, "") != "ba" {
		t.Errorf("prepend: %v", order)
	}
	ha.Remove()
	hb.Remove()
	ran := false
	hf := must(fc2.RegisterForwardPreHook(func(*ForwardPreHookCall) error { return NewError(EHook, "no") }))
	hc := must(fc2.RegisterForwardHookWith(HookOptions{AlwaysCall: true}, func(*ForwardHookCall) error { ran = true; return nil }))
	if _, err := m.Forward(x); err == nil || !ran {
		t.Errorf("always_call: err %v, ran %v", err, ran)
	}
	hf.Remove()
	hc.Remove()
}

// The runtime drops a hook's Go function when its module dies (the
// cgo.Handle is deleted by the destructor), and the handle stays usable.
func TestHookFreedWithItsModule(t *testing.T) {
	ctx := newCtx(t)
	m, err := ctx.CreateModule("relu", nil)
	if err != nil {
		t.Fatal(err)
	}
	before := liveHooks.Load()
	h := must(m.RegisterForwardHook(func(*ForwardHookCall) error { return nil }))
	h2 := must(m.RegisterForwardPreHook(func(*ForwardPreHookCall) error { return nil }))
	h2.Close() // closing a handle keeps its hook
	if liveHooks.Load() != before+2 {
		t.Fatalf("live hooks %d, want %d", liveHooks.Load(), before+2)
	}
	m.Close()
	if h.Live() || h.Remove() {
		t.Error("the hook outlived its module")
	}
	if liveHooks.Load() != before {
		t.Errorf("the runtime kept %d Go hook functions after the module died", liveHooks.Load()-before)
	}
	h.Close()
	// a global hook is dropped with its context
	ctx2 := must(NewContext())
	must(ctx2.RegisterForwardHook(func(*ForwardHookCall) error { return nil })).Close()
	ctx2.Close()
	if liveHooks.Load() != before {
		t.Error("a global hook outlived its context")
	}
}

func TestBackwardAndSGD(t *testing.T) {
	ctx := newCtx(t)
	m := load(t, ctx)
	data := make([]float32, 16)
	for i := range data {
		data[i] = float32(i-8) / 8
	}
	x := must(ctx.Tensor([]int64{4, 4}, data))
	defer x.Close()
	opt := must(SGD(m, 0.1, 0, 0, 0, false))
	defer opt.Close()
	var losses []float32
	for i := 0; i < 5; i++ {
		if err := opt.ZeroGrad(); err != nil {
			t.Fatal(err)
		}
		y := must(m.Forward(x))
		sq := must(y.Mul(y))
		loss := must(sq.Mean())
		losses = append(losses, must(loss.Item()))
		if err := loss.Backward(); err != nil {
			t.Fatal(err)
		}
		for _, p := range must(m.NamedParameters()) {
			g := p.Tensor.Grad()
			if g == nil {
				t.Fatalf("%s has no grad", p.Name)
			}
			g.Close()
			p.Tensor.Close()
		}
		if err := opt.Step(); err != nil {
			t.Fatal(err)
		}
		y.Close()
		sq.Close()
		loss.Close()
	}
	if !(losses[4] < losses[0]) {
		t.Errorf("loss did not go down: %v", losses)
	}
}

// Grad mode belongs to the Context, so it holds whatever OS thread the
// goroutine runs on: the test moves its goroutine across threads.
func TestGradModeIsPerContextNotPerThread(t *testing.T) {
	ctx := newCtx(t)
	m := load(t, ctx)
	x := must(ctx.Tensor([]int64{1, 4}, nil))
	defer x.Close()
	err := ctx.NoGrad(func() error {
		for i := 0; i < 50; i++ {
			runtime.Gosched() // may resume on another thread
			y, err := m.Forward(x)
			if err != nil {
				return err
			}
			if y.RequiresGrad() {
				t.Fatal("recorded under NoGrad")
			}
			y.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !ctx.GradEnabled() {
		t.Fatal("NoGrad did not restore")
	}
	y := must(m.Forward(x))
	defer y.Close()
	if !y.RequiresGrad() {
		t.Error("grad mode off after NoGrad")
	}
	// another context's mode is its own, even on the same thread
	other := newCtx(t)
	other.SetGradEnabled(false)
	y2 := must(m.Forward(x))
	defer y2.Close()
	if !y2.RequiresGrad() {
		t.Error("another context's grad mode leaked")
	}
}

// One context per goroutine, in parallel.
func TestContextsInParallel(t *testing.T) {
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			ctx, err := NewContext()
			if err != nil {
				errs <- err
				return
			}
			defer ctx.Close()
			m, err := ctx.LoadManifest(mlp)
			if err != nil {
				errs <- err
				return
			}
			defer m.Close()
			ctx.SetGradEnabled(g%2 == 0)
			for i := 0; i < 20; i++ {
				x, _ := ctx.Tensor([]int64{2, 4}, nil)
				y, err := m.Forward(x)
				if err != nil {
					errs <- err
					return
				}
				if y.RequiresGrad() != (g%2 == 0) {
					errs <- NewError(EState, "grad mode crossed contexts")
					return
				}
				y.Close()
				x.Close()
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Values never closed are released by the context through finalizers, on
// the goroutine that uses it.
func TestFinalizersQueueReleases(t *testing.T) {
	ctx := newCtx(t)
	for i := 0; i < 100; i++ {
		_, _ = ctx.Tensor([]int64{8}, nil) // dropped without Close
	}
	for i := 0; i < 5 && ctx.npend.Load() == 0; i++ {
		runtime.GC()
	}
	runtime.GC()
	// finalizers run asynchronously: wait for progress, not time
	for i := 0; i < 1000 && ctx.npend.Load() == 0; i++ {
		runtime.GC()
		runtime.Gosched()
	}
	if ctx.npend.Load() == 0 {
		t.Skip("the GC ran no finalizer in this run")
	}
	ctx.Collect()
	if ctx.npend.Load() != 0 {
		t.Error("Collect left releases queued")
	}
}


func TestFullBackwardHook(t *testing.T) {
	ctx := newCtx(t)
	m := load(t, ctx)
	x := must(ctx.Tensor([]int64{1, 4}, []float32{1, -1, 0.5, 2}))
	defer x.Close()
	fc2 := m.Get("fc2")
	defer fc2.Close()
	zeros := must(ctx.Tensor([]int64{1, 8}, nil))
	defer zeros.Close()
	var seen []string
	h := must(fc2.RegisterFullBackwardHook(func(b *BackwardHookCall) error {
		seen = append(seen, fmt.Sprint(b.Module.Path(), b.GradInputs[0].Shape(), b.GradOutputs[0].Shape()))
		return b.SetGradInput(0, zeros) // nothing flows below fc2
	}))
	y := must(m.Forward(x))
	sq := must(y.Mul(y))
	loss := must(sq.Sum())
	if err := loss.Backward(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(seen, ";") != "fc2[1 8] [1 3]" {
		t.Errorf("backward hook saw %v", seen)
	}
	for _, p := range must(m.NamedParameters()) {
		g := p.Tensor.Grad()
		if p.Name == "fc1.weight" && g != nil {
			for _, v := range must(g.Data()) {
				if v != 0 {
					t.Fatal("fc1 got a gradient through the zeroed input")
				}
			}
		}
		if g != nil {
			g.Close()
		}
		p.Tensor.Close()
	}
	h.Remove()
	y.Close()
	sq.Close()
	loss.Close()
}

// A global full backward hook sees every module called with grad mode on,
// as backward reaches them, before the module's own hook.
func TestGlobalFullBackwardHook(t *testing.T) {
	ctx := newCtx(t)
	m := load(t, ctx)
	x := must(ctx.Tensor([]int64{1, 4}, []float32{1, -1, 0.5, 2}))
	defer x.Close()
	fc2 := m.Get("fc2")
	defer fc2.Close()
	var seen []string
	g := must(ctx.RegisterFullBackwardHook(func(b *BackwardHookCall) error {
		seen = append(seen, "global:"+b.Module.Path())
		return nil
	}))
	h := must(fc2.RegisterFullBackwardHook(func(b *BackwardHookCall) error {
		seen = append(seen, "own:"+b.Module.Path())
		return nil
	}))
	y := must(m.Forward(x))
	loss := must(y.Sum())
	if err := loss.Backward(); err != nil {
		t.Fatal(err)
	}
	// PyTorch 1.13, the same Sequential with an input that needs no grad:
	// the root's hook first (it has no input gradient to wait for), then
	// '2', '1', '0' ([], fc2, act, fc1 here).
	got := strings.Join(seen, ";")
	if got != "global:;global:fc2;own:fc2;global:act;global:fc1" {
		t.Errorf("backward hooks ran as %q", got)
	}
	if !g.Remove() || !h.Remove() {
		t.Error("Remove: the hooks were gone already")
	}
	seen = nil
	y2 := must(m.Forward(x))
	loss2 := must(y2.Sum())
	if err := loss2.Backward(); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 0 {
		t.Errorf("removed hooks still ran: %v", seen)
	}
	for _, p := range must(m.NamedParameters()) {
		p.Tensor.Close()
	}
	y.Close()
	loss.Close()
	y2.Close()
	loss2.Close()
}
