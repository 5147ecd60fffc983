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
