//! Model loader nodes: CheckpointLoaderSimple, UNETLoader, VAELoader, CLIPLoader,
//! LTXAVTextEncoderLoader, LTXVAudioVAELoader, LatentUpscaleModelLoader, LoraLoaderModelOnly.
//!
//! Loaders find files in the ComfyUI model folders of `env.models`, read the file header (key
//! layout, metadata configs) to recognise and configure the component, and return handles
//! ([`super::types`]); the weights are loaded by the nodes that use them, through the model
//! cache. One LTX-2 checkpoint is split as ComfyUI splits it (`checkpoint-formats.md` §2.3):
//! transformer + video VAE (CheckpointLoaderSimple), audio VAE + vocoder (LTXVAudioVAELoader),
//! projection + connectors (LTXAVTextEncoderLoader, with the Gemma file).

use std::path::PathBuf;

use models::ltx2::upsampler::UpsamplerConfig;

use super::detect::{
    detect_audio_vae, detect_transformer, detect_video_vae, header, text_encoder_source,
};
use super::types::{LTXAV_SHIFT, LoraRef, LtxModel, ModelInputs, UpscalerSource, Vae};
use crate::value::Json;
use crate::{
    Ctx, Env, InputDef, Inputs, NodeDef, NodeError, NodeSchema, OutputDef, Outputs, Registry, Value,
};

const LTX_AUDIO: &str = "comfy_extras.nodes_lt_audio";

/// `CLIPLoader`'s `type` choices (ComfyUI 0.12).
const CLIP_TYPES: &[&str] = &[
    "stable_diffusion",
    "stable_cascade",
    "sd3",
    "stable_audio",
    "mochi",
    "ltxv",
    "pixart",
    "cosmos",
    "lumina2",
    "wan",
    "hidream",
    "chroma",
    "ace",
    "omnigen2",
    "qwen_image",
    "hunyuan_image",
    "flux2",
    "ovis",
];

/// Registers the loader nodes.
pub fn register(r: &mut Registry) {
    r.register(checkpoint_loader());
    r.register(unet_loader());
    r.register(vae_loader());
    r.register(clip_loader());
    r.register(text_encoder_loader());
    r.register(audio_vae_loader());
    r.register(upscale_model_loader());
    r.register(lora_loader());
}

fn checkpoints(env: &Env) -> Vec<String> {
    env.models.list("checkpoints")
}
fn diffusion_models(env: &Env) -> Vec<String> {
    env.models.list("diffusion_models")
}
fn text_encoders(env: &Env) -> Vec<String> {
    env.models.list("text_encoders")
}
fn loras(env: &Env) -> Vec<String> {
    env.models.list("loras")
}
fn upscale_models(env: &Env) -> Vec<String> {
    env.models.list("latent_upscale_models")
}
fn vaes(env: &Env) -> Vec<String> {
    let mut list = env.models.list("vae");
    list.push("pixel_space".into());
    list
}

/// The full path of `name` in model folder `folder` (ComfyUI's `get_full_path_or_raise`).
pub fn model_path(env: &Env, folder: &str, name: &str) -> Result<PathBuf, NodeError> {
    env.models.full_path(folder, name).ok_or_else(|| {
        NodeError::FileNotFound(format!(
            "Model in folder '{folder}' with filename '{name}' not found."
        ))
    })
}

fn checkpoint_loader() -> NodeDef {
    let schema = NodeSchema::v1("CheckpointLoaderSimple", "loaders")
        .display("Load Checkpoint")
        .description(
            "Loads a diffusion model checkpoint, diffusion models are used to denoise latents.",
        )
        .input(
            InputDef::combo_dynamic("ckpt_name", checkpoints)
                .tooltip("The name of the checkpoint (model) to load."),
        )
        .output(OutputDef::new("MODEL").tooltip("The model used for denoising latents."))
        .output(OutputDef::new("CLIP").tooltip("The CLIP model used for encoding text prompts."))
        .output(OutputDef::new("VAE").tooltip(
            "The VAE model used for encoding and decoding images to and from latent space.",
        ))
        .aliases(&[
            "load model",
            "checkpoint",
            "model loader",
            "load checkpoint",
            "ckpt",
            "model",
        ]);
    NodeDef::new(schema, run_checkpoint_loader)
}

