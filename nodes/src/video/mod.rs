//! Video nodes (`comfy_extras/nodes_video.py`): CreateVideo, GetVideoComponents, LoadVideo and
//! SaveVideo, with the encoding, decoding and remuxing they need (FFmpeg through `ffmpeg-next`).
//!
//! Files: [`av`] (FFmpeg set-up, errors, frame-rate arithmetic), [`pixels`] (IMAGE <-> FFmpeg
//! frames), [`encode`] (components -> H.264/AAC MP4), [`decode`] (file -> components),
//! [`remux`] (file -> MP4 without re-encoding), and one file per node family: [`create`],
//! [`load`], [`save`].
//!
//! Schemas follow the reference ComfyUI (`SaveVideo` with `format`/`codec` combos, no output;
//! `CreateVideo` without `bit_depth`/`color_space`); encoding follows current ComfyUI's 8-bit
//! sRGB path. Where we differ on purpose: odd frame sizes are cropped to even ones (ComfyUI's
//! H.264 encoder would fail), LoadVideo opens the file when it runs so a broken upload fails
//! there, its fingerprint is the file's SHA-256 (ComfyUI: the modification time), 8-bit
//! sources decode through RGB24 and deeper ones through RGB48, and 6-channel audio is written
//! as FFmpeg's `5.1(back)` layout, the one its AAC encoder accepts.

pub mod av;
pub mod create;
pub mod decode;
pub mod encode;
pub mod load;
pub mod pixels;
pub mod remux;
pub mod save;

use std::sync::Arc;

use candle_core::Tensor;

use crate::error::NodeError;
use crate::io::Inputs;
use crate::registry::Registry;
use crate::value::{Audio, FrameRate, Json, Value, Video};

/// The python module ComfyUI reports for these nodes.
pub const PYTHON_MODULE: &str = "comfy_extras.nodes_video";
/// Their menu category (`image/video`; newer ComfyUI moved them to `video`).
pub const CATEGORY: &str = "image/video";

/// Registers the video nodes.
pub fn register(r: &mut Registry) {
    r.register(save::save_video());
    r.register(create::create_video());
    r.register(create::get_video_components());
    r.register(load::load_video());
}

/// A `VIDEO` input.
pub fn video_input(inputs: &Inputs, name: &str) -> Result<Arc<Video>, NodeError> {
    match inputs.get(name) {
        Some(Value::Video(v)) => Ok(v.clone()),
        Some(other) => Err(NodeError::Value(format!(
            "input '{name}' expected VIDEO, got {}",
            other.type_name()
        ))),
        None => Err(NodeError::Value(format!("missing input '{name}'"))),
    }
}

/// An optional `AUDIO` input: absent or `None` (a JSON null, what GetVideoComponents outputs
/// for a silent video) give `None`.
pub fn optional_audio(inputs: &Inputs, name: &str) -> Result<Option<Audio>, NodeError> {
    match inputs.get(name) {
        None | Some(Value::Json(Json::Null)) => Ok(None),
        Some(Value::Audio(a)) => Ok(Some(a.clone())),
        Some(other) => Err(NodeError::Value(format!(
            "input '{name}' expected AUDIO, got {}",
            other.type_name()
        ))),
    }
}

/// A video's frames, soundtrack and frame rate (ComfyUI's `get_components`), decoding files.
pub fn components(
    video: &Video,
    check: &dyn Fn() -> Result<(), NodeError>,
) -> Result<(Tensor, Option<Audio>, FrameRate), NodeError> {
    match video {
        Video::Components {
            images,
            audio,
            frame_rate,
        } => Ok((images.clone(), audio.clone(), *frame_rate)),
        Video::File { path } => {
            let decoded = decode::decode_file(path, check)?;
            Ok((decoded.images, decoded.audio, decoded.frame_rate))
        }
    }
}
