//! The operator's commands that read or change the cluster: `list`, `history`, `pause`,
//! `resume`, `show-config`, `edit-config`. They reach the store from the configuration
//! file, and the members' REST APIs for live positions.

use crate::api::{ClusterDoc, MemberDoc, PeerClient};
use crate::config::FileConfig;
use crate::operator::{self, DynDcs, OpError};
use hacore::dcs::ClusterView;
use std::time::Duration;

/// Output format of `list` and `history`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// One JSON document.
    Json,
}

/// A command's failure: the message and the exit code (1: the cluster refused or could
/// not be reached; 2: the request itself was wrong).
pub struct CmdError(pub String, pub u8);

impl From<OpError> for CmdError {
    fn from(e: OpError) -> Self {
        let code = if matches!(e, OpError::Bad(_)) { 2 } else { 1 };
        CmdError(e.to_string(), code)
    }
}

impl From<String> for CmdError {
    fn from(e: String) -> Self {
        CmdError(e, 1)
    }
}

/// The cluster as a member's REST API reports it (live positions), or as the store has
/// it when no member answers.
pub async fn cluster(cfg: &FileConfig, store: &dyn DynDcs) -> Result<ClusterDoc, CmdError> {
    let view = operator::read(store).await?;
    let client = PeerClient::for_config(cfg)?;
    // Ask this node first, then the leader, then anyone.
    let mut urls = vec![cfg.rest.url()];
    let leader = view.leader.as_ref().map(|l| l.value.holder.clone());
    let mut members: Vec<_> = view.members.iter().map(|m| &m.value).collect();
    members.sort_by_key(|m| Some(&m.name) != leader.as_ref());
    urls.extend(members.iter().map(|m| m.api_url.trim_end_matches('/').to_string()));
    urls.dedup();
    for u in urls {
        if let Ok((200, Some(doc))) =
            client.call::<ClusterDoc>("GET", &format!("{u}/cluster"), None, Duration::from_secs(2)).await
        {
            return Ok(doc);
        }
    }
    Ok(from_view(&cfg.cluster.name, &view))
}

/// The cluster from the store alone (positions as published, no lag).
fn from_view(cluster: &str, view: &ClusterView) -> ClusterDoc {
    let leader = view.leader.as_ref().map(|l| l.value.holder.clone());
    let sync: Vec<String> = view.sync.as_ref().map(|s| s.value.members.to_vec()).unwrap_or_default();
    ClusterDoc {
        cluster: cluster.to_string(),
        leader: leader.clone(),
        term: view.leader.as_ref().map_or(view.term.0, |l| l.value.term.0),
        paused: view.config.as_ref().is_some_and(|c| c.value.paused),
        switchover: view.switchover.as_ref().map(|s| s.value.clone()),
        members: view
            .members
            .iter()
            .map(|m| {
                let r = &m.value;
                MemberDoc {
                    name: r.name.clone(),
                    role: r.role,
                    leader: leader.as_ref() == Some(&r.name),
                    sync: sync.contains(&r.name),
                    running: r.running,
                    host: r.pg_url.clone(),
                    api_url: r.api_url.clone(),
                    timeline: r.timeline.0,
                    lsn: r.lsn.to_string(),
                    lag: None,
                    replayed_lsn: None,
                    replay_lag: None,
                    live: false,
                    tags: r.tags.clone(),
                    pending_restart: r.pending_restart,
                    reason: r.reason,
                    schema: r.reads_schema(),
                }
            })
            .collect(),
        corrupt: view.corrupt.iter().map(|c| c.key.path()).collect(),
        schema: view.schema(),
        answered_by: "the store (no member's REST API answered)".into(),
    }
}

fn role_name(m: &MemberDoc) -> String {
    let r = serde_json::to_value(m.role).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    match (m.leader, m.sync) {
        (true, _) => format!("{r} (leader)"),
        (false, true) => format!("{r} (sync)"),
        _ => r,
    }
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Renders rows as aligned columns.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect();
        parts.join("  ").trim_end().to_string()
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.clone()));
        out.push('\n');
    }
    out
}

