//! Latency of the operations a node runs every loop, against a real etcd on loopback, and
//! what each costs etcd (raft proposals = disk writes, requests served), read from etcd's
//! own `/metrics`.
//!
//! ```sh
//! cargo bench -p backend-etcd --bench etcd          # N=500 per operation
//! ```
//!
//! Multiply the per-operation costs by the steady-state operation counts of a quiet
//! simulator run (docs/benchmarks.md) to get etcd's load per node per minute.

use backend_etcd::testing::{EtcdHarness, EtcdServer};
use backend_etcd::EtcdDcs;
use hacore::dcs::{
    Acquire, Dcs, DcsOp, DcsReply, Expect, LeaderGuard, LeaderRecord, MemberRecord, StatusRecord, Value, Write,
};
use hacore::types::{Lsn, Term};
use std::collections::BTreeMap;
use std::io::{Read, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn metrics(port: u16) -> BTreeMap<String, f64> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("metrics request");
    let mut body = String::new();
    s.read_to_string(&mut body).expect("metrics body");
    let mut m = BTreeMap::new();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else { continue };
        let keep = name == "etcd_server_proposals_committed_total"
            || name == "etcd_debugging_lease_renewed_total"
            || name.starts_with("grpc_server_handled_total") && name.contains("grpc_code=\"OK\"");
        if keep {
            m.insert(name.to_string(), value.parse().unwrap_or(0.0));
        }
    }
    m
}

fn short(name: &str) -> String {
    match name {
        "etcd_server_proposals_committed_total" => "raft writes".into(),
        "etcd_debugging_lease_renewed_total" => "lease renewals".into(),
        n => n
            .split("grpc_method=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .map_or_else(|| n.to_string(), |m| format!("{m} rpc")),
    }
}

struct Row {
    op: &'static str,
    median_us: u128,
    p90_us: u128,
    p99_us: u128,
    cost: Vec<(String, f64)>,
}

async fn measure<F, Fut>(port: u16, op: &'static str, n: usize, mut f: F) -> Row
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for i in 0..n / 10 {
        f(i).await; // warm-up
    }
    let before = metrics(port);
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        f(n + i).await;
        lat.push(t.elapsed().as_micros());
    }
    let after = metrics(port);
    lat.sort_unstable();
    let cost = after
        .iter()
        .map(|(k, v)| (short(k), (v - before.get(k).copied().unwrap_or(0.0)) / n as f64))
        .filter(|(_, d)| *d > 0.01)
        .collect();
    Row { op, median_us: lat[n / 2], p90_us: lat[n * 9 / 10], p99_us: lat[n * 99 / 100], cost }
}

async fn guard(d: &EtcdDcs) -> LeaderGuard {
    let l = d.read().await.expect("read").leader.expect("leader");
    LeaderGuard { holder: l.value.holder, term: l.value.term, version: l.version }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let n: usize = std::env::var("N").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
        let server = Arc::new(EtcdServer::start());
        let port = server.port();
        let h = EtcdHarness::fresh(&server);
        let a = h.connect("n1", &server.endpoint()).await;
        let others = [h.connect("n2", &server.endpoint()).await, h.connect("n3", &server.endpoint()).await];
        // A realistic cluster: three members, config, status.
        for (d, name) in [(&a, "n1"), (&others[0], "n2"), (&others[1], "n3")] {
            d.execute(&DcsOp::KeepAlive { ttl: 30_000 }).await.expect("keepalive");
            let m = MemberRecord { name: name.into(), api_url: format!("http://{name}:8008"), ..Default::default() };
            d.execute(&DcsOp::PublishMember(m)).await.expect("publish");
        }
        let acquire = |term: u64| {
            DcsOp::AcquireLeader(Acquire {
                record: LeaderRecord { holder: "n1".into(), term: Term(term), ttl: 30_000 },
                expect: Expect::Absent,
                term_was: Term(term - 1),
                sync: None,
                history: None,
            })
        };
        a.execute(&acquire(1)).await.expect("acquire");
        let cfg = Value::Config(hacore::ClusterSettings::default());
        a.execute(&DcsOp::Put(Write::put(cfg, Expect::Absent))).await.expect("config");

        let mut rows = Vec::new();
        rows.push(
            measure(port, "read (whole cluster prefix)", n, |_| async {
                a.read().await.expect("read");
            })
            .await,
        );
        let g = guard(&a).await;
        rows.push(
            measure(port, "renew (leader lease)", n, |_| {
                let op = DcsOp::RenewLeader { guard: g.clone(), ttl: 30_000 };
                let a = &a;
                async move {
                    assert!(matches!(a.execute(&op).await, Ok(DcsReply::Lease(_))));
                }
            })
            .await,
        );
        rows.push(
            measure(port, "leader write (status)", n, |i| {
                let status =
                    StatusRecord { leader: "n1".into(), term: Term(1), lsn: Lsn(i as u64), ..Default::default() };
                let op = DcsOp::LeaderWrite {
                    guard: g.clone(),
                    writes: vec![Write::put(Value::Status(status), Expect::Any)],
                };
                let a = &a;
                async move {
                    a.execute(&op).await.expect("status");
                }
            })
            .await,
        );
        rows.push(
            measure(port, "keepalive (replica)", n, |_| async {
                others[0].execute(&DcsOp::KeepAlive { ttl: 30_000 }).await.expect("keepalive");
            })
            .await,
        );
        // Acquire after a release, each in a new term.
        let mut term = 1u64;
        let g0 = guard(&a).await;
        a.execute(&DcsOp::ReleaseLeader { guard: g0 }).await.expect("release");
        let mut acq = Vec::with_capacity(n);
        for _ in 0..n {
            term += 1;
            let t = Instant::now();
            a.execute(&acquire(term)).await.expect("acquire");
            acq.push(t.elapsed().as_micros());
            let g = guard(&a).await;
            a.execute(&DcsOp::ReleaseLeader { guard: g }).await.expect("release");
        }
        acq.sort_unstable();
        rows.push(Row {
            op: "acquire (create-if-absent, new term)",
            median_us: acq[n / 2],
            p90_us: acq[n * 9 / 10],
            p99_us: acq[n * 99 / 100],
            cost: vec![],
        });

        println!("etcd {} on loopback, {n} operations each (after {} warm-up)", etcd_version(), n / 10);
        println!();
        println!("| operation | median | p90 | p99 | etcd cost per operation |");
        println!("|---|---:|---:|---:|---|");
        for r in rows {
            let cost: Vec<String> = r.cost.iter().map(|(k, v)| format!("{v:.2} {k}")).collect();
            println!(
                "| {} | {:.2} ms | {:.2} ms | {:.2} ms | {} |",
                r.op,
                r.median_us as f64 / 1000.0,
                r.p90_us as f64 / 1000.0,
                r.p99_us as f64 / 1000.0,
                if cost.is_empty() { "1 lease renewal, 1 Txn rpc, 1 raft write (not counted separately: the loop also reads and releases)".into() } else { cost.join(", ") }
            );
        }
        drop(server);
        tokio::time::sleep(Duration::from_millis(10)).await;
    });
}

fn etcd_version() -> String {
    std::process::Command::new(backend_etcd::testing::etcd_bin())
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(|l| l.replace("etcd Version: ", "")))
        .unwrap_or_else(|| "?".into())
}
