//! Errors: the C status code, its name, and the context's message.
use std::ffi::CStr;
use std::fmt;

use nnmod_sys as sys;

use crate::state::LoadReport;

/// A failed nnmod call: the status code (`NNM_E_*`, negative), its name
/// (`"NNM_E_SHAPE"`) and the message the context recorded, which names the
/// module path (`"fc1 (linear): ..."`), file or plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    status: i32,
    message: String,
    // a load refused for keys that do not fit: what the library found
    report: Option<Box<LoadReport>>,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error of `status` (an `NNM_E_*` code) with `message`; hooks return
    /// these to fail a call.
    pub fn new(status: i32, message: impl Into<String>) -> Error {
        Error { status, message: message.into(), report: None }
    }

    /// A hook failure (`NNM_E_HOOK`) with `message`.
    pub fn hook(message: impl Into<String>) -> Error {
        Error::new(sys::NNM_E_HOOK, message)
    }

    /// The status code, e.g. `nnmod_sys::NNM_E_SHAPE`.
    pub fn status(&self) -> i32 {
        self.status
    }

    /// The status's name, e.g. `"NNM_E_SHAPE"` (static, from the library).
    pub fn name(&self) -> &'static str {
        status_name(self.status)
    }

    /// The context's message for this failure.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// For a load (`Module::load`, `Module::load_state_dict`) refused because
    /// keys do not fit: every missing, unexpected and mismatched key (the
    /// message names the first few). None for any other error.
    pub fn load_report(&self) -> Option<&LoadReport> {
        self.report.as_deref()
    }

    pub(crate) fn with_report(mut self, report: LoadReport) -> Error {
        self.report = Some(Box::new(report));
        self
    }

    /// Reads ctx's message for `status` (ctx may be null).
    pub(crate) fn from_ctx(ctx: *const sys::nnm_ctx, status: i32) -> Error {
        let msg = unsafe { CStr::from_ptr(sys::nnm_ctx_errmsg(ctx)) };
        Error { status, message: msg.to_string_lossy().into_owned(), report: None }
    }
}

pub(crate) fn status_name(status: i32) -> &'static str {
    // static strings owned by the library
    unsafe { CStr::from_ptr(sys::nnm_status_name(status)) }.to_str().unwrap_or("unknown")
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name(), self.message)
    }
}

impl std::error::Error for Error {}

/// `Ok(())` for NNM_OK, else the context's error.
#[inline]
pub(crate) fn check(ctx: *const sys::nnm_ctx, status: i32) -> Result<()> {
    if status == sys::NNM_OK {
        Ok(())
    } else {
        Err(Error::from_ctx(ctx, status))
    }
}
