//! Tiled and chunked decoding of the LTX-2 video VAE against the whole-video decode, on the
//! tiny fixture VAE with latents large enough for several tiles and chunks.
//!
//! Tolerances: temporal chunks and piece splitting run exactly the same per-voxel arithmetic
//! as the whole decode (the streams carry the frames each conv needs), so they must agree to
//! the last bit up to conv2d batching effects (checked at 1e-6 relative). Spatial tiles with
//! `context >= receptive_radius` see every latent an output pixel depends on, so they also
//! compute the same values; only the GEMM blocking of a smaller image can change rounding,
//! far below the 1e-5 parity tolerance of the VAE (checked at 1e-5 relative).

use candle_core::{DType, Device, Tensor};
use models::ltx2::video_vae::{TiledDecode, TilingConfig, VideoVae, receptive_radius};
use models::parity::{assert_close, model_path};

fn vae() -> VideoVae {
    VideoVae::load(
        &model_path("ltx2-tiny.safetensors"),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap()
}

/// Deterministic standard-normal-ish values (xorshift + Box-Muller).
fn pseudo_normal(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let values: Vec<f32> = (0..n)
        .map(|_| {
            let (u, v) = (uniform(), uniform());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

fn latent_and_noise(vae: &VideoVae, frames: usize, h: usize, w: usize) -> (Tensor, Tensor) {
    let c = vae.config().latent_channels;
    (
        pseudo_normal(&[1, c, frames, h, w], 1),
        pseudo_normal(&[1, c, frames, h, w], 2),
    )
}

#[test]
fn temporal_chunks_and_pieces_equal_the_whole_decode() {
    let vae = vae();
    // More latent frames than the decoder's temporal reach, so one-frame chunks release
    // frames before the end.
    let frames = receptive_radius(vae.config()) + 3;
    let (latent, noise) = latent_and_noise(&vae, frames, 2, 3);
    let whole = vae.decode(&latent, None, Some(&noise)).unwrap();
    for chunk in [1, 2, 3] {
        let tiling = TilingConfig {
            chunk: Some(chunk),
            ..TilingConfig::default()
        };
        let chunks: Vec<Tensor> = TiledDecode::new(&vae, &latent, None, Some(&noise), &tiling)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        if chunk == 1 {
            assert!(
                chunks.len() > 1,
                "one-frame chunks must release frames progressively"
            );
        }
        let video = Tensor::cat(&chunks, 2).unwrap();
        assert_close(&format!("chunk {chunk}"), &video, &whole, 1e-6);
    }
    // Pieces of a single frame at every stage, and conv2d calls of one frame each.
    let tiling = TilingConfig {
        chunk: Some(2),
        piece_bytes: 1,
        ..TilingConfig::default()
    };
    let video = vae
        .decode_tiled(&latent, None, Some(&noise), &tiling)
        .unwrap();
    assert_close("one-frame pieces", &video, &whole, 1e-6);
}

#[test]
fn spatial_tiles_with_full_context_equal_the_whole_decode() {
    let vae = vae();
    let radius = receptive_radius(vae.config());
    // A strip of tiles along the width, long enough that inner tiles (core plus context on
    // both sides) are cut out of the latent rather than covering all of it.
    let tile = 3;
    let width = tile + 2 * radius + 2 * tile;
    let (latent, noise) = latent_and_noise(&vae, 2, 2, width);
    let whole = vae.decode(&latent, None, Some(&noise)).unwrap();
    let tiling = TilingConfig {
        tile: Some(tile),
        overlap: 1,
        context: radius,
        chunk: Some(1),
        ..TilingConfig::default()
    };
    let decode = TiledDecode::new(&vae, &latent, None, Some(&noise), &tiling).unwrap();
    assert!(decode.tile_count() >= 5, "{} tiles", decode.tile_count());
    let video = Tensor::cat(&decode.collect::<Result<Vec<_>, _>>().unwrap(), 2).unwrap();
    assert_close("tiles with context", &video, &whole, 1e-5);
}

#[test]
fn spatial_tiles_without_context_are_exact_away_from_the_seams() {
    // ltx-core's blending (no context): pixels farther than the receptive radius from every
    // inner tile edge come from one tile that saw all they depend on, so they are exact;
    // seams differ (random weights make that difference large, it is not asserted small).
    let vae = vae();
    let radius = receptive_radius(vae.config());
    let scale = vae.decoder().scale()[1];
    let tile = 2 * radius + 4;
    let overlap = 2;
    let side = 2 * tile - overlap;
    let (latent, noise) = latent_and_noise(&vae, 2, side, 3);
    let whole = vae.decode(&latent, None, Some(&noise)).unwrap();
    let tiling = TilingConfig {
        tile: Some(tile),
        overlap,
        ..TilingConfig::default()
    };
    let video = vae
        .decode_tiled(&latent, None, Some(&noise), &tiling)
        .unwrap();
    assert_eq!(video.dims(), whole.dims());
    // Tiles along the height: [0, tile) and [tile - overlap, side); along the width one tile.
    let seam_lo = (tile - overlap - radius) * scale;
    let seam_hi = (tile + radius) * scale;
    let height = side * scale;
    for (rows, label) in [(0..seam_lo, "first tile"), (seam_hi..height, "second tile")] {
        let ours = video.narrow(3, rows.start, rows.len()).unwrap();
        let reference = whole.narrow(3, rows.start, rows.len()).unwrap();
        assert_close(label, &ours, &reference, 1e-5);
    }
    let seam = models::parity::compare(
        &video.narrow(3, seam_lo, seam_hi - seam_lo).unwrap(),
        &whole.narrow(3, seam_lo, seam_hi - seam_lo).unwrap(),
    );
    println!(
        "seam band (no context): max_abs {:.3e} max_rel {:.3e}",
        seam.max_abs, seam.max_rel
    );
}

#[test]
fn decoders_with_whole_video_norms_ignore_chunks_and_pieces() {
    // A `res_x_y` block normalises its skip over the whole video, so chunks or pieces would
    // change the result; the decoder must then take the video whole. Random weights.
    let cfg = models::ltx2::video_vae::VaeConfig::from_json(&serde_json::json!({
        "latent_channels": 8,
        "patch_size": 1,
        "decoder_base_channels": 4,
        "timestep_conditioning": false,
        "decoder_blocks": [["res_x", 1], ["res_x_y", {"multiplier": 2}],
                           ["compress_all", {"residual": true, "multiplier": 2}], ["res_x", 1]],
    }))
    .unwrap();
    // The first build creates the variables; randomise them, then build again from them
    // (the convolutions copy their kernels at construction).
    let varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    VideoVae::new(cfg.clone(), vb.clone()).unwrap();
    let vars = varmap.data().lock().unwrap().clone();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for (i, name) in names.into_iter().enumerate() {
        let var = &vars[name];
        var.set(&(pseudo_normal(var.dims(), 10 + i as u64) * 0.2).unwrap())
            .unwrap();
    }
    let vae = VideoVae::new(cfg, vb).unwrap();
    assert!(!vae.decoder().supports_temporal_chunks());
    let latent = pseudo_normal(&[1, 8, 4, 2, 3], 3);
    let whole = vae.decode(&latent, None, None).unwrap();
    let tiling = TilingConfig {
        chunk: Some(1),
        piece_bytes: 1,
        ..TilingConfig::default()
    };
    let tiled = vae.decode_tiled(&latent, None, None, &tiling).unwrap();
    assert_close(
        "res_x_y decoder, chunk 1, one-frame pieces",
        &tiled,
        &whole,
        1e-6,
    );
}
