//! Faults, fault schedules drawn from a seed (swarm testing), and their text form.
//!
//! One fault per line, e.g.:
//!
//! ```text
//! at 30s crash primary for 20s
//! at 40s cut-dcs n2 out for 15s
//! at 60s isolate primary for 30s
//! at 90s clock-jump n2 3000ms
//! at 110s switchover to n3
//! at 150s switchover from primary in 30s
//! ```

use crate::rng::Rng;
use hacore::Millis;
use std::fmt;

/// Which node a fault hits; `Primary` and `Replica` are resolved when the fault starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Node index (n1 is 0).
    Node(usize),
    /// The node accepting writes (else the leader, else any).
    Primary,
    /// Some node that is not the primary.
    Replica,
}

/// Direction of a cut link, seen from the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Nothing passes.
    Both,
    /// The node's messages are lost (its requests never arrive).
    Out,
    /// Messages to the node are lost (requests arrive, replies do not).
    In,
}

/// What goes wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// The machine dies (daemon, guard, PostgreSQL) and comes back after the duration.
    Crash(Target),
    /// PostgreSQL alone is killed.
    KillPg(Target),
    /// The daemon is frozen (SIGSTOP) for the duration; PostgreSQL and the guard run on.
    PauseDaemon(Target),
    /// PostgreSQL runs but stops answering for the duration.
    HangPg(Target),
    /// The node's link to the store is cut.
    CutDcs(Target, Dir),
    /// The link between two nodes is cut.
    CutPeer(Target, Target, Dir),
    /// Every link of the node is cut.
    Isolate(Target),
    /// The store is down for everyone.
    DcsOutage,
    /// etcd's own leader changes: every lease is extended by its ttl.
    StoreLeaderChange,
    /// The node's monotonic clock jumps forward by this many ms.
    ClockJump(Target, Millis),
    /// The node's clock rate changes to this many ppm (within the bound).
    Drift(Target, i64),
    /// PostgreSQL operations take this many times longer for the duration.
    SlowPg(Target, u64),
    /// PostgreSQL operations fail half of the time for the duration.
    FailPg(Target),
    /// The node's next PostgreSQL operation to finish fails, that one only (scenarios: a
    /// fence whose first stop fails and whose retry works). Not drawn by the swarm.
    FailPgOnce(Target),
    /// The node's reads return the snapshot from when the fault began (a stale cache).
    StaleReads(Target),
    /// An operator asks for a switchover: to a node (or the best one), naming the leader
    /// expected to hand over (or not; a wrong one must be refused), due now or `delay`
    /// ms later (a scheduled switchover, which must not happen before its time).
    Switchover {
        /// Candidate (None: the best one).
        to: Option<Target>,
        /// The leader the request names (None: whoever leads).
        from: Option<Target>,
        /// Scheduled this many ms after the request (0: at once).
        delay: Millis,
    },
    /// An operator cancels the pending switchover request, if any (`DELETE /switchover`).
    /// The swarm draws it shortly after some switchover requests.
    CancelSwitchover,
    /// An operator asks for a failover to a node.
    Failover(Target),
    /// An operator pauses the cluster (maintenance mode).
    Pause,
    /// An operator resumes it.
    Resume,
    /// An operator changes the ttl (loop_wait and retry_timeout stay).
    SetTtl(Millis),
    /// An operator restarts PostgreSQL on a node (`POST /restart`): the request stands
    /// for a ttl, as the REST call waits.
    Restart(Target),
    /// The daemon alone dies and starts again at once (a crash, an upgrade): PostgreSQL
    /// and the guard run on.
    RestartDaemon(Target),
    /// An operator asks a node to rebuild its data from another member (`POST
    /// /reinitialize`); refused on the leader, as by hashell.
    Reinitialize(Target),
    /// An operator writes settings that fail validation straight into the store (a manual
    /// `etcdctl put` with the ttl in seconds where milliseconds are meant); members keep
    /// the settings they run with and say so once. When the fault ends the operator puts
    /// the previous settings back. The swarm draws it from a stream of its own.
    BadConfig,
    /// The machine reboots with another cluster's data directory (a volume of another
    /// cluster attached, a restore from the wrong backup): the same timelines and more
    /// WAL than any member, so that only the system identifier tells it apart. The member
    /// must not start or lead on it; when the fault ends the operator removes it and the
    /// member clones anew. The swarm draws it from a stream of its own.
    ForeignData(Target),
    /// The leader key is overwritten with bytes no member can decode (a bad manual write,
    /// a buggy client): members take it over once it has aged a full ttl.
    CorruptLeader,
    /// The history key is overwritten with bytes no member can decode (`false`) or with a
    /// history that decodes but whose newest fork goes back to an older timeline, a cycle
    /// (`true`): a bad manual write, a broken tool. Nobody may be promoted, rewound or
    /// started on its word; the leader writes it again from its own timeline history.
    /// When the fault ends the operator puts back what was overwritten if it is still
    /// unusable. The swarm draws it from a stream of its own.
    CorruptHistory(bool),
    /// An operator empties the store (every key of the cluster, the term included). Under
    /// running daemons this starts a bootstrap race between former primaries' data that
    /// the runbook forbids (6.2); the swarm never draws it, the final phase follows the
    /// runbook's procedure instead. For scenarios.
    WipeStore,
    /// A standby cluster's upstream (the other site's primary) is unreachable.
    UpstreamDown,
    /// The upstream fails over: its WAL continues on a new timeline.
    UpstreamFailover,
    /// An operator promotes the standby cluster (`hashell promote-cluster`).
    PromoteCluster,
}

