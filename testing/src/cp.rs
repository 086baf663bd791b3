//! [`ControlPlane`]: a `kuma-cp run` on free ports, with its own work
//! directory (its log, the saved signing keys, `kumactl`'s config) and its
//! own local store directory, stopped by pid when dropped, also while a test
//! panics.
//!
//! Dataplane tokens are checked by default, so proxies get a token issued
//! through the admin server ([`ControlPlane::issue_token`]).
//!
//! The bootstrap server, ADS and SDS speak TLS. The harness gives every
//! control plane a server certificate of its own CA, kept in the control
//! plane's directory (`cp-tls/`, as `general.tlsCertFile`/`tlsKeyFile`), so
//! a control plane restarted in the same directory, even on a fresh store,
//! keeps the identity its proxies trust; a test that sets
//! `KUMA_GENERAL_TLS_CERT_FILE` itself, or passes [`OWN_TLS`], gets the
//! control plane's own (its CA kept in the store). Either way
//! [`ControlPlane::ca_file`] holds the CA proxies trust, read from the
//! admin server's `GET /control-plane/ca-cert`, and kuma-dp is given it.
//!
//! Two ways to restart:
//! - [`ControlPlane::start_in`] with `Some(ports)`: a new control plane on
//!   the same ports with a fresh, empty store; the signing keys saved from
//!   the earlier run are put back through its admin server, so proxies'
//!   tokens stay valid.
//! - [`ControlPlane::start_on_store`] with a [`StoreDir`] the test owns:
//!   the same store, as a real restart (e.g. after
//!   [`ControlPlane::kill9`]); nothing is put back.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::bins::{kuma_cp_bin, kumactl_bin};
use crate::http::{
    http_get, try_http_get, try_http_post_json, try_http_put_json, try_https_post_json,
};
use crate::process::{EXIT_LIMIT, Proc, clean_kuma_env, wait_exit, wait_for};

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

/// Pass in a control plane's `env` to have it use its own TLS identity
/// (the CA kept in its store) instead of the harness's certificate; the
/// pair itself is not passed on.
pub const OWN_TLS: (&str, &str) = ("kuma-testing: own TLS identity", "");

