//! Video encoding/decoding against the real FFmpeg libraries, checked with `ffprobe` and by
//! decoding the files back. Test videos are generated here (moving gradients, sine tones).

use std::path::Path;
use std::process::Command;

use candle_core::{Device, Tensor};
use nodes::NodeError;
use nodes::value::{Audio, FrameRate};
use nodes::video::{decode, encode, remux};
use serde_json::Value as Json;

const NO_CHECK: &dyn Fn() -> Result<(), NodeError> = &|| Ok(());

/// `n` frames of a smooth gradient that moves with the frame index, `[n, h, w, 3]`.
fn gradient(n: usize, w: usize, h: usize) -> Tensor {
    let tau = std::f32::consts::TAU;
    let mut data = Vec::with_capacity(n * h * w * 3);
    for t in 0..n {
        let phase = t as f32 / n as f32;
        for y in 0..h {
            for x in 0..w {
                let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
                data.push(0.5 + 0.4 * (tau * (fx + phase)).sin());
                data.push(0.1 + 0.8 * fy);
                data.push(0.5 + 0.4 * (tau * (0.5 * (fx + fy) - phase)).cos());
            }
        }
    }
    Tensor::from_vec(data, (n, h, w, 3), &Device::Cpu).unwrap()
}

/// A `[1, channels, samples]` sine tone (a different pitch per channel).
fn sine(channels: usize, samples: usize, sample_rate: u32) -> Audio {
    let mut data = Vec::with_capacity(channels * samples);
    for c in 0..channels {
        let freq = 440.0 * (c + 1) as f32;
        data.extend(
            (0..samples).map(|i| {
                0.5 * (std::f32::consts::TAU * freq * i as f32 / sample_rate as f32).sin()
            }),
        );
    }
    Audio {
        waveform: Tensor::from_vec(data, (1, channels, samples), &Device::Cpu).unwrap(),
        sample_rate,
    }
}

fn ffprobe(path: &Path) -> Json {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_streams",
            "-show_format",
        ])
        .arg(path)
        .output()
        .expect("ffprobe (Debian package ffmpeg) must be installed");
    assert!(out.status.success(), "ffprobe failed on {}", path.display());
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stream<'a>(probe: &'a Json, kind: &str) -> &'a Json {
    probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} stream in {probe}"))
}

fn float(v: &Json) -> f64 {
    v.as_str().unwrap().parse().unwrap()
}