impl FaultKind {
    /// Names of the kinds, as written in schedules.
    pub const NAMES: &'static [&'static str] = &[
        "crash",
        "kill-pg",
        "pause-daemon",
        "hang-pg",
        "cut-dcs",
        "cut-peer",
        "isolate",
        "dcs-outage",
        "store-leader-change",
        "clock-jump",
        "drift",
        "slow-pg",
        "fail-pg",
        "fail-pg-once",
        "stale-reads",
        "switchover",
        "cancel-switchover",
        "failover",
        "pause",
        "resume",
        "set-ttl",
        "restart",
        "restart-daemon",
        "reinitialize",
        "corrupt-leader",
        "bad-config",
        "foreign-data",
        "corrupt-history",
        "wipe-store",
        "upstream-down",
        "upstream-failover",
        "promote-cluster",
    ];

    /// This kind's name.
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Crash(_) => "crash",
            FaultKind::KillPg(_) => "kill-pg",
            FaultKind::PauseDaemon(_) => "pause-daemon",
            FaultKind::HangPg(_) => "hang-pg",
            FaultKind::CutDcs(..) => "cut-dcs",
            FaultKind::CutPeer(..) => "cut-peer",
            FaultKind::Isolate(_) => "isolate",
            FaultKind::DcsOutage => "dcs-outage",
            FaultKind::StoreLeaderChange => "store-leader-change",
            FaultKind::ClockJump(..) => "clock-jump",
            FaultKind::Drift(..) => "drift",
            FaultKind::SlowPg(..) => "slow-pg",
            FaultKind::FailPg(_) => "fail-pg",
            FaultKind::FailPgOnce(_) => "fail-pg-once",
            FaultKind::StaleReads(_) => "stale-reads",
            FaultKind::Switchover { .. } => "switchover",
            FaultKind::CancelSwitchover => "cancel-switchover",
            FaultKind::Failover(_) => "failover",
            FaultKind::Pause => "pause",
            FaultKind::Resume => "resume",
            FaultKind::SetTtl(_) => "set-ttl",
            FaultKind::Restart(_) => "restart",
            FaultKind::RestartDaemon(_) => "restart-daemon",
            FaultKind::Reinitialize(_) => "reinitialize",
            FaultKind::CorruptLeader => "corrupt-leader",
            FaultKind::BadConfig => "bad-config",
            FaultKind::ForeignData(_) => "foreign-data",
            FaultKind::CorruptHistory(_) => "corrupt-history",
            FaultKind::WipeStore => "wipe-store",
            FaultKind::UpstreamDown => "upstream-down",
            FaultKind::UpstreamFailover => "upstream-failover",
            FaultKind::PromoteCluster => "promote-cluster",
        }
    }

    /// Whether the fault lasts (has a `for` duration).
    pub fn lasts(&self) -> bool {
        !matches!(
            self,
            FaultKind::KillPg(_)
                | FaultKind::FailPgOnce(_)
                | FaultKind::StoreLeaderChange
                | FaultKind::ClockJump(..)
                | FaultKind::Drift(..)
                | FaultKind::Switchover { .. }
                | FaultKind::CancelSwitchover
                | FaultKind::Failover(_)
                | FaultKind::Pause
                | FaultKind::Resume
                | FaultKind::SetTtl(_)
                | FaultKind::Restart(_)
                | FaultKind::RestartDaemon(_)
                | FaultKind::Reinitialize(_)
                | FaultKind::CorruptLeader
                | FaultKind::WipeStore
                | FaultKind::UpstreamFailover
                | FaultKind::PromoteCluster
        )
    }
}

