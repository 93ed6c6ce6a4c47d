//! A quantised weight as stored (payload bytes + scales) and its exact dequantisation.
//!
//! The payload stays in its stored bytes (a `U8` tensor on the target device), so a layer may
//! keep the compact form and dequantise just before its GEMM. Dequantisation is built from
//! candle ops (table lookups by `index_select`, broadcast multiplies, one cast), so it runs on
//! any device and reproduces ComfyUI's arithmetic bit for bit; [`Rounding`] picks which of
//! ComfyUI's two backends it reproduces. Formulas: `checkpoint-formats.md` §8.

use candle_core::{DType, Device, Shape, Tensor};
use safetensors::Dtype;

use super::container::{RawTensor, SafetensorsFile};
use super::elements::{
    byte_table, e4m3_to_f32, e5m2_to_f32, e8m0_to_f32, high_nibble_table, low_nibble_table,
};
use super::layout::{roundup, tiled_scale_shape, untile_scales};
use super::markers::LayerSpec;
use crate::{Error, Result};

/// NVFP4 elements per block scale.
const NVFP4_BLOCK: usize = 16;
/// MXFP8 elements per block scale.
const MXFP8_BLOCK: usize = 32;

/// A quantisation format ComfyUI's `QUANT_ALGOS` defines and this loader reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantFormat {
    /// Per-tensor scaled FP8 E4M3 (`float8_e4m3fn`): `W = q · weight_scale`.
    Fp8E4m3,
    /// Per-tensor scaled FP8 E5M2 (`float8_e5m2`): `W = q · weight_scale`.
    Fp8E5m2,
    /// NVIDIA FP4: E2M1 pairs, E4M3 scales per 16 elements, an F32 global scale.
    Nvfp4,
    /// OCP MXFP8: FP8 elements, E8M0 scales per 32 elements.
    Mxfp8,
}

impl QuantFormat {
    /// The format named by a ComfyUI layer config (`{"format": ...}`).
    pub fn from_comfy_name(name: &str) -> Option<Self> {
        match name {
            "float8_e4m3fn" => Some(Self::Fp8E4m3),
            "float8_e5m2" => Some(Self::Fp8E5m2),
            "nvfp4" => Some(Self::Nvfp4),
            "mxfp8" => Some(Self::Mxfp8),
            _ => None,
        }
    }

    /// ComfyUI's name of the format.
    pub fn comfy_name(self) -> &'static str {
        match self {
            Self::Fp8E4m3 => "float8_e4m3fn",
            Self::Fp8E5m2 => "float8_e5m2",
            Self::Nvfp4 => "nvfp4",
            Self::Mxfp8 => "mxfp8",
        }
    }

    /// The per-tensor FP8 format whose weights are stored as `dtype`.
    pub(crate) fn per_tensor_for(dtype: Dtype) -> Option<Self> {
        match dtype {
            Dtype::F8_E4M3 => Some(Self::Fp8E4m3),
            Dtype::F8_E5M2 => Some(Self::Fp8E5m2),
            _ => None,
        }
    }
}

/// Which of ComfyUI's dequantisation backends to reproduce when the target dtype is narrower
/// than F32 (for an F32 target both give the same bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rounding {
    /// All arithmetic in F32, one rounding to the target dtype at the end: comfy-kitchen's CUDA
    /// kernels and ltx-core (`weight.to(f32) * weight_scale`).
    #[default]
    SingleF32,
    /// Intermediate products rounded to the target dtype, as comfy-kitchen's eager PyTorch
    /// backend computes them (`q.to(T) * scale.to(T)`; NVFP4 `lut_T[q] * (s2.to(T) * bs.to(T))`).
    /// This is what ComfyUI computes on CPU or with a CUDA < 13 PyTorch.
    ComfyEager,
}

