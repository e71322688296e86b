#![no_main]
//! See `betwixt_control::fuzzing::backend_lines`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| betwixt_control::fuzzing::backend_lines(data));
