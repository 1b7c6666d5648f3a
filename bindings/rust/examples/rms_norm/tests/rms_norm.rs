//! The Rust rms_norm plugin, loaded by the C runtime: against an f64
//! reference (within 1e-6), gradcheck against finite differences, from a
//! manifest next to C layers, and its errors.
use std::path::PathBuf;

use nnmod::{Config, Context, ContextOptions, Module, Tensor};

/// The rms_norm cdylib: target/<profile>/librms_norm.so, beside this test's
/// deps/ directory, when `cargo build` made it and it is not older than the
/// plugin's source (bindings/rust/run_tests.sh builds first). `cargo test`
/// alone builds the crate as an rlib only, so otherwise the test builds the
/// cdylib itself, into a target directory of its own (cargo holds this one's
/// lock while the tests run): `cargo test --offline` passes on its own.
fn plugin_path() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let dir = exe.parent().unwrap().parent().unwrap(); // target/<profile>
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let src = manifest.join("src/lib.rs");
        let p = dir.join("librms_norm.so");
        let mtime = |f: &std::path::Path| f.metadata().and_then(|m| m.modified()).ok();
        if let (Some(so_t), Some(src_t)) = (mtime(&p), mtime(&src)) {
            if so_t >= src_t {
                return p;
            }
        }
        let profile = dir.file_name().unwrap().to_string_lossy().into_owned();
        let target = dir.parent().unwrap().join("rms_norm_cdylib");
        let mut cmd = std::process::Command::new(env!("CARGO"));
        cmd.args(["build", "--offline", "--lib", "-p", "rms_norm", "--target-dir"])
            .arg(&target)
            .current_dir(&manifest)
            .env_remove("LD_PRELOAD"); // sanitizer runtimes are for the tests, not for rustc
        if profile == "release" {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("cannot run cargo to build the rms_norm cdylib");
        assert!(st.success(), "cargo build of the rms_norm cdylib failed ({st})");
        let built = target.join(&profile).join("librms_norm.so");
        assert!(built.exists(), "{} is missing after cargo build", built.display());
        built
    })
    .clone()
}

// The entry symbol the plugin! macro defines, linked from the rlib: the
// very code this test binary was compiled with.
extern "C" {
    fn nnm_plugin_entry(major: u16, minor: u16) -> *const nnmod::sys::nnm_plugin_desc;
}
#[used]
static _LINK_RMS_NORM: fn() -> usize = || std::mem::size_of::<rms_norm::RmsNorm>();

/// A context with the C layers (discovery) and rms_norm registered from the
/// descriptor linked into this binary (nnm_plugin_register_static).
fn ctx() -> Context {
    let ctx = Context::new().unwrap();
    let desc = unsafe { nnm_plugin_entry(nnmod::sys::NNM_ABI_MAJOR as u16, nnmod::sys::NNM_ABI_MINOR as u16) };
    let st = unsafe { nnmod::sys::nnm_plugin_register_static(ctx.as_ptr(), desc, c"rms_norm (linked)".as_ptr()) };
    assert_eq!(st, 0, "{}", ctx.last_error());
    ctx
}

/// A context with the C layers and rms_norm loaded from its .so (dlopen).
fn ctx_from_file() -> Context {
    let ctx = Context::new().unwrap();
    ctx.load_plugin(plugin_path()).unwrap();
    ctx
}

/// Deterministic values in [-1, 1) (xorshift).
fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f64 / u32::MAX as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}

fn rms_norm(ctx: &Context, d: i64, eps: f64) -> Module {
    let cfg = Config::new().unwrap().int("normalized_shape", d).unwrap().float("eps", eps).unwrap();
    ctx.create_module("rms_norm", &cfg).unwrap()
}

fn weight(m: &Module) -> Tensor {
    let p = m.named_parameters().unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].0, "weight");
    p[0].1.clone()
}

/// y = x / sqrt(mean(x^2) + eps) * w, in f64.
fn reference(x: &[f32], w: &[f32], eps: f64) -> Vec<f64> {
    let d = w.len();
    let mut y = Vec::with_capacity(x.len());
    for row in x.chunks(d) {
        let ms = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / d as f64;
        let r = 1.0 / (ms + eps).sqrt();
        y.extend(row.iter().zip(w).map(|(&v, &wj)| v as f64 * r * wj as f64));
    }
    y
}

