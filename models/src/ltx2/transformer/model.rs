//! The audio+video transformer (ltx-core's `LTXModel`, AudioVideo variant) and its X0 wrapper.
//!
//! A call takes, per modality, patchified latent tokens, per-token timesteps, the step's sigma,
//! token positions and the text context, and returns the velocity of each stream.
//! [`LtxAvModel::denoise`] is ltx-core's `X0Model`: `denoised = latent - timesteps · velocity`.

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

use super::attention::AttentionBias;
use super::block::{AvBlock, StreamState};
use super::config::{CHECKPOINT_PREFIX, TransformerConfig};
use super::embeddings::{AdaLayerNormSingle, CaptionProjection};
use super::inputs::{AvOutput, CrossModalTimesteps, ForwardOptions, ModalityInput};
use super::linear::Linear;
use super::ops::{layer_norm, to_denoised};
use super::perturbation::BlockSkips;
use super::rope::{Rope, RopeSpec};
use crate::checkpoint::CheckpointHeader;
use crate::{Error, Result};

/// Checkpoint names of one stream's top-level modules.
struct StreamNames {
    patchify_proj: &'static str,
    adaln: &'static str,
    caption_projection: &'static str,
    cross_scale_shift: &'static str,
    cross_gate: &'static str,
    scale_shift_table: &'static str,
    proj_out: &'static str,
}

const VIDEO_NAMES: StreamNames = StreamNames {
    patchify_proj: "patchify_proj",
    adaln: "adaln_single",
    caption_projection: "caption_projection",
    cross_scale_shift: "av_ca_video_scale_shift_adaln_single",
    cross_gate: "av_ca_a2v_gate_adaln_single",
    scale_shift_table: "scale_shift_table",
    proj_out: "proj_out",
};

const AUDIO_NAMES: StreamNames = StreamNames {
    patchify_proj: "audio_patchify_proj",
    adaln: "audio_adaln_single",
    caption_projection: "audio_caption_projection",
    cross_scale_shift: "av_ca_audio_scale_shift_adaln_single",
    cross_gate: "av_ca_v2a_gate_adaln_single",
    scale_shift_table: "audio_scale_shift_table",
    proj_out: "audio_proj_out",
};

/// Sizes of one stream.
#[derive(Debug, Clone)]
struct StreamSpec {
    in_channels: usize,
    out_channels: usize,
    dim: usize,
    heads: usize,
    max_pos: Vec<f64>,
}

/// Input and output modules of one stream.
#[derive(Debug, Clone)]
struct StreamIo {
    spec: StreamSpec,
    patchify_proj: Linear,
    adaln: AdaLayerNormSingle,
    caption_projection: CaptionProjection,
    cross_scale_shift: AdaLayerNormSingle,
    cross_gate: AdaLayerNormSingle,
    scale_shift_table: Tensor,
    proj_out: Linear,
}

impl StreamIo {
    fn new(
        spec: StreamSpec,
        caption_channels: usize,
        n: &StreamNames,
        vb: &VarBuilder,
    ) -> Result<Self> {
        let d = spec.dim;
        Ok(Self {
            patchify_proj: Linear::new(spec.in_channels, d, true, vb.pp(n.patchify_proj))?,
            adaln: AdaLayerNormSingle::new(d, 6, vb.pp(n.adaln))?,
            caption_projection: CaptionProjection::new(
                caption_channels,
                d,
                vb.pp(n.caption_projection),
            )?,
            cross_scale_shift: AdaLayerNormSingle::new(d, 4, vb.pp(n.cross_scale_shift))?,
            cross_gate: AdaLayerNormSingle::new(d, 1, vb.pp(n.cross_gate))?,
            scale_shift_table: vb.get((2, d), n.scale_shift_table)?,
            proj_out: Linear::new(d, spec.out_channels, true, vb.pp(n.proj_out))?,
            spec,
        })
    }

    fn linears(&self) -> Vec<&Linear> {
        let mut v = vec![&self.patchify_proj, &self.proj_out];
        v.extend(self.adaln.linears());
        v.extend(self.caption_projection.linears());
        v.extend(self.cross_scale_shift.linears());
        v.extend(self.cross_gate.linears());
        v
    }

    fn linears_mut(&mut self) -> Vec<&mut Linear> {
        let mut v = vec![&mut self.patchify_proj, &mut self.proj_out];
        v.extend(self.adaln.linears_mut());
        v.extend(self.caption_projection.linears_mut());
        v.extend(self.cross_scale_shift.linears_mut());
        v.extend(self.cross_gate.linears_mut());
        v
    }

