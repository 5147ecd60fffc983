//! DynamoDB-specific behaviour against the real (moto) server: takeover by version,
//! renewal racing a takeover, a stopped or frozen server, and the table schema checks.

use backend_dynamo::testing::{DynamoHarness, DynamoServer, TestClock, TABLE};
use backend_dynamo::{DynamoConfig, DynamoDcs};
use hacore::dcs::{Acquire, Dcs, DcsError, DcsOp, DcsReply, Expect, LeaderGuard, LeaderRecord};
use hacore::types::{Term, Version};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn acquire(holder: &str, term: u64, expect: Expect, term_was: u64) -> DcsOp {
    DcsOp::AcquireLeader(Acquire {
        record: LeaderRecord { holder: holder.into(), term: Term(term), ttl: 10_000 },
        expect,
        term_was: Term(term_was),
        sync: None,
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
