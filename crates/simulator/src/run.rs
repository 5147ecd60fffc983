//! One run: a fault phase with the seed's schedule, then a liveness phase in which every
//! fault ends and the cluster must converge (one writable primary, every machine
//! streaming from it) within a bound derived from the settings (L1). Then the leader's
//! machine stops for good and the rest must fail over within the same bound.

use crate::params::{DcsMode, Params};
use crate::world::{Shown, World};
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
    /// The final switchover's write gap: from the old primary's last writable instant to
    /// the new primary's first.
    pub switchover_gap: Option<Millis>,
    /// The final failover's write gap: from the leader's machine stopping to the next
    /// writable primary.
    pub failover_gap: Option<Millis>,
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

/// The longest write gap the final failover may take (L1's bound per backend, for a
/// leader whose machine stops on a healthy network): its lease runs out (a ttl from its
/// last renewal), the others notice (etcd: the watch; DynamoDB: a poll to read the last
/// version and one more to see it a ttl old), the election's store round trips (reads,
/// the acquire, the fork record), then replay and promotion.
pub fn failover_gap_bound(p: &Params) -> Millis {
    let s = &p.settings;
    let notice = match p.mode {
        DcsMode::Etcd => s.loop_wait,
        DcsMode::Dynamo => 2 * s.loop_wait,
    };
    // A slow store (`slow_store`): the new leader's four steps after its acquire (the wait
    // for a fresh grant, the WAL receiver's stop, the wait for it, the fork and promotion)
    // each renew first.
    let round_trips = 5 + renewals_first(p, 4);
    s.ttl + notice + 2 * round_trips * p.dcs_latency.1 + promotion(p) + 1_000
}

/// The longest write gap the final switchover may take: the old primary stops fast (the
/// shutdown checkpoint reaches the candidate), a loop of the old leader, the transfer, the
/// candidate's claim and fork record, replay and promotion; eight store round trips (with
/// a store slower than the loop every step also renews the lease first).
pub fn switchover_gap_bound(p: &Params) -> Millis {
    let d = &p.durations;
    // With every round trip longer than the loop, each step on the path (the old leader's
    // stop and transfer; the candidate's claim, its wait for a fresh grant, the WAL
    // receiver's stop, the wait for it, the fork and promotion) renews first: 7 more.
    let round_trips = 8 + renewals_first(p, 7);
    p.settings.loop_wait + d.stop_fast + d.stop_fast / 4 + 2 * round_trips * p.dcs_latency.1 + promotion(p) + 1_000
}

/// Whether every store round trip takes longer than the loop: each step then finds the
/// lease due and renews it (a round trip) before its action.
fn slow_store(p: &Params) -> bool {
    2 * p.dcs_latency.0 > p.settings.loop_wait
}

/// The extra round trips of `steps` steps on a slow store (`slow_store`), each renewing
/// the lease before its action; none otherwise.
fn renewals_first(p: &Params, steps: Millis) -> Millis {
    if slow_store(p) {
        steps
    } else {
        0
    }
}

