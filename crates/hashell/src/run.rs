//! Starting the daemon from a configuration: logging, the store, the REST API, the loop;
//! and `hashell init`, which writes the cluster's initial settings to the store.

use crate::config::{FileConfig, LogFormat};
use crate::daemon::{Connector, Daemon};
use crate::operator;
use crate::store::Store;
#[cfg(feature = "dynamodb")]
use backend_dynamo::DynamoDcs;
use backend_etcd::clock::BootClock;
use backend_etcd::{EtcdConfig, EtcdDcs, EtcdTls};
use hacore::dcs::{Dcs, DcsOp, Expect, SwitchoverKind, Value, Write};
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
    let e = cfg.dcs.etcd.as_ref().ok_or("the configuration has no [dcs.etcd]")?;
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

/// Connects the daemon to the store `cfg` names (retried by the loop until it succeeds).
fn store_connector(cfg: &FileConfig) -> Result<Connector<Store>, String> {
    #[cfg(feature = "dynamodb")]
    if let Some(d) = crate::store::dynamo_config(cfg) {
        return Ok(Box::new(move || {
            let d = d.clone();
            Box::pin(async move { DynamoDcs::connect(&d, Arc::new(BootClock)).await.map(Store::Dynamo) })
        }));
    }
    let c = etcd_config(cfg)?;
    Ok(Box::new(move || {
        let c = c.clone();
        Box::pin(async move { EtcdDcs::connect(&c, Arc::new(BootClock)).await.map(|e| Store::Etcd(Box::new(e))) })
    }))
}

/// The store a configuration names, connected (for commands; the daemon retries instead).
pub async fn connect_store(cfg: &FileConfig) -> Result<Store, String> {
    crate::store::connect(cfg).await
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

/// Runs the daemon until it is killed. `source` (the file and its `--set` overrides) is
/// what `POST /reload` and SIGHUP re-read.
pub async fn run(cfg: FileConfig, source: Option<(std::path::PathBuf, Vec<(String, String)>)>) -> Result<(), String> {
    refuse_root()?;
    let major = crate::pg::ctl::supported_major(&cfg.postgresql.bin_dir)?;
    tracing::info!(postgres_major = major, bin_dir = %cfg.postgresql.bin_dir.display(), "PostgreSQL binaries");
    let tls = crate::tls::server_config(&cfg.rest)?;
    let daemon = Daemon::new(cfg.clone(), store_connector(&cfg)?)?;
    let shared = daemon.shared();
    if let Some((path, sets)) = source {
        shared.set_reload_source(path, sets, cfg.clone());
        let sh = shared.clone();
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| format!("cannot listen for SIGHUP: {e}"))?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                if let Err(e) = sh.reload().await {
                    tracing::error!(error = %e, "reload on SIGHUP failed");
                }
            }
        });
    }
    let listener = tokio::net::TcpListener::bind(&cfg.rest.listen)
        .await
        .map_err(|e| format!("cannot listen on rest.listen {}: {e}", cfg.rest.listen))?;
    tracing::info!(listen = %cfg.rest.listen, tls = tls.is_some(), "REST API up");
    let app = crate::api::router(shared, crate::api::Access::of(&cfg)?);
    tokio::spawn(crate::serve::serve(listener, app, tls));
    daemon.run().await;
    Ok(())
}

/// `hashell init`: writes `[settings]` as the cluster's `config` key; refuses when the
/// cluster already has one.
pub async fn init(cfg: &FileConfig) -> Result<String, String> {
    let dcs = connect_store(cfg).await?;
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
    Ok(format!("cluster {} initialized in {}", cfg.cluster.name, dcs.location()))
}

/// `hashell switchover` / `hashell failover`: writes the `switchover` key (refused while
/// another request is pending) and, with `wait`, follows it until a new leader serves or
/// the leader rejects it.
pub async fn request_switchover(
    cfg: &FileConfig,
    kind: SwitchoverKind,
    candidate: Option<String>,
    at_wall_ms: Option<u64>,
    wait: Option<Duration>,
) -> Result<String, crate::commands::CmdError> {
    let dcs = connect_store(cfg).await?;
    let ask = operator::SwitchoverAsk { kind, from: None, to: candidate, at_wall_ms };
    // A wrong request (unknown candidate, the leader itself) exits 2, a refusal 1.
    let req = operator::request_switchover(&dcs, &ask).await?;
    let what = format!(
        "{kind:?} from {} to {}",
        req.from.as_deref().unwrap_or("(none)"),
        req.to.as_deref().unwrap_or("the best replica")
    );
    if let Some(at) = req.at_wall_ms {
        return Ok(format!("{what} scheduled for {}", crate::commands::rfc3339(at)));
    }
    let Some(limit) = wait else { return Ok(format!("{what} requested")) };
    eprintln!("{what} requested; waiting until the new leader serves (at most {} s) ...", limit.as_secs());
    match operator::wait_switchover(&dcs, &req, limit).await {
        Ok(leader) => Ok(format!("{what}: done, {leader} leads")),
        Err(e) => Err(crate::commands::CmdError(format!("{what}: {e}"), 1)),
    }
}
