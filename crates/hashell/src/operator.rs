//! What operators ask of the cluster, shared by the CLI (which reaches the store itself)
//! and the REST API (through the daemon's connection): switchover and failover requests,
//! their cancellation, and edits of the cluster's settings. Every change is a conditional
//! write: two operators racing never both win, and a lost race says so (409).

use hacore::dcs::{
    ClusterView, Dcs, DcsError, DcsOp, DcsReply, Expect, Key, SwitchoverKind, SwitchoverRequest, Value, Write,
};
use hacore::ClusterSettings;
use std::future::Future;
use std::pin::Pin;

/// A boxed future, for the object-safe [`DynDcs`].
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`Dcs`] behind a pointer: the REST API reaches whichever store the daemon uses.
pub trait DynDcs: Send + Sync {
    /// [`Dcs::read`].
    fn read_dyn(&self) -> BoxFut<'_, Result<ClusterView, DcsError>>;
    /// [`Dcs::execute`].
    fn execute_dyn<'a>(&'a self, op: &'a DcsOp) -> BoxFut<'a, Result<DcsReply, DcsError>>;
}

impl<D: Dcs> DynDcs for D {
    fn read_dyn(&self) -> BoxFut<'_, Result<ClusterView, DcsError>> {
        Box::pin(self.read())
    }
    fn execute_dyn<'a>(&'a self, op: &'a DcsOp) -> BoxFut<'a, Result<DcsReply, DcsError>> {
        Box::pin(self.execute(op))
    }
}

/// Why an operator request was not carried out, with the HTTP status it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpError {
    /// The request is wrong as asked (400): the message says what to change.
    Bad(String),
    /// The cluster's state forbids it now, or another writer won the race (409).
    Conflict(String),
    /// The store cannot be reached (503).
    Unavailable(String),
}

impl OpError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            OpError::Bad(_) => 400,
            OpError::Conflict(_) => 409,
            OpError::Unavailable(_) => 503,
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        match self {
            OpError::Bad(m) | OpError::Conflict(m) | OpError::Unavailable(m) => m,
        }
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

fn store_error(what: &str, e: DcsError) -> OpError {
    match e {
        DcsError::Conflict(m) => {
            OpError::Conflict(format!("{what}: someone else changed it first ({m}); read it again and retry"))
        }
        DcsError::Invalid(m) => OpError::Bad(format!("{what}: {m}")),
        e => OpError::Unavailable(format!("{what}: {e}")),
    }
}

/// One read of the cluster.
pub async fn read(store: &dyn DynDcs) -> Result<ClusterView, OpError> {
    store.read_dyn().await.map_err(|e| store_error("reading the cluster", e))
}

/// What an operator asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SwitchoverAsk {
    /// Planned switchover or manual failover.
    pub kind: SwitchoverKind,
    /// The leader expected to hand over (checked against the current one when given).
    pub from: Option<String>,
    /// The candidate (None: the best one; a failover needs one).
    pub to: Option<String>,
    /// When (wall-clock ms since the epoch); None: now.
    pub at_wall_ms: Option<u64>,
}

/// Writes the `switchover` key after checking the request against the cluster; returns
/// the request written.
pub async fn request_switchover(store: &dyn DynDcs, ask: &SwitchoverAsk) -> Result<SwitchoverRequest, OpError> {
    let view = read(store).await?;
    let leader = view.leader.as_ref().map(|l| l.value.holder.clone());
    let names = || view.members.iter().map(|m| m.value.name.as_str()).collect::<Vec<_>>().join(", ");
    if let Some(c) = &ask.to {
        if view.member(c).is_none() {
            return Err(OpError::Bad(format!("{c} is not a member; members: {}", names())));
        }
        if leader.as_ref() == Some(c) && ask.kind == SwitchoverKind::Switchover {
            return Err(OpError::Bad(format!("{c} already leads; name another candidate")));
        }
    }
    if ask.kind == SwitchoverKind::Switchover && view.config.as_ref().is_some_and(|c| c.value.paused) {
        // The leader does not serve switchovers in maintenance mode: the request would
        // wait, then run by surprise at the resume.
        return Err(OpError::Conflict(
            "the cluster is in maintenance mode: resume it first (hashell resume), or ask for a failover to a \
             named member"
                .into(),
        ));
    }
    let from = match ask.kind {
        SwitchoverKind::Switchover => {
            let l = leader.ok_or_else(|| {
                OpError::Conflict("the cluster has no leader to switch over from; use a failover".into())
            })?;
            if let Some(f) = &ask.from {
                if f != &l {
                    return Err(OpError::Conflict(format!("{f} is not the leader ({l} is)")));
                }
            }
            Some(l)
        }
        SwitchoverKind::Failover => {
            if ask.to.is_none() {
                return Err(OpError::Bad("a failover needs a candidate".into()));
            }
            None
        }
    };
    if let Some(p) = &view.switchover {
        return Err(OpError::Conflict(format!(
            "a {:?} request is already pending ({} -> {}); wait for it or cancel it",
            p.value.kind,
            p.value.from.as_deref().unwrap_or("-"),
            p.value.to.as_deref().unwrap_or("the best replica")
        )));
    }
    let req = SwitchoverRequest { kind: ask.kind, from, to: ask.to.clone(), at_wall_ms: ask.at_wall_ms };
    store
        .execute_dyn(&DcsOp::Put(Write::put(Value::Switchover(req.clone()), Expect::Absent)))
        .await
        .map_err(|e| store_error("writing the request", e))?;
    Ok(req)
}

