//! A real single-member etcd on free loopback ports in a temporary directory, stopped by
//! PID when dropped: for tests, benchmarks and `hashell demo`. Std only.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use loopback::free_port;

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
    /// Extra command-line flags (e.g. `--heartbeat-interval 50`).
    args: Vec<String>,
    /// The address it serves clients on.
    host: String,
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
        Self::try_start_with(tls, "127.0.0.1", &[]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts etcd and waits until it answers, or says why it could not.
    pub fn try_start() -> Result<EtcdServer, String> {
        Self::try_start_with(|_| None, "127.0.0.1", &[])
    }

    /// [`EtcdServer::try_start`] serving clients on `host` (an address of this machine) with
    /// extra etcd flags, kept across restarts (e.g. a faster raft:
    /// `["--heartbeat-interval", "50", "--election-timeout", "500"]`).
    pub fn try_start_on(host: &str, args: &[&str]) -> Result<EtcdServer, String> {
        Self::try_start_with(|_| None, host, args)
    }

    fn try_start_with(
        tls: impl FnOnce(&std::path::Path) -> Option<TlsFiles>,
        host: &str,
        args: &[&str],
    ) -> Result<EtcdServer, String> {
        let n = SERVERS.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("hashell-etcd-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let tls = tls(&dir);
        let args = args.iter().map(|a| a.to_string()).collect();
        let s = EtcdServer {
            child: Mutex::new(None),
            dir,
            client_port: free_port(),
            peer_port: free_port(),
            tls,
            args,
            host: host.to_string(),
        };
        s.spawn()?;
        s.wait_ready()?;
        Ok(s)
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

    fn spawn(&self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))
            .map_err(|e| format!("cannot open etcd's log: {e}"))?;
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
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| {
                format!("cannot start {}: {e}; install etcd (Debian: apt-get install etcd-server)", etcd_bin())
            })?;
        *self.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        Ok(())
    }

    fn wait_ready(&self) -> Result<(), String> {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            if std::net::TcpStream::connect((self.host.as_str(), self.client_port)).is_ok() {
                // The port answers; etcd serves once it elected itself (a few hundred ms).
                let ok = self
                    .ctl()
                    .args(["endpoint", "health"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if ok {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default();
        Err(format!(
            "etcd did not become ready within 20 s (is etcdctl installed? Debian: etcd-client); its log:\n{log}"
        ))
    }

    /// `http://<host>:<port>` (127.0.0.1 unless started with [`EtcdServer::try_start_on`]).
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.host, self.client_port)
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
        if let Err(e) = self.spawn().and_then(|()| self.wait_ready()) {
            panic!("{e}");
        }
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
