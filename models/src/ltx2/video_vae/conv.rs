//! 3-D convolution built from candle's conv2d, and the VAE's causal 3-D convolution.
//!
//! candle has no conv3d. Activations here are kept frames-major, `[B, T, C, H, W]`, so one
//! frame is a contiguous `[C, H, W]` image and a run of frames is a batch of images without a
//! copy. A `kt x kh x kw` convolution is then the sum over the `kt` temporal taps of a 2-D
//! convolution of the frames shifted by the tap, each tap a single batched conv2d (one GEMM on
//! every backend). Output frames are produced in groups so the conv2d scratch (im2col on CUDA)
//! stays under a cap; groups are written in place into the preallocated output.
//!
//! `CausalConv3d` pads time by repeating the first frame (`k-1` copies, causal) or the first and
//! last frames (`(k-1)/2` each, non-causal), and space with the configured [`PaddingMode`];
//! [`ConvStream`] runs it over a video in chunks.

use candle_core::{DType, Module, Tensor};
use candle_nn::VarBuilder;

use super::config::PaddingMode;
use super::stream::ConvStream;
use crate::{Error, Result};

/// No cap on the conv2d scratch: all output frames of a tap in one conv2d call.
pub const UNBOUNDED_SCRATCH: usize = usize::MAX;

/// Weights of a 3-D convolution with cubic kernel `k`, stride and symmetric spatial padding.
#[derive(Debug, Clone)]
pub struct Conv3d {
    /// One `[O, C, kh, kw]` kernel per temporal tap.
    taps: Vec<Tensor>,
    bias: Option<Tensor>,
    stride: [usize; 3],
    padding: PaddingMode,
    out_channels: usize,
    in_channels: usize,
    kernel: [usize; 3],
}

