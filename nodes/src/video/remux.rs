//! Saving a `VideoFromFile` without re-encoding (ComfyUI's `save_to` "reuse streams" branch):
//! every video, audio and subtitle stream is copied packet by packet (with its side data, such
//! as the rotation) into an MP4, the source's container metadata is kept and the caller's tags
//! overlay it.

use std::path::Path;

use ffmpeg::media::Type as MediaType;
use ffmpeg::{Dictionary, Rational};
use ffmpeg_next as ffmpeg;

use super::av::{self, fail, unreadable};
use crate::error::NodeError;

/// Copies the streams of `src` into an MP4 at `dst`. `metadata` overlays the source's tags
/// (`None`: the source's tags only).
pub fn remux_to_mp4(
    src: &Path,
    dst: &Path,
    metadata: Option<&[(String, String)]>,
) -> Result<(), NodeError> {
    av::init()?;
    let tmp = dst.with_extension(format!("tmp{}.mp4", std::process::id()));
    let result = copy_streams(src, &tmp, metadata).and_then(|()| {
        std::fs::rename(&tmp, dst)
            .map_err(|e| NodeError::io(format!("renaming to {}", dst.display()), e))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn copy_streams(
    src: &Path,
    dst: &Path,
    metadata: Option<&[(String, String)]>,
) -> Result<(), NodeError> {
    let mut ictx = ffmpeg::format::input(src).map_err(unreadable(src))?;
    let mut octx = ffmpeg::format::output_as(dst, "mp4")
        .map_err(fail(format!("creating {}", dst.display())))?;
    octx.set_metadata(merged_metadata(&ictx, metadata));

    // Input stream index -> (output stream index, input time base).
    let mut map: Vec<Option<(usize, Rational)>> = vec![None; ictx.nb_streams() as usize];
    for stream in ictx.streams() {
        let medium = stream.parameters().medium();
        if !matches!(
            medium,
            MediaType::Video | MediaType::Audio | MediaType::Subtitle
        ) {
            continue;
        }
        let mut out = octx
            .add_stream(ffmpeg::encoder::find(ffmpeg::codec::Id::None))
            .map_err(fail("adding a stream"))?;
        out.set_parameters(stream.parameters());
        out.set_time_base(stream.time_base());
        // SAFETY: the stream's codec parameters are valid; a zero tag lets the MP4 muxer pick
        // its own (PyAV's add_stream_from_template does the same).
        unsafe {
            (*out.parameters().as_mut_ptr()).codec_tag = 0;
        }
        copy_side_data(&stream, &mut out);
        map[stream.index()] = Some((out.index(), stream.time_base()));
    }
    let mut options = Dictionary::new();
    options.set("movflags", "use_metadata_tags+faststart");
    octx.write_header_with(options).map_err(|e| {
        NodeError::Value(format!(
            "cannot copy the streams of {} into an MP4: {e}",
            src.display()
        ))
    })?;

    let mut packet = ffmpeg::Packet::empty();
    loop {
        match packet.read(&mut ictx) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            Err(ffmpeg::Error::InvalidData) => continue,
            Err(e) => return Err(unreadable(src)(e)),
        }
        let Some(Some((index, in_tb))) = map.get(packet.stream()).copied() else {
            continue;
        };
        if packet.dts().is_none() {
            continue;
        }
        let out_tb = octx
            .stream(index)
            .map(|s| s.time_base())
            .ok_or_else(|| NodeError::Runtime("output stream vanished".into()))?;
        packet.rescale_ts(in_tb, out_tb);
        packet.set_position(-1);
        packet.set_stream(index);
        packet
            .write_interleaved(&mut octx)
            .map_err(fail("writing a packet"))?;
    }
    octx.write_trailer().map_err(fail("finishing the MP4 file"))
}

/// Copies a stream's side data (the display matrix that rotates phone videos, ...): FFmpeg 5.1
/// keeps it on the stream rather than in the codec parameters.
fn copy_side_data(
    src: &ffmpeg::format::stream::Stream,
    dst: &mut ffmpeg::format::stream::StreamMut,
) {
    for side in src.side_data() {
        let bytes = side.data();
        // SAFETY: `dst` is a live stream of an output context being set up; FFmpeg allocates
        // `bytes.len()` bytes for the new entry (or returns null), which we fill completely.
        unsafe {
            let target = ffmpeg::ffi::av_stream_new_side_data(
                dst.as_mut_ptr(),
                side.kind().into(),
                bytes.len(),
            );
            if !target.is_null() {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), target, bytes.len());
            }
        }
    }
}

/// The source's container tags, with `metadata` overlaid (ComfyUI's `write_output_metadata`).
fn merged_metadata<'a>(
    ictx: &ffmpeg::format::context::Input,
    metadata: Option<&[(String, String)]>,
) -> Dictionary<'a> {
    let mut tags = Dictionary::new();
    for (key, value) in ictx.metadata().iter() {
        let overridden = metadata.is_some_and(|m| m.iter().any(|(k, _)| k == key));
        if !overridden {
            tags.set(key, value);
        }
    }
    for (key, value) in metadata.unwrap_or(&[]) {
        tags.set(key, value);
    }
    tags
}
