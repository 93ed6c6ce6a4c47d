//! Per-channel latent statistics (`audio_vae.per_channel_statistics.{mean-of-means,std-of-means}`)
//! applied in the transformer's token layout `[B, T, C*F]`.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::{Error, Result};

/// Dataset statistics that map raw VAE latents to the normalised latents the transformer sees.
#[derive(Debug, Clone)]
pub struct PerChannelStatistics {
    mean: Tensor,
    std: Tensor,
}

impl PerChannelStatistics {
    /// Loads both vectors of length `channels` (the VAE's base `ch`, see fixture quirk 3).
    pub fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            mean: vb.get(channels, "mean-of-means")?,
            std: vb.get(channels, "std-of-means")?,
        })
    }

    /// `(x - mean) / std` on a `[B, C, T, F]` latent (statistics indexed by `c * F + f`).
    pub fn normalize(&self, latent: &Tensor) -> Result<Tensor> {
        let (tokens, shape) = self.to_tokens(latent)?;
        let mean = self.mean.to_dtype(tokens.dtype())?;
        let std = self.std.to_dtype(tokens.dtype())?;
        let out = tokens.broadcast_sub(&mean)?.broadcast_div(&std)?;
        from_tokens(&out, shape)
    }

    /// `x * std + mean` on a `[B, C, T, F]` latent.
    pub fn un_normalize(&self, latent: &Tensor) -> Result<Tensor> {
        let (tokens, shape) = self.to_tokens(latent)?;
        let mean = self.mean.to_dtype(tokens.dtype())?;
        let std = self.std.to_dtype(tokens.dtype())?;
        let out = tokens.broadcast_mul(&std)?.broadcast_add(&mean)?;
        from_tokens(&out, shape)
    }

    fn to_tokens(&self, latent: &Tensor) -> Result<(Tensor, (usize, usize, usize, usize))> {
        let shape = latent.dims4()?;
        let (_, c, _, f) = shape;
        if c * f != self.mean.dim(0)? {
            return Err(Error::Input(format!(
                "audio latent {:?}: channels x bins = {} but the VAE statistics have {} entries",
                latent.dims(),
                c * f,
                self.mean.dim(0)?
            )));
        }
        Ok((patchify(latent)?, shape))
    }
}

/// `[B, C, T, F] -> [B, T, C*F]` (ltx-core's `AudioPatchifier.patchify`, the transformer's
/// audio token layout).
pub fn patchify(latent: &Tensor) -> Result<Tensor> {
    let (b, c, t, f) = latent.dims4()?;
    Ok(latent.permute((0, 2, 1, 3))?.reshape((b, t, c * f))?)
}

/// `[B, T, C*F] -> [B, C, T, F]` (inverse of [`patchify`]).
pub fn unpatchify(tokens: &Tensor, channels: usize, bins: usize) -> Result<Tensor> {
    let (b, t, cf) = tokens.dims3()?;
    if cf != channels * bins {
        return Err(Error::Input(format!(
            "audio tokens {:?} do not split into {channels} channels x {bins} bins",
            tokens.dims()
        )));
    }
    Ok(tokens
        .reshape((b, t, channels, bins))?
        .permute((0, 2, 1, 3))?
        .contiguous()?)
}

fn from_tokens(tokens: &Tensor, (_, c, _, f): (usize, usize, usize, usize)) -> Result<Tensor> {
    unpatchify(tokens, c, f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn patchify_round_trips() {
        let x = Tensor::arange(0f32, 48., &Device::Cpu)
            .unwrap()
            .reshape((1, 2, 4, 6))
            .unwrap();
        let t = patchify(&x).unwrap();
        assert_eq!(t.dims(), &[1, 4, 12]);
        // token 1 = time step 1: channel 0 bins then channel 1 bins
        let row: Vec<f32> = t.get(0).unwrap().get(1).unwrap().to_vec1().unwrap();
        assert_eq!(&row[..6], &[6., 7., 8., 9., 10., 11.]);
        assert_eq!(&row[6..], &[30., 31., 32., 33., 34., 35.]);
        let back = unpatchify(&t, 2, 6).unwrap();
        let diff = (back - &x).unwrap().abs().unwrap().sum_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }
}
