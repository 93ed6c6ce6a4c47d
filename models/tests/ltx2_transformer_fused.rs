//! The transformer with its fused steps routed through the kernels crate (as on a GPU: fused
//! RMS norm + modulation, RoPE, bias + GELU, gated residuals), here through the kernels' CPU
//! references, against ltx-core's outputs (fixture `checks/a_transformer`, f32). This checks
//! the wiring of the GPU path on a machine without a GPU; `kernels/tests` check each CUDA kernel
//! against its CPU reference where a GPU is present.
//!
//! The switch is process-wide, so this file is its own test binary.

use candle_core::{DType, Device};
use models::ltx2::transformer::ForwardOptions;
use models::parity::{Checks, assert_close};
#[path = "support/transformer.rs"]
mod support;
use support::{check_intermediates, inputs, load_model};

/// fp32 vs the fp32 reference (fixture README: transformer rel <= 1e-4).
const TOL: f64 = 1e-4;

#[test]
fn fused_tiny_transformer_matches_ltx_core() {
    kernels::set_fused_on_cpu(true);
    assert!(kernels::fused_on(&Device::Cpu));
    let c = Checks::open("a_transformer");
    let model = load_model(DType::F32);
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
    check_intermediates(&model, &c, "fused ", TOL);
}
