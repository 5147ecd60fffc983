//! The simulated world: nodes running the real `hacore::step`, an in-memory store, a
//! simulated PostgreSQL per node, a client workload, and invariant checks after every
//! event. Single-threaded and deterministic: the same calls give the same trace.

use crate::pg::{Record, Role, SimPg};
use hacore::action::{Action, StopMode};
use hacore::dcs::{DcsOp, DcsReply, Expect, SwitchoverKind, SwitchoverRequest, Value, Write};
use hacore::memdcs::{MemStore, StoreOptions};
use hacore::observation::{LocalRequests, StandbyState, SyncStandbys};
use hacore::{
    answer_failsafe, step, ClusterSettings, Config, DcsError, Done, FailsafeRequest, Failure, GuardState, Lsn, Memory,
    Millis, NodeStatus, Observation, OpId, Outcome, PeerReport, Term,
};
use std::collections::BTreeMap;

/// How long simulated operations take (ms).
#[derive(Clone, Debug)]
pub struct Durations {
    /// initdb.
    pub initdb: Millis,
    /// Clone.
    pub clone: Millis,
    /// pg_rewind.
    pub rewind: Millis,
    /// Start (either role).
    pub start: Millis,
    /// Stop fast.
    pub stop_fast: Millis,
    /// Stop immediate.
    pub stop_immediate: Millis,
    /// Promote.
    pub promote: Millis,
    /// CHECKPOINT.
    pub checkpoint: Millis,
}

impl Default for Durations {
    fn default() -> Self {
        Durations {
            initdb: 500,
            clone: 2_000,
            rewind: 1_000,
            start: 300,
            stop_fast: 200,
            stop_immediate: 50,
            promote: 200,
            checkpoint: 100,
        }
    }
}

/// A simulated cluster's parameters.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of nodes (n1..nN).
    pub nodes: usize,
    /// Store behaviour.
    pub store: StoreOptions,
    /// Cluster settings every node starts with.
    pub settings: ClusterSettings,
    /// A client write is attempted on every writable node this often (0: no writes).
    pub write_every: Millis,
    /// Operation durations.
    pub durations: Durations,
    /// Replication and checking granularity.
    pub tick: Millis,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 3,
            store: StoreOptions::etcd_like(),
            settings: ClusterSettings::fast(),
            write_every: 100,
            durations: Durations::default(),
            tick: 10,
        }
    }
}

#[derive(Clone, Debug)]
enum SimOp {
    Initdb,
    Clone { from: usize },
    Rewind { from: usize },
    StartPrimary,
    StartReplica { upstream: Option<String> },
    Stop { mode: StopMode },
    Promote { timeline: u32 },
    Checkpoint,
}

/// One simulated node.
#[derive(Clone, Debug)]
pub struct Node {
    /// Name.
    pub name: String,
    /// Its configuration.
    pub cfg: Config,
    /// The core's memory.
    pub mem: Memory,
    /// Its last status.
    pub status: NodeStatus,
    /// Its PostgreSQL.
    pub pg: SimPg,
    /// The daemon runs.
    pub daemon_up: bool,
    /// It can reach the store.
    pub dcs_link: bool,
    /// Outcomes to report at the next step.
    outcomes: Vec<Outcome>,
    /// The fencing guard's deadline.
    guard: Option<(Millis, Term)>,
    /// Next step.
    pub wake_at: Millis,
    ops: Vec<(Millis, OpId, SimOp)>,
    /// Verified common prefix with the current upstream: (upstream, my epoch, its epoch, length).
    verified: Option<(usize, u64, u64, usize)>,
    /// Incremented whenever the WAL is replaced or truncated.
    epoch: u64,
    /// Steps taken.
    pub steps: u64,
    /// Operator requests for the next step.
    pub requests: LocalRequests,
}

/// A write the client saw acknowledged.
#[derive(Clone, Copy, Debug)]
pub struct Acked {
    /// Write id.
    pub write: u64,
    /// Its LSN.
    pub lsn: Lsn,
    /// Node that acknowledged it.
    pub node: usize,
    /// When.
    pub at: Millis,
}

