#![no_main]
//! Fuzz target `completion_request`: see `xinference_core::runtime::fuzzing::completion_request`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| xinference_core::runtime::fuzzing::completion_request(data));
