//! Fused RMS norm + AdaLN modulation: CPU reference vs candle's ops (bit-exact in F32), and the
//! CUDA kernel vs the CPU reference when a GPU is present.

mod common;

use candle_core::{D, DType, Device, Tensor};
use common::{FLOAT_DTYPES, assert_bit_exact, gpu, gpu_tolerance, random, relative_error};

const EPS: f64 = 1e-6;

/// The transformer's unfused path: candle's rms_norm with unit weight, then `x·(1+scale)+shift`.
fn candle_ops(x: &Tensor, scale: &Tensor, shift: &Tensor) -> Tensor {
    let ones = Tensor::ones(x.dim(D::Minus1).unwrap(), x.dtype(), x.device()).unwrap();
    let norm = candle_nn::ops::rms_norm(&x.contiguous().unwrap(), &ones, EPS as f32).unwrap();
    norm.broadcast_mul(&(scale + 1.0).unwrap())
        .unwrap()
        .broadcast_add(shift)
        .unwrap()
}

/// `(x, scale, shift)` of the three modulation layouts the model uses: per token, per item
/// (`[B, 1, D]`), and rows of a `[B, T, 6, D]` table viewed without a copy.
fn cases(b: usize, t: usize, d: usize) -> Vec<(&'static str, Tensor, Tensor, Tensor)> {
    let x = random(&[b, t, d], 1);
    let table = random(&[b, t, 6, d], 2);
    let row = |i: usize| table.narrow(2, i, 1).unwrap().squeeze(2).unwrap();
    vec![
        (
            "per-token",
            x.clone(),
            random(&[b, t, d], 3),
            random(&[b, t, d], 4),
        ),
        (
            "per-item",
            x.clone(),
            random(&[b, 1, d], 5),
            random(&[b, 1, d], 6),
        ),
        ("table rows", x, row(1), row(0)),
    ]
}

#[test]
fn reference_is_bit_exact_to_candle_ops_in_f32() {
    for (b, t, d) in [(2, 5, 64), (1, 40, 4096), (2, 3, 2048)] {
        for (name, x, scale, shift) in cases(b, t, d) {
            let fused = kernels::rms_norm_modulate(&x, &scale, &shift, EPS).unwrap();
            let unfused = candle_ops(&x, &scale, &shift);
            assert_bit_exact(&format!("{name} {b}x{t}x{d}"), &fused, &unfused);
        }
    }
}

#[test]
fn reference_in_half_precision_is_one_rounding_of_the_f32_result() {
    for dtype in [DType::BF16, DType::F16] {
        for (name, x, scale, shift) in cases(2, 7, 256) {
            let exact = kernels::rms_norm_modulate(&x, &scale, &shift, EPS).unwrap();
            let cast = |t: &Tensor| t.to_dtype(dtype).unwrap();
            let (xh, sh, hh) = (cast(&x), cast(&scale), cast(&shift));
            // The inputs rounded to `dtype`, computed exactly, rounded once.
            let want = kernels::rms_norm_modulate(
                &xh.to_dtype(DType::F32).unwrap(),
                &sh.to_dtype(DType::F32).unwrap(),
                &hh.to_dtype(DType::F32).unwrap(),
                EPS,
            )
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
            let fused = kernels::rms_norm_modulate(&xh, &sh, &hh, EPS).unwrap();
            assert_bit_exact(&format!("{name} {dtype:?}"), &fused, &want);
            // ... and at least as close to the F32 result as candle's op-by-op rounding.
            let ours = relative_error("fused vs f32", &fused, &exact);
            let theirs = relative_error("candle ops vs f32", &candle_ops(&xh, &sh, &hh), &exact);
            assert!(ours <= theirs, "{name} {dtype:?}: {ours} > {theirs}");
        }
    }
}

#[test]
fn cuda_kernel_matches_the_reference() {
    let Some(gpu) = gpu("rms_norm_modulate") else {
        return;
    };
    for dtype in FLOAT_DTYPES {
        for (b, t, d) in [(2, 5, 64), (1, 300, 4096), (2, 33, 2048), (1, 1, 100)] {
            for (name, x, scale, shift) in cases(b, t, d) {
                let cast =
                    |t: &Tensor, dev: &Device| t.to_dtype(dtype).unwrap().to_device(dev).unwrap();
                let cpu = kernels::rms_norm_modulate(
                    &cast(&x, &Device::Cpu),
                    &cast(&scale, &Device::Cpu),
                    &cast(&shift, &Device::Cpu),
                    EPS,
                )
                .unwrap();
                let out = kernels::rms_norm_modulate(
                    &cast(&x, &gpu),
                    &cast(&scale, &gpu),
                    &cast(&shift, &gpu),
                    EPS,
                )
                .unwrap();
                let what = format!("gpu {name} {b}x{t}x{d} {dtype:?}");
                assert!(
                    relative_error(&what, &out, &cpu) <= gpu_tolerance(dtype),
                    "{what}"
                );
            }
        }
    }
}
