//! Rotary position embeddings as ltx-core computes them (`rope.py`).
//!
//! Positions are `[B, n_axes, T, 2]` token bounds (start, end) in physical units (video:
//! seconds, pixels, pixels; audio: seconds). Each axis `i` is normalised by `max_pos[i]`, mapped
//! to `[-1, 1]` and multiplied by a frequency grid `θ^linspace(0, 1, n) · π/2` with
//! `n = dim / (2·n_axes)`; frequencies are ordered (freq, axis) and left-padded with identity
//! rotations up to `dim/2` (split) or `dim` (interleaved). The grid is computed in f64 and
//! rounded to f32 ("float64" precision) or in f32; everything after it runs in f32 on the device,
//! like the reference, and cos/sin are finally cast to the working dtype.

use candle_core::{D, DType, Device, Tensor};

use super::config::RopeType;
use crate::{Error, Result};

/// Everything needed to turn positions into rotations.
#[derive(Debug, Clone, Copy)]
pub struct RopeSpec<'a> {
    /// Rotated width (attention inner dim).
    pub dim: usize,
    /// Heads the width splits into (split RoPE only).
    pub heads: usize,
    /// RoPE base frequency.
    pub theta: f64,
    /// Normalisation per position axis.
    pub max_pos: &'a [f64],
    /// Use the middle of each token's bounds (else the start).
    pub use_middle: bool,
    /// Channel pairing.
    pub rope_type: RopeType,
    /// Compute the frequency grid in f64.
    pub double_precision: bool,
}

/// Precomputed rotations for one sequence.
#[derive(Debug, Clone)]
pub enum Rope {
    /// Split pairing; `cos`/`sin` are `[B, T, H, dim/(2H)]`.
    Split {
        /// cos of the angles.
        cos: Tensor,
        /// sin of the angles.
        sin: Tensor,
    },
    /// Interleaved pairing; `cos`/`sin` are `[B, T, dim]`.
    Interleaved {
        /// cos of the angles (each repeated twice).
        cos: Tensor,
        /// sin of the angles (each repeated twice).
        sin: Tensor,
    },
}

/// The frequency grid `θ^linspace(0, 1, n) · π/2` as f32 (numpy's linspace when `double`).
pub fn frequency_grid(theta: f64, n: usize, double: bool) -> Vec<f32> {
    let step = if n > 1 { 1.0 / (n - 1) as f64 } else { 0.0 };
    (0..n)
        .map(|i| {
            let x = if n > 1 && i == n - 1 {
                1.0
            } else {
                i as f64 * step
            };
            if double {
                (theta.powf(x) * std::f64::consts::PI / 2.0) as f32
            } else {
                let p = (theta as f32).powf(x as f32);
                p * std::f32::consts::PI / 2.0
            }
        })
        .collect()
}

impl Rope {
    /// Computes the rotations for `positions` `[B, n_axes, T, 2]` (or `[B, n_axes, T]`).
    pub fn new(positions: &Tensor, spec: &RopeSpec, out_dtype: DType) -> Result<Self> {
        let freqs = angles(positions, spec)?;
        let (b, t, n_freqs) = freqs.dims3()?;
        let cos = freqs.cos()?;
        let sin = freqs.sin()?;
        match spec.rope_type {
            RopeType::Split => {
                let half = spec.dim / 2;
                if n_freqs > half || spec.heads == 0 || !half.is_multiple_of(spec.heads) {
                    return Err(Error::Input(format!(
                        "rope: {n_freqs} frequencies do not fit {} heads of width {}",
                        spec.heads, spec.dim
                    )));
                }
                let pad = half - n_freqs;
                let shape = (b, t, spec.heads, half / spec.heads);
                let cos = pad_front(&cos, pad, 1.0)?.reshape(shape)?;
                let sin = pad_front(&sin, pad, 0.0)?.reshape(shape)?;
                Ok(Rope::Split {
                    cos: cos.to_dtype(out_dtype)?,
                    sin: sin.to_dtype(out_dtype)?,
                })
            }
            RopeType::Interleaved => {
                let pad = spec.dim - 2 * n_freqs;
                let cos = pad_front(&repeat_pairs(&cos)?, pad, 1.0)?;
                let sin = pad_front(&repeat_pairs(&sin)?, pad, 0.0)?;
                Ok(Rope::Interleaved {
                    cos: cos.to_dtype(out_dtype)?,
                    sin: sin.to_dtype(out_dtype)?,
                })
            }
        }
    }

