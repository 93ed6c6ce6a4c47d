//! An LTX-2 text-to-video run with real model files, timed stage by stage: text encode (Gemma
//! 3 + connectors; the encoder is dropped afterwards unless `--keep-text-encoder`), transformer
//! load, the denoising loop (seconds per step, MFU against the matmul peak measured in the same
//! run), VAE decode (tiled within `--vae-budget-gb`) and audio decode, with the peak memory of
//! every stage and the end-to-end time.
//!
//! ```text
//! cargo bench --features cuda --bench ltx2_workflow -- \
//!     --ltx ltx-2-19b-distilled-fp8.safetensors --gemma gemma_3_12B_it.safetensors \
//!     --device cuda:0 --width 768 --height 512 --frames 121
//! ```
//! Without `--ltx` it prints the FLOP estimates of LTX-2 19B at the usual sizes (what
//! `benches/RESULTS.md` records for machines without a GPU) and exits. The tiny fixture
//! models run it end to end on a CPU (`--ltx .../ltx2-tiny.safetensors --gemma
//! .../gemma3-tiny-comfy.safetensors --width 256 --height 256 --frames 17`).

#[path = "../common/flops.rs"]
#[allow(dead_code)]
mod flops;
mod memory;
mod peak;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use clap::Parser;
use flops::Dims;
use models::checkpoint::CheckpointHeader;
use models::ltx2::audio_vae::{AudioVae, Config as AudioVaeConfig};
use models::ltx2::pipeline::{
    AvContexts, AvGuidance, AvNoise, GuidedDenoiser, GuiderParams, GuiderSchedule, LatentLayout,
    PassBatching, VideoPixelShape, denoise_audio_video,
};
use models::ltx2::text::LtxTextEncoder;
use models::ltx2::transformer::{LtxAvModel, TransformerConfig};
use models::ltx2::video_vae::{LatentDims, Target, VideoVae, plan_for_budget};
use models::sampling::scheduler::{DISTILLED_SIGMA_VALUES, Ltx2SchedulerParams, ltx2_sigmas};
use models::weights::WeightFiles;

/// Command line.
#[derive(Debug, Parser)]
struct Args {
    /// The LTX-2 single-file checkpoint (transformer, VAEs, vocoder, connectors).
    #[arg(long)]
    ltx: Option<PathBuf>,
    /// The Gemma 3 text encoder (ComfyUI single file or Hugging Face folder).
    #[arg(long)]
    gemma: Option<PathBuf>,
    /// `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "cuda:0")]
    device: String,
    /// Working dtype (`bf16` or `f32`; default bf16 on a GPU, f32 on the CPU).
    #[arg(long)]
    dtype: Option<String>,
    #[arg(long, default_value_t = 768)]
    width: usize,
    #[arg(long, default_value_t = 512)]
    height: usize,
    #[arg(long, default_value_t = 121)]
    frames: usize,
    #[arg(long, default_value_t = 24.0)]
    fps: f64,
    /// Denoising steps with the LTX-2 scheduler; 0 = the distilled 8-step sigmas.
    #[arg(long, default_value_t = 0)]
    steps: usize,
    /// Classifier-free guidance scale of both streams (1 = off, one pass per step).
    #[arg(long, default_value_t = 1.0)]
    cfg: f64,
    #[arg(
        long,
        default_value = "A red fox runs through fresh snow at dawn, the camera tracking it low over the ground."
    )]
    prompt: String,
    /// Memory budget of the tiled VAE decode, GiB.
    #[arg(long, default_value_t = 8.0)]
    vae_budget_gb: f64,
    /// Keep the text encoder loaded during the denoising loop.
    #[arg(long)]
    keep_text_encoder: bool,
    /// Accepted for `cargo bench` (which passes it); ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// One line of the report.
struct Stage {
    name: String,
    seconds: f64,
    peak_bytes: u64,
}

/// `flops` (or FLOP/s) with a readable prefix.
fn si(flops: f64) -> String {
    match flops {
        f if f >= 1e12 => format!("{:.2} T", f / 1e12),
        f if f >= 1e9 => format!("{:.2} G", f / 1e9),
        f => format!("{:.2} M", f / 1e6),
    }
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

fn open_device(spec: &str) -> anyhow::Result<Device> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        _ => {
            let ordinal = spec.strip_prefix("cuda:").unwrap_or("0").parse()?;
            Device::new_cuda(ordinal).with_context(|| format!("opening {spec}"))
        }
    }
}

