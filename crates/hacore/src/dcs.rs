//! The distributed configuration store (DCS): the records under `<namespace>/<cluster>/`,
//! the snapshot the core reads ([`ClusterView`]), the operations it asks for ([`DcsOp`]),
//! their errors ([`DcsError`]), and the [`Dcs`] trait every backend implements.
//!
//! # Contract for backends
//!
//! * [`Dcs::read`] returns one view of the whole cluster prefix. On etcd it is one
//!   consistent range read; on DynamoDB a strongly consistent Query, which is not a
//!   cross-item snapshot (the core tolerates that). A value that cannot be decoded is
//!   reported in [`ClusterView::corrupt`] with its key and version, never silently dropped
//!   and never a panic; the rest of the view stays usable.
//! * Every conditional operation fails with [`DcsError::Conflict`] when its condition does
//!   not hold and with nothing applied. [`DcsError::Indeterminate`] means the request was
//!   sent and its outcome is unknown (it may have been applied).
//! * A [`LeaseGrant`] states the *send time* (on the node's own monotonic clock) of a
//!   request that refreshed the lease protecting the leader record, and the ttl the store
//!   granted with it. The store must not delete the record, nor may another node take it
//!   over, before `sent_at + ttl` has passed on any correct clock (within the drift bound).
//!   On etcd, an acquire must refresh the node's lease (keepalive) before the transaction
//!   and report the keepalive's send time, because a put does not refresh a lease.
//! * Every write inside [`DcsOp::LeaderWrite`], [`DcsOp::TransferLeader`] and
//!   [`DcsOp::ReleaseLeader`] is conditioned, in the same transaction, on the leader record
//!   still being the writer's (S5).

use crate::config::ClusterSettings;
use crate::history::History;
use crate::reason::Reason;
use crate::types::{Lsn, Millis, NodeName, Tags, Term, Timeline, Version, Versioned};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::Arc;

/// How the store decides that a leader record is no longer held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseModel {
    /// The store deletes the record when its lease expires (etcd). A present record is held.
    #[default]
    StoreExpiry,
    /// The store keeps records forever (DynamoDB). The holder writes a fresh version on each
    /// renewal; an observer treats the record as free once it has seen the same version for
    /// a full ttl on its own clock, counted from the receipt of the first read that returned it.
    ObserverClock,
}

/// The `leader` key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRecord {
    /// Node holding the lease.
    pub holder: NodeName,
    /// Fencing token of this reign.
    pub term: Term,
    /// The ttl requested with the lease.
    pub ttl: Millis,
}

/// What a member is doing, as published.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    /// Writable primary holding the lease.
    Primary,
    /// Leader of a standby cluster: holds the lease, replicates from the cluster's
    /// upstream, accepts no writes (schema 3; older readers are told `replica`).
    StandbyLeader,
    /// Streaming or recovering replica.
    Replica,
    /// Taking part in an election.
    Candidate,
    /// PostgreSQL is not running.
    Stopped,
    /// PostgreSQL is being stopped immediately because this node may not write.
    Fencing,
    /// No data directory yet.
    #[default]
    Uninitialized,
}

impl MemberRole {
    /// This role as written for readers of schema `schema` (see [`crate::SCHEMA`]).
    pub fn at_schema(self, schema: u32) -> MemberRole {
        match self {
            MemberRole::StandbyLeader if schema < 3 => MemberRole::Replica,
            role => role,
        }
    }

    /// Whether the member holds the leader lease and runs as its cluster's leader (a
    /// primary, or a standby cluster's leader).
    pub fn leads(self) -> bool {
        matches!(self, MemberRole::Primary | MemberRole::StandbyLeader)
    }
}

