//! Small tensor helpers of the transformer: parameter-free norms and the sinusoidal timestep
//! embedding.

use candle_core::{DType, Device, Tensor};

use crate::Result;

/// RMS norm over the last dimension without a weight (`torch.nn.functional.rms_norm(x, eps)`).
/// Half-precision inputs are normalised in f32 and rounded back.
pub fn rms_norm(x: &Tensor, eps: f64) -> Result<Tensor> {
    let ones = Tensor::ones(x.dim(candle_core::D::Minus1)?, x.dtype(), x.device())?;
    Ok(candle_nn::ops::rms_norm(
        &x.contiguous()?,
        &ones,
        eps as f32,
    )?)
}

/// RMS norm over the last dimension with a learned weight (`torch.nn.RMSNorm`).
pub fn rms_norm_weighted(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    Ok(candle_nn::ops::rms_norm(
        &x.contiguous()?,
        weight,
        eps as f32,
    )?)
}

/// `rms_norm(x) · (1 + scale) + shift` (AdaLN-modulated RMS norm); `scale`/`shift` broadcast
/// against `x` `[B, T, D]`. On devices where [`kernels::fused_on`] holds (CUDA) it is one fused
/// kernel computing in f32; elsewhere candle's ops as before.
pub fn rms_norm_modulate(x: &Tensor, scale: &Tensor, shift: &Tensor, eps: f64) -> Result<Tensor> {
    if kernels::fused_on(x.device()) {
        return Ok(kernels::rms_norm_modulate(x, scale, shift, eps)?);
    }
    modulate(&rms_norm(x, eps)?, scale, shift)
}

/// `x · (1 + scale) + shift`.
pub fn modulate(x: &Tensor, scale: &Tensor, shift: &Tensor) -> Result<Tensor> {
    Ok(x.broadcast_mul(&(scale + 1.0)?)?.broadcast_add(shift)?)
}

/// `x + y · gate` (gated residual); `gate` broadcasts against `x` `[B, T, D]`. One fused kernel
/// where [`kernels::fused_on`] holds, candle's ops elsewhere.
pub fn add_gated(x: &Tensor, y: &Tensor, gate: &Tensor) -> Result<Tensor> {
    if kernels::fused_on(x.device()) {
        return Ok(kernels::add_gated(x, y, gate)?);
    }
    Ok((x + y.broadcast_mul(gate)?)?)
}

/// Layer norm over the last dimension without affine parameters.
pub fn layer_norm(x: &Tensor, eps: f64) -> Result<Tensor> {
    let d = x.dim(candle_core::D::Minus1)?;
    let ones = Tensor::ones(d, x.dtype(), x.device())?;
    let zeros = Tensor::zeros(d, x.dtype(), x.device())?;
    Ok(candle_nn::ops::layer_norm(
        &x.contiguous()?,
        &ones,
        &zeros,
        eps as f32,
    )?)
}

/// Sinusoidal embedding of `timesteps` `[N]` (f32) into `[N, dim]` f32, `[cos | sin]` order
/// (ltx-core's `get_timestep_embedding` with `flip_sin_to_cos=True`, `downscale_freq_shift=0`,
/// `max_period=10000`), computed in f32 as the reference does.
pub fn timestep_embedding(timesteps: &Tensor, dim: usize) -> Result<Tensor> {
    let half = dim / 2;
    let device = timesteps.device();
    let freqs = half_frequencies(half, device)?;
    let args = timesteps
        .to_dtype(DType::F32)?
        .unsqueeze(1)?
        .broadcast_mul(&freqs.unsqueeze(0)?)?;
    let emb = Tensor::cat(&[args.cos()?, args.sin()?], 1)?;
    if dim % 2 == 1 {
        return Ok(emb.pad_with_zeros(1, 0, 1)?);
    }
    Ok(emb)
}

/// `exp(-ln(10000) · i / half)` for `i < half`, rounded at each step like the f32 reference.
fn half_frequencies(half: usize, device: &Device) -> Result<Tensor> {
    let log_period = -(10000f64.ln()) as f32;
    let values: Vec<f32> = (0..half)
        .map(|i| ((log_period * i as f32) / half as f32).exp())
        .collect();
    Ok(Tensor::from_vec(values, half, device)?)
}

/// `denoised = latent - velocity · timesteps`, computed in f32 and returned in the latent dtype
/// (ltx-core's `to_denoised`). `timesteps` broadcasts against the latent (`[B, T, 1]`).
pub fn to_denoised(latent: &Tensor, velocity: &Tensor, timesteps: &Tensor) -> Result<Tensor> {
    let v = velocity
        .to_dtype(DType::F32)?
        .broadcast_mul(&timesteps.to_dtype(DType::F32)?)?;
    let out = latent.to_dtype(DType::F32)?.broadcast_sub(&v)?;
    Ok(out.to_dtype(latent.dtype())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestep_embedding_starts_with_cos_and_matches_the_formula() {
        let t = Tensor::new(&[0f32, 700.0], &Device::Cpu).unwrap();
        let e = timestep_embedding(&t, 8).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(e[0], [1., 1., 1., 1., 0., 0., 0., 0.]);
        let f1 = (-(10000f64.ln()) / 4.0).exp();
        assert!((e[1][1] as f64 - (700.0 * f1).cos()).abs() < 1e-3);
        assert!((e[1][5] as f64 - (700.0 * f1).sin()).abs() < 1e-3);
    }

    #[test]
    fn norms_normalise_the_last_dimension() {
        let x = Tensor::new(&[[3f32, 4.0]], &Device::Cpu).unwrap();
        let r = rms_norm(&x, 0.0).unwrap().to_vec2::<f32>().unwrap();
        let rms = (12.5f32).sqrt();
        assert!((r[0][0] - 3.0 / rms).abs() < 1e-6);
        let l = layer_norm(&x, 0.0).unwrap().to_vec2::<f32>().unwrap();
        assert!((l[0][0] + 1.0).abs() < 1e-6 && (l[0][1] - 1.0).abs() < 1e-6);
    }
}
