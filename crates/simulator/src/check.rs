//! Invariant violations and coverage counters of one run.
//!
//! The checks themselves run inside the world after every event (S1), when a node becomes
//! writable (S2), starts promoting (S3, async loss bound), follows or starts (S4), writes
//! to the store (S5), takes a new term (stale primary), and in the liveness phase (L1).

use crate::params::Params;
use hacore::Millis;
use std::collections::BTreeMap;

/// Coverage a sweep must reach: each counter must be non-zero in at least this share of
/// the runs (percent). Set at about half of what a 10,000-seed sweep reached (see
/// docs/simulator.md), so that a timid nemesis, or a change that stops a dangerous path
/// from being exercised, fails `simulator sweep --min-coverage`.
pub const REQUIRED_COVERAGE: &[(&str, u32)] = &[
    ("failover", 45),
    ("switchover", 40),
    ("manual_failover", 15),
    ("switchover_aborted", 10),
    ("self_fencing", 10),
    ("primary_fenced", 45),
    ("guard_fired", 45),
    ("fence_executed", 25),
    ("failsafe_held_primary", 20),
    ("primary_rode_out_dcs_trouble", 45),
    ("rewind", 45),
    ("reclone", 30),
    ("election_lost_to_more_advanced", 35),
    ("ineligible_diverged", 15),
    ("ineligible_lagging", 1),
    ("dcs_indeterminate", 45),
    ("dcs_write_outcome_unknown", 40),
    ("hung_primary_stepped_down", 20),
    ("primary_start_gave_up", 3),
    ("failover_lost_async_writes", 20),
    ("pg_operation_failed", 20),
    ("fault_pause_longer_than_ttl", 25),
    ("writes_unknown", 25),
    ("restart", 30),
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
