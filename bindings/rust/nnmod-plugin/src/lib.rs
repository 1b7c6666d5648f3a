//! Write an nnmod layer plugin in Rust.
//!
//! Implement [`Layer`] for a type, list it in [`plugin!`], build the crate as
//! a `cdylib`, and the C runtime loads the `.so` like any plugin written in C
//! (`nnm_plugin_load`, `NNM_PLUGIN_PATH`, a manifest):
//!
//! ```ignore
//! use nnmod_plugin::{plugin, Env, Layer, Outputs, PluginError, TensorRef};
//! struct Scale2;
//! impl Layer for Scale2 {
//!     const NAME: &'static std::ffi::CStr = c"scale2";
//!     const VERSION: (u32, u32, u32) = (1, 0, 0);
//!     fn create(_env: &Env) -> Result<Self, PluginError> { Ok(Scale2) }
//!     fn forward(&mut self, env: &Env, x: &[TensorRef], out: &mut Outputs) -> Result<(), PluginError> {
//!         let y = env.tensor_new(x[0].shape())?;
//!         /* ... fill y ... */
//!         out.set(0, y)
//!     }
//! }
//! plugin!(name: c"scale2", layers: [Scale2]);
//! ```
//!
//! What the crate does for you: the `nnm_layer_vtable` of each layer (a
//! `static`, built at compile time), the `nnm_plugin_desc`, and the one
//! exported symbol `nnm_plugin_entry`, which refuses a runtime of another ABI
//! major. Each slot is a trampoline that turns `Err` into a status and a
//! message through the host's `set_error`, catches panics (they never unwind
//! into C: the call fails with NNM_E_PLUGIN), boxes the layer's state
//! (`create`) and drops it (`destroy`).
//!
//! Ownership follows plugin.h: [`TensorRef`] is borrowed (inputs, saved
//! tensors, parameters, which the module owns); [`Tensor`] owns one reference
//! and releases it on drop; handing a `Tensor` to [`Outputs::set`] or
//! [`GradInputs::set`] gives its reference to the runtime.
use std::ffi::{c_char, c_void, CStr, CString};
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

pub use nnmod_sys as sys;

/// A failure a layer reports: a status (`sys::NNM_E_*`) and a message. The
/// runtime prefixes the module path ("encoder.norm (rms_norm): ...").
#[derive(Clone, Debug)]
pub struct PluginError {
    pub status: i32,
    pub message: String,
}

impl PluginError {
    pub fn new(status: i32, message: impl Into<String>) -> PluginError {
        PluginError { status, message: message.into() }
    }
    /// The status of a host call that failed; the host already set the message.
    fn from_host(status: i32) -> PluginError {
        PluginError { status, message: String::new() }
    }
}

pub type Result<T> = std::result::Result<T, PluginError>;

/// The environment of one invocation (create, forward, backward): the host
/// table and the runtime's private data. Valid only during that invocation.
pub struct Env<'a> {
    raw: *mut sys::nnm_env,
    _life: PhantomData<&'a mut sys::nnm_env>,
}

fn host_ok(status: i32) -> Result<()> {
    if status == sys::NNM_OK {
        Ok(())
    } else {
        Err(PluginError::from_host(status))
    }
}

fn cstr(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| PluginError::new(sys::NNM_E_INVALID, format!("{s:?} contains a NUL byte")))
}

/// A parameter initialiser for [`Env::param`].
#[derive(Clone, Copy, Debug)]
pub enum Init {
    Zeros,
    Ones,
    Constant(f64),
    Uniform(f64, f64),
    Normal(f64, f64),
}

impl<'a> Env<'a> {
    fn host(&self) -> &sys::nnm_host {
        unsafe { &*(*self.raw).host }
    }

    /// The raw env, for host slots this crate does not wrap.
    pub fn as_ptr(&self) -> *mut sys::nnm_env {
        self.raw
    }

    /// Whether the host has slot `offset_end` bytes into its table (a slot
    /// added after ABI 1.0).
    fn host_covers(&self, offset_end: usize) -> bool {
        self.host().struct_size as usize >= offset_end
    }

