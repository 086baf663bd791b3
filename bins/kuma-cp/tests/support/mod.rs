//! Helpers for end-to-end tests that run the real `kuma-cp` and `kumactl`
//! binaries: start a control plane on ephemeral ports, find its bound
//! addresses in its log, wait for `/ready`, and talk to it over HTTP.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Every port setting, so tests can run many control planes side by side.
pub const PORT_VARS: [&str; 8] = [
    "KUMA_API_SERVER_PORT",
    "KUMA_XDS_SERVER_GRPC_PORT",
    "KUMA_BOOTSTRAP_SERVER_PORT",
    "KUMA_XDS_SERVER_DIAGNOSTICS_PORT",
    "KUMA_DNS_SERVER_PORT",
    "KUMA_SDS_SERVER_GRPC_PORT",
    "KUMA_ADMIN_SERVER_LOCAL_PORT",
    "KUMA_MONITORING_ASSIGNMENT_SERVER_GRPC_PORT",
];

/// How long start-up, shutdown and one HTTP call may take at most.
pub const STARTUP_LIMIT: Duration = Duration::from_secs(30);
pub const EXIT_LIMIT: Duration = Duration::from_secs(10);

pub fn kuma_cp_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kuma-cp"))
}

/// `kumactl` from the same target directory as `kuma-cp`.
pub fn kumactl_bin() -> PathBuf {
    let cp = kuma_cp_bin();
    let dir = cp.parent().expect("kuma-cp has a parent directory");
    let path = dir.join(format!("kumactl{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "kumactl not found at {}: build it first with `cargo build -p kumactl` \
         (or `cargo build --workspace --bins`) using the same profile as the tests",
        path.display()
    );
    path
}

/// A `kuma-cp run` command with every `KUMA_*` variable of the caller removed
/// and every port set to 0.
pub fn kuma_cp_command(env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(kuma_cp_bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("KUMA_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("run").env("KUMA_LOG_LEVEL", "info");
    for var in PORT_VARS {
        cmd.env(var, "0");
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Waits at most `limit` for `child` to exit.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `kuma-cp` with `args`, expecting it to exit by itself within
/// [`EXIT_LIMIT`]; returns its status and stderr.
pub fn run_to_exit(mut cmd: Command) -> (ExitStatus, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kuma-cp");
    let Some(_) = wait_exit(&mut child, EXIT_LIMIT) else {
        let _ = child.kill();
        let out = child.wait_with_output().expect("collect output");
        panic!(
            "kuma-cp did not exit within {EXIT_LIMIT:?}; stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let out = child.wait_with_output().expect("collect output");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running `kuma-cp`, killed when dropped.
pub struct ControlPlane {
    pub child: Child,
    /// `http://127.0.0.1:PORT` of the HTTP API.
    pub api: String,
    /// `http://127.0.0.1:PORT` of the diagnostics server.
    pub diagnostics: String,
    /// `http://127.0.0.1:PORT` of the admin server (tokens, Secrets).
    pub admin: String,
    /// Where `kumactl` keeps its config for this control plane.
    pub kumactl_home: tempfile::TempDir,
    /// How long from spawn to `/ready` answering 200.
    pub ready_after: Duration,
    /// What it logged until it was ready.
    pub startup_log: Vec<String>,
    lines: mpsc::Receiver<String>,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `host:port` in a line like `listening server="api" address=0.0.0.0:41233`.
pub fn address_of(line: &str, server: &str) -> Option<String> {
    let rest = line
        .split(&format!("server=\"{server}\" address="))
        .nth(1)?;
    let addr = rest.split_whitespace().next()?;
    let port: u16 = addr.rsplit(':').next()?.parse().ok()?;
    Some(format!("127.0.0.1:{port}"))
}

impl ControlPlane {
    /// Starts `kuma-cp run` on ephemeral ports with `env` and waits until
    /// `/ready` answers 200.
    pub fn start(env: &[(&str, &str)]) -> ControlPlane {
        let started = Instant::now();
        let mut child = kuma_cp_command(env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kuma-cp");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("kuma-cp: {line}");
                // Keep draining after the receiver is gone, so the child
                // never blocks on a full pipe.
                let _ = tx.send(line);
            }
        });
        let mut cp = ControlPlane {
            child,
            api: String::new(),
            diagnostics: String::new(),
            admin: String::new(),
            kumactl_home: tempfile::tempdir().expect("temp dir"),
            ready_after: Duration::ZERO,
            startup_log: Vec::new(),
            lines: rx,
        };
        let deadline = started + STARTUP_LIMIT;
        let mut log = Vec::new();
        let (mut api, mut diag, mut admin) = (None, None, None);
        while api.is_none() || diag.is_none() || admin.is_none() {
            match cp.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    api = api.or_else(|| address_of(&line, "api"));
                    diag = diag.or_else(|| address_of(&line, "diagnostics"));
                    admin = admin.or_else(|| address_of(&line, "admin"));
                    log.push(line);
                }
                Err(_) => cp.check_alive(deadline, &log),
            }
        }
        cp.api = format!("http://{}", api.unwrap());
        cp.diagnostics = format!("http://{}", diag.unwrap());
        cp.admin = format!("http://{}", admin.unwrap());
        let ready = format!("{}/ready", cp.diagnostics);
        while http_get(&ready).0 != 200 {
            log.extend(cp.lines.try_iter());
            cp.check_alive(deadline, &log);
            std::thread::sleep(Duration::from_millis(10));
        }
        cp.ready_after = started.elapsed();
        // The "ready" line comes right after the last server is bound.
        let more_until = Instant::now() + Duration::from_secs(1);
        while !log.iter().any(|l| l.contains("kuma-cp is ready")) && Instant::now() < more_until {
            if let Ok(line) = cp.lines.recv_timeout(Duration::from_millis(20)) {
                log.push(line);
            }
        }
        cp.startup_log = log;
        cp
    }

    /// Panics, with the log so far, if the child exited or `deadline` passed.
    fn check_alive(&mut self, deadline: Instant, log: &[String]) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!(
                "kuma-cp exited during start-up ({status}):\n{}",
                log.join("\n")
            );
        }
        assert!(
            Instant::now() < deadline,
            "kuma-cp not ready within {STARTUP_LIMIT:?}:\n{}",
            log.join("\n")
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }

    /// Runs `kumactl --api-url <api> args...` with a private config file.
    pub fn kumactl(&self, args: &[&str]) -> Output {
        let config = self.kumactl_home.path().join("config");
        let config = config.to_str().expect("utf-8 temp path");
        kumactl(&["--config-file", config, "--api-url", &self.api], args)
    }

    /// Like [`Self::kumactl`] and asserts success; returns stdout.
    pub fn kumactl_ok(&self, args: &[&str]) -> String {
        let out = self.kumactl(args);
        assert!(
            out.status.success(),
            "kumactl {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Sends `signal` (e.g. `TERM`) with `kill(1)`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }
}

/// Runs kumactl with `global` options then `args`, at most [`EXIT_LIMIT`].
pub fn kumactl(global: &[&str], args: &[&str]) -> Output {
    let mut child = Command::new(kumactl_bin())
        .args(global)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kumactl");
    if wait_exit(&mut child, EXIT_LIMIT).is_none() {
        let _ = child.kill();
        panic!("kumactl {args:?} did not finish within {EXIT_LIMIT:?}");
    }
    child.wait_with_output().expect("kumactl output")
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(EXIT_LIMIT))
        .build()
        .into()
}

fn finish(resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, String) {
    let mut resp = resp.expect("HTTP request");
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_string()
        .expect("read body");
    (status, body)
}

pub fn http_get(url: &str) -> (u16, String) {
    match agent().get(url).call() {
        Ok(r) => finish(Ok(r)),
        // Not listening yet, or already gone.
        Err(ureq::Error::Io(_)) | Err(ureq::Error::ConnectionFailed) => (0, String::new()),
        Err(e) => panic!("GET {url}: {e}"),
    }
}

pub fn http_put(url: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    finish(
        agent()
            .put(url)
            .header("content-type", content_type)
            .send(body),
    )
}

pub fn http_post(url: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    finish(
        agent()
            .post(url)
            .header("content-type", content_type)
            .send(body),
    )
}

pub fn http_delete(url: &str) -> (u16, String) {
    finish(agent().delete(url).call())
}

pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// The `field`s of an error body's `causes`.
pub fn cause_fields(body: &str) -> Vec<String> {
    json(body)["causes"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|v| v["field"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}