/// The `members/<name>` key: a member's published status. Rewritten only when it changes
/// materially (see [`MemberRecord::same_material`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemberRecord {
    /// Member name.
    pub name: NodeName,
    /// REST API URL.
    pub api_url: String,
    /// libpq connection string for replication and cloning.
    pub pg_url: String,
    /// Role.
    pub role: MemberRole,
    /// Whether PostgreSQL runs.
    pub running: bool,
    /// Current timeline.
    pub timeline: Timeline,
    /// Flushed (primary) or received (replica) LSN at the time of publishing.
    pub lsn: Lsn,
    /// Tags.
    pub tags: Tags,
    /// Version of the `config` key this member applies.
    pub applied_config: Option<Version>,
    /// PostgreSQL has settings changed that need a restart.
    pub pending_restart: bool,
    /// The member's own reason for what it is doing.
    pub reason: Option<Reason>,
    /// The term this member leads in, while it is the primary.
    pub leader_term: Option<Term>,
    /// The DCS layout version ([`crate::SCHEMA`]) this member's daemon reads; absent (0)
    /// from daemons that predate versioning, which read version 1.
    pub schema: u32,
}

impl MemberRecord {
    /// Whether two records differ only in what changes every loop (LSNs), so that
    /// republishing would be noise.
    pub fn same_material(&self, other: &MemberRecord) -> bool {
        self.name == other.name
            && self.api_url == other.api_url
            && self.pg_url == other.pg_url
            && self.role == other.role
            && self.running == other.running
            && self.timeline == other.timeline
            && self.tags == other.tags
            && self.applied_config == other.applied_config
            && self.pending_restart == other.pending_restart
            && self.reason == other.reason
            && self.leader_term == other.leader_term
            && self.schema == other.schema
    }

    /// The layout version this member reads (at least 1).
    pub fn reads_schema(&self) -> u32 {
        self.schema.max(1)
    }
}

/// The `status` key: the leader's last WAL position, written every loop.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRecord {
    /// Leader that wrote it.
    pub leader: NodeName,
    /// Its term.
    pub term: Term,
    /// Its timeline.
    pub timeline: Timeline,
    /// Its flush LSN.
    pub lsn: Lsn,
}

/// The `sync` key: who may take over in synchronous mode (S2).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRecord {
    /// Leader that published the set.
    pub leader: NodeName,
    /// Term of that leader.
    pub term: Term,
    /// Standbys that acknowledge every commit (`FIRST n` of exactly these n names).
    /// Shared, as [`History::forks`](crate::history::History::forks) is: every read and
    /// every copy of a view carries it.
    pub members: Arc<Vec<NodeName>>,
}

/// The `initialize` key: the cluster's identity, written by the bootstrapping leader.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitializeRecord {
    /// PostgreSQL system identifier of the cluster.
    pub system_id: u64,
    /// Timeline the cluster's history starts from.
    pub base_timeline: Timeline,
    /// Founded as a standby cluster (schema 3; written only when true): until its first
    /// promotion (a `cluster_promotion` fork) every member's WAL is its upstream's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub standby: bool,
}

/// One entry of the `failsafe` key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailsafeMember {
    /// Member name.
    pub name: NodeName,
    /// Its REST API URL.
    pub api_url: String,
}

/// The `failsafe` key: who must acknowledge a primary during a DCS outage (S1').
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailsafeRecord {
    /// Members of the failsafe set, the leader included. Shared, as the sync set is.
    pub members: Arc<Vec<FailsafeMember>>,
}

/// Planned switchover or manual failover.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwitchoverKind {
    /// Planned: the running leader hands over.
    #[default]
    Switchover,
    /// The leader is gone: the named node should take over.
    Failover,
}

/// The `switchover` key, written by the CLI or REST API and cleared by the leader.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SwitchoverRequest {
    /// Planned switchover or manual failover.
    pub kind: SwitchoverKind,
    /// Leader expected to hand over (None: whoever leads).
    pub from: Option<NodeName>,
    /// Candidate (None: the best one).
    pub to: Option<NodeName>,
    /// Scheduled wall-clock time (ms since epoch); the shell says when it is due.
    pub at_wall_ms: Option<u64>,
}

/// An entry of the `events` key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Wall-clock ms since the epoch (data only).
    pub wall_time_ms: u64,
    /// Node that recorded it.
    pub node: NodeName,
    /// Term the node knew.
    pub term: Term,
    /// What happened.
    pub reason: Reason,
    /// Human detail.
    pub detail: String,
}

/// A key under the cluster prefix.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Key {
    /// `leader`
    Leader,
    /// `term`: the highest term ever granted (never deleted).
    Term,
    /// `status`
    Status,
    /// `members/<name>`
    Member(NodeName),
    /// `config`
    Config,
    /// `switchover`
    Switchover,
    /// `sync`
    Sync,
    /// `history`
    History,
    /// `initialize`
    Initialize,
    /// `failsafe`
    Failsafe,
    /// `events`
    Events,
}

