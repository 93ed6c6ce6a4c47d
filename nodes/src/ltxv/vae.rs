//! VAE nodes: VAEEncode, VAEDecode, VAEDecodeTiled (video VAE), LTXVAudioVAEDecode and
//! LTXVAudioVAEEncode, plus
//! ComfyUI's LTX conventions around the video VAE ([`encode_pixels`], [`decode_latent`]).
//!
//! * encode: IMAGE `[N, H, W, C]` is centre-cropped to multiples of 32, its N images become the
//!   frames of one clip `[1, 3, N, H, W]` (N must be `1 + 8k`), mapped to `2x - 1` and encoded.
//! * decode: the decoder's `[B, 3, F, H, W]` becomes `(x + 1) / 2` clamped to 0..1 and IMAGE
//!   `[B·F, H, W, 3]`. LTX-2's decoder is timestep-conditioned and mixes noise into the latent
//!   (`0.025·noise + 0.975·latent`); ComfyUI draws that noise from the global RNG without a
//!   seed, here it comes from a fixed-seed generator so decodes are reproducible.

use candle_core::{DType, Device, Tensor};
use models::ltx2::video_vae::{TilingConfig, VideoVae};
use models::sampling::noise::RandomNoise;

use super::models::{audio_vae, video_vae};
use super::types::{ModelInputs, VideoVaeSource};
use crate::value::Audio;
use crate::{
    Ctx, Env, InputDef, Inputs, Latent, LatentSamples, NodeDef, NodeError, NodeSchema, OutputDef,
    Outputs, Registry, Value,
};

/// Seed of the decode noise (ComfyUI leaves it unseeded; see the module docs).
const DECODE_NOISE_SEED: u64 = 0;

/// Registers the VAE nodes.
pub fn register(r: &mut Registry) {
    r.register(vae_decode());
    r.register(vae_decode_tiled());
    r.register(vae_encode());
    r.register(audio_vae_decode());
    r.register(audio_vae_encode());
}

/// Encodes IMAGE frames `[N, H, W, C]` with the video VAE as ComfyUI's `VAE.encode` does for
/// LTX; returns the latent `[1, 128, (N-1)/8 + 1, H/32, W/32]` as f32 on the CPU.
pub fn encode_pixels(env: &Env, src: &VideoVaeSource, image: &Tensor) -> Result<Tensor, NodeError> {
    let (n, h, w, c) = image.dims4()?;
    if n == 0 || (n - 1) % 8 != 0 {
        return Err(NodeError::Value(
            "Invalid number of frames: Encode input must have 1 + 8 * x frames (e.g., 1, 9, \
             17, ...). Please check your input."
                .into(),
        ));
    }
    let (h32, w32) = (h / 32 * 32, w / 32 * 32);
    if h32 == 0 || w32 == 0 {
        return Err(NodeError::Value(format!(
            "image {w}x{h} is smaller than the VAE's 32-pixel grid"
        )));
    }
    let pixels = image
        .narrow(1, (h % 32) / 2, h32)?
        .narrow(2, (w % 32) / 2, w32)?
        .narrow(3, 0, c.min(3))?;
    let clip = pixels
        .permute((3, 0, 1, 2))?
        .unsqueeze(0)?
        .affine(2.0, -1.0)?
        .contiguous()?;
    let vae = video_vae(env, src)?;
    let latent = vae.encode(&clip)?;
    Ok(latent.to_device(&Device::Cpu)?.to_dtype(DType::F32)?)
}

/// The decoder noise for a latent shape (see the module docs).
fn decode_noise(vae: &VideoVae, latent: &Tensor) -> Result<Option<Tensor>, NodeError> {
    if !vae.decoder().is_timestep_conditioned() {
        return Ok(None);
    }
    let noise = RandomNoise::new(DECODE_NOISE_SEED).generate(
        std::slice::from_ref(latent.shape()),
        None,
        &Device::Cpu,
    )?;
    Ok(noise.into_iter().next())
}

