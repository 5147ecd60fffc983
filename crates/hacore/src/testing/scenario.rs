//! A builder for one node's inputs to [`crate::step`], and a renderer that prints the
//! inputs and the decision as a readable table (used by the decision-table snapshots).

use crate::action::{Action, StopMode};
use crate::config::{ClusterSettings, Config};
use crate::dcs::{
    ClusterView, DcsOp, Expect, FailsafeMember, FailsafeRecord, InitializeRecord, LeaderRecord, LeaseModel,
    MemberRecord, MemberRole, StatusRecord, SwitchoverKind, SwitchoverRequest, SyncRecord, Value, Write,
};
use crate::decide::{step, Decision};
use crate::history::{Fork, ForkCause, History, TimelineSwitch};
use crate::memory::{HeldLease, Memory};
use crate::observation::{
    DataDir, Done, Failure, GuardState, Observation, Outcome, PeerReport, PgObservation, StandbyState, SyncStandbys,
};
use crate::status::{ElectionReport, PeerStatus};
use crate::types::{Lsn, Millis, OpId, Tags, Term, Timeline, Version, Versioned, WalPosition};
use std::fmt::Write as _;
use std::sync::Arc;

/// The system identifier scenarios use.
pub const SYSID: u64 = 7_000_000_000_000_000_001;

/// One node's inputs.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Config.
    pub cfg: Config,
    /// Memory.
    pub mem: Memory,
    /// Observation.
    pub obs: Observation,
    /// Clock.
    pub now: Millis,
}

fn view(obs: &mut Observation) -> &mut ClusterView {
    if obs.dcs.is_err() {
        obs.dcs = Ok(ClusterView::default());
    }
    obs.dcs.as_mut().expect("just set")
}

/// Settings used by scenarios: [`ClusterSettings::fast`] (ttl 10 s, loop 1 s, retry 1 s,
/// margin 2020 ms).
pub fn fast_settings() -> ClusterSettings {
    ClusterSettings::fast()
}

impl Scenario {
    /// Node `name` with empty data, an empty initialized-nowhere DCS, at t=100 s.
    pub fn node(name: &str) -> Scenario {
        let mut cfg = Config::new(name);
        cfg.api_url = format!("http://{name}:8008");
        cfg.pg_url = format!("host={name} port=5432");
        cfg.defaults = fast_settings();
        let now = 100_000;
        let obs = Observation {
            pg: PgObservation::default(),
            dcs: Ok(ClusterView { received_at: now, ..Default::default() }),
            peers: Vec::new(),
            outcomes: Vec::new(),
            guard: GuardState::Disabled,
            requests: Default::default(),
            wall_time_ms: 1_790_000_000_000,
        };
        // A daemon that has been running for a while (not just started).
        let mem = Memory { started_at: Some(0), ..Memory::default() };
        Scenario { cfg, mem, obs, now }
    }

    /// A three-node cluster (n1, n2, n3) seen from `me`: initialized, n1 leads in term 3,
    /// everyone on timeline 1 at 0/5000000, n2 and n3 streaming; `me`'s PostgreSQL and
    /// lease match its role.
    pub fn cluster3(me: &str) -> Scenario {
        let mut s = Scenario::node(me).initialized();
        s = s.leader("n1", 3, 40);
        for n in ["n1", "n2", "n3"] {
            let role = if n == "n1" { MemberRole::Primary } else { MemberRole::Replica };
            s = s.member(n, role, 0x500_0000);
        }
        s = s.status("n1", 3, 0x500_0000).config(|_| {});
        let steady = s.cfg.defaults.clone();
        s.mem.applied = Some((Version(34), steady));
        s.mem.keepalive_at = Some(s.now - 200);
        for m in &mut view(&mut s.obs).members {
            let m = Arc::make_mut(&mut m.value);
            m.applied_config = Some(Version(34));
            m.reason =
                Some(if m.name == "n1" { crate::Reason::LeaderHealthy } else { crate::Reason::ReplicaStreaming });
        }
        if me == "n1" {
            s.obs.pg.slots = vec!["n2".into(), "n3".into()];
            let sent = s.now - 500;
            s = s.pg_primary(1, 0x500_0000).holding(3, 40, sent).standby("n2", 0x500_0000).standby("n3", 0x500_0000);
            s = s.peer_replica("n2", 0x500_0000).peer_replica("n3", 0x500_0000);
        } else {
            s = s.pg_replica(1, 0x500_0000, Some("n1"), true);
            for n in ["n2", "n3"].into_iter().filter(|n| *n != me) {
                s = s.peer_replica(n, 0x500_0000);
            }
        }
        s
    }