    fn set_error(&self, e: &PluginError) -> i32 {
        if e.message.is_empty() {
            return e.status; // the host set it already
        }
        let msg = CString::new(e.message.replace('\0', " ")).unwrap_or_default();
        // ABI 1.3's non-variadic slot when the host has it, else the printf-style
        // one (Rust can call C varargs; "%s" keeps the text literal)
        if self.host_covers(std::mem::offset_of!(sys::nnm_host, set_error_msg) + 8) {
            if let Some(f) = self.host().set_error_msg {
                return unsafe { f(self.raw, e.status, msg.as_ptr()) };
            }
        }
        match self.host().set_error {
            Some(f) => unsafe { f(self.raw, e.status, c"%s".as_ptr(), msg.as_ptr()) },
            None => e.status,
        }
    }

    /// An integer config value; `default` None means required.
    pub fn config_int(&self, key: &str, default: Option<i64>) -> Result<i64> {
        let k = cstr(key)?;
        let mut v = 0i64;
        let f = self.host().config_int.ok_or_else(|| PluginError::new(sys::NNM_E_UNSUPPORTED, "host has no config_int"))?;
        host_ok(unsafe { f(self.raw, k.as_ptr(), default.as_ref().map_or(ptr::null(), |d| d), &mut v) })?;
        Ok(v)
    }

    /// A float config value (an integer reads as a float); `default` None means required.
    pub fn config_float(&self, key: &str, default: Option<f64>) -> Result<f64> {
        let k = cstr(key)?;
        let mut v = 0f64;
        let f = self.host().config_float.ok_or_else(|| PluginError::new(sys::NNM_E_UNSUPPORTED, "host has no config_float"))?;
        host_ok(unsafe { f(self.raw, k.as_ptr(), default.as_ref().map_or(ptr::null(), |d| d), &mut v) })?;
        Ok(v)
    }

    /// A bool config value; `default` None means required.
    pub fn config_bool(&self, key: &str, default: Option<bool>) -> Result<bool> {
        let k = cstr(key)?;
        let mut v = 0i32;
        let d = default.map(|b| b as i32);
        let f = self.host().config_bool.ok_or_else(|| PluginError::new(sys::NNM_E_UNSUPPORTED, "host has no config_bool"))?;
        host_ok(unsafe { f(self.raw, k.as_ptr(), d.as_ref().map_or(ptr::null(), |d| d), &mut v) })?;
        Ok(v != 0)
    }

    /// Declares an f32 parameter (create only). The module owns it; the
    /// handle stays valid for the module's life, so keep it in the layer.
    pub fn param(&self, name: &str, shape: &[i64], init: Init) -> Result<TensorRef> {
        let n = cstr(name)?;
        let (code, a, b) = match init {
            Init::Zeros => (sys::NNM_INIT_ZEROS, 0.0, 0.0),
            Init::Ones => (sys::NNM_INIT_ONES, 0.0, 0.0),
            Init::Constant(a) => (sys::NNM_INIT_CONSTANT, a, 0.0),
            Init::Uniform(a, b) => (sys::NNM_INIT_UNIFORM, a, b),
            Init::Normal(a, b) => (sys::NNM_INIT_NORMAL, a, b),
        };
        let mut out = ptr::null_mut();
        let f = self.host().param_new.ok_or_else(|| PluginError::new(sys::NNM_E_UNSUPPORTED, "host has no param_new"))?;
        host_ok(unsafe { f(self.raw, n.as_ptr(), shape.len() as i32, shape.as_ptr(), code as i32, a, b, &mut out) })?;
        Ok(TensorRef::new(out, self.host()))
    }

    /// Declares what input `index` must look like (create only); dims < 0
    /// match any size; flags: sys::NNM_SPEC_LEADING_ANY.
    pub fn input_spec(&self, index: u32, dims: &[i64], flags: u32) -> Result<()> {
        let f = self.host().input_spec.ok_or_else(|| PluginError::new(sys::NNM_E_UNSUPPORTED, "host has no input_spec"))?;
        host_ok(unsafe { f(self.raw, index, dims.len() as i32, dims.as_ptr(), flags) })
    }

    pub fn is_training(&self) -> bool {
        self.host().is_training.map_or(false, |f| unsafe { f(self.raw) } != 0)
    }

    pub fn grad_enabled(&self) -> bool {
        self.host().grad_enabled.map_or(false, |f| unsafe { f(self.raw) } != 0)
    }