    /// Rotates `x` `[B, T, dim]` (one fused kernel where [`kernels::fused_on`] holds, candle's
    /// ops elsewhere).
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        if kernels::fused_on(x.device()) {
            return Ok(match self {
                Rope::Split { cos, sin } => kernels::rope_split(x, cos, sin)?,
                Rope::Interleaved { cos, sin } => kernels::rope_interleaved(x, cos, sin)?,
            });
        }
        let (b, t, dim) = x.dims3()?;
        match self {
            Rope::Split { cos, sin } => {
                let (_, _, heads, half) = cos.dims4()?;
                let xs = x.reshape((b, t, heads, 2, half))?;
                let x1 = xs.narrow(3, 0, 1)?;
                let x2 = xs.narrow(3, 1, 1)?;
                let c = cos.unsqueeze(3)?;
                let s = sin.unsqueeze(3)?;
                let o1 = (x1.broadcast_mul(&c)? - x2.broadcast_mul(&s)?)?;
                let o2 = (x2.broadcast_mul(&c)? + x1.broadcast_mul(&s)?)?;
                Ok(Tensor::cat(&[o1, o2], 3)?.reshape((b, t, dim))?)
            }
            Rope::Interleaved { cos, sin } => {
                let xs = x.reshape((b, t, dim / 2, 2))?;
                let x1 = xs.narrow(3, 0, 1)?;
                let x2 = xs.narrow(3, 1, 1)?;
                let rotated = Tensor::cat(&[x2.neg()?, x1], 3)?.reshape((b, t, dim))?;
                Ok((x.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?)?)
            }
        }
    }

    /// `(cos, sin)` in ltx-core's layout: `[B, H, T, dim/(2H)]` (split) or `[B, T, dim]`.
    pub fn reference_layout(&self) -> Result<(Tensor, Tensor)> {
        match self {
            Rope::Split { cos, sin } => Ok((cos.transpose(1, 2)?, sin.transpose(1, 2)?)),
            Rope::Interleaved { cos, sin } => Ok((cos.clone(), sin.clone())),
        }
    }
}

/// Angles `[B, T, n·n_axes]` ordered (frequency, axis), in f32.
fn angles(positions: &Tensor, spec: &RopeSpec) -> Result<Tensor> {
    let positions = positions.to_dtype(DType::F32)?;
    let grid = match positions.rank() {
        4 if spec.use_middle => {
            let start = positions.narrow(3, 0, 1)?.squeeze(3)?;
            let end = positions.narrow(3, 1, 1)?.squeeze(3)?;
            ((start + end)? / 2.0)?
        }
        4 => positions.narrow(3, 0, 1)?.squeeze(3)?,
        3 => positions,
        r => return Err(Error::Input(format!("rope: positions of rank {r}"))),
    };
    let (_, n_axes, _) = grid.dims3()?;
    if n_axes != spec.max_pos.len() {
        return Err(Error::Input(format!(
            "rope: {n_axes} position axes but {} max_pos values",
            spec.max_pos.len()
        )));
    }
    let device = grid.device();
    let max_pos = f32_vector(spec.max_pos, device)?.reshape((1, n_axes, 1))?;
    // [B, A, T] -> [B, T, A] fractions in [-1, 1]
    let frac = grid.broadcast_div(&max_pos)?.transpose(1, 2)?;
    let frac = frac.affine(2.0, -1.0)?;
    let n = spec.dim / (2 * n_axes);
    let grid_f = frequency_grid(spec.theta, n, spec.double_precision);
    let indices = Tensor::from_vec(grid_f, n, device)?;
    // [B, T, A, n] -> [B, T, n, A] -> [B, T, n·A]
    let f = frac.unsqueeze(D::Minus1)?.broadcast_mul(&indices)?;
    let (b, t, a, n) = f.dims4()?;
    Ok(f.transpose(2, 3)?.reshape((b, t, n * a))?)
}

