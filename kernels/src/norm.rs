//! Fused RMS norm + AdaLN modulation: `y = rms_norm(x) · (1 + scale) + shift`, the first step
//! of every modulated sub-layer of the LTX-2 blocks (candle: rms_norm, affine, two broadcast
//! ops; here one pass).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use crate::{cpu, reference, rows_operand};

/// `x / sqrt(mean(x²) + eps) · (1 + scale) + shift` over the last dimension of `x`
/// `[B, T, D]`; `scale` and `shift` broadcast to `[B, T, D]` (per-token `[B, T, D]`, per-item
/// `[B, 1, D]`, ...; strided views such as slices of a modulation table need no copy).
/// Computed in `f32` with one rounding to `x`'s dtype (F32, BF16 or F16).
pub fn rms_norm_modulate(x: &Tensor, scale: &Tensor, shift: &Tensor, eps: f64) -> Result<Tensor> {
    crate::check_float("rms_norm_modulate", x, &[scale, shift])?;
    let x = x.contiguous()?;
    let scale = rows_operand(scale, x.dims())?;
    let shift = rows_operand(shift, x.dims())?;
    x.apply_op3_no_bwd(&scale, &shift, &RmsNormModulate { eps: eps as f32 })
}

struct RmsNormModulate {
    eps: f32,
}

impl CustomOp3 for RmsNormModulate {
    fn name(&self) -> &'static str {
        "rms-norm-modulate"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        scale: &CpuStorage,
        ls: &Layout,
        shift: &CpuStorage,
        lh: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let cols = lx.dims().last().copied().unwrap_or(1).max(1);
        let xs = cpu::gather_f32(x, lx)?;
        let scale = cpu::gather_f32(scale, ls)?;
        let shift = cpu::gather_f32(shift, lh)?;
        let mut out = vec![0f32; xs.len()];
        for (r, o) in out.chunks_mut(cols).enumerate() {
            let row = r * cols..(r + 1) * cols;
            reference::rms_norm_modulate(
                &xs[row.clone()],
                &scale[row.clone()],
                &shift[row],
                self.eps,
                o,
            );
        }
        Ok((cpu::store(out, x.dtype())?, lx.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        lx: &Layout,
        scale: &candle_core::CudaStorage,
        ls: &Layout,
        shift: &candle_core::CudaStorage,
        lh: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::WithDType;
        use candle_core::cuda_backend::cudarc::driver::{
            CudaSlice, DeviceRepr, PushKernelArg, ValidAsZeroBits,
        };
        use candle_core::cuda_backend::{CudaDevice, Map3, WrapErr};

        use crate::cuda;

        struct Launch(f32);
        impl Map3 for Launch {
            fn f<T: DeviceRepr + WithDType + ValidAsZeroBits>(
                &self,
                x: &CudaSlice<T>,
                lx: &Layout,
                scale: &CudaSlice<T>,
                ls: &Layout,
                shift: &CudaSlice<T>,
                lh: &Layout,
                dev: &CudaDevice,
            ) -> Result<CudaSlice<T>> {
                let (b, t, d) = lx.shape().dims3()?;
                let x = cuda::contiguous(x, lx)?;
                let (scale, scale_sb, scale_st) = cuda::rows_view(scale, ls)?;
                let (shift, shift_sb, shift_st) = cuda::rows_view(shift, lh)?;
                let func = cuda::function::<T>(dev, &cuda::NORM, "rms_norm_modulate")?;
                // SAFETY: every element is written by the kernel below.
                let mut y = unsafe { dev.alloc::<T>(b * t * d)? };
                let (cols, tokens) = (cuda::int(d)?, cuda::int(t.max(1))?);
                let stream = dev.cuda_stream();
                let mut launch = stream.launch_builder(&func);
                launch.arg(&x).arg(&scale).arg(&shift).arg(&mut y);
                launch.arg(&cols).arg(&tokens);
                launch
                    .arg(&scale_sb)
                    .arg(&scale_st)
                    .arg(&shift_sb)
                    .arg(&shift_st);
                launch.arg(&self.0);
                // SAFETY: argument list matches `rms_norm_modulate_<dtype>` in cuda/norm.cu.
                unsafe { launch.launch(cuda::per_row(b * t, d)?) }.w()?;
                drop(launch);
                Ok(y)
            }
        }

        let dev = x.device();
        let slice = Launch(self.eps).map(&x.slice, lx, &scale.slice, ls, &shift.slice, lh, dev)?;
        let out = candle_core::CudaStorage {
            slice,
            device: dev.clone(),
        };
        Ok((out, lx.shape().clone()))
    }
}
