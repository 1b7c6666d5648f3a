// Package nnmod is the Go binding of nnmod, PyTorch's nn.Module contract as
// a C runtime (libnnmod), through cgo and the standard library only.
//
// Object model: a Context owns plugins, the allocator and the error message;
// a Module is a module tree made from a manifest or a layer; a Tensor is a
// reference-counted n-d array. Each Go value holds one reference to its C
// object, dropped by Close(). Close is idempotent; a finalizer is a safety
// net for values that are never closed (it does not call C itself: it queues
// the reference, and the Context releases it at its next call, on the
// goroutine that uses the context, so the C threading contract holds).
//
// Threads: a Context and everything made from it may be used by one
// goroutine at a time (or guarded by the caller's mutex); different Contexts
// may be used in parallel. Grad mode is a property of the Context in Go
// (SetGradEnabled, NoGrad), not of an OS thread: every call that depends on
// it sets the thread's grad mode, runs, and restores it inside one cgo call,
// so a goroutine moving between threads can never see the wrong mode.
//
// Errors: every fallible call returns an *Error carrying the status code, its
// name and the context's message, which names the module path.
package nnmod

/*
#cgo pkg-config: nnmod
#include <stdlib.h>
#include <nnmod/nnmod.h>
*/
import "C"

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Status codes (nnmod.h); cgo reads them from the header.
const (
	OK            = int(C.NNM_OK)
	EInvalid      = int(C.NNM_E_INVALID)
	ENoMem        = int(C.NNM_E_NOMEM)
	EShape        = int(C.NNM_E_SHAPE)
	EDType        = int(C.NNM_E_DTYPE)
	EDevice       = int(C.NNM_E_DEVICE)
	ENotFound     = int(C.NNM_E_NOT_FOUND)
	EType         = int(C.NNM_E_TYPE)
	EVersion      = int(C.NNM_E_VERSION)
	ELoad         = int(C.NNM_E_LOAD)
	EUnsupported  = int(C.NNM_E_UNSUPPORTED)
	EState        = int(C.NNM_E_STATE)
	EIO           = int(C.NNM_E_IO)
	EPlugin       = int(C.NNM_E_PLUGIN)
	EHook         = int(C.NNM_E_HOOK)
	ENoDevice     = int(C.NNM_E_NO_DEVICE)
	EExists       = int(C.NNM_E_EXISTS)
	ELimit        = int(C.NNM_E_LIMIT)
	maxIO         = int(C.NNM_MAX_IO)
	maxDims       = int(C.NNM_MAX_DIMS)
)

// Error is a failed nnmod call.
type Error struct {
	Status  int    // NNM_E_* (negative)
	Name    string // "NNM_E_SHAPE"
	Message string // the context's message: "fc1 (linear): ..."
}

func (e *Error) Error() string { return e.Name + ": " + e.Message }

// Is makes errors.Is(err, &nnmod.Error{Status: nnmod.EShape}) match by status.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Status == e.Status
}

// StatusName is the static name of a status code ("NNM_E_SHAPE").
func StatusName(status int) string { return C.GoString(C.nnm_status_name(C.nnm_status(status))) }

// NewError makes an error of `status` with `message`, e.g. for a hook to
// fail the call.
func NewError(status int, message string) *Error {
	return &Error{Status: status, Name: StatusName(status), Message: message}
}

func errorOf(ctx *C.nnm_ctx, st C.nnm_status) error {
	if st == C.NNM_OK {
		return nil
	}
	return &Error{Status: int(st), Name: StatusName(int(st)), Message: C.GoString(C.nnm_ctx_errmsg(ctx))}
}

// Constant returns an integer constant of the C headers by name
// ("NNM_UNARY_RELU"), through nnm_constant.
func Constant(name string) (int64, bool) {
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	var v C.int64_t
	if C.nnm_constant(cs, &v) != C.NNM_OK {
		return 0, false
	}
	return int64(v), true
}

// Version is the library's version ("0.4.0").
func Version() string { return C.GoString(C.nnm_version()) }

// Context is an nnmod context. Use it from one goroutine at a time.
type Context struct {
	c      *C.nnm_ctx
	noGrad bool // grad mode of this context's calls (see the package doc)

	mu      sync.Mutex // guards pending (finalizers run on their own goroutine)
	pending []func()   // releases queued by finalizers
	npend   atomic.Int32
}

