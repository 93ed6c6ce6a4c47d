//! A small HTTP client bound to a server and, in workshop mode, to a user's credentials, with
//! the requests the tests make most (JSON, raw bodies, uploads, queueing, waiting for history,
//! opening the WebSocket).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::ws::WsClient;

/// A response: status, headers and the body (parsed as JSON when possible).
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// Raw body.
    pub bytes: Vec<u8>,
    /// The body as JSON (`Value::Null` when empty or not JSON).
    pub json: Value,
}

impl Reply {
    /// A header as a string.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A small HTTP client bound to a server and (optionally) a user.
#[derive(Clone)]
pub struct Api {
    /// The underlying client.
    pub client: reqwest::Client,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Basic-auth credentials.
    pub auth: Option<(String, String)>,
}

impl Api {
    /// A request builder for `method path` with the credentials.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut builder = self.client.request(method, format!("{}{path}", self.base));
        if let Some((user, password)) = &self.auth {
            builder = builder.basic_auth(user, Some(password));
        }
        builder
    }

    /// Sends a request and collects the reply.
    pub async fn send(&self, builder: reqwest::RequestBuilder) -> Reply {
        let response = builder.send().await.expect("HTTP request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("HTTP body").to_vec();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            bytes,
            json,
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(self.request(reqwest::Method::POST, path).json(body))
            .await
    }

    /// `POST path` with a raw body.
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> Reply {
        self.send(self.request(reqwest::Method::POST, path).body(body))
            .await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Reply {
        self.send(self.request(reqwest::Method::DELETE, path)).await
    }

    /// Uploads `bytes` as `file_name` to `/upload/image` with extra form fields.
    pub async fn upload(
        &self,
        path: &str,
        file_name: &str,
        bytes: Vec<u8>,
        fields: &[(&str, &str)],
    ) -> Reply {
        let mut form = reqwest::multipart::Form::new().part(
            "image",
            reqwest::multipart::Part::bytes(bytes).file_name(file_name.to_string()),
        );
        for (k, v) in fields {
            form = form.text(k.to_string(), v.to_string());
        }
        self.send(self.request(reqwest::Method::POST, path).multipart(form))
            .await
    }

    /// Opens `/ws?clientId=...` (under `prefix`) with these credentials.
    pub async fn ws(&self, prefix: &str, client_id: Option<&str>) -> WsClient {
        let path = match client_id {
            Some(id) => format!("{prefix}/ws?clientId={id}"),
            None => format!("{prefix}/ws"),
        };
        let auth = self.auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str()));
        WsClient::connect(&self.base, &path, auth).await
    }

    /// Queues a prompt (`POST /prompt`), asserting 200; returns the response JSON.
    pub async fn queue(&self, prefix: &str, prompt: &Value, client_id: Option<&str>) -> Value {
        let mut body = json!({"prompt": prompt});
        if let Some(id) = client_id {
            body["client_id"] = json!(id);
        }
        let reply = self.post(&format!("{prefix}/prompt"), &body).await;
        assert_eq!(reply.status, 200, "POST {prefix}/prompt: {}", reply.json);
        reply.json
    }

    /// Polls `/history/{id}` until the prompt has finished; returns its history entry.
    pub async fn wait_history(&self, prefix: &str, prompt_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let reply = self.get(&format!("{prefix}/history/{prompt_id}")).await;
            assert_eq!(reply.status, 200);
            if let Some(entry) = reply.json.get(prompt_id) {
                return entry.clone();
            }
            assert!(
                Instant::now() < deadline,
                "prompt {prompt_id} did not finish"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `EmptyImage(w x h, color) -> SaveImage(prefix)`: the smallest prompt that writes a file.
pub fn empty_image_prompt(width: u32, height: u32, color: u32, prefix: &str) -> Value {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": width, "height": height, "batch_size": 1, "color": color}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    })
}
