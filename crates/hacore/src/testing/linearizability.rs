//! A linearizability checker for concurrent histories of the leader record (a
//! compare-and-set register with a durable term), in the manner of Wing & Gong with
//! memoization (as Knossos and Porcupine do).
//!
//! Each operation has an invocation and a response time from one logical clock shared by
//! all clients. An operation whose outcome is unknown (`Indeterminate`) may have taken
//! effect at any point after its invocation, or never. Operations that failed as
//! `Unavailable` applied nothing and are left out of the history.

use crate::dcs::Expect;
use crate::types::{NodeName, Term, Version};
use std::collections::HashSet;

/// What a client asked for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegOp {
    /// Read the record.
    Read,
    /// Acquire for `holder` in `term` if the record is in state `expect` and the durable
    /// term is `term_was`.
    Acquire {
        /// New holder.
        holder: NodeName,
        /// New term.
        term: Term,
        /// Expected state.
        expect: Expect,
        /// Expected durable term.
        term_was: Term,
    },
    /// Renew if held by `holder` in `term` at `version`.
    Renew {
        /// Holder.
        holder: NodeName,
        /// Term.
        term: Term,
        /// Version.
        version: Version,
    },
    /// Release if held by `holder` in `term` at `version`.
    Release {
        /// Holder.
        holder: NodeName,
        /// Term.
        term: Term,
        /// Version.
        version: Version,
    },
    /// Transfer to `to` in `to_term` if held by `holder` in `term` at `version`.
    Transfer {
        /// Holder.
        holder: NodeName,
        /// Term.
        term: Term,
        /// Version.
        version: Version,
        /// New holder.
        to: NodeName,
        /// New term.
        to_term: Term,
    },
}

/// What the client got back.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegRet {
    /// A read: the record (holder, term, version) and the durable term.
    Read(Option<(NodeName, Term, Version)>, Term),
    /// Applied; the record's version afterwards when the store said it.
    Ok(Option<Version>),
    /// A condition did not hold; nothing applied.
    Conflict,
    /// Sent, outcome unknown.
    Unknown,
}

/// One operation of a history.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Client.
    pub client: usize,
    /// Invocation time (logical).
    pub invoked: u64,
    /// Response time (logical); `u64::MAX` when unknown.
    pub returned: u64,
    /// Operation.
    pub op: RegOp,
    /// Result.
    pub ret: RegRet,
}

/// How an applied operation changes the model (given the version the store reported).
type Effect = Box<dyn Fn(&mut Model, Option<Version>)>;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Model {
    leader: Option<(NodeName, Term, Option<Version>)>,
    term: Term,
}

impl Model {
    /// (holder, term) match: the guard names the current reign. A store may also insist
    /// on the version; see [`Model::held_exactly`].
    fn held(&self, holder: &str, term: Term) -> bool {
        self.leader.as_ref().is_some_and(|(h, t, _)| h == holder && *t == term)
    }

    fn held_exactly(&self, holder: &str, term: Term, version: Version) -> bool {
        self.held(holder, term) && self.leader.as_ref().is_some_and(|(_, _, v)| v.is_none_or(|v| v == version))
    }

