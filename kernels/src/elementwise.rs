//! Fused element-wise steps of the transformer: bias + tanh-GELU (the feed-forward's first
//! projection) and the gated residual `x + y·gate`.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use crate::{cpu, reference};

/// `gelu_tanh(x + bias)` for `x` `[..., N]` and `bias` `[N]`, in `f32` with one rounding.
pub fn bias_gelu(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    crate::check_float("bias_gelu", x, &[bias])?;
    let n = x.dims().last().copied().unwrap_or(1);
    if bias.dims() != [n] {
        candle_core::bail!("bias_gelu: bias {:?} for {n} columns", bias.dims());
    }
    x.contiguous()?
        .apply_op2_no_bwd(&bias.contiguous()?, &BiasGelu)
}

/// `x + y · gate` for `x`, `y` `[B, T, D]` and `gate` broadcast to `[B, T, D]` (per-token or
/// per-item gates, strided views included), in `f32` with one rounding.
pub fn add_gated(x: &Tensor, y: &Tensor, gate: &Tensor) -> Result<Tensor> {
    crate::check_float("add_gated", x, &[y, gate])?;
    if x.dims() != y.dims() {
        candle_core::bail!("add_gated: {:?} + {:?}", x.dims(), y.dims());
    }
    let x = x.contiguous()?;
    let gate = crate::rows_operand(gate, x.dims())?;
    x.apply_op3_no_bwd(&y.contiguous()?, &gate, &AddGated)
}

struct BiasGelu;

impl CustomOp2 for BiasGelu {
    fn name(&self) -> &'static str {
        "bias-gelu"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        bias: &CpuStorage,
        lb: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let xs = cpu::gather_f32(x, lx)?;
        let bias = cpu::gather_f32(bias, lb)?;
        let cols = bias.len().max(1);
        let out = xs
            .iter()
            .enumerate()
            .map(|(i, &v)| reference::bias_gelu(v, bias[i % cols]))
            .collect();
        Ok((cpu::store(out, x.dtype())?, lx.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        lx: &Layout,
        bias: &candle_core::CudaStorage,
        lb: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::WithDType;
        use candle_core::cuda_backend::cudarc::driver::{
            CudaSlice, DeviceRepr, PushKernelArg, ValidAsZeroBits,
        };
        use candle_core::cuda_backend::{CudaDevice, Map2, WrapErr};

        use crate::cuda;

        struct Launch;
        impl Map2 for Launch {
            fn f<T: DeviceRepr + WithDType + ValidAsZeroBits>(
                &self,
                x: &CudaSlice<T>,
                lx: &Layout,
                bias: &CudaSlice<T>,
                lb: &Layout,
                dev: &CudaDevice,
            ) -> Result<CudaSlice<T>> {
                let n = lx.shape().elem_count();
                let x = cuda::contiguous(x, lx)?;
                let bias = cuda::contiguous(bias, lb)?;
                let cols = cuda::int(lb.shape().elem_count().max(1))?;
                let count = n as i64;
                let func = cuda::function::<T>(dev, &cuda::ELEMENTWISE, "bias_gelu")?;
                // SAFETY: every element is written by the kernel below.
                let mut y = unsafe { dev.alloc::<T>(n)? };
                let stream = dev.cuda_stream();
                let mut launch = stream.launch_builder(&func);
                launch.arg(&x).arg(&bias).arg(&mut y).arg(&count).arg(&cols);
                // SAFETY: argument list matches `bias_gelu_<dtype>` in cuda/elementwise.cu.
                unsafe { launch.launch(cuda::per_item(n)?) }.w()?;
                drop(launch);
                Ok(y)
            }
        }

        let dev = x.device();
        let slice = Launch.map(&x.slice, lx, &bias.slice, lb, dev)?;
        let out = candle_core::CudaStorage {
            slice,
            device: dev.clone(),
        };
        Ok((out, lx.shape().clone()))
    }
}

struct AddGated;

impl CustomOp3 for AddGated {
    fn name(&self) -> &'static str {
        "add-gated"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        y: &CpuStorage,
        ly: &Layout,
        gate: &CpuStorage,
        lg: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let xs = cpu::gather_f32(x, lx)?;
        let ys = cpu::gather_f32(y, ly)?;
        let gate = cpu::gather_f32(gate, lg)?;
        let out = xs
            .iter()
            .zip(&ys)
            .zip(&gate)
            .map(|((&a, &b), &g)| reference::add_gated(a, b, g))
            .collect();
        Ok((cpu::store(out, x.dtype())?, lx.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        lx: &Layout,
        y: &candle_core::CudaStorage,
        ly: &Layout,
        gate: &candle_core::CudaStorage,
        lg: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::WithDType;
        use candle_core::cuda_backend::cudarc::driver::{
            CudaSlice, DeviceRepr, PushKernelArg, ValidAsZeroBits,
        };
        use candle_core::cuda_backend::{CudaDevice, Map3, WrapErr};

        use crate::cuda;

        struct Launch;
        impl Map3 for Launch {
            fn f<T: DeviceRepr + WithDType + ValidAsZeroBits>(
                &self,
                x: &CudaSlice<T>,
                lx: &Layout,
                y: &CudaSlice<T>,
                ly: &Layout,
                gate: &CudaSlice<T>,
                lg: &Layout,
                dev: &CudaDevice,
            ) -> Result<CudaSlice<T>> {
                let (_, t, d) = lx.shape().dims3()?;
                let n = lx.shape().elem_count();
                let x = cuda::contiguous(x, lx)?;
                let y = cuda::contiguous(y, ly)?;
                let (gate, gate_sb, gate_st) = cuda::rows_view(gate, lg)?;
                let (count, cols, tokens) = (n as i64, cuda::int(d.max(1))?, cuda::int(t.max(1))?);
                let func = cuda::function::<T>(dev, &cuda::ELEMENTWISE, "add_gated")?;
                // SAFETY: every element is written by the kernel below.
                let mut out = unsafe { dev.alloc::<T>(n)? };
                let stream = dev.cuda_stream();
                let mut launch = stream.launch_builder(&func);
                launch.arg(&x).arg(&y).arg(&gate).arg(&mut out);
                launch
                    .arg(&count)
                    .arg(&cols)
                    .arg(&tokens)
                    .arg(&gate_sb)
                    .arg(&gate_st);
                // SAFETY: argument list matches `add_gated_<dtype>` in cuda/elementwise.cu.
                unsafe { launch.launch(cuda::per_item(n)?) }.w()?;
                drop(launch);
                Ok(out)
            }
        }

        let dev = x.device();
        let slice = Launch.map(&x.slice, lx, &y.slice, ly, &gate.slice, lg, dev)?;
        let out = candle_core::CudaStorage {
            slice,
            device: dev.clone(),
        };
        Ok((out, lx.shape().clone()))
    }
}
