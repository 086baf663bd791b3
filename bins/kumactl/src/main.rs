//! `kumactl`: the command-line client of the control plane's HTTP API.
//!
//! This file only parses flags and turns an error into Kuma's
//! `Error: ...` line and exit code 1; the commands live in [`cmd`].

mod cli;
mod client;
mod cmd;
mod config;
mod format;
mod table;
mod template;
mod types;
mod views;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cmd::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
