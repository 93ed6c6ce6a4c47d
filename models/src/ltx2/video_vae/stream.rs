//! Streaming state for running the VAE's causal convolutions over a video in chunks.
//!
//! [`ConvStream`] carries the last input frames a later output still needs (the temporal
//! padding included), so a causal conv fed chunk by chunk produces exactly the frames it
//! would produce on the whole video. [`FrameQueue`] holds skip-branch frames until the conv
//! branch they are added to releases the matching frames.

use candle_core::Tensor;

use super::conv::{CausalConv3d, tensor_bytes};
use crate::{Error, Result};

/// Streaming state of one [`CausalConv3d`]: the frames the next output still needs.
#[derive(Debug, Clone)]
pub struct ConvStream {
    causal: bool,
    started: bool,
    /// Input frames (front padding included) not yet fully consumed.
    carry: Option<Tensor>,
}

impl ConvStream {
    /// A fresh stream (nothing seen yet).
    pub fn new(causal: bool) -> Self {
        Self {
            causal,
            started: false,
            carry: None,
        }
    }

    /// Bytes held between calls.
    pub fn held_bytes(&self) -> usize {
        self.carry.as_ref().map_or(0, tensor_bytes)
    }

    /// Feeds the next frames (`None`: none this time); `last` marks the end of the video.
    /// Returns the output frames that became computable (`None` if none did).
    pub fn push(
        &mut self,
        conv: &CausalConv3d,
        x: Option<Tensor>,
        last: bool,
        scratch: usize,
    ) -> Result<Option<Tensor>> {
        let k = conv.conv().time_kernel();
        let mut pieces = Vec::with_capacity(3);
        if !self.started {
            let Some(first_chunk) = &x else {
                return Ok(None);
            };
            let front = if self.causal { k - 1 } else { (k - 1) / 2 };
            if front > 0 {
                pieces.push(repeat_frame(first_chunk, 0, front)?);
            }
            self.started = true;
        }
        if let Some(carry) = self.carry.take() {
            pieces.push(carry);
        }
        if let Some(x) = x {
            pieces.push(x);
        }
        if pieces.is_empty() {
            return Ok(None);
        }
        if last && !self.causal {
            let tail = pieces
                .last()
                .ok_or_else(|| Error::Input("conv stream: no frames".into()))?;
            let back = (k - 1) / 2;
            if back > 0 {
                let n = tail.dim(1)?;
                pieces.push(repeat_frame(tail, n - 1, back)?);
            }
        }
        let all = if pieces.len() == 1 {
            pieces
                .pop()
                .ok_or_else(|| Error::Input("conv stream: no frames".into()))?
        } else {
            Tensor::cat(&pieces, 1)?
        };
        drop(pieces);
        let total = all.dim(1)?;
        let produced = conv.conv().out_frames(total);
        let consumed = produced * conv.conv().time_stride();
        if !last && consumed < total {
            self.carry = Some(all.narrow(1, consumed, total - consumed)?.copy()?);
        }
        if produced == 0 {
            return Ok(None);
        }
        Ok(Some(conv.conv().forward_frames(&all, scratch)?))
    }
}

/// Frames waiting to be added to a residual branch that lags behind its input (the skip of a
/// residual block whose convolutions hold frames back while streaming).
#[derive(Debug, Clone, Default)]
pub struct FrameQueue {
    frames: Option<Tensor>,
}

impl FrameQueue {
    /// Appends `[B, T, C, H, W]` frames.
    pub fn push(&mut self, x: Tensor) -> Result<()> {
        self.frames = Some(match self.frames.take() {
            None => x,
            Some(held) => Tensor::cat(&[held, x], 1)?,
        });
        Ok(())
    }

    /// Removes and returns the `n` oldest frames.
    pub fn pop(&mut self, n: usize) -> Result<Tensor> {
        let held = self
            .frames
            .take()
            .ok_or_else(|| Error::Input("frame queue: nothing queued".into()))?;
        let len = held.dim(1)?;
        if n > len {
            return Err(Error::Input(format!(
                "frame queue: {n} frames requested, {len} queued"
            )));
        }
        if n < len {
            self.frames = Some(held.narrow(1, n, len - n)?.copy()?);
            return Ok(held.narrow(1, 0, n)?);
        }
        Ok(held)
    }

    /// Bytes held between calls.
    pub fn held_bytes(&self) -> usize {
        self.frames.as_ref().map_or(0, tensor_bytes)
    }
}

/// `count` copies of frame `index` of `[B, T, C, H, W]`.
fn repeat_frame(x: &Tensor, index: usize, count: usize) -> Result<Tensor> {
    let frame = x.narrow(1, index, 1)?;
    Ok(frame.repeat((1, count, 1, 1, 1))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx2::video_vae::config::PaddingMode;
    use crate::ltx2::video_vae::conv::UNBOUNDED_SCRATCH;
    use candle_core::{DType, Device};

    #[test]
    fn streamed_conv_equals_whole_conv() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (1, 7, 2, 4, 4), &dev).unwrap();
        let w = Tensor::randn(0f32, 1., (3, 2, 3, 3, 3), &dev).unwrap();
        let vb = candle_nn::VarBuilder::from_tensors(
            [
                ("conv.weight".to_string(), w),
                (
                    "conv.bias".to_string(),
                    Tensor::zeros(3, DType::F32, &dev).unwrap(),
                ),
            ]
            .into_iter()
            .collect(),
            DType::F32,
            &dev,
        );
        let conv = CausalConv3d::new(2, 3, 3, [1, 1, 1], PaddingMode::Zeros, vb).unwrap();
        for causal in [true, false] {
            let whole = conv.forward(&x, causal, UNBOUNDED_SCRATCH).unwrap();
            assert_eq!(whole.dim(1).unwrap(), 7);
            for chunk in [1, 2, 3] {
                let mut stream = ConvStream::new(causal);
                let mut outs = Vec::new();
                let mut start = 0;
                while start < 7 {
                    let len = chunk.min(7 - start);
                    let last = start + len == 7;
                    if let Some(y) = stream
                        .push(&conv, Some(x.narrow(1, start, len).unwrap()), last, 1)
                        .unwrap()
                    {
                        outs.push(y);
                    }
                    start += len;
                }
                let streamed = Tensor::cat(&outs, 1).unwrap();
                let diff = (streamed - &whole)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap();
                assert_eq!(
                    diff.to_scalar::<f32>().unwrap(),
                    0.0,
                    "causal {causal} chunk {chunk}"
                );
            }
        }
    }
}
