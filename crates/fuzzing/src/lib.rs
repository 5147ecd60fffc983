//! The bodies of the fuzz targets in `fuzz/` (cargo-fuzz, nightly), kept here so that the
//! stable test suite replays every kept corpus input and every past crash through the
//! same code (`tests/corpus.rs`). Each function takes the fuzzer's bytes and panics only
//! when a property is broken; see docs/fuzzing.md for what each one checks.
#![deny(missing_docs)]

use std::collections::HashMap;
use std::sync::OnceLock;

use aws_sdk_dynamodb::types::AttributeValue;
use hacore::testing::scenario::Scenario;
use hacore::{ClusterView, Config, Memory, Millis, Observation};

/// One fuzz target: takes the fuzzer's bytes, panics only when a property is broken.
pub type Target = fn(&[u8]);

/// The targets by name, as in `fuzz/fuzz_targets/<name>.rs` and `fuzz/corpus/<name>/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("store_values", store_values),
    ("dynamo_items", dynamo_items),
    ("config_file", config_file),
    ("rest_request", rest_request),
    ("step_json", step_json),
];

/// Steps the core on `view` as the leader, a replica and a node the view does not know,
/// twice each (the second time with the memory the first returned).
fn step_on_view(view: &ClusterView) {
    for who in ["n1", "n2", "n9"] {
        let mut s = Scenario::cluster3(who).at(view.received_at);
        s.obs.dcs = Ok(view.clone());
        let d = s.step();
        s.mem = d.memory;
        s.now += 1_000;
        let _ = s.step();
    }
}

/// Whatever an etcd cluster prefix holds: the input is split into key/value pairs at
/// 0xff bytes; keys get the cluster's prefix so they reach the decoders. Decoding makes a
/// view (bad values become corrupt keys) and the core steps on it, never a panic.
pub fn store_values(data: &[u8]) {
    use backend_etcd::codec::{decode_view, Prefix, RawKv};
    let prefix = Prefix::new("service", "c");
    let parts: Vec<&[u8]> = data.split(|b| *b == 0xff).collect();
    let pairs: Vec<(Vec<u8>, &[u8])> = parts
        .chunks(2)
        .map(|c| {
            let mut key = b"/service/c/".to_vec();
            key.extend_from_slice(c[0]);
            (key, c.get(1).copied().unwrap_or(&[]))
        })
        .collect();
    let raw = pairs.iter().enumerate().map(|(i, (k, v))| RawKv { key: k, value: v, mod_revision: i as i64 + 1 });
    let view = decode_view(&prefix, raw, 50_000);
    step_on_view(&view);
}

/// Whatever a DynamoDB partition's items hold: items are split at 0xfe bytes, an item's
/// attributes into name/value pairs at 0xff. A name's first byte below 4 stands for one
/// of the attributes the backend reads (`cluster`, `key`, `value`, `version`) so that the
/// fuzzer need not guess them; a value's first byte picks its type (string, number,
/// binary, bool, null, list, map). Decoding makes a view and the core steps on it.
pub fn dynamo_items(data: &[u8]) {
    const NAMES: [&str; 4] = ["cluster", "key", "value", "version"];
    let items: Vec<HashMap<String, AttributeValue>> = data
        .split(|b| *b == 0xfe)
        .map(|item| {
            let parts: Vec<&[u8]> = item.split(|b| *b == 0xff).collect();
            parts
                .chunks(2)
                .map(|c| {
                    let name = match c[0].first() {
                        Some(&i) if i < 4 => NAMES[i as usize].to_string(),
                        _ => String::from_utf8_lossy(c[0]).into_owned(),
                    };
                    (name, attribute(c.get(1).copied().unwrap_or(&[])))
                })
                .collect()
        })
        .collect();
    let view = backend_dynamo::decode_items("c", &items, 50_000);
    step_on_view(&view);
}

fn attribute(bytes: &[u8]) -> AttributeValue {
    let (kind, rest) = bytes.split_first().map_or((0, &[][..]), |(k, r)| (*k, r));
    let text = || String::from_utf8_lossy(rest).into_owned();
    match kind % 8 {
        0 | 7 => AttributeValue::S(text()),
        1 => AttributeValue::N(text()),
        2 => AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(rest)),
        3 => AttributeValue::Bool(rest.first().is_some_and(|b| b & 1 == 1)),
        4 => AttributeValue::Null(true),
        5 => AttributeValue::L(vec![AttributeValue::S(text())]),
        _ => AttributeValue::M(HashMap::from([("value".to_string(), AttributeValue::S(text()))])),
    }
}

