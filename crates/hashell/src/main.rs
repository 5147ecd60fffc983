//! `hashell`: the daemon and CLI.

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
    /// Run the daemon (arrives with issue 6).
    Run {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config { what: ConfigCommand::Example } => {
            print!("{}", hashell::config::EXAMPLE);
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
            match hashell::config::load_file(&file, &sets) {
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
        Command::Run { config } => {
            if let Err(e) = hashell::config::load_file(&config, &[]) {
                eprint!("{e}");
                return ExitCode::from(1);
            }
            eprintln!("hashell: the configuration is valid; the daemon loop arrives with issue 6");
            ExitCode::from(2)
        }
    }
}