/// The whole simulated world.
pub struct World {
    /// Parameters.
    pub cfg: SimConfig,
    /// Global virtual time (ms).
    pub now: Millis,
    /// The store.
    pub store: MemStore,
    /// Nodes.
    pub nodes: Vec<Node>,
    /// Peer reachability `links[a][b]`: a can reach b.
    pub links: Vec<Vec<bool>>,
    next_write: u64,
    next_tick: Millis,
    next_client: Millis,
    pending_writes: Vec<(usize, u64, Lsn)>,
    /// Acknowledged writes.
    pub acked: Vec<Acked>,
    /// Invariant violations seen.
    pub violations: Vec<String>,
    /// Coverage counters.
    pub counters: BTreeMap<&'static str, u64>,
    /// Human-readable trace.
    pub trace: Vec<String>,
    /// Record each step's reason in the trace.
    pub trace_steps: bool,
    last_writable: Vec<usize>,
}

impl World {
    /// A world with `cfg.nodes` fresh nodes (no data) and an empty store.
    pub fn new(cfg: SimConfig) -> World {
        let nodes = (0..cfg.nodes)
            .map(|i| {
                let name = format!("n{}", i + 1);
                let mut c = Config::new(name.clone());
                c.api_url = format!("http://{name}:8008");
                c.pg_url = format!("host={name}");
                c.defaults = cfg.settings.clone();
                Node {
                    name,
                    cfg: c,
                    mem: Memory::default(),
                    status: NodeStatus::default(),
                    pg: SimPg::default(),
                    daemon_up: true,
                    dcs_link: true,
                    outcomes: Vec::new(),
                    guard: None,
                    wake_at: i as Millis,
                    ops: Vec::new(),
                    verified: None,
                    epoch: 0,
                    steps: 0,
                    requests: LocalRequests::default(),
                }
            })
            .collect();
        World {
            store: MemStore::new(cfg.store.clone()),
            links: vec![vec![true; cfg.nodes]; cfg.nodes],
            cfg,
            now: 0,
            nodes,
            next_write: 1,
            next_tick: 0,
            next_client: 0,
            pending_writes: Vec::new(),
            acked: Vec::new(),
            violations: Vec::new(),
            counters: BTreeMap::new(),
            trace: Vec::new(),
            trace_steps: false,
            last_writable: Vec::new(),
        }
    }

    fn count(&mut self, what: &'static str) {
        *self.counters.entry(what).or_default() += 1;
    }

    fn log(&mut self, msg: String) {
        self.trace.push(format!("{:>8} {msg}", self.now));
    }

