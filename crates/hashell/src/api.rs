//! The REST API: what peers need (status for elections, failsafe acknowledgements) and the
//! health endpoints load balancers call, with Patroni's status codes. The full operator
//! surface (switchover, config, metrics) builds on this.
//!
//! | endpoint | 200 when | otherwise |
//! |---|---|---|
//! | `GET /peer` | always: this node's [`hacore::PeerStatus`] (JSON) | |
//! | `GET /status`, `GET /patroni` | always: the node's status (JSON) | |
//! | `GET /primary`, `/leader`, `/read-write` | PostgreSQL runs writable under this node's lease | 503 |
//! | `GET /replica` | PostgreSQL runs as a standby | 503 |
//! | `GET /read-only` | PostgreSQL runs (primary or standby) | 503 |
//! | `GET /health` | PostgreSQL runs | 503 |
//! | `GET /liveness` | the daemon's loop ran within 3 loop waits | 503 |
//! | `POST /failsafe` | the node acknowledges the primary (S1') | 409 |
//! | `POST /wake` | 202: the loop runs at once (a peer changed leadership; stores without a watch) | |

use crate::daemon::Shared;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use hacore::dcs::MemberRole;
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
}

fn status_code(ok: bool) -> StatusCode {
    if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn status_doc(sh: &Shared) -> StatusDoc {
    sh.status_doc()
}

/// The router over the daemon's shared state.
pub fn router(shared: Arc<Shared>) -> Router {
    async fn peer(State(sh): State<Arc<Shared>>) -> Response {
        Json(sh.peer_status().await).into_response()
    }
    async fn status(State(sh): State<Arc<Shared>>) -> Response {
        Json(status_doc(&sh).await).into_response()
    }
    async fn primary(State(sh): State<Arc<Shared>>) -> Response {
        let d = status_doc(&sh).await;
        let ok = d.running && d.role == MemberRole::Primary && d.writable_for_ms.is_some();
        (status_code(ok), Json(d)).into_response()
    }
    async fn replica(State(sh): State<Arc<Shared>>) -> Response {
        let d = status_doc(&sh).await;
        let ok = d.running && d.role == MemberRole::Replica;
        (status_code(ok), Json(d)).into_response()
    }
    async fn read_only(State(sh): State<Arc<Shared>>) -> Response {
        let d = status_doc(&sh).await;
        let ok = d.running && matches!(d.role, MemberRole::Replica | MemberRole::Primary);
        (status_code(ok), Json(d)).into_response()
    }
    async fn health(State(sh): State<Arc<Shared>>) -> Response {
        let d = status_doc(&sh).await;
        (status_code(d.running), Json(d)).into_response()
    }
    async fn liveness(State(sh): State<Arc<Shared>>) -> Response {
        let ok = sh.loop_alive();
        (status_code(ok), Json(serde_json::json!({ "loop_alive": ok }))).into_response()
    }
    async fn failsafe(State(sh): State<Arc<Shared>>, body: Bytes) -> Response {
        let req: FailsafeRequest = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                let msg = format!("body is not a failsafe request: {e}; send {{\"leader\":..,\"term\":..,\"ttl\":..}}");
                return (StatusCode::BAD_REQUEST, Json(serde_json::json!({ "error": msg }))).into_response();
            }
        };
        let ok = sh.answer_failsafe(&req);
        let code = if ok { StatusCode::OK } else { StatusCode::CONFLICT };
        (code, Json(serde_json::json!({ "accepted": ok }))).into_response()
    }
    async fn wake(State(sh): State<Arc<Shared>>) -> Response {
        let woke = sh.wake_from_peer();
        (StatusCode::ACCEPTED, Json(serde_json::json!({ "woke": woke }))).into_response()
    }
    Router::new()
        .route("/peer", get(peer))
        .route("/status", get(status))
        .route("/patroni", get(status))
        .route("/primary", get(primary))
        .route("/leader", get(primary))
        .route("/read-write", get(primary))
        .route("/replica", get(replica))
        .route("/read-only", get(read_only))
        .route("/health", get(health))
        .route("/liveness", get(liveness))
        .route("/failsafe", post(failsafe))
        .route("/wake", post(wake))
        .with_state(shared)
}

/// A small HTTP/1 client for peer calls, every request bounded.
#[derive(Clone)]
pub struct PeerClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for PeerClient {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_millis(500)));
        connector.set_nodelay(true);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        PeerClient { client }
    }
}

impl PeerClient {
    /// Sends a request and decodes a JSON answer with status `want`; `None` on any
    /// other status.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        url: &str,
        body: Option<Vec<u8>>,
        limit: Duration,
    ) -> Result<(u16, Option<T>), String> {
        let req = hyper::Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| format!("bad request to {url}: {e}"))?;
        let fut = async {
            let resp = self.client.request(req).await.map_err(|e| format!("{url}: {e}"))?;
            let code = resp.status().as_u16();
            let bytes = resp.into_body().collect().await.map_err(|e| format!("{url}: {e}"))?.to_bytes();
            Ok::<_, String>((code, serde_json::from_slice(&bytes).ok()))
        };
        tokio::time::timeout(limit, fut).await.map_err(|_| format!("{url}: no answer within {limit:?}"))?
    }
}
