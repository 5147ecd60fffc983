//! The store a configuration names: etcd or DynamoDB behind one type, so the daemon, the
//! REST API and the commands run the same code over either.

use crate::config::FileConfig;
#[cfg(feature = "dynamodb")]
use backend_dynamo::{DynamoConfig, DynamoDcs};
use backend_etcd::clock::BootClock;
use backend_etcd::EtcdDcs;
use hacore::dcs::{ClusterView, Dcs, DcsError, DcsOp, DcsReply};
use std::sync::Arc;
#[cfg(feature = "dynamodb")]
use std::time::Duration;

/// etcd or DynamoDB.
pub enum Store {
    /// etcd v3 (boxed: its client is large).
    Etcd(Box<EtcdDcs>),
    /// DynamoDB.
    #[cfg(feature = "dynamodb")]
    Dynamo(DynamoDcs),
}

impl Store {
    /// Where the cluster lives, for messages.
    pub fn location(&self) -> String {
        match self {
            Store::Etcd(e) => format!("etcd prefix {}", e.prefix()),
            #[cfg(feature = "dynamodb")]
            Store::Dynamo(d) => format!("DynamoDB {}", d.location()),
        }
    }

    /// Deletes everything the store holds for the cluster; how many keys.
    pub async fn remove_cluster(&self) -> Result<u64, DcsError> {
        match self {
            Store::Etcd(e) => e.remove_cluster().await,
            #[cfg(feature = "dynamodb")]
            Store::Dynamo(d) => d.remove_cluster().await,
        }
    }
}

impl Dcs for Store {
    async fn read(&self) -> Result<ClusterView, DcsError> {
        match self {
            Store::Etcd(e) => e.read().await,
            #[cfg(feature = "dynamodb")]
            Store::Dynamo(d) => d.read().await,
        }
    }

    async fn execute(&self, op: &DcsOp) -> Result<DcsReply, DcsError> {
        match self {
            Store::Etcd(e) => e.execute(op).await,
            #[cfg(feature = "dynamodb")]
            Store::Dynamo(d) => d.execute(op).await,
        }
    }

    async fn changed(&self) {
        match self {
            Store::Etcd(e) => e.changed().await,
            #[cfg(feature = "dynamodb")]
            Store::Dynamo(_) => std::future::pending().await,
        }
    }

    fn has_watch(&self) -> bool {
        match self {
            Store::Etcd(e) => e.has_watch(),
            #[cfg(feature = "dynamodb")]
            Store::Dynamo(d) => d.has_watch(),
        }
    }
}

/// The DynamoDB client configuration of this node.
#[cfg(feature = "dynamodb")]
pub fn dynamo_config(cfg: &FileConfig) -> Option<DynamoConfig> {
    let d = cfg.dcs.dynamodb.as_ref()?;
    Some(DynamoConfig {
        region: d.region.clone(),
        endpoint: d.endpoint.clone(),
        timeout: Duration::from_millis(cfg.settings.retry_timeout.0),
        ..DynamoConfig::new(&d.table, &cfg.cluster.namespace, &cfg.cluster.name, &cfg.node.name)
    })
}

/// Connects to the store `cfg` names.
pub async fn connect(cfg: &FileConfig) -> Result<Store, String> {
    #[cfg(feature = "dynamodb")]
    if let Some(d) = dynamo_config(cfg) {
        return DynamoDcs::connect(&d, Arc::new(BootClock)).await.map(Store::Dynamo).map_err(|e| e.to_string());
    }
    let etcd = crate::run::etcd_config(cfg)?;
    EtcdDcs::connect(&etcd, Arc::new(BootClock)).await.map(|e| Store::Etcd(Box::new(e))).map_err(|e| e.to_string())
}
