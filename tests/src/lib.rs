//! End-to-end tests against real PostgreSQL 15 and real etcd: a harness that starts an
//! etcd and N `hashell run` daemons ([`hashell::local::LocalCluster`], each node with its
//! own data directory and ports), queries them over their REST API and psql, injects
//! faults, and kills every process it started (daemons, guards, postmasters, etcd) when
//! dropped, also on failure.

pub mod netns;
pub mod patroni;

use backend_etcd::server::EtcdServer;
pub use hashell::local::{processes_with, LocalCluster, LocalOptions};
pub use hashell::pg::testing::pg_bin;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// A TCP proxy between one node and etcd that can cut the path (a partition between that
/// node and the store only): when cut, open connections are shut down and new ones closed
/// at once.
pub struct CutProxy {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl CutProxy {
    /// Listens on a free port and forwards to `upstream` on loopback.
    pub fn start(upstream: u16) -> CutProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy port");
        let port = listener.local_addr().expect("addr").port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (c, o) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if c.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                let pairs = [(client.try_clone(), server.try_clone()), (server.try_clone(), client.try_clone())];
                if let Ok(mut list) = o.lock() {
                    list.extend([client.try_clone(), server.try_clone()].into_iter().flatten());
                }
                for (from, to) in pairs {
                    if let (Ok(mut from), Ok(mut to)) = (from, to) {
                        std::thread::spawn(move || {
                            let _ = std::io::copy(&mut from, &mut to);
                            let _ = to.shutdown(std::net::Shutdown::Both);
                        });
                    }
                }
            }
        });
        CutProxy { port, cut, open }
    }

    /// The endpoint to give the node.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Cuts (true) or restores (false) the path.
    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
        if cut {
            if let Ok(mut list) = self.open.lock() {
                for s in list.drain(..) {
                    let _ = s.shutdown(std::net::Shutdown::Both);
                }
            }
        }
    }
}

/// Knobs of a test cluster.
#[derive(Clone, Debug)]
pub struct Options {
    /// Members.
    pub nodes: usize,
    /// Extra lines for `[settings]`.
    pub settings: String,
    /// Extra lines for `[postgresql]`.
    pub postgresql: String,
    /// Extra lines for `[postgresql.parameters]`.
    pub parameters: String,
    /// `[log] format`.
    pub log_format: &'static str,
    /// Extra lines after `[rest]`.
    pub rest: String,
    /// DynamoDB (a local moto server, reached through the cut proxies) instead of etcd.
    pub dynamo: bool,
    /// Extra environment for the daemons (e.g. `HASHELL_*` overrides).
    pub env: Vec<(String, String)>,
    /// The binary the daemons start with (default [`daemon_exe`]; another build for the
    /// rolling-upgrade test).
    pub daemon: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nodes: 3,
            settings: String::new(),
            postgresql: String::new(),
            parameters: String::new(),
            log_format: "pretty",
            rest: String::new(),
            dynamo: false,
            env: Vec::new(),
            daemon: None,
        }
    }
}

/// An etcd and N daemons ([`LocalCluster`]), each node reaching etcd through its own
/// [`CutProxy`].
pub struct Cluster {
    /// The daemons.
    pub local: LocalCluster,
    /// Each node's path to etcd.
    paths: Vec<CutProxy>,
    /// The store.
    pub etcd: EtcdServer,
    /// The DynamoDB-compatible server, with `Options::dynamo`.
    pub dynamo: Option<backend_dynamo::testing::DynamoServer>,
}

impl std::ops::Deref for Cluster {
    type Target = LocalCluster;
    fn deref(&self) -> &LocalCluster {
        &self.local
    }
}

impl std::ops::DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut LocalCluster {
        &mut self.local
    }
}

static N: AtomicU64 = AtomicU64::new(0);

/// Credentials the local DynamoDB-compatible server accepts, and no instance-metadata probe.
pub const AWS_TEST_ENV: [(&str, &str); 3] =
    [("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_EC2_METADATA_DISABLED", "true")];

