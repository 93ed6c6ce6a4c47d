//! The official LTX-2 templates (`tests/workflows/templates/`, UI format, unmodified) end to end:
//! converted to API prompts with our node registry (compared with the committed
//! `tests/workflows/api/`), their size widgets lowered, and run by the `comfyrs run` binary on
//! the tiny fixture models (`shared/fixtures/ltx2-tiny/models`, linked under the templates'
//! file names) and small generated inputs; the MP4 each writes is decoded and checked.
//!
//! Overrides (widget values only; the graphs stay as converted), per template below: image
//! sizes 1280x720 (or 1280x1280) become 128x64 (128x128), lengths 121 (281) become 9 frames,
//! `LTXVScheduler` steps 20 (12) become 3, and the input image resizes to 1536 become 128. The
//! distilled schedules (`ManualSigmas`) are kept. One repair: `video_ltx2_i2v_lora` as published
//! never links its subgraph's CreateVideo to the subgraph output, so its SaveVideo gets no
//! video (the real frontend sends the same incomplete prompt and ComfyUI rejects it); the test
//! checks that rejection, then links SaveVideo to that CreateVideo.
//!
//! `COMFYRS_UPDATE_API=1 cargo test --test templates` rewrites `tests/workflows/api/`.

#[path = "common/models.rs"]
mod template_models;

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{Device, Tensor};
use models::checkpoint::CheckpointHeader;
use models::ltx2::upsampler::UpsamplerConfig;
use nodes::value::FrameRate;
use nodes::video::encode::{EncodeJob, write_mp4};
use serde_json::{Map, Value as Json, json};
use template_models::{fixture_models, link_template_models};

fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// A base folder whose models are the tiny fixtures (symlinks, read in place).
fn base_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    link_template_models(&dir.path().join("models"));
    std::fs::create_dir_all(dir.path().join("input")).unwrap();
    dir
}

/// A `width` x `height` RGB test picture (gradients and a bright rectangle moved by `shift`).
fn picture(width: usize, height: usize, shift: usize) -> Vec<f32> {
    let mut px = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            let inside = (x + width - shift % width) % width < width / 3
                && y > height / 4
                && y < height * 3 / 4;
            let (r, g, b) = (x as f32 / width as f32, y as f32 / height as f32, 0.3);
            if inside {
                px.extend([0.95, 0.9, 0.2]);
            } else {
                px.extend([r, g, b]);
            }
        }
    }
    px
}

fn write_png(path: &Path, width: usize, height: usize) {
    let bytes: Vec<u8> = picture(width, height, 0)
        .iter()
        .map(|v| (v * 255.0).round() as u8)
        .collect();
    image::RgbImage::from_raw(width as u32, height as u32, bytes)
        .unwrap()
        .save(path)
        .unwrap();
}

fn write_video(path: &Path, width: usize, height: usize, frames: usize) {
    let mut data = Vec::new();
    for f in 0..frames {
        data.extend(picture(width, height, f * 4));
    }
    let images = Tensor::from_vec(data, (frames, height, width, 3), &Device::Cpu).unwrap();
    let job = EncodeJob {
        images: &images,
        audio: None,
        frame_rate: FrameRate::from_f64(24.0),
        metadata: &[],
    };
    write_mp4(path, &job, &|| Ok(())).unwrap();
}