impl Key {
    /// The key's path below the cluster prefix.
    pub fn path(&self) -> String {
        match self {
            Key::Leader => "leader".into(),
            Key::Term => "term".into(),
            Key::Status => "status".into(),
            Key::Member(n) => format!("members/{n}"),
            Key::Config => "config".into(),
            Key::Switchover => "switchover".into(),
            Key::Sync => "sync".into(),
            Key::History => "history".into(),
            Key::Initialize => "initialize".into(),
            Key::Failsafe => "failsafe".into(),
            Key::Events => "events".into(),
        }
    }

    /// Whether a change of this key should wake every node at once. The leader's status
    /// and events change often and matter only at the next loop; a watch that woke
    /// everyone on them would double the steps of an idle cluster. Member records are
    /// written only when they change materially (a member returns, changes role,
    /// timeline or tags), and the leader acts on that at once: a returning replica's WAL
    /// receiver is refused until the leader has created its slot.
    pub fn wakes(&self) -> bool {
        !matches!(self, Key::Status | Key::Events)
    }

    /// Parses a path below the cluster prefix.
    pub fn from_path(path: &str) -> Option<Key> {
        Some(match path {
            "leader" => Key::Leader,
            "term" => Key::Term,
            "status" => Key::Status,
            "config" => Key::Config,
            "switchover" => Key::Switchover,
            "sync" => Key::Sync,
            "history" => Key::History,
            "initialize" => Key::Initialize,
            "failsafe" => Key::Failsafe,
            "events" => Key::Events,
            p => {
                let name = p.strip_prefix("members/")?;
                if name.is_empty() || name.contains('/') {
                    return None;
                }
                Key::Member(name.to_string())
            }
        })
    }
}

/// A typed value for [`Write`]. The key of a value is fixed by its type (members by name).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    /// `status`
    Status(StatusRecord),
    /// `config`
    Config(ClusterSettings),
    /// `switchover`
    Switchover(SwitchoverRequest),
    /// `sync`
    Sync(SyncRecord),
    /// `history`
    History(History),
    /// `initialize`
    Initialize(InitializeRecord),
    /// `failsafe`
    Failsafe(FailsafeRecord),
}

impl Value {
    /// The key this value is stored under.
    pub fn key(&self) -> Key {
        match self {
            Value::Status(_) => Key::Status,
            Value::Config(_) => Key::Config,
            Value::Switchover(_) => Key::Switchover,
            Value::Sync(_) => Key::Sync,
            Value::History(_) => Key::History,
            Value::Initialize(_) => Key::Initialize,
            Value::Failsafe(_) => Key::Failsafe,
        }
    }
}

/// Condition on a key's current state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// No condition.
    Any,
    /// The key must not exist.
    Absent,
    /// The key must exist at exactly this version.
    Version(Version),
}

impl Expect {
    /// `Version(v)` for a present value, `Absent` otherwise.
    pub fn from_current<T>(current: Option<&Versioned<T>>) -> Expect {
        current.map_or(Expect::Absent, |v| Expect::Version(v.version))
    }
}

/// One conditional write: put `value` (or delete `key` when `value` is None).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Write {
    /// Key written (must equal `value.key()` when a value is given).
    pub key: Key,
    /// New value; None deletes.
    pub value: Option<Value>,
    /// Condition on the key.
    pub expect: Expect,
}

impl Write {
    /// Checks what every store must refuse whatever its state: writes to keys with their
    /// own operations (`leader`, `term`, `events`), and a value stored under another key.
    pub fn check_shape(writes: &[Write]) -> Result<(), DcsError> {
        for w in writes {
            if matches!(w.key, Key::Leader | Key::Term | Key::Events) {
                return Err(DcsError::Invalid(format!("{} cannot be written this way", w.key.path())));
            }
            if let Some(v) = &w.value {
                if v.key() != w.key {
                    return Err(DcsError::Invalid(format!("value for {} written to {}", v.key().path(), w.key.path())));
                }
            }
        }
        Ok(())
    }

