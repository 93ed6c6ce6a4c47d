//! libFuzzer entry point for [`comfyrs_fuzz::ws_message`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| comfyrs_fuzz::ws_message(data));
