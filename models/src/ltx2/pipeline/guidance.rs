//! ltx-core's multi-modal guidance (`MultiModalGuider`, `MultiModalGuiderParams`,
//! `MultiModalGuiderFactory`): how the positive, negative-prompt, STG-perturbed and
//! modality-isolated predictions of one stream combine into its guided prediction.
//!
//! With `cond` the positive prediction and `neg`, `ptb`, `iso` the other passes':
//!
//! ```text
//! pred = cond + (cfg - 1)(cond - neg) + stg (cond - ptb) + (modality - 1)(cond - iso)
//! pred *= rescale · std(cond) / std(pred) + (1 - rescale)        (when rescale != 0)
//! ```
//!
//! `std` is the unbiased standard deviation over the whole tensor (every batch item at once).
//! A pass that did not run counts as a zero prediction (ltx-core passes `0.0`), which only
//! matters when its scale is nearly, but not exactly, neutral.

use candle_core::{DType, Tensor};
use serde::Deserialize;

use crate::{Error, Result};

/// `math.isclose(a, b)` with Python's defaults (relative tolerance 1e-9, no absolute tolerance).
fn isclose(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// Guidance parameters of one stream (ltx-core's `MultiModalGuiderParams`; absent keys take
/// its defaults, which disable every kind of guidance).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct GuiderParams {
    /// Classifier-free guidance scale (1 = off).
    pub cfg_scale: f64,
    /// Spatio-temporal guidance scale (0 = off).
    pub stg_scale: f64,
    /// Blocks whose self-attention the STG pass skips (`None` = every block, empty = none).
    pub stg_blocks: Option<Vec<usize>>,
    /// Strength of the standard-deviation rescaling (0 = off, 1 = full).
    pub rescale_scale: f64,
    /// Modality guidance scale: pushes away from the prediction with the audio<->video
    /// cross-attention removed (1 = off).
    pub modality_scale: f64,
    /// Reuse the previous guided prediction on all steps but every `skip_step + 1`-th (0 = off).
    pub skip_step: usize,
}

impl Default for GuiderParams {
    fn default() -> Self {
        Self {
            cfg_scale: 1.0,
            stg_scale: 0.0,
            stg_blocks: Some(Vec::new()),
            rescale_scale: 0.0,
            modality_scale: 1.0,
            skip_step: 0,
        }
    }
}

impl GuiderParams {
    /// Whether the negative-prompt pass is needed (`cfg_scale` not close to 1).
    pub fn needs_negative(&self) -> bool {
        !isclose(self.cfg_scale, 1.0)
    }

    /// Whether the STG (perturbed self-attention) pass is needed (`stg_scale` not 0).
    pub fn needs_perturbed(&self) -> bool {
        !isclose(self.stg_scale, 0.0)
    }

    /// Whether the modality-isolated pass is needed (`modality_scale` not close to 1).
    pub fn needs_isolated(&self) -> bool {
        !isclose(self.modality_scale, 1.0)
    }

    /// Whether step `step` reuses the previous prediction instead of evaluating this stream.
    pub fn skips_step(&self, step: usize) -> bool {
        self.skip_step != 0 && !step.is_multiple_of(self.skip_step + 1)
    }

    /// The guided prediction from the positive prediction `cond` and the other passes'
    /// predictions (`None` = the pass did not run).
    pub fn combine(&self, cond: &Tensor, others: &GuidancePasses) -> Result<Tensor> {
        let mut pred = cond.clone();
        let terms = [
            (self.cfg_scale - 1.0, others.negative.as_ref()),
            (self.stg_scale, others.perturbed.as_ref()),
            (self.modality_scale - 1.0, others.isolated.as_ref()),
        ];
        for (scale, other) in terms {
            if scale == 0.0 {
                continue;
            }
            let diff = match other {
                Some(o) => (cond - o)?,
                None => cond.clone(),
            };
            pred = (pred + scaled(&diff, scale)?)?;
        }
        if self.rescale_scale != 0.0 {
            pred = self.rescale(cond, &pred)?;
        }
        Ok(pred)
    }

