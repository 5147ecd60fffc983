//! What a node says about itself: to operators ([`NodeStatus`], shown by `hashell list`
//! and the REST API) and to peers ([`PeerStatus`], answered on the peer API).

use crate::dcs::MemberRole;
use crate::memory::PgOpKind;
use crate::reason::Reason;
use crate::types::{Lsn, Millis, NodeName, Term, Version, WalPosition};
use serde::{Deserialize, Serialize};

/// A node's standing in an election, reported to peers (S3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionReport {
    /// End of the node's WAL.
    pub position: WalPosition,
    /// The WAL receiver is stopped, so `position` can no longer move.
    pub settled: bool,
    /// `failover_priority`.
    pub priority: u32,
    /// Whether the node could take the lease (tags, lineage, sync set, lag, failsafe hold).
    pub eligible: bool,
}

/// What a node answers a peer's ping with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Its role.
    pub role: MemberRole,
    /// Highest term it knows.
    pub term: Term,
    /// PostgreSQL runs.
    pub running: bool,
    /// End of its WAL (received LSN on a standby).
    pub position: WalPosition,
    /// A standby's replayed LSN (informational: for operators, never for decisions).
    #[serde(default)]
    pub replayed: Lsn,
    /// It could lead now (tags, lineage, catch-up), election or not.
    pub can_lead: bool,
    /// Its election report while the leader is missing.
    pub election: Option<ElectionReport>,
}

/// The node's status after a step.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Role.
    pub role: MemberRole,
    /// Highest term seen.
    pub term: Term,
    /// Current leader, if known.
    pub leader: Option<NodeName>,
    /// End of the local WAL.
    pub position: WalPosition,
    /// A standby's replayed LSN.
    pub replayed: Lsn,
    /// Until when this node may keep PostgreSQL writable (local clock), if it may.
    pub writable_until: Option<Millis>,
    /// Why it did what it did.
    pub reason: Reason,
    /// Detail for people (empty in steady state).
    pub detail: String,
    /// Election report while the leader is missing.
    pub election: Option<ElectionReport>,
    /// Whether it could lead now.
    pub can_lead: bool,
    /// Maintenance mode in effect.
    pub paused: bool,
    /// Version of the `config` key applied.
    pub applied_config: Option<Version>,
    /// A long PostgreSQL operation in flight.
    pub pending: Option<PgOpKind>,
    /// Would acknowledge a failsafe ping now.
    pub accepts_failsafe: bool,
}

impl NodeStatus {
    /// The part peers need.
    pub fn peer_view(&self, running: bool) -> PeerStatus {
        PeerStatus {
            role: self.role,
            term: self.term,
            running,
            position: self.position,
            replayed: self.replayed,
            can_lead: self.can_lead,
            election: self.election,
        }
    }
}
