//! Writing a `VideoFromComponents` to an MP4 file the way ComfyUI's `save_to` does: H.264
//! (FFmpeg's default H.264 encoder, libx264, with its defaults: CRF 23, preset medium) in
//! yuv420p, BT.709 limited range tagged as sRGB, frame rate `round(fps * 1000) / 1000`, time
//! base `1 / rate`; the soundtrack (first batch item, trimmed to the video's length, never
//! padded) as AAC at its own sample rate; metadata as container tags
//! (`movflags=use_metadata_tags+faststart`).
//!
//! Frames are converted and encoded one at a time, so no second copy of the video is held.
//! The file is written under a temporary name and renamed when complete.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use ffmpeg::format::{Pixel, Sample, sample};
use ffmpeg::util::frame::{audio::Audio as AudioFrame, video::Video as VideoFrame};
use ffmpeg::{ChannelLayout, Dictionary, Rational, codec, encoder};
use ffmpeg_next as ffmpeg;

use super::av::{self, fail};
use super::pixels::{Scaler, fill_rgb24};
use crate::error::NodeError;
use crate::value::{Audio, FrameRate};

/// What to write.
pub struct EncodeJob<'a> {
    /// `[N, H, W, C]` frames in 0..1 (`C >= 3`; channels past the third are ignored).
    pub images: &'a Tensor,
    /// The soundtrack, if any.
    pub audio: Option<&'a Audio>,
    /// Frames per second.
    pub frame_rate: FrameRate,
    /// Container metadata tags, in order.
    pub metadata: &'a [(String, String)],
}

/// The frame size actually encoded: H.264 in 4:2:0 needs even sizes, so an odd width or height
/// loses its last column or row (ComfyUI crops the same way when it re-encodes a file).
pub fn even_size(width: usize, height: usize) -> Result<(usize, usize), NodeError> {
    let (w, h) = (width - width % 2, height - height % 2);
    if w == 0 || h == 0 {
        return Err(NodeError::Value(format!(
            "H264 output requires even dimensions of at least 2x2, got {width}x{height}"
        )));
    }
    Ok((w, h))
}

