//! SaveVideo: writes a `VIDEO` as `<prefix>_<counter:05>_.mp4` in the output folder and reports
//! it the way ComfyUI's `ui.PreviewVideo` does (`{"images": [...], "animated": [true]}`).

use serde_json::{Map, json};

use super::{CATEGORY, PYTHON_MODULE, components, decode, encode, remux, video_input};
use crate::files;
use crate::value::{Json, Video};
use crate::{Ctx, InputDef, Inputs, NodeDef, NodeError, NodeSchema, Outputs};

const PREFIX_TOOLTIP: &str = "The prefix for the file to save. This may include formatting information such as %date:yyyy-MM-dd% or %Empty Latent Image.width% to include values from nodes.";
/// `VideoContainer.as_input()` of the ComfyUI version the reference schema comes from.
const FORMATS: &[&str] = &["auto", "mp4"];
/// `VideoCodec.as_input()`, same version.
const CODECS: &[&str] = &["auto", "h264"];

/// The `SaveVideo` node.
pub fn save_video() -> NodeDef {
    let schema = NodeSchema::v3("SaveVideo", CATEGORY, PYTHON_MODULE)
        .display("Save Video")
        .description("Saves the input images to your ComfyUI output directory.")
        .input(InputDef::socket("video", "VIDEO").tooltip("The video to save."))
        .input(
            InputDef::string("filename_prefix")
                .default("video/ComfyUI")
                .tooltip(PREFIX_TOOLTIP),
        )
        .input(
            InputDef::combo("format", FORMATS)
                .default("auto")
                .tooltip("The format to save the video as."),
        )
        .input(
            InputDef::combo("codec", CODECS)
                .default("auto")
                .tooltip("The codec to use for the video."),
        )
        .output_node()
        .aliases(&["export video"]);
    NodeDef::new(schema, run_save_video)
}

/// The container tags ComfyUI writes: every `extra_pnginfo` key (the UI workflow), then
/// `prompt`, each value as JSON text; `None` when metadata is disabled.
pub fn metadata_tags(ctx: &Ctx) -> Option<Vec<(String, String)>> {
    if !ctx.env.save_metadata {
        return None;
    }
    let mut tags: Vec<(String, String)> = Vec::new();
    if let Some(Json::Object(extra)) = ctx.extra_pnginfo {
        for (key, value) in extra {
            tags.push((key.clone(), value.to_string()));
        }
    }
    let prompt = ctx.prompt.to_string();
    match tags.iter_mut().find(|(k, _)| k == "prompt") {
        Some(entry) => entry.1 = prompt,
        None => tags.push(("prompt".into(), prompt)),
    }
    Some(tags)
}

fn run_save_video(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let video = video_input(inputs, "video")?;
    let prefix = inputs.string("filename_prefix")?;
    let (format, codec) = (inputs.string("format")?, inputs.string("codec")?);
    for (name, value, allowed) in [("format", format, FORMATS), ("codec", codec, CODECS)] {
        if !allowed.contains(&value) {
            return Err(NodeError::Value(format!(
                "unsupported video {name} '{value}'"
            )));
        }
    }
    let (width, height) = match video.as_ref() {
        Video::Components { images, .. } => {
            let dims = images.dims();
            (
                dims.get(2).copied().unwrap_or(0),
                dims.get(1).copied().unwrap_or(0),
            )
        }
        Video::File { path } => {
            let probe = decode::probe(path)?;
            (probe.width as usize, probe.height as usize)
        }
    };
    let target = files::save_path(prefix, &ctx.env.dirs.output, width, height)?;
    let file = format!("{}_{:05}_.mp4", target.filename, target.counter);
    let path = target.folder.join(&file);
    let tags = metadata_tags(ctx);
    let check = || ctx.check_interrupt();
    match video.as_ref() {
        Video::File { path: src } if can_copy_streams(src, format, codec)? => {
            remux::remux_to_mp4(src, &path, tags.as_deref())?;
        }
        other => {
            let (images, audio, frame_rate) = components(other, &check)?;
            let job = encode::EncodeJob {
                images: &images,
                audio: audio.as_ref(),
                frame_rate,
                metadata: tags.as_deref().unwrap_or(&[]),
            };
            encode::write_mp4(&path, &job, &check)?;
        }
    }
    let mut ui = Map::new();
    ui.insert(
        "images".into(),
        json!([{"filename": file, "subfolder": target.subfolder, "type": "output"}]),
    );
    ui.insert("animated".into(), json!([true]));
    Ok(Outputs::ui(ui))
}

/// ComfyUI's `reuse_streams`: a file is copied as is unless an explicit format or codec differs
/// from what it already holds.
fn can_copy_streams(src: &std::path::Path, format: &str, codec: &str) -> Result<bool, NodeError> {
    let probe = decode::probe(src)?;
    let format_ok = format == "auto" || probe.container.split(',').any(|f| f == format);
    let codec_ok = codec == "auto" || probe.video_codec == codec;
    Ok(format_ok && codec_ok)
}
