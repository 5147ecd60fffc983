//! `simulator`: run, sweep, shrink and replay deterministic simulations of a cluster
//! driven by the real decision core.
//!
//! ```text
//! simulator run --seed N [--duration 1h] [--nodes 3] [--trace out.jsonl] [--svg out.svg]
//!               [--schedule FILE] [--check-determinism]
//! simulator sweep --seeds A..B [--duration 1h] [--jobs N] [--nodes N] [--min-coverage]
//! simulator shrink --seed N [--duration 1h] [--nodes N] [--out FILE]
//! simulator scenario FILE...
//! ```
//!
//! Exit status: 0 when every run is clean (and, with `--min-coverage`, every required
//! coverage counter was reached in its share of the runs), 1 on any violation or unmet
//! coverage, 2 on bad usage.

// Output goes to terminals and pipes (`| head`): a closed pipe ends the program quietly
// instead of panicking in `println!`, with the status a shell gives a process killed by
// SIGPIPE (141), so that a truncated run is never mistaken for a clean one.
macro_rules! println {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($t)*).is_err() {
            std::process::exit(141);
        }
    }};
}
macro_rules! print {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if write!(std::io::stdout(), $($t)*).is_err() {
            std::process::exit(141);
        }
    }};
}

use simulator::check::REQUIRED_COVERAGE;
use simulator::nemesis::parse_duration;
use simulator::params::Overrides;
use simulator::{run, scenario, svg, DcsMode, Params, RunReport, Schedule};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

simulator::fast_allocator!();
use std::time::Instant;

const USAGE: &str = "usage:
  simulator run --seed N [--duration 1h] [--nodes 3..7] [--writes N] [--trace FILE] [--svg FILE] [--schedule FILE] [--check-determinism]
  simulator sweep --seeds A..B [--duration 1h] [--jobs N] [--nodes N] [--writes N] [--min-coverage]
  run and sweep also take [--ttl 5s --loop-wait 500ms --retry-timeout 1s] [--failsafe on|off] [--dcs etcd|dynamo] [--standby on|off]
  [--fence-time 1500ms --wake-latency 500ms] to fix what the seed would draw (or the defaults would)
  simulator shrink --seed N [--duration 1h] [--nodes N] [--out FILE]
  simulator scenario FILE... [--trace FILE] [--svg FILE]";

struct Args {
    cmd: String,
    flags: BTreeMap<String, String>,
    rest: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let cmd = it.next().ok_or("missing command")?;
    let mut flags = BTreeMap::new();
    let mut rest = Vec::new();
    while let Some(a) = it.next() {
        if let Some(name) = a.strip_prefix("--") {
            let boolean = matches!(name, "check-determinism" | "min-coverage" | "print-hash" | "quiet");
            let value = if boolean { String::new() } else { it.next().ok_or(format!("--{name} needs a value"))? };
            flags.insert(name.to_string(), value);
        } else {
            rest.push(a);
        }
    }
    Ok(Args { cmd, flags, rest })
}

impl Args {
    fn num(&self, name: &str) -> Result<Option<u64>, String> {
        self.flags.get(name).map(|v| v.parse().map_err(|_| format!("--{name} {v:?} is not a number"))).transpose()
    }
    fn duration(&self) -> Result<u64, String> {
        self.flags.get("duration").map_or(Ok(3_600_000), |d| parse_duration(d))
    }
    /// What the user fixed instead of the seed (`--nodes`, timing, `--failsafe`, `--dcs`).
    fn overrides(&self) -> Result<Overrides, String> {
        let dur = |k: &str| self.flags.get(k).map(|v| parse_duration(v)).transpose();
        let timing = match (dur("ttl")?, dur("loop-wait")?, dur("retry-timeout")?) {
            (None, None, None) => None,
            (Some(t), Some(l), Some(r)) => Some((t, l, r)),
            _ => return Err("--ttl, --loop-wait and --retry-timeout go together".into()),
        };
        let failsafe = match self.flags.get("failsafe").map(String::as_str) {
            None => None,
            Some("on") => Some(true),
            Some("off") => Some(false),
            Some(v) => return Err(format!("--failsafe {v:?}: use on or off")),
        };
        let mode = match self.flags.get("dcs").map(String::as_str) {
            None => None,
            Some("etcd") => Some(DcsMode::Etcd),
            Some("dynamo") => Some(DcsMode::Dynamo),
            Some(v) => return Err(format!("--dcs {v:?}: use etcd or dynamo")),
        };
        let safety = match (dur("fence-time")?, dur("wake-latency")?) {
            (None, None) => None,
            (Some(f), Some(w)) => Some((f, w)),
            _ => return Err("--fence-time and --wake-latency go together".into()),
        };
        let standby = match self.flags.get("standby").map(String::as_str) {
            None => None,
            Some("on") => Some(true),
            Some("off") => Some(false),
            Some(v) => return Err(format!("--standby {v:?}: use on or off")),
        };
        let o = Overrides { nodes: self.nodes()?, timing, failsafe, mode, safety, standby };
        o.validate()?;
        Ok(o)
    }

