//! ResizeImageMaskNode (`comfy_extras/nodes_post_processing.py`): resizes an IMAGE or a MASK
//! (a V3 `MatchType` input; the output has the input's type) in one of nine ways chosen by the
//! `resize_type` dynamic combo, whose option inputs arrive as `resize_type.<name>`.

use candle_core::Tensor;

use crate::image_utils::longer_side_size;
use crate::imageops::{Method, common_upscale, py_round};
use crate::schema::{DynamicOption, MAX_RESOLUTION};
use crate::{
    Ctx, InputDef, Inputs, NodeDef, NodeError, NodeSchema, OutputDef, Outputs, Registry, Value,
};

const SCALE_METHODS: &[&str] = &["nearest-exact", "bilinear", "area", "bicubic", "lanczos"];
const CROP_TOOLTIP: &str = "How to handle aspect ratio mismatch: 'disabled' stretches to fit, 'center' crops to maintain aspect ratio.";

/// Registers the node.
pub fn register(r: &mut Registry) {
    r.register(resize_image_mask());
}

fn crop() -> InputDef {
    InputDef::combo("crop", &["disabled", "center"])
        .default("center")
        .tooltip(CROP_TOOLTIP)
}

fn size(name: &str, tooltip: &str) -> InputDef {
    InputDef::int(name)
        .default(512)
        .min(0)
        .max(MAX_RESOLUTION)
        .step(1)
        .tooltip(tooltip)
}

fn resize_options() -> Vec<DynamicOption> {
    vec![
        DynamicOption::new(
            "scale dimensions",
            vec![
                size("width", "Target width in pixels. Set to 0 to auto-calculate from height while preserving aspect ratio."),
                size("height", "Target height in pixels. Set to 0 to auto-calculate from width while preserving aspect ratio."),
                crop(),
            ],
        ),
        DynamicOption::new(
            "scale by multiplier",
            vec![InputDef::float("multiplier").default(1.0).min(0.01).max(8.0).step(0.01)
                .tooltip("Scale factor (e.g., 2.0 doubles size, 0.5 halves size).")],
        ),
        DynamicOption::new(
            "scale longer dimension",
            vec![size("longer_size", "The longer edge will be resized to this value. Aspect ratio is preserved.")],
        ),
        DynamicOption::new(
            "scale shorter dimension",
            vec![size("shorter_size", "The shorter edge will be resized to this value. Aspect ratio is preserved.")],
        ),
        DynamicOption::new(
            "scale width",
            vec![size("width", "Target width in pixels. Height auto-adjusts to preserve aspect ratio.")],
        ),
        DynamicOption::new(
            "scale height",
            vec![size("height", "Target height in pixels. Width auto-adjusts to preserve aspect ratio.")],
        ),
        DynamicOption::new(
            "scale total pixels",
            vec![InputDef::float("megapixels").default(1.0).min(0.01).max(16.0).step(0.01)
                .tooltip("Target total megapixels (e.g., 1.0 \u{2248} 1024\u{d7}1024). Aspect ratio is preserved.")],
        ),
        DynamicOption::new(
            "match size",
            vec![
                InputDef::socket("match", "IMAGE,MASK")
                    .tooltip("Resize input to match the dimensions of this reference image or mask."),
                crop(),
            ],
        ),
        DynamicOption::new(
            "scale to multiple",
            vec![InputDef::int("multiple").default(8).min(1).max(MAX_RESOLUTION).step(1)
                .tooltip("Resize so width and height are divisible by this number. Useful for latent alignment (e.g., 8 or 64).")],
        ),
    ]
}

fn resize_image_mask() -> NodeDef {
    let schema = NodeSchema::v3("ResizeImageMaskNode", "transform", "comfy_extras.nodes_post_processing")
        .display("Resize Image/Mask")
        .description("Resize an image or mask using various scaling methods.")
        .aliases(&[
            "resize", "resize image", "resize mask", "scale", "scale image", "scale mask",
            "image resize", "change size", "dimensions", "shrink", "enlarge",
        ])
        .input(InputDef::match_type("input", "input_type", "IMAGE,MASK"))
        .input(
            InputDef::dynamic_combo("resize_type", resize_options())
                .tooltip("Select how to resize: by exact dimensions, scale factor, matching another image, etc."),
        )
        .input(
            InputDef::combo("scale_method", SCALE_METHODS)
                .default("area")
                .tooltip("Interpolation algorithm. 'area' is best for downscaling, 'lanczos' for upscaling, 'nearest-exact' for pixel art."),
        )
        .output(OutputDef::match_type("input_type").named("resized"));
    NodeDef::new(schema, run)
}