    /// Put `value` under its key if the key is in state `expect`.
    pub fn put(value: Value, expect: Expect) -> Write {
        Write { key: value.key(), value: Some(value), expect }
    }
    /// Delete `key` if it is in state `expect`.
    pub fn delete(key: Key, expect: Expect) -> Write {
        Write { key, value: None, expect }
    }
}

/// Identifies the writer's reign for S5 conditions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderGuard {
    /// Expected holder.
    pub holder: NodeName,
    /// Expected term.
    pub term: Term,
    /// Version of the leader record the writer last saw or wrote. Backends whose version
    /// changes on every renewal (DynamoDB) may check holder and term instead.
    pub version: Version,
}

/// Acquire (or claim) the leader record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acquire {
    /// The record to write.
    pub record: LeaderRecord,
    /// `Absent` to create; `Version(v)` to take over an expired record (observer-clock
    /// stores) or to claim a record that already names this node (after a transfer or a
    /// restart of the daemon).
    pub expect: Expect,
    /// The highest term the store must still hold (`term` key); the store sets it to
    /// `record.term`. Makes terms unique and increasing even after the record expired.
    pub term_was: Term,
    /// S2: the `sync` key must still be in this state.
    pub sync: Option<Expect>,
    /// S4: the `history` key must still be in this state: an election's acquire, so that
    /// a member whose read predates the fork a new leader recorded (a stale read: a
    /// lagging store member, a cache) cannot take the next term on WAL that fork left
    /// behind. None: no condition (bootstrap, a claim of a record naming this node).
    #[serde(default)]
    pub history: Option<Expect>,
}

/// An operation on the store. The core emits these inside [`crate::Action::Dcs`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DcsOp {
    /// Take the leader record. Replies with a [`LeaseGrant`].
    AcquireLeader(Acquire),
    /// Refresh the lease behind the leader record (etcd: keepalive of the node lease;
    /// DynamoDB: rewrite the record with a fresh version, conditioned on `guard.version`).
    /// Replies with a [`LeaseGrant`].
    RenewLeader {
        /// Whose record.
        guard: LeaderGuard,
        /// ttl to request.
        ttl: Millis,
    },
    /// Give up the leader record (delete it if still the writer's).
    ReleaseLeader {
        /// Whose record.
        guard: LeaderGuard,
    },
    /// Hand the leader record to another node (planned switchover), with the next term.
    /// The transferred record must expire after its ttl unless the new holder claims it
    /// (etcd: put it on a fresh lease that nobody keeps alive), so a candidate that dies
    /// right after the transfer does not block the cluster.
    TransferLeader {
        /// Current holder's record.
        guard: LeaderGuard,
        /// The new record (new holder, term + 1).
        to: LeaderRecord,
        /// Delete the switchover request in the same transaction.
        clear_switchover: Option<Version>,
    },
    /// Writes that only the current leader may make, all conditioned on `guard` (S5).
    LeaderWrite {
        /// Whose record.
        guard: LeaderGuard,
        /// Writes applied atomically.
        writes: Vec<Write>,
    },
    /// Keep the node's own lease alive (etcd) or its member record fresh (DynamoDB).
    KeepAlive {
        /// ttl to request.
        ttl: Millis,
    },
    /// Write this node's member record (riding on the node's lease where the store has them).
    PublishMember(MemberRecord),
    /// An unguarded conditional write (operator requests: switchover, config edits).
    Put(Write),
    /// Append to the bounded `events` list.
    AppendEvent(Event),
}

/// What the store granted with a lease operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGrant {
    /// Send time of the request that refreshed the lease, on the node's monotonic clock.
    pub sent_at: Millis,
    /// The ttl the store granted (may be rounded up or raised to its minimum).
    pub ttl: Millis,
    /// Version of the leader record after the operation.
    pub version: Version,
}

/// A successful operation's reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DcsReply {
    /// Applied.
    Done,
    /// Applied; the lease is valid as stated.
    Lease(LeaseGrant),
}

