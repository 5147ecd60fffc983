//! Starting the daemon from a configuration: logging, the store, the REST API, the loop;
//! and `hashell init`, which writes the cluster's initial settings to the store.

use crate::config::{FileConfig, LogFormat};
use crate::daemon::{Connector, Daemon};
use backend_etcd::clock::BootClock;
use backend_etcd::{EtcdConfig, EtcdDcs, EtcdTls};
use hacore::dcs::{Dcs, DcsOp, Expect, SwitchoverKind, SwitchoverRequest, Value, Write};
use std::sync::Arc;
use std::time::Duration;

/// Sets up tracing as the file says (`RUST_LOG` wins over `log.level`).
pub fn init_logging(cfg: &FileConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log.level));
    use std::io::IsTerminal;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match cfg.log.format {
        LogFormat::Json => b.json().try_init(),
        LogFormat::Pretty => b.try_init(),
    };
}

fn read_pem(path: &Option<std::path::PathBuf>, what: &str) -> Result<Option<Vec<u8>>, String> {
    path.as_ref().map(|p| std::fs::read(p).map_err(|e| format!("cannot read {what} {}: {e}", p.display()))).transpose()
}

/// The etcd client configuration of this node.
pub fn etcd_config(cfg: &FileConfig) -> Result<EtcdConfig, String> {
    let e = cfg.dcs.etcd.as_ref().ok_or("this build's daemon needs [dcs.etcd]; DynamoDB arrives with issue 5")?;
    let mut c = EtcdConfig::new(e.endpoints.clone(), &cfg.cluster.namespace, &cfg.cluster.name, &cfg.node.name);
    c.timeout = Duration::from_millis(cfg.settings.retry_timeout.0);
    if let Some(user) = &e.user {
        let pw = crate::config::Credentials {
            username: user.clone(),
            password: e.password.clone(),
            password_file: e.password_file.clone(),
        }
        .secret()?
        .unwrap_or_default();
        c.auth = Some((user.clone(), pw));
    }
    if e.endpoints.iter().any(|u| u.starts_with("https://")) || e.ca_file.is_some() {
        c.tls = Some(EtcdTls {
            ca_pem: read_pem(&e.ca_file, "dcs.etcd.ca_file")?,
            client_cert_pem: read_pem(&e.cert_file, "dcs.etcd.cert_file")?,
            client_key_pem: read_pem(&e.key_file, "dcs.etcd.key_file")?,
            domain: None,
        });
    }
    Ok(c)
}

fn etcd_connector(c: EtcdConfig) -> Connector<EtcdDcs> {
    Box::new(move || {
        let c = c.clone();
        Box::pin(async move { EtcdDcs::connect(&c, Arc::new(BootClock)).await })
    })
}

/// Refuses root: PostgreSQL will not run as root, and files the daemon writes must belong
/// to the data directory's owner.
pub fn refuse_root() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return Err(
            "hashell must not run as root: run it as the user that owns the data directory (e.g. postgres)".into()
        );
    }
    Ok(())
}

/// Runs the daemon until it is killed.
pub async fn run(cfg: FileConfig) -> Result<(), String> {
    refuse_root()?;
    let etcd = etcd_config(&cfg)?;
    let daemon = Daemon::new(cfg.clone(), etcd_connector(etcd))?;
    let shared = daemon.shared();
    let listener = tokio::net::TcpListener::bind(&cfg.rest.listen)
        .await
        .map_err(|e| format!("cannot listen on rest.listen {}: {e}", cfg.rest.listen))?;
    tracing::info!(listen = %cfg.rest.listen, "REST API up");
    let app = crate::api::router(shared);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "REST API stopped");
        }
    });
    daemon.run().await;
    Ok(())
}

