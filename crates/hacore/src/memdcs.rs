//! An in-memory reference store: [`MemStore`] (synchronous, driven by an explicit store
//! clock, used by the simulator) and [`MemDcs`] (the [`Dcs`] trait over a shared
//! `MemStore`, for tests and embedding examples).
//!
//! It implements both lease models: etcd-like server-side expiry (with ttl rounding, a
//! minimum ttl, and "extend every lease" as etcd does when its own leader changes) and
//! DynamoDB-like records that never expire (a fresh version on every renewal).

use crate::dcs::{
    Acquire, ClusterView, CorruptKey, Dcs, DcsError, DcsOp, DcsReply, Event, Expect, Key, LeaderGuard, LeaderRecord,
    LeaseGrant, LeaseModel, MemberRecord, SwitchoverRequest, SyncRecord, Value, Write,
};
use crate::history::History;
use crate::types::{Millis, NodeName, Term, Version, Versioned};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// How the in-memory store behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Lease model.
    pub lease_model: LeaseModel,
    /// Granted ttls are rounded up to a multiple of this (etcd: 1000 ms).
    pub ttl_granularity: Millis,
    /// Granted ttls are at least this.
    pub ttl_min: Millis,
    /// ttl of a node lease created implicitly (publishing a member before any keepalive).
    pub default_ttl: Millis,
    /// Events kept.
    pub max_events: usize,
    /// Reads return the events (as a real store's do). A simulator, whose cores never
    /// read them, turns this off: copying them was half of its time.
    pub events_in_reads: bool,
}

impl StoreOptions {
    /// etcd-like: server-side expiry, whole seconds, 1 s minimum.
    pub fn etcd_like() -> Self {
        StoreOptions {
            lease_model: LeaseModel::StoreExpiry,
            ttl_granularity: 1_000,
            ttl_min: 1_000,
            default_ttl: 30_000,
            max_events: 100,
            events_in_reads: true,
        }
    }
    /// DynamoDB-like: no expiry; observers age records on their own clocks.
    pub fn dynamo_like() -> Self {
        StoreOptions { lease_model: LeaseModel::ObserverClock, ttl_granularity: 1, ttl_min: 1, ..Self::etcd_like() }
    }

    /// The ttl the store grants for a request.
    pub fn grant(&self, ttl: Millis) -> Millis {
        let g = self.ttl_granularity.max(1);
        ttl.div_ceil(g).saturating_mul(g).max(self.ttl_min)
    }
}

#[derive(Clone, Debug)]
struct NodeLease {
    ttl: Millis,
    expires_at: Millis,
}

#[derive(Clone, Debug)]
enum Stored {
    Value(Value),
    Corrupt(String),
}

/// The store's state. All methods take the store's own clock reading.
#[derive(Clone, Debug)]
pub struct MemStore {
    opts: StoreOptions,
    revision: u64,
    wake_revision: u64,
    term: Term,
    leader: Option<(Versioned<LeaderRecord>, NodeName)>,
    leader_corrupt: Option<(Version, String)>,
    members: BTreeMap<NodeName, Versioned<Arc<MemberRecord>>>,
    values: BTreeMap<Key, Versioned<Stored>>,
    events: VecDeque<Event>,
    leases: BTreeMap<NodeName, NodeLease>,
}

impl MemStore {
    /// An empty store.
    pub fn new(opts: StoreOptions) -> Self {
        MemStore {
            opts,
            revision: 0,
            wake_revision: 0,
            term: Term(0),
            leader: None,
            leader_corrupt: None,
            members: BTreeMap::new(),
            values: BTreeMap::new(),
            events: VecDeque::new(),
            leases: BTreeMap::new(),
        }
    }

    /// The options.
    pub fn options(&self) -> &StoreOptions {
        &self.opts
    }

    fn next_version(&mut self) -> Version {
        self.revision += 1;
        Version(self.revision)
    }

    /// Deletes what rides on leases that expired by `now` (store clock).
    pub fn expire(&mut self, now: Millis) {
        if self.opts.lease_model != LeaseModel::StoreExpiry {
            return;
        }
        let dead: Vec<NodeName> =
            self.leases.iter().filter(|(_, l)| l.expires_at <= now).map(|(n, _)| n.clone()).collect();
        for node in dead {
            self.leases.remove(&node);
            let mut changed = self.members.remove(&node).is_some();
            if self.leader.as_ref().is_some_and(|(_, owner)| *owner == node) {
                self.leader = None;
                self.wake_revision += 1;
                changed = true;
            }
            if changed {
                // Deletions by expiry are changes a watch reports.
                self.revision += 1;
            }
        }
    }

