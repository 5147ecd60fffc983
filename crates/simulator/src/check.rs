//! Invariant violations and coverage counters of one run.
//!
//! The checks themselves run inside the world after every event (S1, S2 for the sync set,
//! A2 when the guard fires), when a node becomes writable (S2), takes a new term or
//! promotes (S3, T3, O4, S4 consistency, async loss bound), follows or starts (S4), writes
//! to the store (S5, T1, T2, O1, O2, F1, R7), after every step (R1 the reported role, R2
//! member records rewritten only on change, R5 paced retries, R8 no needless rebuild, T4
//! the clone source, O3 requests cleared with a reason, W1), and in the liveness phase
//! and the final phases after it (L1, R3, A1, O3, O5, F2; `run.rs`). `docs/simulator.md`
//! says what each one promises.

use crate::params::Params;
use hacore::Millis;
use std::collections::BTreeMap;

/// Coverage a sweep must reach: each counter must be non-zero in at least this share of
/// the runs (percent). Set at about half of what a 10,000-seed sweep reached (see
/// docs/simulator.md), so that a timid nemesis, or a change that stops a dangerous path
/// from being exercised, fails `simulator sweep --min-coverage`.
pub const REQUIRED_COVERAGE: &[(&str, u32)] = &[
    ("failover", 45),
    ("switchover", 40),
    ("manual_failover", 15),
    ("switchover_aborted", 10),
    ("self_fencing", 10),
    ("primary_fenced", 45),
    ("guard_fired", 45),
    ("fence_executed", 25),
    ("failsafe_held_primary", 20),
    ("primary_rode_out_dcs_trouble", 45),
    ("rewind", 45),
    ("reclone", 30),
    ("election_lost_to_more_advanced", 35),
    ("ineligible_diverged", 15),
    ("ineligible_lagging", 1),
    ("dcs_indeterminate", 45),
    ("dcs_write_outcome_unknown", 40),
    ("hung_primary_stepped_down", 20),
    ("primary_start_gave_up", 3),
    ("failover_lost_async_writes", 20),
    ("pg_operation_failed", 20),
    ("fault_pause_longer_than_ttl", 25),
    ("writes_unknown", 25),
    ("restart", 30),
    ("reinitialized", 25),
    ("switchover_rejected", 35),
    ("switchover_waited_for_its_time", 20),
    ("scheduled_switchover_done", 20),
    ("ineligible_nofailover", 15),
    ("ineligible_not_synchronous", 20),
    ("clone_from_clonefrom", 10),
    ("failsafe_round_acked", 20),
    ("operator_cancel_switchover", 15),
    ("final_start_fails", 45),
    ("fault_bad_config", 30),
    ("config_rejected", 30),
    ("final_paused_failover_unconfirmed", 80),
    ("standby_in_catchup_seen", 80),
    ("fault_foreign_data", 15),
    ("system_id_mismatch", 15),
    ("final_paused_failover_fence_fails", 5),
    ("final_slow_start", 80),
    ("final_store_wiped_live", 80),
    ("promotion_died_midway", 3),
    ("fault_corrupt_history", 20),
    ("history_rebuilt", 10),
];

/// What one run found.
#[derive(Clone, Debug, Default)]
pub struct Checker {
    /// (time, description) of every violation, in order (the first few).
    pub violations: Vec<(Millis, String)>,
    /// How many violations there were in all.
    pub violation_count: u64,
    /// Coverage counters.
    pub counters: BTreeMap<&'static str, u64>,
    /// Steps taken by all nodes.
    pub steps: u64,
    /// Acknowledged writes lost at failovers (asynchronous mode only; reported, bounded).
    pub async_lost: u64,
}

impl Checker {
    /// A checker for a run with parameters `p`.
    pub fn new(_p: &Params) -> Checker {
        Checker::default()
    }

    /// Records a violation; returns whether it was kept (the first 20 are).
    pub fn violation(&mut self, t: Millis, what: String) -> bool {
        self.violation_count += 1;
        if self.violations.len() < 20 {
            self.violations.push((t, what));
            true
        } else {
            false
        }
    }

