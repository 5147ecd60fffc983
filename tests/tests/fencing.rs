//! S1 on real processes: when the primary's daemon freezes, dies, or loses its guard,
//! PostgreSQL there stops accepting writes before any other node is promoted. Every commit
//! is tagged with the node that took it; any commit acknowledged by the old primary after
//! the new one started promoting is a failure.

use e2e::{log_time, Cluster, Options, Prober};
use std::time::{Duration, SystemTime};

const PROBE_TABLE: &str =
    "CREATE TABLE probe (id bigserial PRIMARY KEY, node text NOT NULL, at timestamptz DEFAULT clock_timestamp())";

/// Runs the prober across `fault` and a failover; returns the cluster, the old and the new
/// primary after checking that no commit on the old one overlaps the new one's reign.
fn failover_after(fault: impl FnOnce(&mut Cluster, usize)) -> (Cluster, usize, usize) {
    let mut c = Cluster::start(Options::default());
    let old = c.wait_healthy(Duration::from_secs(120));
    c.psql(old, PROBE_TABLE).unwrap();
    let prober = Prober::start(&c);
    std::thread::sleep(Duration::from_secs(1));
    fault(&mut c, old);
    let new = c.wait_for("a new primary", Duration::from_secs(60), |c| {
        let p = c.primaries();
        (p.len() == 1 && p[0] != old).then(|| p[0])
    });
    std::thread::sleep(Duration::from_secs(2));
    let acks = prober.finish();
    let promoted = log_time(&c.nodes[new].log(), "PostgreSQL operation started action=Promote")
        .expect("the new primary's log records when it started promoting");
    let last_old = *acks[old].times.last().expect("the old primary took writes before the fault");
    assert!(!acks[new].times.is_empty(), "the new primary took no writes");
    let gap = promoted.duration_since(last_old).unwrap_or_else(|e| {
        panic!("{} acknowledged a commit {:?} after {} started promoting", acks[old].node, e.duration(), acks[new].node)
    });
    let first_new = acks[new].times[0];
    eprintln!(
        "last commit on {} {:?} before {} started promoting; write gap {:?}",
        acks[old].node,
        gap,
        acks[new].node,
        first_new.duration_since(last_old).unwrap_or_default()
    );
    let commits = commits_past_the_fork(&c, old, new);
    let late: Vec<&SystemTime> = commits.iter().filter(|&&t| t >= promoted).collect();
    assert!(late.is_empty(), "the old primary's WAL has {} commits after the promotion began", late.len());
    eprintln!("{} commit records in the old primary's WAL past the fork, all before the promotion", commits.len());
    for (i, a) in acks.iter().enumerate() {
        if i != old && i != new {
            assert!(a.times.is_empty(), "{} was never primary but acknowledged {} commits", a.node, a.times.len());
        }
    }
    (c, old, new)
}

/// Commit times in the old primary's WAL after the point where the new primary forked
/// (read with pg_waldump before anything can rewind it away): evidence of a dual writer
/// even for commits no client saw acknowledged.
fn commits_past_the_fork(c: &Cluster, old: usize, new: usize) -> Vec<SystemTime> {
    let tl = c.status(new).and_then(|s| s["timeline"].as_u64()).expect("the new primary's timeline") as u32;
    let history = hashell::pg::files::read_history(&c.nodes[new].data(), hacore::Timeline(tl)).expect("history file");
    let fork = history.last().expect("a fork").lsn;
    let out = std::process::Command::new(hashell::pg::testing::pg_bin().join("pg_waldump"))
        .arg("--path")
        .arg(c.nodes[old].data().join("pg_wal"))
        .arg(format!("--timeline={}", history.last().unwrap().timeline.0))
        .arg(format!("--start={fork}"))
        .env("TZ", "UTC")
        .output()
        .expect("pg_waldump");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| {
            let rest = l.split("desc: COMMIT ").nth(1)?;
            let mut w = rest.split_whitespace();
            let (date, time) = (w.next()?, w.next()?);
            e2e::parse_rfc3339(&format!("{date}T{time}Z"))
        })
        .collect()
}

fn guard_fired(c: &Cluster, i: usize) -> bool {
    let log = format!("{}.guard.log", c.nodes[i].data().display());
    std::fs::read_to_string(log).unwrap_or_default().contains("killed PostgreSQL")
}

#[test]
fn a_frozen_primary_daemon_is_fenced_by_its_guard_before_another_node_promotes() {
    let (c, old, _) = failover_after(|c, old| c.signal_daemon(old, libc::SIGSTOP));
    assert!(guard_fired(&c, old), "the guard did not kill the frozen node's PostgreSQL");
    c.signal_daemon(old, libc::SIGCONT);
    c.wait_for("the thawed node to rejoin as a replica", Duration::from_secs(120), |c| {
        (c.probe(old, "/replica") == Some(200)).then_some(())
    });
}

#[test]
fn a_killed_primary_daemon_that_never_returns_is_fenced_by_its_guard() {
    let (c, old, _) = failover_after(|c, old| c.kill_daemon(old));
    assert!(guard_fired(&c, old), "the guard did not kill PostgreSQL of the dead daemon");
    assert_eq!(c.postmaster(old), None, "PostgreSQL still runs on the node whose daemon died");
    c.wait_for("the orphaned guard to exit", Duration::from_secs(30), |c| c.guards(old).is_empty().then_some(()));
}

#[test]
fn a_primary_that_loses_its_guard_stops_writing_at_once() {
    let c = Cluster::start(Options::default());
    let p = c.wait_healthy(Duration::from_secs(120));
    c.psql(p, PROBE_TABLE).unwrap();
    let before = c.postmaster(p).expect("the primary runs");
    let prober = Prober::start(&c);
    std::thread::sleep(Duration::from_secs(1));
    let killed_at = SystemTime::now();
    c.kill_guards(p);
    c.wait_for("the primary's PostgreSQL to be fenced", Duration::from_secs(10), |c| {
        (c.postmaster(p) != Some(before)).then_some(())
    });
    let fenced_after = killed_at.elapsed().unwrap();
    let back = c.wait_healthy(Duration::from_secs(120));
    let acks = prober.finish();
    eprintln!("fenced {fenced_after:?} after the guard died; primary now {}", c.nodes[back].name);
    let log = std::fs::read_to_string(c.nodes[p].log()).unwrap();
    assert!(log.contains("guard_lost"), "the daemon did not report the lost guard");
    // One writer at a time: all acknowledged commits came from the old primary until its
    // fence, then from whoever leads now.
    for (i, a) in acks.iter().enumerate() {
        if i != p && i != back {
            assert!(a.times.is_empty(), "{} acknowledged commits without leading", a.node);
        }
    }
}
