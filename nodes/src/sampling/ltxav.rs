//! One guided model evaluation of ComfyUI's LTXAV model (`model_base.LTXAV` + the DiT's
//! input preparation) on a packed latent: what the sampler's `denoise(x, sigma)` calls.
//!
//! * The packed `[B, 1, N]` state is split into the video `[B, 128, T, h, w]` and audio
//!   `[B, 8, T_a, 16]` parts and patchified (one token per latent voxel / audio step).
//! * Per-token timesteps are `sigma · mask` from the denoise mask (video `mask[:, :1]`, audio
//!   `mask[:, :1, :, :1]`); no mask means `sigma` everywhere.
//! * Video positions: pixel-space bounds with the causal fix, the last guide tokens' bounds
//!   replaced by `keyframe_idxs`, time multiplied by `1 / frame_rate` (f32). Audio positions:
//!   the causal mel timing in seconds.
//! * Text: the conditioning tensor is split into the video and audio contexts.
//! * The audio/video cross-attention is modulated by each stream's own token timesteps.
//! * `denoised = x - sigma · velocity` (rectified-flow `CONST`), with the scalar sigma.
//! * CFG: `uncond + (cond - uncond) · cfg`, the negative skipped when cfg is 1.

use candle_core::{DType, Device, Shape, Tensor};
use models::ltx2::transformer::patchify::{
    audio_to_tokens, tokens_to_audio, tokens_to_video, video_to_tokens,
};
use models::ltx2::transformer::positions::{
    AudioTiming, ScaleFactors, VideoGrid, audio_positions, video_pixel_coords, with_guide_coords,
};
use models::ltx2::transformer::{
    AttentionBias, CrossModalTimesteps, ForwardOptions, LtxAvModel, ModalityInput,
};
use models::sampling::guider::{cfg_combine, cfg_skips_uncond};
use models::sampling::latent::{pack_latents, unpack_latents};

use crate::NodeError;
use crate::ltxv::types::{CondEntry, Conditioning};

/// Frame rate the model assumes when the conditioning has none.
const DEFAULT_FRAME_RATE: f64 = 25.0;

/// Where the video and audio parts are in the packed latent.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Shapes of the packed parts, in order.
    pub shapes: Vec<Shape>,
    /// Index of the video part (5-D), if any.
    pub video: Option<usize>,
    /// Index of the audio part (4-D), if any.
    pub audio: Option<usize>,
}

impl Layout {
    /// Classifies latent parts by rank: 5-D video, 4-D audio.
    pub fn new(shapes: Vec<Shape>) -> Result<Self, NodeError> {
        let mut video = None;
        let mut audio = None;
        for (i, s) in shapes.iter().enumerate() {
            match s.rank() {
                5 if video.is_none() => video = Some(i),
                4 if audio.is_none() => audio = Some(i),
                _ => {
                    return Err(NodeError::Value(format!(
                        "the LTX-2 model cannot sample a latent part of shape {:?}",
                        s.dims()
                    )));
                }
            }
        }
        Ok(Self {
            shapes,
            video,
            audio,
        })
    }

    fn batch(&self) -> usize {
        self.shapes.first().map_or(1, |s| s.dims()[0])
    }

    fn video_grid(&self) -> Option<VideoGrid> {
        self.video.map(|i| {
            let d = self.shapes[i].dims();
            VideoGrid {
                frames: d[2],
                height: d[3],
                width: d[4],
            }
        })
    }
}

/// One conditioning entry turned into model inputs (independent of the state and sigma).
struct PreparedCond {
    video_context: Tensor,
    audio_context: Tensor,
    video_positions: Option<Tensor>,
    audio_positions: Option<Tensor>,
    guide_bias: Option<AttentionBias>,
    /// What must agree for two entries to share one batched model pass.
    signature: Signature,
}

/// Everything of an entry besides its text that shapes the model inputs.
#[derive(Debug, Clone, PartialEq)]
struct Signature {
    frame_rate: u64,
    keyframes: Option<Vec<f32>>,
    guide_weights: Vec<(usize, u64)>,
    video_context: Vec<usize>,
    audio_context: Vec<usize>,
}

