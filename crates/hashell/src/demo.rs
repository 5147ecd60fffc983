//! `hashell demo`: a real 3-node cluster on loopback (PostgreSQL + one etcd) in a temp
//! directory. It shows the cluster, writes continuously through a libpq multi-host
//! connection (`target_session_attrs=read-write`), kills the primary's whole node, shows the
//! failover and the measured write gap, brings the old primary back as a replica, and
//! removes everything it started.

use crate::local::{LocalCluster, LocalOptions};
use backend_etcd::server::EtcdServer;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Demo settings.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// PostgreSQL's binaries.
    pub bin_dir: PathBuf,
    /// Keep the directory (logs, data) afterwards.
    pub keep: bool,
}

fn wait<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T, String> {
    let t0 = Instant::now();
    loop {
        if let Some(t) = f() {
            return Ok(t);
        }
        if t0.elapsed() > limit {
            return Err(format!("gave up after {limit:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The primary, when there is exactly one and every other member streams on its timeline.
pub fn healthy(c: &LocalCluster) -> Option<usize> {
    let [p] = c.primaries()[..] else { return None };
    let timeline = c.status(p).map_or(serde_json::Value::Null, |x| x["timeline"].clone());
    let others_ok = (0..c.nodes.len())
        .filter(|&i| i != p)
        .all(|i| c.status(i).is_some_and(|s| s["reason"] == "replica_streaming" && s["timeline"] == timeline));
    others_ok.then_some(p)
}

/// One acknowledged write: when, which server took it, the row id.
pub type Ack = (Instant, u16, i64);

/// Writes a row into `demo` every 20 ms through one libpq multi-host connection to `addrs`
/// (host, port; `target_session_attrs=read-write`, reconnecting after any error) until
/// `stop`; records every acknowledged write.
pub fn writer(addrs: Vec<(String, u16)>, stop: Arc<AtomicBool>, acks: Arc<Mutex<Vec<Ack>>>) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(_) => return,
    };
    let hosts: Vec<&str> = addrs.iter().map(|a| a.0.as_str()).collect();
    let ports_s: Vec<String> = addrs.iter().map(|a| a.1.to_string()).collect();
    let conn = format!(
        "host={} port={} user=postgres dbname=postgres target_session_attrs=read-write connect_timeout=1",
        hosts.join(","),
        ports_s.join(",")
    );
    rt.block_on(async {
        let mut client: Option<tokio_postgres::Client> = None;
        while !stop.load(Ordering::SeqCst) {
            if client.as_ref().is_none_or(|c| c.is_closed()) {
                client = match tokio_postgres::connect(&conn, tokio_postgres::NoTls).await {
                    Ok((c, conn)) => {
                        tokio::spawn(conn);
                        Some(c)
                    }
                    Err(_) => None,
                };
            }
            if let Some(c) = &client {
                let q = c.query_one("INSERT INTO demo DEFAULT VALUES RETURNING current_setting('port')::int, id", &[]);
                match tokio::time::timeout(Duration::from_secs(2), q).await {
                    Ok(Ok(row)) => {
                        let port: i32 = row.get(0);
                        if let Ok(mut a) = acks.lock() {
                            a.push((Instant::now(), port as u16, row.get(1)));
                        }
                    }
                    _ => client = None,
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

/// Runs the demo; prints as it goes.
pub fn run(opts: DemoOptions) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the hashell binary: {e}"))?;
    if !opts.bin_dir.join("pg_ctl").exists() {
        return Err(format!(
            "no PostgreSQL in {}; install it (Debian: apt-get install postgresql-15) or pass --bin-dir",
            opts.bin_dir.display()
        ));
    }
    println!("starting etcd ...");
    let etcd = EtcdServer::try_start()?;
    let root = std::env::temp_dir().join(format!("hashell-demo-{}", std::process::id()));
    let local_opts = LocalOptions {
        settings: crate::local::FAST_SETTINGS.into(),
        ..LocalOptions::new(exe.clone(), opts.bin_dir.clone(), &etcd.endpoint())
    };
    let mut c = LocalCluster::create(root.clone(), &local_opts)?;
    c.keep(opts.keep);
    println!("starting 3 daemons (ttl 10 s, loop_wait 1 s) in {} ...", root.display());
    for i in 0..3 {
        c.start_daemon(i, &exe)?;
    }
    let t0 = Instant::now();
    let primary = wait("a primary and two streaming replicas", Duration::from_secs(120), || healthy(&c))?;
    println!("\ncluster ready after {:.1} s:\n{}", t0.elapsed().as_secs_f64(), c.table());

    let psql = |port: u16, sql: &str| -> Result<(), String> {
        let out = std::process::Command::new(opts.bin_dir.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-d", "postgres", "-XAtqc", sql])
            .output()
            .map_err(|e| e.to_string())?;
        out.status.success().then_some(()).ok_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned())
    };
    psql(c.nodes[primary].pg_port, "CREATE TABLE demo (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())")?;
    let stop = Arc::new(AtomicBool::new(false));
    let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
    let addrs = c.pg_addrs();
    let w = {
        let (stop, acks) = (stop.clone(), acks.clone());
        std::thread::spawn(move || writer(addrs, stop, acks))
    };
    std::thread::sleep(Duration::from_secs(3));
    let count = |port: u16| acks.lock().map(|a| a.iter().filter(|x| x.1 == port).count()).unwrap_or(0);
    println!(
        "a client writes every 20 ms through target_session_attrs=read-write: {} acknowledged by {}",
        count(c.nodes[primary].pg_port),
        c.nodes[primary].name
    );

    println!("\nkilling {} (daemon, guard and every PostgreSQL process, SIGKILL) ...", c.nodes[primary].name);
    let killed = Instant::now();
    c.kill_node(primary);
    let new = wait("a new primary", Duration::from_secs(60), || {
        let p = c.primaries();
        (p.len() == 1 && p[0] != primary).then(|| p[0])
    })?;
    let new_port = c.nodes[new].pg_port;
    wait("a write on the new primary", Duration::from_secs(30), || {
        acks.lock().ok()?.iter().any(|a| a.1 == new_port).then_some(())
    })?;
    let (last_old, first_new) = {
        let a = acks.lock().map_err(|e| e.to_string())?;
        let old_port = c.nodes[primary].pg_port;
        let last_old = a.iter().filter(|x| x.1 == old_port).map(|x| x.0).max();
        let first_new = a.iter().filter(|x| x.1 == new_port).map(|x| x.0).min();
        (last_old, first_new)
    };
    println!(
        "{} promoted; writes resumed {:.2} s after the kill (write gap {:.2} s between the last acknowledged \
         write on {} and the first on {})",
        c.nodes[new].name,
        first_new.map_or(0.0, |t| t.duration_since(killed).as_secs_f64()),
        match (last_old, first_new) {
            (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
            _ => 0.0,
        },
        c.nodes[primary].name,
        c.nodes[new].name
    );
    println!("{}", c.table());

    println!(
        "restarting {}'s daemon: it rejoins as a replica (pg_rewind if its WAL went past the fork) ...",
        c.nodes[primary].name
    );
    c.start_daemon(primary, &exe)?;
    let back = Instant::now();
    wait("the old primary streaming again", Duration::from_secs(120), || (healthy(&c) == Some(new)).then_some(()))?;
    println!(
        "{} streams from {} again after {:.1} s:\n{}",
        c.nodes[primary].name,
        c.nodes[new].name,
        back.elapsed().as_secs_f64(),
        c.table()
    );
    stop.store(true, Ordering::SeqCst);
    let _ = w.join();
    let acked: Vec<i64> = acks.lock().map(|a| a.iter().map(|x| x.2).collect()).unwrap_or_default();
    let list: Vec<String> = acked.iter().map(i64::to_string).collect();
    let present = std::process::Command::new(opts.bin_dir.join("psql"))
        .args(["-h", "127.0.0.1", "-p", &new_port.to_string(), "-U", "postgres", "-d", "postgres", "-XAtqc"])
        .arg(format!("SELECT count(*) FROM demo WHERE id IN ({})", list.join(",")))
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<usize>().ok())
        .unwrap_or(0);
    println!(
        "{} writes acknowledged, {present} of them present on the new primary{}",
        acked.len(),
        if present == acked.len() {
            ""
        } else {
            " (asynchronous replication loses what the replicas had not received; synchronous_mode loses nothing)"
        }
    );
    if opts.keep {
        println!("logs and data kept in {}", root.display());
    }
    println!("cleaning up ...");
    drop(c);
    drop(etcd);
    Ok(())
}
