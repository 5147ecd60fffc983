//! A standby cluster (a disaster-recovery site) on real PostgreSQL: a second cluster,
//! with its own etcd, whose leader replicates from the first cluster's primary and whose
//! other member cascades from that leader. Nobody in it accepts writes; it fails over
//! among its own members; `hashell promote-cluster` makes it a writable primary cluster.

use e2e::{Cluster, Options};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

fn count(c: &Cluster, i: usize) -> Option<String> {
    c.psql(i, "SELECT count(*) FROM t").ok()
}

fn role(c: &Cluster, i: usize) -> String {
    c.status(i).and_then(|s| s["role"].as_str().map(str::to_string)).unwrap_or_default()
}

/// Waits for one standby leader in `c` and every other member replicating with `rows`
/// rows; returns the standby leader.
fn wait_standby_cluster(c: &Cluster, rows: &str) -> usize {
    c.wait_for(&format!("a standby leader and a replica, both with {rows} rows"), LIMIT, |c| {
        let leaders: Vec<usize> = (0..c.nodes.len()).filter(|&i| role(c, i) == "standby_leader").collect();
        let [l] = leaders[..] else { return None };
        let all = (0..c.nodes.len()).all(|i| count(c, i).as_deref() == Some(rows));
        let replicas = (0..c.nodes.len()).filter(|&i| i != l).all(|i| role(c, i) == "replica");
        (all && replicas).then_some(l)
    })
}

#[test]
fn a_standby_cluster_follows_the_primary_cluster_fails_over_and_is_promoted() {
    let mut a = Cluster::start(Options { nodes: 2, ..Options::default() });
    let pa = a.wait_healthy(LIMIT);
    a.psql(pa, "CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 100)").unwrap();

    let upstream = format!("host=127.0.0.1 port={}", a.nodes[pa].pg_port);
    let settings = format!("standby_cluster = {{ pg_url = \"{upstream}\" }}\n");
    let mut b = Cluster::start(Options { nodes: 2, settings, ..Options::default() });
    let sl = wait_standby_cluster(&b, "100");
    let other = 1 - sl;

    // Same database, nobody writable in the standby cluster, the health endpoints say so.
    assert_eq!(
        b.psql(sl, "SELECT system_identifier FROM pg_control_system()").unwrap(),
        a.psql(pa, "SELECT system_identifier FROM pg_control_system()").unwrap()
    );
    assert!(b.primaries().is_empty(), "a standby cluster has no primary:\n{}", b.table());
    assert_eq!(b.probe(sl, "/standby-leader"), Some(200));
    assert_eq!(b.probe(sl, "/leader"), Some(200), "Patroni's /leader: holds the leader lock");
    assert_eq!(b.probe(other, "/standby-leader"), Some(503));
    assert_eq!(b.probe(other, "/replica"), Some(200));
    let refused = b.psql(sl, "INSERT INTO t VALUES (0)").unwrap_err();
    assert!(refused.contains("read-only"), "{refused}");
    // The leader streams from the upstream, the other member from the leader (cascading).
    let from = b.psql(sl, "SELECT sender_port FROM pg_stat_wal_receiver WHERE status = 'streaming'");
    assert_eq!(from.unwrap(), a.nodes[pa].pg_port.to_string());
    let from = b.psql(other, "SELECT sender_port FROM pg_stat_wal_receiver WHERE status = 'streaming'");
    assert_eq!(from.unwrap(), b.nodes[sl].pg_port.to_string());
    a.psql(pa, "INSERT INTO t SELECT generate_series(101, 200)").unwrap();
    wait_standby_cluster(&b, "200");

    // The standby leader's node dies: the other member takes over and streams from the
    // upstream; the old leader comes back as its replica.
    b.kill_node(sl);
    b.wait_for("the other member leading the standby cluster", LIMIT, |b| {
        (role(b, other) == "standby_leader").then_some(())
    });
    a.psql(pa, "INSERT INTO t SELECT generate_series(201, 300)").unwrap();
    b.wait_for("new rows through the new standby leader", LIMIT, |b| (count(b, other)? == "300").then_some(()));
    b.start_daemon(sl);
    assert_eq!(wait_standby_cluster(&b, "300"), other);
    assert!(b.primaries().is_empty(), "still no primary:\n{}", b.table());

    // The primary site is lost for good: promote the standby cluster.
    a.kill_node(pa);
    let (code, out, err) = b.cli(0, &["promote-cluster", "--force", "--wait", "60"]);
    assert_eq!(code, 0, "promote-cluster: {out}{err}\n{}", b.table());
    assert!(out.contains("promoted"), "{out}");
    let p = b.wait_healthy(LIMIT);
    assert_eq!(p, other, "the standby leader is the one promoted");
    b.psql(p, "INSERT INTO t SELECT generate_series(301, 310)").unwrap();
    b.wait_for("the promoted cluster's writes on its replica", LIMIT, |b| (count(b, sl)? == "310").then_some(()));
    let (code, history, _) = b.cli(0, &["history", "--format", "json"]);
    assert_eq!(code, 0);
    let forks: serde_json::Value = serde_json::from_str(&history).unwrap();
    let last = forks.as_array().and_then(|f| f.last()).cloned().unwrap_or_default();
    assert_eq!(last["cause"], "cluster_promotion", "{history}");
    assert_eq!(last["node"], b.nodes[p].name.as_str(), "{history}");
    let (code, shown, _) = b.cli(0, &["show-config"]);
    assert_eq!(code, 0);
    assert!(!shown.contains("standby_cluster"), "{shown}");
}

