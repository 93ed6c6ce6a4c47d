//! Initial noise as ComfyUI's `RandomNoise` node draws it (`comfy.sample.prepare_noise`), and
//! the per-step noise source of ancestral samplers (`default_noise_sampler`).
//!
//! `RandomNoise.generate_noise(latent)` seeds the CPU generator with `torch.manual_seed(seed)`
//! and draws float32 `randn` of each latent part's shape, the parts of a nested audio-video
//! latent in order (video first, then audio) from the same generator. With a `batch_index`
//! list, each part instead draws one `[1, ...]` sample per index `0..=max(batch_index)` and keeps
//! the drawn samples at the listed indices (duplicates allowed), so batch item `i` gets the
//! noise it would get in a batch of its own position.

use candle_core::{DType, Device, Shape, Tensor};

use super::torch_rng::{NormalKernel, TorchGenerator};
use crate::{Error, Result};

/// ComfyUI's `RandomNoise`: the seed and which CPU kernel's bits to reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomNoise {
    /// The node's `noise_seed` (only its low 32 bits reach the generator).
    pub seed: u64,
    /// The `torch.randn` CPU kernel to emulate (AVX2 on x86-64 machines).
    pub kernel: NormalKernel,
}

impl RandomNoise {
    /// Noise drawn like ComfyUI on an x86-64 CPU with AVX2.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            kernel: NormalKernel::Avx2,
        }
    }

    /// Draws noise for the latent parts `shapes` (one shape for a plain latent; video then audio
    /// for a nested one), returned as float32 tensors on `device`.
    pub fn generate(
        &self,
        shapes: &[Shape],
        batch_index: Option<&[i64]>,
        device: &Device,
    ) -> Result<Vec<Tensor>> {
        let mut generator = TorchGenerator::with_kernel(self.seed, self.kernel);
        shapes
            .iter()
            .map(|shape| draw_part(&mut generator, shape, batch_index, device))
            .collect()
    }
}

/// `prepare_noise_inner` for one part.
fn draw_part(
    generator: &mut TorchGenerator,
    shape: &Shape,
    batch_index: Option<&[i64]>,
    device: &Device,
) -> Result<Tensor> {
    let dims = shape.dims();
    let Some(batch_index) = batch_index else {
        let values = generator.randn(shape.elem_count());
        return Ok(Tensor::from_vec(values, dims, device)?);
    };
    let (unique, inverse) = unique_with_inverse(batch_index)?;
    let item_dims: Vec<usize> = std::iter::once(1)
        .chain(dims.iter().skip(1).copied())
        .collect();
    let item_len: usize = item_dims.iter().product();
    let last = *unique.last().unwrap_or(&0);
    let mut kept: Vec<Vec<f32>> = Vec::with_capacity(unique.len());
    for i in 0..=last {
        let draw = generator.randn(item_len);
        if unique.binary_search(&i).is_ok() {
            kept.push(draw);
        }
    }
    let values: Vec<f32> = inverse
        .iter()
        .flat_map(|&k| kept[k].iter().copied())
        .collect();
    let mut out_dims = item_dims;
    out_dims[0] = inverse.len();
    Ok(Tensor::from_vec(values, out_dims, device)?)
}

/// `np.unique(indices, return_inverse=True)` for non-negative indices.
fn unique_with_inverse(indices: &[i64]) -> Result<(Vec<u64>, Vec<usize>)> {
    if indices.is_empty() {
        return Err(Error::Input("batch_index is empty".into()));
    }
    let as_u64 = indices
        .iter()
        .map(|&i| u64::try_from(i).map_err(|_| Error::Input(format!("negative batch_index {i}"))))
        .collect::<Result<Vec<u64>>>()?;
    let mut unique = as_u64.clone();
    unique.sort_unstable();
    unique.dedup();
    let inverse = as_u64
        .iter()
        .map(|i| unique.binary_search(i).unwrap_or_default())
        .collect();
    Ok((unique, inverse))
}

/// Where an ancestral sampler's per-step noise comes from.
pub trait NoiseSource {
    /// Standard normal noise with the shape, dtype and device of `like`.
    fn noise_like(&mut self, like: &Tensor) -> Result<Tensor>;
}

/// ComfyUI's `default_noise_sampler` for a latent on the CPU: a fresh generator seeded with
/// `seed + 1`, one `randn(x.size())` per call. (On CUDA ComfyUI draws from the device's Philox
/// generator instead, which this does not reproduce.)
#[derive(Debug, Clone)]
pub struct TorchNoiseSource {
    generator: TorchGenerator,
}

