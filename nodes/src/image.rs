//! Core image nodes (`nodes.py`): LoadImage, SaveImage, PreviewImage, ImageScale, ImageScaleBy,
//! ImageInvert, ImageBatch, EmptyImage.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde_json::{Map, json};

use crate::files::{self, Pixels};
use crate::imageops::{Method, common_upscale, py_round};
use crate::schema::MAX_RESOLUTION;
use crate::{
    Ctx, Env, Fingerprint, InputDef, Inputs, NodeDef, NodeError, NodeSchema, OutputDef, Outputs,
    Registry, Value,
};

const IMAGE_UPSCALE_METHODS: &[&str] = &["nearest-exact", "bilinear", "area", "bicubic", "lanczos"];
const CROP_METHODS: &[&str] = &["disabled", "center"];
const SAVE_PREFIX_TOOLTIP: &str = "The prefix for the file to save. This may include formatting information such as %date:yyyy-MM-dd% or %Empty Latent Image.width% to include values from nodes.";
const IMAGE_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "jpe", "jfif", "gif", "bmp", "webp", "tif", "tiff", "ico", "avif",
    "heic", "heif", "pbm", "pgm", "ppm",
];

/// Registers the image nodes.
pub fn register(r: &mut Registry) {
    r.register(load_image());
    r.register(save_image());
    r.register(preview_image());
    r.register(image_scale());
    r.register(image_scale_by());
    r.register(image_invert());
    r.register(image_batch());
    r.register(empty_image());
}

/// Image files at the top level of the user's input folder, sorted (LoadImage's choices).
pub fn input_images(env: &Env) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(&env.dirs.input) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| {
            let ext = n
                .rsplit_once('.')
                .map(|(_, e)| e.to_ascii_lowercase())
                .unwrap_or_default();
            IMAGE_EXTENSIONS.contains(&ext.as_str())
        })
        .collect();
    names.sort();
    names
}

fn load_image() -> NodeDef {
    let schema = NodeSchema::v1("LoadImage", "image")
        .display("Load Image")
        .input(InputDef::combo_dynamic("image", input_images).opt("image_upload", true))
        .output(OutputDef::new("IMAGE"))
        .output(OutputDef::new("MASK"))
        .aliases(&[
            "load image",
            "open image",
            "import image",
            "image input",
            "upload image",
            "read image",
            "image loader",
        ]);
    NodeDef::new(schema, run_load_image)
        .with_fingerprint(fingerprint_input_file)
        .with_validation(&["image"], validate_input_file)
}

fn input_file_path(env: &Env, inputs: &Inputs, name: &str) -> Option<std::path::PathBuf> {
    let value = inputs.string(name).ok()?;
    env.annotated_path(value, "input")
}

fn fingerprint_input_file(env: &Env, inputs: &Inputs) -> Fingerprint {
    let hash = inputs
        .entries()
        .first()
        .and_then(|(name, _)| input_file_path(env, inputs, name))
        .and_then(|p| files::file_sha256(&p));
    match hash {
        Some(h) => Fingerprint::Value(h),
        None => Fingerprint::Always,
    }
}

fn validate_input_file(env: &Env, inputs: &Inputs) -> Result<(), String> {
    let Some((name, _)) = inputs.entries().first() else {
        return Ok(());
    };
    let value = inputs.string(name).unwrap_or_default().to_string();
    match input_file_path(env, inputs, name) {
        Some(p) if p.is_file() => Ok(()),
        _ => Err(format!("Invalid image file: {value}")),
    }
}

/// Decoded frames of an image file: RGB frames `[H, W, 3]` and an alpha per frame if present.
struct Decoded {
    width: usize,
    height: usize,
    frames: Vec<(Vec<f32>, Option<Vec<f32>>)>,
}

