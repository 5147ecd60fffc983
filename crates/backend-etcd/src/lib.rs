//! The `Dcs` trait over etcd v3. Filled by issue 4; this crate only compiles for now.