    /// Increments a coverage counter.
    pub fn count(&mut self, what: &'static str) {
        *self.counters.entry(what).or_default() += 1;
    }

    /// Adds to a coverage counter (nothing is recorded for 0).
    pub fn add(&mut self, what: &'static str, n: u64) {
        if n > 0 {
            *self.counters.entry(what).or_default() += n;
        }
    }

    /// A counter's value.
    pub fn get(&self, what: &str) -> u64 {
        self.counters.get(what).copied().unwrap_or(0)
    }

    /// Whether the run was clean.
    pub fn ok(&self) -> bool {
        self.violation_count == 0
    }
}

/// R1, the role a node reports (its REST status, its member record) is true to what its
/// core saw in that step: load balancers route writes by `/primary`, and callbacks move
/// virtual IPs on the reported role. Checked after every step against the observation the
/// step was given and the memory it returned; returns what is wrong, if anything.
///
/// - a reported primary is running, not known to be in recovery, holds a writable
///   deadline, and is not building its data directory (initdb, clone);
/// - a server running out of recovery under this node's own valid lease is reported as
///   the primary, unless it is being fenced or its data directory is being built;
/// - a reported replica or standby leader is a running server in recovery; a running
///   server in recovery is reported as one, unless it is a candidate, fencing or building;
/// - a reported candidate is in an election, a fencing node has an immediate stop in
///   flight, and an uninitialized one has no data or is building it; a node with no data
///   and no server running is reported uninitialized, not stopped, and so is one building
///   its data (initdb, clone), whatever its old data or server shows.
pub fn reported_role(
    name: &str,
    pg: &hacore::observation::PgObservation,
    status: &hacore::NodeStatus,
    mem: &hacore::Memory,
) -> Option<String> {
    use hacore::dcs::MemberRole as R;
    use hacore::memory::PgOpKind as K;
    let pending = mem.pending.map(|p| p.kind);
    let building = matches!(pending, Some(K::Initdb | K::Clone));
    let fencing = pg.running && pending == Some(K::StopImmediate);
    let standby = pg.running && pg.in_recovery == Some(true);
    let leads_writable = pg.running
        && pg.in_recovery == Some(false)
        && status.writable_until.is_some()
        && status.leader.as_deref() == Some(name);
    let role = status.role;
    let wrong = match role {
        R::Primary => !pg.maybe_writable() || status.writable_until.is_none() || building,
        R::Replica | R::StandbyLeader => !standby,
        R::Candidate => mem.election_since.is_none(),
        R::Fencing => !fencing,
        R::Uninitialized => !building && (pg.system_id().is_some() || pg.running),
        R::Stopped => pg.system_id().is_none() && !pg.running,
    } || (building && role != R::Uninitialized)
        || (leads_writable && !fencing && !building && role != R::Primary)
        || (standby && !fencing && !building && !matches!(role, R::Replica | R::StandbyLeader | R::Candidate));
    wrong.then(|| {
        format!(
            "R1: {name} reports {role:?} with PostgreSQL running={} in_recovery={:?}, writable until {:?}, \
             leader {:?}, pending {pending:?}",
            pg.running, pg.in_recovery, status.writable_until, status.leader
        )
    })
}

/// R1 for the figures a node reports (`hashell list`, `GET /patroni`, the peer API): the
/// WAL position is its server's, and the replayed LSN is its server's replay position
/// while in recovery and zero otherwise (a primary replays nothing: monitoring computes
/// replay lag from it).
pub fn reported_figures(name: &str, pg: &hacore::PgObservation, status: &hacore::NodeStatus) -> Option<String> {
    let replayed = if pg.in_recovery == Some(true) { pg.replay_lsn } else { hacore::types::Lsn(0) };
    (status.position != pg.position() || status.replayed != replayed).then(|| {
        format!(
            "R1: {name} reports WAL at {:?} replayed to {:?}; its server is at {:?}, in_recovery={:?}, replayed to {:?}",
            status.position,
            status.replayed,
            pg.position(),
            pg.in_recovery,
            pg.replay_lsn
        )
    })
}

