//! The LTX-2 vocoder (HiFi-GAN generator, keys `vocoder.*`): log-mel spectrogram -> waveform.
//!
//! Input `[B, 2, T, mel_bins]` (stereo; `[B, T, mel_bins]` mono), output `[B, 2, T * hop]` at the
//! vocoder's sample rate (24 kHz for LTX-2). The config is the flat LTX-2 `config.vocoder`
//! section; LTX-2.3's bandwidth-extension vocoder (`vocoder.vocoder.*` + `vocoder.bwe_generator.*`,
//! AMP1 blocks) is rejected with a config error.

use candle_core::{Module, Tensor};
use candle_nn::{Conv1d, Conv1dConfig, ConvTranspose1d, ConvTranspose1dConfig, VarBuilder};
use serde::Deserialize;

use crate::{Error, Result};

/// Slope of the leaky ReLUs inside the generator.
const LRELU_SLOPE: f64 = 0.1;
/// Slope of the final `nn.LeakyReLU()` (PyTorch's default).
const POST_LRELU_SLOPE: f64 = 0.01;
/// Mel bins per stereo channel the generator's first convolution is wired for (fixture quirk 4).
const MEL_BINS_PER_CHANNEL: usize = 64;

/// Vocoder configuration (`config.vocoder` of the checkpoint metadata; ltx-core defaults).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// Kernel size of each parallel residual block.
    #[serde(default = "default_resblock_kernel_sizes")]
    pub resblock_kernel_sizes: Vec<usize>,
    /// Stride of each transposed-convolution upsampler (their product is the hop length).
    #[serde(default = "default_upsample_rates")]
    pub upsample_rates: Vec<usize>,
    /// Kernel size of each upsampler.
    #[serde(default = "default_upsample_kernel_sizes")]
    pub upsample_kernel_sizes: Vec<usize>,
    /// Dilations of each residual block's convolutions.
    #[serde(default = "default_resblock_dilation_sizes")]
    pub resblock_dilation_sizes: Vec<Vec<usize>>,
    /// Channels after `conv_pre` (halved by every upsampler).
    #[serde(default = "default_upsample_initial_channel")]
    pub upsample_initial_channel: usize,
    /// Residual block type: `"1"` (three dilated pairs) or `"2"` (two dilated convolutions).
    #[serde(default = "default_resblock")]
    pub resblock: String,
    /// Stereo input/output (128 input channels, 2 output channels) or mono (64 / 1).
    #[serde(default = "default_true")]
    pub stereo: bool,
    /// ltx-core's output sample rate key.
    pub output_sampling_rate: Option<u32>,
    /// ComfyUI's output sample rate key (absent in LTX-2 checkpoints).
    pub output_sample_rate: Option<u32>,
    /// `tanh` at the end (otherwise clamp to [-1, 1]).
    #[serde(default = "default_true")]
    pub use_tanh_at_final: bool,
    /// Whether `conv_post` has a bias.
    #[serde(default = "default_true")]
    pub use_bias_at_final: bool,
    /// Present only in LTX-2.3 bandwidth-extension configs (rejected).
    pub bwe: Option<serde_json::Value>,
}

fn default_resblock_kernel_sizes() -> Vec<usize> {
    vec![3, 7, 11]
}
fn default_upsample_rates() -> Vec<usize> {
    vec![6, 5, 2, 2, 2]
}
fn default_upsample_kernel_sizes() -> Vec<usize> {
    vec![16, 15, 8, 4, 4]
}
fn default_resblock_dilation_sizes() -> Vec<Vec<usize>> {
    vec![vec![1, 3, 5]; 3]
}
fn default_upsample_initial_channel() -> usize {
    1024
}
fn default_resblock() -> String {
    "1".into()
}
fn default_true() -> bool {
    true
}

