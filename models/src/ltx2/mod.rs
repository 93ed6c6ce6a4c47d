//! LTX-2 (Lightricks) components: the audio+video transformer, its VAEs, vocoder and upsampler.

pub mod upsampler;
pub mod video_vae;
