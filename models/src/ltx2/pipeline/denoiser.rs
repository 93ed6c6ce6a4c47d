//! One guided denoising step of both streams (ltx-pipelines'
//! `multi_modal_guider_factory_denoising_func`): the transformer passes a step needs, and
//! their combination by each stream's [`GuiderParams`].
//!
//! Passes, each an X0 (denoised) prediction of both streams:
//! * positive: the positive prompt (a stream that skips this step is disabled);
//! * negative: the negative prompt, when either stream's `cfg_scale` is not 1;
//! * perturbed: the positive inputs with the self-attention of the STG blocks skipped (video
//!   and/or audio, for the streams whose `stg_scale` is not 0);
//! * isolated: the positive inputs with both audio<->video cross-attentions removed in every
//!   block, when either stream's `modality_scale` is not 1.
//!
//! ltx-core runs the passes as separate calls ([`PassBatching::Sequential`]);
//! [`PassBatching::Batched`] stacks them along the batch axis into one call (same result up to
//! float rounding, more memory, fewer kernel launches).

use candle_core::Tensor;

use super::guidance::{GuidancePasses, GuiderParams, GuiderSchedule};
use super::state::LatentState;
use crate::ltx2::transformer::{
    AvOutput, BatchPerturbations, ForwardOptions, LtxAvModel, ModalityInput, Perturbation,
};
use crate::{Error, Result};

/// Text contexts of both streams (the embeddings connectors' outputs).
#[derive(Debug, Clone)]
pub struct AvContexts {
    /// Video context `[B, S, caption_channels]`.
    pub video: Tensor,
    /// Audio context `[B, S, caption_channels]`.
    pub audio: Tensor,
}

/// How the passes of a step are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PassBatching {
    /// One transformer call per pass (ltx-core).
    #[default]
    Sequential,
    /// All passes of a step in one call, stacked along the batch axis (falls back to
    /// sequential calls on a step where one stream skips, since that stream is then disabled
    /// in the positive pass only).
    Batched,
}

/// Guidance of both streams.
#[derive(Debug, Clone)]
pub struct AvGuidance {
    /// Video stream parameters by sigma.
    pub video: GuiderSchedule,
    /// Audio stream parameters by sigma.
    pub audio: GuiderSchedule,
    /// Positive prompt contexts.
    pub positive: AvContexts,
    /// Negative prompt contexts (required when a stream uses CFG).
    pub negative: Option<AvContexts>,
    /// How passes are run.
    pub batching: PassBatching,
}

/// Which extra pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PassKind {
    Positive,
    Negative,
    Perturbed,
    Isolated,
}

/// One transformer pass: contexts, perturbations and whether each stream is enabled.
struct Pass<'a> {
    kind: PassKind,
    contexts: &'a AvContexts,
    perturbations: Vec<Perturbation>,
    video_enabled: bool,
    audio_enabled: bool,
}

/// The stateful step function: remembers the last guided predictions for `skip_step`.
#[derive(Debug)]
pub struct GuidedDenoiser<'a> {
    model: &'a LtxAvModel,
    guidance: &'a AvGuidance,
    last: Option<(Tensor, Tensor)>,
}

impl<'a> GuidedDenoiser<'a> {
    /// A denoiser for one sampling run.
    pub fn new(model: &'a LtxAvModel, guidance: &'a AvGuidance) -> Self {
        Self {
            model,
            guidance,
            last: None,
        }
    }

