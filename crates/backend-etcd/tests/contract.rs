//! The shared `Dcs` contract suite against a real etcd (started by the test).

use backend_etcd::testing::{EtcdHarness, EtcdServer};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contract_suite_on_real_etcd() {
    let server = Arc::new(EtcdServer::start());
    hacore::testing::contract::run_all(|| async { EtcdHarness::fresh(&server) }).await;
}
