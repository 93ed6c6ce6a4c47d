//! Turning model handles into loaded models, through the worker's [`ModelCache`].
//!
//! Every model runs on `env.device` in [`working_dtype`] (f32 on the CPU, bf16 on GPUs) unless
//! its handle says otherwise (the text encoder's `device: cpu`). Weights are read with
//! [`WeightFiles`], so quantised official files (fp8, nvfp4 mixed) load the same way.

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device};
use models::checkpoint::CheckpointHeader;
use models::gemma3::{Gemma3Checkpoint, Gemma3TextModel};
use models::ltx2::audio_vae::AudioVae;
use models::ltx2::lora::LoraWeights;
use models::ltx2::text::{LtxTextEncoder, TextEmbeddingsProcessor};
use models::ltx2::transformer::{LoraMode, LtxAvModel};
use models::ltx2::upsampler::LatentUpsampler;
use models::ltx2::video_vae::VideoVae;
use models::weights::WeightFiles;

use super::types::{AudioVaeSource, LtxModel, TextEncoderSource, UpscalerSource, VideoVaeSource};
use crate::model_cache::{ModelCache, ModelKey, working_dtype};
use crate::{Env, NodeError};

/// Cache kind of the LTX-2 transformer (base weights, no LoRA).
pub const KIND_TRANSFORMER: &str = "ltxav_transformer";
/// Cache kind of LoRA files.
pub const KIND_LORA: &str = "lora";
/// Cache kind of the text encoder (Gemma + projection + connectors).
pub const KIND_TEXT_ENCODER: &str = "ltxav_text_encoder";
/// Cache kind of the video VAE.
pub const KIND_VIDEO_VAE: &str = "ltx_video_vae";
/// Cache kind of the audio VAE + vocoder.
pub const KIND_AUDIO_VAE: &str = "ltx_audio_vae";
/// Cache kind of the latent upsampler.
pub const KIND_UPSAMPLER: &str = "ltx_latent_upsampler";

/// Approximate bytes of the tensors whose names start with one of `prefixes` (all tensors when
/// `prefixes` is empty), once loaded in `dtype`.
pub fn weight_bytes(path: &Path, prefixes: &[&str], dtype: DType) -> Result<usize, NodeError> {
    let header = CheckpointHeader::read(path)?;
    let elements: usize = header
        .tensors
        .iter()
        .filter(|(k, _)| prefixes.is_empty() || prefixes.iter().any(|p| k.starts_with(p)))
        .map(|(_, t)| t.shape.iter().product::<usize>())
        .sum();
    Ok(elements * dtype.size_in_bytes())
}

fn with_dot(prefix: &str) -> String {
    if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}.")
    }
}

/// The base transformer of `model` (cached), without LoRAs.
pub fn base_transformer(env: &Env, model: &LtxModel) -> Result<Arc<LtxAvModel>, NodeError> {
    let device = &env.device;
    let dtype = working_dtype(device);
    let src = &model.source;
    let key = ModelKey::new(KIND_TRANSFORMER, &[&src.path], dtype, device)?;
    ModelCache::of(env).get_or_load(&key, || {
        let files = WeightFiles::open(&[&src.path])?;
        let vb = files.var_builder(dtype, device)?;
        let vb = if src.prefix.is_empty() {
            vb
        } else {
            vb.pp(&src.prefix)
        };
        let transformer = LtxAvModel::new(&src.config, vb)?;
        let prefix = with_dot(&src.prefix);
        let connectors = [
            format!("{prefix}video_embeddings_connector."),
            format!("{prefix}audio_embeddings_connector."),
        ];
        let all = weight_bytes(&src.path, &[&prefix], dtype)?;
        let connector_bytes = weight_bytes(
            &src.path,
            &connectors.iter().map(String::as_str).collect::<Vec<_>>(),
            dtype,
        )?;
        Ok((transformer, all.saturating_sub(connector_bytes)))
    })
}

/// A LoRA file (cached), its tensors on `env.device` in the model's working dtype.
pub fn lora_weights(env: &Env, path: &Path) -> Result<Arc<LoraWeights>, NodeError> {
    let device = &env.device;
    let dtype = working_dtype(device);
    let key = ModelKey::new(KIND_LORA, &[path], dtype, device)?;
    ModelCache::of(env).get_or_load(&key, || {
        let mut weights = LoraWeights::load(path, device)?;
        for m in weights.modules.values_mut() {
            m.down = m.down.to_dtype(dtype)?;
            m.up = m.up.to_dtype(dtype)?;
        }
        Ok((weights, weight_bytes(path, &[], dtype)?))
    })
}

