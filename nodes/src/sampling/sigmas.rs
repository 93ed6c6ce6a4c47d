//! Sigma nodes: LTXVScheduler, ManualSigmas, BasicScheduler, SetFirstSigma, and
//! ModelSamplingLTXV (the shift model-aware schedulers use) (`ltx2-nodes.md` §3.8, §3.9, §4).

use std::sync::Arc;

use models::sampling::scheduler::{Ltx2SchedulerParams, ltx2_sigmas};

use super::schedulers::{FluxSampling, SCHEDULER_NAMES, sigmas_with_denoise};
use super::values::{SamplingInputs, Sigmas};
use crate::ltxv::types::ModelInputs;
use crate::{
    Ctx, InputDef, Inputs, Latent, NodeDef, NodeError, NodeSchema, OutputDef, Outputs, Registry,
};

const LT: &str = "comfy_extras.nodes_lt";
const CUSTOM: &str = "comfy_extras.nodes_custom_sampler";

/// Registers the sigma nodes.
pub fn register(r: &mut Registry) {
    r.register(ltxv_scheduler());
    r.register(manual_sigmas());
    r.register(basic_scheduler());
    r.register(set_first_sigma());
    r.register(model_sampling_ltxv());
}

/// `prod(latent.shape[2:])` of the (video part of the) latent: its token count.
fn latent_tokens(latent: &Latent) -> Result<usize, NodeError> {
    let first = latent
        .samples
        .first()
        .ok_or_else(|| NodeError::Value("the latent has no samples".into()))?;
    Ok(first.dims().iter().skip(2).product())
}

/// The `max_shift` / `base_shift` inputs LTXVScheduler and ModelSamplingLTXV share.
fn shift_input(name: &str, default: f64) -> InputDef {
    InputDef::float(name)
        .default(default)
        .min(0.0)
        .max(100.0)
        .step(0.01)
}

fn ltxv_scheduler() -> NodeDef {
    let schema = NodeSchema::v3("LTXVScheduler", "sampling/custom_sampling/schedulers", LT)
        .input(InputDef::int("steps").default(20).min(1).max(10000))
        .input(shift_input("max_shift", 2.05))
        .input(shift_input("base_shift", 0.95))
        .input(
            InputDef::boolean("stretch")
                .tooltip("Stretch the sigmas to be in the range [terminal, 1].")
                .default(true),
        )
        .input(
            InputDef::float("terminal")
                .tooltip("The terminal value of the sigmas after stretching.")
                .default(0.1)
                .min(0.0)
                .max(0.99)
                .step(0.01),
        )
        .input(InputDef::socket("latent", "LATENT").optional())
        .output(OutputDef::new("SIGMAS"));
    NodeDef::new(schema, run_ltxv_scheduler)
}

fn run_ltxv_scheduler(_: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let tokens = if inputs.has("latent") {
        Some(latent_tokens(inputs.latent("latent")?)?)
    } else {
        None
    };
    let params = Ltx2SchedulerParams {
        steps: inputs.usize("steps")?,
        max_shift: inputs.float("max_shift")?,
        base_shift: inputs.float("base_shift")?,
        stretch: inputs.boolean("stretch")?,
        terminal: inputs.float("terminal")?,
        tokens,
    };
    Ok(Outputs::one(Sigmas(ltx2_sigmas(&params)).into_value()))
}

fn manual_sigmas() -> NodeDef {
    let schema = NodeSchema::v3("ManualSigmas", "_for_testing/custom_sampling", CUSTOM)
        .input(InputDef::string("sigmas").default("1, 0.5"))
        .output(OutputDef::new("SIGMAS"))
        .aliases(&["custom noise schedule", "define sigmas"])
        .experimental();
    NodeDef::new(schema, run_manual_sigmas)
}

/// The end of a match of `\d*\.*\d+` starting at `p` (Python's backtracking regex semantics).
fn number_end(b: &[u8], p: usize) -> Option<usize> {
    let run = |from: usize, pred: fn(&u8) -> bool| b[from..].iter().take_while(|c| pred(c)).count();
    let digits = run(p, u8::is_ascii_digit);
    let dots = run(p + digits, |c| *c == b'.');
    let after = p + digits + dots;
    if dots > 0 && after < b.len() && b[after].is_ascii_digit() {
        return Some(after + run(after, u8::is_ascii_digit));
    }
    (digits > 0).then_some(p + digits)
}