fn run_checkpoint_loader(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let path = model_path(ctx.env, "checkpoints", inputs.string("ckpt_name")?)?;
    let h = header(&path)?;
    let model = LtxModel {
        source: detect_transformer(&path, &h)?,
        loras: Vec::new(),
        shift: LTXAV_SHIFT,
    };
    let vae = match detect_video_vae(&path, &h)? {
        Some(v) => Vae::Video(v).into_value(),
        None => Value::Json(Json::Null),
    };
    // LTX-2 checkpoints hold no text encoder: ComfyUI returns None for CLIP.
    Ok(Outputs::new(vec![
        model.into_value(),
        Value::Json(Json::Null),
        vae,
    ]))
}

fn unet_loader() -> NodeDef {
    let schema = NodeSchema::v1("UNETLoader", "advanced/loaders")
        .display("Load Diffusion Model")
        .input(InputDef::combo_dynamic("unet_name", diffusion_models))
        .input(InputDef::combo(
            "weight_dtype",
            &["default", "fp8_e4m3fn", "fp8_e5m2", "fp8_e4m3fn_fast"],
        ))
        .output(OutputDef::new("MODEL"));
    NodeDef::new(schema, run_unet_loader)
}

fn run_unet_loader(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let path = model_path(ctx.env, "diffusion_models", inputs.string("unet_name")?)?;
    let weight_dtype = inputs.string("weight_dtype")?;
    if weight_dtype != "default" {
        tracing::info!(
            weight_dtype,
            "UNETLoader: weights run in the worker's working dtype"
        );
    }
    let h = header(&path)?;
    let model = LtxModel {
        source: detect_transformer(&path, &h)?,
        loras: Vec::new(),
        shift: LTXAV_SHIFT,
    };
    Ok(Outputs::one(model.into_value()))
}

fn vae_loader() -> NodeDef {
    let schema = NodeSchema::v1("VAELoader", "loaders")
        .display("Load VAE")
        .input(InputDef::combo_dynamic("vae_name", vaes))
        .output(OutputDef::new("VAE"));
    NodeDef::new(schema, run_vae_loader)
}

fn run_vae_loader(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let name = inputs.string("vae_name")?;
    if name == "pixel_space" {
        return Err(NodeError::Value(
            "VAELoader: the pixel_space VAE is not supported (LTX-2 VAEs only)".into(),
        ));
    }
    let path = model_path(ctx.env, "vae", name)?;
    let h = header(&path)?;
    if let Some(v) = detect_video_vae(&path, &h)? {
        return Ok(Outputs::one(Vae::Video(v).into_value()));
    }
    if let Some(a) = detect_audio_vae(&path, &h)? {
        return Ok(Outputs::one(Vae::Audio(a).into_value()));
    }
    Err(NodeError::Value(format!(
        "{name}: not an LTX-2 video or audio VAE (only LTX-2 VAEs are supported)"
    )))
}

fn clip_loader() -> NodeDef {
    let schema = NodeSchema::v1("CLIPLoader", "advanced/loaders")
        .display("Load CLIP")
        .description(
            "[Recipes]\n\nstable_diffusion: clip-l\nstable_cascade: clip-g\nsd3: t5 xxl/ clip-g / \
             clip-l\nstable_audio: t5 base\nmochi: t5 xxl\ncosmos: old t5 xxl\nlumina2: gemma 2 \
             2B\nwan: umt5 xxl\n hidream: llama-3.1 (Recommend) or t5\nomnigen2: qwen vl 2.5 3B",
        )
        .input(InputDef::combo_dynamic("clip_name", text_encoders))
        .input(InputDef::combo("type", CLIP_TYPES))
        .input(
            InputDef::combo("device", &["default", "cpu"])
                .opt("advanced", true)
                .optional(),
        )
        .output(OutputDef::new("CLIP"));
    NodeDef::new(schema, run_clip_loader)
}

fn run_clip_loader(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let kind = inputs.string("type")?;
    if kind != "ltxv" {
        return Err(NodeError::Value(format!(
            "CLIPLoader: type {kind:?} is not supported (only \"ltxv\")"
        )));
    }
    let path = model_path(ctx.env, "text_encoders", inputs.string("clip_name")?)?;
    let force_cpu = inputs.has("device") && inputs.string("device")? == "cpu";
    let source = text_encoder_source(path.clone(), path, force_cpu)?;
    Ok(Outputs::one(source.into_value()))
}

fn text_encoder_loader() -> NodeDef {
    let schema = NodeSchema::v3("LTXAVTextEncoderLoader", "advanced/loaders", LTX_AUDIO)
        .display("LTXV Audio Text Encoder Loader")
        .description("[Recipes]\n\nltxav: gemma 3 12B")
        .input(InputDef::combo_dynamic("text_encoder", text_encoders))
        .input(InputDef::combo_dynamic("ckpt_name", checkpoints))
        .input(InputDef::combo("device", &["default", "cpu"]))
        .output(OutputDef::new("CLIP"));
    NodeDef::new(schema, run_text_encoder_loader)
}