impl PreparedCond {
    /// The positive and negative entries stacked on the batch axis (ComfyUI batches cond and
    /// uncond into one model call when their inputs are compatible).
    fn pair(pos: &PreparedCond, neg: &PreparedCond) -> Result<Option<Self>, NodeError> {
        if pos.signature != neg.signature {
            return Ok(None);
        }
        let cat =
            |a: &Tensor, b: &Tensor| -> Result<Tensor, NodeError> { Ok(Tensor::cat(&[a, b], 0)?) };
        let both = |a: &Option<Tensor>| -> Result<Option<Tensor>, NodeError> {
            a.as_ref().map(|t| cat(t, t)).transpose()
        };
        Ok(Some(Self {
            video_context: cat(&pos.video_context, &neg.video_context)?,
            audio_context: cat(&pos.audio_context, &neg.audio_context)?,
            video_positions: both(&pos.video_positions)?,
            audio_positions: both(&pos.audio_positions)?,
            guide_bias: pos.guide_bias.clone(),
            signature: pos.signature.clone(),
        }))
    }
}

/// The guided LTX-2 model for one sampling run.
pub struct LtxAvDenoiser<'a> {
    model: &'a LtxAvModel,
    layout: Layout,
    masks: Option<Vec<Tensor>>,
    positive: Vec<PreparedCond>,
    negative: Vec<PreparedCond>,
    /// Positive and negative batched together, when they are compatible.
    pair: Option<PreparedCond>,
    cfg: f64,
}

impl<'a> LtxAvDenoiser<'a> {
    /// Prepares the conditioning for `layout`; `masks` are the per-part denoise masks at full
    /// latent shape (on the model's device) or `None`.
    pub fn new(
        model: &'a LtxAvModel,
        layout: Layout,
        masks: Option<Vec<Tensor>>,
        positive: &Conditioning,
        negative: Option<&Conditioning>,
        cfg: f64,
        device: &Device,
    ) -> Result<Self, NodeError> {
        let prepare = |c: &Conditioning| -> Result<Vec<PreparedCond>, NodeError> {
            if c.entries.is_empty() {
                return Err(NodeError::Value("empty conditioning".into()));
            }
            c.entries
                .iter()
                .map(|e| prepare_entry(model, &layout, e, device))
                .collect()
        };
        let positive = prepare(positive)?;
        let negative = match negative {
            Some(n) if !cfg_skips_uncond(cfg) => prepare(n)?,
            _ => Vec::new(),
        };
        if !cfg_skips_uncond(cfg) && negative.is_empty() {
            return Err(NodeError::Value(format!(
                "cfg {cfg} needs a negative conditioning"
            )));
        }
        let pair = match (positive.as_slice(), negative.as_slice()) {
            ([p], [n]) => PreparedCond::pair(p, n)?,
            _ => None,
        };
        Ok(Self {
            model,
            layout,
            masks,
            positive,
            negative,
            pair,
            cfg,
        })
    }

    /// Runs the positive and negative passes separately even when they could share one batched
    /// call (half the activation memory, twice the calls).
    pub fn without_batching(mut self) -> Self {
        self.pair = None;
        self
    }

    /// Whether the positive and negative passes share one batched model call.
    pub fn batches_cfg(&self) -> bool {
        self.pair.is_some()
    }

    /// The guided denoised prediction for the packed state `x` `[B, 1, N]` at `sigma`.
    pub fn denoise(&self, x: &Tensor, sigma: f32) -> Result<Tensor, NodeError> {
        if let Some(pair) = &self.pair {
            let mut both = self.evaluate(pair, x, sigma, 2)?;
            let uncond = both.pop();
            let cond = both.pop();
            if let (Some(cond), Some(uncond)) = (cond, uncond) {
                return Ok(cfg_combine(&cond, &uncond, self.cfg)?);
            }
        }
        let cond = self.average(&self.positive, x, sigma)?;
        if cfg_skips_uncond(self.cfg) {
            return Ok(cond);
        }
        let uncond = self.average(&self.negative, x, sigma)?;
        Ok(cfg_combine(&cond, &uncond, self.cfg)?)
    }

    /// Mean prediction over conditioning entries (ComfyUI sums area-less entries with equal
    /// weights and divides by their count).
    fn average(&self, conds: &[PreparedCond], x: &Tensor, sigma: f32) -> Result<Tensor, NodeError> {
        let mut sum: Option<Tensor> = None;
        for c in conds {
            let d = self
                .evaluate(c, x, sigma, 1)?
                .pop()
                .ok_or_else(|| NodeError::Runtime("the model returned nothing".into()))?;
            sum = Some(match sum {
                None => d,
                Some(s) => (s + d)?,
            });
        }
        let sum = sum.ok_or_else(|| NodeError::Value("empty conditioning".into()))?;
        if conds.len() == 1 {
            Ok(sum)
        } else {
            Ok(sum.affine(1.0 / conds.len() as f64, 0.0)?)
        }
    }

