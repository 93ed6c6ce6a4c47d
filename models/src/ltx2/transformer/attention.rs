//! Multi-head attention of the LTX-2 blocks (ltx-core's `Attention`): q/k/v projections, q/k
//! RMS norms over the full inner width, RoPE, scaled dot-product attention with an optional
//! additive bias, output projection; plus the STG pass-through (`out = v`) used by guidance.
//!
//! Scores are computed in query chunks so the `[B, H, Tq, Tk]` matrix never exceeds
//! [`MAX_SCORE_ELEMENTS`]; half-precision scores are soft-maxed in f32.

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

use super::linear::Linear;
use super::ops::rms_norm_weighted;
use super::rope::Rope;
use crate::{Error, Result};

/// Upper bound on the elements of one chunk of attention scores.
pub const MAX_SCORE_ELEMENTS: usize = 1 << 28;

/// An additive attention bias (0 = attend normally, very negative = masked out).
#[derive(Debug, Clone)]
pub enum AttentionBias {
    /// One bias per key, `[B, 1, 1, Tk]` (e.g. padded text tokens).
    Keys(Tensor),
    /// A full bias, `[B or 1, 1, Tq, Tk]`.
    Dense(Tensor),
    /// ComfyUI's guide bias: the `log_weights.len()` tokens from `guide_start` on are appended
    /// guide tokens; attention from other tokens to them and from them to the tokens before
    /// `guide_start` gets `log_weights[j]` added. Never materialised as `[T, T]`.
    Guide {
        /// First guide token.
        guide_start: usize,
        /// `log(w)` per guide token (`[n]`, working dtype; the dtype's minimum where w = 0).
        log_weights: Tensor,
    },
}

/// Largest finite value of a float dtype (torch `finfo.max`).
pub fn dtype_max(dtype: DType) -> f64 {
    match dtype {
        DType::F16 => 65504.0,
        DType::BF16 => 3.3895313892515355e38,
        DType::F64 => f64::MAX,
        _ => f32::MAX as f64,
    }
}

/// Smallest positive normal value of a float dtype (torch `finfo.tiny`).
fn dtype_tiny(dtype: DType) -> f64 {
    match dtype {
        DType::F16 => 6.103515625e-05,
        DType::F64 => f64::MIN_POSITIVE,
        _ => f32::MIN_POSITIVE as f64,
    }
}

impl AttentionBias {
    /// From a key mask `[B, Tk]` (1 = attend, 0 = padding, any dtype): `(mask - 1) · finfo.max`,
    /// as ltx-core turns a non-float `context_mask` into a bias.
    pub fn from_key_mask(mask: &Tensor, dtype: DType) -> Result<Self> {
        let (b, tk) = mask.dims2()?;
        let bias = mask
            .to_dtype(DType::F32)?
            .affine(1.0, -1.0)?
            .to_dtype(dtype)?
            .affine(dtype_max(dtype), 0.0)?;
        Ok(AttentionBias::Keys(bias.reshape((b, 1, 1, tk))?))
    }

    /// From attention weights `[B, Tq, Tk]` in `[0, 1]` (ltx-core's `Modality.attention_mask`):
    /// `log(w)` where `w > 0` (clamped to `finfo.tiny`), `finfo.min` where `w <= 0`.
    pub fn from_weights(weights: &Tensor, dtype: DType) -> Result<Self> {
        let log = log_weights(weights, dtype)?;
        Ok(AttentionBias::Dense(log.unsqueeze(1)?))
    }

    /// ComfyUI's guide bias for the guide tokens starting at `guide_start` with per-token
    /// weights `weights` `[n]` (strength x pixel mask).
    pub fn guide(guide_start: usize, weights: &Tensor, dtype: DType) -> Result<Self> {
        Ok(AttentionBias::Guide {
            guide_start,
            log_weights: log_weights(weights, dtype)?,
        })
    }
}

/// `log(max(w, tiny))` where `w > 0`, else `-finfo.max`, in `dtype`.
fn log_weights(weights: &Tensor, dtype: DType) -> Result<Tensor> {
    let w = weights.to_dtype(DType::F32)?;
    let positive = w.gt(0.0)?;
    let log = w.maximum(dtype_tiny(dtype))?.log()?;
    let floor = Tensor::full(-dtype_max(dtype) as f32, w.shape(), w.device())?;
    let log = positive.where_cond(&log, &floor)?;
    Ok(log.to_dtype(dtype)?)
}

