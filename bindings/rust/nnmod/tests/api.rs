//! The safe crate over the build tree's libnnmod and plugins.
use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use nnmod::{sys, Config, Context, ContextOptions, Error, Optimizer, Sgd};

fn mlp_manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../examples/manifests/mlp.json")
}

#[test]
fn version_and_constants() {
    assert!(!nnmod::version().is_empty());
    assert_eq!(Error::new(sys::NNM_E_SHAPE, "x").name(), "NNM_E_SHAPE");
}

#[test]
fn manifest_forward_and_structure() {
    let ctx = Context::new().unwrap();
    let m = ctx.load_manifest(mlp_manifest()).unwrap();
    assert_eq!(m.type_name(), "sequential");
    assert_eq!(m.path(), "");
    assert_eq!(m.num_params(), 4 * 8 + 8 + 8 * 3 + 3);
    let names: Vec<String> = m.named_modules().unwrap().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["", "fc1", "act", "fc2"]);
    let fc2 = m.get("fc2").unwrap();
    assert_eq!((fc2.name(), fc2.path(), fc2.type_name()), ("fc2".into(), "fc2".into(), "linear".into()));
    assert_eq!(fc2.parent().unwrap().type_name(), "sequential");
    assert_eq!(m.children().len(), 3);
    assert!(m.get("nope").is_none());
    assert!(format!("{m}").contains("Linear"), "{m}");

    let x = ctx.tensor(&[5, 4], &[0.25; 20]).unwrap();
    let y = m.forward(&x).unwrap();
    assert_eq!(y.shape(), &[5, 3]);
    let ys = m.call(&[&x], 1).unwrap();
    assert_eq!(ys[0].to_vec().unwrap(), y.to_vec().unwrap());
}

#[test]
fn errors_carry_status_and_module_path() {
    let ctx = Context::new().unwrap();
    let e = ctx.load_manifest("/nonexistent/m.json").unwrap_err();
    assert!(e.status() < 0);
    assert!(e.message().contains("/nonexistent/m.json"), "{e}");

    let m = ctx.load_manifest(mlp_manifest()).unwrap();
    let bad = ctx.zeros(&[2, 5]).unwrap();
    let e = m.forward(&bad).unwrap_err();
    assert_eq!(e.status(), sys::NNM_E_SHAPE);
    assert_eq!(e.name(), "NNM_E_SHAPE");
    assert!(e.message().contains("fc1 (linear)"), "{e}");
    assert!(format!("{e}").starts_with("NNM_E_SHAPE: "));

    let e = ctx.tensor(&[2, 2], &[1.0; 3]).unwrap_err();
    assert_eq!(e.status(), sys::NNM_E_SHAPE);
    let e = ctx.create_module("no_such_layer", &Config::new().unwrap()).unwrap_err();
    assert!(e.message().contains("no_such_layer"), "{e}");
    assert!(ctx.load_plugin("/nonexistent.so").is_err());
}

#[test]
fn tensors_share_storage_and_copy() {
    let ctx = Context::new().unwrap();
    let t = ctx.tensor(&[2, 3], &[1., 2., 3., 4., 5., 6.]).unwrap();
    assert_eq!((t.ndim(), t.numel()), (2, 6));
    let u = t.clone();
    u.copy_from(&[6., 5., 4., 3., 2., 1.]).unwrap();
    assert_eq!(t.to_vec().unwrap(), [6., 5., 4., 3., 2., 1.]);
    assert_eq!(unsafe { t.as_slice() }.unwrap(), &[6., 5., 4., 3., 2., 1.]);
    assert!(t.copy_from(&[1.0]).is_err());
    let s = t.add(&t).unwrap().sum().unwrap();
    assert_eq!(s.item().unwrap(), 42.0);
    let r = t.reshape(&[3, 2]).unwrap();
    assert_eq!(r.shape(), &[3, 2]);
    assert!(t.item().is_err());
}

#[test]
fn hooks_are_closures_freed_by_the_runtime() {
    let ctx = Context::new().unwrap();
    let m = ctx.load_manifest(mlp_manifest()).unwrap();
    let x = ctx.tensor(&[1, 4], &[1.0, -1.0, 0.5, 2.0]).unwrap();
    let seen = Rc::new(RefCell::new(Vec::<String>::new()));
    let s2 = seen.clone();
    let h = ctx
        .register_forward_hook(move |c| {
            s2.borrow_mut().push(format!("{} {:?}", c.module().path(), c.outputs()[0].shape()));
            Ok(())
        })
        .unwrap();
    m.forward(&x).unwrap();
    assert_eq!(*seen.borrow(), ["fc1 [1, 8]", "act [1, 8]", "fc2 [1, 3]", " [1, 3]"]);
    assert_eq!(Rc::strong_count(&seen), 2); // the closure holds one
    assert!(h.is_live());
    assert!(h.remove());
    assert!(!h.remove()); // already gone: harmless
    assert!(!h.is_live());
    assert_eq!(Rc::strong_count(&seen), 1); // the runtime dropped the closure
    m.forward(&x).unwrap();
    assert_eq!(seen.borrow().len(), 4);
    drop(h);

    // dropping a handle keeps the hook (as in PyTorch); the module's death frees it
    let count = Rc::new(RefCell::new(0));
    let c2 = count.clone();
    let fc1 = m.get("fc1").unwrap();
    let h = fc1.register_forward_hook(move |_| {
        *c2.borrow_mut() += 1;
        Ok(())
    })
    .unwrap();
    drop(h);
    m.forward(&x).unwrap();
    assert_eq!(*count.borrow(), 1);
    let h2 = fc1.register_forward_pre_hook(|_| Ok(())).unwrap();
    drop(fc1);
    drop(m); // the tree dies: both closures are freed, the handle stays usable
    assert_eq!(Rc::strong_count(&count), 1);
    assert!(!h2.is_live());
    assert!(!h2.remove());
}

