#![no_main]
//! Fuzz target `safetensors_file`: see `xinference_core::runtime::fuzzing::safetensors_file`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| xinference_core::runtime::fuzzing::safetensors_file(data));
