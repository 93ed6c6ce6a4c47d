//! The execution event stream, in ComfyUI's WebSocket message shapes. The server relays these
//! to the submitting user's sockets; the CLI draws a progress bar from them.

use serde_json::{Map, Value as Json, json};

/// Milliseconds since the Unix epoch (ComfyUI's integer timestamps).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One event of a prompt's execution.
#[derive(Debug, Clone)]
pub enum Event {
    /// `execution_start`.
    ExecutionStart {
        /// The prompt.
        prompt_id: String,
        /// ms.
        timestamp: i64,
    },
    /// `execution_cached`: prompt nodes whose outputs came from the cache.
    ExecutionCached {
        /// The prompt.
        prompt_id: String,
        /// Cached node ids.
        nodes: Vec<String>,
        /// ms.
        timestamp: i64,
    },
    /// `executing`: the node now running.
    Executing {
        /// The prompt.
        prompt_id: String,
        /// The node (`None` = the prompt is done; sent by the queue, not the executor).
        node: Option<String>,
    },
    /// `progress`: step `value` of `max` of a node.
    Progress {
        /// The prompt.
        prompt_id: String,
        /// The node.
        node: String,
        /// Steps done.
        value: f64,
        /// Total steps.
        max: f64,
    },
    /// `progress_state`: the state of every started node.
    ProgressState {
        /// The prompt.
        prompt_id: String,
        /// `{node: {value, max, state, node_id, prompt_id, display_node_id, parent_node_id, real_node_id}}`.
        nodes: Map<String, Json>,
    },
    /// `progress_text` (binary frame type 3 on the wire).
    ProgressText {
        /// The prompt.
        prompt_id: String,
        /// The node.
        node: String,
        /// The text.
        text: String,
    },
    /// A preview image (binary frame type 1 or 4 on the wire).
    Preview {
        /// The prompt.
        prompt_id: String,
        /// The node.
        node: String,
        /// `image/png` or `image/jpeg`.
        mime: &'static str,
        /// The encoded image.
        bytes: Vec<u8>,
    },
    /// `executed`: a node's UI output.
    Executed {
        /// The prompt.
        prompt_id: String,
        /// The node.
        node: String,
        /// Its UI dict (or null for cached nodes without one).
        output: Json,
    },
    /// `execution_success`.
    ExecutionSuccess {
        /// The prompt.
        prompt_id: String,
        /// ms.
        timestamp: i64,
    },
    /// `execution_error` (payload in ComfyUI's shape).
    ExecutionError(Json),
    /// `execution_interrupted` (payload in ComfyUI's shape).
    ExecutionInterrupted(Json),
}

impl Event {
    /// The message `type`.
    pub fn name(&self) -> &'static str {
        match self {
            Event::ExecutionStart { .. } => "execution_start",
            Event::ExecutionCached { .. } => "execution_cached",
            Event::Executing { .. } => "executing",
            Event::Progress { .. } => "progress",
            Event::ProgressState { .. } => "progress_state",
            Event::ProgressText { .. } => "progress_text",
            Event::Preview { .. } => "preview",
            Event::Executed { .. } => "executed",
            Event::ExecutionSuccess { .. } => "execution_success",
            Event::ExecutionError(_) => "execution_error",
            Event::ExecutionInterrupted(_) => "execution_interrupted",
        }
    }

    /// The prompt this event belongs to.
    pub fn prompt_id(&self) -> Option<&str> {
        match self {
            Event::ExecutionStart { prompt_id, .. }
            | Event::ExecutionCached { prompt_id, .. }
            | Event::Executing { prompt_id, .. }
            | Event::Progress { prompt_id, .. }
            | Event::ProgressState { prompt_id, .. }
            | Event::ProgressText { prompt_id, .. }
            | Event::Preview { prompt_id, .. }
            | Event::Executed { prompt_id, .. }
            | Event::ExecutionSuccess { prompt_id, .. } => Some(prompt_id),
            Event::ExecutionError(d) | Event::ExecutionInterrupted(d) => d["prompt_id"].as_str(),
        }
    }

    /// The JSON `data` of the message; `None` for binary events (previews, progress text).
    pub fn data(&self) -> Option<Json> {
        Some(match self {
            Event::ExecutionStart {
                prompt_id,
                timestamp,
            } => json!({"prompt_id": prompt_id, "timestamp": timestamp}),
            Event::ExecutionCached {
                prompt_id,
                nodes,
                timestamp,
            } => {
                json!({"nodes": nodes, "prompt_id": prompt_id, "timestamp": timestamp})
            }
            Event::Executing { prompt_id, node } => {
                json!({"node": node, "display_node": node, "prompt_id": prompt_id})
            }
            Event::Progress {
                prompt_id,
                node,
                value,
                max,
            } => {
                json!({"value": value, "max": max, "prompt_id": prompt_id, "node": node})
            }
            Event::ProgressState { prompt_id, nodes } => {
                json!({"prompt_id": prompt_id, "nodes": nodes})
            }
            Event::Executed {
                prompt_id,
                node,
                output,
            } => {
                json!({"node": node, "display_node": node, "output": output, "prompt_id": prompt_id})
            }
            Event::ExecutionSuccess {
                prompt_id,
                timestamp,
            } => json!({"prompt_id": prompt_id, "timestamp": timestamp}),
            Event::ExecutionError(d) | Event::ExecutionInterrupted(d) => d.clone(),
            Event::ProgressText { .. } | Event::Preview { .. } => return None,
        })
    }

    /// The whole JSON message `{"type", "data"}` for text events.
    pub fn to_message(&self) -> Option<Json> {
        self.data()
            .map(|data| json!({"type": self.name(), "data": data}))
    }

    /// Whether ComfyUI records this event in the history entry's `status.messages`.
    pub fn is_lifecycle(&self) -> bool {
        matches!(
            self,
            Event::ExecutionStart { .. }
                | Event::ExecutionCached { .. }
                | Event::ExecutionSuccess { .. }
                | Event::ExecutionError(_)
                | Event::ExecutionInterrupted(_)
        )
    }
}

/// Receives events as they happen.
pub trait EventSink: Sync {
    /// Called for each event, in order.
    fn emit(&self, event: Event);
}

/// Collects events into a vector (tests, batch tools).
#[derive(Default)]
pub struct Collect(pub parking_lot::Mutex<Vec<Event>>);

impl EventSink for Collect {
    fn emit(&self, event: Event) {
        self.0.lock().push(event);
    }
}

/// Discards events.
pub struct Discard;

impl EventSink for Discard {
    fn emit(&self, _: Event) {}
}
