//! One dual-stream block (ltx-core's `BasicAVTransformerBlock`): per stream AdaLN-modulated
//! self-attention, text cross-attention, then the audio<->video cross-attentions, then
//! AdaLN-modulated feed-forwards.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use super::attention::{Attention, AttentionBias, AttentionDims, Skip};
use super::config::TransformerConfig;
use super::linear::Linear;
use super::ops::{add_gated, modulate, rms_norm, rms_norm_modulate};
use super::perturbation::BlockSkips;
use super::rope::Rope;
use crate::Result;

/// A stream's per-call arguments as the blocks see them (ltx-core's `TransformerArgs`).
#[derive(Debug, Clone)]
pub struct StreamState {
    /// Hidden states `[B, T, D]`.
    pub x: Tensor,
    /// Projected text context `[B, S, D]`.
    pub context: Tensor,
    /// Text padding bias.
    pub context_bias: Option<AttentionBias>,
    /// AdaLN modulation `[B, T or 1, 6·D]`.
    pub modulation: Tensor,
    /// Embedded timestep `[B, T or 1, D]` (output modulation).
    pub embedded_timestep: Tensor,
    /// Self-attention RoPE.
    pub rope: Rope,
    /// RoPE of the audio<->video cross-attention (absent without the other stream).
    pub cross_rope: Option<Rope>,
    /// A/V cross-attention scale/shift modulation `[B, 1 or T, 4·D]`.
    pub cross_modulation: Option<Tensor>,
    /// A/V cross-attention gate modulation `[B, 1 or T, D]`.
    pub cross_gate: Option<Tensor>,
    /// Additive self-attention bias.
    pub self_bias: Option<AttentionBias>,
    /// Whether the stream is updated by the blocks (a disabled stream still serves as context).
    pub enabled: bool,
}

impl StreamState {
    fn runs(&self) -> Result<bool> {
        Ok(self.enabled && self.x.dim(1)? > 0)
    }

    fn has_tokens(&self) -> Result<bool> {
        Ok(self.x.dim(1)? > 0)
    }

    fn cross(&self) -> Result<(&Tensor, &Tensor, &Rope)> {
        match (&self.cross_modulation, &self.cross_gate, &self.cross_rope) {
            (Some(m), Some(g), Some(r)) => Ok((m, g, r)),
            _ => Err(crate::Error::Input(
                "audio/video cross-attention arguments missing".into(),
            )),
        }
    }
}

/// Feed-forward `net.0.proj` (tanh-GELU) then `net.2`, width x4.
#[derive(Debug, Clone)]
pub struct FeedForward {
    project_in: Linear,
    project_out: Linear,
}

impl FeedForward {
    /// Loads a `dim -> 4·dim -> dim` feed-forward.
    pub fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        let net = vb.pp("net");
        Ok(Self {
            project_in: Linear::new(dim, 4 * dim, true, net.pp("0").pp("proj"))?,
            project_out: Linear::new(4 * dim, dim, true, net.pp("2"))?,
        })
    }

    /// Applies the feed-forward to `[..., dim]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.project_in.forward_gelu(x)?;
        self.project_out.forward(&h)
    }

    fn linears_mut(&mut self) -> Vec<&mut Linear> {
        vec![&mut self.project_in, &mut self.project_out]
    }

    fn linears(&self) -> Vec<&Linear> {
        vec![&self.project_in, &self.project_out]
    }
}

/// The modules of one stream inside a block.
#[derive(Debug, Clone)]
struct StreamLayers {
    self_attn: Attention,
    text_attn: Attention,
    ff: FeedForward,
    /// `[6, D]`: shift/scale/gate of self-attention, then of the feed-forward.
    table: Tensor,
    /// `[5, D]`: a2v scale/shift, v2a scale/shift, gate of the cross-attention into this stream.
    av_table: Tensor,
}