    fn timesteps(
        &self,
        part: usize,
        sigma: f32,
        tokens: usize,
        device: &Device,
    ) -> Result<Tensor, NodeError> {
        let batch = self.layout.batch();
        let Some(mask) = self.masks.as_ref().map(|m| &m[part]) else {
            return Ok(Tensor::full(sigma, (batch, tokens, 1), device)?);
        };
        let per_token = if Some(part) == self.layout.video {
            video_to_tokens(&mask.narrow(1, 0, 1)?)?
        } else {
            let m = mask.narrow(1, 0, 1)?.narrow(3, 0, 1)?;
            m.reshape((batch, tokens, 1))?
        };
        let sigma_t = Tensor::new(sigma, device)?;
        Ok(per_token.to_dtype(DType::F32)?.broadcast_mul(&sigma_t)?)
    }

    /// One model pass over `copies` copies of the state stacked on the batch axis (one per
    /// conditioning stacked in `c`): `x - sigma · velocity` for each copy, packed.
    fn evaluate(
        &self,
        c: &PreparedCond,
        x: &Tensor,
        sigma: f32,
        copies: usize,
    ) -> Result<Vec<Tensor>, NodeError> {
        let parts = unpack_latents(x, &self.layout.shapes)?;
        let batch = self.layout.batch();
        let device = x.device();
        let stack = |t: Tensor| -> Result<Tensor, NodeError> {
            if copies == 1 {
                Ok(t)
            } else {
                Ok(Tensor::cat(&vec![&t; copies], 0)?)
            }
        };
        let sigma_b = Tensor::full(sigma, batch * copies, device)?;
        let dtype = self.model.dtype();
        let video = match (self.layout.video, &c.video_positions) {
            (Some(i), Some(pos)) => {
                let tokens = stack(video_to_tokens(&parts[i])?.to_dtype(dtype)?)?;
                let n = tokens.dim(1)?;
                let mut input = ModalityInput::new(
                    tokens,
                    stack(self.timesteps(i, sigma, n, device)?)?,
                    sigma_b.clone(),
                    pos.clone(),
                    c.video_context.clone(),
                );
                input.self_attention_bias = c.guide_bias.clone();
                Some(input)
            }
            _ => None,
        };
        let audio = match (self.layout.audio, &c.audio_positions) {
            (Some(i), Some(pos)) => {
                let tokens = stack(audio_to_tokens(&parts[i])?.to_dtype(dtype)?)?;
                let n = tokens.dim(1)?;
                Some(ModalityInput::new(
                    tokens,
                    stack(self.timesteps(i, sigma, n, device)?)?,
                    sigma_b.clone(),
                    pos.clone(),
                    c.audio_context.clone(),
                ))
            }
            _ => None,
        };
        let opts = ForwardOptions {
            perturbations: None,
            cross_modal_timesteps: CrossModalTimesteps::OwnTokenTimesteps,
        };
        let out = self.model.forward(video.as_ref(), audio.as_ref(), &opts)?;
        let mut velocity = Vec::with_capacity(parts.len());
        for (i, shape) in self.layout.shapes.iter().enumerate() {
            let d = shape.dims();
            let v = if Some(i) == self.layout.video {
                let t = out
                    .video
                    .as_ref()
                    .ok_or_else(|| NodeError::Runtime("the model returned no video".into()))?;
                tokens_to_video(t, d[2], d[3], d[4])?
            } else {
                let t = out
                    .audio
                    .as_ref()
                    .ok_or_else(|| NodeError::Runtime("the model returned no audio".into()))?;
                tokens_to_audio(t, d[1], d[3])?
            };
            velocity.push(v.to_dtype(DType::F32)?);
        }
        let sigma_t = Tensor::new(sigma, device)?;
        (0..copies)
            .map(|k| {
                let mine: Vec<Tensor> = velocity
                    .iter()
                    .map(|v| v.narrow(0, k * batch, batch))
                    .collect::<Result<_, _>>()?;
                let (v, _) = pack_latents(&mine)?;
                Ok((x - v.broadcast_mul(&sigma_t)?)?)
            })
            .collect()
    }
}