/// Follows a written request until the new leader serves (Ok with its name), the leader
/// drops the request without handing over, or `limit` passes.
pub async fn wait_switchover(
    store: &dyn DynDcs,
    req: &SwitchoverRequest,
    limit: std::time::Duration,
) -> Result<String, OpError> {
    let start = std::time::Instant::now();
    // The leader records why it rejects or abandons a request; remember what was there.
    let before = store.read_dyn().await.map(|v| v.events).unwrap_or_default();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let Ok(v) = store.read_dyn().await else { continue };
        let leader = v.leader.as_ref().map(|l| l.value.holder.clone());
        let moved =
            leader.is_some() && leader != req.from && req.to.as_ref().is_none_or(|c| leader.as_ref() == Some(c));
        let serving = leader.as_ref().and_then(|l| v.member(l)).is_some_and(|m| {
            m.value.role == hacore::dcs::MemberRole::Primary
                && m.value.leader_term == v.leader.as_ref().map(|l| l.value.term)
        });
        if moved && serving && v.switchover.is_none() {
            return Ok(leader.unwrap_or_default());
        }
        if v.switchover.is_none() && !moved {
            return Err(OpError::Conflict(rejection(store, &before).await));
        }
        if start.elapsed() > limit {
            return Err(OpError::Unavailable(format!("not done after {limit:?}; it may still complete")));
        }
    }
}