impl Conv3d {
    /// Loads `weight` `[O, C, kt, kh, kw]` and optional `bias` `[O]` from `vb`.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: [usize; 3],
        padding: PaddingMode,
        bias: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let weight = vb.get(
            (out_channels, in_channels, kernel, kernel, kernel),
            "weight",
        )?;
        let bias = if bias {
            Some(vb.get(out_channels, "bias")?)
        } else {
            None
        };
        Self::from_weights(weight, bias, stride, padding)
    }

    /// Builds the convolution from a `[O, C, kt, kh, kw]` weight.
    pub fn from_weights(
        weight: Tensor,
        bias: Option<Tensor>,
        stride: [usize; 3],
        padding: PaddingMode,
    ) -> Result<Self> {
        let (out_channels, in_channels, kt, kh, kw) = weight.dims5()?;
        if kh != kw || kh % 2 == 0 {
            return Err(Error::Checkpoint(format!(
                "conv3d: spatial kernel must be square and odd, got {kh}x{kw}"
            )));
        }
        let taps = (0..kt)
            .map(|t| weight.narrow(2, t, 1)?.squeeze(2)?.contiguous())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let bias = bias
            .map(|b| b.reshape((1, 1, out_channels, 1, 1)))
            .transpose()?;
        Ok(Self {
            taps,
            bias,
            stride,
            padding,
            out_channels,
            in_channels,
            kernel: [kt, kh, kw],
        })
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.out_channels
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.in_channels
    }

    /// Temporal kernel size.
    pub fn time_kernel(&self) -> usize {
        self.kernel[0]
    }

    /// Temporal stride.
    pub fn time_stride(&self) -> usize {
        self.stride[0]
    }

    /// Number of output frames for `frames` input frames (no temporal padding applied here).
    pub fn out_frames(&self, frames: usize) -> usize {
        if frames < self.kernel[0] {
            0
        } else {
            (frames - self.kernel[0]) / self.stride[0] + 1
        }
    }

    /// Bytes of conv2d scratch (the im2col matrix of CUDA's conv2d) per output frame of a
    /// `[B, _, C, H, W]` input.
    pub fn scratch_per_frame(&self, batch: usize, h: usize, w: usize, elem_bytes: usize) -> usize {
        let (h_out, w_out) = self.spatial_out(h, w);
        batch * h_out * w_out * self.in_channels * self.kernel[1] * self.kernel[2] * elem_bytes
    }

    /// Output height and width for an `h x w` input.
    pub fn spatial_out(&self, h: usize, w: usize) -> (usize, usize) {
        let pad = self.kernel[1] / 2;
        (
            (h + 2 * pad - self.kernel[1]) / self.stride[1] + 1,
            (w + 2 * pad - self.kernel[2]) / self.stride[2] + 1,
        )
    }

    /// Valid (unpadded) convolution over time, padded over space: `[B, T, C, H, W]` ->
    /// `[B, T', O, H', W']`. Output frames are computed in groups whose conv2d scratch stays
    /// within `scratch` bytes (at least one frame per group).
    pub fn forward_frames(&self, x: &Tensor, scratch: usize) -> Result<Tensor> {
        let (b, t, c, h, w) = x.dims5()?;
        if c != self.in_channels {
            return Err(Error::Input(format!(
                "conv3d: expected {} input channels, got {c}",
                self.in_channels
            )));
        }
        let t_out = self.out_frames(t);
        if t_out == 0 {
            return Err(Error::Input(format!(
                "conv3d: {t} frames are fewer than the temporal kernel {}",
                self.kernel[0]
            )));
        }
        let pad = self.kernel[1] / 2;
        let (x, conv_pad) = match self.padding {
            PaddingMode::Zeros => (x.clone(), pad),
            mode => (pad_spatial(x, pad, mode)?, 0),
        };
        let (h_out, w_out) = self.spatial_out(h, w);
        let per_frame = self
            .scratch_per_frame(b, h, w, x.dtype().size_in_bytes())
            .max(1);
        let group = (scratch / per_frame).clamp(1, t_out);
        if group >= t_out {
            return self.conv_group(&x, 0, t_out, conv_pad);
        }
        let out = Tensor::zeros(
            (b, t_out, self.out_channels, h_out, w_out),
            x.dtype(),
            x.device(),
        )?;
        let mut start = 0;
        while start < t_out {
            let len = group.min(t_out - start);
            let part = self.conv_group(&x, start, len, conv_pad)?;
            out.slice_set(&part, 1, start)?;
            start += len;
        }
        Ok(out)
    }

    /// Output frames `start..start+len` of the valid temporal convolution of padded `x`.
    fn conv_group(&self, x: &Tensor, start: usize, len: usize, pad: usize) -> Result<Tensor> {
        let (b, _, c, h, w) = x.dims5()?;
        let mut acc: Option<Tensor> = None;
        for (tap, kernel) in self.taps.iter().enumerate() {
            let frames = tap_frames(x, start * self.stride[0] + tap, len, self.stride[0])?;
            let images = frames.reshape((b * len, c, h, w))?;
            let y = conv2d_strided(&images, kernel, pad, self.stride[1], self.stride[2])?;
            acc = Some(match acc {
                None => y,
                Some(a) => (a + y)?,
            });
        }
        let acc = acc.ok_or_else(|| Error::Checkpoint("conv3d: empty temporal kernel".into()))?;
        let (_, o, ho, wo) = acc.dims4()?;
        let out = acc.reshape((b, len, o, ho, wo))?;
        Ok(match &self.bias {
            Some(bias) => out.broadcast_add(bias)?,
            None => out,
        })
    }
}

/// Frames `first, first+stride, ...` (`len` of them) of `[B, T, C, H, W]`, contiguous.
fn tap_frames(x: &Tensor, first: usize, len: usize, stride: usize) -> Result<Tensor> {
    if stride == 1 {
        return Ok(x.narrow(1, first, len)?.contiguous()?);
    }
    let ids: Vec<u32> = (0..len).map(|i| (first + i * stride) as u32).collect();
    let ids = Tensor::new(ids.as_slice(), x.device())?;
    Ok(x.index_select(&ids, 1)?.contiguous()?)
}

/// conv2d with possibly different strides over height and width (only equal strides reach
/// candle's conv2d; unequal ones subsample a stride-1 result).
fn conv2d_strided(
    x: &Tensor,
    kernel: &Tensor,
    pad: usize,
    stride_h: usize,
    stride_w: usize,
) -> Result<Tensor> {
    if stride_h == stride_w {
        return conv2d(x, kernel, pad, stride_h, 1);
    }
    let full = conv2d(x, kernel, pad, 1, 1)?;
    let (_, _, h, w) = full.dims4()?;
    let rows: Vec<u32> = (0..h).step_by(stride_h).map(|i| i as u32).collect();
    let cols: Vec<u32> = (0..w).step_by(stride_w).map(|i| i as u32).collect();
    let full = full.index_select(&Tensor::new(rows.as_slice(), x.device())?, 2)?;
    Ok(full.index_select(&Tensor::new(cols.as_slice(), x.device())?, 3)?)
}