    pub fn device(&self) -> sys::nnm_device {
        self.host().device.map_or(sys::nnm_device { type_: sys::NNM_DEVICE_CPU as i32, id: 0 }, |f| unsafe { f(self.raw) })
    }

    /// A new contiguous f32 tensor on the invocation's device, contents undefined.
    pub fn tensor_new(&self, shape: &[i64]) -> Result<Tensor> {
        let mut out = ptr::null_mut();
        let f = self.host().tensor_new.ok_or_else(|| PluginError::new(sys::NNM_E_UNSUPPORTED, "host has no tensor_new"))?;
        host_ok(unsafe { f(self.raw, shape.len() as i32, shape.as_ptr(), sys::NNM_F32, &mut out) })?;
        Ok(Tensor(TensorRef::new(out, self.host())))
    }

    /// `t` itself when it is contiguous, else a contiguous copy (host op).
    pub fn contiguous(&self, t: TensorRef) -> Result<Tensor> {
        if t.is_contiguous() {
            unsafe { (t.retain)(t.raw) };
            return Ok(Tensor(t));
        }
        self.op_unary(sys::NNM_UNARY_COPY as i32, t, 0.0)
    }

    /// An elementwise host op (`sys::NNM_UNARY_*`), recorded for autograd
    /// when the layer has no backward of its own.
    pub fn op_unary(&self, op: i32, x: TensorRef, alpha: f64) -> Result<Tensor> {
        let mut out = ptr::null_mut();
        let f = self.host().op_unary.ok_or_else(|| PluginError::new(sys::NNM_E_UNSUPPORTED, "host has no op_unary"))?;
        host_ok(unsafe { f(self.raw, op, x.raw, alpha, &mut out) })?;
        Ok(Tensor(TensorRef::new(out, self.host())))
    }

    /// An elementwise host op with broadcasting (`sys::NNM_BINARY_*`).
    pub fn op_binary(&self, op: i32, a: TensorRef, b: TensorRef) -> Result<Tensor> {
        let mut out = ptr::null_mut();
        let f = self.host().op_binary.ok_or_else(|| PluginError::new(sys::NNM_E_UNSUPPORTED, "host has no op_binary"))?;
        host_ok(unsafe { f(self.raw, op, a.raw, b.raw, &mut out) })?;
        Ok(Tensor(TensorRef::new(out, self.host())))
    }

    /// A reduction (`sys::NNM_REDUCE_*`) over `dims` (negative count from the
    /// end; empty: every dim, a 0-d result), recorded for autograd when the
    /// layer has no backward of its own (ABI 1.1).
    pub fn op_reduce(&self, op: i32, x: TensorRef, dims: &[i32], keepdim: bool) -> Result<Tensor> {
        if !self.host_covers(std::mem::offset_of!(sys::nnm_host, op_reduce) + 8) {
            return Err(PluginError::new(sys::NNM_E_UNSUPPORTED, "host older than ABI 1.1 (no op_reduce)"));
        }
        let mut out = ptr::null_mut();
        let f = self.host().op_reduce.ok_or_else(|| PluginError::new(sys::NNM_E_UNSUPPORTED, "no op_reduce"))?;
        let d = if dims.is_empty() { ptr::null() } else { dims.as_ptr() };
        host_ok(unsafe { f(self.raw, op, x.raw, d, dims.len() as u32, keepdim as i32, &mut out) })?;
        Ok(Tensor(TensorRef::new(out, self.host())))
    }

    /// The same elements in another shape (one dim may be -1), ABI 1.1: a
    /// full `op_reduce` is 0-d, a `[1]` parameter's gradient is `[1]`.
    pub fn op_reshape(&self, x: TensorRef, shape: &[i64]) -> Result<Tensor> {
        if !self.host_covers(std::mem::offset_of!(sys::nnm_host, op_reshape) + 8) {
            return Err(PluginError::new(sys::NNM_E_UNSUPPORTED, "host older than ABI 1.1 (no op_reshape)"));
        }
        let mut out = ptr::null_mut();
        let f = self.host().op_reshape.ok_or_else(|| PluginError::new(sys::NNM_E_UNSUPPORTED, "no op_reshape"))?;
        host_ok(unsafe { f(self.raw, x.raw, shape.len() as i32, shape.as_ptr(), &mut out) })?;
        Ok(Tensor(TensorRef::new(out, self.host())))
    }

