//! Reading a video file into components, as ComfyUI's `VideoFromFile.get_components` does:
//! every frame of the first video stream as RGB in 0..1 (8-bit sources through RGB24 / 255,
//! deeper ones through RGB48 / 65535; the container's rotation applied), the last decodable
//! audio stream as planar f32 `[1, C, S]` at its own rate, and the stream's average frame rate
//! as an exact fraction (1 when unknown).

use std::path::Path;

use candle_core::{Device, Tensor};
use ffmpeg::format::{Pixel, Sample, sample};
use ffmpeg::media::Type as MediaType;
use ffmpeg::software::resampling;
use ffmpeg::util::frame::{audio::Audio as AudioFrame, video::Video as VideoFrame};
use ffmpeg::{ChannelLayout, codec, decoder};
use ffmpeg_next as ffmpeg;

use super::av::{self, fail, unreadable};
use super::pixels::{self, Scaler};
use crate::error::NodeError;
use crate::value::{Audio, FrameRate};

/// A decoded video.
pub struct Decoded {
    /// `[N, H, W, 3]` f32 frames in 0..1.
    pub images: Tensor,
    /// The soundtrack, if the file has a decodable audio stream with samples.
    pub audio: Option<Audio>,
    /// The first video stream's average frame rate.
    pub frame_rate: FrameRate,
}

/// What a file holds, read without decoding it.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The first video stream's coded width.
    pub width: u32,
    /// Its coded height.
    pub height: u32,
    /// The demuxer's names (`"mov,mp4,m4a,3gp,3g2,mj2"`).
    pub container: String,
    /// The first video stream's codec (`"h264"`).
    pub video_codec: String,
}

fn open(path: &Path) -> Result<ffmpeg::format::context::Input, NodeError> {
    av::init()?;
    if !path.is_file() {
        return Err(NodeError::FileNotFound(format!(
            "video file {} does not exist",
            path.display()
        )));
    }
    ffmpeg::format::input(path).map_err(unreadable(path))
}

fn first_video_stream(
    ictx: &ffmpeg::format::context::Input,
    path: &Path,
) -> Result<usize, NodeError> {
    // FFmpeg's pick skips attached cover pictures; otherwise it is the first video stream.
    ictx.streams()
        .best(MediaType::Video)
        .or_else(|| {
            ictx.streams()
                .find(|s| s.parameters().medium() == MediaType::Video)
        })
        .map(|s| s.index())
        .ok_or_else(|| {
            NodeError::Value(format!(
                "No video stream found in file '{}'",
                path.display()
            ))
        })
}

/// Opens `path` and describes its first video stream.
pub fn probe(path: &Path) -> Result<Probe, NodeError> {
    let ictx = open(path)?;
    let index = first_video_stream(&ictx, path)?;
    let stream = ictx
        .stream(index)
        .ok_or_else(|| NodeError::Runtime("video stream vanished".into()))?;
    let params = stream.parameters();
    let context = codec::context::Context::from_parameters(params).map_err(unreadable(path))?;
    let (width, height) = match context.decoder().video() {
        Ok(v) => (v.width(), v.height()),
        Err(_) => (0, 0),
    };
    Ok(Probe {
        width,
        height,
        container: ictx.format().name().to_string(),
        video_codec: stream.parameters().id().name().to_string(),
    })
}

/// Decodes the whole file; `check` runs between frames (interruption).
pub fn decode_file(
    path: &Path,
    check: &dyn Fn() -> Result<(), NodeError>,
) -> Result<Decoded, NodeError> {
    let mut ictx = open(path)?;
    let video_index = first_video_stream(&ictx, path)?;
    let (mut video, frame_rate) = {
        let stream = ictx
            .stream(video_index)
            .ok_or_else(|| NodeError::Runtime("video stream vanished".into()))?;
        (
            VideoSink::new(&stream, path)?,
            av::frame_rate_of(stream.avg_frame_rate()),
        )
    };
    let mut audio = last_decodable_audio(&ictx)
        .map(|index| {
            let stream = ictx
                .stream(index)
                .ok_or_else(|| NodeError::Runtime("audio stream vanished".into()))?;
            AudioSink::new(&stream, path)
        })
        .transpose()?;

    let mut packet = ffmpeg::Packet::empty();
    loop {
        match packet.read(&mut ictx) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            Err(ffmpeg::Error::InvalidData) => continue,
            Err(e) => return Err(unreadable(path)(e)),
        }
        if packet.stream() == video_index {
            video.push(Some(&packet), check)?;
        } else if let Some(sink) = audio.as_mut().filter(|s| s.index == packet.stream()) {
            sink.push(Some(&packet))?;
        }
    }
    video.push(None, check)?;
    if let Some(sink) = audio.as_mut() {
        sink.push(None)?;
    }
    let images = video.finish(path)?;
    let audio = audio.map(AudioSink::finish).transpose()?.flatten();
    Ok(Decoded {
        images,
        audio,
        frame_rate,
    })
}

