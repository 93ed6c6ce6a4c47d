//! Image and latent resampling as ComfyUI's `comfy.utils.common_upscale` computes it: PyTorch's
//! `interpolate` modes (`nearest-exact`, `bilinear`, `bicubic`, `area`, align_corners=False, no
//! antialias), PIL's 8-bit Lanczos, and ComfyUI's slerp-based `bislerp`, with the optional centre
//! crop. Arithmetic follows the reference implementations' f32 order of operations.

use candle_core::{DType, Device, Tensor};

use crate::error::NodeError;

/// A resampling method name as ComfyUI spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `nearest-exact`.
    NearestExact,
    /// `bilinear`.
    Bilinear,
    /// `area` (adaptive average pooling).
    Area,
    /// `bicubic` (A = -0.75).
    Bicubic,
    /// `lanczos` (PIL, 8-bit).
    Lanczos,
    /// `bislerp` (ComfyUI's spherical bilinear).
    Bislerp,
}

impl Method {
    /// Parses ComfyUI's name.
    pub fn parse(name: &str) -> Result<Self, NodeError> {
        Ok(match name {
            "nearest-exact" => Method::NearestExact,
            "bilinear" => Method::Bilinear,
            "area" => Method::Area,
            "bicubic" => Method::Bicubic,
            "lanczos" => Method::Lanczos,
            "bislerp" => Method::Bislerp,
            other => {
                return Err(NodeError::Value(format!(
                    "unknown upscale method '{other}'"
                )));
            }
        })
    }
}

/// A planar f32 image batch `[n, c, h, w]`.
struct Planes {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    data: Vec<f32>,
}

impl Planes {
    fn at(&self, n: usize, c: usize, y: usize, x: usize) -> f32 {
        self.data[((n * self.c + c) * self.h + y) * self.w + x]
    }
    fn zeros(n: usize, c: usize, h: usize, w: usize) -> Self {
        Self {
            n,
            c,
            h,
            w,
            data: vec![0.0; n * c * h * w],
        }
    }
    fn plane(&self, n: usize, c: usize) -> &[f32] {
        let size = self.h * self.w;
        let start = (n * self.c + c) * size;
        &self.data[start..start + size]
    }
}

/// `common_upscale(samples, width, height, method, crop)`: `samples` is `[N, C, H, W]` or a video
/// latent `[B, C, T, H, W]` (resampled frame by frame); `crop_center` is ComfyUI's `"center"`.
pub fn common_upscale(
    samples: &Tensor,
    width: usize,
    height: usize,
    method: Method,
    crop_center: bool,
) -> Result<Tensor, NodeError> {
    if width == 0 || height == 0 {
        return Err(NodeError::Value(format!(
            "cannot resize to {width}x{height}"
        )));
    }
    let dims = samples.dims().to_vec();
    let (device, dtype) = (samples.device().clone(), samples.dtype());
    let four = match dims.len() {
        4 => samples.clone(),
        5 => samples.permute((0, 2, 1, 3, 4))?.reshape((
            dims[0] * dims[2],
            dims[1],
            dims[3],
            dims[4],
        ))?,
        n => {
            return Err(NodeError::Value(format!(
                "cannot resize a tensor of rank {n}"
            )));
        }
    };
    let (n, c, h, w) = four.dims4()?;
    let data = four
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let mut planes = Planes { n, c, h, w, data };
    if crop_center {
        planes = center_crop(&planes, width, height);
    }
    let out = match method {
        Method::NearestExact => separable(&planes, width, height, nearest_exact_taps),
        Method::Bilinear => separable(&planes, width, height, bilinear_taps),
        Method::Bicubic => separable(&planes, width, height, bicubic_taps),
        Method::Area => area(&planes, width, height),
        Method::Lanczos => lanczos(&planes, width, height),
        Method::Bislerp => bislerp(&planes, width, height),
    };
    let t = Tensor::from_vec(out.data, (out.n, out.c, out.h, out.w), &Device::Cpu)?;
    let t = if dims.len() == 5 {
        t.reshape((dims[0], dims[2], dims[1], height, width))?
            .permute((0, 2, 1, 3, 4))?
            .contiguous()?
    } else {
        t
    };
    Ok(t.to_dtype(dtype)?.to_device(&device)?)
}