    /// Declares an f32 buffer (create only), like `register_buffer`:
    /// `persistent` puts it in the state dict. Borrowed, as [`Env::param`].
    /// Only `Init::Zeros`, `Ones` and `Constant` (ABI 1.0's buffer_new).
    pub fn buffer(&self, name: &str, shape: &[i64], init: Init, persistent: bool) -> Result<TensorRef> {
        let n = cstr(name)?;
        let (code, a) = match init {
            Init::Zeros => (sys::NNM_INIT_ZEROS, 0.0),
            Init::Ones => (sys::NNM_INIT_ONES, 0.0),
            Init::Constant(a) => (sys::NNM_INIT_CONSTANT, a),
            _ => return Err(PluginError::new(sys::NNM_E_INVALID, "a buffer takes Init::Zeros, Ones or Constant")),
        };
        let mut out = ptr::null_mut();
        let f = self.host().buffer_new.ok_or_else(|| PluginError::new(sys::NNM_E_UNSUPPORTED, "host has no buffer_new"))?;
        host_ok(unsafe { f(self.raw, n.as_ptr(), shape.len() as i32, shape.as_ptr(), code as i32, a, persistent as i32, &mut out) })?;
        Ok(TensorRef::new(out, self.host()))
    }

    /// Forward of a layer with a backward: keeps tensors for backward (a
    /// no-op when no graph is recorded).
    pub fn save_for_backward(&self, ts: &[TensorRef]) -> Result<()> {
        if !self.host_covers(std::mem::offset_of!(sys::nnm_host, save_for_backward) + 8) {
            return Err(PluginError::new(sys::NNM_E_UNSUPPORTED, "host older than ABI 1.1 (no save_for_backward)"));
        }
        let raws: Vec<*mut sys::nnm_tensor> = ts.iter().map(|t| t.raw).collect();
        let f = self.host().save_for_backward.ok_or_else(|| PluginError::new(sys::NNM_E_UNSUPPORTED, "no save_for_backward"))?;
        host_ok(unsafe { f(self.raw, raws.as_ptr(), raws.len() as u32) })
    }

    /// Backward: the tensors forward saved (borrowed, valid during the call).
    pub fn saved_tensors(&self) -> Result<Vec<TensorRef>> {
        if !self.host_covers(std::mem::offset_of!(sys::nnm_host, saved_tensors) + 8) {
            return Err(PluginError::new(sys::NNM_E_UNSUPPORTED, "host older than ABI 1.1 (no saved_tensors)"));
        }
        let mut p: *const *mut sys::nnm_tensor = ptr::null();
        let mut n = 0u32;
        let f = self.host().saved_tensors.ok_or_else(|| PluginError::new(sys::NNM_E_UNSUPPORTED, "no saved_tensors"))?;
        host_ok(unsafe { f(self.raw, &mut p, &mut n) })?;
        Ok((0..n as usize).map(|i| TensorRef::new(unsafe { *p.add(i) }, self.host())).collect())
    }

    /// Backward: adds `grad` into parameter `param`'s .grad.
    pub fn accumulate_grad(&self, param: TensorRef, grad: &Tensor) -> Result<()> {
        if !self.host_covers(std::mem::offset_of!(sys::nnm_host, accumulate_grad) + 8) {
            return Err(PluginError::new(sys::NNM_E_UNSUPPORTED, "host older than ABI 1.1 (no accumulate_grad)"));
        }
        let f = self.host().accumulate_grad.ok_or_else(|| PluginError::new(sys::NNM_E_UNSUPPORTED, "no accumulate_grad"))?;
        host_ok(unsafe { f(self.raw, param.raw, grad.0.raw) })
    }
}

/// A borrowed tensor: an input, a saved tensor, or a parameter the module
/// owns. Copy it freely within the invocation (a parameter's handle is valid
/// for the module's life).
#[derive(Clone, Copy)]
pub struct TensorRef {
    raw: *mut sys::nnm_tensor,
    desc: unsafe extern "C" fn(*const sys::nnm_tensor) -> *const sys::nnm_tensor_desc,
    release: unsafe extern "C" fn(*mut sys::nnm_tensor),
    retain: unsafe extern "C" fn(*mut sys::nnm_tensor),
}

