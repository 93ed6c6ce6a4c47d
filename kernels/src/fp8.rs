//! Per-tensor scaled FP8 weight dequantisation: `W = decode(q) · scale`, from the stored bytes
//! straight to the working dtype (candle ops need a 256-entry table, a `U32` index tensor four
//! times the payload's size, a gather, a multiply and a cast).

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use half::{bf16, f16};

use crate::{cpu, reference};

/// The element encoding of the payload bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fp8Format {
    /// OCP E4M3 (`float8_e4m3fn`).
    E4m3,
    /// OCP E5M2 (`float8_e5m2`).
    E5m2,
}

/// Where the result is rounded (the two ways ComfyUI computes it for narrow dtypes; identical
/// for an F32 target).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fp8Rounding {
    /// `(q · scale)` in F32, one rounding to the target dtype (comfy-kitchen's CUDA kernels,
    /// ltx-core).
    #[default]
    SingleF32,
    /// `q.to(T) · scale.to(T)`: the scale is rounded to the target dtype first (ComfyUI's eager
    /// PyTorch backend). FP8 values are exact in BF16/F16 and the product of the two is exact in
    /// F32, so this is the same computation with a pre-rounded scale.
    ComfyEager,
}

/// Dequantises the FP8 bytes `q` (a `U8` tensor of any shape) with the per-tensor `scale` into
/// `dtype` (F32, BF16 or F16), bit for bit as `models::weights::QuantizedWeight::dequantize`.
pub fn dequantize_fp8(
    q: &Tensor,
    format: Fp8Format,
    scale: f32,
    dtype: DType,
    rounding: Fp8Rounding,
) -> Result<Tensor> {
    if q.dtype() != DType::U8 {
        candle_core::bail!("dequantize_fp8: payload must be U8, found {:?}", q.dtype());
    }
    let scale = match rounding {
        Fp8Rounding::SingleF32 => scale,
        Fp8Rounding::ComfyEager => round_to(scale, dtype)?,
    };
    q.contiguous()?.apply_op1_no_bwd(&Dequantize {
        format,
        scale,
        dtype,
    })
}

/// `value` rounded to `dtype` and read back as F32.
fn round_to(value: f32, dtype: DType) -> Result<f32> {
    Ok(match dtype {
        DType::F32 => value,
        DType::BF16 => bf16::from_f32(value).to_f32(),
        DType::F16 => f16::from_f32(value).to_f32(),
        other => candle_core::bail!("dequantize_fp8: unsupported target dtype {other:?}"),
    })
}

struct Dequantize {
    format: Fp8Format,
    scale: f32,
    dtype: DType,
}

impl Dequantize {
    fn decode(&self, byte: u8) -> f32 {
        match self.format {
            Fp8Format::E4m3 => reference::e4m3_to_f32(byte),
            Fp8Format::E5m2 => reference::e5m2_to_f32(byte),
        }
    }
}

impl CustomOp1 for Dequantize {
    fn name(&self) -> &'static str {
        "dequantize-fp8"
    }

    fn cpu_fwd(&self, q: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let table: Vec<f32> = (0..=255u8).map(|b| self.decode(b) * self.scale).collect();
        let values = cpu::gather_u8(q, layout)?
            .into_iter()
            .map(|b| table[usize::from(b)])
            .collect();
        Ok((cpu::store(values, self.dtype)?, layout.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        q: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::cuda_backend::cudarc::driver::{DeviceRepr, PushKernelArg};
        use candle_core::cuda_backend::{CudaDevice, CudaStorageSlice, WrapErr};
        use candle_core::{CudaStorage, WithDType};

        use crate::cuda;

        fn launch<T: DeviceRepr + WithDType>(
            op: &Dequantize,
            q: &candle_core::cuda_backend::cudarc::driver::CudaSlice<u8>,
            layout: &Layout,
            dev: &CudaDevice,
        ) -> Result<candle_core::cuda_backend::cudarc::driver::CudaSlice<T>> {
            let n = layout.shape().elem_count();
            let q = cuda::contiguous(q, layout)?;
            let func = cuda::function::<T>(dev, &cuda::FP8, "fp8_dequantize")?;
            let format: i32 = match op.format {
                Fp8Format::E4m3 => 0,
                Fp8Format::E5m2 => 1,
            };
            let count = n as i64;
            // SAFETY: every element is written by the kernel below.
            let mut out = unsafe { dev.alloc::<T>(n)? };
            let stream = dev.cuda_stream();
            let mut builder = stream.launch_builder(&func);
            builder
                .arg(&q)
                .arg(&mut out)
                .arg(&count)
                .arg(&op.scale)
                .arg(&format);
            // A grid-stride loop: enough blocks to fill the GPU, not one per element.
            let config = cuda::per_item(n.min(1 << 24))?;
            // SAFETY: argument list matches `fp8_dequantize_<dtype>` in cuda/fp8.cu.
            unsafe { builder.launch(config) }.w()?;
            drop(builder);
            Ok(out)
        }

        let dev = q.device.clone();
        let CudaStorageSlice::U8(bytes) = &q.slice else {
            candle_core::bail!("dequantize_fp8: payload must be U8");
        };
        let slice = match self.dtype {
            DType::F32 => CudaStorageSlice::F32(launch::<f32>(self, bytes, layout, &dev)?),
            DType::BF16 => CudaStorageSlice::BF16(launch::<bf16>(self, bytes, layout, &dev)?),
            DType::F16 => CudaStorageSlice::F16(launch::<f16>(self, bytes, layout, &dev)?),
            other => candle_core::bail!("dequantize_fp8: unsupported target dtype {other:?}"),
        };
        Ok((CudaStorage { slice, device: dev }, layout.shape().clone()))
    }
}
