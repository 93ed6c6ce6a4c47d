//! LTX-2's text path: prompt -> Gemma 3 hidden states -> `FeatureExtractorV1` -> video and audio
//! embeddings connectors -> the video and audio contexts the transformer cross-attends to.
//!
//! This follows ltx-core 1.0.0 (`GemmaTextEncoder.encode` + `EmbeddingsProcessor`): the prompt is
//! left-padded to 1024 tokens, Gemma runs with the padding masked (here only on the real tokens,
//! at their padded positions: same result, see [`LtxTextEncoder::encode_tokens`]), features are
//! normalised over the valid tokens, and the connectors replace the padding with learnable
//! registers, so both contexts have 1024 tokens, all valid.
//!
//! Weights: Gemma from its own checkpoint ([`Gemma3Checkpoint`]); `text_embedding_projection.*`
//! and `model.diffusion_model.{video,audio}_embeddings_connector.*` from the LTX-2 checkpoint,
//! whose metadata `transformer` section configures the connectors.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::connector::{ConnectorConfig, Embeddings1DConnector};
use super::text_features::FeatureExtractorV1;
use crate::checkpoint::CheckpointHeader;
use crate::gemma3::PaddedTokens;
use crate::gemma3::{Gemma3Checkpoint, Gemma3TextConfig, Gemma3TextModel, GemmaTokenizer};
use crate::{Error, Result};

/// Prompt length LTX-2 pads (and truncates) to.
pub const MAX_TEXT_TOKENS: usize = 1024;

/// Checkpoint prefix of the feature extractor's projection.
pub const TEXT_PROJECTION_PREFIX: &str = "text_embedding_projection";
/// Checkpoint prefix of the video connector.
pub const VIDEO_CONNECTOR_PREFIX: &str = "model.diffusion_model.video_embeddings_connector";
/// Checkpoint prefix of the audio connector.
pub const AUDIO_CONNECTOR_PREFIX: &str = "model.diffusion_model.audio_embeddings_connector";

/// Metadata keys that select ltx-core's LTX-2.3 text path (`FeatureExtractorV2`).
const V2_KEYS: [&str; 4] = [
    "caption_proj_before_connector",
    "caption_projection_first_linear",
    "caption_proj_input_norm",
    "caption_projection_second_linear",
];

/// The contexts of one or more prompts.
#[derive(Debug, Clone)]
pub struct TextEncoding {
    /// Video context `[B, T, D_video]`.
    pub video_context: Tensor,
    /// Audio context `[B, T, D_audio]`.
    pub audio_context: Tensor,
    /// `[B, T]` u8, 1 = attend. All ones: the connectors fill padding with registers.
    pub attention_mask: Tensor,
}

/// Configuration of the projection and both connectors.
#[derive(Debug, Clone, PartialEq)]
pub struct TextProcessorConfig {
    /// Gemma's hidden size (features width).
    pub hidden_size: usize,
    /// Number of Gemma hidden states (layers + 1).
    pub num_hidden_states: usize,
    /// Video connector.
    pub video: ConnectorConfig,
    /// Audio connector.
    pub audio: ConnectorConfig,
}

impl TextProcessorConfig {
    /// From the LTX-2 checkpoint's metadata `transformer` section and the Gemma config.
    pub fn from_metadata(
        transformer: &serde_json::Value,
        gemma: &Gemma3TextConfig,
    ) -> Result<Self> {
        if let Some(key) = V2_KEYS.iter().find(|k| transformer.get(**k).is_some()) {
            return Err(Error::Config(format!(
                "metadata key `{key}` selects the LTX-2.3 text path (FeatureExtractorV2), \
                 which is not supported"
            )));
        }
        let cfg = Self {
            hidden_size: gemma.hidden_size,
            num_hidden_states: gemma.num_hidden_layers + 1,
            video: ConnectorConfig::video_from_metadata(transformer)?,
            audio: ConnectorConfig::audio_from_metadata(transformer)?,
        };
        for (name, c) in [("video", &cfg.video), ("audio", &cfg.audio)] {
            if c.inner_dim() != cfg.hidden_size {
                return Err(Error::Config(format!(
                    "{name} connector width {} differs from Gemma's hidden size {} \
                     (FeatureExtractorV1 feeds Gemma-width features to both connectors)",
                    c.inner_dim(),
                    cfg.hidden_size
                )));
            }
        }
        Ok(cfg)
    }
}

