//! Invariant violations and coverage counters of one run.
//!
//! The checks themselves run inside the world after every event (S1), when a node becomes
//! writable (S2), starts promoting (S3, async loss bound), follows or starts (S4), writes
//! to the store (S5), takes a new term (stale primary), and in the liveness phase (L1).

use crate::params::Params;
use hacore::Millis;
use std::collections::BTreeMap;

/// Coverage counters every sweep must see above zero, with the minimum per sweep.
pub const REQUIRED_COVERAGE: &[(&str, u64)] = &[
    ("failover", 1),
    ("switchover", 1),
    ("self_fencing", 1),
    ("guard_fired", 1),
    ("failsafe_held_primary", 1),
    ("rewind", 1),
    ("reclone", 1),
    ("election_lost_to_more_advanced", 1),
    ("dcs_indeterminate", 1),
    ("dcs_write_outcome_unknown", 1),
    ("hung_primary_stepped_down", 1),
    ("failover_lost_async_writes", 1),
];

/// What one run found.
#[derive(Clone, Debug, Default)]
pub struct Checker {
    /// (time, description) of every violation, in order (the first few).
    pub violations: Vec<(Millis, String)>,
    /// How many violations there were in all.
    pub violation_count: u64,
    /// Coverage counters.
    pub counters: BTreeMap<&'static str, u64>,
    /// Steps taken by all nodes.
    pub steps: u64,
    /// Acknowledged writes lost at failovers (asynchronous mode only; reported, bounded).
    pub async_lost: u64,
}

impl Checker {
    /// A checker for a run with parameters `p`.
    pub fn new(_p: &Params) -> Checker {
        Checker::default()
    }

    /// Records a violation; returns whether it was kept (the first 20 are).
    pub fn violation(&mut self, t: Millis, what: String) -> bool {
        self.violation_count += 1;
        if self.violations.len() < 20 {
            self.violations.push((t, what));
            true
        } else {
            false
        }
    }

    /// Increments a coverage counter.
    pub fn count(&mut self, what: &'static str) {
        *self.counters.entry(what).or_default() += 1;
    }

    /// Adds to a coverage counter (nothing is recorded for 0).
    pub fn add(&mut self, what: &'static str, n: u64) {
        if n > 0 {
            *self.counters.entry(what).or_default() += n;
        }
    }

    /// A counter's value.
    pub fn get(&self, what: &str) -> u64 {
        self.counters.get(what).copied().unwrap_or(0)
    }

    /// Whether the run was clean.
    pub fn ok(&self) -> bool {
        self.violation_count == 0
    }
}
