//! Load-balancer integration with real processes: HAProxy health-checks every member's
//! REST API (`GET /primary` for the write port, `GET /replica` for the read port, as in
//! Patroni setups) and routes across a failover; pgbouncer in front of HAProxy's write
//! port follows too. The configuration is the one docs/load-balancing.md shows.

use e2e::{Cluster, Options};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (by PID) when dropped, also on failure.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn haproxy_cfg(c: &Cluster, write: u16, read: u16) -> String {
    let servers = |c: &Cluster| {
        c.nodes
            .iter()
            .map(|n| format!("    server {} 127.0.0.1:{} check port {}\n", n.name, n.pg_port, n.api_port))
            .collect::<String>()
    };
    format!(
        "global\n    maxconn 100\n    log stderr format short local0\n\
         defaults\n    mode tcp\n    log global\n    option log-health-checks\n    timeout connect 2s\n    timeout client 30m\n    timeout server 30m\n    timeout check 1s\n\
         \nlisten primary\n    bind 127.0.0.1:{write}\n    option httpchk GET /primary\n    http-check expect status 200\n\
         \x20   default-server inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions\n{}\
         \nlisten replicas\n    bind 127.0.0.1:{read}\n    balance roundrobin\n    option httpchk GET /replica\n\
         \x20   http-check expect status 200\n    default-server inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions\n{}",
        servers(c),
        servers(c)
    )
}

/// (port of the server answering, in recovery) through `port`, or None.
fn through(port: u16) -> Option<(u16, bool)> {
    let out = Command::new(e2e::pg_bin().join("psql"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-d", "postgres"])
        .args(["-XAtqc", "SELECT current_setting('port') || ' ' || pg_is_in_recovery()"])
        .env("PGCONNECT_TIMEOUT", "2")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (p, r) = text.trim().split_once(' ')?;
    Some((p.parse().ok()?, r == "true"))
}

fn start_as_postgres(cmd: &mut Command, home: &Path) {
    use std::os::unix::process::CommandExt;
    if let Ok(Some((uid, gid))) = hashell::local::run_as() {
        cmd.uid(uid).gid(gid).env("HOME", home);
    }
}

#[test]
fn haproxy_and_pgbouncer_follow_the_primary_across_a_failover() {
    let mut c = Cluster::start(Options::default());
    let p = c.wait_healthy(Duration::from_secs(120));
    let root = c.local.root.clone();
    let (write, read, bouncer) =
        (hashell::local::free_port(), hashell::local::free_port(), hashell::local::free_port());
    let cfg = root.join("haproxy.cfg");
    std::fs::write(&cfg, haproxy_cfg(&c, write, read)).unwrap();
    let check = Command::new("haproxy").arg("-c").arg("-f").arg(&cfg).output().expect("haproxy is installed");
    assert!(check.status.success(), "haproxy -c: {}", String::from_utf8_lossy(&check.stderr));
    let _haproxy = Proc(
        Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join("haproxy.log")).expect("haproxy log"))
            .spawn()
            .expect("haproxy starts"),
    );
    // pgbouncer (as the PostgreSQL user: it refuses root) in front of the write port.
    let bdir = root.join("pgbouncer");
    std::fs::create_dir_all(&bdir).unwrap();
    std::fs::write(bdir.join("users.txt"), "\"postgres\" \"\"\n").unwrap();
    std::fs::write(
        bdir.join("pgbouncer.ini"),
        format!(
            "[databases]\npostgres = host=127.0.0.1 port={write} dbname=postgres\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {bouncer}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {users}\npool_mode = transaction\n\
             server_connect_timeout = 2\nserver_login_retry = 1\nserver_check_delay = 0\nlogfile = {log}\n",
            users = bdir.join("users.txt").display(),
            log = bdir.join("pgbouncer.log").display(),
        ),
    )
    .unwrap();
    for f in ["", "users.txt", "pgbouncer.ini"] {
        hashell::local::chown(&bdir.join(f));
    }
    let mut cmd = Command::new("pgbouncer");
    cmd.arg(bdir.join("pgbouncer.ini")).stdout(Stdio::null()).stderr(Stdio::null());
    start_as_postgres(&mut cmd, &bdir);
    let _pgbouncer = Proc(cmd.spawn().expect("pgbouncer starts"));

    let ports: Vec<u16> = c.nodes.iter().map(|n| n.pg_port).collect();
    let port_of = |i: usize| ports[i];
    let routes = |c: &Cluster, port: u16, want: (u16, bool), limit: Duration, what: &str| {
        c.wait_for(what, limit, |_| (through(port) == Some(want)).then_some(()));
    };
    routes(&c, write, (port_of(p), false), Duration::from_secs(20), "HAProxy's write port on the primary");
    routes(&c, bouncer, (port_of(p), false), Duration::from_secs(20), "pgbouncer on the primary");
    // HAProxy starts with every server up until its checks say otherwise (fall 2, every
    // 500 ms): once ten reads in a row reached replicas, the read port reaches only them,
    // round robin over both.
    let mut in_a_row = 0;
    c.wait_for("HAProxy's first checks", Duration::from_secs(20), |_| {
        in_a_row = if through(read).is_some_and(|(_, r)| r) { in_a_row + 1 } else { 0 };
        (in_a_row >= 10).then_some(())
    });
    let mut seen = std::collections::BTreeSet::new();
    let start = Instant::now();
    while seen.len() < 2 && start.elapsed() < Duration::from_secs(20) {
        if let Some((port, in_recovery)) = through(read) {
            assert!(in_recovery && port != port_of(p), "the read port reached {port} (recovery {in_recovery})");
            seen.insert(port);
        }
    }
    assert_eq!(seen.len(), 2, "both replicas behind the read port");

    // The primary's node dies: the write port and pgbouncer follow the new primary, the
    // read port keeps to replicas.
    c.kill_node(p);
    let new = c.wait_for("a new primary", Duration::from_secs(60), |c| {
        let ps = c.primaries();
        (ps.len() == 1 && ps[0] != p).then(|| ps[0])
    });
    let t0 = Instant::now();
    routes(&c, write, (port_of(new), false), Duration::from_secs(10), "HAProxy's write port on the new primary");
    routes(&c, bouncer, (port_of(new), false), Duration::from_secs(20), "pgbouncer on the new primary");
    eprintln!("write port on the new primary {:?} after it answered /primary", t0.elapsed());
    // The new primary stays behind the read port until its /replica checks fail twice
    // (fall 2, every 500 ms): then only the remaining replica is.
    let other = (0..3).find(|&i| i != p && i != new).unwrap();
    let mut in_a_row = 0;
    c.wait_for("the read port on the remaining replica only", Duration::from_secs(10), |_| {
        in_a_row = if through(read) == Some((port_of(other), true)) { in_a_row + 1 } else { 0 };
        (in_a_row >= 10).then_some(())
    });
    for _ in 0..10 {
        if let Some((port, in_recovery)) = through(read) {
            assert!(in_recovery && port == port_of(other), "read port reached {port}");
        }
    }
    // Writes through pgbouncer work.
    let out = Command::new(e2e::pg_bin().join("psql"))
        .args(["-h", "127.0.0.1", "-p", &bouncer.to_string(), "-U", "postgres", "-d", "postgres"])
        .args(["-XAtqc", "CREATE TABLE IF NOT EXISTS lb (x int); INSERT INTO lb VALUES (1); SELECT count(*) FROM lb"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "{}", String::from_utf8_lossy(&out.stderr));
}
