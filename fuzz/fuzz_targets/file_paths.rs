//! libFuzzer entry point for [`comfyrs_fuzz::file_paths`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| comfyrs_fuzz::file_paths(data));
