//! Configuration: the node's own settings ([`Config`]) and the cluster-wide dynamic
//! settings ([`ClusterSettings`]) that live in the DCS `config` key.
//!
//! All durations are milliseconds.

use crate::types::{Millis, NodeName, Tags};
use serde::{Deserialize, Serialize};

/// How writes wait for standbys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Asynchronous replication; a failover may lose up to `maximum_lag_on_failover` bytes.
    #[default]
    Off,
    /// Synchronous replication to the published sync set; when no standby is available
    /// the primary falls back to asynchronous commits (and nobody may take over).
    On,
    /// Like `On`, but writes block rather than go asynchronous when no standby is available.
    Strict,
}

impl SyncMode {
    /// Whether the sync-set discipline of S2 applies.
    pub fn enabled(self) -> bool {
        self != SyncMode::Off
    }
}

/// Cluster-wide settings. Stored in the DCS `config` key (desired state); each member
/// reports the version it has applied. A node uses [`Config::defaults`] until the key exists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// Lease time-to-live requested from the store.
    pub ttl: Millis,
    /// Longest sleep between two loops of a healthy node.
    pub loop_wait: Millis,
    /// Bound on one DCS operation including its retries.
    pub retry_timeout: Millis,
    /// A replica further behind the last published primary position than this many bytes
    /// may not take over (asynchronous mode only).
    pub maximum_lag_on_failover: u64,
    /// Synchronous replication mode.
    pub synchronous_mode: SyncMode,
    /// Number of synchronous standbys (`FIRST n`).
    pub synchronous_node_count: u32,
    /// Keep the primary writable through a DCS outage while every member acknowledges it.
    pub failsafe_mode: bool,
    /// Maintenance mode: no automatic action.
    pub paused: bool,
    /// How long the leader tries to (re)start a crashed PostgreSQL before releasing the lease.
    pub primary_start_timeout: Millis,
    /// How long the leader tolerates a PostgreSQL that runs but does not answer before it
    /// releases the lease and fences.
    pub primary_hang_timeout: Millis,
    /// How long a switchover waits for the candidate to receive the shutdown checkpoint
    /// before the old primary resumes.
    pub switchover_timeout: Millis,
    /// Set: this is a standby cluster (a disaster-recovery site). Its leader replicates
    /// from the upstream described here instead of being writable; nobody in it accepts
    /// writes. Removing it promotes the cluster (`hashell promote-cluster`). Written only
    /// when set, so a primary cluster's `config` key stays readable by older daemons.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub standby_cluster: Option<StandbyCluster>,
}

/// The member name actions use for a standby cluster's upstream (see
/// [`ClusterSettings::standby_cluster`]): [`crate::Action::Clone`],
/// [`crate::Action::StartReplica`] and [`crate::Action::Follow`] name it instead of a
/// member; the shell connects to [`StandbyCluster::pg_url`]. No member can have this name
/// (names have no `@`).
pub const UPSTREAM: &str = "@upstream";

/// Where a standby cluster's leader gets its WAL: a primary of another cluster (any
/// PostgreSQL server it can stream from), a WAL archive, or both.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StandbyCluster {
    /// Key/value libpq connection string of the server to clone from and stream from
    /// (`host=10.0.0.5 port=5432`; the replication user and password are the node's own).
    /// Empty: no streaming, WAL from `restore_command` only.
    pub pg_url: String,
    /// Replication slot to use on that server (created there by its operator).
    pub primary_slot_name: Option<String>,
    /// `restore_command` for the standby leader: WAL from an archive, used when streaming
    /// is not possible (or as the only source).
    pub restore_command: Option<String>,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            // With renewals every 5 s the primary rides out 20 s of store trouble, as at
            // Patroni's defaults (ttl 30 s, loop_wait 10 s), and a crashed primary is
            // replaced after 20-25 s (Patroni: 20-30 s).
            ttl: 25_000,
            loop_wait: 5_000,
            retry_timeout: 5_000,
            maximum_lag_on_failover: 1 << 20,
            synchronous_mode: SyncMode::Off,
            synchronous_node_count: 1,
            failsafe_mode: false,
            paused: false,
            primary_start_timeout: 60_000,
            primary_hang_timeout: 30_000,
            switchover_timeout: 30_000,
            standby_cluster: None,
        }
    }
}

