//! Tensors: reference-counted handles on the runtime's tensors.
use std::fmt;
use std::ptr::{self, NonNull};
use std::rc::Rc;

use nnmod_sys as sys;

use crate::context::CtxInner;
use crate::error::{check, Error, Result};

/// One reference to an nnmod tensor. `Clone` takes another reference (the
/// same storage, like a second Python name for a torch tensor); `Drop`
/// releases it.
pub struct Tensor {
    raw: NonNull<sys::nnm_tensor>,
    pub(crate) ctx: Rc<CtxInner>,
}

impl Tensor {
    /// Takes ownership of one reference to `raw` (not null).
    pub(crate) unsafe fn from_raw(raw: *mut sys::nnm_tensor, ctx: Rc<CtxInner>) -> Tensor {
        Tensor { raw: NonNull::new(raw).expect("nnmod returned a null tensor"), ctx }
    }

    /// Takes a new reference to a borrowed `raw` (NULL: None).
    pub(crate) unsafe fn from_borrowed(raw: *mut sys::nnm_tensor, ctx: &Rc<CtxInner>) -> Option<Tensor> {
        if raw.is_null() {
            return None;
        }
        sys::nnm_tensor_retain(raw);
        Some(Tensor::from_raw(raw, ctx.clone()))
    }

    /// The raw handle (borrowed; valid while self lives).
    pub fn as_ptr(&self) -> *mut sys::nnm_tensor {
        self.raw.as_ptr()
    }

    /// Gives up this reference without releasing it (for C calls that take one).
    pub fn into_raw(self) -> *mut sys::nnm_tensor {
        let me = std::mem::ManuallyDrop::new(self);
        // the reference goes to the caller; the context handle is dropped
        drop(unsafe { ptr::read(&me.ctx) });
        me.raw.as_ptr()
    }

    fn desc(&self) -> &sys::nnm_tensor_desc {
        // lives as long as the tensor; never NULL for a live tensor
        unsafe { &*sys::nnm_tensor_desc_get(self.raw.as_ptr()) }
    }

    /// The shape (as long as the tensor lives).
    pub fn shape(&self) -> &[i64] {
        let d = self.desc();
        if d.ndim == 0 {
            return &[];
        }
        unsafe { std::slice::from_raw_parts(d.shape, d.ndim as usize) }
    }

    pub fn ndim(&self) -> usize {
        self.desc().ndim as usize
    }

    pub fn numel(&self) -> usize {
        unsafe { sys::nnm_tensor_numel(self.raw.as_ptr()) as usize }
    }

    pub fn dtype(&self) -> sys::nnm_dtype {
        self.desc().dtype
    }

    pub fn device(&self) -> sys::nnm_device {
        self.desc().device
    }

