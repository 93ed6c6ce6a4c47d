//! LTXVPreprocess: gives a conditioning image the H.264 artefacts of LTX-2's training videos by
//! encoding it as a one-frame H.264 video and decoding it back (`ltx2-nodes.md` §3.10, §11.1).
//!
//! Per image: crop to even width and height (top-left anchored), `(x·255)` truncated to u8,
//! RGB -> yuv420p with swscale's defaults (BT.601, limited range, bilinear), libx264 with
//! `crf = img_compression` and `preset veryfast`, decode, yuv420p -> RGB, `/255`. A compression
//! of 0 returns the image unchanged. ComfyUI does the same through PyAV; the pixels match it
//! where both link the same libx264 build.

use candle_core::{DType, Device, Tensor};
use ffmpeg::format::Pixel;
use ffmpeg::software::scaling::{Context as Scaler, Flags};
use ffmpeg_next as ffmpeg;

use crate::{
    Ctx, InputDef, Inputs, NodeDef, NodeError, NodeSchema, OutputDef, Outputs, Registry, Value,
};

/// Registers LTXVPreprocess.
pub fn register(r: &mut Registry) {
    r.register(preprocess());
}

fn preprocess() -> NodeDef {
    let schema = NodeSchema::v3("LTXVPreprocess", "image", "comfy_extras.nodes_lt")
        .input(InputDef::socket("image", "IMAGE"))
        .input(
            InputDef::int("img_compression")
                .tooltip("Amount of compression to apply on image.")
                .default(35)
                .min(0)
                .max(100),
        )
        .output(OutputDef::new("IMAGE").named("output_image"));
    NodeDef::new(schema, run_preprocess)
}

fn av_error(context: &'static str) -> impl FnOnce(ffmpeg::Error) -> NodeError {
    move |e| NodeError::Runtime(format!("LTXVPreprocess: {context}: {e}"))
}

fn run_preprocess(_: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let image = inputs.image("image")?;
    let crf = inputs.usize("img_compression")?;
    if crf == 0 {
        return Ok(Outputs::one(Value::Image(image.clone())));
    }
    let (n, h, w, c) = image.dims4()?;
    let (h2, w2) = (h - h % 2, w - w % 2);
    if h2 == 0 || w2 == 0 || c < 3 {
        return Err(NodeError::Value(format!(
            "LTXVPreprocess: cannot encode a {w}x{h} image with {c} channels"
        )));
    }
    let pixels = image
        .narrow(1, 0, h2)?
        .narrow(2, 0, w2)?
        .narrow(3, 0, 3)?
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?;
    let mut out = Vec::with_capacity(n * h2 * w2 * 3);
    for i in 0..n {
        let rgb: Vec<u8> = pixels
            .get(i)?
            .flatten_all()?
            .to_vec1::<f32>()?
            .into_iter()
            .map(|v| (v * 255.0).clamp(0.0, 255.0) as u8)
            .collect();
        let decoded = h264_round_trip(&rgb, w2, h2, crf)?;
        out.extend(decoded.into_iter().map(|v| v as f32 / 255.0));
    }
    let result = Tensor::from_vec(out, (n, h2, w2, 3), &Device::Cpu)?;
    Ok(Outputs::one(Value::Image(result)))
}

/// Encodes one RGB24 frame with libx264 (`crf`, preset veryfast, yuv420p) and decodes it back.
pub fn h264_round_trip(
    rgb: &[u8],
    width: usize,
    height: usize,
    crf: usize,
) -> Result<Vec<u8>, NodeError> {
    crate::video::av::init()?;
    let (w, h) = (width as u32, height as u32);
    let mut frame = ffmpeg::frame::Video::new(Pixel::RGB24, w, h);
    let stride = frame.stride(0);
    for (y, row) in rgb.chunks(width * 3).enumerate() {
        frame.data_mut(0)[y * stride..y * stride + width * 3].copy_from_slice(row);
    }
    let mut to_yuv = Scaler::get(Pixel::RGB24, w, h, Pixel::YUV420P, w, h, Flags::BILINEAR)
        .map_err(av_error("RGB -> yuv420p"))?;
    let mut yuv = ffmpeg::frame::Video::empty();
    to_yuv
        .run(&frame, &mut yuv)
        .map_err(av_error("RGB -> yuv420p"))?;
    yuv.set_pts(Some(0));

    let codec = ffmpeg::encoder::find_by_name("libx264").ok_or_else(|| {
        NodeError::Runtime("LTXVPreprocess: FFmpeg has no libx264 encoder".into())
    })?;
    let mut encoder = ffmpeg::codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(av_error("creating the H.264 encoder"))?;
    encoder.set_width(w);
    encoder.set_height(h);
    encoder.set_format(Pixel::YUV420P);
    encoder.set_time_base((1, 1));
    encoder.set_frame_rate(Some((1, 1)));
    let mut options = ffmpeg::Dictionary::new();
    options.set("crf", &crf.to_string());
    options.set("preset", "veryfast");
    let mut encoder = encoder
        .open_as_with(codec, options)
        .map_err(av_error("opening libx264"))?;
    encoder
        .send_frame(&yuv)
        .map_err(av_error("encoding the frame"))?;
    encoder
        .send_eof()
        .map_err(av_error("flushing the encoder"))?;
    let mut packets = Vec::new();
    let mut packet = ffmpeg::Packet::empty();
    while encoder.receive_packet(&mut packet).is_ok() {
        packets.push(packet.clone());
    }

    let decoder_codec = ffmpeg::decoder::find(ffmpeg::codec::Id::H264)
        .ok_or_else(|| NodeError::Runtime("LTXVPreprocess: FFmpeg has no H.264 decoder".into()))?;
    let mut decoder = ffmpeg::codec::context::Context::new_with_codec(decoder_codec)
        .decoder()
        .video()
        .map_err(av_error("creating the H.264 decoder"))?;
    for p in &packets {
        decoder.send_packet(p).map_err(av_error("decoding"))?;
    }
    decoder
        .send_eof()
        .map_err(av_error("flushing the decoder"))?;
    let mut decoded = ffmpeg::frame::Video::empty();
    decoder
        .receive_frame(&mut decoded)
        .map_err(av_error("receiving the decoded frame"))?;
    let mut to_rgb = Scaler::get(decoded.format(), w, h, Pixel::RGB24, w, h, Flags::BILINEAR)
        .map_err(av_error("yuv420p -> RGB"))?;
    let mut back = ffmpeg::frame::Video::empty();
    to_rgb
        .run(&decoded, &mut back)
        .map_err(av_error("yuv420p -> RGB"))?;
    let stride = back.stride(0);
    let data = back.data(0);
    let mut out = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        out.extend_from_slice(&data[y * stride..y * stride + width * 3]);
    }
    Ok(out)
}
