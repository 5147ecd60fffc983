//! End-to-end tests against real PostgreSQL 15 and real etcd: a harness that starts an
//! etcd and N `hashell run` daemons (each with its own PostgreSQL data directory, ports and
//! temp dir), queries them over their REST API and psql, injects faults, and kills every
//! process it started (daemons, guards, postmasters, etcd) when dropped, also on failure.

use backend_etcd::testing::EtcdServer;
use hashell::pg::testing::{free_port, pg_bin, run_as};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One member.
pub struct Node {
    /// Member name.
    pub name: String,
    /// Its temp directory (data, socket, logs, config).
    pub root: PathBuf,
    /// PostgreSQL port.
    pub pg_port: u16,
    /// REST API port.
    pub api_port: u16,
    daemon: Option<Child>,
}

impl Node {
    /// The data directory.
    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }
    /// The daemon's log.
    pub fn log(&self) -> PathBuf {
        self.root.join("daemon.log")
    }
    fn config(&self) -> PathBuf {
        self.root.join("hashell.toml")
    }
}

/// Knobs of a test cluster.
#[derive(Clone, Debug)]
pub struct Options {
    /// Members.
    pub nodes: usize,
    /// Extra lines for `[settings]`.
    pub settings: String,
}

impl Default for Options {
    fn default() -> Self {
        Options { nodes: 3, settings: String::new() }
    }
}

/// An etcd and N daemons.
pub struct Cluster {
    /// The store.
    pub etcd: EtcdServer,
    /// Members, `n1`..
    pub nodes: Vec<Node>,
    root: PathBuf,
}

static N: AtomicU64 = AtomicU64::new(0);

fn chown(path: &Path) {
    if let Some((uid, gid)) = run_as() {
        let _ = std::os::unix::fs::chown(path, Some(uid), Some(gid));
    }
}

/// A minimal HTTP/1.0 request; returns (status, body).
pub fn http(method: &str, port: u16, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((code, body))
}