// Options for NewContextWithOptions.
type Options struct {
	NoDiscovery bool   // do not scan the default plugin paths
	Seed        uint64 // parameter-init seed; 0: the library's default
}

// NewContext makes a context that discovers plugins (NNM_PLUGIN_PATH, beside
// libnnmod, the installed directory).
func NewContext() (*Context, error) { return NewContextWithOptions(Options{}) }

func NewContextWithOptions(o Options) (*Context, error) {
	var opts C.nnm_ctx_options
	opts.struct_size = C.uint32_t(unsafe.Sizeof(opts))
	if o.NoDiscovery {
		opts.flags = C.NNM_CTX_NO_DISCOVERY
	}
	opts.seed = C.uint64_t(o.Seed)
	var c *C.nnm_ctx
	if st := C.nnm_ctx_new(&opts, &c); st != C.NNM_OK {
		return nil, errorOf(nil, st)
	}
	ctx := &Context{c: c}
	runtime.SetFinalizer(ctx, func(x *Context) { x.Close() })
	return ctx, nil
}

// Close frees the context. Modules and tensors still open keep what they
// need (the C context is reference counted) until they are closed.
func (x *Context) Close() error {
	if x.c == nil {
		return nil
	}
	x.drain()
	C.nnm_ctx_free(x.c)
	x.c = nil
	runtime.SetFinalizer(x, nil)
	return nil
}

func (x *Context) live() (*C.nnm_ctx, error) {
	if x == nil || x.c == nil {
		return nil, NewError(EState, "the context is closed")
	}
	x.collect()
	return x.c, nil
}

// collect runs the queued releases, if any (one atomic load otherwise).
func (x *Context) collect() {
	if x.npend.Load() != 0 {
		x.drain()
	}
}

// queue is what finalizers call: the release runs at the context's next call.
func (x *Context) queue(f func()) {
	x.mu.Lock()
	x.pending = append(x.pending, f)
	x.npend.Store(int32(len(x.pending)))
	x.mu.Unlock()
}

func (x *Context) drain() {
	x.mu.Lock()
	p := x.pending
	x.pending = nil
	x.npend.Store(0)
	x.mu.Unlock()
	for _, f := range p {
		f()
	}
}

// Collect releases the references that finalizers queued (it also happens
// at every call on the context).
func (x *Context) Collect() { x.drain() }

// Synchronize waits for the work queued on the context's devices (as
// torch.cuda.synchronize) and returns what that work failed with; a
// CPU-only context returns at once.
func (x *Context) Synchronize() error {
	c, err := x.live()
	if err != nil {
		return err
	}
	return errorOf(c, C.nnm_ctx_synchronize(c))
}

// LastError is the message of the last failure on the context.
func (x *Context) LastError() string {
	if x.c == nil {
		return ""
	}
	return C.GoString(C.nnm_ctx_errmsg(x.c))
}

// SetGradEnabled sets the grad mode of every later call made through this
// context (forward, ops); returns the previous mode.
func (x *Context) SetGradEnabled(on bool) bool {
	prev := !x.noGrad
	x.noGrad = !on
	return prev
}

// GradEnabled is the context's grad mode (true unless set otherwise).
func (x *Context) GradEnabled() bool { return !x.noGrad }

// NoGrad runs f with grad mode off for this context (torch.no_grad()).
func (x *Context) NoGrad(f func() error) error {
	prev := x.SetGradEnabled(false)
	defer x.SetGradEnabled(prev)
	return f()
}

func (x *Context) grad() C.int {
	if x.noGrad {
		return 0
	}
	return 1
}

// LoadPlugin loads one plugin file.
func (x *Context) LoadPlugin(path string) error {
	c, err := x.live()
	if err != nil {
		return err
	}
	cs := C.CString(path)
	defer C.free(unsafe.Pointer(cs))
	return errorOf(c, C.nnm_plugin_load(c, cs))
}

