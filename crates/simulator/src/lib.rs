//! Deterministic simulator for `hacore`: every node runs the real `step` in virtual time,
//! over a simulated store (etcd-like or DynamoDB-like), a simulated PostgreSQL whose WAL is
//! a sequence of records, clocks with bounded drift, and a seeded nemesis; checkers verify
//! the safety invariants after every event and liveness once the faults stop.
//!
//! * [`Params::from_seed`]: everything a run depends on, from one `u64`.
//! * [`run`]: a fault phase then a liveness phase, returning a [`RunReport`].
//! * [`World`]: the engine, for hand-written scenarios and users' own tests.

pub mod check;
pub mod clock;
pub mod nemesis;
pub mod params;
pub mod pg;
pub mod rng;
pub mod run;
pub mod scenario;
#[cfg(feature = "proptest")]
pub mod strategies;
pub mod svg;
pub mod trace;
pub mod world;

pub use check::Checker;
pub use nemesis::{Dir, Fault, FaultKind, Schedule, Target};
pub use params::{DcsMode, Params};
pub use run::{failover_gap_bound, liveness_bound, run, switchover_gap_bound, RunReport};
pub use world::{Acked, Node, Stint, World};

#[cfg(feature = "mimalloc")]
#[doc(hidden)]
pub use mimalloc;

/// With the `mimalloc` feature: tells mimalloc to keep the memory a run frees for the next
/// run instead of handing it back to the kernel (its `purge_delay` option set to -1). A run
/// frees its WAL chunks (tens of MiB an hour) at its end; handed back, the next run's
/// chunks fault in fresh pages that the kernel zeroes first, which was 10-14% of the speed
/// benchmark's time (docs/benchmarks.md). The process keeps its peak instead. Called by
/// [`World::new`]; harmless where mimalloc is not the global allocator.
pub(crate) fn keep_freed_memory() {
    #[cfg(feature = "mimalloc")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // `mi_option_purge_delay` in mimalloc's v2 and v3 headers; libmimalloc-sys names
        // the options before and after it (14, 16) but not this one.
        const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
        // SAFETY: mi_option_set only stores the value; any option index and value is valid.
        ONCE.call_once(|| unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) });
    }
}

/// Makes mimalloc the allocator of the binary that invokes it (this crate's feature
/// `mimalloc`, on by default; without it the macro expands to nothing). The library never
/// sets an allocator itself. A simulation allocates and frees a view and an observation
/// per node loop, and the `simulator` binary, the speed benchmark and the sweep test use
/// this (docs/benchmarks.md); a user's own property-test binary can do the same:
///
/// ```
/// simulator::fast_allocator!();
/// fn main() {}
/// ```
#[cfg(feature = "mimalloc")]
#[macro_export]
macro_rules! fast_allocator {
    () => {
        #[global_allocator]
        static ALLOCATOR: $crate::mimalloc::MiMalloc = $crate::mimalloc::MiMalloc;
    };
}

/// Without the `mimalloc` feature: the system allocator stays.
#[cfg(not(feature = "mimalloc"))]
#[macro_export]
macro_rules! fast_allocator {
    () => {};
}
