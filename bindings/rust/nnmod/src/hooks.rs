//! Hooks as Rust closures.
//!
//! A closure is boxed and handed to the runtime as the hook's user data, with
//! a destructor (`nnm_hook_options.user_free`) that drops the box: the runtime
//! frees the closure exactly once, when the hook is removed
//! ([`HookHandle::remove`]), when its module dies, or (a global hook) when the
//! context is freed. As in PyTorch, dropping the [`HookHandle`] does not
//! remove the hook; the handle stays safe to use after the module is gone.
//! A closure that returns `Err` fails the call with that status and message;
//! a panic inside a closure is caught (it never unwinds into C) and fails the
//! call with NNM_E_HOOK.
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::rc::{Rc, Weak};

use nnmod_sys as sys;

use crate::context::{Context, CtxInner};
use crate::error::{Error, Result};
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

/// What a full backward hook sees (register_full_backward_hook): the module,
/// the gradients of its inputs (`None`: that input gets none), which may be
/// replaced with [`BackwardHookArgs::set_grad_input`], and those of its outputs.
pub struct BackwardHookArgs<'a> {
    module: Module,
    grad_inputs: Vec<Option<Tensor>>,
    grad_outputs: Vec<Option<Tensor>>,
    in_slots: &'a mut [*mut sys::nnm_tensor],
}

impl BackwardHookArgs<'_> {
    pub fn module(&self) -> &Module {
        &self.module
    }
    pub fn grad_inputs(&self) -> &[Option<Tensor>] {
        &self.grad_inputs
    }
    pub fn grad_outputs(&self) -> &[Option<Tensor>] {
        &self.grad_outputs
    }
    /// Replaces the gradient of input `i` (backward goes on with `t`).
    pub fn set_grad_input(&mut self, i: usize, t: &Tensor) -> Result<()> {
        if i >= self.in_slots.len() {
            return Err(Error::new(sys::NNM_E_INVALID, format!("grad_input {i} of {}", self.in_slots.len())));
        }
        // the runtime takes the new reference and releases the one replaced
        self.in_slots[i] = t.clone().into_raw();
        self.grad_inputs[i] = Some(t.clone());
        Ok(())
    }
}

