#![no_main]
//! Fuzz target `tokenizer_json`: see `xinference_core::runtime::fuzzing::tokenizer_json`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| xinference_core::runtime::fuzzing::tokenizer_json(data));
