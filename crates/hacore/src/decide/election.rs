//! The leader is missing: elect the most advanced eligible member (S3).
//!
//! Each eligible candidate stops its WAL receiver so its position is final, reports it,
//! and waits until every eligible member has reported or is unreachable. It takes the
//! lease only if nobody reachable and eligible is ahead of it (ties: priority, then
//! name), it is within `maximum_lag_on_failover` (asynchronous mode), in the sync set
//! (synchronous mode, S2), in the failsafe set and not holding a failsafe
//! acknowledgement (S1').

use super::Cx;
use crate::action::Action;
use crate::dcs::{ClusterView, Expect, LeaderRecord, SwitchoverRequest};
use crate::history::{ForkCause, Lineage};
use crate::memory::{PgOpKind, Seen};
use crate::reason::Reason;
use crate::status::ElectionReport;
use crate::types::{Lsn, NodeName, Versioned};
use std::cmp::Ordering;

/// How two candidates compare: more WAL first, then higher priority, then smaller name.
pub(super) fn rank(a: (Lsn, u32, &str), b: (Lsn, u32, &str)) -> Ordering {
    a.0.cmp(&b.0).then(a.1.cmp(&b.1)).then_with(|| b.2.cmp(a.2))
}

impl Cx<'_> {
    pub(super) fn elect(&mut self, view: &ClusterView, expect: Expect) {
        self.leave_leadership();
        self.keepalive();
        let pg = &self.obs.pg;
        let settled = pg.upstream.is_none() && !pg.streaming;
        let report = |eligible| ElectionReport {
            position: pg.position(),
            settled,
            priority: self.cfg.tags.failover_priority,
            eligible,
        };

        // Manual failover request.
        let manual = self.manual_request(view);
        let mut manual_to_me = false;
        if let Some((req, since)) = &manual {
            match &req.value.to {
                Some(to) if to != self.me() && self.now.saturating_sub(*since) < self.s.switchover_timeout => {
                    self.election = Some(report(false));
                    self.mem.election_since = None;
                    return self.set(Reason::WaitingForManualFailover, format!("failover to {to} requested"));
                }
                Some(to) if to == self.me() => manual_to_me = true,
                Some(_) => {} // an expired request for another node: ignore it
                None => {}
            }
        }
        if self.s.paused && !manual_to_me {
            self.mem.election_since = None;
            self.election = Some(report(false));
            return self.set(Reason::Paused, "no leader; automatic failover is paused");
        }
        if let Err((reason, detail)) = self.eligibility(view) {
            self.election = Some(report(false));
            self.mem.election_since = None;
            if reason == Reason::IneligibleCatchingUp && !pg.running {
                return self.start_to_catch_up(detail);
            }
            return self.set(reason, detail);
        }
        if manual_to_me && self.s.paused {
            if let Some(old) = self.old_primary_running(view, manual.as_ref().map(|(r, _)| &r.value)) {
                self.election = Some(report(false));
                return self
                    .set(Reason::ManualFailoverOldPrimaryRunning, format!("{old} has not been confirmed stopped"));
            }
        }

        let since = *self.mem.election_since.get_or_insert(self.now);
        self.busy();
        if !settled {
            self.election = Some(report(true));
            if pg.upstream.is_some() {
                self.actions.push(Action::Follow { upstream: None });
            }
            return self.set(Reason::ElectionSettling, String::new());
        }
        self.election = Some(report(true));

        // Every member that could lead must have answered (or be unreachable)...
        let mine = (pg.flush_lsn, self.cfg.tags.failover_priority, self.me());
        let mut waiting: Vec<&str> = view
            .members
            .iter()
            .filter(|m| {
                m.value.name != self.cfg.name && m.value.tags.can_lead() && self.obs.peer(&m.value.name).is_none()
            })
            .map(|m| m.value.name.as_str())
            .collect();
        // ...and every answer counts, listed as a member or not (its key may have expired).
        for peer in self.obs.peers.iter().filter(|p| p.name != self.cfg.name) {
            let name = peer.name.as_str();
            let Some(st) = &peer.status else { continue }; // unreachable
            let Some(e) = st.election else {
                // Not a candidate (yet): it may still notice the leader is gone and report.
                // Wait for it, bounded like any straggler; a node that never campaigns (it
                // cannot reach the store, it trusts a stale read) must not block the rest.
                if st.can_lead {
                    waiting.push(name);
                }
                continue;
            };
            let (eligible, lsn, prio, settled) = (e.eligible, e.position.lsn, e.priority, e.settled);
            if !eligible {
                continue;
            }
            // An operator's choice overrides the tie-breaks; only more WAL blocks it (S3).
            let ahead = if manual_to_me { lsn > mine.0 } else { rank((lsn, prio, name), mine) == Ordering::Greater };
            if ahead {
                let reason = if manual_to_me { Reason::ManualFailoverBehind } else { Reason::ElectionLost };
                return self.set(reason, format!("{name} at {lsn} (priority {prio}) ranks above {}", pg.flush_lsn));
            }
            if !settled {
                waiting.push(name);
            }
        }
        if !waiting.is_empty() && self.now.saturating_sub(since) < self.s.ttl {
            return self.set(Reason::ElectionWaiting, format!("no final position yet from {}", waiting.join(", ")));
        }
        if self.mem.lease_op.is_some() {
            return self.set(Reason::Acquiring, "waiting for the acquire outcome");
        }
        self.mem.acquired_via = Some(if manual_to_me { ForkCause::ManualFailover } else { ForkCause::Failover });
        let record = LeaderRecord { holder: self.cfg.name.clone(), term: view.term.next(), ttl: self.s.ttl };
        self.acquire(view, record, expect, true);
        self.set(Reason::Acquiring, format!("at {}", pg.position()));
    }

    /// Data fresh from a rewind or a clone, PostgreSQL down and no leader to follow: start
    /// it as a standby of nobody, so that it replays its own WAL to its consistency point
    /// and may lead. Without this a cluster whose last candidate was rebuilt just as its
    /// leader vanished would wait for a leader that only this member could become.
    fn start_to_catch_up(&mut self, detail: String) {
        self.busy();
        if self.backing_off(PgOpKind::StartReplica) {
            return self.set(Reason::IneligibleCatchingUp, detail);
        }
        self.pg_op(PgOpKind::StartReplica, |id| Action::StartReplica { id, upstream: None });
        self.set(Reason::IneligibleCatchingUp, format!("{detail}: starting it, following nobody"))
    }

    /// Whether this node may take the lease now; otherwise the reason why not.
    pub(super) fn eligibility(&self, view: &ClusterView) -> Result<(), (Reason, String)> {
        let pg = &self.obs.pg;
        let me = self.me();
        if !self.cfg.tags.can_lead() {
            return Err((Reason::IneligibleNoFailover, String::new()));
        }
        if let Some(p) = self.mem.pending {
            return Err((Reason::IneligibleBusy, format!("{:?} in progress", p.kind)));
        }
        // A leader that gave up because PostgreSQL would not start (a broken data
        // directory, a full disk) would otherwise win the next election again and again
        // (it ranks first on its own WAL): for a ttl after a failed start, others go first.
        let start_failed = self
            .mem
            .failures
            .iter()
            .filter(|f| matches!(f.kind, PgOpKind::StartPrimary | PgOpKind::StartReplica))
            .map(|f| f.at)
            .max();
        if let Some(at) = start_failed.filter(|&at| !pg.running && self.now < at.saturating_add(self.s.ttl)) {
            return Err((
                Reason::IneligibleBusy,
                format!("PostgreSQL failed to start {} ms ago", self.now.saturating_sub(at)),
            ));
        }
        let init = view.initialize.as_ref().map(|i| i.value.system_id);
        if pg.system_id().is_none() || pg.system_id() != init {
            return Err((Reason::IneligibleNoData, "no data of this cluster".into()));
        }
        if pg.maybe_writable() || (pg.running && (!pg.responsive || pg.in_recovery.is_none())) {
            return Err((Reason::IneligibleBusy, "PostgreSQL state not settled".into()));
        }
        if let Some(fault) = &self.history_fault {
            return Err((Reason::HistoryUnusable, format!("{fault}; no member can be judged on the cluster's line")));
        }
        if self.lineage != Lineage::Along {
            return Err((Reason::IneligibleDiverged, format!("local {}", pg.position_detail())));
        }
        if let Some(t) = self.mem.catchup_to {
            let detail = match pg.running {
                true => format!("replayed {} of {t}", pg.replay_lsn),
                false => format!("PostgreSQL is down; it must replay to {t} as a standby first"),
            };
            return Err((Reason::IneligibleCatchingUp, detail));
        }
        // The sync set decides only once a synchronous primary has published one: it does
        // so before it can acknowledge a commit (S2), so without a record no commit waited
        // for a standby and the lag bound applies (a cluster promoted from a standby cluster
        // whose leader died, or synchronous mode just switched on). The acquire is
        // conditioned on the record still being absent. A standby cluster acknowledges no
        // commit, so neither bound has anything to protect there; and since its members
        // get WAL only through its leader, one behind by more than the lag bound could
        // never catch up to lead: with the most advanced member gone it would stay
        // leaderless for good. Most advanced still wins among those that answer (S3).
        let sync_record = view.sync.is_some() || view.corrupt_key(&crate::dcs::Key::Sync).is_some();
        if !self.standby_cluster() {
            if self.s.synchronous_mode.enabled() && sync_record {
                let in_set =
                    view.sync.as_ref().is_some_and(|s| s.value.leader == me || s.value.members.iter().any(|m| m == me));
                if !in_set {
                    return Err((Reason::IneligibleNotSynchronous, String::new()));
                }
            } else if let Some(st) = &view.status {
                let lag = pg.flush_lsn.lag_behind(st.value.lsn);
                if lag > self.s.maximum_lag_on_failover {
                    return Err((
                        Reason::IneligibleLagging,
                        format!("{lag} bytes behind {} > {}", st.value.lsn, self.s.maximum_lag_on_failover),
                    ));
                }
            }
        }
        if self.s.failsafe_mode {
            if let Some(f) = &view.failsafe {
                if !f.value.members.iter().any(|m| m.name == me) {
                    return Err((Reason::IneligibleNotInFailsafeSet, String::new()));
                }
            }
        }
        if let Some(ack) = &self.mem.failsafe_ack {
            if self.now < ack.at.saturating_add(ack.ttl.max(self.s.ttl)) {
                return Err((
                    Reason::IneligibleFailsafeHold,
                    format!("acknowledged {} in term {}", ack.leader, ack.term),
                ));
            }
        }
        // A daemon that just started cannot know whether it acknowledged a failsafe primary
        // before it restarted: in failsafe mode it holds off for a ttl (S1'), the longer of
        // its own and the one the last leader record was written with.
        let hold = view.leader.as_ref().map_or(self.s.ttl, |r| r.value.ttl.max(self.s.ttl));
        if self.s.failsafe_mode && self.mem.started_at.is_some_and(|t| self.now < t.saturating_add(hold)) {
            return Err((Reason::IneligibleFailsafeHold, "started less than a ttl ago".into()));
        }
        Ok(())
    }

    /// A request naming a candidate while no leader exists, and since when it was seen.
    fn manual_request(&mut self, view: &ClusterView) -> Option<(Versioned<SwitchoverRequest>, u64)> {
        let Some(req) = view.switchover.as_ref().filter(|r| r.value.to.is_some()) else {
            self.mem.request_seen = None;
            return None;
        };
        let since = match &self.mem.request_seen {
            Some(s) if s.version == req.version => s.since,
            _ => {
                self.mem.request_seen = Some(Seen { name: NodeName::new(), version: req.version, since: self.now });
                self.now
            }
        };
        Some((req.clone(), since))
    }

    /// In pause, a manual failover needs the old primary confirmed stopped: its name if not.
    fn old_primary_running(&self, view: &ClusterView, req: Option<&SwitchoverRequest>) -> Option<NodeName> {
        let old = req.and_then(|r| r.from.clone()).or_else(|| view.status.as_ref().map(|s| s.value.leader.clone()))?;
        if old == self.cfg.name {
            return None;
        }
        match self.obs.peer(&old).and_then(|p| p.status.as_ref()) {
            Some(st) if !st.running => None,
            _ => Some(old),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_orders_by_lsn_then_priority_then_name() {
        assert_eq!(rank((Lsn(2), 1, "b"), (Lsn(1), 9, "a")), Ordering::Greater);
        assert_eq!(rank((Lsn(1), 2, "b"), (Lsn(1), 1, "a")), Ordering::Greater);
        assert_eq!(rank((Lsn(1), 1, "a"), (Lsn(1), 1, "b")), Ordering::Greater);
        assert_eq!(rank((Lsn(1), 1, "a"), (Lsn(1), 1, "a")), Ordering::Equal);
    }
}