/// FLOP estimates of LTX-2 19B (one pass per step) at the sizes of `anchors.md` §4.5.
fn print_estimates() {
    println!("LTX-2 19B transformer, FLOPs per forward (one guidance pass), 1,024 text tokens:");
    println!(
        "{:>18} {:>7} {:>5} {:>10} {:>12} {:>12}",
        "size", "video", "audio", "TFLOP", "bf16@800T", "fp8-lin@1600T"
    );
    for (w, h, f) in [
        (768, 512, 121),
        (640, 352, 121),
        (384, 256, 121),
        (1280, 704, 121),
        (1536, 1024, 121),
    ] {
        let (v, a) = (flops::video_tokens(w, h, f), flops::audio_tokens(f, 24.0));
        let fl = flops::forward(&Dims::LTX2_19B, v, a, 1024);
        let bf16 = fl.total() / 800e12;
        let fp8 = fl.linear / 1600e12 + (fl.text + fl.attention) / 800e12;
        println!(
            "{:>18} {v:>7} {a:>5} {:>10.1} {:>10.0}ms {:>10.0}ms",
            format!("{w}x{h}x{f}"),
            fl.total() / 1e12,
            bf16 * 1e3,
            fp8 * 1e3
        );
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (Some(ltx), Some(gemma)) = (args.ltx.clone(), args.gemma.clone()) else {
        print_estimates();
        println!("(estimates only: pass --ltx and --gemma to run a workflow)");
        return Ok(());
    };
    let device = open_device(&args.device)?;
    let dtype = match args.dtype.as_deref() {
        Some("bf16") => DType::BF16,
        Some("f32") => DType::F32,
        Some(other) => anyhow::bail!("unknown dtype {other}"),
        None if device.is_cuda() => DType::BF16,
        None => DType::F32,
    };
    println!(
        "device {:?}, dtype {dtype:?}, kernels fused: {}",
        device,
        kernels::fused_on(&device)
    );
    let (peak_n, peak_tflops) = peak::matmul_peak(&device, dtype)?;
    let peak_flops = peak_tflops * 1e12;
    println!(
        "measured {dtype:?} matmul peak: {}FLOP/s ({peak_n}^3)",
        si(peak_flops)
    );

    let sampler = memory::Sampler::start(&device);
    let mut stages = Vec::new();
    let run_start = Instant::now();
    let stage = |name: &str, start: Instant, stages: &mut Vec<Stage>| {
        device.synchronize().ok();
        stages.push(Stage {
            name: name.to_string(),
            seconds: start.elapsed().as_secs_f64(),
            peak_bytes: sampler.take_peak(),
        });
    };

    // Text encoding; the encoder is dropped afterwards (offloaded) unless asked to stay.
    let t = Instant::now();
    let encoder = LtxTextEncoder::load(&gemma, &ltx, dtype, &device)?;
    stage("text encoder load", t, &mut stages);
    let t = Instant::now();
    let positive = encoder.encode(&args.prompt)?;
    let negative = if args.cfg != 1.0 {
        Some(encoder.encode("")?)
    } else {
        None
    };
    stage("text encode", t, &mut stages);
    let kept = args.keep_text_encoder.then_some(encoder);
    let contexts = |e: &models::ltx2::text::TextEncoding| AvContexts {
        video: e.video_context.clone(),
        audio: e.audio_context.clone(),
    };

    // Transformer.
    let t = Instant::now();
    let header = CheckpointHeader::read(&ltx)?;
    let files = WeightFiles::open(&[&ltx])?;
    let model = LtxAvModel::from_checkpoint(&header, files.var_builder(dtype, &device)?)?;
    stage("transformer load", t, &mut stages);

    let config = header.config()?;
    let audio_cfg = AudioVaeConfig::from_json(&config["audio_vae"])?;
    let cfg = TransformerConfig::from_header(&header)?;
    let layout = LatentLayout::from_configs(&cfg, &audio_cfg)?;
    let shape = VideoPixelShape {
        batch: 1,
        frames: args.frames,
        height: args.height,
        width: args.width,
        fps: args.fps,
    };
    let grid = layout.video_grid(&shape);
    let audio_tokens = layout.audio_frames(&shape);
    let sigmas: Vec<f32> = if args.steps == 0 {
        DISTILLED_SIGMA_VALUES.to_vec()
    } else {
        ltx2_sigmas(&Ltx2SchedulerParams {
            steps: args.steps,
            tokens: Some(grid.tokens()),
            ..Default::default()
        })
    };
    let params = GuiderParams {
        cfg_scale: args.cfg,
        ..GuiderParams::default()
    };
    let passes = if params.needs_negative() { 2 } else { 1 };
    let guidance = AvGuidance {
        video: GuiderSchedule::constant(params.clone()),
        audio: GuiderSchedule::constant(params),
        positive: contexts(&positive),
        negative: negative.as_ref().map(contexts),
        batching: PassBatching::Sequential,
    };
    let text_tokens = positive.video_context.dim(1)?;
    let step_flops = passes as f64
        * flops::forward(&Dims::of(&cfg), grid.tokens(), audio_tokens, text_tokens).total();
    let noise = AvNoise {
        video: Tensor::randn(
            0f32,
            1.0,
            (1, grid.tokens(), layout.video_channels),
            &device,
        )?
        .to_dtype(dtype)?,
        audio: Tensor::randn(
            0f32,
            1.0,
            (
                1,
                audio_tokens,
                layout.audio_channels * layout.audio_mel_bins,
            ),
            &device,
        )?
        .to_dtype(dtype)?,
        scale: 1.0,
    };
    println!(
        "{}x{}x{} @ {} fps: {} video + {audio_tokens} audio tokens, {text_tokens} text tokens, \
         {} steps x {passes} pass(es), {}FLOP per step",
        args.width,
        args.height,
        args.frames,
        args.fps,
        grid.tokens(),
        sigmas.len() - 1,
        si(step_flops)
    );

    // Denoising loop, each step timed to the device's completion.
    let t = Instant::now();
    let mut step_times = Vec::new();
    let mut last = Instant::now();
    let mut denoiser = GuidedDenoiser::new(&model, &guidance);
    let latents = denoise_audio_video(
        &model,
        &mut denoiser,
        &layout,
        &shape,
        &noise,
        &sigmas,
        &mut |trace| {
            device.synchronize()?;
            let secs = last.elapsed().as_secs_f64();
            last = Instant::now();
            println!(
                "  step {} sigma {:.4}: {secs:.3} s, {:.1}% MFU",
                trace.step,
                trace.sigma,
                100.0 * step_flops / secs / peak_flops
            );
            step_times.push(secs);
            Ok(())
        },
    )?;
    stage("denoise loop", t, &mut stages);
    drop(denoiser);
    drop(model);
    drop(kept);

    // Decode: video tiled within the budget, then audio.
    let t = Instant::now();
    let vae = VideoVae::load(&ltx, dtype, &device)?;
    let (_, _, frames, height, width) = latents.video.dims5()?;
    let dims = LatentDims {
        batch: 1,
        frames,
        height,
        width,
    };
    let budget = (args.vae_budget_gb * (1u64 << 30) as f64) as usize;
    let tiling = plan_for_budget(
        vae.config(),
        dims,
        Target::new(&device, dtype),
        budget,
        2,
        0,
    )?;
    let decode_noise = latents.video.randn_like(0.0, 1.0)?;
    let video = vae.decode_tiled(&latents.video, None, Some(&decode_noise), &tiling)?;
    stage("video VAE decode", t, &mut stages);
    let t = Instant::now();
    let audio_vae = AudioVae::new(&config, false, files.var_builder(dtype, &device)?)?;
    let audio = audio_vae.decode(&latents.audio)?;
    stage("audio decode", t, &mut stages);
    let end_to_end = run_start.elapsed().as_secs_f64();

    let mut sorted = step_times.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN);
    println!();
    println!(
        "{:<22} {:>9} {:>12}",
        "stage",
        "seconds",
        format!("peak {}", sampler.what)
    );
    for s in &stages {
        println!(
            "{:<22} {:>9.2} {:>9.2} GiB",
            s.name,
            s.seconds,
            gib(s.peak_bytes)
        );
    }
    println!(
        "seconds per step: median {median:.3} (first {:.3}); {}FLOP/s, MFU {:.1}% of the \
         measured {}FLOP/s",
        step_times.first().copied().unwrap_or(f64::NAN),
        si(step_flops / median),
        100.0 * step_flops / median / peak_flops,
        si(peak_flops)
    );
    println!(
        "end to end: {end_to_end:.2} s; video {:?}, audio {:?}",
        video.dims(),
        audio.waveform.dims()
    );
    Ok(())
}
