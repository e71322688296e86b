#![no_main]
//! See `betwixt_control::fuzzing::api_path`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| betwixt_control::fuzzing::api_path(data));
