//! Hooks as Rust closures.
//!
//! A closure is boxed and handed to the runtime as the hook's user data; the
//! returned [`HookHandle`] owns the box and keeps the module (or context)
//! alive, so the runtime never calls a freed closure: the hook runs until
//! the handle is dropped or [`HookHandle::remove`]d, which unregisters it
//! and frees the closure. A closure that returns `Err` fails the call with
//! that status and message; a panic inside a closure is caught (it never
//! unwinds into C) and fails the call with NNM_E_HOOK.
use std::any::Any;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::rc::{Rc, Weak};

use nnmod_sys as sys;

use crate::context::{Context, CtxInner};
use crate::error::{check, Error, Result};
use crate::module::Module;
use crate::tensor::Tensor;

/// What a forward hook sees: the module, its inputs and outputs. Outputs
/// may be replaced with [`ForwardHookArgs::set_output`].
pub struct ForwardHookArgs<'a> {
    module: Module,
    inputs: Vec<Tensor>,
    outputs: Vec<Tensor>,
    out_slots: &'a mut [*mut sys::nnm_tensor],
}

impl ForwardHookArgs<'_> {
    pub fn module(&self) -> &Module {
        &self.module
    }
    pub fn inputs(&self) -> &[Tensor] {
        &self.inputs
    }
    pub fn outputs(&self) -> &[Tensor] {
        &self.outputs
    }
    /// Replaces output `i` (the call returns `t` instead).
    pub fn set_output(&mut self, i: usize, t: &Tensor) -> Result<()> {
        if i >= self.out_slots.len() {
            return Err(Error::new(sys::NNM_E_INVALID, format!("output {i} of {}", self.out_slots.len())));
        }
        // the runtime takes the new reference and releases the one replaced
        self.out_slots[i] = t.clone().into_raw();
        self.outputs[i] = t.clone();
        Ok(())
    }
}

/// What a forward-pre-hook sees: the module and its inputs, which may be
/// replaced with [`ForwardPreHookArgs::set_input`].
pub struct ForwardPreHookArgs<'a> {
    module: Module,
    inputs: Vec<Tensor>,
    in_slots: &'a mut [*mut sys::nnm_tensor],
}

impl ForwardPreHookArgs<'_> {
    pub fn module(&self) -> &Module {
        &self.module
    }
    pub fn inputs(&self) -> &[Tensor] {
        &self.inputs
    }
    /// Replaces input `i` (forward sees `t` instead).
    pub fn set_input(&mut self, i: usize, t: &Tensor) -> Result<()> {
        if i >= self.in_slots.len() {
            return Err(Error::new(sys::NNM_E_INVALID, format!("input {i} of {}", self.in_slots.len())));
        }
        self.in_slots[i] = t.clone().into_raw();
        self.inputs[i] = t.clone();
        Ok(())
    }
}

