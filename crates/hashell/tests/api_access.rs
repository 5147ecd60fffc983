//! The REST API's doors, on the real server code (accept loop, TLS, middleware) in front of
//! a daemon that has not reached its store: who may make unsafe requests (basic auth 401,
//! the allow-list 403, client certificates with `verify_client` optional and required),
//! TLS itself, and malformed requests (400, never a crash). What the endpoints answer in
//! each role is tested on a real cluster (tests/tests/operator.rs).

use hashell::api::{router, Access, PeerClient};
use hashell::config::{load, FileConfig, EXAMPLE};
use hashell::daemon::{Connector, Daemon};
use hashell::store::Store;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType};
use std::path::{Path, PathBuf};
use std::time::Duration;

const AUTH: &str = "Basic YWRtaW46czNjcjN0"; // admin:s3cr3t

/// A CA, a member certificate (server and client use) and a certificate from another CA.
struct Pki {
    ca: PathBuf,
    other_ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    stranger_cert: PathBuf,
    stranger_key: PathBuf,
}

fn pki(dir: &Path) -> Pki {
    let ca = |name: &str| {
        let key = KeyPair::generate().expect("ca key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        (p.self_signed(&key).expect("ca cert"), key)
    };
    let issue = |ca: &(rcgen::Certificate, KeyPair)| {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        p.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        (p.signed_by(&key, &ca.0, &ca.1).expect("sign").pem(), key.serialize_pem())
    };
    let (ours, theirs) = (ca("cluster CA"), ca("some other CA"));
    let (cert, key) = issue(&ours);
    let (scert, skey) = issue(&theirs);
    let files = Pki {
        ca: dir.join("ca.pem"),
        other_ca: dir.join("other-ca.pem"),
        cert: dir.join("member.pem"),
        key: dir.join("member-key.pem"),
        stranger_cert: dir.join("stranger.pem"),
        stranger_key: dir.join("stranger-key.pem"),
    };
    for (p, pem) in [
        (&files.ca, ours.0.pem()),
        (&files.other_ca, theirs.0.pem()),
        (&files.cert, cert),
        (&files.key, key),
        (&files.stranger_cert, scert),
        (&files.stranger_key, skey),
    ] {
        std::fs::write(p, pem).expect("write pem");
    }
    files
}

fn config(dir: &Path, rest: &[(&str, String)]) -> FileConfig {
    let mut sets = vec![
        ("postgresql.data_dir".to_string(), format!("{:?}", dir.join("data").display().to_string())),
        ("rest.auth".to_string(), "{ username = \"admin\", password = \"s3cr3t\" }".to_string()),
    ];
    sets.extend(rest.iter().map(|(k, v)| (format!("rest.{k}"), v.clone())));
    load("test", EXAMPLE, &[], &sets).unwrap_or_else(|e| panic!("{e}"))
}

/// Serves the API of a daemon whose store never answers; returns its port.
async fn serve(cfg: &FileConfig) -> u16 {
    let connector: Connector<Store> =
        Box::new(|| Box::pin(async { Err(hacore::dcs::DcsError::Unavailable("no store in this test".into())) }));
    let daemon = Daemon::new(cfg.clone(), connector).unwrap_or_else(|e| panic!("{e}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let tls = hashell::tls::server_config(&cfg.rest).unwrap_or_else(|e| panic!("{e}"));
    let app = router(daemon.shared(), Access::of(cfg).unwrap_or_else(|e| panic!("{e}")));
    tokio::spawn(hashell::serve::serve(listener, app, tls));
    std::mem::forget(daemon); // its loop never runs; the API serves its (empty) state
    port
}

/// A client with `rest`'s TLS settings, sending `auth` on unsafe requests.
fn client(dir: &Path, rest: &[(&str, String)], auth: bool) -> PeerClient {
    let cfg = config(dir, rest);
    let tls = hashell::tls::client_config(&cfg.rest).unwrap_or_else(|e| panic!("{e}"));
    PeerClient::new(auth.then(|| AUTH.to_string()), tls).unwrap_or_else(|e| panic!("{e}"))
}

async fn call(c: &PeerClient, method: &str, url: &str, body: &str) -> Result<(u16, serde_json::Value), String> {
    let body = (!body.is_empty()).then(|| body.as_bytes().to_vec());
    c.call::<serde_json::Value>(method, url, body, Duration::from_secs(5))
        .await
        .map(|(code, v)| (code, v.unwrap_or(serde_json::Value::Null)))
}

fn error_text(v: &serde_json::Value) -> String {
    v["error"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn plain_http_auth_allowlist_and_malformed_requests() {
    let dir = tempdir();
    let open = serve(&config(&dir, &[])).await;
    let url = |p: &str| format!("http://127.0.0.1:{open}{p}");
    let (anon, admin) = (client(&dir, &[], false), client(&dir, &[], true));

    // Reads are open; the daemon has no PostgreSQL and no store yet.
    assert_eq!(call(&anon, "GET", &url("/health"), "").await.unwrap().0, 503);
    assert_eq!(call(&anon, "GET", &url("/liveness"), "").await.unwrap().0, 503, "the loop never ran");
    let (code, v) = call(&anon, "GET", &url("/cluster"), "").await.unwrap();
    assert_eq!(code, 503);
    assert!(error_text(&v).contains("ask another member"), "{v}");
    let (code, v) = call(&anon, "GET", &url("/no/such/thing"), "").await.unwrap();
    assert_eq!(code, 404);
    assert!(error_text(&v).contains("docs/rest-api.md"), "{v}");

    // Every unsafe endpoint refuses without credentials, with what to send.
    for (m, p) in [
        ("POST", "/switchover"),
        ("DELETE", "/switchover"),
        ("POST", "/failover"),
        ("POST", "/restart"),
        ("DELETE", "/restart"),
        ("POST", "/reload"),
        ("POST", "/reinitialize"),
        ("PATCH", "/config"),
        ("POST", "/failsafe"),
        ("POST", "/wake"),
    ] {
        let (code, v) = call(&anon, m, &url(p), "{}").await.unwrap();
        assert_eq!(code, 401, "{m} {p}: {v}");
        assert!(error_text(&v).contains("basic auth"), "{m} {p}: {v}");
    }
    // Wrong credentials are refused the same way.
    let wrong = PeerClient::new(Some("Basic YWRtaW46d3Jvbmc=".into()), None).unwrap();
    assert_eq!(call(&wrong, "POST", &url("/switchover"), "{}").await.unwrap().0, 401);

    // Malformed bodies and queries: 400 with what to send, never a crash.
    for (m, p, body, says) in [
        ("POST", "/switchover", "{not json", "scheduled_at"),
        ("POST", "/switchover", r#"{"candidate": 7}"#, "candidate"),
        ("POST", "/switchover", r#"{"scheduled_at": "soon"}"#, "RFC 3339"),
        ("POST", "/restart", r#"{"role": "boss"}"#, "primary, replica or any"),
        ("POST", "/restart", r#"{"schedule": "2001-01-01T00:00:00Z"}"#, "in the past"),
        ("POST", "/restart", "[1,2]", "schedule"),
        ("PATCH", "/config", "{{{", "not JSON"),
        ("POST", "/failsafe", "\u{1}garbage", "failsafe request"),
    ] {
        let (code, v) = call(&admin, m, &url(p), body).await.unwrap();
        assert_eq!(code, 400, "{m} {p} {body:?}: {v}");
        assert!(error_text(&v).contains(says), "{m} {p} {body:?}: {v}");
    }
    // A method an endpoint does not take: 405 saying so (after the access checks).
    for (m, p) in [("PUT", "/primary"), ("DELETE", "/health"), ("POST", "/cluster")] {
        let (code, v) = call(&admin, m, &url(p), "").await.unwrap();
        assert_eq!(code, 405, "{m} {p}: {v}");
        assert!(error_text(&v).contains(&format!("{p} does not take {m}")), "{m} {p}: {v}");
    }
    for q in ["/replica?lag=lots", "/replica?replication_state=dancing", "/readiness?lag=%ZZ"] {
        assert_eq!(call(&anon, "GET", &url(q), "").await.unwrap().0, 400, "{q}");
    }
    // A request body beyond the limit is refused, and the server goes on.
    let huge = "x".repeat(3 << 20);
    let r = call(&admin, "POST", &url("/switchover"), &huge).await;
    assert!(matches!(r, Ok((413, _))) || r.is_err(), "{r:?}");
    assert_eq!(call(&anon, "GET", &url("/health"), "").await.unwrap().0, 503, "still serving");
    // Valid and authorized, but the daemon has not reached its store: 503 says so.
    let (code, v) = call(&admin, "POST", &url("/switchover"), "{}").await.unwrap();
    assert_eq!(code, 503, "{v}");
    assert!(error_text(&v).contains("store"), "{v}");

    // An allow-list that does not cover loopback: unsafe requests are 403, reads are not.
    let listed = serve(&config(&dir, &[("allowlist", "[\"10.0.0.0/8\"]".into())])).await;
    let url = |p: &str| format!("http://127.0.0.1:{listed}{p}");
    let (code, v) = call(&admin, "POST", &url("/switchover"), "{}").await.unwrap();
    assert_eq!(code, 403, "{v}");
    assert!(error_text(&v).contains("allowlist"), "{v}");
    assert_eq!(call(&admin, "GET", &url("/health"), "").await.unwrap().0, 503);
    // One that does: the request gets past it to the auth check.
    let listed = serve(&config(&dir, &[("allowlist", "[\"10.0.0.0/8\", \"127.0.0.1\"]".into())])).await;
    let url = |p: &str| format!("http://127.0.0.1:{listed}{p}");
    assert_eq!(call(&anon, "POST", &url("/switchover"), "{}").await.unwrap().0, 401);
    assert_eq!(call(&admin, "POST", &url("/switchover"), "{}").await.unwrap().0, 503);
}

#[tokio::test]
async fn tls_with_client_certificates_optional_and_required() {
    let dir = tempdir();
    let k = pki(&dir);
    let s = |p: &PathBuf| format!("{:?}", p.display().to_string());
    // A member's configuration: its TLS keys, the CA of client certificates, and the CA
    // it verifies its peers' certificates with.
    let member =
        vec![("cert_file", s(&k.cert)), ("key_file", s(&k.key)), ("client_ca_file", s(&k.ca)), ("ca_file", s(&k.ca))];
    let server_tls = member.clone();
    let with = |v: &[(&'static str, String)], extra: (&'static str, &str)| {
        let mut v = v.to_vec();
        v.push((extra.0, extra.1.to_string()));
        v
    };

    // verify_client = optional: reads without a certificate; unsafe requests need one.
    let optional = serve(&config(&dir, &with(&server_tls, ("verify_client", "\"optional\"")))).await;
    let url = |p: &str| format!("https://127.0.0.1:{optional}{p}");
    let no_cert = client(&dir, &[("ca_file", s(&k.ca))], true);
    assert_eq!(call(&no_cert, "GET", &url("/health"), "").await.unwrap().0, 503);
    let (code, v) = call(&no_cert, "POST", &url("/switchover"), "{}").await.unwrap();
    assert_eq!(code, 403, "{v}");
    assert!(error_text(&v).contains("client certificate"), "{v}");
    let with_cert = client(&dir, &with(&member, ("verify_client", "\"optional\"")), true);
    assert_eq!(call(&with_cert, "POST", &url("/switchover"), "{}").await.unwrap().0, 503, "past every check");
    let cert_no_auth = client(&dir, &with(&member, ("verify_client", "\"optional\"")), false);
    assert_eq!(call(&cert_no_auth, "POST", &url("/switchover"), "{}").await.unwrap().0, 401);
    // A certificate from another CA is refused in the handshake.
    let stranger = client(
        &dir,
        &[
            ("ca_file", s(&k.ca)),
            ("cert_file", s(&k.stranger_cert)),
            ("key_file", s(&k.stranger_key)),
            ("client_ca_file", s(&k.ca)),
            ("verify_client", "\"optional\"".into()),
        ],
        true,
    );
    assert!(call(&stranger, "POST", &url("/switchover"), "{}").await.is_err());
    // Plain HTTP to the TLS port gets nothing.
    let plain = client(&dir, &[], true);
    assert!(call(&plain, "GET", &format!("http://127.0.0.1:{optional}/health"), "").await.is_err());
    // A client without a CA is refused before connecting, saying what to configure; one
    // with another CA fails the handshake (the server's certificate is not trusted).
    let e = call(&plain, "GET", &url("/health"), "").await.unwrap_err();
    assert!(e.contains("ca_file"), "{e}");
    let wrong_ca = client(&dir, &[("ca_file", s(&k.other_ca))], true);
    let e = call(&wrong_ca, "GET", &url("/health"), "").await.unwrap_err();
    assert!(e.to_lowercase().contains("certificate") || e.contains("UnknownIssuer"), "{e}");

    // verify_client = required: no certificate, no connection.
    let required = serve(&config(&dir, &with(&server_tls, ("verify_client", "\"required\"")))).await;
    let url = |p: &str| format!("https://127.0.0.1:{required}{p}");
    assert!(call(&no_cert, "GET", &url("/health"), "").await.is_err());
    let with_cert = client(&dir, &with(&member, ("verify_client", "\"required\"")), true);
    assert_eq!(call(&with_cert, "GET", &url("/health"), "").await.unwrap().0, 503);
    assert_eq!(call(&with_cert, "POST", &url("/switchover"), "{}").await.unwrap().0, 503);
}

#[test]
fn unreadable_or_mismatched_tls_files_are_reported_by_key() {
    let dir = tempdir();
    let k = pki(&dir);
    let s = |p: &Path| format!("{:?}", p.display().to_string());
    let missing = dir.join("missing.pem");
    for (rest, says) in [
        (vec![("cert_file", s(&missing)), ("key_file", s(&k.key))], "rest.cert_file"),
        (vec![("cert_file", s(&k.cert)), ("key_file", s(&k.cert))], "rest.key_file"),
        (vec![("cert_file", s(&k.cert)), ("key_file", s(&k.stranger_key))], "do not make a usable pair"),
        (vec![("cert_file", s(&k.cert)), ("key_file", s(&k.key)), ("client_ca_file", s(&k.key))], "client_ca_file"),
    ] {
        let mut rest = rest;
        rest.push(("ca_file", s(&k.ca)));
        let cfg = config(&dir, &rest);
        let e = hashell::tls::server_config(&cfg.rest).err().unwrap_or_default();
        assert!(e.contains(says), "{rest:?}: {e}");
    }
}

fn tempdir() -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let d = std::env::temp_dir().join(format!("hashell-api-access-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn tls_without_the_members_ca_is_refused_at_load() {
    let dir = tempdir();
    let k = pki(&dir);
    let s = |p: &Path| format!("{:?}", p.display().to_string());
    let sets = [
        ("rest.cert_file".to_string(), s(&k.cert)),
        ("rest.key_file".to_string(), s(&k.key)),
        ("rest.auth".to_string(), "{ username = \"admin\", password = \"s3cr3t\" }".to_string()),
    ];
    let e = load("test", EXAMPLE, &[], &sets).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("rest.ca_file"), "{e}");
}
