//! The transformer's linear layer: shared base weights plus a per-instance LoRA patch set.
//!
//! Base tensors are candle `Tensor`s, i.e. reference-counted immutable storage: cloning a
//! [`Linear`] (or the whole model) copies pointers, never weights, and nothing here ever writes
//! into a base tensor. LoRA patches live beside the base weight in the clone that owns them, so
//! two jobs can share one loaded base model with different LoRA sets, and removing a LoRA is
//! dropping its patch (the base stays bit-identical by construction).
//!
//! Two ways to apply a patch ([`LoraMode`]):
//! * [`LoraMode::Unfused`] (default): `y = x·Wᵀ + b + Σᵢ sᵢ·(x·Aᵢᵀ)·Bᵢᵀ` at forward time. Extra
//!   memory is only the low-rank factors (for a rank-r patch on an `out x in` layer,
//!   `r·(in+out)` values instead of `in·out`), so many clones with different LoRAs fit beside
//!   one base; the price is two thin matmuls per patched layer per call.
//! * [`LoraMode::Fused`]: `W' = W + Σᵢ sᵢ·Bᵢ·Aᵢ` is materialised once per clone (a full copy of
//!   each patched weight, the base still untouched) and the forward is a plain matmul. Faster
//!   per step, memory-hungry; with `delta_dtype` BF16 it reproduces ltx-core's `fuse_loras`
//!   bit for bit, with F32 it follows ComfyUI's rule (product in f32, one rounding).
//!
//! [`Weight`] is the storage of the base weight; today always dense in the working dtype (fp8
//! files are dequantised by the VarBuilder backend). A quantised variant dequantised per call
//! can be added there without touching the model code.

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

use crate::Result;

/// Storage of a linear layer's base weight (`[out, in]`).
#[derive(Debug, Clone)]
pub enum Weight {
    /// A dense tensor in the model's working dtype.
    Dense(Tensor),
}

impl Weight {
    /// The weight as a dense `[out, in]` tensor in the working dtype.
    pub fn dense(&self) -> &Tensor {
        match self {
            Weight::Dense(w) => w,
        }
    }
}

/// How LoRA patches are applied (see the module docs for the trade-off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoraMode {
    /// Low-rank product added at forward time; base and memory shared between clones.
    #[default]
    Unfused,
    /// Patched weight materialised per clone; `delta_dtype` is the dtype `Σ sᵢ·Bᵢ·Aᵢ` is
    /// computed in before it is added to the base weight in f32 and rounded to the working dtype.
    Fused {
        /// Dtype of the low-rank product (F32: ComfyUI; BF16: ltx-core's `fuse_loras`).
        delta_dtype: DType,
    },
}

/// One low-rank patch of one layer: `ΔW = scale · up · down`.
#[derive(Debug, Clone)]
pub struct LoraPatch {
    /// `A` / `lora_down`, `[rank, in]`.
    pub down: Tensor,
    /// `B` / `lora_up`, `[out, rank]`.
    pub up: Tensor,
    /// `strength · alpha / rank` (alpha absent: `strength`).
    pub scale: f64,
}

/// `y = x·Wᵀ + b` over the last dimension, with optional LoRA patches.
#[derive(Debug, Clone)]
pub struct Linear {
    path: String,
    in_dim: usize,
    out_dim: usize,
    weight: Weight,
    bias: Option<Tensor>,
    patches: Vec<LoraPatch>,
    fused: Option<Tensor>,
}

impl Linear {
    /// Loads `weight` `[out, in]` and, if `bias`, `bias` `[out]` from `vb`.
    pub fn new(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get((out_dim, in_dim), "weight")?;
        let bias = if bias {
            Some(vb.get(out_dim, "bias")?)
        } else {
            None
        };
        Ok(Self {
            path: vb.prefix(),
            in_dim,
            out_dim,
            weight: Weight::Dense(weight),
            bias,
            patches: Vec::new(),
            fused: None,
        })
    }

    /// The full tensor path of this layer in the checkpoint (the VarBuilder prefix).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The base weight (never modified by LoRA).
    pub fn weight(&self) -> &Weight {
        &self.weight
    }

    /// The bias, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// `(in, out)` widths.
    pub fn dims(&self) -> (usize, usize) {
        (self.in_dim, self.out_dim)
    }

    /// Whether any LoRA patch is active.
    pub fn is_patched(&self) -> bool {
        !self.patches.is_empty() || self.fused.is_some()
    }

    /// Replaces this layer's LoRA patches (an empty list removes them).
    pub fn set_patches(&mut self, patches: Vec<LoraPatch>, mode: LoraMode) -> Result<()> {
        self.fused = None;
        self.patches.clear();
        if patches.is_empty() {
            return Ok(());
        }
        match mode {
            LoraMode::Unfused => {
                let dtype = self.weight.dense().dtype();
                for p in patches {
                    self.patches.push(LoraPatch {
                        down: p.down.to_dtype(dtype)?,
                        up: p.up.to_dtype(dtype)?,
                        scale: p.scale,
                    });
                }
            }
            LoraMode::Fused { delta_dtype } => {
                self.fused = Some(fused_weight(self.weight.dense(), &patches, delta_dtype)?);
            }
        }
        Ok(())
    }