/// Which batch items skip an attention (ltx-core's perturbation mask for one block).
#[derive(Debug, Clone)]
pub enum Skip {
    /// No item skips.
    None,
    /// Every item skips.
    All,
    /// Per item keep factor `[B, 1, 1]`: 1 = attend, 0 = skip.
    Mixed(Tensor),
}

/// One attention module (`attn1`, `attn2`, `audio_to_video_attn`, ...).
#[derive(Debug, Clone)]
pub struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    q_norm: Tensor,
    k_norm: Tensor,
    heads: usize,
    head_dim: usize,
    eps: f64,
}

/// Dimensions of one attention module.
#[derive(Debug, Clone, Copy)]
pub struct AttentionDims {
    /// Width of the queries' stream.
    pub query_dim: usize,
    /// Width of the keys/values' source.
    pub context_dim: usize,
    /// Number of heads.
    pub heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

impl Attention {
    /// Loads `to_q`, `to_k`, `to_v`, `to_out.0`, `q_norm`, `k_norm` from `vb`.
    pub fn new(dims: AttentionDims, eps: f64, vb: VarBuilder) -> Result<Self> {
        let inner = dims.heads * dims.head_dim;
        Ok(Self {
            to_q: Linear::new(dims.query_dim, inner, true, vb.pp("to_q"))?,
            to_k: Linear::new(dims.context_dim, inner, true, vb.pp("to_k"))?,
            to_v: Linear::new(dims.context_dim, inner, true, vb.pp("to_v"))?,
            to_out: Linear::new(inner, dims.query_dim, true, vb.pp("to_out").pp("0"))?,
            q_norm: vb.pp("q_norm").get(inner, "weight")?,
            k_norm: vb.pp("k_norm").get(inner, "weight")?,
            heads: dims.heads,
            head_dim: dims.head_dim,
            eps,
        })
    }

    /// The module's linear layers.
    pub fn linears(&self) -> Vec<&Linear> {
        vec![&self.to_q, &self.to_k, &self.to_v, &self.to_out]
    }

    /// The module's linear layers, mutably (for LoRA patches).
    pub fn linears_mut(&mut self) -> Vec<&mut Linear> {
        vec![
            &mut self.to_q,
            &mut self.to_k,
            &mut self.to_v,
            &mut self.to_out,
        ]
    }

    /// Attends from `x` `[B, Tq, query_dim]` to `context` (`x` itself when `None`).
    /// `rope` rotates queries and keys (`(q_rope, k_rope)`); `skip` replaces the attention
    /// output by the value projection for the selected batch items (STG).
    pub fn forward(
        &self,
        x: &Tensor,
        context: Option<&Tensor>,
        rope: Option<(&Rope, &Rope)>,
        bias: Option<&AttentionBias>,
        skip: &Skip,
    ) -> Result<Tensor> {
        let context = context.unwrap_or(x);
        let v = self.to_v.forward(context)?;
        if matches!(skip, Skip::All) {
            return self.to_out.forward(&v);
        }
        let q = rms_norm_weighted(&self.to_q.forward(x)?, &self.q_norm, self.eps)?;
        let k = rms_norm_weighted(&self.to_k.forward(context)?, &self.k_norm, self.eps)?;
        let (q, k) = match rope {
            Some((q_rope, k_rope)) => (q_rope.apply(&q)?, k_rope.apply(&k)?),
            None => (q, k),
        };
        let mut out = multi_head_attention(&q, &k, &v, self.heads, self.head_dim, bias)?;
        if let Skip::Mixed(keep) = skip {
            let keep = keep.to_dtype(out.dtype())?;
            let drop = keep.affine(-1.0, 1.0)?;
            out = (out.broadcast_mul(&keep)? + v.broadcast_mul(&drop)?)?;
        }
        self.to_out.forward(&out)
    }
}

/// Scaled dot-product attention over `heads` heads of `q` `[B, Tq, H·D]`, `k`/`v`
/// `[B, Tk, H·D]`; returns `[B, Tq, H·D]`.
pub fn multi_head_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    head_dim: usize,
    bias: Option<&AttentionBias>,
) -> Result<Tensor> {
    let (b, tq, _) = q.dims3()?;
    #[cfg(feature = "flash-attn")]
    if bias.is_none() && flash::applies(q, head_dim) {
        return flash::attention(q, k, v, heads, head_dim);
    }
    let split = |t: &Tensor| -> Result<Tensor> {
        let (b, t_len, _) = t.dims3()?;
        Ok(t.reshape((b, t_len, heads, head_dim))?
            .transpose(1, 2)?
            .contiguous()?)
    };
    let (qh, kh, vh) = (split(q)?, split(k)?, split(v)?);
    let out = match bias {
        Some(AttentionBias::Guide {
            guide_start,
            log_weights,
        }) => guided_attention(&qh, &kh, &vh, *guide_start, log_weights)?,
        Some(AttentionBias::Keys(keys)) => chunked_sdpa(&qh, &kh, &vh, Some(keys), false)?,
        Some(AttentionBias::Dense(rows)) => chunked_sdpa(&qh, &kh, &vh, Some(rows), true)?,
        None => chunked_sdpa(&qh, &kh, &vh, None, false)?,
    };
    Ok(out.transpose(1, 2)?.reshape((b, tq, heads * head_dim))?)
}

