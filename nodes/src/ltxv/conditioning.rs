//! Conditioning nodes: CLIPTextEncode, ConditioningZeroOut, LTXVConditioning, LTXVAddGuide,
//! LTXVCropGuides, LTXVImgToVideo, LTXVImgToVideoInplace (`ltx2-nodes.md` §3, §5).

use candle_core::{DType, Device, Tensor};
use models::gemma3::PaddedTokens;
use models::ltx2::text::MAX_TEXT_TOKENS;
use models::ltx2::transformer::positions::{ScaleFactors, VideoGrid, video_pixel_coords};

use super::models::text_encoder;
use super::types::{CondEntry, Conditioning, GuideEntry, ModelInputs};
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

/// Registers the conditioning nodes.
pub fn register(r: &mut Registry) {
    r.register(clip_text_encode());
    r.register(conditioning_zero_out());
    r.register(ltxv_conditioning());
    r.register(add_guide());
    r.register(crop_guides());
    r.register(img_to_video());
    r.register(img_to_video_inplace());
}

fn clip_text_encode() -> NodeDef {
    let schema = NodeSchema::v1("CLIPTextEncode", "conditioning")
        .display("CLIP Text Encode (Prompt)")
        .description(
            "Encodes a text prompt using a CLIP model into an embedding that can be used to \
             guide the diffusion model towards generating specific images.",
        )
        .input(
            InputDef::string("text")
                .opt("multiline", true)
                .opt("dynamicPrompts", true)
                .tooltip("The text to be encoded."),
        )
        .input(
            InputDef::socket("clip", "CLIP").tooltip("The CLIP model used for encoding the text."),
        )
        .output(OutputDef::new("CONDITIONING").tooltip(
            "A conditioning containing the embedded text used to guide the diffusion model.",
        ))
        .aliases(&[
            "text",
            "prompt",
            "text prompt",
            "positive prompt",
            "negative prompt",
            "encode text",
            "text encoder",
            "encode prompt",
        ]);
    NodeDef::new(schema, run_clip_text_encode)
}

/// ComfyUI's LTX-2 tokenization: the whole prompt (no truncation), `<bos>` first, left-padded
/// to a multiple of `multiple` and at least [`MAX_TEXT_TOKENS`].
pub fn pad_prompt(ids: Vec<u32>, pad_id: u32, multiple: usize) -> PaddedTokens {
    let multiple = multiple.max(1);
    let length = ids.len().div_ceil(multiple) * multiple;
    let length = length.max(MAX_TEXT_TOKENS);
    let pad = length - ids.len();
    let mut input_ids = vec![pad_id; pad];
    input_ids.extend(ids);
    let mut attention_mask = vec![0u32; pad];
    attention_mask.resize(length, 1);
    PaddedTokens {
        input_ids,
        attention_mask,
    }
}

fn run_clip_text_encode(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let clip = inputs.clip("clip")?;
    let text = inputs.string("text")?;
    let encoder = text_encoder(ctx.env, &clip)?;
    let ids = encoder.tokenizer().encode(text)?;
    let registers = clip.processor_config.video.num_learnable_registers;
    let tokens = pad_prompt(ids, encoder.tokenizer().pad_id(), registers);
    let encoding = encoder.encode_tokens(&tokens)?;
    let video_width = encoding.video_context.dim(2)?;
    let cross_attn = Tensor::cat(&[&encoding.video_context, &encoding.audio_context], 2)?
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?;
    let cond = Conditioning {
        entries: vec![CondEntry {
            cross_attn,
            video_width,
            frame_rate: None,
            keyframe_idxs: None,
            guide_entries: Vec::new(),
            extra: Default::default(),
        }],
    };
    Ok(Outputs::one(cond.into_value()))
}

fn conditioning_zero_out() -> NodeDef {
    let schema = NodeSchema::v1("ConditioningZeroOut", "advanced/conditioning")
        .input(InputDef::socket("conditioning", "CONDITIONING"))
        .output(OutputDef::new("CONDITIONING"))
        .aliases(&["null conditioning", "clear conditioning"]);
    NodeDef::new(schema, run_zero_out)
}

fn run_zero_out(_: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let cond = inputs.conditioning("conditioning")?;
    let mut out = (*cond).clone();
    for e in &mut out.entries {
        e.cross_attn = e.cross_attn.zeros_like()?;
    }
    Ok(Outputs::one(out.into_value()))
}

