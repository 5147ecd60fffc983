//! The etcd backend against a real etcd under faults: a slow network (the deadline counts
//! from the send time), renewals that stop, watch wake-ups, etcd restarted and frozen,
//! and garbage written with etcdctl.

use backend_etcd::testing::{DelayProxy, EtcdHarness, EtcdServer};
use backend_etcd::EtcdDcs;
use hacore::dcs::{
    Acquire, Dcs, DcsError, DcsOp, DcsReply, Expect, Key, LeaderGuard, LeaderRecord, LeaseGrant, MemberRecord,
    StatusRecord, SwitchoverRequest, Value, Write,
};
use hacore::memdcs::Clock;
use hacore::types::{Lsn, Millis, Term};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn now() -> Millis {
    backend_etcd::clock::BootClock.now()
}

fn acquire(node: &str, term: u64, ttl: Millis, term_was: u64) -> DcsOp {
    DcsOp::AcquireLeader(Acquire {
        record: LeaderRecord { holder: node.into(), term: Term(term), ttl },
        expect: Expect::Absent,
        term_was: Term(term_was),
        sync: None,
        history: None,
    })
}

fn grant(r: Result<DcsReply, DcsError>) -> LeaseGrant {
    match r {
        Ok(DcsReply::Lease(g)) => g,
        other => panic!("expected a lease grant, got {other:?}"),
    }
}

async fn guard(d: &EtcdDcs) -> LeaderGuard {
    let l = d.read().await.expect("read").leader.expect("leader record");
    LeaderGuard { holder: l.value.holder, term: l.value.term, version: l.version }
}

