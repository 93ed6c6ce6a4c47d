//! ComfyUI's model-aware schedulers (`comfy/samplers.py` `calculate_sigmas`) for LTX-2's model
//! sampling, `ModelSamplingFlux` + `CONST`: `sigma(t) = e^shift / (e^shift + 1/t - 1)`, a table
//! of 10 000 sigmas at `t = i / 10000`, and `timestep(sigma) = sigma`.
//!
//! Used by `BasicScheduler` and `KSampler`; `LTXVScheduler` and `ManualSigmas` do not consult
//! the model. Arithmetic is float32 like the PyTorch tensors it mirrors.

use crate::NodeError;

/// `SCHEDULER_NAMES` in ComfyUI's order.
pub const SCHEDULER_NAMES: &[&str] = &[
    "normal",
    "karras",
    "exponential",
    "sgm_uniform",
    "simple",
    "ddim_uniform",
    "beta",
    "linear_quadratic",
    "kl_optimal",
];

/// Entries of the sigma table (`timesteps` of `ModelSamplingFlux`).
const TABLE_SIZE: usize = 10000;

/// Flux-style model sampling with a shift.
#[derive(Debug, Clone)]
pub struct FluxSampling {
    shift: f64,
    table: Vec<f32>,
}

impl FluxSampling {
    /// The model sampling of a model with `shift`.
    pub fn new(shift: f64) -> Self {
        let mut me = Self {
            shift,
            table: Vec::new(),
        };
        me.table = (1..=TABLE_SIZE)
            .map(|i| me.sigma(i as f32 / TABLE_SIZE as f32))
            .collect();
        me
    }

    /// `sigma(t)`.
    pub fn sigma(&self, t: f32) -> f32 {
        let e = self.shift.exp() as f32;
        e / (e + (1.0 / t - 1.0))
    }

    fn sigma_min(&self) -> f32 {
        self.table[0]
    }

    fn sigma_max(&self) -> f32 {
        self.table[TABLE_SIZE - 1]
    }
}

/// `torch.linspace(start, end, n)` in float32 (see `models::sampling::scheduler::linspace`).
fn linspace(start: f32, end: f32, n: usize) -> Vec<f32> {
    models::sampling::scheduler::linspace(start, end, n)
}

/// `calculate_sigmas(model_sampling, scheduler, steps)`.
pub fn calculate_sigmas(
    ms: &FluxSampling,
    scheduler: &str,
    steps: usize,
) -> Result<Vec<f32>, NodeError> {
    if steps == 0 {
        return Ok(Vec::new());
    }
    Ok(match scheduler {
        "simple" => simple(ms, steps),
        "normal" => normal(ms, steps, false),
        "sgm_uniform" => normal(ms, steps, true),
        "karras" => karras(ms, steps),
        "exponential" => exponential(ms, steps),
        "ddim_uniform" => ddim_uniform(ms, steps),
        "linear_quadratic" => linear_quadratic(ms, steps),
        "kl_optimal" => kl_optimal(ms, steps),
        other => {
            return Err(NodeError::Value(format!(
                "scheduler {other:?} is not supported for LTX-2 models"
            )));
        }
    })
}

fn simple(ms: &FluxSampling, steps: usize) -> Vec<f32> {
    let ss = TABLE_SIZE as f64 / steps as f64;
    let mut sigs: Vec<f32> = (0..steps)
        .map(|x| ms.table[TABLE_SIZE - 1 - (x as f64 * ss) as usize])
        .collect();
    sigs.push(0.0);
    sigs
}

fn normal(ms: &FluxSampling, steps: usize, sgm: bool) -> Vec<f32> {
    let (start, end) = (ms.sigma_max(), ms.sigma_min());
    let mut append_zero = true;
    let timesteps = if sgm {
        let mut t = linspace(start, end, steps + 1);
        t.pop();
        t
    } else {
        let mut n = steps;
        if ms.sigma(end).abs() <= 1e-5 {
            n += 1;
            append_zero = false;
        }
        linspace(start, end, n)
    };
    let mut sigs: Vec<f32> = timesteps.into_iter().map(|t| ms.sigma(t)).collect();
    if append_zero {
        sigs.push(0.0);
    }
    sigs
}

fn karras(ms: &FluxSampling, steps: usize) -> Vec<f32> {
    const RHO: f32 = 7.0;
    let (min_inv, max_inv) = (
        ms.sigma_min().powf(1.0 / RHO),
        ms.sigma_max().powf(1.0 / RHO),
    );
    let mut sigs: Vec<f32> = linspace(0.0, 1.0, steps)
        .into_iter()
        .map(|r| (max_inv + r * (min_inv - max_inv)).powf(RHO))
        .collect();
    sigs.push(0.0);
    sigs
}

fn exponential(ms: &FluxSampling, steps: usize) -> Vec<f32> {
    let (hi, lo) = (
        (ms.sigma_max() as f64).ln() as f32,
        (ms.sigma_min() as f64).ln() as f32,
    );
    let mut sigs: Vec<f32> = linspace(hi, lo, steps).into_iter().map(f32::exp).collect();
    sigs.push(0.0);
    sigs
}

