//! Parity of the LTX-2 transformer against ltx-core (fixture `checks/a_transformer`), f32 CPU.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use models::checkpoint::CheckpointHeader;
use models::ltx2::transformer::{
    CHECKPOINT_PREFIX, ForwardOptions, LtxAvModel, ModalityInput, TransformerConfig,
};
use models::parity::{Checks, assert_close, model_path};

/// fp32 vs the fp32 reference (fixture README: transformer rel <= 1e-4).
const TOL: f64 = 1e-4;

fn load_model(dtype: DType) -> LtxAvModel {
    let path = model_path("ltx2-tiny.safetensors");
    let header = CheckpointHeader::read(&path).unwrap();
    let cfg = TransformerConfig::from_header(&header).unwrap();
    // SAFETY: the fixture file is read-only and not modified while mapped.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&path], dtype, &Device::Cpu) }.unwrap();
    LtxAvModel::new(&cfg, vb.pp(CHECKPOINT_PREFIX)).unwrap()
}

fn inputs(c: &Checks, video_timesteps: &str) -> (ModalityInput, ModalityInput) {
    let video = ModalityInput::new(
        c.f32("in.video_latent"),
        c.f32(video_timesteps),
        c.f32("in.sigma"),
        c.f32("in.video_positions"),
        c.f32("in.video_context"),
    );
    let audio = ModalityInput::new(
        c.f32("in.audio_latent"),
        c.f32("in.audio_timesteps"),
        c.f32("in.sigma"),
        c.f32("in.audio_positions"),
        c.f32("in.audio_context"),
    );
    (video, audio)
}

/// Compares velocity and denoised outputs of both timestep variants against `<prefix>out.*`.
fn check_outputs(model: &LtxAvModel, c: &Checks, prefix: &str, tol: f64) {
    for (tag, vts) in [
        ("full", "in.video_timesteps_full"),
        ("masked", "in.video_timesteps_masked"),
    ] {
        let (video, audio) = inputs(c, vts);
        let opts = ForwardOptions::default();
        let vel = model.forward(Some(&video), Some(&audio), &opts).unwrap();
        let den = model.denoise(Some(&video), Some(&audio), &opts).unwrap();
        let outs = [
            ("video_velocity", vel.video.unwrap()),
            ("audio_velocity", vel.audio.unwrap()),
            ("video_denoised", den.video.unwrap()),
            ("audio_denoised", den.audio.unwrap()),
        ];
        for (name, t) in outs {
            let key = format!("{prefix}out.{tag}.{name}");
            assert_close(&key, &t.to_dtype(DType::F32).unwrap(), &c.f32(&key), tol);
        }
    }
}

#[test]
fn tiny_transformer_matches_ltx_core_outputs() {
    let c = Checks::open("a_transformer");
    check_outputs(&load_model(DType::F32), &c, "", TOL);
}

#[test]
fn tiny_transformer_intermediates_match_ltx_core() {
    let c = Checks::open("a_transformer");
    let model = load_model(DType::F32);
    let (video, audio) = inputs(&c, "in.video_timesteps_full");
    let mut seen: HashMap<String, Tensor> = HashMap::new();
    model
        .forward_inspect(
            Some(&video),
            Some(&audio),
            &ForwardOptions::default(),
            &mut |name, t| {
                seen.insert(name.to_string(), t.clone());
            },
        )
        .unwrap();
    let dbg_keys: Vec<String> = c
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("dbg."))
        .collect();
    assert!(!dbg_keys.is_empty());
    for key in dbg_keys {
        let name = key.strip_prefix("dbg.").unwrap();
        let ours = seen
            .get(name)
            .unwrap_or_else(|| panic!("forward_inspect did not report {name}"));
        assert_close(&key, ours, &c.f32(&key), TOL);
    }
}
