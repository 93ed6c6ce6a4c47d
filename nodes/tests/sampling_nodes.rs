//! The sampling nodes called directly: schedules against `f_scheduler`, the sampler nodes on
//! AV latents (empty schedules, guides, masks, progress, interruption), KSampler.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{call, env_with_models, inputs, latent, load_all, s, try_call, try_call_with};
use models::parity::Checks;
use nodes::context::Preview;
use nodes::ltxv::types::LtxModel;
use nodes::sampling::values::Sigmas;
use nodes::{Env, Interrupt, Latent, LatentSamples, NodeError, Reporter, Value};
use parking_lot::Mutex;

fn object<T: std::any::Any + Send + Sync>(v: &Value) -> std::sync::Arc<T> {
    match v {
        Value::Object(o) => o.downcast::<T>().expect("object of another type"),
        other => panic!("expected an object, got {other:?}"),
    }
}

fn sigmas(v: &Value) -> Vec<f32> {
    object::<Sigmas>(v).0.clone()
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

#[test]
fn ltxv_scheduler_node_matches_every_fixture_schedule() {
    let (_dir, env) = env_with_models();
    let c = Checks::open("f_scheduler");
    let params = c.params();
    let mut checked = 0;
    for key in c
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("out.sigmas."))
    {
        let p = &params[&key];
        let f = |k: &str, d: f64| p[k].as_f64().unwrap_or(d);
        let mut i = inputs(vec![
            ("steps", Value::Int(p["steps"].as_u64().unwrap() as i128)),
            ("max_shift", Value::Float(f("max_shift", 2.05))),
            ("base_shift", Value::Float(f("base_shift", 0.95))),
            (
                "stretch",
                Value::Boolean(p["stretch"].as_bool().unwrap_or(true)),
            ),
            ("terminal", Value::Float(f("terminal", 0.1))),
        ]);
        if let Some(fhw) = p["latent_fhw"].as_array() {
            let d: Vec<usize> = fhw.iter().map(|v| v.as_u64().unwrap() as usize).collect();
            let video =
                Tensor::zeros((1, 128, d[0], d[1], d[2]), DType::F32, &Device::Cpu).unwrap();
            let audio = Tensor::zeros((1, 8, 3, 16), DType::F32, &Device::Cpu).unwrap();
            let mut l = Latent::new(video);
            l.samples = LatentSamples::Nested(vec![l.samples.first().unwrap().clone(), audio]);
            i.insert("latent", vec![Value::Latent(l)]);
        }
        let out = call(&env, "LTXVScheduler", i);
        let expected: Vec<f32> = c.f32(&key).to_vec1().unwrap();
        assert!(same_bits(&sigmas(&out[0]), &expected), "{key}");
        checked += 1;
    }
    assert!(checked >= 40, "{checked}");
}

#[test]
fn sigma_utilities() {
    let (_dir, env) = env_with_models();
    let manual = call(
        &env,
        "ManualSigmas",
        inputs(vec![("sigmas", s("0.909375, 0.725, 0.421875, 0.0"))]),
    );
    assert_eq!(sigmas(&manual[0]), vec![0.909375, 0.725, 0.421875, 0.0]);
    let first = call(
        &env,
        "SetFirstSigma",
        inputs(vec![
            ("sigmas", manual[0].clone()),
            ("sigma", Value::Float(0.95)),
        ]),
    );
    assert_eq!(sigmas(&first[0]), vec![0.95, 0.725, 0.421875, 0.0]);
    assert!(try_call(&env, "ManualSigmas", inputs(vec![("sigmas", s("0..5"))])).is_err());

    let (model, _, _, _) = load_all(&env);
    let basic = call(
        &env,
        "BasicScheduler",
        inputs(vec![
            ("model", model.clone()),
            ("scheduler", s("normal")),
            ("steps", Value::Int(6)),
            ("denoise", Value::Float(0.5)),
        ]),
    );
    let b = sigmas(&basic[0]);
    assert_eq!(b.len(), 7);
    assert!(b[0] < 1.0 && *b.last().unwrap() == 0.0);

    let shifted = call(
        &env,
        "ModelSamplingLTXV",
        inputs(vec![
            ("model", model),
            ("max_shift", Value::Float(2.05)),
            ("base_shift", Value::Float(0.95)),
        ]),
    );
    assert!((object::<LtxModel>(&shifted[0]).shift - 2.05).abs() < 1e-12);
}

/// Loaders + a conditioned CFG guider + an AV latent (video `frames` x 2 x 2, audio 5 steps).
struct Setup {
    env: Env,
    _dir: tempfile::TempDir,
    guider: Value,
    model: Value,
    cond: Value,
    vae: Value,
}