    /// Mutable access to the DCS view (creating it if the read had failed).
    pub fn view_mut(&mut self) -> &mut ClusterView {
        view(&mut self.obs)
    }

    /// Sets the clock (the view's receipt time moves with it).
    pub fn at(mut self, now: Millis) -> Self {
        self.now = now;
        if let Ok(v) = &mut self.obs.dcs {
            v.received_at = now;
        }
        self
    }

    /// The `initialize` key with [`SYSID`] and local data of the same cluster.
    pub fn initialized(mut self) -> Self {
        view(&mut self.obs).initialize = Some(Versioned {
            version: Version(2),
            value: InitializeRecord { system_id: SYSID, base_timeline: Timeline(1), standby: false },
        });
        self.obs.pg.data = DataDir::Present { system_id: SYSID };
        self
    }

    /// Leader record.
    pub fn leader(mut self, holder: &str, term: u64, version: u64) -> Self {
        let v = view(&mut self.obs);
        v.leader = Some(Versioned {
            version: Version(version),
            value: LeaderRecord { holder: holder.into(), term: Term(term), ttl: 10_000 },
        });
        v.term = v.term.max(Term(term));
        self
    }

    /// No leader record; the highest term ever granted is `term`.
    pub fn no_leader(mut self, term: u64) -> Self {
        let v = view(&mut self.obs);
        v.leader = None;
        v.term = Term(term);
        self
    }

    /// Observer-clock (DynamoDB-like) store.
    pub fn observer_clock(mut self) -> Self {
        view(&mut self.obs).lease_model = LeaseModel::ObserverClock;
        self
    }

    /// A member record.
    pub fn member(mut self, name: &str, role: MemberRole, lsn: u64) -> Self {
        let v = view(&mut self.obs);
        v.members.retain(|m| m.value.name != name);
        let version = Version(100 + v.members.len() as u64);
        // A primary's record names the term it leads in (that of the leader record naming it).
        let leader_term = v.leader.as_ref().filter(|l| role.leads() && l.value.holder == name).map(|l| l.value.term);
        v.members.push(Versioned {
            version,
            value: Arc::new(MemberRecord {
                name: name.into(),
                api_url: format!("http://{name}:8008"),
                pg_url: format!("host={name} port=5432"),
                role,
                running: role != MemberRole::Stopped,
                timeline: Timeline(1),
                lsn: Lsn(lsn),
                tags: Tags::default(),
                leader_term,
                schema: crate::SCHEMA,
                ..Default::default()
            }),
        });
        v.members.sort_by(|a, b| a.value.name.cmp(&b.value.name));
        self
    }

    /// Changes a member's tags.
    pub fn member_tags(mut self, name: &str, f: impl FnOnce(&mut Tags)) -> Self {
        if let Some(m) = view(&mut self.obs).members.iter_mut().find(|m| m.value.name == name) {
            f(&mut Arc::make_mut(&mut m.value).tags);
        }
        self
    }

    /// Changes this node's tags (config and published record).
    pub fn tags(mut self, f: impl Fn(&mut Tags)) -> Self {
        f(&mut self.cfg.tags);
        let name = self.cfg.name.clone();
        if let Some(m) = view(&mut self.obs).members.iter_mut().find(|m| m.value.name == name) {
            f(&mut Arc::make_mut(&mut m.value).tags);
        }
        self
    }

    /// The `status` key.
    pub fn status(mut self, leader: &str, term: u64, lsn: u64) -> Self {
        view(&mut self.obs).status = Some(Versioned {
            version: Version(30),
            value: StatusRecord { leader: leader.into(), term: Term(term), timeline: Timeline(1), lsn: Lsn(lsn) },
        });
        self
    }

    /// The `sync` key.
    pub fn sync(mut self, leader: &str, term: u64, members: &[&str]) -> Self {
        view(&mut self.obs).sync = Some(Versioned {
            version: Version(31),
            value: SyncRecord {
                leader: leader.into(),
                term: Term(term),
                members: Arc::new(members.iter().map(|m| m.to_string()).collect()),
            },
        });
        self
    }

