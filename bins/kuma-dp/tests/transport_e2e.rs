//! The transport between kuma-dp, Envoy and the control plane, end to end
//! with the real `kuma-cp`, `kuma-dp` and Envoy (see `docs/security.md`,
//! "Transport"):
//!
//! - on the control plane's own TLS identity (its CA kept in the store,
//!   read from the admin server), kuma-dp verifies the bootstrap server and
//!   Envoy verifies ADS and SDS: traffic flows frontend -> backend;
//! - kuma-dp given another CA refuses the control plane: it exits 1 naming
//!   the CA file, and the proxy never registers;
//! - Envoy dies with kuma-dp (`kill -9` kuma-dp: its Envoy is gone within
//!   two seconds);
//! - SIGTERM drains Envoy's listeners first: a request in flight completes.
//!
//! Run: `cargo test -p kuma-dp --test transport_e2e -- --nocapture` (Envoy
//! from `ENVOY_BIN`, `<workspace>/.venv/bin/envoy` or `PATH`).

use kuma_testing::{
    App, AppBehavior, ControlPlane, Dataplane, OWN_TLS, backend_yaml, free_port, frontend_yaml,
    request, send, wait_for,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const READY: Duration = Duration::from_secs(30);

fn setup(test: &str, env: &[(&str, &str)]) -> Option<(PathBuf, tempfile::TempDir, ControlPlane)> {
    kuma_testing::start_e2e(test, env)
}

#[test]
fn proxies_verify_the_control_planes_own_identity() {
    let Some((envoy, dir, cp)) = setup("transport-own-ca", &[OWN_TLS]) else {
        return;
    };
    // The CA proxies trust is the one the admin server names, and the
    // bootstrap's ADS cluster trusts exactly it.
    let ca = std::fs::read_to_string(&cp.ca_file).expect("the control plane's CA");
    assert!(ca.contains("BEGIN CERTIFICATE"), "{ca}");
    assert!(
        !std::fs::read_to_string(dir.path().join("kuma-cp.log"))
            .unwrap_or_default()
            .contains("cp-tls"),
        "the harness certificate was used"
    );

    let app = App::start("backend-1");
    let backend = backend_yaml("backend-1", free_port(), app.port, None);
    let mut be = Dataplane::start(&cp, &envoy, dir.path(), "backend-1", &backend);
    let outbound = free_port();
    let fe_app = App::start("frontend-1");
    let frontend = frontend_yaml("frontend-1", free_port(), fe_app.port, outbound);
    let mut fe = Dataplane::start(&cp, &envoy, dir.path(), "frontend-1", &frontend);
    be.wait_ready(READY);
    fe.wait_ready(READY);
    wait_for("frontend -> backend through the mesh", READY, || {
        (send(outbound, 5).count("backend-1") == 5).then_some(())
    });
    // kuma-dp verified the bootstrap server: no warning.
    assert!(!fe.proc.log().contains("not verified"), "{}", fe.proc.log());
    // Envoy's ADS cluster is TLS trusting the control plane's CA.
    let (_, dump) = fe.admin("/config_dump").expect("config_dump");
    let v: serde_json::Value = serde_json::from_str(&dump).expect("config_dump JSON");
    let bootstrap = v["configs"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["bootstrap"].is_object()))
        .map(|c| c["bootstrap"].clone())
        .expect("the bootstrap in config_dump");
    let ads = bootstrap["static_resources"]["clusters"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "ads_cluster"))
        .expect("ads_cluster")
        .clone();
    let tls = &ads["transport_socket"]["typed_config"];
    assert_eq!(
        tls["common_tls_context"]["validation_context"]["trusted_ca"]["inline_string"]
            .as_str()
            .map(str::trim),
        Some(ca.trim()),
        "{ads}"
    );
}

#[test]
fn a_wrong_ca_file_refuses_the_control_plane() {
    let Some((envoy, dir, cp)) = setup("transport-wrong-ca", &[]) else {
        return;
    };
    // Another control plane's CA.
    let other = dir.path().join("other-ca.pem");
    let other_dir = tempfile::tempdir().unwrap();
    let elsewhere = ControlPlane::start_in(other_dir.path(), "other-cp", None);
    std::fs::copy(&elsewhere.ca_file, &other).expect("copying the other CA");
    drop(elsewhere);

    let app = App::start("backend-1");
    let yaml = backend_yaml("backend-1", free_port(), app.port, None);
    let mut dp = Dataplane::start_with(
        &cp,
        &envoy,
        dir.path(),
        "backend-1",
        &yaml,
        &["--ca-cert-file", other.to_str().unwrap()],
    );
    let name = dp.name.clone();
    let status = wait_for(&format!("kuma-dp {name} to exit"), READY, || {
        dp.proc.try_wait()
    });
    let log = dp.proc.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains(other.to_str().unwrap()), "{log}");
    assert!(log.contains("--ca-cert-file"), "{log}");
    assert!(!dp.is_ready(), "an Envoy runs although kuma-dp refused");
    assert_eq!(
        cp.dataplanes().unwrap_or_default(),
        Default::default(),
        "the refused proxy registered its Dataplane"
    );
}

