#![no_main]
//! Fuzz target `safetensors_config`: see `xinference_core::runtime::fuzzing::safetensors_config`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| xinference_core::runtime::fuzzing::safetensors_config(data));
