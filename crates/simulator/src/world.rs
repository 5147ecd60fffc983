//! The simulated world: a single-threaded discrete-event engine in virtual time.
//!
//! Every node runs the real `hacore::step`. Around it: a store (etcd-like or
//! DynamoDB-like) reached with latency over links that faults can cut (both ways or one
//! way), replies that get lost (unknown outcomes), a simulated PostgreSQL per node, a
//! fencing guard per node, per-node clocks with bounded drift, a client writing to
//! whoever accepts writes, and the checkers, which run after every event.

use crate::check::Checker;
use crate::clock::Clock;
use crate::nemesis::{Dir, Fault, FaultKind, Target};
use crate::params::{DcsMode, Params};
use crate::pg::{Role, SimPg, RECORD};
use crate::rng::Rng;
use crate::trace::Trace;
use hacore::action::{Action, StopMode};
use hacore::dcs::{ClusterView, DcsOp, DcsReply, Expect, MemberRole, SwitchoverKind, SwitchoverRequest, Value, Write};
use hacore::memdcs::{MemStore, StoreOptions};
use hacore::observation::{LocalRequests, StandbyState, SyncStandbys};
use hacore::{
    answer_failsafe, step, Config, DcsError, Done, FailsafeRequest, Failure, GuardState, Lsn, Memory, Millis,
    NodeStatus, Observation, OpId, Outcome, PeerReport, Reason, Term,
};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

/// How long before a writable deadline the shell gives up a store call (hashell's
/// `IO_SLACK`).
const IO_SLACK: Millis = 500;

/// Commits a client keeps in flight per node (its connection pool).
const MAX_IN_FLIGHT: u32 = 64;

#[derive(Clone, Debug)]
enum SimOp {
    Initdb,
    Clone {
        from: usize,
    },
    /// A standby cluster's copy of its upstream.
    CloneUpstream,
    Rewind {
        from: usize,
    },
    StartPrimary,
    StartReplica {
        upstream: Option<String>,
    },
    Stop {
        mode: StopMode,
    },
    Promote {
        timeline: u32,
    },
    Checkpoint,
}

#[derive(Debug)]
enum Phase {
    Idle,
    Reading { req: u64 },
    Executing { queue: VecDeque<Action>, failed: bool, waiting: Option<(u64, OpId)> },
}

/// A node's display state for traces and pictures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Shown {
    /// The machine is down.
    Down,
    /// PostgreSQL is not running.
    Stopped,
    /// A standby.
    Replica,
    /// Accepts writes.
    Primary,
}

/// One simulated node.
pub struct Node {
    /// Name.
    pub name: String,
    /// Configuration.
    pub cfg: Config,
    /// The core's memory.
    pub mem: Memory,
    /// Last status.
    pub status: NodeStatus,
    /// PostgreSQL.
    pub pg: SimPg,
    /// The node's monotonic clock.
    pub clock: Clock,
    /// The machine runs.
    pub up: bool,
    /// The daemon is frozen (SIGSTOP).
    pub paused: bool,
    /// Steps taken.
    pub steps: u64,
    /// Operator requests for the next step.
    pub requests: LocalRequests,
    /// An operator's restart request stands until then (global time), or until the core
    /// takes it up.
    restart_until: Option<Millis>,
    outcomes: Vec<Outcome>,
    guard: Option<(Millis, Term)>,
    phase: Phase,
    wake_gen: u64,
    wake_at: Option<Millis>,
    wake_soon: bool,
    /// The shell's loop pacing (as in `hashell`): this batch had an outcome that calls for
    /// the next step at once (an acquire, transfer, release or leader write, a WAL receiver
    /// stopped for an election, a failsafe confirmation)...
    urgent: bool,
    /// ...and how many steps in a row followed at once (at most three).
    quick_steps: u32,
    /// This batch acquired, transferred or released the leader record: without a watch the
    /// shell wakes its peers (`POST /wake`).
    moved: bool,
    /// The view of the last step was in flux (no leader, a switchover request, a candidate
    /// or a fencing member): without a watch the shell polls at least every second.
    in_flux: bool,
    /// When a peer last woke this daemon (wake-ups closer than 100 ms are dropped).
    last_peer_wake: Option<Millis>,
    /// Store requests sent: reads and writes in all, and in the current second (R7).
    pub reads: u64,
    /// Writes sent in all.
    pub writes: u64,
    second: (Millis, u32, u32),
    /// The term an election acquire of this node's last decision asks for, and the fork
    /// cause that decision implies (a request naming this node: manual failover).
    acquiring: Option<(Term, hacore::ForkCause)>,
    /// The machine and daemon that ran the last rewind or clone: the core's rule that a
    /// node is not eligible until replay reaches its minimum recovery point lives in that
    /// daemon's memory (checked while it lives; after a restart PostgreSQL's own recovery
    /// is what holds, see the stated limits).
    copied_in: Option<(u64, u64)>,
    /// An operator asked this daemon to reinitialize (`POST /reinitialize`): the request
    /// holds until the clone starts, as in hashell.
    reinit: bool,
    /// Long operations of this daemon that failed, by kind, and when its core learnt it
    /// (local clock): R5 paces their retries.
    failed: Vec<(hacore::memory::PgOpKind, Millis)>,
    /// The daemon has not stepped since it started: it does not know whether it holds the
    /// lease, and (as hashell does) bounds its first store calls by the guard's deadline.
    fresh: bool,
    next_wake: Millis,
    machine: u64,
    /// The daemon process: a restart of the daemon alone (PostgreSQL and the guard run on)
    /// orphans its store requests and the outcomes of its operations.
    daemon: u64,
    /// Long operations in flight by sequence number: the action id, the operation, and the
    /// daemon that started it (its outcome reaches only that daemon).
    ops: BTreeMap<u64, (OpId, SimOp, u64)>,
    op_seq: u64,
    /// Operations started while PostgreSQL was slow, with when they would have ended at
    /// normal speed: once the slowness ends they finish by then (a recovered disk does
    /// not keep a started operation slow).
    slowed: BTreeMap<u64, Millis>,
    /// Events held while the daemon is paused.
    held: Vec<Ev>,
    epoch: u64,
    receipts: VecDeque<(Millis, usize)>,
    /// Until when (global ms) this standby's WAL sender is in `catchup` after it last
    /// connected: PostgreSQL neither lists it as streaming nor counts it synchronous.
    catchup_until: Millis,
    repl_delay: Millis,
    replay_delay: Millis,
    slow: u64,
    fail_pg: u32,
    fail_next: u32,
    /// Every start of PostgreSQL fails (a broken data directory: the final phase
    /// `final_start_fails`).
    start_broken: bool,
    stale_view: Option<ClusterView>,
    /// Local time since which this daemon's observations have shown PostgreSQL running
    /// but not answering, without a break (R6 for `primary_hung`).
    unresponsive_seen: Option<Millis>,
    /// The version of the store's settings this daemon last recorded as rejected (E1).
    rejected_told: Option<hacore::Version>,
    /// The last version of the store's settings validated for E1, and whether it failed.
    config_checked: Option<(hacore::Version, bool)>,
    /// Local time of this daemon's last status record write (R9).
    status_written: Option<Millis>,
    restarted_from_copy: bool,
    shown: Shown,
    in_flight: u32,
    /// When the store last applied a write from this node that keeps its member record
    /// alive (global time): a keepalive, a publish, a leader acquire or renewal.
    kept_alive_at: Millis,
    /// Informational writes of the current batch, sent once the foreground is done.
    background: Vec<Action>,
    /// Background requests awaiting a reply, and the action id each reports to.
    background_reqs: BTreeMap<u64, OpId>,
}

impl Node {
    /// Local clock reading now.
    pub fn local(&self, t: Millis) -> Millis {
        self.clock.local(t)
    }
}

/// The settings a daemon runs with: the store's it applied, else its configured defaults.
fn in_force<'a>(cfg: &'a Config, mem: &'a Memory) -> &'a hacore::ClusterSettings {
    mem.applied.as_ref().map_or(&cfg.defaults, |(_, s)| s)
}

struct Req {
    node: usize,
    op: Option<DcsOp>,
    result: Option<Result<Reply, DcsError>>,
    sent_local: Millis,
    /// When the client gives up (local clock): retry_timeout, but never past the moment
    /// the node may write until (the shell's contract: a store call never delays a fence).
    give_up_local: Millis,
    machine: u64,
    daemon: u64,
    first_half: Option<ClusterView>,
    /// For a transfer: the candidate, its machine and its data's system identifier when
    /// the leader sent it. The leader judged the data that machine had; one that reboots
    /// while the transfer is on the wire may come back with other data (an operator's
    /// doing, seen by no one in time).
    transfer_to: Option<(usize, u64, Option<u64>)>,
}

#[derive(Clone, Debug)]
enum Ev {
    Wake { node: usize, gen: u64 },
    Arrive { req: u64 },
    ReadTail { req: u64 },
    Reply { req: u64 },
    Timeout { req: u64 },
    OpDone { node: usize, seq: u64, machine: u64 },
    Guard { node: usize, deadline: Millis, machine: u64 },
    Tick,
    Expire,
    FaultStart(usize),
    FaultEnd(usize),
}

#[derive(Clone, Debug)]
enum Reply {
    View(Box<ClusterView>),
    Op(DcsReply),
}

struct Queued {
    at: Millis,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// A published synchronous set and the node index of each member (None: no such node).
type SyncNames = (std::sync::Arc<Vec<hacore::NodeName>>, Vec<Option<usize>>);

/// A write the client saw acknowledged.
#[derive(Clone, Copy, Debug)]
pub struct Acked {
    /// Its LSN.
    pub lsn: Lsn,
    /// Hash chain of the acknowledging primary's WAL up to this record.
    pub chain: u64,
}

/// The writes one primary acknowledged during one stint as primary, in LSN order. They
/// lie on one WAL, so a node holding the last one (same chain) holds them all.
///
/// Writes every node holds are dropped from the front: no later primary can lack them
/// (a rewind keeps what the source and the node share, a clone copies a node that has
/// them, and a primary only loses WAL it never sent), so the list stays short.
#[derive(Clone, Debug)]
pub struct Stint {
    /// The primary.
    pub node: usize,
    /// Acknowledged writes not yet held by every node, oldest first.
    pub writes: Vec<Acked>,
    /// Writes dropped from the front because every node held them.
    pub settled: u64,
    /// Compact again once the list is this long.
    compact_at: usize,
}

const COMPACT_MIN: usize = 4_096;

/// Link state; counters so overlapping faults compose.
#[derive(Clone, Debug)]
struct Links {
    /// node -> store cut count.
    dcs_out: Vec<u32>,
    /// store -> node cut count.
    dcs_in: Vec<u32>,
    /// a -> b cut count.
    peer: Vec<Vec<u32>>,
}

/// A standby cluster's upstream: the primary of a cluster at another site, not managed
/// here. It writes at the client's rate; faults take it down or fail it over (its WAL
/// continues on a new timeline, as after a failover there).
pub struct Upstream {
    /// Its PostgreSQL (always a primary).
    pub pg: SimPg,
    /// Reachable from this cluster.
    pub up: bool,
}

/// Write ids of the upstream's own clients (apart from this cluster's).
const UPSTREAM_WRITES: u64 = 1 << 62;

/// The system identifier of the other cluster whose data directory `foreign-data` puts
/// on a member (this cluster's come from `initdb`: 1,000 and up).
const FOREIGN_SYSTEM_ID: u64 = 0x0F0E_1647;

/// The whole simulated world.
pub struct World {
    /// Parameters.
    pub p: Params,
    /// Global virtual time (ms).
    pub now: Millis,
    /// The store.
    pub store: MemStore,
    store_clock: Clock,
    store_down: u32,
    store_refuses: bool,
    /// Nodes.
    pub nodes: Vec<Node>,
    links: Links,
    queue: BinaryHeap<Reverse<Queued>>,
    /// The schedule's fault starts, latest first, kept out of `queue`: a run's whole
    /// schedule (hundreds of faults) would otherwise deepen every heap operation. Taken
    /// in the same (time, sequence) order as if they were queued.
    starts: Vec<Queued>,
    seq: u64,
    /// Requests in flight. Boxed: a map moves its values within a node on every insert and
    /// remove, and a request is large (it can carry a whole view).
    reqs: BTreeMap<u64, Box<Req>>,
    next_req: u64,
    rng: Rng,
    next_write: u64,
    /// Per node: client writes awaiting acknowledgement, in LSN order.
    pending_writes: Vec<VecDeque<(u64, Lsn)>>,
    /// Acknowledged writes, per primary stint.
    pub acked: Vec<Stint>,
    /// Acknowledged writes in all.
    pub acked_total: u64,
    /// Writes and unknown outcomes not yet added to the coverage counters: a counter
    /// lookup by name every client tick cost 3% of a run ([`World::count_writes`]).
    writes_uncounted: (u64, u64),
    /// Acknowledged writes per second of virtual time (for the picture).
    pub acks_per_second: Vec<u32>,
    next_write_at: Millis,
    /// Invariant checks and coverage counters.
    pub check: Checker,
    /// The trace (hash always; lines when kept).
    pub trace: Trace,
    /// Role changes per node over time, for the picture.
    pub timeline: Vec<(Millis, usize, Shown)>,
    /// Faults as applied (start, end, description), for the picture.
    pub fault_log: Vec<(Millis, Millis, String)>,
    faults: Vec<Fault>,
    fault_targets: Vec<Vec<usize>>,
    expire_at: Option<Millis>,
    /// The node (and its data epoch) whose WAL a new term must not fork from: the last one
    /// that became writable or executed a promotion.
    last_primary: Option<(usize, u64)>,
    /// The upstream of a standby cluster (`standby_cluster` in the settings).
    pub upstream: Option<Upstream>,
    /// The store's settings still make this a standby cluster: nobody may accept writes.
    standby_active: bool,
    /// The last leader transfer the store applied (a switchover): to whom, which term.
    transferred: Option<(usize, Term)>,
    /// How each recent term was taken (F1): the node, its machine and daemon then, and the
    /// fork cause that implies (transfer: switchover; an election: failover, or manual
    /// failover when a request named the node).
    term_origin: BTreeMap<u64, (usize, u64, u64, hacore::ForkCause)>,
    /// The version of the last operator request the store took, and each node's clock then.
    request_at: Option<(hacore::Version, Vec<Millis>)>,
    /// The faults stopped ([`World::heal`]): a fault the schedule puts later (an
    /// operator's cancel drawn after the run's end) does not start.
    healed: bool,
    /// Terms a node asked for by an acquire whose outcome it never learnt: if a transfer
    /// gave it the term instead, it cannot tell (F1 skips those).
    unsure_acquires: Vec<(usize, u64)>,
    /// The longest ttl the settings had during the run (operators change it).
    ttl_max: Millis,
    /// The settings an operator's bad write replaced, put back when the fault ends.
    good_config: Option<hacore::ClusterSettings>,
    /// What an unusable history key overwrote (None inside: there was none).
    good_history: Option<Option<hacore::History>>,
    /// S2 reported for a synchronous-set member (once per run, not at every event).
    sync_member_flagged: bool,
    /// What the last passing S2 check of the synchronous set depended on (see
    /// `check_sync_members`), and a buffer for the next one's.
    sync_key_passed: Vec<(u64, u64, u64, Option<u64>)>,
    /// The published synchronous set last seen and its members' node indexes, looked up
    /// once per record rather than after every event.
    sync_names: Option<SyncNames>,
    sync_key_scratch: Vec<(u64, u64, u64, Option<u64>)>,
    /// The first primary after a standby cluster's promotion was checked.
    promotion_checked: bool,
    next_upstream_write: u64,
}

impl World {
    /// A world for `p`: fresh nodes without data, an empty store, the faults of
    /// `p.schedule` queued.
    pub fn new(p: Params) -> World {
        crate::keep_freed_memory();
        let opts = match p.mode {
            DcsMode::Etcd => StoreOptions::etcd_like(),
            DcsMode::Dynamo => StoreOptions::dynamo_like(),
        };
        // The cores never read the events; the store keeps them (bounded) all the same.
        let opts = StoreOptions { events_in_reads: false, ..opts };
        let mut rng = Rng::stream(p.seed, "runtime");
        let nodes = (0..p.nodes)
            .map(|i| {
                let name = format!("{}{}", p.name_prefix, i + 1);
                let mut cfg = Config::new(name.clone());
                cfg.api_url = format!("http://{name}:8008");
                cfg.pg_url = format!("host={name}");
                cfg.defaults = p.settings.clone();
                cfg.safety = p.safety.clone();
                // A deployment without the guard process does not require it (hashell's
                // `guard.required`): the core then arms nothing it cannot hand over.
                cfg.require_guard = p.guard;
                cfg.tags = p.tags.get(i).cloned().unwrap_or_default();
                cfg.permanent_slots = p.permanent_slots.clone();
                let drift = p.drift_ppm.get(i).copied().unwrap_or(0);
                Node {
                    name,
                    cfg,
                    mem: Memory::default(),
                    status: NodeStatus::default(),
                    pg: SimPg::default(),
                    clock: Clock::new(rng.range(0, 10_000_000), drift),
                    up: true,
                    paused: false,
                    steps: 0,
                    requests: LocalRequests::default(),
                    restart_until: None,
                    outcomes: Vec::new(),
                    guard: None,
                    phase: Phase::Idle,
                    wake_gen: 0,
                    wake_at: None,
                    wake_soon: false,
                    urgent: false,
                    quick_steps: 0,
                    moved: false,
                    in_flux: false,
                    last_peer_wake: None,
                    reads: 0,
                    writes: 0,
                    second: (0, 0, 0),
                    fresh: true,
                    failed: Vec::new(),
                    reinit: false,
                    copied_in: None,
                    acquiring: None,
                    next_wake: 0,
                    machine: 0,
                    daemon: 0,
                    ops: BTreeMap::new(),
                    op_seq: 0,
                    slowed: BTreeMap::new(),
                    held: Vec::new(),
                    epoch: 0,
                    receipts: VecDeque::new(),
                    catchup_until: 0,
                    repl_delay: rng.range(p.replication_delay.0, p.replication_delay.1),
                    replay_delay: rng.range(p.replay_delay.0, p.replay_delay.1),
                    slow: 1,
                    fail_pg: 0,
                    fail_next: 0,
                    start_broken: false,
                    stale_view: None,
                    unresponsive_seen: None,
                    rejected_told: None,
                    config_checked: None,
                    status_written: None,
                    restarted_from_copy: false,
                    shown: Shown::Stopped,
                    in_flight: 0,
                    kept_alive_at: 0,
                    background: Vec::new(),
                    background_reqs: BTreeMap::new(),
                }
            })
            .collect();
        let n = p.nodes;
        let keep = p.keep_trace;
        let faults = p.schedule.faults.clone();
        let mut w = World {
            store: MemStore::new(opts),
            store_clock: Clock::new(rng.range(0, 10_000_000), 0),
            store_down: 0,
            store_refuses: false,
            nodes,
            links: Links { dcs_out: vec![0; n], dcs_in: vec![0; n], peer: vec![vec![0; n]; n] },
            queue: BinaryHeap::new(),
            starts: Vec::new(),
            seq: 0,
            reqs: BTreeMap::new(),
            next_req: 1,
            rng,
            next_write: 1,
            pending_writes: vec![VecDeque::new(); n],
            acked: Vec::new(),
            acked_total: 0,
            writes_uncounted: (0, 0),
            acks_per_second: Vec::new(),
            next_write_at: 0,
            check: Checker::new(&p),
            trace: Trace::new(keep),
            timeline: Vec::new(),
            fault_log: Vec::new(),
            fault_targets: vec![Vec::new(); faults.len()],
            faults,
            expire_at: None,
            last_primary: None,
            upstream: p.settings.standby_cluster.as_ref().map(|_| {
                let mut pg = SimPg {
                    system_id: Some(999),
                    timeline: 1,
                    running: true,
                    role: Some(Role::Primary),
                    ..SimPg::default()
                };
                pg.append(None, 0);
                Upstream { pg, up: true }
            }),
            standby_active: p.settings.standby_cluster.is_some(),
            sync_member_flagged: false,
            sync_key_passed: Vec::new(),
            sync_names: None,
            sync_key_scratch: Vec::new(),
            transferred: None,
            term_origin: BTreeMap::new(),
            unsure_acquires: Vec::new(),
            ttl_max: 0,
            good_config: None,
            good_history: None,
            request_at: None,
            healed: false,
            promotion_checked: false,
            next_upstream_write: UPSTREAM_WRITES,
            now: 0,
            p,
        };
        for i in 0..n {
            w.schedule_wake(i, i as Millis);
        }
        w.push(0, Ev::Tick);
        for k in 0..w.faults.len() {
            w.seq += 1;
            w.starts.push(Queued { at: w.faults[k].at, seq: w.seq, ev: Ev::FaultStart(k) });
        }
        w.starts.sort_unstable_by(|a, b| b.cmp(a));
        w
    }

