//! ComfyUI's k-diffusion samplers used by the LTX-2 templates, on rectified-flow sigmas
//! (LTX's `CONST` model sampling): `euler`, `euler_ancestral` (its RF variant) and
//! `gradient_estimation`.
//!
//! A sampler drives a denoise function `(x, sigma) -> denoised` (the guided model's x0
//! prediction) over a sigma schedule. Scalar arithmetic is float32 in PyTorch's operation order,
//! so with a bit-exact model the trajectory is bit-identical to ComfyUI's on the CPU.

use candle_core::Tensor;

use super::noise::NoiseSource;
use crate::{Error, Result};

/// What a step reports to the progress callback (ComfyUI's callback dict).
#[derive(Debug)]
pub struct StepInfo<'a> {
    /// Step index, `0..steps`.
    pub step: usize,
    /// Number of steps (`sigmas.len() - 1`).
    pub steps: usize,
    /// Noise level of this step.
    pub sigma: f32,
    /// Noise level after this step.
    pub sigma_next: f32,
    /// The state the model was evaluated at.
    pub x: &'a Tensor,
    /// The model's denoised prediction at this step.
    pub denoised: &'a Tensor,
}

/// A sampler and its options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampler {
    /// `sample_euler` (no churn): `x += (x - denoised) / sigma * (sigma_next - sigma)`.
    Euler,
    /// `sample_euler_ancestral_RF`: step to `sigma_down` by x0 interpolation, then re-noise.
    EulerAncestral {
        /// Ancestral strength (0 = deterministic).
        eta: f64,
        /// Scale of the added noise.
        s_noise: f64,
    },
    /// `sample_gradient_estimation`: Euler plus `(ge_gamma - 1) * (d - d_prev) * dt`.
    GradientEstimation {
        /// Gradient-estimation gamma.
        ge_gamma: f64,
    },
}

impl Sampler {
    /// The sampler `KSamplerSelect` returns for `name`, with that function's defaults
    /// (euler_ancestral: eta 1, s_noise 1; gradient_estimation: gamma 2).
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "euler" => Ok(Self::Euler),
            "euler_ancestral" => Ok(Self::EulerAncestral {
                eta: 1.0,
                s_noise: 1.0,
            }),
            "gradient_estimation" => Ok(Self::GradientEstimation { ge_gamma: 2.0 }),
            other => Err(Error::Input(format!(
                "sampler {other:?} is not implemented"
            ))),
        }
    }

    /// The k-diffusion name of the sampler.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Euler => "euler",
            Self::EulerAncestral { .. } => "euler_ancestral",
            Self::GradientEstimation { .. } => "gradient_estimation",
        }
    }

    /// Whether the sampler draws noise during sampling.
    pub fn needs_noise(&self) -> bool {
        matches!(self, Self::EulerAncestral { eta, .. } if *eta > 0.0)
    }

    /// Runs the sampler from `x` (already at noise level `sigmas[0]`) and returns the final state.
    ///
    /// `noise` is required when [`Sampler::needs_noise`]. `on_step` sees every model evaluation.
    pub fn sample(
        &self,
        denoise: &mut dyn FnMut(&Tensor, f32) -> Result<Tensor>,
        x: Tensor,
        sigmas: &[f32],
        noise: Option<&mut dyn NoiseSource>,
        on_step: &mut dyn FnMut(&StepInfo) -> Result<()>,
    ) -> Result<Tensor> {
        let mut run = Run {
            denoise,
            on_step,
            sigmas,
        };
        match *self {
            Self::Euler => run.euler(x),
            Self::EulerAncestral { eta, s_noise } => {
                let noise = match noise {
                    Some(n) => Some(n),
                    None if eta > 0.0 => {
                        return Err(Error::Input(
                            "euler_ancestral with eta > 0 needs a noise source".into(),
                        ));
                    }
                    None => None,
                };
                run.euler_ancestral(x, eta as f32, s_noise as f32, noise)
            }
            Self::GradientEstimation { ge_gamma } => run.gradient_estimation(x, ge_gamma as f32),
        }
    }
}

/// The state shared by the sampler loops.
struct Run<'a, 'b> {
    denoise: &'a mut dyn FnMut(&Tensor, f32) -> Result<Tensor>,
    on_step: &'a mut dyn FnMut(&StepInfo) -> Result<()>,
    sigmas: &'b [f32],
}