fn run_text_encoder_loader(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let gemma = model_path(ctx.env, "text_encoders", inputs.string("text_encoder")?)?;
    let ckpt = model_path(ctx.env, "checkpoints", inputs.string("ckpt_name")?)?;
    let force_cpu = inputs.string("device")? == "cpu";
    let source = text_encoder_source(gemma, ckpt, force_cpu)?;
    Ok(Outputs::one(source.into_value()))
}

fn audio_vae_loader() -> NodeDef {
    let schema = NodeSchema::v3("LTXVAudioVAELoader", "audio", LTX_AUDIO)
        .display("LTXV Audio VAE Loader")
        .input(
            InputDef::combo_dynamic("ckpt_name", checkpoints)
                .tooltip("Audio VAE checkpoint to load."),
        )
        .output(OutputDef::new("VAE").named("Audio VAE"));
    NodeDef::new(schema, run_audio_vae_loader)
}

fn run_audio_vae_loader(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let name = inputs.string("ckpt_name")?;
    let path = match ctx.env.models.full_path("checkpoints", name) {
        Some(p) => p,
        None => model_path(ctx.env, "vae", name)?,
    };
    let h = header(&path)?;
    let source = detect_audio_vae(&path, &h)?.ok_or_else(|| {
        NodeError::Value(format!(
            "{name}: no LTX-2 audio VAE (audio_vae.* and vocoder.* keys) in this file"
        ))
    })?;
    Ok(Outputs::one(Vae::Audio(source).into_value()))
}

fn upscale_model_loader() -> NodeDef {
    let schema = NodeSchema::v1("LatentUpscaleModelLoader", "loaders")
        .input(InputDef::combo_dynamic("model_name", upscale_models))
        .output(OutputDef::new("LATENT_UPSCALE_MODEL"));
    NodeDef::new(schema, run_upscale_model_loader)
}

fn run_upscale_model_loader(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let name = inputs.string("model_name")?;
    let path = model_path(ctx.env, "latent_upscale_models", name)?;
    let h = header(&path)?;
    if !h
        .tensors
        .contains_key("post_upsample_res_blocks.0.conv2.bias")
    {
        return Err(NodeError::Value(format!(
            "{name}: not an LTX latent upsampler (no post_upsample_res_blocks.0.conv2.bias)"
        )));
    }
    let raw = h.metadata.get("config").ok_or_else(|| {
        NodeError::Value(format!(
            "{name}: the latent upsampler needs its metadata `config`"
        ))
    })?;
    let config: UpsamplerConfig = serde_json::from_str(raw)
        .map_err(|e| NodeError::Value(format!("{name}: upsampler config: {e}")))?;
    Ok(Outputs::one(UpscalerSource { path, config }.into_value()))
}

fn lora_loader() -> NodeDef {
    let schema = NodeSchema::v1("LoraLoaderModelOnly", "loaders")
        .display("Load LoRA")
        .description(
            "LoRAs are used to modify diffusion and CLIP models, altering the way in which \
             latents are denoised such as applying styles. Multiple LoRA nodes can be linked \
             together.",
        )
        .input(InputDef::socket("model", "MODEL"))
        .input(InputDef::combo_dynamic("lora_name", loras))
        .input(
            InputDef::float("strength_model")
                .default(1.0)
                .min(-100.0)
                .max(100.0)
                .step(0.01),
        )
        .output(OutputDef::new("MODEL"))
        .tooltips_list(&["The modified diffusion model.", "The modified CLIP model."])
        .aliases(&[
            "lora",
            "load lora",
            "apply lora",
            "lora loader",
            "lora model",
        ]);
    NodeDef::new(schema, run_lora_loader)
}

fn run_lora_loader(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let strength = inputs.float("strength_model")?;
    if strength == 0.0 {
        return Ok(Outputs::one(inputs.get("model").cloned().ok_or_else(
            || NodeError::Value("missing input 'model'".into()),
        )?));
    }
    let model = inputs.model("model")?;
    let name = inputs.string("lora_name")?;
    let path = model_path(ctx.env, "loras", name)?;
    header(&path)?;
    let mut patched = (*model).clone();
    patched.loras.push(LoraRef {
        path,
        name: name.to_string(),
        strength,
    });
    Ok(Outputs::one(patched.into_value()))
}
