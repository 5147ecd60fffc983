//! Writes `fuzzing::seeds()` into `fuzz/corpus/<target>/seed-<n>` (run from the
//! repository's root: `cargo run -p fuzzing --example seeds`).

fn main() {
    let mut n = std::collections::HashMap::<&str, usize>::new();
    for (target, bytes) in fuzzing::seeds() {
        let dir = std::path::Path::new("fuzz/corpus").join(target);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        let i = n.entry(target).or_default();
        std::fs::write(dir.join(format!("seed-{i}")), bytes).expect("write seed");
        *i += 1;
    }
    for (target, count) in n {
        println!("{target}: {count} seeds");
    }
}