impl TorchNoiseSource {
    /// The source ComfyUI builds for an ancestral sampler seeded with `seed` on the CPU.
    /// `u64::MAX + 1` wraps to 0 (the generator only keeps the low 32 bits; PyTorch itself
    /// rejects that seed).
    pub fn comfy_cpu(seed: u64, kernel: NormalKernel) -> Self {
        Self {
            generator: TorchGenerator::with_kernel(seed.wrapping_add(1), kernel),
        }
    }

    /// A source drawing from a generator seeded with exactly `seed`.
    pub fn seeded(seed: u64, kernel: NormalKernel) -> Self {
        Self {
            generator: TorchGenerator::with_kernel(seed, kernel),
        }
    }
}

impl NoiseSource for TorchNoiseSource {
    fn noise_like(&mut self, like: &Tensor) -> Result<Tensor> {
        let values = self.generator.randn(like.elem_count());
        Ok(Tensor::from_vec(values, like.dims(), like.device())?.to_dtype(like.dtype())?)
    }
}

/// Zero noise (ComfyUI's `DisableNoise`), float32.
pub fn zero_noise(shapes: &[Shape], device: &Device) -> Result<Vec<Tensor>> {
    shapes
        .iter()
        .map(|s| Ok(Tensor::zeros(s, DType::F32, device)?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::torch_rng::tests::{mismatches, reference};

    fn shape_of(params: &serde_json::Value, set: &str, part: &str) -> Shape {
        let dims: Vec<usize> = params[set][part]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        Shape::from(dims)
    }

    fn params() -> serde_json::Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/torch_noise.safetensors"
        );
        let bytes = std::fs::read(path).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let raw = meta.metadata().as_ref().unwrap()["params"].clone();
        serde_json::from_str(&raw).unwrap()
    }

    #[test]
    fn nested_av_noise_matches_comfy_prepare_noise() {
        let reference = reference();
        let params = params();
        let seeds: Vec<u64> = params["seeds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().parse().unwrap())
            .collect();
        let batch_index: Vec<i64> = params["batch_index"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_i64().unwrap())
            .collect();
        let cases = [
            ("av", "av_shapes", None),
            ("avsmall", "av_small_shapes", None),
            ("avb", "avb_shapes", Some(batch_index.as_slice())),
        ];
        let mut checked = 0;
        for (kernel_name, kernel) in [
            ("avx2", NormalKernel::Avx2),
            ("default", NormalKernel::Scalar),
        ] {
            for &seed in &seeds {
                for (case, set, bi) in cases {
                    let shapes = [
                        shape_of(&params, set, "video"),
                        shape_of(&params, set, "audio"),
                    ];
                    let noise = RandomNoise { seed, kernel }
                        .generate(&shapes, bi, &Device::Cpu)
                        .unwrap();
                    for (part, tensor) in ["video", "audio"].iter().zip(&noise) {
                        let key = format!("{kernel_name}/{case}/seed={seed}/{part}");
                        let (shape, expected) = &reference[&key];
                        assert_eq!(tensor.dims(), shape.as_slice(), "{key}");
                        let got: Vec<f32> = tensor.flatten_all().unwrap().to_vec1().unwrap();
                        assert_eq!(mismatches(&got, expected), 0, "{key}");
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 2 * seeds.len() * cases.len() * 2);
    }

    #[test]
    fn batch_index_rejects_negative_and_empty() {
        let noise = RandomNoise::new(0);
        let shapes = [Shape::from((2, 3))];
        assert!(noise.generate(&shapes, Some(&[-1]), &Device::Cpu).is_err());
        assert!(noise.generate(&shapes, Some(&[]), &Device::Cpu).is_err());
    }

    #[test]
    fn ancestral_source_is_seed_plus_one_stream() {
        let like = Tensor::zeros((1, 1, 40), DType::F32, &Device::Cpu).unwrap();
        let mut src = TorchNoiseSource::comfy_cpu(41, NormalKernel::Avx2);
        let a: Vec<f32> = src
            .noise_like(&like)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let b: Vec<f32> = src
            .noise_like(&like)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let mut g = TorchGenerator::manual_seed(42);
        assert_eq!(a, g.randn(40));
        assert_eq!(b, g.randn(40));
    }
}
