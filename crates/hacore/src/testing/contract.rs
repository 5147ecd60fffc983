//! The `Dcs` contract suite. Every backend crate runs it against its real server:
//!
//! ```text
//! hacore::testing::contract::run_all(|| async { MyHarness::fresh_cluster().await }).await;
//! ```
//!
//! Each case gets a fresh cluster (a new key prefix) from the factory. Cases panic with a
//! message naming the broken rule.

use crate::dcs::{
    Acquire, ClusterView, Dcs, DcsError, DcsOp, DcsReply, Event, Expect, Key, LeaderGuard, LeaderRecord, LeaseGrant,
    LeaseModel, MemberRecord, StatusRecord, SwitchoverRequest, SyncRecord, Value, Write,
};
use crate::history::{Fork, ForkCause, History};
use crate::reason::Reason;
use crate::testing::linearizability::{self, Entry, RegOp, RegRet};
use crate::types::{Lsn, Millis, NodeName, Term, Timeline, Version};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What a backend provides to run the suite against one fresh cluster.
pub trait Harness: Sync {
    /// The client type.
    type D: Dcs;
    /// A client acting as `node` on this harness's cluster.
    fn client(&self, node: &str) -> Self::D;
    /// The node clock the clients report `sent_at` and `received_at` on.
    fn now(&self) -> Millis;
    /// Lets `ms` pass on every clock (a real sleep for real servers).
    fn sleep(&self, ms: Millis) -> impl Future<Output = ()> + Send;
    /// The lease model the backend implements.
    fn lease_model(&self) -> LeaseModel;
    /// A short ttl the store accepts (expiry tests wait about twice this).
    fn short_ttl(&self) -> Millis {
        2_000
    }
    /// Extra time the store may keep an expired lease (etcd checks expiry periodically).
    fn expiry_slack(&self) -> Millis {
        1_500
    }
    /// Writes undecodable bytes under `key`; false if the backend cannot.
    fn inject_garbage(&self, key: &Key) -> impl Future<Output = bool> + Send;
}

fn leader(holder: &str, term: u64, ttl: Millis) -> LeaderRecord {
    LeaderRecord { holder: holder.into(), term: Term(term), ttl }
}

fn acquire(holder: &str, term: u64, ttl: Millis, expect: Expect, term_was: u64) -> DcsOp {
    DcsOp::AcquireLeader(Acquire {
        record: leader(holder, term, ttl),
        expect,
        term_was: Term(term_was),
        sync: None,
        history: None,
    })
}

fn guard_of(view: &ClusterView) -> LeaderGuard {
    let l = view.leader.as_ref().expect("a leader record");
    LeaderGuard { holder: l.value.holder.clone(), term: l.value.term, version: l.version }
}

async fn read<D: Dcs>(d: &D) -> ClusterView {
    d.read().await.unwrap_or_else(|e| panic!("read failed: {e}"))
}

async fn ok<D: Dcs>(d: &D, op: &DcsOp) -> DcsReply {
    d.execute(op).await.unwrap_or_else(|e| panic!("{op:?} should succeed, failed: {e}"))
}

async fn conflict<D: Dcs>(d: &D, op: &DcsOp, why: &str) {
    match d.execute(op).await {
        Err(DcsError::Conflict(_)) => {}
        other => panic!("{why}: expected a conflict, got {other:?}"),
    }
}

fn grant(r: DcsReply) -> LeaseGrant {
    match r {
        DcsReply::Lease(g) => g,
        DcsReply::Done => panic!("a lease operation must reply with a grant"),
    }
}

/// Runs every case, each on a fresh cluster from `fresh`.
pub async fn run_all<H, F, Fut>(fresh: F)
where
    H: Harness,
    F: Fn() -> Fut,
    Fut: Future<Output = H>,
{
    empty_cluster(&fresh().await).await;
    acquire_is_create_if_absent(&fresh().await).await;
    terms_never_repeat(&fresh().await).await;
    renewal_is_guarded(&fresh().await).await;
    leader_writes_are_atomic_and_guarded(&fresh().await).await;
    release_frees_the_record(&fresh().await).await;
    transfer_then_claim(&fresh().await).await;
    acquire_respects_the_sync_record(&fresh().await).await;
    acquire_respects_the_history(&fresh().await).await;
    members_and_keepalive(&fresh().await).await;
    operator_puts_are_conditional(&fresh().await).await;
    events_are_appended(&fresh().await).await;
    corrupt_values_are_reported(&fresh().await).await;
    renewals_keep_the_record(&fresh().await).await;
    unclaimed_transfer_expires(&fresh().await).await;
    lease_expiry_frees_the_record(&fresh().await).await;
    concurrent_racers_are_linearizable(&fresh().await, 6, 25).await;
}

