//! Parity of the denoising loop with ltx-pipelines' `denoise_audio_video` +
//! `euler_denoising_loop` (fixture `checks/g_denoise_loop`), f32 CPU: every step's inputs and
//! guided predictions, the final latents and the sigma schedule, for the CFG-only variant and
//! the full multi-modal guidance (CFG + STG + modality + rescale).
//!
//! Sizes, guidance parameters and step count come from the check's `params` metadata and the
//! checkpoint's configs.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use models::checkpoint::CheckpointHeader;
use models::ltx2::audio_vae::Config as AudioVaeConfig;
use models::ltx2::pipeline::{
    AvContexts, AvGuidance, AvNoise, GuidedDenoiser, GuiderParams, GuiderSchedule, LatentLayout,
    PassBatching, VideoPixelShape, denoise_audio_video,
};
use models::ltx2::transformer::{LtxAvModel, TransformerConfig};
use models::parity::{Checks, assert_close, model_path};
use models::sampling::scheduler::{Ltx2SchedulerParams, ltx2_sigmas};

/// fp32 vs the fp32 reference (fixture README: transformer / denoise loop rel <= 1e-4).
const TOL: f64 = 1e-4;

struct Setup {
    checks: Checks,
    model: LtxAvModel,
    layout: LatentLayout,
    shape: VideoPixelShape,
    sigmas: Vec<f32>,
}

fn setup() -> Setup {
    let path = model_path("ltx2-tiny.safetensors");
    let header = CheckpointHeader::read(&path).unwrap();
    // SAFETY: the fixture file is read-only and not modified while mapped.
    let vb =
        unsafe { VarBuilder::from_mmaped_safetensors(&[&path], DType::F32, &Device::Cpu) }.unwrap();
    let model = LtxAvModel::from_checkpoint(&header, vb).unwrap();
    let config = header.config().unwrap();
    let audio_cfg = AudioVaeConfig::from_json(&config["audio_vae"]).unwrap();
    let layout = LatentLayout::from_configs(
        &TransformerConfig::from_header(&header).unwrap(),
        &audio_cfg,
    )
    .unwrap();
    let checks = Checks::open("g_denoise_loop");
    let p = checks.params();
    let dim = |k: &str| p["shape"][k].as_u64().unwrap() as usize;
    let shape = VideoPixelShape {
        batch: dim("batch"),
        frames: dim("frames"),
        height: dim("height"),
        width: dim("width"),
        fps: p["shape"]["fps"].as_f64().unwrap(),
    };
    let sigmas = ltx2_sigmas(&Ltx2SchedulerParams {
        steps: p["steps"].as_u64().unwrap() as usize,
        ..Default::default()
    });
    Setup {
        checks,
        model,
        layout,
        shape,
        sigmas,
    }
}

fn guidance(c: &Checks, variant: &str, batching: PassBatching) -> AvGuidance {
    let p = c.params();
    let params = |stream: &str| -> GuiderSchedule {
        let g: GuiderParams =
            serde_json::from_value(p["guidance"][variant][stream].clone()).unwrap();
        GuiderSchedule::constant(g)
    };
    AvGuidance {
        video: params("video"),
        audio: params("audio"),
        positive: AvContexts {
            video: c.f32("in.v_context_pos"),
            audio: c.f32("in.a_context_pos"),
        },
        negative: Some(AvContexts {
            video: c.f32("in.v_context_neg"),
            audio: c.f32("in.a_context_neg"),
        }),
        batching,
    }
}

