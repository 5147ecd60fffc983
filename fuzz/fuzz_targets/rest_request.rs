//! See `fuzzing::rest_request` (crates/fuzzing) for the input's shape and what is checked.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::rest_request(data));
