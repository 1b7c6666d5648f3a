//! The context: plugins, the allocator, the error message, global hooks.
use std::ffi::{CStr, CString};
use std::path::Path;
use std::ptr;
use std::rc::Rc;

use nnmod_sys as sys;

use crate::error::{check, Error, Result};
use crate::module::Module;
use crate::tensor::Tensor;

/// Owns the C context; every Module and Tensor holds an `Rc` of it, so the
/// context is freed after the last object made from it (and messages can
/// always be read from it).
pub(crate) struct CtxInner {
    pub(crate) raw: *mut sys::nnm_ctx,
}

impl Drop for CtxInner {
    fn drop(&mut self) {
        unsafe { sys::nnm_ctx_free(self.raw) }
    }
}

/// How to make a context (see `nnm_ctx_options`).
#[derive(Clone, Copy, Debug)]
pub struct ContextOptions {
    /// Scan NNM_PLUGIN_PATH, the directory beside libnnmod and the installed
    /// plugin directory at creation (default: true).
    pub discovery: bool,
    /// Parameter-initialisation seed; 0 picks the library's default.
    pub seed: u64,
}

impl Default for ContextOptions {
    fn default() -> Self {
        ContextOptions { discovery: true, seed: 0 }
    }
}

/// An nnmod context. Cloning is cheap (one more handle to the same context).
///
/// Threads: the C contract is that a context and everything made from it is
/// used by one thread at a time, and grad mode is per thread. A Rust
/// `Context`, `Module` or `Tensor` is therefore neither `Send` nor `Sync`: make
/// the context on the thread that uses it (one context per thread is fine).
#[derive(Clone)]
pub struct Context {
    pub(crate) inner: Rc<CtxInner>,
}

pub(crate) fn cstring(what: &str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::new(sys::NNM_E_INVALID, format!("{what} contains a NUL byte")))
}

pub(crate) fn path_cstring(p: &Path) -> Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::new(sys::NNM_E_INVALID, "path contains a NUL byte"))
}

impl Context {
    /// A context with plugin discovery on and the default seed.
    pub fn new() -> Result<Context> {
        Context::with_options(ContextOptions::default())
    }

    pub fn with_options(opts: ContextOptions) -> Result<Context> {
        let o = sys::nnm_ctx_options {
            struct_size: std::mem::size_of::<sys::nnm_ctx_options>() as u32,
            flags: if opts.discovery { 0 } else { sys::NNM_CTX_NO_DISCOVERY },
            seed: opts.seed,
        };
        let mut raw = ptr::null_mut();
        check(ptr::null(), unsafe { sys::nnm_ctx_new(&o, &mut raw) })?;
        Ok(Context { inner: Rc::new(CtxInner { raw }) })
    }

    /// The raw handle, for calls this crate does not wrap. Valid while self lives.
    pub fn as_ptr(&self) -> *mut sys::nnm_ctx {
        self.inner.raw
    }

    /// The message of the last failure on this context ("" if none).
    pub fn last_error(&self) -> String {
        unsafe { CStr::from_ptr(sys::nnm_ctx_errmsg(self.inner.raw)) }.to_string_lossy().into_owned()
    }

    /// Loads one plugin file (nnm_plugin_load).
    pub fn load_plugin(&self, path: impl AsRef<Path>) -> Result<()> {
        let p = path_cstring(path.as_ref())?;
        check(self.inner.raw, unsafe { sys::nnm_plugin_load(self.inner.raw, p.as_ptr()) })
    }

    /// Loads every *.so of a directory; returns how many loaded.
    pub fn load_plugin_dir(&self, dir: impl AsRef<Path>) -> Result<u32> {
        let p = path_cstring(dir.as_ref())?;
        let mut n = 0u32;
        check(self.inner.raw, unsafe { sys::nnm_plugin_load_dir(self.inner.raw, p.as_ptr(), &mut n) })?;
        Ok(n)
    }

    /// A module of the layer `request` ("linear", "linear@^1", ...) with `config`.
    pub fn create_module(&self, request: &str, config: &Config) -> Result<Module> {
        let r = cstring("request", request)?;
        let mut raw = ptr::null_mut();
        check(self.inner.raw, unsafe {
            sys::nnm_module_create(self.inner.raw, r.as_ptr(), config.raw, &mut raw)
        })?;
        Ok(unsafe { Module::from_raw(raw, self.inner.clone()) })
    }