/// Why a DCS operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DcsError {
    /// A condition did not hold (CAS lost); nothing was applied.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The store could not be reached or refused service; nothing was applied. Retryable.
    #[error("store unavailable: {0}; check the store's health and the network path to it")]
    Unavailable(String),
    /// The request was sent and its outcome is unknown: it may or may not have been applied.
    #[error("outcome unknown: {0}")]
    Indeterminate(String),
    /// A stored value could not be decoded.
    #[error("corrupt value at key {key}: {reason}; fix or delete the key")]
    Corrupt {
        /// Full key path.
        key: String,
        /// What was wrong.
        reason: String,
    },
    /// The request itself was invalid (too large, bad key); nothing was applied.
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl DcsError {
    /// Whether the operation may have been applied.
    pub fn maybe_applied(&self) -> bool {
        matches!(self, DcsError::Indeterminate(_))
    }
}

/// A key whose value could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorruptKey {
    /// The key.
    pub key: Key,
    /// Its version (a corrupt record may only be replaced by CAS on it).
    pub version: Version,
    /// What was wrong.
    pub reason: String,
}

/// One read of the whole cluster prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    /// Receipt time of the reply on the reading node's monotonic clock.
    pub received_at: Millis,
    /// How the store expires leases.
    pub lease_model: LeaseModel,
    /// Highest term ever granted (the `term` key).
    pub term: Term,
    /// `leader`
    pub leader: Option<Versioned<LeaderRecord>>,
    /// `members/*`, sorted by name. Each record is shared, so that a store can hand the
    /// same records to every read without copying them (change one with
    /// [`Arc::make_mut`]).
    pub members: Vec<Versioned<Arc<MemberRecord>>>,
    /// `config`
    pub config: Option<Versioned<ClusterSettings>>,
    /// `switchover`
    pub switchover: Option<Versioned<SwitchoverRequest>>,
    /// `sync`
    pub sync: Option<Versioned<SyncRecord>>,
    /// `history`
    pub history: Option<Versioned<History>>,
    /// `status`
    pub status: Option<Versioned<StatusRecord>>,
    /// `initialize`
    pub initialize: Option<Versioned<InitializeRecord>>,
    /// `failsafe`
    pub failsafe: Option<Versioned<FailsafeRecord>>,
    /// Keys whose values could not be decoded (left out of the fields above).
    pub corrupt: Vec<CorruptKey>,
    /// `events`, oldest first (for people: the core never reads them).
    #[serde(default)]
    pub events: Vec<Event>,
}

impl ClusterView {
    /// The member record of `name`.
    pub fn member(&self, name: &str) -> Option<&Versioned<Arc<MemberRecord>>> {
        self.members.iter().find(|m| m.value.name == name)
    }

    /// The layout version every member can read: the lowest one a member publishes (a
    /// member record this build cannot decode counts as version 1), capped by this
    /// build's [`crate::SCHEMA`]. Write nothing newer than this.
    pub fn schema(&self) -> u32 {
        let corrupt_member = self.corrupt.iter().any(|c| matches!(c.key, Key::Member(_)));
        let lowest = self.members.iter().map(|m| m.value.reads_schema()).min().unwrap_or(crate::SCHEMA);
        if corrupt_member {
            1
        } else {
            lowest.min(crate::SCHEMA)
        }
    }

    /// The corrupt entry for `key`, if its value could not be decoded.
    pub fn corrupt_key(&self, key: &Key) -> Option<&CorruptKey> {
        self.corrupt.iter().find(|c| &c.key == key)
    }

    /// Why the history read cannot be judged against, if it cannot: its key does not
    /// decode, or a fork in it does not go to a higher timeline
    /// ([`crate::History::fault`]). No member's WAL can then be judged on the cluster's
    /// line: the core promotes, rewinds and starts nobody on its word, and the leader
    /// writes it again from its own timeline history.
    pub fn history_fault(&self) -> Option<String> {
        if let Some(c) = self.corrupt_key(&Key::History) {
            return Some(format!("the history key does not decode ({})", c.reason));
        }
        self.history.as_ref().and_then(|h| h.value.fault())
    }

    /// What a write of the history key is conditioned on: the version of the value read,
    /// one that does not decode included.
    pub fn history_expect(&self) -> Expect {
        match self.corrupt_key(&Key::History) {
            Some(c) => Expect::Version(c.version),
            None => Expect::from_current(self.history.as_ref()),
        }
    }
}

