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

/// The history key overwritten by hand with bytes nobody can decode: the primary writes it
/// again from its own timeline history (the fork of the switchover before it included),
/// and a failover afterwards works, judged against the rebuilt history.
#[test]
fn an_undecodable_history_key_is_written_again_by_the_primary() {
    let mut c = Cluster::start(Options::default());
    let first = c.wait_healthy(Duration::from_secs(120));
    let named = (first + 1) % 3;
    let (code, out, err) = c.cli(first, &["switchover", "--candidate", &c.nodes[named].name.clone()]);
    assert_eq!(code, 0, "switchover failed: {out}{err}\n{}", c.table());
    assert_eq!(c.wait_healthy(Duration::from_secs(60)), named);
    let key = "/service/local/history";
    let forks = |c: &Cluster| -> Option<Vec<serde_json::Value>> {
        let raw = c.etcd.etcdctl(&["get", "--print-value-only", key]);
        let doc: serde_json::Value = serde_json::from_str(raw.trim()).ok()?;
        doc["forks"].as_array().cloned()
    };
    let before = forks(&c).expect("a history after the switchover");
    assert_eq!(before.last().map(|f| f["timeline"].clone()), Some(serde_json::json!(2)), "{before:?}");

    c.etcd.etcdctl(&["put", key, "not json"]);
    let rebuilt = c.wait_for("the primary to write the history again", Duration::from_secs(30), forks);
    let last = rebuilt.last().expect("the rebuilt history holds the switchover's fork");
    assert_eq!((last["parent"].clone(), last["timeline"].clone()), (serde_json::json!(1), serde_json::json!(2)));
    assert_eq!(last["lsn"], before.last().unwrap()["lsn"], "the fork point from the timeline history file");
    let log = std::fs::read_to_string(c.nodes[named].log()).unwrap();
    assert!(log.contains("rebuilt from the local timeline history"), "no history_corrected event:\n{log}");

    // Judged against the rebuilt history, a failover still happens and the old primary rejoins.
    c.kill_daemon(named);
    c.kill_guards(named);
    c.kill_postgres(named);
    let new = c.wait_for("a new primary", Duration::from_secs(60), |c| {
        let p = c.primaries();
        (p.len() == 1 && p[0] != named).then(|| p[0])
    });
    c.start_daemon(named);
    assert_eq!(c.wait_healthy(Duration::from_secs(120)), new, "{}", c.table());
}
