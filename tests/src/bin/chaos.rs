//! Chaos on real processes (issue 9): a 3-node cluster (PostgreSQL 15, one etcd, hashell)
//! under a random, seeded schedule of faults, with a client writing continuously in
//! synchronous mode and a probe writing to every node many times a second.
//!
//! The schedule is a series of rounds: each round starts 2-5 faults at random points of an
//! 6 s window, each lasting 0.3-9 s (some outlast the ttl, some are ridden out), then heals everything (signals continued,
//! processes restarted, cuts removed) and waits for convergence (one primary, every other
//! node streaming from it on its timeline) within the liveness bound. Faults: SIGKILL of a
//! daemon, of a whole PostgreSQL instance, of a whole node (daemon, guard, PostgreSQL);
//! SIGSTOP of a daemon or of etcd; an etcd restart; a switchover; and, in network
//! namespaces ([`e2e::netns`]), a node cut from etcd, a one-way or two-way cut between two
//! nodes, a node isolated from etcd and its peers (clients still reach it). Targets are
//! roles (the primary, a replica) resolved when the fault starts.
//!
//! Checks: after each round, convergence within the bound; at the end, every write
//! acknowledged to the client or to the probe is in the final primary's tables, and no two
//! nodes were writable at the same instant. A node is taken as writable over a run of
//! consecutive acknowledged probe writes with no failed attempt between, from the first
//! one's acknowledgement to the last one's sending (where it certainly was writable at both
//! ends); two such spans of different nodes that overlap are reported with their times.
//!
//!   chaos [--seed N] [--faults 200] [--max-minutes 20] [--svg FILE] [--keep]
//!
//! The seed decides the schedule; the same seed replays it (real processes keep their
//! own timing). Needs root (namespaces, iptables); `bench/chaos.sh` installs what it needs.

