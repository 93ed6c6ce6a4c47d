//! One transformer forward (a denoising step with one guidance pass): the tiny fixture model,
//! and a mid-size model with random weights built in memory (8 blocks of 1024 video / 512 audio
//! width at full size; CI size is smaller).

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use criterion::{Criterion, Throughput};
use models::checkpoint::CheckpointHeader;
use models::ltx2::transformer::positions::{
    ScaleFactors, VideoGrid, audio_positions, video_positions,
};
use models::ltx2::transformer::{ForwardOptions, LtxAvModel, ModalityInput, TransformerConfig};

use crate::flops::{self, Dims};

/// A model and inputs for one forward.
struct Case {
    name: String,
    model: LtxAvModel,
    video: ModalityInput,
    audio: ModalityInput,
    flops: f64,
}

/// Deterministic pseudo-random values (no RNG state shared with candle).
fn values(n: usize, seed: u64, std: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 3.46 * std
        })
        .collect()
}

/// Every tensor the model asks for, made up: norm weights 1, everything else uniform with the
/// variance of a `1/sqrt(fan_in)` initialisation.
struct RandomWeights;

impl SimpleBackend for RandomWeights {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _init: Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        if name.contains("norm") {
            return Tensor::ones(shape, dtype, device);
        }
        let fan_in = shape.dims().last().copied().unwrap_or(1).max(1);
        let seed = name
            .bytes()
            .fold(17u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
        let v = values(shape.elem_count(), seed, 1.0 / (fan_in as f32).sqrt());
        Tensor::from_vec(v, shape, device)?.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("random weights: {name} requested without a shape")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// Inputs of a `frames x height x width` latent grid, `audio` audio tokens and `text` text
/// tokens for `cfg`.
fn inputs(
    cfg: &TransformerConfig,
    grid: VideoGrid,
    audio: usize,
    text: usize,
    device: &Device,
    dtype: DType,
) -> (ModalityInput, ModalityInput) {
    let tv = grid.tokens();
    let t = |n: usize, c: usize, seed: u64| {
        Tensor::from_vec(values(n * c, seed, 1.0), (1, n, c), device)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    };
    let sigma = Tensor::new(&[0.6f32], device).unwrap();
    let steps = |n: usize| Tensor::full(0.6f32, (1, n, 1), device).unwrap();
    let vpos = video_positions(1, grid, 24.0, ScaleFactors::default(), true, device).unwrap();
    let timing = models::ltx2::transformer::positions::AudioTiming {
        sample_rate: 16_000,
        hop_length: 160,
        latent_downsample: 4,
        causal: true,
        shift: 0,
    };
    let apos = audio_positions(1, audio, timing, device).unwrap();
    let video = ModalityInput::new(
        t(tv, cfg.in_channels, 1),
        steps(tv),
        sigma.clone(),
        vpos,
        t(text, cfg.caption_channels, 2),
    );
    let audio = ModalityInput::new(
        t(audio, cfg.audio_in_channels, 3),
        steps(audio),
        sigma,
        apos,
        t(text, cfg.caption_channels, 4),
    );
    (video, audio)
}

/// The tiny fixture model at its own config.
fn tiny(device: &Device) -> Case {
    let path = models::parity::model_path("ltx2-tiny.safetensors");
    let header = CheckpointHeader::read(&path).unwrap();
    // SAFETY: the fixture file is read-only and not modified while mapped.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&path], DType::F32, device) }.unwrap();
    let model = LtxAvModel::from_checkpoint(&header, vb).unwrap();
    let grid = VideoGrid {
        frames: 2,
        height: 8,
        width: 8,
    };
    let (audio_tokens, text) = (25, 64);
    let (video, audio) = inputs(model.config(), grid, audio_tokens, text, device, DType::F32);
    let flops =
        flops::forward(&Dims::of(model.config()), grid.tokens(), audio_tokens, text).total();
    Case {
        name: format!("tiny {} tokens", grid.tokens()),
        model,
        video,
        audio,
        flops,
    }
}

/// A mid-size model with random weights: the tiny fixture's config with wider streams and
/// more blocks.
fn mid(device: &Device, dtype: DType) -> Case {
    let path = models::parity::model_path("ltx2-tiny.safetensors");
    let header = CheckpointHeader::read(&path).unwrap();
    let mut cfg = TransformerConfig::from_header(&header).unwrap();
    let ci = crate::ci_sized();
    let (layers, heads, grid) = if ci {
        (
            2,
            4,
            VideoGrid {
                frames: 2,
                height: 8,
                width: 16,
            },
        )
    } else {
        (
            8,
            8,
            VideoGrid {
                frames: 4,
                height: 16,
                width: 24,
            },
        )
    };
    cfg.num_layers = layers;
    cfg.num_attention_heads = heads;
    cfg.attention_head_dim = 128;
    cfg.audio_num_attention_heads = heads;
    cfg.audio_attention_head_dim = 64;
    cfg.cross_attention_dim = heads * 128;
    cfg.audio_cross_attention_dim = heads * 64;
    cfg.caption_channels = heads * 128;
    let vb = VarBuilder::from_backend(Box::new(RandomWeights), dtype, device.clone());
    let model = LtxAvModel::new(&cfg, vb).unwrap();
    let (audio_tokens, text) = (25, 128);
    let (video, audio) = inputs(&cfg, grid, audio_tokens, text, device, dtype);
    let flops = flops::forward(&Dims::of(&cfg), grid.tokens(), audio_tokens, text).total();
    Case {
        name: format!(
            "mid {layers}x{} {} tokens {dtype:?}",
            heads * 128,
            grid.tokens()
        ),
        model,
        video,
        audio,
        flops,
    }
}

fn run(c: &mut Criterion, device_name: &str, device: &Device, case: Case) {
    let mut group = c.benchmark_group(format!("transformer step ({device_name})"));
    group.sample_size(10);
    // Throughput in "elements" = FLOPs: criterion prints Gelem/s = GFLOP/s.
    group.throughput(Throughput::Elements(case.flops as u64));
    let opts = ForwardOptions::default();
    group.bench_function(&case.name, |b| {
        b.iter(|| {
            let out = case
                .model
                .forward(Some(&case.video), Some(&case.audio), &opts)
                .unwrap();
            crate::sync(device);
            out
        })
    });
    group.finish();
}

/// Registers the transformer benchmarks.
pub fn bench(c: &mut Criterion) {
    for (name, device) in crate::devices() {
        run(c, name, &device, tiny(&device));
        let dtype = if device.is_cuda() {
            DType::BF16
        } else {
            DType::F32
        };
        run(c, name, &device, mid(&device, dtype));
    }
}
