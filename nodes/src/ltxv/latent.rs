//! LTX latent nodes: EmptyLTXVLatentVideo, LTXVEmptyLatentAudio, LTXVConcatAVLatent,
//! LTXVSeparateAVLatent, LTXVLatentUpsampler, and the core SetLatentNoiseMask
//! (`ltx2-nodes.md` §3.1, §3.11-3.13, §3.16, §5).

use candle_core::{DType, Device, Tensor};

use super::models::{upsampler, video_vae};
use super::types::ModelInputs;
use crate::schema::MAX_RESOLUTION;
use crate::value::Json;
use crate::{
    Ctx, InputDef, Inputs, Latent, LatentSamples, NodeDef, NodeError, NodeSchema, OutputDef,
    Outputs, Registry, Value,
};

const LT: &str = "comfy_extras.nodes_lt";
const LT_AUDIO: &str = "comfy_extras.nodes_lt_audio";
const CATEGORY: &str = "latent/video/ltxv";

/// Registers the latent nodes.
pub fn register(r: &mut Registry) {
    r.register(empty_video());
    r.register(empty_audio());
    r.register(concat_av());
    r.register(separate_av());
    r.register(set_noise_mask());
    r.register(latent_upsampler());
}

fn empty_video() -> NodeDef {
    let schema = NodeSchema::v3("EmptyLTXVLatentVideo", CATEGORY, LT)
        .input(
            InputDef::int("width")
                .default(768)
                .min(64)
                .max(MAX_RESOLUTION)
                .step(32),
        )
        .input(
            InputDef::int("height")
                .default(512)
                .min(64)
                .max(MAX_RESOLUTION)
                .step(32),
        )
        .input(
            InputDef::int("length")
                .default(97)
                .min(1)
                .max(MAX_RESOLUTION)
                .step(8),
        )
        .input(InputDef::int("batch_size").default(1).min(1).max(4096))
        .output(OutputDef::new("LATENT"));
    NodeDef::new(schema, run_empty_video)
}

fn run_empty_video(_: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let (w, h) = (inputs.usize("width")?, inputs.usize("height")?);
    let (length, batch) = (inputs.usize("length")?, inputs.usize("batch_size")?);
    let samples = Tensor::zeros(
        (batch, 128, length.saturating_sub(1) / 8 + 1, h / 32, w / 32),
        DType::F32,
        &Device::Cpu,
    )?;
    Ok(Outputs::one(Value::Latent(Latent::new(samples))))
}

fn empty_audio() -> NodeDef {
    let schema = NodeSchema::v3("LTXVEmptyLatentAudio", "latent/audio", LT_AUDIO)
        .display("LTXV Empty Latent Audio")
        .input(
            InputDef::int("frames_number")
                .tooltip("Number of frames.")
                .default(97)
                .min(1)
                .max(1000)
                .step(1)
                .opt("display", "number"),
        )
        .input(
            InputDef::socket("frame_rate", "FLOAT,INT")
                .tooltip("Number of frames per second.")
                .default(25.0)
                .opt("widgetType", "FLOAT")
                .min(1.0)
                .max(1000.0)
                .step(0.01)
                .opt("display", "number"),
        )
        .input(
            InputDef::int("batch_size")
                .tooltip("The number of latent audio samples in the batch.")
                .default(1)
                .min(1)
                .max(4096)
                .opt("display", "number"),
        )
        .input(
            InputDef::socket("audio_vae", "VAE")
                .opt("display_name", "Audio VAE")
                .tooltip("The Audio VAE model to get configuration from."),
        )
        .output(OutputDef::new("LATENT").named("Latent"));
    NodeDef::new(schema, run_empty_audio)
}

fn run_empty_audio(_: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let frames = inputs.usize("frames_number")?;
    let fps = inputs.number("frame_rate")?;
    if fps <= 0.0 {
        return Err(NodeError::Value(format!(
            "frame_rate must be positive, got {fps}"
        )));
    }
    let batch = inputs.usize("batch_size")?;
    let vae = inputs.vae("audio_vae")?;
    let cfg = &vae.audio("LTXVEmptyLatentAudio")?.config;
    let steps = cfg.latent_frames_for_video(frames, fps);
    let bins = cfg.mel_bins.unwrap_or(64) / 4;
    let samples = Tensor::zeros(
        (batch, cfg.z_channels, steps, bins),
        DType::F32,
        &Device::Cpu,
    )?;
    let mut latent = Latent::new(samples);
    latent.extra.insert("type".into(), Json::from("audio"));
    Ok(Outputs::one(Value::Latent(latent)))
}

fn concat_av() -> NodeDef {
    let schema = NodeSchema::v3("LTXVConcatAVLatent", CATEGORY, LT)
        .input(InputDef::socket("video_latent", "LATENT"))
        .input(InputDef::socket("audio_latent", "LATENT"))
        .output(OutputDef::new("LATENT").named("latent"));
    NodeDef::new(schema, run_concat_av)
}

/// Part 0 of a nested tensor, or the tensor itself.
fn first_part(s: &LatentSamples) -> Result<Tensor, NodeError> {
    s.first()
        .cloned()
        .ok_or_else(|| NodeError::Value("empty nested latent".into()))
}

fn single(s: &LatentSamples, what: &str) -> Result<Tensor, NodeError> {
    match s {
        LatentSamples::Single(t) => Ok(t.clone()),
        LatentSamples::Nested(_) => Err(NodeError::Value(format!("{what} is nested"))),
    }
}

