//! Multi-node scenarios written against the engine directly: several nodes stepping the
//! real core over the simulated store in virtual time. Every run also checks S1-S5 after
//! every event (see `World`), and these tests assert the outcome a user cares about.

use hacore::dcs::{Expect, FailsafeRecord, LeaderGuard, SwitchoverKind, Value, Write};
use hacore::DcsOp;
use hacore::SyncMode;
use simulator::{Dir, Fault, FaultKind, Params, Target, World};

fn assert_clean(w: &World) {
    assert!(w.check.ok(), "violations: {:#?}", w.check.violations);
}

fn bootstrapped(p: Params) -> World {
    let mut w = World::new(p);
    let t = w.run_until_cond(60_000, World::converged);
    assert!(t.is_some(), "no healthy cluster after 60 s");
    w.run_for(2_000);
    assert!(w.converged());
    w
}

fn inject(w: &mut World, dur: u64, kind: FaultKind) {
    let at = w.now;
    w.inject(Fault { at, dur, kind });
}

#[test]
fn bootstrap_initializes_once_and_clones_the_rest() {
    let w = bootstrapped(Params::quiet(1, 3));
    let ids: Vec<_> = w.nodes.iter().map(|n| n.pg.system_id).collect();
    assert!(ids.iter().all(|i| i.is_some() && *i == ids[0]), "{ids:?}");
    assert_eq!(w.check.get("initdb"), 1);
    assert_eq!(w.check.get("clone"), 2);
    assert!(w.acked_total > 0);
    assert_clean(&w);
}

#[test]
fn primary_crash_most_advanced_replica_takes_over() {
    let mut w = bootstrapped(Params::quiet(2, 3));
    let old = w.writable()[0];
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    // Make one replica lag: cut it from the primary for 3 s while writes continue.
    let (ahead, behind) = (others[0], others[1]);
    inject(&mut w, 3_000, FaultKind::CutPeer(Target::Node(old), Target::Node(behind), Dir::Both));
    w.run_for(2_900);
    inject(&mut w, 40_000, FaultKind::Crash(Target::Node(old)));
    let took = w.run_until_cond(30_000, |w| w.writable().len() == 1);
    assert!(took.is_some(), "no new primary");
    assert_eq!(w.writable(), vec![ahead], "the most advanced replica must win");
    assert!(took.unwrap() <= 10_000 + 5_000, "failover took {took:?}");
    // The old primary comes back (after 40 s) and rejoins as a standby.
    w.run_until_cond(60_000, World::converged).expect("the old primary rejoins");
    assert_eq!(w.writable(), vec![ahead]);
    assert!(w.check.get("election_lost_to_more_advanced") >= 1);
    assert_clean(&w);
}

#[test]
fn synchronous_mode_loses_no_acknowledged_write_on_crash() {
    let mut p = Params::quiet(3, 3);
    p.settings.synchronous_mode = SyncMode::On;
    p.write_rate = 50;
    let mut w = bootstrapped(p);
    let published = |w: &mut World| w.view().sync.is_some_and(|s| !s.value.members.is_empty());
    for round in 0..3 {
        w.run_until_cond(10_000, |w| {
            let mut v = w.store.clone();
            v.read(u64::MAX / 4, 0).sync.is_some_and(|s| !s.value.members.is_empty())
        })
        .unwrap_or_else(|| panic!("round {round}: no synchronous standby published"));
        assert!(published(&mut w));
        w.run_for(2_000);
        inject(&mut w, 15_000, FaultKind::Crash(Target::Primary));
        w.run_until_cond(40_000, |w| w.writable().len() == 1)
            .unwrap_or_else(|| panic!("round {round}: no new primary"));
        w.run_until_cond(60_000, World::converged).unwrap_or_else(|| panic!("round {round}: not converged"));
    }
    assert!(w.check.get("became_primary") >= 4);
    assert!(w.acked_total > 300, "only {} writes acknowledged in {} ms: {:?}", w.acked_total, w.now, w.check.counters);
    assert_clean(&w);
}

#[test]
fn switchover_hands_over_without_losing_writes() {
    let mut w = bootstrapped(Params::quiet(4, 3));
    let old = w.writable()[0];
    let target = (old + 1) % 3;
    let acked_before = w.acked_total;
    inject(&mut w, 0, FaultKind::Switchover { to: Some(Target::Node(target)), from: None, delay: 0 });
    let took = w.run_until_cond(30_000, |w| w.writable() == vec![target]);
    assert!(took.is_some(), "switchover did not happen");
    w.run_until_cond(20_000, World::converged).expect("old primary follows");
    assert_eq!(w.check.get("switchover"), 1);
    assert!(w.acked_total > acked_before);
    // A planned switchover loses nothing, even asynchronously.
    assert_eq!(w.check.async_lost, 0);
    assert!(w.view().switchover.is_none(), "request cleared");
    assert_clean(&w);
}