#[test]
fn hooks_replace_outputs_and_inputs_in_order() {
    let ctx = Context::new().unwrap();
    let m = ctx.load_manifest(mlp_manifest()).unwrap();
    let x = ctx.tensor(&[1, 4], &[1.0, -1.0, 0.5, 2.0]).unwrap();
    let fc2 = m.get("fc2").unwrap();
    let zeros = ctx.zeros(&[1, 3]).unwrap();
    let h1 = fc2.register_forward_hook(move |c| c.set_output(0, &zeros)).unwrap();
    assert_eq!(m.forward(&x).unwrap().to_vec().unwrap(), [0.0; 3]);
    h1.remove();
    let y_ref = m.forward(&ctx.zeros(&[1, 4]).unwrap()).unwrap().to_vec().unwrap();
    let z = ctx.zeros(&[1, 4]).unwrap();
    let h2 = m.register_forward_pre_hook(move |c| c.set_input(0, &z)).unwrap();
    assert_eq!(m.forward(&x).unwrap().to_vec().unwrap(), y_ref);
    h2.remove();

    // prepend puts a hook first
    let order = Rc::new(RefCell::new(Vec::new()));
    let (o1, o2) = (order.clone(), order.clone());
    let a = fc2.register_forward_hook(move |_| Ok(o1.borrow_mut().push("a"))).unwrap();
    let b = fc2
        .register_forward_hook_with(nnmod::HookOptions { prepend: true, always_call: false }, move |_| Ok(o2.borrow_mut().push("b")))
        .unwrap();
    m.forward(&x).unwrap();
    assert_eq!(*order.borrow(), ["b", "a"]);
    a.remove();
    b.remove();

    // always_call runs when the call fails
    let ran = Rc::new(RefCell::new(false));
    let r2 = ran.clone();
    let fail = fc2.register_forward_pre_hook(|_| Err(Error::hook("no"))).unwrap();
    let always = fc2
        .register_forward_hook_with(nnmod::HookOptions { prepend: false, always_call: true }, move |_| {
            *r2.borrow_mut() = true;
            Ok(())
        })
        .unwrap();
    assert!(m.forward(&x).is_err());
    assert!(*ran.borrow());
    fail.remove();
    always.remove();
}

#[test]
fn hook_errors_and_panics_fail_the_call() {
    let ctx = Context::new().unwrap();
    let m = ctx.load_manifest(mlp_manifest()).unwrap();
    let x = ctx.zeros(&[1, 4]).unwrap();
    let act = m.get("act").unwrap();
    let h = act.register_forward_hook(|_| Err(Error::new(sys::NNM_E_INVALID, "act says no"))).unwrap();
    let e = m.forward(&x).unwrap_err();
    assert_eq!(e.status(), sys::NNM_E_INVALID);
    assert!(e.message().contains("act says no"), "{e}");
    h.remove();
    let h = act.register_forward_hook(|_| panic!("boom in a hook")).unwrap();
    let e = m.forward(&x).unwrap_err();
    assert_eq!(e.name(), "NNM_E_HOOK");
    assert!(e.message().contains("boom in a hook"), "{e}");
    h.remove();
    m.forward(&x).unwrap(); // hooks gone, module fine
}

#[test]
fn backward_and_sgd_lower_the_loss() {
    let ctx = Context::with_options(ContextOptions { discovery: true, seed: 7 }).unwrap();
    let m = ctx.load_manifest(mlp_manifest()).unwrap();
    let x = ctx.tensor(&[4, 4], &(0..16).map(|i| (i as f32 - 8.0) / 8.0).collect::<Vec<_>>()).unwrap();
    let mut opt = Optimizer::sgd(&m, Sgd::new(0.1)).unwrap();
    let mut losses = vec![];
    for _ in 0..5 {
        opt.zero_grad().unwrap();
        let y = m.forward(&x).unwrap();
        let loss = y.mul(&y).unwrap().mean().unwrap();
        losses.push(loss.item().unwrap());
        loss.backward().unwrap();
        for (name, p) in m.named_parameters().unwrap() {
            assert!(p.grad().is_some(), "{name}");
        }
        opt.step().unwrap();
    }
    assert!(losses[4] < losses[0], "{losses:?}");
    assert_eq!(opt.lr(0), 0.1);
    // a second backward through a freed graph fails with NNM_E_STATE
    let y = m.forward(&x).unwrap();
    let loss = y.sum().unwrap();
    loss.backward().unwrap();
    assert_eq!(loss.backward().unwrap_err().status(), sys::NNM_E_STATE);
}