/// The transformer of `model` with its LoRAs applied: a clone of the cached base sharing its
/// weights, with low-rank patches added at forward time.
pub fn transformer(env: &Env, model: &LtxModel) -> Result<Arc<LtxAvModel>, NodeError> {
    let base = base_transformer(env, model)?;
    let active: Vec<_> = model.loras.iter().filter(|l| l.strength != 0.0).collect();
    if active.is_empty() {
        return Ok(base);
    }
    let weights = active
        .iter()
        .map(|l| lora_weights(env, &l.path))
        .collect::<Result<Vec<_>, _>>()?;
    let pairs: Vec<(&LoraWeights, f64)> = weights
        .iter()
        .zip(&active)
        .map(|(w, l)| (w.as_ref(), l.strength))
        .collect();
    let (patched, report) = base.with_loras(&pairs, LoraMode::Unfused)?;
    tracing::info!(
        patched_layers = report.patched_layers,
        unmatched = report.unmatched.len(),
        "applied LoRAs"
    );
    Ok(Arc::new(patched))
}

/// The text encoder of a `CLIP` handle (cached).
pub fn text_encoder(env: &Env, src: &TextEncoderSource) -> Result<Arc<LtxTextEncoder>, NodeError> {
    let device = if src.force_cpu {
        Device::Cpu
    } else {
        env.device.clone()
    };
    let dtype = working_dtype(&device);
    let key = ModelKey::new(
        KIND_TEXT_ENCODER,
        &[&src.gemma, &src.projection],
        dtype,
        &device,
    )?;
    ModelCache::of(env).get_or_load(&key, || {
        let ckpt = Gemma3Checkpoint::open(&src.gemma)?;
        let tokenizer = ckpt.tokenizer()?;
        let gemma_files = WeightFiles::open(&ckpt.weights)?;
        let gemma = Gemma3TextModel::new(
            &src.gemma_config,
            gemma_files
                .var_builder(dtype, &device)?
                .pp(&ckpt.text_prefix),
        )?;
        let projection_files = if src.projection == src.gemma {
            gemma_files.clone()
        } else {
            WeightFiles::open(&[&src.projection])?
        };
        let processor = TextEmbeddingsProcessor::new(
            &src.processor_config,
            projection_files.var_builder(dtype, &device)?,
        )?;
        let gemma_prefix = with_dot(&ckpt.text_prefix);
        let mut bytes = 0;
        for w in &ckpt.weights {
            bytes += weight_bytes(w, &[&gemma_prefix], dtype)?;
        }
        bytes += weight_bytes(
            &src.projection,
            &[
                "text_embedding_projection.",
                "model.diffusion_model.video_embeddings_connector.",
                "model.diffusion_model.audio_embeddings_connector.",
            ],
            dtype,
        )?;
        Ok((LtxTextEncoder::new(tokenizer, gemma, processor), bytes))
    })
}

/// The video VAE of a `VAE` handle (cached).
pub fn video_vae(env: &Env, src: &VideoVaeSource) -> Result<Arc<VideoVae>, NodeError> {
    let device = &env.device;
    let dtype = working_dtype(device);
    let key = ModelKey::new(KIND_VIDEO_VAE, &[&src.path], dtype, device)?;
    ModelCache::of(env).get_or_load(&key, || {
        let files = WeightFiles::open(&[&src.path])?;
        let vb = files.var_builder(dtype, device)?;
        let vb = if src.prefix.is_empty() {
            vb
        } else {
            vb.pp(&src.prefix)
        };
        let vae = VideoVae::new(src.config.clone(), vb)?;
        let bytes = weight_bytes(&src.path, &[&with_dot(&src.prefix)], dtype)?;
        Ok((vae, bytes))
    })
}

/// The audio VAE + vocoder of a `VAE` handle (cached).
pub fn audio_vae(env: &Env, src: &AudioVaeSource) -> Result<Arc<AudioVae>, NodeError> {
    let device = &env.device;
    let dtype = working_dtype(device);
    let key = ModelKey::new(KIND_AUDIO_VAE, &[&src.path], dtype, device)?;
    ModelCache::of(env).get_or_load(&key, || {
        let files = WeightFiles::open(&[&src.path])?;
        let vae = AudioVae::new(
            &src.checkpoint_config,
            src.has_encoder,
            files.var_builder(dtype, device)?,
        )?;
        let bytes = weight_bytes(&src.path, &["audio_vae.", "vocoder."], dtype)?;
        Ok((vae, bytes))
    })
}

/// The latent upsampler of a `LATENT_UPSCALE_MODEL` handle (cached).
pub fn upsampler(env: &Env, src: &UpscalerSource) -> Result<Arc<LatentUpsampler>, NodeError> {
    let device = &env.device;
    let dtype = working_dtype(device);
    let key = ModelKey::new(KIND_UPSAMPLER, &[&src.path], dtype, device)?;
    ModelCache::of(env).get_or_load(&key, || {
        let files = WeightFiles::open(&[&src.path])?;
        let up = LatentUpsampler::new(src.config.clone(), files.var_builder(dtype, device)?)?;
        Ok((up, weight_bytes(&src.path, &[], dtype)?))
    })
}
