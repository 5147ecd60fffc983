//! What the shell saw this tick: the local PostgreSQL, one DCS read, the peers, the
//! outcomes of the previous batch of actions, the fencing guard, and local requests.

use crate::dcs::{ClusterView, DcsError, LeaseGrant};
use crate::history::TimelineSwitch;
use crate::status::PeerStatus;
use crate::types::{Lsn, Millis, NodeName, OpId, Term, Timeline, WalPosition};
use serde::{Deserialize, Serialize};

/// The data directory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataDir {
    /// Missing or empty: the node needs initdb or a clone.
    #[default]
    Empty,
    /// A PostgreSQL cluster with this system identifier.
    Present {
        /// `pg_control`'s system identifier.
        system_id: u64,
    },
    /// PostgreSQL's files are there but `pg_control` could not be read (I/O error, a
    /// wrong `bin_dir`): the core never initializes or clones over it, and never founds
    /// a cluster on it.
    Unreadable,
}

/// `synchronous_standby_names` as the core manages it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncStandbys {
    /// Empty: commits do not wait for standbys.
    #[default]
    Off,
    /// A name no standby has: every commit waits (strict mode with no standby).
    Block,
    /// `FIRST n (names)` with n = the number of names: every listed standby acknowledges.
    First(Vec<NodeName>),
}

impl SyncStandbys {
    /// The setting naming exactly `names` (and blocking when `strict` and there are none).
    pub fn for_names(names: Vec<NodeName>, strict: bool) -> SyncStandbys {
        if !names.is_empty() {
            SyncStandbys::First(names)
        } else if strict {
            SyncStandbys::Block
        } else {
            SyncStandbys::Off
        }
    }

    /// The standby names this setting lets acknowledge commits.
    pub fn names(&self) -> &[NodeName] {
        match self {
            SyncStandbys::First(n) => n,
            _ => &[],
        }
    }
}

/// One row of `pg_stat_replication` on a primary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandbyState {
    /// `application_name` (the member name).
    pub name: NodeName,
    /// Flushed LSN the standby reported.
    pub flush_lsn: Lsn,
    /// Whether it is in the `streaming` state.
    pub streaming: bool,
}

/// The local PostgreSQL.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PgObservation {
    /// The data directory.
    pub data: DataDir,
    /// A postmaster runs (postmaster.pid names a live process).
    pub running: bool,
    /// It answered this tick's queries. False with `running` means hung or overloaded.
    pub responsive: bool,
    /// In recovery (a standby). Filled from `pg_control` when PostgreSQL is down or does
    /// not answer; None only when unknown.
    pub in_recovery: Option<bool>,
    /// Current timeline (from `pg_control` when down).
    pub timeline: Timeline,
    /// Contents of the current timeline's history file.
    pub history: Vec<TimelineSwitch>,
    /// The newest timeline taken as far as PostgreSQL can tell: history files in `pg_wal`
    /// for `timeline + 1`, `timeline + 2`, ... up to this one (a promotion that died after
    /// writing its new timeline's history file leaves one, and PostgreSQL never reuses
    /// it). A promotion takes the timeline after this one, so a fork must name that.
    /// Zero when nothing beyond `timeline` is known.
    #[serde(default)]
    pub newest_timeline: Timeline,
    /// Primary: flushed LSN. Standby: received-and-flushed LSN. Stopped: end of local WAL.
    pub flush_lsn: Lsn,
    /// Standby: replayed LSN.
    pub replay_lsn: Lsn,
    /// Member whose WAL the standby is configured to receive (None: receiver off).
    pub upstream: Option<NodeName>,
    /// The WAL receiver is streaming.
    pub streaming: bool,
    /// `synchronous_standby_names` in effect.
    pub sync_standbys: SyncStandbys,
    /// Primary: connected standbys.
    pub standbys: Vec<StandbyState>,
    /// Physical replication slots that exist.
    pub slots: Vec<String>,
    /// pg_rewind is possible (`wal_log_hints` or data checksums).
    pub rewind_capable: bool,
    /// A setting changed that needs a restart.
    pub pending_restart: bool,
}

impl PgObservation {
    /// The newest timeline a promotion of this instance may not take (its own, or a
    /// later one whose history file it holds): it takes the one after.
    pub fn taken_timeline(&self) -> Timeline {
        self.timeline.max(self.newest_timeline)
    }