/// The longest promotion: its duration (the simulation draws up to a quarter more) and
/// the replay of what the candidate received last.
fn promotion(p: &Params) -> Millis {
    p.durations.promote + p.durations.promote / 4 + p.replay_delay.1
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

/// When `node` was first shown as `shown` (or, with `not`, as anything else) at or after `t`.
fn first_shown(w: &World, t: Millis, node: usize, shown: Shown, not: bool) -> Option<Millis> {
    w.timeline.iter().find(|&&(at, i, s)| at >= t && i == node && (s == shown) != not).map(|e| e.0)
}

/// A switchover to a replica that can take it must end with that replica leading. A leader
/// may refuse one while the replica looks unwell for a moment (a read of its own that timed
/// out); like an operator, the check asks again, at most once per loop.
fn final_switchover(w: &mut World, bound: Millis, gap: &mut Option<Millis>) -> &'static str {
    let t0 = w.now;
    let Some((from, to)) = w.request_switchover_for_good() else { return "final_switchover_not_allowed" };
    let deadline = w.now + bound;
    let slice = 5 * w.p.settings.loop_wait;
    while w.now < deadline {
        if converge(w, slice.min(deadline - w.now), |w| w.converged() && w.leader() == Some(to)).is_some() {
            // The switchover's own gap: from the old primary's last stop before the new one
            // took writes. A stop before that which the old primary came back from (a fence
            // after its own lost-reply renewal was refused) is a gap of its own.
            let took = first_shown(w, t0, to, Shown::Primary, false);
            let last_up = took
                .and_then(|p| w.timeline.iter().rposition(|&(at, i, s)| at <= p && i == from && s == Shown::Primary));
            let stopped = last_up.and_then(|k| first_shown(w, w.timeline[k].0, from, Shown::Primary, true));
            *gap = took.zip(stopped).map(|(p, s)| p.saturating_sub(s));
            let most = switchover_gap_bound(&w.p);
            if let Some(g) = gap.filter(|&g| g > most) {
                let (from, to) = (w.nodes[from].name.clone(), w.nodes[to].name.clone());
                w.violation(format!(
                    "L1: the switchover from {from} to {to} left no writable primary for {g} ms (bound {most} ms)"
                ));
            }
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

/// The leader's daemon restarts (an upgrade, a crash of the daemon alone) while its guard
/// holds the lease's deadline: the new daemon adopts the deadline and claims the record, and
/// PostgreSQL stays writable throughout (without the guard it is fenced, by design).
fn final_daemon_restart(w: &mut World) -> &'static str {
    let Some(l) = w.leader().filter(|&l| w.p.guard && !w.standby_active() && w.is_writable(l)) else {
        return "final_daemon_restart_not_allowed";
    };
    // A1 needs the guard's deadline to outlast the new daemon's read, claim and next read
    // after the grant's age; with every round trip above the loop and the fastest preset's
    // lease it does not (docs/simulator.md, "Stated limits").
    if slow_store(&w.p) {
        return "final_daemon_restart_not_allowed";
    }
    w.restart_daemon(l);
    let name = w.nodes[l].name.clone();
    let ttl = w.p.settings.ttl;
    if let Some(t) = w.run_until_cond(2 * ttl, |w| !w.is_writable(l) || w.leader() != Some(l)) {
        w.violation(format!("A1: {t} ms after its daemon restarted, {name} no longer leads a writable PostgreSQL"));
        return "final_daemon_restart_failed";
    }
    "final_daemon_restart"
}

/// An operator asks for a switchover naming a replica as the leader: the leader refuses it
/// (clears it, saying why: O3 checks the reason) within a loop and a few store round
/// trips, and nothing moves.
fn final_refused_switchover(w: &mut World) -> &'static str {
    let Some(l) = w.leader() else { return "final_refused_switchover_not_allowed" };
    let Some(wrong) = (0..w.nodes.len()).find(|&j| j != l && w.nodes[j].up) else {
        return "final_refused_switchover_not_allowed";
    };
    w.ask_switchover_from(wrong);
    // A slow store (`slow_store`): the step that read just before the request renews
    // first, and so does the step that reads it: two more round trips.
    let round_trips = 4 + renewals_first(&w.p, 2);
    let bound = w.p.settings.loop_wait + 2 * round_trips * w.p.dcs_latency.1 + 1_000;
    // A standby cluster's leader is never writable: that is no lost lease.
    let (fired, writable) = (w.check.get("guard_fired"), w.standby_active() || w.is_writable(l));
    let mut cleared = w.run_until_cond(bound, |w| !w.request_pending()).is_some();
    if !cleared && (!writable || w.check.get("guard_fired") > fired) {
        // A renewal whose reply was lost (`p_reply_lost`) let the guard fire, before the
        // request or while it waited: the leader refuses once it has claimed its record
        // again and started in place.
        cleared = w.run_until_cond(bound, |w| !w.request_pending()).is_some();
    }
    let (leader, wrong) = (w.nodes[l].name.clone(), w.nodes[wrong].name.clone());
    if !cleared {
        w.violation(format!("O3: {leader} did not refuse a switchover naming {wrong} as the leader within {bound} ms"));
        return "final_refused_switchover_failed";
    }
    if w.leader() != Some(l) {
        w.violation(format!("O3: a switchover naming {wrong} as the leader moved the lease away from {leader}"));
        return "final_refused_switchover_failed";
    }
    "final_refused_switchover"
}

/// Operators restart PostgreSQL (`POST /restart`): on the primary, on a replica, and in
/// one maintenance window (where nothing else would start it again) on the primary, the
/// replica and the primary once more; before all that, a replica's (or the primary's)
/// restart whose fast stop fails, then the operator's second request. Each time
/// PostgreSQL must be seen stopped, then running again in its role (the primary writable,
/// the replica streaming from it) within a stop, a start and a few loops, the leader
/// unchanged.
fn final_restarts(w: &mut World) -> &'static str {
    if w.standby_active() {
        return final_standby_leader_restart(w);
    }
    let Some(l) = w.leader().filter(|&l| w.is_writable(l)) else {
        return "final_restarts_not_allowed";
    };
    let replica = (0..w.nodes.len()).find(|&j| j != l && w.nodes[j].up && w.nodes[j].pg.streaming);
    // First a restart whose fast stop fails: PostgreSQL runs on in its role, and the
    // operator's next request restarts it as if nothing had happened.
    let first = replica.unwrap_or(l);
    w.fail_next_op(first);
    w.ask_restart(first);
    let d = &w.p.durations;
    w.run_for(d.stop_fast + 2 * w.p.settings.loop_wait + 8 * w.p.dcs_latency.1);
    let role = if first == l {
        "the primary, after a restart whose stop failed"
    } else {
        "a replica, after a restart whose stop failed"
    };
    if !restart_and_wait(w, first, l, role, |w| in_role(w, first, l)) {
        return "final_restarts_failed";
    }
    // Outside maintenance mode the primary, then a replica; then in one maintenance
    // window the primary, the replica, and the primary a second time.
    let mut runs: Vec<(usize, bool)> = vec![(l, false)];
    runs.extend(replica.map(|r| (r, false)));
    runs.push((l, true));
    runs.extend(replica.map(|r| (r, true)));
    runs.push((l, true));
    let last_paused = runs.len() - 1;
    let mut in_pause = false;
    for (k, (i, paused)) in runs.into_iter().enumerate() {
        if paused && !in_pause {
            if w.edit_config(|c| c.paused = true).is_err() {
                return "final_restarts_not_allowed";
            }
            in_pause = true;
            // Every member applies the paused settings before the operator restarts.
            w.run_for(2 * w.p.settings.loop_wait + 8 * w.p.dcs_latency.1);
        }
        let role = match (i == l, paused) {
            (true, false) => "the primary",
            (false, false) => "a replica",
            (true, true) => "the primary in maintenance mode",
            (false, true) => "a replica in maintenance mode",
        };
        if !restart_and_wait(w, i, l, role, |w| in_role(w, i, l)) {
            return "final_restarts_failed";
        }
        if k == last_paused && w.edit_config(|c| c.paused = false).is_err() {
            return "final_restarts_failed";
        }
    }
    "final_restarts"
}

