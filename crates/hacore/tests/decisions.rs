//! Decision tables: one snapshot per situation, each reading "given ... then ...".
//! Review every snapshot as a specification: an accepted wrong snapshot is a bug.
//!
//! Numbers used throughout: now = 100000 ms, ttl 10000, loop_wait 1000, margin 2020, so a
//! lease renewed at 99500 is valid until 107480. LSN 0/5000000 is where everyone is.

use hacore::dcs::{LeaseModel, MemberRole};
use hacore::memory::{
    FailsafeAck, FailsafeRound, LeaseOp, LeaseOpKind, Pending, PgOpKind, SwitchoverPhase, SwitchoverProgress, SyncAdd,
};
use hacore::observation::SyncStandbys;
use hacore::testing::scenario::{Scenario, FAILOVER, SWITCHOVER};
use hacore::{Done, Failure, GuardState, LeaseGrant, OpId, SyncMode, Term, Version};

const AT: u64 = 0x500_0000;

macro_rules! table {
    ($name:ident, $title:expr, $scenario:expr) => {
        #[test]
        fn $name() {
            let s: Scenario = $scenario;
            insta::assert_snapshot!(stringify!($name), s.table($title));
        }
    };
}

// ----- bootstrap -----------------------------------------------------------------------

table!(bootstrap_race_empty_cluster, "no cluster yet: every node races for the lease", Scenario::node("n1"));

table!(
    bootstrap_winner_runs_initdb,
    "won the bootstrap race: initdb under the lease",
    Scenario::node("n1").leader("n1", 1, 5).holding(1, 5, 99_500)
);

table!(
    bootstrap_registers_before_start,
    "initdb done: register the system id, then start as primary",
    Scenario::node("n1").leader("n1", 1, 5).holding(1, 5, 99_500).pg_stopped(1, 0x100_0000, false).pg(|p| {
        p.data = hacore::DataDir::Present { system_id: 42 };
    })
);

table!(
    bootstrap_from_a_backup_replaying,
    "bootstrapping from a backup, its recovery promoted the server: not a primary until the bootstrap completes",
    Scenario::node("n1").leader("n1", 1, 5).holding(1, 5, 99_500).pg_primary(3, 0xA00_0000).memory(|m| {
        m.pending = Some(Pending { id: OpId(5), kind: PgOpKind::Initdb, since: 99_000, give_up_at: 400_000 });
    })
);

table!(
    bootstrap_initdb_failed_steps_down,
    "initdb failed: give the lease up so another node tries",
    Scenario::node("n1").leader("n1", 1, 5).holding(1, 5, 99_500).memory(|m| {
        m.last_failure = Some(hacore::memory::LastFailure { kind: PgOpKind::Initdb, at: 99_000 });
    })
);

table!(
    bootstrap_refuses_a_standbys_data,
    "no cluster in the store, this node holds a standby's data: it does not found the cluster (it may be behind)",
    Scenario::node("n2").pg_stopped(1, 0x300_0000, true).pg(|p| p.data = hacore::DataDir::Present { system_id: 42 })
);

table!(
    bootstrap_adopts_a_primarys_data,
    "no cluster in the store, this node holds a former primary's data: it races to found the cluster on it",
    Scenario::node("n1").pg_stopped(1, 0x300_0000, false).pg(|p| p.data = hacore::DataDir::Present { system_id: 42 })
);

table!(
    bootstrap_refuses_unreadable_data,
    "no cluster in the store, PostgreSQL's files are there but pg_control cannot be read: no initdb over them",
    Scenario::node("n1").pg(|p| p.data = hacore::DataDir::Unreadable)
);

table!(
    clone_refused_over_unreadable_data,
    "a follower whose control file cannot be read: no clone over its data (it may be fine)",
    Scenario::cluster3("n2").pg_stopped(1, AT, true).pg(|p| p.data = hacore::DataDir::Unreadable)
);

table!(
    unreadable_writable_instance_without_lease_is_fenced,
    "pg_control unreadable, PostgreSQL running and perhaps writable, no lease here: fenced all the same",
    Scenario::cluster3("n2").pg(|p| {
        p.data = hacore::DataDir::Unreadable;
        p.in_recovery = None;
        p.responsive = false;
    })
);

table!(
    bootstrap_loser_waits,
    "another node bootstraps: wait, do not clone yet",
    Scenario::node("n2").leader("n1", 1, 5).member("n1", MemberRole::Primary, 0)
);

table!(
    bootstrap_nofailover_never_initializes,
    "a nofailover node never initializes the cluster",
    Scenario::node("n3").tags(|t| t.nofailover = true)
);

table!(
    clone_once_initialized,
    "cluster initialized, no local data: clone from the leader",
    Scenario::cluster3("n2").pg_empty()
);

table!(
    clone_prefers_clonefrom_member,
    "a running replica tagged clonefrom is the preferred clone source",
    Scenario::cluster3("n2").pg_empty().member_tags("n3", |t| t.clonefrom = true)
);

table!(
    reinitializing_sync_standby_clones_from_the_leader,
    "a published synchronous standby rebuilds its data from the leader, not the clonefrom replica that may lack acknowledged commits",
    Scenario::cluster3("n2")
        .settings(|s| s.synchronous_mode = SyncMode::On)
        .sync("n1", 3, &["n2"])
        .pg_stopped(1, AT, true)
        .member_tags("n3", |t| t.clonefrom = true)
        .reinit()
);

table!(
    system_id_mismatch_refuses,
    "local data belongs to another cluster: refuse, never overwrite",
    Scenario::cluster3("n2").pg_stopped(1, AT, true).pg(|p| p.data = hacore::DataDir::Present { system_id: 99 })
);

// ----- lease ----------------------------------------------------------------------------

table!(leader_steady, "healthy leader, renewal not due: nothing to do", Scenario::cluster3("n1"));

table!(
    leader_renews_when_due,
    "healthy leader, a loop since the last renewal: renew",
    Scenario::cluster3("n1").holding(3, 40, 98_900)
);

table!(
    renewal_grant_moves_deadline,
    "a renewal succeeded: the guard gets the new deadline (send time + granted ttl - margin)",
    Scenario::cluster3("n1")
        .holding(3, 40, 98_900)
        .memory(|m| {
            m.lease_op = Some(LeaseOp { id: OpId(7), kind: LeaseOpKind::Renew, term: Term(3) });
        })
        .outcome(7, Ok(Done::Lease(LeaseGrant { sent_at: 99_900, ttl: 10_000, version: Version(40) })))
);

table!(
    renewal_with_lowered_ttl_lowers_guard_first,
    "the ttl was lowered: the renewal may shorten the store's lease the moment it applies, so the guard comes down before it is sent",
    Scenario::cluster3("n1")
        .holding(3, 40, 98_900)
        .config(|c| c.ttl = 6_000)
        .config_version(35)
);

table!(
    renewal_conflict_fences,
    "the renewal lost (another node leads now): fence at once",
    Scenario::cluster3("n1")
        .leader("n2", 4, 50)
        .holding(3, 40, 98_900)
        .memory(|m| {
            m.lease_op = Some(LeaseOp { id: OpId(7), kind: LeaseOpKind::Renew, term: Term(3) });
        })
        .outcome(7, Err(Failure::Conflict))
);

table!(
    lease_deadline_passed_fences,
    "renewals failed until the deadline passed, though the store still shows us: fence",
    Scenario::cluster3("n1").holding(3, 40, 88_000)
);

table!(
    leader_key_deleted_fences_then_competes,
    "the store deleted our leader key (lease expired there first): fence, then run for election",
    Scenario::cluster3("n1").no_leader(3)
);

table!(
    claim_after_transfer,
    "the old leader transferred the record to us: claim it with our own lease",
    Scenario::cluster3("n2").leader("n2", 4, 41)
);

table!(
    restart_with_guard_adopts_deadline,
    "daemon restarted, PostgreSQL kept running, guard holds the deadline: no fence, claim",
    Scenario::cluster3("n1")
        .memory(|m| *m = Default::default())
        .guard(GuardState::Armed { deadline: 105_000, term: Term(3) })
);

table!(
    claim_arms_the_guard_before_claiming,
    "the record names us in our term but at a version we did not write (an unknown renewal): the guard follows the lease held before the claim goes out, so a refused claim leaves it on the current deadline",
    Scenario::cluster3("n1")
        .memory(|m| {
            if let Some(l) = &mut m.lease {
                l.version = Version(39);
            }
        })
        .guard(GuardState::Armed { deadline: 104_000, term: Term(3) })
);

table!(
    claim_refused_waits_for_a_fresh_read,
    "a claim on this very read (record v40, term 3) was refused: the store changed since; claiming again on the same read would be refused again (a stale read), so wait for one that shows the change",
    Scenario::cluster3("n1")
        .memory(|m| {
            if let Some(l) = &mut m.lease {
                l.version = Version(39);
            }
            m.claim_refused = Some(Version(40 ^ 3u64.rotate_left(21)));
        })
        .guard(GuardState::Armed { deadline: 104_000, term: Term(3) })
);

table!(
    renewal_failing_defers_housekeeping,
    "the last renewal failed (the store refused it): retry it, keep the guard on the lease held, and leave the status, sync and slot housekeeping until a renewal succeeds",
    Scenario::cluster3("n1").memory(|m| {
        m.renew_failing = true;
        if let Some(l) = &mut m.lease {
            l.sent_at = 98_500;
            l.deadline = 98_500 + 10_000 - 2_020;
        }
    })
);

table!(
    restart_without_guard_fences,
    "daemon restarted with no guard: the lease cannot be proven, fence and claim",
    Scenario::cluster3("n1").memory(|m| *m = Default::default())
);

table!(
    guard_lost_fences,
    "the fencing guard is gone: losing it counts as a missed deadline",
    Scenario::cluster3("n1").guard(GuardState::Lost).cfg_require_guard()
);

// ----- following -------------------------------------------------------------------------

table!(replica_steady, "streaming replica: nothing to do", Scenario::cluster3("n2"));

table!(
    replica_repoints_to_new_leader,
    "a new leader (n3) took over: point the WAL receiver at it",
    Scenario::cluster3("n2").leader("n3", 4, 60).history(&[(1, AT, 2, 4, "n3")]).member("n3", MemberRole::Primary, AT)
);

