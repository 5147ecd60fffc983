//! Replays, on stable Rust, every input kept in `fuzz/corpus/<target>/` (the minimized
//! corpora of past fuzzing runs) and `fuzz/regressions/<target>/` (inputs that once
//! crashed a target, kept after the fix) through the same target bodies the fuzzer runs.

use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

#[test]
fn every_kept_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut failed = Vec::new();
    for (name, target) in fuzzing::TARGETS {
        let files: Vec<PathBuf> =
            ["corpus", "regressions"].iter().flat_map(|d| inputs(&root.join(d).join(name))).collect();
        assert!(!files.is_empty(), "no kept inputs for target {name} under {}", root.display());
        for f in &files {
            let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            if std::panic::catch_unwind(|| target(&data)).is_err() {
                failed.push(f.display().to_string());
            }
        }
        eprintln!("{name}: {} inputs replayed", files.len());
    }
    assert!(
        failed.is_empty(),
        "inputs that fail their target (replay with cargo +nightly fuzz run <target> <file>):\n{}",
        failed.join("\n")
    );
}

#[test]
fn the_hand_made_seeds_pass_their_targets() {
    for (name, bytes) in fuzzing::seeds() {
        let target = fuzzing::TARGETS.iter().find(|(n, _)| *n == name).map(|(_, t)| t).expect("known target");
        target(&bytes);
    }
}

/// A short fuzzing budget on stable Rust, for CI where cargo-fuzz (nightly, sanitizers)
/// does not run: kept inputs mutated by a seeded generator (bit flips, byte
/// overwrites, insertions, deletions, splices of two inputs), `FUZZ_MUTATIONS` per
/// target (default 400), seed `FUZZ_SEED` (default fixed, so a failure replays).
#[test]
fn mutated_kept_inputs_pass_their_targets() {
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let seed = env("FUZZ_SEED", 20_261_202);
    let per_target = env("FUZZ_MUTATIONS", 400);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let mut rng = seed | 1;
    let mut next = move || {
        // xorshift64*: enough for picking mutations, and the same on every machine.
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut failed = Vec::new();
    for (name, target) in fuzzing::TARGETS {
        let pool: Vec<Vec<u8>> = inputs(&root.join(name)).iter().filter_map(|f| std::fs::read(f).ok()).collect();
        assert!(!pool.is_empty(), "no corpus for {name}");
        for i in 0..per_target {
            let mut data = pool[(next() % pool.len() as u64) as usize].clone();
            for _ in 0..1 + next() % 4 {
                let at = if data.is_empty() { 0 } else { (next() % data.len() as u64) as usize };
                match next() % 5 {
                    0 if !data.is_empty() => data[at] ^= 1 << (next() % 8),
                    1 if !data.is_empty() => data[at] = next() as u8,
                    2 => data.insert(at, next() as u8),
                    3 if !data.is_empty() => {
                        let n = (1 + next() % 8) as usize;
                        data.drain(at..(at + n).min(data.len()));
                    }
                    _ => {
                        let other = &pool[(next() % pool.len() as u64) as usize];
                        let from = if other.is_empty() { 0 } else { (next() % other.len() as u64) as usize };
                        data.truncate(at);
                        data.extend_from_slice(&other[from..]);
                    }
                }
            }
            if std::panic::catch_unwind(|| target(&data)).is_err() {
                failed.push(format!("{name} mutation {i}: {data:?}"));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "mutated inputs that fail their target (FUZZ_SEED={seed} FUZZ_MUTATIONS={per_target} replays them):\n{}",
        failed.join("\n")
    );
}
