//! Image utility nodes of `comfy_extras/nodes_images.py` used by the LTX-2 templates:
//! GetImageSize, ImageScaleToMaxDimension, ImageFromBatch.

use candle_core::Tensor;

use crate::image::resize_image;
use crate::imageops::{Method, py_round};
use crate::schema::{Hidden, MAX_RESOLUTION};
use crate::{
    Ctx, InputDef, Inputs, NodeDef, NodeError, NodeSchema, OutputDef, Outputs, Registry, Value,
};

const MODULE: &str = "comfy_extras.nodes_images";

/// Registers the nodes.
pub fn register(r: &mut Registry) {
    r.register(get_image_size());
    r.register(image_scale_to_max_dimension());
    r.register(image_from_batch());
}

fn get_image_size() -> NodeDef {
    let schema = NodeSchema::v3("GetImageSize", "image", MODULE)
        .display("Get Image Size")
        .description("Returns width and height of the image, and passes it through unchanged.")
        .aliases(&["dimensions", "resolution", "image info"])
        .input(InputDef::socket("image", "IMAGE"))
        .output(OutputDef::new("INT").named("width"))
        .output(OutputDef::new("INT").named("height"))
        .output(OutputDef::new("INT").named("batch_size"))
        .hidden(Hidden::UniqueId);
    NodeDef::new(schema, run_get_image_size)
}

fn run_get_image_size(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let (n, h, w, _) = inputs.image("image")?.dims4()?;
    ctx.reporter.text(
        ctx.node_id,
        &format!("width: {w}, height: {h}\n batch size: {n}"),
    );
    let int = |v: usize| Value::Int(v as i128);
    Ok(Outputs::new(vec![int(w), int(h), int(n)]))
}

fn image_scale_to_max_dimension() -> NodeDef {
    // Upstream lists "bilinear" twice; the list is reproduced as served.
    let methods = [
        "area",
        "lanczos",
        "bilinear",
        "nearest-exact",
        "bilinear",
        "bicubic",
    ];
    let schema = NodeSchema::v3("ImageScaleToMaxDimension", "image/upscaling", MODULE)
        .input(InputDef::socket("image", "IMAGE"))
        .input(InputDef::combo("upscale_method", &methods))
        .input(
            InputDef::int("largest_size")
                .default(512)
                .min(0)
                .max(MAX_RESOLUTION)
                .step(1),
        )
        .output(OutputDef::new("IMAGE"));
    NodeDef::new(schema, run_image_scale_to_max_dimension)
}

/// The size that makes the longer side `longer` and keeps the aspect ratio (Python's rounding).
pub fn longer_side_size(width: usize, height: usize, longer: usize) -> (usize, usize) {
    let (w, h, l) = (width as f64, height as f64, longer as f64);
    if height > width {
        (py_round((w / h) * l).max(0) as usize, longer)
    } else if width > height {
        (longer, py_round((h / w) * l).max(0) as usize)
    } else {
        (longer, longer)
    }
}

fn run_image_scale_to_max_dimension(_: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let image = inputs.image("image")?;
    let (_, h, w, _) = image.dims4()?;
    let (width, height) = longer_side_size(w, h, inputs.usize("largest_size")?);
    let method = Method::parse(inputs.string("upscale_method")?)?;
    let out = resize_image(image, width, height, method, false)?;
    Ok(Outputs::one(Value::Image(out)))
}

fn image_from_batch() -> NodeDef {
    let schema = NodeSchema::v3("ImageFromBatch", "image/batch", MODULE)
        .aliases(&["select image", "pick from batch", "extract image"])
        .input(InputDef::socket("image", "IMAGE"))
        .input(InputDef::int("batch_index").default(0).min(0).max(4095))
        .input(InputDef::int("length").default(1).min(1).max(4096))
        .output(OutputDef::new("IMAGE"));
    NodeDef::new(schema, run_image_from_batch)
}

/// `image[i : i + length]` with `i` clamped to the batch (negative `i` counts from the end, as
/// newer ComfyUI allows) and `length` cut to what is left.
pub fn batch_slice(image: &Tensor, index: i64, length: usize) -> Result<Tensor, NodeError> {
    let n = image.dim(0)? as i64;
    if n == 0 {
        return Err(NodeError::Value("the image batch is empty".into()));
    }
    let start = if index < 0 { index + n } else { index }.clamp(0, n - 1);
    let length = (length as i64).min(n - start).max(0) as usize;
    Ok(image.narrow(0, start as usize, length)?.contiguous()?)
}

fn run_image_from_batch(_: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let out = batch_slice(
        inputs.image("image")?,
        inputs.int("batch_index")?,
        inputs.usize("length")?,
    )?;
    Ok(Outputs::one(Value::Image(out)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn longer_side_keeps_the_aspect_ratio_with_pythons_rounding() {
        assert_eq!(longer_side_size(1280, 720, 1536), (1536, 864));
        assert_eq!(longer_side_size(720, 1280, 640), (360, 640));
        assert_eq!(longer_side_size(300, 300, 17), (17, 17));
        // 4 / 8 * 5 = 2.5 rounds to the even 2; 4 / 8 * 7 = 3.5 to the even 4.
        assert_eq!(longer_side_size(4, 8, 5), (2, 5));
        assert_eq!(longer_side_size(8, 4, 7), (7, 4));
    }

    #[test]
    fn batch_slice_clamps_like_comfyui() {
        let t = Tensor::arange(0f32, 5.0, &Device::Cpu)
            .unwrap()
            .reshape((5, 1, 1, 1))
            .unwrap();
        let first = |s: Tensor| s.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(first(batch_slice(&t, 1, 2).unwrap()), [1.0, 2.0]);
        assert_eq!(first(batch_slice(&t, 3, 121).unwrap()), [3.0, 4.0]);
        assert_eq!(first(batch_slice(&t, 9, 1).unwrap()), [4.0]);
        assert_eq!(first(batch_slice(&t, -2, 5).unwrap()), [3.0, 4.0]);
        let empty = Tensor::zeros((0, 1, 1, 1), DType::F32, &Device::Cpu).unwrap();
        assert!(batch_slice(&empty, 0, 1).is_err());
    }
}