impl Cluster {
    /// Starts etcd and `opts.nodes` daemons (not waiting for anything).
    pub fn start(opts: Options) -> Cluster {
        let etcd = EtcdServer::start();
        let n = N.fetch_add(1, Ordering::SeqCst);
        let root = std::env::temp_dir().join(format!("hashell-e2e-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("temp dir");
        chown(&root);
        let mut c = Cluster { etcd, nodes: Vec::new(), root };
        for i in 1..=opts.nodes {
            let node = Node {
                name: format!("n{i}"),
                root: c.root.join(format!("n{i}")),
                pg_port: free_port(),
                api_port: free_port(),
                daemon: None,
            };
            std::fs::create_dir_all(&node.root).expect("node dir");
            chown(&node.root);
            std::fs::write(node.config(), c.config_text(&node, &opts)).expect("config");
            chown(&node.config());
            c.nodes.push(node);
        }
        for i in 0..c.nodes.len() {
            c.start_daemon(i);
        }
        c
    }

    fn config_text(&self, n: &Node, opts: &Options) -> String {
        format!(
            r#"[cluster]
name = "e2e"
[node]
name = "{name}"
[dcs.etcd]
endpoints = ["{etcd}"]
[postgresql]
bin_dir = "{bin}"
data_dir = "{data}"
socket_dir = "{root}"
port = {pg}
connect_address = "127.0.0.1:{pg}"
pg_hba = ["local all all trust", "host all all 127.0.0.1/32 trust", "host replication all 127.0.0.1/32 trust"]
[postgresql.superuser]
username = "postgres"
[postgresql.replication]
username = "replicator"
[postgresql.parameters]
fsync = false
shared_buffers = "16MB"
max_wal_senders = 10
wal_keep_size = "64MB"
[rest]
listen = "127.0.0.1:{api}"
connect_address = "127.0.0.1:{api}"
[settings]
ttl = "10s"
loop_wait = "1s"
retry_timeout = "2s"
{settings}
[log]
level = "info,hashell=debug"
"#,
            name = n.name,
            etcd = self.etcd.endpoint(),
            bin = pg_bin().display(),
            data = n.data().display(),
            root = n.root.display(),
            pg = n.pg_port,
            api = n.api_port,
            settings = opts.settings,
        )
    }

    /// Starts (or restarts) node `i`'s daemon as the PostgreSQL user.
    pub fn start_daemon(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(n.log()).expect("log");
        let mut cmd = Command::new(daemon_exe());
        cmd.arg("run").arg(n.config()).stdin(Stdio::null()).stdout(log.try_clone().expect("log")).stderr(log);
        cmd.env_remove("RUST_LOG").env("LC_ALL", "C");
        if let Some((uid, gid)) = run_as() {
            cmd.uid(uid).gid(gid).env("HOME", &n.root);
        }
        n.daemon = Some(cmd.spawn().expect("start hashell"));
    }

    /// SIGKILLs node `i`'s daemon (its guard and PostgreSQL keep running).
    pub fn kill_daemon(&mut self, i: usize) {
        if let Some(mut d) = self.nodes[i].daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }

    /// Sends `sig` to node `i`'s daemon.
    pub fn signal_daemon(&self, i: usize, sig: libc::c_int) {
        if let Some(d) = &self.nodes[i].daemon {
            // SAFETY: kill(2) on a child we started.
            unsafe { libc::kill(d.id() as i32, sig) };
        }
    }

    /// PID of node `i`'s postmaster, if one runs.
    pub fn postmaster(&self, i: usize) -> Option<i32> {
        hashell::pg::files::postmaster_pid(&self.nodes[i].data()).filter(|&p| hashell::pg::files::is_postgres(p))
    }

    /// SIGKILLs every PostgreSQL process of node `i` (a crash).
    pub fn kill_postgres(&self, i: usize) {
        hashell::pg::kill::kill_instance(&self.nodes[i].data());
    }

    /// PIDs of node `i`'s fencing guards.
    pub fn guards(&self, i: usize) -> Vec<i32> {
        let needle = format!("{}", self.nodes[i].data().display());
        processes_with(&["guard", &needle])
    }

    /// `GET /status` of node `i`.
    pub fn status(&self, i: usize) -> Option<serde_json::Value> {
        let (_, body) = http("GET", self.nodes[i].api_port, "/status", "")?;
        serde_json::from_str(&body).ok()
    }

    /// The status code of `GET path` on node `i`.
    pub fn probe(&self, i: usize, path: &str) -> Option<u16> {
        http("GET", self.nodes[i].api_port, path, "").map(|(c, _)| c)
    }

    /// Nodes answering 200 on `/primary`.
    pub fn primaries(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.probe(i, "/primary") == Some(200)).collect()
    }

    /// Runs SQL on node `i` through psql (as the superuser, 10 s statement timeout).
    pub fn psql(&self, i: usize, sql: &str) -> Result<String, String> {
        let mut cmd = Command::new(pg_bin().join("psql"));
        cmd.args(["-h", "127.0.0.1", "-p", &self.nodes[i].pg_port.to_string(), "-U", "postgres", "-d", "postgres"])
            .args(["-XAtqc", sql])
            .env("PGOPTIONS", "-c statement_timeout=10000")
            .env("PGCONNECT_TIMEOUT", "3");
        let out = cmd.output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// Polls `f` every 100 ms until it returns Some, or panics after `limit` naming `what`.
    pub fn wait_for<T>(&self, what: &str, limit: Duration, mut f: impl FnMut(&Cluster) -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(t) = f(self) {
                return t;
            }
            if start.elapsed() > limit {
                panic!("timed out after {limit:?} waiting for {what}\n{}", self.describe());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every node's status, for failure messages.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            out.push_str(&format!("{}: {}\n", n.name, self.status(i).map_or("no answer".into(), |s| s.to_string())));
        }
        out
    }

    /// Waits for one primary and every other member streaming from it through its slot,
    /// answering `/replica`; returns the primary.
    pub fn wait_healthy(&self, limit: Duration) -> usize {
        self.wait_for("one primary and every replica streaming through its slot", limit, |c| {
            let p = c.primaries();
            if p.len() != 1 {
                return None;
            }
            let active = c
                .psql(
                    p[0],
                    "SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_replication_slots s \
                     JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE r.state = 'streaming'",
                )
                .ok()?;
            let mut want: Vec<&str> =
                (0..c.nodes.len()).filter(|&i| i != p[0]).map(|i| c.nodes[i].name.as_str()).collect();
            want.sort();
            let replicas_ok = (0..c.nodes.len()).filter(|&i| i != p[0]).all(|i| c.probe(i, "/replica") == Some(200));
            (active == want.join(",") && replicas_ok).then_some(p[0])
        })
    }

    fn dump_logs(&self) {
        for n in &self.nodes {
            let text = std::fs::read_to_string(n.log()).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("===== {} daemon log (last 60 lines) =====", n.name);
            for l in &lines[lines.len().saturating_sub(60)..] {
                eprintln!("{l}");
            }
        }
    }
}

/// The daemon binary built with this package: next to the test binary's `deps` directory
/// (cargo builds a package's binaries before running its integration tests).
pub fn daemon_exe() -> PathBuf {
    let me = std::env::current_exe().expect("test binary path");
    let dir = me.parent().and_then(Path::parent).expect("target directory");
    let exe = dir.join("hashell-under-test");
    assert!(exe.exists(), "{} is missing: run the tests with cargo (it builds the binary first)", exe.display());
    exe
}

/// Seconds since the epoch of the first line of node `i`'s daemon log containing `needle`
/// (the log's RFC 3339 UTC timestamps).
pub fn log_time(log: &Path, needle: &str) -> Option<SystemTime> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| l.contains(needle))?;
    parse_rfc3339(line.split_whitespace().next()?)
}