    fn push(&mut self, at: Millis, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Queued { at: at.max(self.now), seq: self.seq, ev }));
    }

    /// The next event due by `until`, taken off its queue.
    fn next_due(&mut self, until: Millis) -> Option<Queued> {
        let queued = self.queue.peek().map(|Reverse(q)| q);
        let start = self.starts.last().filter(|s| queued.is_none_or(|q| *s < q));
        if start.or(queued)?.at > until {
            return None;
        }
        match start {
            Some(_) => self.starts.pop(),
            None => self.queue.pop().map(|Reverse(q)| q),
        }
    }

    /// Adds the client writes acknowledged, and those whose outcome is unknown, since the
    /// last call to the coverage counters `writes_acked` and `writes_unknown`.
    pub fn count_writes(&mut self) {
        let (acked, unknown) = std::mem::take(&mut self.writes_uncounted);
        self.check.add("writes_acked", acked);
        self.check.add("writes_unknown", unknown);
    }

    /// Index of a node by name.
    pub fn index(&self, name: &str) -> Option<usize> {
        // A one-digit number (every cluster the swarm draws) is read byte by byte, without
        // the general parse: the per-event checks look names up half a million times a run.
        let (bytes, prefix) = (name.as_bytes(), self.p.name_prefix.as_bytes());
        let n = match bytes.split_last() {
            Some((&d @ b'1'..=b'9', head))
                if head.len() == prefix.len() && head.iter().zip(prefix).all(|(a, b)| a == b) =>
            {
                usize::from(d - b'0')
            }
            _ => name.strip_prefix(self.p.name_prefix.as_str())?.parse::<usize>().ok()?,
        };
        (n >= 1 && n <= self.nodes.len()).then(|| n - 1)
    }

    /// Whether node `i`'s PostgreSQL accepts writes now.
    pub fn is_writable(&self, i: usize) -> bool {
        self.nodes[i].up && self.nodes[i].pg.writable()
    }

    /// Nodes whose PostgreSQL accepts writes now.
    pub fn writable(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.is_writable(i)).collect()
    }

    /// The node the store names leader, if any.
    pub fn leader(&self) -> Option<usize> {
        self.store.leader().and_then(|l| self.index(&l.value.holder))
    }

    /// A fresh read of the store (as an operator would see it).
    pub fn view(&mut self) -> ClusterView {
        let t = self.store_clock.local(self.now);
        self.store.read(t, t)
    }

    fn store_now(&self) -> Millis {
        self.store_clock.local(self.now)
    }

    /// One writable primary, and every running machine streaming from it. In a standby
    /// cluster: nobody writable, the leader streaming from the upstream, every other
    /// running machine streaming from the leader.
    pub fn converged(&self) -> bool {
        if self.standby_active {
            return self.standby_converged();
        }
        let w = self.writable();
        if w.len() != 1 {
            return false;
        }
        let primary = &self.nodes[w[0]].name;
        self.nodes.iter().enumerate().all(|(i, n)| {
            i == w[0] || !n.up || (n.pg.running && n.pg.streaming && n.pg.upstream.as_ref() == Some(primary))
        }) && self.members_visible()
            && self.slots_in_place(w[0])
            && self.sync_in_place(w[0])
    }

    /// In synchronous mode, the leader has published as many synchronous standbys as the
    /// settings ask for (or as there are streaming standbys allowed to be one: not tagged
    /// `nosync`, and able to lead, since a synchronous standby is a failover target), in its own
    /// term, and PostgreSQL waits for exactly those: a set that never grows leaves nobody
    /// to fail over to (and, strict, every commit waiting), one that never shrinks waits
    /// for a standby that is gone.
    fn sync_in_place(&self, leader: usize) -> bool {
        let s = &self.p.settings;
        if !s.synchronous_mode.enabled() {
            return true;
        }
        let l = &self.nodes[leader];
        let eligible: Vec<&str> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|&(i, n)| {
                i != leader && n.up && n.pg.running && n.pg.streaming && n.pg.upstream_idx == Some(leader)
            })
            .filter(|(_, n)| !n.cfg.tags.nosync && n.cfg.tags.can_lead())
            .map(|(_, n)| n.name.as_str())
            .collect();
        let want = eligible.len().min(s.synchronous_node_count as usize);
        let Some(rec) = self.store.sync() else { return false };
        let named = l.pg.sync_standbys.names();
        rec.leader == l.name
            && rec.term == l.status.term
            && rec.members.len() == want
            && rec.members.iter().all(|m| eligible.contains(&m.as_str()))
            && named.len() == rec.members.len()
            && named.iter().all(|n| rec.members.contains(n))
    }

    /// The leader keeps a replication slot for every other running machine (so none loses
    /// WAL it has not received) and every permanent slot.
    fn slots_in_place(&self, leader: usize) -> bool {
        let slots = &self.nodes[leader].pg.slots;
        let has = |name: &str| slots.iter().any(|s| s == name);
        self.nodes.iter().enumerate().all(|(i, n)| i == leader || !n.up || has(&hacore::slot_name(&n.name)))
            && self.p.permanent_slots.iter().all(|s| has(s))
    }

    /// Every running machine keeps its member record in the store (kept alive within a
    /// ttl): a healthy node that vanishes from the store is invisible to operators, load
    /// balancers and elections.
    fn members_visible(&self) -> bool {
        self.nodes.iter().all(|n| self.member_visible(n))
    }

    fn member_visible(&self, n: &Node) -> bool {
        let st = &n.status;
        let reason = (st.reason != hacore::Reason::Starting).then_some(st.reason);
        let true_to_the_node = |m: &hacore::dcs::MemberRecord| {
            m.role == st.role
                && m.running == n.pg.running
                && m.timeline == st.position.timeline
                && m.applied_config == st.applied_config
                && m.reason == reason
                && m.leader_term.is_some() == st.role.leads()
        };
        !n.up
            || (self.store.member(&n.name).is_some_and(|m| true_to_the_node(&m.value))
                && self.now.saturating_sub(n.kept_alive_at) <= self.p.settings.ttl)
    }

    /// The running machines whose member record is missing from the store, shows another
    /// role, timeline, reason, applied config or running state than the node's own, or was
    /// last kept alive more than a ttl ago.
    pub fn invisible_members(&self) -> Vec<&str> {
        self.nodes.iter().filter(|n| !self.member_visible(n)).map(|n| n.name.as_str()).collect()
    }

    /// Node `l` runs as a standby cluster's leader: a standby of the cluster's upstream,
    /// streaming from it unless it is down.
    pub fn standby_leads(&self, l: usize) -> bool {
        let leader = &self.nodes[l];
        let upstream_up = self.upstream.as_ref().is_some_and(|u| u.up);
        leader.up
            && leader.pg.running
            && leader.pg.role == Some(Role::Standby)
            && leader.pg.upstream.as_deref() == Some(hacore::UPSTREAM)
            && (leader.pg.streaming || !upstream_up)
    }

    fn standby_converged(&self) -> bool {
        let Some(l) = self.leader() else { return false };
        let leader = &self.nodes[l];
        self.standby_leads(l)
            && self.slots_in_place(l)
            && self.writable().is_empty()
            && self.nodes.iter().enumerate().all(|(i, n)| {
                i == l || !n.up || (n.pg.running && n.pg.streaming && n.pg.upstream.as_ref() == Some(&leader.name))
            })
            && self.members_visible()
    }

    // ----- driving ----------------------------------------------------------------------

    /// Runs until virtual time `until`.
    pub fn run_until(&mut self, until: Millis) {
        while let Some(q) = self.next_due(until) {
            self.now = q.at;
            self.handle(q.ev);
            self.after_event();
        }
        self.now = self.now.max(until);
    }

    /// How much longer than L1's bound the cluster may take after the heal because the store
    /// holds an undecodable leader key: the members replace it once it has aged the longest
    /// ttl they saw (the longest the settings had, rounded up to a second), and only then
    /// elect.
    pub fn corrupt_leader_wait(&mut self) -> Millis {
        let ttl = self.ttl_max.max(self.p.settings.ttl);
        match self.view().corrupt_key(&hacore::dcs::Key::Leader) {
            Some(_) => ttl.div_ceil(1_000) * 1_000,
            None => 0,
        }
    }

    /// Runs for `ms` more.
    pub fn run_for(&mut self, ms: Millis) {
        self.run_until(self.now + ms);
    }

    /// Runs until `cond` holds (checked after each event) or `max` more ms pass; returns
    /// how long it took.
    pub fn run_until_cond(&mut self, max: Millis, mut cond: impl FnMut(&World) -> bool) -> Option<Millis> {
        let start = self.now;
        let end = start + max;
        if cond(self) {
            return Some(0);
        }
        while let Some(q) = self.next_due(end) {
            self.now = q.at;
            self.handle(q.ev);
            self.after_event();
            if cond(self) {
                return Some(self.now - start);
            }
        }
        self.now = self.now.max(end);
        None
    }

    /// The guard kills node `i`'s whole PostgreSQL instance.
    fn guard_kills(&mut self, i: usize) {
        // A2, the guard kills only what its daemon no longer keeps writable: a daemon that
        // runs (not frozen, between batches) and still counts PostgreSQL writable for a
        // while left the guard on an older deadline. A daemon that is fencing (an immediate
        // stop in flight) no longer keeps it writable, whatever its lease says.
        let n = &self.nodes[i];
        let local = n.local(self.now);
        let idle = matches!(n.phase, Phase::Idle);
        let fencing = n.mem.pending.is_some_and(|p| p.kind == hacore::memory::PgOpKind::StopImmediate);
        if let Some(until) = n.status.writable_until.filter(|&u| idle && !n.paused && !fencing && u > local + 1) {
            let msg = format!(
                "A2: the guard kills {}'s PostgreSQL while its daemon keeps it writable for {} ms more",
                n.name,
                until - local
            );
            self.violation(msg);
        }
        let n = &mut self.nodes[i];
        n.pg.running = false;
        n.pg.streaming = false;
        n.pg.hung = false;
        let name = n.name.clone();
        self.check.count("guard_fired");
        self.check.count("primary_fenced");
        self.trace.event(self.now, "guard_fired", &[("node", &name)]);
    }

    fn after_event(&mut self) {
        // A guard whose deadline has passed kills any primary instance that is (or comes
        // back) up, a late start included, until it is re-armed.
        for i in 0..self.nodes.len() {
            let n = &self.nodes[i];
            if let Some((deadline, _)) = n.guard {
                if n.up && n.pg.running && n.pg.role == Some(Role::Primary) && n.local(self.now) >= deadline {
                    self.guard_kills(i);
                }
            }
        }
        for i in 0..self.nodes.len() {
            let shown = if !self.nodes[i].up {
                Shown::Down
            } else if self.is_writable(i) {
                Shown::Primary
            } else if self.nodes[i].pg.running {
                Shown::Replica
            } else {
                Shown::Stopped
            };
            if shown != self.nodes[i].shown {
                self.nodes[i].shown = shown;
                self.timeline.push((self.now, i, shown));
                if shown == Shown::Primary {
                    self.became_writable(i);
                }
            }
        }
        let mut first = None;
        let mut count = 0;
        for i in 0..self.nodes.len() {
            if self.nodes[i].shown == Shown::Primary {
                count += 1;
                first.get_or_insert(i);
            }
        }
        if count > 1 {
            let names: Vec<String> = self.writable().iter().map(|&i| self.nodes[i].name.clone()).collect();
            self.violation(format!("S1: {} accept writes at the same time", names.join(" and ")));
        }
        if count > 0 && self.standby_active {
            let names: Vec<String> = self.writable().iter().map(|&i| self.nodes[i].name.clone()).collect();
            self.violation(format!("S1: {} accepts writes in a standby cluster", names.join(" and ")));
        }
        if let Some(i) = first {
            self.last_primary = Some((i, self.nodes[i].epoch));
        }
        self.check_sync_members();
    }

    /// S2 at every instant: any member of the published synchronous set may be promoted
    /// next, so each must hold every acknowledged write, not only the one that happens to
    /// be promoted at a failover. A stint's writes lie on one WAL, so holding its last one
    /// (same chain) is holding them all.
    /// Whether `i` leads under the term a switchover's transfer handed it.
    fn took_over_by_transfer(&self, i: usize) -> bool {
        let (Some((j, term)), Some(l)) = (self.transferred, self.store.leader()) else { return false };
        j == i && l.value.term == term && l.value.holder == self.nodes[i].name
    }

    fn check_sync_members(&mut self) {
        if self.sync_member_flagged || self.standby_active || !self.p.settings.synchronous_mode.enabled() {
            return;
        }
        let Some(sync) = self.store.sync() else { return };
        // What the answer depends on: the acknowledged writes (they only grow, and the
        // compaction drops only writes every node holds), the published set, and each
        // member's data and WAL, whose length and last chain identify its whole content.
        // Unchanged since a check that passed, it passes again: most events touch none of
        // them, and the check walks every stint for every member.
        if !self.sync_names.as_ref().is_some_and(|(names, _)| std::sync::Arc::ptr_eq(names, &sync.members)) {
            let indexes = sync.members.iter().map(|name| self.index(name)).collect();
            self.sync_names = Some((sync.members.clone(), indexes));
        }
        let Some((names, indexes)) = &self.sync_names else { return };
        let mut key = std::mem::take(&mut self.sync_key_scratch);
        key.clear();
        key.push((u64::MAX, self.acked_total, self.acked.len() as u64, None));
        for &index in indexes {
            match index {
                Some(i) => {
                    let pg = &self.nodes[i].pg;
                    let chain = pg.wal.last().map_or(0, |r| r.chain);
                    key.push((i as u64, pg.wal.len() as u64, chain, pg.system_id));
                }
                None => key.push((u64::MAX - 1, 0, 0, None)),
            }
        }
        if key == self.sync_key_passed {
            self.sync_key_scratch = key;
            return;
        }
        let lacking = names.iter().zip(indexes).find_map(|(name, &index)| {
            let n = &self.nodes[index?];
            // A member without data of this cluster (none, or another's) holds no writes
            // to lose: it is not a candidate (what S3 and S4 check).
            n.pg.system_id.filter(|&s| s != FOREIGN_SYSTEM_ID)?;
            let wal = &n.pg.wal;
            let held = |a: &Acked| wal.get((a.lsn.0 / RECORD) as usize - 1).is_some_and(|r| r.chain == a.chain);
            let last = self.acked.iter().filter_map(|st| st.writes.last()).find(|a| !held(a))?;
            Some((name.clone(), last.lsn))
        });
        self.sync_key_scratch = std::mem::replace(&mut self.sync_key_passed, key);
        if let Some((name, lsn)) = lacking {
            self.sync_key_passed.clear();
            self.sync_member_flagged = true;
            self.violation(format!(
                "S2: {name}, a published synchronous standby, lacks acknowledged writes (up to {lsn})"
            ));
        }
    }

    /// Records a violation (the first ones are kept) and traces it.
    pub fn violation(&mut self, what: String) {
        if self.check.violation(self.now, what.clone()) {
            self.trace.event(self.now, "violation", &[("what", &what)]);
        }
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Wake { node, gen } => {
                if self.nodes[node].wake_gen == gen {
                    self.nodes[node].wake_at = None;
                    if self.daemon_blocked(node, Ev::Wake { node, gen }) {
                        return;
                    }
                    self.begin_loop(node);
                }
            }
            Ev::Arrive { req } => self.arrive(req),
            Ev::ReadTail { req } => self.read_tail(req),
            Ev::Reply { req } => {
                let result = self.reqs.get_mut(&req).and_then(|r| r.result.take());
                self.reply(req, result)
            }
            Ev::Timeout { req } => self.reply(req, None),
            Ev::OpDone { node, seq, machine } => self.op_done(node, seq, machine),
            Ev::Guard { node, deadline, machine } => self.guard_fires(node, deadline, machine),
            Ev::Tick => {
                self.tick();
                self.push(self.now + self.p.tick, Ev::Tick);
            }
            Ev::Expire => {
                self.expire_at = None;
                // A store that is down expires nothing; when it recovers it extends every
                // lease (and reschedules expiry).
                if self.store_down == 0 {
                    self.store_changed_by(|s, t| s.expire(t));
                    self.schedule_expiry();
                }
            }
            Ev::FaultStart(k) => self.fault_start(k),
            Ev::FaultEnd(k) => self.fault_end(k),
        }
    }

    /// The daemon of `node` cannot handle `ev` now (paused or down): hold or drop it.
    fn daemon_blocked(&mut self, node: usize, ev: Ev) -> bool {
        if !self.nodes[node].up {
            return true;
        }
        if self.nodes[node].paused {
            self.nodes[node].held.push(ev);
            return true;
        }
        false
    }

    fn schedule_wake(&mut self, i: usize, at: Millis) {
        let n = &mut self.nodes[i];
        if n.wake_at.is_some_and(|w| w <= at) {
            return;
        }
        n.wake_gen += 1;
        n.wake_at = Some(at);
        let gen = n.wake_gen;
        self.push(at, Ev::Wake { node: i, gen });
    }

    /// Wakes a node soon (a watch event, an outcome): now if idle, after its loop if busy.
    fn nudge(&mut self, i: usize, delay: Millis) {
        if !self.nodes[i].up {
            return;
        }
        match self.nodes[i].phase {
            Phase::Idle => self.schedule_wake(i, self.now + delay),
            _ => self.nodes[i].wake_soon = true,
        }
    }

    fn latency(&mut self) -> Millis {
        let (lo, hi) = self.p.dcs_latency;
        self.rng.range(lo, hi)
    }

    // ----- the store ----------------------------------------------------------------------

    fn store_changed_by<R>(&mut self, f: impl FnOnce(&mut MemStore, Millis) -> R) -> R {
        let before = self.store.wake_revision();
        let t = self.store_now();
        let r = f(&mut self.store, t);
        if self.store.wake_revision() != before && self.p.mode == DcsMode::Etcd {
            // Watch: every node that can hear the store wakes up.
            for i in 0..self.nodes.len() {
                if self.links.dcs_in[i] == 0 && self.store_down == 0 {
                    let d = self.latency();
                    self.nudge(i, d);
                }
            }
        }
        r
    }

    fn schedule_expiry(&mut self) {
        if let Some(at_store) = self.store.next_expiry() {
            let at = self.store_clock.global(at_store);
            if self.expire_at.is_none_or(|e| at < e) {
                self.expire_at = Some(at);
                self.push(at, Ev::Expire);
            }
        }
    }

    fn send(&mut self, node: usize, op: Option<DcsOp>) -> u64 {
        let op_is_read = op.is_none();
        self.count_request(node, op_is_read);
        let id = self.next_req;
        self.next_req += 1;
        let transfer_to = match &op {
            Some(DcsOp::TransferLeader { to, .. }) => {
                self.index(&to.holder).map(|j| (j, self.nodes[j].machine, self.nodes[j].pg.system_id))
            }
            _ => None,
        };
        let n = &self.nodes[node];
        let sent_local = n.local(self.now);
        let mut give_up_local = sent_local + self.p.settings.retry_timeout;
        // As hashell bounds a store call (`io_limit`): while PostgreSQL may be writable, it
        // ends IO_SLACK before the deadline (the step that re-arms the guard with a
        // failsafe extension, or fences, must come first), never below 50 ms. A daemon
        // that just started counts on the guard's deadline alone, and on none without it.
        let until = if n.fresh {
            Some(n.guard.map(|g| g.0).filter(|&d| self.p.guard && d > sent_local).unwrap_or(sent_local))
        } else {
            n.status.writable_until
        };
        if let Some(until) = until {
            let room = until.saturating_sub(sent_local).saturating_sub(IO_SLACK);
            give_up_local = sent_local + self.p.settings.retry_timeout.min(room).max(50);
        }
        let (machine, daemon) = (n.machine, n.daemon);
        let req =
            Req { node, op, result: None, sent_local, give_up_local, machine, daemon, first_half: None, transfer_to };
        self.reqs.insert(id, Box::new(req));
        let give_up = self.nodes[node].clock.global(give_up_local).max(self.now + 1);
        if op_is_read && self.nodes[node].stale_view.is_some() {
            // A stale cache (a proxy, a non-quorum read) answers whatever the links say.
            let d = self.latency();
            let view = self.nodes[node].stale_view.clone().map(Box::new);
            if let (Some(r), Some(v)) = (self.reqs.get_mut(&id), view) {
                r.result = Some(Ok(Reply::View(v)));
            }
            self.push(self.now + d, Ev::Reply { req: id });
        } else if self.store_down > 0 && self.store_refuses {
            let d = self.rng.range(1, 5);
            if let Some(r) = self.reqs.get_mut(&id) {
                r.result = Some(Err(DcsError::Unavailable("connection refused".into())));
            }
            self.push(self.now + d, Ev::Reply { req: id });
        } else if self.store_down > 0 || self.links.dcs_out[node] > 0 {
            self.push(give_up, Ev::Timeout { req: id });
        } else {
            let d = self.latency();
            self.push(self.now + d, Ev::Arrive { req: id });
            if give_up_local < sent_local + self.p.settings.retry_timeout {
                // Bounded by the writable deadline: the reply may come too late.
                self.push(give_up, Ev::Timeout { req: id });
            }
        }
        id
    }

    fn arrive(&mut self, id: u64) {
        let Some(req) = self.reqs.get(&id) else { return };
        let node = req.node;
        if self.store_down > 0 {
            let give_up = self.nodes[node].clock.global(req.give_up_local).max(self.now);
            self.push(give_up, Ev::Timeout { req: id });
            return;
        }
        let result = match req.op.clone() {
            None => {
                if let Some(stale) = self.nodes[node].stale_view.clone() {
                    Ok(Reply::View(Box::new(stale)))
                } else {
                    let t = self.store_now();
                    let view = self.store.read(t, 0);
                    if self.p.mode == DcsMode::Dynamo {
                        // A Query is not a snapshot: the second half of the items is read later.
                        if let Some(r) = self.reqs.get_mut(&id) {
                            r.first_half = Some(view);
                        }
                        let d = self.rng.range(1, 20);
                        self.push(self.now + d, Ev::ReadTail { req: id });
                        return;
                    }
                    Ok(Reply::View(Box::new(view)))
                }
            }
            Some(op) => {
                let name = self.nodes[node].name.clone();
                let (sent, sender, transfer_to) = (req.sent_local, (req.machine, req.daemon), req.transfer_to);
                self.check_store_op(node, &op);
                let before_history = match &op {
                    DcsOp::LeaderWrite { writes, .. } if writes.iter().any(|w| w.key == hacore::dcs::Key::History) => {
                        self.store.history().cloned()
                    }
                    _ => None,
                };
                let request = match &op {
                    DcsOp::TransferLeader { .. } => self.store.switchover().map(|(v, r)| (v, r.clone())),
                    _ => None,
                };
                let r = self.store_changed_by(|s, t| s.apply(&name, &op, t, sent));
                self.schedule_expiry();
                let keeps_alive = matches!(
                    &op,
                    DcsOp::KeepAlive { .. }
                        | DcsOp::PublishMember(_)
                        | DcsOp::RenewLeader { .. }
                        | DcsOp::AcquireLeader(_)
                );
                if keeps_alive && r.is_ok() {
                    self.nodes[node].kept_alive_at = self.now;
                }
                // A new reign begins when the store applies it: check who takes it then.
                let new_term = matches!(&op, DcsOp::AcquireLeader(a) if a.record.term > a.term_was);
                if new_term && r.is_ok() {
                    let same_machine = sender.0 == self.nodes[node].machine;
                    self.check_stale_acquire(node, same_machine);
                    if let (DcsOp::AcquireLeader(a), Some((term, cause))) = (&op, self.nodes[node].acquiring) {
                        // Only the daemon that sent it can know how it came to lead (a
                        // request on the wire when its machine crashed still applies).
                        if a.record.term == term && sender == (self.nodes[node].machine, self.nodes[node].daemon) {
                            self.note_term_origin(term, node, cause);
                        }
                    }
                }
                if let (DcsOp::TransferLeader { to, clear_switchover, .. }, Ok(_)) = (&op, &r) {
                    self.transferred = self.index(&to.holder).map(|j| (j, to.term));
                    if let Some(j) = self.index(&to.holder) {
                        self.note_term_origin(to.term, j, hacore::ForkCause::Switchover);
                    }
                    let served = request.filter(|(v, _)| Some(*v) == *clear_switchover).map(|(_, r)| r);
                    self.check_transfer(node, &to.holder, served, transfer_to);
                }
                if let (DcsOp::LeaderWrite { writes, .. }, Ok(_)) = (&op, &r) {
                    for w in writes {
                        if let Some(Value::History(h)) = &w.value {
                            self.check_fork_causes(node, h, &before_history);
                        }
                    }
                }
                r.map(Reply::Op)
            }
        };
        self.respond(id, node, result);
    }

    fn read_tail(&mut self, id: u64) {
        let Some(req) = self.reqs.get_mut(&id) else { return };
        let Some(mut view) = req.first_half.take() else { return };
        let node = req.node;
        let t = self.store_now();
        let later = self.store.read(t, 0);
        // Members and the sync/status keys come from the later read.
        view.members = later.members;
        view.sync = later.sync;
        view.status = later.status;
        view.failsafe = later.failsafe;
        self.respond(id, node, Ok(Reply::View(Box::new(view))));
    }

    fn respond(&mut self, id: u64, node: usize, result: Result<Reply, DcsError>) {
        let lost = self.links.dcs_in[node] > 0 || (self.p.p_reply_lost > 0.0 && self.rng.chance(self.p.p_reply_lost));
        if lost {
            let is_write = self.reqs.get(&id).is_some_and(|r| r.op.is_some());
            if is_write && result.is_ok() {
                self.check.count("dcs_write_outcome_unknown");
            }
            // The client gives up at its timeout, counted from the send.
            let give_up_local = self.reqs.get(&id).map_or(0, |r| r.give_up_local);
            let give_up = self.nodes[node].clock.global(give_up_local);
            self.push(give_up.max(self.now), Ev::Timeout { req: id });
        } else {
            let d = self.latency();
            if let Some(r) = self.reqs.get_mut(&id) {
                r.result = Some(result);
            }
            self.push(self.now + d, Ev::Reply { req: id });
        }
    }

    fn reply(&mut self, id: u64, result: Option<Result<Reply, DcsError>>) {
        let Some(req) = self.reqs.get(&id) else { return };
        let node = req.node;
        if req.machine != self.nodes[node].machine || req.daemon != self.nodes[node].daemon {
            self.reqs.remove(&id);
            return;
        }
        let ev = match result {
            Some(r) => {
                // Park the result again while the daemon cannot take it.
                if let Some(q) = self.reqs.get_mut(&id) {
                    q.result = Some(r);
                }
                Ev::Reply { req: id }
            }
            None => Ev::Timeout { req: id },
        };
        if self.daemon_blocked(node, ev) {
            return;
        }
        let result = match self.reqs.get_mut(&id) {
            Some(q) => q.result.take(),
            None => return,
        };
        let Some(req) = self.reqs.remove(&id) else { return };
        if let Some(op_id) = self.nodes[node].background_reqs.remove(&id) {
            let outcome = match result {
                Some(Ok(Reply::Op(DcsReply::Lease(g)))) => Ok(Done::Lease(g)),
                Some(Ok(_)) => Ok(Done::Ok),
                Some(Err(e)) => Err(Failure::from(&e)),
                None => Err(Failure::Indeterminate),
            };
            self.nodes[node].outcomes.push(Outcome { id: op_id, result: outcome });
            return;
        }
        let result = match result {
            Some(r) => r,
            None => Err(if req.op.is_some() {
                DcsError::Indeterminate("timed out waiting for the store".into())
            } else {
                DcsError::Unavailable("timed out waiting for the store".into())
            }),
        };
        let req_op = req.op;
        match std::mem::replace(&mut self.nodes[node].phase, Phase::Idle) {
            Phase::Reading { req } if req == id => {
                let view = match result {
                    Ok(Reply::View(mut v)) => {
                        v.received_at = self.nodes[node].local(self.now);
                        Ok(*v)
                    }
                    Ok(Reply::Op(_)) => Err(DcsError::Invalid("a read got a write reply".into())),
                    Err(e) => Err(e),
                };
                self.step_node(node, view);
            }
            Phase::Executing { queue, failed, waiting: Some((req, op_id)) } if req == id => {
                let moves = matches!(
                    &req_op,
                    Some(DcsOp::AcquireLeader(_) | DcsOp::TransferLeader { .. } | DcsOp::ReleaseLeader { .. })
                );
                self.nodes[node].moved |= moves && result.is_ok();
                let urgent = matches!(&req_op, Some(DcsOp::LeaderWrite { .. })) || moves;
                self.nodes[node].urgent |= urgent && result.is_ok();
                let (outcome, failed_now) = match result {
                    Ok(Reply::Op(DcsReply::Lease(g))) => (Ok(Done::Lease(g)), false),
                    Ok(Reply::Op(DcsReply::Done)) => (Ok(Done::Ok), false),
                    Ok(Reply::View(_)) => (Err(Failure::Failed), true),
                    Err(e) => {
                        if e.maybe_applied() {
                            self.check.count("dcs_indeterminate");
                        }
                        (Err(Failure::from(&e)), true)
                    }
                };
                if self.trace.keeps() {
                    let name = self.nodes[node].name.clone();
                    let what = format!("#{} {outcome:?}", op_id.0);
                    self.trace.note(self.now, "outcome", &[("node", &name), ("outcome", &what)]);
                }
                self.nodes[node].outcomes.push(Outcome { id: op_id, result: outcome });
                self.nodes[node].phase = Phase::Executing { queue, failed: failed || failed_now, waiting: None };
                self.advance(node);
            }
            other => self.nodes[node].phase = other,
        }
    }

    // ----- one node's loop -------------------------------------------------------------

    fn begin_loop(&mut self, i: usize) {
        if !matches!(self.nodes[i].phase, Phase::Idle) {
            self.nodes[i].wake_soon = true;
            return;
        }
        let req = self.send(i, None);
        self.nodes[i].phase = Phase::Reading { req };
    }

    fn standbys_of(&self, i: usize) -> Vec<StandbyState> {
        let me = self.nodes[i].name.as_str();
        self.nodes
            .iter()
            .filter(|s| s.up && s.pg.running && s.pg.streaming && s.pg.upstream.as_deref() == Some(me))
            .map(|s| StandbyState {
                name: s.name.clone(),
                flush_lsn: s.pg.end(),
                streaming: self.now >= s.catchup_until,
            })
            .collect()
    }

    /// R7, no node hammers the store: at most 25 reads and 50 writes in any second of
    /// simulated time at a busy wait of 100 ms (a loop in flux reads once a busy wait, a
    /// tenth of `loop_wait` capped at 100 ms), in proportion at a shorter one (a store
    /// that keeps refusing, or a cache that keeps showing what was refused, must not turn
    /// that into a busy loop).
    fn count_request(&mut self, node: usize, read: bool) {
        let sec = self.now / 1_000;
        let n = &mut self.nodes[node];
        let loop_wait = in_force(&n.cfg, &n.mem).loop_wait;
        let scale = (100 / (loop_wait / 10).clamp(10, 100).min(loop_wait).max(1)) as u32;
        if n.second.0 != sec {
            n.second = (sec, 0, 0);
        }
        if read {
            n.reads += 1;
            n.second.1 += 1;
        } else {
            n.writes += 1;
            n.second.2 += 1;
        }
        let (reads, writes) = (n.second.1, n.second.2);
        if (read && reads == 25 * scale + 1) || (!read && writes == 50 * scale + 1) {
            let msg = format!("R7: {} sends {reads} reads and {writes} writes to the store within one second", n.name);
            self.violation(msg);
        }
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        self.nodes[b].up && !self.nodes[b].paused && self.links.peer[a][b] == 0 && self.links.peer[b][a] == 0
    }

    fn step_node(&mut self, i: usize, dcs: Result<ClusterView, DcsError>) {
        let peers: Vec<PeerReport> = (0..self.nodes.len())
            .filter(|&j| j != i)
            .map(|j| {
                let p = &self.nodes[j];
                let status = self.reachable(i, j).then(|| {
                    // As the shell answers `GET /peer`: the last step's status, with a
                    // standby's WAL position read live from PostgreSQL.
                    let mut st = p.status.peer_view(p.pg.running);
                    if p.pg.running && !p.pg.hung && st.role == MemberRole::Replica {
                        st.position.lsn = st.position.lsn.max(p.pg.end());
                    }
                    st
                });
                PeerReport { name: p.name.clone(), status }
            })
            .collect();
        let standbys = self.standbys_of(i);
        let now_local = self.nodes[i].local(self.now);
        // As the shell does: the request read is due once its wall-clock time has come.
        let scheduled = dcs.as_ref().ok().and_then(|v| v.switchover.as_ref()).and_then(|s| s.value.at_wall_ms);
        let switchover_due = scheduled.is_some_and(|at| at <= self.now);
        let n = &mut self.nodes[i];
        let mut pg = n.pg.observe(standbys);
        pg.replay_lsn = Lsn(n.pg.replayed as u64 * RECORD);
        if pg.running && !pg.responsive {
            n.unresponsive_seen.get_or_insert(now_local);
        } else {
            n.unresponsive_seen = None;
        }
        let obs = Observation {
            pg,
            dcs,
            peers,
            outcomes: std::mem::take(&mut n.outcomes),
            // The guard runs with the machine; before its first deadline it holds none.
            guard: match n.guard {
                _ if !self.p.guard => GuardState::Disabled,
                Some((deadline, term)) => GuardState::Armed { deadline, term },
                None => GuardState::Armed { deadline: 0, term: Term(0) },
            },
            requests: LocalRequests {
                restart: n.restart_until.is_some_and(|until| self.now < until),
                switchover_due,
                reinitialize: n.reinit || std::mem::take(&mut n.requests).reinitialize,
            },
            wall_time_ms: self.now,
        };
        n.in_flux = obs.dcs.as_ref().is_ok_and(|v| {
            v.leader.is_none()
                || v.switchover.is_some()
                || v.members.iter().any(|m| matches!(m.value.role, MemberRole::Candidate | MemberRole::Fencing))
        });
        let d = step(&n.cfg, &n.mem, &obs, now_local);
        n.fresh = false;
        // The request holds until the clone starts; a node that leads now never runs it.
        let cloning = d.actions.iter().any(|a| matches!(a, Action::Clone { .. }));
        if n.reinit && cloning {
            self.check.count("reinitialized");
        }
        if cloning || d.status.role == MemberRole::Primary {
            n.reinit = false;
        }
        if let Some(msg) = retried_too_soon(n, &obs, &d, now_local) {
            self.violation(msg);
        }
        let n = &self.nodes[i];
        if let Some(msg) = crate::check::reason_true(&n.name, &n.cfg, &n.mem, &obs, &d, now_local) {
            self.violation(msg);
        }
        let n = &self.nodes[i];
        // R6 for `primary_hung`, against what this daemon has observed (its memory may
        // be younger, never older): no answer for `primary_hang_timeout` of its clock.
        let hang_timeout = in_force(&n.cfg, &d.memory).primary_hang_timeout;
        let hung_for = n.unresponsive_seen.map(|t| now_local.saturating_sub(t));
        if d.status.reason == hacore::Reason::PrimaryHung && hung_for.is_none_or(|t| t < hang_timeout) {
            let msg = format!(
                "R6: {} steps down as hung after {hung_for:?} ms without an answer, primary_hang_timeout is {hang_timeout} ms",
                n.name
            );
            self.violation(msg);
        }
        if let Some(msg) = crate::check::events_recorded(&self.nodes[i].name, &self.nodes[i].mem, &obs, &d) {
            self.violation(msg);
        }
        self.check_config_rejected(i, &obs, &d);
        let n = &mut self.nodes[i];
        if d.memory.restarting && !n.mem.restarting {
            n.restart_until = None;
            self.check.count("restart");
        }
        // S3 where the choice is made: taking a new term in an election (peers still report
        // their positions then), and again at the promotion.
        let new_term = |a: &Action| match (a, &obs.dcs) {
            (Action::Dcs { op: DcsOp::AcquireLeader(acq), .. }, Ok(view)) => {
                acq.record.term > view.term && view.initialize.is_some()
            }
            _ => false,
        };
        if d.actions.iter().any(|a| matches!(a, Action::Promote { .. }) || new_term(a)) {
            self.check_promotion_decision(i, &obs.peers);
        }
        let manual = d.memory.acquired_via == Some(hacore::ForkCause::ManualFailover);
        let acquiring = d.actions.iter().find_map(|a| match (a, &obs.dcs) {
            (Action::Dcs { op: DcsOp::AcquireLeader(acq), .. }, Ok(view)) if new_term(a) => {
                let named =
                    view.switchover.as_ref().is_some_and(|r| r.value.to.as_deref() == Some(&self.nodes[i].name));
                let cause = if named { hacore::ForkCause::ManualFailover } else { hacore::ForkCause::Failover };
                Some((acq.record.term, cause))
            }
            _ => None,
        });
        if acquiring.is_some() {
            self.nodes[i].acquiring = acquiring;
            self.check_manual_request_respected(i, &obs);
        }
        if let Some(op) = self.nodes[i].mem.lease_op.filter(|op| op.kind == hacore::memory::LeaseOpKind::Acquire) {
            let unknown = |o: &Outcome| matches!(o.result, Err(Failure::Indeterminate | Failure::TimedOut));
            if obs.outcomes.iter().any(|o| o.id == op.id && unknown(o)) {
                self.unsure_acquires.push((i, op.term.0));
                if self.unsure_acquires.len() > 64 {
                    self.unsure_acquires.remove(0);
                }
            }
        }
        if d.actions.iter().any(new_term) && !manual {
            let n = &self.nodes[i];
            let mine = (obs.pg.flush_lsn, n.cfg.tags.failover_priority);
            if let Some(msg) = crate::check::election_rank(&n.name, mine, &obs.peers) {
                self.violation(msg);
            }
            if let Some(msg) = crate::check::election_waited(&self.nodes[i].name, &obs, &d, now_local) {
                self.violation(msg);
            }
        }
        if let Some(msg) = crate::check::clone_source(&self.nodes[i].name, &obs, &d.actions) {
            self.violation(msg);
        }
        self.check_needed_rebuild(i, &obs, &d);
        let n = &self.nodes[i];
        let sync = in_force(&n.cfg, &d.memory).synchronous_mode.enabled();
        if let Some(msg) = crate::check::switchover_choice(&n.name, sync, &n.mem, &obs, &d) {
            self.violation(msg);
        }
        let n = &self.nodes[i];
        if let Some(msg) = crate::check::switchover_stop_requested(&n.name, &n.mem, &obs, &d) {
            self.violation(msg);
        }
        self.check_status_record(i, &obs, &d, now_local);
        if let Some(msg) = crate::check::request_cleared(&self.nodes[i].name, &obs, &d) {
            self.violation(msg);
        }
        if let Some(msg) = crate::check::reported_role(&self.nodes[i].name, &obs.pg, &d.status, &d.memory) {
            self.violation(msg);
        }
        if let Some(msg) = crate::check::reported_figures(&self.nodes[i].name, &obs.pg, &d.status) {
            self.violation(msg);
        }
        if let Some(msg) = crate::check::member_rewrite(&self.nodes[i].name, &obs.dcs, &d.actions) {
            self.violation(msg);
        }
        if let Some(msg) = crate::check::sync_setting_rewrite(&self.nodes[i].name, &obs.pg, &d.actions) {
            self.violation(msg);
        }
        if let Some(msg) = crate::check::sync_adds_streaming(&self.nodes[i].name, &obs.pg, &d.actions) {
            self.violation(msg);
        }
        if let Some(msg) = crate::check::sync_published_before_named(&self.nodes[i].name, &obs, &d.actions) {
            self.violation(msg);
        }
        if obs.pg.standbys.iter().any(|s| !s.streaming) {
            self.check.count("standby_in_catchup_seen");
        }
        // R10, renewals are paced: one goes out at least `loop_wait` after the request whose
        // grant the leader holds (the store's load, and the ttl's meaning, rest on it).
        if let Some(l) = d.memory.lease {
            let loop_wait = in_force(&self.nodes[i].cfg, &d.memory).loop_wait;
            let renews = d.actions.iter().any(|a| matches!(a, Action::Dcs { op: DcsOp::RenewLeader { .. }, .. }));
            if renews && now_local < l.sent_at.saturating_add(loop_wait) {
                let msg = format!(
                    "R10: {} renews {} ms after the request of the grant it holds (loop_wait {loop_wait} ms)",
                    self.nodes[i].name,
                    now_local.saturating_sub(l.sent_at)
                );
                self.violation(msg);
            }
        }
        // R10, renewals are not skipped either: a leader holding a valid grant, nothing in
        // flight, renews in the first step at which the renewal is due, unless that step
        // hands the lease over or gives it up.
        if let Some(l) = d.memory.lease.filter(|l| l.deadline > now_local && d.memory.lease_op.is_none()) {
            let loop_wait = in_force(&self.nodes[i].cfg, &d.memory).loop_wait;
            // A claim (the record moved: its own renewal whose reply was lost) is the renewal.
            let claiming = d.status.reason == hacore::Reason::Claiming;
            if now_local >= l.sent_at.saturating_add(loop_wait) && d.memory.stepping_down.is_none() && !claiming {
                let msg = format!(
                    "R10: {} holds a grant requested {} ms ago (loop_wait {loop_wait} ms) and does not renew it ({})",
                    self.nodes[i].name,
                    now_local.saturating_sub(l.sent_at),
                    d.status.reason
                );
                self.violation(msg);
            }
        }
        let n = &self.nodes[i];
        if let Some(msg) = crate::check::reported_can_lead(&n.name, &n.cfg, &obs, &d.status) {
            self.violation(msg);
        }
        if let Some(msg) = crate::check::lease_given_up(&self.nodes[i].name, &self.nodes[i].mem, &obs, &d) {
            self.violation(msg);
        }
        let n = &mut self.nodes[i];
        n.mem = d.memory;
        n.steps += 1;
        let old = std::mem::replace(&mut n.status, d.status);
        let next_local = now_local + d.wake_within;
        let reason = n.status.reason;
        if old.reason != reason {
            self.reason_changed(i, reason);
        }
        self.check.steps += 1;
        let wake = self.nodes[i].clock.global(next_local);
        let mut actions = d.actions;
        let background = actions.split_off(d.background_from.min(actions.len()));
        let n = &mut self.nodes[i];
        n.background = background;
        n.next_wake = wake;
        n.wake_at = None;
        n.wake_gen += 1;
        n.phase = Phase::Executing { queue: actions.into(), failed: false, waiting: None };
        self.advance(i);
    }

    fn reason_changed(&mut self, i: usize, reason: Reason) {
        let name = self.nodes[i].name.clone();
        let detail = self.nodes[i].status.detail.clone();
        self.trace.event(self.now, "reason", &[("node", &name), ("reason", &reason.to_string()), ("detail", &detail)]);
        match reason {
            Reason::ElectionLost => self.check.count("election_lost_to_more_advanced"),
            Reason::FailsafeHolding => self.check.count("failsafe_held_primary"),
            Reason::LeaseExpired | Reason::FencingNotLeader | Reason::GuardLost => self.check.count("self_fencing"),
            Reason::SwitchoverAborted => self.check.count("switchover_aborted"),
            Reason::PrimaryHung => self.check.count("hung_primary_stepped_down"),
            Reason::PrimaryStartFailed => self.check.count("primary_start_gave_up"),
            Reason::IneligibleLagging => self.check.count("ineligible_lagging"),
            Reason::IneligibleDiverged => self.check.count("ineligible_diverged"),
            Reason::DcsUnavailableLeaseValid => self.check.count("primary_rode_out_dcs_trouble"),
            Reason::StandbyLeaderRepointing => self.check.count("standby_leader_repointed"),
            Reason::StandbyLeaderStreaming => self.check.count("standby_leader_streaming"),
            Reason::SwitchoverRejected => self.check.count("switchover_rejected"),
            Reason::SwitchoverScheduled => self.check.count("switchover_waited_for_its_time"),
            Reason::IneligibleNoFailover => self.check.count("ineligible_nofailover"),
            Reason::IneligibleNotSynchronous => self.check.count("ineligible_not_synchronous"),
            Reason::SystemIdMismatch => self.check.count("system_id_mismatch"),
            _ => {}
        }
    }

    /// Executes actions until one waits for the store or the batch ends.
    fn advance(&mut self, i: usize) {
        loop {
            let Phase::Executing { queue, failed, waiting } = &mut self.nodes[i].phase else { return };
            if waiting.is_some() {
                return;
            }
            let failed = *failed;
            let Some(a) = queue.pop_front() else {
                self.nodes[i].phase = Phase::Idle;
                self.send_background(i);
                let next = self.next_loop(i);
                self.schedule_wake(i, next.max(self.now));
                return;
            };
            if failed {
                if let Some(id) = a.id() {
                    self.nodes[i].outcomes.push(Outcome { id, result: Err(Failure::Skipped) });
                }
                continue;
            }
            let local = self.nodes[i].local(self.now);
            if let Some(deadline) = a.writable_deadline() {
                if local >= deadline {
                    self.nodes[i]
                        .outcomes
                        .push(Outcome { id: a.id().unwrap_or_default(), result: Err(Failure::TimedOut) });
                    self.set_failed(i);
                    continue;
                }
            }
            self.execute(i, a);
        }
    }

    /// When node `i`'s loop runs next, as the shell paces it: at once after a nudge (a watch
    /// event, a finished operation) or an urgent outcome (at most three steps in a row),
    /// else after the core's `wake_within`, and without a watch at most a second later
    /// while the cluster is in flux. A batch that moved the leader record wakes the peers
    /// when there is no watch to tell them.
    fn next_loop(&mut self, i: usize) -> Millis {
        let no_watch = self.p.mode == DcsMode::Dynamo;
        let n = &mut self.nodes[i];
        let (urgent, moved) = (std::mem::take(&mut n.urgent), std::mem::take(&mut n.moved));
        let next = if std::mem::take(&mut n.wake_soon) {
            self.now
        } else if urgent && n.quick_steps < 3 {
            n.quick_steps += 1;
            self.now
        } else {
            n.quick_steps = 0;
            if no_watch && n.in_flux {
                n.next_wake.min(self.now + 1_000)
            } else {
                n.next_wake
            }
        };
        if moved && no_watch {
            for j in (0..self.nodes.len()).filter(|&j| j != i) {
                let hears = self.links.peer[i][j] == 0 && self.nodes[j].up && !self.nodes[j].paused;
                if hears && self.nodes[j].last_peer_wake.is_none_or(|t| self.now >= t + 100) {
                    self.nodes[j].last_peer_wake = Some(self.now);
                    self.nudge(j, 1);
                }
            }
        }
        next
    }

    /// Sends the batch's informational writes all at once; their replies only become
    /// outcomes (they hold nothing up and skip nothing).
    fn send_background(&mut self, i: usize) {
        for a in std::mem::take(&mut self.nodes[i].background) {
            if self.trace.keeps() {
                let name = self.nodes[i].name.clone();
                self.trace.note(self.now, "action", &[("node", &name), ("action", &format!("{a:?}"))]);
            }
            if let Action::Dcs { id, op } = a {
                if matches!(op, DcsOp::Put(_)) {
                    self.violation(format!("S5: {} wrote a cluster key without the leader guard", self.nodes[i].name));
                }
                let upstream_fork = |w: &Write| {
                    matches!(&w.value, Some(Value::History(h))
                        if h.forks.last().is_some_and(|f| f.cause == hacore::ForkCause::Upstream))
                };
                if matches!(&op, DcsOp::LeaderWrite { writes, .. } if writes.iter().any(upstream_fork)) {
                    self.check.count("upstream_fork_recorded");
                }
                let req = self.send(i, Some(op));
                self.nodes[i].background_reqs.insert(req, id);
            }
        }
    }

    /// T2 in PostgreSQL: `synchronous_standby_names` never names a standby tagged `nosync`.
    /// W1: outside strict mode it never blocks every commit (with no standby to wait for,
    /// `on` acknowledges without one).
    fn check_sync_setting(&mut self, i: usize, s: &SyncStandbys) {
        if *s == SyncStandbys::Block && self.p.settings.synchronous_mode != hacore::SyncMode::Strict {
            let msg = format!("W1: {} blocks every commit outside strict synchronous mode", self.nodes[i].name);
            self.violation(msg);
        }
        if let Some(n) = crate::check::nosync_named(&self.p.tags, &self.p.name_prefix, s.names()) {
            let msg = format!("T2: {} names {n}, tagged nosync, in synchronous_standby_names", self.nodes[i].name);
            self.violation(msg);
        }
    }

    fn set_failed(&mut self, i: usize) {
        if let Phase::Executing { failed, .. } = &mut self.nodes[i].phase {
            *failed = true;
        }
    }

    fn execute(&mut self, i: usize, a: Action) {
        if self.trace.keeps() {
            let name = self.nodes[i].name.clone();
            self.trace.note(self.now, "action", &[("node", &name), ("action", &format!("{a:?}"))]);
        }
        let d = self.p.durations.clone();
        let long = match &a {
            Action::Initdb { id } => Some((*id, d.initdb, SimOp::Initdb)),
            Action::Clone { id, from } if from == hacore::UPSTREAM => Some((*id, d.clone, SimOp::CloneUpstream)),
            Action::Clone { id, from } => {
                let from = self.index(from).unwrap_or(usize::MAX);
                if self.nodes.get(from).is_some_and(|n| n.cfg.tags.clonefrom) {
                    self.check.count("clone_from_clonefrom");
                }
                Some((*id, d.clone, SimOp::Clone { from }))
            }
            Action::Rewind { id, from } => {
                Some((*id, d.rewind, SimOp::Rewind { from: self.index(from).unwrap_or(usize::MAX) }))
            }
            Action::StartPrimary { .. } | Action::StartReplica { .. }
                if self.nodes[i].pg.system_id == Some(FOREIGN_SYSTEM_ID) =>
            {
                let msg = format!("S4: {} starts PostgreSQL on another cluster's data", self.nodes[i].name);
                self.violation(msg);
                None
            }
            Action::StartPrimary { id, sync_standbys, .. } => {
                if self.nodes[i].restarted_from_copy {
                    self.violation(format!(
                        "S4: {} starts as primary right after a rewind or clone",
                        self.nodes[i].name
                    ));
                }
                self.check_sync_setting(i, sync_standbys);
                self.nodes[i].pg.sync_standbys = sync_standbys.clone();
                Some((*id, d.start, SimOp::StartPrimary))
            }
            Action::StartReplica { id, upstream } => {
                if let Some(u) = upstream.as_deref().and_then(|u| self.index(u)) {
                    self.check_not_diverged(i, u, "starts following");
                }
                Some((*id, d.start, SimOp::StartReplica { upstream: upstream.clone() }))
            }
            Action::Stop { id, mode } => {
                let t = if *mode == StopMode::Fast { d.stop_fast } else { d.stop_immediate };
                Some((*id, t, SimOp::Stop { mode: *mode }))
            }
            Action::Promote { id, timeline, sync_standbys, .. } => {
                self.check_promotion(i);
                self.check.count(match self.nodes[i].mem.acquired_via {
                    Some(hacore::ForkCause::Switchover) => "switchover",
                    Some(hacore::ForkCause::ManualFailover) => "manual_failover",
                    Some(hacore::ForkCause::ClusterPromotion) => "cluster_promotion",
                    _ => "failover",
                });
                self.check_sync_setting(i, sync_standbys);
                self.nodes[i].pg.sync_standbys = sync_standbys.clone();
                Some((*id, d.promote, SimOp::Promote { timeline: timeline.0 }))
            }
            Action::Checkpoint { id } => Some((*id, d.checkpoint, SimOp::Checkpoint)),
            _ => None,
        };
        if let Some((id, took, op)) = long {
            let normal = took + self.rng.range(0, took / 4 + 1);
            let took = normal + took * (self.nodes[i].slow - 1);
            let n = &mut self.nodes[i];
            n.op_seq += 1;
            let seq = n.op_seq;
            if n.slow > 1 {
                n.slowed.insert(seq, self.now + normal);
            }
            n.ops.insert(seq, (id, op, n.daemon));
            let machine = n.machine;
            self.push(self.now + took, Ev::OpDone { node: i, seq, machine });
            return;
        }
        // A store operation that moves leadership calls for the next step at once once it
        // succeeded (see `reply`); a stopped WAL receiver (an election) does now.
        self.nodes[i].urgent |= matches!(&a, Action::Follow { upstream: None });
        match a {
            Action::Dcs { id, op } => {
                if matches!(op, DcsOp::Put(_)) {
                    self.violation(format!("S5: {} wrote a cluster key without the leader guard", self.nodes[i].name));
                }
                if matches!(op, DcsOp::TransferLeader { .. }) {
                    self.check.count("transfer_sent");
                }
                let req = self.send(i, Some(op));
                if let Phase::Executing { waiting, .. } = &mut self.nodes[i].phase {
                    *waiting = Some((req, id));
                }
            }
            Action::Follow { upstream } => {
                if let Some(u) = upstream.as_deref().and_then(|u| self.index(u)) {
                    self.check_not_diverged(i, u, "follows");
                }
                let idx = upstream.as_deref().and_then(|u| self.index(u));
                let n = &mut self.nodes[i];
                n.pg.upstream = upstream;
                n.pg.upstream_idx = idx;
                n.pg.streaming = false;
            }
            Action::SetSyncStandbys(s) => {
                self.check_sync_setting(i, &s);
                self.nodes[i].pg.sync_standbys = s
            }
            Action::CreateSlot { name } if !self.nodes[i].pg.slots.contains(&name) => self.nodes[i].pg.slots.push(name),
            Action::DropSlot { name } => self.nodes[i].pg.slots.retain(|s| *s != name),
            Action::ArmGuard { id, .. } if !self.p.guard => {
                // No guard process: the shell has nothing to arm.
                self.nodes[i].outcomes.push(Outcome { id, result: Ok(Done::Ok) });
            }
            Action::ArmGuard { id, deadline, term } => {
                self.nodes[i].guard = Some((deadline, term));
                let at = self.nodes[i].clock.global(deadline);
                let machine = self.nodes[i].machine;
                self.push(at, Ev::Guard { node: i, deadline, machine });
                self.nodes[i].outcomes.push(Outcome { id, result: Ok(Done::Ok) });
            }
            Action::FailsafePing { id, term, ttl, members } => {
                let req = FailsafeRequest { leader: self.nodes[i].name.clone(), term, ttl };
                let mut all = true;
                for m in &members {
                    let Some(j) = self.index(&m.name) else {
                        all = false;
                        continue;
                    };
                    if j == i || !self.reachable(i, j) {
                        all = false;
                        continue;
                    }
                    let local = self.nodes[j].local(self.now);
                    let p = &mut self.nodes[j];
                    let (ok, mem) = answer_failsafe(&p.cfg, &p.mem, &req, local);
                    p.mem = mem;
                    all &= ok;
                }
                let sent_at = self.nodes[i].local(self.now);
                if all {
                    self.check.count("failsafe_round_acked");
                    self.nodes[i].urgent = true;
                    self.nodes[i].outcomes.push(Outcome { id, result: Ok(Done::FailsafeAcked { sent_at }) });
                } else {
                    self.nodes[i].outcomes.push(Outcome { id, result: Err(Failure::Failed) });
                    self.set_failed(i);
                }
            }
            _ => {}
        }
    }

    fn op_done(&mut self, i: usize, seq: u64, machine: u64) {
        if self.nodes[i].machine != machine {
            return;
        }
        let Some((id, op, daemon)) = self.nodes[i].ops.remove(&seq) else { return };
        // Promotion completes only once everything received is replayed.
        if let SimOp::Promote { .. } = op {
            let n = &self.nodes[i];
            if n.pg.running && n.pg.role == Some(Role::Standby) && n.pg.replayed < n.pg.wal.len() {
                self.nodes[i].ops.insert(seq, (id, op, daemon));
                self.push(self.now + self.p.tick, Ev::OpDone { node: i, seq, machine });
                return;
            }
        }
        let once = self.nodes[i].fail_next > 0;
        self.nodes[i].fail_next = self.nodes[i].fail_next.saturating_sub(1);
        let start = matches!(op, SimOp::StartPrimary | SimOp::StartReplica { .. });
        let fails =
            once || (self.nodes[i].fail_pg > 0 && self.rng.chance(0.5)) || (start && self.nodes[i].start_broken);
        let result = if fails {
            self.check.count("pg_operation_failed");
            if let SimOp::Promote { timeline } = op {
                self.promotion_dies(i, timeline);
            }
            Err(Failure::Failed)
        } else {
            self.finish(i, op)
        };
        if self.trace.keeps() {
            let name = self.nodes[i].name.clone();
            let what = format!("#{} {result:?}", id.0);
            self.trace.note(self.now, "outcome", &[("node", &name), ("outcome", &what)]);
        }
        if daemon != self.nodes[i].daemon {
            return; // the daemon that started it is gone; its successor never asked
        }
        self.nodes[i].outcomes.push(Outcome { id, result });
        if !self.nodes[i].paused {
            self.nudge(i, 0);
        }
    }

    /// Half of the failed promotions die midway (a crash, a full disk at the end-of-recovery
    /// checkpoint): PostgreSQL had written the new timeline's history file and stops, still
    /// a standby on the old timeline. Its next promotion skips that timeline, so the fork
    /// the leader recorded names one that PostgreSQL did not take.
    fn promotion_dies(&mut self, i: usize, timeline: u32) {
        let pg = &mut self.nodes[i].pg;
        if !pg.running || pg.hung || pg.role != Some(Role::Standby) || !self.rng.chance(0.5) {
            return;
        }
        let taken = pg.promotion_timeline(timeline);
        pg.promotion_died(taken);
        self.kill_pg(i);
        self.check.count("promotion_died_midway");
    }

    fn finish(&mut self, i: usize, op: SimOp) -> Result<Done, Failure> {
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
                pg.append(None, self.now);
                self.nodes[i].epoch += 1;
                self.check.count("initdb");
                Ok(Done::Ok)
            }
            SimOp::Clone { from } => {
                if from >= self.nodes.len() || !self.reachable(i, from) {
                    return Err(Failure::Failed);
                }
                let src = &self.nodes[from].pg;
                if !src.running || src.hung || self.nodes[i].pg.running {
                    return Err(Failure::Failed);
                }
                let copy = src.copy();
                let had_data = self.nodes[i].pg.system_id.is_some();
                self.check.count(if had_data { "reclone" } else { "clone" });
                Ok(self.install_copy(i, copy))
            }
            SimOp::CloneUpstream => {
                let Some(up) = self.upstream.as_ref().filter(|u| u.up) else {
                    return Err(Failure::Failed);
                };
                if self.nodes[i].pg.running {
                    return Err(Failure::Failed);
                }
                let copy = up.pg.copy();
                self.check.count("clone_upstream");
                Ok(self.install_copy(i, copy))
            }
            SimOp::Rewind { from } => {
                if from >= self.nodes.len() || !self.reachable(i, from) {
                    return Err(Failure::Failed);
                }
                let src = &self.nodes[from].pg;
                let me = &self.nodes[i].pg;
                if !src.writable() || me.running || src.system_id != me.system_id {
                    return Err(Failure::Failed);
                }
                let common = SimPg::common_prefix(&me.wal, &src.wal);
                let discarded = me.wal.len() - common;
                let (wal, history, timeline) = (src.wal.clone(), src.history.clone(), src.timeline);
                let n = &mut self.nodes[i];
                let len = wal.len();
                n.pg.wal = wal;
                n.pg.history = history;
                n.pg.timeline = timeline;
                // pg_rewind makes the target's files the source's (when it finds nothing to
                // rewind it leaves them, and hashell removes those above the data's timeline).
                n.pg.drop_dead_history();
                n.pg.role = Some(Role::Standby);
                // What came from the source is replayed once the node starts (from the
                // last common checkpoint, modelled as the fork point).
                n.pg.replayed = common;
                n.pg.min_recovery = len;
                n.copied_in = Some((n.machine, n.daemon));
                n.epoch += 1;
                n.restarted_from_copy = true;
                let name = n.name.clone();
                self.check.count("rewind");
                self.trace.event(self.now, "rewind", &[("node", &name), ("discarded", &discarded.to_string())]);
                Ok(Done::ConsistentAt(Lsn(len as u64 * RECORD)))
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
                let idx = upstream.as_deref().and_then(|u| self.index(u));
                let n = &mut self.nodes[i];
                if n.pg.system_id.is_none() || n.pg.running {
                    return Err(Failure::Failed);
                }
                n.pg.running = true;
                n.pg.hung = false;
                n.pg.role = Some(Role::Standby);
                n.pg.upstream = upstream;
                n.pg.upstream_idx = idx;
                n.pg.streaming = false;
                n.restarted_from_copy = false;
                // Recovery replays the local WAL first, as it replays what streams in.
                let len = n.pg.wal.len();
                n.receipts.push_back((self.now, len));
                Ok(Done::Ok)
            }
            SimOp::Stop { mode } => {
                if !self.nodes[i].pg.running {
                    return Ok(Done::Ok);
                }
                if mode == StopMode::Fast && self.nodes[i].pg.role == Some(Role::Primary) && !self.nodes[i].pg.hung {
                    // The shutdown checkpoint, delivered to connected standbys before exit.
                    self.nodes[i].pg.append(None, self.now);
                    self.replicate(true);
                }
                let pg = &mut self.nodes[i].pg;
                pg.running = false;
                pg.streaming = false;
                pg.hung = false;
                if mode == StopMode::Immediate {
                    self.check.count("fence_executed");
                    if self.nodes[i].pg.role == Some(Role::Primary) {
                        self.check.count("primary_fenced");
                    }
                }
                Ok(Done::Ok)
            }
            SimOp::Promote { timeline } => {
                let pg = &mut self.nodes[i].pg;
                if !pg.running || pg.role != Some(Role::Standby) || pg.hung {
                    return Err(Failure::Failed);
                }
                let timeline = pg.promotion_timeline(timeline);
                pg.promote(timeline, self.now);
                // The fork is in this node's WAL (and, recorded before the promotion, in the
                // published history): from now on it is the WAL a new term must agree with,
                // even if PostgreSQL is fenced before it accepts a single write.
                self.last_primary = Some((i, self.nodes[i].epoch));
                self.check.count("promotion");
                Ok(Done::Ok)
            }
            SimOp::Checkpoint => Ok(Done::Ok),
        }
    }

    /// Node `i`'s data becomes `copy` (a clone's result).
    fn install_copy(&mut self, i: usize, copy: SimPg) -> Done {
        let end = copy.end();
        let n = &mut self.nodes[i];
        n.pg = copy;
        n.copied_in = Some((n.machine, n.daemon));
        n.epoch += 1;
        n.restarted_from_copy = true;
        Done::ConsistentAt(end)
    }

    fn guard_fires(&mut self, i: usize, deadline: Millis, machine: u64) {
        let n = &self.nodes[i];
        if n.machine != machine || n.guard.map(|g| g.0) != Some(deadline) {
            return;
        }
        if n.local(self.now) < deadline {
            // The node's clock slowed down since the timer was set: wait for its deadline.
            let at = n.clock.global(deadline).max(self.now + 1);
            self.push(at, Ev::Guard { node: i, deadline, machine });
            return;
        }
        // The guard kills the whole instance at its deadline, answering or not.
        if n.local(self.now) >= deadline && n.pg.running && n.pg.role == Some(Role::Primary) {
            self.guard_kills(i);
        }
    }

    // ----- PostgreSQL: client, replication, replay, acknowledgement -----------------------

    fn tick(&mut self) {
        self.client_writes();
        self.replicate(false);
        let now = self.now;
        for n in &mut self.nodes {
            if n.pg.role == Some(Role::Primary) {
                // A primary has replayed everything.
                n.pg.replayed = n.pg.wal.len();
                n.receipts.clear();
                continue;
            }
            if !n.pg.running {
                // A stopped standby replays what it has once it starts.
                n.receipts.clear();
                continue;
            }
            while let Some(&(at, len)) = n.receipts.front() {
                if at + n.replay_delay > now {
                    break;
                }
                n.pg.replayed = len.min(n.pg.wal.len());
                n.receipts.pop_front();
            }
        }
        self.acknowledge();
    }

    /// Streams WAL to every running standby from its upstream. `all` ignores the delay
    /// (the shutdown checkpoint is flushed to connected standbys before exit).
    fn replicate(&mut self, all: bool) {
        for j in 0..self.nodes.len() {
            let n = &self.nodes[j];
            if n.pg.upstream.as_deref() == Some(hacore::UPSTREAM) {
                let Some(up) = self
                    .upstream
                    .as_ref()
                    .filter(|u| u.up && n.up && n.pg.running && n.pg.role == Some(Role::Standby) && !n.pg.hung)
                else {
                    self.nodes[j].pg.streaming = false;
                    continue;
                };
                let cutoff = if all { Millis::MAX } else { self.now.saturating_sub(n.repl_delay) };
                stream(&mut self.nodes[j], &up.pg, cutoff, self.now, &mut self.check);
                continue;
            }
            let source = n.pg.upstream_idx.filter(|&u| {
                u != j
                    && n.up
                    && n.pg.running
                    && n.pg.role == Some(Role::Standby)
                    && !n.pg.hung
                    && self.nodes[u].up
                    && self.nodes[u].pg.running
                    && !self.nodes[u].pg.hung
                    && self.links.peer[u][j] == 0
                    && self.links.peer[j][u] == 0
            });
            let Some(u) = source else {
                self.nodes[j].pg.streaming = false;
                continue;
            };
            let (me, up) = pair(&mut self.nodes, j, u);
            let cutoff = if all { Millis::MAX } else { self.now.saturating_sub(me.repl_delay) };
            stream(me, &up.pg, cutoff, self.now, &mut self.check);
        }
    }

    /// The client writes to every node that accepts writes, at the configured rate.
    fn client_writes(&mut self) {
        if self.p.write_rate == 0 {
            return;
        }
        let every = (1_000 / self.p.write_rate).max(1);
        while self.next_write_at <= self.now {
            let at = self.next_write_at;
            self.next_write_at += every;
            if let Some(u) = self.upstream.as_mut() {
                // The other site's clients (its availability is not ours to check).
                u.pg.append(Some(self.next_upstream_write), at);
                self.next_upstream_write += 1;
            }
            for i in 0..self.nodes.len() {
                // A client waits for its commits: at most MAX_IN_FLIGHT per node (a
                // connection pool), so a primary blocking in strict mode gets no more.
                if self.is_writable(i) && self.nodes[i].in_flight < MAX_IN_FLIGHT {
                    self.nodes[i].in_flight += 1;
                    let id = self.next_write;
                    self.next_write += 1;
                    let lsn = self.nodes[i].pg.append(Some(id), at);
                    self.pending_writes[i].push_back((id, lsn));
                }
            }
        }
    }

    /// Acknowledges what the synchronous standbys (if any) have flushed.
    fn acknowledge(&mut self) {
        // Most ticks have no write waiting (asynchronous mode acknowledges at once): then
        // nothing below can change (compaction follows new acknowledgements only).
        if self.pending_writes.iter().all(|q| q.is_empty()) {
            return;
        }
        // Per primary: the highest LSN every named synchronous standby has flushed.
        let now = self.now;
        let upto: Vec<Option<Lsn>> = (0..self.nodes.len())
            .map(|i| {
                if !self.is_writable(i) {
                    return None;
                }
                match &self.nodes[i].pg.sync_standbys {
                    SyncStandbys::Off => Some(Lsn(u64::MAX)),
                    SyncStandbys::Block => Some(Lsn(0)),
                    SyncStandbys::First(names) => names
                        .iter()
                        .map(|name| {
                            self.index(name).map_or(Lsn(0), |s| {
                                let s = &self.nodes[s];
                                let from_me = s.pg.upstream_idx == Some(i);
                                if s.up && s.pg.running && s.pg.streaming && from_me && now >= s.catchup_until {
                                    s.pg.end()
                                } else {
                                    Lsn(0)
                                }
                            })
                        })
                        .min(),
                }
            })
            .collect();
        let (mut total, mut unknown) = (0u64, 0u64);
        for (i, limit) in upto.into_iter().enumerate() {
            let queue = &mut self.pending_writes[i];
            while let Some(&(id, lsn)) = queue.front() {
                let chain = match limit {
                    Some(limit) if lsn > limit => break,
                    Some(_) => self.nodes[i]
                        .pg
                        .wal
                        .get((lsn.0 / RECORD) as usize - 1)
                        .filter(|r| r.write == Some(id))
                        .map(|r| r.chain),
                    None => None,
                };
                queue.pop_front();
                self.nodes[i].in_flight = self.nodes[i].in_flight.saturating_sub(1);
                match chain {
                    Some(chain) => {
                        let a = Acked { lsn, chain };
                        match self.acked.last_mut() {
                            Some(st) if st.node == i => st.writes.push(a),
                            _ => {
                                self.acked.push(Stint { node: i, writes: vec![a], settled: 0, compact_at: COMPACT_MIN })
                            }
                        }
                        let second = (now / 1_000) as usize;
                        if self.acks_per_second.len() <= second {
                            self.acks_per_second.resize(second + 1, 0);
                        }
                        self.acks_per_second[second] += 1;
                        total += 1;
                    }
                    None => unknown += 1,
                }
            }
        }
        self.acked_total += total;
        self.writes_uncounted.0 += total;
        self.writes_uncounted.1 += unknown;
        if let Some(st) = self.acked.last_mut() {
            if st.writes.len() >= st.compact_at {
                let held = self
                    .nodes
                    .iter()
                    .map(|n| {
                        let wal = &n.pg.wal;
                        st.writes.partition_point(|a| {
                            wal.get((a.lsn.0 / RECORD) as usize - 1).is_some_and(|r| r.chain == a.chain)
                        })
                    })
                    .min()
                    .unwrap_or(0);
                st.writes.drain(..held);
                st.settled += held as u64;
                st.compact_at = (st.writes.len() * 2).max(COMPACT_MIN);
            }
        }
    }

    // ----- checks that need the world ------------------------------------------------

    fn became_writable(&mut self, i: usize) {
        let name = self.nodes[i].name.clone();
        self.trace.event(
            self.now,
            "primary",
            &[
                ("node", &name),
                ("timeline", &self.nodes[i].pg.timeline.to_string()),
                ("end", &self.nodes[i].pg.end().to_string()),
            ],
        );
        self.check.count("became_primary");
        if let Some(u) = self.upstream.as_ref().filter(|_| !self.promotion_checked) {
            // The first primary of a promoted standby cluster holds nothing but the
            // upstream's WAL up to its promotion's timeline switch.
            self.promotion_checked = true;
            let pg = &self.nodes[i].pg;
            let fork = pg.history.last().map_or(0, |h| (h.lsn.0 / RECORD) as usize);
            let shared = SimPg::common_prefix(&pg.wal, &u.pg.wal);
            if shared < fork {
                self.violation(format!(
                    "S4: {name}, promoted in a standby cluster, has WAL the upstream never wrote (from record {shared})"
                ));
            }
        }
        // S2: every acknowledged write must be on every later primary. A stint's writes lie
        // on one WAL in LSN order, so those present form a prefix: binary search by chain.
        let wal = &self.nodes[i].pg.wal;
        let present = |a: &Acked| wal.get((a.lsn.0 / RECORD) as usize - 1).is_some_and(|r| r.chain == a.chain);
        let mut missing = 0u64;
        let mut first_missing = None;
        for st in &mut self.acked {
            let keep = st.writes.partition_point(present);
            if keep < st.writes.len() {
                missing += (st.writes.len() - keep) as u64;
                first_missing.get_or_insert(st.writes[keep].lsn);
                st.writes.truncate(keep);
            }
        }
        self.acked.retain(|st| !st.writes.is_empty());
        if missing == 0 {
            return;
        }
        if self.p.settings.synchronous_mode.enabled() {
            let l = first_missing.unwrap_or_default();
            self.violation(format!("S2: new primary {name} lacks {missing} acknowledged writes (first at {l})"));
        } else if self.took_over_by_transfer(i) {
            // A planned switchover loses nothing in any mode: the old primary stopped, and
            // the candidate received the end of its WAL before the hand-over.
            let l = first_missing.unwrap_or_default();
            self.violation(format!(
                "S2: {name}, primary after a switchover, lacks {missing} acknowledged writes (first at {l})"
            ));
        }
        // Gone for good (asynchronous mode): counted once, not again at the next failover.
        self.check.async_lost += missing;
        self.check.count("failover_lost_async_writes");
    }

    /// S3, when a node takes a new term or decides to promote: against what it knew then
    /// (the peers' election reports in that step's observation).
    fn check_promotion_decision(&mut self, i: usize, peers: &[PeerReport]) {
        let n = &self.nodes[i];
        let pg = &n.pg;
        if !pg.consistent() && n.copied_in == Some((n.machine, n.daemon)) {
            let msg = format!(
                "S4: {} leads before its data is consistent (replayed {} of the {} records a rewind or clone requires)",
                self.nodes[i].name, pg.replayed, pg.min_recovery
            );
            self.violation(msg);
        }
        let me = self.nodes[i].pg.end();
        for p in peers {
            let Some(e) = p.status.as_ref().and_then(|st| st.election) else { continue };
            if e.eligible && e.position.lsn > me {
                let msg = format!(
                    "S3: {} leads at {me} while {} (eligible) reported {}",
                    self.nodes[i].name, p.name, e.position.lsn
                );
                self.violation(msg);
            }
        }
    }

    /// R9, the leader's status record (the position failovers measure their lag against,
    /// `maximum_lag_on_failover`): a healthy leader whose read does not show its own record
    /// for its term writes one in that step, and while the read shows it, it writes again
    /// at most once per `loop_wait`, and never one the read already holds.
    fn check_status_record(&mut self, i: usize, obs: &Observation, d: &hacore::Decision, now_local: Millis) {
        use hacore::dcs::Value;
        let Ok(view) = &obs.dcs else { return };
        let n = &self.nodes[i];
        let written = d.actions.iter().find_map(|a| match a {
            Action::Dcs { op: DcsOp::LeaderWrite { writes, .. }, .. } => writes.iter().find_map(|w| match &w.value {
                Some(Value::Status(st)) => Some(st.clone()),
                _ => None,
            }),
            _ => None,
        });
        let term = d.memory.lease.map(|l| l.term);
        let own = view.status.as_ref().filter(|s| s.value.leader == n.name && Some(s.value.term) == term);
        let loop_wait = in_force(&n.cfg, &d.memory).loop_wait;
        let msg = match (&written, own) {
            (None, None) if d.status.reason == hacore::Reason::LeaderHealthy => {
                Some("does not publish its status record, which the store does not show for its term".to_string())
            }
            (Some(_), Some(_)) if n.status_written.is_some_and(|t| now_local < t + loop_wait) => Some(format!(
                "writes its status record again {} ms after the last one (loop_wait {loop_wait} ms)",
                now_local - n.status_written.unwrap_or_default()
            )),
            (Some(w), Some(o)) if n.status_written.is_some() && o.value == *w => {
                Some("writes the status record the store already holds".to_string())
            }
            _ => None,
        };
        if let Some(msg) = msg {
            let name = n.name.clone();
            self.violation(format!("R9: {name} {msg}"));
        }
        if written.is_some() {
            self.nodes[i].status_written = Some(now_local);
        }
    }

    /// The lag bound, when a promotion starts.
    /// E1 and E2 for settings that fail validation: a daemon whose read shows such
    /// settings (and is used) records `config_rejected` once per version of them, and
    /// never applies them.
    fn check_config_rejected(&mut self, i: usize, obs: &Observation, d: &hacore::Decision) {
        use hacore::dcs::DcsOp as Op;
        let n = &self.nodes[i];
        let mut recorded = false;
        let unusable = obs.dcs.as_ref().is_ok_and(|v| v.history_fault().is_some());
        for a in &d.actions {
            match a {
                Action::Dcs { op: Op::AppendEvent(e), .. } => {
                    recorded |= e.reason == Reason::ConfigRejected;
                    if e.reason == Reason::HistoryCorrected {
                        // The leader rewrote its fork (a promotion that took another
                        // timeline), or the whole history over an unusable one.
                        self.check.count("history_corrected");
                    }
                }
                Action::Dcs { op: Op::LeaderWrite { writes, .. }, .. }
                    if unusable && writes.iter().any(|w| matches!(w.value, Some(hacore::dcs::Value::History(_)))) =>
                {
                    self.check.count("history_rebuilt");
                }
                _ => {}
            }
        }
        let Some(c) = obs.dcs.as_ref().ok().and_then(|v| v.config.as_ref()) else { return };
        // Validated once per version (a step is hot; the settings rarely change).
        let bad = match n.config_checked {
            Some((v, bad)) if v == c.version => bad,
            _ => c.value.validate(&n.cfg.safety).is_err(),
        };
        self.nodes[i].config_checked = Some((c.version, bad));
        let n = &self.nodes[i];
        // A read judged stale is not used (a fence on it may leave its own reason).
        let used = d.memory.stale_since.is_none()
            && !matches!(
                d.status.reason,
                Reason::DcsUnavailable | Reason::DcsUnavailableLeaseValid | Reason::FailsafeHolding
            );
        let told = n.rejected_told == Some(c.version);
        let wrong = if bad && d.status.applied_config == Some(c.version) {
            Some("applies settings that fail validation")
        } else if recorded && !bad {
            Some("records config_rejected for valid settings")
        } else if recorded && told {
            Some("records config_rejected again for the same version")
        } else if bad && used && !told && !recorded {
            Some("does not record config_rejected for settings that fail validation")
        } else {
            None
        };
        if let Some(what) = wrong {
            let msg = format!("E1: {} {what} (version {:?}, ttl {} ms)", n.name, c.version, c.value.ttl);
            self.violation(msg);
        }
        if recorded {
            self.nodes[i].rejected_told = Some(c.version);
            self.check.count("config_rejected");
        }
    }

    fn check_promotion(&mut self, i: usize) {
        let me = self.nodes[i].pg.end();
        if !self.p.settings.synchronous_mode.enabled() {
            let view = self.view();
            if let Some(st) = view.status {
                let manual = matches!(self.nodes[i].mem.acquired_via, Some(hacore::ForkCause::Switchover));
                if !manual && me.0.saturating_add(self.p.settings.maximum_lag_on_failover) < st.value.lsn.0 {
                    self.violation(format!(
                        "S2 (async bound): {} promotes at {me}, more than maximum_lag_on_failover behind {}",
                        self.nodes[i].name, st.value.lsn
                    ));
                }
            }
        }
    }

    /// T1 and T2 where a decision reaches the store: a node tagged `nofailover` (or with
    /// priority 0) never takes the leader record nor is handed it, and no sync record
    /// publishes a standby tagged `nosync`.
    fn check_store_op(&mut self, node: usize, op: &DcsOp) {
        let holder = match op {
            DcsOp::AcquireLeader(a) => Some(&a.record.holder),
            DcsOp::TransferLeader { to, .. } => Some(&to.holder),
            _ => None,
        };
        if let Some(h) = holder {
            if self.index(h).is_some_and(|j| !self.nodes[j].cfg.tags.can_lead()) {
                let by = &self.nodes[node].name;
                self.violation(format!("T1: {h}, tagged nofailover, is given the leader record (by {by})"));
            }
        }
        if let DcsOp::LeaderWrite { writes, .. } = op {
            for w in writes {
                if let Some(Value::Sync(rec)) = &w.value {
                    if let Some(n) = crate::check::nosync_named(&self.p.tags, &self.p.name_prefix, &rec.members) {
                        let msg = format!("T2: {} publishes {n}, tagged nosync, in the sync record", rec.leader);
                        self.violation(msg);
                    }
                }
                // The failsafe set names who may answer for the leader in an outage: every
                // member once, the leader that writes it among them.
                if let Some(Value::Failsafe(rec)) = &w.value {
                    let by = &self.nodes[node].name;
                    let mut names: Vec<&str> = rec.members.iter().map(|m| m.name.as_str()).collect();
                    names.sort_unstable();
                    names.dedup();
                    if names.len() != rec.members.len() || !names.contains(&by.as_str()) {
                        let listed: Vec<&str> = rec.members.iter().map(|m| m.name.as_str()).collect();
                        self.violation(format!("F2: {by} publishes the failsafe set {listed:?}"));
                    }
                }
            }
        }
    }

    /// O4, an operator's failover or switchover naming a node holds the others back: while
    /// the request is younger than `switchover_timeout` (as any node can have counted it),
    /// only the named node may take a new term in an election.
    fn check_manual_request_respected(&mut self, i: usize, obs: &Observation) {
        let Some(req) = obs.dcs.as_ref().ok().and_then(|v| v.switchover.as_ref()) else { return };
        let Some(to) = req.value.to.as_deref().filter(|t| *t != self.nodes[i].name) else { return };
        let Some(at) = self.request_at.as_ref().filter(|(v, _)| *v == req.version).map(|(_, at)| at[i]) else {
            return;
        };
        let timeout = self.p.settings.switchover_timeout;
        // On the node's own clock (drift and jumps included): it counts from when it first
        // saw the request, no earlier.
        let age = self.nodes[i].local(self.now).saturating_sub(at);
        if age < timeout {
            let me = &self.nodes[i].name;
            self.violation(format!(
                "O4: {me} takes a new term {age} ms after an operator asked for {to} (waits {timeout} ms)"
            ));
        }
    }

    fn note_term_origin(&mut self, term: Term, j: usize, cause: hacore::ForkCause) {
        let n = &self.nodes[j];
        self.term_origin.insert(term.0, (j, n.machine, n.daemon, cause));
        while self.term_origin.len() > 16 {
            self.term_origin.pop_first();
        }
    }

    /// F1, the history tells why each fork was taken: a fork recorded by the node that took
    /// its term (the same daemon: one that restarted cannot know) names the cause of that
    /// term: a switchover for a transfer, a manual failover when the election followed an
    /// operator's request naming the node, a failover otherwise.
    fn check_fork_causes(&mut self, writer: usize, h: &hacore::History, before: &Option<hacore::History>) {
        use hacore::ForkCause as C;
        let known = |f: &hacore::Fork| {
            before.as_ref().is_some_and(|b| {
                b.forks.iter().any(|g| g.term == f.term && g.node == f.node && g.timeline == f.timeline)
            })
        };
        let n = &self.nodes[writer];
        let wrong: Vec<String> = h
            .forks
            .iter()
            .filter(|f| {
                !known(f) && f.node == n.name && matches!(f.cause, C::Failover | C::Switchover | C::ManualFailover)
            })
            .filter_map(|f| {
                let &(j, machine, daemon, cause) = self.term_origin.get(&f.term.0)?;
                // Its acquire may have applied: it counts on that, and cannot know that a
                // transfer gave it the term instead.
                let unsure = cause == C::Switchover && self.unsure_acquires.contains(&(writer, f.term.0));
                (j == writer && machine == n.machine && daemon == n.daemon && f.cause != cause && !unsure)
                    .then(|| format!("term {} recorded as {:?}, taken by {:?}", f.term, f.cause, cause))
            })
            .collect();
        // A cluster founded as a primary cluster was never a standby cluster to promote.
        let mut wrong = wrong;
        if self.p.settings.standby_cluster.is_none() {
            wrong.extend(
                h.forks.iter().filter(|f| !known(f) && f.node == n.name && f.cause == C::ClusterPromotion).map(|f| {
                    format!("term {} recorded as a standby cluster's promotion in a cluster founded as primary", f.term)
                }),
            );
        }
        if !wrong.is_empty() {
            let msg = format!("F1: {} records a fork with the wrong cause: {}", n.name, wrong.join("; "));
            self.violation(msg);
        }
        // F3, a term's forks form a line: a node that promotes twice in one term (its
        // server restarted as a standby on a stale view) forks the second time from the
        // first fork's timeline, never twice from the same parent (a retried promotion
        // reuses the timeline it recorded).
        let n = &self.nodes[writer];
        let mine: Vec<&hacore::Fork> =
            h.forks.iter().filter(|f| f.node == n.name && f.cause != hacore::ForkCause::Upstream).collect();
        let twice = mine
            .iter()
            .enumerate()
            .find_map(|(k, f)| mine[k + 1..].iter().find(|g| g.term == f.term && g.parent == f.parent).map(|g| (f, g)));
        if let Some((f, g)) = twice {
            let msg = format!(
                "F3: {} records timelines {} and {} from the same parent {} in term {}",
                n.name, f.timeline, g.timeline, f.parent, f.term
            );
            self.violation(msg);
        }
    }

    /// O1, a switchover does what the operator asked: the transfer that serves a request
    /// hands the lease to the node it names (if any), from the leader it names (if any),
    /// and not before its scheduled time.
    fn check_transfer(
        &mut self,
        from: usize,
        to: &str,
        served: Option<SwitchoverRequest>,
        sent_to: Option<(usize, u64, Option<u64>)>,
    ) {
        // O2, the candidate can take over: data of this cluster, consistent, and WAL that
        // does not fork from the old leader's (it must be promoted without a rewind).
        if let Some(j) = self.index(to) {
            let (old, new) = (&self.nodes[from].pg, &self.nodes[j].pg);
            let foreign = new.system_id.is_none() || new.system_id != old.system_id;
            // A candidate that had this cluster's data when the leader sent the transfer,
            // and whose machine rebooted while it was on the wire, may have come back
            // with other data (or none): no leader can see that coming, and the
            // candidate's own core must refuse to lead on it (S4 fails any start there).
            let replaced = sent_to.is_some_and(|(k, machine, sid)| {
                k == j && self.nodes[j].machine != machine && sid.is_some() && sid == old.system_id
            });
            let unfit = if foreign && replaced {
                self.check.count("transfer_candidate_data_replaced");
                None
            } else if foreign {
                Some("has no data of this cluster")
            } else if !new.consistent() {
                Some("is not consistent yet")
            } else if !new.wal.is_prefix_of(&old.wal) {
                Some("has WAL that forks from the old leader's")
            } else {
                None
            };
            if let Some(why) = unfit {
                let from = &self.nodes[from].name;
                self.violation(format!("O2: {from} hands the lease to {to}, which {why}"));
            }
        }
        let Some(req) = served else { return };
        let from = self.nodes[from].name.clone();
        let wrong = if req.to.as_deref().is_some_and(|t| t != to) {
            Some(format!("to {:?}", req.to))
        } else if req.from.as_deref().is_some_and(|f| f != from) {
            Some(format!("from {:?}", req.from))
        } else if req.at_wall_ms.is_some_and(|at| self.now < at) {
            Some(format!("at {:?} ms (now {})", req.at_wall_ms, self.now))
        } else {
            None
        };
        if let Some(asked) = wrong {
            self.violation(format!("O1: {from} hands the lease to {to}, serving a switchover asked {asked}"));
        }
        if req.at_wall_ms.is_some() {
            self.check.count("scheduled_switchover_done");
        }
    }

    /// S4: a stale primary never retakes the lease: whoever takes a new term must have data
    /// of this cluster, and no WAL that forks from the last primary's (while that primary's
    /// WAL is intact).
    /// (The data is judged only if the machine that sent the request still runs: one on the
    /// wire when it crashed still applies, and the machine may come back with other data.)
    fn check_stale_acquire(&mut self, i: usize, same_machine: bool) {
        let cluster = self.view().initialize.map(|r| r.value.system_id);
        if same_machine && cluster.is_some() && self.nodes[i].pg.system_id != cluster {
            let msg = format!("S4: {} took a new term without data of this cluster", self.nodes[i].name);
            self.violation(msg);
        }
        let Some((p, epoch)) = self.last_primary else { return };
        if p == i || self.nodes[p].epoch != epoch {
            return;
        }
        let (a, b) = (&self.nodes[i].pg.wal, &self.nodes[p].pg.wal);
        let common = SimPg::common_prefix(a, b);
        if common < a.len() && common < b.len() {
            let msg = format!(
                "S4: {} took a new term with WAL that forks from the last primary {} (at record {common})",
                self.nodes[i].name, self.nodes[p].name
            );
            self.violation(msg);
        }
    }

    /// R8, a node is rebuilt only when its WAL forks: stopping a replica as diverged,
    /// rewinding it or re-cloning it (data of this cluster, no operator request) when its
    /// WAL is a prefix of its source's is churn for nothing, and a sign the lineage test
    /// misjudged (the simulator knows each record's identity).
    fn check_needed_rebuild(&mut self, i: usize, obs: &Observation, d: &hacore::Decision) {
        let leader = obs.dcs.as_ref().ok().and_then(|v| v.leader.as_ref()).map(|l| l.value.holder.clone());
        let rebuild = d.actions.iter().find_map(|a| match a {
            Action::Rewind { from, .. } => Some(("rewinds", from.clone())),
            Action::Clone { from, .. }
                if from != hacore::UPSTREAM && obs.pg.system_id().is_some() && !obs.requests.reinitialize =>
            {
                Some(("re-clones", from.clone()))
            }
            Action::Stop { mode: StopMode::Fast, .. } if d.status.reason == Reason::StoppingDiverged => {
                Some(("stops as diverged", leader.clone()?))
            }
            _ => None,
        });
        let Some((what, from)) = rebuild else { return };
        let Some(j) = self.index(&from).filter(|&j| j != i) else { return };
        let (mine, theirs) = (&self.nodes[i].pg.wal, &self.nodes[j].pg.wal);
        if self.nodes[i].pg.dead_target().is_some_and(|(t, _)| !self.nodes[j].pg.on_line(t)) {
            return; // it would never follow: PostgreSQL recovers towards a dead timeline
        }
        if !mine.is_empty() && mine.is_prefix_of(theirs) {
            let msg = format!(
                "R8: {} {what} although its WAL ({} records) is a prefix of {from}'s ({} records): {}",
                self.nodes[i].name,
                mine.len(),
                theirs.len(),
                d.status.detail
            );
            self.violation(msg);
        }
    }

    /// S4: a node never streams from an upstream whose history forks from its own.
    fn check_not_diverged(&mut self, i: usize, u: usize, what: &str) {
        let (a, b) = (&self.nodes[i].pg.wal, &self.nodes[u].pg.wal);
        if a.is_empty() || b.is_empty() {
            return;
        }
        let common = SimPg::common_prefix(a, b);
        if common < a.len() && common < b.len() {
            let msg = format!(
                "S4: {} {what} {} although their WAL forked at record {common} ({} vs {} records)",
                self.nodes[i].name,
                self.nodes[u].name,
                a.len(),
                b.len()
            );
            self.violation(msg);
        }
    }

    // ----- faults -------------------------------------------------------------------------

    fn resolve(&mut self, t: Target) -> usize {
        match t {
            Target::Node(i) => i.min(self.nodes.len() - 1),
            Target::Primary => self.writable().first().copied().or_else(|| self.leader()).unwrap_or(0),
            Target::Replica => {
                let p = self.writable().first().copied().or_else(|| self.leader());
                let others: Vec<usize> = (0..self.nodes.len()).filter(|&i| Some(i) != p).collect();
                others[self.rng.range(0, others.len() as u64 - 1) as usize]
            }
        }
    }

    fn cut_dcs(&mut self, i: usize, dir: Dir, delta: i32) {
        let apply = |c: &mut u32| *c = (*c as i32 + delta).max(0) as u32;
        if matches!(dir, Dir::Both | Dir::Out) {
            apply(&mut self.links.dcs_out[i]);
        }
        if matches!(dir, Dir::Both | Dir::In) {
            apply(&mut self.links.dcs_in[i]);
        }
    }

    fn cut_peer(&mut self, a: usize, b: usize, dir: Dir, delta: i32) {
        let apply = |c: &mut u32| *c = (*c as i32 + delta).max(0) as u32;
        if matches!(dir, Dir::Both | Dir::Out) {
            apply(&mut self.links.peer[a][b]);
        }
        if matches!(dir, Dir::Both | Dir::In) {
            apply(&mut self.links.peer[b][a]);
        }
    }

    /// Applies a fault now (tests and the scenario runner call this directly). Once the run
    /// has healed (the liveness phase) no fault starts: this does nothing then.
    pub fn inject(&mut self, fault: Fault) {
        let k = self.faults.len();
        self.faults.push(fault);
        self.fault_targets.push(Vec::new());
        self.fault_start(k);
    }

    fn fault_start(&mut self, k: usize) {
        if self.healed {
            return;
        }
        let f = self.faults[k];
        let mut targets = Vec::new();
        let desc;
        match f.kind {
            FaultKind::Crash(t) => {
                let i = self.resolve(t);
                targets.push(i);
                desc = format!("crash {}", self.nodes[i].name);
                self.crash(i);
                self.check.count("fault_crash");
            }
            FaultKind::KillPg(t) => {
                let i = self.resolve(t);
                desc = format!("kill postgres on {}", self.nodes[i].name);
                self.nodes[i].pg.running = false;
                self.nodes[i].pg.streaming = false;
                self.check.count("fault_kill_pg");
            }
            FaultKind::PauseDaemon(t) => {
                let i = self.resolve(t);
                targets.push(i);
                desc = format!("pause daemon {}", self.nodes[i].name);
                self.nodes[i].paused = true;
                if f.dur > self.p.settings.ttl {
                    self.check.count("fault_pause_longer_than_ttl");
                }
                self.check.count("fault_pause_daemon");
            }
            FaultKind::HangPg(t) => {
                let i = self.resolve(t);
                targets.push(i);
                desc = format!("hang postgres on {}", self.nodes[i].name);
                self.nodes[i].pg.hung = true;
                self.check.count("fault_hang_pg");
            }
            FaultKind::CutDcs(t, dir) => {
                let i = self.resolve(t);
                targets.push(i);
                desc = format!("cut {} from the store ({dir})", self.nodes[i].name);
                self.cut_dcs(i, dir, 1);
                self.check.count(if dir == Dir::Both { "fault_cut_dcs" } else { "fault_cut_dcs_one_way" });
            }
            FaultKind::CutPeer(a, b, dir) => {
                let (a, b) = (self.resolve(a), self.resolve(b));
                targets.extend([a, b]);
                desc = format!("cut {} from {} ({dir})", self.nodes[a].name, self.nodes[b].name);
                if a != b {
                    self.cut_peer(a, b, dir, 1);
                    self.check.count("fault_cut_peer");
                }
            }
            FaultKind::Isolate(t) => {
                let i = self.resolve(t);
                targets.push(i);
                desc = format!("isolate {}", self.nodes[i].name);
                self.cut_dcs(i, Dir::Both, 1);
                for j in 0..self.nodes.len() {
                    if j != i {
                        self.cut_peer(i, j, Dir::Both, 1);
                    }
                }
                self.check.count("fault_isolate");
            }
            FaultKind::DcsOutage => {
                desc = "store outage".into();
                targets.push(0); // a marker: `heal` clears it, and the end then does nothing
                self.store_down += 1;
                self.store_refuses = self.rng.chance(0.5);
                self.check.count("fault_dcs_outage");
            }
            FaultKind::StoreLeaderChange => {
                desc = "store leader change (leases extended)".into();
                let t = self.store_now();
                self.store.extend_all_leases(t);
                self.expire_at = None;
                self.schedule_expiry();
                self.check.count("fault_store_leader_change");
            }
            FaultKind::ClockJump(t, ms) => {
                let i = self.resolve(t);
                desc = format!("clock of {} jumps {ms} ms", self.nodes[i].name);
                let now = self.now;
                self.nodes[i].clock.jump(now, ms);
                if let Some((deadline, _)) = self.nodes[i].guard {
                    let at = self.nodes[i].clock.global(deadline);
                    let machine = self.nodes[i].machine;
                    self.push(at, Ev::Guard { node: i, deadline, machine });
                }
                self.check.count("fault_clock_jump");
            }
            FaultKind::Drift(t, ppm) => {
                let i = self.resolve(t);
                let bound = self.p.safety.max_clock_drift_ppm as i64;
                let ppm = ppm.clamp(-bound, bound);
                desc = format!("clock of {} drifts {ppm} ppm", self.nodes[i].name);
                let now = self.now;
                self.nodes[i].clock.set_drift(now, ppm);
                if let Some((deadline, _)) = self.nodes[i].guard {
                    // A faster clock reaches the guard's deadline earlier.
                    let at = self.nodes[i].clock.global(deadline);
                    let machine = self.nodes[i].machine;
                    self.push(at, Ev::Guard { node: i, deadline, machine });
                }
                self.check.count("fault_drift");
            }
            FaultKind::SlowPg(t, x) => {
                let i = self.resolve(t);
                targets.push(i);
                desc = format!("postgres on {} {x}x slower", self.nodes[i].name);
                self.nodes[i].slow = x.max(1);
                self.check.count("fault_slow_pg");
            }
            FaultKind::FailPg(t) => {
                let i = self.resolve(t);
                targets.push(i);
                desc = format!("postgres commands fail on {}", self.nodes[i].name);
                self.nodes[i].fail_pg += 1;
                self.check.count("fault_fail_pg");
            }
            FaultKind::FailPgOnce(t) => {
                let i = self.resolve(t);
                targets.push(i);
                desc = format!("the next postgres command fails on {}", self.nodes[i].name);
                self.nodes[i].fail_next += 1;
                self.check.count("fault_fail_pg_once");
            }
            FaultKind::StaleReads(t) => {
                let i = self.resolve(t);
                targets.push(i);
                desc = format!("stale reads on {}", self.nodes[i].name);
                let view = self.view();
                self.nodes[i].stale_view = Some(view);
                self.check.count("fault_stale_reads");
            }
            FaultKind::Switchover { to, from, delay } => {
                let to = to.map(|t| self.resolve(t)).map(|i| self.nodes[i].name.clone());
                let from = from.map(|t| self.resolve(t)).map(|i| self.nodes[i].name.clone());
                desc = format!(
                    "operator: switchover to {}{}{}",
                    to.as_deref().unwrap_or("the best"),
                    from.as_deref().map(|f| format!(" from {f}")).unwrap_or_default(),
                    if delay > 0 { format!(" in {delay} ms") } else { String::new() },
                );
                let at = (delay > 0).then_some(self.now + delay);
                self.operator_request(SwitchoverRequest { kind: SwitchoverKind::Switchover, from, to, at_wall_ms: at });
                self.check.count("operator_switchover");
                if delay > 0 {
                    self.check.count("operator_switchover_scheduled");
                }
            }
            FaultKind::CancelSwitchover => {
                // As `hashell switchover --cancel` does: delete the request read.
                desc = match self.store.switchover() {
                    Some((v, _)) if self.store_down == 0 => {
                        let op = DcsOp::Put(Write::delete(hacore::dcs::Key::Switchover, Expect::Version(v)));
                        let _ = self.store_changed_by(|s, t| s.apply("cli", &op, t, t));
                        self.check.count("operator_cancel_switchover");
                        "operator: cancel the switchover".into()
                    }
                    Some(_) => "operator: cancel the switchover: the store is down".into(),
                    None => "operator: cancel the switchover: none pending".into(),
                };
            }
            FaultKind::Pause | FaultKind::Resume => {
                let paused = f.kind == FaultKind::Pause;
                let what = if paused { "pause" } else { "resume" };
                desc = match self.edit_config(|c| c.paused = paused) {
                    Ok(()) => format!("operator: {what}"),
                    Err(e) => format!("operator: {what} refused: {e}"),
                };
                if paused {
                    self.check.count("operator_pause");
                }
            }
            FaultKind::SetTtl(ttl) => {
                self.ttl_max = self.ttl_max.max(ttl);
                desc = match self.edit_config(|c| c.ttl = ttl) {
                    Ok(()) => format!("operator: ttl {ttl} ms"),
                    Err(e) => format!("operator: ttl {ttl} ms refused: {e}"),
                };
                self.check.count("operator_set_ttl");
            }
            FaultKind::Restart(t) => {
                let i = self.resolve(t);
                desc = format!("operator: restart postgres on {}", self.nodes[i].name);
                let ttl = self.nodes[i].cfg.defaults.ttl;
                self.nodes[i].restart_until = Some(self.now + ttl);
                self.check.count("operator_restart");
            }
            FaultKind::Reinitialize(t) => {
                let i = self.resolve(t);
                let n = &self.nodes[i];
                // Refused as hashell refuses it: on the leader, before the first read, paused.
                let refused =
                    if n.status.leader.as_deref() == Some(n.name.as_str()) || n.status.role == MemberRole::Primary {
                        Some("the node leads")
                    } else if n.status.reason == Reason::Starting {
                        Some("the node has not read the store yet")
                    } else if n.status.paused {
                        Some("the cluster is paused")
                    } else {
                        None
                    };
                desc = match refused {
                    Some(why) => format!("operator: reinitialize {} refused: {why}", n.name),
                    None => format!("operator: reinitialize {}", n.name),
                };
                if refused.is_none() {
                    self.nodes[i].reinit = true;
                    self.nudge(i, 0);
                }
                self.check.count("operator_reinitialize");
            }
            FaultKind::BadConfig => {
                let current = self.view().config;
                let good = current.as_ref().map_or_else(|| self.p.settings.clone(), |c| c.value.clone());
                let mut bad = good.clone();
                // The ttl in seconds where milliseconds are meant.
                bad.ttl = (good.ttl / 1_000).max(1);
                let expect = current.map_or(Expect::Absent, |c| Expect::Version(c.version));
                let op = DcsOp::Put(Write::put(Value::Config(bad.clone()), expect));
                desc = if self.store_down > 0
                    || bad.validate(&self.p.safety).is_ok()
                    || good.validate(&self.p.safety).is_err()
                {
                    "operator: write a ttl in seconds into the store: not written".into()
                } else if self.store_changed_by(|s, t| s.apply("cli", &op, t, t)).is_ok() {
                    self.good_config = Some(good);
                    targets.push(0); // a marker: `heal` clears it, and the end then does nothing
                    self.check.count("fault_bad_config");
                    format!("operator: write ttl {} (seconds, not ms) into the store", bad.ttl)
                } else {
                    "operator: write a ttl in seconds into the store: refused".into()
                };
            }
            FaultKind::CorruptHistory(cycle) => {
                let view = self.view();
                let before = view.history.as_ref().map(|h| h.value.clone());
                let written = if self.store_down > 0 {
                    false
                } else if cycle {
                    // The newest fork goes back to the timeline its parent came from.
                    let mut bad = before.clone().unwrap_or_default();
                    let forks = std::sync::Arc::make_mut(&mut bad.forks);
                    let base = view.initialize.as_ref().map_or(hacore::types::Timeline(1), |i| i.value.base_timeline);
                    let tip = forks.last().map_or(base, |f| f.timeline);
                    let back = forks.last().map_or(base, |f| f.parent);
                    let mut fork = forks.last().cloned().unwrap_or_else(|| hacore::Fork {
                        parent: base,
                        lsn: hacore::types::Lsn(0),
                        timeline: base,
                        term: Term(0),
                        node: "operator".into(),
                        cause: hacore::ForkCause::Failover,
                        wall_time_ms: 0,
                    });
                    (fork.parent, fork.timeline) = (tip, back);
                    forks.push(fork);
                    let expect = view.history.as_ref().map_or(Expect::Absent, |h| Expect::Version(h.version));
                    let op = DcsOp::Put(Write::put(Value::History(bad), expect));
                    self.store_changed_by(|s, t| s.apply("cli", &op, t, t)).is_ok()
                } else {
                    self.store_changed_by(|s, _| s.inject_corrupt(hacore::dcs::Key::History, "simulated garbage"));
                    true
                };
                desc = match (written, cycle) {
                    (false, _) => "operator: overwrite the history key: not written".into(),
                    (true, true) => "operator: write a history whose newest fork goes back to an older timeline".into(),
                    (true, false) => "an undecodable history key replaces the history".into(),
                };
                if written {
                    // What the operator puts back: the last usable history (an earlier
                    // fault's overwrite may still be in place).
                    if view.history_fault().is_none() || self.good_history.is_none() {
                        self.good_history = Some(before);
                    }
                    targets.push(0); // a marker, as for `bad-config`
                    self.check.count("fault_corrupt_history");
                }
            }
            FaultKind::ForeignData(t) => {
                let i = self.resolve(t);
                let name = self.nodes[i].name.clone();
                // Only where this cluster's data survives elsewhere: not on the leader or the
                // last primary, not on a published synchronous standby (each may hold the
                // only copy of acknowledged writes), and with another member that could
                // lead. Losing the last copy is a restore from backup, not a failover's
                // business.
                let leader = self.writable().first().copied().or_else(|| self.leader());
                let cluster = self.nodes.iter().find_map(|n| n.pg.system_id.filter(|&s| s != FOREIGN_SYSTEM_ID));
                let in_sync = self.store.sync().is_some_and(|s| s.leader == name || s.members.contains(&name))
                    || self.last_primary.is_some_and(|(p, _)| p == i);
                let spare = (0..self.nodes.len()).any(|j| {
                    j != i
                        && Some(j) != leader
                        && self.nodes[j].cfg.tags.can_lead()
                        && self.nodes[j].pg.system_id == cluster
                });
                if Some(i) == leader || in_sync || !spare || self.nodes[i].pg.system_id == Some(FOREIGN_SYSTEM_ID) {
                    desc = format!("{name} would reboot with another cluster's data directory: not done");
                } else {
                    targets.push(i);
                    desc = format!("{name} reboots with another cluster's data directory");
                    self.crash(i);
                    self.nodes[i].pg = self.foreign_data();
                    self.nodes[i].epoch += 1;
                    self.restart(i);
                    self.check.count("fault_foreign_data");
                }
            }
            FaultKind::CorruptLeader => {
                desc = "an undecodable leader key replaces the leader record".into();
                self.store_changed_by(|s, _| s.inject_corrupt(hacore::dcs::Key::Leader, "simulated garbage"));
                self.check.count("fault_corrupt_leader");
            }
            FaultKind::WipeStore => {
                desc = self.wipe_store();
                self.check.count("fault_wipe_store");
            }
            FaultKind::RestartDaemon(t) => {
                let i = self.resolve(t);
                desc = format!("restart the daemon on {}", self.nodes[i].name);
                self.restart_daemon(i);
                self.check.count("fault_restart_daemon");
            }
            FaultKind::Failover(t) => {
                let i = self.resolve(t);
                desc = format!("operator: failover to {}", self.nodes[i].name);
                let to = Some(self.nodes[i].name.clone());
                self.operator_request(SwitchoverRequest {
                    kind: SwitchoverKind::Failover,
                    from: None,
                    to,
                    at_wall_ms: None,
                });
                self.check.count("operator_failover");
            }
            FaultKind::UpstreamDown => {
                desc = match self.upstream.as_mut() {
                    Some(u) => {
                        u.up = false;
                        "the upstream is unreachable".into()
                    }
                    None => "upstream-down: not a standby cluster".into(),
                };
                targets.push(0);
                self.check.count("fault_upstream_down");
            }
            FaultKind::UpstreamFailover => {
                let now = self.now;
                desc = match self.upstream.as_mut() {
                    Some(u) => {
                        let next = u.pg.timeline + 1;
                        u.pg.promote(next, now);
                        format!("the upstream fails over to timeline {next}")
                    }
                    None => "upstream-failover: not a standby cluster".into(),
                };
                self.check.count("fault_upstream_failover");
            }
            FaultKind::PromoteCluster => {
                desc = match self.edit_config(|c| c.standby_cluster = None) {
                    Ok(()) => {
                        self.standby_active = false;
                        "operator: promote the standby cluster".into()
                    }
                    Err(e) => format!("operator: promote-cluster refused: {e}"),
                };
                self.check.count("operator_promote_cluster");
            }
        }
        self.trace.event(self.now, "fault", &[("what", &desc)]);
        self.fault_log.push((self.now, self.now + f.dur, desc));
        self.fault_targets[k] = targets;
        if f.kind.lasts() {
            self.push(self.now + f.dur, Ev::FaultEnd(k));
        }
    }

    fn fault_end(&mut self, k: usize) {
        let f = self.faults[k];
        let targets = std::mem::take(&mut self.fault_targets[k]);
        if targets.is_empty() {
            return; // `heal` already ended it
        }
        match f.kind {
            FaultKind::Crash(_) => self.restart(targets[0]),
            FaultKind::PauseDaemon(_) => self.resume(targets[0]),
            FaultKind::HangPg(_) => self.nodes[targets[0]].pg.hung = false,
            FaultKind::CutDcs(_, dir) => self.cut_dcs(targets[0], dir, -1),
            FaultKind::CutPeer(_, _, dir) if targets[0] != targets[1] => self.cut_peer(targets[0], targets[1], dir, -1),
            FaultKind::Isolate(_) => {
                let i = targets[0];
                self.cut_dcs(i, Dir::Both, -1);
                for j in 0..self.nodes.len() {
                    if j != i {
                        self.cut_peer(i, j, Dir::Both, -1);
                    }
                }
            }
            FaultKind::BadConfig => self.fix_bad_config(),
            FaultKind::CorruptHistory(_) => self.fix_history(),
            FaultKind::ForeignData(_) => self.remove_foreign_data(targets[0]),
            FaultKind::DcsOutage => {
                self.store_down = self.store_down.saturating_sub(1);
                if self.store_down == 0 && self.p.mode == DcsMode::Etcd {
                    // A recovering etcd elects a leader, which extends every lease.
                    let t = self.store_now();
                    self.store.extend_all_leases(t);
                    self.expire_at = None;
                    self.schedule_expiry();
                }
            }
            FaultKind::SlowPg(..) => self.end_slowness(targets[0]),
            FaultKind::FailPg(_) => self.nodes[targets[0]].fail_pg = self.nodes[targets[0]].fail_pg.saturating_sub(1),
            FaultKind::StaleReads(_) => self.nodes[targets[0]].stale_view = None,
            FaultKind::UpstreamDown => {
                if let Some(u) = self.upstream.as_mut() {
                    u.up = true;
                }
            }
            _ => {}
        }
        self.trace.event(self.now, "fault_end", &[("what", f.kind.name())]);
    }

    fn crash(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if !n.up {
            return;
        }
        n.up = false;
        n.machine += 1;
        n.reinit = false;
        n.pg.running = false;
        n.pg.streaming = false;
        n.pg.hung = false;
        n.paused = false;
        n.ops.clear();
        n.outcomes.clear();
        n.held.clear();
        n.background.clear();
        n.background_reqs.clear();
        n.guard = None;
        n.phase = Phase::Idle;
        n.wake_at = None;
        n.wake_gen += 1;
        n.stale_view = None;
    }

    /// Another cluster's data directory: the timelines of the most advanced member's data
    /// (the same switch points), other records (none of this cluster's writes), and more
    /// of them. In half of the draws that is all (only the system identifier
    /// tells it apart); in the other half the other cluster went on to later timelines
    /// (its history is then newer than any this cluster's store holds).
    fn foreign_data(&mut self) -> SimPg {
        let later = self.rng.chance(0.5).then(|| self.rng.range(1, 4) as u32);
        let best = self.nodes.iter().map(|n| &n.pg).filter(|pg| pg.system_id.is_some()).max_by_key(|pg| pg.end());
        let mut pg = SimPg { system_id: Some(FOREIGN_SYSTEM_ID), role: Some(Role::Primary), ..SimPg::default() };
        let Some(best) = best else { return pg };
        pg.history = best.history.clone();
        pg.timeline = best.timeline;
        pg.wal = crate::pg::foreign_wal(best.wal.len() + 200);
        pg.replayed = pg.wal.len();
        if let Some(k) = later {
            pg.promote(pg.timeline + k, self.now);
        }
        pg.min_recovery = pg.wal.len();
        pg
    }

    /// The operator removes another cluster's data directory from member `i` (if it is
    /// still there): the machine's services are stopped, the directory deleted and the
    /// services started again; the member clones anew.
    fn remove_foreign_data(&mut self, i: usize) {
        if self.nodes[i].pg.system_id == Some(FOREIGN_SYSTEM_ID) {
            let up = self.nodes[i].up;
            self.crash(i);
            self.nodes[i].pg = SimPg::default();
            self.nodes[i].epoch += 1;
            if up {
                self.restart(i);
            }
        }
    }

    /// PostgreSQL is fast again: operations started while it was slow end by the time
    /// they would have taken at normal speed.
    fn end_slowness(&mut self, i: usize) {
        self.nodes[i].slow = 1;
        let machine = self.nodes[i].machine;
        for (seq, end) in std::mem::take(&mut self.nodes[i].slowed) {
            if self.nodes[i].ops.contains_key(&seq) {
                self.push(end.max(self.now), Ev::OpDone { node: i, seq, machine });
            }
        }
    }

    /// The daemon alone dies and starts again (a crash, an upgrade): PostgreSQL and the
    /// guard run on; the new process starts from empty memory (hashell does not persist
    /// it, only the cluster settings it last applied), and what the old one had in flight (store requests, operations) never reports
    /// to it.
    pub fn restart_daemon(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if !n.up {
            return;
        }
        n.daemon += 1;
        n.fresh = true;
        n.failed.clear();
        n.reinit = false;
        // The shell's settings cache (`<data_dir>.settings.json`): the cluster settings
        // last applied stand in for the file's until the store's are read and valid.
        if let Some((_, s)) = n.mem.applied.take() {
            n.cfg.defaults = s;
        }
        n.mem = Memory::default();
        n.unresponsive_seen = None;
        n.rejected_told = None;
        n.status_written = None;
        n.status = NodeStatus::default();
        n.paused = false;
        n.outcomes.clear();
        n.held.clear();
        n.background.clear();
        n.background_reqs.clear();
        n.phase = Phase::Idle;
        n.wake_at = None;
        n.wake_gen += 1;
        n.wake_soon = false;
        n.urgent = false;
        n.moved = false;
        n.quick_steps = 0;
        self.schedule_wake(i, self.now + 200);
    }

    fn restart(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if n.up {
            return;
        }
        n.up = true;
        n.fresh = true;
        n.failed.clear();
        // The shell's settings cache (`<data_dir>.settings.json`): the cluster settings
        // last applied stand in for the file's until the store's are read and valid.
        if let Some((_, s)) = n.mem.applied.take() {
            n.cfg.defaults = s;
        }
        n.mem = Memory::default();
        n.unresponsive_seen = None;
        n.rejected_told = None;
        n.status_written = None;
        n.status = NodeStatus::default();
        self.schedule_wake(i, self.now);
    }

    fn resume(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if !n.paused {
            return;
        }
        n.paused = false;
        let held = std::mem::take(&mut n.held);
        for ev in held {
            self.push(self.now, ev);
        }
        if matches!(self.nodes[i].phase, Phase::Idle) {
            self.schedule_wake(i, self.now);
        }
    }

    /// Edits the `config` key as `edit-config` would (CAS on its version).
    /// An operator edits the cluster settings; like the real CLI, an edit that fails
    /// validation (or finds the store down) is refused with the reason.
    pub fn edit_config(&mut self, f: impl FnOnce(&mut hacore::ClusterSettings)) -> Result<(), String> {
        if self.store_down > 0 {
            return Err("the store is down".into());
        }
        let view = self.view();
        let (mut settings, expect) = match view.config {
            Some(c) => (c.value, Expect::Version(c.version)),
            None => (self.p.settings.clone(), Expect::Absent),
        };
        f(&mut settings);
        if let Err(errs) = settings.validate(&self.p.safety) {
            let why: Vec<String> = errs.iter().map(|e| format!("{}: {}", e.field, e.message)).collect();
            return Err(why.join("; "));
        }
        let op = DcsOp::Put(Write::put(Value::Config(settings), expect));
        self.store_changed_by(|s, t| s.apply("cli", &op, t, t)).map(|_| ()).map_err(|e| format!("{e:?}"))
    }

    /// The operator puts back the settings a bad write replaced, if the store still holds
    /// settings that fail validation (and is up).
    fn fix_bad_config(&mut self) {
        let Some(c) = self.view().config.filter(|c| c.value.validate(&self.p.safety).is_err()) else { return };
        let Some(good) = self.good_config.clone() else { return };
        if self.store_down > 0 {
            return;
        }
        let op = DcsOp::Put(Write::put(Value::Config(good), Expect::Version(c.version)));
        if self.store_changed_by(|s, t| s.apply("cli", &op, t, t)).is_ok() {
            self.trace.event(self.now, "fault", &[("what", "operator: put the previous settings back")]);
        }
    }

    /// The operator puts back the history an unusable one overwrote, if the leader has
    /// not written it again already.
    fn fix_history(&mut self) {
        if self.store_down > 0 {
            return; // `heal` tries again
        }
        let Some(good) = self.good_history.take() else { return };
        let view = self.view();
        if view.history_fault().is_none() {
            return;
        }
        let expect = view.history_expect();
        let op = match good {
            Some(h) => DcsOp::Put(Write::put(Value::History(h), expect)),
            None => DcsOp::Put(Write::delete(hacore::dcs::Key::History, expect)),
        };
        if self.store_changed_by(|s, t| s.apply("cli", &op, t, t)).is_ok() {
            self.trace.event(self.now, "fault", &[("what", "operator: put the overwritten history back")]);
        }
    }

    fn operator_request(&mut self, request: SwitchoverRequest) {
        let value = Value::Switchover(request);
        let op = DcsOp::Put(Write::put(value, Expect::Absent));
        if self.store_down == 0 && self.store_changed_by(|s, t| s.apply("cli", &op, t, t)).is_ok() {
            let locals = self.nodes.iter().map(|n| n.local(self.now)).collect();
            self.request_at = self.store.switchover().map(|(v, _)| (v, locals));
        }
    }

    /// Ends every fault (links up, store up, daemons resumed, crashed machines back).
    pub fn heal(&mut self) {
        self.healed = true;
        for i in 0..self.nodes.len() {
            self.links.dcs_in[i] = 0;
            self.links.dcs_out[i] = 0;
            for j in 0..self.nodes.len() {
                self.links.peer[i][j] = 0;
            }
            self.nodes[i].pg.hung = false;
            self.end_slowness(i);
            self.nodes[i].fail_pg = 0;
            self.nodes[i].fail_next = 0;
            self.nodes[i].start_broken = false;
            self.nodes[i].stale_view = None;
            self.nodes[i].restart_until = None;
            self.remove_foreign_data(i);
            self.resume(i);
            self.restart(i);
        }
        if let Some(u) = self.upstream.as_mut() {
            u.up = true;
        }
        if self.store_down > 0 {
            self.store_down = 0;
            if self.p.mode == DcsMode::Etcd {
                let t = self.store_now();
                self.store.extend_all_leases(t);
                self.expire_at = None;
                self.schedule_expiry();
            }
        }
        // Operators stop asking for switchovers, and resume a paused cluster (L1 is about
        // a cluster that is not paused).
        // They also put back the ttl the run was drawn with (the L1 bound is counted in it).
        self.fix_bad_config();
        self.fix_history();
        let ttl = self.p.settings.ttl;
        if self.view().config.is_some_and(|c| c.value.paused || c.value.ttl != ttl) {
            let _ = self.edit_config(|c| {
                c.paused = false;
                c.ttl = ttl;
            });
        }
        let clear = DcsOp::Put(Write::delete(hacore::dcs::Key::Switchover, Expect::Any));
        let _ = self.store_changed_by(|s, t| s.apply("cli", &clear, t, t));
        // An undecodable leader key is left for the members to replace once it aged the
        // longest ttl they saw: deleting it at once, as an operator might, lets a new leader
        // in while the holder whose record it overwrote is still writable on its lease
        // (S1 in 6 of 10,000 seeds), so the runbook says to wait a ttl first.
        // Pending fault ends find nothing left to end.
        for t in &mut self.fault_targets {
            t.clear();
        }
        self.trace.event(self.now, "heal", &[]);
    }

    /// After L1, an operator asks for a switchover to a replica that can take it: streaming
    /// from the leader and, in synchronous mode, a member of the published set (the most
    /// advanced such replica, ties to the smaller name). Returns the leader and the target.
    pub fn request_switchover_for_good(&mut self) -> Option<(usize, usize)> {
        if self.standby_active {
            return None;
        }
        let l = self.leader()?;
        let to = self.ready_replica(l)?;
        self.ask_switchover_to(to);
        Some((l, to))
    }

    /// An operator's switchover request naming `from` as the leader to hand over.
    pub fn ask_switchover_from(&mut self, from: usize) {
        let name = self.nodes[from].name.clone();
        self.operator_request(SwitchoverRequest {
            kind: SwitchoverKind::Switchover,
            from: Some(name.clone()),
            to: None,
            at_wall_ms: None,
        });
        self.trace.event(self.now, "switchover_asked", &[("from", &name)]);
    }

    /// An operator asks node `i` to restart PostgreSQL (`POST /restart`, which waits up to
    /// a ttl for the daemon to take the request up).
    pub fn ask_restart(&mut self, i: usize) {
        let ttl = self.p.settings.ttl;
        self.nodes[i].restart_until = Some(self.now + ttl);
        let name = self.nodes[i].name.clone();
        self.trace.event(self.now, "restart_asked", &[("node", &name)]);
    }

    /// PostgreSQL operations on node `i` take `x` times longer from now on (1: normal
    /// speed again), as a `slow-pg` fault.
    pub fn slow_pg(&mut self, i: usize, x: u64) {
        if x <= 1 {
            self.end_slowness(i);
        } else {
            self.nodes[i].slow = x;
        }
        let name = self.nodes[i].name.clone();
        self.trace.event(self.now, "slow_pg", &[("node", &name), ("times", &x.to_string())]);
    }

    /// PostgreSQL alone is killed on node `i`, as a `kill-pg` fault.
    pub fn kill_pg(&mut self, i: usize) {
        self.nodes[i].pg.running = false;
        self.nodes[i].pg.streaming = false;
        let name = self.nodes[i].name.clone();
        self.trace.event(self.now, "pg_killed", &[("node", &name)]);
    }

    /// Every PostgreSQL operation on node `i` fails from now on (`true`), or none (`false`).
    pub fn fail_ops(&mut self, i: usize, fail: bool) {
        self.nodes[i].fail_next = if fail { u32::MAX } else { 0 };
        let name = self.nodes[i].name.clone();
        self.trace.event(self.now, if fail { "ops_fail" } else { "ops_work" }, &[("node", &name)]);
    }

    /// Node `i`'s next PostgreSQL operation to finish fails (a `fail-pg-once` fault).
    pub fn fail_next_op(&mut self, i: usize) {
        self.nodes[i].fail_next += 1;
        let name = self.nodes[i].name.clone();
        self.trace.event(self.now, "next_op_fails", &[("node", &name)]);
    }

    /// The store is down for everyone (`true`) or back (`false`), as a `dcs-outage` fault.
    pub fn set_store_down(&mut self, down: bool) {
        if down {
            self.store_down += 1;
            self.store_refuses = false;
        } else {
            self.store_down = self.store_down.saturating_sub(1);
            if self.store_down == 0 && self.p.mode == DcsMode::Etcd {
                let t = self.store_now();
                self.store.extend_all_leases(t);
                self.expire_at = None;
                self.schedule_expiry();
            }
        }
        self.trace.event(self.now, if down { "store_down" } else { "store_up" }, &[]);
    }

    /// Cuts node `i` off from the store both ways (`true`), or restores the link.
    /// Freezes node `i`'s daemon (it neither steps nor answers peers) or thaws it.
    pub fn freeze_daemon(&mut self, i: usize, frozen: bool) {
        if frozen {
            self.nodes[i].paused = true;
        } else {
            self.resume(i);
        }
    }

    pub fn cut_from_store(&mut self, i: usize, cut: bool) {
        self.cut_dcs(i, Dir::Both, if cut { 1 } else { -1 });
    }

    /// A replica of the leader `l` that could take over now: streaming from it, tags that
    /// let it lead, WAL along the leader's, and in synchronous mode a member of the
    /// published set. The most advanced, ties to the smaller name.
    pub fn ready_replica(&self, l: usize) -> Option<usize> {
        let sync = self.p.settings.synchronous_mode.enabled();
        let members = self.store.sync().map(|s| s.members.clone()).unwrap_or_default();
        let leader = &self.nodes[l];
        (0..self.nodes.len())
            .filter(|&j| {
                let n = &self.nodes[j];
                j != l
                    && n.up
                    && n.cfg.tags.can_lead()
                    && n.pg.streaming
                    && n.pg.upstream_idx == Some(l)
                    && n.pg.wal.is_prefix_of(&leader.pg.wal)
                    && (!sync || members.contains(&n.name))
            })
            .max_by_key(|&j| (self.nodes[j].pg.end(), std::cmp::Reverse(j)))
    }

    /// Whether node `l` holds the only primary's data: every other machine is up and its
    /// PostgreSQL a standby (so no other daemon would found a cluster on an empty store).
    pub fn only_primary_data(&self, l: usize) -> bool {
        (0..self.nodes.len()).all(|j| j == l || (self.nodes[j].up && self.nodes[j].pg.role == Some(Role::Standby)))
    }

    /// An operator empties the store (every key of the cluster, the term included), as
    /// the `wipe-store` fault does; also after the heal, where faults no longer start.
    pub fn wipe_store(&mut self) -> String {
        if self.store_down > 0 {
            return "operator: empty the store refused: the store is down".into();
        }
        self.store_changed_by(|s, _| s.wipe());
        // Terms start again from 1: what was recorded of the old ones is moot.
        self.term_origin.clear();
        self.unsure_acquires.clear();
        self.transferred = None;
        self.request_at = None;
        let desc = "operator: empty the store".to_string();
        if self.healed {
            self.trace.event(self.now, "store_wiped", &[]);
        }
        desc
    }

    /// The runbook's recovery onto an empty store (6.2): every daemon is stopped (a primary
    /// still running is killed by its guard at its deadline), the store is emptied, and the
    /// daemon of the most advanced node starts alone. Returns that node.
    pub fn rebuild_store_begin(&mut self) -> Option<usize> {
        for n in &mut self.nodes {
            n.paused = true;
        }
        let ttl = self.p.settings.ttl;
        self.run_until_cond(2 * ttl, |w| w.writable().is_empty())?;
        // After the heal no fault starts: empty it directly.
        self.wipe_store();
        // The most advanced data: the longest WAL that every other node's is a prefix of
        // or forks from before (normally the last primary's).
        let best = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].up && self.nodes[i].pg.system_id.is_some())
            .max_by_key(|&i| (self.nodes[i].pg.role == Some(Role::Primary), self.nodes[i].pg.end(), Reverse(i)))?;
        self.restart_daemon(best);
        Some(best)
    }

    /// The other daemons start again (the runbook's last step).
    pub fn rebuild_store_rest(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].paused {
                self.restart_daemon(i);
            }
        }
    }

    /// Whether the store holds a switchover or failover request.
    pub fn request_pending(&self) -> bool {
        self.store.switchover().is_some()
    }

    /// An operator's switchover request to `to`.
    pub fn ask_switchover_to(&mut self, to: usize) {
        self.ask_to(SwitchoverKind::Switchover, to, "switchover_asked");
    }

    /// An operator asks for a manual failover to `to`.
    pub fn ask_failover_to(&mut self, to: usize) {
        self.ask_to(SwitchoverKind::Failover, to, "failover_asked");
    }

    fn ask_to(&mut self, kind: SwitchoverKind, to: usize, event: &str) {
        let name = self.nodes[to].name.clone();
        self.operator_request(SwitchoverRequest { kind, from: None, to: Some(name.clone()), at_wall_ms: None });
        self.trace.event(self.now, event, &[("to", &name)]);
    }

    /// Whether the rest could fail over from leader `l`: at least two more machines up, one
    /// of them with WAL that does not fork from the leader's and, in synchronous mode, a
    /// member of the published set, in asynchronous mode within `maximum_lag_on_failover`
    /// of the last published position (in a standby cluster, any); in failsafe mode, named
    /// in the published failsafe set if there is one (S1': the leader may be riding out a
    /// store outage on the answers of that set alone, so nobody else may take the lease;
    /// a member that joined since the leader last published it waits for the next
    /// publication, which a leader stopped for good never makes).
    pub fn failover_possible(&mut self, l: usize) -> bool {
        if self.nodes.iter().filter(|n| n.up).count() < 3 {
            return false;
        }
        let view = self.view();
        let status_lsn = view.status.map_or(Lsn(0), |s| s.value.lsn);
        let failsafe_mode = view.config.map_or(self.p.settings.failsafe_mode, |c| c.value.failsafe_mode);
        let failsafe_set = view.failsafe.filter(|_| failsafe_mode).map(|f| f.value.members);
        let sync = self.p.settings.synchronous_mode.enabled() && !self.standby_active;
        let max_lag = self.p.settings.maximum_lag_on_failover;
        let members = self.store.sync().map(|s| s.members.clone()).unwrap_or_default();
        let leader = &self.nodes[l];
        self.nodes.iter().enumerate().any(|(j, n)| {
            j != l
                && n.up
                && n.cfg.tags.can_lead()
                && n.pg.system_id.is_some()
                && n.pg.wal.is_prefix_of(&leader.pg.wal)
                && failsafe_set.as_ref().is_none_or(|set| set.iter().any(|m| m.name == n.name))
                && if sync {
                    members.contains(&n.name)
                } else {
                    self.standby_active || n.pg.end().0.saturating_add(max_lag) >= status_lsn.0
                }
        })
    }

    /// After L1 the leader's machine stops for good (a majority heals, not everything), if
    /// the settings let the rest fail over ([`World::failover_possible`]). Returns the node
    /// stopped.
    pub fn stop_leader_for_good(&mut self) -> Option<usize> {
        let l = self.leader()?;
        if !self.failover_possible(l) {
            return None;
        }
        let leader = &self.nodes[l];
        let name = leader.name.clone();
        self.crash(l);
        self.trace.event(self.now, "stopped_for_good", &[("node", &name)]);
        Some(l)
    }

    /// Kills PostgreSQL on node `i` and makes every start of it fail (`broken`), or repairs
    /// it (`!broken`).
    pub fn break_start(&mut self, i: usize, broken: bool) {
        let n = &mut self.nodes[i];
        n.start_broken = broken;
        if broken {
            n.pg.running = false;
            n.pg.streaming = false;
            let name = n.name.clone();
            self.trace.event(self.now, "start_broken", &[("node", &name)]);
        }
    }

    /// Whether the store's settings still make this a standby cluster.
    pub fn standby_active(&self) -> bool {
        self.standby_active
    }

    /// After the final failover a replica's machine stops for good (a member removed from
    /// the cluster): the highest-numbered running machine other than the leader. Returns it.
    pub fn remove_replica_for_good(&mut self) -> Option<usize> {
        let l = self.leader()?;
        let gone = (0..self.nodes.len()).rev().find(|&j| j != l && self.nodes[j].up)?;
        let name = self.nodes[gone].name.clone();
        self.crash(gone);
        self.trace.event(self.now, "removed_for_good", &[("node", &name)]);
        Some(gone)
    }

    /// Number of members the store lists as running replicas or primaries.
    pub fn members_up(&mut self) -> usize {
        self.view().members.iter().filter(|m| m.value.role != MemberRole::Stopped).count()
    }
}

