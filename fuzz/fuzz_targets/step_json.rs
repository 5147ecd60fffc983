//! See `fuzzing::step_json` (crates/fuzzing) for the input's shape and what is checked.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::step_json(data));
