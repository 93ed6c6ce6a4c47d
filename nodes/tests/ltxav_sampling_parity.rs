//! The sampler nodes' model call ([`nodes::sampling::ltxav`]) against ltx-core's denoising loop
//! (`g_denoise_loop`, case `cfg`: CFG 3 on both modalities, Euler, the LTX-2 schedule).
//!
//! For a text-to-video run without masks, ComfyUI's and ltx-core's model calls agree: every
//! token's timestep is sigma (so taking the cross-modal modulation from the stream's own tokens
//! or from the other stream's sigma is the same), and `x - sigma·v` equals `x - t·v`. What
//! differs is rounding (positions multiplied by `1/fps` instead of divided, the CFG formula's
//! order), hence the fp32 tolerance rather than bit equality.

use candle_core::{DType, Device, Shape, Tensor};
use models::ltx2::transformer::patchify::{tokens_to_audio, tokens_to_video, video_to_tokens};
use models::ltx2::transformer::positions::{ScaleFactors, VideoGrid};
use models::ltx2::transformer::{CHECKPOINT_PREFIX, LtxAvModel, TransformerConfig};
use models::parity::{Checks, assert_close, model_path};
use models::sampling::guider::{SampleJob, sample};
use models::sampling::latent::{pack_latents, unpack_latents};
use models::sampling::samplers::Sampler;
use models::weights::WeightFiles;
use nodes::ltxv::types::{CondEntry, Conditioning};
use nodes::sampling::ltxav::{Layout, LtxAvDenoiser};

fn load_model() -> LtxAvModel {
    let path = model_path("ltx2-tiny.safetensors");
    let header = models::checkpoint::CheckpointHeader::read(&path).unwrap();
    let cfg = TransformerConfig::from_header(&header).unwrap();
    let files = WeightFiles::open(&[&path]).unwrap();
    let vb = files.var_builder(DType::F32, &Device::Cpu).unwrap();
    LtxAvModel::new(&cfg, vb.pp(CHECKPOINT_PREFIX)).unwrap()
}

fn conditioning(c: &Checks, video: &str, audio: &str, fps: f64) -> Conditioning {
    let v = c.f32(video);
    let a = c.f32(audio);
    Conditioning {
        entries: vec![CondEntry {
            video_width: v.dim(2).unwrap(),
            cross_attn: Tensor::cat(&[&v, &a], 2).unwrap(),
            frame_rate: Some(fps),
            keyframe_idxs: None,
            guide_entries: Vec::new(),
            extra: Default::default(),
        }],
    }
}

#[test]
fn cfg_denoise_loop_matches_ltx_core() {
    let c = Checks::open("g_denoise_loop");
    let p = c.params();
    let shape = &p["shape"];
    let dim = |k: &str| shape[k].as_u64().unwrap() as usize;
    let fps = shape["fps"].as_f64().unwrap();
    let grid = VideoGrid::from_pixels(
        dim("frames"),
        dim("height"),
        dim("width"),
        ScaleFactors::default(),
    );
    let cfg_scale = p["guidance"]["cfg"]["video"]["cfg_scale"].as_f64().unwrap();
    assert_eq!(
        cfg_scale,
        p["guidance"]["cfg"]["audio"]["cfg_scale"].as_f64().unwrap()
    );
    let expected_video = c.f32("out.cfg.video_latent");
    let expected_audio = c.f32("out.cfg.audio_latent");
    let (_, a_channels, _, a_bins) = expected_audio.dims4().unwrap();

    let noise_v = tokens_to_video(
        &c.f32("in.noise_video_tokens"),
        grid.frames,
        grid.height,
        grid.width,
    )
    .unwrap();
    let noise_a = tokens_to_audio(&c.f32("in.noise_audio_tokens"), a_channels, a_bins).unwrap();
    let shapes: Vec<Shape> = vec![noise_v.shape().clone(), noise_a.shape().clone()];
    let (noise, _) = pack_latents(&[noise_v, noise_a]).unwrap();
    let latent = noise.zeros_like().unwrap();
    let sigmas: Vec<f32> = c.f32("out.sigmas").to_vec1().unwrap();

    let model = load_model();
    let positive = conditioning(&c, "in.v_context_pos", "in.a_context_pos", fps);
    let negative = conditioning(&c, "in.v_context_neg", "in.a_context_neg", fps);
    let denoiser = LtxAvDenoiser::new(
        &model,
        Layout::new(shapes.clone()).unwrap(),
        None,
        &positive,
        Some(&negative),
        cfg_scale,
        &Device::Cpu,
    )
    .unwrap();
    let mut step_denoised = Vec::new();
    let out = sample(
        &SampleJob {
            sampler: &Sampler::Euler,
            sigmas: &sigmas,
            noise: &noise,
            latent: &latent,
            denoise_mask: None,
        },
        &mut |x, s| {
            denoiser
                .denoise(x, s)
                .map_err(|e| models::Error::Input(e.to_string()))
        },
        None,
        &mut |info| {
            step_denoised.push(info.denoised.clone());
            Ok(())
        },
    )
    .unwrap();

    let first = unpack_latents(&step_denoised[0], &shapes).unwrap();
    assert_close(
        "step0.video_denoised",
        &video_to_tokens(&first[0]).unwrap(),
        &c.f32("dbg.cfg.step0.video_denoised"),
        1e-4,
    );
    let parts = unpack_latents(&out, &shapes).unwrap();
    assert_close("cfg.video_latent", &parts[0], &expected_video, 1e-4);
    assert_close("cfg.audio_latent", &parts[1], &expected_audio, 1e-4);

    // Cond and uncond share one batched call; separately they give the same prediction.
    assert!(denoiser.batches_cfg());
    let separate = LtxAvDenoiser::new(
        &model,
        Layout::new(shapes.clone()).unwrap(),
        None,
        &positive,
        Some(&negative),
        cfg_scale,
        &Device::Cpu,
    )
    .unwrap()
    .without_batching();
    let x = noise.affine(f64::from(sigmas[0]), 0.0).unwrap();
    assert_close(
        "batched vs separate CFG",
        &denoiser.denoise(&x, sigmas[0]).unwrap(),
        &separate.denoise(&x, sigmas[0]).unwrap(),
        1e-5,
    );
}
