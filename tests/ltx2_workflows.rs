//! End-to-end LTX-2 workflows (`tests/workflows/ltx2_*.json`, API format) run through the
//! engine on the tiny fixture models, placed in a temporary models folder under the official
//! templates' file names: t2v two-stage (x2 upsampler, distilled LoRA in stage 2), i2v
//! (LoadImage + LTXVPreprocess + LTXVImgToVideoInplace) and distilled (ManualSigmas).
//!
//! Checks: decoded frame count and size, audio length and rate (all derived from the fixture
//! files' configs), determinism (same seed: identical tensors, another seed: different), the
//! model cache (a second run loads nothing from disk, a LoRA change re-uses the base weights),
//! per-step progress, the i2v conditioning (the first latent frame pinned to the image), and
//! the MP4 each workflow's CreateVideo -> SaveVideo writes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Tensor;
use engine::events::Collect;
use engine::{CachePolicy, Engine, Event, Job, Outcome};
use models::checkpoint::CheckpointHeader;
use models::ltx2::audio_vae::Config as AudioConfig;
use models::ltx2::upsampler::UpsamplerConfig;
use models::ltx2::vocoder::Config as VocoderConfig;
use nodes::ltxv::models::{KIND_LORA, KIND_TRANSFORMER};
use nodes::model_cache::ModelCache;
use nodes::{Ctx, Env, InputDef, Inputs, NodeDef, NodeSchema, Outputs, Registry, Value};
use parking_lot::Mutex;
use serde_json::{Value as Json, json};

/// Values seen by `TestCapture` nodes, by label.
static CAPTURED: Mutex<Vec<(String, Value)>> = Mutex::new(Vec::new());

fn fixture_models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join("shared/fixtures/ltx2-tiny/models"))
        .find(|p| p.is_dir())
        .expect("shared/fixtures/ltx2-tiny/models beside the workspace")
}

/// A user folder whose models are the tiny fixtures under the templates' names.
fn setup_env() -> (tempfile::TempDir, Env) {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = fixture_models();
    let models = dir.path().join("models");
    let links = [
        (
            "checkpoints/ltx-2-19b-dev-fp8.safetensors",
            "ltx2-tiny.safetensors",
        ),
        (
            "checkpoints/ltx-2-19b-distilled.safetensors",
            "ltx2-tiny.safetensors",
        ),
        (
            "text_encoders/gemma_3_12B_it_fp4_mixed.safetensors",
            "gemma3-tiny-comfy.safetensors",
        ),
        (
            "loras/ltx-2-19b-distilled-lora-384.safetensors",
            "ltx2-tiny-lora.safetensors",
        ),
        (
            "latent_upscale_models/ltx-2-spatial-upscaler-x2-1.0.safetensors",
            "ltx2-tiny-upscaler.safetensors",
        ),
    ];
    for (name, target) in links {
        let path = models.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(fixtures.join(target), path).unwrap();
    }
    let env = Env::under(dir.path());
    std::fs::create_dir_all(&env.dirs.input).unwrap();
    (dir, env)
}

fn registry() -> Arc<Registry> {
    let mut r = nodes::builtin_registry();
    r.register(NodeDef::new(
        NodeSchema::v1("TestCapture", "testing")
            .input(InputDef::socket("value", "*"))
            .input(InputDef::string("label"))
            .output_node(),
        |_: &Ctx, i: &Inputs| {
            let label = i.string("label")?.to_string();
            CAPTURED
                .lock()
                .push((label.clone(), i.get("value").cloned().unwrap()));
            let mut ui = serde_json::Map::new();
            ui.insert("captured".into(), json!([label]));
            Ok(Outputs::ui(ui))
        },
    ));
    Arc::new(r)
}