/// The last audio stream FFmpeg has a decoder for (ComfyUI's `last_decodable_audio_stream`).
fn last_decodable_audio(ictx: &ffmpeg::format::context::Input) -> Option<usize> {
    let found = ictx
        .streams()
        .filter(|s| s.parameters().medium() == MediaType::Audio)
        .filter(|s| decoder::find(s.parameters().id()).is_some())
        .map(|s| s.index())
        .last();
    if found.is_none()
        && ictx
            .streams()
            .any(|s| s.parameters().medium() == MediaType::Audio)
    {
        tracing::warn!("No decodable audio stream found in video; ignoring audio.");
    }
    found
}

/// Counter-clockwise quarter turns that make a frame upright, from a display matrix
/// (`av_display_rotation_get`; ComfyUI rotates by `rotation // 90` quarter turns).
fn quarter_turns(matrix: &[u8]) -> u32 {
    if matrix.len() < 36 {
        return 0;
    }
    let m: Vec<f64> = matrix
        .chunks_exact(4)
        .take(9)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64 / 65536.0)
        .collect();
    let scale0 = m[0].hypot(m[3]);
    let scale1 = m[1].hypot(m[4]);
    if scale0 == 0.0 || scale1 == 0.0 {
        return 0;
    }
    let degrees = -(m[1] / scale1).atan2(m[0] / scale0).to_degrees();
    (degrees.round() / 90.0).floor().rem_euclid(4.0) as u32
}

/// Decodes video packets into one growing RGB buffer.
struct VideoSink {
    decoder: decoder::Video,
    stream_turns: u32,
    scaler: Option<Scaler>,
    size: Option<(usize, usize)>,
    frames: usize,
    data: Vec<f32>,
}

impl VideoSink {
    fn new(stream: &ffmpeg::format::stream::Stream, path: &Path) -> Result<Self, NodeError> {
        let mut context = codec::context::Context::from_parameters(stream.parameters())
            .map_err(unreadable(path))?;
        context.set_threading(codec::threading::Config {
            kind: codec::threading::Type::Frame,
            count: 0,
            ..Default::default()
        });
        let decoder = context.decoder().video().map_err(unreadable(path))?;
        let stream_turns = stream
            .side_data()
            .find(|d| d.kind() == codec::packet::side_data::Type::DisplayMatrix)
            .map_or(0, |d| quarter_turns(d.data()));
        let estimate = usize::try_from(stream.frames()).unwrap_or(0).min(10_000);
        let per_frame = decoder.width() as usize * decoder.height() as usize * 3;
        Ok(Self {
            decoder,
            stream_turns,
            scaler: None,
            size: None,
            frames: 0,
            data: Vec::with_capacity(estimate.saturating_mul(per_frame).min(1 << 31)),
        })
    }

    /// Sends a packet (or the end of the stream) and converts every frame that comes out.
    fn push(
        &mut self,
        packet: Option<&ffmpeg::Packet>,
        check: &dyn Fn() -> Result<(), NodeError>,
    ) -> Result<(), NodeError> {
        let sent = match packet {
            Some(p) => self.decoder.send_packet(p),
            None => self.decoder.send_eof(),
        };
        if let Err(e) = sent {
            // ComfyUI skips packets PyAV reports as invalid data and keeps decoding.
            tracing::info!("video decode error: {e}");
            return Ok(());
        }
        let mut frame = VideoFrame::empty();
        while self.decoder.receive_frame(&mut frame).is_ok() {
            check()?;
            self.append(&frame)?;
        }
        Ok(())
    }

    fn append(&mut self, frame: &VideoFrame) -> Result<(), NodeError> {
        if !self.scaler.as_ref().is_some_and(|s| s.accepts(frame)) {
            let target = if pixels::is_high_bit_depth(frame.format()) {
                Pixel::RGB48LE
            } else {
                Pixel::RGB24
            };
            self.scaler = Some(Scaler::decoded_to_rgb(frame, target)?);
        }
        let mut rgb = VideoFrame::empty();
        if let Some(scaler) = self.scaler.as_mut() {
            scaler.run(frame, &mut rgb)?;
        }
        let turns = frame
            .side_data(ffmpeg::util::frame::side_data::Type::DisplayMatrix)
            .map_or(self.stream_turns, |d| quarter_turns(d.data()));
        let (w, h) = (rgb.width() as usize, rgb.height() as usize);
        let size = if turns % 2 == 1 { (h, w) } else { (w, h) };
        if *self.size.get_or_insert(size) != size {
            return Err(NodeError::Value(format!(
                "video frame size changes mid-stream ({:?} -> {size:?})",
                self.size
            )));
        }
        if turns == 0 {
            pixels::append_rgb(&rgb, &mut self.data);
        } else {
            let mut upright = Vec::with_capacity(w * h * 3);
            pixels::append_rgb(&rgb, &mut upright);
            let (rotated, _, _) = pixels::rotate(&upright, w, h, turns);
            self.data.extend_from_slice(&rotated);
        }
        self.frames += 1;
        Ok(())
    }

