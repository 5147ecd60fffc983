//! The `Dcs` contract suite against the in-memory reference store, in both lease models.

use hacore::dcs::{Key, LeaseModel};
use hacore::memdcs::{Clock, ManualClock, MemDcs, SharedStore, StoreOptions};
use hacore::testing::contract::{self, Harness};
use hacore::Millis;
use std::future::Future;
use std::sync::Arc;

struct Mem {
    store: Arc<SharedStore>,
    clock: Arc<ManualClock>,
    model: LeaseModel,
}

impl Mem {
    fn new(opts: StoreOptions) -> Mem {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let model = opts.lease_model;
        Mem { store: SharedStore::new(opts, clock.clone()), clock, model }
    }
}

impl Harness for Mem {
    type D = MemDcs;
    fn client(&self, node: &str) -> MemDcs {
        self.store.client(node, self.clock.clone())
    }
    fn now(&self) -> Millis {
        self.clock.now()
    }
    fn sleep(&self, ms: Millis) -> impl Future<Output = ()> + Send {
        self.clock.advance(ms);
        std::future::ready(())
    }
    fn lease_model(&self) -> LeaseModel {
        self.model
    }
    fn inject_garbage(&self, key: &Key) -> impl Future<Output = bool> + Send {
        self.store.with(|s| s.inject_corrupt(key.clone(), "not JSON"));
        std::future::ready(true)
    }
}

#[test]
fn etcd_like_store_passes_the_contract() {
    futures::executor::block_on(contract::run_all(|| async { Mem::new(StoreOptions::etcd_like()) }));
}

#[test]
fn dynamo_like_store_passes_the_contract() {
    futures::executor::block_on(contract::run_all(|| async { Mem::new(StoreOptions::dynamo_like()) }));
}

#[test]
fn many_racers_on_the_reference_store() {
    let h = Mem::new(StoreOptions::etcd_like());
    futures::executor::block_on(contract::concurrent_racers_are_linearizable(&h, 8, 60));
}

/// A store that forgets create-if-absent (treats `Absent` as `Any`).
struct Broken(MemDcs);

impl hacore::Dcs for Broken {
    fn read(&self) -> impl Future<Output = Result<hacore::ClusterView, hacore::DcsError>> + Send {
        self.0.read()
    }
    fn execute(&self, op: &hacore::DcsOp) -> impl Future<Output = Result<hacore::DcsReply, hacore::DcsError>> + Send {
        let mut op = op.clone();
        if let hacore::DcsOp::AcquireLeader(a) = &mut op {
            if a.expect == hacore::dcs::Expect::Absent {
                a.expect = hacore::dcs::Expect::Any;
            }
        }
        async move { self.0.execute(&op).await }
    }
}

struct BrokenHarness(Mem);

impl Harness for BrokenHarness {
    type D = Broken;
    fn client(&self, node: &str) -> Broken {
        Broken(self.0.client(node))
    }
    fn now(&self) -> Millis {
        self.0.now()
    }
    fn sleep(&self, ms: Millis) -> impl Future<Output = ()> + Send {
        self.0.sleep(ms)
    }
    fn lease_model(&self) -> LeaseModel {
        self.0.lease_model()
    }
    fn inject_garbage(&self, key: &Key) -> impl Future<Output = bool> + Send {
        self.0.inject_garbage(key)
    }
}

#[test]
fn the_suite_catches_a_store_without_create_if_absent() {
    let caught = std::panic::catch_unwind(|| {
        futures::executor::block_on(contract::acquire_is_create_if_absent(&BrokenHarness(Mem::new(
            StoreOptions::etcd_like(),
        ))))
    });
    assert!(caught.is_err(), "the contract suite accepted a broken store");
}
