//! Simulated seconds per wall second: 3 nodes, 100 writes/s, the seed's default faults.

simulator::fast_allocator!();

fn main() {
    let seeds: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(20);
    let hours: u64 = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let mut ratios = Vec::new();
    for seed in 0..seeds {
        let mut p = simulator::Params::from_seed(seed, hours * 3_600_000, Some(3));
        if let Some(t) = std::env::var("TICK").ok().and_then(|t| t.parse().ok()) {
            p.tick = t;
        }
        p.write_rate = 100;
        let t = std::time::Instant::now();
        let (r, _) = simulator::run(p);
        let wall = t.elapsed().as_secs_f64();
        ratios.push(r.simulated as f64 / 1e3 / wall);
        assert!(r.ok(), "seed {seed}: {:?}", r.violations);
    }
    let total: f64 = ratios.iter().map(|r| 3600.0 * hours as f64 / r).sum();
    ratios.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "median {:.0}x, min {:.0}x, max {:.0}x over {} seeds; aggregate {:.0}x ({:.2} s wall)",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1],
        seeds,
        seeds as f64 * 3600.0 * hours as f64 / total,
        total
    );
}