fn decode_frames(path: &Path) -> Result<Decoded, NodeError> {
    use image::{AnimationDecoder, ImageDecoder};
    let open_err = |e: image::ImageError| {
        NodeError::Value(format!("cannot decode image {}: {e}", path.display()))
    };
    let bytes =
        std::fs::read(path).map_err(|e| NodeError::io(format!("reading {}", path.display()), e))?;
    let format = image::guess_format(&bytes).map_err(open_err)?;
    let mut frames: Vec<image::DynamicImage> = Vec::new();
    if format == image::ImageFormat::Gif {
        let decoder =
            image::codecs::gif::GifDecoder::new(std::io::Cursor::new(&bytes)).map_err(open_err)?;
        for frame in decoder.into_frames() {
            frames.push(image::DynamicImage::ImageRgba8(
                frame.map_err(open_err)?.into_buffer(),
            ));
        }
    } else {
        let mut decoder = image::ImageReader::with_format(std::io::Cursor::new(&bytes), format)
            .into_decoder()
            .map_err(open_err)?;
        let orientation = decoder.orientation().map_err(open_err)?;
        let mut img = image::DynamicImage::from_decoder(decoder).map_err(open_err)?;
        img.apply_orientation(orientation);
        frames.push(img);
    }
    let first = frames
        .first()
        .ok_or_else(|| NodeError::Value(format!("{} holds no image", path.display())))?;
    let (width, height) = (first.width() as usize, first.height() as usize);
    let mut out = Vec::new();
    for img in frames {
        if img.width() as usize != width || img.height() as usize != height {
            continue; // ComfyUI skips frames whose size differs from the first.
        }
        let rgb: Vec<f32> = img.to_rgb32f().into_raw();
        let alpha = img
            .color()
            .has_alpha()
            .then(|| img.to_rgba32f().pixels().map(|p| p.0[3]).collect());
        out.push((rgb, alpha));
    }
    Ok(Decoded {
        width,
        height,
        frames: out,
    })
}

fn run_load_image(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let name = inputs.string("image")?;
    let path = ctx
        .env
        .annotated_path(name, "input")
        .ok_or_else(|| NodeError::Value(format!("Invalid image file: {name}")))?;
    if !path.is_file() {
        return Err(NodeError::FileNotFound(format!(
            "Invalid image file: {name}"
        )));
    }
    let decoded = decode_frames(&path)?;
    let (h, w) = (decoded.height, decoded.width);
    let n = decoded.frames.len();
    let mut image = Vec::with_capacity(n * h * w * 3);
    let any_alpha = decoded.frames.iter().any(|(_, a)| a.is_some());
    let mut mask = Vec::new();
    for (rgb, alpha) in &decoded.frames {
        image.extend_from_slice(rgb);
        match alpha {
            Some(a) => mask.extend(a.iter().map(|v| 1.0 - v)),
            None if any_alpha => mask.extend(std::iter::repeat_n(0.0, h * w)),
            None => {}
        }
    }
    let image = Tensor::from_vec(image, (n, h, w, 3), &Device::Cpu)?;
    let mask = if any_alpha {
        Tensor::from_vec(mask, (n, h, w), &Device::Cpu)?
    } else {
        Tensor::zeros((n, 64, 64), DType::F32, &Device::Cpu)?
    };
    Ok(Outputs::new(vec![Value::Image(image), Value::Mask(mask)]))
}

fn save_image() -> NodeDef {
    let schema = NodeSchema::v1("SaveImage", "image")
        .display("Save Image")
        .description("Saves the input images to your ComfyUI output directory.")
        .input(InputDef::socket("images", "IMAGE").tooltip("The images to save."))
        .input(
            InputDef::string("filename_prefix")
                .default("ComfyUI")
                .tooltip(SAVE_PREFIX_TOOLTIP),
        )
        .output_node()
        .aliases(&[
            "save",
            "save image",
            "export image",
            "output image",
            "write image",
            "download",
        ]);
    NodeDef::new(schema, run_save_image)
}

fn preview_image() -> NodeDef {
    let schema = NodeSchema::v1("PreviewImage", "image")
        .display("Preview Image")
        .description("Saves the input images to your ComfyUI output directory.")
        .input(InputDef::socket("images", "IMAGE"))
        .output_node()
        .aliases(&[
            "preview",
            "preview image",
            "show image",
            "view image",
            "display image",
            "image viewer",
        ]);
    NodeDef::new(schema, run_preview_image)
}