/// Node `i` runs in its role under the leader `l`: writable if it is `l`, else streaming
/// from it.
fn in_role(w: &World, i: usize, l: usize) -> bool {
    if i == l {
        w.is_writable(l)
    } else {
        w.nodes[i].pg.streaming && w.nodes[i].pg.upstream.as_deref() == Some(w.nodes[l].name.as_str())
    }
}

/// An operator restarts PostgreSQL on node `i` (O5): within a fast stop, a start, a few
/// loops and store round trips it must be seen stopped, then `in_role` again, with `l`
/// still leading. `role` names the node in the violation. Returns whether all held.
fn restart_and_wait(w: &mut World, i: usize, l: usize, role: &str, in_role: impl Fn(&World) -> bool) -> bool {
    let d = &w.p.durations;
    let bound = d.stop_fast + d.start + 4 * w.p.settings.loop_wait + 16 * w.p.dcs_latency.1 + 2_000;
    let name = w.nodes[i].name.clone();
    w.ask_restart(i);
    let mut saw_down = false;
    let back = w.run_until_cond(bound, |w| {
        saw_down |= !w.nodes[i].pg.running;
        saw_down && in_role(w)
    });
    if back.is_none() {
        w.violation(format!("O5: {name}, {role}, was not restarted within {bound} ms (stopped: {saw_down})"));
        return false;
    }
    if w.leader() != Some(l) {
        w.violation(format!("O5: restarting {name}, {role}, moved the lease"));
        return false;
    }
    true
}

/// In a standby cluster, an operator restarts PostgreSQL on the standby leader (O5): it
/// must come back as the upstream's standby, as the primary's restart does in its role.
fn final_standby_leader_restart(w: &mut World) -> &'static str {
    let Some(l) = w.leader().filter(|&l| w.standby_leads(l)) else {
        return "final_restarts_not_allowed";
    };
    if !restart_and_wait(w, l, l, "the standby leader", |w| w.standby_leads(l)) {
        return "final_restarts_failed";
    }
    "final_restarts_standby_leader"
}

