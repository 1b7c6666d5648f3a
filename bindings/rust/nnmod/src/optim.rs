//! Optimizers over a module's parameters (torch.optim.SGD / Adam / AdamW).
use std::ptr;
use std::rc::Rc;

use nnmod_sys as sys;

use crate::context::CtxInner;
use crate::error::{check, Result};
use crate::module::Module;

/// torch.optim.SGD's hyper-parameters.
#[derive(Clone, Copy, Debug)]
pub struct Sgd {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
}

impl Sgd {
    pub fn new(lr: f64) -> Sgd {
        Sgd { lr, momentum: 0.0, dampening: 0.0, weight_decay: 0.0, nesterov: false }
    }
}

/// torch.optim.Adam's (decoupled = false) or AdamW's (true) hyper-parameters.
#[derive(Clone, Copy, Debug)]
pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub amsgrad: bool,
    pub decoupled: bool,
}

impl Adam {
    pub fn new(lr: f64) -> Adam {
        Adam { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, amsgrad: false, decoupled: false }
    }
}

/// An optimizer over every parameter of a module's tree (it holds the module).
pub struct Optimizer {
    raw: *mut sys::nnm_optim,
    ctx: Rc<CtxInner>,
}

impl Optimizer {
    pub fn sgd(m: &Module, o: Sgd) -> Result<Optimizer> {
        let opts = sys::nnm_sgd_options {
            struct_size: std::mem::size_of::<sys::nnm_sgd_options>() as u32,
            nesterov: o.nesterov as i32,
            lr: o.lr,
            momentum: o.momentum,
            dampening: o.dampening,
            weight_decay: o.weight_decay,
        };
        let mut raw = ptr::null_mut();
        check(m.ctx.raw, unsafe { sys::nnm_optim_sgd_new(m.as_ptr(), &opts, &mut raw) })?;
        Ok(Optimizer { raw, ctx: m.ctx.clone() })
    }

    pub fn adam(m: &Module, o: Adam) -> Result<Optimizer> {
        let opts = sys::nnm_adam_options {
            struct_size: std::mem::size_of::<sys::nnm_adam_options>() as u32,
            amsgrad: o.amsgrad as i32,
            decoupled: o.decoupled as i32,
            reserved: 0,
            lr: o.lr,
            beta1: o.beta1,
            beta2: o.beta2,
            eps: o.eps,
            weight_decay: o.weight_decay,
        };
        let mut raw = ptr::null_mut();
        check(m.ctx.raw, unsafe { sys::nnm_optim_adam_new(m.as_ptr(), &opts, &mut raw) })?;
        Ok(Optimizer { raw, ctx: m.ctx.clone() })
    }

    /// The raw handle (borrowed; valid while self lives).
    pub fn as_ptr(&self) -> *mut sys::nnm_optim {
        self.raw
    }

    /// One update of every parameter that has a .grad.
    pub fn step(&mut self) -> Result<()> {
        check(self.ctx.raw, unsafe { sys::nnm_optim_step(self.raw) })
    }

    /// Sets every parameter's .grad to none.
    pub fn zero_grad(&mut self) -> Result<()> {
        check(self.ctx.raw, unsafe { sys::nnm_optim_zero_grad(self.raw) })
    }

    /// Moves the parameters whose dotted name starts with `prefix` ("fc2."
    /// for fc2's) into a new group with its own lr and weight decay; returns
    /// the group's index. Before the first step only.
    pub fn add_group(&mut self, prefix: &str, lr: f64, weight_decay: f64) -> Result<u32> {
        let p = crate::context::cstring("prefix", prefix)?;
        let mut g = 0u32;
        check(self.ctx.raw, unsafe { sys::nnm_optim_add_group(self.raw, p.as_ptr(), lr, weight_decay, &mut g) })?;
        Ok(g)
    }

    /// The number of parameter groups.
    pub fn group_count(&self) -> u32 {
        unsafe { sys::nnm_optim_group_count(self.raw) }
    }

    pub fn lr(&self, group: u32) -> f64 {
        unsafe { sys::nnm_optim_get_lr(self.raw, group) }
    }

    pub fn set_lr(&mut self, group: u32, lr: f64) -> Result<()> {
        check(self.ctx.raw, unsafe { sys::nnm_optim_set_lr(self.raw, group, lr) })
    }
}

impl Drop for Optimizer {
    fn drop(&mut self) {
        unsafe { sys::nnm_optim_free(self.raw) }
    }
}