/// Python's `round()` (half to even).
pub fn py_round(x: f64) -> i64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 {
        (2.0 * (x / 2.0).round()) as i64
    } else {
        r as i64
    }
}

fn center_crop(p: &Planes, width: usize, height: usize) -> Planes {
    let old_aspect = p.w as f64 / p.h as f64;
    let new_aspect = width as f64 / height as f64;
    let (mut x, mut y) = (0usize, 0usize);
    if old_aspect > new_aspect {
        x = py_round((p.w as f64 - p.w as f64 * (new_aspect / old_aspect)) / 2.0).max(0) as usize;
    } else if old_aspect < new_aspect {
        y = py_round((p.h as f64 - p.h as f64 * (old_aspect / new_aspect)) / 2.0).max(0) as usize;
    }
    let (nh, nw) = (
        p.h.saturating_sub(2 * y).max(1),
        p.w.saturating_sub(2 * x).max(1),
    );
    let mut out = Planes::zeros(p.n, p.c, nh, nw);
    for n in 0..p.n {
        for c in 0..p.c {
            for yy in 0..nh {
                for xx in 0..nw {
                    out.data[((n * p.c + c) * nh + yy) * nw + xx] = p.at(n, c, yy + y, xx + x);
                }
            }
        }
    }
    out
}

/// Source indices and weights for one output coordinate.
type Taps = Vec<(usize, f32)>;

fn scale_of(input: usize, output: usize) -> f32 {
    input as f32 / output as f32
}

fn nearest_exact_taps(input: usize, output: usize) -> Vec<Taps> {
    let scale = scale_of(input, output);
    (0..output)
        .map(|o| {
            let src = (((o as f32) + 0.5) * scale).floor() as usize;
            vec![(src.min(input - 1), 1.0)]
        })
        .collect()
}

