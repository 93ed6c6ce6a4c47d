//! The candle `VarBuilder` backend of [`WeightFiles`]: plain tensors exactly as candle's own
//! mmap backend gives them, quantised ones dequantised to the requested dtype.

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::Init;
use candle_nn::var_builder::SimpleBackend;
use safetensors::Dtype;

use super::container::RawTensor;
use super::elements::e5m2_to_f32;
use super::{Kind, WeightFiles, context};
use crate::{Error, Result};

impl WeightFiles {
    /// Tensor `key` in `dtype` on `device`; with `shape`, checked against it (a padded
    /// quantised weight is sliced to it).
    ///
    /// Plain tensors are loaded and cast exactly as candle's `MmapedSafetensors` does;
    /// quantised weights are dequantised ([`super::QuantizedWeight::effective_weight`]).
    pub fn tensor(
        &self,
        key: &str,
        shape: Option<&Shape>,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let slot = self.slot(key)?;
        let file = &self.inner.files[slot.file];
        let tensor = match slot.kind {
            Kind::Plain => {
                let raw = file.raw(key).ok_or_else(|| super::missing(key))?;
                load_plain(raw, device)?.to_dtype(dtype)?
            }
            Kind::Quantized => match self.read_quantized(key, shape, device)? {
                Some(weight) => weight
                    .effective_weight(dtype, device)
                    .map_err(|e| context(file, e))?,
                None => return Err(super::missing(key)),
            },
            Kind::Companion => {
                let owner = &self.inner.quant[slot.file].companions[key];
                return Err(Error::Checkpoint(format!(
                    "`{key}` is a quantisation companion of `{owner}`, not a model tensor \
                     (read it through WeightFiles::quantized_weight)"
                )));
            }
        };
        if let Some(shape) = shape
            && tensor.shape() != shape
        {
            return Err(candle_core::Error::UnexpectedShape {
                msg: format!("shape mismatch for {key}"),
                expected: shape.clone(),
                got: tensor.shape().clone(),
            }
            .into());
        }
        Ok(tensor)
    }
}

/// A plain tensor in its stored dtype; `F8_E5M2`, which candle has no dtype for, comes out
/// as F32 (every E5M2 value is exact in F32, so the later cast rounds only once).
fn load_plain(raw: RawTensor<'_>, device: &Device) -> Result<Tensor> {
    if raw.dtype == Dtype::F8_E5M2 {
        let values: Vec<f32> = raw.bytes.iter().map(|&b| e5m2_to_f32(b)).collect();
        return Ok(Tensor::from_vec(values, raw.shape, device)?);
    }
    raw.load(device)
}

fn to_candle(error: Error) -> candle_core::Error {
    match error {
        Error::Candle(inner) => inner,
        other => candle_core::Error::wrap(other),
    }
}

impl SimpleBackend for WeightFiles {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _init: Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        self.tensor(name, Some(&shape), dtype, device)
            .map_err(to_candle)
    }

    fn get_unchecked(
        &self,
        name: &str,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        self.tensor(name, None, dtype, device).map_err(to_candle)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.contains(name)
    }
}
