//! See `fuzzing::config_file` (crates/fuzzing) for the input's shape and what is checked.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::config_file(data));