/// candle's conv2d, except that bf16 on the CPU (where candle has no bf16 matmul) is computed
/// in float32 and rounded back, as torch's CPU bf16 convolution accumulates in float32.
pub fn conv2d(
    x: &Tensor,
    kernel: &Tensor,
    pad: usize,
    stride: usize,
    groups: usize,
) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::BF16 {
        let y = x.to_dtype(DType::F32)?.conv2d(
            &kernel.to_dtype(DType::F32)?,
            pad,
            stride,
            1,
            groups,
        )?;
        return Ok(y.to_dtype(DType::BF16)?);
    }
    Ok(x.conv2d(kernel, pad, stride, 1, groups)?)
}

/// `x @ weight^T + bias` over the last dim, with the same CPU bf16 rule as [`conv2d`].
pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let dtype = x.dtype();
    let compute = if x.device().is_cpu() && dtype == DType::BF16 {
        DType::F32
    } else {
        dtype
    };
    let y = x
        .to_dtype(compute)?
        .broadcast_matmul(&weight.to_dtype(compute)?.t()?)?
        .broadcast_add(&bias.to_dtype(compute)?)?;
    Ok(y.to_dtype(dtype)?)
}

/// Pads the last two dims of `x` by `pad` on each side with a non-zero padding mode.
pub fn pad_spatial(x: &Tensor, pad: usize, mode: PaddingMode) -> Result<Tensor> {
    if pad == 0 {
        return Ok(x.clone());
    }
    let rank = x.rank();
    let mut out = x.clone();
    for dim in [rank - 2, rank - 1] {
        out = pad_dim(&out, dim, pad, mode)?;
    }
    Ok(out)
}

fn pad_dim(x: &Tensor, dim: usize, pad: usize, mode: PaddingMode) -> Result<Tensor> {
    let n = x.dim(dim)?;
    let (left, right) = match mode {
        PaddingMode::Zeros => return Ok(x.pad_with_zeros(dim, pad, pad)?),
        PaddingMode::Replicate => return Ok(x.pad_with_same(dim, pad, pad)?),
        PaddingMode::Reflect => {
            if pad >= n {
                return Err(Error::Input(format!(
                    "reflect padding {pad} needs more than {n} elements"
                )));
            }
            let left: Vec<u32> = (1..=pad).rev().map(|i| i as u32).collect();
            let right: Vec<u32> = (0..pad).map(|i| (n - 2 - i) as u32).collect();
            (left, right)
        }
        PaddingMode::Circular => {
            if pad > n {
                return Err(Error::Input(format!(
                    "circular padding {pad} needs at least {pad} elements, got {n}"
                )));
            }
            let left: Vec<u32> = (n - pad..n).map(|i| i as u32).collect();
            let right: Vec<u32> = (0..pad).map(|i| i as u32).collect();
            (left, right)
        }
    };
    let pick = |ids: Vec<u32>| -> Result<Tensor> {
        Ok(x.index_select(&Tensor::new(ids.as_slice(), x.device())?, dim)?)
    };
    Ok(Tensor::cat(&[pick(left)?, x.clone(), pick(right)?], dim)?)
}

/// ltx-core's `CausalConv3d`: frame-replicating temporal padding around a [`Conv3d`].
/// Checkpoint keys: `conv.weight`, `conv.bias`.
#[derive(Debug, Clone)]
pub struct CausalConv3d {
    conv: Conv3d,
}

impl CausalConv3d {
    /// Loads a cubic-kernel causal conv (`vb` is the module's prefix; the conv sits under `conv`).
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: [usize; 3],
        padding: PaddingMode,
        vb: VarBuilder,
    ) -> Result<Self> {
        let conv = Conv3d::new(
            in_channels,
            out_channels,
            kernel,
            stride,
            padding,
            true,
            vb.pp("conv"),
        )?;
        Ok(Self { conv })
    }

    /// The inner convolution.
    pub fn conv(&self) -> &Conv3d {
        &self.conv
    }

    /// Whole-video forward: `[B, T, C, H, W]` -> `[B, T', O, H', W']`.
    pub fn forward(&self, x: &Tensor, causal: bool, scratch: usize) -> Result<Tensor> {
        let mut stream = ConvStream::new(causal);
        stream
            .push(self, Some(x.clone()), true, scratch)?
            .ok_or_else(|| Error::Input("causal conv3d: input has no frames".into()))
    }
}