/// One scheduled fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// When it starts (global ms).
    pub at: Millis,
    /// How long it lasts (0 for instant faults).
    pub dur: Millis,
    /// What.
    pub kind: FaultKind,
}

/// A fault schedule, sorted by start time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    /// The faults.
    pub faults: Vec<Fault>,
}

impl Schedule {
    /// Draws a schedule for `nodes` nodes over `duration` from `seed`: each fault kind is
    /// enabled with some probability and gets its own rate (swarm testing).
    pub fn generate(seed: u64, nodes: usize, duration: Millis, ttl: Millis) -> Schedule {
        let mut r = Rng::stream(seed, "faults");
        let mut faults = Vec::new();
        let start = 20_000; // let the cluster bootstrap first
        if duration <= start {
            return Schedule::default();
        }
        let target = |r: &mut Rng| match r.range(0, 9) {
            0..=3 => Target::Primary,
            4..=5 => Target::Replica,
            _ => Target::Node(r.range(0, nodes as u64 - 1) as usize),
        };
        let dir = |r: &mut Rng| r.pick(&[Dir::Both, Dir::Both, Dir::Out, Dir::In]);
        // What an operator's switchover request names besides the candidate, from a stream
        // of its own (the schedule's other draws stay those of earlier versions).
        let mut extras = Rng::stream(seed, "switchover-extras");
        let mut cancels = Rng::stream(seed, "switchover-cancels");
        for k in 0..22 {
            if !r.chance(0.55) {
                continue;
            }
            // Mean gap between two faults of this kind.
            let mean = r.range(40_000, 400_000);
            let mut t = start + r.range(0, mean);
            while t < duration {
                let kind = match k {
                    0 => FaultKind::Crash(target(&mut r)),
                    1 => FaultKind::KillPg(target(&mut r)),
                    2 => FaultKind::PauseDaemon(target(&mut r)),
                    3 => FaultKind::HangPg(target(&mut r)),
                    4 => FaultKind::CutDcs(target(&mut r), dir(&mut r)),
                    5 => {
                        let a = target(&mut r);
                        let b = Target::Node(r.range(0, nodes as u64 - 1) as usize);
                        FaultKind::CutPeer(a, b, dir(&mut r))
                    }
                    6 => FaultKind::Isolate(target(&mut r)),
                    7 => FaultKind::DcsOutage,
                    8 => FaultKind::StoreLeaderChange,
                    9 => FaultKind::ClockJump(target(&mut r), r.range(100, 5_000)),
                    10 => FaultKind::Drift(target(&mut r), r.range(0, 2_000) as i64 - 1_000),
                    11 => FaultKind::SlowPg(target(&mut r), r.range(2, 20)),
                    12 => FaultKind::FailPg(target(&mut r)),
                    13 => FaultKind::StaleReads(target(&mut r)),
                    14 => FaultKind::Switchover {
                        to: if r.chance(0.5) { None } else { Some(target(&mut r)) },
                        from: extras.chance(0.3).then(|| {
                            if extras.chance(0.5) {
                                Target::Primary
                            } else {
                                Target::Node(extras.range(0, nodes as u64 - 1) as usize)
                            }
                        }),
                        delay: if extras.chance(0.3) { extras.range(1_000, 3 * ttl) } else { 0 },
                    },
                    15 => FaultKind::Failover(Target::Node(r.range(0, nodes as u64 - 1) as usize)),
                    16 => {
                        // A maintenance window: paused, then resumed (other faults go on).
                        let end = t + r.range(5_000, ttl * 6);
                        faults.push(Fault { at: end, dur: 0, kind: FaultKind::Resume });
                        FaultKind::Pause
                    }
                    // An operator retunes the ttl (the world refuses what validation would).
                    17 => FaultKind::SetTtl(r.range(ttl / 2, ttl * 2)),
                    18 => FaultKind::Restart(target(&mut r)),
                    19 => FaultKind::RestartDaemon(target(&mut r)),
                    20 => FaultKind::Reinitialize(target(&mut r)),
                    _ => FaultKind::CorruptLeader,
                };
                let dur = if kind.lasts() {
                    match kind {
                        FaultKind::Crash(_) => r.range(2_000, 90_000),
                        FaultKind::PauseDaemon(_) | FaultKind::HangPg(_) => r.range(ttl / 4, ttl * 3),
                        FaultKind::DcsOutage => r.range(2_000, ttl * 4),
                        FaultKind::SlowPg(..) | FaultKind::FailPg(_) => r.range(5_000, 60_000),
                        _ => r.range(1_000, ttl * 3),
                    }
                } else {
                    0
                };
                // Some requests are cancelled soon after, from their own stream (the other
                // draws stay those of the seed): during the checkpoint, the stop, or later.
                if matches!(kind, FaultKind::Switchover { .. }) && cancels.chance(0.2) {
                    let at = t + cancels.range(0, 3 * ttl);
                    faults.push(Fault { at, dur: 0, kind: FaultKind::CancelSwitchover });
                }
                faults.push(Fault { at: t, dur, kind });
                t += r.range(mean / 2, mean * 3 / 2).max(1_000);
            }
        }
        // Settings written by hand that fail validation; another cluster's data directory
        // on a member; an unusable history key.
        let mut own = |name, chance, means, each: &mut dyn FnMut(&mut Rng) -> (Millis, FaultKind)| {
            own_stream(seed, name, chance, means, (start, duration), &mut faults, each)
        };
        own("bad-configs", 0.4, (200_000, 1_200_000), &mut |r| (r.range(5_000, ttl * 4), FaultKind::BadConfig));
        own("foreign-data", 0.3, (300_000, 1_500_000), &mut |r| {
            (r.range(5_000, ttl * 6), FaultKind::ForeignData(Target::Replica))
        });
        own("corrupt-history", 0.3, (300_000, 1_500_000), &mut |r| {
            let dur = r.range(2_000, ttl * 6);
            (dur, FaultKind::CorruptHistory(r.chance(0.5)))
        });
        faults.sort_by_key(|f| f.at);
        Schedule { faults }
    }

