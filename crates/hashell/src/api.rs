//! The REST API: what peers need (status for elections, failsafe acknowledgements,
//! wake-ups), the health endpoints load balancers call with Patroni's status codes, the
//! cluster's state for the CLI and dashboards, and the operator's requests.
//!
//! | endpoint | 200 when | otherwise |
//! |---|---|---|
//! | `GET /peer` | always: this node's [`hacore::PeerStatus`] (JSON) | |
//! | `GET /status`, `GET /patroni` | always: the node's status (JSON) | |
//! | `GET /primary`, `/leader`, `/read-write` | PostgreSQL runs writable under this node's lease | 503 |
//! | `GET /replica` | PostgreSQL runs as a standby (`?lag=`, `?replication_state=`, `?tag_<k>=<v>`) | 503 |
//! | `GET /sync`, `/async` | a standby in (not in) the published synchronous set | 503 |
//! | `GET /read-only` | PostgreSQL runs (primary or standby) | 503 |
//! | `GET /health` | PostgreSQL runs | 503 |
//! | `GET /liveness` | the daemon's loop ran within 3 loop waits | 503 |
//! | `GET /readiness` | the primary, or a standby within `?lag=` | 503 |
//! | `GET /cluster`, `/history`, `/events`, `/config`, `/metrics` | always (the last view of the store) | |
//! | `POST /failsafe` | the node acknowledges the primary (S1') | 409 |
//! | `POST /wake` | 202: the loop runs at once (a peer changed leadership; stores without a watch) | |
//! | `POST /switchover`, `/failover` | the request is done (or 202: scheduled, or `?wait=false`) | 400, 409, 503 |
//! | `DELETE /switchover` | a pending request was cancelled | 409 |
//! | `POST /reinitialize` | this replica is rebuilt (stopped, cloned again); 409 on the leader | 409 |
//! | `PATCH /config` | the merged settings were written (JSON merge patch; `null` resets) | 400, 409 |
//! | `POST /restart` | PostgreSQL restarted (or 202: scheduled; 200 with `restarted: false` when its conditions do not hold) | 400, 409, 503 |
//! | `DELETE /restart` | the scheduled restart was cancelled | 409 |
//! | `POST /reload` | the configuration file was re-read (what applied, what needs a daemon restart) | 409 |
//!
//! Every GET also answers HEAD; the health checks also answer OPTIONS (HAProxy's default
//! check method). A served path asked with another method is 405. Every POST,
//! PATCH and DELETE passes [`Access`] first: the allow-list (403), a client certificate
//! where required (403), HTTP basic auth with `[rest.auth]` (401; peers send the same
//! credentials). Errors are JSON saying what to do.

use crate::daemon::Shared;
use crate::daemon::{RestartConditions, RestartPhase, ScheduledRestart};
use crate::operator::{
    cancel_switchover, parse_wall_ms, patch_config, request_switchover, wait_switchover, OpError, SwitchoverAsk,
};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use hacore::dcs::{MemberRole, SwitchoverKind};
use hacore::FailsafeRequest;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// The status document of `GET /status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusDoc {
    /// Member name.
    pub name: String,
    /// Cluster name.
    pub cluster: String,
    /// Role.
    pub role: MemberRole,
    /// PostgreSQL runs.
    pub running: bool,
    /// Highest term seen.
    pub term: u64,
    /// Timeline.
    pub timeline: u32,
    /// End of the local WAL.
    pub lsn: String,
    /// Current leader.
    pub leader: Option<String>,
    /// Milliseconds this node may stay writable, if it may.
    pub writable_for_ms: Option<u64>,
    /// Why it does what it does.
    pub reason: hacore::Reason,
    /// Detail.
    pub detail: String,
    /// Maintenance mode.
    pub paused: bool,
    /// PostgreSQL has settings changed that need a restart.
    #[serde(default)]
    pub pending_restart: bool,
    /// A restart scheduled on this node (RFC 3339, UTC).
    #[serde(default)]
    pub scheduled_restart: Option<String>,
}

fn status_code(ok: bool) -> StatusCode {
    if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(serde_json::json!({ "error": msg.into() }))).into_response()
}

fn op_error(e: OpError) -> Response {
    let code = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error(code, e.message())
}

async fn status_doc(sh: &Shared) -> StatusDoc {
    sh.status_doc()
}