fn ddim_uniform(ms: &FluxSampling, steps: usize) -> Vec<f32> {
    let mut steps = steps;
    let mut sigs = if ms.table[1].abs() <= 1e-5 {
        steps += 1;
        Vec::new()
    } else {
        vec![0.0]
    };
    let ss = (TABLE_SIZE / steps).max(1);
    let mut x = 1;
    while x < TABLE_SIZE {
        sigs.push(ms.table[x]);
        x += ss;
    }
    sigs.reverse();
    sigs
}

fn linear_quadratic(ms: &FluxSampling, steps: usize) -> Vec<f32> {
    const THRESHOLD: f64 = 0.025;
    let schedule: Vec<f64> = if steps == 1 {
        vec![1.0, 0.0]
    } else {
        let linear_steps = steps / 2;
        let mut s: Vec<f64> = (0..linear_steps)
            .map(|i| i as f64 * THRESHOLD / linear_steps as f64)
            .collect();
        let diff = linear_steps as f64 - THRESHOLD * steps as f64;
        let quad_steps = (steps - linear_steps) as f64;
        let quad_coef = diff / (linear_steps as f64 * quad_steps * quad_steps);
        let lin_coef = THRESHOLD / linear_steps as f64 - 2.0 * diff / (quad_steps * quad_steps);
        let constant = quad_coef * (linear_steps * linear_steps) as f64;
        s.extend((linear_steps..steps).map(|i| {
            let i = i as f64;
            quad_coef * i * i + lin_coef * i + constant
        }));
        s.push(1.0);
        s.into_iter().map(|x| 1.0 - x).collect()
    };
    schedule
        .into_iter()
        .map(|x| x as f32 * ms.sigma_max())
        .collect()
}

fn kl_optimal(ms: &FluxSampling, steps: usize) -> Vec<f32> {
    let (lo, hi) = (ms.sigma_min().atan(), ms.sigma_max().atan());
    let mut sigs: Vec<f32> = (0..steps)
        .map(|i| {
            let a = if steps > 1 {
                i as f32 / (steps - 1) as f32
            } else {
                0.0
            };
            (a * lo + (1.0 - a) * hi).tan()
        })
        .collect();
    sigs.push(0.0);
    sigs
}

/// `BasicScheduler`/`KSampler` with `denoise`: the last `steps + 1` sigmas of a
/// `int(steps / denoise)`-step schedule; empty for `denoise <= 0`.
pub fn sigmas_with_denoise(
    ms: &FluxSampling,
    scheduler: &str,
    steps: usize,
    denoise: f64,
) -> Result<Vec<f32>, NodeError> {
    if denoise >= 0.9999 {
        return calculate_sigmas(ms, scheduler, steps);
    }
    if denoise <= 0.0 {
        return Ok(Vec::new());
    }
    let total = (steps as f64 / denoise) as usize;
    let all = calculate_sigmas(ms, scheduler, total)?;
    let keep = (steps + 1).min(all.len());
    Ok(all[all.len() - keep..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flux_sigma_table_spans_zero_to_one() {
        let ms = FluxSampling::new(2.37);
        assert_eq!(ms.sigma_max(), 1.0);
        assert!(ms.sigma_min() > 0.0 && ms.sigma_min() < 0.02);
    }

    #[test]
    fn schedules_have_steps_plus_one_values_ending_in_zero() {
        let ms = FluxSampling::new(2.37);
        for name in SCHEDULER_NAMES.iter().filter(|n| **n != "beta") {
            let s = calculate_sigmas(&ms, name, 8).unwrap();
            assert_eq!(s.len(), 9, "{name}");
            assert!(s.last().unwrap().abs() < 1e-6, "{name}: {s:?}");
            assert!(
                s.windows(2).all(|w| w[0] >= w[1]),
                "{name} not descending: {s:?}"
            );
        }
        assert!(calculate_sigmas(&ms, "beta", 8).is_err());
    }

    #[test]
    fn normal_schedule_starts_at_sigma_max_and_follows_the_shift() {
        let ms = FluxSampling::new(2.37);
        let s = calculate_sigmas(&ms, "normal", 4).unwrap();
        assert_eq!(s[0], 1.0);
        assert_eq!(s.len(), 5);
        // timesteps are linspace(sigma_max, sigma_min, 4), mapped through sigma() again
        let t1 = 1.0 - (1.0 - ms.sigma_min() as f64) / 3.0;
        let e = 2.37f64.exp();
        let expected = e / (e + 1.0 / t1 - 1.0);
        assert!((s[1] as f64 - expected).abs() < 1e-5, "{s:?}");
    }

    #[test]
    fn denoise_keeps_the_tail_of_a_longer_schedule() {
        let ms = FluxSampling::new(2.37);
        let full = calculate_sigmas(&ms, "simple", 20).unwrap();
        let part = sigmas_with_denoise(&ms, "simple", 10, 0.5).unwrap();
        assert_eq!(part, full[10..].to_vec());
        assert!(
            sigmas_with_denoise(&ms, "simple", 10, 0.0)
                .unwrap()
                .is_empty()
        );
    }
}