fn run_concat_av(_: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let video = inputs.latent("video_latent")?;
    let audio = inputs.latent("audio_latent")?;
    // An AV latent given as the video: keep its video part (re-pairing with new audio).
    let v = first_part(&video.samples)?;
    let vm = video.noise_mask.as_ref().map(first_part).transpose()?;
    let a = single(&audio.samples, "the audio latent")?;
    let am = audio
        .noise_mask
        .as_ref()
        .map(|m| single(m, "the audio noise mask"))
        .transpose()?;
    let mut out = video.clone();
    out.extra.extend(audio.extra.clone());
    if audio.batch_index.is_some() {
        out.batch_index = audio.batch_index.clone();
    }
    out.noise_mask = if vm.is_some() || am.is_some() {
        let vm = match vm {
            Some(m) => m,
            None => v.ones_like()?,
        };
        let am = match am {
            Some(m) => m,
            None => a.ones_like()?,
        };
        Some(LatentSamples::Nested(vec![vm, am]))
    } else {
        None
    };
    out.samples = LatentSamples::Nested(vec![v, a]);
    Ok(Outputs::one(Value::Latent(out)))
}

fn separate_av() -> NodeDef {
    let schema = NodeSchema::v3("LTXVSeparateAVLatent", CATEGORY, LT)
        .description("LTXV Separate AV Latent")
        .input(InputDef::socket("av_latent", "LATENT"))
        .output(OutputDef::new("LATENT").named("video_latent"))
        .output(OutputDef::new("LATENT").named("audio_latent"));
    NodeDef::new(schema, run_separate_av)
}

fn two_parts(s: &LatentSamples, what: &str) -> Result<(Tensor, Tensor), NodeError> {
    match s {
        LatentSamples::Nested(parts) if parts.len() >= 2 => {
            Ok((parts[0].clone(), parts[1].clone()))
        }
        _ => Err(NodeError::Value(format!(
            "LTXVSeparateAVLatent: {what} is not an audio-video latent"
        ))),
    }
}

fn run_separate_av(_: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let av = inputs.latent("av_latent")?;
    let (v, a) = two_parts(&av.samples, "the input")?;
    let masks = av
        .noise_mask
        .as_ref()
        .map(|m| two_parts(m, "the noise mask"))
        .transpose()?;
    let mut video = av.clone();
    let mut audio = av.clone();
    video.samples = LatentSamples::Single(v);
    audio.samples = LatentSamples::Single(a);
    if let Some((vm, am)) = masks {
        video.noise_mask = Some(LatentSamples::Single(vm));
        audio.noise_mask = Some(LatentSamples::Single(am));
    }
    Ok(Outputs::new(vec![
        Value::Latent(video),
        Value::Latent(audio),
    ]))
}

fn set_noise_mask() -> NodeDef {
    let schema = NodeSchema::v1("SetLatentNoiseMask", "latent/inpaint")
        .display("Set Latent Noise Mask")
        .input(InputDef::socket("samples", "LATENT"))
        .input(InputDef::socket("mask", "MASK"))
        .output(OutputDef::new("LATENT"));
    NodeDef::new(schema, run_set_noise_mask)
}

fn run_set_noise_mask(_: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let mut out = inputs.latent("samples")?.clone();
    let mask = inputs.mask("mask")?;
    let dims = mask.dims();
    let (h, w) = match dims {
        [.., h, w] => (*h, *w),
        _ => {
            return Err(NodeError::Value(format!(
                "mask {dims:?} has fewer than 2 axes"
            )));
        }
    };
    out.noise_mask = Some(LatentSamples::Single(mask.reshape(((), 1, h, w))?));
    Ok(Outputs::one(Value::Latent(out)))
}

fn latent_upsampler() -> NodeDef {
    let schema = NodeSchema::v1("LTXVLatentUpsampler", "latent/video")
        .input(InputDef::socket("samples", "LATENT"))
        .input(InputDef::socket("upscale_model", "LATENT_UPSCALE_MODEL"))
        .input(InputDef::socket("vae", "VAE"))
        .output(OutputDef::new("LATENT"))
        .experimental();
    NodeDef::new(schema, run_latent_upsampler)
}

fn run_latent_upsampler(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let latent = inputs.latent("samples")?;
    let z = single(&latent.samples, "the latent to upsample")?;
    let model = upsampler(ctx.env, &*inputs.upscale_model("upscale_model")?)?;
    let vae = inputs.vae("vae")?;
    let vae = video_vae(ctx.env, vae.video("LTXVLatentUpsampler")?)?;
    let up = model
        .upsample_video(&z, vae.stats())?
        .to_device(&Device::Cpu)?
        .to_dtype(z.dtype())?;
    let mut out = latent.clone();
    out.samples = LatentSamples::Single(up);
    out.noise_mask = None;
    Ok(Outputs::one(Value::Latent(out)))
}

/// The single video tensor of a latent (nested AV latents are refused as ComfyUI fails on them).
pub fn plain_samples<'a>(latent: &'a Latent, node: &str) -> Result<&'a Tensor, NodeError> {
    match &latent.samples {
        LatentSamples::Single(t) => Ok(t),
        LatentSamples::Nested(_) => Err(NodeError::Value(format!(
            "{node}: apply it to the video latent before LTXVConcatAVLatent (got an AV latent)"
        ))),
    }
}

/// ComfyUI's `get_noise_mask`: a copy of the latent's mask, or ones `[B, 1, T, 1, 1]`.
pub fn noise_mask_or_ones(latent: &Latent, samples: &Tensor) -> Result<Tensor, NodeError> {
    match &latent.noise_mask {
        Some(LatentSamples::Single(m)) => Ok(m.copy()?),
        Some(LatentSamples::Nested(_)) => Err(NodeError::Value(
            "a nested noise mask on a video latent".into(),
        )),
        None => {
            let (b, _, t, _, _) = samples.dims5()?;
            Ok(Tensor::ones((b, 1, t, 1, 1), DType::F32, &Device::Cpu)?)
        }
    }
}