/// A fresh cluster reads empty, with the receipt time on the node clock.
pub async fn empty_cluster<H: Harness>(h: &H) {
    let a = h.client("a");
    let t0 = h.now();
    let v = read(&a).await;
    let t1 = h.now();
    assert!(v.leader.is_none() && v.members.is_empty() && v.initialize.is_none(), "fresh cluster not empty: {v:?}");
    assert_eq!(v.lease_model, h.lease_model(), "lease model");
    assert!(t0 <= v.received_at && v.received_at <= t1, "received_at {} not within [{t0}, {t1}]", v.received_at);
    assert!(v.corrupt.is_empty());
}

/// Acquire creates the record if absent, once; the grant states the send time and the
/// granted ttl; the read shows the same version.
pub async fn acquire_is_create_if_absent<H: Harness>(h: &H) {
    let (a, b) = (h.client("a"), h.client("b"));
    let t0 = h.now();
    let g = grant(ok(&a, &acquire("a", 1, 10_000, Expect::Absent, 0)).await);
    let t1 = h.now();
    assert!(t0 <= g.sent_at && g.sent_at <= t1, "sent_at {} must be the send time, within [{t0}, {t1}]", g.sent_at);
    assert!(g.ttl >= 10_000, "granted ttl {} below the requested 10000", g.ttl);
    conflict(&b, &acquire("b", 1, 10_000, Expect::Absent, 0), "second create-if-absent").await;
    conflict(&b, &acquire("b", 2, 10_000, Expect::Absent, 1), "create-if-absent over a held record").await;
    let v = read(&b).await;
    let l = v.leader.expect("leader record");
    assert_eq!((l.value.holder.as_str(), l.value.term, l.version), ("a", Term(1), g.version));
    assert_eq!(v.term, Term(1), "durable term");
    match a.execute(&acquire("b", 2, 10_000, Expect::Absent, 1)).await {
        Err(DcsError::Invalid(_)) | Err(DcsError::Conflict(_)) => {}
        other => panic!("a node must not acquire for another: {other:?}"),
    }
}

/// The durable term makes terms unique and increasing even after the record is gone.
pub async fn terms_never_repeat<H: Harness>(h: &H) {
    let (a, b) = (h.client("a"), h.client("b"));
    ok(&a, &acquire("a", 1, 10_000, Expect::Absent, 0)).await;
    let v = read(&a).await;
    ok(&a, &DcsOp::ReleaseLeader { guard: guard_of(&v) }).await;
    conflict(&b, &acquire("b", 1, 10_000, Expect::Absent, 0), "acquire with a stale durable term").await;
    ok(&b, &acquire("b", 2, 10_000, Expect::Absent, 1)).await;
    assert_eq!(read(&b).await.term, Term(2));
}

/// Only the holder renews, only in its term.
pub async fn renewal_is_guarded<H: Harness>(h: &H) {
    let (a, b) = (h.client("a"), h.client("b"));
    ok(&a, &acquire("a", 1, 10_000, Expect::Absent, 0)).await;
    let v = read(&a).await;
    let g = guard_of(&v);
    let t0 = h.now();
    let renewed = grant(ok(&a, &DcsOp::RenewLeader { guard: g.clone(), ttl: 10_000 }).await);
    assert!(renewed.sent_at >= t0 && renewed.sent_at <= h.now(), "renewal sent_at is the send time");
    let mut wrong_term = g.clone();
    wrong_term.term = Term(9);
    conflict(&a, &DcsOp::RenewLeader { guard: wrong_term, ttl: 10_000 }, "renew in another term").await;
    let mut not_b = g.clone();
    not_b.holder = "b".into();
    match b.execute(&DcsOp::RenewLeader { guard: not_b, ttl: 10_000 }).await {
        Err(DcsError::Conflict(_)) | Err(DcsError::Invalid(_)) => {}
        other => panic!("b renewed a's record: {other:?}"),
    }
    let v = read(&b).await;
    assert_eq!(v.leader.map(|l| (l.value.holder, l.version)), Some(("a".into(), renewed.version)));
}

