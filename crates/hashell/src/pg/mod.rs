//! The local PostgreSQL: reading its files, observing it, and (issue 6) acting on it.

pub mod conf;
pub mod ctl;
pub mod files;
pub mod kill;
pub mod observe;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
