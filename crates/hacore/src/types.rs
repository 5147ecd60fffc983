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

/// A password or other credential. Its `Debug` and `Serialize` forms are `"<redacted>"`,
/// so a structure holding one can be logged or printed without showing it;
/// [`Secret::expose`] gives the text to the one call that must send it.
/// It deserializes from a string, or from an integer as its decimal text (an unquoted
/// numeric password in a file); any other type is refused without quoting the value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `text`.
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The credential itself, for the connection that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret::new(s)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a password as a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret::new(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Secret, E> {
                Err(E::custom("a password must be a string (quote it)"))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
                Err(E::custom("a password must be a string (quote it)"))
            }
        }
        d.deserialize_any(Text)
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

#[cfg(test)]
mod secret_tests {
    use super::Secret;

    #[test]
    fn a_secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(format!("{s:?}"), "\"<redacted>\"");
        assert_eq!(serde_json::to_string(&s).expect("json"), "\"<redacted>\"");
        let back: Secret = serde_json::from_str("\"hunter2\"").expect("parse");
        assert_eq!(back, s);
        let digits: Secret = serde_json::from_str("20261202").expect("an unquoted number");
        assert_eq!(digits.expose(), "20261202");
        let e = serde_json::from_str::<Secret>("31.4159").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("must be a string") && !e.contains("31.4"), "{e}");
    }
}
