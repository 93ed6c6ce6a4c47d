//! comfyrs' CUDA kernels for what candle does slowly in LTX-2, each with a CPU reference.
//!
//! Every op is a candle custom op: on a CUDA device it launches our kernel (nvcc-built PTX from
//! `cuda/*.cu`, loaded once per device through candle's cudarc; `cuda` feature), on the CPU it
//! runs the plain-Rust reference of [`reference`], which is also the oracle of the parity tests.
//!
//! * [`rms_norm_modulate`]: RMS norm + AdaLN modulation in one pass.
//! * [`rope_split`] / [`rope_interleaved`]: rotary embedding application.
//! * [`bias_gelu`]: bias add + tanh-GELU; [`add_gated`]: gated residual `x + y·gate`.
//! * [`dequantize_fp8`]: per-tensor scaled FP8 (E4M3/E5M2) weights to F32/BF16/F16.
//!
//! Kernels compute in `f32` and round once to the output dtype; the model's candle op chains
//! round after every op in half precision, so in BF16 the fused result is the more accurate one
//! and in F32 both agree to rounding. [`fused_on`] tells the model when to use them.

mod cpu;
#[cfg(feature = "cuda")]
mod cuda;
mod elementwise;
mod fp8;
mod norm;
pub mod reference;
mod rope;

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Device, Result, Tensor};

pub use elementwise::{add_gated, bias_gelu};
pub use fp8::{Fp8Format, Fp8Rounding, dequantize_fp8};
pub use norm::rms_norm_modulate;
pub use rope::{rope_interleaved, rope_split};

static FUSED_ON_CPU: AtomicBool = AtomicBool::new(false);

/// Whether the model should run its fused steps through these kernels on `device`: always on
/// CUDA; on the CPU only after [`set_fused_on_cpu`]`(true)` (the CPU references are exact but
/// slower than candle's vectorised ops, so the CPU path keeps candle's ops by default).
pub fn fused_on(device: &Device) -> bool {
    device.is_cuda() || FUSED_ON_CPU.load(Ordering::Relaxed)
}

/// Routes the model's fused steps through the CPU references too (process-wide), so the wiring
/// of the GPU path can be checked against reference outputs on a machine without a GPU.
pub fn set_fused_on_cpu(on: bool) {
    FUSED_ON_CPU.store(on, Ordering::Relaxed);
}

/// Whether this build carries the CUDA kernels.
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

/// Errors unless `x` is F32/BF16/F16 and every tensor of `others` has its dtype and device.
fn check_float(op: &str, x: &Tensor, others: &[&Tensor]) -> Result<()> {
    if !matches!(x.dtype(), DType::F32 | DType::BF16 | DType::F16) {
        candle_core::bail!("{op}: unsupported dtype {:?}", x.dtype());
    }
    for other in others {
        if other.dtype() != x.dtype() {
            candle_core::bail!("{op}: dtype {:?} != {:?}", other.dtype(), x.dtype());
        }
        if !other.device().same_device(x.device()) {
            candle_core::bail!("{op}: operands on different devices");
        }
    }
    Ok(())
}

/// `t` broadcast to `dims` (`[B, T, ...]`) as a view whose dimensions after the first two are
/// densely laid out (copied only when they are not), so kernels address it by a batch stride,
/// a token stride (0 where broadcast) and a dense per-token block.
fn rows_operand(t: &Tensor, dims: &[usize]) -> Result<Tensor> {
    if dims.len() < 3 {
        candle_core::bail!("kernels: expected a [B, T, ...] operand, found {dims:?}");
    }
    let view = t.broadcast_as(dims)?;
    if dense_tail(view.dims(), view.stride()) {
        Ok(view)
    } else {
        view.contiguous()
    }
}

/// Whether the dimensions after the first two are laid out densely (row-major, no gaps).
fn dense_tail(dims: &[usize], stride: &[usize]) -> bool {
    let mut expected = 1;
    for k in (2..dims.len()).rev() {
        if dims[k] > 1 && stride[k] != expected {
            return false;
        }
        expected *= dims[k];
    }
    true
}
