//! Grad mode (torch.no_grad / set_grad_enabled).
//!
//! Grad mode is per thread in C. Every nnmod object is `!Send`, so all the
//! calls a guard affects happen on the thread that made it, and the guard
//! itself is `!Send`: it cannot be dropped (and restore the mode) on another
//! thread. There is nothing to get wrong across threads.
use std::marker::PhantomData;

use nnmod_sys as sys;

/// Restores the previous grad mode of this thread when dropped.
#[must_use = "grad mode is restored when the guard is dropped"]
pub struct GradGuard {
    prev: i32,
    _not_send: PhantomData<*const ()>,
}

impl Drop for GradGuard {
    fn drop(&mut self) {
        unsafe { sys::nnm_grad_set_enabled(self.prev) };
    }
}

/// `let _g = nnmod::no_grad();` records no graph until `_g` is dropped.
pub fn no_grad() -> GradGuard {
    set_grad_enabled(false)
}

/// Sets this thread's grad mode until the guard is dropped.
pub fn set_grad_enabled(on: bool) -> GradGuard {
    let prev = unsafe { sys::nnm_grad_set_enabled(on as i32) };
    GradGuard { prev, _not_send: PhantomData }
}

/// This thread's grad mode.
pub fn is_grad_enabled() -> bool {
    unsafe { sys::nnm_grad_is_enabled() != 0 }
}
