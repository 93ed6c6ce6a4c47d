//! LTX-2 (Lightricks' audio+video diffusion model) components.
//!
//! Each component reads its sizes from the checkpoint metadata (`config.<section>`) and from
//! tensor shapes, so the tiny test checkpoint and the real 19B file load through the same code.

pub mod lora;
pub mod transformer;