/// Saves an image batch as numbered PNGs and returns the UI entries (`{filename, subfolder, type}`).
pub fn save_images(
    ctx: &Ctx,
    images: &Tensor,
    prefix: &str,
    kind: &str,
    compress_level: u8,
) -> Result<Vec<serde_json::Value>, NodeError> {
    let pixels: Vec<Pixels> = files::to_pixels(images)?;
    let (w, h) = pixels
        .first()
        .map(|p| (p.width, p.height))
        .unwrap_or((0, 0));
    let base = if kind == "temp" {
        &ctx.env.dirs.temp
    } else {
        &ctx.env.dirs.output
    };
    let target = files::save_path(prefix, base, w, h)?;
    let texts = if ctx.env.save_metadata {
        files::metadata_chunks(ctx.prompt, ctx.extra_pnginfo)
    } else {
        Vec::new()
    };
    let mut results = Vec::new();
    for (i, px) in pixels.iter().enumerate() {
        let counter = target.counter + i as u64;
        let name = target.file_name(counter, i, "png");
        let bytes = files::encode_png(px, &texts, compress_level)?;
        files::write_atomic(&target.folder.join(&name), &bytes)?;
        results.push(json!({"filename": name, "subfolder": target.subfolder, "type": kind}));
    }
    Ok(results)
}

fn images_ui(results: Vec<serde_json::Value>) -> Map<String, serde_json::Value> {
    let mut ui = Map::new();
    ui.insert("images".into(), serde_json::Value::Array(results));
    ui
}

fn run_save_image(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let results = save_images(
        ctx,
        inputs.image("images")?,
        inputs.string("filename_prefix")?,
        "output",
        4,
    )?;
    Ok(Outputs::ui(images_ui(results)))
}

fn run_preview_image(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    use rand::Rng;
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstupvxyz";
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| LETTERS[rng.random_range(0..LETTERS.len())] as char)
        .collect();
    let prefix = format!("ComfyUI_temp_{suffix}");
    let results = save_images(ctx, inputs.image("images")?, &prefix, "temp", 1)?;
    Ok(Outputs::ui(images_ui(results)))
}

/// `IMAGE [N,H,W,C]` -> resized `IMAGE`, through `[N,C,H,W]` as ComfyUI does.
pub fn resize_image(
    image: &Tensor,
    width: usize,
    height: usize,
    method: Method,
    crop_center: bool,
) -> Result<Tensor, NodeError> {
    let nchw = image.permute((0, 3, 1, 2))?;
    Ok(common_upscale(&nchw, width, height, method, crop_center)?
        .permute((0, 2, 3, 1))?
        .contiguous()?)
}

fn image_scale() -> NodeDef {
    let schema = NodeSchema::v1("ImageScale", "image/upscaling")
        .display("Upscale Image")
        .input(InputDef::socket("image", "IMAGE"))
        .input(InputDef::combo("upscale_method", IMAGE_UPSCALE_METHODS))
        .input(
            InputDef::int("width")
                .default(512)
                .min(0)
                .max(MAX_RESOLUTION)
                .step(1),
        )
        .input(
            InputDef::int("height")
                .default(512)
                .min(0)
                .max(MAX_RESOLUTION)
                .step(1),
        )
        .input(InputDef::combo("crop", CROP_METHODS))
        .output(OutputDef::new("IMAGE"))
        .aliases(&[
            "resize",
            "resize image",
            "scale image",
            "image resize",
            "zoom",
            "zoom in",
            "change size",
        ]);
    NodeDef::new(schema, run_image_scale)
}

fn run_image_scale(_: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let image = inputs.image("image")?;
    let (mut width, mut height) = (inputs.usize("width")?, inputs.usize("height")?);
    if width == 0 && height == 0 {
        return Ok(Outputs::one(Value::Image(image.clone())));
    }
    let (_, h, w, _) = image.dims4()?;
    if width == 0 {
        width = py_round(w as f64 * height as f64 / h as f64).max(1) as usize;
    } else if height == 0 {
        height = py_round(h as f64 * width as f64 / w as f64).max(1) as usize;
    }
    let method = Method::parse(inputs.string("upscale_method")?)?;
    let out = resize_image(
        image,
        width,
        height,
        method,
        inputs.string("crop")? == "center",
    )?;
    Ok(Outputs::one(Value::Image(out)))
}

