//! The benchmark suite (criterion): transformer steps (tiny fixture and a mid-size random
//! model), video VAE decode, text encode, engine overhead per node, and our kernels against
//! candle's ops. Runs on the CPU, and on the first CUDA GPU when one is present (a `--features
//! cuda` build).
//!
//! `cargo bench --bench suite` measures at full size; `cargo test --benches` (as CI's
//! `cargo test --all-targets` does) runs every benchmark once at CI size, and
//! `COMFYRS_BENCH_SIZE=ci cargo bench --bench suite -- --quick` measures the CI sizes in
//! seconds. Results: `benches/RESULTS.md`.

#[path = "../common/flops.rs"]
#[allow(dead_code)]
mod flops;

mod engine_overhead;
mod kernel_ops;
mod pipeline;
mod transformer;

use candle_core::Device;
use criterion::{Criterion, criterion_group, criterion_main};

/// Whether to use the small CI sizes: `COMFYRS_BENCH_SIZE=ci|full`, else CI size unless
/// criterion is benchmarking (`cargo bench` passes `--bench`).
pub fn ci_sized() -> bool {
    match std::env::var("COMFYRS_BENCH_SIZE").as_deref() {
        Ok("ci") => true,
        Ok("full") => false,
        _ => !std::env::args().any(|a| a == "--bench"),
    }
}

/// The devices to measure on: the CPU, and CUDA GPU 0 when this build and machine have one.
pub fn devices() -> Vec<(&'static str, Device)> {
    let mut devices = vec![("cpu", Device::Cpu)];
    match Device::new_cuda(0) {
        Ok(gpu) => devices.push(("cuda", gpu)),
        Err(e) => eprintln!("benchmarks: CPU only (no CUDA device: {e})"),
    }
    devices
}

/// Waits for the device's queued work (so GPU timings cover the work, not its launch).
pub fn sync(device: &Device) {
    device.synchronize().expect("device synchronize");
}

fn configure() -> Criterion {
    Criterion::default().configure_from_args()
}

criterion_group! {
    name = benches;
    config = configure();
    targets = transformer::bench, pipeline::bench, engine_overhead::bench, kernel_ops::bench
}
criterion_main!(benches);
