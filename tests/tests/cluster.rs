//! A real 3-node cluster: bootstrap, failover, rejoin.

use e2e::{Cluster, Options};
use std::time::Duration;

#[test]
fn three_nodes_bootstrap_into_one_primary_and_two_streaming_replicas_with_slots() {
    let c = Cluster::start(Options::default());
    let p = c.wait_healthy(Duration::from_secs(120));
    let slots = c
        .psql(p, "SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_replication_slots WHERE active")
        .unwrap();
    let mut want: Vec<String> = (0..3).filter(|&i| i != p).map(|i| c.nodes[i].name.clone()).collect();
    want.sort();
    assert_eq!(slots, want.join(","), "each replica streams through its own slot\n{}", c.describe());
    c.psql(p, "CREATE TABLE t (id int primary key, node text); INSERT INTO t VALUES (1, 'first')").unwrap();
    for i in (0..3).filter(|&i| i != p) {
        c.wait_for("the row on every replica", Duration::from_secs(20), |c| {
            (c.psql(i, "SELECT node FROM t WHERE id = 1").ok()? == "first").then_some(())
        });
        assert_eq!(c.probe(i, "/replica"), Some(200));
        assert_eq!(c.probe(i, "/primary"), Some(503));
    }
}
