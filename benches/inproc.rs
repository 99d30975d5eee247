//! In-process latency of the Rust API (`imgsvc::BlockingService`), driven by
//! `scripts/bench`. A plain bench target with the default harness (so the
//! shared Cargo.toml needs no `[[bench]]` entry): the work is one ignored
//! test, which `cargo bench` leaves alone. scripts/bench builds it with
//! `cargo test --release --bench inproc --no-run` and runs the binary as
//! `inproc --ignored --exact --nocapture run` with:
//!
//!   IMGSVC_BENCH_ROOT   store root
//!   IMGSVC_BENCH_OPS    comma-separated: list, status, fsinfo, pull
//!   IMGSVC_BENCH_IMAGE  the image that status and pull use
//!   IMGSVC_BENCH_N      timed calls per operation (default 100)
//!
//! It prints one JSON line per operation: the first (cold) call's latency and
//! every timed call's latency, in microseconds.

use imgsvc::{BlockingService, Options};
use std::time::Instant;

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_default()
}

fn us(t: Instant) -> f64 {
    t.elapsed().as_nanos() as f64 / 1e3
}

#[test]
#[ignore = "run by scripts/bench"]
fn run() {
    let root = env("IMGSVC_BENCH_ROOT");
    assert!(!root.is_empty(), "set IMGSVC_BENCH_ROOT");
    let image = env("IMGSVC_BENCH_IMAGE");
    let n: usize = env("IMGSVC_BENCH_N").parse().unwrap_or(100);
    let t = Instant::now();
    let svc = BlockingService::new(Options::new(&root)).expect("open store");
    println!("{}", serde_json::json!({ "op": "open", "lat_us": [us(t)] }));
    for op in env("IMGSVC_BENCH_OPS").split(',').filter(|s| !s.is_empty()) {
        let call = || -> usize {
            match op {
                "list" => svc.list(None).expect("list").len(),
                "status" => usize::from(svc.status(&image, false).expect("status").is_some()),
                "fsinfo" => svc.fs_info().expect("fs_info").used_bytes as usize,
                "pull" => svc.pull(&image, None, None).expect("pull").len(),
                other => panic!("unknown operation {other:?}"),
            }
        };
        let t = Instant::now();
        let result = call();
        let cold = us(t);
        let mut lat = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            std::hint::black_box(call());
            lat.push(us(t));
        }
        println!("{}", serde_json::json!({ "op": op, "result": result, "cold_us": cold, "lat_us": lat }));
    }
}