/// A2 for the lease: a step that learns the store refused its renewal (the record is no
/// longer what it renewed), or that its release or transfer of the record applied, and
/// cannot read the store keeps no writable deadline: PostgreSQL may not write on a lease
/// given up or lost. (With a read, a record still showing this node's term may be taken
/// up again at the guard's deadline: a refusal caused by its own renewal whose reply was
/// lost.)
pub fn lease_given_up(
    name: &str,
    pre: &hacore::Memory,
    obs: &hacore::Observation,
    d: &hacore::Decision,
) -> Option<String> {
    use hacore::memory::LeaseOpKind as K;
    use hacore::observation::Failure;
    let op = pre.lease_op.filter(|_| obs.dcs.is_err())?;
    let result = &obs.outcomes.iter().find(|o| o.id == op.id)?.result;
    let gone = match (op.kind, result) {
        (K::Renew, Err(Failure::Conflict)) => "its renewal was refused",
        (K::Release, Ok(_)) => "it released the leader record",
        (K::Transfer, Ok(_)) => "it handed the leader record over",
        _ => return None,
    };
    d.status
        .writable_until
        .map(|until| format!("A2: {name} stays writable until {until} in the step that learns {gone}"))
}

/// R1 for `can_lead` (the peer API; a switchover picks its candidate by it): a node that
/// says it could lead has tags that let it, and data of the cluster its read shows.
pub fn reported_can_lead(
    name: &str,
    cfg: &hacore::Config,
    obs: &hacore::Observation,
    status: &hacore::NodeStatus,
) -> Option<String> {
    if !status.can_lead {
        return None;
    }
    let init = obs.dcs.as_ref().ok().map(|v| v.initialize.as_ref().map(|i| i.value.system_id));
    let data_ok = match init {
        Some(None) => true,
        Some(Some(id)) => obs.pg.system_id() == Some(id),
        None => false,
    };
    (!cfg.tags.can_lead() || !data_ok).then(|| {
        format!(
            "R1: {name} reports it could lead with tags {:?}, system id {:?}, the cluster's {init:?}",
            cfg.tags,
            obs.pg.system_id()
        )
    })
}

/// R2 for PostgreSQL's settings: a step never sets `synchronous_standby_names` to the
/// value the observation it decided on already shows (each change is a reload).
pub fn sync_setting_rewrite(
    name: &str,
    pg: &hacore::PgObservation,
    actions: &[hacore::action::Action],
) -> Option<String> {
    actions.iter().find_map(|a| match a {
        hacore::action::Action::SetSyncStandbys(s) if *s == pg.sync_standbys => {
            Some(format!("R2: {name} sets synchronous_standby_names to {s:?}, which it already is"))
        }
        _ => None,
    })
}

/// W2, a synchronous standby is one that streams: a step adds to
/// `synchronous_standby_names` only standbys its observation shows streaming. PostgreSQL
/// counts a WAL sender still in `catchup` as no synchronous standby at all, so naming one
/// would hold every commit until it caught up.
pub fn sync_adds_streaming(
    name: &str,
    pg: &hacore::PgObservation,
    actions: &[hacore::action::Action],
) -> Option<String> {
    actions.iter().find_map(|a| match a {
        hacore::action::Action::SetSyncStandbys(s) => s
            .names()
            .iter()
            .filter(|n| !pg.sync_standbys.names().contains(n))
            .find(|n| !pg.standbys.iter().any(|st| st.name == **n && st.streaming))
            .map(|n| format!("W2: {name} adds {n}, which is not streaming, to synchronous_standby_names")),
        _ => None,
    })
}