    /// Final norm, modulation by the embedded timestep and projection.
    fn output(&self, s: &StreamState, eps: f64) -> Result<Tensor> {
        let (b, t, d) = s.embedded_timestep.dims3()?;
        let values = self
            .scale_shift_table
            .to_dtype(s.embedded_timestep.dtype())?
            .reshape((1, 1, 2, d))?
            .broadcast_add(&s.embedded_timestep.reshape((b, t, 1, d))?)?;
        let shift = values.narrow(2, 0, 1)?.squeeze(2)?;
        let scale = values.narrow(2, 1, 1)?.squeeze(2)?;
        let x = layer_norm(&s.x, eps)?
            .broadcast_mul(&(scale + 1.0)?)?
            .broadcast_add(&shift)?;
        self.proj_out.forward(&x)
    }
}

/// The LTX-2 audio+video transformer.
///
/// Cloning is cheap (weights are shared, see [`Linear`]); a clone can carry its own LoRA
/// patches (`crate::ltx2::lora`) without affecting the original.
#[derive(Debug, Clone)]
pub struct LtxAvModel {
    cfg: TransformerConfig,
    video: StreamIo,
    audio: StreamIo,
    blocks: Vec<AvBlock>,
    dtype: DType,
    root: String,
}

impl LtxAvModel {
    /// Builds the model from `vb` pointing at the transformer root (for the official single
    /// file: `vb.pp(CHECKPOINT_PREFIX)`). The working dtype is `vb`'s dtype.
    pub fn new(cfg: &TransformerConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let video_spec = StreamSpec {
            in_channels: cfg.in_channels,
            out_channels: cfg.out_channels,
            dim: cfg.video_inner_dim(),
            heads: cfg.num_attention_heads,
            max_pos: cfg.positional_embedding_max_pos.clone(),
        };
        let audio_spec = StreamSpec {
            in_channels: cfg.audio_in_channels,
            out_channels: cfg.audio_out_channels,
            dim: cfg.audio_inner_dim(),
            heads: cfg.audio_num_attention_heads,
            max_pos: cfg.audio_positional_embedding_max_pos.clone(),
        };
        let video = StreamIo::new(video_spec, cfg.caption_channels, &VIDEO_NAMES, &vb)?;
        let audio = StreamIo::new(audio_spec, cfg.caption_channels, &AUDIO_NAMES, &vb)?;
        let blocks_vb = vb.pp("transformer_blocks");
        let blocks = (0..cfg.num_layers)
            .map(|i| AvBlock::new(cfg, i, blocks_vb.pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            video,
            audio,
            blocks,
            dtype: vb.dtype(),
            root: vb.prefix(),
        })
    }

    /// Builds the model of an official single-file checkpoint: the config from the header's
    /// metadata, the weights from `vb` (the file's root, e.g. the weights backend's VarBuilder)
    /// under [`CHECKPOINT_PREFIX`].
    pub fn from_checkpoint(header: &CheckpointHeader, vb: VarBuilder) -> Result<Self> {
        let cfg = TransformerConfig::from_header(header)?;
        Self::new(&cfg, vb.pp(CHECKPOINT_PREFIX))
    }

    /// The configuration.
    pub fn config(&self) -> &TransformerConfig {
        &self.cfg
    }

    /// The working dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The VarBuilder prefix the model was loaded from (e.g. `model.diffusion_model`).
    pub fn root_prefix(&self) -> &str {
        &self.root
    }

    /// Every linear layer (for inspection and LoRA matching).
    pub fn linears(&self) -> Vec<&Linear> {
        let mut v = self.video.linears();
        v.extend(self.audio.linears());
        for b in &self.blocks {
            v.extend(b.linears());
        }
        v
    }

    /// Every linear layer, mutably (LoRA patches).
    pub fn linears_mut(&mut self) -> Vec<&mut Linear> {
        let mut v = self.video.linears_mut();
        v.extend(self.audio.linears_mut());
        for b in &mut self.blocks {
            v.extend(b.linears_mut());
        }
        v
    }

    /// Velocities of both streams.
    pub fn forward(
        &self,
        video: Option<&ModalityInput>,
        audio: Option<&ModalityInput>,
        opts: &ForwardOptions,
    ) -> Result<AvOutput> {
        self.forward_inspect(video, audio, opts, &mut |_, _| {})
    }