fn ltxv_conditioning() -> NodeDef {
    let schema = NodeSchema::v3("LTXVConditioning", CATEGORY, LT)
        .input(InputDef::socket("positive", "CONDITIONING"))
        .input(InputDef::socket("negative", "CONDITIONING"))
        .input(
            InputDef::float("frame_rate")
                .default(25.0)
                .min(0.0)
                .max(1000.0)
                .step(0.01),
        )
        .output(OutputDef::new("CONDITIONING").named("positive"))
        .output(OutputDef::new("CONDITIONING").named("negative"));
    NodeDef::new(schema, run_ltxv_conditioning)
}

fn run_ltxv_conditioning(_: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let rate = inputs.float("frame_rate")?;
    let set = |c: &Conditioning| c.map(|e| e.frame_rate = Some(rate)).into_value();
    Ok(Outputs::new(vec![
        set(&*inputs.conditioning("positive")?),
        set(&*inputs.conditioning("negative")?),
    ]))
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

/// Guide frames already appended to a latent of `shape` (newest `get_keyframe_idxs`): guide
/// tokens over the latent's `h·w`.
pub fn num_keyframes(cond: &Conditioning, shape: &[usize]) -> Result<usize, NodeError> {
    let Some(idxs) = cond.entries.first().and_then(|e| e.keyframe_idxs.as_ref()) else {
        return Ok(0);
    };
    let per_frame = shape[3] * shape[4];
    Ok(idxs.dim(2)? / per_frame.max(1))
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

fn add_guide() -> NodeDef {
    let schema = NodeSchema::v3("LTXVAddGuide", CATEGORY, LT)
        .input(InputDef::socket("positive", "CONDITIONING"))
        .input(InputDef::socket("negative", "CONDITIONING"))
        .input(InputDef::socket("vae", "VAE"))
        .input(InputDef::socket("latent", "LATENT"))
        .input(InputDef::socket("image", "IMAGE").tooltip(
            "Image or video to condition the latent video on. Must be 8*n + 1 frames. If the \
             video is not 8*n + 1 frames, it will be cropped to the nearest 8*n + 1 frames.",
        ))
        .input(
            InputDef::int("frame_idx")
                .tooltip(
                    "Frame index to start the conditioning at. For single-frame images or \
                     videos with 1-8 frames, any frame_idx value is acceptable. For videos with \
                     9+ frames, frame_idx must be divisible by 8, otherwise it will be rounded \
                     down to the nearest multiple of 8. Negative values are counted from the \
                     end of the video.",
                )
                .default(0)
                .min(-9999)
                .max(9999),
        )
        .input(
            InputDef::float("strength")
                .default(1.0)
                .min(0.0)
                .max(1.0)
                .step(0.01),
        )
        .output(OutputDef::new("CONDITIONING").named("positive"))
        .output(OutputDef::new("CONDITIONING").named("negative"))
        .output(OutputDef::new("LATENT").named("latent"));
    NodeDef::new(schema, run_add_guide)
}

/// Pixel-space `(t, y, x)` start/end coordinates `[1, 3, Tg·h·w, 2]` of guide tokens placed at
/// pixel frame `frame`.
fn guide_coords(grid: VideoGrid, causal_fix: bool, frame: usize) -> Result<Tensor, NodeError> {
    let coords = video_pixel_coords(1, grid, ScaleFactors::default(), causal_fix, &Device::Cpu)?;
    let time = (coords.narrow(1, 0, 1)? + frame as f64)?;
    Ok(Tensor::cat(&[&time, &coords.narrow(1, 1, 2)?], 1)?)
}

fn run_add_guide(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let positive = inputs.conditioning("positive")?;
    let negative = inputs.conditioning("negative")?;
    let vae = inputs.vae("vae")?;
    let latent = inputs.latent("latent")?;
    let image = inputs.image("image")?;
    let frame_idx = inputs.int("frame_idx")?;
    let strength = inputs.float("strength")?;
    let x = plain_samples(latent, "LTXVAddGuide")?;
    let (b, channels, length, h, w) = x.dims5()?;
    if channels != 128 {
        return Err(NodeError::Value(
            "Adding guide to a combined AV latent is not supported.".into(),
        ));
    }
    let mask = noise_mask_or_ones(latent, x)?;
    let existing = num_keyframes(&positive, x.dims())?;
    let frames = image.dim(0)?;
    let keep = (frames - 1) / 8 * 8 + 1;
    let from_end = |idx: i64| ((length as i64 - existing as i64 - 1) * 8 + 1 + idx).max(0);
    let first_idx = if frame_idx >= 0 {
        frame_idx
    } else {
        from_end(frame_idx)
    };
    let causal_fix = first_idx == 0 || keep == 1;
    let mut pixels = if causal_fix {
        image.clone()
    } else {
        Tensor::cat(&[&image.narrow(0, 0, 1)?, image], 0)?
    };
    let n = pixels.dim(0)?;
    pixels = pixels.narrow(0, 0, (n - 1) / 8 * 8 + 1)?;
    let pixels = resize_image(&pixels, w * 32, h * 32, Method::Bilinear, true)?;
    let mut guide = encode_pixels(ctx.env, vae.video("LTXVAddGuide")?, &pixels)?;
    let mut guide_frames = pixels.dim(0)?;
    if !causal_fix {
        guide = guide.narrow(2, 1, guide.dim(2)? - 1)?;
        guide_frames -= 1;
    }
    let mut fi = first_idx;
    if guide_frames > 1 && fi != 0 {
        fi = (fi - 1) / 8 * 8 + 1;
    }
    let tg = guide.dim(2)?;
    if ((fi + 7) / 8) as usize + tg > length {
        return Err(NodeError::Value(
            "Conditioning frames exceed the length of the latent sequence.".into(),
        ));
    }
    if b != 1 {
        return Err(NodeError::Value(format!(
            "LTXVAddGuide: the guide has batch 1 but the latent has batch {b}"
        )));
    }
    let grid = VideoGrid {
        frames: tg,
        height: h,
        width: w,
    };
    let coords = guide_coords(grid, causal_fix, fi as usize)?;
    let entry = GuideEntry {
        pre_filter_count: tg * h * w,
        strength,
        pixel_mask: None,
        latent_shape: [tg, h, w],
    };
    let append = |c: &Conditioning| -> Result<Value, NodeError> {
        let mut out = c.clone();
        for e in &mut out.entries {
            e.keyframe_idxs = Some(match &e.keyframe_idxs {
                Some(prev) => Tensor::cat(&[prev, &coords], 2)?,
                None => coords.clone(),
            });
            e.guide_entries.push(entry.clone());
        }
        Ok(out.into_value())
    };
    let (mb, _, _, mh, mw) = mask.dims5()?;
    let guide_mask = Tensor::full(
        (1.0 - strength).max(0.0) as f32,
        (mb, 1, tg, mh, mw),
        &Device::Cpu,
    )?;
    let samples = Tensor::cat(&[x, &guide], 2)?;
    let mask = Tensor::cat(&[&mask, &guide_mask], 2)?;
    let mut out = Latent::new(samples);
    out.noise_mask = Some(LatentSamples::Single(mask));
    Ok(Outputs::new(vec![
        append(&positive)?,
        append(&negative)?,
        Value::Latent(out),
    ]))
}

fn crop_guides() -> NodeDef {
    let schema = NodeSchema::v3("LTXVCropGuides", CATEGORY, LT)
        .input(InputDef::socket("positive", "CONDITIONING"))
        .input(InputDef::socket("negative", "CONDITIONING"))
        .input(InputDef::socket("latent", "LATENT"))
        .output(OutputDef::new("CONDITIONING").named("positive"))
        .output(OutputDef::new("CONDITIONING").named("negative"))
        .output(OutputDef::new("LATENT").named("latent"));
    NodeDef::new(schema, run_crop_guides)
}

fn run_crop_guides(_: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let positive = inputs.conditioning("positive")?;
    let negative = inputs.conditioning("negative")?;
    let latent = inputs.latent("latent")?;
    let x = plain_samples(latent, "LTXVCropGuides")?.copy()?;
    let mask = noise_mask_or_ones(latent, &x)?;
    let k = num_keyframes(&positive, x.dims())?;
    let (x, mask, positive, negative) = if k == 0 {
        (
            x,
            mask,
            positive.as_ref().clone().into_value(),
            negative.as_ref().clone().into_value(),
        )
    } else {
        let keep = x.dim(2)?.checked_sub(k).ok_or_else(|| {
            NodeError::Value(format!(
                "{k} guide frames but only {} latent frames",
                x.dim(2).unwrap_or(0)
            ))
        })?;
        let clear = |c: &Conditioning| {
            c.map(|e| {
                e.keyframe_idxs = None;
                e.guide_entries.clear();
            })
            .into_value()
        };
        (
            x.narrow(2, 0, keep)?,
            mask.narrow(2, 0, keep.min(mask.dim(2)?))?,
            clear(&positive),
            clear(&negative),
        )
    };
    let mut out = Latent::new(x);
    out.noise_mask = Some(LatentSamples::Single(mask));
    Ok(Outputs::new(vec![positive, negative, Value::Latent(out)]))
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
    let frames = (length - 1) / 8 + 1;
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