/// The element encoding of a payload byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// One E4M3 value per byte.
    E4m3,
    /// One E5M2 value per byte.
    E5m2,
    /// Two E2M1 codes per byte, the even element in the high nibble.
    E2m1Pairs,
}

/// The scales of a quantised weight.
#[derive(Debug, Clone)]
pub enum QuantScales {
    /// One F32 multiplier for the whole tensor.
    PerTensor {
        /// `weight_scale`.
        scale: f32,
    },
    /// NVFP4 scales.
    Nvfp4 {
        /// E4M3 bytes, one per 16 elements, row-major `[padded_rows, padded_cols / 16]` (the
        /// file's 128×4 tile order undone).
        block_scales: Tensor,
        /// `weight_scale_2`.
        global_scale: f32,
    },
    /// MXFP8 scales.
    Mxfp8 {
        /// E8M0 bytes, one per 32 elements, row-major `[padded_rows, padded_cols / 32]`.
        block_scales: Tensor,
    },
}

/// A quantised weight: stored payload, its scales, and what ComfyUI's marker says about it.
#[derive(Debug, Clone)]
pub struct QuantizedWeight {
    /// The format.
    pub format: QuantFormat,
    /// How the payload bytes encode elements.
    pub payload: Payload,
    /// The payload bytes as stored (`U8`; `[rows, cols / 2]` for NVFP4, with any padding).
    pub data: Tensor,
    /// The scales.
    pub scales: QuantScales,
    /// The module's shape (`[out, in]` for a Linear); padded storage is sliced to it.
    pub shape: Shape,
    /// Static activation scale (`input_scale`), for an FP8×FP8 GEMM.
    pub input_scale: Option<f32>,
    /// Per-input-channel factor ComfyUI multiplies the activation by (`pre_quant_scale`, F32).
    pub pre_quant_scale: Option<Tensor>,
    /// The marker asks for a high-precision GEMM on the dequantised weight.
    pub full_precision_matrix_mult: bool,
    /// Which ComfyUI backend [`QuantizedWeight::dequantize`] reproduces.
    pub rounding: Rounding,
}

impl QuantizedWeight {
    /// Reads the layer `weight_key` of `file` described by `spec` onto `device`.
    ///
    /// `shape` is the module's shape; `None` takes the stored (padded) shape.
    pub(crate) fn read(
        file: &SafetensorsFile,
        weight_key: &str,
        spec: &LayerSpec,
        shape: Option<&Shape>,
        device: &Device,
        rounding: Rounding,
    ) -> Result<Self> {
        let raw = |key: &str| {
            file.raw(key)
                .ok_or_else(|| Error::Checkpoint(format!("`{key}` is missing")))
        };
        let weight = raw(weight_key)?;
        let companion = |key: &Option<String>, what: &str| match key {
            Some(key) => raw(key),
            None => Err(Error::Checkpoint(format!(
                "`{weight_key}` is {} but has no {what}",
                spec.format.comfy_name()
            ))),
        };
        let optional_scalar = |key: &Option<String>| -> Result<Option<f32>> {
            key.as_deref().map(|k| raw(k)?.scalar_f32()).transpose()
        };
        let (payload, padded, scales) = match spec.format {
            QuantFormat::Fp8E4m3 | QuantFormat::Fp8E5m2 => {
                let scale = companion(&spec.weight_scale, "weight_scale")?.scalar_f32()?;
                let payload = fp8_payload(&weight)?;
                (
                    payload,
                    weight.shape.to_vec(),
                    QuantScales::PerTensor { scale },
                )
            }
            QuantFormat::Nvfp4 => {
                let [rows, cols] = matrix_dims(&weight)?;
                let padded = vec![rows, cols * 2];
                let block_scales = block_scales(
                    companion(&spec.weight_scale, "weight_scale")?,
                    &padded,
                    NVFP4_BLOCK,
                    &[Dtype::F8_E4M3, Dtype::U8],
                    device,
                )?;
                let global_scale =
                    companion(&spec.weight_scale_2, "weight_scale_2")?.scalar_f32()?;
                let scales = QuantScales::Nvfp4 {
                    block_scales,
                    global_scale,
                };
                (Payload::E2m1Pairs, padded, scales)
            }
            QuantFormat::Mxfp8 => {
                let padded = matrix_dims(&weight)?.to_vec();
                let block_scales = block_scales(
                    companion(&spec.weight_scale, "weight_scale")?,
                    &padded,
                    MXFP8_BLOCK,
                    &[Dtype::U8, Dtype::F8_E8M0],
                    device,
                )?;
                let payload = fp8_payload(&weight)?;
                (payload, padded, QuantScales::Mxfp8 { block_scales })
            }
        };
        let shape = module_shape(weight_key, spec.format, &padded, shape)?;
        let pre_quant_scale = match &spec.pre_quant_scale {
            Some(key) => Some(raw(key)?.load(device)?.to_dtype(DType::F32)?),
            None => None,
        };
        Ok(Self {
            format: spec.format,
            payload,
            data: Tensor::from_raw_buffer(weight.bytes, DType::U8, weight.shape, device)?,
            scales,
            shape,
            input_scale: optional_scalar(&spec.input_scale)?,
            pre_quant_scale,
            full_precision_matrix_mult: spec.full_precision_matrix_mult,
            rounding,
        })
    }

