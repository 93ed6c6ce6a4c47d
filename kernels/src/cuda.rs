//! CUDA side of the custom ops (`cuda` feature): the PTX nvcc built from `cuda/*.cu`, module
//! loading through candle's per-device cache, launch shapes and operand views.

use candle_core::cuda_backend::cudarc::driver::{
    CudaFunction, CudaSlice, CudaView, DeviceRepr, LaunchConfig,
};
use candle_core::cuda_backend::{CudaDevice, kernel_name};
use candle_core::{Layout, Result, WithDType};

/// A PTX module: its name in candle's module cache and its text.
pub struct Module {
    name: &'static str,
    ptx: &'static str,
}

/// Fused RMS norm + AdaLN modulation (`cuda/norm.cu`).
pub const NORM: Module = Module {
    name: "comfyrs_norm",
    ptx: include_str!(concat!(env!("OUT_DIR"), "/norm.ptx")),
};
/// RoPE application (`cuda/rope.cu`).
pub const ROPE: Module = Module {
    name: "comfyrs_rope",
    ptx: include_str!(concat!(env!("OUT_DIR"), "/rope.ptx")),
};
/// Bias + GELU and gated residual (`cuda/elementwise.cu`).
pub const ELEMENTWISE: Module = Module {
    name: "comfyrs_elementwise",
    ptx: include_str!(concat!(env!("OUT_DIR"), "/elementwise.ptx")),
};
/// FP8 dequantisation (`cuda/fp8.cu`).
pub const FP8: Module = Module {
    name: "comfyrs_fp8",
    ptx: include_str!(concat!(env!("OUT_DIR"), "/fp8.ptx")),
};

/// Threads per block of the element-wise kernels.
const BLOCK: u32 = 256;

/// The kernel `<root>_<dtype of T>` of `module` on `dev` (loaded once per device); launch it
/// on `dev.cuda_stream()`.
pub fn function<T: WithDType>(
    dev: &CudaDevice,
    module: &Module,
    root: &str,
) -> Result<CudaFunction> {
    Ok(dev
        .get_or_load_custom_func(&kernel_name::<T>(root), module.name, module.ptx)?
        .into_cuda_function())
}

/// One thread per item for `n` items.
pub fn per_item(n: usize) -> Result<LaunchConfig> {
    let blocks = n.div_ceil(BLOCK as usize).max(1);
    let blocks = u32::try_from(blocks)
        .map_err(|_| candle_core::Error::Msg(format!("kernels: {n} items need too many blocks")))?;
    Ok(LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// One block per row of `cols` values.
pub fn per_row(rows: usize, cols: usize) -> Result<LaunchConfig> {
    let rows = u32::try_from(rows.max(1))
        .map_err(|_| candle_core::Error::Msg(format!("kernels: {rows} rows are too many")))?;
    let threads = cols.next_multiple_of(32).clamp(32, BLOCK as usize) as u32;
    Ok(LaunchConfig {
        grid_dim: (rows, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// The contiguous elements of an input the op requires to be contiguous.
pub fn contiguous<'a, T>(src: &'a CudaSlice<T>, layout: &Layout) -> Result<CudaView<'a, T>> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(src.slice(start..end)),
        None => candle_core::bail!("kernels: input has to be contiguous"),
    }
}

/// A `[batch, tokens, ...]` view whose per-token block is dense: the storage from its first
/// element on, and its (batch, token) strides as the kernels take them.
pub fn rows_view<'a, T: DeviceRepr>(
    src: &'a CudaSlice<T>,
    layout: &Layout,
) -> Result<(CudaView<'a, T>, i64, i64)> {
    let (dims, stride) = (layout.dims(), layout.stride());
    if dims.len() < 3 || !crate::dense_tail(dims, stride) {
        candle_core::bail!("kernels: operand {dims:?} with strides {stride:?} is not row-dense");
    }
    Ok((
        src.slice(layout.start_offset()..),
        stride[0] as i64,
        stride[1] as i64,
    ))
}

/// `value` as the `int` a kernel takes.
pub fn int(value: usize) -> Result<i32> {
    i32::try_from(value)
        .map_err(|_| candle_core::Error::Msg(format!("kernels: {value} does not fit an int")))
}