/// Widths of one stream.
struct StreamDims {
    dim: usize,
    heads: usize,
    head_dim: usize,
    context_dim: usize,
}

impl StreamLayers {
    fn new(
        d: &StreamDims,
        eps: f64,
        prefix: &str,
        av_table: &str,
        vb: &VarBuilder,
    ) -> Result<Self> {
        let self_dims = AttentionDims {
            query_dim: d.dim,
            context_dim: d.dim,
            heads: d.heads,
            head_dim: d.head_dim,
        };
        let text_dims = AttentionDims {
            context_dim: d.context_dim,
            ..self_dims
        };
        Ok(Self {
            self_attn: Attention::new(self_dims, eps, vb.pp(format!("{prefix}attn1")))?,
            text_attn: Attention::new(text_dims, eps, vb.pp(format!("{prefix}attn2")))?,
            ff: FeedForward::new(d.dim, vb.pp(format!("{prefix}ff")))?,
            table: vb.get((6, d.dim), &format!("{prefix}scale_shift_table"))?,
            av_table: vb.get((5, d.dim), av_table)?,
        })
    }

    /// Self-attention and text cross-attention of a running stream.
    fn attend(&self, s: &mut StreamState, skip: &Skip, eps: f64) -> Result<()> {
        let [shift, scale, gate] = ada_values(&self.table, &s.modulation, 0)?;
        let norm = rms_norm_modulate(&s.x, &scale, &shift, eps)?;
        let rope = Some((&s.rope, &s.rope));
        let attn = self
            .self_attn
            .forward(&norm, None, rope, s.self_bias.as_ref(), skip)?;
        s.x = add_gated(&s.x, &attn, &gate)?;
        let text = self.text_attn.forward(
            &rms_norm(&s.x, eps)?,
            Some(&s.context),
            None,
            s.context_bias.as_ref(),
            &Skip::None,
        )?;
        s.x = (&s.x + text)?;
        Ok(())
    }

    /// The modulated feed-forward of a running stream.
    fn feed_forward(&self, s: &mut StreamState, eps: f64) -> Result<()> {
        let [shift, scale, gate] = ada_values(&self.table, &s.modulation, 3)?;
        let h = rms_norm_modulate(&s.x, &scale, &shift, eps)?;
        s.x = add_gated(&s.x, &self.ff.forward(&h)?, &gate)?;
        Ok(())
    }

    /// `(scale, shift, gate)` of the cross-attention pair `pair` (0: a2v, 1: v2a).
    fn av_values(&self, s: &StreamState, pair: usize) -> Result<[Tensor; 3]> {
        let (modulation, gate_mod, _) = s.cross()?;
        let pairs = self.av_table.narrow(0, 0, 4)?;
        let [scale, shift] = ada_pair(&pairs, modulation, 2 * pair)?;
        let gate_table = self.av_table.narrow(0, 4, 1)?;
        let [gate] = ada_values_n::<1>(&gate_table, gate_mod, 0)?;
        Ok([scale, shift, gate])
    }

    fn linears(&self) -> Vec<&Linear> {
        let mut v = self.self_attn.linears();
        v.extend(self.text_attn.linears());
        v.extend(self.ff.linears());
        v
    }

    fn linears_mut(&mut self) -> Vec<&mut Linear> {
        let mut v = self.self_attn.linears_mut();
        v.extend(self.text_attn.linears_mut());
        v.extend(self.ff.linears_mut());
        v
    }
}

/// One dual-stream block.
#[derive(Debug, Clone)]
pub struct AvBlock {
    index: usize,
    video: StreamLayers,
    audio: StreamLayers,
    audio_to_video: Attention,
    video_to_audio: Attention,
    eps: f64,
}

