//! A real DynamoDB-compatible server for tests: moto (installed by
//! `scripts/install-dynamo-server.sh`), run by `scripts/dynamo-server.py` with every
//! request serialized (moto alone lets concurrent transactions interleave), started on a
//! free loopback port, stopped by PID (also when the test panics), and a
//! [`hacore::testing::contract::Harness`] over it.

use crate::{DynamoConfig, DynamoDcs};
use hacore::dcs::{Key, LeaseModel};
use hacore::memdcs::Clock;
use hacore::testing::contract::Harness;
use hacore::types::Millis;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The moto version `scripts/install-dynamo-server.sh` installs.
pub const MOTO_VERSION: &str = "5.0.28";

/// The Python that runs the server: `HASHELL_MOTO_PYTHON`, or the install script's venv.
pub fn server_python() -> PathBuf {
    if let Some(p) = std::env::var_os("HASHELL_MOTO_PYTHON") {
        return PathBuf::from(p);
    }
    let root = std::env::var_os("HASHELL_TOOLS").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache/hashell-tools")
    });
    root.join(format!("moto-{MOTO_VERSION}/bin/python"))
}

/// `scripts/dynamo-server.py` of this source tree.
pub fn server_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/dynamo-server.py")
}

use loopback::free_port;

/// A running moto server.
pub struct DynamoServer {
    port: u16,
    dir: PathBuf,
    child: Mutex<Option<Child>>,
}

static SERVERS: AtomicU64 = AtomicU64::new(0);

impl DynamoServer {
    /// Starts the server and waits until it answers; panics saying how to install it.
    pub fn start() -> DynamoServer {
        Self::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts the server and waits until it answers, or says why it could not.
    pub fn try_start() -> Result<DynamoServer, String> {
        let bin = server_python();
        if !bin.exists() {
            return Err(format!(
                "no DynamoDB-compatible server (moto) at {}: run scripts/install-dynamo-server.sh \
                 (or set HASHELL_MOTO_PYTHON to a python with moto[server] {MOTO_VERSION})",
                bin.display()
            ));
        }
        let n = SERVERS.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("hashell-moto-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("moto.log")).map_err(|e| e.to_string())?;
        let port = free_port();
        let child = Command::new(&bin)
            .arg(server_script())
            .args(["127.0.0.1", &port.to_string()])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let server = DynamoServer { port, dir, child: Mutex::new(Some(child)) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(server.dir.join("moto.log")).unwrap_or_default();
        Err(format!("moto did not listen on {port} within 30 s:\n{log}"))
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn pid(&self) -> Option<i32> {
        self.child.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|c| c.id() as i32)
    }

    /// Sends `sig` to the server.
    pub fn signal(&self, sig: libc::c_int) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on our own child's PID.
            unsafe { libc::kill(pid, sig) };
        }
    }

    /// Freezes the server (SIGSTOP): requests hang.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Resumes a frozen server.
    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Kills the server.
    pub fn kill(&self) {
        if let Some(mut c) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for DynamoServer {
    fn drop(&mut self) {
        self.thaw();
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// CLOCK_BOOTTIME in ms (the node clock the daemon uses).
#[derive(Clone, Copy, Debug, Default)]
pub struct TestClock;

impl Clock for TestClock {
    fn now(&self) -> Millis {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: a valid, writable timespec and an existing clock.
        unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
        (ts.tv_sec as u64).saturating_mul(1000).saturating_add(ts.tv_nsec as u64 / 1_000_000)
    }
}

static CLUSTERS: AtomicU64 = AtomicU64::new(0);

/// The table every harness on a server shares.
pub const TABLE: &str = "hashell-test";

/// The contract harness: one cluster (a fresh partition) in the shared table of a server.
/// Needs a multi-threaded tokio runtime.
pub struct DynamoHarness {
    /// The server.
    pub server: Arc<DynamoServer>,
    /// The cluster name (partition `test/<cluster>`).
    pub cluster: String,
    /// Operation timeout of the clients.
    pub timeout: Duration,
}

impl DynamoHarness {
    /// A fresh cluster on `server`, creating the table if needed.
    pub async fn fresh(server: &Arc<DynamoServer>) -> DynamoHarness {
        let n = CLUSTERS.fetch_add(1, Ordering::SeqCst);
        let h = DynamoHarness {
            server: server.clone(),
            cluster: format!("c{}-{n}", std::process::id()),
            timeout: Duration::from_secs(3),
        };
        let admin = h.connect("admin", &server.endpoint()).await;
        admin.create_table().await.unwrap_or_else(|e| panic!("{e}"));
        h
    }

    /// The client configuration of `node` against `endpoint`.
    pub fn config(&self, node: &str, endpoint: &str) -> DynamoConfig {
        DynamoConfig {
            endpoint: Some(endpoint.to_string()),
            region: Some("us-east-1".into()),
            credentials: Some(("testing".into(), "testing".into())),
            timeout: self.timeout,
            ..DynamoConfig::new(TABLE, "test", &self.cluster, node)
        }
    }

    /// A client of `node` through `endpoint`.
    pub async fn connect(&self, node: &str, endpoint: &str) -> DynamoDcs {
        DynamoDcs::connect(&self.config(node, endpoint), Arc::new(TestClock))
            .await
            .unwrap_or_else(|e| panic!("connect to {endpoint}: {e}"))
    }
}

impl Harness for DynamoHarness {
    type D = DynamoDcs;

    fn client(&self, node: &str) -> DynamoDcs {
        let ep = self.server.endpoint();
        tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(self.connect(node, &ep)))
    }

    fn now(&self) -> Millis {
        TestClock.now()
    }

    fn sleep(&self, ms: Millis) -> impl std::future::Future<Output = ()> + Send {
        tokio::time::sleep(Duration::from_millis(ms))
    }

    fn lease_model(&self) -> LeaseModel {
        LeaseModel::ObserverClock
    }

    fn expiry_slack(&self) -> Millis {
        // No store-side expiry: nothing to wait for beyond the ttl.
        200
    }

    fn inject_garbage(&self, key: &Key) -> impl std::future::Future<Output = bool> + Send {
        let cfg = self.config("garbage", &self.server.endpoint());
        let path = key.path();
        async move {
            let Ok(d) = DynamoDcs::connect(&cfg, Arc::new(TestClock)).await else { return false };
            d.client
                .put_item()
                .table_name(&d.table)
                .item(crate::PK, aws_sdk_dynamodb::types::AttributeValue::S(d.partition.clone()))
                .item(crate::SK, aws_sdk_dynamodb::types::AttributeValue::S(path))
                .item(crate::VALUE, aws_sdk_dynamodb::types::AttributeValue::S("\u{0}garbage{".into()))
                .item(crate::VERSION, aws_sdk_dynamodb::types::AttributeValue::N("12345".into()))
                .send()
                .await
                .is_ok()
        }
    }
}
