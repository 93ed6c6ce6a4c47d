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
use models::ltx2::audio_vae::{AudioVae, Config as AudioVaeConfig};
use models::ltx2::pipeline::{
    AvContexts, AvGuidance, AvLatents, AvMedia, AvNoise, GuidedDenoiser, GuiderParams,
    GuiderSchedule, LatentLayout, PassBatching, VideoPixelShape, decode_av, denoise_audio_video,
};
use models::ltx2::transformer::{LtxAvModel, TransformerConfig};
use models::ltx2::video_vae::VideoVae;
use models::parity::{Checks, assert_close, model_path};
use models::sampling::scheduler::{Ltx2SchedulerParams, ltx2_sigmas};

/// fp32 vs the fp32 reference (fixture README: transformer / denoise loop rel <= 1e-4).
const TOL: f64 = 1e-4;
/// fp32 VAE / vocoder vs the reference on the same input (fixture README: rel <= 1e-5).
const DECODE_TOL: f64 = 1e-5;

struct Setup {
    checks: Checks,
    model: LtxAvModel,
    layout: LatentLayout,
    shape: VideoPixelShape,
    sigmas: Vec<f32>,
}

fn setup() -> Setup {
    setup_with(DType::F32)
}

fn setup_with(dtype: DType) -> Setup {
    let path = model_path("ltx2-tiny.safetensors");
    let header = CheckpointHeader::read(&path).unwrap();
    // SAFETY: the fixture file is read-only and not modified while mapped.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&path], dtype, &Device::Cpu) }.unwrap();
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

/// The final decode of the `full` run (video VAE with `in.decode_noise`, audio VAE + vocoder).
fn decode(latents: &AvLatents, c: &Checks) -> AvMedia {
    let path = model_path("ltx2-tiny.safetensors");
    let video_vae = VideoVae::load(&path, DType::F32, &Device::Cpu).unwrap();
    let config = CheckpointHeader::read(&path).unwrap().config().unwrap();
    // SAFETY: the fixture file is read-only and not modified while mapped.
    let vb =
        unsafe { VarBuilder::from_mmaped_safetensors(&[&path], DType::F32, &Device::Cpu) }.unwrap();
    let audio_vae = AudioVae::new(&config, false, vb).unwrap();
    decode_av(
        latents,
        &video_vae,
        &audio_vae,
        Some(&c.f32("in.decode_noise")),
    )
    .unwrap()
}

fn check_media(label: &str, media: &AvMedia, c: &Checks, tol: f64) {
    let key = "out.full.decoded_video";
    assert_close(&format!("{key} ({label})"), &media.video, &c.f32(key), tol);
    // ltx-core's `decode_audio` squeezes a batch of one.
    let key = "out.full.waveform";
    let wave = media.audio.squeeze_batch().unwrap();
    assert_close(&format!("{key} ({label})"), &wave, &c.f32(key), tol);
}

#[test]
fn full_guidance_loop_and_decode_match_ltx_core() {
    let s = setup();
    let (video, audio) = check_variant(&s, "full", PassBatching::Sequential);
    // The decoded media carry the loop's error (rel ~1e-6 on the latents), so the loop's
    // tolerance applies.
    let media = decode(&AvLatents { video, audio }, &s.checks);
    check_media("from our latents", &media, &s.checks, TOL);
}

#[test]
fn decode_of_the_reference_latents_matches_ltx_core() {
    let c = Checks::open("g_denoise_loop");
    let latents = AvLatents {
        video: c.f32("out.full.video_latent"),
        audio: c.f32("out.full.audio_latent"),
    };
    check_media(
        "from the reference latents",
        &decode(&latents, &c),
        &c,
        DECODE_TOL,
    );
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

/// The same loop in bf16 (weights and latents; sigmas, timesteps and audio positions f32, video
/// positions rounded to bf16, as ltx-pipelines does): bounded against the f32 reference with the
/// fixture README's bf16 tolerance, and reported against ltx-core's own bf16 run.
#[test]
fn bf16_full_loop_is_bounded_by_the_f32_reference() {
    let s = setup_with(DType::BF16);
    let c = &s.checks;
    let g = guidance(c, "full", PassBatching::Sequential);
    let mut denoiser = GuidedDenoiser::new(&s.model, &g);
    let noise = AvNoise {
        video: c.f32("in.noise_video_tokens"),
        audio: c.f32("in.noise_audio_tokens"),
        scale: 1.0,
    };
    let out = denoise_audio_video(
        &s.model,
        &mut denoiser,
        &s.layout,
        &s.shape,
        &noise,
        &s.sigmas,
        &mut |_| Ok(()),
    )
    .unwrap();
    assert_eq!(out.video.dtype(), DType::BF16);
    for (name, t) in [("video_latent", &out.video), ("audio_latent", &out.audio)] {
        let t = t.to_dtype(DType::F32).unwrap();
        let key = format!("out.full.{name}");
        assert_close(&format!("bf16 {key}"), &t, &c.f32(&key), 0.2);
        let bf = models::parity::compare(&t, &c.f32(&format!("bf16.{key}")));
        println!(
            "bf16 {key} vs ltx-core bf16: max_abs {:.3e} max_rel {:.3e}",
            bf.max_abs, bf.max_rel
        );
    }
}
