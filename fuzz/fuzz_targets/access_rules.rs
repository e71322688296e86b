#![no_main]
//! See `betwixt_control::fuzzing::access_rules`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| betwixt_control::fuzzing::access_rules(data));
