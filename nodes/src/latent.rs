//! Core latent nodes (`nodes.py`): SaveLatent, LoadLatent, LatentUpscale, LatentUpscaleBy.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use serde_json::{Map, json};

use crate::files;
use crate::imageops::{Method, common_upscale, py_round};
use crate::schema::MAX_RESOLUTION;
use crate::{
    Ctx, Env, Fingerprint, InputDef, Inputs, Latent, LatentSamples, NodeDef, NodeError, NodeSchema,
    OutputDef, Outputs, Registry, Value,
};

const LATENT_UPSCALE_METHODS: &[&str] =
    &["nearest-exact", "bilinear", "area", "bicubic", "bislerp"];
const CROP_METHODS: &[&str] = &["disabled", "center"];

/// Registers the latent nodes.
pub fn register(r: &mut Registry) {
    r.register(save_latent());
    r.register(load_latent());
    r.register(latent_upscale());
    r.register(latent_upscale_by());
}

fn single_samples<'a>(latent: &'a Latent, node: &str) -> Result<&'a Tensor, NodeError> {
    match &latent.samples {
        LatentSamples::Single(t) => Ok(t),
        LatentSamples::Nested(_) => Err(NodeError::Value(format!(
            "{node} does not support nested (audio+video) latents"
        ))),
    }
}

fn save_latent() -> NodeDef {
    let schema = NodeSchema::v1("SaveLatent", "_for_testing")
        .input(InputDef::socket("samples", "LATENT"))
        .input(InputDef::string("filename_prefix").default("latents/ComfyUI"))
        .output_node()
        .aliases(&["export latent"]);
    NodeDef::new(schema, run_save_latent)
}

fn run_save_latent(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let samples = single_samples(inputs.latent("samples")?, "SaveLatent")?;
    let target = files::save_path(
        inputs.string("filename_prefix")?,
        &ctx.env.dirs.output,
        0,
        0,
    )?;
    let name = format!("{}_{:05}_.latent", target.filename, target.counter);
    let metadata = ctx.env.save_metadata.then(|| {
        files::metadata_chunks(ctx.prompt, ctx.extra_pnginfo)
            .into_iter()
            .collect::<HashMap<String, String>>()
    });
    let bytes = serialize_latent(samples, metadata)?;
    files::write_atomic(&target.folder.join(&name), &bytes)?;
    let mut ui = Map::new();
    ui.insert(
        "latents".into(),
        json!([{"filename": name, "subfolder": target.subfolder, "type": "output"}]),
    );
    Ok(Outputs::ui(ui))
}

/// The `.latent` file format: safetensors with `latent_tensor` and an empty
/// `latent_format_version_0` marker.
fn serialize_latent(
    samples: &Tensor,
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>, NodeError> {
    use safetensors::tensor::{Dtype, TensorView};
    let t = samples
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .contiguous()?;
    let bytes: Vec<u8> = t
        .flatten_all()?
        .to_vec1::<f32>()?
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let bad = |e: safetensors::SafeTensorError| NodeError::Runtime(format!("writing latent: {e}"));
    let tensor = TensorView::new(Dtype::F32, t.dims().to_vec(), &bytes).map_err(bad)?;
    let marker = TensorView::new(Dtype::F32, vec![0], &[]).map_err(bad)?;
    let views = vec![
        ("latent_tensor", tensor),
        ("latent_format_version_0", marker),
    ];
    safetensors::tensor::serialize(views, metadata).map_err(bad)
}

/// `.latent` files at the top level of the user's input folder, sorted.
pub fn input_latents(env: &Env) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(&env.dirs.input) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".latent"))
        .collect();
    names.sort();
    names
}

fn load_latent() -> NodeDef {
    let schema = NodeSchema::v1("LoadLatent", "_for_testing")
        .input(InputDef::combo_dynamic("latent", input_latents))
        .output(OutputDef::new("LATENT"))
        .aliases(&["import latent", "open latent"]);
    NodeDef::new(schema, run_load_latent)
        .with_fingerprint(fingerprint_latent)
        .with_validation(&["latent"], validate_latent)
}

fn latent_path(env: &Env, inputs: &Inputs) -> Option<std::path::PathBuf> {
    env.annotated_path(inputs.string("latent").ok()?, "input")
}

fn fingerprint_latent(env: &Env, inputs: &Inputs) -> Fingerprint {
    match latent_path(env, inputs).and_then(|p| files::file_sha256(&p)) {
        Some(h) => Fingerprint::Value(h),
        None => Fingerprint::Always,
    }
}