/// `hashell list` as text.
pub fn render_list(doc: &ClusterDoc) -> String {
    let mut out = format!(
        "cluster {} · leader {} · term {}{}\n",
        doc.cluster,
        doc.leader.as_deref().unwrap_or("none"),
        doc.term,
        if doc.paused { " · PAUSED (maintenance mode)" } else { "" }
    );
    if let Some(s) = &doc.switchover {
        out.push_str(&format!(
            "pending {:?}: {} -> {}\n",
            s.kind,
            s.from.as_deref().unwrap_or("-"),
            s.to.as_deref().unwrap_or("the best replica")
        ));
    }
    let rows: Vec<Vec<String>> = doc
        .members
        .iter()
        .map(|m| {
            let mut notes = Vec::new();
            if m.pending_restart {
                notes.push("pending restart".to_string());
            }
            if m.tags.nofailover {
                notes.push("nofailover".into());
            }
            if m.tags.nosync {
                notes.push("nosync".into());
            }
            if m.tags.noloadbalance {
                notes.push("noloadbalance".into());
            }
            if !m.live {
                notes.push("as published".into());
            }
            vec![
                m.name.clone(),
                m.host.clone(),
                role_name(m),
                if m.running { "running" } else { "stopped" }.into(),
                m.timeline.to_string(),
                m.lsn.clone(),
                m.lag.map_or_else(|| "-".into(), human_bytes),
                m.replayed_lsn.clone().unwrap_or_else(|| "-".into()),
                m.replay_lag.map_or_else(|| "-".into(), human_bytes),
                notes.join(", "),
            ]
        })
        .collect();
    let header = ["MEMBER", "HOST", "ROLE", "STATE", "TL", "RECEIVED", "LAG", "REPLAYED", "REPLAY LAG", "NOTES"];
    out.push_str(&table(&header, &rows));
    if !doc.corrupt.is_empty() {
        out.push_str(&format!("corrupt keys in the store: {}\n", doc.corrupt.join(", ")));
    }
    out
}

