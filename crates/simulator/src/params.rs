//! Everything a run depends on, drawn from one seed: cluster size, store mode, timings,
//! clock drift, workload, and the fault schedule (swarm testing: which fault kinds occur
//! and how often is itself drawn from the seed).

use crate::nemesis::{FaultKind, Schedule};
use crate::rng::Rng;
use hacore::{ClusterSettings, Millis, Safety, SyncMode, Tags};

/// How the simulated store behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DcsMode {
    /// etcd-like: server-side lease expiry (whole seconds, a minimum), watch, leases
    /// extended when the store's own leader changes.
    Etcd,
    /// DynamoDB-like: no leases (observers' clocks), no watch, a read that is not a
    /// snapshot across items.
    Dynamo,
}

/// Durations of simulated PostgreSQL operations (ms).
#[derive(Clone, Debug)]
pub struct Durations {
    /// initdb.
    pub initdb: Millis,
    /// Clone.
    pub clone: Millis,
    /// pg_rewind.
    pub rewind: Millis,
    /// Start (either role).
    pub start: Millis,
    /// Stop fast.
    pub stop_fast: Millis,
    /// Stop immediate.
    pub stop_immediate: Millis,
    /// Promote (before replay of the backlog).
    pub promote: Millis,
    /// CHECKPOINT.
    pub checkpoint: Millis,
}

impl Default for Durations {
    fn default() -> Self {
        Durations {
            initdb: 500,
            clone: 2_000,
            rewind: 1_000,
            start: 300,
            stop_fast: 200,
            stop_immediate: 50,
            promote: 200,
            checkpoint: 100,
        }
    }
}

/// Parts of a run fixed by the user instead of drawn from the seed (everything else is
/// still drawn, from the same random streams, so a seed keeps its workload and fault mix).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Number of nodes.
    pub nodes: Option<usize>,
    /// `(ttl, loop_wait, retry_timeout)`; the fault schedule is drawn for this ttl.
    pub timing: Option<(Millis, Millis, Millis)>,
    /// Failsafe mode on or off.
    pub failsafe: Option<bool>,
    /// Store mode.
    pub mode: Option<DcsMode>,
    /// `(fence_time, wake_latency)` of the safety assumptions, for settings tuned to a
    /// fast machine; the simulated fencing (the guard's kill, `stop -m immediate` in
    /// [`Durations::stop_immediate`]) stays within them.
    pub safety: Option<(Millis, Millis)>,
    /// A standby cluster of a modelled upstream, with the upstream's faults drawn too
    /// ([`Schedule::upstream_faults`]).
    pub standby: Option<bool>,
}

impl Overrides {
    /// The safety assumptions of the run: the defaults with `safety` applied.
    pub fn safety(&self) -> Safety {
        let mut s = Safety::default();
        if let Some((fence_time, wake_latency)) = self.safety {
            s.fence_time = fence_time;
            s.wake_latency = wake_latency;
        }
        s
    }

    /// Checks the timing against the safety assumptions; the error says what to change
    /// (the daemon refuses the same settings at load).
    pub fn validate(&self) -> Result<(), String> {
        let safety = self.safety();
        if let Some((fence_time, _)) = self.safety {
            let stop = Durations::default().stop_immediate;
            if fence_time < stop {
                return Err(format!(
                    "fence time {fence_time} ms is shorter than the simulated immediate stop ({stop} ms)"
                ));
            }
        }
        let Some((ttl, loop_wait, retry_timeout)) = self.timing else { return Ok(()) };
        let s = ClusterSettings { ttl, loop_wait, retry_timeout, ..ClusterSettings::default() };
        s.validate(&safety).map_err(|errs| errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))
    }
}

/// The parameters of one run.
#[derive(Clone, Debug)]
pub struct Params {
    /// The seed everything was drawn from.
    pub seed: u64,
    /// Number of nodes.
    pub nodes: usize,
    /// Store mode.
    pub mode: DcsMode,
    /// Cluster settings every node starts with.
    pub settings: ClusterSettings,
    /// Safety assumptions (the drift bound the clocks respect).
    pub safety: Safety,
    /// Each node's clock rate error (ppm), within the drift bound.
    pub drift_ppm: Vec<i64>,
    /// Store round-trip latency range, one way (ms).
    pub dcs_latency: (Millis, Millis),
    /// Replication delay range (ms) from primary to standby.
    pub replication_delay: (Millis, Millis),
    /// Replay delay range (ms): a standby replays what it received this much later.
    pub replay_delay: (Millis, Millis),
    /// Client writes per second on every writable node (0: none).
    pub write_rate: u64,
    /// Operation durations.
    pub durations: Durations,
    /// Probability that a DCS reply is lost (the client sees an unknown outcome).
    pub p_reply_lost: f64,
    /// Length of the fault phase.
    pub duration: Millis,
    /// The fault schedule.
    pub schedule: Schedule,
    /// Record the full trace (JSON lines) in memory.
    pub keep_trace: bool,
    /// Run the fencing guard next to each daemon (the default). Off: the daemon's own
    /// fencing is all there is, as in a deployment without the guard process.
    pub guard: bool,
    /// Granularity of client writes, replication, replay and acknowledgement (ms). Writes
    /// keep their own times within a tick, so rates and delays stay exact.
    pub tick: Millis,
    /// Each node's member tags (`nofailover`, `failover_priority`, `nosync`, `clonefrom`),
    /// in node order; a node without an entry has the defaults.
    pub tags: Vec<Tags>,
    /// Replication slots every node is configured to keep whatever the topology (a
    /// logical decoding consumer's, say): the leader must hold them through failovers.
    pub permanent_slots: Vec<String>,
    /// Node names are this prefix and the node's number from 1 (`n1`, `n2`, ...). Half
    /// of the drawn seeds use `pg-` instead: a name whose replication slot name differs
    /// from it (`pg_1`), as with host names in real deployments.
    pub name_prefix: String,
}

