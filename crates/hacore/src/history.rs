//! Timeline history (S4): the forks a cluster has taken, as published in the DCS, and
//! the test of whether a node's WAL lies along them.
//!
//! Nodes compare history *contents* (parent timeline and fork LSN), never timeline
//! numbers alone: two nodes that each promoted to "timeline 3" from different points
//! are on different branches.

use crate::types::{Lsn, NodeName, Term, Timeline, WalPosition};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Why a fork was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForkCause {
    /// Automatic failover after the leader was lost.
    Failover,
    /// Planned switchover.
    Switchover,
    /// Operator-requested failover to a named node.
    ManualFailover,
    /// A standby cluster's upstream switched timelines (its own failover), mirrored here
    /// by the standby leader so members can judge their WAL against it (schema 3).
    Upstream,
    /// A standby cluster was promoted to a primary cluster (schema 3).
    ClusterPromotion,
}

/// One fork recorded by a new leader *before* it promotes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fork {
    /// Timeline the new one branches from.
    pub parent: Timeline,
    /// LSN on `parent` where the branch starts (end of the promoted node's WAL).
    pub lsn: Lsn,
    /// The new timeline.
    pub timeline: Timeline,
    /// Term of the leader that took the fork.
    pub term: Term,
    /// Node that took the fork.
    pub node: NodeName,
    /// Why.
    pub cause: ForkCause,
    /// Wall-clock time in ms since the epoch, as data for people (never compared).
    pub wall_time_ms: u64,
}

/// The published history: forks in the order they were recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Forks, oldest first. Superseded branches stay listed; the current line is the
    /// ancestry of the last fork's timeline. Shared, so that a copy of a view or of the
    /// stored value does not copy every fork (change it with [`Arc::make_mut`]); stored
    /// as a plain list.
    pub forks: Arc<Vec<Fork>>,
}

/// One entry of PostgreSQL's timeline history file: `timeline` ended at `lsn` and the
/// next timeline in the file (or the current one) began there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineSwitch {
    /// The ancestor timeline.
    pub timeline: Timeline,
    /// Where it was left.
    pub lsn: Lsn,
}

/// Whether a node's WAL lies along the published history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lineage {
    /// Every record the node has is on the current line: it may follow the leader and,
    /// if otherwise eligible, be promoted.
    Along,
    /// The node has WAL the current line does not (or a timeline it does not know): it
    /// must rewind or re-clone before it streams, and may never lead.
    Diverged,
}

impl History {
    /// A history of these forks.
    pub fn new(forks: Vec<Fork>) -> History {
        History { forks: Arc::new(forks) }
    }

    /// Timeline the next fork should create: above every timeline anyone has seen.
    pub fn next_timeline(&self, base: Timeline, current: Timeline) -> Timeline {
        let max = self.forks.iter().map(|f| f.timeline).max().unwrap_or(base).max(base).max(current);
        Timeline(max.0.saturating_add(1))
    }

    /// What makes this history unusable, if anything: a fork that does not go to a higher
    /// timeline. PostgreSQL numbers a new timeline above every one it knows, so none of
    /// its forks does, and a cycle in the ancestry needs one; such a history was written
    /// by hand or by a broken tool, and no member's WAL can be judged against it.
    pub fn fault(&self) -> Option<String> {
        self.unusable_fork().map(|f| {
            format!(
                "its fork to timeline {} names timeline {} as its parent (a fork goes to a higher timeline)",
                f.timeline, f.parent
            )
        })
    }

    /// The line a node's own timeline history describes (`local`, the switches from
    /// `base` on, ending on `timeline`), as forks: what a primary writes over a history
    /// that is unusable. Each fork is attributed to `node` in term 0, which no leader
    /// holds: who forked when, and branches the line left behind, are not in a timeline
    /// history file.
    pub fn from_local(
        local: &[TimelineSwitch],
        timeline: Timeline,
        base: Timeline,
        node: &NodeName,
        wall_time_ms: u64,
    ) -> History {
        let on: Vec<&TimelineSwitch> = local.iter().filter(|s| s.timeline >= base && s.timeline < timeline).collect();
        let forks = on
            .iter()
            .enumerate()
            .map(|(i, s)| Fork {
                parent: s.timeline,
                lsn: s.lsn,
                timeline: on.get(i + 1).map_or(timeline, |n| n.timeline),
                term: Term(0),
                node: node.clone(),
                cause: ForkCause::Failover,
                wall_time_ms,
            })
            .collect();
        History::new(forks)
    }

