//! A real etcd for tests: started from the `etcd` binary on free loopback ports in a
//! temporary directory, stopped by PID (also when the test panics), and a
//! [`hacore::testing::contract::Harness`] over it.

use crate::clock::BootClock;
pub use crate::server::{etcd_bin, free_port, EtcdServer, TlsFiles};
use crate::{EtcdConfig, EtcdDcs};
use hacore::dcs::{Key, LeaseModel};
use hacore::memdcs::Clock;
use hacore::testing::contract::Harness;
use hacore::types::Millis;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

static CLUSTERS: AtomicU64 = AtomicU64::new(0);

/// The contract harness: one cluster (a fresh key prefix) on a shared server. Needs a
/// multi-threaded tokio runtime (clients connect from the synchronous `client`).
pub struct EtcdHarness {
    /// The server.
    pub server: Arc<EtcdServer>,
    /// The cluster name (prefix `/test/<cluster>/`).
    pub cluster: String,
    /// Operation timeout of the clients.
    pub timeout: Duration,
}

impl EtcdHarness {
    /// A fresh cluster on `server`.
    pub fn fresh(server: &Arc<EtcdServer>) -> EtcdHarness {
        let n = CLUSTERS.fetch_add(1, Ordering::SeqCst);
        EtcdHarness {
            server: server.clone(),
            cluster: format!("c{}-{n}", std::process::id()),
            timeout: Duration::from_secs(3),
        }
    }

    /// The client configuration of `node` (endpoint override for proxies).
    pub fn config(&self, node: &str, endpoint: &str) -> EtcdConfig {
        EtcdConfig { timeout: self.timeout, ..EtcdConfig::new(vec![endpoint.into()], "test", &self.cluster, node) }
    }

    /// A client of `node` through `endpoint`.
    pub async fn connect(&self, node: &str, endpoint: &str) -> EtcdDcs {
        EtcdDcs::connect(&self.config(node, endpoint), Arc::new(BootClock))
            .await
            .unwrap_or_else(|e| panic!("connect to {endpoint}: {e}"))
    }
}

impl Harness for EtcdHarness {
    type D = EtcdDcs;

    fn client(&self, node: &str) -> EtcdDcs {
        let ep = self.server.endpoint();
        tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(self.connect(node, &ep)))
    }

    fn now(&self) -> Millis {
        BootClock.now()
    }

    fn sleep(&self, ms: Millis) -> impl std::future::Future<Output = ()> + Send {
        tokio::time::sleep(Duration::from_millis(ms))
    }

    fn lease_model(&self) -> LeaseModel {
        LeaseModel::StoreExpiry
    }

    fn inject_garbage(&self, key: &Key) -> impl std::future::Future<Output = bool> + Send {
        let full = crate::codec::Prefix::new("test", &self.cluster).key(key);
        let ep = self.server.endpoint();
        async move {
            let mut c = etcd_client::Client::connect([ep], None).await.expect("raw client");
            c.put(full, b"\x00garbage{".to_vec(), None).await.is_ok()
        }
    }
}

/// A TCP proxy on a free loopback port that delays every byte by a configurable time in
/// each direction (order kept), to show what the client measures its deadline from.
pub struct DelayProxy {
    port: u16,
    delay_ms: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl DelayProxy {
    /// Starts a proxy to `127.0.0.1:upstream` with no delay yet.
    pub async fn start(upstream: u16) -> DelayProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("proxy listener");
        let port = listener.local_addr().expect("proxy addr").port();
        let delay_ms = Arc::new(AtomicU64::new(0));
        let d = delay_ms.clone();
        let task = tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let Ok(up) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else { continue };
                let (dr, dw) = down.into_split();
                let (ur, uw) = up.into_split();
                tokio::spawn(pipe(dr, uw, d.clone()));
                tokio::spawn(pipe(ur, dw, d.clone()));
            }
        });
        DelayProxy { port, delay_ms, task }
    }

    /// `http://127.0.0.1:<proxy port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sets the one-way delay.
    pub fn set_delay(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay_ms: Arc<AtomicU64>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let due = tokio::time::Instant::now() + Duration::from_millis(delay_ms.load(Ordering::SeqCst));
                if tx.send((due, buf[..n].to_vec())).is_err() {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}
