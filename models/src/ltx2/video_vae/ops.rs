//! Parameter-free VAE ops on frames-major `[B, T, C, H, W]` tensors, the per-channel latent
//! statistics, and the timestep embedder of the timestep-conditioned decoder.
//!
//! Channel orders follow ltx-core's einops patterns exactly: patchify packs
//! `c (h q) (w r) -> (c r q)` (width offset before height offset), space-to-depth and
//! depth-to-space use `(c p1 p2 p3)` with `p1` over time.

use candle_core::{D, DType, Tensor};
use candle_nn::VarBuilder;

use super::conv::linear;

use crate::{Error, Result};

/// ltx-core's `PixelNorm` for the VAE (`eps = 1e-8`): RMS over channels, per voxel.
pub const PIXEL_NORM_EPS: f64 = 1e-8;

/// `x / sqrt(mean_c(x^2) + eps)` over the channel dim of `[B, T, C, H, W]`.
pub fn pixel_norm(x: &Tensor, eps: f64) -> Result<Tensor> {
    let rms = (x.sqr()?.mean_keepdim(D::Minus(3))? + eps)?.sqrt()?;
    Ok(x.broadcast_div(&rms)?)
}

/// `(x * (1 + scale) + shift)` with per-channel `[B, 1, C, 1, 1]` scale and shift.
pub fn modulate(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Result<Tensor> {
    Ok(x.broadcast_mul(&(scale + 1.0)?)?.broadcast_add(shift)?)
}

/// Space-to-depth over width/height before the encoder: `[B, T, C, H*p, W*p]` ->
/// `[B, T, C*p*p, H, W]`, channel order `(c r q)` (r: width offset, q: height offset).
pub fn patchify(x: &Tensor, p: usize) -> Result<Tensor> {
    if p == 1 {
        return Ok(x.clone());
    }
    let (b, t, c, hp, wp) = x.dims5()?;
    if hp % p != 0 || wp % p != 0 {
        return Err(Error::Input(format!(
            "patchify: {hp}x{wp} is not divisible by the patch size {p}"
        )));
    }
    let (h, w) = (hp / p, wp / p);
    let x = x
        .reshape(vec![b, t, c, h, p, w, p])?
        .permute([0, 1, 2, 6, 4, 3, 5])?;
    Ok(x.reshape((b, t, c * p * p, h, w))?)
}

/// Inverse of [`patchify`]: `[B, T, C*p*p, H, W]` -> `[B, T, C, H*p, W*p]`.
pub fn unpatchify(x: &Tensor, p: usize) -> Result<Tensor> {
    if p == 1 {
        return Ok(x.clone());
    }
    let (b, t, cpp, h, w) = x.dims5()?;
    let c = cpp / (p * p);
    let x = x
        .reshape(vec![b, t, c, p, p, h, w])?
        .permute([0, 1, 2, 5, 4, 6, 3])?;
    Ok(x.reshape((b, t, c, h * p, w * p))?)
}

/// `b c (d p1) (h p2) (w p3) -> b (c p1 p2 p3) d h w`, frames-major:
/// `[B, D*p1, C, H*p2, W*p3]` -> `[B, D, C*p1*p2*p3, H, W]`.
pub fn space_to_depth(x: &Tensor, stride: [usize; 3]) -> Result<Tensor> {
    let [p1, p2, p3] = stride;
    let (b, dp, c, hp, wp) = x.dims5()?;
    if dp % p1 != 0 || hp % p2 != 0 || wp % p3 != 0 {
        return Err(Error::Input(format!(
            "space-to-depth: {dp}x{hp}x{wp} is not divisible by {stride:?}"
        )));
    }
    let (d, h, w) = (dp / p1, hp / p2, wp / p3);
    let x = x
        .reshape(vec![b, d, p1, c, h, p2, w, p3])?
        .permute([0, 1, 3, 2, 5, 7, 4, 6])?;
    Ok(x.reshape((b, d, c * p1 * p2 * p3, h, w))?)
}

/// `b (c p1 p2 p3) d h w -> b c (d p1) (h p2) (w p3)`, frames-major:
/// `[B, D, C*p1*p2*p3, H, W]` -> `[B, D*p1, C, H*p2, W*p3]`.
pub fn depth_to_space(x: &Tensor, stride: [usize; 3]) -> Result<Tensor> {
    let [p1, p2, p3] = stride;
    let (b, d, cp, h, w) = x.dims5()?;
    let c = cp / (p1 * p2 * p3);
    let x = x
        .reshape(vec![b, d, c, p1, p2, p3, h, w])?
        .permute([0, 1, 3, 2, 6, 4, 7, 5])?;
    Ok(x.reshape((b, d * p1, c, h * p2, w * p3))?)
}

/// `[B, C, T, H, W]` (reference layout) -> `[B, T, C, H, W]` (frames-major), contiguous.
pub fn to_frames(x: &Tensor) -> Result<Tensor> {
    Ok(x.permute((0, 2, 1, 3, 4))?.contiguous()?)
}

/// `[B, T, C, H, W]` -> `[B, C, T, H, W]`, contiguous.
pub fn from_frames(x: &Tensor) -> Result<Tensor> {
    Ok(x.permute((0, 2, 1, 3, 4))?.contiguous()?)
}

/// GroupNorm over frames-major `[B, T, C, H, W]`: statistics per (batch, group) over the
/// group's channels and all of T, H, W (as `nn.GroupNorm` on `[B, C, T, H, W]`), computed in
/// float32; `weight`/`bias` are `[C]`.
pub fn group_norm(
    x: &Tensor,
    groups: usize,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    let (b, t, c, h, w) = x.dims5()?;
    if c % groups != 0 {
        return Err(Error::Input(format!(
            "group norm: {c} channels are not divisible into {groups} groups"
        )));
    }
    let dtype = x.dtype();
    let xs = x
        .to_dtype(DType::F32)?
        .reshape(vec![b, t, groups, c / groups, h, w])?;
    let mean = xs.mean_keepdim(vec![1, 3, 4, 5])?;
    let centered = xs.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(vec![1, 3, 4, 5])?;
    let normed = centered.broadcast_div(&(var + eps)?.sqrt()?)?;
    let normed = normed.reshape((b, t, c, h, w))?.to_dtype(dtype)?;
    let weight = weight.reshape((1, 1, c, 1, 1))?;
    let bias = bias.reshape((1, 1, c, 1, 1))?;
    Ok(normed.broadcast_mul(&weight)?.broadcast_add(&bias)?)
}

/// ltx-core's `PerChannelStatistics`: the dataset mean and std of each latent channel.
/// Keys `mean-of-means`, `std-of-means`.
#[derive(Debug, Clone)]
pub struct LatentStats {
    mean: Tensor,
    std: Tensor,
}

impl LatentStats {
    /// Loads the statistics of `channels` latent channels.
    pub fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            mean: vb.get(channels, "mean-of-means")?,
            std: vb.get(channels, "std-of-means")?,
        })
    }

    fn shaped(&self, x: &Tensor, channel_dim: usize) -> Result<(Tensor, Tensor)> {
        let mut shape = vec![1; x.rank()];
        shape[channel_dim] = self.mean.dim(0)?;
        let cast = |t: &Tensor| -> Result<Tensor> {
            Ok(t.to_dtype(x.dtype())?
                .to_device(x.device())?
                .reshape(shape.clone())?)
        };
        Ok((cast(&self.mean)?, cast(&self.std)?))
    }

    /// `(x - mean) / std` with the channels on `channel_dim`.
    pub fn normalize(&self, x: &Tensor, channel_dim: usize) -> Result<Tensor> {
        let (mean, std) = self.shaped(x, channel_dim)?;
        Ok(x.broadcast_sub(&mean)?.broadcast_div(&std)?)
    }

    /// `x * std + mean` with the channels on `channel_dim`.
    pub fn un_normalize(&self, x: &Tensor, channel_dim: usize) -> Result<Tensor> {
        let (mean, std) = self.shaped(x, channel_dim)?;
        Ok(x.broadcast_mul(&std)?.broadcast_add(&mean)?)
    }
}