// LoadManifest reads a manifest (JSON or msgpack) and builds its module
// tree, loading the weights it names.
func (x *Context) LoadManifest(path string) (*Module, error) {
	c, err := x.live()
	if err != nil {
		return nil, err
	}
	cs := C.CString(path)
	defer C.free(unsafe.Pointer(cs))
	var mf *C.nnm_manifest
	if st := C.nnm_manifest_load(c, cs, C.NNM_MANIFEST_AUTO, nil, &mf); st != C.NNM_OK {
		return nil, errorOf(c, st)
	}
	var m *C.nnm_module
	st := C.nnm_manifest_build(mf, 0, &m)
	C.nnm_manifest_free(mf)
	if st != C.NNM_OK {
		return nil, errorOf(c, st)
	}
	return newModule(x, c, m), nil
}

// Config is a layer config for CreateModule: int, int64, float64, bool,
// string, []int64 or []float64 values.
type Config map[string]any

// CreateModule makes a module of the layer `request` ("linear", "linear@^1").
func (x *Context) CreateModule(request string, cfg Config) (*Module, error) {
	c, err := x.live()
	if err != nil {
		return nil, err
	}
	var cc *C.nnm_config
	if st := C.nnm_config_new(&cc); st != C.NNM_OK {
		return nil, NewError(int(st), "cannot make a config")
	}
	defer C.nnm_config_free(cc)
	for k, v := range cfg {
		ck := C.CString(k)
		var st C.nnm_status
		switch v := v.(type) {
		case int:
			st = C.nnm_config_set_int(cc, ck, C.int64_t(v))
		case int64:
			st = C.nnm_config_set_int(cc, ck, C.int64_t(v))
		case float64:
			st = C.nnm_config_set_float(cc, ck, C.double(v))
		case bool:
			b := 0
			if v {
				b = 1
			}
			st = C.nnm_config_set_bool(cc, ck, C.int(b))
		case string:
			cv := C.CString(v)
			st = C.nnm_config_set_str(cc, ck, cv)
			C.free(unsafe.Pointer(cv))
		case []int64:
			var p *C.int64_t
			if len(v) > 0 {
				p = (*C.int64_t)(unsafe.Pointer(&v[0]))
			}
			st = C.nnm_config_set_ints(cc, ck, p, C.size_t(len(v)))
		case []float64:
			var p *C.double
			if len(v) > 0 {
				p = (*C.double)(unsafe.Pointer(&v[0]))
			}
			st = C.nnm_config_set_floats(cc, ck, p, C.size_t(len(v)))
		default:
			C.free(unsafe.Pointer(ck))
			return nil, NewError(EType, fmt.Sprintf("config key %q: unsupported Go type %T", k, v))
		}
		C.free(unsafe.Pointer(ck))
		if st != C.NNM_OK {
			return nil, NewError(int(st), fmt.Sprintf("config key %q refused", k))
		}
	}
	cr := C.CString(request)
	defer C.free(unsafe.Pointer(cr))
	var m *C.nnm_module
	if st := C.nnm_module_create(c, cr, cc, &m); st != C.NNM_OK {
		return nil, errorOf(c, st)
	}
	return newModule(x, c, m), nil
}

func numel(shape []int64) (int, error) {
	if len(shape) > maxDims {
		return 0, NewError(EShape, fmt.Sprintf("%d dims; at most %d", len(shape), maxDims))
	}
	n := 1
	for _, d := range shape {
		if d < 0 {
			return 0, NewError(EShape, fmt.Sprintf("negative dim in %v", shape))
		}
		n *= int(d)
	}
	return n, nil
}

// Tensor makes a CPU f32 tensor of `shape` holding a copy of `data`
// (row-major; nil: zeros).
func (x *Context) Tensor(shape []int64, data []float32) (*Tensor, error) {
	c, err := x.live()
	if err != nil {
		return nil, err
	}
	n, err := numel(shape)
	if err != nil {
		return nil, err
	}
	var pd *C.float
	if data != nil {
		if len(data) != n {
			return nil, NewError(EShape, fmt.Sprintf("shape %v holds %d elements, data has %d", shape, n, len(data)))
		}
		if n > 0 {
			pd = (*C.float)(unsafe.Pointer(&data[0]))
		}
	}
	var ps *C.int64_t
	if len(shape) > 0 {
		ps = (*C.int64_t)(unsafe.Pointer(&shape[0]))
	}
	var t *C.nnm_tensor
	if st := C.nnm_tensor_from_f32(c, C.int32_t(len(shape)), ps, pd, &t); st != C.NNM_OK {
		return nil, errorOf(c, st)
	}
	return newTensor(x, c, t), nil
}
