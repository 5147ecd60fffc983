//! The store goes away: with failsafe mode the primary keeps writing while every member
//! confirms it; without it, and when only the primary loses the store, the primary fences.

use e2e::{Cluster, Options, Prober};
use std::time::{Duration, Instant, SystemTime};

const PROBE_TABLE: &str = "CREATE TABLE probe (id bigserial PRIMARY KEY, node text NOT NULL)";

/// The longest interval between consecutive acknowledgements inside [from, to].
fn longest_gap(times: &[SystemTime], from: SystemTime, to: SystemTime) -> Duration {
    let mut prev = from;
    let mut worst = Duration::ZERO;
    for &t in times.iter().filter(|&&t| t >= from && t <= to).chain(std::iter::once(&to)) {
        worst = worst.max(t.duration_since(prev).unwrap_or_default());
        prev = t;
    }
    worst
}

#[test]
fn etcd_frozen_with_failsafe_the_primary_keeps_writing() {
    let c = Cluster::start(Options { settings: "failsafe_mode = true".into(), ..Options::default() });
    let p = c.wait_healthy(Duration::from_secs(120));
    c.psql(p, PROBE_TABLE).unwrap();
    std::thread::sleep(Duration::from_secs(3)); // the failsafe set is published
    let prober = Prober::start(&c);
    std::thread::sleep(Duration::from_secs(1));
    let frozen = SystemTime::now();
    c.etcd.freeze();
    std::thread::sleep(Duration::from_secs(25)); // 2.5 ttl
    let thawed = SystemTime::now();
    c.etcd.thaw();
    // etcd revokes the expired leases when it resumes; whether the primary's renewal gets in
    // first is a race, so the primary may fence and an election follow. Either way the
    // cluster converges, and during the outage the primary kept writing.
    let after = c.wait_healthy(Duration::from_secs(120));
    let acks = prober.finish();
    let gap = longest_gap(&acks[p].times, frozen, thawed);
    eprintln!(
        "longest write gap on the primary during a 25 s etcd freeze: {gap:?}; primary after the thaw: {}",
        c.nodes[after].name
    );
    assert!(gap < Duration::from_secs(5), "the primary stopped writing for {gap:?} during the outage");
}

#[test]
fn etcd_frozen_without_failsafe_the_primary_fences() {
    let c = Cluster::start(Options::default());
    let p = c.wait_healthy(Duration::from_secs(120));
    c.psql(p, PROBE_TABLE).unwrap();
    let prober = Prober::start(&c);
    std::thread::sleep(Duration::from_secs(1));
    let frozen = Instant::now();
    c.etcd.freeze();
    c.wait_for("the primary to stop accepting writes", Duration::from_secs(20), |c| {
        c.psql(p, "INSERT INTO probe (node) VALUES ('check')").is_err().then_some(())
    });
    let fenced_after = frozen.elapsed();
    c.etcd.thaw();
    c.wait_healthy(Duration::from_secs(120));
    let acks = prober.finish();
    eprintln!("fenced {fenced_after:?} after etcd froze (ttl 10 s)");
    assert!(fenced_after < Duration::from_secs(10), "the primary outlived its lease: {fenced_after:?}");
    assert!(acks[p].times.len() > 5);
}

#[test]
fn only_the_primary_cut_off_from_etcd_fences_and_another_node_takes_over() {
    let c = Cluster::start(Options::default());
    let old = c.wait_healthy(Duration::from_secs(120));
    c.psql(old, PROBE_TABLE).unwrap();
    let prober = Prober::start(&c);
    std::thread::sleep(Duration::from_secs(1));
    c.dcs_path(old).set_cut(true);
    let new = c.wait_for("a new primary", Duration::from_secs(60), |c| {
        let p = c.primaries();
        (p.len() == 1 && p[0] != old).then(|| p[0])
    });
    std::thread::sleep(Duration::from_secs(2));
    let acks = prober.finish();
    let promoted = e2e::log_time(&c.nodes[new].log(), "PostgreSQL operation started action=Promote").unwrap();
    let last_old = *acks[old].times.last().unwrap();
    assert!(
        last_old < promoted,
        "the cut-off primary acknowledged a commit after {} began promoting",
        c.nodes[new].name
    );
    eprintln!("cut-off primary's last commit {:?} before the promotion", promoted.duration_since(last_old).unwrap());
    c.dcs_path(old).set_cut(false);
    assert_eq!(c.wait_healthy(Duration::from_secs(120)), new);
}
