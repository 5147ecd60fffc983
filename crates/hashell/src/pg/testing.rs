//! A real PostgreSQL for tests: initdb into a temp dir on a free port, started and stopped
//! with pg_ctl, killed by the PID in postmaster.pid when dropped (also on panic). Runs the
//! server as the `postgres` user when the tests run as root (PostgreSQL refuses root).

use super::observe::PgTarget;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// `$PG_BIN`, else Debian's PostgreSQL 15.
pub fn pg_bin() -> PathBuf {
    std::env::var_os("PG_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

pub use crate::local::free_port;

/// uid and gid to run PostgreSQL as: ours, or `postgres`'s when we are root.
pub fn run_as() -> Option<(u32, u32)> {
    crate::local::run_as().unwrap_or_else(|e| panic!("{e}"))
}

/// A command for a PostgreSQL binary, dropping root if needed.
pub fn pg_command(bin: &str) -> Command {
    let mut c = Command::new(pg_bin().join(bin));
    c.env("LC_ALL", "C");
    if let Some((uid, gid)) = run_as() {
        c.uid(uid).gid(gid);
    }
    c
}

use crate::local::chown;

static N: AtomicU64 = AtomicU64::new(0);

/// A new empty temp directory owned by the user PostgreSQL runs as.
fn fresh_root() -> PathBuf {
    let n = N.fetch_add(1, Ordering::SeqCst);
    let root = std::env::temp_dir().join(format!("hashell-pg-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("temp dir");
    chown(&root);
    root
}

/// Appends settings to `postgresql.conf` (later lines win).
fn append_conf(data: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new().append(true).open(data.join("postgresql.conf")).expect("conf");
    std::io::Write::write_all(&mut f, text.as_bytes()).expect("conf");
}

/// One PostgreSQL instance.
pub struct PgInstance {
    /// Temp directory holding data, socket and log.
    pub root: PathBuf,
    /// The data directory.
    pub data: PathBuf,
    /// Port.
    pub port: u16,
}

impl PgInstance {
    /// initdb (checksums on, trust auth on loopback) without starting.
    pub fn initdb() -> PgInstance {
        let root = fresh_root();
        let data = root.join("data");
        let out = pg_command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--data-checksums", "-E", "UTF8"])
            .output()
            .expect("initdb (Debian: apt-get install postgresql-15)");
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let port = free_port();
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nwal_level = replica\nmax_wal_senders = 5\nfsync = off\n",
            root.display()
        );
        append_conf(&data, &conf);
        PgInstance { root, data, port }
    }

    /// A standby of `primary` made with pg_basebackup -R (streaming, `application_name` =
    /// `name`, following member `n1`), not started.
    pub fn clone_from(primary: &PgInstance, name: &str) -> PgInstance {
        let root = fresh_root();
        let data = root.join("data");
        let conninfo = format!("host=127.0.0.1 port={} user=postgres application_name={name}", primary.port);
        let out = pg_command("pg_basebackup")
            .arg("-D")
            .arg(&data)
            .args(["-d", &conninfo, "-X", "stream", "-R", "-c", "fast"])
            .output()
            .expect("pg_basebackup");
        assert!(out.status.success(), "pg_basebackup: {}", String::from_utf8_lossy(&out.stderr));
        let port = free_port();
        let conf = format!("port = {port}\nunix_socket_directories = '{}'\n", root.display());
        let mut f = std::fs::OpenOptions::new().append(true).open(data.join("postgresql.conf")).expect("conf");
        std::io::Write::write_all(&mut f, conf.as_bytes()).expect("conf");
        std::fs::write(data.join(super::observe::UPSTREAM_FILE), "n1\n").expect("upstream file");
        chown(&data.join(super::observe::UPSTREAM_FILE));
        PgInstance { root, data, port }
    }

    /// pg_ctl start -w.
    pub fn start(&self) {
        let out = pg_command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.root.join("log"))
            .args(["-w", "-t", "60", "start"])
            .stdout(Stdio::null())
            .output()
            .expect("pg_ctl");
        let log = std::fs::read_to_string(self.root.join("log")).unwrap_or_default();
        assert!(out.status.success(), "pg_ctl start: {}\n{log}", String::from_utf8_lossy(&out.stderr));
    }

    /// pg_ctl stop with `mode` (fast, immediate).
    pub fn stop(&self, mode: &str) {
        let _ = pg_command("pg_ctl").arg("-D").arg(&self.data).args(["-w", "-m", mode, "stop"]).output();
    }

    /// SIGSTOP / SIGCONT to the postmaster and every backend (a hung server).
    pub fn signal_all(&self, sig: libc::c_int) {
        let out = Command::new("pgrep").arg("-f").arg(self.data.to_string_lossy().as_ref()).output();
        if let Some(pid) = super::files::postmaster_pid(&self.data) {
            // SAFETY: kill(2) on PIDs of processes we started.
            unsafe { libc::kill(pid, sig) };
        }
        if let Ok(out) = out {
            for pid in String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: as above.
                unsafe { libc::kill(pid, sig) };
            }
        }
        // Backends' titles do not name the data directory: the postmaster's children.
        if let (Some(pm), Ok(dir)) = (super::files::postmaster_pid(&self.data), std::fs::read_dir("/proc")) {
            for pid in dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let ppid = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().nth(1)?.parse::<i32>().ok());
                if ppid == Some(pm) {
                    // SAFETY: as above.
                    unsafe { libc::kill(pid, sig) };
                }
            }
        }
    }

    /// Runs SQL through psql as the superuser; returns stdout.
    pub fn psql(&self, sql: &str) -> String {
        let out = pg_command("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-d", "postgres", "-XAtqc", sql])
            // A test mistake (a commit waiting for a missing sync standby) fails, not hangs.
            .env("PGOPTIONS", "-c statement_timeout=30000")
            .output()
            .expect("psql");
        assert!(out.status.success(), "psql {sql:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The observer's target for this instance.
    pub fn target(&self) -> PgTarget {
        PgTarget {
            bin_dir: pg_bin(),
            data_dir: self.data.clone(),
            host: "127.0.0.1".into(),
            port: self.port,
            user: "postgres".into(),
            password: None,
            timeout: Duration::from_secs(2),
        }
    }
}

impl Drop for PgInstance {
    fn drop(&mut self) {
        self.signal_all(libc::SIGCONT);
        if let Some(pid) = super::files::postmaster_pid(&self.data) {
            if super::files::is_postgres(pid) {
                // SAFETY: the postmaster we started; SIGQUIT is an immediate shutdown.
                unsafe { libc::kill(pid, libc::SIGQUIT) };
                for _ in 0..100 {
                    if !super::files::is_postgres(pid) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                // SAFETY: as above; the last resort.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