/// One member in `GET /cluster`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberDoc {
    /// Name.
    pub name: String,
    /// Role.
    pub role: MemberRole,
    /// Holds the leader record.
    pub leader: bool,
    /// In the published synchronous set.
    pub sync: bool,
    /// PostgreSQL runs.
    pub running: bool,
    /// `host:port` of PostgreSQL.
    pub host: String,
    /// REST API URL.
    pub api_url: String,
    /// Timeline.
    pub timeline: u32,
    /// End of its WAL (received LSN on a standby).
    pub lsn: String,
    /// Bytes received behind the leader (standbys on the leader's timeline).
    pub lag: Option<u64>,
    /// A standby's replayed LSN (live positions only).
    #[serde(default)]
    pub replayed_lsn: Option<String>,
    /// Bytes replayed behind the leader (standbys on the leader's timeline).
    #[serde(default)]
    pub replay_lag: Option<u64>,
    /// Whether the position is live (from the member itself at the last tick) or as published.
    pub live: bool,
    /// Tags.
    pub tags: hacore::Tags,
    /// Settings changed that need a restart.
    pub pending_restart: bool,
    /// The member's reason, as published.
    pub reason: Option<hacore::Reason>,
    /// The DCS layout version its daemon reads (1: a daemon from before versioning).
    #[serde(default)]
    pub schema: u32,
}

/// `GET /cluster`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterDoc {
    /// Cluster name.
    pub cluster: String,
    /// Leader.
    pub leader: Option<String>,
    /// Term of the leader record (or the highest granted).
    pub term: u64,
    /// Maintenance mode.
    pub paused: bool,
    /// A pending switchover or failover request.
    pub switchover: Option<hacore::dcs::SwitchoverRequest>,
    /// Members, by name.
    pub members: Vec<MemberDoc>,
    /// Keys the store holds but that could not be decoded.
    pub corrupt: Vec<String>,
    /// The layout version every member reads: what the cluster writes (see `docs/upgrading.md`).
    #[serde(default)]
    pub schema: u32,
    /// Which node answered, and whether it reached the store at its last tick.
    pub answered_by: String,
}

fn host_of(pg_url: &str) -> String {
    let get = |k: &str| {
        pg_url.split_whitespace().find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('='))).unwrap_or("")
    };
    format!("{}:{}", get("host"), get("port"))
}

/// The cluster as this node sees it: membership from the store, positions live from the
/// last tick's peer answers (the published ones when a peer did not answer).
pub fn cluster_doc(sh: &Shared) -> Option<ClusterDoc> {
    let (view, me, running, peers) = sh.snapshot();
    let view = view?;
    let my_name = sh.cfg.name.clone();
    let leader = view.leader.as_ref().map(|l| l.value.holder.clone());
    let sync: Vec<String> = view.sync.as_ref().map(|s| s.value.members.to_vec()).unwrap_or_default();
    let mut rows: Vec<(MemberDoc, hacore::Lsn, hacore::Lsn)> = view
        .members
        .iter()
        .map(|m| {
            let r = &m.value;
            let live = if r.name == my_name {
                Some((me.role, running, me.position, me.replayed))
            } else {
                peers
                    .iter()
                    .find(|p| p.name == r.name)
                    .and_then(|p| p.status.as_ref())
                    .map(|s| (s.role, s.running, s.position, s.replayed))
            };
            let (role, running, pos, replayed, is_live) = match live {
                Some((role, running, pos, replayed)) => (role, running, pos, replayed, true),
                None => {
                    let pos = hacore::WalPosition { timeline: r.timeline, lsn: r.lsn };
                    (r.role, r.running, pos, hacore::Lsn(0), false)
                }
            };
            let doc = MemberDoc {
                name: r.name.clone(),
                role,
                leader: leader.as_ref() == Some(&r.name),
                sync: sync.contains(&r.name),
                running,
                host: host_of(&r.pg_url),
                api_url: r.api_url.clone(),
                timeline: pos.timeline.0,
                lsn: pos.lsn.to_string(),
                lag: None,
                replayed_lsn: (replayed.0 > 0).then(|| replayed.to_string()),
                replay_lag: None,
                live: is_live,
                tags: r.tags.clone(),
                pending_restart: r.pending_restart,
                reason: r.reason,
                schema: r.reads_schema(),
            };
            (doc, pos.lsn, replayed)
        })
        .collect();
    let lead = rows.iter().find(|(m, ..)| m.leader).map(|(m, l, _)| (m.timeline, *l));
    let lead = lead.or_else(|| view.status.as_ref().map(|s| (s.value.timeline.0, s.value.lsn)));
    if let Some((tl, lead_lsn)) = lead {
        for (m, lsn, replayed) in rows.iter_mut().filter(|(m, ..)| !m.leader && m.timeline == tl) {
            m.lag = Some(lead_lsn.0.saturating_sub(lsn.0));
            if replayed.0 > 0 {
                m.replay_lag = Some(lead_lsn.0.saturating_sub(replayed.0));
            }
        }
    }
    let members = rows.into_iter().map(|(m, ..)| m).collect();
    Some(ClusterDoc {
        cluster: sh.cluster.clone(),
        leader,
        term: view.leader.as_ref().map_or(view.term.0, |l| l.value.term.0),
        paused: view.config.as_ref().is_some_and(|c| c.value.paused),
        switchover: view.switchover.as_ref().map(|s| s.value.clone()),
        members,
        corrupt: view.corrupt.iter().map(|c| c.key.path()).collect(),
        schema: view.schema(),
        answered_by: my_name,
    })
}