    /// Where the local WAL ends.
    pub fn position(&self) -> WalPosition {
        WalPosition { timeline: self.timeline, lsn: self.flush_lsn }
    }

    /// Where the local WAL ends, for a reason's detail; names the timeline PostgreSQL
    /// recovers towards when a promotion that died left a later one.
    pub fn position_detail(&self) -> String {
        match self.newest_timeline > self.timeline {
            true => format!("{} (recovering towards timeline {})", self.position(), self.newest_timeline),
            false => self.position().to_string(),
        }
    }

    /// Whether PostgreSQL may be accepting writes (running and not known to be in recovery).
    pub fn maybe_writable(&self) -> bool {
        self.running && self.in_recovery != Some(true)
    }

    /// System identifier, if there is data.
    pub fn system_id(&self) -> Option<u64> {
        match self.data {
            DataDir::Present { system_id } => Some(system_id),
            DataDir::Empty | DataDir::Unreadable => None,
        }
    }
}

/// What a peer answered to this tick's ping (None: it did not answer in time).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerReport {
    /// Peer name.
    pub name: NodeName,
    /// Its status, or None when it is unreachable.
    pub status: Option<PeerStatus>,
}

/// Why an action did not succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// It ran and failed.
    Failed,
    /// A DCS condition did not hold.
    Conflict,
    /// The store was unreachable; nothing applied.
    Unavailable,
    /// Sent, outcome unknown.
    Indeterminate,
    /// Its time limit (or the lease deadline it carried) passed.
    TimedOut,
    /// Not executed because an earlier action of the batch failed.
    Skipped,
}

impl From<&DcsError> for Failure {
    fn from(e: &DcsError) -> Failure {
        match e {
            DcsError::Conflict(_) => Failure::Conflict,
            DcsError::Unavailable(_) => Failure::Unavailable,
            DcsError::Indeterminate(_) => Failure::Indeterminate,
            DcsError::Corrupt { .. } | DcsError::Invalid(_) => Failure::Failed,
        }
    }
}

/// What a successful action returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Done {
    /// Nothing to report.
    Ok,
    /// A lease operation's grant.
    Lease(LeaseGrant),
    /// A rewind or clone finished; the node is consistent once replay passes this LSN.
    ConsistentAt(Lsn),
    /// Every member of the failsafe set acknowledged a ping round sent at this time.
    FailsafeAcked {
        /// Send time of the round.
        sent_at: Millis,
    },
}

/// The outcome of one action of an earlier batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The action's id.
    pub id: OpId,
    /// Its result.
    pub result: Result<Done, Failure>,
}

/// The fencing guard's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardState {
    /// No guard configured.
    #[default]
    Disabled,
    /// The guard acknowledged this deadline for this term.
    Armed {
        /// Absolute deadline on this node's clock.
        deadline: Millis,
        /// Term the deadline belongs to.
        term: Term,
    },
    /// The guard is gone or did not answer: counts as a missed deadline.
    Lost,
}

/// Requests from the operator that reached this node (REST/CLI), or schedules that are due.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalRequests {
    /// The scheduled time of the pending switchover has come (the shell compares wall clocks).
    pub switchover_due: bool,
    /// Wipe this node's data and clone it again from the leader.
    pub reinitialize: bool,
    /// Restart PostgreSQL in its current role (stop fast, start again), also in
    /// maintenance mode: an operator request or a scheduled restart that is due. Keep it
    /// set until [`crate::Memory::restarting`] shows the core took it up; the core ignores
    /// it while leadership is in flux (no leader, an election, a switchover, a failed or
    /// unfinished operation).
    #[serde(default)]
    pub restart: bool,
}

/// Everything the shell observed this tick.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// The local PostgreSQL.
    pub pg: PgObservation,
    /// One read of the cluster, or why it failed.
    pub dcs: Result<ClusterView, DcsError>,
    /// Peer answers; a member missing here has not been asked yet.
    pub peers: Vec<PeerReport>,
    /// Outcomes of earlier actions that carried an id.
    pub outcomes: Vec<Outcome>,
    /// The fencing guard.
    pub guard: GuardState,
    /// Operator requests and due schedules.
    pub requests: LocalRequests,
    /// Wall-clock ms since the epoch, recorded in history and events (never compared).
    pub wall_time_ms: u64,
}

impl Observation {
    /// The report of `peer`, if it was asked.
    pub fn peer(&self, peer: &str) -> Option<&PeerReport> {
        self.peers.iter().find(|p| p.name == peer)
    }
}