    /// Index of a node by name.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Nodes whose PostgreSQL accepts writes now.
    pub fn writable(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].pg.writable()).collect()
    }

    /// The node the store names leader, if any.
    pub fn leader(&self) -> Option<usize> {
        self.store.leader().and_then(|l| self.index(&l.value.holder))
    }

    // ----- faults and operator actions --------------------------------------------------

    /// The whole machine dies: daemon, guard and PostgreSQL.
    pub fn crash_node(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.daemon_up = false;
        n.pg.running = false;
        n.pg.streaming = false;
        n.ops.clear();
        n.outcomes.clear();
        n.guard = None;
        self.log(format!("FAULT crash {}", self.nodes[i].name));
        self.count("fault_crash");
    }

    /// The machine comes back: PostgreSQL down, daemon starts with empty memory.
    pub fn restart_node(&mut self, i: usize) {
        let now = self.now;
        let n = &mut self.nodes[i];
        n.daemon_up = true;
        n.mem = Memory::default();
        n.wake_at = now;
        self.log(format!("FAULT restart {}", self.nodes[i].name));
    }

    /// Only PostgreSQL dies.
    pub fn kill_pg(&mut self, i: usize) {
        self.nodes[i].pg.running = false;
        self.nodes[i].pg.streaming = false;
        self.log(format!("FAULT kill postgres on {}", self.nodes[i].name));
        self.count("fault_kill_pg");
    }

    /// Cuts (or heals) one node's link to the store.
    pub fn set_dcs_link(&mut self, i: usize, up: bool) {
        self.nodes[i].dcs_link = up;
        self.log(format!("FAULT dcs link {} {}", self.nodes[i].name, if up { "up" } else { "down" }));
    }

    /// The store becomes unreachable for everyone (or reachable again).
    pub fn set_dcs_outage(&mut self, down: bool) {
        for n in &mut self.nodes {
            n.dcs_link = !down;
        }
        if !down {
            // etcd extends every lease when it recovers (a new store leader).
            self.store.extend_all_leases(self.now);
        }
        self.log(format!("FAULT dcs {}", if down { "outage" } else { "back" }));
    }

    /// Symmetric peer partition between two nodes.
    pub fn set_peer_link(&mut self, a: usize, b: usize, up: bool) {
        self.links[a][b] = up;
        self.links[b][a] = up;
    }

    /// Writes a switchover (or failover) request as the CLI would.
    pub fn request_switchover(&mut self, kind: SwitchoverKind, from: Option<&str>, to: Option<&str>) {
        let value = Value::Switchover(SwitchoverRequest {
            kind,
            from: from.map(Into::into),
            to: to.map(Into::into),
            at_wall_ms: None,
        });
        let op = DcsOp::Put(Write::put(value, Expect::Absent));
        let r = self.store.apply("cli", &op, self.now, self.now);
        self.log(format!("OPERATOR switchover request {kind:?} {from:?} -> {to:?}: {r:?}"));
    }

    /// Edits the cluster config in the store (as `edit-config` would).
    pub fn set_config(&mut self, f: impl FnOnce(&mut ClusterSettings)) {
        let view = self.store.read(self.now, self.now);
        let (mut settings, expect) = match view.config {
            Some(c) => (c.value, Expect::Version(c.version)),
            None => (self.cfg.settings.clone(), Expect::Absent),
        };
        f(&mut settings);
        let op = DcsOp::Put(Write::put(Value::Config(settings), expect));
        let r = self.store.apply("cli", &op, self.now, self.now);
        self.log(format!("OPERATOR config edit: {r:?}"));
    }

    // ----- the event loop -----------------------------------------------------------------

    /// Runs until virtual time `until`.
    pub fn run_until(&mut self, until: Millis) {
        while self.now < until {
            let next = self.next_event().min(until);
            self.now = next;
            self.process();
        }
    }

    /// Runs for `ms` more.
    pub fn run_for(&mut self, ms: Millis) {
        self.run_until(self.now + ms);
    }

    /// Runs until `cond` holds (checked after each event) or `max` more ms pass; returns
    /// the time it took, or None.
    pub fn run_until_cond(&mut self, max: Millis, mut cond: impl FnMut(&World) -> bool) -> Option<Millis> {
        let start = self.now;
        let end = self.now + max;
        while self.now < end {
            if cond(self) {
                return Some(self.now - start);
            }
            let next = self.next_event().min(end);
            self.now = next;
            self.process();
        }
        cond(self).then(|| self.now - start)
    }

    fn next_event(&self) -> Millis {
        let mut t = self.next_tick;
        for n in &self.nodes {
            if n.daemon_up {
                t = t.min(n.wake_at);
            }
            for (at, _, _) in &n.ops {
                t = t.min(*at);
            }
        }
        t.max(self.now)
    }

    fn process(&mut self) {
        self.complete_ops();
        if self.now >= self.next_tick {
            self.next_tick = self.now + self.cfg.tick;
            self.guards();
            self.replicate();
            if self.cfg.write_every > 0 && self.now >= self.next_client {
                self.next_client = self.now + self.cfg.write_every;
                self.client_writes();
            }
            self.acknowledge();
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].daemon_up && self.nodes[i].wake_at <= self.now {
                self.step_node(i);
            }
        }
        self.check();
    }

    fn guards(&mut self) {
        for i in 0..self.nodes.len() {
            let n = &self.nodes[i];
            if let Some((deadline, _)) = n.guard {
                if n.pg.writable() && self.now >= deadline {
                    self.nodes[i].pg.running = false;
                    self.log(format!("GUARD killed postgres on {}", self.nodes[i].name));
                    self.count("guard_fired");
                }
            }
        }
    }

    fn replicate(&mut self) {
        for j in 0..self.nodes.len() {
            let n = &self.nodes[j];
            if !n.pg.running || n.pg.role != Some(Role::Standby) {
                self.nodes[j].pg.streaming = false;
                continue;
            }
            let Some(u) = n.pg.upstream.as_deref().and_then(|u| self.index(u)) else {
                self.nodes[j].pg.streaming = false;
                continue;
            };
            let up = &self.nodes[u].pg;
            if u == j || !up.running || up.hung || !self.links[j][u] {
                self.nodes[j].pg.streaming = false;
                continue;
            }
            // The standby's WAL must be a prefix of the upstream's.
            let (mine, theirs) = (&self.nodes[j].pg.wal, &up.wal);
            let from = match self.nodes[j].verified {
                Some((vu, me, them, len)) if vu == u && me == self.nodes[j].epoch && them == self.nodes[u].epoch => len,
                _ => 0,
            };
            let len = mine.len().min(theirs.len());
            let common = from + SimPg::common_prefix(&mine[from.min(len)..len], &theirs[from.min(len)..len]);
            if common < mine.len() {
                if self.nodes[j].pg.streaming || self.nodes[j].verified.is_some() {
                    self.count("stream_refused_diverged");
                }
                self.nodes[j].pg.streaming = false;
                self.nodes[j].verified = None;
                continue;
            }
            let extra: Vec<Record> = theirs[mine.len()..].to_vec();
            let history = up.history.clone();
            let (epoch_u, timeline_u) = (self.nodes[u].epoch, up.timeline);
            let n = &mut self.nodes[j];
            n.pg.wal.extend(extra);
            n.pg.timeline = n.pg.wal.last().map_or(timeline_u, |r| r.timeline);
            let tl = n.pg.timeline;
            n.pg.history = history.into_iter().filter(|h| h.timeline.0 < tl).collect();
            n.pg.streaming = true;
            n.verified = Some((u, n.epoch, epoch_u, n.pg.wal.len()));
        }
    }

    fn client_writes(&mut self) {
        for i in self.writable() {
            let id = self.next_write;
            self.next_write += 1;
            let lsn = self.nodes[i].pg.append(Some(id));
            self.pending_writes.push((i, id, lsn));
        }
    }

    fn acknowledge(&mut self) {
        let mut still = Vec::new();
        for (i, id, lsn) in std::mem::take(&mut self.pending_writes) {
            let pg = &self.nodes[i].pg;
            if !pg.writable() {
                self.count("writes_unknown");
                continue;
            }
            let ok = match &pg.sync_standbys {
                SyncStandbys::Off => true,
                SyncStandbys::Block => false,
                SyncStandbys::First(names) => names.iter().all(|name| {
                    self.index(name).is_some_and(|s| {
                        let s = &self.nodes[s].pg;
                        s.running
                            && s.streaming
                            && s.upstream.as_deref() == Some(self.nodes[i].name.as_str())
                            && s.end() >= lsn
                    })
                }),
            };
            if ok {
                self.acked.push(Acked { write: id, lsn, node: i, at: self.now });
                self.count("writes_acked");
            } else {
                still.push((i, id, lsn));
            }
        }
        self.pending_writes = still;
    }

    /// S1 after every event; S2 whenever a node becomes writable.
    fn check(&mut self) {
        let writable = self.writable();
        if writable.len() > 1 {
            let names: Vec<_> = writable.iter().map(|&i| self.nodes[i].name.clone()).collect();
            let msg = format!("S1 violated at {}: {} accept writes", self.now, names.join(" and "));
            self.log(msg.clone());
            self.violations.push(msg);
        }
        for &i in &writable {
            if !self.last_writable.contains(&i) {
                self.became_writable(i);
            }
        }
        self.last_writable = writable;
    }

    fn became_writable(&mut self, i: usize) {
        self.log(format!(
            "{} accepts writes (timeline {}, end {})",
            self.nodes[i].name,
            self.nodes[i].pg.timeline,
            self.nodes[i].pg.end()
        ));
        self.count("became_primary");
        let missing: Vec<u64> =
            self.acked.iter().filter(|a| !self.nodes[i].pg.has(a.lsn, a.write)).map(|a| a.write).collect();
        if missing.is_empty() {
            return;
        }
        if self.cfg.settings.synchronous_mode.enabled() {
            let msg = format!(
                "S2 violated at {}: new primary {} lacks {} acknowledged writes (first {:?})",
                self.now,
                self.nodes[i].name,
                missing.len(),
                missing.first()
            );
            self.log(msg.clone());
            self.violations.push(msg);
        } else {
            *self.counters.entry("async_acked_writes_lost").or_default() += missing.len() as u64;
            // They are gone for good: do not count them again at the next failover.
            self.acked.retain(|a| !missing.contains(&a.write));
        }
    }

    // ----- one node's step and its actions -----------------------------------------------

    fn step_node(&mut self, i: usize) {
        let now = self.now;
        let dcs = if self.nodes[i].dcs_link {
            Ok(self.store.read(now, now))
        } else {
            Err(DcsError::Unavailable("simulated outage".into()))
        };
        let peers: Vec<PeerReport> = (0..self.nodes.len())
            .filter(|&j| j != i)
            .map(|j| {
                let p = &self.nodes[j];
                let status = (self.links[i][j] && p.daemon_up).then(|| p.status.peer_view(p.pg.running));
                PeerReport { name: p.name.clone(), status }
            })
            .collect();
        let standbys: Vec<StandbyState> = self
            .nodes
            .iter()
            .filter(|s| s.pg.running && s.pg.streaming && s.pg.upstream.as_deref() == Some(self.nodes[i].name.as_str()))
            .map(|s| StandbyState { name: s.name.clone(), flush_lsn: s.pg.end(), streaming: true })
            .collect();
        let n = &mut self.nodes[i];
        let obs = Observation {
            pg: n.pg.observe(standbys),
            dcs,
            peers,
            outcomes: std::mem::take(&mut n.outcomes),
            guard: n.guard.map_or(GuardState::Disabled, |(deadline, term)| GuardState::Armed { deadline, term }),
            requests: std::mem::take(&mut n.requests),
            wall_time_ms: now,
        };
        let d = step(&n.cfg, &n.mem, &obs, now);
        n.mem = d.memory;
        n.steps += 1;
        n.wake_at = now + d.wake_within;
        let changed = n.status.reason != d.status.reason;
        n.status = d.status;
        if changed || self.trace_steps {
            let msg = format!(
                "{} {} {:?}{}",
                self.nodes[i].name,
                self.nodes[i].status.reason,
                self.nodes[i].status.role,
                if self.nodes[i].status.detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", self.nodes[i].status.detail)
                }
            );
            self.log(msg);
        }
        self.execute(i, d.actions);
    }

    fn outcome(&mut self, i: usize, id: OpId, result: Result<Done, Failure>) {
        self.nodes[i].outcomes.push(Outcome { id, result });
    }

    fn execute(&mut self, i: usize, actions: Vec<Action>) {
        let now = self.now;
        let mut failed = false;
        for a in actions {
            if failed {
                if let Some(id) = a.id() {
                    self.outcome(i, id, Err(Failure::Skipped));
                }
                continue;
            }
            if let Some(deadline) = a.writable_deadline() {
                if now >= deadline {
                    self.outcome(i, a.id().unwrap_or_default(), Err(Failure::TimedOut));
                    failed = true;
                    continue;
                }
            }
            let d = &self.cfg.durations;
            let long = match &a {
                Action::Initdb { id } => Some((*id, d.initdb, SimOp::Initdb)),
                Action::Clone { id, from } => self.index(from).map(|f| (*id, d.clone, SimOp::Clone { from: f })),
                Action::Rewind { id, from } => self.index(from).map(|f| (*id, d.rewind, SimOp::Rewind { from: f })),
                Action::StartPrimary { id, sync_standbys, .. } => {
                    self.nodes[i].pg.sync_standbys = sync_standbys.clone();
                    Some((*id, d.start, SimOp::StartPrimary))
                }
                Action::StartReplica { id, upstream } => {
                    Some((*id, d.start, SimOp::StartReplica { upstream: upstream.clone() }))
                }
                Action::Stop { id, mode } => {
                    let t = if *mode == StopMode::Fast { d.stop_fast } else { d.stop_immediate };
                    Some((*id, t, SimOp::Stop { mode: *mode }))
                }
                Action::Promote { id, timeline, sync_standbys, .. } => {
                    self.nodes[i].pg.sync_standbys = sync_standbys.clone();
                    Some((*id, d.promote, SimOp::Promote { timeline: timeline.0 }))
                }
                Action::Checkpoint { id } => Some((*id, d.checkpoint, SimOp::Checkpoint)),
                _ => None,
            };
            if let Some((id, took, op)) = long {
                self.nodes[i].ops.push((now + took, id, op));
                continue;
            }
            match a {
                Action::Dcs { id, op } => {
                    if !self.nodes[i].dcs_link {
                        self.outcome(i, id, Err(Failure::Unavailable));
                        failed = true;
                        continue;
                    }
                    let name = self.nodes[i].name.clone();
                    match self.store.apply(&name, &op, now, now) {
                        Ok(DcsReply::Lease(g)) => self.outcome(i, id, Ok(Done::Lease(g))),
                        Ok(DcsReply::Done) => self.outcome(i, id, Ok(Done::Ok)),
                        Err(e) => {
                            self.outcome(i, id, Err(Failure::from(&e)));
                            failed = true;
                        }
                    }
                    if let DcsOp::TransferLeader { .. } = op {
                        if !failed {
                            self.count("transfer");
                        }
                    }
                }
                Action::Follow { upstream } => {
                    let pg = &mut self.nodes[i].pg;
                    pg.upstream = upstream;
                    pg.streaming = false;
                    self.nodes[i].verified = None;
                }
                Action::SetSyncStandbys(s) => self.nodes[i].pg.sync_standbys = s,
                Action::CreateSlot { name } if !self.nodes[i].pg.slots.contains(&name) => {
                    self.nodes[i].pg.slots.push(name)
                }
                Action::DropSlot { name } => self.nodes[i].pg.slots.retain(|s| *s != name),
                Action::ArmGuard { id, deadline, term } => {
                    self.nodes[i].guard = Some((deadline, term));
                    self.outcome(i, id, Ok(Done::Ok));
                }
                Action::FailsafePing { id, term, members } => {
                    let leader = self.nodes[i].name.clone();
                    let req = FailsafeRequest { leader, term };
                    let mut all = true;
                    for m in &members {
                        let Some(j) = self.index(&m.name) else {
                            all = false;
                            continue;
                        };
                        if !self.links[i][j] || !self.nodes[j].daemon_up {
                            all = false;
                            continue;
                        }
                        let p = &mut self.nodes[j];
                        let (ok, mem) = answer_failsafe(&p.cfg, &p.mem, &req, now);
                        p.mem = mem;
                        all &= ok;
                    }
                    if all {
                        self.count("failsafe_round_acked");
                        self.outcome(i, id, Ok(Done::FailsafeAcked { sent_at: now }));
                    } else {
                        self.outcome(i, id, Err(Failure::Failed));
                        failed = true;
                    }
                }
                _ => {}
            }
        }
    }

    fn complete_ops(&mut self) {
        let now = self.now;
        for i in 0..self.nodes.len() {
            let (due, rest): (Vec<_>, Vec<_>) =
                std::mem::take(&mut self.nodes[i].ops).into_iter().partition(|(at, _, _)| *at <= now);
            self.nodes[i].ops = rest;
            for (_, id, op) in due {
                let result = self.finish(i, op);
                self.outcome(i, id, result);
                self.nodes[i].wake_at = self.nodes[i].wake_at.min(now);
            }
        }
    }

    fn finish(&mut self, i: usize, op: SimOp) -> Result<Done, Failure> {
        let name = self.nodes[i].name.clone();
        match op {
            SimOp::Initdb => {
                let pg = &mut self.nodes[i].pg;
                if pg.system_id.is_some() {
                    return Err(Failure::Failed);
                }
                *pg = SimPg {
                    system_id: Some(1_000 + i as u64),
                    timeline: 1,
                    role: Some(Role::Primary),
                    ..SimPg::default()
                };
                pg.append(None);
                self.nodes[i].epoch += 1;
                self.log(format!("{name} initdb done"));
                Ok(Done::Ok)
            }
            SimOp::Clone { from } => {
                let src = &self.nodes[from].pg;
                if !src.running || src.hung || !self.links[i][from] || self.nodes[i].pg.running {
                    return Err(Failure::Failed);
                }
                let copy = SimPg {
                    system_id: src.system_id,
                    wal: src.wal.clone(),
                    history: src.history.clone(),
                    timeline: src.timeline,
                    role: Some(Role::Standby),
                    ..SimPg::default()
                };
                let end = copy.end();
                self.nodes[i].pg = copy;
                self.nodes[i].epoch += 1;
                self.count("clone");
                self.log(format!("{name} cloned from {} up to {end}", self.nodes[from].name));
                Ok(Done::ConsistentAt(end))
            }
            SimOp::Rewind { from } => {
                let src = &self.nodes[from].pg;
                let me = &self.nodes[i].pg;
                if !src.writable() || me.running || src.system_id != me.system_id {
                    return Err(Failure::Failed);
                }
                let common = SimPg::common_prefix(&me.wal, &src.wal);
                let discarded = me.wal.len() - common;
                let (wal, history, timeline) = (src.wal.clone(), src.history.clone(), src.timeline);
                let end = Lsn(wal.len() as u64 * crate::pg::RECORD);
                let pg = &mut self.nodes[i].pg;
                pg.wal = wal;
                pg.history = history;
                pg.timeline = timeline;
                pg.role = Some(Role::Standby);
                self.nodes[i].epoch += 1;
                self.count("rewind");
                self.log(format!(
                    "{name} rewound from {}: {discarded} divergent records discarded",
                    self.nodes[from].name
                ));
                Ok(Done::ConsistentAt(end))
            }
            SimOp::StartPrimary => {
                let pg = &mut self.nodes[i].pg;
                if pg.system_id.is_none() || pg.running {
                    return Err(Failure::Failed);
                }
                pg.running = true;
                pg.hung = false;
                pg.role = Some(Role::Primary);
                pg.upstream = None;
                Ok(Done::Ok)
            }
            SimOp::StartReplica { upstream } => {
                let pg = &mut self.nodes[i].pg;
                if pg.system_id.is_none() || pg.running {
                    return Err(Failure::Failed);
                }
                pg.running = true;
                pg.hung = false;
                pg.role = Some(Role::Standby);
                pg.upstream = upstream;
                pg.streaming = false;
                self.nodes[i].verified = None;
                Ok(Done::Ok)
            }
            SimOp::Stop { mode } => {
                if !self.nodes[i].pg.running {
                    return Ok(Done::Ok);
                }
                if mode == StopMode::Fast && self.nodes[i].pg.role == Some(Role::Primary) {
                    // The shutdown checkpoint, delivered to connected standbys before exit.
                    self.nodes[i].pg.append(None);
                    self.replicate();
                }
                let pg = &mut self.nodes[i].pg;
                pg.running = false;
                pg.streaming = false;
                if mode == StopMode::Immediate {
                    self.count("fence");
                }
                Ok(Done::Ok)
            }
            SimOp::Promote { timeline } => {
                let pg = &mut self.nodes[i].pg;
                if !pg.running || pg.role != Some(Role::Standby) {
                    return Err(Failure::Failed);
                }
                pg.promote(timeline);
                self.count("promote");
                Ok(Done::Ok)
            }
            SimOp::Checkpoint => Ok(Done::Ok),
        }
    }
}