impl Config {
    /// Parses the `vocoder` section of the checkpoint's metadata `config`.
    pub fn from_json(section: &serde_json::Value) -> Result<Self> {
        let cfg: Self = serde_json::from_value(section.clone())
            .map_err(|e| Error::Config(format!("vocoder: {e}")))?;
        if cfg.bwe.is_some() {
            return Err(Error::Config(
                "vocoder: bandwidth-extension vocoders (LTX-2.3) are not supported".into(),
            ));
        }
        if cfg.resblock != "1" && cfg.resblock != "2" {
            return Err(Error::Config(format!(
                "vocoder: unsupported resblock type {:?}",
                cfg.resblock
            )));
        }
        if cfg.upsample_rates.len() != cfg.upsample_kernel_sizes.len()
            || cfg.resblock_kernel_sizes.len() != cfg.resblock_dilation_sizes.len()
        {
            return Err(Error::Config(
                "vocoder: upsample/resblock list lengths disagree".into(),
            ));
        }
        Ok(cfg)
    }

    /// Waveform samples per mel frame (product of the upsample rates; 240 for LTX-2).
    pub fn hop_length(&self) -> usize {
        self.upsample_rates.iter().product()
    }

    /// Output sample rate: the configured one, else ComfyUI's fallback
    /// `mel_sample_rate * hop_length / mel_hop_length` (24 000 for LTX-2: 16 000 * 240 / 160).
    pub fn output_sample_rate(&self, mel_sample_rate: u32, mel_hop_length: u32) -> u32 {
        self.output_sampling_rate
            .or(self.output_sample_rate)
            .unwrap_or_else(|| {
                (mel_sample_rate as u64 * self.hop_length() as u64 / mel_hop_length.max(1) as u64)
                    as u32
            })
    }

    fn channels(&self) -> usize {
        if self.stereo { 2 } else { 1 }
    }
}

/// A `Conv1d` with `padding = dilation * (kernel - 1) / 2` ("same" for odd kernels).
fn same_conv(ch: usize, kernel: usize, dilation: usize, vb: VarBuilder) -> Result<Conv1d> {
    let cfg = Conv1dConfig {
        padding: dilation * (kernel - 1) / 2,
        dilation,
        ..Default::default()
    };
    Ok(candle_nn::conv1d(ch, ch, kernel, cfg, vb)?)
}

/// HiFi-GAN residual block (`resblocks.{i}.*`).
#[derive(Debug, Clone)]
enum ResBlock {
    /// Type 1: pairs (dilated conv, plain conv), each pair a residual step.
    One(Vec<(Conv1d, Conv1d)>),
    /// Type 2: single dilated convolutions, each a residual step.
    Two(Vec<Conv1d>),
}