impl AvBlock {
    /// Loads block `index` (`vb` points at `transformer_blocks.<index>`).
    pub fn new(cfg: &TransformerConfig, index: usize, vb: VarBuilder) -> Result<Self> {
        let eps = cfg.norm_eps;
        let video_dims = StreamDims {
            dim: cfg.video_inner_dim(),
            heads: cfg.num_attention_heads,
            head_dim: cfg.attention_head_dim,
            context_dim: cfg.cross_attention_dim,
        };
        let audio_dims = StreamDims {
            dim: cfg.audio_inner_dim(),
            heads: cfg.audio_num_attention_heads,
            head_dim: cfg.audio_attention_head_dim,
            context_dim: cfg.audio_cross_attention_dim,
        };
        let cross = |query_dim, context_dim| AttentionDims {
            query_dim,
            context_dim,
            heads: audio_dims.heads,
            head_dim: audio_dims.head_dim,
        };
        Ok(Self {
            index,
            video: StreamLayers::new(&video_dims, eps, "", "scale_shift_table_a2v_ca_video", &vb)?,
            audio: StreamLayers::new(
                &audio_dims,
                eps,
                "audio_",
                "scale_shift_table_a2v_ca_audio",
                &vb,
            )?,
            audio_to_video: Attention::new(
                cross(video_dims.dim, audio_dims.dim),
                eps,
                vb.pp("audio_to_video_attn"),
            )?,
            video_to_audio: Attention::new(
                cross(audio_dims.dim, video_dims.dim),
                eps,
                vb.pp("video_to_audio_attn"),
            )?,
            eps,
        })
    }

    /// The block's index (perturbations select blocks by it).
    pub fn index(&self) -> usize {
        self.index
    }

    /// Runs the block on whichever streams are present, updating their `x`.
    pub fn forward(
        &self,
        mut video: Option<&mut StreamState>,
        mut audio: Option<&mut StreamState>,
        skips: &BlockSkips,
    ) -> Result<()> {
        let run_v = match video.as_deref() {
            Some(v) => v.runs()?,
            None => false,
        };
        let run_a = match audio.as_deref() {
            Some(a) => a.runs()?,
            None => false,
        };
        if let (true, Some(v)) = (run_v, video.as_deref_mut()) {
            self.video.attend(v, &skips.video_self, self.eps)?;
        }
        if let (true, Some(a)) = (run_a, audio.as_deref_mut()) {
            self.audio.attend(a, &skips.audio_self, self.eps)?;
        }
        if let (Some(v), Some(a)) = (video.as_deref_mut(), audio.as_deref_mut()) {
            let a2v = run_v && a.has_tokens()? && !matches!(skips.audio_to_video, Skip::All);
            let v2a = run_a && v.has_tokens()? && !matches!(skips.video_to_audio, Skip::All);
            self.cross_modal(v, a, a2v, v2a, skips)?;
        }
        if let (true, Some(v)) = (run_v, video) {
            self.video.feed_forward(v, self.eps)?;
        }
        if let (true, Some(a)) = (run_a, audio) {
            self.audio.feed_forward(a, self.eps)?;
        }
        Ok(())
    }

