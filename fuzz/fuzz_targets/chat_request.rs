#![no_main]
//! Fuzz target `chat_request`: see `xinference_core::runtime::fuzzing::chat_request`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| xinference_core::runtime::fuzzing::chat_request(data));
