//! Actions the shell executes, in order.
//!
//! # Executor contract
//!
//! * Execute the actions of one [`crate::Decision`] in order. Stop at the first action
//!   that fails, and at any action whose `lease_deadline`/`deadline` has passed on the
//!   node's clock when it is about to run; report every action that carried an id as an
//!   [`crate::Outcome`] in the next observation (`Skipped` for those not run).
//! * Long PostgreSQL operations ([`Action::is_long`]) count as succeeded for the batch
//!   once started; their final outcome is reported when they finish. The shell must abort
//!   one that runs past its time limit (see [`crate::Timeouts`]) and report `TimedOut`.
//! * [`Action::Dcs`] operations complete within the batch (bounded by the backend timeout),
//!   and never later than the decision's [`crate::NodeStatus::writable_until`]: a store
//!   call that hangs must not delay the fence of the next step past the deadline (abandon
//!   it and report `Unavailable`; its outcome is then unknown, like any timeout).
//! * Actions from [`crate::Decision::background_from`] on are informational writes: the
//!   shell may send them all at once without waiting, and their failures skip nothing.

use crate::dcs::{DcsOp, FailsafeMember};
use crate::observation::SyncStandbys;
use crate::types::{Millis, NodeName, OpId, Term, Timeline};
use serde::{Deserialize, Serialize};

/// How to stop PostgreSQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopMode {
    /// `pg_ctl stop -m fast`: disconnect clients, write a shutdown checkpoint.
    Fast,
    /// Fencing: `pg_ctl stop -m immediate`, then kill every process of the instance.
    Immediate,
}

/// One thing for the shell to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A DCS operation.
    Dcs {
        /// Id for the outcome.
        id: OpId,
        /// The operation.
        op: DcsOp,
    },
    /// Run initdb in the empty data directory (under the leader lease). On failure the
    /// shell removes what initdb left.
    Initdb {
        /// Id for the outcome.
        id: OpId,
    },
    /// Replace the local data with a copy of `from` (pg_basebackup or the clone hook).
    /// The node starts afterwards only as a standby. Reports `ConsistentAt`.
    Clone {
        /// Id for the outcome.
        id: OpId,
        /// Source member.
        from: NodeName,
    },
    /// pg_rewind against `from` (which must be a running primary). Reports `ConsistentAt`.
    Rewind {
        /// Id for the outcome.
        id: OpId,
        /// Source member.
        from: NodeName,
    },
    /// Start PostgreSQL as a writable primary (no standby.signal), with
    /// `synchronous_standby_names` set as given before it accepts connections.
    StartPrimary {
        /// Id for the outcome.
        id: OpId,
        /// Do not start after this time (local clock).
        lease_deadline: Millis,
        /// Setting to apply first.
        sync_standbys: SyncStandbys,
    },
    /// Start PostgreSQL as a standby (standby.signal) receiving from `upstream` (None:
    /// receiver off).
    StartReplica {
        /// Id for the outcome.
        id: OpId,
        /// Member to receive from.
        upstream: Option<NodeName>,
    },
    /// Stop PostgreSQL.
    Stop {
        /// Id for the outcome.
        id: OpId,
        /// How.
        mode: StopMode,
    },
    /// Promote the standby, creating `timeline` (the shell makes PostgreSQL pick it, e.g.
    /// by placing history files for the timelines below it), with
    /// `synchronous_standby_names` set as given first.
    Promote {
        /// Id for the outcome.
        id: OpId,
        /// Do not promote after this time (local clock).
        lease_deadline: Millis,
        /// Timeline the promotion must create.
        timeline: Timeline,
        /// Setting to apply first.
        sync_standbys: SyncStandbys,
    },
    /// Point the WAL receiver at `upstream` (None: stop receiving) and reload.
    Follow {
        /// Member to receive from.
        upstream: Option<NodeName>,
    },
    /// Set `synchronous_standby_names` and reload.
    SetSyncStandbys(SyncStandbys),
    /// Create a physical replication slot.
    CreateSlot {
        /// Slot name.
        name: String,
    },
    /// Drop a physical replication slot.
    DropSlot {
        /// Slot name.
        name: String,
    },
    /// CHECKPOINT.
    Checkpoint {
        /// Id for the outcome.
        id: OpId,
    },
    /// Hand the fencing guard a new deadline: PostgreSQL may stay writable until then and
    /// must be killed when it passes. Also the "keep running as primary" precondition.
    ArmGuard {
        /// Id for the outcome.
        id: OpId,
        /// Absolute deadline on the node's clock.
        deadline: Millis,
        /// Term it belongs to.
        term: Term,
    },
    /// Ask every listed member to acknowledge this primary (S1'); report `FailsafeAcked`
    /// with the round's send time only if all of them acknowledged.
    FailsafePing {
        /// Id for the outcome.
        id: OpId,
        /// This leader's term.
        term: Term,
        /// The ttl this leader counts a confirmation with (sent in the request).
        ttl: Millis,
        /// Members to ask.
        members: Vec<FailsafeMember>,
    },
}

impl Action {
    /// Whether the action is a long PostgreSQL operation whose outcome arrives later.
    pub fn is_long(&self) -> bool {
        matches!(
            self,
            Action::Initdb { .. }
                | Action::Clone { .. }
                | Action::Rewind { .. }
                | Action::StartPrimary { .. }
                | Action::StartReplica { .. }
                | Action::Stop { .. }
                | Action::Promote { .. }
                | Action::Checkpoint { .. }
        )
    }

    /// The id the outcome will carry, if any.
    pub fn id(&self) -> Option<OpId> {
        match self {
            Action::Dcs { id, .. }
            | Action::Initdb { id }
            | Action::Clone { id, .. }
            | Action::Rewind { id, .. }
            | Action::StartPrimary { id, .. }
            | Action::StartReplica { id, .. }
            | Action::Stop { id, .. }
            | Action::Promote { id, .. }
            | Action::Checkpoint { id }
            | Action::ArmGuard { id, .. }
            | Action::FailsafePing { id, .. } => Some(*id),
            Action::Follow { .. }
            | Action::SetSyncStandbys(_)
            | Action::CreateSlot { .. }
            | Action::DropSlot { .. } => None,
        }
    }

    /// The deadline this action relies on, if it makes or keeps PostgreSQL writable.
    pub fn writable_deadline(&self) -> Option<Millis> {
        match self {
            Action::StartPrimary { lease_deadline, .. } | Action::Promote { lease_deadline, .. } => {
                Some(*lease_deadline)
            }
            Action::ArmGuard { deadline, .. } => Some(*deadline),
            _ => None,
        }
    }
}
