//! `GET /metrics`: Prometheus text format. The node's role, term, timeline, WAL position
//! and lease headroom; each member's lag as this node sees it; and counters of the loop,
//! the store and the actions executed.

use crate::daemon::Shared;
use hacore::dcs::MemberRole;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Counters the daemon keeps for `/metrics`.
#[derive(Default, Debug, Clone)]
pub struct Counters {
    /// Loops run.
    pub loops: u64,
    /// Duration of the last loop (observe, step, execute), ms.
    pub last_loop_ms: u64,
    /// Store reads that failed.
    pub dcs_read_errors: u64,
    /// Store reads, and their total time in ms.
    pub dcs_reads: u64,
    /// Total read time, ms.
    pub dcs_read_ms: u64,
    /// Store operations by (operation, result): count and total ms.
    pub dcs_ops: BTreeMap<(&'static str, &'static str), (u64, u64)>,
    /// Actions by (kind, result).
    pub actions: BTreeMap<(&'static str, &'static str), u64>,
    /// Wall time (s since the epoch) this node last saw the leader change.
    pub leader_changed_at: Option<f64>,
    /// Callbacks by (event, result: ok, failed, timed_out).
    pub callbacks: BTreeMap<(&'static str, &'static str), u64>,
    /// Wake-ups received from peers (`POST /wake`) that woke the loop.
    pub peer_wakeups: u64,
}

/// The result label of an outcome.
pub fn result_label(r: &Result<hacore::Done, hacore::Failure>) -> &'static str {
    use hacore::Failure::*;
    match r {
        Ok(_) => "ok",
        Err(Failed) => "failed",
        Err(Conflict) => "conflict",
        Err(Unavailable) => "unavailable",
        Err(Indeterminate) => "indeterminate",
        Err(TimedOut) => "timed_out",
        Err(Skipped) => "skipped",
    }
}

