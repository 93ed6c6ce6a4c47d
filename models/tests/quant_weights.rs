//! Quantised checkpoints load bit-exactly as ComfyUI dequantises them, and plain tensors load
//! exactly as candle's own safetensors backend gives them.
//!
//! The files in `tests/data/` come from `tests/data/gen_quant.py`; `quant_expected.safetensors`
//! holds the references computed with ComfyUI's formulas and lists the cases in its metadata.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use models::weights::{QuantFormat, Rounding, WeightFiles};

fn data_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// One checked tensor, as listed by the generator.
#[derive(Debug, serde::Deserialize)]
struct Case {
    file: String,
    key: String,
    shape: Vec<usize>,
    format: Option<String>,
    source: Option<String>,
    input_scale: Option<f32>,
    full_precision: bool,
    pre_quant_scale: bool,
}

struct Expected {
    cases: Vec<Case>,
    tensors: HashMap<String, Tensor>,
}

impl Expected {
    fn load() -> Self {
        let path = data_path("quant_expected.safetensors");
        let bytes = std::fs::read(&path).unwrap();
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let cases = header.metadata().as_ref().unwrap()["cases"].clone();
        Self {
            cases: serde_json::from_str(&cases).unwrap(),
            tensors: candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap(),
        }
    }

    fn get(&self, case: &Case, variant: &str) -> &Tensor {
        let name = format!("{}/{}/{variant}", case.file, case.key);
        self.tensors
            .get(&name)
            .unwrap_or_else(|| panic!("no reference {name}"))
    }
}

/// Bit patterns of every element as u32 (NaN matches any NaN).
fn bit_patterns(t: &Tensor) -> Vec<Option<u32>> {
    let t = t.flatten_all().unwrap();
    match t.dtype() {
        DType::F32 => t
            .to_vec1::<f32>()
            .unwrap()
            .into_iter()
            .map(|v| (!v.is_nan()).then(|| v.to_bits()))
            .collect(),
        DType::BF16 => t
            .to_vec1::<half::bf16>()
            .unwrap()
            .into_iter()
            .map(|v| (!v.is_nan()).then(|| u32::from(v.to_bits())))
            .collect(),
        DType::U8 => t
            .to_vec1::<u8>()
            .unwrap()
            .into_iter()
            .map(|v| Some(u32::from(v)))
            .collect(),
        other => panic!("no bit comparison for {other:?}"),
    }
}

/// Asserts identical dtype, shape and bits; prints the figures.
fn assert_same_bits(got: &Tensor, want: &Tensor, what: &str) {
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtype");
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let (g, w) = (bit_patterns(got), bit_patterns(want));
    let differing: Vec<usize> = (0..g.len()).filter(|&i| g[i] != w[i]).collect();
    println!("{what}: {} elements, {} differ", g.len(), differing.len());
    assert!(
        differing.is_empty(),
        "{what}: {} of {} elements differ, first at {} ({:?} vs {:?})",
        differing.len(),
        g.len(),
        differing[0],
        g[differing[0]],
        w[differing[0]]
    );
}

fn open(file: &str, rounding: Rounding) -> WeightFiles {
    WeightFiles::open(&[data_path(&format!("{file}.safetensors"))])
        .unwrap()
        .with_rounding(rounding)
}

