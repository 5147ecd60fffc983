//! A whole cluster on one machine: N daemons on loopback ports, each with its own
//! PostgreSQL data directory under one root directory, run as the PostgreSQL user when
//! started by root. Used by `hashell demo` and the end-to-end tests. Every process it
//! started (daemons, their guards, postmasters) is killed when it is dropped.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// uid and gid to run daemons and PostgreSQL as: ours, or `postgres`'s when we are root
/// (PostgreSQL refuses to run as root).
pub fn run_as() -> Result<Option<(u32, u32)>, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = std::ffi::CString::new("postgres").map_err(|e| e.to_string())?;
    // SAFETY: getpwnam with a valid C string; the result is read before any other call.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(
            "running as root needs a `postgres` user to run PostgreSQL as (Debian's postgresql-15 creates it)".into()
        );
    }
    // SAFETY: pw is non-null and points to a valid passwd entry.
    Ok(unsafe { Some(((*pw).pw_uid, (*pw).pw_gid)) })
}

/// Whether user `uid` (group `gid`, no other groups) may do `want` (a mask of the
/// owner's bits: 0o4 read, 0o1 execute/search) on the file `meta` describes.
fn permits(meta: &std::fs::Metadata, uid: u32, gid: u32, want: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let mode = meta.mode();
    let bits = if meta.uid() == uid {
        mode >> 6
    } else if meta.gid() == gid {
        mode >> 3
    } else {
        mode
    };
    bits & want == want
}

/// Whether user `uid` can run `exe`: every directory above it searchable, the file
/// readable and executable.
fn can_execute(exe: &Path, uid: u32, gid: u32) -> bool {
    let Ok(exe) = exe.canonicalize() else { return false };
    let dirs_ok = exe.ancestors().skip(1).all(|d| std::fs::metadata(d).is_ok_and(|m| permits(&m, uid, gid, 0o1)));
    dirs_ok && std::fs::metadata(&exe).is_ok_and(|m| permits(&m, uid, gid, 0o5))
}

/// `exe`, or when the daemon user cannot reach it (a checkout under a mode-0700
/// directory, such as `mktemp -d` makes) a hard link to it (a copy across file systems)
/// in `root/bin`, which that user owns and which goes away with the cluster.
fn reachable_exe(exe: &Path, root: &Path, uid: u32, gid: u32) -> Result<PathBuf, String> {
    if can_execute(exe, uid, gid) {
        return Ok(exe.to_path_buf());
    }
    let name = exe.file_name().ok_or_else(|| format!("{} names no file", exe.display()))?;
    let dir = root.join("bin");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    chown(&dir);
    let to = dir.join(name);
    if !to.exists() && std::fs::hard_link(exe, &to).is_err() {
        std::fs::copy(exe, &to).map_err(|e| format!("cannot copy {} to {}: {e}", exe.display(), to.display()))?;
    }
    if !can_execute(&to, uid, gid) {
        return Err(format!(
            "the user PostgreSQL runs as (uid {uid}) cannot run {} nor its copy {}: let it search the \
             directories above them (chmod o+x) or build in a directory it can read",
            exe.display(),
            to.display()
        ));
    }
    Ok(to)
}

/// `exe` as the daemons' user can run it: itself, or when we are root and that user
/// cannot reach it, a link or copy in `dir/bin` (see [`reachable_exe`]).
pub fn daemon_user_exe(exe: &Path, dir: &Path) -> Result<PathBuf, String> {
    match run_as()? {
        Some((uid, gid)) => reachable_exe(exe, dir, uid, gid),
        None => Ok(exe.to_path_buf()),
    }
}

/// Gives `path` to the user PostgreSQL runs as (when we are root).
pub fn chown(path: &Path) {
    if let Ok(Some((uid, gid))) = run_as() {
        let _ = std::os::unix::fs::chown(path, Some(uid), Some(gid));
    }
}

pub use loopback::free_port;

/// A minimal HTTP/1.0 request to a loopback port; returns (status, body).
pub fn http(method: &str, port: u16, path: &str, body: &str) -> Option<(u16, String)> {
    http_with(method, port, path, body, &[], Duration::from_secs(3))
}