/// Decodes a video latent `[B, 128, T, h, w]` to IMAGE `[B·F, H, W, 3]` (whole, or tiled).
pub fn decode_latent(
    env: &Env,
    src: &VideoVaeSource,
    latent: &Tensor,
    tiling: Option<&TilingConfig>,
) -> Result<Tensor, NodeError> {
    let vae = video_vae(env, src)?;
    let noise = decode_noise(&vae, latent)?;
    let video = match tiling {
        Some(t) => vae.decode_tiled(latent, None, noise.as_ref(), t)?,
        None => vae.decode(latent, None, noise.as_ref())?,
    };
    let video = video.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    let images = ((video + 1.0)? / 2.0)?.clamp(0f32, 1f32)?;
    let (b, c, f, h, w) = images.dims5()?;
    Ok(images
        .permute((0, 2, 3, 4, 1))?
        .reshape((b * f, h, w, c))?
        .contiguous()?)
}

/// The video part of a latent: a plain tensor, or the first part of a nested one.
pub fn video_part(latent: &Latent) -> Result<&Tensor, NodeError> {
    latent
        .samples
        .first()
        .ok_or_else(|| NodeError::Value("the latent has no samples".into()))
}

fn vae_decode() -> NodeDef {
    let schema = NodeSchema::v1("VAEDecode", "latent")
        .display("VAE Decode")
        .description("Decodes latent images back into pixel space images.")
        .input(InputDef::socket("samples", "LATENT").tooltip("The latent to be decoded."))
        .input(
            InputDef::socket("vae", "VAE").tooltip("The VAE model used for decoding the latent."),
        )
        .output(OutputDef::new("IMAGE").tooltip("The decoded image."))
        .aliases(&[
            "decode",
            "decode latent",
            "latent to image",
            "render latent",
        ]);
    NodeDef::new(schema, run_vae_decode)
}

fn run_vae_decode(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let vae = inputs.vae("vae")?;
    let latent = video_part(inputs.latent("samples")?)?;
    let images = decode_latent(ctx.env, vae.video("VAEDecode")?, latent, None)?;
    Ok(Outputs::one(Value::Image(images)))
}

fn vae_decode_tiled() -> NodeDef {
    let schema = NodeSchema::v1("VAEDecodeTiled", "_for_testing")
        .display("VAE Decode (Tiled)")
        .input(InputDef::socket("samples", "LATENT"))
        .input(InputDef::socket("vae", "VAE"))
        .input(
            InputDef::int("tile_size")
                .default(512)
                .min(64)
                .max(4096)
                .step(32),
        )
        .input(
            InputDef::int("overlap")
                .default(64)
                .min(0)
                .max(4096)
                .step(32),
        )
        .input(
            InputDef::int("temporal_size")
                .default(64)
                .min(8)
                .max(4096)
                .step(4)
                .tooltip("Only used for video VAEs: Amount of frames to decode at a time.")
                .optional(),
        )
        .input(
            InputDef::int("temporal_overlap")
                .default(8)
                .min(4)
                .max(4096)
                .step(4)
                .tooltip("Only used for video VAEs: Amount of frames to overlap.")
                .optional(),
        )
        .output(OutputDef::new("IMAGE"));
    NodeDef::new(schema, run_vae_decode_tiled)
}

fn optional_usize(inputs: &Inputs, name: &str, default: usize) -> Result<usize, NodeError> {
    if inputs.has(name) {
        inputs.usize(name)
    } else {
        Ok(default)
    }
}

fn run_vae_decode_tiled(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let vae = inputs.vae("vae")?;
    let src = vae.video("VAEDecodeTiled")?;
    let latent = video_part(inputs.latent("samples")?)?;
    let tiling = TilingConfig::from_comfy(
        inputs.usize("tile_size")?,
        inputs.usize("overlap")?,
        optional_usize(inputs, "temporal_size", 64)?,
        optional_usize(inputs, "temporal_overlap", 8)?,
        [8, 32, 32],
    );
    let images = decode_latent(ctx.env, src, latent, Some(&tiling))?;
    Ok(Outputs::one(Value::Image(images)))
}