/// S2's order for the synchronous set: a leader publishes a standby in the sync record
/// only once PostgreSQL already names it in `synchronous_standby_names` (the observation
/// its step decided on shows it). The record says who holds every acknowledged commit;
/// published before PostgreSQL waits for the standby, it would name one that may lack
/// commits acknowledged meanwhile, and a failover to it would lose them.
pub fn sync_published_before_named(
    name: &str,
    obs: &hacore::Observation,
    actions: &[hacore::action::Action],
) -> Option<String> {
    use hacore::dcs::{DcsOp, Value};
    let view = obs.dcs.as_ref().ok()?;
    let published: &[String] = view.sync.as_ref().filter(|s| s.value.leader == name).map_or(&[], |s| &s.value.members);
    actions.iter().find_map(|a| match a {
        hacore::action::Action::Dcs { op: DcsOp::LeaderWrite { writes, .. }, .. } => {
            writes.iter().find_map(|w| match &w.value {
                Some(Value::Sync(r)) if r.leader == name => r
                    .members
                    .iter()
                    .filter(|m| !published.contains(m))
                    .find(|m| !obs.pg.sync_standbys.names().contains(m))
                    .map(|m| {
                        format!("S2: {name} publishes {m} as synchronous before synchronous_standby_names names it")
                    }),
                _ => None,
            })
        }
        _ => None,
    })
}

/// R2, member records are rewritten only when they change materially: a step never
/// publishes a record that the view it decided on already holds with the same role,
/// timeline, tags, reason, ... (LSNs aside). An idle cluster's store writes are then the
/// leases and the leader's status alone, where Patroni rewrites every member every loop.
pub fn member_rewrite(
    name: &str,
    dcs: &Result<hacore::dcs::ClusterView, hacore::DcsError>,
    actions: &[hacore::action::Action],
) -> Option<String> {
    let seen = dcs.as_ref().ok()?.member(name)?;
    actions.iter().find_map(|a| match a {
        hacore::action::Action::Dcs { op: hacore::dcs::DcsOp::PublishMember(rec), .. }
            if seen.value.same_material(rec) =>
        {
            Some(format!("R2: {name} rewrites its member record unchanged ({:?}, {:?})", rec.role, rec.reason))
        }
        _ => None,
    })
}

/// T4, the clone source: a node that builds its data (a new member, or one asked to
/// reinitialize) clones from a running replica tagged `clonefrom` when the view it decided
/// on lists one (unless it is a published synchronous standby), else from the leader, never from itself or a node the view does not show
/// as a source. Checked on every `Clone` a step issues; returns what is wrong, if anything.
pub fn clone_source(name: &str, obs: &hacore::Observation, actions: &[hacore::action::Action]) -> Option<String> {
    use hacore::dcs::MemberRole;
    let view = obs.dcs.as_ref().ok()?;
    let fresh = obs.pg.system_id().is_none() || obs.requests.reinitialize;
    let from = actions.iter().find_map(|a| match a {
        hacore::action::Action::Clone { from, .. } if from != hacore::UPSTREAM => Some(from),
        _ => None,
    })?;
    if !fresh {
        return None; // a diverged node's re-clone copies the leader (checked by S4)
    }
    let preferred: Vec<&str> = view
        .members
        .iter()
        .filter(|m| {
            m.value.tags.clonefrom && m.value.name != name && m.value.running && m.value.role == MemberRole::Replica
        })
        .map(|m| m.value.name.as_str())
        .collect();
    let leader = view.leader.as_ref().map(|l| l.value.holder.as_str());
    // A published synchronous standby must hold every acknowledged commit (S2): a replica
    // may lack some, so it copies the leader.
    let sync_member = view.sync.as_ref().is_some_and(|s| s.value.members.iter().any(|m| m == name));
    let ok = if preferred.is_empty() || sync_member {
        leader == Some(from.as_str())
    } else {
        preferred.contains(&from.as_str())
    };
    (!ok).then(|| {
        format!(
            "T4: {name} clones from {from}, but the view it decided on offers {} (clonefrom) and the leader {leader:?}",
            if preferred.is_empty() { "no replica tagged".to_string() } else { preferred.join(", ") }
        )
    })
}