table!(
    stopped_replica_starts,
    "standby data, PostgreSQL down: start it as a standby of the leader",
    Scenario::cluster3("n2").pg_stopped(1, AT, true)
);

table!(
    old_leader_follows_after_switchover,
    "after transferring to n2, the old leader (stopped) starts as a standby of n2",
    Scenario::cluster3("n1")
        .leader("n2", 4, 41)
        .memory(|m| m.lease = None)
        .pg_stopped(1, AT, false)
        .history(&[(1, AT, 2, 4, "n2")])
        .member("n2", MemberRole::Primary, AT)
);

table!(
    catching_up_after_rewind,
    "after a rewind, streaming but not yet past the consistency point: cannot lead yet",
    Scenario::cluster3("n2").memory(|m| m.catchup_to = Some(hacore::Lsn(AT + 0x1000))).leader_dead()
);

table!(
    rebuilt_with_no_leader_starts_to_catch_up,
    "a clone finished as the leader vanished: PostgreSQL down, its consistency point not yet \
     replayed, nobody to follow; start it as a standby of nobody so that it can replay and lead",
    Scenario::cluster3("n2")
        .memory(|m| m.catchup_to = Some(hacore::Lsn(AT + 0x1000)))
        .pg_stopped(1, AT, true)
        .leader_dead()
);

table!(
    fresh_daemon_after_an_unfinished_clone_catches_up_first,
    "the daemon restarted while it cloned (its member record still says uninitialized); the clone \
     finished without it: its consistency point is unknown, so the end of the WAL stands for it \
     and the node may not lead before it replayed that far",
    Scenario::cluster3("n2")
        .leader_dead()
        .memory(|m| *m = hacore::Memory::default())
        .pg_stopped(1, AT, true)
        .member("n2", MemberRole::Uninitialized, 0)
        .peer_candidate("n3", AT - 0x100, true, true)
);

// ----- leader's PostgreSQL down or hung ----------------------------------------------------

table!(
    leader_crash_restarts_in_place,
    "the leader's PostgreSQL crashed: restart it as primary under the lease",
    Scenario::cluster3("n1").pg_stopped(1, AT, false)
);

table!(
    leader_start_timeout_releases,
    "the leader's PostgreSQL stayed down past primary_start_timeout: release the lease",
    Scenario::cluster3("n1").pg_stopped(1, AT, false).memory(|m| m.primary_down_since = Some(75_000))
);

table!(
    leader_down_waiting_for_a_grant_arms_the_guard,
    "the leader took its lease back after a fence; PostgreSQL is down and its start waits for a fresh grant, but a start the fence superseded may still bring it up: the guard, left at the deadline that expired, follows the lease held before the renewal goes out",
    Scenario::cluster3("n1")
        .pg_stopped(1, AT, false)
        .holding(3, 40, 93_500)
        .memory(|m| m.armed_until = Some(97_000))
        .guard(GuardState::Armed { deadline: 97_000, term: Term(3) })
);

table!(
    leader_down_store_unreadable_arms_the_guard,
    "the same with the store unreadable: the guard follows the lease held before the renewal is retried",
    Scenario::cluster3("n1")
        .pg_stopped(1, AT, false)
        .holding(3, 40, 99_000)
        .memory(|m| m.armed_until = Some(97_000))
        .guard(GuardState::Armed { deadline: 97_000, term: Term(3) })
        .dcs_down()
);

table!(
    leader_pg_unresponsive_holds,
    "the leader's PostgreSQL does not answer for 5 s: keep the lease for now",
    Scenario::cluster3("n1").pg(|p| p.responsive = false).memory(|m| m.unresponsive_since = Some(95_000))
);

table!(
    leader_pg_hung_fences_then_releases,
    "no answer for primary_hang_timeout: fence first (it may still write), release once down",
    Scenario::cluster3("n1").pg(|p| p.responsive = false).memory(|m| m.unresponsive_since = Some(80_000))
);

table!(
    stepping_down_releases_once_stopped,
    "stepping down and PostgreSQL is down: release the lease",
    Scenario::cluster3("n1").pg_stopped(1, AT, false).memory(|m| m.stepping_down = Some(Term(3)))
);

// ----- election --------------------------------------------------------------------------

table!(
    election_settles_receiver_first,
    "leader gone: stop the WAL receiver so the position is final",
    Scenario::cluster3("n2").leader_dead()
);

table!(
    election_waits_for_unreported_peer,
    "settled, but n3 has not reported yet: wait",
    Scenario::cluster3("n2")
        .leader_dead()
        .pg_replica(1, AT, None, false)
        .memory(|m| m.election_since = Some(99_000))
        .without_peer("n3")
);

table!(
    election_lost_to_more_advanced,
    "n3 reports more WAL: it should take over",
    Scenario::cluster3("n2").leader_dead().pg_replica(1, AT, None, false).peer_candidate("n3", AT + 0x100, true, true)
);

table!(
    election_won_acquires,
    "every eligible peer reported and is behind: acquire term 4 (create-if-absent)",
    Scenario::cluster3("n2").leader_dead().pg_replica(1, AT, None, false).peer_candidate("n3", AT - 0x100, true, true)
);

table!(
    election_tie_goes_to_priority,
    "equal WAL, n3 has a higher failover_priority: n3 wins",
    Scenario::cluster3("n2")
        .leader_dead()
        .pg_replica(1, AT, None, false)
        .peer_candidate("n3", AT, true, true)
        .member_tags("n3", |t| t.failover_priority = 2)
        .peer_priority("n3", 2)
);

table!(
    election_tie_goes_to_name,
    "equal WAL and priority: the smaller name (n2) wins",
    Scenario::cluster3("n2").leader_dead().pg_replica(1, AT, None, false).peer_candidate("n3", AT, true, true)
);

table!(
    election_skips_unreachable_peer,
    "n3 does not answer (proved unreachable): decide without it",
    Scenario::cluster3("n2").leader_dead().pg_replica(1, AT, None, false).peer("n3", None)
);

table!(
    election_ignores_ineligible_peer_ahead,
    "n3 is ahead but ineligible (e.g. lagging, diverged): it does not block",
    Scenario::cluster3("n2").leader_dead().pg_replica(1, AT, None, false).peer_candidate("n3", AT + 0x100, true, false)
);

table!(
    election_straggler_after_ttl,
    "n3 answers but never settles; after a ttl of waiting decide (it is behind)",
    Scenario::cluster3("n2")
        .leader_dead()
        .pg_replica(1, AT, None, false)
        .peer_candidate("n3", AT - 0x100, false, true)
        .memory(|m| m.election_since = Some(89_000))
);

table!(
    election_unsettled_peer_ahead_wins,
    "n3 has not settled but is already ahead: it wins",
    Scenario::cluster3("n2").leader_dead().pg_replica(1, AT, None, false).peer_candidate("n3", AT + 1, false, true)
);

table!(
    election_nofailover_ineligible,
    "tagged nofailover: never a candidate",
    Scenario::cluster3("n2").leader_dead().tags(|t| t.nofailover = true)
);

table!(
    election_after_a_failed_start_ineligible,
    "PostgreSQL failed to start 2 s ago (the leader gave up on it): ineligible for a ttl, so that another node leads",
    Scenario::cluster3("n2").leader_dead().pg_stopped(1, AT, true).memory(|m| {
        m.failures = vec![hacore::memory::LastFailure { kind: PgOpKind::StartPrimary, at: 98_000 }];
    })
);

table!(
    election_a_ttl_after_a_failed_start_eligible,
    "PostgreSQL failed to start 11 s ago, more than a ttl: eligible again (nobody else took over)",
    Scenario::cluster3("n2").leader_dead().pg_stopped(1, AT, true).memory(|m| {
        m.failures = vec![hacore::memory::LastFailure { kind: PgOpKind::StartPrimary, at: 89_000 }];
    })
);

table!(
    election_lagging_ineligible,
    "further behind the last primary position than maximum_lag_on_failover: ineligible",
    Scenario::cluster3("n2").leader_dead().status("n1", 3, AT + 0x20_0000)
);

table!(
    election_unknown_timeline_read_is_stale,
    "local timeline 2 is unknown to the published history, which records every timeline before its promotion: the read is older than that, not used",
    Scenario::cluster3("n2").leader_dead().pg_replica(2, AT, None, false).pg_history(&[(1, 0x300_0000)])
);

table!(
    election_diverged_ineligible,
    "local timeline 2 is still not in the published history after a ttl of reads that changed: believed, and ineligible",
    Scenario::cluster3("n2").leader_dead().pg_replica(2, AT, None, false).pg_history(&[(1, 0x300_0000)]).memory(
        |m| m.stale_since = Some(hacore::memory::Seen { name: String::new(), version: Version(1), since: 85_000 })
    )
);

table!(
    stale_read_of_an_older_term_not_used,
    "the store returns term 3 but this node saw term 5 before (a lagging store member, a cache): the read is not used",
    Scenario::cluster3("n2").memory(|m| m.max_term = hacore::Term(5))
);

table!(
    foreign_data_on_a_later_timeline_is_named,
    "another cluster's data directory (a wrong volume) on a timeline the store's history does not know: \
     the read is still used (only this cluster's WAL dates it) and the node says why it does not start",
    Scenario::cluster3("n2").pg_stopped(9, 0x900_0000, true).pg(|p| {
        p.data = hacore::DataDir::Present { system_id: 4242 };
    })
);

table!(
    election_sync_not_in_set_ineligible,
    "synchronous mode and not in the published sync set: ineligible (S2)",
    Scenario::cluster3("n3").leader_dead().settings(|s| s.synchronous_mode = SyncMode::On).sync("n1", 3, &["n2"])
);

table!(
    election_sync_member_acquires_with_guard,
    "synchronous mode, in the sync set: acquire conditioned on the sync record version",
    Scenario::cluster3("n2")
        .leader_dead()
        .settings(|s| s.synchronous_mode = SyncMode::On)
        .sync("n1", 3, &["n2"])
        .pg_replica(1, AT, None, false)
        .peer_candidate("n3", AT + 0x100, true, false)
);

table!(
    election_failsafe_hold_ineligible,
    "acknowledged a failsafe primary 3 s ago: may not take the lease for a ttl",
    Scenario::cluster3("n2").leader_dead().memory(|m| {
        m.failsafe_ack = Some(FailsafeAck { leader: "n1".into(), term: Term(3), at: 97_000, ttl: 10_000 });
    })
);