fn workflow(name: &str) -> Json {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/workflows")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Adds a `TestCapture` of `source` under `label`.
fn capture(prompt: &mut Json, id: &str, source: (&str, u64), label: &str) {
    prompt[id] = json!({"class_type": "TestCapture",
                        "inputs": {"value": [source.0, source.1], "label": label}});
}

fn take(label: &str) -> Value {
    let mut all = CAPTURED.lock();
    let i = all
        .iter()
        .rposition(|(l, _)| l == label)
        .unwrap_or_else(|| panic!("nothing captured as {label}"));
    all.remove(i).1
}

/// Runs `prompt` with a fresh engine (empty output cache) in `env`; returns the events and the
/// UI outputs per node.
fn run_with_outputs(env: &Env, prompt: &Json) -> (Vec<Event>, serde_json::Map<String, Json>) {
    let engine_registry = registry();
    let mut engine = Engine::new(engine_registry, CachePolicy::default());
    let validated = engine
        .validate(env, prompt, None)
        .unwrap_or_else(|e| panic!("validation failed: {}", e.to_json()));
    assert!(
        validated.node_errors.is_empty(),
        "{:?}",
        validated.node_errors
    );
    let sink = Collect(Mutex::new(Vec::new()));
    let job = Job {
        prompt_id: "test",
        prompt: &validated.prompt,
        outputs: &validated.outputs,
        extra_data: &json!({}),
        env,
    };
    let result = engine.execute(&job, &sink);
    assert_eq!(
        result.outcome,
        Outcome::Success,
        "{}",
        result.error().cloned().unwrap_or_default()
    );
    (sink.0.into_inner(), result.outputs)
}

/// Runs `prompt` with a fresh engine in `env`; returns the events.
fn run(env: &Env, prompt: &Json) -> Vec<Event> {
    run_with_outputs(env, prompt).0
}

/// The MP4 the workflow's SaveVideo (node 41) wrote.
fn saved_video(env: &Env, outputs: &serde_json::Map<String, Json>) -> PathBuf {
    let ui = &outputs["41"];
    assert_eq!(ui["animated"], json!([true]));
    let entry = &ui["images"][0];
    assert_eq!(entry["type"], "output");
    let name = entry["filename"].as_str().unwrap();
    assert!(name.ends_with(".mp4"), "{name}");
    let path = env
        .dirs
        .output
        .join(entry["subfolder"].as_str().unwrap())
        .join(name);
    assert!(std::fs::metadata(&path).unwrap().len() > 0);
    path
}

fn image(v: Value) -> Tensor {
    match v {
        Value::Image(t) => t,
        other => panic!("expected IMAGE, got {other:?}"),
    }
}

fn audio(v: Value) -> nodes::value::Audio {
    match v {
        Value::Audio(a) => a,
        other => panic!("expected AUDIO, got {other:?}"),
    }
}

fn latent_parts(v: Value) -> Vec<Tensor> {
    match v {
        Value::Latent(l) => l.samples.parts().into_iter().cloned().collect(),
        other => panic!("expected LATENT, got {other:?}"),
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// What the fixture files say the decoded outputs must look like.
struct Expected {
    frames: usize,
    width: usize,
    height: usize,
    audio_samples: usize,
    sample_rate: u32,
}

/// Frames `length` at `fps`, stage 1 at `width` x `height`, upscaled by the upsampler.
fn expected(length: usize, fps: f64, width: usize, height: usize) -> Expected {
    let models = fixture_models();
    let ckpt = CheckpointHeader::read(&models.join("ltx2-tiny.safetensors")).unwrap();
    let config = ckpt.config().unwrap();
    let audio_cfg = AudioConfig::from_json(&config["audio_vae"]).unwrap();
    let vocoder = VocoderConfig::from_json(&config["vocoder"]).unwrap();
    let up = CheckpointHeader::read(&models.join("ltx2-tiny-upscaler.safetensors")).unwrap();
    let up: UpsamplerConfig = serde_json::from_value(up.config().unwrap()).unwrap();
    let scale = up.spatial_scale as usize;
    let latent_steps = audio_cfg.latent_frames_for_video(length, fps);
    Expected {
        frames: (length - 1) / 8 * 8 + 1,
        width: width / 32 * 32 * scale,
        height: height / 32 * 32 * scale,
        audio_samples: audio_cfg.decoded_mel_frames(latent_steps) * vocoder.hop_length(),
        sample_rate: vocoder.output_sample_rate(audio_cfg.sample_rate, audio_cfg.mel_hop_length),
    }
}

fn check_outputs(video: &Tensor, sound: &nodes::value::Audio, e: &Expected) {
    assert_eq!(video.dims(), &[e.frames, e.height, e.width, 3]);
    let (b, channels, samples) = sound.waveform.dims3().unwrap();
    assert_eq!((b, channels, samples), (1, 2, e.audio_samples));
    assert_eq!(sound.sample_rate, e.sample_rate);
    let v: Vec<f32> = video.flatten_all().unwrap().to_vec1().unwrap();
    assert!(v.iter().all(|x| (0.0..=1.0).contains(x)));
    let w: Vec<f32> = sound.waveform.flatten_all().unwrap().to_vec1().unwrap();
    assert!(w.iter().all(|x| x.is_finite()));
}

fn progress_of(events: &[Event], node: &str) -> Vec<(f64, f64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Progress {
                node: n,
                value,
                max,
                ..
            } if n == node => Some((*value, *max)),
            _ => None,
        })
        .collect()
}

#[test]
fn t2v_two_stage_is_deterministic_and_reuses_cached_models() {
    let (_dir, env) = setup_env();
    let cache = ModelCache::of(&env);
    let mut prompt = workflow("ltx2_t2v.json");
    capture(&mut prompt, "900", ("27", 0), "t2v.video");
    capture(&mut prompt, "901", ("28", 0), "t2v.audio");

    let (events, outputs) = run_with_outputs(&env, &prompt);
    saved_video(&env, &outputs);
    let (video, sound) = (image(take("t2v.video")), audio(take("t2v.audio")));
    check_outputs(&video, &sound, &expected(9, 25.0, 64, 64));
    assert_eq!(
        progress_of(&events, "16"),
        vec![(1.0, 4.0), (2.0, 4.0), (3.0, 4.0), (4.0, 4.0)]
    );
    assert_eq!(progress_of(&events, "25").len(), 3);
    let loads = cache.stats().loads;
    for (kind, n) in &loads {
        assert_eq!(*n, 1, "{kind} loaded {n} times");
    }
    assert_eq!(loads.len(), 6, "{loads:?}");

    // Same prompt, fresh output cache: identical results, nothing read from disk again.
    run(&env, &prompt);
    let (video2, sound2) = (image(take("t2v.video")), audio(take("t2v.audio")));
    assert_eq!(max_abs_diff(&video, &video2), 0.0);
    assert_eq!(max_abs_diff(&sound.waveform, &sound2.waveform), 0.0);
    assert_eq!(cache.stats().loads, loads);

    // Another seed: different video and audio, still no loads.
    prompt["12"]["inputs"]["noise_seed"] = json!(11);
    run(&env, &prompt);
    let (video3, sound3) = (image(take("t2v.video")), audio(take("t2v.audio")));
    assert!(max_abs_diff(&video, &video3) > 0.0);
    assert!(max_abs_diff(&sound.waveform, &sound3.waveform) > 0.0);
    assert_eq!(cache.stats().loads, loads);

    // Another LoRA strength: the base transformer and the LoRA file are not loaded again.
    prompt["5"]["inputs"]["strength_model"] = json!(0.5);
    run(&env, &prompt);
    let video4 = image(take("t2v.video"));
    take("t2v.audio");
    assert!(max_abs_diff(&video3, &video4) > 0.0);
    let after = cache.stats().loads;
    assert_eq!(after[KIND_TRANSFORMER], 1);
    assert_eq!(after[KIND_LORA], 1);
    assert_eq!(after, loads);
}

fn write_input_image(env: &Env, name: &str) {
    let (w, h) = (96u32, 80u32);
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x * 255 / w) as u8,
            (y * 255 / h) as u8,
            ((x + y) % 256) as u8,
        ])
    });
    img.save(env.dirs.input.join(name)).unwrap();
}

