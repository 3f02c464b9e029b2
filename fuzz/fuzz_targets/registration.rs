#![no_main]
//! Fuzz target `registration`: see `xinference_core::runtime::fuzzing::registration`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| xinference_core::runtime::fuzzing::registration(data));
