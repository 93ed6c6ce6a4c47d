//! Image-to-video nodes: LTXVImgToVideoInplace writes the encoded image into the first latent
//! frames and lowers their denoise mask; LTXVImgToVideo (legacy) builds such a latent from
//! scratch (`ltx2-nodes.md` §3.2, §3.3).

use candle_core::{DType, Device, Tensor};

use super::latent::{noise_mask_or_ones, plain_samples};
use super::types::ModelInputs;
use super::vae::encode_pixels;
use crate::image::resize_image;
use crate::imageops::Method;
use crate::schema::MAX_RESOLUTION;
use crate::{
    Ctx, InputDef, Inputs, Latent, LatentSamples, NodeDef, NodeError, NodeSchema, OutputDef,
    Outputs, Registry, Value,
};

const LT: &str = "comfy_extras.nodes_lt";
const CATEGORY: &str = "conditioning/video_models";

/// Registers the image-to-video nodes.
pub fn register(r: &mut Registry) {
    r.register(img_to_video());
    r.register(img_to_video_inplace());
}

/// Sets `value` on rows `0..count` of axis 2 of `t`.
fn fill_leading_frames(t: &Tensor, count: usize, value: f64) -> Result<Tensor, NodeError> {
    let total = t.dim(2)?;
    let head = t.narrow(2, 0, count)?.ones_like()?.affine(0.0, value)?;
    if count == total {
        return Ok(head);
    }
    Ok(Tensor::cat(
        &[&head, &t.narrow(2, count, total - count)?],
        2,
    )?)
}

/// Replaces the first `Ti` latent frames of `samples` (all batch items) by `encoded`.
fn write_leading_frames(samples: &Tensor, encoded: &Tensor) -> Result<Tensor, NodeError> {
    let (b, c, t, h, w) = samples.dims5()?;
    let ti = encoded.dim(2)?.min(t);
    let head = encoded
        .narrow(2, 0, ti)?
        .broadcast_as((b, c, ti, h, w))?
        .contiguous()?;
    if ti == t {
        return Ok(head);
    }
    Ok(Tensor::cat(&[&head, &samples.narrow(2, ti, t - ti)?], 2)?)
}

fn img_to_video() -> NodeDef {
    let schema = NodeSchema::v3("LTXVImgToVideo", CATEGORY, LT)
        .input(InputDef::socket("positive", "CONDITIONING"))
        .input(InputDef::socket("negative", "CONDITIONING"))
        .input(InputDef::socket("vae", "VAE"))
        .input(InputDef::socket("image", "IMAGE"))
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
                .min(9)
                .max(MAX_RESOLUTION)
                .step(8),
        )
        .input(InputDef::int("batch_size").default(1).min(1).max(4096))
        .input(
            InputDef::float("strength")
                .default(1.0)
                .min(0.0)
                .max(1.0)
                .optional(),
        )
        .output(OutputDef::new("CONDITIONING").named("positive"))
        .output(OutputDef::new("CONDITIONING").named("negative"))
        .output(OutputDef::new("LATENT").named("latent"));
    NodeDef::new(schema, run_img_to_video)
}

fn run_img_to_video(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let vae = inputs.vae("vae")?;
    let (width, height) = (inputs.usize("width")?, inputs.usize("height")?);
    let (length, batch) = (inputs.usize("length")?, inputs.usize("batch_size")?);
    let strength = if inputs.has("strength") {
        inputs.float("strength")?
    } else {
        1.0
    };
    let pixels = resize_image(
        inputs.image("image")?,
        width,
        height,
        Method::Bilinear,
        true,
    )?;
    let encoded = encode_pixels(ctx.env, vae.video("LTXVImgToVideo")?, &pixels)?;
    let frames = length.saturating_sub(1) / 8 + 1;
    let zeros = Tensor::zeros(
        (batch, 128, frames, height / 32, width / 32),
        DType::F32,
        &Device::Cpu,
    )?;
    let samples = write_leading_frames(&zeros, &encoded)?;
    let ones = Tensor::ones((batch, 1, frames, 1, 1), DType::F32, &Device::Cpu)?;
    let ti = encoded.dim(2)?.min(frames);
    let mask = fill_leading_frames(&ones, ti, 1.0 - strength)?;
    let mut out = Latent::new(samples);
    out.noise_mask = Some(LatentSamples::Single(mask));
    Ok(Outputs::new(vec![
        passthrough(inputs, "positive")?,
        passthrough(inputs, "negative")?,
        Value::Latent(out),
    ]))
}

fn passthrough(inputs: &Inputs, name: &str) -> Result<Value, NodeError> {
    inputs
        .get(name)
        .cloned()
        .ok_or_else(|| NodeError::Value(format!("missing input '{name}'")))
}

fn img_to_video_inplace() -> NodeDef {
    let schema = NodeSchema::v3("LTXVImgToVideoInplace", CATEGORY, LT)
        .input(InputDef::socket("vae", "VAE"))
        .input(InputDef::socket("image", "IMAGE"))
        .input(InputDef::socket("latent", "LATENT"))
        .input(InputDef::float("strength").default(1.0).min(0.0).max(1.0))
        .input(
            InputDef::boolean("bypass")
                .tooltip("Bypass the conditioning.")
                .default(false),
        )
        .output(OutputDef::new("LATENT").named("latent"));
    NodeDef::new(schema, run_img_to_video_inplace)
}

fn run_img_to_video_inplace(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let latent = inputs.latent("latent")?;
    if inputs.boolean("bypass")? {
        return Ok(Outputs::one(Value::Latent(latent.clone())));
    }
    let vae = inputs.vae("vae")?;
    let strength = inputs.float("strength")?;
    let samples = plain_samples(latent, "LTXVImgToVideoInplace")?;
    let (_, _, _, h, w) = samples.dims5()?;
    let image = inputs.image("image")?;
    let (_, ih, iw, _) = image.dims4()?;
    let pixels = if (ih, iw) == (h * 32, w * 32) {
        image.clone()
    } else {
        resize_image(image, w * 32, h * 32, Method::Bilinear, true)?
    };
    let encoded = encode_pixels(ctx.env, vae.video("LTXVImgToVideoInplace")?, &pixels)?;
    let ti = encoded.dim(2)?.min(samples.dim(2)?);
    let new_samples = write_leading_frames(samples, &encoded)?;
    let mask = noise_mask_or_ones(latent, samples)?;
    let mask = fill_leading_frames(&mask, ti, 1.0 - strength)?;
    let mut out = Latent::new(new_samples);
    out.noise_mask = Some(LatentSamples::Single(mask));
    Ok(Outputs::one(Value::Latent(out)))
}
