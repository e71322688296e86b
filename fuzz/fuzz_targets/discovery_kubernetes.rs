#![no_main]
//! See `betwixt_control::fuzzing::discovery_kubernetes`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| betwixt_control::fuzzing::discovery_kubernetes(data));