/// The query string as pairs.
fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A lag limit: bytes, or with a unit (`16MB`, `1kB`; PostgreSQL's units, powers of 1024).
pub fn parse_lag(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(digits);
    let n: u64 = n.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1 << 10,
        "mb" => 1 << 20,
        "gb" => 1 << 30,
        "tb" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Why a replica check fails its query's conditions, or None when it passes them.
async fn replica_conditions(sh: &Shared, query: &[(String, String)]) -> Result<Option<String>, String> {
    // A malformed condition is 400 wherever it stands, not only when the ones before hold.
    for (k, v) in query {
        if k == "lag" && parse_lag(v).is_none() {
            return Err(format!("lag={v:?}: give bytes or a size such as 16MB"));
        }
        if k == "replication_state" && v != "streaming" && v != "in archive recovery" {
            return Err(format!("replication_state={v:?}: use streaming or \"in archive recovery\""));
        }
    }
    let doc = cluster_doc(sh);
    let me = doc.as_ref().and_then(|d| d.members.iter().find(|m| m.name == sh.cfg.name).cloned());
    for (k, v) in query {
        if k == "lag" {
            let max = parse_lag(v).ok_or_else(|| format!("lag={v:?}: give bytes or a size such as 16MB"))?;
            match me.as_ref().and_then(|m| m.lag) {
                Some(l) if l <= max => {}
                Some(l) => return Ok(Some(format!("{l} bytes behind, more than {max}"))),
                None => return Ok(Some("lag unknown (no leader position on this timeline)".into())),
            }
        } else if k == "replication_state" {
            if v != "streaming" && v != "in archive recovery" {
                return Err(format!("replication_state={v:?}: use streaming or \"in archive recovery\""));
            }
            let streaming = sh.snapshot().1.role == MemberRole::Replica && sh.pg_streaming().await;
            let state = if streaming { "streaming" } else { "in archive recovery" };
            if state != v {
                return Ok(Some(format!("replication state is {state}")));
            }
        } else if let Some(tag) = k.strip_prefix("tag_") {
            let tags = serde_json::to_value(&sh.cfg.tags).unwrap_or_default();
            let have = match tags.get(tag) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => return Ok(Some(format!("no tag {tag}"))),
            };
            if &have != v {
                return Ok(Some(format!("tag {tag} is {have}")));
            }
        }
    }
    Ok(None)
}

fn authorized(auth: &Option<String>, headers: &HeaderMap) -> bool {
    let Some(want) = auth else { return true };
    let got = headers.get(axum::http::header::AUTHORIZATION).map(|v| v.as_bytes()).unwrap_or(b"");
    constant_time_eq(got, want.as_bytes())
}

/// Compares without an early exit on the first differing byte.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() != b.len()) as u8;
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff);
    }
    diff == 0
}

/// The `Authorization` header value of basic auth.
pub fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

#[derive(Clone)]
struct Api {
    sh: Arc<Shared>,
    access: Arc<Access>,
}

/// Who may make unsafe requests (POST, PATCH, DELETE): checked before any handler runs,
/// in this order: the allow-list (403), a client certificate where `verify_client =
/// "optional"` (403), basic auth (401).
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// The `Authorization` header value unsafe requests must carry (None: no auth).
    pub auth: Option<String>,
    /// Networks allowed to make unsafe requests (empty: any).
    pub allowlist: Vec<ipnet::IpNet>,
    /// With an allow-list, the members' API hosts are allowed too.
    pub include_members: bool,
    /// Unsafe requests must come with a verified client certificate.
    pub require_cert: bool,
}

impl Access {
    /// The access rules of a node's configuration.
    pub fn of(cfg: &crate::config::FileConfig) -> Result<Access, String> {
        let r = &cfg.rest;
        Ok(Access {
            auth: cfg.rest_auth_header()?,
            allowlist: r.allowlist.iter().filter_map(|a| parse_net(a)).collect(),
            include_members: r.allowlist_include_members,
            require_cert: r.client_policy() == crate::config::VerifyClient::Optional,
        })
    }
}

/// An address (`10.0.0.7`, `::1`) or a network (`10.0.0.0/8`).
pub fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>().ok().or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