fn setup(cfg: f64) -> Setup {
    let (dir, env) = env_with_models();
    let (model, vae, _, clip) = load_all(&env);
    let pos = call(
        &env,
        "CLIPTextEncode",
        inputs(vec![("text", s("a red fox")), ("clip", clip.clone())]),
    );
    let neg = call(
        &env,
        "CLIPTextEncode",
        inputs(vec![("text", s("blurry")), ("clip", clip)]),
    );
    let guider = call(
        &env,
        "CFGGuider",
        inputs(vec![
            ("model", model.clone()),
            ("positive", pos[0].clone()),
            ("negative", neg[0].clone()),
            ("cfg", Value::Float(cfg)),
        ]),
    );
    Setup {
        env,
        _dir: dir,
        guider: guider[0].clone(),
        model,
        cond: pos[0].clone(),
        vae,
    }
}

fn av_latent(frames: usize) -> Latent {
    let dev = Device::Cpu;
    let mut l = Latent::new(Tensor::zeros((1, 128, frames, 2, 2), DType::F32, &dev).unwrap());
    l.samples = LatentSamples::Nested(vec![
        l.samples.first().unwrap().clone(),
        Tensor::zeros((1, 8, 5, 16), DType::F32, &dev).unwrap(),
    ]);
    l
}

fn node_value(env: &Env, name: &str, pairs: Vec<(&str, Value)>) -> Value {
    call(env, name, inputs(pairs))[0].clone()
}

