//! What the engine costs per node: a chain of trivial integer nodes (validation + execution,
//! no output cache) through `engine::Engine`, reported per node.

use std::sync::Arc;

use criterion::{Criterion, Throughput};
use engine::events::Collect;
use engine::{CachePolicy, Engine, Job};
use nodes::{Ctx, Env, InputDef, Inputs, NodeDef, NodeSchema, OutputDef, Outputs, Value};
use serde_json::{Map, Value as Json, json};

fn registry() -> nodes::Registry {
    let mut r = nodes::Registry::default();
    r.register(NodeDef::new(
        NodeSchema::v1("BenchConst", "bench")
            .input(InputDef::int("value").default(0))
            .output(OutputDef::new("INT")),
        |_: &Ctx, i: &Inputs| Ok(Outputs::one(Value::Int(i.int128("value")?))),
    ));
    r.register(NodeDef::new(
        NodeSchema::v1("BenchAdd", "bench")
            .input(InputDef::socket("value", "INT"))
            .output(OutputDef::new("INT")),
        |_: &Ctx, i: &Inputs| Ok(Outputs::one(Value::Int(i.int128("value")? + 1))),
    ));
    r.register(NodeDef::new(
        NodeSchema::v1("BenchSink", "bench")
            .input(InputDef::socket("value", "INT"))
            .output_node(),
        |_: &Ctx, i: &Inputs| {
            let mut ui = Map::new();
            ui.insert("value".into(), json!([format!("{:?}", i.get("value"))]));
            Ok(Outputs::ui(ui))
        },
    ));
    r
}

/// `BenchConst -> BenchAdd x (n - 2) -> BenchSink`: `n` nodes.
fn chain(n: usize) -> Json {
    let mut prompt = Map::new();
    prompt.insert(
        "0".into(),
        json!({"class_type": "BenchConst", "inputs": {"value": 1}}),
    );
    for i in 1..n - 1 {
        prompt.insert(
            i.to_string(),
            json!({"class_type": "BenchAdd", "inputs": {"value": [(i - 1).to_string(), 0]}}),
        );
    }
    prompt.insert(
        (n - 1).to_string(),
        json!({"class_type": "BenchSink", "inputs": {"value": [(n - 2).to_string(), 0]}}),
    );
    Json::Object(prompt)
}

/// Registers the engine overhead benchmark.
pub fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::under(dir.path());
    let policy = CachePolicy {
        max_entries: 0,
        max_bytes: 0,
    };
    let mut engine = Engine::new(Arc::new(registry()), policy);
    let n = if crate::ci_sized() { 20 } else { 200 };
    let prompt = chain(n);
    let extra = json!({});
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function(
        format!("validate + execute a chain of {n} trivial nodes"),
        |b| {
            b.iter(|| {
                let validated = engine
                    .validate(&env, &prompt, None)
                    .unwrap_or_else(|e| panic!("{}", e.to_json()));
                let sink = Collect::default();
                let job = Job {
                    prompt_id: "bench",
                    prompt: &validated.prompt,
                    outputs: &validated.outputs,
                    extra_data: &extra,
                    env: &env,
                };
                let result = engine.execute(&job, &sink);
                assert_eq!(result.executed.len(), n);
                result
            })
        },
    );
    group.finish();
}