    fn nodes(&self) -> Result<Option<usize>, String> {
        let n = self.num("nodes")?.map(|n| n as usize);
        if n.is_some_and(|n| !(1..=9).contains(&n)) {
            return Err("--nodes must be between 1 and 9".into());
        }
        Ok(n)
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match args.cmd.as_str() {
        "run" => cmd_run(&args),
        "sweep" => cmd_sweep(&args),
        "shrink" => cmd_shrink(&args),
        "scenario" => cmd_scenario(&args),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(true)
        }
        other => Err(format!("unknown command {other:?}")),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn hms(ms: u64) -> String {
    let s = ms / 1_000;
    format!("{}:{:02}:{:02}.{:03}", s / 3600, s / 60 % 60, s % 60, ms % 1_000)
}

fn params_for(args: &Args, seed: u64) -> Result<Params, String> {
    let mut p = Params::from_seed_with(seed, args.duration()?, &args.overrides()?);
    if let Some(w) = args.num("writes")? {
        p.write_rate = w;
    }
    if let Some(file) = args.flags.get("schedule") {
        let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
        p.schedule = Schedule::parse(&text)?;
    }
    Ok(p)
}

/// Flags that change what a seed runs; a replay passes them on.
const RUN_FLAGS: [&str; 12] = [
    "duration",
    "nodes",
    "schedule",
    "writes",
    "ttl",
    "loop-wait",
    "retry-timeout",
    "failsafe",
    "dcs",
    "fence-time",
    "wake-latency",
    "standby",
];

/// `simulator CMD --seed SEED` with the flags of this invocation that change the run.
fn command_for(cmd: &str, args: &Args, seed: u64, skip_schedule: bool) -> String {
    let mut c = format!("simulator {cmd} --seed {seed} --duration {}", args.flags.get("duration").map_or("1h", |s| s));
    for k in RUN_FLAGS.iter().skip(1).filter(|k| !(skip_schedule && **k == "schedule")) {
        if let Some(v) = args.flags.get(*k) {
            c.push_str(&format!(" --{k} {v}"));
        }
    }
    c
}

fn replay_command(args: &Args, seed: u64) -> String {
    command_for("run", args, seed, false)
}

fn print_report(r: &RunReport, wall: f64) {
    println!("{}", r.describe);
    if r.ok() {
        print!("result: OK");
    } else {
        print!("result: {} VIOLATION(S)", r.violation_count);
    }
    match r.converged_after {
        Some(t) => println!(
            "; converged {:.1} s after the faults stopped (bound {:.0} s)",
            t as f64 / 1e3,
            r.liveness_bound as f64 / 1e3
        ),
        None => println!("; did not converge within {:.0} s", r.liveness_bound as f64 / 1e3),
    }
    println!(
        "simulated {} in {:.3} s ({:.0}x real time), {} steps, {} acknowledged writes, {} lost at async failovers",
        hms(r.simulated),
        wall,
        r.simulated as f64 / 1e3 / wall.max(1e-9),
        r.steps,
        r.counters.get("writes_acked").copied().unwrap_or(0),
        r.async_lost
    );
    let secs = |g: Option<u64>| g.map_or("-".to_string(), |g| format!("{:.2} s", g as f64 / 1e3));
    println!(
        "write gap of the final switchover {}, of the final failover {}",
        secs(r.switchover_gap),
        secs(r.failover_gap)
    );
    let cov: Vec<String> = r.counters.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("coverage: {}", cov.join(", "));
    println!("trace hash: {:016x}", r.trace_hash);
    for (t, v) in &r.violations {
        println!("  at {}: {v}", hms(*t));
    }
}

fn cmd_run(args: &Args) -> Result<bool, String> {
    let seed = args.num("seed")?.ok_or("run needs --seed N")?;
    let mut p = params_for(args, seed)?;
    p.keep_trace = args.flags.contains_key("trace");
    let start = Instant::now();
    let (r, w) = run(p);
    let wall = start.elapsed().as_secs_f64();
    if args.flags.contains_key("print-hash") {
        println!("{:016x}", r.trace_hash);
        return Ok(r.ok());
    }
    print_report(&r, wall);
    if let Some(path) = args.flags.get("trace") {
        let mut text = w.trace.lines().join("\n");
        text.push('\n');
        std::fs::write(path, text).map_err(|e| format!("cannot write {path}: {e}"))?;
        println!("trace: {path} ({} events)", w.trace.events);
    }
    if let Some(path) = args.flags.get("svg") {
        std::fs::write(path, svg::render(&w)).map_err(|e| format!("cannot write {path}: {e}"))?;
        println!("picture: {path}");
    }
    let mut ok = r.ok();
    if args.flags.contains_key("check-determinism") {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut hashes = Vec::new();
        for _ in 0..2 {
            let mut cmd = std::process::Command::new(&exe);
            cmd.args(["run", "--seed", &seed.to_string(), "--print-hash"]);
            for k in RUN_FLAGS {
                if let Some(v) = args.flags.get(k) {
                    cmd.args([format!("--{k}"), v.clone()]);
                }
            }
            let out = cmd.output().map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
            hashes.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
        let mine = format!("{:016x}", r.trace_hash);
        if hashes.iter().all(|h| *h == mine) {
            println!("determinism: two separate processes produced the same trace hash {mine}");
        } else {
            println!("determinism: FAILED: this process {mine}, others {hashes:?}");
            ok = false;
        }
    }
    if !r.ok() {
        println!("replay: {}", replay_command(args, seed));
        println!("shrink: {}", command_for("shrink", args, seed, true));
    }
    Ok(ok)
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s.split_once("..").ok_or("--seeds takes A..B (B excluded)")?;
    let a = a.parse().map_err(|_| format!("{a:?} is not a seed"))?;
    let b = b.parse().map_err(|_| format!("{b:?} is not a seed"))?;
    if b <= a {
        return Err("--seeds A..B needs B > A".into());
    }
    Ok((a, b))
}

fn cmd_sweep(args: &Args) -> Result<bool, String> {
    let (a, b) = parse_range(args.flags.get("seeds").ok_or("sweep needs --seeds A..B")?)?;
    let jobs = args.num("jobs")?.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u64));
    let duration = args.duration()?;
    let overrides = args.overrides()?;
    let writes = args.num("writes")?;
    let next = AtomicU64::new(a);
    let results: Mutex<Vec<(u64, RunReport)>> = Mutex::new(Vec::new());
    let start = Instant::now();
    let quiet = args.flags.contains_key("quiet");
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::SeqCst);
                if seed >= b {
                    return;
                }
                let mut p = Params::from_seed_with(seed, duration, &overrides);
                if let Some(w) = writes {
                    p.write_rate = w;
                }
                let (r, _) = run(p);
                if !r.ok() && !quiet {
                    eprintln!("seed {seed}: {}", r.violations.first().map_or("", |v| v.1.as_str()));
                }
                results.lock().unwrap_or_else(|p| p.into_inner()).push((seed, r));
            });
        }
    });
    let wall = start.elapsed().as_secs_f64();
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by_key(|(s, _)| *s);
    let simulated: u64 = results.iter().map(|(_, r)| r.simulated).sum();
    let failing: Vec<&(u64, RunReport)> = results.iter().filter(|(_, r)| !r.ok()).collect();
    let mut sums: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (_, r) in &results {
        for (k, v) in &r.counters {
            let e = sums.entry(k).or_default();
            e.0 += v;
            e.1 += 1;
        }
    }
    println!(
        "sweep seeds {a}..{b} x {}: {} runs, {} failing; {:.1} simulated hours in {:.1} s wall on {jobs} jobs ({:.0}x real time per job)",
        hms(duration),
        results.len(),
        failing.len(),
        simulated as f64 / 3.6e6,
        wall,
        simulated as f64 / 1e3 / wall / jobs as f64
    );
    println!("{:<36} {:>12} {:>10} {:>9}", "coverage counter", "total", "runs", "required");
    for (k, (total, runs)) in &sums {
        let required = REQUIRED_COVERAGE.iter().find(|(c, _)| c == k).map_or(String::new(), |(_, p)| format!("{p}%"));
        println!("{k:<36} {total:>12} {runs:>10} {required:>9}");
    }
    for (k, p) in REQUIRED_COVERAGE.iter().filter(|(k, _)| !sums.contains_key(k)) {
        println!("{k:<36} {:>12} {:>10} {:>9}", 0, 0, format!("{p}%"));
    }
    for (what, gap) in [
        ("final switchover", (|r: &RunReport| r.switchover_gap) as fn(&RunReport) -> Option<u64>),
        ("final failover", |r: &RunReport| r.failover_gap),
    ] {
        let mut gaps: Vec<(u64, u64)> = results.iter().filter_map(|(s, r)| Some((gap(r)?, *s))).collect();
        gaps.sort();
        if let (Some(median), Some(worst)) = (gaps.get(gaps.len() / 2), gaps.last()) {
            println!(
                "{what} write gap: median {:.2} s, worst {:.2} s (seed {}), over {} runs",
                median.0 as f64 / 1e3,
                worst.0 as f64 / 1e3,
                worst.1,
                gaps.len()
            );
        }
    }
    let mut ok = failing.is_empty();
    let runs = results.len().max(1) as u64;
    let missing: Vec<String> = REQUIRED_COVERAGE
        .iter()
        .filter(|(k, pct)| sums.get(k).map_or(0, |s| s.1) * 100 < u64::from(*pct) * runs)
        .map(|(k, pct)| format!("{k} (reached in {} runs, needs {pct}%)", sums.get(k).map_or(0, |s| s.1)))
        .collect();
    if !missing.is_empty() {
        println!("coverage below the stated minimum: {}", missing.join(", "));
        if args.flags.contains_key("min-coverage") {
            ok = false;
        }
    }
    for (seed, r) in &failing {
        println!("FAILED seed {seed}: {}", r.violations.first().map_or("", |v| v.1.as_str()));
        println!("  replay: {}", replay_command(args, *seed));
    }
    Ok(ok)
}