use backend_etcd::server::EtcdServer;
use e2e::netns::{Net, Peer};
use e2e::{Attempt, Prober};
use hashell::demo::{healthy, writer, Ack};
use hashell::local::{LocalCluster, LocalOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// ttl 5 s, loop_wait 0.5 s, retry_timeout 1 s, failsafe on: the fastest settings the
/// simulator shows safe (docs/benchmarks.md), so that many faults fit in a run; synchronous
/// mode so that no acknowledged write may be lost.
const SETTINGS: &str = "ttl = \"5s\"\nloop_wait = \"500ms\"\nretry_timeout = \"1s\"\nfailsafe_mode = true\n\
synchronous_mode = \"on\"\n";

/// Convergence bound after a heal at [`SETTINGS`], as the simulator's L1 bound: leases held
/// at the heal run out (an etcd that comes back extends them by a ttl), an election waits
/// up to a ttl for stragglers, then promotion, and every other node rewinds or clones and
/// starts: 3 ttl + 4 loop_wait + 2 retry_timeout + those operations (seconds here) + 10 s.
const BOUND: Duration = Duration::from_secs(60);

/// A fault's target, resolved when it starts.
#[derive(Clone, Copy, Debug)]
enum Who {
    Primary,
    Replica(usize),
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    KillDaemon(Who),
    KillPostgres(Who),
    KillNode(Who),
    StopDaemon(Who),
    StopEtcd,
    RestartEtcd,
    /// To a named replica (the `n`th), or to the best one.
    Switchover(Option<usize>),
    CutEtcd(Who),
    /// One node stops reaching another (`true`: both ways).
    CutPeer(Who, Who, bool),
    Isolate(Who),
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::KillDaemon(_) => "kill-daemon",
            Kind::KillPostgres(_) => "kill-postgres",
            Kind::KillNode(_) => "kill-node",
            Kind::StopDaemon(_) => "stop-daemon",
            Kind::StopEtcd => "stop-etcd",
            Kind::RestartEtcd => "restart-etcd",
            Kind::Switchover(_) => "switchover",
            Kind::CutEtcd(_) => "cut-etcd",
            Kind::CutPeer(_, _, false) => "cut-peer-one-way",
            Kind::CutPeer(_, _, true) => "cut-peer",
            Kind::Isolate(_) => "isolate",
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Fault {
    at: Duration,
    lasts: Duration,
    kind: Kind,
}

/// splitmix64: the schedule's only source of randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
    fn who(&mut self) -> Who {
        match self.below(3) {
            0 | 1 => Who::Primary,
            _ => Who::Replica(self.below(2) as usize),
        }
    }
}

/// The rounds of a run: `faults` faults in rounds of 2-5.
fn schedule(seed: u64, faults: usize) -> Vec<Vec<Fault>> {
    let mut r = Rng(seed);
    let mut rounds = Vec::new();
    let mut left = faults;
    while left > 0 {
        let n = (2 + r.below(4) as usize).min(left);
        left -= n;
        let round = (0..n)
            .map(|_| {
                let kind = match r.below(20) {
                    0..=2 => Kind::KillNode(r.who()),
                    3..=4 => Kind::KillDaemon(r.who()),
                    5..=6 => Kind::KillPostgres(r.who()),
                    7..=8 => Kind::StopDaemon(r.who()),
                    9 => Kind::StopEtcd,
                    10 => Kind::RestartEtcd,
                    11..=12 => Kind::Switchover((r.below(2) == 0).then(|| r.below(2) as usize)),
                    13..=14 => Kind::CutEtcd(r.who()),
                    15..=17 => {
                        let a = r.who();
                        let b = match a {
                            Who::Primary => Who::Replica(r.below(2) as usize),
                            Who::Replica(_) => Who::Primary,
                        };
                        Kind::CutPeer(a, b, r.below(2) == 0)
                    }
                    _ => Kind::Isolate(r.who()),
                };
                // Some faults outlast the ttl (a failover), some do not (ridden out).
                Fault { at: r.ms(0, 6_000), lasts: r.ms(300, 9_000), kind }
            })
            .collect();
        rounds.push(round);
    }
    rounds
}

/// One event of a run, for the log, the summary and the picture.
#[derive(Clone, Debug)]
struct Logged {
    start: Instant,
    end: Instant,
    what: String,
}

struct Chaos {
    c: LocalCluster,
    etcd: EtcdServer,
    net: Net,
    exe: PathBuf,
    t0: Instant,
    /// etcd was killed by a fault and not started again yet.
    etcd_killed: bool,
    log: Vec<Logged>,
}

impl Chaos {
    fn secs(&self, t: Instant) -> f64 {
        t.duration_since(self.t0).as_secs_f64()
    }

    fn resolve(&self, w: Who) -> usize {
        let p = self.c.primaries().first().copied().unwrap_or(0);
        match w {
            Who::Primary => p,
            Who::Replica(k) => {
                let others: Vec<usize> = (0..self.c.nodes.len()).filter(|&i| i != p).collect();
                others[k % others.len()]
            }
        }
    }

    /// Starts a fault; returns what it did and the undo to run at its end.
    fn start(&mut self, k: Kind) -> (String, Option<Undo>) {
        let name = |c: &LocalCluster, i: usize| c.nodes[i].name.clone();
        match k {
            Kind::KillDaemon(w) => {
                let i = self.resolve(w);
                self.c.kill_daemon(i);
                (format!("kill-daemon {}", name(&self.c, i)), Some(Undo::StartDaemon(i)))
            }
            Kind::KillPostgres(w) => {
                let i = self.resolve(w);
                self.c.kill_postgres(i);
                (format!("kill-postgres {}", name(&self.c, i)), None)
            }
            Kind::KillNode(w) => {
                let i = self.resolve(w);
                self.c.kill_node(i);
                (format!("kill-node {}", name(&self.c, i)), Some(Undo::StartDaemon(i)))
            }
            Kind::StopDaemon(w) => {
                let i = self.resolve(w);
                self.c.signal_daemon(i, libc::SIGSTOP);
                (format!("stop-daemon {}", name(&self.c, i)), Some(Undo::ContDaemon(i)))
            }
            Kind::StopEtcd => {
                self.etcd.freeze();
                ("stop-etcd".into(), Some(Undo::ThawEtcd))
            }
            Kind::RestartEtcd => {
                self.etcd.kill();
                self.etcd_killed = true;
                ("kill-etcd".into(), Some(Undo::StartEtcd))
            }
            Kind::Switchover(named) => {
                let from = self.resolve(Who::Primary);
                let to = named.map(|k| self.resolve(Who::Replica(k)));
                let mut cmd = Command::new(&self.exe);
                cmd.args(["switchover", "--force"]);
                if let Some(to) = to {
                    cmd.args(["--candidate", &self.c.nodes[to].name]);
                }
                let out = cmd.arg(self.c.nodes[from].config()).output();
                let result = match out {
                    Ok(o) if o.status.success() => "done".to_string(),
                    Ok(o) => format!("refused: {}", String::from_utf8_lossy(&o.stderr).trim()),
                    Err(e) => format!("not run: {e}"),
                };
                let to = to.map_or("the best".to_string(), |t| name(&self.c, t));
                (format!("switchover {} -> {to} ({result})", name(&self.c, from)), None)
            }
            Kind::CutEtcd(w) => {
                let i = self.resolve(w);
                let r = self.net.cut(i, Peer::Etcd);
                (format!("cut-etcd {}{}", name(&self.c, i), err(r)), Some(Undo::Heal))
            }
            Kind::CutPeer(a, b, both) => {
                let (i, j) = (self.resolve(a), self.resolve(b));
                let r = if both { self.net.cut(i, Peer::Node(j)) } else { self.net.drop_to(i, Peer::Node(j)) };
                let arrow = if both { "<-x->" } else { "-x->" };
                (format!("cut {} {arrow} {}{}", name(&self.c, i), name(&self.c, j), err(r)), Some(Undo::Heal))
            }
            Kind::Isolate(w) => {
                let i = self.resolve(w);
                let r = self.net.isolate(i);
                (format!("isolate {}{}", name(&self.c, i), err(r)), Some(Undo::Heal))
            }
        }
    }

    fn undo(&mut self, u: Undo) {
        match u {
            Undo::StartDaemon(i) => self.ensure_daemon(i),
            Undo::ContDaemon(i) => self.c.signal_daemon(i, libc::SIGCONT),
            Undo::ThawEtcd => self.etcd.thaw(),
            Undo::StartEtcd => self.ensure_etcd(),
            // Cuts are removed all at once at the round's heal (they may overlap).
            Undo::Heal => {}
        }
    }

    fn ensure_daemon(&mut self, i: usize) {
        if !self.c.daemon_alive(i) {
            if let Err(e) = self.c.start_daemon(i, &self.exe) {
                eprintln!("cannot start {}: {e}", self.c.nodes[i].name);
            }
        }
    }

    fn ensure_etcd(&mut self) {
        if self.etcd_killed {
            self.etcd.restart();
            self.etcd_killed = false;
        }
    }

    /// Ends every fault: cuts removed, everything continued and running.
    fn heal(&mut self) {
        if let Err(e) = self.net.heal() {
            eprintln!("heal: {e}");
        }
        self.etcd.thaw();
        self.ensure_etcd();
        for i in 0..self.c.nodes.len() {
            self.c.signal_daemon(i, libc::SIGCONT);
            self.ensure_daemon(i);
        }
    }

    /// Waits until the cluster is converged and stays so for 2 s; the time it took.
    fn converge(&self) -> Option<Duration> {
        let t = Instant::now();
        while t.elapsed() < BOUND {
            if let Some(p) = healthy(&self.c) {
                let at = t.elapsed();
                std::thread::sleep(Duration::from_secs(2));
                if healthy(&self.c) == Some(p) {
                    return Some(at);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

fn err(r: Result<(), String>) -> String {
    r.err().map(|e| format!(" (failed: {e})")).unwrap_or_default()
}

#[derive(Clone, Copy, Debug)]
enum Undo {
    StartDaemon(usize),
    ContDaemon(usize),
    ThawEtcd,
    StartEtcd,
    Heal,
}

/// Spans (first acknowledgement, last sending) of consecutive acknowledged probe writes.
fn writable_spans(attempts: &[Attempt]) -> Vec<(Instant, Instant)> {
    let mut spans = Vec::new();
    let mut run: Option<(Instant, Instant)> = None;
    for a in attempts {
        match (a.ack, run) {
            (Some(_), None) => run = Some((a.end, a.start)),
            (Some(_), Some((from, _))) => run = Some((from, a.start)),
            (None, Some(span)) => {
                spans.push(span);
                run = None;
            }
            (None, None) => {}
        }
    }
    spans.extend(run);
    spans.retain(|(from, to)| from < to);
    spans
}

/// Overlaps of writable spans of different nodes: (node a, node b, from, to).
fn dual_writable(nodes: &[(String, Vec<Attempt>)]) -> Vec<(String, String, Instant, Instant)> {
    let spans: Vec<(String, Vec<(Instant, Instant)>)> =
        nodes.iter().map(|(n, a)| (n.clone(), writable_spans(a))).collect();
    let mut out = Vec::new();
    for (i, (a, sa)) in spans.iter().enumerate() {
        for (b, sb) in &spans[i + 1..] {
            for &(f1, t1) in sa {
                for &(f2, t2) in sb {
                    let (from, to) = (f1.max(f2), t1.min(t2));
                    if from < to {
                        out.push((a.clone(), b.clone(), from, to));
                    }
                }
            }
        }
    }
    out
}

fn psql(bin: &Path, host: &str, port: u16, sql: &str) -> Result<String, String> {
    let out = Command::new(bin.join("psql"))
        .args(["-h", host, "-p", &port.to_string(), "-U", "postgres", "-d", "postgres", "-XAtqc", sql])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn ids(text: &str) -> std::collections::BTreeSet<i64> {
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// Write availability per node over time (probe acknowledgements), faults as bands.
fn svg(chaos: &Chaos, nodes: &[(String, Vec<Attempt>)], end: Instant) -> String {
    let total = chaos.secs(end).max(1.0);
    let (w, left, row) = (1400.0, 60.0, 28.0);
    let x = |t: f64| left + t / total * (w - left - 10.0);
    let fault_rows = 4usize;
    let h = 40.0 + row * (nodes.len() + fault_rows) as f64 + 30.0;
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='11'>\n\
         <rect width='100%' height='100%' fill='white'/>\n\
         <text x='{left}' y='16' font-size='13'>chaos run: acknowledged probe writes per node (green); faults below \
         (hover for details)</text>\n"
    );
    for (k, (name, attempts)) in nodes.iter().enumerate() {
        let y = 30.0 + row * k as f64;
        s.push_str(&format!("<text x='4' y='{}'>{name}</text>\n", y + 14.0));
        // One pixel column per slice of time, green where the node acknowledged a write in
        // it; runs of green columns drawn as one rectangle.
        let cols = (w - left - 10.0) as usize;
        let mut lit = vec![false; cols + 1];
        for a in attempts.iter().filter(|a| a.ack.is_some()) {
            lit[((x(chaos.secs(a.end)) - left) as usize).min(cols)] = true;
        }
        let mut c = 0;
        while c <= cols {
            if !lit[c] {
                c += 1;
                continue;
            }
            let from = c;
            while c <= cols && lit[c] {
                c += 1;
            }
            s.push_str(&format!(
                "<rect x='{:.0}' y='{y}' width='{}' height='18' fill='#2a2'/>\n",
                left + from as f64,
                c - from
            ));
        }
    }
    for (k, e) in chaos.log.iter().enumerate() {
        let y = 30.0 + row * (nodes.len() + k % fault_rows) as f64;
        let (a, b) = (x(chaos.secs(e.start)), x(chaos.secs(e.end)).max(x(chaos.secs(e.start)) + 2.0));
        s.push_str(&format!(
            "<rect x='{a:.1}' y='{y}' width='{:.1}' height='18' fill='#d33' fill-opacity='0.5'><title>{:.1}-{:.1} s: {}</title></rect>\n",
            b - a,
            chaos.secs(e.start),
            chaos.secs(e.end),
            e.what.replace('<', "&lt;").replace('>', "&gt;")
        ));
    }
    let base = 30.0 + row * (nodes.len() + fault_rows) as f64 + 14.0;
    let step = if total > 600.0 { 60.0 } else { 10.0 };
    let mut t = 0.0;
    while t <= total {
        s.push_str(&format!("<text x='{:.1}' y='{base}'>{t:.0}s</text>\n", x(t)));
        t += step;
    }
    s.push_str("</svg>\n");
    s
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned());
    let seed: u64 = flag("--seed").and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs())
    });
    let faults: usize = flag("--faults").and_then(|v| v.parse().ok()).unwrap_or(200);
    let max_minutes: u64 = flag("--max-minutes").and_then(|v| v.parse().ok()).unwrap_or(20);
    let keep = args.iter().any(|a| a == "--keep");
    if let Err(e) = Net::available() {
        eprintln!("chaos: {e}");
        std::process::exit(2);
    }
    match run(seed, faults, max_minutes, keep, flag("--svg")) {
        Ok(true) => println!("chaos: seed {seed}: all checks passed"),
        Ok(false) => {
            println!("chaos: seed {seed}: FAILED (replay: chaos --seed {seed} --faults {faults})");
            std::process::exit(1)
        }
        Err(e) => {
            eprintln!("chaos: seed {seed}: {e}");
            std::process::exit(2)
        }
    }
}

fn run(seed: u64, faults: usize, max_minutes: u64, keep: bool, svg_out: Option<String>) -> Result<bool, String> {
    let rounds = schedule(seed, faults);
    println!(
        "chaos: seed {seed}, {faults} faults in {} rounds, settings: {}",
        rounds.len(),
        SETTINGS.replace('\n', " ")
    );
    let net = Net::create(3)?;
    let etcd = EtcdServer::try_start_on(&net.etcd_ip(), &[])?;
    let exe = e2e::daemon_exe();
    let bin_dir = hashell::pg::testing::pg_bin();
    let root = std::env::temp_dir().join(format!("hashell-chaos-{}", std::process::id()));
    let opts = LocalOptions {
        settings: SETTINGS.into(),
        netns: (0..3).map(|i| (net.ns(i), net.node_ip(i))).collect(),
        ..LocalOptions::new(exe.clone(), bin_dir.clone(), &etcd.endpoint())
    };
    let mut c = LocalCluster::create(root, &opts)?;
    c.keep(keep);
    for i in 0..3 {
        c.start_daemon(i, &exe)?;
    }
    let t0 = Instant::now();
    let mut chaos = Chaos { c, etcd, net, exe, t0, etcd_killed: false, log: Vec::new() };
    let p = chaos.converge().ok_or("the cluster did not come up")?;
    println!("cluster up after {:.1} s", p.as_secs_f64());
    let p = healthy(&chaos.c).ok_or("no primary")?;
    let (host, port) = (chaos.c.nodes[p].host.clone(), chaos.c.nodes[p].pg_port);
    psql(&bin_dir, &host, port, "CREATE TABLE demo (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())")?;
    psql(&bin_dir, &host, port, "CREATE TABLE probe (id bigserial PRIMARY KEY, node text)")?;
    // Let the replicas receive the tables before the probes write to them.
    std::thread::sleep(Duration::from_secs(1));
    let stop = Arc::new(AtomicBool::new(false));
    let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
    let w = {
        let (stop, acks, addrs) = (stop.clone(), acks.clone(), chaos.c.pg_addrs());
        std::thread::spawn(move || writer(addrs, stop, acks))
    };
    let prober = Prober::start_at(chaos.c.nodes.iter().map(|n| (n.name.clone(), n.host.clone(), n.pg_port)).collect());

    let deadline = t0 + Duration::from_secs(max_minutes * 60);
    let mut converged: Vec<f64> = Vec::new();
    let mut stuck = 0;
    let mut done = 0;
    let mut per_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for (r, round) in rounds.iter().enumerate() {
        if Instant::now() > deadline {
            println!("time is up after {r} rounds");
            break;
        }
        // Events: (time from round start, fault index, start or end).
        let mut events: Vec<(Duration, usize, bool)> = Vec::new();
        for (k, f) in round.iter().enumerate() {
            events.push((f.at, k, true));
            events.push((f.at + f.lasts, k, false));
        }
        events.sort_by_key(|e| (e.0, !e.2));
        let start = Instant::now();
        let mut undo: Vec<Option<Undo>> = vec![None; round.len()];
        let mut began: Vec<Option<(Instant, String)>> = vec![None; round.len()];
        for (at, k, is_start) in events {
            if let Some(wait) = (start + at).checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if is_start {
                let (what, u) = chaos.start(round[k].kind);
                println!("[{:7.1}] round {r:>3}: {what}", chaos.secs(Instant::now()));
                undo[k] = u;
                began[k] = Some((Instant::now(), what));
                *per_kind.entry(round[k].kind.name()).or_default() += 1;
                done += 1;
            } else {
                if let Some(u) = undo[k].take() {
                    chaos.undo(u);
                }
                if let Some((s, what)) = began[k].take() {
                    chaos.log.push(Logged { start: s, end: Instant::now(), what });
                }
            }
        }
        chaos.heal();
        match chaos.converge() {
            Some(t) => {
                converged.push(t.as_secs_f64());
                println!(
                    "[{:7.1}] round {r:>3}: healed, converged in {:.1} s",
                    chaos.secs(Instant::now()),
                    t.as_secs_f64()
                );
            }
            None => {
                stuck += 1;
                println!(
                    "[{:7.1}] round {r:>3}: NOT converged within {} s:\n{}",
                    chaos.secs(Instant::now()),
                    BOUND.as_secs(),
                    chaos.c.table()
                );
            }
        }
    }

    // Final state: writes stop, the cluster settles, every acknowledged write is checked.
    let end = Instant::now();
    stop.store(true, Ordering::SeqCst);
    let _ = w.join();
    let attempts = prober.finish_attempts();
    chaos.heal();
    let settled = chaos.converge();
    let p = healthy(&chaos.c).ok_or_else(|| format!("no converged cluster at the end:\n{}", chaos.c.table()))?;
    let (host, port) = (chaos.c.nodes[p].host.clone(), chaos.c.nodes[p].pg_port);
    let demo = ids(&psql(&bin_dir, &host, port, "SELECT id FROM demo")?);
    let probe = ids(&psql(&bin_dir, &host, port, "SELECT id FROM probe")?);
    let acked: Vec<i64> = acks.lock().map(|a| a.iter().map(|x| x.2).collect()).unwrap_or_default();
    let lost_writer: Vec<i64> = acked.iter().copied().filter(|id| !demo.contains(id)).collect();
    let probe_acked: Vec<(String, i64)> =
        attempts.iter().flat_map(|(n, a)| a.iter().filter_map(|x| x.ack.map(|(_, id)| (n.clone(), id)))).collect();
    let lost_probe: Vec<&(String, i64)> = probe_acked.iter().filter(|(_, id)| !probe.contains(id)).collect();
    let dual = dual_writable(&attempts);
    let timelines = chaos.c.status(p).and_then(|s| s["timeline"].as_u64()).unwrap_or(0);

    println!("\n## chaos summary (seed {seed})\n");
    println!("| measure | value |\n|---|---:|");
    println!("| faults injected | {done} |");
    println!("| rounds | {} |", converged.len() + stuck);
    println!("| wall time | {:.1} min |", end.duration_since(t0).as_secs_f64() / 60.0);
    println!("| final timeline | {timelines} |");
    println!("| writes acknowledged to the client (sync mode) | {} |", acked.len());
    println!("| of which missing on the final primary | {} |", lost_writer.len());
    println!("| probe writes acknowledged (every node) | {} |", probe_acked.len());
    println!("| of which missing on the final primary | {} |", lost_probe.len());
    println!("| instants with two writable nodes | {} |", dual.len());
    let mut sorted = converged.clone();
    sorted.sort_by(f64::total_cmp);
    let med = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    println!(
        "| convergence after a heal: median / max | {med:.1} s / {:.1} s |",
        sorted.last().copied().unwrap_or(0.0)
    );
    println!("| rounds not converged within {} s | {stuck} |", BOUND.as_secs());
    println!("\n| fault | count |\n|---|---:|");
    for (k, n) in &per_kind {
        println!("| {k} | {n} |");
    }
    for (a, b, from, to) in dual.iter().take(20) {
        println!("DUAL WRITABLE: {a} and {b} from {:.3} s to {:.3} s", chaos.secs(*from), chaos.secs(*to));
    }
    for id in lost_writer.iter().take(20) {
        println!("LOST: client write {id}");
    }
    for (n, id) in lost_probe.iter().take(20) {
        println!("LOST: probe write {id} on {n}");
    }
    if let Some(file) = svg_out {
        std::fs::write(&file, svg(&chaos, &attempts, end)).map_err(|e| format!("cannot write {file}: {e}"))?;
        println!("timeline picture: {file}");
    }
    Ok(lost_writer.is_empty() && lost_probe.is_empty() && dual.is_empty() && stuck == 0 && settled.is_some())
}
