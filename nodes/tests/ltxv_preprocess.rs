//! LTXVPreprocess against ComfyUI's steps restated with PyAV (`tests/data/gen_ltxv_preprocess.py`).
//!
//! The H.264 artefacts depend on the libx264 build (PyAV's wheel bundles its own), so the check
//! is statistical: cropping, colour conversion and the quality level must agree (mean error far
//! below the compression error). With Debian bookworm's libx264 and PyAV 18.1's the outputs
//! are bit-identical (the test prints the max difference).

mod common;

use candle_core::{Device, Tensor};
use common::{call, env_with_models, inputs};
use nodes::Value;

fn reference() -> (std::collections::HashMap<String, Tensor>, serde_json::Value) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/ltxv_preprocess.safetensors"
    );
    let bytes = std::fs::read(path).unwrap();
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let params = serde_json::from_str(&meta.metadata().as_ref().unwrap()["params"]).unwrap();
    (tensors, params)
}

fn mean_abs(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar()
        .unwrap()
}

#[test]
fn h264_round_trip_matches_comfyui_statistically() {
    let (_dir, env) = env_with_models();
    let (t, params) = reference();
    let image = t["in.image"].clone();
    for crf in params["crfs"].as_array().unwrap() {
        let crf = crf.as_u64().unwrap();
        let out = call(
            &env,
            "LTXVPreprocess",
            inputs(vec![
                ("image", Value::Image(image.clone())),
                ("img_compression", Value::Int(crf as i128)),
            ]),
        );
        let Value::Image(ours) = &out[0] else {
            panic!("IMAGE expected")
        };
        let theirs = &t[&format!("out.crf{crf}")];
        assert_eq!(ours.dims(), theirs.dims(), "even-size crop");
        let cropped = image
            .narrow(1, 0, ours.dim(1).unwrap())
            .unwrap()
            .narrow(2, 0, ours.dim(2).unwrap())
            .unwrap();
        let compression = mean_abs(theirs, &cropped);
        let difference = mean_abs(ours, theirs);
        let max: f32 = (ours - theirs)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap();
        println!(
            "crf {crf}: ComfyUI vs input {compression:.5}, ours vs ComfyUI mean {difference:.6} max {max:.6}"
        );
        assert!(compression > 0.0);
        assert!(
            difference <= 0.25 * compression + 2.0 / 255.0,
            "crf {crf}: {difference} vs {compression}"
        );
    }
    let unchanged = call(
        &env,
        "LTXVPreprocess",
        inputs(vec![
            ("image", Value::Image(image.clone())),
            ("img_compression", Value::Int(0)),
        ]),
    );
    let Value::Image(same) = &unchanged[0] else {
        panic!("IMAGE expected")
    };
    assert_eq!(
        same.dims(),
        image.dims(),
        "crf 0 is a pass-through (no crop)"
    );
}