/// The harness's server certificate (for `localhost`, `127.0.0.1`, `::1`)
/// and key files in `dir/cp-tls/`, made once per directory; the certificate
/// file ends with the CA, which the control plane then tells proxies to
/// trust.
fn harness_tls(dir: &Path) -> (PathBuf, PathBuf) {
    let tls_dir = dir.join("cp-tls");
    let (cert, key) = (tls_dir.join("cert.pem"), tls_dir.join("key.pem"));
    if cert.exists() && key.exists() {
        return (cert, key);
    }
    let ca_key = rcgen::KeyPair::generate().expect("a CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kuma-testing control-plane CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).expect("a CA certificate");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate().expect("a server key");
    let mut params = rcgen::CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])
    .expect("server params");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let server = params
        .signed_by(&server_key, &issuer)
        .expect("a server certificate");
    // Made aside and renamed into place: control planes started at once in
    // one directory all use the first complete set.
    let tmp = dir.join(format!(
        "cp-tls.{}.{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&tmp).expect("creating the TLS dir");
    std::fs::write(
        tmp.join("cert.pem"),
        format!("{}{}", server.pem(), ca_cert.pem()),
    )
    .expect("writing the certificate");
    std::fs::write(tmp.join("key.pem"), server_key.serialize_pem()).expect("writing the key");
    if std::fs::rename(&tmp, &tls_dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    (cert, key)
}

/// How long start-up may take at most.
pub const STARTUP_LIMIT: Duration = Duration::from_secs(30);

/// The name of a mesh's token signing key Secret.
const SIGNING_KEY: &str = "dataplane-token-signing-key";

/// A `kuma-cp run` command with every `KUMA_*` variable of the caller
/// removed, `KUMA_LOG_LEVEL=info`, every port set to 0, the memory store
/// (so it leaves no `kuma-cp-data` behind; [`ControlPlane`] runs on a local
/// store), then `env`.
pub fn kuma_cp_command(env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(kuma_cp_bin());
    clean_kuma_env(&mut cmd);
    cmd.arg("run")
        .env("KUMA_LOG_LEVEL", "info")
        .env("KUMA_STORE_TYPE", "memory");
    for var in PORT_VARS {
        cmd.env(var, "0");
    }
    cmd.envs(env.iter().copied());
    cmd
}

/// The `127.0.0.1:port` of the address in a line like
/// `listening server="api" address=0.0.0.0:41233`.
pub fn address_of(line: &str, server: &str) -> Option<String> {
    let rest = line
        .split(&format!("server=\"{server}\" address="))
        .nth(1)?;
    let addr = rest.split_whitespace().next()?;
    let port: u16 = addr.rsplit(':').next()?.parse().ok()?;
    Some(format!("127.0.0.1:{port}"))
}

/// The port `server` listens on, from the first such line of `log`.
fn listening_port(log: &str, server: &str) -> Option<u16> {
    log.lines().find_map(|l| {
        address_of(l, server)?
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
    })
}

/// The ports a running kuma-cp bound; 0 for a server it does not run (a
/// global control plane serves no proxies: no xds, bootstrap, dns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpPorts {
    /// The HTTP API.
    pub api: u16,
    /// The admin server (tokens, Secrets), loopback only.
    pub admin: u16,
    /// ADS.
    pub xds: u16,
    /// `POST /bootstrap`.
    pub bootstrap: u16,
    /// `/healthy`, `/ready`, `/metrics`.
    pub diagnostics: u16,
    /// The `.mesh` DNS server (UDP and TCP).
    pub dns: u16,
    /// SDS (TLS). Proxies bootstrapped before a restart reconnect to it on
    /// this port.
    pub sds: u16,
}

/// The directory of a control plane's local store (`store.local.path`),
/// owned by a test so it outlives the control planes started on it;
/// removed when dropped.
#[derive(Debug)]
pub struct StoreDir(tempfile::TempDir);

impl StoreDir {
    /// A new, empty store directory under the system's temp directory.
    pub fn new() -> StoreDir {
        StoreDir(
            tempfile::Builder::new()
                .prefix("kuma-cp-store")
                .tempdir()
                .expect("a store directory"),
        )
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Default for StoreDir {
    fn default() -> Self {
        Self::new()
    }
}

/// Which store a control plane is started on.
enum Store<'a> {
    /// A store directory of its own, removed with the control plane.
    Own,
    /// A directory the caller keeps.
    Given(&'a StoreDir),
}

/// A running `kuma-cp run` with a local store.
pub struct ControlPlane {
    /// The process; its log is `<dir>/<tag>.log`.
    pub proc: Proc,
    /// Its `store.local.path` (unless the test's environment chose another
    /// store).
    pub store_path: PathBuf,
    /// The store directory when the harness made it; removed after the
    /// process is gone.
    _own_store: Option<tempfile::TempDir>,
    /// The ports it bound.
    pub ports: CpPorts,
    /// `http://127.0.0.1:PORT` of the HTTP API.
    pub api: String,
    /// `http://127.0.0.1:PORT` of the diagnostics server.
    pub diagnostics: String,
    /// `http://127.0.0.1:PORT` of the admin server (tokens, Secrets).
    pub admin: String,
    /// The CA certificate (PEM) proxies trust for the control plane's TLS
    /// ports (empty path for a control plane that serves no proxies).
    pub ca_file: PathBuf,
    /// Where `kumactl` keeps its config for this control plane.
    pub kumactl_home: tempfile::TempDir,
    /// How long from spawn to `/ready` answering 200.
    pub ready_after: Duration,
    /// What it logged until it was ready.
    pub startup_log: Vec<String>,
    /// Where the signing keys of meshes with issued tokens are kept, for a
    /// restart on the same ports.
    keys_dir: PathBuf,
    /// The work directory when the harness made it; removed last, after the
    /// process is gone and its log printed.
    _work_dir: Option<tempfile::TempDir>,
}

/// Where most end-to-end tests start: the Envoy binary (`None` when it is
/// missing and the test may skip, see [`crate::envoy_or_skip`]), a temp dir
/// named after `test`, and a control plane started in it with `env`.
pub fn start_e2e(
    test: &str,
    env: &[(&str, &str)],
) -> Option<(PathBuf, tempfile::TempDir, ControlPlane)> {
    let envoy = crate::envoy_or_skip(test)?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("kuma-e2e-{test}-"))
        .tempdir()
        .expect("creating a temp dir");
    let cp = ControlPlane::start_in_with_env(dir.path(), "kuma-cp", None, env);
    Some((envoy, dir, cp))
}

impl ControlPlane {
    /// Starts `kuma-cp run` on ephemeral ports with `env`, in a work
    /// directory of its own, and waits until `/ready` answers 200.
    pub fn start(env: &[(&str, &str)]) -> ControlPlane {
        let work = tempfile::tempdir().expect("a work directory");
        let dir = work.path().to_path_buf();
        Self::launch(&dir, "kuma-cp", None, env, Some(work), Store::Own)
    }

    /// Starts kuma-cp with its log in `dir/<tag>.log`, on `ports` (the same
    /// ports as an earlier run, whose signing keys it gets back) or on
    /// ephemeral ports.
    /// Its store is new and empty.
    pub fn start_in(dir: &Path, tag: &str, ports: Option<CpPorts>) -> ControlPlane {
        Self::launch(dir, tag, ports, &[], None, Store::Own)
    }

    /// As [`ControlPlane::start_in`], with extra environment variables.
    pub fn start_in_with_env(
        dir: &Path,
        tag: &str,
        ports: Option<CpPorts>,
        env: &[(&str, &str)],
    ) -> ControlPlane {
        Self::launch(dir, tag, ports, env, None, Store::Own)
    }

    /// Starts kuma-cp on the local store in `store`, with its log in
    /// `dir/<tag>.log`, on `ports` (e.g. those of a control plane killed
    /// with [`Self::kill9`] on the same store) or on ephemeral ports, with
    /// extra environment variables. It finds what the store holds: nothing
    /// is put back for it.
    pub fn start_on_store(
        dir: &Path,
        tag: &str,
        store: &StoreDir,
        ports: Option<CpPorts>,
        env: &[(&str, &str)],
    ) -> ControlPlane {
        Self::launch(dir, tag, ports, env, None, Store::Given(store))
    }

    /// Kills the process with SIGKILL (no shutdown of any kind) and waits
    /// until it is gone; its store directory stays for a restart.
    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    fn launch(
        dir: &Path,
        tag: &str,
        ports: Option<CpPorts>,
        env: &[(&str, &str)],
        work_dir: Option<tempfile::TempDir>,
        store: Store<'_>,
    ) -> ControlPlane {
        let (store_path, own_store, restore_keys) = match store {
            Store::Own => {
                let own = tempfile::Builder::new()
                    .prefix("kuma-cp-store")
                    .tempdir_in(dir)
                    .expect("a store directory");
                (own.path().to_path_buf(), Some(own), true)
            }
            Store::Given(s) => (s.path().to_path_buf(), None, false),
        };
        let p = |f: fn(&CpPorts) -> u16| ports.as_ref().map_or(0, f).to_string();
        let port_env = [
            ("KUMA_API_SERVER_PORT", p(|c| c.api)),
            ("KUMA_XDS_SERVER_GRPC_PORT", p(|c| c.xds)),
            ("KUMA_BOOTSTRAP_SERVER_PORT", p(|c| c.bootstrap)),
            ("KUMA_XDS_SERVER_DIAGNOSTICS_PORT", p(|c| c.diagnostics)),
            ("KUMA_DNS_SERVER_PORT", p(|c| c.dns)),
            ("KUMA_ADMIN_SERVER_LOCAL_PORT", p(|c| c.admin)),
            ("KUMA_SDS_SERVER_GRPC_PORT", p(|c| c.sds)),
        ];
        let own_tls = env.contains(&OWN_TLS);
        let env: Vec<(&str, &str)> = env.iter().copied().filter(|e| *e != OWN_TLS).collect();
        let given_tls = env.iter().any(|(k, _)| *k == "KUMA_GENERAL_TLS_CERT_FILE");
        // Resolving (maybe building) the binary is not start-up time.
        let mut cmd = kuma_cp_command(&[]);
        cmd.env("KUMA_STORE_TYPE", "local")
            .env("KUMA_STORE_LOCAL_PATH", &store_path)
            .envs(port_env);
        if !own_tls && !given_tls {
            let (cert, key) = harness_tls(dir);
            cmd.env("KUMA_GENERAL_TLS_CERT_FILE", cert)
                .env("KUMA_GENERAL_TLS_KEY_FILE", key);
        }
        cmd.envs(env.iter().copied());
        let started = Instant::now();
        let deadline = started + STARTUP_LIMIT;
        let mut proc = Proc::spawn(tag, cmd, &dir.join(format!("{tag}.log")));
        let log = wait_for("kuma-cp to log `kuma-cp is ready`", STARTUP_LIMIT, || {
            let log = proc.log();
            if log.contains("kuma-cp is ready") {
                return Some(log);
            }
            if let Some(status) = proc.try_wait() {
                panic!("kuma-cp exited ({status}) before it was ready:\n{log}");
            }
            None
        });
        let port = |server: &str| {
            listening_port(&log, server)
                .unwrap_or_else(|| panic!("kuma-cp did not log the {server} address:\n{log}"))
        };
        let optional = |server: &str| listening_port(&log, server).unwrap_or(0);
        let bound = CpPorts {
            api: port("api"),
            admin: port("admin"),
            xds: optional("xds"),
            bootstrap: optional("bootstrap"),
            diagnostics: port("diagnostics"),
            dns: optional("dns"),
            sds: optional("sds"),
        };
        let url = |port: u16| format!("http://127.0.0.1:{port}");
        let ready = format!("{}/ready", url(bound.diagnostics));
        while http_get(&ready).0 != 200 {
            if let Some(status) = proc.try_wait() {
                panic!("kuma-cp exited ({status}) during start-up:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "kuma-cp not ready within {STARTUP_LIMIT:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let ready_after = started.elapsed();
        let ca_file = if bound.bootstrap == 0 {
            PathBuf::new()
        } else {
            let url = format!("{}/control-plane/ca-cert", url(bound.admin));
            let (status, pem) = try_http_get(&url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
            assert_eq!(status, 200, "GET {url}: {pem}");
            let path = dir.join(format!("{tag}-ca.pem"));
            std::fs::write(&path, pem).expect("writing the control plane's CA");
            path
        };
        let cp = ControlPlane {
            proc,
            store_path,
            _own_store: own_store,
            ports: bound,
            api: url(bound.api),
            diagnostics: url(bound.diagnostics),
            admin: url(bound.admin),
            ca_file,
            kumactl_home: tempfile::tempdir().expect("temp dir"),
            ready_after,
            startup_log: log.lines().map(str::to_owned).collect(),
            keys_dir: dir.join("signing-keys"),
            _work_dir: work_dir,
        };
        if let Some(wanted) = ports {
            assert_eq!(bound, wanted, "kuma-cp did not come back on the same ports");
            if restore_keys {
                cp.restore_signing_keys();
            }
        }
        cp
    }

    /// The HTTP API's base URL (the same as [`ControlPlane::api`]).
    pub fn api_url(&self) -> String {
        self.api.clone()
    }

    /// `https://127.0.0.1:PORT` of the bootstrap server: kuma-dp's
    /// `--cp-address`.
    pub fn bootstrap_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.ports.bootstrap)
    }

    /// `POST /bootstrap` with the JSON `body`, over TLS trusting
    /// [`Self::ca_file`] -> (status, body), or the transport error.
    pub fn bootstrap(&self, body: &str) -> Result<(u16, String), String> {
        try_https_post_json(
            &format!("{}/bootstrap", self.bootstrap_url()),
            &self.ca_file,
            body,
        )
    }

    /// The admin server's base URL (tokens, Secrets), loopback only.
    pub fn admin_url(&self) -> String {
        self.admin.clone()
    }

    /// `path` on the HTTP API.
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

    /// Sends `signal` (e.g. `TERM`) to the process with `kill(1)`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.proc.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// `POST /tokens` on the admin server -> (status, body).
    pub fn request_token(&self, mesh: &str, name: &str) -> (u16, String) {
        let url = format!("{}/tokens", self.admin_url());
        let body = serde_json::json!({"mesh": mesh, "name": name}).to_string();
        try_http_post_json(&url, &body).unwrap_or_else(|e| panic!("POST {url} failed: {e}"))
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
        let (status, body) = try_http_get(&url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(status, 200, "GET {url}: {body}");
        std::fs::create_dir_all(&self.keys_dir).expect("creating the keys dir");
        std::fs::write(self.keys_dir.join(format!("{mesh}.json")), body)
            .expect("saving a signing key");
    }

    /// Puts the signing keys saved by an earlier run back (this run's store
    /// is a new one), so the proxies' tokens stay valid.
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
            let (status, body) = try_http_put_json(&url, &secret.to_string())
                .unwrap_or_else(|e| panic!("PUT {url}: {e}"));
            assert!(status == 200 || status == 201, "PUT {url}: {status} {body}");
        }
    }

    /// Names of the Dataplanes of mesh `default`, or `None` if the API did
    /// not answer.
    pub fn dataplanes(&self) -> Option<std::collections::BTreeSet<String>> {
        let (status, body) =
            try_http_get(&format!("{}/meshes/default/dataplanes", self.api_url())).ok()?;
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
            try_http_put_json(&url, json).unwrap_or_else(|e| panic!("PUT {url} failed: {e}"));
        assert!(
            status == 200 || status == 201,
            "PUT {url} answered {status}: {body}"
        );
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
