//! Shared by the transformer parity test binaries: the tiny fixture model, the reference inputs
//! and the check of every intermediate ltx-core recorded.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use models::checkpoint::CheckpointHeader;
use models::ltx2::transformer::{ForwardOptions, LtxAvModel, ModalityInput};
use models::parity::{Checks, assert_close, model_path};

/// The tiny fixture transformer in `dtype`.
pub fn load_model(dtype: DType) -> LtxAvModel {
    let path = model_path("ltx2-tiny.safetensors");
    let header = CheckpointHeader::read(&path).unwrap();
    // SAFETY: the fixture file is read-only and not modified while mapped.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&path], dtype, &Device::Cpu) }.unwrap();
    LtxAvModel::from_checkpoint(&header, vb).unwrap()
}

/// The reference inputs with the video timesteps of `video_timesteps`.
pub fn inputs(c: &Checks, video_timesteps: &str) -> (ModalityInput, ModalityInput) {
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

/// Runs the full-timestep inputs through `forward_inspect` and compares every intermediate the
/// reference recorded (`dbg.*`); `label` prefixes the names in the report.
pub fn check_intermediates(model: &LtxAvModel, c: &Checks, label: &str, tol: f64) {
    let (video, audio) = inputs(c, "in.video_timesteps_full");
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
        assert_close(&format!("{label}{key}"), ours, &c.f32(&key), tol);
    }
}
