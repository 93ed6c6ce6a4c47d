//! `/ws?clientId=`: ComfyUI's WebSocket. On connect: `status` with the `sid`; the client's first
//! message may be `feature_flags` (answered with ours); then job events for this user/client and
//! queue status updates flow out.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Extension;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::auth::Scope;
use crate::hub::{Socket, status_message};
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
    let sid = params
        .get("clientId")
        .filter(|s| !s.is_empty() && s.len() <= 128)
        .cloned()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    upgrade
        .max_message_size(1 << 20)
        .on_upgrade(move |socket| run(state, scope, sid, socket))
}

async fn run(state: Arc<AppState>, scope: Scope, sid: String, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Message>(SOCKET_BUFFER);
    let conn = state.hub.next_conn();
    let preview_metadata = Arc::new(AtomicBool::new(false));
    state.hub.add(Socket {
        conn,
        sid: sid.clone(),
        user: scope.user.clone(),
        admin: scope.admin,
        preview_metadata: preview_metadata.clone(),
        tx: tx.clone(),
    });
    let remaining = super::prompt::queue_remaining(&state, &scope)
        .await
        .unwrap_or(0);
    let _ = tx.send(status_message(remaining, Some(&sid))).await;
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
                let parsed: Option<Value> = serde_json::from_str(&text).ok();
                if first
                    && parsed.as_ref().and_then(|v| v["type"].as_str()) == Some("feature_flags")
                {
                    let flags = parsed
                        .as_ref()
                        .map(|v| v["data"].clone())
                        .unwrap_or(Value::Null);
                    preview_metadata.store(
                        flags["supports_preview_metadata"] == true,
                        Ordering::Relaxed,
                    );
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
