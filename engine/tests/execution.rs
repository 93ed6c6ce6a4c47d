//! Execution semantics: order, caching between prompts, list inputs/outputs, interruption,
//! errors, and the event stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use engine::events::Collect;
use engine::{CachePolicy, Engine, Event, ExecutionResult, Job, Outcome};
use nodes::{
    Ctx, Env, InputDef, Inputs, NodeDef, NodeError, NodeSchema, OutputDef, Outputs, Registry, Slot,
    Value,
};
use serde_json::{Map, Value as Json, json};

fn registry() -> Registry {
    let mut r = nodes::builtin_registry();
    r.register(NodeDef::new(
        NodeSchema::v1("TestRange", "testing")
            .input(InputDef::int("count").default(3))
            .output(OutputDef::new("INT").list()),
        |_: &Ctx, i: &Inputs| {
            let n = i.int("count")?;
            Ok(Outputs {
                slots: vec![Slot::Many((0..n).map(|v| Value::Int(v as i128)).collect())],
                ui: None,
            })
        },
    ));
    r.register(NodeDef::new(
        NodeSchema::v1("TestDouble", "testing")
            .input(InputDef::socket("value", "INT"))
            .output(OutputDef::new("INT")),
        |_: &Ctx, i: &Inputs| Ok(Outputs::one(Value::Int(i.int128("value")? * 2))),
    ));
    r.register(NodeDef::new(
        NodeSchema::v1("TestSum", "testing")
            .input(InputDef::socket("values", "INT"))
            .input_is_list()
            .output(OutputDef::new("INT")),
        |_: &Ctx, i: &Inputs| {
            let mut total = 0i128;
            for v in i.list("values") {
                if let Value::Int(x) = v {
                    total += x;
                }
            }
            Ok(Outputs::one(Value::Int(total)))
        },
    ));
    r.register(NodeDef::new(
        NodeSchema::v1("TestShow", "testing")
            .input(InputDef::socket("value", "*"))
            .output_node(),
        |_: &Ctx, i: &Inputs| {
            let mut ui = Map::new();
            ui.insert(
                "text".into(),
                json!([format!("{:?}", i.get("value").unwrap())]),
            );
            Ok(Outputs::ui(ui))
        },
    ));
    r.register(NodeDef::new(
        NodeSchema::v1("TestSlow", "testing")
            .input(InputDef::int("steps").default(1000))
            .output(OutputDef::new("INT")),
        |ctx: &Ctx, i: &Inputs| {
            let steps = i.usize("steps")?;
            for s in 0..steps {
                ctx.progress(s + 1, steps)?;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Ok(Outputs::one(Value::Int(steps as i128)))
        },
    ));
    r.register(NodeDef::new(
        NodeSchema::v1("TestFail", "testing")
            .input(InputDef::int("code").default(1))
            .output(OutputDef::new("INT")),
        |_: &Ctx, i: &Inputs| {
            Err(NodeError::Value(format!(
                "deliberate failure {}",
                i.int("code")?
            )))
        },
    ));
    r
}

struct Harness {
    engine: Engine,
    env: Env,
    dir: tempfile::TempDir,
}

impl Harness {
    fn new(policy: CachePolicy) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::under(dir.path());
        Self {
            engine: Engine::new(Arc::new(registry()), policy),
            env,
            dir,
        }
    }

    fn run(&mut self, prompt: Json) -> (ExecutionResult, Vec<Event>) {
        let validated = self
            .engine
            .validate(&self.env, &prompt, None)
            .unwrap_or_else(|e| panic!("{}", e.to_json()));
        let sink = Collect::default();
        let extra = json!({"extra_pnginfo": {"workflow": {"nodes": []}}});
        let job = Job {
            prompt_id: "p1",
            prompt: &validated.prompt,
            outputs: &validated.outputs,
            extra_data: &extra,
            env: &self.env,
        };
        let result = self.engine.execute(&job, &sink);
        (result, sink.0.into_inner())
    }

    fn output_files(&self) -> usize {
        std::fs::read_dir(&self.env.dirs.output)
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

fn two_branches(color_b: i64) -> Json {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "a"}},
        "4": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": color_b}},
        "5": {"class_type": "ImageInvert", "inputs": {"image": ["4", 0]}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "b"}}
    })
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn runs_in_dependency_order_and_saves_outputs() {
    let mut h = Harness::new(CachePolicy::default());
    let (result, events) = h.run(two_branches(0));
    assert_eq!(result.outcome, Outcome::Success);
    assert_eq!(
        sorted(result.executed.clone()),
        ["1", "2", "3", "4", "5", "6"]
    );
    for (i, id) in result.executed.iter().enumerate() {
        let upstream = match id.as_str() {
            "2" => "1",
            "3" => "2",
            "5" => "4",
            "6" => "5",
            _ => continue,
        };
        let pos = result.executed.iter().position(|x| x == upstream).unwrap();
        assert!(
            pos < i,
            "{upstream} must run before {id}: {:?}",
            result.executed
        );
    }
    assert_eq!(h.output_files(), 2);
    assert_eq!(
        result.outputs["3"],
        json!({"images": [{"filename": "a_00001_.png", "subfolder": "", "type": "output"}]})
    );
    let names: Vec<&str> = events.iter().map(Event::name).collect();
    assert_eq!(names.first(), Some(&"execution_start"));
    assert_eq!(names[1], "execution_cached");
    assert_eq!(names.last(), Some(&"execution_success"));
    assert_eq!(names.iter().filter(|n| **n == "executing").count(), 6);
    assert_eq!(names.iter().filter(|n| **n == "executed").count(), 2);
    let statuses: Vec<&str> = result.messages.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        statuses,
        ["execution_start", "execution_cached", "execution_success"]
    );
}

