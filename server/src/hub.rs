//! Connected WebSockets and the routing of job events to them. Events of a job reach only the
//! sockets of the user who queued it (and, as in ComfyUI, only the submitting client's socket
//! when the prompt named one); queue status goes to every socket with that socket's own counts.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::ws::Message;
use parking_lot::RwLock;
use queue::{EventMessage, JobEvent};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// One connected socket.
#[derive(Clone)]
pub struct Socket {
    /// Connection id (unique per connection, several may share a sid).
    pub conn: u64,
    /// The client id (`sid`).
    pub sid: String,
    /// The workspace user the socket belongs to.
    pub user: String,
    /// Whether the socket's actor is an admin.
    pub admin: bool,
    /// Whether the client negotiated `supports_preview_metadata` (binary type 4 previews).
    pub preview_metadata: Arc<std::sync::atomic::AtomicBool>,
    /// Whether the client asked for `comfyrs.eta` messages (`feature_flags` with
    /// `comfyrs_eta: true`); every client gets the estimates inside `status` messages.
    pub eta_messages: Arc<std::sync::atomic::AtomicBool>,
    /// Outgoing messages.
    pub tx: mpsc::Sender<Message>,
}

/// The node a running prompt is executing, for the on-connect replay.
#[derive(Debug, Clone)]
struct Executing {
    user: String,
    client_id: String,
    node: Value,
}

/// The registry of sockets.
#[derive(Default)]
pub struct Hub {
    sockets: RwLock<HashMap<u64, Socket>>,
    next: AtomicU64,
    /// Per running job with a client: the node of its last `executing` message.
    executing: RwLock<HashMap<String, Executing>>,
}

impl Hub {
    /// A fresh connection id.
    pub fn next_conn(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Registers a socket.
    pub fn add(&self, socket: Socket) {
        self.sockets.write().insert(socket.conn, socket);
    }

    /// Removes exactly this connection (a newer socket with the same sid stays).
    pub fn remove(&self, conn: u64) {
        self.sockets.write().remove(&conn);
    }

    /// The sockets currently connected.
    pub fn sockets(&self) -> Vec<Socket> {
        self.sockets.read().values().cloned().collect()
    }

    /// Number of sockets.
    pub fn len(&self) -> usize {
        self.sockets.read().len()
    }

    /// Whether no socket is connected.
    pub fn is_empty(&self) -> bool {
        self.sockets.read().is_empty()
    }

    /// Sends a job event to the sockets allowed to see it: the submitting client's socket, or,
    /// for a prompt queued without a client id, every socket of the user but only the messages
    /// ComfyUI broadcasts then (progress, progress_state, previews, execution_interrupted).
    pub fn route(&self, event: &JobEvent) {
        self.track_executing(event);
        let client = event.client_id.as_deref().filter(|sid| !sid.is_empty());
        if client.is_none() && !sent_without_client(&event.message) {
            return;
        }
        let targets: Vec<Socket> = self
            .sockets
            .read()
            .values()
            .filter(|s| s.user == event.user)
            .filter(|s| client.is_none_or(|sid| s.sid == sid))
            .cloned()
            .collect();
        for socket in targets {
            if let Some(message) = encode(event, socket.preview_metadata.load(Ordering::Relaxed)) {
                // A slow client loses messages rather than stalling everyone.
                let _ = socket.tx.try_send(message);
            }
        }
    }
}

impl Hub {
    /// Remembers the node each prompt with a client is executing (`executing` with a node),
    /// and forgets the prompt when it is done (`executing` with `node: null`).
    fn track_executing(&self, event: &JobEvent) {
        let EventMessage::Json { kind, data } = &event.message else {
            return;
        };
        if kind != "executing" {
            return;
        }
        let Some(client_id) = event.client_id.as_ref().filter(|c| !c.is_empty()) else {
            return;
        };
        let mut map = self.executing.write();
        if data["node"].is_null() {
            map.remove(&event.job_id);
        } else {
            map.insert(
                event.job_id.clone(),
                Executing {
                    user: event.user.clone(),
                    client_id: client_id.clone(),
                    node: data["node"].clone(),
                },
            );
        }
    }

    /// The prompts `sid` of `user` submitted that are executing a node, with that node: what
    /// ComfyUI replays to a (re)connecting socket as `executing {"node"}`.
    pub fn executing_for(&self, user: &str, sid: &str) -> Vec<(String, Value)> {
        self.executing
            .read()
            .iter()
            .filter(|(_, e)| e.user == user && e.client_id == sid)
            .map(|(job, e)| (job.clone(), e.node.clone()))
            .collect()
    }

    /// Forgets a prompt's executing node (it is no longer running).
    pub fn forget_executing(&self, job_id: &str) {
        self.executing.write().remove(job_id);
    }
}

/// Whether ComfyUI sends this message of a prompt that has no `client_id` (its `add_message`
/// and `executing`/`executed` are skipped then; progress and previews go to everyone).
fn sent_without_client(message: &EventMessage) -> bool {
    match message {
        EventMessage::Json { kind, .. } => matches!(
            kind.as_str(),
            "progress" | "progress_state" | "execution_interrupted"
        ),
        EventMessage::Preview { .. } | EventMessage::Text { .. } => true,
    }
}

/// The wire message for an event on a socket.
pub fn encode(event: &JobEvent, preview_metadata: bool) -> Option<Message> {
    match &event.message {
        EventMessage::Json { kind, data } => Some(Message::Text(
            json!({"type": kind, "data": data}).to_string().into(),
        )),
        EventMessage::Preview { node, mime, bytes } => {
            let mut frame = Vec::with_capacity(bytes.len() + 256);
            if preview_metadata {
                let meta = json!({"node_id": node, "prompt_id": event.job_id, "display_node_id": node,
                                  "parent_node_id": null, "real_node_id": node, "image_type": mime});
                let meta = meta.to_string();
                frame.extend_from_slice(&4u32.to_be_bytes());
                frame.extend_from_slice(&(meta.len() as u32).to_be_bytes());
                frame.extend_from_slice(meta.as_bytes());
            } else {
                let format: u32 = if mime == "image/png" { 2 } else { 1 };
                frame.extend_from_slice(&1u32.to_be_bytes());
                frame.extend_from_slice(&format.to_be_bytes());
            }
            frame.extend_from_slice(bytes);
            Some(Message::Binary(frame.into()))
        }
        EventMessage::Text { node, text } => {
            let mut frame = Vec::new();
            frame.extend_from_slice(&3u32.to_be_bytes());
            frame.extend_from_slice(&(node.len() as u32).to_be_bytes());
            frame.extend_from_slice(node.as_bytes());
            frame.extend_from_slice(text.as_bytes());
            Some(Message::Binary(frame.into()))
        }
    }
}

/// A `status` message with a queue count (and the sid on connect).
pub fn status_message(queue_remaining: usize, sid: Option<&str>) -> Message {
    status_message_with_eta(queue_remaining, sid, None)
}

/// A `status` message whose `exec_info` also carries `comfyrs_eta` (the user's pending jobs'
/// estimates): an extra field the ComfyUI frontend ignores, unlike an unknown message type.
pub fn status_message_with_eta(
    queue_remaining: usize,
    sid: Option<&str>,
    eta: Option<Value>,
) -> Message {
    let mut data = json!({"status": {"exec_info": {"queue_remaining": queue_remaining}}});
    if let Some(eta) = eta {
        data["status"]["exec_info"]["comfyrs_eta"] = eta;
    }
    if let Some(sid) = sid {
        data["sid"] = Value::from(sid);
    }
    Message::Text(json!({"type": "status", "data": data}).to_string().into())
}