/// FlashAttention-2 (candle-flash-attn, `flash-attn` feature) for unbiased attention in half
/// precision on a GPU; everything else takes the chunked path.
#[cfg(feature = "flash-attn")]
mod flash {
    use candle_core::{DType, Tensor};

    use crate::Result;

    /// Whether the flash kernels can run this attention.
    pub fn applies(q: &Tensor, head_dim: usize) -> bool {
        q.device().is_cuda()
            && matches!(q.dtype(), DType::BF16 | DType::F16)
            && head_dim.is_multiple_of(8)
            && head_dim <= 256
    }

    /// `softmax(q·kᵀ/√D)·v` on `[B, T, H·D]` tensors, whose `[B, T, H, D]` view is the layout
    /// the flash kernels take (no transposes).
    pub fn attention(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        heads: usize,
        head_dim: usize,
    ) -> Result<Tensor> {
        let view = |t: &Tensor| -> Result<Tensor> {
            let (b, n, _) = t.dims3()?;
            Ok(t.contiguous()?.reshape((b, n, heads, head_dim))?)
        };
        let scale = 1.0 / (head_dim as f32).sqrt();
        let out = candle_flash_attn::flash_attn(&view(q)?, &view(k)?, &view(v)?, scale, false)?;
        let (b, tq, _, _) = out.dims4()?;
        Ok(out.reshape((b, tq, heads * head_dim))?)
    }
}

/// The guide bias applied by partitioning the queries (as ComfyUI does): queries before the
/// guides see a per-key row bias, guide queries a `[n, Tk]` bias, later queries none.
fn guided_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    guide_start: usize,
    log_weights: &Tensor,
) -> Result<Tensor> {
    let tq = q.dim(2)?;
    let tk = k.dim(2)?;
    let n = log_weights.dim(0)?;
    if guide_start + n > tq || tq != tk {
        return Err(Error::Input(format!(
            "guide bias: {n} guide tokens from {guide_start} do not fit {tq} self-attention tokens"
        )));
    }
    let dtype = q.dtype();
    let device = q.device();
    let lw = log_weights.to_dtype(dtype)?;
    let mut parts = Vec::new();
    if guide_start > 0 {
        let row = Tensor::cat(
            &[
                Tensor::zeros(guide_start, dtype, device)?,
                lw.clone(),
                Tensor::zeros(tk - guide_start - n, dtype, device)?,
            ],
            0,
        )?
        .reshape((1, 1, 1, tk))?;
        let qs = q.narrow(2, 0, guide_start)?;
        parts.push(chunked_sdpa(&qs, k, v, Some(&row), false)?);
    }
    if n > 0 {
        let noisy_cols = Tensor::cat(
            &[
                Tensor::ones(guide_start, dtype, device)?,
                Tensor::zeros(tk - guide_start, dtype, device)?,
            ],
            0,
        )?;
        let rows = lw
            .reshape((n, 1))?
            .broadcast_mul(&noisy_cols.reshape((1, tk))?)?
            .reshape((1, 1, n, tk))?;
        let qs = q.narrow(2, guide_start, n)?;
        parts.push(chunked_sdpa(&qs, k, v, Some(&rows), true)?);
    }
    let rest = tq - guide_start - n;
    if rest > 0 {
        let qs = q.narrow(2, guide_start + n, rest)?;
        parts.push(chunked_sdpa(&qs, k, v, None, false)?);
    }
    Ok(Tensor::cat(&parts, 2)?)
}

