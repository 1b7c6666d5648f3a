//! The Rust twin of bench/bindings/bench_bindings_c.c: Linear(16, 16) or ReLU
//! on a [4, 16] input, grad mode off, `Module::forward` and the output dropped.
//! `bench_bindings_rust linear|relu [iters] [reps]` prints one JSON line.
use std::time::Instant;

use nnmod::{Config, Context};

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}
extern "C" {
    fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
}
const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;

/// Process CPU time in seconds (as the C twin measures it).
fn cpu_s() -> f64 {
    let mut ts = Timespec { sec: 0, nsec: 0 };
    unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.sec as f64 + 1e-9 * ts.nsec as f64
}

fn main() -> nnmod::Result<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let which = argv.first().map_or("linear", |s| s.as_str());
    let args: Vec<usize> = argv.iter().skip(1).map(|a| a.parse().expect("a number")).collect();
    let iters = *args.first().unwrap_or(&20000);
    let reps = *args.get(1).unwrap_or(&15);
    let ctx = Context::new()?;
    let cfg = match which {
        "linear" => Config::new()?.int("in_features", 16)?.int("out_features", 16)?,
        _ => Config::new()?,
    };
    let m = ctx.create_module(which, &cfg)?;
    let x = ctx.tensor(&[4, 16], &[1.0; 64])?;
    let _g = nnmod::no_grad();
    for _ in 0..iters / 10 + 100 {
        drop(m.forward(&x)?);
    }
    let (mut ns, mut wall) = (Vec::with_capacity(reps), Vec::with_capacity(reps));
    for _ in 0..reps {
        let (t0, c0) = (Instant::now(), cpu_s());
        for _ in 0..iters {
            drop(m.forward(&x)?);
        }
        ns.push((cpu_s() - c0) * 1e9 / iters as f64);
        wall.push(t0.elapsed().as_secs_f64() * 1e9 / iters as f64);
    }
    ns.sort_by(|a, b| a.partial_cmp(b).unwrap());
    wall.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{{\"bench\": \"bindings_call\", \"lang\": \"rust\", \"module\": \"{which}\", \"input\": [4, 16], \"value\": {:.1}, \"unit\": \"ns\", \"clock\": \"process_cpu\", \"wall\": {:.1}, \"iters\": {iters}, \"reps\": {reps}}}",
        ns[reps / 2],
        wall[reps / 2]
    );
    Ok(())
}
