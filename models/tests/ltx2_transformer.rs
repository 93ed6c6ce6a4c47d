//! Parity of the LTX-2 transformer against ltx-core (fixture `checks/a_transformer`), f32 CPU.

use candle_core::{DType, Device, Tensor};
use models::ltx2::lora::LoraWeights;
use models::ltx2::transformer::{
    AvOutput, ForwardOptions, LoraMode, LoraPatch, LtxAvModel, ModalityInput, fused_weight,
};
use models::parity::{Checks, assert_close, model_path};
#[path = "support/transformer.rs"]
mod support;
use support::{check_intermediates, inputs, load_model};

/// fp32 vs the fp32 reference (fixture README: transformer rel <= 1e-4).
const TOL: f64 = 1e-4;

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
    check_intermediates(&load_model(DType::F32), &c, "", TOL);
}

// ---------------------------------------------------------------------------------------------
// LoRA
// ---------------------------------------------------------------------------------------------

fn lora_file() -> LoraWeights {
    LoraWeights::load(&model_path("ltx2-tiny-lora.safetensors"), &Device::Cpu).unwrap()
}

/// Strengths of the LoRA checks, from the check's params.
fn lora_strengths(c: &Checks) -> Vec<f64> {
    c.params()["lora_strengths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_f64().unwrap())
        .collect()
}

/// Check prefix of a strength, as the generator formats it (`lora1.0.`, `lora0.5.`).
fn lora_prefix(s: f64) -> String {
    format!("lora{s:?}.")
}

/// ltx-core fuses `W + (B·s)@A` with the product in the LoRA's dtype (bf16).
const LTX_CORE_FUSION: LoraMode = LoraMode::Fused {
    delta_dtype: DType::BF16,
};

#[test]
fn fused_lora_weights_match_ltx_core_bit_for_bit() {
    let c = Checks::open("a_transformer");
    let model = load_model(DType::F32);
    let lora = lora_file();
    let paths = model.linear_paths();
    let linears = model.linears();
    let mut checked = 0;
    for key in c.keys().into_iter().filter(|k| k.starts_with("fused.")) {
        let path = key
            .strip_prefix("fused.")
            .unwrap()
            .strip_suffix(".weight")
            .unwrap();
        let i = paths.iter().position(|p| p == path).unwrap();
        let base = linears[i].weight().dense();
        // fused.* without a LoRA = the loaded base weight
        assert_eq!(compare_exact(base, &c.f32(&key)), 0.0, "{key}");
        let m = &lora.modules[&format!("diffusion_model.{path}")];
        for s in lora_strengths(&c) {
            let patch = LoraPatch {
                down: m.down.clone(),
                up: m.up.clone(),
                scale: s,
            };
            let reference = c.f32(&format!("{}{key}", lora_prefix(s)));
            let bf16 = fused_weight(base, std::slice::from_ref(&patch), DType::BF16).unwrap();
            assert_eq!(compare_exact(&bf16, &reference), 0.0, "{key} at {s}");
            // the ComfyUI rule (product in f32) differs only by the bf16 rounding of the delta
            let f32_delta = fused_weight(base, &[patch], DType::F32).unwrap();
            let delta = (&reference - base).unwrap();
            assert_close(
                &format!("{key} f32 delta @{s}"),
                &(&f32_delta - base).unwrap(),
                &delta,
                4e-3,
            );
            checked += 1;
        }
    }
    assert!(checked > 0);
}

fn compare_exact(a: &Tensor, b: &Tensor) -> f64 {
    models::parity::compare(a, b).max_abs
}

#[test]
fn lora_outputs_match_ltx_core() {
    let c = Checks::open("a_transformer");
    let base = load_model(DType::F32);
    let lora = lora_file();
    for s in lora_strengths(&c) {
        let prefix = lora_prefix(s);
        let (fused, report) = base.with_loras(&[(&lora, s)], LTX_CORE_FUSION).unwrap();
        assert!(report.unmatched.is_empty(), "{:?}", report.unmatched);
        assert_eq!(report.patched_layers, lora.modules.len());
        check_outputs(&fused, &c, &prefix, TOL);
        // Unfused (default) keeps the product in f32, ltx-core rounds the delta to bf16 first:
        // a relative change of up to 2^-9 of |ΔW| per weight.
        let (unfused, _) = base.with_loras(&[(&lora, s)], LoraMode::Unfused).unwrap();
        check_outputs(&unfused, &c, &prefix, UNFUSED_TOL);
    }
}

/// Bound for unfused-f32 LoRA outputs against ltx-core's bf16-rounded fusion. tolerances.json
/// only has bf16-vs-f32 figures for the LoRA runs (0.13-0.15), far too loose to catch a wrong
/// delta. The only intended difference is ltx-core rounding each ΔW to bf16 (2^-9 relative,
/// <= 4.8e-4 absolute here: `fused_lora_weights_match_ltx_core_bit_for_bit` measures it), which
/// moves the outputs by 3.6e-4 of max |output| at strength 1 and 1.7e-4 at 0.5; 2e-3 leaves
/// headroom for that while a wrong scale, transpose or missing layer gives > 1e-2.
const UNFUSED_TOL: f64 = 2e-3;

fn full_inputs() -> (ModalityInput, ModalityInput) {
    inputs(&Checks::open("a_transformer"), "in.video_timesteps_full")
}

fn run(model: &LtxAvModel, video: &ModalityInput, audio: &ModalityInput) -> AvOutput {
    model
        .forward(Some(video), Some(audio), &ForwardOptions::default())
        .unwrap()
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

/// Every base tensor of every linear layer, as raw bits, with its storage id.
fn base_snapshot(model: &LtxAvModel) -> Vec<(String, Vec<u32>, Option<Vec<u32>>)> {
    model
        .linears()
        .iter()
        .map(|l| {
            (
                l.path().to_string(),
                bits(l.weight().dense()),
                l.bias().map(bits),
            )
        })
        .collect()
}

fn same_outputs(a: &AvOutput, b: &AvOutput) -> bool {
    let v = |o: &AvOutput| bits(o.video.as_ref().unwrap());
    let au = |o: &AvOutput| bits(o.audio.as_ref().unwrap());
    v(a) == v(b) && au(a) == au(b)
}

#[test]
fn removing_loras_restores_the_base_bit_for_bit() {
    let mut model = load_model(DType::F32);
    let lora = lora_file();
    let (video, audio) = full_inputs();
    let before = base_snapshot(&model);
    let out_before = run(&model, &video, &audio);
    for mode in [LoraMode::Unfused, LTX_CORE_FUSION] {
        let report = model
            .apply_loras(&[(&lora, 1.0), (&lora, -0.25)], mode)
            .unwrap();
        assert_eq!(report.patched_layers, lora.modules.len());
        assert!(!same_outputs(&run(&model, &video, &audio), &out_before));
        model.clear_loras().unwrap();
        assert!(model.linears().iter().all(|l| !l.is_patched()));
        assert!(
            base_snapshot(&model) == before,
            "a base tensor changed ({mode:?})"
        );
        assert!(same_outputs(&run(&model, &video, &audio), &out_before));
    }
}

#[test]
fn clones_share_base_weights_and_keep_their_own_loras() {
    let base = load_model(DType::F32);
    let lora = lora_file();
    let (video, audio) = full_inputs();
    let out_base = run(&base, &video, &audio);
    let (job_a, _) = base.with_loras(&[(&lora, 1.0)], LoraMode::Unfused).unwrap();
    let (job_b, _) = base.with_loras(&[(&lora, 0.5)], LoraMode::Unfused).unwrap();
    for (l0, la) in base.linears().iter().zip(job_a.linears()) {
        assert_eq!(
            l0.weight().dense().id(),
            la.weight().dense().id(),
            "{}",
            l0.path()
        );
    }
    let out_a = run(&job_a, &video, &audio);
    let out_b = run(&job_b, &video, &audio);
    assert!(!same_outputs(&out_a, &out_b));
    assert!(same_outputs(&run(&base, &video, &audio), &out_base));
    // stacking: two patches of strength 0.5 equal one of strength 1.0
    let (stacked, _) = base
        .with_loras(&[(&lora, 0.5), (&lora, 0.5)], LoraMode::Unfused)
        .unwrap();
    let out_stacked = run(&stacked, &video, &audio);
    let pairs = [
        (out_stacked.video.unwrap(), out_a.video.unwrap()),
        (out_stacked.audio.unwrap(), out_a.audio.unwrap()),
    ];
    for (s, a) in pairs {
        assert_close("stacked 2x0.5 vs 1.0", &s, &a, 1e-5);
    }
    // unfused and f32-fused application are the same math
    let (fused32, _) = base
        .with_loras(
            &[(&lora, 1.0)],
            LoraMode::Fused {
                delta_dtype: DType::F32,
            },
        )
        .unwrap();
    let out_f = run(&fused32, &video, &audio);
    let out_a = run(&job_a, &video, &audio);
    assert_close(
        "unfused vs fused f32",
        &out_a.video.unwrap(),
        &out_f.video.unwrap(),
        1e-5,
    );
}

#[test]
fn unknown_lora_keys_are_reported() {
    let mut model = load_model(DType::F32);
    let file = model_path("ltx2-tiny-lora.safetensors");
    let mut tensors = candle_core::safetensors::load(&file, &Device::Cpu).unwrap();
    let (key, t) = tensors
        .iter()
        .find(|(k, _)| k.ends_with(".lora_A.weight"))
        .map(|(k, t)| (k.clone(), t.clone()))
        .unwrap();
    let up = tensors[&key.replace("lora_A", "lora_B")].clone();
    tensors.insert("diffusion_model.no_such_layer.lora_A.weight".into(), t);
    tensors.insert("diffusion_model.no_such_layer.lora_B.weight".into(), up);
    let dev = Device::Cpu;
    let text = Tensor::zeros((2, 2), DType::F32, &dev).unwrap();
    tensors.insert(
        "text_embedding_projection.aggregate_embed.lora_A.weight".into(),
        text.clone(),
    );
    tensors.insert(
        "text_embedding_projection.aggregate_embed.lora_B.weight".into(),
        text,
    );
    tensors.insert(
        "diffusion_model.patchify_proj.diff".into(),
        Tensor::zeros(3, DType::F32, &dev).unwrap(),
    );
    let lora = LoraWeights::from_tensors(tensors).unwrap();
    let report = model
        .apply_loras(&[(&lora, 1.0)], LoraMode::Unfused)
        .unwrap();
    let mut keys: Vec<&str> = report.unmatched.iter().map(|u| u.key.as_str()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "diffusion_model.no_such_layer.lora_A.weight",
            "diffusion_model.no_such_layer.lora_B.weight",
            "diffusion_model.patchify_proj.diff",
            "text_embedding_projection.aggregate_embed.lora_A.weight",
            "text_embedding_projection.aggregate_embed.lora_B.weight",
        ]
    );
    assert_eq!(report.patched_layers, lora.modules.len() - 2);
}

/// bf16 weights and activations vs the f32 reference. The fixture README allows 0.2 for the
/// transformer because ltx-core's own bf16 run is off by 0.145 (tolerances.json), mostly from
/// rounding video positions to bf16 before RoPE. We keep positions in f32 and normalise and
/// soft-max in f32, and measure ~1e-2; 0.05 (the README's bf16 bound for the other
/// components) keeps that margin while catching a precision regression.
const BF16_TOL: f64 = 0.05;

#[test]
fn bf16_model_stays_within_the_bf16_bound() {
    let c = Checks::open("a_transformer");
    check_outputs(&load_model(DType::BF16), &c, "", BF16_TOL);
}