/// The host of a member's API URL (`https://10.0.0.5:8008` -> `10.0.0.5`), and its port.
fn url_host(url: &str) -> Option<(String, u16)> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let (host, port) = authority.rsplit_once(':')?;
    Some((host.trim_start_matches('[').trim_end_matches(']').to_string(), port.parse().ok()?))
}

/// Whether `ip` is one of the members' API hosts (as of the last view). Only addresses
/// count: a host name is not looked up here, since a failsafe ping must be answered
/// within its round and DNS may be what is failing; list such members in the allow-list.
fn is_member_host(sh: &Shared, ip: std::net::IpAddr) -> bool {
    let Some(view) = sh.snapshot().0 else { return false };
    view.members
        .iter()
        .filter_map(|m| url_host(&m.value.api_url))
        .any(|(host, _)| host.parse::<std::net::IpAddr>().is_ok_and(|h| h.to_canonical() == ip))
}

/// The checks of [`Access`] on every unsafe request.
async fn guard_unsafe(State(a): State<Api>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use axum::http::Method;
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let peer = req.extensions().get::<crate::serve::Peer>().copied();
    let access = &a.access;
    if !access.allowlist.is_empty() {
        let ip = peer.map(|p| p.addr.ip().to_canonical());
        let allowed = match ip {
            Some(ip) => {
                access.allowlist.iter().any(|n| n.contains(&ip))
                    || (access.include_members && is_member_host(&a.sh, ip))
            }
            None => false,
        };
        if !allowed {
            let who = ip.map_or_else(|| "this client".to_string(), |ip| ip.to_string());
            return error(
                StatusCode::FORBIDDEN,
                format!("{who} may not change the cluster: add its address to [rest] allowlist of this node"),
            );
        }
    }
    if access.require_cert && !peer.is_some_and(|p| p.verified_cert) {
        return error(
            StatusCode::FORBIDDEN,
            "this request changes the cluster: connect with a client certificate signed by [rest] client_ca_file",
        );
    }
    if !authorized(&access.auth, req.headers()) {
        return unauthorized();
    }
    next.run(req).await
}

/// A switchover or failover asked over REST (Patroni's field names).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchoverBody {
    leader: Option<String>,
    candidate: Option<String>,
    scheduled_at: Option<String>,
}

/// A restart asked over REST (Patroni's field names; `timeout` in seconds).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestartBody {
    schedule: Option<String>,
    restart_pending: Option<bool>,
    role: Option<String>,
    timeout: Option<f64>,
}

/// Parses a `/restart` body into its conditions, its schedule (ms since the epoch) and
/// how long to wait.
fn restart_body(body: &[u8]) -> Result<(RestartConditions, Option<u64>, Option<Duration>), String> {
    const SHAPE: &str = "send {\"schedule\": RFC3339, \"role\": \"primary\"|\"replica\", \"restart_pending\": true, \
                         \"timeout\": SECONDS}, all optional";
    let b: RestartBody = if body.iter().all(u8::is_ascii_whitespace) {
        RestartBody::default()
    } else {
        serde_json::from_slice(body).map_err(|e| format!("{e}; {SHAPE}"))?
    };
    let role = match b.role.as_deref() {
        None | Some("any") => None,
        Some("primary" | "master" | "leader") => Some(MemberRole::Primary),
        Some("replica" | "standby") => Some(MemberRole::Replica),
        Some(r) => return Err(format!("role {r:?}: use primary, replica or any")),
    };
    let at = match &b.schedule {
        None => None,
        Some(t) => Some(
            parse_wall_ms(t)
                .ok_or_else(|| format!("schedule {t:?} is not an RFC 3339 time such as 2026-11-22T03:00:00+01:00"))?,
        ),
    };
    let timeout = match b.timeout {
        None => None,
        Some(t) if t.is_finite() && t > 0.0 && t <= 86_400.0 => Some(Duration::from_secs_f64(t)),
        Some(t) => return Err(format!("timeout {t}: give seconds between 0 and 86400")),
    };
    Ok((RestartConditions { role, pending_only: b.restart_pending.unwrap_or(false) }, at, timeout))
}

