//! The little the core remembers between ticks. The core returns the next [`Memory`] in
//! every [`crate::Decision`]; the shell stores it and passes it back. Nothing else is kept.
//!
//! A daemon may persist it across restarts within one boot (its times are on
//! CLOCK_BOOTTIME); after a reboot it must start from [`Memory::default`].

use crate::config::ClusterSettings;
use crate::dcs::{FailsafeMember, SyncRecord};
use crate::history::ForkCause;
use crate::reason::Reason;
use crate::types::{Lsn, Millis, NodeName, OpId, Term, Version};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The lease this node holds, as of its last successful acquire or renewal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldLease {
    /// Term of the reign.
    pub term: Term,
    /// Leader record version after the last successful operation.
    pub version: Version,
    /// Send time of that operation's request.
    pub sent_at: Millis,
    /// ttl the store granted with it.
    pub ttl: Millis,
    /// `sent_at + ttl - margin`: PostgreSQL may be writable until then.
    pub deadline: Millis,
}

/// Which lease operation is awaiting its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseOpKind {
    /// Acquire or claim.
    Acquire,
    /// Renewal.
    Renew,
    /// Release.
    Release,
    /// Transfer to a switchover candidate.
    Transfer,
}

/// A failsafe round awaiting its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailsafeRound {
    /// Action id.
    pub id: OpId,
    /// The ttl the round asked the members to hold off for; a confirmation counts for
    /// this long from the send time (less the margin), whatever the ttl is when it returns.
    pub ttl: Millis,
}

/// A lease operation awaiting its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseOp {
    /// Action id.
    pub id: OpId,
    /// Kind.
    pub kind: LeaseOpKind,
    /// Term the operation is for.
    pub term: Term,
}

/// Long PostgreSQL operations the core waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PgOpKind {
    /// initdb.
    Initdb,
    /// Clone from a member.
    Clone,
    /// pg_rewind.
    Rewind,
    /// Start as primary.
    StartPrimary,
    /// Start as standby.
    StartReplica,
    /// Stop fast.
    StopFast,
    /// Stop immediate (fence).
    StopImmediate,
    /// Promote.
    Promote,
    /// CHECKPOINT.
    Checkpoint,
}

/// A long operation in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// Action id.
    pub id: OpId,
    /// What it is.
    pub kind: PgOpKind,
    /// When it was issued.
    pub since: Millis,
    /// When the core stops waiting for it.
    pub give_up_at: Millis,
}

/// The last long operation that failed (for back-off and for choosing the next remedy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastFailure {
    /// What failed.
    pub kind: PgOpKind,
    /// When the failure was learnt.
    pub at: Millis,
}

/// Progress of a planned switchover on the leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchoverProgress {
    /// The node taking over.
    pub candidate: NodeName,
    /// Version of the `switchover` key being served.
    pub request: Version,
    /// Current phase.
    pub phase: SwitchoverPhase,
    /// When the phase began.
    pub since: Millis,
}

/// Phases of a switchover on the leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwitchoverPhase {
    /// CHECKPOINT while still writable (so the shutdown checkpoint is short).
    Checkpoint,
    /// Stopping PostgreSQL fast.
    Stopping,
    /// PostgreSQL is down; waiting for the candidate to receive the end of the WAL.
    AwaitCandidate,
}

/// A standby being added to the sync set (S2): `synchronous_standby_names` already names
/// it; it is published once its flush LSN reaches `target`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncAdd {
    /// The standby.
    pub name: NodeName,
    /// Primary flush LSN read after the setting took effect.
    pub target: Option<Lsn>,
}

/// A failsafe acknowledgement this node gave (S1').
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailsafeAck {
    /// Leader acknowledged.
    pub leader: NodeName,
    /// Its term.
    pub term: Term,
    /// When (local clock).
    pub at: Millis,
    /// The ttl the leader counts its confirmation with: no campaign until `at` plus the
    /// longer of this and the node's own ttl.
    pub ttl: Millis,
}

/// A record version and since when it has been seen unchanged (local clock).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// Key name (member name; empty for the leader record).
    pub name: NodeName,
    /// The version.
    pub version: Version,
    /// Receipt time of the first read that returned it.
    pub since: Millis,
}