    fn finish(self, path: &Path) -> Result<Tensor, NodeError> {
        let Some((w, h)) = self.size.filter(|_| self.frames > 0) else {
            return Err(NodeError::Value(format!(
                "no decodable video frames in '{}'",
                path.display()
            )));
        };
        Ok(Tensor::from_vec(
            self.data,
            (self.frames, h, w, 3),
            &Device::Cpu,
        )?)
    }
}

/// Decodes audio packets into planar f32 channels at the stream's own rate and layout.
struct AudioSink {
    index: usize,
    decoder: decoder::Audio,
    resampler: Option<resampling::Context>,
    channels: Vec<Vec<f32>>,
    sample_rate: u32,
}

impl AudioSink {
    fn new(stream: &ffmpeg::format::stream::Stream, path: &Path) -> Result<Self, NodeError> {
        let context = codec::context::Context::from_parameters(stream.parameters())
            .map_err(unreadable(path))?;
        let decoder = context.decoder().audio().map_err(unreadable(path))?;
        Ok(Self {
            index: stream.index(),
            sample_rate: decoder.rate(),
            decoder,
            resampler: None,
            channels: Vec::new(),
        })
    }

    fn push(&mut self, packet: Option<&ffmpeg::Packet>) -> Result<(), NodeError> {
        let sent = match packet {
            Some(p) => self.decoder.send_packet(p),
            None => self.decoder.send_eof(),
        };
        if let Err(e) = sent {
            tracing::info!("audio decode error: {e}");
            return Ok(());
        }
        let mut frame = AudioFrame::empty();
        while self.decoder.receive_frame(&mut frame).is_ok() {
            self.append(&frame)?;
        }
        Ok(())
    }

    fn append(&mut self, frame: &AudioFrame) -> Result<(), NodeError> {
        let planar = Sample::F32(sample::Type::Planar);
        if frame.format() == planar {
            self.extend(frame);
            return Ok(());
        }
        if self.resampler.is_none() {
            let layout = match frame.channel_layout() {
                l if l.is_empty() => ChannelLayout::default(frame.channels() as i32),
                l => l,
            };
            self.resampler = Some(
                resampling::Context::get(
                    frame.format(),
                    layout,
                    frame.rate(),
                    planar,
                    layout,
                    frame.rate(),
                )
                .map_err(fail("creating the audio converter"))?,
            );
        }
        let mut converted = AudioFrame::empty();
        if let Some(resampler) = self.resampler.as_mut() {
            resampler
                .run(frame, &mut converted)
                .map_err(fail("converting audio samples"))?;
        }
        self.extend(&converted);
        Ok(())
    }

    fn extend(&mut self, frame: &AudioFrame) {
        let count = frame.channels() as usize;
        if self.channels.len() < count {
            self.channels.resize_with(count, Vec::new);
        }
        let samples = frame.samples();
        for (c, out) in self.channels.iter_mut().enumerate().take(count) {
            out.extend_from_slice(&frame.plane::<f32>(c)[..samples]);
        }
        if self.sample_rate == 0 {
            self.sample_rate = frame.rate();
        }
    }

    fn finish(self) -> Result<Option<Audio>, NodeError> {
        let samples = self.channels.first().map_or(0, Vec::len);
        if samples == 0 {
            return Ok(None);
        }
        let channels = self.channels.len();
        let flat: Vec<f32> = self
            .channels
            .into_iter()
            .flat_map(|c| c.into_iter().take(samples))
            .collect();
        Ok(Some(Audio {
            waveform: Tensor::from_vec(flat, (1, channels, samples), &Device::Cpu)?,
            sample_rate: self.sample_rate.max(1),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A display matrix whose `av_display_rotation_get` is `degrees` (counter-clockwise).
    fn matrix(degrees: f64) -> Vec<u8> {
        let r = degrees.to_radians();
        let (c, s) = (r.cos(), r.sin());
        let fixed = |v: f64| (v * 65536.0).round() as i32;
        let m = [fixed(c), fixed(-s), 0, fixed(s), fixed(c), 0, 0, 0, 1 << 30];
        m.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn display_matrices_give_counter_clockwise_quarter_turns() {
        assert_eq!(quarter_turns(&matrix(0.0)), 0);
        // A phone's `rotate=90` tag reads as -90 degrees: three counter-clockwise turns.
        assert_eq!(quarter_turns(&matrix(-90.0)), 3);
        assert_eq!(quarter_turns(&matrix(90.0)), 1);
        assert_eq!(quarter_turns(&matrix(180.0)), 2);
        assert_eq!(quarter_turns(&[0u8; 4]), 0);
    }
}