    /// The weight the forward pass multiplies with (fused when a fused patch is active).
    pub fn effective_weight(&self) -> &Tensor {
        self.fused.as_ref().unwrap_or(self.weight.dense())
    }

    /// Applies the layer to `x` `[..., in]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (y, out_shape) = self.forward_unbiased(x)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        Ok(y.reshape(out_shape)?)
    }

    /// `gelu_tanh(self.forward(x))`; the bias add and the GELU are one fused kernel where
    /// [`kernels::fused_on`] holds (CUDA), candle's ops elsewhere.
    pub fn forward_gelu(&self, x: &Tensor) -> Result<Tensor> {
        match &self.bias {
            Some(b) if kernels::fused_on(x.device()) => {
                let (y, out_shape) = self.forward_unbiased(x)?;
                Ok(kernels::bias_gelu(&y, b)?.reshape(out_shape)?)
            }
            _ => Ok(self.forward(x)?.gelu()?),
        }
    }

    /// `x·Wᵀ` plus the LoRA terms, as `[rows, out]`, and the output shape `[..., out]`.
    fn forward_unbiased(&self, x: &Tensor) -> Result<(Tensor, Vec<usize>)> {
        let dims = x.dims().to_vec();
        let Some((&in_dim, lead)) = dims.split_last() else {
            return Err(candle_core::Error::Msg("linear: scalar input".into()).into());
        };
        let x2 = x.reshape(((), in_dim))?;
        let w = self.effective_weight();
        let mut y = x2.matmul(&w.t()?)?;
        for p in &self.patches {
            let h = x2.matmul(&p.down.t()?)?.affine(p.scale, 0.0)?;
            y = (y + h.matmul(&p.up.t()?)?)?;
        }
        let mut out_shape = lead.to_vec();
        out_shape.push(y.dim(1)?);
        Ok((y, out_shape))
    }
}

/// `W + Σᵢ scaleᵢ·upᵢ·downᵢ`: each product is computed in `delta_dtype` (`up` scaled first, as
/// ltx-core does), the sum is added to the base weight in f32 and rounded once to its dtype.
pub fn fused_weight(base: &Tensor, patches: &[LoraPatch], delta_dtype: DType) -> Result<Tensor> {
    let mut delta: Option<Tensor> = None;
    for p in patches {
        let up = p.up.to_dtype(delta_dtype)?.affine(p.scale, 0.0)?;
        let prod = up.matmul(&p.down.to_dtype(delta_dtype)?)?;
        delta = Some(match delta {
            None => prod,
            Some(d) => (d + prod)?,
        });
    }
    let base32 = base.to_dtype(DType::F32)?;
    let sum = match delta {
        None => base32,
        Some(d) => (base32 + d.to_dtype(DType::F32)?)?,
    };
    Ok(sum.to_dtype(base.dtype())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use std::collections::HashMap;

    fn layer() -> Linear {
        let dev = Device::Cpu;
        let mut map = HashMap::new();
        let w = Tensor::new(&[[1f32, 2., 3.], [4., 5., 6.]], &dev).unwrap();
        map.insert("l.weight".to_string(), w);
        map.insert(
            "l.bias".to_string(),
            Tensor::new(&[0.5f32, -0.5], &dev).unwrap(),
        );
        let vb = VarBuilder::from_tensors(map, DType::F32, &dev);
        Linear::new(3, 2, true, vb.pp("l")).unwrap()
    }

    fn patch(scale: f64) -> LoraPatch {
        let dev = Device::Cpu;
        LoraPatch {
            down: Tensor::new(&[[1f32, 0., -1.]], &dev).unwrap(),
            up: Tensor::new(&[[2f32], [1.]], &dev).unwrap(),
            scale,
        }
    }

    #[test]
    fn forward_matches_a_hand_computation() {
        let l = layer();
        assert_eq!(l.path(), "l");
        let x = Tensor::new(&[[[1f32, 1., 1.]]], &Device::Cpu).unwrap();
        let y = l.forward(&x).unwrap();
        assert_eq!(y.dims(), &[1, 1, 2]);
        assert_eq!(
            y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [6.5, 14.5]
        );
    }

    #[test]
    fn unfused_and_fused_patches_agree_and_removal_restores_the_base() {
        let mut l = layer();
        let x = Tensor::new(&[[2f32, 0., 1.]], &Device::Cpu).unwrap();
        let base = l.forward(&x).unwrap().to_vec2::<f32>().unwrap();
        l.set_patches(vec![patch(0.5), patch(1.0)], LoraMode::Unfused)
            .unwrap();
        let unfused = l.forward(&x).unwrap().to_vec2::<f32>().unwrap();
        // x·Aᵀ = 1, ΔW·x = 1.5·[2, 1]
        assert_eq!(unfused, [[base[0][0] + 3.0, base[0][1] + 1.5]]);
        let fused_mode = LoraMode::Fused {
            delta_dtype: DType::F32,
        };
        l.set_patches(vec![patch(0.5), patch(1.0)], fused_mode)
            .unwrap();
        assert_eq!(l.forward(&x).unwrap().to_vec2::<f32>().unwrap(), unfused);
        l.set_patches(Vec::new(), LoraMode::Unfused).unwrap();
        assert!(!l.is_patched());
        assert_eq!(l.forward(&x).unwrap().to_vec2::<f32>().unwrap(), base);
    }
}
