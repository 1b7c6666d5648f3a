package nnmod

/*
#include <stdlib.h>
#include <nnmod/nnmod.h>
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"
)

// Module is one reference to an nnmod module (and, through it, its subtree).
type Module struct {
	m   *C.nnm_module
	c   *C.nnm_ctx // valid while m lives
	ctx *Context
}

func newModule(ctx *Context, c *C.nnm_ctx, m *C.nnm_module) *Module {
	x := &Module{m: m, c: c, ctx: ctx}
	runtime.SetFinalizer(x, finalizeModule)
	return x
}

func finalizeModule(x *Module) {
	if m := x.m; m != nil {
		x.ctx.queue(func() { C.nnm_module_release(m) })
	}
}

// Close releases this reference (the last one destroys the module). Idempotent.
func (x *Module) Close() error {
	if x.m != nil {
		x.ctx.collect()
		C.nnm_module_release(x.m)
		x.m = nil
		runtime.SetFinalizer(x, nil)
	}
	return nil
}

func (x *Module) live() (*C.nnm_module, error) {
	if x == nil || x.m == nil {
		return nil, NewError(EState, "the module is closed")
	}
	x.ctx.collect()
	return x.m, nil
}

// borrowedModule takes a new reference to a module the C side lent us.
func (x *Module) borrowed(m *C.nnm_module) *Module {
	if m == nil {
		return nil
	}
	C.nnm_module_retain(m)
	return newModule(x.ctx, x.c, m)
}

// Forward runs module(x) for a module of one input and one output, with the
// context's grad mode.
func (x *Module) Forward(in *Tensor) (*Tensor, error) {
	m, err := x.live()
	if err != nil {
		return nil, err
	}
	if in == nil || in.t == nil {
		return nil, NewError(EInvalid, "nil or closed input")
	}
	r := C.nnmgo_call1(x.ctx.grad(), handle(m), handle(in.t), 0)
	if r.status != C.NNM_OK {
		return nil, errorOf(x.c, r.status)
	}
	return newTensor(x.ctx, x.c, r.t), nil
}

// handle passes a C pointer to the shim as an integer (see shim.h).
func handle[T any](p *T) C.uintptr_t { return C.uintptr_t(uintptr(unsafe.Pointer(p))) }

// ForwardInto is Forward for hot loops: out (a *Tensor from any call, or a
// new(nnmod.Tensor)) receives the output, and the tensor it held before is
// released, in one cgo call and without allocating. On failure out keeps its
// tensor.
func (x *Module) ForwardInto(in, out *Tensor) error {
	m, err := x.live()
	if err != nil {
		return err
	}
	if in == nil || in.t == nil || out == nil {
		return NewError(EInvalid, "nil or closed input, or nil output")
	}
	r := C.nnmgo_call1(x.ctx.grad(), handle(m), handle(in.t), handle(out.t))
	if r.status != C.NNM_OK {
		return errorOf(x.c, r.status)
	}
	out.t = r.t
	if !out.fin {
		out.c, out.ctx, out.fin = x.c, x.ctx, true
		runtime.SetFinalizer(out, finalizeTensor)
	}
	return nil
}

// Call runs module(*inputs) with nOut outputs (at most NNM_MAX_IO each way).
func (x *Module) Call(inputs []*Tensor, nOut int) ([]*Tensor, error) {
	m, err := x.live()
	if err != nil {
		return nil, err
	}
	if len(inputs) > maxIO || nOut > maxIO || nOut < 0 {
		return nil, NewError(ELimit, fmt.Sprintf("at most %d inputs and outputs", maxIO))
	}
	// C memory: a Go array of C pointers may be passed, but one C array keeps
	// the rules simple
	var in [16]*C.nnm_tensor
	for i, t := range inputs {
		if t == nil || t.t == nil {
			return nil, NewError(EInvalid, fmt.Sprintf("input %d is nil or closed", i))
		}
		in[i] = t.t
	}
	var out [16]*C.nnm_tensor
	st := C.nnmgo_call(x.ctx.grad(), m, &in[0], C.uint32_t(len(inputs)), &out[0], C.uint32_t(nOut))
	if st != C.NNM_OK {
		return nil, errorOf(x.c, st)
	}
	res := make([]*Tensor, nOut)
	for i := range res {
		res[i] = newTensor(x.ctx, x.c, out[i])
	}
	return res, nil
}

// Name is the module's name in its parent ("" for a root).
func (x *Module) Name() string { return C.GoString(C.nnm_module_name(x.m)) }

// Type is the layer type ("linear").
func (x *Module) Type() string { return C.GoString(C.nnm_module_type(x.m)) }

// Path is the dotted path from the root ("layers.3.fc1"; "" for a root).
func (x *Module) Path() string {
	n := C.nnm_module_path(x.m, nil, 0)
	if n <= 0 {
		return ""
	}
	buf := make([]byte, int(n)+1)
	C.nnm_module_path(x.m, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
	return string(buf[:n])
}

// Get finds a descendant by dotted path ("layers.3"); nil if none.
func (x *Module) Get(path string) *Module {
	m, err := x.live()
	if err != nil {
		return nil
	}
	cs := C.CString(path)
	defer C.free(unsafe.Pointer(cs))
	return x.borrowed(C.nnm_module_get(m, cs))
}

// NumParams is the number of parameter elements in the subtree.
func (x *Module) NumParams() int64 { return int64(C.nnm_module_num_params(x.m)) }

// Train sets training (true) or eval (false) mode on the subtree.
func (x *Module) Train(training bool) error {
	m, err := x.live()
	if err != nil {
		return err
	}
	v := 0
	if training {
		v = 1
	}
	return errorOf(x.c, C.nnm_module_train(m, C.int(v)))
}

// Training reports the module's mode.
func (x *Module) Training() bool { return C.nnm_module_is_training(x.m) != 0 }

// ZeroGrad sets every parameter's .grad of the subtree to none.
func (x *Module) ZeroGrad() error {
	m, err := x.live()
	if err != nil {
		return err
	}
	return errorOf(x.c, C.nnm_module_zero_grad(m))
}

// Named is a (dotted name, value) pair.
type NamedTensor struct {
	Name   string
	Tensor *Tensor
}

type NamedModule struct {
	Name   string
	Module *Module
}

// NamedParameters lists the parameters in registration order, like
// named_parameters(); each Tensor is a new reference.
func (x *Module) NamedParameters() ([]NamedTensor, error) {
	m, err := x.live()
	if err != nil {
		return nil, err
	}
	var l C.nnmgo_named
	st := C.nnmgo_named_parameters(m, &l)
	defer C.nnmgo_named_free(&l)
	names := unsafe.Slice(l.names, int(l.n))
	items := unsafe.Slice(l.items, int(l.n))
	res := make([]NamedTensor, int(l.n))
	for i := range res {
		res[i] = NamedTensor{C.GoString(names[i]), newTensor(x.ctx, x.c, (*C.nnm_tensor)(items[i]))}
	}
	if st != C.NNM_OK {
		for _, r := range res {
			r.Tensor.Close()
		}
		return nil, errorOf(x.c, st)
	}
	return res, nil
}

// NamedModules lists the subtree in pre-order, x first with name "".
func (x *Module) NamedModules() ([]NamedModule, error) {
	m, err := x.live()
	if err != nil {
		return nil, err
	}
	var l C.nnmgo_named
	st := C.nnmgo_named_modules(m, &l)
	defer C.nnmgo_named_free(&l)
	names := unsafe.Slice(l.names, int(l.n))
	items := unsafe.Slice(l.items, int(l.n))
	res := make([]NamedModule, int(l.n))
	for i := range res {
		res[i] = NamedModule{C.GoString(names[i]), newModule(x.ctx, x.c, (*C.nnm_module)(items[i]))}
	}
	if st != C.NNM_OK {
		for _, r := range res {
			r.Module.Close()
		}
		return nil, errorOf(x.c, st)
	}
	return res, nil
}

// String is print(model).
func (x *Module) String() string {
	if x.m == nil {
		return "Module(closed)"
	}
	n := C.nnm_module_repr(x.m, nil, 0)
	if n <= 0 {
		return ""
	}
	buf := make([]byte, int(n)+1)
	C.nnm_module_repr(x.m, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
	// as Python's repr: no trailing newline, so fmt.Println(m) prints what
	// print(model) prints
	for n > 0 && buf[n-1] == '\n' {
		n--
	}
	return string(buf[:n])
}

// Optimizer updates a module tree's parameters (torch.optim).
type Optimizer struct {
	o   *C.nnm_optim
	c   *C.nnm_ctx
	ctx *Context
}

// SGD is torch.optim.SGD over every parameter of m's tree.
func SGD(m *Module, lr, momentum, dampening, weightDecay float64, nesterov bool) (*Optimizer, error) {
	mm, err := m.live()
	if err != nil {
		return nil, err
	}
	var o C.nnm_sgd_options
	o.struct_size = C.uint32_t(unsafe.Sizeof(o))
	if nesterov {
		o.nesterov = 1
	}
	o.lr, o.momentum, o.dampening, o.weight_decay = C.double(lr), C.double(momentum), C.double(dampening), C.double(weightDecay)
	var opt *C.nnm_optim
	if st := C.nnm_optim_sgd_new(mm, &o, &opt); st != C.NNM_OK {
		return nil, errorOf(m.c, st)
	}
	return newOptimizer(m, opt), nil
}

func newOptimizer(m *Module, opt *C.nnm_optim) *Optimizer {
	x := &Optimizer{o: opt, c: m.c, ctx: m.ctx}
	runtime.SetFinalizer(x, func(x *Optimizer) {
		if o := x.o; o != nil {
			x.ctx.queue(func() { C.nnm_optim_free(o) })
		}
	})
	return x
}

// AdamOptions are torch.optim.Adam's arguments; Decoupled makes it AdamW
// (decoupled weight decay). NewAdamOptions gives PyTorch's defaults.
type AdamOptions struct {
	LR, Beta1, Beta2, Eps, WeightDecay float64
	AMSGrad                            bool
	Decoupled                          bool // AdamW
}

// NewAdamOptions is Adam(lr) with PyTorch's defaults: betas (0.9, 0.999),
// eps 1e-8, no weight decay.
func NewAdamOptions(lr float64) AdamOptions {
	return AdamOptions{LR: lr, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}
}

// Adam is torch.optim.Adam (or AdamW with opts.Decoupled) over every
// parameter of m's tree.
func Adam(m *Module, opts AdamOptions) (*Optimizer, error) {
	mm, err := m.live()
	if err != nil {
		return nil, err
	}
	var o C.nnm_adam_options
	o.struct_size = C.uint32_t(unsafe.Sizeof(o))
	if opts.AMSGrad {
		o.amsgrad = 1
	}
	if opts.Decoupled {
		o.decoupled = 1
	}
	o.lr, o.beta1, o.beta2 = C.double(opts.LR), C.double(opts.Beta1), C.double(opts.Beta2)
	o.eps, o.weight_decay = C.double(opts.Eps), C.double(opts.WeightDecay)
	var opt *C.nnm_optim
	if st := C.nnm_optim_adam_new(mm, &o, &opt); st != C.NNM_OK {
		return nil, errorOf(m.c, st)
	}
	return newOptimizer(m, opt), nil
}

func (x *Optimizer) live() (*C.nnm_optim, error) {
	if x == nil || x.o == nil {
		return nil, NewError(EState, "the optimizer is closed")
	}
	x.ctx.collect()
	return x.o, nil
}

// AddGroup moves the parameters whose dotted name starts with prefix
// ("fc2." for fc2's) into a new group with its own lr and weight decay, and
// returns the group's index. Before the first step only.
func (x *Optimizer) AddGroup(prefix string, lr, weightDecay float64) (int, error) {
	o, err := x.live()
	if err != nil {
		return 0, err
	}
	if err := checkNUL("prefix", prefix); err != nil {
		return 0, err
	}
	cp := C.CString(prefix)
	defer C.free(unsafe.Pointer(cp))
	var g C.uint32_t
	if st := C.nnm_optim_add_group(o, cp, C.double(lr), C.double(weightDecay), &g); st != C.NNM_OK {
		return 0, errorOf(x.c, st)
	}
	return int(g), nil
}

// Groups is the number of parameter groups.
func (x *Optimizer) Groups() int {
	if x == nil || x.o == nil {
		return 0
	}
	return int(C.nnm_optim_group_count(x.o))
}

// LR is the learning rate of parameter group `group` (0: the first).
func (x *Optimizer) LR(group int) float64 {
	if x == nil || x.o == nil {
		return 0
	}
	return float64(C.nnm_optim_get_lr(x.o, C.uint32_t(group)))
}

// SetLR sets the learning rate of parameter group `group`.
func (x *Optimizer) SetLR(group int, lr float64) error {
	o, err := x.live()
	if err != nil {
		return err
	}
	if group < 0 {
		return NewError(EInvalid, fmt.Sprintf("group %d", group))
	}
	return errorOf(x.c, C.nnm_optim_set_lr(o, C.uint32_t(group), C.double(lr)))
}

// Step updates every parameter that has a .grad.
func (x *Optimizer) Step() error {
	o, err := x.live()
	if err != nil {
		return err
	}
	return errorOf(x.c, C.nnm_optim_step(o))
}

// ZeroGrad sets the .grad of every parameter of the optimizer to none.
func (x *Optimizer) ZeroGrad() error {
	o, err := x.live()
	if err != nil {
		return err
	}
	return errorOf(x.c, C.nnm_optim_zero_grad(o))
}

// Close frees the optimizer. Idempotent.
func (x *Optimizer) Close() error {
	if x.o != nil {
		C.nnm_optim_free(x.o)
		x.o = nil
		runtime.SetFinalizer(x, nil)
	}
	return nil
}