/// Draws the nodes' tags from their own random stream (so a seed's other draws stay the
/// same). Half of the seeds tag nothing; in the others each node may be excluded from
/// leading (`nofailover`, or priority 0) or from the sync set (`nosync`), get a priority
/// of 1-3, and one node may be the preferred clone source. At least two nodes can always
/// lead: with fewer there is no failover to check.
pub fn draw_tags(seed: u64, nodes: usize) -> Vec<Tags> {
    let mut r = Rng::stream(seed, "tags");
    let mut tags = vec![Tags::default(); nodes];
    if nodes == 0 || !r.chance(0.5) {
        return tags;
    }
    for t in &mut tags {
        if r.chance(0.4) {
            t.failover_priority = r.range(1, 3) as u32;
        }
        if r.chance(0.2) {
            if r.chance(0.5) {
                t.nofailover = true;
            } else {
                t.failover_priority = 0;
            }
        }
        t.nosync = r.chance(0.2);
        t.noloadbalance = r.chance(0.1);
    }
    if r.chance(0.6) {
        tags[r.range(0, nodes as u64 - 1) as usize].clonefrom = true;
    }
    let mut i = 0;
    while tags.iter().filter(|t| t.can_lead()).count() < 2.min(nodes) {
        tags[i].nofailover = false;
        tags[i].failover_priority = tags[i].failover_priority.max(1);
        i += 1;
    }
    tags
}

impl Params {
    /// A quiet 3-node etcd-like cluster with the fast preset and no faults.
    pub fn quiet(seed: u64, nodes: usize) -> Params {
        Params {
            seed,
            nodes,
            mode: DcsMode::Etcd,
            settings: ClusterSettings::fast(),
            safety: Safety::default(),
            drift_ppm: vec![0; nodes],
            dcs_latency: (1, 3),
            replication_delay: (1, 5),
            replay_delay: (0, 0),
            write_rate: 10,
            durations: Durations::default(),
            p_reply_lost: 0.0,
            duration: 60_000,
            schedule: Schedule::default(),
            keep_trace: false,
            guard: true,
            tick: 100,
            tags: vec![Tags::default(); nodes],
            permanent_slots: Vec::new(),
            name_prefix: "n".into(),
        }
    }

    /// Everything drawn from `seed`, for a fault phase of `duration`.
    pub fn from_seed(seed: u64, duration: Millis, nodes: Option<usize>) -> Params {
        Params::from_seed_with(seed, duration, &Overrides { nodes, ..Overrides::default() })
    }