/// [`http`] with extra headers and a read timeout.
pub fn http_with(
    method: &str,
    port: u16,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Option<(u16, String)> {
    http_at("127.0.0.1", method, port, path, body, headers, timeout)
}

/// [`http_with`] to `host` (an IPv4 address).
pub fn http_at(
    host: &str,
    method: &str,
    port: u16,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Option<(u16, String)> {
    let ip: std::net::Ipv4Addr = host.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&(ip, port).into(), Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((code, body))
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

/// Makes `cmd` run in network namespace `ns` (a name under /var/run/netns), as `user` if
/// given: joining a namespace needs root, so the switch to the user happens after it.
fn enter_netns(cmd: &mut Command, ns: &str, user: Option<(u32, u32)>) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let path = format!("/var/run/netns/{ns}");
    let file = std::fs::File::open(&path).map_err(|e| format!("cannot open network namespace {path}: {e}"))?;
    // SAFETY: only async-signal-safe calls (setns, setgroups, setgid, setuid) between fork
    // and exec; `file` lives in the closure, so its descriptor is open in the child.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some((uid, gid)) = user {
                if libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Ok(())
}

fn kill(pid: i32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) };
}

/// Short timing for demos and tests: ttl 10 s, loop_wait 1 s, retry_timeout 2 s.
pub const FAST_SETTINGS: &str = "ttl = \"10s\"\nloop_wait = \"1s\"\nretry_timeout = \"2s\"\n";

/// One member.
pub struct LocalNode {
    /// Member name.
    pub name: String,
    /// Its directory (data, socket, logs, configuration).
    pub root: PathBuf,
    /// PostgreSQL port.
    pub pg_port: u16,
    /// REST API port.
    pub api_port: u16,
    /// The address PostgreSQL and the REST API listen on (127.0.0.1 unless in a namespace).
    pub host: String,
    /// The network namespace its processes run in, if any.
    pub netns: Option<String>,
    daemon: Option<Child>,
}

impl LocalNode {
    /// The data directory.
    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }
    /// The daemon's log.
    pub fn log(&self) -> PathBuf {
        self.root.join("daemon.log")
    }
    /// The configuration file.
    pub fn config(&self) -> PathBuf {
        self.root.join("hashell.toml")
    }
}

/// What the cluster looks like.
#[derive(Clone, Debug)]
pub struct LocalOptions {
    /// The `hashell` binary to run.
    pub exe: PathBuf,
    /// PostgreSQL's binaries.
    pub bin_dir: PathBuf,
    /// The etcd endpoint each node uses (one entry per node).
    pub endpoints: Vec<String>,
    /// The `[settings]` lines (e.g. [`FAST_SETTINGS`]; empty: the defaults, ttl 25 s).
    pub settings: String,
    /// `[log] level`.
    pub log_level: String,
    /// `[log] format` (`pretty` or `json`).
    pub log_format: String,
    /// Extra `[postgresql]` lines (hooks, `restore_command`).
    pub postgresql: String,
    /// Extra `[postgresql.parameters]` lines (e.g. `archive_mode`).
    pub parameters: String,
    /// Extra lines after `[rest]` (e.g. a `[rest.auth]` table).
    pub rest: String,
    /// Each node's `[dcs.*]` section instead of `[dcs.etcd]` on `endpoints` (e.g. DynamoDB).
    pub dcs: Option<Vec<String>>,
    /// Environment of the daemons (e.g. AWS credentials).
    pub env: Vec<(String, String)>,
    /// Per node: the network namespace (a name under /var/run/netns) its daemon, guard and
    /// PostgreSQL run in, and its address there. Empty: every node on 127.0.0.1.
    pub netns: Vec<(String, String)>,
    /// Capabilities the daemons keep as ambient ones (e.g. `net_admin`, so that a callback
    /// can move an address as a systemd unit with `AmbientCapabilities=` would let it).
    /// Only when we are root (the daemons then run as `postgres` through `setpriv`).
    pub ambient_caps: Vec<String>,
}

impl LocalOptions {
    /// Three nodes of `exe` on `endpoint`, at the default settings, logging at info.
    pub fn new(exe: PathBuf, bin_dir: PathBuf, endpoint: &str) -> LocalOptions {
        LocalOptions {
            exe,
            bin_dir,
            endpoints: vec![endpoint.to_string(); 3],
            settings: String::new(),
            log_level: "info".into(),
            log_format: "pretty".into(),
            postgresql: String::new(),
            parameters: String::new(),
            rest: String::new(),
            dcs: None,
            env: Vec::new(),
            netns: Vec::new(),
            ambient_caps: Vec::new(),
        }
    }
}

