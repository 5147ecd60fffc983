//! The decision: [`step`] and the situations it is split into.
//!
//! Order of concerns in one step:
//! 1. learn from outcomes of earlier actions (lease grants, finished operations);
//! 2. adopt the cluster settings; track record ages (observer-clock leases);
//! 3. S1: fence first if PostgreSQL may be writable without a valid lease;
//! 4. the situation: leader / follower / election / bootstrap / DCS unavailable;
//! 5. publish this member's record, keep the node lease alive, record events.

mod bootstrap;
mod election;
mod failsafe;
mod follower;
mod leader;
mod restart;
mod standby;
mod switchover;
mod sync;

pub use failsafe::{answer_failsafe, FailsafeRequest};

use crate::action::{Action, StopMode};
use crate::config::{ClusterSettings, Config};
use crate::dcs::{
    ClusterView, DcsOp, Event, Key, LeaderGuard, LeaderRecord, LeaseModel, MemberRecord, MemberRole, Value, Write,
};
use crate::history::{History, Lineage};
use crate::memory::{FailsafeRound, HeldLease, LastFailure, LeaseOp, LeaseOpKind, Memory, Pending, PgOpKind, Seen};
use crate::observation::{Done, Failure, GuardState, Observation};
use crate::reason::Reason;
use crate::status::{ElectionReport, NodeStatus};
use crate::types::{Millis, NodeName, OpId, Timeline, Version, Versioned, WalPosition};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Longest wait between two loops while something is in flux (see `Cx::busy_wait`).
const BUSY_WAIT_MAX: Millis = 100;

/// The result of one [`step`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Memory to pass to the next step.
    pub memory: Memory,
    /// Actions to execute in order (see [`crate::action`] for the executor contract).
    pub actions: Vec<Action>,
    /// Actions from this index on are informational DCS writes (member record, keepalive,
    /// the leader's status, failsafe set, events, cleanups): the shell may send them
    /// concurrently once the ones before are done, without waiting for their replies, and
    /// their failures skip nothing. The core reconciles them from later reads, so they
    /// never hold up the next loop (and with it the next renewal).
    pub background_from: usize,
    /// Step again within this many milliseconds (always `<= loop_wait`), or earlier on a
    /// DCS change, a PostgreSQL state change, an outcome or an API request.
    pub wake_within: Millis,
    /// The node's status.
    pub status: NodeStatus,
}

/// Decides what this node does next.
///
/// * `cfg`: this node's configuration (validated with [`Config::validate`]).
/// * `mem`: the memory returned by the previous step ([`Memory::default`] at start).
/// * `obs`: what the shell observed this tick, including outcomes of earlier actions.
/// * `now`: this node's monotonic clock (CLOCK_BOOTTIME in the daemon) in ms. Only ever
///   compared with other readings of the same clock.
///
/// Pure: no IO, no clock reads, no randomness; the same input gives the same output. It
/// never panics. The shell executes [`Decision::actions`] in order, stores
/// [`Decision::memory`], and calls `step` again within [`Decision::wake_within`].
pub fn step(cfg: &Config, mem: &Memory, obs: &Observation, now: Millis) -> Decision {
    let mut cx = Cx::new(cfg, mem, obs, now);
    cx.run();
    cx.finish()
}

/// Where the leader record stands for this node.
enum LeaderState<'a> {
    /// Names this node.
    Mine(&'a Versioned<LeaderRecord>),
    /// Names another node whose lease is live.
    Other(&'a Versioned<LeaderRecord>),
    /// Free: absent (`Absent`), or expired/corrupt (`Version(v)`: take it by CAS).
    Vacant(crate::dcs::Expect),
    /// A corrupt record that has not yet aged a full ttl.
    Unknown,
}

/// Per-step working state.
pub(crate) struct Cx<'a> {
    pub cfg: &'a Config,
    pub obs: &'a Observation,
    pub now: Millis,
    pub mem: Memory,
    /// Effective cluster settings.
    pub s: ClusterSettings,
    pub view: Option<&'a ClusterView>,
    /// Actions in order; PostgreSQL safety actions first.
    pub actions: Vec<Action>,
    /// Informational DCS writes, executed after everything else.
    pub tail: Vec<Action>,
    pub reason: Reason,
    pub detail: String,
    pub wake: Millis,
    pub leader: Option<NodeName>,
    pub election: Option<ElectionReport>,
    pub can_lead: bool,
    pub lineage: Lineage,
    /// Why the history read cannot be judged against, if it cannot ([`ClusterView::history_fault`]).
    pub history_fault: Option<String>,
    /// Version of the config key applied this step.
    pub config_version: Option<Version>,
    /// Events to record (only when the DCS is readable).
    pub notes: Vec<(Reason, String)>,
    /// A renewal goes out in this batch.
    pub renewing: bool,
    /// A due renewal goes out after the leader's other actions (see
    /// [`Memory::writable_waits_for_grant`]).
    pub renew_last: bool,
}

impl<'a> Cx<'a> {
    fn new(cfg: &'a Config, mem: &Memory, obs: &'a Observation, now: Millis) -> Self {
        let s = mem.applied.as_ref().map_or_else(|| cfg.defaults.clone(), |(_, s)| s.clone());
        let wake = s.loop_wait;
        Cx {
            cfg,
            obs,
            now,
            mem: mem.clone(),
            s,
            view: None,
            actions: Vec::new(),
            tail: Vec::new(),
            reason: Reason::Starting,
            detail: String::new(),
            wake,
            leader: None,
            election: None,
            can_lead: false,
            lineage: Lineage::Diverged,
            history_fault: None,
            config_version: mem.applied.as_ref().map(|(v, _)| *v).filter(|&v| v != KEPT_SETTINGS),
            notes: Vec::new(),
            renewing: false,
            renew_last: false,
        }
    }

