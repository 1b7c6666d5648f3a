//! The third-party plugins from Rust (tests/install/stranger), from
//! docs/bindings.md's Rust section alone.
//!
//! usage: stranger_rs_app WORKDIR PLUGIN.so...
use nnmod::{Config, Context};

fn main() -> nnmod::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (work, plugins) = (&args[1], &args[2..]);
    let ctx = Context::new()?;
    for p in plugins {
        ctx.load_plugin(p)?;
    }
    let xs = [-1.5f32, -0.25, 0.5, 1.0, 2.0, 0.125];
    let mut requests = vec!["stranger.scaled_tanh", "stranger.scaled_tanh_auto"];
    if plugins.iter().any(|p| p.contains("stranger_rs")) {
        requests.push("stranger_rs.scaled_tanh");
    }
    for req in requests {
        let m = ctx.create_module(req, &Config::new()?.float("init_scale", 1.5)?)?;
        let x = ctx.tensor(&[2, 3], &xs)?;
        x.set_requires_grad(true)?;
        let y = m.forward(&x)?;
        let ys = y.to_vec()?;
        y.sum()?.backward()?;
        let g = x.grad().expect("x has a gradient").to_vec()?;
        for i in 0..6 {
            let t = (xs[i] as f64).tanh();
            assert!((ys[i] as f64 - 1.5 * t).abs() < 1e-6, "{req}: y[{i}] = {}", ys[i]);
            assert!((g[i] as f64 - 1.5 * (1.0 - t * t)).abs() < 1e-5, "{req}: grad[{i}] = {}", g[i]);
        }
        println!("{req}: {m} ok");
    }
    let m = ctx.create_module("stranger.track_mean", &Config::new()?.int("num_features", 3)?.float("momentum", 0.5)?)?;
    m.forward(&ctx.tensor(&[2, 3], &xs)?)?;
    let path = std::path::Path::new(work).join("track_mean_rs.safetensors");
    m.save(&path)?;
    let m2 = ctx.create_module("stranger.track_mean", &Config::new()?.int("num_features", 3)?)?;
    let report = m2.load(&path, true)?;
    assert!(report.missing.is_empty() && report.unexpected.is_empty());
    let bufs = m2.named_buffers()?;
    let rm = bufs.iter().find(|(n, _)| n == "running_mean").expect("running_mean").1.to_vec()?;
    let want = [-0.125f32, 0.4375, 0.15625];
    for i in 0..3 {
        assert!((rm[i] - want[i]).abs() < 1e-6, "running_mean {rm:?}, want {want:?}");
    }
    // a wrong input names the module and both shapes
    let e = m2.forward(&ctx.tensor(&[2, 4], &[0.0; 8])?).err().expect("a [2, 4] input was accepted");
    assert!(e.message().contains("expected input [*, 3], got [2, 4]"), "{e}");
    println!("stranger_rs_app: all checks passed");
    Ok(())
}