    /// Guided denoised tokens `(video, audio)` of step `step` of `sigmas`.
    pub fn denoise(
        &mut self,
        video: &LatentState,
        audio: &LatentState,
        sigmas: &[f32],
        step: usize,
    ) -> Result<(Tensor, Tensor)> {
        let sigma = *sigmas.get(step).ok_or_else(|| {
            Error::Input(format!(
                "step {step} outside a schedule of {}",
                sigmas.len()
            ))
        })?;
        let vp = self.guidance.video.params_at(sigma as f64);
        let ap = self.guidance.audio.params_at(sigma as f64);
        let (v_skip, a_skip) = (vp.skips_step(step), ap.skips_step(step));
        if v_skip && a_skip {
            return self.last_predictions();
        }
        let passes = self.passes(vp, ap, v_skip, a_skip)?;
        let inputs = StepInputs {
            video,
            audio,
            sigma,
        };
        let outputs = match self.guidance.batching {
            PassBatching::Batched if !v_skip && !a_skip => self.run_batched(&inputs, &passes)?,
            _ => passes
                .iter()
                .map(|p| self.run_pass(&inputs, p))
                .collect::<Result<Vec<_>>>()?,
        };
        let (cond, others) = split_passes(&passes, outputs)?;
        let video_out = if v_skip {
            self.last_predictions()?.0
        } else {
            vp.combine(&cond.0, &others.0)?
        };
        let audio_out = if a_skip {
            self.last_predictions()?.1
        } else {
            ap.combine(&cond.1, &others.1)?
        };
        self.last = Some((video_out.clone(), audio_out.clone()));
        Ok((video_out, audio_out))
    }

    fn last_predictions(&self) -> Result<(Tensor, Tensor)> {
        self.last
            .clone()
            .ok_or_else(|| Error::Input("skip_step skips a step before any prediction".into()))
    }

    /// The passes a step needs, positive first.
    fn passes(
        &self,
        vp: &GuiderParams,
        ap: &GuiderParams,
        v_skip: bool,
        a_skip: bool,
    ) -> Result<Vec<Pass<'a>>> {
        let g = self.guidance;
        let pass = |kind, contexts, perturbations, v_on, a_on| Pass {
            kind,
            contexts,
            perturbations,
            video_enabled: v_on,
            audio_enabled: a_on,
        };
        let mut passes = vec![pass(
            PassKind::Positive,
            &g.positive,
            vec![],
            !v_skip,
            !a_skip,
        )];
        if vp.needs_negative() || ap.needs_negative() {
            let negative = g.negative.as_ref().ok_or_else(|| {
                Error::Input("negative context is required for CFG guidance".into())
            })?;
            passes.push(pass(PassKind::Negative, negative, vec![], true, true));
        }
        if vp.needs_perturbed() || ap.needs_perturbed() {
            let mut stg = Vec::new();
            if vp.needs_perturbed() {
                stg.push(stg_perturbation(
                    vp,
                    Perturbation::skip_video_self_attention,
                ));
            }
            if ap.needs_perturbed() {
                stg.push(stg_perturbation(
                    ap,
                    Perturbation::skip_audio_self_attention,
                ));
            }
            passes.push(pass(
                PassKind::Perturbed,
                &g.positive,
                stg,
                !v_skip,
                !a_skip,
            ));
        }
        if vp.needs_isolated() || ap.needs_isolated() {
            let iso = Perturbation::isolate_modalities();
            passes.push(pass(PassKind::Isolated, &g.positive, iso, !v_skip, !a_skip));
        }
        Ok(passes)
    }

    /// One pass as its own transformer call.
    fn run_pass(&self, inputs: &StepInputs, pass: &Pass) -> Result<AvOutput> {
        let batch = inputs.video.latent.dim(0)?;
        let mut video = inputs.modality(inputs.video, &pass.contexts.video)?;
        let mut audio = inputs.modality(inputs.audio, &pass.contexts.audio)?;
        video.enabled = pass.video_enabled;
        audio.enabled = pass.audio_enabled;
        let opts = options(
            (!pass.perturbations.is_empty())
                .then(|| BatchPerturbations::uniform(pass.perturbations.clone(), batch)),
        );
        self.model.denoise(Some(&video), Some(&audio), &opts)
    }

    /// All passes in one call, stacked along the batch axis, split back per pass.
    fn run_batched(&self, inputs: &StepInputs, passes: &[Pass]) -> Result<Vec<AvOutput>> {
        let batch = inputs.video.latent.dim(0)?;
        let stack =
            |state: &LatentState, context: fn(&AvContexts) -> &Tensor| -> Result<ModalityInput> {
                let contexts: Vec<&Tensor> = passes.iter().map(|p| context(p.contexts)).collect();
                let mut m = inputs.modality(state, contexts[0])?;
                let n = passes.len();
                m.latent = repeat_batch(&m.latent, n)?;
                m.timesteps = repeat_batch(&m.timesteps, n)?;
                m.positions = repeat_batch(&m.positions, n)?;
                m.context = Tensor::cat(&contexts, 0)?;
                Ok(m)
            };
        let video = stack(inputs.video, |c| &c.video)?;
        let audio = stack(inputs.audio, |c| &c.audio)?;
        let items = passes
            .iter()
            .flat_map(|p| std::iter::repeat_n(p.perturbations.clone(), batch))
            .collect();
        let out = self.model.denoise(
            Some(&video),
            Some(&audio),
            &options(Some(BatchPerturbations { items })),
        )?;
        let (Some(v), Some(a)) = (out.video, out.audio) else {
            return Err(Error::Input("the model returned no video or audio".into()));
        };
        (0..passes.len())
            .map(|i| {
                Ok(AvOutput {
                    video: Some(v.narrow(0, i * batch, batch)?),
                    audio: Some(a.narrow(0, i * batch, batch)?),
                })
            })
            .collect()
    }
}