    fn run(&mut self) {
        self.mem.started_at.get_or_insert(self.now);
        self.ingest_outcomes();
        self.track_pg();
        let obs = self.obs;
        self.history_fault = obs.dcs.as_ref().ok().and_then(ClusterView::history_fault);
        match &obs.dcs {
            Err(e) => {
                self.fence_if_needed();
                self.dcs_unavailable(e);
            }
            Ok(view) if self.stale_read(view).is_some() => {
                let why = self.stale_read(view).unwrap_or_default();
                self.fence_if_needed();
                self.dcs_unavailable(&crate::dcs::DcsError::Unavailable(why));
            }
            Ok(view) => {
                self.view = Some(view);
                self.adopt_settings(view);
                self.track_leader(view);
                self.adopt_unfinished_build(view);
                self.lineage = self.judge_lineage(view);
                self.can_lead = self.judge_can_lead(view);
                self.adopt_guard_deadline(view);
                let state = self.leader_state(view);
                self.fence_if_needed();
                match state {
                    LeaderState::Mine(rec) => self.lead(view, rec),
                    LeaderState::Other(rec) => self.follow(view, rec),
                    LeaderState::Vacant(expect) if view.initialize.is_none() => self.bootstrap(view, expect),
                    LeaderState::Vacant(expect) => self.elect(view, expect),
                    LeaderState::Unknown => {
                        self.leave_leadership();
                        self.keepalive();
                        self.set_if_unset(Reason::LeaderRecordCorrupt, "the leader key cannot be decoded");
                        self.busy();
                    }
                }
                self.publish_member(view);
            }
        }
        // Whatever the situation, the guard follows the deadline PostgreSQL may write until.
        if self.guard_follows() && !self.mem.pending.is_some_and(|p| p.kind == PgOpKind::StopImmediate) {
            self.arm_guard();
        }
    }

    // ----- small helpers -------------------------------------------------------------

    /// Sets the decision's reason unless a more important one (fencing) was set first.
    pub fn set(&mut self, reason: Reason, detail: impl Into<String>) {
        if self.reason == Reason::Starting {
            self.reason = reason;
            self.detail = detail.into();
        }
    }

    /// Same as [`Cx::set`]; reads better where a reason may already be set.
    pub fn set_if_unset(&mut self, reason: Reason, detail: impl Into<String>) {
        self.set(reason, detail)
    }

    /// Records an event besides the main reason (sync changes, stale members...).
    pub fn note(&mut self, reason: Reason, detail: String) {
        self.notes.push((reason, detail));
    }

    /// Wake again soon: something is in flux.
    pub fn busy(&mut self) {
        self.wake = self.wake.min(self.busy_wait());
    }

    /// How soon to look again while something is in flux (an election, a promotion, an
    /// operation): a tenth of `loop_wait`, at most 100 ms. Each round of an election (stop
    /// the WAL receiver, see every candidate's final position, acquire) waits this long,
    /// so at the default `loop_wait` of 5 s a tenth (500 ms) made the election take about
    /// a second from the leader key's expiry; the cap keeps it near 0.2 s at any setting.
    fn busy_wait(&self) -> Millis {
        (self.s.loop_wait / 10).clamp(10, BUSY_WAIT_MAX).min(self.s.loop_wait)
    }