impl TensorRef {
    fn new(raw: *mut sys::nnm_tensor, host: &sys::nnm_host) -> TensorRef {
        // the 1.0 tensor slots are always present
        TensorRef {
            raw,
            desc: host.tensor_desc.expect("host without tensor_desc"),
            release: host.tensor_release.expect("host without tensor_release"),
            retain: host.tensor_retain.expect("host without tensor_retain"),
        }
    }

    pub fn as_ptr(&self) -> *mut sys::nnm_tensor {
        self.raw
    }

    pub fn desc(&self) -> &sys::nnm_tensor_desc {
        unsafe { &*(self.desc)(self.raw) }
    }

    pub fn shape(&self) -> &[i64] {
        let d = self.desc();
        if d.ndim == 0 {
            return &[];
        }
        unsafe { std::slice::from_raw_parts(d.shape, d.ndim as usize) }
    }

    pub fn numel(&self) -> usize {
        self.shape().iter().product::<i64>() as usize
    }

    pub fn is_contiguous(&self) -> bool {
        let d = self.desc();
        let mut want = 1i64;
        for i in (0..d.ndim as usize).rev() {
            let (s, st) = unsafe { (*d.shape.add(i), *d.strides.add(i)) };
            if s != 1 && st != want {
                return false;
            }
            want *= s;
        }
        true
    }

    fn check_cpu_f32(&self) -> Result<*mut f32> {
        let d = self.desc();
        if d.device.type_ != sys::NNM_DEVICE_CPU as i32 {
            return Err(PluginError::new(sys::NNM_E_DEVICE, "this layer runs on the CPU only"));
        }
        if d.dtype.code != sys::NNM_DTYPE_FLOAT as u8 || d.dtype.bits != 32 || d.dtype.lanes != 1 {
            return Err(PluginError::new(sys::NNM_E_DTYPE, "expected an f32 tensor"));
        }
        if !self.is_contiguous() {
            return Err(PluginError::new(sys::NNM_E_INVALID, "expected a contiguous tensor (Env::contiguous)"));
        }
        Ok(unsafe { (d.data as *mut u8).add(d.byte_offset as usize) as *mut f32 })
    }

    /// The elements of a contiguous f32 CPU tensor, read-only.
    pub fn data(&self) -> Result<&[f32]> {
        let p = self.check_cpu_f32()?;
        Ok(unsafe { std::slice::from_raw_parts(p, self.numel()) })
    }
}

/// One owned reference to a tensor (released on drop).
pub struct Tensor(TensorRef);

impl Tensor {
    /// Adopts the new reference a host slot this crate does not wrap handed
    /// back (`nnm_tensor **out` of any op, called through [`Env::as_ptr`]),
    /// so it can be released on drop or given to [`Outputs::set`].
    ///
    /// # Safety
    /// `raw` must be a live tensor of this invocation's runtime whose
    /// reference the caller owns (a NULL or borrowed pointer is undefined).
    pub unsafe fn from_raw(env: &Env, raw: *mut sys::nnm_tensor) -> Tensor {
        Tensor(TensorRef::new(raw, env.host()))
    }
    pub fn as_ref(&self) -> TensorRef {
        self.0
    }
    pub fn shape(&self) -> &[i64] {
        self.0.shape()
    }
    pub fn data(&self) -> Result<&[f32]> {
        self.0.data()
    }
    /// The elements, writable. plugin.h allows writing only a tensor the
    /// plugin has just created (tensor_new), which is what a `Tensor` made by
    /// [`Env::tensor_new`] is until it is handed over.
    pub fn data_mut(&mut self) -> Result<&mut [f32]> {
        let p = self.0.check_cpu_f32()?;
        Ok(unsafe { std::slice::from_raw_parts_mut(p, self.0.numel()) })
    }
    fn into_raw(self) -> *mut sys::nnm_tensor {
        let p = self.0.raw;
        std::mem::forget(self);
        p
    }
}

impl Drop for Tensor {
    fn drop(&mut self) {
        unsafe { (self.0.release)(self.0.raw) }
    }
}

impl std::ops::Deref for Tensor {
    type Target = TensorRef;
    fn deref(&self) -> &TensorRef {
        &self.0
    }
}

