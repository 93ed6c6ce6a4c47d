//! Helpers for parity tests against the reference fixtures in `shared/fixtures/ltx2-tiny/`.
//!
//! The fixtures are read in place (never copied): a test opens a check file with
//! [`Checks::open`], reads inputs and reference outputs by name, and compares with
//! [`assert_close`], which prints the max abs/rel error so CI logs carry the figures.
//! Every dimension a test needs must come from the files, not from constants.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

/// Directory holding `models/` and `checks/` of the tiny LTX-2 fixture.
///
/// `COMFYRS_LTX2_TINY` overrides it; otherwise `shared/fixtures/ltx2-tiny` is searched for
/// beside the workspace root and its ancestors (the layout of this repository's checkouts).
/// Panics with a clear message when the fixture is missing: a parity test must never pass
/// without its reference.
pub fn fixture_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("COMFYRS_LTX2_TINY") {
        return PathBuf::from(dir);
    }
    let start = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in start.ancestors() {
        let candidate = dir.join("shared/fixtures/ltx2-tiny");
        if candidate.join("checks").is_dir() {
            return candidate;
        }
    }
    panic!(
        "the LTX-2 tiny fixture was not found: expected shared/fixtures/ltx2-tiny beside the \
         workspace (or set COMFYRS_LTX2_TINY)"
    );
}

/// Path of a file under the fixture's `models/` folder.
pub fn model_path(name: &str) -> PathBuf {
    fixture_dir().join("models").join(name)
}

/// One reference check file (`checks/<name>.safetensors`) with its metadata.
pub struct Checks {
    name: String,
    tensors: HashMap<String, Tensor>,
    /// The file's `__metadata__` (`description`, `params`, ...).
    pub metadata: HashMap<String, String>,
}

impl Checks {
    /// Opens `checks/<name>.safetensors` (e.g. `"a_transformer"`), loading every tensor on CPU.
    pub fn open(name: &str) -> Self {
        let path = fixture_dir()
            .join("checks")
            .join(format!("{name}.safetensors"));
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("cannot read check file {}: {e}", path.display()));
        let metadata = read_metadata(&bytes);
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .unwrap_or_else(|e| panic!("cannot parse check file {}: {e}", path.display()));
        Self {
            name: name.to_string(),
            tensors,
            metadata,
        }
    }

    /// The tensor stored under `key`, as stored (dtype unchanged). Panics if absent.
    pub fn get(&self, key: &str) -> Tensor {
        self.tensors
            .get(key)
            .cloned()
            .unwrap_or_else(|| panic!("check file {} has no tensor {key}", self.name))
    }

    /// The tensor stored under `key`, converted to f32.
    pub fn f32(&self, key: &str) -> Tensor {
        self.get(key)
            .to_dtype(DType::F32)
            .expect("dtype conversion")
    }

    /// Whether the file holds `key`.
    pub fn has(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    /// All tensor names, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.tensors.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// The `params` metadata entry parsed as JSON (`Null` when absent).
    pub fn params(&self) -> serde_json::Value {
        self.metadata
            .get("params")
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or(serde_json::Value::Null)
    }
}

fn read_metadata(bytes: &[u8]) -> HashMap<String, String> {
    let header = safetensors::SafeTensors::read_metadata(bytes).expect("safetensors header");
    header.1.metadata().clone().unwrap_or_default()
}

/// Errors of one comparison.
#[derive(Debug, Clone, Copy)]
pub struct ParityReport {
    /// max |actual - expected|
    pub max_abs: f64,
    /// max_abs / max |expected| (the fixture README's "relative to max |reference|")
    pub max_rel: f64,
    /// max |expected|
    pub ref_absmax: f64,
}

/// Computes the errors of `actual` against `expected` (shapes must match).
pub fn compare(actual: &Tensor, expected: &Tensor) -> ParityReport {
    assert_eq!(
        actual.dims(),
        expected.dims(),
        "shape mismatch: actual {:?} vs expected {:?}",
        actual.dims(),
        expected.dims()
    );
    let a = flat_f64(actual);
    let e = flat_f64(expected);
    let mut max_abs = 0f64;
    let mut ref_absmax = 0f64;
    for (x, y) in a.iter().zip(e.iter()) {
        let d = (x - y).abs();
        if d.is_nan() || d > max_abs {
            max_abs = if d.is_nan() { f64::INFINITY } else { d };
        }
        ref_absmax = ref_absmax.max(y.abs());
    }
    let max_rel = if ref_absmax > 0.0 {
        max_abs / ref_absmax
    } else {
        max_abs
    };
    ParityReport {
        max_abs,
        max_rel,
        ref_absmax,
    }
}

/// Compares and panics when the relative error (to max |expected|) exceeds `rel_tol`.
/// Prints the errors either way, so test logs report them.
pub fn assert_close(label: &str, actual: &Tensor, expected: &Tensor, rel_tol: f64) -> ParityReport {
    let r = compare(actual, expected);
    println!(
        "parity {label}: max_abs {:.3e} max_rel {:.3e} (ref absmax {:.3e}, tol {rel_tol:.1e})",
        r.max_abs, r.max_rel, r.ref_absmax
    );
    assert!(
        r.max_rel <= rel_tol,
        "{label}: max_rel {:.3e} exceeds {rel_tol:.1e} (max_abs {:.3e})",
        r.max_rel,
        r.max_abs
    );
    r
}

fn flat_f64(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f64>())
        .expect("tensor to f64 vector")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_reports_relative_error() {
        let e = Tensor::new(&[1.0f32, -4.0, 2.0], &Device::Cpu).unwrap();
        let a = Tensor::new(&[1.0f32, -4.5, 2.0], &Device::Cpu).unwrap();
        let r = compare(&a, &e);
        assert!((r.max_abs - 0.5).abs() < 1e-12);
        assert!((r.max_rel - 0.125).abs() < 1e-12);
    }

    #[test]
    #[should_panic(expected = "exceeds")]
    fn assert_close_rejects_large_error() {
        let e = Tensor::new(&[1.0f32], &Device::Cpu).unwrap();
        let a = Tensor::new(&[2.0f32], &Device::Cpu).unwrap();
        assert_close("x", &a, &e, 1e-3);
    }

    #[test]
    fn fixture_is_found_and_readable() {
        let c = Checks::open("f_scheduler");
        assert!(!c.keys().is_empty());
        assert!(c.metadata.contains_key("description"));
    }
}
