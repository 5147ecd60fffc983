//! Maintenance on a real cluster: every health endpoint's status code in each role
//! (primary, streaming replica, stopped replica in maintenance mode), reloading a changed
//! configuration file, restarts (of replicas with pending settings, of the primary in place,
//! scheduled and cancelled, of a stopped member in maintenance mode), the events they leave,
//! `topology`, and `remove` refusing while members run and removing once they are gone.

use e2e::{daemon_exe, Cluster, Options};
use std::time::{Duration, SystemTime};

const AUTH: &str = "Basic YWRtaW46czNjcjN0"; // admin:s3cr3t

/// `restart --pending` reads the member records in the store, which a node publishes at
/// its next loop after its own status shows the flag: waits until the records of `nodes`
/// carry it (`/cluster` on node `via` lists them as that node last read them).
fn wait_pending_in_records(c: &Cluster, via: usize, nodes: &[usize]) {
    c.wait_for("the member records pending a restart", Duration::from_secs(15), |c| {
        let members = call(c, via, "GET", "/cluster", "").1["members"].as_array().cloned()?;
        let pending =
            |i: usize| members.iter().any(|m| m["name"] == c.nodes[i].name.as_str() && m["pending_restart"] == true);
        nodes.iter().all(|&i| pending(i)).then_some(())
    });
}

fn call(c: &Cluster, i: usize, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    c.api(i, method, path, body, Some(AUTH))
}

fn cli(c: &Cluster, i: usize, args: &[&str]) -> (i32, String, String) {
    c.cli(i, args)
}

/// The status codes of the health endpoints on node `i`, as `path=code` lines.
fn codes(c: &Cluster, i: usize) -> Vec<String> {
    const PATHS: [&str; 14] = [
        "/primary",
        "/leader",
        "/read-write",
        "/master",
        "/replica",
        "/read-only",
        "/health",
        "/liveness",
        "/readiness",
        "/sync",
        "/async",
        "/status",
        "/cluster",
        "/metrics",
    ];
    PATHS.iter().map(|p| format!("{p}={}", c.probe(i, p).unwrap_or(0))).collect()
}

fn expect_codes(c: &Cluster, i: usize, want: &[(&str, u16)], role: &str) {
    let got = codes(c, i);
    for (p, code) in want {
        let line = format!("{p}={code}");
        assert!(got.contains(&line), "{role}: want {line}, got {got:?}");
    }
}

