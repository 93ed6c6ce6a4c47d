//! Guide nodes: LTXVAddGuide appends encoded guide frames after the video latent and records
//! their positions (`keyframe_idxs`) and strengths (`guide_attention_entries`) in both
//! conditionings; LTXVCropGuides removes them again (`ltx2-nodes.md` §3.4, §3.6).

use candle_core::{Device, Tensor};
use models::ltx2::transformer::positions::{ScaleFactors, VideoGrid, video_pixel_coords};

use super::latent::{noise_mask_or_ones, plain_samples};
use super::types::{Conditioning, GuideEntry, ModelInputs};
use super::vae::encode_pixels;
use crate::image::resize_image;
use crate::imageops::Method;
use crate::{
    Ctx, InputDef, Inputs, Latent, LatentSamples, NodeDef, NodeError, NodeSchema, OutputDef,
    Outputs, Registry, Value,
};

const LT: &str = "comfy_extras.nodes_lt";
const CATEGORY: &str = "conditioning/video_models";

/// Registers the guide nodes.
pub fn register(r: &mut Registry) {
    r.register(add_guide());
    r.register(crop_guides());
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
    if frames == 0 {
        return Err(NodeError::Value(
            "LTXVAddGuide: the image batch is empty".into(),
        ));
    }
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