/// The pid of the Envoy `kuma-dp` (pid `parent`) runs.
fn envoy_pid(parent: u32) -> i32 {
    wait_for("kuma-dp's Envoy to appear", READY, || {
        std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // pid (comm) state ppid ...
            let after = &stat[stat.rfind(')')? + 2..];
            let ppid: u32 = after.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == parent).then_some(pid)
        })
    })
}

/// Whether `pid` is alive (a zombie is not).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 2..].chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

#[test]
fn envoy_dies_with_kuma_dp() {
    let Some((envoy, dir, cp)) = setup("transport-pdeathsig", &[]) else {
        return;
    };
    let app = App::start("backend-1");
    let yaml = backend_yaml("backend-1", free_port(), app.port, None);
    let mut dp = Dataplane::start(&cp, &envoy, dir.path(), "backend-1", &yaml);
    dp.wait_ready(READY);
    let envoy_pid = envoy_pid(dp.proc.pid());
    assert!(alive(envoy_pid));
    // kill -9 kuma-dp alone (not its process group).
    dp.proc.kill9();
    let killed = Instant::now();
    wait_for("Envoy to die with kuma-dp", Duration::from_secs(2), || {
        (!alive(envoy_pid)).then_some(())
    });
    println!("Envoy gone {:?} after kill -9 of kuma-dp", killed.elapsed());
    assert!(!dp.is_ready(), "Envoy's admin still answers");
}

#[test]
fn sigterm_drains_listeners_before_stopping_envoy() {
    let Some((envoy, dir, cp)) = setup("transport-drain", &[]) else {
        return;
    };
    let slow = Duration::from_millis(1500);
    let app = App::start_with(
        "backend-1",
        AppBehavior {
            delay: slow,
            status: 200,
        },
    );
    let inbound = free_port();
    let yaml = backend_yaml("backend-1", inbound, app.port, None);
    let mut dp = Dataplane::start_with(
        &cp,
        &envoy,
        dir.path(),
        "backend-1",
        &yaml,
        &["--drain-time", "10s"],
    );
    dp.wait_ready(READY);
    wait_for("the inbound listener to answer", READY, || {
        matches!(request(inbound), Ok((200, _))).then_some(())
    });
    let hits = app.hits();
    let in_flight = std::thread::spawn(move || get_one(inbound));
    wait_for("the request to reach the app", READY, || {
        (app.hits() > hits).then_some(())
    });
    let signalled = Instant::now();
    kill(Pid::from_raw(dp.proc.pid() as i32), Signal::SIGTERM).expect("SIGTERM kuma-dp");
    let answer = in_flight.join().expect("the request thread");
    assert_eq!(
        answer.as_ref().map(|(s, b)| (*s, b.as_str())),
        Ok((200, "backend-1")),
        "the request in flight was cut"
    );
    let status = dp
        .proc
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("kuma-dp still running:\n{}", dp.proc.log()));
    let took = signalled.elapsed();
    let log = dp.proc.log();
    assert!(log.contains("draining Envoy's listeners"), "{log}");
    // Drained once the connection closed, before --drain-time ran out.
    assert!(log.contains("Envoy's listeners are drained"), "{log}");
    assert!(!log.contains("drain time over"), "{log}");
    println!("SIGTERM -> kuma-dp exited ({status}) after {took:?}");
}

/// One `GET /` with `Connection: close` on `port`, read up to the end of
/// its body (by `Content-Length`: while draining, Envoy answers at once but
/// closes the connection only after its HTTP drain timeout) -> (status,
/// body).
fn get_one(port: u16) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&raw).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok());
            if length.is_some_and(|n| body.len() >= n) {
                let status = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("bad status line: {head:?}"))?;
                return Ok((status, body.to_string()));
            }
        }
        match s.read(&mut buf) {
            Ok(0) => return Err(format!("closed before a full response: {text:?}")),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("{e}; got {text:?}")),
        }
    }
}
