//! Seeds that once failed, outside the ranges CI sweeps, each run again as it was found
//! (one simulated hour, the seed's own draw). A change to the core or the simulator can
//! send a seed's run down another path, so a seed passing here does not prove its bug
//! stays fixed: the decision tests (`crates/hacore/tests/decisions.rs`) pin each fix's
//! decision. These are the cheap second net, and the record of what the wide sweeps found.

simulator::fast_allocator!();

/// (seed, standby cluster, what it found).
const SEEDS: &[(u64, bool, &str)] = &[
    (1043, true, "R7: one event per upstream timeline recorded, 51 store writes in a second"),
    (2182, true, "L1: a member rebuilt as the leader vanished never started to replay"),
    (7518, true, "L1: the lag bound kept a standby cluster leaderless for good"),
    (8004, true, "L1: the lag bound kept a standby cluster leaderless for good"),
    (9248, true, "L1: the lag bound kept a standby cluster leaderless for good"),
    (4449, false, "S4: a stale read hid a new leader's fork; the old primary took the next term"),
    (13806, false, "L1 (the check): a final failover expected of members outside the failsafe set"),
    (13842, false, "A2: the guard, left at an expired deadline, killed a late start under a lease"),
    (14059, false, "O2 (the check): a candidate's data replaced while the transfer was on the wire"),
];

#[test]
fn seeds_that_once_failed_run_clean() {
    let failed: Vec<String> = SEEDS
        .iter()
        .filter_map(|&(seed, standby, found)| {
            let o = simulator::params::Overrides { standby: standby.then_some(true), ..Default::default() };
            let (r, _) = simulator::run(simulator::Params::from_seed_with(seed, 3_600_000, &o));
            let flag = if standby { " --standby on" } else { "" };
            (!r.ok()).then(|| {
                let first = r.violations.first().map_or(String::new(), |v| v.1.clone());
                format!("seed {seed}{flag} (once: {found}): {first}\n  replay: simulator run --seed {seed}{flag}")
            })
        })
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
