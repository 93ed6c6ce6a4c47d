//! libFuzzer entry point for [`comfyrs_fuzz::ui_workflow`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| comfyrs_fuzz::ui_workflow(data));
