//! Multi-node scenarios: several nodes stepping the real core over the in-memory store in
//! virtual time. Every run also checks S1 (one writer) after every event and S2 (no
//! acknowledged write missing on a new primary, synchronous mode) at every promotion.

use hacore::dcs::SwitchoverKind;
use hacore::SyncMode;
use simulator::{SimConfig, World};

/// One writable primary and every other live node streaming from it.
fn healthy(w: &World) -> bool {
    let writable = w.writable();
    if writable.len() != 1 {
        return false;
    }
    let primary = &w.nodes[writable[0]].name;
    w.nodes.iter().enumerate().all(|(i, n)| {
        i == writable[0] || !n.daemon_up || (n.pg.running && n.pg.streaming && n.pg.upstream.as_ref() == Some(primary))
    })
}

fn assert_clean(w: &World) {
    assert!(w.violations.is_empty(), "violations: {:#?}\n{}", w.violations, w.trace.join("\n"));
}

fn bootstrapped(cfg: SimConfig) -> World {
    let mut w = World::new(cfg);
    let t = w.run_until_cond(60_000, healthy);
    assert!(t.is_some(), "no healthy cluster after 60 s:\n{}", w.trace.join("\n"));
    w.run_for(2_000);
    assert!(healthy(&w));
    w
}

#[test]
fn bootstrap_initializes_once_and_clones_the_rest() {
    let w = bootstrapped(SimConfig::default());
    let ids: Vec<_> = w.nodes.iter().map(|n| n.pg.system_id).collect();
    assert!(ids.iter().all(|i| i.is_some() && *i == ids[0]), "{ids:?}");
    assert_eq!(w.counters.get("clone"), Some(&2));
    assert!(w.counters.get("writes_acked").copied().unwrap_or(0) > 0);
    assert_clean(&w);
}

#[test]
fn primary_crash_most_advanced_replica_takes_over() {
    let mut w = bootstrapped(SimConfig::default());
    let old = w.writable()[0];
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    // Make one replica lag: cut it from the primary for 3 s while writes continue.
    let (ahead, behind) = (others[0], others[1]);
    w.set_peer_link(old, behind, false);
    w.run_for(3_000);
    w.crash_node(old);
    w.set_peer_link(old, behind, true);
    let took = w.run_until_cond(30_000, |w| w.writable().len() == 1);
    assert!(took.is_some(), "no new primary:\n{}", w.trace.join("\n"));
    assert_eq!(w.writable(), vec![ahead], "the most advanced replica must win:\n{}", w.trace.join("\n"));
    // Within ttl + a few loops.
    assert!(took.unwrap() <= 10_000 + 5_000, "failover took {took:?}");
    w.run_until_cond(20_000, healthy).expect("the lagging replica follows the new primary");
    // The old primary comes back and rejoins as a standby.
    w.restart_node(old);
    w.run_until_cond(30_000, healthy).unwrap_or_else(|| panic!("old primary did not rejoin:\n{}", w.trace.join("\n")));
    assert_eq!(w.writable(), vec![ahead]);
    assert_clean(&w);
}

#[test]
fn synchronous_mode_loses_no_acknowledged_write_on_crash() {
    let mut cfg = SimConfig::default();
    cfg.settings.synchronous_mode = SyncMode::On;
    let mut w = bootstrapped(cfg);
    w.run_until_cond(10_000, |w| w.store.clone().read(0, 0).sync.is_some_and(|s| !s.value.members.is_empty()))
        .expect("a synchronous standby is published");
    for round in 0..3 {
        let old = w.writable()[0];
        w.run_for(2_000);
        w.crash_node(old);
        w.run_until_cond(40_000, |w| w.writable().len() == 1)
            .unwrap_or_else(|| panic!("round {round}: no new primary:\n{}", w.trace.join("\n")));
        w.restart_node(old);
        w.run_until_cond(40_000, healthy)
            .unwrap_or_else(|| panic!("round {round}: not healthy:\n{}", w.trace.join("\n")));
        w.run_until_cond(10_000, |w| w.store.clone().read(0, 0).sync.is_some_and(|s| !s.value.members.is_empty()))
            .expect("a synchronous standby is published again");
    }
    assert!(w.counters.get("became_primary").copied().unwrap_or(0) >= 4);
    assert_clean(&w);
}