type ForwardFn = dyn FnMut(&mut ForwardHookArgs<'_>) -> Result<()>;
type BackwardFn = dyn FnMut(&mut BackwardHookArgs<'_>) -> Result<()>;
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

unsafe fn optional_list(p: *const *mut sys::nnm_tensor, n: u32, ctx: &Rc<CtxInner>) -> Vec<Option<Tensor>> {
    (0..n as usize).map(|i| Tensor::from_borrowed(*p.add(i), ctx)).collect()
}

unsafe extern "C" fn backward_tramp(
    user: *mut c_void,
    m: *mut sys::nnm_module,
    grad_in: *mut *mut sys::nnm_tensor,
    n_in: u32,
    grad_out: *const *mut sys::nnm_tensor,
    n_out: u32,
) -> sys::nnm_status {
    let st = &mut *(user as *mut HookState<BackwardFn>);
    let raw_ctx = sys::nnm_module_ctx(m);
    let Some(ctx) = st.ctx.upgrade() else {
        return sys::nnm_ctx_set_error_msg(raw_ctx, sys::NNM_E_STATE, c"Rust hook called after its context was dropped".as_ptr());
    };
    let r = catch_unwind(AssertUnwindSafe(|| {
        let slots = std::slice::from_raw_parts_mut(grad_in, n_in as usize);
        let mut args = BackwardHookArgs {
            module: Module::from_borrowed(m, &ctx).expect("hook without module"),
            grad_inputs: optional_list(grad_in, n_in, &ctx),
            grad_outputs: optional_list(grad_out, n_out, &ctx),
            in_slots: slots,
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

/// A registered hook (the caller's `nnm_hook_handle`). Dropping it frees the
/// handle, not the hook.
pub struct HookHandle {
    raw: *mut sys::nnm_hook_handle,
    _ctx: Rc<CtxInner>, // handles follow their context's thread rule
}

impl HookHandle {
    /// Removes the hook (handle.remove()); its closure is dropped. Returns
    /// false when it was already gone (removed before, or its module died).
    pub fn remove(&self) -> bool {
        unsafe { sys::nnm_hook_handle_remove(self.raw) == sys::NNM_OK }
    }

    /// Whether the hook is still registered.
    pub fn is_live(&self) -> bool {
        unsafe { sys::nnm_hook_handle_is_live(self.raw) != 0 }
    }
}

impl Drop for HookHandle {
    fn drop(&mut self) {
        unsafe { sys::nnm_hook_handle_free(self.raw) }
    }
}

/// How to register a hook: PyTorch's prepend and always_call.
#[derive(Clone, Copy, Debug, Default)]
pub struct HookOptions {
    /// Run before the hooks already registered (prepend=True).
    pub prepend: bool,
    /// Forward hooks only: run even when the call fails (always_call=True).
    pub always_call: bool,
}

unsafe extern "C" fn free_state<F: ?Sized>(user: *mut c_void) {
    // the runtime calls this exactly once; a panicking Drop must not unwind into C
    let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(user as *mut HookState<F>))));
}

/// Boxes `f`, registers it through `reg` with a destructor, and hands out the handle.
fn register<F: ?Sized + 'static>(
    ctx: &Rc<CtxInner>,
    f: Box<F>,
    opts: HookOptions,
    reg: impl FnOnce(*mut c_void, *const sys::nnm_hook_options, *mut *mut sys::nnm_hook_handle) -> sys::nnm_status,
) -> Result<HookHandle> {
    let user = Box::into_raw(boxed::<F>(ctx, f)) as *mut c_void;
    let o = sys::nnm_hook_options {
        struct_size: std::mem::size_of::<sys::nnm_hook_options>() as u32,
        flags: (if opts.prepend { sys::NNM_HOOK_PREPEND } else { 0 }) | (if opts.always_call { sys::NNM_HOOK_ALWAYS_CALL } else { 0 }),
        user_free: Some(free_state::<F>),
    };
    let mut raw = ptr::null_mut();
    let st = reg(user, &o, &mut raw);
    if st != sys::NNM_OK {
        // on failure user_free is not called: the box is still ours
        drop(unsafe { Box::from_raw(user as *mut HookState<F>) });
        return Err(Error::from_ctx(ctx.raw, st));
    }
    Ok(HookHandle { raw, _ctx: ctx.clone() })
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
        self.register_forward_hook_with(HookOptions::default(), f)
    }

    /// register_forward_hook(..., prepend=, always_call=).
    pub fn register_forward_hook_with<F>(&self, opts: HookOptions, f: F) -> Result<HookHandle>
    where
        F: FnMut(&mut ForwardHookArgs<'_>) -> Result<()> + 'static,
    {
        let m = self.as_ptr();
        register::<ForwardFn>(&self.ctx, Box::new(f), opts, |user, o, h| unsafe {
            sys::nnm_module_register_forward_hook_v2(m, Some(forward_tramp), user, o, h)
        })
    }

    /// register_forward_pre_hook: `f` runs before every forward of this module.
    pub fn register_forward_pre_hook<F>(&self, f: F) -> Result<HookHandle>
    where
        F: FnMut(&mut ForwardPreHookArgs<'_>) -> Result<()> + 'static,
    {
        let m = self.as_ptr();
        register::<PreFn>(&self.ctx, Box::new(f), HookOptions::default(), |user, o, h| unsafe {
            sys::nnm_module_register_forward_pre_hook_v2(m, Some(pre_tramp), user, o, h)
        })
    }
}

impl Module {
    /// register_full_backward_hook: `f` runs when backward reaches this
    /// module's node (for calls made while grad mode was on).
    pub fn register_full_backward_hook<F>(&self, f: F) -> Result<HookHandle>
    where
        F: FnMut(&mut BackwardHookArgs<'_>) -> Result<()> + 'static,
    {
        let m = self.as_ptr();
        register::<BackwardFn>(&self.ctx, Box::new(f), HookOptions::default(), |user, o, h| unsafe {
            sys::nnm_module_register_full_backward_hook_v2(m, Some(backward_tramp), user, o, h)
        })
    }
}

impl Context {
    /// A global forward hook: runs after the forward of every module of this
    /// context (register_module_forward_hook).
    pub fn register_forward_hook<F>(&self, f: F) -> Result<HookHandle>
    where
        F: FnMut(&mut ForwardHookArgs<'_>) -> Result<()> + 'static,
    {
        let c = self.inner.raw;
        register::<ForwardFn>(&self.inner, Box::new(f), HookOptions::default(), |user, o, h| unsafe {
            sys::nnm_ctx_register_forward_hook_v2(c, Some(forward_tramp), user, o, h)
        })
    }

    /// A global forward-pre-hook (register_module_forward_pre_hook).
    pub fn register_forward_pre_hook<F>(&self, f: F) -> Result<HookHandle>
    where
        F: FnMut(&mut ForwardPreHookArgs<'_>) -> Result<()> + 'static,
    {
        let c = self.inner.raw;
        register::<PreFn>(&self.inner, Box::new(f), HookOptions::default(), |user, o, h| unsafe {
            sys::nnm_ctx_register_forward_pre_hook_v2(c, Some(pre_tramp), user, o, h)
        })
    }
}