fn image_scale_by() -> NodeDef {
    let schema = NodeSchema::v1("ImageScaleBy", "image/upscaling")
        .display("Upscale Image By")
        .input(InputDef::socket("image", "IMAGE"))
        .input(InputDef::combo("upscale_method", IMAGE_UPSCALE_METHODS))
        .input(
            InputDef::float("scale_by")
                .default(1.0)
                .min(0.01)
                .max(8.0)
                .step(0.01),
        )
        .output(OutputDef::new("IMAGE"));
    NodeDef::new(schema, run_image_scale_by)
}

fn run_image_scale_by(_: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let image = inputs.image("image")?;
    let scale = inputs.float("scale_by")?;
    let (_, h, w, _) = image.dims4()?;
    let width = py_round(w as f64 * scale).max(1) as usize;
    let height = py_round(h as f64 * scale).max(1) as usize;
    let method = Method::parse(inputs.string("upscale_method")?)?;
    Ok(Outputs::one(Value::Image(resize_image(
        image, width, height, method, false,
    )?)))
}

fn image_invert() -> NodeDef {
    let schema = NodeSchema::v1("ImageInvert", "image")
        .display("Invert Image")
        .input(InputDef::socket("image", "IMAGE"))
        .output(OutputDef::new("IMAGE"))
        .aliases(&["reverse colors"]);
    NodeDef::new(schema, run_image_invert)
}

fn run_image_invert(_: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let image = inputs.image("image")?;
    let channels = *image.dims().last().unwrap_or(&0);
    let out = if channels == 4 {
        let rgb = image.narrow(3, 0, 3)?.affine(-1.0, 1.0)?;
        Tensor::cat(&[rgb, image.narrow(3, 3, 1)?], 3)?
    } else {
        image.affine(-1.0, 1.0)?
    };
    Ok(Outputs::one(Value::Image(out)))
}

fn image_batch() -> NodeDef {
    let mut schema = NodeSchema::v1("ImageBatch", "image")
        .display("Batch Images")
        .input(InputDef::socket("image1", "IMAGE"))
        .input(InputDef::socket("image2", "IMAGE"))
        .output(OutputDef::new("IMAGE"))
        .aliases(&["combine images", "merge images", "stack images"]);
    schema.deprecated = true;
    NodeDef::new(schema, run_image_batch)
}

fn run_image_batch(_: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let a = inputs.image("image1")?;
    let mut b = inputs.image("image2")?.clone();
    let (_, h, w, c) = a.dims4()?;
    let (_, h2, w2, c2) = b.dims4()?;
    if c != c2 {
        return Err(NodeError::Value(format!(
            "cannot batch images with {c} and {c2} channels"
        )));
    }
    if (h, w) != (h2, w2) {
        b = resize_image(&b, w, h, Method::Bilinear, true)?;
    }
    Ok(Outputs::one(Value::Image(Tensor::cat(&[a, &b], 0)?)))
}

fn empty_image() -> NodeDef {
    let schema = NodeSchema::v1("EmptyImage", "image")
        .input(
            InputDef::int("width")
                .default(512)
                .min(1)
                .max(MAX_RESOLUTION)
                .step(1),
        )
        .input(
            InputDef::int("height")
                .default(512)
                .min(1)
                .max(MAX_RESOLUTION)
                .step(1),
        )
        .input(InputDef::int("batch_size").default(1).min(1).max(4096))
        .input(
            InputDef::int("color")
                .default(0)
                .min(0)
                .max(0xFFFFFF)
                .step(1)
                .opt("display", "color"),
        )
        .output(OutputDef::new("IMAGE"));
    NodeDef::new(schema, run_empty_image)
}

fn run_empty_image(_: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let (w, h, n) = (
        inputs.usize("width")?,
        inputs.usize("height")?,
        inputs.usize("batch_size")?,
    );
    let color = inputs.int("color")?;
    let channel = |shift: i64| ((color >> shift) & 0xFF) as f32 / 255.0;
    let rgb = [channel(16), channel(8), channel(0)];
    let pixel = Tensor::new(&rgb, &Device::Cpu)?;
    let image = pixel
        .reshape((1, 1, 1, 3))?
        .broadcast_as((n, h, w, 3))?
        .contiguous()?;
    Ok(Outputs::one(Value::Image(image)))
}