#[test]
fn forward_matches_reference_within_1e6() {
    let ctx = ctx();
    let (d, eps) = (8usize, 1e-5);
    let m = rms_norm(&ctx, d as i64, eps);
    let w: Vec<f32> = values(d, 7).iter().map(|v| 1.0 + 0.5 * v).collect();
    weight(&m).copy_from(&w).unwrap();
    let xv: Vec<f32> = values(3 * 5 * d, 11).iter().map(|v| 3.0 * v).collect();
    let x = ctx.tensor(&[3, 5, d as i64], &xv).unwrap();
    let y = m.forward(&x).unwrap();
    assert_eq!(y.shape(), &[3, 5, d as i64]);
    let want = reference(&xv, &w, eps);
    let got = y.to_vec().unwrap();
    let worst = got.iter().zip(&want).map(|(&g, &w)| (g as f64 - w).abs()).fold(0.0, f64::max);
    assert!(worst <= 1e-6, "max |y - reference| = {worst:e}");
    assert!(format!("{m}").contains("RMSNorm((8,), eps=1e-5"), "print(model): {m}");
}

/// loss = sum(y * c) for fixed c; d loss / d x and d loss / d weight from the
/// plugin's backward, checked against central differences of its forward.
#[test]
fn gradcheck() {
    let ctx = ctx();
    let (rows, d, eps) = (3usize, 6usize, 1e-5);
    let m = rms_norm(&ctx, d as i64, eps);
    let w: Vec<f32> = values(d, 3).iter().map(|v| 1.0 + 0.5 * v).collect();
    let wt = weight(&m);
    wt.copy_from(&w).unwrap();
    let xv = values(rows * d, 5);
    let cv = values(rows * d, 9);
    let c = ctx.tensor(&[rows as i64, d as i64], &cv).unwrap();
    let loss_of = |xv: &[f32]| -> f64 {
        let _g = nnmod::no_grad();
        let x = ctx.tensor(&[rows as i64, d as i64], xv).unwrap();
        m.forward(&x).unwrap().mul(&c).unwrap().sum().unwrap().item().unwrap() as f64
    };

    let x = ctx.tensor(&[rows as i64, d as i64], &xv).unwrap();
    x.set_requires_grad(true).unwrap();
    let loss = m.forward(&x).unwrap().mul(&c).unwrap().sum().unwrap();
    loss.backward().unwrap();
    let gx = x.grad().expect("x.grad").to_vec().unwrap();
    let gw = wt.grad().expect("weight.grad").to_vec().unwrap();

    let h = 1e-2f32;
    let check = |what: &str, i: usize, analytic: f32, numeric: f64| {
        let tol = 5e-3 + 1e-2 * numeric.abs();
        assert!((analytic as f64 - numeric).abs() <= tol, "{what}[{i}]: backward {analytic} vs finite difference {numeric}");
    };
    for i in 0..xv.len() {
        let (mut p, mut q) = (xv.clone(), xv.clone());
        p[i] += h;
        q[i] -= h;
        check("x.grad", i, gx[i], (loss_of(&p) - loss_of(&q)) / (2.0 * h as f64));
    }
    for i in 0..d {
        let (mut p, mut q) = (w.clone(), w.clone());
        p[i] += h;
        q[i] -= h;
        wt.copy_from(&p).unwrap();
        let lp = loss_of(&xv);
        wt.copy_from(&q).unwrap();
        let lq = loss_of(&xv);
        check("weight.grad", i, gw[i], (lp - lq) / (2.0 * h as f64));
    }
    wt.copy_from(&w).unwrap();

    // and against the closed form in f64, tightly
    let mut want_gw = vec![0f64; d];
    for r in 0..rows {
        let row = &xv[r * d..(r + 1) * d];
        let ms = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / d as f64;
        let inv = 1.0 / (ms + eps).sqrt();
        let dot: f64 = (0..d).map(|j| cv[r * d + j] as f64 * w[j] as f64 * row[j] as f64).sum();
        for j in 0..d {
            let a = cv[r * d + j] as f64 * w[j] as f64;
            let want = inv * a - inv * inv * inv / d as f64 * row[j] as f64 * dot;
            assert!((gx[r * d + j] as f64 - want).abs() <= 1e-5, "x.grad[{}]: {} vs {want}", r * d + j, gx[r * d + j]);
            want_gw[j] += cv[r * d + j] as f64 * row[j] as f64 * inv;
        }
    }
    for j in 0..d {
        assert!((gw[j] as f64 - want_gw[j]).abs() <= 1e-5, "weight.grad[{j}]: {} vs {}", gw[j], want_gw[j]);
    }
}

