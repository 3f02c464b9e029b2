#![no_main]
//! Fuzz target `rerank_request`: see `xinference_core::runtime::fuzzing::rerank_request`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| xinference_core::runtime::fuzzing::rerank_request(data));