    /// The first fork that does not go to a higher timeline ([`History::fault`]).
    fn unusable_fork(&self) -> Option<&Fork> {
        self.forks.iter().find(|f| f.timeline <= f.parent)
    }

    /// The promotion fork recorded by `node` in `term`, if any. A standby cluster's leader
    /// also records its upstream's timeline switches (cause [`ForkCause::Upstream`]) in its
    /// term; those are not its own promotion and never count here.
    pub fn fork_by(&self, node: &str, term: Term) -> Option<&Fork> {
        self.forks.iter().rev().find(|f| f.term == term && f.node == node && f.cause != ForkCause::Upstream)
    }

    /// Index of [`History::fork_by`]'s fork.
    pub fn fork_index_by(&self, node: &str, term: Term) -> Option<usize> {
        self.forks.iter().rposition(|f| f.term == term && f.node == node && f.cause != ForkCause::Upstream)
    }

    /// Judges a node's WAL against the current line: the ancestry of the last fork's
    /// timeline, walked down to `base` as far as the recorded forks reach, each timeline
    /// created by the last fork recorded before the one that branched from it (a timeline
    /// exists before anything forks from it). `pos` is the end of the node's WAL; `local`
    /// its timeline history file; `base` the cluster's first timeline. Along when `pos`
    /// lies on the line, not past where the line leaves its timeline, and every switch of
    /// `local` from `base` on is a fork of the line (same timeline, same LSN). A history
    /// with a fork that does not go up ([`History::fault`]) is unusable: nothing is along
    /// it.
    pub fn lineage(&self, base: Timeline, pos: WalPosition, local: &[TimelineSwitch]) -> Lineage {
        let forks = &self.forks[..];
        if pos.timeline < base || self.unusable_fork().is_some() {
            return Lineage::Diverged;
        }
        // Every fork goes up, so the walk from the tip meets ever lower timelines, and
        // each creator lies before its child in the list: the line is judged in one pass
        // down the list, highest timeline first, beside the node's switches taken the
        // same way (a history file lists them in timeline order).
        let mut switches = std::borrow::Cow::Borrowed(local);
        if !local.windows(2).all(|w| w[0].timeline <= w[1].timeline) {
            switches.to_mut().sort_by_key(|s| s.timeline);
        }
        let mut switches = switches.iter().rev().take_while(|s| s.timeline >= base).peekable();
        let mut pos_pending = true;
        // One entry of the line: `timeline`, left at `end` (None: the tip). False when a
        // query above it found no entry, or this one contradicts the node's WAL.
        let mut visit = |timeline: Timeline, end: Option<Lsn>| {
            if pos_pending {
                if pos.timeline > timeline || (pos.timeline == timeline && end.is_some_and(|e| pos.lsn > e)) {
                    return false;
                }
                pos_pending = pos.timeline != timeline;
            }
            while let Some(sw) = switches.next_if(|sw| sw.timeline >= timeline) {
                if sw.timeline > timeline || end != Some(sw.lsn) {
                    return false;
                }
            }
            true
        };
        let along = match forks.split_last() {
            None => visit(base, None),
            Some((tip, mut before)) => {
                let mut child = tip;
                let mut along = visit(tip.timeline, None);
                while along {
                    along = visit(child.parent, Some(child.lsn));
                    if child.parent == base {
                        break;
                    }
                    match before.iter().rposition(|f| f.timeline == child.parent) {
                        Some(i) => (child, before) = (&before[i], &before[..i]),
                        None => break,
                    }
                }
                along
            }
        };
        match along && !pos_pending && switches.peek().is_none() {
            true => Lineage::Along,
            false => Lineage::Diverged,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The plain walk from the tip, one query at a time, each timeline created by the last
    /// fork recorded before its child: where the line leaves `timeline` (None: the tip),
    /// `Err` when it is not on the line.
    fn walk(h: &History, base: Timeline, timeline: Timeline) -> Result<Option<Lsn>, ()> {
        let Some(tip) = h.forks.last() else {
            return if timeline == base { Ok(None) } else { Err(()) };
        };
        if timeline == tip.timeline {
            return Ok(None);
        }
        let mut k = h.forks.len() - 1;
        loop {
            let child = &h.forks[k];
            if child.parent == timeline {
                return Ok(Some(child.lsn));
            }
            if child.parent == base {
                return Err(());
            }
            match (0..k).rev().find(|&i| h.forks[i].timeline == child.parent) {
                Some(i) => k = i,
                None => return Err(()),
            }
        }
    }

    /// The reference `lineage` must agree with: every query walked on its own.
    fn reference(h: &History, base: Timeline, p: WalPosition, local: &[TimelineSwitch]) -> Lineage {
        if p.timeline < base || h.fault().is_some() {
            return Lineage::Diverged;
        }
        match walk(h, base, p.timeline) {
            Err(()) => return Lineage::Diverged,
            Ok(Some(end)) if p.lsn > end => return Lineage::Diverged,
            Ok(_) => {}
        }
        for s in local.iter().filter(|s| s.timeline >= base) {
            match walk(h, base, s.timeline) {
                Ok(Some(end)) if end == s.lsn => {}
                _ => return Lineage::Diverged,
            }
        }
        Lineage::Along
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4_096, .. ProptestConfig::default() })]

