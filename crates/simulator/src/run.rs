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
fn converge(w: &mut World, bound: Millis, done: impl Fn(&World) -> bool + Copy) -> Option<Millis> {
    let settle = 3 * w.p.settings.loop_wait;
    let start = w.now;
    while w.now < start + bound {
        let left = start + bound - w.now;
        w.run_until_cond(left, done)?;
        let at = w.now - start;
        if w.run_until_cond(settle, |w| !done(w)).is_none() {
            return Some(at);
        }
    }
    None
}

/// A switchover to a replica that can take it must end with that replica leading. A leader
/// may refuse one while the replica looks unwell for a moment (a read of its own that timed
/// out); like an operator, the check asks again, at most once per loop.
fn final_switchover(w: &mut World, bound: Millis) -> &'static str {
    let Some((from, to)) = w.request_switchover_for_good() else { return "final_switchover_not_allowed" };
    let deadline = w.now + bound;
    let slice = 5 * w.p.settings.loop_wait;
    while w.now < deadline {
        if converge(w, slice.min(deadline - w.now), |w| w.converged() && w.leader() == Some(to)).is_some() {
            return "final_switchover";
        }
        if w.leader() != Some(to) && w.view().switchover.is_none() {
            w.ask_switchover_to(to);
        }
    }
    let (from, to) = (w.nodes[from].name.clone(), w.nodes[to].name.clone());
    not_converged(
        w,
        format!("L1: a switchover from {from} to {to}, asked of the converged cluster, did not end within {bound} ms"),
    );
    "final_switchover_failed"
}

/// The leader's machine stops for good: the rest must converge again.
fn final_failover(w: &mut World, bound: Millis) -> &'static str {
    let Some(gone) = w.stop_leader_for_good() else { return "final_failover_not_allowed" };
    if converge(w, bound, World::converged).is_some() {
        return "final_failover";
    }
    let name = w.nodes[gone].name.clone();
    not_converged(w, format!("L1: no failover within {bound} ms after the leader {name}'s machine stopped for good"));
    "final_failover_failed"
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
    let converged = converge(&mut w, bound, World::converged);
    match converged {
        None => not_converged(&mut w, format!("L1: no lasting convergence within {bound} ms after the faults stopped")),
        // Then two operations every healthy cluster must complete within the same bound:
        // a switchover to a replica that can take it, and a failover once the leader's
        // machine stops for good (a majority heals, not everything), unless the settings
        // forbid one. The coverage counters stay those of the faults (these are in every
        // run), plus each operation's outcome.
        Some(_) => {
            let counters = w.check.counters.clone();
            let switchover = final_switchover(&mut w, bound);
            let failover = match switchover {
                "final_switchover_failed" => "final_failover_not_tried",
                _ => final_failover(&mut w, bound),
            };
            w.check.counters = counters;
            w.check.count(switchover);
            w.check.count(failover);
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
