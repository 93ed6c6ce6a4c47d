//! Rotary position embedding application in one pass (candle: reshape, two narrows, four
//! broadcast multiplies, two adds and a concatenation).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use crate::{cpu, reference};

/// Split RoPE (ltx-core's `apply_split_rotary_emb`): `x` `[B, T, H·2·half]`, each head's
/// channel `j` paired with `j + half`; `cos`/`sin` `[B or 1, T, H, half]`.
pub fn rope_split(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    crate::check_float("rope_split", x, &[cos, sin])?;
    let (b, t, dim) = x.dims3()?;
    let (_, _, heads, half) = cos.dims4()?;
    if heads * 2 * half != dim {
        candle_core::bail!("rope_split: {heads} heads x 2 x {half} do not make {dim} channels");
    }
    let dims = [b, t, heads, half];
    let (cos, sin) = (
        crate::rows_operand(cos, &dims)?,
        crate::rows_operand(sin, &dims)?,
    );
    let op = Rope {
        kind: Kind::Split { heads, half },
    };
    x.contiguous()?.apply_op3_no_bwd(&cos, &sin, &op)
}

/// Interleaved RoPE (ltx-core's `apply_interleaved_rotary_emb`): channels `(2k, 2k+1)` of `x`
/// `[B, T, dim]` rotate together; `cos`/`sin` `[B or 1, T, dim]`.
pub fn rope_interleaved(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    crate::check_float("rope_interleaved", x, &[cos, sin])?;
    let x = x.contiguous()?;
    let cos = crate::rows_operand(cos, x.dims())?;
    let sin = crate::rows_operand(sin, x.dims())?;
    x.apply_op3_no_bwd(
        &cos,
        &sin,
        &Rope {
            kind: Kind::Interleaved,
        },
    )
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Split { heads: usize, half: usize },
    Interleaved,
}

struct Rope {
    kind: Kind,
}

impl CustomOp3 for Rope {
    fn name(&self) -> &'static str {
        "rope"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        cos: &CpuStorage,
        lc: &Layout,
        sin: &CpuStorage,
        ls: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let xs = cpu::gather_f32(x, lx)?;
        let cos = cpu::gather_f32(cos, lc)?;
        let sin = cpu::gather_f32(sin, ls)?;
        let dim = lx.dims().last().copied().unwrap_or(1).max(1);
        let mut out = vec![0f32; xs.len()];
        match self.kind {
            Kind::Split { heads, half } => {
                let per_token = heads * half;
                for (token, o) in out.chunks_mut(dim).enumerate() {
                    for h in 0..heads {
                        let xo = token * dim + h * 2 * half;
                        let f = token * per_token + h * half;
                        reference::rope_split_head(
                            &xs[xo..xo + 2 * half],
                            &cos[f..f + half],
                            &sin[f..f + half],
                            &mut o[h * 2 * half..(h + 1) * 2 * half],
                        );
                    }
                }
            }
            Kind::Interleaved => {
                for (token, o) in out.chunks_mut(dim).enumerate() {
                    let r = token * dim..(token + 1) * dim;
                    reference::rope_interleaved_token(&xs[r.clone()], &cos[r.clone()], &sin[r], o);
                }
            }
        }
        Ok((cpu::store(out, x.dtype())?, lx.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        lx: &Layout,
        cos: &candle_core::CudaStorage,
        lc: &Layout,
        sin: &candle_core::CudaStorage,
        ls: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::WithDType;
        use candle_core::cuda_backend::cudarc::driver::{
            CudaSlice, DeviceRepr, PushKernelArg, ValidAsZeroBits,
        };
        use candle_core::cuda_backend::{CudaDevice, Map3, WrapErr};

        use crate::cuda;

        struct Launch(Kind);
        impl Map3 for Launch {
            fn f<T: DeviceRepr + WithDType + ValidAsZeroBits>(
                &self,
                x: &CudaSlice<T>,
                lx: &Layout,
                cos: &CudaSlice<T>,
                lc: &Layout,
                sin: &CudaSlice<T>,
                ls: &Layout,
                dev: &CudaDevice,
            ) -> Result<CudaSlice<T>> {
                let (b, t, dim) = lx.shape().dims3()?;
                let x = cuda::contiguous(x, lx)?;
                let (cos, cos_sb, cos_st) = cuda::rows_view(cos, lc)?;
                let (sin, sin_sb, sin_st) = cuda::rows_view(sin, ls)?;
                let pairs = (b * t * dim / 2) as i64;
                let tokens = cuda::int(t.max(1))?;
                // SAFETY: every element is written by the kernel below (dim is even).
                let mut y = unsafe { dev.alloc::<T>(b * t * dim)? };
                let stream = dev.cuda_stream();
                let (func, heads, width) = match self.0 {
                    Kind::Split { heads, half } => (
                        cuda::function::<T>(dev, &cuda::ROPE, "rope_split")?,
                        cuda::int(heads)?,
                        cuda::int(half)?,
                    ),
                    Kind::Interleaved => (
                        cuda::function::<T>(dev, &cuda::ROPE, "rope_interleaved")?,
                        0,
                        cuda::int(dim)?,
                    ),
                };
                let mut launch = stream.launch_builder(&func);
                launch.arg(&x).arg(&cos).arg(&sin).arg(&mut y);
                launch.arg(&pairs).arg(&tokens);
                if let Kind::Split { .. } = self.0 {
                    launch.arg(&heads);
                }
                launch.arg(&width);
                launch.arg(&cos_sb).arg(&cos_st).arg(&sin_sb).arg(&sin_st);
                // SAFETY: argument lists match `rope_split_<dtype>` / `rope_interleaved_<dtype>`
                // in cuda/rope.cu.
                unsafe { launch.launch(cuda::per_item(b * t * dim / 2)?) }.w()?;
                drop(launch);
                Ok(y)
            }
        }

        let dev = x.device();
        let slice = Launch(self.kind).map(&x.slice, lx, &cos.slice, lc, &sin.slice, ls, dev)?;
        let out = candle_core::CudaStorage {
            slice,
            device: dev.clone(),
        };
        Ok((out, lx.shape().clone()))
    }
}