    /// The faults of a standby cluster's upstream, from their own random stream (so a
    /// seed's other faults stay the same): outages, failovers at the other site, and in
    /// half of the runs the promotion of the standby cluster at some moment.
    pub fn upstream_faults(seed: u64, duration: Millis, ttl: Millis) -> Vec<Fault> {
        let mut r = Rng::stream(seed, "upstream-faults");
        let start = 20_000;
        let mut faults = Vec::new();
        if duration <= start {
            return faults;
        }
        for down in [true, false] {
            let mean = r.range(60_000, 600_000);
            let mut t = start + r.range(0, mean);
            while t < duration {
                let (kind, dur) = if down {
                    (FaultKind::UpstreamDown, r.range(1_000, ttl * 6))
                } else {
                    (FaultKind::UpstreamFailover, 0)
                };
                faults.push(Fault { at: t, dur, kind });
                t += r.range(mean / 2, mean * 3 / 2).max(1_000);
            }
        }
        if r.chance(0.5) {
            faults.push(Fault { at: start + r.range(0, duration - start), dur: 0, kind: FaultKind::PromoteCluster });
        }
        faults
    }

    /// When the last fault ends.
    pub fn end(&self) -> Millis {
        self.faults.iter().map(|f| f.at + f.dur).max().unwrap_or(0)
    }

