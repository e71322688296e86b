#![no_main]
//! See `betwixt_control::fuzzing::api_server`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| betwixt_control::fuzzing::api_server(data));
