//! The transformer with its fused steps routed through the kernels crate (as on a GPU: fused
//! RMS norm + modulation, RoPE, bias + GELU, gated residuals), here through the kernels' CPU
//! references, against ltx-core's outputs (fixture `checks/a_transformer`, f32). This checks
//! the wiring of the GPU path on a machine without a GPU; `kernels/tests` check each CUDA kernel
//! against its CPU reference where a GPU is present.
//!
//! The switch is process-wide, so this file is its own test binary.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use models::checkpoint::CheckpointHeader;
use models::ltx2::transformer::{ForwardOptions, LtxAvModel, ModalityInput};
use models::parity::{Checks, assert_close, model_path};

/// fp32 vs the fp32 reference (fixture README: transformer rel <= 1e-4).
const TOL: f64 = 1e-4;

fn load_model() -> LtxAvModel {
    let path = model_path("ltx2-tiny.safetensors");
    let header = CheckpointHeader::read(&path).unwrap();
    // SAFETY: the fixture file is read-only and not modified while mapped.
    let vb =
        unsafe { VarBuilder::from_mmaped_safetensors(&[&path], DType::F32, &Device::Cpu) }.unwrap();
    LtxAvModel::from_checkpoint(&header, vb).unwrap()
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

#[test]
fn fused_tiny_transformer_matches_ltx_core() {
    kernels::set_fused_on_cpu(true);
    assert!(kernels::fused_on(&Device::Cpu));
    let c = Checks::open("a_transformer");
    let model = load_model();
    for (tag, vts) in [
        ("full", "in.video_timesteps_full"),
        ("masked", "in.video_timesteps_masked"),
    ] {
        let (video, audio) = inputs(&c, vts);
        let opts = ForwardOptions::default();
        let vel = model.forward(Some(&video), Some(&audio), &opts).unwrap();
        for (name, t) in [
            ("video_velocity", vel.video.unwrap()),
            ("audio_velocity", vel.audio.unwrap()),
        ] {
            let key = format!("out.{tag}.{name}");
            assert_close(&format!("fused {key}"), &t, &c.f32(&key), TOL);
        }
    }
    // Every intermediate the reference recorded, through the fused path.
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
    let keys: Vec<String> = c
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("dbg."))
        .collect();
    assert!(!keys.is_empty());
    for key in keys {
        let name = key.strip_prefix("dbg.").unwrap();
        let ours = seen
            .get(name)
            .unwrap_or_else(|| panic!("forward_inspect did not report {name}"));
        assert_close(&format!("fused {key}"), ours, &c.f32(&key), TOL);
    }
}
