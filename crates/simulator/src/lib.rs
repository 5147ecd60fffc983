//! Deterministic simulator for `hacore`: nodes running the real `step` in virtual time
//! over an in-memory store and a simulated PostgreSQL, with invariant checks after every
//! event.
//!
//! This is the multi-node harness of the foundation issue; the simulator issue (#3) grows
//! it into the full simulator (seeded faults, clock drift, DynamoDB-like reads, sweeps,
//! shrinking, traces and pictures).

pub mod pg;
pub mod world;

pub use world::{Acked, Node, SimConfig, World};