/// The output slots of forward (and the input-gradient slots of backward):
/// set each one that gets a tensor.
pub struct Outputs<'a> {
    slots: &'a mut [*mut sys::nnm_tensor],
    release: unsafe extern "C" fn(*mut sys::nnm_tensor),
}

impl Outputs<'_> {
    pub fn len(&self) -> usize {
        self.slots.len()
    }
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
    /// Hands `t`'s reference to the runtime as slot `i` (a second set of the
    /// same slot releases the first tensor).
    pub fn set(&mut self, i: usize, t: Tensor) -> Result<()> {
        let n = self.slots.len();
        let slot = self.slots.get_mut(i).ok_or_else(|| PluginError::new(sys::NNM_E_SHAPE, format!("slot {i} of {n}")))?;
        let old = std::mem::replace(slot, t.into_raw());
        if !old.is_null() {
            unsafe { (self.release)(old) };
        }
        Ok(())
    }
}

/// The input-gradient slots of backward.
pub type GradInputs<'a> = Outputs<'a>;

/// A layer type. `create` makes its state (a `Self`), `forward` computes;
/// `backward` (with `HAS_BACKWARD = true`) makes the layer one autograd node,
/// like torch.autograd.Function.
pub trait Layer: Sized + 'static {
    /// Type name, `[a-z0-9_]`, at most 63 bytes.
    const NAME: &'static CStr;
    /// The layer's maths version (major.minor.patch), separate from the ABI.
    const VERSION: (u32, u32, u32);
    /// Number of inputs and outputs (or sys::NNM_ARITY_ANY).
    const N_INPUTS: i32 = 1;
    const N_OUTPUTS: i32 = 1;
    /// Whether `backward` is implemented (else autograd comes from host ops).
    const HAS_BACKWARD: bool = false;
    /// The class name print(model) shows (None: from NAME in CamelCase).
    const DISPLAY_NAME: Option<&'static CStr> = None;
    /// The config schema (ABI 1.2): one [`sys::nnm_config_field`] per key
    /// (`config_field(c"eps", sys::NNM_CONFIG_FLOAT, 0, c"...")`). With one,
    /// the runtime refuses unknown keys, missing required keys and wrong
    /// types before `create`, with the document path for a manifest. `None`
    /// (the default): `create`'s getters check each key; `Some(&[])`: the
    /// layer takes no config.
    const CONFIG_FIELDS: Option<&'static [sys::nnm_config_field]> = None;

    /// Reads the config and declares parameters (through `env`).
    fn create(env: &Env) -> Result<Self>;

    /// Computes every output from the inputs (borrowed).
    fn forward(&mut self, env: &Env, inputs: &[TensorRef], outputs: &mut Outputs) -> Result<()>;

    /// Gradients of the inputs from those of the outputs (`None`: that output
    /// got none). Parameter gradients go through `env.accumulate_grad`.
    fn backward(&mut self, env: &Env, grad_out: &[Option<TensorRef>], grad_in: &mut GradInputs) -> Result<()> {
        let _ = (env, grad_out, grad_in);
        Err(PluginError::new(sys::NNM_E_UNSUPPORTED, "no backward"))
    }

    /// The text between the parentheses of print(model) ("dim=8, eps=1e-06").
    fn extra_repr(&self) -> String {
        String::new()
    }
}

fn guard(env: &Env, f: impl FnOnce() -> Result<()>) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => sys::NNM_OK,
        Ok(Err(e)) => env.set_error(&e),
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic".into());
            env.set_error(&PluginError::new(sys::NNM_E_PLUGIN, format!("Rust layer panicked: {what}")))
        }
    }
}

unsafe extern "C" fn create_tramp<L: Layer>(env: *mut sys::nnm_env, self_: *mut *mut c_void) -> sys::nnm_status {
    let e = Env { raw: env, _life: PhantomData };
    *self_ = ptr::null_mut();
    guard(&e, || {
        let layer = L::create(&e)?;
        *self_ = Box::into_raw(Box::new(layer)) as *mut c_void;
        Ok(())
    })
}

unsafe extern "C" fn destroy_tramp<L: Layer>(self_: *mut c_void) {
    if !self_.is_null() {
        // a panicking Drop must not unwind into C
        let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(self_ as *mut L))));
    }
}