/// A configuration file's text; the last line, if it looks like `KEY=VALUE`, doubles as a
/// `--set` pair and an environment override. Loading accepts it or refuses it with
/// errors, never a panic.
pub fn config_file(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let last = text.lines().last().unwrap_or("");
    let sets: Vec<(String, String)> =
        last.split_once('=').map(|(k, v)| vec![(k.trim().to_string(), v.trim().to_string())]).unwrap_or_default();
    let env =
        hashell::config::env_overrides(sets.iter().map(|(k, v)| (format!("HASHELL_{}", k.to_uppercase()), v.clone())));
    let _ = hashell::config::load("fuzz.toml", &text, &env, &sets);
}

/// What `step_json` decodes: one node's inputs to [`hacore::step`].
#[derive(serde::Serialize, serde::Deserialize)]
pub struct StepInput {
    /// Configuration (skipped unless it validates, as the daemon refuses to start).
    pub cfg: Config,
    /// Memory.
    pub mem: Memory,
    /// Observation.
    pub obs: Observation,
    /// Clock.
    pub now: Millis,
}

/// One node's inputs as JSON (config, memory, observation, clock), any values the types
/// can hold: the core decides without a panic, and the same inputs give the same
/// decision.
pub fn step_json(data: &[u8]) {
    let Ok(input) = serde_json::from_slice::<StepInput>(data) else { return };
    if input.cfg.validate().is_err() {
        return;
    }
    let a = hacore::step(&input.cfg, &input.mem, &input.obs, input.now);
    let b = hacore::step(&input.cfg, &input.mem, &input.obs, input.now);
    assert_eq!(a, b, "step is not a function of its inputs");
    let _ = hacore::step(&input.cfg, &a.memory, &input.obs, input.now.saturating_add(1_000));
}

/// The password of the REST API in `rest_request`'s strict configuration.
const PASSWORD: &str = "fuzz-s3cr3t";

struct Api {
    runtime: tokio::runtime::Runtime,
    /// No auth, no allow-list.
    open: axum::Router,
    /// Basic auth, an allow-list of 127.0.0.0/8, unsafe calls need a client certificate.
    strict: axum::Router,
    auth: String,
    /// Kept (its loop never runs; the API serves its empty state) so that the leak
    /// checker sees it reachable at exit.
    _daemon: std::sync::Mutex<hashell::daemon::Daemon<hashell::store::Store>>,
}

fn api() -> &'static Api {
    static API: OnceLock<Api> = OnceLock::new();
    API.get_or_init(|| {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("runtime");
        let dir = std::env::temp_dir().join(format!("hashell-fuzz-{}", std::process::id()));
        let data_dir = format!("{:?}", dir.join("data").display().to_string());
        let sets = [("postgresql.data_dir".to_string(), data_dir)];
        let cfg = hashell::config::load("fuzz", hashell::config::EXAMPLE, &[], &sets).expect("example config");
        let connector: hashell::daemon::Connector<hashell::store::Store> =
            Box::new(|| Box::pin(async { Err(hacore::dcs::DcsError::Unavailable("no store while fuzzing".into())) }));
        let daemon = runtime.block_on(async { hashell::daemon::Daemon::new(cfg, connector) }).expect("daemon");
        let auth = hashell::api::basic_auth("admin", PASSWORD);
        let strict = hashell::api::Access {
            auth: Some(auth.clone()),
            allowlist: vec![hashell::api::parse_net("127.0.0.0/8").expect("net")],
            include_members: true,
            require_cert: true,
        };
        let open = hashell::api::router(daemon.shared(), hashell::api::Access::default());
        let strict = hashell::api::router(daemon.shared(), strict);
        Api { runtime, open, strict, auth, _daemon: std::sync::Mutex::new(daemon) }
    })
}

