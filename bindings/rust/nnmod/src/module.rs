//! Modules: the tree, THE call, modes, parameters, state.
use std::ffi::{c_void, CStr};
use std::fmt;
use std::ptr::{self, NonNull};
use std::rc::Rc;

use nnmod_sys as sys;

use crate::context::{cstring, CtxInner};
use crate::error::{check, Error, Result};
use crate::tensor::Tensor;

/// One reference to an nnmod module (and, through it, its subtree).
/// `Clone` takes another reference to the same module.
pub struct Module {
    raw: NonNull<sys::nnm_module>,
    pub(crate) ctx: Rc<CtxInner>,
}

const MAX_IO: usize = sys::NNM_MAX_IO as usize;

impl Module {
    /// Takes ownership of one reference to `raw` (not null).
    pub(crate) unsafe fn from_raw(raw: *mut sys::nnm_module, ctx: Rc<CtxInner>) -> Module {
        Module { raw: NonNull::new(raw).expect("nnmod returned a null module"), ctx }
    }

    /// Takes a new reference to a borrowed `raw` (NULL: None).
    pub(crate) unsafe fn from_borrowed(raw: *mut sys::nnm_module, ctx: &Rc<CtxInner>) -> Option<Module> {
        if raw.is_null() {
            return None;
        }
        sys::nnm_module_retain(raw);
        Some(Module::from_raw(raw, ctx.clone()))
    }

    /// The raw handle (borrowed; valid while self lives).
    pub fn as_ptr(&self) -> *mut sys::nnm_module {
        self.raw.as_ptr()
    }

