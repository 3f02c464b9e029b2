#![no_main]
//! Fuzz target `embedding_request`: see `xinference_core::runtime::fuzzing::embedding_request`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| xinference_core::runtime::fuzzing::embedding_request(data));