/// Encodes `job` into an MP4 at `path`; `check` runs between frames (interruption).
pub fn write_mp4(
    path: &Path,
    job: &EncodeJob,
    check: &dyn Fn() -> Result<(), NodeError>,
) -> Result<(), NodeError> {
    av::init()?;
    let (n, height, width, channels) = job.images.dims4().map_err(|_| {
        NodeError::Value(format!(
            "video frames must be an IMAGE [N, H, W, C], got {:?}",
            job.images.dims()
        ))
    })?;
    if n == 0 {
        return Err(NodeError::Value(
            "cannot save a video with no frames".into(),
        ));
    }
    if channels < 3 {
        return Err(NodeError::Value(format!(
            "video frames need 3 colour channels, got {channels}"
        )));
    }
    let (out_w, out_h) = even_size(width, height)?;
    if (out_w, out_h) != (width, height) {
        tracing::warn!("cropping {width}x{height} frames to {out_w}x{out_h} for H.264");
    }
    let rate = av::save_rate(job.frame_rate)?;
    let soundtrack = job.audio.map(|a| Soundtrack::new(a, n, rate)).transpose()?;

    let tmp = path.with_extension(format!("tmp{}.mp4", std::process::id()));
    let result = write_file(
        &tmp,
        job,
        (out_w, out_h, width, channels),
        rate,
        soundtrack,
        check,
    )
    .and_then(|()| {
        std::fs::rename(&tmp, path)
            .map_err(|e| NodeError::io(format!("renaming to {}", path.display()), e))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `(encoded width, encoded height, source width, source channels)`.
type Geometry = (usize, usize, usize, usize);

fn write_file(
    path: &Path,
    job: &EncodeJob,
    geometry: Geometry,
    rate: Rational,
    soundtrack: Option<Soundtrack>,
    check: &dyn Fn() -> Result<(), NodeError>,
) -> Result<(), NodeError> {
    let (out_w, out_h, src_w, channels) = geometry;
    let mut octx = ffmpeg::format::output_as(path, "mp4")
        .map_err(fail(format!("creating {}", path.display())))?;
    let mut tags = Dictionary::new();
    for (key, value) in job.metadata {
        tags.set(key, value);
    }
    octx.set_metadata(tags);
    let global_header = octx
        .format()
        .flags()
        .contains(ffmpeg::format::flag::Flags::GLOBAL_HEADER);

    let mut video = VideoTrack::open(&mut octx, out_w as u32, out_h as u32, rate, global_header)?;
    let mut audio = soundtrack
        .map(|s| AudioTrack::open(&mut octx, s, global_header))
        .transpose()?;

    let mut options = Dictionary::new();
    options.set("movflags", "use_metadata_tags+faststart");
    octx.write_header_with(options)
        .map_err(fail("writing the MP4 header"))?;
    video.stream_tb = stream_time_base(&octx, video.index)?;
    if let Some(track) = audio.as_mut() {
        track.stream_tb = stream_time_base(&octx, track.index)?;
        track.encode_all(&mut octx)?;
    }

    let mut scaler = Scaler::rgb_to_bt709(out_w as u32, out_h as u32)?;
    let mut rgb = VideoFrame::new(Pixel::RGB24, out_w as u32, out_h as u32);
    let n = job.images.dim(0)?;
    for i in 0..n {
        check()?;
        let pixels = job
            .images
            .get(i)?
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        fill_rgb24(&pixels, src_w, channels, &mut rgb);
        let mut yuv = VideoFrame::new(Pixel::YUV420P, out_w as u32, out_h as u32);
        scaler.run(&rgb, &mut yuv)?;
        tag_bt709(&mut yuv);
        yuv.set_pts(Some(i as i64));
        video.send(&mut octx, Some(&yuv))?;
    }
    video.send(&mut octx, None)?;
    octx.write_trailer().map_err(fail("finishing the MP4 file"))
}

fn stream_time_base(
    octx: &ffmpeg::format::context::Output,
    index: usize,
) -> Result<Rational, NodeError> {
    octx.stream(index)
        .map(|s| s.time_base())
        .ok_or_else(|| NodeError::Runtime(format!("output stream {index} vanished")))
}

/// ComfyUI's `set_video_color_properties(..., "sRGB")`: BT.709 primaries and matrix, sRGB
/// (IEC 61966-2-1) transfer, limited range.
fn tag_bt709(frame: &mut VideoFrame) {
    frame.set_color_primaries(ffmpeg::color::Primaries::BT709);
    frame.set_color_transfer_characteristic(ffmpeg::color::TransferCharacteristic::IEC61966_2_1);
    frame.set_color_space(ffmpeg::color::Space::BT709);
    frame.set_color_range(ffmpeg::color::Range::MPEG);
}

/// The video stream and its opened encoder.
struct VideoTrack {
    encoder: encoder::Video,
    index: usize,
    encoder_tb: Rational,
    stream_tb: Rational,
}

impl VideoTrack {
    fn open(
        octx: &mut ffmpeg::format::context::Output,
        width: u32,
        height: u32,
        rate: Rational,
        global_header: bool,
    ) -> Result<Self, NodeError> {
        let codec = encoder::find(codec::Id::H264).ok_or_else(|| {
            NodeError::Runtime("this FFmpeg build has no H.264 encoder (libx264)".into())
        })?;
        let mut context = codec::context::Context::new_with_codec(codec);
        // PyAV's defaults: as many threads as CPUs, threading within a frame.
        context.set_threading(codec::threading::Config {
            kind: codec::threading::Type::Slice,
            count: 0,
            ..Default::default()
        });
        if global_header {
            context.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        let mut enc = context
            .encoder()
            .video()
            .map_err(fail("configuring the H.264 encoder"))?;
        let time_base = rate.invert();
        enc.set_width(width);
        enc.set_height(height);
        enc.set_format(Pixel::YUV420P);
        enc.set_bit_rate(0);
        enc.set_tolerance(128_000);
        enc.set_frame_rate(Some(rate));
        enc.set_time_base(time_base);
        enc.set_color_primaries(ffmpeg::color::Primaries::BT709);
        enc.set_color_transfer_characteristic(ffmpeg::color::TransferCharacteristic::IEC61966_2_1);
        enc.set_colorspace(ffmpeg::color::Space::BT709);
        enc.set_color_range(ffmpeg::color::Range::MPEG);
        let encoder = enc
            .open_as_with(codec, Dictionary::new())
            .map_err(fail(format!("opening the {} encoder", codec.name())))?;
        let mut stream = octx
            .add_stream(codec)
            .map_err(fail("adding the video stream"))?;
        stream.set_parameters(&encoder);
        stream.set_time_base(time_base);
        stream.set_avg_frame_rate(rate);
        let index = stream.index();
        Ok(Self {
            encoder,
            index,
            encoder_tb: time_base,
            stream_tb: time_base,
        })
    }

    /// Sends one frame (or the end of the stream) and writes every packet that comes out.
    fn send(
        &mut self,
        octx: &mut ffmpeg::format::context::Output,
        frame: Option<&VideoFrame>,
    ) -> Result<(), NodeError> {
        match frame {
            Some(f) => self.encoder.send_frame(f),
            None => self.encoder.send_eof(),
        }
        .map_err(fail("encoding video"))?;
        drain(
            &mut self.encoder,
            octx,
            self.index,
            self.encoder_tb,
            self.stream_tb,
        )
    }
}

/// Moves every ready packet from `encoder` to the muxer.
fn drain(
    encoder: &mut encoder::Encoder,
    octx: &mut ffmpeg::format::context::Output,
    index: usize,
    from: Rational,
    to: Rational,
) -> Result<(), NodeError> {
    let mut packet = ffmpeg::Packet::empty();
    loop {
        match encoder.receive_packet(&mut packet) {
            Ok(()) => {
                packet.set_stream(index);
                packet.rescale_ts(from, to);
                packet
                    .write_interleaved(octx)
                    .map_err(fail("writing a packet"))?;
            }
            Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {
                return Ok(());
            }
            Err(ffmpeg::Error::Eof) => return Ok(()),
            Err(e) => return Err(NodeError::Runtime(format!("encoding: {e}"))),
        }
    }
}

/// The samples that go into the file: planar f32 per channel.
struct Soundtrack {
    planes: Vec<Vec<f32>>,
    sample_rate: u32,
    layout: ChannelLayout,
}

impl Soundtrack {
    /// Batch item 0 of `audio`, trimmed to `ceil(sample_rate / rate * frames)` samples.
    fn new(audio: &Audio, frames: usize, rate: Rational) -> Result<Self, NodeError> {
        let (_, channels, samples) = audio.waveform.dims3().map_err(|_| {
            NodeError::Value(format!(
                "audio waveform must be [B, C, S], got {:?}",
                audio.waveform.dims()
            ))
        })?;
        if audio.waveform.dim(0)? == 0 {
            return Err(NodeError::Value("audio waveform has an empty batch".into()));
        }
        let layout = match channels {
            1 => ChannelLayout::MONO,
            2 => ChannelLayout::STEREO,
            6 => ChannelLayout::_5POINT1_BACK,
            c => {
                return Err(NodeError::Value(format!(
                    "cannot write audio with {c} channels (1, 2 or 6 are supported)"
                )));
            }
        };
        if audio.sample_rate == 0 {
            return Err(NodeError::Value("audio sample rate is 0".into()));
        }
        // ceil(sample_rate * frames / rate), with rate = num / den.
        let wanted = (audio.sample_rate as u128 * frames as u128 * rate.denominator() as u128)
            .div_ceil(rate.numerator() as u128);
        let keep = samples.min(usize::try_from(wanted).unwrap_or(usize::MAX));
        let first = audio
            .waveform
            .get(0)?
            .narrow(1, 0, keep)?
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?;
        let planes = (0..channels)
            .map(|c| first.get(c)?.to_vec1::<f32>())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            planes,
            sample_rate: audio.sample_rate,
            layout,
        })
    }
}

/// The AAC stream and its opened encoder, with the samples it will write.
struct AudioTrack {
    encoder: encoder::Audio,
    index: usize,
    stream_tb: Rational,
    soundtrack: Soundtrack,
}

impl AudioTrack {
    fn open(
        octx: &mut ffmpeg::format::context::Output,
        soundtrack: Soundtrack,
        global_header: bool,
    ) -> Result<Self, NodeError> {
        let codec = encoder::find_by_name("aac")
            .ok_or_else(|| NodeError::Runtime("this FFmpeg build has no AAC encoder".into()))?;
        let mut context = codec::context::Context::new_with_codec(codec);
        context.set_threading(codec::threading::Config {
            kind: codec::threading::Type::Slice,
            count: 0,
            ..Default::default()
        });
        if global_header {
            context.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        let mut enc = context
            .encoder()
            .audio()
            .map_err(fail("configuring the AAC encoder"))?;
        let rate = soundtrack.sample_rate;
        enc.set_rate(rate as i32);
        enc.set_format(Sample::F32(sample::Type::Planar));
        enc.set_channel_layout(soundtrack.layout);
        enc.set_channels(soundtrack.layout.channels());
        enc.set_bit_rate(0);
        enc.set_tolerance(32_000);
        enc.set_time_base(Rational::new(1, rate as i32));
        let encoder = enc.open_as_with(codec, Dictionary::new()).map_err(|e| {
            NodeError::Value(format!(
                "the AAC encoder cannot encode {} channel(s) at {rate} Hz: {e}",
                soundtrack.planes.len()
            ))
        })?;
        let mut stream = octx
            .add_stream(codec)
            .map_err(fail("adding the audio stream"))?;
        stream.set_parameters(&encoder);
        stream.set_time_base(Rational::new(1, rate as i32));
        let index = stream.index();
        Ok(Self {
            encoder,
            index,
            stream_tb: Rational::new(1, rate as i32),
            soundtrack,
        })
    }

    /// Encodes every sample in encoder-sized frames (pts in samples), then flushes.
    fn encode_all(&mut self, octx: &mut ffmpeg::format::context::Output) -> Result<(), NodeError> {
        let total = self.soundtrack.planes.first().map_or(0, Vec::len);
        let frame_size = match self.encoder.frame_size() {
            0 => total.max(1),
            size => size as usize,
        };
        let time_base = Rational::new(1, self.soundtrack.sample_rate as i32);
        let mut start = 0;
        while start < total {
            let len = frame_size.min(total - start);
            let mut frame = AudioFrame::new(
                Sample::F32(sample::Type::Planar),
                len,
                self.soundtrack.layout,
            );
            frame.set_rate(self.soundtrack.sample_rate);
            for (c, plane) in self.soundtrack.planes.iter().enumerate() {
                frame.plane_mut::<f32>(c)[..len].copy_from_slice(&plane[start..start + len]);
            }
            frame.set_pts(Some(start as i64));
            self.encoder
                .send_frame(&frame)
                .map_err(fail("encoding audio"))?;
            drain(
                &mut self.encoder,
                octx,
                self.index,
                time_base,
                self.stream_tb,
            )?;
            start += len;
        }
        self.encoder.send_eof().map_err(fail("encoding audio"))?;
        drain(
            &mut self.encoder,
            octx,
            self.index,
            time_base,
            self.stream_tb,
        )
    }
}