fn write(path: &Path, images: &Tensor, audio: Option<&Audio>, fps: FrameRate) {
    let tags = vec![
        ("workflow".to_string(), r#"{"nodes": []}"#.to_string()),
        (
            "prompt".to_string(),
            r#"{"1": {"class_type": "X"}}"#.to_string(),
        ),
    ];
    let job = encode::EncodeJob {
        images,
        audio,
        frame_rate: fps,
        metadata: &tags,
    };
    encode::write_mp4(path, &job, NO_CHECK).unwrap();
}

/// Mean absolute error and PSNR (dB) between two equally shaped frame stacks.
fn compare(a: &Tensor, b: &Tensor) -> (f32, f32) {
    let diff = (a - b).unwrap();
    let mae = diff
        .abs()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let mse = diff
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    (mae, 10.0 * (1.0 / mse).log10())
}

fn check_round_trip(w: usize, h: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    let (frames, rate) = (25, FrameRate { num: 24, den: 1 });
    let images = gradient(frames, w, h);
    // 1.5 s of audio for a 25/24 s video: the file keeps ceil(24000 * 25 / 24) = 25000 samples.
    let audio = sine(2, 36_000, 24_000);
    write(&path, &images, Some(&audio), rate);
    let (ew, eh) = (w - w % 2, h - h % 2);

    let probe = ffprobe(&path);
    let video = stream(&probe, "video");
    assert_eq!(video["codec_name"], "h264");
    assert_eq!(video["pix_fmt"], "yuv420p");
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(ew as u64), Some(eh as u64))
    );
    assert_eq!(video["r_frame_rate"], "24/1");
    assert_eq!(video["avg_frame_rate"], "24/1");
    assert_eq!(video["nb_frames"], "25");
    assert_eq!(video["color_space"], "bt709");
    assert_eq!(video["color_primaries"], "bt709");
    assert_eq!(video["color_transfer"], "iec61966-2-1");
    assert_eq!(video["color_range"], "tv");
    let sound = stream(&probe, "audio");
    assert_eq!(sound["codec_name"], "aac");
    assert_eq!(sound["sample_rate"], "24000");
    assert_eq!(sound["channels"], 2);
    let aac_frame = 1024.0 / 24_000.0;
    let expected = 25_000.0 / 24_000.0;
    let duration = float(&sound["duration"]);
    assert!(
        (duration - expected).abs() <= aac_frame,
        "audio lasts {duration} s, want {expected}"
    );
    let tags = &probe["format"]["tags"];
    assert_eq!(tags["prompt"], r#"{"1": {"class_type": "X"}}"#);
    assert_eq!(tags["workflow"], r#"{"nodes": []}"#);
    assert!(
        probe["format"]["format_name"]
            .as_str()
            .unwrap()
            .contains("mp4")
    );

    let decoded = decode::decode_file(&path, NO_CHECK).unwrap();
    assert_eq!(decoded.images.dims(), [frames, eh, ew, 3]);
    assert_eq!(decoded.frame_rate, rate);
    let original = images.narrow(1, 0, eh).unwrap().narrow(2, 0, ew).unwrap();
    let (mae, psnr) = compare(&original, &decoded.images);
    println!("{w}x{h}: decoded frames vs input: mean abs error {mae:.5}, PSNR {psnr:.2} dB");
    assert!(mae < 0.02 && psnr > 30.0, "mae {mae}, psnr {psnr}");

    let sound = decoded.audio.expect("decoded audio");
    assert_eq!(sound.sample_rate, 24_000);
    let (_, channels, samples) = sound.waveform.dims3().unwrap();
    assert_eq!(channels, 2);
    assert!(
        samples.abs_diff(25_000) <= 1024,
        "{samples} samples decoded"
    );
    let n = samples.min(25_000) - 2048;
    let got = sound.waveform.narrow(2, 1024, n).unwrap();
    let want = audio.waveform.narrow(2, 1024, n).unwrap();
    let (audio_mae, snr) = compare(&want, &got);
    println!("{w}x{h}: decoded audio vs input: mean abs error {audio_mae:.5}, PSNR {snr:.2} dB");
    assert!(audio_mae < 0.02, "audio mean abs error {audio_mae}");
}

#[test]
fn even_size_round_trip() {
    check_round_trip(64, 48);
}

#[test]
fn odd_sizes_lose_the_last_row_and_column() {
    check_round_trip(67, 45);
}

#[test]
fn frame_rates_are_exact_fractions() {
    let dir = tempfile::tempdir().unwrap();
    let images = gradient(6, 32, 32);
    for (rate, text) in [
        (
            FrameRate {
                num: 30000,
                den: 1001,
            },
            "2997/100",
        ),
        (
            FrameRate {
                num: 23976,
                den: 1000,
            },
            "2997/125",
        ),
        (FrameRate { num: 25, den: 1 }, "25/1"),
    ] {
        let path = dir.path().join(format!("{}.mp4", rate.num));
        write(&path, &images, None, rate);
        let probe = ffprobe(&path);
        assert_eq!(stream(&probe, "video")["avg_frame_rate"], text);
        assert!(
            probe["streams"].as_array().unwrap().len() == 1,
            "no audio stream expected"
        );
        let decoded = decode::decode_file(&path, NO_CHECK).unwrap();
        let (num, den) = text.split_once('/').unwrap();
        assert_eq!(
            decoded.frame_rate,
            FrameRate {
                num: num.parse().unwrap(),
                den: den.parse().unwrap()
            }
        );
        assert!(decoded.audio.is_none());
    }
}

#[test]
fn mono_and_short_audio_are_kept_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mono.mp4");
    // 0.5 s of mono audio under a 1 s video: never padded.
    write(
        &path,
        &gradient(25, 32, 32),
        Some(&sine(1, 22_050, 44_100)),
        FrameRate { num: 25, den: 1 },
    );
    let probe = ffprobe(&path);
    let sound = stream(&probe, "audio");
    assert_eq!(sound["channels"], 1);
    assert_eq!(sound["sample_rate"], "44100");
    assert!((float(&sound["duration"]) - 0.5).abs() <= 1024.0 / 44_100.0);
}

