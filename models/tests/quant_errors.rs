//! Quantised tensors the loader cannot read are errors that name the key, never plain tensors;
//! companions (scales, markers) never pass for model tensors.

use std::path::PathBuf;

use candle_core::{DType, Device};
use models::weights::WeightFiles;

/// A tensor to write: key, safetensors dtype name, shape, bytes.
type Entry<'a> = (&'a str, &'a str, Vec<usize>, Vec<u8>);

/// Writes a safetensors file into `dir`.
fn write(
    dir: &tempfile::TempDir,
    name: &str,
    entries: &[Entry<'_>],
    metadata: &[(&str, &str)],
) -> PathBuf {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        let meta: serde_json::Map<String, serde_json::Value> = metadata
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        header.insert("__metadata__".into(), meta.into());
    }
    let mut data = Vec::new();
    for (key, dtype, shape, bytes) in entries {
        let entry = serde_json::json!({
            "dtype": dtype,
            "shape": shape,
            "data_offsets": [data.len(), data.len() + bytes.len()],
        });
        header.insert(key.to_string(), entry);
        data.extend_from_slice(bytes);
    }
    let header = serde_json::to_vec(&header).unwrap();
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend(header);
    file.extend(data);
    let path = dir.path().join(name);
    std::fs::write(&path, file).unwrap();
    path
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A `.comfy_quant` tensor holding `json`.
fn marker<'a>(key: &'a str, json: &str) -> Entry<'a> {
    (key, "U8", vec![json.len()], json.as_bytes().to_vec())
}

/// Asserts that reading `key` fails, both through `quant_format` and through a VarBuilder,
/// with a message containing `key` and `needle`.
fn assert_read_fails(files: &WeightFiles, key: &str, shape: &[usize], needle: &str) {
    let format_error = files.quant_format(key).unwrap_err().to_string();
    assert!(
        format_error.contains(key) && format_error.contains(needle),
        "{format_error}"
    );
    let vb = files.var_builder(DType::F32, &Device::Cpu).unwrap();
    assert!(vb.contains_tensor(key));
    let get_error = vb.get(shape, key).unwrap_err().to_string();
    assert!(
        get_error.contains(key) && get_error.contains(needle),
        "{get_error}"
    );
    println!("{key}: {get_error}");
}

const FP8_16: [u8; 16] = [0x38; 16];

#[test]
fn unknown_or_broken_markers_are_errors_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let shape: &[usize] = &[4, 4];
    let path = write(
        &dir,
        "markers.safetensors",
        &[
            ("a.weight", "I8", shape.to_vec(), vec![1; 16]),
            ("a.weight_scale", "F32", vec![], f32_bytes(&[0.5])),
            marker("a.comfy_quant", r#"{"format":"int8_tensorwise"}"#),
            ("b.weight", "F8_E4M3", shape.to_vec(), FP8_16.to_vec()),
            ("b.weight_scale", "F32", vec![], f32_bytes(&[0.5])),
            marker("b.comfy_quant", "{format: "),
            ("c.weight", "F8_E4M3", shape.to_vec(), FP8_16.to_vec()),
            marker("c.comfy_quant", r#"{"fmt":"x"}"#),
            ("d.weight", "BF16", shape.to_vec(), vec![0; 32]),
            ("d.weight_scale", "F32", vec![], f32_bytes(&[0.5])),
            marker("d.comfy_quant", r#"{"format":"float8_e4m3fn"}"#),
            ("e.weight", "F8_E4M3", shape.to_vec(), FP8_16.to_vec()),
            marker("e.comfy_quant", r#"{"format":"float8_e4m3fn"}"#),
        ],
        &[],
    );
    let files = WeightFiles::open(&[path]).unwrap();
    assert_read_fails(&files, "a.weight", shape, "int8_tensorwise");
    assert_read_fails(&files, "b.weight", shape, "JSON");
    assert_read_fails(&files, "c.weight", shape, "no format");
    assert_read_fails(&files, "d.weight", shape, "BF16");
    // A marked FP8 layer without its scale cannot be read (ComfyUI fails on it too).
    let error = files
        .var_builder(DType::F32, &Device::Cpu)
        .unwrap()
        .get(shape, "e.weight")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("e.weight") && error.contains("weight_scale"),
        "{error}"
    );
}

#[test]
fn scales_without_a_recognisable_layout_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let shape: &[usize] = &[4, 4];
    let path = write(
        &dir,
        "siblings.safetensors",
        &[
            // F8 weight with a block-shaped scale but no marker: not per-tensor FP8.
            ("f.weight", "F8_E4M3", shape.to_vec(), FP8_16.to_vec()),
            ("f.weight_scale", "F32", vec![2], f32_bytes(&[0.5, 0.25])),
            // U8 weight with only one of the two NVFP4 scales.
            ("g.weight", "U8", vec![4, 2], vec![0x12; 8]),
            ("g.weight_scale", "F8_E4M3", vec![128, 4], vec![0x38; 512]),
            // A BF16 weight beside a scale-like tensor is a plain layer.
            ("h.weight", "BF16", vec![2], vec![0x80, 0x3f, 0x00, 0x40]),
            ("h.weight_scale", "F32", vec![], f32_bytes(&[3.0])),
        ],
        &[],
    );
    let files = WeightFiles::open(&[path]).unwrap();
    assert_read_fails(&files, "f.weight", shape, "no marker");
    assert_read_fails(&files, "g.weight", &[4, 4], "no marker");
    assert_eq!(files.quant_format("h.weight").unwrap(), None);
    let vb = files.var_builder(DType::F32, &Device::Cpu).unwrap();
    assert_eq!(
        vb.get(2, "h.weight").unwrap().to_vec1::<f32>().unwrap(),
        [1.0, 2.0]
    );
    assert!(vb.contains_tensor("h.weight_scale"));
}

#[test]
fn malformed_block_scales_and_shapes_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let meta = r#"{"layers":{"n":{"format":"nvfp4"},"m":{"format":"mxfp8"}}}"#;
    let path = write(
        &dir,
        "blocks.safetensors",
        &[
            // NVFP4 [20, 40] stored as [32, 24] would need [128, 4] block scales.
            ("n.weight", "U8", vec![32, 24], vec![0x11; 32 * 24]),
            ("n.weight_scale", "F8_E4M3", vec![32, 3], vec![0x38; 96]),
            ("n.weight_scale_2", "F32", vec![], f32_bytes(&[1.0])),
            ("m.weight", "F8_E4M3", vec![32, 64], vec![0x38; 32 * 64]),
            ("m.weight_scale", "U8", vec![128, 4], vec![127; 512]),
        ],
        &[("_quantization_metadata", meta)],
    );
    let files = WeightFiles::open(&[path]).unwrap();
    let vb = files.var_builder(DType::F32, &Device::Cpu).unwrap();
    let error = vb.get((20, 40), "n.weight").unwrap_err().to_string();
    assert!(
        error.contains("n.weight_scale") && error.contains("[128, 4]"),
        "{error}"
    );
    // The module shape must be what the padded storage holds.
    assert!(vb.get((32, 64), "m.weight").is_ok());
    assert!(vb.get((30, 40), "m.weight").is_ok());
    for bad in [(32, 65), (33, 64), (64, 64), (32, 31)] {
        let error = vb.get(bad, "m.weight").unwrap_err().to_string();
        assert!(error.contains("shape mismatch for m.weight"), "{error}");
    }
}