/// Runs one variant, compares every `dbg.<variant>.stepN.*` and `out.<variant>.*` latent, and
/// returns the final latents.
fn check_variant(s: &Setup, variant: &str, batching: PassBatching) -> (Tensor, Tensor) {
    let c = &s.checks;
    let g = guidance(c, variant, batching);
    let mut denoiser = GuidedDenoiser::new(&s.model, &g);
    let noise = AvNoise {
        video: c.f32("in.noise_video_tokens"),
        audio: c.f32("in.noise_audio_tokens"),
        scale: 1.0,
    };
    let mut trace: HashMap<String, Tensor> = HashMap::new();
    let out = denoise_audio_video(
        &s.model,
        &mut denoiser,
        &s.layout,
        &s.shape,
        &noise,
        &s.sigmas,
        &mut |t| {
            let i = t.step;
            for (name, x) in [
                ("video_latent_in", t.video_latent),
                ("audio_latent_in", t.audio_latent),
                ("video_denoised", t.video_denoised),
                ("audio_denoised", t.audio_denoised),
            ] {
                trace.insert(format!("dbg.{variant}.step{i}.{name}"), x.clone());
            }
            Ok(())
        },
    )
    .unwrap();
    let prefix = format!("dbg.{variant}.step");
    let expected: Vec<String> = c
        .keys()
        .into_iter()
        .filter(|k| k.starts_with(&prefix))
        .collect();
    assert_eq!(
        expected.len(),
        trace.len(),
        "the fixture and the loop disagree on the traced steps"
    );
    for key in &expected {
        let label = format!("{key} ({batching:?})");
        assert_close(&label, &trace[key], &c.f32(key), TOL);
    }
    for (name, t) in [("video_latent", &out.video), ("audio_latent", &out.audio)] {
        let key = format!("out.{variant}.{name}");
        assert_close(&format!("{key} ({batching:?})"), t, &c.f32(&key), TOL);
    }
    (out.video, out.audio)
}

#[test]
fn sigmas_match_the_scheduler_of_the_loop() {
    let s = setup();
    let sigmas = Tensor::new(s.sigmas.as_slice(), &Device::Cpu).unwrap();
    let r = assert_close("out.sigmas", &sigmas, &s.checks.f32("out.sigmas"), 0.0);
    assert_eq!(r.max_abs, 0.0);
}

#[test]
fn cfg_loop_matches_ltx_core() {
    let s = setup();
    check_variant(&s, "cfg", PassBatching::Sequential);
}

#[test]
fn full_guidance_loop_matches_ltx_core() {
    let s = setup();
    check_variant(&s, "full", PassBatching::Sequential);
}

#[test]
fn batched_passes_match_ltx_core() {
    let s = setup();
    for variant in ["cfg", "full"] {
        check_variant(&s, variant, PassBatching::Batched);
    }
}

/// `skip_step` on the video stream: odd steps reuse the previous guided video prediction
/// exactly (the stream is disabled in that step's positive pass) while audio is recomputed.
#[test]
fn video_skip_step_reuses_the_previous_prediction() {
    let s = setup();
    let c = &s.checks;
    for batching in [PassBatching::Sequential, PassBatching::Batched] {
        let mut g = guidance(c, "full", batching);
        let mut vp = g.video.params_at(1.0).clone();
        vp.skip_step = 1;
        g.video = GuiderSchedule::constant(vp);
        let mut denoiser = GuidedDenoiser::new(&s.model, &g);
        let noise = AvNoise {
            video: c.f32("in.noise_video_tokens"),
            audio: c.f32("in.noise_audio_tokens"),
            scale: 1.0,
        };
        let mut video = Vec::new();
        let mut audio = Vec::new();
        denoise_audio_video(
            &s.model,
            &mut denoiser,
            &s.layout,
            &s.shape,
            &noise,
            &s.sigmas,
            &mut |t| {
                video.push(t.video_denoised.clone());
                audio.push(t.audio_denoised.clone());
                Ok(())
            },
        )
        .unwrap();
        assert!(video.len() >= 3, "the check needs at least 3 steps");
        let diff = |a: &Tensor, b: &Tensor| models::parity::compare(a, b).max_abs;
        // step 0 is the reference's own step 0 (skipping never applies to step 0)
        assert_close(
            &format!("skip: step0 video ({batching:?})"),
            &video[0],
            &c.f32("dbg.full.step0.video_denoised"),
            TOL,
        );
        assert_eq!(diff(&video[1], &video[0]), 0.0, "step 1 reuses step 0");
        assert!(diff(&video[2], &video[1]) > 1e-3, "step 2 is recomputed");
        assert!(diff(&audio[1], &audio[0]) > 1e-3, "audio is not skipped");
    }
}
