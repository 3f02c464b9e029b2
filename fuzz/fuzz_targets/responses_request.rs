#![no_main]
//! Fuzz target `responses_request`: see `xinference_core::runtime::fuzzing::responses_request`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| xinference_core::runtime::fuzzing::responses_request(data));