/// `hashell init`: writes `[settings]` as the cluster's `config` key; refuses when the
/// cluster already has one.
pub async fn init(cfg: &FileConfig) -> Result<String, String> {
    let etcd = etcd_config(cfg)?;
    let dcs = EtcdDcs::connect(&etcd, Arc::new(BootClock)).await.map_err(|e| e.to_string())?;
    let view = dcs.read().await.map_err(|e| e.to_string())?;
    if let Some(c) = view.config {
        return Err(format!(
            "cluster {} already has its settings (version {}); change them with `hashell edit-config`, \
             or remove the cluster first",
            cfg.cluster.name, c.version.0
        ));
    }
    let op = DcsOp::Put(Write::put(Value::Config(cfg.cluster_settings()), Expect::Absent));
    dcs.execute(&op).await.map_err(|e| e.to_string())?;
    Ok(format!("cluster {} initialized in {}", cfg.cluster.name, dcs.prefix()))
}

/// `hashell switchover` / `hashell failover`: writes the `switchover` key (refused while
/// another request is pending) and, with `wait`, follows it until a new leader serves or
/// the leader rejects it.
pub async fn request_switchover(
    cfg: &FileConfig,
    kind: SwitchoverKind,
    candidate: Option<String>,
    wait: Option<Duration>,
) -> Result<String, String> {
    let etcd = etcd_config(cfg)?;
    let dcs = EtcdDcs::connect(&etcd, Arc::new(BootClock)).await.map_err(|e| e.to_string())?;
    let view = dcs.read().await.map_err(|e| e.to_string())?;
    let leader = view.leader.as_ref().map(|l| l.value.holder.clone());
    if let Some(c) = &candidate {
        if view.member(c).is_none() {
            let names: Vec<&str> = view.members.iter().map(|m| m.value.name.as_str()).collect();
            return Err(format!("{c} is not a member of cluster {}; members: {}", cfg.cluster.name, names.join(", ")));
        }
    }
    let from = match kind {
        SwitchoverKind::Switchover => {
            Some(leader.clone().ok_or("the cluster has no leader to switch over from; use `hashell failover`")?)
        }
        SwitchoverKind::Failover => {
            if candidate.is_none() {
                return Err("a failover needs --candidate NODE".into());
            }
            None
        }
    };
    if let Some(p) = &view.switchover {
        return Err(format!(
            "a {:?} request is already pending ({:?} -> {:?}); wait for it or cancel it",
            p.value.kind, p.value.from, p.value.to
        ));
    }
    let req = SwitchoverRequest { kind, from: from.clone(), to: candidate.clone(), at_wall_ms: None };
    dcs.execute(&DcsOp::Put(Write::put(Value::Switchover(req), Expect::Absent)))
        .await
        .map_err(|e| format!("cannot write the request: {e}"))?;
    let what = format!(
        "{kind:?} from {} to {}",
        from.as_deref().unwrap_or("(none)"),
        candidate.as_deref().unwrap_or("the best replica")
    );
    let Some(limit) = wait else { return Ok(format!("{what} requested")) };
    let start = std::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Ok(v) = dcs.read().await else { continue };
        let now_leader = v.leader.as_ref().map(|l| l.value.holder.clone());
        let done = now_leader.is_some()
            && now_leader != from
            && candidate.as_ref().is_none_or(|c| now_leader.as_ref() == Some(c));
        let primary_up = now_leader.as_ref().and_then(|l| v.member(l)).is_some_and(|m| {
            m.value.role == hacore::dcs::MemberRole::Primary
                && m.value.leader_term == v.leader.as_ref().map(|l| l.value.term)
        });
        if done && primary_up && v.switchover.is_none() {
            return Ok(format!("{what}: done, {} leads", now_leader.unwrap_or_default()));
        }
        if v.switchover.is_none() && !done {
            return Err(format!("{what}: the leader rejected or abandoned it; see `hashell events` and its log"));
        }
        if start.elapsed() > limit {
            return Err(format!("{what}: not done after {limit:?}; it may still complete"));
        }
    }
}