/// Feature extractor + video and audio connectors (ltx-core's `EmbeddingsProcessor`).
#[derive(Debug, Clone)]
pub struct TextEmbeddingsProcessor {
    feature_extractor: FeatureExtractorV1,
    video_connector: Embeddings1DConnector,
    audio_connector: Embeddings1DConnector,
}

impl TextEmbeddingsProcessor {
    /// Loads from `vb` at the LTX-2 checkpoint's root.
    pub fn new(cfg: &TextProcessorConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            feature_extractor: FeatureExtractorV1::new(
                cfg.hidden_size,
                cfg.num_hidden_states,
                vb.pp(TEXT_PROJECTION_PREFIX),
            )?,
            video_connector: Embeddings1DConnector::new(&cfg.video, vb.pp(VIDEO_CONNECTOR_PREFIX))?,
            audio_connector: Embeddings1DConnector::new(&cfg.audio, vb.pp(AUDIO_CONNECTOR_PREFIX))?,
        })
    }

    /// Reads the config from the checkpoint's metadata and loads plain weights cast to `dtype`.
    pub fn load(
        ltx_checkpoint: &Path,
        gemma: &Gemma3TextConfig,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let header = CheckpointHeader::read(ltx_checkpoint)?;
        let transformer = header
            .config()?
            .get("transformer")
            .cloned()
            .ok_or_else(|| {
                Error::Config(format!(
                    "{}: metadata config has no `transformer` section",
                    ltx_checkpoint.display()
                ))
            })?;
        let cfg = TextProcessorConfig::from_metadata(&transformer, gemma)?;
        // SAFETY: the file is mapped read-only and must not be modified while mapped.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[ltx_checkpoint], dtype, device)? };
        Self::new(&cfg, vb)
    }

    /// The feature extractor alone: hidden states -> features `[B, T, hidden]`.
    pub fn features(&self, hidden_states: &[Tensor], attention_mask: &Tensor) -> Result<Tensor> {
        self.feature_extractor
            .forward(hidden_states, attention_mask)
    }

    /// The connectors alone: features -> contexts.
    pub fn connect(&self, features: &Tensor, attention_mask: &Tensor) -> Result<TextEncoding> {
        let mask = attention_mask.to_device(features.device())?;
        let video_context = self.video_connector.forward(features, &mask)?;
        let audio_context = self.audio_connector.forward(features, &mask)?;
        let (batch, seq_len, _) = video_context.dims3()?;
        let attention_mask = Tensor::ones((batch, seq_len), DType::U8, features.device())?;
        Ok(TextEncoding {
            video_context,
            audio_context,
            attention_mask,
        })
    }

    /// Hidden states -> contexts.
    pub fn forward(
        &self,
        hidden_states: &[Tensor],
        attention_mask: &Tensor,
    ) -> Result<TextEncoding> {
        let features = self.features(hidden_states, attention_mask)?;
        self.connect(&features, attention_mask)
    }
}

/// The whole LTX-2 text encoder: tokenizer, Gemma 3 and the embeddings processor.
#[derive(Debug, Clone)]
pub struct LtxTextEncoder {
    tokenizer: GemmaTokenizer,
    gemma: Gemma3TextModel,
    processor: TextEmbeddingsProcessor,
    max_length: usize,
}

impl LtxTextEncoder {
    /// Assembles an encoder from loaded parts (e.g. a Gemma built on a dequantising
    /// `VarBuilder`); prompts are padded to [`MAX_TEXT_TOKENS`].
    pub fn new(
        tokenizer: GemmaTokenizer,
        gemma: Gemma3TextModel,
        processor: TextEmbeddingsProcessor,
    ) -> Self {
        Self {
            tokenizer,
            gemma,
            processor,
            max_length: MAX_TEXT_TOKENS,
        }
    }

