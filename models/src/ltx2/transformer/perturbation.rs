//! Attention perturbations for guidance (ltx-core's `guidance/perturbations.py`).
//!
//! STG ("spatio-temporal guidance") runs an extra forward pass in which the self-attention of
//! chosen blocks is replaced by its value projection ([`PerturbationKind::SkipVideoSelfAttn`] /
//! [`PerturbationKind::SkipAudioSelfAttn`] with `blocks = Some(stg_blocks)`); ltx-core's
//! "modality" guidance runs a pass with both audio<->video cross-attentions removed in every
//! block ([`PerturbationKind::SkipAudioToVideo`] + [`PerturbationKind::SkipVideoToAudio`] with
//! `blocks = None`). Perturbations are given per batch item, so perturbed and unperturbed
//! passes can share one batched call.

use candle_core::{DType, Device, Tensor};

use super::attention::Skip;
use crate::{Error, Result};

/// What a perturbation removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PerturbationKind {
    /// Video self-attention (`attn1`) output replaced by its value projection.
    SkipVideoSelfAttn,
    /// Audio self-attention (`audio_attn1`) output replaced by its value projection.
    SkipAudioSelfAttn,
    /// Audio-to-video cross-attention (`audio_to_video_attn`) removed.
    SkipAudioToVideo,
    /// Video-to-audio cross-attention (`video_to_audio_attn`) removed.
    SkipVideoToAudio,
}

/// One perturbation: a kind and the blocks it applies to (`None` = every block).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Perturbation {
    /// What is removed.
    pub kind: PerturbationKind,
    /// Block indices, or `None` for all blocks.
    pub blocks: Option<Vec<usize>>,
}

impl Perturbation {
    /// STG on the video stream in `blocks`.
    pub fn skip_video_self_attention(blocks: &[usize]) -> Self {
        Self {
            kind: PerturbationKind::SkipVideoSelfAttn,
            blocks: Some(blocks.to_vec()),
        }
    }

    /// STG on the audio stream in `blocks`.
    pub fn skip_audio_self_attention(blocks: &[usize]) -> Self {
        Self {
            kind: PerturbationKind::SkipAudioSelfAttn,
            blocks: Some(blocks.to_vec()),
        }
    }

    /// Both audio<->video cross-attentions removed in every block (ltx-core's isolated-modality
    /// pass for "modality" guidance).
    pub fn isolate_modalities() -> Vec<Self> {
        [
            PerturbationKind::SkipAudioToVideo,
            PerturbationKind::SkipVideoToAudio,
        ]
        .into_iter()
        .map(|kind| Self { kind, blocks: None })
        .collect()
    }

    fn hits(&self, kind: PerturbationKind, block: usize) -> bool {
        self.kind == kind && self.blocks.as_ref().is_none_or(|b| b.contains(&block))
    }
}

/// Perturbations of every batch item (`items[i]` applies to item `i`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchPerturbations {
    /// One list per batch item.
    pub items: Vec<Vec<Perturbation>>,
}

impl BatchPerturbations {
    /// The same perturbations for each of `batch` items.
    pub fn uniform(perturbations: Vec<Perturbation>, batch: usize) -> Self {
        Self {
            items: vec![perturbations; batch],
        }
    }

    /// Checks that there is one list per batch item.
    pub fn check_batch(&self, batch: usize) -> Result<()> {
        if self.items.len() != batch {
            return Err(Error::Input(format!(
                "perturbations given for {} items, batch has {batch}",
                self.items.len()
            )));
        }
        Ok(())
    }

    /// Which items skip `kind` in `block`, as an attention [`Skip`].
    pub(crate) fn skip(
        &self,
        kind: PerturbationKind,
        block: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Skip> {
        let hit: Vec<bool> = self
            .items
            .iter()
            .map(|item| item.iter().any(|p| p.hits(kind, block)))
            .collect();
        if hit.iter().all(|h| !h) {
            return Ok(Skip::None);
        }
        if hit.iter().all(|h| *h) {
            return Ok(Skip::All);
        }
        let keep: Vec<f32> = hit.iter().map(|&h| if h { 0.0 } else { 1.0 }).collect();
        let keep = Tensor::from_vec(keep, (hit.len(), 1, 1), device)?.to_dtype(dtype)?;
        Ok(Skip::Mixed(keep))
    }
}

/// The skips of one block, resolved for the batch.
#[derive(Debug, Clone)]
pub(crate) struct BlockSkips {
    /// Video self-attention.
    pub video_self: Skip,
    /// Audio self-attention.
    pub audio_self: Skip,
    /// Audio-to-video cross-attention.
    pub audio_to_video: Skip,
    /// Video-to-audio cross-attention.
    pub video_to_audio: Skip,
}

impl BlockSkips {
    /// No perturbation.
    pub(crate) fn none() -> Self {
        Self {
            video_self: Skip::None,
            audio_self: Skip::None,
            audio_to_video: Skip::None,
            video_to_audio: Skip::None,
        }
    }

    /// Resolves `perturbations` (if any) for `block`.
    pub(crate) fn resolve(
        perturbations: Option<&BatchPerturbations>,
        block: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let Some(p) = perturbations else {
            return Ok(Self::none());
        };
        let skip = |kind| p.skip(kind, block, dtype, device);
        Ok(Self {
            video_self: skip(PerturbationKind::SkipVideoSelfAttn)?,
            audio_self: skip(PerturbationKind::SkipAudioSelfAttn)?,
            audio_to_video: skip(PerturbationKind::SkipAudioToVideo)?,
            video_to_audio: skip(PerturbationKind::SkipVideoToAudio)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_per_item_and_per_block() {
        let dev = Device::Cpu;
        let p = BatchPerturbations {
            items: vec![vec![], vec![Perturbation::skip_video_self_attention(&[1])]],
        };
        let b0 = BlockSkips::resolve(Some(&p), 0, DType::F32, &dev).unwrap();
        assert!(matches!(b0.video_self, Skip::None));
        let b1 = BlockSkips::resolve(Some(&p), 1, DType::F32, &dev).unwrap();
        let Skip::Mixed(keep) = b1.video_self else {
            panic!("expected a mixed skip")
        };
        assert_eq!(
            keep.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [1.0, 0.0]
        );
        let iso = BatchPerturbations::uniform(Perturbation::isolate_modalities(), 2);
        let b5 = BlockSkips::resolve(Some(&iso), 5, DType::F32, &dev).unwrap();
        assert!(matches!(b5.audio_to_video, Skip::All));
        assert!(matches!(b5.video_to_audio, Skip::All));
        assert!(matches!(b5.audio_self, Skip::None));
    }
}