/// Width of the sinusoidal timestep projection (`Timesteps(num_channels=256)`).
pub const TIMESTEP_PROJ_DIM: usize = 256;

/// Sinusoidal embedding of `[N]` timesteps (float32) -> `[N, dim]`, cosines first
/// (`flip_sin_to_cos=True`, `downscale_freq_shift=0`, max period 10000).
pub fn timestep_sinusoid(t: &Tensor, dim: usize) -> Result<Tensor> {
    let half = dim / 2;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(10000f64.ln()) * i as f64 / half as f64).exp() as f32)
        .collect();
    let freqs = Tensor::new(freqs.as_slice(), t.device())?.unsqueeze(0)?;
    let args = t
        .to_dtype(DType::F32)?
        .unsqueeze(1)?
        .broadcast_mul(&freqs)?;
    let emb = Tensor::cat(&[args.cos()?, args.sin()?], 1)?;
    if dim % 2 == 1 {
        return Ok(emb.pad_with_zeros(1, 0, 1)?);
    }
    Ok(emb)
}

/// `PixArtAlphaCombinedTimestepSizeEmbeddings` without size embedding: sinusoid(256) ->
/// `timestep_embedder.linear_1` -> SiLU -> `timestep_embedder.linear_2`.
#[derive(Debug, Clone)]
pub struct TimestepEmbedder {
    linear_1: (Tensor, Tensor),
    linear_2: (Tensor, Tensor),
}

