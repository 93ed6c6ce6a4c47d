//! Custom-sampling nodes (`comfy_extras/nodes_custom_sampler.py`): RandomNoise, DisableNoise,
//! KSamplerSelect, SamplerEulerAncestral, CFGGuider, BasicGuider, SamplerCustomAdvanced; and the
//! classic KSampler (`nodes.py`), which combines them (`ltx2-nodes.md` §4).

use models::sampling::samplers::Sampler;
use serde_json::json;

use super::run::{SampleRequest, run};
use super::schedulers::{FluxSampling, SCHEDULER_NAMES, sigmas_with_denoise};
use super::values::{Guider, Noise, SamplerValue, SamplingInputs};
use crate::ltxv::types::ModelInputs;
use crate::{
    Ctx, InputDef, Inputs, NodeDef, NodeError, NodeSchema, OutputDef, Outputs, Registry, Value,
};

const CUSTOM: &str = "comfy_extras.nodes_custom_sampler";

/// ComfyUI's `SAMPLER_NAMES` (the version the reference `/object_info` lists).
pub const SAMPLER_NAMES: &[&str] = &[
    "euler",
    "euler_cfg_pp",
    "euler_ancestral",
    "euler_ancestral_cfg_pp",
    "heun",
    "heunpp2",
    "exp_heun_2_x0",
    "exp_heun_2_x0_sde",
    "dpm_2",
    "dpm_2_ancestral",
    "lms",
    "dpm_fast",
    "dpm_adaptive",
    "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde",
    "dpmpp_sde_gpu",
    "dpmpp_2m",
    "dpmpp_2m_cfg_pp",
    "dpmpp_2m_sde",
    "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun",
    "dpmpp_2m_sde_heun_gpu",
    "dpmpp_3m_sde",
    "dpmpp_3m_sde_gpu",
    "ddpm",
    "lcm",
    "ipndm",
    "ipndm_v",
    "deis",
    "res_multistep",
    "res_multistep_cfg_pp",
    "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp",
    "gradient_estimation",
    "gradient_estimation_cfg_pp",
    "er_sde",
    "seeds_2",
    "seeds_3",
    "sa_solver",
    "sa_solver_pece",
    "ddim",
    "uni_pc",
    "uni_pc_bh2",
];

/// Registers the custom-sampling nodes and KSampler.
pub fn register(r: &mut Registry) {
    r.register(random_noise());
    r.register(disable_noise());
    r.register(ksampler_select());
    r.register(sampler_euler_ancestral());
    r.register(cfg_guider());
    r.register(basic_guider());
    r.register(sampler_custom_advanced());
    r.register(ksampler());
}

fn seed_input(name: &str) -> InputDef {
    InputDef::int(name)
        .default(0)
        .min(0)
        .max(json!(u64::MAX))
        .opt("control_after_generate", true)
}

/// A seed input as u64 (validation keeps it in `0..=u64::MAX`).
fn seed(inputs: &Inputs, name: &str) -> Result<u64, NodeError> {
    let v = inputs.int128(name)?;
    u64::try_from(v).map_err(|_| NodeError::Value(format!("seed {v} is out of range")))
}

fn random_noise() -> NodeDef {
    let schema = NodeSchema::v3("RandomNoise", "sampling/custom_sampling/noise", CUSTOM)
        .input(seed_input("noise_seed"))
        .output(OutputDef::new("NOISE"));
    NodeDef::new(schema, |_: &Ctx, inputs: &Inputs| {
        let seed = seed(inputs, "noise_seed")?;
        Ok(Outputs::one(Noise::Random { seed }.into_value()))
    })
}

fn disable_noise() -> NodeDef {
    let schema = NodeSchema::v3("DisableNoise", "sampling/custom_sampling/noise", CUSTOM)
        .output(OutputDef::new("NOISE"))
        .aliases(&["zero noise"]);
    NodeDef::new(schema, |_: &Ctx, _: &Inputs| {
        Ok(Outputs::one(Noise::Disabled.into_value()))
    })
}

