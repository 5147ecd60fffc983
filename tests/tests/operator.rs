//! The operator's surface on a real cluster: the REST API's health checks with their
//! query conditions and methods, `/cluster`, `/metrics`, authenticated switchover and
//! settings edits, and the CLI's `list`, `pause`, `resume`, `edit-config` and `history`.

use e2e::{Cluster, Options};
use std::time::Duration;

const AUTH: &str = "Basic YWRtaW46czNjcjN0"; // admin:s3cr3t
const REPLICATION_PASSWORD: &str = "rep-pw-7f3a9c";

fn call(c: &Cluster, i: usize, method: &str, path: &str, body: &str, auth: bool) -> (u16, serde_json::Value) {
    c.api(i, method, path, body, auth.then_some(AUTH))
}

fn cli(c: &Cluster, i: usize, args: &[&str]) -> (i32, String, String) {
    c.cli(i, args)
}

#[test]
fn rest_api_and_cli_on_a_real_cluster() {
    let rest = "[rest.auth]\nusername = \"admin\"\npassword = \"s3cr3t\"\n".to_string();
    // Replicas stream, clone and re-clone with a password (scram-sha-256 on the
    // replication line), given as the environment override operators use.
    let env = [
        ("HASHELL_POSTGRESQL__REPLICATION__PASSWORD", REPLICATION_PASSWORD.to_string()),
        (
            "HASHELL_POSTGRESQL__PG_HBA",
            r#"["local all all trust", "host replication replicator 127.0.0.1/32 scram-sha-256", "host all all 127.0.0.1/32 trust"]"#
                .to_string(),
        ),
    ];
    let env = env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let c = Cluster::start(Options { rest, env, ..Options::default() });
    let p = c.wait_healthy(Duration::from_secs(120));
    let r = (p + 1) % 3;

    // Health checks: methods load balancers use, and the replica's query conditions.
    for m in ["GET", "HEAD", "OPTIONS"] {
        assert_eq!(call(&c, p, m, "/primary", "", false).0, 200, "{m} /primary on the primary");
        assert_eq!(call(&c, r, m, "/primary", "", false).0, 503, "{m} /primary on a replica");
    }
    c.wait_for("the replica's lag known", Duration::from_secs(30), |c| {
        (call(c, r, "GET", "/replica?lag=1GB", "", false).0 == 200).then_some(())
    });
    assert_eq!(call(&c, r, "GET", "/replica?lag=lots", "", false).0, 400);
    assert_eq!(call(&c, r, "GET", "/replica?tag_nofailover=false", "", false).0, 200);
    assert_eq!(call(&c, r, "GET", "/replica?tag_nofailover=true", "", false).0, 503);
    assert_eq!(call(&c, r, "GET", "/replica?replication_state=streaming", "", false).0, 200);
    assert_eq!(call(&c, p, "GET", "/replica", "", false).0, 503);
    assert_eq!(call(&c, r, "GET", "/readiness", "", false).0, 200);
    assert_eq!(call(&c, r, "GET", "/async", "", false).0, 200, "no synchronous mode: every replica is async");
    assert_eq!(call(&c, r, "GET", "/sync", "", false).0, 503);
    assert_eq!(call(&c, r, "GET", "/nonsense", "", false).0, 404);

    // The cluster as any member sees it (as of its last loop: wait for the replicas' lag).
    let doc = c.wait_for("every replica's lag in /cluster", Duration::from_secs(10), |c| {
        let (code, doc) = call(c, r, "GET", "/cluster", "", false);
        assert_eq!(code, 200);
        let members = doc["members"].as_array().expect("members").clone();
        members.iter().filter(|m| m["leader"] == false).all(|m| m["lag"].is_u64()).then_some(doc)
    });
    assert_eq!(doc["leader"], c.nodes[p].name.as_str());
    assert_eq!(doc["members"].as_array().map(Vec::len), Some(3));
    // Lag comes from the last loop's peer answers: wait for a loop that has both replicas'.
    let metrics = c.wait_for("both replicas' lag in /metrics", Duration::from_secs(10), |c| {
        let (_, m) = call(c, p, "GET", "/metrics", "", false);
        let m = m.as_str().unwrap_or_default().to_string();
        (m.matches("hashell_member_lag_bytes{member=").count() == 2).then_some(m)
    });
    assert!(metrics.contains("hashell_role{role=\"primary\"} 1"), "{metrics}");
    assert!(metrics.contains("hashell_dcs_operations_total{op=\"renew\",result=\"ok\"}"), "{metrics}");

    // Unsafe requests need the credentials; bad ones say what to fix.
    let body = format!(r#"{{"candidate":"{}"}}"#, c.nodes[r].name);
    assert_eq!(call(&c, p, "POST", "/switchover", &body, false).0, 401);
    assert_eq!(call(&c, p, "POST", "/failsafe", "{}", false).0, 401);
    assert_eq!(call(&c, p, "PATCH", "/config", r#"{"paused":true}"#, false).0, 401);
    let (code, e) = call(&c, p, "POST", "/switchover", r#"{"candidate":"nobody"}"#, true);
    assert_eq!(code, 400, "{e}");
    assert!(e["error"].as_str().unwrap_or_default().contains("not a member"), "{e}");
    assert_eq!(call(&c, p, "POST", "/switchover", "{not json", true).0, 400);
    let (code, e) = call(&c, p, "PATCH", "/config", r#"{"ttl": 1}"#, true);
    assert_eq!(code, 400, "{e}");
    assert_eq!(call(&c, p, "PATCH", "/config", r#"{"no_such_setting": 1}"#, true).0, 400);

    // An authenticated switchover through a replica's API waits until the candidate serves.
    let (code, done) = call(&c, (p + 2) % 3, "POST", "/switchover", &body, true);
    assert_eq!(code, 200, "{done}");
    assert_eq!(done["leader"], c.nodes[r].name.as_str());
    c.wait_for("the new primary", Duration::from_secs(30), |c| (c.primaries() == vec![r]).then_some(()));

    // The CLI: list as JSON, maintenance mode, settings, history.
    let (code, out, err) = cli(&c, p, &["list", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("list --format json is JSON");
    assert_eq!(doc["leader"], c.nodes[r].name.as_str());
    let (code, out, err) = cli(&c, p, &["list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("MEMBER") && out.contains(&c.nodes[r].name), "{out}");
    let (code, out, err) = cli(&c, p, &["pause", "--wait"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(call(&c, p, "GET", "/cluster", "", false).1["paused"], true);
    let (code, out, err) = cli(&c, p, &["resume", "--wait"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(call(&c, p, "GET", "/cluster", "", false).1["paused"], false);
    let (code, _, err) = cli(&c, p, &["edit-config", "-s", "no_such_setting=1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown setting"), "{err}");
    let (code, out, err) = cli(&c, p, &["edit-config", "-s", "maximum_lag_on_failover=2097152"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2097152"), "{out}");
    let (code, out, _) = cli(&c, p, &["show-config"]);
    assert_eq!(code, 0);
    assert!(out.contains("\"maximum_lag_on_failover\": 2097152"), "{out}");
    let (code, out, err) = cli(&c, p, &["history"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&c.nodes[r].name) && out.contains("Switchover"), "{out}");

    // Reinitialize: refused on the leader; a replica is wiped, cloned again and streams.
    let (code, e) = call(&c, r, "POST", "/reinitialize", "", true);
    assert_eq!(code, 409, "{e}");
    assert_eq!(call(&c, p, "POST", "/reinitialize", "", false).0, 401);
    let marker = c.nodes[p].data().join("reinit-marker");
    std::fs::write(&marker, b"x").unwrap();
    let (code, _, err) = cli(&c, p, &["reinit", &c.nodes[p].name]);
    assert_eq!(code, 2, "without a terminal the CLI needs --force: {err}");
    assert!(marker.exists());
    let (code, out, err) = cli(&c, r, &["reinit", &c.nodes[p].name, "--force"]);
    assert_eq!(code, 0, "{out}{err}");
    c.wait_for("the reinitialized replica", Duration::from_secs(60), |_| (!marker.exists()).then_some(()));
    assert_eq!(c.wait_healthy(Duration::from_secs(60)), r);

    // The replication user has the password (it was the only way in for the clones), and
    // no daemon or PostgreSQL log shows it or the API password.
    let scram = c.psql(r, "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'replicator'");
    assert_eq!(scram.as_deref().map(str::trim), Ok("t"), "{scram:?}");
    for n in &c.nodes {
        let pg_log = std::path::PathBuf::from(format!("{}.log", n.data().display()));
        for log in [n.log(), pg_log] {
            let text = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
            assert!(!text.is_empty(), "{} is empty", log.display());
            for secret in [REPLICATION_PASSWORD, "s3cr3t"] {
                let lines: Vec<String> =
                    text.lines().filter(|l| l.contains(secret)).map(|l| l.replace(secret, "<PASSWORD>")).collect();
                assert!(lines.is_empty(), "{} shows a password:\n{}", log.display(), lines.join("\n"));
            }
        }
    }
}
