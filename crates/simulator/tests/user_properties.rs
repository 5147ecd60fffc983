//! How a user writes their own property over random fault schedules (the library API):
//! `simulator::strategies` draws schedules from a menu of faults, `simulator::run` runs
//! the fault phase and the liveness phase, and the report carries every violation of the
//! safety rules found by the built-in checkers.

use proptest::prelude::*;
use simulator::strategies::{params, FaultMenu};

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    /// Any schedule of up to 12 faults of any kind, in a 3-node cluster: no violation, and
    /// the cluster converges once the faults stop.
    #[test]
    fn three_nodes_survive_any_schedule(p in params(3, 150_000, FaultMenu::all())) {
        let (report, _) = simulator::run(p);
        prop_assert!(report.ok(), "{:?}", report.violations);
        prop_assert!(report.converged_after.is_some());
    }

    /// A user-specific property: with only crashes and network faults, a switchover-free
    /// cluster never loses an acknowledged write in synchronous mode.
    #[test]
    fn synchronous_mode_never_loses_acknowledged_writes(
        mut p in params(3, 120_000, FaultMenu { crash: true, network: true, ..FaultMenu::none() })
    ) {
        p.settings.synchronous_mode = hacore::SyncMode::On;
        let (report, _) = simulator::run(p);
        prop_assert!(report.ok(), "{:?}", report.violations);
        prop_assert_eq!(report.async_lost, 0);
    }
}
