//! The stages around the transformer, on the tiny fixture models: video VAE decode (whole
//! latent) and text encode (Gemma + feature extractor + connectors).

use candle_core::{DType, Tensor};
use criterion::Criterion;
use models::ltx2::text::LtxTextEncoder;
use models::ltx2::video_vae::VideoVae;
use models::parity::model_path;

/// Registers the VAE decode and text encode benchmarks.
pub fn bench(c: &mut Criterion) {
    for (name, device) in crate::devices() {
        let mut group = c.benchmark_group(format!("pipeline ({name})"));
        group.sample_size(10);
        let vae =
            VideoVae::load(&model_path("ltx2-tiny.safetensors"), DType::F32, &device).unwrap();
        let (f, h, w) = if crate::ci_sized() {
            (2, 4, 4)
        } else {
            (4, 8, 8)
        };
        let shape = (1, vae.config().latent_channels, f, h, w);
        let latent = Tensor::randn(0f32, 1., shape, &device).unwrap();
        let noise = Tensor::randn(0f32, 1., shape, &device).unwrap();
        let frames = 1 + (f - 1) * 8;
        group.bench_function(
            format!(
                "tiny video VAE decode {f}x{h}x{w} -> {frames}x{}x{}",
                h * 32,
                w * 32
            ),
            |b| {
                b.iter(|| {
                    let out = vae.decode(&latent, None, Some(&noise)).unwrap();
                    crate::sync(&device);
                    out
                })
            },
        );
        let encoder = LtxTextEncoder::load(
            &model_path("gemma3-tiny-comfy.safetensors"),
            &model_path("ltx2-tiny.safetensors"),
            DType::F32,
            &device,
        )
        .unwrap();
        let prompt = "A red fox runs through fresh snow at dawn, the camera tracking it low \
                      over the ground while its breath steams in the cold air.";
        group.bench_function("tiny text encode (one prompt)", |b| {
            b.iter(|| {
                let out = encoder.encode(prompt).unwrap();
                crate::sync(&device);
                out
            })
        });
        group.finish();
    }
}