/// The primary's PostgreSQL dies and cannot start again (a broken data directory, a full
/// disk): the leader gives up the lease once it has been down `primary_start_timeout`, and
/// another member is writable within that plus the liveness bound (when the settings let
/// one take over). Then the fault is repaired and the cluster converges again, the former
/// leader back as a replica.
fn final_start_fails(w: &mut World, bound: Millis) -> &'static str {
    // Every member applies the settings of the last phase (maintenance mode ended) first.
    w.run_for(2 * w.p.settings.loop_wait + 8 * w.p.dcs_latency.1);
    let Some(l) = w.leader().filter(|&l| !w.standby_active() && w.is_writable(l) && w.failover_possible(l)) else {
        return "final_start_fails_not_allowed";
    };
    let name = w.nodes[l].name.clone();
    w.break_start(l, true);
    let limit = w.p.settings.primary_start_timeout + bound;
    let moved = w.run_until_cond(limit, |w| w.leader().is_some_and(|n| n != l && w.is_writable(n)));
    w.break_start(l, false);
    if moved.is_none() {
        w.violation(format!("L1: {name}'s PostgreSQL could not start for {limit} ms and nobody else took over"));
        return "final_start_fails_failed";
    }
    if converge(w, bound, World::converged).is_none() {
        not_converged(w, format!("L1: no lasting convergence within {bound} ms after {name}'s start was repaired"));
        return "final_start_fails_failed";
    }
    "final_start_fails"
}

/// A slow start in place (the crash recovery of a big instance): the primary's
/// PostgreSQL dies while its commands run slow, so that its start outlasts a ttl (and ends
/// well within `primary_start_timeout`). The leader restarts it in place under the lease
/// it keeps renewing; the guard must follow every renewal meanwhile (A2: it never kills a
/// primary its daemon counts writable, a late start included), and the primary must be
/// writable again under the same leader.
fn final_slow_start(w: &mut World, bound: Millis) -> &'static str {
    let Some(l) = w.leader().filter(|&l| !w.standby_active() && w.is_writable(l)) else {
        return "final_slow_start_not_allowed";
    };
    let (ttl, start) = (w.p.settings.ttl, w.p.durations.start.max(1));
    let x = (ttl * 3 / 2).div_ceil(start);
    let name = w.nodes[l].name.clone();
    w.slow_pg(l, x);
    w.kill_pg(l);
    let back = w.run_until_cond(w.p.settings.primary_start_timeout + bound, |w| w.is_writable(l));
    w.slow_pg(l, 1);
    if back.is_none() || w.leader() != Some(l) {
        w.violation(format!("L1: {name}'s slow start in place did not bring it back as the primary under its lease"));
        return "final_slow_start_failed";
    }
    if converge(w, bound, World::converged).is_none() {
        not_converged(w, format!("L1: no convergence within {bound} ms after {name}'s slow start"));
        return "final_slow_start_failed";
    }
    "final_slow_start"
}

/// The store goes down for everyone for two ttls. With failsafe mode on, every member
/// answers the primary, so it must stay writable throughout (S1' is what makes that safe);
/// without it, the primary must stop accepting writes by its lease deadline. Either way the
/// cluster converges again once the store is back.
fn final_store_outage(w: &mut World, bound: Millis) -> &'static str {
    let Some(l) = w.leader().filter(|&l| !w.standby_active() && w.is_writable(l)) else {
        return "final_store_outage_not_allowed";
    };
    let (ttl, failsafe) = (w.p.settings.ttl, w.p.settings.failsafe_mode);
    let name = w.nodes[l].name.clone();
    w.set_store_down(true);
    if failsafe {
        if let Some(t) = w.run_until_cond(2 * ttl, |w| !w.is_writable(l)) {
            w.violation(format!("F2: {name} stopped accepting writes {t} ms into a store outage though every member answers it (failsafe mode)"));
        }
    } else {
        w.run_for(2 * ttl);
        if w.is_writable(l) {
            w.violation(format!("F2: {name} still accepts writes two ttls into a store outage without failsafe mode"));
        }
    }
    w.set_store_down(false);
    if converge(w, bound, World::converged).is_none() {
        not_converged(w, format!("L1: no convergence within {bound} ms after a store outage of two ttls"));
        return "final_store_outage_failed";
    }
    if failsafe {
        "final_store_outage_failsafe"
    } else {
        "final_store_outage"
    }
}