    /// The weight in `dtype` on `device`, shaped [`QuantizedWeight::shape`], computed as
    /// ComfyUI's layout `dequantize` does under `self.rounding` (`pre_quant_scale` not applied).
    pub fn dequantize(&self, dtype: DType, device: &Device) -> Result<Tensor> {
        if !dtype.is_float() {
            return Err(Error::Input(format!("cannot dequantise to {dtype:?}")));
        }
        let data = self.data.to_device(device)?;
        let full = match &self.scales {
            QuantScales::PerTensor { scale } if device.is_cuda() => {
                // One kernel from the stored bytes, bit-exact to the candle ops below.
                kernels::dequantize_fp8(&data, fp8_format(self.payload)?, *scale, dtype, {
                    match self.rounding {
                        Rounding::SingleF32 => kernels::Fp8Rounding::SingleF32,
                        Rounding::ComfyEager => kernels::Fp8Rounding::ComfyEager,
                    }
                })?
            }
            QuantScales::PerTensor { scale } => {
                let q = decode_bytes(&data, self.payload)?;
                let scale = Tensor::new(*scale, device)?;
                match self.rounding {
                    Rounding::SingleF32 => q.broadcast_mul(&scale)?.to_dtype(dtype)?,
                    Rounding::ComfyEager => {
                        q.to_dtype(dtype)?.broadcast_mul(&scale.to_dtype(dtype)?)?
                    }
                }
            }
            QuantScales::Nvfp4 {
                block_scales,
                global_scale,
            } => self.dequantize_nvfp4(&data, block_scales, *global_scale, dtype, device)?,
            QuantScales::Mxfp8 { block_scales } => {
                let (rows, cols) = data.dims2()?;
                let blocks = cols / MXFP8_BLOCK;
                let q = decode_bytes(&data, self.payload)?.reshape((rows, blocks, MXFP8_BLOCK))?;
                let block_scales = block_scales.to_device(device)?;
                let scales = lookup(&byte_table(e8m0_to_f32), &block_scales, DType::F32)?
                    .reshape((rows, blocks, 1))?;
                q.broadcast_mul(&scales)?
                    .reshape((rows, cols))?
                    .to_dtype(dtype)?
            }
        };
        self.slice_to_shape(full)
    }

