//! Running one claimed job: the engine on a blocking thread, a publisher relaying its events,
//! and a heartbeat task that extends the lease, hears cancel requests (at once, through the
//! backend's notices, not only on the next beat) and stops the run if the lease is lost.

use std::sync::Arc;
use std::time::Duration;

use engine::Event;
use nodes::Interrupt;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use crate::backend::{Backend, Notice};
use crate::error::Result;
use crate::job::{Lease, WorkerInfo};
use crate::now_ms;

use super::exec::{ChannelSink, done_event, execute, job_event, models_in};
use super::{Worker, engine_panicked};

/// Quickest re-beat after a queue notice (a burst of notices costs one round trip).
const MIN_BEAT_GAP: Duration = Duration::from_millis(100);

/// What the heartbeat task needs.
struct Beat {
    backend: Arc<dyn Backend>,
    lease: Lease,
    interrupt: Interrupt,
    period: Duration,
    info: WorkerInfo,
    shutdown: watch::Receiver<bool>,
}

/// When a lease's holder beats next: `period` after the last beat, or sooner when the queue
/// changes (a cancel request should be heard at once), at most once per [`MIN_BEAT_GAP`].
pub struct BeatTimer {
    notices: broadcast::Receiver<Notice>,
    period: Duration,
    next: Instant,
    last: Instant,
}

impl BeatTimer {
    /// A timer for `backend`'s notices, beating every `period`.
    pub fn new(backend: &dyn Backend, period: Duration) -> Self {
        let now = Instant::now();
        Self {
            notices: backend.subscribe(),
            period,
            next: now + period,
            last: now,
        }
    }

    /// Waits until the next beat is due; false when `stop` changed first.
    pub async fn wait(&mut self, stop: &mut watch::Receiver<bool>) -> bool {
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(self.next) => break,
                _ = stop.changed() => return false,
                notice = self.notices.recv() => match notice {
                    Ok(Notice::QueueChanged) | Err(broadcast::error::RecvError::Lagged(_))
                        if self.last.elapsed() >= MIN_BEAT_GAP => break,
                    Err(broadcast::error::RecvError::Closed) => {
                        self.notices = broadcast::channel(1).1;
                    }
                    _ => {}
                },
            }
        }
        self.last = Instant::now();
        self.next = self.last + self.period;
        true
    }
}

impl Beat {
    /// Beats until told to stop; returns whether the lease was lost.
    async fn run(mut self, mut stop: watch::Receiver<bool>) -> bool {
        let mut timer = BeatTimer::new(self.backend.as_ref(), self.period);
        while timer.wait(&mut stop).await {
            if self.beat().await {
                return true;
            }
        }
        false
    }

    /// One heartbeat; returns whether the lease is lost.
    async fn beat(&mut self) -> bool {
        self.info.last_seen = now_ms();
        self.info.draining = *self.shutdown.borrow();
        if let Err(e) = self.backend.worker_heartbeat(&self.info).await {
            tracing::warn!(worker = %self.info.id, "worker heartbeat failed: {e}");
        }
        match self.backend.heartbeat(&self.lease).await {
            Ok(reply) if reply.lost => {
                tracing::warn!(job = %self.lease.job.id, "lease lost; stopping the run");
                self.interrupt.trigger();
                true
            }
            Ok(reply) => {
                if reply.cancel {
                    tracing::info!(job = %self.lease.job.id, "cancel requested; interrupting");
                    self.interrupt.trigger();
                }
                false
            }
            Err(e) => {
                tracing::warn!(job = %self.lease.job.id, "heartbeat failed: {e}");
                false
            }
        }
    }
}

impl Worker {
    /// Runs a claimed job to its end and records the outcome (unless the lease was lost).
    pub(super) async fn run_lease(
        &mut self,
        lease: Lease,
        shutdown: watch::Receiver<bool>,
    ) -> Result<()> {
        let job = lease.job.clone();
        tracing::info!(job = %job.id, user = %job.user, attempt = lease.attempt, "running job");
        let Some(mut engine) = self.engine.take() else {
            return Ok(());
        };
        let interrupt = engine.interrupt_handle();
        let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
        let publisher = {
            let backend = self.backend.clone();
            let job = job.clone();
            tokio::spawn(async move {
                while let Some(event) = rx.recv().await {
                    if let Err(e) = backend.publish(job_event(&job, &event)).await {
                        tracing::warn!(job = %job.id, "could not publish an event: {e}");
                    }
                }
            })
        };
        let (stop_beat, stop_rx) = watch::channel(false);
        let draining = *shutdown.borrow();
        let beat = Beat {
            backend: self.backend.clone(),
            lease: lease.clone(),
            interrupt,
            period: self.options.heartbeat,
            info: self.info(Some(&job.id), draining),
            shutdown,
        };
        // Show the job on the worker at once (the next beat is a period away).
        if let Err(e) = self.backend.worker_heartbeat(&beat.info).await {
            tracing::warn!(worker = %beat.info.id, "worker heartbeat failed: {e}");
        }
        let heart = tokio::spawn(beat.run(stop_rx));
        let env = self.layout.env_for(&job.user);
        let run_job = job.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let sink = ChannelSink { tx };
            let result = execute(&mut engine, &run_job, &env, &sink);
            (engine, result)
        })
        .await;
        let _ = stop_beat.send(true);
        let lost = heart.await.unwrap_or(false);
        let _ = publisher.await;
        let (engine, outcome) = joined.map_err(|panic| engine_panicked(&job.id, panic))?;
        self.loaded_models = if engine.cache_len() > 0 {
            models_in(&job.prompt)
        } else {
            Vec::new()
        };
        self.engine = Some(engine);
        if lost {
            return Ok(());
        }
        if super::record_outcome(self.backend.as_ref(), &lease, outcome).await? {
            self.jobs_done += 1;
            self.backend.publish(done_event(&job)).await?;
        }
        Ok(())
    }
}
