//! Canny (`comfy_extras/nodes_canny.py`): `kornia.filters.canny` with its defaults (grayscale
//! with 0.299/0.587/0.114, 5x5 Gaussian blur with sigma 1 and reflected borders, Sobel gradients
//! with replicated borders, non-maximum suppression along the gradient direction rounded to 45
//! degrees, double threshold, hysteresis over the 8 neighbours), in float32 on the CPU and in
//! kornia's order of operations; the edge map (0 or 1) is repeated to three channels.

use candle_core::{DType, Device, Tensor};

use crate::{
    Ctx, InputDef, Inputs, NodeDef, NodeError, NodeSchema, OutputDef, Outputs, Registry, Value,
};

/// Registers the node.
pub fn register(r: &mut Registry) {
    let threshold = |name: &str, default: f64| {
        InputDef::float(name)
            .default(default)
            .min(0.01)
            .max(0.99)
            .step(0.01)
    };
    let schema = NodeSchema::v3("Canny", "image/preprocessors", "comfy_extras.nodes_canny")
        .aliases(&["edge detection", "outline", "contour detection", "line art"])
        .input(InputDef::socket("image", "IMAGE"))
        .input(threshold("low_threshold", 0.4))
        .input(threshold("high_threshold", 0.8))
        .output(OutputDef::new("IMAGE"));
    r.register(NodeDef::new(schema, run));
}

fn run(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let image = inputs.image("image")?;
    let low = inputs.float("low_threshold")? as f32;
    let high = inputs.float("high_threshold")? as f32;
    Ok(Outputs::one(Value::Image(detect(
        image,
        low,
        high,
        &|| ctx.check_interrupt(),
    )?)))
}

/// The node's computation: IMAGE `[N,H,W,C]` to the edge map repeated to `3` channels (`3C`
/// when the image does not have 3 channels: kornia then works on each channel).
/// `check` runs between images (interruption).
pub fn detect(
    image: &Tensor,
    low: f32,
    high: f32,
    check: &dyn Fn() -> Result<(), NodeError>,
) -> Result<Tensor, NodeError> {
    if low > high {
        return Err(NodeError::Value(format!(
            "Invalid input thresholds. low_threshold should be smaller than the high_threshold. Got: {low}>{high}"
        )));
    }
    if !(0.0 < low && low < 1.0 && 0.0 < high && high < 1.0) {
        return Err(NodeError::Value(format!(
            "Invalid thresholds {low}, {high}: both must be in (0, 1)"
        )));
    }
    let (n, h, w, c) = image.dims4()?;
    if h < 3 || w < 3 {
        return Err(NodeError::Value(format!(
            "Canny needs an image of at least 3x3 pixels, got {w}x{h}"
        )));
    }
    let data = image
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let planes = if c == 3 { 1 } else { c };
    let channels = planes * 3;
    let mut out = vec![0f32; n * h * w * channels];
    for b in 0..n {
        check()?;
        let pixels = &data[b * h * w * c..(b + 1) * h * w * c];
        for p in 0..planes {
            let plane = if c == 3 {
                grayscale(pixels)
            } else {
                pixels.iter().skip(p).step_by(c).copied().collect()
            };
            for (i, e) in edges(&plane, w, h, low, high).iter().enumerate() {
                for rep in 0..3 {
                    out[(b * h * w + i) * channels + rep * planes + p] = *e;
                }
            }
        }
    }
    let out = Tensor::from_vec(out, (n, h, w, channels), &Device::Cpu)?;
    Ok(out.to_device(image.device())?.to_dtype(image.dtype())?)
}

/// `rgb_to_grayscale` of interleaved RGB pixels.
fn grayscale(rgb: &[f32]) -> Vec<f32> {
    rgb.chunks_exact(3)
        .map(|p| 0.299f32 * p[0] + 0.587f32 * p[1] + 0.114f32 * p[2])
        .collect()
}

/// The normalised 5-tap Gaussian kernel with sigma 1 (`get_gaussian_kernel1d(5, 1.0)`).
fn gaussian_kernel() -> [f32; 5] {
    let mut k = [0f32; 5];
    for (i, v) in k.iter_mut().enumerate() {
        let x = i as f32 - 2.0;
        *v = (-(x * x) / 2.0f32).exp();
    }
    let sum: f32 = k.iter().sum();
    k.map(|v| v / sum)
}

/// Index `i` (possibly outside `0..n`) mirrored at the borders without repeating the edge.
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    let i = if i < 0 { -i } else { i };
    (if i >= n { 2 * (n - 1) - i } else { i }) as usize
}

fn clamp(i: isize, n: usize) -> usize {
    i.clamp(0, n as isize - 1) as usize
}

/// `gaussian_blur2d(plane, (5, 5), (1, 1))`: horizontal, then vertical, reflected borders.
fn blur(plane: &[f32], w: usize, h: usize) -> Vec<f32> {
    let k = gaussian_kernel();
    let mut across = vec![0f32; w * h];
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0f32;
            for (t, kv) in k.iter().enumerate() {
                acc += kv * plane[y * w + reflect(x as isize + t as isize - 2, w)];
            }
            across[y * w + x] = acc;
        }
    }
    let mut out = vec![0f32; w * h];
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0f32;
            for (t, kv) in k.iter().enumerate() {
                acc += kv * across[reflect(y as isize + t as isize - 2, h) * w + x];
            }
            out[y * w + x] = acc;
        }
    }
    out
}