/// The router over the daemon's shared state; `access` says who may make unsafe requests.
pub fn router(shared: Arc<Shared>, access: Access) -> Router {
    async fn peer(State(a): State<Api>) -> Response {
        Json(a.sh.peer_status().await).into_response()
    }
    async fn status(State(a): State<Api>) -> Response {
        Json(status_doc(&a.sh).await).into_response()
    }
    async fn primary(State(a): State<Api>) -> Response {
        let d = status_doc(&a.sh).await;
        let ok = d.running && d.role == MemberRole::Primary && d.writable_for_ms.is_some();
        (status_code(ok), Json(d)).into_response()
    }
    async fn leader(State(a): State<Api>) -> Response {
        // Patroni's meaning: the node holds the leader lock, writable primary or a
        // standby cluster's leader.
        let d = status_doc(&a.sh).await;
        let ok = d.running
            && ((d.role == MemberRole::Primary && d.writable_for_ms.is_some()) || d.role == MemberRole::StandbyLeader);
        (status_code(ok), Json(d)).into_response()
    }
    async fn standby_leader(State(a): State<Api>) -> Response {
        let d = status_doc(&a.sh).await;
        let ok = d.running && d.role == MemberRole::StandbyLeader;
        (status_code(ok), Json(d)).into_response()
    }
    async fn replica(State(a): State<Api>, uri: Uri) -> Response {
        let d = status_doc(&a.sh).await;
        let q = query_pairs(uri.query());
        match replica_conditions(&a.sh, &q).await {
            Err(e) => error(StatusCode::BAD_REQUEST, e),
            Ok(why) => {
                let ok = d.running && d.role == MemberRole::Replica && why.is_none();
                (status_code(ok), Json(d)).into_response()
            }
        }
    }
    async fn sync_or_async(a: &Api, want_sync: bool) -> Response {
        let d = status_doc(&a.sh).await;
        let in_set = cluster_doc(&a.sh)
            .and_then(|c| c.members.into_iter().find(|m| m.name == a.sh.cfg.name))
            .is_some_and(|m| m.sync);
        let ok = d.running && d.role == MemberRole::Replica && in_set == want_sync;
        (status_code(ok), Json(d)).into_response()
    }
    async fn sync(State(a): State<Api>) -> Response {
        sync_or_async(&a, true).await
    }
    async fn asynchronous(State(a): State<Api>) -> Response {
        sync_or_async(&a, false).await
    }
    async fn read_only(State(a): State<Api>) -> Response {
        let d = status_doc(&a.sh).await;
        let ok = d.running && matches!(d.role, MemberRole::Replica | MemberRole::Primary | MemberRole::StandbyLeader);
        (status_code(ok), Json(d)).into_response()
    }
    async fn health(State(a): State<Api>) -> Response {
        let d = status_doc(&a.sh).await;
        (status_code(d.running), Json(d)).into_response()
    }
    async fn liveness(State(a): State<Api>) -> Response {
        let ok = a.sh.loop_alive();
        (status_code(ok), Json(serde_json::json!({ "loop_alive": ok }))).into_response()
    }
    async fn readiness(State(a): State<Api>, uri: Uri) -> Response {
        let d = status_doc(&a.sh).await;
        let leads =
            (d.role == MemberRole::Primary && d.writable_for_ms.is_some()) || d.role == MemberRole::StandbyLeader;
        if d.running && leads {
            return (StatusCode::OK, Json(d)).into_response();
        }
        let q: Vec<(String, String)> = query_pairs(uri.query()).into_iter().filter(|(k, _)| k == "lag").collect();
        match replica_conditions(&a.sh, &q).await {
            Err(e) => error(StatusCode::BAD_REQUEST, e),
            Ok(why) => {
                let ok = d.running && d.role == MemberRole::Replica && why.is_none();
                (status_code(ok), Json(d)).into_response()
            }
        }
    }
    async fn cluster(State(a): State<Api>) -> Response {
        match cluster_doc(&a.sh) {
            Some(d) => Json(d).into_response(),
            None => error(StatusCode::SERVICE_UNAVAILABLE, "this node has not read the store yet; ask another member"),
        }
    }
    async fn history(State(a): State<Api>) -> Response {
        match a.sh.snapshot().0 {
            Some(v) => Json(v.history.map(|h| h.value.forks).unwrap_or_default()).into_response(),
            None => error(StatusCode::SERVICE_UNAVAILABLE, "this node has not read the store yet; ask another member"),
        }
    }
    async fn events(State(a): State<Api>) -> Response {
        match a.sh.snapshot().0 {
            Some(v) => Json(v.events).into_response(),
            None => error(StatusCode::SERVICE_UNAVAILABLE, "this node has not read the store yet; ask another member"),
        }
    }
    async fn config(State(a): State<Api>) -> Response {
        match a.sh.snapshot().0 {
            Some(v) => match v.config {
                Some(c) => Json(serde_json::json!({ "version": c.version.0, "settings": c.value })).into_response(),
                None => Json(serde_json::json!({ "version": null, "settings": a.sh.cfg.defaults })).into_response(),
            },
            None => error(StatusCode::SERVICE_UNAVAILABLE, "this node has not read the store yet; ask another member"),
        }
    }
    async fn metrics(State(a): State<Api>) -> Response {
        let text = crate::metrics::render(&a.sh);
        ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
    }
    async fn failsafe(State(a): State<Api>, body: Bytes) -> Response {
        let req: FailsafeRequest = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("body is not a failsafe request: {e}; send {{\"leader\":..,\"term\":..,\"ttl\":..}}"),
                )
            }
        };
        let ok = a.sh.answer_failsafe(&req);
        let code = if ok { StatusCode::OK } else { StatusCode::CONFLICT };
        (code, Json(serde_json::json!({ "accepted": ok }))).into_response()
    }
    async fn wake(State(a): State<Api>) -> Response {
        let woke = a.sh.wake_from_peer();
        (StatusCode::ACCEPTED, Json(serde_json::json!({ "woke": woke }))).into_response()
    }
    async fn switchover_like(a: &Api, kind: SwitchoverKind, uri: &Uri, body: &[u8]) -> Response {
        let b: SwitchoverBody = if body.iter().all(u8::is_ascii_whitespace) {
            SwitchoverBody::default()
        } else {
            match serde_json::from_slice(body) {
                Ok(b) => b,
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!(
                        "{e}; send {{\"leader\": NAME, \"candidate\": NAME, \"scheduled_at\": RFC3339}}, all optional"
                    ),
                    )
                }
            }
        };
        let at_wall_ms = match &b.scheduled_at {
            None => None,
            Some(t) => match parse_wall_ms(t) {
                Some(t) => Some(t),
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("scheduled_at {t:?} is not an RFC 3339 time such as 2026-11-22T03:00:00+01:00"),
                    )
                }
            },
        };
        let Some(store) = a.sh.store() else {
            return error(StatusCode::SERVICE_UNAVAILABLE, "this node has not reached the store; ask another member");
        };
        let ask = SwitchoverAsk { kind, from: b.leader, to: b.candidate, at_wall_ms };
        let req = match request_switchover(&*store, &ask).await {
            Ok(r) => r,
            Err(e) => return op_error(e),
        };
        let no_wait = query_pairs(uri.query()).iter().any(|(k, v)| k == "wait" && v == "false");
        if req.at_wall_ms.is_some() || no_wait {
            return (StatusCode::ACCEPTED, Json(serde_json::json!({ "message": "requested", "request": req })))
                .into_response();
        }
        let s = a.sh.settings();
        let limit = std::time::Duration::from_millis(s.switchover_timeout + 2 * s.ttl);
        match wait_switchover(&*store, &req, limit).await {
            Ok(leader) => Json(serde_json::json!({ "message": format!("done: {leader} leads"), "leader": leader }))
                .into_response(),
            Err(e) => op_error(e),
        }
    }
    async fn switchover(State(a): State<Api>, uri: Uri, body: Bytes) -> Response {
        switchover_like(&a, SwitchoverKind::Switchover, &uri, &body).await
    }
    async fn failover(State(a): State<Api>, uri: Uri, body: Bytes) -> Response {
        switchover_like(&a, SwitchoverKind::Failover, &uri, &body).await
    }
    async fn cancel(State(a): State<Api>) -> Response {
        let Some(store) = a.sh.store() else {
            return error(StatusCode::SERVICE_UNAVAILABLE, "this node has not reached the store; ask another member");
        };
        match cancel_switchover(&*store).await {
            Ok(r) => Json(serde_json::json!({ "message": "cancelled", "request": r })).into_response(),
            Err(e) => op_error(e),
        }
    }
    async fn patch(State(a): State<Api>, body: Bytes) -> Response {
        let patch: serde_json::Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return error(StatusCode::BAD_REQUEST, format!("body is not JSON: {e}; send e.g. {{\"paused\": true}}"))
            }
        };
        let Some(store) = a.sh.store() else {
            return error(StatusCode::SERVICE_UNAVAILABLE, "this node has not reached the store; ask another member");
        };
        match patch_config(&*store, &patch, &a.sh.cfg.defaults, &a.sh.cfg.safety, &a.sh.cfg.name).await {
            Ok(s) => Json(s).into_response(),
            Err(e) => op_error(e),
        }
    }
    async fn reinitialize(State(a): State<Api>) -> Response {
        match a.sh.request_reinitialize() {
            Ok(msg) => Json(serde_json::json!({ "message": msg })).into_response(),
            Err(e) => error(StatusCode::CONFLICT, e),
        }
    }
    async fn restart(State(a): State<Api>, body: Bytes) -> Response {
        let (cond, at, timeout) = match restart_body(&body) {
            Ok(x) => x,
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        };
        if let Some(at_wall_ms) = at {
            let now = crate::daemon::wall_ms();
            if at_wall_ms + 1_000 < now {
                return error(StatusCode::BAD_REQUEST, "schedule is in the past; give a later time or none (now)");
            }
            let when = crate::commands::rfc3339(at_wall_ms);
            return match a.sh.schedule_restart(ScheduledRestart { at_wall_ms, conditions: cond }) {
                Ok(()) => (
                    StatusCode::ACCEPTED,
                    Json(
                        serde_json::json!({ "message": format!("restart scheduled for {when}"), "scheduled_at": when }),
                    ),
                )
                    .into_response(),
                Err(e) => error(StatusCode::CONFLICT, e),
            };
        }
        let id = match a.sh.request_restart(&cond) {
            Ok(Some(id)) => id,
            Ok(None) => {
                // Patroni's answer: 200, nothing done (a loop over every member with
                // `restart_pending` must not fail on the members that need none).
                let msg = "restart conditions are not satisfied: nothing done";
                return Json(serde_json::json!({ "restarted": false, "message": msg })).into_response();
            }
            Err(e) => return error(StatusCode::CONFLICT, e),
        };
        let t = &a.sh.cfg.timeouts;
        let limit = timeout.unwrap_or(Duration::from_millis(t.stop + t.start + a.sh.cfg.defaults.ttl));
        let start = std::time::Instant::now();
        loop {
            match a.sh.restart_phase(id) {
                Some(RestartPhase::Done) => {
                    return Json(serde_json::json!({ "restarted": true, "message": "restarted" })).into_response()
                }
                Some(RestartPhase::Failed) | None => {
                    let d = status_doc(&a.sh).await;
                    return error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "restart failed or was not started (now: {:?}, {}{}); see this node's log",
                            d.reason,
                            d.reason.explain(),
                            if d.detail.is_empty() { String::new() } else { format!(" {}", d.detail) }
                        ),
                    );
                }
                _ if start.elapsed() >= limit => {
                    return error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("still restarting after {limit:?}; it goes on: watch GET /status"),
                    )
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    async fn reload(State(a): State<Api>) -> Response {
        match a.sh.reload().await {
            Ok(r) => Json(r).into_response(),
            Err(e) => error(StatusCode::CONFLICT, e),
        }
    }
    async fn cancel_restart(State(a): State<Api>) -> Response {
        match a.sh.cancel_restart() {
            Some(r) => Json(serde_json::json!({
                "message": "scheduled restart cancelled",
                "scheduled_at": crate::commands::rfc3339(r.at_wall_ms),
            }))
            .into_response(),
            None => error(StatusCode::CONFLICT, "no restart is scheduled on this node"),
        }
    }
    let api = Api { sh: shared, access: Arc::new(access) };
    macro_rules! health_get {
        ($h:expr) => {
            get($h).options($h)
        };
    }
    Router::new()
        .route("/peer", get(peer))
        .route("/status", get(status))
        .route("/patroni", health_get!(status))
        .route("/primary", health_get!(primary))
        .route("/leader", health_get!(leader))
        .route("/standby-leader", health_get!(standby_leader))
        .route("/standby_leader", health_get!(standby_leader))
        .route("/read-write", health_get!(primary))
        .route("/master", health_get!(primary))
        .route("/replica", health_get!(replica))
        .route("/sync", health_get!(sync))
        .route("/synchronous", health_get!(sync))
        .route("/async", health_get!(asynchronous))
        .route("/asynchronous", health_get!(asynchronous))
        .route("/read-only", health_get!(read_only))
        .route("/health", health_get!(health))
        .route("/liveness", health_get!(liveness))
        .route("/readiness", health_get!(readiness))
        .route("/cluster", get(cluster))
        .route("/history", get(history))
        .route("/events", get(events))
        .route("/config", get(config).patch(patch))
        .route("/metrics", get(metrics))
        .route("/failsafe", post(failsafe))
        .route("/wake", post(wake))
        .route("/switchover", post(switchover).delete(cancel))
        .route("/failover", post(failover))
        .route("/reinitialize", post(reinitialize))
        .route("/restart", post(restart).delete(cancel_restart))
        .route("/reload", post(reload))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint; see docs/rest-api.md for the list") })
        .method_not_allowed_fallback(|method: axum::http::Method, uri: axum::http::Uri| async move {
            let msg = format!("{} does not take {method}; see docs/rest-api.md for its methods", uri.path());
            error(StatusCode::METHOD_NOT_ALLOWED, msg)
        })
        .route_layer(axum::middleware::from_fn_with_state(api.clone(), guard_unsafe))
        .with_state(api)
}