    /// Denoised latents (ltx-core's `X0Model`): `latent - timesteps · velocity` per stream, in
    /// f32 and returned in the latent dtype.
    pub fn denoise(
        &self,
        video: Option<&ModalityInput>,
        audio: Option<&ModalityInput>,
        opts: &ForwardOptions,
    ) -> Result<AvOutput> {
        let v = self.forward(video, audio, opts)?;
        let x0 = |input: Option<&ModalityInput>, vel: Option<Tensor>| -> Result<Option<Tensor>> {
            match (input, vel) {
                (Some(i), Some(v)) => {
                    let ts = timesteps_3d(&i.timesteps)?;
                    Ok(Some(to_denoised(&i.latent, &v, &ts)?))
                }
                _ => Ok(None),
            }
        };
        Ok(AvOutput {
            video: x0(video, v.video)?,
            audio: x0(audio, v.audio)?,
        })
    }

    /// [`LtxAvModel::forward`] reporting intermediates to `inspect` under the names of the
    /// reference fixture's `dbg.*` tensors (without `dbg.`): `video.prepared.x`,
    /// `video.prepared.positional_embeddings.cos` (ltx-core layout), `block3.audio_x`, ...
    pub fn forward_inspect(
        &self,
        video: Option<&ModalityInput>,
        audio: Option<&ModalityInput>,
        opts: &ForwardOptions,
        inspect: &mut dyn FnMut(&str, &Tensor),
    ) -> Result<AvOutput> {
        let batch = batch_size(video, audio)?;
        if let Some(p) = &opts.perturbations {
            p.check_batch(batch)?;
        }
        let mut vs = match video {
            Some(v) => Some(self.prepare(&self.video, v, audio, opts, batch)?),
            None => None,
        };
        let mut a_state = match audio {
            Some(a) => Some(self.prepare(&self.audio, a, video, opts, batch)?),
            None => None,
        };
        if let Some(s) = &vs {
            report_prepared("video", s, inspect)?;
        }
        if let Some(s) = &a_state {
            report_prepared("audio", s, inspect)?;
        }
        let device = self.video.scale_shift_table.device().clone();
        for block in &self.blocks {
            let skips = BlockSkips::resolve(
                opts.perturbations.as_ref(),
                block.index(),
                self.dtype,
                &device,
            )?;
            block.forward(vs.as_mut(), a_state.as_mut(), &skips)?;
            if let Some(s) = &vs {
                inspect(&format!("block{}.video_x", block.index()), &s.x);
            }
            if let Some(s) = &a_state {
                inspect(&format!("block{}.audio_x", block.index()), &s.x);
            }
        }
        let eps = self.cfg.norm_eps;
        Ok(AvOutput {
            video: vs.as_ref().map(|s| self.video.output(s, eps)).transpose()?,
            audio: a_state
                .as_ref()
                .map(|s| self.audio.output(s, eps))
                .transpose()?,
        })
    }

    /// ltx-core's `MultiModalTransformerArgsPreprocessor.prepare` for one stream.
    fn prepare(
        &self,
        io: &StreamIo,
        input: &ModalityInput,
        other: Option<&ModalityInput>,
        opts: &ForwardOptions,
        batch: usize,
    ) -> Result<StreamState> {
        let cfg = &self.cfg;
        let x = io
            .patchify_proj
            .forward(&input.latent.to_dtype(self.dtype)?)?;
        let scaled = timesteps_3d(&input.timesteps)?
            .to_dtype(DType::F32)?
            .affine(cfg.timestep_scale_multiplier, 0.0)?;
        let (modulation, embedded_timestep) =
            adaln(&io.adaln, &scaled.flatten_all()?, batch, self.dtype)?;
        let context = io
            .caption_projection
            .forward(&input.context.to_dtype(self.dtype)?)?;
        let context_bias = match &input.context_mask {
            Some(m) => Some(AttentionBias::from_key_mask(m, self.dtype)?),
            None => None,
        };
        let rope = Rope::new(
            &input.positions,
            &self.rope_spec(
                io.spec.dim,
                io.spec.heads,
                &io.spec.max_pos,
                cfg.use_middle_indices_grid,
            ),
            self.dtype,
        )?;
        let mut state = StreamState {
            x,
            context,
            context_bias,
            modulation,
            embedded_timestep,
            rope,
            cross_rope: None,
            cross_modulation: None,
            cross_gate: None,
            self_bias: input.self_attention_bias.clone(),
            enabled: input.enabled,
        };
        if let Some(other) = other {
            let cross_t = match opts.cross_modal_timesteps {
                CrossModalTimesteps::OtherModalitySigma => sigma_per_item(&other.sigma, batch)?
                    .affine(cfg.timestep_scale_multiplier, 0.0)?,
                CrossModalTimesteps::OwnTokenTimesteps => scaled.flatten_all()?,
            };
            let (cross_modulation, _) = adaln(&io.cross_scale_shift, &cross_t, batch, self.dtype)?;
            let gate_factor = cfg.av_ca_timestep_scale_multiplier / cfg.timestep_scale_multiplier;
            let (cross_gate, _) = adaln(
                &io.cross_gate,
                &cross_t.affine(gate_factor, 0.0)?,
                batch,
                self.dtype,
            )?;
            let time_axis = input.positions.narrow(1, 0, 1)?;
            let max_pos = [cfg.cross_pe_max_pos()];
            let spec = self.rope_spec(cfg.audio_cross_attention_dim, io.spec.heads, &max_pos, true);
            state.cross_rope = Some(Rope::new(&time_axis, &spec, self.dtype)?);
            state.cross_modulation = Some(cross_modulation);
            state.cross_gate = Some(cross_gate);
        }
        Ok(state)
    }