impl Cluster {
    /// Starts etcd and `opts.nodes` daemons (not waiting for anything).
    pub fn start(opts: Options) -> Cluster {
        let etcd = EtcdServer::start();
        let dynamo = opts.dynamo.then(backend_dynamo::testing::DynamoServer::start);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let root = std::env::temp_dir().join(format!("hashell-e2e-{}-{n}", std::process::id()));
        let upstream = dynamo.as_ref().map_or(etcd.port(), |d| d.port());
        let paths: Vec<CutProxy> = (0..opts.nodes).map(|_| CutProxy::start(upstream)).collect();
        let dcs = dynamo.as_ref().map(|_| {
            paths
                .iter()
                .map(|p| {
                    format!(
                        "[dcs.dynamodb]\ntable = \"hashell-e2e\"\nregion = \"us-east-1\"\nendpoint = \"{}\"",
                        p.endpoint()
                    )
                })
                .collect()
        });
        let local_opts = LocalOptions {
            exe: daemon_exe(),
            bin_dir: pg_bin(),
            endpoints: paths.iter().map(CutProxy::endpoint).collect(),
            settings: format!("{}{}", hashell::local::FAST_SETTINGS, opts.settings),
            log_level: "info,hashell=debug".into(),
            log_format: opts.log_format.into(),
            postgresql: opts.postgresql.clone(),
            parameters: opts.parameters.clone(),
            rest: opts.rest.clone(),
            dcs,
            env: AWS_TEST_ENV.iter().map(|(k, v)| (k.to_string(), v.to_string())).chain(opts.env.clone()).collect(),
            netns: Vec::new(),
            ambient_caps: Vec::new(),
        };
        let local = LocalCluster::create(root, &local_opts).unwrap_or_else(|e| panic!("{e}"));
        if dynamo.is_some() {
            // The table is made once, by the command operators use.
            let out = Command::new(daemon_exe())
                .args(["dcs", "create-table"])
                .arg(local.nodes[0].config())
                .envs(AWS_TEST_ENV.iter().copied())
                .output()
                .expect("hashell dcs create-table runs");
            assert!(out.status.success(), "create-table: {}", String::from_utf8_lossy(&out.stderr));
        }
        let mut c = Cluster { local, paths, etcd, dynamo };
        let exe = opts.daemon.clone().unwrap_or_else(daemon_exe);
        for i in 0..opts.nodes {
            c.start_daemon_with(i, &exe);
        }
        c
    }

    /// Starts (or restarts) node `i`'s daemon.
    pub fn start_daemon(&mut self, i: usize) {
        self.start_daemon_with(i, &daemon_exe());
    }

    /// Starts (or restarts) node `i`'s daemon from `exe`.
    pub fn start_daemon_with(&mut self, i: usize, exe: &Path) {
        self.local.start_daemon(i, exe).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Node `i`'s path to etcd.
    pub fn dcs_path(&self, i: usize) -> &CutProxy {
        &self.paths[i]
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
                panic!("timed out after {limit:?} waiting for {what}\n{}", self.table());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
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

    /// Runs `hashell ARGS[0] <node i's config> ARGS[1..]`: (exit code, stdout, stderr).
    pub fn cli(&self, i: usize, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(daemon_exe())
            .arg(args[0])
            .arg(self.nodes[i].config())
            .args(&args[1..])
            .output()
            .expect("hashell runs");
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code().unwrap_or(-1), s(&out.stdout), s(&out.stderr))
    }

    /// A REST call to node `i` with an optional `Authorization` header (60 s limit): the
    /// status code and the body as JSON (a JSON string when it is not JSON).
    pub fn api(&self, i: usize, method: &str, path: &str, body: &str, auth: Option<&str>) -> (u16, serde_json::Value) {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        let (code, text) =
            hashell::local::http_with(method, self.nodes[i].api_port, path, body, &headers, Duration::from_secs(90))
                .unwrap_or_else(|| panic!("{method} {path} on node {i}: no answer"));
        (code, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
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

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        if std::env::var_os("E2E_KEEP").is_some() {
            eprintln!("E2E_KEEP: logs kept in {}", self.local.root.display());
            self.local.keep(true);
        }
    }
}

/// Seconds since the epoch of the first line of node `i`'s daemon log containing `needle`
/// (the log's RFC 3339 UTC timestamps).
pub fn log_time(log: &Path, needle: &str) -> Option<SystemTime> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| l.contains(needle))?;
    parse_rfc3339(line.split_whitespace().next()?)
}