table!(
    election_failsafe_hold_counts_the_leaders_ttl,
    "acknowledged a failsafe primary 15 s ago that counts with a 30 s ttl; our ttl is 10 s (lowered since): still held off",
    Scenario::cluster3("n2").leader_dead().memory(|m| {
        m.failsafe_ack = Some(FailsafeAck { leader: "n1".into(), term: Term(3), at: 85_000, ttl: 30_000 });
    })
);

table!(
    election_not_in_failsafe_set,
    "failsafe mode: only members of the failsafe set may lead after an episode",
    Scenario::cluster3("n3").leader_dead().settings(|s| s.failsafe_mode = true).failsafe(&["n1", "n2"])
);

table!(
    observer_clock_leader_aged_out,
    "DynamoDB-like store: the leader record has not changed for a ttl on our clock: free, take it by CAS",
    Scenario::cluster3("n2").observer_clock().pg_replica(1, AT, None, false).peer("n3", None).peer("n1", None).memory(
        |m| m.leader_seen = Some(hacore::memory::Seen { name: String::new(), version: Version(40), since: 89_000 })
    )
);

table!(
    observer_clock_leader_fresh,
    "DynamoDB-like store: the leader record changed recently: still held",
    Scenario::cluster3("n2").observer_clock().memory(
        |m| m.leader_seen = Some(hacore::memory::Seen { name: String::new(), version: Version(40), since: 95_000 })
    )
);

table!(
    paused_no_election,
    "paused: no election even though the leader is gone",
    Scenario::cluster3("n2").leader_dead().settings(|s| s.paused = true)
);

table!(
    corrupt_leader_record_waits,
    "the leader key holds garbage: do nothing until it has aged a ttl",
    Scenario::cluster3("n2").leader_dead().corrupt_leader(77)
);

table!(
    corrupt_leader_record_aged_replaced,
    "the garbage leader key aged a ttl unchanged: replace it by CAS on its version",
    Scenario::cluster3("n2").leader_dead().corrupt_leader(77).pg_replica(1, AT, None, false).peer("n3", None).memory(
        |m| m.leader_seen = Some(hacore::memory::Seen { name: String::new(), version: Version(77), since: 80_000 })
    )
);

table!(
    corrupt_leader_record_ages_for_the_longest_ttl_seen,
    "the garbage leader key aged this node's ttl (10 s) but not the 30 s its holder may have been granted: keep waiting",
    Scenario::cluster3("n2").leader_dead().corrupt_leader(77).pg_replica(1, AT, None, false).peer("n3", None).memory(
        |m| {
            m.leader_seen = Some(hacore::memory::Seen { name: String::new(), version: Version(77), since: 80_000 });
            m.ttl_seen = 30_000;
        }
    )
);

// ----- promotion ----------------------------------------------------------------------------

table!(
    new_leader_records_fork_then_promotes,
    "won the lease: record the fork in history, arm the guard, promote to a new timeline",
    Scenario::cluster3("n2")
        .leader("n2", 4, 61)
        .holding(4, 61, 99_900)
        .pg_replica(1, AT, None, false)
        .memory(|m| m.acquired_via = Some(hacore::ForkCause::Failover))
);

table!(
    new_leader_sync_mode_enters_sync_record,
    "synchronous mode: the new leader also writes itself into the sync record before promoting",
    Scenario::cluster3("n2")
        .leader("n2", 4, 61)
        .holding(4, 61, 99_900)
        .pg_replica(1, AT, None, false)
        .settings(|s| s.synchronous_mode = SyncMode::Strict)
        .sync("n1", 3, &["n2"])
);

table!(
    new_leader_peer_ahead_steps_down,
    "holding the lease but n3 turned out to have more WAL: do not promote, give the lease back",
    Scenario::cluster3("n2").leader("n2", 4, 61).holding(4, 61, 99_900).pg_replica(1, AT, None, false).peer_candidate(
        "n3",
        AT + 0x100,
        true,
        true
    )
);

table!(
    new_leader_receiver_still_on,
    "holding the lease (transfer) and still receiving: stop the receiver first",
    Scenario::cluster3("n2").leader("n2", 4, 61).holding(4, 61, 99_900)
);

table!(
    promote_in_flight_waits,
    "promotion in progress: keep renewing, wait",
    Scenario::cluster3("n2")
        .leader("n2", 4, 61)
        .holding(4, 61, 99_900)
        .pg_replica(1, AT, None, false)
        .history(&[(1, AT, 2, 4, "n2")])
        .memory(
            |m| m.pending = Some(Pending { id: OpId(9), kind: PgOpKind::Promote, since: 99_900, give_up_at: 159_900 })
        )
);

table!(
    fork_added_after_a_second_promotion,
    "PostgreSQL promoted again from the timeline this term's fork created (a restart on a stale view): add that fork, keep the recorded one",
    Scenario::cluster3("n2")
        .leader("n2", 4, 61)
        .holding(4, 61, 99_500)
        .pg_primary(3, AT + 0x200)
        .pg_history(&[(1, AT), (2, AT + 0x100)])
        .history(&[(1, AT, 2, 4, "n2")])
        .pg(|p| p.slots = vec!["n1".into(), "n3".into()])
);

table!(
    fork_record_corrected,
    "after promotion PostgreSQL forked at a different LSN than recorded: correct the record",
    Scenario::cluster3("n2")
        .leader("n2", 4, 61)
        .holding(4, 61, 99_500)
        .pg_primary(2, AT + 0x200)
        .pg_history(&[(1, AT + 0x80)])
        .history(&[(1, AT, 2, 4, "n2")])
        .pg(|p| p.slots = vec!["n1".into(), "n3".into()])
);

table!(
    promotion_retried_after_one_that_died_takes_the_next_timeline,
    "this term's promotion to timeline 2 died after writing 2's history file: PostgreSQL now recovers towards 2 and will fork 3 from it, so the fork 1->2 stands and the retry is recorded as 2->3 at the same point (same cause), then the promotion",
    Scenario::cluster3("n2")
        .leader("n2", 4, 61)
        .holding(4, 61, 99_900)
        .pg_replica(1, AT, None, false)
        .history(&[(1, AT, 2, 4, "n2")])
        .pg(|p| p.newest_timeline = hacore::types::Timeline(2))
        .memory(|m| m.acquired_via = Some(hacore::ForkCause::Failover))
);

table!(
    promotion_retried_on_the_recorded_timeline_adds_a_fork,
    "this term's promotion to timeline 2 got as far as timeline 2 before PostgreSQL came back \
     in recovery on it: that fork stands, and the next promotion, to 3, is recorded as one more \
     fork from 2 in the same term",
    Scenario::cluster3("n2")
        .leader("n2", 4, 61)
        .holding(4, 61, 99_900)
        .pg_replica(2, AT + 0x100, None, false)
        .pg_history(&[(1, AT)])
        .history(&[(1, AT, 2, 4, "n2")])
        .memory(|m| m.acquired_via = Some(hacore::ForkCause::Failover))
);

table!(
    leader_whose_dead_promotion_the_line_lacks_forks_from_it,
    "our promotion to timeline 2 died in term 4 after writing 2's history file; n2 then forked 3 \
     from 1 and is gone. Now leading in term 6, our WAL is along the line: the promotion forks \
     from 2, where PostgreSQL recovers towards, and that fork is recorded first",
    Scenario::cluster3("n1")
        .leader("n1", 6, 61)
        .holding(6, 61, 99_900)
        .pg_replica(1, AT, None, false)
        .pg(|p| p.newest_timeline = hacore::types::Timeline(2))
        .history(&[(1, AT, 2, 4, "n1"), (1, AT + 0x300, 3, 5, "n2")])
        .memory(|m| m.acquired_via = Some(hacore::ForkCause::Failover))
);

table!(
    stopped_standby_leader_starts_for_promotion,
    "holding the lease with a stopped standby: start it (as standby) so it can be promoted",
    Scenario::cluster3("n2").leader("n2", 4, 61).holding(4, 61, 99_900).pg_stopped(1, AT, true)
);

// ----- switchover -------------------------------------------------------------------------

table!(
    switchover_starts_with_checkpoint,
    "switchover to n2 requested: checkpoint while still writable",
    Scenario::cluster3("n1").switchover(SWITCHOVER, Some("n1"), Some("n2"))
);

table!(
    switchover_to_best_candidate,
    "switchover without a candidate: pick the most advanced healthy replica (n3)",
    Scenario::cluster3("n1").switchover(SWITCHOVER, None, None).peer_replica("n3", AT + 0x10).standby("n3", AT + 0x10)
);

table!(
    switchover_stops_after_checkpoint,
    "checkpoint done: stop fast (keep the lease)",
    Scenario::cluster3("n1")
        .switchover(SWITCHOVER, Some("n1"), Some("n2"))
        .in_switchover("n2", SwitchoverPhase::Checkpoint, 99_000)
        .outcome(12, Ok(Done::Ok))
        .memory(|m| m.pending =
            Some(Pending { id: OpId(12), kind: PgOpKind::Checkpoint, since: 99_000, give_up_at: 400_000 }))
);

table!(
    switchover_awaits_candidate,
    "stopped; n2 has not received the end of the WAL yet",
    Scenario::cluster3("n1")
        .switchover(SWITCHOVER, Some("n1"), Some("n2"))
        .in_switchover("n2", SwitchoverPhase::AwaitCandidate, 99_000)
        .pg_stopped(1, AT + 0x28, false)
        .peer_replica("n2", AT)
);

table!(
    switchover_transfers_when_caught_up,
    "n2 received the shutdown checkpoint: transfer the record with term + 1",
    Scenario::cluster3("n1")
        .switchover(SWITCHOVER, Some("n1"), Some("n2"))
        .in_switchover("n2", SwitchoverPhase::AwaitCandidate, 99_000)
        .pg_stopped(1, AT + 0x28, false)
        .peer_replica("n2", AT + 0x28)
);

table!(
    switchover_transfers_instead_of_renewing,
    "n2 caught up as a renewal falls due: the transfer goes out in its place (a store round \
     trip longer than the loop would otherwise keep a renewal always in flight, and the \
     switchover would time out)",
    Scenario::cluster3("n1")
        .switchover(SWITCHOVER, Some("n1"), Some("n2"))
        .in_switchover("n2", SwitchoverPhase::AwaitCandidate, 99_000)
        .pg_stopped(1, AT + 0x28, false)
        .holding(3, 40, 98_500)
        .peer_replica("n2", AT + 0x28)
);

