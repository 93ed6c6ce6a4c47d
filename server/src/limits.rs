//! Limits that keep one workshop participant from hurting the others: prompt size, the image and
//! video sizes a prompt may ask for, output disk per user, request rates (prompts, failed
//! logins) and WebSocket connections per user. Each refusal is a ComfyUI-shaped error
//! (`{"error": {type, message, details, extra_info}, "node_errors": {}}`).

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use engine::prompt::{InputValue, Prompt};
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::error::ApiError;

/// Per-user limits (0 turns a limit off).
#[derive(Debug, Clone)]
pub struct UserLimits {
    /// Largest `POST /prompt` body (bytes).
    pub max_prompt_bytes: usize,
    /// Largest `width`/`height` input a prompt may set.
    pub max_dimension: u64,
    /// Largest frame count (`length`, `frames_number`, `video_frames`) a prompt may set.
    pub max_frames: u64,
    /// Largest `batch_size` / `amount` a prompt may set.
    pub max_batch: u64,
    /// Output disk a user may fill (bytes); new prompts are refused once it is reached.
    pub max_output_bytes: u64,
    /// Prompts a user may submit per minute.
    pub prompts_per_minute: u32,
    /// Failed logins allowed per user name and per client address in `login_window`.
    pub max_login_failures: u32,
    /// The window failed logins are counted in.
    pub login_window: Duration,
    /// WebSocket connections a user may hold at once.
    pub max_sockets_per_user: usize,
}

impl Default for UserLimits {
    fn default() -> Self {
        Self {
            max_prompt_bytes: 8 << 20,
            max_dimension: 4096,
            max_frames: 1025,
            max_batch: 16,
            max_output_bytes: 20 << 30,
            prompts_per_minute: 60,
            max_login_failures: 10,
            login_window: Duration::from_secs(300),
            max_sockets_per_user: 16,
        }
    }
}

/// A refusal in ComfyUI's prompt-error shape with `status`; `extra_info` carries the limit.
pub fn refusal(
    status: StatusCode,
    kind: &str,
    message: &str,
    details: &str,
    extra: Value,
) -> ApiError {
    ApiError::json(
        status,
        json!({"error": {"type": kind, "message": message, "details": details, "extra_info": extra}, "node_errors": {}}),
    )
}

