//! Gemma 3 self-attention: grouped-query attention with per-head q/k RMS norms, rotary
//! embeddings (local and global bases) and causal masks with an optional sliding window.
//!
//! Masks follow Hugging Face transformers 4.57 with SDPA: a query sees key `k` iff `k <= q`,
//! `k > q - sliding_window` on local layers, and key `k` is not padding. A query that sees no key
//! at all (a left-padding position) gets an all-zero attention output, as PyTorch's SDPA returns
//! for fully masked rows.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module, VarBuilder};

use super::config::{Gemma3TextConfig, LayerType};
use super::model::GemmaRmsNorm;
use crate::Result;

/// Additive value of a masked attention score (finite so fully masked rows stay NaN-free).
const MASKED_SCORE: f32 = -1e30;

/// Cosine and sine tables of one RoPE base for a range of positions, each `[len, head_dim/2]`.
#[derive(Debug, Clone)]
pub struct RotaryTables {
    cos: Tensor,
    sin: Tensor,
}

impl RotaryTables {
    /// Builds the tables as Hugging Face does in float32: `inv_freq[i] = 1 / base^(2i/dim)`,
    /// divided by `scale` (linear RoPE scaling), angles `position * inv_freq`, then cast to `dtype`.
    pub fn new(
        base: f64,
        scale: f64,
        head_dim: usize,
        positions: std::ops::Range<usize>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let base = base as f32;
        let inv_freq: Vec<f32> = (0..head_dim)
            .step_by(2)
            .map(|i| 1.0f32 / base.powf(i as f32 / head_dim as f32) / scale as f32)
            .collect();
        let half = inv_freq.len();
        let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
        let len = positions.len();
        let positions = Tensor::arange(positions.start as u32, positions.end as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((len, 1))?;
        let angles = positions.broadcast_mul(&inv_freq)?;
        Ok(Self {
            cos: angles.cos()?.to_dtype(dtype)?,
            sin: angles.sin()?.to_dtype(dtype)?,
        })
    }

    /// Rotates `x` `[B, H, T, head_dim]` (halves convention: pairs `(i, i + head_dim/2)`).
    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::rotary_emb::rope(
            &x.contiguous()?,
            &self.cos,
            &self.sin,
        )?)
    }
}

/// Attention masks of one forward pass: additive scores and the rows that see at least one key.
#[derive(Debug, Clone)]
pub struct AttentionMask {
    /// `[B, 1, T, T]` float32: 0 where attended, a large negative value elsewhere.
    additive: Tensor,
    /// `[B, 1, T, 1]` in the model dtype: 1 for queries that see a key, 0 for fully masked rows.
    rows: Tensor,
}

impl AttentionMask {
    /// Builds the mask from per-sequence key validity (`valid[b][t]`, true = real token) and an
    /// optional sliding window.
    pub fn new(
        valid: &[Vec<bool>],
        window: Option<usize>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let batch = valid.len();
        let seq_len = valid.first().map_or(0, Vec::len);
        let mut additive = vec![MASKED_SCORE; batch * seq_len * seq_len];
        let mut rows = vec![0f32; batch * seq_len];
        for (b, keys) in valid.iter().enumerate() {
            for q in 0..seq_len {
                let first = window.map_or(0, |w| (q + 1).saturating_sub(w));
                let row = &mut additive[(b * seq_len + q) * seq_len..][..seq_len];
                for k in first..=q {
                    if keys[k] {
                        row[k] = 0.0;
                        rows[b * seq_len + q] = 1.0;
                    }
                }
            }
        }
        Ok(Self {
            additive: Tensor::from_vec(additive, (batch, 1, seq_len, seq_len), device)?,
            rows: Tensor::from_vec(rows, (batch, 1, seq_len, 1), device)?.to_dtype(dtype)?,
        })
    }
}

/// Repeats each key/value head `n_rep` times: `[B, KVH, T, D] -> [B, KVH * n_rep, T, D]`.
fn repeat_kv(x: Tensor, n_rep: usize) -> Result<Tensor> {
    if n_rep == 1 {
        return Ok(x);
    }
    let (b, kv_heads, t, d) = x.dims4()?;
    Ok(x.unsqueeze(2)?
        .expand((b, kv_heads, n_rep, t, d))?
        .reshape((b, kv_heads * n_rep, t, d))?)
}

/// Scaled dot-product attention of `[B, H, T, D]` tensors with an additive float32 mask; the
/// softmax runs in float32.
pub(crate) fn attention_probs_matmul(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    softcap: Option<f64>,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    let dtype = q.dtype();
    let mut scores = (q.matmul(&k.t()?)? * scale)?.to_dtype(DType::F32)?;
    if let Some(cap) = softcap {
        scores = ((scores / cap)?.tanh()? * cap)?;
    }
    if let Some(mask) = mask {
        scores = scores.broadcast_add(mask)?;
    }
    let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?;
    Ok(probs.matmul(&v.contiguous()?)?)
}

