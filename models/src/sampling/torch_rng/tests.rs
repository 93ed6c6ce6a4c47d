//! Bit-exactness against draws of torch 2.7.1 (`models/tests/data/gen_noise.py`).

use std::collections::HashMap;

use super::*;

/// The reference tensors of `torch_noise.safetensors`: key -> (shape, values).
pub(crate) fn reference() -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/torch_noise.safetensors"
    );
    let bytes = std::fs::read(path).expect("torch_noise.safetensors (run gen_noise.py)");
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, (view.shape().to_vec(), values))
        })
        .collect()
}

/// Counts elements whose bits differ.
pub(crate) fn mismatches(a: &[f32], b: &[f32]) -> usize {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count()
}

fn kernel_of(name: &str) -> NormalKernel {
    match name {
        "avx2" => NormalKernel::Avx2,
        "default" => NormalKernel::Scalar,
        other => panic!("unknown kernel {other}"),
    }
}

fn field<'a>(part: &'a str, name: &str) -> &'a str {
    part.strip_prefix(name)
        .and_then(|p| p.strip_prefix('='))
        .unwrap_or_else(|| panic!("{part} is not {name}=..."))
}

#[test]
fn randn_is_bit_identical_to_torch() {
    let reference = reference();
    let mut checked = 0;
    for (key, (shape, expected)) in &reference {
        let parts: Vec<&str> = key.split('/').collect();
        if parts[1] != "randn" {
            continue;
        }
        let seed: u64 = field(parts[2], "seed").parse().unwrap();
        let numel: usize = shape.iter().product();
        let mut g = TorchGenerator::with_kernel(seed, kernel_of(parts[0]));
        let got = g.randn(numel);
        assert_eq!(mismatches(&got, expected), 0, "{key}: bits differ");
        checked += 1;
    }
    assert!(checked >= 2 * 4 * 9, "only {checked} randn cases found");
}

/// One numbered draw of a sequence.
type Draw = (usize, Vec<f32>);

#[test]
fn consecutive_draws_share_one_stream_and_normal_cache() {
    let reference = reference();
    let mut streams: HashMap<(String, u64), Vec<Draw>> = HashMap::new();
    for (key, (_, values)) in &reference {
        let parts: Vec<&str> = key.split('/').collect();
        if parts[1] != "seq" {
            continue;
        }
        let seed: u64 = field(parts[2], "seed").parse().unwrap();
        let draw: usize = field(parts[3], "draw").parse().unwrap();
        streams
            .entry((parts[0].to_string(), seed))
            .or_default()
            .push((draw, values.clone()));
    }
    assert!(streams.len() >= 8);
    for ((kernel, seed), mut draws) in streams {
        draws.sort_by_key(|(k, _)| *k);
        let mut g = TorchGenerator::with_kernel(seed, kernel_of(&kernel));
        for (k, expected) in draws {
            let got = g.randn(expected.len());
            assert_eq!(
                mismatches(&got, &expected),
                0,
                "{kernel} seed {seed} draw {k} differs"
            );
        }
    }
}
