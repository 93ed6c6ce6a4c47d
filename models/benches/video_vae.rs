//! Speed of the video VAE pieces on the current device (CPU here): one real-width 3x3x3
//! causal conv (conv3d as per-tap batched conv2d), and tiny-fixture decodes whole, in
//! temporal chunks and in spatial tiles. `cargo bench -p models --bench video_vae`.

use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use models::ltx2::video_vae::config::PaddingMode;
use models::ltx2::video_vae::conv::{Conv3d, UNBOUNDED_SCRATCH};
use models::ltx2::video_vae::{TilingConfig, VideoVae};

/// Median wall time of `runs` calls after one warm-up call.
fn time(runs: usize, mut f: impl FnMut()) -> Duration {
    f();
    let mut samples: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    samples.sort();
    samples[runs / 2]
}

fn bench_conv3d(device: &Device) {
    let (c, frames, h, w) = (128, 6, 64, 96);
    let weight = Tensor::randn(0f32, 0.05, (c, c, 3, 3, 3), device).unwrap();
    let bias = Tensor::zeros(c, DType::F32, device).unwrap();
    let conv = Conv3d::from_weights(weight, Some(bias), [1, 1, 1], PaddingMode::Zeros).unwrap();
    let x = Tensor::randn(0f32, 1., (1, frames + 2, c, h, w), device).unwrap();
    let t = time(5, || {
        conv.forward_frames(&x, UNBOUNDED_SCRATCH).unwrap();
    });
    let flops = 2.0 * (frames * h * w * c * c * 27) as f64;
    println!(
        "conv3d {c}->{c} k3 {frames}x{h}x{w} f32: {:.1} ms, {:.1} GFLOP/s",
        t.as_secs_f64() * 1e3,
        flops / t.as_secs_f64() / 1e9
    );
}

fn bench_decode(device: &Device) {
    let vae = VideoVae::load(
        &models::parity::model_path("ltx2-tiny.safetensors"),
        DType::F32,
        device,
    )
    .unwrap();
    let shape = (1, vae.config().latent_channels, 4, 8, 8);
    let latent = Tensor::randn(0f32, 1., shape, device).unwrap();
    let noise = Tensor::randn(0f32, 1., shape, device).unwrap();
    let label = "tiny VAE decode 4x8x8 latent -> 25x256x256";
    let whole = time(5, || {
        vae.decode(&latent, None, Some(&noise)).unwrap();
    });
    println!("{label}, whole: {:.1} ms", whole.as_secs_f64() * 1e3);
    let configs = [
        (
            "1-frame chunks",
            TilingConfig {
                chunk: Some(1),
                ..TilingConfig::default()
            },
        ),
        (
            "1 MiB pieces",
            TilingConfig {
                piece_bytes: 1 << 20,
                ..TilingConfig::default()
            },
        ),
        (
            "4-latent tiles, overlap 1",
            TilingConfig {
                tile: Some(4),
                overlap: 1,
                ..TilingConfig::default()
            },
        ),
    ];
    for (name, tiling) in configs {
        let t = time(5, || {
            vae.decode_tiled(&latent, None, Some(&noise), &tiling)
                .unwrap();
        });
        println!("{label}, {name}: {:.1} ms", t.as_secs_f64() * 1e3);
    }
}

fn main() {
    let device = Device::Cpu;
    bench_conv3d(&device);
    bench_decode(&device);
}