/// ManualSigmas' parsing: `re.findall(r"[-+]?(?:\d*\.*\d+)", text)` then `float()` each.
pub fn parse_manual_sigmas(text: &str) -> Result<Vec<f32>, NodeError> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let body = if matches!(b[i], b'+' | b'-') {
            i + 1
        } else {
            i
        };
        match number_end(b, body) {
            Some(end) => {
                let token = &text[i..end];
                let value: f64 = token.parse().map_err(|_| {
                    NodeError::Value(format!("could not convert string to float: '{token}'"))
                })?;
                out.push(value as f32);
                i = end;
            }
            None => i += 1,
        }
    }
    Ok(out)
}

fn run_manual_sigmas(_: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let sigmas = parse_manual_sigmas(inputs.string("sigmas")?)?;
    Ok(Outputs::one(Sigmas(sigmas).into_value()))
}

fn basic_scheduler() -> NodeDef {
    let schema = NodeSchema::v3(
        "BasicScheduler",
        "sampling/custom_sampling/schedulers",
        CUSTOM,
    )
    .input(InputDef::socket("model", "MODEL"))
    .input(InputDef::combo("scheduler", SCHEDULER_NAMES))
    .input(InputDef::int("steps").default(20).min(1).max(10000))
    .input(
        InputDef::float("denoise")
            .default(1.0)
            .min(0.0)
            .max(1.0)
            .step(0.01),
    )
    .output(OutputDef::new("SIGMAS"));
    NodeDef::new(schema, run_basic_scheduler)
}

fn run_basic_scheduler(_: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let model = inputs.model("model")?;
    let sigmas = sigmas_with_denoise(
        &FluxSampling::new(model.shift),
        inputs.string("scheduler")?,
        inputs.usize("steps")?,
        inputs.float("denoise")?,
    )?;
    Ok(Outputs::one(Sigmas(sigmas).into_value()))
}

fn set_first_sigma() -> NodeDef {
    let schema = NodeSchema::v3("SetFirstSigma", "sampling/custom_sampling/sigmas", CUSTOM)
        .input(InputDef::socket("sigmas", "SIGMAS"))
        .input(
            InputDef::float("sigma")
                .default(136.0)
                .min(0.0)
                .max(20000.0)
                .step(0.001)
                .opt("round", false),
        )
        .output(OutputDef::new("SIGMAS"));
    NodeDef::new(schema, run_set_first_sigma)
}

fn run_set_first_sigma(_: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let mut sigmas = inputs.sigmas("sigmas")?.0.clone();
    let sigma = inputs.float("sigma")? as f32;
    match sigmas.first_mut() {
        Some(first) => *first = sigma,
        None => {
            return Err(NodeError::Value(
                "SetFirstSigma: the schedule is empty".into(),
            ));
        }
    }
    Ok(Outputs::one(Sigmas(sigmas).into_value()))
}

fn model_sampling_ltxv() -> NodeDef {
    let schema = NodeSchema::v3("ModelSamplingLTXV", "advanced/model", LT)
        .input(InputDef::socket("model", "MODEL"))
        .input(shift_input("max_shift", 2.05))
        .input(shift_input("base_shift", 0.95))
        .input(InputDef::socket("latent", "LATENT").optional())
        .output(OutputDef::new("MODEL"));
    NodeDef::new(schema, run_model_sampling_ltxv)
}

fn run_model_sampling_ltxv(_: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let model = inputs.model("model")?;
    let tokens = if inputs.has("latent") {
        latent_tokens(inputs.latent("latent")?)?
    } else {
        4096
    };
    let (max_shift, base_shift) = (inputs.float("max_shift")?, inputs.float("base_shift")?);
    let mm = (max_shift - base_shift) / (4096.0 - 1024.0);
    let b = base_shift - mm * 1024.0;
    let mut patched = Arc::unwrap_or_clone(model);
    patched.shift = tokens as f64 * mm + b;
    Ok(Outputs::one(patched.into_value()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_sigmas_parse_like_the_python_regex() {
        assert_eq!(
            parse_manual_sigmas("1., 0.99375, 0.9875, 0.0").unwrap(),
            vec![1.0, 0.99375, 0.9875, 0.0]
        );
        assert_eq!(parse_manual_sigmas("1e-3").unwrap(), vec![1.0, -3.0]);
        assert_eq!(
            parse_manual_sigmas(".5 x -.25\n+2").unwrap(),
            vec![0.5, -0.25, 2.0]
        );
        assert!(parse_manual_sigmas("   ").unwrap().is_empty());
        assert!(parse_manual_sigmas("0..5").is_err());
        assert_eq!(parse_manual_sigmas("1..").unwrap(), vec![1.0]);
    }
}