table!(
    switchover_transfers_on_a_short_lease,
    "the fastest preset with a store round trip above the loop: a step comes two round trips \
     after the renewal, so less than two retry_timeouts of the lease are left, but more than \
     the one write the transfer is: it goes out instead of the renewal",
    Scenario::cluster3("n1")
        .settings(|s| {
            s.ttl = 5_000;
            s.loop_wait = 500;
            s.retry_timeout = 1_000;
        })
        .switchover(SWITCHOVER, Some("n1"), Some("n2"))
        .in_switchover("n2", SwitchoverPhase::AwaitCandidate, 99_000)
        .pg_stopped(1, AT + 0x28, false)
        .holding(3, 40, 93_520)
        .peer_replica("n2", AT + 0x28)
);

table!(
    paused_mid_switchover_keeps_renewing,
    "paused while the switchover awaits its candidate, which has caught up: nothing is handed \
     over in maintenance mode, so the renewal that gave way to the transfer goes out after all",
    Scenario::cluster3("n1")
        .settings(|s| s.paused = true)
        .switchover(SWITCHOVER, Some("n1"), Some("n2"))
        .in_switchover("n2", SwitchoverPhase::AwaitCandidate, 99_000)
        .pg_stopped(1, AT + 0x28, false)
        .holding(3, 40, 98_900)
        .peer_replica("n2", AT + 0x28)
);

table!(
    settings_kept_when_the_store_loses_them,
    "the store holds no settings (emptied under the running daemon, which started while the \
     cluster was paused and has applied its resumption since): the settings last applied stay \
     in force, not the paused ones it started from, and the leader writes them back",
    Scenario::cluster3("n1")
        .settings(|s| s.paused = true)
        .memory(|m| {
            if let Some((_, s)) = &mut m.applied {
                s.paused = false;
            }
        })
        .store(|v| v.config = None)
);

table!(
    switchover_timeout_resumes,
    "n2 did not catch up within switchover_timeout: resume as primary under the lease",
    Scenario::cluster3("n1")
        .switchover(SWITCHOVER, Some("n1"), Some("n2"))
        .in_switchover("n2", SwitchoverPhase::AwaitCandidate, 85_000)
        .pg_stopped(1, AT + 0x28, false)
        .peer_replica("n2", AT)
);

table!(
    switchover_rejected_candidate_not_streaming,
    "the named candidate is not streaming from the leader: reject and clear the request",
    Scenario::cluster3("n1").switchover(SWITCHOVER, None, Some("n3")).pg(|p| p.standbys.retain(|s| s.name != "n3"))
);

table!(
    switchover_rejected_wrong_from,
    "the request names another leader: reject and clear",
    Scenario::cluster3("n1").switchover(SWITCHOVER, Some("n3"), Some("n2"))
);

table!(
    switchover_scheduled_not_due,
    "scheduled switchover not due yet: carry on",
    Scenario::cluster3("n1").switchover(SWITCHOVER, None, Some("n2")).scheduled()
);

table!(
    switchover_sync_candidate_must_be_synchronous,
    "synchronous mode: a switchover candidate outside the sync set is rejected",
    Scenario::cluster3("n1")
        .settings(|s| s.synchronous_mode = SyncMode::On)
        .sync("n1", 3, &["n2"])
        .pg(|p| p.sync_standbys = SyncStandbys::First(vec!["n2".into()]))
        .switchover(SWITCHOVER, None, Some("n3"))
);

// ----- manual failover -----------------------------------------------------------------------

table!(
    manual_failover_named_node_acquires,
    "leader gone, operator asked for n3: n3 takes over although n2 is equally advanced",
    Scenario::cluster3("n3")
        .leader_dead()
        .pg_replica(1, AT, None, false)
        .peer_candidate("n2", AT, true, true)
        .switchover(FAILOVER, None, Some("n3"))
);

table!(
    manual_failover_others_wait,
    "leader gone, operator asked for n3: n2 does not compete",
    Scenario::cluster3("n2").leader_dead().switchover(FAILOVER, None, Some("n3"))
);

table!(
    manual_failover_behind_refused,
    "operator asked for n3 but n2 has more WAL: refuse for now (no acknowledged write lost)",
    Scenario::cluster3("n3")
        .leader_dead()
        .pg_replica(1, AT, None, false)
        .peer_candidate("n2", AT + 0x100, true, true)
        .switchover(FAILOVER, None, Some("n3"))
);

table!(
    manual_failover_paused_waits_for_old_primary,
    "paused, failover to n3 requested: wait until the old primary n1 is confirmed stopped",
    Scenario::cluster3("n3")
        .leader_dead()
        .pg_replica(1, AT, None, false)
        .settings(|s| s.paused = true)
        .switchover(FAILOVER, None, Some("n3"))
        .peer_replica("n1", AT)
        .peer("n2", None)
);

table!(
    leader_clears_done_failover_request,
    "the failover to n3 happened: the new leader clears the request",
    Scenario::cluster3("n1").switchover(FAILOVER, None, Some("n1"))
);

// ----- divergence (S4) ------------------------------------------------------------------------

table!(
    diverged_stopped_rewinds,
    "our WAL passed the fork point on the old timeline: rewind from the leader",
    Scenario::cluster3("n1")
        .leader("n2", 4, 61)
        .memory(|m| m.lease = None)
        .pg_stopped(1, AT + 0x300, false)
        .history(&[(1, AT, 2, 4, "n2")])
        .member("n2", MemberRole::Primary, AT)
);

table!(
    standby_held_by_a_dead_promotion_rewinds,
    "our promotion to timeline 2 died after writing 2's history file, and n2 then forked 3 from 1: \
     our WAL is a prefix of n2's, but PostgreSQL would recover towards 2 and never follow 3, so \
     rewind (which removes that file)",
    Scenario::cluster3("n1")
        .leader("n2", 5, 61)
        .memory(|m| m.lease = None)
        .pg_stopped(1, AT, true)
        .pg(|p| p.newest_timeline = hacore::types::Timeline(2))
        .history(&[(1, AT, 2, 4, "n1"), (1, AT + 0x300, 3, 5, "n2")])
        .member("n2", MemberRole::Primary, AT + 0x300)
);

table!(
    standby_holding_an_unrecorded_later_history_file_starts,
    "our pg_wal holds timeline 2's history file, which no fork in the history creates (an \
     upstream's, fetched before its WAL, as in a standby cluster): no promotion that died \
     left it (those are recorded first), so start as a standby",
    Scenario::cluster3("n1")
        .leader("n2", 5, 61)
        .memory(|m| m.lease = None)
        .pg_stopped(1, AT, true)
        .pg(|p| p.newest_timeline = hacore::types::Timeline(2))
        .history(&[(1, AT + 0x300, 3, 5, "n2")])
        .member("n2", MemberRole::Primary, AT + 0x300)
);

table!(
    leader_rewrites_an_undecodable_history,
    "the history key does not decode: the primary writes it again from its own timeline history \
     (conditioned on the undecodable value's version)",
    Scenario::cluster3("n1").pg_primary(3, AT).pg_history(&[(1, 0x100_0000), (2, 0x300_0000)]).corrupt_history(70)
);

table!(
    follower_holds_on_a_cyclic_history,
    "the history's newest fork goes back from timeline 2 to 1 (written by hand): nothing can be \
     judged against it, so no rewind, clone or start until the leader writes it again",
    Scenario::cluster3("n1")
        .leader("n2", 4, 61)
        .memory(|m| m.lease = None)
        .pg_stopped(1, AT + 0x300, false)
        .history(&[(1, AT, 2, 4, "n2"), (2, AT, 1, 4, "n2")])
        .member("n2", MemberRole::Primary, AT)
);

table!(
    election_refused_on_an_undecodable_history,
    "leader gone and the history key does not decode: no member can be judged on the cluster's \
     line, so nobody is promoted (a member left on an older timeline could win over acknowledged writes)",
    Scenario::cluster3("n2")
        .leader_dead()
        .pg_replica(2, AT, None, false)
        .pg_history(&[(1, 0x100_0000)])
        .peer_candidate("n3", AT - 0x100, true, true)
        .corrupt_history(70)
);

table!(
    diverged_without_rewind_reclones,
    "diverged and no wal_log_hints/checksums: re-clone",
    Scenario::cluster3("n1")
        .leader("n2", 4, 61)
        .memory(|m| m.lease = None)
        .pg_stopped(1, AT + 0x300, false)
        .pg(|p| p.rewind_capable = false)
        .history(&[(1, AT, 2, 4, "n2")])
        .member("n2", MemberRole::Primary, AT)
);

table!(
    diverged_rewind_failed_reclones,
    "pg_rewind failed: re-clone",
    Scenario::cluster3("n1")
        .leader("n2", 4, 61)
        .memory(|m| {
            m.lease = None;
            m.rewind_failed = true;
        })
        .pg_stopped(1, AT + 0x300, false)
        .history(&[(1, AT, 2, 4, "n2")])
        .member("n2", MemberRole::Primary, AT)
);

table!(
    diverged_reclone_disabled_waits,
    "pg_rewind failed and automatic re-clone disabled: wait for reinitialize",
    Scenario::cluster3("n1")
        .leader("n2", 4, 61)
        .memory(|m| {
            m.lease = None;
            m.rewind_failed = true;
        })
        .pg_stopped(1, AT + 0x300, false)
        .history(&[(1, AT, 2, 4, "n2")])
        .member("n2", MemberRole::Primary, AT)
        .no_reclone()
);

table!(
    diverged_running_replica_stops,
    "a running standby on a superseded branch: stop it to rewind",
    Scenario::cluster3("n3")
        .leader("n2", 5, 61)
        .pg_replica(2, AT + 0x900, Some("n1"), false)
        .pg_history(&[(1, 0x400_0000)])
        .history(&[(1, 0x400_0000, 2, 4, "n1"), (1, 0x300_0000, 3, 5, "n2")])
        .member("n2", MemberRole::Primary, AT)
);

table!(
    diverged_waits_for_leader_primary,
    "diverged, but the new leader is still promoting: wait before rewinding from it",
    Scenario::cluster3("n1")
        .leader("n2", 4, 61)
        .memory(|m| m.lease = None)
        .pg_stopped(1, AT + 0x300, false)
        .history(&[(1, AT, 2, 4, "n2")])
        .member("n2", MemberRole::Replica, AT)
);

