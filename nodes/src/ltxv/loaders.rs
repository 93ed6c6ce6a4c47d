//! Model loader nodes: CheckpointLoaderSimple, UNETLoader, VAELoader, CLIPLoader,
//! LTXAVTextEncoderLoader, LTXVAudioVAELoader, LatentUpscaleModelLoader, LoraLoaderModelOnly.
//!
//! Loaders find files in the ComfyUI model folders of `env.models`, read the file header (key
//! layout, metadata configs) to recognise and configure the component, and return handles
//! ([`super::types`]); the weights are loaded by the nodes that use them, through the model
//! cache. One LTX-2 checkpoint is split as ComfyUI splits it (`checkpoint-formats.md` §2.3):
//! transformer + video VAE (CheckpointLoaderSimple), audio VAE + vocoder (LTXVAudioVAELoader),
//! projection + connectors (LTXAVTextEncoderLoader, with the Gemma file).

use std::path::{Path, PathBuf};

use models::checkpoint::CheckpointHeader;
use models::gemma3::Gemma3Checkpoint;
use models::ltx2::audio_vae::Config as AudioVaeConfig;
use models::ltx2::text::TextProcessorConfig;
use models::ltx2::transformer::TransformerConfig;
use models::ltx2::upsampler::UpsamplerConfig;
use models::ltx2::video_vae::VaeConfig;
use serde_json::json;

use super::types::{
    AudioVaeSource, LTXAV_SHIFT, LoraRef, LtxModel, ModelInputs, TextEncoderSource,
    TransformerSource, UpscalerSource, Vae, VideoVaeSource,
};
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

fn header(path: &Path) -> Result<CheckpointHeader, NodeError> {
    Ok(CheckpointHeader::read(path)?)
}

/// The metadata `config` JSON of a file, if any.
fn metadata_config(h: &CheckpointHeader) -> Result<Option<Json>, NodeError> {
    if h.metadata.contains_key("config") {
        Ok(Some(h.config()?))
    } else {
        Ok(None)
    }
}

/// Finds the LTX-2 audio-video transformer in a file (ComfyUI's detection keys), and its
/// config: the metadata `transformer` section, or sizes read from tensor shapes.
pub fn detect_transformer(
    path: &Path,
    h: &CheckpointHeader,
) -> Result<TransformerSource, NodeError> {
    let prefix = ["model.diffusion_model.", "diffusion_model.", ""]
        .into_iter()
        .find(|p| {
            h.tensors.contains_key(&format!(
                "{p}adaln_single.emb.timestep_embedder.linear_1.bias"
            ))
        })
        .ok_or_else(|| {
            NodeError::Value(format!(
                "{}: not an LTX-2 model (no adaln_single timestep embedder); only LTX-2 \
                 audio-video models are supported",
                path.display()
            ))
        })?;
    if !h
        .tensors
        .contains_key(&format!("{prefix}audio_adaln_single.linear.weight"))
    {
        return Err(NodeError::Value(format!(
            "{}: an LTX video-only model; only LTX-2 audio-video models are supported",
            path.display()
        )));
    }
    let section = match metadata_config(h)?.and_then(|c| c.get("transformer").cloned()) {
        Some(s) => s,
        None => transformer_config_from_shapes(h, prefix)?,
    };
    Ok(TransformerSource {
        path: path.to_path_buf(),
        prefix: prefix.trim_end_matches('.').to_string(),
        config: TransformerConfig::from_json(&section)?,
    })
}