/// T2, `nosync`: a standby tagged `nosync` is never named in `synchronous_standby_names`
/// (it could acknowledge commits and be required for a failover) nor published in the
/// sync record. `names` is either, of nodes named `prefix` and their number from 1;
/// returns the first tagged name.
pub fn nosync_named<'a>(tags: &[hacore::Tags], prefix: &str, names: &'a [String]) -> Option<&'a String> {
    names.iter().find(|n| {
        let i = n.strip_prefix(prefix).and_then(|k| k.parse::<usize>().ok()).and_then(|k| k.checked_sub(1));
        i.and_then(|i| tags.get(i)).is_some_and(|t| t.nosync)
    })
}

/// T3, the election's tie-breaks (S3 checks the WAL itself): a node that takes a new term
/// in an election ranks at or above every eligible candidate at the same LSN whose report
/// it had, by `failover_priority`, then the smaller name. A manual failover to a
/// named node overrides the tie-breaks, never the WAL.
pub fn election_rank(name: &str, mine: (hacore::Lsn, u32), peers: &[hacore::PeerReport]) -> Option<String> {
    peers.iter().find_map(|p| {
        let e = p.status.as_ref()?.election?;
        let theirs = (e.position.lsn, e.priority, std::cmp::Reverse(p.name.as_str()));
        let ours = (mine.0, mine.1, std::cmp::Reverse(name));
        (e.eligible && e.position.lsn == mine.0 && theirs > ours).then(|| {
            format!(
                "T3: {name} takes the lease at {} priority {} while {} (eligible) reported {} priority {}",
                mine.0, mine.1, p.name, e.position.lsn, e.priority
            )
        })
    })
}

/// T3 for a switchover that names no candidate: the leader picks the best replica that
/// qualifies (answers as a running replica that could lead, is not tagged `nofailover`,
/// streams from the leader and, in synchronous mode, is a published synchronous standby),
/// ranked as elections are: WAL position, then `failover_priority`, then the smaller name.
pub fn switchover_choice(
    name: &str,
    synchronous: bool,
    pre: &hacore::Memory,
    obs: &hacore::Observation,
    d: &hacore::Decision,
) -> Option<String> {
    let view = obs.dcs.as_ref().ok()?;
    let chosen = d.memory.switchover.as_ref()?;
    if pre.switchover.as_ref().is_some_and(|p| p.request == chosen.request) {
        return None;
    }
    let req = view.switchover.as_ref().filter(|r| r.version == chosen.request)?;
    if req.value.to.is_some() {
        return None;
    }
    fn rank<'m>(
        name: &str,
        synchronous: bool,
        obs: &hacore::Observation,
        view: &hacore::dcs::ClusterView,
        m: &'m hacore::dcs::MemberRecord,
    ) -> Option<(hacore::Lsn, u32, std::cmp::Reverse<&'m str>)> {
        let q = m.name.as_str();
        let st = obs.peer(q).and_then(|p| p.status.as_ref())?;
        let qualifies = q != name
            && m.tags.can_lead()
            && st.running
            && st.role == hacore::dcs::MemberRole::Replica
            && st.can_lead
            && obs.pg.standbys.iter().any(|s| s.name == q && s.streaming)
            && (!synchronous || view.sync.as_ref().is_some_and(|s| s.value.members.iter().any(|x| x == q)));
        qualifies.then_some((st.position.lsn, m.tags.failover_priority, std::cmp::Reverse(q)))
    }
    let ranks: Vec<_> = view.members.iter().filter_map(|m| rank(name, synchronous, obs, view, &m.value)).collect();
    let Some(mine) = ranks.iter().find(|r| r.2 .0 == chosen.candidate.as_str()) else {
        return Some(format!("T3: {name} hands a switchover to {}, which does not qualify", chosen.candidate));
    };
    let best = ranks.iter().max()?;
    (best > mine).then(|| {
        format!(
            "T3: {name} hands a switchover to {} at {} priority {} while {} qualifies at {} priority {}",
            chosen.candidate, mine.0, mine.1, best.2 .0, best.0, best.1
        )
    })
}

