//! Helpers of the kernel parity tests: deterministic random inputs, error measures, and the
//! CUDA device when there is one.

#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};

/// Uniform values in `[-2, 2)` from a fixed LCG (`seed` picks the stream), as an F32 tensor.
pub fn random(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let values: Vec<f32> = (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

/// Every element of `t` as F32 on the CPU.
pub fn values(t: &Tensor) -> Vec<f32> {
    t.to_device(&Device::Cpu)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Asserts that `a` and `b` hold the same bits (NaNs of either sign count as equal).
pub fn assert_bit_exact(what: &str, a: &Tensor, b: &Tensor) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    assert_eq!(a.dtype(), b.dtype(), "{what}: dtypes");
    let (va, vb) = (values(a), values(b));
    let mut differing = 0;
    for (x, y) in va.iter().zip(&vb) {
        let same = x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan());
        if !same {
            differing += 1;
        }
    }
    println!("{what}: {differing} of {} elements differ", va.len());
    assert_eq!(differing, 0, "{what}: not bit-exact");
}

/// `max |a − b| / max |b|`, printed with the absolute error.
pub fn relative_error(what: &str, a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    let (va, vb) = (values(a), values(b));
    let mut max_abs = 0f64;
    let mut max_ref = 0f64;
    for (x, y) in va.iter().zip(&vb) {
        assert!(x.is_finite() && y.is_finite(), "{what}: non-finite value");
        max_abs = max_abs.max((f64::from(*x) - f64::from(*y)).abs());
        max_ref = max_ref.max(f64::from(*y).abs());
    }
    let rel = max_abs / max_ref.max(f64::MIN_POSITIVE);
    println!("{what}: max abs {max_abs:.3e}, rel {rel:.3e}");
    rel
}

/// The first CUDA device, or `None` after printing why the GPU half of a test is skipped.
pub fn gpu(test: &str) -> Option<Device> {
    match Device::new_cuda(0) {
        Ok(device) => Some(device),
        Err(e) => {
            println!("{test}: skipped: no CUDA device ({e})");
            None
        }
    }
}

/// Tolerance of a GPU kernel against the CPU reference in `dtype`: reduction order and fused
/// multiply-adds move F32 results by a few ulps; half precision by at most one rounding step.
pub fn gpu_tolerance(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => 1e-5,
        DType::F16 => 2e-3,
        _ => 1.6e-2,
    }
}

/// The dtypes every kernel supports.
pub const FLOAT_DTYPES: [DType; 3] = [DType::F32, DType::BF16, DType::F16];