    /// The `history` key with one fork per `(parent, lsn, timeline, term, node)`.
    pub fn history(mut self, forks: &[(u32, u64, u32, u64, &str)]) -> Self {
        let forks = forks
            .iter()
            .map(|&(parent, lsn, timeline, term, node)| Fork {
                parent: Timeline(parent),
                lsn: Lsn(lsn),
                timeline: Timeline(timeline),
                term: Term(term),
                node: node.into(),
                cause: ForkCause::Failover,
                wall_time_ms: 0,
            })
            .collect();
        view(&mut self.obs).history = Some(Versioned { version: Version(32), value: History::new(forks) });
        self
    }

    /// The `switchover` key.
    pub fn switchover(mut self, kind: SwitchoverKind, from: Option<&str>, to: Option<&str>) -> Self {
        view(&mut self.obs).switchover = Some(Versioned {
            version: Version(33),
            value: SwitchoverRequest { kind, from: from.map(Into::into), to: to.map(Into::into), at_wall_ms: None },
        });
        self
    }

    /// The `config` key (version 34) with `f` applied to the node's defaults.
    pub fn config(mut self, f: impl FnOnce(&mut ClusterSettings)) -> Self {
        let mut s = self.cfg.defaults.clone();
        f(&mut s);
        view(&mut self.obs).config = Some(Versioned { version: Version(34), value: s });
        self
    }

    /// Sets settings both as defaults and as the applied DCS config (no config key change).
    pub fn settings(mut self, f: impl Fn(&mut ClusterSettings)) -> Self {
        f(&mut self.cfg.defaults);
        if let Ok(v) = &mut self.obs.dcs {
            if let Some(c) = &mut v.config {
                f(&mut c.value);
            }
        }
        if let Some((_, s)) = &mut self.mem.applied {
            f(s);
        }
        self
    }

    /// The `failsafe` key naming `members`.
    pub fn failsafe(mut self, members: &[&str]) -> Self {
        let members = members
            .iter()
            .map(|m| FailsafeMember { name: m.to_string(), api_url: format!("http://{m}:8008") })
            .collect::<Vec<_>>()
            .into();
        view(&mut self.obs).failsafe = Some(Versioned { version: Version(35), value: FailsafeRecord { members } });
        self.mem.failsafe_set = match &self.obs.dcs {
            Ok(v) => v.failsafe.as_ref().map(|f| f.value.members.clone()).unwrap_or_default(),
            Err(_) => Arc::default(),
        };
        self
    }

    /// The DCS read failed.
    pub fn dcs_down(mut self) -> Self {
        self.obs.dcs = Err(crate::dcs::DcsError::Unavailable("connection refused".into()));
        self
    }

    /// Local PostgreSQL: running writable primary.
    pub fn pg_primary(mut self, timeline: u32, lsn: u64) -> Self {
        let pg = &mut self.obs.pg;
        pg.running = true;
        pg.responsive = true;
        pg.in_recovery = Some(false);
        pg.timeline = Timeline(timeline);
        pg.flush_lsn = Lsn(lsn);
        pg.replay_lsn = Lsn(lsn);
        pg.upstream = None;
        pg.streaming = false;
        pg.rewind_capable = true;
        self
    }

    /// Local PostgreSQL: running standby.
    pub fn pg_replica(mut self, timeline: u32, lsn: u64, upstream: Option<&str>, streaming: bool) -> Self {
        let pg = &mut self.obs.pg;
        pg.running = true;
        pg.responsive = true;
        pg.in_recovery = Some(true);
        pg.timeline = Timeline(timeline);
        pg.flush_lsn = Lsn(lsn);
        pg.replay_lsn = Lsn(lsn);
        pg.upstream = upstream.map(Into::into);
        pg.streaming = streaming;
        pg.rewind_capable = true;
        self
    }

    /// Local PostgreSQL: stopped; `was_standby` from pg_control.
    pub fn pg_stopped(mut self, timeline: u32, lsn: u64, was_standby: bool) -> Self {
        let pg = &mut self.obs.pg;
        pg.running = false;
        pg.responsive = false;
        pg.in_recovery = Some(was_standby);
        pg.timeline = Timeline(timeline);
        pg.flush_lsn = Lsn(lsn);
        pg.replay_lsn = Lsn(lsn);
        pg.upstream = None;
        pg.streaming = false;
        pg.standbys.clear();
        pg.rewind_capable = true;
        self
    }

