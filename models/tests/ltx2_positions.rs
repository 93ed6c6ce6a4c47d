//! RoPE positions built from latent grids against the positions ltx-core produced.

use candle_core::Device;
use models::ltx2::transformer::positions::{
    AudioTiming, ScaleFactors, VideoGrid, audio_positions, video_positions,
};
use models::parity::{Checks, compare};

fn usize_param(p: &serde_json::Value, path: &[&str]) -> usize {
    let mut v = p;
    for k in path {
        v = &v[*k];
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("param {path:?} missing")) as usize
}

fn exact(label: &str, actual: &candle_core::Tensor, expected: &candle_core::Tensor) {
    let r = compare(actual, expected);
    println!("{label}: max_abs {:.3e}", r.max_abs);
    assert_eq!(r.max_abs, 0.0, "{label} differs from the reference");
}

#[test]
fn transformer_check_positions_match_the_latent_grid() {
    let c = Checks::open("a_transformer");
    let p = c.params();
    let fhw = &p["video_latent_fhw"];
    let grid = VideoGrid {
        frames: fhw[0].as_u64().unwrap() as usize,
        height: fhw[1].as_u64().unwrap() as usize,
        width: fhw[2].as_u64().unwrap() as usize,
    };
    let fps = p["fps"].as_f64().unwrap();
    let batch = c.get("in.video_positions").dim(0).unwrap();
    let dev = Device::Cpu;
    let video = video_positions(batch, grid, fps, ScaleFactors::default(), true, &dev).unwrap();
    exact("in.video_positions", &video, &c.f32("in.video_positions"));
    let frames = usize_param(&p, &["audio_latent_frames"]);
    let audio = audio_positions(batch, frames, AudioTiming::default(), &dev).unwrap();
    exact("in.audio_positions", &audio, &c.f32("in.audio_positions"));
}

#[test]
fn denoise_loop_video_positions_match_the_pixel_shape() {
    let c = Checks::open("g_denoise_loop");
    let p = c.params();
    let shape = &p["shape"];
    let scale = ScaleFactors::default();
    let grid = VideoGrid::from_pixels(
        usize_param(shape, &["frames"]),
        usize_param(shape, &["height"]),
        usize_param(shape, &["width"]),
        scale,
    );
    let fps = shape["fps"].as_f64().unwrap();
    let batch = usize_param(shape, &["batch"]);
    let video = video_positions(batch, grid, fps, scale, true, &Device::Cpu).unwrap();
    exact("dbg.video_positions", &video, &c.f32("dbg.video_positions"));
}
