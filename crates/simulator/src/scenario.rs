//! Hand-written scenarios in a small text format, run like seeds but with an explicit
//! fault schedule and expectations.
//!
//! ```text
//! # An isolated primary must stop accepting writes (CloudNativePG #7407).
//! nodes 3
//! mode etcd                      # or dynamo
//! standby-cluster                # optional: replicate from a modelled upstream
//! settings ttl=10s loop_wait=1s retry_timeout=1s sync=off failsafe=off
//! tags n3 nofailover             # optional, per node: nofailover nosync clonefrom priority=N
//! permanent-slots cdc            # optional: slots the leader keeps whatever the topology
//! latency 1ms..5ms               # store latency, one way
//! writes 50                      # client writes per second
//! duration 120s                  # fault phase; a liveness phase follows
//! at 30s isolate primary for 40s
//! expect count self_fencing >= 1
//! expect count failover >= 1
//! ```
//!
//! Every scenario also expects no violation of S1-S5, R1 and R2 and convergence after the faults
//! stop (L1). Fault lines are those of [`crate::nemesis`].

use crate::nemesis::{parse_duration, Schedule};
use crate::params::{DcsMode, Params};
use crate::run::{run, RunReport};
use hacore::{Millis, SyncMode};

/// A comparison on a coverage counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expectation {
    /// Counter name.
    pub counter: String,
    /// `>=`, `<=` or `==`.
    pub op: String,
    /// Value.
    pub value: u64,
}

/// A parsed scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Parameters (seed 1 unless given).
    pub params: Params,
    /// Expectations beyond "no violation, converges".
    pub expect: Vec<Expectation>,
    /// A violation kind (e.g. `S1`) the scenario must produce: it documents a stated limit.
    pub expect_violation: Option<String>,
}

/// The result of running a scenario.
pub struct Outcome {
    /// The run.
    pub report: RunReport,
    /// Failed expectations.
    pub unmet: Vec<String>,
    /// The run produced the violation the scenario expects (and only that kind).
    pub expected_violation: bool,
}

impl Outcome {
    /// Whether everything held.
    pub fn passed(&self) -> bool {
        self.unmet.is_empty() && (self.report.ok() || self.expected_violation)
    }

    /// What to print.
    pub fn lines(&self) -> Vec<String> {
        let mut l = vec![self.report.describe.clone()];
        for (t, v) in &self.report.violations {
            l.push(format!("violation at {t} ms: {v}"));
        }
        l.extend(self.unmet.iter().map(|u| format!("unmet: {u}")));
        l.push(format!(
            "counters: {}",
            self.report.counters.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
        ));
        l
    }
}

fn setting(p: &mut Params, key: &str, value: &str) -> Result<(), String> {
    let s = &mut p.settings;
    match key {
        "ttl" => s.ttl = parse_duration(value)?,
        "loop_wait" => s.loop_wait = parse_duration(value)?,
        "retry_timeout" => s.retry_timeout = parse_duration(value)?,
        "sync" => {
            s.synchronous_mode = match value {
                "off" => SyncMode::Off,
                "on" => SyncMode::On,
                "strict" => SyncMode::Strict,
                _ => return Err(format!("sync={value}: use off, on or strict")),
            }
        }
        "sync_count" => s.synchronous_node_count = value.parse().map_err(|_| "sync_count takes a number")?,
        "failsafe" => s.failsafe_mode = value == "on",
        "max_lag" => s.maximum_lag_on_failover = value.parse().map_err(|_| "max_lag takes bytes")?,
        "start_timeout" => s.primary_start_timeout = parse_duration(value)?,
        "hang_timeout" => s.primary_hang_timeout = parse_duration(value)?,
        "switchover_timeout" => s.switchover_timeout = parse_duration(value)?,
        _ => return Err(format!("unknown setting {key:?}")),
    }
    Ok(())
}

