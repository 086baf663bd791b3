//! `kuma-dp`: the Kuma data-plane launcher.
//!
//! It fetches an Envoy bootstrap from kuma-cp's bootstrap server (over TLS)
//! and supervises a real Envoy process, forwarding signals
//! and exiting with Envoy's status.

mod admin_port;
mod bootstrap;
mod cli;
mod dataplane;
mod envoy;

use anyhow::Context;
use clap::Parser;
use cli::{Cli, Command, RunArgs};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

fn main() {
    let cli = Cli::parse();
    let args = match cli.command {
        Command::Version => {
            println!("kuma-dp {}", env!("CARGO_PKG_VERSION"));
            return;
        }
        Command::Run(args) => args,
    };
    init_tracing(args.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match runtime.block_on(run(*args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            1
        }
    };
    // A bootstrap request may still be in flight on a blocking thread when a
    // signal ends the wait; don't wait for it.
    runtime.shutdown_timeout(Duration::from_millis(100));
    std::process::exit(code);
}

fn init_tracing(level: cli::LogLevel) {
    let filter = tracing_subscriber::EnvFilter::new(level.as_directive());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// The config directory: the given one (created) or a temporary one that is
/// removed when the guard drops.
fn config_dir(given: Option<&PathBuf>) -> anyhow::Result<(PathBuf, Option<tempfile::TempDir>)> {
    match given {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create --config-dir {}", dir.display()))?;
            Ok((dir.clone(), None))
        }
        None => {
            let tmp = tempfile::Builder::new()
                .prefix("kuma-dp-")
                .tempdir()
                .context("cannot create a temporary config directory")?;
            Ok((tmp.path().to_path_buf(), Some(tmp)))
        }
    }
}

/// The dataplane token and its file's absolute path (empty when not
/// given), from `--dataplane-token` or `--dataplane-token-file`; an
/// unreadable or empty file is an error.
fn dataplane_token(args: &RunArgs) -> anyhow::Result<(String, String)> {
    if let Some(token) = &args.dataplane_token {
        let token = token.0.trim();
        if token.is_empty() {
            anyhow::bail!(
                "--dataplane-token (KUMA_DATAPLANE_RUNTIME_TOKEN) is empty: pass the token printed by \
                 `kumactl generate dataplane-token`"
            );
        }
        return Ok((token.to_string(), String::new()));
    }
    let Some(path) = args
        .dataplane_token_file
        .as_ref()
        .filter(|p| !p.as_os_str().is_empty())
    else {
        return Ok((String::new(), String::new()));
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --dataplane-token-file {}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        anyhow::bail!(
            "--dataplane-token-file {} is empty: write the token printed by \
             `kumactl generate dataplane-token --name NAME --mesh MESH` into it",
            path.display()
        );
    }
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.clone());
    Ok((token.to_string(), abs.display().to_string()))
}

/// Writes `text` to `path` readable by its owner only: the bootstrap holds
/// the dataplane token.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // A file left by an earlier run keeps its mode: tighten it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())
}

async fn run(args: RunArgs) -> anyhow::Result<i32> {
    // Everything that can be checked locally is, before the control plane
    // is contacted.
    let identity = dataplane::load(&args)?;
    let binary = envoy::resolve_binary(&args.binary_path, std::env::var_os("PATH").as_deref())?;
    let client = bootstrap::Client::new(&args.cp_address, args.ca_cert_file.as_deref())?;
    let (dataplane_token, dataplane_token_path) = dataplane_token(&args)?;
    let admin_port = args.admin_port.unwrap_or_default().pick()?;
    tracing::info!(
        name = %identity.name,
        mesh = %identity.mesh,
        admin_port,
        "Envoy admin port chosen: 127.0.0.1:{admin_port}"
    );

    let mut signals = envoy::Signals::install()?;
    let (dir, _tmp_guard) = config_dir(args.config_dir.as_ref())?;

    let request = bootstrap::BootstrapRequest {
        mesh: identity.mesh.clone(),
        name: identity.name.clone(),
        admin_port,
        dataplane_token,
        dataplane_token_path,
        dataplane_resource: identity
            .resource
            .as_ref()
            .map(|r| r.to_json())
            .unwrap_or_default(),
        delta_xds: args.xds_delta,
        version: bootstrap::current_version(),
    };
    tracing::info!(cp = %args.cp_address, "fetching the Envoy bootstrap from the control plane");
    let interrupt = async {
        let sig = signals.recv().await;
        tracing::info!(signal = %sig, "signal received before Envoy started; exiting");
    };
    let yaml = match bootstrap::fetch_with_retries(&client, &request, interrupt).await? {
        bootstrap::Fetched::Bootstrap(yaml) => yaml,
        bootstrap::Fetched::Interrupted => return Ok(0),
    };

    let config_path = dir.join("bootstrap.yaml");
    write_private(&config_path, &yaml)
        .with_context(|| format!("cannot write the bootstrap to {}", config_path.display()))?;
    tracing::info!(path = %config_path.display(), "Envoy bootstrap written");

    let cmd = envoy::EnvoyCommand {
        binary,
        config_path,
        log_level: args.envoy_log_level.clone(),
        concurrency: args.concurrency,
        drain_time: args.drain_time.as_duration(),
        admin_port,
    };
    envoy::run(&cmd, &mut signals).await
}