/// O8, a cancelled switchover stops nothing: the leader stops PostgreSQL for a switchover
/// (the fast stop after the checkpoint) only in a step whose read still shows the request.
pub fn switchover_stop_requested(
    name: &str,
    pre: &hacore::Memory,
    obs: &hacore::Observation,
    d: &hacore::Decision,
) -> Option<String> {
    use hacore::memory::SwitchoverPhase;
    let from_checkpoint = pre.switchover.as_ref().is_some_and(|p| p.phase == SwitchoverPhase::Checkpoint);
    let stopping = d.memory.switchover.as_ref().filter(|p| p.phase == SwitchoverPhase::Stopping)?;
    let stops = d
        .actions
        .iter()
        .any(|a| matches!(a, hacore::action::Action::Stop { mode: hacore::action::StopMode::Fast, .. }));
    if !from_checkpoint || !stops {
        return None;
    }
    let asked = obs.dcs.as_ref().is_ok_and(|v| v.switchover.as_ref().is_some_and(|r| r.version == stopping.request));
    (!asked).then(|| format!("O8: {name} stops PostgreSQL for a switchover its read no longer shows (cancelled)"))
}

/// O3, no operator request vanishes unexplained: the leader deletes a switchover or
/// failover request only when it is done (a manual failover to itself), or in a step whose
/// reason says it was rejected or aborted (the operator sees why in the events, `hashell
/// list` and the REST API). A served switchover is cleared by the transfer itself.
pub fn request_cleared(name: &str, obs: &hacore::Observation, d: &hacore::Decision) -> Option<String> {
    use hacore::dcs::{DcsOp, Key, SwitchoverKind};
    let deletes = d.actions.iter().any(|a| match a {
        hacore::action::Action::Dcs { op: DcsOp::LeaderWrite { writes, .. }, .. } => {
            writes.iter().any(|w| w.key == Key::Switchover && w.value.is_none())
        }
        _ => false,
    });
    if !deletes {
        return None;
    }
    let req = obs.dcs.as_ref().ok()?.switchover.as_ref()?;
    let done = req.value.kind == SwitchoverKind::Failover && req.value.to.as_deref() == Some(name);
    let said = matches!(d.status.reason, hacore::Reason::SwitchoverRejected | hacore::Reason::SwitchoverAborted);
    (!done && !said).then(|| {
        format!(
            "O3: {name} deletes the request {:?} to {:?} without serving, rejecting or aborting it (reason {})",
            req.value.kind, req.value.to, d.status.reason
        )
    })
}

/// S3, candidates wait for each other: a node takes a new term in an election only once
/// every member that could lead has reported a final position or does not answer, or
/// after a ttl of waiting for stragglers (a node that cannot campaign must not block the
/// rest). A member that answers without a report counts as not reported if it says it
/// could lead; one that reports an unsettled position, if it is eligible.
pub fn election_waited(
    name: &str,
    obs: &hacore::Observation,
    d: &hacore::Decision,
    now: hacore::Millis,
) -> Option<String> {
    let view = obs.dcs.as_ref().ok()?;
    let ttl = d.memory.applied.as_ref().map_or(view.config.as_ref().map_or(0, |c| c.value.ttl), |(_, s)| s.ttl);
    let since = d.memory.election_since?;
    if now.saturating_sub(since) >= ttl {
        return None;
    }
    let unasked = view
        .members
        .iter()
        .filter(|m| m.value.name != name && m.value.tags.can_lead() && obs.peer(&m.value.name).is_none())
        .map(|m| m.value.name.clone());
    let unsettled = obs.peers.iter().filter(|p| p.name != name).filter_map(|p| {
        let st = p.status.as_ref()?;
        let waiting = match st.election {
            None => st.can_lead,
            Some(e) => e.eligible && !e.settled,
        };
        waiting.then(|| p.name.clone())
    });
    let waiting: Vec<String> = unasked.chain(unsettled).collect();
    (!waiting.is_empty()).then(|| {
        format!(
            "S3: {name} takes the lease {} ms into the election without a final position from {}",
            now.saturating_sub(since),
            waiting.join(", ")
        )
    })
}