#[test]
fn full_backward_hooks_see_and_replace_gradients() {
    let ctx = Context::new().unwrap();
    let m = ctx.load_manifest(mlp_manifest()).unwrap();
    let x = ctx.tensor(&[1, 4], &[1.0, -1.0, 0.5, 2.0]).unwrap();
    let fc2 = m.get("fc2").unwrap();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s2 = seen.clone();
    let zeros = ctx.zeros(&[1, 8]).unwrap();
    let h = fc2
        .register_full_backward_hook(move |b| {
            let gi = b.grad_inputs()[0].as_ref().map(|t| t.shape().to_vec());
            let go = b.grad_outputs()[0].as_ref().map(|t| t.shape().to_vec());
            s2.borrow_mut().push((b.module().path(), gi, go));
            b.set_grad_input(0, &zeros) // nothing flows below fc2
        })
        .unwrap();
    let y = m.forward(&x).unwrap();
    y.mul(&y).unwrap().sum().unwrap().backward().unwrap();
    assert_eq!(*seen.borrow(), [("fc2".to_string(), Some(vec![1, 8]), Some(vec![1, 3]))]);
    let p: std::collections::HashMap<String, nnmod::Tensor> = m.named_parameters().unwrap().into_iter().collect();
    let g1 = p["fc1.weight"].grad().map(|g| g.to_vec().unwrap());
    assert!(g1.map_or(true, |g| g.iter().all(|&v| v == 0.0)), "fc1 got a gradient through the zeroed input");
    assert!(p["fc2.weight"].grad().unwrap().to_vec().unwrap().iter().any(|&v| v != 0.0));
    assert!(h.remove());
}

#[test]
fn grad_mode_is_scoped() {
    let ctx = Context::new().unwrap();
    let m = ctx.load_manifest(mlp_manifest()).unwrap();
    let x = ctx.zeros(&[1, 4]).unwrap();
    assert!(nnmod::is_grad_enabled());
    {
        let _g = nnmod::no_grad();
        assert!(!nnmod::is_grad_enabled());
        assert!(!m.forward(&x).unwrap().requires_grad());
    }
    assert!(nnmod::is_grad_enabled());
    assert!(m.forward(&x).unwrap().requires_grad());
}

/// Objects keep their context alive: a module outlives the Context handle.
#[test]
fn objects_outlive_the_context_handle() {
    let m = {
        let ctx = Context::new().unwrap();
        ctx.load_manifest(mlp_manifest()).unwrap()
    };
    let p = m.named_parameters().unwrap();
    assert_eq!(p.len(), 4);
    let y = m.forward(&p[0].1).unwrap(); // fc1.weight [8, 4] as a batch of 8
    assert_eq!(y.shape(), &[8, 3]);
}

#[test]
fn one_context_per_thread() {
    let threads: Vec<_> = (0..2)
        .map(|i| {
            std::thread::spawn(move || {
                let ctx = Context::new().unwrap();
                let m = ctx.load_manifest(mlp_manifest()).unwrap();
                let x = ctx.tensor(&[1, 4], &[i as f32; 4]).unwrap();
                let _g = nnmod::no_grad(); // this thread's grad mode only
                m.forward(&x).unwrap().to_vec().unwrap()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap().len(), 3);
    }
    assert!(nnmod::is_grad_enabled()); // other threads' no_grad did not leak here
}

/// Context, Module and Tensor are !Send and !Sync (compile-time check: the
/// method is ambiguous, so this would not compile, if any of them were Send).
#[test]
fn handles_are_not_send() {
    trait AmbiguousIfSend<A> {
        fn check() {}
    }
    impl<T: ?Sized> AmbiguousIfSend<()> for T {}
    impl<T: ?Sized + Send> AmbiguousIfSend<u8> for T {}
    trait AmbiguousIfSync<A> {
        fn check() {}
    }
    impl<T: ?Sized> AmbiguousIfSync<()> for T {}
    impl<T: ?Sized + Sync> AmbiguousIfSync<u8> for T {}
    <nnmod::Context as AmbiguousIfSend<_>>::check();
    <nnmod::Module as AmbiguousIfSend<_>>::check();
    <nnmod::Tensor as AmbiguousIfSend<_>>::check();
    <nnmod::GradGuard as AmbiguousIfSend<_>>::check();
    <nnmod::Context as AmbiguousIfSync<_>>::check();
    <nnmod::Module as AmbiguousIfSync<_>>::check();
    <nnmod::Tensor as AmbiguousIfSync<_>>::check();
}