/// One REST request. Byte 0 picks the method (bits 0-2), whether the request carries the
/// right credentials (bit 3), comes with a verified client certificate (bit 4), from an
/// allowed address (bit 5), and goes to the strict API (bit 6). The first line after it
/// is the path and query, the next an `Name: value` header, the rest the body.
///
/// Checked: never a 500; every error is JSON with a non-empty `error` (or, from a health
/// endpoint, the status document); a request that
/// changes the cluster without every credential the strict API asks for is refused
/// before any handler runs; no answer holds the strict API's password unless the
/// request did.
pub fn rest_request(data: &[u8]) {
    use axum::http::{Method, Request};
    use tower::ServiceExt;
    let Some((&flags, rest)) = data.split_first() else { return };
    let method = match flags & 7 {
        0 => Method::GET,
        1 => Method::POST,
        2 => Method::PATCH,
        3 => Method::DELETE,
        4 => Method::PUT,
        5 => Method::OPTIONS,
        6 => Method::HEAD,
        _ => Method::from_bytes(b"PURGE").expect("method"),
    };
    let (right_auth, cert, allowed, strict) = (flags & 8 != 0, flags & 16 != 0, flags & 32 != 0, flags & 64 != 0);
    let mut lines = rest.splitn(3, |b| *b == b'\n');
    let target = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let header = lines.next().unwrap_or_default();
    let body = lines.next().unwrap_or_default().to_vec();
    let uri = if target.starts_with('/') { target } else { format!("/{target}") };
    let api = api();
    let mut req = Request::builder().method(method.clone()).uri(uri.as_str());
    if let Some((name, value)) = header.split(|b| *b == b':').collect::<Vec<_>>().split_first() {
        let value: Vec<u8> = value.join(&b':').trim_ascii().to_vec();
        if let (Ok(n), Ok(v)) =
            (axum::http::HeaderName::from_bytes(name.trim_ascii()), axum::http::HeaderValue::from_bytes(&value))
        {
            if n != axum::http::header::AUTHORIZATION || !right_auth {
                req = req.header(n, v);
            }
        }
    }
    if right_auth {
        req = req.header(axum::http::header::AUTHORIZATION, api.auth.as_str());
    }
    let Ok(mut req) = req.body(axum::body::Body::from(body)) else { return };
    let ip = if allowed { [127, 0, 0, 1] } else { [10, 9, 9, 9] };
    req.extensions_mut().insert(hashell::serve::Peer { addr: (ip, 40_000).into(), verified_cert: cert });
    let router = if strict { api.strict.clone() } else { api.open.clone() };
    let (status, bytes) = api.runtime.block_on(async {
        let resp = router.oneshot(req).await.expect("infallible");
        let status = resp.status();
        let bytes = http_body_util::BodyExt::collect(resp.into_body()).await.expect("body").to_bytes();
        (status, bytes)
    });
    assert_ne!(status.as_u16(), 500, "{method} {uri} -> 500: {}", String::from_utf8_lossy(&bytes));
    if (status.is_client_error() || status.is_server_error()) && method != Method::HEAD {
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{method} {uri} -> {status}, body not JSON ({e}): {bytes:?}"));
        // A health endpoint's 503 is its answer: the status document, as Patroni's.
        let msg = v["error"].as_str().unwrap_or_default();
        let health = v["role"].is_string() && v["reason"].is_string();
        assert!(!msg.is_empty() || health, "{method} {uri} -> {status} without an error message: {v}");
    }
    let unsafe_method = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    if strict && unsafe_method && !(right_auth && allowed && cert) {
        assert!(
            !status.is_success(),
            "{method} {uri} without credentials (auth {right_auth}, allowed {allowed}, cert {cert}) -> {status}"
        );
    }
    let asked_for_it = data.windows(PASSWORD.len()).any(|w| w == PASSWORD.as_bytes());
    if !asked_for_it {
        let shown = bytes.windows(PASSWORD.len()).any(|w| w == PASSWORD.as_bytes());
        assert!(!shown, "{method} {uri} answer holds the password: {}", String::from_utf8_lossy(&bytes));
    }
}

