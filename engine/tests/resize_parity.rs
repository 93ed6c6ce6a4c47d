//! LoadImage -> ImageScale -> SaveImage through our engine, compared pixel by pixel with the
//! real ComfyUI's output for the same prompt (tests/fixtures/comfy_peer/resize/: torch's
//! interpolate modes and PIL's Lanczos, after ComfyUI's 8-bit quantisation).

use std::path::PathBuf;
use std::sync::Arc;

use engine::events::Discard;
use engine::{CachePolicy, Engine, Job, Outcome};
use nodes::Env;
use serde_json::json;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/comfy_peer")
}

fn pixels(path: &std::path::Path) -> (u32, u32, Vec<u8>) {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8();
    (img.width(), img.height(), img.into_raw())
}

#[test]
fn image_scale_matches_comfyui_for_every_method() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::under(dir.path());
    std::fs::create_dir_all(&env.dirs.input).unwrap();
    std::fs::copy(
        fixtures().join("test13x9.png"),
        env.dirs.input.join("test13x9.png"),
    )
    .unwrap();
    let mut engine = Engine::new(Arc::new(nodes::builtin_registry()), CachePolicy::default());
    let mut report = Vec::new();
    for method in ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"] {
        for (w, h) in [(20, 17), (6, 5)] {
            for crop in ["disabled", "center"] {
                let name = format!("{method}_{w}x{h}_{crop}");
                let prompt = json!({
                    "1": {"class_type": "LoadImage", "inputs": {"image": "test13x9.png"}},
                    "2": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": method, "width": w, "height": h, "crop": crop}},
                    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": name}}
                });
                let v = engine.validate(&env, &prompt, None).unwrap();
                let job = Job {
                    prompt_id: &name,
                    prompt: &v.prompt,
                    outputs: &v.outputs,
                    extra_data: &json!({}),
                    env: &env,
                };
                let result = engine.execute(&job, &Discard);
                assert_eq!(
                    result.outcome,
                    Outcome::Success,
                    "{name}: {:?}",
                    result.error()
                );
                let ours = pixels(&env.dirs.output.join(format!("{name}_00001_.png")));
                let theirs = pixels(&fixtures().join("resize").join(format!("{name}.png")));
                assert_eq!((ours.0, ours.1), (theirs.0, theirs.1), "{name}: size");
                let diffs: Vec<i32> = ours
                    .2
                    .iter()
                    .zip(&theirs.2)
                    .map(|(a, b)| (*a as i32 - *b as i32).abs())
                    .collect();
                let max = diffs.iter().copied().max().unwrap_or(0);
                let off = diffs.iter().filter(|d| **d > 0).count();
                report.push(format!(
                    "{name}: max diff {max}, {off}/{} values differ",
                    diffs.len()
                ));
                // torch evaluates in f32 with its own operation order and vectorisation; the
                // 8-bit quantisation then rounds to the same level except on exact boundaries.
                assert!(max <= 1, "{name}: max pixel difference {max} (> 1 level)");
            }
        }
    }
    println!("{}", report.join("\n"));
}
