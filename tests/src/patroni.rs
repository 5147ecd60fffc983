//! A 3-node Patroni cluster on loopback for the side-by-side benchmark: the same
//! PostgreSQL binaries, the same PostgreSQL parameters and the same kind of etcd as
//! [`hashell::local::LocalCluster`], each node with its own data directory and ports.
//! Every process it started (Patroni, PostgreSQL) is killed when it is dropped.

use hashell::local::{chown, free_port, http, run_as};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Patroni's timing (whole seconds, as Patroni takes them).
#[derive(Clone, Copy, Debug)]
pub struct PatroniTiming {
    /// `ttl`.
    pub ttl: u32,
    /// `loop_wait`.
    pub loop_wait: u32,
    /// `retry_timeout`.
    pub retry_timeout: u32,
}

impl PatroniTiming {
    /// Patroni's defaults.
    pub const DEFAULTS: PatroniTiming = PatroniTiming { ttl: 30, loop_wait: 10, retry_timeout: 10 };
    /// The fastest Patroni accepts: it raises ttl to 20, loop_wait to 1 and retry_timeout
    /// to 3 when given less (`patroni/config.py`, `_validate_and_adjust_timeouts`).
    pub const FASTEST: PatroniTiming = PatroniTiming { ttl: 20, loop_wait: 1, retry_timeout: 3 };
}

/// One Patroni member.
pub struct PatroniNode {
    /// Member name.
    pub name: String,
    /// Its directory (data, socket, log, configuration).
    pub root: PathBuf,
    /// PostgreSQL port.
    pub pg_port: u16,
    /// REST API port.
    pub api_port: u16,
    daemon: Option<Child>,
}

impl PatroniNode {
    /// The data directory.
    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }
    /// Patroni's log.
    pub fn log(&self) -> PathBuf {
        self.root.join("patroni.log")
    }
    /// The configuration file.
    pub fn config(&self) -> PathBuf {
        self.root.join("patroni.yml")
    }
    /// PID of the Patroni process, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }
}

/// Three Patroni daemons under one directory.
pub struct PatroniCluster {
    /// The directory holding every node's.
    pub root: PathBuf,
    /// Members, `n1`...
    pub nodes: Vec<PatroniNode>,
    exe: PathBuf,
    keep: bool,
}

impl PatroniCluster {
    /// Creates the directories and configuration files (starts nothing). `patroni` is the
    /// executable (see `scripts/install-patroni.sh`).
    pub fn create(
        root: PathBuf,
        patroni: &Path,
        bin_dir: &Path,
        etcd: &str,
        timing: PatroniTiming,
    ) -> Result<PatroniCluster, String> {
        run_as()?;
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
        chown(&root);
        let host = etcd.trim_start_matches("http://");
        let mut c = PatroniCluster { root, nodes: Vec::new(), exe: patroni.to_path_buf(), keep: false };
        for i in 0..3 {
            let name = format!("n{}", i + 1);
            let node = PatroniNode {
                root: c.root.join(&name),
                name,
                pg_port: free_port(),
                api_port: free_port(),
                daemon: None,
            };
            std::fs::create_dir_all(&node.root).map_err(|e| format!("cannot create {}: {e}", node.root.display()))?;
            chown(&node.root);
            std::fs::write(node.config(), config_text(&node, host, bin_dir, timing))
                .map_err(|e| format!("cannot write {}: {e}", node.config().display()))?;
            chown(&node.config());
            c.nodes.push(node);
        }
        Ok(c)
    }

    /// Leaves the directory (logs, data) in place when dropped (processes are still killed).
    pub fn keep(&mut self, keep: bool) {
        self.keep = keep;
    }

