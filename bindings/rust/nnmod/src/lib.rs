//! Safe Rust bindings of nnmod: PyTorch's `nn.Module` contract as a C runtime.
//!
//! ```no_run
//! use nnmod::{Context, Optimizer, Sgd};
//! let ctx = Context::new()?;
//! let model = ctx.load_manifest("examples/manifests/mlp.json")?;
//! let x = ctx.tensor(&[2, 4], &[0.5; 8])?;
//! let y = model.forward(&x)?;
//! let loss = y.mul(&y)?.mean()?;
//! loss.backward()?;
//! let mut opt = Optimizer::sgd(&model, Sgd::new(0.1))?;
//! opt.step()?;
//! # Ok::<(), nnmod::Error>(())
//! ```
//!
//! Ownership: [`Context`], [`Module`], [`Tensor`], [`Optimizer`] and
//! [`StateDict`] own one reference to their C object and release it on
//! `Drop`; `Clone` takes another reference. Every object keeps its context
//! alive.
//!
//! Weights: [`Module::save`] / [`Module::load`] (safetensors, with a
//! [`LoadReport`]), [`Module::state_dict`] / [`Module::load_state_dict`], and
//! training checkpoints in [`checkpoint`].
//!
//! Threads: none of them is `Send` or `Sync` (the C contract: one thread at
//! a time per context, grad mode per thread); use one context per thread.
//!
//! Errors: every fallible call returns [`Result`]; an [`Error`] carries the
//! status code, its name and the context's message (module path included).
pub mod checkpoint;
mod context;
mod error;
mod grad;
mod hooks;
mod module;
mod optim;
mod state;
mod tensor;

pub use context::{Config, Context, ContextOptions};
pub use error::{Error, Result};
pub use grad::{is_grad_enabled, no_grad, set_grad_enabled, GradGuard};
pub use hooks::{BackwardHookArgs, ForwardHookArgs, ForwardPreHookArgs, HookHandle, HookOptions};
pub use module::Module;
pub use nnmod_sys as sys;
pub use optim::{Adam, Optimizer, Sgd};
pub use state::{LoadReport, StateDict};
pub use tensor::Tensor;

/// The library's version ("0.4.0").
pub fn version() -> &'static str {
    unsafe { std::ffi::CStr::from_ptr(sys::nnm_version()) }.to_str().unwrap_or("")
}
