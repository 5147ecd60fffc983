//! A real 3-node cluster: bootstrap, failover, rejoin.

use e2e::{Cluster, Options};
use std::time::{Duration, Instant};

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

/// Pauses (SIGSTOP) or resumes (SIGCONT) the WAL receiver of node `i`.
fn signal_walreceiver(c: &Cluster, i: usize, sig: i32) {
    let pids = e2e::processes_with(&[&format!("postgres: {}: walreceiver", c.nodes[i].name)]);
    assert!(!pids.is_empty(), "{} has no WAL receiver", c.nodes[i].name);
    for pid in pids {
        // SAFETY: kill(2) on a PostgreSQL process of this test's cluster.
        unsafe { libc::kill(pid, sig) };
    }
}

#[test]
fn a_killed_primary_node_is_replaced_and_rejoins_through_pg_rewind() {
    let mut c = Cluster::start(Options::default());
    let old = c.wait_healthy(Duration::from_secs(120));
    c.psql(old, "CREATE TABLE t (id int primary key, node text); INSERT INTO t VALUES (1, 'before')").unwrap();
    let replicas: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    for &i in &replicas {
        c.wait_for("the first row on the replicas", Duration::from_secs(20), |c| {
            (c.psql(i, "SELECT count(*) FROM t").ok()? == "1").then_some(())
        });
    }
    // Asynchronous mode: commits the replicas never receive make the old primary's WAL run
    // past the fork, so it can only rejoin after a rewind.
    for &i in &replicas {
        signal_walreceiver(&c, i, libc::SIGSTOP);
    }
    // Ends the WAL senders: the frozen receivers cannot reconnect, so nothing written from
    // now on leaves the old primary (bytes already in a socket were sent before the fork).
    c.psql(old, "SELECT pg_terminate_backend(pid) FROM pg_stat_replication").unwrap();
    c.wait_for("no WAL sender", Duration::from_secs(10), |c| {
        (c.psql(old, "SELECT count(*) FROM pg_stat_replication").ok()? == "0").then_some(())
    });
    c.psql(old, "INSERT INTO t SELECT g, 'diverged' FROM generate_series(100, 199) g").unwrap();
    let killed = Instant::now();
    c.kill_daemon(old);
    for g in c.guards(old) {
        // SAFETY: the guard of this test's node.
        unsafe { libc::kill(g, libc::SIGKILL) };
    }
    c.kill_postgres(old);
    for &i in &replicas {
        signal_walreceiver(&c, i, libc::SIGCONT);
    }
    let new = c.wait_for("a new primary", Duration::from_secs(60), |c| {
        let p = c.primaries();
        (p.len() == 1 && p[0] != old).then(|| p[0])
    });
    c.wait_for("a write on the new primary", Duration::from_secs(30), |c| {
        c.psql(new, "INSERT INTO t VALUES (2, 'after')").ok()
    });
    eprintln!("new primary {} accepting writes {:?} after the kill", c.nodes[new].name, killed.elapsed());
    c.start_daemon(old);
    assert_eq!(c.wait_healthy(Duration::from_secs(120)), new, "the new primary stays");
    c.wait_for("the old primary to replay the new timeline", Duration::from_secs(30), |c| {
        (c.psql(old, "SELECT string_agg(DISTINCT node, ',') FROM t").ok()? == "after,before").then_some(())
    });
    let log = std::fs::read_to_string(c.nodes[old].log()).unwrap();
    assert!(log.contains("Rewind"), "the old primary rejoined without a rewind:\n{log}");
    assert_eq!(c.psql(old, "SELECT count(*) FROM t WHERE node = 'diverged'").unwrap(), "0");
}