#[test]
fn changing_one_input_reruns_only_its_branch() {
    let mut h = Harness::new(CachePolicy::default());
    h.run(two_branches(0));
    let (result, events) = h.run(two_branches(0xff0000));
    assert_eq!(result.outcome, Outcome::Success);
    assert_eq!(
        sorted(result.executed.clone()),
        ["4", "5", "6"],
        "only the changed branch runs"
    );
    assert_eq!(sorted(result.cached.clone()), ["1", "2", "3"]);
    // The cached output node replays its UI: an `executed` event and a history output.
    let replayed = events
        .iter()
        .any(|e| matches!(e, Event::Executed { node, .. } if node == "3"));
    assert!(replayed);
    assert_eq!(result.outputs["3"]["images"][0]["filename"], "a_00001_.png");
    assert_eq!(
        h.output_files(),
        3,
        "the cached SaveImage did not write again"
    );
}

#[test]
fn identical_prompt_runs_nothing() {
    let mut h = Harness::new(CachePolicy::default());
    h.run(two_branches(0));
    let (result, events) = h.run(two_branches(0));
    assert!(result.executed.is_empty());
    assert_eq!(result.cached.len(), 6);
    let cached = events.iter().find_map(|e| match e {
        Event::ExecutionCached { nodes, .. } => Some(nodes.clone()),
        _ => None,
    });
    assert_eq!(
        cached.map(sorted),
        Some(
            vec!["1", "2", "3", "4", "5", "6"]
                .into_iter()
                .map(String::from)
                .collect()
        )
    );
    assert_eq!(result.outputs.len(), 2, "both outputs replayed");
}

#[test]
fn bounded_cache_evicts_and_reruns() {
    let mut h = Harness::new(CachePolicy {
        max_entries: 2,
        max_bytes: usize::MAX,
    });
    h.run(two_branches(0));
    let (result, _) = h.run(two_branches(0));
    assert!(
        !result.executed.is_empty(),
        "with two entries the six-node prompt cannot be fully cached"
    );
    let mut none = Harness::new(CachePolicy {
        max_entries: 0,
        max_bytes: 0,
    });
    none.run(two_branches(0));
    let (result, _) = none.run(two_branches(0));
    assert_eq!(result.executed.len(), 6);
}

#[test]
fn list_outputs_map_over_consumers_and_input_is_list_gets_the_whole_list() {
    let mut h = Harness::new(CachePolicy::default());
    let prompt = json!({
        "1": {"class_type": "TestRange", "inputs": {"count": 4}},
        "2": {"class_type": "TestDouble", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "TestShow", "inputs": {"value": ["2", 0]}},
        "4": {"class_type": "TestSum", "inputs": {"values": ["2", 0]}},
        "5": {"class_type": "TestShow", "inputs": {"value": ["4", 0]}}
    });
    let (result, _) = h.run(prompt);
    assert_eq!(result.outcome, Outcome::Success);
    assert_eq!(
        result.outputs["3"],
        json!({"text": ["0", "2", "4", "6"]}),
        "one call per list element, UI lists merged"
    );
    assert_eq!(
        result.outputs["5"],
        json!({"text": ["12"]}),
        "INPUT_IS_LIST sums the whole list"
    );
}