#[test]
fn health_codes_by_role_reload_restart_events_topology_and_remove() {
    let rest = "[rest.auth]\nusername = \"admin\"\npassword = \"s3cr3t\"\n".to_string();
    let mut c = Cluster::start(Options { rest, ..Options::default() });
    let p = c.wait_healthy(Duration::from_secs(120));
    let (r, r2) = ((p + 1) % 3, (p + 2) % 3);

    // Every health endpoint in each running role (Patroni's status codes).
    let primary = [
        ("/primary", 200),
        ("/leader", 200),
        ("/read-write", 200),
        ("/master", 200),
        ("/replica", 503),
        ("/read-only", 200),
        ("/health", 200),
        ("/liveness", 200),
        ("/readiness", 200),
        ("/sync", 503),
        ("/async", 503),
        ("/status", 200),
        ("/cluster", 200),
        ("/metrics", 200),
    ];
    expect_codes(&c, p, &primary, "primary");
    let replica = [
        ("/primary", 503),
        ("/leader", 503),
        ("/read-write", 503),
        ("/master", 503),
        ("/replica", 200),
        ("/read-only", 200),
        ("/health", 200),
        ("/liveness", 200),
        ("/readiness", 200),
        ("/sync", 503),
        ("/async", 200),
        ("/status", 200),
        ("/cluster", 200),
        ("/metrics", 200),
    ];
    expect_codes(&c, r, &replica, "replica");

    // Reload: a parameter PostgreSQL applies on reload, one that needs a restart, and a key
    // the daemon takes only at its own restart.
    let file = c.nodes[r].config();
    let text = std::fs::read_to_string(&file).unwrap();
    let text = text.replace("shared_buffers = \"16MB\"\n", "shared_buffers = \"24MB\"\nwork_mem = \"8MB\"\n");
    let text = text.replace("level = \"info,hashell=debug\"", "level = \"debug\"");
    std::fs::write(&file, text).unwrap();
    let (code, out, err) = cli(&c, r, &["reload", &c.nodes[r].name]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("applied postgresql.parameters"), "{out}");
    assert!(out.contains("takes a daemon restart: log.level"), "{out}");
    assert!(out.contains("PostgreSQL needs a restart"), "{out}");
    assert_eq!(c.psql(r, "SHOW work_mem").as_deref(), Ok("8MB"), "applied by the reload");
    assert_eq!(c.psql(r, "SHOW shared_buffers").as_deref(), Ok("16MB"), "waits for a restart");
    c.wait_for("pending_restart published", Duration::from_secs(10), |c| {
        (c.status(r)?["pending_restart"] == true).then_some(())
    });
    wait_pending_in_records(&c, p, &[r]);
    // SIGHUP (the systemd unit's ExecReload) reloads too.
    let file = c.nodes[r2].config();
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("shared_buffers = \"16MB\"\n", "shared_buffers = \"16MB\"\nwork_mem = \"6MB\"\n"),
    )
    .unwrap();
    c.signal_daemon(r2, libc::SIGHUP);
    c.wait_for("work_mem reloaded on SIGHUP", Duration::from_secs(10), |c| {
        (c.psql(r2, "SHOW work_mem").as_deref() == Ok("6MB")).then_some(())
    });
    // A broken file changes nothing and says where.
    std::fs::write(c.nodes[r2].config().with_extension("bak"), std::fs::read(c.nodes[r2].config()).unwrap()).unwrap();
    std::fs::write(c.nodes[r2].config(), "[cluster]\nname = 7\n").unwrap();
    let (code, e) = call(&c, r2, "POST", "/reload", "");
    assert_eq!(code, 409, "{e}");
    assert!(e["error"].as_str().unwrap_or_default().contains("cluster.name"), "{e}");
    std::fs::rename(c.nodes[r2].config().with_extension("bak"), c.nodes[r2].config()).unwrap();

    // Restart only what needs it: the replica with the pending setting.
    let pids: Vec<Option<i32>> = (0..3).map(|i| c.postmaster(i)).collect();
    let (code, out, err) = cli(&c, p, &["restart", "--pending"]);
    assert_eq!(code, 2, "without a terminal the CLI needs --force: {err}");
    let (code, out2, err) = cli(&c, p, &["restart", "--pending", "--force"]);
    assert_eq!(code, 0, "{out}{out2}{err}");
    assert!(out2.contains(&format!("{}: restarted", c.nodes[r].name)), "{out2}");
    assert!(out2.contains("conditions are not satisfied"), "{out2}");
    assert_ne!(c.postmaster(r), pids[r], "the pending replica restarted");
    assert_eq!(c.postmaster(p), pids[p], "the primary did not");
    assert_eq!(c.postmaster(r2), pids[r2]);
    assert_eq!(c.psql(r, "SHOW shared_buffers").as_deref(), Ok("24MB"));
    c.wait_healthy(Duration::from_secs(60));

    // The primary restarts in place: same term, no failover.
    let term = c.status(p).unwrap()["term"].clone();
    let (code, v) = call(&c, p, "POST", "/restart", r#"{"role": "primary"}"#);
    assert_eq!((code, v["restarted"].clone()), (200, serde_json::Value::Bool(true)), "{v}");
    assert_ne!(c.postmaster(p), pids[p]);
    assert_eq!(c.wait_healthy(Duration::from_secs(60)), p, "still the primary");
    assert_eq!(c.status(p).unwrap()["term"], term, "same term: no failover");
    let (code, v) = call(&c, r2, "POST", "/restart", r#"{"role": "primary"}"#);
    assert_eq!((code, v["restarted"].clone()), (200, serde_json::Value::Bool(false)), "{v}");

    // Scheduled, cancelled, scheduled again and carried out when due.
    let at = |secs: u64| {
        let t = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as u64 + secs * 1000;
        hashell::commands::rfc3339(t)
    };
    let (code, v) = call(&c, r2, "POST", "/restart", &format!(r#"{{"schedule": "{}"}}"#, at(600)));
    assert_eq!(code, 202, "{v}");
    assert!(c.status(r2).unwrap()["scheduled_restart"].is_string());
    assert_eq!(call(&c, r2, "POST", "/restart", &format!(r#"{{"schedule": "{}"}}"#, at(700))).0, 409);
    assert_eq!(call(&c, r2, "DELETE", "/restart", "").0, 200);
    assert_eq!(call(&c, r2, "DELETE", "/restart", "").0, 409, "nothing left to cancel");
    let before = c.postmaster(r2);
    let (code, out, err) = cli(&c, p, &["restart", &c.nodes[r2].name, "--at", &at(3), "--force"]);
    assert_eq!(code, 0, "{out}{err}");
    c.wait_for("the scheduled restart", Duration::from_secs(30), |c| {
        let now = c.postmaster(r2);
        (now.is_some() && now != before).then_some(())
    });
    c.wait_healthy(Duration::from_secs(60));

    // Maintenance mode: a stopped replica answers 503 where PostgreSQL must run, and a
    // restart request starts it (nothing else would).
    let (code, out, err) = cli(&c, p, &["pause", "--wait"]);
    assert_eq!(code, 0, "{out}{err}");
    // The running primary restarts in maintenance mode too (nothing else would start it
    // again), in place, same term.
    let before = c.postmaster(p);
    let (code, v) = call(&c, p, "POST", "/restart", "");
    assert_eq!((code, v["restarted"].clone()), (200, serde_json::Value::Bool(true)), "{v}");
    assert_ne!(c.postmaster(p), before);
    assert_eq!(c.primaries(), vec![p]);
    assert_eq!(c.status(p).unwrap()["term"], term, "same term");
    let (code, e) = call(&c, r, "POST", "/reinitialize", "");
    assert_eq!(code, 409, "no rebuild in maintenance mode: {e}");
    c.kill_postgres(r);
    c.wait_for("the stopped replica seen", Duration::from_secs(20), |c| {
        (c.probe(r, "/health") == Some(503)).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let stopped = [
        ("/primary", 503),
        ("/replica", 503),
        ("/read-only", 503),
        ("/health", 503),
        ("/liveness", 200),
        ("/readiness", 503),
        ("/async", 503),
        ("/status", 200),
    ];
    expect_codes(&c, r, &stopped, "stopped replica in maintenance mode");
    let (code, v) = call(&c, r, "POST", "/restart", "");
    assert_eq!(code, 200, "{v}");
    assert_eq!(c.probe(r, "/replica"), Some(200));
    let (code, out, err) = cli(&c, p, &["resume", "--wait"]);
    assert_eq!(code, 0, "{out}{err}");
    c.wait_healthy(Duration::from_secs(60));

    // The events: joins, restarts, settings changes; and the topology.
    let (code, out, err) = cli(&c, p, &["events", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let events: Vec<serde_json::Value> =
        out.lines().map(|l| serde_json::from_str(l).expect("one JSON event per line")).collect();
    let has = |reason: &str, node: &str| events.iter().any(|e| e["reason"] == reason && e["node"] == node);
    for n in &c.nodes {
        assert!(has("member_joined", &n.name), "{} joined: {out}", n.name);
    }
    assert!(has("restarting", &c.nodes[p].name) && has("restarting", &c.nodes[r].name), "{out}");
    assert!(
        events
            .iter()
            .any(|e| e["reason"] == "config_changed"
                && e["detail"].as_str().unwrap_or("").contains("paused false -> true")),
        "{out}"
    );
    let (code, table, _) = cli(&c, p, &["events"]);
    assert_eq!(code, 0);
    assert!(table.starts_with("TIME (UTC)") && table.contains("config_changed"), "{table}");
    let (code, topo, err) = cli(&c, r, &["topology"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = topo.lines().collect();
    assert!(lines[1].starts_with(&c.nodes[p].name) && lines[1].contains("primary (leader)"), "{topo}");
    assert!(lines[2].starts_with("├─ ") && lines[3].starts_with("└─ "), "{topo}");

    // edit-config without -s: the settings in $EDITOR (here a sed script), what changed
    // is written; an editor that breaks the JSON changes nothing.
    let edit = |editor: &str| {
        std::process::Command::new(daemon_exe())
            .arg("edit-config")
            .arg(c.nodes[p].config())
            .env("EDITOR", editor)
            .env_remove("VISUAL")
            .output()
            .expect("hashell runs")
    };
    let out = edit(r#"sed -i 's/"maximum_lag_on_failover": [0-9]*/"maximum_lag_on_failover": 4194304/'"#);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, shown, _) = cli(&c, p, &["show-config"]);
    assert!(shown.contains("\"maximum_lag_on_failover\": 4194304"), "{shown}");
    let out = edit("sed -i 's/{/[/'");
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not JSON"));

    // Remove: the wrong name, then running members, are refused; once every node is
    // down, the cluster goes.
    let (code, _, err) = cli(&c, p, &["remove", "--confirm", "other"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = cli(&c, p, &["remove"]);
    assert_eq!(code, 2, "without a terminal it needs --confirm: {err}");
    let (code, _, err) = cli(&c, p, &["remove", "--confirm", "local"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("still run"), "{err}");
    assert_eq!(c.wait_healthy(Duration::from_secs(30)), p, "nothing was removed");
    for i in 0..3 {
        c.kill_node(i);
    }
    let (code, out, err) = cli(&c, p, &["remove", "--confirm", "local"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("removed"), "{out}");
    let out = std::process::Command::new(daemon_exe())
        .args(["dcs", "check"])
        .arg(c.nodes[p].config())
        .output()
        .expect("hashell runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("0 member(s), leader none"), "{text}");
}

/// A parameter that needs a restart, changed on every node, applied by one rolling
/// restart: replicas first, then one switchover instead of a restart of the primary.
#[test]
fn a_rolling_restart_applies_a_pending_parameter_with_one_switchover() {
    let c = Cluster::start(Options::default());
    let p = c.wait_healthy(Duration::from_secs(120));
    c.psql(p, "CREATE TABLE probe (id bigserial PRIMARY KEY, node text NOT NULL)").unwrap();
    let prober = e2e::Prober::start(&c);
    for i in 0..3 {
        let file = c.nodes[i].config();
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, text.replace("shared_buffers = \"16MB\"\n", "shared_buffers = \"24MB\"\n")).unwrap();
        let (code, out, err) = cli(&c, i, &["reload", &c.nodes[i].name]);
        assert!(code == 0 && out.contains("PostgreSQL needs a restart"), "{out}{err}");
    }
    c.wait_for("every member pending a restart", Duration::from_secs(15), |c| {
        (0..3).all(|i| c.status(i).is_some_and(|s| s["pending_restart"] == true)).then_some(())
    });
    wait_pending_in_records(&c, p, &[0, 1, 2]);
    let pids: Vec<Option<i32>> = (0..3).map(|i| c.postmaster(i)).collect();
    let term = call(&c, p, "GET", "/cluster", "").1["term"].as_u64().unwrap();

    let (code, out, err) = cli(&c, p, &["restart", "--pending", "--switchover", "--force"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("{}: restarted by a switchover to", c.nodes[p].name)), "{out}");
    let q = c.wait_healthy(Duration::from_secs(60));
    assert_ne!(q, p, "the old primary still leads: {out}");
    for (i, pid) in pids.iter().enumerate() {
        assert_eq!(c.psql(i, "SHOW shared_buffers").as_deref(), Ok("24MB"), "{}", c.nodes[i].name);
        assert_ne!(c.postmaster(i), *pid, "{}'s PostgreSQL did not restart", c.nodes[i].name);
    }
    c.wait_for("no member pending a restart", Duration::from_secs(15), |c| {
        (0..3).all(|i| c.status(i).is_some_and(|s| s["pending_restart"] == false)).then_some(())
    });
    // One switchover is one new term; restarts in place keep it.
    let after = call(&c, q, "GET", "/cluster", "").1["term"].as_u64().unwrap();
    assert_eq!(after, term + 1, "more than one leadership change");

    std::thread::sleep(Duration::from_secs(1));
    let acks = prober.finish();
    let ids: Vec<String> = acks.iter().flat_map(|a| a.ids.iter().map(i64::to_string)).collect();
    assert!(!ids.is_empty(), "no acknowledged write");
    let present = c.psql(q, &format!("SELECT count(*) FROM probe WHERE id IN ({})", ids.join(","))).unwrap();
    assert_eq!(present, ids.len().to_string(), "acknowledged writes lost in the rolling restart");
}