/// R5, retries are paced, and a failed rewind is not tried again on the same data: a
/// start, clone or rewind that failed (or timed out) is not issued again (nor a rewind after a failed clone, or the reverse: both rebuild the
/// data) by the same daemon within `loop_wait` of the step that learnt the failure.
/// Records the failures this step learnt; returns what is wrong.
fn retried_too_soon(n: &mut Node, obs: &Observation, d: &hacore::Decision, now: Millis) -> Option<String> {
    use hacore::memory::PgOpKind as K;
    if let Some(p) = n.mem.pending {
        let failed = match obs.outcomes.iter().find(|o| o.id == p.id) {
            // An operation skipped (an earlier action of its batch failed) never ran.
            Some(o) => o.result.is_err() && o.result != Err(Failure::Skipped),
            None => now >= p.give_up_at,
        };
        let succeeded = obs.outcomes.iter().any(|o| o.id == p.id && o.result.is_ok());
        if failed || succeeded {
            // A clone that worked replaced the data a rewind failed on.
            let rebuilt = succeeded && p.kind == K::Clone;
            n.failed.retain(|(k, _)| *k != p.kind && !(rebuilt && *k == K::Rewind));
        }
        if failed {
            n.failed.push((p.kind, now));
        }
    }
    // After a failed pg_rewind the same data is re-cloned (or left for an operator),
    // never rewound again: a rewind that failed half-way leaves a data directory no
    // second rewind can be trusted with.
    if d.actions.iter().any(|a| matches!(a, Action::Rewind { .. })) && n.failed.iter().any(|(k, _)| *k == K::Rewind) {
        return Some(format!("R5: {} rewinds again after a pg_rewind that failed", n.name));
    }
    // A rewind and a clone rebuild the same data directory: one holds the other off too.
    let family = |k: K| if k == K::Rewind { K::Clone } else { k };
    let loop_wait = in_force(&n.cfg, &d.memory).loop_wait;
    d.actions.iter().find_map(|a| {
        let kind = match a {
            Action::StartPrimary { .. } => K::StartPrimary,
            Action::StartReplica { .. } => K::StartReplica,
            Action::Clone { .. } => K::Clone,
            Action::Rewind { .. } => K::Rewind,
            _ => return None,
        };
        let (was, at) = n.failed.iter().find(|(k, at)| family(*k) == family(kind) && now < at + loop_wait)?;
        Some(format!(
            "R5: {} issues {kind:?} {} ms after a {was:?} failed (loop_wait {loop_wait} ms)",
            n.name,
            now - at
        ))
    })
}

