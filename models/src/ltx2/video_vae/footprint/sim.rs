//! The decoder stream's frame bookkeeping replayed on sizes only, with the bytes each step
//! holds (see the parent module's docs).

use super::super::config::{DecoderBlock, VaeConfig};
use crate::{Error, Result};

/// Elements of CUDA conv2d's im2col matrix per input element (3x3 kernels).
pub(super) const IM2COL_FACTOR: usize = 9;
/// Output pixels per task of candle's CPU conv2d (its `TILE_SIZE`); each running task holds
/// an im2col tile and a result tile of that many pixels.
pub(super) const CPU_CONV_TILE: usize = 512;
/// Allowance for the small allocations of a call (shapes, kernel copies, thread-locals).
pub(super) const CALL_OVERHEAD: usize = 1 << 20;

/// One causal conv's frame bookkeeping (mirrors `ConvStream`).
#[derive(Debug, Clone)]
pub(super) struct ConvSim {
    causal: bool,
    started: bool,
    carry: usize,
}

impl ConvSim {
    fn new(causal: bool) -> Self {
        Self {
            causal,
            started: false,
            carry: 0,
        }
    }

    /// (frames concatenated, frames out) for `n` frames in.
    fn push(&mut self, n: usize, last: bool) -> (usize, usize) {
        let mut total = self.carry + n;
        if !self.started {
            if n == 0 {
                return (0, 0);
            }
            total += if self.causal { 2 } else { 1 };
            self.started = true;
        }
        if total == 0 {
            return (0, 0);
        }
        if last && !self.causal {
            total += 1;
        }
        let out = total.saturating_sub(2);
        self.carry = if last { 0 } else { total - out };
        (total, out)
    }
}

/// Sizes shared by the simulation: batch, element bytes, piece/scratch cap, padding, conv2d
/// scratch per input element.
#[derive(Debug, Clone, Copy)]
pub(super) struct Env {
    pub(super) batch: usize,
    pub(super) elem: usize,
    pub(super) scratch: usize,
    pub(super) padded: bool,
    pub(super) im2col: bool,
    pub(super) threads: usize,
}

impl Env {
    pub(super) fn bytes(&self, frames: usize, channels: usize, h: usize, w: usize) -> usize {
        self.batch * frames * channels * h * w * self.elem
    }

    /// Working set of one conv push beyond the state and upstream tensors: the concatenated
    /// input (briefly beside its pieces), the padded copy, the conv2d scratch of a group
    /// (input copy or im2col matrix, running sum, tap output, new sum) and, when grouped, the
    /// preallocated output.
    fn conv(&self, all: usize, out: usize, cin: usize, cout: usize, h: usize, w: usize) -> usize {
        let input = self.bytes(all, cin, h, w);
        if out == 0 {
            return 2 * input;
        }
        let per_frame = self.bytes(1, cin, h, w) * IM2COL_FACTOR;
        let group = (self.scratch / per_frame.max(1)).clamp(1, out);
        let pad = if self.padded {
            self.bytes(all, cin, h + 2, w + 2)
        } else {
            0
        };
        let group_in = self.bytes(group, cin, h + 2, w + 2);
        let scratch = if self.im2col {
            group_in * IM2COL_FACTOR
        } else {
            let tiles = self.threads * CPU_CONV_TILE * (IM2COL_FACTOR * cin + cout) * self.elem;
            group_in + tiles.min(group_in * IM2COL_FACTOR + self.bytes(group, cout, h, w))
        };
        let work =
            scratch + 3 * self.bytes(group, cout, h, w) + cout * cin * IM2COL_FACTOR * self.elem;
        let grouped_out = if group < out {
            self.bytes(out, cout, h, w)
        } else {
            0
        };
        (2 * input).max(input + pad + work + grouped_out)
    }
}

/// One residual block's bookkeeping.
#[derive(Debug, Clone)]
pub(super) struct ResSim {
    convs: [ConvSim; 2],
    queue: usize,
}