#[test]
fn every_case_dequantises_bit_for_bit_like_comfyui() {
    let expected = Expected::load();
    assert!(!expected.cases.is_empty());
    let cpu = Device::Cpu;
    for case in &expected.cases {
        let (f32_ref, single_ref, eager_ref) = if case.pre_quant_scale {
            ("effective_f32", "effective_bf16", "effective_bf16")
        } else {
            ("f32", "bf16_single", "bf16_eager")
        };
        let single = open(&case.file, Rounding::SingleF32);
        let eager = open(&case.file, Rounding::ComfyEager);
        let shape = case.shape.as_slice();
        for (files, dtype, reference, mode) in [
            (&single, DType::F32, f32_ref, "single"),
            (&eager, DType::F32, f32_ref, "eager"),
            (&single, DType::BF16, single_ref, "single"),
            (&eager, DType::BF16, eager_ref, "eager"),
        ] {
            let vb = files.var_builder(dtype, &cpu).unwrap();
            assert!(vb.contains_tensor(&case.key), "{}", case.key);
            let got = vb.get(shape, &case.key).unwrap();
            let what = format!("{}/{} {dtype:?} {mode}", case.file, case.key);
            assert_same_bits(&got, expected.get(case, reference), &what);
        }
        check_quantisation_facts(&single, case);
        if case.format.is_some() {
            let weight = single
                .quantized_weight(&case.key, shape, &cpu)
                .unwrap()
                .unwrap();
            let pure = weight.dequantize(DType::F32, &cpu).unwrap();
            assert_same_bits(
                &pure,
                expected.get(case, "f32"),
                &format!("{} dequantize", case.key),
            );
            let weight = eager
                .quantized_weight(&case.key, shape, &cpu)
                .unwrap()
                .unwrap();
            let pure = weight.dequantize(DType::BF16, &cpu).unwrap();
            let reference = expected.get(case, "bf16_eager");
            assert_same_bits(&pure, reference, &format!("{} dequantize eager", case.key));
        }
    }
}

/// Format, marker source and the marker's flags as the generator wrote them.
fn check_quantisation_facts(files: &WeightFiles, case: &Case) {
    let format = files.quant_format(&case.key).unwrap();
    let expected_format = case
        .format
        .as_deref()
        .map(|name| QuantFormat::from_comfy_name(name).unwrap());
    assert_eq!(format, expected_format, "{}", case.key);
    let source = files.marker_source(&case.key).unwrap();
    assert_eq!(
        source.map(|s| format!("{s:?}")),
        case.source,
        "{}",
        case.key
    );
    let Some(weight) = files
        .quantized_weight(&case.key, case.shape.as_slice(), &Device::Cpu)
        .unwrap()
    else {
        assert!(case.format.is_none(), "{}", case.key);
        return;
    };
    assert_eq!(weight.input_scale, case.input_scale, "{}", case.key);
    assert_eq!(
        weight.full_precision_matrix_mult, case.full_precision,
        "{}",
        case.key
    );
    assert_eq!(
        weight.pre_quant_scale.is_some(),
        case.pre_quant_scale,
        "{}",
        case.key
    );
}

#[test]
fn the_two_roundings_are_distinguished_by_the_references() {
    // Guards the test above: on NVFP4 the eager backend's three BF16 roundings differ from
    // the single rounding on a fraction of the elements, so a loader using the wrong formula
    // would fail.
    let expected = Expected::load();
    let nvfp4 = expected
        .cases
        .iter()
        .filter(|c| c.format.as_deref() == Some("nvfp4") && !c.pre_quant_scale);
    let mut differing = 0;
    for case in nvfp4 {
        let single = bit_patterns(expected.get(case, "bf16_single"));
        let eager = bit_patterns(expected.get(case, "bf16_eager"));
        differing += single.iter().zip(&eager).filter(|(a, b)| a != b).count();
    }
    println!("nvfp4 elements where single and eager rounding differ: {differing}");
    assert!(differing > 0);
}

