//! The user's own methods: `bootstrap_command` instead of initdb, `clone_command` instead
//! of pg_basebackup, a `restore_command` in effect on replicas, and JSON logs with the
//! node, term and tick of every line inside a loop.

use e2e::{Cluster, Options};
use std::time::Duration;

#[test]
fn hooks_bootstrap_and_clone_and_the_restore_command_is_used() {
    let bin = e2e::pg_bin();
    let postgresql = format!(
        r#"bootstrap_command = "{initdb} -D \"$PGDATA\" --data-checksums -E UTF8 --locale=C -U postgres && touch \"$PGDATA.bootstrapped-by-hook\""
clone_command = "{basebackup} -D \"$PGDATA\" -X stream -c fast --no-password && echo \"$PGUSER $PGHOST $PGPORT\" > \"$PGDATA.cloned-by-hook\""
restore_command = "echo %f >> ../restore.log; false"
"#,
        initdb = bin.join("initdb").display(),
        basebackup = bin.join("pg_basebackup").display(),
    );
    let c = Cluster::start(Options { nodes: 2, postgresql, log_format: "json", ..Options::default() });
    let p = c.wait_healthy(Duration::from_secs(120));
    let r = 1 - p;
    let marker = |i: usize, what: &str| hashell::config::sibling(&c.nodes[i].data(), what);
    assert!(marker(p, "bootstrapped-by-hook").exists(), "the primary was not made by bootstrap_command");
    assert!(!marker(r, "bootstrapped-by-hook").exists(), "the replica ran the bootstrap too");
    let cloned =
        std::fs::read_to_string(marker(r, "cloned-by-hook")).expect("the replica was not made by clone_command");
    assert_eq!(cloned.trim(), format!("replicator 127.0.0.1 {}", c.nodes[p].pg_port), "clone_command environment");
    // The bootstrap's checksums are what the hook asked for, and the clone is a copy of it.
    assert_eq!(c.psql(p, "SHOW data_checksums").unwrap(), "on");
    assert_eq!(
        c.psql(p, "SELECT system_identifier FROM pg_control_system()").unwrap(),
        c.psql(r, "SELECT system_identifier FROM pg_control_system()").unwrap()
    );
    // The replica's PostgreSQL runs the restore_command (it asks the archive before streaming).
    assert_eq!(c.psql(r, "SHOW restore_command").unwrap(), "echo %f >> ../restore.log; false");
    let asked = std::fs::read_to_string(c.nodes[r].data().join("../restore.log")).unwrap_or_default();
    assert!(!asked.trim().is_empty(), "PostgreSQL never called the restore_command");
    c.psql(p, "CREATE TABLE t AS SELECT 1 AS x").unwrap();
    c.wait_for("the row on the replica", Duration::from_secs(30), |c| {
        (c.psql(r, "SELECT count(*) FROM t").ok()? == "1").then_some(())
    });

    // JSON logs: every line is an object; lines inside a loop carry node, term and tick.
    let log = std::fs::read_to_string(c.nodes[p].log()).unwrap();
    let mut in_tick = 0;
    for line in log.lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{line}");
        if v["span"]["name"] == "tick" {
            assert_eq!(v["span"]["node"], c.nodes[p].name.as_str(), "{line}");
            assert!(v["span"]["term"].is_u64() && v["span"]["tick"].is_u64(), "{line}");
            in_tick += 1;
        }
    }
    assert!(in_tick > 0, "no log line inside a loop:\n{log}");
    let decisions = log.lines().filter(|l| l.contains(r#""message":"decision""#)).count();
    assert!(decisions > 0, "no decision logged");
}

/// A new cluster bootstrapped from a base backup and a WAL archive to a named restore
/// point of another PostgreSQL: what was written after the point is not there, the new
/// cluster runs on the timeline the recovery's promotion created, and its replica clones
/// from it and streams.
#[test]
fn a_cluster_bootstrapped_to_a_point_in_time() {
    // The database the backup comes from, archiving its WAL.
    let source = e2e::ArchivingSource::start("CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 100)");
    let (src, archive, backup) = (&source.pg, &source.archive, &source.backup);
    src.psql("INSERT INTO t SELECT generate_series(101, 200)");
    src.psql("SELECT pg_create_restore_point('before_the_mistake')");
    // The mistake, then the archive gets everything.
    src.psql("DELETE FROM t; CREATE TABLE after_the_point (x int)");
    source.archive_all();
    src.stop("fast");

    let postgresql = format!(
        r#"bootstrap_command = "cp -a {backup}/. \"$PGDATA\""
restore_command = "cp {archive}/%f %p"
bootstrap_recovery = {{ recovery_target_name = "before_the_mistake" }}
"#,
        backup = backup.display(),
        archive = archive.display(),
    );
    let c = Cluster::start(Options { nodes: 2, postgresql, ..Options::default() });
    let p = c.wait_healthy(Duration::from_secs(120));
    let r = 1 - p;
    assert_eq!(c.psql(p, "SELECT count(*) FROM t").unwrap(), "200", "the rows up to the restore point");
    assert_eq!(
        c.psql(p, "SELECT count(*) FROM pg_tables WHERE tablename = 'after_the_point'").unwrap(),
        "0",
        "replayed past the restore point"
    );
    assert_eq!(c.psql(p, "SELECT timeline_id FROM pg_control_checkpoint()").unwrap(), "2");
    assert_eq!(c.status(p).unwrap()["timeline"], 2, "published timeline");
    assert_eq!(
        c.psql(p, "SELECT system_identifier FROM pg_control_system()").unwrap(),
        c.psql(r, "SELECT system_identifier FROM pg_control_system()").unwrap()
    );
    // The recovery settings are gone from the running configuration.
    assert_eq!(c.psql(p, "SHOW recovery_target_name").unwrap(), "");
    c.psql(p, "INSERT INTO t VALUES (201)").unwrap();
    c.wait_for("the new row on the replica", Duration::from_secs(30), |c| {
        (c.psql(r, "SELECT count(*) FROM t").ok()? == "201").then_some(())
    });
}

/// With `archive_mode = always` and an archive command that accepts a segment already
/// archived identically (pgBackRest's behaviour), the WAL archive has no gap across a
/// failover: a base backup taken before the primary crashed, replayed from the archive
/// through the timeline switch, reaches a restore point written on the new primary.
#[test]
fn the_wal_archive_stays_continuous_across_a_failover() {
    use hashell::pg::testing::pg_command;
    let root = std::env::temp_dir().join(format!("hashell-archive-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (archive, backup, script) = (root.join("archive"), root.join("base"), root.join("archive.sh"));
    std::fs::create_dir_all(&archive).unwrap();
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n# archive.sh <path> <file name>: keeps the first copy, refuses a different one\n\
             dst={a}/$2\n\
             if [ -f \"$dst\" ]; then cmp -s \"$1\" \"$dst\" && exit 0; echo \"$2 differs from the archived copy\" >&2; exit 1; fi\n\
             cp \"$1\" \"$dst.tmp.$$\" && mv \"$dst.tmp.$$\" \"$dst\"\n",
            a = archive.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    hashell::local::chown(&root);
    hashell::local::chown(&archive);
    let parameters = format!("archive_mode = \"always\"\narchive_command = \"{} %p %f\"\n", script.display());
    let mut c = Cluster::start(Options { parameters, ..Options::default() });
    let p = c.wait_healthy(Duration::from_secs(120));
    c.psql(p, "CREATE TABLE t (x int)").unwrap();
    let out = pg_command("pg_basebackup")
        .arg("-D")
        .arg(&backup)
        .args(["-d", &format!("host=127.0.0.1 port={} user=postgres", c.nodes[p].pg_port), "-X", "none", "-c", "fast"])
        .output()
        .expect("pg_basebackup");
    assert!(out.status.success(), "pg_basebackup: {}", String::from_utf8_lossy(&out.stderr));
    for i in 0..4 {
        c.psql(p, &format!("INSERT INTO t SELECT generate_series({}, {})", i * 25 + 1, i * 25 + 25)).unwrap();
        c.psql(p, "SELECT pg_switch_wal()").unwrap();
    }
    // Let the replicas receive the last rows, then crash the primary's node.
    c.wait_for("the rows on both replicas", Duration::from_secs(30), |c| {
        (0..3)
            .filter(|&i| i != p)
            .all(|i| c.psql(i, "SELECT count(*) FROM t").ok().as_deref() == Some("100"))
            .then_some(())
    });
    c.kill_node(p);
    let q = c.wait_for("a new primary", Duration::from_secs(60), |c| c.primaries().into_iter().find(|&i| i != p));
    c.psql(q, "INSERT INTO t SELECT generate_series(101, 200)").unwrap();
    c.psql(q, "SELECT pg_create_restore_point('after_the_failover')").unwrap();
    let last = c.psql(q, "SELECT pg_walfile_name(pg_switch_wal())").unwrap();
    c.wait_for("the new timeline's last segment archived", Duration::from_secs(30), |_| {
        archive.join(&last).exists().then_some(())
    });
    // The new timeline's history file went to the archive too (the first 8 digits of a
    // segment's name are its timeline).
    let history = format!("{}.history", &last[..8]);
    assert_ne!(&last[..8], "00000001", "still on the first timeline");
    assert!(archive.join(&history).exists(), "{history} not archived");
    drop(c);

    // A new cluster from the backup and the archive alone, to the point after the failover.
    let postgresql = format!(
        r#"bootstrap_command = "cp -a {backup}/. \"$PGDATA\""
restore_command = "cp {archive}/%f %p"
bootstrap_recovery = {{ recovery_target_name = "after_the_failover" }}
"#,
        backup = backup.display(),
        archive = archive.display(),
    );
    let b = Cluster::start(Options { nodes: 1, postgresql, ..Options::default() });
    let bp = b.wait_healthy(Duration::from_secs(120));
    assert_eq!(b.psql(bp, "SELECT count(*) FROM t").unwrap(), "200", "rows from both timelines");
    let _ = std::fs::remove_dir_all(&root);
}
