//! A WebSocket client for `/ws?clientId=...` with basic authentication: collects the JSON
//! messages it receives.

use std::time::Duration;

use base64::Engine;
use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::User;

type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A connected socket.
pub struct Socket {
    stream: Stream,
}

impl Socket {
    /// Connects to `http_url`'s `/ws` as `user` with `client_id`.
    pub async fn connect(http_url: &str, user: &User, client_id: &str) -> Self {
        let url = format!(
            "{}/ws?clientId={client_id}",
            http_url.replacen("http://", "ws://", 1)
        );
        let mut request = url.into_client_request().expect("ws request");
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", user.name, user.password));
        request.headers_mut().insert(
            "Authorization",
            format!("Basic {token}").parse().expect("header"),
        );
        let (stream, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("ws connect");
        Self { stream }
    }

    /// The JSON messages received within `window` (binary frames are skipped).
    pub async fn collect(&mut self, window: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + window;
        while let Ok(Some(Ok(message))) =
            tokio::time::timeout_at(deadline, self.stream.next()).await
        {
            if let Message::Text(text) = message
                && let Ok(value) = serde_json::from_str::<Value>(&text)
            {
                out.push(value);
            }
        }
        out
    }

    /// Reads until a message satisfies `stop` (or `timeout`); returns everything read.
    pub async fn until(&mut self, timeout: Duration, stop: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while let Ok(Some(Ok(message))) =
            tokio::time::timeout_at(deadline, self.stream.next()).await
        {
            if let Message::Text(text) = message
                && let Ok(value) = serde_json::from_str::<Value>(&text)
            {
                let done = stop(&value);
                out.push(value);
                if done {
                    break;
                }
            }
        }
        out
    }
}