    /// The next state if `op` with result `ret` is consistent here.
    fn apply(&self, op: &RegOp, ret: &RegRet) -> Option<Model> {
        let mut next = self.clone();
        // `may_apply`: the condition holds as the contract requires for success;
        // `may_refuse`: a store could legitimately refuse (for guards: also on version).
        let (may_apply, may_refuse, effect): (bool, bool, Effect) = match op {
            RegOp::Read => {
                let RegRet::Read(got, durable) = ret else { return None };
                if *durable != self.term {
                    return None;
                }
                return match (&self.leader, got) {
                    (None, None) => Some(next),
                    (Some((h, t, v)), Some((gh, gt, gv))) if h == gh && t == gt && v.is_none_or(|v| v == *gv) => {
                        next.leader = Some((h.clone(), *t, Some(*gv)));
                        Some(next)
                    }
                    _ => None,
                };
            }
            RegOp::Acquire { holder, term, expect, term_was } => {
                let state_ok = match expect {
                    Expect::Absent => self.leader.is_none(),
                    Expect::Version(v) => self.leader.as_ref().is_some_and(|(_, _, cur)| cur.is_none_or(|c| c == *v)),
                    Expect::Any => true,
                };
                let (holder, term) = (holder.clone(), *term);
                let cond = state_ok && self.term == *term_was;
                (
                    cond,
                    !cond,
                    Box::new(move |m: &mut Model, v| {
                        m.leader = Some((holder.clone(), term, v));
                        m.term = m.term.max(term);
                    }),
                )
            }
            RegOp::Renew { holder, term, version } => {
                let (h, t) = (holder.clone(), *term);
                (
                    self.held(holder, *term),
                    !self.held_exactly(holder, *term, *version),
                    Box::new(move |m: &mut Model, v| m.leader = Some((h.clone(), t, v))),
                )
            }
            RegOp::Release { holder, term, version } => (
                self.held(holder, *term),
                !self.held_exactly(holder, *term, *version),
                Box::new(|m: &mut Model, _| m.leader = None),
            ),
            RegOp::Transfer { holder, term, version, to, to_term } => {
                let (to, to_term) = (to.clone(), *to_term);
                (
                    self.held(holder, *term),
                    !self.held_exactly(holder, *term, *version),
                    Box::new(move |m: &mut Model, _| {
                        m.leader = Some((to.clone(), to_term, None));
                        m.term = m.term.max(to_term);
                    }),
                )
            }
        };
        match ret {
            RegRet::Ok(v) if may_apply => {
                effect(&mut next, *v);
                Some(next)
            }
            RegRet::Conflict if may_refuse => Some(next),
            RegRet::Unknown if may_apply => {
                effect(&mut next, None);
                Some(next)
            }
            _ => None,
        }
    }
}

/// Why a history is not linearizable (for the failure message).
#[derive(Debug)]
pub struct NotLinearizable {
    /// Operations linearized on the longest consistent path found.
    pub longest_prefix: usize,
    /// The history.
    pub history: Vec<Entry>,
}

/// Checks that `history` is linearizable with respect to the leader-record register,
/// starting from no leader and durable term `term`.
pub fn check(history: &[Entry], term: Term) -> Result<(), NotLinearizable> {
    let n = history.len();
    assert!(n <= 4096, "history too long for the checker");
    let words = n.div_ceil(64);
    let mut seen: HashSet<(Model, Vec<u64>)> = HashSet::new();
    let mut best = 0;
    let start = Model { leader: None, term };
    let done = vec![0u64; words];
    if dfs(history, start, done, 0, &mut seen, &mut best) {
        Ok(())
    } else {
        Err(NotLinearizable { longest_prefix: best, history: history.to_vec() })
    }
}

fn is_done(done: &[u64], i: usize) -> bool {
    done[i / 64] & (1 << (i % 64)) != 0
}

