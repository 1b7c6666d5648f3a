package nnmod

/*
#include <stdlib.h>
#include <nnmod/nnmod.h>
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"runtime/cgo"
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

type hookState struct {
	ctx *Context
	fwd func(*ForwardHookCall) error
	pre func(*ForwardPreHookCall) error
}

// HookHandle is a registered hook; Remove unregisters it and frees the Go
// function's handle. While it is registered it keeps its module or context
// alive (a hook that is never removed lives as long as its module, as in
// PyTorch).
type HookHandle struct {
	raw   *C.nnm_hook_handle
	h     cgo.Handle
	owner any
}

// Remove unregisters the hook (safe inside a hook). Idempotent.
func (h *HookHandle) Remove() {
	if h.raw == nil {
		return
	}
	C.nnm_hook_remove(h.raw)
	h.h.Delete()
	h.raw, h.owner = nil, nil
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

// RegisterForwardHook registers f to run after every forward of this module.
// An error returned by f (or a panic in it) fails the call with that status
// (NNM_E_HOOK for a plain error) and message.
func (x *Module) RegisterForwardHook(f func(*ForwardHookCall) error) (*HookHandle, error) {
	m, err := x.live()
	if err != nil {
		return nil, err
	}
	h := cgo.NewHandle(&hookState{ctx: x.ctx, fwd: f})
	var raw *C.nnm_hook_handle
	if st := C.nnmgo_register_forward_hook(m, nil, C.uintptr_t(h), &raw); st != C.NNM_OK {
		h.Delete()
		return nil, errorOf(x.c, st)
	}
	return &HookHandle{raw: raw, h: h, owner: x}, nil
}

// RegisterForwardPreHook registers f to run before every forward of this module.
func (x *Module) RegisterForwardPreHook(f func(*ForwardPreHookCall) error) (*HookHandle, error) {
	m, err := x.live()
	if err != nil {
		return nil, err
	}
	h := cgo.NewHandle(&hookState{ctx: x.ctx, pre: f})
	var raw *C.nnm_hook_handle
	if st := C.nnmgo_register_forward_pre_hook(m, C.uintptr_t(h), &raw); st != C.NNM_OK {
		h.Delete()
		return nil, errorOf(x.c, st)
	}
	return &HookHandle{raw: raw, h: h, owner: x}, nil
}

// RegisterForwardHook registers a global forward hook: f runs after the
// forward of every module of this context.
func (x *Context) RegisterForwardHook(f func(*ForwardHookCall) error) (*HookHandle, error) {
	c, err := x.live()
	if err != nil {
		return nil, err
	}
	h := cgo.NewHandle(&hookState{ctx: x, fwd: f})
	var raw *C.nnm_hook_handle
	if st := C.nnmgo_register_forward_hook(nil, c, C.uintptr_t(h), &raw); st != C.NNM_OK {
		h.Delete()
		return nil, errorOf(c, st)
	}
	return &HookHandle{raw: raw, h: h, owner: x}, nil
}