/// The latent states and sigma of a step.
struct StepInputs<'s> {
    video: &'s LatentState,
    audio: &'s LatentState,
    sigma: f32,
}

impl StepInputs<'_> {
    /// ltx-core's `modality_from_latent_state`.
    fn modality(&self, state: &LatentState, context: &Tensor) -> Result<ModalityInput> {
        let device = state.latent.device();
        Ok(ModalityInput::new(
            state.latent.clone(),
            state.timesteps(self.sigma)?,
            Tensor::new(&[self.sigma], device)?,
            state.positions.clone(),
            context.clone(),
        ))
    }
}

fn options(perturbations: Option<BatchPerturbations>) -> ForwardOptions {
    ForwardOptions {
        perturbations,
        ..ForwardOptions::default()
    }
}

/// A stream's STG perturbation over its `stg_blocks` (`None` = every block).
fn stg_perturbation(p: &GuiderParams, make: fn(&[usize]) -> Perturbation) -> Perturbation {
    match &p.stg_blocks {
        Some(blocks) => make(blocks),
        None => Perturbation {
            blocks: None,
            ..make(&[])
        },
    }
}

/// `t` repeated `n` times along the batch axis.
fn repeat_batch(t: &Tensor, n: usize) -> Result<Tensor> {
    if n == 1 {
        return Ok(t.clone());
    }
    Ok(Tensor::cat(&vec![t; n], 0)?)
}

type StreamPair<T> = (T, T);

/// The positive predictions and the other passes' predictions, per stream.
fn split_passes(
    passes: &[Pass],
    outputs: Vec<AvOutput>,
) -> Result<(StreamPair<Tensor>, StreamPair<GuidancePasses>)> {
    let mut cond = None;
    let mut others: StreamPair<GuidancePasses> = Default::default();
    for (pass, out) in passes.iter().zip(outputs) {
        let (Some(v), Some(a)) = (out.video, out.audio) else {
            return Err(Error::Input("the model returned no video or audio".into()));
        };
        let slot = |g: &mut GuidancePasses, t: Tensor| match pass.kind {
            PassKind::Negative => g.negative = Some(t),
            PassKind::Perturbed => g.perturbed = Some(t),
            PassKind::Isolated => g.isolated = Some(t),
            PassKind::Positive => {}
        };
        if pass.kind == PassKind::Positive {
            cond = Some((v, a));
        } else {
            slot(&mut others.0, v);
            slot(&mut others.1, a);
        }
    }
    let cond = cond.ok_or_else(|| Error::Input("no positive pass".into()))?;
    Ok((cond, others))
}
