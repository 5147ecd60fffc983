//! Acting on the local PostgreSQL: initdb, pg_basebackup, pg_rewind, pg_ctl start / stop /
//! promote / reload, and the few SQL statements the daemon issues (slots, roles,
//! CHECKPOINT). Every operation is bounded by a time limit; a child still running at its
//! limit is killed.

use super::conf::{self, Managed, Upstream};
use super::files::{parse_lsn, postmaster_pid};
use super::kill::{alive, kill_instance};
use super::observe::{connect, controldata, PgTarget};
use crate::config::FileConfig;
use hacore::observation::SyncStandbys;
use hacore::types::{Lsn, Timeline};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

/// What the daemon currently wants in the managed files.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    /// `synchronous_standby_names`.
    pub sync: SyncStandbys,
    /// Run as a standby.
    pub standby: bool,
    /// Where from (with `standby`).
    pub upstream: Option<Upstream>,
    /// A restored backup's recovery to a point in time (bootstrap only).
    pub recovery: std::collections::BTreeMap<String, toml::Value>,
}

/// The local PostgreSQL as the daemon drives it.
pub struct PgCtl {
    cfg: FileConfig,
    /// How to connect and inspect.
    pub target: PgTarget,
    replication_password: Option<hacore::Secret>,
    desired: Mutex<Desired>,
    /// The user's settings that a reload of the file changes without a daemon restart.
    tunables: Mutex<Tunables>,
}

/// What `POST /reload` (or SIGHUP) takes from a re-read file: the user's PostgreSQL
/// parameters, pg_hba lines and `restore_command`.
#[derive(Clone, Debug, PartialEq)]
pub struct Tunables {
    /// `[postgresql] parameters`.
    pub parameters: std::collections::BTreeMap<String, toml::Value>,
    /// `[postgresql] pg_hba`.
    pub hba: Vec<String>,
    /// `[postgresql] restore_command`.
    pub restore_command: Option<String>,
}

impl Tunables {
    /// The tunables of a configuration.
    pub fn of(cfg: &FileConfig) -> Tunables {
        let pg = &cfg.postgresql;
        Tunables {
            parameters: pg.parameters.clone(),
            hba: pg.pg_hba.clone(),
            restore_command: pg.restore_command.clone(),
        }
    }
}

/// Reads `key=value` pairs from a libpq connection string (the published `pg_url`).
pub fn conninfo_get(info: &str, key: &str) -> Option<String> {
    info.split_whitespace().find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v.to_string()))
}

fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// Oldest PostgreSQL major version the daemon drives: repointing a standby reloads
/// `primary_conninfo` without a restart, which PostgreSQL does from 13 on.
pub const OLDEST_MAJOR: u32 = 13;
/// Newest major version the daemon is known to work with (newer ones start, with a warning).
pub const NEWEST_KNOWN_MAJOR: u32 = 17;

