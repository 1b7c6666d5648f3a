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
	"runtime/cgo"
	"sync/atomic"
	"unsafe"
)

// ForwardHookCall is what a forward hook sees. Module, Inputs and Outputs are
// valid during the hook only (they are closed when it returns: Clone what you
// keep). SetOutput replaces an output.
type ForwardHookCall struct {
	Module  *Module
	Inputs  []*Tensor
	Outputs []*Tensor
	slots   []*C.nnm_tensor
}

// SetOutput makes the call return t as output i.
func (h *ForwardHookCall) SetOutput(i int, t *Tensor) error {
	if i < 0 || i >= len(h.slots) {
		return NewError(EInvalid, fmt.Sprintf("output %d of %d", i, len(h.slots)))
	}
	if t == nil || t.t == nil {
		return NewError(EInvalid, "nil or closed tensor")
	}
	C.nnm_tensor_retain(t.t) // the runtime takes this reference and releases the one replaced
	h.slots[i] = t.t
	return nil
}

// ForwardPreHookCall is what a forward-pre-hook sees; SetInput replaces an input.
type ForwardPreHookCall struct {
	Module *Module
	Inputs []*Tensor
	slots  []*C.nnm_tensor
}

// SetInput makes forward see t as input i.
func (h *ForwardPreHookCall) SetInput(i int, t *Tensor) error {
	if i < 0 || i >= len(h.slots) {
		return NewError(EInvalid, fmt.Sprintf("input %d of %d", i, len(h.slots)))
	}
	if t == nil || t.t == nil {
		return NewError(EInvalid, "nil or closed tensor")
	}
	C.nnm_tensor_retain(t.t)
	h.slots[i] = t.t
	return nil
}

// BackwardHookCall is what a full backward hook sees: the gradients of the
// module's inputs (nil: that input gets none) and of its outputs, valid
// during the hook only. SetGradInput replaces an input's gradient.
type BackwardHookCall struct {
	Module      *Module
	GradInputs  []*Tensor
	GradOutputs []*Tensor
	slots       []*C.nnm_tensor
}

// SetGradInput makes backward go on with t as the gradient of input i.
func (h *BackwardHookCall) SetGradInput(i int, t *Tensor) error {
	if i < 0 || i >= len(h.slots) {
		return NewError(EInvalid, fmt.Sprintf("grad input %d of %d", i, len(h.slots)))
	}
	if t == nil || t.t == nil {
		return NewError(EInvalid, "nil or closed tensor")
	}
	C.nnm_tensor_retain(t.t) // the runtime takes this reference and releases the one replaced
	h.slots[i] = t.t
	return nil
}

type hookState struct {
	ctx *Context
	fwd func(*ForwardHookCall) error
	pre func(*ForwardPreHookCall) error
	bwd func(*BackwardHookCall) error
}

// HookHandle is a registered hook (the caller's nnm_hook_handle). The Go
// function lives until the hook is removed (Remove), its module dies, or (a
// global hook) its context is freed: then the runtime drops it and its
// cgo.Handle is deleted. As in PyTorch, closing or losing the HookHandle does
// not remove the hook, and Remove stays safe after the module is gone.
type HookHandle struct {
	raw *C.nnm_hook_handle
	ctx *Context
}

// HookOptions are PyTorch's prepend and always_call.
type HookOptions struct {
	Prepend    bool // run before the hooks already registered
	AlwaysCall bool // forward hooks only: run even when the call fails
}

func (o HookOptions) flags() C.uint32_t {
	var f C.uint32_t
	if o.Prepend {
		f |= C.NNM_HOOK_PREPEND
	}
	if o.AlwaysCall {
		f |= C.NNM_HOOK_ALWAYS_CALL
	}
	return f
}

func newHookHandle(ctx *Context, raw *C.nnm_hook_handle) *HookHandle {
	h := &HookHandle{raw: raw, ctx: ctx}
	runtime.SetFinalizer(h, func(h *HookHandle) {
		if raw := h.raw; raw != nil {
			h.ctx.queue(func() { C.nnm_hook_handle_free(raw) })
		}
	})
	return h
}

// Remove unregisters the hook (safe inside a hook); false when it was gone
// already (removed before, or its module died).
func (h *HookHandle) Remove() bool {
	if h.raw == nil {
		return false
	}
	h.ctx.collect()
	return C.nnm_hook_handle_remove(h.raw) == C.NNM_OK
}

// Live reports whether the hook is still registered.
func (h *HookHandle) Live() bool { return h.raw != nil && C.nnm_hook_handle_is_live(h.raw) != 0 }

