#![no_main]
//! Fuzz target `chat_template`: see `xinference_core::runtime::fuzzing::chat_template`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| xinference_core::runtime::fuzzing::chat_template(data));
