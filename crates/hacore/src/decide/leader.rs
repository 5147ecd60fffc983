//! The leader record names this node: renew, promote, restart in place, step down on
//! hang, and the cluster-wide housekeeping only the leader does.

use super::{slot_name, Cx};
use crate::action::{Action, StopMode};
use crate::dcs::{
    ClusterView, DcsOp, Expect, FailsafeMember, FailsafeRecord, Key, LeaderRecord, LeaseModel, StatusRecord,
    SwitchoverKind, SyncRecord, Value, Write,
};
use crate::history::{Fork, ForkCause, History};
use crate::memory::{HeldLease, LeaseOp, LeaseOpKind, PgOpKind, Seen};
use crate::observation::SyncStandbys;
use crate::reason::Reason;
use crate::types::{Version, Versioned};
use std::sync::Arc;

impl Cx<'_> {
    pub(super) fn lead(&mut self, view: &ClusterView, rec: &Versioned<LeaderRecord>) {
        self.lead_now(view, rec);
        if std::mem::take(&mut self.renew_last) {
            if let Some(lease) = self.mem.lease.filter(|l| l.term == rec.value.term && self.mem.lease_op.is_none()) {
                self.renew(self.guard(rec), lease);
                self.renewing = true;
            }
        }
    }

    fn lead_now(&mut self, view: &ClusterView, rec: &Versioned<LeaderRecord>) {
        self.leader = Some(self.cfg.name.clone());
        self.mem.election_since = None;
        let term = rec.value.term;

        if self.mem.stepping_down == Some(term) {
            return self.step_down_continue(rec);
        }

        // Claim a record that names us but is not backed by our own lease (transfer to
        // us, daemon restart, indeterminate renewal).
        let held = self.mem.lease.filter(|l| l.term == term && l.version == rec.version);
        let Some(lease) = held else {
            // Until the claim succeeds, the lease held (renewed, or adopted from the guard)
            // may still keep us writable: the guard follows it first, so a claim that fails
            // cannot leave the guard on an older deadline.
            if self.obs.pg.maybe_writable() {
                self.arm_guard();
            }
            // What the claim is conditioned on: the record, the term and (S2) the sync record.
            let key = Version(
                rec.version.0
                    ^ view.term.0.rotate_left(21)
                    ^ view.sync.as_ref().map_or(0, |s| s.version.0.rotate_left(42)),
            );
            if self.mem.claim_refused == Some(key) {
                self.busy();
                return self.set(Reason::Claiming, format!("term {term}: the record changed since this read"));
            }
            if self.mem.lease_op.is_none() {
                if self.mem.lease.is_none_or(|l| l.term != term) && self.obs.pg.in_recovery == Some(true) {
                    self.mem.acquired_via.get_or_insert(ForkCause::Switchover);
                }
                let record = LeaderRecord { holder: self.cfg.name.clone(), term, ttl: self.s.ttl };
                self.acquire(view, record, Expect::Version(rec.version), false);
                self.mem.claiming = Some(key);
            }
            return self.set(Reason::Claiming, format!("term {term}"));
        };

        self.renew_if_due(rec, lease);
        if self.valid_lease().is_none() {
            // Our deadline passed though the store still shows us (S1 fenced PostgreSQL if
            // it was writable). Nothing writable until a renewal succeeds.
            self.busy();
            return self.set(Reason::LeaseRenewing, format!("deadline {} passed", lease.deadline));
        }

        if view.initialize.is_some() && self.mem.switchover.is_none() {
            let restarted = if self.standby_cluster() {
                let standby = self.obs.pg.in_recovery == Some(true);
                self.restart(standby, |cx| cx.standby_start(view, rec))
            } else {
                let writable = self.obs.pg.in_recovery == Some(false);
                self.restart(writable, |cx| cx.start_in_place(view, rec))
            };
            if restarted {
                return;
            }
        }
        if self.s.paused {
            return self.lead_paused(view, rec);
        }
        if view.initialize.is_none() {
            return self.bootstrap_leader(view, rec);
        }
        if self.switchover_in_progress(view, rec) {
            return;
        }
        let pg = &self.obs.pg;
        if let Some(p) = self.mem.pending {
            let reason = match p.kind {
                PgOpKind::StartReplica => Reason::StartingForPromotion,
                kind => Self::waiting_reason(kind),
            };
            if p.kind != PgOpKind::StopImmediate && self.may_write() {
                self.arm_guard();
            }
            self.busy();
            return self.set(reason, format!("waiting for {:?}", p.kind));
        }
        if self.standby_cluster() {
            return self.standby_lead(view, rec);
        }
        if pg.running && !pg.responsive {
            // It may still be writing: the guard keeps following the lease.
            self.arm_guard();
            let since = self.mem.unresponsive_since.unwrap_or(self.now);
            if self.now.saturating_sub(since) >= self.s.primary_hang_timeout {
                return self.step_down(
                    rec,
                    Reason::PrimaryHung,
                    format!("no answer for {} ms", self.now.saturating_sub(since)),
                );
            }
            return self
                .set(Reason::PrimaryUnresponsive, format!("no answer for {} ms", self.now.saturating_sub(since)));
        }
        if !pg.running {
            return self.start_in_place(view, rec);
        }
        if pg.in_recovery == Some(true) {
            return self.promote(view, rec);
        }
        self.mem.primary_down_since = None;
        if self.mem.renew_failing {
            // The store refuses writes (the last renewal failed; reads may come from a
            // cache): the housekeeping waits for a renewal that succeeds, instead of
            // writing it again at every retry of the renewal.
            self.arm_guard();
            self.busy();
            return self.set(Reason::DcsUnavailableLeaseValid, "the last lease renewal failed: retrying it");
        }
        self.primary_duties(view, rec);
    }

    fn renew_if_due(&mut self, rec: &Versioned<LeaderRecord>, lease: HeldLease) {
        let waited = std::mem::take(&mut self.mem.writable_waits_for_grant);
        if self.mem.lease_op.is_some() || self.now < lease.sent_at.saturating_add(self.s.loop_wait) {
            return;
        }
        // PostgreSQL is down (not writable): the lease held only has to outlast the transfer,
        // one write bounded by retry_timeout. (Not two: with a store round trip above the
        // loop, a step comes every two round trips, and a short ttl never left two.)
        // Should the transfer not go out after all (the switchover aborted in this step, or
        // paused: nothing is handed over then), the renewal goes out last instead. Neither
        // deferral when the renewal lowers the deadline held (a shorter ttl): an action
        // must not carry the higher one, so the renewal comes first.
        let lowers = self.renewal_lowers(lease);
        if self.transfer_due() && lease.deadline.saturating_sub(self.now) >= self.s.retry_timeout && !lowers {
            self.renew_last = true;
            return;
        }
        // The action that waited goes out first on the grant held, if that grant outlasts
        // the one write that may precede it.
        if waited && lease.deadline.saturating_sub(self.now) >= self.s.retry_timeout && !lowers {
            self.renew_last = true;
            return;
        }
        self.renew(self.guard(rec), lease);
        self.renewing = true;
    }

    /// Give up leadership: fence first (PostgreSQL may still write), release once down.
    pub(super) fn step_down(&mut self, rec: &Versioned<LeaderRecord>, reason: Reason, detail: String) {
        self.mem.stepping_down = Some(rec.value.term);
        self.set(reason, detail);
        self.step_down_continue(rec);
    }

    fn step_down_continue(&mut self, rec: &Versioned<LeaderRecord>) {
        self.set(Reason::SteppingDown, String::new());
        self.busy();
        if self.obs.pg.maybe_writable() {
            if !self.mem.pending.is_some_and(|p| p.kind == PgOpKind::StopImmediate) {
                self.pg_op(PgOpKind::StopImmediate, |id| Action::Stop { id, mode: StopMode::Immediate });
            }
            return;
        }
        if self.mem.lease_op.is_none() {
            let id = self.dcs(DcsOp::ReleaseLeader { guard: self.guard(rec) });
            self.mem.lease_op = Some(LeaseOp { id, kind: LeaseOpKind::Release, term: rec.value.term });
        }
    }

    /// `synchronous_standby_names` covering everything that may be published (S2).
    pub(super) fn published_sync(&self, view: &ClusterView, rec: &Versioned<LeaderRecord>) -> SyncStandbys {
        if !self.s.synchronous_mode.enabled() {
            return SyncStandbys::Off;
        }
        let names = self.sync_sets(view, rec).map(|(_, maybe)| maybe).unwrap_or_default();
        SyncStandbys::for_names(names, self.strict())
    }

    /// The leader's PostgreSQL is down: gives up the lease (and says so) when it has been
    /// down for `primary_start_timeout` or there is no usable data directory to start.
    pub(super) fn leader_start_given_up(&mut self, view: &ClusterView, rec: &Versioned<LeaderRecord>) -> bool {
        let since = *self.mem.primary_down_since.get_or_insert(self.now);
        if self.now.saturating_sub(since) >= self.s.primary_start_timeout {
            let detail = format!("down for {} ms", self.now.saturating_sub(since));
            self.step_down(rec, Reason::PrimaryStartFailed, detail);
            return true;
        }
        let pg = &self.obs.pg;
        if pg.system_id().is_none()
            || view.initialize.as_ref().is_some_and(|i| pg.system_id() != Some(i.value.system_id))
        {
            self.step_down(rec, Reason::PrimaryStartFailed, "no usable data directory".into());
            return true;
        }
        false
    }

    /// PostgreSQL is down on the leader: restart it in place, bounded by
    /// `primary_start_timeout`, else give up the lease.
    fn start_in_place(&mut self, view: &ClusterView, rec: &Versioned<LeaderRecord>) {
        if self.leader_start_given_up(view, rec) {
            return;
        }
        let pg = &self.obs.pg;
        self.busy();
        if self.backing_off(PgOpKind::StartPrimary) || self.backing_off(PgOpKind::StartReplica) {
            return self.set(Reason::PrimaryStarting, "retrying after a failed start");
        }
        // Restarting in place continues this node's timeline: only right on the tip of the
        // published history. A standby's data, or a former primary's on a timeline others
        // have since forked away from, starts as a standby and is promoted, which records
        // the fork (S4).
        let tip = Self::history(view).forks.last().map_or(Self::base_timeline(view), |f| f.timeline);
        if pg.in_recovery == Some(true) || pg.timeline != tip {
            self.pg_op(PgOpKind::StartReplica, |id| Action::StartReplica { id, upstream: None });
            let why = if pg.in_recovery == Some(true) {
                String::new()
            } else {
                format!("timeline {} is not the tip ({tip})", pg.timeline)
            };
            return self.set(Reason::StartingForPromotion, why);
        }
        let Some(deadline) = self.deadline_for_writable_action() else {
            return self.set(Reason::PrimaryStarting, "renewing the lease first");
        };
        // In a new term the sync record may still name an older reign's set: take it over
        // (publishing an empty set) before PostgreSQL can acknowledge a single commit.
        let sync_standbys = match self.take_sync_record(view, rec) {
            Some((write, record)) => {
                let id = self.leader_write(rec, vec![write], true);
                self.mem.sync_write = Some((id, record));
                SyncStandbys::for_names(Vec::new(), self.strict())
            }
            None => self.published_sync(view, rec),
        };
        self.arm_guard();
        self.pg_op(PgOpKind::StartPrimary, |id| Action::StartPrimary { id, lease_deadline: deadline, sync_standbys });
        self.set(Reason::PrimaryStarting, String::new());
    }

    /// The leader's PostgreSQL is a standby: record the fork (S4), enter the sync record
    /// (S2), then promote under the lease deadline.
    fn promote(&mut self, view: &ClusterView, rec: &Versioned<LeaderRecord>) {
        let pg = &self.obs.pg;
        self.busy();
        if self.deadline_for_writable_action().is_none() {
            return self.set(Reason::Promoting, "renewing the lease first");
        }
        if pg.upstream.is_some() {
            // Freeze the position before recording the fork point.
            self.actions.push(Action::Follow { upstream: None });
            return self.set(Reason::Promoting, "stopping the WAL receiver first");
        }
        if pg.streaming {
            return self.set(Reason::Promoting, "waiting for the WAL receiver to stop");
        }
        // S3 at the last moment: a reachable eligible member strictly ahead means we must not
        // promote (a straggler reported late). Give the lease back.
        // Promoting a standby cluster: its upstream's last timeline switches may not be
        // recorded yet (they arrived just before); they go into the same write as the fork.
        let base = Self::base_timeline(view);
        let published = Self::history(view);
        let first_promotion =
            self.mem.acquired_via == Some(ForkCause::ClusterPromotion) || Self::never_promoted_standby(view);
        let upstream_switches =
            first_promotion.then(|| Self::with_upstream_switches(published, base, &pg.history, pg.timeline)).flatten();
        let history = upstream_switches.as_ref().unwrap_or(published);
        let lineage = match &upstream_switches {
            Some(h) => h.lineage(base, pg.position(), &pg.history),
            None => self.lineage,
        };
        if let Some(ahead) = self.peer_strictly_ahead() {
            return self.step_down(rec, Reason::ElectionLost, format!("{ahead} has more WAL; not promoting"));
        } else if lineage != crate::history::Lineage::Along {
            return self.step_down(rec, Reason::IneligibleDiverged, "local WAL is not along the history".into());
        }
        let term = rec.value.term;
        let mut writes = Vec::new();
        // PostgreSQL takes the timeline after the newest it holds a history file for, and
        // forks it from the newest it recovered towards (`recovery_target_timeline` is
        // `latest`). An attempt in this term that died after writing its timeline's history
        // file leaves that timeline as the parent of the next one, at the same point: the
        // recorded fork stands, and the retry is recorded as one more fork from it, before
        // the promotion (S4: every timeline is recorded first).
        let taken = pg.taken_timeline();
        let recorded = history.fork_by(self.me(), term).map(|f| (f.timeline, f.cause));
        let timeline = match recorded {
            Some((t, _)) if t > taken => t,
            _ => {
                let timeline = history.next_timeline(base, taken);
                let mut next = history.clone();
                // The upstream's switches added above are recorded by this leader, now.
                let forks = Arc::make_mut(&mut next.forks);
                for f in forks.iter_mut().filter(|f| f.node.is_empty()) {
                    f.term = term;
                    f.node = self.cfg.name.clone();
                    f.wall_time_ms = self.obs.wall_time_ms;
                }
                let cause = match recorded {
                    Some((_, cause)) => cause,
                    None if first_promotion => ForkCause::ClusterPromotion,
                    None => self.mem.acquired_via.unwrap_or(ForkCause::Failover),
                };
                // PostgreSQL forks from the newest timeline it recovered towards: the local
                // one, or one an attempt that died left its history file for (in this term
                // or an earlier one: that fork is recorded too).
                let parent = taken;
                let lsn = pg.flush_lsn;
                forks.push(Fork {
                    parent,
                    lsn,
                    timeline,
                    term,
                    node: self.cfg.name.clone(),
                    cause,
                    wall_time_ms: self.obs.wall_time_ms,
                });
                if let Some((t, _)) = recorded {
                    let detail = format!("timeline {t} is taken: the retry forks {parent} -> {timeline}");
                    self.note(Reason::HistoryCorrected, detail);
                }
                writes.push(Write::put(Value::History(next), Expect::from_current(view.history.as_ref())));
                timeline
            }
        };
        let take_sync = self.take_sync_record(view, rec);
        let sync_mine = take_sync.is_none();
        let taken = take_sync.map(|(write, record)| {
            writes.push(write);
            record
        });
        if !writes.is_empty() {
            let id = self.leader_write(rec, writes, true);
            if let Some(record) = taken {
                self.mem.sync_write = Some((id, record));
            }
        }
        let Some(deadline) = self.writable_until() else {
            return;
        };
        let sync_standbys = self.published_sync(view, rec);
        let sync_standbys = if sync_mine { sync_standbys } else { SyncStandbys::for_names(Vec::new(), self.strict()) };
        self.arm_guard();
        self.pg_op(PgOpKind::Promote, |id| Action::Promote { id, lease_deadline: deadline, timeline, sync_standbys });
        self.set(Reason::Promoting, format!("creating timeline {timeline}"));
    }

    /// In synchronous mode, the write that makes the sync record this reign's (with an
    /// empty set) if it is not already: S2 requires it before PostgreSQL is writable.
    pub(super) fn take_sync_record(
        &self,
        view: &ClusterView,
        rec: &Versioned<LeaderRecord>,
    ) -> Option<(Write, SyncRecord)> {
        let term = rec.value.term;
        let me = &self.cfg.name;
        let mine = |s: &SyncRecord| s.leader == *me && s.term == term;
        let taken =
            view.sync.as_ref().is_some_and(|s| mine(&s.value)) || self.mem.sync_known.as_ref().is_some_and(mine);
        (self.s.synchronous_mode.enabled() && !taken).then(|| {
            let record = SyncRecord { leader: self.cfg.name.clone(), term, members: Arc::default() };
            (Write::put(Value::Sync(record.clone()), Expect::from_current(view.sync.as_ref())), record)
        })
    }

    /// Paused: keep the lease, touch nothing, except to finish a manual failover.
    fn lead_paused(&mut self, view: &ClusterView, rec: &Versioned<LeaderRecord>) {
        let pg = &self.obs.pg;
        if let Some(p) = self.mem.pending {
            if p.kind != PgOpKind::StopImmediate && self.may_write() {
                self.arm_guard();
            }
            self.busy();
            return self.set(Self::waiting_reason(p.kind), format!("paused; waiting for {:?}", p.kind));
        }
        // A standby cluster's leader is never promoted by a failover, manual or not.
        let manual = self.mem.acquired_via == Some(ForkCause::ManualFailover) && !self.standby_cluster();
        if manual && pg.running && pg.in_recovery == Some(true) {
            // The operator asked for this node; pause does not stop the failover it asked for.
            return self.promote(view, rec);
        }
        if let Some(req) = &view.switchover {
            if req.value.kind == SwitchoverKind::Failover && req.value.to.as_deref() == Some(self.me()) {
                self.leader_write(rec, vec![Write::delete(Key::Switchover, Expect::Version(req.version))], false);
            }
        }
        if pg.maybe_writable() {
            self.arm_guard();
        }
        if pg.running && pg.in_recovery == Some(false) {
            self.mem.primary_down_since = None;
        }
        self.set(Reason::Paused, "leader keeps its lease; no automatic action")
    }

    pub(super) fn strict(&self) -> bool {
        self.s.synchronous_mode == crate::config::SyncMode::Strict
    }

    /// A reachable eligible candidate with strictly more WAL than this node (a late
    /// report). Every answer counts, listed as a member or not (its key may have expired).
    fn peer_strictly_ahead(&self) -> Option<String> {
        let mine = self.obs.pg.flush_lsn;
        self.obs.peers.iter().filter(|p| p.name != self.cfg.name).find_map(|p| {
            let e = p.status.as_ref()?.election?;
            (e.eligible && e.position.lsn > mine).then(|| p.name.clone())
        })
    }

    /// A healthy primary under a valid lease: everything only the leader does.
    fn primary_duties(&mut self, view: &ClusterView, rec: &Versioned<LeaderRecord>) {
        self.arm_guard();
        self.set(Reason::LeaderHealthy, String::new());
        self.prune_departed(view);
        if !self.rebuild_history(view, rec) {
            self.correct_fork(view, rec);
        }
        self.publish_status(view, rec);
        if view.config.is_none() && view.corrupt_key(&Key::Config).is_none() {
            self.leader_put_tail(rec, Value::Config(self.s.clone()), Expect::Absent);
        }
        self.publish_failsafe(view, rec);
        self.manage_sync(view, rec);
        self.manage_slots(view);
        self.remove_stale_members(view, rec);
        self.serve_switchover(view, rec);
    }

    /// A history no member can be judged against ([`ClusterView::history_fault`]) is written
    /// again from this primary's own timeline history: the line it is on is the
    /// cluster's. Conditioned on the unusable value's version, so a repair by hand that
    /// lands first stands. Whether it was needed.
    fn rebuild_history(&mut self, view: &ClusterView, rec: &Versioned<LeaderRecord>) -> bool {
        let Some(fault) = self.history_fault.clone() else {
            return false;
        };
        let pg = &self.obs.pg;
        let base = Self::base_timeline(view);
        let next = History::from_local(&pg.history, pg.timeline, base, &self.cfg.name, self.obs.wall_time_ms);
        let expect = view.history_expect();
        let detail = format!("rebuilt from the local timeline history ({} forks), since {fault}", next.forks.len());
        self.leader_put_tail(rec, Value::History(next), expect);
        self.note(Reason::HistoryCorrected, detail);
        true
    }

    /// After promotion, make the recorded fork say what PostgreSQL actually did.
    fn correct_fork(&mut self, view: &ClusterView, rec: &Versioned<LeaderRecord>) {
        let pg = &self.obs.pg;
        let history = Self::history(view);
        let Some(idx) = history.fork_index_by(&self.cfg.name, rec.value.term) else {
            return;
        };
        let fork = &history.forks[idx];
        let Some(last) = pg.history.last() else {
            return;
        };
        if fork.timeline == pg.timeline && fork.parent == last.timeline && fork.lsn == last.lsn {
            return;
        }
        let mut next = history.clone();
        let forks = Arc::make_mut(&mut next.forks);
        // PostgreSQL promoted again from the timeline this fork created (it restarted as a
        // standby on a stale view of the history, and PostgreSQL never reuses a timeline):
        // that is a fork of its own. Rewriting the recorded one would drop a timeline from
        // the line and leave every member diverged from it.
        let added = fork.parent != last.timeline && fork.timeline == last.timeline && idx + 1 == forks.len();
        let at = if added {
            forks.push(Fork { wall_time_ms: self.obs.wall_time_ms, ..fork.clone() });
            forks.len() - 1
        } else {
            idx
        };
        let f = &mut forks[at];
        f.parent = last.timeline;
        f.lsn = last.lsn;
        f.timeline = pg.timeline;
        let what = if added { "fork added:" } else { "fork corrected to" };
        let detail = format!("{what} {}@{} -> timeline {}", last.lsn, last.timeline, pg.timeline);
        self.leader_put_tail(rec, Value::History(next), Expect::from_current(view.history.as_ref()));
        self.note(Reason::HistoryCorrected, detail);
    }

    pub(super) fn publish_status(&mut self, view: &ClusterView, rec: &Versioned<LeaderRecord>) {
        let pg = &self.obs.pg;
        let mine =
            view.status.as_ref().is_some_and(|s| s.value.leader == self.cfg.name && s.value.term == rec.value.term);
        let unchanged = self.mem.status_at.is_some_and(|(_, lsn)| lsn == pg.flush_lsn);
        let recent = self.mem.status_at.is_some_and(|(at, _)| self.now < at.saturating_add(self.s.loop_wait));
        if mine && (unchanged || recent) {
            return;
        }
        self.mem.status_at = Some((self.now, pg.flush_lsn));
        let status = StatusRecord {
            leader: self.cfg.name.clone(),
            term: rec.value.term,
            timeline: pg.timeline,
            lsn: pg.flush_lsn,
        };
        self.leader_put_tail(rec, Value::Status(status), Expect::Any);
    }

    fn publish_failsafe(&mut self, view: &ClusterView, rec: &Versioned<LeaderRecord>) {
        if !self.s.failsafe_mode {
            if let Some(f) = &view.failsafe {
                self.leader_write(rec, vec![Write::delete(Key::Failsafe, Expect::Version(f.version))], false);
            }
            return;
        }
        let mut members: Vec<FailsafeMember> = view
            .members
            .iter()
            .map(|m| FailsafeMember { name: m.value.name.clone(), api_url: m.value.api_url.clone() })
            .collect();
        if !members.iter().any(|m| m.name == self.cfg.name) {
            members.push(FailsafeMember { name: self.cfg.name.clone(), api_url: self.cfg.api_url.clone() });
        }
        // A member whose key vanished (a DCS blip, a restart) stays in the set for a grace
        // period: the set names who may lead after a failsafe episode, and shrinking it on a
        // blip could leave nobody but this leader eligible.
        if let Some(current) = &view.failsafe {
            let gone: Vec<FailsafeMember> =
                current.value.members.iter().filter(|m| !members.iter().any(|x| x.name == m.name)).cloned().collect();
            for m in gone {
                if self.recently_departed(&m.name) {
                    members.push(m);
                }
            }
        }
        members.sort_by(|a, b| a.name.cmp(&b.name));
        if view.failsafe.as_ref().is_some_and(|f| *f.value.members == members) {
            return;
        }
        let expect = Expect::from_current(view.failsafe.as_ref());
        self.leader_put_tail(rec, Value::Failsafe(FailsafeRecord { members: members.into() }), expect);
    }

    pub(super) fn manage_slots(&mut self, view: &ClusterView) {
        let pg = &self.obs.pg;
        let me = self.me();
        let wanted = |name: &str| {
            self.cfg.permanent_slots.iter().any(|p| p == name)
                || view.members.iter().any(|m| m.value.name != me && slot_name(&m.value.name) == name)
        };
        let mut create: Vec<String> = view
            .members
            .iter()
            .filter(|m| m.value.name != me)
            .map(|m| slot_name(&m.value.name))
            .chain(self.cfg.permanent_slots.iter().cloned())
            .filter(|s| !pg.slots.contains(s))
            .collect();
        create.dedup();
        let unwanted: Vec<String> = pg.slots.iter().filter(|s| !wanted(s)).cloned().collect();
        // A slot of a member that vanished a moment ago is kept for the grace period, so a
        // blip does not cost the member its WAL (and a re-clone).
        let drop: Vec<String> = unwanted.into_iter().filter(|s| !self.recently_departed(s)).collect();
        for name in create {
            self.actions.push(Action::CreateSlot { name });
        }
        for name in drop {
            self.actions.push(Action::DropSlot { name });
        }
    }

    /// Whether `name` (a member or slot absent from the DCS) left less than ten ttls ago;
    /// starts counting the first time it is asked about.
    pub(super) fn recently_departed(&mut self, name: &str) -> bool {
        let now = self.now;
        let since = match self.mem.departed.iter().find(|(n, _)| n == name) {
            Some((_, since)) => *since,
            None => {
                self.mem.departed.push((name.to_string(), now));
                now
            }
        };
        now.saturating_sub(since) < self.s.ttl.saturating_mul(10)
    }

    /// Forgets departures of members that came back, and very old ones.
    pub(super) fn prune_departed(&mut self, view: &ClusterView) {
        let now = self.now;
        let horizon = self.s.ttl.saturating_mul(20);
        self.mem.departed.retain(|(n, since)| {
            !view.members.iter().any(|m| m.value.name == *n || slot_name(&m.value.name) == *n)
                && now.saturating_sub(*since) < horizon
        });
    }

    /// Stores without leases (DynamoDB): delete member records nobody refreshed for a ttl.
    pub(super) fn remove_stale_members(&mut self, view: &ClusterView, rec: &Versioned<LeaderRecord>) {
        if view.lease_model != LeaseModel::ObserverClock {
            return;
        }
        let mut seen = std::mem::take(&mut self.mem.members_seen);
        seen.retain(|s| view.members.iter().any(|m| m.value.name == s.name));
        let mut stale = Vec::new();
        for m in view.members.iter().filter(|m| m.value.name != self.cfg.name) {
            match seen.iter_mut().find(|s| s.name == m.value.name) {
                Some(s) if s.version == m.version => {
                    if view.received_at.saturating_sub(s.since) >= self.s.ttl {
                        stale.push((m.value.name.clone(), m.version));
                    }
                }
                Some(s) => {
                    s.version = m.version;
                    s.since = view.received_at;
                }
                None => seen.push(Seen { name: m.value.name.clone(), version: m.version, since: view.received_at }),
            }
        }
        self.mem.members_seen = seen;
        for (name, version) in stale {
            self.leader_write(rec, vec![Write::delete(Key::Member(name.clone()), Expect::Version(version))], false);
            self.note(Reason::StaleMemberRemoved, format!("{name} not refreshed for a ttl"));
        }
    }
}
