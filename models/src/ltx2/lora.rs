//! LoRA files for the LTX-2 transformer: key parsing, matching onto the model's linear layers,
//! and applying / removing a set of LoRAs on a model instance.
//!
//! Accepted key forms are those ComfyUI's LoRA loader accepts for LTX-2 (its `diffusion_model.`
//! and `lora_unet_` aliases with every low-rank suffix pair of `comfy/weight_adapter/lora.py`),
//! plus bare module paths (ltx-core strips `diffusion_model.` and matches the rest). The
//! ltx-trainer format is `diffusion_model.<path>.lora_A.weight` `[r, in]` +
//! `.lora_B.weight` `[out, r]` with no alpha. Keys that match no layer, or are not low-rank
//! linear patches (LoHa, LoKr, DoRA scales, `diff` patches, ...), are reported, never silently
//! dropped.
//!
//! A patch set replaces the model instance's previous one; base weights are never written
//! (see [`crate::ltx2::transformer::Linear`] for the memory/speed trade-off of [`LoraMode`]).
//! Jobs with different LoRA sets share one loaded base through [`LtxAvModel::with_loras`],
//! which clones the model (pointers only) and patches the clone.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::ltx2::transformer::{LoraMode, LoraPatch, LtxAvModel};
use crate::{Error, Result};

/// `(up suffix, down suffix)` pairs, as ComfyUI's LoRA adapter accepts them.
const SUFFIX_PAIRS: &[(&str, &str)] = &[
    (".lora_up.weight", ".lora_down.weight"),
    ("_lora.up.weight", "_lora.down.weight"),
    (".lora_B.weight", ".lora_A.weight"),
    (".lora.up.weight", ".lora.down.weight"),
    (".lora_B", ".lora_A"),
    (
        ".lora_linear_layer.up.weight",
        ".lora_linear_layer.down.weight",
    ),
    (".lora_B.default.weight", ".lora_A.default.weight"),
];

const ALPHA_SUFFIX: &str = ".alpha";

/// Low-rank factors of one layer in a LoRA file.
#[derive(Debug, Clone)]
pub struct LoraModule {
    /// `A` / down, `[rank, in]`.
    pub down: Tensor,
    /// `B` / up, `[out, rank]`.
    pub up: Tensor,
    /// Optional alpha (scale `alpha / rank`).
    pub alpha: Option<f64>,
    /// The file keys this module was read from.
    pub keys: Vec<String>,
}

/// A key that was not applied, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmatchedKey {
    /// The tensor name in the LoRA file.
    pub key: String,
    /// Why it was not applied.
    pub reason: String,
}

/// The parsed content of one LoRA file.
#[derive(Debug, Clone, Default)]
pub struct LoraWeights {
    /// Module name as written in the file (suffix removed) -> factors.
    pub modules: BTreeMap<String, LoraModule>,
    /// Keys that are not low-rank linear patches or lack their partner.
    pub unsupported: Vec<UnmatchedKey>,
}

#[derive(Default)]
struct Parts {
    up: Option<(String, Tensor)>,
    down: Option<(String, Tensor)>,
    alpha: Option<(String, Tensor)>,
}

impl LoraWeights {
    /// Reads a `.safetensors` LoRA file onto `device` (tensors keep their stored dtype).
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let tensors = candle_core::safetensors::load(path, device).map_err(|e| {
            Error::Checkpoint(format!("{}: cannot read LoRA file: {e}", path.display()))
        })?;
        Self::from_tensors(tensors)
    }

    /// Parses LoRA tensors by name.
    pub fn from_tensors(tensors: HashMap<String, Tensor>) -> Result<Self> {
        let mut parts: BTreeMap<String, Parts> = BTreeMap::new();
        let mut unsupported = Vec::new();
        for (key, t) in tensors {
            match split_key(&key) {
                Some((name, Role::Up)) => parts.entry(name).or_default().up = Some((key, t)),
                Some((name, Role::Down)) => parts.entry(name).or_default().down = Some((key, t)),
                Some((name, Role::Alpha)) => parts.entry(name).or_default().alpha = Some((key, t)),
                None => unsupported.push(UnmatchedKey {
                    key,
                    reason: "not a low-rank linear LoRA tensor".into(),
                }),
            }
        }
        let mut modules = BTreeMap::new();
        for (name, p) in parts {
            match (p.up, p.down) {
                (Some((uk, up)), Some((dk, down))) => {
                    let mut keys = vec![uk, dk];
                    let alpha = match p.alpha {
                        Some((ak, a)) => {
                            keys.push(ak);
                            Some(scalar(&a)?)
                        }
                        None => None,
                    };
                    modules.insert(
                        name,
                        LoraModule {
                            down,
                            up,
                            alpha,
                            keys,
                        },
                    );
                }
                (up, down) => {
                    let orphans = [up.map(|x| x.0), down.map(|x| x.0), p.alpha.map(|x| x.0)];
                    for key in orphans.into_iter().flatten() {
                        unsupported.push(UnmatchedKey {
                            key,
                            reason: "its up/down partner is missing".into(),
                        });
                    }
                }
            }
        }
        unsupported.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self {
            modules,
            unsupported,
        })
    }
}

