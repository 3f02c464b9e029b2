#![no_main]
//! Fuzz target `image_upload`: see `xinference_core::runtime::fuzzing::image_upload`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| xinference_core::runtime::fuzzing::image_upload(data));