/// One Gemma 3 self-attention module (`self_attn.*`).
#[derive(Debug, Clone)]
pub struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    q_norm: GemmaRmsNorm,
    k_norm: GemmaRmsNorm,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    scale: f64,
    softcap: Option<f64>,
    layer_type: LayerType,
}

impl Attention {
    /// Loads `q_proj`, `k_proj`, `v_proj`, `o_proj`, `q_norm`, `k_norm` under `vb`.
    pub fn new(cfg: &Gemma3TextConfig, layer_type: LayerType, vb: VarBuilder) -> Result<Self> {
        let (h, kv, d) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let bias = cfg.attention_bias;
        Ok(Self {
            q_proj: candle_nn::linear_b(cfg.hidden_size, h * d, bias, vb.pp("q_proj"))?,
            k_proj: candle_nn::linear_b(cfg.hidden_size, kv * d, bias, vb.pp("k_proj"))?,
            v_proj: candle_nn::linear_b(cfg.hidden_size, kv * d, bias, vb.pp("v_proj"))?,
            o_proj: candle_nn::linear_b(h * d, cfg.hidden_size, bias, vb.pp("o_proj"))?,
            q_norm: GemmaRmsNorm::new(d, cfg.rms_norm_eps, vb.pp("q_norm"))?,
            k_norm: GemmaRmsNorm::new(d, cfg.rms_norm_eps, vb.pp("k_norm"))?,
            num_heads: h,
            num_kv_heads: kv,
            head_dim: d,
            scale: cfg.query_pre_attn_scalar.powf(-0.5),
            softcap: cfg.attn_logit_softcapping,
            layer_type,
        })
    }

    /// Whether this layer uses the sliding window (and the local RoPE base).
    pub fn layer_type(&self) -> LayerType {
        self.layer_type
    }

    /// `x` `[B, T, hidden]` -> `[B, T, hidden]`.
    pub fn forward(&self, x: &Tensor, rope: &RotaryTables, mask: &AttentionMask) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let heads = |proj: &Linear, n: usize| -> Result<Tensor> {
            Ok(proj
                .forward(x)?
                .reshape((b, t, n, self.head_dim))?
                .transpose(1, 2)?)
        };
        let q = self.q_norm.forward(&heads(&self.q_proj, self.num_heads)?)?;
        let k = self
            .k_norm
            .forward(&heads(&self.k_proj, self.num_kv_heads)?)?;
        let v = heads(&self.v_proj, self.num_kv_heads)?;
        let q = rope.apply(&q)?;
        let k = rope.apply(&k)?;
        let n_rep = self.num_heads / self.num_kv_heads;
        let k = repeat_kv(k, n_rep)?.contiguous()?;
        let v = repeat_kv(v, n_rep)?;
        let out =
            attention_probs_matmul(&q, &k, &v, self.scale, self.softcap, Some(&mask.additive))?
                .broadcast_mul(&mask.rows)?;
        let out = out
            .transpose(1, 2)?
            .reshape((b, t, self.num_heads * self.head_dim))?;
        Ok(self.o_proj.forward(&out)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_rows(m: &AttentionMask) -> Vec<Vec<f32>> {
        m.additive
            .squeeze(0)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()
    }

    #[test]
    fn sliding_window_with_left_padding() {
        let valid = vec![vec![false, true, true, true, true]];
        let m = AttentionMask::new(&valid, Some(2), DType::F32, &Device::Cpu).unwrap();
        let rows = mask_rows(&m);
        let seen: Vec<Vec<usize>> = rows
            .iter()
            .map(|r| (0..r.len()).filter(|&k| r[k] == 0.0).collect())
            .collect();
        assert_eq!(
            seen,
            vec![vec![], vec![1], vec![1, 2], vec![2, 3], vec![3, 4]]
        );
        let r = m.rows.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(r, vec![0.0, 1.0, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn rotary_tables_match_the_closed_form() {
        let t = RotaryTables::new(10_000.0, 2.0, 4, 1..3, DType::F32, &Device::Cpu).unwrap();
        let cos = t.cos.to_vec2::<f32>().unwrap();
        // inv_freq = [1, 1/100] / 2; row 1 is position 2 -> angles [1, 0.01]
        assert_eq!(cos.len(), 2);
        assert!((cos[1][0] - 1f32.cos()).abs() < 1e-7);
        assert!((cos[1][1] - 0.01f32.cos()).abs() < 1e-7);
    }
}