fn read_json(path: &Path) -> Json {
    serde_json::from_str(
        &std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// The template converted with our registry.
fn convert(name: &str) -> Map<String, Json> {
    let ui = read_json(&repo(&format!("tests/workflows/templates/{name}.json")));
    let dir = tempfile::tempdir().unwrap();
    let env = nodes::Env::under(dir.path());
    engine::ui_workflow::to_api_prompt_with_registry(&ui, &nodes::builtin_registry(), &env)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

const RUNNABLE: &[&str] = &[
    "video_ltx2_t2v",
    "video_ltx2_i2v",
    "video_ltx2_t2v_distilled",
    "video_ltx2_i2v_distilled",
    "video_ltx2_i2v_lora",
    "video_ltx2_canny_to_video",
];

#[test]
fn templates_convert_to_the_committed_api_prompts() {
    let update = std::env::var_os("COMFYRS_UPDATE_API").is_some();
    for name in RUNNABLE {
        let ours = Json::Object(convert(name));
        let path = repo(&format!("tests/workflows/api/{name}.json"));
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, serde_json::to_string_pretty(&ours).unwrap() + "\n").unwrap();
            continue;
        }
        assert_eq!(
            ours,
            read_json(&path),
            "{name}: conversion changed (COMFYRS_UPDATE_API=1 rewrites)"
        );
    }
}

#[test]
fn the_depth_template_needs_the_lotus_depth_model() {
    let ui = read_json(&repo(
        "tests/workflows/templates/video_ltx2_depth_to_video.json",
    ));
    let dir = tempfile::tempdir().unwrap();
    let env = nodes::Env::under(dir.path());
    let err =
        engine::ui_workflow::to_api_prompt_with_registry(&ui, &nodes::builtin_registry(), &env)
            .unwrap_err()
            .to_string();
    assert!(err.contains("LotusConditioning"), "{err}");
}

/// Sets `node.inputs.input = value`, checking the node and input exist (so an override cannot
/// silently miss after a template update).
fn set(prompt: &mut Map<String, Json>, node: &str, input: &str, value: Json) {
    let inputs = prompt
        .get_mut(node)
        .and_then(|n| n.get_mut("inputs"))
        .and_then(Json::as_object_mut)
        .unwrap_or_else(|| panic!("no node {node}"));
    assert!(
        inputs.contains_key(input),
        "node {node} has no input {input}"
    );
    inputs.insert(input.to_string(), value);
}

struct Run {
    status: std::process::ExitStatus,
    result: Json,
    stderr: String,
}

fn comfyrs_run(base: &Path, prompt: &Map<String, Json>) -> Run {
    let file = base.join("prompt.json");
    std::fs::write(&file, serde_json::to_string(prompt).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_comfyrs"))
        .args(["run", "--json", "--base-directory"])
        .arg(base)
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let result = serde_json::Deserializer::from_str(&stdout)
        .into_iter::<Json>()
        .next()
        .and_then(Result::ok)
        .unwrap_or(Json::Null);
    Run {
        status: out.status,
        result,
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

/// Runs `prompt`, then decodes the MP4 its SaveVideo `save` wrote and checks its frames.
fn run_and_check(
    base: &Path,
    prompt: &Map<String, Json>,
    save: &str,
    frames: usize,
    width: usize,
    height: usize,
) {
    let run = comfyrs_run(base, prompt);
    assert!(run.status.success(), "{}\n{}", run.result, run.stderr);
    let entry = &run.result["outputs"][save]["images"][0];
    let file = base
        .join("output")
        .join(entry["subfolder"].as_str().unwrap())
        .join(entry["filename"].as_str().unwrap());
    let decoded = nodes::video::decode::decode_file(&file, &|| Ok(())).unwrap();
    assert_eq!(
        decoded.images.dims(),
        &[frames, height, width, 3],
        "{}",
        file.display()
    );
    let audio = decoded.audio.expect("the MP4 has a soundtrack");
    assert!(audio.waveform.dim(2).unwrap() > 0);
}

/// The output size for stage-1 frames of `width` x `height` (multiples of the VAE's 32), after
/// the fixture upsampler's spatial scale.
fn upscaled(width: usize, height: usize) -> (usize, usize) {
    let header =
        CheckpointHeader::read(&fixture_models().join("ltx2-tiny-upscaler.safetensors")).unwrap();
    let config: UpsamplerConfig = serde_json::from_value(header.config().unwrap()).unwrap();
    let scale = config.spatial_scale as usize;
    (width / 32 * 32 * scale, height / 32 * 32 * scale)
}

#[test]
fn t2v() {
    let base = base_dir();
    let mut p = convert("video_ltx2_t2v");
    set(&mut p, "92:89", "width", json!(128));
    set(&mut p, "92:89", "height", json!(64));
    set(&mut p, "92:62", "value", json!(9));
    set(&mut p, "92:9", "steps", json!(3));
    let (w, h) = upscaled(64, 32);
    run_and_check(base.path(), &p, "75", 9, w, h);
}

#[test]
fn t2v_distilled() {
    let base = base_dir();
    let mut p = convert("video_ltx2_t2v_distilled");
    set(&mut p, "177:131", "width", json!(128));
    set(&mut p, "177:131", "height", json!(64));
    set(&mut p, "177:113", "value", json!(9));
    let (w, h) = upscaled(64, 32);
    run_and_check(base.path(), &p, "104", 9, w, h);
}

/// The i2v templates: the input picture resized to 128x64 (and its longer side to 128).
fn run_i2v(name: &str, image: &str, longer_side_node: &str, scheduler: Option<&str>) {
    let base = base_dir();
    write_png(&base.path().join("input").join(image), 160, 96);
    let mut p = convert(name);
    set(&mut p, "102", "resize_type.width", json!(128));
    set(&mut p, "102", "resize_type.height", json!(64));
    set(
        &mut p,
        longer_side_node,
        "resize_type.longer_size",
        json!(128),
    );
    set(&mut p, "92:62", "value", json!(9));
    if let Some(node) = scheduler {
        set(&mut p, node, "steps", json!(3));
    }
    let (w, h) = upscaled(64, 32);
    run_and_check(base.path(), &p, "75", 9, w, h);
}

#[test]
fn i2v() {
    run_i2v(
        "video_ltx2_i2v",
        "freckled_curly_girl.png",
        "92:113",
        Some("92:9"),
    );
}

#[test]
fn i2v_distilled() {
    run_i2v(
        "video_ltx2_i2v_distilled",
        "snow_bike_jump_crew.png",
        "92:115",
        None,
    );
}

#[test]
fn i2v_lora() {
    let base = base_dir();
    write_png(
        &base.path().join("input/puppy_with_blue_bandana.png"),
        160,
        96,
    );
    let mut p = convert("video_ltx2_i2v_lora");
    set(&mut p, "92:89", "width", json!(128));
    set(&mut p, "92:89", "height", json!(128));
    set(&mut p, "92:111", "largest_size", json!(128));
    set(&mut p, "92:62", "value", json!(9));
    set(&mut p, "92:9", "steps", json!(3));
    // As published, SaveVideo is not connected: rejected like ComfyUI rejects it.
    let rejected = comfyrs_run(base.path(), &p);
    assert_eq!(rejected.status.code(), Some(2), "{}", rejected.stderr);
    assert_eq!(
        rejected.result["node_errors"]["75"]["errors"][0]["extra_info"]["input_name"], "video",
        "{}",
        rejected.result
    );
    let video = p["75"]["inputs"].as_object_mut().unwrap();
    video.insert("video".into(), json!(["92:97", 0]));
    let (w, h) = upscaled(64, 64);
    run_and_check(base.path(), &p, "75", 9, w, h);
}

#[test]
fn canny_to_video() {
    let base = base_dir();
    write_video(
        &base.path().join("input/squirrel_in_flower_garden.mp4"),
        160,
        96,
        12,
    );
    write_png(
        &base.path().join("input/ltx_2_canny_1st_frame.png"),
        160,
        96,
    );
    let mut p = convert("video_ltx2_canny_to_video");
    set(&mut p, "166", "value", json!(128));
    set(&mut p, "167", "value", json!(64));
    set(&mut p, "168", "value", json!(9));
    set(&mut p, "143:95", "steps", json!(3));
    let (w, h) = upscaled(64, 32);
    run_and_check(base.path(), &p, "175", 9, w, h);
}