    /// [`Params::from_seed`] with some parts fixed by `o`.
    pub fn from_seed_with(seed: u64, duration: Millis, o: &Overrides) -> Params {
        let mut r = Rng::stream(seed, "params");
        let nodes = o.nodes.unwrap_or_else(|| r.range(3, 7) as usize);
        let drawn_mode = if r.chance(0.5) { DcsMode::Etcd } else { DcsMode::Dynamo };
        let mode = o.mode.unwrap_or(drawn_mode);
        // The last: the fastest preset (docs/benchmarks.md), a loop of half a second.
        let drawn =
            r.pick(&[(10_000, 1_000, 1_000), (15_000, 2_000, 2_000), (30_000, 5_000, 5_000), (5_000, 500, 1_000)]);
        let (ttl, loop_wait, retry) = o.timing.unwrap_or(drawn);
        let synchronous_mode = r.pick(&[SyncMode::Off, SyncMode::Off, SyncMode::On, SyncMode::Strict]);
        let mut settings = ClusterSettings {
            ttl,
            loop_wait,
            retry_timeout: retry,
            maximum_lag_on_failover: r.pick(&[1 << 20, 64 * 1024, u64::MAX]),
            synchronous_mode,
            synchronous_node_count: if nodes > 3 && r.chance(0.3) { 2 } else { 1 },
            failsafe_mode: {
                let drawn = r.chance(0.5);
                o.failsafe.unwrap_or(drawn)
            },
            paused: false,
            primary_start_timeout: ttl * 2,
            primary_hang_timeout: ttl * 3 / 2,
            switchover_timeout: ttl,
            standby_cluster: None,
        };
        let safety = o.safety();
        let bound = safety.max_clock_drift_ppm as i64;
        let drift_ppm = (0..nodes).map(|_| r.range(0, 2 * bound as u64) as i64 - bound).collect();
        let mut lat_max = r.pick(&[2, 10, 50, 200]);
        // A store in another region (500 ms one way) where retry_timeout leaves room for a
        // round trip: loops slower than loop_wait, the renewal due at every step. From its
        // own random stream, so a seed's other draws stay the same.
        let mut lat_min = 1;
        let far = Rng::stream(seed, "far-store").chance(0.25);
        if retry >= 5_000 && far {
            lat_max = 500;
        }
        // The fastest preset with the store in another zone: every round trip (0.52 to 0.6 s)
        // is longer than the loop (0.5 s) and within retry_timeout (1 s), so a renewal is
        // nearly always in flight when the next step runs.
        if (loop_wait, retry) == (500, 1_000) && far {
            (lat_min, lat_max) = (260, 300);
        }
        let durations = Durations {
            clone: r.range(1_000, 5_000),
            rewind: r.range(300, 2_000),
            start: r.range(100, 600),
            promote: r.range(50, 400),
            ..Durations::default()
        };
        let p_reply_lost = r.pick(&[0.0, 0.001, 0.01, 0.03]);
        let write_rate = r.pick(&[10, 50, 100]);
        let replication_delay = (1, r.pick(&[5, 50, 300, 2_000]));
        let replay_delay = (0, r.pick(&[0, 20, 200]));
        let mut schedule = Schedule::generate(seed, nodes, duration, ttl);
        if o.standby == Some(true) {
            settings.standby_cluster =
                Some(hacore::StandbyCluster { pg_url: "host=upstream port=5432".into(), ..Default::default() });
            schedule.faults.extend(Schedule::upstream_faults(seed, duration, ttl));
            schedule.faults.sort_by_key(|f| f.at);
        }
        if mode == DcsMode::Dynamo {
            // Observer-clock leases assume no observer's clock runs ahead of real time beyond
            // the drift bound (a forward jump is indistinguishable from a pause of that
            // observer). Jumps stay in etcd-like runs; scenarios/dynamo-observer-clock-jump.sim
            // shows the limit.
            schedule.faults.retain(|f| !matches!(f.kind, crate::nemesis::FaultKind::ClockJump(..)));
        }
        if settings.failsafe_mode {
            // A failsafe acknowledgement is a promise counted on the member's clock: a
            // member whose clock jumps ahead by more than the margin's fixed part (fence
            // time + wake latency) ends its hold early and may take the lease while the
            // primary still writes on it. CLOCK_BOOTTIME does not jump ahead of real time;
            // scenarios/failsafe-acker-clock-jump.sim shows the limit. Jumps stay within it.
            let bound = safety.fence_time + safety.wake_latency;
            for f in &mut schedule.faults {
                if let crate::nemesis::FaultKind::ClockJump(_, ms) = &mut f.kind {
                    *ms = (*ms).min(bound);
                }
            }
        }
        // One run in five has no fencing guard: the daemon's own fencing is all there is.
        // Without the guard nothing stops a frozen daemon's PostgreSQL, or one whose stop
        // fails or takes longer than fence_time (that is what the guard is for), so those
        // faults stay in runs with the guard.
        let guard = !r.chance(0.2);
        if !guard {
            use crate::nemesis::FaultKind::{FailPg, PauseDaemon, SlowPg};
            schedule.faults.retain(|f| !matches!(f.kind, PauseDaemon(_) | SlowPg(..) | FailPg(_)));
        }
        Params {
            seed,
            nodes,
            mode,
            settings,
            safety,
            drift_ppm,
            dcs_latency: (lat_min, lat_max),
            replication_delay,
            replay_delay,
            write_rate,
            durations,
            p_reply_lost,
            duration,
            schedule,
            keep_trace: false,
            guard,
            tick: 100,
            tags: draw_tags(seed, nodes),
            permanent_slots: if Rng::stream(seed, "slots").chance(0.3) { vec!["cdc".into()] } else { Vec::new() },
            name_prefix: if Rng::stream(seed, "names").chance(0.5) { "pg-" } else { "n" }.into(),
        }
    }

    /// One line describing the run.
    pub fn describe(&self) -> String {
        let kinds: Vec<&str> = FaultKind::NAMES
            .iter()
            .copied()
            .filter(|k| self.schedule.faults.iter().any(|f| f.kind.name() == *k))
            .collect();
        format!(
            "seed {} nodes {} {:?} ttl {} loop {} sync {:?} failsafe {}{}{} latency <= {} ms, {} faults ({})",
            self.seed,
            self.nodes,
            self.mode,
            self.settings.ttl,
            self.settings.loop_wait,
            self.settings.synchronous_mode,
            self.settings.failsafe_mode,
            if self.guard { "" } else { " no-guard" },
            if self.settings.standby_cluster.is_some() { " standby-cluster" } else { "" },
            self.dcs_latency.1,
            self.schedule.faults.len(),
            kinds.join(" ")
        )
    }
}
