//! Any configuration file text, with any environment override and `--set` pair, is
//! accepted or refused with errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // The last line, if it looks like `KEY=VALUE`, doubles as a --set pair and an
    // environment override, so those paths are fuzzed with the same bytes.
    let last = text.lines().last().unwrap_or("");
    let sets: Vec<(String, String)> =
        last.split_once('=').map(|(k, v)| vec![(k.trim().to_string(), v.trim().to_string())]).unwrap_or_default();
    let env =
        hashell::config::env_overrides(sets.iter().map(|(k, v)| (format!("HASHELL_{}", k.to_uppercase()), v.clone())));
    let _ = hashell::config::load("fuzz.toml", &text, &env, &sets);
});
