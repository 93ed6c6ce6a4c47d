//! Command-line settings shared by the subcommands, with ComfyUI's flag names where they exist
//! (`--base-directory`, `--output-directory`, `--extra-model-paths-config`, `--cache-lru`, ...)
//! and `COMFYRS_*` environment variables for deployments.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use engine::CachePolicy;
use nodes::Env;
use nodes::env::{Dirs, ModelFolders};

/// Where files live.
#[derive(Debug, Clone, Args)]
pub struct PathArgs {
    /// Base folder holding input/, output/, temp/, user/ and models/ (ComfyUI's --base-directory).
    #[arg(long, env = "COMFYRS_BASE_DIR", default_value = "data")]
    pub base_directory: PathBuf,
    /// Output folder (default: <base>/output).
    #[arg(long, env = "COMFYRS_OUTPUT_DIR")]
    pub output_directory: Option<PathBuf>,
    /// Input folder (default: <base>/input).
    #[arg(long, env = "COMFYRS_INPUT_DIR")]
    pub input_directory: Option<PathBuf>,
    /// Temp folder for previews (default: <base>/temp).
    #[arg(long, env = "COMFYRS_TEMP_DIR")]
    pub temp_directory: Option<PathBuf>,
    /// Models folder in ComfyUI's layout: checkpoints/, text_encoders/, loras/, vae/,
    /// latent_upscale_models/ ... (default: <base>/models).
    #[arg(long, env = "COMFYRS_MODELS_DIR")]
    pub models_directory: Option<PathBuf>,
    /// ComfyUI extra_model_paths.yaml files adding model search paths (repeatable).
    #[arg(long, env = "COMFYRS_EXTRA_MODEL_PATHS", value_delimiter = ',')]
    pub extra_model_paths_config: Vec<PathBuf>,
    /// Do not write the prompt and workflow into saved files.
    #[arg(long, env = "COMFYRS_DISABLE_METADATA")]
    pub disable_metadata: bool,
}

impl PathArgs {
    /// The folders and model search paths these settings describe.
    pub fn env(&self) -> anyhow::Result<Env> {
        let base = &self.base_directory;
        let defaults = Dirs::under(base);
        let dirs = Dirs {
            input: self.input_directory.clone().unwrap_or(defaults.input),
            output: self.output_directory.clone().unwrap_or(defaults.output),
            temp: self.temp_directory.clone().unwrap_or(defaults.temp),
        };
        for dir in [&dirs.input, &dirs.output, &dirs.temp] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let models_root = self
            .models_directory
            .clone()
            .unwrap_or_else(|| base.join("models"));
        let mut models = ModelFolders::under(&models_root);
        for yaml in &self.extra_model_paths_config {
            models.load_extra_paths(yaml)?;
        }
        Ok(Env {
            dirs,
            models: std::sync::Arc::new(models),
            scope: String::new(),
            save_metadata: !self.disable_metadata,
            device: candle_core::Device::Cpu,
            services: std::sync::Arc::new(nodes::env::Services::default()),
        })
    }
}

/// The device a `--devices` / `--device` entry names: `cpu`, `cuda` (= `cuda:0`) or `cuda:N`.
///
/// A GPU that cannot be opened (no device, no driver, or a binary built without the `cuda`
/// feature) is logged as an error and the worker runs on the CPU instead, so a GPU deployment
/// that lost its GPU still serves (slowly) and says why.
pub fn open_device(spec: &str) -> anyhow::Result<candle_core::Device> {
    let spec = spec.trim();
    let ordinal = match crate::device::DeviceName::parse(spec)? {
        crate::device::DeviceName::Cpu => return Ok(candle_core::Device::Cpu),
        crate::device::DeviceName::Cuda(ordinal) => ordinal,
    };
    if !cfg!(feature = "cuda") {
        tracing::error!(
            "device {spec}: this binary was built without the `cuda` feature (cargo build \
             --features cuda, see docs/gpu.md); running on the CPU"
        );
        return Ok(candle_core::Device::Cpu);
    }
    match candle_core::Device::new_cuda(ordinal) {
        Ok(device) => {
            tracing::info!("device {spec}: using CUDA GPU {ordinal}");
            Ok(device)
        }
        Err(e) => {
            tracing::error!(
                "device {spec}: cannot open CUDA GPU {ordinal} ({e}); running on the CPU"
            );
            Ok(candle_core::Device::Cpu)
        }
    }
}

/// How many node outputs are kept between prompts.
#[derive(Debug, Clone, Args)]
pub struct CacheArgs {
    /// Keep at most N node outputs between prompts (ComfyUI's --cache-lru).
    #[arg(long, env = "COMFYRS_CACHE_LRU", default_value_t = 256)]
    pub cache_lru: usize,
    /// Keep at most this many GiB of node outputs between prompts.
    #[arg(long, env = "COMFYRS_CACHE_RAM_GB", default_value_t = 4.0)]
    pub cache_ram: f64,
    /// Keep nothing between prompts (ComfyUI's --cache-none).
    #[arg(long, env = "COMFYRS_CACHE_NONE")]
    pub cache_none: bool,
}

impl CacheArgs {
    /// The engine's cache policy.
    pub fn policy(&self) -> CachePolicy {
        if self.cache_none {
            return CachePolicy {
                max_entries: 0,
                max_bytes: 0,
            };
        }
        CachePolicy {
            max_entries: self.cache_lru,
            max_bytes: (self.cache_ram.max(0.0) * (1u64 << 30) as f64) as usize,
        }
    }
}