/// A leader write applies all or nothing, and only under the leader guard (S5).
pub async fn leader_writes_are_atomic_and_guarded<H: Harness>(h: &H) {
    let a = h.client("a");
    ok(&a, &acquire("a", 1, 10_000, Expect::Absent, 0)).await;
    let v = read(&a).await;
    let g = guard_of(&v);
    let status = Value::Status(StatusRecord { leader: "a".into(), term: Term(1), lsn: Lsn(42), ..Default::default() });
    let sync = Value::Sync(SyncRecord { leader: "a".into(), term: Term(1), members: vec!["b".into()].into() });
    ok(
        &a,
        &DcsOp::LeaderWrite {
            guard: g.clone(),
            writes: vec![Write::put(status, Expect::Any), Write::put(sync, Expect::Absent)],
        },
    )
    .await;
    let v = read(&a).await;
    assert_eq!(v.status.as_ref().map(|s| s.value.lsn), Some(Lsn(42)));
    let sync_v = v.sync.as_ref().map(|s| s.version).expect("sync written");

    // One failing condition: nothing applied.
    let status2 = Value::Status(StatusRecord { leader: "a".into(), term: Term(1), lsn: Lsn(43), ..Default::default() });
    let sync2 = Value::Sync(SyncRecord { leader: "a".into(), term: Term(1), members: Default::default() });
    conflict(
        &a,
        &DcsOp::LeaderWrite {
            guard: g.clone(),
            writes: vec![Write::put(status2.clone(), Expect::Any), Write::put(sync2, Expect::Absent)],
        },
        "a write whose condition fails",
    )
    .await;
    assert_eq!(
        read(&a).await.status.map(|s| s.value.lsn),
        Some(Lsn(42)),
        "a failed transaction applied part of itself"
    );

    // A stale guard: nothing applied.
    let mut stale = g.clone();
    stale.term = Term(0);
    conflict(&a, &DcsOp::LeaderWrite { guard: stale, writes: vec![Write::put(status2, Expect::Any)] }, "stale guard")
        .await;
    assert_eq!(read(&a).await.status.map(|s| s.value.lsn), Some(Lsn(42)));

    // Delete by version.
    ok(&a, &DcsOp::LeaderWrite { guard: g, writes: vec![Write::delete(Key::Sync, Expect::Version(sync_v))] }).await;
    assert!(read(&a).await.sync.is_none());
}

/// Release deletes the record if it is still the writer's.
pub async fn release_frees_the_record<H: Harness>(h: &H) {
    let (a, b) = (h.client("a"), h.client("b"));
    ok(&a, &acquire("a", 1, 10_000, Expect::Absent, 0)).await;
    let g = guard_of(&read(&a).await);
    ok(&a, &DcsOp::ReleaseLeader { guard: g.clone() }).await;
    assert!(read(&b).await.leader.is_none());
    conflict(&a, &DcsOp::ReleaseLeader { guard: g }, "release of a record that is gone").await;
    ok(&b, &acquire("b", 2, 10_000, Expect::Absent, 1)).await;
}