fn f32_vector(values: &[f64], device: &Device) -> Result<Tensor> {
    let v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
    Ok(Tensor::from_vec(v, values.len(), device)?)
}

/// Prepends `pad` columns of `value` to `[B, T, F]`.
fn pad_front(x: &Tensor, pad: usize, value: f64) -> Result<Tensor> {
    if pad == 0 {
        return Ok(x.clone());
    }
    let (b, t, _) = x.dims3()?;
    let fill = (Tensor::ones((b, t, pad), x.dtype(), x.device())? * value)?;
    Ok(Tensor::cat(&[fill, x.clone()], 2)?)
}

/// `[B, T, F]` -> `[B, T, 2F]` with every column repeated twice in place.
fn repeat_pairs(x: &Tensor) -> Result<Tensor> {
    let (b, t, f) = x.dims3()?;
    Ok(x.unsqueeze(3)?
        .broadcast_as((b, t, f, 2))?
        .reshape((b, t, 2 * f))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rope_type: RopeType, max_pos: &[f64]) -> RopeSpec<'_> {
        RopeSpec {
            dim: 8,
            heads: 2,
            theta: 10000.0,
            max_pos,
            use_middle: true,
            rope_type,
            double_precision: true,
        }
    }

    #[test]
    fn frequency_grid_spans_one_to_theta() {
        let g = frequency_grid(10000.0, 3, true);
        let h = std::f32::consts::FRAC_PI_2;
        assert!((g[0] - h).abs() < 1e-6);
        assert!((g[1] - 100.0 * h).abs() < 1e-3);
        assert!((g[2] - 10000.0 * h).abs() < 1e-1);
    }

    #[test]
    fn split_rope_rotates_pairs_half_a_head_apart_and_preserves_norm() {
        let dev = Device::Cpu;
        // one axis, middle position = max_pos -> fraction 1 -> angle = grid
        let pos = Tensor::new(&[[[[1f32, 3.0]]]], &dev).unwrap();
        let rope = Rope::new(&pos, &spec(RopeType::Split, &[2.0]), DType::F32).unwrap();
        let x = Tensor::new(&[[[1f32, 0., 0., 0., 0., 0., 0., 0.]]], &dev).unwrap();
        let y = rope.apply(&x).unwrap().flatten_all().unwrap();
        let y = y.to_vec1::<f32>().unwrap();
        // 4 frequencies of one axis fill dim/2 = 4 (no padding); head 0 pairs channels 0 and 2
        let norm: f32 = y.iter().map(|v| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-5);
        let g = frequency_grid(10000.0, 4, true);
        assert!((y[0] - g[0].cos()).abs() < 1e-5);
        assert!((y[2] - g[0].sin()).abs() < 1e-5);
    }

    #[test]
    fn interleaved_rope_pads_with_identity() {
        let dev = Device::Cpu;
        let pos = Tensor::new(&[[[[0f32, 0.0]], [[0.0, 0.0]], [[0.0, 0.0]]]], &dev).unwrap();
        let s = RopeSpec {
            dim: 8,
            ..spec(RopeType::Interleaved, &[20.0, 2048.0, 2048.0])
        };
        let rope = Rope::new(&pos, &s, DType::F32).unwrap();
        let (cos, _) = rope.reference_layout().unwrap();
        let cos = cos.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // 8 % 6 = 2 identity columns first, then 3 angles of -grid[0] repeated twice
        assert_eq!(&cos[..2], &[1.0, 1.0]);
        assert!((cos[2] - cos[3]).abs() == 0.0);
    }
}
