//! Cost of one `step` on realistic observations: a healthy leader and a streaming replica
//! in a 3-node and a 9-node cluster, and a candidate comparing positions in an election.
//!
//! Run: `cargo bench -p hacore --bench step`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use hacore::dcs::MemberRole;
use hacore::testing::scenario::Scenario;
use std::hint::black_box;

/// A cluster of `n` nodes seen from `me` (n1 leads), steady state.
fn cluster(n: usize, me: &str) -> Scenario {
    let mut s = Scenario::cluster3(me);
    for i in 4..=n {
        let name = format!("n{i}");
        s = s.member(&name, MemberRole::Replica, 0x500_0000);
        if me == "n1" {
            s = s.standby(&name, 0x500_0000).pg(|p| p.slots.push(format!("n{i}")));
        }
        if me != name {
            s = s.peer_replica(&name, 0x500_0000);
        }
    }
    let steady = s.step();
    // Feed the step its own published state so the benchmark measures a quiet loop.
    s.mem = steady.memory;
    s
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("step");
    for n in [3usize, 9] {
        let leader = cluster(n, "n1");
        g.bench_with_input(BenchmarkId::new("leader", n), &leader, |b, s| {
            b.iter(|| hacore::step(black_box(&s.cfg), black_box(&s.mem), black_box(&s.obs), black_box(s.now)))
        });
        let replica = cluster(n, "n2");
        g.bench_with_input(BenchmarkId::new("replica", n), &replica, |b, s| {
            b.iter(|| hacore::step(black_box(&s.cfg), black_box(&s.mem), black_box(&s.obs), black_box(s.now)))
        });
        let mut election = cluster(n, "n2").no_leader(3).pg_replica(1, 0x500_0000, None, false);
        for i in 3..=n {
            election = election.peer_candidate(&format!("n{i}"), 0x4ff_ff00, true, true);
        }
        election = election.peer("n1", None);
        g.bench_with_input(BenchmarkId::new("election", n), &election, |b, s| {
            b.iter(|| hacore::step(black_box(&s.cfg), black_box(&s.mem), black_box(&s.obs), black_box(s.now)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
