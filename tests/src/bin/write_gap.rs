//! Write-gap benchmark on real processes: a 3-node cluster (PostgreSQL 15 + one etcd) on
//! loopback, a client writing every 20 ms through `target_session_attrs=read-write`; per run
//! it kills the primary's whole node (SIGKILL of daemon, guard and PostgreSQL) and measures
//! the gap between the last acknowledged write on the old primary and the first on the
//! new one, brings the node back, then does a planned switchover and measures the same.
//!
//!   cargo build --release -p e2e --bins && target/release/write-gap [--runs 5] [--fast]
//!
//! (`--bins`: the daemon under test, `hashell-under-test`, is a binary of this package.)
//!
//! Default timing: hashell's defaults (ttl 25 s, loop_wait 5 s, retry_timeout 5 s);
//! `--fast`: ttl 10 s, loop_wait 1 s, retry_timeout 2 s.

use backend_etcd::server::EtcdServer;
use hashell::demo::{healthy, writer, Ack};
use hashell::local::{LocalCluster, LocalOptions, FAST_SETTINGS};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn wait<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(t0.elapsed() < limit, "gave up after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Gap between the last ack on `from` before `after` and the first ack on `to` after it.
fn gap(acks: &[Ack], from: u16, to: u16, after: Instant) -> Duration {
    let last = acks.iter().filter(|a| a.1 == from).map(|a| a.0).max().expect("writes on the old primary");
    let first = acks.iter().filter(|a| a.1 == to && a.0 > after).map(|a| a.0).min().expect("writes on the new primary");
    first.saturating_duration_since(last)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        0.0
    } else if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = args.iter().position(|a| a == "--runs").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(5);
    let fast = args.iter().any(|a| a == "--fast");
    let exe = e2e::daemon_exe();
    let bin_dir = hashell::pg::testing::pg_bin();
    let (mut crash, mut switch) = (Vec::new(), Vec::new());
    println!(
        "run  crash gap (s)  switchover gap (s)   [{}]",
        if fast { "ttl 10 s, loop_wait 1 s" } else { "defaults: ttl 25 s, loop_wait 5 s" }
    );
    for run in 1..=runs {
        let etcd = EtcdServer::try_start().unwrap_or_else(|e| panic!("{e}"));
        let root = std::env::temp_dir().join(format!("hashell-bench-{}-{run}", std::process::id()));
        let opts = LocalOptions {
            settings: if fast { FAST_SETTINGS.into() } else { String::new() },
            ..LocalOptions::new(exe.clone(), bin_dir.clone(), &etcd.endpoint())
        };
        let mut c = LocalCluster::create(root, &opts).unwrap_or_else(|e| panic!("{e}"));
        for i in 0..3 {
            c.start_daemon(i, &exe).unwrap();
        }
        let p = wait("a healthy cluster", Duration::from_secs(180), || healthy(&c));
        let pg_ports: Vec<u16> = c.nodes.iter().map(|n| n.pg_port).collect();
        let port = |i: usize| pg_ports[i];
        let out = std::process::Command::new(bin_dir.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &port(p).to_string(), "-U", "postgres", "-d", "postgres", "-XAtqc"])
            .arg("CREATE TABLE demo (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stop = Arc::new(AtomicBool::new(false));
        let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
        let addrs = c.pg_addrs();
        let w = {
            let (stop, acks) = (stop.clone(), acks.clone());
            std::thread::spawn(move || writer(addrs, stop, acks))
        };
        std::thread::sleep(Duration::from_secs(3));

        let killed = Instant::now();
        c.kill_node(p);
        let new = wait("a new primary", Duration::from_secs(180), || {
            let ps = c.primaries();
            (ps.len() == 1 && ps[0] != p).then(|| ps[0])
        });
        wait("a write on the new primary", Duration::from_secs(60), || {
            acks.lock().ok()?.iter().any(|a| a.1 == port(new) && a.0 > killed).then_some(())
        });
        let g1 = gap(&acks.lock().unwrap(), port(p), port(new), killed);
        c.start_daemon(p, &exe).unwrap();
        wait("the old primary back", Duration::from_secs(180), || (healthy(&c) == Some(new)).then_some(()));
        std::thread::sleep(Duration::from_secs(3));

        let asked = Instant::now();
        let out = std::process::Command::new(&exe).arg("switchover").arg(c.nodes[new].config()).output().unwrap();
        assert!(out.status.success(), "switchover: {}", String::from_utf8_lossy(&out.stderr));
        let third = wait("the switchover target", Duration::from_secs(120), || {
            let ps = c.primaries();
            (ps.len() == 1 && ps[0] != new).then(|| ps[0])
        });
        wait("a write after the switchover", Duration::from_secs(60), || {
            acks.lock().ok()?.iter().any(|a| a.1 == port(third) && a.0 > asked).then_some(())
        });
        let g2 = gap(&acks.lock().unwrap(), port(new), port(third), asked);
        stop.store(true, Ordering::SeqCst);
        let _ = w.join();
        println!("{run:>3}  {:>13.2}  {:>18.2}", g1.as_secs_f64(), g2.as_secs_f64());
        crash.push(g1.as_secs_f64());
        switch.push(g2.as_secs_f64());
        drop(c);
        drop(etcd);
    }
    println!(
        "median crash gap {:.2} s (min {:.2}, max {:.2}); median switchover gap {:.2} s (min {:.2}, max {:.2}); {runs} runs",
        median(crash.clone()),
        crash.iter().cloned().fold(f64::MAX, f64::min),
        crash.iter().cloned().fold(0.0, f64::max),
        median(switch.clone()),
        switch.iter().cloned().fold(f64::MAX, f64::min),
        switch.iter().cloned().fold(0.0, f64::max),
    );
}
