//! Embedding `hacore`: a minimal shell driving `step` over the in-memory `Dcs`.
//!
//! Three nodes share one in-memory store. Each loop a node observes (its PostgreSQL, one
//! DCS read, its peers, the outcomes of earlier actions), calls `step`, executes the
//! actions in order (stopping at the first failure), stores the memory and sleeps until
//! `wake_within`. PostgreSQL is a toy here (a flag and a WAL position); a real shell runs
//! pg_ctl, initdb, pg_basebackup and pg_rewind. Time is a manual clock so the example
//! runs instantly.
//!
//! Run: `cargo run -p hacore --example embed`

use hacore::action::Action;
use hacore::dcs::{Dcs, DcsReply};
use hacore::memdcs::{Clock, ManualClock, SharedStore, StoreOptions};
use hacore::observation::{DataDir, PgObservation};
use hacore::{step, Config, Done, Failure, Lsn, Memory, NodeStatus, Observation, Outcome, PeerReport, Timeline};
use std::sync::Arc;

/// What this toy shell knows about "its PostgreSQL".
#[derive(Default)]
struct ToyPg {
    data: bool,
    running: bool,
    primary: bool,
    timeline: u32,
    lsn: u64,
}

struct Shell {
    cfg: Config,
    memory: Memory,
    status: NodeStatus,
    pg: ToyPg,
    outcomes: Vec<Outcome>,
    dcs: hacore::memdcs::MemDcs,
    alive: bool,
}

impl Shell {
    fn observe(&self, peers: Vec<PeerReport>) -> Observation {
        let pg = &self.pg;
        let observed = PgObservation {
            data: if pg.data { DataDir::Present { system_id: 1 } } else { DataDir::Empty },
            running: pg.running,
            responsive: pg.running,
            in_recovery: pg.data.then_some(!pg.primary),
            timeline: Timeline(pg.timeline),
            flush_lsn: Lsn(pg.lsn),
            replay_lsn: Lsn(pg.lsn),
            upstream: None,
            ..Default::default()
        };
        let dcs = futures::executor::block_on(self.dcs.read());
        Observation {
            pg: observed,
            dcs,
            peers,
            outcomes: self.outcomes.clone(),
            guard: Default::default(),
            requests: Default::default(),
            wall_time_ms: 0,
        }
    }

    /// Executes a batch in order; the first failure skips the rest.
    fn execute(&mut self, actions: Vec<Action>) {
        self.outcomes.clear();
        let mut failed = false;
        for action in actions {
            let id = action.id();
            let result = if failed {
                Err(Failure::Skipped)
            } else {
                match action {
                    Action::Dcs { op, .. } => match futures::executor::block_on(self.dcs.execute(&op)) {
                        Ok(DcsReply::Lease(g)) => Ok(Done::Lease(g)),
                        Ok(DcsReply::Done) => Ok(Done::Ok),
                        Err(e) => Err(Failure::from(&e)),
                    },
                    Action::Initdb { .. } => {
                        (self.pg.data, self.pg.primary, self.pg.timeline) = (true, true, 1);
                        Ok(Done::Ok)
                    }
                    Action::Clone { .. } => {
                        (self.pg.data, self.pg.primary, self.pg.timeline) = (true, false, 1);
                        Ok(Done::ConsistentAt(Lsn(0)))
                    }
                    Action::StartPrimary { .. } | Action::StartReplica { .. } => {
                        self.pg.running = true;
                        Ok(Done::Ok)
                    }
                    Action::Promote { timeline, .. } => {
                        (self.pg.primary, self.pg.timeline) = (true, timeline.0);
                        Ok(Done::Ok)
                    }
                    Action::Stop { .. } => {
                        self.pg.running = false;
                        Ok(Done::Ok)
                    }
                    // Everything else (follow, slots, guard, ...) succeeds trivially here.
                    _ => Ok(Done::Ok),
                }
            };
            failed |= result.is_err();
            if let Some(id) = id {
                self.outcomes.push(Outcome { id, result });
            }
        }
    }
}

fn main() {
    let clock = Arc::new(ManualClock::new(0));
    let store = SharedStore::new(StoreOptions::etcd_like(), clock.clone());
    let mut nodes: Vec<Shell> = ["n1", "n2", "n3"]
        .into_iter()
        .map(|name| {
            let mut cfg = Config::new(name);
            cfg.defaults.ttl = 10_000;
            cfg.defaults.loop_wait = 1_000;
            cfg.defaults.retry_timeout = 1_000;
            cfg.validate().expect("valid config");
            Shell {
                dcs: store.client(name, clock.clone()),
                cfg,
                memory: Memory::default(),
                status: NodeStatus::default(),
                pg: ToyPg::default(),
                outcomes: Vec::new(),
                alive: true,
            }
        })
        .collect();

    let mut last_leader = None;
    for tick in 0..600 {
        let now = clock.now();
        if tick == 200 {
            println!("t={now}ms: the primary's machine dies");
            if let Some(i) = nodes.iter().position(|n| n.pg.primary && n.pg.running) {
                nodes[i].alive = false;
            }
        }
        for i in 0..nodes.len() {
            if !nodes[i].alive {
                continue;
            }
            // Peers answer with the status of their last step.
            let peers = nodes
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, p)| PeerReport {
                    name: p.cfg.name.clone(),
                    status: p.alive.then(|| p.status.peer_view(p.pg.running)),
                })
                .collect();
            let n = &mut nodes[i];
            let obs = n.observe(peers);
            let decision = step(&n.cfg, &n.memory, &obs, now);
            n.memory = decision.memory;
            n.status = decision.status;
            n.execute(decision.actions);
        }
        let leader = nodes.iter().find(|n| n.alive && n.pg.primary && n.pg.running).map(|n| n.cfg.name.clone());
        if leader != last_leader {
            println!("t={now}ms: primary is now {leader:?}");
            last_leader = leader;
        }
        // A real shell sleeps until the earliest `wake_within` or a DCS/PostgreSQL event.
        clock.advance(100);
    }
}
