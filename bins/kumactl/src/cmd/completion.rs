//! `kumactl completion bash|zsh|fish`.

use crate::cli::Cli;
use anyhow::Result;
use clap::CommandFactory;
use clap_complete::Shell;

pub fn run(shell: Shell) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "kumactl", &mut script);
    super::emit(&String::from_utf8_lossy(&script))
}
