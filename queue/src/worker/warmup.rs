//! Warm-up: prompts a worker runs once before it reports itself ready, so the models they use
//! are loaded (and their outputs cached) when the first participant's job arrives. A fresh GPU
//! box otherwise spends the first job's minutes reading ~45 GB of weights while the queue counts
//! it as a live worker.
//!
//! Warm-up prompts run in a temporary folder (their files never reach a user's output), share
//! the worker's models and model cache, and must succeed: a worker whose warm-up fails (a
//! missing model, a bad file) stops with the reason instead of joining the queue and failing
//! every job.

use engine::{Engine, Event, EventSink};
use nodes::Env;
use nodes::env::Dirs;
use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::job::{Job, JobResult, JobState, Outcome};
use crate::layout::Layout;

use super::exec::{execute, models_in};

/// One warm-up prompt.
#[derive(Debug, Clone)]
pub struct WarmupPrompt {
    /// Where it came from (a file name), for messages.
    pub name: String,
    /// The API-format prompt.
    pub prompt: Json,
    /// Its `extra_data`.
    pub extra_data: Json,
}

/// Drops every event (progress of a warm-up is logged, not published).
struct Quiet;

impl EventSink for Quiet {
    fn emit(&self, event: Event) {
        if let Event::Progress { value, max, .. } = &event {
            tracing::debug!("warm-up progress {value}/{max}");
        }
    }
}

/// Runs `prompts` on `engine` in a temporary folder (blocking) and returns the model files they
/// loaded. The first failure stops the warm-up with its node's message.
pub fn warm_up(
    engine: &mut Engine,
    layout: &Layout,
    prompts: &[WarmupPrompt],
) -> Result<Vec<String>> {
    let scratch =
        tempfile::tempdir().map_err(|e| Error::Warmup(format!("temporary folder: {e}")))?;
    let env = Env {
        dirs: Dirs::under(scratch.path()),
        ..layout.base.clone()
    };
    for dir in [&env.dirs.input, &env.dirs.output, &env.dirs.temp] {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Warmup(format!("{}: {e}", dir.display())))?;
    }
    let mut models = Vec::new();
    for (index, warm) in prompts.iter().enumerate() {
        let started = std::time::Instant::now();
        let outputs = engine
            .validate(&env, &warm.prompt, None)
            .map_err(|e| {
                Error::Warmup(format!(
                    "{}: the prompt does not validate: {}: {} {}",
                    warm.name,
                    e.error.message,
                    e.error.details,
                    serde_json::to_string(&e.node_errors).unwrap_or_default()
                ))
            })?
            .outputs;
        let job = job_of(index, warm, outputs);
        let failure = match execute(engine, &job, &env, &Quiet) {
            Outcome::Finished(result) if result.completed => None,
            Outcome::Finished(result) => Some(error_message(&result)),
            Outcome::Interrupted(_) => Some("interrupted".to_string()),
        };
        if let Some(message) = failure {
            return Err(Error::Warmup(format!("{}: {message}", warm.name)));
        }
        tracing::info!(prompt = %warm.name, seconds = started.elapsed().as_secs_f64(), "warm-up prompt ran");
        models.extend(models_in(&warm.prompt));
    }
    models.sort();
    models.dedup();
    Ok(models)
}

/// A queue job carrying a warm-up prompt and the output nodes to run.
fn job_of(index: usize, warm: &WarmupPrompt, outputs: Vec<String>) -> Job {
    Job {
        id: format!("warmup-{index}"),
        seq: 0,
        number: serde_json::Number::from(0),
        priority: 0,
        user: String::new(),
        client_id: None,
        prompt: warm.prompt.clone(),
        outputs,
        extra_data: warm.extra_data.clone(),
        state: JobState::Running,
        created_at: 0,
        started_at: None,
        finished_at: None,
        attempts: 1,
        worker: None,
        lease_until: None,
        cancel_requested: false,
        result: None,
        reason: None,
    }
}

/// The node error (or validation error) a failed warm-up prompt reported.
fn error_message(result: &JobResult) -> String {
    result
        .messages
        .iter()
        .find(|(kind, _)| kind == "execution_error")
        .map(|(_, data)| {
            format!(
                "node {} ({}) failed: {}",
                data["node_id"].as_str().unwrap_or("?"),
                data["node_type"].as_str().unwrap_or("?"),
                data["exception_message"]
                    .as_str()
                    .unwrap_or("unknown error")
            )
        })
        .unwrap_or_else(|| "the prompt did not complete".to_string())
}