        /// Usable histories with forks in any order (a parent's creator recorded before or
        /// after its child, repeated timelines), switches in any order, repeated or not,
        /// any position.
        #[test]
        fn lineage_agrees_with_the_walk(
            raw in proptest::collection::vec((0u32..7, 0u32..3, 0u64..4), 0..10),
            local in proptest::collection::vec((0u32..10, 0u64..4), 0..5),
            base in 0u32..3,
            at in (0u32..11, 0u64..5),
        ) {
            let h = History::new(raw.iter().map(|&(p, up, l)| fork(p, l, p + 1 + up, 1)).collect());
            let local: Vec<TimelineSwitch> = local.iter().map(|&(t, l)| sw(t, l)).collect();
            let (base, p) = (Timeline(base), pos(at.0, at.1));
            prop_assert_eq!(h.lineage(base, p, &local), reference(&h, base, p, &local));
        }

        /// The same for what the store and PostgreSQL hold unless corrupted: forks in
        /// timeline order, each going up, and a history file in timeline order, often
        /// along the line, with stray switches whose LSNs meet the line's.
        #[test]
        fn lineage_of_an_ordered_history_agrees_with_the_walk(
            raw in proptest::collection::btree_map(1u32..12, (0u32..11, 0u64..4), 0..10),
            extra in proptest::collection::vec((0u32..12, 0u64..4), 0..3),
            base in 0u32..3,
            at in (0u32..13, 0u64..5),
        ) {
            let forks: Vec<Fork> = raw.iter().map(|(&t, &(p, l))| fork(p.min(t - 1), l, t, 1)).collect();
            let mut local: Vec<TimelineSwitch> = forks.iter().map(|f| sw(f.parent.0, f.lsn.0)).collect();
            local.extend(extra.iter().map(|&(t, l)| sw(t, l)));
            local.sort_by_key(|s| s.timeline);
            let h = History::new(forks);
            let (base, p) = (Timeline(base), pos(at.0, at.1));
            prop_assert_eq!(h.lineage(base, p, &local), reference(&h, base, p, &local));
        }

