//! The `hashell` daemon and CLI: configuration, and (issue 6) the loop that observes
//! PostgreSQL and the DCS, calls `hacore::step` and executes its actions.

pub mod api;
pub mod callbacks;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod guard;
pub mod local;
pub mod metrics;
pub mod operator;
pub mod pg;
pub mod run;
pub mod serve;
pub mod store;
pub mod tls;
pub mod watchdog;
