#![no_main]
//! Fuzz target `anthropic_messages`: see `xinference_core::runtime::fuzzing::anthropic_messages`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| xinference_core::runtime::fuzzing::anthropic_messages(data));