    /// etcd extends every lease by its full ttl when its own leader changes.
    pub fn extend_all_leases(&mut self, now: Millis) {
        for l in self.leases.values_mut() {
            l.expires_at = l.expires_at.max(now.saturating_add(l.ttl));
        }
    }

    /// When the next lease expires (store clock), if any lease exists.
    pub fn next_expiry(&self) -> Option<Millis> {
        if self.opts.lease_model != LeaseModel::StoreExpiry {
            return None;
        }
        self.leases.values().map(|l| l.expires_at).min()
    }

    /// When `node`'s lease expires (store clock), if it has one.
    pub fn lease_expiry(&self, node: &str) -> Option<Millis> {
        self.leases.get(node).map(|l| l.expires_at)
    }

    /// The store's revision: changes with every write that a watch would report.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Changes only with the keys a node must react to at once (leader, switchover,
    /// config, sync, history, initialize, failsafe, member records); the leader's status
    /// and events are picked up at the next loop. See [`Key::wakes`].
    pub fn wake_revision(&self) -> u64 {
        self.wake_revision
    }

    /// The current leader record, if any.
    pub fn leader(&self) -> Option<&Versioned<LeaderRecord>> {
        self.leader.as_ref().map(|(l, _)| l)
    }

    /// The published synchronous standby set, if the store holds a readable one.
    pub fn sync(&self) -> Option<&SyncRecord> {
        match self.values.get(&Key::Sync).map(|v| &v.value) {
            Some(Stored::Value(Value::Sync(s))) => Some(s),
            _ => None,
        }
    }

    /// The published history, if the store holds a readable one.
    pub fn history(&self) -> Option<&History> {
        match self.values.get(&Key::History).map(|v| &v.value) {
            Some(Stored::Value(Value::History(h))) => Some(h),
            _ => None,
        }
    }

    /// The pending switchover or failover request and its version, if the store holds a
    /// readable one.
    pub fn switchover(&self) -> Option<(Version, &SwitchoverRequest)> {
        match self.values.get(&Key::Switchover) {
            Some(Versioned { version, value: Stored::Value(Value::Switchover(s)) }) => Some((*version, s)),
            _ => None,
        }
    }

    /// `node`'s member record, if the store holds one (without expiring leases first).
    pub fn member(&self, node: &str) -> Option<&Versioned<Arc<MemberRecord>>> {
        self.members.get(node)
    }