    /// Local PostgreSQL: no data at all.
    pub fn pg_empty(mut self) -> Self {
        self.obs.pg = PgObservation::default();
        self
    }

    /// Local timeline history file.
    pub fn pg_history(mut self, switches: &[(u32, u64)]) -> Self {
        self.obs.pg.history =
            switches.iter().map(|&(t, l)| TimelineSwitch { timeline: Timeline(t), lsn: Lsn(l) }).collect();
        self
    }

    /// Mutates the local PostgreSQL observation.
    pub fn pg(mut self, f: impl FnOnce(&mut PgObservation)) -> Self {
        f(&mut self.obs.pg);
        self
    }

    /// A standby streaming from the local primary.
    pub fn standby(mut self, name: &str, flush: u64) -> Self {
        self.obs.pg.standbys.retain(|s| s.name != name);
        self.obs.pg.standbys.push(StandbyState { name: name.into(), flush_lsn: Lsn(flush), streaming: true });
        self
    }

    /// Memory: holds the lease of `term` at `version`, renewed at `sent_at` with ttl 10 s.
    pub fn holding(mut self, term: u64, version: u64, sent_at: Millis) -> Self {
        let ttl = 10_000;
        let deadline = sent_at + ttl - self.cfg.safety.margin(ttl);
        self.mem.lease = Some(HeldLease { term: Term(term), version: Version(version), sent_at, ttl, deadline });
        self.mem.max_term = self.mem.max_term.max(Term(term));
        self.mem.armed_until = Some(deadline);
        self.mem.status_at = Some((sent_at, self.obs.pg.flush_lsn));
        self
    }

    /// Mutates the store's view (when the store is readable).
    pub fn store(mut self, f: impl FnOnce(&mut ClusterView)) -> Self {
        f(view(&mut self.obs));
        self
    }

    /// Mutates memory.
    pub fn memory(mut self, f: impl FnOnce(&mut Memory)) -> Self {
        f(&mut self.mem);
        self
    }

    /// A reachable peer that is a streaming replica at `lsn` on timeline 1.
    pub fn peer_replica(self, name: &str, lsn: u64) -> Self {
        self.peer(
            name,
            Some(PeerStatus {
                replayed: Lsn(0),
                role: MemberRole::Replica,
                term: Term(3),
                running: true,
                position: WalPosition { timeline: Timeline(1), lsn: Lsn(lsn) },
                can_lead: true,
                election: None,
            }),
        )
    }

    /// A peer in an election at `lsn` (settled, eligible, priority 1).
    pub fn peer_candidate(self, name: &str, lsn: u64, settled: bool, eligible: bool) -> Self {
        let position = WalPosition { timeline: Timeline(1), lsn: Lsn(lsn) };
        self.peer(
            name,
            Some(PeerStatus {
                replayed: Lsn(0),
                role: MemberRole::Candidate,
                term: Term(3),
                running: true,
                position,
                can_lead: eligible,
                election: Some(ElectionReport { position, settled, priority: 1, eligible }),
            }),
        )
    }

    /// A peer's answer (None: unreachable).
    pub fn peer(mut self, name: &str, status: Option<PeerStatus>) -> Self {
        self.obs.peers.retain(|p| p.name != name);
        self.obs.peers.push(PeerReport { name: name.into(), status });
        self
    }

    /// An outcome of an earlier action.
    pub fn outcome(mut self, id: u64, result: Result<Done, Failure>) -> Self {
        self.obs.outcomes.push(Outcome { id: OpId(id), result });
        self
    }

    /// Fencing guard state.
    pub fn guard(mut self, g: GuardState) -> Self {
        self.obs.guard = g;
        self
    }

    /// Runs [`step`].
    pub fn step(&self) -> Decision {
        step(&self.cfg, &self.mem, &self.obs, self.now)
    }

    /// Runs [`step`] and renders inputs and decision as a table.
    pub fn table(&self, title: &str) -> String {
        let d = self.step();
        let mut out = String::new();
        let _ = writeln!(out, "# {title}");
        let _ = writeln!(out, "given:");
        for line in render_inputs(self) {
            let _ = writeln!(out, "  {line}");
        }
        let _ = writeln!(out, "then:");
        let detail = if d.status.detail.is_empty() { String::new() } else { format!(" ({})", d.status.detail) };
        let _ = writeln!(out, "  reason: {}{detail}", d.status.reason);
        let _ = writeln!(out, "  role: {:?}, wake within {} ms", d.status.role, d.wake_within);
        if let Some(u) = d.status.writable_until {
            let _ = writeln!(out, "  writable until: {u}");
        }
        let _ = writeln!(out, "  actions:");
        if d.actions.is_empty() {
            let _ = writeln!(out, "    (none)");
        }
        for a in &d.actions {
            let _ = writeln!(out, "    - {}", render_action(a));
        }
        out
    }
}

