//! Failsafe acknowledgements (S1'): while the DCS is unreachable, a primary may keep
//! writing only if every member of the published failsafe set acknowledges it. The
//! acknowledgement goes through the member's core: it is refused while the member is a
//! candidate, and a member that gave one may not take the lease for a ttl afterwards.

use crate::config::Config;
use crate::memory::{FailsafeAck, Memory};
use crate::types::{Millis, NodeName, Term};
use serde::{Deserialize, Serialize};

/// A primary's failsafe ping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailsafeRequest {
    /// The primary asking.
    pub leader: NodeName,
    /// Its term.
    pub term: Term,
    /// The ttl the leader counts the confirmation with: the member holds off at least
    /// this long, even if its own ttl is shorter (a ttl lowered while the leader is cut
    /// off from the DCS must not shorten a promise the leader relies on).
    pub ttl: Millis,
}

/// Answers a failsafe ping. Returns whether to acknowledge and the memory to keep.
///
/// The shell must call this under the same lock as [`crate::step`] (so no step runs
/// between the answer and storing the memory), and store the returned memory.
pub fn answer_failsafe(cfg: &Config, mem: &Memory, req: &FailsafeRequest, now: Millis) -> (bool, Memory) {
    let refuse = req.leader == cfg.name
        || mem.election_since.is_some()
        || mem.lease.is_some()
        || mem.lease_op.is_some()
        || req.term < mem.max_term;
    if refuse {
        return (false, mem.clone());
    }
    // A promise never shrinks: the leader counts on the latest deadline any of its rounds
    // gave it, so a later round with a shorter ttl (lowered meanwhile) leaves the hold an
    // earlier one promised.
    let promised = mem.failsafe_ack.as_ref().map_or(0, |a| a.at.saturating_add(a.ttl));
    let ttl = req.ttl.max(promised.saturating_sub(now));
    let mut next = mem.clone();
    next.failsafe_ack = Some(FailsafeAck { leader: req.leader.clone(), term: req.term, at: now, ttl });
    (true, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_refuses_and_acker_remembers() {
        let cfg = Config::new("n2");
        let req = FailsafeRequest { leader: "n1".into(), term: Term(3), ttl: 10_000 };
        let mem = Memory { max_term: Term(3), ..Default::default() };
        let (ok, next) = answer_failsafe(&cfg, &mem, &req, 100);
        assert!(ok);
        assert_eq!(next.failsafe_ack.as_ref().map(|a| a.at), Some(100));

        let candidate = Memory { election_since: Some(50), ..mem.clone() };
        assert!(!answer_failsafe(&cfg, &candidate, &req, 100).0);

        let newer = Memory { max_term: Term(4), ..mem };
        assert!(!answer_failsafe(&cfg, &newer, &req, 100).0);
    }

    #[test]
    fn a_shorter_round_keeps_the_hold_an_earlier_one_promised() {
        let cfg = Config::new("n2");
        let long = FailsafeRequest { leader: "n1".into(), term: Term(3), ttl: 21_000 };
        let (_, mem) = answer_failsafe(&cfg, &Memory::default(), &long, 1_000);
        // The ttl was lowered; the next round asks for 9 s, 4 s later.
        let short = FailsafeRequest { ttl: 9_000, ..long.clone() };
        let (ok, mem) = answer_failsafe(&cfg, &mem, &short, 5_000);
        assert!(ok);
        let ack = mem.failsafe_ack.clone().expect("an acknowledgement");
        assert_eq!(ack.at + ack.ttl, 22_000, "the first round's promise still holds");
        // Once past it, the new round's ttl counts from its own time.
        let (_, mem) = answer_failsafe(&cfg, &mem, &short, 30_000);
        let ack = mem.failsafe_ack.expect("an acknowledgement");
        assert_eq!((ack.at, ack.ttl), (30_000, 9_000));
    }
}
