//! Small value types shared by every module: time, WAL positions, terms, versions, names.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Milliseconds on the local node's monotonic clock (CLOCK_BOOTTIME in the daemon,
/// virtual time in the simulator). Values from different machines are never compared.
pub type Millis = u64;

/// A node's name, unique within a cluster.
pub type NodeName = String;

/// A WAL location (PostgreSQL `pg_lsn`), as a byte offset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Bytes by which `self` is behind `ahead` (0 when not behind).
    pub fn lag_behind(self, ahead: Lsn) -> u64 {
        ahead.0.saturating_sub(self.0)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// A PostgreSQL timeline id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timeline(pub u32);

impl fmt::Display for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A leadership term: the fencing token. Each acquisition of the leader record by a new
/// reign increments it; every leader-side write is conditioned on it (S5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Term(pub u64);

impl Term {
    /// The next term.
    pub fn next(self) -> Term {
        Term(self.0.saturating_add(1))
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An opaque version of a DCS record, assigned by the store on every write
/// (etcd `mod_revision`; a fresh random number on DynamoDB). Only compared for equality.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(pub u64);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A value together with the store version it was read at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned<T> {
    /// Version the store assigned to this value.
    pub version: Version,
    /// The decoded value.
    pub value: T,
}

/// A position in the WAL: a timeline and an LSN on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WalPosition {
    /// Timeline the position is on.
    pub timeline: Timeline,
    /// LSN on that timeline.
    pub lsn: Lsn,
}

impl fmt::Display for WalPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.lsn, self.timeline)
    }
}

/// Identifies an action whose outcome the core waits for (long PostgreSQL operations,
/// lease operations). Allocated from [`crate::Memory::next_op`]; unique per node run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OpId(pub u64);

/// Member tags: per-node settings that shape elections and routing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tags {
    /// Never take the leader lease (never promoted automatically or by switchover).
    pub nofailover: bool,
    /// Tie-breaker between equally advanced candidates: higher wins. 0 means the same
    /// as `nofailover`.
    pub failover_priority: u32,
    /// Load balancers should not route read traffic here (published only).
    pub noloadbalance: bool,
    /// Never chosen as a synchronous standby.
    pub nosync: bool,
    /// Preferred source for cloning new replicas.
    pub clonefrom: bool,
}

impl Default for Tags {
    fn default() -> Self {
        Tags { nofailover: false, failover_priority: 1, noloadbalance: false, nosync: false, clonefrom: false }
    }
}

impl Tags {
    /// Whether these tags allow the node to become leader.
    pub fn can_lead(&self) -> bool {
        !self.nofailover && self.failover_priority > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_displays_like_postgres() {
        assert_eq!(Lsn(0x1_0000_0A28).to_string(), "1/A28");
        assert_eq!(Lsn(0).to_string(), "0/0");
    }

    #[test]
    fn lag_saturates() {
        assert_eq!(Lsn(10).lag_behind(Lsn(4)), 0);
        assert_eq!(Lsn(4).lag_behind(Lsn(10)), 6);
    }
}