/// Hand-made starting inputs for every target (a healthy three-node cluster's records, the
/// example configuration, one request per endpoint shape), written into `fuzz/corpus/` by
/// `cargo run -p fuzzing --example seeds` and replayed by the corpus test.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let s = Scenario::cluster3("n1").at(50_000);
    let view = s.obs.dcs.clone().expect("scenario view");
    let mut pairs: Vec<(String, Vec<u8>, u64)> = Vec::new();
    if let Some(l) = &view.leader {
        pairs.push(("leader".into(), hacore::codec::json(&l.value), l.version.0));
    }
    pairs.push(("term".into(), hacore::codec::encode_term(view.term), 1));
    for m in &view.members {
        pairs.push((format!("members/{}", m.value.name), hacore::codec::json(&m.value), m.version.0));
    }
    let values = [
        view.config.as_ref().map(|v| (hacore::codec::json(&v.value), v.version.0, "config")),
        view.sync.as_ref().map(|v| (hacore::codec::json(&v.value), v.version.0, "sync")),
        view.history.as_ref().map(|v| (hacore::codec::json(&v.value), v.version.0, "history")),
        view.status.as_ref().map(|v| (hacore::codec::json(&v.value), v.version.0, "status")),
        view.initialize.as_ref().map(|v| (hacore::codec::json(&v.value), v.version.0, "initialize")),
    ];
    for (bytes, version, key) in values.into_iter().flatten() {
        pairs.push((key.into(), bytes, version));
    }
    let mut etcd = Vec::new();
    let mut dynamo = Vec::new();
    for (i, (key, value, version)) in pairs.iter().enumerate() {
        if i > 0 {
            etcd.push(0xff);
            dynamo.push(0xfe);
        }
        etcd.extend_from_slice(key.as_bytes());
        etcd.push(0xff);
        etcd.extend_from_slice(value);
        for (name, kind, bytes) in
            [(1u8, 0u8, key.as_bytes()), (2, 0, value.as_slice()), (3, 1, version.to_string().as_bytes())]
        {
            dynamo.extend_from_slice(&[name, 0xff, kind]);
            dynamo.extend_from_slice(bytes);
            dynamo.push(0xff);
        }
        dynamo.pop();
    }
    out.push(("store_values", etcd));
    out.push(("dynamo_items", dynamo));
    out.push(("config_file", hashell::config::EXAMPLE.as_bytes().to_vec()));
    // The leader and a replica of a healthy cluster, and a fresh node.
    for s in [Scenario::cluster3("n1").at(50_000), Scenario::cluster3("n2").at(50_000), Scenario::node("n1").at(1_000)]
    {
        let input = StepInput { cfg: s.cfg, mem: s.mem, obs: s.obs, now: s.now };
        out.push(("step_json", serde_json::to_vec(&input).expect("json")));
    }
    let auth = 8 | 16 | 32; // right credentials, certificate, allowed address
    let requests: &[(u8, &str, &str, &str)] = &[
        (0, "/status", "", ""),
        (0, "/replica?lag=16MB&tag_nofailover=false", "", ""),
        (0, "/readiness?lag=1024", "Accept: application/json", ""),
        (5, "/primary", "", ""),
        (6, "/health", "", ""),
        (0, "/cluster", "", ""),
        (0, "/metrics", "", ""),
        (0, "/nope", "", ""),
        (1, "/switchover", "Content-Type: application/json", r#"{"leader":"n1","candidate":"n2"}"#),
        (1 | auth | 64, "/switchover?wait=false", "", r#"{"scheduled_at":"2026-11-22T03:00:00+01:00"}"#),
        (1 | 64, "/failover", "Authorization: Basic YWRtaW46eA==", r#"{"candidate":"n2"}"#),
        (3 | auth | 64, "/switchover", "", ""),
        (2 | auth | 64, "/config", "", r#"{"paused":true,"ttl":30000}"#),
        (1 | auth, "/restart", "", r#"{"role":"replica","restart_pending":true,"timeout":5}"#),
        (1 | auth | 64, "/restart", "", r#"{"schedule":"2999-01-01T00:00:00Z"}"#),
        (3, "/restart", "", ""),
        (1, "/failsafe", "", r#"{"leader":"n1","term":3,"ttl":30000}"#),
        (1, "/wake", "", ""),
        (1, "/reinitialize", "", ""),
        (1, "/reload", "", ""),
        (4, "/status", "", "x"),
    ];
    for (flags, target, header, body) in requests {
        let mut bytes = vec![*flags];
        bytes.extend_from_slice(format!("{target}\n{header}\n{body}").as_bytes());
        out.push(("rest_request", bytes));
    }
    out
}
