//! proptest strategies for random configs, memories and observations of one node in a
//! small cluster (n1..n5). They are deliberately loose: every field is drawn with some
//! correlation to the others (a lease for the current record, outcomes for pending ids)
//! so that the interesting branches of [`crate::step`] are reached, but any combination is
//! possible, including contradictory ones, because the core must never panic.

use crate::config::{ClusterSettings, Config, SyncMode};
use crate::dcs::{
    ClusterView, CorruptKey, DcsError, FailsafeMember, FailsafeRecord, InitializeRecord, Key, LeaderRecord, LeaseGrant,
    LeaseModel, MemberRecord, MemberRole, StatusRecord, SwitchoverKind, SwitchoverRequest, SyncRecord,
};
use crate::history::{Fork, ForkCause, History, TimelineSwitch};
use crate::memory::{
    FailsafeAck, HeldLease, LeaseOp, LeaseOpKind, Memory, Pending, PgOpKind, Seen, SwitchoverPhase, SwitchoverProgress,
    SyncAdd,
};
use crate::observation::{
    DataDir, Done, Failure, GuardState, LocalRequests, Observation, Outcome, PeerReport, PgObservation, StandbyState,
    SyncStandbys,
};
use crate::status::{ElectionReport, PeerStatus};
use crate::types::{Lsn, Millis, NodeName, OpId, Tags, Term, Timeline, Version, Versioned, WalPosition};
use proptest::prelude::*;
use std::sync::Arc;

/// Names used by the strategies.
pub const NAMES: [&str; 5] = ["n1", "n2", "n3", "n4", "n5"];
const SYSID: u64 = 42;

/// Inputs of one step.
#[derive(Clone, Debug)]
pub struct StepInput {
    /// Config.
    pub cfg: Config,
    /// Memory.
    pub mem: Memory,
    /// Observation.
    pub obs: Observation,
    /// Clock.
    pub now: Millis,
}

fn name() -> impl Strategy<Value = NodeName> {
    prop::sample::select(&NAMES[..]).prop_map(String::from)
}

fn lsn() -> impl Strategy<Value = Lsn> {
    prop_oneof![(0u64..64).prop_map(|x| Lsn(0x500_0000 + x * 0x40)), any::<u64>().prop_map(Lsn)]
}

fn timeline() -> impl Strategy<Value = Timeline> {
    (1u32..4).prop_map(Timeline)
}

fn tags() -> impl Strategy<Value = Tags> {
    (prop::bool::weighted(0.15), 0u32..3, any::<bool>(), prop::bool::weighted(0.15), prop::bool::weighted(0.2))
        .prop_map(|(nofailover, failover_priority, noloadbalance, nosync, clonefrom)| Tags {
            nofailover,
            failover_priority,
            noloadbalance,
            nosync,
            clonefrom,
        })
}

/// Valid cluster settings (they pass [`ClusterSettings::validate`] with default safety).
pub fn settings() -> impl Strategy<Value = ClusterSettings> {
    (
        prop::sample::select(vec![(10_000u64, 1_000u64, 1_000u64), (30_000, 5_000, 5_000), (6_000, 500, 500)]),
        prop_oneof![Just(SyncMode::Off), Just(SyncMode::On), Just(SyncMode::Strict)],
        1u32..3,
        any::<bool>(),
        prop::bool::weighted(0.2),
        prop::sample::select(vec![0u64, 1 << 20, u64::MAX]),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |((ttl, loop_wait, retry_timeout), synchronous_mode, n, failsafe_mode, paused, max_lag, standby)| {
                ClusterSettings {
                    ttl,
                    loop_wait,
                    retry_timeout,
                    maximum_lag_on_failover: max_lag,
                    synchronous_mode,
                    synchronous_node_count: n,
                    failsafe_mode,
                    paused,
                    primary_start_timeout: ttl * 2,
                    primary_hang_timeout: ttl,
                    switchover_timeout: ttl,
                    standby_cluster: standby.then(|| crate::config::StandbyCluster {
                        pg_url: "host=upstream port=5432".into(),
                        ..Default::default()
                    }),
                }
            },
        )
}