pub use hashell::operator::parse_rfc3339;

/// Writes to every node many times a second, each row tagged with the node that took it,
/// and records the client-side time and row id of every acknowledged commit.
pub struct Prober {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Vec<Attempt>>>,
    names: Vec<String>,
}

/// One write attempt of a [`Prober`].
#[derive(Clone, Copy, Debug)]
pub struct Attempt {
    /// When the client sent it.
    pub start: Instant,
    /// When the answer (or the client's 2 s timeout) came.
    pub end: Instant,
    /// For an acknowledged commit: the wall-clock time of the acknowledgement and the row id.
    pub ack: Option<(SystemTime, i64)>,
}

/// The acknowledged commits of one node.
#[derive(Clone, Debug, Default)]
pub struct Acks {
    /// Member name.
    pub node: String,
    /// Client-side time of each acknowledgement (after the commit), in order.
    pub times: Vec<SystemTime>,
    /// The `probe.id` of each acknowledged row.
    pub ids: Vec<i64>,
}

impl Prober {
    /// Starts one writer per node into table `probe` (created by the caller).
    pub fn start(c: &Cluster) -> Prober {
        Prober::start_at(c.nodes.iter().map(|n| (n.name.clone(), n.host.clone(), n.pg_port)).collect())
    }

    /// Starts one writer per (name, host, port) into table `probe`.
    pub fn start_at(targets: Vec<(String, String, u16)>) -> Prober {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let names = targets.iter().map(|t| t.0.clone()).collect();
        let threads = targets
            .into_iter()
            .map(|(name, host, port)| {
                let stop = stop.clone();
                std::thread::spawn(move || probe(&host, port, &name, &stop))
            })
            .collect();
        Prober { stop, threads, names }
    }

    /// Stops and returns each node's acknowledged commits.
    pub fn finish(self) -> Vec<Acks> {
        self.finish_attempts()
            .into_iter()
            .map(|(node, attempts)| {
                let (times, ids) = attempts.iter().filter_map(|a| a.ack).unzip();
                Acks { node, times, ids }
            })
            .collect()
    }

    /// Stops and returns every attempt of each node, in order.
    pub fn finish_attempts(self) -> Vec<(String, Vec<Attempt>)> {
        self.stop.store(true, Ordering::SeqCst);
        self.names.into_iter().zip(self.threads).map(|(node, t)| (node, t.join().unwrap_or_default())).collect()
    }
}