type ForwardFn = dyn FnMut(&mut ForwardHookArgs<'_>) -> Result<()>;
type PreFn = dyn FnMut(&mut ForwardPreHookArgs<'_>) -> Result<()>;

struct HookState<F: ?Sized> {
    // Weak: the context may own this hook (global hooks); every call comes
    // from a live Module, which holds the context, so upgrade succeeds.
    ctx: Weak<CtxInner>,
    f: Box<F>,
}

/// Turns a closure's result (or panic) into a status, recording the message.
unsafe fn finish(ctx: *mut sys::nnm_ctx, r: std::thread::Result<Result<()>>) -> sys::nnm_status {
    let (status, msg) = match r {
        Ok(Ok(())) => return sys::NNM_OK,
        Ok(Err(e)) => (if e.status() < 0 { e.status() } else { sys::NNM_E_HOOK }, e.message().to_owned()),
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic".into());
            (sys::NNM_E_HOOK, format!("Rust hook panicked: {what}"))
        }
    };
    let c = std::ffi::CString::new(msg.replace('\0', " ")).unwrap_or_default();
    sys::nnm_ctx_set_error_msg(ctx, status, c.as_ptr())
}

unsafe fn borrowed_list(p: *const *mut sys::nnm_tensor, n: u32, ctx: &Rc<CtxInner>) -> Vec<Tensor> {
    (0..n as usize).filter_map(|i| Tensor::from_borrowed(*p.add(i), ctx)).collect()
}

unsafe extern "C" fn forward_tramp(
    user: *mut c_void,
    m: *mut sys::nnm_module,
    inp: *const *mut sys::nnm_tensor,
    n_in: u32,
    out: *mut *mut sys::nnm_tensor,
    n_out: u32,
) -> sys::nnm_status {
    let st = &mut *(user as *mut HookState<ForwardFn>);
    let raw_ctx = sys::nnm_module_ctx(m);
    let Some(ctx) = st.ctx.upgrade() else {
        return sys::nnm_ctx_set_error_msg(raw_ctx, sys::NNM_E_STATE, c"Rust hook called after its context was dropped".as_ptr());
    };
    let r = catch_unwind(AssertUnwindSafe(|| {
        let slots = std::slice::from_raw_parts_mut(out, n_out as usize);
        let mut args = ForwardHookArgs {
            module: Module::from_borrowed(m, &ctx).expect("hook without module"),
            inputs: borrowed_list(inp, n_in, &ctx),
            outputs: borrowed_list(out, n_out, &ctx),
            out_slots: slots,
        };
        (st.f)(&mut args)
    }));
    finish(raw_ctx, r)
}

unsafe extern "C" fn pre_tramp(user: *mut c_void, m: *mut sys::nnm_module, inp: *mut *mut sys::nnm_tensor, n_in: u32) -> sys::nnm_status {
    let st = &mut *(user as *mut HookState<PreFn>);
    let raw_ctx = sys::nnm_module_ctx(m);
    let Some(ctx) = st.ctx.upgrade() else {
        return sys::nnm_ctx_set_error_msg(raw_ctx, sys::NNM_E_STATE, c"Rust hook called after its context was dropped".as_ptr());
    };
    let r = catch_unwind(AssertUnwindSafe(|| {
        let slots = std::slice::from_raw_parts_mut(inp, n_in as usize);
        let mut args = ForwardPreHookArgs {
            module: Module::from_borrowed(m, &ctx).expect("hook without module"),
            inputs: borrowed_list(inp, n_in, &ctx),
            in_slots: slots,
        };
        (st.f)(&mut args)
    }));
    finish(raw_ctx, r)
}

enum Owner {
    Module(#[allow(dead_code)] Module),
    Context(#[allow(dead_code)] Rc<CtxInner>),
}

/// A registered hook. Dropping it (or `remove()`) unregisters the hook and
/// frees its closure; while it lives, it keeps its module or context alive.
#[must_use = "the hook is removed when its handle is dropped"]
pub struct HookHandle {
    raw: *mut sys::nnm_hook_handle,
    // dropped after the hook is removed (fields drop after Drop::drop)
    _state: Box<dyn Any>,
    _owner: Owner,
}

impl HookHandle {
    /// Unregisters the hook now (same as dropping the handle).
    pub fn remove(self) {}
}

impl Drop for HookHandle {
    fn drop(&mut self) {
        unsafe { sys::nnm_hook_remove(self.raw) }
    }
}

fn boxed<F: ?Sized + 'static>(ctx: &Rc<CtxInner>, f: Box<F>) -> Box<HookState<F>> {
    Box::new(HookState { ctx: Rc::downgrade(ctx), f })
}

impl Module {
    /// register_forward_hook: `f` runs after every forward of this module.
    pub fn register_forward_hook<F>(&self, f: F) -> Result<HookHandle>
    where
        F: FnMut(&mut ForwardHookArgs<'_>) -> Result<()> + 'static,
    {
        let mut state = boxed::<ForwardFn>(&self.ctx, Box::new(f));
        let user = &mut *state as *mut HookState<ForwardFn> as *mut c_void;
        let mut raw = ptr::null_mut();
        check(self.ctx.raw, unsafe { sys::nnm_module_register_forward_hook(self.as_ptr(), Some(forward_tramp), user, &mut raw) })?;
        Ok(HookHandle { raw, _state: Box::new(state), _owner: Owner::Module(self.clone()) })
    }

    /// register_forward_pre_hook: `f` runs before every forward of this module.
    pub fn register_forward_pre_hook<F>(&self, f: F) -> Result<HookHandle>
    where
        F: FnMut(&mut ForwardPreHookArgs<'_>) -> Result<()> + 'static,
    {
        let mut state = boxed::<PreFn>(&self.ctx, Box::new(f));
        let user = &mut *state as *mut HookState<PreFn> as *mut c_void;
        let mut raw = ptr::null_mut();
        check(self.ctx.raw, unsafe { sys::nnm_module_register_forward_pre_hook(self.as_ptr(), Some(pre_tramp), user, &mut raw) })?;
        Ok(HookHandle { raw, _state: Box::new(state), _owner: Owner::Module(self.clone()) })
    }
}

impl Context {
    /// A global forward hook: runs after the forward of every module of this
    /// context (register_module_forward_hook).
    pub fn register_forward_hook<F>(&self, f: F) -> Result<HookHandle>
    where
        F: FnMut(&mut ForwardHookArgs<'_>) -> Result<()> + 'static,
    {
        let mut state = boxed::<ForwardFn>(&self.inner, Box::new(f));
        let user = &mut *state as *mut HookState<ForwardFn> as *mut c_void;
        let mut raw = ptr::null_mut();
        check(self.inner.raw, unsafe { sys::nnm_ctx_register_forward_hook(self.inner.raw, Some(forward_tramp), user, &mut raw) })?;
        Ok(HookHandle { raw, _state: Box::new(state), _owner: Owner::Context(self.inner.clone()) })
    }

    /// A global forward-pre-hook (register_module_forward_pre_hook).
    pub fn register_forward_pre_hook<F>(&self, f: F) -> Result<HookHandle>
    where
        F: FnMut(&mut ForwardPreHookArgs<'_>) -> Result<()> + 'static,
    {
        let mut state = boxed::<PreFn>(&self.inner, Box::new(f));
        let user = &mut *state as *mut HookState<PreFn> as *mut c_void;
        let mut raw = ptr::null_mut();
        check(self.inner.raw, unsafe { sys::nnm_ctx_register_forward_pre_hook(self.inner.raw, Some(pre_tramp), user, &mut raw) })?;
        Ok(HookHandle { raw, _state: Box::new(state), _owner: Owner::Context(self.inner.clone()) })
    }
}
