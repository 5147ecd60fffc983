//! The command line: `hashell config check|example`, `run`, `init`, and the hidden `guard`.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "hashell", version, about = "PostgreSQL high availability, proved in a simulator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check or print configuration files.
    Config {
        #[command(subcommand)]
        what: ConfigCommand,
    },
    /// Run the daemon.
    Run {
        /// Configuration file.
        config: PathBuf,
        /// Override a key: --set postgresql.port=5433 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Write the cluster's initial settings ([settings]) to the DCS; refuses if it has some.
    Init {
        /// Configuration file.
        config: PathBuf,
        /// Override a key (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Planned switchover: the leader hands over to CANDIDATE (or the best replica).
    Switchover {
        /// Configuration file (to find the DCS and cluster).
        config: PathBuf,
        /// Member to hand over to (default: the most advanced healthy replica).
        #[arg(long)]
        candidate: Option<String>,
        /// When (RFC 3339, e.g. 2026-11-22T03:00:00+01:00); the leader carries it out then.
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// Do not ask for confirmation on a terminal.
        #[arg(long)]
        force: bool,
        /// Return once the request is written instead of waiting for the new leader.
        #[arg(long)]
        no_wait: bool,
    },
    /// Manual failover: make CANDIDATE the leader when the current one is gone.
    Failover {
        /// Configuration file.
        config: PathBuf,
        /// Member to promote.
        #[arg(long)]
        candidate: String,
        /// Do not ask for confirmation on a terminal.
        #[arg(long)]
        force: bool,
        /// Return once the request is written.
        #[arg(long)]
        no_wait: bool,
    },
    /// The leader and the members under it, with their state and lag.
    Topology {
        /// Configuration file.
        config: PathBuf,
    },
    /// Restart PostgreSQL on MEMBERs (default: every member; replicas first, the leader last).
    Restart {
        /// Configuration file.
        config: PathBuf,
        /// Members to restart.
        members: Vec<String>,
        /// Only members in this role.
        #[arg(long, value_parser = ["primary", "replica", "any"])]
        role: Option<String>,
        /// Only members with settings changed that need a restart.
        #[arg(long)]
        pending: bool,
        /// Schedule it (RFC 3339) instead of restarting now.
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// Restart the replicas, then switch over to one of them instead of restarting the
        /// primary in place (the old primary restarts as a replica in the switchover).
        #[arg(long, conflicts_with_all = ["at", "role"])]
        switchover: bool,
        /// Do not ask for confirmation (required without a terminal).
        #[arg(long)]
        force: bool,
    },
    /// Re-read the configuration file on MEMBERs (default: every member): PostgreSQL
    /// parameters, pg_hba and restore_command apply at once.
    Reload {
        /// Configuration file.
        config: PathBuf,
        /// Members to reload.
        members: Vec<String>,
    },
    /// The events the members recorded: failovers, switchovers, fencing, joins, settings changes.
    Events {
        /// Configuration file.
        config: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: crate::commands::Format,
        /// Keep printing new events until interrupted.
        #[arg(long)]
        follow: bool,
    },
    /// Delete the cluster from the store, once every daemon of it is stopped.
    Remove {
        /// Configuration file (names the cluster and the store).
        config: PathBuf,
        /// The cluster's name, to confirm without a terminal.
        #[arg(long, value_name = "CLUSTER")]
        confirm: Option<String>,
    },
    /// The members: role, state, timeline, WAL position and lag, tags.
    List {
        /// Configuration file (to find the store and cluster).
        config: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: crate::commands::Format,
        /// Refresh every SECONDS until interrupted.
        #[arg(long, value_name = "SECONDS")]
        watch: Option<f64>,
    },
    /// The timeline forks: who promoted, when, why, from where.
    History {
        /// Configuration file.
        config: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: crate::commands::Format,
    },
    /// Maintenance mode: no automatic failover; the daemons keep publishing and renewing.
    Pause {
        /// Configuration file.
        config: PathBuf,
        /// Wait until every member applied it.
        #[arg(long)]
        wait: bool,
    },
    /// Leave maintenance mode.
    Resume {
        /// Configuration file.
        config: PathBuf,
        /// Wait until every member applied it.
        #[arg(long)]
        wait: bool,
    },
    /// Promote a standby cluster (a disaster-recovery site) to a primary cluster: its
    /// leader stops replicating from the upstream and becomes writable on a new timeline.
    /// Make sure the old primary site no longer accepts writes first.
    PromoteCluster {
        /// Configuration file.
        config: PathBuf,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
        /// Wait (at most this many seconds) until the leader is a writable primary.
        #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
        wait: f64,
    },
    /// Rebuild NODE's data directory from a healthy member (stop, wipe, clone, stream).
    Reinit {
        /// Configuration file.
        config: PathBuf,
        /// The member to rebuild (never the leader).
        node: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Print the cluster's settings as the store holds them.
    ShowConfig {
        /// Configuration file.
        config: PathBuf,
    },
    /// Change the cluster's settings: -s KEY=VALUE (JSON values; null resets to the
    /// default), or in $EDITOR without -s.
    EditConfig {
        /// Configuration file.
        config: PathBuf,
        /// A setting to change (repeatable), e.g. -s ttl=20000 -s synchronous_mode=on.
        #[arg(short = 's', long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// The store: create or check the DynamoDB table (the daemon never creates it).
    Dcs {
        #[command(subcommand)]
        what: DcsCommand,
    },
    /// A real 3-node cluster on loopback: failover of a killed primary, measured, then cleaned up.
    Demo {
        /// PostgreSQL's binaries.
        #[arg(long, default_value = "/usr/lib/postgresql/15/bin")]
        bin_dir: PathBuf,
        /// Keep the directory with the logs and data afterwards.
        #[arg(long)]
        keep: bool,
    },
    /// The fencing guard (started by the daemon; not for direct use).
    #[command(hide = true)]
    Guard {
        /// Unix socket to serve.
        #[arg(long)]
        socket: PathBuf,
        /// Data directory of the instance to fence.
        #[arg(long)]
        data_dir: PathBuf,
        /// Hardware watchdog device to hold while PostgreSQL may write.
        #[arg(long)]
        watchdog: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DcsCommand {
    /// Create the DynamoDB table of FILE's [dcs.dynamodb] (on-demand capacity); fine if it
    /// exists with the right schema.
    CreateTable {
        /// Configuration file.
        config: PathBuf,
    },
    /// Check that the store answers (and, for DynamoDB, that the table has the right schema).
    Check {
        /// Configuration file.
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate FILE (with the environment's HASHELL_* overrides and --set flags).
    Check {
        /// Configuration file.
        file: PathBuf,
        /// Override a key: --set postgresql.port=5433 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Print a commented example with every key.
    Example,
}

fn parse_sets(sets: &[String]) -> Result<Vec<(String, String)>, String> {
    sets.iter()
        .map(|s| {
            s.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .ok_or_else(|| format!("--set {s:?}: write KEY=VALUE, e.g. --set postgresql.port=5433"))
        })
        .collect()
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config { what: ConfigCommand::Example } => {
            print!("{}", crate::config::EXAMPLE);
            ExitCode::SUCCESS
        }
        Command::Config { what: ConfigCommand::Check { file, set } } => {
            let sets = match parse_sets(&set) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("hashell: {e}");
                    return ExitCode::from(2);
                }
            };
            match crate::config::load_file(&file, &sets) {
                Ok(c) => {
                    let store = if c.dcs.etcd.is_some() { "etcd" } else { "dynamodb" };
                    println!(
                        "{}: ok (cluster {}, node {}, {store}, ttl {} ms, loop_wait {} ms)",
                        file.display(),
                        c.cluster.name,
                        c.node.name,
                        c.settings.ttl.0,
                        c.settings.loop_wait.0
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprint!("{e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Run { config, set } => {
            let cfg = match load(&config, &set) {
                Ok(c) => c,
                Err(code) => return code,
            };
            crate::run::init_logging(&cfg);
            let sets = parse_sets(&set).unwrap_or_default();
            match runtime().block_on(crate::run::run(cfg, Some((config, sets)))) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("hashell: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Init { config, set } => {
            let cfg = match load(&config, &set) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match runtime().block_on(crate::run::init(&cfg)) {
                Ok(msg) => {
                    println!("{msg}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("hashell: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Switchover { config, candidate, at, force, no_wait } => {
            switchover(&config, hacore::dcs::SwitchoverKind::Switchover, candidate, at, force, no_wait)
        }
        Command::Failover { config, candidate, force, no_wait } => {
            switchover(&config, hacore::dcs::SwitchoverKind::Failover, Some(candidate), None, force, no_wait)
        }
        Command::Topology { config } => with_store(&config, |cfg, store| async move {
            let doc = crate::commands::cluster(&cfg, &*store).await?;
            Ok(crate::commands::render_topology(&doc))
        }),
        Command::Restart { config, members, role, pending, at, switchover, force } => {
            with_store(&config, |cfg, store| async move {
                let how = crate::commands::RestartHow { role: role.as_deref(), pending, at: at.as_deref(), switchover };
                crate::commands::restart(&cfg, &*store, &members, &how, force).await
            })
        }
        Command::Reload { config, members } => {
            with_store(&config, |cfg, store| async move { crate::commands::reload(&cfg, &*store, &members).await })
        }
        Command::Events { config, format, follow } => with_store(&config, |_cfg, store| async move {
            let mut shown = 0usize;
            let mut last: Option<hacore::dcs::Event> = None;
            loop {
                let events = crate::operator::read(&*store).await?.events;
                // The list is bounded: find where the last one shown sits now.
                let start = match &last {
                    Some(l) => events.iter().rposition(|e| e == l).map_or(0, |i| i + 1),
                    None => 0,
                };
                let new = &events[start.min(events.len())..];
                if !new.is_empty() || shown == 0 {
                    match format {
                        crate::commands::Format::Json => {
                            for e in new {
                                println!("{}", serde_json::to_string(e).unwrap_or_default());
                            }
                        }
                        crate::commands::Format::Table => {
                            let text = crate::commands::render_events(new);
                            let body =
                                if shown == 0 { text.as_str() } else { text.split_once('\n').map_or("", |x| x.1) };
                            print!("{body}");
                        }
                    }
                    shown += new.len().max(1);
                }
                last = events.last().cloned().or(last);
                if !follow {
                    return Ok(String::new());
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }),
        Command::Remove { config, confirm } => {
            with_store(
                &config,
                |cfg, store| async move { crate::commands::remove(&cfg, &store, confirm.as_deref()).await },
            )
        }
        Command::Demo { bin_dir, keep } => match crate::demo::run(crate::demo::DemoOptions { bin_dir, keep }) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hashell demo: {e}");
                ExitCode::from(1)
            }
        },
        Command::List { config, format, watch } => with_store(&config, |cfg, store| async move {
            loop {
                let doc = crate::commands::cluster(&cfg, &*store).await?;
                match format {
                    crate::commands::Format::Json => {
                        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default())
                    }
                    crate::commands::Format::Table => {
                        if watch.is_some() {
                            print!("\x1b[2J\x1b[H");
                        }
                        print!("{}", crate::commands::render_list(&doc))
                    }
                }
                match watch {
                    Some(s) => tokio::time::sleep(std::time::Duration::from_secs_f64(s.max(0.2))).await,
                    None => return Ok(String::new()),
                }
            }
        }),
        Command::History { config, format } => with_store(&config, |_cfg, store| async move {
            let view = crate::operator::read(&*store).await?;
            let forks = view.history.map(|h| h.value.forks).unwrap_or_default();
            Ok(match format {
                crate::commands::Format::Json => serde_json::to_string_pretty(&forks).unwrap_or_default(),
                crate::commands::Format::Table => crate::commands::render_history(&forks),
            })
        }),
        Command::Pause { config, wait } => {
            with_store(
                &config,
                |cfg, store| async move { crate::commands::set_paused(&cfg, &*store, true, wait).await },
            )
        }
        Command::Resume { config, wait } => {
            with_store(
                &config,
                |cfg, store| async move { crate::commands::set_paused(&cfg, &*store, false, wait).await },
            )
        }
        Command::PromoteCluster { config, force, wait } => with_store(&config, |cfg, store| async move {
            crate::commands::promote_cluster(&cfg, &*store, force, wait).await
        }),
        Command::Reinit { config, node, force } => {
            with_store(&config, |cfg, store| async move { crate::commands::reinit(&cfg, &*store, &node, force).await })
        }
        Command::ShowConfig { config } => with_store(&config, |cfg, store| async move {
            let view = crate::operator::read(&*store).await?;
            let (version, settings) = match view.config {
                Some(c) => (Some(c.version.0), c.value),
                None => (None, cfg.core().defaults),
            };
            let doc = serde_json::json!({ "version": version, "settings": settings });
            Ok(serde_json::to_string_pretty(&doc).unwrap_or_default())
        }),
        Command::EditConfig { config, set } => with_store(&config, |cfg, store| async move {
            let core = cfg.core();
            let patch = if set.is_empty() {
                let view = crate::operator::read(&*store).await?;
                let current = view.config.map_or_else(|| core.defaults.clone(), |c| c.value);
                match crate::commands::edit_in_editor(&serde_json::to_value(&current).unwrap_or_default())? {
                    Some(p) => p,
                    None => return Ok("no change".to_string()),
                }
            } else {
                crate::commands::sets_to_patch(&set)?
            };
            let s = crate::operator::patch_config(&*store, &patch, &core.defaults, &core.safety, "cli").await?;
            Ok(serde_json::to_string_pretty(&s).unwrap_or_default())
        }),
        Command::Dcs { what: DcsCommand::CreateTable { config } } => with_store(&config, |_cfg, store| async move {
            match &*store {
                #[cfg(feature = "dynamodb")]
                crate::store::Store::Dynamo(d) => {
                    d.create_table().await?;
                    d.check_table().await?;
                    Ok(format!("{}: ready", d.location()))
                }
                crate::store::Store::Etcd(_) => {
                    Err(crate::commands::CmdError("etcd needs no table: [dcs.etcd] is configured".into(), 2))
                }
            }
        }),
        Command::Dcs { what: DcsCommand::Check { config } } => with_store(&config, |_cfg, store| async move {
            #[cfg(feature = "dynamodb")]
            if let crate::store::Store::Dynamo(d) = &*store {
                d.check_table().await?;
            }
            let view = crate::operator::read(&*store).await?;
            Ok(format!(
                "{}: answers; {} member(s), leader {}",
                store.location(),
                view.members.len(),
                view.leader.map_or_else(|| "none".to_string(), |l| l.value.holder)
            ))
        }),
        Command::Guard { socket, data_dir, watchdog } => {
            let mut args =
                vec!["--socket".into(), socket.into_os_string(), "--data-dir".into(), data_dir.into_os_string()];
            if let Some(w) = watchdog {
                args.extend(["--watchdog".into(), w.into_os_string()]);
            }
            crate::guard::main_with_args(args.into_iter())
        }
    }
}

fn switchover(
    config: &std::path::Path,
    kind: hacore::dcs::SwitchoverKind,
    candidate: Option<String>,
    at: Option<String>,
    force: bool,
    no_wait: bool,
) -> ExitCode {
    let cfg = match load(config, &[]) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let at_wall_ms = match at.as_deref().map(|t| (t, crate::operator::parse_wall_ms(t))) {
        None => None,
        Some((_, Some(ms))) => Some(ms),
        Some((t, None)) => {
            eprintln!("hashell: --at {t:?} is not an RFC 3339 time such as 2026-11-22T03:00:00+01:00");
            return ExitCode::from(2);
        }
    };
    if !force {
        use std::io::{BufRead, IsTerminal, Write};
        // Scripts (no terminal) are not asked: a switchover loses no data.
        if std::io::stdin().is_terminal() {
            let to = candidate.as_deref().unwrap_or("the best replica");
            let when = at.as_deref().map_or_else(|| "now".to_string(), |t| format!("at {t}"));
            print!("{kind:?} of cluster {} to {to} {when}? [y/N] ", cfg.cluster.name);
            let _ = std::io::stdout().flush();
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
            if !matches!(line.trim(), "y" | "Y" | "yes") {
                eprintln!("hashell: not confirmed; nothing done");
                return ExitCode::from(1);
            }
        }
    }
    let limit = std::time::Duration::from_millis(cfg.settings.switchover_timeout.0 + 2 * cfg.settings.ttl.0);
    let wait = (!no_wait && at_wall_ms.is_none()).then_some(limit);
    match runtime().block_on(crate::run::request_switchover(&cfg, kind, candidate, at_wall_ms, wait)) {
        Ok(msg) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        Err(crate::commands::CmdError(e, code)) => {
            eprintln!("hashell: {e}");
            ExitCode::from(code)
        }
    }
}

/// Loads the file, connects to its store and runs `f`; prints its text or its error.
fn with_store<F, Fut>(config: &std::path::Path, f: F) -> ExitCode
where
    F: FnOnce(crate::config::FileConfig, std::sync::Arc<crate::store::Store>) -> Fut,
    Fut: std::future::Future<Output = Result<String, crate::commands::CmdError>>,
{
    let cfg = match load(config, &[]) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let r = runtime().block_on(async move {
        let store = crate::run::connect_store(&cfg).await.map_err(|e| crate::commands::CmdError(e, 1))?;
        f(cfg, std::sync::Arc::new(store)).await
    });
    match r {
        Ok(text) => {
            if !text.is_empty() {
                println!("{}", text.trim_end());
            }
            ExitCode::SUCCESS
        }
        Err(crate::commands::CmdError(msg, code)) => {
            eprintln!("hashell: {msg}");
            ExitCode::from(code)
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime (threads, timers)")
}

fn load(config: &std::path::Path, set: &[String]) -> Result<crate::config::FileConfig, ExitCode> {
    let sets = parse_sets(set).map_err(|e| {
        eprintln!("hashell: {e}");
        ExitCode::from(2)
    })?;
    crate::config::load_file(config, &sets).map_err(|e| {
        eprint!("{e}");
        ExitCode::from(1)
    })
}