fn advanced(
    st: &Setup,
    guider: &Value,
    noise_seed: i128,
    sampler: &str,
    sig: &str,
    l: Latent,
) -> Vec<Value> {
    let env = &st.env;
    call(
        env,
        "SamplerCustomAdvanced",
        inputs(vec![
            (
                "noise",
                node_value(
                    env,
                    "RandomNoise",
                    vec![("noise_seed", Value::Int(noise_seed))],
                ),
            ),
            ("guider", guider.clone()),
            (
                "sampler",
                node_value(env, "KSamplerSelect", vec![("sampler_name", s(sampler))]),
            ),
            (
                "sigmas",
                node_value(env, "ManualSigmas", vec![("sigmas", s(sig))]),
            ),
            ("latent_image", Value::Latent(l)),
        ]),
    )
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn an_empty_schedule_returns_the_latent_untouched() {
    let st = setup(1.0);
    let mut l = av_latent(2);
    l.extra
        .insert("downscale_ratio_spacial".into(), serde_json::json!(32));
    let out = advanced(&st, &st.guider, 1, "euler", "", l.clone());
    for o in &out {
        let r = latent(o);
        assert_eq!(r.samples.parts().len(), 2);
        assert!(values(r.samples.first().unwrap()).iter().all(|v| *v == 0.0));
        assert!(!r.extra.contains_key("downscale_ratio_spacial"));
    }
}

#[test]
fn samplers_run_on_av_latents_and_follow_the_seed() {
    let st = setup(3.0);
    let sig = "1., 0.725, 0.421875, 0.0";
    for sampler in ["euler", "euler_ancestral", "gradient_estimation"] {
        let a = advanced(&st, &st.guider, 5, sampler, sig, av_latent(2));
        let b = advanced(&st, &st.guider, 5, sampler, sig, av_latent(2));
        let c = advanced(&st, &st.guider, 6, sampler, sig, av_latent(2));
        let (a, b, c) = (latent(&a[0]), latent(&b[0]), latent(&c[0]));
        assert_eq!(a.samples.parts().len(), 2);
        for i in 0..2 {
            assert_eq!(
                values(a.samples.parts()[i]),
                values(b.samples.parts()[i]),
                "{sampler}"
            );
            assert_ne!(
                values(a.samples.parts()[i]),
                values(c.samples.parts()[i]),
                "{sampler}"
            );
        }
    }
    assert!(
        try_call(
            &st.env,
            "KSamplerSelect",
            inputs(vec![("sampler_name", s("dpmpp_2m"))])
        )
        .is_err()
    );
}

#[test]
fn guides_are_pinned_and_their_strength_biases_attention() {
    let st = setup(1.0);
    let env = &st.env;
    let mut last = Vec::new();
    for strength in [1.0, 0.5] {
        let guided = call(
            env,
            "LTXVAddGuide",
            inputs(vec![
                ("positive", st.cond.clone()),
                ("negative", st.cond.clone()),
                ("vae", st.vae.clone()),
                (
                    "latent",
                    Value::Latent(Latent::new(
                        Tensor::zeros((1, 128, 2, 2, 2), DType::F32, &Device::Cpu).unwrap(),
                    )),
                ),
                (
                    "image",
                    Value::Image(Tensor::full(0.5f32, (1, 64, 64, 3), &Device::Cpu).unwrap()),
                ),
                ("frame_idx", Value::Int(0)),
                ("strength", Value::Float(strength)),
            ]),
        );
        let guider = node_value(
            env,
            "CFGGuider",
            vec![
                ("model", st.model.clone()),
                ("positive", guided[0].clone()),
                ("negative", guided[1].clone()),
                ("cfg", Value::Float(1.0)),
            ],
        );
        let video = latent(&guided[2]);
        let audio = Tensor::zeros((1, 8, 5, 16), DType::F32, &Device::Cpu).unwrap();
        let joint = call(
            env,
            "LTXVConcatAVLatent",
            inputs(vec![
                ("video_latent", guided[2].clone()),
                ("audio_latent", Value::Latent(Latent::new(audio))),
            ]),
        );
        let out = advanced(
            &st,
            &guider,
            3,
            "euler",
            "1., 0.5, 0.0",
            latent(&joint[0]).clone(),
        );
        let denoised = latent(&out[1]).samples.first().unwrap().clone();
        let guide_frame = |t: &Tensor| values(&t.narrow(2, 2, 1).unwrap());
        if strength == 1.0 {
            // mask 0: the guide frame's prediction is the guide latent itself
            assert_eq!(
                guide_frame(&denoised),
                guide_frame(video.samples.first().unwrap())
            );
        }
        last.push(values(
            &latent(&out[0])
                .samples
                .first()
                .unwrap()
                .narrow(2, 0, 2)
                .unwrap(),
        ));
    }
    assert_ne!(
        last[0], last[1],
        "the guide strength changes the generated frames"
    );
}

struct Recorder {
    steps: Mutex<Vec<(f64, f64)>>,
    interrupt_after: usize,
    interrupt: Interrupt,
}

impl Reporter for Recorder {
    fn progress(&self, _: &str, value: f64, max: f64, _: Option<Preview>) {
        let mut steps = self.steps.lock();
        steps.push((value, max));
        if steps.len() == self.interrupt_after {
            self.interrupt.trigger();
        }
    }
    fn text(&self, _: &str, _: &str) {}
}

#[test]
fn ksampler_reports_progress_and_stops_when_interrupted() {
    let st = setup(1.0);
    let env = &st.env;
    let run = |interrupt_after: usize| {
        let rec = Recorder {
            steps: Mutex::new(Vec::new()),
            interrupt_after,
            interrupt: Interrupt::default(),
        };
        let result = try_call_with(
            env,
            "KSampler",
            inputs(vec![
                ("model", st.model.clone()),
                ("seed", Value::Int(u64::MAX as i128)),
                ("steps", Value::Int(3)),
                ("cfg", Value::Float(1.0)),
                ("sampler_name", s("euler")),
                ("scheduler", s("simple")),
                ("positive", st.cond.clone()),
                ("negative", st.cond.clone()),
                ("latent_image", Value::Latent(av_latent(2))),
                ("denoise", Value::Float(1.0)),
            ]),
            &rec,
            &rec.interrupt,
        );
        (result, rec.steps.into_inner())
    };
    let (ok, steps) = run(usize::MAX);
    assert!(ok.is_ok());
    assert_eq!(steps, vec![(1.0, 3.0), (2.0, 3.0), (3.0, 3.0)]);
    let (stopped, steps) = run(1);
    assert!(matches!(stopped, Err(NodeError::Interrupted)));
    assert_eq!(steps.len(), 1);
}

#[test]
fn the_budget_drops_the_text_encoder_to_make_room_for_the_transformer() {
    use nodes::ltxv::models::{KIND_TEXT_ENCODER, KIND_TRANSFORMER};
    use nodes::model_cache::ModelCache;
    let (_dir, env) = env_with_models();
    let cache = ModelCache::of(&env);
    let (model, _, _, clip) = load_all(&env);
    let encode = |text: &str| {
        call(
            &env,
            "CLIPTextEncode",
            inputs(vec![("text", s(text)), ("clip", clip.clone())]),
        )[0]
        .clone()
    };
    let cond = encode("a lighthouse at night");
    let text_bytes = cache.resident_bytes();
    assert!(text_bytes > 0);
    // Room for the transformer or the text encoder, not both.
    let transformer_bytes = nodes::ltxv::models::weight_bytes(
        &models::parity::model_path("ltx2-tiny.safetensors"),
        &["model.diffusion_model."],
        DType::F32,
    )
    .unwrap();
    cache.set_budget(text_bytes.max(transformer_bytes) + text_bytes.min(transformer_bytes) / 2);
    let guider = node_value(
        &env,
        "CFGGuider",
        vec![
            ("model", model),
            ("positive", cond.clone()),
            ("negative", cond),
            ("cfg", Value::Float(1.0)),
        ],
    );
    let st_env = &env;
    call(
        st_env,
        "SamplerCustomAdvanced",
        inputs(vec![
            (
                "noise",
                node_value(st_env, "RandomNoise", vec![("noise_seed", Value::Int(1))]),
            ),
            ("guider", guider),
            (
                "sampler",
                node_value(st_env, "KSamplerSelect", vec![("sampler_name", s("euler"))]),
            ),
            (
                "sigmas",
                node_value(st_env, "ManualSigmas", vec![("sigmas", s("1, 0"))]),
            ),
            ("latent_image", Value::Latent(av_latent(2))),
        ]),
    );
    let stats = cache.stats();
    assert_eq!(stats.loads[KIND_TRANSFORMER], 1);
    assert!(stats.evictions >= 1);
    assert!(cache.keys().iter().all(|k| k.kind != KIND_TEXT_ENCODER));
    // A new prompt needs the text encoder again: it is read from disk a second time.
    encode("a lighthouse by day");
    assert_eq!(cache.stats().loads[KIND_TEXT_ENCODER], 2);
}