/// The start of both manual failovers in maintenance mode: when `allowed`, a writable
/// leader and a replica ready to take over from it; the cluster paused, and every member
/// given two loops to apply that. Returns (leader, replica), or None when it cannot begin.
fn paused_with_a_ready_replica(w: &mut World, allowed: bool) -> Option<(usize, usize)> {
    let l = w.leader().filter(|&l| allowed && w.is_writable(l))?;
    let to = w.ready_replica(l)?;
    w.edit_config(|c| c.paused = true).ok()?;
    w.run_for(2 * w.p.settings.loop_wait + 8 * w.p.dcs_latency.1);
    Some((l, to))
}

/// A manual failover in maintenance mode: the cluster is paused, the primary loses the
/// store and fences at its deadline (pause does not disarm fencing), and once its lease
/// is gone an operator asks for a replica that could take over. The old primary answers
/// that PostgreSQL is stopped, so the replica must take the lease and be promoted although
/// the cluster is paused (O6). Then the store link comes back, the cluster is resumed and
/// must converge.
fn final_paused_failover(w: &mut World, bound: Millis) -> &'static str {
    // In failsafe mode the members' answers keep the cut-off primary writable: no failover.
    let allowed = !w.standby_active() && !w.p.settings.failsafe_mode;
    let Some((l, to)) = paused_with_a_ready_replica(w, allowed) else {
        return "final_paused_failover_not_allowed";
    };
    let (ttl, loop_wait, lat) = (w.p.settings.ttl, w.p.settings.loop_wait, w.p.dcs_latency.1);
    w.cut_from_store(l, true);
    let (old, new) = (w.nodes[l].name.clone(), w.nodes[to].name.clone());
    // Fenced at its deadline; an etcd-like store also expires its record (a DynamoDB-like
    // one keeps it: the others judge its age).
    let etcd = w.p.mode == crate::params::DcsMode::Etcd;
    let gone = w.run_until_cond(2 * ttl, |w| !w.is_writable(l) && (!etcd || w.leader() != Some(l)));
    let outcome = if gone.is_none() {
        w.violation(format!("O6: {old}, cut off from the store in maintenance mode, is not gone two ttls later"));
        "final_paused_failover_failed"
    } else {
        w.ask_failover_to(to);
        let promoted =
            w.run_until_cond(ttl + 4 * loop_wait + 16 * lat + 2_000, |w| w.is_writable(to) && w.leader() == Some(to));
        if promoted.is_none() {
            w.violation(format!(
                "O6: a manual failover to {new} in maintenance mode, {old} confirmed stopped, did not happen"
            ));
            "final_paused_failover_failed"
        } else if w
            .run_until_cond(loop_wait + (8 + 2 * renewals_first(&w.p, 2)) * lat + 1_000, |w| !w.request_pending())
            .is_none()
        {
            // Done is done: a request left behind would act again later (an operator's
            // failover asked once must not be served twice).
            w.violation(format!(
                "O6: the manual failover to {new} in maintenance mode is done, and its request is still in the store"
            ));
            "final_paused_failover_failed"
        } else {
            "final_paused_failover"
        }
    };
    w.cut_from_store(l, false);
    let _ = w.edit_config(|c| c.paused = false);
    if converge(w, bound, World::converged).is_none() {
        not_converged(w, format!("L1: no convergence within {bound} ms after the manual failover in maintenance mode"));
        return "final_paused_failover_failed";
    }
    outcome
}

