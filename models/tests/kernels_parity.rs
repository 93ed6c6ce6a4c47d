//! The kernels crate against the model's own implementations: FP8 dequantisation against the
//! ComfyUI references of `tests/data/quant_expected.safetensors` (bit-exact, CPU reference and,
//! when a GPU is present, the CUDA kernel through `QuantizedWeight::dequantize`), and RoPE against
//! `Rope::apply`'s candle ops. The fused transformer as a whole: `ltx2_transformer_fused.rs`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use models::ltx2::transformer::{Rope, RopeSpec, RopeType};
use models::weights::{QuantFormat, QuantScales, Rounding, WeightFiles};

fn data_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

#[derive(Debug, serde::Deserialize)]
struct Case {
    file: String,
    key: String,
    shape: Vec<usize>,
    pre_quant_scale: bool,
}

fn expected() -> (Vec<Case>, HashMap<String, Tensor>) {
    let bytes = std::fs::read(data_path("quant_expected.safetensors")).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let cases = header.metadata().as_ref().unwrap()["cases"].clone();
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
    (serde_json::from_str(&cases).unwrap(), tensors)
}

/// Bits of every element as u32 (NaN of any payload as one value).
fn bits(t: &Tensor) -> Vec<u32> {
    let v: Vec<f32> = t
        .to_device(&Device::Cpu)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    v.into_iter()
        .map(|x| if x.is_nan() { u32::MAX } else { x.to_bits() })
        .collect()
}

fn assert_same_bits(got: &Tensor, want: &Tensor, what: &str) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtype");
    let differing = bits(got)
        .iter()
        .zip(bits(want))
        .filter(|(a, b)| **a != *b)
        .count();
    println!("{what}: {differing} elements differ");
    assert_eq!(differing, 0, "{what}");
}

fn kernel_rounding(rounding: Rounding) -> kernels::Fp8Rounding {
    match rounding {
        Rounding::SingleF32 => kernels::Fp8Rounding::SingleF32,
        Rounding::ComfyEager => kernels::Fp8Rounding::ComfyEager,
    }
}

#[test]
fn fp8_kernel_reproduces_the_comfyui_references() {
    let (cases, tensors) = expected();
    let gpu = match Device::new_cuda(0) {
        Ok(d) => Some(d),
        Err(e) => {
            println!("fp8 GPU half: skipped: no CUDA device ({e})");
            None
        }
    };
    let mut checked = 0;
    for case in cases.iter().filter(|c| !c.pre_quant_scale) {
        for (rounding, dtype, variant) in [
            (Rounding::SingleF32, DType::F32, "f32"),
            (Rounding::SingleF32, DType::BF16, "bf16_single"),
            (Rounding::ComfyEager, DType::BF16, "bf16_eager"),
        ] {
            let files = WeightFiles::open(&[data_path(&format!("{}.safetensors", case.file))])
                .unwrap()
                .with_rounding(rounding);
            let shape = case.shape.as_slice();
            let Some(weight) = files
                .quantized_weight(&case.key, shape, &Device::Cpu)
                .unwrap()
            else {
                continue;
            };
            let format = match weight.format {
                QuantFormat::Fp8E4m3 => kernels::Fp8Format::E4m3,
                QuantFormat::Fp8E5m2 => kernels::Fp8Format::E5m2,
                _ => continue,
            };
            let QuantScales::PerTensor { scale } = weight.scales else {
                continue;
            };
            let want = &tensors[&format!("{}/{}/{variant}", case.file, case.key)];
            let what = format!("{}/{} {variant}", case.file, case.key);
            let got = kernels::dequantize_fp8(
                &weight.data,
                format,
                scale,
                dtype,
                kernel_rounding(rounding),
            )
            .unwrap();
            assert_same_bits(&got, want, &format!("{what} cpu reference"));
            if let Some(gpu) = &gpu {
                let on_gpu = files
                    .quantized_weight(&case.key, shape, gpu)
                    .unwrap()
                    .unwrap();
                let got = on_gpu.dequantize(dtype, gpu).unwrap();
                assert_same_bits(&got, want, &format!("{what} cuda kernel"));
            }
            checked += 1;
        }
    }
    println!("{checked} per-tensor FP8 cases checked");
    assert!(
        checked >= 3,
        "the quant fixtures lost their per-tensor FP8 cases"
    );
}

/// Split RoPE tables of an LTX-2-like video grid.
fn video_rope(heads: usize, dim: usize, tokens: usize) -> Rope {
    let max_pos = [20.0, 2048.0, 2048.0];
    let positions: Vec<f32> = (0..3 * tokens * 2)
        .map(|i| ((i * 37) % 101) as f32 * 0.5)
        .collect();
    let positions = Tensor::from_vec(positions, (1, 3, tokens, 2), &Device::Cpu).unwrap();
    let spec = RopeSpec {
        dim,
        heads,
        theta: 10000.0,
        max_pos: &max_pos,
        use_middle: true,
        rope_type: RopeType::Split,
        double_precision: true,
    };
    Rope::new(&positions, &spec, DType::F32).unwrap()
}

#[test]
fn rope_kernel_is_bit_exact_to_rope_apply_in_f32() {
    for (heads, head_dim, tokens, batch) in [(2, 32, 24, 1), (4, 64, 12, 2)] {
        let dim = heads * head_dim;
        let rope = video_rope(heads, dim, tokens);
        let x: Vec<f32> = (0..batch * tokens * dim)
            .map(|i| ((i * 7919) % 1000) as f32 / 250.0 - 2.0)
            .collect();
        let x = Tensor::from_vec(x, (batch, tokens, dim), &Device::Cpu).unwrap();
        let Rope::Split { cos, sin } = &rope else {
            panic!("split rope")
        };
        let fused = kernels::rope_split(&x, cos, sin).unwrap();
        assert_same_bits(
            &fused,
            &rope.apply(&x).unwrap(),
            &format!("rope {heads}x{head_dim} b{batch}"),
        );
    }
}