    /// The weight a plain `Linear` must use so that `x · Wᵀ` equals ComfyUI's
    /// `(x · pre_quant_scale) · W_dequantᵀ`: columns scaled by `pre_quant_scale` in F32, then
    /// one rounding to `dtype`. Without a `pre_quant_scale` this is [`QuantizedWeight::dequantize`].
    pub fn effective_weight(&self, dtype: DType, device: &Device) -> Result<Tensor> {
        let Some(pre_quant_scale) = &self.pre_quant_scale else {
            return self.dequantize(dtype, device);
        };
        let weight = self.dequantize(DType::F32, device)?;
        let in_features = weight.dims().last().copied().unwrap_or(0);
        if pre_quant_scale.elem_count() != in_features {
            return Err(Error::Checkpoint(format!(
                "pre_quant_scale has {} values for {in_features} input features",
                pre_quant_scale.elem_count()
            )));
        }
        let pre_quant_scale = pre_quant_scale.to_device(device)?.flatten_all()?;
        Ok(weight.broadcast_mul(&pre_quant_scale)?.to_dtype(dtype)?)
    }

    /// Bytes the stored form occupies (payload + block scales).
    pub fn storage_bytes(&self) -> usize {
        let scales = match &self.scales {
            QuantScales::PerTensor { .. } => 4,
            QuantScales::Nvfp4 { block_scales, .. } => block_scales.elem_count() + 4,
            QuantScales::Mxfp8 { block_scales } => block_scales.elem_count(),
        };
        self.data.elem_count() + scales
    }

    fn dequantize_nvfp4(
        &self,
        data: &Tensor,
        block_scales: &Tensor,
        global_scale: f32,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let (rows, half_cols) = data.dims2()?;
        let cols = half_cols * 2;
        let blocks = cols / NVFP4_BLOCK;
        // ComfyUI's eager backend looks the codes up in a table of the output dtype.
        let code_dtype = match self.rounding {
            Rounding::SingleF32 => DType::F32,
            Rounding::ComfyEager => dtype,
        };
        let high = lookup(&high_nibble_table(), data, code_dtype)?.flatten_all()?;
        let low = lookup(&low_nibble_table(), data, code_dtype)?.flatten_all()?;
        let codes = Tensor::stack(&[high, low], 1)?.reshape((rows, blocks, NVFP4_BLOCK))?;
        let block = lookup(
            &byte_table(e4m3_to_f32),
            &block_scales.to_device(device)?,
            DType::F32,
        )?
        .reshape((rows, blocks, 1))?;
        let global = Tensor::new(global_scale, device)?;
        let values = match self.rounding {
            Rounding::SingleF32 => codes
                .broadcast_mul(&block.broadcast_mul(&global)?)?
                .to_dtype(dtype)?,
            Rounding::ComfyEager => {
                let total = global
                    .to_dtype(dtype)?
                    .broadcast_mul(&block.to_dtype(dtype)?)?;
                codes.broadcast_mul(&total)?
            }
        };
        Ok(values.reshape((rows, cols))?)
    }

    /// Drops the padding rows/columns of a padded format.
    fn slice_to_shape(&self, full: Tensor) -> Result<Tensor> {
        if full.shape() == &self.shape {
            return Ok(full);
        }
        let mut sliced = full;
        for (dim, &size) in self.shape.dims().iter().enumerate() {
            sliced = sliced.narrow(dim, 0, size)?;
        }
        Ok(sliced.contiguous()?)
    }
}

/// `table[byte]` for every byte of `bytes` (a `U8` tensor), in `dtype`, shaped like `bytes`.
fn lookup(table: &[f32], bytes: &Tensor, dtype: DType) -> Result<Tensor> {
    let table = Tensor::from_slice(table, table.len(), bytes.device())?.to_dtype(dtype)?;
    // candle's index_select reads the largest value of the index type as "no row" (zeros), so
    // byte 255 must not be a U8 index.
    let indices = bytes.flatten_all()?.to_dtype(DType::U32)?;
    let values = table.index_select(&indices, 0)?;
    Ok(values.reshape(bytes.shape())?)
}