/// The kind label of an action.
pub fn action_kind(a: &hacore::action::Action) -> &'static str {
    use hacore::action::Action::*;
    match a {
        Dcs { .. } => "dcs",
        Initdb { .. } => "initdb",
        Clone { .. } => "clone",
        Rewind { .. } => "rewind",
        StartPrimary { .. } => "start_primary",
        StartReplica { .. } => "start_replica",
        Stop { .. } => "stop",
        Promote { .. } => "promote",
        Follow { .. } => "follow",
        CreateSlot { .. } => "create_slot",
        DropSlot { .. } => "drop_slot",
        Checkpoint { .. } => "checkpoint",
        ArmGuard { .. } => "arm_guard",
        FailsafePing { .. } => "failsafe_ping",
        SetSyncStandbys(_) => "set_sync_standbys",
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn gauge(out: &mut String, name: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

fn counter(out: &mut String, name: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

/// The metrics document.
pub fn render(sh: &Shared) -> String {
    let st = sh.status_doc();
    let c = sh.counters();
    let doc = crate::api::cluster_doc(sh);
    let mut out = String::new();
    let node = esc(&sh.cfg.name);
    let cluster = esc(&sh.cluster);
    gauge(
        &mut out,
        "hashell_info",
        "Constant 1, labelled with the node and cluster.",
        &[(format!("{{cluster=\"{cluster}\",node=\"{node}\",version=\"{}\"}}", env!("CARGO_PKG_VERSION")), 1.0)],
    );
    let roles = [
        (MemberRole::Primary, "primary"),
        (MemberRole::StandbyLeader, "standby_leader"),
        (MemberRole::Replica, "replica"),
        (MemberRole::Candidate, "candidate"),
        (MemberRole::Stopped, "stopped"),
        (MemberRole::Fencing, "fencing"),
        (MemberRole::Uninitialized, "uninitialized"),
    ];
    let samples: Vec<(String, f64)> =
        roles.iter().map(|(r, name)| (format!("{{role=\"{name}\"}}"), (st.role == *r) as u8 as f64)).collect();
    gauge(&mut out, "hashell_role", "1 for this node's current role.", &samples);
    gauge(&mut out, "hashell_postgres_running", "PostgreSQL runs.", &[(String::new(), st.running as u8 as f64)]);
    gauge(&mut out, "hashell_term", "Highest term this node knows.", &[(String::new(), st.term as f64)]);
    gauge(&mut out, "hashell_timeline", "PostgreSQL timeline.", &[(String::new(), st.timeline as f64)]);
    let lsn = sh.snapshot().1.position.lsn.0 as f64;
    gauge(
        &mut out,
        "hashell_wal_position_bytes",
        "End of the local WAL (received LSN on a standby).",
        &[(String::new(), lsn)],
    );
    gauge(
        &mut out,
        "hashell_writable_headroom_seconds",
        "Seconds this node may stay writable under its lease (0: not writable).",
        &[(String::new(), st.writable_for_ms.unwrap_or(0) as f64 / 1000.0)],
    );
    gauge(&mut out, "hashell_paused", "Maintenance mode.", &[(String::new(), st.paused as u8 as f64)]);
    if let Some(d) = &doc {
        let lag: Vec<(String, f64)> = d
            .members
            .iter()
            .filter_map(|m| m.lag.map(|l| (format!("{{member=\"{}\"}}", esc(&m.name)), l as f64)))
            .collect();
        gauge(&mut out, "hashell_member_lag_bytes", "Bytes each standby has received behind the leader.", &lag);
        let replay: Vec<(String, f64)> = d
            .members
            .iter()
            .filter_map(|m| m.replay_lag.map(|l| (format!("{{member=\"{}\"}}", esc(&m.name)), l as f64)))
            .collect();
        gauge(
            &mut out,
            "hashell_member_replay_lag_bytes",
            "Bytes each standby has replayed behind the leader.",
            &replay,
        );
        let pos: Vec<(String, f64)> = d
            .members
            .iter()
            .filter_map(|m| {
                let lsn = crate::pg::files::parse_lsn(&m.lsn)?;
                Some((format!("{{member=\"{}\",timeline=\"{}\"}}", esc(&m.name), m.timeline), lsn.0 as f64))
            })
            .collect();
        gauge(&mut out, "hashell_member_wal_position_bytes", "End of each member's WAL (received on standbys).", &pos);
        let running: Vec<(String, f64)> =
            d.members.iter().map(|m| (format!("{{member=\"{}\"}}", esc(&m.name)), m.running as u8 as f64)).collect();
        gauge(&mut out, "hashell_member_running", "PostgreSQL runs on each member.", &running);
    }
    counter(&mut out, "hashell_loops_total", "Loops run.", &[(String::new(), c.loops as f64)]);
    gauge(
        &mut out,
        "hashell_loop_duration_seconds",
        "Duration of the last loop.",
        &[(String::new(), c.last_loop_ms as f64 / 1000.0)],
    );
    counter(&mut out, "hashell_dcs_reads_total", "Reads of the store.", &[(String::new(), c.dcs_reads as f64)]);
    counter(
        &mut out,
        "hashell_dcs_read_errors_total",
        "Reads of the store that failed.",
        &[(String::new(), c.dcs_read_errors as f64)],
    );
    counter(
        &mut out,
        "hashell_dcs_read_seconds_total",
        "Time spent reading the store.",
        &[(String::new(), c.dcs_read_ms as f64 / 1000.0)],
    );
    let ops: Vec<(String, f64)> =
        c.dcs_ops.iter().map(|((op, r), (n, _))| (format!("{{op=\"{op}\",result=\"{r}\"}}"), *n as f64)).collect();
    counter(&mut out, "hashell_dcs_operations_total", "Store operations by operation and result.", &ops);
    let secs: Vec<(String, f64)> = c
        .dcs_ops
        .iter()
        .map(|((op, r), (_, ms))| (format!("{{op=\"{op}\",result=\"{r}\"}}"), *ms as f64 / 1000.0))
        .collect();
    counter(&mut out, "hashell_dcs_operation_seconds_total", "Time spent in store operations.", &secs);
    counter(
        &mut out,
        "hashell_peer_wakeups_total",
        "Wake-ups from peers that ran the loop (stores without a watch).",
        &[(String::new(), c.peer_wakeups as f64)],
    );
    let acts: Vec<(String, f64)> =
        c.actions.iter().map(|((k, r), n)| (format!("{{kind=\"{k}\",result=\"{r}\"}}"), *n as f64)).collect();
    counter(&mut out, "hashell_actions_total", "Actions executed by kind and result.", &acts);
    let cbs: Vec<(String, f64)> =
        c.callbacks.iter().map(|((e, r), n)| (format!("{{event=\"{e}\",result=\"{r}\"}}"), *n as f64)).collect();
    counter(&mut out, "hashell_callbacks_total", "Callbacks run by event and result.", &cbs);
    if let Some(t) = c.leader_changed_at {
        gauge(
            &mut out,
            "hashell_leader_change_timestamp_seconds",
            "When this node last saw the leader change.",
            &[(String::new(), t)],
        );
    }
    out
}