// ----- synchronous replication (S2) --------------------------------------------------------------

fn sync_leader() -> Scenario {
    Scenario::cluster3("n1").settings(|s| s.synchronous_mode = SyncMode::On)
}

table!(
    sync_takes_over_stale_record,
    "synchronous mode on a leader whose sync record names an older reign: take it over empty",
    sync_leader().sync("n0", 2, &["n2"])
);

table!(
    sync_add_changes_setting_first,
    "sync set empty, n2 healthy: name it in synchronous_standby_names first",
    sync_leader().sync("n1", 3, &[])
);

table!(
    sync_add_reads_target_after_change,
    "the setting names n2 now: remember the flush LSN read after the change",
    sync_leader()
        .sync("n1", 3, &[])
        .pg(|p| p.sync_standbys = SyncStandbys::First(vec!["n2".into()]))
        .memory(|m| m.sync_add = Some(SyncAdd { name: "n2".into(), target: None }))
);

table!(
    sync_add_waits_for_flush,
    "n2 has not flushed up to the target yet: do not publish",
    sync_leader()
        .sync("n1", 3, &[])
        .pg(|p| p.sync_standbys = SyncStandbys::First(vec!["n2".into()]))
        .standby("n2", AT - 0x10)
        .memory(|m| m.sync_add = Some(SyncAdd { name: "n2".into(), target: Some(hacore::Lsn(AT)) }))
);

table!(
    sync_add_publishes_when_caught_up,
    "n2 flushed past the target: publish it in the sync set",
    sync_leader()
        .sync("n1", 3, &[])
        .pg(|p| p.sync_standbys = SyncStandbys::First(vec!["n2".into()]))
        .memory(|m| m.sync_add = Some(SyncAdd { name: "n2".into(), target: Some(hacore::Lsn(AT)) }))
);

table!(
    sync_remove_publishes_first,
    "n2 stopped streaming: remove it from the published set before touching the setting",
    sync_leader().sync("n1", 3, &["n2"]).pg(|p| {
        p.sync_standbys = SyncStandbys::First(vec!["n2".into()]);
        p.standbys.retain(|s| s.name != "n2");
    })
);

table!(
    sync_remove_then_updates_setting,
    "published set no longer has n2: now drop it from synchronous_standby_names (n3 follows next)",
    sync_leader().sync("n1", 3, &[]).pg(|p| {
        p.sync_standbys = SyncStandbys::First(vec!["n2".into()]);
        p.standbys.retain(|s| s.name != "n2");
    })
);

table!(
    sync_add_of_a_name_already_in_the_setting,
    "sync set empty, n2 possibly published (an earlier write's outcome unknown) and already named: start adding it without reloading the same setting",
    sync_leader()
        .sync("n1", 3, &[])
        .pg(|p| p.sync_standbys = SyncStandbys::First(vec!["n2".into()]))
        .memory(|m| m.sync_unsure = vec!["n2".into()])
);

table!(
    sync_strict_no_standby_blocks,
    "strict mode with no healthy standby: block writes rather than go asynchronous",
    Scenario::cluster3("n1")
        .settings(|s| s.synchronous_mode = SyncMode::Strict)
        .sync("n1", 3, &[])
        .pg(|p| p.standbys.clear())
);

table!(
    sync_steady,
    "synchronous mode steady: n2 published and named, nothing to do",
    sync_leader().sync("n1", 3, &["n2"]).pg(|p| p.sync_standbys = SyncStandbys::First(vec!["n2".into()]))
);

table!(
    sync_mode_turned_off,
    "synchronous mode turned off: clear the setting and the sync record",
    Scenario::cluster3("n1").sync("n1", 3, &["n2"]).pg(|p| p.sync_standbys = SyncStandbys::First(vec!["n2".into()]))
);

// ----- DCS outage and failsafe (S1') -----------------------------------------------------------

table!(
    dcs_down_leader_keeps_until_deadline,
    "DCS unreachable, no failsafe: retry renewal; writable only until the lease deadline",
    Scenario::cluster3("n1").holding(3, 40, 98_900).dcs_down()
);

table!(
    dcs_down_past_deadline_fences,
    "DCS unreachable past the deadline and no failsafe: fence",
    Scenario::cluster3("n1").holding(3, 40, 90_000).dcs_down()
);

table!(
    dcs_down_failsafe_pings,
    "DCS unreachable, failsafe mode: ping every member of the failsafe set",
    Scenario::cluster3("n1")
        .settings(|s| s.failsafe_mode = true)
        .failsafe(&["n1", "n2", "n3"])
        .holding(3, 40, 98_900)
        .dcs_down()
);

table!(
    failsafe_acks_extend_past_lease,
    "every failsafe member acknowledged a round sent at 99000: writable until 99000 + ttl - margin",
    Scenario::cluster3("n1")
        .settings(|s| s.failsafe_mode = true)
        .failsafe(&["n1", "n2", "n3"])
        .holding(3, 40, 91_000)
        .memory(|m| m.failsafe_op = Some(FailsafeRound { id: OpId(20), ttl: 10_000 }))
        .outcome(20, Ok(Done::FailsafeAcked { sent_at: 99_000 }))
        .dcs_down()
);

table!(
    failsafe_acks_count_the_round_ttl,
    "a round sent at 99000 asked the members to hold off for 30 s; the ttl was lowered to 10 s since: writable until 99000 + 30000 - margin",
    Scenario::cluster3("n1")
        .settings(|s| s.failsafe_mode = true)
        .failsafe(&["n1", "n2", "n3"])
        .holding(3, 40, 91_000)
        .memory(|m| m.failsafe_op = Some(FailsafeRound { id: OpId(20), ttl: 30_000 }))
        .outcome(20, Ok(Done::FailsafeAcked { sent_at: 99_000 }))
        .dcs_down()
);

table!(
    failsafe_refused_fences,
    "a failsafe member refused (it is a candidate): no extension, the lease passed: fence",
    Scenario::cluster3("n1")
        .settings(|s| s.failsafe_mode = true)
        .failsafe(&["n1", "n2", "n3"])
        .holding(3, 40, 90_000)
        .memory(|m| m.failsafe_op = Some(FailsafeRound { id: OpId(20), ttl: 10_000 }))
        .outcome(20, Err(Failure::Failed))
        .dcs_down()
);

table!(
    dcs_down_replica_waits,
    "DCS unreachable on a replica: leave PostgreSQL alone",
    Scenario::cluster3("n2").dcs_down()
);

table!(
    leader_publishes_failsafe_set,
    "failsafe mode on a healthy leader: publish the member set",
    Scenario::cluster3("n1").settings(|s| s.failsafe_mode = true)
);

// ----- pause ------------------------------------------------------------------------------------

table!(
    pause_leader_keeps_lease,
    "paused leader: renew, nothing automatic",
    Scenario::cluster3("n1").settings(|s| s.paused = true).holding(3, 40, 98_900)
);

table!(
    paused_primary_without_lease_fences,
    "paused and every member applied it, but the lease is gone: pause does not disarm fencing (a resume \
     it cannot see would let another node promote)",
    Scenario::cluster3("n1").settings(|s| s.paused = true).no_leader(3).all_applied(34).memory(|m| m.lease = None)
);

// ----- housekeeping ------------------------------------------------------------------------------

table!(
    slots_follow_members,
    "a slot for every member; an unknown slot is kept for a grace period (a member may be blipping); permanent slots kept",
    Scenario::cluster3("n1").pg(|p| p.slots = vec!["n2".into(), "old_node".into(), "cdc".into()]).permanent_slot("cdc")
);

table!(
    stale_member_removed_on_observer_store,
    "DynamoDB-like store: n3's record did not change for a ttl: the leader deletes it",
    Scenario::cluster3("n1").observer_clock().memory(|m| {
        m.members_seen = vec![
            hacore::memory::Seen { name: "n2".into(), version: Version(101), since: 99_000 },
            hacore::memory::Seen { name: "n3".into(), version: Version(102), since: 85_000 },
        ]
    })
);

table!(
    invalid_config_rejected,
    "the DCS config violates the lease arithmetic: keep the old settings, record why",
    Scenario::cluster3("n2").config(|c| c.ttl = 3_000).config_version(35)
);

table!(
    leader_writes_missing_config,
    "no config key yet: the leader writes its defaults (create-if-absent)",
    Scenario::cluster3("n1").no_config()
);

table!(
    reinitialize_clone_failed_then_start_failed_backs_off,
    "the clone failed, then a start failed: the clone still waits a loop (each kind keeps its own back-off)",
    Scenario::cluster3("n2").pg_stopped(1, AT, true).reinit().memory(|m| {
        m.last_failure = Some(hacore::memory::LastFailure { kind: PgOpKind::StartReplica, at: 99_800 });
        m.failures = vec![
            hacore::memory::LastFailure { kind: PgOpKind::Clone, at: 99_500 },
            hacore::memory::LastFailure { kind: PgOpKind::StartReplica, at: 99_800 },
        ];
    })
);

table!(
    reinitialize_clone_failed_backs_off,
    "the reinitializing clone failed half a loop ago: wait before cloning again",
    Scenario::cluster3("n2").pg_stopped(1, AT, true).reinit().memory(|m| {
        m.last_failure = Some(hacore::memory::LastFailure { kind: PgOpKind::Clone, at: 99_500 });
        m.failures = vec![hacore::memory::LastFailure { kind: PgOpKind::Clone, at: 99_500 }];
    })
);

table!(
    diverged_rewind_waits_after_a_failed_clone,
    "a clone failed half a loop ago and the node is diverged: the rewind waits a loop too (both rebuild the data)",
    Scenario::cluster3("n1")
        .leader("n2", 4, 61)
        .memory(|m| {
            m.lease = None;
            m.last_failure = Some(hacore::memory::LastFailure { kind: PgOpKind::Clone, at: 99_500 });
            m.failures = vec![hacore::memory::LastFailure { kind: PgOpKind::Clone, at: 99_500 }];
        })
        .pg_stopped(1, AT + 0x300, false)
        .history(&[(1, AT, 2, 4, "n2")])
        .member("n2", MemberRole::Primary, AT)
);

table!(
    reinitialize_requested_on_replica,
    "operator asked to reinitialize this replica: stop it, then clone",
    Scenario::cluster3("n2").reinit()
);

