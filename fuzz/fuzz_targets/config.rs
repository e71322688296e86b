#![no_main]
//! See `betwixt_control::fuzzing::config`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| betwixt_control::fuzzing::config(data));
