//! The official LTX-2 templates' model files, linked to the tiny fixture models
//! (`shared/fixtures/ltx2-tiny/models`, read in place) in a ComfyUI models folder.

use std::path::{Path, PathBuf};

/// `shared/fixtures/ltx2-tiny/models` beside the workspace.
pub fn fixture_models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join("shared/fixtures/ltx2-tiny/models"))
        .find(|p| p.is_dir())
        .expect("shared/fixtures/ltx2-tiny/models beside the workspace")
}

/// The templates' model files and the tiny fixture each one is linked to.
pub const MODELS: &[(&str, &str)] = &[
    (
        "checkpoints/ltx-2-19b-dev-fp8.safetensors",
        "ltx2-tiny.safetensors",
    ),
    (
        "checkpoints/ltx-2-19b-dev.safetensors",
        "ltx2-tiny.safetensors",
    ),
    (
        "checkpoints/ltx-2-19b-distilled.safetensors",
        "ltx2-tiny.safetensors",
    ),
    (
        "text_encoders/gemma_3_12B_it_fp4_mixed.safetensors",
        "gemma3-tiny-comfy.safetensors",
    ),
    (
        "text_encoders/gemma_3_12B_it.safetensors",
        "gemma3-tiny-comfy.safetensors",
    ),
    (
        "loras/ltx-2-19b-distilled-lora-384.safetensors",
        "ltx2-tiny-lora.safetensors",
    ),
    (
        "loras/ltx-2-19b-ic-lora-canny-control.safetensors",
        "ltx2-tiny-lora.safetensors",
    ),
    (
        "loras/ltx2-squish.safetensors",
        "ltx2-tiny-lora.safetensors",
    ),
    (
        "latent_upscale_models/ltx-2-spatial-upscaler-x2-1.0.safetensors",
        "ltx2-tiny-upscaler.safetensors",
    ),
];

/// Links every template model file under `models_dir` (ComfyUI's layout) to its fixture.
pub fn link_template_models(models_dir: &Path) {
    let fixtures = fixture_models();
    for (name, target) in MODELS {
        let path = models_dir.join(name);
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("models folder");
        std::os::unix::fs::symlink(fixtures.join(target), path).expect("link a fixture model");
    }
}
