//! End to end: the real `kuma-cp` binary answers real `dig` over UDP and
//! TCP for Dataplanes created through its HTTP API.
//!
//! Without `dig` (package dnsutils) the test fails when `CI=true` and is
//! skipped with a message otherwise.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct ControlPlane {
    child: Child,
    api: u16,
    dns: u16,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn port_of(line: &str, server: &str) -> Option<u16> {
    let rest = line
        .split(&format!("server=\"{server}\" address="))
        .nth(1)?;
    let addr = rest.split_whitespace().next()?;
    addr.rsplit(':').next()?.parse().ok()
}

fn start() -> ControlPlane {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kuma-cp"));
    // The memory store: this test keeps no state, and leaves no
    // kuma-cp-data behind in the package directory.
    cmd.arg("run")
        .env("KUMA_LOG_LEVEL", "info")
        .env("KUMA_STORE_TYPE", "memory");
    for var in [
        "KUMA_API_SERVER_PORT",
        "KUMA_XDS_SERVER_DIAGNOSTICS_PORT",
        "KUMA_DNS_SERVER_PORT",
        "KUMA_XDS_SERVER_GRPC_PORT",
        "KUMA_BOOTSTRAP_SERVER_PORT",
        "KUMA_SDS_SERVER_GRPC_PORT",
        "KUMA_ADMIN_SERVER_LOCAL_PORT",
        "KUMA_MONITORING_ASSIGNMENT_SERVER_GRPC_PORT",
    ] {
        cmd.env(var, "0");
    }
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kuma-cp");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("kuma-cp: {line}");
            let _ = tx.send(line);
        }
    });
    let (mut api, mut dns) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while api.is_none() || dns.is_none() {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("kuma-cp logs its listening addresses");
        api = api.or(port_of(&line, "api"));
        dns = dns.or(port_of(&line, "dns"));
    }
    ControlPlane {
        child,
        api: api.unwrap_or_default(),
        dns: dns.unwrap_or_default(),
    }
}

/// What dig printed, parsed.
#[derive(Debug)]
struct Dig {
    status: String,
    flags: Vec<String>,
    answers: Vec<String>,
    authority: Vec<String>,
}

fn dig(port: u16, args: &[&str]) -> Dig {
    let out = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+tries=1", "+time=2"])
        .args(args)
        .output()
        .expect("run dig");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or_else(|| panic!("no status in dig output:\n{text}"))
        .to_string();
    let flags = text
        .split(";; flags: ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let section = |title: &str| -> Vec<String> {
        text.split(title)
            .nth(1)
            .map(|s| {
                s.lines()
                    .skip(1)
                    .take_while(|l| !l.trim().is_empty())
                    .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                    .collect()
            })
            .unwrap_or_default()
    };
    Dig {
        status,
        flags,
        answers: section(";; ANSWER SECTION:"),
        authority: section(";; AUTHORITY SECTION:"),
    }
}

fn dig_available() -> bool {
    let found = Command::new("dig").arg("-v").output().is_ok();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "dig is missing on CI (apt-get install dnsutils)"
        );
        eprintln!("SKIPPED: dig is not installed (apt-get install dnsutils)");
    }
    found
}

fn put_dataplane(api: u16, name: &str, service: &str) {
    let body = serde_json::json!({
        "type": "Dataplane", "mesh": "default", "name": name,
        "networking": {"address": "10.0.0.1", "inbound": [
            {"port": 8080, "tags": {"kuma.io/service": service}}
        ]}
    });
    ureq::put(&format!(
        "http://127.0.0.1:{api}/meshes/default/dataplanes/{name}"
    ))
    .send_json(&body)
    .expect("create dataplane");
}

/// Retries `dig` until `ok` holds (VIP allocation is asynchronous).
fn dig_until(port: u16, args: &[&str], ok: impl Fn(&Dig) -> bool) -> Dig {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = dig(port, args);
        if ok(&d) || Instant::now() > deadline {
            return d;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn dig_resolves_services_of_the_real_binary() {
    if !dig_available() {
        return;
    }
    let cp = start();
    put_dataplane(cp.api, "backend-1", "backend");
    put_dataplane(cp.api, "web-1", "web");

    for transport in ["+notcp", "+tcp"] {
        let a = dig_until(cp.dns, &[transport, "backend.mesh", "A"], |d| {
            d.status == "NOERROR" && !d.answers.is_empty()
        });
        assert_eq!(a.status, "NOERROR", "{a:?}");
        assert!(a.flags.contains(&"aa".to_string()), "{a:?}");
        assert_eq!(a.answers.len(), 1, "{a:?}");
        let fields: Vec<&str> = a.answers[0].split(' ').collect();
        assert_eq!(fields[..4], ["backend.mesh.", "60", "IN", "A"], "{a:?}");
        assert!(fields[4].starts_with("240."), "{a:?}");

        let short = Command::new("dig")
            .args(["@127.0.0.1", "-p", &cp.dns.to_string(), transport, "+short"])
            .arg("BackEnd.MESH")
            .output()
            .expect("dig +short");
        assert_eq!(String::from_utf8_lossy(&short.stdout).trim(), fields[4]);

        let nx = dig(cp.dns, &[transport, "nope.mesh", "A"]);
        assert_eq!(nx.status, "NXDOMAIN", "{nx:?}");
        assert!(
            nx.answers.is_empty() && nx.authority[0].contains("SOA"),
            "{nx:?}"
        );
        assert!(nx.flags.contains(&"aa".to_string()), "{nx:?}");

        let nodata = dig(cp.dns, &[transport, "backend.mesh", "AAAA"]);
        assert_eq!(nodata.status, "NOERROR", "{nodata:?}");
        assert!(nodata.answers.is_empty(), "{nodata:?}");
        assert!(nodata.authority[0].contains("SOA"), "{nodata:?}");

        let refused = dig(cp.dns, &[transport, "example.com", "A"]);
        assert_eq!(refused.status, "REFUSED", "{refused:?}");

        let noedns = dig(cp.dns, &[transport, "+noedns", "web.mesh", "A"]);
        assert_eq!(
            (noedns.status.as_str(), noedns.answers.len()),
            ("NOERROR", 1)
        );
        let badvers = dig(cp.dns, &[transport, "+edns=1", "+noednsneg", "web.mesh"]);
        assert_eq!(badvers.status, "BADVERS", "{badvers:?}");
    }

    // Garbage does not stop the server.
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    for junk in [
        &b"\x00"[..],
        &[0xff; 600],
        &[0u8; 12],
        b"GET / HTTP/1.1\r\n\r\n",
    ] {
        sock.send_to(junk, ("127.0.0.1", cp.dns))
            .expect("send junk");
    }
    let after = dig(cp.dns, &["backend.mesh"]);
    assert_eq!((after.status.as_str(), after.answers.len()), ("NOERROR", 1));

    // A removed service stops resolving.
    ureq::delete(&format!(
        "http://127.0.0.1:{}/meshes/default/dataplanes/backend-1",
        cp.api
    ))
    .call()
    .expect("delete dataplane");
    for transport in ["+notcp", "+tcp"] {
        let gone = dig_until(cp.dns, &[transport, "backend.mesh"], |d| {
            d.status == "NXDOMAIN"
        });
        assert_eq!(gone.status, "NXDOMAIN", "{gone:?}");
    }
    let web = dig(cp.dns, &["web.mesh"]);
    assert_eq!(web.answers.len(), 1, "{web:?}");
}
