//! examples/bindings/rust: the reference program of examples/bindings/c in
//! Rust; prints exactly what the C one prints (ctest example_rust).
//!
//!     cargo run -- examples/manifests/mlp.json
use std::process::ExitCode;

use nnmod::{Context, Optimizer, Sgd, Tensor};

fn shape(t: &Tensor) -> String {
    let dims: Vec<String> = t.shape().iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(", "))
}

/// Elements summed in order as f64, and their absolute values summed.
fn sums(t: &Tensor) -> nnmod::Result<(f64, f64)> {
    let v = t.to_vec()?;
    let sum = v.iter().fold(0.0f64, |a, &x| a + x as f64);
    let abs = v.iter().fold(0.0f64, |a, &x| a + (x as f64).abs());
    Ok((sum, abs))
}

fn run(manifest: &str) -> nnmod::Result<()> {
    let ctx = Context::new()?;
    let model = ctx.load_manifest(manifest)?;
    println!("model {}, {} parameters", model.type_name(), model.num_params());

    // x[i] = ((5 i) mod 11 - 5) / 8: exact in f32, the same in every language
    let xv: Vec<f32> = (0..8).map(|i| ((i * 5) % 11 - 5) as f32 / 8.0).collect();
    let x = ctx.tensor(&[2, 4], &xv)?;
    println!("input {}", shape(&x));

    let hook = ctx.register_forward_hook(|call| {
        let path = call.module().path();
        let shapes: String = call.outputs().iter().map(shape).collect();
        let name = if path.is_empty() { "(root)".to_string() } else { path };
        println!("hook {} ({}) -> {}", name, call.module().type_name(), shapes);
        Ok(())
    })?;
    let y = model.forward(&x)?;
    hook.remove();

    let yv = y.to_vec()?;
    println!("output {}", shape(&y));
    for r in yv.chunks(3) {
        println!("  {:.6} {:.6} {:.6}", r[0], r[1], r[2]);
    }

    let loss = y.mul(&y)?.mean()?;
    println!("loss {:.6}", loss.item()?);
    loss.backward()?;
    for (name, p) in model.named_parameters()? {
        let g = p.grad().expect("a parameter without a gradient after backward");
        let (s, a) = sums(&g)?;
        println!("grad {} {} sum {:.6} abs {:.6}", name, shape(&p), s, a);
    }

    let lr = 0.1;
    let mut opt = Optimizer::sgd(&model, Sgd::new(lr))?;
    opt.step()?;
    println!("sgd step lr {:.6}", lr);
    for (name, p) in model.named_parameters()? {
        let (s, a) = sums(&p)?;
        println!("param {} sum {:.6} abs {:.6}", name, s, a);
    }

    let y2 = model.forward(&x)?;
    let loss2 = y2.mul(&y2)?.mean()?;
    println!("loss after step {:.6}", loss2.item()?);
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 2 {
        eprintln!("usage: mlp_example <manifest>");
        return ExitCode::from(2);
    }
    match run(&args[1]) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mlp_example: {e}");
            ExitCode::FAILURE
        }
    }
}
