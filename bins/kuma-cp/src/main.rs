//! `kuma-cp`: the control plane binary. It only parses flags, configuration
//! and environment, installs logging, and wires library components into
//! servers (see `server.rs`).

mod config;
mod diagnostics;
mod dns;
mod server;
mod store;
mod tls;
mod xds;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

/// A Kuma-compatible service-mesh control plane.
#[derive(Debug, Parser)]
#[command(name = "kuma-cp", version, about)]
struct Cli {
    /// Log level: off, error, warn, info, debug or trace (or a tracing filter).
    #[arg(long, global = true, env = "KUMA_LOG_LEVEL", default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the control plane.
    Run {
        /// A YAML configuration file; `KUMA_*` environment variables override it.
        #[arg(short = 'c', long)]
        config_file: Option<PathBuf>,
    },
    /// Manages the schema of the Postgres store.
    Migrate {
        #[command(subcommand)]
        command: MigrateCommand,
    },
    /// Prints the version.
    Version,
}

#[derive(Debug, Subcommand)]
enum MigrateCommand {
    /// Creates the Postgres store's schema or upgrades it to this version's
    /// (`store.postgres.*` settings, as for `run`). Safe to run again and
    /// from several processes at once.
    Up {
        /// A YAML configuration file; `KUMA_*` environment variables override it.
        #[arg(short = 'c', long)]
        config_file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match EnvFilter::try_new(&cli.log_level) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("invalid --log-level {:?}: {e}", cli.log_level);
            return ExitCode::from(1);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Version => {
            println!("kuma-cp {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Run { config_file } => {
            let Some((config, runtime)) = load(config_file.as_deref()) else {
                return ExitCode::from(1);
            };
            match runtime.block_on(server::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("kuma-cp: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Migrate {
            command: MigrateCommand::Up { config_file },
        } => {
            let Some((config, runtime)) = load(config_file.as_deref()) else {
                return ExitCode::from(1);
            };
            if config.store.store_type != config::StoreType::Postgres {
                eprintln!(
                    "kuma-cp migrate up: store.type (KUMA_STORE_TYPE) is {}; only a postgres store has a schema to migrate",
                    config.store.store_type
                );
                return ExitCode::from(1);
            }
            let settings = config.store.postgres.to_store_config();
            match runtime.block_on(kuma_core::store::postgres::migrate_up(&settings)) {
                Ok(report) => {
                    println!(
                        "kuma-cp migrate up: database {:?} on {}:{}: {report}",
                        settings.db_name, settings.host, settings.port
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("kuma-cp migrate up: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// The effective configuration and a runtime, or `None` after printing why.
fn load(
    config_file: Option<&std::path::Path>,
) -> Option<(config::KumaCpConfig, tokio::runtime::Runtime)> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let config = match config::load(config_file, &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return None;
        }
    };
    match tokio::runtime::Runtime::new() {
        Ok(r) => Some((config, r)),
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            None
        }
    }
}