/// A transfer hands the record over with a higher term and clears the request in the same
/// transaction; the old holder can no longer renew; the new one claims it.
pub async fn transfer_then_claim<H: Harness>(h: &H) {
    let (a, b) = (h.client("a"), h.client("b"));
    ok(&a, &acquire("a", 1, 10_000, Expect::Absent, 0)).await;
    let req = Value::Switchover(SwitchoverRequest { to: Some("b".into()), ..Default::default() });
    ok(&b, &DcsOp::Put(Write::put(req, Expect::Absent))).await;
    let v = read(&a).await;
    let sw = v.switchover.as_ref().map(|s| s.version).expect("request written");
    let g = guard_of(&v);
    conflict(
        &a,
        &DcsOp::TransferLeader {
            guard: g.clone(),
            to: leader("b", 2, 10_000),
            clear_switchover: Some(Version(sw.0 ^ 1)),
        },
        "transfer clearing a request at the wrong version",
    )
    .await;
    ok(&a, &DcsOp::TransferLeader { guard: g.clone(), to: leader("b", 2, 10_000), clear_switchover: Some(sw) }).await;
    let v = read(&b).await;
    let l = v.leader.clone().expect("leader");
    assert_eq!((l.value.holder.as_str(), l.value.term), ("b", Term(2)));
    assert!(v.switchover.is_none(), "request cleared with the transfer");
    assert_eq!(v.term, Term(2), "a transfer raises the durable term");
    conflict(&a, &DcsOp::RenewLeader { guard: g, ttl: 10_000 }, "old holder renewing after a transfer").await;
    let g = grant(ok(&b, &acquire("b", 2, 10_000, Expect::Version(l.version), 2)).await);
    let v = read(&a).await;
    assert_eq!(v.leader.map(|l| (l.value.holder, l.version)), Some(("b".into(), g.version)));
    ok(&b, &DcsOp::RenewLeader { guard: guard_of(&read(&b).await), ttl: 10_000 }).await;
}

/// S2: an acquire conditioned on the sync record fails once the record moved.
pub async fn acquire_respects_the_sync_record<H: Harness>(h: &H) {
    let (a, b) = (h.client("a"), h.client("b"));
    ok(&a, &acquire("a", 1, 10_000, Expect::Absent, 0)).await;
    let g = guard_of(&read(&a).await);
    let sync = |m: &[&str]| {
        Value::Sync(SyncRecord {
            leader: "a".into(),
            term: Term(1),
            members: Arc::new(m.iter().map(|x| x.to_string()).collect()),
        })
    };
    ok(&a, &DcsOp::LeaderWrite { guard: g.clone(), writes: vec![Write::put(sync(&["b"]), Expect::Absent)] }).await;
    let judged = read(&b).await.sync.map(|s| s.version).expect("sync");
    ok(&a, &DcsOp::LeaderWrite { guard: g.clone(), writes: vec![Write::put(sync(&[]), Expect::Version(judged))] })
        .await;
    ok(&a, &DcsOp::ReleaseLeader { guard: g }).await;
    let op = |v: Version| {
        DcsOp::AcquireLeader(Acquire {
            record: leader("b", 2, 10_000),
            expect: Expect::Absent,
            term_was: Term(1),
            sync: Some(Expect::Version(v)),
            history: None,
        })
    };
    conflict(&b, &op(judged), "acquire judged on a sync record that has since changed").await;
    let now = read(&b).await.sync.map(|s| s.version).expect("sync");
    ok(&b, &op(now)).await;
}

/// S4: an election's acquire conditioned on the history fails once the history moved (a
/// new leader recorded its fork after the candidate's read), and on an absent history once
/// one was written.
pub async fn acquire_respects_the_history<H: Harness>(h: &H) {
    let (a, b) = (h.client("a"), h.client("b"));
    ok(&a, &acquire("a", 1, 10_000, Expect::Absent, 0)).await;
    let g = guard_of(&read(&a).await);
    let op = |expect: Expect| {
        DcsOp::AcquireLeader(Acquire {
            record: leader("b", 2, 10_000),
            expect: Expect::Absent,
            term_was: Term(1),
            sync: None,
            history: Some(expect),
        })
    };
    let history = |forks: usize| {
        let fork = |i: usize| Fork {
            parent: Timeline(i as u32 + 1),
            lsn: Lsn(0x100 * (i as u64 + 1)),
            timeline: Timeline(i as u32 + 2),
            term: Term(1),
            node: "a".into(),
            cause: ForkCause::Failover,
            wall_time_ms: 0,
        };
        Value::History(History::new((0..forks).map(fork).collect()))
    };
    ok(&a, &DcsOp::LeaderWrite { guard: g.clone(), writes: vec![Write::put(history(1), Expect::Absent)] }).await;
    let judged = read(&b).await.history_expect();
    ok(&a, &DcsOp::LeaderWrite { guard: g.clone(), writes: vec![Write::put(history(2), judged)] }).await;
    ok(&a, &DcsOp::ReleaseLeader { guard: g }).await;
    conflict(&b, &op(judged), "acquire judged on a history that has since changed").await;
    conflict(&b, &op(Expect::Absent), "acquire judged on no history, one written since").await;
    ok(&b, &op(read(&b).await.history_expect())).await;
}

