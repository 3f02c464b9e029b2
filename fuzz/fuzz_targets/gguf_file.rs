#![no_main]
//! Fuzz target `gguf_file`: see `xinference_core::runtime::fuzzing::gguf_file`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| xinference_core::runtime::fuzzing::gguf_file(data));
