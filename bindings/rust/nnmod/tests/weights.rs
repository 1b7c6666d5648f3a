//! Saving and loading weights, state dicts and training checkpoints.
use std::path::PathBuf;

use nnmod::{checkpoint, sys, Adam, Config, Context, ContextOptions, Module, Optimizer, Sgd, StateDict, Tensor};

fn mlp_manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../examples/manifests/mlp.json")
}

/// A scratch directory of this test, removed when dropped.
struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("nnmod-rust-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ctx(seed: u64) -> Context {
    Context::with_options(ContextOptions { discovery: true, seed }).unwrap()
}

fn input(ctx: &Context) -> Tensor {
    ctx.tensor(&[4, 4], &(0..16).map(|i| (i as f32 - 8.0) / 8.0).collect::<Vec<_>>()).unwrap()
}

/// One training step: loss = mean(m(x)^2).
fn step(m: &Module, opt: &mut Optimizer, x: &Tensor) -> f32 {
    opt.zero_grad().unwrap();
    let y = m.forward(x).unwrap();
    let loss = y.mul(&y).unwrap().mean().unwrap();
    loss.backward().unwrap();
    opt.step().unwrap();
    loss.item().unwrap()
}

fn params(m: &Module) -> Vec<(String, Vec<f32>)> {
    m.named_parameters().unwrap().into_iter().map(|(k, t)| (k, t.to_vec().unwrap())).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

#[test]
fn trained_weights_round_trip_exactly() {
    let dir = TempDir::new("save");
    let c = ctx(7);
    let m = c.load_manifest(mlp_manifest()).unwrap();
    let x = input(&c);
    let mut sgd = Optimizer::sgd(&m, Sgd { momentum: 0.9, ..Sgd::new(0.1) }).unwrap();
    let mut adam = Optimizer::adam(&m, Adam::new(1e-2)).unwrap();
    for _ in 0..3 {
        step(&m, &mut sgd, &x);
        step(&m, &mut adam, &x);
    }
    let path = dir.file("mlp.safetensors");
    m.save_with_metadata(&path, &[("epoch", "3"), ("note", "trained")]).unwrap();
    let meta = checkpoint::metadata(&c, &path).unwrap();
    assert!(meta.contains(&("epoch".into(), "3".into())), "{meta:?}");
    assert!(meta.iter().any(|(k, _)| k == "nnmod_version"), "{meta:?}");

    // a fresh module (another seed: other initial weights) gets them all
    let c2 = ctx(8);
    let fresh = c2.load_manifest(mlp_manifest()).unwrap();
    let x2 = input(&c2);
    let y = m.forward(&x).unwrap().to_vec().unwrap();
    assert_ne!(bits(&fresh.forward(&x2).unwrap().to_vec().unwrap()), bits(&y));
    let rep = fresh.load(&path, true).unwrap();
    assert!(rep.is_empty(), "{rep:?}");
    assert_eq!(bits(&fresh.forward(&x2).unwrap().to_vec().unwrap()), bits(&y));
    assert_eq!(params(&fresh).len(), 4);
    for ((k1, a), (k2, b)) in params(&m).iter().zip(params(&fresh).iter()) {
        assert_eq!(k1, k2);
        assert_eq!(bits(a), bits(b), "{k1}");
    }
    // a NUL in a metadata key is refused before C sees it
    assert_eq!(m.save_with_metadata(&path, &[("a\0b", "v")]).unwrap_err().status(), sys::NNM_E_INVALID);
}

#[test]
fn missing_keys_are_reported() {
    let dir = TempDir::new("missing");
    let c = ctx(7);
    let m = c.load_manifest(mlp_manifest()).unwrap();
    // a file with fc1 only: Sequential(fc1=Linear(4, 8))
    let part = c.create_module("sequential", &Config::new().unwrap()).unwrap();
    let fc1 = c
        .create_module("linear", &Config::new().unwrap().int("in_features", 4).unwrap().int("out_features", 8).unwrap())
        .unwrap();
    part.add_child(Some("fc1"), &fc1).unwrap();
    let path = dir.file("fc1.safetensors");
    part.save(&path).unwrap();

    let before = params(&m);
    let err = m.load(&path, true).unwrap_err();
    assert_eq!(err.status(), sys::NNM_E_NOT_FOUND, "{err}");
    let rep = err.load_report().expect("a strict refusal carries the report");
    assert_eq!(rep.missing, vec!["fc2.weight", "fc2.bias"]);
    assert!(rep.unexpected.is_empty() && rep.mismatched.is_empty(), "{rep:?}");
    assert_eq!(params(&m), before, "a refused load changes nothing");

    // not strict: fc1 loads, fc2 is reported
    let rep = m.load(&path, false).unwrap();
    assert_eq!(rep.missing, vec!["fc2.weight", "fc2.bias"]);
    assert_eq!(m.get("fc1").unwrap().named_parameters().unwrap()[0].1.to_vec().unwrap(),
               fc1.named_parameters().unwrap()[0].1.to_vec().unwrap());
    assert_eq!(params(&m)[2..], before[2..]);

    // a shape that does not fit is refused even when not strict
    let wide = c
        .create_module("linear", &Config::new().unwrap().int("in_features", 5).unwrap().int("out_features", 8).unwrap())
        .unwrap();
    let part2 = c.create_module("sequential", &Config::new().unwrap()).unwrap();
    part2.add_child(Some("fc1"), &wide).unwrap();
    part2.save(&path).unwrap();
    let err = m.load(&path, false).unwrap_err();
    assert_eq!(err.status(), sys::NNM_E_SHAPE, "{err}");
    assert_eq!(err.load_report().unwrap().mismatched.len(), 1, "{err}");
    assert!(err.load_report().unwrap().mismatched[0].starts_with("fc1.weight"), "{err}");
}

#[test]
fn state_dicts_share_storage_and_load() {
    let c = ctx(7);
    let m = c.load_manifest(mlp_manifest()).unwrap();
    let sd = m.state_dict().unwrap();
    assert_eq!(sd.keys(), vec!["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);
    assert_eq!(sd.len(), 4);
    assert!(sd.get("nope").is_none() && sd.get("a\0b").is_none());
    // the entries share the module's storage
    let b = sd.get("fc2.bias").unwrap();
    b.copy_from(&[1.0, 2.0, 3.0]).unwrap();
    assert_eq!(m.get("fc2").unwrap().named_parameters().unwrap()[1].1.to_vec().unwrap(), vec![1.0, 2.0, 3.0]);

    // into a fresh module of the same context: identical outputs
    let fresh = c.load_manifest(mlp_manifest()).unwrap();
    let x = input(&c);
    assert!(fresh.load_state_dict(&sd, true).unwrap().is_empty());
    assert_eq!(bits(&fresh.forward(&x).unwrap().to_vec().unwrap()), bits(&m.forward(&x).unwrap().to_vec().unwrap()));

    // a hand-made dict: strict refuses the missing keys and reports them
    let mut part = StateDict::new(&c).unwrap();
    for (k, t) in sd.entries().into_iter().take(2) {
        part.insert(&k, &t).unwrap();
    }
    let extra = c.tensor(&[1], &[0.0]).unwrap();
    part.insert("extra", &extra).unwrap();
    assert_eq!(part.keys(), vec!["fc1.weight", "fc1.bias", "extra"]);
    let err = fresh.load_state_dict(&part, true).unwrap_err();
    assert_eq!(err.status(), sys::NNM_E_NOT_FOUND);
    let rep = err.load_report().unwrap();
    assert_eq!((rep.missing.clone(), rep.unexpected.clone()), (vec!["fc2.weight".into(), "fc2.bias".into()], vec!["extra".into()]));
    let rep = fresh.load_state_dict(&part, false).unwrap();
    assert_eq!(rep.unexpected, vec!["extra"]);
    // a tensor of another context is refused, not mixed in
    let other = ctx(1);
    let t = other.tensor(&[1], &[0.0]).unwrap();
    assert_eq!(part.insert("x", &t).unwrap_err().status(), sys::NNM_E_INVALID);
}

#[test]
fn checkpoints_resume_training_exactly() {
    let dir = TempDir::new("ckpt");
    for kind in ["sgd", "adam", "adamw"] {
        let make = |m: &Module| match kind {
            "sgd" => Optimizer::sgd(m, Sgd { momentum: 0.9, ..Sgd::new(0.05) }).unwrap(),
            "adam" => {
                // two groups: fc2 at its own rate
                let mut o = Optimizer::adam(m, Adam::new(1e-2)).unwrap();
                assert_eq!(o.add_group("fc2.", 1e-3, 0.0).unwrap(), 1);
                o
            }
            _ => Optimizer::adam(m, Adam { weight_decay: 0.1, decoupled: true, ..Adam::new(1e-2) }).unwrap(),
        };
        let c = ctx(7);
        let m = c.load_manifest(mlp_manifest()).unwrap();
        let x = input(&c);
        let mut opt = make(&m);
        for _ in 0..3 {
            step(&m, &mut opt, &x);
        }
        let path = dir.file(&format!("{kind}.ckpt"));
        checkpoint::save(&path, &m, Some(&opt), &[("epoch", "3")]).unwrap();
        let loss4 = step(&m, &mut opt, &x);
        let after4 = params(&m);

        // resume in a fresh process-like setting: another context and seed
        let c2 = ctx(99);
        let m2 = c2.load_manifest(mlp_manifest()).unwrap();
        let x2 = input(&c2);
        let mut opt2 = make(&m2);
        checkpoint::load(&path, &m2, Some(&mut opt2)).unwrap();
        let loss4b = step(&m2, &mut opt2, &x2);
        assert_eq!(loss4.to_bits(), loss4b.to_bits(), "{kind}");
        for ((k, a), (_, b)) in after4.iter().zip(params(&m2).iter()) {
            assert_eq!(bits(a), bits(b), "{kind}: {k}");
        }
        assert!(checkpoint::metadata(&c2, &path).unwrap().contains(&("epoch".into(), "3".into())));
        if kind == "adam" {
            assert_eq!((opt2.group_count(), opt2.lr(1)), (2, 1e-3));
            // the same kind in other groups is refused
            let mut one = Optimizer::adam(&m2, Adam::new(1e-2)).unwrap();
            assert_eq!(checkpoint::load(&path, &m2, Some(&mut one)).unwrap_err().status(), sys::NNM_E_INVALID);
        }

        // another kind of optimizer is refused, and nothing changes
        let before = params(&m2);
        let mut wrong = if kind == "sgd" { Optimizer::adam(&m2, Adam::new(1e-2)) } else { Optimizer::sgd(&m2, Sgd::new(0.1)) }.unwrap();
        let err = checkpoint::load(&path, &m2, Some(&mut wrong)).unwrap_err();
        assert_eq!(err.status(), sys::NNM_E_INVALID, "{kind}: {err}");
        assert_eq!(params(&m2), before);
        // the weights alone
        checkpoint::load(&path, &m2, None).unwrap();
    }
    // metadata keys of nnmod's own are refused
    let c = ctx(7);
    let m = c.load_manifest(mlp_manifest()).unwrap();
    let err = checkpoint::save(dir.file("x.ckpt"), &m, None, &[("nnmod_x", "1")]).unwrap_err();
    assert_eq!(err.status(), sys::NNM_E_INVALID);
}

#[test]
fn corrupt_files_are_errors_not_crashes() {
    let dir = TempDir::new("corrupt");
    let c = ctx(7);
    let m = c.load_manifest(mlp_manifest()).unwrap();
    let mut opt = Optimizer::adam(&m, Adam::new(1e-2)).unwrap();
    let good = dir.file("good.ckpt");
    checkpoint::save(&good, &m, Some(&opt), &[]).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let before = params(&m);
    let bad = dir.file("bad.ckpt");
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut cases: Vec<Vec<u8>> = vec![
        vec![],                                  // empty
        bytes[..5].to_vec(),                     // shorter than the length prefix
        bytes[..8 + header_len / 2].to_vec(),    // header cut
        bytes[..bytes.len() - 7].to_vec(),       // data cut
        b"not a safetensors file at all".to_vec(),
    ];
    let mut flipped = bytes.clone();
    flipped[8 + 1] = b'#'; // the header's JSON broken
    cases.push(flipped);
    let mut huge = bytes.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    cases.push(huge);
    for (i, case) in cases.iter().enumerate() {
        std::fs::write(&bad, case).unwrap();
        assert!(m.load(&bad, true).is_err(), "case {i}");
        assert!(m.load(&bad, false).is_err(), "case {i}");
        assert!(checkpoint::load(&bad, &m, Some(&mut opt)).is_err(), "case {i}");
        assert!(checkpoint::metadata(&c, &bad).is_err(), "case {i}");
        assert_eq!(params(&m), before, "case {i}");
    }
    let missing = dir.file("absent.safetensors");
    assert_eq!(m.load(&missing, true).unwrap_err().status(), sys::NNM_E_IO);
    assert!(m.load("bad\0path", true).is_err());
}
