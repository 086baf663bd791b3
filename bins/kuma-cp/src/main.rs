//! `kuma-cp`: the control plane binary. It only parses flags, configuration
//! and environment, installs logging, and wires library components into
//! servers (see `server.rs`).

mod config;
mod diagnostics;
mod dns;
mod server;
mod store;
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
    /// Prints the version.
    Version,
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
            let env: Vec<(String, String)> = std::env::vars().collect();
            let config = match config::load(config_file.as_deref(), &env) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(1);
                }
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("cannot start the async runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            match runtime.block_on(server::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("kuma-cp: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
