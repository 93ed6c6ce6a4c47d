//! CreateVideo (images + optional audio + fps -> VIDEO) and GetVideoComponents (VIDEO ->
//! images, audio, fps).

use std::sync::Arc;

use super::{CATEGORY, PYTHON_MODULE, components, optional_audio, video_input};
use crate::value::{FrameRate, Json, Video};
use crate::{Ctx, InputDef, Inputs, NodeDef, NodeError, NodeSchema, OutputDef, Outputs, Value};

/// The `CreateVideo` node.
pub fn create_video() -> NodeDef {
    let schema = NodeSchema::v3("CreateVideo", CATEGORY, PYTHON_MODULE)
        .display("Create Video")
        .description("Create a video from images.")
        .input(InputDef::socket("images", "IMAGE").tooltip("The images to create a video from."))
        .input(
            InputDef::float("fps")
                .default(30.0)
                .min(1.0)
                .max(120.0)
                .step(1.0),
        )
        .input(
            InputDef::socket("audio", "AUDIO")
                .optional()
                .tooltip("The audio to add to the video."),
        )
        .output(OutputDef::new("VIDEO"))
        .aliases(&["images to video"]);
    NodeDef::new(schema, run_create_video)
}

fn run_create_video(_: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let images = inputs.image("images")?.clone();
    let fps = inputs.float("fps")?;
    if !(fps.is_finite() && fps > 0.0) {
        return Err(NodeError::Value(format!("fps must be positive, got {fps}")));
    }
    let video = Video::Components {
        images,
        audio: optional_audio(inputs, "audio")?,
        frame_rate: FrameRate::from_f64(fps),
    };
    Ok(Outputs::one(Value::Video(Arc::new(video))))
}

/// The `GetVideoComponents` node.
pub fn get_video_components() -> NodeDef {
    let schema = NodeSchema::v3("GetVideoComponents", CATEGORY, PYTHON_MODULE)
        .display("Get Video Components")
        .description("Extracts all components from a video: frames, audio, and framerate.")
        .input(InputDef::socket("video", "VIDEO").tooltip("The video to extract components from."))
        .output(OutputDef::new("IMAGE").named("images"))
        .output(OutputDef::new("AUDIO").named("audio"))
        .output(OutputDef::new("FLOAT").named("fps"))
        .aliases(&["extract frames", "split video", "video to images", "demux"]);
    NodeDef::new(schema, run_get_video_components)
}

fn run_get_video_components(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let video = video_input(inputs, "video")?;
    let (images, audio, frame_rate) = components(&video, &|| ctx.check_interrupt())?;
    // A silent video's audio is Python's None, which we carry as a JSON null.
    let audio = audio.map_or(Value::Json(Json::Null), Value::Audio);
    Ok(Outputs::new(vec![
        Value::Image(images),
        audio,
        Value::Float(frame_rate.as_f64()),
    ]))
}
