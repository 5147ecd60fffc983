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
