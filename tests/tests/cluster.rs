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
    assert_eq!(slots, want.join(","), "each replica streams through its own slot\n{}", c.table());
    // The server is the major of the binaries under test ($PG_BIN: scripts/test.sh runs
    // this file again on other majors), not whatever else is installed.
    let major = hashell::pg::ctl::supported_major(&e2e::pg_bin()).unwrap();
    let server = c.psql(p, "SELECT current_setting('server_version_num')::int / 10000").unwrap();
    assert_eq!(server, major.to_string(), "server version against {}", e2e::pg_bin().display());
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
    c.kill_guards(old);
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

#[test]
fn a_postgres_crash_on_the_primary_is_restarted_in_place() {
    let c = Cluster::start(Options::default());
    let p = c.wait_healthy(Duration::from_secs(120));
    c.psql(p, "CREATE TABLE t (id int primary key)").unwrap();
    let before = c.postmaster(p).expect("running");
    let crashed = Instant::now();
    c.kill_postgres(p);
    c.wait_for("writes back on the same node", Duration::from_secs(60), |c| {
        (c.postmaster(p).is_some_and(|pid| pid != before) && c.psql(p, "INSERT INTO t VALUES (1)").is_ok())
            .then_some(())
    });
    eprintln!("writes back {:?} after the crash", crashed.elapsed());
    assert_eq!(c.wait_healthy(Duration::from_secs(60)), p, "no failover for a crash the leader can repair");
    let term = c.status(p).unwrap()["term"].as_u64().unwrap();
    assert_eq!(term, 1, "the leader kept its term");
    // Every daemon keeps the cluster settings it applied next to its data directory, for
    // the next start (a store holding invalid settings then cannot send it back to the
    // file's).
    for n in &c.nodes {
        let cache = hashell::config::sibling(&n.data(), "settings.json");
        let text = std::fs::read_to_string(&cache).unwrap_or_else(|e| panic!("{}: {e}", cache.display()));
        let s: hacore::ClusterSettings = serde_json::from_str(&text).expect("the cache parses");
        assert!(s.validate(&hacore::Safety::default()).is_ok(), "the cached settings are valid: {text}");
    }
}

/// Runs the CLI against node `i`'s configuration: success, and stdout and stderr.
fn cli(c: &Cluster, i: usize, args: &[&str]) -> (bool, String) {
    let (code, out, err) = c.cli(i, args);
    (code == 0, format!("{out}{err}"))
}

#[test]
fn switchover_to_a_named_candidate_then_to_the_best_then_a_manual_failover() {
    let mut c = Cluster::start(Options::default());
    let first = c.wait_healthy(Duration::from_secs(120));
    c.psql(first, "CREATE TABLE probe (id bigserial PRIMARY KEY, node text NOT NULL)").unwrap();
    let named = (first + 1) % 3;
    let prober = e2e::Prober::start(&c);
    std::thread::sleep(Duration::from_secs(1));
    let (ok, out) = cli(&c, first, &["switchover", "--candidate", &c.nodes[named].name.clone()]);
    assert!(ok, "switchover failed: {out}\n{}", c.table());
    assert_eq!(c.wait_healthy(Duration::from_secs(60)), named, "{out}");
    std::thread::sleep(Duration::from_secs(1));
    let acks = prober.finish();
    let last_old = *acks[first].times.last().unwrap();
    let first_new = *acks[named].times.iter().find(|&&t| t > last_old).expect("writes on the new primary");
    assert!(acks[named].times.iter().all(|&t| t > last_old), "both nodes took writes at once");
    eprintln!("switchover write gap {:?}", first_new.duration_since(last_old).unwrap());

    let (ok, out) = cli(&c, named, &["switchover"]);
    assert!(ok, "switchover to the best replica failed: {out}");
    let best = c.wait_healthy(Duration::from_secs(60));
    assert_ne!(best, named, "{out}");

    // Manual failover: the leader is gone; the operator names who takes over.
    let target = (0..3).find(|&i| i != best).unwrap();
    c.kill_daemon(best);
    c.kill_guards(best);
    c.kill_postgres(best);
    let (ok, out) = cli(&c, target, &["failover", "--candidate", &c.nodes[target].name.clone()]);
    assert!(ok, "manual failover failed: {out}\n{}", c.table());
    c.wait_for("the named node to lead", Duration::from_secs(60), |c| (c.primaries() == vec![target]).then_some(()));
    c.start_daemon(best);
    assert_eq!(c.wait_healthy(Duration::from_secs(120)), target);
}

