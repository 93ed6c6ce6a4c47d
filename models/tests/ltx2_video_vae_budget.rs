//! The tiled decode's memory stays within its budget, measured with a counting allocator.
//!
//! On CPU every tensor is a heap allocation, so the heap growth during a decoder call is the
//! call's real working set. The footprint model must bound it (it is the number a budget is
//! checked against), and the plan chosen for a budget must fit that budget. One test per
//! binary: the counters are process-wide.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::{DType, Device, Tensor};
use models::ltx2::video_vae::{
    CallPhase, LatentDims, Target, TiledDecode, TilingConfig, VideoVae, estimate, plan_for_budget,
};
use models::parity::model_path;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
/// Highest heap size since the last [`start_call`].
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Highest heap size since the last [`start_measure`].
static PEAK_ALL: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(now, Ordering::SeqCst);
            PEAK_ALL.fetch_max(now, Ordering::SeqCst);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Starts a measurement: returns the current heap size and resets both peaks to it.
fn start_measure() -> usize {
    let now = start_call();
    PEAK_ALL.store(now, Ordering::SeqCst);
    now
}

/// Starts measuring one call: returns the current heap size and resets the call peak to it.
fn start_call() -> usize {
    let now = CURRENT.load(Ordering::SeqCst);
    PEAK.store(now, Ordering::SeqCst);
    now
}

/// Heap growth since `base` at its highest during the current call.
fn call_growth_since(base: usize) -> usize {
    PEAK.load(Ordering::SeqCst).saturating_sub(base)
}

/// Heap growth since `base` at its highest during the whole measurement.
fn growth_since(base: usize) -> usize {
    PEAK_ALL.load(Ordering::SeqCst).saturating_sub(base)
}

fn latent(vae: &VideoVae, dims: LatentDims, seed: u32) -> Tensor {
    let c = vae.config().latent_channels;
    let n = dims.batch * c * dims.frames * dims.height * dims.width;
    let values: Vec<f32> = (0..n as u32)
        .map(|i| {
            ((i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32 / (1 << 24) as f32)
                * 4.0
                - 2.0
        })
        .collect();
    Tensor::from_vec(
        values,
        (dims.batch, c, dims.frames, dims.height, dims.width),
        &Device::Cpu,
    )
    .unwrap()
}

#[test]
fn tiled_decode_stays_within_its_budget() {
    let vae = VideoVae::load(
        &model_path("ltx2-tiny.safetensors"),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let cfg = vae.config();
    let elem = DType::F32.size_in_bytes();
    let target = Target::new(&Device::Cpu, DType::F32);
    // Warm up the thread pool and lazily allocated state before measuring.
    let small = LatentDims {
        batch: 1,
        frames: 2,
        height: 2,
        width: 2,
    };
    vae.decode(&latent(&vae, small, 1), None, Some(&latent(&vae, small, 2)))
        .unwrap();

    let dims = LatentDims {
        batch: 1,
        frames: 4,
        height: 10,
        width: 12,
    };
    let (z, noise) = (latent(&vae, dims, 3), latent(&vae, dims, 4));

    // Whole-video decode: measured against its own estimate.
    let untiled = estimate(cfg, dims, target, &TilingConfig::default()).unwrap();
    let base = start_measure();
    let whole = vae.decode(&z, None, Some(&noise)).unwrap();
    let measured_whole = growth_since(base) - (whole.elem_count() * elem);
    println!(
        "untiled: measured {measured_whole} B, estimated call {} B (total {} B)",
        untiled.max_call_bytes, untiled.total_bytes
    );
    assert!(measured_whole <= untiled.max_call_bytes);
    drop(whole);

    // A budget for the decoder calls of a quarter of what the untiled call needs (the joined
    // output frames are the caller's, e.g. moved to the host): the plan must tile and fit.
    let budget = untiled.max_call_bytes / 4;
    let calls_only = Target {
        blend_on_device: false,
        ..target
    };
    let plan = plan_for_budget(cfg, dims, calls_only, budget, 1, 0).unwrap();
    let planned = estimate(cfg, dims, calls_only, &plan).unwrap();
    println!("budget {budget} B -> {plan:?}: {planned:?}");
    assert!(planned.total_bytes <= budget);
    // The plan, and explicit configurations with temporal chunks (streams holding state
    // between calls) and small pieces.
    let chunked = TilingConfig {
        tile: Some(5),
        overlap: 1,
        context: 1,
        chunk: Some(1),
        piece_bytes: 1 << 20,
    };
    let whole_frames = TilingConfig {
        chunk: Some(2),
        piece_bytes: 2 << 20,
        ..TilingConfig::default()
    };
    for tiling in [plan, chunked, whole_frames] {
        let calls = estimate(cfg, dims, calls_only, &tiling).unwrap();
        let with_join = estimate(cfg, dims, target, &tiling).unwrap();
        let (largest_call, overall, tiles) = measure_tiled_decode(&vae, &z, &noise, &tiling);
        println!(
            "{tiling:?} ({tiles} tiles): largest call measured {largest_call} B / estimated {} B; \
             whole decode with joining measured {overall} B / estimated {} B",
            calls.max_call_bytes, with_join.total_bytes
        );
        assert!(largest_call <= calls.max_call_bytes);
        assert!(overall <= with_join.total_bytes);
        if tiling == plan {
            assert!(
                tiles > 1,
                "a quarter of the untiled need should force tiles"
            );
            assert!(largest_call <= budget);
        }
    }
}

/// Runs a tiled decode and returns (largest heap growth of one decoder call, largest heap
/// growth of the whole decode, tile count). Output chunks are dropped as they arrive.
fn measure_tiled_decode(
    vae: &VideoVae,
    z: &Tensor,
    noise: &Tensor,
    tiling: &TilingConfig,
) -> (usize, usize, usize) {
    let largest_call = Cell::new(0usize);
    let call_base = Cell::new(0usize);
    let base = start_measure();
    let decode = TiledDecode::new(vae, z, None, Some(noise), tiling)
        .unwrap()
        .with_call_observer(|phase| match phase {
            CallPhase::Start => call_base.set(start_call()),
            CallPhase::End => {
                largest_call.set(largest_call.get().max(call_growth_since(call_base.get())))
            }
        });
    let tiles = decode.tile_count();
    let mut frames = 0;
    for chunk in decode {
        frames += chunk.unwrap().dim(2).unwrap();
    }
    assert_eq!(frames, vae.decoder().out_frames(z.dim(2).unwrap()));
    let overall = growth_since(base);
    (largest_call.get(), overall, tiles)
}
