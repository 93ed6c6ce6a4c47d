//! FLOP counts of one LTX-2 transformer forward (one guidance pass), from the module shapes of
//! `models::ltx2::transformer` (the derivation of `anchors.md` §4.5): `2·M·N·K` for every matmul,
//! element-wise work ignored.

/// The widths that decide the cost of a forward.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    /// Blocks.
    pub layers: usize,
    /// Video inner width (heads x head dim).
    pub video: usize,
    /// Audio inner width; also the width of the audio<->video cross-attentions.
    pub audio: usize,
    /// Video text cross-attention key/value source width.
    pub video_context: usize,
    /// Audio text cross-attention key/value source width.
    pub audio_context: usize,
    /// Caption features width (input of the caption projections).
    pub caption: usize,
    /// Latent channels in/out per video token.
    pub video_channels: usize,
    /// Latent channels in/out per audio token.
    pub audio_channels: usize,
}

impl Dims {
    /// LTX-2 19B (`anchors.md` §4.1).
    pub const LTX2_19B: Dims = Dims {
        layers: 48,
        video: 4096,
        audio: 2048,
        video_context: 4096,
        audio_context: 2048,
        caption: 3840,
        video_channels: 128,
        audio_channels: 128,
    };

    /// The widths of a loaded model's config.
    pub fn of(cfg: &models::ltx2::transformer::TransformerConfig) -> Dims {
        Dims {
            layers: cfg.num_layers,
            video: cfg.video_inner_dim(),
            audio: cfg.audio_inner_dim(),
            video_context: cfg.cross_attention_dim,
            audio_context: cfg.audio_cross_attention_dim,
            caption: cfg.caption_channels,
            video_channels: cfg.in_channels,
            audio_channels: cfg.audio_in_channels,
        }
    }
}

/// FLOPs of one forward, split by kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flops {
    /// Token-wise linear layers of the blocks (and the stream in/out projections).
    pub linear: f64,
    /// Text key/value projections (recomputed every call) and the caption projections.
    pub text: f64,
    /// `QKᵀ` and `PV` of every attention.
    pub attention: f64,
}

impl Flops {
    /// Everything.
    pub fn total(&self) -> f64 {
        self.linear + self.text + self.attention
    }
}

/// FLOPs of one forward over `video` video tokens, `audio` audio tokens and `text` text tokens
/// per stream (batch 1, one guidance pass).
pub fn forward(d: &Dims, video: usize, audio: usize, text: usize) -> Flops {
    let (v, a, s) = (video as f64, audio as f64, text as f64);
    let (dv, da) = (d.video as f64, d.audio as f64);
    let layers = d.layers as f64;
    // Per token per block: self-attention QKVO, text-attention Q and O, feed-forward x4, and the
    // cross-modal projections (A2V: Q and O on the video side, K and V of V2A from video).
    let video_weights = 14.0 * dv * dv + 4.0 * dv * da;
    let audio_weights = 18.0 * da * da;
    let io = 2.0 * (v * dv * d.video_channels as f64 + a * da * d.audio_channels as f64) * 2.0;
    let linear = layers * 2.0 * (v * video_weights + a * audio_weights) + io;
    let text_kv =
        layers * 2.0 * s * 2.0 * (d.video_context as f64 * dv + d.audio_context as f64 * da);
    let caption = 2.0 * s * (d.caption as f64 * (dv + da) + dv * dv + da * da);
    let attention =
        layers * 4.0 * (v * v * dv + v * s * dv + a * a * da + a * s * da + 2.0 * v * a * da);
    Flops {
        linear,
        text: text_kv + caption,
        attention,
    }
}

/// Video tokens of a `width x height x frames` clip (8x32x32 compression, causal first frame).
pub fn video_tokens(width: usize, height: usize, frames: usize) -> usize {
    (1 + frames.saturating_sub(1) / 8) * (height / 32) * (width / 32)
}

/// Audio tokens of `frames` at `fps` (25 latent frames per second).
pub fn audio_tokens(frames: usize, fps: f64) -> usize {
    (25.0 * frames as f64 / fps).round() as usize
}
