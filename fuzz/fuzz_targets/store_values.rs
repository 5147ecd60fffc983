//! Whatever the store holds under the cluster's prefix decodes into a view without a panic
//! (bad values are reported as corrupt keys), and the core steps on that view, as leader,
//! replica and candidate, without a panic. The input is split into key/value pairs at
//! 0xff bytes; keys get the cluster's prefix so they reach the decoders.
#![no_main]

use backend_etcd::codec::{decode_view, Prefix, RawKv};
use hacore::testing::scenario::Scenario;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let prefix = Prefix::new("service", "c");
    let parts: Vec<&[u8]> = data.split(|b| *b == 0xff).collect();
    let pairs: Vec<(Vec<u8>, &[u8])> = parts
        .chunks(2)
        .map(|c| {
            let mut key = b"/service/c/".to_vec();
            key.extend_from_slice(c[0]);
            (key, c.get(1).copied().unwrap_or(&[]))
        })
        .collect();
    let raw = pairs.iter().enumerate().map(|(i, (k, v))| RawKv { key: k, value: v, mod_revision: i as i64 + 1 });
    let view = decode_view(&prefix, raw, 1_000);
    for who in ["n1", "n2", "n9"] {
        let mut s = Scenario::cluster3(who).at(50_000);
        s.obs.dcs = Ok(view.clone());
        let d = s.step();
        // A second step with the memory the first returned.
        s.mem = d.memory;
        s.now += 1_000;
        let _ = s.step();
    }
});
