//! DynamoDB-specific behaviour against the real (moto) server: takeover by version,
//! renewal racing a takeover, an observer aging the leader record on its own clock, member
//! keepalives, garbage items and oversized records, a stopped or frozen server, and the
//! table schema checks.

use aws_sdk_dynamodb::types::AttributeValue;
use backend_dynamo::testing::{DynamoHarness, DynamoServer, TestClock, TABLE};
use backend_dynamo::{DynamoConfig, DynamoDcs};
use hacore::dcs::{
    Acquire, ClusterView, Dcs, DcsError, DcsOp, DcsReply, Expect, Key, LeaderGuard, LeaderRecord, LeaseGrant,
    MemberRecord, StatusRecord, Value, Write,
};
use hacore::memdcs::Clock;
use hacore::types::{Lsn, Millis, Term, Version};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn acquire(holder: &str, term: u64, expect: Expect, term_was: u64) -> DcsOp {
    DcsOp::AcquireLeader(Acquire {
        record: LeaderRecord { holder: holder.into(), term: Term(term), ttl: 10_000 },
        expect,
        term_was: Term(term_was),
        sync: None,
        history: None,
    })
}

fn version(r: &DcsReply) -> Version {
    match r {
        DcsReply::Lease(g) => g.version,
        DcsReply::Done => panic!("a lease operation replies with a grant"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_takeover_needs_the_version_it_saw_and_races_a_renewal_with_one_winner() {
    let server = Arc::new(DynamoServer::start());
    for round in 0..20u64 {
        let h = DynamoHarness::fresh(&server).await;
        let ep = server.endpoint();
        let (a, b) = (h.connect("a", &ep).await, h.connect("b", &ep).await);
        let v1 = version(&a.execute(&acquire("a", 1, Expect::Absent, 0)).await.expect("a acquires"));
        let seen = b.read().await.expect("read").leader.expect("a's record").version;
        assert_eq!(seen, v1);
        if round == 0 {
            // A renewal changes the version: a takeover on the old one loses.
            let renew = DcsOp::RenewLeader {
                guard: LeaderGuard { holder: "a".into(), term: Term(1), version: v1 },
                ttl: 10_000,
            };
            let v2 = version(&a.execute(&renew).await.expect("a renews"));
            assert_ne!(v2, v1, "every renewal writes a fresh version");
            match b.execute(&acquire("b", 2, Expect::Version(v1), 1)).await {
                Err(DcsError::Conflict(_)) => {}
                other => panic!("a takeover on a renewed record must conflict, got {other:?}"),
            }
            continue;
        }
        let renew =
            DcsOp::RenewLeader { guard: LeaderGuard { holder: "a".into(), term: Term(1), version: v1 }, ttl: 10_000 };
        let take = acquire("b", 2, Expect::Version(v1), 1);
        let (r, t) = tokio::join!(a.execute(&renew), b.execute(&take));
        let wins = [r.is_ok(), t.is_ok()];
        assert_eq!(wins.iter().filter(|w| **w).count(), 1, "round {round}: renewal {r:?}, takeover {t:?}");
        let holder = b.read().await.expect("read").leader.expect("a record").value.holder;
        assert_eq!(holder, if r.is_ok() { "a" } else { "b" }, "round {round}: the store agrees with the winner");
    }
}

async fn bounded(what: &str, f: impl std::future::Future<Output = Result<DcsReply, DcsError>>) -> DcsError {
    let start = Instant::now();
    let r = f.await;
    let took = start.elapsed();
    assert!(took < Duration::from_secs(5), "{what} took {took:?} (timeout 3 s)");
    r.expect_err(what)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_or_frozen_server_fails_operations_within_their_bound() {
    let server = Arc::new(DynamoServer::start());
    let h = DynamoHarness::fresh(&server).await;
    let a = h.connect("a", &server.endpoint()).await;
    a.execute(&acquire("a", 1, Expect::Absent, 0)).await.expect("acquire");

    server.freeze();
    let start = Instant::now();
    let e = a.read().await.expect_err("read from a frozen server");
    assert!(start.elapsed() < Duration::from_secs(5), "read took {:?}", start.elapsed());
    assert!(matches!(e, DcsError::Unavailable(_)), "a read that got no answer is unavailable: {e:?}");
    let renew = DcsOp::RenewLeader {
        guard: LeaderGuard { holder: "a".into(), term: Term(1), version: Version(1) },
        ttl: 10_000,
    };
    let e = bounded("renewal against a frozen server", a.execute(&renew)).await;
    assert!(e.maybe_applied(), "a write sent without an answer may have been applied: {e:?}");
    server.thaw();
    a.read().await.expect("the thawed server answers again");

    server.kill();
    let start = Instant::now();
    let e = a.read().await.expect_err("read from a dead server");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(matches!(e, DcsError::Unavailable(_)), "{e:?}");
    let e = bounded("renewal against a dead server", a.execute(&renew)).await;
    assert!(matches!(e, DcsError::Unavailable(_) | DcsError::Indeterminate(_)), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_checks_say_what_is_wrong() {
    let server = Arc::new(DynamoServer::start());
    let h = DynamoHarness::fresh(&server).await;
    let cfg = |table: &str| DynamoConfig { table: table.into(), ..h.config("admin", &server.endpoint()) };
    let ok = DynamoDcs::connect(&cfg(TABLE), Arc::new(TestClock)).await.unwrap();
    ok.check_table().await.expect("the harness's table has the right schema");
    ok.create_table().await.expect("creating an existing table with the right schema is fine");

    let missing = DynamoDcs::connect(&cfg("no-such-table"), Arc::new(TestClock)).await.unwrap();
    let e = missing.check_table().await.expect_err("a missing table");
    assert!(e.contains("create-table"), "{e}");
    let e = missing.read().await.expect_err("reading a missing table");
    assert!(e.to_string().contains("create-table"), "{e}");

    use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
    missing
        .sdk()
        .create_table()
        .table_name("wrong-schema")
        .key_schema(KeySchemaElement::builder().attribute_name("id").key_type(KeyType::Hash).build().unwrap())
        .attribute_definitions(
            AttributeDefinition::builder().attribute_name("id").attribute_type(ScalarAttributeType::S).build().unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create a table with another schema");
    let wrong = DynamoDcs::connect(&cfg("wrong-schema"), Arc::new(TestClock)).await.unwrap();
    let e = wrong.check_table().await.expect_err("a table with another key schema");
    assert!(e.contains("partition key `cluster`") && e.contains("another table name"), "{e}");
    let e = wrong.create_table().await.expect_err("create-table on a table with another schema");
    assert!(e.contains("the table exists, but"), "{e}");
}

fn grant(r: Result<DcsReply, DcsError>) -> LeaseGrant {
    match r {
        Ok(DcsReply::Lease(g)) => g,
        other => panic!("expected a lease grant, got {other:?}"),
    }
}

/// The observer's rule, as the core applies it: the record is free once the same version
/// was seen for its full ttl, counted from the receipt of the first read that returned it.
#[derive(Default)]
struct Observer {
    seen: Option<(Version, Millis)>,
}

impl Observer {
    /// The version that may be taken over, if the record aged out in `view`.
    fn free(&mut self, view: &ClusterView) -> Option<Version> {
        let l = view.leader.as_ref()?;
        match self.seen {
            Some((v, since)) if v == l.version => {
                (view.received_at.saturating_sub(since) >= l.value.ttl).then_some(l.version)
            }
            _ => {
                self.seen = Some((l.version, view.received_at));
                None
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_observer_frees_the_record_only_after_a_ttl_of_one_version_on_its_own_clock() {
    let server = Arc::new(DynamoServer::start());
    let h = DynamoHarness::fresh(&server).await;
    let ep = server.endpoint();
    let (a, b) = (h.connect("a", &ep).await, h.connect("b", &ep).await);
    let ttl: Millis = 2_000;
    let op = DcsOp::AcquireLeader(Acquire {
        record: LeaderRecord { holder: "a".into(), term: Term(1), ttl },
        expect: Expect::Absent,
        term_was: Term(0),
        sync: None,
        history: None,
    });
    let first = grant(a.execute(&op).await);

    // While a renews every fifth of the ttl, b never sees one version for a ttl.
    let renewing = async {
        let mut last = first;
        let until = Instant::now() + Duration::from_millis(3 * ttl);
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(ttl / 5)).await;
            let guard = LeaderGuard { holder: "a".into(), term: Term(1), version: last.version };
            last = grant(a.execute(&DcsOp::RenewLeader { guard, ttl }).await);
        }
        last
    };
    let observing = async {
        let mut obs = Observer::default();
        let mut versions = std::collections::HashSet::new();
        let until = Instant::now() + Duration::from_millis(3 * ttl);
        while Instant::now() < until {
            let v = b.read().await.expect("read");
            versions.insert(v.leader.as_ref().map(|l| l.version));
            assert_eq!(obs.free(&v), None, "the record aged out while its holder renewed it");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (obs, versions.len())
    };
    let (last, (mut obs, seen)) = tokio::join!(renewing, observing);
    assert!(seen >= 5, "the observer saw only {seen} versions of a record renewed every {} ms", ttl / 5);

    // a stops renewing: b frees the record after a ttl of the last version, not before the
    // holder's own deadline (sent_at + ttl; same clock here, so no drift to allow for).
    let (free_at, version) = loop {
        let v = b.read().await.expect("read");
        if let Some(version) = obs.free(&v) {
            break (v.received_at, version);
        }
        assert!(TestClock.now() < last.sent_at + 4 * ttl, "the record never aged out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(version, last.version, "the last renewal's version ages out");
    assert!(free_at >= last.sent_at + ttl, "freed at {free_at}, before the holder's deadline {}", last.sent_at + ttl);
    assert!(free_at <= last.sent_at + ttl + 2_000, "freed at {free_at}, long after {}", last.sent_at + ttl);

    // The takeover is conditioned on the version b watched age; a's stale renewal loses.
    let take = DcsOp::AcquireLeader(Acquire {
        record: LeaderRecord { holder: "b".into(), term: Term(2), ttl },
        expect: Expect::Version(version),
        term_was: Term(1),
        sync: None,
        history: None,
    });
    let taken = grant(b.execute(&take).await);
    let guard = LeaderGuard { holder: "a".into(), term: Term(1), version: last.version };
    match a.execute(&DcsOp::RenewLeader { guard, ttl }).await {
        Err(DcsError::Conflict(_)) => {}
        other => panic!("the old holder renewed a record taken over: {other:?}"),
    }
    let l = a.read().await.expect("read").leader.expect("record");
    assert_eq!((l.value.holder.as_str(), l.value.term, l.version), ("b", Term(2), taken.version));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalives_give_the_member_record_a_fresh_version() {
    let server = Arc::new(DynamoServer::start());
    let h = DynamoHarness::fresh(&server).await;
    let a = h.connect("a", &server.endpoint()).await;
    a.execute(&DcsOp::KeepAlive { ttl: 10_000 }).await.expect("a keepalive without a record is fine");
    assert!(a.read().await.expect("read").members.is_empty(), "a keepalive must not create a member record");
    let record = MemberRecord { name: "a".into(), api_url: "http://a".into(), ..Default::default() };
    a.execute(&DcsOp::PublishMember(record.clone())).await.expect("publish");
    let mut versions = vec![a.read().await.expect("read").member("a").expect("member").version];
    for _ in 0..3 {
        a.execute(&DcsOp::KeepAlive { ttl: 10_000 }).await.expect("keepalive");
        let v = a.read().await.expect("read");
        let m = v.member("a").expect("member");
        assert_eq!(*m.value, record, "a keepalive changes the version only");
        versions.push(m.version);
    }
    let distinct: std::collections::HashSet<_> = versions.iter().collect();
    assert_eq!(distinct.len(), versions.len(), "every keepalive writes a fresh version: {versions:?}");
}

/// Writes one raw item into the harness's partition (or another one).
async fn raw_put(d: &DynamoDcs, partition: &str, key: &str, attrs: Vec<(&str, AttributeValue)>) {
    let mut req = d
        .sdk()
        .put_item()
        .table_name(TABLE)
        .item("cluster", AttributeValue::S(partition.into()))
        .item("key", AttributeValue::S(key.into()));
    for (name, value) in attrs {
        req = req.item(name, value);
    }
    req.send().await.unwrap_or_else(|e| panic!("raw put of {key}: {e:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_items_are_reported_by_key_and_foreign_ones_ignored() {
    let server = Arc::new(DynamoServer::start());
    let h = DynamoHarness::fresh(&server).await;
    let ep = server.endpoint();
    let a = h.connect("a", &ep).await;
    let part = h.config("a", &ep).partition();
    let member = |name: &str| {
        String::from_utf8(hacore::codec::json(&MemberRecord { name: name.into(), ..Default::default() })).unwrap()
    };
    let n = |v: &str| AttributeValue::N(v.into());
    let text = |v: &str| AttributeValue::S(v.into());
    a.execute(&DcsOp::PublishMember(MemberRecord { name: "a".into(), ..Default::default() })).await.expect("publish");
    raw_put(&a, &part, "members/bin", vec![("value", AttributeValue::B(vec![0, 159].into())), ("version", n("7"))])
        .await;
    raw_put(&a, &part, "members/noversion", vec![("value", text(&member("noversion")))]).await;
    raw_put(&a, &part, "members/liar", vec![("value", text(&member("someone-else"))), ("version", n("8"))]).await;
    raw_put(&a, &part, "status", vec![("value", text("{\"leader\": 3")), ("version", text("not a number"))]).await;
    raw_put(&a, &part, "config", vec![("version", n("9"))]).await;
    raw_put(&a, &part, "members/", vec![("value", text("x")), ("version", n("1"))]).await;
    raw_put(&a, &part, "not-ours", vec![("value", text("x")), ("version", n("1"))]).await;
    let other_leader =
        String::from_utf8(hacore::codec::json(&LeaderRecord { holder: "z".into(), term: Term(5), ttl: 1 })).unwrap();
    raw_put(&a, &format!("{part}-other"), "leader", vec![("value", text(&other_leader)), ("version", n("1"))]).await;

    let v = a.read().await.expect("a read never fails on garbage");
    let mut bad: Vec<(String, u64)> = v.corrupt.iter().map(|c| (c.key.path(), c.version.0)).collect();
    bad.sort();
    assert_eq!(
        bad,
        vec![
            ("config".to_string(), 9),
            ("members/bin".to_string(), 7),
            ("members/liar".to_string(), 8),
            ("members/noversion".to_string(), 0),
            ("status".to_string(), 0),
        ],
        "every undecodable item named, with its version; items that are not ours ignored"
    );
    assert!(v.leader.is_none() && v.term == Term(0), "another cluster's records leaked in: {v:?}");
    assert_eq!(v.members.iter().map(|m| m.value.name.as_str()).collect::<Vec<_>>(), vec!["a"]);
    assert!(v.corrupt.iter().all(|c| !c.reason.is_empty()));

    // A garbage item is replaced only by compare-and-swap on the version the read reported
    // (0 for an item without a numeric version).
    let status = Value::Status(StatusRecord { leader: "a".into(), term: Term(1), lsn: Lsn(5), ..Default::default() });
    match a.execute(&DcsOp::Put(Write::put(status.clone(), Expect::Absent))).await {
        Err(DcsError::Conflict(_)) => {}
        other => panic!("create-if-absent over a garbage item: {other:?}"),
    }
    a.execute(&DcsOp::Put(Write::put(status, Expect::Version(Version(0))))).await.expect("replace at version 0");
    let v = a.read().await.expect("read");
    assert_eq!(v.status.as_ref().map(|s| s.value.lsn), Some(Lsn(5)));
    assert!(v.corrupt_key(&Key::Status).is_none());
    let del = DcsOp::Put(Write::delete(Key::Config, Expect::Version(Version(9))));
    a.execute(&del).await.expect("delete the garbage config at its version");
    assert!(a.read().await.expect("read").corrupt_key(&Key::Config).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_record_is_invalid_and_nothing_is_written() {
    let server = Arc::new(DynamoServer::start());
    let h = DynamoHarness::fresh(&server).await;
    let a = h.connect("a", &server.endpoint()).await;
    let huge = Value::Status(StatusRecord { leader: "x".repeat(420 * 1024), ..Default::default() });
    match a.execute(&DcsOp::Put(Write::put(huge, Expect::Any))).await {
        Err(DcsError::Invalid(e)) => assert!(e.contains("limit"), "{e}"),
        other => panic!("a record over DynamoDB's item limit must be refused as invalid: {other:?}"),
    }
    let v = a.read().await.expect("read");
    assert!(v.status.is_none() && v.corrupt.is_empty(), "{v:?}");
}