fn bilinear_taps(input: usize, output: usize) -> Vec<Taps> {
    let scale = scale_of(input, output);
    (0..output)
        .map(|o| {
            let real = (scale * (o as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (real as usize).min(input - 1);
            let lambda1 = (real - i0 as f32).clamp(0.0, 1.0);
            let i1 = (i0 + 1).min(input - 1);
            vec![(i0, 1.0 - lambda1), (i1, lambda1)]
        })
        .collect()
}

fn cubic1(x: f32, a: f32) -> f32 {
    ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
}

fn cubic2(x: f32, a: f32) -> f32 {
    ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
}

fn bicubic_taps(input: usize, output: usize) -> Vec<Taps> {
    const A: f32 = -0.75;
    let scale = scale_of(input, output);
    (0..output)
        .map(|o| {
            let real = scale * (o as f32 + 0.5) - 0.5;
            let index = (real.floor() as i64).min(input as i64 - 1);
            let t = (real - index as f32).clamp(0.0, 1.0);
            let weights = [
                cubic2(t + 1.0, A),
                cubic1(t, A),
                cubic1(1.0 - t, A),
                cubic2(2.0 - t, A),
            ];
            (0..4)
                .map(|k| {
                    let i = (index - 1 + k as i64).clamp(0, input as i64 - 1) as usize;
                    (i, weights[k])
                })
                .collect()
        })
        .collect()
}

/// Separable resampling with PyTorch's evaluation order: rows (H) outer, columns (W) inner.
fn separable(
    p: &Planes,
    width: usize,
    height: usize,
    taps: fn(usize, usize) -> Vec<Taps>,
) -> Planes {
    let ty = taps(p.h, height);
    let tx = taps(p.w, width);
    let mut out = Planes::zeros(p.n, p.c, height, width);
    for n in 0..p.n {
        for c in 0..p.c {
            let src = p.plane(n, c);
            let base = (n * p.c + c) * height * width;
            for (oy, ytaps) in ty.iter().enumerate() {
                for (ox, xtaps) in tx.iter().enumerate() {
                    let mut acc = 0f32;
                    for &(iy, wy) in ytaps {
                        let row = &src[iy * p.w..(iy + 1) * p.w];
                        let mut t = 0f32;
                        for &(ix, wx) in xtaps {
                            t += row[ix] * wx;
                        }
                        acc += t * wy;
                    }
                    out.data[base + oy * width + ox] = acc;
                }
            }
        }
    }
    out
}

fn pool_bounds(o: usize, output: usize, input: usize) -> (usize, usize) {
    let start = (o * input) / output;
    let end = ((o + 1) * input).div_ceil(output);
    (start, end.max(start + 1))
}

/// `area`: PyTorch's adaptive average pooling.
fn area(p: &Planes, width: usize, height: usize) -> Planes {
    let mut out = Planes::zeros(p.n, p.c, height, width);
    for n in 0..p.n {
        for c in 0..p.c {
            let src = p.plane(n, c);
            let base = (n * p.c + c) * height * width;
            for oy in 0..height {
                let (y0, y1) = pool_bounds(oy, height, p.h);
                for ox in 0..width {
                    let (x0, x1) = pool_bounds(ox, width, p.w);
                    let mut sum = 0f32;
                    for y in y0..y1 {
                        for x in x0..x1 {
                            sum += src[y * p.w + x];
                        }
                    }
                    out.data[base + oy * width + ox] = sum / (y1 - y0) as f32 / (x1 - x0) as f32;
                }
            }
        }
    }
    out
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn lanczos_filter(x: f64) -> f64 {
    fn sinc(x: f64) -> f64 {
        if x == 0.0 {
            1.0
        } else {
            let x = x * std::f64::consts::PI;
            x.sin() / x
        }
    }
    if (-3.0..3.0).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

/// PIL's `precompute_coeffs` + `normalize_coeffs_8bpc`: per output pixel, the first source
/// index and fixed-point weights.
fn pil_coeffs(input: usize, output: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = input as f64 / output as f64;
    let filterscale = scale.max(1.0);
    let support = 3.0 * filterscale;
    (0..output)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(input as i64) as usize;
            let count = xmax.saturating_sub(xmin);
            let mut k: Vec<f64> = (0..count)
                .map(|x| lanczos_filter((x as f64 + xmin as f64 - center + 0.5) * ss))
                .collect();
            let total: f64 = k.iter().sum();
            if total != 0.0 {
                k.iter_mut().for_each(|w| *w /= total);
            }
            let fixed = k
                .iter()
                .map(|w| {
                    let v = w * (1u32 << PRECISION_BITS) as f64;
                    if *w < 0.0 {
                        (v - 0.5) as i32
                    } else {
                        (v + 0.5) as i32
                    }
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

fn resample_axis(
    src: &[u8],
    w: usize,
    h: usize,
    coeffs: &[(usize, Vec<i32>)],
    horizontal: bool,
) -> Vec<u8> {
    let (ow, oh) = if horizontal {
        (coeffs.len(), h)
    } else {
        (w, coeffs.len())
    };
    let mut out = vec![0u8; ow * oh];
    for y in 0..oh {
        for x in 0..ow {
            let (start, k) = &coeffs[if horizontal { x } else { y }];
            let mut acc: i64 = 1 << (PRECISION_BITS - 1);
            for (i, weight) in k.iter().enumerate() {
                let v = if horizontal {
                    src[y * w + start + i]
                } else {
                    src[(start + i) * w + x]
                };
                acc += v as i64 * *weight as i64;
            }
            out[y * ow + x] = clip8(acc);
        }
    }
    out
}

/// `lanczos`: each channel quantised to uint8 (`clip(255x).astype(uint8)`), resized with PIL's
/// two-pass fixed-point Lanczos, divided by 255.
fn lanczos(p: &Planes, width: usize, height: usize) -> Planes {
    let hcoeffs = pil_coeffs(p.w, width);
    let vcoeffs = pil_coeffs(p.h, height);
    let mut out = Planes::zeros(p.n, p.c, height, width);
    for n in 0..p.n {
        for c in 0..p.c {
            let mut plane: Vec<u8> = p
                .plane(n, c)
                .iter()
                .map(|v| (255.0 * v).clamp(0.0, 255.0) as u8)
                .collect();
            let (mut w, h) = (p.w, p.h);
            if width != p.w {
                plane = resample_axis(&plane, w, h, &hcoeffs, true);
                w = width;
            }
            if height != p.h {
                plane = resample_axis(&plane, w, h, &vcoeffs, false);
            }
            let base = (n * p.c + c) * height * width;
            for (i, v) in plane.iter().enumerate() {
                out.data[base + i] = *v as f32 / 255.0;
            }
        }
    }
    out
}

/// ComfyUI's `slerp` of two channel vectors.
fn slerp(b1: &[f32], b2: &[f32], r: f32, out: &mut [f32]) {
    let n1 = b1.iter().map(|v| v * v).sum::<f32>().sqrt();
    let n2 = b2.iter().map(|v| v * v).sum::<f32>().sqrt();
    let norm = |v: f32, n: f32| if n == 0.0 { 0.0 } else { v / n };
    let dot: f32 = b1
        .iter()
        .zip(b2)
        .map(|(a, b)| norm(*a, n1) * norm(*b, n2))
        .sum();
    if dot > 1.0 - 1e-5 {
        out.copy_from_slice(b1);
        return;
    }
    if dot < 1e-5 - 1.0 {
        for ((o, a), b) in out.iter_mut().zip(b1).zip(b2) {
            *o = a * (1.0 - r) + b * r;
        }
        return;
    }
    let omega = dot.acos();
    let so = omega.sin();
    let (wa, wb) = (((1.0 - r) * omega).sin() / so, (r * omega).sin() / so);
    let scale = n1 * (1.0 - r) + n2 * r;
    for ((o, a), b) in out.iter_mut().zip(b1).zip(b2) {
        *o = (wa * norm(*a, n1) + wb * norm(*b, n2)) * scale;
    }
}

/// `generate_bilinear_data`: bilinearly interpolated source coordinates for each output index.
fn bislerp_coords(old: usize, new: usize) -> Vec<(usize, usize, f32)> {
    let taps = bilinear_taps(old, new);
    taps.iter()
        .map(|t| {
            let coord = |shift: bool| -> f32 {
                t.iter()
                    .map(|&(i, w)| {
                        let v = if shift {
                            if i + 1 == old {
                                i as f32
                            } else {
                                i as f32 + 1.0
                            }
                        } else {
                            i as f32
                        };
                        v * w
                    })
                    .sum()
            };
            let c1 = coord(false);
            let c2 = coord(true);
            (c1 as usize, c2 as usize, c1 - c1.floor())
        })
        .collect()
}

/// `bislerp`: slerp between neighbouring pixels' channel vectors, along W then H.
fn bislerp(p: &Planes, width: usize, height: usize) -> Planes {
    let xs = bislerp_coords(p.w, width);
    let ys = bislerp_coords(p.h, height);
    let c = p.c;
    let mut mid = Planes::zeros(p.n, c, p.h, width);
    let (mut a, mut b, mut r) = (vec![0f32; c], vec![0f32; c], vec![0f32; c]);
    for n in 0..p.n {
        for y in 0..p.h {
            for (ox, &(x1, x2, ratio)) in xs.iter().enumerate() {
                for ch in 0..c {
                    a[ch] = p.at(n, ch, y, x1.min(p.w - 1));
                    b[ch] = p.at(n, ch, y, x2.min(p.w - 1));
                }
                slerp(&a, &b, ratio, &mut r);
                for (ch, v) in r.iter().enumerate() {
                    mid.data[((n * c + ch) * p.h + y) * width + ox] = *v;
                }
            }
        }
    }
    let mut out = Planes::zeros(p.n, c, height, width);
    for n in 0..p.n {
        for (oy, &(y1, y2, ratio)) in ys.iter().enumerate() {
            for x in 0..width {
                for ch in 0..c {
                    a[ch] = mid.at(n, ch, y1.min(p.h - 1), x);
                    b[ch] = mid.at(n, ch, y2.min(p.h - 1), x);
                }
                slerp(&a, &b, ratio, &mut r);
                for (ch, v) in r.iter().enumerate() {
                    out.data[((n * c + ch) * height + oy) * width + x] = *v;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(h: usize, w: usize) -> Tensor {
        let data: Vec<f32> = (0..h * w).map(|i| i as f32 / (h * w) as f32).collect();
        Tensor::from_vec(data, (1, 1, h, w), &Device::Cpu).unwrap()
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn identity_sizes_keep_values() {
        let t = ramp(4, 6);
        for m in [
            Method::NearestExact,
            Method::Bilinear,
            Method::Bicubic,
            Method::Area,
        ] {
            assert_eq!(
                values(&common_upscale(&t, 6, 4, m, false).unwrap()),
                values(&t),
                "{m:?}"
            );
        }
    }

    #[test]
    fn bilinear_upscale_matches_torch_formula() {
        // torch.nn.functional.interpolate([[[[0., 1.]]]], size=(1, 4), mode="bilinear")
        let t = Tensor::new(&[[[[0f32, 1.0]]]], &Device::Cpu).unwrap();
        let out = values(&common_upscale(&t, 4, 1, Method::Bilinear, false).unwrap());
        assert_eq!(out, vec![0.0, 0.25, 0.75, 1.0]);
    }

    #[test]
    fn area_downscale_averages() {
        let t = Tensor::new(&[[[[1f32, 3.0, 5.0, 7.0]]]], &Device::Cpu).unwrap();
        let out = values(&common_upscale(&t, 2, 1, Method::Area, false).unwrap());
        assert_eq!(out, vec![2.0, 6.0]);
    }

    #[test]
    fn center_crop_then_resize() {
        let t = ramp(2, 4);
        let out = common_upscale(&t, 2, 2, Method::NearestExact, true).unwrap();
        // 4x2 cropped to the centre 2x2 (columns 1 and 2).
        assert_eq!(
            values(&out),
            vec![1.0 / 8.0, 2.0 / 8.0, 5.0 / 8.0, 6.0 / 8.0]
        );
    }

    #[test]
    fn video_latents_are_resized_per_frame() {
        let t = Tensor::arange(0f32, 2.0 * 3.0 * 2.0 * 2.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 2, 3, 2, 2))
            .unwrap();
        let out = common_upscale(&t, 4, 4, Method::NearestExact, false).unwrap();
        assert_eq!(out.dims(), &[1, 2, 3, 4, 4]);
        let frame = out.narrow(2, 1, 1).unwrap().narrow(1, 0, 1).unwrap();
        let v = values(&frame);
        assert_eq!(v[0], 4.0);
        assert_eq!(v[15], 7.0);
    }

    #[test]
    fn python_round_is_half_even() {
        assert_eq!(py_round(2.5), 2);
        assert_eq!(py_round(3.5), 4);
        assert_eq!(py_round(640.0), 640);
        assert_eq!(py_round(-0.5), 0);
    }

    #[test]
    fn bislerp_keeps_constant_images() {
        let t = Tensor::ones((1, 4, 3, 3), DType::F32, &Device::Cpu).unwrap();
        let out = common_upscale(&t, 5, 7, Method::Bislerp, false).unwrap();
        assert!(values(&out).iter().all(|v| (v - 1.0).abs() < 1e-6));
    }
}