/// R6, the reason is true: every decision carries one (never "no decision yet" after a
/// step), and what a reason says holds in the step that gives it (`docs/reasons.md`): a
/// fence reason comes with an immediate stop in flight, `lease_expired` with a lease whose
/// deadline passed, `guard_lost` with a lost guard, `election_lost` with an eligible peer
/// at least as far, the `ineligible_*` reasons with their cause, `primary_hung` with a
/// server that does not answer, a switchover phase with a switchover under way,
/// `leader_healthy` with a writable server under a writable deadline, `replica_streaming`
/// with a streaming WAL receiver, `paused` with maintenance mode, a standby leader's
/// reasons with the upstream it replicates from named in the detail, a re-clone that
/// blames pg_rewind being unavailable with a server that cannot be rewound, a start before
/// promotion blamed on the timeline with a server out of recovery off the tip, a read
/// deemed stale by the local timeline with data of the cluster the read shows.
pub fn reason_true(
    name: &str,
    cfg: &hacore::Config,
    pre: &hacore::Memory,
    obs: &hacore::Observation,
    d: &hacore::Decision,
    now: hacore::Millis,
) -> Option<String> {
    use hacore::memory::PgOpKind as K;
    use hacore::Reason as R;
    let reason = d.status.reason;
    let pg = &obs.pg;
    let view = obs.dcs.as_ref().ok();
    let settings = d.memory.applied.as_ref().map(|(_, s)| s);
    let peer_at_least = |strictly: bool| {
        obs.peers.iter().any(|p| {
            p.status.as_ref().and_then(|s| s.election).is_some_and(|e| {
                e.eligible && if strictly { e.position.lsn > pg.flush_lsn } else { e.position.lsn >= pg.flush_lsn }
            })
        })
    };
    let holds = match reason {
        R::Starting => false,
        R::LeaseExpired | R::FencingNotLeader | R::GuardLost | R::StandbyClusterWritable
            if d.memory.pending.map(|p| p.kind) != Some(K::StopImmediate) =>
        {
            false
        }
        R::LeaseExpired => [pre.lease, d.memory.lease].iter().flatten().any(|l| now >= l.deadline),
        R::GuardLost => obs.guard == hacore::GuardState::Lost,
        R::ElectionLost => peer_at_least(false),
        R::ManualFailoverBehind => peer_at_least(true),
        R::IneligibleNoFailover => !cfg.tags.can_lead(),
        R::IneligibleLagging => match (view.and_then(|v| v.status.as_ref()), settings) {
            (Some(st), Some(s)) => pg.flush_lsn.lag_behind(st.value.lsn) > s.maximum_lag_on_failover,
            _ => true,
        },
        R::IneligibleNotSynchronous => view.is_none_or(|v| {
            !v.sync.as_ref().is_some_and(|s| s.value.leader == name || s.value.members.iter().any(|m| m == name))
        }),
        R::PrimaryHung | R::PrimaryUnresponsive => pg.running && !pg.responsive,
        R::SwitchoverCheckpoint | R::SwitchoverStopping | R::SwitchoverAwaitCandidate => {
            d.memory.switchover.is_some() || pre.switchover.is_some()
        }
        R::LeaderHealthy => pg.running && pg.in_recovery == Some(false) && d.status.writable_until.is_some(),
        R::ReplicaStreaming => pg.streaming,
        R::Paused => d.status.paused,
        // A start before promotion blamed on the timeline: a server out of recovery whose
        // timeline is not the tip the detail names.
        R::StartingForPromotion if d.status.detail.starts_with("timeline ") => {
            let t = pg.timeline;
            pg.in_recovery != Some(true) && d.status.detail != format!("timeline {t} is not the tip ({t})")
        }
        // A read dated by the local timeline: only WAL of this cluster can date it (another
        // cluster's data directory must be named as such, not blamed on the store).
        R::DcsUnavailable if d.status.detail.contains("the local WAL is on timeline") => {
            view.is_some_and(|v| v.initialize.as_ref().is_some_and(|i| pg.system_id() == Some(i.value.system_id)))
        }
        // A re-clone says whether pg_rewind could not run at all or failed.
        R::Recloning if d.status.detail.starts_with("pg_rewind unavailable") => !pg.rewind_capable || !cfg.use_rewind,
        // A standby leader says where it replicates from (what an operator checks first
        // when the standby site lags).
        R::StandbyLeaderStreaming | R::StandbyLeaderRepointing | R::StandbyLeaderReplaying
            if d.status.detail != "PostgreSQL does not answer" =>
        {
            settings.and_then(|s| s.standby_cluster.as_ref()).is_none_or(|sc| {
                let named = if sc.pg_url.is_empty() { "restore_command" } else { sc.pg_url.as_str() };
                d.status.detail.contains(named)
            })
        }
        R::WaitingForManualFailover => {
            view.and_then(|v| v.switchover.as_ref()).is_some_and(|r| r.value.to.as_deref().is_some_and(|t| t != name))
        }
        _ => true,
    };
    (!holds).then(|| format!("R6: {name} gives the reason {reason} ({}) when it does not hold", d.status.detail))
}

