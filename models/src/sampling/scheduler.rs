//! The LTX-2 sigma schedule: ltx-core's `LTX2Scheduler.execute` and ComfyUI's `LTXVScheduler`
//! node (the same formula), plus the distilled model's fixed schedules.
//!
//! Computed in float32 with the operation order of the PyTorch code (Python-double scalars, the
//! `1 / t` and `c / t` of a tensor evaluated as `reciprocal(t) * c`), so the values are
//! bit-identical to PyTorch's.

/// `DISTILLED_SIGMA_VALUES` of ltx-pipelines (stage 1 of the distilled model, 8 steps), also the
/// ComfyUI templates' `ManualSigmas` string for that stage.
pub const DISTILLED_SIGMA_VALUES: [f32; 9] = [
    1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875, 0.0,
];

/// `STAGE_2_DISTILLED_SIGMA_VALUES` of ltx-pipelines (the x2-upscaled refinement stage).
pub const STAGE_2_DISTILLED_SIGMA_VALUES: [f32; 4] = [0.909375, 0.725, 0.421875, 0.0];

/// Token count at which the shift equals `base_shift`.
const BASE_SHIFT_ANCHOR: f64 = 1024.0;
/// Token count at which the shift equals `max_shift` (also the default token count).
const MAX_SHIFT_ANCHOR: f64 = 4096.0;

/// Inputs of the LTX-2 scheduler (defaults are the node's / ltx-core's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ltx2SchedulerParams {
    /// Number of denoising steps (the schedule has `steps + 1` values).
    pub steps: usize,
    /// Shift at 4096 tokens.
    pub max_shift: f64,
    /// Shift at 1024 tokens.
    pub base_shift: f64,
    /// Stretch the schedule so its last non-zero sigma equals `terminal`.
    pub stretch: bool,
    /// Last non-zero sigma after stretching.
    pub terminal: f64,
    /// Video latent tokens `T * H * W` (ComfyUI: `prod(latent.shape[2:])` of the video part);
    /// `None` means 4096 (no latent connected).
    pub tokens: Option<usize>,
}

impl Default for Ltx2SchedulerParams {
    fn default() -> Self {
        Self {
            steps: 20,
            max_shift: 2.05,
            base_shift: 0.95,
            stretch: true,
            terminal: 0.1,
            tokens: None,
        }
    }
}

/// The LTX-2 schedule: `steps + 1` descending sigmas from 1 to 0 (float32).
///
/// The first value is `e * (1 / e)`, within one ulp of 1. With `steps == 1` and stretching, the
/// single non-zero sigma becomes NaN (0/0) when that product rounds to exactly 1 (e.g. 8 tokens)
/// and `terminal` otherwise, exactly as in PyTorch.
pub fn ltx2_sigmas(p: &Ltx2SchedulerParams) -> Vec<f32> {
    let tokens = p.tokens.map_or(MAX_SHIFT_ANCHOR, |t| t as f64);
    let mm = (p.max_shift - p.base_shift) / (MAX_SHIFT_ANCHOR - BASE_SHIFT_ANCHOR);
    let b = p.base_shift - mm * BASE_SHIFT_ANCHOR;
    let shift = tokens * mm + b;
    let e = shift.exp() as f32;

    let mut sigmas: Vec<f32> = linspace(1.0, 0.0, p.steps + 1)
        .into_iter()
        .map(|t| {
            if t == 0.0 {
                return 0.0;
            }
            let odds = 1.0 / t - 1.0;
            e * (1.0 / (e + odds))
        })
        .collect();

    if p.stretch {
        let terminal_gap = (1.0 - p.terminal) as f32;
        if let Some(&last) = sigmas.iter().rev().find(|s| **s != 0.0) {
            let scale = (1.0 - last) / terminal_gap;
            for s in sigmas.iter_mut().filter(|s| **s != 0.0) {
                *s = 1.0 - (1.0 - *s) / scale;
            }
        }
    }
    sigmas
}

