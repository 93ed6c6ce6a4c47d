//! One simulated participant: loops with think times until told to stop, uploading images,
//! submitting tiny LTX-2 (and sometimes core-node) prompts, watching them over the WebSocket,
//! cancelling some (pending or running), re-queueing some, browsing history, jobs and the queue,
//! and downloading outputs. Every submitted id goes into the shared [`Ledger`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::client::{Body, Heard, Http, Socket, says_done, says_started};
use crate::prompts::{Kind, Rng, Templates, core_image, png};

/// How a submitted job was treated by its owner.
#[derive(Clone, Debug)]
pub struct Submitted {
    /// Owner.
    pub user: String,
    /// Prompt id.
    pub id: String,
    /// What it was.
    pub kind: Kind,
    /// A re-queue of the owner's previous prompt.
    pub requeue: bool,
    /// The owner asked to cancel it (`pending` right after submitting, or once `running`).
    pub cancel: Option<&'static str>,
    /// The WebSocket reported it finished.
    pub ws_done: bool,
    /// The final status the owner saw while watching (`None`: still unfinished when the
    /// owner stopped watching).
    pub seen: Option<String>,
}

/// Everything the users did, shared.
#[derive(Clone, Default)]
pub struct Ledger {
    /// Submitted jobs, in submission order.
    pub jobs: Arc<Mutex<Vec<Submitted>>>,
    /// Submissions refused or unanswered.
    pub submit_failures: Arc<Mutex<Vec<String>>>,
    /// Uploads that failed.
    pub upload_failures: Arc<Mutex<usize>>,
    /// Output files downloaded while running (count, bytes).
    pub downloads: Arc<Mutex<(usize, usize)>>,
}

/// Knobs of the behaviour.
#[derive(Clone, Copy)]
pub struct Behaviour {
    /// Think time between actions, seconds (min, max).
    pub think_s: (f64, f64),
    /// Nobody watches a job past this instant.
    pub hard_stop: Instant,
}

/// A participant.
pub struct Participant {
    http: Http,
    socket: Option<Socket>,
    client_id: String,
    rng: Rng,
    templates: Arc<Templates>,
    ledger: Ledger,
    behaviour: Behaviour,
    uploads: Vec<String>,
    uploaded: usize,
}

/// The files of a history entry's or job's `outputs` (`(filename, subfolder, type)`).
pub fn output_files(outputs: &Value) -> Vec<(String, String, String)> {
    let mut files = Vec::new();
    for node in outputs.as_object().into_iter().flat_map(|o| o.values()) {
        for list in node.as_object().into_iter().flat_map(|o| o.values()) {
            for item in list.as_array().into_iter().flatten() {
                if let Some(name) = item["filename"].as_str() {
                    files.push((
                        name.to_string(),
                        item["subfolder"].as_str().unwrap_or("").to_string(),
                        item["type"].as_str().unwrap_or("output").to_string(),
                    ));
                }
            }
        }
    }
    files
}

/// `/api/view?...` of one output file.
pub fn view_path(file: &(String, String, String)) -> String {
    let enc = |s: &str| {
        s.replace('%', "%25")
            .replace(' ', "%20")
            .replace('&', "%26")
    };
    format!(
        "/api/view?filename={}&subfolder={}&type={}",
        enc(&file.0),
        enc(&file.1),
        enc(&file.2)
    )
}

fn is_final(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "cancelled")
}

impl Participant {
    /// A participant acting through `http`.
    pub fn new(
        http: Http,
        seed: u64,
        templates: Arc<Templates>,
        ledger: Ledger,
        behaviour: Behaviour,
    ) -> Self {
        Self {
            client_id: format!("soak-{}", http.user.name),
            http,
            socket: None,
            rng: Rng::new(seed),
            templates,
            ledger,
            behaviour,
            uploads: Vec::new(),
            uploaded: 0,
        }
    }

    async fn think(&mut self) {
        let (lo, hi) = self.behaviour.think_s;
        let s = lo + (hi - lo) * self.rng.unit();
        tokio::time::sleep(Duration::from_secs_f64(s)).await;
    }

    /// Runs until `stop` is set.
    pub async fn run(mut self, stop: Arc<AtomicBool>) {
        // Spread the first submissions over the first think time.
        self.think().await;
        while !stop.load(Ordering::Relaxed) {
            self.one_round().await;
            self.think().await;
        }
    }

    async fn one_round(&mut self) {
        if self.socket.is_none() {
            self.socket = self.http.socket(&self.client_id).await;
        }
        if self.rng.unit() < 0.4 || self.uploads.is_empty() {
            self.upload().await;
        }
        let r = self.rng.unit();
        let (kind, prompt) = if r < 0.2 {
            (Kind::CoreImage, core_image(&mut self.rng))
        } else if r < 0.5 && !self.uploads.is_empty() {
            let image = self.uploads[self.rng.below(self.uploads.len())].clone();
            (
                Kind::ImageToVideo,
                self.templates.i2v(&mut self.rng, &image),
            )
        } else {
            (Kind::TextToVideo, self.templates.t2v(&mut self.rng))
        };
        let Some(index) = self.submit(kind, &prompt, false).await else {
            return;
        };
        let r = self.rng.unit();
        let cancel = if r < 0.07 {
            Some("pending")
        } else if r < 0.14 {
            Some("running")
        } else {
            None
        };
        if cancel == Some("pending") {
            self.cancel(index, "pending").await;
        }
        let id = self.watch(index, cancel == Some("running")).await;
        self.browse().await;
        if let Some(id) = id {
            self.download(&id).await;
        }
        if self.rng.unit() < 0.15 {
            self.think().await;
            if let Some(index) = self.submit(kind, &prompt, true).await {
                self.watch(index, false).await;
            }
        }
    }

