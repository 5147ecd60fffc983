//! Another node leads: follow it. Clone when there is no data, rewind or re-clone when
//! the local WAL forks from the published history (S4), start only as a standby.

use super::Cx;
use crate::action::{Action, StopMode};
use crate::dcs::{ClusterView, LeaderRecord, MemberRole};
use crate::history::Lineage;
use crate::memory::PgOpKind;
use crate::reason::Reason;
use crate::types::{NodeName, Versioned};

impl Cx<'_> {
    pub(super) fn follow(&mut self, view: &ClusterView, rec: &Versioned<LeaderRecord>) {
        let leader = rec.value.holder.clone();
        self.leader = Some(leader.clone());
        self.leave_leadership();
        self.mem.election_since = None;
        self.keepalive();
        if view.initialize.is_some() {
            let standby = self.obs.pg.in_recovery == Some(true);
            if self.restart(standby, |cx| cx.restart_replica(view, rec)) {
                return;
            }
        }
        if self.s.paused {
            return self.set(Reason::Paused, format!("{leader} leads"));
        }
        if let Some(p) = self.mem.pending {
            self.busy();
            return self.set(Self::waiting_reason(p.kind), format!("waiting for {:?}", p.kind));
        }
        let Some(init) = view.initialize.as_ref() else {
            return self.set(Reason::WaitingForBootstrap, format!("{leader} is initializing the cluster"));
        };
        let pg = &self.obs.pg;
        if self.obs.requests.reinitialize {
            return self.reinitialize(view, &leader);
        }
        let Some(system_id) = pg.system_id() else {
            if pg.running {
                return self.set(Reason::IneligibleNoData, "PostgreSQL runs without a data directory?");
            }
            if self.backing_off(PgOpKind::Clone) {
                return self.set(Reason::Cloning, "retrying after a failed clone");
            }
            let from = self.clone_source(view, &leader);
            self.pg_op(PgOpKind::Clone, |id| Action::Clone { id, from: from.clone() });
            return self.set(Reason::Cloning, format!("from {from}"));
        };
        if system_id != init.value.system_id {
            return self.set(Reason::SystemIdMismatch, format!("local {system_id}, cluster {}", init.value.system_id));
        }
        if pg.maybe_writable() {
            // Being fenced (S1 check above); nothing else until it is down.
            self.busy();
            return self.set(Reason::FencingNotLeader, String::new());
        }
        if let Some(fault) = self.history_fault.clone() {
            // Nothing can be judged against it: no rewind, clone or start on its word, and
            // a running standby streams on (PostgreSQL refuses WAL that forks from its
            // own). The leader rewrites it from its timeline history; nothing to hurry.
            let state = if pg.running { "streaming on" } else { "staying down" };
            return self.set(Reason::HistoryUnusable, format!("{fault}; {state} until {leader} rewrites it"));
        }
        let leader_primary = view.member(&leader).is_some_and(|m| m.value.role.leads());
        if !Self::leader_established(view, rec) {
            // A new reign's leader may be about to fork: its fork record can land just after
            // this read. Judge lineage only once the fork is recorded, or the leader shows
            // itself primary in this term on the tip (a restart in place records no fork).
            self.busy();
            return self.set(Reason::WaitingForLeaderPrimary, format!("{leader} has not forked or started yet"));
        }
        if let Some(tl) = self.unexplained_leader_timeline(view, &leader) {
            // The leader is on a timeline the history we read does not record: our read is
            // older than its fork (a stale read). Judging lineage on it could make us follow
            // a history that forks from ours (S4); wait for a fresh view.
            self.busy();
            return self.set(Reason::HistoryBehindLeader, format!("{leader} is on timeline {tl}"));
        }
        let lineage = self.follow_lineage(view);
        let pg = &self.obs.pg;
        if pg.running {
            if lineage == Lineage::Diverged {
                self.pg_op(PgOpKind::StopFast, |id| Action::Stop { id, mode: StopMode::Fast });
                return self.set(Reason::StoppingDiverged, format!("local {} vs history", pg.position_detail()));
            }
            if pg.upstream.as_deref() != Some(leader.as_str()) {
                self.actions.push(Action::Follow { upstream: Some(leader.clone()) });
                self.busy();
                return self.set(Reason::Repointing, format!("to {leader}"));
            }
            if pg.streaming {
                return self.set(Reason::ReplicaStreaming, String::new());
            }
            return self.set(Reason::ReplicaConnecting, format!("from {leader}"));
        }
        // PostgreSQL is down.
        self.busy();
        if lineage == Lineage::Diverged {
            if !leader_primary {
                return self.set(Reason::WaitingForLeaderPrimary, format!("{leader} is not primary yet"));
            }
            if self.cfg.use_rewind && pg.rewind_capable && !self.mem.rewind_failed {
                if self.backing_off(PgOpKind::Rewind) {
                    return self.set(Reason::Rewinding, "waiting a loop after a failed rewind or clone");
                }
                self.pg_op(PgOpKind::Rewind, |id| Action::Rewind { id, from: leader.clone() });
                return self.set(Reason::Rewinding, format!("local {} forks from the history", pg.position_detail()));
            }
            if !self.cfg.reclone_on_rewind_failure {
                return self.set(
                    Reason::DivergedNeedsReinit,
                    format!("local {} forks from the history", pg.position_detail()),
                );
            }
            if self.backing_off(PgOpKind::Clone) {
                return self.set(Reason::Recloning, "waiting a loop after a failed rewind or clone");
            }
            let why = if !pg.rewind_capable || !self.cfg.use_rewind {
                "pg_rewind unavailable (needs wal_log_hints or data checksums)"
            } else {
                "pg_rewind failed"
            };
            self.pg_op(PgOpKind::Clone, |id| Action::Clone { id, from: leader.clone() });
            return self.set(Reason::Recloning, why);
        }
        if self.backing_off(PgOpKind::StartReplica) {
            return self.set(Reason::StartingReplica, "retrying after a failed start");
        }
        self.pg_op(PgOpKind::StartReplica, |id| Action::StartReplica { id, upstream: Some(leader.clone()) });
        self.set(Reason::StartingReplica, format!("following {leader}"));
    }

    /// Whether the leader's reign is settled enough to judge lineage against: its fork for
    /// this term is recorded, or it is primary in this term on the tip timeline.
    fn leader_established(view: &ClusterView, rec: &Versioned<LeaderRecord>) -> bool {
        let (leader, term) = (&rec.value.holder, rec.value.term);
        let history = Self::history(view);
        if history.fork_by(leader, term).is_some() {
            return true;
        }
        let tip = history.forks.last().map_or(Self::base_timeline(view), |f| f.timeline);
        view.member(leader)
            .is_some_and(|m| m.value.role.leads() && m.value.leader_term == Some(term) && m.value.timeline == tip)
    }

    /// The leader's timeline (from its answer, else its member record) if neither this
    /// node's timeline nor any fork in the history read explains it.
    fn unexplained_leader_timeline(&self, view: &ClusterView, leader: &str) -> Option<crate::types::Timeline> {
        let answered = self.obs.peer(leader).and_then(|p| p.status.as_ref()).map(|st| st.position.timeline);
        let tl = answered.or_else(|| view.member(leader).map(|m| m.value.timeline))?;
        let base = Self::base_timeline(view);
        let explained = tl.0 == 0
            || tl <= self.obs.pg.timeline
            || tl == base
            || Self::history(view).forks.iter().any(|f| f.timeline == tl);
        (!explained).then_some(tl)
    }

    /// Clone source: a running replica tagged `clonefrom`, else the leader. A member of the
    /// published sync set clones from the leader: it must hold every acknowledged commit
    /// (S2), and a replica may not have them all.
    fn clone_source(&self, view: &ClusterView, leader: &NodeName) -> NodeName {
        if view.sync.as_ref().is_some_and(|s| s.value.members.iter().any(|m| m == self.me())) {
            return leader.clone();
        }
        view.members
            .iter()
            .find(|m| {
                m.value.tags.clonefrom
                    && m.value.name != self.cfg.name
                    && m.value.running
                    && m.value.role == MemberRole::Replica
            })
            .map_or_else(|| leader.clone(), |m| m.value.name.clone())
    }

    /// Maintenance mode: start a restarted standby again, unless its WAL forks from the
    /// history (then it needs a rewind, which waits for the end of maintenance mode).
    fn restart_replica(&mut self, view: &ClusterView, rec: &Versioned<LeaderRecord>) {
        let leader = &rec.value.holder;
        let cluster = view.initialize.as_ref().map(|i| i.value.system_id);
        if self.obs.pg.system_id().is_none() || self.obs.pg.system_id() != cluster {
            self.end_restart();
            return self.set(Reason::Paused, "not started again: its data is not this cluster's");
        }
        if let Some(fault) = self.history_fault.clone() {
            return self.set(Reason::HistoryUnusable, format!("{fault}; not started until {leader} rewrites it"));
        }
        // The checks a standby's start gets outside maintenance mode (S4): the leader's
        // reign settled, its timeline explained by the history read, no fork from it.
        if !Self::leader_established(view, rec) || self.unexplained_leader_timeline(view, leader).is_some() {
            self.busy();
            return self.set(Reason::Restarting, format!("waiting for {leader} to settle before starting"));
        }
        if self.follow_lineage(view) == Lineage::Diverged {
            self.end_restart();
            let detail = format!("not started again: local {} forks from the history", self.obs.pg.position_detail());
            return self.set(Reason::Paused, detail);
        }
        if self.backing_off(PgOpKind::StartReplica) {
            return self.set(Reason::Restarting, "retrying after a failed start");
        }
        let upstream = Some(leader.clone());
        self.pg_op(PgOpKind::StartReplica, |id| Action::StartReplica { id, upstream });
        self.set(Reason::Restarting, format!("starting again, following {leader}"));
    }

    fn reinitialize(&mut self, view: &ClusterView, leader: &NodeName) {
        let pg = &self.obs.pg;
        self.busy();
        if pg.running {
            self.pg_op(PgOpKind::StopFast, |id| Action::Stop { id, mode: StopMode::Fast });
            return self.set(Reason::Reinitializing, "stopping PostgreSQL first");
        }
        if self.backing_off(PgOpKind::Clone) {
            return self.set(Reason::Reinitializing, "retrying after a failed clone");
        }
        let from = self.clone_source(view, leader);
        self.pg_op(PgOpKind::Clone, |id| Action::Clone { id, from: from.clone() });
        self.set(Reason::Reinitializing, format!("cloning from {from}"));
    }
}