#[test]
fn i2v_pins_the_first_frame_to_the_image() {
    let (_dir, env) = setup_env();
    write_input_image(&env, "ltx2_i2v_input.png");
    let mut prompt = workflow("ltx2_i2v.json");
    capture(&mut prompt, "900", ("27", 0), "i2v.video");
    capture(&mut prompt, "901", ("28", 0), "i2v.audio");
    capture(&mut prompt, "902", ("33", 0), "i2v.conditioned");
    capture(&mut prompt, "903", ("16", 0), "i2v.stage1");
    capture(&mut prompt, "904", ("16", 1), "i2v.stage1_denoised");
    let (_, outputs) = run_with_outputs(&env, &prompt);
    saved_video(&env, &outputs);

    let (video, sound) = (image(take("i2v.video")), audio(take("i2v.audio")));
    check_outputs(&video, &sound, &expected(9, 25.0, 64, 64));
    let conditioned = &latent_parts(take("i2v.conditioned"))[0];
    let stage1 = &latent_parts(take("i2v.stage1"))[0];
    let denoised = &latent_parts(take("i2v.stage1_denoised"))[0];
    let first = |t: &Tensor| t.narrow(2, 0, 1).unwrap();
    // The denoised prediction of a mask-0 frame is the clean latent itself.
    assert_eq!(max_abs_diff(&first(denoised), &first(conditioned)), 0.0);
    // Euler ends on the clean latent up to rounding.
    let scale = first(conditioned).abs().unwrap().max_keepdim(4).unwrap();
    let scale: f32 = scale
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!(max_abs_diff(&first(stage1), &first(conditioned)) <= 1e-5 * scale.max(1.0));
    // The generated frames moved away from the empty latent.
    let rest = stage1.narrow(2, 1, stage1.dim(2).unwrap() - 1).unwrap();
    assert!(max_abs_diff(&rest, &rest.zeros_like().unwrap()) > 0.0);
}

#[test]
fn distilled_manual_sigmas_run_and_repeat() {
    let (_dir, env) = setup_env();
    let mut prompt = workflow("ltx2_distilled.json");
    capture(&mut prompt, "900", ("27", 0), "distilled.video");
    capture(&mut prompt, "901", ("28", 0), "distilled.audio");
    let (events, outputs) = run_with_outputs(&env, &prompt);
    saved_video(&env, &outputs);
    let (video, sound) = (
        image(take("distilled.video")),
        audio(take("distilled.audio")),
    );
    check_outputs(&video, &sound, &expected(9, 25.0, 64, 64));
    assert_eq!(progress_of(&events, "16").len(), 8);
    assert_eq!(progress_of(&events, "25").len(), 3);

    run(&env, &prompt);
    let video2 = image(take("distilled.video"));
    take("distilled.audio");
    assert_eq!(max_abs_diff(&video, &video2), 0.0);
    prompt["21"]["inputs"]["noise_seed"] = json!(421);
    run(&env, &prompt);
    let video3 = image(take("distilled.video"));
    take("distilled.audio");
    assert!(max_abs_diff(&video, &video3) > 0.0);
}
