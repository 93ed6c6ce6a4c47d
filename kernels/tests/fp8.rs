//! FP8 dequantisation: CPU reference vs candle's own F8E4M3 dtype (bit-exact for every byte),
//! E5M2 vs IEEE half bits, both roundings; the CUDA kernel vs the CPU reference (bit-exact)
//! when a GPU is present.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{assert_bit_exact, gpu};
use kernels::{Fp8Format, Fp8Rounding, dequantize_fp8};

/// Every byte value, four times, shaped like a small weight.
fn all_bytes() -> Tensor {
    let bytes: Vec<u8> = (0..4).flat_map(|_| 0..=255u8).collect();
    Tensor::from_vec(bytes, (16, 64), &Device::Cpu).unwrap()
}

const SCALES: [f32; 4] = [1.0, 0.002_197_265_6, 3.3e-3, 117.5];

#[test]
fn e4m3_matches_candles_float8_cast_for_every_byte() {
    let q = all_bytes();
    let as_f8 = Tensor::from_raw_buffer(
        &q.flatten_all().unwrap().to_vec1::<u8>().unwrap(),
        DType::F8E4M3,
        q.dims(),
        &Device::Cpu,
    )
    .unwrap();
    for scale in SCALES {
        let s = Tensor::new(scale, &Device::Cpu).unwrap();
        let single = as_f8
            .to_dtype(DType::F32)
            .unwrap()
            .broadcast_mul(&s)
            .unwrap();
        for dtype in [DType::F32, DType::BF16, DType::F16] {
            let want = single.to_dtype(dtype).unwrap();
            let got =
                dequantize_fp8(&q, Fp8Format::E4m3, scale, dtype, Fp8Rounding::SingleF32).unwrap();
            assert_bit_exact(&format!("e4m3 single scale {scale} {dtype:?}"), &got, &want);
            let eager_want = as_f8
                .to_dtype(dtype)
                .unwrap()
                .broadcast_mul(&s.to_dtype(dtype).unwrap())
                .unwrap();
            let eager =
                dequantize_fp8(&q, Fp8Format::E4m3, scale, dtype, Fp8Rounding::ComfyEager).unwrap();
            assert_bit_exact(
                &format!("e4m3 eager scale {scale} {dtype:?}"),
                &eager,
                &eager_want,
            );
        }
    }
}

#[test]
fn e5m2_is_the_upper_byte_of_a_half() {
    let q = all_bytes();
    let halves: Vec<half::f16> = q
        .flatten_all()
        .unwrap()
        .to_vec1::<u8>()
        .unwrap()
        .into_iter()
        .map(|b| half::f16::from_bits(u16::from(b) << 8))
        .collect();
    let as_half = Tensor::from_vec(halves, q.dims(), &Device::Cpu).unwrap();
    for scale in SCALES {
        let s = Tensor::new(scale, &Device::Cpu).unwrap();
        let want = as_half
            .to_dtype(DType::F32)
            .unwrap()
            .broadcast_mul(&s)
            .unwrap()
            .to_dtype(DType::BF16)
            .unwrap();
        let got = dequantize_fp8(
            &q,
            Fp8Format::E5m2,
            scale,
            DType::BF16,
            Fp8Rounding::SingleF32,
        )
        .unwrap();
        assert_bit_exact(&format!("e5m2 scale {scale}"), &got, &want);
    }
}

#[test]
fn non_byte_payloads_and_integer_targets_are_errors() {
    let f = Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap();
    assert!(dequantize_fp8(&f, Fp8Format::E4m3, 1.0, DType::F32, Fp8Rounding::SingleF32).is_err());
    let q = all_bytes();
    assert!(dequantize_fp8(&q, Fp8Format::E4m3, 1.0, DType::U32, Fp8Rounding::SingleF32).is_err());
}

#[test]
fn cuda_kernel_is_bit_exact_to_the_reference() {
    let Some(gpu) = gpu("dequantize_fp8") else {
        return;
    };
    let q = all_bytes();
    // A strided view (every other row) exercises the offset handling.
    let rows = q
        .reshape((8, 2, 64))
        .unwrap()
        .narrow(1, 1, 1)
        .unwrap()
        .squeeze(1)
        .unwrap();
    for format in [Fp8Format::E4m3, Fp8Format::E5m2] {
        for rounding in [Fp8Rounding::SingleF32, Fp8Rounding::ComfyEager] {
            for dtype in [DType::F32, DType::BF16, DType::F16] {
                for scale in SCALES {
                    for input in [&q, &rows] {
                        let cpu = dequantize_fp8(input, format, scale, dtype, rounding).unwrap();
                        let on_gpu = input.contiguous().unwrap().to_device(&gpu).unwrap();
                        let out = dequantize_fp8(&on_gpu, format, scale, dtype, rounding).unwrap();
                        let what = format!("gpu {format:?} {rounding:?} {dtype:?} scale {scale}");
                        assert_bit_exact(&what, &out, &cpu);
                    }
                }
            }
        }
    }
}