    /// Audio-to-video then video-to-audio cross-attention, both from the pre-update norms.
    fn cross_modal(
        &self,
        v: &mut StreamState,
        a: &mut StreamState,
        a2v: bool,
        v2a: bool,
        skips: &BlockSkips,
    ) -> Result<()> {
        if !a2v && !v2a {
            return Ok(());
        }
        // Both directions read the pre-update streams (v.x and a.x change only at the end).
        let fused = kernels::fused_on(v.x.device());
        let (v_norm, a_norm) = if fused {
            (None, None)
        } else {
            (
                Some(rms_norm(&v.x, self.eps)?),
                Some(rms_norm(&a.x, self.eps)?),
            )
        };
        let norm_mod =
            |x: &Tensor, norm: &Option<Tensor>, scale: &Tensor, shift: &Tensor| match norm {
                Some(n) => modulate(n, scale, shift),
                None => rms_norm_modulate(x, scale, shift, self.eps),
            };
        let mut v_delta = None;
        if a2v {
            let [v_scale, v_shift, gate] = self.video.av_values(v, 0)?;
            let [a_scale, a_shift, _] = self.audio.av_values(a, 0)?;
            let q = norm_mod(&v.x, &v_norm, &v_scale, &v_shift)?;
            let kv = norm_mod(&a.x, &a_norm, &a_scale, &a_shift)?;
            let rope = (v.cross()?.2, a.cross()?.2);
            let out = self
                .audio_to_video
                .forward(&q, Some(&kv), Some(rope), None, &Skip::None)?;
            v_delta = Some(keep_items(
                &out.broadcast_mul(&gate)?,
                &skips.audio_to_video,
            )?);
        }
        if v2a {
            let [a_scale, a_shift, gate] = self.audio.av_values(a, 1)?;
            let [v_scale, v_shift, _] = self.video.av_values(v, 1)?;
            let q = norm_mod(&a.x, &a_norm, &a_scale, &a_shift)?;
            let kv = norm_mod(&v.x, &v_norm, &v_scale, &v_shift)?;
            let rope = (a.cross()?.2, v.cross()?.2);
            let out = self
                .video_to_audio
                .forward(&q, Some(&kv), Some(rope), None, &Skip::None)?;
            let delta = keep_items(&out.broadcast_mul(&gate)?, &skips.video_to_audio)?;
            a.x = (&a.x + delta)?;
        }
        if let Some(delta) = v_delta {
            v.x = (&v.x + delta)?;
        }
        Ok(())
    }

    /// Every linear layer of the block.
    pub fn linears(&self) -> Vec<&Linear> {
        let mut v = self.video.linears();
        v.extend(self.audio.linears());
        v.extend(self.audio_to_video.linears());
        v.extend(self.video_to_audio.linears());
        v
    }

    /// Every linear layer of the block, mutably.
    pub fn linears_mut(&mut self) -> Vec<&mut Linear> {
        let mut v = self.video.linears_mut();
        v.extend(self.audio.linears_mut());
        v.extend(self.audio_to_video.linears_mut());
        v.extend(self.video_to_audio.linears_mut());
        v
    }
}

/// Zeroes the batch items a perturbation removes.
fn keep_items(x: &Tensor, skip: &Skip) -> Result<Tensor> {
    match skip {
        Skip::Mixed(keep) => Ok(x.broadcast_mul(&keep.to_dtype(x.dtype())?)?),
        _ => Ok(x.clone()),
    }
}

/// Three consecutive AdaLN values starting at row `start`.
fn ada_values(table: &Tensor, modulation: &Tensor, start: usize) -> Result<[Tensor; 3]> {
    ada_values_n::<3>(table, modulation, start)
}

/// Two consecutive values starting at `start`.
fn ada_pair(table: &Tensor, modulation: &Tensor, start: usize) -> Result<[Tensor; 2]> {
    ada_values_n::<2>(table, modulation, start)
}

/// `table[start + i] + modulation[:, :, start + i]` for `i < N`, each `[B, T, D]`, where the
/// modulation `[B, T, rows·D]` holds one value per table row.
fn ada_values_n<const N: usize>(
    table: &Tensor,
    modulation: &Tensor,
    start: usize,
) -> Result<[Tensor; N]> {
    let (rows, d) = table.dims2()?;
    let (b, t, _) = modulation.dims3()?;
    let m = modulation.reshape((b, t, rows, d))?.narrow(2, start, N)?;
    let tab = table
        .narrow(0, start, N)?
        .to_dtype(m.dtype())?
        .reshape((1, 1, N, d))?;
    let sum = m.broadcast_add(&tab)?;
    let mut out = Vec::with_capacity(N);
    for i in 0..N {
        out.push(sum.narrow(2, i, 1)?.squeeze(2)?);
    }
    out.try_into()
        .map_err(|_| crate::Error::Input("ada values".into()))
}
