#![no_main]
//! See `betwixt_control::fuzzing::discovery_json`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| betwixt_control::fuzzing::discovery_json(data));