/// ComfyUI's `sampler_object(name)` for the samplers implemented here.
fn sampler_object(name: &str) -> Result<Sampler, NodeError> {
    Sampler::from_name(name).map_err(|_| {
        NodeError::Value(format!(
            "sampler {name:?} is not implemented (available: euler, euler_ancestral, \
             gradient_estimation)"
        ))
    })
}

fn ksampler_select() -> NodeDef {
    let schema = NodeSchema::v3(
        "KSamplerSelect",
        "sampling/custom_sampling/samplers",
        CUSTOM,
    )
    .input(InputDef::combo("sampler_name", SAMPLER_NAMES))
    .output(OutputDef::new("SAMPLER"));
    NodeDef::new(schema, |_: &Ctx, inputs: &Inputs| {
        let sampler = sampler_object(inputs.string("sampler_name")?)?;
        Ok(Outputs::one(SamplerValue(sampler).into_value()))
    })
}

fn unit_float(name: &str) -> InputDef {
    InputDef::float(name)
        .default(1.0)
        .min(0.0)
        .max(100.0)
        .step(0.01)
        .opt("round", false)
}

fn sampler_euler_ancestral() -> NodeDef {
    let schema = NodeSchema::v3(
        "SamplerEulerAncestral",
        "sampling/custom_sampling/samplers",
        CUSTOM,
    )
    .input(unit_float("eta"))
    .input(unit_float("s_noise"))
    .output(OutputDef::new("SAMPLER"));
    NodeDef::new(schema, |_: &Ctx, inputs: &Inputs| {
        let sampler = Sampler::EulerAncestral {
            eta: inputs.float("eta")?,
            s_noise: inputs.float("s_noise")?,
        };
        Ok(Outputs::one(SamplerValue(sampler).into_value()))
    })
}

fn cfg_input() -> InputDef {
    InputDef::float("cfg")
        .default(8.0)
        .min(0.0)
        .max(100.0)
        .step(0.1)
        .opt("round", 0.01)
}

fn cfg_guider() -> NodeDef {
    let schema = NodeSchema::v3("CFGGuider", "sampling/custom_sampling/guiders", CUSTOM)
        .input(InputDef::socket("model", "MODEL"))
        .input(InputDef::socket("positive", "CONDITIONING"))
        .input(InputDef::socket("negative", "CONDITIONING"))
        .input(cfg_input())
        .output(OutputDef::new("GUIDER"));
    NodeDef::new(schema, |_: &Ctx, inputs: &Inputs| {
        let guider = Guider {
            model: inputs.model("model")?,
            positive: inputs.conditioning("positive")?,
            negative: Some(inputs.conditioning("negative")?),
            cfg: inputs.float("cfg")?,
        };
        Ok(Outputs::one(guider.into_value()))
    })
}

fn basic_guider() -> NodeDef {
    let schema = NodeSchema::v3("BasicGuider", "sampling/custom_sampling/guiders", CUSTOM)
        .input(InputDef::socket("model", "MODEL"))
        .input(InputDef::socket("conditioning", "CONDITIONING"))
        .output(OutputDef::new("GUIDER"));
    NodeDef::new(schema, |_: &Ctx, inputs: &Inputs| {
        let guider = Guider {
            model: inputs.model("model")?,
            positive: inputs.conditioning("conditioning")?,
            negative: None,
            cfg: 1.0,
        };
        Ok(Outputs::one(guider.into_value()))
    })
}

fn sampler_custom_advanced() -> NodeDef {
    let schema = NodeSchema::v3("SamplerCustomAdvanced", "sampling/custom_sampling", CUSTOM)
        .input(InputDef::socket("noise", "NOISE"))
        .input(InputDef::socket("guider", "GUIDER"))
        .input(InputDef::socket("sampler", "SAMPLER"))
        .input(InputDef::socket("sigmas", "SIGMAS"))
        .input(InputDef::socket("latent_image", "LATENT"))
        .output(OutputDef::new("LATENT").named("output"))
        .output(OutputDef::new("LATENT").named("denoised_output"));
    NodeDef::new(schema, run_sampler_custom_advanced)
}

