//! LTX-2 (Lightricks' audio+video diffusion model) components, loaded from the official
//! single-file checkpoint layout.

pub mod connector;
pub mod text;
pub mod text_features;
