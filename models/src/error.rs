//! The error type of the models crate.

/// What went wrong loading or running a model component.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed (shape mismatch, missing tensor in a VarBuilder, device error).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The checkpoint's metadata or a config file is missing or malformed.
    #[error("config: {0}")]
    Config(String),
    /// The checkpoint does not hold what the component needs (missing key, wrong shape, unknown
    /// quantisation format).
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The caller passed inputs the component cannot take (wrong rank, bad length).
    #[error("invalid input: {0}")]
    Input(String),
    /// Tokenizer failure.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

/// Result alias of the models crate.
pub type Result<T> = std::result::Result<T, Error>;
