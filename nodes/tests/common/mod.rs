//! Shared helpers of the node tests: a user folder whose models are the tiny LTX-2 fixtures
//! under the official templates' file names, and direct node calls.

#![allow(dead_code)]

use models::parity::model_path;
use nodes::context::NoReporter;
use nodes::{Ctx, Env, Inputs, Interrupt, Outputs, Registry, Reporter, Slot, Value};
use serde_json::json;

/// Checkpoint name used by the tests (a link to `ltx2-tiny.safetensors`).
pub const CKPT: &str = "ltx-2-19b-dev-fp8.safetensors";
/// Text encoder name (a link to `gemma3-tiny-comfy.safetensors`).
pub const GEMMA: &str = "gemma_3_12B_it_fp4_mixed.safetensors";
/// LoRA name (a link to `ltx2-tiny-lora.safetensors`).
pub const LORA: &str = "ltx-2-19b-distilled-lora-384.safetensors";
/// Upscaler name (a link to `ltx2-tiny-upscaler.safetensors`).
pub const UPSCALER: &str = "ltx-2-spatial-upscaler-x2-1.0.safetensors";

/// A user folder with the tiny models linked under the template names.
pub fn env_with_models() -> (tempfile::TempDir, Env) {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let links = [
        (format!("checkpoints/{CKPT}"), "ltx2-tiny.safetensors"),
        (
            format!("text_encoders/{GEMMA}"),
            "gemma3-tiny-comfy.safetensors",
        ),
        (format!("loras/{LORA}"), "ltx2-tiny-lora.safetensors"),
        (
            format!("latent_upscale_models/{UPSCALER}"),
            "ltx2-tiny-upscaler.safetensors",
        ),
        // Not a checkpoint: for the loaders' error paths.
        (
            "checkpoints/not-a-model.safetensors".into(),
            "ltx2-tiny-lora.safetensors",
        ),
    ];
    for (name, target) in links {
        let path = models.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(model_path(target), path).unwrap();
    }
    let env = Env::under(dir.path());
    (dir, env)
}

/// Runs node `name` of the built-in registry once.
pub fn try_call(env: &Env, name: &str, inputs: Inputs) -> Result<Outputs, nodes::NodeError> {
    try_call_with(env, name, inputs, &NoReporter, &Interrupt::default())
}

/// Runs node `name` once with a progress reporter and an interrupt flag.
pub fn try_call_with(
    env: &Env,
    name: &str,
    inputs: Inputs,
    reporter: &dyn Reporter,
    interrupt: &Interrupt,
) -> Result<Outputs, nodes::NodeError> {
    let registry: Registry = nodes::builtin_registry();
    let def = registry
        .get(name)
        .unwrap_or_else(|| panic!("no node {name}"));
    let prompt = json!({});
    let ctx = Ctx {
        env,
        node_id: "1",
        prompt: &prompt,
        extra_pnginfo: None,
        reporter,
        interrupt,
    };
    (def.run)(&ctx, &inputs)
}

/// Runs node `name` and returns its output values.
pub fn call(env: &Env, name: &str, inputs: Inputs) -> Vec<Value> {
    let out = try_call(env, name, inputs).unwrap_or_else(|e| panic!("{name} failed: {e}"));
    out.slots
        .into_iter()
        .map(|s| match s {
            Slot::One(v) => v,
            Slot::Many(_) => panic!("list output"),
        })
        .collect()
}

/// Inputs from `(name, value)` pairs.
pub fn inputs(pairs: Vec<(&str, Value)>) -> Inputs {
    let mut i = Inputs::new();
    for (k, v) in pairs {
        i.insert(k, vec![v]);
    }
    i
}

/// A string value.
pub fn s(v: &str) -> Value {
    Value::String(v.into())
}

/// The LTX-2 loaders' outputs: (model, video VAE, audio VAE, CLIP).
pub fn load_all(env: &Env) -> (Value, Value, Value, Value) {
    let ckpt = call(
        env,
        "CheckpointLoaderSimple",
        inputs(vec![("ckpt_name", s(CKPT))]),
    );
    let audio = call(
        env,
        "LTXVAudioVAELoader",
        inputs(vec![("ckpt_name", s(CKPT))]),
    );
    let clip = call(
        env,
        "LTXAVTextEncoderLoader",
        inputs(vec![
            ("text_encoder", s(GEMMA)),
            ("ckpt_name", s(CKPT)),
            ("device", s("default")),
        ]),
    );
    (
        ckpt[0].clone(),
        ckpt[2].clone(),
        audio[0].clone(),
        clip[0].clone(),
    )
}

/// The latent of a value.
pub fn latent(v: &Value) -> &nodes::Latent {
    match v {
        Value::Latent(l) => l,
        other => panic!("expected LATENT, got {other:?}"),
    }
}
