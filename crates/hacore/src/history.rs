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
        self.forks.iter().find(|f| f.timeline <= f.parent).map(|f| {
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

    /// The current line: every timeline on it with where the line leaves it (None: the
    /// tip), walking the ancestry from the last fork down to `base` as far as the
    /// recorded forks reach. Sorted by timeline; where a (corrupt) history names a
    /// timeline twice on the walk, the occurrence nearest the tip counts.
    fn line(&self, base: Timeline) -> Vec<(Timeline, Option<Lsn>)> {
        let mut on = Vec::with_capacity(self.forks.len() + 2);
        let Some(tip) = self.forks.last() else {
            on.push((base, None));
            return on;
        };
        on.push((tip.timeline, None));
        // The latest fork that created each timeline. Forks are recorded with ever higher
        // timelines, so the list itself is usually sorted by timeline, each fork its
        // timeline's only one; otherwise (a corrupt or hand-edited history) an index
        // sorted for lookup is built.
        let in_order = self.forks.windows(2).all(|w| w[0].timeline < w[1].timeline);
        let mut latest: Vec<(Timeline, usize)> = Vec::new();
        if !in_order {
            latest = self.forks.iter().enumerate().map(|(i, f)| (f.timeline, i)).collect();
            latest.sort_unstable_by_key(|&(t, i)| (t, std::cmp::Reverse(i)));
            latest.dedup_by_key(|e| e.0);
        }
        let creator = |t: Timeline| match in_order {
            true => self.forks.binary_search_by_key(&t, |f| f.timeline).ok(),
            false => latest.binary_search_by_key(&t, |e| e.0).ok().map(|k| latest[k].1),
        };
        let mut child = tip;
        let mut hops = self.forks.len() + 1;
        loop {
            on.push((child.parent, Some(child.lsn)));
            if child.parent == base || hops == 0 {
                break;
            }
            hops -= 1;
            match creator(child.parent) {
                Some(i) => child = &self.forks[i],
                None => break,
            }
        }
        // A well-formed line walks down through ever lower timelines: reversed, it is
        // sorted. Otherwise sort, stably: among equal timelines the walk order stays, and
        // dedup keeps the first.
        if on.windows(2).all(|w| w[0].0 > w[1].0) {
            on.reverse();
            return on;
        }
        on.sort_by_key(|e| e.0);
        on.dedup_by_key(|e| e.0);
        on
    }

    /// Where `line` leaves `timeline` (None: the tip); `Err` when it is not on the line.
    fn line_end(line: &[(Timeline, Option<Lsn>)], timeline: Timeline) -> Result<Option<Lsn>, ()> {
        line.binary_search_by_key(&timeline, |e| e.0).map(|k| line[k].1).map_err(|_| ())
    }

    /// Judges a node's WAL against the current line. `pos` is the end of the node's WAL;
    /// `local` its timeline history file; `base` the cluster's first timeline.
    pub fn lineage(&self, base: Timeline, pos: WalPosition, local: &[TimelineSwitch]) -> Lineage {
        if pos.timeline < base {
            return Lineage::Diverged;
        }
        if let Some(judged) = self.lineage_ordered(base, pos, local) {
            return judged;
        }
        self.lineage_by_line(base, pos, local)
    }

    /// [`History::lineage`] without building the line, for what the store and PostgreSQL
    /// hold unless corrupted: forks recorded in timeline order, each to a higher timeline
    /// than its parent (so the walk from the tip goes down through ever lower timelines),
    /// and a timeline history file in timeline order. The line is walked once, from the
    /// tip down, beside the node's switches taken newest first. None when the inputs are
    /// not so ordered.
    fn lineage_ordered(&self, base: Timeline, pos: WalPosition, local: &[TimelineSwitch]) -> Option<Lineage> {
        let forks = &self.forks[..];
        let ordered = forks.windows(2).all(|w| w[0].timeline < w[1].timeline)
            && forks.iter().all(|f| f.parent < f.timeline)
            && local.windows(2).all(|w| w[0].timeline < w[1].timeline);
        if !ordered {
            return None;
        }
        let mut pos_pending = true;
        let mut switches = local.iter().rev().take_while(|s| s.timeline >= base).peekable();
        // Each entry of the line, highest timeline first: whether it leaves no query behind.
        let mut visit = |timeline: Timeline, end: Option<Lsn>| {
            if pos_pending {
                if pos.timeline > timeline || (pos.timeline == timeline && end.is_some_and(|e| pos.lsn > e)) {
                    return false;
                }
                pos_pending = pos.timeline != timeline;
            }
            match switches.peek() {
                Some(sw) if sw.timeline > timeline => false,
                Some(sw) if sw.timeline == timeline => end == Some(sw.lsn) && switches.next().is_some(),
                _ => true,
            }
        };
        let along = match forks.last() {
            None => visit(base, None),
            Some(tip) => {
                let mut ok = visit(tip.timeline, None);
                let mut child = tip;
                while ok {
                    ok = visit(child.parent, Some(child.lsn));
                    if child.parent == base {
                        break;
                    }
                    match forks.binary_search_by_key(&child.parent, |f| f.timeline) {
                        Ok(i) => child = &forks[i],
                        Err(_) => break,
                    }
                }
                ok
            }
        };
        Some(match along && !pos_pending && switches.peek().is_none() {
            true => Lineage::Along,
            false => Lineage::Diverged,
        })
    }

    /// [`History::lineage`] over the line built in full: any history, corrupt ones included.
    fn lineage_by_line(&self, base: Timeline, pos: WalPosition, local: &[TimelineSwitch]) -> Lineage {
        let line = self.line(base);
        match Self::line_end(&line, pos.timeline) {
            Err(()) => return Lineage::Diverged,
            Ok(Some(end)) if pos.lsn > end => return Lineage::Diverged,
            Ok(_) => {}
        }
        // Contents: every switch in the node's own history must be a fork of the line.
        for sw in local.iter().filter(|s| s.timeline >= base) {
            match Self::line_end(&line, sw.timeline) {
                Ok(Some(end)) if end == sw.lsn => {}
                _ => return Lineage::Diverged,
            }
        }
        Lineage::Along
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The plain walk from the tip, one query at a time: the reference `line` must agree
    /// with on every history, corrupt ones (cycles, gaps, repeated timelines) included.
    fn walk(h: &History, base: Timeline, timeline: Timeline) -> Result<Option<Lsn>, ()> {
        let Some(tip) = h.forks.last() else {
            return if timeline == base { Ok(None) } else { Err(()) };
        };
        if timeline == tip.timeline {
            return Ok(None);
        }
        let mut child = tip;
        let mut hops = h.forks.len() + 1;
        loop {
            if child.parent == timeline {
                return Ok(Some(child.lsn));
            }
            if child.parent == base || hops == 0 {
                return Err(());
            }
            hops -= 1;
            match h.forks.iter().rev().find(|f| f.timeline == child.parent) {
                Some(f) => child = f,
                None => return Err(()),
            }
        }
    }

    proptest! {
        #[test]
        fn line_agrees_with_the_walk(
            raw in proptest::collection::vec((0u32..8, 0u64..5, 0u32..8), 0..10),
            base in 0u32..3,
        ) {
            let h = History::new(raw.iter().map(|&(p, l, t)| fork(p, l, t, 1)).collect());
            let line = h.line(Timeline(base));
            for t in 0..9 {
                prop_assert_eq!(History::line_end(&line, Timeline(t)), walk(&h, Timeline(base), Timeline(t)));
            }
        }

        /// The same for histories recorded in timeline order (what the store holds unless
        /// corrupted), which `line` looks up without an index: parents anywhere, cycles
        /// through higher timelines included.
        #[test]
        fn line_of_an_ordered_history_agrees_with_the_walk(
            raw in proptest::collection::btree_map(0u32..12, (0u32..12, 0u64..5), 0..10),
            base in 0u32..3,
        ) {
            let h = History::new(raw.iter().map(|(&t, &(p, l))| fork(p, l, t, 1)).collect());
            let line = h.line(Timeline(base));
            for t in 0..13 {
                prop_assert_eq!(History::line_end(&line, Timeline(t)), walk(&h, Timeline(base), Timeline(t)));
            }
        }
    }

    proptest! {
        /// The walk without a line judges as the line does: ordered histories with parents
        /// anywhere (what it refuses falls back), switches in any order, any position.
        #[test]
        fn ordered_lineage_agrees_with_the_line(
            raw in proptest::collection::btree_map(0u32..12, (0u32..12, 0u64..4), 0..10),
            local in proptest::collection::vec((0u32..12, 0u64..4), 0..5),
            sorted in any::<bool>(),
            base in 0u32..3,
            at in (0u32..13, 0u64..5),
        ) {
            let h = History::new(raw.iter().map(|(&t, &(p, l))| fork(p, l, t, 1)).collect());
            let mut local: Vec<TimelineSwitch> = local.iter().map(|&(t, l)| sw(t, l)).collect();
            if sorted {
                local.sort_by_key(|s| s.timeline);
                local.dedup_by_key(|s| s.timeline);
            }
            let (base, p) = (Timeline(base), pos(at.0, at.1));
            let by_line = if p.timeline < base { Lineage::Diverged } else { h.lineage_by_line(base, p, &local) };
            prop_assert_eq!(h.lineage(base, p, &local), by_line);
        }
    }

    /// The fast walk is taken on what the store and PostgreSQL normally hold.
    #[test]
    fn an_ordered_history_is_judged_without_a_line() {
        let h = History::new(vec![fork(1, 100, 2, 2), fork(1, 80, 3, 3), fork(3, 300, 4, 4)]);
        let local = [sw(1, 80), sw(3, 300)];
        assert_eq!(h.lineage_ordered(Timeline(1), pos(4, 900), &local), Some(Lineage::Along));
        assert_eq!(h.lineage_ordered(Timeline(1), pos(2, 150), &[sw(1, 100)]), Some(Lineage::Diverged));
        assert_eq!(h.lineage_ordered(Timeline(1), pos(3, 301), &[sw(1, 80)]), Some(Lineage::Diverged));
        assert_eq!(h.lineage_ordered(Timeline(1), pos(3, 300), &[sw(1, 80)]), Some(Lineage::Along));
        // Out of order: the line is built.
        assert_eq!(h.lineage_ordered(Timeline(1), pos(4, 900), &[sw(3, 300), sw(1, 80)]), None);
        let cycle = History::new(vec![fork(3, 100, 2, 1), fork(2, 100, 3, 2)]);
        assert_eq!(cycle.lineage_ordered(Timeline(1), pos(1, 1), &[]), None);
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