impl Run<'_, '_> {
    fn steps(&self) -> usize {
        self.sigmas.len().saturating_sub(1)
    }

    /// Evaluates the model at step `i` and reports it.
    fn evaluate(&mut self, i: usize, x: &Tensor) -> Result<Tensor> {
        let sigma = self.sigmas[i];
        let denoised = (self.denoise)(x, sigma)?;
        let steps = self.steps();
        (self.on_step)(&StepInfo {
            step: i,
            steps,
            sigma,
            sigma_next: self.sigmas[i + 1],
            x,
            denoised: &denoised,
        })?;
        Ok(denoised)
    }

    fn euler(&mut self, mut x: Tensor) -> Result<Tensor> {
        for i in 0..self.steps() {
            let denoised = self.evaluate(i, &x)?;
            let (sigma, sigma_next) = (self.sigmas[i], self.sigmas[i + 1]);
            let d = to_d(&x, sigma, &denoised)?;
            x = (x + mul(&d, sigma_next - sigma)?)?;
        }
        Ok(x)
    }

    fn euler_ancestral(
        &mut self,
        mut x: Tensor,
        eta: f32,
        s_noise: f32,
        mut noise: Option<&mut dyn NoiseSource>,
    ) -> Result<Tensor> {
        for i in 0..self.steps() {
            let denoised = self.evaluate(i, &x)?;
            let (sigma, sigma_next) = (self.sigmas[i], self.sigmas[i + 1]);
            if sigma_next == 0.0 {
                x = denoised;
                continue;
            }
            let downstep_ratio = (sigma_next / sigma - 1.0) * eta + 1.0;
            let sigma_down = sigma_next * downstep_ratio;
            let alpha_next = 1.0 - sigma_next;
            let alpha_down = 1.0 - sigma_down;
            let renoise = (sigma_next * sigma_next
                - sigma_down * sigma_down * (alpha_next * alpha_next) / (alpha_down * alpha_down))
                .sqrt();
            let ratio = sigma_down / sigma;
            x = (mul(&x, ratio)? + mul(&denoised, 1.0 - ratio)?)?;
            if eta > 0.0
                && let Some(source) = noise.as_deref_mut()
            {
                let n = mul(&mul(&source.noise_like(&x)?, s_noise)?, renoise)?;
                x = (mul(&x, alpha_next / alpha_down)? + n)?;
            }
        }
        Ok(x)
    }

    fn gradient_estimation(&mut self, mut x: Tensor, ge_gamma: f32) -> Result<Tensor> {
        let mut old_d: Option<Tensor> = None;
        for i in 0..self.steps() {
            let denoised = self.evaluate(i, &x)?;
            let (sigma, sigma_next) = (self.sigmas[i], self.sigmas[i + 1]);
            let d = to_d(&x, sigma, &denoised)?;
            let dt = sigma_next - sigma;
            if sigma_next == 0.0 {
                x = denoised;
            } else {
                x = (x + mul(&d, dt)?)?;
                if let Some(prev) = &old_d {
                    let d_bar = mul(&(&d - prev)?, ge_gamma - 1.0)?;
                    x = (x + mul(&d_bar, dt)?)?;
                }
            }
            old_d = Some(d);
        }
        Ok(x)
    }
}

/// A float32 scalar as a 0-d tensor of `like`'s dtype and device (for exact elementwise ops).
pub(crate) fn scalar_like(value: f32, like: &Tensor) -> Result<Tensor> {
    Ok(Tensor::new(value, like.device())?.to_dtype(like.dtype())?)
}

/// `t * value` with IEEE multiplication in `t`'s dtype.
pub(crate) fn mul(t: &Tensor, value: f32) -> Result<Tensor> {
    Ok(t.broadcast_mul(&scalar_like(value, t)?)?)
}

/// `t / value` with IEEE division in `t`'s dtype.
pub(crate) fn div(t: &Tensor, value: f32) -> Result<Tensor> {
    Ok(t.broadcast_div(&scalar_like(value, t)?)?)
}

/// The ODE derivative `(x - denoised) / sigma`.
fn to_d(x: &Tensor, sigma: f32, denoised: &Tensor) -> Result<Tensor> {
    div(&(x - denoised)?, sigma)
}
