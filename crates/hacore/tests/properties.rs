//! Properties of `step` over random configs, memories and observations.

use hacore::action::{Action, StopMode};
use hacore::dcs::{DcsOp, Expect};
use hacore::memory::PgOpKind;
use hacore::testing::strategies::{step_input, StepInput};
use hacore::{step, ClusterSettings, Decision, Reason};
use proptest::prelude::*;

fn run(i: &StepInput) -> Decision {
    step(&i.cfg, &i.mem, &i.obs, i.now)
}

/// The settings the step ended up applying.
fn settings(i: &StepInput, d: &Decision) -> ClusterSettings {
    d.memory.applied.as_ref().map_or_else(|| i.cfg.defaults.clone(), |(_, s)| s.clone())
}

fn fences(d: &Decision) -> bool {
    d.actions.iter().any(|a| matches!(a, Action::Stop { mode: StopMode::Immediate, .. }))
        || d.memory.pending.is_some_and(|p| p.kind == PgOpKind::StopImmediate)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3_000, .. ProptestConfig::default() })]

    /// `step` never panics, and the same input gives the same output.
    #[test]
    fn deterministic(i in step_input()) {
        let a = run(&i);
        let b = run(&i);
        prop_assert_eq!(a, b);
    }

    /// S1: no action that makes or keeps PostgreSQL writable without a lease (or a valid
    /// failsafe confirmation while the DCS is unreadable) whose deadline is in the future
    /// and covers the action's deadline.
    #[test]
    fn writable_only_under_a_lease(i in step_input()) {
        let d = run(&i);
        // A read judged stale (older than what was seen: `a_read_is_judged_stale_only_with_cause`)
        // is not used: the store's grant stands until its deadline, as when the DCS is down.
        let used = i.obs.dcs.as_ref().ok().filter(|_| d.memory.stale_since.is_none());
        let record_ours = |l: &hacore::memory::HeldLease| match used {
            Some(v) => v.leader.as_ref().is_some_and(|r| r.value.holder == i.cfg.name && r.value.term == l.term),
            None => true,
        };
        for a in &d.actions {
            let Some(deadline) = a.writable_deadline() else { continue };
            prop_assert!(deadline > i.now, "{a:?} deadline not in the future");
            let lease_ok = d.memory.lease.is_some_and(|l| l.deadline >= deadline && record_ours(&l));
            // A failsafe confirmation counts while the DCS is unreadable, or once it is back
            // while the store still shows this node's record in its term.
            let record_ours = d.memory.lease.is_some_and(|l| record_ours(&l));
            let failsafe_ok =
                record_ours && d.memory.lease.is_some() && d.memory.failsafe_until.is_some_and(|u| u >= deadline);
            prop_assert!(lease_ok || failsafe_ok, "{a:?} without a lease: {:?}", d.memory.lease);
        }
    }

    /// A read is set aside as stale only when it is provably older than what this node
    /// knows: a term below the highest seen (its own memory, a peer's report), or local WAL
    /// on a timeline the read's history does not know (every timeline is recorded before
    /// the promotion that makes it).
    #[test]
    fn a_read_is_judged_stale_only_with_cause(i in step_input()) {
        let d = run(&i);
        let Ok(v) = &i.obs.dcs else { return Ok(()) };
        if d.memory.stale_since.is_none() {
            return Ok(());
        }
        let peers = i.obs.peers.iter().filter_map(|p| p.status.as_ref().map(|s| s.term)).max().unwrap_or_default();
        // What this node knows includes a term it was granted in this very step (an
        // acquire's outcome), not only the memory it came in with.
        let seen = i.mem.max_term.max(d.memory.max_term).max(peers);
        let lower_term = v.term < seen;
        let base = v.initialize.as_ref().map_or(hacore::Timeline(1), |r| r.value.base_timeline);
        let known = v.history.iter().flat_map(|h| h.value.forks.iter().map(|f| f.timeline)).max().unwrap_or(base).max(base);
        let unknown_timeline = i.obs.pg.timeline > known;
        prop_assert!(v.initialize.is_some(), "a store without a cluster judged stale");
        prop_assert!(lower_term || unknown_timeline, "read judged stale without cause: term {} seen {} timeline {} known {known}",
            v.term, seen, i.obs.pg.timeline);
    }

    /// S1: PostgreSQL that may accept writes without a writable deadline is fenced, paused
    /// or not (the failsafe exception shows up as a writable deadline).
    #[test]
    fn past_deadline_always_fences(i in step_input()) {
        let d = run(&i);
        let pg = &i.obs.pg;
        if pg.maybe_writable() {
            if d.status.writable_until.is_none() {
                prop_assert!(fences(&d), "writable without deadline and not fenced: {:?}", d.status);
            }
            if i.cfg.require_guard && i.obs.guard == hacore::GuardState::Lost {
                prop_assert!(fences(&d), "guard lost and not fenced");
            }
        }
        if let Some(u) = d.status.writable_until {
            prop_assert!(u > i.now);
        }
    }

    /// S1: the guard is never left holding a later deadline than the one the node may
    /// write until (a frozen daemon would otherwise outlive its lease).
    #[test]
    fn guard_never_holds_a_later_deadline(i in step_input()) {
        let d = run(&i);
        let hacore::GuardState::Armed { deadline: held, .. } = i.obs.guard else { return Ok(()) };
        let Some(until) = d.status.writable_until else { return Ok(()) };
        if held > until && i.obs.pg.maybe_writable() {
            let rearmed = d.actions.iter().any(|a| matches!(a, Action::ArmGuard { deadline, .. } if *deadline == until));
            prop_assert!(rearmed || fences(&d), "guard keeps {held} > writable until {until}");
        }
    }

    /// S1: a renewal can shorten the store's lease as soon as it applies, so when one is
    /// sent, the guard in force (the last one armed before it in the action list, else the
    /// one observed) must not hold a later deadline than the renewal guarantees (or than a
    /// failsafe confirmation, which does not depend on the lease).
    #[test]
    fn renewal_never_outruns_the_guard(i in step_input()) {
        let d = run(&i);
        if !i.obs.pg.maybe_writable() {
            return Ok(());
        }
        let failsafe = d.memory.failsafe_until.unwrap_or(0);
        let mut guard = match i.obs.guard {
            hacore::GuardState::Armed { deadline, .. } => Some(deadline),
            _ => None,
        };
        // A fence queued first (or already under way) stops PostgreSQL whatever the guard holds.
        let mut fenced = i.mem.pending.is_some_and(|p| p.kind == PgOpKind::StopImmediate);
        for a in &d.actions {
            match a {
                Action::Stop { mode: StopMode::Immediate, .. } => fenced = true,
                Action::ArmGuard { deadline, .. } => guard = Some(*deadline),
                Action::Dcs { op: DcsOp::RenewLeader { ttl, .. }, .. } => {
                    let bound = (i.now + ttl - i.cfg.safety.margin(*ttl)).max(failsafe);
                    if let Some(g) = guard.filter(|_| !fenced) {
                        prop_assert!(g <= bound, "guard holds {g} while the renewal guarantees only {bound}");
                    }
                }
                _ => {}
            }
        }
    }

    /// S1: a promotion or primary start in flight is stopped once the lease is gone.
    #[test]
    fn pending_promotion_stopped_without_lease(i in step_input()) {
        let d = run(&i);
        let becoming = d.memory.pending.is_some_and(|p| matches!(p.kind, PgOpKind::Promote | PgOpKind::StartPrimary));
        if becoming && d.status.writable_until.is_none() {
            prop_assert!(false, "a promotion or start stays in flight without a lease");
        }
    }

    /// S3: never promote while a reachable eligible candidate reports a higher received LSN.
    #[test]
    fn never_promote_behind_a_peer(i in step_input()) {
        let d = run(&i);
        if d.actions.iter().any(|a| matches!(a, Action::Promote { .. })) {
            for p in i.obs.peers.iter().filter(|p| p.name != i.cfg.name) {
                let Some(e) = p.status.as_ref().and_then(|st| st.election) else { continue };
                prop_assert!(!(e.eligible && e.position.lsn > i.obs.pg.flush_lsn), "promoted behind {}", p.name);
            }
        }
    }

    /// S3 at acquisition: a candidate never takes the lease while a reachable eligible
    /// candidate ranks above it (more WAL, then priority, then name).
    #[test]
    fn never_acquire_behind_a_candidate(i in step_input()) {
        let d = run(&i);
        let Ok(view) = &i.obs.dcs else { return Ok(()) };
        let new_reign = d.actions.iter().any(|a| matches!(a, Action::Dcs { op: DcsOp::AcquireLeader(acq), .. }
            if acq.record.term > view.term || view.leader.as_ref().is_none_or(|l| l.value.holder != i.cfg.name)));
        if !new_reign || view.initialize.is_none() || view.switchover.is_some() || settings(&i, &d).paused {
            return Ok(());
        }
        let mine = (i.obs.pg.flush_lsn, i.cfg.tags.failover_priority);
        for p in i.obs.peers.iter().filter(|p| p.name != i.cfg.name) {
            let Some(e) = p.status.as_ref().and_then(|st| st.election) else { continue };
            let ahead = (e.position.lsn, e.priority) > mine
                || ((e.position.lsn, e.priority) == mine && p.name < i.cfg.name);
            prop_assert!(!(e.eligible && ahead), "acquired while {} ranks above", p.name);
        }
    }

    /// S2: in synchronous mode never take the lease when not in the sync set (bootstrap,
    /// before any commit exists, and claims of a record already naming this node aside).
    /// Before any primary published a sync record no commit waited for a standby, and a
    /// standby cluster commits nothing: there the acquire is only conditioned on the record
    /// (so one published meanwhile makes it fail).
    #[test]
    fn synchronous_acquire_only_from_the_set(i in step_input()) {
        let d = run(&i);
        let Ok(view) = &i.obs.dcs else { return Ok(()) };
        let s = settings(&i, &d);
        if !s.synchronous_mode.enabled() || view.initialize.is_none() {
            return Ok(());
        }
        let record = view.sync.is_some() || view.corrupt_key(&hacore::dcs::Key::Sync).is_some();
        let set_applies = record && s.standby_cluster.is_none();
        for a in &d.actions {
            let Action::Dcs { op: DcsOp::AcquireLeader(acq), .. } = a else { continue };
            let claim = matches!(acq.expect, Expect::Version(_))
                && view.leader.as_ref().is_some_and(|l| l.value.holder == i.cfg.name);
            if claim {
                continue;
            }
            let in_set = view.sync.as_ref().is_some_and(|s| {
                s.value.leader == i.cfg.name || s.value.members.contains(&i.cfg.name)
            });
            prop_assert!(acq.sync.is_some(), "acquire not conditioned on the sync record");
            prop_assert!(in_set || !set_applies, "acquired outside the sync set");
        }
    }

    /// Tags: a nofailover node never campaigns for the lease.
    #[test]
    fn nofailover_never_campaigns(i in step_input()) {
        let d = run(&i);
        if i.cfg.tags.can_lead() {
            return Ok(());
        }
        for a in &d.actions {
            if let Action::Dcs { op: DcsOp::AcquireLeader(acq), .. } = a {
                prop_assert!(matches!(acq.expect, Expect::Version(_)), "nofailover node acquired");
            }
        }
    }

    /// Rolling upgrades: what a node writes, every member of the view can read (no reason
    /// newer than the lowest schema a member publishes), and its own record says which
    /// layout it reads.
    #[test]
    fn writes_are_readable_by_every_member(i in step_input()) {
        let d = run(&i);
        let Ok(view) = &i.obs.dcs else { return Ok(()) };
        for a in &d.actions {
            let Action::Dcs { op, .. } = a else { continue };
            match op {
                DcsOp::PublishMember(m) => {
                    prop_assert_eq!(m.schema, hacore::SCHEMA);
                    if let Some(r) = m.reason {
                        prop_assert!(r.since_schema() <= view.schema(), "{:?} for schema {}", r, view.schema());
                    }
                }
                DcsOp::AppendEvent(e) => {
                    prop_assert!(e.reason.since_schema() <= view.schema(), "{:?} for schema {}", e.reason, view.schema());
                }
                _ => {}
            }
        }
    }

    /// Every decision has a reason, and the next wake-up is within a loop.
    #[test]
    fn reason_and_wake(i in step_input()) {
        let d = run(&i);
        prop_assert_ne!(d.status.reason, Reason::Starting);
        prop_assert!(d.wake_within >= 1);
        prop_assert!(d.wake_within <= settings(&i, &d).loop_wait, "wake {} > loop_wait", d.wake_within);
    }
}