#[test]
fn switchover_hands_over_without_losing_writes() {
    let mut w = bootstrapped(SimConfig::default());
    let old = w.writable()[0];
    let target = (old + 1) % 3;
    let acked_before = w.acked.len();
    let (old_name, target_name) = (w.nodes[old].name.clone(), w.nodes[target].name.clone());
    w.request_switchover(SwitchoverKind::Switchover, Some(&old_name), Some(&target_name));
    let took = w.run_until_cond(30_000, |w| w.writable() == vec![target]);
    assert!(took.is_some(), "switchover did not happen:\n{}", w.trace.join("\n"));
    w.run_until_cond(20_000, healthy).unwrap_or_else(|| panic!("old primary did not follow:\n{}", w.trace.join("\n")));
    assert_eq!(w.counters.get("transfer"), Some(&1));
    assert!(w.acked.len() > acked_before);
    // A planned switchover loses nothing, even asynchronously.
    assert_eq!(w.counters.get("async_acked_writes_lost"), None);
    assert!(w.store.read(w.now, w.now).switchover.is_none(), "request cleared");
    assert_clean(&w);
}

#[test]
fn dcs_outage_without_failsafe_fences_then_recovers() {
    let mut w = bootstrapped(SimConfig::default());
    let primary = w.writable()[0];
    w.set_dcs_outage(true);
    let fenced = w.run_until_cond(20_000, |w| w.writable().is_empty());
    assert!(fenced.is_some(), "primary kept writing without the DCS");
    // Fenced before its lease could have expired anywhere (ttl 10 s).
    assert!(fenced.unwrap() < 10_000, "fenced after {fenced:?}");
    w.run_for(20_000);
    assert!(w.writable().is_empty(), "nobody may write while the DCS is down");
    w.set_dcs_outage(false);
    w.run_until_cond(30_000, healthy).unwrap_or_else(|| panic!("no recovery:\n{}", w.trace.join("\n")));
    let _ = primary;
    assert_clean(&w);
}

#[test]
fn dcs_outage_with_failsafe_keeps_the_primary() {
    let mut cfg = SimConfig::default();
    cfg.settings.failsafe_mode = true;
    let mut w = bootstrapped(cfg);
    w.run_for(5_000); // the failsafe set gets published
    let primary = w.writable()[0];
    w.set_dcs_outage(true);
    let acked_at_outage = w.acked.len();
    w.run_for(30_000);
    assert_eq!(w.writable(), vec![primary], "failsafe must keep the primary:\n{}", w.trace.join("\n"));
    assert!(w.acked.len() > acked_at_outage + 200, "writes kept being acknowledged");
    assert!(w.counters.get("failsafe_round_acked").copied().unwrap_or(0) > 10);
    w.set_dcs_outage(false);
    w.run_until_cond(30_000, healthy).unwrap_or_else(|| panic!("no recovery:\n{}", w.trace.join("\n")));
    assert_eq!(w.writable(), vec![primary]);
    assert_clean(&w);
}

#[test]
fn failsafe_primary_cut_off_from_everyone_fences() {
    let mut cfg = SimConfig::default();
    cfg.settings.failsafe_mode = true;
    let mut w = bootstrapped(cfg);
    w.run_for(5_000);
    let primary = w.writable()[0];
    // The primary loses the store and its peers: no failsafe acknowledgements.
    w.set_dcs_link(primary, false);
    for j in 0..3 {
        if j != primary {
            w.set_peer_link(primary, j, false);
        }
    }
    w.run_until_cond(40_000, |w| w.writable().len() == 1 && w.writable()[0] != primary)
        .unwrap_or_else(|| panic!("no failover:\n{}", w.trace.join("\n")));
    assert_clean(&w);
}

#[test]
fn same_calls_same_trace() {
    let run = || {
        let mut w = bootstrapped(SimConfig::default());
        let p = w.writable()[0];
        w.crash_node(p);
        w.run_for(30_000);
        w.trace.join("\n")
    };
    assert_eq!(run(), run());
}
