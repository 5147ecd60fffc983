//! See `fuzzing::dynamo_items` (crates/fuzzing) for the input's shape and what is checked.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::dynamo_items(data));
