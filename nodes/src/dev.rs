//! Development nodes for load tests and benchmarks (registered only with `--dev-nodes`):
//! `DevWorkload` spends a configurable time in steps (reporting progress, optionally with a
//! preview image, honouring interruption) and produces a small image, so queue behaviour and the
//! WebSocket's progress and preview frames can be exercised without models.

use std::time::Duration;

use candle_core::{Device, Tensor};

use crate::files::{Pixels, encode_png};
use crate::{
    Ctx, InputDef, Inputs, NodeDef, NodeError, NodeSchema, OutputDef, Outputs, Preview, Registry,
    Value,
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
        .input(InputDef::boolean("preview").default(false).optional())
        .output(OutputDef::new("IMAGE"));
    r.register(NodeDef::new(schema, run_workload));
}

fn run_workload(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let total = inputs.usize("ms")?;
    let steps = inputs.usize("steps")?.max(1);
    let seed = inputs.int128("seed")?;
    let per_step = Duration::from_micros((total as u64 * 1000) / steps as u64);
    let shade = (seed % 256) as f32 / 255.0;
    let preview = flag(inputs, "preview")
        .then(|| preview_png(shade))
        .transpose()?;
    for step in 0..steps {
        std::thread::sleep(per_step);
        match &preview {
            Some(p) => ctx.progress_with_preview(step + 1, steps, p.clone())?,
            None => ctx.progress(step + 1, steps)?,
        }
    }
    if flag(inputs, "fail") {
        return Err(NodeError::Runtime("DevWorkload failed as asked".into()));
    }
    let image = Tensor::full(shade, (1, 8, 8, 3), &Device::Cpu)?;
    Ok(Outputs::one(Value::Image(image)))
}

fn flag(inputs: &Inputs, name: &str) -> bool {
    inputs
        .get(name)
        .is_some_and(|v| matches!(v, Value::Boolean(true)))
}

/// An 8x8 grey PNG of the output's shade, sent as the preview of every step.
fn preview_png(shade: f32) -> Result<Preview, NodeError> {
    let level = (shade * 255.0).round() as u8;
    let px = Pixels {
        width: 8,
        height: 8,
        channels: 3,
        data: vec![level; 8 * 8 * 3],
    };
    Ok(Preview {
        mime: "image/png",
        bytes: encode_png(&px, &[], 1)?,
    })
}
