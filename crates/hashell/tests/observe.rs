//! Observing a real PostgreSQL 15: running primary, stopped, hung, and a standby.

use hacore::observation::{DataDir, SyncStandbys};
use hacore::types::Timeline;
use hashell::pg::observe::{observe, Trouble};
use hashell::pg::testing::PgInstance;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_running_stopped_and_hung() {
    let pg = PgInstance::initdb();
    let t = pg.target();

    // Stopped: everything from pg_controldata.
    let (o, trouble) = observe(&t).await;
    assert_eq!(trouble, None);
    let DataDir::Present { system_id } = o.data else { panic!("no data seen: {o:?}") };
    assert!(!o.running && !o.responsive);
    assert_eq!(o.in_recovery, Some(false));
    assert_eq!(o.timeline, Timeline(1));
    assert!(o.rewind_capable, "initdb --data-checksums makes pg_rewind possible");

    pg.start();
    pg.psql("SELECT pg_create_physical_replication_slot('n2')");
    pg.psql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS x");
    // (After the write: with no standby connected, commits would now wait.)
    pg.psql("ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 (\"n2\")'");
    pg.psql("SELECT pg_reload_conf()");
    let (o, trouble) = observe(&t).await;
    assert_eq!(trouble, None);
    assert!(o.running && o.responsive);
    assert_eq!(o.in_recovery, Some(false));
    assert_eq!(o.data, DataDir::Present { system_id });
    assert_eq!(o.slots, vec!["n2".to_string()]);
    assert_eq!(o.sync_standbys, SyncStandbys::First(vec!["n2".into()]));
    let lsn: String = pg.psql("SELECT pg_current_wal_flush_lsn()");
    assert!(o.flush_lsn.0 > 0 && o.flush_lsn <= hashell::pg::files::parse_lsn(&lsn).expect("lsn"));
    assert!(o.maybe_writable());

    // Hung: the postmaster and backends frozen. Running, not responsive, still maybe
    // writable (the control file says in production).
    pg.signal_all(libc::SIGSTOP);
    let t0 = std::time::Instant::now();
    let (o, trouble) = observe(&t).await;
    pg.signal_all(libc::SIGCONT);
    assert!(t0.elapsed() < t.timeout * 2 + std::time::Duration::from_secs(1), "observation took {:?}", t0.elapsed());
    assert!(o.running && !o.responsive, "{o:?}");
    assert!(o.maybe_writable());
    assert!(matches!(trouble, Some(Trouble::CannotConnect(_)) | Some(Trouble::QueryFailed(_))), "{trouble:?}");

    // Only the postmaster hangs: the backend of the observation connection still answers,
    // but no new connection can be made. Seen once that connection has served its time.
    let (o, _) = observe(&t).await;
    assert!(o.responsive);
    let pm = hashell::pg::files::postmaster_pid(&pg.data).expect("postmaster");
    // SAFETY: kill(2) on the postmaster this test started.
    unsafe { libc::kill(pm, libc::SIGSTOP) };
    std::thread::sleep(hashell::pg::observe::OBSERVER_MAX_AGE);
    let (o, trouble) = observe(&t).await;
    // SAFETY: as above.
    unsafe { libc::kill(pm, libc::SIGCONT) };
    assert!(o.running && !o.responsive, "{o:?}");
    assert!(matches!(trouble, Some(Trouble::CannotConnect(_)) | Some(Trouble::QueryFailed(_))), "{trouble:?}");

    pg.stop("fast");
    let (o, _) = observe(&t).await;
    assert!(!o.running);
    assert_eq!(o.in_recovery, Some(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_standby() {
    let primary = PgInstance::initdb();
    primary.start();
    let standby = PgInstance::clone_from(&primary, "n2");
    standby.start();
    let t = standby.target();
    let mut seen = None;
    for _ in 0..100 {
        let (o, _) = observe(&t).await;
        if o.streaming {
            seen = Some(o);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let o = seen.expect("the standby never reported streaming");
    assert_eq!(o.in_recovery, Some(true));
    assert_eq!(o.upstream.as_deref(), Some("n1"));
    assert!(!o.maybe_writable());
    let (p, _) = observe(&primary.target()).await;
    assert_eq!(p.standbys.len(), 1, "{p:?}");
    assert_eq!(p.standbys[0].name, "n2");
    assert!(p.standbys[0].streaming);
    assert_eq!(o.data, p.data, "a clone has the primary's system identifier");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_reports_where_its_wal_really_ends() {
    let pg = PgInstance::initdb();
    let t = pg.target();
    pg.start();
    pg.psql("CHECKPOINT");
    pg.psql("CREATE TABLE t AS SELECT generate_series(1, 20000) AS x");
    let end = hashell::pg::files::parse_lsn(&pg.psql("SELECT pg_current_wal_insert_lsn()")).unwrap();
    hashell::pg::kill::kill_instance(&pg.data);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (o, _) = observe(&t).await;
    assert!(!o.running);
    let cd = hashell::pg::observe::controldata(&t).await.unwrap();
    assert!(cd.checkpoint < end, "the test needs WAL past the last checkpoint");
    assert_eq!(o.flush_lsn, end, "end of WAL after a kill (checkpoint at {})", cd.checkpoint);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_observer_keeps_one_connection_and_rereads_a_changed_control_file() {
    use hashell::pg::observe::controldata;
    let pg = PgInstance::initdb();
    let t = pg.target();
    // Read twice, the second time long after initdb wrote the file (that one is kept).
    let _ = controldata(&t).await.expect("pg_controldata");
    std::thread::sleep(std::time::Duration::from_millis(100));
    let before = controldata(&t).await.expect("pg_controldata");

    pg.start();
    let (o, trouble) = observe(&t).await;
    assert!(o.responsive && trouble.is_none(), "{trouble:?}");
    let observers = || {
        pg.psql(
            "SELECT coalesce(string_agg(pid::text, ','), '') FROM pg_stat_activity WHERE application_name = 'hashell'",
        )
    };
    let first = observers();
    assert!(!first.is_empty() && !first.contains(','), "one observation connection: {first:?}");
    for _ in 0..3 {
        let (o, trouble) = observe(&t).await;
        assert!(o.responsive && trouble.is_none(), "{trouble:?}");
    }
    assert_eq!(observers(), first, "the same connection, reused");

    // The server restarts: its connection dies with it; the next observation answers at
    // once on a new one, and the control file the shutdown rewrote is read again.
    pg.psql("CREATE TABLE t AS SELECT generate_series(1, 10000) AS x");
    pg.stop("fast");
    let after = controldata(&t).await.expect("pg_controldata");
    assert!(after.checkpoint > before.checkpoint, "{after:?} vs the cached {before:?}");
    pg.start();
    let (o, trouble) = observe(&t).await;
    assert!(o.responsive, "{trouble:?}");
    assert_eq!(trouble, None);
    let second = observers();
    assert!(!second.is_empty() && second != first, "{second:?} after {first:?}");
}

/// Whether `pg` replays up to `lsn` within `tries` tenths of a second.
fn replays_to(pg: &PgInstance, lsn: &str, tries: u32) -> bool {
    (0..tries).any(|_| {
        pg.psql(&format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'")) == "t" || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            false
        }
    })
}

/// pg_ctl promote, waiting for the end of recovery.
fn promote(pg: &PgInstance) {
    let out =
        hashell::pg::testing::pg_command("pg_ctl").arg("-D").arg(&pg.data).args(["-w", "-t", "30", "promote"]).output();
    let out = out.unwrap();
    assert!(out.status.success(), "pg_ctl promote: {}", String::from_utf8_lossy(&out.stderr));
}

/// A placeholder history file for `timeline`, as hashell writes it (timeline 1 has no
/// history to copy).
fn place(pg: &PgInstance, timeline: u32) {
    let path = pg.data.join(format!("pg_wal/{timeline:08X}.history"));
    let text = format!("{}: timeline {timeline} is taken\n", hashell::pg::files::PLACEHOLDER_MARK);
    std::fs::write(path, text).unwrap();
}

/// Points the standby `pg` (named `name`) at `upstream` for its next start.
fn follow(pg: &PgInstance, upstream: &PgInstance, name: &str) {
    let conf =
        format!("primary_conninfo = 'host=127.0.0.1 port={} user=postgres application_name={name}'\n", upstream.port);
    let mut f = std::fs::OpenOptions::new().append(true).open(pg.data.join("postgresql.auto.conf")).unwrap();
    std::io::Write::write_all(&mut f, conf.as_bytes()).unwrap();
}

/// hashell's placeholder history files against a real PostgreSQL 15: they make a promotion
/// skip timelines and are in no ancestry; left by a promotion that failed early, they are
/// never reported as the timeline recovered towards, PostgreSQL started on them never
/// becomes consistent, and once they are removed it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placeholder_history_files_skip_timelines_and_are_removed_before_a_start() {
    use hashell::pg::files::{newest_timeline, read_history, remove_trailing_placeholders};
    let primary = PgInstance::initdb();
    primary.start();
    primary.psql("CREATE TABLE t AS SELECT 1 AS x");
    let standby = PgInstance::clone_from(&primary, "n2");
    standby.start();
    primary.stop("fast");
    // A promotion asked for timeline 4 wrote placeholders for 2 and 3, then failed before
    // PostgreSQL wrote a history file of its own.
    place(&standby, 2);
    place(&standby, 3);
    let (o, _) = observe(&standby.target()).await;
    assert_eq!(o.timeline, Timeline(1));
    assert_eq!(o.newest_timeline, Timeline(1), "a placeholder is never the timeline recovered towards");
    standby.stop("fast");
    let log = standby.root.join("refused.log");
    let out = hashell::pg::testing::pg_command("pg_ctl")
        .arg("-D")
        .arg(&standby.data)
        .arg("-l")
        .arg(&log)
        .args(["-w", "-t", "10", "start"])
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    // It recovers towards 3, whose history names no earlier timeline, so it waits for
    // timeline 3's WAL from the start and never becomes consistent.
    assert!(!out.status.success(), "PostgreSQL became available on a placeholder target:\n{text}");
    assert!(!text.contains("consistent recovery state reached"), "{text}");
    standby.stop("fast");
    assert_eq!(remove_trailing_placeholders(&standby.data, Timeline(1)).unwrap(), vec![Timeline(2), Timeline(3)]);
    standby.start();
    // The next promotion asks for 4 again: placeholders, then PostgreSQL takes 4, forked
    // from 1, with neither placeholder in its history.
    place(&standby, 2);
    place(&standby, 3);
    promote(&standby);
    assert!(standby.psql("SELECT pg_walfile_name(pg_current_wal_lsn())").starts_with("00000004"));
    let history = read_history(&standby.data, Timeline(4)).unwrap();
    assert_eq!(history.iter().map(|s| s.timeline).collect::<Vec<_>>(), [Timeline(1)]);
    assert_eq!(newest_timeline(&standby.data, Timeline(4)), Timeline(4));
}

/// A promotion that died after writing its timeline's history file, against a real
/// PostgreSQL 15: started again, the standby recovers towards that timeline and follows
/// no primary whose line lacks it (what the simulator models, and why the core rewinds
/// it); once hashell removed the history files after the data's timeline (as after
/// pg_rewind), it follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_held_by_a_dead_promotion_follows_once_its_history_files_are_removed() {
    use hashell::pg::files::remove_history_after;
    let primary = PgInstance::initdb();
    primary.start();
    primary.psql("CREATE TABLE t AS SELECT 1 AS x");
    let a = PgInstance::clone_from(&primary, "n2");
    let b = PgInstance::clone_from(&primary, "n3");
    a.start();
    b.start();
    let end = primary.psql("SELECT pg_current_wal_flush_lsn()");
    let replayed = |pg: &PgInstance| pg.psql("SELECT pg_last_wal_replay_lsn()");
    assert!(replays_to(&a, &end, 100) && replays_to(&b, &end, 100), "the standbys did not catch up");
    primary.stop("fast");
    // n2's promotion died after PostgreSQL wrote 00000002.history (forking at the end
    // of what it replayed) and before it wrote any WAL on timeline 2.
    let fork = replayed(&a);
    a.stop("fast");
    let wal = a.data.join("pg_wal");
    std::fs::write(wal.join("00000002.history"), format!("1\t{fork}\tno recovery target specified\n")).unwrap();
    // n3 is promoted instead, to timeline 3 (skipping 2, as hashell does), and writes.
    place(&b, 2);
    promote(&b);
    assert!(b.psql("SELECT pg_walfile_name(pg_current_wal_lsn())").starts_with("00000003"));
    b.psql("INSERT INTO t SELECT generate_series(2, 1000)");
    let b_end = b.psql("SELECT pg_current_wal_flush_lsn()");
    // n2 follows n3: its WAL is a prefix of n3's, yet it waits for timeline 2 for ever.
    follow(&a, &b, "n2");
    a.start();
    // Long enough for several connection attempts (wal_retrieve_retry_interval is 5 s).
    assert!(!replays_to(&a, &b_end, 120), "n2 followed n3 although it recovers towards timeline 2");
    assert_eq!(replayed(&a), fork, "n2 replayed past the fork of the timeline it recovers towards");
    let log = std::fs::read_to_string(a.root.join("log")).unwrap_or_default();
    assert!(
        log.contains("timeline 2") && log.contains("not in this server's history"),
        "n2 did not ask n3 for timeline 2:\n{log}"
    );
    a.stop("fast");
    // 3's file, fetched from n3, goes too: n3 sends it again.
    assert_eq!(remove_history_after(&a.data, Timeline(1)).unwrap(), vec![Timeline(2), Timeline(3)]);
    a.start();
    assert!(replays_to(&a, &b_end, 300), "n2 did not follow n3 once the history file was gone");
}

/// A standby on an older timeline fetches from its upstream the history file of every
/// timeline number up to the upstream's, skipped ones included. A clone (pg_basebackup
/// -X stream) holds only its own timeline's file, so when it is primary it cannot serve
/// the numbers a promotion skipped, and the standby never takes its timeline; with the
/// gaps filled with placeholders, as hashell does before a start, it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_serves_the_timeline_numbers_a_promotion_skipped_once_the_gaps_are_filled() {
    use hashell::pg::files::fill_history_gaps;
    let primary = PgInstance::initdb();
    primary.start();
    primary.psql("CREATE TABLE t AS SELECT 1 AS x");
    let old = PgInstance::clone_from(&primary, "n2");
    let next = PgInstance::clone_from(&primary, "n3");
    next.start();
    old.start();
    let end = primary.psql("SELECT pg_current_wal_flush_lsn()");
    assert!(replays_to(&next, &end, 200) && replays_to(&old, &end, 200), "the standbys did not catch up");
    primary.stop("fast");
    old.stop("fast");
    // n3 is promoted to timeline 3, skipping 2 (a placeholder, as hashell writes).
    place(&next, 2);
    promote(&next);
    next.psql("CHECKPOINT");
    // n4 is a clone of n3: timeline 3's history file only.
    let clone = PgInstance::clone_from(&next, "n4");
    assert!(!clone.data.join("pg_wal/00000002.history").exists(), "pg_basebackup -X stream copied a skipped file");
    next.stop("fast");
    clone.start();
    promote(&clone);
    clone.psql("INSERT INTO t SELECT generate_series(2, 1000)");
    let clone_end = clone.psql("SELECT pg_current_wal_flush_lsn()");
    // n2, still on timeline 1, follows n4.
    let conninfo =
        format!("primary_conninfo = 'host=127.0.0.1 port={} user=postgres application_name=n2'\n", clone.port);
    let mut f = std::fs::OpenOptions::new().append(true).open(old.data.join("postgresql.auto.conf")).unwrap();
    std::io::Write::write_all(&mut f, conninfo.as_bytes()).unwrap();
    old.start();
    assert!(!replays_to(&old, &clone_end, 120), "n2 streamed although n4 lacks timeline 2's history file");
    let log = std::fs::read_to_string(old.root.join("log")).unwrap_or_default();
    assert!(log.contains("00000002.history"), "n2 did not fail on timeline 2's history file:\n{log}");
    // hashell fills the gaps below the data's timeline before it starts PostgreSQL.
    clone.stop("fast");
    assert_eq!(fill_history_gaps(&clone.data, Timeline(4)).unwrap(), vec![Timeline(2)]);
    clone.start();
    // n2 now fetches every history file and recovers towards n4's timeline. (It cannot
    // stream here: n4's WAL starts at its base backup, after n2's end; in a cluster a
    // slot or an archive keeps that WAL.)
    let retarget = (0..300).any(|_| {
        let log = std::fs::read_to_string(old.root.join("log")).unwrap_or_default();
        log.contains("new target timeline is 4") || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            false
        }
    });
    let log = std::fs::read_to_string(old.root.join("log")).unwrap_or_default();
    assert!(retarget, "n2 did not take n4's timeline once the gap was filled:\n{log}");
}
