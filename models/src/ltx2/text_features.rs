//! `FeatureExtractorV1` (LTX-2 19B): Gemma's hidden states -> one text feature per token.
//!
//! Each hidden state (embeddings and every layer) is normalised per sequence over its valid
//! tokens and all channels, `8 * (x - mean) / (max - min + 1e-6)`, padding zeroed; the states are
//! interleaved channel-major (`[B, T, hidden, layers]` flattened to `hidden * layers`) and
//! projected by `text_embedding_projection.aggregate_embed` (no bias) back to `hidden`.
//! Padding is taken to be on the left: the last `sum(mask)` positions are the valid ones, as
//! ltx-core derives them from the sequence lengths.

use candle_core::{DType, Tensor};
use candle_nn::{Linear, Module, VarBuilder};

use crate::{Error, Result};

/// `eps` of the normalisation (both in the mean's denominator and the range).
const EPS: f64 = 1e-6;
/// Scale of the normalised states.
const NORM_SCALE: f64 = 8.0;

/// The 19B text feature extractor.
#[derive(Debug, Clone)]
pub struct FeatureExtractorV1 {
    aggregate_embed: Linear,
    hidden_size: usize,
    num_hidden_states: usize,
}

impl FeatureExtractorV1 {
    /// Loads `aggregate_embed.weight` `[hidden, hidden * num_hidden_states]` under `vb`
    /// (`text_embedding_projection`). `num_hidden_states` is Gemma's layer count + 1.
    pub fn new(hidden_size: usize, num_hidden_states: usize, vb: VarBuilder) -> Result<Self> {
        let aggregate_embed = candle_nn::linear_no_bias(
            hidden_size * num_hidden_states,
            hidden_size,
            vb.pp("aggregate_embed"),
        )?;
        Ok(Self {
            aggregate_embed,
            hidden_size,
            num_hidden_states,
        })
    }

    /// Width of the output features (Gemma's hidden size).
    pub fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    /// `hidden_states`: `num_hidden_states` tensors `[B, T, hidden]`; `attention_mask` `[B, T]`
    /// (non-zero = real token, padding on the left). Returns features `[B, T, hidden]` in the
    /// projection's dtype (the statistics are computed in float32 whatever the input dtype).
    pub fn forward(&self, hidden_states: &[Tensor], attention_mask: &Tensor) -> Result<Tensor> {
        if hidden_states.len() != self.num_hidden_states {
            return Err(Error::Input(format!(
                "{} hidden states, the text projection expects {}",
                hidden_states.len(),
                self.num_hidden_states
            )));
        }
        let first = &hidden_states[0];
        let dtype = self.aggregate_embed.weight().dtype();
        let (batch, seq_len, hidden) = first.dims3()?;
        let valid = left_padding_mask(attention_mask, batch, seq_len)?.to_device(first.device())?;
        let normed = hidden_states
            .iter()
            .map(|h| {
                normalize(h, &valid, hidden)?
                    .to_dtype(dtype)
                    .map_err(Into::into)
            })
            .collect::<Result<Vec<_>>>()?;
        let stacked = Tensor::stack(&normed, 3)?.reshape((
            batch,
            seq_len,
            hidden * self.num_hidden_states,
        ))?;
        Ok(self.aggregate_embed.forward(&stacked)?)
    }
}

/// `[B, T, 1]` float32, 1 on the last `sum(mask[b])` positions of each sequence.
fn left_padding_mask(attention_mask: &Tensor, batch: usize, seq_len: usize) -> Result<Tensor> {
    if attention_mask.dims() != [batch, seq_len] {
        return Err(Error::Input(format!(
            "attention mask {:?} does not match hidden states [{batch}, {seq_len}, _]",
            attention_mask.dims()
        )));
    }
    let rows = attention_mask.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let mut valid = Vec::with_capacity(batch * seq_len);
    for row in rows {
        let len = row.iter().filter(|&&m| m != 0.0).count();
        valid.extend((0..seq_len).map(|t| if t >= seq_len - len { 1f32 } else { 0.0 }));
    }
    Ok(Tensor::from_vec(
        valid,
        (batch, seq_len, 1),
        &candle_core::Device::Cpu,
    )?)
}

/// Masked per-sequence normalisation of one hidden state `[B, T, D]`, in float32.
fn normalize(h: &Tensor, valid: &Tensor, hidden: usize) -> Result<Tensor> {
    let x = h.to_dtype(DType::F32)?;
    let keep = valid.broadcast_as(x.shape())?.ne(0f32)?;
    let zeros = x.zeros_like()?;
    let masked = keep.where_cond(&x, &zeros)?;
    let count = (valid.sum_keepdim(1)? * hidden as f64)?; // [B, 1, 1]
    let mean = masked.sum_keepdim((1, 2))?.broadcast_div(&(count + EPS)?)?;
    let inf = Tensor::full(f32::INFINITY, x.shape(), x.device())?;
    let x_min = keep.where_cond(&x, &inf)?.min_keepdim(2)?.min_keepdim(1)?;
    let x_max = keep
        .where_cond(&x, &inf.neg()?)?
        .max_keepdim(2)?
        .max_keepdim(1)?;
    let range = (x_max - x_min)?;
    let normed = (x.broadcast_sub(&mean)? * NORM_SCALE)?.broadcast_div(&(range + EPS)?)?;
    Ok(keep.where_cond(&normed, &zeros)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn normalises_over_valid_tokens_only() {
        // One sequence, 3 positions (first is padding), 2 channels.
        let h = Tensor::new(&[[[100f32, -100.], [1., 3.], [5., 7.]]], &Device::Cpu).unwrap();
        let mask = Tensor::new(&[[0u32, 1, 1]], &Device::Cpu).unwrap();
        let valid = left_padding_mask(&mask, 1, 3).unwrap();
        let n = normalize(&h, &valid, 2).unwrap().to_vec3::<f32>().unwrap();
        // valid values 1,3,5,7: mean 4, range 6
        let expect = |v: f32| 8.0 * (v - 4.0) / (6.0 + 1e-6);
        assert_eq!(n[0][0], vec![0.0, 0.0]);
        assert!((n[0][1][0] - expect(1.0)).abs() < 1e-5);
        assert!((n[0][2][1] - expect(7.0)).abs() < 1e-5);
    }
}