/// Sobel `(gx, gy)` at one pixel with replicated borders (`spatial_gradient`, unnormalised).
fn sobel(p: &[f32], w: usize, h: usize, x: usize, y: usize) -> (f32, f32) {
    const KX: [[f32; 3]; 3] = [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]];
    let (mut gx, mut gy) = (0f32, 0f32);
    for (i, row) in KX.iter().enumerate() {
        for (j, kx) in row.iter().enumerate() {
            let v = p
                [clamp(y as isize + i as isize - 1, h) * w + clamp(x as isize + j as isize - 1, w)];
            gx += kx * v;
            gy += KX[j][i] * v;
        }
    }
    (gx, gy)
}

/// Neighbour offsets `(dy, dx)` of kornia's 8 direction kernels (NMS and hysteresis).
const NEIGHBOURS: [(isize, isize); 8] = [
    (0, 1),
    (1, 1),
    (1, 0),
    (1, -1),
    (0, -1),
    (-1, -1),
    (-1, 0),
    (-1, 1),
];

/// Python's `round` (half to even) for f32.
fn round_half_even(v: f32) -> f32 {
    let r = v.round();
    if (v - v.trunc()).abs() == 0.5 {
        2.0 * (v / 2.0).round()
    } else {
        r
    }
}

/// The Canny edge map (0 or 1) of one grayscale plane.
pub fn edges(plane: &[f32], w: usize, h: usize, low: f32, high: f32) -> Vec<f32> {
    let blurred = blur(plane, w, h);
    let mut magnitude = vec![0f32; w * h];
    let mut direction = vec![0usize; w * h];
    let to_45 = (4.0 / std::f64::consts::PI) as f32;
    for y in 0..h {
        for x in 0..w {
            let (gx, gy) = sobel(&blurred, w, h, x, y);
            magnitude[y * w + x] = (gx * gx + gy * gy + 1e-6f32).sqrt();
            let steps = round_half_even(gy.atan2(gx) * to_45);
            direction[y * w + x] = steps.rem_euclid(8.0) as usize;
        }
    }
    let at = |m: &[f32], y: usize, x: usize, d: usize| {
        let (dy, dx) = NEIGHBOURS[d];
        let (ny, nx) = (y as isize + dy, x as isize + dx);
        if ny < 0 || nx < 0 || ny >= h as isize || nx >= w as isize {
            0.0
        } else {
            m[ny as usize * w + nx as usize]
        }
    };
    let mut state = vec![0u8; w * h]; // 0 none, 1 weak, 2 strong
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let m = magnitude[i];
            let d = direction[i];
            let is_max =
                (m - at(&magnitude, y, x, d)).min(m - at(&magnitude, y, x, (d + 4) % 8)) > 0.0;
            let m = if is_max { m } else { 0.0 };
            state[i] = u8::from(m > low) + u8::from(m > high);
        }
    }
    hysteresis(&mut state, w, h);
    state
        .iter()
        .map(|&s| if s == 2 { 1.0 } else { 0.0 })
        .collect()
}

/// Weak pixels connected to a strong one through weak pixels (8-neighbourhood) become strong:
/// the fixed point kornia's iteration reaches.
fn hysteresis(state: &mut [u8], w: usize, h: usize) {
    let mut stack: Vec<usize> = (0..w * h).filter(|&i| state[i] == 2).collect();
    while let Some(i) = stack.pop() {
        let (y, x) = ((i / w) as isize, (i % w) as isize);
        for (dy, dx) in NEIGHBOURS {
            let (ny, nx) = (y + dy, x + dx);
            if ny < 0 || nx < 0 || ny >= h as isize || nx >= w as isize {
                continue;
            }
            let j = ny as usize * w + nx as usize;
            if state[j] == 1 {
                state[j] = 2;
                stack.push(j);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_gives_one_line_of_edges() {
        let (w, h) = (12, 8);
        let plane: Vec<f32> = (0..w * h)
            .map(|i| if i % w < 6 { 0.0 } else { 1.0 })
            .collect();
        let e = edges(&plane, w, h, 0.1, 0.2);
        for y in 0..h {
            let row: Vec<f32> = e[y * w..(y + 1) * w].to_vec();
            assert_eq!(row.iter().sum::<f32>(), 1.0, "row {y}: {row:?}");
            assert!(row[5] == 1.0 || row[6] == 1.0, "row {y}: {row:?}");
        }
        assert!(
            edges(&vec![0.5; w * h], w, h, 0.1, 0.2)
                .iter()
                .all(|&v| v == 0.0)
        );
    }

    #[test]
    fn borders_reflect_and_replicate() {
        assert_eq!(
            [-2, -1, 0, 4, 5, 6].map(|i| reflect(i, 5)),
            [2, 1, 0, 4, 3, 2]
        );
        assert_eq!([-1, 0, 5].map(|i| clamp(i, 5)), [0, 0, 4]);
        let k = gaussian_kernel();
        assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(k[0], k[4]);
    }
}