    /// Parses one fault per line (blank lines and `#` comments skipped).
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let mut faults = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            faults.push(parse_fault(line).map_err(|e| format!("line {}: {e}: {line:?}", n + 1))?);
        }
        faults.sort_by_key(|f| f.at);
        Ok(Schedule { faults })
    }
}

/// Faults of one kind from a random stream of their own (so the seed's other draws stay
/// those of earlier versions): in a `chance` share of runs, with a mean gap drawn from
/// `means`, from `window.0` until `window.1`; `each` draws one fault's duration and kind.
fn own_stream(
    seed: u64,
    name: &str,
    chance: f64,
    means: (Millis, Millis),
    window: (Millis, Millis),
    faults: &mut Vec<Fault>,
    each: &mut dyn FnMut(&mut Rng) -> (Millis, FaultKind),
) {
    let mut r = Rng::stream(seed, name);
    if !r.chance(chance) {
        return;
    }
    let mean = r.range(means.0, means.1);
    let mut t = window.0 + r.range(0, mean);
    while t < window.1 {
        let (dur, kind) = each(&mut r);
        faults.push(Fault { at: t, dur, kind });
        t += r.range(mean / 2, mean * 3 / 2);
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for fault in &self.faults {
            writeln!(f, "{fault}")?;
        }
        Ok(())
    }
}

fn ms(v: Millis) -> String {
    if v % 1_000 == 0 {
        format!("{}s", v / 1_000)
    } else {
        format!("{v}ms")
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Node(i) => write!(f, "n{}", i + 1),
            Target::Primary => write!(f, "primary"),
            Target::Replica => write!(f, "replica"),
        }
    }
}

impl fmt::Display for Dir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dir::Both => "both",
            Dir::Out => "out",
            Dir::In => "in",
        })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at {} {}", ms(self.at), self.kind.name())?;
        match self.kind {
            FaultKind::Crash(t)
            | FaultKind::KillPg(t)
            | FaultKind::PauseDaemon(t)
            | FaultKind::HangPg(t)
            | FaultKind::Isolate(t)
            | FaultKind::FailPg(t)
            | FaultKind::FailPgOnce(t)
            | FaultKind::StaleReads(t)
            | FaultKind::Restart(t)
            | FaultKind::RestartDaemon(t)
            | FaultKind::Reinitialize(t)
            | FaultKind::ForeignData(t) => write!(f, " {t}")?,
            FaultKind::CutDcs(t, d) => write!(f, " {t} {d}")?,
            FaultKind::CutPeer(a, b, d) => write!(f, " {a} {b} {d}")?,
            FaultKind::CorruptHistory(cycle) => f.write_str(if cycle { " cycle" } else { " garbage" })?,
            FaultKind::DcsOutage
            | FaultKind::StoreLeaderChange
            | FaultKind::Pause
            | FaultKind::Resume
            | FaultKind::UpstreamDown
            | FaultKind::UpstreamFailover
            | FaultKind::PromoteCluster
            | FaultKind::CorruptLeader
            | FaultKind::BadConfig
            | FaultKind::CancelSwitchover
            | FaultKind::WipeStore => {}
            FaultKind::SetTtl(t) => write!(f, " {}", ms(t))?,
            FaultKind::ClockJump(t, j) => write!(f, " {t} {j}ms")?,
            FaultKind::Drift(t, p) => write!(f, " {t} {p}ppm")?,
            FaultKind::SlowPg(t, x) => write!(f, " {t} x{x}")?,
            FaultKind::Switchover { to, from, delay } => {
                if let Some(t) = to {
                    write!(f, " to {t}")?;
                }
                if let Some(t) = from {
                    write!(f, " from {t}")?;
                }
                if delay > 0 {
                    write!(f, " in {}", ms(delay))?;
                }
            }
            FaultKind::Failover(t) => write!(f, " to {t}")?,
        }
        if self.kind.lasts() {
            write!(f, " for {}", ms(self.dur))?;
        }
        Ok(())
    }
}

