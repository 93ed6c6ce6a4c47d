//! Bias + tanh-GELU and the gated residual: CPU references vs candle's ops (bit-exact in F32),
//! and the CUDA kernels vs the CPU references when a GPU is present.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{FLOAT_DTYPES, assert_bit_exact, gpu, gpu_tolerance, random, relative_error};

#[test]
fn bias_gelu_reference_is_bit_exact_to_candle_ops_in_f32() {
    for shape in [vec![2, 5, 64], vec![3, 4096], vec![1, 7, 16384]] {
        let x = (random(&shape, 1) * 3.0).unwrap();
        let bias = random(&shape[shape.len() - 1..], 2);
        let fused = kernels::bias_gelu(&x, &bias).unwrap();
        let unfused = x.broadcast_add(&bias).unwrap().gelu().unwrap();
        assert_bit_exact(&format!("bias_gelu {shape:?}"), &fused, &unfused);
    }
}

#[test]
fn add_gated_reference_is_bit_exact_to_candle_ops_in_f32() {
    let (b, t, d) = (2, 9, 128);
    let x = random(&[b, t, d], 3);
    let y = random(&[b, t, d], 4);
    let table = random(&[b, 1, 6, d], 5);
    let gates = [
        ("per-token", random(&[b, t, d], 6)),
        ("per-item", random(&[b, 1, d], 7)),
        (
            "table row",
            table.narrow(2, 2, 1).unwrap().squeeze(2).unwrap(),
        ),
    ];
    for (name, gate) in gates {
        let fused = kernels::add_gated(&x, &y, &gate).unwrap();
        let unfused = (&x + y.broadcast_mul(&gate).unwrap()).unwrap();
        assert_bit_exact(&format!("add_gated {name}"), &fused, &unfused);
    }
}

#[test]
fn shape_errors_name_the_op() {
    let x = random(&[2, 8], 8);
    let e = kernels::bias_gelu(&x, &random(&[4], 9)).unwrap_err();
    assert!(e.to_string().contains("bias_gelu"), "{e}");
    let x3 = random(&[1, 2, 8], 10);
    let e = kernels::add_gated(&x3, &random(&[1, 3, 8], 11), &x3).unwrap_err();
    assert!(e.to_string().contains("add_gated"), "{e}");
}

#[test]
fn cuda_kernels_match_the_reference() {
    let Some(gpu) = gpu("bias_gelu/add_gated") else {
        return;
    };
    let on =
        |t: &Tensor, dtype: DType, dev: &Device| t.to_dtype(dtype).unwrap().to_device(dev).unwrap();
    for dtype in FLOAT_DTYPES {
        for shape in [vec![2, 5, 64], vec![1, 1000, 16384]] {
            let x = (random(&shape, 12) * 3.0).unwrap();
            let bias = random(&shape[shape.len() - 1..], 13);
            let cpu = kernels::bias_gelu(
                &on(&x, dtype, &Device::Cpu),
                &on(&bias, dtype, &Device::Cpu),
            )
            .unwrap();
            let out = kernels::bias_gelu(&on(&x, dtype, &gpu), &on(&bias, dtype, &gpu)).unwrap();
            let what = format!("gpu bias_gelu {shape:?} {dtype:?}");
            assert!(
                relative_error(&what, &out, &cpu) <= gpu_tolerance(dtype),
                "{what}"
            );
        }
        let (b, t, d) = (2, 300, 4096);
        let x = random(&[b, t, d], 14);
        let y = random(&[b, t, d], 15);
        let table = random(&[b, 1, 6, d], 16);
        for gate in [
            random(&[b, t, d], 17),
            table.narrow(2, 5, 1).unwrap().squeeze(2).unwrap(),
        ] {
            let cpu = kernels::add_gated(
                &on(&x, dtype, &Device::Cpu),
                &on(&y, dtype, &Device::Cpu),
                &on(&gate, dtype, &Device::Cpu),
            )
            .unwrap();
            // In F32 the strided gate view reaches the device as a view (to_device keeps layouts).
            let out = kernels::add_gated(
                &on(&x, dtype, &gpu),
                &on(&y, dtype, &gpu),
                &on(&gate, dtype, &gpu),
            )
            .unwrap();
            let what = format!("gpu add_gated {:?} {dtype:?}", gate.dims());
            assert!(
                relative_error(&what, &out, &cpu) <= gpu_tolerance(dtype),
                "{what}"
            );
        }
    }
}
