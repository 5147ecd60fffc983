//! One run: a fault phase with the seed's schedule, then a liveness phase in which every
//! fault ends and the cluster must converge (one writable primary, every machine
//! streaming from it) within a bound derived from the settings (L1). Then the leader's
//! machine stops for good and the rest must fail over within the same bound.

use crate::params::Params;
use crate::world::World;
use hacore::Millis;
use std::collections::BTreeMap;

/// What a run found.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// One line describing the run.
    pub describe: String,
    /// Violations (time, description), the first few.
    pub violations: Vec<(Millis, String)>,
    /// All violations.
    pub violation_count: u64,
    /// Coverage counters.
    pub counters: BTreeMap<&'static str, u64>,
    /// Hash of the trace.
    pub trace_hash: u64,
    /// Simulated time (ms).
    pub simulated: Millis,
    /// Steps taken by all nodes.
    pub steps: u64,
    /// How long convergence took after the faults stopped.
    pub converged_after: Option<Millis>,
    /// The bound it had to meet.
    pub liveness_bound: Millis,
    /// Acknowledged writes lost at asynchronous failovers (reported, not a violation).
    pub async_lost: u64,
}

impl RunReport {
    /// Whether the run was clean.
    pub fn ok(&self) -> bool {
        self.violation_count == 0
    }
}

/// The L1 bound for these parameters: leases held at the heal expire (an etcd that
/// recovers extends them by a ttl), an election (stragglers waited for up to a ttl),
/// promotion, then every other node rewinds or clones and starts.
pub fn liveness_bound(p: &Params) -> Millis {
    let s = &p.settings;
    let d = &p.durations;
    3 * s.ttl + 4 * s.loop_wait + 2 * s.retry_timeout + d.promote + 3 * d.start + d.clone + d.rewind + 10_000
}

/// L1: within `bound`, a converged state that then lasts (no flapping); when it began,
/// counted from now. Residue of the fault phase (a lease that was running out at the heal)
/// may break an early one.
fn converge(w: &mut World, bound: Millis) -> Option<Millis> {
    let settle = 3 * w.p.settings.loop_wait;
    let start = w.now;
    while w.now < start + bound {
        let left = start + bound - w.now;
        w.run_until_cond(left, |w| w.converged())?;
        let at = w.now - start;
        if w.run_until_cond(settle, |w| !w.converged()).is_none() {
            return Some(at);
        }
    }
    None
}

/// Records an L1 violation with every node's state.
fn not_converged(w: &mut World, what: String) {
    let state: Vec<String> = w
        .nodes
        .iter()
        .map(|n| match n.up {
            true => format!("{}: {} {:?} ({})", n.name, n.status.reason, n.status.role, n.status.detail),
            false => format!("{}: machine down", n.name),
        })
        .collect();
    let invisible = w.invisible_members();
    let invisible = if invisible.is_empty() {
        String::new()
    } else {
        format!("; member record missing, stale or not kept alive: {}", invisible.join(", "))
    };
    let msg = format!("{what}: {}{invisible}", state.join("; "));
    w.check.violation(w.now, msg.clone());
    w.trace.event(w.now, "violation", &[("what", &msg)]);
}

/// Runs `p` to the end and reports; also returns the world for inspection.
pub fn run(p: Params) -> (RunReport, World) {
    let duration = p.duration;
    let bound = liveness_bound(&p);
    let mut w = World::new(p);
    w.run_until(duration);
    w.heal();
    let converged = converge(&mut w, bound);
    match converged {
        None => not_converged(&mut w, format!("L1: no lasting convergence within {bound} ms after the faults stopped")),
        // A majority heals, not everything: the leader's machine then stops for good, and
        // the rest must fail over within the same bound (unless the settings forbid it).
        // The coverage counters stay those of the faults (this failover is in every run).
        Some(_) => {
            let counters = w.check.counters.clone();
            let outcome = match w.stop_leader_for_good() {
                None => "final_failover_not_allowed",
                Some(gone) => {
                    let name = w.nodes[gone].name.clone();
                    match converge(&mut w, bound) {
                        Some(_) => "final_failover",
                        None => {
                            let what = format!(
                                "L1: no failover within {bound} ms after the leader {name}'s machine stopped for good"
                            );
                            not_converged(&mut w, what);
                            "final_failover_failed"
                        }
                    }
                }
            };
            w.check.counters = counters;
            w.check.count(outcome);
        }
    }
    let report = RunReport {
        seed: w.p.seed,
        describe: w.p.describe(),
        violations: w.check.violations.clone(),
        violation_count: w.check.violation_count,
        counters: w.check.counters.clone(),
        trace_hash: w.trace.hash(),
        simulated: w.now,
        steps: w.check.steps,
        converged_after: converged,
        liveness_bound: bound,
        async_lost: w.check.async_lost,
    };
    (report, w)
}
