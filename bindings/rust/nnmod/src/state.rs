//! Weights: safetensors files (save/load), in-memory state dicts, and the
//! report of what a load found that did not fit.
use std::ffi::CStr;
use std::os::raw::c_char;
use std::path::Path;
use std::ptr::{self, NonNull};
use std::rc::Rc;

use nnmod_sys as sys;

use crate::context::{cstring, path_cstring, Context, CtxInner};
use crate::error::{check, Error, Result};
use crate::module::Module;
use crate::tensor::Tensor;

/// What a load found that did not fit (PyTorch's `_IncompatibleKeys`, plus
/// shape or dtype mismatches: `"fc1.weight: file [2, 3] vs module [3, 2]"`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub missing: Vec<String>,
    pub unexpected: Vec<String>,
    pub mismatched: Vec<String>,
}

impl LoadReport {
    /// True when every key fitted.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }

    /// Copies and frees a report the library handed over (NULL: empty).
    unsafe fn take(rep: *mut sys::nnm_load_report) -> LoadReport {
        let mut out = LoadReport::default();
        if rep.is_null() {
            return out;
        }
        let r = &*rep;
        let list = |p: *const *const c_char, n: u32| -> Vec<String> {
            if p.is_null() {
                return Vec::new();
            }
            (0..n as usize).map(|i| CStr::from_ptr(*p.add(i)).to_string_lossy().into_owned()).collect()
        };
        out.missing = list(r.missing, r.n_missing);
        out.unexpected = list(r.unexpected, r.n_unexpected);
        out.mismatched = list(r.mismatched, r.n_mismatched);
        sys::nnm_load_report_free(rep);
        out
    }
}

/// The result of a load call: Ok(report), or the error with the report
/// attached when the library filled one (a refusal for keys that do not fit).
fn load_result(ctx: *const sys::nnm_ctx, status: i32, rep: *mut sys::nnm_load_report) -> Result<LoadReport> {
    // read the message before anything else can overwrite it
    let err = check(ctx, status).err();
    let report = unsafe { LoadReport::take(rep) };
    match err {
        None => Ok(report),
        Some(e) if !rep.is_null() => Err(e.with_report(report)),
        Some(e) => Err(e),
    }
}

/// Owned user metadata as the C writers take it: the strings and the
/// nnm_kv array pointing into them.
pub(crate) struct Meta {
    _strings: Vec<(std::ffi::CString, std::ffi::CString)>,
    kv: Vec<sys::nnm_kv>,
}

impl Meta {
    pub(crate) fn new(pairs: &[(&str, &str)]) -> Result<Meta> {
        let strings = pairs
            .iter()
            .map(|(k, v)| Ok((cstring("metadata key", k)?, cstring("metadata value", v)?)))
            .collect::<Result<Vec<_>>>()?;
        let kv = strings.iter().map(|(k, v)| sys::nnm_kv { key: k.as_ptr(), value: v.as_ptr() }).collect();
        Ok(Meta { _strings: strings, kv })
    }
    pub(crate) fn len(&self) -> u32 {
        self.kv.len() as u32
    }
    pub(crate) fn as_ptr(&self) -> *const sys::nnm_kv {
        if self.kv.is_empty() {
            ptr::null()
        } else {
            self.kv.as_ptr()
        }
    }
}

impl Module {
    /// Saves every parameter and persistent buffer under its state dict key
    /// (PyTorch's) to a safetensors file, atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        self.save_with_metadata(path, &[])
    }

    /// `save` with user pairs in the file's `__metadata__` (besides
    /// "nnmod_version" and, for a root built from a manifest, its hash).
    pub fn save_with_metadata(&self, path: impl AsRef<Path>, metadata: &[(&str, &str)]) -> Result<()> {
        let p = path_cstring(path.as_ref())?;
        let meta = Meta::new(metadata)?;
        check(self.ctx.raw, unsafe { sys::nnm_module_save(self.as_ptr(), p.as_ptr(), meta.len(), meta.as_ptr()) })
    }

    /// Loads a safetensors state dict onto the module's device. A shape that
    /// does not fit fails (NNM_E_SHAPE) strict or not; `strict`: a missing or
    /// unexpected key fails too (NNM_E_NOT_FOUND). Nothing changes on a
    /// refusal, and the error's [`Error::load_report`] lists every key. Not
    /// strict, the matching keys load and the report lists the rest.
    pub fn load(&self, path: impl AsRef<Path>, strict: bool) -> Result<LoadReport> {
        let p = path_cstring(path.as_ref())?;
        let mut rep = ptr::null_mut();
        let st = unsafe { sys::nnm_module_load(self.as_ptr(), p.as_ptr(), strict as i32, &mut rep) };
        load_result(self.ctx.raw, st, rep)
    }

    /// m.state_dict(): every parameter and persistent buffer under its
    /// dotted key, as tensors that share the module's storage and carry no
    /// autograd (writing into one writes into the module).
    pub fn state_dict(&self) -> Result<StateDict> {
        let mut raw = ptr::null_mut();
        check(self.ctx.raw, unsafe { sys::nnm_module_state_dict(self.as_ptr(), &mut raw) })?;
        Ok(unsafe { StateDict::from_raw(raw, self.ctx.clone()) })
    }

    /// m.load_state_dict(sd, strict): the rules of [`Module::load`]; the data
    /// is copied, `sd` is not kept.
    pub fn load_state_dict(&self, sd: &StateDict, strict: bool) -> Result<LoadReport> {
        let mut rep = ptr::null_mut();
        let st = unsafe { sys::nnm_module_load_state_dict(self.as_ptr(), sd.raw.as_ptr(), strict as i32, &mut rep) };
        load_result(self.ctx.raw, st, rep)
    }
}

