//! Failover benchmark side by side with Patroni (issue 8): the same 3-node loopback cluster
//! (real PostgreSQL 15, one etcd per cluster), run with hashell and with Patroni in turn, one
//! iteration of each system after the other in every repetition, so both see the same
//! machine at the same time. Run it with `bench/compare.sh` (installs Patroni, builds).
//!
//! Every iteration, on a fresh cluster, with a client writing a row every 20 ms through a
//! libpq multi-host string (`target_session_attrs=read-write`) and recording every attempt:
//!
//! 1. node crash: SIGKILL of the primary's daemon (and guard) and every PostgreSQL process;
//!    the write gap (last acknowledged write on the old primary to the first on the new),
//!    and the time from the leader key's expiry in etcd (a watch on the store) to that first
//!    write;
//! 2. rejoin: the crashed node's daemon is started again; time until its PostgreSQL streams
//!    from the new primary (`pg_stat_wal_receiver.status = 'streaming'`);
//! 3. PostgreSQL-only crash on the primary (the daemon lives): time from the kill to the next
//!    acknowledged write anywhere;
//! 4. planned switchover to a named replica: the write gap;
//! 5. the acknowledged writes are checked against the final primary's table (asynchronous
//!    replication at both tools' defaults: a crash may lose the last writes; counted).
//!
//! Then, once per system and preset, the footprint of the idle healthy cluster over a window:
//! daemon RSS, daemon CPU seconds per hour, and requests each node sends to etcd per minute
//! (etcd's own `/metrics`), raft proposals per minute.
//!
//!   compare [--runs 5] [--presets defaults,fastest,tuned] [--only hashell|patroni]
//!           [--window 60] [--svg FILE] [--patroni PATH] [--keep]
//!
//! `--keep` leaves each cluster's directory (daemon and PostgreSQL logs) in the temp dir.

use backend_etcd::server::EtcdServer;
use e2e::patroni::{PatroniCluster, PatroniTiming};
use hashell::demo::{writer, Ack};
use hashell::local::{http, LocalCluster, LocalOptions};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// hashell's fastest settings the simulator shows safe with etcd at its default election
/// timing and failsafe on (docs/benchmarks.md says how that was checked).
const HASHELL_FASTEST: &str = "ttl = \"5s\"\nloop_wait = \"500ms\"\nretry_timeout = \"1s\"\nfailsafe_mode = true\n";

/// hashell's settings for an etcd tuned for fast failover (heartbeat 50 ms, election
/// 500 ms, [`ETCD_TUNED`]) on a machine where the guard's kill is fast: a 2 s lease needs a
/// smaller margin than the defaults' 2 s (fence_time 1.5 s + wake_latency 0.5 s), so the
/// preset states its physical assumptions. The simulator checks it with the same numbers.
const HASHELL_TUNED: &str = "ttl = \"2s\"\nloop_wait = \"200ms\"\nretry_timeout = \"400ms\"\nfailsafe_mode = true\n\
[safety]\nfence_time = 500\nwake_latency = 300\n";

/// etcd flags of the tuned preset.
const ETCD_TUNED: [&str; 4] = ["--heartbeat-interval", "50", "--election-timeout", "500"];

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum System {
    Hashell,
    Patroni,
}

impl System {
    fn label(self) -> &'static str {
        match self {
            System::Hashell => "hashell",
            System::Patroni => "Patroni",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Preset {
    Defaults,
    Fastest,
    Tuned,
}

impl Preset {
    fn label(self) -> &'static str {
        match self {
            Preset::Defaults => "defaults",
            Preset::Fastest => "fastest",
            Preset::Tuned => "tuned",
        }
    }
    fn describe(self, s: System) -> &'static str {
        match (s, self) {
            (System::Hashell, Preset::Defaults) => "ttl 25 s, loop_wait 5 s, retry_timeout 5 s",
            (System::Hashell, Preset::Fastest) => "ttl 5 s, loop_wait 0.5 s, retry_timeout 1 s, failsafe on",
            (System::Patroni, Preset::Defaults) => "ttl 30 s, loop_wait 10 s, retry_timeout 10 s",
            (System::Patroni, Preset::Fastest) => "ttl 20 s, loop_wait 1 s, retry_timeout 3 s",
            (System::Hashell, Preset::Tuned) => {
                "etcd heartbeat 50 ms, election 500 ms; ttl 2 s, loop_wait 0.2 s, retry_timeout 0.4 s, \
                 failsafe on, fence_time 0.5 s, wake_latency 0.3 s"
            }
            (System::Patroni, Preset::Tuned) => {
                "etcd heartbeat 50 ms, election 500 ms; ttl 20 s, loop_wait 1 s, retry_timeout 3 s (its lowest)"
            }
        }
    }
}