/// What the store refuses: a primary cluster does not become a standby cluster in place.
#[test]
fn a_primary_cluster_refuses_to_become_a_standby_cluster() {
    let a = Cluster::start(Options { nodes: 1, ..Options::default() });
    let p = a.wait_healthy(LIMIT);
    let (code, out, err) =
        a.cli(0, &["edit-config", "--set", "standby_cluster={\"pg_url\": \"host=10.0.0.9 port=5432\"}"]);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("cannot become a standby cluster"), "{err}");
    let (code, out, err) = a.cli(0, &["promote-cluster", "--force"]);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("not a standby cluster"), "{err}");
    assert_eq!(a.primaries(), vec![p]);
}

/// A standby cluster fed by a WAL archive only (no `pg_url`): its first copy comes from a
/// base backup through `clone_command`, its leader replays what the archive receives, and
/// `promote-cluster` makes it writable.
#[test]
fn a_standby_cluster_replays_from_a_wal_archive_only() {
    let source = e2e::ArchivingSource::start("CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 100)");
    source.pg.psql("INSERT INTO t SELECT generate_series(101, 200)");
    source.archive_all();
    let settings = format!("standby_cluster = {{ restore_command = \"cp {}/%f %p\" }}\n", source.archive.display());
    let postgresql = format!("clone_command = \"cp -a {}/. \\\"$PGDATA\\\"\"\n", source.backup.display());
    let b = Cluster::start(Options { nodes: 1, settings, postgresql, ..Options::default() });
    let rows = |want: &'static str| {
        b.wait_for(&format!("{want} rows replayed from the archive"), LIMIT, |b| {
            (role(b, 0) == "standby_leader" && count(b, 0)? == want).then_some(())
        })
    };
    rows("200");
    assert_eq!(b.psql(0, "SHOW primary_conninfo").unwrap(), "", "no upstream to stream from");
    assert_eq!(b.psql(0, "SHOW restore_command").unwrap(), format!("cp {}/%f %p", source.archive.display()));
    source.pg.psql("INSERT INTO t SELECT generate_series(201, 300)");
    source.archive_all();
    rows("300");
    assert!(b.primaries().is_empty(), "{}", b.table());

    source.pg.stop("fast");
    let (code, out, err) = b.cli(0, &["promote-cluster", "--force"]);
    assert_eq!(code, 0, "promote-cluster: {out}{err}\n{}", b.table());
    b.wait_for("a writable primary", LIMIT, |b| (b.primaries() == vec![0]).then_some(()));
    b.psql(0, "INSERT INTO t VALUES (301)").unwrap();
    assert_eq!(count(&b, 0).as_deref(), Some("301"));
}