/// Size of a tensor's elements in bytes.
pub fn tensor_bytes(t: &Tensor) -> usize {
    t.elem_count() * t.dtype().size_in_bytes()
}

/// A `1x1x1` convolution (ltx-core's `make_linear_nd`, an `nn.Conv3d` with kernel 1).
#[derive(Debug, Clone)]
pub struct PointwiseConv {
    weight: Tensor,
    bias: Tensor,
}

impl PointwiseConv {
    /// Loads `weight` `[O, C, 1, 1, 1]` and `bias` `[O]`.
    pub fn new(in_channels: usize, out_channels: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb
            .get((out_channels, in_channels, 1, 1, 1), "weight")?
            .reshape((out_channels, in_channels, 1, 1))?;
        let bias = vb
            .get(out_channels, "bias")?
            .reshape((1, 1, out_channels, 1, 1))?;
        Ok(Self { weight, bias })
    }
}

impl Module for PointwiseConv {
    /// `[B, T, C, H, W]` -> `[B, T, O, H, W]`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, c, h, w) = x.dims5()?;
        let o = self.weight.dim(0)?;
        let y = x
            .reshape((b * t, c, h, w))?
            .conv2d(&self.weight, 0, 1, 1, 1)?;
        y.reshape((b, t, o, h, w))?.broadcast_add(&self.bias)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn reference_conv3d(x: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
        // Direct 5-loop convolution on [B, T, C, H, W] with zero spatial padding 1.
        let (bs, t, c, h, wd) = x.dims5().unwrap();
        let (o, _, kt, kh, kw) = w.dims5().unwrap();
        let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let wv = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let bv = b.to_vec1::<f32>().unwrap();
        let t_out = t - kt + 1;
        let mut out = vec![0f32; bs * t_out * o * h * wd];
        for bi in 0..bs {
            for to in 0..t_out {
                for oc in 0..o {
                    for y in 0..h {
                        for xx in 0..wd {
                            let mut s = bv[oc];
                            for ic in 0..c {
                                for dt in 0..kt {
                                    for dy in 0..kh {
                                        for dx in 0..kw {
                                            let yy = y as isize + dy as isize - 1;
                                            let xs = xx as isize + dx as isize - 1;
                                            if yy < 0
                                                || xs < 0
                                                || yy >= h as isize
                                                || xs >= wd as isize
                                            {
                                                continue;
                                            }
                                            let xi = (((bi * t + to + dt) * c + ic) * h
                                                + yy as usize)
                                                * wd
                                                + xs as usize;
                                            let wi =
                                                (((oc * c + ic) * kt + dt) * kh + dy) * kw + dx;
                                            s += xv[xi] * wv[wi];
                                        }
                                    }
                                }
                            }
                            out[(((bi * t_out + to) * o + oc) * h + y) * wd + xx] = s;
                        }
                    }
                }
            }
        }
        Tensor::from_vec(out, (bs, t_out, o, h, wd), &Device::Cpu).unwrap()
    }

    #[test]
    fn conv3d_matches_direct_loops_in_any_grouping() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (2, 6, 3, 5, 4), &dev).unwrap();
        let w = Tensor::randn(0f32, 1., (4, 3, 3, 3, 3), &dev).unwrap();
        let b = Tensor::randn(0f32, 1., 4, &dev).unwrap();
        let expected = reference_conv3d(&x, &w, &b);
        let conv = Conv3d::from_weights(w, Some(b), [1, 1, 1], PaddingMode::Zeros).unwrap();
        let per_frame = conv.scratch_per_frame(2, 5, 4, 4);
        for group in [1, 2, 3, 1000] {
            let y = conv.forward_frames(&x, group * per_frame).unwrap();
            let diff = (y - &expected).unwrap().abs().unwrap().max_all().unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-4, "group {group}");
        }
    }

    #[test]
    fn padding_modes_follow_torch() {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[1f32, 2., 3.]], &dev).unwrap();
        let row = |mode| pad_dim(&x, 1, 1, mode).unwrap().to_vec2::<f32>().unwrap()[0].clone();
        assert_eq!(row(PaddingMode::Reflect), vec![2., 1., 2., 3., 2.]);
        assert_eq!(row(PaddingMode::Replicate), vec![1., 1., 2., 3., 3.]);
        assert_eq!(row(PaddingMode::Circular), vec![3., 1., 2., 3., 1.]);
        assert_eq!(row(PaddingMode::Zeros), vec![0., 1., 2., 3., 0.]);
    }
}