/// The core's memory between ticks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// Next action id.
    pub next_op: u64,
    /// The lease this node holds.
    pub lease: Option<HeldLease>,
    /// Lease operation awaiting its outcome.
    pub lease_op: Option<LeaseOp>,
    /// How this node came to hold its current term (decides the fork cause).
    pub acquired_via: Option<ForkCause>,
    /// Gave up the lease in this term; do not renew it again.
    pub stepping_down: Option<Term>,
    /// Writable until then thanks to a complete failsafe round.
    pub failsafe_until: Option<Millis>,
    /// Failsafe round awaiting its outcome.
    pub failsafe_op: Option<FailsafeRound>,
    /// When the last failsafe round was sent (rounds are paced at one per loop).
    pub failsafe_pinged_at: Option<Millis>,
    /// Members that must acknowledge a failsafe ping (from the last `failsafe` key seen).
    pub failsafe_set: Arc<Vec<FailsafeMember>>,
    /// Last failsafe acknowledgement given.
    pub failsafe_ack: Option<FailsafeAck>,
    /// Deadline last handed to the guard.
    pub armed_until: Option<Millis>,
    /// Leader record version seen unchanged since when (observer-clock leases).
    pub leader_seen: Option<Seen>,
    /// Member records seen unchanged (observer-clock stores, leader only).
    pub members_seen: Vec<Seen>,
    /// Long PostgreSQL operation in flight.
    pub pending: Option<Pending>,
    /// The standby cluster's upstream the WAL receiver was last pointed at (a change of
    /// `standby_cluster` repoints it).
    #[serde(default)]
    pub upstream_applied: Option<crate::config::StandbyCluster>,
    /// Last failed long operation.
    pub last_failure: Option<LastFailure>,
    /// The last failure of each kind of long operation (for back-off: a failure of one
    /// kind in between does not let another kind retry at once).
    #[serde(default)]
    pub failures: Vec<LastFailure>,
    /// Rewind was tried and failed for this divergence: re-clone next.
    pub rewind_failed: bool,
    /// After a rewind or clone: not eligible until replay passes this LSN.
    pub catchup_to: Option<Lsn>,
    /// PostgreSQL running but unresponsive since.
    pub unresponsive_since: Option<Millis>,
    /// As leader: PostgreSQL down since (bounded by `primary_start_timeout`).
    pub primary_down_since: Option<Millis>,
    /// Candidate since (leader missing, this node eligible).
    pub election_since: Option<Millis>,
    /// Switchover in progress (leader).
    pub switchover: Option<SwitchoverProgress>,
    /// Standby being added to the sync set (leader).
    pub sync_add: Option<SyncAdd>,
    /// The sync record this reign last wrote and saw confirmed: authoritative over reads,
    /// which may lag it (only the leader writes the record).
    pub sync_known: Option<SyncRecord>,
    /// A sync-record write awaiting its outcome.
    pub sync_write: Option<(OpId, SyncRecord)>,
    /// Standbys that writes with an unknown outcome may have published.
    pub sync_unsure: Vec<NodeName>,
    /// Manual failover request version and since when it has been seen.
    pub request_seen: Option<Seen>,
    /// A `config` key version found invalid (reported once).
    pub config_rejected: Option<Version>,
    /// Applied `config` key version and its settings.
    pub applied: Option<(Version, ClusterSettings)>,
    /// Highest term seen anywhere.
    pub max_term: Term,
    /// Since when reads have returned a lower term than one seen before (stale reads), and
    /// a fingerprint of the first such read (`version`): a store that keeps changing with
    /// the lower term for a ttl is believed.
    #[serde(default)]
    pub stale_since: Option<Seen>,
    /// The last renewal of the lease held failed without a conflict (the store did not
    /// answer or refused): the leader's housekeeping writes wait for one that succeeds.
    #[serde(default)]
    pub renew_failing: bool,
    /// What a claim in flight is conditioned on (the leader record's version, the term and
    /// the sync record's version, folded).
    #[serde(default)]
    pub claiming: Option<Version>,
    /// A claim conditioned on this was refused: the store has changed since that read, so
    /// claiming on a read that still shows it would be refused again (a stale read): wait
    /// for one that shows the change.
    #[serde(default)]
    pub claim_refused: Option<Version>,
    /// The term of an acquire whose outcome is unknown (it may have applied): a later
    /// attempt at that term that is refused does not tell that this one did not apply.
    /// Kept across elections (a node may try the same term again): only its term counts.
    #[serde(default)]
    pub acquire_unsure: Option<Term>,
    /// What the sync-record write in flight is conditioned on: a fingerprint of the sync
    /// record's version it expects and of the leader record's version it is guarded by.
    #[serde(default)]
    pub sync_expect: Option<Version>,
    /// A sync-record write conditioned on this (same fingerprint) was refused: a read that
    /// still shows both versions is stale, so the write is not repeated (nor the loop kept
    /// busy) until a read shows a change (otherwise a store that keeps returning an old
    /// read turns the leader's loop into a stream of refused writes).
    #[serde(default)]
    pub sync_refused: Option<Version>,
    /// Longest ttl seen in a leader record or the applied settings since this memory began:
    /// how long an undecodable leader record must age before it is replaced.
    #[serde(default)]
    pub ttl_seen: Millis,
    /// Last time a keepalive was sent (non-leaders).
    pub keepalive_at: Option<Millis>,
    /// Last time the leader's status record was written, and the LSN written.
    pub status_at: Option<(Millis, Lsn)>,
    /// Reason of the previous decision (events are recorded on changes).
    pub last_reason: Option<Reason>,
    /// First step of this memory (the daemon's start, when memory is not persisted).
    pub started_at: Option<Millis>,
    /// Leader: members (and slots) gone from the DCS, and since when; they keep their
    /// place in the failsafe set and their slot for a grace period of ten ttls.
    pub departed: Vec<(NodeName, Millis)>,
    /// An operator's restart is under way: PostgreSQL is being stopped (or is down) and
    /// starts again in the same role, in maintenance mode too. The shell holds its request
    /// until it sees this set.
    #[serde(default)]
    pub restarting: bool,
    /// The restart's stop was seen done (PostgreSQL down) since it began; a reading of
    /// "running" before that is the stop not seen yet, not a start.
    #[serde(default)]
    pub restart_saw_down: bool,
    /// When the restart began; one that has not seen PostgreSQL run again within the stop
    /// and start limits is given up.
    #[serde(default)]
    pub restart_since: Option<Millis>,
    /// This node's joining was recorded as an event and its record has not been seen yet
    /// (so a read that lags the write does not record it twice).
    #[serde(default)]
    pub join_noted: bool,
    /// A start as primary or a promotion waited a step for a fresh grant because a
    /// renewal went out in the same batch. The next step sends it first, on the grant it
    /// holds, and the renewal after it: a loop slower than `loop_wait` (a store round trip
    /// for the read and one for the renewal) finds a renewal due at every step and would
    /// otherwise wait for ever.
    #[serde(default)]
    pub writable_waits_for_grant: bool,
}

impl Memory {
    /// Allocates an action id.
    pub fn op(&mut self) -> OpId {
        self.next_op += 1;
        OpId(self.next_op)
    }
}