/// N daemons under one directory.
pub struct LocalCluster {
    /// The directory holding every node's.
    pub root: PathBuf,
    /// Members, `n1`...
    pub nodes: Vec<LocalNode>,
    keep: bool,
    env: Vec<(String, String)>,
    ambient_caps: Vec<String>,
}

impl LocalCluster {
    /// Creates the directories and configuration files (starts nothing).
    pub fn create(root: PathBuf, opts: &LocalOptions) -> Result<LocalCluster, String> {
        run_as()?;
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
        chown(&root);
        let mut c = LocalCluster {
            root,
            nodes: Vec::new(),
            keep: false,
            env: opts.env.clone(),
            ambient_caps: opts.ambient_caps.clone(),
        };
        for (i, endpoint) in opts.endpoints.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let (netns, host) = match opts.netns.get(i) {
                Some((ns, host)) => (Some(ns.clone()), host.clone()),
                None => (None, "127.0.0.1".to_string()),
            };
            let node = LocalNode {
                root: c.root.join(&name),
                name,
                pg_port: free_port(),
                api_port: free_port(),
                host,
                netns,
                daemon: None,
            };
            std::fs::create_dir_all(&node.root).map_err(|e| format!("cannot create {}: {e}", node.root.display()))?;
            chown(&node.root);
            let dcs = match &opts.dcs {
                Some(sections) => sections.get(i).cloned().unwrap_or_default(),
                None => format!("[dcs.etcd]\nendpoints = [\"{endpoint}\"]"),
            };
            std::fs::write(node.config(), config_text(&node, &dcs, opts))
                .map_err(|e| format!("cannot write {}: {e}", node.config().display()))?;
            chown(&node.config());
            c.nodes.push(node);
        }
        Ok(c)
    }

    /// Leaves the directory in place when dropped (processes are still killed).
    pub fn keep(&mut self, keep: bool) {
        self.keep = keep;
    }

    /// Starts (or restarts) node `i`'s daemon, as the PostgreSQL user when we are root.
    pub fn start_daemon(&mut self, i: usize, exe: &Path) -> Result<(), String> {
        let n = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(n.log())
            .map_err(|e| format!("cannot open {}: {e}", n.log().display()))?;
        chown(&n.log());
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut user = run_as()?;
        let exe = &daemon_user_exe(exe, &self.root)?;
        let mut cmd = match user {
            // setpriv changes the user and keeps the capabilities (it execs: same PID).
            Some((uid, gid)) if !self.ambient_caps.is_empty() => {
                let caps: Vec<String> = self.ambient_caps.iter().map(|c| format!("+{c}")).collect();
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg(format!("--inh-caps={}", caps.join(",")))
                    .arg(format!("--ambient-caps={}", caps.join(",")))
                    .arg("--")
                    .arg(exe);
                user = None;
                c
            }
            _ => Command::new(exe),
        };
        cmd.arg("run").arg(n.config()).stdin(Stdio::null()).stdout(log).stderr(err);
        cmd.env_remove("RUST_LOG").env("LC_ALL", "C").envs(self.env.iter().map(|(k, v)| (k, v)));
        if run_as()?.is_some() {
            cmd.env("HOME", &n.root);
        }
        if let Some(ns) = &n.netns {
            enter_netns(&mut cmd, ns, user)?;
        } else if let Some((uid, gid)) = user {
            cmd.uid(uid).gid(gid);
        }
        n.daemon = Some(cmd.spawn().map_err(|e| format!("cannot start {}: {e}", exe.display()))?);
        Ok(())
    }

    /// SIGKILLs node `i`'s daemon (its guard and PostgreSQL keep running).
    pub fn kill_daemon(&mut self, i: usize) {
        if let Some(mut d) = self.nodes[i].daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }

    /// Whether node `i`'s daemon (started by this cluster) still runs.
    pub fn daemon_alive(&mut self, i: usize) -> bool {
        self.nodes[i].daemon.as_mut().is_some_and(|d| matches!(d.try_wait(), Ok(None)))
    }

    /// PID of node `i`'s daemon, if this cluster started one that runs.
    pub fn daemon_pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].daemon.as_ref().map(Child::id)
    }

    /// Sends `sig` to node `i`'s daemon.
    pub fn signal_daemon(&self, i: usize, sig: libc::c_int) {
        if let Some(d) = &self.nodes[i].daemon {
            kill(d.id() as i32, sig);
        }
    }

    /// PID of node `i`'s postmaster, if one runs.
    pub fn postmaster(&self, i: usize) -> Option<i32> {
        crate::pg::files::postmaster_pid(&self.nodes[i].data()).filter(|&p| crate::pg::files::is_postgres(p))
    }

    /// SIGKILLs every PostgreSQL process of node `i` (a crash).
    pub fn kill_postgres(&self, i: usize) {
        crate::pg::kill::kill_instance(&self.nodes[i].data());
    }

    /// PIDs of node `i`'s fencing guards.
    pub fn guards(&self, i: usize) -> Vec<i32> {
        let data = self.nodes[i].data().display().to_string();
        processes_with(&["guard", "--data-dir", &data])
    }

    /// SIGKILLs node `i`'s guards.
    pub fn kill_guards(&self, i: usize) {
        for g in self.guards(i) {
            kill(g, libc::SIGKILL);
        }
    }

    /// The whole node dies at once: daemon, guard, PostgreSQL.
    pub fn kill_node(&mut self, i: usize) {
        self.kill_daemon(i);
        self.kill_guards(i);
        self.kill_postgres(i);
    }

    /// `GET /status` of node `i`.
    pub fn status(&self, i: usize) -> Option<serde_json::Value> {
        let n = &self.nodes[i];
        let (_, body) = http_at(&n.host, "GET", n.api_port, "/status", "", &[], Duration::from_secs(3))?;
        serde_json::from_str(&body).ok()
    }

    /// The status code of `GET path` on node `i`.
    pub fn probe(&self, i: usize, path: &str) -> Option<u16> {
        let n = &self.nodes[i];
        http_at(&n.host, "GET", n.api_port, path, "", &[], Duration::from_secs(3)).map(|(c, _)| c)
    }

    /// Every node's PostgreSQL address (host, port).
    pub fn pg_addrs(&self) -> Vec<(String, u16)> {
        self.nodes.iter().map(|n| (n.host.clone(), n.pg_port)).collect()
    }

    /// Nodes answering 200 on `/primary`.
    pub fn primaries(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.probe(i, "/primary") == Some(200)).collect()
    }

    /// One line per node: name, role, timeline, LSN, reason.
    pub fn table(&self) -> String {
        let mut out = format!("{:<6} {:<14} {:<9} {:<12} {}\n", "member", "role", "timeline", "lsn", "state");
        for (i, n) in self.nodes.iter().enumerate() {
            match self.status(i) {
                Some(s) => out.push_str(&format!(
                    "{:<6} {:<14} {:<9} {:<12} {}\n",
                    n.name,
                    s["role"].as_str().unwrap_or("?"),
                    s["timeline"].as_u64().unwrap_or(0),
                    s["lsn"].as_str().unwrap_or("?"),
                    s["reason"].as_str().unwrap_or("?"),
                )),
                None => out.push_str(&format!("{:<6} (no answer)\n", n.name)),
            }
        }
        out
    }
}

