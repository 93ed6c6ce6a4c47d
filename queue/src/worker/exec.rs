//! Running one job on the engine (blocking) and the ComfyUI messages a run produces.

use engine::{Engine, Event, EventSink, Job as EngineJob, Outcome as EngineOutcome};
use serde_json::{Value as Json, json};
use tokio::sync::mpsc;

use crate::job::{EventMessage, Job, JobEvent, JobResult, Outcome};
use crate::now_ms;

/// Sends engine events into a channel (the engine runs on a blocking thread).
pub(super) struct ChannelSink {
    pub tx: mpsc::UnboundedSender<Event>,
}

impl EventSink for ChannelSink {
    fn emit(&self, event: Event) {
        let _ = self.tx.send(event);
    }
}

/// The job event for an engine event.
pub fn job_event(job: &Job, event: &Event) -> JobEvent {
    let message = match event {
        Event::Preview {
            node, mime, bytes, ..
        } => EventMessage::Preview {
            node: node.clone(),
            mime: mime.to_string(),
            bytes: bytes.clone(),
        },
        Event::ProgressText { node, text, .. } => EventMessage::Text {
            node: node.clone(),
            text: text.clone(),
        },
        other => EventMessage::Json {
            kind: other.name().to_string(),
            data: other.data().unwrap_or(Json::Null),
        },
    };
    JobEvent {
        job_id: job.id.clone(),
        user: job.user.clone(),
        client_id: job.client_id.clone(),
        message,
    }
}

/// The final `executing {node: null}` message that tells clients the prompt is done.
pub fn done_event(job: &Job) -> JobEvent {
    JobEvent {
        job_id: job.id.clone(),
        user: job.user.clone(),
        client_id: job.client_id.clone(),
        message: EventMessage::Json {
            kind: "executing".into(),
            data: json!({"node": null, "prompt_id": job.id}),
        },
    }
}

/// The model files a prompt's loader nodes name (`ckpt_name`, `lora_name`, `vae_name`, ...):
/// what a worker keeps loaded after running it, while the engine's cache holds the outputs.
pub fn models_in(prompt: &Json) -> Vec<String> {
    let mut models: Vec<String> = prompt
        .as_object()
        .into_iter()
        .flat_map(|nodes| nodes.values())
        .filter(|node| {
            node["class_type"]
                .as_str()
                .is_some_and(|c| c.contains("Loader"))
        })
        .filter_map(|node| node["inputs"].as_object())
        .flat_map(|inputs| inputs.iter())
        .filter(|(name, _)| name.ends_with("_name"))
        .filter_map(|(_, value)| value.as_str().map(str::to_string))
        .collect();
    models.sort();
    models.dedup();
    models
}

/// Validates and runs one job on `engine` (blocking).
pub fn execute(engine: &mut Engine, job: &Job, env: &nodes::Env, sink: &dyn EventSink) -> Outcome {
    let validated = match engine.validate(env, &job.prompt, Some(&job.outputs)) {
        Ok(v) => v,
        Err(e) => {
            let message = format!("{}: {}", e.error.message, e.error.details);
            tracing::warn!(job = %job.id, "the prompt no longer validates on this worker: {message}");
            let error = json!({"prompt_id": job.id, "node_id": "", "node_type": "", "executed": [],
                               "exception_message": message, "exception_type": "ValidationError",
                               "traceback": [], "current_inputs": {}, "current_outputs": [], "timestamp": now_ms()});
            sink.emit(Event::ExecutionError(error.clone()));
            return Outcome::Finished(JobResult {
                status_str: "error".into(),
                completed: false,
                messages: vec![("execution_error".into(), error)],
                ..Default::default()
            });
        }
    };
    let engine_job = EngineJob {
        prompt_id: &job.id,
        prompt: &validated.prompt,
        outputs: &validated.outputs,
        extra_data: &job.extra_data,
        env,
    };
    let result = engine.execute(&engine_job, sink);
    let job_result = JobResult {
        outputs: result.outputs,
        meta: result.meta,
        status_str: if result.outcome == EngineOutcome::Success {
            "success".into()
        } else {
            "error".into()
        },
        completed: result.outcome == EngineOutcome::Success,
        messages: result.messages,
    };
    match result.outcome {
        EngineOutcome::Interrupted => Outcome::Interrupted(job_result),
        _ => Outcome::Finished(job_result),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loader_inputs_name_the_loaded_models() {
        let prompt = json!({
            "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "ltx.safetensors"}},
            "2": {"class_type": "LoraLoader", "inputs": {"lora_name": "a.safetensors", "model": ["1", 0], "strength_model": 1.0}},
            "3": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x_name"}},
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "ltx.safetensors"}},
        });
        assert_eq!(models_in(&prompt), ["a.safetensors", "ltx.safetensors"]);
    }
}
