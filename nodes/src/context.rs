//! What a node function sees while it runs: its environment, the prompt it belongs to, and
//! the channels for progress, previews and interruption.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::env::Env;
use crate::error::NodeError;
use crate::value::Json;

/// A shared interrupt flag: set by `/interrupt`, checked between nodes and inside long nodes.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// Requests interruption.
    pub fn trigger(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// Clears the request (at the start of each prompt, as ComfyUI does).
    pub fn reset(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
    /// Whether interruption was requested.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// An encoded preview image sent with progress.
#[derive(Debug, Clone)]
pub struct Preview {
    /// `image/png` or `image/jpeg`.
    pub mime: &'static str,
    /// Encoded bytes.
    pub bytes: Vec<u8>,
}

/// Receives progress from a running node (the engine forwards it as `progress` events).
pub trait Reporter: Sync {
    /// Step `value` of `max` done, with an optional preview image.
    fn progress(&self, node_id: &str, value: f64, max: f64, preview: Option<Preview>);
    /// A text status for the node (ComfyUI's `progress_text`).
    fn text(&self, node_id: &str, text: &str);
}

/// A reporter that drops everything (tools and tests that want no events).
pub struct NoReporter;

impl Reporter for NoReporter {
    fn progress(&self, _: &str, _: f64, _: f64, _: Option<Preview>) {}
    fn text(&self, _: &str, _: &str) {}
}

/// The context of one node call.
pub struct Ctx<'a> {
    /// Folders and models of the prompt's user.
    pub env: &'a Env,
    /// The node's id in the prompt (`UNIQUE_ID`).
    pub node_id: &'a str,
    /// The original API prompt (`PROMPT`).
    pub prompt: &'a Json,
    /// `extra_data.extra_pnginfo` (`EXTRA_PNGINFO`), usually `{"workflow": ...}`.
    pub extra_pnginfo: Option<&'a Json>,
    /// Progress sink.
    pub reporter: &'a dyn Reporter,
    /// Interrupt flag.
    pub interrupt: &'a Interrupt,
}

impl Ctx<'_> {
    /// Fails with [`NodeError::Interrupted`] when interruption was requested; long nodes call
    /// this between steps.
    pub fn check_interrupt(&self) -> Result<(), NodeError> {
        if self.interrupt.is_set() {
            Err(NodeError::Interrupted)
        } else {
            Ok(())
        }
    }

    /// Reports progress (and checks for interruption, as ComfyUI's progress hook does).
    pub fn progress(&self, value: usize, max: usize) -> Result<(), NodeError> {
        self.reporter
            .progress(self.node_id, value as f64, max as f64, None);
        self.check_interrupt()
    }

    /// Reports progress with a preview image.
    pub fn progress_with_preview(
        &self,
        value: usize,
        max: usize,
        preview: Preview,
    ) -> Result<(), NodeError> {
        self.reporter
            .progress(self.node_id, value as f64, max as f64, Some(preview));
        self.check_interrupt()
    }
}
