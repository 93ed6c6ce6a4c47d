//! Development nodes for load tests and benchmarks (registered only with `--dev-nodes`):
//! `DevWorkload` spends a configurable time in steps (reporting progress, honouring
//! interruption) and produces a small image, so queue behaviour can be measured without models.

use std::time::Duration;

use candle_core::{Device, Tensor};

use crate::{
    Ctx, InputDef, Inputs, NodeDef, NodeError, NodeSchema, OutputDef, Outputs, Registry, Value,
};

/// Registers the development nodes.
pub fn register(r: &mut Registry) {
    let schema = NodeSchema::v1("DevWorkload", "_for_testing/comfyrs")
        .display("Dev Workload (comfyrs)")
        .description("Spends `ms` milliseconds in `steps` steps, then returns a small image. For load tests.")
        .input(InputDef::int("ms").default(100).min(0).max(3_600_000))
        .input(InputDef::int("steps").default(10).min(1).max(10_000))
        .input(InputDef::int("seed").default(0).min(0).max(u64::MAX).opt("control_after_generate", true))
        .input(InputDef::boolean("fail").default(false).optional())
        .output(OutputDef::new("IMAGE"));
    r.register(NodeDef::new(schema, run_workload));
}

fn run_workload(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let total = inputs.usize("ms")?;
    let steps = inputs.usize("steps")?.max(1);
    let seed = inputs.int128("seed")?;
    let per_step = Duration::from_micros((total as u64 * 1000) / steps as u64);
    for step in 0..steps {
        std::thread::sleep(per_step);
        ctx.progress(step + 1, steps)?;
    }
    if inputs
        .get("fail")
        .is_some_and(|v| matches!(v, Value::Boolean(true)))
    {
        return Err(NodeError::Runtime("DevWorkload failed as asked".into()));
    }
    let shade = (seed % 256) as f32 / 255.0;
    let image = Tensor::full(shade, (1, 8, 8, 3), &Device::Cpu)?;
    Ok(Outputs::one(Value::Image(image)))
}