/// Splits the text features, builds positions and the guide bias for one entry.
fn prepare_entry(
    model: &LtxAvModel,
    layout: &Layout,
    e: &CondEntry,
    device: &Device,
) -> Result<PreparedCond, NodeError> {
    let batch = layout.batch();
    let dtype = model.dtype();
    let width = e.cross_attn.dim(2)?;
    let context = |start: usize, len: usize| -> Result<Tensor, NodeError> {
        let t = e.cross_attn.narrow(2, start, len)?;
        let (b, l, d) = t.dims3()?;
        let t = if b == batch {
            t
        } else {
            t.narrow(0, 0, 1)?.broadcast_as((batch, l, d))?
        };
        Ok(t.contiguous()?.to_device(device)?.to_dtype(dtype)?)
    };
    let video_context = context(0, e.video_width)?;
    let audio_context = context(e.video_width, width - e.video_width)?;
    let fps = e.frame_rate.unwrap_or(DEFAULT_FRAME_RATE);
    let (video_positions, guide_bias) = match layout.video_grid() {
        Some(grid) => (
            Some(video_positions(model, grid, batch, fps, e, device)?),
            guide_bias(grid, e, dtype, device)?,
        ),
        None => (None, None),
    };
    let audio_positions = match layout.audio {
        Some(i) => {
            let frames = layout.shapes[i].dims()[2];
            Some(audio_positions(
                batch,
                frames,
                AudioTiming::default(),
                device,
            )?)
        }
        None => None,
    };
    let signature = Signature {
        frame_rate: fps.to_bits(),
        keyframes: e
            .keyframe_idxs
            .as_ref()
            .map(|k| k.flatten_all()?.to_dtype(DType::F32)?.to_vec1())
            .transpose()?,
        guide_weights: e
            .guide_entries
            .iter()
            .map(|g| (g.pre_filter_count, g.strength.to_bits()))
            .collect(),
        video_context: video_context.dims().to_vec(),
        audio_context: audio_context.dims().to_vec(),
    };
    Ok(PreparedCond {
        video_context,
        audio_context,
        video_positions,
        audio_positions,
        guide_bias,
        signature,
    })
}

/// Video token positions: pixel bounds (causal fix), guide bounds from `keyframe_idxs`, time
/// multiplied by `1 / frame_rate` in f32 as ComfyUI does.
fn video_positions(
    model: &LtxAvModel,
    grid: VideoGrid,
    batch: usize,
    fps: f64,
    e: &CondEntry,
    device: &Device,
) -> Result<Tensor, NodeError> {
    if fps <= 0.0 {
        return Err(NodeError::Value(format!(
            "frame_rate {fps} is not positive (LTXVConditioning)"
        )));
    }
    let causal = model.config().causal_temporal_positioning;
    let mut coords = video_pixel_coords(batch, grid, ScaleFactors::default(), causal, device)?;
    if let Some(idxs) = &e.keyframe_idxs {
        let per_frame = grid.height * grid.width;
        let n = idxs.dim(2)?;
        if per_frame == 0 || n % per_frame != 0 || n > grid.tokens() {
            return Err(NodeError::Value(format!(
                "{n} guide tokens do not fit the {}x{} latent (guides added at another \
                 resolution: use LTXVCropGuides before upscaling)",
                grid.height, grid.width
            )));
        }
        let idxs = idxs
            .to_device(device)?
            .to_dtype(DType::F32)?
            .broadcast_as((batch, 3, n, 2))?
            .contiguous()?;
        coords = with_guide_coords(&coords, &idxs)?;
    }
    let time = coords.narrow(1, 0, 1)?.affine(1.0 / fps, 0.0)?;
    Ok(Tensor::cat(&[&time, &coords.narrow(1, 1, 2)?], 1)?)
}

/// ComfyUI's guide attention bias: `log(strength)` between generated and guide tokens when a
/// guide has strength != 1 (pixel masks are not supported).
fn guide_bias(
    grid: VideoGrid,
    e: &CondEntry,
    dtype: DType,
    device: &Device,
) -> Result<Option<AttentionBias>, NodeError> {
    if e.guide_entries
        .iter()
        .all(|g| g.strength == 1.0 && g.pixel_mask.is_none())
    {
        return Ok(None);
    }
    if e.guide_entries.iter().any(|g| g.pixel_mask.is_some()) {
        return Err(NodeError::Value(
            "guide attention pixel masks are not supported".into(),
        ));
    }
    let weights: Vec<f32> = e
        .guide_entries
        .iter()
        .flat_map(|g| std::iter::repeat_n(g.strength as f32, g.pre_filter_count))
        .collect();
    let start = grid.tokens().checked_sub(weights.len()).ok_or_else(|| {
        NodeError::Value(format!(
            "{} guide tokens but only {} video tokens",
            weights.len(),
            grid.tokens()
        ))
    })?;
    let n = weights.len();
    let w = Tensor::from_vec(weights, n, device)?;
    Ok(Some(AttentionBias::guide(start, &w, dtype)?))
}