/// Loaded from a manifest beside the C layers (linear, relu, sequential),
/// run forward and backward through the C call path.
#[test]
fn from_a_manifest_next_to_c_layers() {
    let ctx = ctx_from_file();
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rms_norm_mlp.json");
    let model = ctx.load_manifest(&manifest).unwrap();
    let names: Vec<String> = model.named_parameters().unwrap().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["fc1.weight", "fc1.bias", "norm.weight", "fc2.weight", "fc2.bias"]);
    let norm = model.get("norm").unwrap();
    assert_eq!(norm.type_name(), "rms_norm");
    assert_eq!(norm.path(), "norm");
    let repr = format!("{model}");
    assert!(repr.contains("(norm): RMSNorm((8,), eps=1e-5"), "{repr}");

    let xv = values(2 * 4, 13);
    let x = ctx.tensor(&[2, 4], &xv).unwrap();
    let y = model.forward(&x).unwrap();
    assert_eq!(y.shape(), &[2, 3]);

    // the same maths by hand: fc2(relu(norm(fc1(x))))
    let p: std::collections::HashMap<String, Vec<f32>> =
        model.named_parameters().unwrap().into_iter().map(|(n, t)| (n, t.to_vec().unwrap())).collect();
    let linear = |x: &[f64], w: &[f32], b: &[f32], n_in: usize| -> Vec<f64> {
        x.chunks(n_in)
            .flat_map(|row| {
                b.iter().enumerate().map(move |(o, &bo)| bo as f64 + (0..n_in).map(|i| row[i] * w[o * n_in + i] as f64).sum::<f64>())
            })
            .collect()
    };
    let x64: Vec<f64> = xv.iter().map(|&v| v as f64).collect();
    let h = linear(&x64, &p["fc1.weight"], &p["fc1.bias"], 4);
    let h32: Vec<f32> = h.iter().map(|&v| v as f32).collect();
    let n: Vec<f64> = reference(&h32, &p["norm.weight"], 1e-5).into_iter().map(|v| v.max(0.0)).collect();
    let want = linear(&n, &p["fc2.weight"], &p["fc2.bias"], 8);
    for (g, w) in y.to_vec().unwrap().iter().zip(&want) {
        assert!((*g as f64 - w).abs() <= 1e-5, "{g} vs {w}");
    }

    // backward reaches every parameter, through the Rust node and the C ones
    let loss = y.mul(&y).unwrap().mean().unwrap();
    loss.backward().unwrap();
    for (name, t) in model.named_parameters().unwrap() {
        let g = t.grad().unwrap_or_else(|| panic!("{name} has no grad"));
        let gv = g.to_vec().unwrap();
        assert!(gv.iter().all(|v| v.is_finite()), "{name}");
        assert!(gv.iter().any(|&v| v != 0.0), "{name}: all zero");
    }
}

#[path = "golden/rms_norm_golden.rs"]
mod golden;

