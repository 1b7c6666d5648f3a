//! Training checkpoints: a module's weights, an optimizer's state and user
//! metadata in one safetensors file, to resume training exactly.
//!
//! ```no_run
//! # use nnmod::{checkpoint, Adam, Context, Optimizer};
//! # let ctx = Context::new()?;
//! # let model = ctx.load_manifest("mlp.json")?;
//! let mut opt = Optimizer::adam(&model, Adam::new(1e-3))?;
//! checkpoint::save("ckpt.safetensors", &model, Some(&opt), &[("epoch", "3")])?;
//! checkpoint::load("ckpt.safetensors", &model, Some(&mut opt))?;
//! # Ok::<(), nnmod::Error>(())
//! ```
use std::ffi::CStr;
use std::os::raw::c_char;
use std::path::Path;
use std::ptr;

use nnmod_sys as sys;

use crate::context::{path_cstring, Context};
use crate::error::{check, Result};
use crate::module::Module;
use crate::optim::Optimizer;
use crate::state::Meta;

/// Writes `m`'s state dict, `opt`'s state and hyper-parameters (None: the
/// weights only) and the user pairs `metadata` (keys must not start with
/// "nnmod") to `path`, atomically. Every parameter of `opt` must be in `m`.
pub fn save(path: impl AsRef<Path>, m: &Module, opt: Option<&Optimizer>, metadata: &[(&str, &str)]) -> Result<()> {
    let p = path_cstring(path.as_ref())?;
    let meta = Meta::new(metadata)?;
    let o = opt.map_or(ptr::null_mut(), |o| o.as_ptr());
    check(m.ctx.raw, unsafe { sys::nnm_checkpoint_save(p.as_ptr(), m.as_ptr(), o, ptr::null(), meta.len(), meta.as_ptr()) })
}

/// Restores what [`save`] wrote into `m` (strict on its keys) and `opt`
/// (the same kind over the same parameters and groups; its hyper-parameters,
/// step counts and state become the file's). None: the weights alone load.
/// Nothing changes on failure.
pub fn load(path: impl AsRef<Path>, m: &Module, opt: Option<&mut Optimizer>) -> Result<()> {
    let p = path_cstring(path.as_ref())?;
    let o = opt.map_or(ptr::null_mut(), |o| o.as_ptr());
    check(m.ctx.raw, unsafe { sys::nnm_checkpoint_load(p.as_ptr(), m.as_ptr(), o) })
}

/// The `__metadata__` pairs of a safetensors file (a checkpoint's or a
/// saved module's), in the file's order: the user's and nnmod's own.
pub fn metadata(ctx: &Context, path: impl AsRef<Path>) -> Result<Vec<(String, String)>> {
    let p = path_cstring(path.as_ref())?;
    let c = ctx.as_ptr();
    let mut st = ptr::null_mut();
    check(c, unsafe { sys::nnm_safetensors_open(c, p.as_ptr(), &mut st) })?;
    let mut out = Vec::new();
    let mut res = Ok(());
    for i in 0..unsafe { sys::nnm_safetensors_metadata_count(st) } {
        let (mut k, mut v): (*const c_char, *const c_char) = (ptr::null(), ptr::null());
        res = check(c, unsafe { sys::nnm_safetensors_metadata(st, i, &mut k, &mut v) });
        if res.is_err() {
            break;
        }
        let s = |p: *const c_char| if p.is_null() { String::new() } else { unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned() };
        out.push((s(k), s(v)));
    }
    unsafe { sys::nnm_safetensors_close(st) };
    res.map(|_| out)
}
