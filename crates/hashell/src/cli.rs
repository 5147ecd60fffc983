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
        /// Return once the request is written.
        #[arg(long)]
        no_wait: bool,
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
    /// Change the cluster's settings: -s KEY=VALUE (JSON values; null resets to the default).
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
            match runtime().block_on(crate::run::run(cfg)) {
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
        Command::Switchover { config, candidate, no_wait } => {
            switchover(&config, hacore::dcs::SwitchoverKind::Switchover, candidate, no_wait)
        }
        Command::Failover { config, candidate, no_wait } => {
            switchover(&config, hacore::dcs::SwitchoverKind::Failover, Some(candidate), no_wait)
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
            let patch = crate::commands::sets_to_patch(&set)?;
            let core = cfg.core();
            let s = crate::operator::patch_config(&*store, &patch, &core.defaults, &core.safety).await?;
            Ok(serde_json::to_string_pretty(&s).unwrap_or_default())
        }),
        Command::Dcs { what: DcsCommand::CreateTable { config } } => with_store(&config, |_cfg, store| async move {
            match &*store {
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
            match crate::guard::run(&socket, &data_dir, watchdog.as_deref()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("hashell guard: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn switchover(
    config: &std::path::Path,
    kind: hacore::dcs::SwitchoverKind,
    candidate: Option<String>,
    no_wait: bool,
) -> ExitCode {
    let cfg = match load(config, &[]) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let limit = std::time::Duration::from_millis(cfg.settings.switchover_timeout.0 + 2 * cfg.settings.ttl.0);
    let wait = (!no_wait).then_some(limit);
    match runtime().block_on(crate::run::request_switchover(&cfg, kind, candidate, wait)) {
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