    /// `pred · (rescale · std(cond) / std(pred) + 1 - rescale)`.
    fn rescale(&self, cond: &Tensor, pred: &Tensor) -> Result<Tensor> {
        let dtype = pred.dtype();
        let ratio = (std_all(cond)?.to_dtype(dtype)? / std_all(pred)?.to_dtype(dtype)?)?;
        let factor =
            (scaled(&ratio, self.rescale_scale)? + scalar(1.0 - self.rescale_scale, &ratio)?)?;
        Ok(pred.broadcast_mul(&factor)?)
    }
}

/// The predictions of the extra passes of one stream at one step.
#[derive(Debug, Clone, Default)]
pub struct GuidancePasses {
    /// Negative-prompt prediction.
    pub negative: Option<Tensor>,
    /// STG-perturbed prediction.
    pub perturbed: Option<Tensor>,
    /// Modality-isolated prediction.
    pub isolated: Option<Tensor>,
}

/// Sigma-dependent guidance parameters (ltx-core's `MultiModalGuiderFactory`): bins keyed by
/// their upper sigma bound; a sigma uses the bin with the smallest bound `>= sigma`, or the
/// largest bound's bin when sigma is above every bound.
#[derive(Debug, Clone, PartialEq)]
pub struct GuiderSchedule {
    /// `(upper bound, params)`, bounds descending.
    bins: Vec<(f64, GuiderParams)>,
}

impl GuiderSchedule {
    /// The same parameters at every sigma.
    pub fn constant(params: GuiderParams) -> Self {
        Self {
            bins: vec![(f64::INFINITY, params)],
        }
    }

    /// Parameters binned by sigma upper bound (any order; duplicate bounds keep the last).
    pub fn from_bins(bins: Vec<(f64, GuiderParams)>) -> Result<Self> {
        if bins.is_empty() {
            return Err(Error::Input(
                "a guider schedule needs at least one bin".into(),
            ));
        }
        if bins.iter().any(|(k, _)| k.is_nan()) {
            return Err(Error::Input("a guider schedule bound is NaN".into()));
        }
        let mut sorted: Vec<(f64, GuiderParams)> = Vec::with_capacity(bins.len());
        for (bound, params) in bins {
            match sorted.iter_mut().find(|(k, _)| *k == bound) {
                Some(slot) => slot.1 = params,
                None => sorted.push((bound, params)),
            }
        }
        sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
        Ok(Self { bins: sorted })
    }

    /// The parameters in effect at `sigma`.
    pub fn params_at(&self, sigma: f64) -> &GuiderParams {
        self.bins
            .iter()
            .rev()
            .find(|(bound, _)| *bound >= sigma)
            .or(self.bins.first())
            .map(|(_, p)| p)
            .expect("a schedule has at least one bin")
    }
}

impl From<GuiderParams> for GuiderSchedule {
    fn from(params: GuiderParams) -> Self {
        Self::constant(params)
    }
}

/// `t · value`, the scalar rounded to `t`'s dtype (PyTorch's tensor-times-Python-float).
fn scaled(t: &Tensor, value: f64) -> Result<Tensor> {
    Ok(t.broadcast_mul(&scalar(value, t)?)?)
}

/// A 0-d tensor holding `value` in `like`'s dtype and device.
fn scalar(value: f64, like: &Tensor) -> Result<Tensor> {
    Ok(Tensor::new(value as f32, like.device())?.to_dtype(like.dtype())?)
}