    /// Starts (or restarts) node `i`'s Patroni, as the PostgreSQL user when we are root.
    pub fn start_daemon(&mut self, i: usize) -> Result<(), String> {
        let n = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(n.log())
            .map_err(|e| format!("cannot open {}: {e}", n.log().display()))?;
        chown(&n.log());
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.exe);
        cmd.arg(n.config()).stdin(Stdio::null()).stdout(log).stderr(err).env("LC_ALL", "C.UTF-8");
        if let Some((uid, gid)) = run_as()? {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid).env("HOME", &n.root);
        }
        n.daemon = Some(cmd.spawn().map_err(|e| format!("cannot start {}: {e}", self.exe.display()))?);
        Ok(())
    }

    /// SIGKILLs node `i`'s Patroni (PostgreSQL keeps running).
    pub fn kill_daemon(&mut self, i: usize) {
        if let Some(mut d) = self.nodes[i].daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }

    /// SIGKILLs every PostgreSQL process of node `i` (a crash).
    pub fn kill_postgres(&self, i: usize) {
        hashell::pg::kill::kill_instance(&self.nodes[i].data());
    }

    /// The whole node dies at once: Patroni and PostgreSQL.
    pub fn kill_node(&mut self, i: usize) {
        self.kill_daemon(i);
        self.kill_postgres(i);
    }

    /// Nodes answering 200 on `/primary`.
    pub fn primaries(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| http("GET", self.nodes[i].api_port, "/primary", "").map(|(c, _)| c) == Some(200))
            .collect()
    }

    /// `GET /cluster` from any member that answers.
    pub fn cluster(&self) -> Option<serde_json::Value> {
        self.nodes.iter().find_map(|n| {
            let (code, body) = http("GET", n.api_port, "/cluster", "")?;
            (code == 200).then(|| serde_json::from_str(&body).ok()).flatten()
        })
    }

    /// The primary, when there is exactly one and both other members stream on its timeline
    /// (Patroni's own view in `GET /cluster`, and `/primary` on the node itself).
    pub fn healthy(&self) -> Option<usize> {
        let p = self.primaries();
        if p.len() != 1 {
            return None;
        }
        let c = self.cluster()?;
        let members = c["members"].as_array()?;
        let leader = members.iter().find(|m| m["role"] == "leader")?;
        let replicas: Vec<_> = members.iter().filter(|m| m["role"] == "replica").collect();
        let ok = leader["name"] == self.nodes[p[0]].name.as_str()
            && replicas.len() == self.nodes.len() - 1
            && replicas.iter().all(|m| m["state"] == "streaming" && m["timeline"] == leader["timeline"]);
        ok.then_some(p[0])
    }

    /// A planned switchover from `from` to `to` through Patroni's REST API (it answers once
    /// the switchover is done or failed).
    pub fn switchover(&self, from: usize, to: usize) -> Result<(), String> {
        let body = format!(r#"{{"leader": "{}", "candidate": "{}"}}"#, self.nodes[from].name, self.nodes[to].name);
        let (code, text) = hashell::local::http_with(
            "POST",
            self.nodes[from].api_port,
            "/switchover",
            &body,
            &[],
            Duration::from_secs(60),
        )
        .ok_or("no answer from Patroni's /switchover")?;
        if code == 200 {
            Ok(())
        } else {
            Err(format!("Patroni's /switchover answered {code}: {text}"))
        }
    }
}

impl Drop for PatroniCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_node(i);
        }
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

fn config_text(n: &PatroniNode, etcd_host: &str, bin_dir: &Path, t: PatroniTiming) -> String {
    // The same PostgreSQL parameters as hashell's local clusters; pg_rewind on (with data
    // checksums) so the old primary rejoins as hashell's does; slots on (Patroni's default).
    format!(
        r#"scope: bench
name: {name}
restapi:
  listen: 127.0.0.1:{api}
  connect_address: 127.0.0.1:{api}
etcd3:
  host: {etcd_host}
bootstrap:
  dcs:
    ttl: {ttl}
    loop_wait: {loop_wait}
    retry_timeout: {retry}
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        fsync: false
        shared_buffers: 16MB
        max_wal_senders: 10
        wal_keep_size: 64MB
  initdb:
    - data-checksums
    - encoding: UTF8
postgresql:
  listen: 127.0.0.1:{pg}
  connect_address: 127.0.0.1:{pg}
  data_dir: {data}
  bin_dir: {bin}
  pgpass: {root}/pgpass
  authentication:
    superuser:
      username: postgres
      password: postgres
    replication:
      username: replicator
      password: replicator
  parameters:
    unix_socket_directories: {root}
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
tags:
  nofailover: false
  noloadbalance: false
  clonefrom: false
  nosync: false
"#,
        name = n.name,
        api = n.api_port,
        pg = n.pg_port,
        data = n.data().display(),
        bin = bin_dir.display(),
        root = n.root.display(),
        ttl = t.ttl,
        loop_wait = t.loop_wait,
        retry = t.retry_timeout,
    )
}