fn config_text(n: &LocalNode, dcs: &str, o: &LocalOptions) -> String {
    format!(
        r#"[cluster]
name = "local"
[node]
name = "{name}"
{dcs}
[postgresql]
bin_dir = "{bin}"
data_dir = "{data}"
socket_dir = "{root}"
port = {pg}
listen = "{host}"
connect_address = "{host}:{pg}"
{postgresql}
pg_hba = ["local all all trust", "host all all {net} trust", "host replication all {net} trust"]
[postgresql.superuser]
username = "postgres"
[postgresql.replication]
username = "replicator"
[postgresql.parameters]
fsync = false
shared_buffers = "16MB"
max_wal_senders = 10
wal_keep_size = "64MB"
{parameters}
[rest]
listen = "{host}:{api}"
connect_address = "{host}:{api}"
{rest}
[settings]
{settings}
[log]
level = "{level}"
format = "{format}"
"#,
        name = n.name,
        bin = o.bin_dir.display(),
        data = n.data().display(),
        root = n.root.display(),
        pg = n.pg_port,
        api = n.api_port,
        host = n.host,
        // In namespaces the clients and peers are on the nodes' bridge network.
        net = if n.netns.is_some() { "samenet" } else { "127.0.0.1/32" },
        settings = o.settings,
        level = o.log_level,
        format = o.log_format,
        postgresql = o.postgresql,
        parameters = o.parameters,
        rest = o.rest,
    )
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.signal_daemon(i, libc::SIGCONT);
            self.kill_node(i);
        }
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}
