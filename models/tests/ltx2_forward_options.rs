//! Forward options and optional inputs of the transformer: guidance perturbations (STG,
//! isolated modalities), per-item batching, the cross-modal timestep source, text masks.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use models::checkpoint::CheckpointHeader;
use models::ltx2::transformer::{
    BatchPerturbations, CHECKPOINT_PREFIX, CrossModalTimesteps, ForwardOptions, LtxAvModel,
    ModalityInput, Perturbation, TransformerConfig,
};
use models::parity::{Checks, assert_close, compare, model_path};

fn load_model() -> LtxAvModel {
    let path = model_path("ltx2-tiny.safetensors");
    let cfg = TransformerConfig::from_header(&CheckpointHeader::read(&path).unwrap()).unwrap();
    // SAFETY: the fixture file is read-only and not modified while mapped.
    let vb =
        unsafe { VarBuilder::from_mmaped_safetensors(&[&path], DType::F32, &Device::Cpu) }.unwrap();
    LtxAvModel::new(&cfg, vb.pp(CHECKPOINT_PREFIX)).unwrap()
}

fn inputs() -> (ModalityInput, ModalityInput) {
    let c = Checks::open("a_transformer");
    let m = |l: &str, t: &str, p: &str, ctx: &str| {
        ModalityInput::new(c.f32(l), c.f32(t), c.f32("in.sigma"), c.f32(p), c.f32(ctx))
    };
    (
        m(
            "in.video_latent",
            "in.video_timesteps_full",
            "in.video_positions",
            "in.video_context",
        ),
        m(
            "in.audio_latent",
            "in.audio_timesteps",
            "in.audio_positions",
            "in.audio_context",
        ),
    )
}

fn with_perturbations(p: Vec<Perturbation>, batch: usize) -> ForwardOptions {
    ForwardOptions {
        perturbations: Some(BatchPerturbations::uniform(p, batch)),
        ..Default::default()
    }
}

fn outputs(
    m: &LtxAvModel,
    v: &ModalityInput,
    a: &ModalityInput,
    o: &ForwardOptions,
) -> (Tensor, Tensor) {
    let out = m.forward(Some(v), Some(a), o).unwrap();
    (out.video.unwrap(), out.audio.unwrap())
}

/// Concatenates two inputs along the batch (sigma has one value, shared).
fn batch2(x: &ModalityInput, y: &ModalityInput) -> ModalityInput {
    let cat = |a: &Tensor, b: &Tensor| Tensor::cat(&[a, b], 0).unwrap();
    ModalityInput::new(
        cat(&x.latent, &y.latent),
        cat(&x.timesteps, &y.timesteps),
        x.sigma.clone(),
        cat(&x.positions, &y.positions),
        cat(&x.context, &y.context),
    )
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    compare(a, b).max_abs
}

#[test]
fn a_mixed_batch_equals_separate_perturbed_and_plain_calls() {
    let model = load_model();
    let (v, a) = inputs();
    let stg = vec![
        Perturbation::skip_video_self_attention(&[1]),
        Perturbation::skip_audio_self_attention(&[0]),
    ];
    let plain = outputs(&model, &v, &a, &ForwardOptions::default());
    let perturbed = outputs(&model, &v, &a, &with_perturbations(stg.clone(), 1));
    assert!(
        max_abs(&plain.0, &perturbed.0) > 1e-3,
        "STG changed nothing"
    );
    let mixed = ForwardOptions {
        perturbations: Some(BatchPerturbations {
            items: vec![vec![], stg],
        }),
        ..Default::default()
    };
    let both = outputs(&model, &batch2(&v, &v), &batch2(&a, &a), &mixed);
    for (i, (vv, aa)) in [(&plain.0, &plain.1), (&perturbed.0, &perturbed.1)]
        .into_iter()
        .enumerate()
    {
        assert_close("batched video", &both.0.narrow(0, i, 1).unwrap(), vv, 1e-6);
        assert_close("batched audio", &both.1.narrow(0, i, 1).unwrap(), aa, 1e-6);
    }
}