        /// Nothing is along an unusable history.
        #[test]
        fn nothing_is_along_an_unusable_history(
            raw in proptest::collection::vec((0u32..8, 0u64..4, 0u32..8), 1..6),
            at in (1u32..9, 0u64..5),
        ) {
            let mut forks: Vec<Fork> = raw.iter().map(|&(p, l, t)| fork(p, l, t, 1)).collect();
            let k = forks.len() / 2;
            forks[k].timeline = forks[k].parent;
            let h = History::new(forks);
            let local: Vec<TimelineSwitch> = h.forks.iter().map(|f| sw(f.parent.0, f.lsn.0)).collect();
            prop_assert_eq!(h.lineage(Timeline(1), pos(at.0, at.1), &local), Lineage::Diverged);
        }
    }

    #[test]
    fn forks_out_of_order_and_switches_out_of_order_are_judged_alike() {
        let ordered = History::new(vec![fork(1, 100, 2, 2), fork(1, 80, 3, 3), fork(3, 300, 4, 4)]);
        let shuffled = History::new(vec![fork(1, 100, 2, 2), fork(3, 300, 4, 4), fork(1, 80, 3, 3)]);
        let local = [sw(1, 80), sw(3, 300)];
        assert_eq!(ordered.lineage(Timeline(1), pos(4, 900), &local), Lineage::Along);
        assert_eq!(ordered.lineage(Timeline(1), pos(4, 900), &[sw(3, 300), sw(1, 80)]), Lineage::Along);
        assert_eq!(ordered.lineage(Timeline(1), pos(3, 300), &[sw(1, 80)]), Lineage::Along);
        assert_eq!(ordered.lineage(Timeline(1), pos(3, 301), &[sw(1, 80)]), Lineage::Diverged);
        assert_eq!(ordered.lineage(Timeline(1), pos(2, 150), &[sw(1, 100)]), Lineage::Diverged);
        // Listed last, the fork to 3 is the tip: 4 is off the line.
        assert_eq!(shuffled.lineage(Timeline(1), pos(3, 500), &[sw(1, 80)]), Lineage::Along);
        assert_eq!(shuffled.lineage(Timeline(1), pos(4, 900), &local), Lineage::Diverged);
        // A switch repeated with another LSN is not along.
        assert_eq!(ordered.lineage(Timeline(1), pos(3, 200), &[sw(1, 80), sw(1, 90)]), Lineage::Diverged);
    }

    fn fork(parent: u32, lsn: u64, timeline: u32, term: u64) -> Fork {
        Fork {
            parent: Timeline(parent),
            lsn: Lsn(lsn),
            timeline: Timeline(timeline),
            term: Term(term),
            node: "n".into(),
            cause: ForkCause::Failover,
            wall_time_ms: 0,
        }
    }
    fn pos(t: u32, l: u64) -> WalPosition {
        WalPosition { timeline: Timeline(t), lsn: Lsn(l) }
    }
    fn sw(t: u32, l: u64) -> TimelineSwitch {
        TimelineSwitch { timeline: Timeline(t), lsn: Lsn(l) }
    }

    #[test]
    fn a_fork_that_does_not_go_up_makes_the_history_unusable() {
        assert_eq!(History::default().fault(), None);
        assert_eq!(History::new(vec![fork(1, 100, 2, 2), fork(2, 300, 3, 3)]).fault(), None);
        // A cycle: 3 -> 2 after 2 -> 3.
        let cycle = History::new(vec![fork(1, 100, 2, 2), fork(2, 300, 3, 3), fork(3, 300, 2, 3)]);
        assert!(cycle.fault().is_some_and(|f| f.contains("fork to timeline 2 names timeline 3")));
        assert!(History::new(vec![fork(2, 100, 2, 2)]).fault().is_some());
    }

    #[test]
    fn the_history_rebuilt_from_a_timeline_history_holds_its_line() {
        let local = [sw(1, 100), sw(2, 300), sw(4, 500)];
        let h = History::from_local(&local, Timeline(5), Timeline(1), &"n1".into(), 7);
        let made: Vec<(u32, u64, u32)> = h.forks.iter().map(|f| (f.parent.0, f.lsn.0, f.timeline.0)).collect();
        assert_eq!(made, [(1, 100, 2), (2, 300, 4), (4, 500, 5)]);
        assert!(h.forks.iter().all(|f| f.term == Term(0) && f.node == "n1" && f.wall_time_ms == 7));
        assert_eq!(h.fault(), None);
        // The node itself, and one behind it on the line, are along it; one past a fork is not.
        assert_eq!(h.lineage(Timeline(1), pos(5, 900), &local), Lineage::Along);
        assert_eq!(h.lineage(Timeline(1), pos(4, 450), &[sw(1, 100), sw(2, 300)]), Lineage::Along);
        assert_eq!(h.lineage(Timeline(1), pos(2, 400), &[sw(1, 100)]), Lineage::Diverged);
        // Switches below the cluster's first timeline are not the cluster's.
        let h = History::from_local(&local, Timeline(5), Timeline(2), &"n1".into(), 7);
        assert_eq!(h.forks.len(), 2);
        assert_eq!(History::from_local(&[], Timeline(1), Timeline(1), &"n1".into(), 7).forks.len(), 0);
    }

    #[test]
    fn empty_history_accepts_base_only() {
        let h = History::default();
        assert_eq!(h.lineage(Timeline(1), pos(1, 500), &[]), Lineage::Along);
        assert_eq!(h.lineage(Timeline(1), pos(2, 500), &[sw(1, 100)]), Lineage::Diverged);
    }

    #[test]
    fn parent_before_fork_is_along_after_is_diverged() {
        let h = History::new(vec![fork(1, 100, 2, 2)]);
        assert_eq!(h.lineage(Timeline(1), pos(1, 100), &[]), Lineage::Along);
        assert_eq!(h.lineage(Timeline(1), pos(1, 101), &[]), Lineage::Diverged);
        assert_eq!(h.lineage(Timeline(1), pos(2, 900), &[sw(1, 100)]), Lineage::Along);
    }

    #[test]
    fn same_timeline_number_different_fork_point_is_diverged() {
        let h = History::new(vec![fork(1, 100, 2, 2)]);
        assert_eq!(h.lineage(Timeline(1), pos(2, 900), &[sw(1, 90)]), Lineage::Diverged);
    }

    #[test]
    fn superseded_branch_is_diverged() {
        // 1 -> 2 at 100 (dead branch), then 1 -> 3 at 80.
        let h = History::new(vec![fork(1, 100, 2, 2), fork(1, 80, 3, 3)]);
        assert_eq!(h.lineage(Timeline(1), pos(2, 150), &[sw(1, 100)]), Lineage::Diverged);
        assert_eq!(h.lineage(Timeline(1), pos(1, 80), &[]), Lineage::Along);
        assert_eq!(h.lineage(Timeline(1), pos(1, 90), &[]), Lineage::Diverged);
        assert_eq!(h.lineage(Timeline(1), pos(3, 90), &[sw(1, 80)]), Lineage::Along);
        assert_eq!(h.next_timeline(Timeline(1), Timeline(3)), Timeline(4));
    }

    #[test]
    fn deep_chain() {
        let h = History::new(vec![fork(1, 100, 2, 2), fork(2, 200, 3, 3), fork(3, 300, 4, 4)]);
        assert_eq!(h.lineage(Timeline(1), pos(2, 199), &[sw(1, 100)]), Lineage::Along);
        assert_eq!(h.lineage(Timeline(1), pos(4, 999), &[sw(1, 100), sw(2, 200), sw(3, 300)]), Lineage::Along);
        assert_eq!(h.lineage(Timeline(1), pos(4, 999), &[sw(1, 100), sw(2, 201), sw(3, 300)]), Lineage::Diverged);
    }

    #[test]
    fn base_above_one_ignores_older_switches() {
        let h = History::default();
        assert_eq!(h.lineage(Timeline(5), pos(5, 10), &[sw(3, 1), sw(4, 2)]), Lineage::Along);
        assert_eq!(h.lineage(Timeline(5), pos(4, 10), &[]), Lineage::Diverged);
    }

    #[test]
    fn cyclic_garbage_terminates() {
        let h = History::new(vec![fork(3, 100, 2, 1), fork(2, 100, 3, 2)]);
        assert_eq!(h.lineage(Timeline(1), pos(1, 1), &[]), Lineage::Diverged);
    }
}