/// Compares every model tensor of `paths` (except quantised ones) with candle's own backend,
/// and checks that the keys missing from our view are exactly the quantisation companions.
fn assert_plain_tensors_like_candle(paths: &[PathBuf]) {
    let ours = WeightFiles::open(paths).unwrap();
    // SAFETY: test data files are not modified while mapped.
    let theirs = unsafe { candle_core::safetensors::MmapedSafetensors::multi(paths) }.unwrap();
    let companion_suffixes = [
        ".weight_scale",
        ".weight_scale_2",
        ".input_scale",
        ".pre_quant_scale",
        ".comfy_quant",
        ".scale_weight",
        ".scale_input",
        "scaled_fp8",
    ];
    for (key, _) in theirs.tensors() {
        let visible = ours.contains(&key);
        let companion = companion_suffixes.iter().any(|s| key.ends_with(s));
        assert_eq!(visible, !companion, "{key}");
    }
    let cpu = Device::Cpu;
    let mut compared = 0;
    for key in ours.keys() {
        let stored = theirs.get(key).unwrap().dtype();
        if ours.quant_format(key).unwrap().is_some() || stored == safetensors::Dtype::F8_E5M2 {
            continue;
        }
        for dtype in [DType::F32, DType::BF16] {
            let candle_vb =
                unsafe { VarBuilder::from_mmaped_safetensors(paths, dtype, &cpu) }.unwrap();
            let want = candle_vb.get_unchecked(key).unwrap();
            let got = ours
                .var_builder(dtype, &cpu)
                .unwrap()
                .get_unchecked(key)
                .unwrap();
            assert_same_bits(&got, &want, &format!("{key} as {dtype:?}"));
            let got = ours
                .var_builder(dtype, &cpu)
                .unwrap()
                .get(want.dims(), key)
                .unwrap();
            assert_same_bits(&got, &want, &format!("{key} as {dtype:?} (shape checked)"));
        }
        compared += 1;
    }
    println!("{compared} plain tensors identical to candle's backend");
    assert!(compared > 0);
}

#[test]
fn plain_tensors_of_the_quantised_files_load_like_candle() {
    for file in [
        "quant_ltx_fp8",
        "quant_comfy_header",
        "quant_comfy_tensor",
        "quant_scaled_fp8",
        "quant_gemma_mixed",
        "quant_edge",
    ] {
        assert_plain_tensors_like_candle(&[data_path(&format!("{file}.safetensors"))]);
    }
}

#[test]
fn tiny_ltx2_checkpoint_loads_exactly_like_candle() {
    let path = models::parity::model_path("ltx2-tiny.safetensors");
    assert_plain_tensors_like_candle(std::slice::from_ref(&path));
    let ours = WeightFiles::open(std::slice::from_ref(&path)).unwrap();
    let header = models::checkpoint::CheckpointHeader::read(&path).unwrap();
    assert_eq!(ours.keys().len(), header.tensors.len());
    assert_eq!(ours.metadata(), &header.metadata);
}

#[test]
fn tiny_gemma_text_encoder_loads_exactly_like_candle() {
    let path = models::parity::model_path("gemma3-tiny-comfy.safetensors");
    assert_plain_tensors_like_candle(std::slice::from_ref(&path));
    // The tokenizer bytes come back unchanged when read as U8.
    let ours = WeightFiles::open(std::slice::from_ref(&path)).unwrap();
    let vb = ours.var_builder(DType::U8, &Device::Cpu).unwrap();
    let theirs =
        unsafe { VarBuilder::from_mmaped_safetensors(&[&path], DType::U8, &Device::Cpu) }.unwrap();
    assert_same_bits(
        &vb.get_unchecked("spiece_model").unwrap(),
        &theirs.get_unchecked("spiece_model").unwrap(),
        "spiece_model",
    );
}

#[test]
fn several_files_form_one_state_dict() {
    let gemma = data_path("quant_gemma_mixed.safetensors");
    let ltx = data_path("quant_ltx_fp8.safetensors");
    let files = WeightFiles::open(&[&gemma, &ltx]).unwrap();
    assert_plain_tensors_like_candle(&[gemma.clone(), ltx.clone()]);
    // Metadata of the first file, as ComfyUI treats its first text-encoder file as primary.
    assert!(files.metadata().contains_key("_quantization_metadata"));
    assert!(files.file_metadata(1).unwrap().contains_key("config"));
    let cpu = Device::Cpu;
    let vb = files.var_builder(DType::F32, &cpu).unwrap();
    let gemma_layer = vb.pp("model.layers.0.self_attn.q_proj");
    assert!(gemma_layer.contains_tensor("weight"));
    let dit = vb
        .pp("model.diffusion_model")
        .pp("transformer_blocks.1.attn1.to_q");
    assert!(dit.contains_tensor("weight") && !dit.contains_tensor("weight_scale"));
    assert_eq!(
        files
            .quant_format("model.layers.0.self_attn.q_proj.weight")
            .unwrap(),
        Some(QuantFormat::Nvfp4)
    );
}
