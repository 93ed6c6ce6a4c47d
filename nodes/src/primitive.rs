//! Primitive value nodes (`comfy_extras/nodes_primitive.py`): a widget whose value becomes an
//! output, used by the LTX-2 templates for lengths and frame rates.

use crate::{
    Ctx, InputDef, Inputs, NodeDef, NodeError, NodeSchema, OutputDef, Outputs, Registry, Value,
};

const MODULE: &str = "comfy_extras.nodes_primitive";
const CATEGORY: &str = "utils/primitive";
const BOUND: i64 = 9223372036854775807;

/// Registers the primitive nodes.
pub fn register(r: &mut Registry) {
    let int = NodeSchema::v3("PrimitiveInt", CATEGORY, MODULE)
        .display("Int")
        .input(
            InputDef::int("value")
                .min(-BOUND)
                .max(BOUND)
                .opt("control_after_generate", true),
        )
        .output(OutputDef::new("INT"));
    r.register(NodeDef::new(int, pass_through));
    let float = NodeSchema::v3("PrimitiveFloat", CATEGORY, MODULE)
        .display("Float")
        .input(InputDef::float("value").min(-BOUND).max(BOUND).step(0.1))
        .output(OutputDef::new("FLOAT"));
    r.register(NodeDef::new(float, pass_through));
    let string = NodeSchema::v3("PrimitiveString", CATEGORY, MODULE)
        .display("String")
        .input(InputDef::string("value"))
        .output(OutputDef::new("STRING"));
    r.register(NodeDef::new(string, pass_through));
    let multiline = NodeSchema::v3("PrimitiveStringMultiline", CATEGORY, MODULE)
        .display("String (Multiline)")
        .input(InputDef::string("value").opt("multiline", true))
        .output(OutputDef::new("STRING"));
    r.register(NodeDef::new(multiline, pass_through));
    let boolean = NodeSchema::v3("PrimitiveBoolean", CATEGORY, MODULE)
        .display("Boolean")
        .input(InputDef::boolean("value"))
        .output(OutputDef::new("BOOLEAN"));
    r.register(NodeDef::new(boolean, pass_through));
}

fn pass_through(_: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let value: Value = inputs
        .get("value")
        .cloned()
        .ok_or_else(|| NodeError::Value("missing input 'value'".into()))?;
    Ok(Outputs::one(value))
}
