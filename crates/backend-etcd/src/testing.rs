//! A real etcd for tests: started from the `etcd` binary on free loopback ports in a
//! temporary directory, stopped by PID (also when the test panics), and a
//! [`hacore::testing::contract::Harness`] over it.

use crate::clock::BootClock;
use crate::{EtcdConfig, EtcdDcs};
use hacore::dcs::{Key, LeaseModel};
use hacore::memdcs::Clock;
use hacore::testing::contract::Harness;
use hacore::types::Millis;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A free loopback port (bound, then released for the server to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// The etcd binary: `$ETCD_BIN`, else `etcd` on the PATH.
pub fn etcd_bin() -> String {
    std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".into())
}

/// PEM files of a TLS-serving etcd: the CA, the server's certificate and key, and a
/// client certificate and key signed by the same CA (etcd then requires one).
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// CA certificate.
    pub ca: PathBuf,
    /// Server certificate (valid for 127.0.0.1).
    pub server_cert: PathBuf,
    /// Server key.
    pub server_key: PathBuf,
    /// Client certificate.
    pub client_cert: PathBuf,
    /// Client key.
    pub client_key: PathBuf,
}

/// One single-member etcd.
pub struct EtcdServer {
    child: Mutex<Option<Child>>,
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    tls: Option<TlsFiles>,
}

static SERVERS: AtomicU64 = AtomicU64::new(0);

impl EtcdServer {
    /// Starts etcd and waits until it answers (panics with its log if it does not).
    pub fn start() -> EtcdServer {
        Self::start_with(|_| None)
    }

    /// Starts etcd serving TLS only, requiring client certificates; `make` writes the PEM
    /// files into the directory it is given.
    pub fn start_tls(make: impl FnOnce(&std::path::Path) -> TlsFiles) -> EtcdServer {
        Self::start_with(|dir| Some(make(dir)))
    }

    fn start_with(tls: impl FnOnce(&std::path::Path) -> Option<TlsFiles>) -> EtcdServer {
        let n = SERVERS.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("hashell-etcd-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir for etcd");
        let tls = tls(&dir);
        let s = EtcdServer { child: Mutex::new(None), dir, client_port: free_port(), peer_port: free_port(), tls };
        s.spawn();
        s.wait_ready();
        s
    }

    /// The TLS files, for a server started with [`EtcdServer::start_tls`].
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    fn ctl(&self) -> Command {
        let mut c = Command::new("etcdctl");
        c.arg("--endpoints").arg(self.endpoint()).env("ETCDCTL_API", "3");
        if let Some(t) = &self.tls {
            c.arg("--cacert").arg(&t.ca).arg("--cert").arg(&t.client_cert).arg("--key").arg(&t.client_key);
        }
        c
    }

    fn spawn(&self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))
            .expect("etcd log file");
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new(etcd_bin())
            .args(["--name", "t", "--data-dir"])
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("t={peer}")])
            .args(self.tls.iter().flat_map(|t| {
                [
                    "--cert-file".into(),
                    t.server_cert.clone().into_os_string(),
                    "--key-file".into(),
                    t.server_key.clone().into_os_string(),
                    "--trusted-ca-file".into(),
                    t.ca.clone().into_os_string(),
                    "--client-cert-auth".into(),
                ]
            }))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {}: {e}; install etcd (Debian: apt-get install etcd-server)", etcd_bin())
            });
        *self.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
    }

    fn wait_ready(&self) {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            if std::net::TcpStream::connect(("127.0.0.1", self.client_port)).is_ok() {
                // The port answers; etcd serves once it elected itself (a few hundred ms).
                let ok = self
                    .ctl()
                    .args(["endpoint", "health"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if ok {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default();
        panic!("etcd did not become ready within 20 s; its log:\n{log}");
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.client_port
    }

    /// PID of the running etcd.
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|c| c.id())
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) with a PID we spawned and still own (not yet reaped).
            unsafe {
                libc::kill(pid as libc::pid_t, sig);
            }
        }
    }

    /// SIGSTOP: etcd freezes with its connections open. Returns once the kernel reports
    /// the process stopped.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
        let Some(pid) = self.pid() else { return };
        for _ in 0..200 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Field 3, after the parenthesised command name, is the state.
            if stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T')) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("etcd (pid {pid}) did not stop after SIGSTOP");
    }

    /// SIGCONT.
    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Kills etcd (SIGKILL) and reaps it.
    pub fn kill(&self) {
        if let Some(mut c) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills etcd and starts it again on the same ports and data.
    pub fn restart(&self) {
        self.kill();
        self.spawn();
        self.wait_ready();
    }

    /// Runs `etcdctl` against this server; returns its stdout (panics on failure).
    pub fn etcdctl(&self, args: &[&str]) -> String {
        self.etcdctl_with_input(args, b"")
    }

    /// Runs `etcdctl` with `input` on its stdin (`put KEY` reads the value from there).
    pub fn etcdctl_with_input(&self, args: &[&str], input: &[u8]) -> String {
        use std::io::Write;
        let mut child = self
            .ctl()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("etcdctl (Debian: apt-get install etcd-client)");
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(input);
        }
        let out = child.wait_with_output().expect("etcdctl output");
        assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.thaw();
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

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