fn unauthorized() -> Response {
    let mut r = error(
        StatusCode::UNAUTHORIZED,
        "this request changes the cluster: send HTTP basic auth with the [rest.auth] credentials",
    );
    r.headers_mut()
        .insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Basic realm=\"hashell\""));
    r
}

/// A small HTTP/1 client for calls to members' REST APIs (`http://` or `https://`), every
/// request bounded.
#[derive(Clone)]
pub struct PeerClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// `Authorization` sent with requests other than GET (the cluster's `[rest.auth]`).
    auth: Option<Arc<str>>,
    /// A CA for members' certificates is configured (else `https://` URLs are refused
    /// with what to configure).
    tls: bool,
}

impl PeerClient {
    /// A client that sends `auth` as the `Authorization` of every request but GETs, and
    /// speaks TLS with `tls` (see [`crate::tls::client_config`]).
    pub fn new(auth: Option<String>, tls: Option<rustls::ClientConfig>) -> Result<PeerClient, String> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_millis(500)));
        http.set_nodelay(true);
        http.enforce_http(false);
        let configured = tls.is_some();
        let tls = match tls {
            Some(t) => t,
            None => rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS: {e}"))?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(PeerClient { client, auth: auth.map(Arc::from), tls: configured })
    }

    /// The client of a node's configuration: its `[rest.auth]` and its TLS settings.
    pub fn for_config(cfg: &crate::config::FileConfig) -> Result<PeerClient, String> {
        PeerClient::new(cfg.rest_auth_header()?, crate::tls::client_config(&cfg.rest)?)
    }

    /// Sends a request and decodes a JSON answer with status `want`; `None` on any
    /// other status.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        url: &str,
        body: Option<Vec<u8>>,
        limit: Duration,
    ) -> Result<(u16, Option<T>), String> {
        if url.starts_with("https://") && !self.tls {
            return Err(format!(
                "{url} serves TLS: set [rest] ca_file to the CA that signs the members' API certificates"
            ));
        }
        let mut req = hyper::Request::builder().method(method).uri(url);
        if let (Some(a), false) = (&self.auth, method == "GET") {
            req = req.header("authorization", &**a);
        }
        let req = req
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| format!("bad request to {url}: {e}"))?;
        let fut = async {
            let resp = self.client.request(req).await.map_err(|e| format!("{url}: {}", error_chain(&e)))?;
            let code = resp.status().as_u16();
            let bytes = resp.into_body().collect().await.map_err(|e| format!("{url}: {e}"))?.to_bytes();
            Ok::<_, String>((code, serde_json::from_slice(&bytes).ok()))
        };
        tokio::time::timeout(limit, fut).await.map_err(|_| format!("{url}: no answer within {limit:?}"))?
    }
}

