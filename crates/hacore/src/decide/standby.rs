//! A standby cluster (`standby_cluster` set): the leader holds the lease as in any
//! cluster but replicates from the cluster's upstream ([`crate::UPSTREAM`]) instead of
//! being writable; the other members follow the leader (cascading) and elect a new one
//! among themselves when it fails. Nobody in a standby cluster accepts writes: the leader's
//! writable deadline is always None, so S1's fence catches a PostgreSQL that is writable.
//! Removing `standby_cluster` promotes the cluster: the leader then takes the ordinary
//! promotion path (fork recorded with cause `cluster_promotion`, then promote).

use super::Cx;
use crate::action::Action;
use crate::config::UPSTREAM;
use crate::dcs::{ClusterView, Expect, Key, LeaderRecord, Value};
use crate::history::{Fork, ForkCause, History, TimelineSwitch};
use crate::memory::PgOpKind;
use crate::reason::Reason;
use crate::types::{Timeline, Versioned};
use std::sync::Arc;

impl Cx<'_> {
    /// Whether this is a standby cluster.
    pub(super) fn standby_cluster(&self) -> bool {
        self.s.standby_cluster.is_some()
    }

    /// Whether every member's WAL can only be the upstream's: a standby cluster, one whose
    /// leader still publishes itself as its standby leader (a promotion under way), or one
    /// founded as a standby cluster that no member has promoted yet (no `cluster_promotion`
    /// fork: a promotion records it before PostgreSQL is writable). Then the upstream's
    /// timeline switches a member holds count as part of the history
    /// ([`Cx::with_upstream_switches`]) even before they are recorded.
    pub(super) fn upstream_wal_only(&self, view: &ClusterView) -> bool {
        let leader_is_standby_leader = view.leader.as_ref().is_some_and(|l| {
            view.member(&l.value.holder).is_some_and(|m| m.value.role == crate::dcs::MemberRole::StandbyLeader)
        });
        self.standby_cluster() || leader_is_standby_leader || Self::never_promoted_standby(view)
    }

    /// Founded as a standby cluster and not promoted yet.
    pub(super) fn never_promoted_standby(view: &ClusterView) -> bool {
        view.initialize.as_ref().is_some_and(|i| i.value.standby)
            && !Self::history(view).forks.iter().any(|f| f.cause == ForkCause::ClusterPromotion)
    }

    /// The leader of a standby cluster, lease valid, no operation in flight.
    pub(super) fn standby_lead(&mut self, view: &ClusterView, rec: &Versioned<LeaderRecord>) {
        // Should the cluster be promoted later, the fork says so.
        self.mem.acquired_via = Some(ForkCause::ClusterPromotion);
        let pg = &self.obs.pg;
        if pg.maybe_writable() {
            // S1 fenced it already unless a fence is under way; say why.
            self.fence(Reason::StandbyClusterWritable);
            return self.set(Reason::StandbyClusterWritable, "a standby cluster accepts no writes");
        }
        if !pg.running {
            return self.standby_start(view, rec);
        }
        self.mem.primary_down_since = None;
        self.prune_departed(view);
        self.mirror_upstream_timelines(view, rec);
        self.publish_status(view, rec);
        if view.config.is_none() && view.corrupt_key(&Key::Config).is_none() {
            self.leader_put_tail(rec, Value::Config(self.s.clone()), Expect::Absent);
        }
        self.manage_slots(view);
        self.remove_stale_members(view, rec);
        let upstream = self.s.standby_cluster.clone();
        let repoint = pg.upstream.as_deref() != Some(UPSTREAM) || self.mem.upstream_applied != upstream;
        if repoint && pg.responsive {
            self.actions.push(Action::Follow { upstream: Some(UPSTREAM.to_string()) });
            self.mem.upstream_applied = upstream;
            self.busy();
            self.set(Reason::StandbyLeaderRepointing, self.upstream_detail());
        } else if pg.streaming {
            self.set(Reason::StandbyLeaderStreaming, self.upstream_detail());
        } else if !pg.responsive {
            self.set(Reason::StandbyLeaderReplaying, "PostgreSQL does not answer");
        } else {
            self.set(Reason::StandbyLeaderReplaying, self.upstream_detail());
        }
        self.serve_switchover(view, rec);
    }

    pub(super) fn upstream_detail(&self) -> String {
        match &self.s.standby_cluster {
            Some(sc) if !sc.pg_url.is_empty() => format!("from {}", sc.pg_url),
            Some(_) => "from the WAL archive (restore_command)".to_string(),
            None => String::new(),
        }
    }

    /// PostgreSQL is down on a standby cluster's leader: start it as a standby of the
    /// upstream, bounded by `primary_start_timeout`, else give up the lease.
    pub(super) fn standby_start(&mut self, view: &ClusterView, rec: &Versioned<LeaderRecord>) {
        if self.leader_start_given_up(view, rec) {
            return;
        }
        self.busy();
        if self.backing_off(PgOpKind::StartReplica) {
            return self.set(Reason::StartingReplica, "retrying after a failed start");
        }
        self.mem.upstream_applied = self.s.standby_cluster.clone();
        self.pg_op(PgOpKind::StartReplica, |id| Action::StartReplica { id, upstream: Some(UPSTREAM.to_string()) });
        self.set(Reason::StartingReplica, format!("leading the standby cluster, {}", self.upstream_detail()));
    }

    /// The published history extended by the upstream's timeline switches this node's
    /// history file has and the history does not record yet (None: nothing to add). In a
    /// standby cluster new timelines arrive from outside, unannounced: a member that
    /// cascades from the leader (or a candidate, if the leader died) can hold one before
    /// the leader has recorded it. Judged against the history alone it would look forked
    /// and be rewound or re-cloned for nothing, or, every candidate alike, leave the
    /// cluster without anyone eligible. Only switches continuing the published line from
    /// its tip are added: what the leader records for the same WAL (timeline history files
    /// come from the upstream). A member whose WAL really forks still judges `Diverged`.
    pub(super) fn with_upstream_switches(
        history: &History,
        base: Timeline,
        switches: &[TimelineSwitch],
        current: Timeline,
    ) -> Option<History> {
        let mut tip = history.forks.last().map_or(base, |f| f.timeline);
        let mut extended: Option<History> = None;
        for (i, switch) in switches.iter().enumerate() {
            let child = switches.get(i + 1).map_or(current, |s| s.timeline);
            let known = history.forks.iter().any(|f| f.timeline == child);
            if switch.timeline != tip || child <= tip || known {
                continue;
            }
            let fork = Fork {
                parent: switch.timeline,
                lsn: switch.lsn,
                timeline: child,
                term: crate::types::Term(0),
                node: String::new(),
                cause: ForkCause::Upstream,
                wall_time_ms: 0,
            };
            Arc::make_mut(&mut extended.get_or_insert_with(|| history.clone()).forks).push(fork);
            tip = child;
        }
        extended
    }

    /// The upstream's own failovers show up here as timeline switches in the leader's
    /// history file. Record each one above the cluster's base timeline that the published
    /// history lacks, so the members' lineage test (S4) sees the line they are on.
    fn mirror_upstream_timelines(&mut self, view: &ClusterView, rec: &Versioned<LeaderRecord>) {
        let pg = &self.obs.pg;
        let base = Self::base_timeline(view);
        // An unusable history is written again from the switches alone.
        let empty = History::default();
        let history = if self.history_fault.is_some() { &empty } else { Self::history(view) };
        let mut next = history.clone();
        // One event for the lot: a history put back from an old backup can lack dozens of
        // the upstream's timelines, and an event each would flood the store (R7).
        let mut recorded: Option<(Timeline, Timeline, String)> = None;
        for (i, switch) in pg.history.iter().enumerate() {
            let child = pg.history.get(i + 1).map_or(pg.timeline, |s| s.timeline);
            if child <= base || switch.timeline < base || next.forks.iter().any(|f| f.timeline == child) {
                continue;
            }
            Arc::make_mut(&mut next.forks).push(Fork {
                parent: switch.timeline,
                lsn: switch.lsn,
                timeline: child,
                term: rec.value.term,
                node: self.cfg.name.clone(),
                cause: ForkCause::Upstream,
                wall_time_ms: self.obs.wall_time_ms,
            });
            let at = || format!("{}@{}", switch.lsn, switch.timeline);
            let (first, from) = recorded.take().map_or_else(|| (child, at()), |(f, _, from)| (f, from));
            recorded = Some((first, child, from));
        }
        if let Some((first, last, at)) = recorded {
            let detail = match first == last {
                true => format!("timeline {first} from {at}"),
                false => format!("timelines {first} to {last}, the first from {at}"),
            };
            self.note(Reason::UpstreamTimelineRecorded, detail);
        }
        if next != *history || self.history_fault.is_some() {
            self.leader_put_tail(rec, Value::History(next), view.history_expect());
        }
    }
}
