//! rms_norm: y = x / sqrt(mean(x², last dim) + eps) * weight, a layer
//! plugin written in Rust (nnmod-plugin) with its own backward.
//!
//! Config: `normalized_shape` (int, required: the size D of the last dim),
//! `eps` (float, default 1e-6), `elementwise_affine` (bool, default true:
//! a parameter `weight` of shape [D], initialised to ones). Input: [..., D]
//! f32 on the CPU. As torch's RMSNorm with a single normalized dim.
use nnmod_plugin::{plugin, sys, Env, GradInputs, Init, Layer, Outputs, PluginError, Result, TensorRef};

pub struct RmsNorm {
    dim: usize,
    eps: f64,
    weight: Option<TensorRef>, // owned by the module, valid for its life
}

/// 1 / sqrt(mean(row²) + eps), accumulated in f64.
fn inv_rms(row: &[f32], eps: f64) -> f64 {
    let ms = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / row.len() as f64;
    1.0 / (ms + eps).sqrt()
}

impl Layer for RmsNorm {
    const NAME: &'static std::ffi::CStr = c"rms_norm";
    const VERSION: (u32, u32, u32) = (0, 1, 0);
    const HAS_BACKWARD: bool = true;
    const DISPLAY_NAME: Option<&'static std::ffi::CStr> = Some(c"RMSNorm");

    fn create(env: &Env) -> Result<Self> {
        let d = env.config_int("normalized_shape", None)?;
        if d <= 0 {
            return Err(PluginError::new(sys::NNM_E_INVALID, format!("normalized_shape must be positive, got {d}")));
        }
        let eps = env.config_float("eps", Some(1e-6))?;
        if !(eps >= 0.0) {
            return Err(PluginError::new(sys::NNM_E_INVALID, format!("eps must be >= 0, got {eps}")));
        }
        let affine = env.config_bool("elementwise_affine", Some(true))?;
        let weight = if affine { Some(env.param("weight", &[d], Init::Ones)?) } else { None };
        env.input_spec(0, &[d], sys::NNM_SPEC_LEADING_ANY)?;
        Ok(RmsNorm { dim: d as usize, eps, weight })
    }

    fn forward(&mut self, env: &Env, inputs: &[TensorRef], outputs: &mut Outputs) -> Result<()> {
        let x = env.contiguous(inputs[0])?;
        let xs = x.data()?;
        let w = match &self.weight {
            Some(w) => Some(w.data()?),
            None => None,
        };
        let mut y = env.tensor_new(x.shape())?;
        let ys = y.data_mut()?;
        for (xr, yr) in xs.chunks_exact(self.dim).zip(ys.chunks_exact_mut(self.dim)) {
            let r = inv_rms(xr, self.eps);
            for j in 0..self.dim {
                let wj = w.map_or(1.0, |w| w[j] as f64);
                yr[j] = (xr[j] as f64 * r * wj) as f32;
            }
        }
        env.save_for_backward(&[x.as_ref()])?;
        outputs.set(0, y)
    }

    // With a = g * w (per row): dx_j = r a_j - r³/D x_j Σ a_i x_i; dw_i = Σ_rows g_i x_i r.
    fn backward(&mut self, env: &Env, grad_out: &[Option<TensorRef>], grad_in: &mut GradInputs) -> Result<()> {
        let Some(g) = grad_out[0] else { return Ok(()) };
        let g = env.contiguous(g)?;
        let saved = env.saved_tensors()?;
        let x = saved.first().ok_or_else(|| PluginError::new(sys::NNM_E_STATE, "nothing saved for backward"))?;
        let (xs, gs) = (x.data()?, g.data()?);
        let w = match &self.weight {
            Some(w) => Some(w.data()?),
            None => None,
        };
        let d = self.dim;
        let mut gx = env.tensor_new(x.shape())?;
        let mut gw = vec![0f64; d];
        {
            let gxs = gx.data_mut()?;
            for ((xr, gr), out) in xs.chunks_exact(d).zip(gs.chunks_exact(d)).zip(gxs.chunks_exact_mut(d)) {
                let r = inv_rms(xr, self.eps);
                let mut dot = 0f64;
                for j in 0..d {
                    let a = gr[j] as f64 * w.map_or(1.0, |w| w[j] as f64);
                    dot += a * xr[j] as f64;
                    gw[j] += gr[j] as f64 * xr[j] as f64 * r;
                }
                let c = r * r * r / d as f64 * dot;
                for j in 0..d {
                    let a = gr[j] as f64 * w.map_or(1.0, |w| w[j] as f64);
                    out[j] = (r * a - c * xr[j] as f64) as f32;
                }
            }
        }
        if let Some(wt) = self.weight {
            let mut t = env.tensor_new(&[d as i64])?;
            for (o, v) in t.data_mut()?.iter_mut().zip(&gw) {
                *o = *v as f32;
            }
            env.accumulate_grad(wt, &t)?;
        }
        grad_in.set(0, gx)
    }

    fn extra_repr(&self) -> String {
        format!("({},), eps={:e}, elementwise_affine={}", self.dim, self.eps, if self.weight.is_some() { "True" } else { "False" })
    }
}

plugin!(name: c"rms_norm", layers: [RmsNorm], description: c"RMSNorm written in Rust (nnmod-plugin)");