/// One stage of the simulated decoder (the granularity at which outputs are cut into pieces).
#[derive(Debug, Clone)]
pub(super) enum Stage {
    /// `conv_in`, or the output head (norm, `conv_out`, unpatchify) when `head`.
    Conv {
        sim: ConvSim,
        cin: usize,
        cout: usize,
        scale: usize,
        head: bool,
    },
    /// A `res_x` stack.
    Res {
        blocks: Vec<ResSim>,
        channels: usize,
        scale: usize,
    },
    /// A depth-to-space block.
    Up {
        sim: ConvSim,
        cin: usize,
        cout: usize,
        stride: [usize; 3],
        residual: bool,
        conv_started: bool,
        skip_started: bool,
        queue: usize,
        scale: usize,
    },
}

impl Stage {
    /// Bytes this stage's stream state holds, for a tile of `h x w` latents.
    fn held(&self, e: &Env, h: usize, w: usize) -> usize {
        match self {
            Self::Conv {
                sim, cin, scale, ..
            } => e.bytes(sim.carry, *cin, h * scale, w * scale),
            Self::Res {
                blocks,
                channels,
                scale,
            } => blocks
                .iter()
                .map(|b| b.convs[0].carry + b.convs[1].carry + b.queue)
                .map(|frames| e.bytes(frames, *channels, h * scale, w * scale))
                .sum(),
            Self::Up {
                sim,
                cin,
                cout,
                stride,
                queue,
                scale,
                ..
            } => {
                let factor: usize = stride.iter().product();
                e.bytes(sim.carry, *cin, h * scale, w * scale)
                    + e.bytes(
                        *queue,
                        cout / factor,
                        h * scale * stride[1],
                        w * scale * stride[2],
                    )
            }
        }
    }

    /// Feeds `n` frames; returns (frames out, working bytes beyond upstream and state, bytes
    /// of the output tensor).
    fn push(
        &mut self,
        e: &Env,
        h0: usize,
        w0: usize,
        n: usize,
        last: bool,
    ) -> (usize, usize, usize) {
        match self {
            Self::Conv {
                sim,
                cin,
                cout,
                scale,
                head,
            } => {
                let (h, w) = (h0 * *scale, w0 * *scale);
                let (all, out) = sim.push(n, last);
                let mut work =
                    (3 * e.bytes(n, *cin, h, w)).max(e.conv(all, out, *cin, *cout, h, w));
                if *head {
                    work = work.max(2 * e.bytes(out, *cout, h, w));
                }
                (out, work, e.bytes(out, *cout, h, w))
            }
            Self::Res {
                blocks,
                channels,
                scale,
            } => {
                let (c, h, w) = (*channels, h0 * *scale, w0 * *scale);
                let mut frames = n;
                let mut work = 0;
                for block in blocks.iter_mut() {
                    block.queue += frames;
                    let waiting = e.bytes(block.queue, c, h, w);
                    let (all1, out1) = block.convs[0].push(frames, last);
                    let (all2, out2) = block.convs[1].push(out1, last);
                    let inner = (3 * e.bytes(frames, c, h, w))
                        .max(e.conv(all1, out1, c, c, h, w))
                        .max(4 * e.bytes(out1, c, h, w))
                        .max(e.conv(all2, out2, c, c, h, w))
                        .max(2 * e.bytes(out2, c, h, w));
                    work = work.max(waiting + inner);
                    block.queue -= out2;
                    frames = out2;
                }
                (frames, work, e.bytes(frames, c, h, w))
            }
            Self::Up {
                sim,
                cin,
                cout,
                stride,
                residual,
                conv_started,
                skip_started,
                queue,
                scale,
            } => {
                let (h, w) = (h0 * *scale, w0 * *scale);
                let factor: usize = stride.iter().product();
                let (cu, hu, wu) = (*cout / factor, h * stride[1], w * stride[2]);
                let drop = usize::from(stride[0] == 2);
                let mut skip_work = 0;
                if *residual && n > 0 {
                    *queue += n * stride[0] - if *skip_started { 0 } else { drop };
                    *skip_started = true;
                    skip_work = e.bytes(n, *cin, h, w) + 2 * e.bytes(*queue, cu, hu, wu);
                }
                let (all, out) = sim.push(n, last);
                let mut up = out * stride[0];
                if out > 0 && !*conv_started {
                    up -= drop;
                    *conv_started = true;
                }
                let waiting = e.bytes(*queue, cu, hu, wu);
                let conv = e.conv(all, out, *cin, *cout, h, w);
                let work = skip_work.max(waiting + conv.max(2 * e.bytes(up, cu, hu, wu)));
                if *residual {
                    *queue -= up;
                }
                (up, work, e.bytes(up, cu, hu, wu))
            }
        }
    }
}

