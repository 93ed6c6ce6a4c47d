//! CPU side of the custom ops: reading candle's CPU storage through a layout into logical `f32`
//! values and writing results back in the input's dtype (one rounding).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Layout, Result, Shape};
use half::{bf16, f16};

/// The elements of `storage` seen through `layout`, in row-major logical order, as `f32`.
pub fn gather_f32(storage: &CpuStorage, layout: &Layout) -> Result<Vec<f32>> {
    let offsets = logical_offsets(layout);
    Ok(match storage {
        CpuStorage::F32(v) => offsets.map(|o| v[o]).collect(),
        CpuStorage::BF16(v) => offsets.map(|o| v[o].to_f32()).collect(),
        CpuStorage::F16(v) => offsets.map(|o| v[o].to_f32()).collect(),
        other => candle_core::bail!("kernels: unsupported dtype {:?}", other.dtype()),
    })
}

/// The bytes of a `U8` storage seen through `layout`, in row-major logical order.
pub fn gather_u8(storage: &CpuStorage, layout: &Layout) -> Result<Vec<u8>> {
    match storage {
        CpuStorage::U8(v) => Ok(logical_offsets(layout).map(|o| v[o]).collect()),
        other => candle_core::bail!("kernels: expected U8 bytes, found {:?}", other.dtype()),
    }
}

/// `values` rounded once to `dtype` (F32, BF16 or F16).
pub fn store(values: Vec<f32>, dtype: DType) -> Result<CpuStorage> {
    Ok(match dtype {
        DType::F32 => CpuStorage::F32(values),
        DType::BF16 => CpuStorage::BF16(values.into_iter().map(bf16::from_f32).collect()),
        DType::F16 => CpuStorage::F16(values.into_iter().map(f16::from_f32).collect()),
        other => candle_core::bail!("kernels: unsupported dtype {other:?}"),
    })
}

/// The storage offsets of every element of `layout` in row-major logical order (strides of 0
/// repeat elements, as broadcasting does).
fn logical_offsets(layout: &Layout) -> impl Iterator<Item = usize> + '_ {
    let dims = layout.dims();
    let stride = layout.stride();
    let count = Shape::from(dims).elem_count();
    let mut index = vec![0usize; dims.len()];
    let mut offset = layout.start_offset();
    (0..count).map(move |_| {
        let current = offset;
        for d in (0..dims.len()).rev() {
            index[d] += 1;
            offset += stride[d];
            if index[d] < dims[d] {
                break;
            }
            offset -= stride[d] * dims[d];
            index[d] = 0;
        }
        current
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn gathers_transposed_and_broadcast_views_in_logical_order() {
        let t = Tensor::arange(0f32, 6.0, &Device::Cpu)
            .unwrap()
            .reshape((2, 3))
            .unwrap();
        let tt = t.t().unwrap();
        let (storage, layout) = tt.storage_and_layout();
        let candle_core::Storage::Cpu(cpu) = &*storage else {
            panic!("cpu tensor")
        };
        assert_eq!(
            gather_f32(cpu, layout).unwrap(),
            [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
        );
        let b = t.narrow(0, 1, 1).unwrap().broadcast_as((2, 3)).unwrap();
        let (storage, layout) = b.storage_and_layout();
        let candle_core::Storage::Cpu(cpu) = &*storage else {
            panic!("cpu tensor")
        };
        assert_eq!(
            gather_f32(cpu, layout).unwrap(),
            [3.0, 4.0, 5.0, 3.0, 4.0, 5.0]
        );
    }
}
