//! proptest strategies for users' own property suites (feature `proptest`): fault
//! schedules over a menu of fault kinds, and whole run parameters. For configs and single
//! observations of one node, see `hacore::testing::strategies`.
//!
//! ```no_run
//! use proptest::prelude::*;
//! use simulator::strategies::{params, FaultMenu};
//!
//! proptest! {
//!     #![proptest_config(ProptestConfig::with_cases(16))]
//!     #[test]
//!     fn my_cluster_survives_my_faults(p in params(3, 120_000, FaultMenu::all())) {
//!         let (report, _) = simulator::run(p);
//!         prop_assert!(report.ok(), "{:?}", report.violations);
//!     }
//! }
//! ```

use crate::nemesis::{Dir, Fault, FaultKind, Schedule, Target};
use crate::params::{DcsMode, Params};
use hacore::Millis;
use proptest::prelude::*;

/// Which fault kinds a generated schedule may contain.
#[derive(Clone, Copy, Debug)]
pub struct FaultMenu {
    /// Machine crashes.
    pub crash: bool,
    /// PostgreSQL killed, hung, slow or failing.
    pub postgres: bool,
    /// Frozen daemons.
    pub pause: bool,
    /// Partitions (store and peers, one-way too) and isolation.
    pub network: bool,
    /// Store outages and store leader changes.
    pub store: bool,
    /// Clock drift changes (and jumps, on etcd-like runs only).
    pub clocks: bool,
    /// Operator switchovers and failovers, and another cluster's data directory put on a
    /// member by mistake.
    pub operator: bool,
}

impl FaultMenu {
    /// No kind (combine with struct update syntax).
    pub fn none() -> FaultMenu {
        FaultMenu {
            crash: false,
            postgres: false,
            pause: false,
            network: false,
            store: false,
            clocks: false,
            operator: false,
        }
    }

    /// Every kind.
    pub fn all() -> FaultMenu {
        FaultMenu { crash: true, postgres: true, pause: true, network: true, store: true, clocks: true, operator: true }
    }
}

fn target(nodes: usize) -> impl Strategy<Value = Target> {
    prop_oneof![
        2 => Just(Target::Primary),
        1 => Just(Target::Replica),
        1 => (0..nodes).prop_map(Target::Node),
    ]
}

fn dir() -> impl Strategy<Value = Dir> {
    prop_oneof![Just(Dir::Both), Just(Dir::Out), Just(Dir::In)]
}

/// One fault drawn from `menu`, starting in `[start, end)`, lasting up to `max_dur`.
pub fn fault(
    nodes: usize,
    start: Millis,
    end: Millis,
    max_dur: Millis,
    menu: FaultMenu,
    jumps: bool,
) -> BoxedStrategy<Fault> {
    let t = || target(nodes);
    let mut kinds: Vec<BoxedStrategy<FaultKind>> = Vec::new();
    if menu.crash {
        kinds.push(t().prop_map(FaultKind::Crash).boxed());
    }
    if menu.postgres {
        kinds.push(t().prop_map(FaultKind::KillPg).boxed());
        kinds.push(t().prop_map(FaultKind::HangPg).boxed());
        kinds.push((t(), 2u64..20).prop_map(|(a, x)| FaultKind::SlowPg(a, x)).boxed());
        kinds.push(t().prop_map(FaultKind::FailPg).boxed());
        kinds.push(t().prop_map(FaultKind::FailPgOnce).boxed());
    }
    if menu.pause {
        kinds.push(t().prop_map(FaultKind::PauseDaemon).boxed());
    }
    if menu.network {
        kinds.push((t(), dir()).prop_map(|(a, d)| FaultKind::CutDcs(a, d)).boxed());
        kinds.push((t(), t(), dir()).prop_map(|(a, b, d)| FaultKind::CutPeer(a, b, d)).boxed());
        kinds.push(t().prop_map(FaultKind::Isolate).boxed());
    }
    if menu.store {
        kinds.push(Just(FaultKind::DcsOutage).boxed());
        kinds.push(Just(FaultKind::StoreLeaderChange).boxed());
    }
    if menu.clocks {
        kinds.push((t(), -1_000i64..1_000).prop_map(|(a, p)| FaultKind::Drift(a, p)).boxed());
        if jumps {
            kinds.push((t(), 100u64..5_000).prop_map(|(a, j)| FaultKind::ClockJump(a, j)).boxed());
        }
    }
    if menu.operator {
        kinds.push(
            (prop::option::of(t()), prop::option::of(t()), prop_oneof![Just(0), 1_000..60_000u64])
                .prop_map(|(to, from, delay)| FaultKind::Switchover { to, from, delay })
                .boxed(),
        );
        kinds.push((0..nodes).prop_map(|n| FaultKind::Failover(Target::Node(n))).boxed());
        kinds.push(t().prop_map(FaultKind::ForeignData).boxed());
    }
    if kinds.is_empty() {
        kinds.push(Just(FaultKind::StoreLeaderChange).boxed());
    }
    (prop::strategy::Union::new(kinds), start..end.max(start + 1), 1_000..max_dur.max(1_001))
        .prop_map(|(kind, at, dur)| Fault { at, dur: if kind.lasts() { dur } else { 0 }, kind })
        .boxed()
}

/// A schedule of up to `max_faults` faults within a fault phase of `duration`.
pub fn schedule(
    nodes: usize,
    duration: Millis,
    max_faults: usize,
    menu: FaultMenu,
    jumps: bool,
) -> impl Strategy<Value = Schedule> {
    let start = 15_000.min(duration / 2);
    prop::collection::vec(fault(nodes, start, duration, 60_000, menu, jumps), 0..=max_faults).prop_map(|mut faults| {
        faults.sort_by_key(|f| f.at);
        Schedule { faults }
    })
}

/// Run parameters: `nodes` nodes, the fast settings, either store mode, and a schedule.
pub fn params(nodes: usize, duration: Millis, menu: FaultMenu) -> impl Strategy<Value = Params> {
    (any::<u64>(), any::<bool>()).prop_flat_map(move |(seed, etcd)| {
        let mode = if etcd { DcsMode::Etcd } else { DcsMode::Dynamo };
        schedule(nodes, duration, 12, menu, mode == DcsMode::Etcd).prop_map(move |schedule| {
            let mut p = Params::quiet(seed, nodes);
            p.mode = mode;
            p.duration = duration;
            p.schedule = schedule;
            p
        })
    })
}