/// A manual failover in maintenance mode that must wait: the cluster is paused and the
/// primary's daemon freezes (PostgreSQL runs on, or its guard stops it: nobody can tell),
/// its lease runs out, and an operator asks for a replica that could take over. The old
/// primary is not confirmed stopped, so the replica must not take over (O6) for as long as
/// the daemon stays frozen. Then the daemon thaws, the cluster is resumed and must converge.
fn final_paused_failover_unconfirmed(w: &mut World, bound: Millis) -> &'static str {
    let allowed = !w.standby_active();
    let Some((l, to)) = paused_with_a_ready_replica(w, allowed) else {
        return "final_paused_failover_unconfirmed_not_allowed";
    };
    let (ttl, loop_wait, lat) = (w.p.settings.ttl, w.p.settings.loop_wait, w.p.dcs_latency.1);
    w.freeze_daemon(l, true);
    // Its lease runs out (an etcd-like store drops the record; with a DynamoDB-like one
    // the others judge its age), then the operator asks.
    w.run_for(ttl + 2 * loop_wait + 8 * lat);
    w.ask_failover_to(to);
    let took_over =
        w.run_until_cond(ttl + 4 * loop_wait + 16 * lat + 2_000, |w| w.is_writable(to) || w.leader() == Some(to));
    let outcome = if took_over.is_some() {
        let (old, new) = (w.nodes[l].name.clone(), w.nodes[to].name.clone());
        w.violation(format!(
            "O6: {new} took over in maintenance mode while {old}, whose daemon does not answer, was not confirmed stopped"
        ));
        "final_paused_failover_unconfirmed_failed"
    } else {
        "final_paused_failover_unconfirmed"
    };
    w.freeze_daemon(l, false);
    let _ = w.edit_config(|c| c.paused = false);
    if converge(w, bound, World::converged).is_none() {
        not_converged(
            w,
            format!("L1: no convergence within {bound} ms after a manual failover waited in maintenance mode"),
        );
        return "final_paused_failover_unconfirmed_failed";
    }
    outcome
}

/// A manual failover in maintenance mode while the old primary cannot be stopped: in a run
/// without the guard, the cluster is paused, the primary loses the store and every
/// PostgreSQL command on it fails, so its fence at the lease deadline leaves it running,
/// and its daemon says so to its peers. An operator asks for a replica that could take
/// over: it must not (O6: the old primary is not confirmed stopped; taking over would
/// make two writers) for as long as the stop fails. Then the commands work again, the
/// fence stops the old primary, and the failover must happen.
fn final_paused_failover_fence_fails(w: &mut World, bound: Millis) -> &'static str {
    let allowed = !w.standby_active() && !w.p.guard && !w.p.settings.failsafe_mode;
    let Some((l, to)) = paused_with_a_ready_replica(w, allowed) else {
        return "final_paused_failover_fence_fails_not_allowed";
    };
    let (ttl, loop_wait, lat) = (w.p.settings.ttl, w.p.settings.loop_wait, w.p.dcs_latency.1);
    let (old, new) = (w.nodes[l].name.clone(), w.nodes[to].name.clone());
    w.fail_ops(l, true);
    w.cut_from_store(l, true);
    w.run_for(ttl + 2 * loop_wait + 8 * lat);
    w.ask_failover_to(to);
    let wait = ttl + 4 * loop_wait + 16 * lat + 2_000;
    let took_over = w.run_until_cond(wait, |w| w.is_writable(to) || w.leader() == Some(to));
    let mut outcome = "final_paused_failover_fence_fails";
    if took_over.is_some() {
        w.violation(format!(
            "O6: {new} took over in maintenance mode while {old}, whose stop kept failing, still ran PostgreSQL"
        ));
        outcome = "final_paused_failover_fence_fails_failed";
    }
    w.fail_ops(l, false);
    let promoted = w.run_until_cond(wait, |w| w.is_writable(to) && w.leader() == Some(to));
    if took_over.is_none() && promoted.is_none() {
        w.violation(format!(
            "O6: a manual failover to {new} in maintenance mode did not happen once {old}'s fence stopped it"
        ));
        outcome = "final_paused_failover_fence_fails_failed";
    }
    w.cut_from_store(l, false);
    let _ = w.edit_config(|c| c.paused = false);
    if converge(w, bound, World::converged).is_none() {
        not_converged(
            w,
            format!(
                "L1: no convergence within {bound} ms after a manual failover waited for a fence in maintenance mode"
            ),
        );
        return "final_paused_failover_fence_fails_failed";
    }
    outcome
}