// Close frees the handle (not the hook). Idempotent.
func (h *HookHandle) Close() error {
	if h.raw != nil {
		C.nnm_hook_handle_free(h.raw)
		h.raw = nil
		runtime.SetFinalizer(h, nil)
	}
	return nil
}

// liveHooks counts the Go functions the runtime holds (tests check that
// each is dropped).
var liveHooks atomic.Int64

//export nnmgoHookFree
func nnmgoHookFree(h C.uintptr_t) {
	cgo.Handle(h).Delete()
	liveHooks.Add(-1)
}

func wrapList(ctx *Context, c *C.nnm_ctx, p **C.nnm_tensor, n C.uint32_t) ([]*C.nnm_tensor, []*Tensor) {
	if n == 0 || p == nil {
		return nil, nil
	}
	raw := unsafe.Slice(p, int(n))
	ts := make([]*Tensor, len(raw))
	for i, t := range raw {
		if t != nil {
			C.nnm_tensor_retain(t)
			ts[i] = &Tensor{t: t, c: c, ctx: ctx} // closed after the hook: no finalizer
		}
	}
	return raw, ts
}

func closeAll(ts []*Tensor) {
	for _, t := range ts {
		if t != nil && t.t != nil {
			C.nnm_tensor_release(t.t)
			t.t = nil
		}
	}
}

// fail records err (or a recovered panic) on the context and returns its status.
func fail(c *C.nnm_ctx, err error) C.nnm_status {
	status, msg := EHook, err.Error()
	if e, ok := err.(*Error); ok {
		msg = e.Message
		if e.Status < 0 {
			status = e.Status
		}
	}
	cs := C.CString(msg)
	defer C.free(unsafe.Pointer(cs))
	return C.nnm_ctx_set_error_msg(c, C.nnm_status(status), cs)
}

func runHook(c *C.nnm_ctx, f func() error) (st C.nnm_status) {
	defer func() {
		if r := recover(); r != nil {
			st = fail(c, fmt.Errorf("Go hook panicked: %v", r))
		}
	}()
	if err := f(); err != nil {
		return fail(c, err)
	}
	return C.NNM_OK
}

//export nnmgoForwardHook
func nnmgoForwardHook(h C.uintptr_t, m *C.nnm_module, in **C.nnm_tensor, nIn C.uint32_t, out **C.nnm_tensor, nOut C.uint32_t) C.nnm_status {
	st := cgo.Handle(h).Value().(*hookState)
	c := C.nnm_module_ctx(m)
	_, ins := wrapList(st.ctx, c, in, nIn)
	slots, outs := wrapList(st.ctx, c, out, nOut)
	C.nnm_module_retain(m)
	mod := &Module{m: m, c: c, ctx: st.ctx}
	defer func() {
		closeAll(ins)
		closeAll(outs)
		mod.m = nil
		C.nnm_module_release(m)
	}()
	call := &ForwardHookCall{Module: mod, Inputs: ins, Outputs: outs, slots: slots}
	return runHook(c, func() error { return st.fwd(call) })
}

//export nnmgoBackwardHook
func nnmgoBackwardHook(h C.uintptr_t, m *C.nnm_module, gin **C.nnm_tensor, nIn C.uint32_t, gout **C.nnm_tensor, nOut C.uint32_t) C.nnm_status {
	st := cgo.Handle(h).Value().(*hookState)
	c := C.nnm_module_ctx(m)
	slots, ins := wrapList(st.ctx, c, gin, nIn)
	_, outs := wrapList(st.ctx, c, gout, nOut)
	C.nnm_module_retain(m)
	mod := &Module{m: m, c: c, ctx: st.ctx}
	defer func() {
		closeAll(ins)
		closeAll(outs)
		mod.m = nil
		C.nnm_module_release(m)
	}()
	call := &BackwardHookCall{Module: mod, GradInputs: ins, GradOutputs: outs, slots: slots}
	return runHook(c, func() error { return st.bwd(call) })
}

//export nnmgoForwardPreHook
func nnmgoForwardPreHook(h C.uintptr_t, m *C.nnm_module, in **C.nnm_tensor, nIn C.uint32_t) C.nnm_status {
	st := cgo.Handle(h).Value().(*hookState)
	c := C.nnm_module_ctx(m)
	slots, ins := wrapList(st.ctx, c, in, nIn)
	C.nnm_module_retain(m)
	mod := &Module{m: m, c: c, ctx: st.ctx}
	defer func() {
		closeAll(ins)
		mod.m = nil
		C.nnm_module_release(m)
	}()
	call := &ForwardPreHookCall{Module: mod, Inputs: ins, slots: slots}
	return runHook(c, func() error { return st.pre(call) })
}