impl ResBlock {
    fn new(
        kind: &str,
        ch: usize,
        kernel: usize,
        dilations: &[usize],
        vb: VarBuilder,
    ) -> Result<Self> {
        if kind == "2" {
            let convs = dilations
                .iter()
                .take(2)
                .enumerate()
                .map(|(j, &d)| same_conv(ch, kernel, d, vb.pp("convs").pp(j)))
                .collect::<Result<_>>()?;
            return Ok(ResBlock::Two(convs));
        }
        let pairs = dilations
            .iter()
            .enumerate()
            .map(|(j, &d)| {
                Ok((
                    same_conv(ch, kernel, d, vb.pp("convs1").pp(j))?,
                    same_conv(ch, kernel, 1, vb.pp("convs2").pp(j))?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(ResBlock::One(pairs))
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let lrelu = |t: &Tensor| candle_nn::ops::leaky_relu(t, LRELU_SLOPE);
        let mut x = x.clone();
        match self {
            ResBlock::One(pairs) => {
                for (c1, c2) in pairs {
                    let xt = c2.forward(&lrelu(&c1.forward(&lrelu(&x)?)?)?)?;
                    x = (xt + x)?;
                }
            }
            ResBlock::Two(convs) => {
                for c in convs {
                    x = (c.forward(&lrelu(&x)?)? + x)?;
                }
            }
        }
        Ok(x)
    }
}

/// One upsampling stage: leaky ReLU, transposed convolution, then the mean of the parallel
/// residual blocks.
#[derive(Debug, Clone)]
struct UpStage {
    up: ConvTranspose1d,
    resblocks: Vec<ResBlock>,
}

impl UpStage {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self
            .up
            .forward(&candle_nn::ops::leaky_relu(x, LRELU_SLOPE)?)?;
        let mut sum: Option<Tensor> = None;
        for block in &self.resblocks {
            let y = block.forward(&x)?;
            sum = Some(match sum {
                Some(s) => (s + y)?,
                None => y,
            });
        }
        match sum {
            Some(s) => Ok((s / self.resblocks.len() as f64)?),
            None => Ok(x),
        }
    }
}

/// The LTX-2 HiFi-GAN vocoder.
#[derive(Debug, Clone)]
pub struct Vocoder {
    cfg: Config,
    conv_pre: Conv1d,
    stages: Vec<UpStage>,
    conv_post: Conv1d,
}

impl Vocoder {
    /// Builds the vocoder from the `vocoder` prefix of the checkpoint.
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let in_channels = cfg.channels() * MEL_BINS_PER_CHANNEL;
        let init = cfg.upsample_initial_channel;
        let pre_cfg = Conv1dConfig {
            padding: 3,
            ..Default::default()
        };
        let conv_pre = candle_nn::conv1d(in_channels, init, 7, pre_cfg, vb.pp("conv_pre"))?;
        let num_kernels = cfg.resblock_kernel_sizes.len();
        let mut stages = Vec::with_capacity(cfg.upsample_rates.len());
        let mut ch = init;
        for (i, (&rate, &kernel)) in cfg
            .upsample_rates
            .iter()
            .zip(&cfg.upsample_kernel_sizes)
            .enumerate()
        {
            let up_cfg = ConvTranspose1dConfig {
                padding: kernel.saturating_sub(rate) / 2,
                stride: rate,
                ..Default::default()
            };
            let out = init >> (i + 1);
            let up = candle_nn::conv_transpose1d(ch, out, kernel, up_cfg, vb.pp("ups").pp(i))?;
            ch = out;
            let resblocks = cfg
                .resblock_kernel_sizes
                .iter()
                .zip(&cfg.resblock_dilation_sizes)
                .enumerate()
                .map(|(j, (&k, dil))| {
                    let vb_block = vb.pp("resblocks").pp(i * num_kernels + j);
                    ResBlock::new(&cfg.resblock, ch, k, dil, vb_block)
                })
                .collect::<Result<_>>()?;
            stages.push(UpStage { up, resblocks });
        }
        let post_cfg = Conv1dConfig {
            padding: 3,
            ..Default::default()
        };
        let vb_post = vb.pp("conv_post");
        let conv_post = if cfg.use_bias_at_final {
            candle_nn::conv1d(ch, cfg.channels(), 7, post_cfg, vb_post)?
        } else {
            candle_nn::conv1d_no_bias(ch, cfg.channels(), 7, post_cfg, vb_post)?
        };
        Ok(Self {
            cfg: cfg.clone(),
            conv_pre,
            stages,
            conv_post,
        })
    }

    /// The configuration the vocoder was built from.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Synthesises `[B, channels, T * hop_length]` from a log-mel spectrogram
    /// `[B, 2, T, mel_bins]` (stereo) or `[B, T, mel_bins]` (mono).
    pub fn forward(&self, mel: &Tensor) -> Result<Tensor> {
        let x = match mel.rank() {
            4 => {
                let (b, s, t, m) = mel.dims4()?;
                // [B, S, T, M] -> [B, S, M, T] -> [B, S*M, T]
                mel.transpose(2, 3)?.contiguous()?.reshape((b, s * m, t))?
            }
            3 => mel.transpose(1, 2)?.contiguous()?,
            r => {
                return Err(Error::Input(format!(
                    "vocoder input must be [B, 2, T, mel] or [B, T, mel], got rank {r}"
                )));
            }
        };
        let mut x = self.conv_pre.forward(&x)?;
        for stage in &self.stages {
            x = stage.forward(&x)?;
        }
        let x = candle_nn::ops::leaky_relu(&x, POST_LRELU_SLOPE)?;
        let x = self.conv_post.forward(&x)?;
        if self.cfg.use_tanh_at_final {
            Ok(x.tanh()?)
        } else {
            Ok(x.clamp(-1f32, 1f32)?)
        }
    }
}