// ----- operator restarts ------------------------------------------------------------------------

table!(
    restart_requested_on_leader_stops_fast,
    "operator asked to restart the primary: stop fast under the lease (renewals and the guard go on)",
    Scenario::cluster3("n1").restart()
);

table!(
    restart_on_leader_starts_again_under_the_lease,
    "the restart's stop finished: start as primary again under the lease, same term",
    Scenario::cluster3("n1").pg_stopped(1, AT, false).memory(|m| m.restarting = true)
);

table!(
    restart_paused_leader_starts_again,
    "maintenance mode: the restarted primary is started again although nothing else is automatic",
    Scenario::cluster3("n1").settings(|s| s.paused = true).pg_stopped(1, AT, false).memory(|m| m.restarting = true)
);

table!(
    restart_requested_on_replica_stops_fast,
    "operator asked to restart a standby: stop it fast",
    Scenario::cluster3("n2").restart()
);

table!(
    restart_paused_replica_starts_again,
    "maintenance mode: the restarted standby starts again, following the leader",
    Scenario::cluster3("n2").settings(|s| s.paused = true).pg_stopped(1, AT, true).memory(|m| m.restarting = true)
);

table!(
    restart_paused_diverged_replica_stays_down,
    "maintenance mode: a restarted standby whose WAL forks from the history is not started (it needs a rewind)",
    Scenario::cluster3("n3")
        .leader("n2", 5, 61)
        .settings(|s| s.paused = true)
        .pg_stopped(1, 0x400_0900, true)
        .history(&[(1, 0x400_0000, 2, 5, "n2")])
        .member("n2", MemberRole::Primary, AT)
        .memory(|m| m.restarting = true)
);

table!(
    restart_paused_stopped_replica_starts_it,
    "maintenance mode, PostgreSQL down on a standby: a restart request starts it (nothing else would)",
    Scenario::cluster3("n2").settings(|s| s.paused = true).pg_stopped(1, AT, true).restart()
);

table!(
    restart_waits_for_a_fresh_reading_after_the_stop,
    "the restart's stop is reported done but this reading (taken before it ended) still shows PostgreSQL up: \
     look again, do not take it for a start",
    Scenario::cluster3("n1")
        .settings(|s| s.paused = true)
        .memory(|m| {
            m.restarting = true;
            m.restart_since = Some(99_000);
            m.pending = Some(Pending { id: OpId(5), kind: PgOpKind::StopFast, since: 99_000, give_up_at: 159_000 });
        })
        .outcome(5, Ok(Done::Ok))
);

table!(
    restart_paused_replica_waits_for_an_unsettled_leader,
    "maintenance mode, a restarted standby, the leader's new reign not settled in this read: wait before starting",
    Scenario::cluster3("n3")
        .leader("n2", 4, 61)
        .settings(|s| s.paused = true)
        .pg_stopped(1, AT, true)
        .member("n2", MemberRole::Replica, AT)
        .memory(|m| {
            m.restarting = true;
            m.restart_saw_down = true;
        })
);

table!(
    restart_ignored_without_leader,
    "no leader: a restart request waits (leadership first)",
    Scenario::cluster3("n2").leader_dead().restart()
);

table!(
    restart_stop_failed_runs_on,
    "the restart's fast stop failed: PostgreSQL runs on, the restart is over and recorded",
    Scenario::cluster3("n2")
        .memory(|m| {
            m.restarting = true;
            m.pending = Some(Pending { id: OpId(5), kind: PgOpKind::StopFast, since: 99_000, give_up_at: 159_000 });
        })
        .outcome(5, Err(Failure::Failed))
);

table!(
    operation_timeout_gives_up,
    "a clone has run past its limit: give up waiting, record it, retry after back-off",
    Scenario::cluster3("n2")
        .pg_empty()
        .memory(|m| m.pending = Some(Pending { id: OpId(5), kind: PgOpKind::Clone, since: 0, give_up_at: 99_000 }))
);

table!(
    started_replica_failed_backs_off,
    "starting the standby just failed: back off a loop before retrying",
    Scenario::cluster3("n2")
        .pg_stopped(1, AT, true)
        .memory(|m| m.pending =
            Some(Pending { id: OpId(5), kind: PgOpKind::StartReplica, since: 99_000, give_up_at: 159_000 }))
        .outcome(5, Err(Failure::Failed))
);

// ----- regressions from the safety review -------------------------------------------------------

table!(
    restarted_daemon_holds_off_in_failsafe_mode,
    "failsafe mode, the daemon just restarted (it may have acknowledged a failsafe primary): no campaign for a ttl",
    Scenario::cluster3("n2")
        .leader_dead()
        .settings(|s| s.failsafe_mode = true)
        .failsafe(&["n1", "n2", "n3"])
        .memory(|m| m.started_at = Some(95_000))
);

table!(
    restarted_daemon_holds_off_for_the_leaders_ttl,
    "failsafe mode, restarted 15 s ago; the leader record was written with a 30 s ttl (ours is 10 s): still no campaign",
    {
        let mut s = Scenario::cluster3("n2")
            .observer_clock()
            .pg_replica(1, AT, None, false)
            .peer("n3", None)
            .peer("n1", None)
            .memory(|m| {
                m.started_at = Some(85_000);
                m.leader_seen = Some(hacore::memory::Seen { name: String::new(), version: Version(40), since: 60_000 });
            })
            .settings(|s| s.failsafe_mode = true)
            .failsafe(&["n1", "n2", "n3"]);
        if let Some(rec) = s.view_mut().leader.as_mut() {
            rec.value.ttl = 30_000;
        }
        s
    }
);

table!(
    new_term_start_takes_sync_record_first,
    "sync mode, won a new term with stopped primary data: take the sync record over before starting",
    Scenario::cluster3("n1")
        .leader("n1", 4, 70)
        .holding(4, 70, 99_900)
        .pg_stopped(1, AT, false)
        .settings(|s| s.synchronous_mode = SyncMode::On)
        .sync("n1", 3, &["n2"])
);

table!(
    guard_deadline_lowered,
    "the guard holds a later deadline than the lease now allows (ttl was lowered): re-arm it lower",
    Scenario::cluster3("n1").guard(GuardState::Armed { deadline: 125_000, term: Term(3) })
);

table!(
    paused_primary_without_dcs_fences_at_deadline,
    "paused, and the DCS is unreadable past the deadline: pause does not disarm fencing",
    Scenario::cluster3("n1").settings(|s| s.paused = true).holding(3, 40, 90_000).dcs_down()
);

table!(
    failsafe_set_keeps_a_briefly_absent_member,
    "n3's member key vanished for a moment: it stays in the failsafe set (grace of ten ttls)",
    Scenario::cluster3("n1")
        .settings(|s| s.failsafe_mode = true)
        .failsafe(&["n1", "n2", "n3"])
        .without_member("n3")
        .memory(|m| m.departed = vec![("n3".into(), 95_000)])
);

table!(
    failsafe_set_drops_a_long_gone_member,
    "n3 has been gone for more than ten ttls: it leaves the failsafe set",
    Scenario::cluster3("n1")
        .settings(|s| s.failsafe_mode = true)
        .failsafe(&["n1", "n2", "n3"])
        .without_member("n3")
        .memory(|m| m.departed = vec![("n3".into(), 0)])
);

table!(
    manual_failover_in_pause_promotes,
    "paused; this node took the lease for an operator's failover: it promotes (pause stops automatic actions only)",
    Scenario::cluster3("n3")
        .leader("n3", 4, 61)
        .holding(4, 61, 99_900)
        .pg_replica(1, AT, None, false)
        .settings(|s| s.paused = true)
        .switchover(FAILOVER, None, Some("n3"))
        .memory(|m| m.acquired_via = Some(hacore::ForkCause::ManualFailover))
);

table!(
    promotion_in_flight_stopped_when_lease_lost,
    "a promotion is in flight and the lease is gone (n3 leads now): stop PostgreSQL at once",
    Scenario::cluster3("n2").leader("n3", 5, 70).pg_replica(1, AT, None, false).memory(
        |m| m.pending = Some(Pending { id: OpId(9), kind: PgOpKind::Promote, since: 99_500, give_up_at: 159_500 })
    )
);

table!(
    dcs_back_after_failsafe_renews_without_fencing,
    "the DCS is back after a failsafe episode that outlasted the lease; the record is still ours: renew, no fence",
    Scenario::cluster3("n1")
        .settings(|s| s.failsafe_mode = true)
        .holding(3, 40, 85_000)
        .memory(|m| m.failsafe_until = Some(104_000))
);

table!(
    sync_read_lagging_own_write_keeps_setting,
    "the read still shows the old sync set but this leader's write of [n2] was confirmed: keep n2 named (S2)",
    sync_leader()
        .sync("n1", 3, &[])
        .pg(|p| p.sync_standbys = SyncStandbys::First(vec!["n2".into()]))
        .memory(|m| m.sync_known =
            Some(hacore::dcs::SyncRecord { leader: "n1".into(), term: Term(3), members: vec!["n2".into()].into() }))
);

table!(
    sync_write_with_unknown_outcome_stays_covered,
    "a sync write adding n3 timed out (maybe applied): n3 stays named until a confirmed write settles it (S2)",
    sync_leader()
        .sync("n1", 3, &["n2"])
        .pg(|p| p.sync_standbys = SyncStandbys::First(vec!["n2".into()]))
        .memory(|m| m.sync_unsure = vec!["n3".into()])
);

table!(
    stale_primary_data_starts_as_standby,
    "leading with a former primary's data on timeline 1 after others forked to 2: start as standby, then promote (fork recorded)",
    Scenario::cluster3("n3").leader("n3", 5, 70).holding(5, 70, 99_900).pg_stopped(1, 0x400_0000, false)
        .history(&[(1, 0x450_0000, 2, 4, "n1")])
);

table!(
    follower_waits_for_new_leader_to_fork,
    "n3 took the lease in term 4 but its fork is not recorded yet (this read may predate it): do not judge lineage yet",
    Scenario::cluster3("n2").leader("n3", 4, 60).pg_stopped(1, AT + 0x100, true).member("n3", MemberRole::Replica, AT)
);

// ----- helpers only these tables need ----------------------------------------------------------