/// A running cluster of either tool.
enum Ha {
    Hashell(LocalCluster, PathBuf),
    Patroni(PatroniCluster),
}

impl Ha {
    fn pg_ports(&self) -> Vec<u16> {
        match self {
            Ha::Hashell(c, _) => c.nodes.iter().map(|n| n.pg_port).collect(),
            Ha::Patroni(c) => c.nodes.iter().map(|n| n.pg_port).collect(),
        }
    }
    fn data(&self, i: usize) -> PathBuf {
        match self {
            Ha::Hashell(c, _) => c.nodes[i].data(),
            Ha::Patroni(c) => c.nodes[i].data(),
        }
    }
    fn start(&mut self, i: usize) -> Result<(), String> {
        match self {
            Ha::Hashell(c, exe) => c.start_daemon(i, exe),
            Ha::Patroni(c) => c.start_daemon(i),
        }
    }
    fn kill_node(&mut self, i: usize) {
        match self {
            Ha::Hashell(c, _) => c.kill_node(i),
            Ha::Patroni(c) => c.kill_node(i),
        }
    }
    fn kill_postgres(&self, i: usize) -> Result<i32, String> {
        hashell::pg::kill::kill_instance(&self.data(i))
            .ok_or_else(|| format!("no postmaster runs for {}", self.data(i).display()))
    }
    fn primaries(&self) -> Vec<usize> {
        match self {
            Ha::Hashell(c, _) => c.primaries(),
            Ha::Patroni(c) => c.primaries(),
        }
    }
    fn healthy(&self) -> Option<usize> {
        match self {
            Ha::Hashell(c, _) => hashell::demo::healthy(c),
            Ha::Patroni(c) => c.healthy(),
        }
    }
    fn switchover(&self, from: usize, to: usize) -> Result<(), String> {
        match self {
            Ha::Hashell(c, exe) => {
                let out = Command::new(exe)
                    .args(["switchover", "--candidate", &c.nodes[to].name, "--force"])
                    .arg(c.nodes[from].config())
                    .output()
                    .map_err(|e| e.to_string())?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(format!("hashell switchover: {}", String::from_utf8_lossy(&out.stderr)))
                }
            }
            Ha::Patroni(c) => c.switchover(from, to),
        }
    }
    /// The daemon's own processes on node `i` (not PostgreSQL's).
    fn daemon_pids(&self, i: usize) -> Vec<i32> {
        match self {
            Ha::Hashell(c, _) => {
                let mut v: Vec<i32> = c.daemon_pid(i).map(|p| p as i32).into_iter().collect();
                v.extend(c.guards(i));
                v
            }
            Ha::Patroni(c) => {
                let Some(p) = c.nodes[i].pid() else { return Vec::new() };
                let mut v = vec![p as i32];
                v.extend(descendants(p as i32).into_iter().filter(|&d| comm(d) != "postgres"));
                v
            }
        }
    }
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string()
}

/// (ppid, utime + stime in clock ticks) from /proc/PID/stat.
fn stat(pid: i32) -> Option<(i32, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((f.get(1)?.parse().ok()?, f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?))
}