/// `torch.linspace(start, end, steps)` in float32: `start + i * step` for the first half and
/// `end - (steps - 1 - i) * step` for the second, each a fused multiply-add as PyTorch's
/// vectorised kernel computes it.
pub fn linspace(start: f32, end: f32, steps: usize) -> Vec<f32> {
    match steps {
        0 => Vec::new(),
        1 => vec![start],
        _ => {
            let step = (end - start) / (steps - 1) as f32;
            let halfway = steps / 2;
            (0..steps)
                .map(|i| {
                    if i < halfway {
                        step.mul_add(i as f32, start)
                    } else {
                        (-step).mul_add((steps - 1 - i) as f32, end)
                    }
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parity::Checks;

    /// Bit equality that treats NaN as equal to NaN.
    fn same_bits(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
    }

    #[test]
    fn every_fixture_schedule_is_bit_identical() {
        let checks = Checks::open("f_scheduler");
        let params = checks.params();
        let mut checked = 0;
        for key in checks.keys() {
            if !key.starts_with("out.sigmas.") {
                continue;
            }
            let kp = &params[&key];
            let defaults = Ltx2SchedulerParams::default();
            let p = Ltx2SchedulerParams {
                steps: kp["steps"].as_u64().unwrap() as usize,
                max_shift: kp["max_shift"].as_f64().unwrap_or(defaults.max_shift),
                base_shift: kp["base_shift"].as_f64().unwrap_or(defaults.base_shift),
                stretch: kp["stretch"].as_bool().unwrap_or(defaults.stretch),
                terminal: kp["terminal"].as_f64().unwrap_or(defaults.terminal),
                tokens: kp["latent_fhw"]
                    .as_array()
                    .map(|fhw| fhw.iter().map(|d| d.as_u64().unwrap() as usize).product()),
            };
            if p.tokens.is_none() {
                assert_eq!(kp["tokens"].as_u64(), Some(4096), "{key}");
            }
            let expected: Vec<f32> = checks.f32(&key).to_vec1().unwrap();
            let got = ltx2_sigmas(&p);
            assert!(same_bits(&got, &expected), "{key}: {got:?} vs {expected:?}");
            checked += 1;
        }
        assert!(checked > 0);
        println!("{checked} schedules bit-identical");
    }

    #[test]
    fn distilled_constants_match_ltx_pipelines() {
        let checks = Checks::open("f_scheduler");
        let d: Vec<f32> = checks.f32("out.DISTILLED_SIGMA_VALUES").to_vec1().unwrap();
        assert!(same_bits(&d, &DISTILLED_SIGMA_VALUES));
        let s2: Vec<f32> = checks
            .f32("out.STAGE_2_DISTILLED_SIGMA_VALUES")
            .to_vec1()
            .unwrap();
        assert!(same_bits(&s2, &STAGE_2_DISTILLED_SIGMA_VALUES));
    }

    #[test]
    fn matches_the_comfy_node_reference_values() {
        // ltx2-nodes.md section 3.9: 20 steps, defaults, no latent / a 768x512x97 latent.
        let no_latent = ltx2_sigmas(&Ltx2SchedulerParams::default());
        assert_eq!(no_latent.len(), 21);
        // e * (1 / e) in float32: within one ulp of 1, not necessarily 1
        assert!((no_latent[0] - 1.0).abs() <= f32::EPSILON);
        assert!((no_latent[1] - 0.991467).abs() < 1e-6);
        assert!((no_latent[18] - 0.319439).abs() < 1e-6);
        assert!((no_latent[19] - 0.1).abs() < 1e-7);
        assert_eq!(no_latent[20], 0.0);
        let with_latent = ltx2_sigmas(&Ltx2SchedulerParams {
            tokens: Some(13 * 16 * 24),
            ..Default::default()
        });
        assert!((with_latent[1] - 0.993116).abs() < 1e-6);
        assert!((with_latent[17] - 0.51299).abs() < 1e-6);
    }

    #[test]
    fn linspace_endpoints_and_length() {
        assert_eq!(linspace(1.0, 0.0, 0), Vec::<f32>::new());
        assert_eq!(linspace(1.0, 0.0, 1), vec![1.0]);
        assert_eq!(linspace(1.0, 0.0, 5), vec![1.0, 0.75, 0.5, 0.25, 0.0]);
    }
}
