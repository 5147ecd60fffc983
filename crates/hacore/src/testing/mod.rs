//! Test support for embedders and backend crates (feature `testing`):
//!
//! * [`scenario`]: a builder for one node's inputs to [`crate::step`] and a renderer that
//!   prints inputs and decision as a table (the decision-table snapshots use it);
//! * [`contract`]: the `Dcs` contract suite every backend runs against its real server;
//! * [`linearizability`]: a checker for concurrent histories of the leader record.

pub mod contract;
pub mod linearizability;
pub mod scenario;
pub mod strategies;
