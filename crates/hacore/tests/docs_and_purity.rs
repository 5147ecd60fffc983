//! Documentation that cannot drift, and the purity rules of the core.

use hacore::Reason;
use std::path::Path;

fn reasons_md() -> String {
    let mut out = String::from(
        "# Reasons\n\n\
         Every decision of a node carries one of these reasons. It is logged, recorded as an\n\
         event when it changes, shown by `hashell list` and the REST API. This page is generated\n\
         from `hacore::Reason::explain` (`UPDATE_DOCS=1 cargo test -p hacore --test docs_and_purity`).\n\n\
         | reason | what it means |\n|---|---|\n",
    );
    for r in Reason::ALL {
        out.push_str(&format!("| `{r}` | {} |\n", r.explain()));
    }
    out
}

#[test]
fn reasons_doc_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/reasons.md");
    let want = reasons_md();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &want).expect("write docs/reasons.md");
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(have == want, "docs/reasons.md is stale: run UPDATE_DOCS=1 cargo test -p hacore --test docs_and_purity");
}

/// hacore does no IO, reads no clock, draws no randomness (DESIGN.md section 1).
#[test]
fn core_sources_are_pure() {
    let forbidden = [
        "Instant::now",
        "SystemTime",
        "std::time",
        "std::fs",
        "std::net",
        "std::process",
        "std::thread",
        "std::env",
        "tokio",
        "rand::",
        "println!",
        "eprintln!",
    ];
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src];
    let mut checked = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                // The test-support module (feature `testing`) is not part of the core.
                if !path.ends_with("testing") {
                    stack.push(path);
                }
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            for f in forbidden {
                assert!(!text.contains(f), "{} uses {f}: the core must stay pure", path.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} source files checked");
}