/// The store is lost and rebuilt empty, by the runbook (6.2): every daemon stops, the
/// store is emptied, the most advanced node's daemon starts alone and founds the cluster
/// again on its data (O7: within a few loops), then the others start and follow it (L1).
/// Acknowledged writes survive (S2 on the new primary) and nobody's WAL forks (S4).
fn final_store_rebuilt(w: &mut World, bound: Millis) -> &'static str {
    // Without the guard nothing stops a primary whose daemon is stopped (step 1 relies
    // on it).
    // A cluster founded as a standby cluster would bootstrap as one again (its nodes'
    // settings say so): the runbook's procedure is for primary clusters.
    if w.p.settings.standby_cluster.is_some() || w.leader().is_none() || !w.p.guard {
        return "final_store_rebuilt_not_allowed";
    }
    let Some(first) = w.rebuild_store_begin() else {
        w.violation("O7: with every daemon stopped, a primary was still writable two ttls later".into());
        return "final_store_rebuilt_failed";
    };
    let s = &w.p.settings;
    let alone = 4 * s.loop_wait + 2 * s.retry_timeout + w.p.durations.start * 2 + 16 * w.p.dcs_latency.1 + 2_000;
    if w.run_until_cond(alone, |w| w.is_writable(first) && w.leader() == Some(first)).is_none() {
        let name = w.nodes[first].name.clone();
        w.violation(format!(
            "O7: {name}, started alone on an empty store, did not found the cluster within {alone} ms"
        ));
        return "final_store_rebuilt_failed";
    }
    w.rebuild_store_rest();
    if converge(w, bound, World::converged).is_none() {
        not_converged(w, format!("L1: no convergence within {bound} ms after the store was rebuilt"));
        return "final_store_rebuilt_failed";
    }
    "final_store_rebuilt"
}

/// An operator empties the store while every daemon runs (a recreated etcd cluster or
/// table, a `hashell remove` on the wrong cluster): the mistake the runbook (6.2) warns
/// of, here where it is safe, a converged cluster in which only the primary's data is a
/// primary's. Its daemon must found the cluster again on that data (O7); the others, who
/// saw higher terms than the new store's, take its reads for stale ones until it has kept
/// changing for a ttl, then follow it; everyone must converge within the L1 bound.
fn final_store_wiped_live(w: &mut World, bound: Millis) -> &'static str {
    let allowed = w.p.settings.standby_cluster.is_none() && w.converged();
    let Some(l) = w.leader().filter(|&l| allowed && w.is_writable(l) && w.only_primary_data(l)) else {
        return "final_store_wiped_live_not_allowed";
    };
    w.wipe_store();
    if w.run_until_cond(bound, |w| w.leader() == Some(l) && w.is_writable(l)).is_none() {
        let name = w.nodes[l].name.clone();
        w.violation(format!(
            "O7: the store was emptied under running daemons; {name}, the only one with a primary's data, did not found the cluster again within {bound} ms"
        ));
        return "final_store_wiped_live_failed";
    }
    if converge(w, bound, World::converged).is_none() {
        not_converged(
            w,
            format!("L1: no convergence within {bound} ms after the store was emptied under running daemons"),
        );
        return "final_store_wiped_live_failed";
    }
    "final_store_wiped_live"
}

/// The leader's machine stops for good: the rest must converge again.
fn final_failover(w: &mut World, bound: Millis, gap: &mut Option<Millis>) -> &'static str {
    let t0 = w.now;
    let Some(gone) = w.stop_leader_for_good() else { return "final_failover_not_allowed" };
    if converge(w, bound, World::converged).is_some() {
        *gap = (0..w.nodes.len()).filter_map(|i| first_shown(w, t0, i, Shown::Primary, false)).min().map(|t| t - t0);
        let most = failover_gap_bound(&w.p);
        if let Some(g) = gap.filter(|&g| g > most) {
            let name = w.nodes[gone].name.clone();
            w.violation(format!(
                "L1: after {name}'s machine stopped, no writable primary for {g} ms (bound {most} ms)"
            ));
        }
        return "final_failover";
    }
    let name = w.nodes[gone].name.clone();
    not_converged(w, format!("L1: no failover within {bound} ms after the leader {name}'s machine stopped for good"));
    "final_failover_failed"
}

