//! A sweep as a test: every seed of a range runs clean (no violation of S1-S5, R1, R2,
//! L1 met), and the runs exercise what the coverage minimums ask for. Every fourth seed
//! also runs as a standby cluster (the upstream's outages and failovers, a promotion in
//! half of them), so that the standby-cluster decisions are under test too.
//!
//! The range is small by default (120 seeds of a simulated hour: with shorter runs the
//! rarer paths, such as a replica found diverged, came and went with the seed draw),
//! because CI also runs the large sweep with the release binary (`scripts/test.sh`). `SIM_SWEEP=A..B` (seeds) and `SIM_SWEEP_MINUTES=N`
//! (simulated minutes per seed) widen it (or the two lines of `tests/sweep-range.local`),
//! e.g. to make the sweep the test command of a mutation run:
//!
//! ```sh
//! SIM_SWEEP=0..400 SIM_SWEEP_MINUTES=30 cargo test --release -p simulator --test sweep
//! ```
//!
//! The test stops at the first failing seed: a mutation run spends most of its time on the
//! mutants the sweep catches, and one failure is all it needs. `simulator sweep` is the
//! tool that lists every failing seed of a range.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

simulator::fast_allocator!();

/// `SIM_SWEEP`, else the first line of `tests/sweep-range.local` (ignored by git; for tools
/// that do not pass the environment through, such as a mutation-testing run), else 0..120.
fn setting(var: &str, line: usize, default: &str) -> String {
    std::env::var(var)
        .ok()
        .or_else(|| {
            let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sweep-range.local");
            std::fs::read_to_string(file).ok()?.lines().nth(line).map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| default.to_string())
}

fn range() -> (u64, u64) {
    let spec = setting("SIM_SWEEP", 0, "0..120");
    let parsed = spec.split_once("..").and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
    parsed.unwrap_or_else(|| panic!("SIM_SWEEP={spec:?}: expected A..B, e.g. 0..400"))
}

#[test]
fn every_seed_of_the_range_is_clean() {
    let (a, b) = range();
    let minutes: u64 = setting("SIM_SWEEP_MINUTES", 1, "60").parse().unwrap_or(60);
    let next = AtomicU64::new(a);
    let failed = AtomicBool::new(false);
    let failures = Mutex::new(Vec::new());
    let fail = |seed: u64, what: String| {
        failed.store(true, Ordering::SeqCst);
        failures.lock().unwrap_or_else(|p| p.into_inner()).push((seed, what));
    };
    let reached: Mutex<std::collections::BTreeMap<&'static str, u64>> = Mutex::default();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::SeqCst);
                if seed >= b || failed.load(Ordering::SeqCst) {
                    return;
                }
                if seed % 4 == 0 {
                    let o = simulator::params::Overrides { standby: Some(true), ..Default::default() };
                    let (r, _) = simulator::run(simulator::Params::from_seed_with(seed, minutes * 60_000, &o));
                    if !r.ok() {
                        let first = r.violations.first().map_or(String::new(), |v| v.1.clone());
                        fail(seed, format!("standby: {first}"));
                        continue;
                    }
                }
                let (r, _) = simulator::run(simulator::Params::from_seed(seed, minutes * 60_000, None));
                let mut reached = reached.lock().unwrap_or_else(|p| p.into_inner());
                for (k, v) in &r.counters {
                    if *v > 0 {
                        *reached.entry(k).or_default() += 1;
                    }
                }
                drop(reached);
                if !r.ok() {
                    let first = r.violations.first().map_or(String::new(), |v| v.1.clone());
                    fail(seed, first);
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    failures.sort();
    assert!(
        failures.is_empty(),
        "seed {} failed (of {}..{b}; the test stops at the first failure): {:?}\n\
         replay: simulator run --seed {0} --duration {minutes}m (add --standby on for a standby failure)",
        failures.first().map_or(0, |f| f.0),
        a,
        failures.first().map(|f| &f.1),
    );
    // A timid nemesis, or a change that stops a path from being exercised (a failsafe
    // that never holds, a fence that never runs), fails too. The range is small, so the
    // bar is half of `--min-coverage`'s, and shares under 10% are left to the big sweep.
    let reached = reached.into_inner().unwrap_or_else(|p| p.into_inner());
    let runs = b - a;
    let short: Vec<String> = simulator::check::REQUIRED_COVERAGE
        .iter()
        .filter(|(_, pct)| *pct >= 10 && runs >= 20)
        .filter_map(|(k, pct)| {
            let got = reached.get(k).copied().unwrap_or(0);
            let need = runs * u64::from(*pct) / 200;
            (got < need).then(|| format!("{k}: {got} of {runs} runs, need {need}"))
        })
        .collect();
    assert!(short.is_empty(), "coverage below the bar: {short:?}");
}
