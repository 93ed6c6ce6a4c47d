//! The error a node function returns; the engine turns it into ComfyUI's `execution_error`.

/// Why a node failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Bad input values (ComfyUI raises `ValueError`).
    #[error("{0}")]
    Value(String),
    /// A failure while computing (ComfyUI's `RuntimeError`).
    #[error("{0}")]
    Runtime(String),
    /// A file the node needs is missing.
    #[error("{0}")]
    FileNotFound(String),
    /// An I/O failure.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    /// A model component failed.
    #[error(transparent)]
    Model(#[from] models::Error),
    /// The prompt was interrupted (checked between steps).
    #[error("Processing interrupted")]
    Interrupted,
}

impl NodeError {
    /// The exception type ComfyUI would report (`module.QualName`, builtins bare).
    pub fn exception_type(&self) -> &'static str {
        match self {
            NodeError::Value(_) => "ValueError",
            NodeError::Runtime(_) | NodeError::Tensor(_) | NodeError::Model(_) => "RuntimeError",
            NodeError::FileNotFound(_) => "FileNotFoundError",
            NodeError::Io { .. } => "OSError",
            NodeError::Interrupted => "comfy.model_management.InterruptProcessingException",
        }
    }

    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        NodeError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result alias for node functions.
pub type NodeResult<T> = Result<T, NodeError>;