    /// The elements of an f32 tensor (any device, any strides), row-major.
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        let mut v = vec![0f32; self.numel()];
        self.copy_to(&mut v)?;
        Ok(v)
    }

    /// Copies the elements into `dst`, which must hold numel() floats.
    pub fn copy_to(&self, dst: &mut [f32]) -> Result<()> {
        check(self.ctx.raw, unsafe { sys::nnm_tensor_to_f32(self.raw.as_ptr(), dst.as_mut_ptr(), dst.len()) })
    }

    /// The elements in place, without a copy, for a contiguous f32 CPU tensor
    /// (an error otherwise).
    ///
    /// # Safety
    /// The storage is shared with every clone of this tensor and with the
    /// runtime (an optimizer step writes parameters in place): the caller must
    /// not let anything write to it while the slice is alive.
    pub unsafe fn as_slice(&self) -> Result<&[f32]> {
        let p = self.cpu_f32_ptr()?;
        Ok(std::slice::from_raw_parts(p, self.numel()))
    }

    /// Overwrites the elements of a contiguous f32 CPU tensor with `src`
    /// (numel() floats). Every clone sees the new values.
    pub fn copy_from(&self, src: &[f32]) -> Result<()> {
        if src.len() != self.numel() {
            return Err(Error::new(sys::NNM_E_SHAPE, format!("{} floats for a tensor of {}", src.len(), self.numel())));
        }
        let p = self.cpu_f32_ptr()?;
        unsafe { ptr::copy_nonoverlapping(src.as_ptr(), p, src.len()) };
        Ok(())
    }

    fn cpu_f32_ptr(&self) -> Result<*mut f32> {
        let d = self.desc();
        if d.device.type_ != sys::NNM_DEVICE_CPU as i32 || d.dtype.code != sys::NNM_DTYPE_FLOAT as u8 || d.dtype.bits != 32 {
            return Err(Error::new(sys::NNM_E_DEVICE, "not an f32 CPU tensor"));
        }
        let mut want = 1i64;
        for i in (0..d.ndim as usize).rev() {
            let (s, st) = unsafe { (*d.shape.add(i), *d.strides.add(i)) };
            if s != 1 && st != want {
                return Err(Error::new(sys::NNM_E_INVALID, "not a contiguous tensor"));
            }
            want *= s;
        }
        Ok(unsafe { (d.data as *mut u8).add(d.byte_offset as usize) as *mut f32 })
    }

    /// The accumulated gradient (.grad), if any (a new reference).
    pub fn grad(&self) -> Option<Tensor> {
        unsafe { Tensor::from_borrowed(sys::nnm_tensor_grad(self.raw.as_ptr()), &self.ctx) }
    }

    pub fn requires_grad(&self) -> bool {
        unsafe { sys::nnm_tensor_requires_grad(self.raw.as_ptr()) != 0 }
    }

    /// Marks a leaf tensor as needing gradients (requires_grad_()).
    pub fn set_requires_grad(&self, on: bool) -> Result<()> {
        check(self.ctx.raw, unsafe { sys::nnm_tensor_set_requires_grad(self.raw.as_ptr(), on as i32) })
    }

    /// loss.backward() for a one-element tensor.
    pub fn backward(&self) -> Result<()> {
        check(self.ctx.raw, unsafe { sys::nnm_backward(self.raw.as_ptr(), ptr::null_mut(), 0) })
    }

    /// backward with d(out)/d(self) = `grad`; keeps the graph when `retain_graph`.
    pub fn backward_with(&self, grad: &Tensor, retain_graph: bool) -> Result<()> {
        check(self.ctx.raw, unsafe { sys::nnm_backward(self.raw.as_ptr(), grad.as_ptr(), retain_graph as i32) })
    }

    /// A tensor sharing this storage, outside any graph (detach()).
    pub fn detach(&self) -> Result<Tensor> {
        self.op_status(|_, out| unsafe { sys::nnm_tensor_detach(self.raw.as_ptr(), out) })
    }

    fn op_status(&self, f: impl FnOnce(*mut sys::nnm_ctx, *mut *mut sys::nnm_tensor) -> i32) -> Result<Tensor> {
        let mut out = ptr::null_mut();
        let st = f(self.ctx.raw, &mut out);
        check(self.ctx.raw, st)?;
        if out.is_null() {
            return Err(Error::from_ctx(self.ctx.raw, sys::NNM_E_INVALID));
        }
        Ok(unsafe { Tensor::from_raw(out, self.ctx.clone()) })
    }

    /// Elementwise with broadcasting (`nnmod_sys::NNM_BINARY_*`).
    pub fn binary(&self, op: i32, other: &Tensor) -> Result<Tensor> {
        self.op_status(|c, out| unsafe { sys::nnm_op_binary(c, op, self.as_ptr(), other.as_ptr(), out) })
    }
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(sys::NNM_BINARY_ADD as i32, other)
    }
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(sys::NNM_BINARY_SUB as i32, other)
    }
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(sys::NNM_BINARY_MUL as i32, other)
    }
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(sys::NNM_BINARY_DIV as i32, other)
    }

    /// Elementwise (`nnmod_sys::NNM_UNARY_*`; alpha is NNM_UNARY_SCALE's factor).
    pub fn unary(&self, op: i32, alpha: f64) -> Result<Tensor> {
        self.op_status(|c, out| unsafe { sys::nnm_op_unary(c, op, self.as_ptr(), alpha, out) })
    }
    pub fn relu(&self) -> Result<Tensor> {
        self.unary(sys::NNM_UNARY_RELU as i32, 0.0)
    }

    /// Reduces over `dims` (empty: all) with `nnmod_sys::NNM_REDUCE_*`.
    pub fn reduce(&self, op: i32, dims: &[i32], keepdim: bool) -> Result<Tensor> {
        self.op_status(|c, out| unsafe {
            sys::nnm_op_reduce(c, op, self.as_ptr(), dims.as_ptr(), dims.len() as u32, keepdim as i32, out)
        })
    }
    pub fn sum(&self) -> Result<Tensor> {
        self.reduce(sys::NNM_REDUCE_SUM as i32, &[], false)
    }
    pub fn mean(&self) -> Result<Tensor> {
        self.reduce(sys::NNM_REDUCE_MEAN as i32, &[], false)
    }

    pub fn reshape(&self, shape: &[i64]) -> Result<Tensor> {
        self.op_status(|c, out| unsafe { sys::nnm_op_reshape(c, self.as_ptr(), shape.len() as i32, shape.as_ptr(), out) })
    }

    /// The value of a one-element tensor.
    pub fn item(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(Error::new(sys::NNM_E_SHAPE, format!("item() of a tensor of shape {:?}", self.shape())));
        }
        let mut v = [0f32];
        self.copy_to(&mut v)?;
        Ok(v[0])
    }
}

impl Clone for Tensor {
    fn clone(&self) -> Tensor {
        unsafe { sys::nnm_tensor_retain(self.raw.as_ptr()) };
        Tensor { raw: self.raw, ctx: self.ctx.clone() }
    }
}

impl Drop for Tensor {
    fn drop(&mut self) {
        unsafe { sys::nnm_tensor_release(self.raw.as_ptr()) }
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor(shape={:?}, requires_grad={})", self.shape(), self.requires_grad())
    }
}
