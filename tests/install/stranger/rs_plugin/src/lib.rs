//! stranger_rs: a layer plugin in Rust, from docs/bindings.md ("Plugins in
//! Rust") and the nnmod-plugin crate's documentation alone
//! (tests/install/stranger).
//!
//! `stranger_rs.scaled_tanh`: y = scale * tanh(x), `scale` a learned [1]
//! parameter, with a backward of its own (one autograd node).
use nnmod_plugin::{config_field, plugin, sys, Env, GradInputs, Init, Layer, Outputs, PluginError, TensorRef};

struct ScaledTanh {
    init: f64,
    scale: TensorRef, // borrowed from the module, valid for its life
}

const FIELDS: &[sys::nnm_config_field] =
    &[config_field(c"init_scale", sys::NNM_CONFIG_FLOAT, 0, c"the scale's initial value (default 1)")];

impl Layer for ScaledTanh {
    const NAME: &'static std::ffi::CStr = c"scaled_tanh";
    const VERSION: (u32, u32, u32) = (1, 0, 0);
    const HAS_BACKWARD: bool = true;
    const CONFIG_FIELDS: Option<&'static [sys::nnm_config_field]> = Some(FIELDS);

    fn create(env: &Env) -> Result<Self, PluginError> {
        let init = env.config_float("init_scale", Some(1.0))?;
        let scale = env.param("scale", &[1], Init::Constant(init))?;
        Ok(ScaledTanh { init, scale })
    }

    fn forward(&mut self, env: &Env, x: &[TensorRef], out: &mut Outputs) -> Result<(), PluginError> {
        let t = env.op_unary(sys::NNM_UNARY_TANH as i32, x[0], 0.0)?;
        env.save_for_backward(&[t.as_ref()])?;
        out.set(0, env.op_binary(sys::NNM_BINARY_MUL as i32, t.as_ref(), self.scale)?)
    }

    fn backward(&mut self, env: &Env, g: &[Option<TensorRef>], grad_in: &mut GradInputs) -> Result<(), PluginError> {
        let Some(g) = g[0] else { return Ok(()) };
        let saved = env.saved_tensors()?;
        let t = saved[0];
        // grad_x = g * scale * (1 - t^2)
        let t2 = env.op_binary(sys::NNM_BINARY_MUL as i32, t, t)?;
        let neg = env.op_unary(sys::NNM_UNARY_SCALE as i32, t2.as_ref(), -1.0)?;
        let d = env.op_unary(sys::NNM_UNARY_ADD_SCALAR as i32, neg.as_ref(), 1.0)?;
        let gs = env.op_binary(sys::NNM_BINARY_MUL as i32, g, self.scale)?;
        grad_in.set(0, env.op_binary(sys::NNM_BINARY_MUL as i32, gs.as_ref(), d.as_ref())?)?;
        // grad_scale = sum(g * t), as the parameter's [1]
        let gt = env.op_binary(sys::NNM_BINARY_MUL as i32, g, t)?;
        let sum = env.op_reduce(sys::NNM_REDUCE_SUM as i32, gt.as_ref(), &[], false)?;
        let sum1 = env.op_reshape(sum.as_ref(), &[1])?;
        env.accumulate_grad(self.scale, &sum1)
    }

    fn extra_repr(&self) -> String {
        format!("init_scale={}", self.init)
    }
}

plugin!(name: c"stranger_rs", layers: [ScaledTanh], description: c"scaled_tanh in Rust", domain: c"stranger_rs");
