//! A simulated PostgreSQL: the WAL is a sequence of records, each on a timeline and
//! possibly carrying a client write, so a rewind really discards a divergent suffix and a
//! promotion really forks the history.

use hacore::observation::{DataDir, PgObservation, StandbyState, SyncStandbys};
use hacore::{Lsn, NodeName, Timeline, TimelineSwitch};

/// Bytes per WAL record: record `i` ends at LSN `(i + 1) * RECORD`.
pub const RECORD: u64 = 64;

/// One WAL record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Timeline it was written on.
    pub timeline: u32,
    /// The client write it carries (None: checkpoint, timeline switch, ...).
    pub write: Option<u64>,
}

/// What role the instance runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Accepts writes.
    Primary,
    /// In recovery.
    Standby,
}

/// One node's PostgreSQL.
#[derive(Clone, Debug, Default)]
pub struct SimPg {
    /// System identifier (None: no data directory).
    pub system_id: Option<u64>,
    /// The WAL.
    pub wal: Vec<Record>,
    /// Timeline switches in this WAL's ancestry.
    pub history: Vec<TimelineSwitch>,
    /// Current timeline.
    pub timeline: u32,
    /// Postmaster running.
    pub running: bool,
    /// Role while running; role of the data when stopped.
    pub role: Option<Role>,
    /// Configured upstream.
    pub upstream: Option<NodeName>,
    /// Streaming right now.
    pub streaming: bool,
    /// `synchronous_standby_names` in effect.
    pub sync_standbys: SyncStandbys,
    /// Replication slots.
    pub slots: Vec<String>,
    /// Frozen: running but not answering (hung).
    pub hung: bool,
}

impl SimPg {
    /// End of the WAL.
    pub fn end(&self) -> Lsn {
        Lsn(self.wal.len() as u64 * RECORD)
    }

    /// Whether it accepts writes.
    pub fn writable(&self) -> bool {
        self.running && !self.hung && self.role == Some(Role::Primary)
    }

    /// Whether it has the record `write` at `lsn`.
    pub fn has(&self, lsn: Lsn, write: u64) -> bool {
        let idx = (lsn.0 / RECORD).checked_sub(1);
        idx.and_then(|i| self.wal.get(i as usize)).is_some_and(|r| r.write == Some(write))
    }

    /// Appends a record on the current timeline; returns its end LSN.
    pub fn append(&mut self, write: Option<u64>) -> Lsn {
        self.wal.push(Record { timeline: self.timeline, write });
        self.end()
    }

    /// Promotes: a fork to `timeline` at the end of the WAL.
    pub fn promote(&mut self, timeline: u32) {
        let at = self.end();
        self.history.push(TimelineSwitch { timeline: Timeline(self.timeline), lsn: at });
        self.timeline = timeline;
        self.role = Some(Role::Primary);
        self.upstream = None;
        self.streaming = false;
        self.append(None);
    }

    /// Length of the common prefix of two WALs.
    pub fn common_prefix(a: &[Record], b: &[Record]) -> usize {
        a.iter().zip(b).take_while(|(x, y)| x == y).count()
    }

    /// What the shell would observe.
    pub fn observe(&self, standbys: Vec<StandbyState>) -> PgObservation {
        let responsive = self.running && !self.hung;
        PgObservation {
            data: self.system_id.map_or(DataDir::Empty, |system_id| DataDir::Present { system_id }),
            running: self.running,
            responsive,
            in_recovery: self.role.map(|r| r == Role::Standby),
            timeline: Timeline(self.timeline),
            history: self.history.clone(),
            flush_lsn: self.end(),
            replay_lsn: self.end(),
            upstream: if self.running { self.upstream.clone() } else { None },
            streaming: self.running && self.streaming,
            sync_standbys: self.sync_standbys.clone(),
            standbys: if self.writable() { standbys } else { Vec::new() },
            slots: self.slots.clone(),
            rewind_capable: true,
            pending_restart: false,
        }
    }
}