/// Physical assumptions behind the lease margin (S1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Safety {
    /// Bound on the rate difference between any two clocks in the cluster (nodes and
    /// store), in parts per million. Quartz clocks without NTP stay well within 200 ppm.
    pub max_clock_drift_ppm: u32,
    /// Worst-case time from deciding to fence until PostgreSQL no longer accepts writes.
    pub fence_time: Millis,
    /// Worst-case lateness of a wake-up (scheduler delay, GC, a slow observation).
    pub wake_latency: Millis,
}

impl Default for Safety {
    fn default() -> Self {
        Safety { max_clock_drift_ppm: 1_000, fence_time: 1_500, wake_latency: 500 }
    }
}

impl Safety {
    /// The lease margin for a given ttl: `2*rho*ttl + fence_time + wake_latency`, rounded up.
    pub fn margin(&self, ttl: Millis) -> Millis {
        let drift = (2 * self.max_clock_drift_ppm as u128 * ttl as u128).div_ceil(1_000_000) as Millis;
        drift.saturating_add(self.fence_time).saturating_add(self.wake_latency)
    }
}

/// Per-operation time limits for long PostgreSQL operations. The shell must abort an
/// operation at its limit; the core gives up waiting for an outcome at the same limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    /// `initdb`.
    pub initdb: Millis,
    /// Cloning a replica (pg_basebackup or a clone hook).
    pub clone: Millis,
    /// pg_rewind.
    pub rewind: Millis,
    /// Starting PostgreSQL until it accepts connections.
    pub start: Millis,
    /// Stopping PostgreSQL.
    pub stop: Millis,
    /// Promotion until PostgreSQL leaves recovery.
    pub promote: Millis,
    /// CHECKPOINT before a switchover.
    pub checkpoint: Millis,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            initdb: 120_000,
            clone: 3_600_000,
            rewind: 600_000,
            start: 60_000,
            stop: 60_000,
            promote: 60_000,
            checkpoint: 300_000,
        }
    }
}

/// The node's own configuration: identity, tags, safety assumptions, local limits, and
/// the defaults used for cluster settings until the DCS holds a `config` key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node's name, unique in the cluster.
    pub name: NodeName,
    /// URL of this node's REST API, published for peers and the CLI.
    #[serde(default)]
    pub api_url: String,
    /// libpq connection string other nodes use to reach this PostgreSQL (replication, clone).
    #[serde(default)]
    pub pg_url: String,
    /// Member tags.
    #[serde(default)]
    pub tags: Tags,
    /// Physical assumptions behind the lease margin.
    #[serde(default)]
    pub safety: Safety,
    /// Time limits of long operations.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Use pg_rewind to rejoin a diverged node (needs `wal_log_hints` or data checksums);
    /// otherwise a diverged node is re-cloned.
    #[serde(default = "yes")]
    pub use_rewind: bool,
    /// When pg_rewind is impossible or failed, re-clone the node from the leader. When
    /// false the node stays down and waits for `reinitialize`.
    #[serde(default = "yes")]
    pub reclone_on_rewind_failure: bool,
    /// Replication slots the leader keeps whatever the topology (never dropped).
    #[serde(default)]
    pub permanent_slots: Vec<String>,
    /// Require the fencing guard to acknowledge every writable deadline.
    #[serde(default)]
    pub require_guard: bool,
    /// Cluster settings used until the DCS `config` key exists; written by the bootstrap leader.
    #[serde(default)]
    pub defaults: ClusterSettings,
}

fn yes() -> bool {
    true
}