#[test]
fn broken_quantization_metadata_fails_at_open() {
    let dir = tempfile::tempdir().unwrap();
    for (i, meta) in ["{not json", r#"{"format_version":"1.0"}"#]
        .iter()
        .enumerate()
    {
        let path = write(
            &dir,
            &format!("meta{i}.safetensors"),
            &[("x.weight", "F32", vec![1], f32_bytes(&[1.0]))],
            &[("_quantization_metadata", meta)],
        );
        let error = WeightFiles::open(&[path]).err().unwrap().to_string();
        assert!(error.contains("_quantization_metadata"), "{error}");
    }
}

#[test]
fn companions_are_not_model_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "ltx.safetensors",
        &[
            ("l.weight", "F8_E4M3", vec![4, 4], FP8_16.to_vec()),
            ("l.weight_scale", "F32", vec![], f32_bytes(&[0.5])),
            ("l.input_scale", "F32", vec![], f32_bytes(&[0.25])),
        ],
        &[],
    );
    let files = WeightFiles::open(&[path]).unwrap();
    assert_eq!(files.keys(), ["l.weight"]);
    let vb = files.var_builder(DType::F32, &Device::Cpu).unwrap().pp("l");
    assert!(vb.contains_tensor("weight"));
    for companion in ["weight_scale", "input_scale"] {
        assert!(!vb.contains_tensor(companion));
        let error = vb.get((), companion).unwrap_err().to_string();
        assert!(error.contains("companion of `l.weight`"), "{error}");
    }
    let weight = vb.get((4, 4), "weight").unwrap();
    assert_eq!(
        weight.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        [0.5; 16]
    );
    let missing = vb.get((4, 4), "bias").unwrap_err();
    assert!(
        matches!(missing, candle_core::Error::CannotFindTensor { .. }),
        "{missing}"
    );
}

#[test]
fn opening_no_file_is_an_error() {
    let none: [&str; 0] = [];
    assert!(WeightFiles::open(&none).is_err());
}

#[test]
fn a_key_in_two_files_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let entries: &[Entry<'_>] = &[("x", "F32", vec![1], f32_bytes(&[1.0]))];
    let a = write(&dir, "a.safetensors", entries, &[]);
    let b = write(&dir, "b.safetensors", entries, &[]);
    let error = WeightFiles::open(&[a, b]).err().unwrap().to_string();
    assert!(
        error.contains("`x`") && error.contains("a.safetensors"),
        "{error}"
    );
}