/// Members publish their own records; the read lists them sorted by name.
pub async fn members_and_keepalive<H: Harness>(h: &H) {
    let (a, b) = (h.client("a"), h.client("b"));
    ok(&b, &DcsOp::KeepAlive { ttl: 10_000 }).await;
    ok(&b, &DcsOp::PublishMember(MemberRecord { name: "b".into(), api_url: "http://b".into(), ..Default::default() }))
        .await;
    ok(&a, &DcsOp::KeepAlive { ttl: 10_000 }).await;
    ok(&a, &DcsOp::PublishMember(MemberRecord { name: "a".into(), api_url: "http://a".into(), ..Default::default() }))
        .await;
    ok(&a, &DcsOp::KeepAlive { ttl: 10_000 }).await;
    let v = read(&a).await;
    let names: Vec<_> = v.members.iter().map(|m| m.value.name.as_str()).collect();
    assert_eq!(names, vec!["a", "b"]);
    assert_eq!(v.member("a").map(|m| m.value.api_url.as_str()), Some("http://a"));
    match a.execute(&DcsOp::PublishMember(MemberRecord { name: "b".into(), ..Default::default() })).await {
        Err(DcsError::Invalid(_)) => {}
        other => panic!("a node must not publish another's record: {other:?}"),
    }
}

/// Operator writes (switchover requests, config) are conditional.
pub async fn operator_puts_are_conditional<H: Harness>(h: &H) {
    let a = h.client("cli");
    let req = Value::Switchover(SwitchoverRequest::default());
    ok(&a, &DcsOp::Put(Write::put(req.clone(), Expect::Absent))).await;
    conflict(&a, &DcsOp::Put(Write::put(req, Expect::Absent)), "second create-if-absent").await;
    let v = read(&a).await.switchover.map(|s| s.version).expect("request");
    conflict(
        &a,
        &DcsOp::Put(Write::delete(Key::Switchover, Expect::Version(Version(v.0 ^ 1)))),
        "delete at a wrong version",
    )
    .await;
    ok(&a, &DcsOp::Put(Write::delete(Key::Switchover, Expect::Version(v)))).await;
    assert!(read(&a).await.switchover.is_none());
    let cfg = Value::Config(crate::config::ClusterSettings::default());
    ok(&a, &DcsOp::Put(Write::put(cfg, Expect::Absent))).await;
    assert!(read(&a).await.config.is_some());
}

/// Events can be appended many times (the store keeps a bounded list).
pub async fn events_are_appended<H: Harness>(h: &H) {
    let a = h.client("a");
    for i in 0..120 {
        let e = Event {
            wall_time_ms: i,
            node: "a".into(),
            term: Term(0),
            reason: Reason::LeaderHealthy,
            detail: format!("event {i}"),
        };
        ok(&a, &DcsOp::AppendEvent(e)).await;
    }
    let events = read(&a).await.events;
    assert!((10..=120).contains(&events.len()), "a bounded list of the latest events, got {}", events.len());
    assert_eq!(events.last().map(|e| e.detail.as_str()), Some("event 119"), "the latest event last");
    assert!(events.windows(2).all(|w| w[0].wall_time_ms < w[1].wall_time_ms), "events in the order appended");
}

/// Undecodable values are reported with their key; the rest of the view stays usable.
pub async fn corrupt_values_are_reported<H: Harness>(h: &H) {
    let a = h.client("a");
    ok(&a, &DcsOp::KeepAlive { ttl: 10_000 }).await;
    ok(&a, &DcsOp::PublishMember(MemberRecord { name: "a".into(), ..Default::default() })).await;
    for key in [Key::Member("zz".into()), Key::Leader, Key::Sync] {
        if !h.inject_garbage(&key).await {
            return;
        }
    }
    let v = read(&a).await;
    let keys: Vec<&Key> = v.corrupt.iter().map(|c| &c.key).collect();
    assert!(keys.contains(&&Key::Member("zz".into())), "corrupt member not reported: {keys:?}");
    assert!(keys.contains(&&Key::Leader), "corrupt leader not reported: {keys:?}");
    assert!(keys.contains(&&Key::Sync), "corrupt sync not reported: {keys:?}");
    assert!(v.leader.is_none() && v.sync.is_none());
    assert_eq!(v.members.len(), 1, "the decodable member stays visible");
    // A corrupt leader record can only be replaced by CAS on its version.
    let c = v.corrupt.iter().find(|c| c.key == Key::Leader).map(|c| c.version).expect("corrupt leader");
    conflict(&a, &acquire("a", 1, 10_000, Expect::Absent, v.term.0), "create-if-absent over a corrupt record").await;
    ok(&a, &acquire("a", v.term.0 + 1, 10_000, Expect::Version(c), v.term.0)).await;
    assert!(read(&a).await.leader.is_some());
}

