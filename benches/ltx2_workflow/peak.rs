//! The device's measured matmul peak (the MFU denominator): square products in the run's dtype
//! (BF16 on a GPU: cuBLAS; F32 on the CPU: gemm), the median rate of repeated timed calls after
//! a warm-up, on random (not zero) inputs.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};

/// `(size, TFLOP/s)` of the fastest measured size.
pub fn matmul_peak(device: &Device, dtype: DType) -> candle_core::Result<(usize, f64)> {
    let sizes: &[usize] = if device.is_cuda() {
        &[4096, 8192]
    } else {
        &[512, 1024]
    };
    let mut best = (0, 0.0);
    for &n in sizes {
        let a = Tensor::randn(0f32, 1.0, (n, n), device)?.to_dtype(dtype)?;
        let b = Tensor::randn(0f32, 1.0, (n, n), device)?.to_dtype(dtype)?;
        for _ in 0..3 {
            a.matmul(&b)?;
        }
        device.synchronize()?;
        let mut rates = Vec::new();
        for _ in 0..10 {
            let start = Instant::now();
            let reps = if device.is_cuda() { 10 } else { 1 };
            for _ in 0..reps {
                a.matmul(&b)?;
            }
            device.synchronize()?;
            let secs = start.elapsed().as_secs_f64();
            rates.push(2.0 * (n * n * n) as f64 * reps as f64 / secs / 1e12);
        }
        rates.sort_by(f64::total_cmp);
        let median = rates[rates.len() / 2];
        if median > best.1 {
            best = (n, median);
        }
    }
    Ok(best)
}
