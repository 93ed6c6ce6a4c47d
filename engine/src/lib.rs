//! The ComfyUI graph engine: parses API-format prompts, validates them with ComfyUI's rules and
//! error JSON, and executes them in ComfyUI's order with a bounded output cache between prompts,
//! list semantics, interruption and an event stream.
//!
//! The engine never touches HTTP or the queue: the server and workers drive it through
//! [`Engine::validate`] and [`Engine::execute`] and relay its [`events::Event`]s.

pub mod cache;
pub mod events;
pub mod executor;
pub mod graph;
pub mod prompt;
pub mod pyfmt;
pub mod ui_workflow;
pub mod validate;

pub use cache::CachePolicy;
pub use events::{Event, EventSink};
pub use executor::{Engine, ExecutionResult, Job, Outcome};
pub use prompt::Prompt;
pub use validate::{ErrorInfo, Limits, PromptError, Validated};
