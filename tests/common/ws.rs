//! A WebSocket client for `/ws?clientId=` (tokio-tungstenite), with basic authentication for
//! workshop mode. Text frames are parsed as JSON; binary frames keep their bytes.

use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One message from the server.
#[derive(Debug, Clone)]
pub enum Frame {
    /// A JSON text message `{"type", "data"}`.
    Json(Value),
    /// A binary frame.
    Binary(Vec<u8>),
}

impl Frame {
    /// The JSON `type` (or `binary:<n>` with the frame's big-endian type word).
    pub fn kind(&self) -> String {
        match self {
            Frame::Json(v) => v["type"].as_str().unwrap_or("").to_string(),
            Frame::Binary(b) => format!("binary:{}", binary_type(b)),
        }
    }

    /// The JSON message, if any.
    pub fn json(&self) -> Option<&Value> {
        match self {
            Frame::Json(v) => Some(v),
            Frame::Binary(_) => None,
        }
    }
}

/// The type word of a binary frame.
pub fn binary_type(bytes: &[u8]) -> u32 {
    bytes
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0)
}

/// A connected socket.
pub struct WsClient {
    stream: Stream,
}

impl WsClient {
    /// Connects to `ws://<host><path>` (`base` is the server's `http://` URL), optionally with
    /// basic-auth credentials. Panics when the upgrade is refused.
    pub async fn connect(base: &str, path: &str, auth: Option<(&str, &str)>) -> Self {
        Self::try_connect(base, path, auth)
            .await
            .unwrap_or_else(|e| panic!("WebSocket {path}: {e}"))
    }

    /// Connects, returning the handshake error (e.g. `HTTP error: 401`) instead of panicking.
    pub async fn try_connect(
        base: &str,
        path: &str,
        auth: Option<(&str, &str)>,
    ) -> Result<Self, String> {
        let url = format!("{}{path}", base.replacen("http://", "ws://", 1));
        let mut request = url.into_client_request().map_err(|e| e.to_string())?;
        if let Some((user, password)) = auth {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            let value = format!("Basic {token}").parse().map_err(|_| "bad header")?;
            request.headers_mut().insert("authorization", value);
        }
        let (stream, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self { stream })
    }

    /// The next message, or `None` after `timeout` (or when the socket closed).
    pub async fn next(&mut self, timeout: Duration) -> Option<Frame> {
        loop {
            let message = tokio::time::timeout(timeout, self.stream.next())
                .await
                .ok()??
                .ok()?;
            match message {
                Message::Text(text) => {
                    return Some(Frame::Json(
                        serde_json::from_str(&text).expect("server sent invalid JSON"),
                    ));
                }
                Message::Binary(bytes) => return Some(Frame::Binary(bytes.to_vec())),
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// The next JSON message (binary frames are skipped), or `None` after `timeout`.
    pub async fn next_json(&mut self, timeout: Duration) -> Option<Value> {
        loop {
            match self.next(timeout).await? {
                Frame::Json(v) => return Some(v),
                Frame::Binary(_) => continue,
            }
        }
    }

    /// Sends a JSON text message.
    pub async fn send_json(&mut self, value: &Value) {
        self.stream
            .send(Message::Text(value.to_string().into()))
            .await
            .expect("WebSocket send");
    }

    /// Messages up to and including the first one `done` accepts; panics after `timeout`.
    pub async fn until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&Frame) -> bool,
    ) -> Vec<Frame> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(frame) = self.next(left).await else {
                let kinds: Vec<String> = frames.iter().map(Frame::kind).collect();
                panic!("WebSocket: the awaited message did not come; got {kinds:?}");
            };
            let stop = done(&frame);
            frames.push(frame);
            if stop {
                return frames;
            }
        }
    }

    /// Every message that arrives within `window`.
    pub async fn collect_for(&mut self, window: Duration) -> Vec<Frame> {
        let deadline = tokio::time::Instant::now() + window;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return frames;
            }
            match self.next(left).await {
                Some(frame) => frames.push(frame),
                None => return frames,
            }
        }
    }

    /// Every message until the socket has been quiet for `quiet` (a busy socket may never be:
    /// use [`WsClient::collect_for`] while a prompt runs).
    pub async fn drain(&mut self, quiet: Duration) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(frame) = self.next(quiet).await {
            frames.push(frame);
        }
        frames
    }

    /// Closes the socket.
    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}

/// Whether a frame is `executing` with `node: null` for `prompt_id` (the "done" signal).
pub fn is_done(frame: &Frame, prompt_id: &str) -> bool {
    frame.json().is_some_and(|v| {
        v["type"] == "executing"
            && v["data"]["node"].is_null()
            && v["data"]["prompt_id"] == prompt_id
    })
}
