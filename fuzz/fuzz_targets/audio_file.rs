#![no_main]
//! Fuzz target `audio_file`: see `xinference_core::runtime::fuzzing::audio_file`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| xinference_core::runtime::fuzzing::audio_file(data));