    /// module(x) for a module of one input and one output: the fast path.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let inp = [x.as_ptr()];
        let mut out = [ptr::null_mut(); 1];
        check(self.ctx.raw, unsafe { sys::nnm_module_call(self.raw.as_ptr(), inp.as_ptr(), 1, out.as_mut_ptr(), 1) })?;
        Ok(unsafe { Tensor::from_raw(out[0], self.ctx.clone()) })
    }

    /// module(*inputs) with `n_out` outputs (at most NNM_MAX_IO each way).
    pub fn call(&self, inputs: &[&Tensor], n_out: usize) -> Result<Vec<Tensor>> {
        if inputs.len() > MAX_IO || n_out > MAX_IO {
            return Err(Error::new(sys::NNM_E_LIMIT, format!("at most {MAX_IO} inputs and outputs")));
        }
        let mut inp = [ptr::null_mut(); MAX_IO];
        for (slot, t) in inp.iter_mut().zip(inputs) {
            *slot = t.as_ptr();
        }
        let mut out = [ptr::null_mut(); MAX_IO];
        check(self.ctx.raw, unsafe {
            sys::nnm_module_call(self.raw.as_ptr(), inp.as_ptr(), inputs.len() as u32, out.as_mut_ptr(), n_out as u32)
        })?;
        Ok(out[..n_out].iter().map(|&p| unsafe { Tensor::from_raw(p, self.ctx.clone()) }).collect())
    }

    fn borrowed_str(p: *const std::os::raw::c_char) -> String {
        if p.is_null() {
            return String::new();
        }
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }

    /// Its name in its parent ("" for a root).
    pub fn name(&self) -> String {
        Module::borrowed_str(unsafe { sys::nnm_module_name(self.raw.as_ptr()) })
    }

    /// Its layer type ("linear").
    pub fn type_name(&self) -> String {
        Module::borrowed_str(unsafe { sys::nnm_module_type(self.raw.as_ptr()) })
    }

    /// The dotted path from the root ("layers.3.fc1"; "" for a root).
    pub fn path(&self) -> String {
        let n = unsafe { sys::nnm_module_path(self.raw.as_ptr(), ptr::null_mut(), 0) };
        if n <= 0 {
            return String::new();
        }
        let mut buf = vec![0u8; n as usize + 1];
        unsafe { sys::nnm_module_path(self.raw.as_ptr(), buf.as_mut_ptr() as *mut _, buf.len()) };
        buf.truncate(n as usize);
        String::from_utf8_lossy(&buf).into_owned()
    }

    pub fn parent(&self) -> Option<Module> {
        unsafe { Module::from_borrowed(sys::nnm_module_parent(self.raw.as_ptr()), &self.ctx) }
    }

    pub fn children(&self) -> Vec<Module> {
        let n = unsafe { sys::nnm_module_child_count(self.raw.as_ptr()) };
        (0..n)
            .filter_map(|i| unsafe { Module::from_borrowed(sys::nnm_module_child(self.raw.as_ptr(), i), &self.ctx) })
            .collect()
    }

    /// A descendant by dotted path ("layers.3").
    pub fn get(&self, path: &str) -> Option<Module> {
        let p = cstring("path", path).ok()?;
        unsafe { Module::from_borrowed(sys::nnm_module_get(self.raw.as_ptr(), p.as_ptr()), &self.ctx) }
    }

    /// Appends `child` under `name` (None: its index).
    pub fn add_child(&self, name: Option<&str>, child: &Module) -> Result<()> {
        let n = name.map(|s| cstring("name", s)).transpose()?;
        check(self.ctx.raw, unsafe {
            sys::nnm_module_add_child(self.raw.as_ptr(), n.as_ref().map_or(ptr::null(), |c| c.as_ptr()), child.as_ptr())
        })
    }

    /// train(true) / eval() on the whole subtree.
    pub fn train(&self, training: bool) -> Result<()> {
        check(self.ctx.raw, unsafe { sys::nnm_module_train(self.raw.as_ptr(), training as i32) })
    }
    pub fn eval(&self) -> Result<()> {
        self.train(false)
    }
    pub fn is_training(&self) -> bool {
        unsafe { sys::nnm_module_is_training(self.raw.as_ptr()) != 0 }
    }

    pub fn num_params(&self) -> i64 {
        unsafe { sys::nnm_module_num_params(self.raw.as_ptr()) }
    }

    /// zero_grad(set_to_none=True) over the subtree.
    pub fn zero_grad(&self) -> Result<()> {
        check(self.ctx.raw, unsafe { sys::nnm_module_zero_grad(self.raw.as_ptr()) })
    }

    /// (dotted name, parameter), like named_parameters(): new references.
    pub fn named_parameters(&self) -> Result<Vec<(String, Tensor)>> {
        self.named_tensors(sys::nnm_module_named_parameters)
    }

    /// (dotted name, buffer), persistent and not.
    pub fn named_buffers(&self) -> Result<Vec<(String, Tensor)>> {
        self.named_tensors(sys::nnm_module_named_buffers)
    }

    fn named_tensors(
        &self,
        walk: unsafe extern "C" fn(*mut sys::nnm_module, sys::nnm_tensor_visit_fn, *mut c_void) -> sys::nnm_status,
    ) -> Result<Vec<(String, Tensor)>> {
        struct Acc<'a> {
            ctx: &'a Rc<CtxInner>,
            out: Vec<(String, Tensor)>,
        }
        unsafe extern "C" fn visit(user: *mut c_void, name: *const std::os::raw::c_char, t: *mut sys::nnm_tensor) -> sys::nnm_status {
            let acc = &mut *(user as *mut Acc);
            if let Some(t) = Tensor::from_borrowed(t, acc.ctx) {
                acc.out.push((CStr::from_ptr(name).to_string_lossy().into_owned(), t));
            }
            sys::NNM_OK
        }
        let mut acc = Acc { ctx: &self.ctx, out: Vec::new() };
        check(self.ctx.raw, unsafe { walk(self.raw.as_ptr(), Some(visit), &mut acc as *mut Acc as *mut c_void) })?;
        Ok(acc.out)
    }

    /// (dotted name, module), pre-order, self first with "" (named_modules()).
    pub fn named_modules(&self) -> Result<Vec<(String, Module)>> {
        struct Acc<'a> {
            ctx: &'a Rc<CtxInner>,
            out: Vec<(String, Module)>,
        }
        unsafe extern "C" fn visit(user: *mut c_void, name: *const std::os::raw::c_char, m: *mut sys::nnm_module) -> sys::nnm_status {
            let acc = &mut *(user as *mut Acc);
            if let Some(m) = Module::from_borrowed(m, acc.ctx) {
                acc.out.push((CStr::from_ptr(name).to_string_lossy().into_owned(), m));
            }
            sys::NNM_OK
        }
        let mut acc = Acc { ctx: &self.ctx, out: Vec::new() };
        check(self.ctx.raw, unsafe {
            sys::nnm_module_named_modules(self.raw.as_ptr(), Some(visit), &mut acc as *mut Acc as *mut c_void)
        })?;
        Ok(acc.out)
    }
}

impl Clone for Module {
    fn clone(&self) -> Module {
        unsafe { sys::nnm_module_retain(self.raw.as_ptr()) };
        Module { raw: self.raw, ctx: self.ctx.clone() }
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        unsafe { sys::nnm_module_release(self.raw.as_ptr()) }
    }
}

/// print(model)
impl fmt::Display for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = unsafe { sys::nnm_module_repr(self.raw.as_ptr(), ptr::null_mut(), 0) };
        if n <= 0 {
            return Ok(());
        }
        let mut buf = vec![0u8; n as usize + 1];
        unsafe { sys::nnm_module_repr(self.raw.as_ptr(), buf.as_mut_ptr() as *mut _, buf.len()) };
        buf.truncate(n as usize);
        // as Python's repr and PyTorch's: no trailing newline, so that
        // println!("{model}") prints what print(model) prints
        while buf.last() == Some(&b'\n') {
            buf.pop();
        }
        f.write_str(&String::from_utf8_lossy(&buf))
    }
}

impl fmt::Debug for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Module({:?}, {})", self.path(), self.type_name())
    }
}