    /// Recent events, oldest first.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.events.iter()
    }

    /// Deletes every key of the cluster, the term included, as an operator emptying the
    /// store would (`etcdctl del --prefix`); leases stay.
    pub fn wipe(&mut self) {
        self.leader = None;
        self.leader_corrupt = None;
        self.members.clear();
        self.values.clear();
        self.term = Term(0);
        self.wake_revision += 1;
    }

    /// Replaces a key's value with undecodable bytes (tests of corrupt-data handling).
    pub fn inject_corrupt(&mut self, key: Key, reason: &str) {
        let version = self.next_version();
        match key {
            Key::Leader => {
                self.leader = None;
                self.leader_corrupt = Some((version, reason.to_string()));
            }
            Key::Member(name) => {
                self.members.remove(&name);
                self.values.insert(Key::Member(name), Versioned { version, value: Stored::Corrupt(reason.into()) });
            }
            k => {
                self.values.insert(k, Versioned { version, value: Stored::Corrupt(reason.into()) });
            }
        }
    }

    /// One consistent read. `received_at` is the reader's clock at receipt.
    pub fn read(&mut self, now: Millis, received_at: Millis) -> ClusterView {
        self.expire(now);
        let mut view = ClusterView {
            received_at,
            lease_model: self.opts.lease_model,
            term: self.term,
            leader: self.leader.as_ref().map(|(l, _)| l.clone()),
            members: self.members.values().cloned().collect(),
            events: if self.opts.events_in_reads { self.events.iter().cloned().collect() } else { Vec::new() },
            ..Default::default()
        };
        if let Some((version, reason)) = &self.leader_corrupt {
            view.corrupt.push(CorruptKey { key: Key::Leader, version: *version, reason: reason.clone() });
        }
        for (key, v) in &self.values {
            let version = v.version;
            match &v.value {
                Stored::Corrupt(reason) => {
                    view.corrupt.push(CorruptKey { key: key.clone(), version, reason: reason.clone() })
                }
                Stored::Value(value) => match value.clone() {
                    Value::Status(x) => view.status = Some(Versioned { version, value: x }),
                    Value::Config(x) => view.config = Some(Versioned { version, value: x }),
                    Value::Switchover(x) => view.switchover = Some(Versioned { version, value: x }),
                    Value::Sync(x) => view.sync = Some(Versioned { version, value: x }),
                    Value::History(x) => view.history = Some(Versioned { version, value: x }),
                    Value::Initialize(x) => view.initialize = Some(Versioned { version, value: x }),
                    Value::Failsafe(x) => view.failsafe = Some(Versioned { version, value: x }),
                },
            }
        }
        view
    }

    fn current_version(&self, key: &Key) -> Option<Version> {
        match key {
            Key::Leader => self.leader.as_ref().map(|(l, _)| l.version).or(self.leader_corrupt.as_ref().map(|c| c.0)),
            Key::Member(n) => {
                self.members.get(n).map(|m| m.version).or_else(|| self.values.get(key).map(|v| v.version))
            }
            Key::Term | Key::Events => None,
            k => self.values.get(k).map(|v| v.version),
        }
    }

    fn holds(&self, key: &Key, expect: Expect) -> bool {
        match expect {
            Expect::Any => true,
            Expect::Absent => self.current_version(key).is_none(),
            Expect::Version(v) => self.current_version(key) == Some(v),
        }
    }

    fn guard_holds(&self, g: &LeaderGuard) -> bool {
        match &self.leader {
            Some((l, _)) => {
                l.value.holder == g.holder
                    && l.value.term == g.term
                    && (self.opts.lease_model == LeaseModel::ObserverClock || l.version == g.version)
            }
            None => false,
        }
    }

    fn refresh_lease(&mut self, node: &str, ttl: Millis, now: Millis) -> Millis {
        let granted = self.opts.grant(ttl);
        self.leases.insert(node.to_string(), NodeLease { ttl: granted, expires_at: now.saturating_add(granted) });
        granted
    }

    fn check_writes(&self, writes: &[Write]) -> Result<(), DcsError> {
        Write::check_shape(writes)?;
        for w in writes {
            if !self.holds(&w.key, w.expect) {
                return Err(DcsError::Conflict(format!("{} is not in the expected state", w.key.path())));
            }
        }
        Ok(())
    }

    fn apply_writes(&mut self, writes: &[Write]) {
        for w in writes {
            if w.key.wakes() {
                self.wake_revision += 1;
            }
            match &w.value {
                None => {
                    if let Key::Member(n) = &w.key {
                        self.members.remove(n);
                    }
                    self.values.remove(&w.key);
                }
                Some(v) => {
                    let version = self.next_version();
                    self.values.insert(w.key.clone(), Versioned { version, value: Stored::Value(v.clone()) });
                }
            }
        }
    }

    /// Applies one operation from `node`. `now` is the store clock; `sent_at` the
    /// caller's clock when it sent the request (reported in lease grants).
    pub fn apply(&mut self, node: &str, op: &DcsOp, now: Millis, sent_at: Millis) -> Result<DcsReply, DcsError> {
        self.expire(now);
        let observer = self.opts.lease_model == LeaseModel::ObserverClock;
        match op {
            DcsOp::AcquireLeader(Acquire { record, expect, term_was, sync, history }) => {
                if record.holder != node {
                    return Err(DcsError::Invalid("a node can only acquire the leader record for itself".into()));
                }
                if self.term != *term_was {
                    return Err(DcsError::Conflict(format!("term is {}, not {term_was}", self.term)));
                }
                if !self.holds(&Key::Leader, *expect) {
                    return Err(DcsError::Conflict("leader record is not in the expected state".into()));
                }
                if let Some(s) = sync {
                    if !self.holds(&Key::Sync, *s) {
                        return Err(DcsError::Conflict("sync record changed".into()));
                    }
                }
                if let Some(h) = history {
                    if !self.holds(&Key::History, *h) {
                        return Err(DcsError::Conflict("history changed".into()));
                    }
                }
                let ttl = if observer { record.ttl } else { self.refresh_lease(node, record.ttl, now) };
                let version = self.next_version();
                self.term = self.term.max(record.term);
                self.leader_corrupt = None;
                self.leader = Some((Versioned { version, value: record.clone() }, node.to_string()));
                self.wake_revision += 1;
                Ok(DcsReply::Lease(LeaseGrant { sent_at, ttl, version }))
            }
            DcsOp::RenewLeader { guard, ttl } => {
                if guard.holder != node || !self.guard_holds(guard) {
                    return Err(DcsError::Conflict("leader record is not this node's".into()));
                }
                if observer {
                    if self.leader.as_ref().is_some_and(|(l, _)| l.version != guard.version) {
                        return Err(DcsError::Conflict("leader record version moved".into()));
                    }
                    let version = self.next_version();
                    if let Some((l, _)) = &mut self.leader {
                        l.version = version;
                        l.value.ttl = *ttl;
                    }
                    return Ok(DcsReply::Lease(LeaseGrant { sent_at, ttl: *ttl, version }));
                }
                let granted = self.refresh_lease(node, *ttl, now);
                let owner = self.leader.as_ref().map(|(_, o)| o.clone()).unwrap_or_default();
                if owner != node {
                    // The record rides on another lease (a transfer, a restarted daemon):
                    // re-attach it to ours, which is a new write (new version).
                    let version = self.next_version();
                    if let Some((l, o)) = &mut self.leader {
                        l.version = version;
                        *o = node.to_string();
                    }
                }
                let version = self.leader.as_ref().map(|(l, _)| l.version).unwrap_or_default();
                Ok(DcsReply::Lease(LeaseGrant { sent_at, ttl: granted, version }))
            }
            DcsOp::ReleaseLeader { guard } => {
                if guard.holder != node || !self.guard_holds(guard) {
                    return Err(DcsError::Conflict("leader record is not this node's".into()));
                }
                self.leader = None;
                self.wake_revision += 1;
                Ok(DcsReply::Done)
            }
            DcsOp::TransferLeader { guard, to, clear_switchover } => {
                if guard.holder != node || !self.guard_holds(guard) {
                    return Err(DcsError::Conflict("leader record is not this node's".into()));
                }
                if to.term <= guard.term {
                    return Err(DcsError::Invalid("a transfer must increase the term".into()));
                }
                if let Some(v) = clear_switchover {
                    if !self.holds(&Key::Switchover, Expect::Version(*v)) {
                        return Err(DcsError::Conflict("switchover request changed".into()));
                    }
                    self.values.remove(&Key::Switchover);
                }
                let version = self.next_version();
                self.term = self.term.max(to.term);
                // The record goes on a fresh lease nobody keeps alive: if the new holder
                // never claims it (it died), it expires like any unrenewed lease.
                let owner = format!("\u{1}transfer-{}", to.term);
                if !observer {
                    self.refresh_lease(&owner, to.ttl, now);
                }
                self.leader = Some((Versioned { version, value: to.clone() }, owner));
                self.wake_revision += 1;
                Ok(DcsReply::Done)
            }
            DcsOp::LeaderWrite { guard, writes } => {
                if guard.holder != node || !self.guard_holds(guard) {
                    return Err(DcsError::Conflict("leader record is not this node's".into()));
                }
                self.check_writes(writes)?;
                self.apply_writes(writes);
                Ok(DcsReply::Done)
            }
            DcsOp::KeepAlive { ttl } => {
                if observer {
                    if self.members.contains_key(node) {
                        let version = self.next_version();
                        if let Some(m) = self.members.get_mut(node) {
                            m.version = version;
                        }
                    }
                } else {
                    self.refresh_lease(node, *ttl, now);
                }
                Ok(DcsReply::Done)
            }
            DcsOp::PublishMember(record) => {
                if record.name != node {
                    return Err(DcsError::Invalid("a node can only publish its own member record".into()));
                }
                if !observer && !self.leases.contains_key(node) {
                    let ttl = self.opts.default_ttl;
                    self.refresh_lease(node, ttl, now);
                }
                let version = self.next_version();
                self.values.remove(&Key::Member(node.to_string()));
                self.members.insert(node.to_string(), Versioned { version, value: Arc::new(record.clone()) });
                Ok(DcsReply::Done)
            }
            DcsOp::Put(w) => {
                self.check_writes(std::slice::from_ref(w))?;
                if matches!(w.key, Key::Member(_)) {
                    return Err(DcsError::Invalid("member records are published by their node".into()));
                }
                self.apply_writes(std::slice::from_ref(w));
                Ok(DcsReply::Done)
            }
            DcsOp::AppendEvent(e) => {
                self.events.push_back(e.clone());
                while self.events.len() > self.opts.max_events {
                    self.events.pop_front();
                }
                Ok(DcsReply::Done)
            }
        }
    }
}