/// FP8 payload bytes decoded to F32.
fn decode_bytes(bytes: &Tensor, payload: Payload) -> Result<Tensor> {
    match payload {
        Payload::E4m3 => lookup(&byte_table(e4m3_to_f32), bytes, DType::F32),
        Payload::E5m2 => lookup(&byte_table(e5m2_to_f32), bytes, DType::F32),
        Payload::E2m1Pairs => Err(Error::Input(
            "E2M1 pairs are not one element per byte".into(),
        )),
    }
}

/// The kernels' name of a one-byte FP8 payload.
fn fp8_format(payload: Payload) -> Result<kernels::Fp8Format> {
    match payload {
        Payload::E4m3 => Ok(kernels::Fp8Format::E4m3),
        Payload::E5m2 => Ok(kernels::Fp8Format::E5m2),
        Payload::E2m1Pairs => Err(Error::Input(
            "E2M1 pairs are not one element per byte".into(),
        )),
    }
}

fn fp8_payload(weight: &RawTensor<'_>) -> Result<Payload> {
    match weight.dtype {
        Dtype::F8_E4M3 => Ok(Payload::E4m3),
        Dtype::F8_E5M2 => Ok(Payload::E5m2),
        other => Err(Error::Checkpoint(format!(
            "`{}`: FP8 payload stored as {other:?}",
            weight.key
        ))),
    }
}

fn matrix_dims(weight: &RawTensor<'_>) -> Result<[usize; 2]> {
    match weight.shape {
        &[rows, cols] => Ok([rows, cols]),
        other => Err(Error::Checkpoint(format!(
            "`{}`: a block-scaled weight must be 2-D, found shape {other:?}",
            weight.key
        ))),
    }
}

/// Checks a tiled block-scale tensor against the padded weight and untiles it onto `device`.
fn block_scales(
    scales: RawTensor<'_>,
    padded: &[usize],
    block: usize,
    dtypes: &[Dtype],
    device: &Device,
) -> Result<Tensor> {
    let (rows, cols) = (padded[0], padded[1]);
    if !cols.is_multiple_of(block) {
        return Err(Error::Checkpoint(format!(
            "`{}`: {cols} columns are not a multiple of the block size {block}",
            scales.key
        )));
    }
    let blocks = cols / block;
    let expected = tiled_scale_shape(rows, blocks);
    if !dtypes.contains(&scales.dtype) || scales.shape != expected {
        return Err(Error::Checkpoint(format!(
            "`{}`: block scales are {:?} {:?}, expected {expected:?} of {dtypes:?}",
            scales.key, scales.dtype, scales.shape
        )));
    }
    let untiled = untile_scales(scales.bytes, rows, blocks, scales.key)?;
    Ok(Tensor::from_vec(untiled, (rows, blocks), device)?)
}

/// The module's shape: `requested` when the stored (possibly padded) shape can hold it.
fn module_shape(
    key: &str,
    format: QuantFormat,
    stored: &[usize],
    requested: Option<&Shape>,
) -> Result<Shape> {
    let Some(requested) = requested else {
        return Ok(Shape::from(stored.to_vec()));
    };
    let pad = match format {
        QuantFormat::Fp8E4m3 | QuantFormat::Fp8E5m2 => 1,
        QuantFormat::Nvfp4 => NVFP4_BLOCK,
        QuantFormat::Mxfp8 => MXFP8_BLOCK,
    };
    let dims = requested.dims();
    let fits = dims.len() == stored.len()
        && dims
            .iter()
            .zip(stored)
            .all(|(&want, &have)| want <= have && have <= roundup(want, pad));
    if fits {
        Ok(requested.clone())
    } else {
        Err(candle_core::Error::UnexpectedShape {
            msg: format!("shape mismatch for {key} (stored {stored:?} as {format:?})"),
            expected: requested.clone(),
            got: Shape::from(stored.to_vec()),
        }
        .into())
    }
}