    fn rope_spec<'a>(
        &self,
        dim: usize,
        heads: usize,
        max_pos: &'a [f64],
        use_middle: bool,
    ) -> RopeSpec<'a> {
        RopeSpec {
            dim,
            heads,
            theta: self.cfg.positional_embedding_theta,
            max_pos,
            use_middle,
            rope_type: self.cfg.rope_type,
            double_precision: self.cfg.double_precision_rope(),
        }
    }
}

/// Runs an AdaLN-single on scaled timesteps `[B·n]` and shapes the results `[B, n, ·]`.
fn adaln(
    module: &AdaLayerNormSingle,
    scaled: &Tensor,
    batch: usize,
    dtype: DType,
) -> Result<(Tensor, Tensor)> {
    let (m, e) = module.forward(scaled, dtype)?;
    let m_dim = m.dim(1)?;
    let e_dim = e.dim(1)?;
    Ok((
        m.reshape((batch, (), m_dim))?,
        e.reshape((batch, (), e_dim))?,
    ))
}

/// `[B, T]` or `[B, T, 1]` timesteps as `[B, T, 1]`.
fn timesteps_3d(t: &Tensor) -> Result<Tensor> {
    match t.rank() {
        2 => Ok(t.unsqueeze(2)?),
        3 => Ok(t.clone()),
        r => Err(Error::Input(format!("timesteps of rank {r}"))),
    }
}

/// Sigma as `[B]` f32 (a single value is repeated for every item).
fn sigma_per_item(sigma: &Tensor, batch: usize) -> Result<Tensor> {
    let s = sigma.to_dtype(DType::F32)?.flatten_all()?;
    match s.dim(0)? {
        n if n == batch => Ok(s),
        1 => Ok(s.broadcast_as(batch)?.contiguous()?),
        n => Err(Error::Input(format!(
            "sigma has {n} values for batch {batch}"
        ))),
    }
}

fn batch_size(video: Option<&ModalityInput>, audio: Option<&ModalityInput>) -> Result<usize> {
    let b = |m: Option<&ModalityInput>| m.map(|m| m.latent.dim(0)).transpose();
    match (b(video)?, b(audio)?) {
        (Some(v), Some(a)) if v != a => Err(Error::Input(format!(
            "video batch {v} differs from audio batch {a}"
        ))),
        (Some(v), _) => Ok(v),
        (None, Some(a)) => Ok(a),
        (None, None) => Err(Error::Input("neither video nor audio given".into())),
    }
}

fn report_prepared(
    stream: &str,
    s: &StreamState,
    inspect: &mut dyn FnMut(&str, &Tensor),
) -> Result<()> {
    let name = |f: &str| format!("{stream}.prepared.{f}");
    inspect(&name("x"), &s.x);
    inspect(&name("context"), &s.context);
    inspect(&name("timesteps"), &s.modulation);
    inspect(&name("embedded_timestep"), &s.embedded_timestep);
    let (cos, sin) = s.rope.reference_layout()?;
    inspect(&name("positional_embeddings.cos"), &cos);
    inspect(&name("positional_embeddings.sin"), &sin);
    if let Some(r) = &s.cross_rope {
        let (cos, sin) = r.reference_layout()?;
        inspect(&name("cross_positional_embeddings.cos"), &cos);
        inspect(&name("cross_positional_embeddings.sin"), &sin);
    }
    if let Some(m) = &s.cross_modulation {
        inspect(&name("cross_scale_shift_timestep"), m);
    }
    if let Some(g) = &s.cross_gate {
        inspect(&name("cross_gate_timestep"), g);
    }
    Ok(())
}