/// `2026-11-22T08:53:24.569259Z` as a SystemTime.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let d: Vec<i64> = date.split('-').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<u64> = hms.split(':').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let (y, m, day) = (d[0] - (d[1] <= 2) as i64, d[1], d[2]);
    // Days from civil (Howard Hinnant's algorithm).
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let nanos: u64 = format!("{frac:0<9}")[..9].parse().ok()?;
    let secs = days as u64 * 86_400 + t[0] * 3_600 + t[1] * 60 + t[2];
    Some(UNIX_EPOCH + Duration::new(secs, nanos as u32))
}

/// Writes to every node many times a second, each row tagged with the node that took it,
/// and records the client-side time of every acknowledged commit.
pub struct Prober {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Vec<SystemTime>>>,
    names: Vec<String>,
}

impl Prober {
    /// Starts one writer per node into table `probe` (created by the caller).
    pub fn start(c: &Cluster) -> Prober {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = c
            .nodes
            .iter()
            .map(|n| {
                let (port, name, stop) = (n.pg_port, n.name.clone(), stop.clone());
                std::thread::spawn(move || probe(port, &name, &stop))
            })
            .collect();
        Prober { stop, threads, names: c.nodes.iter().map(|n| n.name.clone()).collect() }
    }

    /// Stops and returns each node's acknowledgement times.
    pub fn finish(self) -> Vec<(String, Vec<SystemTime>)> {
        self.stop.store(true, Ordering::SeqCst);
        self.names.into_iter().zip(self.threads.into_iter().map(|t| t.join().unwrap_or_default())).collect()
    }
}

fn probe(port: u16, name: &str, stop: &std::sync::atomic::AtomicBool) -> Vec<SystemTime> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut acks = Vec::new();
    rt.block_on(async {
        let mut client: Option<tokio_postgres::Client> = None;
        while !stop.load(Ordering::SeqCst) {
            if client.as_ref().is_none_or(|c| c.is_closed()) {
                let conn = format!(
                    "host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=1 options='-c statement_timeout=1000'"
                );
                client = match tokio::time::timeout(Duration::from_secs(1), tokio_postgres::connect(&conn, tokio_postgres::NoTls)).await {
                    Ok(Ok((c, conn))) => {
                        tokio::spawn(conn);
                        Some(c)
                    }
                    _ => None,
                };
            }
            if let Some(c) = &client {
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&name];
                let insert = c.execute("INSERT INTO probe (node) VALUES ($1)", &params);
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), insert).await {
                    acks.push(SystemTime::now());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    acks
}

/// PIDs of processes whose command line contains every needle.
pub fn processes_with(needles: &[&str]) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            needles.iter().all(|n| cmd.contains(n))
        })
        .collect()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        for i in 0..self.nodes.len() {
            self.signal_daemon(i, libc::SIGCONT);
            self.kill_daemon(i);
            for g in self.guards(i) {
                // SAFETY: kill(2) on a guard this cluster's daemon started.
                unsafe { libc::kill(g, libc::SIGKILL) };
            }
            self.kill_postgres(i);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_timestamps() {
        let t = parse_rfc3339("2026-11-22T08:53:24.569259Z").unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap(), Duration::new(1_795_337_604, 569_259_000));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