enum Role {
    Up,
    Down,
    Alpha,
}

fn split_key(key: &str) -> Option<(String, Role)> {
    for (up, down) in SUFFIX_PAIRS {
        if let Some(name) = key.strip_suffix(up) {
            return Some((name.to_string(), Role::Up));
        }
        if let Some(name) = key.strip_suffix(down) {
            return Some((name.to_string(), Role::Down));
        }
    }
    key.strip_suffix(ALPHA_SUFFIX)
        .map(|name| (name.to_string(), Role::Alpha))
}

fn scalar(t: &Tensor) -> Result<f64> {
    let v = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    v.first()
        .copied()
        .ok_or_else(|| Error::Checkpoint("empty LoRA alpha tensor".into()))
}

/// What applying a LoRA set did.
#[derive(Debug, Clone, Default)]
pub struct LoraReport {
    /// Number of linear layers carrying at least one patch.
    pub patched_layers: usize,
    /// Keys of the given LoRAs that were not applied.
    pub unmatched: Vec<UnmatchedKey>,
}

/// Resolves file module names onto model layer paths (relative to the transformer root).
struct PathIndex {
    paths: HashMap<String, usize>,
    underscored: HashMap<String, usize>,
}

impl PathIndex {
    fn new(paths: &[String]) -> Self {
        let mut index = Self {
            paths: HashMap::new(),
            underscored: HashMap::new(),
        };
        for (i, p) in paths.iter().enumerate() {
            index.paths.insert(p.clone(), i);
            index.underscored.insert(p.replace('.', "_"), i);
        }
        index
    }

    fn resolve(&self, name: &str) -> Option<usize> {
        if let Some(p) = name.strip_prefix("diffusion_model.") {
            return self.paths.get(p).copied();
        }
        if let Some(p) = name.strip_prefix("lora_unet_") {
            return self.underscored.get(p).copied();
        }
        self.paths.get(name).copied()
    }
}

impl LtxAvModel {
    /// Module paths of every linear layer relative to the transformer root
    /// (`transformer_blocks.0.attn1.to_q`, ...), in [`LtxAvModel::linears`] order.
    pub fn linear_paths(&self) -> Vec<String> {
        let root = self.root_prefix();
        self.linears()
            .iter()
            .map(|l| relative_path(l.path(), root))
            .collect()
    }

    /// Replaces this instance's LoRA patches by `loras` (`(weights, strength)` in order);
    /// an empty slice removes all patches. Base weights are not touched.
    pub fn apply_loras(
        &mut self,
        loras: &[(&LoraWeights, f64)],
        mode: LoraMode,
    ) -> Result<LoraReport> {
        let paths = self.linear_paths();
        let index = PathIndex::new(&paths);
        let mut per_layer: Vec<Vec<LoraPatch>> = vec![Vec::new(); paths.len()];
        let mut report = LoraReport::default();
        let dims: Vec<(usize, usize)> = self.linears().iter().map(|l| l.dims()).collect();
        for (weights, strength) in loras {
            report.unmatched.extend(weights.unsupported.iter().cloned());
            for (name, m) in &weights.modules {
                let Some(i) = index.resolve(name) else {
                    report.unmatched.extend(m.keys.iter().map(|k| UnmatchedKey {
                        key: k.clone(),
                        reason: "no transformer linear layer of that name".into(),
                    }));
                    continue;
                };
                per_layer[i].push(patch_for(&paths[i], dims[i], m, *strength)?);
            }
        }
        for (layer, patches) in self.linears_mut().into_iter().zip(per_layer) {
            if !patches.is_empty() {
                report.patched_layers += 1;
            }
            layer.set_patches(patches, mode)?;
        }
        for u in &report.unmatched {
            tracing::warn!(key = %u.key, reason = %u.reason, "LoRA key not applied");
        }
        Ok(report)
    }