/// Writes into `probe` on one server every 20 ms. The time limit is the client's: a
/// server-side `statement_timeout` would cancel a commit's wait for a synchronous standby,
/// and PostgreSQL then reports the commit as done (with a warning) although no standby
/// has it, which is not an acknowledgement the cluster owes anything.
fn probe(host: &str, port: u16, name: &str, stop: &std::sync::atomic::AtomicBool) -> Vec<Attempt> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut attempts = Vec::new();
    rt.block_on(async {
        let mut client: Option<tokio_postgres::Client> = None;
        while !stop.load(Ordering::SeqCst) {
            if client.as_ref().is_none_or(|c| c.is_closed()) {
                let conn = format!("host={host} port={port} user=postgres dbname=postgres connect_timeout=1");
                client = match tokio::time::timeout(
                    Duration::from_secs(1),
                    tokio_postgres::connect(&conn, tokio_postgres::NoTls),
                )
                .await
                {
                    Ok(Ok((c, conn))) => {
                        tokio::spawn(conn);
                        Some(c)
                    }
                    _ => None,
                };
            }
            if let Some(c) = &client {
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&name];
                let start = Instant::now();
                let insert = c.query_one("INSERT INTO probe (node) VALUES ($1) RETURNING id", &params);
                let ack = match tokio::time::timeout(Duration::from_secs(2), insert).await {
                    Ok(Ok(row)) => Some((SystemTime::now(), row.get::<_, i64>(0))),
                    Ok(Err(_)) => None,
                    Err(_) => {
                        // Dropping the connection ends the session; the outcome is unknown.
                        client = None;
                        None
                    }
                };
                attempts.push(Attempt { start, end: Instant::now(), ack });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    attempts
}

/// The commit the rolling-upgrade test upgrades from: the last one before the DCS layout
/// carried a schema version.
pub const UPGRADE_FROM: &str = "b75bd6fde37e9fe2e7f58761f557ed6367757c89";

/// The etcd-only `hashell` of `commit`, built once by `scripts/build-old-hashell.sh`
/// (which `scripts/test.sh` runs before the tests).
pub fn old_daemon(commit: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(root.join("scripts/build-old-hashell.sh"))
        .arg(commit)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("scripts/build-old-hashell.sh runs");
    assert!(out.status.success(), "cannot build hashell {commit}");
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(p.is_file(), "{} is not a file", p.display());
    p
}

/// The daemon binary built with this package: next to the test binary's `deps` directory
/// (cargo builds a package's binaries before running its integration tests), or the one
/// `E2E_DAEMON` names (the benchmark's etcd-only deploy build; not a `HASHELL_` name,
/// which the daemon would read as a configuration override).
pub fn daemon_exe() -> PathBuf {
    if let Some(p) = std::env::var_os("E2E_DAEMON") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "E2E_DAEMON={} is not a file", p.display());
        return p;
    }
    let me = std::env::current_exe().expect("test binary path");
    // A test binary sits in target/<profile>/deps, a binary of this package next to it.
    let exe = me
        .ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join("hashell-under-test"))
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("hashell-under-test"));
    assert!(exe.exists(), "{} is missing: run the tests with cargo (it builds the binary first)", exe.display());
    exe
}

/// A PostgreSQL outside any cluster that archives its WAL, with a base backup taken
/// without WAL (`-X none`): what a restore from backup and archive starts from.
pub struct ArchivingSource {
    /// The server.
    pub pg: hashell::pg::testing::PgInstance,
    /// The WAL archive (`archive_command` copies there).
    pub archive: PathBuf,
    /// The base backup.
    pub backup: PathBuf,
}

impl ArchivingSource {
    /// Starts it, runs `setup` SQL, then takes the base backup.
    pub fn start(setup: &str) -> ArchivingSource {
        use hashell::pg::testing::{pg_command, PgInstance};
        let pg = PgInstance::initdb();
        let archive = pg.root.join("archive");
        let backup = pg.root.join("base");
        std::fs::create_dir_all(&archive).expect("archive directory");
        hashell::local::chown(&archive);
        let conf = format!("archive_mode = on\narchive_command = 'cp %p {}/%f'\n", archive.display());
        let mut f = std::fs::OpenOptions::new().append(true).open(pg.data.join("postgresql.conf")).expect("conf");
        std::io::Write::write_all(&mut f, conf.as_bytes()).expect("conf written");
        pg.start();
        pg.psql(setup);
        let out = pg_command("pg_basebackup")
            .arg("-D")
            .arg(&backup)
            .args(["-d", &format!("host=127.0.0.1 port={} user=postgres", pg.port), "-X", "none", "-c", "fast"])
            .output()
            .expect("pg_basebackup");
        assert!(out.status.success(), "pg_basebackup: {}", String::from_utf8_lossy(&out.stderr));
        ArchivingSource { pg, archive, backup }
    }

    /// Switches to a new WAL segment and waits until the archive has the finished one.
    pub fn archive_all(&self) {
        let last = self.pg.psql("SELECT pg_walfile_name(pg_switch_wal())");
        let t0 = Instant::now();
        while self.pg.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < last {
            assert!(t0.elapsed() < Duration::from_secs(30), "the archive did not receive {last}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
