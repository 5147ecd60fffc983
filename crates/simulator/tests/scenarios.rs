//! Every scenario in `crates/simulator/scenarios/` must pass: the incidents other HA
//! managers suffered, and the regressions found in review.

use simulator::scenario::Scenario;
use std::path::Path;

#[test]
fn every_scenario_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir).expect("scenarios dir").map(|e| e.expect("entry").path()).collect();
    files.sort();
    assert!(files.len() >= 15, "expected the incident and regression scenarios, found {}", files.len());
    let mut failed = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read scenario");
        let sc = Scenario::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let outcome = sc.run();
        if !outcome.passed() {
            failed.push(format!("{}:\n  {}", f.display(), outcome.lines().join("\n  ")));
        }
    }
    assert!(failed.is_empty(), "failing scenarios:\n{}", failed.join("\n"));
}