/// Polls `d` until the leader record is gone; returns when (node clock).
async fn leader_gone_at(d: &EtcdDcs, give_up: Millis) -> Millis {
    while now() < give_up {
        if d.read().await.is_ok_and(|v| v.leader.is_none()) {
            return now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the leader record was never deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_deadline_counts_from_the_send_time() {
    let server = Arc::new(EtcdServer::start());
    let h = EtcdHarness::fresh(&server);
    let proxy = DelayProxy::start(server.port()).await;
    let slow = h.connect("a", &proxy.endpoint()).await;
    let direct = h.connect("b", &server.endpoint()).await;
    slow.read().await.expect("warm up the connection");
    let delay = 400;
    proxy.set_delay(delay);

    let ttl = 2_000;
    let t0 = now();
    let g = grant(slow.execute(&acquire("a", 1, ttl, 0)).await);
    let t1 = now();
    assert!(t1 - t0 >= 4 * delay, "the proxy did not delay ({} ms for two round trips)", t1 - t0);
    assert!(g.sent_at >= t0 && g.sent_at < t0 + 100, "sent_at {} is not the send time (call began at {t0})", g.sent_at);

    // A renewal through the slow path: still the send time.
    let gd = guard(&direct).await;
    let t2 = now();
    let r = grant(slow.execute(&DcsOp::RenewLeader { guard: gd, ttl }).await);
    assert!(r.sent_at >= t2 && r.sent_at < t2 + 100, "renewal sent_at {} vs call at {t2}", r.sent_at);
    assert!(now() - t2 >= 2 * delay);

    // Renewals stop. The record must outlive sent_at + ttl: etcd started the lease when
    // the request arrived, later than it was sent. Counting from the reply would claim
    // the lease until about sent_at + 2 * delay + ttl, past the moment etcd deletes it.
    let gone = leader_gone_at(&direct, r.sent_at + ttl + 10_000).await;
    assert!(gone >= r.sent_at + r.ttl, "record deleted at {gone}, before sent_at + ttl = {}", r.sent_at + r.ttl);
    assert!(gone < r.sent_at + r.ttl + 2 * delay + 1_500, "expiry took too long: {gone} vs {}", r.sent_at + r.ttl);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_wakes_on_what_nodes_act_on_and_not_on_the_leaders_status() {
    let server = Arc::new(EtcdServer::start());
    let h = EtcdHarness::fresh(&server);
    let a = h.connect("a", &server.endpoint()).await;
    let b = h.connect("b", &server.endpoint()).await;
    assert!(a.has_watch());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The leader's status (rewritten as its position moves) does not wake anyone.
    let woke = tokio::time::timeout(Duration::from_millis(700), a.changed());
    let op = DcsOp::Put(Write::put(Value::Status(hacore::dcs::StatusRecord::default()), Expect::Any));
    let put = b.execute(&op);
    let (woke, put) = tokio::join!(woke, put);
    put.expect("put status");
    assert!(woke.is_err(), "the leader's status woke the watch");

    // A member record (written only when it changes materially: a member returns) does:
    // the leader creates the returning member's slot at once.
    let woke = tokio::time::timeout(Duration::from_secs(3), a.changed());
    let op = DcsOp::PublishMember(MemberRecord { name: "b".into(), ..Default::default() });
    let publish = b.execute(&op);
    let (woke, published) = tokio::join!(woke, publish);
    published.expect("publish");
    assert!(woke.is_ok(), "a member record did not wake the watch");

    // A switchover request does, promptly.
    let t0 = Instant::now();
    let woke = tokio::time::timeout(Duration::from_secs(3), a.changed());
    let req = Value::Switchover(SwitchoverRequest::default());
    let op = DcsOp::Put(Write::put(req, Expect::Absent));
    let put = b.execute(&op);
    let (woke, put) = tokio::join!(woke, put);
    put.expect("put");
    assert!(woke.is_ok(), "no wake-up within 3 s of a switchover request");
    assert!(t0.elapsed() < Duration::from_secs(1), "wake-up took {:?}", t0.elapsed());

    // The watch comes back after etcd restarts.
    server.restart();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut seen = false;
    for _ in 0..10 {
        let woke = tokio::time::timeout(Duration::from_secs(2), a.changed());
        let cfg = Value::Config(hacore::ClusterSettings::default());
        let op = DcsOp::Put(Write::put(cfg, Expect::Any));
        let put = b.execute(&op);
        let (woke, put) = tokio::join!(woke, put);
        if put.is_ok() && woke.is_ok() {
            seen = true;
            break;
        }
    }
    assert!(seen, "the watch did not come back after etcd restarted");
}

/// Every operation kind, against a store that does not answer, returns an error within
/// the configured bound (plus scheduling slack).
async fn all_fail_within_bound(d: &EtcdDcs, g: &LeaderGuard, bound: Duration) {
    let status = Value::Status(StatusRecord { leader: "a".into(), term: Term(1), lsn: Lsn(7), ..Default::default() });
    let ops = [
        DcsOp::RenewLeader { guard: g.clone(), ttl: 10_000 },
        DcsOp::LeaderWrite { guard: g.clone(), writes: vec![Write::put(status, Expect::Any)] },
        DcsOp::KeepAlive { ttl: 10_000 },
        DcsOp::PublishMember(MemberRecord { name: "a".into(), ..Default::default() }),
    ];
    let t0 = Instant::now();
    let r = d.read().await;
    assert!(matches!(r, Err(DcsError::Unavailable(_))), "read: {r:?}");
    assert!(t0.elapsed() <= bound + Duration::from_millis(500), "read took {:?}", t0.elapsed());
    for op in &ops {
        let t0 = Instant::now();
        let r = d.execute(op).await;
        assert!(r.is_err(), "{op:?} succeeded against a dead store");
        assert!(!matches!(r, Err(DcsError::Conflict(_))), "{op:?}: a dead store is not a conflict: {r:?}");
        assert!(t0.elapsed() <= bound + Duration::from_millis(500), "{op:?} took {:?}", t0.elapsed());
    }
}

/// A fresh etcd, and node `a` holding the leader record (ttl 10 s) with a client whose
/// operations are bounded by `timeout_ms`.
async fn leader_with_short_timeout(timeout_ms: u64) -> (Arc<EtcdServer>, EtcdHarness, EtcdDcs, LeaderGuard) {
    let server = Arc::new(EtcdServer::start());
    let mut h = EtcdHarness::fresh(&server);
    h.timeout = Duration::from_millis(timeout_ms);
    let a = h.connect("a", &server.endpoint()).await;
    grant(a.execute(&acquire("a", 1, 10_000, 0)).await);
    let g = guard(&a).await;
    (server, h, a, g)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn frozen_etcd_fails_within_the_bound_and_recovers() {
    let (server, h, a, g) = leader_with_short_timeout(1_000).await;
    server.freeze();
    all_fail_within_bound(&a, &g, h.timeout).await;
    server.thaw();
    let mut back = false;
    for _ in 0..50 {
        if a.read().await.is_ok() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "reads did not work again after SIGCONT");
    let g2 = guard(&a).await;
    assert_eq!(g2.version, g.version, "the record survived the freeze (ttl 10 s)");
    grant(a.execute(&DcsOp::RenewLeader { guard: g2, ttl: 10_000 }).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarted_etcd_fails_cleanly_and_recovers() {
    let (server, h, a, g) = leader_with_short_timeout(1_000).await;
    server.kill();
    all_fail_within_bound(&a, &g, h.timeout).await;
    server.restart();
    let mut renewed = None;
    for _ in 0..50 {
        if let Ok(r) = a.execute(&DcsOp::RenewLeader { guard: g.clone(), ttl: 10_000 }).await {
            renewed = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // etcd keeps leases across a restart (and extends them by their ttl).
    grant(Ok(renewed.expect("renewal did not work again after the restart")));
    assert_eq!(a.read().await.expect("read").leader.map(|l| l.value.holder), Some("a".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_written_with_etcdctl_is_reported_by_key() {
    let server = Arc::new(EtcdServer::start());
    let h = EtcdHarness::fresh(&server);
    let a = h.connect("a", &server.endpoint()).await;
    a.execute(&DcsOp::PublishMember(MemberRecord { name: "a".into(), ..Default::default() })).await.expect("publish");
    let p = format!("/test/{}/", h.cluster);
    server.etcdctl(&["put", &format!("{p}leader"), "not json"]);
    server.etcdctl(&["put", &format!("{p}config"), r#"{"ttl":"thirty"}"#]);
    server.etcdctl_with_input(&["put", &format!("{p}members/b")], "x".repeat(600 * 1024).as_bytes());
    server.etcdctl(&["put", &format!("{p}term"), "minus one"]);
    let v = a.read().await.expect("a read with garbage in it still succeeds");
    let bad: Vec<String> = v.corrupt.iter().map(|c| c.key.path()).collect();
    for k in ["leader", "config", "members/b", "term"] {
        assert!(bad.contains(&k.to_string()), "{k} not reported as corrupt: {bad:?}");
    }
    let size = v.corrupt.iter().find(|c| c.key == Key::Member("b".into())).expect("members/b");
    assert!(size.reason.contains("exceeds"), "{}", size.reason);
    assert_eq!(v.members.len(), 1, "the good member stays visible");
    assert!(v.leader.is_none());
    // Nothing overwrites the corrupt leader record except a CAS on its version.
    let r = a.execute(&acquire("a", 1, 10_000, 0)).await;
    assert!(matches!(r, Err(DcsError::Conflict(_))), "create-if-absent over garbage: {r:?}");
    assert_eq!(server.etcdctl(&["get", "--print-value-only", &format!("{p}leader")]).trim(), "not json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn password_authentication() {
    let server = Arc::new(EtcdServer::start());
    let h = EtcdHarness::fresh(&server);
    server.etcdctl(&["user", "add", "root:rootpw"]);
    server.etcdctl(&["user", "add", "ha:s3cret"]);
    server.etcdctl(&["role", "add", "ha"]);
    server.etcdctl(&["role", "grant-permission", "ha", "--prefix=true", "readwrite", "/test/"]);
    server.etcdctl(&["user", "grant-role", "ha", "ha"]);
    server.etcdctl(&["auth", "enable"]);

    let mut cfg = h.config("a", &server.endpoint());
    cfg.auth = Some(("ha".into(), "wrong".into()));
    let clock = Arc::new(backend_etcd::clock::BootClock);
    match EtcdDcs::connect(&cfg, clock.clone()).await {
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("check the user name and password"), "unhelpful error: {msg}");
            assert!(!msg.contains("wrong"), "the password leaked into the error: {msg}");
        }
        Ok(_) => panic!("a wrong password was accepted"),
    }
    cfg.auth = None;
    if let Ok(anon) = EtcdDcs::connect(&cfg, clock.clone()).await {
        let r = anon.read().await;
        assert!(r.is_err(), "an anonymous client read a cluster with auth enabled: {r:?}");
    }
    cfg.auth = Some(("ha".into(), "s3cret".into()));
    let a = EtcdDcs::connect(&cfg, clock).await.expect("connect with the right password");
    grant(a.execute(&acquire("a", 1, 10_000, 0)).await);
    assert_eq!(a.read().await.expect("read").leader.map(|l| l.value.holder), Some("a".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_killed_mid_write_gives_a_bounded_unknown_outcome() {
    let (server, h, a, g) = leader_with_short_timeout(1_500).await;
    let status =
        |lsn| Value::Status(StatusRecord { leader: "a".into(), term: Term(1), lsn: Lsn(lsn), ..Default::default() });
    a.execute(&DcsOp::LeaderWrite { guard: g.clone(), writes: vec![Write::put(status(1), Expect::Any)] })
        .await
        .expect("first status");

    // The write is in flight when etcd dies: frozen first so it cannot answer, then killed.
    server.freeze();
    let op = DcsOp::LeaderWrite { guard: g.clone(), writes: vec![Write::put(status(2), Expect::Any)] };
    let t0 = Instant::now();
    let write = a.execute(&op);
    let kill = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.kill();
    };
    let (r, ()) = tokio::join!(write, kill);
    assert!(t0.elapsed() <= h.timeout + Duration::from_millis(500), "the write took {:?}", t0.elapsed());
    match r {
        Err(DcsError::Indeterminate(_)) | Err(DcsError::Unavailable(_)) => {}
        other => panic!("a write cut off mid-flight must be unknown or unavailable, got {other:?}"),
    }
    server.restart();
    let mut lsn = None;
    for _ in 0..50 {
        if let Ok(v) = a.read().await {
            lsn = v.status.map(|s| s.value.lsn);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Either outcome is allowed; a torn or lost-then-reappearing record is not.
    assert!(matches!(lsn, Some(Lsn(1)) | Some(Lsn(2))), "status after the restart: {lsn:?}");
    a.execute(&DcsOp::LeaderWrite { guard: guard(&a).await, writes: vec![Write::put(status(3), Expect::Any)] })
        .await
        .expect("writes work again after the restart");
}