    /// Reads a manifest (JSON or msgpack) and builds its module tree, loading
    /// the weights it names.
    pub fn load_manifest(&self, path: impl AsRef<Path>) -> Result<Module> {
        let p = path_cstring(path.as_ref())?;
        let mut mf = ptr::null_mut();
        check(self.inner.raw, unsafe {
            sys::nnm_manifest_load(self.inner.raw, p.as_ptr(), sys::NNM_MANIFEST_AUTO as i32, ptr::null(), &mut mf)
        })?;
        let mut raw = ptr::null_mut();
        let st = unsafe { sys::nnm_manifest_build(mf, 0, &mut raw) };
        unsafe { sys::nnm_manifest_free(mf) };
        check(self.inner.raw, st)?;
        Ok(unsafe { Module::from_raw(raw, self.inner.clone()) })
    }

    /// A CPU f32 tensor of `shape` holding a copy of `data` (row-major).
    pub fn tensor(&self, shape: &[i64], data: &[f32]) -> Result<Tensor> {
        let n = numel_of(shape)?;
        if n != data.len() {
            return Err(Error::new(
                sys::NNM_E_SHAPE,
                format!("shape {shape:?} holds {n} elements, data has {}", data.len()),
            ));
        }
        self.tensor_raw(shape, data.as_ptr())
    }

    /// A CPU f32 tensor of zeros.
    pub fn zeros(&self, shape: &[i64]) -> Result<Tensor> {
        numel_of(shape)?;
        self.tensor_raw(shape, ptr::null())
    }

    fn tensor_raw(&self, shape: &[i64], data: *const f32) -> Result<Tensor> {
        let mut raw = ptr::null_mut();
        check(self.inner.raw, unsafe {
            sys::nnm_tensor_from_f32(self.inner.raw, shape.len() as i32, shape.as_ptr(), data, &mut raw)
        })?;
        Ok(unsafe { Tensor::from_raw(raw, self.inner.clone()) })
    }
}

fn numel_of(shape: &[i64]) -> Result<usize> {
    if shape.len() > sys::NNM_MAX_DIMS as usize {
        return Err(Error::new(sys::NNM_E_SHAPE, format!("{} dims; at most {}", shape.len(), sys::NNM_MAX_DIMS)));
    }
    let mut n: usize = 1;
    for &d in shape {
        if d < 0 {
            return Err(Error::new(sys::NNM_E_SHAPE, format!("negative dim in {shape:?}")));
        }
        n = n
            .checked_mul(d as usize)
            .ok_or_else(|| Error::new(sys::NNM_E_LIMIT, format!("shape {shape:?} is too large")))?;
    }
    Ok(n)
}

/// A layer config (the typed map a layer's create reads), built by chaining:
/// `Config::new()?.int("in_features", 4)?.int("out_features", 8)?`.
pub struct Config {
    pub(crate) raw: *mut sys::nnm_config,
}

impl Config {
    pub fn new() -> Result<Config> {
        let mut raw = ptr::null_mut();
        let st = unsafe { sys::nnm_config_new(&mut raw) };
        if st != sys::NNM_OK {
            return Err(Error::new(st, "cannot make a config"));
        }
        Ok(Config { raw })
    }

    fn set(self, key: &str, f: impl FnOnce(*mut sys::nnm_config, *const std::os::raw::c_char) -> i32) -> Result<Config> {
        let k = cstring("config key", key)?;
        let st = f(self.raw, k.as_ptr());
        if st != sys::NNM_OK {
            return Err(Error::new(st, format!("config key {key:?} refused")));
        }
        Ok(self)
    }

    pub fn int(self, key: &str, v: i64) -> Result<Config> {
        self.set(key, |c, k| unsafe { sys::nnm_config_set_int(c, k, v) })
    }
    pub fn float(self, key: &str, v: f64) -> Result<Config> {
        self.set(key, |c, k| unsafe { sys::nnm_config_set_float(c, k, v) })
    }
    pub fn bool(self, key: &str, v: bool) -> Result<Config> {
        self.set(key, |c, k| unsafe { sys::nnm_config_set_bool(c, k, v as i32) })
    }
    pub fn str(self, key: &str, v: &str) -> Result<Config> {
        let s = cstring("config value", v)?;
        self.set(key, |c, k| unsafe { sys::nnm_config_set_str(c, k, s.as_ptr()) })
    }
    pub fn ints(self, key: &str, v: &[i64]) -> Result<Config> {
        self.set(key, |c, k| unsafe { sys::nnm_config_set_ints(c, k, v.as_ptr(), v.len()) })
    }
    pub fn floats(self, key: &str, v: &[f64]) -> Result<Config> {
        self.set(key, |c, k| unsafe { sys::nnm_config_set_floats(c, k, v.as_ptr(), v.len()) })
    }
}

impl Drop for Config {
    fn drop(&mut self) {
        unsafe { sys::nnm_config_free(self.raw) }
    }
}