fn lsn(l: Lsn) -> String {
    l.to_string()
}

/// One line per input concern.
pub fn render_inputs(s: &Scenario) -> Vec<String> {
    let mut lines = Vec::new();
    let pg = &s.obs.pg;
    let state = match (pg.running, pg.responsive, pg.in_recovery) {
        (false, _, Some(true)) => "stopped (standby data)".to_string(),
        (false, _, Some(false)) => "stopped (primary data)".to_string(),
        (false, _, None) => "stopped".to_string(),
        (true, false, _) => "running, not answering".to_string(),
        (true, true, Some(false)) => "running primary".to_string(),
        (true, true, Some(true)) => format!(
            "running standby upstream={} {}",
            pg.upstream.as_deref().unwrap_or("-"),
            if pg.streaming { "streaming" } else { "not streaming" }
        ),
        (true, true, None) => "running, role unknown".to_string(),
    };
    let data = match pg.data {
        DataDir::Empty => "no data".to_string(),
        DataDir::Unreadable => "data with an unreadable control file".to_string(),
        DataDir::Present { system_id } if system_id == SYSID => "data of this cluster".to_string(),
        DataDir::Present { system_id } => format!("data of system {system_id}"),
    };
    let mut l = format!("pg: {state}, {data}, at {}@{}", lsn(pg.flush_lsn), pg.timeline);
    if !pg.history.is_empty() {
        let h: Vec<_> = pg.history.iter().map(|s| format!("{}@{}", lsn(s.lsn), s.timeline)).collect();
        let _ = write!(l, ", history [{}]", h.join(" "));
    }
    if pg.newest_timeline > pg.timeline {
        let _ = write!(l, ", history files up to timeline {}", pg.newest_timeline);
    }
    if pg.sync_standbys != SyncStandbys::Off {
        let _ = write!(l, ", sync_standbys {}", render_sync(&pg.sync_standbys));
    }
    if !pg.standbys.is_empty() {
        let st: Vec<_> = pg.standbys.iter().map(|s| format!("{}@{}", s.name, lsn(s.flush_lsn))).collect();
        let _ = write!(l, ", standbys [{}]", st.join(" "));
    }
    if !pg.slots.is_empty() {
        let _ = write!(l, ", slots [{}]", pg.slots.join(" "));
    }
    if !pg.rewind_capable && pg.system_id().is_some() {
        l.push_str(", no rewind");
    }
    lines.push(l);
    match &s.obs.dcs {
        Err(e) => lines.push(format!("dcs: unreadable ({e})")),
        Ok(v) => {
            let mut l = String::from("dcs:");
            match &v.leader {
                Some(r) => {
                    let _ = write!(l, " leader {} term {} v{}", r.value.holder, r.value.term, r.version);
                    if r.value.ttl != v.config.as_ref().map_or(s.cfg.defaults.ttl, |c| c.value.ttl) {
                        let _ = write!(l, " (ttl {})", r.value.ttl);
                    }
                }
                None => {
                    let _ = write!(l, " no leader");
                }
            }
            let _ = write!(l, ", term {}", v.term);
            if v.lease_model == LeaseModel::ObserverClock {
                l.push_str(", observer-clock leases");
            }
            if v.initialize.is_none() {
                l.push_str(", not initialized");
            }
            if let Some(st) = &v.status {
                let _ = write!(l, ", status {} {}", st.value.leader, lsn(st.value.lsn));
            }
            lines.push(l);
            if !v.members.is_empty() {
                let ms: Vec<_> = v
                    .members
                    .iter()
                    .map(|m| {
                        let mut t = format!("{}:{:?}", m.value.name, m.value.role).to_lowercase();
                        if m.value.tags.nofailover {
                            t.push_str("(nofailover)");
                        }
                        if m.value.tags.failover_priority != 1 {
                            let _ = write!(t, "(prio {})", m.value.tags.failover_priority);
                        }
                        if m.value.tags.clonefrom {
                            t.push_str("(clonefrom)");
                        }
                        t
                    })
                    .collect();
                lines.push(format!("members: {}", ms.join(" ")));
            }
            if let Some(sy) = &v.sync {
                lines.push(format!(
                    "sync: {} term {} [{}] v{}",
                    sy.value.leader,
                    sy.value.term,
                    sy.value.members.join(" "),
                    sy.version
                ));
            }
            if let Some(h) = &v.history {
                let fs: Vec<_> = h
                    .value
                    .forks
                    .iter()
                    .map(|f| format!("{}->{}@{} term {} by {}", f.parent, f.timeline, lsn(f.lsn), f.term, f.node))
                    .collect();
                lines.push(format!("history: {}", fs.join(", ")));
            }
            if let Some(sw) = &v.switchover {
                lines.push(format!(
                    "switchover: {:?} from {} to {}",
                    sw.value.kind,
                    sw.value.from.as_deref().unwrap_or("-"),
                    sw.value.to.as_deref().unwrap_or("best")
                ));
            }
            if let Some(c) = &v.config {
                let d = &s.cfg.defaults;
                let c = &c.value;
                let mut diffs = Vec::new();
                if c.paused != d.paused {
                    diffs.push(format!("paused={}", c.paused));
                }
                if c.synchronous_mode != d.synchronous_mode {
                    diffs.push(format!("synchronous_mode={:?}", c.synchronous_mode));
                }
                if c.failsafe_mode != d.failsafe_mode {
                    diffs.push(format!("failsafe_mode={}", c.failsafe_mode));
                }
                if c.ttl != d.ttl {
                    diffs.push(format!("ttl={}", c.ttl));
                }
                lines.push(format!("config: {}", if diffs.is_empty() { "defaults".into() } else { diffs.join(" ") }));
            }
            if let Some(f) = &v.failsafe {
                let ms: Vec<_> = f.value.members.iter().map(|m| m.name.as_str()).collect();
                lines.push(format!("failsafe set: [{}]", ms.join(" ")));
            }
            for c in &v.corrupt {
                lines.push(format!("corrupt: {} v{} ({})", c.key.path(), c.version, c.reason));
            }
        }
    }
    let settings = &s.cfg.defaults;
    let mut extra = Vec::new();
    if settings.synchronous_mode.enabled() {
        extra.push(format!("synchronous_mode={:?}", settings.synchronous_mode));
    }
    if settings.failsafe_mode {
        extra.push("failsafe_mode".into());
    }
    if settings.paused {
        extra.push("paused".into());
    }
    if !extra.is_empty() {
        lines.push(format!("settings: {}", extra.join(" ")));
    }
    if s.cfg.tags.nofailover || s.cfg.tags.failover_priority != 1 {
        lines.push(format!("my tags: nofailover={} priority={}", s.cfg.tags.nofailover, s.cfg.tags.failover_priority));
    }
    for p in &s.obs.peers {
        let l = match &p.status {
            None => format!("peer {}: unreachable", p.name),
            Some(st) => {
                let mut l = format!(
                    "peer {}: {:?} {} at {}",
                    p.name,
                    st.role,
                    if st.running { "running" } else { "stopped" },
                    lsn(st.position.lsn)
                )
                .to_lowercase();
                if let Some(e) = &st.election {
                    let _ = write!(
                        l,
                        ", election {} {} prio {}",
                        if e.eligible { "eligible" } else { "ineligible" },
                        if e.settled { "settled" } else { "unsettled" },
                        e.priority
                    );
                } else if !st.can_lead {
                    l.push_str(", cannot lead");
                }
                l
            }
        };
        lines.push(l);
    }
    for o in &s.obs.outcomes {
        lines.push(format!("outcome #{}: {:?}", o.id.0, o.result));
    }
    if s.obs.guard != GuardState::Disabled {
        lines.push(format!("guard: {:?}", s.obs.guard));
    }
    if s.obs.requests != Default::default() {
        lines.push(format!("requests: {:?}", s.obs.requests));
    }
    let m = &s.mem;
    let mut mem = Vec::new();
    if s.obs.dcs.as_ref().is_ok_and(|v| m.max_term > v.term) {
        mem.push(format!("highest term seen {}", m.max_term));
    }
    if let Some(l) = &m.lease {
        mem.push(format!("lease term {} v{} sent {} until {}", l.term, l.version, l.sent_at, l.deadline));
    }
    if let Some(p) = &m.pending {
        mem.push(format!("pending #{} {:?} since {}", p.id.0, p.kind, p.since));
    }
    if let Some(op) = &m.lease_op {
        mem.push(format!("lease op #{} {:?}", op.id.0, op.kind));
    }
    if let Some(e) = m.election_since {
        mem.push(format!("candidate since {e}"));
    }
    if let Some(sw) = &m.switchover {
        mem.push(format!("switchover to {} {:?} since {}", sw.candidate, sw.phase, sw.since));
    }
    if let Some(a) = &m.sync_add {
        mem.push(format!("adding sync {} target {:?}", a.name, a.target.map(lsn)));
    }
    if let Some(a) = &m.failsafe_ack {
        mem.push(format!("failsafe ack to {} at {} (ttl {})", a.leader, a.at, a.ttl));
    }
    if let Some(u) = m.failsafe_until {
        mem.push(format!("failsafe until {u}"));
    }
    if let Some(u) = m.unresponsive_since {
        mem.push(format!("unresponsive since {u}"));
    }
    if let Some(u) = m.primary_down_since {
        mem.push(format!("primary down since {u}"));
    }
    if let Some(c) = m.catchup_to {
        mem.push(format!("catch up to {}", lsn(c)));
    }
    if m.rewind_failed {
        mem.push("rewind failed".into());
    }
    if m.restarting {
        mem.push("restart under way".into());
    }
    if let Some(f) = &m.last_failure {
        mem.push(format!("last failure {:?} at {}", f.kind, f.at));
    }
    for f in m.failures.iter().filter(|f| m.last_failure != Some(**f)) {
        mem.push(format!("failure {:?} at {}", f.kind, f.at));
    }
    if let Some(t) = m.stepping_down {
        mem.push(format!("stepping down term {t}"));
    }
    if let Some(r) = &m.failsafe_op {
        mem.push(format!("failsafe round #{} ttl {}", r.id.0, r.ttl));
    }
    if let Some(seen) = &m.leader_seen {
        mem.push(format!("leader record v{} unchanged since {}", seen.version, seen.since));
    }
    if let Some(seen) = &m.stale_since {
        mem.push(format!("stale reads since {} (fingerprint {})", seen.since, seen.version));
    }
    if m.renew_failing {
        mem.push("last renewal failed".into());
    }
    if let Some(v) = m.claim_refused {
        mem.push(format!("claim refused on read {v}"));
    }
    if m.ttl_seen > 0 {
        mem.push(format!("longest ttl seen {}", m.ttl_seen));
    }
    if let Some(t) = m.started_at.filter(|&t| t != 0) {
        mem.push(format!("daemon started at {t}"));
    }
    lines.push(format!("memory: {}", if mem.is_empty() { "-".into() } else { mem.join("; ") }));
    lines.push(format!("now: {}", s.now));
    lines
}

