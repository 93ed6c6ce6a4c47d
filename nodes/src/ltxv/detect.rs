//! Recognising LTX-2 components in safetensors files from their headers: which keys are
//! present (ComfyUI's detection keys, `checkpoint-formats.md` §2.1) and the metadata `config`
//! sections that size them. Used by the loader nodes ([`super::loaders`]).

use std::path::{Path, PathBuf};

use models::checkpoint::CheckpointHeader;
use models::gemma3::Gemma3Checkpoint;
use models::ltx2::audio_vae::Config as AudioVaeConfig;
use models::ltx2::text::TextProcessorConfig;
use models::ltx2::transformer::TransformerConfig;
use models::ltx2::video_vae::VaeConfig;
use serde_json::json;

use super::types::{AudioVaeSource, TextEncoderSource, TransformerSource, VideoVaeSource};
use crate::NodeError;
use crate::value::Json;

/// The header of a safetensors file.
pub fn header(path: &Path) -> Result<CheckpointHeader, NodeError> {
    Ok(CheckpointHeader::read(path)?)
}

/// The metadata `config` JSON of a file, if any.
pub fn metadata_config(h: &CheckpointHeader) -> Result<Option<Json>, NodeError> {
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
pub fn detect_video_vae(
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
pub fn detect_audio_vae(
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

/// A text encoder from a Gemma file and the file holding the LTX-2 projection and connectors.
pub fn text_encoder_source(
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
