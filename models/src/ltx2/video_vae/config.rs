//! The `vae` section of the checkpoint's metadata `config`, and the block lists it describes.
//!
//! Key names and defaults are those ltx-core's `VideoEncoderConfigurator` /
//! `VideoDecoderConfigurator` read; unknown keys are ignored. Block lists are JSON pairs
//! `[name, params]` where `params` is a layer count or an object.

use serde::Deserialize;
use serde_json::Value;

use crate::{Error, Result};

/// Spatial padding of the VAE's 3x3x3 convolutions (temporal padding is frame replication).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaddingMode {
    /// Zero padding.
    Zeros,
    /// Mirror padding without repeating the edge (`[b a | a b c | c b]` for width 2).
    Reflect,
    /// Edge replication.
    Replicate,
    /// Wrap-around.
    Circular,
}

impl PaddingMode {
    fn parse(name: &str) -> Result<Self> {
        match name {
            "zeros" => Ok(Self::Zeros),
            "reflect" => Ok(Self::Reflect),
            "replicate" => Ok(Self::Replicate),
            "circular" => Ok(Self::Circular),
            other => Err(Error::Config(format!(
                "vae: unknown spatial_padding_mode {other:?}"
            ))),
        }
    }
}

/// How the encoder turns its last feature map into latent means (and log-variances).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatentLogVar {
    /// `2N` output channels: N means, N log-variances.
    PerChannel,
    /// `N + 1` output channels: N means and one shared log-variance.
    Uniform,
    /// `N + 1` output channels, the last one ignored.
    Constant,
    /// `N` output channels, means only.
    None,
}

impl LatentLogVar {
    fn parse(name: &str) -> Result<Self> {
        match name {
            "per_channel" => Ok(Self::PerChannel),
            "uniform" => Ok(Self::Uniform),
            "constant" => Ok(Self::Constant),
            "none" => Ok(Self::None),
            other => Err(Error::Config(format!(
                "vae: unknown latent_log_var {other:?}"
            ))),
        }
    }

    /// Channels of the encoder's `conv_out` for `latent_channels` means.
    pub fn conv_out_channels(self, latent_channels: usize) -> usize {
        match self {
            Self::PerChannel => 2 * latent_channels,
            Self::Uniform | Self::Constant => latent_channels + 1,
            Self::None => latent_channels,
        }
    }
}

/// One block of the encoder, in checkpoint order (`down_blocks.N`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncoderBlock {
    /// `res_x`: `num_layers` residual blocks at constant width.
    Res {
        /// Number of `ResnetBlock3D`s.
        num_layers: usize,
    },
    /// `res_x_y`: one residual block multiplying the width.
    ResWiden {
        /// Width multiplier.
        multiplier: usize,
    },
    /// `compress_time` / `compress_space` / `compress_all` / `compress_all_x_y`: a strided conv.
    Strided {
        /// Stride over (time, height, width).
        stride: [usize; 3],
        /// Width multiplier (1 except for `compress_all_x_y`).
        multiplier: usize,
    },
    /// `compress_*_res`: space-to-depth with a conv branch and an averaged skip.
    SpaceToDepth {
        /// Downsampling over (time, height, width).
        stride: [usize; 3],
        /// Width multiplier.
        multiplier: usize,
    },
}

/// One block of the decoder, in execution order (`up_blocks.N`, the config list reversed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecoderBlock {
    /// `res_x`: `num_layers` timestep-conditioned residual blocks at constant width.
    Res {
        /// Number of `ResnetBlock3D`s.
        num_layers: usize,
        /// Whether the blocks add per-channel-scaled spatial noise (`inject_noise`).
        inject_noise: bool,
    },
    /// `res_x_y`: one residual block dividing the width.
    ResNarrow {
        /// Width divisor.
        divisor: usize,
        /// Whether the block adds spatial noise.
        inject_noise: bool,
    },
    /// `compress_time` / `compress_space` / `compress_all`: conv then depth-to-space.
    DepthToSpace {
        /// Upsampling over (time, height, width).
        stride: [usize; 3],
        /// Whether the input, rearranged and repeated, is added back (`compress_all` only).
        residual: bool,
        /// Width divisor (`out_channels_reduction_factor`).
        divisor: usize,
    },
}