trait More {
    fn without_member(self, name: &str) -> Self;
    fn config_version(self, v: u64) -> Self;
    fn leader_dead(self) -> Self;
    fn cfg_require_guard(self) -> Self;
    fn without_peer(self, name: &str) -> Self;
    fn peer_priority(self, name: &str, prio: u32) -> Self;
    fn corrupt_leader(self, version: u64) -> Self;
    fn corrupt_history(self, version: u64) -> Self;
    /// `key` holds bytes nobody can decode, at `version`.
    fn corrupt(self, key: hacore::dcs::Key, version: u64) -> Self;
    fn in_switchover(self, to: &str, phase: SwitchoverPhase, since: u64) -> Self;
    fn scheduled(self) -> Self;
    fn no_reclone(self) -> Self;
    fn all_applied(self, version: u64) -> Self;
    fn permanent_slot(self, name: &str) -> Self;
    fn no_config(self) -> Self;
    fn reinit(self) -> Self;
    fn restart(self) -> Self;
}

impl More for Scenario {
    fn without_member(mut self, name: &str) -> Self {
        self.view_mut().members.retain(|m| m.value.name != name);
        self
    }
    fn config_version(mut self, v: u64) -> Self {
        if let Some(c) = &mut self.view_mut().config {
            c.version = Version(v);
        }
        self
    }
    /// The leader record is gone and n1 (the old leader) does not answer.
    fn leader_dead(self) -> Self {
        self.no_leader(3).peer("n1", None)
    }
    fn cfg_require_guard(mut self) -> Self {
        self.cfg.require_guard = true;
        self
    }
    fn without_peer(mut self, name: &str) -> Self {
        self.obs.peers.retain(|p| p.name != name);
        self
    }
    fn peer_priority(mut self, name: &str, prio: u32) -> Self {
        if let Some(p) = self.obs.peers.iter_mut().find(|p| p.name == name) {
            if let Some(e) = p.status.as_mut().and_then(|s| s.election.as_mut()) {
                e.priority = prio;
            }
        }
        self
    }
    fn corrupt_leader(self, version: u64) -> Self {
        self.corrupt(hacore::dcs::Key::Leader, version)
    }
    fn corrupt(mut self, key: hacore::dcs::Key, version: u64) -> Self {
        self.view_mut().corrupt.push(hacore::dcs::CorruptKey {
            key,
            version: Version(version),
            reason: "expected JSON, found 0xff".into(),
        });
        self
    }
    fn corrupt_history(mut self, version: u64) -> Self {
        self.view_mut().history = None;
        self.corrupt(hacore::dcs::Key::History, version)
    }
    fn in_switchover(mut self, to: &str, phase: SwitchoverPhase, since: u64) -> Self {
        self.mem.switchover = Some(SwitchoverProgress { candidate: to.into(), request: Version(33), phase, since });
        self
    }
    fn scheduled(mut self) -> Self {
        if let Some(s) = &mut self.view_mut().switchover {
            s.value.at_wall_ms = Some(1_800_000_000_000);
        }
        self
    }
    fn no_reclone(mut self) -> Self {
        self.cfg.reclone_on_rewind_failure = false;
        self
    }
    fn all_applied(mut self, version: u64) -> Self {
        for m in &mut self.view_mut().members {
            std::sync::Arc::make_mut(&mut m.value).applied_config = Some(Version(version));
        }
        self
    }
    fn permanent_slot(mut self, name: &str) -> Self {
        self.cfg.permanent_slots.push(name.into());
        self
    }
    fn no_config(mut self) -> Self {
        self.view_mut().config = None;
        self.mem.applied = None;
        self
    }
    fn reinit(mut self) -> Self {
        self.obs.requests.reinitialize = true;
        self
    }
    fn restart(mut self) -> Self {
        self.obs.requests.restart = true;
        self
    }
}

#[test]
fn lease_model_default_is_store_expiry() {
    assert_eq!(LeaseModel::default(), LeaseModel::StoreExpiry);
}

// ----- standby cluster ------------------------------------------------------------------

fn upstream(host: &str) -> hacore::StandbyCluster {
    hacore::StandbyCluster { pg_url: format!("host={host} port=5432"), ..Default::default() }
}

fn standby(s: &mut hacore::ClusterSettings) {
    s.standby_cluster = Some(upstream("dc1"));
}

/// The standby leader's WAL receiver was last pointed at `dc1`, the current upstream.
fn pointed_at_dc1(m: &mut hacore::Memory) {
    m.upstream_applied = Some(upstream("dc1"));
}

/// n3 in a standby cluster led by n2 (term 4).
fn standby_member_n3() -> Scenario {
    Scenario::cluster3("n3")
        .settings(standby)
        .leader("n2", 4, 61)
        .member("n2", MemberRole::StandbyLeader, AT)
        .member("n1", MemberRole::Replica, AT)
        .status("n2", 4, AT)
        .memory(|m| m.max_term = Term(4))
}

/// Synchronous mode, no sync record, the leader gone; n3 reported, a little behind.
fn sync_mode_leader_gone() -> Scenario {
    Scenario::cluster3("n2")
        .settings(|s| s.synchronous_mode = SyncMode::On)
        .leader_dead()
        .pg_replica(1, AT, None, false)
        .peer_candidate("n3", AT - 0x100, true, true)
}

table!(
    standby_bootstrap_clones_the_upstream,
    "standby cluster, won the bootstrap race: copy the upstream (no initdb)",
    Scenario::node("n1").settings(standby).leader("n1", 1, 5).holding(1, 5, 99_500)
);

table!(
    standby_bootstrap_registers_then_starts_a_standby,
    "standby cluster, clone done: register the system id, start as a standby of the upstream",
    Scenario::node("n1")
        .settings(standby)
        .leader("n1", 1, 5)
        .holding(1, 5, 99_500)
        .pg_stopped(4, 0x100_0000, true)
        .pg(|p| p.data = hacore::DataDir::Present { system_id: 42 })
);

table!(
    standby_bootstrap_accepts_a_standbys_data,
    "standby cluster, no cluster yet, this node holds a standby's data: race for the lease",
    Scenario::node("n1")
        .settings(standby)
        .pg_stopped(1, 0x100_0000, true)
        .pg(|p| p.data = hacore::DataDir::Present { system_id: 42 })
);

table!(
    standby_leader_points_at_the_upstream,
    "standby cluster leader following nobody (just elected): point the receiver at the upstream, never promote",
    Scenario::cluster3("n2")
        .settings(standby)
        .leader("n2", 4, 61)
        .holding(4, 61, 99_900)
        .pg_replica(1, AT, None, false)
);

table!(
    standby_leader_streams,
    "standby cluster leader streaming from the upstream: keep the lease, publish status, no writes",
    Scenario::cluster3("n2")
        .settings(standby)
        .leader("n2", 4, 61)
        .holding(4, 61, 99_900)
        .pg_replica(1, AT, Some(hacore::UPSTREAM), true)
        .memory(pointed_at_dc1)
);

table!(
    standby_leader_repoints_when_the_upstream_changes,
    "standby cluster leader: standby_cluster.pg_url changed since it was pointed: repoint",
    Scenario::cluster3("n2")
        .settings(standby)
        .leader("n2", 4, 61)
        .holding(4, 61, 99_900)
        .pg_replica(1, AT, Some(hacore::UPSTREAM), true)
        .memory(|m| m.upstream_applied = Some(upstream("dc0")))
);

table!(
    standby_leader_starts_a_standby_when_down,
    "standby cluster leader, PostgreSQL down: start it as a standby of the upstream",
    Scenario::cluster3("n2").settings(standby).leader("n2", 4, 61).holding(4, 61, 99_900).pg_stopped(1, AT, true)
);

table!(
    standby_leader_fences_a_writable_postgres,
    "standby cluster leader whose PostgreSQL is writable: fence it (a standby cluster accepts no writes)",
    Scenario::cluster3("n1").settings(standby)
);

table!(
    standby_leader_records_the_upstreams_timeline_switch,
    "standby cluster leader: the upstream failed over (timeline 2 from 0/4000000@1): record it in the history",
    Scenario::cluster3("n2")
        .settings(standby)
        .leader("n2", 4, 61)
        .holding(4, 61, 99_900)
        .pg_replica(2, AT, Some(hacore::UPSTREAM), true)
        .pg_history(&[(1, 0x400_0000)])
        .memory(pointed_at_dc1)
);

table!(
    standby_cluster_election_ignores_the_lag_bound,
    "standby cluster, no leader, the last status far ahead (its leader's data is gone): the lag \
     bound protects no commit here, and only as leader can this member catch up: it campaigns",
    Scenario::cluster3("n2").settings(standby).leader_dead().pg_replica(1, AT, None, false).status(
        "n1",
        3,
        AT + 0x20_0000
    )
);

table!(
    standby_leader_records_many_upstream_timelines_in_one_event,
    "standby cluster leader on the upstream's timeline 5, the history recording none of its switches (put back \
     from an old copy): record all four, with one event, not one each",
    Scenario::cluster3("n2")
        .settings(standby)
        .leader("n2", 4, 61)
        .holding(4, 61, 99_900)
        .pg_replica(5, AT, Some(hacore::UPSTREAM), true)
        .pg_history(&[(1, 0x100_0000), (2, 0x200_0000), (3, 0x300_0000), (4, 0x400_0000)])
        .memory(pointed_at_dc1)
);

table!(
    standby_switchover_hands_the_lease_over,
    "standby cluster leader asked to switch over to n3: transfer the lease at once (nothing to lose)",
    Scenario::cluster3("n2")
        .settings(standby)
        .leader("n2", 4, 61)
        .holding(4, 61, 99_900)
        .pg_replica(1, AT, Some(hacore::UPSTREAM), true)
        .memory(pointed_at_dc1)
        .standby("n3", AT)
        .switchover(hacore::dcs::SwitchoverKind::Switchover, Some("n2"), Some("n3"))
);

table!(
    standby_member_follows_the_standby_leader,
    "standby cluster member: follow the standby leader (cascading), as in any cluster",
    standby_member_n3().pg_replica(1, AT, Some("n2"), true)
);

table!(
    standby_cluster_promoted_records_the_fork_then_promotes,
    "standby_cluster removed (promote-cluster): the standby leader records a cluster_promotion fork and promotes",
    Scenario::cluster3("n2")
        .leader("n2", 4, 61)
        .holding(4, 61, 99_900)
        .pg_replica(1, AT, None, false)
        .memory(|m| m.acquired_via = Some(hacore::ForkCause::ClusterPromotion))
);