/// The major version in `postgres --version` output (`postgres (PostgreSQL) 15.10 (Debian
/// 15.10-0+deb12u1)`, `postgres (PostgreSQL) 18beta1`).
pub fn parse_major(version: &str) -> Option<u32> {
    let rest = version.split("(PostgreSQL)").nth(1)?.trim_start();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The major version of the binaries in `bin_dir`, refused when older than
/// [`OLDEST_MAJOR`]; a newer one than [`NEWEST_KNOWN_MAJOR`] is logged as untested.
pub fn supported_major(bin_dir: &Path) -> Result<u32, String> {
    let exe = bin_dir.join("postgres");
    let out = std::process::Command::new(&exe)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run {} ({e}): check postgresql.bin_dir", exe.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let major = parse_major(&text)
        .ok_or_else(|| format!("{} --version printed {:?}, not a PostgreSQL version", exe.display(), text.trim()))?;
    if major < OLDEST_MAJOR {
        return Err(format!(
            "PostgreSQL {major} in {}: hashell needs {OLDEST_MAJOR} or newer (a standby must take a new \
             primary_conninfo on reload); point postgresql.bin_dir at a newer version",
            bin_dir.display()
        ));
    }
    if major > NEWEST_KNOWN_MAJOR {
        tracing::warn!(major, "this PostgreSQL is newer than any hashell was tested with");
    }
    Ok(major)
}

impl PgCtl {
    /// From the daemon's configuration; fails when a password file cannot be read.
    pub fn new(cfg: &FileConfig) -> Result<PgCtl, String> {
        let pg = &cfg.postgresql;
        let target = PgTarget {
            bin_dir: pg.bin_dir.clone(),
            data_dir: pg.data_dir.clone(),
            host: pg.socket_dir.to_string_lossy().into_owned(),
            port: pg.port,
            user: pg.superuser.username.clone(),
            password: pg.superuser.secret()?,
            timeout: Duration::from_millis(cfg.settings.retry_timeout.0.clamp(500, 5_000)),
        };
        Ok(PgCtl {
            cfg: cfg.clone(),
            target,
            replication_password: pg.replication.secret()?,
            desired: Mutex::new(Desired::default()),
            tunables: Mutex::new(Tunables::of(cfg)),
        })
    }

    fn data(&self) -> &Path {
        &self.cfg.postgresql.data_dir
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.cfg.postgresql.bin_dir.join(name)
    }

    /// The member's name.
    pub fn member(&self) -> &str {
        &self.cfg.node.name
    }

    /// An upstream description for a member publishing `pg_url`.
    pub fn upstream(&self, member: &str, pg_url: &str) -> Result<Upstream, String> {
        let host = conninfo_get(pg_url, "host").ok_or_else(|| format!("{member} publishes no host in {pg_url:?}"))?;
        let port = conninfo_get(pg_url, "port")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("{member} publishes no port in {pg_url:?}"))?;
        Ok(Upstream {
            member: member.to_string(),
            host,
            port,
            user: self.cfg.postgresql.replication.username.clone(),
            password: self.replication_password.clone(),
            slot: Some(hacore::slot_name(self.member())),
            restore_command: None,
        })
    }

    /// The upstream of a standby cluster ([`hacore::UPSTREAM`]): its `pg_url` (host, port,
    /// optionally user), this node's replication password, the configured slot.
    pub fn remote_upstream(&self, sc: &hacore::StandbyCluster) -> Result<Upstream, String> {
        let url = sc.pg_url.trim();
        let (host, port) = if url.is_empty() {
            (String::new(), 0)
        } else {
            let host = conninfo_get(url, "host")
                .ok_or_else(|| format!("standby_cluster.pg_url {url:?} names no host; write host=... port=..."))?;
            let port = match conninfo_get(url, "port") {
                None => 5432,
                Some(p) => p.parse().map_err(|_| format!("standby_cluster.pg_url: port {p:?} is not a number"))?,
            };
            (host, port)
        };
        Ok(Upstream {
            member: hacore::UPSTREAM.to_string(),
            host,
            port,
            user: conninfo_get(url, "user").unwrap_or_else(|| self.cfg.postgresql.replication.username.clone()),
            password: self.replication_password.clone(),
            slot: sc.primary_slot_name.clone(),
            restore_command: sc.restore_command.clone(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Desired> {
        self.desired.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes what the files should say (not written yet).
    pub fn set_desired(&self, f: impl FnOnce(&mut Desired)) {
        f(&mut self.lock());
    }

    /// Adopts what the data directory says at start (standby or not, whom it follows).
    pub fn adopt(&self, standby: bool, upstream: Option<Upstream>, sync: SyncStandbys) {
        *self.lock() = Desired { sync, standby, upstream, recovery: Default::default() };
    }

    fn managed(&self) -> Managed {
        let d = self.lock().clone();
        let t = self.tunables.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let pg = &self.cfg.postgresql;
        Managed {
            member: self.cfg.node.name.clone(),
            port: pg.port,
            listen: pg.listen.clone(),
            socket_dir: Some(pg.socket_dir.clone()),
            parameters: t.parameters,
            include_dir: pg.include_dir.clone(),
            restore_command: t.restore_command,
            sync: d.sync,
            upstream: d.upstream,
            standby: d.standby,
            hba: t.hba,
            recovery: d.recovery,
        }
    }

    /// Takes new tunables and rewrites the managed files (reloading a running server when
    /// they changed). Parameters that need a restart then show as pending restart.
    pub async fn retune(&self, t: Tunables) -> Result<(), String> {
        *self.tunables.lock().unwrap_or_else(|e| e.into_inner()) = t;
        self.apply_files().await.map(|_| ())
    }

    /// Brings the managed files to the desired state; reloads a running server when its
    /// configuration changed. Returns whether a restart is needed for a role change.
    pub async fn apply_files(&self) -> Result<bool, String> {
        let w = conf::write(self.data(), &self.managed(), None)
            .map_err(|e| format!("cannot write the configuration in {}: {e}", self.data().display()))?;
        if w.config && self.running() {
            self.reload().await?;
        }
        Ok(w.role)
    }

    /// A postmaster runs.
    pub fn running(&self) -> bool {
        postmaster_pid(self.data()).is_some_and(super::files::is_postgres)
    }

    async fn run(&self, mut cmd: tokio::process::Command, limit: Duration, what: &str) -> Result<String, String> {
        cmd.env("LC_ALL", "C").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| format!("cannot run {what}: {e}"))?;
        match tokio::time::timeout(limit, child.wait_with_output()).await {
            Err(_) => Err(format!("{what} did not finish within {limit:?}")),
            Ok(Err(e)) => Err(format!("{what}: {e}")),
            Ok(Ok(out)) if out.status.success() => Ok(String::from_utf8_lossy(&out.stderr).into_owned()),
            Ok(Ok(out)) => Err(format!("{what} failed ({}): {}", out.status, tail(&out.stderr))),
        }
    }

    /// Removes everything inside the data directory (keeping the directory, which may be a
    /// mount point).
    fn wipe(&self) -> Result<(), String> {
        let d = self.data();
        let Ok(entries) = std::fs::read_dir(d) else { return Ok(()) };
        for e in entries.flatten() {
            let p = e.path();
            let r = if p.is_dir() && !p.is_symlink() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            r.map_err(|err| format!("cannot remove {}: {err}", p.display()))?;
        }
        Ok(())
    }

    /// initdb with data checksums (or the configured bootstrap command), then the managed files.
    pub async fn initdb(&self, limit: Duration) -> Result<(), String> {
        let r = self.initdb_inner(limit).await;
        if r.is_err() {
            let _ = self.wipe();
        }
        r
    }

    async fn initdb_inner(&self, limit: Duration) -> Result<(), String> {
        if let Some(c) = &self.cfg.postgresql.bootstrap_command {
            let mut cmd = tokio::process::Command::new("/bin/sh");
            cmd.arg("-c").arg(c).env("PGDATA", self.data());
            let started = std::time::Instant::now();
            self.run(cmd, limit, "bootstrap_command").await?;
            // A point in time, from the configuration or set up by the command itself (a
            // pgBackRest restore with --type=time writes recovery.signal).
            let recovery = self.cfg.postgresql.bootstrap_recovery.clone();
            if !recovery.is_empty() || self.data().join("recovery.signal").exists() {
                self.set_desired(|d| *d = Desired { recovery, ..Desired::default() });
                self.recover_to_target(limit.saturating_sub(started.elapsed())).await?;
            }
        } else {
            let mut cmd = tokio::process::Command::new(self.bin("initdb"));
            cmd.arg("-D")
                .arg(self.data())
                .args(["--data-checksums", "-E", "UTF8", "--locale=C", "-U"])
                .arg(&self.cfg.postgresql.superuser.username);
            let pwfile = crate::config::sibling(self.data(), "pwfile");
            if let Some(p) = &self.target.password {
                write_private(&pwfile, p.expose())?;
                cmd.arg("--pwfile").arg(&pwfile);
            }
            let r = self.run(cmd, limit, "initdb").await;
            let _ = std::fs::remove_file(&pwfile);
            r?;
        }
        self.set_desired(|d| *d = Desired::default());
        self.apply_files().await?;
        Ok(())
    }

    /// Replays a restored backup's WAL up to its recovery target, where PostgreSQL
    /// promotes, then stops it (the core starts it as the primary afterwards).
    async fn recover_to_target(&self, limit: Duration) -> Result<(), String> {
        let started = std::time::Instant::now();
        let log_tail = || {
            let text = std::fs::read(self.cfg.postgresql.log_path()).unwrap_or_default();
            tail(&text[text.len().saturating_sub(2_000)..])
        };
        self.start(limit).await.map_err(|e| format!("starting the restored backup to recover it: {e}"))?;
        loop {
            let in_recovery = match connect(&self.target, self.target.timeout).await {
                Ok(c) => c.query_one("SELECT pg_is_in_recovery()", &[]).await.ok().map(|r| r.get::<_, bool>(0)),
                Err(_) => None,
            };
            if in_recovery == Some(false) {
                break;
            }
            if !self.running() {
                return Err(format!(
                    "PostgreSQL stopped while recovering the restored backup (is the target in the archive \
                     restore_command reads?): {}",
                    log_tail()
                ));
            }
            if started.elapsed() > limit {
                let _ = self.stop_fast(Duration::from_secs(60)).await;
                return Err(format!("the restored backup did not reach its recovery target within {limit:?}"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tracing::info!("the restored backup reached its recovery target and promoted");
        self.stop_fast(limit.saturating_sub(started.elapsed()).max(Duration::from_secs(60))).await
    }

    /// A fresh copy of `from` (pg_basebackup streaming the WAL through a temporary slot, or
    /// the configured clone command); returns the LSN replay must pass to be consistent.
    pub async fn clone_from(&self, from: &Upstream, limit: Duration) -> Result<Lsn, String> {
        if from.host.is_empty() && self.cfg.postgresql.clone_command.is_none() {
            return Err("the standby cluster's upstream has no pg_url to copy from: set standby_cluster.pg_url, or \
                        [postgresql] clone_command (e.g. a restore from the archive)"
                .into());
        }
        self.wipe()?;
        let end = if let Some(c) = &self.cfg.postgresql.clone_command {
            let mut cmd = tokio::process::Command::new("/bin/sh");
            cmd.arg("-c")
                .arg(c)
                .env("PGDATA", self.data())
                .env("PGHOST", &from.host)
                .env("PGPORT", from.port.to_string())
                .env("PGUSER", &from.user)
                .env("PGAPPNAME", self.member());
            if let Some(p) = &from.password {
                cmd.env("PGPASSWORD", p.expose());
            }
            self.run(cmd, limit, "clone_command").await?;
            controldata(&self.target).await.map(|c| c.min_recovery_end.max(c.checkpoint))?
        } else {
            let info =
                format!("host={} port={} user={} application_name={}", from.host, from.port, from.user, self.member());
            let mut cmd = tokio::process::Command::new(self.bin("pg_basebackup"));
            cmd.arg("-D").arg(self.data()).args(["-d", &info, "-X", "stream", "-c", "fast", "-v", "--no-password"]);
            if let Some(p) = &from.password {
                cmd.env("PGPASSWORD", p.expose());
            }
            let log = self.run(cmd, limit, "pg_basebackup").await;
            let log = match log {
                Ok(l) => l,
                Err(e) => {
                    let _ = self.wipe();
                    return Err(e);
                }
            };
            log.lines()
                .find_map(|l| l.split("write-ahead log end point:").nth(1).and_then(parse_lsn))
                .ok_or_else(|| format!("pg_basebackup printed no end point: {}", tail(log.as_bytes())))?
        };
        self.set_desired(|d| {
            d.standby = true;
            d.upstream = Some(from.clone());
            d.sync = SyncStandbys::Off;
        });
        self.apply_files().await?;
        Ok(end)
    }

    /// pg_rewind against `from` (a running primary; PostgreSQL here must be stopped);
    /// returns the minimum recovery point.
    pub async fn rewind(&self, from: &Upstream, limit: Duration) -> Result<Lsn, String> {
        let info = format!(
            "host={} port={} user={} dbname=postgres",
            from.host, from.port, self.cfg.postgresql.superuser.username
        );
        let mut cmd = tokio::process::Command::new(self.bin("pg_rewind"));
        cmd.arg("-D").arg(self.data()).arg(format!("--source-server={info}"));
        if let Some(p) = &self.target.password {
            cmd.env("PGPASSWORD", p.expose());
        }
        self.run(cmd, limit, "pg_rewind").await?;
        // pg_rewind copied the source's configuration files over ours: write them again,
        // as a standby of the source.
        self.set_desired(|d| {
            d.standby = true;
            d.upstream = Some(from.clone());
            d.sync = SyncStandbys::Off;
        });
        self.apply_files().await?;
        let cd = controldata(&self.target).await?;
        // When pg_rewind found nothing to rewind it left every file: a history file that a
        // promotion which died wrote would still hold PostgreSQL to a timeline off the
        // leader's line.
        // pg_rewind succeeded: a failed clean-up does not undo that (the core would
        // re-clone), it is reported, and the core rewinds again if the file holds it.
        let timeline = cd.timeline.max(cd.min_recovery_timeline);
        match super::files::remove_history_after(self.data(), timeline) {
            Ok(removed) if !removed.is_empty() => {
                tracing::info!(?removed, %timeline, "removed history files of timelines after the data's")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not remove the history files after the data's timeline"),
        }
        Ok(cd.min_recovery_end.max(cd.checkpoint))
    }

    /// pg_ctl start, waiting until it accepts connections.
    pub async fn start(&self, limit: Duration) -> Result<(), String> {
        self.apply_files().await?;
        // Placeholders a promotion that failed early left would be the newest history
        // files: PostgreSQL would recover towards one and never become consistent.
        if let Ok(cd) = controldata(&self.target).await {
            let timeline = cd.timeline.max(cd.min_recovery_timeline);
            let removed = super::files::remove_trailing_placeholders(self.data(), timeline)?;
            if !removed.is_empty() {
                tracing::info!(?removed, %timeline, "removed placeholder history files a failed promotion left");
            }
            // A clone holds its own timeline's history file only: standbys on an older
            // timeline fetch every number up to ours, skipped ones too.
            let filled = super::files::fill_history_gaps(self.data(), timeline)?;
            if !filled.is_empty() {
                tracing::info!(?filled, %timeline, "placeholder history files for skipped timelines");
            }
        }
        // A crashed postmaster that is still our zombie makes pg_ctl refuse to start.
        super::files::reap_postgres_zombies();
        let mut cmd = tokio::process::Command::new(self.bin("pg_ctl"));
        cmd.arg("-D").arg(self.data()).arg("-l").arg(self.cfg.postgresql.log_path()).args([
            "-w",
            "-t",
            &limit.as_secs().max(1).to_string(),
            "start",
        ]);
        self.run(cmd, limit + Duration::from_secs(1), "pg_ctl start").await.map(drop)
    }

    /// Creates the replication user on a primary when it is not the superuser and does not
    /// exist yet. Commits locally: a primary waiting for a synchronous standby that has no
    /// user to connect with yet would otherwise wait forever.
    pub async fn ensure_replication_role(&self) -> Result<(), String> {
        let user = &self.cfg.postgresql.replication.username;
        if *user == self.cfg.postgresql.superuser.username {
            return Ok(());
        }
        let password = match &self.replication_password {
            Some(p) => format!(" PASSWORD {}", conf::quote(p.expose())),
            None => String::new(),
        };
        let ident = format!("\"{}\"", user.replace('"', "\"\""));
        // The statement carries the password: keep it out of PostgreSQL's own log
        // whatever log_statement, log_min_duration_statement and log_min_error_statement say.
        let sql = format!(
            "SET synchronous_commit = local;
             SET log_statement = 'none';
             SET log_min_duration_statement = -1;
             SET log_min_error_statement = panic;
             DO $$ BEGIN
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {lit}) THEN
                 CREATE ROLE {ident} WITH REPLICATION LOGIN{password};
               END IF;
             END $$;",
            lit = conf::quote(user),
        );
        let c = connect(&self.target, self.target.timeout).await?;
        c.batch_execute(&sql).await.map_err(|e| format!("cannot create the replication user {user:?}: {e}"))
    }

    /// pg_ctl stop -m fast.
    pub async fn stop_fast(&self, limit: Duration) -> Result<(), String> {
        if !self.running() {
            return Ok(());
        }
        let mut cmd = tokio::process::Command::new(self.bin("pg_ctl"));
        cmd.arg("-D").arg(self.data()).args(["-w", "-m", "fast", "-t", &limit.as_secs().max(1).to_string(), "stop"]);
        self.run(cmd, limit + Duration::from_secs(1), "pg_ctl stop").await.map(drop)
    }

    /// Fencing: every process of the instance killed at once, then waits until the
    /// postmaster is gone.
    pub async fn stop_immediate(&self, limit: Duration) -> Result<(), String> {
        let Some(pid) = kill_instance(self.data()) else { return Ok(()) };
        let gone = async {
            while alive(pid) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(limit, gone).await.map_err(|_| format!("postmaster {pid} still alive after {limit:?}"))
    }

    /// Places history files so that promotion creates `timeline`, then pg_ctl promote.
    pub async fn promote(&self, timeline: Timeline, limit: Duration) -> Result<(), String> {
        let current = controldata(&self.target).await.map(|c| c.timeline.max(c.min_recovery_timeline))?;
        let wal = self.data().join("pg_wal");
        let parent = std::fs::read_to_string(wal.join(format!("{:08X}.history", current.0))).unwrap_or_default();
        // PostgreSQL takes the first timeline after the newest contiguous history file.
        for t in current.0 + 1..timeline.0 {
            let p = wal.join(format!("{t:08X}.history"));
            if !p.exists() {
                write_private(&p, &format!("{parent}{}: timeline {t} is taken\n", super::files::PLACEHOLDER_MARK))?;
            }
        }
        let mut cmd = tokio::process::Command::new(self.bin("pg_ctl"));
        cmd.arg("-D").arg(self.data()).args(["-w", "-t", &limit.as_secs().max(1).to_string(), "promote"]);
        self.run(cmd, limit + Duration::from_secs(1), "pg_ctl promote").await?;
        self.set_desired(|d| {
            d.standby = false;
            d.upstream = None;
        });
        self.apply_files().await?;
        Ok(())
    }

    /// SIGHUP through pg_ctl reload.
    pub async fn reload(&self) -> Result<(), String> {
        let mut cmd = tokio::process::Command::new(self.bin("pg_ctl"));
        cmd.arg("-D").arg(self.data()).arg("reload");
        self.run(cmd, self.target.timeout, "pg_ctl reload").await.map(drop)
    }

    /// Runs SQL statements as the superuser with a statement timeout of `limit`.
    pub async fn sql(&self, sql: &str, limit: Duration) -> Result<(), String> {
        let c = connect(&self.target, limit).await?;
        tokio::time::timeout(limit + Duration::from_secs(1), c.batch_execute(sql))
            .await
            .map_err(|_| format!("no answer within {limit:?}"))?
            .map_err(|e| e.to_string())
    }

    /// Creates a physical slot (reserving WAL now) unless it exists.
    pub async fn create_slot(&self, name: &str) -> Result<(), String> {
        let n = conf::quote(name);
        self.sql(
            &format!(
                "SELECT pg_create_physical_replication_slot({n}, true) \
                 WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = {n})"
            ),
            self.target.timeout,
        )
        .await
        .map_err(|e| format!("cannot create slot {name}: {e}"))
    }

    /// Drops a slot, ending the connection that uses it first.
    pub async fn drop_slot(&self, name: &str) -> Result<(), String> {
        let n = conf::quote(name);
        self.sql(
            &format!(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = {n} AND active_pid IS NOT NULL;
                 SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = {n} AND NOT active"
            ),
            self.target.timeout,
        )
        .await
        .map_err(|e| format!("cannot drop slot {name}: {e}"))
    }
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_values() {
        let u = "host=10.0.0.1 port=5433 user=replicator";
        assert_eq!(conninfo_get(u, "host").as_deref(), Some("10.0.0.1"));
        assert_eq!(conninfo_get(u, "port").as_deref(), Some("5433"));
        assert_eq!(conninfo_get(u, "dbname"), None);
    }

    #[test]
    fn major_versions_from_postgres_version_output() {
        assert_eq!(parse_major("postgres (PostgreSQL) 15.10 (Debian 15.10-0+deb12u1)\n"), Some(15));
        assert_eq!(parse_major("postgres (PostgreSQL) 13.16"), Some(13));
        assert_eq!(parse_major("postgres (PostgreSQL) 18beta1"), Some(18));
        assert_eq!(parse_major("postgres (PostgreSQL) 9.6.24"), Some(9));
        assert_eq!(parse_major("something else 15.1"), None);
    }

    #[test]
    fn old_postgres_binaries_are_refused_with_the_reason() {
        let dir = std::env::temp_dir().join(format!("hashell-pg12-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let exe = dir.join("postgres");
        std::fs::write(&exe, "#!/bin/sh\necho 'postgres (PostgreSQL) 12.22'\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = supported_major(&dir).unwrap_err();
        assert!(e.contains("PostgreSQL 12") && e.contains("needs 13 or newer"), "{e}");
        std::fs::write(&exe, "#!/bin/sh\necho 'postgres (PostgreSQL) 16.4'\n").unwrap();
        assert_eq!(supported_major(&dir), Ok(16));
        let e = supported_major(&dir.join("nowhere")).unwrap_err();
        assert!(e.contains("check postgresql.bin_dir"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
        // The binaries the tests run.
        assert!(supported_major(&crate::pg::testing::pg_bin()).is_ok());
    }
}
