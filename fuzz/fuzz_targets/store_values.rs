//! Store values under the cluster's etcd prefix; see `fuzzing::store_values`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::store_values(data));