impl TimestepEmbedder {
    /// Loads an embedder producing `dim` values (`vb` is the `*_embedder` prefix).
    pub fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        let vb = vb.pp("timestep_embedder");
        let linear = |cin: usize, name: &str| -> Result<(Tensor, Tensor)> {
            let vb = vb.pp(name);
            Ok((vb.get((dim, cin), "weight")?, vb.get(dim, "bias")?))
        };
        Ok(Self {
            linear_1: linear(TIMESTEP_PROJ_DIM, "linear_1")?,
            linear_2: linear(dim, "linear_2")?,
        })
    }

    /// `[N]` scaled timesteps -> `[N, dim]` in `dtype`.
    pub fn forward(&self, t: &Tensor, dtype: DType) -> Result<Tensor> {
        let proj = timestep_sinusoid(t, TIMESTEP_PROJ_DIM)?.to_dtype(dtype)?;
        let (w1, b1) = &self.linear_1;
        let (w2, b2) = &self.linear_2;
        let h = candle_nn::ops::silu(&linear(&proj, w1, b1)?)?;
        linear(&h, w2, b2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn arange(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        Tensor::arange(0f32, n as f32, &Device::Cpu)
            .unwrap()
            .reshape(shape)
            .unwrap()
    }

    #[test]
    fn patchify_orders_width_offset_before_height_offset() {
        // one channel, 2x2 patch: input pixel (y, x) has value 10*y + x
        let x = Tensor::new(&[[0f32, 1.], [10., 11.]], &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 1, 2, 2))
            .unwrap();
        let p = patchify(&x, 2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        // channel index = r*2 + q with r the width offset, q the height offset
        assert_eq!(p, vec![0., 10., 1., 11.]);
        let back = unpatchify(&patchify(&x, 2).unwrap(), 2).unwrap();
        assert_eq!(
            back.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![0., 1., 10., 11.]
        );
    }

    #[test]
    fn depth_to_space_inverts_space_to_depth() {
        let x = arange(&[1, 4, 3, 4, 6]);
        let stride = [2, 2, 2];
        let packed = space_to_depth(&x, stride).unwrap();
        assert_eq!(packed.dims(), &[1, 2, 24, 2, 3]);
        let back = depth_to_space(&packed, stride).unwrap();
        let diff = (back - &x).unwrap().abs().unwrap().sum_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }

    #[test]
    fn space_to_depth_channel_order_is_c_p1_p2_p3() {
        // [B=1, T=2, C=1, H=1, W=1] with stride (2,1,1): frames become channels (c p1)
        let x = Tensor::new(&[5f32, 7.], &Device::Cpu)
            .unwrap()
            .reshape((1, 2, 1, 1, 1))
            .unwrap();
        let p = space_to_depth(&x, [2, 1, 1]).unwrap();
        assert_eq!(
            p.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![5., 7.]
        );
    }
}
