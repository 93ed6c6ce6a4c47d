//! The video nodes run through the engine: CreateVideo -> SaveVideo writes a playable MP4 and
//! reports it as ComfyUI does; LoadVideo -> GetVideoComponents -> CreateVideo re-encodes it;
//! metadata follows `Env::save_metadata`; broken uploads fail at LoadVideo.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use engine::events::Collect;
use engine::{CachePolicy, Engine, ExecutionResult, Job, Outcome};
use nodes::value::Audio;
use nodes::{
    Ctx, Env, InputDef, Inputs, NodeDef, NodeError, NodeSchema, OutputDef, Outputs, Value,
};
use serde_json::{Value as Json, json};

/// A test node producing `seconds` of a stereo 440 Hz tone at 24 kHz.
fn sine_node() -> NodeDef {
    NodeDef::new(
        NodeSchema::v1("TestSine", "testing")
            .input(InputDef::float("seconds").default(1.0))
            .output(OutputDef::new("AUDIO")),
        |_: &Ctx, i: &Inputs| -> Result<Outputs, NodeError> {
            let rate = 24_000u32;
            let samples = (i.float("seconds")? * rate as f64) as usize;
            let tone: Vec<f32> = (0..2 * samples)
                .map(|k| {
                    let t = (k % samples) as f32 / rate as f32;
                    0.3 * (std::f32::consts::TAU * 440.0 * t).sin()
                })
                .collect();
            let waveform = Tensor::from_vec(tone, (1, 2, samples), &Device::Cpu)?;
            Ok(Outputs::one(Value::Audio(Audio {
                waveform,
                sample_rate: rate,
            })))
        },
    )
}

struct Harness {
    engine: Engine,
    env: Env,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::under(dir.path());
        let mut registry = nodes::builtin_registry();
        registry.register(sine_node());
        Self {
            engine: Engine::new(Arc::new(registry), CachePolicy::default()),
            env,
            _dir: dir,
        }
    }

    fn run(&mut self, prompt: &Json) -> ExecutionResult {
        let validated = self
            .engine
            .validate(&self.env, prompt, None)
            .unwrap_or_else(|e| panic!("{}", e.to_json()));
        let extra = json!({"extra_pnginfo": {"workflow": {"nodes": [], "version": 0.4}}});
        let job = Job {
            prompt_id: "p1",
            prompt: &validated.prompt,
            outputs: &validated.outputs,
            extra_data: &extra,
            env: &self.env,
        };
        self.engine.execute(&job, &Collect::default())
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

fn streams(probe: &Json) -> Vec<(String, String)> {
    probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["codec_type"].as_str().unwrap().to_string(),
                s["codec_name"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Decodes every frame with the ffmpeg CLI: proof the file plays.
fn frames_played(path: &Path) -> usize {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg (Debian package ffmpeg) must be installed");
    assert!(
        out.status.success(),
        "ffmpeg cannot play {}",
        path.display()
    );
    let probe = ffprobe(path);
    let video = probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_type"] == "video")
        .unwrap();
    let frame_bytes = video["width"].as_u64().unwrap() * video["height"].as_u64().unwrap() * 3;
    out.stdout.len() / frame_bytes as usize
}

fn create_and_save(prefix: &str) -> Json {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 96, "height": 64, "batch_size": 12, "color": 0x336699}},
        "2": {"class_type": "TestSine", "inputs": {"seconds": 2.0}},
        "3": {"class_type": "CreateVideo", "inputs": {"images": ["1", 0], "fps": 24.0, "audio": ["2", 0]}},
        "4": {"class_type": "SaveVideo", "inputs": {"video": ["3", 0], "filename_prefix": prefix, "format": "auto", "codec": "auto"}}
    })
}

#[test]
fn save_video_writes_a_playable_mp4_and_reports_it_like_comfyui() {
    let mut h = Harness::new();
    let prompt = create_and_save("video/ComfyUI");
    let result = h.run(&prompt);
    assert_eq!(result.outcome, Outcome::Success, "{:?}", result.error());
    assert_eq!(
        result.outputs["4"],
        json!({"images": [{"filename": "ComfyUI_00001_.mp4", "subfolder": "video", "type": "output"}],
               "animated": [true]})
    );
    let path = h.env.dirs.output.join("video/ComfyUI_00001_.mp4");
    let probe = ffprobe(&path);
    assert_eq!(
        streams(&probe),
        [
            ("video".into(), "h264".into()),
            ("audio".into(), "aac".into())
        ]
    );
    assert_eq!(frames_played(&path), 12);
    let tags = &probe["format"]["tags"];
    let saved_prompt: Json = serde_json::from_str(tags["prompt"].as_str().unwrap()).unwrap();
    assert_eq!(saved_prompt, prompt);
    let workflow: Json = serde_json::from_str(tags["workflow"].as_str().unwrap()).unwrap();
    assert_eq!(workflow, json!({"nodes": [], "version": 0.4}));
    // 12 frames at 24 fps keep 0.5 s of the 2 s tone.
    let audio = probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_type"] == "audio")
        .unwrap();
    let duration: f64 = audio["duration"].as_str().unwrap().parse().unwrap();
    assert!((duration - 0.5).abs() <= 1024.0 / 24_000.0, "{duration}");

    // The next save of the same prefix takes the next counter.
    let again = h.run(&create_and_save("video/ComfyUI_again"));
    assert_eq!(again.outcome, Outcome::Success);
    assert!(
        h.env
            .dirs
            .output
            .join("video/ComfyUI_again_00001_.mp4")
            .is_file()
    );
}