#[test]
fn dcs_outage_without_failsafe_fences_then_recovers() {
    let mut w = bootstrapped(Params::quiet(5, 3));
    inject(&mut w, 40_000, FaultKind::DcsOutage);
    let fenced = w.run_until_cond(20_000, |w| w.writable().is_empty());
    assert!(fenced.is_some(), "primary kept writing without the DCS");
    // Fenced before its lease could have expired anywhere (ttl 10 s).
    assert!(fenced.unwrap() < 10_000, "fenced after {fenced:?}");
    w.run_for(20_000);
    assert!(w.writable().is_empty(), "nobody may write while the DCS is down");
    w.run_until_cond(60_000, World::converged).expect("recovery after the outage");
    assert_clean(&w);
}

#[test]
fn dcs_outage_with_failsafe_keeps_the_primary() {
    let mut p = Params::quiet(6, 3);
    p.settings.failsafe_mode = true;
    let mut w = bootstrapped(p);
    w.run_for(12_000); // the failsafe set gets published; the restart hold passes
    let primary = w.writable()[0];
    inject(&mut w, 30_000, FaultKind::DcsOutage);
    let acked_at_outage = w.acked_total;
    w.run_for(29_000);
    assert_eq!(w.writable(), vec![primary], "failsafe must keep the primary");
    assert!(w.acked_total > acked_at_outage + 200, "writes kept being acknowledged");
    assert!(w.check.get("failsafe_round_acked") > 10);
    w.run_until_cond(30_000, World::converged).expect("still converged after the outage");
    assert_eq!(w.writable(), vec![primary]);
    assert_clean(&w);
}

#[test]
fn failsafe_primary_cut_off_from_everyone_fences() {
    let mut p = Params::quiet(7, 3);
    p.settings.failsafe_mode = true;
    let mut w = bootstrapped(p);
    w.run_for(12_000);
    let primary = w.writable()[0];
    inject(&mut w, 60_000, FaultKind::Isolate(Target::Node(primary)));
    w.run_until_cond(40_000, |w| w.writable().len() == 1 && w.writable()[0] != primary).expect("failover");
    assert_clean(&w);
}

/// A member missing from the published failsafe set may not take the lease (S1': the
/// leader may be riding out a store outage on the answers of that set alone), so the
/// final phases must not expect a failover to it if the leader stops for good before it
/// publishes the set again (seed 13806: right after the store was emptied under running
/// daemons, the leader stopped while its set named two members tagged nofailover only).
#[test]
fn no_failover_expected_for_members_outside_the_failsafe_set() {
    let mut p = Params::quiet(10, 3);
    p.settings.failsafe_mode = true;
    let mut w = bootstrapped(p);
    w.run_for(12_000);
    let l = w.leader().expect("a leader");
    assert!(w.failover_possible(l), "every member is in the published failsafe set");
    // The set as the leader publishes it on an emptied store before the others registered.
    let view = w.view();
    let (rec, set) = (view.leader.expect("a leader record"), view.failsafe.expect("a failsafe set"));
    let me = rec.value.holder.clone();
    let alone = set.value.members.iter().filter(|m| m.name == me).cloned().collect::<Vec<_>>();
    let guard = LeaderGuard { holder: me.clone(), term: rec.value.term, version: rec.version };
    let put = Write::put(Value::Failsafe(FailsafeRecord { members: alone.into() }), Expect::Version(set.version));
    w.store.apply(&me, &DcsOp::LeaderWrite { guard, writes: vec![put] }, 0, 0).expect("the write applies");
    assert!(!w.failover_possible(l), "nobody else is in the failsafe set");
    // The leader names the others again within a few loops.
    w.run_until_cond(10_000, World::converged).expect("still converged");
    let mut waited = 0;
    while !w.failover_possible(l) {
        assert!(waited < 10_000, "the leader never named the others in the failsafe set again");
        w.run_for(100);
        waited += 100;
    }
    assert_clean(&w);
}

#[test]
fn frozen_daemon_is_fenced_by_its_guard() {
    let mut w = bootstrapped(Params::quiet(8, 3));
    let primary = w.writable()[0];
    inject(&mut w, 40_000, FaultKind::PauseDaemon(Target::Node(primary)));
    w.run_until_cond(40_000, |w| w.writable().len() == 1 && w.writable()[0] != primary).expect("failover");
    assert!(w.check.get("guard_fired") >= 1, "the guard must have killed the frozen primary");
    w.run_until_cond(60_000, World::converged).expect("the frozen node rejoins after it wakes");
    assert_clean(&w);
}

#[test]
fn operator_failover_to_a_named_node() {
    let mut w = bootstrapped(Params::quiet(9, 3));
    let old = w.writable()[0];
    let target = (old + 2) % 3;
    inject(&mut w, 30_000, FaultKind::Crash(Target::Node(old)));
    inject(&mut w, 0, FaultKind::Failover(Target::Node(target)));
    w.run_until_cond(30_000, |w| w.writable() == vec![target]).expect("the named node takes over");
    let _ = SwitchoverKind::Failover;
    assert_clean(&w);
}

#[test]
fn same_seed_same_trace() {
    let run = || {
        let mut p = Params::from_seed(42, 600_000, Some(3));
        p.keep_trace = true;
        let (r, w) = simulator::run(p);
        (r.trace_hash, w.trace.lines().join("\n"))
    };
    let (h1, t1) = run();
    let (h2, t2) = run();
    assert_eq!(h1, h2);
    assert_eq!(t1, t2, "same seed must give a byte-identical trace");
    assert!(t1.lines().count() > 50);
}