/// Parses `30s`, `500ms`, `2m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Millis, String> {
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, ""), |i| s.split_at(i));
    let n: Millis = num.parse().map_err(|_| format!("{s:?} is not a duration (e.g. 30s, 500ms, 2m, 1h)"))?;
    let mult = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("{s:?}: unit must be ms, s, m or h")),
    };
    Ok(n * mult)
}

fn parse_target(s: &str) -> Result<Target, String> {
    match s {
        "primary" => Ok(Target::Primary),
        "replica" => Ok(Target::Replica),
        _ => s
            .strip_prefix('n')
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n >= 1)
            .map(|n| Target::Node(n - 1))
            .ok_or_else(|| format!("{s:?} is not a node (n1, n2, ..., primary, replica)")),
    }
}

fn parse_dir(s: &str) -> Result<Dir, String> {
    match s {
        "both" => Ok(Dir::Both),
        "out" => Ok(Dir::Out),
        "in" => Ok(Dir::In),
        _ => Err(format!("{s:?} is not a direction (both, out, in)")),
    }
}

fn parse_fault(line: &str) -> Result<Fault, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let (body, dur) = match words.iter().position(|w| *w == "for") {
        Some(i) => (&words[..i], parse_duration(words.get(i + 1).ok_or("`for` needs a duration")?)?),
        None => (&words[..], 0),
    };
    if body.len() < 3 || body[0] != "at" {
        return Err("expected `at <time> <fault> ...`".into());
    }
    let at = parse_duration(body[1])?;
    let args = &body[3..];
    let arg = |i: usize| args.get(i).copied().ok_or_else(|| format!("{} needs more arguments", body[2]));
    let kind = match body[2] {
        "crash" => FaultKind::Crash(parse_target(arg(0)?)?),
        "kill-pg" => FaultKind::KillPg(parse_target(arg(0)?)?),
        "pause-daemon" => FaultKind::PauseDaemon(parse_target(arg(0)?)?),
        "hang-pg" => FaultKind::HangPg(parse_target(arg(0)?)?),
        "cut-dcs" => FaultKind::CutDcs(parse_target(arg(0)?)?, args.get(1).map_or(Ok(Dir::Both), |d| parse_dir(d))?),
        "cut-peer" => FaultKind::CutPeer(
            parse_target(arg(0)?)?,
            parse_target(arg(1)?)?,
            args.get(2).map_or(Ok(Dir::Both), |d| parse_dir(d))?,
        ),
        "isolate" => FaultKind::Isolate(parse_target(arg(0)?)?),
        "dcs-outage" => FaultKind::DcsOutage,
        "store-leader-change" => FaultKind::StoreLeaderChange,
        "clock-jump" => FaultKind::ClockJump(parse_target(arg(0)?)?, parse_duration(arg(1)?)?),
        "drift" => {
            let p = arg(1)?.strip_suffix("ppm").ok_or("drift needs e.g. -500ppm")?;
            FaultKind::Drift(parse_target(arg(0)?)?, p.parse().map_err(|_| "bad ppm")?)
        }
        "slow-pg" => {
            let x = arg(1)?.strip_prefix('x').ok_or("slow-pg needs a factor like x5")?;
            FaultKind::SlowPg(parse_target(arg(0)?)?, x.parse().map_err(|_| "bad factor")?)
        }
        "fail-pg" => FaultKind::FailPg(parse_target(arg(0)?)?),
        "fail-pg-once" => FaultKind::FailPgOnce(parse_target(arg(0)?)?),
        "stale-reads" => FaultKind::StaleReads(parse_target(arg(0)?)?),
        "switchover" => {
            let named = |word: &str| -> Result<Option<&str>, String> {
                match args.iter().position(|w| *w == word) {
                    Some(i) => args.get(i + 1).copied().map(Some).ok_or_else(|| format!("`{word}` needs a value")),
                    None => Ok(None),
                }
            };
            if let Some(w) = args.iter().step_by(2).find(|w| !matches!(**w, "to" | "from" | "in")) {
                return Err(format!("switchover takes `to <node>`, `from <node>`, `in <duration>`, not {w:?}"));
            }
            FaultKind::Switchover {
                to: named("to")?.map(parse_target).transpose()?,
                from: named("from")?.map(parse_target).transpose()?,
                delay: named("in")?.map(parse_duration).transpose()?.unwrap_or(0),
            }
        }
        "cancel-switchover" => FaultKind::CancelSwitchover,
        "failover" => FaultKind::Failover(parse_target(args.get(1).copied().ok_or("failover needs `to <node>`")?)?),
        "pause" => FaultKind::Pause,
        "resume" => FaultKind::Resume,
        "set-ttl" => FaultKind::SetTtl(parse_duration(arg(0)?)?),
        "restart" => FaultKind::Restart(parse_target(arg(0)?)?),
        "restart-daemon" => FaultKind::RestartDaemon(parse_target(arg(0)?)?),
        "reinitialize" => FaultKind::Reinitialize(parse_target(arg(0)?)?),
        "corrupt-leader" => FaultKind::CorruptLeader,
        "bad-config" => FaultKind::BadConfig,
        "foreign-data" => FaultKind::ForeignData(parse_target(arg(0)?)?),
        "corrupt-history" => FaultKind::CorruptHistory(match args.first().copied() {
            Some("cycle") => true,
            Some("garbage") | None => false,
            Some(other) => return Err(format!("corrupt-history takes `cycle` or `garbage`, not `{other}`")),
        }),
        "wipe-store" => FaultKind::WipeStore,
        "upstream-down" => FaultKind::UpstreamDown,
        "upstream-failover" => FaultKind::UpstreamFailover,
        "promote-cluster" => FaultKind::PromoteCluster,
        other => return Err(format!("unknown fault {other:?} (one of {})", FaultKind::NAMES.join(", "))),
    };
    if kind.lasts() && dur == 0 {
        return Err(format!("{} needs `for <duration>`", kind.name()));
    }
    Ok(Fault { at, dur, kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips() {
        let s = Schedule::generate(42, 5, 3_600_000, 10_000);
        assert!(!s.faults.is_empty());
        let again = Schedule::parse(&s.to_string()).unwrap();
        assert_eq!(s, again);
    }

    #[test]
    fn parse_errors_say_what_is_wrong() {
        assert!(Schedule::parse("at 10s crash n0 for 5s").unwrap_err().contains("not a node"));
        assert!(Schedule::parse("at 10s crash n1").unwrap_err().contains("needs `for"));
        assert!(Schedule::parse("at 10x kill-pg n1").unwrap_err().contains("unit"));
        assert!(Schedule::parse("at 10s frobnicate").unwrap_err().contains("unknown fault"));
    }

    #[test]
    fn swarm_varies_the_kinds() {
        let kinds = |seed| {
            let s = Schedule::generate(seed, 3, 3_600_000, 10_000);
            let mut k: Vec<&str> = s.faults.iter().map(|f| f.kind.name()).collect();
            k.sort();
            k.dedup();
            k
        };
        assert_ne!(kinds(1), kinds(2));
    }
}