#[test]
fn metadata_tags_follow_save_metadata() {
    let mut h = Harness::new();
    h.env.save_metadata = false;
    let result = h.run(&create_and_save("plain"));
    assert_eq!(result.outcome, Outcome::Success, "{:?}", result.error());
    let probe = ffprobe(&h.env.dirs.output.join("plain_00001_.mp4"));
    let tags = probe["format"]["tags"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(
        !tags.contains_key("prompt") && !tags.contains_key("workflow"),
        "{tags:?}"
    );
}

#[test]
fn loaded_videos_are_decoded_re_encoded_and_copied() {
    let mut h = Harness::new();
    assert_eq!(h.run(&create_and_save("src")).outcome, Outcome::Success);
    std::fs::create_dir_all(&h.env.dirs.input).unwrap();
    std::fs::copy(
        h.env.dirs.output.join("src_00001_.mp4"),
        h.env.dirs.input.join("clip.mp4"),
    )
    .unwrap();
    let prompt = json!({
        "1": {"class_type": "LoadVideo", "inputs": {"file": "clip.mp4"}},
        "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
        "3": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
        "4": {"class_type": "CreateVideo", "inputs": {"images": ["3", 0], "fps": ["2", 2], "audio": ["2", 1]}},
        "5": {"class_type": "SaveVideo", "inputs": {"video": ["4", 0], "filename_prefix": "inverted", "format": "mp4", "codec": "h264"}},
        "6": {"class_type": "SaveVideo", "inputs": {"video": ["1", 0], "filename_prefix": "copied", "format": "auto", "codec": "auto"}}
    });
    let result = h.run(&prompt);
    assert_eq!(result.outcome, Outcome::Success, "{:?}", result.error());
    let inverted = h.env.dirs.output.join("inverted_00001_.mp4");
    let copied = h.env.dirs.output.join("copied_00001_.mp4");
    for path in [&inverted, &copied] {
        assert_eq!(frames_played(path), 12);
        let probe = ffprobe(path);
        assert_eq!(
            streams(&probe),
            [
                ("video".into(), "h264".into()),
                ("audio".into(), "aac".into())
            ]
        );
        let video = &probe["streams"][0];
        assert_eq!(video["avg_frame_rate"], "24/1");
        assert_eq!(
            (video["width"].as_u64(), video["height"].as_u64()),
            (Some(96), Some(64))
        );
    }
    // The copy keeps the source's packets; the inverted video was re-encoded.
    let src = ffprobe(&h.env.dirs.input.join("clip.mp4"));
    let copy = ffprobe(&copied);
    for (a, b) in src["streams"]
        .as_array()
        .unwrap()
        .iter()
        .zip(copy["streams"].as_array().unwrap())
    {
        for key in ["codec_name", "nb_frames", "duration_ts", "bit_rate"] {
            assert_eq!(a[key], b[key], "{key}");
        }
    }
    let saved: Json =
        serde_json::from_str(copy["format"]["tags"]["prompt"].as_str().unwrap()).unwrap();
    assert_eq!(saved, prompt, "the copy carries this prompt's metadata");
}

#[test]
fn a_corrupt_upload_fails_at_load_video() {
    let mut h = Harness::new();
    std::fs::create_dir_all(&h.env.dirs.input).unwrap();
    std::fs::write(
        h.env.dirs.input.join("broken.mp4"),
        b"definitely not a video",
    )
    .unwrap();
    let prompt = json!({
        "1": {"class_type": "LoadVideo", "inputs": {"file": "broken.mp4"}},
        "2": {"class_type": "SaveVideo", "inputs": {"video": ["1", 0], "filename_prefix": "x", "format": "auto", "codec": "auto"}}
    });
    let result = h.run(&prompt);
    assert_eq!(result.outcome, Outcome::Error);
    let error = result.error().unwrap();
    assert_eq!(error["node_id"], "1");
    assert_eq!(error["exception_type"], "ValueError");
    let message = error["exception_message"].as_str().unwrap();
    assert!(message.starts_with("cannot read video file"), "{message}");
}
