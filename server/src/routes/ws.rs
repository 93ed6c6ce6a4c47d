//! `/ws?clientId=`: ComfyUI's WebSocket. On connect: `status` with the `sid`; the client's first
//! message may be `feature_flags` (answered with ours); then job events for this user/client and
//! queue status updates flow out.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Extension;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use queue::JobState;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::auth::Scope;
use crate::hub::{Socket, status_message};
use crate::limits::refusal;
use crate::state::AppState;

/// Messages a slow socket may have queued before new ones are dropped.
const SOCKET_BUFFER: usize = 512;

/// The upgrade handler.
pub async fn handler(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Query(params): Query<HashMap<String, String>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let max = state.config.user_limits.max_sockets_per_user;
    if !scope.admin && max > 0 {
        let open = state
            .hub
            .sockets()
            .iter()
            .filter(|s| s.user == scope.user)
            .count();
        if open >= max {
            tracing::info!(user = %scope.user, open, "websocket refused: too many connections");
            let details = format!(
                "You have {open} WebSocket connections open; this server allows {max} per user (close other tabs)"
            );
            return refusal(
                StatusCode::TOO_MANY_REQUESTS,
                "limit_exceeded",
                "Too many connections",
                &details,
                json!({"open": open, "limit": max}),
            )
            .into_response();
        }
    }
    let sid = params
        .get("clientId")
        .filter(|s| !s.is_empty() && s.len() <= 128)
        .cloned()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    upgrade
        .max_message_size(1 << 20)
        .on_upgrade(move |socket| run(state, scope, sid, socket))
}

/// ComfyUI's reconnect help: if this client's prompt is running, `executing {"node"}` (no
/// prompt id) tells the frontend which node to highlight again.
async fn replay_executing(state: &AppState, scope: &Scope, sid: &str, tx: &mpsc::Sender<Message>) {
    for (job_id, node) in state.hub.executing_for(&scope.user, sid) {
        let running = matches!(
            state.config.backend.get(&job_id).await,
            Ok(Some(job)) if job.state == JobState::Running
        );
        if !running {
            state.hub.forget_executing(&job_id);
            continue;
        }
        let message = json!({"type": "executing", "data": {"node": node}});
        let _ = tx.send(Message::Text(message.to_string().into())).await;
    }
}

/// A client's text message, as ComfyUI reads them: only the first message matters, and only when
/// it is `{"type": "feature_flags", "data": {...}}`; the answer is whether the client supports
/// preview metadata (`data.supports_preview_metadata == true`). Anything else is ignored (`None`).
pub fn feature_flags_request(text: &str, first: bool) -> Option<bool> {
    client_flags(text, first).map(|flags| flags.preview_metadata)
}

/// What a client's `feature_flags` message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientFlags {
    /// `supports_preview_metadata`: binary previews with metadata.
    pub preview_metadata: bool,
    /// `comfyrs_eta`: `comfyrs.eta` messages (our extension; the ComfyUI frontend does not ask
    /// for them and gets the estimates only inside `status` messages).
    pub eta_messages: bool,
}

/// The flags of a client's first message when it is `feature_flags` (see
/// [`feature_flags_request`]).
pub fn client_flags(text: &str, first: bool) -> Option<ClientFlags> {
    if !first {
        return None;
    }
    let parsed: Value = serde_json::from_str(text).ok()?;
    if parsed["type"].as_str() != Some("feature_flags") {
        return None;
    }
    Some(ClientFlags {
        preview_metadata: parsed["data"]["supports_preview_metadata"] == true,
        eta_messages: parsed["data"]["comfyrs_eta"] == true,
    })
}

async fn run(state: Arc<AppState>, scope: Scope, sid: String, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Message>(SOCKET_BUFFER);
    let conn = state.hub.next_conn();
    let preview_metadata = Arc::new(AtomicBool::new(false));
    let eta_messages = Arc::new(AtomicBool::new(false));
    state.hub.add(Socket {
        conn,
        sid: sid.clone(),
        user: scope.user.clone(),
        admin: scope.admin,
        preview_metadata: preview_metadata.clone(),
        eta_messages: eta_messages.clone(),
        tx: tx.clone(),
    });
    let remaining = super::prompt::queue_remaining(&state, &scope)
        .await
        .unwrap_or(0);
    let _ = tx.send(status_message(remaining, Some(&sid))).await;
    replay_executing(&state, &scope, &sid, &tx).await;
    let writer = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            if sink.send(message).await.is_err() {
                break;
            }
        }
    });
    let mut first = true;
    while let Some(Ok(message)) = stream.next().await {
        match message {
            Message::Text(text) => {
                if let Some(flags) = client_flags(&text, first) {
                    preview_metadata.store(flags.preview_metadata, Ordering::Relaxed);
                    eta_messages.store(flags.eta_messages, Ordering::Relaxed);
                    if flags.eta_messages {
                        // The estimates now, not at the next queue change.
                        let eta_state = state.clone();
                        tokio::spawn(async move { crate::eta::send_status(&eta_state).await });
                    }
                    let reply = json!({"type": "feature_flags", "data": super::system::feature_flags(&state)});
                    let _ = tx.send(Message::Text(reply.to_string().into())).await;
                }
                first = false;
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    state.hub.remove(conn);
    drop(tx);
    writer.abort();
    tracing::debug!(%sid, user = %scope.user, "socket closed");
}