/// ComfyUI's `detect_unet_config` for LTXAV when a file carries no metadata: layer count and
/// widths from tensor shapes (32 heads assumed), the rest at the 19B defaults.
fn transformer_config_from_shapes(h: &CheckpointHeader, prefix: &str) -> Result<Json, NodeError> {
    let shape = |key: &str| -> Result<Vec<usize>, NodeError> {
        h.shape(&format!("{prefix}{key}"))
            .map(<[usize]>::to_vec)
            .ok_or_else(|| {
                NodeError::Value(format!("{}: no tensor {prefix}{key}", h.path.display()))
            })
    };
    let layers = (0..)
        .take_while(|i| {
            h.tensors
                .contains_key(&format!("{prefix}transformer_blocks.{i}.attn1.to_q.weight"))
        })
        .count();
    let video_k = shape("transformer_blocks.0.attn2.to_k.weight")?;
    let audio_k = shape("transformer_blocks.0.audio_attn2.to_k.weight")?;
    let caption = shape("caption_projection.linear_1.weight")?;
    Ok(json!({
        "num_layers": layers,
        "num_attention_heads": 32,
        "attention_head_dim": video_k[0] / 32,
        "cross_attention_dim": video_k[1],
        "audio_num_attention_heads": 32,
        "audio_attention_head_dim": audio_k[0] / 32,
        "audio_cross_attention_dim": audio_k[1],
        "caption_channels": caption[1],
    }))
}

/// The video VAE of a file: keys under `vae.` (single files) or bare `decoder.`/`encoder.`.
fn detect_video_vae(
    path: &Path,
    h: &CheckpointHeader,
) -> Result<Option<VideoVaeSource>, NodeError> {
    let prefix = if h.has_prefix("vae.decoder.") {
        "vae"
    } else if h.has_prefix("decoder.up_blocks.") {
        ""
    } else {
        return Ok(None);
    };
    let config = metadata_config(h)?.ok_or_else(|| {
        NodeError::Value(format!(
            "{}: the video VAE needs the metadata `config` entry",
            path.display()
        ))
    })?;
    let section = config.get("vae").cloned().unwrap_or(config);
    Ok(Some(VideoVaeSource {
        path: path.to_path_buf(),
        prefix: prefix.into(),
        config: VaeConfig::from_json(&section)?,
    }))
}

/// The audio VAE + vocoder of a file (ComfyUI's detection key `vocoder.resblocks.0.convs1.0.weight`).
fn detect_audio_vae(
    path: &Path,
    h: &CheckpointHeader,
) -> Result<Option<AudioVaeSource>, NodeError> {
    if !h.has_prefix("audio_vae.decoder.") || !h.has_prefix("vocoder.") {
        return Ok(None);
    }
    let config = metadata_config(h)?.ok_or_else(|| {
        NodeError::Value(format!(
            "{}: the audio VAE needs the metadata `config` entry",
            path.display()
        ))
    })?;
    for section in ["audio_vae", "vocoder"] {
        if config.get(section).is_none() {
            return Err(NodeError::Value(format!(
                "{}: metadata config has no `{section}` section",
                path.display()
            )));
        }
    }
    Ok(Some(AudioVaeSource {
        path: path.to_path_buf(),
        config: AudioVaeConfig::from_json(&config["audio_vae"])?,
        has_encoder: h.has_prefix("audio_vae.encoder."),
        checkpoint_config: config,
    }))
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

/// A text encoder from a Gemma file and the file holding the LTX-2 projection and connectors.
fn text_encoder_source(
    gemma: PathBuf,
    projection: PathBuf,
    force_cpu: bool,
) -> Result<TextEncoderSource, NodeError> {
    let ckpt = Gemma3Checkpoint::open(&gemma)?;
    let h = header(&projection)?;
    if !h
        .tensors
        .contains_key("text_embedding_projection.aggregate_embed.weight")
    {
        return Err(NodeError::Value(format!(
            "{}: no text_embedding_projection.aggregate_embed.weight (not an LTX-2 19B \
             checkpoint or projection file)",
            projection.display()
        )));
    }
    let transformer = metadata_config(&h)?
        .and_then(|c| c.get("transformer").cloned())
        .ok_or_else(|| {
            NodeError::Value(format!(
                "{}: metadata config has no `transformer` section (needed for the connectors)",
                projection.display()
            ))
        })?;
    let processor_config = TextProcessorConfig::from_metadata(&transformer, &ckpt.config)?;
    Ok(TextEncoderSource {
        gemma,
        projection,
        gemma_config: ckpt.config,
        processor_config,
        force_cpu,
    })
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