fn render_sync(s: &SyncStandbys) -> String {
    match s {
        SyncStandbys::Off => "off".into(),
        SyncStandbys::Block => "block-all".into(),
        SyncStandbys::First(n) => format!("FIRST {} ({})", n.len(), n.join(",")),
    }
}

fn render_expect(e: &Expect) -> String {
    match e {
        Expect::Any => "any".into(),
        Expect::Absent => "absent".into(),
        Expect::Version(v) => format!("v{v}"),
    }
}

fn render_write(w: &Write) -> String {
    let what = match &w.value {
        None => format!("delete {}", w.key.path()),
        Some(Value::History(h)) => {
            // The last fork, with the upstream's switches recorded just before it.
            let upstream = h.forks.iter().rev().skip(1).take_while(|f| f.cause == crate::ForkCause::Upstream).count();
            let shown = &h.forks[h.forks.len().saturating_sub(upstream + 1)..];
            if shown.is_empty() {
                "put history (empty)".into()
            } else {
                let forks: Vec<String> = shown
                    .iter()
                    .map(|f| {
                        format!(
                            "+fork {}->{}@{} term {} by {} {:?}",
                            f.parent,
                            f.timeline,
                            lsn(f.lsn),
                            f.term,
                            f.node,
                            f.cause
                        )
                    })
                    .collect();
                format!("put history ({})", forks.join("; "))
            }
        }
        Some(Value::Sync(s)) => format!("put sync {} term {} [{}]", s.leader, s.term, s.members.join(" ")),
        Some(Value::Status(s)) => format!("put status {}", lsn(s.lsn)),
        Some(Value::Initialize(i)) => format!(
            "put initialize sysid={} base tl {}{}",
            i.system_id,
            i.base_timeline,
            if i.standby { " standby" } else { "" }
        ),
        Some(Value::Config(_)) => "put config".into(),
        Some(Value::Failsafe(f)) => {
            format!("put failsafe [{}]", f.members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(" "))
        }
        Some(Value::Switchover(_)) => "put switchover".into(),
    };
    format!("{what} if {}", render_expect(&w.expect))
}

