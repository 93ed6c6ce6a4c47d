//! Latent <-> token layout of LTX-2 (patch size 1): video `[B, C, F, H, W]` <-> `[B, F·H·W, C]`
//! (ltx-core's `VideoLatentPatchifier`), audio `[B, C, T, M]` <-> `[B, T, C·M]`
//! (`AudioPatchifier`: channels outer, mel bins inner).

use candle_core::Tensor;

use crate::Result;

/// Video latent `[B, C, F, H, W]` to tokens `[B, F·H·W, C]`.
pub fn video_to_tokens(latent: &Tensor) -> Result<Tensor> {
    let (b, c, f, h, w) = latent.dims5()?;
    Ok(latent
        .permute((0, 2, 3, 4, 1))?
        .reshape((b, f * h * w, c))?)
}

/// Tokens `[B, F·H·W, C]` back to a video latent `[B, C, F, H, W]`.
pub fn tokens_to_video(
    tokens: &Tensor,
    frames: usize,
    height: usize,
    width: usize,
) -> Result<Tensor> {
    let (b, _, c) = tokens.dims3()?;
    Ok(tokens
        .reshape((b, frames, height, width, c))?
        .permute((0, 4, 1, 2, 3))?
        .contiguous()?)
}

/// Audio latent `[B, C, T, M]` to tokens `[B, T, C·M]`.
pub fn audio_to_tokens(latent: &Tensor) -> Result<Tensor> {
    let (b, c, t, m) = latent.dims4()?;
    Ok(latent.permute((0, 2, 1, 3))?.reshape((b, t, c * m))?)
}

/// Tokens `[B, T, C·M]` back to an audio latent `[B, C, T, M]`.
pub fn tokens_to_audio(tokens: &Tensor, channels: usize, mel_bins: usize) -> Result<Tensor> {
    let (b, t, _) = tokens.dims3()?;
    Ok(tokens
        .reshape((b, t, channels, mel_bins))?
        .permute((0, 2, 1, 3))?
        .contiguous()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn round_trips_and_orders_tokens_frame_major() {
        let dev = Device::Cpu;
        let v = Tensor::arange(0f32, 12.0, &dev)
            .unwrap()
            .reshape((1, 2, 3, 2, 1))
            .unwrap();
        let t = video_to_tokens(&v).unwrap();
        assert_eq!(t.dims(), &[1, 6, 2]);
        // token 1 = frame 0, row 1; channel 1 is offset by F·H·W = 6
        assert_eq!(
            t.get(0).unwrap().get(1).unwrap().to_vec1::<f32>().unwrap(),
            [1.0, 7.0]
        );
        let back = tokens_to_video(&t, 3, 2, 1).unwrap();
        let diff = (back - &v).unwrap().abs().unwrap().sum_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
        let a = Tensor::zeros((1, 8, 5, 16), DType::F32, &dev).unwrap();
        let at = audio_to_tokens(&a).unwrap();
        assert_eq!(at.dims(), &[1, 5, 128]);
        assert_eq!(tokens_to_audio(&at, 8, 16).unwrap().dims(), &[1, 8, 5, 16]);
    }
}