/// A clock for [`MemDcs`]: the node's monotonic clock (and the store's, in tests).
pub trait Clock: Send + Sync {
    /// Milliseconds.
    fn now(&self) -> Millis;
}

/// A clock that only moves when told to (tests).
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicU64);

impl ManualClock {
    /// A clock at `t`.
    pub fn new(t: Millis) -> Self {
        ManualClock(std::sync::atomic::AtomicU64::new(t))
    }
    /// Moves the clock forward.
    pub fn advance(&self, ms: Millis) {
        self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[derive(Default)]
struct Watchers {
    revision: u64,
    wakers: Vec<Waker>,
}

/// A [`MemStore`] shared by several nodes.
pub struct SharedStore {
    store: Mutex<MemStore>,
    watch: Mutex<Watchers>,
    clock: Arc<dyn Clock>,
}

impl SharedStore {
    /// A shared store whose own clock is `clock`.
    pub fn new(opts: StoreOptions, clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(SharedStore { store: Mutex::new(MemStore::new(opts)), watch: Mutex::new(Watchers::default()), clock })
    }

    /// Runs `f` on the store (tests: inject corruption, inspect).
    pub fn with<R>(&self, f: impl FnOnce(&mut MemStore) -> R) -> R {
        let mut g = self.store.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    fn notify(&self) {
        let mut w = self.watch.lock().unwrap_or_else(|p| p.into_inner());
        w.revision += 1;
        for waker in w.wakers.drain(..) {
            waker.wake();
        }
    }

    /// A client for `node` reading the node clock `clock`.
    pub fn client(self: &Arc<Self>, node: &str, clock: Arc<dyn Clock>) -> MemDcs {
        MemDcs { shared: Arc::clone(self), node: node.to_string(), clock }
    }
}

/// The [`Dcs`] trait over a [`SharedStore`].
#[derive(Clone)]
pub struct MemDcs {
    shared: Arc<SharedStore>,
    node: NodeName,
    clock: Arc<dyn Clock>,
}

impl MemDcs {
    /// The shared store.
    pub fn store(&self) -> &Arc<SharedStore> {
        &self.shared
    }
}

struct Changed {
    shared: Arc<SharedStore>,
    seen: Option<u64>,
}

impl Future for Changed {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut w = self.shared.watch.lock().unwrap_or_else(|p| p.into_inner());
        match self.seen {
            Some(seen) if w.revision != seen => Poll::Ready(()),
            _ => {
                let rev = w.revision;
                w.wakers.push(cx.waker().clone());
                drop(w);
                self.seen = Some(rev);
                Poll::Pending
            }
        }
    }
}

impl Dcs for MemDcs {
    fn read(&self) -> impl Future<Output = Result<ClusterView, DcsError>> + Send {
        let now = self.shared.clock.now();
        let view = self.shared.with(|s| s.read(now, self.clock.now()));
        std::future::ready(Ok(view))
    }

    fn execute(&self, op: &DcsOp) -> impl Future<Output = Result<DcsReply, DcsError>> + Send {
        let sent_at = self.clock.now();
        let now = self.shared.clock.now();
        let result = self.shared.with(|s| s.apply(&self.node, op, now, sent_at));
        if result.is_ok() {
            self.shared.notify();
        }
        std::future::ready(result)
    }

    fn changed(&self) -> impl Future<Output = ()> + Send {
        Changed { shared: Arc::clone(&self.shared), seen: None }
    }

    fn has_watch(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_like_grant_rounds_up_and_has_minimum() {
        let o = StoreOptions::etcd_like();
        assert_eq!(o.grant(1), 1_000);
        assert_eq!(o.grant(1_001), 2_000);
        assert_eq!(o.grant(30_000), 30_000);
        assert_eq!(StoreOptions::dynamo_like().grant(1_234), 1_234);
    }

    #[test]
    fn leader_expires_with_its_lease_and_extension_postpones_it() {
        let mut s = MemStore::new(StoreOptions::etcd_like());
        let record = LeaderRecord { holder: "a".into(), term: Term(1), ttl: 10_000 };
        let op = DcsOp::AcquireLeader(Acquire {
            record,
            expect: Expect::Absent,
            term_was: Term(0),
            sync: None,
            history: None,
        });
        s.apply("a", &op, 0, 0).unwrap();
        assert!(s.read(9_999, 0).leader.is_some());
        s.extend_all_leases(5_000);
        assert!(s.read(14_999, 0).leader.is_some());
        assert!(s.read(15_000, 0).leader.is_none());
    }
}