fn dfs(
    h: &[Entry],
    state: Model,
    done: Vec<u64>,
    count: usize,
    seen: &mut HashSet<(Model, Vec<u64>)>,
    best: &mut usize,
) -> bool {
    *best = (*best).max(count);
    // Every operation with a known response must be linearized; unknown ones may be dropped.
    let pending: Vec<usize> = (0..h.len()).filter(|&i| !is_done(&done, i)).collect();
    if pending.iter().all(|&i| h[i].ret == RegRet::Unknown) {
        return true;
    }
    if !seen.insert((state.clone(), done.clone())) {
        return false;
    }
    // Candidates: invoked before the earliest response among pending operations.
    let horizon = pending.iter().map(|&i| h[i].returned).min().unwrap_or(u64::MAX);
    for &i in pending.iter().filter(|&&i| h[i].invoked < horizon) {
        let mut next_done = done.clone();
        next_done[i / 64] |= 1 << (i % 64);
        if let Some(next) = state.apply(&h[i].op, &h[i].ret) {
            if dfs(h, next, next_done.clone(), count + 1, seen, best) {
                return true;
            }
        }
        if h[i].ret == RegRet::Unknown && dfs(h, state.clone(), next_done, count + 1, seen, best) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(client: usize, invoked: u64, returned: u64, op: RegOp, ret: RegRet) -> Entry {
        Entry { client, invoked, returned, op, ret }
    }
    fn acq(h: &str, t: u64, expect: Expect, was: u64) -> RegOp {
        RegOp::Acquire { holder: h.into(), term: Term(t), expect, term_was: Term(was) }
    }

    #[test]
    fn sequential_acquire_release_acquire_is_fine() {
        let h = vec![
            e(0, 0, 1, acq("a", 1, Expect::Absent, 0), RegRet::Ok(Some(Version(5)))),
            e(0, 2, 3, RegOp::Release { holder: "a".into(), term: Term(1), version: Version(5) }, RegRet::Ok(None)),
            e(1, 4, 5, acq("b", 2, Expect::Absent, 1), RegRet::Ok(Some(Version(7)))),
            e(1, 6, 7, RegOp::Read, RegRet::Read(Some(("b".into(), Term(2), Version(7))), Term(2))),
        ];
        check(&h, Term(0)).unwrap();
    }

    #[test]
    fn two_winners_without_a_release_are_caught() {
        let h = vec![
            e(0, 0, 1, acq("a", 1, Expect::Absent, 0), RegRet::Ok(Some(Version(5)))),
            e(1, 2, 3, acq("b", 1, Expect::Absent, 0), RegRet::Ok(Some(Version(6)))),
        ];
        assert!(check(&h, Term(0)).is_err());
    }

    #[test]
    fn concurrent_racers_one_wins() {
        let h = vec![
            e(0, 0, 3, acq("a", 1, Expect::Absent, 0), RegRet::Conflict),
            e(1, 1, 2, acq("b", 1, Expect::Absent, 0), RegRet::Ok(Some(Version(6)))),
        ];
        check(&h, Term(0)).unwrap();
    }

    #[test]
    fn stale_read_is_caught() {
        let h = vec![
            e(0, 0, 1, acq("a", 1, Expect::Absent, 0), RegRet::Ok(Some(Version(5)))),
            e(1, 2, 3, RegOp::Read, RegRet::Read(None, Term(0))),
        ];
        assert!(check(&h, Term(0)).is_err());
    }

    #[test]
    fn guards_by_reign_not_by_version_are_allowed() {
        // DynamoDB-like: a renewal moved the version, a release with the older version of
        // the same reign is accepted. A release naming another term is not.
        let h = vec![
            e(0, 0, 1, acq("a", 1, Expect::Absent, 0), RegRet::Ok(Some(Version(5)))),
            e(
                0,
                2,
                3,
                RegOp::Renew { holder: "a".into(), term: Term(1), version: Version(5) },
                RegRet::Ok(Some(Version(6))),
            ),
            e(0, 4, 5, RegOp::Release { holder: "a".into(), term: Term(1), version: Version(5) }, RegRet::Ok(None)),
        ];
        check(&h, Term(0)).unwrap();
        let bad = vec![
            e(0, 0, 1, acq("a", 1, Expect::Absent, 0), RegRet::Ok(Some(Version(5)))),
            e(0, 2, 3, RegOp::Release { holder: "a".into(), term: Term(2), version: Version(5) }, RegRet::Ok(None)),
        ];
        assert!(check(&bad, Term(0)).is_err());
    }

    #[test]
    fn unknown_outcome_may_or_may_not_apply() {
        let applied = vec![
            e(0, 0, u64::MAX, acq("a", 1, Expect::Absent, 0), RegRet::Unknown),
            e(1, 5, 6, RegOp::Read, RegRet::Read(Some(("a".into(), Term(1), Version(5))), Term(1))),
        ];
        check(&applied, Term(0)).unwrap();
        let not_applied = vec![
            e(0, 0, u64::MAX, acq("a", 1, Expect::Absent, 0), RegRet::Unknown),
            e(1, 5, 6, RegOp::Read, RegRet::Read(None, Term(0))),
        ];
        check(&not_applied, Term(0)).unwrap();
    }
}