/// `(&mut nodes[a], &nodes[b])` for `a != b`.
/// Streams to `me` what `up` wrote until `cutoff` (global ms), if `me`'s WAL is a prefix
/// of `up`'s; a standby follows the upstream's timeline switches.
fn stream(me: &mut Node, up: &SimPg, cutoff: Millis, now: Millis, check: &mut Checker) {
    if !me.pg.wal.is_prefix_of(&up.wal) {
        if me.pg.streaming {
            check.count("stream_refused_diverged");
        }
        me.pg.streaming = false;
        return;
    }
    let start = me.pg.wal.len();
    let mut end = up.wal.partition_point(start, |r| r.at <= cutoff);
    if let Some((dead, fork)) = me.pg.dead_target() {
        // PostgreSQL recovers towards the timeline a promotion that died left: it takes
        // its own timeline up to that fork and no other (a line without that timeline "is
        // not a child" of it), so it waits there for ever.
        if !up.on_line(dead) {
            let own = me.pg.timeline;
            let limit = ((fork.0 / RECORD) as usize).min(end);
            end = start.max((start..limit).find(|&k| up.wal.get(k).is_none_or(|r| r.timeline != own)).unwrap_or(limit));
            if end == start {
                check.count("stream_stuck_on_dead_timeline");
                me.pg.streaming = false;
                return;
            }
        }
    }
    if !me.pg.streaming {
        // A WAL sender starts in `catchup` for as long as the backlog takes to send.
        me.catchup_until = now + 100 + ((end - start) as Millis / 20).min(5_000);
    }
    if end > start {
        me.pg.wal.extend_from(&up.wal, start, end);
        let tl = me.pg.wal.last().map_or(me.pg.timeline, |r| r.timeline);
        if tl != me.pg.timeline || me.pg.history.len() != up.history.iter().filter(|h| h.timeline.0 < tl).count() {
            me.pg.timeline = tl;
            me.pg.history.clear();
            me.pg.history.extend(up.history.iter().filter(|h| h.timeline.0 < tl).copied());
        }
        me.receipts.push_back((now, me.pg.wal.len()));
    }
    me.pg.streaming = true;
}

fn pair(nodes: &mut [Node], a: usize, b: usize) -> (&mut Node, &Node) {
    if a < b {
        let (l, r) = nodes.split_at_mut(b);
        (&mut l[a], &r[0])
    } else {
        let (l, r) = nodes.split_at_mut(a);
        (&mut r[0], &l[b])
    }
}