unsafe extern "C" fn forward_tramp<L: Layer>(
    env: *mut sys::nnm_env,
    self_: *mut c_void,
    inp: *const *mut sys::nnm_tensor,
    n_in: u32,
    out: *mut *mut sys::nnm_tensor,
    n_out: u32,
) -> sys::nnm_status {
    let e = Env { raw: env, _life: PhantomData };
    let layer = &mut *(self_ as *mut L);
    let host = &*(*env).host;
    let inputs: Vec<TensorRef> = (0..n_in as usize).map(|i| TensorRef::new(*inp.add(i), host)).collect();
    let slots = std::slice::from_raw_parts_mut(out, n_out as usize);
    let st = guard(&e, || layer.forward(&e, &inputs, &mut Outputs { slots, release: host.tensor_release.unwrap() }));
    if st != sys::NNM_OK {
        // on failure no output may be left behind
        for s in std::slice::from_raw_parts_mut(out, n_out as usize) {
            if !s.is_null() {
                (host.tensor_release.unwrap())(*s);
                *s = ptr::null_mut();
            }
        }
    }
    st
}

unsafe extern "C" fn backward_tramp<L: Layer>(
    env: *mut sys::nnm_env,
    self_: *mut c_void,
    grad_out: *const *mut sys::nnm_tensor,
    n_out: u32,
    grad_in: *mut *mut sys::nnm_tensor,
    n_in: u32,
) -> sys::nnm_status {
    let e = Env { raw: env, _life: PhantomData };
    let layer = &mut *(self_ as *mut L);
    let host = &*(*env).host;
    let gout: Vec<Option<TensorRef>> = (0..n_out as usize)
        .map(|i| {
            let p = *grad_out.add(i);
            (!p.is_null()).then(|| TensorRef::new(p, host))
        })
        .collect();
    let slots = std::slice::from_raw_parts_mut(grad_in, n_in as usize);
    let st = guard(&e, || layer.backward(&e, &gout, &mut Outputs { slots, release: host.tensor_release.unwrap() }));
    if st != sys::NNM_OK {
        for s in std::slice::from_raw_parts_mut(grad_in, n_in as usize) {
            if !s.is_null() {
                (host.tensor_release.unwrap())(*s);
                *s = ptr::null_mut();
            }
        }
    }
    st
}

unsafe extern "C" fn extra_repr_tramp<L: Layer>(self_: *mut c_void, buf: *mut c_char, cap: usize) -> i32 {
    let layer = &*(self_ as *const L);
    let s = catch_unwind(AssertUnwindSafe(|| layer.extra_repr())).unwrap_or_default();
    let bytes = s.as_bytes();
    if cap > 0 && !buf.is_null() {
        let n = bytes.len().min(cap - 1);
        ptr::copy_nonoverlapping(bytes.as_ptr(), buf as *mut u8, n);
        *buf.add(n) = 0;
    }
    bytes.len() as i32
}

/// The vtable of layer `L` (used by [`plugin!`]; evaluated at compile time).
pub const fn layer_vtable<L: Layer>() -> sys::nnm_layer_vtable {
    sys::nnm_layer_vtable {
        struct_size: std::mem::size_of::<sys::nnm_layer_vtable>() as u32,
        flags: 0,
        name: L::NAME.as_ptr(),
        version_major: L::VERSION.0,
        version_minor: L::VERSION.1,
        version_patch: L::VERSION.2,
        n_inputs: L::N_INPUTS,
        n_outputs: L::N_OUTPUTS,
        create: Some(create_tramp::<L>),
        destroy: Some(destroy_tramp::<L>),
        forward: Some(forward_tramp::<L>),
        extra_repr: Some(extra_repr_tramp::<L>),
        backward: if L::HAS_BACKWARD { Some(backward_tramp::<L>) } else { None },
        finalize: None,
        config_fields: match L::CONFIG_FIELDS {
            Some(f) => f.as_ptr(),
            None => ptr::null(),
        },
        n_config_fields: match L::CONFIG_FIELDS {
            Some(f) => f.len() as u32,
            None => 0,
        },
        reserved: 0,
        display_name: match L::DISPLAY_NAME {
            Some(s) => s.as_ptr(),
            None => ptr::null(),
        },
    }
}

