//! Cluster bootstrap: the nodes race for the leader lease; the winner runs initdb (or
//! adopts its existing data), writes the `initialize` key, then starts as primary. The
//! others wait for the key and clone. Bootstrap happens under the lease, so a crashed
//! initializer's claim expires with it (L1).

use super::Cx;
use crate::action::Action;
use crate::config::UPSTREAM;
use crate::dcs::{ClusterView, Expect, InitializeRecord, LeaderRecord, Value, Write};
use crate::memory::PgOpKind;
use crate::reason::Reason;
use crate::types::Versioned;

impl Cx<'_> {
    /// No leader and no `initialize` key.
    pub(super) fn bootstrap(&mut self, view: &ClusterView, expect: Expect) {
        self.leave_leadership();
        self.keepalive();
        if !self.cfg.tags.can_lead() {
            return self.set(Reason::WaitingForBootstrap, "tagged nofailover: another node must initialize");
        }
        if self.s.paused {
            return self.set(Reason::Paused, "no cluster yet and paused");
        }
        if self.obs.pg.data == crate::observation::DataDir::Unreadable {
            return self.set(Reason::DataDirUnreadable, "this node cannot found the cluster on it");
        }
        if self.obs.pg.system_id().is_some() && self.obs.pg.in_recovery != Some(false) && !self.standby_cluster() {
            // Existing data founds a cluster only if it was a primary's: a standby's may be
            // behind another member's, whose commits a new cluster on it would lose (and
            // on the same timeline, with no fork recorded, nothing would show it). A
            // standby cluster writes nothing: its data is the upstream's, whoever holds it.
            return self.set(
                Reason::WaitingForBootstrap,
                "this node's data is a standby's (or its state is unknown): start the member whose data was the \
                 primary first; see docs/runbook.md (an empty store)",
            );
        }
        if self.mem.pending.is_some() || self.mem.lease_op.is_some() {
            self.busy();
            return self.set(Reason::BootstrapAcquiring, "waiting for an operation");
        }
        let record = LeaderRecord { holder: self.cfg.name.clone(), term: view.term.next(), ttl: self.s.ttl };
        self.acquire(view, record, expect, false);
        self.set(Reason::BootstrapAcquiring, String::new());
    }

    /// This node holds the lease and the cluster is not initialized yet.
    pub(super) fn bootstrap_leader(&mut self, view: &ClusterView, rec: &Versioned<LeaderRecord>) {
        self.busy();
        if let Some(p) = self.mem.pending {
            return self.set(Reason::BootstrapInitdb, format!("waiting for {:?}", p.kind));
        }
        let pg = &self.obs.pg;
        let standby = self.standby_cluster();
        let Some(system_id) = pg.system_id() else {
            if let Some(f) = self.mem.last_failure.filter(|f| matches!(f.kind, PgOpKind::Initdb | PgOpKind::Clone)) {
                // Let another node try; the shell removed what the operation left.
                self.mem.last_failure = None;
                let what = if f.kind == PgOpKind::Initdb { "initdb" } else { "the clone of the upstream" };
                return self.step_down(rec, Reason::OperationFailed, format!("{what} failed"));
            }
            if standby {
                // A standby cluster starts as a copy of its upstream.
                self.pg_op(PgOpKind::Clone, |id| Action::Clone { id, from: UPSTREAM.to_string() });
                return self.set(Reason::StandbyBootstrapCloning, self.upstream_detail());
            }
            self.pg_op(PgOpKind::Initdb, |id| Action::Initdb { id });
            return self.set(Reason::BootstrapInitdb, String::new());
        };
        // Register the cluster's identity before PostgreSQL can accept a single write, so
        // no data written here can ever belong to an unregistered cluster.
        let mut writes = vec![Write::put(
            Value::Initialize(InitializeRecord { system_id, base_timeline: pg.timeline, standby }),
            Expect::Absent,
        )];
        if view.config.is_none() {
            writes.push(Write::put(Value::Config(self.s.clone()), Expect::Absent));
        }
        self.leader_write(rec, writes, true);
        self.set(Reason::BootstrapRegistering, format!("system identifier {system_id}"));
        if standby {
            if !pg.running {
                self.mem.upstream_applied = self.s.standby_cluster.clone();
                let upstream = Some(UPSTREAM.to_string());
                self.pg_op(PgOpKind::StartReplica, |id| Action::StartReplica { id, upstream });
            }
            // A writable PostgreSQL is fenced (S1: no writable deadline in a standby cluster).
            return;
        }
        if !pg.running {
            let Some(deadline) = self.deadline_for_writable_action() else {
                return;
            };
            let sync_standbys = crate::observation::SyncStandbys::for_names(Vec::new(), self.strict());
            self.arm_guard();
            self.pg_op(PgOpKind::StartPrimary, |id| Action::StartPrimary {
                id,
                lease_deadline: deadline,
                sync_standbys,
            });
        } else if pg.maybe_writable() {
            self.arm_guard();
        }
    }
}
