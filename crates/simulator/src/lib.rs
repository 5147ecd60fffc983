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
pub use run::{liveness_bound, run, RunReport};
pub use world::{Acked, Node, Stint, World};
