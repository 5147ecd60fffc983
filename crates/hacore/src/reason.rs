//! Machine-readable reasons. Every decision carries one; it is logged, recorded as an
//! event when it changes, shown by `hashell list` and the REST API.
//! `docs/reasons.md` is generated from [`Reason::explain`] (a test keeps it in sync).

use serde::{Deserialize, Serialize};

macro_rules! reasons {
    ($( $(#[doc = $doc:literal])* $name:ident = $event:literal $(@ $since:literal => $fallback:ident)? ),* $(,)?) => {
        /// Why a node did what it did.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Reason {
            $( $(#[doc = $doc])* $name, )*
            /// No decision yet.
            #[default]
            Starting,
            /// A reason recorded by a newer hashell that this version does not know (read
            /// only: never chosen by this version).
            #[serde(other)]
            Unknown,
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [Reason] = &[$(Reason::$name,)* Reason::Starting, Reason::Unknown];

            /// One line for an operator asking "why did it do that?".
            pub fn explain(self) -> &'static str {
                match self {
                    $( Reason::$name => concat!($($doc),*).trim_ascii(), )*
                    Reason::Starting => "No decision yet.",
                    Reason::Unknown => "A reason recorded by a newer hashell that this version does not know.",
                }
            }

            /// Whether entering this reason is worth an event in the DCS.
            pub fn is_event(self) -> bool {
                match self {
                    $( Reason::$name => $event, )*
                    Reason::Starting | Reason::Unknown => false,
                }
            }

            /// The first DCS schema version whose readers know this reason.
            pub fn since_schema(self) -> u32 {
                match self {
                    $( Reason::$name => 1 $(- 1 + $since)?, )*
                    Reason::Starting | Reason::Unknown => 1,
                }
            }

            /// This reason as written for readers of schema `schema`: itself when they
            /// know it, else the older reason closest to it (see [`crate::SCHEMA`]).
            pub fn at_schema(self, schema: u32) -> Reason {
                if self.since_schema() <= schema {
                    return self;
                }
                match self {
                    $( $( Reason::$name => Reason::$fallback.at_schema(schema), )? )*
                    _ => Reason::Starting,
                }
            }
        }
    };
}

reasons! {
    /// Holds the leader lease and runs the writable primary.
    LeaderHealthy = false,
    /// Follows the leader and streams its WAL.
    ReplicaStreaming = false,
    /// Follows the leader; the WAL receiver is not streaming yet (PostgreSQL retries by itself).
    ReplicaConnecting = false,
    /// Maintenance mode: no automatic action is taken; status is still reported.
    Paused = true,
    /// No cluster exists yet: racing the other nodes for the leader lease to initialize it.
    BootstrapAcquiring = false,
    /// Won the bootstrap race: running initdb under the leader lease.
    BootstrapInitdb = true,
    /// Writing the cluster's system identifier (initialize key) before starting as primary.
    BootstrapRegistering = true,
    /// Another node is initializing the cluster (or this node may not): waiting for it.
    WaitingForBootstrap = false,
    /// Copying the data directory from a member; the node starts as a standby afterwards.
    Cloning = true,
    /// The local data belongs to another cluster (system identifier differs); it is not started. Reinitialize this node.
    SystemIdMismatch = true,
    /// Won the election: taking the leader lease.
    Acquiring = true,
    /// The leader record names this node (planned transfer or daemon restart): claiming it with a fresh lease.
    Claiming = true,
    /// The leader record was taken over or deleted: this node no longer leads.
    LeaseLost = true,
    /// The lease deadline passed without a successful renewal: fencing PostgreSQL (stop immediate).
    LeaseExpired = true,
    /// The lease deadline passed though the store still names this node: renewing; nothing is made writable until that succeeds.
    LeaseRenewing = true,
    /// PostgreSQL accepts writes but this node does not hold the leader lease: fencing it (stop immediate).
    FencingNotLeader = true,
    /// The fencing guard is gone or did not acknowledge the deadline: fencing PostgreSQL.
    GuardLost = true,
    /// The DCS cannot be read: leaving PostgreSQL as it is and retrying.
    DcsUnavailable = true,
    /// The DCS cannot be read: the primary stays writable only until its lease deadline.
    DcsUnavailableLeaseValid = true,
    /// The DCS cannot be read, but every failsafe member acknowledged this primary: it stays writable.
    FailsafeHolding = true,
    /// Giving up the leader lease (the leader cannot run PostgreSQL).
    SteppingDown = true,
    /// The leader record cannot be decoded: waiting until it has stayed unchanged for a ttl, then replacing it by CAS.
    LeaderRecordCorrupt = true,
    /// The leader's PostgreSQL is down: starting it again as primary under the lease.
    PrimaryStarting = true,
    /// The leader's PostgreSQL did not come back within primary_start_timeout (or failed to start): releasing the lease.
    PrimaryStartFailed = true,
    /// The leader's PostgreSQL runs but does not answer: holding the lease until primary_hang_timeout.
    PrimaryUnresponsive = true,
    /// The leader's PostgreSQL has not answered for primary_hang_timeout: releasing the lease and fencing.
    PrimaryHung = true,
    /// Recording the fork in the history and promoting this standby.
    Promoting = true,
    /// The new leader's PostgreSQL is a stopped standby: starting it so it can be promoted.
    StartingForPromotion = true,
    /// The history record of this term's promotion was rewritten: before a retried promotion, because an earlier attempt died after writing the new timeline's history file (PostgreSQL never reuses that timeline and forks the next one from it, so the retry is recorded as one more fork from it); or after a promotion that forked at another point than recorded.
    HistoryCorrected = true,
    /// Starting PostgreSQL as a standby of the leader.
    StartingReplica = true,
    /// Pointing the WAL receiver at the current leader.
    Repointing = true,
    /// The local WAL forks from the leader's history: stopping PostgreSQL to rewind it.
    StoppingDiverged = true,
    /// The local WAL forks from the leader's history: running pg_rewind against the leader.
    Rewinding = true,
    /// The local WAL forks from the leader's history and pg_rewind is impossible or failed: re-cloning from the leader.
    Recloning = true,
    /// The local WAL forks from the leader's history and automatic re-cloning is disabled: run reinitialize on this node.
    DivergedNeedsReinit = true,
    /// The leader is on a timeline the history this node read does not record (a stale read): waiting for a fresh view before following it.
    HistoryBehindLeader = true,
    /// The leader has not finished promoting: waiting before rewinding or cloning from it.
    WaitingForLeaderPrimary = false,
    /// Reinitializing this node on request: its data is replaced by a clone of the leader.
    Reinitializing = true,
    /// An operator asked for a restart: stopping PostgreSQL (fast), then starting it again in the same role.
    Restarting = true,
    /// Refused to reinitialize: this node is the leader. Switch over first.
    ReinitRefusedOnLeader = true,
    /// The leader is missing: stopping the WAL receiver so this node's position is final before comparing.
    ElectionSettling = true,
    /// The leader is missing: waiting until every eligible member has reported its position or is unreachable.
    ElectionWaiting = false,
    /// The leader is missing: a more advanced (or, equally advanced, higher-priority) member should take over.
    ElectionLost = true,
    /// Not eligible to lead: tagged nofailover (or failover_priority 0).
    IneligibleNoFailover = false,
    /// Not eligible to lead: the local WAL is not along the published history.
    IneligibleDiverged = true,
    /// Not eligible to lead: synchronous mode and this node is not in the published sync set.
    IneligibleNotSynchronous = false,
    /// Not eligible to lead: further behind the last known primary position than maximum_lag_on_failover.
    IneligibleLagging = true,
    /// Not eligible to lead: it acknowledged a failsafe primary less than a ttl ago.
    IneligibleFailsafeHold = true,
    /// Not eligible to lead: after a failsafe episode only members of the failsafe set may lead.
    IneligibleNotInFailsafeSet = true,
    /// Not eligible to lead: after a rewind or clone it has not replayed past its consistency point yet.
    IneligibleCatchingUp = false,
    /// Not eligible to lead: no usable data (empty, foreign, or PostgreSQL state unknown).
    IneligibleNoData = false,
    /// Not eligible to lead right now: a PostgreSQL operation is in progress, PostgreSQL's state is not settled, or it failed to start less than a ttl ago (others go first).
    IneligibleBusy = false,
    /// An operator asked for a failover to another node: waiting for it to take over.
    WaitingForManualFailover = true,
    /// Manual failover to this node refused for now: another eligible member is more advanced.
    ManualFailoverBehind = true,
    /// Manual failover in pause waits until the old primary is confirmed stopped.
    ManualFailoverOldPrimaryRunning = true,
    /// A switchover is scheduled and not yet due.
    SwitchoverScheduled = true,
    /// Switchover: CHECKPOINT while still writable, so the shutdown checkpoint is short.
    SwitchoverCheckpoint = true,
    /// Switchover: stopping PostgreSQL fast (the lease is kept).
    SwitchoverStopping = true,
    /// Switchover: waiting for the candidate to receive the end of the WAL.
    SwitchoverAwaitCandidate = true,
    /// Switchover: handing the leader record to the candidate.
    SwitchoverTransferring = true,
    /// Switchover abandoned (candidate did not catch up in time or failed): resuming as primary.
    SwitchoverAborted = true,
    /// Switchover request refused and cleared (invalid, impossible, or paused); the event says why.
    SwitchoverRejected = true,
    /// A standby was added to or removed from the synchronous set.
    SyncSetChanged = true,
    /// The DCS config is invalid and was not applied; the previous settings stay in effect.
    ConfigRejected = true,
    /// Waiting for a PostgreSQL operation in progress (stop, checkpoint) to finish.
    WaitingForOperation = false,
    /// A long PostgreSQL operation failed or timed out; it will be retried or remedied.
    OperationFailed = true,
    /// A member record that stopped being refreshed was deleted.
    StaleMemberRemoved = true,
    /// This node joined the cluster: it published its member record (first start, or back after its record expired).
    MemberJoined = true,
    /// The data directory holds PostgreSQL's files but its control file cannot be read: nothing is initialized or cloned over it. Check the disk and `bin_dir` (pg_controldata).
    DataDirUnreadable = true,
    /// An operator changed the cluster's settings (REST `PATCH /config`, `hashell edit-config`, pause, resume).
    ConfigChanged = true,
    /// A role-change callback (`[callbacks]`) failed or timed out; the role change itself went ahead. The event names the command.
    CallbackFailed = true @ 2 => OperationFailed,
    /// Leads a standby cluster: holds the lease and streams from the cluster's upstream (`standby_cluster`); nobody in this cluster accepts writes.
    StandbyLeaderStreaming = false @ 3 => ReplicaStreaming,
    /// Leads a standby cluster; its WAL receiver is not streaming from the upstream yet (PostgreSQL retries by itself; with only a `restore_command` it replays from the archive).
    StandbyLeaderReplaying = false @ 3 => ReplicaConnecting,
    /// Leads a standby cluster and points its WAL receiver at the cluster's upstream (new leader, or `standby_cluster` changed).
    StandbyLeaderRepointing = true @ 3 => Repointing,
    /// Won the bootstrap race of a standby cluster: copying the upstream's data (pg_basebackup from `standby_cluster.pg_url`).
    StandbyBootstrapCloning = true @ 3 => Cloning,
    /// The standby cluster's upstream switched timelines (a failover there); the standby leader recorded the switch in this cluster's history.
    UpstreamTimelineRecorded = true @ 3 => HistoryCorrected,
    /// The store's history key cannot be used (it does not decode, or a fork in it does not go to a higher timeline): no member's WAL can be judged against it, so nobody is promoted, rewound or started as a standby until the leader rewrites it from its own timeline history. Without a leader, write the key again by hand (docs/runbooks.md).
    HistoryUnusable = true @ 3 => HistoryBehindLeader,
    /// PostgreSQL accepted writes on a standby cluster's leader (its data was a primary's, or someone promoted it by hand): fenced, since a standby cluster accepts no writes.
    StandbyClusterWritable = true @ 3 => FencingNotLeader,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // snake_case, as serialized.
        for (i, c) in format!("{self:?}").chars().enumerate() {
            if c.is_ascii_uppercase() {
                if i > 0 {
                    f.write_str("_")?;
                }
                write!(f, "{}", c.to_ascii_lowercase())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_explained_once() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(*r));
            assert!(r.explain().ends_with('.'), "{r:?}: {}", r.explain());
        }
    }

    #[test]
    fn display_is_snake_case() {
        assert_eq!(Reason::LeaderHealthy.to_string(), "leader_healthy");
    }

    #[test]
    fn a_reason_from_a_newer_build_reads_as_unknown() {
        let r: Reason = serde_json::from_str("\"some_reason_from_the_future\"").unwrap();
        assert_eq!(r, Reason::Unknown);
        let r: Reason = serde_json::from_str("\"leader_healthy\"").unwrap();
        assert_eq!(r, Reason::LeaderHealthy);
        // Not a string at all is still an error, not a silent Unknown.
        assert!(serde_json::from_str::<Reason>("17").is_err());
    }

    #[test]
    fn reasons_newer_than_the_readers_are_written_as_their_fallback() {
        assert_eq!(Reason::CallbackFailed.since_schema(), 2);
        assert_eq!(Reason::CallbackFailed.at_schema(1), Reason::OperationFailed);
        assert_eq!(Reason::CallbackFailed.at_schema(2), Reason::CallbackFailed);
        for r in Reason::ALL {
            assert!(r.since_schema() <= crate::SCHEMA, "{r:?} is newer than this build's schema");
            // Whatever a reason falls back to, version-1 readers know it.
            assert_eq!(r.at_schema(1).since_schema(), 1, "{r:?}");
            assert_eq!(r.at_schema(crate::SCHEMA), *r);
        }
    }
}
