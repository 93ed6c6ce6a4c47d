//! `comfyrs run workflow.json`: executes a workflow (API format, a `POST /prompt` body, or the
//! UI format the frontend saves, converted as the frontend would) locally with a progress bar,
//! writes its outputs and prints where they are; on failure prints ComfyUI's error JSON and exits
//! non-zero (2: the prompt was rejected, 1: a node failed, 130: interrupted).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use engine::{Engine, Event, EventSink, Job, Outcome};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::settings::{CacheArgs, PathArgs};

/// `comfyrs run` arguments.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// An API-format workflow (`{"<id>": {"class_type", "inputs"}}`), a `POST /prompt` body, or
    /// a UI-format workflow (as saved by the ComfyUI frontend).
    pub workflow: PathBuf,
    /// Print the result (prompt id, outputs, status messages) as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Device to run on (`cpu`, `cuda`, `cuda:N`; GPUs need a `--features cuda` build).
    #[arg(long, env = "COMFYRS_DEVICE", default_value = "cpu")]
    pub device: String,
    #[command(flatten)]
    pub paths: PathArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
}

/// What a workflow file holds.
enum WorkflowDoc {
    /// An API prompt and its extra_data.
    Api { prompt: Value, extra_data: Value },
    /// A UI-format workflow (what the frontend saves).
    Ui(Value),
}

/// Reads a workflow file: an API prompt, a `POST /prompt` body, or a UI-format workflow.
fn read_workflow(path: &PathBuf) -> anyhow::Result<WorkflowDoc> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    if engine::ui_workflow::is_ui_workflow(&doc) {
        return Ok(WorkflowDoc::Ui(doc));
    }
    match doc.get("prompt") {
        Some(prompt) if prompt.is_object() => {
            let extra_data = doc.get("extra_data").cloned().unwrap_or_else(|| json!({}));
            Ok(WorkflowDoc::Api {
                prompt: prompt.clone(),
                extra_data,
            })
        }
        _ => Ok(WorkflowDoc::Api {
            prompt: doc,
            extra_data: json!({}),
        }),
    }
}

/// The API prompt and extra_data to run: a UI workflow is converted as the frontend's
/// `graphToPrompt` does and travels along as `extra_pnginfo.workflow`, as the frontend sends it.
fn prompt_of(
    doc: WorkflowDoc,
    registry: &nodes::Registry,
    env: &nodes::Env,
) -> anyhow::Result<(Value, Value)> {
    match doc {
        WorkflowDoc::Api { prompt, extra_data } => Ok((prompt, extra_data)),
        WorkflowDoc::Ui(workflow) => {
            let prompt = engine::ui_workflow::to_api_prompt_with_registry(&workflow, registry, env)
                .context("converting the UI workflow to an API prompt")?;
            tracing::info!(nodes = prompt.len(), "converted the UI workflow");
            Ok((
                Value::Object(prompt),
                json!({"extra_pnginfo": {"workflow": workflow}}),
            ))
        }
    }
}

/// The API prompt and extra_data of a workflow file (API prompt, `POST /prompt` body or UI
/// workflow, converted with `registry`).
pub fn load_prompt(
    path: &PathBuf,
    registry: &nodes::Registry,
    env: &nodes::Env,
) -> anyhow::Result<(Value, Value)> {
    prompt_of(read_workflow(path)?, registry, env)
        .with_context(|| format!("reading the workflow {}", path.display()))
}

/// Draws the progress of a running prompt.
struct Progress {
    bar: ProgressBar,
    classes: serde_json::Map<String, Value>,
}

impl Progress {
    fn class_of(&self, node: &str) -> String {
        self.classes
            .get(node)
            .and_then(|n| n["class_type"].as_str())
            .unwrap_or("?")
            .to_string()
    }
}

impl EventSink for Progress {
    fn emit(&self, event: Event) {
        match &event {
            Event::Executing {
                node: Some(node), ..
            } => {
                self.bar.set_length(1);
                self.bar.set_position(0);
                self.bar
                    .set_message(format!("{} (#{node})", self.class_of(node)));
            }
            Event::Progress { value, max, .. } => {
                self.bar.set_length(*max as u64);
                self.bar.set_position(*value as u64);
            }
            Event::Executed { node, .. } => self
                .bar
                .println(format!("done: {} (#{node})", self.class_of(node))),
            _ => {}
        }
    }
}

/// Runs the subcommand.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let doc = read_workflow(&args.workflow)?;
    let mut env = args.paths.env()?;
    env.device = crate::settings::open_device(&args.device)?;
    let registry = Arc::new(nodes::builtin_registry());
    let (prompt, extra_data) = match prompt_of(doc, &registry, &env) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    let mut engine = Engine::new(registry, args.cache.policy());
    let validated = match engine.validate(&env, &prompt, None) {
        Ok(v) => v,
        Err(e) => {
            println!("{}", serde_json::to_string_pretty(&e.to_json())?);
            eprintln!("error: the prompt was rejected: {}", e.error.message);
            return Ok(ExitCode::from(2));
        }
    };
    if !validated.node_errors.is_empty() {
        eprintln!(
            "warning: some outputs failed validation and are skipped: {}",
            Value::Object(validated.node_errors.clone())
        );
    }
    let interrupt = engine.interrupt_handle();
    ctrlc::set_handler(move || {
        eprintln!("interrupting...");
        interrupt.trigger();
    })
    .context("installing the Ctrl-C handler")?;
    let bar = ProgressBar::new(1);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let progress = Progress {
        bar,
        classes: validated
            .prompt
            .json
            .as_object()
            .cloned()
            .unwrap_or_default(),
    };
    let prompt_id = uuid::Uuid::new_v4().to_string();
    let job = Job {
        prompt_id: &prompt_id,
        prompt: &validated.prompt,
        outputs: &validated.outputs,
        extra_data: &extra_data,
        env: &env,
    };
    let result = engine.execute(&job, &progress);
    progress.bar.finish_and_clear();
    if args.json {
        let messages: Vec<Value> = result.messages.iter().map(|(k, v)| json!([k, v])).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"prompt_id": prompt_id, "outputs": result.outputs, "messages": messages})
            )?
        );
    }
    match result.outcome {
        Outcome::Success => {
            print_files(&env, &result.outputs);
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Error => {
            let error = result.error().cloned().unwrap_or(Value::Null);
            if !args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"execution_error": error}))?
                );
            }
            eprintln!(
                "error: node {} ({}) failed: {}",
                error["node_id"], error["node_type"], error["exception_message"]
            );
            Ok(ExitCode::from(1))
        }
        Outcome::Interrupted => {
            eprintln!("interrupted");
            Ok(ExitCode::from(130))
        }
    }
}

/// Prints the path of every file the outputs name.
fn print_files(env: &nodes::Env, outputs: &serde_json::Map<String, Value>) {
    for (node, ui) in outputs {
        let Some(map) = ui.as_object() else { continue };
        for items in map.values().filter_map(Value::as_array) {
            for item in items {
                let (Some(name), Some(kind)) = (item["filename"].as_str(), item["type"].as_str())
                else {
                    continue;
                };
                let Some(base) = env.dirs.for_type(kind) else {
                    continue;
                };
                let path = base
                    .join(item["subfolder"].as_str().unwrap_or(""))
                    .join(name);
                eprintln!("output of node {node}: {}", path.display());
                println!("{}", path.display());
            }
        }
    }
}