/// `softmax(q·kᵀ/√D + bias)·v` on `[B, H, T, D]` tensors, in query chunks. `per_row` says the
/// bias has one row per query (sliced with the chunk) rather than one row for all.
fn chunked_sdpa(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    per_row: bool,
) -> Result<Tensor> {
    let (b, h, tq, d) = q.dims4()?;
    let tk = k.dim(2)?;
    let chunk = (MAX_SCORE_ELEMENTS / (b * h * tk).max(1)).clamp(1, tq.max(1));
    let scale = 1.0 / (d as f64).sqrt();
    let kt = k.t()?;
    let mut outs = Vec::with_capacity(tq.div_ceil(chunk));
    let mut start = 0;
    while start < tq {
        let len = chunk.min(tq - start);
        let qc = q.narrow(2, start, len)?;
        let mut scores = qc.matmul(&kt)?;
        if scores.dtype() != DType::F32 && scores.dtype() != DType::F64 {
            scores = scores.to_dtype(DType::F32)?;
        }
        scores = scores.affine(scale, 0.0)?;
        if let Some(bias) = bias {
            let bias = if per_row {
                bias.narrow(2, start, len)?
            } else {
                bias.clone()
            };
            scores = scores.broadcast_add(&bias.to_dtype(scores.dtype())?)?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(v.dtype())?;
        outs.push(probs.matmul(v)?);
        start += len;
    }
    let out = if outs.len() == 1 {
        outs.remove(0)
    } else {
        Tensor::cat(&outs, 2)?
    };
    debug_assert_eq!(out.dims(), &[b, h, tq, d]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn randn(shape: (usize, usize, usize), seed: u64) -> Tensor {
        let n = shape.0 * shape.1 * shape.2;
        let mut s = seed;
        let v: Vec<f32> = (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn guide_bias_equals_the_dense_bias_it_stands_for() {
        let (t, gs, n) = (7, 3, 2);
        let q = randn((1, t, 8), 1);
        let k = randn((1, t, 8), 2);
        let v = randn((1, t, 8), 3);
        let w = Tensor::new(&[0.5f32, 0.0], &Device::Cpu).unwrap();
        let guide = AttentionBias::guide(gs, &w, DType::F32).unwrap();
        let mut dense = vec![vec![1f32; t]; t];
        for (r, row) in dense.iter_mut().enumerate() {
            for (c, x) in row.iter_mut().enumerate() {
                let r_guide = (gs..gs + n).contains(&r);
                let c_guide = (gs..gs + n).contains(&c);
                if r < gs && c_guide {
                    *x = [0.5, 0.0][c - gs];
                } else if r_guide && c < gs {
                    *x = [0.5, 0.0][r - gs];
                }
            }
        }
        let flat: Vec<f32> = dense.concat();
        let weights = Tensor::from_vec(flat, (1, t, t), &Device::Cpu).unwrap();
        let dense = AttentionBias::from_weights(&weights, DType::F32).unwrap();
        let a = multi_head_attention(&q, &k, &v, 2, 4, Some(&guide)).unwrap();
        let b = multi_head_attention(&q, &k, &v, 2, 4, Some(&dense)).unwrap();
        assert!(max_diff(&a, &b) < 1e-6);
        let plain = multi_head_attention(&q, &k, &v, 2, 4, None).unwrap();
        assert!(max_diff(&a, &plain) > 1e-3);
    }

    #[test]
    fn key_mask_removes_padded_keys() {
        let q = randn((1, 3, 4), 4);
        let k = randn((1, 5, 4), 5);
        let v = randn((1, 5, 4), 6);
        let mask = Tensor::new(&[[1u8, 1, 1, 0, 0]], &Device::Cpu).unwrap();
        let bias = AttentionBias::from_key_mask(&mask, DType::F32).unwrap();
        let masked = multi_head_attention(&q, &k, &v, 1, 4, Some(&bias)).unwrap();
        let kk = k.narrow(1, 0, 3).unwrap();
        let vv = v.narrow(1, 0, 3).unwrap();
        let cut = multi_head_attention(&q, &kk, &vv, 1, 4, None).unwrap();
        assert!(max_diff(&masked, &cut) < 1e-6);
    }
}