/// Against PyTorch (tests/golden/make_rms_norm_golden.py): forward within
/// 1e-6, and the gradients of sum(y * c) within 1e-5.
#[test]
fn matches_pytorch_golden() {
    let ctx = ctx();
    let d = *golden::SHAPE.last().unwrap();
    let m = rms_norm(&ctx, d, golden::EPS);
    let wt = weight(&m);
    wt.copy_from(golden::WEIGHT).unwrap();
    let x = ctx.tensor(golden::SHAPE, golden::X).unwrap();
    x.set_requires_grad(true).unwrap();
    let c = ctx.tensor(golden::SHAPE, golden::C).unwrap();
    let y = m.forward(&x).unwrap();
    let close = |what: &str, got: &[f32], want: &[f32], tol: f64| {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((*g as f64 - *w as f64).abs() <= tol, "{what}[{i}]: {g} vs PyTorch {w}");
        }
    };
    close("y", &y.to_vec().unwrap(), golden::Y, 1e-6);
    y.mul(&c).unwrap().sum().unwrap().backward().unwrap();
    close("x.grad", &x.grad().unwrap().to_vec().unwrap(), golden::GRAD_X, 1e-5);
    close("weight.grad", &wt.grad().unwrap().to_vec().unwrap(), golden::GRAD_WEIGHT, 1e-5);
}

#[test]
fn errors_name_the_module_and_the_key() {
    let ctx = ctx();
    let e = ctx.create_module("rms_norm", &Config::new().unwrap()).unwrap_err();
    assert_eq!(e.name(), "NNM_E_NOT_FOUND");
    assert!(e.message().contains("normalized_shape"), "{e}");
    let cfg = Config::new().unwrap().int("normalized_shape", -2).unwrap();
    let e = ctx.create_module("rms_norm", &cfg).unwrap_err();
    assert_eq!(e.status(), nnmod::sys::NNM_E_INVALID);
    assert!(e.message().contains("must be positive"), "{e}");

    let m = rms_norm(&ctx, 8, 1e-6);
    let x = ctx.zeros(&[2, 5]).unwrap();
    let e = m.forward(&x).unwrap_err();
    assert_eq!(e.name(), "NNM_E_SHAPE");
    assert!(e.message().contains("rms_norm"), "{e}");
}

/// Under no_grad the layer records nothing, and its output needs no grad.
#[test]
fn no_grad_records_nothing() {
    let ctx = ctx();
    let m = rms_norm(&ctx, 4, 1e-6);
    let x = ctx.tensor(&[1, 4], &[1.0, 2.0, 3.0, 4.0]).unwrap();
    x.set_requires_grad(true).unwrap();
    let y = {
        let _g = nnmod::no_grad();
        m.forward(&x).unwrap()
    };
    assert!(!y.requires_grad());
    assert!(nnmod::is_grad_enabled());
    let y = m.forward(&x).unwrap();
    assert!(y.requires_grad());
}

/// The descriptor the macro built; a runtime of another ABI major gets none.
#[test]
fn entry_and_descriptor() {
    use nnmod::sys;
    let d = unsafe { nnm_plugin_entry(sys::NNM_ABI_MAJOR as u16 + 1, 0) };
    assert!(d.is_null());
    let d = unsafe { &*nnm_plugin_entry(sys::NNM_ABI_MAJOR as u16, 0) };
    assert_eq!(d.struct_size as usize, std::mem::size_of::<sys::nnm_plugin_desc>());
    assert_eq!((d.abi_major as u32, d.abi_minor as u32), (sys::NNM_ABI_MAJOR, sys::NNM_ABI_MINOR));
    assert_eq!(unsafe { std::ffi::CStr::from_ptr(d.name) }.to_str().unwrap(), "rms_norm");
    assert_eq!((d.n_layers, d.n_backends), (1, 0));
    let vt = unsafe { &**d.layers };
    assert_eq!(unsafe { std::ffi::CStr::from_ptr(vt.name) }.to_str().unwrap(), "rms_norm");
    assert_eq!((vt.version_major, vt.version_minor, vt.version_patch), (0, 1, 0));
    assert!(vt.create.is_some() && vt.forward.is_some() && vt.backward.is_some() && vt.destroy.is_some());
    // and the C loader takes it, once
    let ctx = Context::with_options(ContextOptions { discovery: false, seed: 0 }).unwrap();
    ctx.load_plugin(plugin_path()).unwrap();
    ctx.load_plugin(plugin_path()).unwrap(); // the same file is not loaded twice
}