func register(ctx *Context, c *C.nnm_ctx, st *hookState,
	reg func(h C.uintptr_t, out **C.nnm_hook_handle) C.nnm_status) (*HookHandle, error) {
	h := cgo.NewHandle(st)
	liveHooks.Add(1)
	var raw *C.nnm_hook_handle
	if s := reg(C.uintptr_t(h), &raw); s != C.NNM_OK {
		h.Delete() // on failure the runtime does not call user_free
		liveHooks.Add(-1)
		return nil, errorOf(c, s)
	}
	return newHookHandle(ctx, raw), nil
}

// RegisterForwardHook registers f to run after every forward of this module.
// An error returned by f (or a panic in it) fails the call with that status
// (NNM_E_HOOK for a plain error) and message.
func (x *Module) RegisterForwardHook(f func(*ForwardHookCall) error) (*HookHandle, error) {
	return x.RegisterForwardHookWith(HookOptions{}, f)
}

// RegisterForwardHookWith is RegisterForwardHook with prepend/always_call.
func (x *Module) RegisterForwardHookWith(o HookOptions, f func(*ForwardHookCall) error) (*HookHandle, error) {
	m, err := x.live()
	if err != nil {
		return nil, err
	}
	return register(x.ctx, x.c, &hookState{ctx: x.ctx, fwd: f}, func(h C.uintptr_t, out **C.nnm_hook_handle) C.nnm_status {
		return C.nnmgo_register_forward_hook(m, nil, h, o.flags(), out)
	})
}

// RegisterForwardPreHook registers f to run before every forward of this module.
func (x *Module) RegisterForwardPreHook(f func(*ForwardPreHookCall) error) (*HookHandle, error) {
	m, err := x.live()
	if err != nil {
		return nil, err
	}
	return register(x.ctx, x.c, &hookState{ctx: x.ctx, pre: f}, func(h C.uintptr_t, out **C.nnm_hook_handle) C.nnm_status {
		return C.nnmgo_register_forward_pre_hook(m, nil, h, 0, out)
	})
}

// RegisterFullBackwardHook registers f to run when backward reaches this
// module (register_full_backward_hook), for calls made with grad mode on.
func (x *Module) RegisterFullBackwardHook(f func(*BackwardHookCall) error) (*HookHandle, error) {
	m, err := x.live()
	if err != nil {
		return nil, err
	}
	return register(x.ctx, x.c, &hookState{ctx: x.ctx, bwd: f}, func(h C.uintptr_t, out **C.nnm_hook_handle) C.nnm_status {
		return C.nnmgo_register_full_backward_hook(m, nil, h, out)
	})
}

// RegisterFullBackwardHook registers a global full backward hook
// (register_module_full_backward_hook): f runs when backward reaches any
// module of this context called with grad mode on, before the module's own.
func (x *Context) RegisterFullBackwardHook(f func(*BackwardHookCall) error) (*HookHandle, error) {
	c, err := x.live()
	if err != nil {
		return nil, err
	}
	return register(x, c, &hookState{ctx: x, bwd: f}, func(h C.uintptr_t, out **C.nnm_hook_handle) C.nnm_status {
		return C.nnmgo_register_full_backward_hook(nil, c, h, out)
	})
}

// RegisterForwardHook registers a global forward hook: f runs after the
// forward of every module of this context.
func (x *Context) RegisterForwardHook(f func(*ForwardHookCall) error) (*HookHandle, error) {
	c, err := x.live()
	if err != nil {
		return nil, err
	}
	return register(x, c, &hookState{ctx: x, fwd: f}, func(h C.uintptr_t, out **C.nnm_hook_handle) C.nnm_status {
		return C.nnmgo_register_forward_hook(nil, c, h, 0, out)
	})
}

// RegisterForwardPreHook registers a global forward-pre-hook.
func (x *Context) RegisterForwardPreHook(f func(*ForwardPreHookCall) error) (*HookHandle, error) {
	c, err := x.live()
	if err != nil {
		return nil, err
	}
	return register(x, c, &hookState{ctx: x, pre: f}, func(h C.uintptr_t, out **C.nnm_hook_handle) C.nnm_status {
		return C.nnmgo_register_forward_pre_hook(nil, c, h, 0, out)
	})
}
