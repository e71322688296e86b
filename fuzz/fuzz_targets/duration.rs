#![no_main]
//! See `betwixt_control::fuzzing::duration`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| betwixt_control::fuzzing::duration(data));
