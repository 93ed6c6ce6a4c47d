//! What the simulated participants submit: the committed API-format LTX-2 distilled templates
//! (`tests/workflows/api/`, text-to-video and image-to-video) shrunk to tiny sizes with varied
//! seeds and sizes, and a cheap core-node image prompt; plus the PNGs they upload.

use serde_json::{Map, Value, json};

/// A small deterministic generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (any value; zero is replaced).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.unit() * n as f64) as usize).min(n.saturating_sub(1))
    }

    /// A 32-bit seed.
    pub fn seed(&mut self) -> u64 {
        (self.unit() * u32::MAX as f64) as u64
    }
}

/// Which kind of prompt (for the report).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// LTX-2 distilled text-to-video.
    TextToVideo,
    /// LTX-2 distilled image-to-video from the user's upload.
    ImageToVideo,
    /// EmptyImage -> SaveImage.
    CoreImage,
}

impl Kind {
    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Kind::TextToVideo => "ltx2 t2v",
            Kind::ImageToVideo => "ltx2 i2v",
            Kind::CoreImage => "core image",
        }
    }
}

/// The templates, read once.
pub struct Templates {
    t2v: Map<String, Value>,
    i2v: Map<String, Value>,
}

fn read_api(name: &str) -> Map<String, Value> {
    let path = format!(
        "{}/tests/workflows/api/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Sets `node.inputs.input`, checking both exist (a template update cannot slip by).
fn set(prompt: &mut Map<String, Value>, node: &str, input: &str, value: Value) {
    let inputs = prompt
        .get_mut(node)
        .and_then(|n| n.get_mut("inputs"))
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("the template has no node {node}"));
    assert!(inputs.contains_key(input), "node {node} has no {input}");
    inputs.insert(input.to_string(), value);
}

/// Stage-1 sizes (the templates halve them before the x2 upscaler; multiples of 64 keep the
/// half-size a multiple of the VAE's 32).
const SIZES: [(u32, u32); 3] = [(128, 64), (192, 64), (128, 128)];
/// Frame counts (8k + 1).
const LENGTHS: [u32; 2] = [9, 17];

impl Templates {
    /// Reads the templates from the repository.
    pub fn load() -> Self {
        Self {
            t2v: read_api("video_ltx2_t2v_distilled"),
            i2v: read_api("video_ltx2_i2v_distilled"),
        }
    }

    /// A tiny text-to-video prompt.
    pub fn t2v(&self, rng: &mut Rng) -> Value {
        let mut p = self.t2v.clone();
        let (w, h) = SIZES[rng.below(SIZES.len())];
        set(&mut p, "177:131", "width", json!(w));
        set(&mut p, "177:131", "height", json!(h));
        set(&mut p, "177:113", "value", json!(LENGTHS[rng.below(2)]));
        set(&mut p, "177:118", "noise_seed", json!(rng.seed()));
        set(&mut p, "177:123", "noise_seed", json!(rng.seed()));
        set(&mut p, "104", "filename_prefix", json!("soak/t2v"));
        Value::Object(p)
    }

    /// A tiny image-to-video prompt from the uploaded input `image`.
    pub fn i2v(&self, rng: &mut Rng, image: &str) -> Value {
        let mut p = self.i2v.clone();
        let (w, h) = SIZES[rng.below(SIZES.len())];
        set(&mut p, "98", "image", json!(image));
        set(&mut p, "102", "resize_type.width", json!(w));
        set(&mut p, "102", "resize_type.height", json!(h));
        set(&mut p, "92:115", "resize_type.longer_size", json!(w.max(h)));
        set(&mut p, "92:62", "value", json!(LENGTHS[rng.below(2)]));
        set(&mut p, "92:11", "noise_seed", json!(rng.seed()));
        set(&mut p, "92:67", "noise_seed", json!(rng.seed()));
        set(&mut p, "75", "filename_prefix", json!("soak/i2v"));
        Value::Object(p)
    }
}

/// EmptyImage -> SaveImage of a random colour.
pub fn core_image(rng: &mut Rng) -> Value {
    let color = rng.seed() & 0xff_ffff;
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64 + 32 * rng.below(4), "height": 64, "batch_size": 1, "color": color}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "soak/img"}},
    })
}

/// A 160x96 PNG of a gradient with a coloured bar (as a participant's photo).
pub fn png(rng: &mut Rng) -> Vec<u8> {
    let (width, height) = (160u32, 96u32);
    let bar = rng.below(width as usize) as u32;
    let tint = rng.below(256) as u8;
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        if x.abs_diff(bar) < 12 {
            image::Rgb([240, 220, tint])
        } else {
            image::Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, tint])
        }
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("encode png");
    out.into_inner()
}
