//! What `SamplerCustomAdvanced` (and `KSampler`) run: ComfyUI's `CFGGuider.sample` for LTX-2
//! (`ltx2-nodes.md` §4.10, §6).
//!
//! The latent's parts (video, audio) are packed into one `[B, 1, N]` tensor, as are the initial
//! noise (seeded, torch-exact, video first then audio from one generator) and the denoise masks
//! (each resized to its part's shape, missing parts all ones). The sampler then runs from
//! `sigma0 · noise + (1 - sigma0) · latent` with the masked, guided model, and the result is
//! unpacked. Every step reports progress (which also checks for interruption).

use std::cell::RefCell;

use candle_core::{DType, Device, Shape, Tensor};
use models::sampling::guider::{SampleJob, sample as guided_sample};
use models::sampling::latent::{pack_latents, reshape_mask, unpack_latents};
use models::sampling::noise::{NoiseSource, RandomNoise, TorchNoiseSource, zero_noise};
use models::sampling::samplers::{Sampler, StepInfo};
use models::sampling::torch_rng::NormalKernel;

use super::ltxav::{Layout, LtxAvDenoiser};
use super::values::{Guider, Noise};
use crate::ltxv::models::transformer;
use crate::{Ctx, Latent, LatentSamples, NodeError};

/// Latent keys the sampler drops from its outputs.
const DROPPED_KEYS: [&str; 2] = ["downscale_ratio_spacial", "downscale_ratio_temporal"];

/// One sampling run.
pub struct SampleRequest<'a> {
    /// Model, conditioning and CFG scale.
    pub guider: &'a Guider,
    /// Initial noise.
    pub noise: Noise,
    /// The sampler.
    pub sampler: Sampler,
    /// The schedule.
    pub sigmas: &'a [f32],
    /// The latent to start from.
    pub latent: &'a Latent,
}

/// The node's two outputs.
pub struct SampleResult {
    /// The sampled latent.
    pub output: Latent,
    /// The model's denoised prediction at the last step.
    pub denoised: Latent,
}

fn with_samples(base: &Latent, mut parts: Vec<Tensor>) -> Latent {
    let mut out = base.clone();
    out.samples = match (&base.samples, parts.len()) {
        (LatentSamples::Single(_), 1) => match parts.pop() {
            Some(t) => LatentSamples::Single(t),
            None => LatentSamples::Nested(parts),
        },
        _ => LatentSamples::Nested(parts),
    };
    out
}

/// The denoise masks at full part shapes, or `None` when the latent has no `noise_mask`.
fn part_masks(latent: &Latent, shapes: &[Shape]) -> Result<Option<Vec<Tensor>>, NodeError> {
    let Some(mask) = &latent.noise_mask else {
        return Ok(None);
    };
    let given = mask.parts();
    let masks = shapes
        .iter()
        .enumerate()
        .map(|(i, shape)| match given.get(i) {
            Some(m) => Ok(reshape_mask(&m.to_device(&Device::Cpu)?, shape)?),
            None => Ok(Tensor::ones(shape, DType::F32, &Device::Cpu)?),
        })
        .collect::<Result<Vec<_>, NodeError>>()?;
    Ok(Some(masks))
}

fn noise_parts(noise: Noise, latent: &Latent, shapes: &[Shape]) -> Result<Vec<Tensor>, NodeError> {
    Ok(match noise {
        Noise::Random { seed } => {
            RandomNoise::new(seed).generate(shapes, latent.batch_index.as_deref(), &Device::Cpu)?
        }
        Noise::Disabled => zero_noise(shapes, &Device::Cpu)?,
    })
}

/// Runs the guided sampler over the request (see the module docs).
pub fn run(ctx: &Ctx, req: &SampleRequest) -> Result<SampleResult, NodeError> {
    let mut base = req.latent.clone();
    for key in DROPPED_KEYS {
        base.extra.remove(key);
    }
    if req.sigmas.is_empty() {
        return Ok(SampleResult {
            output: base.clone(),
            denoised: base,
        });
    }
    let parts: Vec<Tensor> = req
        .latent
        .samples
        .parts()
        .into_iter()
        .map(|t| t.to_device(&Device::Cpu)?.to_dtype(DType::F32))
        .collect::<Result<_, _>>()?;
    let shapes: Vec<Shape> = parts.iter().map(|t| t.shape().clone()).collect();
    let noise = noise_parts(req.noise, req.latent, &shapes)?;
    let masks = part_masks(req.latent, &shapes)?;
    let device = ctx.env.device.clone();
    let on_device = |ts: Vec<Tensor>| -> Result<Vec<Tensor>, NodeError> {
        ts.into_iter().map(|t| Ok(t.to_device(&device)?)).collect()
    };
    let (latent_packed, _) = pack_latents(&on_device(parts)?)?;
    let (noise_packed, _) = pack_latents(&on_device(noise)?)?;
    let masks = masks.map(on_device).transpose()?;
    let mask_packed = masks
        .as_ref()
        .map(|m| pack_latents(m).map(|(t, _)| t))
        .transpose()?;

    let model = transformer(ctx.env, &req.guider.model)?;
    let layout = Layout::new(shapes.clone())?;
    let denoiser = LtxAvDenoiser::new(
        &model,
        layout,
        masks,
        &req.guider.positive,
        req.guider.negative.as_deref(),
        req.guider.cfg,
        &device,
    )?;
    // Node errors raised inside the sampler's callbacks, returned as they are.
    let failure: RefCell<Option<NodeError>> = RefCell::new(None);
    let keep = |e: NodeError| {
        let text = e.to_string();
        *failure.borrow_mut() = Some(e);
        models::Error::Input(text)
    };
    let mut denoise = |x: &Tensor, sigma: f32| -> models::Result<Tensor> {
        denoiser.denoise(x, sigma).map_err(keep)
    };
    let mut source = TorchNoiseSource::comfy_cpu(req.noise.seed(), NormalKernel::Avx2);
    let noise_source: Option<&mut dyn NoiseSource> = if req.sampler.needs_noise() {
        Some(&mut source)
    } else {
        None
    };
    let mut last_denoised: Option<Tensor> = None;
    let mut on_step = |info: &StepInfo| -> models::Result<()> {
        last_denoised = Some(info.denoised.clone());
        ctx.progress(info.step + 1, info.steps).map_err(keep)
    };
    let job = SampleJob {
        sampler: &req.sampler,
        sigmas: req.sigmas,
        noise: &noise_packed,
        latent: &latent_packed,
        denoise_mask: mask_packed.as_ref(),
    };
    let result = guided_sample(&job, &mut denoise, noise_source, &mut on_step);
    let samples = match result {
        Ok(s) => s,
        Err(e) => return Err(failure.take().unwrap_or(NodeError::Model(e))),
    };
    let to_parts = |t: &Tensor| -> Result<Vec<Tensor>, NodeError> {
        unpack_latents(&t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?, &shapes)?
            .into_iter()
            .map(|p| Ok(p.contiguous()?))
            .collect()
    };
    let output = with_samples(&base, to_parts(&samples)?);
    let denoised = match last_denoised {
        Some(d) => with_samples(&base, to_parts(&d)?),
        None => output.clone(),
    };
    Ok(SampleResult { output, denoised })
}