#[test]
fn bad_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.mp4");
    let rate = FrameRate { num: 24, den: 1 };
    let job = |images: &Tensor, audio: Option<&Audio>| {
        let job = encode::EncodeJob {
            images,
            audio,
            frame_rate: rate,
            metadata: &[],
        };
        encode::write_mp4(&path, &job, NO_CHECK)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let empty = Tensor::zeros((0, 16, 16, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert_eq!(job(&empty, None), "cannot save a video with no frames");
    let frames = gradient(4, 16, 16);
    assert!(job(&frames, Some(&sine(3, 4000, 24_000))).contains("3 channels"));
    assert!(job(&frames, Some(&sine(2, 4000, 1234))).contains("1234 Hz"));
    assert!(job(&gradient(2, 1, 16), None).contains("even dimensions"));
    assert!(!path.exists(), "failed encodes leave no file behind");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn corrupt_and_missing_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.mp4");
    std::fs::write(
        &garbage,
        (0..4096u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    for result in [
        decode::decode_file(&garbage, NO_CHECK).map(|_| ()),
        decode::probe(&garbage).map(|_| ()),
    ] {
        let err = result.unwrap_err();
        assert!(matches!(err, NodeError::Value(_)), "{err:?}");
        assert!(
            err.to_string().starts_with("cannot read video file"),
            "{err}"
        );
    }
    let missing = decode::decode_file(&dir.path().join("none.mp4"), NO_CHECK)
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(missing, NodeError::FileNotFound(_)), "{missing:?}");
}

#[test]
fn interruption_stops_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stopped.mp4");
    let images = gradient(4, 16, 16);
    let job = encode::EncodeJob {
        images: &images,
        audio: None,
        frame_rate: FrameRate { num: 24, den: 1 },
        metadata: &[],
    };
    let err = encode::write_mp4(&path, &job, &|| Err(NodeError::Interrupted)).unwrap_err();
    assert!(matches!(err, NodeError::Interrupted));
    assert!(!path.exists());
}

#[test]
fn remux_copies_streams_and_overlays_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.mp4");
    write(
        &src,
        &gradient(10, 32, 32),
        Some(&sine(2, 24_000, 24_000)),
        FrameRate { num: 25, den: 1 },
    );
    let dst = dir.path().join("copy.mp4");
    let tags = vec![("prompt".to_string(), "{\"2\": 2}".to_string())];
    remux::remux_to_mp4(&src, &dst, Some(&tags)).unwrap();
    let (a, b) = (ffprobe(&src), ffprobe(&dst));
    for kind in ["video", "audio"] {
        let (sa, sb) = (stream(&a, kind), stream(&b, kind));
        for key in ["codec_name", "nb_frames", "duration_ts", "time_base"] {
            assert_eq!(sa[key], sb[key], "{kind} {key}");
        }
    }
    assert_eq!(b["format"]["tags"]["prompt"], "{\"2\": 2}");
    assert_eq!(
        b["format"]["tags"]["workflow"], r#"{"nodes": []}"#,
        "source tags are kept"
    );
    let (x, y) = (
        decode::decode_file(&src, NO_CHECK).unwrap(),
        decode::decode_file(&dst, NO_CHECK).unwrap(),
    );
    assert_eq!(
        compare(&x.images, &y.images).0,
        0.0,
        "copied, not re-encoded"
    );
}

#[test]
fn rotation_tags_are_applied_like_ffmpeg_autorotate() {
    let dir = tempfile::tempdir().unwrap();
    let (src, rotated) = (dir.path().join("src.mp4"), dir.path().join("rot.mp4"));
    let (w, h) = (48, 32);
    write(
        &src,
        &gradient(3, w, h),
        None,
        FrameRate { num: 24, den: 1 },
    );
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(&src)
        .args(["-c", "copy", "-metadata:s:v:0", "rotate=90"])
        .arg(&rotated)
        .status()
        .expect("ffmpeg (Debian package ffmpeg) must be installed");
    assert!(status.success());
    let decoded = decode::decode_file(&rotated, NO_CHECK).unwrap();
    assert_eq!(
        decoded.images.dims(),
        [3, w, h, 3],
        "portrait after rotation"
    );
    let raw = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&rotated)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(raw.status.success());
    let reference: Vec<f32> = raw.stdout.iter().map(|&b| b as f32 / 255.0).collect();
    let reference = Tensor::from_vec(reference, (3, w, h, 3), &Device::Cpu).unwrap();
    let (mae, _) = compare(&reference, &decoded.images);
    println!("rotated decode vs ffmpeg autorotate: mean abs error {mae:.5}");
    assert!(mae < 0.01, "orientation differs from ffmpeg's: {mae}");
}

#[test]
fn flat_colours_come_back_within_two_levels() {
    // A colour-matrix mismatch (BT.601 vs BT.709) shifts saturated colours by far more.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flat.mp4");
    let colour = Tensor::new(&[0.8f32, 0.2, 0.4], &Device::Cpu).unwrap();
    let images = colour
        .reshape((1, 1, 1, 3))
        .unwrap()
        .broadcast_as((4, 64, 64, 3))
        .unwrap()
        .contiguous()
        .unwrap();
    write(&path, &images, None, FrameRate { num: 24, den: 1 });
    let decoded = decode::decode_file(&path, NO_CHECK).unwrap();
    let max = (&decoded.images - &images)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    println!(
        "flat colour: max abs error {max:.5} ({:.2} levels)",
        max * 255.0
    );
    assert!(max <= 2.0 / 255.0 + 1e-6, "max abs error {max}");
}

#[test]
fn remux_keeps_the_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let (src, rotated, copy) = (
        dir.path().join("src.mp4"),
        dir.path().join("rot.mp4"),
        dir.path().join("copy.mp4"),
    );
    write(
        &src,
        &gradient(3, 48, 32),
        None,
        FrameRate { num: 24, den: 1 },
    );
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(&src)
        .args(["-c", "copy", "-metadata:s:v:0", "rotate=90"])
        .arg(&rotated)
        .status()
        .expect("ffmpeg (Debian package ffmpeg) must be installed");
    assert!(status.success());
    remux::remux_to_mp4(&rotated, &copy, None).unwrap();
    let (before, after) = (ffprobe(&rotated), ffprobe(&copy));
    let side = &stream(&after, "video")["side_data_list"];
    assert_eq!(side[0]["side_data_type"], "Display Matrix", "{side}");
    assert_eq!(*side, stream(&before, "video")["side_data_list"]);
    let decoded = decode::decode_file(&copy, NO_CHECK).unwrap();
    assert_eq!(decoded.images.dims(), [3, 48, 32, 3]);
}