/// `hashell history`.
pub fn render_history(forks: &[hacore::history::Fork]) -> String {
    let rows: Vec<Vec<String>> = forks
        .iter()
        .map(|f| {
            vec![
                f.timeline.0.to_string(),
                f.parent.0.to_string(),
                f.lsn.to_string(),
                f.term.0.to_string(),
                f.node.clone(),
                format!("{:?}", f.cause),
                wall_time(f.wall_time_ms),
            ]
        })
        .collect();
    table(&["TL", "PARENT", "FORK LSN", "TERM", "NODE", "CAUSE", "TIME (UTC)"], &rows)
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of wall-clock ms since the epoch.
pub fn wall_time(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// RFC 3339 (UTC, whole seconds) of wall-clock ms since the epoch.
pub fn rfc3339(ms: u64) -> String {
    format!("{}Z", wall_time(ms).replace(' ', "T"))
}

/// `hashell pause` / `resume`: sets `paused`; with `wait`, until every member applied it.
pub async fn set_paused(cfg: &FileConfig, store: &dyn DynDcs, paused: bool, wait: bool) -> Result<String, CmdError> {
    let patch = serde_json::json!({ "paused": paused });
    let core = cfg.core();
    operator::patch_config(store, &patch, &core.defaults, &core.safety, "cli").await?;
    let what = if paused { "paused (maintenance mode: no automatic failover)" } else { "resumed" };
    if !wait {
        return Ok(format!("cluster {} {what}", cfg.cluster.name));
    }
    let limit = Duration::from_millis(3 * cfg.settings.loop_wait.0 + 2 * cfg.settings.retry_timeout.0);
    eprintln!("{what}; waiting until every member applied it (at most {} s) ...", limit.as_secs());
    let start = std::time::Instant::now();
    loop {
        let v = operator::read(store).await?;
        let version = v.config.as_ref().map(|c| c.version);
        if v.members.iter().all(|m| m.value.applied_config == version) {
            return Ok(format!("cluster {} {what}; every member applied it", cfg.cluster.name));
        }
        if start.elapsed() > limit {
            let behind: Vec<&str> =
                v.members.iter().filter(|m| m.value.applied_config != version).map(|m| m.value.name.as_str()).collect();
            return Err(CmdError(format!("{what}, but {} did not apply it within {limit:?}", behind.join(", ")), 1));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `hashell promote-cluster`: removes `standby_cluster` from the cluster's settings,
/// then waits until the leader runs as a writable primary.
pub async fn promote_cluster(cfg: &FileConfig, store: &dyn DynDcs, force: bool, wait: f64) -> Result<String, CmdError> {
    let view = operator::read(store).await?;
    let name = &cfg.cluster.name;
    let standby = view.config.as_ref().is_some_and(|c| c.value.standby_cluster.is_some());
    if !standby {
        return Err(CmdError(format!("cluster {name} is not a standby cluster; nothing to promote"), 1));
    }
    let Some(leader) = view.leader.as_ref().map(|l| l.value.holder.clone()) else {
        return Err(CmdError(format!("cluster {name} has no leader to promote; wait for its election"), 1));
    };
    confirm(
        &format!(
            "This makes standby cluster {name} writable: {leader} stops replicating from the upstream and is promoted \
             on a new timeline. The upstream's primary must no longer accept writes, or two sites will"
        ),
        name,
        force,
    )?;
    let core = cfg.core();
    let patch = serde_json::json!({ "standby_cluster": null });
    operator::patch_config(store, &patch, &core.defaults, &core.safety, "cli").await?;
    if !(wait.is_finite() && wait > 0.0) {
        return Ok(format!("cluster {name}: promotion requested; {leader} promotes at its next loop"));
    }
    let limit = Duration::from_secs_f64(wait.min(86_400.0));
    let start = std::time::Instant::now();
    loop {
        let v = operator::read(store).await?;
        let primary = v.leader.as_ref().and_then(|l| {
            let m = v.member(&l.value.holder)?;
            (m.value.role == hacore::dcs::MemberRole::Primary).then(|| (m.value.name.clone(), m.value.timeline))
        });
        if let Some((who, timeline)) = primary {
            return Ok(format!("cluster {name} promoted: {who} is the primary on timeline {timeline}"));
        }
        if start.elapsed() > limit {
            return Err(CmdError(
                format!("promotion requested, but no writable primary within {limit:?}; see hashell list and events"),
                1,
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `hashell reinit`: asks NODE's daemon to rebuild its data directory (after a
/// confirmation on a terminal, or `--force`).
pub async fn reinit(cfg: &FileConfig, store: &dyn DynDcs, node: &str, force: bool) -> Result<String, CmdError> {
    let view = operator::read(store).await?;
    let m = view.member(node).ok_or_else(|| {
        let names: Vec<&str> = view.members.iter().map(|m| m.value.name.as_str()).collect();
        CmdError(format!("{node} is not a member; members: {}", names.join(", ")), 2)
    })?;
    if view.leader.as_ref().is_some_and(|l| l.value.holder == node) {
        return Err(CmdError(format!("{node} is the leader: switch over to another member first"), 1));
    }
    confirm(&format!("This wipes {node}'s data directory and clones it again from a healthy member"), node, force)?;
    let url = format!("{}/reinitialize", m.value.api_url.trim_end_matches('/'));
    let client = PeerClient::for_config(cfg)?;
    match client.call::<serde_json::Value>("POST", &url, None, Duration::from_secs(5)).await {
        Ok((200, Some(v))) => Ok(format!("{node}: {}", v["message"].as_str().unwrap_or("reinitializing"))),
        Ok((code, v)) => Err(CmdError(
            format!(
                "{node} refused ({code}): {}",
                v.and_then(|v| v["error"].as_str().map(str::to_string)).unwrap_or_default()
            ),
            1,
        )),
        Err(e) => Err(CmdError(format!("cannot reach {node}'s REST API: {e}"), 1)),
    }
}

/// Asks "type NAME to confirm" on a terminal; without one, `force` must be given (exit 2
/// tells what to add). `what` says what the command does.
pub fn confirm(what: &str, name: &str, force: bool) -> Result<(), CmdError> {
    confirm_or(what, name, force, "--force")
}

/// [`confirm`], naming `flag` as the way to confirm without a terminal.
fn confirm_or(what: &str, name: &str, force: bool, flag: &str) -> Result<(), CmdError> {
    use std::io::{BufRead, IsTerminal, Write};
    if force {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(CmdError(format!("{what}; add {flag} to confirm without a terminal"), 2));
    }
    print!("{what}. Type {name} to confirm: ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    if line.trim() != name {
        return Err(CmdError("not confirmed; nothing done".into(), 1));
    }
    Ok(())
}

/// `hashell topology`: the leader, and under it every other member with its state.
pub fn render_topology(doc: &ClusterDoc) -> String {
    let mut out = format!(
        "cluster {} · term {}{}\n",
        doc.cluster,
        doc.term,
        if doc.paused { " · PAUSED (maintenance mode)" } else { "" }
    );
    let line = |m: &MemberDoc| {
        let state = if m.running { "running" } else { "stopped" };
        let lag = m.lag.map_or_else(String::new, |l| format!(" · lag {}", human_bytes(l)));
        let reason = m.reason.map_or_else(String::new, |r| {
            format!(
                " · {}",
                serde_json::to_value(r).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
            )
        });
        format!("{} ({}) {} {state} · TL {} · {}{lag}{reason}", m.name, m.host, role_name(m), m.timeline, m.lsn)
    };
    let leader = doc.members.iter().find(|m| m.leader);
    let others: Vec<&MemberDoc> = doc.members.iter().filter(|m| !m.leader).collect();
    match leader {
        Some(l) => out.push_str(&format!("{}\n", line(l))),
        None => out.push_str("(no leader)\n"),
    }
    for (i, m) in others.iter().enumerate() {
        let branch = if i + 1 == others.len() { "└─" } else { "├─" };
        out.push_str(&format!("{branch} {}\n", line(m)));
    }
    out
}

/// `hashell events`: the cluster's recorded events, oldest first.
pub fn render_events(events: &[hacore::dcs::Event]) -> String {
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let reason =
                serde_json::to_value(e.reason).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            vec![wall_time(e.wall_time_ms), e.node.clone(), e.term.0.to_string(), reason, e.detail.clone()]
        })
        .collect();
    table(&["TIME (UTC)", "NODE", "TERM", "EVENT", "DETAIL"], &rows)
}

/// Which members `hashell restart` restarts, and how.
#[derive(Clone, Copy, Debug, Default)]
pub struct RestartHow<'a> {
    /// Only members in this role (`primary`, `replica`, `any`).
    pub role: Option<&'a str>,
    /// Only members with settings waiting for a restart.
    pub pending: bool,
    /// Schedule it (RFC 3339) on each member instead of restarting now.
    pub at: Option<&'a str>,
    /// Switch over from the leader after the replicas instead of restarting it in place.
    pub switchover: bool,
}

/// `hashell restart`: restarts PostgreSQL on the chosen members (replicas first, the
/// leader last, or a switchover instead of the leader), each through its REST API,
/// waiting for each before the next.
pub async fn restart(
    cfg: &FileConfig,
    store: &dyn DynDcs,
    names: &[String],
    how: &RestartHow<'_>,
    force: bool,
) -> Result<String, CmdError> {
    let view = operator::read(store).await?;
    for n in names {
        if view.member(n).is_none() {
            let all: Vec<&str> = view.members.iter().map(|m| m.value.name.as_str()).collect();
            return Err(CmdError(format!("{n} is not a member; members: {}", all.join(", ")), 2));
        }
    }
    if let Some(t) = how.at {
        operator::parse_wall_ms(t).ok_or_else(|| {
            CmdError(format!("--at {t:?} is not an RFC 3339 time such as 2026-11-22T03:00:00+01:00"), 2)
        })?;
    }
    if how.switchover && (how.at.is_some() || how.role.is_some()) {
        return Err(CmdError("--switchover restarts now and every role: drop --at and --role".into(), 2));
    }
    let leader = view.leader.as_ref().map(|l| l.value.holder.clone());
    let mut members: Vec<&hacore::dcs::MemberRecord> =
        view.members.iter().map(|m| &*m.value).filter(|m| names.is_empty() || names.contains(&m.name)).collect();
    members.sort_by_key(|m| (Some(&m.name) == leader.as_ref(), m.name.clone()));
    if members.is_empty() {
        return Err(CmdError("no member to restart".into(), 1));
    }
    let list: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    let when = how.at.map_or_else(|| "now".to_string(), |t| format!("at {t}"));
    let then = if how.switchover { ", switching over from the leader instead of restarting it" } else { "" };
    confirm(&format!("Restart PostgreSQL on {} ({when}{then})", list.join(", ")), &cfg.cluster.name, force)?;
    let client = PeerClient::for_config(cfg)?;
    let mut body = serde_json::Map::new();
    if let Some(r) = how.role {
        body.insert("role".into(), r.into());
    }
    if how.pending {
        body.insert("restart_pending".into(), true.into());
    }
    if let Some(t) = how.at {
        body.insert("schedule".into(), t.into());
    }
    let body = serde_json::Value::Object(body).to_string();
    let t = &cfg.timeouts;
    let limit = Duration::from_millis(t.stop + t.start + cfg.settings.ttl.0 + 5_000);
    let mut lines = Vec::new();
    let mut failed = false;
    for m in members {
        let line = if how.switchover && Some(&m.name) == leader.as_ref() {
            if how.pending && !m.pending_restart {
                Ok(format!("{}: nothing pending, no switchover", m.name))
            } else if failed {
                Err(format!("{}: no switchover, a replica's restart failed", m.name))
            } else {
                eprintln!("{}: switching over ...", m.name);
                restart_by_switchover(cfg, store, &m.name).await
            }
        } else {
            eprintln!("{}: restarting ...", m.name);
            let url = format!("{}/restart", m.api_url.trim_end_matches('/'));
            let r = client.call::<serde_json::Value>("POST", &url, Some(body.clone().into_bytes()), limit).await;
            answer_line(&m.name, r, |v| v["message"].as_str().unwrap_or("done").to_string())
        };
        failed |= line.is_err();
        let line = line.unwrap_or_else(|e| e);
        eprintln!("{line}");
        lines.push(line);
    }
    if failed {
        return Err(CmdError(format!("not every restart succeeded:\n{}", lines.join("\n")), 1));
    }
    Ok(lines.join("\n"))
}

/// The leader's part of a rolling restart: a switchover to the best replica. The old
/// leader's PostgreSQL stops and starts again as a standby, with its new settings.
async fn restart_by_switchover(cfg: &FileConfig, store: &dyn DynDcs, leader: &str) -> Result<String, String> {
    let ask = operator::SwitchoverAsk {
        kind: hacore::dcs::SwitchoverKind::Switchover,
        from: Some(leader.to_string()),
        to: None,
        at_wall_ms: None,
    };
    let req = operator::request_switchover(store, &ask).await.map_err(|e| format!("{leader}: {}", e.message()))?;
    let s = &cfg.settings;
    let limit = Duration::from_millis(s.switchover_timeout.0 + s.ttl.0 + cfg.timeouts.stop + cfg.timeouts.start);
    let new = operator::wait_switchover(store, &req, limit).await.map_err(|e| format!("{leader}: {}", e.message()))?;
    Ok(format!("{leader}: restarted by a switchover to {new}"))
}

/// A member's answer to a CLI call as one line: `ok` words a success (200 or 202 with a
/// JSON body); a refusal or no answer is the error.
fn answer_line(
    name: &str,
    r: Result<(u16, Option<serde_json::Value>), String>,
    ok: impl FnOnce(&serde_json::Value) -> String,
) -> Result<String, String> {
    match r {
        Ok((200 | 202, Some(v))) => Ok(format!("{name}: {}", ok(&v))),
        Ok((code, v)) => {
            let e = v.and_then(|v| v["error"].as_str().map(str::to_string)).unwrap_or_default();
            Err(format!("{name}: refused ({code}): {e}"))
        }
        Err(e) => Err(format!("{name}: cannot reach its REST API: {e}")),
    }
}

/// `hashell reload`: asks MEMBERs (default: all) to re-read their configuration file.
pub async fn reload(cfg: &FileConfig, store: &dyn DynDcs, names: &[String]) -> Result<String, CmdError> {
    let view = operator::read(store).await?;
    let client = PeerClient::for_config(cfg)?;
    let mut lines = Vec::new();
    let mut failed = false;
    for m in view.members.iter().map(|m| &m.value).filter(|m| names.is_empty() || names.contains(&m.name)) {
        let url = format!("{}/reload", m.api_url.trim_end_matches('/'));
        let r = client.call::<serde_json::Value>("POST", &url, None, Duration::from_secs(10)).await;
        let line = answer_line(&m.name, r, |v| {
            let list =
                |k: &str| v[k].as_array().map(|a| a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", "));
            let mut line = "reloaded".to_string();
            if let Some(a) = list("applied").filter(|a| !a.is_empty()) {
                line.push_str(&format!("; applied {a}"));
            }
            if let Some(a) = list("need_daemon_restart").filter(|a| !a.is_empty()) {
                line.push_str(&format!("; takes a daemon restart: {a}"));
            }
            if let Some(a) = list("settings_in_store").filter(|a| !a.is_empty()) {
                line.push_str(&format!("; the store's settings rule, use edit-config for: {a}"));
            }
            if v["pending_restart"] == true {
                line.push_str("; PostgreSQL needs a restart (hashell restart --pending)");
            }
            line
        });
        failed |= line.is_err();
        lines.push(line.unwrap_or_else(|e| e));
    }
    if failed {
        return Err(CmdError(lines.join("\n"), 1));
    }
    Ok(lines.join("\n"))
}

/// `hashell remove`: deletes the cluster from the store once no member runs (watched for
/// a ttl: a live member renews its record, or on etcd keeps it from expiring).
pub async fn remove(
    cfg: &FileConfig,
    store: &crate::store::Store,
    confirmed: Option<&str>,
) -> Result<String, CmdError> {
    let name = &cfg.cluster.name;
    match confirmed {
        Some(c) if c == name => {}
        Some(c) => {
            return Err(CmdError(format!("--confirm {c:?} is not this cluster's name ({name}); nothing done"), 2))
        }
        None => confirm_or(
            &format!("Remove cluster {name} and everything the store holds for it"),
            name,
            false,
            &format!("--confirm {name}"),
        )?,
    }
    let first = operator::read(store).await?;
    let settings = first.config.as_ref().map_or_else(|| cfg.core().defaults, |c| c.value.clone());
    let wait = Duration::from_millis(settings.ttl + settings.loop_wait + 1_000);
    if !first.members.is_empty() || first.leader.is_some() {
        eprintln!("watching the members for {wait:?}: a running daemon must not lose its cluster ...");
        tokio::time::sleep(wait).await;
        let now = operator::read(store).await?;
        let versions = |v: &ClusterView| {
            let mut x: Vec<(String, u64)> = v.members.iter().map(|m| (m.value.name.clone(), m.version.0)).collect();
            x.extend(v.leader.as_ref().map(|l| ("(leader)".to_string(), l.version.0)));
            x
        };
        let (a, b) = (versions(&first), versions(&now));
        let alive: Vec<String> = match now.lease_model {
            // etcd deletes a stopped member's key when its lease expires: what remains lives.
            hacore::dcs::LeaseModel::StoreExpiry => b.iter().map(|(n, _)| n.clone()).collect(),
            // DynamoDB keeps records: a live member rewrites its own.
            hacore::dcs::LeaseModel::ObserverClock => {
                b.iter().filter(|x| !a.contains(x)).map(|(n, _)| n.clone()).collect()
            }
        };
        if !alive.is_empty() {
            return Err(CmdError(
                format!("{} still run: stop their daemons first (nothing removed)", alive.join(", ")),
                1,
            ));
        }
    }
    let n = store.remove_cluster().await.map_err(|e| CmdError(format!("removing: {e}"), 1))?;
    Ok(format!("cluster {name} removed from {} ({n} keys)", store.location()))
}

/// `edit-config` without `-s`: the settings in `$EDITOR` (JSON). Returns what changed as
/// a merge patch (removed keys reset to their defaults), applied to the settings as they
/// are when it is written: a concurrent edit of other keys is kept, not overwritten.
pub fn edit_in_editor(current: &serde_json::Value) -> Result<Option<serde_json::Value>, CmdError> {
    let editor = std::env::var("VISUAL").or_else(|_| std::env::var("EDITOR")).map_err(|_| {
        CmdError("no -s KEY=VALUE given and neither $VISUAL nor $EDITOR is set: set one, or use -s".into(), 2)
    })?;
    let path = std::env::temp_dir().join(format!("hashell-settings-{}.json", std::process::id()));
    let text = serde_json::to_string_pretty(current).unwrap_or_default();
    std::fs::write(&path, format!("{text}\n"))
        .map_err(|e| CmdError(format!("cannot write {}: {e}", path.display()), 1))?;
    let status = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&path)
        .status()
        .map_err(|e| CmdError(format!("cannot run {editor}: {e}"), 1))?;
    let edited = std::fs::read_to_string(&path);
    let _ = std::fs::remove_file(&path);
    if !status.success() {
        return Err(CmdError(format!("{editor} exited with {status}; nothing changed"), 1));
    }
    let edited: serde_json::Value = serde_json::from_str(&edited.unwrap_or_default())
        .map_err(|e| CmdError(format!("the edited settings are not JSON ({e}); nothing changed"), 2))?;
    let (Some(old), Some(new)) = (current.as_object(), edited.as_object()) else {
        return Err(CmdError("the edited settings must stay one JSON object; nothing changed".into(), 2));
    };
    let mut patch = serde_json::Map::new();
    for (k, v) in new {
        if old.get(k) != Some(v) {
            patch.insert(k.clone(), v.clone());
        }
    }
    for k in old.keys().filter(|k| !new.contains_key(*k)) {
        patch.insert(k.clone(), serde_json::Value::Null);
    }
    Ok((!patch.is_empty()).then_some(serde_json::Value::Object(patch)))
}

/// Parses `-s key=value` pairs into a JSON merge patch (values are JSON where they parse
/// as JSON, strings otherwise; `null` resets a setting to its default).
pub fn sets_to_patch(sets: &[String]) -> Result<serde_json::Value, CmdError> {
    let mut obj = serde_json::Map::new();
    for s in sets {
        let (k, v) =
            s.split_once('=').ok_or_else(|| CmdError(format!("-s {s:?}: write KEY=VALUE, e.g. -s paused=true"), 2))?;
        let v = serde_json::from_str(v.trim()).unwrap_or_else(|_| serde_json::Value::String(v.to_string()));
        obj.insert(k.trim().to_string(), v);
    }
    if obj.is_empty() {
        return Err(CmdError("give at least one -s KEY=VALUE (e.g. -s ttl=20000 -s paused=null)".into(), 2));
    }
    Ok(serde_json::Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_times_and_sizes() {
        assert_eq!(wall_time(0), "1970-01-01 00:00:00");
        assert_eq!(wall_time(1_795_337_604_500), "2026-11-22 08:53:24");
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(16 << 20), "16.0 MB");
    }

    #[test]
    fn sets_become_a_merge_patch() {
        let p = sets_to_patch(&["ttl=20000".into(), "paused=null".into(), "synchronous_mode=on".into()]).ok().unwrap();
        assert_eq!(p, serde_json::json!({"ttl": 20000, "paused": null, "synchronous_mode": "on"}));
        assert_eq!(sets_to_patch(&["ttl".into()]).err().map(|e| e.1), Some(2));
        assert_eq!(sets_to_patch(&[]).err().map(|e| e.1), Some(2));
    }

    #[test]
    fn tables_align() {
        let t = table(&["A", "BB"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    BB\nxyz  1\n");
    }
}
