//! LTX-2 model components in candle, loading the official checkpoint files unchanged.
//!
//! One module per component; each has a config read from the checkpoint's metadata so a tiny
//! checkpoint and the 19B one load through the same code.

pub mod checkpoint;
pub mod error;
pub mod gemma3;
pub mod ltx2;
pub mod parity;
pub mod sampling;
pub mod validate;
pub mod weights;

pub use error::{Error, Result};
