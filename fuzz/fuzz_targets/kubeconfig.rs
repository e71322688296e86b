#![no_main]
//! See `betwixt_control::fuzzing::kubeconfig`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| betwixt_control::fuzzing::kubeconfig(data));