    pub fn me(&self) -> &'a str {
        &self.cfg.name
    }

    /// Pushes a DCS operation in order with the other actions; returns its id.
    pub fn dcs(&mut self, op: DcsOp) -> crate::types::OpId {
        let id = self.mem.op();
        self.actions.push(Action::Dcs { id, op });
        id
    }

    /// Pushes an informational DCS write at the end of the batch.
    pub fn dcs_tail(&mut self, op: DcsOp) -> OpId {
        let id = self.mem.op();
        self.tail.push(Action::Dcs { id, op });
        id
    }

    /// Pushes a long PostgreSQL operation and remembers it as pending. Never initdb or a
    /// clone over a data directory whose control file could not be read (both replace
    /// what is there; the data may be fine and only unreadable this tick).
    pub fn pg_op(&mut self, kind: PgOpKind, make: impl FnOnce(crate::types::OpId) -> Action) {
        if matches!(kind, PgOpKind::Initdb | PgOpKind::Clone)
            && self.obs.pg.data == crate::observation::DataDir::Unreadable
        {
            self.busy();
            return self.set(Reason::DataDirUnreadable, format!("not running {kind:?} over it"));
        }
        let id = self.mem.op();
        let t = &self.cfg.timeouts;
        let limit = match kind {
            PgOpKind::Initdb => t.initdb,
            PgOpKind::Clone => t.clone,
            PgOpKind::Rewind => t.rewind,
            PgOpKind::StartPrimary | PgOpKind::StartReplica => t.start,
            PgOpKind::StopFast | PgOpKind::StopImmediate => t.stop,
            PgOpKind::Promote => t.promote,
            PgOpKind::Checkpoint => t.checkpoint,
        };
        self.actions.push(make(id));
        self.mem.pending = Some(Pending { id, kind, since: self.now, give_up_at: self.now.saturating_add(limit) });
        self.busy();
    }

    /// A long operation of this kind failed less than a loop ago: wait before retrying. A
    /// rewind and a clone rebuild the same data directory: a failure of either holds off
    /// both (a failed clone followed at once by a failed rewind must not clone again at once).
    pub fn backing_off(&self, kind: PgOpKind) -> bool {
        let family = |k: PgOpKind| if k == PgOpKind::Rewind { PgOpKind::Clone } else { k };
        self.mem
            .failures
            .iter()
            .any(|f| family(f.kind) == family(kind) && self.now < f.at.saturating_add(self.s.loop_wait))
    }

    /// The reason to show while waiting for a long operation of this kind.
    pub fn waiting_reason(kind: PgOpKind) -> Reason {
        match kind {
            PgOpKind::Initdb => Reason::BootstrapInitdb,
            PgOpKind::Clone => Reason::Cloning,
            PgOpKind::Rewind => Reason::Rewinding,
            PgOpKind::StartPrimary => Reason::PrimaryStarting,
            PgOpKind::StartReplica => Reason::StartingReplica,
            PgOpKind::Promote => Reason::Promoting,
            PgOpKind::StopFast | PgOpKind::StopImmediate | PgOpKind::Checkpoint => Reason::WaitingForOperation,
        }
    }

    /// Guard for leader-side writes in the current reign.
    pub fn guard(&self, rec: &Versioned<LeaderRecord>) -> LeaderGuard {
        LeaderGuard { holder: rec.value.holder.clone(), term: rec.value.term, version: rec.version }
    }

    /// The published history (empty when the key is absent).
    pub fn history(view: &ClusterView) -> &History {
        static EMPTY: std::sync::LazyLock<History> = std::sync::LazyLock::new(History::default);
        view.history.as_ref().map_or(&EMPTY, |h| &h.value)
    }

    /// The cluster's first timeline.
    pub fn base_timeline(view: &ClusterView) -> Timeline {
        view.initialize.as_ref().map_or(Timeline(1), |i| i.value.base_timeline)
    }

    // ----- 1. outcomes ---------------------------------------------------------------

    fn ingest_outcomes(&mut self) {
        let obs = self.obs;
        for o in &obs.outcomes {
            if let Some(op) = self.mem.lease_op.filter(|op| op.id == o.id) {
                self.mem.lease_op = None;
                self.on_lease_outcome(op, &o.result);
            } else if let Some(p) = self.mem.pending.filter(|p| p.id == o.id) {
                self.mem.pending = None;
                match o.result {
                    Ok(done) => self.on_pg_done(p.kind, done),
                    Err(f) => self.on_pg_failed(p.kind, f),
                }
            } else if self.mem.sync_write.as_ref().is_some_and(|(id, _)| *id == o.id) {
                self.on_sync_write_outcome(&o.result);
            } else if let Some(round) = self.mem.failsafe_op.filter(|r| r.id == o.id) {
                self.mem.failsafe_op = None;
                if o.result.is_err() {
                    self.mem.failsafe_pinged_at = None; // retry at the next step
                }
                if let Ok(Done::FailsafeAcked { sent_at }) = o.result {
                    // The ttl the members were asked to hold off for, not today's.
                    let ttl = round.ttl;
                    let until = sent_at.saturating_add(ttl).saturating_sub(self.cfg.safety.margin(ttl));
                    self.mem.failsafe_until = Some(self.mem.failsafe_until.map_or(until, |u| u.max(until)));
                }
            }
        }
        if let Some(p) = self.mem.pending.filter(|p| self.now >= p.give_up_at) {
            self.mem.pending = None;
            self.on_pg_failed(p.kind, Failure::TimedOut);
        }
    }

    fn on_lease_outcome(&mut self, op: LeaseOp, result: &Result<Done, Failure>) {
        let claimed = self.mem.claiming.take();
        if op.kind == LeaseOpKind::Acquire {
            self.mem.claim_refused = if matches!(result, Err(Failure::Conflict)) { claimed } else { None };
        }
        match (op.kind, result) {
            (LeaseOpKind::Acquire | LeaseOpKind::Renew, Ok(Done::Lease(g))) => {
                if op.kind == LeaseOpKind::Renew && self.mem.lease.is_none_or(|l| l.term != op.term) {
                    return;
                }
                self.mem.renew_failing = false;
                let deadline = g.sent_at.saturating_add(g.ttl).saturating_sub(self.cfg.safety.margin(g.ttl));
                self.mem.lease =
                    Some(HeldLease { term: op.term, version: g.version, sent_at: g.sent_at, ttl: g.ttl, deadline });
                self.mem.max_term = self.mem.max_term.max(op.term);
            }
            (LeaseOpKind::Renew, Err(Failure::Conflict)) => {
                self.mem.lease = None;
                self.mem.failsafe_until = None;
            }
            (LeaseOpKind::Renew, Err(_)) => self.mem.renew_failing = true,
            // An acquire that may have applied (no reply) may have made this node the
            // leader: how it came to lead still holds when it claims the record next, also
            // after a later attempt at the same term was refused. So does a refused claim:
            // the term the record names came to this node as before (its own
            // indeterminate renewal may have moved the record's version).
            (LeaseOpKind::Acquire, Err(Failure::Indeterminate | Failure::TimedOut)) => {
                self.mem.acquire_unsure = Some(op.term);
            }
            (LeaseOpKind::Acquire, Err(_))
                if self.mem.lease.is_none_or(|l| l.term != op.term)
                    && claimed.is_none()
                    && self.mem.acquire_unsure != Some(op.term) =>
            {
                self.mem.acquired_via = None;
            }
            (LeaseOpKind::Release | LeaseOpKind::Transfer, Ok(_)) => {
                self.mem.lease = None;
                self.mem.failsafe_until = None;
                self.mem.switchover = None;
            }
            _ => {}
        }
    }

    fn on_pg_done(&mut self, kind: PgOpKind, done: Done) {
        if self.mem.last_failure.is_some_and(|f| f.kind == kind) {
            self.mem.last_failure = None;
        }
        self.mem.failures.retain(|f| f.kind != kind);
        if let (PgOpKind::Rewind | PgOpKind::Clone, Done::ConsistentAt(lsn)) = (kind, done) {
            self.mem.catchup_to = Some(lsn);
            self.mem.rewind_failed = false;
        }
    }

    fn on_pg_failed(&mut self, kind: PgOpKind, f: Failure) {
        self.mem.last_failure = Some(LastFailure { kind, at: self.now });
        self.mem.failures.retain(|f| f.kind != kind);
        self.mem.failures.push(LastFailure { kind, at: self.now });
        if kind == PgOpKind::StopFast {
            self.restart_stop_failed();
        }
        if kind == PgOpKind::Rewind {
            self.mem.rewind_failed = true;
        }
        if f != Failure::Skipped {
            self.note(Reason::OperationFailed, format!("{kind:?} {f:?}"));
        }
    }

    fn track_pg(&mut self) {
        let pg = &self.obs.pg;
        if pg.running && !pg.responsive {
            self.mem.unresponsive_since.get_or_insert(self.now);
        } else {
            self.mem.unresponsive_since = None;
        }
        if let Some(t) = self.mem.catchup_to {
            if pg.running && pg.responsive && pg.in_recovery == Some(true) && pg.replay_lsn >= t {
                self.mem.catchup_to = None;
            }
        }
    }

    // ----- 2. settings, record ages ------------------------------------------------

    fn adopt_settings(&mut self, view: &ClusterView) {
        match &view.config {
            Some(c) if self.config_version == Some(c.version) => {}
            Some(c) => match c.value.validate(&self.cfg.safety) {
                Ok(()) => {
                    self.mem.applied = Some((c.version, c.value.clone()));
                    self.s = c.value.clone();
                    self.config_version = Some(c.version);
                }
                Err(errs) => {
                    // Keep the previous settings; say why once per bad version.
                    if self.mem.config_rejected != Some(c.version) {
                        self.mem.config_rejected = Some(c.version);
                        let msg = errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ");
                        self.note(Reason::ConfigRejected, format!("config version {}: {msg}", c.version));
                    }
                }
            },
            None => {
                if view.corrupt_key(&Key::Config).is_none() {
                    // The store holds no settings (emptied, or the key deleted, while this
                    // daemon runs): those last applied stay in force, as they would for a
                    // daemon restarted now (its settings cache), and the leader writes them
                    // back. Only a node that never applied any runs on its defaults.
                    let kept = self.mem.applied.take().map(|(_, s)| s);
                    self.s = kept.clone().unwrap_or_else(|| self.cfg.defaults.clone());
                    self.mem.applied = kept.map(|s| (KEPT_SETTINGS, s));
                    self.config_version = None;
                    self.wake = self.wake.min(self.s.loop_wait);
                }
            }
        }
        self.wake = self.wake.min(self.s.loop_wait);
        self.mem.max_term = self.mem.max_term.max(view.term);
        self.mem.ttl_seen = self.mem.ttl_seen.max(self.s.ttl);
        if let Some(l) = &view.leader {
            self.mem.max_term = self.mem.max_term.max(l.value.term);
            self.mem.ttl_seen = self.mem.ttl_seen.max(l.value.ttl);
        }
        if let Some(f) = &view.failsafe {
            if f.value.members != self.mem.failsafe_set {
                self.mem.failsafe_set = f.value.members.clone();
            }
        } else if !self.mem.failsafe_set.is_empty() {
            self.mem.failsafe_set = Arc::default();
        }
    }

    /// Whether `view` is older than what this node has already seen: terms only grow, so a
    /// read whose term is below one this node (or a peer that answered) saw is a stale
    /// snapshot (a lagging replica of the store, a cache). Acting on it would repoint,
    /// rewind or fence on a past that no longer holds; it counts as a failed read. Unless
    /// the store moves on with the lower term for a ttl (its records change from read to
    /// read): a store restored from a backup, or emptied and bootstrapped anew, has lower
    /// terms for good. Returns why the read is not used.
    fn stale_read(&mut self, view: &ClusterView) -> Option<String> {
        let peers = self.obs.peers.iter().filter_map(|p| p.status.as_ref().map(|s| s.term)).max();
        let seen = self.mem.max_term.max(peers.unwrap_or_default());
        // Every timeline is recorded in the history before the promotion that creates it
        // (S4): local WAL on a timeline the read does not know means the read is older.
        let known = Self::history(view).forks.iter().map(|f| f.timeline).max().unwrap_or_default();
        let known = known.max(Self::base_timeline(view));
        let mine = self.obs.pg.timeline;
        // The leader's own timeline may be the one a promotion took instead of the one it
        // recorded: it corrects the history (`correct_fork`), so its reads stay usable.
        let leads = view
            .leader
            .as_ref()
            .is_some_and(|l| l.value.holder == self.cfg.name && self.mem.lease.is_some_and(|h| h.term == l.value.term));
        // Only WAL of this cluster dates the read: another cluster's data directory (a
        // wrong volume, a wrong backup) may be on any timeline, and the member must go on
        // reading to say so (`system_id_mismatch`).
        let cluster = view.initialize.as_ref().map(|i| i.value.system_id);
        // A history that cannot be read dates nothing (`history_unusable` says so).
        let unknown_timeline = cluster.is_some()
            && self.obs.pg.system_id() == cluster
            && mine > known
            && !leads
            && !self.upstream_wal_only(view)
            && self.history_fault.is_none();
        // A store without a cluster (emptied, or new) is never stale: nothing in it can
        // mislead, and a node that waited for it to change would wait for ever.
        let why = if view.initialize.is_none() {
            self.mem.stale_since = None;
            return None;
        } else if view.term < seen {
            format!("the store returned term {}, term {seen} was seen before", view.term)
        } else if unknown_timeline {
            format!("the store's history ends at timeline {known}, the local WAL is on timeline {mine}")
        } else {
            self.mem.stale_since = None;
            return None;
        };
        let print = Version(view_fingerprint(view));
        let first = self.mem.stale_since.get_or_insert(Seen { name: NodeName::new(), version: print, since: self.now });
        if first.version != print && self.now.saturating_sub(first.since) >= self.s.ttl {
            self.mem.stale_since = None;
            self.mem.max_term = view.term;
            return None;
        }
        Some(format!("stale read: {why}"))
    }

    /// Observer-clock leases: since when the leader record has had its current version.
    fn track_leader(&mut self, view: &ClusterView) {
        let version = match (&view.leader, view.corrupt_key(&Key::Leader)) {
            (Some(l), _) => Some(l.version),
            (None, Some(c)) => Some(c.version),
            (None, None) => None,
        };
        match (version, &self.mem.leader_seen) {
            (Some(v), Some(seen)) if seen.version == v => {}
            (Some(v), _) => {
                self.mem.leader_seen = Some(Seen { name: NodeName::new(), version: v, since: view.received_at })
            }
            (None, _) => self.mem.leader_seen = None,
        }
    }

    /// Whether the leader record at `version` has aged a full `ttl` unchanged.
    fn aged_out(&self, view: &ClusterView, version: Version, ttl: Millis) -> bool {
        self.mem
            .leader_seen
            .as_ref()
            .is_some_and(|s| s.version == version && view.received_at.saturating_sub(s.since) >= ttl)
    }

    fn leader_state<'v>(&self, view: &'v ClusterView) -> LeaderState<'v> {
        use crate::dcs::Expect;
        match &view.leader {
            Some(rec) if rec.value.holder == self.cfg.name => LeaderState::Mine(rec),
            Some(rec) => {
                if view.lease_model == LeaseModel::ObserverClock && self.aged_out(view, rec.version, rec.value.ttl) {
                    LeaderState::Vacant(Expect::Version(rec.version))
                } else {
                    LeaderState::Other(rec)
                }
            }
            // An undecodable record says nothing of the ttl its holder was granted: it ages
            // for the longest ttl this node has seen (a ttl lowered since the holder's last
            // renewal must not end the wait early).
            None => match view.corrupt_key(&Key::Leader) {
                Some(c) if self.aged_out(view, c.version, self.mem.ttl_seen.max(self.s.ttl)) => {
                    LeaderState::Vacant(Expect::Version(c.version))
                }
                Some(_) => LeaderState::Unknown,
                None => LeaderState::Vacant(Expect::Absent),
            },
        }
    }

    fn judge_lineage(&self, view: &ClusterView) -> Lineage {
        // Nothing is along a history that cannot be read (callers say why first).
        if self.history_fault.is_some() {
            return Lineage::Diverged;
        }
        self.lineage_on(view, self.obs.pg.timeline)
    }

    /// The node's WAL judged against the history as if it ended on `timeline`.
    fn lineage_on(&self, view: &ClusterView, timeline: Timeline) -> Lineage {
        let pg = &self.obs.pg;
        if pg.system_id().is_none() {
            return Lineage::Diverged;
        }
        let base = Self::base_timeline(view);
        let history = Self::history(view);
        let pos = WalPosition { timeline, lsn: pg.flush_lsn };
        if self.upstream_wal_only(view) {
            if let Some(extended) = Self::with_upstream_switches(history, base, &pg.history, pg.timeline) {
                return extended.lineage(base, pos, &pg.history);
            }
        }
        history.lineage(base, pos, &pg.history)
    }

    /// The lineage a standby follows the leader with. PostgreSQL recovers towards the
    /// newest timeline it holds a history file for (`recovery_target_timeline = latest`):
    /// one that a promotion which died left behind holds it to that timeline, and off the
    /// line it follows nothing ("not a child" of it) and waits for ever, so its WAL is
    /// judged as on that timeline (a rewind clears the files). Leading is judged on the
    /// WAL alone: a promotion forks from that timeline, and the fork is recorded first.
    /// A later timeline the history does not record is no promotion's that died (those
    /// are recorded first, S4): it is an upstream's a standby fetched before its WAL (a
    /// standby cluster records them later), which the standby follows in time.
    fn follow_lineage(&self, view: &ClusterView) -> Lineage {
        let pg = &self.obs.pg;
        if pg.newest_timeline <= pg.timeline || self.lineage == Lineage::Diverged {
            return self.lineage;
        }
        if !Self::history(view).forks.iter().any(|f| f.timeline == pg.newest_timeline) {
            return self.lineage;
        }
        self.lineage_on(view, pg.newest_timeline)
    }

    /// A daemon that started after its predecessor died building this node's data (a
    /// clone or rewind whose end it never saw) knows no consistency point for it, and
    /// PostgreSQL replays such a copy's WAL before it is consistent. The member record the
    /// predecessor left says `uninitialized`: take the end of the local WAL as the point
    /// replay must pass before this node may lead (S4), as a finished rewind or clone
    /// would have reported it.
    fn adopt_unfinished_build(&mut self, view: &ClusterView) {
        let pg = &self.obs.pg;
        let predecessor_building = view.member(self.me()).is_some_and(|m| m.value.role == MemberRole::Uninitialized);
        if predecessor_building
            && self.mem.catchup_to.is_none()
            && self.mem.pending.is_none()
            && !pg.running
            && pg.system_id().is_some()
            && pg.in_recovery == Some(true)
        {
            self.mem.catchup_to = Some(pg.flush_lsn);
        }
    }

    /// Could lead now, election or not (tags, data, lineage, catch-up).
    fn judge_can_lead(&self, view: &ClusterView) -> bool {
        let pg = &self.obs.pg;
        self.cfg.tags.can_lead()
            && view.initialize.as_ref().is_none_or(|i| pg.system_id() == Some(i.value.system_id))
            && self.lineage == Lineage::Along
            && self.mem.catchup_to.is_none()
    }

    /// After a daemon restart the guard still holds the deadline of a lease this node
    /// holds: adopt it instead of fencing, then claim the record.
    fn adopt_guard_deadline(&mut self, view: &ClusterView) {
        if self.mem.lease.is_some() {
            return;
        }
        let (GuardState::Armed { deadline, term }, Some(rec)) = (self.obs.guard, &view.leader) else {
            return;
        };
        if rec.value.holder == self.cfg.name && rec.value.term == term && deadline > self.now {
            let ttl = rec.value.ttl;
            self.mem.lease = Some(HeldLease {
                term,
                version: Version(u64::MAX), // unknown: forces a claim
                sent_at: deadline.saturating_add(self.cfg.safety.margin(ttl)).saturating_sub(ttl),
                ttl,
                deadline,
            });
        }
    }

    // ----- 3. S1: fencing ------------------------------------------------------------

    /// The lease this node holds, if valid now and not contradicted by the view.
    pub fn valid_lease(&self) -> Option<HeldLease> {
        let l = self.mem.lease?;
        if self.now >= l.deadline || self.mem.stepping_down == Some(l.term) {
            return None;
        }
        match self.view {
            Some(view) => match &view.leader {
                Some(rec) if rec.value.holder == self.cfg.name && rec.value.term == l.term => Some(l),
                _ => None,
            },
            None => Some(l),
        }
    }

    /// Until when PostgreSQL may be writable, if at all (lease, or failsafe while the
    /// DCS is unreadable).
    pub fn writable_until(&self) -> Option<Millis> {
        if self.s.standby_cluster.is_some() {
            // Nobody in a standby cluster accepts writes (S1 fences a writable PostgreSQL).
            return None;
        }
        let lease = self.valid_lease().map(|l| l.deadline);
        // A failsafe confirmation counts while the DCS is unreadable, and once it is back
        // while the store still shows this node's record (so it can renew before fencing).
        let ours = |view: &ClusterView| {
            self.mem.lease.is_some_and(|l| {
                view.leader.as_ref().is_some_and(|r| r.value.holder == self.cfg.name && r.value.term == l.term)
            })
        };
        let failsafe_counts = self.mem.lease.is_some() && self.view.is_none_or(ours);
        let failsafe = self.mem.failsafe_until.filter(|&u| u > self.now && failsafe_counts);
        lease.max(failsafe)
    }

    /// The deadline an action that makes PostgreSQL writable may carry. When a renewal goes
    /// out in the same batch the action can only carry the previous grant's deadline (the
    /// new one is not known yet); if the renewal's round trip and the write before the
    /// action could outlast it, the action waits one step for the fresh grant (and goes
    /// out before that step's renewal, [`Memory::writable_waits_for_grant`]).
    pub fn deadline_for_writable_action(&mut self) -> Option<Millis> {
        let until = self.writable_until()?;
        // Before the action run the renewal and at most one in-order write, each bounded by
        // retry_timeout: the current deadline must outlast both.
        let needed = self.s.retry_timeout.saturating_mul(2);
        let ok = !self.renewing || until.saturating_sub(self.now) >= needed;
        self.mem.writable_waits_for_grant = !ok;
        ok.then_some(until)
    }

    /// Whether PostgreSQL may accept writes now or once the operation in flight ends (a
    /// promotion or a primary start, which can take long: crash recovery). Such an instance
    /// needs the lease and a guard that follows every renewal, as a running primary does:
    /// a guard left at the deadline it had when the start began would kill the primary the
    /// moment it comes up, however well the lease was kept.
    pub fn may_write(&self) -> bool {
        self.obs.pg.maybe_writable()
            || self.mem.pending.is_some_and(|p| matches!(p.kind, PgOpKind::Promote | PgOpKind::StartPrimary))
    }

    /// Whether the guard must follow the writable deadline: while PostgreSQL may write
    /// ([`Cx::may_write`]), and while this node holds a lease even with PostgreSQL down.
    /// A primary start that a fence superseded can still bring PostgreSQL up after the
    /// stop (which found no instance yet to stop): should this node have taken the lease
    /// again meanwhile, that primary runs under the lease, and a guard left at the
    /// deadline that expired would kill it the moment it comes up (A2).
    pub fn guard_follows(&self) -> bool {
        self.may_write() || self.mem.lease.is_some()
    }

    fn fence_if_needed(&mut self) {
        if !self.may_write() {
            return;
        }
        let reason = if self.cfg.require_guard && self.obs.guard == GuardState::Lost {
            Reason::GuardLost
        } else if self.s.standby_cluster.is_some() {
            Reason::StandbyClusterWritable
        } else if self.writable_until().is_some() {
            return;
        } else if self.mem.lease.is_some_and(|l| self.now >= l.deadline) {
            Reason::LeaseExpired
        } else {
            Reason::FencingNotLeader
        };
        self.fence(reason);
    }

    /// Stop PostgreSQL immediately (unless a fence is already under way).
    pub fn fence(&mut self, reason: Reason) {
        if !self.mem.pending.is_some_and(|p| p.kind == PgOpKind::StopImmediate) {
            self.pg_op(PgOpKind::StopImmediate, |id| Action::Stop { id, mode: StopMode::Immediate });
        }
        self.set(reason, String::new());
    }

    /// Sends a renewal of `lease` with the configured ttl. A renewal asking for a shorter
    /// ttl than the lease was granted shortens the store's expiry the moment it applies,
    /// long before (or without) a reply: the held deadline comes down to what the request
    /// can guarantee, and the guard with it, before the request leaves.
    pub fn renew(&mut self, guard: LeaderGuard, lease: HeldLease) {
        let ttl = self.s.ttl;
        if self.renewal_lowers(lease) {
            let bound = self.now.saturating_add(ttl).saturating_sub(self.cfg.safety.margin(ttl));
            if let Some(held) = self.mem.lease.as_mut().filter(|l| l.term == lease.term) {
                held.deadline = bound;
            }
        }
        if self.guard_follows() {
            self.arm_guard();
        }
        let id = self.dcs(DcsOp::RenewLeader { guard, ttl });
        self.mem.lease_op = Some(LeaseOp { id, kind: LeaseOpKind::Renew, term: lease.term });
    }

    /// Whether renewing `lease` now with the configured ttl lowers the deadline held (an
    /// operator shortened the ttl): [`Cx::renew`] then lowers it before the request leaves.
    pub fn renewal_lowers(&self, lease: HeldLease) -> bool {
        let ttl = self.s.ttl;
        self.now.saturating_add(ttl).saturating_sub(self.cfg.safety.margin(ttl)) < lease.deadline
    }

    /// Hands the guard the current writable deadline when it moved.
    pub fn arm_guard(&mut self) {
        let Some(until) = self.writable_until() else {
            return;
        };
        // One arm per decision: a deadline that came down later in the same step (a
        // renewal asking for a shorter ttl) lowers the arm already queued, where it is.
        for a in self.actions.iter_mut().rev() {
            if let Action::ArmGuard { deadline, .. } = a {
                if until <= *deadline {
                    *deadline = until;
                    self.mem.armed_until = Some(until);
                    return;
                }
                break;
            }
        }
        // Any difference is re-armed, lower deadlines included (a shorter ttl, a lost
        // failsafe round): a guard holding a later deadline would let PostgreSQL outlive
        // the lease if this daemon froze.
        let acknowledged = match self.obs.guard {
            GuardState::Armed { deadline, .. } => deadline == until,
            GuardState::Disabled => !self.cfg.require_guard && self.mem.armed_until == Some(until),
            GuardState::Lost => false,
        };
        if acknowledged {
            return;
        }
        let term = self.mem.lease.map_or(self.mem.max_term, |l| l.term);
        let id = self.mem.op();
        self.actions.push(Action::ArmGuard { id, deadline: until, term });
        self.mem.armed_until = Some(until);
    }

    // ----- leadership bookkeeping ---------------------------------------------------

    /// Not the leader (any more): forget leader-only state.
    pub fn leave_leadership(&mut self) {
        if self.mem.lease.take().is_some() {
            self.note(Reason::LeaseLost, "the leader record is no longer this node's".into());
        }
        self.mem.failsafe_until = None;
        self.mem.acquired_via = None;
        self.mem.stepping_down = None;
        self.mem.renew_failing = false;
        self.mem.switchover = None;
        self.mem.sync_add = None;
        self.mem.sync_known = None;
        self.mem.sync_write = None;
        self.mem.sync_expect = None;
        self.mem.sync_refused = None;
        self.mem.sync_unsure.clear();
        self.mem.primary_down_since = None;
        self.mem.status_at = None;
        self.mem.members_seen.clear();
        self.mem.armed_until = None;
    }

    /// Emits an acquire (or claim) of the leader record; `history` conditions it on the
    /// history key as read (an election's: see [`crate::dcs::Acquire::history`]).
    pub fn acquire(&mut self, view: &ClusterView, record: LeaderRecord, expect: crate::dcs::Expect, history: bool) {
        let sync = self.s.synchronous_mode.enabled().then(|| crate::dcs::Expect::from_current(view.sync.as_ref()));
        let history = history.then(|| view.history_expect());
        let term = record.term;
        let acquire = crate::dcs::Acquire { record, expect, term_was: view.term, sync, history };
        let id = self.dcs(DcsOp::AcquireLeader(acquire));
        self.mem.lease_op = Some(LeaseOp { id, kind: LeaseOpKind::Acquire, term });
        self.busy();
    }

    /// Keeps the node lease (etcd) or member record (DynamoDB) alive; non-leaders only.
    pub fn keepalive(&mut self) {
        if self.mem.keepalive_at.is_none_or(|t| self.now >= t.saturating_add(self.s.loop_wait)) {
            self.mem.keepalive_at = Some(self.now);
            self.dcs_tail(DcsOp::KeepAlive { ttl: self.s.ttl });
        }
    }

    /// Writes a leader-conditioned set of writes (S5); returns the action id.
    pub fn leader_write(&mut self, rec: &Versioned<LeaderRecord>, writes: Vec<Write>, in_order: bool) -> OpId {
        let op = DcsOp::LeaderWrite { guard: self.guard(rec), writes };
        if in_order {
            self.dcs(op)
        } else {
            self.dcs_tail(op)
        }
    }

    /// Puts a value under the leader guard at the end of the batch.
    pub fn leader_put_tail(&mut self, rec: &Versioned<LeaderRecord>, value: Value, expect: crate::dcs::Expect) {
        self.leader_write(rec, vec![Write::put(value, expect)], false);
    }

    // ----- 5. member record, status ------------------------------------------------

    fn role(&self) -> MemberRole {
        let pg = &self.obs.pg;
        if pg.running && self.mem.pending.is_some_and(|p| p.kind == PgOpKind::StopImmediate) {
            MemberRole::Fencing
        } else if (pg.system_id().is_none() && !pg.running) || self.building_data() {
            MemberRole::Uninitialized
        } else if pg.maybe_writable() && self.leader.as_deref() == Some(self.me()) && self.writable_until().is_some() {
            MemberRole::Primary
        } else if pg.running
            && pg.in_recovery == Some(true)
            && self.standby_cluster()
            && self.leader.as_deref() == Some(self.me())
            && self.valid_lease().is_some()
        {
            MemberRole::StandbyLeader
        } else if self.mem.election_since.is_some() {
            MemberRole::Candidate
        } else if pg.running && pg.in_recovery == Some(true) {
            MemberRole::Replica
        } else {
            MemberRole::Stopped
        }
    }

    fn publish_member(&mut self, view: &ClusterView) {
        let pg = &self.obs.pg;
        // Written so that every member can read it (an older daemon in a rolling upgrade).
        let schema = view.schema();
        let reason = if self.reason == Reason::Starting { None } else { Some(self.reason.at_schema(schema)) };
        let current = view.member(self.me());
        let role = self.role().at_schema(schema);
        let leader_term = role.leads().then(|| self.mem.lease.map(|l| l.term)).flatten();
        let material = |m: &MemberRecord| {
            m.role == role
                && m.running == pg.running
                && m.timeline == pg.timeline
                && m.tags == self.cfg.tags
                && m.applied_config == self.config_version
                && m.pending_restart == pg.pending_restart
                && m.reason == reason
                && m.api_url == self.cfg.api_url
                && m.pg_url == self.cfg.pg_url
                && m.leader_term == leader_term
                && m.schema == crate::SCHEMA
        };
        if current.is_some_and(|m| material(&m.value)) {
            self.mem.join_noted = false;
            return;
        }
        if current.is_some() {
            self.mem.join_noted = false;
        } else if !self.mem.join_noted {
            self.mem.join_noted = true;
            self.note(Reason::MemberJoined, format!("api {}", self.cfg.api_url));
        }
        let record = MemberRecord {
            name: self.cfg.name.clone(),
            api_url: self.cfg.api_url.clone(),
            pg_url: self.cfg.pg_url.clone(),
            role,
            running: pg.running,
            timeline: pg.timeline,
            lsn: pg.flush_lsn,
            tags: self.cfg.tags.clone(),
            applied_config: self.config_version,
            pending_restart: pg.pending_restart,
            reason,
            leader_term,
            schema: crate::SCHEMA,
        };
        self.dcs_tail(DcsOp::PublishMember(record));
    }

    fn finish(mut self) -> Decision {
        // Events: what was noted, and the reason when it changes.
        if Some(self.reason) != self.mem.last_reason && self.reason.is_event() {
            self.notes.push((self.reason, self.detail.clone()));
        }
        self.mem.last_reason = Some(self.reason);
        // Recorded whenever the store answered, a stale read included (not acted on, but
        // the store takes appends: a node that fences on one says so).
        if let Ok(view) = &self.obs.dcs {
            let schema = view.schema();
            for (reason, detail) in std::mem::take(&mut self.notes) {
                let event = Event {
                    wall_time_ms: self.obs.wall_time_ms,
                    node: self.cfg.name.clone(),
                    term: self.mem.max_term,
                    reason: reason.at_schema(schema),
                    detail,
                };
                let id = self.mem.op();
                self.tail.push(Action::Dcs { id, op: DcsOp::AppendEvent(event) });
            }
        }

        let writable_until = self.writable_until();
        let mut wake = self.wake.min(self.s.loop_wait);
        if let Some(u) = writable_until {
            wake = wake.min(u.saturating_sub(self.now));
        }
        if let Some(l) = self.mem.lease.filter(|_| writable_until.is_some() && self.mem.lease_op.is_none()) {
            // Next renewal; a failed one is retried at the busy pace, never in a tight loop.
            let due = l.sent_at.saturating_add(self.s.loop_wait).saturating_sub(self.now);
            wake = wake.min(due.max(self.busy_wait()));
        }
        if let Some(p) = self.mem.pending {
            wake = wake.min(p.give_up_at.saturating_sub(self.now));
        }
        let wake = wake.max(1).min(self.s.loop_wait);

        let pg = &self.obs.pg;
        let status = NodeStatus {
            role: if self.view.is_some() { self.role() } else { self.role_without_view() },
            term: self.mem.max_term,
            leader: self.leader.clone(),
            position: pg.position(),
            replayed: if pg.in_recovery == Some(true) { pg.replay_lsn } else { crate::types::Lsn(0) },
            writable_until,
            reason: self.reason,
            detail: self.detail,
            election: self.election,
            can_lead: self.can_lead,
            paused: self.s.paused,
            applied_config: self.config_version,
            pending: self.mem.pending.map(|p| p.kind),
            accepts_failsafe: self.mem.election_since.is_none() && self.mem.lease.is_none(),
        };
        let mut actions = self.actions;
        let background_from = actions.len();
        actions.extend(self.tail);
        Decision { memory: self.mem, actions, background_from, wake_within: wake, status }
    }

    /// Whether an initdb or a clone is building this node's data directory. A bootstrap
    /// from a backup runs PostgreSQL to replay the archive (readable, then promoted by its
    /// recovery target) before the core starts it as the primary: until that operation
    /// completes the node is not a primary or a replica, whatever the server answers.
    fn building_data(&self) -> bool {
        self.mem.pending.is_some_and(|p| matches!(p.kind, PgOpKind::Initdb | PgOpKind::Clone))
    }

    fn role_without_view(&self) -> MemberRole {
        let pg = &self.obs.pg;
        if pg.running && self.mem.pending.is_some_and(|p| p.kind == PgOpKind::StopImmediate) {
            MemberRole::Fencing
        } else if self.building_data() {
            MemberRole::Uninitialized
        } else if pg.maybe_writable() && self.writable_until().is_some() {
            MemberRole::Primary
        } else if pg.running && pg.in_recovery == Some(true) {
            MemberRole::Replica
        } else if pg.system_id().is_none() {
            MemberRole::Uninitialized
        } else {
            MemberRole::Stopped
        }
    }

    // ----- DCS unavailable ------------------------------------------------------------

    fn dcs_unavailable(&mut self, err: &crate::dcs::DcsError) {
        // A node that cannot read the DCS cannot win an election: stop being a candidate
        // so that it acknowledges a failsafe primary.
        self.mem.election_since = None;
        let Some(lease) = self.mem.lease.filter(|l| self.mem.stepping_down != Some(l.term)) else {
            self.set(Reason::DcsUnavailable, err.to_string());
            return;
        };
        self.leader = Some(self.cfg.name.clone());
        // Ordered by dependency: the executor stops at the first failure, and neither the
        // guard (armed from deadlines already known) nor the failsafe round depends on a
        // renewal that will most likely fail.
        if self.guard_follows() {
            self.arm_guard();
        }
        let pg = &self.obs.pg;
        let ping_due = self.mem.failsafe_pinged_at.is_none_or(|t| self.now >= t.saturating_add(self.s.loop_wait));
        if self.s.failsafe_mode && pg.maybe_writable() && self.mem.failsafe_op.is_none() && ping_due {
            let me = self.me();
            if self.mem.failsafe_set.iter().any(|m| m.name == me) {
                let members: Vec<_> = self.mem.failsafe_set.iter().filter(|m| m.name != me).cloned().collect();
                let id = self.mem.op();
                let ttl = self.s.ttl;
                self.actions.push(Action::FailsafePing { id, term: lease.term, ttl, members });
                self.mem.failsafe_op = Some(FailsafeRound { id, ttl });
                self.mem.failsafe_pinged_at = Some(self.now);
            }
        }
        if self.now >= lease.sent_at.saturating_add(self.s.loop_wait) && self.mem.lease_op.is_none() {
            let guard = LeaderGuard { holder: self.cfg.name.clone(), term: lease.term, version: lease.version };
            self.renew(guard, lease);
        }
        if self.valid_lease().is_some() {
            self.set(Reason::DcsUnavailableLeaseValid, err.to_string());
        } else if self.writable_until().is_some() {
            self.set(Reason::FailsafeHolding, err.to_string());
        } else {
            self.set(Reason::DcsUnavailable, err.to_string());
        }
        self.busy();
    }
}

/// The versions of every record of a read, folded: two reads of a store that did not
/// change give the same value.
/// The version [`Memory::applied`] carries for settings kept while the store holds none
/// (no store version is 0).
const KEPT_SETTINGS: Version = Version(0);

fn view_fingerprint(view: &ClusterView) -> u64 {
    let versions = [
        view.leader.as_ref().map(|r| r.version),
        view.config.as_ref().map(|r| r.version),
        view.switchover.as_ref().map(|r| r.version),
        view.sync.as_ref().map(|r| r.version),
        view.history.as_ref().map(|r| r.version),
        view.status.as_ref().map(|r| r.version),
        view.initialize.as_ref().map(|r| r.version),
        view.failsafe.as_ref().map(|r| r.version),
    ];
    let all = versions.into_iter().flatten().chain(view.members.iter().map(|m| m.version));
    all.fold(view.term.0, |h, v| (h ^ v.0).wrapping_mul(0x100_0000_01b3).rotate_left(5))
}

/// A replication slot name for a member: lower case, `[a-z0-9_]` only.
pub fn slot_name(member: &str) -> String {
    member.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect()
}