/// An IMAGE `[N,H,W,C]` or MASK `[N,H,W]` as planes `[N,C,H,W]`, remembering which it was.
struct Planes {
    tensor: Tensor,
    is_image: bool,
}

impl Planes {
    fn of(value: &Value, name: &str) -> Result<Self, NodeError> {
        match value {
            Value::Image(t) => Ok(Self {
                tensor: t.permute((0, 3, 1, 2))?,
                is_image: true,
            }),
            Value::Mask(t) => Ok(Self {
                tensor: t.unsqueeze(1)?,
                is_image: false,
            }),
            other => Err(NodeError::Value(format!(
                "input '{name}' expected IMAGE or MASK, got {}",
                other.type_name()
            ))),
        }
    }

    fn width(&self) -> usize {
        self.tensor.dims()[3]
    }
    fn height(&self) -> usize {
        self.tensor.dims()[2]
    }

    fn resized(
        &self,
        width: usize,
        height: usize,
        method: Method,
        crop: bool,
    ) -> Result<Self, NodeError> {
        Ok(Self {
            tensor: common_upscale(&self.tensor, width, height, method, crop)?,
            is_image: self.is_image,
        })
    }

    fn into_value(self) -> Result<Value, NodeError> {
        Ok(if self.is_image {
            Value::Image(self.tensor.permute((0, 2, 3, 1))?.contiguous()?)
        } else {
            Value::Mask(self.tensor.squeeze(1)?.contiguous()?)
        })
    }
}

fn input(inputs: &Inputs, name: &str) -> Result<Value, NodeError> {
    inputs
        .get(name)
        .cloned()
        .ok_or_else(|| NodeError::Value(format!("missing input '{name}'")))
}

fn run(_: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let original = input(inputs, "input")?;
    let planes = Planes::of(&original, "input")?;
    let method = Method::parse(inputs.string("scale_method")?)?;
    let opt = |name: &str| format!("resize_type.{name}");
    let center = |inputs: &Inputs| -> Result<bool, NodeError> {
        Ok(inputs.string(&opt("crop"))? == "center")
    };
    let (w, h) = (planes.width(), planes.height());
    let resized = match inputs.string("resize_type")? {
        "scale dimensions" => {
            match fit_dimensions(
                w,
                h,
                inputs.usize(&opt("width"))?,
                inputs.usize(&opt("height"))?,
            ) {
                Some((width, height)) => planes.resized(width, height, method, center(inputs)?)?,
                None => return Ok(Outputs::one(original)),
            }
        }
        "scale by multiplier" => {
            let m = inputs.float(&opt("multiplier"))?;
            let scale = |v: usize| py_round(v as f64 * m).max(0) as usize;
            planes.resized(scale(w), scale(h), method, false)?
        }
        "scale longer dimension" => {
            let (width, height) = longer_side_size(w, h, inputs.usize(&opt("longer_size"))?);
            planes.resized(width, height, method, false)?
        }
        "scale shorter dimension" => {
            let (width, height) = shorter_side_size(w, h, inputs.usize(&opt("shorter_size"))?);
            planes.resized(width, height, method, false)?
        }
        "scale width" => match fit_dimensions(w, h, inputs.usize(&opt("width"))?, 0) {
            Some((width, height)) => planes.resized(width, height, method, false)?,
            None => return Ok(Outputs::one(original)),
        },
        "scale height" => match fit_dimensions(w, h, 0, inputs.usize(&opt("height"))?) {
            Some((width, height)) => planes.resized(width, height, method, false)?,
            None => return Ok(Outputs::one(original)),
        },
        "scale total pixels" => {
            let (width, height) = total_pixels_size(w, h, inputs.float(&opt("megapixels"))?);
            planes.resized(width, height, method, false)?
        }
        "match size" => {
            let target = Planes::of(&input(inputs, &opt("match"))?, &opt("match"))?;
            planes.resized(target.width(), target.height(), method, center(inputs)?)?
        }
        "scale to multiple" => {
            match scale_to_multiple(planes, inputs.usize(&opt("multiple"))?, method)? {
                Some(p) => p,
                None => return Ok(Outputs::one(original)),
            }
        }
        other => {
            return Err(NodeError::Value(format!(
                "Unsupported resize type: {other}"
            )));
        }
    };
    Ok(Outputs::one(resized.into_value()?))
}

