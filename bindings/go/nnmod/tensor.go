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

// Tensor is one reference to an nnmod tensor. Close releases it; Clone
// takes another reference to the same storage.
//
// The zero Tensor is an empty slot for Module.ForwardInto.
type Tensor struct {
	t   *C.nnm_tensor
	c   *C.nnm_ctx // valid while t lives (the C context is reference counted)
	ctx *Context
	fin bool // a finalizer is set
}

func newTensor(ctx *Context, c *C.nnm_ctx, t *C.nnm_tensor) *Tensor {
	x := &Tensor{t: t, c: c, ctx: ctx, fin: true}
	runtime.SetFinalizer(x, finalizeTensor)
	return x
}

func finalizeTensor(x *Tensor) {
	if t := x.t; t != nil {
		x.ctx.queue(func() { C.nnm_tensor_release(t) })
	}
}

// Close releases this reference. Idempotent.
func (x *Tensor) Close() error {
	if x.t != nil {
		x.ctx.collect()
		C.nnmgo_release(handle(x.t))
		x.t = nil
	}
	if x.fin {
		x.fin = false
		runtime.SetFinalizer(x, nil)
	}
	return nil
}

func (x *Tensor) live() (*C.nnm_tensor, error) {
	if x == nil || x.t == nil {
		return nil, NewError(EState, "the tensor is closed")
	}
	x.ctx.collect()
	return x.t, nil
}

// Clone takes another reference to the same tensor.
func (x *Tensor) Clone() (*Tensor, error) {
	t, err := x.live()
	if err != nil {
		return nil, err
	}
	C.nnm_tensor_retain(t)
	return newTensor(x.ctx, x.c, t), nil
}

// Shape is a copy of the tensor's shape (nil for a closed tensor).
func (x *Tensor) Shape() []int64 {
	if x.t == nil {
		return nil
	}
	d := C.nnm_tensor_desc_get(x.t)
	dims := unsafe.Slice((*int64)(unsafe.Pointer(d.shape)), int(d.ndim))
	return append([]int64(nil), dims...)
}

// Numel is the number of elements.
func (x *Tensor) Numel() int { return int(C.nnm_tensor_numel(x.t)) }

// Data copies the elements of an f32 tensor (any device, any strides),
// row-major.
func (x *Tensor) Data() ([]float32, error) {
	t, err := x.live()
	if err != nil {
		return nil, err
	}
	v := make([]float32, C.nnm_tensor_numel(t))
	if len(v) == 0 {
		return v, nil
	}
	st := C.nnm_tensor_to_f32(t, (*C.float)(unsafe.Pointer(&v[0])), C.size_t(len(v)))
	return v, errorOf(x.c, st)
}

// Item is the value of a one-element tensor.
func (x *Tensor) Item() (float32, error) {
	if _, err := x.live(); err != nil {
		return 0, err
	}
	if n := x.Numel(); n != 1 {
		return 0, NewError(EShape, fmt.Sprintf("Item() of a tensor of shape %v", x.Shape()))
	}
	var v C.float
	return float32(v), errorOf(x.c, C.nnm_tensor_to_f32(x.t, &v, 1))
}

// SetData overwrites the elements of a contiguous f32 CPU tensor with data
// (Numel() floats); every clone sees the new values.
func (x *Tensor) SetData(data []float32) error {
	t, err := x.live()
	if err != nil {
		return err
	}
	d := C.nnm_tensor_desc_get(t)
	n := int(C.nnm_tensor_numel(t))
	if len(data) != n {
		return NewError(EShape, fmt.Sprintf("%d floats for a tensor of %d", len(data), n))
	}
	if d.device._type != C.NNM_DEVICE_CPU || d.dtype.code != C.NNM_DTYPE_FLOAT || d.dtype.bits != 32 {
		return NewError(EDevice, "not an f32 CPU tensor")
	}
	shape := unsafe.Slice((*int64)(unsafe.Pointer(d.shape)), int(d.ndim))
	strides := unsafe.Slice((*int64)(unsafe.Pointer(d.strides)), int(d.ndim))
	want := int64(1)
	for i := len(shape) - 1; i >= 0; i-- {
		if shape[i] != 1 && strides[i] != want {
			return NewError(EInvalid, "not a contiguous tensor")
		}
		want *= shape[i]
	}
	if n == 0 {
		return nil
	}
	dst := unsafe.Slice((*float32)(unsafe.Add(d.data, uintptr(d.byte_offset))), n)
	copy(dst, data)
	return nil
}

// RequiresGrad reports whether autograd tracks the tensor.
func (x *Tensor) RequiresGrad() bool {
	return x.t != nil && C.nnm_tensor_requires_grad(x.t) != 0
}