#[test]
fn node_errors_produce_execution_error() {
    let mut h = Harness::new(CachePolicy::default());
    let prompt = json!({
        "1": {"class_type": "TestRange", "inputs": {"count": 2}},
        "2": {"class_type": "TestShow", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "TestFail", "inputs": {"code": 7}},
        "4": {"class_type": "TestShow", "inputs": {"value": ["3", 0]}}
    });
    let (result, events) = h.run(prompt);
    assert_eq!(result.outcome, Outcome::Error);
    let error = result.error().expect("execution_error recorded").clone();
    assert_eq!(error["node_id"], "3");
    assert_eq!(error["node_type"], "TestFail");
    assert_eq!(error["exception_message"], "deliberate failure 7");
    assert_eq!(error["exception_type"], "ValueError");
    assert_eq!(error["current_inputs"], json!({"code": [7]}));
    assert!(error["traceback"].as_array().is_some_and(|t| !t.is_empty()));
    assert!(error["timestamp"].is_i64());
    assert!(!events.iter().any(|e| e.name() == "execution_success"));
    assert_eq!(
        result.messages.last().map(|(k, _)| k.as_str()),
        Some("execution_error")
    );
}

#[test]
fn interruption_inside_a_node_stops_the_prompt() {
    let mut h = Harness::new(CachePolicy::default());
    let interrupt = h.engine.interrupt_handle();
    let started = Arc::new(AtomicUsize::new(0));
    let flag = started.clone();
    let watcher = std::thread::spawn(move || {
        while flag.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::thread::sleep(std::time::Duration::from_millis(30));
        interrupt.trigger();
    });
    started.store(1, Ordering::SeqCst);
    let prompt = json!({
        "1": {"class_type": "TestSlow", "inputs": {"steps": 2000}},
        "2": {"class_type": "TestShow", "inputs": {"value": ["1", 0]}}
    });
    let t0 = std::time::Instant::now();
    let (result, events) = h.run(prompt);
    watcher.join().unwrap();
    assert_eq!(result.outcome, Outcome::Interrupted);
    assert!(
        t0.elapsed().as_secs() < 5,
        "interrupted long before the node's 10 s of work"
    );
    let data = result
        .messages
        .iter()
        .find(|(k, _)| k == "execution_interrupted")
        .map(|(_, d)| d.clone())
        .unwrap();
    assert_eq!(data["node_id"], "1");
    assert_eq!(data["node_type"], "TestSlow");
    assert!(events.iter().any(|e| e.name() == "progress"));
    // The flag is reset for the next prompt, which then completes.
    let (next, _) = h.run(json!({"1": {"class_type": "TestSlow", "inputs": {"steps": 2}}, "2": {"class_type": "TestShow", "inputs": {"value": ["1", 0]}}}));
    assert_eq!(next.outcome, Outcome::Success);
}

#[test]
fn progress_events_carry_the_node_and_prompt() {
    let mut h = Harness::new(CachePolicy::default());
    let (_, events) = h.run(json!({"1": {"class_type": "TestSlow", "inputs": {"steps": 3}}, "2": {"class_type": "TestShow", "inputs": {"value": ["1", 0]}}}));
    let progress: Vec<Json> = events
        .iter()
        .filter(|e| e.name() == "progress")
        .filter_map(Event::data)
        .collect();
    assert_eq!(progress.len(), 3);
    assert_eq!(
        progress[2],
        json!({"value": 3.0, "max": 3.0, "prompt_id": "p1", "node": "1"})
    );
    let state = events
        .iter()
        .rev()
        .find(|e| e.name() == "progress_state")
        .and_then(Event::data)
        .unwrap();
    assert_eq!(state["nodes"]["1"]["state"], "finished");
}

#[test]
fn output_nodes_run_as_soon_as_they_are_ready() {
    let mut h = Harness::new(CachePolicy::default());
    let (result, _) = h.run(two_branches(0));
    // ComfyUI's pick prefers output nodes and their direct inputs, so one branch finishes
    // (its SaveImage runs) before the other branch's nodes all run.
    let first_save = result
        .executed
        .iter()
        .position(|id| id == "3" || id == "6")
        .unwrap();
    assert!(first_save < 5, "{:?}", result.executed);
    drop(h.dir);
}