/// E1, the events tell what happened (`hashell events`): when the store is readable (and
/// the read used), a step
/// that learns that a long operation failed records `operation_failed`, a change of the
/// published synchronous set is recorded with the write that makes it (`sync_set_changed`),
/// and a step whose reason changes to one worth an event records that reason.
pub fn events_recorded(
    name: &str,
    pre: &hacore::Memory,
    obs: &hacore::Observation,
    d: &hacore::Decision,
) -> Option<String> {
    use hacore::dcs::{DcsOp, Value};
    use hacore::observation::Failure;
    use hacore::Reason as R;
    let view = obs.dcs.as_ref().ok()?;
    let events: Vec<R> = d
        .actions
        .iter()
        .filter_map(|a| match a {
            hacore::action::Action::Dcs { op: DcsOp::AppendEvent(e), .. } => Some(e.reason),
            _ => None,
        })
        .collect();
    let reason = d.status.reason;
    // E2, only with cause: a reason not worth an event is never recorded, and a reason
    // held since the last step is not recorded again (one event per change, not one per
    // loop) unless it is one of those recorded for what happened rather than for a state.
    let on_their_own = [
        R::ConfigRejected,
        R::HistoryCorrected,
        R::LeaseLost,
        R::MemberJoined,
        R::OperationFailed,
        R::StaleMemberRemoved,
        R::SyncSetChanged,
        R::UpstreamTimelineRecorded,
    ];
    let needless = events
        .iter()
        .find(|&&e| !e.is_event() || (e == reason && pre.last_reason == Some(reason) && !on_their_own.contains(&e)));
    if let Some(e) = needless {
        return Some(format!("E2: {name} records {e} without cause ({reason}: {})", d.status.detail));
    }
    // A read the core did not use (stale: treated as unreadable) records nothing either.
    if matches!(reason, R::DcsUnavailable | R::DcsUnavailableLeaseValid | R::FailsafeHolding) {
        return None;
    }
    let failed_op = pre.pending.is_some_and(|p| {
        obs.outcomes.iter().any(|o| o.id == p.id && matches!(o.result, Err(f) if f != Failure::Skipped))
    });
    let published = view.sync.as_ref().filter(|s| s.value.leader == name).map(|s| &s.value.members);
    let sync_change = d.actions.iter().any(|a| match a {
        hacore::action::Action::Dcs { op: DcsOp::LeaderWrite { writes, .. }, .. } => writes.iter().any(|w| {
            matches!((&w.value, published), (Some(Value::Sync(r)), Some(old))
                if r.leader == name && view.sync.as_ref().is_some_and(|s| s.value.term == r.term) && r.members != *old)
        }),
        _ => false,
    });
    let reason = d.status.reason;
    let missing = if failed_op && !events.contains(&R::OperationFailed) {
        Some("operation_failed")
    } else if sync_change && !events.contains(&R::SyncSetChanged) {
        Some("sync_set_changed")
    } else if pre.last_reason != Some(reason) && reason.is_event() && !events.contains(&reason) {
        Some("its new reason")
    } else {
        None
    };
    missing.map(|what| format!("E1: {name} does not record {what} ({reason}: {})", d.status.detail))
}