    /// Loads Gemma from `gemma` (ComfyUI single file or Hugging Face folder, see
    /// [`Gemma3Checkpoint::open`]) and the projection/connectors from `ltx_checkpoint`, with plain
    /// weights cast to `dtype`.
    pub fn load(
        gemma: &Path,
        ltx_checkpoint: &Path,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let ckpt = Gemma3Checkpoint::open(gemma)?;
        let tokenizer = ckpt.tokenizer()?;
        let model = ckpt.load_model(dtype, device)?;
        let processor = TextEmbeddingsProcessor::load(ltx_checkpoint, &ckpt.config, dtype, device)?;
        Ok(Self::new(tokenizer, model, processor))
    }

    /// Changes the padded prompt length (a multiple of the connectors' register count).
    pub fn with_max_length(mut self, max_length: usize) -> Self {
        self.max_length = max_length;
        self
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &GemmaTokenizer {
        &self.tokenizer
    }

    /// The Gemma model.
    pub fn gemma(&self) -> &Gemma3TextModel {
        &self.gemma
    }

    /// The feature extractor and connectors.
    pub fn processor(&self) -> &TextEmbeddingsProcessor {
        &self.processor
    }

    /// ltx-core's tokenization: strip, `<bos>`, truncate and left-pad to the max length.
    pub fn tokenize(&self, prompt: &str) -> Result<PaddedTokens> {
        self.tokenizer.encode_padded(prompt, self.max_length)
    }

    /// Gemma's hidden states `[1, T, hidden]` of a tokenized prompt, padding rows included (the
    /// full run ltx-core makes).
    pub fn hidden_states(&self, tokens: &PaddedTokens) -> Result<Vec<Tensor>> {
        let (ids, mask) = tokens.to_tensors(self.gemma.device())?;
        self.gemma.forward_hidden_states(&ids, &mask)
    }

    /// Encodes an already tokenized prompt.
    ///
    /// Gemma runs only on the tokens after the left padding, at their positions in the padded
    /// sequence, and the padding rows of its hidden states are zeros: they never reach the
    /// contexts (the feature extractor zeroes them and the connectors replace them by registers),
    /// so the contexts equal those of the full run at a fraction of its cost for short prompts.
    pub fn encode_tokens(&self, tokens: &PaddedTokens) -> Result<TextEncoding> {
        let (ids, mask) = tokens.to_tensors(self.gemma.device())?;
        let seq_len = tokens.input_ids.len();
        let lead = tokens
            .attention_mask
            .iter()
            .take_while(|&&m| m == 0)
            .count();
        if lead == seq_len {
            return Err(Error::Input("the prompt has no tokens".into()));
        }
        let hidden_states = self.gemma.forward_hidden_states_at(
            &ids.narrow(1, lead, seq_len - lead)?,
            &mask.narrow(1, lead, seq_len - lead)?,
            lead,
        )?;
        let hidden_states = hidden_states
            .into_iter()
            .map(|h| left_pad_with_zeros(&h, lead))
            .collect::<Result<Vec<_>>>()?;
        self.processor.forward(&hidden_states, &mask)
    }

    /// Prompt -> video and audio contexts `[1, max_length, D]`.
    pub fn encode(&self, prompt: &str) -> Result<TextEncoding> {
        let tokens = self.tokenize(prompt)?;
        tracing::debug!(
            valid = tokens.num_valid(),
            length = tokens.input_ids.len(),
            "encoding prompt"
        );
        self.encode_tokens(&tokens)
    }
}

/// Prepends `count` zero rows to `x` `[B, T, D]` along the sequence.
fn left_pad_with_zeros(x: &Tensor, count: usize) -> Result<Tensor> {
    if count == 0 {
        return Ok(x.clone());
    }
    let (batch, _, dim) = x.dims3()?;
    let zeros = Tensor::zeros((batch, count, dim), x.dtype(), x.device())?;
    Ok(Tensor::cat(&[&zeros, x], 1)?)
}
