//! Canny against kornia's own edge maps (`tests/fixtures/canny/`, made by `make.py` with
//! kornia 0.8.2 on the CPU): every pixel must agree.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/canny")
        .join(name)
}

fn rgb(name: &str) -> Tensor {
    let img = image::open(fixture(name)).unwrap().to_rgb8();
    let (w, h) = img.dimensions();
    let data: Vec<f32> = img.into_raw().iter().map(|&v| v as f32 / 255.0).collect();
    Tensor::from_vec(data, (1, h as usize, w as usize, 3), &Device::Cpu).unwrap()
}

#[test]
fn edges_equal_kornias() {
    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("cases.json")).unwrap()).unwrap();
    let mut total = 0;
    for case in cases["cases"].as_array().unwrap() {
        let image = rgb(case["input"].as_str().unwrap());
        let (low, high) = (
            case["low"].as_f64().unwrap() as f32,
            case["high"].as_f64().unwrap() as f32,
        );
        let out = nodes::canny::detect(&image, low, high, &|| Ok(())).unwrap();
        let (_, h, w, c) = out.dims4().unwrap();
        assert_eq!(c, 3);
        let ours: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();
        let expected = image::open(fixture(case["expected"].as_str().unwrap()))
            .unwrap()
            .to_luma8();
        assert_eq!(
            (expected.width() as usize, expected.height() as usize),
            (w, h)
        );
        let mut differ = Vec::new();
        for (i, px) in expected.pixels().enumerate() {
            let want = if px.0[0] > 127 { 1.0 } else { 0.0 };
            let got = &ours[i * 3..i * 3 + 3];
            assert!(got.iter().all(|&v| v == got[0]), "channels differ at {i}");
            if got[0] != want {
                differ.push((i % w, i / w));
            }
        }
        println!("{case}: {} of {} pixels differ", differ.len(), w * h);
        assert!(
            differ.is_empty(),
            "{case}: pixels (x, y) differ: {differ:?}"
        );
        assert_eq!(
            ours.iter().filter(|&&v| v == 1.0).count() / 3,
            case["edge_pixels"].as_u64().unwrap() as usize
        );
        total += 1;
    }
    assert_eq!(total, 6);
}
