//! A ring buffer of recent log lines (a `tracing` layer), shown by `/internal/logs` (the
//! frontend's terminal panel) and the admin dashboard. Messages only: no request bodies, no
//! credentials are ever logged.

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::OnceLock;

use parking_lot::Mutex;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

const CAPACITY: usize = 2000;

fn buffer() -> &'static Mutex<VecDeque<(String, String)>> {
    static BUFFER: OnceLock<Mutex<VecDeque<(String, String)>>> = OnceLock::new();
    BUFFER.get_or_init(|| Mutex::new(VecDeque::with_capacity(CAPACITY)))
}

/// The buffered `(time, message)` lines, oldest first.
pub fn entries() -> Vec<(String, String)> {
    buffer().lock().iter().cloned().collect()
}

/// The tracing layer that fills the buffer.
pub struct LogBuffer;

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for LogBuffer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        let meta = event.metadata();
        let line = format!("{} {}: {}", meta.level(), meta.target(), fields.0);
        let time = chrono_now();
        let mut buf = buffer().lock();
        if buf.len() == CAPACITY {
            buf.pop_front();
        }
        buf.push_back((time, line));
    }
}

fn chrono_now() -> String {
    let ms = engine::events::now_ms();
    format!("{}.{:03}", ms / 1000, ms % 1000)
}