impl Scenario {
    /// Parses the text form.
    pub fn parse(text: &str) -> Result<Scenario, String> {
        let mut p = Params::quiet(1, 3);
        p.write_rate = 50;
        let mut expect = Vec::new();
        let mut expect_violation = None;
        let mut faults = String::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let err = |e: String| format!("line {}: {e}", n + 1);
            let words: Vec<&str> = line.split_whitespace().collect();
            match words[0] {
                "at" => {
                    faults.push_str(line);
                    faults.push('\n');
                }
                "standby-cluster" => {
                    // A standby cluster of a modelled upstream (see `World::upstream`).
                    p.settings.standby_cluster =
                        Some(hacore::StandbyCluster { pg_url: "host=upstream port=5432".into(), ..Default::default() })
                }
                "seed" => {
                    p.seed =
                        words.get(1).and_then(|s| s.parse().ok()).ok_or_else(|| err("seed takes a number".into()))?
                }
                "nodes" => {
                    let nodes: usize =
                        words.get(1).and_then(|s| s.parse().ok()).ok_or_else(|| err("nodes takes a number".into()))?;
                    p.nodes = nodes;
                    p.drift_ppm = vec![0; nodes];
                    p.tags = vec![hacore::Tags::default(); nodes];
                }
                "mode" => {
                    p.mode = match words.get(1) {
                        Some(&"etcd") => DcsMode::Etcd,
                        Some(&"dynamo") => DcsMode::Dynamo,
                        _ => return Err(err("mode is etcd or dynamo".into())),
                    }
                }
                "settings" => {
                    for kv in &words[1..] {
                        let (k, v) = kv.split_once('=').ok_or_else(|| err(format!("{kv:?}: expected key=value")))?;
                        setting(&mut p, k, v).map_err(err)?;
                    }
                }
                "latency" => {
                    let (a, b) = words
                        .get(1)
                        .and_then(|r| r.split_once(".."))
                        .ok_or_else(|| err("latency takes A..B, e.g. 1ms..5ms".into()))?;
                    p.dcs_latency = (parse_duration(a).map_err(err)?, parse_duration(b).map_err(err)?);
                }
                "replication-delay" => {
                    let (a, b) =
                        words.get(1).and_then(|r| r.split_once("..")).ok_or_else(|| err("takes A..B".into()))?;
                    p.replication_delay = (parse_duration(a).map_err(err)?, parse_duration(b).map_err(err)?);
                }
                "drift" => {
                    let v: Vec<i64> =
                        words[1..].iter().filter_map(|w| w.trim_end_matches("ppm").parse().ok()).collect();
                    p.drift_ppm = v;
                }
                "tags" => {
                    let i = words
                        .get(1)
                        .and_then(|n| n.strip_prefix('n')?.parse::<usize>().ok())
                        .filter(|n| (1..=p.nodes).contains(n))
                        .ok_or_else(|| err("tags takes a node (n1..nN, after `nodes`) and its tags".into()))?;
                    let t = &mut p.tags[i - 1];
                    for w in &words[2..] {
                        match *w {
                            "nofailover" => t.nofailover = true,
                            "nosync" => t.nosync = true,
                            "clonefrom" => t.clonefrom = true,
                            "noloadbalance" => t.noloadbalance = true,
                            _ => {
                                t.failover_priority =
                                    w.strip_prefix("priority=").and_then(|v| v.parse().ok()).ok_or_else(|| {
                                        err(format!(
                                        "unknown tag {w:?} (nofailover, nosync, clonefrom, noloadbalance, priority=N)"
                                    ))
                                    })?
                            }
                        }
                    }
                }
                "permanent-slots" => p.permanent_slots = words[1..].iter().map(|s| s.to_string()).collect(),
                "guard" => {
                    p.guard = match words.get(1) {
                        Some(&"on") => true,
                        Some(&"off") => false,
                        _ => return Err(err("guard is on or off".into())),
                    }
                }
                "writes" => {
                    p.write_rate =
                        words.get(1).and_then(|s| s.parse().ok()).ok_or_else(|| err("writes takes a rate".into()))?
                }
                "lost-replies" => {
                    p.p_reply_lost =
                        words.get(1).and_then(|s| s.parse().ok()).ok_or_else(|| err("takes a probability".into()))?
                }
                "duration" => {
                    p.duration = parse_duration(words.get(1).ok_or_else(|| err("duration needs a value".into()))?)
                        .map_err(err)?
                }
                "expect" => match words.get(1) {
                    Some(&"violation") if words.len() == 3 => expect_violation = Some(words[2].to_string()),
                    Some(&"count") if words.len() == 5 => expect.push(Expectation {
                        counter: words[2].to_string(),
                        op: words[3].to_string(),
                        value: words[4].parse().map_err(|_| err("expected a number".into()))?,
                    }),
                    _ => {
                        return Err(err(
                            "expect count <counter> >=|<=|== <n>, or expect violation <S1..S5|R1|R2|L1>".into()
                        ))
                    }
                },
                other => return Err(err(format!("unknown directive {other:?}"))),
            }
        }
        p.schedule = Schedule::parse(&faults)?;
        if p.drift_ppm.len() < p.nodes {
            p.drift_ppm.resize(p.nodes, 0);
        }
        p.settings.validate(&p.safety).map_err(|e| format!("invalid settings: {e:?}"))?;
        Ok(Scenario { params: p, expect, expect_violation })
    }

    /// Runs it.
    pub fn run(&self) -> Outcome {
        self.run_world().0
    }

    /// Runs it and also returns the world (trace, picture).
    pub fn run_world(&self) -> (Outcome, crate::World) {
        let (report, world) = run(self.params.clone());
        let mut unmet: Vec<String> = self
            .expect
            .iter()
            .filter_map(|e| {
                let got = report.counters.get(e.counter.as_str()).copied().unwrap_or(0);
                let ok = match e.op.as_str() {
                    ">=" => got >= e.value,
                    "<=" => got <= e.value,
                    "==" => got == e.value,
                    _ => false,
                };
                (!ok).then(|| format!("count {} {} {} (got {got})", e.counter, e.op, e.value))
            })
            .collect();
        let mut expected_violation = false;
        if let Some(kind) = &self.expect_violation {
            let kinds: Vec<&str> = report.violations.iter().map(|(_, v)| v.split(':').next().unwrap_or("")).collect();
            expected_violation = !kinds.is_empty() && kinds.iter().all(|k| k == kind);
            if !expected_violation {
                unmet.push(format!("expected a {kind} violation (a documented limit), got {kinds:?}"));
            }
        }
        (Outcome { report, unmet, expected_violation }, world)
    }

    /// Its fault phase length.
    pub fn duration(&self) -> Millis {
        self.params.duration
    }
}