// What the simulator's standby-cluster sweep found (each table once failed).

table!(
    standby_election_in_sync_mode_goes_by_lag,
    "standby cluster in synchronous mode, its leader gone: no sync set is ever published there, so the lag bound decides",
    sync_mode_leader_gone().settings(standby)
);

table!(
    sync_mode_without_a_sync_record_goes_by_lag,
    "synchronous mode but no sync record yet (no synchronous primary ever): the lag bound decides, the acquire expects the record absent",
    sync_mode_leader_gone()
);

table!(
    standby_member_ahead_of_the_recorded_history_keeps_streaming,
    "standby cluster member already on the upstream's new timeline 2, not recorded yet by the leader: along, keeps streaming",
    standby_member_n3().pg_replica(2, AT, Some("n2"), true).pg_history(&[(1, 0x400_0000)])
);

table!(
    standby_promotion_records_unrecorded_upstream_switches_first,
    "promote-cluster while the leader's newest upstream timeline (2) is not recorded: record it with the promotion fork (to 3)",
    Scenario::cluster3("n2")
        .leader("n2", 4, 61)
        .holding(4, 61, 99_900)
        .pg_replica(2, AT, None, false)
        .pg_history(&[(1, 0x400_0000)])
        .memory(|m| m.acquired_via = Some(hacore::ForkCause::ClusterPromotion))
);

table!(
    standby_cluster_promoted_without_its_leader_first_primary_forks_as_cluster_promotion,
    "founded as a standby cluster, promoted while its leader was gone: the election winner's fork is the cluster's promotion",
    {
        let mut s = Scenario::cluster3("n2")
            .leader("n2", 5, 61)
            .holding(5, 61, 99_900)
            .pg_replica(2, AT, None, false)
            .pg_history(&[(1, 0x400_0000)])
            .memory(|m| m.acquired_via = Some(hacore::ForkCause::Failover));
        if let Some(i) = &mut s.view_mut().initialize {
            i.value.standby = true;
        }
        s
    }
);

/// n2 is named by the record at term 4 without holding its lease, won by an election
/// (`acquired_via` failover), with an acquire #`id` of term 4 awaiting its outcome.
fn named_after_an_election(id: u64, more: impl FnOnce(&mut hacore::Memory)) -> Scenario {
    Scenario::cluster3("n2").leader("n2", 4, 41).pg_replica(1, AT, None, false).memory(|m| {
        m.lease = None;
        m.acquired_via = Some(hacore::ForkCause::Failover);
        m.lease_op = Some(LeaseOp { id: OpId(id), kind: LeaseOpKind::Acquire, term: Term(4) });
        more(m);
    })
}

/// An acquire whose reply was lost may have applied: the node that then finds itself named
/// by the record claims it as the leader it became by that election, and its fork says
/// failover, not switchover (found by the simulator's F1 check, seed 32).
#[test]
fn an_acquire_with_unknown_outcome_keeps_how_the_node_came_to_lead() {
    let s = named_after_an_election(7, |_| {}).outcome(7, Err(Failure::Indeterminate));
    let d = s.step();
    assert_eq!(d.memory.acquired_via, Some(hacore::ForkCause::Failover), "{:?}", d.status);
    let refused = Scenario::cluster3("n2")
        .no_leader(3)
        .memory(|m| {
            m.acquired_via = Some(hacore::ForkCause::Failover);
            m.lease_op = Some(LeaseOp { id: OpId(7), kind: LeaseOpKind::Acquire, term: Term(4) });
        })
        .outcome(7, Err(Failure::Conflict));
    assert_eq!(refused.step().memory.acquired_via, None, "a refused acquire made nobody leader");
}

/// A claim refused because the record's version moved (this leader's own renewal applied
/// though its reply was lost) leaves how the node came to lead alone: the claim that
/// follows records the fork as the failover it was, not as a switchover (found by the
/// simulator's F1 check, seed 1037).
#[test]
fn a_refused_claim_keeps_how_the_node_came_to_lead() {
    let s = named_after_an_election(7, |m| m.claiming = Some(Version(40))).outcome(7, Err(Failure::Conflict));
    let d = s.step();
    assert_eq!(d.memory.acquired_via, Some(hacore::ForkCause::Failover), "{:?}", d.status);
}

/// A sync-record write refused on a read that a stale store keeps returning: the leader
/// does not repeat it on the same read, nor keep its loop busy, until a read shows the
/// change (found by the simulator's R7 check, seed 2206: ten refused writes a second).
#[test]
fn a_refused_sync_write_is_not_repeated_on_the_same_read() {
    // The core writes the record (n2 flushed past the target) and remembers what the
    // write is conditioned on; its outcome comes back as #id.
    let base = || {
        sync_leader()
            .sync("n1", 3, &[])
            .pg(|p| p.sync_standbys = SyncStandbys::First(vec!["n2".into()]))
            .memory(|m| m.sync_add = Some(SyncAdd { name: "n2".into(), target: Some(hacore::Lsn(AT)) }))
    };
    let wrote = base().step();
    let id = wrote.memory.sync_write.as_ref().map(|(id, _)| id.0).expect("the sync record is written");
    let adding = |r: Result<Done, Failure>| base().memory(|m| *m = wrote.memory.clone()).outcome(id, r);
    let writes_sync = |d: &hacore::Decision| {
        d.actions.iter().any(|a| {
            matches!(a, hacore::action::Action::Dcs { op: hacore::dcs::DcsOp::LeaderWrite { writes, .. }, .. }
                if writes.iter().any(|w| w.key == hacore::dcs::Key::Sync))
        })
    };
    let refused = adding(Err(Failure::Conflict)).step();
    assert!(!writes_sync(&refused), "{:?}", refused.actions);
    assert!(refused.wake_within > 100, "not busy on a stale read: wakes within {} ms", refused.wake_within);
    // The same write on a read that shows the record moved (or after another outcome).
    let mut moved = adding(Err(Failure::Conflict));
    if let Some(s) = &mut moved.view_mut().sync {
        s.version = Version(32);
    }
    assert!(writes_sync(&moved.step()), "a read that shows the change is acted on");
    let failed = adding(Err(Failure::Unavailable)).step();
    assert!(writes_sync(&failed), "a write that was not refused is retried");
}

/// A switchover candidate that has the end of the WAL but cannot lead (an operator had it
/// reinitialized meanwhile: its fresh clone holds the WAL but is not consistent yet) gets
/// no transfer; the switchover waits, and times out as it would for one that lags (found
/// by the simulator's O2 check, seed 5429).
#[test]
fn a_switchover_waits_for_a_candidate_that_can_lead() {
    let awaiting = |can_lead: bool| {
        Scenario::cluster3("n1")
            .switchover(SWITCHOVER, Some("n1"), Some("n2"))
            .in_switchover("n2", SwitchoverPhase::AwaitCandidate, 99_000)
            .pg_stopped(1, AT + 0x28, false)
            .peer(
                "n2",
                Some(hacore::status::PeerStatus {
                    replayed: hacore::Lsn(0),
                    role: MemberRole::Replica,
                    term: Term(3),
                    running: false,
                    position: hacore::WalPosition { timeline: hacore::Timeline(1), lsn: hacore::Lsn(AT + 0x28) },
                    can_lead,
                    election: None,
                }),
            )
            .step()
    };
    let transfers = |d: &hacore::Decision| {
        d.actions
            .iter()
            .any(|a| matches!(a, hacore::action::Action::Dcs { op: hacore::dcs::DcsOp::TransferLeader { .. }, .. }))
    };
    assert!(!transfers(&awaiting(false)), "{:?}", awaiting(false).actions);
    assert!(transfers(&awaiting(true)), "the same candidate able to lead gets the record");
}

/// An acquire whose reply was lost, then another attempt at the same term that the store
/// refuses: the first may have applied, so the node keeps how it came to lead and a claim
/// that follows records the failover (found by the simulator's F1 check, seed 7874).
#[test]
fn a_refused_retry_after_an_unknown_acquire_keeps_how_the_node_came_to_lead() {
    let lost_reply = Scenario::cluster3("n2")
        .no_leader(3)
        .memory(|m| {
            m.acquired_via = Some(hacore::ForkCause::Failover);
            m.lease_op = Some(LeaseOp { id: OpId(7), kind: LeaseOpKind::Acquire, term: Term(4) });
        })
        .outcome(7, Err(Failure::Indeterminate))
        .step();
    assert_eq!(lost_reply.memory.acquire_unsure, Some(Term(4)));
    let unsure = lost_reply.memory.acquire_unsure;
    // The next read shows the record naming this node at that term: the first applied.
    let refused =
        named_after_an_election(9, |m| m.acquire_unsure = unsure).outcome(9, Err(Failure::Unavailable)).step();
    assert_eq!(refused.memory.acquired_via, Some(hacore::ForkCause::Failover), "{:?}", refused.status);
}

/// A sync-record write whose outcome is unknown may have applied: the last confirmed
/// record no longer tells what the store holds, so the leader goes back to its reads (and
/// keeps every name either may have published as possibly published). Kept, it hid a
/// removal that had applied for the rest of the reign: the published set was never
/// completed again and nobody could fail over (found by the simulator's L1 check of the
/// synchronous set, seed 7763).
#[test]
fn an_unknown_sync_write_outcome_forgets_the_confirmed_record() {
    let d = sync_leader()
        .sync("n1", 3, &[])
        .pg(|p| p.sync_standbys = SyncStandbys::First(vec!["n2".into()]))
        .memory(|m| {
            m.sync_known =
                Some(hacore::dcs::SyncRecord { leader: "n1".into(), term: Term(3), members: vec!["n2".into()].into() });
            m.sync_write = Some((
                OpId(7),
                hacore::dcs::SyncRecord { leader: "n1".into(), term: Term(3), members: Default::default() },
            ));
        })
        .outcome(7, Err(Failure::Indeterminate))
        .step();
    assert_eq!(d.memory.sync_known, None);
    assert!(d.memory.sync_unsure.iter().any(|n| n == "n2"), "n2 may still be published: {:?}", d.memory.sync_unsure);
    // The read shows the removal applied: the leader starts adding a standby again.
    assert!(d.memory.sync_add.is_some(), "{:?} {:?}", d.status, d.actions);
}