/// The raw `vae` section (serde); see [`VaeConfig`] for the checked form.
#[derive(Debug, Clone, Deserialize)]
struct RawVaeConfig {
    #[serde(default)]
    dims: Option<Value>,
    #[serde(default = "three")]
    in_channels: usize,
    #[serde(default = "three")]
    out_channels: usize,
    #[serde(default = "latent_channels_default")]
    latent_channels: usize,
    #[serde(default)]
    encoder_blocks: Vec<(String, Value)>,
    #[serde(default)]
    decoder_blocks: Vec<(String, Value)>,
    #[serde(default = "patch_size_default")]
    patch_size: usize,
    #[serde(default)]
    norm_layer: Option<String>,
    #[serde(default)]
    latent_log_var: Option<String>,
    #[serde(default)]
    causal_decoder: bool,
    #[serde(default = "yes")]
    timestep_conditioning: bool,
    #[serde(default = "base_channels_default")]
    decoder_base_channels: usize,
    #[serde(default)]
    spatial_padding_mode: Option<String>,
}

fn three() -> usize {
    3
}
fn latent_channels_default() -> usize {
    128
}
fn patch_size_default() -> usize {
    4
}
fn yes() -> bool {
    true
}
fn base_channels_default() -> usize {
    128
}

/// The video VAE's configuration, checked and with blocks parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaeConfig {
    /// Pixel channels in (3).
    pub in_channels: usize,
    /// Pixel channels out (3).
    pub out_channels: usize,
    /// Latent channels (128).
    pub latent_channels: usize,
    /// Encoder blocks in `down_blocks` order.
    pub encoder_blocks: Vec<EncoderBlock>,
    /// Decoder blocks in `up_blocks` order (the config's list reversed).
    pub decoder_blocks: Vec<DecoderBlock>,
    /// Spatial patch size of (un)patchify (4).
    pub patch_size: usize,
    /// How the encoder emits log-variances.
    pub latent_log_var: LatentLogVar,
    /// Whether the decoder's temporal convolutions are causal (false for LTX-2).
    pub causal_decoder: bool,
    /// Whether the decoder is timestep-conditioned (true for LTX-2).
    pub timestep_conditioning: bool,
    /// Width of the decoder's last stage; its first stage is 8x this (ltx-core's rule).
    pub decoder_base_channels: usize,
    /// Encoder spatial padding (ltx-core default `zeros`).
    pub encoder_padding: PaddingMode,
    /// Decoder spatial padding (ltx-core default `reflect` when the key is absent).
    pub decoder_padding: PaddingMode,
}

