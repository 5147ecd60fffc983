//! The shared `Dcs` contract suite against a real DynamoDB-compatible server (moto),
//! started by the test.

use backend_dynamo::testing::{DynamoHarness, DynamoServer};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contract_suite_on_a_dynamodb_compatible_server() {
    let server = Arc::new(DynamoServer::start());
    hacore::testing::contract::run_all(|| DynamoHarness::fresh(&server)).await;
}