/// An error and its causes, `outer: inner: innermost` (the HTTP client's own message is
/// only "client error (Connect)"; the cause says what to fix, e.g. an untrusted certificate).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_bodies() {
        let (c, at, t) = restart_body(b"").unwrap();
        assert_eq!((c, at, t), (RestartConditions::default(), None, None));
        let (c, at, t) =
            restart_body(br#"{"role":"master","restart_pending":true,"schedule":"2026-11-22T03:00:00Z","timeout":30}"#)
                .unwrap();
        assert_eq!(c, RestartConditions { role: Some(MemberRole::Primary), pending_only: true });
        assert_eq!(at, Some(1_795_316_400_000));
        assert_eq!(t, Some(Duration::from_secs(30)));
        for bad in [
            &br#"{"role":"boss"}"#[..],
            br#"{"schedule":"tomorrow"}"#,
            br#"{"timeout":-1}"#,
            br#"{"postgres_version":"15"}"#,
            b"{",
        ] {
            let e = restart_body(bad).unwrap_err();
            assert!(!e.is_empty());
        }
    }

    #[test]
    fn networks_and_hosts() {
        let net = parse_net("10.0.0.0/8").unwrap();
        assert!(net.contains(&"10.1.2.3".parse::<std::net::IpAddr>().unwrap()));
        assert!(parse_net("192.168.1.7").unwrap().contains(&"192.168.1.7".parse::<std::net::IpAddr>().unwrap()));
        assert!(parse_net("::1").is_some());
        assert!(parse_net("10.0.0.0/33").is_none());
        assert!(parse_net("localhost").is_none());
        assert_eq!(url_host("https://10.0.0.5:8008"), Some(("10.0.0.5".into(), 8008)));
        assert_eq!(url_host("http://[::1]:8008/"), Some(("::1".into(), 8008)));
        assert_eq!(url_host("http://db1.example:8008"), Some(("db1.example".into(), 8008)));
        assert_eq!(url_host("nonsense"), None);
    }

    #[test]
    fn credentials_compare_in_full() {
        assert!(constant_time_eq(b"Basic abc", b"Basic abc"));
        assert!(!constant_time_eq(b"Basic abc", b"Basic abd"));
        assert!(!constant_time_eq(b"Basic ab", b"Basic abc"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