    async fn upload(&mut self) {
        self.uploaded += 1;
        let name = format!("{}-{}.png", self.http.user.name, self.uploaded % 5);
        let bytes = png(&mut self.rng);
        let answer = self
            .http
            .call("POST", "/api/upload/image", Body::Image { name, bytes })
            .await;
        match answer.filter(|a| a.ok()).map(|a| a.json()) {
            Some(reply) => {
                let name = reply["name"].as_str().unwrap_or_default().to_string();
                let sub = reply["subfolder"].as_str().unwrap_or_default();
                let image = if sub.is_empty() {
                    name
                } else {
                    format!("{sub}/{name}")
                };
                if !self.uploads.contains(&image) {
                    self.uploads.push(image);
                }
            }
            None => *self.ledger.upload_failures.lock() += 1,
        }
    }

    /// Submits; returns the ledger index.
    async fn submit(&mut self, kind: Kind, prompt: &Value, requeue: bool) -> Option<usize> {
        let body = json!({"prompt": prompt, "client_id": self.client_id});
        let answer = self.http.call("POST", "/prompt", Body::Json(body)).await;
        let id = answer
            .as_ref()
            .filter(|a| a.ok())
            .and_then(|a| a.json()["prompt_id"].as_str().map(String::from));
        let Some(id) = id else {
            let why = match answer {
                Some(a) => format!("{} {}", a.status, String::from_utf8_lossy(&a.bytes)),
                None => "no answer".into(),
            };
            self.ledger
                .submit_failures
                .lock()
                .push(format!("{}: {why}", self.http.user.name));
            return None;
        };
        let mut jobs = self.ledger.jobs.lock();
        jobs.push(Submitted {
            user: self.http.user.name.clone(),
            id,
            kind,
            requeue,
            cancel: None,
            ws_done: false,
            seen: None,
        });
        Some(jobs.len() - 1)
    }

    async fn cancel(&mut self, index: usize, when: &'static str) {
        let id = {
            let mut jobs = self.ledger.jobs.lock();
            jobs[index].cancel = Some(when);
            jobs[index].id.clone()
        };
        let path = format!("/api/jobs/{id}/cancel");
        self.http.call("POST", &path, Body::Json(json!({}))).await;
    }

    /// Watches job `index` until it is final (WebSocket events, with `/api/jobs/{id}` polled
    /// every few seconds in case an event was missed); cancels it once it runs if asked.
    /// Returns the id if it completed.
    async fn watch(&mut self, index: usize, cancel_when_running: bool) -> Option<String> {
        let id = self.ledger.jobs.lock()[index].id.clone();
        let mut ws_done = false;
        let mut cancelled = false;
        let mut last_poll = Instant::now();
        let mut seen = None;
        while Instant::now() < self.behaviour.hard_stop {
            let mut started = false;
            match self.socket.as_mut() {
                Some(socket) => match socket.listen(Duration::from_secs(1)).await {
                    Heard::Messages(messages) => {
                        started = messages.iter().any(|m| says_started(m, &id));
                        ws_done |= messages.iter().any(|m| says_done(m, &id));
                    }
                    Heard::Closed => self.socket = None,
                },
                None => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    self.socket = self.http.socket(&self.client_id).await;
                }
            }
            if cancel_when_running && started && !cancelled {
                cancelled = true;
                self.cancel(index, "running").await;
            }
            if ws_done || last_poll.elapsed() > Duration::from_secs(3) {
                last_poll = Instant::now();
                let job = self.http.get_json(&format!("/api/jobs/{id}")).await;
                let status = job.as_ref().and_then(|j| j["status"].as_str());
                if let Some(status) = status.filter(|s| is_final(s)) {
                    seen = Some(status.to_string());
                    if !ws_done {
                        // The state is written before the event is published: give the event
                        // a moment before calling it missed.
                        ws_done = self.hear_done(&id, Duration::from_secs(3)).await;
                    }
                    break;
                }
            }
        }
        let mut jobs = self.ledger.jobs.lock();
        jobs[index].ws_done = ws_done;
        jobs[index].seen = seen.clone();
        (seen.as_deref() == Some("completed")).then_some(id)
    }

    /// Whether the socket reports the end of `id` within `window`.
    async fn hear_done(&mut self, id: &str, window: Duration) -> bool {
        let Some(socket) = self.socket.as_mut() else {
            return false;
        };
        let deadline = Instant::now() + window;
        while Instant::now() < deadline {
            match socket.listen(Duration::from_millis(250)).await {
                Heard::Messages(messages) if messages.iter().any(|m| says_done(m, id)) => {
                    return true;
                }
                Heard::Messages(_) => {}
                Heard::Closed => {
                    self.socket = None;
                    return false;
                }
            }
        }
        false
    }

    async fn browse(&mut self) {
        self.http
            .call("GET", "/api/history?max_items=16", Body::None)
            .await;
        self.http
            .call("GET", "/api/jobs?limit=20", Body::None)
            .await;
        self.http.call("GET", "/api/queue", Body::None).await;
    }

    async fn download(&mut self, id: &str) {
        let Some(history) = self.http.get_json(&format!("/history/{id}")).await else {
            return;
        };
        for file in output_files(&history[id]["outputs"]) {
            if let Some(answer) = self.http.call("GET", &view_path(&file), Body::None).await
                && answer.ok()
            {
                let mut downloads = self.ledger.downloads.lock();
                downloads.0 += 1;
                downloads.1 += answer.bytes.len();
            }
        }
    }
}
