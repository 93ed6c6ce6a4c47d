//! LTX-2 (Lightricks' audio+video diffusion model) components, loaded from the official
//! single-file checkpoint layout.
//!
//! Each component reads its sizes from the checkpoint metadata (`config.<section>`) and from
//! tensor shapes, so the tiny test checkpoint and the real 19B file load through the same code.

pub mod audio_vae;
pub mod connector;
pub mod lora;
pub mod pipeline;
pub mod text;
pub mod text_features;
pub mod transformer;
pub mod upsampler;
pub mod video_vae;
pub mod vocoder;