fn validate_latent(env: &Env, inputs: &Inputs) -> Result<(), String> {
    match latent_path(env, inputs) {
        Some(p) if p.is_file() => Ok(()),
        _ => Err(format!(
            "Invalid latent file: {}",
            inputs.string("latent").unwrap_or_default()
        )),
    }
}

fn run_load_latent(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let name = inputs.string("latent")?;
    let path = ctx
        .env
        .annotated_path(name, "input")
        .ok_or_else(|| NodeError::Value(format!("Invalid latent file: {name}")))?;
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu)
        .map_err(|e| NodeError::Value(format!("cannot read latent file {name}: {e}")))?;
    let samples = tensors
        .get("latent_tensor")
        .ok_or_else(|| NodeError::Value(format!("{name} has no latent_tensor")))?
        .to_dtype(DType::F32)?;
    let multiplier = if tensors.contains_key("latent_format_version_0") {
        1.0
    } else {
        1.0 / 0.18215
    };
    Ok(Outputs::one(Value::Latent(Latent::new(
        samples.affine(multiplier, 0.0)?,
    ))))
}

fn latent_upscale() -> NodeDef {
    let schema = NodeSchema::v1("LatentUpscale", "latent")
        .display("Upscale Latent")
        .input(InputDef::socket("samples", "LATENT"))
        .input(InputDef::combo("upscale_method", LATENT_UPSCALE_METHODS))
        .input(
            InputDef::int("width")
                .default(512)
                .min(0)
                .max(MAX_RESOLUTION)
                .step(8),
        )
        .input(
            InputDef::int("height")
                .default(512)
                .min(0)
                .max(MAX_RESOLUTION)
                .step(8),
        )
        .input(InputDef::combo("crop", CROP_METHODS))
        .output(OutputDef::new("LATENT"))
        .aliases(&["enlarge latent", "resize latent"]);
    NodeDef::new(schema, run_latent_upscale)
}

fn run_latent_upscale(_: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let latent = inputs.latent("samples")?;
    let (width, height) = (inputs.int("width")?, inputs.int("height")?);
    if width == 0 && height == 0 {
        return Ok(Outputs::one(Value::Latent(latent.clone())));
    }
    let samples = single_samples(latent, "LatentUpscale")?;
    let dims = samples.dims();
    let (h, w) = (dims[dims.len() - 2] as f64, dims[dims.len() - 1] as f64);
    let (width, height) = if width == 0 {
        let height = height.max(64);
        (py_round(w * height as f64 / h).max(64), height)
    } else if height == 0 {
        let width = width.max(64);
        (width, py_round(h * width as f64 / w).max(64))
    } else {
        (width.max(64), height.max(64))
    };
    let method = Method::parse(inputs.string("upscale_method")?)?;
    let out = common_upscale(
        samples,
        (width / 8) as usize,
        (height / 8) as usize,
        method,
        inputs.string("crop")? == "center",
    )?;
    let mut result = latent.clone();
    result.samples = LatentSamples::Single(out);
    Ok(Outputs::one(Value::Latent(result)))
}

fn latent_upscale_by() -> NodeDef {
    let schema = NodeSchema::v1("LatentUpscaleBy", "latent")
        .display("Upscale Latent By")
        .input(InputDef::socket("samples", "LATENT"))
        .input(InputDef::combo("upscale_method", LATENT_UPSCALE_METHODS))
        .input(
            InputDef::float("scale_by")
                .default(1.5)
                .min(0.01)
                .max(8.0)
                .step(0.01),
        )
        .output(OutputDef::new("LATENT"))
        .aliases(&["enlarge latent", "resize latent", "scale latent"]);
    NodeDef::new(schema, run_latent_upscale_by)
}

fn run_latent_upscale_by(_: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let latent = inputs.latent("samples")?;
    let samples = single_samples(latent, "LatentUpscaleBy")?;
    let scale = inputs.float("scale_by")?;
    let dims = samples.dims();
    let width = py_round(dims[dims.len() - 1] as f64 * scale).max(1) as usize;
    let height = py_round(dims[dims.len() - 2] as f64 * scale).max(1) as usize;
    let out = common_upscale(
        samples,
        width,
        height,
        Method::parse(inputs.string("upscale_method")?)?,
        false,
    )?;
    let mut result = latent.clone();
    result.samples = LatentSamples::Single(out);
    Ok(Outputs::one(Value::Latent(result)))
}
