//! The daemon on DynamoDB (a local DynamoDB-compatible server): bootstrap, a killed
//! primary replaced once its lease aged out on the others' clocks, the old node rejoining,
//! and a planned switchover. No watch: peers wake each other (`POST /wake`) and poll faster
//! while leadership is in flux.

use e2e::{daemon_exe, Cluster, Options, AWS_TEST_ENV};
use std::time::{Duration, Instant};

#[test]
fn a_cluster_on_dynamodb_fails_over_rejoins_and_switches_over() {
    let mut c = Cluster::start(Options { dynamo: true, ..Options::default() });
    let old = c.wait_healthy(Duration::from_secs(120));
    c.psql(old, "CREATE TABLE t (id int primary key, node text); INSERT INTO t VALUES (1, 'before')").unwrap();
    let killed = Instant::now();
    c.kill_node(old);
    let new = c.wait_for("a new primary", Duration::from_secs(60), |c| {
        let p = c.primaries();
        (p.len() == 1 && p[0] != old).then(|| p[0])
    });
    c.wait_for("a write on the new primary", Duration::from_secs(30), |c| {
        c.psql(new, "INSERT INTO t VALUES (2, 'after')").ok()
    });
    let gap = killed.elapsed();
    eprintln!("DynamoDB: new primary {} accepting writes {gap:?} after the kill", c.nodes[new].name);
    // The lease must age a full ttl (10 s) on the others' clocks before a takeover.
    assert!(gap >= Duration::from_secs(10), "took over after {gap:?}, before the ttl");
    c.start_daemon(old);
    assert_eq!(c.wait_healthy(Duration::from_secs(120)), new, "the new primary stays");
    c.wait_for("the old primary to replay the new timeline", Duration::from_secs(30), |c| {
        (c.psql(old, "SELECT string_agg(DISTINCT node, ',' ORDER BY node) FROM t").ok()? == "after,before")
            .then_some(())
    });

    // A planned switchover back to the old node, through the CLI.
    let out = std::process::Command::new(daemon_exe())
        .arg("switchover")
        .arg(c.nodes[new].config())
        .args(["--candidate", &c.nodes[old].name])
        .envs(AWS_TEST_ENV.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(c.wait_healthy(Duration::from_secs(60)), old);
    // No watch on DynamoDB: the nodes that moved leadership woke the others directly.
    let wakeups: f64 = (0..3)
        .filter_map(|i| hashell::local::http("GET", c.nodes[i].api_port, "/metrics", ""))
        .flat_map(|(_, m)| {
            m.lines()
                .filter_map(|l| l.strip_prefix("hashell_peer_wakeups_total ").and_then(|v| v.parse::<f64>().ok()))
                .collect::<Vec<_>>()
        })
        .sum();
    assert!(wakeups >= 1.0, "no peer wake-up was received");
}