fn first_kind(r: &RunReport) -> Option<String> {
    r.violations.first().map(|(_, v)| v.split(':').next().unwrap_or("").to_string())
}

fn cmd_shrink(args: &Args) -> Result<bool, String> {
    let seed = args.num("seed")?.ok_or("shrink needs --seed N")?;
    let base = params_for(args, seed)?;
    let (r, _) = run(base.clone());
    let Some(kind) = first_kind(&r) else {
        println!("seed {seed} does not fail: nothing to shrink");
        return Ok(true);
    };
    println!("seed {seed} fails with {kind}: {}", r.violations[0].1);
    let fails = |faults: &[simulator::Fault]| {
        let mut p = base.clone();
        p.schedule = Schedule { faults: faults.to_vec() };
        first_kind(&run(p).0).as_deref() == Some(kind.as_str())
    };
    // Delta debugging over the fault list.
    let mut faults = base.schedule.faults.clone();
    let mut chunk = faults.len().div_ceil(2).max(1);
    while chunk >= 1 && !faults.is_empty() {
        let mut i = 0;
        let mut removed = false;
        while i < faults.len() {
            let mut candidate = faults.clone();
            candidate.drain(i..(i + chunk).min(candidate.len()));
            if fails(&candidate) {
                faults = candidate;
                removed = true;
            } else {
                i += chunk;
            }
        }
        if !removed {
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        }
    }
    let schedule = Schedule { faults };
    let out = args.flags.get("out").cloned().unwrap_or_else(|| format!("shrunk-{seed}.txt"));
    std::fs::write(&out, schedule.to_string()).map_err(|e| format!("cannot write {out}: {e}"))?;
    println!(
        "minimal schedule ({} of {} faults), written to {out}:",
        schedule.faults.len(),
        base.schedule.faults.len()
    );
    print!("{schedule}");
    println!("replay: {} --schedule {out}", command_for("run", args, seed, true));
    Ok(false)
}

fn cmd_scenario(args: &Args) -> Result<bool, String> {
    if args.rest.is_empty() {
        return Err("scenario needs at least one FILE".into());
    }
    let mut ok = true;
    for file in &args.rest {
        let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
        let mut sc = scenario::Scenario::parse(&text).map_err(|e| format!("{file}: {e}"))?;
        sc.params.keep_trace = args.flags.contains_key("trace");
        let (outcome, w) = sc.run_world();
        if let Some(path) = args.flags.get("trace") {
            std::fs::write(path, w.trace.lines().join("\n") + "\n").map_err(|e| format!("cannot write {path}: {e}"))?;
        }
        if let Some(path) = args.flags.get("svg") {
            std::fs::write(path, svg::render(&w)).map_err(|e| format!("cannot write {path}: {e}"))?;
        }
        println!("{file}: {}", if outcome.passed() { "PASS" } else { "FAIL" });
        for line in outcome.lines() {
            println!("  {line}");
        }
        ok &= outcome.passed();
    }
    Ok(ok)
}