/// A replica's machine stops for good (a member removed from the cluster). The leader
/// keeps its slot and its place in the failsafe set for the grace period of ten ttls (a
/// member that comes back from a long blip still finds its WAL), and within twelve ttls
/// its member record, its slot, its failsafe entry and its place in the synchronous set
/// are gone.
fn final_departure(w: &mut World) -> &'static str {
    let Some(leader) = w.leader() else { return "final_departure_not_allowed" };
    let Some(gone) = w.remove_replica_for_good() else { return "final_departure_not_allowed" };
    let ttl = w.p.settings.ttl;
    let name = w.nodes[gone].name.clone();
    let slot = hacore::slot_name(&name);
    let failsafe = w.p.settings.failsafe_mode && !w.standby_active();
    let had_slot = w.nodes[leader].pg.slots.contains(&slot);
    let listed = |w: &mut World| w.view().failsafe.is_some_and(|f| f.value.members.iter().any(|m| m.name == name));
    let was_listed = failsafe && listed(w);
    w.run_for(5 * ttl);
    if w.leader() == Some(leader) {
        let lname = w.nodes[leader].name.clone();
        if had_slot && !w.nodes[leader].pg.slots.contains(&slot) {
            let msg = format!("R3: {lname} dropped the slot of {name} five ttls after it left (grace: ten ttls)");
            w.violation(msg);
        }
        if was_listed && !listed(w) {
            let msg =
                format!("R3: {lname} dropped {name} from the failsafe set five ttls after it left (grace: ten ttls)");
            w.violation(msg);
        }
    }
    // A slow store (`slow_store`): the record's removal and the first read without it are
    // steps that renew first; four of them, two round trips each.
    let slow = 2 * renewals_first(&w.p, 4) * w.p.dcs_latency.1;
    w.run_for(7 * ttl + slow);
    if w.leader() != Some(leader) {
        return "final_departure_leader_changed";
    }
    let lname = w.nodes[leader].name.clone();
    let left: Vec<&str> = [
        w.nodes[leader].pg.slots.contains(&slot).then_some("its slot"),
        (failsafe && listed(w)).then_some("its failsafe entry"),
        w.view().members.iter().any(|m| m.value.name == name).then_some("its member record"),
        // A member gone for good is no synchronous standby: it acknowledges nothing.
        w.view().sync.is_some_and(|s| s.value.members.contains(&name)).then_some("its place in the synchronous set"),
        w.nodes[leader].pg.sync_standbys.names().contains(&name).then_some("it in synchronous_standby_names"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !left.is_empty() {
        let after = if slow > 0 { format!("twelve ttls and {slow} ms") } else { "twelve ttls".into() };
        let msg = format!("R3: {after} after {name} left, {lname} still keeps {}", left.join(" and "));
        w.violation(msg);
    }
    "final_departure"
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
    let bound = bound + w.corrupt_leader_wait();
    let converged = converge(&mut w, bound, World::converged);
    let (mut switchover_gap, mut failover_gap) = (None, None);
    // The client's writes count up to here; those of the final phases do not.
    w.count_writes();
    match converged {
        None => not_converged(&mut w, format!("L1: no lasting convergence within {bound} ms after the faults stopped")),
        // Then two operations every healthy cluster must complete within the same bound:
        // a switchover to a replica that can take it, and a failover once the leader's
        // machine stops for good (a majority heals, not everything), unless the settings
        // forbid one. The coverage counters stay those of the faults (these are in every
        // run), plus each operation's outcome.
        Some(_) => {
            let counters = w.check.counters.clone();
            // The timed operations run on a network that loses no replies: each lost one
            // costs a retry_timeout, which would hide the write gaps being measured.
            w.p.p_reply_lost = 0.0;
            w.run_for(w.p.settings.retry_timeout); // what was lost before times out now
            let switchover = final_switchover(&mut w, bound, &mut switchover_gap);
            let restart = final_daemon_restart(&mut w);
            let refused = final_refused_switchover(&mut w);
            let restarts = final_restarts(&mut w);
            let start_fails = final_start_fails(&mut w, bound);
            let slow_start = final_slow_start(&mut w, bound);
            let outage = final_store_outage(&mut w, bound);
            let paused_failover = final_paused_failover(&mut w, bound);
            let unconfirmed = final_paused_failover_unconfirmed(&mut w, bound);
            let fence_fails = final_paused_failover_fence_fails(&mut w, bound);
            let wiped = final_store_wiped_live(&mut w, bound);
            let rebuilt = final_store_rebuilt(&mut w, bound);
            let failover = match switchover {
                "final_switchover_failed" => "final_failover_not_tried",
                _ => final_failover(&mut w, bound, &mut failover_gap),
            };
            let departure = match failover {
                "final_failover_failed" | "final_failover_not_tried" => "final_departure_not_tried",
                _ => final_departure(&mut w),
            };
            w.check.counters = counters;
            w.check.count(switchover);
            w.check.count(restart);
            w.check.count(refused);
            w.check.count(restarts);
            w.check.count(start_fails);
            w.check.count(slow_start);
            w.check.count(outage);
            w.check.count(paused_failover);
            w.check.count(unconfirmed);
            w.check.count(fence_fails);
            w.check.count(rebuilt);
            w.check.count(wiped);
            w.check.count(failover);
            w.check.count(departure);
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
        switchover_gap,
        failover_gap,
    };
    (report, w)
}