#[test]
fn isolated_modalities_do_not_see_each_other() {
    let model = load_model();
    let (v, a) = inputs();
    let iso = with_perturbations(Perturbation::isolate_modalities(), 1);
    let base = outputs(&model, &v, &a, &iso);
    let mut a2 = a.clone();
    a2.latent = (&a.latent * 2.0).unwrap();
    let mut v2 = v.clone();
    v2.latent = (&v.latent * -1.0).unwrap();
    let audio_changed = outputs(&model, &v, &a2, &iso);
    let video_changed = outputs(&model, &v2, &a, &iso);
    assert_eq!(max_abs(&base.0, &audio_changed.0), 0.0);
    assert_eq!(max_abs(&base.1, &video_changed.1), 0.0);
    // without the perturbation the streams do interact
    let plain = ForwardOptions::default();
    let p0 = outputs(&model, &v, &a, &plain);
    let p1 = outputs(&model, &v, &a2, &plain);
    assert!(max_abs(&p0.0, &p1.0) > 1e-4);
}

#[test]
fn skipping_every_self_attention_makes_tokens_independent() {
    let model = load_model();
    let (v, a) = inputs();
    let blocks: Vec<usize> = (0..model.config().num_layers).collect();
    let mut p = Perturbation::isolate_modalities();
    p.push(Perturbation::skip_video_self_attention(&blocks));
    p.push(Perturbation::skip_audio_self_attention(&blocks));
    let opts = with_perturbations(p, 1);
    let base = outputs(&model, &v, &a, &opts);
    // change only the first video token: every other token's output must stay the same
    let t = v.latent.dim(1).unwrap();
    let first = (v.latent.narrow(1, 0, 1).unwrap() + 1.0).unwrap();
    let mut v2 = v.clone();
    v2.latent = Tensor::cat(&[first, v.latent.narrow(1, 1, t - 1).unwrap()], 1).unwrap();
    let changed = outputs(&model, &v2, &a, &opts);
    let rest = |x: &Tensor| x.narrow(1, 1, t - 1).unwrap();
    assert_eq!(max_abs(&rest(&base.0), &rest(&changed.0)), 0.0);
    assert!(
        max_abs(
            &base.0.narrow(1, 0, 1).unwrap(),
            &changed.0.narrow(1, 0, 1).unwrap()
        ) > 1e-4
    );
}

#[test]
fn own_token_timesteps_equal_sigma_when_every_token_is_noisy() {
    let model = load_model();
    let (v, a) = inputs();
    let own = ForwardOptions {
        cross_modal_timesteps: CrossModalTimesteps::OwnTokenTimesteps,
        ..Default::default()
    };
    let sigma = outputs(&model, &v, &a, &ForwardOptions::default());
    let tokens = outputs(&model, &v, &a, &own);
    assert_close("own vs sigma (video)", &tokens.0, &sigma.0, 1e-6);
    assert_close("own vs sigma (audio)", &tokens.1, &sigma.1, 1e-6);
    // with a clean first frame (i2v) the ComfyUI variant differs from ltx-core's
    let c = Checks::open("a_transformer");
    let mut vm = v.clone();
    vm.timesteps = c.f32("in.video_timesteps_masked");
    let sigma = outputs(&model, &vm, &a, &ForwardOptions::default());
    let tokens = outputs(&model, &vm, &a, &own);
    assert!(max_abs(&sigma.0, &tokens.0) > 1e-4);
}

#[test]
fn masked_text_tokens_are_invisible() {
    let model = load_model();
    let (v, a) = inputs();
    let s = v.context.dim(1).unwrap();
    let keep = s - s / 4;
    let mask: Vec<u8> = (0..s).map(|i| u8::from(i < keep)).collect();
    let mut masked = v.clone();
    masked.context_mask = Some(Tensor::from_vec(mask, (1, s), &Device::Cpu).unwrap());
    let mut cut = v.clone();
    cut.context = v.context.narrow(1, 0, keep).unwrap();
    let m = outputs(&model, &masked, &a, &ForwardOptions::default());
    let t = outputs(&model, &cut, &a, &ForwardOptions::default());
    assert_close("masked vs truncated context", &m.0, &t.0, 1e-6);
    let plain = outputs(&model, &v, &a, &ForwardOptions::default());
    assert!(max_abs(&plain.0, &m.0) > 1e-4);
}
