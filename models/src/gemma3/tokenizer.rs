//! Gemma tokenizer and LTX-2's prompt padding.
//!
//! Two sources give the same tokenizer: a Hugging Face `tokenizer.json` (the Gemma folder) and
//! the SentencePiece model stored as the U8 tensor `spiece_model` in ComfyUI's single-file text
//! encoders (converted by [`super::sentencepiece`]).
//!
//! [`GemmaTokenizer::encode_padded`] reproduces ltx-core's `LTXVGemmaTokenizer`: the prompt is
//! stripped, encoded with `<bos>` and no `<eos>`, truncated to `max_length` (keeping the start) and
//! padded on the left with the pad token; the attention mask is 0 on padding.

use std::path::Path;

use candle_core::{Device, Tensor};
use tokenizers::Tokenizer;

use super::sentencepiece::SentencePieceModel;
use crate::{Error, Result};

/// Name of the tensor holding the SentencePiece model in ComfyUI's text-encoder files.
pub const SPIECE_TENSOR: &str = "spiece_model";

/// A prompt as token ids, left-padded to a fixed length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaddedTokens {
    /// Token ids (padding first).
    pub input_ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<u32>,
}

impl PaddedTokens {
    /// Number of real (non-padding) tokens.
    pub fn num_valid(&self) -> usize {
        self.attention_mask.iter().filter(|&&m| m != 0).count()
    }

    /// `(input_ids, attention_mask)` as `[1, T]` u32 tensors on `device`.
    pub fn to_tensors(&self, device: &Device) -> Result<(Tensor, Tensor)> {
        let len = self.input_ids.len();
        let ids = Tensor::from_slice(&self.input_ids, (1, len), device)?;
        let mask = Tensor::from_slice(&self.attention_mask, (1, len), device)?;
        Ok((ids, mask))
    }
}

/// The Gemma 3 tokenizer.
#[derive(Clone)]
pub struct GemmaTokenizer {
    tokenizer: Tokenizer,
    pad_id: u32,
}

impl std::fmt::Debug for GemmaTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GemmaTokenizer")
            .field("vocab_size", &self.tokenizer.get_vocab_size(true))
            .field("pad_id", &self.pad_id)
            .finish()
    }
}

fn tok_err(context: &str, e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(format!("{context}: {e}"))
}

impl GemmaTokenizer {
    /// Loads a Hugging Face `tokenizer.json`. The pad token is `pad_token` of the
    /// `tokenizer_config.json` beside it when present, otherwise `<pad>`, otherwise the eos token
    /// (as ltx-core's wrapper falls back to eos).
    pub fn from_tokenizer_json(path: &Path) -> Result<Self> {
        let tokenizer =
            Tokenizer::from_file(path).map_err(|e| tok_err(&path.display().to_string(), e))?;
        let configured = path
            .parent()
            .map(|dir| dir.join("tokenizer_config.json"))
            .filter(|p| p.is_file())
            .map(|p| read_pad_token(&p))
            .transpose()?
            .flatten();
        let pad_id = [configured.as_deref(), Some("<pad>"), Some("<eos>")]
            .into_iter()
            .flatten()
            .find_map(|t| tokenizer.token_to_id(t))
            .ok_or_else(|| Error::Tokenizer(format!("{}: no pad or eos token", path.display())))?;
        Ok(Self { tokenizer, pad_id })
    }

    /// Builds the tokenizer from a serialized SentencePiece `ModelProto`.
    pub fn from_sentencepiece(proto: &[u8]) -> Result<Self> {
        let model = SentencePieceModel::parse(proto)?;
        let tokenizer = model.to_gemma_tokenizer()?;
        let pad_id = [model.pad_id, model.eos_id]
            .into_iter()
            .find(|&id| model.piece(id).is_some())
            .ok_or_else(|| Error::Tokenizer("sentencepiece model has no pad or eos id".into()))?;
        Ok(Self {
            tokenizer,
            pad_id: pad_id as u32,
        })
    }

    /// Reads the `spiece_model` tensor of a ComfyUI text-encoder file.
    pub fn from_checkpoint(path: &Path) -> Result<Self> {
        // SAFETY: the file is mapped read-only and must not be modified while we read it.
        let tensors = unsafe { candle_core::safetensors::MmapedSafetensors::new(path)? };
        let view = tensors.get(SPIECE_TENSOR).map_err(|_| {
            Error::Checkpoint(format!(
                "{}: no `{SPIECE_TENSOR}` tensor (the tokenizer of ComfyUI text encoders)",
                path.display()
            ))
        })?;
        if view.dtype() != safetensors::Dtype::U8 {
            return Err(Error::Checkpoint(format!(
                "{}: `{SPIECE_TENSOR}` is {:?}, expected U8",
                path.display(),
                view.dtype()
            )));
        }
        Self::from_sentencepiece(view.data())
    }

    /// The pad token id.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Encodes `text` as is, with `<bos>` prepended and no padding or truncation.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| tok_err("encode", e))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// ltx-core's prompt encoding: strip, encode with `<bos>`, keep the first `max_length`
    /// tokens, pad on the left to `max_length`.
    pub fn encode_padded(&self, prompt: &str, max_length: usize) -> Result<PaddedTokens> {
        let mut ids = self.encode(python_strip(prompt))?;
        ids.truncate(max_length);
        let pad = max_length - ids.len();
        let mut input_ids = vec![self.pad_id; pad];
        input_ids.extend_from_slice(&ids);
        let mut attention_mask = vec![0u32; pad];
        attention_mask.resize(max_length, 1);
        Ok(PaddedTokens {
            input_ids,
            attention_mask,
        })
    }
}

/// Python's `str.strip()`: Unicode whitespace plus the separators U+001C..U+001F.
fn python_strip(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// `pad_token` of a `tokenizer_config.json` (a string or an `{"content": ...}` object).
fn read_pad_token(path: &Path) -> Result<Option<String>> {
    let raw = std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    let json: serde_json::Value = serde_json::from_slice(&raw)
        .map_err(|e| Error::Tokenizer(format!("{}: not JSON: {e}", path.display())))?;
    let pad = &json["pad_token"];
    Ok(pad
        .as_str()
        .or_else(|| pad["content"].as_str())
        .map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_strip_matches_str_strip() {
        assert_eq!(python_strip("\u{1f} a b \u{3000}\n"), "a b");
        assert_eq!(python_strip("x"), "x");
    }
}