/// Why the leader rejected or abandoned a switchover: its event, once it is written (the
/// leader records events in the background), else a pointer to where to look.
async fn rejection(store: &dyn DynDcs, before: &[hacore::dcs::Event]) -> String {
    use hacore::Reason::{SwitchoverAborted, SwitchoverRejected};
    for _ in 0..10 {
        if let Ok(v) = store.read_dyn().await {
            let why = v.events.iter().rev().take_while(|e| !before.contains(e)).find_map(|e| {
                matches!(e.reason, SwitchoverRejected | SwitchoverAborted).then(|| (e.reason, e.detail.clone()))
            });
            if let Some((reason, detail)) = why {
                let what = if reason == SwitchoverRejected { "rejected" } else { "abandoned" };
                return format!("the leader {what} the request: {detail}");
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    "the leader rejected or abandoned the request; see `hashell events` and the leader's log".into()
}

/// Deletes a pending switchover request; returns it.
pub async fn cancel_switchover(store: &dyn DynDcs) -> Result<SwitchoverRequest, OpError> {
    let view = read(store).await?;
    let p = view.switchover.ok_or_else(|| OpError::Conflict("no switchover is pending".into()))?;
    store
        .execute_dyn(&DcsOp::Put(Write::delete(Key::Switchover, Expect::Version(p.version))))
        .await
        .map_err(|e| store_error("cancelling the request", e))?;
    Ok(p.value)
}

/// Applies a JSON merge patch (RFC 7386: `null` resets a field to its default) to the
/// cluster's settings, validates the result and writes it conditioned on the version read.
/// `defaults` stand in while the cluster has no `config` key yet.
/// `by` names who asked (a node's name for REST requests, `cli` for the command line);
/// the change is recorded as a `config_changed` event naming the settings that changed.
pub async fn patch_config(
    store: &dyn DynDcs,
    patch: &serde_json::Value,
    defaults: &ClusterSettings,
    safety: &hacore::config::Safety,
    by: &str,
) -> Result<ClusterSettings, OpError> {
    let view = read(store).await?;
    let (current, expect) = match &view.config {
        Some(c) => (c.value.clone(), Expect::Version(c.version)),
        None => (defaults.clone(), Expect::Absent),
    };
    let next = checked(&current, patch, safety)?;
    if next == current {
        return Ok(next);
    }
    standby_change_allowed(&view, &current, &next)?;
    store
        .execute_dyn(&DcsOp::Put(Write::put(Value::Config(next.clone()), expect)))
        .await
        .map_err(|e| store_error("writing the settings", e))?;
    let event = hacore::dcs::Event {
        wall_time_ms: crate::daemon::wall_ms(),
        node: by.to_string(),
        term: view.leader.as_ref().map_or(view.term, |l| l.value.term),
        reason: hacore::Reason::ConfigChanged,
        detail: settings_diff(&current, &next),
    };
    // The settings are written; a lost event only leaves the record shorter.
    let _ = store.execute_dyn(&DcsOp::AppendEvent(event)).await;
    Ok(next)
}

/// Which changes of `standby_cluster` a running cluster may take: its upstream may move
/// and it may be removed (promotion), but an initialized primary cluster is not turned
/// into a standby cluster (its primary's writes since the upstream's would be lost, and
/// its members' WAL would fork from the upstream's), and every member must know the
/// setting: a daemon reading an older layout rejects the key and would lead as a primary.
pub fn standby_change_allowed(
    view: &ClusterView,
    current: &ClusterSettings,
    next: &ClusterSettings,
) -> Result<(), OpError> {
    let Some(_) = &next.standby_cluster else { return Ok(()) };
    if current.standby_cluster.is_none() && view.initialize.is_some() {
        return Err(OpError::Bad(
            "this cluster is a primary cluster: it cannot become a standby cluster in place. Found a new cluster \
             with [settings.standby_cluster] instead (docs/standby-cluster.md)"
                .into(),
        ));
    }
    if view.schema() < 3 {
        let old: Vec<&str> =
            view.members.iter().filter(|m| m.value.reads_schema() < 3).map(|m| m.value.name.as_str()).collect();
        return Err(OpError::Bad(format!(
            "standby_cluster needs every member to read DCS layout 3; upgrade {} first (docs/upgrading.md)",
            old.join(", ")
        )));
    }
    Ok(())
}

/// `ttl 10000 -> 20000, paused false -> true`.
pub fn settings_diff(a: &ClusterSettings, b: &ClusterSettings) -> String {
    let (a, b) = (serde_json::to_value(a).unwrap_or_default(), serde_json::to_value(b).unwrap_or_default());
    let empty = serde_json::Map::new();
    let (a, b) = (a.as_object().unwrap_or(&empty), b.as_object().unwrap_or(&empty));
    let changed: Vec<String> = b
        .iter()
        .filter(|(k, v)| a.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k} {} -> {v}", a.get(k).map_or_else(|| "-".to_string(), |x| x.to_string())))
        .collect();
    changed.join(", ")
}

/// The settings after a merge patch, validated.
pub fn merged(current: &ClusterSettings, patch: &serde_json::Value) -> Result<ClusterSettings, OpError> {
    let serde_json::Value::Object(fields) = patch else {
        return Err(OpError::Bad("send a JSON object of settings, e.g. {\"paused\": true}".into()));
    };
    let mut doc = serde_json::to_value(current).map_err(|e| OpError::Bad(e.to_string()))?;
    let obj = doc.as_object_mut().ok_or_else(|| OpError::Bad("settings are not an object".into()))?;
    for (k, v) in fields {
        // Optional settings are absent from the document while unset.
        if !obj.contains_key(k) && k != "standby_cluster" {
            let known: Vec<&str> = obj.keys().map(String::as_str).collect();
            return Err(OpError::Bad(format!("unknown setting {k:?}; known: {}", known.join(", "))));
        }
        if v.is_null() {
            obj.remove(k);
        } else {
            obj.insert(k.clone(), with_units(k, v)?);
        }
    }
    let next: ClusterSettings = serde_json::from_value(doc).map_err(|e| {
        OpError::Bad(format!("{e}; durations are milliseconds or text with a unit, e.g. {{\"ttl\": \"30s\"}}"))
    })?;
    Ok(next)
}

/// Settings that are durations (stored in ms) and sizes (bytes).
const DURATIONS: [&str; 6] =
    ["ttl", "loop_wait", "retry_timeout", "primary_start_timeout", "primary_hang_timeout", "switchover_timeout"];

/// A setting's value with its unit resolved: `"30s"` for a duration, `"16MB"` for
/// `maximum_lag_on_failover`, become the numbers the store holds (ms, bytes).
fn with_units(key: &str, v: &serde_json::Value) -> Result<serde_json::Value, OpError> {
    let Some(text) = v.as_str() else { return Ok(v.clone()) };
    if DURATIONS.contains(&key) {
        let d = crate::config::Dur::parse(text).map_err(|e| OpError::Bad(format!("{key}: {e}")))?;
        return Ok(d.0.into());
    }
    if key == "maximum_lag_on_failover" {
        let b = crate::api::parse_lag(text)
            .ok_or_else(|| OpError::Bad(format!("{key}: {text:?} is not a size; write e.g. \"16MB\" or bytes")))?;
        return Ok(b.into());
    }
    Ok(v.clone())
}

/// [`merged`], then [`ClusterSettings::validate`].
pub fn checked(
    current: &ClusterSettings,
    patch: &serde_json::Value,
    safety: &hacore::config::Safety,
) -> Result<ClusterSettings, OpError> {
    let next = merged(current, patch)?;
    next.validate(safety).map_err(|errs| {
        OpError::Bad(errs.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))
    })?;
    Ok(next)
}

/// An RFC 3339 time as ms since the epoch.
pub fn parse_wall_ms(s: &str) -> Option<u64> {
    let t = parse_rfc3339(s)?;
    Some(t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64))
}

/// An RFC 3339 time (`2026-11-22T08:53:24.569Z`, `2026-11-22T09:53:24+01:00`) as a
/// SystemTime; None when malformed.
pub fn parse_rfc3339(s: &str) -> Option<std::time::SystemTime> {
    use std::time::{Duration, UNIX_EPOCH};
    let s = s.trim();
    let (date, rest) = s.split_once(['T', 't', ' '])?;
    let (time, offset_secs) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, 0i64)
    } else {
        let at = rest.rfind(['+', '-'])?;
        let (t, off) = rest.split_at(at);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (h, m) = off[1..].split_once(':')?;
        let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
        if h > 23 || m > 59 {
            return None;
        }
        (t, sign * (h * 3_600 + m * 60))
    };
    let d: Vec<i64> = date.split('-').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let [y, m, day] = d[..] else { return None };
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let [hh, mm, ss] = t[..] else { return None };
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 || frac.is_empty() {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = y - (m <= 2) as i64;
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let nanos: u32 = format!("{frac:0<9}").get(..9)?.parse().ok()?;
    let secs = days * 86_400 + hh * 3_600 + mm * 60 + ss - offset_secs;
    Some(UNIX_EPOCH + Duration::new(u64::try_from(secs).ok()?, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc3339_times() {
        use std::time::{Duration, UNIX_EPOCH};
        let at = |s| parse_rfc3339(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap());
        assert_eq!(at("1970-01-01T00:00:00Z"), Some(Duration::ZERO));
        assert_eq!(at("2026-11-22T08:53:24.5Z"), Some(Duration::new(1_795_337_604, 500_000_000)));
        assert_eq!(at("2026-11-22T09:53:24.5+01:00"), at("2026-11-22T08:53:24.5Z"));
        assert_eq!(at("2026-11-22T07:53:24.5-01:00"), at("2026-11-22T08:53:24.5Z"));
        for bad in ["", "2026-11-22", "2026-13-01T00:00:00Z", "2026-11-22T25:00:00Z", "2026-11-22T08:53:24", "x"] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn merge_patch_sets_resets_and_refuses_unknown_keys() {
        let base = ClusterSettings::default();
        let paused = merged(&base, &json!({"paused": true})).unwrap();
        assert!(paused.paused);
        let back = merged(&paused, &json!({"paused": null})).unwrap();
        assert_eq!(back, base);
        let e = merged(&base, &json!({"pasued": true})).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.message().contains("unknown setting \"pasued\""), "{e}");
        let e = merged(&base, &json!({"ttl": true})).unwrap_err();
        assert!(e.message().contains("milliseconds"), "{e}");
        assert!(merged(&base, &json!([1])).is_err());
        // Units in text: what a Patroni user would type.
        let u = merged(&base, &json!({"ttl": "40s", "loop_wait": "2s", "maximum_lag_on_failover": "16MB"})).unwrap();
        assert_eq!((u.ttl, u.loop_wait, u.maximum_lag_on_failover), (40_000, 2_000, 16 << 20));
        let e = merged(&base, &json!({"ttl": "soon"})).unwrap_err();
        assert!(e.message().contains("ttl"), "{e}");
        // A bare 10 is 10 ms, which validation refuses rather than run with.
        let e = checked(&base, &json!({"retry_timeout": 10}), &hacore::config::Safety::default()).unwrap_err();
        assert!(e.message().contains("in ms"), "{e}");
    }

    #[test]
    fn unsafe_settings_are_refused_with_what_to_change() {
        let base = ClusterSettings::default();
        let e = checked(&base, &json!({"ttl": 5000}), &hacore::config::Safety::default()).unwrap_err();
        assert!(e.message().contains("ttl"), "{e}");
        assert!(checked(&base, &json!({"paused": true}), &hacore::config::Safety::default()).is_ok());
    }
}