/// One action as a line.
pub fn render_action(a: &Action) -> String {
    match a {
        Action::Dcs { op, .. } => match op {
            DcsOp::AcquireLeader(x) => format!(
                "dcs acquire_leader for {} term {} if leader {} and term {}{}{}",
                x.record.holder,
                x.record.term,
                render_expect(&x.expect),
                x.term_was,
                x.sync.map(|s| format!(" and sync {}", render_expect(&s))).unwrap_or_default(),
                x.history.map(|h| format!(" and history {}", render_expect(&h))).unwrap_or_default()
            ),
            DcsOp::RenewLeader { guard, ttl } => {
                format!("dcs renew_leader term {} v{} ttl {ttl}", guard.term, guard.version)
            }
            DcsOp::ReleaseLeader { guard } => format!("dcs release_leader term {}", guard.term),
            DcsOp::TransferLeader { guard, to, clear_switchover } => format!(
                "dcs transfer_leader from term {} to {} term {}{}",
                guard.term,
                to.holder,
                to.term,
                clear_switchover.map(|v| format!(" clearing switchover v{v}")).unwrap_or_default()
            ),
            DcsOp::LeaderWrite { guard, writes } => format!(
                "dcs as leader term {}: {}",
                guard.term,
                writes.iter().map(render_write).collect::<Vec<_>>().join("; ")
            ),
            DcsOp::KeepAlive { .. } => "dcs keepalive".into(),
            DcsOp::PublishMember(m) => format!(
                "dcs publish_member {:?} {} tl {}{}",
                m.role,
                if m.running { "running" } else { "stopped" },
                m.timeline,
                m.reason.map(|r| format!(" reason {r}")).unwrap_or_default()
            ),
            DcsOp::Put(w) => format!("dcs put {}", render_write(w)),
            DcsOp::AppendEvent(e) => {
                format!(
                    "dcs event {}{}",
                    e.reason,
                    if e.detail.is_empty() { String::new() } else { format!(": {}", e.detail) }
                )
            }
        },
        Action::Initdb { .. } => "pg initdb".into(),
        Action::Clone { from, .. } => format!("pg clone from {from}"),
        Action::Rewind { from, .. } => format!("pg rewind from {from}"),
        Action::StartPrimary { lease_deadline, sync_standbys, .. } => {
            format!("pg start_primary until {lease_deadline} sync {}", render_sync(sync_standbys))
        }
        Action::StartReplica { upstream, .. } => {
            format!("pg start_replica upstream {}", upstream.as_deref().unwrap_or("-"))
        }
        Action::Stop { mode, .. } => {
            format!("pg stop {}", if *mode == StopMode::Fast { "fast" } else { "immediate (fence)" })
        }
        Action::Promote { lease_deadline, timeline, sync_standbys, .. } => {
            format!("pg promote to timeline {timeline} until {lease_deadline} sync {}", render_sync(sync_standbys))
        }
        Action::Follow { upstream } => format!("pg follow {}", upstream.as_deref().unwrap_or("nobody (receiver off)")),
        Action::SetSyncStandbys(s) => {
            format!("pg set synchronous_standby_names {}", render_sync(s))
        }
        Action::CreateSlot { name } => format!("pg create_slot {name}"),
        Action::DropSlot { name } => format!("pg drop_slot {name}"),
        Action::Checkpoint { .. } => "pg checkpoint".into(),
        Action::ArmGuard { deadline, term, .. } => {
            format!("guard arm until {deadline} term {term}")
        }
        Action::FailsafePing { members, ttl, .. } => {
            let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
            format!("failsafe ping [{}] ttl {ttl}", names.join(" "))
        }
    }
}

/// Helper for scenarios: the switchover kind used most.
pub const SWITCHOVER: SwitchoverKind = SwitchoverKind::Switchover;
/// Helper for scenarios: manual failover.
pub const FAILOVER: SwitchoverKind = SwitchoverKind::Failover;