/// A 429 with `Retry-After` (whole seconds, at least 1).
pub fn too_many(kind: &str, message: &str, details: &str, retry: Duration) -> Response {
    let secs = retry.as_secs().max(1);
    let mut response = refusal(
        StatusCode::TOO_MANY_REQUESTS,
        kind,
        message,
        details,
        json!({"retry_after_seconds": secs}),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// Which limit an integer input name falls under, by name (any node: `EmptyLatentImage`,
/// `EmptyLTXVLatentVideo`, `EmptyImage`, `ImageScale`, ... all use these names).
fn limit_for(limits: &UserLimits, input: &str) -> Option<(u64, &'static str)> {
    match input {
        "width" | "height" => Some((limits.max_dimension, "dimension")),
        "length" | "frames_number" | "video_frames" => Some((limits.max_frames, "frame count")),
        "batch_size" | "amount" => Some((limits.max_batch, "batch size")),
        _ => None,
    }
}

/// Refuses a validated prompt that asks for images or videos larger than the limits allow.
pub fn check_prompt_sizes(limits: &UserLimits, prompt: &Prompt) -> Result<(), ApiError> {
    for id in prompt.ids() {
        let Some(node) = prompt.node(id) else {
            continue;
        };
        for (name, value) in &node.inputs {
            let InputValue::Const(v) = value else {
                continue;
            };
            let Some((max, what)) = limit_for(limits, name) else {
                continue;
            };
            let Some(n) = v.as_f64() else {
                continue;
            };
            if max > 0 && n > max as f64 {
                let details = format!(
                    "Node {id} ({}) asks for {name} = {n}; this server allows at most {max}",
                    node.class_type
                );
                return Err(refusal(
                    StatusCode::BAD_REQUEST,
                    "limit_exceeded",
                    &format!("Prompt exceeds the {what} limit"),
                    &details,
                    json!({"node_id": id, "input_name": name, "value": v, "limit": max}),
                ));
            }
        }
    }
    Ok(())
}

/// Bytes of the files under `dir` (not following links).
pub fn folder_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

/// Sliding-window counters per key (a user name, a client address): at most `max` events in
/// `window`. Keys whose events have all expired are dropped, so the map stays small.
pub struct Throttle {
    max: u32,
    window: Duration,
    events: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// Keys kept before expired ones are swept.
const SWEEP_AT: usize = 1024;

impl Throttle {
    /// At most `max` events per `window` per key (`max` 0: unlimited).
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            events: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` when `key` already had `max` events in the window (until one expires).
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        if self.max == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut events = self.events.lock();
        let Some(queue) = events.get_mut(key) else {
            return Ok(());
        };
        while queue
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            queue.pop_front();
        }
        match queue.front() {
            Some(oldest) if queue.len() >= self.max as usize => {
                Err(self.window.saturating_sub(now.duration_since(*oldest)))
            }
            _ => Ok(()),
        }
    }

    /// Records an event for `key`.
    pub fn record(&self, key: &str) {
        if self.max == 0 {
            return;
        }
        let now = Instant::now();
        let mut events = self.events.lock();
        if events.len() >= SWEEP_AT {
            let window = self.window;
            events.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        let queue = events.entry(key.to_string()).or_default();
        queue.push_back(now);
        while queue.len() > self.max as usize {
            queue.pop_front();
        }
    }

    /// [`Throttle::check`], then [`Throttle::record`] when allowed.
    pub fn acquire(&self, key: &str) -> Result<(), Duration> {
        self.check(key)?;
        self.record(key);
        Ok(())
    }
}

/// The running counters behind [`UserLimits`].
pub struct Guards {
    /// `POST /prompt` per user.
    pub prompts: Throttle,
    /// Failed logins per user name.
    pub login_names: Throttle,
    /// Failed logins per client address.
    pub login_addrs: Throttle,
}

impl Guards {
    /// Counters for `limits`.
    pub fn new(limits: &UserLimits) -> Self {
        Self {
            prompts: Throttle::new(limits.prompts_per_minute, Duration::from_secs(60)),
            login_names: Throttle::new(limits.max_login_failures, limits.login_window),
            login_addrs: Throttle::new(limits.max_login_failures, limits.login_window),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_allows_max_then_refuses_per_key() {
        let t = Throttle::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            t.acquire("ann").unwrap();
        }
        let wait = t.acquire("ann").unwrap_err();
        assert!(wait > Duration::from_secs(50) && wait <= Duration::from_secs(60));
        t.acquire("bob").unwrap();
        let unlimited = Throttle::new(0, Duration::from_secs(60));
        for _ in 0..100 {
            unlimited.acquire("ann").unwrap();
        }
    }

    #[test]
    fn throttle_forgets_old_events() {
        let t = Throttle::new(1, Duration::from_millis(30));
        t.acquire("ann").unwrap();
        assert!(t.acquire("ann").is_err());
        std::thread::sleep(Duration::from_millis(40));
        t.acquire("ann").unwrap();
    }

    #[test]
    fn sizes_over_the_limits_are_refused_by_input_name() {
        let limits = UserLimits {
            max_dimension: 1024,
            max_frames: 97,
            max_batch: 2,
            ..UserLimits::default()
        };
        let prompt = |inputs: Value| {
            let json = json!({"5": {"class_type": "EmptyLTXVLatentVideo", "inputs": inputs}});
            Prompt::from_json(json.as_object().unwrap().clone())
        };
        let ok = prompt(json!({"width": 1024, "height": 512, "length": 97, "batch_size": 2}));
        check_prompt_sizes(&limits, &ok).unwrap();
        let linked = prompt(json!({"width": ["1", 0], "length": 97}));
        check_prompt_sizes(&limits, &linked).unwrap();
        for (input, value) in [
            ("width", 1025),
            ("height", 4096),
            ("length", 98),
            ("batch_size", 3),
        ] {
            let bad = prompt(json!({input: value}));
            let response = check_prompt_sizes(&limits, &bad)
                .unwrap_err()
                .into_response();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{input}");
        }
    }
}