impl Config {
    /// A configuration with defaults for the given node name.
    pub fn new(name: impl Into<NodeName>) -> Config {
        Config {
            name: name.into(),
            api_url: String::new(),
            pg_url: String::new(),
            tags: Tags::default(),
            safety: Safety::default(),
            timeouts: Timeouts::default(),
            use_rewind: true,
            reclone_on_rewind_failure: true,
            permanent_slots: Vec::new(),
            require_guard: false,
            defaults: ClusterSettings::default(),
        }
    }

    /// Checks the whole configuration. Returns every problem found, each saying what to change.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errs = Vec::new();
        if self.name.is_empty() || self.name.len() > 64 {
            errs.push(ConfigError::new("name", "must be 1 to 64 characters long"));
        } else if !self.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') {
            errs.push(ConfigError::new(
                "name",
                "may contain only letters, digits, '-', '_' and '.' (it is used in DCS keys and slot names)",
            ));
        }
        if self.safety.max_clock_drift_ppm > 100_000 {
            errs.push(ConfigError::new(
                "safety.max_clock_drift_ppm",
                "must be at most 100000 (10%); clocks drifting more than that cannot bound a lease",
            ));
        }
        if self.safety.fence_time == 0 {
            errs.push(ConfigError::new(
                "safety.fence_time",
                "must be above 0: stopping PostgreSQL takes time; measure it and add headroom",
            ));
        }
        let t = &self.timeouts;
        for (field, v) in [
            ("timeouts.initdb", t.initdb),
            ("timeouts.clone", t.clone),
            ("timeouts.rewind", t.rewind),
            ("timeouts.start", t.start),
            ("timeouts.stop", t.stop),
            ("timeouts.promote", t.promote),
            ("timeouts.checkpoint", t.checkpoint),
        ] {
            if !(1_000..=86_400_000).contains(&v) {
                errs.push(ConfigError::new(field, "must be between 1000 ms and 24 h"));
            }
        }
        if let Err(mut e) = self.defaults.validate(&self.safety) {
            for err in &mut e {
                err.field = format!("defaults.{}", err.field);
            }
            errs.extend(e);
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }
}

impl ClusterSettings {
    /// A preset for fast failover: ttl 10 s, loop_wait 1 s, retry_timeout 1 s, and the
    /// other timeouts scaled down (valid with the default safety assumptions).
    pub fn fast() -> ClusterSettings {
        ClusterSettings {
            ttl: 10_000,
            loop_wait: 1_000,
            retry_timeout: 1_000,
            primary_start_timeout: 20_000,
            primary_hang_timeout: 15_000,
            switchover_timeout: 10_000,
            ..ClusterSettings::default()
        }
    }

    /// The lease margin these settings imply under `safety`.
    pub fn margin(&self, safety: &Safety) -> Millis {
        safety.margin(self.ttl)
    }

    /// The smallest ttl satisfying `loop_wait + 2*retry_timeout + margin(ttl) <= ttl`.
    pub fn min_ttl(&self, safety: &Safety) -> Millis {
        let fixed = self
            .loop_wait
            .saturating_add(self.retry_timeout.saturating_mul(2))
            .saturating_add(safety.fence_time)
            .saturating_add(safety.wake_latency);
        let mut ttl = fixed;
        // The drift term grows with ttl; a few rounds reach the fixed point.
        for _ in 0..8 {
            let need = fixed.saturating_add(safety.margin(ttl) - safety.fence_time - safety.wake_latency);
            if need <= ttl {
                break;
            }
            ttl = need;
        }
        ttl
    }