fn run_sampler_custom_advanced(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let guider = inputs.guider("guider")?;
    let sigmas = inputs.sigmas("sigmas")?;
    let result = run(
        ctx,
        &SampleRequest {
            guider: &guider,
            noise: *inputs.noise("noise")?,
            sampler: inputs.sampler("sampler")?.0,
            sigmas: &sigmas.0,
            latent: inputs.latent("latent_image")?,
        },
    )?;
    Ok(Outputs::new(vec![
        Value::Latent(result.output),
        Value::Latent(result.denoised),
    ]))
}

fn ksampler() -> NodeDef {
    let schema = NodeSchema::v1("KSampler", "sampling")
        .display("KSampler")
        .description(
            "Uses the provided model, positive and negative conditioning to denoise the latent \
             image.",
        )
        .input(
            InputDef::socket("model", "MODEL")
                .tooltip("The model used for denoising the input latent."),
        )
        .input(seed_input("seed").tooltip("The random seed used for creating the noise."))
        .input(
            InputDef::int("steps")
                .default(20)
                .min(1)
                .max(10000)
                .tooltip("The number of steps used in the denoising process."),
        )
        .input(cfg_input().tooltip(
            "The Classifier-Free Guidance scale balances creativity and adherence to the \
             prompt. Higher values result in images more closely matching the prompt however \
             too high values will negatively impact quality.",
        ))
        .input(InputDef::combo("sampler_name", SAMPLER_NAMES).tooltip(
            "The algorithm used when sampling, this can affect the quality, speed, and style \
             of the generated output.",
        ))
        .input(
            InputDef::combo("scheduler", SCHEDULER_NAMES).tooltip(
                "The scheduler controls how noise is gradually removed to form the image.",
            ),
        )
        .input(InputDef::socket("positive", "CONDITIONING").tooltip(
            "The conditioning describing the attributes you want to include in the image.",
        ))
        .input(InputDef::socket("negative", "CONDITIONING").tooltip(
            "The conditioning describing the attributes you want to exclude from the image.",
        ))
        .input(InputDef::socket("latent_image", "LATENT").tooltip("The latent image to denoise."))
        .input(
            InputDef::float("denoise")
                .default(1.0)
                .min(0.0)
                .max(1.0)
                .step(0.01)
                .tooltip(
                    "The amount of denoising applied, lower values will maintain the structure \
                     of the initial image allowing for image to image sampling.",
                ),
        )
        .output(OutputDef::new("LATENT").tooltip("The denoised latent."))
        .aliases(&[
            "sampler", "sample", "generate", "denoise", "diffuse", "txt2img", "img2img",
        ]);
    NodeDef::new(schema, run_ksampler)
}

fn run_ksampler(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let model = inputs.model("model")?;
    let sigmas = sigmas_with_denoise(
        &FluxSampling::new(model.shift),
        inputs.string("scheduler")?,
        inputs.usize("steps")?,
        inputs.float("denoise")?,
    )?;
    let guider = Guider {
        model,
        positive: inputs.conditioning("positive")?,
        negative: Some(inputs.conditioning("negative")?),
        cfg: inputs.float("cfg")?,
    };
    let result = run(
        ctx,
        &SampleRequest {
            guider: &guider,
            noise: Noise::Random {
                seed: seed(inputs, "seed")?,
            },
            sampler: sampler_object(inputs.string("sampler_name")?)?,
            sigmas: &sigmas,
            latent: inputs.latent("latent_image")?,
        },
    )?;
    Ok(Outputs::one(Value::Latent(result.output)))
}
