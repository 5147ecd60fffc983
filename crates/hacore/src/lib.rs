//! `hacore`: the pure decision core of a PostgreSQL high-availability manager.
//!
//! It compiles a snapshot of what a node observed ([`Observation`]), what it remembers
//! ([`Memory`]) and its monotonic clock into a list of [`Action`]s with a [`Reason`]:
//!
//! ```text
//!   step(&Config, &Memory, &Observation, now) -> Decision { memory, actions, wake_within, status }
//! ```
//!
//! No IO, no async runtime, no clock reads, no randomness: the same input always gives
//! the same output, and [`step`] never panics. The daemon (`hashell`), the deterministic
//! simulator and your own tool all drive the same function.
//!
//! # Calling contract (for embedders)
//!
//! A shell runs this loop per node:
//!
//! 1. **Observe**: query PostgreSQL, read the whole cluster from the DCS once
//!    ([`Dcs::read`]), ping peers, collect the outcomes of earlier actions, each bounded
//!    by a timeout. Put it in an [`Observation`].
//! 2. **Decide**: `let d = step(&cfg, &memory, &obs, now)` where `now` is this node's
//!    monotonic clock in ms (CLOCK_BOOTTIME on Linux: it keeps counting through suspend).
//! 3. **Execute** `d.actions` in order (contract in [`action`]): stop at the first
//!    failure or passed deadline, and report every action id as an [`Outcome`] next time.
//! 4. **Store** `memory = d.memory`, publish `d.status` to peers and operators.
//! 5. **Sleep** at most `d.wake_within` ms, waking early on a DCS change, a PostgreSQL
//!    state change, an outcome or an API request.
//!
//! Failsafe pings from a primary are answered with [`answer_failsafe`], under the same
//! lock as `step`.
//!
//! # Safety rules
//!
//! The invariants S1-S5 and L1 of the design are enforced here: a node keeps PostgreSQL
//! writable only while it holds the leader lease by its own clock (deadline = send time of
//! the last successful renewal + granted ttl - margin) and fences itself when that passes;
//! elections promote the most advanced eligible member; synchronous mode keeps
//! `synchronous_standby_names` equal to the published sync set; the fork is recorded in the
//! history before promotion and diverged nodes rewind or re-clone; every leader-side write
//! is conditioned on the leader record (the term is the fencing token).
//!
//! See `examples/embed.rs` for a complete minimal shell over the in-memory store.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod action;
pub mod codec;
pub mod config;
pub mod dcs;
mod decide;
pub mod history;
pub mod memdcs;
pub mod memory;
pub mod observation;
pub mod reason;
pub mod status;
#[cfg(feature = "testing")]
pub mod testing;
pub mod types;

/// The DCS layout version this build writes and reads.
///
/// - 1: the first layout (records carry no version; a member record without `schema` is
///   a version-1 writer).
/// - 2: member records say which version their writer reads (`schema`); readers accept
///   reasons they do not know ([`Reason::Unknown`]) and fields they do not know.
/// - 3: standby clusters: the `config` key may carry `standby_cluster`, members may
///   publish the role `standby_leader`, forks may have the causes `upstream` and
///   `cluster_promotion`. Every member of a standby cluster must read version 3: an
///   older daemon rejects such a `config` key and would lead as in a primary cluster.
///
/// A daemon writes only what every member can read: values introduced after the
/// cluster's version ([`ClusterView::schema`], the lowest any member publishes) are
/// written as their older equivalent (see [`Reason::at_schema`]). `docs/upgrading.md`
/// describes a rolling upgrade.
pub const SCHEMA: u32 = 3;

pub use action::{Action, StopMode};
pub use config::{ClusterSettings, Config, ConfigError, Safety, StandbyCluster, SyncMode, Timeouts, UPSTREAM};
pub use dcs::{ClusterView, Dcs, DcsError, DcsOp, DcsReply, LeaseGrant, LeaseModel};
pub use decide::{answer_failsafe, slot_name, step, Decision, FailsafeRequest};
pub use history::{Fork, ForkCause, History, Lineage, TimelineSwitch};
pub use memory::Memory;
pub use observation::{DataDir, Done, Failure, GuardState, Observation, Outcome, PeerReport, PgObservation};
pub use reason::Reason;
pub use status::{ElectionReport, NodeStatus, PeerStatus};
pub use types::Secret;
pub use types::{Lsn, Millis, NodeName, OpId, Tags, Term, Timeline, Version, Versioned, WalPosition};