    /// Removes every LoRA patch of this instance.
    pub fn clear_loras(&mut self) -> Result<()> {
        for layer in self.linears_mut() {
            layer.set_patches(Vec::new(), LoraMode::Unfused)?;
        }
        Ok(())
    }

    /// A clone sharing this model's base weights, patched with `loras`.
    pub fn with_loras(
        &self,
        loras: &[(&LoraWeights, f64)],
        mode: LoraMode,
    ) -> Result<(Self, LoraReport)> {
        let mut clone = self.clone();
        let report = clone.apply_loras(loras, mode)?;
        Ok((clone, report))
    }
}

fn relative_path(path: &str, root: &str) -> String {
    if root.is_empty() {
        return path.to_string();
    }
    path.strip_prefix(root)
        .and_then(|p| p.strip_prefix('.'))
        .unwrap_or(path)
        .to_string()
}

/// Checks the factors' shapes against the layer and computes the patch scale.
fn patch_for(
    path: &str,
    (in_dim, out_dim): (usize, usize),
    m: &LoraModule,
    strength: f64,
) -> Result<LoraPatch> {
    let (rank, down_in) = m.down.dims2()?;
    let (up_out, up_rank) = m.up.dims2()?;
    if down_in != in_dim || up_out != out_dim || up_rank != rank || rank == 0 {
        return Err(Error::Checkpoint(format!(
            "LoRA for {path}: down {:?} / up {:?} do not fit a {out_dim}x{in_dim} layer",
            m.down.dims(),
            m.up.dims()
        )));
    }
    let scale = match m.alpha {
        Some(alpha) => strength * alpha / rank as f64,
        None => strength,
    };
    Ok(LoraPatch {
        down: m.down.clone(),
        up: m.up.clone(),
        scale,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: (usize, usize)) -> Tensor {
        Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap()
    }

    #[test]
    fn parses_every_comfy_suffix_pair_and_reports_the_rest() {
        let mut map = HashMap::new();
        map.insert(
            "diffusion_model.a.to_q.lora_A.weight".to_string(),
            t((2, 4)),
        );
        map.insert(
            "diffusion_model.a.to_q.lora_B.weight".to_string(),
            t((4, 2)),
        );
        map.insert("lora_unet_a_to_k.lora_down.weight".to_string(), t((2, 4)));
        map.insert("lora_unet_a_to_k.lora_up.weight".to_string(), t((4, 2)));
        map.insert(
            "lora_unet_a_to_k.alpha".to_string(),
            Tensor::new(8f32, &Device::Cpu).unwrap(),
        );
        map.insert("x.lora_B.default.weight".to_string(), t((4, 2)));
        map.insert("x.lora_A.default.weight".to_string(), t((2, 4)));
        map.insert("y.hada_w1_a".to_string(), t((2, 2)));
        map.insert("z.lora_A.weight".to_string(), t((2, 4)));
        let w = LoraWeights::from_tensors(map).unwrap();
        assert_eq!(w.modules.len(), 3);
        assert_eq!(w.modules["lora_unet_a_to_k"].alpha, Some(8.0));
        let keys: Vec<&str> = w.unsupported.iter().map(|u| u.key.as_str()).collect();
        assert_eq!(keys, ["y.hada_w1_a", "z.lora_A.weight"]);
    }

    #[test]
    fn resolves_aliases_onto_layer_paths() {
        let paths = vec![
            "transformer_blocks.0.audio_attn1.to_q".to_string(),
            "patchify_proj".to_string(),
        ];
        let index = PathIndex::new(&paths);
        assert_eq!(
            index.resolve("diffusion_model.transformer_blocks.0.audio_attn1.to_q"),
            Some(0)
        );
        assert_eq!(
            index.resolve("lora_unet_transformer_blocks_0_audio_attn1_to_q"),
            Some(0)
        );
        assert_eq!(index.resolve("patchify_proj"), Some(1));
        assert_eq!(index.resolve("diffusion_model.proj_out"), None);
        assert_eq!(
            relative_path("model.diffusion_model.x.y", "model.diffusion_model"),
            "x.y"
        );
    }
}