/// A distributed configuration store. Async, with no runtime dependency; every method is
/// bounded by the backend's own timeout (derived from `retry_timeout`).
pub trait Dcs: Send + Sync {
    /// One read of the whole cluster prefix.
    fn read(&self) -> impl Future<Output = Result<ClusterView, DcsError>> + Send;

    /// Execute one operation.
    fn execute(&self, op: &DcsOp) -> impl Future<Output = Result<DcsReply, DcsError>> + Send;

    /// Resolves when the cluster prefix may have changed (a watch event). Used only to wake
    /// the loop early; a backend without watch never resolves.
    fn changed(&self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }

    /// Whether [`Dcs::changed`] ever fires. Without a watch the shell polls faster while
    /// anything is in flux.
    fn has_watch(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_round_trip() {
        for k in [
            Key::Leader,
            Key::Term,
            Key::Status,
            Key::Member("n-1".into()),
            Key::Config,
            Key::Switchover,
            Key::Sync,
            Key::History,
            Key::Initialize,
            Key::Failsafe,
            Key::Events,
        ] {
            assert_eq!(Key::from_path(&k.path()), Some(k));
        }
        assert_eq!(Key::from_path("members/"), None);
        assert_eq!(Key::from_path("members/a/b"), None);
        assert_eq!(Key::from_path("nonsense"), None);
    }

    #[test]
    fn lsn_only_changes_are_not_material() {
        let a = MemberRecord { name: "a".into(), lsn: Lsn(1), ..Default::default() };
        let b = MemberRecord { lsn: Lsn(99), ..a.clone() };
        assert!(a.same_material(&b));
        let c = MemberRecord { role: MemberRole::Primary, ..a.clone() };
        assert!(!a.same_material(&c));
    }

    /// A member record as hashell before layout versioning wrote it (schema 1).
    const SCHEMA1_MEMBER: &str = r#"{"name":"pg2","api_url":"http://127.0.0.1:8009","pg_url":"host=127.0.0.1 port=5433","role":"replica","running":true,"timeline":3,"lsn":50331648,"tags":{"nofailover":false,"failover_priority":1,"noloadbalance":false,"nosync":false,"clonefrom":false},"applied_config":7,"pending_restart":false,"reason":"replica_streaming","leader_term":null}"#;

    #[test]
    fn a_schema_1_member_record_reads_and_lowers_the_cluster_schema() {
        let old: MemberRecord = crate::codec::decode(SCHEMA1_MEMBER.as_bytes()).unwrap();
        assert_eq!((old.name.as_str(), old.reads_schema(), old.timeline), ("pg2", 1, Timeline(3)));
        let new = MemberRecord { name: "pg1".into(), schema: crate::SCHEMA, ..Default::default() };
        let v = |members: Vec<MemberRecord>| ClusterView {
            members: members.into_iter().map(|value| Versioned { version: Version(1), value: value.into() }).collect(),
            ..Default::default()
        };
        assert_eq!(v(vec![new.clone()]).schema(), crate::SCHEMA);
        assert_eq!(v(vec![new.clone(), old]).schema(), 1);
        assert_eq!(v(vec![]).schema(), crate::SCHEMA);
        // A member record this build cannot read could be from any version: assume the oldest.
        let mut corrupt = v(vec![new]);
        corrupt.corrupt.push(CorruptKey { key: Key::Member("pg3".into()), version: Version(2), reason: "bad".into() });
        assert_eq!(corrupt.schema(), 1);
    }

    #[test]
    fn records_from_a_newer_build_read_with_their_unknown_parts_ignored() {
        let future = r#"{"name":"pg4","role":"replica","reason":"a_reason_added_later","schema":9,"a_field_added_later":{"x":1}}"#;
        let m: MemberRecord = crate::codec::decode(future.as_bytes()).unwrap();
        assert_eq!((m.reason, m.reads_schema()), (Some(crate::Reason::Unknown), 9));
        let ev =
            r#"[{"wall_time_ms":1,"node":"pg4","term":2,"reason":"a_reason_added_later","detail":"d","extra":true}]"#;
        let events = crate::codec::decode_events(ev.as_bytes()).unwrap();
        assert_eq!(events[0].reason, crate::Reason::Unknown);
    }
}
