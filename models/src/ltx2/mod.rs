//! LTX-2 model components (transformer, VAEs, vocoder), loading the official checkpoint layout.

pub mod audio_vae;
pub mod vocoder;
