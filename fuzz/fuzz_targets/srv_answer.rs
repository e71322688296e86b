#![no_main]
//! See `betwixt_control::fuzzing::srv_answer`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| betwixt_control::fuzzing::srv_answer(data));