/// Unbiased standard deviation of every element (`torch.std()`), accumulated in f64 as
/// PyTorch's CPU full reduction does; returned as a 0-d f64 tensor.
fn std_all(t: &Tensor) -> Result<Tensor> {
    let n = t.elem_count();
    if n < 2 {
        return Err(Error::Input(format!(
            "standard deviation of {n} element(s)"
        )));
    }
    let x = t.to_dtype(DType::F64)?.flatten_all()?;
    let centred = x.broadcast_sub(&x.mean_all()?)?;
    let var = (centred.sqr()?.sum_all()? / (n - 1) as f64)?;
    Ok(var.sqrt()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[f32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    #[test]
    fn defaults_disable_every_pass() {
        let p = GuiderParams::default();
        assert!(!p.needs_negative() && !p.needs_perturbed() && !p.needs_isolated());
        let cond = t(&[1.0, -2.0]);
        let out = p.combine(&cond, &GuidancePasses::default()).unwrap();
        assert_eq!(out.to_vec1::<f32>().unwrap(), [1.0, -2.0]);
    }

    #[test]
    fn combines_the_three_terms() {
        let p = GuiderParams {
            cfg_scale: 3.0,
            stg_scale: 0.5,
            modality_scale: 2.0,
            ..Default::default()
        };
        let passes = GuidancePasses {
            negative: Some(t(&[0.0, 1.0])),
            perturbed: Some(t(&[2.0, 0.0])),
            isolated: Some(t(&[1.0, 1.0])),
        };
        let out = p.combine(&t(&[1.0, 2.0]), &passes).unwrap();
        // 1 + 2(1) + 0.5(-1) + 1(0) = 2.5 ; 2 + 2(1) + 0.5(2) + 1(1) = 6
        assert_eq!(out.to_vec1::<f32>().unwrap(), [2.5, 6.0]);
    }

    #[test]
    fn rescale_matches_the_unbiased_std_ratio() {
        let p = GuiderParams {
            cfg_scale: 2.0,
            rescale_scale: 0.5,
            ..Default::default()
        };
        let cond = t(&[1.0, 3.0]);
        let passes = GuidancePasses {
            negative: Some(t(&[2.0, 2.0])),
            ..Default::default()
        };
        // pred = [0, 4]; std(cond) = sqrt(2), std(pred) = sqrt(8); factor = 0.5*0.5 + 0.5
        let out = p.combine(&cond, &passes).unwrap().to_vec1::<f32>().unwrap();
        assert!(
            (out[0] - 0.0).abs() < 1e-7 && (out[1] - 3.0).abs() < 1e-6,
            "{out:?}"
        );
    }

    #[test]
    fn skip_step_keeps_every_k_plus_first_step() {
        let p = GuiderParams {
            skip_step: 2,
            ..Default::default()
        };
        let skipped: Vec<bool> = (0..6).map(|s| p.skips_step(s)).collect();
        assert_eq!(skipped, [false, true, true, false, true, true]);
        assert!(!GuiderParams::default().skips_step(3));
    }

    #[test]
    fn schedule_picks_the_bin_with_the_smallest_bound_above_sigma() {
        let with_cfg = |c| GuiderParams {
            cfg_scale: c,
            ..Default::default()
        };
        let s =
            GuiderSchedule::from_bins(vec![(0.5, with_cfg(2.0)), (0.9, with_cfg(3.0))]).unwrap();
        assert_eq!(s.params_at(0.2).cfg_scale, 2.0);
        assert_eq!(s.params_at(0.5).cfg_scale, 2.0);
        assert_eq!(s.params_at(0.7).cfg_scale, 3.0);
        assert_eq!(s.params_at(1.0).cfg_scale, 3.0);
        assert_eq!(
            GuiderSchedule::constant(with_cfg(4.0))
                .params_at(9.0)
                .cfg_scale,
            4.0
        );
    }

    #[test]
    fn params_parse_with_ltx_core_defaults() {
        let p: GuiderParams =
            serde_json::from_str(r#"{"cfg_scale": 3.0, "stg_blocks": [1]}"#).unwrap();
        assert_eq!(p.cfg_scale, 3.0);
        assert_eq!(p.stg_blocks, Some(vec![1]));
        assert_eq!(p.modality_scale, 1.0);
        let q: GuiderParams = serde_json::from_str(r#"{"stg_blocks": null}"#).unwrap();
        assert_eq!(q.stg_blocks, None);
    }
}