/// The decoder stream's bookkeeping for one tile of `h x w` latents (mirrors
/// `VideoDecoder::push` and its piece-by-piece recursion).
#[derive(Debug, Clone)]
pub(super) struct StreamSim {
    stages: Vec<Stage>,
    env: Env,
    h: usize,
    w: usize,
}

/// What one simulated call needed.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct CallSim {
    pub(super) peak: usize,
    pub(super) released_frames: usize,
    pub(super) released_bytes: usize,
}

impl StreamSim {
    pub(super) fn new(cfg: &VaeConfig, env: Env, h: usize, w: usize) -> Result<Self> {
        let causal = cfg.causal_decoder;
        let mut channels = cfg.decoder_base_channels * 8;
        let mut scale = 1;
        let conv = |cin, cout, scale, head| Stage::Conv {
            sim: ConvSim::new(causal),
            cin,
            cout,
            scale,
            head,
        };
        let mut stages = vec![conv(cfg.latent_channels, channels, scale, false)];
        for block in &cfg.decoder_blocks {
            match *block {
                DecoderBlock::Res { num_layers, .. } => stages.push(Stage::Res {
                    blocks: (0..num_layers)
                        .map(|_| ResSim {
                            convs: [ConvSim::new(causal), ConvSim::new(causal)],
                            queue: 0,
                        })
                        .collect(),
                    channels,
                    scale,
                }),
                DecoderBlock::ResNarrow { .. } => {
                    return Err(Error::Config(
                        "footprint: res_x_y decoder blocks are not modelled".into(),
                    ));
                }
                DecoderBlock::DepthToSpace {
                    stride,
                    residual,
                    divisor,
                } => {
                    let factor: usize = stride.iter().product();
                    let cout = factor * channels / divisor;
                    stages.push(Stage::Up {
                        sim: ConvSim::new(causal),
                        cin: channels,
                        cout,
                        stride,
                        residual,
                        conv_started: false,
                        skip_started: false,
                        queue: 0,
                        scale,
                    });
                    channels = cout / factor;
                    scale *= stride[1];
                }
            }
        }
        let out_channels = cfg.out_channels * cfg.patch_size * cfg.patch_size;
        stages.push(conv(channels, out_channels, scale, true));
        Ok(Self { stages, env, h, w })
    }

    pub(super) fn held(&self) -> Vec<usize> {
        self.stages
            .iter()
            .map(|s| s.held(&self.env, self.h, self.w))
            .collect()
    }

    /// Feeds `n` latent frames; returns the call's peak (state included) and what it released.
    pub(super) fn push(&mut self, n: usize, last: bool) -> CallSim {
        let before = self.held();
        let mut call = CallSim::default();
        self.run(0, n, last, 0, &mut call);
        let held: usize = before
            .iter()
            .zip(self.held())
            .map(|(a, b)| (*a).max(b))
            .sum();
        call.peak = call.peak.max(2 * call.released_bytes) + held + CALL_OVERHEAD;
        call
    }

    fn run(&mut self, stage: usize, n: usize, last: bool, upstream: usize, call: &mut CallSim) {
        let env = self.env;
        let (h, w) = (self.h, self.w);
        let (out, work, out_bytes) = self.stages[stage].push(&env, h, w, n, last);
        call.peak = call.peak.max(upstream + call.released_bytes + work);
        if stage + 1 == self.stages.len() {
            call.released_frames += out;
            call.released_bytes += out_bytes;
            return;
        }
        if out == 0 {
            if last {
                self.run(stage + 1, 0, true, upstream, call);
            }
            return;
        }
        let per_piece = (env.scratch / (out_bytes / out).max(1)).clamp(1, out);
        let mut start = 0;
        while start < out {
            let len = per_piece.min(out - start);
            start += len;
            self.run(
                stage + 1,
                len,
                last && start == out,
                upstream + out_bytes,
                call,
            );
        }
    }
}
