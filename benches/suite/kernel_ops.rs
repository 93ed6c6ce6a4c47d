//! Our kernels against the candle op chains they replace, at transformer sizes (F32 on the CPU,
//! where the kernels run their plain-Rust references; BF16 on a GPU, where they run the CUDA
//! kernels). Throughput is bytes of the fused op's inputs and output.

use candle_core::{DType, Device, Tensor};
use criterion::{Criterion, Throughput};

fn randn(shape: &[usize], dtype: DType, device: &Device) -> Tensor {
    Tensor::randn(0f32, 1.0, shape, device)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

/// Registers the kernel benchmarks.
pub fn bench(c: &mut Criterion) {
    for (name, device) in crate::devices() {
        let dtype = if device.is_cuda() {
            DType::BF16
        } else {
            DType::F32
        };
        let (t, d) = match (crate::ci_sized(), device.is_cuda()) {
            (true, _) => (64, 1024),
            (false, false) => (1536, 4096),
            (false, true) => (6144, 4096),
        };
        let elem = dtype.size_in_bytes() as u64;
        let n = (t * d) as u64;
        let mut group = c.benchmark_group(format!("kernels ({name}, {dtype:?}, {t}x{d})"));
        group.sample_size(20);
        let x = randn(&[1, t, d], dtype, &device);
        let table = randn(&[1, 1, 6, d], dtype, &device);
        let row = |i: usize| table.narrow(2, i, 1).unwrap().squeeze(2).unwrap();
        let (shift, scale, gate) = (row(0), row(1), row(2));

        group.throughput(Throughput::Bytes(2 * n * elem));
        group.bench_function("rms_norm_modulate fused", |b| {
            b.iter(|| {
                let y = kernels::rms_norm_modulate(&x, &scale, &shift, 1e-6).unwrap();
                crate::sync(&device);
                y
            })
        });
        let ones = Tensor::ones(d, dtype, &device).unwrap();
        group.bench_function("rms_norm_modulate candle ops", |b| {
            b.iter(|| {
                let norm = candle_nn::ops::rms_norm(&x, &ones, 1e-6).unwrap();
                let y = norm
                    .broadcast_mul(&(&scale + 1.0).unwrap())
                    .unwrap()
                    .broadcast_add(&shift)
                    .unwrap();
                crate::sync(&device);
                y
            })
        });

        let y = randn(&[1, t, d], dtype, &device);
        group.throughput(Throughput::Bytes(3 * n * elem));
        group.bench_function("add_gated fused", |b| {
            b.iter(|| {
                let out = kernels::add_gated(&x, &y, &gate).unwrap();
                crate::sync(&device);
                out
            })
        });
        group.bench_function("add_gated candle ops", |b| {
            b.iter(|| {
                let out = (&x + y.broadcast_mul(&gate).unwrap()).unwrap();
                crate::sync(&device);
                out
            })
        });

        let heads = d / 128;
        let angles = randn(&[1, t, heads, 64], DType::F32, &device);
        let cos = angles.cos().unwrap().to_dtype(dtype).unwrap();
        let sin = angles.sin().unwrap().to_dtype(dtype).unwrap();
        group.throughput(Throughput::Bytes(3 * n * elem));
        group.bench_function("rope_split fused", |b| {
            b.iter(|| {
                let out = kernels::rope_split(&x, &cos, &sin).unwrap();
                crate::sync(&device);
                out
            })
        });
        group.bench_function("rope_split candle ops", |b| {
            b.iter(|| {
                let xs = x.reshape((1, t, heads, 2, 64)).unwrap();
                let x1 = xs.narrow(3, 0, 1).unwrap();
                let x2 = xs.narrow(3, 1, 1).unwrap();
                let c = cos.unsqueeze(3).unwrap();
                let s = sin.unsqueeze(3).unwrap();
                let o1 = (x1.broadcast_mul(&c).unwrap() - x2.broadcast_mul(&s).unwrap()).unwrap();
                let o2 = (x2.broadcast_mul(&c).unwrap() + x1.broadcast_mul(&s).unwrap()).unwrap();
                let out = Tensor::cat(&[o1, o2], 3)
                    .unwrap()
                    .reshape((1, t, d))
                    .unwrap();
                crate::sync(&device);
                out
            })
        });

        let h = randn(&[1, t, 4 * d], dtype, &device);
        let bias = randn(&[4 * d], dtype, &device);
        group.throughput(Throughput::Bytes(2 * 4 * n * elem));
        group.bench_function("bias_gelu fused (4x width)", |b| {
            b.iter(|| {
                let out = kernels::bias_gelu(&h, &bias).unwrap();
                crate::sync(&device);
                out
            })
        });
        group.bench_function("bias_gelu candle ops (4x width)", |b| {
            b.iter(|| {
                let out = h.broadcast_add(&bias).unwrap().gelu().unwrap();
                crate::sync(&device);
                out
            })
        });

        let q = Tensor::randn(0f32, 60.0, (d, 4 * d), &device)
            .unwrap()
            .abs()
            .unwrap()
            .to_dtype(DType::U8)
            .unwrap();
        group.throughput(Throughput::Bytes((4 * d * d) as u64 * (1 + elem)));
        group.bench_function(format!("fp8 dequantize {d}x{} fused", 4 * d), |b| {
            b.iter(|| {
                let w = kernels::dequantize_fp8(
                    &q,
                    kernels::Fp8Format::E4m3,
                    0.01,
                    dtype,
                    kernels::Fp8Rounding::SingleF32,
                )
                .unwrap();
                crate::sync(&device);
                w
            })
        });
        let lut: Vec<f32> = (0..=255u8).map(kernels::reference::e4m3_to_f32).collect();
        let lut = Tensor::from_vec(lut, 256, &device).unwrap();
        group.bench_function(format!("fp8 dequantize {d}x{} candle ops", 4 * d), |b| {
            b.iter(|| {
                let idx = q.flatten_all().unwrap().to_dtype(DType::U32).unwrap();
                let w = (lut.index_select(&idx, 0).unwrap() * 0.01)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap()
                    .reshape(q.shape())
                    .unwrap();
                crate::sync(&device);
                w
            })
        });
        group.finish();
    }
}