/// A holder renewing every third of the ttl keeps the record well past the ttl.
pub async fn renewals_keep_the_record<H: Harness>(h: &H) {
    let a = h.client("a");
    let ttl = h.short_ttl();
    ok(&a, &acquire("a", 1, ttl, Expect::Absent, 0)).await;
    for _ in 0..6 {
        h.sleep(ttl / 3).await;
        let g = guard_of(&read(&a).await);
        ok(&a, &DcsOp::RenewLeader { guard: g, ttl }).await;
    }
    let v = read(&a).await;
    assert_eq!(v.leader.map(|l| l.value.holder), Some("a".into()), "renewed record lost");
}

/// A transferred record that its new holder never claims is freed after its ttl, even
/// while the old holder keeps its own node lease alive.
pub async fn unclaimed_transfer_expires<H: Harness>(h: &H) {
    let (a, b) = (h.client("a"), h.client("b"));
    let ttl = h.short_ttl();
    ok(&a, &acquire("a", 1, ttl, Expect::Absent, 0)).await;
    let g = guard_of(&read(&a).await);
    ok(&a, &DcsOp::TransferLeader { guard: g, to: leader("b", 2, ttl), clear_switchover: None }).await;
    let transferred = read(&a).await.leader.expect("record").version;
    // a keeps its own lease alive; b never claims.
    let steps = 4;
    for _ in 0..steps {
        h.sleep((ttl + h.expiry_slack()) / steps).await;
        ok(&a, &DcsOp::KeepAlive { ttl }).await;
    }
    h.sleep(ttl / 4).await;
    let v = read(&a).await;
    match h.lease_model() {
        LeaseModel::StoreExpiry => assert!(v.leader.is_none(), "an unclaimed transferred record outlived its ttl"),
        LeaseModel::ObserverClock => {
            assert_eq!(v.leader.map(|l| l.version), Some(transferred), "nobody rewrote the record")
        }
    }
    let _ = b;
}

/// Without renewals the record is freed: deleted by the store (etcd), or left unchanged for
/// observers to age out and take by CAS (DynamoDB).
pub async fn lease_expiry_frees_the_record<H: Harness>(h: &H) {
    let (a, b) = (h.client("a"), h.client("b"));
    let ttl = h.short_ttl();
    let g = grant(ok(&a, &acquire("a", 1, ttl, Expect::Absent, 0)).await);
    h.sleep(g.ttl + h.expiry_slack()).await;
    let v = read(&b).await;
    match h.lease_model() {
        LeaseModel::StoreExpiry => {
            assert!(v.leader.is_none(), "the store kept an expired lease's record");
            ok(&b, &acquire("b", 2, ttl, Expect::Absent, 1)).await;
        }
        LeaseModel::ObserverClock => {
            let l = v.leader.expect("record stays");
            assert_eq!(l.version, g.version, "nobody renewed it");
            ok(&b, &acquire("b", 2, ttl, Expect::Version(l.version), 1)).await;
        }
    }
}

