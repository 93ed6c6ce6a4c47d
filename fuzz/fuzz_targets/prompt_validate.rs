//! libFuzzer entry point for [`comfyrs_fuzz::prompt_validate`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| comfyrs_fuzz::prompt_validate(data));