// SetRequiresGrad marks a leaf tensor as needing gradients.
func (x *Tensor) SetRequiresGrad(on bool) error {
	t, err := x.live()
	if err != nil {
		return err
	}
	v := 0
	if on {
		v = 1
	}
	return errorOf(x.c, C.nnm_tensor_set_requires_grad(t, C.int(v)))
}

// Grad is the accumulated gradient (.grad), a new reference, or nil.
func (x *Tensor) Grad() *Tensor {
	if x.t == nil {
		return nil
	}
	g := C.nnm_tensor_grad(x.t)
	if g == nil {
		return nil
	}
	C.nnm_tensor_retain(g)
	return newTensor(x.ctx, x.c, g)
}

// Backward computes the gradients of a one-element tensor (loss.backward()).
func (x *Tensor) Backward() error {
	t, err := x.live()
	if err != nil {
		return err
	}
	return errorOf(x.c, C.nnm_backward(t, nil, 0))
}

func (x *Tensor) result(st C.nnm_status, out *C.nnm_tensor) (*Tensor, error) {
	if st != C.NNM_OK {
		return nil, errorOf(x.c, st)
	}
	return newTensor(x.ctx, x.c, out), nil
}

// Binary is an elementwise op with broadcasting (NNM_BINARY_*, see Constant).
func (x *Tensor) Binary(op int, y *Tensor) (*Tensor, error) {
	a, err := x.live()
	if err != nil {
		return nil, err
	}
	b, err := y.live()
	if err != nil {
		return nil, err
	}
	var out *C.nnm_tensor
	st := C.nnmgo_binary(x.ctx.grad(), x.c, C.int32_t(op), a, b, &out)
	return x.result(st, out)
}

func (x *Tensor) Add(y *Tensor) (*Tensor, error) { return x.Binary(int(C.NNM_BINARY_ADD), y) }
func (x *Tensor) Sub(y *Tensor) (*Tensor, error) { return x.Binary(int(C.NNM_BINARY_SUB), y) }
func (x *Tensor) Mul(y *Tensor) (*Tensor, error) { return x.Binary(int(C.NNM_BINARY_MUL), y) }
func (x *Tensor) Div(y *Tensor) (*Tensor, error) { return x.Binary(int(C.NNM_BINARY_DIV), y) }

// Unary is an elementwise op (NNM_UNARY_*); alpha is NNM_UNARY_SCALE's factor.
func (x *Tensor) Unary(op int, alpha float64) (*Tensor, error) {
	a, err := x.live()
	if err != nil {
		return nil, err
	}
	var out *C.nnm_tensor
	st := C.nnmgo_unary(x.ctx.grad(), x.c, C.int32_t(op), a, C.double(alpha), &out)
	return x.result(st, out)
}

func (x *Tensor) Relu() (*Tensor, error) { return x.Unary(int(C.NNM_UNARY_RELU), 0) }

// Reduce reduces over dims (none: all) with NNM_REDUCE_*.
func (x *Tensor) Reduce(op int, dims []int32, keepdim bool) (*Tensor, error) {
	a, err := x.live()
	if err != nil {
		return nil, err
	}
	var pd *C.int32_t
	if len(dims) > 0 {
		pd = (*C.int32_t)(unsafe.Pointer(&dims[0]))
	}
	k := 0
	if keepdim {
		k = 1
	}
	var out *C.nnm_tensor
	st := C.nnmgo_reduce(x.ctx.grad(), x.c, C.int32_t(op), a, pd, C.uint32_t(len(dims)), C.int(k), &out)
	return x.result(st, out)
}

func (x *Tensor) Sum() (*Tensor, error)  { return x.Reduce(int(C.NNM_REDUCE_SUM), nil, false) }
func (x *Tensor) Mean() (*Tensor, error) { return x.Reduce(int(C.NNM_REDUCE_MEAN), nil, false) }

// Reshape returns the same elements in another shape (one dim may be -1).
func (x *Tensor) Reshape(shape []int64) (*Tensor, error) {
	a, err := x.live()
	if err != nil {
		return nil, err
	}
	var ps *C.int64_t
	if len(shape) > 0 {
		ps = (*C.int64_t)(unsafe.Pointer(&shape[0]))
	}
	var out *C.nnm_tensor
	st := C.nnmgo_reshape(x.ctx.grad(), x.c, a, C.int32_t(len(shape)), ps, &out)
	return x.result(st, out)
}

func (x *Tensor) String() string {
	if x.t == nil {
		return "Tensor(closed)"
	}
	return fmt.Sprintf("Tensor(shape=%v)", x.Shape())
}