/// Many clients acquiring, renewing, releasing and transferring at once: the history of
/// the leader record must be linearizable.
pub async fn concurrent_racers_are_linearizable<H: Harness>(h: &H, clients: usize, ops: usize) {
    let clock = AtomicU64::new(0);
    let names: Vec<NodeName> = (0..clients).map(|i| format!("r{i}")).collect();
    let runs = (0..clients).map(|c| {
        let d = h.client(&names[c]);
        let (clock, names) = (&clock, &names);
        async move {
            let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (c as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
            let mut next = move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            let me = names[c].clone();
            let mut last: Option<(NodeName, Term, Version)> = None;
            let mut term = Term(0);
            let mut history = Vec::new();
            for _ in 0..ops {
                let r = next();
                let guard =
                    |l: &Option<(NodeName, Term, Version)>| {
                        l.clone()
                            .map(|(h, t, v)| LeaderGuard { holder: h, term: t, version: v })
                            .unwrap_or(LeaderGuard { holder: me.clone(), term: Term(1), version: Version(1) })
                    };
                let (op, reg) = match r % 10 {
                    0..=3 => (None, RegOp::Read),
                    4 | 5 => {
                        let expect = last.as_ref().map_or(Expect::Absent, |l| Expect::Version(l.2));
                        let claim = last.as_ref().is_some_and(|l| l.0 == me);
                        let new_term = if claim { last.as_ref().map_or(term, |l| l.1) } else { term.next() };
                        let op = DcsOp::AcquireLeader(Acquire {
                            record: LeaderRecord { holder: me.clone(), term: new_term, ttl: 60_000 },
                            expect,
                            term_was: term,
                            sync: None,
                            history: None,
                        });
                        (Some(op), RegOp::Acquire { holder: me.clone(), term: new_term, expect, term_was: term })
                    }
                    6 | 7 => {
                        let mut g = guard(&last);
                        g.holder = me.clone();
                        let reg = RegOp::Renew { holder: g.holder.clone(), term: g.term, version: g.version };
                        (Some(DcsOp::RenewLeader { guard: g, ttl: 60_000 }), reg)
                    }
                    8 => {
                        let mut g = guard(&last);
                        g.holder = me.clone();
                        let reg = RegOp::Release { holder: g.holder.clone(), term: g.term, version: g.version };
                        (Some(DcsOp::ReleaseLeader { guard: g }), reg)
                    }
                    _ => {
                        let mut g = guard(&last);
                        g.holder = me.clone();
                        let to = names[(next() % names.len() as u64) as usize].clone();
                        let to_term = g.term.next();
                        let reg = RegOp::Transfer {
                            holder: g.holder.clone(),
                            term: g.term,
                            version: g.version,
                            to: to.clone(),
                            to_term,
                        };
                        let op = DcsOp::TransferLeader {
                            guard: g,
                            to: LeaderRecord { holder: to, term: to_term, ttl: 60_000 },
                            clear_switchover: None,
                        };
                        (Some(op), reg)
                    }
                };
                let invoked = clock.fetch_add(1, Ordering::SeqCst);
                let ret = match &op {
                    None => match d.read().await {
                        Ok(v) => {
                            term = v.term;
                            last = v.leader.map(|l| (l.value.holder, l.value.term, l.version));
                            RegRet::Read(last.clone(), v.term)
                        }
                        Err(_) => continue,
                    },
                    Some(op) => match d.execute(op).await {
                        Ok(DcsReply::Lease(g)) => RegRet::Ok(Some(g.version)),
                        Ok(DcsReply::Done) => RegRet::Ok(None),
                        Err(DcsError::Conflict(_)) => RegRet::Conflict,
                        Err(DcsError::Indeterminate(_)) => RegRet::Unknown,
                        Err(e) => {
                            if e.maybe_applied() {
                                RegRet::Unknown
                            } else {
                                continue;
                            }
                        }
                    },
                };
                let returned = if ret == RegRet::Unknown { u64::MAX } else { clock.fetch_add(1, Ordering::SeqCst) };
                history.push(Entry { client: c, invoked, returned, op: reg, ret });
            }
            history
        }
    });
    let histories = futures::future::join_all(runs).await;
    let history: Vec<Entry> = histories.into_iter().flatten().collect();
    let applied = history.iter().filter(|e| matches!(e.ret, RegRet::Ok(_)) && e.op != RegOp::Read).count();
    assert!(applied >= clients, "the racers barely changed anything ({applied} writes applied)");
    if let Err(e) = linearizability::check(&history, Term(0)) {
        let mut h = e.history;
        h.sort_by_key(|e| e.invoked);
        let lines: Vec<String> = h.iter().map(|e| format!("{e:?}")).collect();
        panic!(
            "leader record history is not linearizable (longest consistent prefix {} of {}):\n{}",
            e.longest_prefix,
            lines.len(),
            lines.join("\n")
        );
    }
}
