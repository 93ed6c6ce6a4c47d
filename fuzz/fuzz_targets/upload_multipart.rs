//! libFuzzer entry point for [`comfyrs_fuzz::upload_multipart`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| comfyrs_fuzz::upload_multipart(data));
