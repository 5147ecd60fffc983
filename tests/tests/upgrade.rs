//! A rolling upgrade of hashell, one daemon at a time, from a real older build: the last
//! commit before the DCS layout carried a schema version (`e2e::UPGRADE_FROM`, built by
//! `scripts/build-old-hashell.sh`). While old and new daemons share the cluster, each
//! side reads every record the other writes, a switchover between them works, and no
//! acknowledged write is lost.

use e2e::{Cluster, Options};
use std::time::Duration;

/// `GET /cluster` of node `i`.
fn cluster(c: &Cluster, i: usize) -> serde_json::Value {
    c.api(i, "GET", "/cluster", "", None).1
}

/// What node `i` (a new daemon) says about the layout: the cluster's version and each
/// member's, by name.
fn schemas(c: &Cluster, i: usize) -> (u64, Vec<(String, u64)>) {
    let doc = cluster(c, i);
    let members = doc["members"].as_array().cloned().unwrap_or_default();
    let each =
        members.iter().map(|m| (m["name"].as_str().unwrap_or("").to_string(), m["schema"].as_u64().unwrap_or(0)));
    (doc["schema"].as_u64().unwrap_or(0), each.collect())
}

/// No daemon of either build saw a record it could not decode.
fn no_corrupt_keys(c: &Cluster) {
    for i in 0..c.nodes.len() {
        let doc = cluster(c, i);
        assert_eq!(doc["corrupt"], serde_json::json!([]), "{} cannot read: {doc}", c.nodes[i].name);
        let log = std::fs::read_to_string(c.nodes[i].log()).unwrap_or_default();
        let bad: Vec<&str> = log.lines().filter(|l| l.contains("corrupt value in the DCS")).collect();
        assert!(bad.is_empty(), "{} logged undecodable records:\n{}", c.nodes[i].name, bad.join("\n"));
    }
}

fn switchover(c: &Cluster, via: usize, to: usize) {
    let body = format!(r#"{{"candidate":"{}"}}"#, c.nodes[to].name);
    let (code, done) = c.api(via, "POST", "/switchover", &body, None);
    assert_eq!(code, 200, "switchover to {} through {}: {done}", c.nodes[to].name, c.nodes[via].name);
    assert_eq!(c.wait_healthy(Duration::from_secs(90)), to, "after the switchover");
}

#[test]
fn a_rolling_upgrade_from_the_unversioned_layout_keeps_the_cluster_and_its_writes() {
    let old = e2e::old_daemon(e2e::UPGRADE_FROM);
    let new = e2e::daemon_exe();
    let mut c = Cluster::start(Options { daemon: Some(old.clone()), ..Options::default() });
    let p = c.wait_healthy(Duration::from_secs(120));
    let (r1, r2) = ((p + 1) % 3, (p + 2) % 3);
    c.psql(p, "CREATE TABLE probe (id bigserial PRIMARY KEY, node text NOT NULL)").unwrap();
    let prober = e2e::Prober::start(&c);
    std::thread::sleep(Duration::from_secs(1));

    // 1. One replica on the new build. Its daemon restarts, PostgreSQL keeps running.
    c.kill_daemon(r1);
    c.start_daemon_with(r1, &new);
    assert_eq!(c.wait_healthy(Duration::from_secs(60)), p);
    let (cluster_schema, members) = c.wait_for("the new member's record", Duration::from_secs(30), |c| {
        let s = schemas(c, r1);
        s.1.iter().any(|(n, v)| n == &c.nodes[r1].name && *v == hacore::SCHEMA as u64).then_some(s)
    });
    assert_eq!(cluster_schema, 1, "the old members read version 1 only: {members:?}");
    for (name, v) in &members {
        let want = if name == &c.nodes[r1].name { hacore::SCHEMA as u64 } else { 1 };
        assert_eq!(*v, want, "{name}: {members:?}");
    }
    no_corrupt_keys(&c);

    // 2. A switchover asked of an old daemon, to the new one: the old primary hands over,
    //    the new build promotes, the other old one follows it.
    switchover(&c, p, r1);
    no_corrupt_keys(&c);

    // 3. The other two, the old primary among them, and a switchover between new builds.
    c.kill_daemon(p);
    c.start_daemon_with(p, &new);
    assert_eq!(c.wait_healthy(Duration::from_secs(60)), r1);
    c.kill_daemon(r2);
    c.start_daemon_with(r2, &new);
    assert_eq!(c.wait_healthy(Duration::from_secs(60)), r1);
    let (cluster_schema, members) = c.wait_for("every member on the new layout", Duration::from_secs(30), |c| {
        let s = schemas(c, p);
        (s.0 == hacore::SCHEMA as u64).then_some(s)
    });
    assert_eq!(cluster_schema, hacore::SCHEMA as u64);
    assert!(members.iter().all(|(_, v)| *v == hacore::SCHEMA as u64), "{members:?}");
    switchover(&c, r2, p);
    no_corrupt_keys(&c);

    // Every acknowledged write, on whichever build's primary took it, is on the last one.
    std::thread::sleep(Duration::from_secs(1));
    let acks = prober.finish();
    let ids: Vec<String> = acks.iter().flat_map(|a| a.ids.iter().map(i64::to_string)).collect();
    assert!(ids.len() > 50, "only {} acknowledged writes", ids.len());
    let present = c.psql(p, &format!("SELECT count(*) FROM probe WHERE id IN ({})", ids.join(","))).unwrap();
    assert_eq!(present, ids.len().to_string(), "acknowledged writes lost during the rolling upgrade");
    eprintln!("rolling upgrade: {} acknowledged writes, all present", ids.len());
}