#[test]
fn synchronous_mode_keeps_every_acknowledged_commit_through_a_primary_crash() {
    let mut c = Cluster::start(Options { settings: "synchronous_mode = \"on\"".into(), ..Options::default() });
    let old = c.wait_healthy(Duration::from_secs(120));
    c.wait_for("a synchronous standby", Duration::from_secs(30), |c| {
        let s = c.psql(old, "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'").ok()?;
        (s == "1").then_some(())
    });
    c.psql(old, "CREATE TABLE probe (id bigserial PRIMARY KEY, node text NOT NULL)").unwrap();
    let prober = e2e::Prober::start(&c);
    std::thread::sleep(Duration::from_secs(2));
    c.kill_daemon(old);
    c.kill_guards(old);
    c.kill_postgres(old);
    let new = c.wait_for("a new primary", Duration::from_secs(60), |c| {
        let p = c.primaries();
        (p.len() == 1 && p[0] != old).then(|| p[0])
    });
    std::thread::sleep(Duration::from_secs(1));
    let acks = prober.finish();
    let acked = &acks[old].ids;
    assert!(acked.len() > 10, "the old primary acknowledged only {} commits", acked.len());
    let list: Vec<String> = acked.iter().map(i64::to_string).collect();
    let present = c.psql(new, &format!("SELECT count(*) FROM probe WHERE id IN ({})", list.join(","))).unwrap();
    assert_eq!(present, acked.len().to_string(), "acknowledged commits lost in synchronous mode");
    eprintln!("{} acknowledged commits of the old primary, all present on {}", acked.len(), c.nodes[new].name);
}

#[test]
fn restarting_the_daemons_leaves_postgres_running_and_the_roles_unchanged() {
    let mut c = Cluster::start(Options::default());
    let p = c.wait_healthy(Duration::from_secs(120));
    let replica = (p + 1) % 3;
    let (p_pid, r_pid) = (c.postmaster(p).unwrap(), c.postmaster(replica).unwrap());
    let conninfo = std::fs::read_to_string(c.nodes[replica].data().join("postgresql.conf")).unwrap();
    c.psql(p, "CREATE TABLE probe (id bigserial PRIMARY KEY, node text NOT NULL)").unwrap();
    let prober = e2e::Prober::start(&c);
    std::thread::sleep(Duration::from_secs(1));
    // A replica's daemon, then the primary's: the guard keeps the primary's deadline
    // across the restart, so the new daemon adopts it and claims its own record.
    c.kill_daemon(replica);
    c.start_daemon(replica);
    c.kill_daemon(p);
    c.start_daemon(p);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(c.wait_healthy(Duration::from_secs(60)), p, "the primary kept its role");
    let acks = prober.finish();
    assert_eq!(c.postmaster(p), Some(p_pid), "the primary's PostgreSQL was restarted");
    assert_eq!(c.postmaster(replica), Some(r_pid), "the replica's PostgreSQL was restarted");
    let after = std::fs::read_to_string(c.nodes[replica].data().join("postgresql.conf")).unwrap();
    assert_eq!(after, conninfo, "the replica's configuration changed across a daemon restart");
    assert!(c.nodes[replica].data().join("standby.signal").exists());
    let times = &acks[p].times;
    let worst = times.windows(2).map(|w| w[1].duration_since(w[0]).unwrap_or_default()).max().unwrap();
    eprintln!("longest gap between acknowledged writes across both restarts: {worst:?}");
    assert!(worst < Duration::from_secs(2), "writes paused {worst:?} while the primary's daemon restarted");
}