/// An in-memory state dict: name -> tensor in insertion order, like the
/// OrderedDict of PyTorch's `state_dict()`. It holds a reference on each
/// tensor; `Drop` frees it.
pub struct StateDict {
    raw: NonNull<sys::nnm_state_dict>,
    ctx: Rc<CtxInner>,
}

impl StateDict {
    unsafe fn from_raw(raw: *mut sys::nnm_state_dict, ctx: Rc<CtxInner>) -> StateDict {
        StateDict { raw: NonNull::new(raw).expect("nnmod returned a null state dict"), ctx }
    }

    /// An empty state dict of `ctx`, to fill with [`StateDict::insert`].
    pub fn new(ctx: &Context) -> Result<StateDict> {
        let mut raw = ptr::null_mut();
        check(ctx.inner.raw, unsafe { sys::nnm_state_dict_new(ctx.inner.raw, &mut raw) })?;
        Ok(unsafe { StateDict::from_raw(raw, ctx.inner.clone()) })
    }

    /// The raw handle (borrowed; valid while self lives).
    pub fn as_ptr(&self) -> *mut sys::nnm_state_dict {
        self.raw.as_ptr()
    }

    pub fn len(&self) -> usize {
        unsafe { sys::nnm_state_dict_count(self.raw.as_ptr()) as usize }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// sd[name] = t (a new reference; an existing name keeps its place).
    /// The tensor must be of the dict's context.
    pub fn insert(&mut self, name: &str, t: &Tensor) -> Result<()> {
        if !Rc::ptr_eq(&self.ctx, &t.ctx) {
            return Err(Error::new(sys::NNM_E_INVALID, format!("{name}: the tensor is of another context")));
        }
        let n = cstring("name", name)?;
        check(self.ctx.raw, unsafe { sys::nnm_state_dict_set(self.raw.as_ptr(), n.as_ptr(), t.as_ptr()) })
    }

    /// The tensor under `name` (a new reference), or None.
    pub fn get(&self, name: &str) -> Option<Tensor> {
        let n = cstring("name", name).ok()?;
        unsafe { Tensor::from_borrowed(sys::nnm_state_dict_get(self.raw.as_ptr(), n.as_ptr()), &self.ctx) }
    }

    /// The names, in order.
    pub fn keys(&self) -> Vec<String> {
        self.entries_with(false).into_iter().map(|(k, _)| k).collect()
    }

    /// (name, tensor) pairs in order, each tensor a new reference.
    pub fn entries(&self) -> Vec<(String, Tensor)> {
        self.entries_with(true).into_iter().filter_map(|(k, t)| t.map(|t| (k, t))).collect()
    }

    fn entries_with(&self, tensors: bool) -> Vec<(String, Option<Tensor>)> {
        let n = unsafe { sys::nnm_state_dict_count(self.raw.as_ptr()) };
        let mut out = Vec::with_capacity(n as usize);
        for i in 0..n {
            let mut name: *const c_char = ptr::null();
            let mut t: *mut sys::nnm_tensor = ptr::null_mut();
            let tp = if tensors { &mut t as *mut _ } else { ptr::null_mut() };
            if unsafe { sys::nnm_state_dict_entry(self.raw.as_ptr(), i, &mut name, tp) } != sys::NNM_OK || name.is_null() {
                break;
            }
            let k = unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned();
            out.push((k, unsafe { Tensor::from_borrowed(t, &self.ctx) }));
        }
        out
    }
}

impl Drop for StateDict {
    fn drop(&mut self) {
        unsafe { sys::nnm_state_dict_free(self.raw.as_ptr()) }
    }
}

impl std::fmt::Debug for StateDict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("StateDict").field(&self.keys()).finish()
    }
}