/// `scale_dimensions`: both 0 keeps the input (`None`); one 0 follows the aspect ratio.
fn fit_dimensions(w: usize, h: usize, width: usize, height: usize) -> Option<(usize, usize)> {
    match (width, height) {
        (0, 0) => None,
        (0, height) => Some((
            py_round(w as f64 * height as f64 / h as f64).max(1) as usize,
            height,
        )),
        (width, 0) => Some((
            width,
            py_round(h as f64 * width as f64 / w as f64).max(1) as usize,
        )),
        size => Some(size),
    }
}

/// The size that makes the shorter side `shorter` and keeps the aspect ratio.
fn shorter_side_size(width: usize, height: usize, shorter: usize) -> (usize, usize) {
    let (w, h, s) = (width as f64, height as f64, shorter as f64);
    if height < width {
        (py_round((w / h) * s).max(0) as usize, shorter)
    } else if width < height {
        (shorter, py_round((h / w) * s).max(0) as usize)
    } else {
        (shorter, shorter)
    }
}

/// `scale_total_pixels`: `int(megapixels * 1024 * 1024)` pixels with the input's aspect ratio.
fn total_pixels_size(width: usize, height: usize, megapixels: f64) -> (usize, usize) {
    let total = (megapixels * 1024.0 * 1024.0).trunc();
    let scale = (total / (width * height) as f64).sqrt();
    let side = |v: usize| py_round(v as f64 * scale).max(0) as usize;
    (side(width), side(height))
}

/// `scale_to_multiple_cover`: scale up just enough to cover the largest multiple-of-`k` size
/// inside the input, then crop its centre (`None`: nothing to do).
fn scale_to_multiple(
    planes: Planes,
    k: usize,
    method: Method,
) -> Result<Option<Planes>, NodeError> {
    let (w, h) = (planes.width(), planes.height());
    if k <= 1 {
        return Ok(None);
    }
    let (tw, th) = (w / k * k, h / k * k);
    if tw == 0 || th == 0 || (tw == w && th == h) {
        return Ok(None);
    }
    let (sw, sh) = (tw as f64 / w as f64, th as f64 / h as f64);
    let (scaled_w, scaled_h) = if sw >= sh {
        (tw, ((h as f64 * sw).ceil() as usize).max(th))
    } else {
        (((w as f64 * sh).ceil() as usize).max(tw), th)
    };
    let scaled = planes.resized(scaled_w, scaled_h, method, false)?;
    let (x0, y0) = ((scaled_w - tw) / 2, (scaled_h - th) / 2);
    Ok(Some(Planes {
        tensor: scaled
            .tensor
            .narrow(2, y0, th)?
            .narrow(3, x0, tw)?
            .contiguous()?,
        is_image: scaled.is_image,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn sizes_follow_python_arithmetic() {
        assert_eq!(fit_dimensions(1280, 720, 0, 360), Some((640, 360)));
        assert_eq!(fit_dimensions(1280, 720, 640, 0), Some((640, 360)));
        assert_eq!(fit_dimensions(3, 3, 0, 0), None);
        assert_eq!(shorter_side_size(1280, 720, 360), (640, 360));
        assert_eq!(shorter_side_size(720, 1280, 360), (360, 640));
        // 1 MP of a 1280x720 image: sqrt(1048576 / 921600) = 1.0666...
        assert_eq!(total_pixels_size(1280, 720, 1.0), (1365, 768));
    }

    #[test]
    fn scale_to_multiple_covers_then_crops() {
        let image = Tensor::zeros((1, 3, 30, 50), DType::F32, &Device::Cpu).unwrap();
        let planes = Planes {
            tensor: image,
            is_image: true,
        };
        let out = scale_to_multiple(planes, 16, Method::NearestExact)
            .unwrap()
            .unwrap();
        assert_eq!(out.tensor.dims(), &[1, 3, 16, 48]);
        let same = Planes {
            tensor: Tensor::zeros((1, 1, 32, 48), DType::F32, &Device::Cpu).unwrap(),
            is_image: false,
        };
        assert!(scale_to_multiple(same, 16, Method::Area).unwrap().is_none());
    }
}
