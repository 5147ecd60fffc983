//! The rendered configuration on a real PostgreSQL 15: the user's conf.d applies, but
//! cannot override the settings safety depends on.

use hacore::observation::SyncStandbys;
use hashell::pg::conf::{write, Managed};
use hashell::pg::observe::observe;
use hashell::pg::testing::{run_as, PgInstance};
use std::collections::BTreeMap;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_files_run_and_keep_safety_settings_last() {
    let pg = PgInstance::initdb();
    let confd = pg.root.join("conf.d");
    std::fs::create_dir_all(&confd).expect("conf.d");
    std::fs::write(confd.join("10-user.conf"), "work_mem = '7MB'\nsynchronous_standby_names = 'sneaky'\n")
        .expect("user conf");
    if let Some((u, g)) = run_as() {
        for p in [&confd, &confd.join("10-user.conf")] {
            std::os::unix::fs::chown(p, Some(u), Some(g)).expect("chown");
        }
    }
    let mut parameters = BTreeMap::new();
    parameters.insert("max_connections".to_string(), toml::Value::Integer(42));
    let m = Managed {
        member: "n1".into(),
        port: pg.port,
        listen: "127.0.0.1".into(),
        socket_dir: Some(pg.root.clone()),
        parameters,
        include_dir: Some(confd),
        restore_command: None,
        sync: SyncStandbys::First(vec!["n2".into(), "n3".into()]),
        upstream: None,
        standby: false,
        hba: vec![
            "local all all trust".into(),
            "host all all 127.0.0.1/32 trust".into(),
            "host replication all 127.0.0.1/32 trust".into(),
        ],
        recovery: BTreeMap::new(),
    };
    let w = write(&pg.data, &m, run_as()).expect("write");
    assert!(w.config);
    pg.start();
    assert_eq!(pg.psql("SHOW max_connections"), "42");
    assert_eq!(pg.psql("SHOW work_mem"), "7MB", "the user's conf.d applies");
    assert_eq!(pg.psql("SHOW synchronous_standby_names"), "FIRST 2 (\"n2\", \"n3\")", "but cannot override S2");
    let (o, _) = observe(&pg.target()).await;
    assert_eq!(o.sync_standbys, m.sync);
}
