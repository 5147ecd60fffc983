//! Planned switchover on the leader: CHECKPOINT while writable, stop fast, wait until
//! the candidate has received the end of the WAL (the shutdown checkpoint), then transfer
//! the leader record by CAS with term + 1. No open race for a third node. If the
//! candidate does not catch up in time, restart as primary under the lease still held.

use super::election::rank;
use super::Cx;
use crate::action::{Action, StopMode};
use crate::dcs::{ClusterView, DcsOp, Expect, Key, LeaderRecord, MemberRole, SwitchoverKind, Write};
use crate::memory::{LeaseOp, LeaseOpKind, PgOpKind, SwitchoverPhase, SwitchoverProgress};
use crate::reason::Reason;
use crate::types::{NodeName, Version, Versioned};
use std::cmp::Ordering;

impl Cx<'_> {
    /// Drives a switchover already under way. Returns whether one is.
    pub(super) fn switchover_in_progress(&mut self, view: &ClusterView, rec: &Versioned<LeaderRecord>) -> bool {
        let Some(p) = self.mem.switchover.clone() else {
            return false;
        };
        self.busy();
        let pg = &self.obs.pg;
        let request_alive = view.switchover.as_ref().is_some_and(|r| r.version == p.request);
        if !request_alive && p.phase == SwitchoverPhase::Checkpoint {
            self.mem.switchover = None;
            return false;
        }
        if let Some(pending) = self.mem.pending {
            let reason = match pending.kind {
                PgOpKind::Checkpoint => Reason::SwitchoverCheckpoint,
                PgOpKind::StartPrimary => Reason::SwitchoverAborted,
                _ => Reason::SwitchoverStopping,
            };
            if pg.maybe_writable() {
                self.arm_guard();
            }
            self.set(reason, format!("to {}", p.candidate));
            return true;
        }
        match p.phase {
            SwitchoverPhase::Checkpoint => {
                // The checkpoint finished (or failed: the shutdown checkpoint does its work).
                self.pg_op(PgOpKind::StopFast, |id| Action::Stop { id, mode: StopMode::Fast });
                self.advance(SwitchoverPhase::Stopping);
                self.set(Reason::SwitchoverStopping, format!("to {}", p.candidate));
            }
            SwitchoverPhase::Stopping => {
                if pg.running {
                    self.abort_switchover(view, rec, &p, "PostgreSQL did not stop");
                } else {
                    self.advance(SwitchoverPhase::AwaitCandidate);
                    self.await_candidate(view, rec, &p);
                }
            }
            SwitchoverPhase::AwaitCandidate => {
                if pg.running {
                    // Someone started it behind our back; it is our primary again.
                    self.abort_switchover(view, rec, &p, "PostgreSQL was started again");
                } else if !request_alive {
                    self.abort_switchover(view, rec, &p, "request withdrawn");
                } else {
                    self.await_candidate(view, rec, &p);
                }
            }
        }
        true
    }

    fn advance(&mut self, phase: SwitchoverPhase) {
        if let Some(p) = &mut self.mem.switchover {
            p.phase = phase;
            p.since = self.now;
        }
    }

    /// Whether the candidate of a switchover waiting for it has received the end of the WAL
    /// and can still lead: an operator may have had it reinitialized meanwhile, and a clone
    /// that holds the end of the WAL is not consistent until it has replayed it (O2).
    fn candidate_caught_up(&self, p: &SwitchoverProgress) -> bool {
        let end = self.obs.pg.position();
        self.obs
            .peer(&p.candidate)
            .and_then(|r| r.status.as_ref())
            .is_some_and(|st| st.can_lead && st.position.lsn >= end.lsn)
    }

    /// Whether this step hands the lease over: PostgreSQL is down and the candidate has
    /// the end of the WAL. The transfer then goes out instead of a renewal; a renewal
    /// always in flight (a store round trip longer than the loop) would hold it off until
    /// the switchover times out.
    pub(super) fn transfer_due(&self) -> bool {
        self.mem.switchover.as_ref().is_some_and(|p| {
            p.phase == SwitchoverPhase::AwaitCandidate
                && self.mem.pending.is_none()
                && !self.obs.pg.running
                && self.candidate_caught_up(p)
        })
    }

    fn await_candidate(&mut self, view: &ClusterView, rec: &Versioned<LeaderRecord>, p: &SwitchoverProgress) {
        let end = self.obs.pg.position();
        let caught_up = self.candidate_caught_up(p);
        if caught_up && self.mem.lease_op.is_none() {
            let to = LeaderRecord { holder: p.candidate.clone(), term: rec.value.term.next(), ttl: self.s.ttl };
            let op = DcsOp::TransferLeader { guard: self.guard(rec), to, clear_switchover: Some(p.request) };
            let id = self.dcs(op);
            self.mem.lease_op = Some(LeaseOp { id, kind: LeaseOpKind::Transfer, term: rec.value.term });
            return self.set(Reason::SwitchoverTransferring, format!("to {} at {end}", p.candidate));
        }
        let since = self.mem.switchover.as_ref().map_or(self.now, |s| s.since);
        if self.now.saturating_sub(since) >= self.s.switchover_timeout {
            let p = p.clone();
            return self.abort_switchover(view, rec, &p, "candidate did not receive the end of the WAL in time");
        }
        self.set(Reason::SwitchoverAwaitCandidate, format!("{} must reach {end}", p.candidate));
    }

    fn abort_switchover(
        &mut self,
        view: &ClusterView,
        rec: &Versioned<LeaderRecord>,
        p: &SwitchoverProgress,
        why: &str,
    ) {
        self.mem.switchover = None;
        if view.switchover.as_ref().is_some_and(|r| r.version == p.request) {
            self.clear_request(rec, p.request);
        }
        self.set(Reason::SwitchoverAborted, format!("to {}: {why}", p.candidate));
        if !self.obs.pg.running {
            if let Some(deadline) = self.deadline_for_writable_action() {
                let sync_standbys = self.published_sync(view, rec);
                self.arm_guard();
                self.pg_op(PgOpKind::StartPrimary, |id| Action::StartPrimary {
                    id,
                    lease_deadline: deadline,
                    sync_standbys,
                });
            }
        }
    }

    fn clear_request(&mut self, rec: &Versioned<LeaderRecord>, version: Version) {
        self.leader_write(rec, vec![Write::delete(Key::Switchover, Expect::Version(version))], false);
    }

    fn reject(&mut self, rec: &Versioned<LeaderRecord>, version: Version, why: String) {
        self.clear_request(rec, version);
        self.reason = Reason::SwitchoverRejected;
        self.detail = why;
    }

    /// A healthy leader looks at the `switchover` key.
    pub(super) fn serve_switchover(&mut self, view: &ClusterView, rec: &Versioned<LeaderRecord>) {
        let Some(req) = &view.switchover else { return };
        let me = self.me();
        if req.value.kind == SwitchoverKind::Failover && req.value.to.as_deref() == Some(me) {
            // A manual failover to this node is done.
            return self.clear_request(rec, req.version);
        }
        if let Some(from) = req.value.from.as_deref().filter(|f| *f != me) {
            return self.reject(rec, req.version, format!("request names {from} as leader, but {me} leads"));
        }
        if self.s.paused {
            return self.reject(rec, req.version, "the cluster is paused; resume it first".into());
        }
        if req.value.at_wall_ms.is_some() && !self.obs.requests.switchover_due {
            self.reason = Reason::SwitchoverScheduled;
            return;
        }
        let candidate = match self.switchover_candidate(view, req.value.to.as_deref()) {
            Ok(c) => c,
            Err(why) => return self.reject(rec, req.version, why),
        };
        if self.standby_cluster() {
            // Nothing is written here, so nothing can be lost: hand the lease over at once;
            // the candidate points its WAL receiver at the upstream, this node follows it.
            if self.mem.lease_op.is_none() {
                let to = LeaderRecord { holder: candidate.clone(), term: rec.value.term.next(), ttl: self.s.ttl };
                let op = DcsOp::TransferLeader { guard: self.guard(rec), to, clear_switchover: Some(req.version) };
                let id = self.dcs(op);
                self.mem.lease_op = Some(LeaseOp { id, kind: LeaseOpKind::Transfer, term: rec.value.term });
            }
            self.busy();
            self.reason = Reason::SwitchoverTransferring;
            self.detail = format!("to {candidate} (standby cluster)");
            return;
        }
        self.mem.switchover = Some(SwitchoverProgress {
            candidate: candidate.clone(),
            request: req.version,
            phase: SwitchoverPhase::Checkpoint,
            since: self.now,
        });
        self.pg_op(PgOpKind::Checkpoint, |id| Action::Checkpoint { id });
        self.reason = Reason::SwitchoverCheckpoint;
        self.detail = format!("to {candidate}");
    }

    /// The named candidate if it can take over, else the best one; or why none can.
    fn switchover_candidate(&self, view: &ClusterView, to: Option<&str>) -> Result<NodeName, String> {
        let me = self.me();
        let sync = self.s.synchronous_mode.enabled();
        let check = |name: &str| -> Result<(crate::types::Lsn, u32), String> {
            let m = view.member(name).ok_or_else(|| format!("{name} is not a member"))?;
            if name == me {
                return Err(format!("{name} already leads"));
            }
            if !m.value.tags.can_lead() {
                return Err(format!("{name} is tagged nofailover"));
            }
            let st =
                self.obs.peer(name).and_then(|p| p.status.as_ref()).ok_or_else(|| format!("{name} does not answer"))?;
            if !st.running || st.role != MemberRole::Replica || !st.can_lead {
                return Err(format!("{name} is not a healthy replica that could lead"));
            }
            if !self.obs.pg.standbys.iter().any(|s| s.name == name && s.streaming) {
                return Err(format!("{name} is not streaming from {me}"));
            }
            if sync && !view.sync.as_ref().is_some_and(|s| s.value.members.iter().any(|x| x == name)) {
                return Err(format!("{name} is not a synchronous standby; pick one from the sync set"));
            }
            Ok((st.position.lsn, m.value.tags.failover_priority))
        };
        if let Some(to) = to {
            check(to)?;
            return Ok(to.to_string());
        }
        let mut best: Option<(crate::types::Lsn, u32, &str)> = None;
        for m in &view.members {
            if let Ok((lsn, prio)) = check(&m.value.name) {
                let cand = (lsn, prio, m.value.name.as_str());
                if best.is_none_or(|b| rank(cand, b) == Ordering::Greater) {
                    best = Some(cand);
                }
            }
        }
        best.map(|b| b.2.to_string()).ok_or_else(|| "no healthy replica can take over".to_string())
    }
}