/// The strategies are only useful if they reach the dangerous paths: count what 4000
/// random inputs produce and require every interesting action and reason at least once.
#[test]
fn strategies_reach_the_interesting_paths() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRunner};
    use std::collections::BTreeMap;

    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        proptest::test_runner::TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
    );
    let strategy = step_input();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..4_000 {
        let i = strategy.new_tree(&mut runner).expect("strategy").current();
        let d = run(&i);
        *seen.entry(format!("reason:{}", d.status.reason)).or_default() += 1;
        for a in &d.actions {
            let kind = match a {
                Action::Dcs { op, .. } => match op {
                    DcsOp::AcquireLeader(_) => "acquire",
                    DcsOp::RenewLeader { .. } => "renew",
                    DcsOp::ReleaseLeader { .. } => "release",
                    DcsOp::TransferLeader { .. } => "transfer",
                    DcsOp::LeaderWrite { .. } => "leader_write",
                    _ => "other_dcs",
                },
                Action::Promote { .. } => "promote",
                Action::StartPrimary { .. } => "start_primary",
                Action::Stop { mode: StopMode::Immediate, .. } => "fence",
                Action::Rewind { .. } => "rewind",
                Action::Clone { .. } => "clone",
                Action::FailsafePing { .. } => "failsafe_ping",
                Action::SetSyncStandbys(_) => "set_sync",
                Action::Checkpoint { .. } => "checkpoint",
                _ => "other",
            };
            *seen.entry(format!("action:{kind}")).or_default() += 1;
        }
    }
    let required = [
        "action:acquire",
        "action:renew",
        "action:release",
        "action:transfer",
        "action:leader_write",
        "action:promote",
        "action:start_primary",
        "action:fence",
        "action:rewind",
        "action:clone",
        "action:failsafe_ping",
        "action:set_sync",
        "action:checkpoint",
        "reason:acquiring",
        "reason:election_lost",
        "reason:election_waiting",
        "reason:lease_expired",
        "reason:fencing_not_leader",
        "reason:failsafe_holding",
        "reason:ineligible_not_synchronous",
        "reason:ineligible_diverged",
        "reason:paused",
    ];
    if std::env::var_os("SHOW_COVERAGE").is_some() {
        eprintln!("{seen:#?}");
    }
    // At least 10 of 4000 each, so no property above holds vacuously.
    let missing: Vec<_> = required.iter().filter(|r| seen.get(**r).copied().unwrap_or(0) < 10).collect();
    assert!(missing.is_empty(), "reached fewer than 10 times: {missing:?}\nseen: {seen:#?}");
}