/// One entry of [`Layer::CONFIG_FIELDS`]: `key`, its type
/// (`sys::NNM_CONFIG_*`), flags (`sys::NNM_CONFIG_REQUIRED` or 0) and a
/// one-line description.
pub const fn config_field(key: &'static CStr, type_: u32, flags: u32, doc: &'static CStr) -> sys::nnm_config_field {
    sys::nnm_config_field { key: key.as_ptr(), type_: type_ as i32, flags, doc: doc.as_ptr() }
}

/// Pointers to each vtable of an array (used by [`plugin!`]).
pub const fn vtable_ptrs<const N: usize>(v: &'static [sys::nnm_layer_vtable; N]) -> [*const sys::nnm_layer_vtable; N] {
    let mut out = [ptr::null(); N];
    let mut i = 0;
    while i < N {
        out[i] = &v[i] as *const sys::nnm_layer_vtable;
        i += 1;
    }
    out
}

/// Plain data shared read-only with C (the vtables and the descriptor hold
/// raw pointers, which are not `Sync` by themselves).
#[repr(transparent)]
pub struct Static<T>(pub T);
unsafe impl<T> Sync for Static<T> {}

#[doc(hidden)]
#[macro_export]
macro_rules! __count {
    () => { 0usize };
    ($head:ty $(, $tail:ty)*) => { 1usize + $crate::__count!($($tail),*) };
}

/// Defines the plugin: its descriptor and the exported `nnm_plugin_entry`.
///
/// `plugin!(name: c"my_plugin", layers: [LayerA, LayerB]);`
///
/// Optional, in this order after `layers`: `description: c"..."`, and
/// `domain: c"acme"` (ABI 1.5): the domain that qualifies the layer names
/// (`acme.layer_a`), so that no other provider's names collide with them
/// (docs/abi.md, "Names"). Without one, the plugin name is the domain and
/// the plain names work where nnmod's own library has no layer of that name.
#[macro_export]
macro_rules! plugin {
    (name: $name:expr, layers: [$($layer:ty),+ $(,)?] $(, description: $desc:expr)? $(, domain: $dom:expr)? $(,)?) => {
        const _: () = {
            use $crate::sys as __sys;
            const __N: usize = $crate::__count!($($layer),+);
            static __VTABLES: $crate::Static<[__sys::nnm_layer_vtable; __N]> =
                $crate::Static([$($crate::layer_vtable::<$layer>()),+]);
            static __PTRS: $crate::Static<[*const __sys::nnm_layer_vtable; __N]> =
                $crate::Static($crate::vtable_ptrs(&__VTABLES.0));
            static __DESC: $crate::Static<__sys::nnm_plugin_desc> = $crate::Static(__sys::nnm_plugin_desc {
                struct_size: ::std::mem::size_of::<__sys::nnm_plugin_desc>() as u32,
                abi_major: __sys::NNM_ABI_MAJOR as u16,
                abi_minor: __sys::NNM_ABI_MINOR as u16,
                name: {
                    let n: &'static ::std::ffi::CStr = $name;
                    n.as_ptr()
                },
                description: {
                    #[allow(unused_mut, unused_assignments)]
                    let mut d: *const ::std::os::raw::c_char = ::std::ptr::null();
                    $( let s: &'static ::std::ffi::CStr = $desc; d = s.as_ptr(); )?
                    d
                },
                n_layers: __N as u32,
                n_backends: 0,
                layers: __PTRS.0.as_ptr(),
                backends: ::std::ptr::null(),
                // ABI 1.3: a layer plugin lists no communicators
                n_comms: 0,
                reserved_13: 0,
                comms: ::std::ptr::null(),
                // ABI 1.5: the layers' domain (NULL: none)
                domain: {
                    #[allow(unused_mut, unused_assignments)]
                    let mut d: *const ::std::os::raw::c_char = ::std::ptr::null();
                    $( let s: &'static ::std::ffi::CStr = $dom; d = s.as_ptr(); )?
                    d
                },
            });

            /// The one symbol the runtime looks up: the descriptor for a
            /// runtime of the same ABI major, NULL otherwise.
            #[no_mangle]
            pub extern "C" fn nnm_plugin_entry(host_abi_major: u16, _host_abi_minor: u16) -> *const __sys::nnm_plugin_desc {
                if host_abi_major as u32 == __sys::NNM_ABI_MAJOR {
                    &__DESC.0
                } else {
                    ::std::ptr::null()
                }
            }
        };
    };
}