impl VaeConfig {
    /// Parses and checks the `vae` section of the metadata `config`.
    pub fn from_json(value: &Value) -> Result<Self> {
        let raw: RawVaeConfig = serde_json::from_value(value.clone())
            .map_err(|e| Error::Config(format!("vae: {e}")))?;
        if let Some(dims) = &raw.dims
            && dims.as_u64() != Some(3)
        {
            return Err(Error::Config(format!(
                "vae: only 3-D convolutions are supported, got dims {dims}"
            )));
        }
        let norm = raw.norm_layer.as_deref().unwrap_or("pixel_norm");
        if norm != "pixel_norm" {
            return Err(Error::Config(format!(
                "vae: norm_layer {norm:?} is not supported (LTX-2 uses pixel_norm)"
            )));
        }
        if raw.patch_size == 0 || raw.latent_channels == 0 || raw.decoder_base_channels == 0 {
            return Err(Error::Config(
                "vae: patch_size, latent_channels and decoder_base_channels must be positive"
                    .into(),
            ));
        }
        let padding = raw.spatial_padding_mode.as_deref();
        let encoder_blocks = raw
            .encoder_blocks
            .iter()
            .map(|(name, params)| parse_encoder_block(name, params))
            .collect::<Result<Vec<_>>>()?;
        let decoder_blocks = raw
            .decoder_blocks
            .iter()
            .rev()
            .map(|(name, params)| parse_decoder_block(name, params))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            in_channels: raw.in_channels,
            out_channels: raw.out_channels,
            latent_channels: raw.latent_channels,
            encoder_blocks,
            decoder_blocks,
            patch_size: raw.patch_size,
            latent_log_var: LatentLogVar::parse(
                raw.latent_log_var.as_deref().unwrap_or("uniform"),
            )?,
            causal_decoder: raw.causal_decoder,
            timestep_conditioning: raw.timestep_conditioning,
            decoder_base_channels: raw.decoder_base_channels,
            encoder_padding: PaddingMode::parse(padding.unwrap_or("zeros"))?,
            decoder_padding: PaddingMode::parse(padding.unwrap_or("reflect"))?,
        })
    }

    /// Total downscaling of the encoder over (time, height, width), patchify included.
    pub fn encoder_scale(&self) -> [usize; 3] {
        let mut scale = [1, self.patch_size, self.patch_size];
        for block in &self.encoder_blocks {
            if let EncoderBlock::Strided { stride, .. }
            | EncoderBlock::SpaceToDepth { stride, .. } = block
            {
                for (s, k) in scale.iter_mut().zip(stride) {
                    *s *= k;
                }
            }
        }
        scale
    }

    /// Total upscaling of the decoder over (time, height, width), unpatchify included.
    pub fn decoder_scale(&self) -> [usize; 3] {
        let mut scale = [1, self.patch_size, self.patch_size];
        for block in &self.decoder_blocks {
            if let DecoderBlock::DepthToSpace { stride, .. } = block {
                for (s, k) in scale.iter_mut().zip(stride) {
                    *s *= k;
                }
            }
        }
        scale
    }
}

fn params_object(name: &str, params: &Value) -> Result<serde_json::Map<String, Value>> {
    match params {
        Value::Number(n) => {
            let mut map = serde_json::Map::new();
            map.insert("num_layers".into(), Value::Number(n.clone()));
            Ok(map)
        }
        Value::Object(map) => Ok(map.clone()),
        other => Err(Error::Config(format!(
            "vae block {name}: parameters must be a number or an object, got {other}"
        ))),
    }
}

fn usize_param(
    name: &str,
    map: &serde_json::Map<String, Value>,
    key: &str,
    default: Option<usize>,
) -> Result<usize> {
    match map.get(key) {
        Some(v) => v
            .as_u64()
            .filter(|&v| v > 0)
            .map(|v| v as usize)
            .ok_or_else(|| {
                Error::Config(format!(
                    "vae block {name}: {key} must be a positive integer"
                ))
            }),
        None => default.ok_or_else(|| Error::Config(format!("vae block {name}: missing {key}"))),
    }
}

