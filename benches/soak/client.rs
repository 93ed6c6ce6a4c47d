//! One participant's connection to the server: HTTP with basic authentication on the user's
//! `/<user>/` prefix (every request timed into [`Latencies`] under its normalised route) and the
//! WebSocket `/<user>/ws?clientId=...` that reports their jobs' progress.

use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::queue_common::User;
use crate::stats::{Latencies, normalise};

/// A request body.
pub enum Body {
    /// No body.
    None,
    /// A JSON body.
    Json(Value),
    /// An image upload (`image` form field) named `name`.
    Image {
        /// File name.
        name: String,
        /// PNG bytes.
        bytes: Vec<u8>,
    },
}

/// An answer: status and body bytes.
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub bytes: Vec<u8>,
}

impl Answer {
    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }

    /// Whether the status is 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A user's HTTP client.
#[derive(Clone)]
pub struct Http {
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Who.
    pub user: User,
    latencies: Latencies,
}

impl Http {
    /// A client of `url` as `user`, recording into `latencies`.
    pub fn new(url: &str, user: &User, latencies: &Latencies) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("http client");
        Self {
            http,
            url: url.to_string(),
            user: user.clone(),
            latencies: latencies.clone(),
        }
    }

    /// `/<user><path>`.
    pub fn path(&self, path: &str) -> String {
        format!("/{}{path}", self.user.name)
    }

    /// Sends `method /<user><path>`; `None` when no answer came (recorded as such).
    pub async fn call(&self, method: &str, path: &str, body: Body) -> Option<Answer> {
        let full = self.path(path);
        let route = normalise(method, &full, &self.user.name);
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self
            .http
            .request(method, format!("{}{full}", self.url))
            .basic_auth(&self.user.name, Some(&self.user.password));
        request = match body {
            Body::None => request,
            Body::Json(value) => request.json(&value),
            Body::Image { name, bytes } => {
                let part = reqwest::multipart::Part::bytes(bytes)
                    .file_name(name)
                    .mime_str("image/png")
                    .expect("mime");
                let form = reqwest::multipart::Form::new()
                    .part("image", part)
                    .text("overwrite", "true");
                request.multipart(form)
            }
        };
        let started = Instant::now();
        let answer = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                response.bytes().await.ok().map(|b| Answer {
                    status,
                    bytes: b.to_vec(),
                })
            }
            Err(_) => None,
        };
        match &answer {
            Some(a) => self.latencies.record(&route, started.elapsed(), a.status),
            None => self.latencies.record_transport_error(&route),
        }
        answer
    }

    /// GET, as JSON when the answer is 2xx.
    pub async fn get_json(&self, path: &str) -> Option<Value> {
        self.call("GET", path, Body::None)
            .await
            .filter(Answer::ok)
            .map(|a| a.json())
    }

    /// Opens the user's WebSocket with `client_id` (the connect is timed as `WS /ws`).
    pub async fn socket(&self, client_id: &str) -> Option<Socket> {
        let url = format!(
            "{}/{}/ws?clientId={client_id}",
            self.url.replacen("http://", "ws://", 1),
            self.user.name
        );
        let mut request = url.into_client_request().ok()?;
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.user.name, self.user.password));
        request
            .headers_mut()
            .insert("Authorization", format!("Basic {token}").parse().ok()?);
        let started = Instant::now();
        match tokio_tungstenite::connect_async(request).await {
            Ok((stream, _)) => {
                self.latencies
                    .record("WS /ws (connect)", started.elapsed(), 101);
                Some(Socket { stream })
            }
            Err(_) => {
                self.latencies.record_transport_error("WS /ws (connect)");
                None
            }
        }
    }
}

type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A connected socket.
pub struct Socket {
    stream: Stream,
}

/// What the socket said within a window.
pub enum Heard {
    /// JSON messages (possibly none).
    Messages(Vec<Value>),
    /// The socket closed or failed.
    Closed,
}

impl Socket {
    /// The JSON messages that arrive within `window` (binary previews are skipped).
    pub async fn listen(&mut self, window: Duration) -> Heard {
        let deadline = tokio::time::Instant::now() + window;
        let mut out = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return Heard::Messages(out),
                Ok(None | Some(Err(_))) => return Heard::Closed,
                Ok(Some(Ok(Message::Text(text)))) => {
                    if let Ok(value) = serde_json::from_str::<Value>(&text) {
                        out.push(value);
                    }
                }
                Ok(Some(Ok(Message::Close(_)))) => return Heard::Closed,
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}

/// Whether `message` says prompt `id` finished (ComfyUI's `executing` with no node, or an
/// error / interruption).
pub fn says_done(message: &Value, id: &str) -> bool {
    let kind = message["type"].as_str().unwrap_or("");
    let data = &message["data"];
    data["prompt_id"] == id
        && ((kind == "executing" && data["node"].is_null())
            || kind == "execution_error"
            || kind == "execution_interrupted"
            || kind == "execution_success")
}

/// Whether `message` says prompt `id` started running.
pub fn says_started(message: &Value, id: &str) -> bool {
    message["data"]["prompt_id"] == id
        && matches!(
            message["type"].as_str(),
            Some("execution_start" | "executing" | "progress")
        )
}
