//! The subscription that turns Redis pub/sub messages into [`Notice`]s for this process: job
//! events published by workers (relayed by the server to the submitting user's sockets) and
//! queue-change notices (status refreshes, worker wake-ups, cancel requests). It reconnects by
//! itself when Redis restarts, and pings the connection so a silently dropped link is noticed.
//!
//! Pub/sub is at-most-once, which fits what travels here: progress is transient, while a job's
//! result and state live in its hash and survive any lost message (clients re-read
//! `/history` / `/api/jobs` on the `QueueChanged` sent after every reconnection).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::{Notify, broadcast, oneshot};
use tokio::task::JoinHandle;

use crate::backend::Notice;
use crate::job::JobEvent;

const PING_EVERY: Duration = Duration::from_secs(10);
const PING_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Wake-ups for idle workers without lost signals: a generation counter bumped by every `work`
/// notice, and the generation the last empty claim saw.
#[derive(Default)]
pub(super) struct WorkSignal {
    generation: AtomicU64,
    idle_at: AtomicU64,
    notify: Notify,
}

impl WorkSignal {
    /// Work may have arrived.
    pub fn bump(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// The current generation (read before looking at the queue).
    pub fn current(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// A claim that started at `generation` found nothing.
    pub fn found_nothing(&self, generation: u64) {
        self.idle_at.store(generation, Ordering::SeqCst);
    }

    /// Waits for work signalled after the last empty claim (at once if some already was).
    pub async fn wait(&self, timeout: Duration) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.current() > self.idle_at.load(Ordering::SeqCst) {
            return;
        }
        let _ = tokio::time::timeout(timeout, notified).await;
    }
}

/// What the listener feeds.
pub(super) struct Listener {
    pub client: redis::Client,
    pub events: String,
    pub notices: String,
    pub tx: broadcast::Sender<Notice>,
    pub work: Arc<WorkSignal>,
}

impl Listener {
    /// Starts listening; the receiver resolves once the first subscription is in place.
    pub fn spawn(self) -> (JoinHandle<()>, oneshot::Receiver<()>) {
        let (ready_tx, ready_rx) = oneshot::channel();
        (tokio::spawn(self.run(ready_tx)), ready_rx)
    }

    async fn run(self, ready: oneshot::Sender<()>) {
        let mut ready = Some(ready);
        let mut backoff = Duration::from_millis(50);
        let mut reconnecting = false;
        loop {
            match self.subscribe().await {
                Ok((sink, stream)) => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                    if reconnecting {
                        tracing::info!("resubscribed to Redis");
                        // Anything may have changed while we were away.
                        let _ = self.tx.send(Notice::QueueChanged);
                        self.work.bump();
                    }
                    reconnecting = true;
                    backoff = Duration::from_millis(50);
                    self.pump(sink, stream).await;
                    tracing::warn!("lost the Redis subscription; reconnecting");
                }
                Err(e) if backoff >= MAX_BACKOFF => {
                    tracing::debug!("still cannot subscribe to Redis: {e}")
                }
                Err(e) => tracing::warn!("cannot subscribe to Redis: {e}"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn subscribe(&self) -> redis::RedisResult<(PubSubSink, PubSubStream)> {
        let pubsub = self.client.get_async_pubsub().await?;
        let (mut sink, stream) = pubsub.split();
        sink.subscribe(&[self.events.as_str(), self.notices.as_str()])
            .await?;
        Ok((sink, stream))
    }

    /// Relays messages until the connection is lost.
    async fn pump(&self, mut sink: PubSubSink, mut stream: PubSubStream) {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            tokio::select! {
                message = stream.next() => match message {
                    Some(message) => self.dispatch(&message),
                    None => return,
                },
                _ = ping.tick() => {
                    // A subscribed RESP2 connection answers PING with `["pong", ""]`, not the
                    // simple `PONG`: any answer in time means the link is alive.
                    let pong =
                        tokio::time::timeout(PING_TIMEOUT, sink.ping::<redis::Value>()).await;
                    if !matches!(pong, Ok(Ok(_))) {
                        return;
                    }
                }
            }
        }
    }

    fn dispatch(&self, message: &redis::Msg) {
        let payload = message.get_payload_bytes();
        if message.get_channel_name() == self.events {
            match serde_json::from_slice::<JobEvent>(payload) {
                Ok(event) => {
                    let _ = self.tx.send(Notice::Event(Box::new(event)));
                }
                Err(e) => tracing::warn!("ignoring an undecodable job event: {e}"),
            }
            return;
        }
        if payload == b"work" {
            self.work.bump();
        }
        let _ = self.tx.send(Notice::QueueChanged);
    }
}