fn bool_param(map: &serde_json::Map<String, Value>, key: &str) -> bool {
    map.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn parse_encoder_block(name: &str, params: &Value) -> Result<EncoderBlock> {
    let map = params_object(name, params)?;
    let multiplier = |default| usize_param(name, &map, "multiplier", Some(default));
    Ok(match name {
        "res_x" => EncoderBlock::Res {
            num_layers: usize_param(name, &map, "num_layers", None)?,
        },
        "res_x_y" => EncoderBlock::ResWiden {
            multiplier: multiplier(2)?,
        },
        "compress_time" => EncoderBlock::Strided {
            stride: [2, 1, 1],
            multiplier: 1,
        },
        "compress_space" => EncoderBlock::Strided {
            stride: [1, 2, 2],
            multiplier: 1,
        },
        "compress_all" => EncoderBlock::Strided {
            stride: [2, 2, 2],
            multiplier: 1,
        },
        "compress_all_x_y" => EncoderBlock::Strided {
            stride: [2, 2, 2],
            multiplier: multiplier(2)?,
        },
        "compress_all_res" => EncoderBlock::SpaceToDepth {
            stride: [2, 2, 2],
            multiplier: multiplier(2)?,
        },
        "compress_space_res" => EncoderBlock::SpaceToDepth {
            stride: [1, 2, 2],
            multiplier: multiplier(2)?,
        },
        "compress_time_res" => EncoderBlock::SpaceToDepth {
            stride: [2, 1, 1],
            multiplier: multiplier(2)?,
        },
        other => {
            return Err(Error::Config(format!(
                "vae: unknown encoder block {other:?}"
            )));
        }
    })
}

fn parse_decoder_block(name: &str, params: &Value) -> Result<DecoderBlock> {
    let map = params_object(name, params)?;
    let inject_noise = bool_param(&map, "inject_noise");
    let divisor = |default| usize_param(name, &map, "multiplier", Some(default));
    Ok(match name {
        "res_x" => DecoderBlock::Res {
            num_layers: usize_param(name, &map, "num_layers", None)?,
            inject_noise,
        },
        "res_x_y" => DecoderBlock::ResNarrow {
            divisor: divisor(2)?,
            inject_noise,
        },
        "compress_time" => DecoderBlock::DepthToSpace {
            stride: [2, 1, 1],
            residual: false,
            divisor: divisor(1)?,
        },
        "compress_space" => DecoderBlock::DepthToSpace {
            stride: [1, 2, 2],
            residual: false,
            divisor: divisor(1)?,
        },
        "compress_all" => DecoderBlock::DepthToSpace {
            stride: [2, 2, 2],
            residual: bool_param(&map, "residual"),
            divisor: divisor(1)?,
        },
        other => {
            return Err(Error::Config(format!(
                "vae: unknown decoder block {other:?}"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_blocks_and_defaults() {
        let json = serde_json::json!({
            "latent_channels": 128,
            "encoder_blocks": [["res_x", {"num_layers": 2}], ["compress_all_res", {"multiplier": 2}],
                               ["compress_time", 1]],
            "decoder_blocks": [["res_x", {"num_layers": 5, "inject_noise": false}],
                               ["compress_all", {"residual": true, "multiplier": 2}]],
            "unknown_key": 1
        });
        let cfg = VaeConfig::from_json(&json).unwrap();
        assert_eq!(cfg.encoder_blocks[0], EncoderBlock::Res { num_layers: 2 });
        assert_eq!(
            cfg.encoder_blocks[1],
            EncoderBlock::SpaceToDepth {
                stride: [2, 2, 2],
                multiplier: 2
            }
        );
        // decoder order is the config list reversed
        assert!(matches!(
            cfg.decoder_blocks[0],
            DecoderBlock::DepthToSpace {
                residual: true,
                divisor: 2,
                ..
            }
        ));
        assert_eq!(cfg.encoder_padding, PaddingMode::Zeros);
        assert_eq!(cfg.decoder_padding, PaddingMode::Reflect);
        assert_eq!(cfg.decoder_scale(), [2, 8, 8]);
        assert_eq!(cfg.encoder_scale(), [4, 8, 8]);
    }

    #[test]
    fn rejects_unknown_blocks_and_norms() {
        let bad_block = serde_json::json!({"decoder_blocks": [["attn_res_x", {"num_layers": 1}]]});
        assert!(VaeConfig::from_json(&bad_block).is_err());
        let bad_norm = serde_json::json!({"norm_layer": "group_norm"});
        assert!(VaeConfig::from_json(&bad_norm).is_err());
    }
}