fn descendants(root: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let all: Vec<(i32, i32)> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|p| Some((p, stat(p)?.0)))
        .collect();
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(c, pp) in &all {
            if pp == p {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}

/// A `kB` field of /proc/PID/status (`VmRSS`, `RssAnon`).
fn status_kib(pid: i32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn wait<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T, String> {
    let t0 = Instant::now();
    loop {
        if let Some(t) = f() {
            return Ok(t);
        }
        if t0.elapsed() > limit {
            return Err(format!("gave up after {limit:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn psql(bin: &Path, port: u16, sql: &str) -> Result<String, String> {
    let out = Command::new(bin.join("psql"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-d", "postgres", "-XAtqc", sql])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Deletions of keys ending in `/leader`, as etcd reports them to a watch.
struct LeaderWatch {
    child: std::process::Child,
    deletes: Arc<Mutex<Vec<Instant>>>,
}

impl LeaderWatch {
    fn start(endpoint: &str) -> Result<LeaderWatch, String> {
        let mut child = Command::new("etcdctl")
            .args(["--endpoints", endpoint, "watch", "--prefix", "/"])
            .env("ETCDCTL_API", "3")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run etcdctl: {e}"))?;
        let out = child.stdout.take().ok_or("no stdout")?;
        let deletes: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let d = deletes.clone();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(out).lines();
            while let Some(Ok(l)) = lines.next() {
                if l == "DELETE" {
                    let at = Instant::now();
                    if let Some(Ok(key)) = lines.next() {
                        if key.ends_with("/leader") {
                            d.lock().unwrap_or_else(|p| p.into_inner()).push(at);
                        }
                    }
                }
            }
        });
        Ok(LeaderWatch { child, deletes })
    }
    fn first_after(&self, t: Instant) -> Option<Instant> {
        self.deletes.lock().ok()?.iter().copied().filter(|&d| d > t).min()
    }
}

impl Drop for LeaderWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Counters from etcd's `/metrics`: gRPC messages received per method, raft proposals.
fn etcd_counters(port: u16) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    let Some((200, body)) = http("GET", port, "/metrics", "") else { return m };
    for l in body.lines() {
        let value = || l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()).unwrap_or(0.0);
        if let Some(rest) = l.strip_prefix("grpc_server_msg_received_total{") {
            if let Some(method) = rest.split("grpc_method=\"").nth(1).and_then(|s| s.split('"').next()) {
                *m.entry(method.to_string()).or_default() += value();
            }
        } else if l.starts_with("etcd_server_proposals_committed_total ") {
            m.insert("raft proposals".into(), value());
        }
    }
    m
}

#[derive(Default, Clone)]
struct Iteration {
    crash_gap: f64,
    expiry_to_write: Option<f64>,
    rejoin: f64,
    pg_crash_gap: f64,
    switchover_gap: f64,
    acked: usize,
    lost: usize,
    /// Acks around the crash, relative to the kill (s), with the node index.
    crash_acks: Vec<(f64, usize)>,
    crash_new_at: f64,
}

#[derive(Default, Clone)]
struct Footprint {
    rss_kib: f64,
    anon_kib: f64,
    cpu_s_per_h: f64,
    requests_per_node_min: BTreeMap<String, f64>,
}

/// Gap from the last ack on `from` before `after` to the first ack on `to` after it.
fn gap(acks: &[Ack], from: u16, to: u16, after: Instant) -> Option<f64> {
    let last = acks.iter().filter(|a| a.1 == from && a.0 <= after).map(|a| a.0).max()?;
    let first = acks.iter().filter(|a| a.1 == to && a.0 > after).map(|a| a.0).min()?;
    Some(first.saturating_duration_since(last).as_secs_f64())
}

struct Env {
    exe: PathBuf,
    patroni: PathBuf,
    bin_dir: PathBuf,
    window: u64,
    keep: bool,
}

fn iterate(
    env: &Env,
    sys: System,
    preset: Preset,
    run: usize,
    footprint: bool,
) -> Result<(Iteration, Option<Footprint>), String> {
    let etcd = EtcdServer::try_start_on("127.0.0.1", if preset == Preset::Tuned { &ETCD_TUNED } else { &[] })?;
    let watch = LeaderWatch::start(&etcd.endpoint())?;
    let root = std::env::temp_dir().join(format!("hashell-compare-{}-{}-{run}", std::process::id(), sys.label()));
    let mut ha = match sys {
        System::Hashell => {
            let opts = LocalOptions {
                settings: match preset {
                    Preset::Defaults => String::new(),
                    Preset::Fastest => HASHELL_FASTEST.into(),
                    Preset::Tuned => HASHELL_TUNED.into(),
                },
                ..LocalOptions::new(env.exe.clone(), env.bin_dir.clone(), &etcd.endpoint())
            };
            let mut c = LocalCluster::create(root, &opts)?;
            c.keep(env.keep);
            Ha::Hashell(c, env.exe.clone())
        }
        System::Patroni => {
            let t = if preset == Preset::Defaults { PatroniTiming::DEFAULTS } else { PatroniTiming::FASTEST };
            let mut c = PatroniCluster::create(root, &env.patroni, &env.bin_dir, &etcd.endpoint(), t)?;
            c.keep(env.keep);
            Ha::Patroni(c)
        }
    };
    for i in 0..3 {
        ha.start(i)?;
    }
    let limit = Duration::from_secs(240);
    let p = wait("a healthy cluster", limit, || ha.healthy())?;
    let ports = ha.pg_ports();
    psql(&env.bin_dir, ports[p], "CREATE TABLE demo (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())")?;
    let stop = Arc::new(AtomicBool::new(false));
    let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
    let w = {
        let (stop, acks) = (stop.clone(), acks.clone());
        let addrs = ports.iter().map(|&p| ("127.0.0.1".to_string(), p)).collect();
        std::thread::spawn(move || writer(addrs, stop, acks))
    };
    let snapshot = || acks.lock().map(|a| a.clone()).unwrap_or_default();
    // Faults land at a random point of the tools' loops: the crash gap depends on how long
    // ago the last renewal was, and the harness's own waits would otherwise line the kill
    // up with a loop boundary. 3 to 13 s: a whole 10 s Patroni loop, two of hashell's.
    let mut rng = (run as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (sys as u64 + 1) ^ ((preset as u64 + 1) << 8);
    let mut pause = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        Duration::from_millis(3_000 + rng % 10_000)
    };
    let result = (|| -> Result<Iteration, String> {
        let mut it = Iteration::default();
        std::thread::sleep(pause());

        // 1. Node crash.
        let killed = Instant::now();
        ha.kill_node(p);
        let new = wait("a new primary", limit, || {
            let ps = ha.primaries();
            (ps.len() == 1 && ps[0] != p).then(|| ps[0])
        })?;
        let first_new = wait("a write on the new primary", limit, || {
            snapshot().iter().filter(|a| a.1 == ports[new] && a.0 > killed).map(|a| a.0).min()
        })?;
        let a = snapshot();
        it.crash_gap = gap(&a, ports[p], ports[new], killed).ok_or("no write on the old primary before the crash")?;
        it.expiry_to_write = watch.first_after(killed).map(|d| first_new.saturating_duration_since(d).as_secs_f64());
        let rel = |t: Instant| {
            t.checked_duration_since(killed).map_or_else(|| -(killed - t).as_secs_f64(), |d| d.as_secs_f64())
        };
        it.crash_new_at = rel(first_new);
        it.crash_acks = a
            .iter()
            .filter(|x| rel(x.0) > -3.0 && rel(x.0) < it.crash_new_at + 2.0)
            .map(|x| (rel(x.0), ports.iter().position(|&q| q == x.1).unwrap_or(0)))
            .collect();
        std::thread::sleep(Duration::from_secs(2));

        // 2. The crashed node comes back and streams again.
        let restarted = Instant::now();
        ha.start(p)?;
        wait("the old primary streaming", limit, || {
            let s = psql(&env.bin_dir, ports[p], "SELECT status FROM pg_stat_wal_receiver").ok()?;
            (s == "streaming").then_some(())
        })?;
        it.rejoin = restarted.elapsed().as_secs_f64();
        let cur = wait("a healthy cluster after the rejoin", limit, || ha.healthy())?;
        std::thread::sleep(pause());

        // 3. PostgreSQL alone crashes on the primary.
        // From the moment every process is dead: the kill takes a few milliseconds (it
        // freezes the postmaster, then walks /proc), and the backends serve meanwhile.
        let pm = ha.kill_postgres(cur)?;
        let killed = Instant::now();
        let before = snapshot().iter().map(|a| a.0).filter(|&t| t <= killed).max().ok_or("no writes")?;
        let (next, on) = wait("a write after the PostgreSQL crash", limit, || {
            snapshot().iter().filter(|a| a.0 > killed).map(|a| (a.0, a.1)).min()
        })?;
        eprintln!(
            "  killed postmaster {pm} of node {cur}; next write on port {on} (node {:?})",
            ports.iter().position(|&q| q == on)
        );
        it.pg_crash_gap = next.saturating_duration_since(before).as_secs_f64();
        let cur = wait("a healthy cluster after the PostgreSQL crash", limit, || ha.healthy())?;
        std::thread::sleep(pause());

        // 4. Planned switchover to the first other member.
        let to = (0..3).find(|&i| i != cur).unwrap_or(0);
        let asked = Instant::now();
        ha.switchover(cur, to)?;
        wait("a write on the switchover target", limit, || {
            snapshot().iter().any(|a| a.1 == ports[to] && a.0 > asked).then_some(())
        })?;
        it.switchover_gap = gap(&snapshot(), ports[cur], ports[to], asked).ok_or("no write before the switchover")?;
        std::thread::sleep(Duration::from_secs(1));
        Ok(it)
    })();
    stop.store(true, Ordering::SeqCst);
    let _ = w.join();
    let mut it = result?;

    // 5. Every acknowledged write on the final primary?
    let fin = wait("a healthy cluster at the end", limit, || ha.healthy())?;
    let rows = psql(&env.bin_dir, ports[fin], "SELECT id FROM demo")?;
    let have: std::collections::HashSet<i64> = rows.lines().filter_map(|l| l.parse().ok()).collect();
    let a = snapshot();
    it.acked = a.len();
    it.lost = a.iter().filter(|x| !have.contains(&x.2)).count();

    let fp = if footprint {
        std::thread::sleep(Duration::from_secs(10));
        let pids: Vec<Vec<i32>> = (0..3).map(|i| ha.daemon_pids(i)).collect();
        let cpu = |pids: &[Vec<i32>]| -> u64 { pids.iter().flatten().filter_map(|&p| stat(p)).map(|s| s.1).sum() };
        let (c0, e0, t0) = (cpu(&pids), etcd_counters(etcd.port()), Instant::now());
        std::thread::sleep(Duration::from_secs(env.window));
        let (c1, e1, secs) = (cpu(&pids), etcd_counters(etcd.port()), t0.elapsed().as_secs_f64());
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let rss: u64 = pids.iter().flatten().map(|&p| status_kib(p, "VmRSS")).sum();
        let anon: u64 = pids.iter().flatten().map(|&p| status_kib(p, "RssAnon")).sum();
        let mut req = BTreeMap::new();
        for (k, v1) in &e1 {
            let d = v1 - e0.get(k).copied().unwrap_or(0.0);
            if d > 0.0 {
                let per_node = if k == "raft proposals" { 1.0 } else { 3.0 };
                req.insert(k.clone(), d / per_node / (secs / 60.0));
            }
        }
        Some(Footprint {
            rss_kib: rss as f64 / 3.0,
            anon_kib: anon as f64 / 3.0,
            cpu_s_per_h: (c1 - c0) as f64 / hz / 3.0 / secs * 3600.0,
            requests_per_node_min: req,
        })
    } else {
        None
    };
    drop(ha);
    drop(watch);
    drop(etcd);
    Ok((it, fp))
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn spread(v: &[f64]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let lo = v.iter().copied().fold(f64::MAX, f64::min);
    let hi = v.iter().copied().fold(f64::MIN, f64::max);
    format!("{:.2} s ({lo:.2}-{hi:.2})", median(v))
}

fn svg(crashes: &[(String, Iteration)]) -> String {
    let (w, row, left) = (900.0, 60.0, 170.0);
    let t_min = -3.0;
    let t_max = crashes.iter().map(|c| c.1.crash_new_at + 2.0).fold(10.0, f64::max).ceil();
    let x = |t: f64| left + (t - t_min) / (t_max - t_min) * (w - left - 20.0);
    let h = 40.0 + row * crashes.len() as f64 + 30.0;
    let colors = ["#1f77b4", "#d62728", "#2ca02c"];
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"20\" font-size=\"14\">Acknowledged writes around a node crash (SIGKILL of the primary's daemon and PostgreSQL at t = 0); colour = node</text>\n"
    );
    for (r, (label, it)) in crashes.iter().enumerate() {
        let y = 40.0 + row * r as f64;
        s += &format!("<text x=\"10\" y=\"{}\">{label}</text>\n", y + row / 2.0);
        s += &format!("<text x=\"10\" y=\"{}\" fill=\"#555\">gap {:.2} s</text>\n", y + row / 2.0 + 15.0, it.crash_gap);
        for &(t, node) in &it.crash_acks {
            s += &format!(
                "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{2:.1}\" stroke=\"{3}\" stroke-width=\"1\"/>\n",
                x(t),
                y + 10.0,
                y + row - 10.0,
                colors[node % 3]
            );
        }
    }
    let axis_y = 40.0 + row * crashes.len() as f64;
    s += &format!("<line x1=\"{}\" x2=\"{}\" y1=\"{axis_y}\" y2=\"{axis_y}\" stroke=\"black\"/>\n", x(t_min), x(t_max));
    let mut t = t_min;
    while t <= t_max {
        s += &format!(
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{axis_y}\" y2=\"{1}\" stroke=\"black\"/><text x=\"{0:.1}\" y=\"{2}\" text-anchor=\"middle\">{t:.0} s</text>\n",
            x(t),
            axis_y + 5.0,
            axis_y + 18.0
        );
        t += if t_max - t_min > 30.0 { 5.0 } else { 1.0 };
    }
    s + "</svg>\n"
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned());
    let runs: usize = flag("--runs").and_then(|v| v.parse().ok()).unwrap_or(5);
    let window: u64 = flag("--window").and_then(|v| v.parse().ok()).unwrap_or(60);
    let presets: Vec<Preset> = flag("--presets")
        .unwrap_or_else(|| "defaults,fastest".into())
        .split(',')
        .map(|p| match p {
            "defaults" => Preset::Defaults,
            "fastest" => Preset::Fastest,
            "tuned" => Preset::Tuned,
            other => {
                eprintln!("unknown preset {other:?}: use defaults, fastest or tuned");
                std::process::exit(2)
            }
        })
        .collect();
    let systems: Vec<System> = match flag("--only").as_deref() {
        None => vec![System::Hashell, System::Patroni],
        Some("hashell") => vec![System::Hashell],
        Some("patroni") => vec![System::Patroni],
        Some(other) => {
            eprintln!("--only {other:?}: use hashell or patroni");
            std::process::exit(2)
        }
    };
    let patroni = flag("--patroni").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("patroni"));
    let env = Env {
        exe: e2e::daemon_exe(),
        patroni,
        bin_dir: hashell::pg::testing::pg_bin(),
        window,
        keep: args.iter().any(|a| a == "--keep"),
    };
    let mut results: BTreeMap<(Preset, System), Vec<Iteration>> = BTreeMap::new();
    let mut footprints: BTreeMap<(Preset, System), Footprint> = BTreeMap::new();
    let mut failures = 0;
    println!("run preset   system   crash   expiry->write  rejoin  pg-crash  switchover  acked lost");
    for run in 1..=runs {
        for &preset in &presets {
            for &sys in &systems {
                let fp = run == 1;
                match iterate(&env, sys, preset, run, fp) {
                    Ok((it, f)) => {
                        println!(
                            "{run:>3} {:<8} {:<8} {:>6.2} {:>14} {:>7.2} {:>9.2} {:>11.2} {:>6} {:>4}",
                            preset.label(),
                            sys.label(),
                            it.crash_gap,
                            it.expiry_to_write.map_or("-".into(), |v| format!("{v:.2}")),
                            it.rejoin,
                            it.pg_crash_gap,
                            it.switchover_gap,
                            it.acked,
                            it.lost
                        );
                        results.entry((preset, sys)).or_default().push(it);
                        if let Some(f) = f {
                            footprints.insert((preset, sys), f);
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        println!("{run:>3} {:<8} {:<8} FAILED: {e}", preset.label(), sys.label());
                    }
                }
            }
        }
    }

    println!("\n## Write gaps and rejoin, median (min-max) of {runs} runs\n");
    type Metric = (&'static str, fn(&Iteration) -> Option<f64>);
    let metrics: [Metric; 5] = [
        ("node crash: write gap", |i| Some(i.crash_gap)),
        ("node crash: leader key expiry to first write", |i| i.expiry_to_write),
        ("PostgreSQL crash on the primary: write gap", |i| Some(i.pg_crash_gap)),
        ("planned switchover: write gap", |i| Some(i.switchover_gap)),
        ("old primary streaming again after its restart", |i| Some(i.rejoin)),
    ];
    for &preset in &presets {
        println!(
            "### {}: hashell {}; Patroni {}\n",
            preset.label(),
            preset.describe(System::Hashell),
            preset.describe(System::Patroni)
        );
        println!("| scenario | hashell | Patroni | ratio (medians) |\n|---|---:|---:|---:|");
        for (name, f) in &metrics {
            let vals = |s: System| -> Vec<f64> {
                results.get(&(preset, s)).map(|v| v.iter().filter_map(f).collect()).unwrap_or_default()
            };
            let (h, p) = (vals(System::Hashell), vals(System::Patroni));
            let ratio =
                if h.is_empty() || p.is_empty() { "-".into() } else { format!("{:.2}x", median(&h) / median(&p)) };
            println!("| {name} | {} | {} | {ratio} |", spread(&h), spread(&p));
        }
        let lost = |s: System| -> String {
            results.get(&(preset, s)).map_or("-".into(), |v| {
                format!("{} of {}", v.iter().map(|i| i.lost).sum::<usize>(), v.iter().map(|i| i.acked).sum::<usize>())
            })
        };
        println!(
            "| acknowledged writes lost (asynchronous replication) | {} | {} | |\n",
            lost(System::Hashell),
            lost(System::Patroni)
        );
    }
    if !footprints.is_empty() {
        println!("## Footprint of an idle healthy cluster, per node, over {window} s\n");
        for &preset in &presets {
            let (h, p) = (footprints.get(&(preset, System::Hashell)), footprints.get(&(preset, System::Patroni)));
            if h.is_none() && p.is_none() {
                continue;
            }
            println!("### {}\n\n| measure | hashell | Patroni | ratio |\n|---|---:|---:|---:|", preset.label());
            let row = |name: &str, h: Option<f64>, p: Option<f64>, unit: &str| {
                let fmt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}{unit}"));
                let r = match (h, p) {
                    (Some(h), Some(p)) if p > 0.0 => format!("{:.2}x", h / p),
                    _ => "-".into(),
                };
                println!("| {name} | {} | {} | {r} |", fmt(h), fmt(p));
            };
            row("daemon RSS (MiB)", h.map(|f| f.rss_kib / 1024.0), p.map(|f| f.rss_kib / 1024.0), "");
            row("of which private (RssAnon, MiB)", h.map(|f| f.anon_kib / 1024.0), p.map(|f| f.anon_kib / 1024.0), "");
            row("daemon CPU (s per hour)", h.map(|f| f.cpu_s_per_h), p.map(|f| f.cpu_s_per_h), "");
            let mut keys: Vec<&String> =
                h.iter().chain(p.iter()).flat_map(|f| f.requests_per_node_min.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let label = if k == "raft proposals" {
                    "etcd raft proposals per minute (whole cluster)".to_string()
                } else {
                    format!("etcd {k} per node per minute")
                };
                row(
                    &label,
                    h.map(|f| f.requests_per_node_min.get(k).copied().unwrap_or(0.0)),
                    p.map(|f| f.requests_per_node_min.get(k).copied().unwrap_or(0.0)),
                    "",
                );
            }
            println!();
        }
    }
    if let Some(path) = flag("--svg") {
        let crashes: Vec<(String, Iteration)> = presets
            .iter()
            .flat_map(|&pr| systems.iter().map(move |&s| (pr, s)))
            .filter_map(|k| Some((format!("{} ({})", k.1.label(), k.0.label()), results.get(&k)?.first()?.clone())))
            .collect();
        match std::fs::write(&path, svg(&crashes)) {
            Ok(()) => println!("timeline of the first crash of each: {path}"),
            Err(e) => eprintln!("cannot write {path}: {e}"),
        }
    }
    if failures > 0 {
        eprintln!("{failures} iteration(s) failed");
        std::process::exit(1);
    }
}
