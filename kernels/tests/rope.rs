//! RoPE application: CPU reference vs candle's op chain (the transformer's `Rope::apply`,
//! bit-exact in F32), and the CUDA kernel vs the CPU reference when a GPU is present.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{FLOAT_DTYPES, assert_bit_exact, gpu, gpu_tolerance, random, relative_error};

/// Split RoPE as candle ops: `[B, T, H, 2, half]` halves rotated by `[B, T, H, half]` tables.
fn split_ops(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
    let (b, t, dim) = x.dims3().unwrap();
    let (_, _, heads, half) = cos.dims4().unwrap();
    let xs = x.reshape((b, t, heads, 2, half)).unwrap();
    let x1 = xs.narrow(3, 0, 1).unwrap();
    let x2 = xs.narrow(3, 1, 1).unwrap();
    let c = cos.unsqueeze(3).unwrap();
    let s = sin.unsqueeze(3).unwrap();
    let o1 = (x1.broadcast_mul(&c).unwrap() - x2.broadcast_mul(&s).unwrap()).unwrap();
    let o2 = (x2.broadcast_mul(&c).unwrap() + x1.broadcast_mul(&s).unwrap()).unwrap();
    Tensor::cat(&[o1, o2], 3)
        .unwrap()
        .reshape((b, t, dim))
        .unwrap()
}

/// Interleaved RoPE as candle ops: `x·cos + [−x₂, x₁]·sin` per channel pair.
fn interleaved_ops(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
    let (b, t, dim) = x.dims3().unwrap();
    let xs = x.reshape((b, t, dim / 2, 2)).unwrap();
    let x1 = xs.narrow(3, 0, 1).unwrap();
    let x2 = xs.narrow(3, 1, 1).unwrap();
    let rotated = Tensor::cat(&[x2.neg().unwrap(), x1], 3)
        .unwrap()
        .reshape((b, t, dim))
        .unwrap();
    (x.broadcast_mul(cos).unwrap() + rotated.broadcast_mul(sin).unwrap()).unwrap()
}

/// Angle tables: cos/sin of random angles, `[tb, t, rest...]`.
fn tables(shape: &[usize], seed: u64) -> (Tensor, Tensor) {
    let angles = (random(shape, seed) * 3.0).unwrap();
    (angles.cos().unwrap(), angles.sin().unwrap())
}

/// Interleaved tables repeat each angle for both channels of a pair.
fn interleaved_tables(b: usize, t: usize, dim: usize, seed: u64) -> (Tensor, Tensor) {
    let (c, s) = tables(&[b, t, dim / 2, 1], seed);
    let pairs = |x: Tensor| {
        x.broadcast_as((b, t, dim / 2, 2))
            .unwrap()
            .reshape((b, t, dim))
            .unwrap()
    };
    (pairs(c), pairs(s))
}

#[test]
fn split_reference_is_bit_exact_to_candle_ops_in_f32() {
    for (b, tb, t, heads, half) in [(2, 2, 5, 2, 8), (2, 1, 7, 32, 64), (1, 1, 3, 4, 16)] {
        let x = random(&[b, t, heads * 2 * half], 1);
        let (cos, sin) = tables(&[tb, t, heads, half], 2);
        let fused = kernels::rope_split(&x, &cos, &sin).unwrap();
        assert_bit_exact(
            &format!("split b{b} tb{tb} t{t} h{heads} half{half}"),
            &fused,
            &split_ops(&x, &cos, &sin),
        );
    }
}

#[test]
fn interleaved_reference_is_bit_exact_to_candle_ops_in_f32() {
    for (b, tb, t, dim) in [(2, 2, 5, 16), (2, 1, 9, 128)] {
        let x = random(&[b, t, dim], 3);
        let (cos, sin) = interleaved_tables(tb, t, dim, 4);
        let fused = kernels::rope_interleaved(&x, &cos, &sin).unwrap();
        assert_bit_exact(
            &format!("interleaved b{b} tb{tb} t{t} dim{dim}"),
            &fused,
            &interleaved_ops(&x, &cos, &sin),
        );
    }
}

#[test]
fn rope_rejects_tables_that_do_not_fit() {
    let x = random(&[1, 2, 16], 5);
    let (cos, sin) = tables(&[1, 2, 2, 3], 6);
    assert!(kernels::rope_split(&x, &cos, &sin).is_err());
}

#[test]
fn cuda_kernels_match_the_reference() {
    let Some(gpu) = gpu("rope") else {
        return;
    };
    let on =
        |t: &Tensor, dtype: DType, dev: &Device| t.to_dtype(dtype).unwrap().to_device(dev).unwrap();
    for dtype in FLOAT_DTYPES {
        for (b, tb, t, heads, half) in [(2, 2, 5, 2, 8), (2, 1, 300, 32, 64), (1, 1, 3, 32, 32)] {
            let x = random(&[b, t, heads * 2 * half], 7);
            let (cos, sin) = tables(&[tb, t, heads, half], 8);
            let cpu = kernels::rope_split(
                &on(&x, dtype, &Device::Cpu),
                &on(&cos, dtype, &Device::Cpu),
                &on(&sin, dtype, &Device::Cpu),
            )
            .unwrap();
            let out = kernels::rope_split(
                &on(&x, dtype, &gpu),
                &on(&cos, dtype, &gpu),
                &on(&sin, dtype, &gpu),
            )
            .unwrap();
            let what = format!("gpu split b{b} tb{tb} t{t} h{heads} half{half} {dtype:?}");
            assert!(
                relative_error(&what, &out, &cpu) <= gpu_tolerance(dtype),
                "{what}"
            );
        }
        for (b, tb, t, dim) in [(2, 2, 5, 16), (2, 1, 257, 4096)] {
            let x = random(&[b, t, dim], 9);
            let (cos, sin) = interleaved_tables(tb, t, dim, 10);
            let cpu = kernels::rope_interleaved(
                &on(&x, dtype, &Device::Cpu),
                &on(&cos, dtype, &Device::Cpu),
                &on(&sin, dtype, &Device::Cpu),
            )
            .unwrap();
            let out = kernels::rope_interleaved(
                &on(&x, dtype, &gpu),
                &on(&cos, dtype, &gpu),
                &on(&sin, dtype, &gpu),
            )
            .unwrap();
            let what = format!("gpu interleaved b{b} tb{tb} t{t} dim{dim} {dtype:?}");
            assert!(
                relative_error(&what, &out, &cpu) <= gpu_tolerance(dtype),
                "{what}"
            );
        }
    }
}