    /// Checks the settings against the safety assumptions (S1). Each error says what to change.
    pub fn validate(&self, safety: &Safety) -> Result<(), Vec<ConfigError>> {
        let mut errs = Vec::new();
        if !(1_000..=3_600_000).contains(&self.ttl) {
            errs.push(ConfigError::new("ttl", "must be between 1000 ms and 1 h"));
        }
        // Lower bounds well above a mistyped unit (10 meant as seconds is 10 ms here).
        if !(100..=600_000).contains(&self.loop_wait) {
            errs.push(ConfigError::new("loop_wait", "must be between 100 ms and 10 min (the value is in ms)"));
        }
        if !(100..=600_000).contains(&self.retry_timeout) {
            errs.push(ConfigError::new("retry_timeout", "must be between 100 ms and 10 min (the value is in ms)"));
        }
        let margin = self.margin(safety);
        let need = self.loop_wait.saturating_add(self.retry_timeout.saturating_mul(2)).saturating_add(margin);
        if need > self.ttl {
            let min_ttl = self.min_ttl(safety);
            errs.push(ConfigError::new(
                "ttl",
                format!(
                    "loop_wait ({}) + 2*retry_timeout ({}) + margin ({margin}) = {need} ms exceeds ttl ({}); \
                     raise ttl to at least {min_ttl} or lower loop_wait/retry_timeout \
                     (margin = 2*max_clock_drift*ttl + fence_time + wake_latency)",
                    self.loop_wait,
                    2 * self.retry_timeout,
                    self.ttl
                ),
            ));
        }
        if self.synchronous_node_count == 0 || self.synchronous_node_count > 16 {
            errs.push(ConfigError::new("synchronous_node_count", "must be between 1 and 16"));
        }
        if let Some(sc) = &self.standby_cluster {
            errs.extend(sc.validate());
        }
        for (field, v) in [
            ("primary_start_timeout", self.primary_start_timeout),
            ("primary_hang_timeout", self.primary_hang_timeout),
            ("switchover_timeout", self.switchover_timeout),
        ] {
            if v < self.loop_wait || v > 86_400_000 {
                errs.push(ConfigError::new(field, "must be between loop_wait and 24 h"));
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }
}

impl StandbyCluster {
    fn validate(&self) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        let has = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.trim().is_empty());
        if self.pg_url.trim().is_empty() && !has(&self.restore_command) {
            errs.push(ConfigError::new(
                "standby_cluster",
                "needs pg_url (the primary to replicate from) or restore_command (a WAL archive), or both",
            ));
        }
        if !self.pg_url.trim().is_empty() && !self.pg_url.split_whitespace().any(|kv| kv.starts_with("host=")) {
            errs.push(ConfigError::new(
                "standby_cluster.pg_url",
                "must be a libpq connection string naming a host, e.g. \"host=10.0.0.5 port=5432\"",
            ));
        }
        if let Some(slot) = &self.primary_slot_name {
            if slot.is_empty() || !slot.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
                errs.push(ConfigError::new(
                    "standby_cluster.primary_slot_name",
                    "must be a replication slot name: lower-case letters, digits and '_'",
                ));
            }
        }
        errs
    }
}

/// One configuration problem: the field and what to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// Dotted path of the offending field.
    pub field: String,
    /// What is wrong and what to change.
    pub message: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError { field: field.into(), message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::new("n1").validate().unwrap();
    }

    #[test]
    fn fast_preset_is_valid() {
        ClusterSettings::fast().validate(&Safety::default()).unwrap();
    }

    #[test]
    fn margin_formula() {
        let s = Safety { max_clock_drift_ppm: 1000, fence_time: 1500, wake_latency: 500 };
        // 2 * 0.001 * 30000 = 60
        assert_eq!(s.margin(30_000), 2_060);
        assert_eq!(s.margin(1), 2_001);
    }

    #[test]
    fn ttl_too_small_says_what_to_do() {
        let mut c = Config::new("n1");
        c.defaults.ttl = 10_000;
        let errs = c.validate().unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "defaults.ttl");
        assert!(errs[0].message.contains("raise ttl to at least 17035"), "{}", errs[0]);
        let mut ok = c.defaults.clone();
        ok.ttl = 17_035;
        ok.validate(&c.safety).unwrap();
        ok.ttl = 17_034;
        assert!(ok.validate(&c.safety).is_err());
    }

    #[test]
    fn bad_names_rejected() {
        for bad in ["", "a/b", "x y", &"x".repeat(65)] {
            assert!(Config::new(bad).validate().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn unknown_field_rejected_by_serde() {
        let e = serde_json::from_str::<ClusterSettings>(r#"{"ttl": 30000, "tll": 1}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `tll`"), "{e}");
    }
}