fn vae_encode() -> NodeDef {
    let schema = NodeSchema::v1("VAEEncode", "latent")
        .display("VAE Encode")
        .input(InputDef::socket("pixels", "IMAGE"))
        .input(InputDef::socket("vae", "VAE"))
        .output(OutputDef::new("LATENT"))
        .aliases(&["encode", "encode image", "image to latent"]);
    NodeDef::new(schema, run_vae_encode)
}

fn run_vae_encode(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let vae = inputs.vae("vae")?;
    let latent = encode_pixels(ctx.env, vae.video("VAEEncode")?, inputs.image("pixels")?)?;
    Ok(Outputs::one(Value::Latent(Latent::new(latent))))
}

fn audio_vae_decode() -> NodeDef {
    let schema = NodeSchema::v3("LTXVAudioVAEDecode", "audio", "comfy_extras.nodes_lt_audio")
        .display("LTXV Audio VAE Decode")
        .input(InputDef::socket("samples", "LATENT").tooltip("The latent to be decoded."))
        .input(
            InputDef::socket("audio_vae", "VAE")
                .opt("display_name", "Audio VAE")
                .tooltip("The Audio VAE model used for decoding the latent."),
        )
        .output(OutputDef::new("AUDIO").named("Audio"));
    NodeDef::new(schema, run_audio_vae_decode)
}

fn run_audio_vae_decode(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let vae = inputs.vae("audio_vae")?;
    let src = vae.audio("LTXVAudioVAEDecode")?;
    let latent = inputs.latent("samples")?;
    // A nested AV latent decodes its last (audio) part.
    let z = match &latent.samples {
        LatentSamples::Single(t) => t,
        LatentSamples::Nested(parts) => parts
            .last()
            .ok_or_else(|| NodeError::Value("the latent has no parts".into()))?,
    };
    let model = audio_vae(ctx.env, src)?;
    let audio = model.decode(z)?;
    Ok(Outputs::one(Value::Audio(Audio {
        waveform: audio
            .waveform
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?,
        sample_rate: audio.sample_rate,
    })))
}

fn audio_vae_encode() -> NodeDef {
    let schema = NodeSchema::v3("LTXVAudioVAEEncode", "audio", "comfy_extras.nodes_lt_audio")
        .display("LTXV Audio VAE Encode")
        .input(InputDef::socket("audio", "AUDIO").tooltip("The audio to be encoded."))
        .input(
            InputDef::socket("audio_vae", "VAE")
                .opt("display_name", "Audio VAE")
                .tooltip("The Audio VAE model to use for encoding."),
        )
        .output(OutputDef::new("LATENT").named("Audio Latent"));
    NodeDef::new(schema, run_audio_vae_encode)
}

fn run_audio_vae_encode(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let vae = inputs.vae("audio_vae")?;
    let src = vae.audio("LTXVAudioVAEEncode")?;
    if !src.has_encoder {
        return Err(NodeError::Value(
            "LTXVAudioVAEEncode: this audio VAE file has no encoder".into(),
        ));
    }
    let audio = match inputs.get("audio") {
        Some(Value::Audio(a)) => a,
        Some(other) => {
            return Err(NodeError::Value(format!(
                "input 'audio' expected AUDIO, got {}",
                other.type_name()
            )));
        }
        None => return Err(NodeError::Value("missing input 'audio'".into())),
    };
    let model = audio_vae(ctx.env, src)?;
    let latent = model
        .encode_waveform(&audio.waveform, audio.sample_rate)?
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?;
    let mut out = Latent::new(latent);
    out.extra
        .insert("type".into(), crate::value::Json::from("audio"));
    Ok(Outputs::one(Value::Latent(out)))
}
