//! libFuzzer entry point for [`comfyrs_fuzz::safetensors_header`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| comfyrs_fuzz::safetensors_header(data));