/// A config for one of [`NAMES`].
pub fn config() -> impl Strategy<Value = Config> {
    (name(), tags(), settings(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(n, tags, defaults, require_guard, use_rewind, reclone)| {
            let mut c = Config::new(n.clone());
            c.api_url = format!("http://{n}:8008");
            c.tags = tags;
            c.defaults = defaults;
            c.require_guard = require_guard;
            c.use_rewind = use_rewind;
            c.reclone_on_rewind_failure = reclone;
            c
        },
    )
}

fn pg() -> impl Strategy<Value = PgObservation> {
    (
        prop_oneof![
            1 => Just(DataDir::Empty),
            1 => Just(DataDir::Unreadable),
            6 => Just(DataDir::Present { system_id: SYSID }),
            1 => Just(DataDir::Present { system_id: 99 })
        ],
        any::<bool>(),
        prop::bool::weighted(0.85),
        prop::option::weighted(0.9, any::<bool>()),
        timeline(),
        prop::collection::vec((timeline(), lsn()).prop_map(|(timeline, lsn)| TimelineSwitch { timeline, lsn }), 0..3),
        (lsn(), lsn()),
        (prop::option::of(name()), any::<bool>()),
        prop_oneof![
            Just(SyncStandbys::Off),
            Just(SyncStandbys::Block),
            prop::collection::vec(name(), 1..3).prop_map(SyncStandbys::First)
        ],
        prop::collection::vec(
            (name(), lsn(), prop::bool::weighted(0.8)).prop_map(|(name, flush_lsn, streaming)| StandbyState {
                name,
                flush_lsn,
                streaming,
            }),
            0..4,
        ),
        prop::collection::vec(name(), 0..3),
        // One in ten holds a history file beyond its timeline (a promotion that died).
        (any::<bool>(), any::<bool>(), prop::option::weighted(0.1, timeline())),
    )
        .prop_map(
            |(
                data,
                running,
                responsive,
                in_recovery,
                timeline,
                history,
                (flush_lsn, replay_lsn),
                (upstream, streaming),
                sync_standbys,
                standbys,
                slots,
                (rewind_capable, pending_restart, newest_timeline),
            )| PgObservation {
                data,
                running,
                responsive,
                in_recovery,
                timeline,
                history,
                flush_lsn,
                replay_lsn,
                upstream,
                streaming,
                sync_standbys,
                standbys,
                slots,
                rewind_capable,
                pending_restart,
                newest_timeline: newest_timeline.unwrap_or_default(),
            },
        )
}

fn member() -> impl Strategy<Value = Versioned<Arc<MemberRecord>>> {
    (
        name(),
        prop_oneof![
            Just(MemberRole::Primary),
            Just(MemberRole::Replica),
            Just(MemberRole::Candidate),
            Just(MemberRole::Stopped)
        ],
        tags(),
        lsn(),
        0u64..50,
        prop::option::of((30u64..36).prop_map(Version)),
        // Members of a rolling upgrade: from before versioning (0), 1, or this build's.
        0..=crate::SCHEMA,
    )
        .prop_map(|(name, role, tags, lsn, v, applied, schema)| Versioned {
            version: Version(100 + v),
            value: Arc::new(MemberRecord {
                api_url: format!("http://{name}:8008"),
                name,
                role,
                running: role != MemberRole::Stopped,
                timeline: Timeline(1),
                lsn,
                tags,
                applied_config: applied,
                schema,
                ..Default::default()
            }),
        })
}

fn fork() -> impl Strategy<Value = Fork> {
    (timeline(), lsn(), timeline(), 1u64..6, name()).prop_map(|(parent, lsn, t, term, node)| Fork {
        parent,
        lsn,
        timeline: Timeline(parent.0 + t.0),
        term: Term(term),
        node,
        cause: ForkCause::Failover,
        wall_time_ms: 0,
    })
}

fn view(now: Millis) -> impl Strategy<Value = ClusterView> {
    (
        (prop::bool::weighted(0.8), 1u64..6, prop::option::weighted(0.75, (name(), 1u64..6, 1u64..50))),
        prop::collection::vec(member(), 0..5),
        prop::option::weighted(0.3, settings()),
        prop::option::weighted(
            0.25,
            (
                any::<bool>(),
                prop::option::of(name()),
                prop::option::of(name()),
                prop::option::weighted(0.2, Just(1u64)),
            ),
        ),
        prop::option::weighted(0.5, (name(), 1u64..6, prop::collection::vec(name(), 0..3))),
        prop::option::weighted(0.4, prop::collection::vec(fork(), 0..3)),
        prop::option::weighted(0.7, (name(), lsn())),
        prop::option::weighted(0.9, prop_oneof![8 => Just(SYSID), 1 => Just(99u64)]),
        prop::option::weighted(0.3, prop::collection::vec(name(), 1..4)),
        prop::bool::weighted(0.05),
    )
        .prop_map(
            move |(
                (store_expiry, term, leader),
                mut members,
                config,
                switchover,
                sync,
                history,
                status,
                init,
                fs,
                corrupt,
            )| {
                members.sort_by(|a, b| a.value.name.cmp(&b.value.name));
                members.dedup_by(|a, b| a.value.name == b.value.name);
                let leader = leader.map(|(holder, t, v)| Versioned {
                    version: Version(v),
                    value: LeaderRecord { holder, term: Term(t), ttl: 10_000 },
                });
                let durable = leader.as_ref().map_or(Term(term), |l| l.value.term.max(Term(term)));
                ClusterView {
                    received_at: now,
                    lease_model: if store_expiry { LeaseModel::StoreExpiry } else { LeaseModel::ObserverClock },
                    term: durable,
                    leader,
                    members,
                    config: config.map(|c| Versioned { version: Version(34), value: c }),
                    switchover: switchover.map(|(failover, from, to, at)| Versioned {
                        version: Version(33),
                        value: SwitchoverRequest {
                            kind: if failover { SwitchoverKind::Failover } else { SwitchoverKind::Switchover },
                            from,
                            to,
                            at_wall_ms: at,
                        },
                    }),
                    sync: sync.map(|(leader, t, members)| Versioned {
                        version: Version(31),
                        value: SyncRecord { leader, term: Term(t), members: members.into() },
                    }),
                    history: history.map(|forks| Versioned { version: Version(32), value: History::new(forks) }),
                    status: status.map(|(leader, lsn)| Versioned {
                        version: Version(30),
                        value: StatusRecord { leader, term: Term(term), timeline: Timeline(1), lsn },
                    }),
                    initialize: init.map(|system_id| Versioned {
                        version: Version(2),
                        value: InitializeRecord { system_id, base_timeline: Timeline(1), standby: false },
                    }),
                    failsafe: fs.map(|names| Versioned {
                        version: Version(35),
                        value: FailsafeRecord {
                            members: names
                                .into_iter()
                                .map(|n| FailsafeMember { api_url: format!("http://{n}:8008"), name: n })
                                .collect::<Vec<_>>()
                                .into(),
                        },
                    }),
                    corrupt: if corrupt {
                        vec![CorruptKey { key: Key::Leader, version: Version(77), reason: "garbage".into() }]
                    } else {
                        Vec::new()
                    },
                    events: Vec::new(),
                }
            },
        )
}

fn peer() -> impl Strategy<Value = PeerReport> {
    (
        name(),
        prop::option::weighted(
            0.8,
            (
                prop_oneof![Just(MemberRole::Replica), Just(MemberRole::Candidate), Just(MemberRole::Primary)],
                any::<bool>(),
                lsn(),
                any::<bool>(),
                prop::option::of((any::<bool>(), any::<bool>(), 0u32..3)),
            ),
        ),
    )
        .prop_map(|(name, status)| PeerReport {
            name,
            status: status.map(|(role, running, lsn, can_lead, election)| {
                let position = WalPosition { timeline: Timeline(1), lsn };
                PeerStatus {
                    replayed: Lsn(0),
                    role,
                    term: Term(3),
                    running,
                    position,
                    can_lead,
                    election: election.map(|(settled, eligible, priority)| ElectionReport {
                        position,
                        settled,
                        priority,
                        eligible,
                    }),
                }
            }),
        })
}

fn pg_kind() -> impl Strategy<Value = PgOpKind> {
    prop::sample::select(vec![
        PgOpKind::Initdb,
        PgOpKind::Clone,
        PgOpKind::Rewind,
        PgOpKind::StartPrimary,
        PgOpKind::StartReplica,
        PgOpKind::StopFast,
        PgOpKind::StopImmediate,
        PgOpKind::Promote,
        PgOpKind::Checkpoint,
    ])
}

fn memory(now: Millis, leader: Option<(NodeName, Term, Version)>) -> impl Strategy<Value = Memory> {
    (
        prop::option::weighted(0.5, (0u64..20_000, any::<bool>())),
        prop::option::weighted(0.2, (1u64..4, prop::sample::select(vec![LeaseOpKind::Acquire, LeaseOpKind::Renew]))),
        prop::option::weighted(0.2, (pg_kind(), 0u64..100_000)),
        prop::option::weighted(0.2, 0u64..20_000),
        prop::option::weighted(
            0.1,
            (
                name(),
                prop::sample::select(vec![
                    SwitchoverPhase::Checkpoint,
                    SwitchoverPhase::Stopping,
                    SwitchoverPhase::AwaitCandidate,
                ]),
                0u64..20_000,
            ),
        ),
        prop::option::weighted(0.15, (name(), prop::option::of(lsn()))),
        prop::option::weighted(0.1, 0u64..20_000),
        prop::option::weighted(0.1, 0u64..20_000),
        (
            prop::option::weighted(0.1, lsn()),
            any::<bool>(),
            prop::option::weighted(0.1, 0u64..30_000),
            prop::bool::weighted(0.1),
        ),
        prop::option::weighted(0.2, (0u64..30_000, any::<bool>())),
    )
        .prop_map(
            move |(
                lease,
                lease_op,
                pending,
                election,
                switchover,
                sync_add,
                fs_until,
                fs_ack,
                (catchup, rewind_failed, down, restarting),
                seen,
            )| {
                let mut m = Memory {
                    next_op: 10,
                    restarting,
                    started_at: Some(now.saturating_sub(age_started(now))),
                    ..Default::default()
                };
                if let (Some((age, same)), Some((_, term, version))) = (lease, &leader) {
                    let ttl = 10_000;
                    let sent_at = now.saturating_sub(age);
                    let version = if same { *version } else { Version(version.0 + 1) };
                    m.lease = Some(HeldLease { term: *term, version, sent_at, ttl, deadline: sent_at + ttl - 2_020 });
                    m.max_term = *term;
                }
                m.lease_op = lease_op.map(|(id, kind)| LeaseOp {
                    id: OpId(id),
                    kind,
                    term: leader.as_ref().map_or(Term(1), |l| l.1),
                });
                m.pending = pending.map(|(kind, age)| Pending {
                    id: OpId(5),
                    kind,
                    since: now.saturating_sub(age),
                    give_up_at: now.saturating_sub(age) + 60_000,
                });
                m.election_since = election.map(|a| now.saturating_sub(a));
                m.switchover = switchover.map(|(candidate, phase, age)| SwitchoverProgress {
                    candidate,
                    request: Version(33),
                    phase,
                    since: now.saturating_sub(age),
                });
                m.sync_add = sync_add.map(|(name, target)| SyncAdd { name, target });
                m.failsafe_until = fs_until.map(|d| now.saturating_sub(5_000) + d);
                m.failsafe_ack = fs_ack.map(|a| FailsafeAck {
                    leader: "n1".into(),
                    term: Term(3),
                    at: now.saturating_sub(a),
                    // A leader that counts with a longer ttl than this node's, at times.
                    ttl: if a % 3 == 0 { 30_000 } else { 10_000 },
                });
                m.catchup_to = catchup;
                m.rewind_failed = rewind_failed;
                m.primary_down_since = down.map(|a| now.saturating_sub(a));
                // Times remembered from before a clock step may lie in the future.
                if now % 5 == 0 {
                    m.unresponsive_since = Some(now + 7_000);
                    m.primary_down_since = m.primary_down_since.map(|t| t + 30_000);
                    m.election_since = m.election_since.map(|t| t + 30_000);
                    m.started_at = m.started_at.map(|t| t + 200_000);
                } else if now % 3 == 0 {
                    m.unresponsive_since = Some(now.saturating_sub(20_000));
                }
                m.leader_seen = seen.map(|(age, any_version)| Seen {
                    name: String::new(),
                    version: if any_version { Version(77) } else { leader.as_ref().map_or(Version(1), |l| l.2) },
                    since: now.saturating_sub(age),
                });
                m
            },
        )
}

/// Mostly long-running daemons, sometimes one that just started.
fn age_started(now: Millis) -> Millis {
    if now % 7 == 0 {
        1_000
    } else {
        100_000
    }
}

fn outcomes(now: Millis) -> impl Strategy<Value = Vec<Outcome>> {
    prop::collection::vec(
        (
            1u64..6,
            prop_oneof![
                Just(Ok(Done::Ok)),
                (0u64..3_000, prop::sample::select(vec![1_000u64, 10_000, 11_000])).prop_map(move |(age, ttl)| Ok(
                    Done::Lease(LeaseGrant { sent_at: now.saturating_sub(age), ttl, version: Version(7) })
                )),
                lsn().prop_map(|l| Ok(Done::ConsistentAt(l))),
                (0u64..3_000).prop_map(move |age| Ok(Done::FailsafeAcked { sent_at: now.saturating_sub(age) })),
                prop::sample::select(vec![
                    Failure::Failed,
                    Failure::Conflict,
                    Failure::Unavailable,
                    Failure::Indeterminate,
                    Failure::TimedOut,
                    Failure::Skipped,
                ])
                .prop_map(Err),
            ],
        )
            .prop_map(|(id, result)| Outcome { id: OpId(id), result }),
        0..3,
    )
}

/// A random step input.
pub fn step_input() -> impl Strategy<Value = StepInput> {
    (config(), 10_000u64..1_000_000)
        .prop_flat_map(|(cfg, now)| {
            let me = cfg.name.clone();
            (
                Just(cfg),
                Just(now),
                prop::bool::weighted(0.9),
                view(now),
                prop::bool::weighted(0.4),
                pg(),
                prop::collection::vec(peer(), 0..5),
                outcomes(now),
                prop_oneof![
                    4 => Just(GuardState::Disabled),
                    1 => (0u64..20_000).prop_map(move |d| GuardState::Armed { deadline: now + d - 5_000, term: Term(3) }),
                    1 => Just(GuardState::Lost)
                ],
                (any::<bool>(), prop::bool::weighted(0.1), prop::bool::weighted(0.1)),
                Just(me),
            )
        })
        .prop_flat_map(|(cfg, now, dcs_ok, mut view, lead_me, pg, peers, outcomes, guard, (due, reinit, restart), me)| {
            if lead_me {
                if let Some(l) = &mut view.leader {
                    l.value.holder = me.clone();
                }
            }
            let leader = view.leader.as_ref().map(|l| (l.value.holder.clone(), l.value.term, l.version));
            let mine = leader.clone().filter(|l| l.0 == me);
            let dcs = if dcs_ok { Ok(view) } else { Err(DcsError::Unavailable("down".into())) };
            let obs = Observation {
                pg,
                dcs,
                peers,
                outcomes,
                guard,
                requests: LocalRequests { switchover_due: due, reinitialize: reinit, restart },
                wall_time_ms: 1,
            };
            (Just(cfg), memory(now, mine), Just(obs), Just(now))
        })
        .prop_map(|(cfg, mem, obs, now)| StepInput { cfg, mem, obs, now })
        .prop_flat_map(|input| (Just(input), prop::option::weighted(0.6, 0u8..8), 0u64..6_000, name(), any::<bool>()))
        .prop_map(|(input, shape, age, other, flip)| match shape {
            Some(s) => shaped(input, s, age, other, flip),
            None => input,
        })
}

fn running_member(name: &str, role: MemberRole, version: u64) -> Versioned<Arc<MemberRecord>> {
    Versioned {
        version: Version(version),
        value: Arc::new(MemberRecord { name: name.into(), role, running: true, ..Default::default() }),
    }
}

/// Makes an input coherent around one situation, so the dangerous branches are reached
/// often; the other fields stay random.
fn shaped(mut i: StepInput, shape: u8, age: Millis, other: NodeName, flip: bool) -> StepInput {
    let me = i.cfg.name.clone();
    let now = i.now;
    let pg = &mut i.obs.pg;
    pg.data = DataDir::Present { system_id: SYSID };
    pg.timeline = Timeline(1);
    pg.history.clear();
    pg.responsive = true;
    i.mem.pending = None;
    i.mem.switchover = None;
    i.cfg.tags.nofailover = false;
    i.cfg.tags.failover_priority = i.cfg.tags.failover_priority.max(1);
    if shape != 4 && i.obs.dcs.is_err() {
        i.obs.dcs = Ok(ClusterView { received_at: now, ..Default::default() });
    }
    if let Ok(v) = &mut i.obs.dcs {
        v.initialize = Some(Versioned {
            version: Version(2),
            value: InitializeRecord { system_id: SYSID, base_timeline: Timeline(1), standby: false },
        });
        v.history = None;
        v.corrupt.clear();
        if let Some(c) = &mut v.config {
            c.value.paused = false;
        }
    }
    i.cfg.defaults.paused = false;
    let take_lease = |i: &mut StepInput| {
        let term = Term(3);
        let version = Version(40);
        if let Ok(v) = &mut i.obs.dcs {
            v.leader = Some(Versioned { version, value: LeaderRecord { holder: me.clone(), term, ttl: 10_000 } });
            v.term = v.term.max(term);
        }
        let sent_at = now.saturating_sub(age);
        i.mem.lease = Some(HeldLease { term, version, sent_at, ttl: 10_000, deadline: sent_at + 10_000 - 2_020 });
        i.mem.lease_op = None;
        i.mem.stepping_down = None;
        i.mem.max_term = i.mem.max_term.max(term);
    };
    let pg = &mut i.obs.pg;
    match shape {
        // A new leader whose PostgreSQL is a settled standby: promotion.
        0 => {
            pg.running = true;
            pg.in_recovery = Some(true);
            pg.upstream = None;
            pg.streaming = false;
            take_lease(&mut i);
        }
        // A healthy primary.
        1 => {
            pg.running = true;
            pg.in_recovery = Some(false);
            take_lease(&mut i);
        }
        // An election.
        2 => {
            pg.running = true;
            pg.in_recovery = Some(true);
            pg.upstream = None;
            pg.streaming = false;
            i.mem.lease = None;
            i.mem.catchup_to = None;
            if let Ok(v) = &mut i.obs.dcs {
                v.leader = None;
            }
        }
        // A switchover on a healthy primary.
        3 => {
            pg.running = true;
            pg.in_recovery = Some(false);
            pg.standbys.push(StandbyState { name: other.clone(), flush_lsn: pg.flush_lsn, streaming: true });
            i.obs.requests.switchover_due = true;
            i.obs.peers.push(PeerReport {
                name: other.clone(),
                status: Some(PeerStatus {
                    replayed: Lsn(0),
                    role: MemberRole::Replica,
                    term: Term(3),
                    running: true,
                    position: WalPosition { timeline: Timeline(1), lsn: i.obs.pg.flush_lsn },
                    can_lead: true,
                    election: None,
                }),
            });
            take_lease(&mut i);
            if let Ok(v) = &mut i.obs.dcs {
                if !v.members.iter().any(|m| m.value.name == other) {
                    v.members.push(running_member(&other, MemberRole::Replica, 150));
                }
                v.switchover = Some(Versioned {
                    version: Version(33),
                    value: SwitchoverRequest {
                        kind: SwitchoverKind::Switchover,
                        from: None,
                        to: flip.then(|| other.clone()),
                        at_wall_ms: None,
                    },
                });
            }
        }
        // The DCS is gone under a primary in failsafe mode.
        4 => {
            pg.running = true;
            pg.in_recovery = Some(false);
            take_lease(&mut i);
            if !flip {
                // An older lease, maybe past its deadline, with or without a failsafe round.
                if let Some(l) = &mut i.mem.lease {
                    l.sent_at = now.saturating_sub(age * 3);
                    l.deadline = l.sent_at + 10_000 - 2_020;
                }
                i.mem.failsafe_until = (age % 2 == 0).then_some(now + 3_000);
            }
            i.obs.dcs = Err(DcsError::Unavailable("down".into()));
            i.cfg.defaults.failsafe_mode = true;
            i.mem.applied = None;
            i.mem.failsafe_op = None;
            i.mem.failsafe_set = [me.as_str(), other.as_str()]
                .iter()
                .map(|n| FailsafeMember { name: n.to_string(), api_url: String::new() })
                .collect::<Vec<_>>()
                .into();
        }
        // A switchover waiting for its candidate, caught up or not.
        6 => {
            pg.running = false;
            pg.in_recovery = Some(false);
            let end = pg.flush_lsn;
            let candidate = if other == me { "n9".to_string() } else { other };
            take_lease(&mut i);
            i.mem.switchover = Some(SwitchoverProgress {
                candidate: candidate.clone(),
                request: Version(33),
                phase: SwitchoverPhase::AwaitCandidate,
                since: now.saturating_sub(age * 3),
            });
            let lsn = if flip { end } else { Lsn(end.0.saturating_sub(1)) };
            i.obs.peers.push(PeerReport {
                name: candidate,
                status: Some(PeerStatus {
                    replayed: Lsn(0),
                    role: MemberRole::Replica,
                    term: Term(3),
                    running: true,
                    position: WalPosition { timeline: Timeline(1), lsn },
                    can_lead: true,
                    election: None,
                }),
            });
            if let Ok(v) = &mut i.obs.dcs {
                v.switchover = Some(Versioned { version: Version(33), value: SwitchoverRequest::default() });
            }
        }
        // A leader whose PostgreSQL is down, with a fresh lease (no renewal due).
        7 => {
            pg.running = false;
            pg.in_recovery = Some(false);
            take_lease(&mut i);
            if let Some(l) = &mut i.mem.lease {
                l.sent_at = now.saturating_sub(age % 400);
                l.deadline = l.sent_at + 10_000 - 2_020;
            }
            i.mem.primary_down_since = None;
            i.mem.last_failure = None;
            i.mem.failures.clear();
        }
        // A replica of another leader.
        _ => {
            pg.running = flip;
            pg.in_recovery = Some(true);
            i.mem.lease = None;
            let end = pg.flush_lsn;
            pg.rewind_capable = age % 3 != 0;
            i.cfg.use_rewind = true;
            i.mem.rewind_failed = age % 5 == 0;
            i.mem.last_failure = None;
            i.mem.failures.clear();
            if let Ok(v) = &mut i.obs.dcs {
                let holder = if other == me { "n9".to_string() } else { other };
                v.members.retain(|m| m.value.name != holder);
                v.members.push(running_member(&holder, MemberRole::Primary, 160));
                v.leader = Some(Versioned {
                    version: Version(60),
                    value: LeaderRecord { holder: holder.clone(), term: Term(4), ttl: 10_000 },
                });
                if age % 2 == 0 {
                    // The new leader forked before our end of WAL: we diverged.
                    let fork = Fork {
                        parent: Timeline(1),
                        lsn: Lsn(end.0.saturating_sub(1)),
                        timeline: Timeline(2),
                        term: Term(4),
                        node: holder,
                        cause: ForkCause::Failover,
                        wall_time_ms: 0,
                    };
                    v.history = Some(Versioned { version: Version(32), value: History::new(vec![fork]) });
                }
            }
        }
    }
    i
}
