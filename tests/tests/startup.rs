//! Bad starts get a clear error and touch nothing on disk: a malformed configuration, an
//! unreachable DCS, a data directory that belongs to another cluster.

use e2e::{daemon_exe, Cluster, Options};
use hashell::pg::testing::PgInstance;
use std::time::Duration;

#[test]
fn a_bad_configuration_is_refused_naming_the_key() {
    let dir = std::env::temp_dir().join(format!("hashell-badconf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    let example = String::from_utf8(
        std::process::Command::new(daemon_exe()).args(["config", "example"]).output().unwrap().stdout,
    )
    .unwrap();
    let data = dir.join("data");
    let bad = example
        .replace("/var/lib/postgresql/15/main", &data.display().to_string())
        .replace("ttl = \"25s\"", "ttl = \"3s\"");
    assert!(bad.contains("ttl = \"3s\""), "the example's ttl line changed: {example}");
    std::fs::write(&file, bad).unwrap();
    let out = std::process::Command::new(daemon_exe()).arg("run").arg(&file).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("settings.ttl") && err.contains("raise ttl"), "{err}");
    assert!(!data.exists(), "a refused configuration created the data directory");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_required_watchdog_that_is_missing_is_refused_with_what_to_do() {
    let dir = std::env::temp_dir().join(format!("hashell-nowd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("wd.toml");
    let example = String::from_utf8(
        std::process::Command::new(daemon_exe()).args(["config", "example"]).output().unwrap().stdout,
    )
    .unwrap();
    let data = dir.join("data");
    let conf = example
        .replace("/var/lib/postgresql/15/main", &data.display().to_string())
        .replace("mode = \"automatic\"", "mode = \"required\"")
        .replace("device = \"/dev/watchdog\"", &format!("device = \"{}\"", dir.join("no-such-watchdog").display()));
    assert!(conf.contains("mode = \"required\""), "the example names the watchdog mode");
    std::fs::write(&file, conf).unwrap();
    let exe = hashell::local::daemon_user_exe(&daemon_exe(), &dir).unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = std::process::Command::new(exe);
    if let Some((uid, gid)) = hashell::local::run_as().unwrap() {
        use std::os::unix::process::CommandExt;
        cmd.uid(uid).gid(gid);
    }
    let out = cmd.arg("run").arg(&file).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("watchdog.mode = \"required\"") && err.contains("modprobe softdog"), "{err}");
    assert!(!data.exists(), "a refused start created the data directory");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unreachable_dcs_at_start_is_reported_and_nothing_is_touched() {
    let mut c = Cluster::start(Options { nodes: 1, ..Options::default() });
    c.kill_node(0);
    let _ = std::fs::remove_dir_all(c.nodes[0].data());
    c.etcd.kill();
    c.start_daemon(0);
    std::thread::sleep(Duration::from_secs(5));
    let log = std::fs::read_to_string(c.nodes[0].log()).unwrap();
    assert!(log.contains("cannot reach the DCS"), "{log}");
    assert!(!c.nodes[0].data().join("PG_VERSION").exists(), "bootstrapped without a DCS");
    assert_eq!(c.probe(0, "/health"), Some(503));
}

#[test]
fn a_data_directory_of_another_cluster_is_refused_and_left_alone() {
    let mut c = Cluster::start(Options { nodes: 2, ..Options::default() });
    let p = c.wait_healthy(Duration::from_secs(120));
    let other = 1 - p;
    c.kill_daemon(other);
    c.kill_postgres(other);
    // Replace the replica's data with a foreign cluster's (another initdb).
    let foreign = PgInstance::initdb();
    let data = c.nodes[other].data();
    std::fs::remove_dir_all(&data).unwrap();
    let status = std::process::Command::new("cp").arg("-a").arg(&foreign.data).arg(&data).status().unwrap();
    assert!(status.success());
    let sysid = |d: &std::path::Path| std::fs::read(d.join("global/pg_control")).map(|b| b[..8].to_vec()).unwrap();
    let before = sysid(&data);
    c.start_daemon(other);
    c.wait_for("the refusal", Duration::from_secs(30), |c| {
        let log = std::fs::read_to_string(c.nodes[other].log()).ok()?;
        log.contains("belongs to another cluster").then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(sysid(&data), before, "the foreign data directory was replaced");
    assert_eq!(c.postmaster(other), None, "the foreign cluster was started");
    assert_eq!(c.primaries(), vec![p]);
}
